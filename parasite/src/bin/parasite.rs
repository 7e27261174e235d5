//! The dump parasite: injected into a frozen task by the engine
//! (`cryo_engine::parasite`), it connects back over a unix socket and answers
//! commands that need to run inside the target (see `cryo_abi::parasite`).
#![no_std]
#![no_main]

use core::mem::size_of;
use cryo_abi::parasite::*;
use cryo_parasite::sys::{self, nr, syscall3, syscall6};

core::arch::global_asm!(
    ".section .text._start,\"ax\",@progbits",
    ".globl _start",
    "_start:",
    "    and rsp, -16",
    "    call {main}",
    "    int3",
    "    ud2",
    main = sym parasite_main,
);

/// Message buffer (in .bss: the blob's memory is private to it).
static mut BUF: [u8; MAX_MSG] = [0; MAX_MSG];

extern "C" fn parasite_main(args: *const BootArgs) -> i64 {
    // SAFETY: the host put a BootArgs at `args` before starting us.
    let args = unsafe { &*args };
    if args.magic != BOOT_MAGIC || args.abi_version != ABI_VERSION {
        return -22;
    }
    let sk = sys::socket(sys::AF_UNIX, sys::SOCK_SEQPACKET | sys::SOCK_CLOEXEC, 0);
    if sk < 0 {
        return sk as i64;
    }
    let sk = sk as i32;
    let mut addr = sys::SockaddrUn {
        family: sys::AF_UNIX as u16,
        path: [0; 108],
    };
    let plen = (args.sun_path_len as usize).min(108);
    addr.path[..plen].copy_from_slice(&args.sun_path[..plen]);
    // SAFETY: addr is a valid sockaddr_un of the given length.
    let r = unsafe { sys::connect(sk, &addr as *const _ as *const u8, 2 + plen) };
    if r < 0 {
        sys::close(sk);
        return r as i64;
    }
    let ret = serve(sk);
    sys::close(sk);
    ret
}

/// Control buffer for SCM_RIGHTS (cmsghdr + up to MAX_FDS_PER_MSG fds).
#[repr(C, align(8))]
struct Ctrl {
    len: usize,
    level: i32,
    ty: i32,
    fds: [i32; MAX_FDS_PER_MSG],
}

static mut CTRL: Ctrl = Ctrl {
    len: 0,
    level: 0,
    ty: 0,
    fds: [-1; MAX_FDS_PER_MSG],
};

/// Receive one request into BUF; returns (length, number of fds received
/// into CTRL.fds).
fn recv(sk: i32) -> Result<(usize, usize), isize> {
    // SAFETY: BUF and CTRL are only used from this single thread.
    let (buf, ctrl) = unsafe { (&mut *core::ptr::addr_of_mut!(BUF), &mut *core::ptr::addr_of_mut!(CTRL)) };
    ctrl.len = 0;
    let mut iov = sys::Iovec {
        base: buf.as_mut_ptr(),
        len: buf.len(),
    };
    let mut msg = sys::Msghdr {
        name: core::ptr::null_mut(),
        namelen: 0,
        iov: &mut iov,
        iovlen: 1,
        control: ctrl as *mut Ctrl as *mut u8,
        controllen: size_of::<Ctrl>(),
        flags: 0,
    };
    // SAFETY: msg describes valid buffers.
    let n = unsafe { sys::recvmsg(sk, &mut msg, sys::MSG_CMSG_CLOEXEC) };
    if n <= 0 {
        return Err(if n == 0 { -104 } else { n });
    }
    let nfds = if msg.controllen >= 16 && ctrl.level == sys::SOL_SOCKET && ctrl.ty == sys::SCM_RIGHTS {
        (ctrl.len.saturating_sub(16) / 4).min(MAX_FDS_PER_MSG)
    } else {
        0
    };
    Ok((n as usize, nfds))
}

