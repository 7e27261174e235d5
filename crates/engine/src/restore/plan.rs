//! Validation: the whole image set is read and checked here, before anything
//! is created, and turned into a [`Plan`] of domain types. Every error names
//! the image file, the pid and the object at fault.

use super::sigframe::{AltStack, FpRegs, GpRegs, Xsave};
use crate::state::creds::Creds;
use crate::state::{mm, seccomp, sigactions, timers};
use cryo_abi::kernel::{Itimerval, KSigaction};
use cryo_abi::restorer::{RstCreds, RstPosixTimer, RST_MAX_GROUPS};
use cryo_image::{pb, ImageSet, Pagemap};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// Why an image set cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Image(#[from] cryo_image::ImageError),
    /// A bad or unsupported entry of the set (files' or the tasks').
    #[error(transparent)]
    Set(#[from] crate::files::SetError),
    /// A task's state entry (`crate::state`), in the image `file`.
    #[error("{file}: pid {pid}: {source}")]
    State {
        file: String,
        pid: i32,
        source: crate::state::StateError,
    },
    /// The tree's namespaces (the image and what is wrong or refused).
    #[error(transparent)]
    Ns(#[from] crate::state::ns::NsError),
}

/// A state module's error `e`, found in `file` for `pid`.
fn at<E: Into<crate::state::StateError>>(file: &str, pid: i32) -> impl FnOnce(E) -> PlanError + '_ {
    move |e| PlanError::State {
        file: file.to_string(),
        pid,
        source: e.into(),
    }
}

fn bad(file: impl Into<String>, pid: i32, what: impl Into<String>) -> PlanError {
    crate::files::set_bad(file, pid, what).into()
}

fn unsupported(file: impl Into<String>, pid: i32, what: impl Into<String>) -> PlanError {
    crate::files::set_unsupported(file, pid, what).into()
}

/// A whole-set problem in `file`.
fn bad_set(file: impl Into<String>, what: impl Into<String>) -> PlanError {
    crate::files::SetError::BadSet {
        file: file.into(),
        what: what.into(),
    }
    .into()
}

/// CRIU's task states (criu/include/pid.h; crit 3.17's names for 3 and 6
/// are off, cryo dump writes these values too).
pub const TASK_ALIVE: u32 = 1;
/// A loginuid that was never set ((uid_t)-1).
pub const LOGINUID_UNSET: u32 = u32::MAX;
pub const TASK_DEAD: u32 = 2;
pub const TASK_STOPPED: u32 = 3;
pub use crate::state::mm::{vma_status, Mm, Vma, VmaKind};
pub use crate::state::seccomp::{Seccomp, SeccompProg};

/// One thread.
#[derive(Clone, Debug)]
pub struct Thread {
    pub tid: i32,
    pub regs: GpRegs,
    pub fp: FpRegs,
    pub clear_tid: u64,
    pub sigmask: u64,
    pub alt: AltStack,
    pub creds: Option<RstCreds>,
    pub signals: Vec<[u8; 128]>,
    pub rseq: Option<(u64, u32, u32)>,
    pub comm: String,
    pub pdeath_sig: u32,
    /// Its cgroup set (core's thread_core cg_set; 0: none recorded).
    pub cg_set: u32,
    /// Robust futex list head and length (0, 0: none).
    pub futex_rla: (u64, u32),
    /// (nice, policy, priority) if dumped.
    pub sched: Option<(i32, i32, i32)>,
    pub seccomp: Seccomp,
    /// PR_SET_NO_NEW_PRIVS (from the creds).
    pub no_new_privs: bool,
}

/// An fd of a process (defined with the files).
pub use crate::files::Fd;

/// One process of the tree.
#[derive(Clone, Debug)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub state: u32,
    pub exit_code: u32,
    pub stop_signo: u32,
    pub threads: Vec<Thread>,
    pub mm: Option<Mm>,
    pub fds: Vec<Fd>,
    /// It shares its parent's fd table (clone with CLONE_FILES): it is
    /// forked with CLONE_FILES and `fds` is empty (the parent sets them up).
    pub shares_parent_fds: bool,
    pub cwd: Option<u32>,
    pub root: Option<u32>,
    pub umask: u32,
    pub rlimits: Vec<(u64, u64)>,
    pub personality: u32,
    pub sigactions: Vec<KSigaction>,
    pub itimers: [Itimerval; 3],
    pub posix_timers: Vec<RstPosixTimer>,
    pub shared_signals: Vec<[u8; 128]>,
    pub child_subreaper: bool,
    pub comm: String,
    pub oom_score_adj: Option<i32>,
    /// The audit loginuid (/proc/PID/loginuid; [`LOGINUID_UNSET`] = never set).
    pub loginuid: Option<u32>,
    /// membarrier() registrations of the mm.
    pub membarrier: crate::membarrier::Registrations,
    /// Its cgroup set in cgroup.img (its leader thread's; 0: none, a zombie).
    pub cg_set: u32,
}

/// Everything needed to restore a tree, validated.
#[derive(Debug)]
pub struct Plan {
    pub dir: PathBuf,
    pub procs: Vec<Proc>,
    /// Every file of the set with its side images (files::FileSet: pipe and
    /// FIFO data, terminals, memfd inodes, owners, dead pids of PROCFS remaps).
    pub files: crate::files::FileSet,
    pub set: Arc<ImageSet>,
    /// File locks (filelocks.img, dumped with --file-locks).
    pub locks: Vec<pb::FileLockEntry>,
    /// seccomp.img: every filter program, by index.
    pub seccomp: Vec<SeccompProg>,
    /// timens-0.img: CLOCK_MONOTONIC and CLOCK_BOOTTIME (seconds,
    /// nanoseconds) when the set was dumped.
    pub dumped_clocks: Option<[(u64, u64); 2]>,
    /// Tasks that hold sessions and groups whose leader is gone (filled in
    /// by [`helpers`], which depends on the --shell-job option).
    pub helpers: Vec<Helper>,
    /// The namespaces the restore creates (the tree's own).
    pub ns: crate::state::ns::NsPlan,
}

