//! eventfd: an EVENTFD entry in files.img with the file flags and the
//! counter (fdinfo's `eventfd-count`, hex). Restored with eventfd2 and one
//! write of the counter (eventfd2's initial value is only 32 bits wide).
//! EFD_SEMAPHORE has no place in CRIU's entry: the file id goes into cryo's
//! sidecar (`eventfd_semaphore` of cryo.json), which restore reads back.

use super::anon::{self, fdinfo_text, is_anon, set_status_flags};
use super::set::open_err;
use super::{fown, DescribeCx, FdCtx, FdKind, FileError, FileSet, FileTable, OpenError, OpenFile, RestoreCx, SetError};
use crate::sys::files as sys;
use cryo_image::pb;
use std::os::fd::OwnedFd;

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

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        anon::describe_body(e, cx, e.efd, check, |entry| EventfdFile {
            entry,
            semaphore: false,
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

/// An eventfd to recreate: its entry, and EFD_SEMAPHORE (from cryo's sidecar,
/// set by [`mark_semaphores`]).
#[derive(Clone, Debug)]
pub struct EventfdFile {
    pub entry: pb::EventfdFileEntry,
    pub semaphore: bool,
}

/// The file ids of every eventfd of the set.
pub fn ids(files: &FileSet) -> std::collections::BTreeSet<u32> {
    files.of::<EventfdFile>().map(|(id, _)| id).collect()
}

/// EFD_SEMAPHORE for the eventfds the sidecar names.
pub fn mark_semaphores(files: &mut FileSet, semaphore: &std::collections::BTreeSet<u32>) {
    for (id, e) in files.of_mut::<EventfdFile>() {
        e.semaphore = semaphore.contains(&id);
    }
}

impl OpenFile for EventfdFile {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Eventfd
    }

    /// A new eventfd holding the dumped counter, with the dumped flags
    /// (EFD_SEMAPHORE when the sidecar says so).
    fn restore(&self, id: u32, _cx: &mut RestoreCx) -> Result<Option<OwnedFd>, OpenError> {
        let e = &self.entry;
        let object = format!("eventfd (file id {id})");
        let err = |r: String| open_err(pb::FdTypes::Eventfd, &object, r);
        let fl = libc::EFD_CLOEXEC
            | (e.flags as i32 & libc::EFD_NONBLOCK)
            | if self.semaphore { libc::EFD_SEMAPHORE } else { 0 };
        let fd = sys::eventfd(fl).map_err(|x| err(x.to_string()))?;
        if e.counter != 0 {
            // The counter is 0, so the write cannot block.
            sys::write_u64(&fd, e.counter).map_err(|x| err(format!("setting counter {}: {x}", e.counter)))?;
        }
        set_status_flags(&fd, e.flags).map_err(|x| err(x.to_string()))?;
        Ok(Some(fd))
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
