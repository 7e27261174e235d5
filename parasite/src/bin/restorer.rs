//! The restorer: runs inside a freshly cloned task after the engine has
//! premapped its memory, and turns it into the dumped process (see
//! `cryo_abi::restorer` for the protocol). Order: unmap everything but the
//! premapped areas and the bootstrap, move the premapped VMAs into place, move
//! the kernel's vdso/vvar to the dumped addresses, PR_SET_MM_MAP, create the
//! other threads with clone3(set_tid), timers, pending signals, report ready,
//! wait for the engine's go, credentials last, then rt_sigreturn into the
//! saved registers and FPU state of each thread.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};
use cryo_abi::kernel::{CloneArgs, CLONE_FILES, CLONE_FS, CLONE_SIGHAND, CLONE_SYSVSEM, CLONE_THREAD, CLONE_VM};
use cryo_abi::restorer::*;
use cryo_parasite::sys::{close, gettid, nr, syscall3, syscall6};

core::arch::global_asm!(
    ".section .text._start,\"ax\",@progbits",
    ".globl _start",
    "_start:",
    "    and rsp, -16",
    "    call {main}",
    "    ud2",
    // cryo_clone_thread(args: *const CloneArgs, size, func, arg) -> isize:
    // clone3 whose child calls func(arg) on the new stack and never returns.
    ".globl cryo_clone_thread",
    "cryo_clone_thread:",
    "    mov r8, rdx",
    "    mov r9, rcx",
    "    mov eax, {clone3}",
    "    syscall",
    "    test rax, rax",
    "    jnz 1f",
    "    xor ebp, ebp",
    "    mov rdi, r9",
    "    and rsp, -16",
    "    call r8",
    "    ud2",
    "1:  ret",
    // cryo_sigreturn(rsp): switch to the frame and enter rt_sigreturn.
    ".globl cryo_sigreturn",
    "cryo_sigreturn:",
    "    mov rsp, rdi",
    "    mov eax, {rt_sigreturn}",
    "    syscall",
    "    ud2",
    // cryo_sigreturn_traced(rsp): the same after a stop for the tracing
    // engine: tgkill(self, SIGSTOP), which the engine takes (and swallows)
    // as a signal-delivery stop. Not int3: its SIGTRAP is forced, and a
    // forced signal that is blocked (as every signal is here) resets the
    // task's SIGTRAP handler to SIG_DFL and unblocks it, so that a pending
    // SIGTRAP would then kill the restored task.
    ".globl cryo_sigreturn_traced",
    "cryo_sigreturn_traced:",
    "    mov r12, rdi",
    "    mov eax, {getpid}",
    "    syscall",
    "    mov r13, rax",
    "    mov eax, {gettid}",
    "    syscall",
    "    mov rdi, r13",
    "    mov rsi, rax",
    "    mov edx, {sigstop}",
    "    mov eax, {tgkill}",
    "    syscall",
    "    mov rsp, r12",
    "    mov eax, {rt_sigreturn}",
    "    syscall",
    "    ud2",
    main = sym restorer_main,
    clone3 = const nr::CLONE3,
    rt_sigreturn = const nr::RT_SIGRETURN,
    getpid = const nr::GETPID,
    gettid = const nr::GETTID,
    tgkill = const nr::TGKILL,
    sigstop = const SIGSTOP,
);

extern "C" {
    fn cryo_clone_thread(args: *const CloneArgs, size: usize, func: extern "C" fn(u64) -> !, arg: u64) -> isize;
    fn cryo_sigreturn(rsp: u64) -> !;
    fn cryo_sigreturn_traced(rsp: u64) -> !;
}

