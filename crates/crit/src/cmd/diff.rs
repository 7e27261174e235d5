//! `crit diff A B`: semantic comparison of two image sets (see [`crate::diff`]). A human summary by
//! default, `--json` for the [`crate::diff::SetDiff`] structure. Exit status as diff(1): 0 same,
//! 1 different, 2 trouble (a set that cannot be read).
//!
//! JSON (stable): `{"a", "b", "same": BOOL, "processes_added"/"processes_gone": [{"pid", "comm", "threads"}],
//! "processes_same": [PID], "processes_changed": [{"pid", "pid_b", "comm", "task": [CHANGE],
//! "threads_added"/"threads_gone": [TID], "mappings_added"/"mappings_removed": [{"start", "end", "prot",
//! "what"}], "mappings_changed": [{"start", "old", "new", "fields": [CHANGE]}], "mm": [CHANGE],
//! "fds_added"/"fds_removed": [{"fd", "type", "what", "socket"}], "fds_changed": [{"fd", "old", "new",
//! "diff"}], "threads": [{"tid", "tid_b", "registers": [CHANGE], "fpregs_changed", "creds": [CHANGE],
//! "other": [CHANGE]}], "memory": {"compared", "changed", "added", "removed", "ranges": [{"start", "end",
//! "pages", "kind"}]}}], "shmem": [{"image", "status", "memory"}]}` where CHANGE is
//! `{"field": "a.b[3].c", "old": VALUE, "new": VALUE}`; addresses are numbers, register values hex strings.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use cryo_image::ImageSet;

use crate::diff::{diff_sets_with, render, Match};
use crate::io::{is_broken_pipe, write_output};
use crate::status::Exit;

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The first (older) image directory
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// The second (newer) image directory
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// Print the differences as JSON
    #[arg(long)]
    pub json: bool,
    /// How to pair processes: by pid (dumps of the same processes), or by position in the process tree and
    /// thread lists (the same program run twice, with other pids)
    #[arg(long = "match", value_enum, default_value_t = MatchBy::Pid)]
    pub match_by: MatchBy,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchBy {
    Pid,
    Order,
}

fn compare(a: &DiffArgs) -> Result<bool> {
    let da = crate::archive::SetDir::open(&a.a)?;
    let db = crate::archive::SetDir::open(&a.b)?;
    let sa = ImageSet::open(da.path()).map_err(|e| da.rename(e.into()))?;
    let sb = ImageSet::open(db.path()).map_err(|e| db.rename(e.into()))?;
    let m = match a.match_by {
        MatchBy::Pid => Match::Pid,
        MatchBy::Order => Match::Order,
    };
    let d = diff_sets_with(&sa, &sb, m).context("comparing the image sets")?;
    let text = if a.json {
        serde_json::to_string_pretty(&d)? + "\n"
    } else {
        render(&d)
    };
    write_output(None, text.as_bytes())?;
    Ok(d.same)
}

pub fn run(a: &DiffArgs) -> Result<()> {
    match compare(a) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Exit(1).into()),
        Err(e) if is_broken_pipe(&e) => Ok(()),
        Err(e) => {
            eprintln!("crit diff: {e:#}");
            Err(Exit(2).into())
        }
    }
}
