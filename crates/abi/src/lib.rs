//! The binary interface between the cryo engine and the no_std blobs it runs
//! inside other processes (`parasite/`): one definition, compiled into both.
//!
//! * [`parasite`]: the dump parasite's boot arguments and command protocol.
//! * [`restorer`]: the restorer's per-task arguments and the shared control
//!   page ([`restorer::RstCtl`]) the engine and every restored task use.
//! * [`kernel`]: kernel structures both sides pass to the same syscalls
//!   (`struct clone_args`, `struct sigaction`, `struct itimerval`).
//!
//! Only `core`, no `unsafe`, no dependencies. Every `#[repr(C)]` struct has a
//! size assert; bump the module's ABI version on any change of its layout.
//! None of this is part of the image format: it only travels between one
//! engine binary and the blobs embedded in it.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod kernel;
pub mod parasite;
pub mod restorer;
