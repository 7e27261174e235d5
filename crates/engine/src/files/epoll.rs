//! epoll: an EVENTPOLL entry in files.img with one tfd entry per item of the
//! interest list: the target's fd number (in the task that added it),
//! the events, the user data, and the target file's dev/inode/pos.
//!
//! The kernel keys an item by (file, fd number): the restored program can
//! only EPOLL_CTL_MOD/DEL its items if they were added under the same fd
//! numbers, so the items are added by the restored task itself, once its fds
//! are at their numbers ([`restore_targets`]), not by the engine that creates
//! the epoll instance. A target that no longer lives at its recorded number
//! in the dumping task but is open under another fd of it (dup'ed, then
//! closed) is recorded under that fd, as CRIU does; one that is not open in
//! the task at all (closed, or only open in another process) is refused at
//! dump; restore refuses images whose targets are not fds of the task owning
//! the epoll file.

use super::anon::{self, fdinfo_text, is_anon, set_status_flags, token};
use super::set::{open_err, unsupported};
use super::{
    fown, DescribeCx, Fd, FdCtx, FdKind, FileError, FileSet, FileTable, OpenError, OpenFile, RestoreCx, SetError,
};
use cryo_image::pb;
use std::os::fd::OwnedFd;

pub struct Epoll;

/// One `tfd:` line of an epoll fd's fdinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TfdInfo {
    pub tfd: u32,
    pub events: u32,
    pub data: u64,
    pub pos: u64,
    pub ino: u64,
    /// Kernel encoding (major << 20 | minor).
    pub sdev: u32,
}

/// Parse the items of an epoll fd's fdinfo text.
pub fn parse(text: &str) -> Result<Vec<TfdInfo>, String> {
    let mut v = Vec::new();
    for l in text.lines().filter(|l| l.starts_with("tfd:")) {
        let get = |k: &str, radix: u32| -> Result<u64, String> {
            token(l, k)
                .and_then(|s| u64::from_str_radix(s, radix).ok())
                .ok_or_else(|| format!("no or bad {k:?} in {l:?}"))
        };
        v.push(TfdInfo {
            tfd: get("tfd", 10)? as u32,
            events: get("events", 16)? as u32,
            data: get("data", 16)?,
            pos: get("pos", 10)?,
            ino: get("ino", 16)?,
            sdev: get("sdev", 16)? as u32,
        });
    }
    Ok(v)
}

impl FdKind for Epoll {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Eventpoll
    }

    fn detect(&self, c: &FdCtx) -> bool {
        is_anon(c, "[eventpoll]")
    }

    fn dump(&self, c: &FdCtx, id: u32, _t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        let items = parse(&fdinfo_text(c)?).map_err(|e| c.unsupported(format!("epoll: {e}")))?;
        let mut out: Vec<pb::EventpollTfdEntry> = Vec::new();
        let mut task_fds: Option<Vec<u32>> = None;
        for (i, t) in items.iter().enumerate() {
            // The n-th item with this fd number (several files can have been
            // added under one number, closed and reused in between).
            let toff = items[..i].iter().filter(|x| x.tfd == t.tfd).count() as u32;
            let mut tfd = t.tfd;
            if !dump_side::target_is_open_at(c.pid, c.fd, t.tfd, toff) {
                // As CRIU: a target closed at its number but still open
                // under another fd of the task is recorded under that one
                // (events and data stay; the restored item is keyed by it).
                let fds = task_fds.get_or_insert_with(|| open_fds(c.pid));
                let other = fds
                    .iter()
                    .copied()
                    .find(|&f| dump_side::fd_is_target(c.pid, f, c.fd, t.tfd, toff));
                let clash = |f: u32| {
                    out.iter()
                        .any(|o| o.tfd == f && o.inode == Some(t.ino) && o.dev == Some(t.sdev))
                };
                match other {
                    Some(f) if !clash(f) => tfd = f,
                    Some(f) => {
                        return Err(c.unsupported(format!(
                            "epoll target fd {} (events {:#x}, data {:#x}) was closed in pid {}; its file is \
                             open at fd {f}, which already has an item for that file: the kernel keys items by \
                             (file, fd), so cryo cannot recreate both",
                            t.tfd, t.events, t.data, c.pid
                        )))
                    }
                    None => {
                        return Err(c.unsupported(format!(
                            "epoll target fd {} (events {:#x}, data {:#x}) is no longer open at that number in pid {} \
                             and not open under another fd of it (closed, or only open in another process): \
                             cryo cannot recreate that item",
                            t.tfd, t.events, t.data, c.pid
                        )))
                    }
                }
            }
            out.push(pb::EventpollTfdEntry {
                id: 0,
                tfd,
                events: t.events,
                data: t.data,
                dev: Some(t.sdev),
                inode: Some(t.ino),
                pos: Some(t.pos),
            });
        }
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Eventpoll as i32,
            id,
            epfd: Some(pb::EventpollFileEntry {
                id,
                flags: c.flags(),
                fown: fown(),
                tfd: out,
            }),
            ..Default::default()
        })
    }

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        anon::describe_body(e, cx, e.epfd.clone(), |_| Ok(()), EpollFile)
    }

    /// Epoll items are added by the first task holding the epoll file,
    /// under its fd numbers: they must all be fds of that task.
    fn check(&self, files: &FileSet) -> Result<(), SetError> {
        for (id, EpollFile(e)) in files.of::<EpollFile>() {
            if let Some(owner) = files.tree.first_holder(id) {
                let fds: Vec<i32> = owner.fds.iter().map(|x| x.fd).collect();
                check(e, owner.pid, &fds)
                    .map_err(|what| unsupported(&files.files_file, owner.pid, format!("epoll file id {id}: {what}")))?;
            }
        }
        Ok(())
    }
}

