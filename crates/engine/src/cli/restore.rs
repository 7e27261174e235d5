//! `cryo restore -D DIR [-d|--restore-detached] [--pidfile F] [-j|--shell-job] [-o LOG] [-v0..4]`
//!
//! With `-v` (1 and up) a summary line once the tree runs, from `-v3` the
//! time of each stage, as `cryo dump -v` does; the log file gets both.

use super::criu;
use anyhow::Context;
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
    #[arg(short = 'd', long = "restore-detached", visible_alias = "daemon")]
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
    /// Restore into a new pid namespace, where the tree keeps its own pids even when they are taken here
    /// (a tree dumped in this pid namespace). Pid 1 inside is the root if its pid is 1, else a small init
    /// of cryo's ("cryo-init") that forks the root, reaps orphans and exits with the root's status.
    /// Pids printed and written to --pidfile are as seen from here.
    #[arg(long = "new-pidns")]
    pub new_pidns: bool,
    /// Log file (relative to --work-dir, else to the images directory, as criu).
    #[arg(short = 'o', long = "log-file", value_name = "LOG")]
    pub log: Option<PathBuf>,
    /// Verbosity 0..4 (`-v4`, `--verbosity=4`), as for dump: from 1 on a
    /// summary line once the tree runs; from 3 on, the time of each stage
    /// after it.
    #[arg(short = 'v', long = "verbosity", value_name = "N", num_args = 0..=1, default_missing_value = "2", value_parser = clap::value_parser!(u8).range(0..=4))]
    pub verbosity: Option<u8>,
    /// The root becomes a child of cryo's parent (cryo then does not wait for it).
    #[arg(short = 'S', long = "restore-sibling")]
    pub restore_sibling: bool,
    /// Leave the restored tree stopped: refused (not supported yet).
    #[arg(short = 's', long = "leave-stopped", hide = true)]
    pub leave_stopped: bool,
    #[command(flatten)]
    pub criu: criu::Common,
    /// Seconds to wait for PIDs still held by a just-killed tree.
    #[arg(long = "pid-wait", value_name = "SECS", default_value_t = 5.0)]
    pub pid_wait: f64,
}

/// Run `cryo restore`; returns cryo's exit code.
pub fn run(a: &Args) -> anyhow::Result<i32> {
    if let Some(r) = a.criu.refused_but(true) {
        return Err(r.into());
    }
    for (on, option, why) in [(a.leave_stopped, "--leave-stopped", "a restored tree is left running")] {
        if on {
            return Err(criu::Refused { option, why }.into());
        }
    }
    let dir = std::path::absolute(&a.dir).with_context(|| format!("images dir {}", a.dir.display()))?;
    let mut o = RestoreOpts::new(&dir);
    if let Some(t) = a.criu.timeout {
        o.timeout = Duration::from_secs(t.max(1));
    }
    let log_file = a.log.as_deref().and_then(|l| a.criu.log_path(&dir, l));
    o.detach = a.detached;
    o.pidfile = a.pidfile.clone();
    o.shell_job = a.shell_job;
    o.file_locks = a.file_locks;
    o.new_pidns = a.new_pidns;
    let x = a.criu.externals().map_err(anyhow::Error::msg)?;
    o.mnt.externals = x.mounts.into_iter().map(|(k, v)| (k, v.into())).collect();
    o.mnt.root = a
        .criu
        .root
        .as_ref()
        .map(|r| std::path::absolute(r).with_context(|| format!("--root {r}")))
        .transpose()?;
    o.veth_pairs = x.veths;
    o.cgroups = a.criu.cgroups(&dir).map_err(anyhow::Error::msg)?;
    o.empty_net = x.empty_net;
    o.inherit_fds = x.inherit;
    o.work_dir = a.criu.work_dir.as_ref().map(std::path::absolute).transpose()?;
    o.sibling = a.restore_sibling;
    o.tcp_established = a.criu.tcp_established;
    o.tcp_close = a.criu.tcp_close;
    o.pid_wait = Duration::from_secs_f64(a.pid_wait.max(0.0));
    if a.criu.lazy_pages {
        // The daemon's socket is in the work dir (the images dir by default).
        let w = a.criu.work_dir.as_deref().unwrap_or(&dir);
        o.lazy_pages = Some(std::path::absolute(w).with_context(|| format!("work dir {}", w.display()))?);
    }
    let log = |msg: &str| {
        if let Some(l) = &log_file {
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
    let verbosity = a.verbosity.unwrap_or(0);
    let report = |r: &restore::Restored| {
        let mut line = format!(
            "restored {} from {}: {} process(es), {} thread(s); root pid {}, total {:.1} ms",
            if a.detached { "and detached" } else { "tree" },
            a.dir.display(),
            r.pids.len(),
            r.threads,
            r.root,
            r.total.as_secs_f64() * 1e3
        );
        if verbosity >= 3 {
            for (name, d) in &r.phases {
                line.push_str(&format!("\n  {:<32} {:>9.1} ms", name, d.as_secs_f64() * 1e3));
            }
        }
        log(&line);
        if verbosity >= 1 {
            println!("{line}");
        }
    };
    match restore::restore(o, report) {
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
