//! What runs inside each cloned task before it jumps into the restorer: fork
//! the children with their pids, sessions and groups, sigactions, memory
//! premap (pages read straight into place), the restorer's arguments and
//! sigframes, fds at their numbers, and the jump.
//!
//! The task is a copy of the (single-threaded) engine, so ordinary Rust code
//! runs here; it never returns: it either becomes the restored process or
//! reports its error and exits.
use super::layout::{self, page_up, Span, PAGE};
use super::plan::{Helper, Proc, VmaKind, TASK_DEAD};
use super::premap::{self, Premapped};
use super::sigframe;
use super::TaskEnv;
use crate::sys::mem::{as_bytes, Area};
use crate::sys::restore::{self as rsys, Forked};
use cryo_abi::restorer::*;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// Error inside a task: what failed, for the engine's message.
pub struct TaskError(pub String);

impl<E: std::fmt::Display> From<(&str, E)> for TaskError {
    fn from((what, e): (&str, E)) -> Self {
        TaskError(format!("{what}: {e}"))
    }
}

/// Reserve `total` bytes of PROT_NONE address space in a hole that no span
/// of `busy` overlaps, for `what` (named in the error); returns its start.
pub(crate) fn reserve_hole(busy: &[layout::Span], total: u64, what: &str) -> Result<Area, TaskError> {
    let base = layout::find_hole(busy, total, 0x10_0000, 0x7ff0_0000_0000)
        .ok_or_else(|| TaskError(format!("no hole of {total} bytes for {what} in the address space")))?;
    Area::reserve(base, total).map_err(|e| TaskError(format!("reserving {what}: {e}")))
}

/// The control page, shared by the engine and every task.
fn ctl(env: &TaskEnv) -> &RstCtl {
    env.ctl.rst_ctl()
}

/// Report an error for `pid` to the engine and exit.
fn die(env: &TaskEnv, pid: i32, e: TaskError) -> ! {
    let c = ctl(env);
    if c.err_pid
        .compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
    {
        c.err_stage.store(0, Ordering::SeqCst);
        c.err_code.store(0, Ordering::SeqCst);
        let msg = format!("pid {pid}: {}\n", e.0);
        // err_w is the engine's error pipe, open in every task until the jump.
        let _ = write_all_fd(env.err_w, msg.as_bytes());
    }
    c.go.store(GO_ABORT, Ordering::SeqCst);
    rsys::futex_wake(&c.go);
    c.ready.fetch_add(1 << 24, Ordering::SeqCst);
    rsys::futex_wake(&c.ready);
    // Leave without running destructors or atexit handlers of the engine copy.
    rsys::exit_now(1)
}

/// write(2) all of `buf` to an fd number (as `File::write_all` does).
fn write_all_fd(fd: RawFd, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        match rsys::write_fd(fd, buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn wait_counter(w: &AtomicU32, target: u32, env: &TaskEnv) {
    loop {
        let v = w.load(Ordering::SeqCst);
        if v >= target {
            return;
        }
        if ctl(env).go.load(Ordering::SeqCst) == GO_ABORT {
            // As in die().
            rsys::exit_now(1);
        }
        let _ = rsys::futex_wait(w, v, 100);
    }
}

/// Entry of a freshly cloned task: never returns.
///
/// `fdt_done` is set for a task sharing its parent's fd table: the write end
/// of the parent's [`FdtWait`] pipe.
pub fn task_main(env: &TaskEnv, proc: &Proc, parent: i32, inherit: Option<&Premapped>, fdt_done: Option<RawFd>) -> ! {
    match run(env, proc, parent, inherit, fdt_done) {
        Ok(never) => match never {},
        Err(e) => die(env, proc.pid, e),
    }
}

enum Never {}

/// The children that share the caller's fd table (forked with CLONE_FILES)
/// need the pool fds in it (premap, cwd/root, exe fd) until they jump into
/// the restorer: each writes one byte into this pipe then, and the caller
/// waits for all of them before its fd setup closes the pool. The pipe lies
/// above every fd number the tasks use; the fd setup closes it too.
pub(crate) struct FdtWait {
    rd: RawFd,
    wr: RawFd,
    n: usize,
}

impl FdtWait {
    fn new(env: &TaskEnv) -> Result<FdtWait, TaskError> {
        let above = env
            .fd_pool
            .values()
            .chain(env.map_pool.values())
            .copied()
            .max()
            .unwrap_or(0)
            .max(env.exe_fd_target)
            + 1;
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| TaskError::from(("pipe (shared fd table)", std::io::Error::from(e))))?;
        let mut up = [0; 2];
        // Each temporary end is closed when dropped, after its move up.
        for (i, p) in [r, w].into_iter().enumerate() {
            up[i] = nix::fcntl::fcntl(&p, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(above))
                .map_err(|e| TaskError::from(("pipe (shared fd table): moving it up", std::io::Error::from(e))))?;
        }
        Ok(FdtWait {
            rd: up[0],
            wr: up[1],
            n: 0,
        })
    }

    /// Wait until every child sharing the table is done with it (or the
    /// restore is aborted).
    fn wait(&self, env: &TaskEnv) -> Result<(), TaskError> {
        let mut got = 0;
        while got < self.n {
            if ctl(env).go.load(Ordering::SeqCst) == GO_ABORT {
                return Err(TaskError("restore aborted (a task sharing the fd table failed)".into()));
            }
            if !rsys::poll_in(self.rd, 100).unwrap_or(false) {
                continue;
            }
            let mut b = [0u8; 16];
            let n = b.len().min(self.n - got);
            if let Ok(r) = rsys::read_fd(self.rd, &mut b[..n]) {
                got += r;
            }
        }
        Ok(())
    }
}

/// getpgid(0), the caller's process group (it cannot fail for the caller).
fn getpgid_self() -> i32 {
    nix::unistd::getpgid(None).map_or(-1, |p| p.as_raw())
}

/// Tell the parent (see [`FdtWait`]) this task is done with the shared table.
fn fdt_signal(wr: RawFd) -> Result<(), TaskError> {
    match rsys::write_fd(wr, b"x") {
        Ok(1) => Ok(()),
        Ok(_) => Err((
            "pipe (shared fd table)",
            std::io::Error::from(std::io::ErrorKind::WriteZero),
        )
            .into()),
        Err(e) => Err(("pipe (shared fd table)", e).into()),
    }
}

/// Fork what `forker` creates (a tree pid, a helper's pid, or 0 for cryo):
/// its helpers first, then its tasks. `me` is the caller's pid; the pids of
/// the helpers forked go to `helpers`, for the caller to reap. A helper's
/// tasks are forked with CLONE_PARENT: they inherit its session and group
/// but are children of the helper's own parent, as dumped. `inherit` is the
/// caller's premapped memory, which the children inherit (see premap.rs).
pub(crate) fn fork_items(
    env: &TaskEnv,
    forker: i32,
    me: i32,
    helpers: &mut Vec<i32>,
    inherit: Option<&Premapped>,
) -> Result<Option<FdtWait>, TaskError> {
    let plan = &env.plan;
    for h in plan.helpers.iter().filter(|h| h.parent == forker) {
        let f = super::fork_retry(h.pid, env.pid_wait, false)
            .map_err(|e| TaskError(format!("creating helper {} (session/group): {e}", h.pid)))?;
        match f {
            Forked::Child => helper_main(env, h, me, inherit),
            Forked::Parent(pid) => {
                helpers.push(pid);
                // A group helper leads its group before any member can be
                // forked (the parent sets it, so there is no race).
                if !h.session {
                    let p = nix::unistd::Pid::from_raw(pid);
                    nix::unistd::setpgid(p, p).map_err(|e| {
                        TaskError(format!(
                            "helper {pid}: setpgid (group leader): {}",
                            std::io::Error::from(e)
                        ))
                    })?;
                }
            }
        }
    }
    let via_helper = |pid: i32| plan.helpers.iter().any(|h| h.tasks.contains(&pid));
    let (tasks, sibling): (Vec<&Proc>, bool) = match plan.helpers.iter().find(|h| h.pid == forker) {
        Some(h) => (h.tasks.iter().filter_map(|&t| plan.proc(t)).collect(), true),
        None if forker == 0 => (
            std::iter::once(plan.root()).filter(|p| !via_helper(p.pid)).collect(),
            false,
        ),
        None => (plan.children(forker).filter(|c| !via_helper(c.pid)).collect(), false),
    };
    let parent = if sibling { nix::unistd::getppid().as_raw() } else { me };
    let mut fdt: Option<FdtWait> = None;
    for c in tasks {
        // The plan refuses a shared table for tasks forked by a helper; a
        // zombie has no table (and would never report being done with it).
        let share = c.shares_parent_fds && !sibling && c.state != TASK_DEAD;
        let mut done = None;
        if share {
            if fdt.is_none() {
                fdt = Some(FdtWait::new(env)?);
            }
            if let Some(w) = fdt.as_mut() {
                w.n += 1;
                done = Some(w.wr);
            }
        }
        let mut flags = if share { libc::CLONE_FILES as u64 } else { 0 };
        let first = forker == 0 && c.pid == plan.root().pid && !env.init;
        if first {
            // The tree's own namespaces (no new pid namespace here: see fork_in_ns).
            flags |= env.ns_flags;
        }
        // rst_sibling: the root is our parent's child.
        let as_sibling = sibling || (first && env.sibling);
        let f = super::fork_retry_flags(c.pid, env.pid_wait, as_sibling, flags)
            .map_err(|e| TaskError(format!("creating child {}: {e}", c.pid)))?;
        let parent = if first && env.sibling {
            nix::unistd::getppid().as_raw()
        } else {
            parent
        };
        match f {
            Forked::Child => task_main(env, c, parent, inherit, done),
            Forked::Parent(_) => {}
        }
    }
    Ok(fdt)
}

/// The first task of a restore into new namespaces with a new pid
/// namespace: the root as its pid 1, or cryo's init (`env.init`), which
/// fills the namespaces and forks the root. Returns its pid (the engine's view).
pub(crate) fn fork_in_ns(env: &TaskEnv, me: i32) -> Result<i32, TaskError> {
    let root = env.plan.root();
    if env.ns_flags & libc::CLONE_NEWPID as u64 == 0 {
        return Err(TaskError("fork_in_ns without a new pid namespace (engine bug)".into()));
    }
    if !env.init && env.plan.helpers.iter().any(|h| h.parent == 0) {
        return Err(TaskError(format!(
            "the root {} is the init of its pid namespace but its session or group leader must be a helper \
             task before it: not supported",
            root.pid
        )));
    }
    if env.user_from_start {
        return fork_in_user_ns(env, me);
    }
    let flags = env.ns_flags;
    // set_tid [1]: the pid inside the new namespace.
    let forked = super::fork_retry_flags(1, env.pid_wait, env.sibling, flags);
    match forked.map_err(|e| TaskError(format!("clone3 into new namespaces (flags {flags:#x}): {e}")))? {
        Forked::Child if env.init => init_main(env, me),
        Forked::Child => task_main(env, root, me, None, None),
        Forked::Parent(pid) => Ok(pid),
    }
}

/// [`fork_in_ns`] for a tree in a user namespace of its own with a pid
/// namespace of its own: an intermediate enters the user namespace, unshares
/// the pid namespace (and the other clone flags) there, and forks the root
/// as its pid 1 with CLONE_PARENT (cryo's child), then reports its pid and
/// exits. Returns the root's pid (the engine's view).
fn fork_in_user_ns(env: &TaskEnv, me: i32) -> Result<i32, TaskError> {
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ("pipe", std::io::Error::from(e)))?;
    let root = env.plan.root();
    match rsys::fork_with_flags(0).map_err(|e| TaskError(format!("fork of the user namespace entrant: {e}")))? {
        Forked::Child => {
            drop(rd);
            let r = (|| -> Result<Forked, TaskError> {
                rsys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as u64, 0, 0, 0)
                    .map_err(|e| ("PR_SET_PDEATHSIG", e))?;
                let fd = env
                    .plan
                    .ns
                    .user_fd
                    .ok_or_else(|| TaskError("no user namespace fd (engine bug)".into()))?;
                let ns = std::fs::File::open(format!("/proc/self/fd/{fd}"))
                    .map_err(|e| TaskError(format!("the restored user namespace (fd {fd}): {e}")))?;
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWUSER)
                    .map_err(|e| TaskError(format!("setns into the restored user namespace: {e}")))?;
                let flags = env.ns_flags as i32;
                nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(flags))
                    .map_err(|e| TaskError(format!("unshare {flags:#x} in the restored user namespace: {e}")))?;
                super::fork_retry(1, env.pid_wait, true)
                    .map_err(|e| TaskError(format!("clone3 of pid 1 in the restored pid namespace: {e}")))
            })();
            match r {
                Ok(Forked::Child) => task_main(env, root, me, None, None),
                Ok(Forked::Parent(pid)) => {
                    let _ = rsys::write_fd(std::os::fd::AsRawFd::as_raw_fd(&wr), &pid.to_ne_bytes());
                    rsys::exit_now(0)
                }
                Err(e) => die(env, root.pid, e),
            }
        }
        Forked::Parent(entrant) => {
            drop(wr);
            let mut b = [0u8; 4];
            let n = rsys::read_fd(std::os::fd::AsRawFd::as_raw_fd(&rd), &mut b).unwrap_or(0);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(entrant), None);
            if n != 4 {
                return Err(TaskError(
                    "the user namespace entrant failed before forking the root".into(),
                ));
            }
            Ok(i32::from_ne_bytes(b))
        }
    }
}

