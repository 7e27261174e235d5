//! userfaultfd(2) ioctls and PAGEMAP_SCAN with write-protect flags: the
//! memory tracking of incremental dumps (`dump::track`).
//!
//! A userfaultfd is bound to the mm of the process that created it (so the
//! dump creates it inside the target, see
//! [`crate::parasite::make_userfaultfd`]), but its ioctls act on that mm
//! whoever calls them: the engine registers and write-protects the target's
//! ranges through its own duplicate (pidfd_getfd).

use super::cvt;
use std::io;
use std::os::fd::RawFd;

/// userfaultfd(2) flag: only user-mode faults (allowed without privilege).
pub const UFFD_USER_MODE_ONLY: u64 = 1;
const UFFD_API: u64 = 0xaa;
/// Write-protect markers on unpopulated anonymous ptes too (Linux 6.4+).
pub const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
/// Write faults on write-protected pages are resolved by the kernel, which
/// clears the page's uffd-wp bit: PAGEMAP_SCAN then reports PAGE_IS_WRITTEN
/// (Linux 6.7+).
pub const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
const UFFDIO_REGISTER: libc::c_ulong = 0xc020_aa00;
const UFFDIO_UNREGISTER: libc::c_ulong = 0x8010_aa01;
const UFFDIO_WRITEPROTECT: libc::c_ulong = 0xc018_aa06;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;

/// PAGEMAP_SCAN flag: write-protect the matching pages in the same walk.
pub const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
/// PAGEMAP_SCAN flag: fail with EPERM on a VMA not registered for async
/// write-protection (instead of skipping it silently).
pub const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;

#[repr(C)]
#[derive(Default)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Default)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Default)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

/// UFFDIO_API: enable `features` (once per userfaultfd); returns what the
/// kernel granted.
pub fn api(uffd: RawFd, features: u64) -> io::Result<u64> {
    let mut a = UffdioApi {
        api: UFFD_API,
        features,
        ioctls: 0,
    };
    // SAFETY: `a` is a valid uffdio_api the kernel reads and writes.
    cvt(unsafe { libc::ioctl(uffd, UFFDIO_API as _, &mut a) } as libc::c_long)?;
    Ok(a.features)
}

/// UFFDIO_REGISTER of `[start, start + len)` in write-protect mode.
pub fn register_wp(uffd: RawFd, start: u64, len: u64) -> io::Result<()> {
    let mut r = UffdioRegister {
        range: UffdioRange { start, len },
        mode: UFFDIO_REGISTER_MODE_WP,
        ioctls: 0,
    };
    // SAFETY: `r` is a valid uffdio_register the kernel reads and writes.
    cvt(unsafe { libc::ioctl(uffd, UFFDIO_REGISTER as _, &mut r) } as libc::c_long)?;
    Ok(())
}

/// UFFDIO_UNREGISTER of `[start, start + len)`.
pub fn unregister(uffd: RawFd, start: u64, len: u64) -> io::Result<()> {
    let r = UffdioRange { start, len };
    // SAFETY: `r` is a valid uffdio_range the kernel reads.
    cvt(unsafe { libc::ioctl(uffd, UFFDIO_UNREGISTER as _, &r) } as libc::c_long)?;
    Ok(())
}

/// UFFDIO_WRITEPROTECT: protect (`on`) or unprotect `[start, start + len)`.
pub fn writeprotect(uffd: RawFd, start: u64, len: u64, on: bool) -> io::Result<()> {
    let mut w = UffdioWriteprotect {
        range: UffdioRange { start, len },
        mode: if on { UFFDIO_WRITEPROTECT_MODE_WP } else { 0 },
    };
    // SAFETY: `w` is a valid uffdio_writeprotect the kernel reads.
    cvt(unsafe { libc::ioctl(uffd, UFFDIO_WRITEPROTECT as _, &mut w) } as libc::c_long)?;
    Ok(())
}

/// userfaultfd(2) in this process (`flags`: O_CLOEXEC, O_NONBLOCK, UFFD_USER_MODE_ONLY).
pub fn userfaultfd(flags: u64) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: scalar argument; a fresh fd comes back.
    super::owned(unsafe { libc::syscall(libc::SYS_userfaultfd, flags) })
}

