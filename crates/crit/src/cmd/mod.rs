//! One module per subcommand, each with its clap `Args` and `run()`.

pub mod decode;
pub mod encode;
pub mod info;
pub mod show;
