//! `cryo restore`: bring an image set back to life with the same PIDs.
//!
//! The driver is a small state machine ([`Stage`]) over a [`RestoreCtx`]:
//!
//! ```text
//! Validate ──► Prepare ──► Fork ──► Wait ──► Resume ──► Done
//!    │            │          │        │         │
//!    └────────────┴──────────┴────────┴─────────┴──► Abort (kill every task, remove ghosts)
//! ```
//!
//! * **Validate**: every image is read and checked ([`plan::build`]); nothing
//!   exists yet. Unsupported objects are refused here.
//! * **Prepare**: the PIDs are checked free (waiting, bounded, for the zombies
//!   of a just-killed tree), the shared objects are opened in the engine
//!   (files at their positions, pipes and FIFOs with their data, ghost files re-created
//!   and already unlinked, memfds with their contents), and the shared control
//!   page is mapped where no restored VMA will be.
//! * **Fork**: the root is cloned with its pid; each task forks its own
//!   children ([`task`]), restores its state, premaps its memory and jumps into
//!   the restorer blob, which finishes the job and waits at a barrier.
//!   Sessions and groups whose leader is gone (a double-forked daemon's) are
//!   held by short-lived helper tasks with those pids ([`plan::helpers`]),
//!   reaped by whoever forked them once every task has joined its group.
//! * **Wait**: the engine waits until every thread is at the barrier, or an
//!   error is reported (a task writes its message to the error pipe), or the
//!   root dies.
//! * **Resume**: the engine says go; credentials are applied and each thread
//!   returns to its saved registers with rt_sigreturn.
//! * **Abort**: the root is SIGKILLed; every other task has PR_SET_PDEATHSIG
//!   = SIGKILL until it is restored, so the whole tree goes (also when the
//!   engine itself is SIGKILLed).

mod finish;
pub mod layout;
pub mod lazy;
pub mod plan;
mod premap;
pub mod sigframe;
mod task;

use crate::files;
use crate::parasite::blob::Blob;
use crate::sys::restore::{self as rsys, Forked};
use cryo_abi::restorer::*;
use plan::{Plan, VmaKind};
use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Options of `cryo restore`.
#[derive(Clone, Debug)]
pub struct RestoreOpts {
    pub dir: PathBuf,
    /// Leave the restored tree running and return (criu's -d).
    pub detach: bool,
    pub pidfile: Option<PathBuf>,
    /// Keep the root in the engine's session and group (criu's -j).
    pub shell_job: bool,
    /// Restore file locks (criu's --file-locks); images holding locks are
    /// refused without it.
    pub file_locks: bool,
    /// How long to wait for PIDs still held by a just-killed tree.
    pub pid_wait: Duration,
    /// TCP connections in the images are restored (criu's --tcp-established).
    pub tcp_established: bool,
    /// TCP connections in the images are restored closed (criu's --tcp-close).
    pub tcp_close: bool,
    /// How long the tasks may take to reach the barrier.
    pub timeout: Duration,
    /// Asked with the root's pid once every task is at the barrier, before
    /// any runs (`cryo swrk`'s post-restore and pre-resume notifications);
    /// `Err` aborts the restore.
    pub before_resume: Option<Gate>,
    /// Restore a tree dumped in the dumper's pid namespace into a new pid
    /// namespace, where it keeps its pids (pid 1 is the root if its pid is
    /// 1, else a small init of cryo's; see docs/namespaces.md).
    pub new_pidns: bool,
    /// A tree with a mount namespace of its own: its root filesystem
    /// (criu's --root) and where its external mounts are (--external
    /// mnt[KEY]:PATH, --ext-mount-map KEY:PATH).
    pub mnt: crate::state::mnt::MntRestoreOpts,
    /// A veth whose peer was outside the tree: its name inside → the name
    /// of the new peer in cryo's network namespace (--external
    /// veth[IN]:OUT, --veth-pair IN=OUT).
    pub veth_pairs: std::collections::BTreeMap<String, String>,
    /// criu's --manage-cgroups mode and --cgroup-root (state::cgroup).
    pub cgroups: crate::state::cgroup::CgOpts,
    /// Lazy restore (criu's --lazy-pages): the private anonymous memory is
    /// filled on demand by the `cryo lazy-pages` daemon listening in this
    /// work dir (restore::lazy).
    pub lazy_pages: Option<PathBuf>,
    /// The tree's network namespace is made empty, as it was dumped with
    /// criu's `--empty-ns net` (the caller sets it up).
    pub empty_net: bool,
    /// Files the caller hands to the restore by key (criu's `--inherit-fd
    /// fd[N]:KEY`): an external network namespace (netns-N.img's ext_key).
    /// The fds stay the caller's.
    pub inherit_fds: std::collections::BTreeMap<String, RawFd>,
    /// Where stats-restore is written, as criu writes it (criu's work
    /// directory). None: not written (criu writes it to the images directory
    /// then; cryo's restore leaves the images directory untouched).
    pub work_dir: Option<PathBuf>,
    /// The root becomes a child of the engine's parent (criu's
    /// `--restore-sibling`, which runc and podman use: the container's init
    /// is their child).
    pub sibling: bool,
}

/// A callback that may stop a restore before the tree runs.
#[derive(Clone)]
pub struct Gate(pub std::sync::Arc<dyn Fn(i32) -> Result<(), String> + Send + Sync>);

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate")
    }
}

impl RestoreOpts {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RestoreOpts {
            dir: dir.into(),
            detach: true,
            pidfile: None,
            shell_job: false,
            file_locks: false,
            pid_wait: Duration::from_secs(5),
            tcp_established: false,
            tcp_close: false,
            timeout: Duration::from_secs(60),
            before_resume: None,
            new_pidns: false,
            mnt: Default::default(),
            cgroups: Default::default(),
            veth_pairs: Default::default(),
            lazy_pages: None,
            empty_net: false,
            inherit_fds: Default::default(),
            sibling: false,
            work_dir: None,
        }
    }
}

/// Restore stages (see the module docs for the transitions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Validate,
    Prepare,
    Fork,
    Wait,
    Resume,
    Done,
    Abort,
}

