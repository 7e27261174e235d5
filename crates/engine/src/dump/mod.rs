//! `cryo dump`: freeze a live process tree from outside and write a
//! CRIU 4.2-compatible image set.
//!
//! Order: refuse what we cannot dump (before anything is written), freeze,
//! collect and write every per-process image, then the shared images, and
//! inventory.img last (fsync'd). On failure every task is released as it
//! was, the parasite is removed, and the images written so far are deleted.

pub mod core;
pub mod freeze;
mod live;
pub mod mem;
mod pages;
pub mod predump;
pub mod track;

use crate::files::{reg, FdCtx, FileError, FileTable};
use crate::parasite::{self, Parasite, ParasiteError};
use crate::proc::{self, Vma};
use crate::ptrace::PtraceError;
use crate::state::mm::{self, MapKind};
use cryo_image::{pb, ImageError, ImageWriter};
use freeze::{FreezeError, FrozenProc, FrozenTree};
use pages::{check_room, drain_pending, dump_pages, scan_and_splice, scan_pages, PendingPages, PipePool};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options of one dump (criu's names in the CLI).
#[derive(Clone, Debug)]
pub struct DumpOpts {
    pub pid: i32,
    pub dir: PathBuf,
    pub leave_running: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    /// --skip-in-flight: connections a listener has not accepted yet are left out.
    pub skip_in_flight: bool,
    pub pages: PageReader,
    /// Biggest deleted-but-open file saved as a ghost (criu's --ghost-limit).
    pub ghost_limit: u64,
    /// Ghost data extents from FS_IOC_FIEMAP (criu's --ghost-fiemap, the default).
    pub ghost_fiemap: bool,
    /// Link remaps for deleted files still linked elsewhere (criu's --link-remap).
    pub link_remap: bool,
    /// Established TCP connections are dumped (criu's --tcp-established).
    pub tcp_established: bool,
    /// Established TCP connections are dumped to be restored closed (--tcp-close).
    pub tcp_close: bool,
    /// How the network is locked while connections are dumped (--network-lock).
    pub network_lock: crate::files::netlock::Method,
    /// criu's --ext-unix-sk: a datagram socket connected to a named socket
    /// outside the tree is dumped with that peer as external.
    pub ext_unix_sk: bool,
    /// Called at each stage (tests use it to kill a task mid-dump).
    pub hook: Option<Hook>,
    /// Asked where criu runs its notify scripts (`cryo swrk` asks its client,
    /// see [`Notice`]); an answer of `Err` aborts the dump.
    pub notify: Option<Notify>,
    /// Fault injection (tests of `cryo run`): fail after every image but the
    /// inventory is written, as a crash there would.
    pub fail_before_inventory: bool,
    /// With `leave_running`: copy the memory while the tree runs again
    /// (copy-before-write, see `dump/live.rs`), not while it is frozen.
    pub live: bool,
    /// Track memory (criu's --track-mem): arm the write tracking so that a
    /// later dump with this set as its parent writes only what changed.
    pub track_mem: bool,
    /// The parent set (criu's --prev-images-dir, relative to `dir` unless
    /// absolute; the `parent` link holds it as given): pages unwritten since
    /// it was made are marked `PE_PARENT` instead of written. Implies `track_mem`.
    pub prev_images_dir: Option<PathBuf>,
    /// Mounts of the tree's mount namespace that come from outside it:
    /// mountpoint → key (criu's `--external mnt[MOUNTPOINT]:KEY`, `-M`).
    pub ext_mounts: std::collections::BTreeMap<String, String>,
    /// criu's --manage-cgroups mode (and a dump's --cgroup-root: where the
    /// walk for the cgroups below the tree's starts), see state::cgroup.
    pub cgroups: crate::state::cgroup::CgOpts,
    /// The tree's own network namespace is made empty at restore (criu's
    /// `--empty-ns net`, which runc always passes: it sets the network up
    /// itself): its devices, addresses, routes and rules are not dumped.
    pub empty_net: bool,
    /// Namespaces from outside the tree (criu's `--external net[INODE]:KEY`):
    /// the restore joins one given under KEY (`--inherit-fd fd[N]:KEY`)
    /// instead of making it. Network namespaces only.
    pub ext_ns: std::collections::BTreeMap<(crate::state::ns::Kind, u64), String>,
    /// criu's work directory (-W, the RPC's work_dir_fd): stats-dump goes
    /// there, as criu writes it (podman's `--print-stats` reads it there);
    /// the images directory when None.
    pub work_dir: Option<PathBuf>,
    /// criu's --freeze-cgroup: the tree is frozen with ptrace all the same;
    /// every task in that cgroup must be in the tree.
    pub freeze_cgroup: Option<PathBuf>,
}

/// The points of a dump a [`Notify`] is asked at (criu's notify scripts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The tree is frozen, nothing collected yet (criu's query-ext-files).
    Frozen,
    /// The whole image set is written (inventory.img last), the tree still
    /// frozen (criu's post-dump). With a notify the tree stays frozen until
    /// the answer; `Err` releases it as it was and removes the images.
    Written,
}

/// A notification callback: `Err(why)` aborts the dump with [`DumpError::Aborted`].
#[derive(Clone)]
pub struct Notify(pub std::sync::Arc<dyn Fn(Notice) -> std::result::Result<(), String> + Send + Sync>);

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notify")
    }
}

/// Stages of a dump reported to a [`Hook`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The whole tree is frozen.
    Frozen,
    /// The parasite of process `pid` was removed; its images come next.
    ParasiteDone(i32),
    /// About to read the pages of process `pid`.
    Pages(i32),
}