const SIGSTOP: usize = 19;
const MREMAP_MAYMOVE: usize = 1;
const MREMAP_FIXED: usize = 2;
const MREMAP_DONTUNMAP: usize = 4;
const PR_SET_PDEATHSIG: usize = 1;
const PR_CAPBSET_READ: usize = 23;
/// sizeof(struct robust_list_head): the only length set_robust_list takes.
const ROBUST_LIST_HEAD_LEN: usize = 24;
const PR_SET_SECCOMP: usize = 22;
const PR_SET_NO_NEW_PRIVS: usize = 38;
const SECCOMP_MODE_STRICT: usize = 1;
const SECCOMP_SET_MODE_FILTER: usize = 1;
const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;
const PR_SET_NAME: usize = 15;
const PR_SET_DUMPABLE: usize = 4;
const PR_SET_MM: usize = 35;
const PR_SET_MM_MAP: usize = 14;
const PR_SET_CHILD_SUBREAPER: usize = 36;
const PR_SET_THP_DISABLE: usize = 41;
const PR_SET_SECUREBITS: usize = 28;
const PR_CAPBSET_DROP: usize = 24;
const PR_CAP_AMBIENT: usize = 47;
const PR_CAP_AMBIENT_RAISE: usize = 2;
const ARCH_SET_GS: usize = 0x1001;
const ARCH_SET_FS: usize = 0x1002;
const FUTEX_WAIT: usize = 0;
const FUTEX_WAKE: usize = 1;
const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// The process's args, for the other threads (set before they are created).
static mut ARGS: *const RstArgs = core::ptr::null();
/// Threads of this process that passed the final barrier.
static THREADS_OUT: AtomicU32 = AtomicU32::new(0);
/// Set by the leader once it has installed the shared (TSYNC) seccomp chain.
static SECCOMP_SHARED: AtomicU32 = AtomicU32::new(0);

/// The kernel's `struct uffdio_register`.
#[repr(C)]
struct UffdioRegister {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}
const _: () = assert!(core::mem::size_of::<UffdioRegister>() == 32);
/// `_IOWR(0xAA, 0x00, struct uffdio_register)`.
const UFFDIO_REGISTER: usize = 0xc020_aa00;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;

fn ctl(args: &RstArgs) -> &'static RstCtl {
    // SAFETY: the engine mapped the control page (RST_CTL_SIZE bytes) at this
    // address in every task; RstCtl is all atomics, so the other processes
    // writing it meanwhile is no data race.
    unsafe { &*(args.ctl as *const RstCtl) }
}

fn futex_wait(p: &AtomicU32, val: u32) {
    // SAFETY: p is a valid, aligned u32; a spurious return is handled by callers.
    unsafe { syscall6(nr::FUTEX, p.as_ptr() as usize, FUTEX_WAIT, val as usize, 0, 0, 0) };
}

fn futex_wake(p: &AtomicU32) {
    // SAFETY: as above.
    unsafe { syscall6(nr::FUTEX, p.as_ptr() as usize, FUTEX_WAKE, i32::MAX as usize, 0, 0, 0) };
}