/// Why a restore failed. Each names the pid/object and the reason.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Image(#[from] cryo_image::ImageError),
    #[error(transparent)]
    File(#[from] files::OpenError),
    #[error("pid {pid} is in use{by} (waited {waited:?} for it to be freed)")]
    PidBusy { pid: i32, by: String, waited: Duration },
    #[error("{object}: {reason}")]
    Prepare { object: String, reason: String },
    #[error("restoring {0}")]
    Task(String),
    #[error("restorer in pid {pid}{thread} failed at {stage}: {err}")]
    Restorer {
        pid: i32,
        /// " thread TID" when a thread other than the leader failed.
        thread: String,
        stage: &'static str,
        err: std::io::Error,
    },
    #[error("pid {pid} died during restore ({how})")]
    Died { pid: i32, how: String },
    #[error("the tasks did not reach the end of the restore within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Sys(String),
    #[error("restore aborted before the tree ran: {0}")]
    Aborted(String),
    #[error(transparent)]
    Affinity(#[from] crate::state::affinity::AffinityError),
    #[error(transparent)]
    Sidecar(#[from] crate::sidecar::SidecarError),
    #[error(transparent)]
    Cgroup(#[from] crate::state::cgroup::CgError),
}

fn prep(object: impl Into<String>, reason: impl std::fmt::Display) -> RestoreError {
    RestoreError::Prepare {
        object: object.into(),
        reason: reason.to_string(),
    }
}

/// The leases of the images being broken, each with the engine's fd on its
/// open file (files::lock::break_again).
fn rebreaks(plan: &Plan, pool: &HashMap<u32, RawFd>) -> Result<Vec<files::lock::Rebreak>, RestoreError> {
    let mut v = Vec::new();
    for l in plan.locks.iter().filter(|l| files::lock::is_breaking(l)) {
        let id = plan
            .procs
            .iter()
            .find(|p| p.pid == l.pid)
            .and_then(|p| p.fds.iter().find(|f| f.fd == l.fd))
            .map(|f| f.file_id);
        let Some(&fd) = id.and_then(|id| pool.get(&id)) else {
            return Err(prep(
                "leases being broken",
                format!("pid {} fd {}: no open file for it (engine bug)", l.pid, l.fd),
            ));
        };
        v.push(files::lock::Rebreak {
            fd,
            to: (l.r#type & !files::lock::LEASE_BREAKING) as i32,
            owned: id.and_then(|id| plan.files.fown.get(&id)).is_some_and(|o| o.pid != 0),
        });
    }
    Ok(v)
}

/// What the cloned tasks inherit from the engine (read-only there).
pub struct TaskEnv {
    pub plan: Plan,
    pub blob: &'static Blob,
    pub ctl: crate::sys::mem::Area,
    pub err_w: RawFd,
    pub fd_pool: HashMap<u32, RawFd>,
    pub map_pool: HashMap<u32, RawFd>,
    pub exe_fd_target: RawFd,
    pub xsave: sigframe::XsaveLayout,
    pub vdso: Option<layout::Span>,
    /// The dumped vdso differs from the running one: keep a copy of the
    /// dumped one at its place with every symbol jumping into the running one.
    pub vdso_jump: bool,
    pub shell_job: bool,
    /// Per session id: a slave fd of its controlling terminal (TIOCSCTTY
    /// in the leader) and the foreground group to set (0: the leader's).
    pub ctty: HashMap<i32, (RawFd, i32)>,
    pub pid_wait: Duration,
    pub thp: bool,
    /// The namespaces the first task is cloned into (state::ns).
    pub ns_flags: u64,
    /// The images directory (O_PATH), for tasks in a restored mount namespace.
    pub images_fd: Option<RawFd>,
    /// The tree's root is forked by an init of cryo's, pid 1 of a new pid
    /// namespace (`--new-pidns` with a root whose pid is not 1).
    pub init: bool,
    /// The first task is forked by an intermediate in the tree's user
    /// namespace, into a pid namespace made there (state::ns::holder).
    pub user_from_start: bool,
    /// The cgroups each task joins right after its clone (state::cgroup).
    pub cg: crate::state::cgroup::Join,
    /// The root unshares its cgroup namespace (the tree has one of its own).
    pub cgns: bool,
    /// Lazy restore: the connection to the daemon (shared by every task,
    /// each sends under `RstCtl`'s lazy lock) and the fd number a task's
    /// userfaultfd takes until its restorer closes it.
    pub lazy: Option<LazyEnv>,
    /// The first task is cloned with CLONE_PARENT: a child of the engine's
    /// parent ([`RestoreOpts::sibling`]).
    pub sibling: bool,
}

/// See [`TaskEnv::lazy`].
#[derive(Clone, Copy, Debug)]
pub struct LazyEnv {
    pub sock: RawFd,
    pub uffd_target: RawFd,
}

/// How the tree's network namespace is made.
enum NetHow {
    /// From its images.
    Images(Box<crate::state::netns::NetPlan>),
    /// Empty (criu's `--empty-ns net`).
    Empty,
    /// The caller's, inherited under this key.
    External(String, RawFd),
}

/// The restore in progress.
pub struct RestoreCtx {
    pub opts: RestoreOpts,
    pub stage: Stage,
    env: Option<TaskEnv>,
    pool: Vec<OwnedFd>,
    err_r: Option<OwnedFd>,
    root: Option<i32>,
    /// A pidfd of the first task: with `sibling` it is not the engine's
    /// child, so waitpid cannot watch or reap it.
    root_fd: Option<OwnedFd>,
    /// Helper tasks cryo forked itself (to kill on abort, reap at the end).
    helpers: Vec<i32>,
    /// cryo.json: the state CRIU's format cannot hold.
    sidecar: cryo_image::sidecar::Sidecar,
    /// Link remaps (criu's --link-remap) used: removed once restored.
    linked: Vec<String>,
    /// Stand-ins with the pids of dead processes (see [`DeadPids`]).
    dead: Option<DeadPids>,
    /// In a new pid namespace: the pid (as the engine sees it) of every
    /// restored task and thread, by its pid inside (empty otherwise).
    host: HashMap<i32, i32>,
    /// The host pid of the tree's root (the first task, or init's child).
    root_host: Option<i32>,
    /// The tree's own mount and network namespaces, validated.
    mnt_tree: Option<crate::state::mnt::MountTree>,
    net_plan: Option<NetHow>,
    /// The namespaces made for them, held until the first task entered
    /// them (dropped on abort: nothing is left behind).
    ns_holders: Vec<std::fs::File>,
    /// The user namespace made by the holder (state::ns::holder), until it
    /// is put out of the tree's fd numbers.
    user_ns: Option<std::fs::File>,
    /// Files of the images the caller hands its own fd for (`inherit_fds`): file id → fd.
    inherit_files: Vec<(u32, RawFd)>,
    /// The images' TCP connections and the dump's network lock over them:
    /// removed at the end of the restore, or by its abort.
    tcp: Option<files::tcp::ImageConns>,
    /// The tree's cgroups, checked; what the restore made is removed by an abort.
    cg: Option<crate::state::cgroup::CgPlan>,
    /// Lazy restore: the connection to the daemon (dropped on abort, which
    /// the daemon sees as the restore's failure).
    lazy_sock: Option<OwnedFd>,
}

/// What a successful restore leaves.
#[derive(Debug)]
pub struct Restored {
    pub root: i32,
    pub pids: Vec<i32>,
    /// Threads of every process.
    pub threads: usize,
    /// Each stage (validated, prepared, forked, all tasks ready, resumed)
    /// with the time it took.
    pub phases: Vec<(String, Duration)>,
    pub total: Duration,
    /// Pages read from the images into the tasks' memory.
    pub pages: u64,
}

impl RestoreCtx {
    pub fn new(opts: RestoreOpts) -> Self {
        RestoreCtx {
            opts,
            stage: Stage::Validate,
            env: None,
            pool: Vec::new(),
            err_r: None,
            sidecar: Default::default(),
            root: None,
            root_fd: None,
            helpers: Vec::new(),
            linked: Vec::new(),
            dead: None,
            host: HashMap::new(),
            mnt_tree: None,
            net_plan: None,
            ns_holders: Vec::new(),
            user_ns: None,
            root_host: None,
            inherit_files: Vec::new(),
            tcp: None,
            cg: None,
            lazy_sock: None,
        }
    }

    /// Run every stage; on any error, abort (nothing restored survives).
    pub fn run(&mut self) -> Result<Restored, RestoreError> {
        let r = self.run_stages();
        if r.is_err() {
            self.abort();
        }
        r
    }

    fn run_stages(&mut self) -> Result<Restored, RestoreError> {
        let t0 = Instant::now();
        let timing = std::env::var_os("CRYO_TIMING").is_some();
        let mut phases: Vec<(String, Duration)> = Vec::new();
        let mut last = t0;
        let mut mark = |what: &str| {
            let now = Instant::now();
            phases.push((what.to_string(), now - last));
            last = now;
            if timing {
                eprintln!("cryo restore: {what} at {:.3} ms", t0.elapsed().as_secs_f64() * 1e3);
            }
        };
        // Validate.
        self.stage = Stage::Validate;
        // The dump's network lock is removed however the restore ends.
        if let Ok(set) = cryo_image::ImageSet::open(&self.opts.dir) {
            self.tcp = files::tcp::image_conns(&set).ok().filter(|c| !c.conns.is_empty());
        }
        let mut plan = plan::build(&self.opts.dir)?;
        if self.opts.new_pidns && !plan.ns.has(crate::state::ns::Kind::Pid) {
            plan.ns.own.insert(0, crate::state::ns::Kind::Pid);
        }
        if plan.ns.has(crate::state::ns::Kind::Pid) && !plan.files.dead_pids.is_empty() {
            return Err(prep(
                "pid namespace",
                "the tree holds /proc files of dead processes: their stand-ins cannot be made in a new pid namespace",
            ));
        }
        if let Some(ic) = &self.tcp {
            if !self.opts.tcp_established && !self.opts.tcp_close && !ic.closed {
                return Err(prep(
                    plan.set.path("files.img").display().to_string(),
                    format!(
                        "TCP connection {} (and {} more): restore established connections with --tcp-established \
                         (or --tcp-close to restore them closed)",
                        ic.conns[0].1,
                        ic.conns.len() - 1
                    ),
                ));
            }
        }
        plan.helpers = plan::helpers(&plan, self.opts.shell_job)?;
        self.check_mnt_net(&plan)?;
        self.cg = check_cgroups(&plan, &self.opts.cgroups)?;
        // Every inherited fd must be used: cryo takes an external network
        // namespace's (runc's extRootNetNS); anything else (a pipe or file
        // of the caller's in place of the dumped one) it cannot honour.
        let used = match &self.net_plan {
            Some(NetHow::External(k, _)) => Some(k.as_str()),
            _ => None,
        };
        for (k, &fd) in self.opts.inherit_fds.iter().filter(|(k, _)| Some(k.as_str()) != used) {
            // A pipe of the caller's in place of the dumped one (runc and
            // podman hand the container's stdio so: the key is the dumped
            // pipe's "pipe:[ID]", as CRIU names pipes).
            let ids: Vec<u32> = plan
                .files
                .of::<files::pipe::PipeFile>()
                .filter(|(_, p)| format!("pipe:[{}]", p.pipe_id) == *k)
                .map(|(id, _)| id)
                .collect();
            if ids.is_empty() {
                return Err(prep(
                    format!("--inherit-fd fd[{fd}]:{k}"),
                    "no file of the images has this key: cryo takes inherited fds for pipes (pipe:[ID]) and an \
                     external network namespace (the key of netns-N.img) only",
                ));
            }
            self.inherit_files.extend(ids.into_iter().map(|id| (id, fd)));
        }
        let eventfds = files::eventfd::ids(&plan.files);
        self.sidecar = crate::sidecar::load(&self.opts.dir, &plan.all_ids(), &eventfds)?;
        files::eventfd::mark_semaphores(&mut plan.files, &self.sidecar.eventfd_semaphore);
        files::inetsk::apply_sidecar(&mut plan.files, &self.sidecar)
            .map_err(|w| prep(plan.set.path(cryo_image::sidecar::FILE).display().to_string(), w))?;
        if !plan.locks.is_empty() && !self.opts.file_locks {
            return Err(prep(
                plan.set.path("filelocks.img").display().to_string(),
                "the images hold file locks: restore them with --file-locks",
            ));
        }
        if let Some(w) = clock_warning(&plan).filter(|_| plan.ns.time.is_none()) {
            eprintln!("cryo restore: warning: {w}");
        }
        mark("validated");
        // Prepare.
        self.stage = Stage::Prepare;
        self.prepare(plan)?;
        mark("prepared");
        // Fork.
        self.stage = Stage::Fork;
        self.fork_root()?;
        mark("forked");
        // Wait.
        self.stage = Stage::Wait;
        self.wait_ready()?;
        self.map_host_pids()?;
        self.dead = None;
        self.reap_helpers()?;
        mark("all tasks ready");
        // Every thread exists (at the barrier): CPU affinity from the sidecar.
        let affinity = self
            .sidecar
            .affinity
            .iter()
            .map(|(t, c)| (self.host_pid(*t), c.clone()))
            .collect();
        for w in crate::state::affinity::apply(&affinity)? {
            eprintln!("cryo restore: warning: {w}");
        }
        // Every task is in its cgroups: their limits and weights, before any runs.
        if let Some(cg) = &self.cg {
            cg.apply_props()?;
        }
        if fault() == Some("after-cgroups") {
            return Err(prep(
                "cgroups",
                "injected fault after the cgroups were made and joined (CRYO_FAULT)",
            ));
        }
        if let Some(g) = &self.opts.before_resume {
            (g.0)(self.root_pid()).map_err(RestoreError::Aborted)?;
        }
        if fault() == Some("stall-before-resume") {
            // Fault injection (tests): every task is at the barrier; wait to
            // be killed.
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        // Resume.
        self.stage = Stage::Resume;
        self.resume()?;
        if let Some(sock) = self.lazy_sock.take() {
            // The tree runs: the daemon may copy the rest in the background.
            lazy::client::send_finished(sock.as_raw_fd()).map_err(|e| prep("lazy-pages daemon", e))?;
        }
        mark("resumed");
        self.stage = Stage::Done;
        if let Some(cg) = &mut self.cg {
            cg.keep_created();
        }
        for p in std::mem::take(&mut self.linked) {
            let _ = std::fs::remove_file(p);
        }
        let env = self.env.as_ref().expect("env");
        let pages = env
            .plan
            .procs
            .iter()
            .filter_map(|p| p.mm.as_ref())
            .flat_map(|mm| &mm.pagemap.runs)
            .filter(|r| r.offset.is_some())
            .map(|r| r.nr_pages)
            .sum();
        Ok(Restored {
            root: self.root_pid(),
            pids: env.plan.procs.iter().map(|p| self.host_pid(p.pid)).collect(),
            threads: env.plan.procs.iter().map(|p| p.threads.len()).sum(),
            phases,
            total: t0.elapsed(),
            pages,
        })
    }

    /// The tree's mount and network namespaces: described and checked
    /// against this machine before anything exists.
    fn check_mnt_net(&mut self, plan: &Plan) -> Result<(), RestoreError> {
        use crate::state::netns;
        use crate::state::ns::Kind;
        if let Some(&id) = plan.ns.ids.get(&Kind::Net) {
            let name = format!("netns-{id}.img");
            // (netdev-N.img is the one a set without the namespace lacks: checked below.)
            let ns: Vec<cryo_image::pb::NetnsEntry> = if plan.set.path(&name).exists() {
                cryo_image::read_entries(plan.set.path(&name), "NETNS")?
            } else {
                Vec::new()
            };
            if let Some(key) = ns.first().and_then(|n| n.ext_key.clone()) {
                let Some(&fd) = self.opts.inherit_fds.get(&key) else {
                    return Err(prep(
                        plan.set.path(&name).display().to_string(),
                        format!(
                            "the tree's network namespace was external (key {key}): pass it with --inherit-fd fd[N]:{key}"
                        ),
                    ));
                };
                self.net_plan = Some(NetHow::External(key, fd));
                return self.check_mnt(plan);
            }
            if self.opts.empty_net {
                self.net_plan = Some(NetHow::Empty);
                return self.check_mnt(plan);
            }
            let name = format!("netdev-{id}.img");
            let devs: Vec<cryo_image::pb::NetDeviceEntry> = cryo_image::read_entries(plan.set.path(&name), "NETDEV")?;
            let name = format!("netns-{id}.img");
            let ns: Vec<cryo_image::pb::NetnsEntry> = cryo_image::read_entries(plan.set.path(&name), "NETNS")?;
            let p = netns::describe(id, &devs, ns.into_iter().next(), &self.opts.veth_pairs)
                .map_err(|e| prep("network namespace", e))?;
            netns::check_restore(&p).map_err(|e| prep("network namespace", e))?;
            self.net_plan = Some(NetHow::Images(Box::new(p)));
        }
        self.check_mnt(plan)
    }

    fn check_mnt(&mut self, plan: &Plan) -> Result<(), RestoreError> {
        use crate::state::mnt;
        use crate::state::ns::Kind;
        if let Some(&id) = plan.ns.ids.get(&Kind::Mnt) {
            let name = format!("mountpoints-{id}.img");
            let es: Vec<cryo_image::pb::MntEntry> = cryo_image::read_entries(plan.set.path(&name), "MNTS")?;
            let t = mnt::describe(&es).map_err(|e| prep(plan.set.path(&name).display().to_string(), e))?;
            mnt::check_restore(&t, &self.opts.dir, &self.opts.mnt).map_err(|e| prep("mount namespace", e))?;
            self.mnt_tree = Some(t);
        }
        Ok(())
    }

    /// Make the tree's network and mount namespaces (the first task enters them).
    fn make_mnt_net(&mut self, plan: &mut Plan) -> Result<Option<crate::state::mnt::MntNs>, RestoreError> {
        use crate::state::ns::Kind;
        use crate::state::{mnt, netns};
        use std::os::fd::AsRawFd;
        // A user namespace (and those it owns) or a time namespace: made by
        // a holder process first.
        let made = if crate::state::ns::holder::needed(&plan.ns) {
            crate::state::ns::holder::make(&plan.ns).map_err(|e| prep("namespaces", e))?
        } else {
            crate::state::ns::holder::Made::default()
        };
        let mut net = None;
        match &self.net_plan {
            Some(NetHow::Images(p)) => {
                let n = netns::make_ns(
                    p,
                    &self.opts.dir,
                    &self.opts.veth_pairs,
                    std::process::id(),
                    made.net.as_ref(),
                )
                .map_err(|e| prep("network namespace", e))?;
                net = Some(n.fd);
            }
            Some(NetHow::Empty) => net = Some(netns::make_empty().map_err(|e| prep("network namespace", e))?.fd),
            Some(NetHow::External(key, fd)) => {
                // Opened again through /proc: the same namespace, an fd of our own.
                let what = || format!("inherited fd {fd} ({key})");
                let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(|e| prep(what(), e))?;
                if !link.to_string_lossy().starts_with("net:[") {
                    return Err(prep(what(), format!("{} is not a network namespace", link.display())));
                }
                let f = std::fs::File::open(format!("/proc/self/fd/{fd}")).map_err(|e| prep(what(), e))?;
                net = Some(f);
            }
            None => {}
        }
        let mut m = None;
        if let Some(t) = &self.mnt_tree {
            let late = plan.ns.has(Kind::Pid);
            let ns = mnt::make_ns(
                t,
                &self.opts.dir,
                &self.opts.mnt,
                &|x| late && mnt::is_proc(x),
                net.as_ref(),
                made.mnt.as_ref(),
            )
            .map_err(|e| prep("mount namespace", e))?;
            m = Some(ns);
        }
        if let Some(n) = net {
            plan.ns.enter.push((Kind::Net, n.as_raw_fd()));
            self.ns_holders.push(n);
        }
        if let Some(ns) = &m {
            let f = ns.fd.try_clone().map_err(|e| prep("mount namespace", e))?;
            plan.ns.enter.push((Kind::Mnt, f.as_raw_fd()));
            self.ns_holders.push(f);
        }
        for (k, f) in made.enter {
            plan.ns.enter.push((k, f.as_raw_fd()));
            self.ns_holders.push(f);
        }
        self.user_ns = made.user;
        Ok(m)
    }

    fn prepare(&mut self, mut plan: Plan) -> Result<(), RestoreError> {
        let mut mntns = self.make_mnt_net(&mut plan)?;
        let late = mntns.as_mut().map(|m| std::mem::take(&mut m.late)).unwrap_or_default();
        let new_pidns = plan.ns.has(crate::state::ns::Kind::Pid);
        if !new_pidns {
            // In a new pid namespace every pid is free.
            check_pids_free(&plan, self.opts.pid_wait)?;
        }
        let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| prep("/proc/self/maps", e))?;
        let maps = layout::parse_maps(&maps).map_err(|e| prep("/proc/self/maps", e))?;
        let vdso = maps.iter().find(|m| m.name == "[vdso]").map(|m| m.span);
        let kspans: Vec<layout::Span> = maps
            .iter()
            .filter(|m| layout::is_kernel_map(&m.name))
            .map(|m| m.span)
            .collect();
        let vdso_jump =
            check_vdso(&plan, vdso)? || !same_kernel_layout(&plan, vdso, &kspans) || fault() == Some("vdso-jump-table");

        // The control page: free in the engine and in every final layout.
        let mut busy: Vec<layout::Span> = maps.iter().map(|m| m.span).collect();
        for p in &plan.procs {
            if let Some(mm) = &p.mm {
                busy.extend(
                    mm.vmas
                        .iter()
                        .map(|v| layout::Span::new(v.start, v.end.min(layout::TASK_SIZE))),
                );
            }
        }
        let at = layout::find_hole(&busy, RST_CTL_SIZE as u64, 0x10_0000, 0x7fe0_0000_0000)
            .ok_or_else(|| prep("control page", "no free address"))?;
        let ctl = crate::sys::mem::Area::shared_ctl(at).map_err(|e| prep("control page", e))?;

        // Shared objects, all above every fd number the tasks use.
        let max_fd = plan.max_fd();
        let exe_fd_target = max_fd + 1;
        let uffd_target = max_fd + 2;
        let base = max_fd + 3;
        let lazy = match &self.opts.lazy_pages {
            Some(_) if new_pidns => {
                return Err(prep(
                    "--lazy-pages",
                    "a tree restored into a pid namespace of its own is not restored lazily: the lazy-pages \
                     watchdog finds the processes to kill, should the daemon fail, by their pids in the images",
                ))
            }
            Some(work) => {
                let sock = lazy::client::connect(work).map_err(|e| prep("--lazy-pages", e))?;
                // Kept past the pool (closed at resume): the end of the
                // restore is sent on it.
                let sock = crate::sys::dup_above(&sock, base).map_err(|e| prep("fd pool", e))?;
                let n = sock.as_raw_fd();
                self.lazy_sock = Some(sock);
                Some(LazyEnv { sock: n, uffd_target })
            }
            None => None,
        };
        // The namespace fds the first task enters, out of the tree's fd numbers.
        for (h, e) in std::mem::take(&mut self.ns_holders)
            .into_iter()
            .zip(plan.ns.enter.iter_mut())
        {
            e.1 = self.keep(OwnedFd::from(h), base)?;
        }
        if let Some(u) = self.user_ns.take() {
            plan.ns.user_fd = Some(self.keep(OwnedFd::from(u), base)?);
        }
        let user_from_start = crate::state::ns::holder::user_from_start(&plan.ns);
        // The mounts the first task makes, with the detached ones' fds.
        for (mut m, fd) in late {
            if let Some(fd) = fd {
                m.how = crate::state::mnt::LateHow::Detached {
                    fd: self.keep(fd, base)?,
                };
            }
            plan.ns.late_mounts.push(m);
        }
        // The cgroups first (the tree's files may be in a cgroup file system):
        // made (and remembered for an abort), each set's cgroup.procs open
        // for the tasks.
        let mut join = crate::state::cgroup::Join::default();
        if let Some(cg) = &mut self.cg {
            join.root_set = cg.root_set();
            let (sets, cgns) = cg.make()?;
            for (id, fds) in sets {
                let mut v = Vec::new();
                for fd in fds {
                    v.push(self.keep(fd, base)?);
                }
                join.sets.insert(id, v);
            }
            for fd in cgns {
                join.cgns.push(self.keep(fd, base)?);
            }
        }
        let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| prep("error pipe", e))?;
        let err_w = self.keep(err_w, base)?;
        self.err_r = Some(err_r);
        let mut fd_pool = HashMap::new();
        let mut map_pool = HashMap::new();
        let used: std::collections::BTreeSet<u32> = plan
            .procs
            .iter()
            .flat_map(|p| p.fds.iter().map(|f| f.file_id))
            .collect();
        // Stand-ins for the dead processes whose /proc files the tree holds,
        // alive while the files are opened below and the tasks enter their
        // cwd, gone once every task is ready (so /proc/<pid> is a dead
        // process's again).
        self.dead = Some(DeadPids::make(&plan.files.dead_pids, self.opts.pid_wait)?);
        // The tree's sockets are made in its network namespace.
        let net_entered = match plan.ns.enter.iter().find(|(k, _)| *k == crate::state::ns::Kind::Net) {
            Some((_, fd)) => {
                let f = std::fs::File::open(format!("/proc/self/fd/{fd}")).map_err(|e| prep("network namespace", e))?;
                Some(crate::state::netns::enter(&f).map_err(|e| prep("network namespace", e))?)
            }
            None => None,
        };
        // The tree's files are opened by their paths in its mount namespace
        // (cryo's /proc stays reachable for what needs it).
        let _ = crate::sys::files::proc_root();
        let mut cx = files::RestoreCx::new(&plan.files, self.opts.shell_job);
        cx.tcp_close = self.opts.tcp_close;
        // Memfd and shared memory inodes first: their pages are read by the
        // images directory's path, which the mount namespace lacks.
        if mntns.is_some() {
            files::memfd::make_inodes(&mut cx)?;
        }
        let entered = match &mntns {
            Some(ns) => Some(crate::state::mnt::enter(ns).map_err(|e| prep("mount namespace", e))?),
            None => None,
        };
        // Terminals first, all together (pairs, sessions, queued data).
        let mut ctty = HashMap::new();
        for (sid, (fd, pgrp)) in files::tty::restore_used(&mut cx, &used)? {
            ctty.insert(sid, (self.keep(fd, base)?, pgrp));
        }
        // The caller's own fds in place of dumped files (inherit_fd): a
        // duplicate of our fd, the same open file.
        if !self.inherit_files.is_empty() {
            let me = crate::sys::pidfd_open(std::process::id() as i32).map_err(|e| prep("pidfd of cryo", e))?;
            for &(id, fd) in &self.inherit_files.clone() {
                let f = crate::sys::pidfd_getfd(me.as_raw_fd(), fd)
                    .map_err(|e| prep(format!("inherited fd {fd} (file id {id})"), e))?;
                fd_pool.insert(id, self.keep(f, base)?);
            }
        }
        // Every file a task uses, by its kind (the registry's).
        for id in used {
            if fd_pool.contains_key(&id) {
                continue;
            }
            if plan.files.get(id).is_none() {
                return Err(prep(format!("file id {id}"), "not in files.img (engine bug)"));
            }
            // None: opened by the task itself once every task exists.
            if let Some(fd) = cx.open(id)? {
                fd_pool.insert(id, self.keep(fd, base)?);
            }
        }
        cx.end_fds();
        // Files mapped by VMAs, and the exe files.
        let mut mapped: Vec<(u32, bool)> = Vec::new();
        for p in &plan.procs {
            if let Some(mm) = &p.mm {
                mapped.push((mm.exe_file, false));
                for v in &mm.vmas {
                    match v.kind {
                        VmaKind::FilePrivate(id) => mapped.push((id, false)),
                        VmaKind::FileShared(id) => mapped.push((id, v.prot & libc::PROT_WRITE as u32 != 0)),
                        _ => {}
                    }
                }
            }
        }
        mapped.sort();
        mapped.dedup_by(|a, b| {
            a.0 == b.0 && {
                b.1 |= a.1;
                true
            }
        });
        for (id, write) in mapped {
            let f = plan
                .files
                .get(id)
                .ok_or_else(|| prep(format!("mapped file id {id}"), "not a regular file"))?;
            let fd = f.map_fd(id, write, fd_pool.get(&id).copied(), &mut cx)?;
            map_pool.insert(id, self.keep(fd, base)?);
        }
        // cwd and root: O_PATH fds the tasks enter (a deleted directory
        // comes back as a ghost directory).
        let dirs: std::collections::BTreeSet<u32> = plan
            .procs
            .iter()
            .flat_map(|p| p.cwd.into_iter().chain(p.root))
            .collect();
        for id in dirs {
            if fd_pool.contains_key(&id) {
                continue;
            }
            let Some(r) = plan.files.get_as::<files::reg::RegFile>(id) else {
                continue;
            };
            let fd = r.as_dir().open(&plan.files, &mut cx.remaps, id)?;
            fd_pool.insert(id, self.keep(fd, base)?);
        }
        self.linked = cx.remaps.take_linked();
        drop(cx);
        drop(entered);
        drop(net_entered);
        drop(mntns);
        let plan_ns_flags = plan.ns.clone_flags();
        let images_fd = match &self.mnt_tree {
            Some(_) => {
                let d = crate::sys::files::open(
                    &self.opts.dir.display().to_string(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
                .map_err(|e| prep(self.opts.dir.display().to_string(), e))?;
                Some(self.keep(d, base)?)
            }
            None => None,
        };
        let plan_init = new_pidns && plan.root().pid != 1;
        let cgns = plan.ns.has(crate::state::ns::Kind::Cgroup);
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .map(|s| !s.contains("[never]"))
            .unwrap_or(false);
        self.env = Some(TaskEnv {
            plan,
            blob: &crate::parasite::blob::RESTORER,
            ctl,
            err_w,
            fd_pool,
            map_pool,
            exe_fd_target,
            xsave: sigframe::XsaveLayout::host(),
            vdso,
            vdso_jump,
            shell_job: self.opts.shell_job,
            ctty,
            pid_wait: self.opts.pid_wait,
            thp,
            ns_flags: plan_ns_flags,
            init: plan_init,
            images_fd,
            cg: join,
            cgns,
            lazy,
            user_from_start,
            sibling: self.opts.sibling,
        });
        Ok(())
    }

    /// Move an fd to a number >= base and keep it until the end.
    fn keep(&mut self, fd: OwnedFd, base: RawFd) -> Result<RawFd, RestoreError> {
        let owned = crate::sys::dup_above(&fd, base).map_err(|e| prep("fd pool", e))?;
        let n = owned.as_raw_fd();
        self.pool.push(owned);
        Ok(n)
    }

    fn fork_root(&mut self) -> Result<(), RestoreError> {
        let env = self.env.as_ref().expect("prepared");
        let me = std::process::id() as i32;
        let root = env.plan.root();
        if env.sibling && env.plan.helpers.iter().any(|h| h.parent == 0) {
            return Err(prep(
                format!("pid {}", root.pid),
                "its session or process group leader was not dumped (a helper task must hold it): restoring it \
                 as a sibling (criu's --restore-sibling, rst_sibling) is not supported",
            ));
        }
        let old = rsys::block_all_signals();
        // Helpers for sessions/groups whose leader is gone come first; the
        // root is forked by cryo or (CLONE_PARENT) by its session helper.
        let r = if env.ns_flags & libc::CLONE_NEWPID as u64 != 0 {
            // In a new pid namespace: the first task (the root as its init,
            // or cryo's init) is cloned into the new namespaces and fills
            // them before it forks anything. Without one, the root is cloned
            // into them (task::fork_items) and fills them itself.
            task::fork_in_ns(env, me).map(Some)
        } else {
            task::fork_items(env, 0, me, &mut self.helpers, None).map(|_| None)
        };
        rsys::set_sigmask(old);
        match r {
            // The root shares no table with cryo.
            Ok(first) => {
                let first = first.unwrap_or(root.pid);
                self.root = Some(first);
                // A sibling (forked by cryo itself: no helper) waits for the
                // engine at its start or at the barrier, so its pid is still
                // its own.
                if env.sibling {
                    self.root_fd =
                        Some(crate::sys::pidfd_open(first).map_err(|e| prep(format!("pidfd of pid {first}"), e))?);
                }
                Ok(())
            }
            Err(e) => Err(RestoreError::Sys(format!("creating pid {}: {}", root.pid, e.0))),
        }
    }

    /// Reap the helpers cryo forked (they exit once every group is joined).
    fn reap_helpers(&mut self) -> Result<(), RestoreError> {
        for pid in std::mem::take(&mut self.helpers) {
            let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            if !matches!(st, Ok(nix::sys::wait::WaitStatus::Exited(_, 0))) {
                return Err(self.task_error().unwrap_or(RestoreError::Died {
                    pid,
                    how: "session/group helper failed".into(),
                }));
            }
        }
        Ok(())
    }

    fn ctl(&self) -> &RstCtl {
        self.env.as_ref().expect("prepared").ctl.rst_ctl()
    }

    fn task_error(&self) -> Option<RestoreError> {
        let c = self.ctl();
        let pid = c.err_pid.load(Ordering::SeqCst);
        if pid == 0 {
            return None;
        }
        // A message from the engine side of a task, if any.
        if let Some(r) = &self.err_r {
            let _ = nix::fcntl::fcntl(r, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
            let mut s = String::new();
            if let Ok(mut f) = r.try_clone().map(std::fs::File::from) {
                let _ = f.read_to_string(&mut s);
            }
            if !s.is_empty() {
                return Some(RestoreError::Task(s.trim_end().to_string()));
            }
        }
        let stage = match c.err_stage.load(Ordering::SeqCst) {
            STAGE_UNMAP => "unmapping the engine",
            STAGE_REMAP => "moving memory into place",
            STAGE_VDSO => "moving the vdso",
            STAGE_MM => "PR_SET_MM_MAP",
            STAGE_THREADS => "creating threads",
            STAGE_TIMERS => "timers",
            STAGE_SIGNALS => "pending signals",
            STAGE_CREDS => "credentials",
            STAGE_ARGS => "checking its arguments",
            STAGE_THREAD_SETUP => "per-thread setup",
            STAGE_SECCOMP => "installing seccomp filters",
            _ => "an unknown stage",
        };
        // The restorer records the failing thread's id: name its process too.
        let env = self.env.as_ref().expect("prepared");
        let (pid, thread) = match env
            .plan
            .procs
            .iter()
            .find(|p| p.pid != pid && p.threads.iter().any(|t| t.tid == pid))
        {
            Some(p) => (p.pid, format!(" thread {pid}")),
            None => (pid, String::new()),
        };
        Some(RestoreError::Restorer {
            pid,
            thread,
            stage,
            err: std::io::Error::from_raw_os_error((-c.err_code.load(Ordering::SeqCst)) as i32),
        })
    }

    fn wait_ready(&mut self) -> Result<(), RestoreError> {
        let env = self.env.as_ref().expect("prepared");
        let want: u32 = env.plan.procs.iter().map(|p| p.threads.len().max(1) as u32).sum();
        let deadline = Instant::now() + self.opts.timeout;
        let root = self.root.expect("root");
        loop {
            let c = self.ctl();
            let ready = &c.ready;
            let v = ready.load(Ordering::SeqCst);
            if let Some(e) = self.task_error() {
                return Err(e);
            }
            if v >= want {
                return Ok(());
            }
            if let Some(how) = self.first_exited(root) {
                return Err(self.task_error().unwrap_or(RestoreError::Died {
                    pid: env.plan.root().pid,
                    how,
                }));
            }
            if Instant::now() > deadline {
                return Err(RestoreError::Timeout(self.opts.timeout));
            }
            rsys::futex_wait(ready, v, 50).map_err(|e| RestoreError::Sys(format!("futex: {e}")))?;
        }
    }

    fn resume(&mut self) -> Result<(), RestoreError> {
        let env = self.env.as_ref().expect("prepared");
        let want: u32 = env.plan.procs.iter().map(|p| p.threads.len().max(1) as u32).sum();
        // Seize every thread at the barrier, to take the restorer's mapping
        // out once they have left it (see finish.rs); stopped tasks are put
        // in their group stop after that.
        let procs: Vec<finish::Target> = env
            .plan
            .procs
            .iter()
            .filter(|p| p.state == plan::TASK_ALIVE || p.state == plan::TASK_STOPPED)
            .map(|p| finish::Target {
                pid: self.host_pid(p.pid),
                tids: p.threads.iter().map(|t| self.host_pid(t.tid)).collect(),
                stop_signo: if p.state == plan::TASK_STOPPED {
                    p.stop_signo as i32
                } else {
                    0
                },
            })
            .collect();
        let seized = if fault() == Some("keep-restorer") {
            None
        } else {
            let seccomp = env
                .plan
                .procs
                .iter()
                .flat_map(|p| &p.threads)
                .any(|t| t.seccomp != plan::Seccomp::Off);
            Some(finish::seize(&procs, seccomp))
        };
        let seized = match seized {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                eprintln!("cryo restore: warning: the restorer stays mapped in the restored tasks: {e}");
                None
            }
            None => None,
        };
        // Leases being broken, now that every task holds its leases again:
        // their breaks start again (before the owners are set, see there).
        let rebreaks = rebreaks(&env.plan, &env.fd_pool)?;
        files::lock::break_again(&rebreaks).map_err(|e| prep("leases being broken", e))?;
        // File owners, now that every task exists (an owner may be any of them).
        let owners: Vec<(RawFd, cryo_image::pb::FownEntry)> = env
            .plan
            .files
            .fown
            .iter()
            .filter_map(|(id, f)| env.fd_pool.get(id).map(|&fd| (fd, *f)))
            .map(|(fd, mut f)| {
                // An owner pid of the tree, as the engine sees it (a process
                // group: its leader's).
                if f.pid > 0 {
                    f.pid = self.host_pid(f.pid as i32) as u32;
                }
                (fd, f)
            })
            .collect();
        files::fown::apply(&owners).map_err(|e| prep("file owners (F_SETOWN_EX)", e))?;
        // Every task is ready: TCP connections leave repair mode, the
        // network lock goes (before the tasks run: their first sends go out).
        if let Some(ic) = &self.tcp {
            files::tcp::end_restore_set(ic, self.opts.tcp_close, |id| env.fd_pool.get(&id).copied())
                .map_err(|e| prep("TCP connections", e))?;
            self.tcp = None;
        }
        let env = self.env.as_ref().expect("prepared");
        let c = self.ctl();
        c.go.store(if seized.is_some() { GO_RUN_TRACED } else { GO_RUN }, Ordering::SeqCst);
        rsys::futex_wake(&c.go);
        if let Some(s) = seized {
            let mut slots = std::collections::HashMap::new();
            for (p, cell) in env.plan.procs.iter().zip(&c.slots) {
                // Written by the tasks before they got ready.
                let slot = cell.load();
                if slot.pid == p.pid {
                    slots.insert(self.host_pid(p.pid), slot);
                }
            }
            // The tasks are restored by now; failing to unmap the restorer
            // only leaves it mapped.
            if let Err(e) = s.finish(&slots) {
                eprintln!("cryo restore: warning: the restorer may stay mapped in the restored tasks: {e}");
            }
        }
        let deadline = Instant::now() + self.opts.timeout;
        loop {
            let done = &c.done;
            let v = done.load(Ordering::SeqCst);
            if v >= want {
                break;
            }
            if let Some(e) = self.task_error() {
                return Err(e);
            }
            if Instant::now() > deadline {
                return Err(RestoreError::Timeout(self.opts.timeout));
            }
            rsys::futex_wait(done, v, 50).map_err(|e| RestoreError::Sys(format!("futex: {e}")))?;
        }
        self.pool.clear();
        Ok(())
    }

    /// Kill whatever was created. Tasks not yet restored die with their
    /// parent (PR_SET_PDEATHSIG), so killing the root takes the tree.
    fn abort(&mut self) {
        self.stage = Stage::Abort;
        self.dead = None;
        if let Some(ic) = self.tcp.take() {
            files::tcp::abort_restore(&ic);
        }
        if let Some(env) = &self.env {
            let c = self.ctl();
            c.go.store(GO_ABORT, Ordering::SeqCst);
            rsys::futex_wake(&c.go);
            let _ = env;
        }
        if let (true, Some(fd)) = (self.opts.sibling, self.root_fd.take()) {
            // Not ours to reap: the caller (our parent) reaps it.
            let _ = crate::sys::pidfd_send_signal(&fd, libc::SIGKILL);
            self.root = None;
        }
        for pid in self.root.take().into_iter().chain(std::mem::take(&mut self.helpers)) {
            // Only a child of ours still running is killed: the root is
            // forked by a helper when it has one, and may not exist.
            use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
            let p = nix::unistd::Pid::from_raw(pid);
            if let Ok(WaitStatus::StillAlive) = waitpid(p, Some(WaitPidFlag::WNOHANG)) {
                let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(p, None);
            }
        }
        self.pool.clear();
        // The tasks are gone (or going): the cgroups the restore made go too.
        if let Some(cg) = &mut self.cg {
            cg.remove_created();
        }
        self.lazy_sock = None;
    }

    /// How the first task ended, if it did: through waitpid when it is our
    /// child, through its pidfd when it is a sibling (it is then a zombie
    /// for our parent to reap).
    fn first_exited(&self, root: i32) -> Option<String> {
        if !self.opts.sibling {
            return exited(root);
        }
        let fd = self.root_fd.as_ref()?;
        match rsys::poll_in(fd.as_raw_fd(), 0) {
            Ok(true) => Some("exited".into()),
            _ => None,
        }
    }

    /// The root's pid once forked.
    pub fn root(&self) -> Option<i32> {
        self.root
    }

    /// A pid of the images as the engine sees it.
    fn host_pid(&self, pid: i32) -> i32 {
        self.host.get(&pid).copied().unwrap_or(pid)
    }

    /// The tree root's pid as the engine sees it.
    fn root_pid(&self) -> i32 {
        self.root_host.or(self.root).expect("root")
    }

    /// In a new pid namespace: every restored task's pid as the engine
    /// sees it, from /proc (each task is at the barrier, so all exist).
    fn map_host_pids(&mut self) -> Result<(), RestoreError> {
        let env = self.env.as_ref().expect("prepared");
        if env.ns_flags & libc::CLONE_NEWPID as u64 == 0 {
            return Ok(());
        }
        let first = self.root.expect("root");
        self.host = crate::state::ns::host_pids(first).map_err(|e| prep("pid namespace", e))?;
        let root = env.plan.root().pid;
        self.root_host = Some(
            self.host
                .get(&root)
                .copied()
                .ok_or_else(|| prep("pid namespace", format!("the root {root} is not in it")))?,
        );
        Ok(())
    }
}

/// cgroup.img against this machine and the mode, before anything exists
/// (state::cgroup::plan).
fn check_cgroups(
    plan: &Plan,
    opts: &crate::state::cgroup::CgOpts,
) -> Result<Option<crate::state::cgroup::CgPlan>, RestoreError> {
    let file = plan.set.path("cgroup.img").display().to_string();
    for p in &plan.procs {
        if let Some(t) = p.threads.iter().find(|t| t.cg_set != p.cg_set) {
            return Err(prep(
                plan.set.path(&format!("core-{}.img", t.tid)).display().to_string(),
                format!(
                    "thread {} of pid {} is in cgroup set {}, its process in {}: threads in cgroups of their own are not supported",
                    t.tid, p.pid, t.cg_set, p.cg_set
                ),
            ));
        }
    }
    let img = if plan.set.has("cgroup.img") {
        plan.set
            .entries::<cryo_image::pb::CgroupEntry>("cgroup.img", "CGROUP")?
            .into_iter()
            .next()
    } else {
        None
    };
    let root_set = plan.set.inventory()?.root_cg_set.unwrap_or(0);
    let used: Vec<(i32, u32)> = plan.procs.iter().map(|p| (p.pid, p.cg_set)).collect();
    let cgns = plan.ns.has(crate::state::ns::Kind::Cgroup).then(|| plan.root().cg_set);
    Ok(crate::state::cgroup::plan(
        img.as_ref(),
        &file,
        root_set,
        &used,
        cgns,
        opts,
    )?)
}

/// The dumped CLOCK_MONOTONIC (timens-0.img) is ahead of the running one
/// (images from another boot or machine): the restored tasks, in the
/// restoring time namespace, see it jump back.
fn clock_warning(plan: &Plan) -> Option<String> {
    let [(sec, nsec), _] = plan.dumped_clocks?;
    let dumped = Duration::new(sec, nsec as u32);
    let (now_s, now_ns) = crate::sys::clock_gettime(libc::CLOCK_MONOTONIC);
    let now = Duration::new(now_s, now_ns as u32);
    (dumped > now).then(|| {
        format!(
            "{}: the set was dumped at CLOCK_MONOTONIC {:.3} s, it is {:.3} s now: the restored tasks' \
             monotonic and boot-time clocks go back by {:.3} s (restoring into a time namespace is not supported)",
            plan.set.path("timens-0.img").display(),
            dumped.as_secs_f64(),
            now.as_secs_f64(),
            (dumped - now).as_secs_f64()
        )
    })
}

/// Fault injection for the failure tests (criu has CRIU_FAULT): the value
/// of CRYO_FAULT, read once.
pub(crate) fn fault() -> Option<&'static str> {
    static F: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    F.get_or_init(|| std::env::var("CRYO_FAULT").ok()).as_deref()
}

/// How a child exited, if it did (without reaping a live one).
fn exited(pid: i32) -> Option<String> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(format!("killed by signal {}", sig as i32)),
        Ok(WaitStatus::Exited(_, code)) => Some(format!("exit status {code}")),
        _ => None,
    }
}

/// fork with a pid, waiting (bounded) while the pid is still taken. With
/// `same_parent` the child is the caller's sibling (CLONE_PARENT).
pub(crate) fn fork_retry(pid: i32, wait: Duration, same_parent: bool) -> std::io::Result<Forked> {
    fork_retry_flags(pid, wait, same_parent, 0)
}

/// [`fork_retry`] with clone flags for a child of the caller (CLONE_FILES).
pub(crate) fn fork_retry_flags(pid: i32, wait: Duration, same_parent: bool, flags: u64) -> std::io::Result<Forked> {
    let deadline = Instant::now() + wait;
    loop {
        let r = if same_parent {
            rsys::fork_sibling_with_pid_flags(pid, flags)
        } else {
            rsys::fork_with_pid_flags(pid, flags)
        };
        match r {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                return Err(std::io::Error::new(e.kind(), format!("pid {pid} is in use")));
            }
            r => return r,
        }
    }
}

/// Processes with the pids of dead processes (CRIU's PROCFS remaps): each
/// waits until killed and reaped on drop.
struct DeadPids(Vec<i32>);

impl DeadPids {
    fn make(pids: &[i32], wait: Duration) -> Result<DeadPids, RestoreError> {
        let mut made = DeadPids(Vec::new());
        for &pid in pids {
            match fork_retry(pid, wait, false).map_err(|e| prep(format!("stand-in for dead pid {pid}"), e))? {
                Forked::Child => {
                    // Only async-signal-safe calls in the child of a fork.
                    let _ = rsys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as u64, 0, 0, 0);
                    loop {
                        nix::unistd::pause();
                    }
                }
                Forked::Parent(p) => made.0.push(p),
            }
        }
        Ok(made)
    }
}