/// Non-cooperative events: fork (the child's mm gets a userfaultfd of its
/// own, passed in the message), mremap, madvise(MADV_DONTNEED/REMOVE),
/// munmap of registered ranges.
pub const UFFD_FEATURE_EVENT_FORK: u64 = 1 << 1;
pub const UFFD_FEATURE_EVENT_REMAP: u64 = 1 << 2;
pub const UFFD_FEATURE_EVENT_REMOVE: u64 = 1 << 3;
pub const UFFD_FEATURE_EVENT_UNMAP: u64 = 1 << 6;

/// A message read from a userfaultfd.
#[derive(Debug)]
pub enum Msg {
    /// A write to a write-protected page at `addr` (or another fault, `wp` false).
    Fault {
        addr: u64,
        wp: bool,
    },
    /// mremap of `[from, from + len)` to `to`.
    Remap {
        from: u64,
        to: u64,
        len: u64,
    },
    /// `[start, end)` is being discarded (MADV_DONTNEED, MADV_REMOVE) or was unmapped.
    Remove {
        start: u64,
        end: u64,
    },
    Unmap {
        start: u64,
        end: u64,
    },
    /// The mm forked: `ufd` is the child's userfaultfd, now an fd of ours.
    Fork {
        ufd: std::os::fd::OwnedFd,
    },
    Other(u8),
}

/// Read one message (the fd is non-blocking: `None` when there is none).
pub fn read_msg(uffd: std::os::fd::BorrowedFd<'_>) -> io::Result<Option<Msg>> {
    let mut b = [0u8; 32];
    match nix::unistd::read(uffd, &mut b) {
        Ok(32) => {}
        Ok(n) => return Err(io::Error::other(format!("short userfaultfd message ({n} bytes)"))),
        Err(nix::errno::Errno::EAGAIN) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let w = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    Ok(Some(match b[0] {
        0x12 => Msg::Fault {
            addr: w(16),
            wp: w(8) & 2 != 0,
        },
        0x13 => {
            let fd = u32::from_ne_bytes(b[8..12].try_into().expect("4 bytes")) as RawFd;
            // SAFETY: the kernel installed this fd in our table for us with
            // the message (UFFD_EVENT_FORK); nothing else owns it.
            let ufd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            Msg::Fork { ufd }
        }
        0x14 => Msg::Remap {
            from: w(8),
            to: w(16),
            len: w(24),
        },
        0x15 => Msg::Remove {
            start: w(8),
            end: w(16),
        },
        0x16 => Msg::Unmap {
            start: w(8),
            end: w(16),
        },
        e => Msg::Other(e),
    }))
}

const UFFDIO_REGISTER_MODE_MISSING: u64 = 1 << 0;
const UFFDIO_WAKE: libc::c_ulong = 0x8010_aa02;
const UFFDIO_COPY: libc::c_ulong = 0xc028_aa03;
const UFFDIO_ZEROPAGE: libc::c_ulong = 0xc020_aa04;

#[repr(C)]
#[derive(Default)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}
const _: () = assert!(std::mem::size_of::<UffdioCopy>() == 40);

#[repr(C)]
#[derive(Default)]
struct UffdioZeropage {
    range: UffdioRange,
    mode: u64,
    zeropage: i64,
}
const _: () = assert!(std::mem::size_of::<UffdioZeropage>() == 32);

/// UFFDIO_REGISTER of `[start, start + len)` in missing mode (lazy restore).
pub fn register_missing(uffd: RawFd, start: u64, len: u64) -> io::Result<()> {
    let mut r = UffdioRegister {
        range: UffdioRange { start, len },
        mode: UFFDIO_REGISTER_MODE_MISSING,
        ioctls: 0,
    };
    // SAFETY: `r` is a valid uffdio_register the kernel reads and writes.
    cvt(unsafe { libc::ioctl(uffd, UFFDIO_REGISTER as _, &mut r) } as libc::c_long)?;
    Ok(())
}

/// A file mapped read-only into this process: the source of UFFDIO_COPY
/// (the kernel copies from the page cache straight into the target's new
/// pages). Unmapped on drop; its bytes are never read through a Rust
/// reference, only by the kernel.
#[derive(Debug)]
pub struct FileMap {
    addr: u64,
    len: u64,
}

impl FileMap {
    /// Map all of `file` (an empty file maps nothing).
    pub fn new(file: &std::fs::File) -> io::Result<FileMap> {
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(FileMap { addr: 0, len: 0 });
        }
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh read-only private mapping the kernel places; no
        // Rust object lives there.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(FileMap { addr: p as u64, len })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// MADV_WILLNEED on `[off, off + len)` (read ahead what a copy will need).
    pub fn will_need(&self, off: u64, len: u64) {
        if off.checked_add(len).is_some_and(|e| e <= self.len) && len > 0 {
            let a = (self.addr + off) & !0xfff;
            // SAFETY: advice on our own mapping, inside it.
            unsafe {
                libc::madvise(
                    a as *mut libc::c_void,
                    (len + (self.addr + off - a)) as usize,
                    libc::MADV_WILLNEED,
                )
            };
        }
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: our own mapping, made in new() and referenced by nothing else.
            unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len as usize) };
        }
    }
}