/// Report a failure (with the failing thread's id) to the engine and die
/// (the engine kills the rest).
fn fail(args: &RstArgs, stage: i32, code: isize) -> ! {
    let c = ctl(args);
    if c.err_pid
        .compare_exchange(0, gettid(), Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
    {
        c.err_stage.store(stage, Ordering::SeqCst);
        c.err_code.store(code as i64, Ordering::SeqCst);
    }
    c.go.store(GO_ABORT, Ordering::SeqCst);
    futex_wake(&c.go);
    c.ready.fetch_add(1 << 24, Ordering::SeqCst);
    futex_wake(&c.ready);
    loop {
        // SAFETY: exit_group never returns.
        unsafe { syscall3(nr::EXIT_GROUP, 1, 0, 0) };
    }
}

fn getpid() -> i32 {
    // SAFETY: no arguments.
    unsafe { syscall3(nr::GETPID, 0, 0, 0) as i32 }
}

fn check(args: &RstArgs, stage: i32, r: isize) -> isize {
    if r < 0 {
        fail(args, stage, r);
    }
    r
}

unsafe fn slice<'a, T>(ptr: u64, n: u32) -> &'a [T] {
    if n == 0 {
        return &[];
    }
    // SAFETY: the engine wrote `n` elements at `ptr`.
    unsafe { core::slice::from_raw_parts(ptr as *const T, n as usize) }
}

extern "C" fn restorer_main(args: *const RstArgs) -> ! {
    // SAFETY: the engine wrote a RstArgs at `args` before jumping here.
    let args = unsafe { &*args };
    if args.magic != RST_MAGIC || args.abi_version != RST_ABI_VERSION {
        fail(args, STAGE_ARGS, -22);
    }
    // SAFETY: single-threaded until the threads are created below.
    unsafe { ARGS = args };
    // SAFETY: the engine built these arrays.
    let (keep, vmas, threads) = unsafe {
        (
            slice::<RstRange>(args.keep, args.nr_keep),
            slice::<RstVma>(args.vmas, args.nr_vmas),
            slice::<RstThread>(args.threads, args.nr_threads),
        )
    };

    // 1. Unmap everything outside `keep` (sorted by start).
    let mut cur = 0u64;
    for k in keep {
        if k.start > cur {
            // SAFETY: nothing we need lives outside `keep`.
            check(args, STAGE_UNMAP, unsafe {
                syscall3(nr::MUNMAP, cur as usize, (k.start - cur) as usize, 0)
            });
        }
        cur = cur.max(k.start + k.len);
    }
    if cur < TASK_SIZE {
        // SAFETY: as above.
        check(args, STAGE_UNMAP, unsafe {
            syscall3(nr::MUNMAP, cur as usize, (TASK_SIZE - cur) as usize, 0)
        });
    }

    // 2. Kernel mappings (vvar*, vdso) to their dumped addresses.
    for k in &args.kmaps[..args.nr_kmaps as usize] {
        if k.src != k.dst {
            // SAFETY: the target range was unmapped above and no premap overlaps it.
            let r = unsafe {
                syscall6(
                    nr::MREMAP,
                    k.src as usize,
                    k.len as usize,
                    k.len as usize,
                    MREMAP_MAYMOVE | MREMAP_FIXED,
                    k.dst as usize,
                    0,
                )
            };
            check(args, STAGE_VDSO, r);
        }
    }

    // 3. Premapped VMAs into place, then their final protection.
    for v in vmas {
        if v.madv & MADV_BIT_GUARD != 0 {
            // SAFETY: guards inside our own mappings (MADV_GUARD_INSTALL).
            check(args, STAGE_REMAP, unsafe {
                syscall3(nr::MADVISE, v.dst as usize, v.len as usize, 102)
            });
            continue;
        }
        if v.src != v.dst {
            // SAFETY: dst is free (everything outside `keep` is gone, and the
            // premap area does not overlap any final VMA).
            let r = unsafe {
                syscall6(
                    nr::MREMAP,
                    v.src as usize,
                    v.len as usize,
                    v.len as usize,
                    MREMAP_MAYMOVE | MREMAP_FIXED,
                    v.dst as usize,
                    0,
                )
            };
            check(args, STAGE_REMAP, r);
        }
        if v.madv & MADV_BIT_AIO != 0 {
            continue; // a ring's contents: see restore_aio_ring below
        }
        // SAFETY: the range is ours now.
        check(args, STAGE_REMAP, unsafe {
            syscall3(nr::MPROTECT, v.dst as usize, v.len as usize, v.prot as usize)
        });
        let madv = [
            (MADV_BIT_DONTFORK, 10usize),
            (MADV_BIT_HUGEPAGE, 14),
            (MADV_BIT_NOHUGEPAGE, 15),
            (MADV_BIT_DONTDUMP, 16),
            (MADV_BIT_SEQUENTIAL, 2),
            (MADV_BIT_RANDOM, 1),
            (MADV_BIT_MERGEABLE, 12),
            (MADV_BIT_WIPEONFORK, 18),
        ];
        for (bit, advice) in madv {
            if v.madv & bit != 0 {
                // SAFETY: advice on our own mapping.
                unsafe { syscall3(nr::MADVISE, v.dst as usize, v.len as usize, advice) };
            }
        }
        if v.madv & MADV_BIT_MLOCK != 0 {
            // SAFETY: locks our own mapping (still root: creds come last).
            check(args, STAGE_REMAP, unsafe {
                syscall3(nr::MLOCK, v.dst as usize, v.len as usize, 0)
            });
        }
    }
    let _ = MREMAP_DONTUNMAP;
    // Lazy restore: the lazy VMAs (empty, in place) are registered in
    // missing mode before anything else can touch them (rseq and the
    // threads write into them below, and a write before the registration
    // would leave a zero page that hides the dumped one). The daemon has
    // the userfaultfd already; ours goes.
    if args.uffd >= 0 {
        for v in vmas.iter().filter(|v| v.madv & MADV_BIT_LAZY != 0) {
            let mut reg = UffdioRegister {
                start: v.dst,
                len: v.len,
                mode: UFFDIO_REGISTER_MODE_MISSING,
                ioctls: 0,
            };
            // SAFETY: `reg` is a valid uffdio_register the kernel reads and writes.
            check(args, STAGE_LAZY, unsafe {
                syscall3(
                    nr::IOCTL,
                    args.uffd as usize,
                    UFFDIO_REGISTER,
                    &mut reg as *mut UffdioRegister as usize,
                )
            });
        }
        close(args.uffd);
    }
    // AIO rings, once every VMA is in place (io_setup maps the new ring
    // wherever there is room).
    for v in vmas.iter().filter(|v| v.madv & MADV_BIT_AIO != 0) {
        restore_aio_ring(args, v);
    }

    // 4. mm fields, auxv, exe.
    // SAFETY: `mm` is a valid prctl_mm_map whose auxv pointer the engine filled.
    let r = unsafe {
        syscall6(
            nr::PRCTL,
            PR_SET_MM,
            PR_SET_MM_MAP,
            &args.mm as *const PrctlMmMap as usize,
            core::mem::size_of::<PrctlMmMap>(),
            0,
            0,
        )
    };
    check(args, STAGE_MM, r);
    if args.thp_disabled > 0 {
        // SAFETY: scalar prctl.
        unsafe { syscall6(nr::PRCTL, PR_SET_THP_DISABLE, 1, 0, 0, 0, 0) };
    }
    if args.child_subreaper > 0 {
        // SAFETY: scalar prctl.
        unsafe { syscall6(nr::PRCTL, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0, 0) };
    }

    // 5. The other threads.
    for (i, t) in threads.iter().enumerate().skip(1) {
        let tid = t.tid as u64;
        let ca = CloneArgs {
            flags: CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM,
            pidfd: 0,
            child_tid: 0,
            parent_tid: 0,
            exit_signal: 0,
            stack: t.stack_top - RST_STACK_SIZE as u64,
            stack_size: RST_STACK_SIZE as u64,
            tls: 0,
            set_tid: &tid as *const u64 as u64,
            set_tid_size: 1,
            cgroup: 0,
        };
        // SAFETY: the child runs thread_main on its own stack inside the bootstrap.
        let r = unsafe { cryo_clone_thread(&ca, core::mem::size_of::<CloneArgs>(), thread_main, i as u64) };
        check(args, STAGE_THREADS, r);
    }

    // 6. Timers.
    for (which, it) in args.itimers.iter().enumerate() {
        if it.value_sec != 0 || it.value_usec != 0 {
            // SAFETY: `it` is a struct itimerval.
            let r = unsafe { syscall3(nr::SETITIMER, which, it as *const Itimerval as usize, 0) };
            check(args, STAGE_TIMERS, r);
        }
    }
    // SAFETY: engine-written array.
    let timers = unsafe { slice::<RstPosixTimer>(args.posix_timers, args.nr_posix_timers) };
    restore_posix_timers(args, timers);

    // 7. Process-wide pending signals.
    // SAFETY: engine-written array.
    let shared = unsafe { slice::<RstSiginfo>(args.shared_siginfo, args.nr_shared_siginfo) };
    for si in shared {
        let signo = i32::from_ne_bytes([si.raw[0], si.raw[1], si.raw[2], si.raw[3]]);
        // SAFETY: si is a full siginfo.
        let r = unsafe {
            syscall3(
                nr::RT_SIGQUEUEINFO,
                getpid() as usize,
                signo as usize,
                si as *const RstSiginfo as usize,
            )
        };
        check(args, STAGE_SIGNALS, r);
    }

    thread_finish(args, &threads[0], true)
}

/// The kernel's `struct aio_ring` header (the io_events follow it).
#[repr(C)]
struct AioRing {
    id: u32,
    nr: u32,
    head: u32,
    tail: u32,
    magic: u32,
    compat_features: u32,
    incompat_features: u32,
    header_length: u32,
}

/// The kernel's `struct iocb`.
#[repr(C)]
struct Iocb {
    aio_data: u64,
    aio_key: u32,
    aio_rw_flags: u32,
    aio_lio_opcode: u16,
    aio_reqprio: i16,
    aio_fildes: u32,
    aio_buf: u64,
    aio_nbytes: u64,
    aio_offset: i64,
    aio_reserved2: u64,
    aio_flags: u32,
    aio_resfd: u32,
}
const _: () = assert!(core::mem::size_of::<Iocb>() == 64);

/// Make a new AIO context whose ring is the dumped one (its copy is at
/// `v.dst`; `v.prot` is the io_setup() size): the kernel's tail is moved by
/// completed no-op writes to /dev/null (synchronous), the head is set, the
/// events are copied, and the new ring replaces the copy at `v.dst` (the
/// context id is the ring's address).
fn restore_aio_ring(args: &RstArgs, v: &RstVma) {
    let old = v.dst as *const AioRing;
    // SAFETY: the copy of the dumped ring (at least one page) was moved to dst.
    let (head, tail, nr) = unsafe { ((*old).head, (*old).tail, (*old).nr) };
    let mut ctx: u64 = 0;
    // SAFETY: ctx is a valid out-pointer.
    check(args, STAGE_REMAP, unsafe {
        syscall3(nr::IO_SETUP, v.prot as usize, &mut ctx as *mut u64 as usize, 0)
    });
    let new = ctx as *mut AioRing;
    let events = ((v.len - 32) / 32) as u32;
    // SAFETY: io_setup mapped the new ring at ctx.
    let new_nr = unsafe { (*new).nr };
    if tail >= nr || head >= nr || nr != events || new_nr != nr {
        fail(args, STAGE_REMAP, -22);
    }
    if head != 0 || tail != 0 {
        let path = b"/dev/null\0";
        // SAFETY: NUL-terminated path.
        let fd = check(args, STAGE_REMAP, unsafe {
            syscall3(nr::OPEN, path.as_ptr() as usize, 1, 0)
        });
        // A full turn first when the tail has wrapped, so that the kernel's
        // count of completed events comes out right.
        let count = if tail < head { nr + tail } else { tail };
        let maxr = count.min(nr - 1) as usize;
        let size = core::mem::size_of::<Iocb>() + maxr * 8;
        // SAFETY: fresh anonymous memory.
        let mem = check(args, STAGE_REMAP, unsafe {
            syscall6(nr::MMAP, 0, size, 3, 0x22, usize::MAX, 0)
        }) as usize;
        let buf = [0u8; 1];
        let iocb = mem as *mut Iocb;
        let ptrs = (mem + core::mem::size_of::<Iocb>()) as *mut u64;
        // SAFETY: inside the mapping just made.
        unsafe {
            (*iocb).aio_fildes = fd as u32;
            (*iocb).aio_buf = buf.as_ptr() as u64;
            (*iocb).aio_nbytes = 1;
            (*iocb).aio_lio_opcode = 1; // IOCB_CMD_PWRITE
            for i in 0..maxr {
                *ptrs.add(i) = iocb as u64;
            }
        }
        let mut done = 0u32;
        while done < count {
            let n = ((count - done) as usize).min(maxr);
            // SAFETY: n pointers to a valid iocb.
            let r = check(args, STAGE_REMAP, unsafe {
                syscall3(nr::IO_SUBMIT, ctx as usize, n, ptrs as usize)
            });
            done += r as u32;
            // Consuming events is setting the head (as io_getevents would).
            // SAFETY: the new ring's header.
            unsafe { (*new).head = if done < head { done } else { head } };
        }
        // SAFETY: our own temporary mapping and fd.
        unsafe {
            syscall3(nr::MUNMAP, mem, size, 0);
            syscall3(nr::CLOSE, fd as usize, 0, 0);
        }
    }
    // SAFETY: both rings are v.len bytes; the header stays the new ring's.
    unsafe { core::ptr::copy_nonoverlapping((v.dst + 32) as *const u8, (ctx + 32) as *mut u8, (v.len - 32) as usize) };
    // SAFETY: replaces the copy at dst with the new ring (same size).
    let r = unsafe {
        syscall6(
            nr::MREMAP,
            ctx as usize,
            v.len as usize,
            v.len as usize,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            v.dst as usize,
            0,
        )
    };
    if r as u64 != v.dst {
        fail(args, STAGE_REMAP, if r < 0 { r } else { -22 });
    }
}

fn restore_posix_timers(args: &RstArgs, timers: &[RstPosixTimer]) {
    #[repr(C)]
    struct Sigevent {
        value: u64,
        signo: i32,
        notify: i32,
        tid: i32,
        _pad: [i32; 11],
    }
    for t in timers {
        let mut sev = Sigevent {
            value: t.sigev_value,
            signo: t.sigev_signo,
            notify: t.sigev_notify,
            tid: t.notify_tid,
            _pad: [0; 11],
        };
        let mut id: i32 = -1;
        // Timer ids are handed out in increasing order: create until we hit ours.
        let mut tries = 0;
        while id != t.id {
            // SAFETY: sev and id are valid for the syscall.
            let r = unsafe {
                syscall3(
                    nr::TIMER_CREATE,
                    t.clock as usize,
                    &mut sev as *mut Sigevent as usize,
                    &mut id as *mut i32 as usize,
                )
            };
            check(args, STAGE_TIMERS, r);
            if id > t.id || tries > 1 << 16 {
                fail(args, STAGE_TIMERS, -17);
            }
            if id != t.id {
                // SAFETY: deleting the timer we just created.
                unsafe { syscall3(nr::TIMER_DELETE, id as usize, 0, 0) };
            }
            tries += 1;
        }
        let spec = [t.interval_sec, t.interval_nsec, t.value_sec, t.value_nsec];
        if t.value_sec != 0 || t.value_nsec != 0 {
            // SAFETY: spec has the layout of struct itimerspec.
            let r = unsafe { syscall6(nr::TIMER_SETTIME, id as usize, 0, spec.as_ptr() as usize, 0, 0, 0) };
            check(args, STAGE_TIMERS, r);
        }
    }
}

extern "C" fn thread_main(idx: u64) -> ! {
    // SAFETY: ARGS was set before any thread was created.
    let args = unsafe { &*ARGS };
    // SAFETY: engine-written array.
    let threads = unsafe { slice::<RstThread>(args.threads, args.nr_threads) };
    thread_finish(args, &threads[idx as usize], false)
}

/// Per-thread state, the barrier, credentials and the jump back.
fn thread_finish(args: &RstArgs, t: &RstThread, leader: bool) -> ! {
    // SAFETY: scalar arch_prctl/set_tid_address/prctl calls on this thread.
    unsafe {
        check(
            args,
            STAGE_THREAD_SETUP,
            syscall3(nr::ARCH_PRCTL, ARCH_SET_FS, t.fs_base as usize, 0),
        );
        if t.gs_base != 0 {
            check(
                args,
                STAGE_THREAD_SETUP,
                syscall3(nr::ARCH_PRCTL, ARCH_SET_GS, t.gs_base as usize, 0),
            );
        }
        syscall3(nr::SET_TID_ADDRESS, t.clear_tid as usize, 0, 0);
        syscall6(nr::PRCTL, PR_SET_NAME, t.comm.as_ptr() as usize, 0, 0, 0, 0);
        if t.sched_policy >= 0 {
            // sched_setscheduler(self, policy (with SCHED_RESET_ON_FORK), {prio}),
            // then setpriority(PRIO_PROCESS, self, nice); while still root.
            let prio = t.sched_prio;
            check(
                args,
                STAGE_THREAD_SETUP,
                syscall3(
                    nr::SCHED_SETSCHEDULER,
                    0,
                    t.sched_policy as usize,
                    &prio as *const i32 as usize,
                ),
            );
            check(
                args,
                STAGE_THREAD_SETUP,
                syscall3(nr::SETPRIORITY, 0, 0, t.sched_nice as isize as usize),
            );
        }
        // The robust futex list, always: the leader still has the engine's
        // (its glibc registered one at fork), and the kernel walks that list
        // in the restored memory when the thread exits.
        let len = if t.futex_rla_len != 0 {
            t.futex_rla_len as usize
        } else {
            ROBUST_LIST_HEAD_LEN
        };
        check(
            args,
            STAGE_THREAD_SETUP,
            syscall3(nr::SET_ROBUST_LIST, t.futex_rla as usize, len, 0),
        );
        if t.rseq != 0 {
            check(
                args,
                STAGE_THREAD_SETUP,
                syscall6(
                    nr::RSEQ,
                    t.rseq as usize,
                    t.rseq_len as usize,
                    0,
                    t.rseq_sig as usize,
                    0,
                    0,
                ),
            );
        }
    }
    // Thread-directed pending signals (blocked until sigreturn).
    // SAFETY: engine-written array.
    let own = unsafe { slice::<RstSiginfo>(t.siginfo, t.nr_siginfo) };
    for si in own {
        let signo = i32::from_ne_bytes([si.raw[0], si.raw[1], si.raw[2], si.raw[3]]);
        // SAFETY: si is a full siginfo.
        let r = unsafe {
            syscall6(
                nr::RT_TGSIGQUEUEINFO,
                getpid() as usize,
                t.tid as usize,
                signo as usize,
                si as *const RstSiginfo as usize,
                0,
                0,
            )
        };
        check(args, STAGE_SIGNALS, r);
    }

    // Barrier: report ready, wait for the engine's go.
    let c = ctl(args);
    c.ready.fetch_add(1, Ordering::SeqCst);
    futex_wake(&c.ready);
    let traced = loop {
        let g = c.go.load(Ordering::SeqCst);
        if g == GO_RUN || g == GO_RUN_TRACED {
            break g == GO_RUN_TRACED;
        }
        if g == GO_ABORT {
            // SAFETY: exit_group never returns.
            unsafe { syscall3(nr::EXIT_GROUP, 1, 0, 0) };
        }
        futex_wait(&c.go, g);
    };

    if leader {
        for &fd in &args.close_fds {
            if fd >= 0 {
                cryo_parasite::sys::close(fd);
            }
        }
    }

    // Seccomp: with the engine tracing us (PTRACE_O_SUSPEND_SECCOMP), the
    // filters go in now, before the credentials (installing them may need
    // the privileges the credentials drop); the rest of the restorer runs
    // unfiltered until the engine detaches. Untraced, they go in last.
    if traced {
        if t.seccomp_tsync != 0 && !leader {
            // The leader installs the shared chain for every thread.
            while SECCOMP_SHARED.load(Ordering::SeqCst) == 0 {
                futex_wait(&SECCOMP_SHARED, 0);
            }
        } else {
            restore_seccomp(t, leader && t.seccomp_tsync != 0).unwrap_or_else(|r| fail(args, STAGE_SECCOMP, r));
            if leader {
                SECCOMP_SHARED.store(1, Ordering::SeqCst);
                futex_wake(&SECCOMP_SHARED);
            }
        }
    }

    // Credentials last.
    if t.creds != 0 {
        // SAFETY: the engine wrote a RstCreds there.
        restore_creds(args, unsafe { &*(t.creds as *const RstCreds) });
    }
    // Changing the ids resets the mm's dumpable flag: every thread sets the
    // dumped one after its own credentials, so the last word is the dumped value.
    if args.dumpable == 0 || args.dumpable == 1 {
        // SAFETY: scalar prctl.
        check(args, STAGE_CREDS, unsafe {
            syscall6(nr::PRCTL, PR_SET_DUMPABLE, args.dumpable as usize, 0, 0, 0, 0)
        });
    }
    // The parent-death signal after the credentials (changing them clears
    // it), always: 0 replaces the SIGKILL the engine gave the leader for the
    // time of the restore.
    // SAFETY: scalar prctl.
    check(args, STAGE_CREDS, unsafe {
        syscall6(nr::PRCTL, PR_SET_PDEATHSIG, t.pdeath_sig as usize, 0, 0, 0, 0)
    });
    if t.no_new_privs != 0 {
        // SAFETY: scalar prctl.
        check(args, STAGE_CREDS, unsafe {
            syscall6(nr::PRCTL, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0)
        });
    }

    c.done.fetch_add(1, Ordering::SeqCst);
    futex_wake(&c.done);
    THREADS_OUT.fetch_add(1, Ordering::SeqCst);
    if leader {
        // The control page goes away once every thread of ours is past it.
        while THREADS_OUT.load(Ordering::SeqCst) < args.nr_threads {
            core::hint::spin_loop();
        }
        // SAFETY: nobody in this process touches the control page any more.
        unsafe { syscall3(nr::MUNMAP, args.ctl as usize, RST_CTL_SIZE, 0) };
        if args.stop_signo > 0 && !traced {
            // A stopped task stays stopped. Traced, the engine stops it once
            // it has left the restorer; untraced (the restorer then stays
            // mapped anyway), the stop happens here, before the registers are
            // loaded, and SIGCONT resumes into rt_sigreturn.
            // SAFETY: scalar arguments.
            unsafe { syscall3(nr::KILL, getpid() as usize, args.stop_signo as usize, 0) };
        }
    }
    if !traced && restore_seccomp(t, false).is_err() {
        // Nothing to report to any more (the control page is gone).
        // SAFETY: exit_group never returns.
        unsafe { syscall3(nr::EXIT_GROUP, 1, 0, 0) };
    }
    // SAFETY: `frame` holds a complete rt_sigframe built by the engine.
    unsafe {
        if traced {
            cryo_sigreturn_traced(t.frame + 8)
        } else {
            cryo_sigreturn(t.frame + 8)
        }
    }
}

/// Enter the thread's seccomp mode: strict, or its filter chain oldest
/// first (with TSYNC for every thread of the process if `tsync`).
fn restore_seccomp(t: &RstThread, tsync: bool) -> Result<(), isize> {
    match t.seccomp_mode {
        1 => {
            // SAFETY: scalar prctl.
            let r = unsafe { syscall6(nr::PRCTL, PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0, 0) };
            if r < 0 {
                return Err(r);
            }
        }
        2 => {
            // SAFETY: engine-written array.
            let chain = unsafe { slice::<RstSeccompFilter>(t.seccomp, t.nr_seccomp) };
            for f in chain {
                #[repr(C)]
                struct SockFprog {
                    len: u16,
                    filter: u64,
                }
                let prog = SockFprog {
                    len: f.len as u16,
                    filter: f.insns,
                };
                let flags = f.flags | if tsync { SECCOMP_FILTER_FLAG_TSYNC } else { 0 };
                // SAFETY: prog points at `len` instructions the engine wrote.
                let r = unsafe {
                    syscall3(
                        nr::SECCOMP,
                        SECCOMP_SET_MODE_FILTER,
                        flags as usize,
                        &prog as *const SockFprog as usize,
                    )
                };
                // With TSYNC a positive value is the tid that could not sync.
                if r != 0 {
                    return Err(if r > 0 { -16 } else { r });
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Put the thread's credentials back, in the one order that works from
/// root to any uid: supplementary groups; SECBIT_NO_SETUID_FIXUP so that
/// changing the ids keeps every capability; the ids (fs ids last, as
/// setres*id resets them); the dumped securebits while CAP_SETPCAP is still
/// effective; the bounding set (also needs CAP_SETPCAP); the capability sets;
/// the ambient set. Every step is checked: a thread that cannot get its
/// credentials back must not run with cryo's.
fn restore_creds(args: &RstArgs, c: &RstCreds) {
    const SECBIT_NO_SETUID_FIXUP: usize = 1 << 2;
    // SAFETY: all arguments are scalars or point into `c` or the stack.
    unsafe {
        let n = (c.ngroups as usize).min(RST_MAX_GROUPS);
        check(
            args,
            STAGE_CREDS,
            syscall3(nr::SETGROUPS, n, c.groups.as_ptr() as usize, 0),
        );
        check(
            args,
            STAGE_CREDS,
            syscall6(nr::PRCTL, PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0, 0),
        );
        check(
            args,
            STAGE_CREDS,
            syscall3(nr::SETRESGID, c.gid as usize, c.egid as usize, c.sgid as usize),
        );
        check(
            args,
            STAGE_CREDS,
            syscall3(nr::SETRESUID, c.uid as usize, c.euid as usize, c.suid as usize),
        );
        // setfs*id return the previous value, never an error: read back.
        syscall3(nr::SETFSGID, c.fsgid as usize, 0, 0);
        syscall3(nr::SETFSUID, c.fsuid as usize, 0, 0);
        if syscall3(nr::SETFSGID, u32::MAX as usize, 0, 0) as u32 != c.fsgid
            || syscall3(nr::SETFSUID, u32::MAX as usize, 0, 0) as u32 != c.fsuid
        {
            fail(args, STAGE_CREDS, -1);
        }
        check(
            args,
            STAGE_CREDS,
            syscall6(nr::PRCTL, PR_SET_SECUREBITS, c.secbits as usize, 0, 0, 0, 0),
        );
        // Bounding set: drop what the dumped task did not have.
        for cap in 0..64usize {
            let have = c.cap_bnd[cap / 32] & (1 << (cap % 32)) != 0;
            if !have {
                let r = syscall6(nr::PRCTL, PR_CAPBSET_DROP, cap, 0, 0, 0, 0);
                if r == -22 {
                    break; // past the last capability the kernel knows
                }
                check(args, STAGE_CREDS, r);
            }
        }
        // What cannot be raised back must not silently stay dropped: every
        // dumped bounding capability is there (cryo's own set may lack one).
        for cap in 0..64usize {
            let r = syscall6(nr::PRCTL, PR_CAPBSET_READ, cap, 0, 0, 0, 0);
            if r == -22 {
                break;
            }
            if c.cap_bnd[cap / 32] & (1 << (cap % 32)) != 0 && r != 1 {
                fail(args, STAGE_CREDS, -1);
            }
        }
        #[repr(C)]
        struct Hdr {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        struct Data {
            eff: u32,
            prm: u32,
            inh: u32,
        }
        let hdr = Hdr {
            version: 0x2008_0522,
            pid: 0,
        };
        let data = [
            Data {
                eff: c.cap_eff[0],
                prm: c.cap_prm[0],
                inh: c.cap_inh[0],
            },
            Data {
                eff: c.cap_eff[1],
                prm: c.cap_prm[1],
                inh: c.cap_inh[1],
            },
        ];
        check(
            args,
            STAGE_CREDS,
            syscall3(nr::CAPSET, &hdr as *const Hdr as usize, data.as_ptr() as usize, 0),
        );
        for cap in 0..64usize {
            if c.cap_amb[cap / 32] & (1 << (cap % 32)) != 0 {
                check(
                    args,
                    STAGE_CREDS,
                    syscall6(nr::PRCTL, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0, 0),
                );
            }
        }
    }
}
