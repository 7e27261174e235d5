//! Raw syscalls the restore driver needs and nix does not wrap (clone3 with
//! set_tid, the kernel's own sigaction layout, futexes on the shared control
//! page), and the calls a restored task makes on raw fd numbers before it
//! jumps to the restorer. Errors are `std::io::Error` from errno.
//!
//! Memory of the task (premapped VMAs, the bootstrap, the control page) is
//! reached through [`crate::sys::mem::Area`].

use cryo_abi::kernel::CloneArgs;
pub use cryo_abi::kernel::KSigaction;
use std::io;

use super::cvt;

/// What [`fork_with_pid`] returned.
pub enum Forked {
    /// In the parent: the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// fork(2) with a chosen pid (clone3 + set_tid in the caller's pid namespace).
///
/// The child is a copy of this process with one thread. The restore driver
/// forks while single-threaded, so the child may run ordinary Rust code; a
/// caller with other threads must keep its child to async-signal-safe calls
/// (the kernel cannot check this: nix's `fork` is an `unsafe fn` for it).
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

/// fork(2) as clone3 with `flags` (no set_tid: the kernel picks the pid).
pub fn fork_with_flags(flags: u64) -> io::Result<Forked> {
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
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

/// prctl with integer arguments: only the operations whose arguments are
/// all integers (PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_KEEPCAPS,
/// PR_SET_CHILD_SUBREAPER, PR_SET_THP_DISABLE, PR_SET_NO_NEW_PRIVS); any
/// other fails with EINVAL.
pub fn prctl(op: i32, a: u64, b: u64, c: u64, d: u64) -> io::Result<i32> {
    let ints = [
        libc::PR_SET_PDEATHSIG,
        libc::PR_SET_DUMPABLE,
        libc::PR_SET_KEEPCAPS,
        libc::PR_SET_CHILD_SUBREAPER,
        libc::PR_SET_THP_DISABLE,
        libc::PR_SET_NO_NEW_PRIVS,
    ];
    if !ints.contains(&op) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: these operations take integer arguments only.
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

/// Leave the engine's code for good, as execve(2) leaves a program: block
/// every signal (raw, so that glibc's SIGCANCEL and SIGSETXID are blocked
/// too), switch to `stack` and jump to `entry` with `rdi = arg`. Returns
/// only when `entry` or `stack` lie outside `boot`.
///
/// The restorer runs with every signal blocked: the POSIX timers it
/// re-creates fire into pending queues, not into handlers or SIG_IGN (a
/// timer whose signal is ignored when it fires stops until the action
/// changes). The task's mask came from cryo's fork, but glibc's first
/// pthread_create in a task (a page reader thread for a large restore)
/// unblocks SIGCANCEL and SIGSETXID (32, 33) for good.
///
/// Safe because nothing of this process's Rust state is used again: the
/// code at `entry` (the relocated restorer the engine wrote into `boot`,
/// which no Rust object refers to) takes the process over, as a new
/// program would.
pub fn enter_restorer(boot: &crate::sys::mem::Area, entry: u64, stack: u64, arg: u64) -> io::Error {
    if !boot.contains(entry, 1) || stack < 8 || !boot.contains(stack - 8, 8) {
        return io::Error::other(format!(
            "entry {entry:#x} or stack {stack:#x} outside the bootstrap {:#x}-{:#x}",
            boot.start(),
            boot.end()
        ));
    }
    block_all_signals();
    // SAFETY: entry and stack lie in the bootstrap area (checked), which
    // holds the relocated restorer and its stacks; the jump never returns
    // and nothing of the Rust state is used afterwards.
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

/// A holder of new namespaces: clone3(`flags`) of a child that (only
/// raw, async-signal-safe syscalls) dies with its parent, unshares
/// `unshare_flags`, writes one byte to `ready` (0, or the errno of the
/// unshare), and waits for EOF on `hold` before it exits. The child closes
/// `close` first (the caller's ends of the two pipes). Returns its pid.
pub fn spawn_ns_holder(flags: u64, unshare_flags: i32, ready: i32, hold: i32, close: [i32; 2]) -> io::Result<i32> {
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: fork-like clone3 (no CLONE_VM, no new stack): the child resumes
    // here with a copy of the address space and only makes raw syscalls on
    // scalars and a stack buffer before _exit.
    let r = cvt(unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    })?;
    if r != 0 {
        return Ok(r as i32);
    }
    // (The child.) Raw syscalls only, on fds it owns and a local buffer.
    // SAFETY: scalar arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
    for fd in close {
        // SAFETY: the caller's pipe ends, copies in this child; nothing else owns them here.
        unsafe { libc::close(fd) };
    }
    let mut b = [0u8; 1];
    // SAFETY: scalar argument.
    if unshare_flags != 0 && unsafe { libc::unshare(unshare_flags) } != 0 {
        b[0] = io::Error::last_os_error().raw_os_error().unwrap_or(1).clamp(1, 255) as u8;
    }
    // SAFETY: a one-byte local buffer.
    unsafe { libc::write(ready, b.as_ptr().cast(), 1) };
    // SAFETY: a one-byte local buffer.
    while unsafe { libc::read(hold, b.as_mut_ptr().cast(), 1) } > 0 {}
    exit_now(0)
}

/// clone3(CLONE_PARENT, set_tid = [pid]): a fork whose child's parent is the
/// caller's parent (a helper forks the tasks of its session this way).
pub fn fork_sibling_with_pid(pid: i32) -> io::Result<Forked> {
    fork_sibling_with_pid_flags(pid, 0)
}

/// [`fork_sibling_with_pid`] with more clone flags (new namespaces).
pub fn fork_sibling_with_pid_flags(pid: i32, flags: u64) -> io::Result<Forked> {
    let tid = pid as u64;
    // struct clone_args up to cgroup: flags, pidfd, child_tid, parent_tid,
    // exit_signal (0: CLONE_PARENT takes the caller's), stack, stack_size,
    // tls, set_tid, set_tid_size, cgroup.
    let args: [u64; 11] = [
        libc::CLONE_PARENT as u64 | flags,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        &tid as *const u64 as u64,
        1,
        0,
    ];
    // SAFETY: fork-like clone3 (no CLONE_VM, no new stack): the child resumes
    // here with a copy of the address space, as with fork(2).
    let r = unsafe { libc::syscall(libc::SYS_clone3, args.as_ptr(), std::mem::size_of_val(&args)) };
    match r {
        r if r < 0 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        r => Ok(Forked::Parent(r as i32)),
    }
}

// ---- calls on raw fd numbers, made by a task before it jumps to the
// restorer (its fds are numbers planned by the engine, not Rust objects).
// None of them touches memory; closing or replacing an fd that a Rust
// object owns only makes that object's later calls fail (EBADF).

fn cvt_int(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Leave now, without destructors or atexit handlers (_exit(2)).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Die of `sig` as the dumped zombie did: default action, unblocked, sent to itself.
pub fn die_by_signal(sig: i32) {
    // SAFETY: SIG_DFL installs no handler.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
    set_sigmask(0);
    // SAFETY: scalar arguments.
    unsafe { libc::kill(std::process::id() as i32, sig) };
}

/// poll(2) one fd for input for `ms` milliseconds: Ok(true) when readable.
pub fn poll_in(fd: i32, ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is one valid pollfd.
    Ok(cvt_int(unsafe { libc::poll(&mut pfd, 1, ms) })? > 0)
}

/// read(2) from an fd number into `buf`.
pub fn read_fd(fd: i32, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a writable buffer of its length.
    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// write(2) of `buf` to an fd number.
pub fn write_fd(fd: i32, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a readable buffer of its length.
    let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// dup3(2) between fd numbers.
pub fn dup3(src: i32, dst: i32, flags: i32) -> io::Result<()> {
    // SAFETY: scalar arguments.
    cvt_int(unsafe { libc::dup3(src, dst, flags) }).map(drop)
}

/// Set or clear the close-on-exec flag of an fd number.
pub fn set_cloexec(fd: i32, on: bool) -> io::Result<()> {
    // SAFETY: scalar arguments.
    cvt_int(unsafe { libc::fcntl(fd, libc::F_SETFD, if on { libc::FD_CLOEXEC } else { 0 }) }).map(drop)
}

/// close_range(2) of `[first, last]`.
pub fn close_range(first: u32, last: u32) -> io::Result<()> {
    // SAFETY: scalar arguments.
    cvt(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) }).map(drop)
}

/// fchdir(2) to a directory fd number.
pub fn fchdir(fd: i32) -> io::Result<()> {
    // SAFETY: scalar argument.
    cvt_int(unsafe { libc::fchdir(fd) }).map(drop)
}

/// TIOCSPGRP: make `pgrp` the foreground group of the terminal behind `fd`.
pub fn tcsetpgrp(fd: i32, pgrp: i32) -> io::Result<()> {
    // SAFETY: TIOCSPGRP reads one pid_t from a valid pointer.
    cvt_int(unsafe { libc::ioctl(fd, libc::TIOCSPGRP, &pgrp as *const i32) }).map(drop)
}

/// personality(2).
pub fn personality(persona: u64) -> io::Result<()> {
    // SAFETY: scalar argument.
    cvt_int(unsafe { libc::personality(persona as libc::c_ulong) }).map(drop)
}

/// setrlimit(2) of resource `res`.
pub fn setrlimit(res: i32, cur: u64, max: u64) -> io::Result<()> {
    let rl = libc::rlimit {
        rlim_cur: cur,
        rlim_max: max,
    };
    // SAFETY: rl is a valid rlimit.
    cvt_int(unsafe { libc::setrlimit(res as _, &rl) }).map(drop)
}

/// getrlimit(2) of resource `res`: (soft, hard); (0, 0) on error, as the
/// caller only lowers towards it.
pub fn getrlimit(res: i32) -> (u64, u64) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrlimit(res as _, &mut rl) };
    (rl.rlim_cur, rl.rlim_max)
}

/// F_GETFL of an fd number (the file status flags and access mode).
pub fn get_fl(fd: i32) -> io::Result<i32> {
    // SAFETY: scalar arguments.
    cvt_int(unsafe { libc::fcntl(fd, libc::F_GETFL) })
}

/// F_SETLEASE on an fd number.
pub fn set_lease(fd: i32, ty: i32) -> io::Result<()> {
    // SAFETY: scalar arguments.
    cvt_int(unsafe { libc::fcntl(fd, libc::F_SETLEASE, ty) }).map(drop)
}

/// flock(2) on an fd number.
pub fn flock(fd: i32, op: i32) -> io::Result<()> {
    // SAFETY: scalar arguments.
    cvt_int(unsafe { libc::flock(fd, op) }).map(drop)
}

/// A record lock (`cmd` F_SETLK or F_OFD_SETLK) of `[start, start + len)`
/// from SEEK_SET, l_pid 0.
pub fn set_record_lock(fd: i32, cmd: i32, ty: i16, start: i64, len: i64) -> io::Result<()> {
    let fl = libc::flock {
        l_type: ty,
        l_whence: libc::SEEK_SET as i16,
        l_start: start,
        l_len: len,
        l_pid: 0,
    };
    // SAFETY: fl is a valid struct flock.
    cvt_int(unsafe { libc::fcntl(fd, cmd, &fl) }).map(drop)
}