/// A stage callback.
#[derive(Clone)]
pub struct Hook(pub std::sync::Arc<dyn Fn(Stage) + Send + Sync>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

impl DumpOpts {
    /// Options with criu's defaults for `pid` into `dir`.
    pub fn new(pid: i32, dir: impl Into<PathBuf>) -> Self {
        DumpOpts {
            pid,
            dir: dir.into(),
            leave_running: false,
            tcp_established: false,
            tcp_close: false,
            network_lock: crate::files::netlock::Method::default(),
            shell_job: false,
            file_locks: false,
            skip_in_flight: false,
            pages: PageReader::default(),
            ghost_limit: crate::files::DEFAULT_GHOST_LIMIT,
            ghost_fiemap: true,
            link_remap: false,
            ext_unix_sk: false,
            hook: None,
            notify: None,
            track_mem: false,
            prev_images_dir: None,
            live: false,
            fail_before_inventory: false,
            ext_mounts: Default::default(),
            cgroups: Default::default(),
            empty_net: false,
            ext_ns: Default::default(),
            work_dir: None,
            freeze_cgroup: None,
        }
    }

    fn notice(&self, n: Notice) -> Result<()> {
        match &self.notify {
            Some(f) => (f.0)(n).map_err(|why| DumpError::Aborted { at: n, why }),
            None => Ok(()),
        }
    }

    fn stage(&self, s: Stage) {
        if let Some(h) = &self.hook {
            (h.0)(s);
        }
    }
}

/// How page contents are read from the frozen tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PageReader {
    /// process_vm_readv in large chunks, written straight to pages-N.img
    /// while the tree is frozen.
    Readv,
    /// The parasite vmsplices (SPLICE_F_GIFT) the pages into pipes while the
    /// tree is frozen; the pipes are drained into pages-N.img (pre-allocated
    /// before the tree is released, so a full disk fails early) after the
    /// tree is killed, or before it is released with --leave-running.
    #[default]
    Vmsplice,
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Freeze(#[from] FreezeError),
    #[error("pid {pid}: refusing to dump: {what}")]
    Refused { pid: i32, what: String },
    #[error("pid {pid}: {what}")]
    Task { pid: i32, what: String },
    #[error("pid {pid}: {source}")]
    Ptrace { pid: i32, source: PtraceError },
    #[error("pid {pid}: {source}")]
    Parasite { pid: i32, source: ParasiteError },
    #[error("{0}")]
    File(#[from] FileError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Affinity(#[from] crate::state::affinity::AffinityError),
    #[error(transparent)]
    Ns(#[from] crate::state::ns::NsError),
    #[error(transparent)]
    Cgroup(#[from] crate::state::cgroup::CgError),
    #[error(transparent)]
    Sidecar(#[from] crate::sidecar::SidecarError),
    #[error("dump aborted at {at:?}: {why}")]
    Aborted { at: Notice, why: String },
}

impl DumpError {
    fn task(pid: i32, what: impl Into<String>) -> Self {
        DumpError::Task { pid, what: what.into() }
    }
}

type Result<T> = std::result::Result<T, DumpError>;

/// What a successful dump did.
#[derive(Debug, Default, Clone)]
pub struct DumpSummary {
    pub processes: usize,
    pub threads: usize,
    pub pages_written: u64,
    pub files: usize,
    pub frozen: Duration,
    pub total: Duration,
    /// Each phase and how long it took, in order (the frozen ones say so).
    pub phases: Vec<(String, Duration)>,
    /// What the caller should know about restoring this set (printed by the CLI).
    pub warnings: Vec<String>,
}

fn read(path: &str, pid: i32) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DumpError::task(pid, format!("task died ({path} is gone)"))
        } else {
            DumpError::Io {
                path: path.into(),
                source: e,
            }
        }
    })
}

/// Images written so far (deleted again if the dump fails).
struct Written {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl Written {
    fn path(&mut self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        self.files.push(p.clone());
        p
    }
    fn remove_all(&self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl DumpCtx {
    #[allow(clippy::too_many_arguments)] // one per part of the state a dump and a pre-dump share
    fn new(
        opts: DumpOpts,
        files: FileTable,
        pool: PipePool,
        phases: Phases,
        track: Option<track::TrackCtx>,
        own_uffds: Vec<i32>,
        run_id: String,
        ns: crate::state::ns::TreeNs,
    ) -> Self {
        DumpCtx {
            out: Written {
                dir: opts.dir.clone(),
                files: Vec::new(),
            },
            opts,
            files,
            kids: Vec::new(),
            next_kid: [1; 5],
            written_fdinfo: Vec::new(),
            pending: Vec::new(),
            unfinished: Vec::new(),
            pool,
            locks: Vec::new(),
            seccomp: Default::default(),
            lock_keys: Vec::new(),
            pstree: Vec::new(),
            stats: pb::DumpStatsEntry::default(),
            threads: 0,
            phases,
            track,
            own_uffds,
            live: Vec::new(),
            run_id,
            ns,
            nsnum: crate::state::ns::Numbering::new(),
            ns_dump: Default::default(),
            cg: Default::default(),
        }
    }

    /// The dump failed: remove what it left on disk.
    fn discard(&mut self) {
        self.out.remove_all();
        self.files.remove_link_remaps();
        if let Err(e) = self.files.let_go() {
            eprintln!("cryo dump: {e}");
        }
    }
}

/// Shared state of one dump.
struct DumpCtx {
    opts: DumpOpts,
    out: Written,
    files: FileTable,
    /// kcmp-deduplicated kernel object ids: (type, representative pid, id).
    kids: Vec<(i32, i32, u32)>,
    next_kid: [u32; 5],
    written_fdinfo: Vec<u32>,
    pending: Vec<PendingPages>,
    unfinished: Vec<ImageWriter>,
    pool: PipePool,
    locks: Vec<pb::FileLockEntry>,
    /// seccomp.img filters.
    seccomp: crate::state::seccomp::Filters,
    /// (kind, POSIX owner pid, file id, start, len, type) of the locks recorded.
    lock_keys: Vec<(u32, i32, u32, i64, i64, u32)>,
    pstree: Vec<pb::PstreeEntry>,
    stats: pb::DumpStatsEntry,
    threads: usize,
    phases: Phases,
    /// Memory tracking (--track-mem, --prev-images-dir).
    track: Option<track::TrackCtx>,
    /// cryo's userfaultfds in the tree's fd tables (left out).
    own_uffds: Vec<i32>,
    /// Pages to copy once the tree runs again (live checkpoint).
    live: Vec<live::LiveCopy>,
    run_id: String,
    /// The tree's namespaces (found before the freeze) and their ids.
    ns: crate::state::ns::TreeNs,
    nsnum: crate::state::ns::Numbering,
    ns_dump: crate::state::ns::NsDump,
    /// The tree's cgroups (cgroup.img) and each thread's set.
    cg: crate::state::cgroup::CgDump,
}

impl DumpCtx {
    /// A pid or tid as the images record it (inside the tree's own pid
    /// namespace, if it has one).
    fn vpid(&self, pid: i32) -> i32 {
        self.ns.vpid(pid)
    }
}

/// How long each phase of a dump took ([`DumpSummary::phases`]).
struct Phases {
    last: Instant,
    list: Vec<(String, Duration)>,
}

impl Phases {
    fn new(t0: Instant) -> Self {
        Phases {
            last: t0,
            list: Vec::new(),
        }
    }

    /// The phase `name` ends now (and the next one starts).
    fn mark(&mut self, name: &str) {
        let now = Instant::now();
        self.list.push((name.to_string(), now - self.last));
        self.last = now;
        trace(&format!(
            "{name}: {:?}",
            self.list.last().map(|p| p.1).unwrap_or_default()
        ));
    }
}

/// Threads writing page pipes into pages files at once.
const DRAIN_THREADS: usize = 2;

/// Runs the dumping thread (and the threads it starts) at nice -20 while it
/// lives; the old value comes back on drop. Without CAP_SYS_NICE nothing
/// changes. (Linux keeps a nice value per thread: only ours change. With
/// autogroups, nice only ranks us within our session.)
struct Urgent(Option<i32>);

impl Urgent {
    fn new() -> Self {
        match crate::sys::thread_nice(0) {
            Ok(old) if old > -20 && crate::sys::set_thread_nice(0, -20).is_ok() => Urgent(Some(old)),
            _ => Urgent(None),
        }
    }
}

impl Drop for Urgent {
    fn drop(&mut self) {
        if let Some(old) = self.0 {
            let _ = crate::sys::set_thread_nice(0, old);
        }
    }
}

/// Thread `tid` (0: the calling thread) runs SCHED_FIFO (priority 1) until
/// the guard is dropped, then gets back its exact policy (nice values
/// survive the round trip). For the frozen window only, which is short and
/// bounded: on a machine busy with other sessions' work (autogroups make
/// nice values useless across sessions) it keeps the dumper and the
/// parasite from waiting for a CPU. Threads already real-time, deadline
/// or without CAP_SYS_NICE are left alone.
pub(crate) struct Realtime {
    tid: i32,
    old: Option<i32>,
}

impl Realtime {
    pub(crate) fn thread(tid: i32) -> Self {
        let old = match crate::sys::sched_policy(tid) {
            Ok(p)
                if matches!(
                    p & !libc::SCHED_RESET_ON_FORK,
                    libc::SCHED_OTHER | libc::SCHED_BATCH | libc::SCHED_IDLE
                ) && crate::sys::set_sched_policy(tid, libc::SCHED_FIFO | (p & libc::SCHED_RESET_ON_FORK), 1)
                    .is_ok() =>
            {
                Some(p)
            }
            _ => None,
        };
        Realtime { tid, old }
    }
}

impl Drop for Realtime {
    fn drop(&mut self) {
        if let Some(p) = self.old {
            let _ = crate::sys::set_sched_policy(self.tid, p, 0);
        }
    }
}

/// Dump the tree rooted at `opts.pid` into `opts.dir`.
pub fn dump(opts: DumpOpts) -> Result<DumpSummary> {
    let t0 = Instant::now();
    trace("dump starts");
    let dir = opts.dir.clone();
    if !dir.is_dir() {
        return Err(DumpError::Io {
            path: dir,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    // A stale inventory from an earlier dump would make a failed one look complete.
    let inv = dir.join("inventory.img");
    if inv.exists() {
        std::fs::remove_file(&inv).map_err(|source| DumpError::Io {
            path: inv.clone(),
            source,
        })?;
    }
    precheck(opts.pid)?;
    let run_id = new_run_id();
    let track = open_track(&opts, &run_id)?;
    let _urgent = Urgent::new();
    let mut phases = Phases::new(t0);
    // smaps (a walk of every page table) and /proc/locks are read by threads
    // while the pipes are made. Not later: a smaps walk still running in the
    // frozen window delays the parasite's mmap (mmap_lock) and slows the
    // vmsplice down by half.
    let pids = tree_pids(opts.pid);
    let own_uffds = track::own_fds(&pids);
    let tree_ns = crate::state::ns::survey(&pids)?;
    if let Some(fc) = &opts.freeze_cgroup {
        crate::state::cgroup::check_freeze_cgroup(fc, &pids)?;
    }
    survey_mnt_net(&tree_ns, &opts)?;
    let npipes = if opts.pages == PageReader::Vmsplice {
        PipePool::size_for(&pids) // before any thread starts: it grows the fd table
    } else {
        0
    };
    let mut smaps = SmapsReader::start(pids);
    let locks = std::thread::spawn(|| std::fs::read_to_string("/proc/locks").ok());
    let pool = PipePool::make_n(npipes);
    let pre_locks = locks.join().ok().flatten();
    smaps.get();
    phases.mark("pipes, smaps, /proc/locks");
    // Real-time from the freeze to the end of the collection (not while
    // pages are written: that is long and needs no such priority).
    let rt = Realtime::thread(0);
    let t_freeze = Instant::now();
    let mut tree = freeze::freeze_tree(opts.pid)?;
    let freezing_time = t_freeze.elapsed();
    phases.mark("freeze");
    let ghost_limit = opts.ghost_limit;
    let mut files = FileTable::with_ghost_limit(ghost_limit);
    files.shell_job = opts.shell_job;
    files.ghost_fiemap = opts.ghost_fiemap;
    files.link_remap = opts.link_remap;
    files.ext_unix_sk = opts.ext_unix_sk;
    files.inet.skip_in_flight = opts.skip_in_flight;
    files.tree_pids = tree.procs.iter().map(|p| p.pid).collect();
    files.tcp = crate::files::tcp::TcpOpts {
        established: opts.tcp_established,
        close: opts.tcp_close,
        lock: opts.network_lock,
        run_id: run_id.clone(),
        leave_running: opts.leave_running,
    };
    let mut ctx = DumpCtx::new(opts, files, pool, phases, track, own_uffds, run_id, tree_ns);
    ctx.stats.freezing_time = freezing_time.as_micros() as u32;
    let res = dump_frozen(&mut ctx, &mut tree, &mut smaps, pre_locks.as_deref());
    drop(rt);
    match res {
        Ok(()) => {
            let frozen_t0 = t_freeze;
            let nprocs = tree.procs.len();
            ctx.phases.mark("collect + vmsplice (frozen)");
            if let Err(e) = still_frozen(&tree).and_then(|_| check_room(&ctx)) {
                ctx.discard();
                tree.release();
                return Err(e);
            }
            // The small images are fsync'd and renamed by a thread of their
            // own while the pages are written (the pages are not fsync'd).
            let unfinished = std::mem::take(&mut ctx.unfinished);
            let pending = std::mem::take(&mut ctx.pending);
            // With a notify the tree stays frozen until the post-dump answer.
            let hold = ctx.opts.notify.is_some();
            let mut held = None;
            let (frozen, drained, finished) = std::thread::scope(|s| {
                // Release the tree as early as the mode allows: pages still
                // in pipes must be written first when it goes on running.
                let (frozen, fin, drained) = if hold {
                    let fin = s.spawn(move || finish_images(unfinished));
                    let drained = drain_pending(pending, DRAIN_THREADS);
                    ctx.phases.mark("pages written (frozen)");
                    held = Some(tree);
                    (frozen_t0.elapsed(), fin, drained)
                } else if ctx.opts.leave_running {
                    let fin = s.spawn(move || finish_images(unfinished));
                    let drained = drain_pending(pending, DRAIN_THREADS);
                    ctx.phases.mark("pages written (frozen)");
                    if let Err(e) = ctx.files.let_go() {
                        eprintln!("cryo dump: {e}");
                    }
                    tree.release();
                    (frozen_t0.elapsed(), fin, drained)
                } else {
                    // The pipes hold the tree's own pages (vmsplice gifts them,
                    // no copy): they are written before the tree is killed,
                    // because exiting writes to its memory (each thread's
                    // clear_child_tid is zeroed while other threads still use
                    // the mm, robust futexes are marked OWNER_DIED), and those
                    // writes would land in the image. The room was checked, so
                    // only an I/O error can fail here.
                    let fin = s.spawn(move || finish_images(unfinished));
                    let drained = drain_pending(pending, DRAIN_THREADS);
                    ctx.phases.mark("pages written (frozen)");
                    let tree = kill_tree(tree);
                    let frozen = frozen_t0.elapsed();
                    ctx.phases.mark("tree killed");
                    reap_tree(tree);
                    ctx.files.tree_gone();
                    ctx.phases.mark("tree reaped");
                    (frozen, fin, drained)
                };
                let finished = fin
                    .join()
                    .unwrap_or_else(|_| Err(DumpError::task(0, "image writer thread panicked")));
                (frozen, drained, finished)
            });
            if let Some((_, d)) = ctx.phases.list.iter().find(|(n, _)| n.starts_with("pages written")) {
                ctx.stats.memwrite_time += d.as_micros() as u32;
            }
            let fail = |ctx: &mut DumpCtx, held: Option<FrozenTree>, e| {
                ctx.discard();
                if let Some(t) = held {
                    let _ = std::fs::remove_file(&inv);
                    t.release();
                }
                Err(e)
            };
            if let Err(e) = drained.and(finished) {
                return fail(&mut ctx, held, e);
            }
            // Live checkpoint: the tree runs; its memory is copied now.
            if !ctx.live.is_empty() {
                let copies = std::mem::take(&mut ctx.live);
                let bytes: u64 = copies.iter().map(|c| c.bytes()).sum();
                let bar = crate::progress::Progress::new("live copy", bytes);
                let res: Result<u64> = std::thread::scope(|s| {
                    let hs: Vec<_> = copies
                        .into_iter()
                        .map(|c| {
                            let bar = bar.clone();
                            s.spawn(move || c.run(bar))
                        })
                        .collect();
                    hs.into_iter().try_fold(0u64, |acc, h| {
                        h.join()
                            .unwrap_or_else(|_| Err(DumpError::task(0, "live copy thread panicked")))
                            .map(|n| acc + n)
                    })
                });
                bar.finish();
                match res {
                    Ok(faults) => {
                        trace(&format!("live copy: {bytes} bytes, {faults} write faults served first"));
                        ctx.phases
                            .mark(&format!("live copy ({} MiB, {faults} faults)", bytes >> 20));
                    }
                    Err(e) => return fail(&mut ctx, held, e),
                }
            }
            ctx.phases.mark("images finished");
            ctx.stats.frozen_time = frozen.as_micros() as u32;
            let injected = if ctx.opts.fail_before_inventory {
                Err(DumpError::task(ctx.opts.pid, "injected fault before the inventory"))
            } else {
                Ok(())
            };
            if let Err(e) = injected
                .and_then(|_| write_stats(&mut ctx))
                .and_then(|_| write_inventory(&mut ctx, None))
                .and_then(|_| commit_track(&mut ctx))
            {
                return fail(&mut ctx, held, e);
            }
            ctx.phases.mark("inventory");
            if let (false, Some(t)) = (ctx.opts.leave_running, &ctx.track) {
                let gone: Vec<(i32, u64)> = t.armed.iter().map(|a| (a.0, a.1)).collect();
                track::prune(&gone);
            }
            if let Some(tree) = held {
                if let Err(e) = ctx.opts.notice(Notice::Written) {
                    return fail(&mut ctx, Some(tree), e);
                }
                if ctx.opts.leave_running {
                    if let Err(e) = ctx.files.let_go() {
                        eprintln!("cryo dump: {e}");
                    }
                    tree.release();
                } else {
                    reap_tree(kill_tree(tree));
                    ctx.files.tree_gone();
                    ctx.phases.mark("tree killed and reaped");
                }
            }
            ctx.files.dump_done();
            Ok(DumpSummary {
                processes: nprocs,
                threads: ctx.threads,
                pages_written: ctx.stats.pages_written,
                files: ctx.files.entries().count(),
                frozen,
                total: t0.elapsed(),
                phases: ctx.phases.list,
                warnings: if ctx.opts.shell_job {
                    Vec::new()
                } else {
                    leaders_outside(&ctx.pstree, |pid| {
                        std::fs::read_to_string(format!("/proc/{pid}/comm"))
                            .ok()
                            .map(|c| c.trim_end().to_string())
                    })
                },
            })
        }
        Err(e) => {
            ctx.discard();
            let _ = std::fs::remove_file(&inv);
            tree.release();
            Err(e)
        }
    }
}

/// SIGKILL every process (still traced, so nothing runs in between). The
/// dying threads get nice -20 so that their exit, which frees the memory the
/// page cache is about to need, is not starved by our writer threads.
fn kill_tree(tree: FrozenTree) -> FrozenTree {
    for p in &tree.procs {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), nix::sys::signal::Signal::SIGKILL);
    }
    for p in &tree.procs {
        for t in &p.threads {
            let _ = crate::sys::set_thread_nice(t.tid(), -20);
        }
    }
    tree
}

/// Reap the killed, traced threads so that their parents can collect them.
fn reap_tree(tree: FrozenTree) {
    // Children first: the init of a pid namespace exits only once every
    // other task of it is reaped, and cryo, their tracer, reaps them.
    for p in tree.procs.into_iter().rev() {
        // Non-leaders first: a leader is reported only after its threads.
        let mut threads = p.threads;
        if !threads.is_empty() {
            threads.rotate_left(1);
        }
        for t in threads {
            crate::ptrace::wait_exit(t.tid());
        }
    }
}

/// The parasite and injected syscalls stop with int3 (a SIGTRAP that runs
/// unblocked, see [`crate::ptrace::ALL_BUT_SIGTRAP`]): a pending SIGTRAP
/// would be taken for one of those traps, and an ignored one is reset to
/// SIG_DFL by the kernel when the trap is forced. Both are refused, as CRIU
/// refuses a pending SIGTRAP.
fn refuse_sigtrap(pid: i32, tid: i32) -> Result<()> {
    let st = proc::parse_status(&read(&format!("/proc/{pid}/task/{tid}/status"), pid)?)
        .map_err(|e| DumpError::task(pid, e.to_string()))?;
    let bit = 1u64 << (libc::SIGTRAP - 1);
    let why = if (st.sig_pnd | st.shd_pnd) & bit != 0 {
        "has a pending SIGTRAP"
    } else if st.sig_ign & bit != 0 {
        "ignores SIGTRAP (the dumper's traps would reset it to SIG_DFL)"
    } else {
        return Ok(());
    };
    Err(DumpError::Refused {
        pid,
        what: format!("thread {tid} {why}: not supported"),
    })
}

/// The abort handler of the rseq critical section thread `t` is stopped in
/// (None: not in one). A section that must not restart on a signal
/// (RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL) would need its rseq_cs written back
/// after the restore: refused.
fn rseq_abort_ip(pid: i32, t: &crate::ptrace::Stopped) -> Result<Option<u64>> {
    const NO_RESTART_ON_SIGNAL: u32 = 1 << 1;
    let ptr = |source| DumpError::Ptrace { pid, source };
    let Some((area, _, _)) = t.rseq().map_err(ptr)? else {
        return Ok(None);
    };
    // struct rseq: cpu_id_start, cpu_id (u32), rseq_cs (u64), flags (u32).
    let cs = t.peek(area + 8).map_err(ptr)?;
    if cs == 0 {
        return Ok(None);
    }
    let area_flags = t.peek(area + 16).map_err(ptr)? as u32;
    // struct rseq_cs: version, flags (u32), start_ip, post_commit_offset, abort_ip.
    let vf = t.peek(cs).map_err(ptr)?;
    let (version, flags) = (vf as u32, (vf >> 32) as u32);
    let start = t.peek(cs + 8).map_err(ptr)?;
    let len = t.peek(cs + 16).map_err(ptr)?;
    let abort = t.peek(cs + 24).map_err(ptr)?;
    let ip = t.regs().map_err(ptr)?.rip;
    if !(start <= ip && ip - start < len) {
        return Ok(None);
    }
    let why = if version != 0 {
        format!("rseq_cs version {version}")
    } else if (flags | area_flags) & NO_RESTART_ON_SIGNAL != 0 {
        "RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL".to_string()
    } else {
        return Ok(Some(abort));
    };
    Err(DumpError::Refused {
        pid,
        what: format!(
            "thread {} is inside an rseq critical section at {ip:#x} (rseq_cs {cs:#x}) with {why}: not supported yet",
            t.tid()
        ),
    })
}

/// Every task must still be in its ptrace stop: one that was killed during
/// the dump no longer is (ptrace answers ESRCH), and its images are void.
fn still_frozen(tree: &FrozenTree) -> Result<()> {
    for p in &tree.procs {
        for t in &p.threads {
            t.regs().map_err(|source| DumpError::Ptrace { pid: p.pid, source })?;
        }
    }
    Ok(())
}

/// CRIU's task states (core tc.task_state), as criu/include/pid.h numbers
/// them and CRIU's restore reads them: 1 alive, 2 dead (a zombie), 3 stopped.
/// (crit 3.17 prints 3 as "Zombie" and 6 as "Stopped": its table is off.)
pub const TASK_ALIVE: u32 = 1;
pub const TASK_DEAD: u32 = 2;
pub const TASK_STOPPED: u32 = 3;

/// The tree's own mount and network namespaces, checked before the freeze:
/// mounts the restore cannot rebuild, devices it cannot make.
fn survey_mnt_net(ns: &crate::state::ns::TreeNs, opts: &DumpOpts) -> Result<()> {
    use crate::state::ns::Kind;
    let root = opts.pid;
    let refused = |what: String| DumpError::Refused { pid: root, what };
    for (kind, ino) in opts.ext_ns.keys() {
        if *kind != Kind::Net {
            return Err(refused(format!(
                "--external {}[{ino}]: only network namespaces can be external",
                kind.name()
            )));
        }
    }
    if ns.has(Kind::Mnt) {
        crate::state::mnt::survey(root, &opts.ext_mounts).map_err(|e| refused(format!("its mount namespace: {e}")))?;
    }
    if ns.has(Kind::Net) && ext_net(ns, opts).is_none() && !opts.empty_net {
        let f = std::fs::File::open(format!("/proc/{root}/ns/net"))
            .map_err(|e| refused(format!("its network namespace: /proc/{root}/ns/net: {e}")))?;
        crate::state::netns::survey(&f).map_err(|e| refused(format!("its network namespace: {e}")))?;
    }
    Ok(())
}

/// The key of the tree's network namespace when it is declared external.
fn ext_net<'a>(ns: &crate::state::ns::TreeNs, opts: &'a DumpOpts) -> Option<&'a str> {
    use crate::state::ns::Kind;
    let ino = *ns.root.get(&Kind::Net)?;
    opts.ext_ns.get(&(Kind::Net, ino)).map(|k| k.as_str())
}

/// Dump the tree's own mount and network namespaces (the tree frozen).
fn dump_mnt_net(ctx: &mut DumpCtx, root: i32) -> Result<()> {
    use crate::state::ns::Kind;
    let refused = |what: String| DumpError::Refused { pid: root, what };
    let dir = ctx.out.dir.clone();
    if ctx.ns.has(Kind::Net) {
        let id = ctx
            .nsnum
            .id(Kind::Net, ctx.ns.root.get(&Kind::Net).copied().unwrap_or(0));
        let names = if let Some(key) = ext_net(&ctx.ns, &ctx.opts) {
            crate::state::netns::dump_external(id, &dir, key)
        } else if ctx.opts.empty_net {
            crate::state::netns::dump_empty(id, &dir)
        } else {
            let f = std::fs::File::open(format!("/proc/{root}/ns/net"))
                .map_err(|e| refused(format!("its network namespace: /proc/{root}/ns/net: {e}")))?;
            crate::state::netns::dump(&f, id, &dir, &|_| None)
        }
        .map_err(|e| refused(format!("its network namespace: {e}")))?;
        ctx.out.files.extend(names.iter().map(|n| dir.join(n)));
    }
    if ctx.ns.has(Kind::Mnt) {
        let id = ctx
            .nsnum
            .id(Kind::Mnt, ctx.ns.root.get(&Kind::Mnt).copied().unwrap_or(0));
        let names = crate::state::mnt::dump(root, id, &dir, &ctx.opts.ext_mounts)
            .map_err(|e| refused(format!("its mount namespace: {e}")))?;
        ctx.out.files.extend(names.iter().map(|n| dir.join(n)));
    }
    Ok(())
}

/// In a user namespace of its own, the owners the file images record are
/// the namespace's ids (CRIU's `userns_uid()`): ghost files, memfd inodes,
/// terminals.
fn files_ids_inside(files: &mut FileTable, u: &crate::state::userns::UserNs) {
    for (_, g, _) in files.ghosts.iter_mut() {
        g.uid = u.inside_uid(g.uid);
        g.gid = u.inside_gid(g.gid);
    }
    for m in files.shmem.iter_mut() {
        m.entry.uid = u.inside_uid(m.entry.uid);
        m.entry.gid = u.inside_gid(m.entry.gid);
    }
    for t in files.tty_infos.values_mut() {
        t.uid = t.uid.map(|v| u.inside_uid(v));
        t.gid = t.gid.map(|v| u.inside_gid(v));
    }
}

/// Refusals that need no freezing (namespaces); more come per process.
fn precheck(pid: i32) -> Result<()> {
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(DumpError::task(pid, "no such process"));
    }
    Ok(())
}

/// Everything read from /proc for one process before anything is written.
struct ProcFacts {
    stat: proc::Stat,
    status: proc::Status,
    vmas: Vec<(Vma, MapKind)>,
    /// /proc/PID/maps as read, before classification.
    maps: Vec<Vma>,
    fds: Vec<(i32, String)>,
    timers: Vec<proc::PosixTimerInfo>,
    auxv: Vec<u64>,
}

/// VmFlags read before the freeze, by pid (reading smaps walks the page
/// tables: far too slow to do while frozen for big processes).
type PreSmaps = std::collections::HashMap<i32, Vec<Vma>>;

/// smaps of the tree's processes, read by a thread of its own before the
/// freeze (see [`dump`]).
struct SmapsReader {
    thread: Option<std::thread::JoinHandle<PreSmaps>>,
    smaps: PreSmaps,
}

impl SmapsReader {
    fn start(pids: Vec<i32>) -> Self {
        let thread = std::thread::spawn(move || {
            let s = pre_read_smaps(&pids);
            trace("smaps read");
            s
        });
        SmapsReader {
            thread: Some(thread),
            smaps: PreSmaps::new(),
        }
    }

    /// What the thread read (waiting for it the first time). Without it
    /// smaps is read again while frozen: slower, as correct.
    fn get(&mut self) -> &PreSmaps {
        if let Some(t) = self.thread.take() {
            self.smaps = t.join().unwrap_or_default();
        }
        &self.smaps
    }
}

impl Drop for SmapsReader {
    fn drop(&mut self) {
        self.get();
    }
}

/// smaps of `pids`, read before freezing.
fn pre_read_smaps(pids: &[i32]) -> PreSmaps {
    let mut out = PreSmaps::new();
    for &pid in pids {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) {
            if let Ok(v) = proc::parse_smaps(&s) {
                out.insert(pid, v);
            }
        }
    }
    out
}

/// The processes of the tree rooted at `root` as they are now (before the freeze).
fn tree_pids(root: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        out.push(pid);
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                    todo.extend(c.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
                }
            }
        }
    }
    out
}

