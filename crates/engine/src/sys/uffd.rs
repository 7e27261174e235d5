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

/// Non-cooperative events: mremap, madvise(MADV_DONTNEED/REMOVE), munmap of registered ranges.
pub const UFFD_FEATURE_EVENT_REMAP: u64 = 1 << 2;
pub const UFFD_FEATURE_EVENT_REMOVE: u64 = 1 << 3;
pub const UFFD_FEATURE_EVENT_UNMAP: u64 = 1 << 6;

/// A message read from a userfaultfd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
