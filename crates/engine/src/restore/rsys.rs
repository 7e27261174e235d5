//! The restore driver's raw syscalls now live in [`crate::sys::restore`];
//! this name stays for the modules that import it.
pub use crate::sys::restore::*;