/// The VMAs of a frozen process (`maps`, from /proc/PID/maps: cheap), with
/// the VmFlags of the pre-read smaps; if any mapping changed since, smaps is
/// read again now.
fn vmas_with_flags(pid: i32, mut maps: Vec<Vma>, pre: &PreSmaps) -> Result<Vec<Vma>> {
    let perr = |e: proc::ParseError| DumpError::task(pid, e.to_string());
    if let Some(old) = pre.get(&pid) {
        let same = |a: &Vma, b: &Vma| {
            (
                a.start, a.end, a.read, a.write, a.exec, a.shared, a.pgoff, a.ino, &a.name,
            ) == (
                b.start, b.end, b.read, b.write, b.exec, b.shared, b.pgoff, b.ino, &b.name,
            )
        };
        // Every frozen VMA must be in the snapshot as it is; the snapshot
        // may hold more (one unmapped since it was read).
        let found: Option<Vec<&Vma>> = maps
            .iter()
            .map(|m| {
                let i = old.partition_point(|o| o.start < m.start);
                old.get(i).filter(|o| same(o, m))
            })
            .collect();
        if let Some(found) = found {
            for (m, o) in maps.iter_mut().zip(found) {
                m.vmflags = o.vmflags.clone();
            }
            return Ok(maps);
        }
    }
    proc::parse_smaps(&read(&format!("/proc/{pid}/smaps"), pid)?).map_err(perr)
}

