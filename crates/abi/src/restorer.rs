//! The binary interface between the cryo engine's restore driver and the
//! restorer blob (`parasite/src/bin/restorer.rs`). Every struct is
//! `#[repr(C)]` with a size assert; bump [`RST_ABI_VERSION`] on any change.
//!
//! Protocol: the engine (running in the freshly cloned task) lays out, inside
//! one "bootstrap" mapping that no final VMA overlaps: the relocated blob, a
//! [`RstArgs`], the arrays it points to, one prepared rt_sigframe and one setup
//! stack per thread. It then jumps to the blob's entry with `rdi` = the
//! address of the [`RstArgs`] and `rsp` = the leader's setup stack. All
//! pointers are absolute addresses in the task.
//!
//! Synchronisation with the engine goes through [`RstCtl`], a `MAP_SHARED`
//! page created by the engine before the first clone and so mapped at the same
//! address in every restored task; it is unmapped by each task after the
//! engine says go. Several processes write it at once: every field is an
//! atomic, and the futexes wait on its counters.

pub use crate::kernel::Itimerval;
use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};

/// Bumped on every incompatible change of this module.
pub const RST_ABI_VERSION: u32 = 5;
/// `RstArgs::magic`: "CRST".
pub const RST_MAGIC: u32 = 0x5453_5243;
/// Size of each thread's setup stack inside the bootstrap mapping.
pub const RST_STACK_SIZE: usize = 32 * 1024;

/// A range of the address space.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RstRange {
    pub start: u64,
    pub len: u64,
}
const _: () = assert!(size_of::<RstRange>() == 16);

/// One premapped VMA: moved from `src` to `dst` with mremap, then given its
/// final protection. `madv` holds MADV_* values to apply after the move
/// (the `MADV_BIT_*` values), and [`MADV_BIT_MLOCK`]: mlock the range
/// (a VM_LOCKED vma, MAP_LOCKED or mlock(2) at dump).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RstVma {
    pub src: u64,
    pub dst: u64,
    pub len: u64,
    pub prot: u32,
    pub madv: u32,
}
const _: () = assert!(size_of::<RstVma>() == 32);

pub const MADV_BIT_DONTFORK: u32 = 1;
pub const MADV_BIT_HUGEPAGE: u32 = 2;
pub const MADV_BIT_NOHUGEPAGE: u32 = 4;
pub const MADV_BIT_DONTDUMP: u32 = 8;
pub const MADV_BIT_SEQUENTIAL: u32 = 16;
pub const MADV_BIT_RANDOM: u32 = 32;
pub const MADV_BIT_MERGEABLE: u32 = 64;
pub const MADV_BIT_WIPEONFORK: u32 = 128;
/// Not an madvise: mlock(2) the range after the move.
pub const MADV_BIT_MLOCK: u32 = 256;
/// Not a move: MADV_GUARD_INSTALL on `[dst, dst + len)` (src == dst), after
/// every VMA is in place.
pub const MADV_BIT_GUARD: u32 = 512;
/// An AIO ring: the premapped copy of its contents is moved to `dst`, then
/// (once every VMA is in place) io_setup(`prot`, the number of requests)
/// makes a new ring, which gets those contents and replaces the copy.
pub const MADV_BIT_AIO: u32 = 1024;
/// Lazy restore: once the VMA is in place, register `[dst, dst + len)` with
/// `RstArgs::uffd` in missing mode (UFFDIO_REGISTER_MODE_MISSING); the
/// lazy-pages daemon fills it.
pub const MADV_BIT_LAZY: u32 = 2048;

/// The kernel's `struct prctl_mm_map` (PR_SET_MM_MAP).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PrctlMmMap {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub auxv: u64,
    pub auxv_size: u32,
    pub exe_fd: u32,
}
const _: () = assert!(size_of::<PrctlMmMap>() == 104);

