//! Freezing a process tree: PTRACE_SEIZE + PTRACE_INTERRUPT every thread of
//! every process reachable from the root through /proc/PID/task/TID/children,
//! repeated until a full pass finds nothing new. On any failure everything
//! already seized is released as it was.

use crate::ptrace::{self, Stopped};
use std::collections::{BTreeMap, BTreeSet};

/// One frozen process.
#[derive(Debug)]
pub struct FrozenProc {
    pub pid: i32,
    /// Parent pid as seen in /proc (0 for the root of the dump).
    pub ppid: i32,
    /// Stopped threads, the leader first, then by tid.
    pub threads: Vec<Stopped>,
}

impl FrozenProc {
    pub fn leader(&self) -> &Stopped {
        &self.threads[0]
    }
    pub fn leader_mut(&mut self) -> &mut Stopped {
        &mut self.threads[0]
    }
    /// Was the process in a group stop (state T) before we came?
    pub fn was_stopped(&self) -> bool {
        self.threads.first().is_some_and(|t| t.was_group_stopped())
    }

    /// A zombie: recorded with its exit status only, never seized.
    pub fn is_zombie(&self) -> bool {
        self.threads.is_empty()
    }
}

/// The frozen tree, processes in CRIU's pstree order (depth-first, children by pid).
#[derive(Debug, Default)]
pub struct FrozenTree {
    pub procs: Vec<FrozenProc>,
}

#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    #[error("freezing pid {pid}: {source}")]
    Ptrace { pid: i32, source: ptrace::PtraceError },
    #[error("freezing pid {pid}: {what}")]
    Other { pid: i32, what: String },
    #[error("pid {pid}: the tree does not stop changing (threads/children keep appearing)")]
    Unstable { pid: i32 },
}

fn list_dir_nums(path: &str) -> std::io::Result<Vec<i32>> {
    let mut v: Vec<i32> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

fn children_of(pid: i32, tids: &[i32]) -> Vec<i32> {
    let mut out = BTreeSet::new();
    for t in tids {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/task/{t}/children")) {
            out.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
        }
    }
    out.into_iter().collect()
}

/// Freeze `root` and all its descendants.
pub fn freeze_tree(root: i32) -> Result<FrozenTree, FreezeError> {
    let mut seized: BTreeMap<i32, Stopped> = BTreeMap::new();
    match freeze_inner(root, &mut seized) {
        Ok(order) => {
            let mut procs = Vec::new();
            for (pid, ppid, tids) in order {
                let threads = tids.iter().filter_map(|t| seized.remove(t)).collect();
                procs.push(FrozenProc { pid, ppid, threads });
            }
            // A process that was stopped (state T) cannot run injected code
            // while its group stop lasts: end it (SIGCONT, discarded), and put
            // it back with SIGSTOP when we let go (see `release`).
            let mut tree = FrozenTree { procs };
            let mut failed = None;
            for p in &mut tree.procs {
                if p.threads.is_empty() || !p.was_stopped() {
                    continue;
                }
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), nix::sys::signal::Signal::SIGCONT);
                for t in &mut p.threads {
                    if let Err(source) = t.resync() {
                        failed = Some(FreezeError::Ptrace { pid: p.pid, source });
                    }
                }
            }
            // Threads that vanished between passes (exited) are left seized in `seized`: release them.
            for (_, s) in seized {
                let _ = s.detach();
            }
            if let Some(e) = failed {
                tree.release();
                return Err(e);
            }
            Ok(tree)
        }
        Err(e) => {
            for (_, s) in seized {
                let tid = s.tid();
                if let Err(ptrace::PtraceError::TaskDied { .. }) = s.detach() {
                    ptrace::wait_exit(tid);
                }
            }
            Err(e)
        }
    }
}

type Order = Vec<(i32, i32, Vec<i32>)>;

