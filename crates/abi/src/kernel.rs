//! Kernel structures (x86_64) that the engine and the blobs both hand to the
//! kernel.

use core::mem::size_of;

/// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2) for clone3.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    /// Address of `set_tid_size` pids to take, the innermost pid namespace's
    /// first.
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}
const _: () = assert!(size_of::<CloneArgs>() == 88);

/// clone flags (`CLONE_*`) the blobs use; the engine has them from libc.
pub const CLONE_VM: u64 = 0x100;
pub const CLONE_FS: u64 = 0x200;
pub const CLONE_FILES: u64 = 0x400;
pub const CLONE_SIGHAND: u64 = 0x800;
pub const CLONE_THREAD: u64 = 0x10000;
pub const CLONE_SYSVSEM: u64 = 0x40000;

/// The kernel's `struct sigaction` for rt_sigaction on x86_64 (not libc's).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KSigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}
const _: () = assert!(size_of::<KSigaction>() == 32);

/// `struct itimerval` (seconds, microseconds), as getitimer fills it and
/// setitimer takes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Itimerval {
    pub interval_sec: i64,
    pub interval_usec: i64,
    pub value_sec: i64,
    pub value_usec: i64,
}
const _: () = assert!(size_of::<Itimerval>() == 32);