/// cryo's init, pid 1 of the new pid namespace (see docs/namespaces.md):
/// fills the namespaces, forks the tree (and its session helpers), waits
/// for the restore to finish, then reaps every child of the namespace and
/// exits with the root's status once the root is gone.
fn init_main(env: &TaskEnv, parent: i32) -> ! {
    match init_run(env, parent) {
        Ok(never) => match never {},
        Err(e) => die(
            env,
            env.plan.root().pid,
            TaskError(format!("init of the new pid namespace: {}", e.0)),
        ),
    }
}

fn init_run(env: &TaskEnv, _parent: i32) -> Result<Never, TaskError> {
    use nix::sys::wait::{waitpid, WaitStatus};
    rsys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as u64, 0, 0, 0).map_err(|e| ("PR_SET_PDEATHSIG", e))?;
    // The parent (cryo) is outside the namespace: 0 while it lives.
    if nix::unistd::getppid().as_raw() != 0 {
        return Err(TaskError("parent died during restore".into()));
    }
    env.plan.ns.apply(env.user_from_start).map_err(TaskError)?;
    let _ = nix::sys::prctl::set_name(c"cryo-init");
    let mut helpers = Vec::new();
    fork_items(env, 0, 1, &mut helpers, None)?;
    // Wait for the end of the restore: an abort ends init (and, with it,
    // the namespace); on go, init outlives cryo.
    let c = ctl(env);
    loop {
        let g = c.go.load(Ordering::SeqCst);
        if g != GO_WAIT {
            if g == GO_ABORT {
                rsys::exit_now(1);
            }
            break;
        }
        let _ = rsys::futex_wait(&c.go, g, 1000);
    }
    let _ = rsys::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0);
    // Nothing of the engine's is needed any more: the tree has its own fds.
    let _ = rsys::close_range(0, u32::MAX);
    let root = env.plan.root().pid;
    loop {
        match waitpid(nix::unistd::Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == root => rsys::exit_now(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == root => rsys::exit_now(128 + sig as i32),
            Err(nix::errno::Errno::ECHILD) => rsys::exit_now(0),
            _ => {}
        }
    }
}

/// Reap helpers once every group is joined (they exit then).
fn reap_helpers(pids: &[i32]) -> Result<(), TaskError> {
    for &pid in pids {
        let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        if !matches!(st, Ok(nix::sys::wait::WaitStatus::Exited(_, 0))) {
            return Err(TaskError(format!("helper {pid} (session/group) failed")));
        }
    }
    Ok(())
}

/// Entry of a helper task: never returns.
fn helper_main(env: &TaskEnv, h: &Helper, parent: i32, inherit: Option<&Premapped>) -> ! {
    match helper_run(env, h, parent, inherit) {
        Ok(never) => match never {},
        Err(e) => die(env, h.pid, e),
    }
}