/// A short-lived task with the pid of a session or group whose leader is
/// not in the tree (a daemon's exited intermediate process). It calls
/// setsid() (session) or setpgid(0, 0) (group), forks the tasks that need
/// to inherit that session (with CLONE_PARENT: they stay children of their
/// dumped parent), stays until every member has joined its group, and is
/// reaped by whoever forked it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Helper {
    pub pid: i32,
    /// Who forks it: a tree pid, another helper's pid, or 0 for cryo.
    pub parent: i32,
    /// Leads session `pid` (and its group), not only group `pid`.
    pub session: bool,
    /// Tree tasks it forks (the topmost tasks of its session).
    pub tasks: Vec<i32>,
}

impl Plan {
    /// Largest fd number any process uses.
    pub fn max_fd(&self) -> i32 {
        self.procs
            .iter()
            .flat_map(|p| p.fds.iter().map(|f| f.fd))
            .max()
            .unwrap_or(2)
    }
    pub fn proc(&self, pid: i32) -> Option<&Proc> {
        self.procs.iter().find(|p| p.pid == pid)
    }
    pub fn children(&self, pid: i32) -> impl Iterator<Item = &Proc> {
        self.procs.iter().filter(move |p| p.ppid == pid && p.pid != pid)
    }
    /// All pids and tids the restore will take.
    pub fn all_ids(&self) -> Vec<i32> {
        self.procs
            .iter()
            .flat_map(|p| p.threads.iter().map(|t| t.tid))
            .collect()
    }
    pub fn root(&self) -> &Proc {
        &self.procs[0]
    }
}

/// Files in a set that name objects cryo cannot restore yet; finding one of
/// them refuses the whole set up front.
const REFUSED_IMAGES: &[(&str, &str)] = &[
    (
        "inetsk.img",
        "inet socket images of the old separate-image layout (CRIU 4.2 keeps them in files.img)",
    ),
    ("unixsk.img", "unix sockets"),
    ("packetsk.img", "packet sockets"),
    ("netlinksk.img", "netlink sockets"),
    // CRIU before 3.x wrote these kinds to images of their own; cryo reads
    // them from files.img only (as CRIU 4.2 writes them).
    ("eventfd.img", "eventfd images of the old separate-image layout"),
    ("eventpoll", "epoll images of the old separate-image layout"),
    ("timerfd.img", "timerfd images of the old separate-image layout"),
    ("signalfd.img", "signalfd images of the old separate-image layout"),
    ("inotify", "inotify images of the old separate-image layout"),
    ("fanotify", "fanotify"),
];

