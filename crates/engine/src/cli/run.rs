//! `cryo run --every DURATION -D DIR [--keep N] -- PROGRAM ARGS…` (or
//! `--pid PID`): start (or adopt) a program and checkpoint it periodically,
//! incrementally, while it runs.
//!
//! DIR holds `ckpt-NNNN` sets: the first a full dump, each next one only
//! the pages written since the one before (`--track-mem
//! --prev-images-dir`), all live (`--leave-running`: the program is stopped
//! only to collect its state). `DIR/latest` is a symlink replaced (rename)
//! only after a set is complete, its inventory written: it never names a
//! half set. A failed checkpoint is removed and logged; the next one writes
//! every page again (its tracking was not committed). Only the last `--keep`
//! sets are kept: the oldest kept set is first merged with its parents into
//! one self-contained set (cryo_image::merge). Each checkpoint's downtime
//! and size go to stderr and DIR/cryo-run.log. `cryo restore -D DIR/latest`
//! brings the program back.
//!
//! `CRYO_FAULT=checkpoint-fail:N` makes checkpoint N fail just before its
//! inventory (tests).

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use cryo_engine::dump::{self, DumpOpts};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Time between checkpoints (e.g. 500ms, 10s, 5m).
    #[arg(long = "every", value_name = "DURATION", value_parser = parse_duration)]
    pub every: Duration,
    /// Directory of the checkpoints.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    pub dir: PathBuf,
    /// How many complete checkpoints to keep.
    #[arg(long = "keep", value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,
    /// Checkpoint this running process (and its tree) instead of starting one.
    #[arg(short = 't', long = "pid", value_name = "PID", conflicts_with = "cmd")]
    pub pid: Option<i32>,
    /// The program to start (in a session of its own) and its arguments.
    #[arg(last = true, value_name = "PROGRAM")]
    pub cmd: Vec<String>,
    /// Dump a job attached to its terminal (see `cryo dump -j`).
    #[arg(short = 'j', long = "shell-job")]
    pub shell_job: bool,
}

/// "250ms", "10s", "5m", "1h", or seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {s:?} (e.g. 500ms, 10s, 5m)");
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    if v.is_nan() || v <= 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(v * mul))
}

fn ckpt_name(n: u32) -> String {
    format!("ckpt-{n:04}")
}

/// Complete checkpoints in `dir` (numbers, ascending); incomplete ones are removed.
fn scan(dir: &Path) -> anyhow::Result<Vec<u32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name.strip_prefix("ckpt-").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if e.path().join("inventory.img").is_file() {
            out.push(n);
        } else {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    out.sort();
    Ok(out)
}

struct Log(Option<std::fs::File>);