fn helper_run(env: &TaskEnv, h: &Helper, parent: i32, inherit: Option<&Premapped>) -> Result<Never, TaskError> {
    rsys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as u64, 0, 0, 0).map_err(|e| ("PR_SET_PDEATHSIG", e))?;
    if nix::unistd::getppid().as_raw() != parent {
        return Err(TaskError("parent died during restore".into()));
    }
    if h.session {
        nix::unistd::setsid().map_err(|e| TaskError::from(("setsid (session helper)", std::io::Error::from(e))))?;
    }
    let mut kids = Vec::new();
    fork_items(env, h.pid, h.pid, &mut kids, inherit)?;
    // Stay until every task has joined its group (the end of round 2).
    wait_counter(&ctl(env).forked, 3 * env.plan.procs.len() as u32, env);
    reap_helpers(&kids)?;
    // Leave without running destructors of the engine copy.
    rsys::exit_now(0)
}

fn run(
    env: &TaskEnv,
    p: &Proc,
    parent: i32,
    inherit: Option<&Premapped>,
    fdt_done: Option<RawFd>,
) -> Result<Never, TaskError> {
    // Die with the parent (the engine or the parent task) until restored.
    rsys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as u64, 0, 0, 0).map_err(|e| ("PR_SET_PDEATHSIG", e))?;
    let is_root = p.pid == env.plan.root().pid;
    // The init of a new pid namespace sees its parent (cryo) as pid 0.
    let init_of_ns = is_root && !env.init && env.ns_flags & libc::CLONE_NEWPID as u64 != 0;
    let parent = if init_of_ns { 0 } else { parent };
    if nix::unistd::getppid().as_raw() != parent {
        return Err(TaskError("parent died during restore".into()));
    }
    // Its cgroups, before anything is charged to it (the root of a tree
    // with a cgroup namespace unshares it at the namespace's root first).
    let forker_set = if is_root {
        Some(env.cg.root_set)
    } else {
        env.plan.proc(parent).filter(|pp| pp.pid == p.ppid).map(|pp| pp.cg_set)
    };
    env.cg
        .enter(p.cg_set, forker_set, is_root && env.cgns)
        .map_err(TaskError)?;
    if is_root && !env.init && (env.ns_flags != 0 || !env.plan.ns.enter.is_empty()) {
        // In its new namespaces, before anything else.
        env.plan.ns.apply(env.user_from_start).map_err(TaskError)?;
    }
    if p.sid == p.pid && !(is_root && env.shell_job) {
        nix::unistd::setsid().map_err(|e| TaskError::from(("setsid", std::io::Error::from(e))))?;
        // Its controlling terminal, before any child is forked (they
        // inherit it).
        if let Some(&(fd, _)) = env.ctty.get(&p.pid) {
            crate::files::tty::ioctl_arg(fd, libc::TIOCSCTTY, 0)
                .map_err(|e| TaskError(format!("TIOCSCTTY (its controlling terminal): {e}")))?;
        }
    }
    // Memory before the children: they inherit it (copy-on-write sharing).
    let pre = premap::premap(env, p, inherit)?;
    let mut helpers = Vec::new();
    let fdt = fork_items(env, p.pid, p.pid, &mut helpers, Some(&pre))?;
    if super::fault() == Some(&format!("task-error:{}", p.pid)) {
        return Err(TaskError("injected fault (CRYO_FAULT)".into()));
    }
    let c = ctl(env);
    let nprocs = env.plan.procs.len() as u32;
    // Process groups: leaders first (round 1), then members (round 2); a
    // third count lets the helpers go once every member has joined.
    c.forked.fetch_add(1, Ordering::SeqCst);
    rsys::futex_wake(&c.forked);
    wait_counter(&c.forked, nprocs, env);
    let skip_groups = is_root && env.shell_job;
    if p.pgid == p.pid && !skip_groups && getpgid_self() != p.pid {
        let zero = nix::unistd::Pid::from_raw(0);
        nix::unistd::setpgid(zero, zero)
            .map_err(|e| TaskError::from(("setpgid (group leader)", std::io::Error::from(e))))?;
    }
    c.forked.fetch_add(1, Ordering::SeqCst);
    rsys::futex_wake(&c.forked);
    wait_counter(&c.forked, 2 * nprocs, env);
    // pgid 0: a group from outside the pid namespace, inherited as is.
    if p.pgid != p.pid && p.pgid > 0 && !skip_groups && getpgid_self() != p.pgid {
        nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(p.pgid))
            .map_err(|e| TaskError(format!("joining process group {}: {}", p.pgid, std::io::Error::from(e))))?;
    }
    // Joined: the helpers may go (they wait for every task's third count).
    c.forked.fetch_add(1, Ordering::SeqCst);
    rsys::futex_wake(&c.forked);
    // The foreground group of its terminal, once every group exists.
    if let Some(&(fd, pgrp)) = env
        .ctty
        .get(&p.pid)
        .filter(|_| p.sid == p.pid && !(is_root && env.shell_job))
    {
        if pgrp != 0 && pgrp != p.pgid {
            wait_counter(&c.forked, 3 * nprocs, env);
            rsys::tcsetpgrp(fd, pgrp)
                .map_err(|e| TaskError(format!("TIOCSPGRP {pgrp} (foreground group of its terminal): {e}")))?;
        }
    }
    reap_helpers(&helpers)?;

    if p.state == TASK_DEAD {
        // A zombie: exit with the dumped status once everybody is ready.
        if let Some(l) = env.lazy {
            lazy_send(env, l, -p.pid, None)?;
        }
        c.ready.fetch_add(1, Ordering::SeqCst);
        rsys::futex_wake(&c.ready);
        loop {
            let g = c.go.load(Ordering::SeqCst);
            if g != GO_WAIT {
                break;
            }
            let _ = rsys::futex_wait(&c.go, g, 1000);
        }
        c.done.fetch_add(1, Ordering::SeqCst);
        rsys::futex_wake(&c.done);
        let st = p.exit_code as i32;
        if libc::WIFSIGNALED(st) {
            // Default action for a fatal signal; unblocked first.
            rsys::die_by_signal(libc::WTERMSIG(st));
        }
        // Leave without destructors.
        rsys::exit_now(libc::WEXITSTATUS(st));
    }

    // Lazy restore: this task's userfaultfd goes to the daemon now (it must
    // have it before the restorer registers anything: a fault may come
    // before the tree runs). Tasks without lazy memory send their pid alone.
    if let Some(l) = env.lazy {
        if task_is_lazy(env, p) {
            let u = super::lazy::client::make_uffd().map_err(|e| ("userfaultfd for --lazy-pages", e))?;
            rsys::dup3(u.as_raw_fd(), l.uffd_target, libc::O_CLOEXEC).map_err(|e| ("userfaultfd fd", e))?;
            drop(u);
            lazy_send(env, l, p.pid, Some(l.uffd_target))?;
        } else {
            lazy_send(env, l, -p.pid, None)?;
        }
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_retain(p.umask as libc::mode_t));
    if let Some(adj) = p.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| TaskError(format!("oom_score_adj {adj}: {e}")))?;
    }
    rsys::personality(p.personality as u64).map_err(|e| TaskError::from(("personality", e)))?;
    // The image lists signals 1..=64 without SIGKILL and SIGSTOP.
    let sigs = (1..=64).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP);
    for (sig, sa) in sigs.zip(&p.sigactions) {
        rsys::rt_sigaction(sig, sa).map_err(|e| TaskError(format!("sigaction for signal {sig}: {e}")))?;
    }

    if let Some(mut want) = p.loginuid {
        // In a user namespace of its own the image holds the namespace's id.
        if let Some(u) = env
            .plan
            .ns
            .user
            .as_ref()
            .filter(|_| want != super::plan::LOGINUID_UNSET)
        {
            want = u.outside_uid(want).map_err(|e| TaskError(format!("loginuid: {e}")))?;
        }
        restore_loginuid(p.pid, want)?;
    }
    // membarrier() registrations belong to the mm, which the restorer and
    // the threads it creates keep: register here, before any seccomp filter.
    p.membarrier.register().map_err(TaskError)?;

    let (boot, entry, stack, args) = prepare_memory(env, p, &pre)?;
    let proc_files = open_proc_files(env, p)?;
    // Root first, then cwd, once nothing else needs /proc/self  (the new
    // root may have no /proc); cwd (which may lie outside the new root: it is
    // entered by fd, never by a path that the new root would change).
    let dir_fd = |id: u32| {
        env.fd_pool
            .get(&id)
            .copied()
            .ok_or_else(|| TaskError(format!("cwd/root file id {id} was not opened (engine bug)")))
    };
    if let Some(root) = p.root {
        let is_slash = env
            .plan
            .files
            .get_as::<crate::files::reg::RegFile>(root)
            .is_some_and(|r| r.remap.is_none() && r.path == "/");
        if !is_slash {
            let r = format!("/proc/self/fd/{}", dir_fd(root)?);
            nix::unistd::chroot(r.as_str()).map_err(|e| TaskError(format!("chroot (file id {root}): {e}")))?;
        }
    }
    if let Some(cwd) = p.cwd {
        let fd = dir_fd(cwd)?;
        rsys::fchdir(fd).map_err(|e| TaskError(format!("chdir (file id {cwd}): {e}")))?;
    }
    // The children sharing this fd table are done with the pool first.
    if let Some(w) = &fdt {
        w.wait(env)?;
    }
    // The tree's own user namespace, last of the namespaces: its children
    // are forked (set_tid needs cryo's privileges over every pid namespace
    // level), its loginuid set; the restorer applies its credentials in it.
    if let Some(fd) = env.plan.ns.user_fd.filter(|_| !env.user_from_start) {
        let ns = std::fs::File::open(format!("/proc/self/fd/{fd}"))
            .map_err(|e| TaskError(format!("the restored user namespace (fd {fd}): {e}")))?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWUSER)
            .map_err(|e| TaskError(format!("setns into the restored user namespace: {e}")))?;
    }
    if p.shares_parent_fds {
        // The parent sets the table up; the exe fd it keeps (the same file,
        // see plan::helpers) is needed by PR_SET_MM_MAP before that.
        share_exe_fd(env, p)?;
    } else {
        setup_fds(env, p, &proc_files)?;
    }
    let fds: Vec<(i32, u32)> = p.fds.iter().map(|f| (f.fd, f.file_id)).collect();
    crate::files::fown::set_async(&env.plan.files.async_files, &fds).map_err(TaskError)?;
    // Epoll items name fds by their numbers in this task: add them now.
    crate::files::epoll::restore_targets(&env.plan.files, p.pid, &p.fds).map_err(TaskError)?;
    take_locks(env, p)?;
    // rlimits last among the engine's steps (a low RLIMIT_NOFILE must not
    // break the fd setup above).
    for (i, &(cur, max)) in p.rlimits.iter().enumerate() {
        if let Err(e) = rsys::setrlimit(i as i32, cur, max) {
            // Raising a hard limit needs CAP_SYS_RESOURCE: keep the current
            // hard limit and report nothing worse than that.
            let (_, hard) = rsys::getrlimit(i as i32);
            if max > hard && rsys::setrlimit(i as i32, cur.min(hard), hard).is_ok() {
                continue;
            }
            return Err(TaskError(format!("rlimit {i} ({cur}/{max}): {e}")));
        }
    }
    if let Some(wr) = fdt_done {
        fdt_signal(wr)?;
    }
    // The error pipe goes away with the fd setup; from here on errors are
    // reported through the control page by the restorer.
    rsys::rseq_unregister();
    // Leave Rust for the blob (every signal blocked: see enter_restorer).
    let e = rsys::enter_restorer(&boot, entry, stack, args);
    Err(("entering the restorer", e).into())
}

