//! Shared bits of the anon-inode fd kinds (eventfd, timerfd, signalfd,
//! inotify, epoll): recognising them, reading their /proc fdinfo text, and
//! the small syscall helpers their restore sides share.
//!
//! All of them are anon inodes on 6.18 (no type bits in st_mode, one inode
//! for every file), told apart by the /proc/PID/fd link text. Their state is
//! in /proc/PID/fdinfo/FD, one `key: value` line per field (several `tfd:` or
//! `inotify wd:` lines for epoll and inotify), which [`FdInfo`] only keeps the
//! first of: the kinds read the whole text again (the task is frozen, the
//! text does not change).
//!
//! [`FdInfo`]: crate::proc::FdInfo

use super::{FdCtx, FileError};
use cryo_image::pb;

/// Does the fd link name the anon inode `name` ("[eventfd]", "inotify", ...)?
pub fn is_anon(c: &FdCtx, name: &str) -> bool {
    c.link.strip_prefix("anon_inode:") == Some(name)
}

/// The whole /proc/PID/fdinfo/FD text of the fd.
pub fn fdinfo_text(c: &FdCtx) -> Result<String, FileError> {
    let p = format!("/proc/{}/fdinfo/{}", c.pid, c.fd);
    std::fs::read_to_string(&p).map_err(|source| FileError::Io {
        pid: c.pid,
        fd: c.fd,
        what: format!("reading {p}"),
        source,
    })
}

/// The value of the first `key:` line (trimmed).
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

/// A fdinfo field that must be there, parsed by `parse`; errors name the key.
pub fn need<T>(text: &str, key: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, String> {
    let v = field(text, key).ok_or_else(|| format!("no {key:?} line in fdinfo"))?;
    parse(v).ok_or_else(|| format!("bad {key:?} value {v:?} in fdinfo"))
}

pub fn hex64(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim(), 16).ok()
}

pub fn dec64(s: &str) -> Option<u64> {
    s.trim().parse().ok()
}

/// `key:value` tokens of one line ("tfd:        4 events: 19 data: 4 ..."):
/// the value after `key:` (spaces after the colon skipped).
pub fn token<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("{key}:");
    let mut at = 0;
    while let Some(i) = line[at..].find(&pat) {
        let start = at + i;
        // A whole key: start of line or after a space.
        if start == 0 || line.as_bytes()[start - 1] == b' ' || line.as_bytes()[start - 1] == b'\t' {
            let rest = line[start + pat.len()..].trim_start();
            return Some(rest.split_whitespace().next().unwrap_or(""));
        }
        at = start + pat.len();
    }
    None
}

/// Kernel dev_t (as fdinfo's `sdev:` and CRIU's images hold it: major << 20 |
/// minor) to (major, minor).
pub fn kdev_split(d: u32) -> (u32, u32) {
    (d >> 20, d & 0xfffff)
}

// ---- Restore side -------------------------------------------------------

/// Set the file status flags of the image (those F_SETFL can change).
pub fn set_status_flags(fd: &std::os::fd::OwnedFd, flags: u32) -> std::io::Result<()> {
    let st = flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND | libc::O_NOATIME | libc::O_DIRECT);
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::from_bits_truncate(st)),
    )
    .map(|_| ())
    .map_err(std::io::Error::from)
}

/// A newtype kind's `describe`: the entry's body for its type, checked by
/// `check` (errors: "entry I (file id N, TYPE): WHAT").
pub fn describe_body<B, F: super::OpenFile>(
    e: &pb::FileEntry,
    cx: &super::DescribeCx,
    body: Option<B>,
    check: impl Fn(&B) -> Result<(), String>,
    make: impl Fn(B) -> F,
) -> Result<Box<dyn super::OpenFile>, super::SetError> {
    let ty = pb::FdTypes::try_from(e.r#type).map(|t| t.as_str_name()).unwrap_or("?");
    let what = |w: String| super::set::bad(cx.file, 0, format!("entry {} (file id {}, {ty}): {w}", cx.index, e.id));
    let b = body.ok_or_else(|| what("the entry has no body for its type".into()))?;
    check(&b).map_err(what)?;
    Ok(Box::new(make(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_fields() {
        let l = "tfd:        4 events: 80000019 data:             1234  pos:0 ino:406 sdev:10";
        assert_eq!(token(l, "tfd"), Some("4"));
        assert_eq!(token(l, "events"), Some("80000019"));
        assert_eq!(token(l, "data"), Some("1234"));
        assert_eq!(token(l, "pos"), Some("0"));
        assert_eq!(token(l, "ino"), Some("406"));
        assert_eq!(token(l, "sdev"), Some("10"));
        assert_eq!(token(l, "mask"), None);
        let w = "inotify wd:1 ino:992039 sdev:fe00000 mask:100 ignored_mask:0 fhandle-bytes:8";
        assert_eq!(token(w, "mask"), Some("100"));
        assert_eq!(token(w, "ignored_mask"), Some("0"));
        let t = "pos:\t0\nflags:\t02\nsettime flags: 01\n";
        assert_eq!(field(t, "settime flags"), Some("01"));
        assert_eq!(field(t, "flags"), Some("02"));
        assert_eq!(kdev_split(0xfe00000), (254, 0));
    }
}