impl Log {
    fn line(&mut self, s: &str) {
        eprintln!("cryo run: {s}");
        if let Some(f) = &mut self.0 {
            let _ = writeln!(f, "{s}");
        }
    }
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&a.dir).with_context(|| a.dir.display().to_string())?;
    let dir = std::path::absolute(&a.dir)?;
    let mut log = Log(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("cryo-run.log"))
        .ok());
    let fail_at: Option<u32> = std::env::var("CRYO_FAULT")
        .ok()
        .and_then(|f| f.strip_prefix("checkpoint-fail:").and_then(|n| n.parse().ok()));
    let mut child = None;
    let pid = match (a.pid, a.cmd.split_first()) {
        (Some(p), _) => p,
        (None, Some((prog, args))) => {
            let mut c = std::process::Command::new(prog);
            c.args(args);
            // A session of its own: the tree holds its own session and
            // group leaders, so it restores without -j.
            cryo_engine::sys::setsid_on_exec(&mut c);
            let ch = c.spawn().with_context(|| format!("starting {prog}"))?;
            let p = ch.id() as i32;
            log.line(&format!("started {prog} as pid {p}"));
            child = Some(ch);
            p
        }
        (None, None) => bail!("cryo run: give a program to start (after --) or --pid PID"),
    };
    let mut done = scan(&dir)?;
    let mut next = done.last().map_or(1, |n| n + 1);
    // A parent is trusted only if it is the last complete set.
    let mut parent: Option<u32> = None;
    loop {
        let t = Instant::now();
        // Sleep in small steps so that the program's exit is seen at once.
        while t.elapsed() < a.every {
            if let Some(code) = exited(&mut child, pid) {
                log.line(&format!("pid {pid} exited ({code})"));
                return Ok(code);
            }
            std::thread::sleep(Duration::from_millis(10).min(a.every));
        }
        if let Some(code) = exited(&mut child, pid) {
            log.line(&format!("pid {pid} exited ({code})"));
            return Ok(code);
        }
        let n = next;
        next += 1;
        let d = dir.join(ckpt_name(n));
        std::fs::create_dir_all(&d)?;
        let mut o = DumpOpts::new(pid, d.clone());
        o.leave_running = true;
        o.live = true;
        o.track_mem = true;
        o.shell_job = a.shell_job;
        o.prev_images_dir = parent.map(|p| PathBuf::from(format!("../{}", ckpt_name(p))));
        o.fail_before_inventory = fail_at == Some(n);
        match dump::dump(o) {
            Ok(s) => {
                let bytes: u64 = std::fs::read_dir(&d)?
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum();
                let tmp = dir.join(".latest.tmp");
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(ckpt_name(n), &tmp)?;
                std::fs::rename(&tmp, dir.join("latest"))?;
                log.line(&format!(
                    "{}: downtime {:.1} ms, {} pages written, {:.1} MiB on disk{}, total {:.1} ms",
                    ckpt_name(n),
                    s.frozen.as_secs_f64() * 1e3,
                    s.pages_written,
                    bytes as f64 / (1 << 20) as f64,
                    parent
                        .map(|p| format!(" (parent {})", ckpt_name(p)))
                        .unwrap_or_default(),
                    s.total.as_secs_f64() * 1e3
                ));
                done.push(n);
                parent = Some(n);
                prune(&dir, &mut done, a.keep as usize, &mut log);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&d);
                if let Some(code) = exited(&mut child, pid) {
                    log.line(&format!("pid {pid} exited ({code})"));
                    return Ok(code);
                }
                log.line(&format!("{} failed (latest stays as it was): {e}", ckpt_name(n)));
            }
        }
    }
}

/// Keep the last `keep` sets: the oldest kept one is merged with its
/// parents into a self-contained set first, then the older ones go.
fn prune(dir: &Path, done: &mut Vec<u32>, keep: usize, log: &mut Log) {
    if done.len() <= keep {
        return;
    }
    let oldest = done[done.len() - keep];
    let d = dir.join(ckpt_name(oldest));
    if d.join("parent").symlink_metadata().is_ok() {
        let tmp = dir.join(format!(".merge-{}", ckpt_name(oldest)));
        let _ = std::fs::remove_dir_all(&tmp);
        match cryo_image::merge::merge_chain(&d, &tmp) {
            Ok(_) => {
                // The merged set takes the name (a rename of directories:
                // the child sets' parent links keep working). The tracking
                // file stays: it is the last set a child may trust.
                let _ = std::fs::copy(d.join("cryo-track.json"), tmp.join("cryo-track.json"));
                let old = dir.join(format!(".old-{}", ckpt_name(oldest)));
                if std::fs::rename(&d, &old)
                    .and_then(|_| std::fs::rename(&tmp, &d))
                    .is_err()
                {
                    log.line(&format!("could not replace {} by its merged set", ckpt_name(oldest)));
                    return;
                }
                let _ = std::fs::remove_dir_all(&old);
            }
            Err(e) => {
                log.line(&format!("merging {}: {e} (older sets kept)", ckpt_name(oldest)));
                let _ = std::fs::remove_dir_all(&tmp);
                return;
            }
        }
    }
    while done.len() > keep {
        let n = done.remove(0);
        let _ = std::fs::remove_dir_all(dir.join(ckpt_name(n)));
    }
}

/// Has the program exited? (Its exit code, or 128 + signal.)
fn exited(child: &mut Option<std::process::Child>, pid: i32) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    match child {
        Some(c) => match c.try_wait() {
            Ok(Some(st)) => Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))),
            _ => None,
        },
        None => {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(Some(0), |s| s.contains(") Z ").then_some(0))
        }
    }
}
