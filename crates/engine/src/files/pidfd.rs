//! pidfds (`anon_inode:[pidfd]`, pidfs on 6.9+): CRIU 4.2's PIDFD entry in
//! files.img: the pid it refers to in the task's pid namespace (`nspid`,
//! -1 once that process is gone and reaped), its flags and its pidfs inode
//! (pidfds of one process share it).
//!
//! Dump refuses PIDFD_THREAD pidfds and pidfds of live processes outside
//! the dumped tree (the process would not exist at restore).
//!
//! Restore, pidfds of live processes: opened in the task itself once every
//! task of the tree exists (pidfd_open(nspid)); so one such description
//! held by several processes (inherited) is refused at dump (and, in
//! images from elsewhere, before any task is created).
//!
//! Restore, pidfds of dead processes: opened by the engine before it forks
//! the tree, like the other shared files (the tasks take them from its fd
//! pool, so one description held by several processes stays one): one
//! short-lived stand-in per dead process (by inode), one pidfd_open of it
//! per file id, then the stand-in dies (SIGKILL, as CRIU's does) and is
//! reaped. pidfds of one dead process, in one process or several, share an
//! inode again and those of two dead processes do not.

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
        if pid == 0 {
            // Alive, but in no pid namespace the dumper sees.
            return Err(c.unsupported(
                "a pidfd of a process outside the dumper's pid namespace (Pid: 0), not in the dumped tree",
            ));
        }
        if pid > 0 && !t.tree_pids.contains(&pid) {
            return Err(c.unsupported(format!(
                "a pidfd of pid {pid}, which is not in the dumped tree (it would not exist at restore)"
            )));
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

    /// pidfds: of tree processes or dead ones; one description of a live
    /// process's held by one process.
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

/// Whether the pidfd `c` refers to a dead (reaped) process: its fdinfo
/// says `Pid: -1`.
pub fn is_dead(c: &FdCtx) -> Result<bool, FileError> {
    let (pid, _) = parse(&fdinfo_text(c)?).map_err(|e| c.unsupported(e))?;
    Ok(pid == -1)
}

/// Validation: `holders` are the pids of the processes holding each pidfd
/// file (by file id); `pids` the tree's pids. One description of a live
/// process's pidfd must have one holder (the task opens it itself); one of
/// a dead process's may have several (the engine opens it before forking).
pub fn check(
    files: &[(u32, &pb::PidfdEntry)],
    holders: &std::collections::BTreeMap<u32, Vec<i32>>,
    pids: &[i32],
) -> Result<(), String> {
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
        if e.nspid != -1 && h.len() > 1 {
            return Err(format!(
                "file id {id}: one file description of the pidfd of live pid {} held by several processes ({h:?})",
                e.nspid
            ));
        }
    }
    Ok(())
}

// ---- Restore side -------------------------------------------------------

/// A pidfd to recreate: of a dead process, opened by the engine before the
/// tree is forked ([`open_dead`], once for all of them); of a live one, by
/// the task holding it once every task exists ([`open_all`]).
#[derive(Clone, Debug)]
pub struct PidfdFile(pub pb::PidfdEntry);

/// The pidfds of dead processes, opened at the first one asked for (the
/// ones no task took are closed with the rest of the scratch state).
#[derive(Default)]
struct Dead(Option<std::collections::BTreeMap<u32, std::os::fd::OwnedFd>>);

impl OpenFile for PidfdFile {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Pidfd
    }

    fn restore(&self, id: u32, cx: &mut RestoreCx) -> Result<Option<std::os::fd::OwnedFd>, OpenError> {
        if self.0.nspid != -1 {
            // Of a live process: opened by the task itself once every task exists.
            return Ok(None);
        }
        let files = cx.files;
        let dead = &mut cx.scratch::<Dead>().0;
        if dead.is_none() {
            let all: Vec<(u32, &pb::PidfdEntry)> = files
                .of::<PidfdFile>()
                .filter(|(_, p)| p.0.nspid == -1)
                .map(|(id, p)| (id, &p.0))
                .collect();
            *dead = Some(
                open_dead(&all).map_err(|e| super::set::open_err(pb::FdTypes::Pidfd, "pidfds of dead processes", e))?,
            );
        }
        let fd = dead.as_mut().and_then(|m| m.remove(&id)).ok_or_else(|| {
            super::set::open_err(
                pb::FdTypes::Pidfd,
                format!("pidfd file id {id}"),
                "not opened (engine bug)",
            )
        })?;
        Ok(Some(fd))
    }
}

/// In the restored task, once every task exists: open its pidfds of live
/// processes (`want`: file id -> entry; entries of dead processes are
/// skipped, the engine opened those) at fd numbers >= `above`
/// (close-on-exec; the caller dup3s them into place). Returns file id -> fd.
pub fn open_all(
    want: &std::collections::BTreeMap<u32, &pb::PidfdEntry>,
    above: i32,
) -> Result<std::collections::BTreeMap<u32, i32>, String> {
    let mut out = std::collections::BTreeMap::new();
    for (&id, e) in want.iter().filter(|(_, e)| e.nspid != -1) {
        let fd = crate::sys::files::pidfd_open(e.nspid, e.flags)
            .map_err(|x| format!("file id {id}: pidfd_open({}): {x}", e.nspid))?;
        // The pidfd_open fd is closed when `fd` goes.
        let n = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(above)).map_err(|x| {
            format!(
                "file id {id}: moving a pidfd above fd {above}: {}",
                std::io::Error::from(x)
            )
        })?;
        out.insert(id, n);
    }
    Ok(out)
}

/// In the engine, before the tree is forked: one pidfd (one open file
/// description) per file id of `dead` (entries of dead processes, nspid
/// -1), through one stand-in process per pidfs inode, so that pidfds of one
/// dead process share an inode and those of two do not. Each stand-in dies
/// by SIGKILL (as CRIU's does: that is the exit status the pidfd reports)
/// and is reaped before this returns.
pub fn open_dead(
    dead: &[(u32, &pb::PidfdEntry)],
) -> Result<std::collections::BTreeMap<u32, std::os::fd::OwnedFd>, String> {
    use crate::sys::files as sys;
    let mut by_ino: std::collections::BTreeMap<u32, Vec<(u32, u32)>> = std::collections::BTreeMap::new();
    for &(id, e) in dead {
        if e.nspid != -1 {
            return Err(format!("file id {id}: a pidfd of live pid {} (engine bug)", e.nspid));
        }
        by_ino.entry(e.ino).or_default().push((id, e.flags));
    }
    let mut out = std::collections::BTreeMap::new();
    for (ino, ids) in by_ino {
        let child = sys::fork_stand_in()
            .map_err(|e| format!("a stand-in for the dead process of pidfd inode {ino}: clone: {e}"))?;
        let mut res = Ok(());
        for (id, flags) in ids {
            match sys::pidfd_open(child, flags) {
                Ok(fd) => {
                    out.insert(id, fd);
                }
                Err(x) => {
                    res = Err(format!("file id {id}: pidfd of a dead process (inode {ino}): {x}"));
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
    fn shared_live_or_foreign_pidfds_are_refused() {
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
        // pidfds of one dead process in two processes, and one description
        // of it held by both.
        assert!(check(&[(2, &d2), (3, &d3)], &h(&[(2, &[5]), (3, &[6])]), &[5, 6]).is_ok());
        assert!(check(&[(2, &d2)], &h(&[(2, &[5, 6])]), &[5, 6]).is_ok());
        let e = check(&[(1, &live)], &h(&[(1, &[6])]), &[6]).unwrap_err();
        assert!(e.contains("pid 5"), "{e}");
    }
}
