//! Explorers: read-only views of a whole image set, built as plain data (serde-serializable, for `--json`
//! and for the TUI) and rendered to text separately.
//!
//! * `ps`, `fds`, `mems`, `rss`: CRIU's `crit x` explorers; their `render` functions print exactly the text
//!   CRIU 4.2's crit prints (checked against it on every fixture);
//! * `tree`, `sk`, `creds`, `sigacts`, `timers`, `regs`, `env`: views CRIU's crit lacks, as aligned tables.
//!
//! Every `build` takes an [`ImageSet`] and returns data; nothing here prints.

pub mod cg;
pub mod creds;
pub mod env;
pub mod fds;
pub mod files;
pub mod mems;
pub mod ns;
pub mod ps;
pub mod regs;
pub mod rss;
pub mod sigacts;
pub mod sk;
pub mod table;
pub mod timers;
pub mod vma;

use cryo_image::{pb, ImageError, ImageSet};

/// What can go wrong exploring an image set. Image errors already name the file, entry and offset.
#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{dir}: no process or thread {pid} in pstree.img")]
    NoPid { dir: String, pid: u32 },
    #[error("{file}: {what}")]
    Invalid { file: String, what: String },
}

pub type Result<T, E = ExploreError> = std::result::Result<T, E>;

/// The processes of a set in pstree order.
pub fn processes(set: &ImageSet) -> Result<Vec<pb::PstreeEntry>> {
    Ok(set.pstree()?)
}

/// The pstree entry of process `pid` (a thread id is not a process: see [`process_of_thread`]).
pub fn process(set: &ImageSet, pid: u32) -> Result<pb::PstreeEntry> {
    processes(set)?
        .into_iter()
        .find(|p| p.pid == pid)
        .ok_or_else(|| ExploreError::NoPid {
            dir: set.dir().display().to_string(),
            pid,
        })
}

/// The process a thread id belongs to.
pub fn process_of_thread(set: &ImageSet, tid: u32) -> Result<pb::PstreeEntry> {
    processes(set)?
        .into_iter()
        .find(|p| p.pid == tid || p.threads.contains(&tid))
        .ok_or_else(|| ExploreError::NoPid {
            dir: set.dir().display().to_string(),
            pid: tid,
        })
}

/// Thread ids of a process: pstree's `threads`, or the pid alone when the list is empty.
pub fn threads_of(p: &pb::PstreeEntry) -> Vec<u32> {
    if p.threads.is_empty() {
        vec![p.pid]
    } else {
        p.threads.clone()
    }
}

/// Keep only the processes asked for (`None`: all); an unknown pid is an error.
pub fn select(set: &ImageSet, pid: Option<u32>) -> Result<Vec<pb::PstreeEntry>> {
    match pid {
        None => processes(set),
        Some(pid) => Ok(vec![process(set, pid)?]),
    }
}

/// `task_state` of a zombie in core's `tc` (CRIU's TASK_DEAD; CRIU's own crit labels it wrongly).
pub const TASK_DEAD: u32 = 2;
/// `task_state` of a stopped task (CRIU's TASK_STOPPED).
pub const TASK_STOPPED: u32 = 3;

/// Whether process `pid` was a zombie when dumped (CRIU then writes only its core: no mm, fds or
/// registers).
pub fn is_zombie(set: &ImageSet, pid: u32) -> Result<bool> {
    Ok(set.core(pid)?.tc.is_some_and(|tc| tc.task_state == TASK_DEAD))
}

/// The processes asked for that have state to show: zombies are left out; asking for one by pid is an
/// error that says so.
pub fn select_live(set: &ImageSet, pid: Option<u32>) -> Result<Vec<pb::PstreeEntry>> {
    let mut out = Vec::new();
    for p in select(set, pid)? {
        if is_zombie(set, p.pid)? {
            if pid.is_some() {
                return Err(ExploreError::Invalid {
                    file: set.path(&format!("core-{}.img", p.pid)).display().to_string(),
                    what: format!("process {} is a zombie: only its exit state was dumped", p.pid),
                });
            }
            continue;
        }
        out.push(p);
    }
    Ok(out)
}

/// Name of a task state (`task_state` of core's `tc`).
///
/// These are the values CRIU writes (compel's task states: 1 alive, 2 dead, 3 stopped); the `gen` table
/// that crit's `--pretty` JSON uses (1 Alive, 3 Zombie, 6 Stopped) is kept for the JSON only, where it
/// must match CRIU's crit.
pub fn task_state_name(state: u32) -> String {
    match state {
        1 => "Alive".into(),
        TASK_DEAD => "Zombie".into(),
        TASK_STOPPED => "Stopped".into(),
        s => format!("state {s}"),
    }
}

/// The x86_64 thread info of a core entry, or an error naming the file.
pub fn x86_info<'a>(set: &ImageSet, tid: u32, core: &'a pb::CoreEntry) -> Result<&'a pb::ThreadInfoX86> {
    core.thread_info.as_ref().ok_or_else(|| ExploreError::Invalid {
        file: set.path(&format!("core-{tid}.img")).display().to_string(),
        what: "no x86_64 thread_info (not an x86_64 dump?)".into(),
    })
}