/// Facts of a frozen process; its VMAs without VmFlags (see [`with_vmflags`]).
fn collect_facts(pid: i32) -> Result<ProcFacts> {
    let stat =
        proc::parse_stat(&read(&format!("/proc/{pid}/stat"), pid)?).map_err(|e| DumpError::task(pid, e.to_string()))?;
    let status = proc::parse_status(&read(&format!("/proc/{pid}/status"), pid)?)
        .map_err(|e| DumpError::task(pid, e.to_string()))?;
    let maps =
        proc::parse_maps(&read(&format!("/proc/{pid}/maps"), pid)?).map_err(|e| DumpError::task(pid, e.to_string()))?;
    let vmas = classify_vmas(maps.clone());
    let timers = proc::parse_timers(&read(&format!("/proc/{pid}/timers"), pid).unwrap_or_default())
        .map_err(|e| DumpError::task(pid, e.to_string()))?;
    let auxv_path = format!("/proc/{pid}/auxv");
    let auxv = proc::parse_auxv(&std::fs::read(&auxv_path).map_err(|source| DumpError::Io {
        path: auxv_path.into(),
        source,
    })?);
    let mut fds = Vec::new();
    let fd_dir = format!("/proc/{pid}/fd");
    for e in std::fs::read_dir(&fd_dir).map_err(|source| DumpError::Io {
        path: fd_dir.clone().into(),
        source,
    })? {
        let e = e.map_err(|source| DumpError::Io {
            path: fd_dir.clone().into(),
            source,
        })?;
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let link = std::fs::read_link(e.path())
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        fds.push((fd, link));
    }
    fds.sort();
    Ok(ProcFacts {
        stat,
        status,
        vmas,
        maps,
        fds,
        timers,
        auxv,
    })
}

fn classify_vmas(maps: Vec<Vma>) -> Vec<(Vma, MapKind)> {
    let mut vmas: Vec<(Vma, MapKind)> = maps
        .into_iter()
        .map(|v| {
            let k = mm::classify(&v);
            (v, k)
        })
        .collect();
    mm::merge_vvar(&mut vmas);
    vmas
}

/// `f.vmas` with their VmFlags, from the smaps read by `smaps` if the
/// layout is the same as the frozen one, else from smaps read now.
fn with_vmflags(pid: i32, f: &mut ProcFacts, smaps: &mut SmapsReader) -> Result<()> {
    let flagged = vmas_with_flags(pid, std::mem::take(&mut f.maps), smaps.get())?;
    let vmas = classify_vmas(flagged);
    let same = vmas.len() == f.vmas.len()
        && vmas
            .iter()
            .zip(&f.vmas)
            .all(|((a, ka), (b, kb))| (a.start, a.end, ka) == (b.start, b.end, kb));
    if !same {
        return Err(DumpError::task(pid, "its mappings changed while it was frozen"));
    }
    f.vmas = vmas;
    Ok(())
}

/// A hugetlb mapping other than MAP_HUGETLB memory or a MFD_HUGETLB memfd
/// (SHM_HUGETLB, a file on a hugetlbfs mount) is refused.
fn hugetlb_refused(pid: i32, v: &Vma) -> DumpError {
    DumpError::Refused {
        pid,
        what: format!(
            "hugetlb mapping at {:#x}-{:#x} ({}): huge-page memory other than MAP_HUGETLB and MFD_HUGETLB memfds (SHM_HUGETLB, hugetlbfs files) is not supported yet",
            v.start, v.end, v.name
        ),
    }
}

/// The huge page size of the hugetlb mapping `v` (the block size of the
/// hugetlbfs it lives on).
fn hugetlb_page_size(pid: i32, v: &Vma) -> Result<u64> {
    let mf = format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end);
    let s = nix::sys::statfs::statfs(mf.as_str()).map_err(|e| DumpError::Io {
        path: mf.clone().into(),
        source: e.into(),
    })?;
    if s.filesystem_type() != nix::sys::statfs::HUGETLBFS_MAGIC {
        return Err(hugetlb_refused(pid, v));
    }
    Ok(s.block_size() as u64)
}

/// Private anonymous MAP_HUGETLB memory and mappings of hugetlb shmem
/// (MAP_SHARED|MAP_HUGETLB, MFD_HUGETLB memfds) are dumped; SysV
/// SHM_HUGETLB and files on a hugetlbfs mount are not.
fn hugetlb_supported(pid: i32, v: &Vma, k: MapKind) -> bool {
    match k {
        MapKind::AnonPrivate => v.name.starts_with("/anon_hugepage"),
        MapKind::ShmemLike | MapKind::MemfdPrivate => on_hugetlbfs(pid, v),
        _ => false,
    }
}

/// Is the object mapped at `v` on hugetlbfs (a MFD_HUGETLB memfd, SHM_HUGETLB)?
fn on_hugetlbfs(pid: i32, v: &Vma) -> bool {
    let mf = format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end);
    nix::sys::statfs::statfs(mf.as_str()).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::HUGETLBFS_MAGIC)
}

