//! `crit-tui DIR` (reached as `crit tui DIR`): browse a CRIU image set.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "crit tui",
    version,
    about = "Browse a CRIU image set: processes, mappings, files, sockets, memory"
)]
struct Args {
    /// The image directory (holding inventory.img), or a checkpoint archive (podman's --export
    /// tarball, plain, gzip or zstd, or the kubelet's)
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // An archive's images are unpacked to a private temporary directory for as long as the
    // browser runs (removed when `sd` drops).
    let sd = match cryo_crit::archive::SetDir::open(&args.dir) {
        Ok(sd) => sd,
        Err(e) => {
            eprintln!("crit tui: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opened = cryo_tui::Dump::open(sd.path()).map(|mut d| {
        d.dir = args.dir.display().to_string();
        d
    });
    let dump = match opened {
        Ok(d) => d,
        Err(e) => {
            eprintln!("crit tui: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !std::io::stdout().is_terminal() {
        eprintln!("crit tui: stdout is not a terminal");
        return ExitCode::FAILURE;
    }
    match cryo_tui::run(dump) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crit tui: {e}");
            ExitCode::FAILURE
        }
    }
}
