//! Raw x86_64 Linux syscalls for the blobs (no libc). Each wrapper returns the
//! kernel's raw result: >= 0 on success, `-errno` on failure.
#![allow(clippy::missing_safety_doc)]

use core::arch::asm;

/// Syscall numbers (x86_64).
pub mod nr {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const OPEN: usize = 2;
    pub const CLOSE: usize = 3;
    pub const MMAP: usize = 9;
    pub const MPROTECT: usize = 10;
    pub const BRK: usize = 12;
    pub const MUNMAP: usize = 11;
    pub const RT_SIGACTION: usize = 13;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const RT_SIGRETURN: usize = 15;
    pub const IOCTL: usize = 16;
    pub const MREMAP: usize = 25;
    pub const MADVISE: usize = 28;
    pub const DUP2: usize = 33;
    pub const NANOSLEEP: usize = 35;
    pub const GETITIMER: usize = 36;
    pub const SETITIMER: usize = 38;
    pub const GETPID: usize = 39;
    pub const SOCKET: usize = 41;
    pub const CONNECT: usize = 42;
    pub const SENDMSG: usize = 46;
    pub const RECVMSG: usize = 47;
    pub const CLONE: usize = 56;
    pub const EXIT: usize = 60;
    pub const KILL: usize = 62;
    pub const FCNTL: usize = 72;
    pub const UMASK: usize = 95;
    pub const GETPPID: usize = 110;
    pub const SETGROUPS: usize = 116;
    pub const SETRESUID: usize = 117;
    pub const SETRESGID: usize = 119;
    pub const SETFSUID: usize = 122;
    pub const SETFSGID: usize = 123;
    pub const CAPSET: usize = 126;
    pub const RT_SIGQUEUEINFO: usize = 129;
    pub const SIGALTSTACK: usize = 131;
    pub const PERSONALITY: usize = 135;
    pub const SETPRIORITY: usize = 141;
    pub const SCHED_SETSCHEDULER: usize = 144;
    pub const MLOCK: usize = 149;
    pub const IO_SETUP: usize = 206;
    pub const IO_SUBMIT: usize = 209;
    pub const PRCTL: usize = 157;
    pub const ARCH_PRCTL: usize = 158;
    pub const GETTID: usize = 186;
    pub const FUTEX: usize = 202;
    pub const SET_TID_ADDRESS: usize = 218;
    pub const TIMER_CREATE: usize = 222;
    pub const TIMER_SETTIME: usize = 223;
    pub const TIMER_GETTIME: usize = 224;
    pub const TIMER_GETOVERRUN: usize = 225;
    pub const TIMER_DELETE: usize = 226;
    pub const EXIT_GROUP: usize = 231;
    pub const TGKILL: usize = 234;
    pub const SET_ROBUST_LIST: usize = 273;
    pub const VMSPLICE: usize = 278;
    pub const RT_TGSIGQUEUEINFO: usize = 297;
    pub const PRLIMIT64: usize = 302;
    pub const SECCOMP: usize = 317;
    pub const RSEQ: usize = 334;
    pub const MEMBARRIER: usize = 324;
    pub const CLONE3: usize = 435;
    pub const CLOSE_RANGE: usize = 436;
}

/// # Safety
/// Raw syscall: the caller is responsible for the arguments' validity.
#[inline(always)]
pub unsafe fn syscall6(n: usize, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize, a6: usize) -> isize {
    let ret: isize;
    // SAFETY: x86_64 syscall ABI; rcx/r11 are clobbered by the instruction.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret,
             in("rdi") a1, in("rsi") a2, in("rdx") a3, in("r10") a4, in("r8") a5, in("r9") a6,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// # Safety
/// See [`syscall6`].
#[inline(always)]
pub unsafe fn syscall3(n: usize, a1: usize, a2: usize, a3: usize) -> isize {
    // SAFETY: forwarded contract.
    unsafe { syscall6(n, a1, a2, a3, 0, 0, 0) }
}

/// # Safety
/// See [`syscall6`].
#[inline(always)]
pub unsafe fn syscall0(n: usize) -> isize {
    // SAFETY: forwarded contract.
    unsafe { syscall6(n, 0, 0, 0, 0, 0, 0) }
}

pub const AF_UNIX: usize = 1;
pub const SOCK_SEQPACKET: usize = 5;
pub const SOCK_CLOEXEC: usize = 0o2000000;
pub const SOL_SOCKET: i32 = 1;
pub const SCM_RIGHTS: i32 = 1;
pub const MSG_CMSG_CLOEXEC: usize = 0x4000_0000;
pub const SPLICE_F_GIFT: usize = 8;

/// `struct iovec`.
#[repr(C)]
pub struct Iovec {
    pub base: *mut u8,
    pub len: usize,
}

/// `struct msghdr`.
#[repr(C)]
pub struct Msghdr {
    pub name: *mut u8,
    pub namelen: u32,
    pub iov: *mut Iovec,
    pub iovlen: usize,
    pub control: *mut u8,
    pub controllen: usize,
    pub flags: i32,
}

/// `struct cmsghdr` followed by one int (an fd) — what SCM_RIGHTS with one fd
/// looks like (24 bytes with padding).
#[repr(C)]
pub struct CmsgFd {
    pub len: usize,
    pub level: i32,
    pub ty: i32,
    pub fd: i32,
    pub _pad: i32,
}

/// `struct sockaddr_un`.
#[repr(C)]
pub struct SockaddrUn {
    pub family: u16,
    pub path: [u8; 108],
}

pub fn gettid() -> i32 {
    // SAFETY: no arguments.
    unsafe { syscall0(nr::GETTID) as i32 }
}

pub fn close(fd: i32) -> isize {
    // SAFETY: closing an fd is memory-safe.
    unsafe { syscall3(nr::CLOSE, fd as usize, 0, 0) }
}

pub fn socket(domain: usize, ty: usize, proto: usize) -> isize {
    // SAFETY: scalar arguments only.
    unsafe { syscall3(nr::SOCKET, domain, ty, proto) }
}

/// # Safety
/// `addr` must point to `len` readable bytes.
pub unsafe fn connect(fd: i32, addr: *const u8, len: usize) -> isize {
    // SAFETY: forwarded contract.
    unsafe { syscall3(nr::CONNECT, fd as usize, addr as usize, len) }
}

/// # Safety
/// `msg` must describe valid buffers.
pub unsafe fn sendmsg(fd: i32, msg: *const Msghdr, flags: usize) -> isize {
    // SAFETY: forwarded contract.
    unsafe { syscall3(nr::SENDMSG, fd as usize, msg as usize, flags) }
}

/// # Safety
/// `msg` must describe valid, writable buffers.
pub unsafe fn recvmsg(fd: i32, msg: *mut Msghdr, flags: usize) -> isize {
    // SAFETY: forwarded contract.
    unsafe { syscall3(nr::RECVMSG, fd as usize, msg as usize, flags) }
}
