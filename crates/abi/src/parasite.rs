//! The binary interface between the cryo engine (host) and the parasite blob
//! (`parasite/src/bin/parasite.rs`). Every struct is `#[repr(C)]` with a size
//! assert; bump [`ABI_VERSION`] on any change.
//!
//! Protocol: the host maps the blob, writes a [`BootArgs`] at the args area and
//! starts the blob at its entry with `rdi` = address of the args and `rsp` at
//! the top of the blob's stack. The parasite connects a `SOCK_SEQPACKET` unix
//! socket to the abstract address in the args, then serves commands: each
//! request is one message starting with a [`Cmd`] (optionally followed by a
//! payload), each answer one message starting with a [`Reply`] followed by
//! `Reply::len` payload bytes. After [`CMD_FINI`] it closes the socket and
//! traps (`int3`) with `rax` = 0; on a fatal error it traps with `rax` < 0.

pub use crate::kernel::{Itimerval, KSigaction};
use core::mem::size_of;

/// Bumped on every incompatible change of this module.
pub const ABI_VERSION: u32 = 2;
/// `BootArgs::magic`: "CRYP".
pub const BOOT_MAGIC: u32 = 0x5059_5243;

/// Size of the stack the host reserves for the blob (above the args area).
pub const STACK_SIZE: usize = 64 * 1024;
/// Size of the args area (a page) placed right after the blob's memory image.
pub const ARGS_AREA_SIZE: usize = 4096;
/// Largest message either side sends (header + payload).
pub const MAX_MSG: usize = 64 * 1024;

/// Written by the host at the start of the args area before the blob runs.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BootArgs {
    pub magic: u32,
    pub abi_version: u32,
    /// Length of `sun_path` used (abstract address: `sun_path[0]` is 0).
    pub sun_path_len: u32,
    pub _pad: u32,
    pub sun_path: [u8; 108],
    pub _pad2: u32,
}
const _: () = assert!(size_of::<BootArgs>() == 128);

/// Ping: reply payload is one u64, `arg[0] + 1`.
pub const CMD_PING: u32 = 1;
/// All 64 sigactions: payload `[KSigaction; 64]` (index = signal - 1; SIGKILL
/// and SIGSTOP are reported as zeros).
pub const CMD_SIGACTIONS: u32 = 2;
/// ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF: payload `[Itimerval; 3]`.
pub const CMD_ITIMERS: u32 = 3;
/// POSIX timers: request payload = `arg[0]` i32 timer ids; reply payload one
/// [`PosixTimer`] per id, same order.
pub const CMD_POSIX_TIMERS: u32 = 4;
/// Miscellaneous per-process values: payload [`Misc`].
pub const CMD_MISC: u32 = 5;
/// Per-thread values of the thread the blob runs in: payload [`ThreadMisc`].
pub const CMD_THREAD_MISC: u32 = 6;
/// Splice memory into a pipe: request `arg[0]` = address, `arg[1]` = length;
/// the pipe fd was sent beforehand with [`CMD_TAKE_FD`]. Uses vmsplice with
/// SPLICE_F_GIFT; reply payload one u64: bytes spliced.
pub const CMD_VMSPLICE: u32 = 7;
/// Receive one fd with SCM_RIGHTS (the request carries it); reply payload one
/// i32: the fd number in the target.
pub const CMD_TAKE_FD: u32 = 8;
/// Close `arg[0]` (an fd number received with [`CMD_TAKE_FD`]).
pub const CMD_CLOSE_FD: u32 = 9;
/// Stop serving, close the socket, trap with rax = 0.
pub const CMD_FINI: u32 = 10;
/// vmsplice many ranges, each into its own pipe: the request carries
/// `arg[0]` pipe write ends (SCM_RIGHTS, at most [`MAX_FDS_PER_MSG`]) and a
/// payload of `arg[0]` [`Range`]s, in the same order. Every range is spliced
/// whole (SPLICE_F_GIFT) and its pipe closed; reply payload one u64: bytes
/// spliced in total.
pub const CMD_VMSPLICE_BATCH: u32 = 11;
/// Most fds one message carries (the kernel's SCM_MAX_FD is 253).
pub const MAX_FDS_PER_MSG: usize = 250;

/// An address range of the target's memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub addr: u64,
    pub len: u64,
}
const _: () = assert!(size_of::<Range>() == 16);

/// Request header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Cmd {
    pub cmd: u32,
    pub _pad: u32,
    pub arg: [u64; 6],
}
const _: () = assert!(size_of::<Cmd>() == 56);

/// Answer header; `status` is 0 or a negative errno.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Reply {
    pub cmd: u32,
    pub status: i32,
    pub len: u64,
}
const _: () = assert!(size_of::<Reply>() == 16);

/// One POSIX timer: timer_gettime + timer_getoverrun.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PosixTimer {
    pub id: i32,
    pub overrun: i32,
    pub interval_sec: i64,
    pub interval_nsec: i64,
    pub value_sec: i64,
    pub value_nsec: i64,
}
const _: () = assert!(size_of::<PosixTimer>() == 40);

/// Number of rlimits reported in [`Misc::rlimits`] (RLIMIT_NLIMITS).
pub const NR_RLIMITS: usize = 16;

/// Per-process values only visible from inside.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Misc {
    pub umask: u32,
    pub dumpable: i32,
    pub child_subreaper: i32,
    pub thp_disabled: i32,
    /// Current program break (brk(0)).
    pub brk: u64,
    /// `[cur, max]` for each resource, from prlimit64(0, ...).
    pub rlimits: [[u64; 2]; NR_RLIMITS],
    /// membarrier() registrations of the mm: the MEMBARRIER_CMD_REGISTER_*
    /// bits MEMBARRIER_CMD_GET_REGISTRATIONS returns (CRIU's
    /// `membarrier_registration_mask`); on kernels before 6.3 found by
    /// issuing each private expedited barrier (EPERM = not registered).
    pub membarrier_mask: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<Misc>() == 24 + NR_RLIMITS * 16 + 8);

/// Per-thread values only visible from inside.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadMisc {
    pub tid: i32,
    pub pdeath_sig: i32,
    pub ss_sp: u64,
    pub ss_flags: i32,
    /// prctl(PR_GET_SECUREBITS).
    pub secbits: i32,
    pub ss_size: u64,
    /// prctl(PR_GET_TID_ADDRESS): the clear_child_tid address.
    pub clear_tid: u64,
}
const _: () = assert!(size_of::<ThreadMisc>() == 40);

/// Offset, inside the args area, of a scratch buffer the host may use for
/// syscalls it injects into other threads while the blob is mapped.
pub const SCRATCH_OFF: usize = 2048;