/// Read and check every image of the set.
pub fn build(dir: &std::path::Path) -> Result<Plan, PlanError> {
    let set = Arc::new(ImageSet::open(dir)?);
    let (inv, listing) = check_set(&set, dir)?;
    let pstree = set.pstree()?;

    // Files (files::FileSet: every entry described by its kind).
    let tree_pids: Vec<i32> = pstree.iter().map(|p| p.pid as i32).collect();
    let mut files = crate::files::FileSet::build(&set, &tree_pids)?;

    let dumped_clocks = read_timens(&set, &listing)?;
    let seccomp = read_seccomp(&set)?;
    let procs = build_procs(&set, &pstree, &files, &seccomp)?;
    // The tree's own namespaces (state::ns): checked, with their contents.
    let mut task_ids = Vec::new();
    for p in procs.iter().filter(|p| p.state != TASK_DEAD) {
        task_ids.push((p.pid, set.ids(p.pid as u32)?));
    }
    let ns = crate::state::ns::describe(&set, inv.root_ids.as_ref(), &task_ids)?;
    if let Some(u) = &ns.user {
        check_user_ids(&set, &procs, u)?;
    }
    // Sessions and groups whose leader is not in the tree get helper tasks
    // (see [`helpers`], planned with the caller's options).
    // The files against the whole tree (epoll targets, pidfd holders, file
    // owners, controlling terminals...).
    files.check(file_tree(&procs))?;
    let mut locks = Vec::new();
    if set.has("filelocks.img") {
        let lf = set.path("filelocks.img").display().to_string();
        locks = set.entries::<pb::FileLockEntry>("filelocks.img", "FILE_LOCKS")?;
        for (i, l) in locks.iter().enumerate() {
            let owner = procs.iter().find(|p| p.pid == l.pid);
            // FL_POSIX, FL_FLOCK, FL_OFD, FL_LEASE (criu/include/file-lock.h).
            let lease_ok = l.flag != 8 || crate::files::lock::lease_type_ok(l.r#type);
            let ok = matches!(l.flag, 1 | 2 | 4 | 8)
                && lease_ok
                && owner.is_some_and(|p| p.fds.iter().any(|f| f.fd == l.fd));
            if !ok {
                return Err(unsupported(
                    &lf,
                    l.pid,
                    format!(
                        "entry {i}: lock (flag {}, type {}) on fd {} (only POSIX, flock and OFD locks and read or write leases, being broken or not, held through a dumped fd of a dumped task, are restored)",
                        l.flag, l.r#type, l.fd
                    ),
                ));
            }
        }
    }
    Ok(Plan {
        dir: dir.to_path_buf(),
        procs,
        files,
        set,
        locks,
        seccomp: seccomp.progs,
        dumped_clocks,
        helpers: Vec::new(),
        ns,
    })
}

/// In a user namespace of its own: every id of every thread's credentials
/// (the namespace's) and every set loginuid must be mapped, or the restore
/// could not apply them.
fn check_user_ids(set: &ImageSet, procs: &[Proc], u: &crate::state::userns::UserNs) -> Result<(), PlanError> {
    for p in procs.iter().filter(|p| p.state != TASK_DEAD) {
        for t in &p.threads {
            let Some(c) = &t.creds else { continue };
            let e = pb::CredsEntry {
                uid: c.uid,
                euid: c.euid,
                suid: c.suid,
                fsuid: c.fsuid,
                gid: c.gid,
                egid: c.egid,
                sgid: c.sgid,
                fsgid: c.fsgid,
                groups: c.groups[..(c.ngroups as usize).min(c.groups.len())].to_vec(),
                ..Default::default()
            };
            u.check_creds(&e).map_err(|what| {
                unsupported(
                    set.path(&format!("core-{}.img", t.tid)).display().to_string(),
                    t.tid,
                    format!("credentials: {what} (refused before creating any task)"),
                )
            })?;
        }
        if let Some(l) = p.loginuid.filter(|&l| l != LOGINUID_UNSET) {
            u.outside_uid(l).map_err(|what| {
                unsupported(
                    set.path(&format!("core-{}.img", p.pid)).display().to_string(),
                    p.pid,
                    format!("loginuid: {what}"),
                )
            })?;
        }
    }
    Ok(())
}

/// The tree as the files see it.
fn file_tree(procs: &[Proc]) -> crate::files::Tree {
    crate::files::Tree {
        tasks: procs
            .iter()
            .map(|p| crate::files::Task {
                pid: p.pid,
                sid: p.sid,
                pgid: p.pgid,
                tids: p.threads.iter().map(|t| t.tid).collect(),
                alive: p.state != TASK_DEAD,
                fds: p.fds.clone(),
            })
            .collect(),
    }
}

/// The checks of the whole set before any entry is looked at: those of
/// `crit check` (structure, cross references, pages, the process tree,
/// with the restore's demands on it), the image version, and the images
/// of objects cryo cannot restore. Returns the inventory and the sorted
/// names of the directory.
fn check_set(set: &ImageSet, dir: &std::path::Path) -> Result<(pb::InventoryEntry, Vec<String>), PlanError> {
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(4_194_304);
    let opts = cryo_image::check::CheckOpts {
        pid_max: Some(pid_max),
        leader_first: true,
    };
    let report = cryo_image::check::check_set_with(set, opts);
    let problems: Vec<_> = report.problems.iter().collect();
    if let Some(p) = problems.first() {
        let more = problems.len() - 1;
        let tail = if more > 0 {
            format!(" (and {more} more problem(s); see crit check)")
        } else {
            String::new()
        };
        return Err(bad_set(set.path(&p.file).display().to_string(), format!("{}{tail}", p)));
    }
    let inv = set.inventory()?;
    if inv.img_version != 2 {
        return Err(bad_set(
            set.path("inventory.img").display().to_string(),
            format!("image version {} (only 2 is known)", inv.img_version),
        ));
    }
    let mut listing: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| bad_set(dir.display().to_string(), e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    listing.sort();
    for name in &listing {
        for (prefix, what) in REFUSED_IMAGES {
            if name.starts_with(prefix) {
                return Err(bad_set(
                    set.path(name).display().to_string(),
                    format!("{what} are not supported by cryo restore yet (refused before creating any task)"),
                ));
            }
        }
    }
    Ok((inv, listing))
}

/// Every process of the tree, in pstree order. fd tables shared between
/// processes (CLONE_FILES): as with CRIU, a task may share its parent's
/// table (it is then forked with CLONE_FILES); a table shared by tasks of
/// which neither is the other's parent cannot be made by clone() and is
/// refused.
fn build_procs(
    set: &ImageSet,
    pstree: &[pb::PstreeEntry],
    files: &crate::files::FileSet,
    seccomp: &seccomp::Table,
) -> Result<Vec<Proc>, PlanError> {
    let mut files_ids: BTreeMap<u32, i32> = BTreeMap::new();
    let mut task_files: BTreeMap<u32, u32> = BTreeMap::new();
    let mut shares_parent: BTreeSet<u32> = BTreeSet::new();
    for p in pstree {
        if !set.has(&format!("ids-{}.img", p.pid)) {
            continue;
        }
        let ids = set.ids(p.pid)?;
        task_files.insert(p.pid, ids.files_id);
        if let Some(other) = files_ids.insert(ids.files_id, p.pid as i32) {
            if task_files.get(&p.ppid) == Some(&ids.files_id) {
                shares_parent.insert(p.pid);
                continue;
            }
            return Err(unsupported(
                set.path(&format!("ids-{}.img", p.pid)).display().to_string(),
                p.pid as i32,
                format!(
                    "an fd table shared with pid {other}, which is not its parent (files_id {}, \
                     CLONE_FILES): only a table shared with the parent can be restored",
                    ids.files_id
                ),
            ));
        }
    }
    pstree
        .iter()
        .map(|p| build_proc(set, p, files, seccomp, shares_parent.contains(&p.pid)))
        .collect()
}

/// Plan the helper tasks: one per session id and per group id that is no
/// pid of the tree (with `shell_job`, the root keeps cryo's session and
/// group, so the root's dumped ones need none). A session helper is forked
/// where the topmost tasks of its session would be (a session is inherited
/// by fork only); a group helper where the group's first member is forked,
/// which is inside the right session.
pub fn helpers(plan: &Plan, shell_job: bool) -> Result<Vec<Helper>, PlanError> {
    let file = plan.set.path("pstree.img").display().to_string();
    let ids: Vec<TreeIds> = plan
        .procs
        .iter()
        .map(|p| TreeIds {
            pid: p.pid,
            ppid: p.ppid,
            sid: p.sid,
            pgid: p.pgid,
        })
        .collect();
    let helpers = plan_helpers(&ids, shell_job, &file)?;
    // A task sharing its parent's fd table is cloned by that parent with
    // CLONE_FILES, runs the same program (exec would have unshared the
    // table) and keeps the parent's exe fd for PR_SET_MM_MAP.
    for p in plan.procs.iter().filter(|p| p.shares_parent_fds) {
        let ids = set_path_ids(plan, p.pid);
        if helpers.iter().any(|h| h.tasks.contains(&p.pid)) {
            return Err(unsupported(
                ids,
                p.pid,
                format!(
                    "it shares the fd table of its parent {} but must be forked by a session/group \
                     helper (its session or group leader is not in the tree)",
                    p.ppid
                ),
            ));
        }
        let exe = |q: &Proc| q.mm.as_ref().map(|m| m.exe_file);
        let parent = plan.proc(p.ppid);
        if parent.map(|q| q.state == TASK_DEAD).unwrap_or(true) || parent.and_then(exe) != exe(p) {
            return Err(unsupported(
                ids,
                p.pid,
                format!(
                    "it shares the fd table of its parent {}, which is dead or runs another executable",
                    p.ppid
                ),
            ));
        }
    }
    Ok(helpers)
}

fn set_path_ids(plan: &Plan, pid: i32) -> String {
    plan.set.path(&format!("ids-{pid}.img")).display().to_string()
}

/// The ids of one task that [`plan_helpers`] looks at.
#[derive(Clone, Copy, Debug)]
pub struct TreeIds {
    pub pid: i32,
    pub ppid: i32,
    pub sid: i32,
    pub pgid: i32,
}

/// [`helpers`] over the tree's ids (root first, parents before children).
pub fn plan_helpers(procs: &[TreeIds], shell_job: bool, file: &str) -> Result<Vec<Helper>, PlanError> {
    let Some(root) = procs.first() else {
        return Ok(Vec::new());
    };
    let pids: BTreeSet<i32> = procs.iter().map(|p| p.pid).collect();
    // Who forks a task: its parent, or cryo (0) for the root and for tasks
    // whose parent was outside the tree.
    let forker = |p: &TreeIds| {
        if p.pid == root.pid || !pids.contains(&p.ppid) {
            0
        } else {
            p.ppid
        }
    };
    // The session a forker's children inherit, when it is a dumped one.
    let session_of = |f: i32| match procs.iter().find(|q| q.pid == f) {
        Some(q) if !(shell_job && q.pid == root.pid) => Some(q.sid),
        _ => None,
    };
    let kept = |id: i32, dumped: i32| shell_job && id == dumped;
    let mut out: Vec<Helper> = Vec::new();
    let mut via: HashMap<i32, i32> = HashMap::new();
    for p in procs {
        // 0: a session from outside the pid namespace (inherited as is).
        if p.sid <= 0 || pids.contains(&p.sid) || kept(p.sid, root.sid) {
            continue;
        }
        let f = forker(p);
        if session_of(f) == Some(p.sid) {
            continue; // inherited from its parent
        }
        match out.iter_mut().find(|h| h.pid == p.sid) {
            Some(h) if h.parent == f => h.tasks.push(p.pid),
            Some(h) => {
                return Err(unsupported(
                    file,
                    p.pid,
                    format!(
                        "session {} (its leader is gone) has topmost tasks under different parents ({} and {})",
                        p.sid, h.parent, f
                    ),
                ))
            }
            None => out.push(Helper {
                pid: p.sid,
                parent: f,
                session: true,
                tasks: vec![p.pid],
            }),
        }
        via.insert(p.pid, p.sid);
    }
    for p in procs {
        let g = p.pgid;
        if g <= 0 || pids.contains(&g) || kept(g, root.pgid) || out.iter().any(|h| h.pid == g) {
            continue;
        }
        if let Some(q) = procs.iter().find(|q| q.pgid == g && q.sid != p.sid) {
            return Err(bad(
                file,
                q.pid,
                format!(
                    "process group {g} spans sessions {} (pid {}) and {}",
                    p.sid, p.pid, q.sid
                ),
            ));
        }
        out.push(Helper {
            pid: g,
            parent: via.get(&p.pid).copied().unwrap_or_else(|| forker(p)),
            session: false,
            tasks: Vec::new(),
        });
    }
    Ok(out)
}

/// A pagemap image and the pages file it names (`ImageSet::pagemap_file`
/// decodes it with the static prost types, no descriptor pool).
pub fn read_pagemap(set: &ImageSet, name: &str) -> Result<(Arc<Pagemap>, PathBuf), PlanError> {
    let pm = set.pagemap_file(name)?;
    let pages = set.path(&format!("pages-{}.img", pm.pages_id));
    Ok((Arc::new(pm), pages))
}

fn gpregs(r: &pb::UserX86RegsEntry) -> GpRegs {
    GpRegs {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        bp: r.bp,
        bx: r.bx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        ax: r.ax,
        cx: r.cx,
        dx: r.dx,
        si: r.si,
        di: r.di,
        orig_ax: r.orig_ax,
        ip: r.ip,
        cs: r.cs,
        flags: r.flags,
        sp: r.sp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        fs: r.fs,
        gs: r.gs,
    }
}

fn u32s(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn u64s(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// XSAVE state components by number, as the SDM names them.
const XSTATE_NAMES: [(u32, &str); 11] = [
    (2, "AVX"),
    (3, "MPX bound registers"),
    (4, "MPX BNDCSR"),
    (5, "AVX-512 opmask"),
    (6, "AVX-512 ZMM_Hi256"),
    (7, "AVX-512 Hi16_ZMM"),
    (9, "PKRU (protection keys)"),
    (11, "CET user"),
    (14, "HWP"),
    (17, "AMX tile config"),
    (18, "AMX tile data"),
];

/// PKRU's value at exec (every key but 0 write-disabled): a thread whose
/// PKRU still holds it never used protection keys.
const PKRU_DEFAULT: u32 = 0x5555_5554;

/// A thread whose FPU state is in use in components this CPU has not enabled
/// (XCR0) ran code for a CPU this one is not: glibc picked its AVX-512
/// string functions at start-up, say, and the restored program would die of
/// SIGILL in the first of them. Refused, naming the features (CRIU's
/// `--cpu-cap fpu` check). An untouched PKRU is the one exception: nothing
/// is lost without it.
fn cpu_has_xstate(x: &pb::UserX86XsaveEntry, xcr0: u64) -> Result<(), String> {
    let mut missing = x.xstate_bv & !xcr0 & !3;
    if missing & (1 << 9) != 0 && x.pkru.first().is_none_or(|&v| v == PKRU_DEFAULT) {
        missing &= !(1 << 9);
    }
    if missing == 0 {
        return smaller_area(x, xcr0);
    }
    let names: Vec<String> = (2..64)
        .filter(|b| missing & (1u64 << b) != 0)
        .map(|b| match XSTATE_NAMES.iter().find(|(n, _)| *n == b) {
            Some((_, name)) => (*name).to_string(),
            None => format!("xsave component {b}"),
        })
        .collect();
    Err(format!(
        "the thread's FPU state uses {} (xstate_bv {:#x}), which this CPU does not have (XCR0 {:#x}): \
         the image was dumped on a CPU with more features, and code chosen for it would fault here",
        names.join(", "),
        x.xstate_bv,
        xcr0
    ))
}

/// The other direction: the image's FPU state carries no registers of a
/// component this CPU enables (AVX: ymmh_space; AVX-512: opmask_reg,
/// zmm_upper, hi16_zmm; CRIU and cryo write them for every component the
/// dumping CPU enabled, in use or not), so it was dumped on a CPU without
/// it. glibc sized the frames in which ld.so's lazy binding saves the FPU
/// state (`xsavec`) for that CPU's smaller XSAVE area; here `xsavec` writes
/// past them, over the caller's stack: the program goes on wrong or dies.
/// Refused, naming the component (docs/architecture.md, "A larger XSAVE area").
fn smaller_area(x: &pb::UserX86XsaveEntry, xcr0: u64) -> Result<(), String> {
    let avx512 = 0b111u64 << 5;
    let mut names = Vec::new();
    if xcr0 & 4 != 0 && x.ymmh_space.is_empty() {
        names.push("AVX");
    }
    if xcr0 & avx512 == avx512 && x.opmask_reg.is_empty() && x.zmm_upper.is_empty() && x.hi16_zmm.is_empty() {
        names.push("AVX-512");
    }
    if names.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the thread's FPU state has no {} registers: it was dumped on a CPU that does not have {}, and this CPU \
         enables it (XCR0 {:#x}): the program's FPU save frames are too small for this CPU's XSAVE area and \
         would overflow its stack",
        names.join(" or "),
        names.join(" or "),
        xcr0
    ))
}

fn fpregs(f: &pb::UserX86FpregsEntry, file: &str, tid: i32) -> Result<FpRegs, PlanError> {
    let mut st = [0u32; 32];
    let mut xmm = [0u32; 64];
    if f.st_space.len() != 32 || f.xmm_space.len() != 64 {
        return Err(bad(
            file,
            tid,
            format!(
                "fpregs: st_space {} / xmm_space {} words, expected 32 / 64",
                f.st_space.len(),
                f.xmm_space.len()
            ),
        ));
    }
    st.copy_from_slice(&f.st_space);
    xmm.copy_from_slice(&f.xmm_space);
    if let Some(x) = &f.xsave {
        cpu_has_xstate(x, crate::sys::xcr0().unwrap_or(3)).map_err(|what| bad(file, tid, what))?;
    }
    let xsave = f.xsave.as_ref().map(|x| {
        let mut comps = Vec::new();
        let mut add = |n: u32, b: Vec<u8>| {
            if !b.is_empty() {
                comps.push((n, b))
            }
        };
        add(2, u32s(&x.ymmh_space));
        add(3, u64s(&x.bndreg_state));
        add(4, u64s(&x.bndcsr_state));
        add(5, u64s(&x.opmask_reg));
        add(6, u64s(&x.zmm_upper));
        add(7, u64s(&x.hi16_zmm));
        add(9, u32s(&x.pkru));
        Xsave {
            xstate_bv: x.xstate_bv,
            components: comps,
        }
    });
    Ok(FpRegs {
        cwd: f.cwd as u16,
        swd: f.swd as u16,
        twd: f.twd as u16,
        fop: f.fop as u16,
        rip: f.rip,
        rdp: f.rdp,
        mxcsr: f.mxcsr,
        mxcsr_mask: f.mxcsr_mask,
        st_space: st,
        xmm_space: xmm,
        xsave,
    })
}

/// The restorer's credentials of a thread.
fn rst_creds(c: &Creds) -> RstCreds {
    const _: () = assert!(crate::state::creds::MAX_GROUPS == RST_MAX_GROUPS);
    let mut groups = [0u32; RST_MAX_GROUPS];
    groups[..c.groups.len()].copy_from_slice(&c.groups);
    RstCreds {
        uid: c.uid,
        euid: c.euid,
        suid: c.suid,
        fsuid: c.fsuid,
        gid: c.gid,
        egid: c.egid,
        sgid: c.sgid,
        fsgid: c.fsgid,
        cap_inh: c.cap_inh,
        cap_prm: c.cap_prm,
        cap_eff: c.cap_eff,
        cap_bnd: c.cap_bnd,
        cap_amb: c.cap_amb,
        secbits: c.secbits,
        ngroups: c.groups.len() as u32,
        groups,
    }
}

fn siginfos(q: Option<&pb::SignalQueueEntry>, file: &str, tid: i32) -> Result<Vec<[u8; 128]>, PlanError> {
    let mut out = Vec::new();
    for (i, s) in q.map(|q| q.signals.as_slice()).unwrap_or(&[]).iter().enumerate() {
        let b: [u8; 128] = s.siginfo.as_slice().try_into().map_err(|_| {
            bad(
                file,
                tid,
                format!("pending signal {i}: siginfo is {} bytes, expected 128", s.siginfo.len()),
            )
        })?;
        out.push(b);
    }
    Ok(out)
}

/// timens-<id>.img. CRIU writes timens-0.img with the dumper's
/// CLOCK_MONOTONIC and CLOCK_BOOTTIME at dump time (not offsets: a restore
/// into a new time namespace would derive the offsets from them). Tasks of
/// the set live in the restoring time namespace (a task in a time namespace
/// of its own is refused with the other namespaces, by its ids), so the
/// clocks are only checked and reported. Any other timens image describes a
/// time namespace of the tree: refused.
fn read_timens(set: &ImageSet, listing: &[String]) -> Result<Option<[(u64, u64); 2]>, PlanError> {
    for name in listing
        .iter()
        .filter(|n| n.starts_with("timens-") && n.ends_with(".img"))
    {
        // timens-ID.img with ID > 0 is a time namespace of the tree:
        // state::ns reads the one its tasks are in.
        if name != "timens-0.img" {
            continue;
        }
    }
    if !set.has("timens-0.img") {
        return Ok(None);
    }
    let file = set.path("timens-0.img").display().to_string();
    let entries: Vec<pb::TimensEntry> = set.entries("timens-0.img", "TIMENS")?;
    let [e] = entries.as_slice() else {
        return Err(bad_set(file, format!("{} entries, expected one", entries.len())));
    };
    let mut clocks = [(0, 0); 2];
    for (i, (clock, t)) in [("monotonic", &e.monotonic), ("boottime", &e.boottime)]
        .into_iter()
        .enumerate()
    {
        if t.tv_nsec >= 1_000_000_000 || t.tv_sec > i64::MAX as u64 {
            return Err(bad_set(
                file,
                format!("{clock} clock {}.{:09} is not a valid time", t.tv_sec, t.tv_nsec),
            ));
        }
        clocks[i] = (t.tv_sec, t.tv_nsec);
    }
    Ok(Some(clocks))
}

/// seccomp.img: the programs (validated) and each filter's predecessor.
fn read_seccomp(set: &ImageSet) -> Result<seccomp::Table, PlanError> {
    if !set.has("seccomp.img") {
        return Ok(seccomp::Table::default());
    }
    let file = set.path("seccomp.img").display().to_string();
    let entries: Vec<pb::SeccompEntry> = set.entries("seccomp.img", "SECCOMP")?;
    seccomp::describe(&entries).map_err(at(&file, 0))
}

/// Scheduling and rseq state the restore cannot bring back.
fn check_sched_rseq(thc: &pb::ThreadCoreEntry, file: &str, tid: i32) -> Result<(), PlanError> {
    if let Some(pol) = thc.sched_policy {
        // What sched_setscheduler takes: OTHER, FIFO, RR, BATCH, IDLE (+ RESET_ON_FORK).
        let base = pol & !(libc::SCHED_RESET_ON_FORK as u32);
        if ![0, 1, 2, 3, 5].contains(&base) {
            return Err(unsupported(file, tid, format!("scheduling policy {pol:#x}")));
        }
    }
    if let Some(cs) = thc
        .rseq_entry
        .as_ref()
        .and_then(|r| r.rseq_cs_pointer)
        .filter(|&c| c != 0)
    {
        // CRIU's image of a thread in a critical section that must not
        // restart on a signal: its rseq_cs would have to be written back
        // just before the thread runs.
        return Err(unsupported(
            file,
            tid,
            format!("an rseq critical section pointer ({cs:#x}, RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL)"),
        ));
    }
    Ok(())
}

fn build_thread(
    set: &ImageSet,
    tid: i32,
    leader_tc: Option<&pb::TaskCoreEntry>,
    seccomp: &seccomp::Table,
) -> Result<Thread, PlanError> {
    let file = set.path(&format!("core-{tid}.img")).display().to_string();
    let core = set.core(tid as u32)?;
    if core.mtype != pb::core_entry::March::X8664 as i32 {
        return Err(unsupported(&file, tid, format!("architecture {}", core.mtype)));
    }
    let ti = core
        .thread_info
        .as_ref()
        .ok_or_else(|| bad(&file, tid, "no thread_info"))?;
    if ti.gpregs.mode.unwrap_or(1) != pb::UserX86RegsMode::Native as i32 {
        return Err(unsupported(&file, tid, "a 32-bit (compat) task"));
    }
    let thc = core
        .thread_core
        .as_ref()
        .ok_or_else(|| bad(&file, tid, "no thread_core"))?;
    let tc = core.tc.as_ref().or(leader_tc);
    let sigmask = thc.blk_sigset.or(tc.map(|t| t.blk_sigset)).unwrap_or(0);
    let alt = thc.sas.as_ref().map_or(
        AltStack {
            sp: 0,
            flags: 2,
            size: 0,
        },
        |s| AltStack {
            sp: s.ss_sp,
            flags: s.ss_flags,
            size: s.ss_size,
        },
    );
    let creds = thc
        .creds
        .as_ref()
        .map(Creds::try_from)
        .transpose()
        .map_err(at(&file, tid))?;
    let seccomp = seccomp
        .thread(thc.seccomp_mode, thc.seccomp_filter)
        .map_err(at(&file, tid))?;
    let no_new_privs = creds.as_ref().is_some_and(|c| c.no_new_privs);
    check_sched_rseq(thc, &file, tid)?;
    Ok(Thread {
        tid,
        regs: gpregs(&ti.gpregs),
        fp: fpregs(&ti.fpregs, &file, tid)?,
        clear_tid: ti.clear_tid_addr,
        sigmask,
        alt,
        creds: creds.as_ref().map(rst_creds),
        signals: siginfos(thc.signals_p.as_ref(), &file, tid)?,
        rseq: thc
            .rseq_entry
            .as_ref()
            .filter(|r| r.rseq_abi_pointer != 0)
            .map(|r| (r.rseq_abi_pointer, r.rseq_abi_size, r.signature)),
        comm: thc.comm.clone().or(tc.map(|t| t.comm.clone())).unwrap_or_default(),
        pdeath_sig: thc.pdeath_sig.unwrap_or(0),
        cg_set: thc.cg_set.or(tc.and_then(|t| t.cg_set)).unwrap_or(0),
        futex_rla: (thc.futex_rla, thc.futex_rla_len),
        sched: thc.sched_policy.map(|pol| {
            (
                thc.sched_nice.unwrap_or(0),
                pol as i32,
                thc.sched_prio.unwrap_or(0) as i32,
            )
        }),
        seccomp,
        no_new_privs,
    })
}

fn build_proc(
    set: &ImageSet,
    p: &pb::PstreeEntry,
    files: &crate::files::FileSet,
    seccomp: &seccomp::Table,
    shares_parent_fds: bool,
) -> Result<Proc, PlanError> {
    let pid = p.pid as i32;
    let file = set.path(&format!("core-{pid}.img")).display().to_string();
    let core = set.core(p.pid)?;
    let tc = core.tc.as_ref().ok_or_else(|| bad(&file, pid, "no task_core"))?;
    let state = tc.task_state;
    if ![TASK_ALIVE, TASK_DEAD, TASK_STOPPED].contains(&state) {
        return Err(unsupported(&file, pid, format!("task state {state}")));
    }
    let mut threads = Vec::new();
    if state != TASK_DEAD {
        for &t in &p.threads {
            threads.push(build_thread(set, t as i32, Some(tc), seccomp)?);
        }
        if threads.is_empty() {
            return Err(bad(&file, pid, "a live task without threads"));
        }
    }
    let sigactions = sigactions::describe(&tc.sigactions)
        .map_err(at(&file, pid))?
        .iter()
        .map(rst_sigaction)
        .collect();
    let timers = timers::describe(tc.timers.as_ref());
    let tids: Vec<i32> = threads.iter().map(|t| t.tid).collect();
    timers.check(&tids).map_err(at(&file, pid))?;
    let (itimers, posix_timers) = rst_timers(&timers);

    let (mut mm, mut fds, mut cwd, mut root, mut umask) = (None, Vec::new(), None, None, 0o022);
    if state != TASK_DEAD {
        let ids = set.ids(p.pid)?;
        mm = Some(build_mm(set, pid, files)?);
        // A table shared with the parent is the parent's to set up.
        if !shares_parent_fds {
            fds = read_fds(set, pid, ids.files_id, files)?;
        }
        let fs = read_fs(set, pid, files)?;
        cwd = Some(fs.cwd_id);
        root = Some(fs.root_id);
        umask = fs.umask.unwrap_or(0o022);
    }
    let cg_set = threads.first().map_or(0, |t| t.cg_set);
    Ok(Proc {
        pid,
        ppid: p.ppid as i32,
        pgid: p.pgid as i32,
        sid: p.sid as i32,
        state,
        exit_code: tc.exit_code,
        stop_signo: tc.stop_signo.unwrap_or(libc::SIGSTOP as u32),
        threads,
        mm,
        fds,
        shares_parent_fds,
        cwd,
        root,
        umask,
        rlimits: crate::state::rlimits::describe(tc.rlimits.as_ref()),
        personality: tc.personality,
        sigactions,
        itimers,
        posix_timers,
        shared_signals: siginfos(tc.signals_s.as_ref(), &file, pid)?,
        child_subreaper: tc.child_subreaper.unwrap_or(false),
        comm: tc.comm.clone(),
        oom_score_adj: tc.oom_score_adj,
        loginuid: tc.loginuid,
        membarrier: crate::membarrier::Registrations::try_from(tc.membarrier_registration_mask.unwrap_or(0))
            .map_err(|e| bad(&file, pid, e.to_string()))?,
        cg_set,
    })
}

/// The fds of fdinfo-`files_id`.img, each naming a file of files.img.
fn read_fds(set: &ImageSet, pid: i32, files_id: u32, files: &crate::files::FileSet) -> Result<Vec<Fd>, PlanError> {
    let mut fds = Vec::new();
    let fdinfo_file = set.path(&format!("fdinfo-{files_id}.img")).display().to_string();
    // CRIU writes none for a process without fds.
    if !set.path(&format!("fdinfo-{files_id}.img")).exists() {
        return Ok(fds);
    }
    let fdinfo = set.fdinfo(files_id)?;
    for (i, f) in fdinfo.iter().enumerate() {
        if !files.contains(f.id) {
            return Err(bad(
                &fdinfo_file,
                pid,
                format!("entry {i}: fd {} names file id {} not in files.img", f.fd, f.id),
            ));
        }
        fds.push(Fd {
            fd: f.fd as i32,
            file_id: f.id,
            cloexec: f.flags & libc::O_CLOEXEC as u32 != 0 || f.flags & 1 != 0,
        });
    }
    Ok(fds)
}

/// fs-PID.img: cwd and root, regular files of files.img.
fn read_fs(set: &ImageSet, pid: i32, files: &crate::files::FileSet) -> Result<pb::FsEntry, PlanError> {
    let fs = set.fs(pid as u32)?;
    let fs_file = set.path(&format!("fs-{pid}.img")).display().to_string();
    for id in [fs.cwd_id, fs.root_id] {
        if files.get(id).map(|f| f.fd_type()) != Some(pb::FdTypes::Reg) {
            return Err(bad(
                &fs_file,
                pid,
                format!("cwd/root names file id {id}, not a regular file in files.img"),
            ));
        }
    }
    Ok(fs)
}

/// A sigaction as the engine sets it.
fn rst_sigaction(s: &sigactions::Sigaction) -> KSigaction {
    KSigaction {
        handler: s.handler,
        flags: s.flags,
        restorer: s.restorer,
        mask: s.mask,
    }
}

/// The restorer's itimers and POSIX timers of a process.
fn rst_timers(t: &timers::Timers) -> ([Itimerval; 3], Vec<RstPosixTimer>) {
    let it = |i: &timers::Itimer| Itimerval {
        interval_sec: i.interval_sec,
        interval_usec: i.interval_usec,
        value_sec: i.value_sec,
        value_usec: i.value_usec,
    };
    let posix = t
        .posix
        .iter()
        .map(|p| RstPosixTimer {
            id: p.id,
            clock: p.clock,
            sigev_notify: p.sigev_notify,
            sigev_signo: p.sigev_signo,
            sigev_value: p.sigev_value,
            notify_tid: p.notify_tid,
            _pad: 0,
            interval_sec: p.interval_sec,
            interval_nsec: p.interval_nsec,
            value_sec: p.value_sec,
            value_nsec: p.value_nsec,
        })
        .collect();
    (t.itimers.each_ref().map(it), posix)
}

fn build_mm(set: &ImageSet, pid: i32, files: &crate::files::FileSet) -> Result<Mm, PlanError> {
    let file = set.path(&format!("mm-{pid}.img")).display().to_string();
    let entry = set.mm(pid as u32)?;
    let mm::Layout { vmas, guards } = mm::describe(&entry, |id| {
        files.get(id).map(|f| match f.fd_type() {
            pb::FdTypes::Memfd => mm::MappedFile::Memfd,
            _ => mm::MappedFile::Other,
        })
    })
    .map_err(at(&file, pid))?;
    // Runs in parent sets (an incremental dump) are resolved to the pages
    // files that hold them.
    let flat = set.flat_pagemap(pid as u32)?;
    let pm = set.pagemap(pid as u32)?;
    let pagemap = Arc::new(cryo_image::Pagemap {
        pages_id: pm.pages_id,
        runs: flat.runs,
    });
    let pm_file = set.path(&format!("pagemap-{pid}.img")).display().to_string();
    mm::check_pagemap(&pagemap, &vmas).map_err(at(&pm_file, pid))?;
    Ok(Mm {
        vmas,
        guards,
        exe_file: entry.exe_file_id,
        entry,
        pagemap,
        pages_files: flat.files,
        run_file: flat.file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[(i32, i32, i32, i32)]) -> Vec<TreeIds> {
        v.iter()
            .map(|&(pid, ppid, sid, pgid)| TreeIds { pid, ppid, sid, pgid })
            .collect()
    }

    #[test]
    fn fpu_state_of_a_richer_cpu_is_refused_by_feature_name() {
        // The FPU state of a program dumped on an AVX-512 machine (the first
        // recording of the CRIU 4.2 fixtures had it).
        let x = pb::UserX86XsaveEntry {
            xstate_bv: 0x2a2,
            pkru: vec![PKRU_DEFAULT],
            ymmh_space: vec![0; 64],
            opmask_reg: vec![0; 8],
            zmm_upper: vec![0; 64],
            hi16_zmm: vec![0; 128],
            ..Default::default()
        };
        let avx2_pku = 0x207;
        let e = cpu_has_xstate(&x, avx2_pku).unwrap_err();
        assert!(e.contains("AVX-512 opmask, AVX-512 Hi16_ZMM"), "{e}");
        assert!(!e.contains("PKRU"), "{e}");
        assert!(cpu_has_xstate(&x, 0x2e7).is_ok());
        // Without PKU, an untouched PKRU is dropped; a used one is refused.
        let p = |v| pb::UserX86XsaveEntry {
            xstate_bv: 0x202,
            pkru: vec![v],
            ymmh_space: vec![0; 64],
            ..Default::default()
        };
        assert!(cpu_has_xstate(&p(PKRU_DEFAULT), 0x7).is_ok());
        assert!(cpu_has_xstate(&p(0x5555_5550), 0x7).unwrap_err().contains("PKRU"));
    }

    #[test]
    fn fpu_state_of_a_cpu_with_a_smaller_xsave_area_is_refused() {
        // Dumped on an AVX2 machine (no AVX-512 registers in the image), restored on an AVX-512 one:
        // ld.so's FPU save frames would overflow.
        let x = pb::UserX86XsaveEntry {
            xstate_bv: 0x206,
            ymmh_space: vec![0; 64],
            ..Default::default()
        };
        assert!(cpu_has_xstate(&x, 0x207).is_ok());
        let e = cpu_has_xstate(&x, 0x2e7).unwrap_err();
        assert!(e.contains("no AVX-512 registers") && e.contains("does not have"), "{e}");
        // An image without AVX state on an AVX CPU: the same.
        let sse = pb::UserX86XsaveEntry {
            xstate_bv: 0x2,
            ..Default::default()
        };
        assert!(cpu_has_xstate(&sse, 0x3).is_ok());
        assert!(cpu_has_xstate(&sse, 0x7).unwrap_err().contains("no AVX registers"));
    }

    #[test]
    fn helpers_stand_in_for_gone_session_and_group_leaders() {
        // A double-forked daemon 20 (session and group 10: the exited
        // intermediate), its child 21 in group 15 (an exited leader), and
        // 22 in the daemon's group.
        let t = ids(&[(20, 1, 10, 10), (21, 20, 10, 15), (22, 20, 10, 10)]);
        let h = plan_helpers(&t, false, "pstree.img").unwrap();
        assert_eq!(
            h,
            vec![
                Helper {
                    pid: 10,
                    parent: 0,
                    session: true,
                    tasks: vec![20]
                },
                Helper {
                    pid: 15,
                    parent: 20,
                    session: false,
                    tasks: vec![]
                },
            ]
        );
        // A tree whose sessions and groups are all led by its own tasks needs none.
        let t = ids(&[(30, 1, 30, 30), (31, 30, 30, 31), (32, 31, 32, 32)]);
        assert!(plan_helpers(&t, false, "pstree.img").unwrap().is_empty());
        // A child that setsid()ed, whose session is gone, and a group of a
        // gone leader inside it: the session helper is forked by the parent,
        // the group helper by the session helper.
        let t = ids(&[(40, 1, 40, 40), (41, 40, 50, 51)]);
        let h = plan_helpers(&t, false, "pstree.img").unwrap();
        assert_eq!(
            h,
            vec![
                Helper {
                    pid: 50,
                    parent: 40,
                    session: true,
                    tasks: vec![41]
                },
                Helper {
                    pid: 51,
                    parent: 50,
                    session: false,
                    tasks: vec![]
                },
            ]
        );
        // With --shell-job the root keeps cryo's session and group.
        let t = ids(&[(20, 1, 10, 11), (21, 20, 10, 11)]);
        assert!(plan_helpers(&t, true, "pstree.img").unwrap().is_empty());
        assert_eq!(plan_helpers(&t, false, "pstree.img").unwrap().len(), 2);
        // A group across two sessions cannot exist.
        let t = ids(&[(60, 1, 60, 60), (61, 60, 61, 70), (62, 60, 62, 70)]);
        let e = plan_helpers(&t, false, "pstree.img").unwrap_err().to_string();
        assert!(e.contains("group 70") && e.contains("pstree.img"), "{e}");
        // Two topmost tasks of one gone session under different parents.
        let t = ids(&[(80, 1, 80, 80), (81, 80, 81, 81), (82, 80, 90, 90), (83, 81, 90, 90)]);
        let e = plan_helpers(&t, false, "pstree.img").unwrap_err().to_string();
        assert!(e.contains("session 90"), "{e}");
    }
}
