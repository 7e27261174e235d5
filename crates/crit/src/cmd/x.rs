//! `crit x DIR WHAT`: explore an image set. `ps`, `fds`, `mems` and `rss` print what CRIU's crit prints;
//! `tree`, `sk`, `creds`, `sigacts`, `timers`, `regs`, `env`, `ns`, `ipc` and `cg` are views CRIU's crit lacks. `--json` gives
//! the same data for programs (the serde form of the `explore` module's structures).
//!
//! JSON shapes (addresses and sizes are numbers; every field is documented on its struct):
//! * `ps`: `[{pid, pgid, sid, depth, comm}]` in tree order; `tree`: `{pid, ppid, pgid, sid, comm, state,
//!   exit_code, threads: [{tid, comm}], children: [..]}`;
//! * `fds`: `[{pid, files_id, fds: [{fd, type, id, file}], cwd, root}]`;
//! * `mems`: `[{pid, exe, vmas: [{start, end, prot, kind, file, pgoff, shared, label}]}]`;
//! * `rss`: `[{pid, runs: [{vaddr, nr_pages, flags, vmas: [{start, pages, file, again}]}]}]`;
//! * `sk`: `[{id, ino, family, type, proto, state, local, peer, recv_q, send_q, packets, owners: [{pid, fd}]}]`;
//! * `creds`: `[{pid, tid, uid, euid, suid, fsuid, gid, .., groups, cap_eff, cap_prm, .., secbits}]`;
//! * `sigacts`: `[{pid, actions: [{signal, name, handler, flags, mask, restorer}], shared_pending,
//!   threads: [{tid, blocked, pending}]}]`;
//! * `timers`: `[{pid, itimers: [{which, value_us, interval_us}], posix: [{id, clock, signal, notify,
//!   value_ns, interval_ns, overrun, ..}]}]`;
//! * `regs`: `[{pid, tid, comm, regs: [[name, value]], mode, fpu: {cwd, swd, mxcsr, xsave, xstate_bv,
//!   xfeatures, nonzero_xmm}, clear_tid_addr}]`;
//! * `env`: `[{pid, argv: [..], env: [..]}]`;
//! * `ns`: `[{kind, id, dumper, pids: [..], info}]`; `ipc`: `[{ns, kind, id, key, mode, uid, gid, size,
//!   detail, attached: [[pid, addr]]}]`;
//! * `cg`: `{root_set, tasks: [[pid, set]], sets: [{id, members: [[hierarchy, path, cgns_prefix]]}],
//!   controllers: [{cnames, dirs: [{path, mode, props: [[name, value]]}]}]}`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use cryo_image::ImageSet;
use serde::Serialize;

use crate::explore::{self, cg, creds, env, fds, mems, ns, ps, regs, rss, sigacts, sk, timers};
use crate::io::write_output;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum What {
    /// Process list (CRIU crit's text)
    Ps,
    /// File descriptors, cwd and root (CRIU crit's text)
    Fds,
    /// Memory mappings (CRIU crit's text)
    Mems,
    /// Dumped page runs against mappings (CRIU crit's text)
    Rss,
    /// Process tree with threads, state, session and group
    Tree,
    /// Sockets: addresses, state, peer, queued bytes
    Sk,
    /// Credentials of every thread
    Creds,
    /// Signal actions, blocked and pending signals
    Sigacts,
    /// Interval and POSIX timers
    Timers,
    /// Registers of every thread
    Regs,
    /// argv and environment, read from memory
    Env,
    /// Namespaces: kind, id, the dumper's or the tree's own, tasks, what their images hold
    Ns,
    /// SysV IPC objects of the tree's IPC namespaces: shm (with attachments), sem (values), msg (messages)
    Ipc,
    /// cgroups: each task's set, each set's cgroups, the cgroups dumped with their settings
    Cg,
    /// Mount trees of the tree's mount namespaces (mountpoints-ID.img): parents, file systems, options, sharing
    Mnt,
}

#[derive(Args, Debug)]
pub struct XArgs {
    /// Image directory
    pub dir: PathBuf,
    /// What to show
    #[arg(value_enum)]
    pub what: What,
    /// Machine-readable JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Only this process (ps and tree: its subtree; sk: the sockets it holds)
    #[arg(long)]
    pub pid: Option<u32>,
}

fn json<T: Serialize>(v: &T) -> Result<String> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    Ok(s)
}

/// The text (or JSON) `crit x` prints.
pub fn explore_text(set: &ImageSet, what: What, as_json: bool, pid: Option<u32>) -> Result<String> {
    macro_rules! show {
        ($data:expr, $render:expr) => {{
            let d = $data;
            if as_json {
                json(&d)?
            } else {
                $render(&d)
            }
        }};
    }
    let procs = || explore::select_live(set, pid);
    let tree = |threads: bool| -> Result<ps::ProcNode> {
        let root = ps::build_with(set, threads)?;
        match pid {
            None => Ok(root),
            Some(p) => ps::subtree(root, p).ok_or_else(|| {
                explore::ExploreError::NoPid {
                    dir: set.dir().display().to_string(),
                    pid: p,
                }
                .into()
            }),
        }
    };
    Ok(match what {
        What::Ps => show!(ps::rows(&tree(false)?), |r: &Vec<ps::PsRow>| ps::render_ps(r)),
        What::Tree => show!(tree(true)?, ps::render_tree),
        What::Fds => show!(fds::build(set, &procs()?)?, |d: &Vec<_>| fds::render(d)),
        What::Mems => show!(mems::build(set, &procs()?)?, |d: &Vec<_>| mems::render(d)),
        What::Rss => show!(rss::build(set, &procs()?)?, |d: &Vec<_>| rss::render(d)),
        What::Sk => {
            let mut socks = sk::build(set)?;
            if let Some(p) = pid {
                explore::process(set, p)?;
                socks.retain_mut(|s| {
                    s.owners.retain(|o| o.pid == p);
                    !s.owners.is_empty()
                });
            }
            show!(socks, |d: &Vec<_>| sk::render(d))
        }
        What::Creds => show!(creds::build(set, &procs()?)?, |d: &Vec<_>| creds::render(d)),
        What::Sigacts => show!(sigacts::build(set, &procs()?)?, |d: &Vec<_>| sigacts::render(d)),
        What::Timers => show!(timers::build(set, &procs()?)?, |d: &Vec<_>| timers::render(d)),
        What::Regs => show!(regs::build(set, &procs()?)?, |d: &Vec<_>| regs::render(d)),
        What::Env => show!(env::build(set, &procs()?)?, |d: &Vec<_>| env::render(d)),
        What::Ns => show!(ns::build(set)?, |d: &Vec<_>| ns::render(d)),
        What::Ipc => show!(ns::build_ipc(set)?, |d: &Vec<_>| ns::render_ipc(d)),
        What::Cg => show!(cg::build(set)?, cg::render),
        What::Mnt => show!(ns::build_mnt(set)?, |d: &Vec<_>| ns::render_mnt(d)),
    })
}

pub fn run(a: &XArgs) -> Result<()> {
    crate::archive::with_dir(&a.dir, |dir| {
        let set = ImageSet::open(dir)?;
        let text = explore_text(&set, a.what, a.json, a.pid)?;
        write_output(None, text.as_bytes())
    })
}