/// Refuse what we cannot dump yet, before writing anything.
/// `locks` is /proc/locks as read before the freeze: reading it takes the
/// kernel's file_rwsem for writing, which waits for an RCU grace period
/// (~10 ms here), too long for the frozen window. A lock taken after that
/// read is still refused, by the fd's own fdinfo (see `dump_one_fd`).
fn refuse(
    pid: i32,
    frozen: &[i32],
    f: &ProcFacts,
    file_locks: bool,
    locks: Option<&str>,
    ns: &mut crate::state::ns::TreeNs,
) -> Result<()> {
    // A task forked since the survey is checked too.
    crate::state::ns::check_task(pid, frozen, ns)?;
    for (v, k) in &f.vmas {
        match k {
            MapKind::SysvShm if !ns.has(crate::state::ns::Kind::Ipc) => {
                return Err(DumpError::Refused {
                    pid,
                    what: format!(
                        "SysV shared memory mapped at {:#x} ({}) in cryo's own IPC namespace (a tree's SysV \
                         objects are dumped when it has an IPC namespace of its own)",
                        v.start, v.name
                    ),
                })
            }
            MapKind::FilePrivate | MapKind::FileShared if on_hugetlbfs(pid, v) => return Err(hugetlb_refused(pid, v)),
            _ => {}
        }
    }
    if let Ok(s) = std::fs::read_to_string("/proc/sysvipc/msg") {
        for l in s.lines().skip(1) {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() > 7 && (w[6] == pid.to_string() || w[7] == pid.to_string()) {
                return Err(DumpError::Refused {
                    pid,
                    what: format!("uses SysV message queue {}", w[1]),
                });
            }
        }
    }
    if let Ok(s) = std::fs::read_to_string("/proc/sysvipc/shm") {
        for l in s.lines().skip(1) {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() > 5 && (w[4] == pid.to_string() || w[5] == pid.to_string()) {
                return Err(DumpError::Refused {
                    pid,
                    what: format!("uses SysV shared memory segment {}", w[1]),
                });
            }
        }
    }
    if let Some(locks) = locks {
        let held = locks
            .lines()
            .filter_map(|l| proc::parse_lock_line(l).ok())
            .any(|l| l.pid == pid);
        if held && !file_locks {
            return Err(DumpError::Refused {
                pid,
                what: "it holds file locks; dump them with --file-locks".into(),
            });
        }
    }
    Ok(())
}

fn dump_frozen(ctx: &mut DumpCtx, tree: &mut FrozenTree, smaps: &mut SmapsReader, locks: Option<&str>) -> Result<()> {
    ctx.opts.stage(Stage::Frozen);
    ctx.opts.notice(Notice::Frozen)?;
    let mut facts = Vec::new();
    let t = Instant::now();
    for p in &tree.procs {
        if p.is_zombie() {
            facts.push(None);
            continue;
        }
        let mut f = collect_facts(p.pid)?;
        f.fds.retain(|(fd, link)| !track::is_own(&ctx.own_uffds, *fd, link));
        let tids: Vec<i32> = p.threads.iter().map(|t| t.tid()).collect();
        refuse(p.pid, &tids, &f, ctx.opts.file_locks, locks, &mut ctx.ns)?;
        facts.push(Some(f));
    }
    // What the fd kinds check across the whole tree (peers, names, queues),
    // before anything is written.
    let tree_fds: Vec<crate::files::TreeFd> = tree
        .procs
        .iter()
        .zip(&facts)
        .filter_map(|(p, f)| f.as_ref().map(|f| (p.pid, f)))
        .flat_map(|(pid, f)| {
            f.fds.iter().map(move |(fd, l)| crate::files::TreeFd {
                pid,
                fd: *fd,
                link: l.clone(),
            })
        })
        .collect();
    crate::files::survey(&tree_fds, &mut ctx.files)?;
    trace(&format!("facts {:?}", t.elapsed()));
    // Shared memory objects get their inode and pages ids before any
    // process's pages (CRIU's numbering): mappings first, then memfd fds.
    for (p, f) in tree.procs.iter().zip(&facts) {
        let Some(f) = f else { continue };
        for (v, k) in &f.vmas {
            if matches!(k, MapKind::ShmemLike | MapKind::MemfdPrivate) {
                let mf = format!("/proc/{}/map_files/{:x}-{:x}", p.pid, v.start, v.end);
                ctx.files.shmem_inode(&mf, &v.name)?;
            }
        }
        for (fd, link) in &f.fds {
            if link.starts_with("/memfd:") {
                ctx.files.shmem_inode(&format!("/proc/{}/fd/{fd}", p.pid), link)?;
            }
        }
    }
    // Every thread's cgroups (their sets go into the cores).
    let cg_tasks: Vec<(i32, Vec<i32>)> = tree
        .procs
        .iter()
        .filter(|p| !p.is_zombie())
        .map(|p| (p.pid, p.threads.iter().map(|t| t.tid()).collect()))
        .collect();
    ctx.cg = crate::state::cgroup::dump(&cg_tasks, &ctx.opts.cgroups, ctx.ns.has(crate::state::ns::Kind::Cgroup))?;
    for (p, f) in tree.procs.iter_mut().zip(facts) {
        match f {
            Some(f) => dump_proc(ctx, p, f, smaps)?,
            None => dump_zombie(ctx, p)?,
        }
        trace(&format!("pid {} dumped at {:?}", p.pid, t.elapsed()));
    }
    // The tree's own namespaces (uts, ipc, pid), read with the tree frozen.
    ctx.ns_dump = crate::state::ns::dump_contents(&ctx.ns, tree.procs[0].pid, &mut ctx.nsnum)?;
    if let Some((_, ipc)) = ctx.ns_dump.ipc.as_mut() {
        ipc.pages_ids = (0..ipc.segments()).map(|_| ctx.files.alloc_pages_id()).collect();
        // SysV shm pages count as shared pages in stats-dump, as CRIU
        // counts them (zdtm checks the sum against the pages images).
        let (scanned, written) = ipc.shm_pages();
        ctx.stats.shpages_scanned = Some(ctx.stats.shpages_scanned.unwrap_or(0) + scanned);
        ctx.stats.shpages_written = Some(ctx.stats.shpages_written.unwrap_or(0) + written);
    }
    dump_mnt_net(ctx, tree.procs[0].pid)?;
    write_shared(ctx)?;
    trace(&format!("shared images at {:?}", t.elapsed()));
    // What CRIU's format cannot hold (CPU affinity of pinned threads,
    // EFD_SEMAPHORE eventfds) goes into the sidecar, written only when there is any.
    let tids: Vec<i32> = tree
        .procs
        .iter()
        .flat_map(|p| p.threads.iter().map(|t| t.tid()))
        .collect();
    let side = cryo_image::sidecar::Sidecar {
        affinity: crate::state::affinity::collect(&tids)?,
        eventfd_semaphore: ctx.files.eventfd_semaphore.clone(),
        tcp_reset: ctx.files.tcp_reset.clone(),
        udp_sources: ctx.files.udp_sources.clone(),
        peek_off: ctx.files.peek_off.clone(),
        multicast: ctx.files.multicast.clone(),
    };
    crate::sidecar::write(&ctx.opts.dir, &side, |name| ctx.out.path(name))?;
    Ok(())
}

/// The id of a kernel object shared between tasks (vm, files, fs, sighand), deduplicated with kcmp.
fn kid(ctx: &mut DumpCtx, slot: usize, kcmp_type: i32, pid: i32) -> u32 {
    for &(t, other, id) in &ctx.kids {
        if t == kcmp_type && crate::sys::kcmp(pid, other, kcmp_type, 0, 0).ok() == Some(0) {
            return id;
        }
    }
    ctx.next_kid[slot] += 1;
    let id = ctx.next_kid[slot];
    ctx.kids.push((kcmp_type, pid, id));
    id
}

/// In a pid namespace of the tree's own, pids other state names are read
/// as cryo sees them: what is not translated yet is refused (file owners,
/// pidfds, file locks).
fn pidns_refusals(ctx: &DumpCtx) -> Result<()> {
    if !ctx.ns.has(crate::state::ns::Kind::Pid) {
        return Ok(());
    }
    let root = ctx.opts.pid;
    let refuse = |what: String| Err(DumpError::Refused { pid: root, what });
    for e in ctx.files.entries() {
        if e.r#type == pb::FdTypes::Pidfd as i32 {
            return refuse(format!(
                "file id {}: a pidfd in a tree with a pid namespace of its own: not supported yet",
                e.id
            ));
        }
        if crate::files::fown::of_entry(e).is_some_and(|f| f.pid != 0) {
            return refuse(format!(
                "file id {}: an owner (F_SETOWN) in a tree with a pid namespace of its own: not supported yet",
                e.id
            ));
        }
    }
    if !ctx.locks.is_empty() {
        return refuse("file locks in a tree with a pid namespace of its own: not supported yet".into());
    }
    Ok(())
}

/// The process group and session of `pid` as the images record them:
/// inside the tree's own pid namespace (0 when the leader is outside it,
/// as getsid() says inside), else as /proc/PID/stat says.
fn pgid_sid(ctx: &DumpCtx, pid: i32, pgid: i32, sid: i32) -> (u32, u32) {
    if !ctx.ns.has(crate::state::ns::Kind::Pid) {
        return (pgid as u32, sid as u32);
    }
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let f = |k| crate::state::ns::ns_field(&st, k).map_or(0, |(v, _)| v as u32);
    (f("NSpgid:"), f("NSsid:"))
}

/// What the parasite read inside a process (and its pages, scanned with
/// the parasite in place).
struct Inside {
    sigacts: Vec<cryo_abi::parasite::KSigaction>,
    itimers: Vec<cryo_abi::parasite::Itimerval>,
    posix: Vec<cryo_abi::parasite::PosixTimer>,
    misc: cryo_abi::parasite::Misc,
    /// Per thread, leader first.
    tmisc: Vec<cryo_abi::parasite::ThreadMisc>,
    runs: Vec<mem::Run>,
    /// The page pipes (vmsplice mode).
    spliced: Option<Vec<(OwnedFd, u64)>>,
    /// Per thread: the rseq abort handler to jump to (stopped inside a
    /// critical section), read before the parasite ran.
    rseq_abort: Vec<Option<u64>>,
    /// Live checkpoint: which runs are protected for the copy, and the userfaultfd.
    live: Option<(Vec<bool>, Option<OwnedFd>)>,
}

