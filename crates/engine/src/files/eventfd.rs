//! eventfd: an EVENTFD entry in files.img with the file flags and the
//! counter (fdinfo's `eventfd-count`, hex). Restored with eventfd2 and one
//! write of the counter (eventfd2's initial value is only 32 bits wide).
//! EFD_SEMAPHORE has no place in CRIU's entry: the file id goes into cryo's
//! sidecar (`eventfd_semaphore` of cryo.json), which restore reads back.

use super::anon::{self, fdinfo_text, is_anon};
use super::{fown, FdCtx, FdKind, FileError, FileTable};
use cryo_image::pb;

pub struct Eventfd;

/// What fdinfo says of an eventfd.
#[derive(Debug, PartialEq, Eq)]
pub struct EventfdInfo {
    pub counter: u64,
    pub semaphore: bool,
}

/// Parse an eventfd's fdinfo text.
pub fn parse(text: &str) -> Result<EventfdInfo, String> {
    Ok(EventfdInfo {
        counter: anon::need(text, "eventfd-count", anon::hex64)?,
        semaphore: anon::field(text, "eventfd-semaphore").is_some_and(|v| v.trim() == "1"),
    })
}

impl FdKind for Eventfd {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Eventfd
    }

    fn detect(&self, c: &FdCtx) -> bool {
        is_anon(c, "[eventfd]")
    }

    fn dump(&self, c: &FdCtx, id: u32, t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        let info = parse(&fdinfo_text(c)?).map_err(|e| c.unsupported(format!("eventfd: {e}")))?;
        if info.semaphore {
            t.eventfd_semaphore.insert(id);
        }
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Eventfd as i32,
            id,
            efd: Some(pb::EventfdFileEntry {
                id,
                flags: c.flags(),
                fown: fown(),
                counter: info.counter,
            }),
            ..Default::default()
        })
    }
}

/// Validation of an image entry (restore refuses what it cannot recreate).
pub fn check(e: &pb::EventfdFileEntry) -> Result<(), String> {
    if e.counter == u64::MAX {
        return Err("counter 0xffffffffffffffff is above an eventfd's maximum".into());
    }
    Ok(())
}

// ---- Restore side -------------------------------------------------------

pub use restore_side::restore_open;

#[allow(unsafe_code)]
mod restore_side {
    use super::super::anon::{err, owned, set_status_flags};
    use crate::restore::RestoreError;
    use cryo_image::pb;
    use std::os::fd::{AsRawFd, OwnedFd};

    /// A new eventfd holding the dumped counter, with the dumped flags
    /// (EFD_SEMAPHORE when the sidecar says so).
    pub fn restore_open(id: u32, e: &pb::EventfdFileEntry, semaphore: bool) -> Result<OwnedFd, RestoreError> {
        let object = format!("eventfd (file id {id})");
        let fl =
            libc::EFD_CLOEXEC | (e.flags as i32 & libc::EFD_NONBLOCK) | if semaphore { libc::EFD_SEMAPHORE } else { 0 };
        // SAFETY: scalar arguments.
        let fd = owned(unsafe { libc::syscall(libc::SYS_eventfd2, 0, fl) }).map_err(|x| err(&object, x))?;
        if e.counter != 0 {
            let b = e.counter.to_ne_bytes();
            // SAFETY: b is 8 readable bytes; the counter is 0 so the write cannot block.
            let n = unsafe { libc::write(fd.as_raw_fd(), b.as_ptr().cast(), 8) };
            if n != 8 {
                return Err(err(
                    &object,
                    format!("setting counter {}: {}", e.counter, std::io::Error::last_os_error()),
                ));
            }
        }
        set_status_flags(&fd, e.flags).map_err(|x| err(&object, x))?;
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_eventfd_fdinfo() {
        let t = "pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1030\neventfd-count:        100000007\neventfd-id: 1\n";
        assert_eq!(
            parse(t).unwrap(),
            EventfdInfo {
                counter: 0x1_0000_0007,
                semaphore: false
            }
        );
        let s = "eventfd-count:                5\neventfd-id: 1\neventfd-semaphore: 1\n";
        assert!(parse(s).unwrap().semaphore);
        assert!(parse("pos: 0\n").is_err());
    }
}
