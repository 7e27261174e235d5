//! `crit rewrite DIR -o OUTDIR`: renumber PIDs (`--pid-map OLD:NEW,...`) and/or move one mapping
//! (`--move-vma OLD_START:NEW_START --pid P`). The input is never modified; the output is checked with
//! `crit check` before it gets its name. Prints what changed and, plainly, what could not be fixed.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::io::write_output;
use crate::rewrite::{parse_move, parse_pid_map, Rewrite};

#[derive(Args, Debug)]
pub struct RewriteArgs {
    /// The input image directory (never modified)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The output directory (must not exist, or be empty)
    #[arg(short = 'o', long = "out", value_name = "OUTDIR")]
    pub out: PathBuf,
    /// Renumber processes/threads: OLD:NEW[,OLD:NEW...]
    #[arg(long, value_name = "OLD:NEW,...")]
    pub pid_map: Option<String>,
    /// Move the mapping that starts at OLD_START to NEW_START (hex with 0x, or decimal); needs --pid
    #[arg(long, value_name = "OLD_START:NEW_START", requires = "pid")]
    pub move_vma: Option<String>,
    /// The process whose mapping --move-vma moves (its pid in the input)
    #[arg(long, requires = "move_vma")]
    pub pid: Option<u32>,
}

pub fn run(a: &RewriteArgs) -> Result<()> {
    if a.pid_map.is_none() && a.move_vma.is_none() {
        bail!("nothing to do: give --pid-map and/or --move-vma");
    }
    // Parse everything before reading anything.
    let map = a.pid_map.as_deref().map(parse_pid_map).transpose()?;
    let mv = a.move_vma.as_deref().map(parse_move).transpose()?;
    let mut rw = Rewrite::load(&a.dir)?;
    if let (Some((old, new)), Some(pid)) = (mv, a.pid) {
        rw.move_vma(pid, old, new)?;
    }
    if let Some(map) = &map {
        rw.map_pids(map)?;
    }
    rw.write(&a.out)?;
    eprintln!("crit rewrite: {} written and checked", a.out.display());
    let mut text = String::new();
    for c in &rw.changes {
        text.push_str(&format!("changed: {c}\n"));
    }
    for n in &rw.notes {
        text.push_str(&format!("not fixed: {n}\n"));
    }
    // A closed pipe here is not an error (main treats it as success): the set is already written.
    write_output(None, text.as_bytes())
}