fn freeze_inner(root: i32, seized: &mut BTreeMap<i32, Stopped>) -> Result<Order, FreezeError> {
    if !std::path::Path::new(&format!("/proc/{root}")).exists() {
        return Err(FreezeError::Other {
            pid: root,
            what: "no such process".into(),
        });
    }
    let status = std::fs::read_to_string(format!("/proc/{root}/status")).map_err(|e| FreezeError::Other {
        pid: root,
        what: format!("reading status: {e}"),
    })?;
    let st = crate::proc::parse_status(&status).map_err(|e| FreezeError::Other {
        pid: root,
        what: e.to_string(),
    })?;
    if st.tgid != root {
        return Err(FreezeError::Other {
            pid: root,
            what: format!("is a thread of {}, not a process", st.tgid),
        });
    }
    if st.tracer_pid != 0 {
        return Err(FreezeError::Other {
            pid: root,
            what: format!("already traced by {}", st.tracer_pid),
        });
    }
    for _pass in 0..32 {
        let mut changed = false;
        let mut order: Order = Vec::new();
        // Depth-first walk, children by pid, like CRIU's pstree order.
        let mut stack = vec![(root, 0)];
        while let Some((pid, ppid)) = stack.pop() {
            let tids = match list_dir_nums(&format!("/proc/{pid}/task")) {
                Ok(t) if !t.is_empty() => t,
                _ if pid == root => {
                    return Err(FreezeError::Other {
                        pid,
                        what: "process vanished".into(),
                    })
                }
                _ => {
                    changed = true; // a child exited under us: walk again
                    continue;
                }
            };
            if let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                if st.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')) {
                    if pid == root {
                        return Err(FreezeError::Other {
                            pid,
                            what: "is a zombie".into(),
                        });
                    }
                    // A zombie cannot be seized (nor change): recorded without threads.
                    order.push((pid, ppid, Vec::new()));
                    continue;
                }
            }
            let mut tids_ordered = vec![pid];
            tids_ordered.extend(tids.iter().copied().filter(|&t| t != pid));
            let mut gone = false;
            for &t in &tids_ordered {
                if seized.contains_key(&t) {
                    continue;
                }
                changed = true;
                let r = ptrace::seize(t).and_then(|r| r.interrupt());
                match r {
                    Ok(s) => {
                        seized.insert(t, s);
                    }
                    // A thread that exited between listing and seizing is not an
                    // error, nor is a child process that exited (a tree that forks
                    // and reaps all the time): walk again, it is not part of the
                    // tree any more or is a zombie now. An exiting task may also
                    // refuse the seize (EPERM once it is a zombie).
                    Err(e) if (t != pid || pid != root) && exited(t, &e) => {
                        if t == pid {
                            gone = true;
                            break;
                        }
                    }
                    Err(source) => return Err(FreezeError::Ptrace { pid: t, source }),
                }
            }
            if gone {
                // Its threads die with it: let go of any we seized (a dead
                // one is reaped so that its parent can), and walk again.
                for t in &tids_ordered {
                    if let Some(s) = seized.remove(t) {
                        if let Err(ptrace::PtraceError::TaskDied { .. }) = s.detach() {
                            ptrace::wait_exit(*t);
                        }
                    }
                }
                continue;
            }
            let live: Vec<i32> = tids_ordered.into_iter().filter(|t| seized.contains_key(t)).collect();
            let kids = children_of(pid, &live);
            order.push((pid, ppid, live));
            for k in kids.into_iter().rev() {
                stack.push((k, pid));
            }
        }
        if !changed {
            return Ok(order);
        }
    }
    Err(FreezeError::Unstable { pid: root })
}

/// Whether a seize of `tid` failed because the task is exiting or gone.
fn exited(tid: i32, e: &ptrace::PtraceError) -> bool {
    match e {
        ptrace::PtraceError::TaskDied { .. } => true,
        ptrace::PtraceError::Os { source, .. } if source.raw_os_error() == Some(libc::EPERM) => {
            match std::fs::read_to_string(format!("/proc/{tid}/stat")) {
                Err(_) => true,
                Ok(st) => st
                    .rsplit(')')
                    .next()
                    .is_some_and(|r| matches!(r.trim_start().as_bytes().first(), Some(b'Z' | b'X'))),
            }
        }
        _ => false,
    }
}

impl FrozenTree {
    /// Detach every task (they continue; group-stopped ones stay stopped).
    pub fn release(self) {
        for p in self.procs {
            let stopped = !p.threads.is_empty() && p.was_stopped();
            for t in p.threads {
                let tid = t.tid();
                if let Err(ptrace::PtraceError::TaskDied { .. }) = t.detach() {
                    // Died while traced: we must reap it so its parent can.
                    ptrace::wait_exit(tid);
                }
            }
            if stopped {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), nix::sys::signal::Signal::SIGSTOP);
            }
        }
    }

    /// All pids of the tree.
    pub fn pids(&self) -> Vec<i32> {
        self.procs.iter().map(|p| p.pid).collect()
    }
}
