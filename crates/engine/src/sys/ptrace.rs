//! ptrace(2) requests and waits on tracees.
//!
//! Each function returns the kernel's result as `ptrace` does (negative
//! with errno set on failure), so callers read errno right after, as with
//! the raw call; the pointers the kernel writes through are built here
//! from Rust buffers of the size each request needs. Requests that write
//! the tracee's memory are `unsafe fn`.

use std::io;

pub const PTRACE_SEIZE: libc::c_uint = 0x4206;
pub const PTRACE_INTERRUPT: libc::c_uint = 0x4207;
pub const PTRACE_GETSIGMASK: libc::c_uint = 0x420a;
pub const PTRACE_SETSIGMASK: libc::c_uint = 0x420b;
pub const PTRACE_PEEKSIGINFO: libc::c_uint = 0x4209;
pub const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
pub const PTRACE_SECCOMP_GET_METADATA: libc::c_uint = 0x420d;
pub const PTRACE_GET_SYSCALL_INFO: libc::c_uint = 0x420e;
pub const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
pub const PTRACE_GET_THREAD_AREA: libc::c_uint = 25;

fn raw(req: libc::c_uint, tid: i32, addr: usize, data: usize) -> libc::c_long {
    // SAFETY: only called from this module, with addr/data either integers
    // the kernel does not dereference or pointers to live buffers of the
    // size `req` reads or writes (see each caller).
    unsafe { libc::ptrace(req, tid, addr as *mut libc::c_void, data as *mut libc::c_void) }
}

/// A request whose `addr` and `data` are integers (options, a signal, an
/// address in the tracee that is only read): SEIZE, INTERRUPT, CONT,
/// SYSCALL, SINGLESTEP, DETACH, LISTEN, KILL, PEEKDATA/PEEKTEXT. Any other
/// request fails with EINVAL.
pub fn scalar(req: libc::c_uint, tid: i32, addr: usize, data: usize) -> libc::c_long {
    let ok = matches!(
        req,
        PTRACE_SEIZE
            | PTRACE_INTERRUPT
            | libc::PTRACE_CONT
            | libc::PTRACE_SYSCALL
            | libc::PTRACE_SINGLESTEP
            | libc::PTRACE_DETACH
            | libc::PTRACE_LISTEN
            | libc::PTRACE_KILL
            | libc::PTRACE_PEEKDATA
            | libc::PTRACE_PEEKTEXT
    );
    if !ok {
        set_errno(libc::EINVAL);
        return -1;
    }
    // PEEKDATA: glibc passes its own result word as data.
    raw(req, tid, addr, if req == libc::PTRACE_PEEKDATA { 0 } else { data })
}

/// Set errno (to tell a -1 word read by PEEKDATA from an error, clear it first).
pub fn set_errno(v: i32) {
    nix::errno::Errno::set_raw(v);
}

/// PTRACE_POKEDATA: write the word `v` at `addr` of the tracee (even to
/// read-only text).
///
/// # Safety
/// This writes the tracee's memory: the caller must know what lives at
/// `addr` in the tracee and put back whatever the tracee still needs
/// before it runs on (this process's memory is not touched).
pub unsafe fn pokedata(tid: i32, addr: u64, v: u64) -> libc::c_long {
    raw(libc::PTRACE_POKEDATA, tid, addr as usize, v as usize)
}

/// PTRACE_GETREGSET of note `nt` into `buf`; the length the kernel filled
/// goes to `len`.
pub fn getregset(tid: i32, nt: usize, buf: &mut [u8], len: &mut usize) -> libc::c_long {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // iov describes `buf`; the kernel writes at most iov_len bytes.
    let r = raw(libc::PTRACE_GETREGSET, tid, nt, &mut iov as *mut libc::iovec as usize);
    *len = iov.iov_len;
    r
}

/// PTRACE_SETREGSET of note `nt` from `buf`.
pub fn setregset(tid: i32, nt: usize, buf: &[u8]) -> libc::c_long {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // iov describes `buf`, which the kernel only reads.
    raw(libc::PTRACE_SETREGSET, tid, nt, &mut iov as *mut libc::iovec as usize)
}

/// PTRACE_GETREGS into `r`.
pub fn getregs(tid: i32, r: &mut libc::user_regs_struct) -> libc::c_long {
    raw(libc::PTRACE_GETREGS, tid, 0, r as *mut libc::user_regs_struct as usize)
}

