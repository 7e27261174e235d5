//! cryo engine: checkpoint (dump) and restore of live Linux process trees in
//! CRIU 4.2's image format.
//!
//! Unsafe code is denied here and allowed only in the modules that talk to the
//! kernel: [`sys`] (with `sys::files`, the syscalls of the fd kinds),
//! [`ptrace`], [`parasite`], and the restore driver's syscall seams
//! (`restore::rsys`, `restore::task`). [`files`] holds none.
#![deny(unsafe_code)]

pub mod dump;
pub mod files;
pub mod membarrier;
pub mod parasite;
pub mod proc;
pub mod ptrace;
pub mod restore;
pub mod sidecar;
pub mod state;
pub mod sys;