/// How an UFFDIO_COPY or UFFDIO_ZEROPAGE ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Filled {
    /// All of it.
    All,
    /// `n` bytes, then the call failed with `errno` (EEXIST: the next page
    /// is present already; EAGAIN: the mm is changing, read the events
    /// first; ENOENT: no registered VMA there; ESRCH: the mm is gone).
    Part { n: u64, errno: i32 },
}

/// UFFDIO_COPY of `len` bytes at `off` in `src` to `dst` in the uffd's mm
/// (waking the threads that wait on that range). Bounds are checked
/// against `src`.
pub fn copy(uffd: RawFd, dst: u64, src: &FileMap, off: u64, len: u64) -> io::Result<Filled> {
    if off.checked_add(len).is_none_or(|e| e > src.len) {
        return Err(io::Error::other(format!(
            "copy of {len} bytes at {off} beyond the pages file ({} bytes)",
            src.len
        )));
    }
    let mut c = UffdioCopy {
        dst,
        src: src.addr + off,
        len,
        mode: 0,
        copy: 0,
    };
    // SAFETY: `c` is a valid uffdio_copy; its source lies inside our own
    // read-only mapping (checked above), which the kernel only reads.
    let r = unsafe { libc::ioctl(uffd, UFFDIO_COPY as _, &mut c) };
    Ok(filled(r, c.copy, len))
}

fn filled(r: libc::c_int, done: i64, len: u64) -> Filled {
    if r == 0 && done as u64 == len {
        return Filled::All;
    }
    let errno = if r < 0 {
        io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
    } else {
        libc::EIO
    };
    let n = if done > 0 { done as u64 } else { 0 };
    let errno = if done < 0 { (-done) as i32 } else { errno };
    Filled::Part { n, errno }
}

/// UFFDIO_ZEROPAGE of `[dst, dst + len)` (and wake the waiters).
pub fn zeropage(uffd: RawFd, dst: u64, len: u64) -> Filled {
    let mut z = UffdioZeropage {
        range: UffdioRange { start: dst, len },
        mode: 0,
        zeropage: 0,
    };
    // SAFETY: `z` is a valid uffdio_zeropage the kernel reads and writes.
    let r = unsafe { libc::ioctl(uffd, UFFDIO_ZEROPAGE as _, &mut z) };
    filled(r, z.zeropage, len)
}

/// UFFDIO_WAKE of `[start, start + len)`: threads waiting on a fault there
/// retry it.
pub fn wake(uffd: RawFd, start: u64, len: u64) -> io::Result<()> {
    let r = UffdioRange { start, len };
    // SAFETY: `r` is a valid uffdio_range the kernel reads.
    cvt(unsafe { libc::ioctl(uffd, UFFDIO_WAKE as _, &r) } as libc::c_long)?;
    Ok(())
}

/// poll(2) on `fds` for up to `ms` milliseconds (-1: no limit); EINTR is
/// no event.
pub fn poll(fds: &mut [libc::pollfd], ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid array of pollfd the kernel reads and writes.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(r as usize)
}

/// recvmsg(2) of up to `buf.len()` bytes and the fds that come with them
/// (SCM_RIGHTS, close-on-exec), blocking.
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 8]);
    let m = loop {
        match recvmsg::<UnixAddr>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r.map_err(io::Error::from)?,
        }
    };
    let mut fds = Vec::new();
    for c in m.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(got) = c {
            // SAFETY: the kernel installed these fds in our table for this
            // message; nothing else owns them.
            fds.extend(
                got.into_iter()
                    .map(|fd| unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }),
            );
        }
    }
    Ok((m.bytes, fds))
}
