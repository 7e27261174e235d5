//! File locks (POSIX, flock, OFD) and leases held through an fd: filelocks.img entries,
//! dumped with `--file-locks` (criu's spelling); without it a tree holding
//! locks is refused.
//!
//! A lease being broken (an open that conflicts with it was made: the
//! kernel signalled the holder and gives it /proc/sys/fs/lease-break-time
//! seconds to give the lease up or downgrade it) is recorded as CRIU does:
//! FL_LEASE with the type the lease is being broken to (F_GETLEASE's answer,
//! which /proc shows too: READ or UNLCK) marked with [`LEASE_BREAKING`].
//! The type the lease had before follows from it and from the open file's
//! access mode (see [`lease_to_take`]). Restore takes that lease again in the
//! task, through its fd, and once every task is ready the engine starts the
//! break again with a conflicting non-blocking open ([`break_again`]), made
//! while a short-lived helper owns the file, so the signal of that break goes
//! to the helper, not to the task: the task got its signal before the dump.
//! The break time starts again at restore (the kernel does not show how much
//! of it was left; CRIU does the same).

use crate::proc::FileLockInfo;
use cryo_image::pb;
use std::os::fd::RawFd;

pub const FL_POSIX: u32 = 1;
pub const FL_FLOCK: u32 = 2;
pub const FL_OFD: u32 = 4;
/// A lease (F_SETLEASE), held by the open file.
pub const FL_LEASE: u32 = 8;
/// CRIU's mark on the type of a lease being broken.
pub const LEASE_BREAKING: u32 = 4;

/// The filelocks.img entry of a lock held by `pid` through `fd`. As CRIU,
/// an OFD lock (which /proc shows with pid -1) is recorded with the pid and
/// fd of a task holding its open file: restore takes it again through that fd.
pub fn lock_entry(l: &FileLockInfo, pid: i32, fd: i32) -> Result<pb::FileLockEntry, String> {
    let flag = match l.class.as_str() {
        "POSIX" => FL_POSIX,
        "FLOCK" => FL_FLOCK,
        "OFDLCK" => FL_OFD,
        "LEASE" if l.mode == "ACTIVE" || l.mode == "BREAKING" => FL_LEASE,
        "LEASE" => return Err(format!("a lease in state {} is not supported", l.mode)),
        other => return Err(format!("{other} locks are not supported")),
    };
    let ty = if l.mode == "BREAKING" {
        // The type it is being broken to: a downgrade to a read lease or
        // the end of the lease.
        LEASE_BREAKING
            | match l.kind.as_str() {
                "READ" => libc::F_RDLCK,
                "UNLCK" => libc::F_UNLCK,
                other => return Err(format!("a lease being broken to {other} is not supported")),
            } as u32
    } else {
        (match l.kind.as_str() {
            "READ" => libc::F_RDLCK,
            "WRITE" => libc::F_WRLCK,
            other => return Err(format!("{other} lock type is not supported")),
        }) as u32
    };
    Ok(pb::FileLockEntry {
        flag,
        r#type: ty,
        pid,
        fd,
        start: l.start,
        len: l.end.map(|e| e - l.start + 1).unwrap_or(0),
    })
}

/// Whether a /proc lock line is a lease being broken.
pub fn is_breaking_line(l: &FileLockInfo) -> bool {
    l.class == "LEASE" && l.mode == "BREAKING"
}

/// Whether a filelocks.img entry is a lease being broken.
pub fn is_breaking(e: &pb::FileLockEntry) -> bool {
    e.flag == FL_LEASE && e.r#type & LEASE_BREAKING != 0
}

/// Whether restore knows the type of a lease entry: a read or a write
/// lease, or a lease being broken to a read lease or to none.
pub fn lease_type_ok(ty: u32) -> bool {
    let (rd, wr, un) = (libc::F_RDLCK as u32, libc::F_WRLCK as u32, libc::F_UNLCK as u32);
    ty == rd || ty == wr || ty == LEASE_BREAKING | rd || ty == LEASE_BREAKING | un
}

/// The lease restore takes for an entry of type `ty` through an open file
/// of access mode `accmode` (O_RDONLY, O_WRONLY or O_RDWR). An active lease
/// is taken as it was. A lease being broken to a read lease was a write
/// lease (a read lease is only ever broken to none). One being broken to
/// none was a read lease on a read-only file (CRIU's rule; [`dump_entry`]
/// refuses the write lease a read-only file can hold too, which the image
/// cannot tell apart), a write lease otherwise (a file open for writing
/// cannot hold a read lease).
pub fn lease_to_take(ty: u32, accmode: i32) -> i32 {
    if ty & LEASE_BREAKING == 0 {
        ty as i32
    } else if (ty & !LEASE_BREAKING) as i32 == libc::F_RDLCK || accmode != libc::O_RDONLY {
        libc::F_WRLCK
    } else {
        libc::F_RDLCK
    }
}

