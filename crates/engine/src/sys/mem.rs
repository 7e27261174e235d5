//! This process's own memory, outside of Rust's objects: address-space
//! areas the engine maps for a task it becomes (premapped VMAs, the
//! restorer's bootstrap, the shared control page), reading raw memory, and
//! plain-data ABI structs as bytes.
//!
//! [`Area`] is the safe seam: its range was reserved fresh from the kernel
//! (`MAP_FIXED_NOREPLACE`, so nothing of Rust lived there) and is only ever
//! touched through its methods, which check bounds and copy through the
//! kernel (`process_vm_readv`/`process_vm_writev` on this process, `pread`),
//! so no Rust reference into it exists and a page that is not mapped is an
//! `EFAULT`, not undefined behaviour.

use cryo_abi::restorer::{RstCtl, RST_CTL_SIZE};
use std::io;
use std::os::fd::RawFd;

/// A range of this process's address space owned by the engine: reserved
/// with `MAP_FIXED_NOREPLACE`, mapped only through [`Area::map`], never
/// unmapped by Rust (the restorer moves or unmaps it, or a child inherits it
/// through fork). Copies of an `Area` name the same range; every access goes
/// through the kernel, so they may be used from several threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Area {
    start: u64,
    len: u64,
}

impl Area {
    /// Reserve `[start, start + len)` as `PROT_NONE` (`MAP_NORESERVE`); fails
    /// with `EEXIST` if anything is mapped there.
    pub fn reserve(start: u64, len: u64) -> io::Result<Area> {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED_NOREPLACE;
        Self::fresh(start, len, libc::PROT_NONE, flags)
    }

    /// The restore control page: [`RST_CTL_SIZE`] read-write bytes of
    /// anonymous shared memory at `start` (shared with the children forked
    /// afterwards), zeroed; fails if anything is mapped there.
    pub fn shared_ctl(start: u64) -> io::Result<Area> {
        let flags = libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;
        Self::fresh(start, RST_CTL_SIZE as u64, libc::PROT_READ | libc::PROT_WRITE, flags)
    }

