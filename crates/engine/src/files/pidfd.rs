//! pidfds (`anon_inode:[pidfd]`, pidfs on 6.9+): CRIU 4.2's PIDFD entry in
//! files.img: the pid it refers to in the task's pid namespace (`nspid`,
//! -1 once that process is gone and reaped), its flags and its pidfs inode
//! (pidfds of one process share it).
//!
//! Dump refuses PIDFD_THREAD pidfds and pidfds of live processes outside
//! the dumped tree (the process would not exist at restore). Restore opens
//! pidfds in the task itself once every task of the tree exists (the engine
//! opens every other file before forking, when the targets do not exist
//! yet): pidfd_open(nspid) for a live target; for a dead one a short-lived
//! child (exit signal 0, so no SIGCHLD reaches the program) whose pidfds
//! outlive it, one such child per dead process, so that pidfds of one dead
//! process still share an inode and those of two do not. Because of that a
//! pidfd file description held by several processes (inherited), or pidfds
//! of one dead process held by several, are refused at dump (and, in images
//! from elsewhere, before any task is created).

use super::anon::{fdinfo_text, is_anon};
use super::set::unsupported;
use super::{fown, DescribeCx, FdCtx, FdKind, FileError, FileSet, FileTable, OpenError, OpenFile, RestoreCx, SetError};
use cryo_image::pb;

/// PIDFD_THREAD (= O_EXCL): a pidfd of a thread, not supported (as in CRIU 4.2).
pub const PIDFD_THREAD: u32 = libc::O_EXCL as u32;

pub struct Pidfd;

/// `Pid:` and the last `NSpid:` field of a pidfd's fdinfo.
pub fn parse(text: &str) -> Result<(i32, i32), String> {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
    };
    let pid: i32 = field("Pid:")
        .and_then(|v| v.first().and_then(|s| s.parse().ok()))
        .ok_or("no Pid: line in the pidfd's fdinfo")?;
    let nspid = match field("NSpid:") {
        Some(v) => v.last().and_then(|s| s.parse().ok()).ok_or("a bad NSpid: line")?,
        None => pid,
    };
    Ok((pid, nspid))
}

impl FdKind for Pidfd {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Pidfd
    }

    fn detect(&self, c: &FdCtx) -> bool {
        is_anon(c, "[pidfd]")
    }

    fn dump(&self, c: &FdCtx, id: u32, t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        if c.flags() & PIDFD_THREAD != 0 {
            return Err(c.unsupported("a pidfd of a thread (PIDFD_THREAD) is not supported"));
        }
        let (pid, nspid) = parse(&fdinfo_text(c)?).map_err(|e| c.unsupported(e))?;
        if pid > 0 && !t.tree_pids.contains(&pid) {
            return Err(c.unsupported(format!(
                "a pidfd of pid {pid}, which is not in the dumped tree (it would not exist at restore)"
            )));
        }
        if pid <= 0 {
            let ino = c.stat.st_ino;
            match t.dead_pidfds.get(&ino) {
                Some(&q) if q != c.pid => {
                    return Err(c.unsupported(format!(
                        "a pidfd of a dead process that pid {q} also holds pidfds of: \
                         restore recreates a dead process's pidfds within one process only"
                    )))
                }
                _ => {
                    t.dead_pidfds.insert(ino, c.pid);
                }
            }
        }
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Pidfd as i32,
            id,
            pidfd: Some(pb::PidfdEntry {
                id,
                ino: c.stat.st_ino as u32,
                flags: c.flags() & !(libc::O_RDWR as u32),
                nspid: if pid > 0 { nspid } else { -1 },
                fown: fown(),
            }),
            ..Default::default()
        })
    }

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        let p = e.pidfd.as_ref().ok_or_else(|| cx.bad("PIDFD without pidfd"))?;
        Ok(Box::new(PidfdFile(*p)))
    }

    /// pidfds: of tree processes, each held by one process.
    fn check(&self, files: &FileSet) -> Result<(), SetError> {
        let pids = files.tree.pids();
        let mut holders: std::collections::BTreeMap<u32, Vec<i32>> = std::collections::BTreeMap::new();
        for t in &files.tree.tasks {
            for f in &t.fds {
                let h = holders.entry(f.file_id).or_default();
                if !h.contains(&t.pid) {
                    h.push(t.pid);
                }
            }
        }
        let pidfds: Vec<(u32, &pb::PidfdEntry)> = files.of::<PidfdFile>().map(|(id, p)| (id, &p.0)).collect();
        check(&pidfds, &holders, &pids).map_err(|what| unsupported(&files.files_file, 0, what))
    }
}

