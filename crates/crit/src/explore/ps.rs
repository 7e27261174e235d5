//! `crit x DIR ps` (CRIU's process list) and `crit x DIR tree` (the process tree with threads, comm,
//! state, session and process group).

use serde::Serialize;

use cryo_image::ImageSet;

use super::{task_state_name, threads_of, ExploreError, Result};

/// One thread of a process.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadNode {
    pub tid: u32,
    pub comm: String,
}

/// One process, with its children.
#[derive(Debug, Clone, Serialize)]
pub struct ProcNode {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub comm: String,
    /// Alive, Zombie, Stopped.
    pub state: String,
    pub exit_code: u32,
    pub threads: Vec<ThreadNode>,
    pub children: Vec<ProcNode>,
}

/// Build the process tree from pstree.img and each task's core image (threads' too). The root is the
/// process whose ppid is 0 (the last such one, as crit does); every other process hangs under its parent.
pub fn build(set: &ImageSet) -> Result<ProcNode> {
    build_with(set, true)
}

/// [`build`], reading the cores of extra threads only when `threads` is set (`crit x ps`, like CRIU's
/// crit, needs only each process's core; its thread list then has comms from the process).
pub fn build_with(set: &ImageSet, threads: bool) -> Result<ProcNode> {
    let procs = set.pstree()?;
    let mut nodes: Vec<ProcNode> = Vec::with_capacity(procs.len());
    for p in &procs {
        let core = set.core(p.pid)?;
        let tc = core.tc.clone().unwrap_or_default();
        let mut thread_nodes = Vec::new();
        for tid in threads_of(p) {
            let comm = if tid == p.pid {
                core.thread_core
                    .as_ref()
                    .and_then(|t| t.comm.clone())
                    .unwrap_or(tc.comm.clone())
            } else if !threads {
                tc.comm.clone()
            } else {
                let tcore = set.core(tid)?;
                tcore
                    .thread_core
                    .and_then(|t| t.comm)
                    .unwrap_or_else(|| tc.comm.clone())
            };
            thread_nodes.push(ThreadNode { tid, comm });
        }
        nodes.push(ProcNode {
            pid: p.pid,
            ppid: p.ppid,
            pgid: p.pgid,
            sid: p.sid,
            comm: tc.comm.clone(),
            state: task_state_name(tc.task_state),
            exit_code: tc.exit_code,
            threads: thread_nodes,
            children: Vec::new(),
        });
    }
    let file = set.path("pstree.img").display().to_string();
    let root = nodes
        .iter()
        .rposition(|n| n.ppid == 0)
        .ok_or_else(|| ExploreError::Invalid {
            file: file.clone(),
            what: "no root process (ppid 0)".into(),
        })?;
    let mut slots: Vec<Option<ProcNode>> = nodes.into_iter().map(Some).collect();
    let mut root = slots[root].take().unwrap();
    root.children = adopt(root.pid, &mut slots);
    // crit silently ignores other roots; anything else left over is an orphan.
    if let Some(n) = slots.iter().flatten().find(|n| n.ppid != 0) {
        return Err(ExploreError::Invalid {
            file,
            what: format!("process {} has parent {} which is not in the tree", n.pid, n.ppid),
        });
    }
    Ok(root)
}

/// The subtree of process `pid`.
pub fn subtree(root: ProcNode, pid: u32) -> Option<ProcNode> {
    if root.pid == pid {
        return Some(root);
    }
    root.children.into_iter().find_map(|c| subtree(c, pid))
}

/// The children of `pid` in pstree order, each with its own children (taking nodes out of `slots` means a
/// cycle cannot recurse forever).
fn adopt(pid: u32, slots: &mut [Option<ProcNode>]) -> Vec<ProcNode> {
    let mine: Vec<usize> = (0..slots.len())
        .filter(|&j| slots[j].as_ref().is_some_and(|n| n.ppid == pid))
        .collect();
    let mut kids = Vec::with_capacity(mine.len());
    for j in mine {
        if let Some(mut n) = slots[j].take() {
            n.children = adopt(n.pid, slots);
            kids.push(n);
        }
    }
    kids
}

/// One line of `crit x ps`.
#[derive(Debug, Clone, Serialize)]
pub struct PsRow {
    pub pid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub depth: usize,
    pub comm: String,
}

/// The rows of `crit x ps`, depth first.
pub fn rows(root: &ProcNode) -> Vec<PsRow> {
    fn walk(n: &ProcNode, depth: usize, out: &mut Vec<PsRow>) {
        out.push(PsRow {
            pid: n.pid,
            pgid: n.pgid,
            sid: n.sid,
            depth,
            comm: n.comm.clone(),
        });
        for c in &n.children {
            walk(c, depth + 1, out);
        }
    }
    let mut out = Vec::new();
    walk(root, 0, &mut out);
    out
}

/// CRIU crit's text: `%7d%7d%7d   %s%s` with four spaces of indent per level.
pub fn render_ps(rows: &[PsRow]) -> String {
    let mut s = format!("{:>7}{:>7}{:>7}   {}\n", "PID", "PGID", "SID", "COMM");
    for r in rows {
        s.push_str(&format!(
            "{:>7}{:>7}{:>7}   {}{}\n",
            r.pid,
            r.pgid,
            r.sid,
            " ".repeat(4 * r.depth),
            r.comm
        ));
    }
    s
}

/// The tree for people: one line per process (pid, state, pgid, sid, comm) and one per extra thread.
pub fn render_tree(root: &ProcNode) -> String {
    fn walk(n: &ProcNode, prefix: &str, last: bool, top: bool, out: &mut String) {
        let (branch, next) = if top {
            ("", String::new())
        } else if last {
            ("└─ ", format!("{prefix}   "))
        } else {
            ("├─ ", format!("{prefix}│  "))
        };
        let mut state = n.state.clone();
        if n.state == "Zombie" {
            state = format!("Zombie, exit {}", n.exit_code);
        }
        out.push_str(&format!(
            "{prefix}{branch}{} {} [{state}] pgid {} sid {}",
            n.pid, n.comm, n.pgid, n.sid
        ));
        if n.threads.len() > 1 {
            out.push_str(&format!(", {} threads", n.threads.len()));
        }
        out.push('\n');
        let extra: Vec<&ThreadNode> = n.threads.iter().filter(|t| t.tid != n.pid).collect();
        for t in &extra {
            let bar = if n.children.is_empty() { "   " } else { "│  " };
            out.push_str(&format!("{next}{bar}  thread {} {}\n", t.tid, t.comm));
        }
        for (i, c) in n.children.iter().enumerate() {
            walk(c, &next, i + 1 == n.children.len(), false, out);
        }
    }
    let mut s = String::new();
    walk(root, "", true, true, &mut s);
    s
}