    fn fresh(start: u64, len: u64, prot: i32, flags: i32) -> io::Result<Area> {
        // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping, so no memory
        // in use is touched; the new range is owned by the returned Area.
        let p = unsafe { libc::mmap(start as *mut libc::c_void, len as usize, prot, flags, -1, 0) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        if p as u64 != start {
            // A kernel without MAP_FIXED_NOREPLACE takes it as a hint.
            // SAFETY: the mapping was just made by this call and nothing refers to it.
            unsafe { libc::munmap(p, len as usize) };
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        Ok(Area { start, len })
    }

    pub fn start(&self) -> u64 {
        self.start
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn end(&self) -> u64 {
        self.start + self.len
    }

    /// Does `[at, at + len)` lie inside the area?
    pub fn contains(&self, at: u64, len: u64) -> bool {
        at >= self.start && at.checked_add(len).is_some_and(|e| e <= self.end())
    }

    fn check(&self, at: u64, len: u64) -> io::Result<()> {
        if self.contains(at, len) {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{at:#x}+{len:#x} is outside the area {:#x}-{:#x} (engine bug)",
                self.start,
                self.end()
            )))
        }
    }

    /// mmap at `[at, at + len)` inside the area (`MAP_FIXED` is added):
    /// `flags`, `prot`, `fd` and `off` as for mmap(2).
    pub fn map(&self, at: u64, len: u64, prot: i32, flags: i32, fd: RawFd, off: u64) -> io::Result<()> {
        self.check(at, len)?;
        // SAFETY: the range lies inside this area, which no Rust object
        // refers to (see the type's doc): replacing its pages is harmless.
        let p = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                len as usize,
                prot,
                flags | libc::MAP_FIXED,
                fd,
                off as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// shmat(2) of SysV segment `id` (`len` bytes, page-rounded) at `at`
    /// inside the area (SHM_REMAP replaces what is there).
    pub fn shmat(&self, at: u64, len: u64, id: i32, readonly: bool) -> io::Result<()> {
        self.check(at, len)?;
        let flags = libc::SHM_REMAP | if readonly { libc::SHM_RDONLY } else { 0 };
        // SAFETY: the range lies inside this area, which no Rust object
        // refers to; the caller checked the segment is `len` bytes.
        let p = unsafe { libc::shmat(id, at as *const libc::c_void, flags) };
        if p as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// madvise(2) on `[at, at + len)` inside the area.
    pub fn madvise(&self, at: u64, len: u64, advice: i32) -> io::Result<()> {
        self.check(at, len)?;
        // SAFETY: the range lies inside this area, which no Rust object refers to.
        if unsafe { libc::madvise(at as *mut libc::c_void, len as usize, advice) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Copy `data` to `at` (through the kernel: `EFAULT` where nothing
    /// writable is mapped).
    pub fn write(&self, at: u64, data: &[u8]) -> io::Result<()> {
        self.check(at, data.len() as u64)?;
        copy_self(at, data.as_ptr() as *mut u8, data.len(), true)
    }

    /// Copy `buf.len()` bytes from `at` (through the kernel).
    pub fn read(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        self.check(at, buf.len() as u64)?;
        copy_self(at, buf.as_mut_ptr(), buf.len(), false)
    }

    /// pread `len` bytes of `fd` from `off` into `at`: the whole length or an error.
    pub fn pread(&self, fd: RawFd, at: u64, len: u64, off: u64) -> io::Result<()> {
        self.check(at, len)?;
        let mut done = 0u64;
        while done < len {
            // SAFETY: the destination lies inside this area, which no Rust
            // object refers to; the kernel fails with EFAULT where it is not
            // mapped writable.
            let r = unsafe {
                libc::pread(
                    fd,
                    (at + done) as *mut libc::c_void,
                    (len - done) as usize,
                    (off + done) as libc::off_t,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e);
            }
            if r == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "pages file is short"));
            }
            done += r as u64;
        }
        Ok(())
    }

    /// The restore control page ([`RstCtl`]) this area holds: an area made
    /// by [`Area::shared_ctl`] (panics on any other size or alignment).
    pub fn rst_ctl(&self) -> &RstCtl {
        assert!(
            self.len as usize >= std::mem::size_of::<RstCtl>()
                && (self.start as usize).is_multiple_of(std::mem::align_of::<RstCtl>()),
            "not a control page"
        );
        // SAFETY: in bounds and aligned (checked); the area is mapped
        // read-write and never unmapped by Rust; RstCtl is all atomics, so
        // shared references stay valid while other tasks write it.
        unsafe { &*(self.start as *const RstCtl) }
    }
}

/// Copy between this process's memory at `remote` and the local buffer,
/// through the kernel (`EFAULT` rather than a fault when unmapped).
///
/// `remote` is always the side the kernel accesses as *local* memory
/// (copy_from_user/copy_to_user, the ordinary fault path), and the Rust
/// buffer the side it pins: a read-only pin of an anonymous page shared
/// copy-on-write with another process unshares it (Linux 5.19+), which
/// would undo the sharing the premap keeps with a parent's pages.
fn copy_self(remote: u64, local: *mut u8, len: usize, write: bool) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let buf = libc::iovec {
        iov_base: local.cast(),
        iov_len: len,
    };
    let mem = libc::iovec {
        iov_base: remote as *mut libc::c_void,
        iov_len: len,
    };
    let pid = std::process::id() as i32;
    let r = if write {
        // Into `remote`: copy_to_user from the pinned buffer.
        // SAFETY: buf describes a readable buffer of `len` bytes (only read);
        // the kernel checks the area's range (EFAULT).
        unsafe { libc::process_vm_readv(pid, &mem, 1, &buf, 1, 0) }
    } else {
        // Out of `remote`: copy_from_user into the pinned buffer.
        // SAFETY: buf describes a writable buffer of `len` bytes; the kernel
        // checks the area's range (EFAULT).
        unsafe { libc::process_vm_writev(pid, &mem, 1, &buf, 1, 0) }
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if r as usize != len {
        return Err(io::Error::from_raw_os_error(libc::EFAULT));
    }
    Ok(())
}

/// A copy of `len` bytes of this process's memory at `addr` (the running
/// kernel's vdso), read through the kernel: `EFAULT` where nothing readable is mapped.
pub fn read_self(addr: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0u8; len];
    copy_self(addr, v.as_mut_ptr(), len, false)?;
    Ok(v)
}

/// Plain data: `#[repr(C)]`, every bit pattern valid, no padding bytes
/// (every hole is an explicit field), so a value can be viewed as bytes and
/// made from any bytes.
///
/// # Safety
/// Implement only for types meeting all three conditions.
pub unsafe trait Plain: Copy {}

/// View a slice of plain data as its bytes.
pub fn as_bytes<T: Plain>(v: &[T]) -> &[u8] {
    // SAFETY: T is Plain (no padding, so every byte is initialized); the
    // bytes borrow `v`.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// Read a plain value from the first `size_of::<T>()` bytes of `b` (any
/// alignment); None when `b` is shorter.
pub fn from_bytes<T: Plain>(b: &[u8]) -> Option<T> {
    if b.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: b holds at least size_of::<T>() initialized bytes, and every
    // bit pattern is a valid T (Plain); read_unaligned needs no alignment.
    Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<T>()) })
}