impl Drop for DeadPids {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let p = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(p, None);
        }
    }
}

fn pid_in_use(pid: i32) -> Option<String> {
    // Signal 0 only checks for existence.
    let r = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None);
    if matches!(r, Ok(()) | Err(nix::errno::Errno::EPERM)) {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|s| format!(" by '{}'", s.trim()))
            .unwrap_or_default();
        return Some(comm);
    }
    None
}

/// Every pid/tid of the plan must be free; wait a little for zombies of a
/// just-killed tree to be reaped.
fn check_pids_free(plan: &Plan, wait: Duration) -> Result<(), RestoreError> {
    let start = Instant::now();
    for id in plan.all_ids().into_iter().chain(plan.helpers.iter().map(|h| h.pid)) {
        loop {
            match pid_in_use(id) {
                None => break,
                Some(mut by) if start.elapsed() >= wait => {
                    if let Some(h) = plan.helpers.iter().find(|h| h.pid == id) {
                        // A stand-in for a leader that was not dumped: most often the shell the
                        // program was started from, still running.
                        by.push_str(&format!(
                            "; it is the {} leader of the dumped tree, which was not in the dump \
                             (a program started from a shell: restore with -j/--shell-job)",
                            if h.session { "session" } else { "process group" }
                        ));
                    }
                    return Err(RestoreError::PidBusy {
                        pid: id,
                        by,
                        waited: start.elapsed(),
                    });
                }
                Some(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    Ok(())
}

/// The dumped vdso must be the running kernel's (same symbols at the same
/// offsets), since the running one is moved to the dumped place.
fn check_vdso(plan: &Plan, vdso: Option<layout::Span>) -> Result<bool, RestoreError> {
    let Some(cur) = vdso else { return Ok(false) };
    let cur_bytes = crate::sys::mem::read_self(cur.start, cur.len() as usize).map_err(|e| prep("running vdso", e))?;
    let cur_syms = vdso_symbols(&cur_bytes).map_err(|e| prep("running vdso", e))?;
    let mut jump = false;
    for p in &plan.procs {
        let Some(mm) = &p.mm else { continue };
        let Some(v) = mm.vmas.iter().find(|v| v.kind == VmaKind::Vdso) else {
            continue;
        };
        let Some(bytes) = read_dumped(mm, v.start, (v.end - v.start) as usize) else {
            continue; // not dumped: nothing to compare, trust the layout check
        };
        if bytes == cur_bytes {
            continue;
        }
        if bytes.len() != cur_bytes.len() {
            jump = true;
        }
        let syms = vdso_symbols(&bytes).map_err(|e| prep(format!("pid {}: dumped vdso", p.pid), e))?;
        if syms != cur_syms {
            // Every dumped symbol must exist in the running vdso to jump to.
            let names: std::collections::HashSet<&str> = cur_syms.iter().map(|(n, _)| n.as_str()).collect();
            if let Some((missing, _)) = syms.iter().find(|(n, _)| !names.contains(n.as_str())) {
                return Err(prep(
                    format!("pid {}: vdso", p.pid),
                    format!("the running kernel's vdso has no {missing}"),
                ));
            }
            jump = true;
        }
    }
    Ok(jump)
}

/// Whether the running vvar*/vdso mappings have the dumped layout (same
/// size, vdso at the same offset), so that they can simply be moved.
fn same_kernel_layout(plan: &Plan, vdso: Option<layout::Span>, cur: &[layout::Span]) -> bool {
    let Some(cv) = vdso else { return true };
    let (clo, chi) = (
        cur.iter().map(|s| s.start).min().unwrap_or(cv.start),
        cur.iter().map(|s| s.end).max().unwrap_or(cv.end),
    );
    plan.procs.iter().filter_map(|p| p.mm.as_ref()).all(|mm| {
        let k: Vec<&plan::Vma> = mm
            .vmas
            .iter()
            .filter(|v| matches!(v.kind, VmaKind::Vdso | VmaKind::Vvar))
            .collect();
        let Some(dv) = k.iter().find(|v| v.kind == VmaKind::Vdso) else {
            return true;
        };
        let dlo = k.iter().map(|v| v.start).min().unwrap_or(dv.start);
        let dhi = k.iter().map(|v| v.end).max().unwrap_or(dv.end);
        dhi - dlo == chi - clo && dv.start - dlo == cv.start - clo && dv.end - dv.start == cv.len()
    })
}

/// Dumped memory at `addr` if all of it is in one present run.
fn read_dumped(mm: &crate::state::mm::Mm, addr: u64, len: usize) -> Option<Vec<u8>> {
    let pm = &mm.pagemap;
    let i = pm.runs.partition_point(|r| r.end() <= addr);
    let r = pm.runs.get(i).filter(|r| r.vaddr <= addr)?;
    let pages = mm.pages_files.get(mm.run_file.get(i).copied().unwrap_or(0))?;
    let off = r.offset? + (addr - r.vaddr);
    if addr + len as u64 > r.end() {
        return None;
    }
    let f = std::fs::File::open(pages).ok()?;
    let mut buf = vec![0u8; len];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, off).ok()?;
    Some(buf)
}

/// (name, offset) of the dynamic symbols of a vdso image.
pub fn vdso_symbols(bytes: &[u8]) -> Result<Vec<(String, u64)>, String> {
    let elf = goblin::elf::Elf::parse(bytes).map_err(|e| e.to_string())?;
    let mut v: Vec<(String, u64)> = elf
        .dynsyms
        .iter()
        .filter(|s| s.st_value != 0)
        .filter_map(|s| elf.dynstrtab.get_at(s.st_name).map(|n| (n.to_string(), s.st_value)))
        .collect();
    v.sort();
    Ok(v)
}

/// stats-restore in `dir`, as criu writes it (a STATS image with a
/// restore_stats_entry): times in microseconds, forking_time the fork of
/// the tree, restore_time the whole restore; cryo compares no pages and
/// skips none for copy-on-write.
fn write_stats(dir: &std::path::Path, r: &Restored) -> Result<(), RestoreError> {
    use cryo_image::pb;
    let us = |d: Duration| d.as_micros().min(u32::MAX as u128) as u32;
    let forking = r
        .phases
        .iter()
        .find(|(n, _)| n == "forked")
        .map_or(Duration::ZERO, |p| p.1);
    let entry = pb::StatsEntry {
        dump: None,
        restore: Some(pb::RestoreStatsEntry {
            pages_compared: 0,
            pages_skipped_cow: 0,
            forking_time: us(forking),
            restore_time: us(r.total),
            pages_restored: Some(r.pages),
        }),
    };
    let path = dir.join("stats-restore");
    cryo_image::write_entries(&path, "STATS", &[entry])
        .map_err(|e| RestoreError::Sys(format!("{}: {e}", path.display())))
}

/// Restore and, unless detached, wait for the root; returns the exit code
/// cryo should exit with. `restored` is told what was restored as soon as
/// the tree runs (before the wait).
pub fn restore(opts: RestoreOpts, restored: impl FnOnce(&Restored)) -> Result<i32, RestoreError> {
    let detach = opts.detach;
    let sibling = opts.sibling;
    let pidfile = opts.pidfile.clone();
    let stats_dir = opts.work_dir.clone();
    let mut ctx = RestoreCtx::new(opts);
    let r = ctx.run()?;
    // The tree runs already: a stats file that cannot be written is a warning.
    if let Some(Err(e)) = stats_dir.map(|d| write_stats(&d, &r)) {
        eprintln!("cryo restore: warning: {e}");
    }
    restored(&r);
    if let Some(pf) = pidfile {
        std::fs::write(&pf, format!("{}\n", r.root))
            .map_err(|e| RestoreError::Sys(format!("{}: {e}", pf.display())))?;
    }
    if detach || sibling {
        // A sibling is our parent's child: our parent waits for it.
        return Ok(0);
    }
    Ok(
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(r.root), None) {
            Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => code,
            // As the status 0 of a failed waitpid read before.
            _ => 0,
        },
    )
}
