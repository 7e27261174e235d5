//! The syscall seam: the only module tree of the engine that holds `unsafe`
//! (besides `files/*`, whose unsafe moves to `sys/files.rs`).
//!
//! Raw syscalls that nix does not wrap (or wraps too narrowly), each behind
//! a function: a safe fn where the function itself guarantees what the call
//! needs (pointers built here from Rust slices and structs), an `unsafe fn`
//! with a `# Safety` section where the caller must (raw addresses, another
//! process's memory). Errors are `std::io::Error` from errno.
//!
//! - [`mem`]: this process's memory outside of Rust objects ([`mem::Area`]),
//!   plain-data ABI structs as bytes.
//! - [`ptrace`]: ptrace requests and waits on tracees.
//! - [`restore`]: what the restore driver and its tasks call (clone3 with
//!   set_tid, the kernel's sigaction, futexes, calls on raw fd numbers, the
//!   jump into the restorer).
//! - this module: the rest (pidfds, kcmp, process_vm_*, splice, PAGEMAP_SCAN, ...).
#![allow(unsafe_code)]

pub mod mem;
pub mod ptrace;
pub mod restore;

pub mod files;
pub mod ipc;
pub mod mount;
pub mod rtnl;
pub mod sockets;
pub mod tcp;
pub mod uffd;

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// A raw syscall's result: negative is the thread's errno.
pub(crate) fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A syscall's fd result as an owned fd.
pub(crate) fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = cvt(ret)?;
    // SAFETY: the syscall returned a fresh fd, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: scalar arguments.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel returned a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_send_signal(2) with no siginfo.
pub fn pidfd_send_signal(pidfd: &impl std::os::fd::AsFd, sig: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid fd, a signal number, a null siginfo, no flags.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_fd().as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}

/// pidfd_getfd(2): a duplicate of `target_fd` of the process behind `pidfd`.
pub fn pidfd_getfd(pidfd: RawFd, target_fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: scalar arguments.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, target_fd, 0) })?;
    // SAFETY: the kernel returned a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// NS_GET_USERNS (ioctl_ns(2)): the user namespace owning the namespace
/// behind `ns` (an fd of /proc/PID/ns/*).
pub fn ns_owner(ns: &impl std::os::fd::AsFd) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    // SAFETY: an ioctl without argument on a borrowed, open fd.
    owned(unsafe { libc::ioctl(ns.as_fd().as_raw_fd(), NS_GET_USERNS) } as libc::c_long)
}

/// F_DUPFD_CLOEXEC: a duplicate of `fd` at the lowest free number >= `base`.
pub fn dup_above(fd: &impl std::os::fd::AsFd, base: RawFd) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: scalar arguments on a borrowed, open fd.
    let n = cvt(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_DUPFD_CLOEXEC, base) } as libc::c_long)?;
    // SAFETY: the kernel returned a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(n as RawFd) })
}

/// accept4(2) with SOCK_CLOEXEC on a listening socket.
pub fn accept_cloexec(listener: &impl std::os::fd::AsFd) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let fd = listener.as_fd().as_raw_fd();
    // SAFETY: null address pointers (the peer's address is not wanted).
    let c = unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
    if c < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(c) })
}

/// XCR0 (XGETBV 0), or None when the OS has not enabled XSAVE (CPUID.1:ECX.OSXSAVE).
pub fn xcr0() -> Option<u64> {
    if std::arch::x86_64::__cpuid(1).ecx & (1 << 27) == 0 {
        return None;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV(0) is allowed in user mode when OSXSAVE is set (checked above).
    unsafe { std::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    Some((hi as u64) << 32 | lo as u64)
}

/// kcmp(2) types.
pub const KCMP_FILE: i32 = 0;
pub const KCMP_VM: i32 = 1;
pub const KCMP_FILES: i32 = 2;
pub const KCMP_FS: i32 = 3;
pub const KCMP_SIGHAND: i32 = 4;

/// kcmp(2): 0 equal, 1/2 ordered, 3 not equal (unordered).
pub fn kcmp(pid1: i32, pid2: i32, ty: i32, idx1: u64, idx2: u64) -> io::Result<i32> {
    // SAFETY: scalar arguments.
    Ok(cvt(unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, ty, idx1, idx2) })? as i32)
}