macro_rules! plain {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: an integer type, or a #[repr(C)] ABI struct of integer fields
        // and arrays of them whose holes are explicit `_pad` fields (the ABI
        // modules assert each struct's size).
        unsafe impl Plain for $t {}
    )*};
}

plain!(u8, u16, u32, u64, i32, i64, libc::user_regs_struct);

// The ABI structs shared with the blobs (each with a size assert that leaves no room for padding).
plain!(
    cryo_abi::restorer::RstRange,
    cryo_abi::restorer::RstVma,
    cryo_abi::restorer::RstCreds,
    cryo_abi::restorer::RstSiginfo,
    cryo_abi::restorer::RstPosixTimer,
    cryo_abi::restorer::RstThread,
    cryo_abi::restorer::RstSeccompFilter,
    cryo_abi::restorer::RstArgs,
    cryo_abi::restorer::RstSlot,
    cryo_abi::parasite::BootArgs,
    cryo_abi::parasite::Range,
    cryo_abi::parasite::Cmd,
    cryo_abi::parasite::Reply,
    cryo_abi::kernel::KSigaction,
    cryo_abi::kernel::Itimerval,
    cryo_abi::parasite::PosixTimer,
    cryo_abi::parasite::Misc,
    cryo_abi::parasite::ThreadMisc,
);

#[cfg(test)]
mod tests {
    use super::*;

    fn some_area(len: u64) -> Area {
        (0..64u64)
            .find_map(|i| Area::reserve(0x5a00_0000_0000 + i * 0x100_0000, len).ok())
            .expect("a free range")
    }

    #[test]
    fn area_maps_writes_and_reads_inside_only() {
        let a = some_area(4 * 4096);
        let at = a.start() + 4096;
        // Reserved but not mapped yet: EFAULT, not a crash.
        assert!(a.write(at, b"x").is_err());
        a.map(
            at,
            2 * 4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
        a.write(at + 10, b"hello").unwrap();
        let mut b = [0u8; 5];
        a.read(at + 10, &mut b).unwrap();
        assert_eq!(&b, b"hello");
        // Outside the area: refused before any syscall.
        assert!(a.write(a.end() - 2, b"abc").is_err());
        assert!(a
            .map(
                a.start() - 4096,
                4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0
            )
            .is_err());
        a.madvise(at, 4096, libc::MADV_DONTNEED).unwrap();
        a.read(at + 10, &mut b).unwrap();
        assert_eq!(b, [0; 5]);
        // A second reservation over it fails (MAP_FIXED_NOREPLACE).
        assert!(Area::reserve(a.start(), 4096).is_err());
    }

    #[test]
    fn plain_round_trip() {
        let v = [1u32, 2, 3];
        let b = as_bytes(&v);
        assert_eq!(b.len(), 12);
        assert_eq!(from_bytes::<u32>(&b[4..]), Some(2));
        assert_eq!(from_bytes::<u64>(&b[8..]), None);
    }
}