/// Credentials of one thread, applied last.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RstCreds {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
    pub cap_inh: [u32; 2],
    pub cap_prm: [u32; 2],
    pub cap_eff: [u32; 2],
    pub cap_bnd: [u32; 2],
    pub cap_amb: [u32; 2],
    pub secbits: u32,
    pub ngroups: u32,
    pub groups: [u32; RST_MAX_GROUPS],
}
pub const RST_MAX_GROUPS: usize = 64;
const _: () = assert!(size_of::<RstCreds>() == 80 + 4 * RST_MAX_GROUPS);

/// A kernel `siginfo_t` (128 bytes) to queue again.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RstSiginfo {
    pub raw: [u8; 128],
}
const _: () = assert!(size_of::<RstSiginfo>() == 128);

/// One POSIX timer: created with `timer_create(clock, sigev)` until the kernel
/// hands out `id`, then armed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RstPosixTimer {
    pub id: i32,
    pub clock: i32,
    pub sigev_notify: i32,
    pub sigev_signo: i32,
    pub sigev_value: u64,
    pub notify_tid: i32,
    pub _pad: i32,
    pub interval_sec: i64,
    pub interval_nsec: i64,
    pub value_sec: i64,
    pub value_nsec: i64,
}
const _: () = assert!(size_of::<RstPosixTimer>() == 64);

/// Per-thread restore data.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RstThread {
    pub tid: i32,
    /// PR_SET_PDEATHSIG of this thread (set after its credentials, whose
    /// change clears it).
    pub pdeath_sig: i32,
    /// Address of the prepared `struct rt_sigframe` (its `pretcode` slot);
    /// rt_sigreturn is entered with `rsp = frame + 8`.
    pub frame: u64,
    /// Top of this thread's setup stack.
    pub stack_top: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub clear_tid: u64,
    pub rseq: u64,
    pub rseq_len: u32,
    pub rseq_sig: u32,
    /// `RstCreds` for this thread.
    pub creds: u64,
    /// `[RstSiginfo; nr_siginfo]` pending for this thread only.
    pub siginfo: u64,
    pub nr_siginfo: u32,
    pub _pad2: u32,
    pub comm: [u8; 16],
    /// Nice value, scheduling policy and priority (policy < 0: leave).
    pub sched_nice: i32,
    pub sched_policy: i32,
    pub sched_prio: i32,
    pub _pad3: i32,
    /// Seccomp mode to enter (0 none, 1 strict, 2 filter).
    pub seccomp_mode: i32,
    /// PR_SET_NO_NEW_PRIVS to set (1) or not (0).
    pub no_new_privs: i32,
    /// `[RstSeccompFilter; nr_seccomp]`: the thread's filter chain, oldest
    /// first.
    pub seccomp: u64,
    pub nr_seccomp: u32,
    /// Every thread of the process has this same chain: when the engine
    /// traces the threads, the leader installs it with
    /// SECCOMP_FILTER_FLAG_TSYNC for all of them (shared, as dumped) and the
    /// others install nothing.
    pub seccomp_tsync: u32,
    /// The thread's robust futex list head and its size (set_robust_list;
    /// 0: none registered).
    pub futex_rla: u64,
    pub futex_rla_len: u32,
    pub _pad4: u32,
}
const _: () = assert!(size_of::<RstThread>() == 160);

/// One seccomp filter program (`struct sock_fprog` contents) and the flags
/// it was installed with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RstSeccompFilter {
    /// Address of `len` `struct sock_filter` instructions (8 bytes each).
    pub insns: u64,
    pub len: u32,
    /// SECCOMP_FILTER_FLAG_* (without TSYNC).
    pub flags: u32,
}
const _: () = assert!(size_of::<RstSeccompFilter>() == 16);

