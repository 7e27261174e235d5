//! `crit core DIR --pid P -o FILE`: export a process of an image set as an ELF core file for gdb.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use cryo_image::ImageSet;

use crate::coredump::write_core;

#[derive(Args, Debug)]
pub struct CoreArgs {
    /// Image directory
    pub dir: PathBuf,
    /// Process to export (a thread id exports its process, with that thread current)
    #[arg(long)]
    pub pid: u32,
    /// Output core file (default: core.PID)
    #[arg(short = 'o', long = "out")]
    pub output: Option<PathBuf>,
    /// Print what was written as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &CoreArgs) -> Result<()> {
    crate::archive::with_dir(&a.dir, |dir| run_in(a, dir))
}

/// [`run`] on the image directory `dir` (`a.dir`, or the images of the archive `a.dir`).
fn run_in(a: &CoreArgs, dir: &std::path::Path) -> Result<()> {
    let set = ImageSet::open(dir)?;
    let out = a
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("core.{}", a.pid)));
    let s = write_core(&set, a.pid, &out)?;
    let text = if a.json {
        let mut t = serde_json::to_string_pretty(&s)?;
        t.push('\n');
        t
    } else {
        format!(
            "{}: core of pid {} with {} thread(s) (current {}), {} segments, {} bytes of memory ({} pages from mapped files)\n",
            out.display(),
            s.pid,
            s.threads.len(),
            s.threads[0],
            s.segments,
            s.memory_bytes,
            s.pages_from_files
        )
    };
    crate::io::write_output(None, text.as_bytes())
}
