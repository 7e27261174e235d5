//! cryo engine: checkpoint/restore of live Linux process trees.
#![deny(unsafe_code)]

pub mod cli;
pub mod files;
pub mod parasite;
pub mod restore;