/// Is the memory of `p` restored lazily? Not for a task sharing its fd
/// table with its parent or a child (CLONE_FILES: one fd number for two
/// userfaultfds), nor for a zombie.
pub(crate) fn task_is_lazy(env: &TaskEnv, p: &Proc) -> bool {
    env.lazy.is_some()
        && p.state != TASK_DEAD
        && p.mm.is_some()
        && !p.shares_parent_fds
        && !env.plan.children(p.pid).any(|c| c.shares_parent_fds)
}

/// Send `pid` (and `fd`) to the lazy-pages daemon on the connection every
/// task shares, one task at a time (a spin lock in the control page).
fn lazy_send(env: &TaskEnv, l: super::LazyEnv, pid: i32, fd: Option<RawFd>) -> Result<(), TaskError> {
    let lock = &ctl(env)._reserved[0];
    while lock.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        std::thread::yield_now();
    }
    let r = super::lazy::client::send_uffd(l.sock, pid, fd);
    lock.store(0, Ordering::SeqCst);
    r.map_err(|e| TaskError(format!("sending its userfaultfd to the lazy-pages daemon: {e}")))
}

/// Set the audit loginuid of this task (inherited from cryo) to the dumped
/// one, while the task still has cryo's credentials. Only the task itself
/// may write its /proc/self/loginuid. As with CRIU, failing to set a dumped
/// loginuid is an error; a dumped *unset* one is only tried (CRIU leaves the
/// restorer's) and a failure is a warning; a kernel without audit support
/// (no /proc/self/loginuid) gets a warning too.
fn restore_loginuid(pid: i32, want: u32) -> Result<(), TaskError> {
    use super::plan::LOGINUID_UNSET;
    let cur = match std::fs::read_to_string("/proc/self/loginuid") {
        Ok(s) => s.trim().parse::<u32>().unwrap_or(LOGINUID_UNSET),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if want != LOGINUID_UNSET {
                eprintln!(
                    "cryo restore: warning: pid {pid}: the kernel has no audit loginuid; loginuid {want} not restored"
                );
            }
            return Ok(());
        }
        Err(e) => return Err(TaskError(format!("reading /proc/self/loginuid: {e}"))),
    };
    if cur == want {
        return Ok(());
    }
    // One write of the whole number, as the kernel wants it.
    match std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/loginuid")
        .and_then(|mut f| f.write_all(want.to_string().as_bytes()))
    {
        Ok(()) => Ok(()),
        Err(e) if want == LOGINUID_UNSET => {
            eprintln!(
                "cryo restore: warning: pid {pid}: its loginuid was unset; it keeps cryo's ({cur}): unsetting failed: {e}"
            );
            Ok(())
        }
        Err(e) => Err(TaskError(format!(
            "setting loginuid {want} (cryo's is {}) failed: {e}{}",
            if cur == LOGINUID_UNSET {
                "unset".to_string()
            } else {
                cur.to_string()
            },
            if cur != LOGINUID_UNSET {
                "; changing a loginuid that is already set needs CAP_AUDIT_CONTROL and the audit \
                 loginuid_immutable feature off (run cryo restore from a process with no loginuid or the same one)"
            } else {
                ""
            }
        ))),
    }
}

/// Where everything goes in the bootstrap reservation.
struct Boot {
    base: u64,
    cursor: u64,
    end: u64,
}

impl Boot {
    fn take(&mut self, len: u64, align: u64) -> Result<u64, TaskError> {
        let a = self.cursor.div_ceil(align) * align;
        if a + len > self.end {
            return Err(TaskError("bootstrap area too small (engine bug)".into()));
        }
        self.cursor = a + len;
        Ok(a)
    }
}

/// The bootstrap area of a task, sized and reserved: the relocated blob,
/// then (after a guard page) the arguments and one stack and sigframe per
/// thread, then the scratch area for moving the kernel mappings.
struct Bootstrap {
    area: Area,
    boot: Boot,
    /// The current vvar*/vdso mappings.
    cur_k: Vec<Span>,
    /// (current, dumped) place of each kernel mapping, None to drop them.
    kplan: Option<Vec<(Span, Span)>>,
    blob_len: u64,
    args_len: u64,
    fsize: u64,
    scratch: u64,
}

/// Where the pieces of the bootstrap were mapped.
struct BootMaps {
    blob_at: u64,
    rw_at: u64,
    rw_len: u64,
    scratch_at: u64,
}