/// Dump side: the filelocks.img entry of lock `l`, shown in the fdinfo of
/// fd `fd` of `pid` whose open-file flags are `flags` ([`lock_entry`]);
/// `deleted` if the file is deleted. A write lease on a deleted file is
/// refused: its data is saved through a new open of the file, which would
/// break the lease (a signal to the task, and a wait for it to give the
/// lease up). For a lease being broken to none through a read-only fd, which may be a
/// read lease or a write lease, a non-blocking read-only open of the file
/// tells: it conflicts with a write lease (EWOULDBLOCK; this break is already
/// on, so the kernel neither signals nor changes anything) and not with a
/// read lease (the open succeeds; inotify/fanotify watchers of the file see
/// an open and a close). A write lease is refused: CRIU's image says "read
/// lease" for it.
pub fn dump_entry(l: &FileLockInfo, pid: i32, fd: i32, flags: u32, deleted: bool) -> Result<pb::FileLockEntry, String> {
    let e = lock_entry(l, pid, fd)?;
    if e.flag != FL_LEASE {
        return Ok(e);
    }
    let accmode = (flags & libc::O_ACCMODE as u32) as i32;
    let taken = lease_to_take(e.r#type, accmode);
    if deleted && taken == libc::F_WRLCK {
        return Err("a write lease on a deleted file is not supported (saving the file's data opens it, which would break the lease)".into());
    }
    if !is_breaking(&e) || taken != libc::F_RDLCK {
        return Ok(e);
    }
    let err = match crate::sys::files::open_read_nonblock(&format!("/proc/{pid}/fd/{fd}")) {
        Ok(_) => return Ok(e),
        Err(err) => err,
    };
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err("a write lease taken through a read-only fd is being broken: CRIU's image cannot tell it from a read lease (its restore would take a read lease)".into())
    } else {
        Err(format!(
            "checking the lease being broken (a read-only open of the file): {err}"
        ))
    }
}

/// Dump side, before the locks of fd `fd` of the task behind `pidfd` are
/// read: a lease whose break time is up stays listed as being broken until
/// the kernel next looks at it (leases time out lazily: on an open of the
/// file, F_GETLEASE or F_SETLEASE). F_GETLEASE on a duplicate of the fd (the
/// same open file) has it done now, so that what is dumped is what the task
/// would find: no lease, or the read lease it was downgraded to. The task
/// cannot tell: its own next look would do the same.
pub fn time_out_breaks(pidfd: RawFd, fd: i32) -> std::io::Result<()> {
    let dup = crate::sys::pidfd_getfd(pidfd, fd)?;
    crate::sys::files::get_lease(&dup).map(drop)
}

/// A lease whose break restore starts again: the engine's fd on its open
/// file, the type it is being broken to (F_RDLCK or F_UNLCK), and whether
/// the file has an owner in the images (F_SETOWN; a lease gives the file
/// one when it is taken, the task may have removed it).
#[derive(Clone, Copy, Debug)]
pub struct Rebreak {
    pub fd: RawFd,
    pub to: i32,
    pub owned: bool,
}

