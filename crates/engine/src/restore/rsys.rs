//! Raw syscalls the restore driver needs and nix does not wrap (clone3 with
//! set_tid, the kernel's own sigaction layout, futexes on the shared control
//! page). Errors are `std::io::Error` from errno.
#![allow(unsafe_code)]

use cryo_abi::kernel::{CloneArgs, KSigaction};
use std::io;

fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// What [`fork_with_pid`] returned.
pub enum Forked {
    /// In the parent: the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// fork(2) with a chosen pid (clone3 + set_tid in the caller's pid namespace).
///
/// The child is a copy of this (single-threaded) process; it must not return
/// into code that assumes other threads exist.
pub fn fork_with_pid(pid: i32) -> io::Result<Forked> {
    fork_with_pid_flags(pid, 0)
}

/// [`fork_with_pid`] with clone flags (CLONE_FILES: the child shares the
/// caller's fd table).
pub fn fork_with_pid_flags(pid: i32, flags: u64) -> io::Result<Forked> {
    let tid = pid as u64;
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        set_tid: &tid as *const u64 as u64,
        set_tid_size: 1,
        ..Default::default()
    };
    // SAFETY: fork-like clone3 (no CLONE_VM, no new stack): the child resumes
    // here with a copy of the address space, as with fork(2).
    let r = cvt(unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    })?;
    Ok(if r == 0 {
        Forked::Child
    } else {
        Forked::Parent(r as i32)
    })
}

/// rt_sigaction with the kernel layout (no libc translation).
pub fn rt_sigaction(sig: i32, act: &KSigaction) -> io::Result<()> {
    // SAFETY: act is a valid kernel sigaction; no old action requested.
    cvt(unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, act as *const KSigaction, 0usize, 8usize) })?;
    Ok(())
}

/// Block every signal; returns the previous mask.
pub fn block_all_signals() -> u64 {
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: 8-byte masks, as the kernel expects for x86_64.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            &mut old as *mut u64,
            8usize,
        )
    };
    old
}

/// Set the signal mask.
pub fn set_sigmask(mask: u64) {
    // SAFETY: 8-byte mask.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask as *const u64,
            0usize,
            8usize,
        )
    };
}

/// prctl with integer arguments.
pub fn prctl(op: i32, a: u64, b: u64, c: u64, d: u64) -> io::Result<i32> {
    // SAFETY: integer arguments only (callers never pass pointers here).
    Ok(cvt(unsafe { libc::prctl(op, a, b, c, d) } as libc::c_long)? as i32)
}

/// futex(FUTEX_WAIT) with a timeout in milliseconds; Ok(false) on timeout.
pub fn futex_wait(word: &std::sync::atomic::AtomicU32, val: u32, ms: u64) -> io::Result<bool> {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as i64,
        tv_nsec: ((ms % 1000) * 1_000_000) as i64,
    };
    // SAFETY: word is a valid aligned u32 and ts a valid timespec.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            val,
            &ts as *const libc::timespec,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ETIMEDOUT) => Ok(false),
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(true),
            _ => Err(e),
        };
    }
    Ok(true)
}

/// futex(FUTEX_WAKE) for every waiter.
pub fn futex_wake(word: &std::sync::atomic::AtomicU32) {
    // SAFETY: word is a valid aligned u32.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
}

/// mmap returning the address.
pub fn mmap(addr: u64, len: u64, prot: i32, flags: i32, fd: i32, off: u64) -> io::Result<u64> {
    // SAFETY: callers pass MAP_FIXED only over ranges they own (their reservation).
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len as usize,
            prot,
            flags,
            fd,
            off as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p as u64)
    }
}

/// munmap.
pub fn munmap(addr: u64, len: u64) -> io::Result<()> {
    // SAFETY: callers unmap only ranges they mapped and no longer reference.
    cvt(unsafe { libc::munmap(addr as *mut libc::c_void, len as usize) } as libc::c_long)?;
    Ok(())
}

/// pread into raw memory at `addr` (a mapping the caller owns), the whole
/// length or an error.
pub fn pread_into(fd: i32, addr: u64, len: u64, off: u64) -> io::Result<()> {
    let mut done = 0u64;
    while done < len {
        // SAFETY: [addr, addr+len) is a writable mapping owned by the caller.
        let r = unsafe {
            libc::pread(
                fd,
                (addr + done) as *mut libc::c_void,
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

/// Copy bytes to raw memory at `addr` (a mapping the caller owns).
pub fn poke(addr: u64, data: &[u8]) {
    // SAFETY: [addr, addr+len) is a writable mapping owned by the caller and
    // not aliased by any Rust reference.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) };
}

/// Read raw memory (the running kernel's vdso).
pub fn peek(addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    // SAFETY: callers pass a readable mapping of at least `len` bytes.
    unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, v.as_mut_ptr(), len) };
    v
}

/// Leave the engine's code for good: switch to `stack` and jump to `entry`
/// with `rdi = arg`.
///
/// # Safety
/// `entry` must be the relocated restorer's entry and `stack` the top of a
/// stack inside the bootstrap mapping; nothing of the current process state
/// is used afterwards.
pub unsafe fn jump_to_restorer(entry: u64, stack: u64, arg: u64) -> ! {
    // SAFETY: per the function contract.
    unsafe {
        std::arch::asm!(
            "mov rsp, {stack}",
            "xor ebp, ebp",
            "jmp {entry}",
            stack = in(reg) stack,
            entry = in(reg) entry,
            in("rdi") arg,
            options(noreturn)
        )
    }
}

extern "C" {
    /// glibc (2.35+): offset of this thread's rseq area from the thread pointer.
    static __rseq_offset: isize;
    /// glibc (2.35+): size of the registered rseq area, 0 if not registered.
    static __rseq_size: u32;
}

/// Unregister the rseq area glibc registered for this thread (a cloned task
/// inherits the engine's registration; the restored one is set by the
/// restorer).
pub fn rseq_unregister() {
    const RSEQ_SIG: u32 = 0x5305_3053;
    const RSEQ_FLAG_UNREGISTER: i32 = 1;
    // SAFETY: reading two glibc-exported constants.
    let (off, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size == 0 {
        return;
    }
    let tp: u64;
    // SAFETY: fs:0 holds the thread pointer on x86_64 glibc.
    unsafe { std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly)) };
    let addr = (tp as i64 + off as i64) as u64;
    for len in [size, 32, 20] {
        // SAFETY: unregistering touches no user memory beyond the rseq area.
        let r = unsafe { libc::syscall(libc::SYS_rseq, addr, len, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) };
        if r == 0 {
            return;
        }
    }
}