/// vmsplice all of `[addr, addr+len)` into `pipe` (gift); bytes done or -errno.
fn vmsplice_all(pipe: i32, addr: u64, len: u64) -> Result<u64, i32> {
    let mut done = 0u64;
    while done < len {
        let mut iov = sys::Iovec {
            base: (addr + done) as *mut u8,
            len: (len - done) as usize,
        };
        // SAFETY: the range is the target's own mapped memory.
        let r = unsafe {
            syscall6(
                nr::VMSPLICE,
                pipe as usize,
                &mut iov as *mut _ as usize,
                1,
                sys::SPLICE_F_GIFT,
                0,
                0,
            )
        };
        if r <= 0 {
            return Err(if r == 0 { -5 } else { r as i32 });
        }
        done += r as u64;
    }
    Ok(done)
}

/// MEMBARRIER_CMD_GET_REGISTRATIONS (Linux 6.3+).
const MEMBARRIER_CMD_GET_REGISTRATIONS: usize = 1 << 9;
/// The private expedited barriers (PRIVATE_EXPEDITED, _SYNC_CORE, _RSEQ):
/// each one's registration command is the next bit up.
const MEMBARRIER_PRIVATE_CMDS: [usize; 3] = [1 << 3, 1 << 5, 1 << 7];

/// The mm's membarrier registrations as MEMBARRIER_CMD_REGISTER_* bits, or -errno.
fn membarrier_registrations() -> Result<u32, i32> {
    // SAFETY: scalar args.
    let r = unsafe { syscall3(nr::MEMBARRIER, MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0) };
    if r >= 0 {
        return Ok(r as u32);
    }
    if r != -22 {
        return Err(r as i32);
    }
    // Before 6.3: a private expedited barrier succeeds only when registered
    // (EPERM otherwise; EINVAL/ENOSYS when the kernel lacks it). The global
    // registration cannot be told apart this way (nor could CRIU).
    let mut mask = 0u32;
    for cmd in MEMBARRIER_PRIVATE_CMDS {
        // SAFETY: scalar args; a barrier has no other effect.
        let r = unsafe { syscall3(nr::MEMBARRIER, cmd, 0, 0) };
        match r {
            0 => mask |= (cmd << 1) as u32,
            -1 | -22 | -38 => {}
            e => return Err(e as i32),
        }
    }
    Ok(mask)
}

fn send(sk: i32, cmd: u32, status: i32, payload: &[u8]) -> isize {
    let mut rep = Reply {
        cmd,
        status,
        len: payload.len() as u64,
    };
    let mut iov = [
        sys::Iovec {
            base: &mut rep as *mut _ as *mut u8,
            len: size_of::<Reply>(),
        },
        sys::Iovec {
            base: payload.as_ptr() as *mut u8,
            len: payload.len(),
        },
    ];
    let msg = sys::Msghdr {
        name: core::ptr::null_mut(),
        namelen: 0,
        iov: iov.as_mut_ptr(),
        iovlen: 2,
        control: core::ptr::null_mut(),
        controllen: 0,
        flags: 0,
    };
    // SAFETY: msg describes valid buffers.
    unsafe { sys::sendmsg(sk, &msg, 0) }
}

fn as_bytes<T>(v: &T) -> &[u8] {
    // SAFETY: T is a plain #[repr(C)] value; reading its bytes is fine.
    unsafe { core::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }
}

/// Scratch for replies bigger than a few words.
static mut OUT: [u8; MAX_MSG] = [0; MAX_MSG];