/// PTRACE_SETREGS from `r`.
pub fn setregs(tid: i32, r: &libc::user_regs_struct) -> libc::c_long {
    raw(
        libc::PTRACE_SETREGS,
        tid,
        0,
        r as *const libc::user_regs_struct as usize,
    )
}

/// An all-zero `user_regs_struct`.
pub fn zero_regs() -> libc::user_regs_struct {
    // SAFETY: user_regs_struct is integers only: all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// PTRACE_GETSIGMASK into `m`.
pub fn get_sigmask(tid: i32, m: &mut u64) -> libc::c_long {
    raw(PTRACE_GETSIGMASK, tid, 8, m as *mut u64 as usize)
}

/// PTRACE_SETSIGMASK from `m`.
pub fn set_sigmask(tid: i32, m: &u64) -> libc::c_long {
    raw(PTRACE_SETSIGMASK, tid, 8, m as *const u64 as usize)
}

/// PTRACE_GETSIGINFO into `si` (a siginfo_t).
pub fn getsiginfo(tid: i32, si: &mut [u8; 128]) -> libc::c_long {
    raw(libc::PTRACE_GETSIGINFO, tid, 0, si.as_mut_ptr() as usize)
}

/// PTRACE_PEEKSIGINFO: up to `buf.len()` pending siginfos from `off`.
pub fn peek_siginfo(tid: i32, off: u64, flags: u32, buf: &mut [[u8; 128]]) -> libc::c_long {
    #[repr(C)]
    struct Args {
        off: u64,
        flags: u32,
        nr: i32,
    }
    let a = Args {
        off,
        flags,
        nr: buf.len().min(i32::MAX as usize) as i32,
    };
    // The kernel writes at most a.nr siginfos of 128 bytes into buf.
    raw(
        PTRACE_PEEKSIGINFO,
        tid,
        &a as *const Args as usize,
        buf.as_mut_ptr() as usize,
    )
}

/// PTRACE_GET_SYSCALL_INFO into `buf` (at most its length is written).
pub fn get_syscall_info(tid: i32, buf: &mut [u8]) -> libc::c_long {
    raw(PTRACE_GET_SYSCALL_INFO, tid, buf.len(), buf.as_mut_ptr() as usize)
}

/// PTRACE_GET_RSEQ_CONFIGURATION into `buf` (at most its length is written).
pub fn get_rseq_configuration(tid: i32, buf: &mut [u8]) -> libc::c_long {
    raw(PTRACE_GET_RSEQ_CONFIGURATION, tid, buf.len(), buf.as_mut_ptr() as usize)
}

/// PTRACE_GET_THREAD_AREA for GDT entry `idx` into `d` (a struct user_desc).
pub fn get_thread_area(tid: i32, idx: u32, d: &mut [u32; 4]) -> libc::c_long {
    raw(PTRACE_GET_THREAD_AREA, tid, idx as usize, d.as_mut_ptr() as usize)
}

/// PTRACE_SECCOMP_GET_FILTER of filter `idx` into `buf`: the kernel writes
/// the whole program, at most BPF_MAXINSNS (4096) instructions of 8 bytes,
/// so `buf` must hold 32 KiB (shorter ones fail with EINVAL here).
pub fn seccomp_get_filter(tid: i32, idx: u64, buf: &mut [u8]) -> libc::c_long {
    if buf.len() < 4096 * 8 {
        set_errno(libc::EINVAL);
        return -1;
    }
    raw(PTRACE_SECCOMP_GET_FILTER, tid, idx as usize, buf.as_mut_ptr() as usize)
}

/// PTRACE_SECCOMP_GET_METADATA of filter `idx`: its flags.
pub fn seccomp_get_metadata(tid: i32, idx: u64, flags: &mut u64) -> libc::c_long {
    #[repr(C)]
    struct Meta {
        filter_off: u64,
        flags: u64,
    }
    let mut m = Meta {
        filter_off: idx,
        flags: 0,
    };
    let r = raw(
        PTRACE_SECCOMP_GET_METADATA,
        tid,
        std::mem::size_of::<Meta>(),
        &mut m as *mut Meta as usize,
    );
    *flags = m.flags;
    r
}

/// waitpid(2) with raw flags (`__WALL`, `WNOHANG`): (pid, status) as the
/// kernel returns them (pid 0 with WNOHANG when nothing changed).
pub fn waitpid(pid: i32, flags: i32) -> io::Result<(i32, i32)> {
    let mut st: libc::c_int = 0;
    // SAFETY: st is a valid out pointer.
    let r = unsafe { libc::waitpid(pid, &mut st, flags) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok((r, st))
    }
}