/// One live process: run the parasite, then write its images (files
/// first, in CRIU's id order: mappings, fds, cwd/root), cores, mm, pages,
/// ids and fs, and add it to the pstree.
fn dump_proc(ctx: &mut DumpCtx, p: &mut FrozenProc, mut f: ProcFacts, smaps: &mut SmapsReader) -> Result<()> {
    let pid = p.pid;
    let inside = run_parasite(ctx, p, &f)?;
    ctx.opts.stage(Stage::ParasiteDone(pid));
    trace(&format!("pid {pid}: parasite done"));
    with_vmflags(pid, &mut f, smaps)?;
    if let Some((v, _)) = f
        .vmas
        .iter()
        .find(|(v, k)| v.has_flag("ht") && !hugetlb_supported(pid, v, *k))
    {
        return Err(hugetlb_refused(pid, v));
    }
    trace(&format!("pid {pid}: vmflags"));

    let vma_entries = vma_entries(ctx, pid, &f)?;
    let exe_file_id = exe_file(ctx, pid)?;
    let ids = pb::TaskKobjIdsEntry {
        vm_id: kid(ctx, 0, crate::sys::KCMP_VM, pid),
        files_id: kid(ctx, 1, crate::sys::KCMP_FILES, pid),
        fs_id: kid(ctx, 2, crate::sys::KCMP_FS, pid),
        sighand_id: kid(ctx, 3, crate::sys::KCMP_SIGHAND, pid),
        ..Default::default()
    };
    let mut ids = ids;
    ctx.nsnum.fill(&crate::state::ns::inodes(&pid.to_string()), &mut ids);
    write_fd_table(ctx, p, &f, ids.files_id)?;
    let cwd_id = fs_file(ctx, pid, "cwd")?;
    let root_id = fs_file(ctx, pid, "root")?;

    core::write_cores(ctx, p, &f, &inside)?;
    ctx.threads += p.threads.len();

    let mut mm = mm::mm_entry(
        &f.stat,
        inside.misc.brk,
        f.auxv.clone(),
        exe_file_id,
        vma_entries,
        inside.misc.dumpable,
        inside.misc.thp_disabled != 0,
    );
    mm.aios = mm::aio_entries(&f.vmas);
    let vpid = ctx.vpid(pid);
    let path = ctx.out.path(&format!("mm-{vpid}.img"));
    let w = write_image(&path, "MM", &[mm])?;
    ctx.defer(w);
    ctx.opts.stage(Stage::Pages(pid));
    match inside.live {
        Some((live, uffd)) => pages::dump_pages_live(ctx, pid, &inside.runs, &live, uffd)?,
        None => dump_pages(ctx, pid, &inside.runs, inside.spliced)?,
    }

    let path = ctx.out.path(&format!("ids-{vpid}.img"));
    let w = write_image(&path, "IDS", &[ids])?;
    ctx.defer(w);
    let fs = pb::FsEntry {
        cwd_id,
        root_id,
        umask: Some(f.status.umask.unwrap_or(inside.misc.umask)),
    };
    let path = ctx.out.path(&format!("fs-{vpid}.img"));
    let w = write_image(&path, "FS", &[fs])?;
    ctx.defer(w);
    let (pgid, sid) = pgid_sid(ctx, pid, f.stat.pgid, f.stat.sid);
    let entry = pb::PstreeEntry {
        pid: vpid as u32,
        ppid: ctx.vpid(p.ppid) as u32,
        pgid,
        sid,
        threads: p.threads.iter().map(|t| ctx.vpid(t.tid()) as u32).collect(),
    };
    ctx.pstree.push(entry);
    Ok(())
}

/// Inside the target: inject the parasite, read what only the task can
/// tell (sigactions, timers, misc per process and per thread), scan (and
/// in vmsplice mode splice) the pages, and remove the parasite.
fn run_parasite(ctx: &mut DumpCtx, p: &mut FrozenProc, f: &ProcFacts) -> Result<Inside> {
    let pid = p.pid;
    let para = |source| DumpError::Parasite { pid, source };
    let code_addr = parasite::find_code_addr(pid).map_err(|e| DumpError::task(pid, e.to_string()))?;
    // rseq critical sections, read before the parasite runs (running it
    // makes the kernel clear each thread's rseq_cs).
    let mut rseq_abort = Vec::new();
    for t in &p.threads {
        refuse_sigtrap(pid, t.tid())?;
        rseq_abort.push(rseq_abort_ip(pid, t)?);
    }
    let (leader, others) = p.threads.split_first_mut().expect("a process has a leader");
    let timer_ids: Vec<i32> = f.timers.iter().map(|t| t.id).collect();
    let vpid = ctx.vpid(pid);
    let mut tracked = match &mut ctx.track {
        Some(tc) => Some(tc.prepare(pid, vpid, leader, code_addr)?),
        None => None,
    };
    let mut para_ = Parasite::inject(leader, code_addr).map_err(para)?;
    trace(&format!("pid {pid}: parasite in"));
    let sigacts = para_.sigactions().map_err(para)?;
    let itimers = para_.itimers().map_err(para)?;
    let posix = if timer_ids.is_empty() {
        Vec::new()
    } else {
        para_.posix_timers(&timer_ids).map_err(para)?
    };
    let misc = para_.misc().map_err(para)?;
    let mut tmisc = vec![para_.thread_misc().map_err(para)?];
    for t in others.iter_mut() {
        tmisc.push(para_.thread_misc_of(t).map_err(para)?);
    }
    // Pages: scanned with the parasite in place (like CRIU), spliced by it
    // into pipes in vmsplice mode.
    let t_mem = Instant::now();
    let live = is_live(&ctx.opts);
    let (runs, scanned, spliced) = if live {
        (Vec::new(), 0, None) // scanned below, after the parasite is gone
    } else if ctx.opts.pages == PageReader::Vmsplice {
        // The parasite runs in the target's thread: at the target's
        // priority a busy machine would stretch this, the longest step of
        // the frozen window. Its policy is back before anything reads it.
        let _rt = Realtime::thread(pid);
        let (runs, scanned, pipes) = scan_and_splice(&mut para_, &mut ctx.pool, pid, &f.vmas, tracked.as_mut())?;
        (runs, scanned, Some(pipes))
    } else {
        let (runs, scanned) = scan_pages(pid, &f.vmas, tracked.as_mut())?;
        (runs, scanned, None)
    };
    trace(&format!("pid {pid}: scan+splice {:?}", t_mem.elapsed()));
    ctx.stats.memdump_time += t_mem.elapsed().as_micros() as u32;
    ctx.stats.pages_scanned += scanned;
    trace(&format!("pid {pid}: curing"));
    para_.cure().map_err(para)?;
    let (runs, live) = if live {
        let t_mem = Instant::now();
        let (runs, scanned) = scan_pages(pid, &f.vmas, tracked.as_mut())?;
        ctx.stats.pages_scanned += scanned;
        let armed = live::arm(pid, leader, code_addr, &f.vmas, &runs)?;
        ctx.stats.memdump_time += t_mem.elapsed().as_micros() as u32;
        trace(&format!("pid {pid}: copy-before-write armed {:?}", t_mem.elapsed()));
        (runs, Some(armed))
    } else {
        (runs, None)
    };
    if let Some(t) = &tracked {
        ctx.stats.pages_skipped_parent += t.from_parent;
        trace(&format!(
            "pid {pid}: tracked: {} pages written, {} in the parent, {} untracked VMAs",
            t.written, t.from_parent, t.untracked
        ));
    }
    Ok(Inside {
        sigacts,
        itimers,
        posix,
        misc,
        tmisc,
        runs,
        spliced,
        rseq_abort,
        live,
    })
}

/// The VMA entries of mm-PID.img (the files they map get their ids now),
/// then the guard ranges.
fn vma_entries(ctx: &mut DumpCtx, pid: i32, f: &ProcFacts) -> Result<Vec<pb::VmaEntry>> {
    let mut vma_entries = Vec::new();
    for (v, k) in &f.vmas {
        let mut shmid = 0;
        if matches!(k, MapKind::ShmemLike | MapKind::MemfdPrivate) {
            let mf = format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end);
            let st = crate::files::stat_path(&mf).map_err(|source| DumpError::Io {
                path: mf.clone().into(),
                source,
            })?;
            let inode_id = ctx.files.shmem_inode(&mf, &v.name)?;
            shmid = ctx.files.mapped_file(st.st_dev, st.st_ino, |id, _| {
                Ok(crate::files::memfd::memfd_entry(id, 0, 0, inode_id))
            })? as u64;
        }
        if matches!(k, MapKind::FilePrivate | MapKind::FileShared) {
            let mf = format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end);
            let st = crate::files::stat_path(&mf).map_err(|source| DumpError::Io {
                path: mf.clone().into(),
                source,
            })?;
            let name = v.name.clone();
            let deleted = v.deleted;
            shmid = ctx.files.mapped_file(st.st_dev, st.st_ino, |id, t| {
                let open = if deleted { std::fs::File::open(&mf).ok() } else { None };
                reg::reg_entry(id, &name, deleted, &st, libc::O_RDONLY as u32, 0, open, t)
            })? as u64;
        }
        if *k == MapKind::SysvShm {
            shmid = v.ino; // the segment's id
        }
        let mut e = mm::vma_entry(v, *k, shmid);
        if v.has_flag("ht") {
            let size = hugetlb_page_size(pid, v)?;
            e.flags |= mm::hugetlb_size_flag(size).ok_or_else(|| hugetlb_refused(pid, v))?;
        }
        vma_entries.push(e);
    }
    let pm_path = format!("/proc/{pid}/pagemap");
    let io = |source| DumpError::Io {
        path: pm_path.clone().into(),
        source,
    };
    let pm = std::fs::File::open(&pm_path).map_err(io)?;
    vma_entries.extend(mm::guard_entries(std::os::fd::AsRawFd::as_raw_fd(&pm)).map_err(io)?);
    Ok(vma_entries)
}

/// The file id of /proc/PID/exe.
fn exe_file(ctx: &mut DumpCtx, pid: i32) -> Result<u32> {
    let exe = format!("/proc/{pid}/exe");
    let st = crate::files::stat_path(&exe).map_err(|source| DumpError::Io {
        path: exe.clone().into(),
        source,
    })?;
    let link = std::fs::read_link(&exe)
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (name, deleted) = reg::split_deleted(&link);
    let name = name.to_string();
    Ok(ctx.files.mapped_file(st.st_dev, st.st_ino, |id, t| {
        let open = if deleted { std::fs::File::open(&exe).ok() } else { None };
        reg::reg_entry(id, &name, deleted, &st, libc::O_RDONLY as u32, 0, open, t)
    })?)
}

