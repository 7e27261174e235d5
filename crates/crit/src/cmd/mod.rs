//! One module per subcommand, each with its clap `Args` and `run()`.

pub mod core;
pub mod decode;
pub mod encode;
pub mod info;
pub mod inspect;
pub mod mem;
pub mod show;
pub mod x;
// --- check / diff / rewrite / edit ---
pub mod check;
pub mod diff;
pub mod edit;
pub mod merge;
pub mod rewrite;