/// The shared control page (see the module docs), one page long: the
/// counters and the first error, then at [`RST_SLOTS_OFF`] one [`RstSlot`]
/// per process.
#[repr(C)]
#[derive(Debug)]
pub struct RstCtl {
    /// Tasks (processes) that finished the fork stage.
    pub forked: AtomicU32,
    /// Threads (and zombies) ready to go; a task that fails adds `1 << 24`
    /// (so the engine's wait for the count wakes up and finds the error).
    pub ready: AtomicU32,
    /// Set to 1 by the engine: everybody may finish. Set to 2: abort (the
    /// `GO_*` values).
    pub go: AtomicU32,
    /// Threads that passed the final barrier.
    pub done: AtomicU32,
    /// First error: pid, stage, negative errno.
    pub err_pid: AtomicI32,
    pub err_stage: AtomicI32,
    pub err_code: AtomicI64,
    /// Unused, up to [`RST_SLOTS_OFF`].
    pub _reserved: [AtomicU64; 4],
    /// Indexed by the process's index in the image's pstree.
    pub slots: [RstSlotCell; RST_MAX_SLOTS],
}
const _: () = assert!(offset_of!(RstCtl, forked) == 0);
const _: () = assert!(offset_of!(RstCtl, ready) == 4);
const _: () = assert!(offset_of!(RstCtl, go) == 8);
const _: () = assert!(offset_of!(RstCtl, done) == 12);
const _: () = assert!(offset_of!(RstCtl, err_pid) == 16);
const _: () = assert!(offset_of!(RstCtl, err_stage) == 20);
const _: () = assert!(offset_of!(RstCtl, err_code) == 24);
const _: () = assert!(offset_of!(RstCtl, slots) == RST_SLOTS_OFF);
const _: () = assert!(size_of::<RstCtl>() == RST_CTL_SIZE);

/// Size of the control page ([`RstCtl`]).
pub const RST_CTL_SIZE: usize = 4096;

/// `RstCtl::go` values.
pub const GO_WAIT: u32 = 0;
pub const GO_RUN: u32 = 1;
pub const GO_ABORT: u32 = 2;
/// Like [`GO_RUN`], and the engine traces every thread: each one stops with
/// an `int3` right before its rt_sigreturn (see the engine's finish.rs).
pub const GO_RUN_TRACED: u32 = 3;

/// `RstCtl::err_stage` values reported by the blob.
pub const STAGE_UNMAP: i32 = 1;
pub const STAGE_REMAP: i32 = 2;
pub const STAGE_VDSO: i32 = 3;
pub const STAGE_MM: i32 = 4;
pub const STAGE_THREADS: i32 = 5;
pub const STAGE_TIMERS: i32 = 6;
pub const STAGE_SIGNALS: i32 = 7;
pub const STAGE_CREDS: i32 = 8;
pub const STAGE_ARGS: i32 = 9;
pub const STAGE_THREAD_SETUP: i32 = 10;
pub const STAGE_SECCOMP: i32 = 11;
pub const STAGE_LAZY: i32 = 12;

