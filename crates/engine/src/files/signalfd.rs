//! signalfd: a SIGNALFD entry in files.img with the file flags and the
//! signal mask (fdinfo's `sigmask`, hex). Restored with signalfd4 on the
//! dumped mask; which signals it reads is a matter of the reading task's
//! queue, so the engine can create it for the task.

use super::anon::{self, fdinfo_text, is_anon};
use super::{fown, FdCtx, FdKind, FileError, FileTable};
use cryo_image::pb;

pub struct Signalfd;

/// The mask of a signalfd from its fdinfo text.
pub fn parse(text: &str) -> Result<u64, String> {
    anon::need(text, "sigmask", anon::hex64)
}

impl FdKind for Signalfd {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Signalfd
    }

    fn detect(&self, c: &FdCtx) -> bool {
        is_anon(c, "[signalfd]")
    }

    fn dump(&self, c: &FdCtx, id: u32, _t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        let sigmask = parse(&fdinfo_text(c)?).map_err(|e| c.unsupported(format!("signalfd: {e}")))?;
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Signalfd as i32,
            id,
            sgfd: Some(pb::SignalfdEntry {
                id,
                flags: c.flags(),
                fown: fown(),
                sigmask,
            }),
            ..Default::default()
        })
    }
}

// ---- Restore side -------------------------------------------------------

pub use restore_side::restore_open;

#[allow(unsafe_code)]
mod restore_side {
    use super::super::anon::{err, owned, set_status_flags};
    use crate::restore::RestoreError;
    use cryo_image::pb;
    use std::os::fd::OwnedFd;

    /// A new signalfd for the dumped mask, with the dumped flags.
    pub fn restore_open(id: u32, e: &pb::SignalfdEntry) -> Result<OwnedFd, RestoreError> {
        let object = format!("signalfd (file id {id}, mask {:#x})", e.sigmask);
        let mask: u64 = e.sigmask;
        let fl = libc::SFD_CLOEXEC | (e.flags as i32 & libc::SFD_NONBLOCK);
        // SAFETY: mask is 8 readable bytes (the kernel's sigset size).
        let r = unsafe { libc::syscall(libc::SYS_signalfd4, -1, &mask as *const u64, 8usize, fl) };
        let fd = owned(r).map_err(|x| err(&object, format!("signalfd4: {x}")))?;
        set_status_flags(&fd, e.flags).map_err(|x| err(&object, x))?;
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_signalfd_fdinfo() {
        let t = "pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1030\nsigmask:\t0000000000000800\n";
        assert_eq!(super::parse(t).unwrap(), 0x800);
        assert!(super::parse("pos: 0\n").is_err());
    }
}