/// process_vm_readv into one local buffer from several remote ranges.
/// Returns the number of bytes read (may be short).
pub fn process_vm_readv(pid: i32, local: &mut [u8], remote: &[(u64, usize)]) -> io::Result<usize> {
    let liov = libc::iovec {
        iov_base: local.as_mut_ptr().cast(),
        iov_len: local.len(),
    };
    let riov: Vec<libc::iovec> = remote
        .iter()
        .map(|&(a, l)| libc::iovec {
            iov_base: a as *mut libc::c_void,
            iov_len: l,
        })
        .collect();
    // SAFETY: iovecs describe `local` (writable, owned) and remote addresses
    // (only dereferenced by the kernel in the other process).
    let r = unsafe { libc::process_vm_readv(pid, &liov, 1, riov.as_ptr(), riov.len() as libc::c_ulong, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// process_vm_writev of one buffer to one remote address.
///
/// # Safety
/// This writes another process's memory: the caller must know what lives
/// at `[remote, remote + data.len())` in `pid` (a mapping it made there, not
/// yet in use). This process's memory is only read.
pub unsafe fn process_vm_writev(pid: i32, remote: u64, data: &[u8]) -> io::Result<usize> {
    let liov = libc::iovec {
        iov_base: data.as_ptr() as *mut _,
        iov_len: data.len(),
    };
    let riov = libc::iovec {
        iov_base: remote as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: local iovec describes `data`; the remote one is only used by the kernel.
    let r = unsafe { libc::process_vm_writev(pid, &liov, 1, &riov, 1, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// tee(2) without consuming: duplicate up to `len` bytes from pipe `from` to pipe `to`.
pub fn tee(from: RawFd, to: RawFd, len: usize, nonblock: bool) -> io::Result<usize> {
    let fl = if nonblock { libc::SPLICE_F_NONBLOCK } else { 0 };
    // SAFETY: scalar arguments.
    let r = unsafe { libc::tee(from, to, len, fl) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// splice(2) between two fds (offsets not used: pipes or current positions).
pub fn splice(from: RawFd, to: RawFd, len: usize, flags: u32) -> io::Result<usize> {
    // SAFETY: null offsets, scalar arguments.
    let r = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, flags) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// splice(2) from a pipe into a file at offset `off` (the file position is not used).
pub fn splice_to(from: RawFd, to: RawFd, off: u64, len: usize, flags: u32) -> io::Result<usize> {
    let mut o = off as libc::loff_t;
    // SAFETY: `o` is a valid in/out offset; scalar arguments otherwise.
    let r = unsafe { libc::splice(from, std::ptr::null_mut(), to, &mut o, len, flags) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// get_robust_list(2) of any thread: (head, len).
pub fn get_robust_list(tid: i32) -> io::Result<(u64, usize)> {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: valid out pointers.
    cvt(unsafe { libc::syscall(libc::SYS_get_robust_list, tid, &mut head, &mut len) })?;
    Ok((head, len))
}

/// FIONREAD on an fd (bytes queued in a pipe).
pub fn fionread(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// F_GETPIPE_SZ.
pub fn pipe_size(fd: RawFd) -> io::Result<usize> {
    // SAFETY: scalar arguments.
    let r = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Size of the XSAVE area for the features enabled in XCR0 (CPUID 0xD, ECX=0, EBX).
pub fn xsave_size() -> usize {
    let r = std::arch::x86_64::__cpuid_count(0xd, 0);
    (r.ebx as usize).max(512 + 64)
}

// ---- PAGEMAP_SCAN (linux/fs.h, 6.7+) ----

/// `struct page_region`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

/// `struct pm_scan_arg`.
#[repr(C)]
#[derive(Debug, Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

pub const PAGE_IS_WPALLOWED: u64 = 1 << 0;
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;
pub const PAGE_IS_FILE: u64 = 1 << 2;
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
pub const PAGE_IS_PFNZERO: u64 = 1 << 5;
pub const PAGE_IS_HUGE: u64 = 1 << 6;
pub const PAGE_IS_SOFT_DIRTY: u64 = 1 << 7;
/// A MADV_GUARD_INSTALL guard (Linux 6.14+).
pub const PAGE_IS_GUARD: u64 = 1 << 8;
const PAGEMAP_SCAN: libc::c_ulong = 0xc0606610; // _IOWR('f', 16, struct pm_scan_arg)

/// PAGEMAP_SCAN over `[start, end)` of an open /proc/PID/pagemap: the regions
/// whose pages match any of `anyof` and none of `inverted_excl` (categories
/// set in `excl` must be clear). Returns the regions with `categories`
/// masked by `ret_mask`.
pub fn pagemap_scan(
    pagemap: RawFd,
    start: u64,
    end: u64,
    anyof: u64,
    excl: u64,
    ret_mask: u64,
) -> io::Result<Vec<PageRegion>> {
    pagemap_scan_flags(pagemap, start, end, anyof, excl, ret_mask, 0)
}

/// [`pagemap_scan`] with PAGEMAP_SCAN `flags` (`uffd::PM_SCAN_WP_MATCHING`:
/// write-protect what matches in the same walk).
pub fn pagemap_scan_flags(
    pagemap: RawFd,
    start: u64,
    end: u64,
    anyof: u64,
    excl: u64,
    ret_mask: u64,
    flags: u64,
) -> io::Result<Vec<PageRegion>> {
    let mut out = Vec::new();
    let mut buf = vec![PageRegion::default(); 4096];
    let mut cur = start;
    while cur < end {
        let mut a = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            flags,
            start: cur,
            end,
            vec: buf.as_mut_ptr() as u64,
            vec_len: buf.len() as u64,
            // category_inverted: these bits are inverted before matching, so
            // "excl" bits in category_mask + inverted = must be clear.
            category_inverted: excl,
            category_mask: excl,
            category_anyof_mask: anyof,
            return_mask: ret_mask,
            ..Default::default()
        };
        // SAFETY: `a` is a valid pm_scan_arg pointing at `buf` of vec_len entries.
        let n = unsafe { libc::ioctl(pagemap, PAGEMAP_SCAN as _, &mut a) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // A walk may end (walk_end) before the end of a region it already
        // reported (seen with PM_SCAN_WP_MATCHING, which splits huge pages
        // on the way): the next call reports those pages again, by then
        // write-protected. The first report holds: later ones are clipped.
        for r in &buf[..n as usize] {
            let from = out.last().map_or(r.start, |l: &PageRegion| l.end.max(r.start));
            if from < r.end {
                out.push(PageRegion {
                    start: from,
                    end: r.end,
                    categories: r.categories,
                });
            }
        }
        if a.walk_end <= cur {
            break;
        }
        cur = a.walk_end;
        if (n as usize) < buf.len() && cur >= end {
            break;
        }
    }
    Ok(out)
}

/// clock_gettime(2): (seconds, nanoseconds).
pub fn clock_gettime(clock: libc::clockid_t) -> (u64, u64) {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64, ts.tv_nsec as u64)
}

/// membarrier(2) with a command and flags (cpu_id 0); returns the kernel's
/// non-negative result.
pub fn membarrier(cmd: u32, flags: u32) -> io::Result<i32> {
    // SAFETY: scalar arguments.
    Ok(cvt(unsafe { libc::syscall(libc::SYS_membarrier, cmd as libc::c_int, flags, 0) })? as i32)
}

/// The nice value of thread `tid` (0: the calling thread; Linux keeps one per thread).
pub fn thread_nice(tid: i32) -> io::Result<i32> {
    // getpriority returns the value itself; -1 is ambiguous, so errno decides.
    nix::errno::Errno::clear();
    // SAFETY: scalar arguments.
    let v = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    if v == -1 && nix::errno::Errno::last_raw() != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// Set the nice value of thread `tid` (0: the calling thread), not of its whole process.
pub fn set_thread_nice(tid: i32, nice: i32) -> io::Result<()> {
    // SAFETY: scalar arguments.
    cvt(unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } as i64).map(|_| ())
}

/// sched_getscheduler(2) of thread `tid` (0: the calling thread), with its
/// SCHED_RESET_ON_FORK bit.
pub fn sched_policy(tid: i32) -> io::Result<i32> {
    // SAFETY: scalar argument.
    cvt(unsafe { libc::sched_getscheduler(tid) } as i64).map(|p| p as i32)
}

/// sched_setscheduler(2) of thread `tid` (0: the calling thread). Going
/// back to SCHED_OTHER/BATCH/IDLE keeps the thread's nice value.
pub fn set_sched_policy(tid: i32, policy: i32, priority: i32) -> io::Result<()> {
    let p = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `p` is a valid sched_param for the call.
    cvt(unsafe { libc::sched_setscheduler(tid, policy, &p) } as i64).map(|_| ())
}

/// The owner of an open file (F_GETSIG, F_GETOWN_EX, F_GETOWNER_UIDS).
#[derive(Clone, Copy, Debug, Default)]
pub struct FownQuery {
    pub signum: i32,
    pub pid_type: i32,
    pub pid: i32,
    pub uid: u32,
    pub euid: u32,
}

/// F_GETOWNER_UIDS (linux/fcntl.h): the uid and euid recorded at F_SETOWN.
const F_GETOWNER_UIDS: i32 = 17;
/// asm-generic/fcntl.h.
const F_SETSIG: i32 = 10;
const F_GETSIG: i32 = 11;
const F_SETOWN_EX: i32 = 15;
const F_GETOWN_EX: i32 = 16;

/// struct f_owner_ex.
#[repr(C)]
struct FOwnerEx {
    type_: i32,
    pid: i32,
}

/// The owner of the open file behind `fd`.
pub fn fown_query(fd: RawFd) -> io::Result<FownQuery> {
    let mut q = FownQuery {
        // SAFETY: scalar arguments.
        signum: cvt(unsafe { libc::fcntl(fd, F_GETSIG) } as libc::c_long)? as i32,
        ..Default::default()
    };
    let mut ex = FOwnerEx { type_: 0, pid: 0 };
    // SAFETY: ex is a valid struct f_owner_ex the kernel fills in.
    cvt(unsafe { libc::fcntl(fd, F_GETOWN_EX, &mut ex as *mut FOwnerEx) } as libc::c_long)?;
    q.pid_type = ex.type_;
    q.pid = ex.pid;
    if ex.pid > 0 {
        let mut uids = [0u32; 2];
        // SAFETY: uids has room for the two uid_t the kernel writes.
        cvt(unsafe { libc::fcntl(fd, F_GETOWNER_UIDS, uids.as_mut_ptr()) } as libc::c_long)?;
        q.uid = uids[0];
        q.euid = uids[1];
    }
    Ok(q)
}

/// One owner to set: F_SETSIG `signum` (if not 0), then, if `pid` is not
/// 0, F_SETOWN_EX under real/effective uid `uid`/`euid`.
#[derive(Clone, Copy, Debug)]
pub struct FownSet {
    pub fd: RawFd,
    pub signum: i32,
    pub pid: i32,
    pub pid_type: i32,
    pub uid: u32,
    pub euid: u32,
}

/// Set every owner in `v` from a forked child of this process (which shares
/// the open files): the uid changes stay out of the engine. Needs root (the
/// child switches back to uid 0 through its saved uid). The error names the
/// entry, the step and errno.
pub fn fown_set_all(v: &[FownSet]) -> Result<(), (usize, &'static str, io::Error)> {
    if v.is_empty() {
        return Ok(());
    }
    let mut p = [0i32; 2];
    // SAFETY: p has room for the two fds.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err((0, "pipe", io::Error::last_os_error()));
    }
    // SAFETY: the child only makes raw syscalls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: closing the fd made above.
        unsafe { libc::close(p[0]) };
        // SAFETY: as above.
        unsafe { libc::close(p[1]) };
        return Err((0, "fork", e));
    }
    if pid == 0 {
        let fail = |i: usize, step: i32| -> ! {
            let e = nix::errno::Errno::last_raw();
            let msg = [i as i32, step, e];
            // SAFETY: msg is 12 readable bytes.
            unsafe { libc::write(p[1], msg.as_ptr().cast(), 12) };
            // SAFETY: leave without unwinding.
            unsafe { libc::_exit(1) }
        };
        for (i, f) in v.iter().enumerate() {
            // SAFETY: scalar arguments.
            if f.signum != 0 && unsafe { libc::fcntl(f.fd, F_SETSIG, f.signum) } != 0 {
                fail(i, 0);
            }
            if f.pid == 0 {
                continue;
            }
            // SAFETY: scalar arguments (raw syscall: this thread only, which is the whole child).
            if unsafe { libc::syscall(libc::SYS_setresuid, f.uid, f.euid, -1i32) } != 0 {
                fail(i, 1);
            }
            let ex = FOwnerEx {
                type_: f.pid_type,
                pid: f.pid,
            };
            // SAFETY: ex is a valid struct f_owner_ex.
            if unsafe { libc::fcntl(f.fd, F_SETOWN_EX, &ex as *const FOwnerEx) } != 0 {
                fail(i, 2);
            }
            // SAFETY: scalar arguments; the saved uid is still 0.
            if unsafe { libc::syscall(libc::SYS_setresuid, 0, 0, -1i32) } != 0 {
                fail(i, 3);
            }
        }
        // SAFETY: leave without unwinding.
        unsafe { libc::_exit(0) }
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(p[1]) };
    let mut msg = [0i32; 3];
    // SAFETY: msg has room for 12 bytes.
    let n = unsafe { libc::read(p[0], msg.as_mut_ptr().cast(), 12) };
    // SAFETY: closing the read end.
    unsafe { libc::close(p[0]) };
    let mut st = 0;
    // SAFETY: st is a valid int; pid is our child.
    while unsafe { libc::waitpid(pid, &mut st, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
    if n == 12 {
        let step = [
            "F_SETSIG",
            "setresuid to the owner's uids",
            "F_SETOWN_EX",
            "setresuid back",
        ]
        .get(msg[1] as usize)
        .copied()
        .unwrap_or("?");
        return Err((msg[0] as usize, step, io::Error::from_raw_os_error(msg[2])));
    }
    if !(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0) {
        return Err((0, "child", io::Error::other(format!("status {st:#x}"))));
    }
    Ok(())
}

/// F_SETFL with `add` or'ed into the current status flags of `fd`.
pub fn add_fl(fd: RawFd, add: i32) -> io::Result<()> {
    // SAFETY: scalar arguments.
    let fl = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) } as libc::c_long)? as i32;
    // SAFETY: scalar arguments.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, fl | add) } as libc::c_long)?;
    Ok(())
}

/// F_GETFL, then F_SETFL to `f(flags)`; returns the flags before.
pub fn swap_fl(fd: RawFd, f: impl FnOnce(i32) -> i32) -> io::Result<i32> {
    // SAFETY: scalar arguments.
    let fl = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) } as libc::c_long)? as i32;
    // SAFETY: scalar arguments.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, f(fl)) } as libc::c_long)?;
    Ok(fl)
}

/// FS_IOC_FIEMAP: the (logical offset, length) of every extent of the file
/// behind `fd` (data flushed first). EOPNOTSUPP where the file system has no
/// extent map (tmpfs).
pub fn fiemap(fd: RawFd) -> io::Result<Vec<(u64, u64)>> {
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_FLAG_SYNC: u32 = 1;
    const FIEMAP_EXTENT_LAST: u32 = 1;
    const N: usize = 128;
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Extent {
        logical: u64,
        physical: u64,
        length: u64,
        reserved64: [u64; 2],
        flags: u32,
        reserved: [u32; 3],
    }
    #[repr(C)]
    struct Fiemap {
        start: u64,
        length: u64,
        flags: u32,
        mapped_extents: u32,
        extent_count: u32,
        reserved: u32,
        extents: [Extent; N],
    }
    const _: () = assert!(std::mem::size_of::<Extent>() == 56);
    let mut out = Vec::new();
    let mut start = 0u64;
    loop {
        let mut m = Box::new(Fiemap {
            start,
            length: u64::MAX - start,
            flags: FIEMAP_FLAG_SYNC,
            mapped_extents: 0,
            extent_count: N as u32,
            reserved: 0,
            extents: [Extent::default(); N],
        });
        // SAFETY: m is a struct fiemap followed by room for extent_count extents.
        cvt(unsafe { libc::ioctl(fd, FS_IOC_FIEMAP, &mut *m as *mut Fiemap) } as i64)?;
        let n = (m.mapped_extents as usize).min(N);
        let mut last = n == 0;
        for e in &m.extents[..n] {
            out.push((e.logical, e.length));
            start = e.logical + e.length;
            last |= e.flags & FIEMAP_EXTENT_LAST != 0;
        }
        if last || n < N {
            return Ok(out);
        }
    }
}

/// Make `c`'s child the leader of a new session (setsid between fork and exec).
pub fn setsid_on_exec(c: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook only calls setsid(2), which is async-signal-safe and
    // touches no memory of the parent.
    unsafe {
        c.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(io::Error::from));
    }
}

/// A new, detached instance of file system `fstype` (fsopen, fsconfig,
/// fsmount): flags are `FSCONFIG_SET_FLAG` keys, strings `FSCONFIG_SET_STRING`
/// pairs. The fd is the root of the mount, reachable only through it
/// (`/proc/self/fd/N/...`); it goes when the fd is closed. Used for cgroup
/// hierarchies (a v1 hierarchy mounted with its controllers, or by name, is
/// the existing hierarchy).
pub fn fs_instance(fstype: &str, flags: &[&str], strings: &[(&str, &str)]) -> io::Result<OwnedFd> {
    const FSCONFIG_SET_FLAG: u32 = 0;
    const FSCONFIG_SET_STRING: u32 = 1;
    const FSCONFIG_CMD_CREATE: u32 = 6;
    const FSOPEN_CLOEXEC: u32 = 1;
    const FSMOUNT_CLOEXEC: u32 = 1;
    let c = |s: &str| std::ffi::CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let ty = c(fstype)?;
    // SAFETY: a NUL-terminated string built here and a scalar.
    let fs = owned(unsafe { libc::syscall(libc::SYS_fsopen, ty.as_ptr(), FSOPEN_CLOEXEC) })?;
    use std::os::fd::AsRawFd;
    let config = |cmd: u32, key: Option<&std::ffi::CString>, val: Option<&std::ffi::CString>| -> io::Result<()> {
        let k = key.map_or(std::ptr::null(), |k| k.as_ptr());
        let v = val.map_or(std::ptr::null(), |v| v.as_ptr());
        // SAFETY: the fs context fd is ours, the strings are NUL-terminated (or null where the command takes none).
        cvt(unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, k, v, 0) }).map(|_| ())
    };
    for f in flags {
        config(FSCONFIG_SET_FLAG, Some(&c(f)?), None)?;
    }
    for (k, v) in strings {
        config(FSCONFIG_SET_STRING, Some(&c(k)?), Some(&c(v)?))?;
    }
    config(FSCONFIG_CMD_CREATE, None, None)?;
    // SAFETY: scalar arguments on our fs context fd.
    owned(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) })
}