/// fdinfo-`files_id`.img: every fd of the process (its files get their
/// ids now), unless the table is its parent's.
fn write_fd_table(ctx: &mut DumpCtx, p: &FrozenProc, f: &ProcFacts, files_id: u32) -> Result<()> {
    let pid = p.pid;
    // A task made with CLONE_FILES (not a thread) shares its fd table. As
    // with CRIU, a table shared with the parent is written once, by the
    // parent (dumped first), and the child names it by the same files_id; a
    // table shared with anybody else cannot be recreated by clone().
    let shared_with_parent = ctx.written_fdinfo.contains(&files_id)
        && crate::sys::kcmp(pid, p.ppid, crate::sys::KCMP_FILES, 0, 0).ok() == Some(0);
    if ctx.written_fdinfo.contains(&files_id) && !shared_with_parent {
        let other = ctx
            .kids
            .iter()
            .find(|k| k.0 == crate::sys::KCMP_FILES && k.2 == files_id)
            .map_or(0, |k| k.1);
        return Err(DumpError::Refused {
            pid,
            what: format!(
                "it shares its fd table with pid {other}, which is not its parent (clone with \
                 CLONE_FILES): only a table shared with the parent can be restored"
            ),
        });
    }
    if shared_with_parent {
        return Ok(());
    }
    let pidfd = crate::sys::pidfd_open(pid).map_err(|e| DumpError::task(pid, format!("pidfd_open: {e}")))?;
    let mut fdinfos = Vec::new();
    for (fd, link) in &f.fds {
        fdinfos.push(dump_one_fd(ctx, pid, *fd, link, &pidfd)?);
    }
    let path = ctx.out.path(&format!("fdinfo-{files_id}.img"));
    let w = write_image(&path, "FDINFO", &fdinfos)?;
    ctx.defer(w);
    ctx.written_fdinfo.push(files_id);
    Ok(())
}

