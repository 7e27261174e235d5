//! `cryo dump`, spelled like `criu dump`.

use super::criu;
use anyhow::Context;
use clap::Args as ClapArgs;
use cryo_engine::dump::{self, DumpOpts};
use std::io::Write;
use std::path::PathBuf;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// PID of the root of the tree to dump.
    #[arg(short = 't', long = "tree", value_name = "PID")]
    pub pid: i32,
    /// Directory for the image files.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Leave the tree running after the dump (default: kill it).
    #[arg(short = 'R', long = "leave-running")]
    pub leave_running: bool,
    /// Dump a job attached to its shell's terminal: a pty slave whose master
    /// is outside the tree (the shell's terminal) is allowed, and restored on
    /// cryo's own terminal. Ptys whose masters are in the tree need no -j.
    #[arg(short = 'j', long = "shell-job")]
    pub shell_job: bool,
    /// Dump file locks.
    #[arg(short = 'l', long = "file-locks")]
    pub file_locks: bool,
    /// Log file (relative to the images directory unless absolute).
    #[arg(short = 'o', long = "log-file", value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Biggest deleted-but-open file whose contents are saved (criu's
    /// --ghost-limit; suffixes K, M, G).
    #[arg(long = "ghost-limit", value_name = "SIZE", value_parser = parse_size, default_value = "1M")]
    pub ghost_limit: u64,
    /// How pages are read: vmsplice by the parasite into pipes (default), or
    /// process_vm_readv from outside (kept for comparison; see scripts/bench-dump.sh).
    #[arg(long = "page-reader", value_enum, default_value_t = Reader::Vmsplice)]
    pub page_reader: Reader,
    /// Verbosity 0..4 (`-v4`, `--verbosity=4`); from 3 on, the time of each
    /// phase of the dump is printed after the summary line.
    #[arg(short = 'v', long = "verbosity", num_args = 0..=1, require_equals = false, default_missing_value = "2", value_parser = clap::value_parser!(u8).range(0..=4))]
    pub verbosity: Option<u8>,
    /// criu writes no pid file on dump either: accepted and ignored.
    #[arg(long = "pidfile", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// With --leave-running: copy the memory while the tree is frozen, as
    /// criu does (default: the tree runs while a point-in-time copy is
    /// written, see docs/memory-tracking.md).
    #[arg(long = "frozen-copy")]
    pub frozen_copy: bool,
    /// Leave the tree stopped after the dump: refused (not supported yet).
    #[arg(short = 's', long = "leave-stopped", hide = true)]
    pub leave_stopped: bool,
    #[command(flatten)]
    pub criu: criu::Common,
}

/// "1048576", "512K", "1M", "2G".
fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mul) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mul)
        .map_err(|_| format!("bad size {s:?} (e.g. 512K, 1M, 2G)"))
}

/// `--page-reader` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    Vmsplice,
    Readv,
}

/// `cryo dump` (`pre`: `cryo pre-dump`).
pub fn run(mut a: Args, pre: bool) -> anyhow::Result<()> {
    if let Some(r) = a.criu.refused() {
        return Err(r.into());
    }
    if a.leave_stopped {
        return Err(criu::Refused {
            option: "--leave-stopped",
            why: "a dumped tree is killed or left running (-R)",
        }
        .into());
    }
    a.dir = std::path::absolute(&a.dir).with_context(|| format!("images dir {}", a.dir.display()))?;
    let mut opts = DumpOpts::new(a.pid, a.dir.clone());
    let x = a.criu.externals().map_err(anyhow::Error::msg)?;
    opts.ext_mounts = x.mounts;
    opts.ext_ns = x
        .netns
        .into_iter()
        .map(|(ino, key)| ((cryo_engine::state::ns::Kind::Net, ino), key))
        .collect();
    opts.empty_net = x.empty_net;
    opts.work_dir = a.criu.work_dir.as_ref().map(std::path::absolute).transpose()?;
    if !x.inherit.is_empty() {
        return Err(anyhow::anyhow!("--inherit-fd is an option of restore"));
    }
    opts.cgroups = a.criu.cgroups(&a.dir).map_err(anyhow::Error::msg)?;
    opts.freeze_cgroup = a.criu.freeze_cgroup.as_ref().map(PathBuf::from);
    // --root at dump (zdtm's ns flavor passes it): the tree's mounts are
    // read from its own /proc/PID/mountinfo and root, so it is not needed.
    opts.leave_running = a.leave_running;
    opts.shell_job = a.shell_job;
    opts.file_locks = a.file_locks;
    opts.ghost_limit = a.ghost_limit;
    opts.ghost_fiemap = !a.criu.no_ghost_fiemap;
    opts.link_remap = a.criu.link_remap;
    opts.ext_unix_sk = !a.criu.ext_unix_sk.is_empty();
    opts.skip_in_flight = a.criu.skip_in_flight;
    opts.tcp_established = a.criu.tcp_established;
    opts.tcp_close = a.criu.tcp_close;
    if let Some(m) = a.criu.network_lock.as_deref() {
        opts.network_lock = cryo_engine::files::netlock::Method::parse(m).expect("clap checked the value");
    }
    opts.pages = match a.page_reader {
        Reader::Vmsplice => dump::PageReader::Vmsplice,
        Reader::Readv => dump::PageReader::Readv,
    };
    opts.track_mem = a.criu.track_mem && !a.criu.no_track_mem;
    opts.live = a.leave_running && !a.frozen_copy;
    opts.prev_images_dir = a.criu.prev_images_dir.as_ref().map(PathBuf::from);
    let what = if pre { "pre-dumped" } else { "dumped" };
    let res = if pre {
        dump::predump::pre_dump(opts)
    } else {
        dump::dump(opts)
    };
    let line = match &res {
        Ok(s) => format!(
            "{what} pid {} to {}: {} process(es), {} thread(s), {} file(s), {} page(s); frozen {:.1} ms, total {:.1} ms{}",
            a.pid,
            a.dir.display(),
            s.processes,
            s.threads,
            s.files,
            s.pages_written,
            s.frozen.as_secs_f64() * 1e3,
            s.total.as_secs_f64() * 1e3,
            if a.leave_running || pre { " (left running)" } else { " (tree killed)" }
        ),
        Err(e) => format!("{} of pid {} failed: {e}", if pre { "pre-dump" } else { "dump" }, a.pid),
    };
    let mut line = line;
    if let (Ok(s), Some(3..)) = (&res, a.verbosity) {
        for (name, d) in &s.phases {
            line.push_str(&format!("\n  {:<32} {:>9.1} ms", name, d.as_secs_f64() * 1e3));
        }
    }
    let warnings: Vec<String> = match &res {
        Ok(s) => s.warnings.iter().map(|w| format!("cryo dump: warning: {w}")).collect(),
        Err(_) => Vec::new(),
    };
    for w in &warnings {
        eprintln!("{w}");
    }
    if let Some(p) = a.log.as_deref().and_then(|l| a.criu.log_path(&a.dir, l)) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .with_context(|| format!("opening log {}", p.display()))?;
        for w in &warnings {
            writeln!(f, "{w}")?;
        }
        writeln!(f, "{line}")?;
    }
    match res {
        Ok(_) => {
            if a.verbosity != Some(0) {
                println!("{line}");
            }
            Ok(())
        }
        Err(_) => Err(anyhow::anyhow!("{line}")),
    }
}
