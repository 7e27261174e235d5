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
    /// The image directory (holding inventory.img)
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let dump = match cryo_tui::Dump::open(&args.dir) {
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
