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
use super::{fown, FdCtx, FdKind, FileError, FileTable};
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

pub use restore_side::{open_all, open_dead};

#[allow(unsafe_code)]
mod restore_side {
    use cryo_image::pb;
    use std::collections::BTreeMap;
    use std::os::fd::{FromRawFd, OwnedFd};

    fn pidfd_open(pid: i32, flags: u32) -> std::io::Result<i32> {
        // SAFETY: scalar arguments.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags & libc::O_NONBLOCK as u32) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r as i32)
        }
    }

    /// In the restored task, once every task exists: open its pidfds of
    /// live processes (`want`: file id -> entry; entries of dead processes
    /// are skipped, the engine opened those) at fd numbers >= `above`
    /// (close-on-exec; the caller dup3s them into place). Returns file id
    /// -> fd.
    pub fn open_all(want: &BTreeMap<u32, &pb::PidfdEntry>, above: i32) -> Result<BTreeMap<u32, i32>, String> {
        let mut out = BTreeMap::new();
        for (&id, e) in want.iter().filter(|(_, e)| e.nspid != -1) {
            let fd = pidfd_open(e.nspid, e.flags).map_err(|x| format!("file id {id}: pidfd_open({}): {x}", e.nspid))?;
            // SAFETY: scalar arguments; fd is ours.
            let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, above) };
            let x = std::io::Error::last_os_error();
            // SAFETY: closing the fd pidfd_open gave us.
            unsafe { libc::close(fd) };
            if n < 0 {
                return Err(format!("file id {id}: moving a pidfd above fd {above}: {x}"));
            }
            out.insert(id, n);
        }
        Ok(out)
    }

    /// In the engine, before the tree is forked: one pidfd (one open file
    /// description) per file id of `dead` (entries of dead processes,
    /// nspid -1), through one stand-in process per pidfs inode, so that
    /// pidfds of one dead process share an inode and those of two do not.
    /// Each stand-in is killed (SIGKILL) and reaped before this returns.
    pub fn open_dead(dead: &[(u32, &pb::PidfdEntry)]) -> Result<BTreeMap<u32, OwnedFd>, String> {
        let mut by_ino: BTreeMap<u32, Vec<(u32, u32)>> = BTreeMap::new();
        for &(id, e) in dead {
            if e.nspid != -1 {
                return Err(format!("file id {id}: a pidfd of live pid {} (engine bug)", e.nspid));
            }
            by_ino.entry(e.ino).or_default().push((id, e.flags));
        }
        let mut out = BTreeMap::new();
        for (ino, ids) in by_ino {
            // SAFETY: a plain fork (no shared memory, exit signal 0: no
            // SIGCHLD for the engine); the child only makes raw syscalls.
            let child = unsafe { libc::syscall(libc::SYS_clone, 0, 0, 0, 0, 0) };
            if child < 0 {
                return Err(format!(
                    "a stand-in for the dead process of pidfd inode {ino}: clone: {}",
                    std::io::Error::last_os_error()
                ));
            }
            if child == 0 {
                // SAFETY: the child kills itself at once (a zombie until
                // reaped, so the parent's pidfd_open finds it either way).
                unsafe {
                    libc::syscall(libc::SYS_kill, libc::syscall(libc::SYS_getpid), libc::SIGKILL);
                    libc::_exit(0)
                }
            }
            let child = child as i32;
            let mut res = Ok(());
            for (id, flags) in ids {
                match pidfd_open(child, flags) {
                    Ok(fd) => {
                        // SAFETY: pidfd_open gave us this fd.
                        out.insert(id, unsafe { OwnedFd::from_raw_fd(fd) });
                    }
                    Err(x) => {
                        res = Err(format!("file id {id}: pidfd of a dead process (inode {ino}): {x}"));
                        break;
                    }
                }
            }
            let mut st = 0;
            loop {
                // SAFETY: reaping our own child (exit signal 0: __WALL).
                let r = unsafe { libc::waitpid(child, &mut st, libc::__WALL) };
                if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    break;
                }
            }
            res?;
        }
        Ok(out)
    }
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
