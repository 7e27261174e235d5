//! cryo engine: checkpoint (dump) and restore of live Linux process trees in
//! CRIU 4.2's image format.
//!
//! Unsafe code is denied here and allowed in one module tree: [`sys`], the
//! syscall seam (every `unsafe {}` with a `// SAFETY:` line, every `unsafe fn`
//! with a `# Safety` section). Elsewhere `#[allow(unsafe_code)]` sits on single
//! items only, where they call the seam's `unsafe fn`s:
//! - [`ptrace`]: `Stopped::poke` and `Stopped::inject_syscall` (they write the
//!   tracee's memory, so they are `unsafe fn` themselves);
//! - [`parasite`] (the loader): the four methods that inject syscalls into the
//!   target or write the blob into it;
//!
//! [`files`] holds none (`#![forbid(unsafe_code)]`): its syscalls are in `sys::files`.
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
