//! `crit`: CRIU image tool (decode, encode, info, show, explore, ...).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cryo_crit::cmd;

#[derive(Parser, Debug)]
#[command(
    name = "crit",
    version,
    about = "CRiu Image Tool: decode, encode and explore CRIU image sets"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Convert an image from binary to JSON
    Decode(cmd::decode::DecodeArgs),
    /// Convert an image from JSON to binary
    Encode(cmd::encode::EncodeArgs),
    /// Show the magic and entry count of an image
    Info(cmd::info::InfoArgs),
    /// Convert an image to human-readable JSON
    Show(cmd::show::ShowArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.cmd {
        Cmd::Decode(a) => cmd::decode::run(a),
        Cmd::Encode(a) => cmd::encode::run(a),
        Cmd::Info(a) => cmd::info::run(a),
        Cmd::Show(a) => cmd::show::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if cryo_crit::io::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crit: {e:#}");
            ExitCode::FAILURE
        }
    }
}
