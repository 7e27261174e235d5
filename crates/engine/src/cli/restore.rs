//! `cryo restore -D DIR [-d|--restore-detached] [--pidfile F] [-j|--shell-job] [-o LOG] [-v0..4]`

use cryo_engine::restore::{self, RestoreOpts};
use std::path::PathBuf;
use std::time::Duration;

/// Restore a process tree from an image directory (criu's options).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image directory.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    pub dir: PathBuf,
    /// Detach once restored (otherwise wait for the root and exit with its status).
    #[arg(short = 'd', long = "restore-detached")]
    pub detached: bool,
    /// Write the root's pid here.
    #[arg(long = "pidfile", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// The root stays in cryo's session and process group (a job of this shell);
    /// its terminal fds are connected to cryo's own terminal (its stdin).
    #[arg(short = 'j', long = "shell-job")]
    pub shell_job: bool,
    /// Restore file locks (the images must have been dumped with --file-locks).
    #[arg(short = 'l', long = "file-locks")]
    pub file_locks: bool,
    /// Log file.
    #[arg(short = 'o', long = "log-file", value_name = "LOG")]
    pub log: Option<PathBuf>,
    /// Verbosity 0..4 (-v alone means 2... as criu: -v4 is the most).
    #[arg(short = 'v', value_name = "N", num_args = 0..=1, default_missing_value = "2")]
    pub verbosity: Option<u8>,
    /// Seconds to wait for PIDs still held by a just-killed tree.
    #[arg(long = "pid-wait", value_name = "SECS", default_value_t = 5.0)]
    pub pid_wait: f64,
}

/// Run `cryo restore`; returns cryo's exit code.
pub fn run(a: &Args) -> anyhow::Result<i32> {
    let mut o = RestoreOpts::new(&a.dir);
    o.detach = a.detached;
    o.pidfile = a.pidfile.clone();
    o.shell_job = a.shell_job;
    o.file_locks = a.file_locks;
    o.pid_wait = Duration::from_secs_f64(a.pid_wait.max(0.0));
    let log = |msg: &str| {
        if let Some(l) = &a.log {
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(l)
                .and_then(|mut f| {
                    use std::io::Write;
                    writeln!(f, "{msg}")
                });
        }
    };
    log(&format!("restore of {} started", a.dir.display()));
    match restore::restore(o) {
        Ok(code) => {
            log(&format!("restore of {} done", a.dir.display()));
            Ok(code)
        }
        Err(e) => {
            log(&format!("restore failed: {e}"));
            Err(anyhow::Error::new(e).context(format!("cryo restore -D {}", a.dir.display())))
        }
    }
}
