//! The `cryo` command: thin argument parsing (criu's spelling) and exit
//! codes; the work is in the `cryo_engine` library. One file per subcommand
//! under src/cli/.
use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

mod cli {
    pub mod check;
    pub mod criu;
    pub mod dump;
    pub mod lazy_pages;
    pub mod restore;
    pub mod run;
    pub mod service;
    pub mod swrk;
}

#[derive(Parser, Debug)]
#[command(
    name = "cryo",
    disable_version_flag = true,
    about = "Checkpoint/restore of Linux process trees (CRIU-compatible images)"
)]
struct Cli {
    /// Print the CRIU version cryo is compatible with, as criu prints its
    /// own (`Version: X.Y`), then cryo's.
    #[arg(short = 'V', long = "version")]
    version: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Freeze a process tree and write its image set.
    Dump(cli::dump::Args),
    /// Write the pages of a tree written since the previous pre-dump (all
    /// the first time), the tree stopped only to scan them; it goes on running.
    #[command(name = "pre-dump")]
    PreDump(cli::dump::Args),
    /// Restore a process tree from its image set (same pids).
    Restore(cli::restore::Args),
    /// Serve the memory of a tree restored with `restore --lazy-pages` from its images, on demand and
    /// then in the background, until every page is in (as `criu lazy-pages`).
    #[command(name = "lazy-pages")]
    LazyPages(cli::lazy_pages::Args),
    /// Start (or adopt with --pid) a program and checkpoint it periodically,
    /// incrementally and live, into DIR (DIR/latest: the last complete set).
    Run(cli::run::Args),
    /// Check that cryo can work on this kernel, or whether it supports a feature.
    Check(cli::check::Args),
    /// Serve CRIU's RPC on an inherited SOCK_SEQPACKET socket (as `criu swrk`).
    Swrk(cli::swrk::Args),
    /// Serve CRIU's RPC on a listening unix socket (as `criu service`).
    Service(cli::service::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        println!("Version: {}.{}", cli::swrk::CRIU_MAJOR, cli::swrk::CRIU_MINOR);
        println!(
            "cryo {} (CRIU {}.{} images and RPC)",
            env!("CARGO_PKG_VERSION"),
            cli::swrk::CRIU_MAJOR,
            cli::swrk::CRIU_MINOR
        );
        return ExitCode::SUCCESS;
    }
    let Some(cmd) = cli.cmd else {
        let _ = Cli::command().print_help();
        return ExitCode::FAILURE;
    };
    let r = match cmd {
        Cmd::Dump(a) => cli::dump::run(a, false).map(|()| 0),
        Cmd::PreDump(a) => cli::dump::run(a, true).map(|()| 0),
        Cmd::Restore(a) => cli::restore::run(&a),
        Cmd::LazyPages(a) => cli::lazy_pages::run(&a),
        Cmd::Check(a) => Ok(cli::check::run(&a)),
        Cmd::Run(a) => cli::run::run(&a),
        Cmd::Swrk(a) => cli::swrk::run(&a),
        Cmd::Service(a) => cli::service::run(&a),
    };
    match r {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("cryo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
