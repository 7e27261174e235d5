//! The `cryo` command (thin: parsing and exit codes; the work is in the lib).
use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::SUCCESS
}
