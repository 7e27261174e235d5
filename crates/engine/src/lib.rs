//! cryo engine: checkpoint (dump) and restore of live Linux process trees in
//! CRIU 4.2's image format.
//!
//! Unsafe code is denied here and allowed in one module tree: [`sys`], the
//! syscall seam (every `unsafe {}` with a `// SAFETY:` line, every `unsafe fn`
//! with a `# Safety` section). Elsewhere `#[allow(unsafe_code)]` sits on single
//! items of one module only, the parasite loader ([`parasite`]): `poke` and
//! `inject_syscall` (they write a stopped tracee's memory at an address only
//! the loader chooses, so they are `unsafe fn` themselves) and the four
//! methods that call them or write the blob into the target.
//!
//! [`files`] holds none (`#![forbid(unsafe_code)]`): its syscalls are in `sys::files`.
#![deny(unsafe_code)]

pub mod dump;
pub mod files;
pub mod membarrier;
pub mod netlock;
pub mod parasite;
pub mod proc;
pub mod ptrace;
pub mod restore;
pub mod sidecar;
pub mod state;
pub mod sys;