/// Restore side, once every task has taken its leases again and before the
/// owners of the files are set (files::fown): start each break again with
/// an open that conflicts with the lease, as the one before the dump did:
/// for writing to break it to none, for reading to downgrade it, non-blocking
/// (it fails with EWOULDBLOCK once the break is on). The kernel signals the
/// owner of each file whose lease a break starts (one open breaks the read
/// leases of every open file of the inode): the opens are made by a
/// short-lived child of the engine that owns all the files meanwhile and
/// blocks every signal, so no task gets a second signal (the pending ones
/// die with the child). A file without an owner in the images gets none back.
pub fn break_again(v: &[Rebreak]) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    let opens: Vec<crate::sys::files::LeaseBreak> = v
        .iter()
        .map(|b| crate::sys::files::LeaseBreak {
            fd: b.fd,
            for_writing: b.to == libc::F_UNLCK,
            keep_owner: b.owned,
        })
        .collect();
    match crate::sys::files::break_leases(&opens).map_err(|e| e.to_string())? {
        crate::sys::files::LeaseBreakEnd::Done => Ok(()),
        crate::sys::files::LeaseBreakEnd::Status(st) => {
            Err(format!("the helper breaking leases ended with status {st:#x}"))
        }
        crate::sys::files::LeaseBreakEnd::Failed { index, step, errno } => {
            let b = v.get(index).copied().unwrap_or(v[0]);
            let what = match step {
                0 => "F_SETOWN to the helper",
                1 => "the conflicting open succeeded: there was no lease to break",
                2 => "the conflicting open",
                _ => "removing the helper as owner",
            };
            let to = if b.to == libc::F_UNLCK { "none" } else { "a read lease" };
            Err(if errno == 0 {
                format!("fd {} (lease broken to {to}): {what}", b.fd)
            } else {
                format!(
                    "fd {} (lease broken to {to}): {what}: {}",
                    b.fd,
                    std::io::Error::from_raw_os_error(errno)
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_flock_and_ofd() {
        let l = crate::proc::parse_lock_line("1: POSIX  ADVISORY  WRITE 7 fe:00:77 10 109").unwrap();
        let e = lock_entry(&l, 7, 3).unwrap();
        assert_eq!(
            (e.flag, e.r#type, e.pid, e.fd, e.start, e.len),
            (FL_POSIX, libc::F_WRLCK as u32, 7, 3, 10, 100)
        );
        let l = crate::proc::parse_lock_line("2: FLOCK  ADVISORY  READ 7 fe:00:77 0 EOF").unwrap();
        let e = lock_entry(&l, 7, 4).unwrap();
        assert_eq!((e.flag, e.r#type, e.len), (FL_FLOCK, libc::F_RDLCK as u32, 0));
        let l = crate::proc::parse_lock_line("4: OFDLCK ADVISORY  WRITE -1 fe:00:77 100 199").unwrap();
        let e = lock_entry(&l, 7, 5).unwrap();
        assert_eq!(
            (e.flag, e.r#type, e.pid, e.fd, e.start, e.len),
            (FL_OFD, libc::F_WRLCK as u32, 7, 5, 100, 100)
        );
        let l = crate::proc::parse_lock_line("3: LEASE  ACTIVE  READ 7 fe:00:77 0 EOF").unwrap();
        let e = lock_entry(&l, 7, 4).unwrap();
        assert_eq!((e.flag, e.r#type, e.pid, e.fd), (FL_LEASE, libc::F_RDLCK as u32, 7, 4));
    }

    #[test]
    fn leases_being_broken() {
        // As CRIU: the target type, marked LEASE_BREAKING.
        let l = crate::proc::parse_lock_line("3: LEASE  BREAKING  UNLCK 7 fe:00:77 0 EOF").unwrap();
        assert!(is_breaking_line(&l));
        let e = lock_entry(&l, 7, 4).unwrap();
        assert_eq!((e.flag, e.r#type, e.pid, e.fd, e.len), (FL_LEASE, 6, 7, 4, 0));
        assert!(is_breaking(&e) && lease_type_ok(e.r#type));
        let l = crate::proc::parse_lock_line("3: LEASE  BREAKING  READ 7 fe:00:77 0 EOF").unwrap();
        let e = lock_entry(&l, 7, 4).unwrap();
        assert_eq!((e.flag, e.r#type), (FL_LEASE, 4));
        assert!(is_breaking(&e) && lease_type_ok(e.r#type));
        let l = crate::proc::parse_lock_line("3: LEASE  BREAKING  WRITE 7 fe:00:77 0 EOF").unwrap();
        assert!(lock_entry(&l, 7, 4).unwrap_err().contains("broken to WRITE"));
        let l = crate::proc::parse_lock_line("3: LEASE  BREAKER  READ 7 fe:00:77 0 EOF").unwrap();
        assert!(lock_entry(&l, 7, 4).unwrap_err().contains("BREAKER"));
        assert!(!lease_type_ok(LEASE_BREAKING | libc::F_WRLCK as u32) && !lease_type_ok(libc::F_UNLCK as u32));
    }

    #[test]
    fn the_lease_taken_again() {
        let (rd, wr, un) = (libc::F_RDLCK as u32, libc::F_WRLCK as u32, libc::F_UNLCK as u32);
        assert_eq!(lease_to_take(rd, libc::O_RDONLY), libc::F_RDLCK);
        assert_eq!(lease_to_take(wr, libc::O_RDONLY), libc::F_WRLCK);
        // Broken to a read lease: it was a write lease, whatever the file's mode.
        assert_eq!(lease_to_take(LEASE_BREAKING | rd, libc::O_RDONLY), libc::F_WRLCK);
        assert_eq!(lease_to_take(LEASE_BREAKING | rd, libc::O_RDWR), libc::F_WRLCK);
        // Broken to none: a read lease on a read-only file, else a write lease.
        assert_eq!(lease_to_take(LEASE_BREAKING | un, libc::O_RDONLY), libc::F_RDLCK);
        assert_eq!(lease_to_take(LEASE_BREAKING | un, libc::O_WRONLY), libc::F_WRLCK);
        assert_eq!(lease_to_take(LEASE_BREAKING | un, libc::O_RDWR), libc::F_WRLCK);
    }
}