/// Validation: `holders` are the pids of the processes holding each pidfd
/// file (by file id); `pids` the tree's pids.
pub fn check(
    files: &[(u32, &pb::PidfdEntry)],
    holders: &std::collections::BTreeMap<u32, Vec<i32>>,
    pids: &[i32],
) -> Result<(), String> {
    let mut dead_holder: std::collections::BTreeMap<u32, i32> = std::collections::BTreeMap::new();
    for &(id, e) in files {
        if e.flags & PIDFD_THREAD != 0 {
            return Err(format!("file id {id}: a pidfd of a thread (PIDFD_THREAD)"));
        }
        if super::fown::is_set(&e.fown) {
            return Err(format!("file id {id}: a pidfd with a SIGIO owner or signal"));
        }
        if e.nspid != -1 && !pids.contains(&e.nspid) {
            return Err(format!(
                "file id {id}: a pidfd of pid {}, which is not in the tree",
                e.nspid
            ));
        }
        let h = holders.get(&id).map(|v| v.as_slice()).unwrap_or(&[]);
        if h.len() > 1 {
            return Err(format!(
                "file id {id}: one pidfd file description held by several processes ({h:?})"
            ));
        }
        if let (-1, Some(&p)) = (e.nspid, h.first()) {
            if let Some(q) = dead_holder.insert(e.ino, p).filter(|&q| q != p) {
                return Err(format!(
                    "file id {id}: pidfds of one dead process (inode {}) held by pids {q} and {p}",
                    e.ino
                ));
            }
        }
    }
    Ok(())
}

// ---- Restore side -------------------------------------------------------

/// A pidfd to recreate: opened by the task holding it, once every task
/// exists ([`open_all`]).
#[derive(Clone, Debug)]
pub struct PidfdFile(pub pb::PidfdEntry);

impl OpenFile for PidfdFile {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Pidfd
    }

    /// Opened by the task itself once every task exists.
    fn restore(&self, _id: u32, _cx: &mut RestoreCx) -> Result<Option<std::os::fd::OwnedFd>, OpenError> {
        Ok(None)
    }
}

/// In the restored task, once every task exists: open its pidfds
/// (`want`: file id -> entry) at fd numbers >= `above` (close-on-exec;
/// the caller dup3s them into place). Returns file id -> fd.
pub fn open_all(
    want: &std::collections::BTreeMap<u32, &pb::PidfdEntry>,
    above: i32,
) -> Result<std::collections::BTreeMap<u32, i32>, String> {
    use crate::sys::files as sys;
    use std::collections::BTreeMap;
    let mut out = BTreeMap::new();
    let high = |fd: std::os::fd::OwnedFd| -> Result<i32, String> {
        // The pidfd_open fd is closed when `fd` goes.
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(above))
            .map_err(|e| format!("moving a pidfd above fd {above}: {}", std::io::Error::from(e)))
    };
    // Live targets.
    for (&id, e) in want.iter().filter(|(_, e)| e.nspid != -1) {
        let fd =
            sys::pidfd_open(e.nspid, e.flags).map_err(|x| format!("file id {id}: pidfd_open({}): {x}", e.nspid))?;
        out.insert(id, high(fd)?);
    }
    // Dead targets: one short-lived child per dead process (by inode).
    let mut by_ino: BTreeMap<u32, Vec<(u32, u32)>> = BTreeMap::new();
    for (&id, e) in want.iter().filter(|(_, e)| e.nspid == -1) {
        by_ino.entry(e.ino).or_default().push((id, e.flags));
    }
    for (ino, ids) in by_ino {
        let child = sys::fork_stand_in()
            .map_err(|e| format!("a stand-in for the dead process of pidfd inode {ino}: clone: {e}"))?;
        let mut res = Ok(());
        for (id, flags) in ids {
            match sys::pidfd_open(child, flags).map_err(|x| x.to_string()).and_then(high) {
                Ok(fd) => {
                    out.insert(id, fd);
                }
                Err(x) => {
                    res = Err(format!("file id {id}: pidfd of a dead process: {x}"));
                    break;
                }
            }
        }
        sys::reap_stand_in(child);
        res?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pidfd_fdinfo() {
        let t = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1234\nPid:\t77\nNSpid:\t77\t5\n";
        assert_eq!(parse(t).unwrap(), (77, 5));
        let t = "pos:\t0\nflags:\t02\nPid:\t-1\nNSpid:\t-1\n";
        assert_eq!(parse(t).unwrap(), (-1, -1));
        assert!(parse("pos:\t0\n").is_err());
    }

    #[test]
    fn shared_or_foreign_pidfds_are_refused() {
        let live = pb::PidfdEntry {
            id: 1,
            ino: 10,
            flags: 0,
            nspid: 5,
            fown: fown(),
        };
        let dead = |id, ino| pb::PidfdEntry {
            id,
            ino,
            flags: 0,
            nspid: -1,
            fown: fown(),
        };
        let (d2, d3) = (dead(2, 20), dead(3, 20));
        let h = |v: &[(u32, &[i32])]| v.iter().map(|(i, p)| (*i, p.to_vec())).collect();
        assert!(check(
            &[(1, &live), (2, &d2), (3, &d3)],
            &h(&[(1, &[5]), (2, &[5]), (3, &[5])]),
            &[5]
        )
        .is_ok());
        let e = check(&[(1, &live)], &h(&[(1, &[5, 6])]), &[5, 6]).unwrap_err();
        assert!(e.contains("several processes"), "{e}");
        let e = check(&[(2, &d2), (3, &d3)], &h(&[(2, &[5]), (3, &[6])]), &[5, 6]).unwrap_err();
        assert!(e.contains("dead process"), "{e}");
        let e = check(&[(1, &live)], &h(&[(1, &[6])]), &[6]).unwrap_err();
        assert!(e.contains("pid 5"), "{e}");
    }
}