/// Lay the restorer's memory out and write it (the blob, its arguments,
/// the sigframes); returns the bootstrap area, the blob's entry, the first
/// thread's stack top and the arguments' address.
fn prepare_memory(env: &TaskEnv, p: &Proc, pre: &Premapped) -> Result<(Area, u64, u64, u64), TaskError> {
    let mm = p.mm.as_ref().expect("live task has mm");
    let mut bs = reserve_bootstrap(env, p, pre)?;
    let maps = map_bootstrap(env, p, &mut bs)?;
    let premap: Vec<&super::plan::Vma> = pre.vmas.iter().map(|pv| &pv.vma).collect();

    // The premapped copies move into place in the restorer.
    let lazy = task_is_lazy(env, p);
    let mut moves: Vec<RstVma> = pre
        .vmas
        .iter()
        .map(|pv| {
            let mut m = rst_vma(&pv.vma, pv.at);
            if lazy && super::lazy::vma_is_lazy(&pv.vma) {
                m.madv |= MADV_BIT_LAZY;
            }
            m
        })
        .collect();
    if env.vdso_jump {
        patch_vdso(env, pre, &premap, &moves, bs.kplan.as_deref())?;
    }
    // Guards (MADV_GUARD_INSTALL) once every VMA is in place.
    moves.extend(mm.guards.iter().map(|&(s, e)| RstVma {
        src: s,
        dst: s,
        len: e - s,
        prot: 0,
        madv: MADV_BIT_GUARD,
    }));

    let mut a = base_args(env, p, &moves, &maps);
    let km = kernel_moves(bs.kplan.as_deref(), maps.scratch_at)?;
    a.nr_kmaps = km.len() as u32;
    a.kmaps[..km.len()].copy_from_slice(&km);
    let keep = keep_list(env, &bs, &maps, &moves, km.len());
    a.nr_keep = keep.len() as u32;
    a.mm = mm_map(&mm.entry, env.exe_fd_target);
    // In a table shared with the parent, the parent's restorer closes it.
    a.close_fds[0] = if p.shares_parent_fds { -1 } else { env.exe_fd_target };
    a.uffd = match env.lazy {
        Some(l) if lazy => l.uffd_target,
        _ => -1,
    };

    let mut rw = Args {
        area: bs.area,
        boot: Boot {
            base: maps.rw_at,
            cursor: maps.rw_at,
            end: maps.rw_at + maps.rw_len,
        },
    };
    let args_at = rw.boot.take(std::mem::size_of::<RstArgs>() as u64, 64)?;
    a.vmas = rw.put(as_bytes(&moves), 16)?;
    a.keep = rw.put(as_bytes(&keep), 16)?;
    let auxv: Vec<u8> = mm.entry.mm_saved_auxv.iter().flat_map(|x| x.to_le_bytes()).collect();
    a.mm.auxv = rw.put(&auxv, 16)?;
    let shared: Vec<RstSiginfo> = p.shared_signals.iter().map(|s| RstSiginfo { raw: *s }).collect();
    a.shared_siginfo = rw.put(as_bytes(&shared), 16)?;
    a.posix_timers = rw.put(as_bytes(&p.posix_timers), 16)?;
    let threads = write_threads(env, p, &mut rw, bs.fsize)?;
    a.threads = rw.put(as_bytes(&threads), 16)?;
    rw.write(args_at, as_bytes(std::slice::from_ref(&a)))?;
    publish_slot(env, p, &maps, bs.scratch)?;
    let _ = bs.boot.base;
    let entry = maps.blob_at + env.blob.entry as u64;
    Ok((bs.area, entry, threads[0].stack_top, args_at))
}

/// Size the bootstrap area of `p` and reserve it in a hole that no mapping
/// of the engine and no final VMA of the task overlaps.
fn reserve_bootstrap(env: &TaskEnv, p: &Proc, pre: &Premapped) -> Result<Bootstrap, TaskError> {
    let mm = p.mm.as_ref().expect("live task has mm");
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| ("reading /proc/self/maps", e))?;
    let maps = layout::parse_maps(&maps).map_err(|e| ("parsing /proc/self/maps", e))?;
    let mut busy: Vec<Span> = maps.iter().map(|m| m.span).collect();
    busy.extend(mm.vmas.iter().map(|v| Span::new(v.start, v.end.min(layout::TASK_SIZE))));

    // Kernel mappings: current vvar*/vdso and their dumped places.
    let cur_k: Vec<Span> = maps
        .iter()
        .filter(|m| layout::is_kernel_map(&m.name))
        .map(|m| m.span)
        .collect();
    let kplan = plan_kmaps(env, p, &cur_k, &mut busy)?;

    let npremap = pre.vmas.len() as u64;
    let nthreads = p.threads.len() as u64;
    let fsize = page_up(sigframe::frame_size(&env.xsave) as u64 + 64);
    // The keep list: the premapped copies, the kernel mappings and a few more.
    let nkeep = npremap + cur_k.len() as u64 + 16;
    let args_len = page_up(
        std::mem::size_of::<RstArgs>() as u64
            + 64
            + nthreads * (std::mem::size_of::<RstThread>() + std::mem::size_of::<RstCreds>()) as u64
            + (npremap + mm.guards.len() as u64) * std::mem::size_of::<RstVma>() as u64
            + nkeep * std::mem::size_of::<RstRange>() as u64
            + (p.shared_signals.len() + p.threads.iter().map(|t| t.signals.len()).sum::<usize>()) as u64 * 128
            + p.posix_timers.len() as u64 * std::mem::size_of::<RstPosixTimer>() as u64
            + seccomp_bytes(env, p)
            + 8 * 128
            + 4096,
    );
    let blob_len = page_up(env.blob.mem_size as u64);
    let scratch: u64 = cur_k.iter().map(|s| s.len() + PAGE).sum();
    let total = blob_len + args_len + nthreads * (RST_STACK_SIZE as u64 + fsize + PAGE) + scratch + 4 * PAGE;
    let area = reserve_hole(&busy, total, "the restorer's bootstrap area")?;
    let base = area.start();
    Ok(Bootstrap {
        area,
        boot: Boot {
            base,
            cursor: base,
            end: base + total,
        },
        cur_k,
        kplan,
        blob_len,
        args_len,
        fsize,
        scratch,
    })
}

