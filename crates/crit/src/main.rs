//! `crit`: CRIU image tool (decode, encode, info, show, explore, ...).

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cryo_crit::cmd;

mod external;

#[derive(Parser, Debug)]
#[command(
    name = "crit",
    version,
    about = "CRiu Image Tool: decode, encode and explore CRIU image sets",
    after_help = "Every DIR may be a checkpoint archive instead (podman's --export tarball, plain, gzip or zstd, or the kubelet's), \
                  and an image of one is ARCHIVE:IMAGE (crit show dump.tar.zst:pstree.img).\n\
                  Other subcommands run crit-NAME (beside crit, or in PATH): `crit tui DIR` browses an image set.",
    allow_external_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// crit-NAME beside crit or in PATH (e.g. `crit tui DIR`)
    #[command(external_subcommand)]
    External(Vec<OsString>),
    /// Convert an image from binary to JSON
    Decode(cmd::decode::DecodeArgs),
    /// Convert an image from JSON to binary
    Encode(cmd::encode::EncodeArgs),
    /// Show the magic and entry count of an image
    Info(cmd::info::InfoArgs),
    /// Summarize a container checkpoint archive (podman --export, kubelet): container, image, processes, mounts, network
    Inspect(cmd::inspect::InspectArgs),
    /// Convert an image to human-readable JSON
    Show(cmd::show::ShowArgs),
    // explorers, memory, core export
    /// Explore an image set: ps, fds, mems, rss (as CRIU's crit) and tree, sk, creds, sigacts, timers, regs, env
    X(cmd::x::XArgs),
    /// Export a process as an ELF core file (for gdb)
    Core(cmd::core::CoreArgs),
    /// Read or search a process's memory from the dumped pages
    Mem(cmd::mem::MemArgs),
    // --- check / diff / rewrite / edit ---
    /// Check the consistency of a whole image set
    Check(cmd::check::CheckArgs),
    /// Compare two image sets (exit 0 same, 1 different, 2 trouble)
    Diff(cmd::diff::DiffArgs),
    /// Edit an image as JSON in $EDITOR, then validate and write it back
    Edit(cmd::edit::EditArgs),
    /// Rewrite a set into a new directory: renumber pids, move a mapping
    Rewrite(cmd::rewrite::RewriteArgs),
    /// Merge an incremental dump and its parent chain into one self-contained set
    Merge(cmd::merge::MergeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.cmd {
        Cmd::External(args) => match external::run(args) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Cmd::Decode(a) => cmd::decode::run(a),
        Cmd::Encode(a) => cmd::encode::run(a),
        Cmd::Info(a) => cmd::info::run(a),
        Cmd::Inspect(a) => cmd::inspect::run(a),
        Cmd::Show(a) => cmd::show::run(a),
        // explorers, memory, core export
        Cmd::X(a) => cmd::x::run(a),
        Cmd::Core(a) => cmd::core::run(a),
        Cmd::Mem(a) => cmd::mem::run(a),
        // --- check / diff / rewrite / edit ---
        Cmd::Check(a) => cmd::check::run(a),
        Cmd::Diff(a) => cmd::diff::run(a),
        Cmd::Edit(a) => cmd::edit::run(a),
        Cmd::Rewrite(a) => cmd::rewrite::run(a),
        Cmd::Merge(a) => cmd::merge::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if cryo_crit::io::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if cryo_crit::status::exit_code(&e).is_some() => {
            ExitCode::from(cryo_crit::status::exit_code(&e).unwrap())
        }
        Err(e) => {
            eprintln!("crit: {e:#}");
            ExitCode::FAILURE
        }
    }
}
