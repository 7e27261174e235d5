//! File locks (POSIX, flock, OFD) and leases held through an fd: filelocks.img entries,
//! dumped with `--file-locks` (criu's spelling); without it a tree holding
//! locks is refused.

use crate::proc::FileLockInfo;
use cryo_image::pb;

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
        "LEASE" if l.mode == "ACTIVE" => FL_LEASE,
        "LEASE" => {
            return Err(format!(
                "a {} lease (a conflicting open is waiting for it to be given up) is not supported yet",
                l.mode
            ))
        }
        other => return Err(format!("{other} locks are not supported")),
    };
    let ty = match l.kind.as_str() {
        "READ" => libc::F_RDLCK,
        "WRITE" => libc::F_WRLCK,
        other => return Err(format!("{other} lock type is not supported")),
    } as u32;
    Ok(pb::FileLockEntry {
        flag,
        r#type: ty,
        pid,
        fd,
        start: l.start,
        len: l.end.map(|e| e - l.start + 1).unwrap_or(0),
    })
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
        let l = crate::proc::parse_lock_line("3: LEASE  BREAKING  UNLCK 7 fe:00:77 0 EOF").unwrap();
        let m = lock_entry(&l, 7, 4).unwrap_err();
        assert!(m.contains("BREAKING lease"), "{m}");
    }
}
