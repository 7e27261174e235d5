//! signalfd: a SIGNALFD entry in files.img with the file flags and the
//! signal mask (fdinfo's `sigmask`, hex). Restored with signalfd4 on the
//! dumped mask; which signals it reads is a matter of the reading task's
//! queue, so the engine can create it for the task.

use super::anon::{self, fdinfo_text, is_anon, set_status_flags};
use super::set::open_err;
use super::{fown, DescribeCx, FdCtx, FdKind, FileError, FileTable, OpenError, OpenFile, RestoreCx, SetError};
use crate::sys::files as sys;
use cryo_image::pb;
use std::os::fd::OwnedFd;

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

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        anon::describe_body(e, cx, e.sgfd, |_| Ok(()), SignalfdFile)
    }
}

// ---- Restore side -------------------------------------------------------

/// A signalfd to recreate (its files.img entry).
#[derive(Clone, Debug)]
pub struct SignalfdFile(pub pb::SignalfdEntry);

impl OpenFile for SignalfdFile {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Signalfd
    }

    /// A new signalfd for the dumped mask, with the dumped flags.
    fn restore(&self, id: u32, _cx: &mut RestoreCx) -> Result<Option<OwnedFd>, OpenError> {
        let e = &self.0;
        let object = format!("signalfd (file id {id}, mask {:#x})", e.sigmask);
        let err = |r: String| open_err(pb::FdTypes::Signalfd, &object, r);
        let fl = libc::SFD_CLOEXEC | (e.flags as i32 & libc::SFD_NONBLOCK);
        let fd = sys::signalfd(e.sigmask, fl).map_err(|x| err(format!("signalfd4: {x}")))?;
        set_status_flags(&fd, e.flags).map_err(|x| err(x.to_string()))?;
        Ok(Some(fd))
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