/// Arguments of one task's restorer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RstArgs {
    pub magic: u32,
    pub abi_version: u32,
    pub nr_threads: u32,
    pub nr_vmas: u32,
    pub nr_keep: u32,
    pub nr_shared_siginfo: u32,
    pub nr_posix_timers: u32,
    /// The leader's PR_SET_PDEATHSIG (informational: every thread sets its
    /// own, `RstThread::pdeath_sig`).
    pub pdeath_sig: i32,
    /// `[RstThread; nr_threads]`, the leader first.
    pub threads: u64,
    /// `[RstVma; nr_vmas]`, sorted by `dst`.
    pub vmas: u64,
    /// `[RstRange; nr_keep]`: everything else is unmapped first.
    pub keep: u64,
    /// `[RstSiginfo; nr_shared_siginfo]`: the process-wide pending queue.
    pub shared_siginfo: u64,
    /// `[RstPosixTimer; nr_posix_timers]`, sorted by id.
    pub posix_timers: u64,
    /// The shared control page.
    pub ctl: u64,
    /// Kernel mappings to move: vvar*, vdso (current start, length, target).
    pub nr_kmaps: u32,
    pub dumpable: i32,
    pub kmaps: [RstVma; RST_MAX_KMAPS],
    pub mm: PrctlMmMap,
    pub itimers: [Itimerval; 3],
    /// Fds to close right before the final barrier (exe fd, ...), -1 = none.
    pub close_fds: [i32; 4],
    /// The bootstrap mapping (blob + args + stacks): stays mapped (see the
    /// engine's restore docs).
    pub bootstrap: RstRange,
    /// THP disabled flag (PR_SET_THP_DISABLE), -1 = leave.
    pub thp_disabled: i32,
    pub child_subreaper: i32,
    /// Stop the process with this signal at the end (a stopped task), 0 = no.
    pub stop_signo: i32,
    /// Lazy restore: the userfaultfd the VMAs with [`MADV_BIT_LAZY`] are
    /// registered with, closed once they are (-1: no lazy restore).
    pub uffd: i32,
}
/// Most kernel-mapping moves (vvar, vvar_vclock, vdso, possibly in two steps).
pub const RST_MAX_KMAPS: usize = 8;
const _: () = assert!(size_of::<RstArgs>() == 592);

/// One process's slot in the control page ([`RstCtl::slots`]), written by
/// the engine side of the task before it reports ready: where its bootstrap
/// mapping is, so that the engine can unmap it through ptrace once the
/// threads have left it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RstSlot {
    pub pid: i32,
    pub _pad: i32,
    pub start: u64,
    pub len: u64,
    /// Address of a `syscall` instruction inside the blob.
    pub syscall_at: u64,
}
const _: () = assert!(size_of::<RstSlot>() == 32);

/// An [`RstSlot`] as it lies in the shared page: the same layout, in atomics.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RstSlotCell {
    pub pid: AtomicI32,
    pub _pad: AtomicI32,
    pub start: AtomicU64,
    pub len: AtomicU64,
    pub syscall_at: AtomicU64,
}
const _: () = assert!(size_of::<RstSlotCell>() == size_of::<RstSlot>());

impl RstSlotCell {
    /// Write `s` (the pid last, so a reader that sees the pid sees the rest).
    pub fn store(&self, s: &RstSlot) {
        self.start.store(s.start, Ordering::SeqCst);
        self.len.store(s.len, Ordering::SeqCst);
        self.syscall_at.store(s.syscall_at, Ordering::SeqCst);
        self._pad.store(s._pad, Ordering::SeqCst);
        self.pid.store(s.pid, Ordering::SeqCst);
    }

    /// Read the slot (the pid first: see [`RstSlotCell::store`]).
    pub fn load(&self) -> RstSlot {
        let pid = self.pid.load(Ordering::SeqCst);
        RstSlot {
            pid,
            _pad: self._pad.load(Ordering::SeqCst),
            start: self.start.load(Ordering::SeqCst),
            len: self.len.load(Ordering::SeqCst),
            syscall_at: self.syscall_at.load(Ordering::SeqCst),
        }
    }
}

pub const RST_SLOTS_OFF: usize = 64;
pub const RST_MAX_SLOTS: usize = (RST_CTL_SIZE - RST_SLOTS_OFF) / size_of::<RstSlot>();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_cell_round_trip() {
        let cell = RstSlotCell::default();
        assert_eq!(cell.load(), RstSlot::default());
        let s = RstSlot {
            pid: 4242,
            _pad: 0,
            start: 0x7f00_0000_0000,
            len: 0x5000,
            syscall_at: 0x7f00_0000_0034,
        };
        cell.store(&s);
        assert_eq!(cell.load(), s);
    }

    #[test]
    fn slots_fill_the_page() {
        assert_eq!(RST_MAX_SLOTS, 126);
        assert_eq!(RST_SLOTS_OFF + RST_MAX_SLOTS * size_of::<RstSlot>(), RST_CTL_SIZE);
    }
}