/// A zombie: its pstree entry and a core with the exit status only (as CRIU).
fn dump_zombie(ctx: &mut DumpCtx, p: &FrozenProc) -> Result<()> {
    let pid = p.pid;
    let st =
        proc::parse_stat(&read(&format!("/proc/{pid}/stat"), pid)?).map_err(|e| DumpError::task(pid, e.to_string()))?;
    let core = pb::CoreEntry {
        mtype: pb::core_entry::March::X8664 as i32,
        tc: Some(pb::TaskCoreEntry {
            task_state: TASK_DEAD,
            exit_code: st.exit_code as u32,
            personality: 0,
            flags: st.flags,
            blk_sigset: 0,
            comm: st.comm.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let vpid = ctx.vpid(pid);
    let path = ctx.out.path(&format!("core-{vpid}.img"));
    let w = write_image(&path, "CORE", &[core])?;
    ctx.defer(w);
    let (pgid, sid) = pgid_sid(ctx, pid, st.pgid, st.sid);
    let entry = pb::PstreeEntry {
        pid: vpid as u32,
        ppid: ctx.vpid(p.ppid) as u32,
        pgid,
        sid,
        threads: vec![vpid as u32],
    };
    ctx.pstree.push(entry);
    Ok(())
}

fn dump_one_fd(ctx: &mut DumpCtx, pid: i32, fd: i32, link: &str, pidfd: &OwnedFd) -> Result<pb::FdinfoEntry> {
    let p = format!("/proc/{pid}/fd/{fd}");
    let st = crate::files::stat_path(&p).map_err(|source| DumpError::Io {
        path: p.clone().into(),
        source,
    })?;
    let fdinfo_path = format!("/proc/{pid}/fdinfo/{fd}");
    let mut info = proc::parse_fdinfo(&read(&fdinfo_path, pid)?).map_err(|e| DumpError::task(pid, e.to_string()))?;
    if info.locks.iter().any(crate::files::lock::is_breaking_line) {
        // A break whose time is up is finished first (files::lock).
        crate::files::lock::time_out_breaks(std::os::fd::AsRawFd::as_raw_fd(pidfd), fd)
            .map_err(|e| DumpError::task(pid, format!("fd {fd}: F_GETLEASE: {e}")))?;
        info = proc::parse_fdinfo(&read(&fdinfo_path, pid)?).map_err(|e| DumpError::task(pid, e.to_string()))?;
    }
    let mut locks = Vec::new();
    for l in &info.locks {
        // flock and OFD locks belong to the open file: whoever holds it
        // holds them (an inherited flock shows its creator's pid).
        // So do leases.
        let ours = l.pid == pid || (l.class == "OFDLCK" && l.pid == -1) || l.class == "FLOCK" || l.class == "LEASE";
        if !ours {
            continue;
        }
        if !ctx.opts.file_locks {
            return Err(DumpError::Refused {
                pid,
                what: format!("fd {fd} ({link}) holds a {} lock; dump it with --file-locks", l.class),
            });
        }
        let e =
            crate::files::lock::dump_entry(l, pid, fd, info.flags, link.ends_with(" (deleted)")).map_err(|what| {
                DumpError::Refused {
                    pid,
                    what: format!("fd {fd}: {what}"),
                }
            })?;
        locks.push(e);
    }
    let c = FdCtx {
        pid,
        fd,
        link: link.to_string(),
        stat: st,
        info,
        pidfd,
    };
    let fdinfo = ctx.files.dump_fd(&c)?;
    // A lock is recorded once: flock and OFD locks belong to the open file
    // (every fd sharing it lists them), POSIX locks to the process.
    for e in locks {
        let owner = if e.flag == crate::files::lock::FL_POSIX { pid } else { 0 };
        let key = (e.flag, owner, fdinfo.id, e.start, e.len, e.r#type);
        if !ctx.lock_keys.contains(&key) {
            ctx.lock_keys.push(key);
            ctx.locks.push(e);
        }
    }
    Ok(fdinfo)
}

/// cwd or root as a REG entry with a fresh id.
fn fs_file(ctx: &mut DumpCtx, pid: i32, which: &str) -> Result<u32> {
    let p = format!("/proc/{pid}/{which}");
    let st = crate::files::stat_path(&p).map_err(|source| DumpError::Io {
        path: p.clone().into(),
        source,
    })?;
    let link = std::fs::read_link(&p).map_err(|source| DumpError::Io {
        path: p.clone().into(),
        source,
    })?;
    let link = link.to_string_lossy().into_owned();
    let (name, deleted) = reg::split_deleted(&link);
    // A deleted directory is saved as a ghost directory (CRIU's way): it
    // is made again at restore, entered, and removed.
    let open = if deleted && !name.starts_with("/proc/") {
        Some(std::fs::File::open(&p).map_err(|source| DumpError::Io {
            path: p.clone().into(),
            source,
        })?)
    } else {
        None
    };
    let name = name.to_string();
    Ok(ctx
        .files
        .standalone(|id, t| reg::reg_entry(id, &name, deleted, &st, 0, 0, open, t))?)
}

/// Stage timings on stderr when CRYO_TRACE is set (for benchmarking).
fn trace(what: &str) {
    if std::env::var_os("CRYO_TRACE").is_some() {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let at = START.get_or_init(Instant::now).elapsed();
        eprintln!("cryo: {:>8.1} ms  {what}", at.as_secs_f64() * 1e3);
    }
}

/// An image with its entries, not finished yet: fsync and rename come after
/// the tree is released ([`DumpCtx::defer`], [`finish_images`]).
fn write_image<M: prost::Message>(path: &Path, magic: &str, entries: &[M]) -> Result<ImageWriter> {
    let mut w = ImageWriter::create(path, Some(magic))?;
    for e in entries {
        w.entry(e)?;
    }
    Ok(w)
}

impl DumpCtx {
    /// Keep an image to finish once the tree is no longer frozen.
    fn defer(&mut self, w: ImageWriter) {
        self.unfinished.push(w);
    }
}

/// fsync and rename every deferred image.
/// The fsyncs run in parallel (a few threads) so their journal commits overlap.
fn finish_images(all: Vec<ImageWriter>) -> Result<()> {
    let n = all.len().div_ceil(4).max(1);
    let mut groups: Vec<Vec<ImageWriter>> = Vec::new();
    for w in all {
        if groups.last().is_none_or(|g| g.len() >= n) {
            groups.push(Vec::new());
        }
        groups.last_mut().expect("a group").push(w);
    }
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let hs: Vec<_> = groups
            .into_iter()
            .map(|g| {
                s.spawn(move || -> Result<()> {
                    for w in g {
                        w.finish()?;
                    }
                    Ok(())
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(DumpError::task(0, "image writer thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// files.img and its side images, pstree, seccomp, timens.
fn write_shared(ctx: &mut DumpCtx) -> Result<()> {
    pidns_refusals(ctx)?;
    if let Some(u) = &ctx.ns.user {
        files_ids_inside(&mut ctx.files, u);
    }
    let entries: Vec<pb::FileEntry> = ctx.files.entries().cloned().collect();
    let path = ctx.out.path("files.img");
    let w = write_image(&path, "FILES", &entries)?;
    ctx.defer(w);
    let pipes: Vec<(pb::PipeDataEntry, Vec<u8>)> = ctx
        .files
        .pipes_data
        .values()
        // Every pipe, empty ones too: the entry carries the pipe's size (as CRIU).
        .cloned()
        .collect();
    if !pipes.is_empty() {
        let path = ctx.out.path("pipes-data.img");
        let mut w = ImageWriter::create(&path, Some("PIPES_DATA"))?;
        for (e, d) in &pipes {
            w.entry(e)?;
            w.raw(d)?;
        }
        ctx.defer(w);
    }
    let fifos: Vec<(pb::PipeDataEntry, Vec<u8>)> = ctx.files.fifo_data.values().cloned().collect();
    if !fifos.is_empty() {
        let path = ctx.out.path("fifo-data.img");
        let mut w = ImageWriter::create(&path, Some("FIFO_DATA"))?;
        for (e, d) in &fifos {
            w.entry(e)?;
            w.raw(d)?;
        }
        ctx.defer(w);
    }
    // Images the fd kinds share (sk-queues.img): entry, then its payload.
    let mut side = Vec::new();
    for (name, img) in ctx.files.side_images() {
        let mut w = ImageWriter::create(ctx.out.path(name), Some(img.magic))?;
        for (e, d) in &img.records {
            w.raw(&(e.len() as u32).to_le_bytes())?;
            w.raw(e)?;
            w.raw(d)?;
        }
        side.push(w);
    }
    for w in side {
        ctx.defer(w);
    }
    if !ctx.files.tty_infos.is_empty() {
        let data = crate::files::tty::finish(&mut ctx.files)?;
        let infos: Vec<pb::TtyInfoEntry> = ctx.files.tty_infos.values().cloned().collect();
        let path = ctx.out.path("tty-info.img");
        let w = write_image(&path, "TTY_INFO", &infos)?;
        ctx.defer(w);
        if !data.is_empty() {
            let path = ctx.out.path("tty-data.img");
            let w = write_image(&path, "TTY_DATA", &data)?;
            ctx.defer(w);
        }
    }
    if !ctx.locks.is_empty() {
        let locks = ctx.locks.clone();
        let path = ctx.out.path("filelocks.img");
        let w = write_image(&path, "FILE_LOCKS", &locks)?;
        ctx.defer(w);
    }
    if !ctx.files.shmem.is_empty() {
        let inodes: Vec<pb::MemfdInodeEntry> = ctx.files.shmem.iter().map(|s| s.entry.clone()).collect();
        let path = ctx.out.path("memfd.img");
        let w = write_image(&path, "MEMFD_INODE", &inodes)?;
        ctx.defer(w);
        let shmem = std::mem::take(&mut ctx.files.shmem);
        for sh in &shmem {
            let runs = crate::files::memfd::shmem_runs(sh).map_err(|source| DumpError::Io {
                path: format!("shared memory inode {}", sh.entry.shmid).into(),
                source,
            })?;
            let pages_path = ctx.out.path(&format!("pages-{}.img", sh.pages_id));
            let mut pw = ImageWriter::create(&pages_path, None)?;
            let path = ctx.out.path(&format!("pagemap-shmem-{}.img", sh.entry.shmid));
            let mut w = ImageWriter::create(&path, Some("PAGEMAP"))?;
            w.entry(&pb::PagemapHead { pages_id: sh.pages_id })?;
            let mut pages = 0u64;
            for (off, data) in &runs {
                w.entry(&pb::PagemapEntry {
                    vaddr: *off,
                    compat_nr_pages: 0,
                    in_parent: None,
                    flags: Some(mem::PE_PRESENT),
                    nr_pages: Some(data.len() as u64 / 4096),
                })?;
                pw.raw(data)?;
                pages += data.len() as u64 / 4096;
            }
            ctx.stats.shpages_scanned = Some(ctx.stats.shpages_scanned.unwrap_or(0) + sh.entry.size.div_ceil(4096));
            ctx.stats.shpages_written = Some(ctx.stats.shpages_written.unwrap_or(0) + pages);
            ctx.defer(w);
            ctx.defer(pw);
        }
        ctx.files.shmem = shmem;
    }
    if !ctx.files.remaps.is_empty() {
        let remaps = ctx.files.remaps.clone();
        let path = ctx.out.path("remap-fpath.img");
        let w = write_image(&path, "REMAP_FPATH", &remaps)?;
        ctx.defer(w);
    }
    let ghosts = std::mem::take(&mut ctx.files.ghosts);
    for (id, g, chunks) in &ghosts {
        let path = ctx.out.path(&format!("ghost-file-{id}.img"));
        let mut w = ImageWriter::create(&path, Some("GHOST_FILE"))?;
        w.entry(g)?;
        if g.chunks == Some(true) {
            for (off, data) in chunks {
                w.entry(&pb::GhostChunkEntry {
                    len: data.len() as u64,
                    off: *off,
                })?;
                w.raw(data)?;
            }
        } else {
            // Small files: the contents as one blob after the entry.
            for (_, data) in chunks {
                w.raw(data)?;
            }
        }
        ctx.defer(w);
    }
    let out = &mut ctx.out;
    let ns_images = ctx
        .ns_dump
        .write(|name, magic| ImageWriter::create(out.path(name), magic))?;
    for w in ns_images {
        ctx.defer(w);
    }
    if let Some(cg) = &ctx.cg.entry {
        let path = ctx.out.path("cgroup.img");
        let w = write_image(&path, "CGROUP", std::slice::from_ref(cg))?;
        ctx.defer(w);
    }
    let pstree = ctx.pstree.clone();
    let path = ctx.out.path("pstree.img");
    let w = write_image(&path, "PSTREE", &pstree)?;
    ctx.defer(w);
    let path = ctx.out.path("seccomp.img");
    let w = write_image(&path, "SECCOMP", &[ctx.seccomp.entry()])?;
    ctx.defer(w);
    let now = |c| {
        let (s, ns) = crate::sys::clock_gettime(c);
        pb::Timespec { tv_sec: s, tv_nsec: ns }
    };
    let tn = pb::TimensEntry {
        monotonic: now(libc::CLOCK_MONOTONIC),
        boottime: now(libc::CLOCK_BOOTTIME),
    };
    let path = ctx.out.path("timens-0.img");
    let w = write_image(&path, "TIMENS", &[tn])?;
    ctx.defer(w);
    Ok(())
}

fn write_stats(ctx: &mut DumpCtx) -> Result<()> {
    let mut s = ctx.stats;
    s.irmap_resolve = Some(0);
    s.page_pipes = Some(s.page_pipes.unwrap_or(0));
    s.page_pipe_bufs = s.page_pipes;
    s.shpages_scanned = Some(s.shpages_scanned.unwrap_or(0));
    s.shpages_skipped_parent = Some(0);
    s.shpages_written = Some(s.shpages_written.unwrap_or(0));
    let path = match &ctx.opts.work_dir {
        Some(w) => {
            let p = w.join("stats-dump");
            ctx.out.files.push(p.clone());
            p
        }
        None => ctx.out.path("stats-dump"),
    };
    write_image(
        &path,
        "STATS",
        &[pb::StatsEntry {
            dump: Some(s),
            restore: None,
        }],
    )?
    .finish()?;
    Ok(())
}

/// Does this dump copy memory live (after the tree runs again)?
fn is_live(o: &DumpOpts) -> bool {
    o.live && o.leave_running && o.notify.is_none() && o.pages == PageReader::Vmsplice
}

/// Microseconds since boot (/proc/uptime).
fn uptime_us() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some((secs * 1e6) as u64)
}

/// A fresh run id (a uuid): the inventory's dump_criu_run_id and what the
/// memory tracking records.
fn new_run_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The tracking of a dump with --track-mem or --prev-images-dir: opens the
/// parent (and makes the `parent` link to it, as criu does).
fn open_track(opts: &DumpOpts, run_id: &str) -> Result<Option<track::TrackCtx>> {
    if !opts.track_mem && opts.prev_images_dir.is_none() {
        return Ok(None);
    }
    let link = opts.dir.join("parent");
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(&link).map_err(|source| DumpError::Io {
            path: link.clone(),
            source,
        })?;
    }
    track::prune(&[]); // records of processes that are gone
    let parent = match &opts.prev_images_dir {
        Some(prev) => {
            let pdir = opts.dir.join(prev);
            if !pdir.join("inventory.img").is_file() {
                return Err(DumpError::Io {
                    path: pdir,
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "--prev-images-dir: not a complete image set (no inventory.img)",
                    ),
                });
            }
            Some(track::Parent::open(&pdir)?)
        }
        None => None,
    };
    Ok(Some(track::TrackCtx::new(run_id.to_string(), parent)))
}

/// After the inventory: the tracking records say this dump is the parent to use next.
fn commit_track(ctx: &mut DumpCtx) -> Result<()> {
    if let Some(t) = &ctx.track {
        if let Some(prev) = &ctx.opts.prev_images_dir {
            let link = ctx.opts.dir.join("parent");
            std::os::unix::fs::symlink(prev, &link).map_err(|source| DumpError::Io {
                path: link.clone(),
                source,
            })?;
            ctx.out.files.push(link);
        }
        let p = t.commit(&ctx.opts.dir)?;
        ctx.out.files.push(p);
    }
    Ok(())
}

fn write_inventory(ctx: &mut DumpCtx, pre_dump_mode: Option<u32>) -> Result<()> {
    // The run id the network lock is named after (restore removes it by
    // this name), and the one memory tracking records.
    let uuid = ctx.run_id.clone();
    let inv = pb::InventoryEntry {
        img_version: 2,
        fdinfo_per_id: Some(true),
        root_ids: Some(ctx.nsnum.root_ids()),
        ns_per_id: Some(true),
        root_cg_set: Some(1),
        lsmtype: Some(pb::Lsmtype::NoLsm as i32),
        // For criu's pid-reuse check of a later incremental dump.
        dump_uptime: ctx.track.as_ref().and_then(|_| uptime_us()),
        pre_dump_mode,
        tcp_close: ctx.files.tcp.close.then_some(true),
        network_lock_method: Some(ctx.files.tcp.lock as u32),
        plugins_entry: Some(pb::PluginsEntry { plugins: Vec::new() }),
        dump_criu_run_id: Some(uuid),
        allow_uprobes: None,
    };
    let path = ctx.out.path("inventory.img");
    write_image(&path, "INVENTORY", &[inv])?.finish()?;
    Ok(())
}

/// Warnings for sessions and process groups of the tree whose leader is not
/// in the tree but alive: a restore re-creates them with a helper task that
/// needs the leader's pid, so it fails while that process lives (typically
/// the shell the program was started from) unless restored with `-j`.
/// `comm` gives the name of a live pid (None: not running).
fn leaders_outside(pstree: &[pb::PstreeEntry], comm: impl Fn(u32) -> Option<String>) -> Vec<String> {
    let inside: std::collections::HashSet<u32> = pstree.iter().map(|p| p.pid).collect();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for p in pstree {
        for (what, leader) in [("session", p.sid), ("process group", p.pgid)] {
            if leader == 0 || inside.contains(&leader) || !seen.insert((what, leader)) {
                continue;
            }
            if let Some(name) = comm(leader) {
                out.push(format!(
                    "pid {}'s {what} leader {leader} ({name}) is not in the dumped tree and is running: \
                     restore with -j (--shell-job), or the restore fails while pid {leader} is in use",
                    p.pid
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod leader_tests {
    use super::*;

    fn e(pid: u32, pgid: u32, sid: u32) -> pb::PstreeEntry {
        pb::PstreeEntry {
            pid,
            ppid: 1,
            pgid,
            sid,
            threads: vec![pid],
        }
    }

    #[test]
    fn a_live_leader_outside_the_tree_asks_for_shell_job() {
        let alive = |pid: u32| (pid == 10).then(|| "bash".to_string());
        // Started from a shell without job control: the shell leads both.
        let w = leaders_outside(&[e(20, 10, 10), e(21, 10, 10)], alive);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("session leader 10 (bash)") && w[0].contains("-j"),
            "{w:?}"
        );
        assert!(w[1].contains("process group leader 10"), "{w:?}");
        // A daemon (its own session) or a gone leader: nothing to say.
        assert!(leaders_outside(&[e(20, 20, 20), e(21, 20, 20)], alive).is_empty());
        assert!(leaders_outside(&[e(20, 11, 11)], alive).is_empty());
    }
}
