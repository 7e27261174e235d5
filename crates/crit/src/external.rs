//! Subcommands that live in their own binaries, git-style: `crit NAME ARGS...` runs `crit-NAME ARGS...`,
//! looked up beside the running `crit` first, then in `PATH` (so `crit tui DIR` runs `crit-tui DIR`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

/// Where `crit-NAME` is: next to the running executable, else the bare name for a `PATH` search.
fn locate(name: &str) -> Option<PathBuf> {
    let bin = format!("crit-{name}");
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
    {
        let p = dir.join(&bin);
        if p.is_file() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(&bin)).find(|p| p.is_file())
}

/// Run `crit-NAME` with the rest of the arguments; on Unix it replaces this process.
pub fn run(args: &[OsString]) -> Result<ExitCode> {
    let Some((name, rest)) = args.split_first() else {
        bail!("no subcommand given");
    };
    let name = name.to_string_lossy();
    let Some(exe) = locate(&name) else {
        bail!("unknown subcommand {name:?} (no crit-{name} beside crit or in PATH); see `crit --help`");
    };
    let mut cmd = Command::new(&exe);
    cmd.args(rest);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = cmd.exec();
        Err(err).with_context(|| format!("cannot run {}", exe.display()))
    }
    #[cfg(not(unix))]
    {
        let st = cmd.status().with_context(|| format!("cannot run {}", exe.display()))?;
        Ok(ExitCode::from(st.code().unwrap_or(1).clamp(0, 255) as u8))
    }
}
