//! `cryo`: checkpoint/restore of live process trees.
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cryo", version, about = "checkpoint/restore of live Linux process trees")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Restore a process tree from images.
    Restore(cryo_engine::cli::restore::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.cmd {
        Cmd::Restore(a) => cryo_engine::cli::restore::run(a),
    };
    match r {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("cryo: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