/// The open fd numbers of `pid`, ascending.
fn open_fds(pid: i32) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

mod dump_side {
    /// Is the target of item (`tfd`, `toff`) of epoll fd `efd` of `pid` the
    /// file open at fd `tfd` of `pid`?
    pub fn target_is_open_at(pid: i32, efd: i32, tfd: u32, toff: u32) -> bool {
        fd_is_target(pid, tfd, efd, tfd, toff)
    }

    /// Is fd `fd` of `pid` the target file of item (`tfd`, `toff`) of
    /// epoll fd `efd` of `pid`?
    pub fn fd_is_target(pid: i32, fd: u32, efd: i32, tfd: u32, toff: u32) -> bool {
        crate::sys::files::kcmp_epoll_tfd(pid, fd, efd, tfd, toff)
    }
}

/// Validation of an image entry: every target is an fd of the task that
/// owns the epoll file (`owner_fds`: its fd numbers).
pub fn check(e: &pb::EventpollFileEntry, owner: i32, owner_fds: &[i32]) -> Result<(), String> {
    for t in &e.tfd {
        if !owner_fds.contains(&(t.tfd as i32)) {
            return Err(format!(
                "target fd {} is not an fd of pid {owner}, which holds the epoll file \
                 (targets that were closed or live in another process are not supported)",
                t.tfd
            ));
        }
    }
    Ok(())
}

// ---- Restore side -------------------------------------------------------

/// An epoll instance to recreate: its items are added by the first task
/// holding it ([`restore_targets`]).
#[derive(Clone, Debug)]
pub struct EpollFile(pub pb::EventpollFileEntry);

impl OpenFile for EpollFile {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Eventpoll
    }

    /// A new, empty epoll instance (the items are added by the owning task).
    fn restore(&self, id: u32, _cx: &mut RestoreCx) -> Result<Option<OwnedFd>, OpenError> {
        let object = format!("epoll (file id {id})");
        let err = |r: String| open_err(pb::FdTypes::Eventpoll, &object, r);
        let fd = crate::sys::files::epoll_create().map_err(|x| err(format!("epoll_create1: {x}")))?;
        set_status_flags(&fd, self.0.flags).map_err(|x| err(x.to_string()))?;
        Ok(Some(fd))
    }
}

/// In restored task `pid` (its fds `fds` in place): add the items of every
/// epoll file this task owns (the first task of the tree holding it), under
/// the dumped fd numbers. Runs in the task, after its fd table is set up.
pub fn restore_targets(files: &FileSet, pid: i32, fds: &[Fd]) -> Result<(), String> {
    for f in fds {
        let Some(EpollFile(e)) = files.get_as::<EpollFile>(f.file_id) else {
            continue;
        };
        let owner = files.tree.first_holder(f.file_id).map(|q| q.pid);
        // One owner per file; several fds of one task naming it add once.
        let first_fd = fds.iter().find(|g| g.file_id == f.file_id).map(|g| g.fd);
        if owner != Some(pid) || first_fd != Some(f.fd) {
            continue;
        }
        for t in &e.tfd {
            crate::sys::files::epoll_add(f.fd, t.tfd as i32, t.events, t.data).map_err(|x| {
                format!(
                    "epoll fd {} (file id {}): adding target fd {} (events {:#x}): {x}",
                    f.fd, f.file_id, t.tfd, t.events
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_epoll_fdinfo() {
        let t = "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1030\n\
                 tfd:        4 events: 80000019 data:             1234  pos:0 ino:406 sdev:10\n\
                 tfd:       12 events:       19 data: ffffffffffffffff  pos:77 ino:1f sdev:fe00000\n";
        let v = parse(t).unwrap();
        assert_eq!(
            v,
            vec![
                TfdInfo {
                    tfd: 4,
                    events: 0x80000019,
                    data: 0x1234,
                    pos: 0,
                    ino: 0x406,
                    sdev: 0x10
                },
                TfdInfo {
                    tfd: 12,
                    events: 0x19,
                    data: u64::MAX,
                    pos: 77,
                    ino: 0x1f,
                    sdev: 0xfe00000
                },
            ]
        );
        assert!(parse("tfd: 4 events: zz data: 1 pos:0 ino:1 sdev:1\n").is_err());
    }

    #[test]
    fn targets_must_be_fds_of_the_owner() {
        let e = pb::EventpollFileEntry {
            tfd: vec![pb::EventpollTfdEntry {
                tfd: 9,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(check(&e, 5, &[0, 1, 9]).is_ok());
        let m = check(&e, 5, &[0, 1, 2]).unwrap_err();
        assert!(m.contains("target fd 9") && m.contains("pid 5"), "{m}");
    }
}
