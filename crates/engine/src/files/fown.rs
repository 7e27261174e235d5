//! The owner of an open file description (F_SETOWN/F_SETOWN_EX, F_SETSIG):
//! who gets SIGIO (or the F_SETSIG signal) for an O_ASYNC file or a lease
//! break, and with which credentials (F_GETOWNER_UIDS). CRIU's FownEntry,
//! carried by most kinds of files.img entries.
//!
//! Dump reads it from a duplicate of the fd (the owner belongs to the open
//! file, so pidfd_getfd sees it). Restore sets it once every restored task
//! exists (an owner may be any task of the tree), from a short-lived child
//! of the engine that holds the same file descriptions: it takes the dumped
//! owner's real and effective uid (as the kernel records them at F_SETOWN
//! time) around each F_SETOWN_EX, as CRIU does.

use cryo_image::pb;
use std::os::fd::RawFd;

/// F_OWNER_TID, F_OWNER_PID, F_OWNER_PGRP (struct f_owner_ex.type).
pub const F_OWNER_TID: u32 = 0;
pub const F_OWNER_PID: u32 = 1;
pub const F_OWNER_PGRP: u32 = 2;

/// The fown of a files.img entry, whatever its kind (None for kinds without one).
pub fn of_entry(e: &pb::FileEntry) -> Option<&pb::FownEntry> {
    if let Some(x) = &e.reg {
        return Some(&x.fown);
    }
    if let Some(x) = &e.pipe {
        return Some(&x.fown);
    }
    if let Some(x) = &e.memfd {
        return Some(&x.fown);
    }
    if let Some(x) = &e.efd {
        return Some(&x.fown);
    }
    if let Some(x) = &e.epfd {
        return Some(&x.fown);
    }
    if let Some(x) = &e.sgfd {
        return Some(&x.fown);
    }
    if let Some(x) = &e.tfd {
        return Some(&x.fown);
    }
    if let Some(x) = &e.ify {
        return Some(&x.fown);
    }
    if let Some(x) = &e.tty {
        return Some(&x.fown);
    }
    if let Some(x) = &e.ffy {
        return Some(&x.fown);
    }
    None
}

/// [`of_entry`], to fill in.
pub fn of_entry_mut(e: &mut pb::FileEntry) -> Option<&mut pb::FownEntry> {
    if let Some(x) = &mut e.reg {
        return Some(&mut x.fown);
    }
    if let Some(x) = &mut e.pipe {
        return Some(&mut x.fown);
    }
    if let Some(x) = &mut e.memfd {
        return Some(&mut x.fown);
    }
    if let Some(x) = &mut e.efd {
        return Some(&mut x.fown);
    }
    if let Some(x) = &mut e.epfd {
        return Some(&mut x.fown);
    }
    if let Some(x) = &mut e.sgfd {
        return Some(&mut x.fown);
    }
    if let Some(x) = &mut e.tfd {
        return Some(&mut x.fown);
    }
    if let Some(x) = &mut e.ify {
        return Some(&mut x.fown);
    }
    if let Some(x) = &mut e.tty {
        return Some(&mut x.fown);
    }
    if let Some(x) = &mut e.ffy {
        return Some(&mut x.fown);
    }
    None
}

/// The open-file flags of a files.img entry, for the kinds [`of_entry`] knows.
pub fn flags_of(e: &pb::FileEntry) -> Option<u32> {
    e.reg
        .as_ref()
        .map(|x| x.flags)
        .or(e.pipe.as_ref().map(|x| x.flags))
        .or(e.memfd.as_ref().map(|x| x.flags))
        .or(e.efd.as_ref().map(|x| x.flags))
        .or(e.epfd.as_ref().map(|x| x.flags))
        .or(e.sgfd.as_ref().map(|x| x.flags))
        .or(e.tfd.as_ref().map(|x| x.flags))
        .or(e.ify.as_ref().map(|x| x.flags))
        .or(e.tty.as_ref().map(|x| x.flags))
        .or(e.ffy.as_ref().map(|x| x.flags))
}

/// Restore side, in the task once its fds are at their numbers: O_ASYNC
/// on every fd whose file was O_ASYNC. The kernel records the fd number
/// that turned O_ASYNC on (SIGIO's si_fd), so the engine never sets it on
/// its own copies of the files.
pub fn set_async(async_files: &std::collections::BTreeSet<u32>, fds: &[(i32, u32)]) -> Result<(), String> {
    for &(fd, id) in fds {
        if async_files.contains(&id) {
            crate::sys::add_fl(fd, libc::O_ASYNC).map_err(|e| format!("fd {fd}: setting O_ASYNC: {e}"))?;
        }
    }
    Ok(())
}

/// Whether a fown says anything (a signal or an owner).
pub fn is_set(f: &pb::FownEntry) -> bool {
    f.signum != 0 || f.pid != 0
}

/// Dump side: the owner of the open file behind `fd` (a duplicate of the
/// task's fd), as CRIU records it: signum always, the owner's pid, type and
/// uids only when there is an owner. Pids are those of the dumper's pid
/// namespace.
pub fn query(fd: RawFd) -> std::io::Result<pb::FownEntry> {
    let q = crate::sys::fown_query(fd)?;
    let mut f = super::fown();
    f.signum = q.signum as u32;
    if q.pid > 0 {
        f.pid = q.pid as u32;
        f.pid_type = q.pid_type as u32;
        f.uid = q.uid;
        f.euid = q.euid;
    }
    Ok(f)
}

/// Restore side: check that an owner is a task (or, for a group owner, a
/// process group) of the restored tree; `what` names the file.
pub fn check(f: &pb::FownEntry, pids: &[i32], tids: &[i32], pgids: &[i32]) -> Result<(), String> {
    if f.pid == 0 {
        return Ok(());
    }
    let p = f.pid as i32;
    let ok = match f.pid_type {
        F_OWNER_TID => tids.contains(&p),
        F_OWNER_PID => pids.contains(&p),
        F_OWNER_PGRP => pgids.contains(&p),
        t => return Err(format!("owner type {t} is unknown")),
    };
    if ok {
        Ok(())
    } else {
        let what = ["thread", "process", "process group"][f.pid_type as usize];
        Err(format!(
            "its SIGIO owner is {what} {p}, which is not in the restored tree"
        ))
    }
}

/// Restore side: set the owners (F_SETSIG, then F_SETOWN_EX under the dumped
/// uids) of the engine's file descriptions `fds`, each paired with its
/// fown. Every owner task must exist by now.
pub fn apply(fds: &[(RawFd, pb::FownEntry)]) -> Result<(), String> {
    let v: Vec<crate::sys::FownSet> = fds
        .iter()
        .map(|(fd, f)| crate::sys::FownSet {
            fd: *fd,
            signum: f.signum as i32,
            pid: f.pid as i32,
            pid_type: f.pid_type as i32,
            uid: f.uid,
            euid: f.euid,
        })
        .collect();
    crate::sys::fown_set_all(&v).map_err(|(i, step, e)| format!("fd {} ({step}): {e}", fds[i].0))
}
