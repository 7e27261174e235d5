//! The `cryo` command: thin argument parsing (criu's spelling) and exit
//! codes; the work is in the `cryo_engine` library. One file per subcommand
//! under src/cli/.
use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cli {
    pub mod criu;
    pub mod dump;
    pub mod restore;
}

#[derive(Parser, Debug)]
#[command(
    name = "cryo",
    version,
    about = "Checkpoint/restore of Linux process trees (CRIU-compatible images)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Freeze a process tree and write its image set.
    Dump(cli::dump::Args),
    /// Restore a process tree from its image set (same pids).
    Restore(cli::restore::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Dump(a) => cli::dump::run(a).map(|()| 0),
        Cmd::Restore(a) => cli::restore::run(&a),
    };
    match r {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("cryo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