/// Map the relocated blob and the read-write part of the bootstrap; place
/// the scratch area.
fn map_bootstrap(env: &TaskEnv, p: &Proc, bs: &mut Bootstrap) -> Result<BootMaps, TaskError> {
    let nthreads = p.threads.len() as u64;
    let boot = &mut bs.boot;
    let blob_at = boot.take(bs.blob_len, PAGE)?;
    bs.area
        .map(
            blob_at,
            bs.blob_len,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
        .map_err(|e| ("mapping the restorer", e))?;
    bs.area
        .write(blob_at, &env.blob.relocated(blob_at))
        .map_err(|e| ("writing the restorer", e))?;
    boot.cursor += PAGE;
    let rw_at = boot.take(bs.args_len + nthreads * (RST_STACK_SIZE as u64 + bs.fsize + PAGE), PAGE)?;
    let rw_len = boot.cursor - rw_at;
    bs.area
        .map(
            rw_at,
            rw_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
        .map_err(|e| ("mapping the restorer's arguments", e))?;
    boot.cursor += PAGE;
    let scratch_at = boot.take(bs.scratch.max(PAGE), PAGE)?;
    boot.cursor += PAGE;
    Ok(BootMaps {
        blob_at,
        rw_at,
        rw_len,
        scratch_at,
    })
}

/// The restorer's arguments without the tables (filled in by the caller).
fn base_args(env: &TaskEnv, p: &Proc, moves: &[RstVma], maps: &BootMaps) -> RstArgs {
    let mm = p.mm.as_ref().expect("live task has mm");
    RstArgs {
        magic: RST_MAGIC,
        abi_version: RST_ABI_VERSION,
        nr_threads: p.threads.len() as u32,
        nr_vmas: moves.len() as u32,
        nr_keep: 0,
        nr_shared_siginfo: p.shared_signals.len() as u32,
        nr_posix_timers: p.posix_timers.len() as u32,
        pdeath_sig: p.threads[0].pdeath_sig as i32,
        threads: 0,
        vmas: 0,
        keep: 0,
        shared_siginfo: 0,
        posix_timers: 0,
        ctl: env.ctl.start(),
        nr_kmaps: 0,
        dumpable: mm.entry.dumpable.unwrap_or(-1),
        kmaps: [RstVma::default(); RST_MAX_KMAPS],
        mm: PrctlMmMap::default(),
        itimers: p.itimers,
        close_fds: [-1; 4],
        bootstrap: RstRange {
            start: maps.blob_at,
            len: maps.rw_at + maps.rw_len - maps.blob_at,
        },
        thp_disabled: mm.entry.thp_disabled.map_or(-1, |b| b as i32),
        child_subreaper: p.child_subreaper as i32,
        stop_signo: if p.state == super::plan::TASK_STOPPED {
            p.stop_signo as i32
        } else {
            0
        },
        uffd: -1,
    }
}

/// The moves of the kernel mappings: straight to the target, or via the
/// scratch area when the current and dumped places overlap.
fn kernel_moves(kplan: Option<&[(Span, Span)]>, scratch_at: u64) -> Result<Vec<RstVma>, TaskError> {
    let mut km = Vec::new();
    if let Some(kp) = kplan {
        let overlap = kp
            .iter()
            .any(|(c, t)| kp.iter().any(|(c2, _)| t.overlaps(c2) && c2 != c) || (t.overlaps(c) && t != c));
        if overlap {
            let mut s = scratch_at;
            let mut tmp = Vec::new();
            for (c, t) in kp {
                km.push(RstVma {
                    src: c.start,
                    dst: s,
                    len: c.len(),
                    prot: 0,
                    madv: 0,
                });
                tmp.push((s, *t));
                s += c.len() + PAGE;
            }
            for (s, t) in tmp {
                km.push(RstVma {
                    src: s,
                    dst: t.start,
                    len: t.len(),
                    prot: 0,
                    madv: 0,
                });
            }
        } else {
            for (c, t) in kp {
                km.push(RstVma {
                    src: c.start,
                    dst: t.start,
                    len: c.len(),
                    prot: 0,
                    madv: 0,
                });
            }
        }
    }
    if km.len() > RST_MAX_KMAPS {
        return Err(TaskError(format!(
            "{} kernel mappings to move, at most {RST_MAX_KMAPS}",
            km.len()
        )));
    }
    Ok(km)
}

/// What the restorer keeps mapped: the bootstrap reservation, the control
/// page, the kernel mappings if they are to be moved, the premapped copies.
fn keep_list(env: &TaskEnv, bs: &Bootstrap, maps: &BootMaps, moves: &[RstVma], nkm: usize) -> Vec<RstRange> {
    let mut keep = vec![
        RstRange {
            start: maps.blob_at,
            len: maps.rw_at + maps.rw_len - maps.blob_at,
        },
        RstRange {
            start: env.ctl.start(),
            len: RST_CTL_SIZE as u64,
        },
    ];
    if nkm > bs.kplan.as_ref().map_or(0, |k| k.len()) {
        // Two-step move of the kernel mappings through the scratch area.
        keep.push(RstRange {
            start: maps.scratch_at,
            len: bs.scratch,
        });
    }
    keep.extend(moves.iter().filter(|m| m.madv & MADV_BIT_GUARD == 0).map(|m| RstRange {
        start: m.src,
        len: m.len,
    }));
    if bs.kplan.is_some() {
        keep.extend(bs.cur_k.iter().map(|s| RstRange {
            start: s.start,
            len: s.len(),
        }));
    }
    keep.sort_by_key(|k| k.start);
    keep
}

/// PR_SET_MM_MAP's argument (the auxv address is filled in once written).
fn mm_map(e: &cryo_image::pb::MmEntry, exe_fd: RawFd) -> PrctlMmMap {
    PrctlMmMap {
        start_code: e.mm_start_code,
        end_code: e.mm_end_code,
        start_data: e.mm_start_data,
        end_data: e.mm_end_data,
        start_brk: e.mm_start_brk,
        brk: e.mm_brk,
        start_stack: e.mm_start_stack,
        arg_start: e.mm_arg_start,
        arg_end: e.mm_arg_end,
        env_start: e.mm_env_start,
        env_end: e.mm_env_end,
        auxv: 0,
        auxv_size: (e.mm_saved_auxv.len() * 8) as u32,
        exe_fd: exe_fd as u32,
    }
}

/// The read-write part of the bootstrap, filled front to back.
struct Args {
    area: Area,
    boot: Boot,
}

impl Args {
    /// Place `bytes` at the next `align`ed address; returns it.
    fn put(&mut self, bytes: &[u8], align: u64) -> Result<u64, TaskError> {
        let at = self.boot.take(bytes.len().max(1) as u64, align)?;
        self.write(at, bytes)?;
        Ok(at)
    }

    fn write(&self, at: u64, bytes: &[u8]) -> Result<(), TaskError> {
        self.area
            .write(at, bytes)
            .map_err(|e| TaskError(format!("writing the restorer's arguments: {e}")))
    }
}

/// Each thread's sigframe, stack, seccomp filters, creds and signals, and
/// its entry of the thread table.
fn write_threads(env: &TaskEnv, p: &Proc, rw: &mut Args, fsize: u64) -> Result<Vec<RstThread>, TaskError> {
    // Every thread on one filter chain: shared again (TSYNC from the leader).
    let tsync = p.threads.len() > 1
        && matches!(p.threads[0].seccomp, super::plan::Seccomp::Filters(_))
        && p.threads.iter().all(|t| t.seccomp == p.threads[0].seccomp);
    let mut threads = Vec::new();
    for t in &p.threads {
        let (seccomp_mode, chain): (i32, &[u32]) = match &t.seccomp {
            super::plan::Seccomp::Off => (0, &[]),
            super::plan::Seccomp::Strict => (1, &[]),
            super::plan::Seccomp::Filters(c) => (2, c),
        };
        let mut filters = Vec::with_capacity(chain.len());
        for &i in chain {
            let prog = &env.plan.seccomp[i as usize];
            filters.push(RstSeccompFilter {
                insns: rw.put(&prog.insns, 8)?,
                len: (prog.insns.len() / 8) as u32,
                flags: prog.flags,
            });
        }
        let seccomp = rw.put(as_bytes(&filters), 16)?;
        let stack_lo = rw.boot.take(RST_STACK_SIZE as u64, PAGE)?;
        let frame_at = rw.boot.take(fsize, 64)?;
        let mut regs = t.regs.clone();
        sigframe::restart_adjust(&mut regs);
        let frame = sigframe::build(&regs, &t.fp, t.sigmask, t.alt, &env.xsave, frame_at)
            .map_err(|e| TaskError(format!("thread {}: {e}", t.tid)))?;
        rw.write(frame_at, &frame)?;
        let creds = match &t.creds {
            Some(c) => rw.put(as_bytes(std::slice::from_ref(c)), 16)?,
            None => 0,
        };
        let sigs: Vec<RstSiginfo> = t.signals.iter().map(|s| RstSiginfo { raw: *s }).collect();
        let siginfo = rw.put(as_bytes(&sigs), 16)?;
        let mut comm = [0u8; 16];
        let n = t.comm.len().min(15);
        comm[..n].copy_from_slice(&t.comm.as_bytes()[..n]);
        let (rseq, rseq_len, rseq_sig) = t.rseq.unwrap_or((0, 0, 0));
        threads.push(RstThread {
            tid: t.tid,
            pdeath_sig: t.pdeath_sig as i32,
            frame: frame_at,
            stack_top: stack_lo + RST_STACK_SIZE as u64,
            fs_base: t.regs.fs_base,
            gs_base: t.regs.gs_base,
            clear_tid: t.clear_tid,
            rseq,
            rseq_len,
            rseq_sig,
            creds,
            siginfo,
            nr_siginfo: sigs.len() as u32,
            _pad2: 0,
            comm,
            sched_nice: t.sched.map_or(0, |s| s.0),
            sched_policy: t.sched.map_or(-1, |s| s.1),
            sched_prio: t.sched.map_or(0, |s| s.2),
            _pad3: 0,
            seccomp_mode,
            no_new_privs: t.no_new_privs as i32,
            seccomp,
            nr_seccomp: filters.len() as u32,
            seccomp_tsync: tsync as u32,
            futex_rla: t.futex_rla.0,
            futex_rla_len: t.futex_rla.1,
            _pad4: 0,
        });
    }
    Ok(threads)
}

/// Tell the engine where the bootstrap is (it unmaps it over ptrace once
/// every thread has gone through rt_sigreturn): the task's slot of the
/// control page.
fn publish_slot(env: &TaskEnv, p: &Proc, maps: &BootMaps, scratch: u64) -> Result<(), TaskError> {
    if let Some(idx) = env
        .plan
        .procs
        .iter()
        .position(|q| q.pid == p.pid)
        .filter(|&i| i < RST_MAX_SLOTS)
    {
        let syscall_at = env
            .blob
            .symbol("cryo_sigreturn")
            .map(|o| o + 8)
            .filter(|&o| env.blob.image.get(o as usize..o as usize + 2) == Some(&[0x0f, 0x05][..]))
            .map_or(0, |o| maps.blob_at + o);
        ctl(env).slots[idx].store(&RstSlot {
            pid: p.pid,
            _pad: 0,
            start: maps.blob_at,
            len: maps.scratch_at + scratch.max(PAGE) - maps.blob_at,
            syscall_at,
        });
    }
    Ok(())
}

/// The restorer's move of a premapped copy at `at` to `v`, with the
/// advice and locking to apply once it is in place.
fn rst_vma(v: &super::plan::Vma, at: u64) -> RstVma {
    let mut madv = 0;
    for (bit, flag) in [
        (libc::MADV_DONTFORK, MADV_BIT_DONTFORK),
        (libc::MADV_HUGEPAGE, MADV_BIT_HUGEPAGE),
        (libc::MADV_NOHUGEPAGE, MADV_BIT_NOHUGEPAGE),
        (libc::MADV_DONTDUMP, MADV_BIT_DONTDUMP),
        (libc::MADV_SEQUENTIAL, MADV_BIT_SEQUENTIAL),
        (libc::MADV_RANDOM, MADV_BIT_RANDOM),
        (libc::MADV_MERGEABLE, MADV_BIT_MERGEABLE),
        (libc::MADV_WIPEONFORK, MADV_BIT_WIPEONFORK),
    ] {
        if v.madv & (1 << bit) != 0 {
            madv |= flag;
        }
    }
    if v.flags & libc::MAP_LOCKED as u32 != 0 {
        madv |= MADV_BIT_MLOCK;
    }
    if let VmaKind::AioRing(nr_req) = v.kind {
        return RstVma {
            src: at,
            dst: v.start,
            len: v.end - v.start,
            prot: nr_req,
            madv: MADV_BIT_AIO,
        };
    }
    RstVma {
        src: at,
        dst: v.start,
        len: v.end - v.start,
        prot: v.prot,
        madv,
    }
}

/// Room the threads' seccomp chains take in the arguments area.
fn seccomp_bytes(env: &TaskEnv, p: &Proc) -> u64 {
    p.threads
        .iter()
        .map(|t| match &t.seccomp {
            super::plan::Seccomp::Filters(c) => {
                c.iter()
                    .map(|&i| env.plan.seccomp[i as usize].insns.len() as u64 + 8 + 16)
                    .sum::<u64>()
                    + 16
            }
            _ => 16,
        })
        .sum()
}

/// Turn the premapped copy of the dumped vdso into a jump table: each of
/// its symbols gets `movabs rax, <same symbol in the running vdso>; jmp rax`.
fn patch_vdso(
    env: &TaskEnv,
    pre: &Premapped,
    premap: &[&super::plan::Vma],
    moves: &[RstVma],
    kplan: Option<&[(Span, Span)]>,
) -> Result<(), TaskError> {
    let Some(k) = premap.iter().position(|v| v.kind == VmaKind::Vdso) else {
        return Ok(());
    };
    let cur = env.vdso.ok_or_else(|| TaskError("no running vdso".into()))?;
    let new_base = kplan
        .and_then(|kp| kp.iter().find(|(c, _)| *c == cur).map(|(_, t)| t.start))
        .ok_or_else(|| TaskError("the running vdso has no new place (engine bug)".into()))?;
    let cur_syms: std::collections::HashMap<String, u64> = crate::sys::mem::read_self(cur.start, cur.len() as usize)
        .map_err(|e| TaskError(format!("running vdso: {e}")))
        .and_then(|b| super::vdso_symbols(&b).map_err(|e| TaskError(format!("running vdso: {e}"))))?
        .into_iter()
        .collect();
    let pv = &pre.vmas[k];
    let copy = moves[k].src;
    let mut old = vec![0u8; moves[k].len as usize];
    pv.area
        .read(copy, &mut old)
        .map_err(|e| TaskError(format!("dumped vdso: {e}")))?;
    let syms = super::vdso_symbols(&old).map_err(|e| TaskError(format!("dumped vdso: {e}")))?;
    for (name, off) in syms {
        let Some(&target) = cur_syms.get(&name) else { continue };
        if off + 12 > moves[k].len {
            return Err(TaskError(format!(
                "dumped vdso: symbol {name} at {off:#x} is past its end"
            )));
        }
        let mut code = [0u8; 12];
        code[..2].copy_from_slice(&[0x48, 0xb8]);
        code[2..10].copy_from_slice(&(new_base + target).to_le_bytes());
        code[10..].copy_from_slice(&[0xff, 0xe0]);
        pv.area
            .write(copy + off, &code)
            .map_err(|e| TaskError(format!("dumped vdso: {e}")))?;
    }
    Ok(())
}

/// Pairs (current, target) of kernel mappings to move, or None to drop them
/// (the dumped process had no vdso).
fn plan_kmaps(
    env: &TaskEnv,
    p: &Proc,
    cur: &[Span],
    busy: &mut Vec<Span>,
) -> Result<Option<Vec<(Span, Span)>>, TaskError> {
    let mm = p.mm.as_ref().expect("mm");
    let dumped: Vec<Span> = mm
        .vmas
        .iter()
        .filter(|v| matches!(v.kind, VmaKind::Vdso | VmaKind::Vvar))
        .map(|v| Span::new(v.start, v.end))
        .collect();
    let Some(dvdso) = mm.vmas.iter().find(|v| v.kind == VmaKind::Vdso) else {
        return Ok(None);
    };
    let cur_vdso = env
        .vdso
        .ok_or_else(|| TaskError("the running kernel has no vdso but the image has one".into()))?;
    let cur_lo = cur.iter().map(|s| s.start).min().unwrap_or(cur_vdso.start);
    let cur_hi = cur.iter().map(|s| s.end).max().unwrap_or(cur_vdso.end);
    if env.vdso_jump {
        // The running vdso/vvar go to a free place; the dumped vdso is
        // premapped as a copy whose symbols jump there (patch_vdso).
        let len = cur_hi - cur_lo;
        let h = layout::find_hole(busy, len, 0x10_0000, 0x7ff0_0000_0000)
            .ok_or_else(|| TaskError("no room for the running vdso".into()))?;
        busy.push(Span::new(h - PAGE, h + len + PAGE));
        return Ok(Some(
            cur.iter()
                .map(|s| (*s, Span::new(h + (s.start - cur_lo), h + (s.end - cur_lo))))
                .collect(),
        ));
    }
    if dvdso.end - dvdso.start != cur_vdso.len() {
        return Err(TaskError(format!(
            "vdso size differs: dumped {:#x}, running kernel {:#x} (and its symbols match: engine bug)",
            dvdso.end - dvdso.start,
            cur_vdso.len()
        )));
    }
    let delta = dvdso.start.wrapping_sub(cur_vdso.start);
    let d_lo = dumped.iter().map(|s| s.start).min().unwrap_or(dvdso.start);
    let d_hi = dumped.iter().map(|s| s.end).max().unwrap_or(dvdso.end);
    if cur_lo.wrapping_add(delta) != d_lo || cur_hi.wrapping_add(delta) != d_hi {
        return Err(TaskError(format!(
            "vvar/vdso layout differs: dumped {d_lo:#x}-{d_hi:#x}, running kernel {cur_lo:#x}-{cur_hi:#x} (vdso at {:#x})",
            cur_vdso.start
        )));
    }
    Ok(Some(
        cur.iter()
            .map(|s| (*s, Span::new(s.start.wrapping_add(delta), s.end.wrapping_add(delta))))
            .collect(),
    ))
}

/// POSIX locks belong to the process, flock locks to the file description:
/// both are taken again by the restored task through its fd.
fn take_locks(env: &TaskEnv, p: &Proc) -> Result<(), TaskError> {
    for l in env.plan.locks.iter().filter(|l| l.pid == p.pid) {
        let (r, kind) = if l.flag == 8 {
            // A lease: taken as root (CAP_LEASE) through the task's fd (the
            // fd number its break signals carry); the owner it gives the
            // file is replaced by the dumped one later. One being broken is
            // taken as it was before, and broken again by the engine once
            // every task is ready (files::lock::break_again).
            let accmode = rsys::get_fl(l.fd).unwrap_or(-1) & libc::O_ACCMODE;
            let ty = crate::files::lock::lease_to_take(l.r#type, accmode);
            (rsys::set_lease(l.fd, ty), "lease")
        } else if l.flag == 2 {
            let op = if l.r#type as i32 == libc::F_WRLCK {
                libc::LOCK_EX
            } else {
                libc::LOCK_SH
            };
            (rsys::flock(l.fd, op | libc::LOCK_NB), "flock")
        } else {
            // An OFD lock belongs to the open file (shared by every task
            // holding it), a POSIX lock to this process.
            let (cmd, kind) = if l.flag == 4 {
                (libc::F_OFD_SETLK, "OFD lock")
            } else {
                (libc::F_SETLK, "POSIX lock")
            };
            // l_pid 0, as OFD locks need.
            (rsys::set_record_lock(l.fd, cmd, l.r#type as i16, l.start, l.len), kind)
        };
        if let Err(e) = r {
            return Err(TaskError(format!(
                "{kind} on fd {} ({}..+{}): {e}",
                l.fd, l.start, l.len
            )));
        }
    }
    Ok(())
}

/// Open the files of /proc/<pid> of restored processes that `p` holds: the
/// engine could not (those processes did not exist yet); every one exists
/// now. They go above every target fd number, like the engine's pool, and
/// are moved into place by [`setup_fds`].
fn open_proc_files(env: &TaskEnv, p: &Proc) -> Result<std::collections::HashMap<u32, RawFd>, TaskError> {
    let mut out = std::collections::HashMap::new();
    let above = env.exe_fd_target + 1;
    for f in &p.fds {
        if env.fd_pool.contains_key(&f.file_id) || out.contains_key(&f.file_id) {
            continue;
        }
        let desc = match env.plan.files.get_as::<crate::files::reg::RegFile>(f.file_id) {
            Some(d) if d.remap.is_none() && env.plan.files.is_tree_proc_path(&d.path) && !own_fd_path(p, &d.path) => d,
            _ => continue,
        };
        let mut no_remaps = crate::files::reg::Remaps::default();
        let fd = desc
            .open(&env.plan.files, &mut no_remaps, f.file_id)
            .map_err(|e| TaskError(format!("fd {}: {e}", f.fd)))?;
        let high = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(above))
            .map_err(|e| TaskError(format!("fd {} (file id {}): moving it up: {e}", f.fd, f.file_id)))?;
        out.insert(f.file_id, high);
    }
    Ok(out)
}

/// /proc/<own pid>/fd/N or /proc/<own pid>/fdinfo/N: names one of the
/// task's own fds, so it can only be opened once that fd is at its number
/// (setup_fds opens it last).
fn own_fd_path(p: &Proc, path: &str) -> bool {
    let own = format!("/proc/{}/", p.pid);
    path.strip_prefix(&own)
        .is_some_and(|rest| rest.starts_with("fd/") || rest.starts_with("fdinfo/"))
}

/// The exe fd of a task sharing its parent's table, at its number.
fn share_exe_fd(env: &TaskEnv, p: &Proc) -> Result<(), TaskError> {
    let exe =
        p.mm.as_ref()
            .map(|m| m.exe_file)
            .and_then(|id| env.map_pool.get(&id).copied());
    if let Some(exe) = exe {
        rsys::dup3(exe, env.exe_fd_target, libc::O_CLOEXEC).map_err(|e| TaskError::from(("exe fd", e)))?;
    }
    Ok(())
}

/// Put every fd at its number; close everything else except the exe fd.
fn setup_fds(env: &TaskEnv, p: &Proc, proc_files: &std::collections::HashMap<u32, RawFd>) -> Result<(), TaskError> {
    let mut keep: Vec<RawFd> = Vec::new();
    // pidfds are opened here (every task exists by now), above every fd
    // the engine handed down.
    let want: std::collections::BTreeMap<u32, &cryo_image::pb::PidfdEntry> = p
        .fds
        .iter()
        .filter_map(|f| {
            let e = env.plan.files.get_as::<crate::files::pidfd::PidfdFile>(f.file_id)?;
            Some((f.file_id, &e.0))
        })
        .collect();
    let above = env
        .fd_pool
        .values()
        .chain(env.map_pool.values())
        .copied()
        .max()
        .unwrap_or(0)
        .max(env.exe_fd_target)
        + 1;
    let pidfds = crate::files::pidfd::open_all(&want, above).map_err(TaskError)?;
    let mut late = Vec::new();
    for f in &p.fds {
        if let Some(desc) = env.plan.files.get_as::<crate::files::reg::RegFile>(f.file_id) {
            if desc.remap.is_none() && !env.fd_pool.contains_key(&f.file_id) && own_fd_path(p, &desc.path) {
                late.push((f, desc));
                continue;
            }
        }
        let src = *env
            .fd_pool
            .get(&f.file_id)
            .or_else(|| pidfds.get(&f.file_id))
            .or_else(|| proc_files.get(&f.file_id))
            .ok_or_else(|| TaskError(format!("fd {}: no file for id {} (engine bug)", f.fd, f.file_id)))?;
        let fl = if f.cloexec { libc::O_CLOEXEC } else { 0 };
        // Every pool fd is above every target fd.
        rsys::dup3(src, f.fd, fl).map_err(|e| TaskError(format!("fd {} (file id {}): dup3: {e}", f.fd, f.file_id)))?;
        keep.push(f.fd);
    }
    // Files naming the task's own fds, now that those are in place.
    use std::os::fd::{AsRawFd, IntoRawFd};
    for (f, desc) in late {
        let mut no_remaps = crate::files::reg::Remaps::default();
        let fd = desc
            .open(&env.plan.files, &mut no_remaps, f.file_id)
            .map_err(|e| TaskError(format!("fd {}: {e}", f.fd)))?;
        let fl = if f.cloexec { libc::O_CLOEXEC } else { 0 };
        // f.fd is the target number (a temporary fd that landed there is
        // replaced by itself, dup3 refuses equal numbers).
        if fd.as_raw_fd() != f.fd {
            rsys::dup3(fd.as_raw_fd(), f.fd, fl)
                .map_err(|e| TaskError(format!("fd {} (file id {}): dup3: {e}", f.fd, f.file_id)))?;
        }
        if fd.as_raw_fd() == f.fd {
            // Already at its number: keep it open (and set its close-on-exec flag).
            let fd = fd.into_raw_fd();
            let _ = rsys::set_cloexec(fd, f.cloexec);
        }
        keep.push(f.fd);
    }
    let exe =
        p.mm.as_ref()
            .map(|m| m.exe_file)
            .and_then(|id| env.map_pool.get(&id).copied());
    if let Some(exe) = exe {
        rsys::dup3(exe, env.exe_fd_target, libc::O_CLOEXEC).map_err(|e| TaskError::from(("exe fd", e)))?;
        keep.push(env.exe_fd_target);
    }
    if let Some(l) = env.lazy.filter(|_| task_is_lazy(env, p)) {
        keep.push(l.uffd_target);
    }
    keep.sort();
    keep.dedup();
    let mut next = 0u32;
    for &k in &keep {
        if (k as u32) > next {
            // Closing fds of this task copy; none is used by Rust objects afterwards.
            let _ = rsys::close_range(next, k as u32 - 1);
        }
        next = k as u32 + 1;
    }
    let _ = rsys::close_range(next, u32::MAX);
    Ok(())
}
