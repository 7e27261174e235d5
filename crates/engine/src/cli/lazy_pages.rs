//! `cryo lazy-pages -D DIR [-W WORKDIR] [-d|--daemon] [--pidfile F] [-o LOG] [-v]`, as `criu lazy-pages`:
//! the daemon that fills the memory of a tree restored with `cryo restore --lazy-pages` (same images
//! dir and work dir). It listens on WORKDIR/lazy-pages.socket, serves one restore and exits once every
//! page is in (status 0), or with status 1 when it failed: then its watchdog kills the restored tree
//! (docs/memory-tracking.md). `-d` returns once the socket exists, the daemon going on in the
//! background.

use anyhow::Context;
use cryo_engine::restore::lazy::{self, LazyOpts};
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image directory (the one `cryo restore --lazy-pages -D` restores).
    #[arg(
        short = 'D',
        long = "images-dir",
        value_name = "DIR",
        required_unless_present = "watchdog"
    )]
    pub dir: Option<PathBuf>,
    /// Where the socket is (default: the images dir), as criu's -W.
    #[arg(short = 'W', long = "work-dir", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Run in the background once the socket exists.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
    /// Write the daemon's pid here.
    #[arg(long = "pidfile", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Log file (relative to the work dir): the summary line, or the error.
    #[arg(short = 'o', long = "log-file", value_name = "LOG")]
    pub log: Option<PathBuf>,
    /// Verbosity: from 1 on, the summary line on stdout.
    #[arg(short = 'v', long = "verbosity", value_name = "N", num_args = 0..=1, default_missing_value = "2", value_parser = clap::value_parser!(u8).range(0..=4))]
    pub verbosity: Option<u8>,
    /// No watchdog (a failing daemon then leaves the restored tree to read zeros where pages are missing).
    #[arg(long = "no-watchdog", hide = true)]
    pub no_watchdog: bool,
    /// Internal: the watchdog process (stdin: the daemon's socket).
    #[arg(long = "watchdog", hide = true)]
    pub watchdog: bool,
    /// Write one byte to this fd (and close it) once the socket exists, as criu's --status-fd.
    #[arg(long = "status-fd", value_name = "FD")]
    pub status_fd: Option<i32>,
    /// criu's: no configuration file is read (cryo reads none anyway).
    #[arg(long = "no-default-config", hide = true)]
    pub no_default_config: bool,
    /// Internal: print "ready" on stdout once the socket exists (for -d).
    #[arg(long = "notify-ready", hide = true)]
    pub notify_ready: bool,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    if a.watchdog {
        return Ok(lazy::watchdog());
    }
    let dir = a.dir.as_ref().expect("clap: -D required");
    let dir = std::path::absolute(dir).with_context(|| format!("images dir {}", dir.display()))?;
    let work = match &a.work_dir {
        Some(w) => std::path::absolute(w).with_context(|| format!("work dir {}", w.display()))?,
        None => dir.clone(),
    };
    if a.daemon {
        return daemonize(a);
    }
    let log_file = a.log.as_ref().map(|l| work.join(l));
    let log = |msg: &str| {
        if let Some(l) = &log_file {
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(l)
                .and_then(|mut f| writeln!(f, "{msg}"));
        }
    };
    let opts = LazyOpts {
        dir: dir.clone(),
        work_dir: work,
        watchdog: !a.no_watchdog,
    };
    let ready = || {
        if let Some(p) = &a.pidfile {
            let _ = std::fs::write(p, format!("{}\n", std::process::id()));
        }
        if let Some(fd) = a.status_fd {
            let _ = cryo_engine::sys::restore::write_fd(fd, &[0]);
            let _ = cryo_engine::sys::restore::close_range(fd as u32, fd as u32);
        }
        if a.notify_ready {
            println!("ready");
            let _ = std::io::stdout().flush();
        }
    };
    match lazy::serve(&opts, ready) {
        Ok(s) => {
            let line = format!(
                "lazy-pages: all pages in for {} process(es) ({} forked): {} fault(s), {:.1} MiB for faults, \
                 {:.1} MiB in the background, {} zero page(s), {:.1} MiB dropped; {:.1} ms",
                s.procs,
                s.forks,
                s.faults,
                s.fault_bytes as f64 / 1048576.0,
                s.background_bytes as f64 / 1048576.0,
                s.zero_pages,
                s.dropped_bytes as f64 / 1048576.0,
                s.elapsed.as_secs_f64() * 1e3
            );
            log(&line);
            if a.verbosity.unwrap_or(0) >= 1 && !a.notify_ready {
                println!("{line}");
            }
            Ok(0)
        }
        Err(e) => {
            log(&format!("lazy-pages failed: {e}"));
            Err(anyhow::Error::new(e).context(format!("cryo lazy-pages -D {}", dir.display())))
        }
    }
}

/// `-d`: start the daemon as a child of our own and return once its socket exists.
fn daemonize(a: &Args) -> anyhow::Result<i32> {
    let exe = std::env::current_exe().context("cryo's own binary")?;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    args.retain(|x| x != "-d" && x != "--daemon");
    args.push("--notify-ready".into());
    let mut c = std::process::Command::new(exe);
    c.args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    cryo_engine::sys::setsid_on_exec(&mut c);
    let mut child = c.spawn().context("starting the lazy-pages daemon")?;
    let out = child.stdout.take().expect("piped");
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line)?;
    if line.trim() != "ready" {
        let st = child.wait()?;
        anyhow::bail!("the lazy-pages daemon did not start ({st})");
    }
    let _ = a;
    Ok(0)
}
