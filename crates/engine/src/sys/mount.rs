//! The new mount API (Linux 5.2+): detached mounts made by the engine and
//! attached later by a restored task in its own mount namespace
//! (state::mnt's late mounts, below a proc that only the tree's pid 1 can
//! mount).

use super::{cvt, owned};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;

/// MOUNT_ATTR_* of fsmount(2) for MS_* per-mount flags (MS_RDONLY left out:
/// the caller makes a mount read-only once it is filled).
pub fn mount_attrs(ms: u32) -> u32 {
    let mut a = 0;
    for (m, attr) in [
        (libc::MS_NOSUID, 0x2),
        (libc::MS_NODEV, 0x4),
        (libc::MS_NOEXEC, 0x8),
        (libc::MS_NOATIME, 0x10),
        (libc::MS_STRICTATIME, 0x20),
        (libc::MS_NODIRATIME, 0x80),
    ] {
        if ms & m as u32 != 0 {
            a |= attr;
        }
    }
    a
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{s:?} holds a NUL")))
}

/// open_tree(OPEN_TREE_CLONE): a detached copy of the mount at `path` (not
/// its submounts).
pub fn clone_tree(path: &str) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    // SAFETY: a NUL-terminated path, scalar flags.
    owned(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            p.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC,
        )
    })
}

/// A new detached mount of file system `fstype` from `source` with the
/// comma-separated `options` (each `key=value` or a flag) and the per-mount
/// MOUNT_ATTR_* `attrs`.
pub fn new_mount(fstype: &str, source: &str, options: &str, attrs: u32) -> io::Result<OwnedFd> {
    let t = cstr(fstype)?;
    // SAFETY: a NUL-terminated name, scalar flags.
    let fs = owned(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), FSOPEN_CLOEXEC) })?;
    let config = |cmd: libc::c_uint, key: Option<&str>, value: Option<&str>| -> io::Result<()> {
        let k = key.map(cstr).transpose()?;
        let v = value.map(cstr).transpose()?;
        // SAFETY: an fs context fd, NUL-terminated strings or nulls, as fsconfig(2) takes them.
        cvt(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                cmd,
                k.as_ref().map_or(std::ptr::null(), |k| k.as_ptr()),
                v.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
                0,
            )
        })
        .map(|_| ())
        .map_err(|e| io::Error::new(e.kind(), format!("fsconfig {}: {e}", key.unwrap_or("create"))))
    };
    config(FSCONFIG_SET_STRING, Some("source"), Some(source))?;
    for o in options.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some((k, v)) => config(FSCONFIG_SET_STRING, Some(k), Some(v))?,
            None => config(FSCONFIG_SET_FLAG, Some(o), None)?,
        }
    }
    config(FSCONFIG_CMD_CREATE, None, None)?;
    // SAFETY: an fs context fd, scalar flags.
    owned(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
}

/// move_mount(2): attach the detached mount `fd` at `target`.
pub fn attach(fd: RawFd, target: &str) -> io::Result<()> {
    let e = cstr("")?;
    let t = cstr(target)?;
    // SAFETY: NUL-terminated paths, scalar fds and flags.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd,
            e.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(|_| ())
}