fn serve(sk: i32) -> i64 {
    loop {
        let (n, nfds) = match recv(sk) {
            Ok(v) => v,
            Err(e) => return e as i64,
        };
        // SAFETY: single-threaded use of CTRL.
        let ctrl: &Ctrl = unsafe { &*core::ptr::addr_of!(CTRL) };
        let fds = &ctrl.fds[..nfds];
        let fd = fds.first().copied().unwrap_or(-1);
        if n < size_of::<Cmd>() {
            return -22;
        }
        // SAFETY: BUF holds at least a Cmd; read unaligned.
        let cmd: Cmd = unsafe { core::ptr::read_unaligned(core::ptr::addr_of!(BUF) as *const Cmd) };
        // SAFETY: single-threaded use.
        let out = unsafe { &mut *core::ptr::addr_of_mut!(OUT) };
        let r = match cmd.cmd {
            CMD_PING => {
                let v = cmd.arg[0].wrapping_add(1);
                send(sk, cmd.cmd, 0, as_bytes(&v))
            }
            CMD_SIGACTIONS => {
                let mut all = [KSigaction::default(); 64];
                let mut st = 0;
                for (i, sa) in all.iter_mut().enumerate() {
                    let sig = i + 1;
                    if sig == 9 || sig == 19 {
                        continue;
                    }
                    // SAFETY: sa is a valid out buffer of the kernel's size.
                    let r = unsafe { syscall6(nr::RT_SIGACTION, sig, 0, sa as *mut _ as usize, 8, 0, 0) };
                    if r < 0 {
                        st = r as i32;
                    }
                }
                send(sk, cmd.cmd, st, as_bytes(&all))
            }
            CMD_ITIMERS => {
                let mut its = [Itimerval::default(); 3];
                let mut st = 0;
                for (i, it) in its.iter_mut().enumerate() {
                    // SAFETY: valid out buffer.
                    let r = unsafe { syscall3(nr::GETITIMER, i, it as *mut _ as usize, 0) };
                    if r < 0 {
                        st = r as i32;
                    }
                }
                send(sk, cmd.cmd, st, as_bytes(&its))
            }
            CMD_POSIX_TIMERS => {
                let cnt = (cmd.arg[0] as usize).min((MAX_MSG - 64) / size_of::<PosixTimer>());
                let mut st = 0;
                for i in 0..cnt {
                    let off = size_of::<Cmd>() + i * 4;
                    if off + 4 > n {
                        break;
                    }
                    // SAFETY: within the received bytes.
                    let id = unsafe {
                        core::ptr::read_unaligned((core::ptr::addr_of!(BUF) as *const u8).add(off) as *const i32)
                    };
                    let mut ts = [0i64; 4];
                    // SAFETY: valid out buffer (struct itimerspec).
                    let r = unsafe { syscall3(nr::TIMER_GETTIME, id as usize, ts.as_mut_ptr() as usize, 0) };
                    if r < 0 {
                        st = r as i32;
                    }
                    // SAFETY: scalar arg.
                    let ov = unsafe { syscall3(nr::TIMER_GETOVERRUN, id as usize, 0, 0) };
                    let pt = PosixTimer {
                        id,
                        overrun: if ov < 0 { 0 } else { ov as i32 },
                        interval_sec: ts[0],
                        interval_nsec: ts[1],
                        value_sec: ts[2],
                        value_nsec: ts[3],
                    };
                    out[i * size_of::<PosixTimer>()..(i + 1) * size_of::<PosixTimer>()].copy_from_slice(as_bytes(&pt));
                }
                send(sk, cmd.cmd, st, &out[..cnt * size_of::<PosixTimer>()])
            }
            CMD_MISC => {
                let mut m = Misc::default();
                // SAFETY: scalar args; umask is set back at once.
                unsafe {
                    let old = syscall3(nr::UMASK, 0o22, 0, 0);
                    syscall3(nr::UMASK, old as usize, 0, 0);
                    m.umask = old as u32;
                    m.dumpable = syscall3(nr::PRCTL, 3 /* PR_GET_DUMPABLE */, 0, 0) as i32;
                    let mut v: i32 = 0;
                    syscall3(
                        nr::PRCTL,
                        37, /* PR_GET_CHILD_SUBREAPER */
                        &mut v as *mut i32 as usize,
                        0,
                    );
                    m.child_subreaper = v;
                    m.thp_disabled = syscall3(nr::PRCTL, 42 /* PR_GET_THP_DISABLE */, 0, 0) as i32;
                    m.brk = syscall3(nr::BRK, 0, 0, 0) as u64;
                }
                let mut st = 0;
                match membarrier_registrations() {
                    Ok(mask) => m.membarrier_mask = mask,
                    Err(e) => st = e,
                }
                for (i, rl) in m.rlimits.iter_mut().enumerate() {
                    // SAFETY: valid out buffer of two u64.
                    let r = unsafe { syscall6(nr::PRLIMIT64, 0, i, 0, rl.as_mut_ptr() as usize, 0, 0) };
                    if r < 0 {
                        st = r as i32;
                    }
                }
                send(sk, cmd.cmd, st, as_bytes(&m))
            }
            CMD_THREAD_MISC => {
                let mut t = ThreadMisc {
                    tid: sys::gettid(),
                    ..Default::default()
                };
                let mut ss = [0u64; 3];
                // SAFETY: valid out buffers.
                unsafe {
                    syscall3(
                        nr::PRCTL,
                        2, /* PR_GET_PDEATHSIG */
                        &mut t.pdeath_sig as *mut i32 as usize,
                        0,
                    );
                    syscall3(nr::SIGALTSTACK, 0, ss.as_mut_ptr() as usize, 0);
                    t.secbits = syscall3(nr::PRCTL, 27 /* PR_GET_SECUREBITS */, 0, 0) as i32;
                    syscall3(
                        nr::PRCTL,
                        40, /* PR_GET_TID_ADDRESS */
                        &mut t.clear_tid as *mut u64 as usize,
                        0,
                    );
                }
                t.ss_sp = ss[0];
                t.ss_flags = ss[1] as i32;
                t.ss_size = ss[2];
                send(sk, cmd.cmd, 0, as_bytes(&t))
            }
            CMD_TAKE_FD => {
                let v: i32 = fd;
                send(sk, cmd.cmd, if fd < 0 { -9 } else { 0 }, as_bytes(&v))
            }
            CMD_CLOSE_FD => {
                let r = sys::close(cmd.arg[0] as i32);
                send(sk, cmd.cmd, r as i32, &[])
            }
            CMD_VMSPLICE => {
                let pipe = cmd.arg[2] as i32;
                let mut done: u64 = 0;
                let mut st = 0;
                while done < cmd.arg[1] {
                    let mut iov = sys::Iovec {
                        base: (cmd.arg[0] + done) as *mut u8,
                        len: (cmd.arg[1] - done) as usize,
                    };
                    // SAFETY: the range is the target's own mapped memory.
                    let r = unsafe {
                        syscall6(
                            nr::VMSPLICE,
                            pipe as usize,
                            &mut iov as *mut _ as usize,
                            1,
                            sys::SPLICE_F_GIFT,
                            0,
                            0,
                        )
                    };
                    if r <= 0 {
                        st = r as i32;
                        break;
                    }
                    done += r as u64;
                }
                send(sk, cmd.cmd, st, as_bytes(&done))
            }
            CMD_VMSPLICE_BATCH => {
                let cnt = (cmd.arg[0] as usize).min(nfds);
                let mut total = 0u64;
                let mut st = 0;
                for (i, &pfd) in fds.iter().enumerate() {
                    let off = size_of::<Cmd>() + i * size_of::<Range>();
                    if i < cnt && st == 0 && off + size_of::<Range>() <= n {
                        // SAFETY: within the received bytes.
                        let r: Range = unsafe {
                            core::ptr::read_unaligned((core::ptr::addr_of!(BUF) as *const u8).add(off) as *const Range)
                        };
                        match vmsplice_all(pfd, r.addr, r.len) {
                            Ok(d) => total += d,
                            Err(e) => st = e,
                        }
                    }
                    sys::close(pfd);
                }
                send(sk, cmd.cmd, st, as_bytes(&total))
            }
            CMD_FINI => {
                send(sk, cmd.cmd, 0, &[]);
                return 0;
            }
            _ => send(sk, cmd.cmd, -38, &[]),
        };
        if cmd.cmd != CMD_TAKE_FD && cmd.cmd != CMD_VMSPLICE_BATCH {
            for &f in fds {
                sys::close(f);
            }
        }
        if r < 0 {
            return r as i64;
        }
    }
}
