//! crit: CRIU image tool. The library holds every subcommand so that the TUI and tests can call them.

pub mod archive;
pub mod cmd;
pub mod coredump;
pub mod diff;
pub mod explore;
pub mod io;
pub mod memory;
pub mod rewrite;
pub mod status;
