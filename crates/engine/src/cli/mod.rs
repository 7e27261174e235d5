//! `cryo` subcommands: one file each with its `Args` and `run()`.
pub mod restore;
