//! Validation: the whole image set is read and checked here, before anything
//! is created, and turned into a [`Plan`] of domain types. Every error names
//! the image file, the pid and the object at fault.

use super::abi::{RstCreds, RstItimer, RstPosixTimer, RST_MAX_GROUPS};
use super::rsys::KSigaction;
use super::sigframe::{AltStack, FpRegs, GpRegs, Xsave};
use cryo_image::{pb, ImageSet, Pagemap};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// Why an image set cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Image(#[from] cryo_image::ImageError),
    #[error("{file}: pid {pid}: {what}")]
    Bad { file: String, pid: i32, what: String },
    #[error("{file}: {what}")]
    BadSet { file: String, what: String },
    #[error("{file}: pid {pid}: {what} is not supported by cryo restore yet")]
    Unsupported { file: String, pid: i32, what: String },
}

fn bad(file: impl Into<String>, pid: i32, what: impl Into<String>) -> PlanError {
    PlanError::Bad {
        file: file.into(),
        pid,
        what: what.into(),
    }
}

fn unsupported(file: impl Into<String>, pid: i32, what: impl Into<String>) -> PlanError {
    PlanError::Unsupported {
        file: file.into(),
        pid,
        what: what.into(),
    }
}

/// CRIU's task states (criu/include/pid.h; crit 3.17's names for 3 and 6
/// are off, cryo dump writes these values too).
pub const TASK_ALIVE: u32 = 1;
/// A loginuid that was never set ((uid_t)-1).
pub const LOGINUID_UNSET: u32 = u32::MAX;
pub const TASK_DEAD: u32 = 2;
pub const TASK_STOPPED: u32 = 3;
/// CRIU's VMA status bits, under short names (the values live in cryo_image::vma).
pub mod vma_status {
    pub use cryo_image::vma::{
        VMA_ANON_PRIVATE as ANON_PRIVATE, VMA_ANON_SHARED as ANON_SHARED, VMA_AREA_AIORING as AIORING,
        VMA_AREA_GUARD as GUARD, VMA_AREA_HEAP as HEAP, VMA_AREA_MEMFD as MEMFD, VMA_AREA_REGULAR as REGULAR,
        VMA_AREA_SOCKET as SOCKET, VMA_AREA_STACK as STACK, VMA_AREA_SYSVIPC as SYSVIPC, VMA_AREA_VDSO as VDSO,
        VMA_AREA_VSYSCALL as VSYSCALL, VMA_AREA_VVAR as VVAR, VMA_FILE_PRIVATE as FILE_PRIVATE,
        VMA_FILE_SHARED as FILE_SHARED, VMA_UNSUPP as UNSUPP,
    };
}

/// What a VMA is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmaKind {
    AnonPrivate,
    /// MAP_PRIVATE of a file (the file id in files.img).
    FilePrivate(u32),
    /// MAP_SHARED of a file or memfd (the file id).
    FileShared(u32),
    Vdso,
    Vvar,
    Vsyscall,
    /// The ring of an AIO context, with the io_setup() size that makes it.
    AioRing(u32),
}

/// One VMA to recreate.
#[derive(Clone, Debug)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub pgoff: u64,
    pub prot: u32,
    pub flags: u32,
    pub madv: u64,
    pub kind: VmaKind,
}

impl Vma {
    /// The huge page size of a MAP_HUGETLB VMA (from its MAP_HUGE_* bits;
    /// none recorded means the kernel's default, 2 MiB on x86-64).
    pub fn hugetlb_page(&self) -> Option<u64> {
        if self.flags & libc::MAP_HUGETLB as u32 == 0 {
            return None;
        }
        let log2 = (self.flags >> 26) & 0x3f;
        Some(if log2 == 0 { 2 << 20 } else { 1u64 << log2 })
    }
}

/// Memory of a process.
#[derive(Clone, Debug)]
pub struct Mm {
    pub vmas: Vec<Vma>,
    /// Ranges covered by MADV_GUARD_INSTALL guards (VMA_AREA_GUARD entries).
    pub guards: Vec<(u64, u64)>,
    pub entry: pb::MmEntry,
    pub exe_file: u32,
    pub pagemap: Arc<Pagemap>,
    pub pages_path: PathBuf,
}

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
    /// Robust futex list head and length (0, 0: none).
    pub futex_rla: (u64, u32),
    /// (nice, policy, priority) if dumped.
    pub sched: Option<(i32, i32, i32)>,
    pub seccomp: Seccomp,
    /// PR_SET_NO_NEW_PRIVS (from the creds).
    pub no_new_privs: bool,
}

/// A thread's seccomp state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seccomp {
    Off,
    /// SECCOMP_MODE_STRICT.
    Strict,
    /// SECCOMP_MODE_FILTER: indices into [`Plan::seccomp`], oldest first
    /// (the kernel runs the newest first). Threads with the same newest
    /// filter share the chain.
    Filters(Vec<u32>),
}

/// One filter of seccomp.img.
#[derive(Clone, Debug)]
pub struct SeccompProg {
    /// `struct sock_filter` instructions, 8 bytes each.
    pub insns: Vec<u8>,
    /// SECCOMP_FILTER_FLAG_* it was installed with (TSYNC masked out).
    pub flags: u32,
}

/// SECCOMP_FILTER_FLAG_TSYNC: a way of installing, not a property of a filter.
const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;
/// Flags a restored filter may carry: LOG, SPEC_ALLOW (NEW_LISTENER and
/// TSYNC_ESRCH need a listener fd nobody would hold).
const SECCOMP_FLAGS_KNOWN: u32 = 2 | 4;
/// BPF_MAXINSNS.
const BPF_MAXINSNS: usize = 4096;

/// An fd of a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fd {
    pub fd: i32,
    pub file_id: u32,
    pub cloexec: bool,
}

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
    pub itimers: [RstItimer; 3],
    pub posix_timers: Vec<RstPosixTimer>,
    pub shared_signals: Vec<[u8; 128]>,
    pub child_subreaper: bool,
    pub comm: String,
    pub oom_score_adj: Option<i32>,
    /// The audit loginuid (/proc/PID/loginuid; [`LOGINUID_UNSET`] = never set).
    pub loginuid: Option<u32>,
    /// membarrier() registrations of the mm.
    pub membarrier: crate::membarrier::Registrations,
}

/// An open file description to recreate (shared by every fd that names it).
#[derive(Clone, Debug)]
pub enum FileDesc {
    Reg {
        path: String,
        flags: u32,
        pos: u64,
        size: Option<u64>,
        /// Deleted at dump time: where its inode comes from (remap-fpath.img).
        remap: Option<Remap>,
    },
    Pipe {
        pipe_id: u32,
        flags: u32,
    },
    Memfd {
        inode: u32,
        flags: u32,
        pos: u64,
    },
    /// A terminal (files/tty.rs): its TTY entry, path and tty-info entry.
    Tty(Box<crate::files::tty::TtyFile>),
    /// A FIFO opened at `path` (its REG entry, regf_id), sharing the inode
    /// `pipe_id` with every other fd of the same FIFO.
    Fifo {
        pipe_id: u32,
        path: String,
        flags: u32,
        mode: u32,
        /// A deleted FIFO: its node is a ghost (remap of its REG entry).
        remap: Option<Remap>,
    },
    /// The anon-inode kinds (files/eventfd.rs ... files/epoll.rs), restored
    /// from their files.img entries as they are.
    Eventfd(pb::EventfdFileEntry),
    Timerfd(pb::TimerfdEntry),
    Signalfd(pb::SignalfdEntry),
    Inotify(pb::InotifyFileEntry),
    /// Its items are added by the first task holding it (see files::epoll).
    Epoll(pb::EventpollFileEntry),
    /// Opened by the task holding it, once every task exists (files::pidfd).
    Pidfd(pb::PidfdEntry),
    /// A fanotify group with its marks (files::fanotify).
    Fanotify(pb::FanotifyFileEntry),
    /// A namespace file (files::nsfile), one of cryo's own namespaces.
    Ns(pb::NsFileEntry),
}

/// Where a file deleted at dump time comes back from (remap-fpath.img).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remap {
    /// ghost-file-N.img holds the inode (its contents and metadata).
    Ghost(u32),
    /// A hard link the dump made (criu's --link-remap): the path of that
    /// link-remap REG entry.
    Linked(String),
}

/// A memfd inode (memfd.img).
#[derive(Clone, Debug)]
pub struct MemfdInode {
    pub name: String,
    pub size: u64,
    pub shmid: u32,
    pub seals: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// MFD_HUGETLB with its MFD_HUGE_* size bits: the inode is huge-page memory.
    pub hugetlb_flag: Option<u32>,
}

/// Everything needed to restore a tree, validated.
#[derive(Debug)]
pub struct Plan {
    pub dir: PathBuf,
    pub procs: Vec<Proc>,
    pub files: BTreeMap<u32, FileDesc>,
    pub pipe_data: HashMap<u32, Vec<u8>>,
    /// Buffer sizes (F_GETPIPE_SZ at dump) of pipes and FIFOs, by pipe id.
    pub pipe_size: HashMap<u32, u32>,
    pub fifo_size: HashMap<u32, u32>,
    /// Owners (F_SETOWN/F_SETSIG) of the file descriptions that have one,
    /// by file id (files::fown).
    pub fown: BTreeMap<u32, pb::FownEntry>,
    /// Files that were O_ASYNC (set by the tasks at their fd numbers).
    pub async_files: BTreeSet<u32>,
    /// fifo-data.img: FIFO inode -> queued bytes.
    pub fifo_data: HashMap<u32, Vec<u8>>,
    /// tty-data.img: queued terminal data by tty_id (the end it was read from).
    pub tty_data: BTreeMap<u32, Vec<u8>>,
    pub memfds: BTreeMap<u32, MemfdInode>,
    /// Shared memory contents: shmid -> (pagemap, pages file).
    pub shmem: HashMap<u32, (Arc<Pagemap>, PathBuf)>,
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
    /// Pids of dead processes whose /proc/<pid> files the tree holds
    /// (remap-fpath PROCFS): a short-lived process with that pid exists
    /// while the engine opens the files.
    pub dead_pids: Vec<i32>,
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
    ("inetsk.img", "inet sockets"),
    ("unixsk.img", "unix sockets"),
    ("packetsk.img", "packet sockets"),
    ("netlinksk.img", "netlink sockets"),
    ("ipcns-shm", "SysV shared memory"),
    ("ipcns-msg", "SysV message queues"),
    ("ipcns-sem", "SysV semaphores"),
    ("ipcns-var", "SysV IPC namespace"),
    ("tcp-stream", "TCP connections"),
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
    let dirs = dir.display().to_string();
    // The same checks as `crit check` (structure, cross references, pages);
    // restore-specific ones follow.
    let report = cryo_image::check::check_set(&set);
    let problems: Vec<_> = report.problems.iter().collect();
    if let Some(p) = problems.first() {
        let more = problems.len() - 1;
        let tail = if more > 0 {
            format!(" (and {more} more problem(s); see crit check)")
        } else {
            String::new()
        };
        return Err(PlanError::BadSet {
            file: set.path(&p.file).display().to_string(),
            what: format!("{}{tail}", p),
        });
    }
    let inv = set.inventory()?;
    if inv.img_version != 2 {
        return Err(PlanError::BadSet {
            file: set.path("inventory.img").display().to_string(),
            what: format!("image version {} (only 2 is known)", inv.img_version),
        });
    }
    let mut listing: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| PlanError::BadSet {
            file: dirs.clone(),
            what: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    listing.sort();
    for name in &listing {
        for (prefix, what) in REFUSED_IMAGES {
            if name.starts_with(prefix) {
                return Err(PlanError::BadSet {
                    file: set.path(name).display().to_string(),
                    what: format!("{what} are not supported by cryo restore yet (refused before creating any task)"),
                });
            }
        }
    }

    let pstree = set.pstree()?;
    let pst_file = set.path("pstree.img").display().to_string();
    if pstree.is_empty() {
        return Err(PlanError::BadSet {
            file: pst_file,
            what: "no processes".into(),
        });
    }
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(4_194_304);
    let mut seen = BTreeSet::new();
    for (i, p) in pstree.iter().enumerate() {
        let ids = std::iter::once(p.pid).chain(p.threads.iter().copied());
        for id in ids {
            if id == 0 || id as i64 >= pid_max {
                return Err(bad(
                    &pst_file,
                    p.pid as i32,
                    format!("entry {i}: id {id} is outside 1..{pid_max}"),
                ));
            }
        }
        if !seen.insert(p.pid) {
            return Err(bad(&pst_file, p.pid as i32, format!("entry {i}: pid listed twice")));
        }
        if p.threads.first() != Some(&p.pid) && !p.threads.is_empty() {
            return Err(bad(
                &pst_file,
                p.pid as i32,
                "the first thread is not the process leader",
            ));
        }
        if i > 0 && !pstree[..i].iter().any(|q| q.pid == p.ppid) {
            return Err(bad(
                &pst_file,
                p.pid as i32,
                format!("parent {} is not listed before it", p.ppid),
            ));
        }
    }

    // Files.
    let files_file = set.path("files.img").display().to_string();
    let mut files = BTreeMap::new();
    let tty_infos: Vec<pb::TtyInfoEntry> = if set.has("tty-info.img") {
        set.entries("tty-info.img", "TTY_INFO")?
    } else {
        Vec::new()
    };
    let all_files = set.files()?;
    let mut fifo_regf: Vec<(u32, u32)> = Vec::new();
    for (i, f) in all_files.iter().enumerate() {
        let ty = pb::FdTypes::try_from(f.r#type)
            .map_err(|_| bad(&files_file, 0, format!("entry {i}: unknown fd type {}", f.r#type)))?;
        let d = match ty {
            pb::FdTypes::Reg => {
                let r = f.reg.as_ref().ok_or_else(|| bad(&files_file, 0, format!("entry {i}: REG without reg")))?;
                FileDesc::Reg { path: r.name.clone(), flags: r.flags, pos: r.pos, size: r.size, remap: None }
            }
            pb::FdTypes::Pipe => {
                let p = f.pipe.as_ref().ok_or_else(|| bad(&files_file, 0, format!("entry {i}: PIPE without pipe")))?;
                FileDesc::Pipe { pipe_id: p.pipe_id, flags: p.flags }
            }
            pb::FdTypes::Memfd => {
                let m = f.memfd.as_ref().ok_or_else(|| bad(&files_file, 0, format!("entry {i}: MEMFD without memfd")))?;
                FileDesc::Memfd { inode: m.inode_id, flags: m.flags, pos: m.pos }
            }
            pb::FdTypes::Tty => {
                let t = f.tty.as_ref().ok_or_else(|| bad(&files_file, 0, format!("entry {i}: TTY without tty")))?;
                let info = tty_infos.iter().find(|x| x.id == t.tty_info_id).ok_or_else(|| {
                    bad(
                        &files_file,
                        0,
                        format!("entry {i}: tty_info_id {} is not in tty-info.img", t.tty_info_id),
                    )
                })?;
                let known = [pb::TtyType::Pty, pb::TtyType::Console, pb::TtyType::Vt, pb::TtyType::Ctty];
                if !known.iter().any(|k| *k as i32 == info.r#type) {
                    return Err(unsupported(
                        set.path("tty-info.img").display().to_string(),
                        0,
                        format!(
                            "terminal {}: type {} (only ptys, /dev/tty, /dev/console and vts are supported)",
                            info.id, info.r#type
                        ),
                    ));
                }
                if info.pty.as_ref().is_some_and(|p| p.index > crate::files::tty::MAX_PTY_INDEX || info.id >> 1 != p.index) {
                    return Err(bad(
                        set.path("tty-info.img").display().to_string(),
                        0,
                        format!("terminal {}: a pty index above {} or not matching its id", info.id, crate::files::tty::MAX_PTY_INDEX),
                    ));
                }
                if (info.r#type == pb::TtyType::Pty as i32) != info.pty.is_some() {
                    return Err(bad(set.path("tty-info.img").display().to_string(), 0, format!("terminal {}: pty data on a terminal that is no pty, or none on a pty", info.id)));
                }
                if info.termios.as_ref().is_some_and(|t| t.c_cc.len() < 19) || info.termios_locked.as_ref().is_some_and(|t| t.c_cc.len() < 19) {
                    return Err(bad(set.path("tty-info.img").display().to_string(), 0, format!("terminal {}: termios with fewer than 19 control characters", info.id)));
                }
                let regf = t.regf_id.unwrap_or(t.id);
                let r = all_files
                    .iter()
                    .find(|g| g.id == regf && g.r#type == pb::FdTypes::Reg as i32)
                    .and_then(|g| g.reg.as_ref());
                let path = match (r, &info.pty) {
                    (Some(r), _) => r.name.clone(),
                    (None, Some(p)) if info.id & 1 == 1 => "/dev/ptmx".to_string(),
                    (None, Some(p)) => format!("/dev/pts/{}", p.index),
                    (None, None) => {
                        return Err(bad(&files_file, 0, format!("entry {i}: TTY {} names REG entry {regf}, which is missing", t.id)))
                    }
                };
                FileDesc::Tty(Box::new(crate::files::tty::TtyFile {
                    id: f.id,
                    flags: t.flags,
                    path,
                    mode: r.and_then(|r| r.mode),
                    info: info.clone(),
                }))
            }
            pb::FdTypes::Fifo => {
                let p = f.fifo.as_ref().ok_or_else(|| bad(&files_file, 0, format!("entry {i}: FIFO without fifo")))?;
                let regf = p.regf_id.unwrap_or(p.id);
                let r = all_files
                    .iter()
                    .find(|g| g.id == regf && g.r#type == pb::FdTypes::Reg as i32)
                    .and_then(|g| g.reg.as_ref())
                    .ok_or_else(|| {
                        bad(&files_file, 0, format!("entry {i}: FIFO {} names REG entry {regf}, which is missing", p.id))
                    })?;
                let mode = r.mode.unwrap_or(libc::S_IFIFO | 0o600);
                if mode & libc::S_IFMT != libc::S_IFIFO {
                    return Err(bad(
                        &files_file,
                        0,
                        format!("entry {i}: FIFO {} has path {} of mode {mode:o}, not a FIFO", p.id, r.name),
                    ));
                }
                fifo_regf.push((f.id, regf));
                FileDesc::Fifo { pipe_id: p.pipe_id, path: r.name.clone(), flags: r.flags, mode, remap: None }
            }
            pb::FdTypes::Eventfd | pb::FdTypes::Timerfd | pb::FdTypes::Signalfd | pb::FdTypes::Inotify | pb::FdTypes::Eventpoll => {
                anon_desc(f).map_err(|what| bad(&files_file, 0, format!("entry {i} (file id {}, {}): {what}", f.id, ty.as_str_name())))?
            }
            pb::FdTypes::Fanotify => {
                let e = f.ffy.as_ref().ok_or_else(|| bad(&files_file, 0, format!("entry {i}: FANOTIFY without ffy")))?;
                crate::files::fanotify::check(e).map_err(|what| bad(&files_file, 0, format!("entry {i} (file id {}, fanotify): {what}", f.id)))?;
                FileDesc::Fanotify(e.clone())
            }
            pb::FdTypes::Pidfd => {
                let p = f.pidfd.as_ref().ok_or_else(|| bad(&files_file, 0, format!("entry {i}: PIDFD without pidfd")))?;
                FileDesc::Pidfd(*p)
            }
            pb::FdTypes::Ns => {
                let n = f.nsf.as_ref().ok_or_else(|| bad(&files_file, 0, format!("entry {i}: NS without nsf")))?;
                if crate::files::nsfile::restore_name(n).is_none() {
                    return Err(unsupported(
                        files_file.clone(),
                        0,
                        format!(
                            "entry {i} (file id {}): namespace {} of type {:#x} is not one cryo restores into (namespaces are not supported yet)",
                            f.id, n.ns_id, n.ns_cflag
                        ),
                    ));
                }
                FileDesc::Ns(*n)
            }
            other => {
                return Err(PlanError::BadSet {
                    file: files_file.clone(),
                    what: format!(
                        "entry {i} (file id {}): {} files are not supported by cryo restore yet (refused before creating any task)",
                        f.id,
                        other.as_str_name()
                    ),
                })
            }
        };
        if files.insert(f.id, d).is_some() {
            return Err(bad(&files_file, 0, format!("entry {i}: file id {} listed twice", f.id)));
        }
    }
    let mut dead_pids: Vec<i32> = Vec::new();
    // Ghost files: remap-fpath.img maps a file id to ghost-file-<remap_id>.img.
    if set.has("remap-fpath.img") {
        let remaps: Vec<pb::RemapFilePathEntry> = set.entries("remap-fpath.img", "REMAP_FPATH")?;
        let rf = set.path("remap-fpath.img").display().to_string();
        for (i, r) in remaps.iter().enumerate() {
            // remap_type: LINKED 0 (also when absent), GHOST 1, PROCFS 2.
            let ty = r.remap_type.unwrap_or(pb::RemapType::Linked as i32);
            let remap = if ty == pb::RemapType::Ghost as i32 {
                let g = format!("ghost-file-{}.img", r.remap_id);
                if !set.has(&g) {
                    return Err(bad(&rf, 0, format!("entry {i}: {g} is missing")));
                }
                Remap::Ghost(r.remap_id)
            } else if ty == pb::RemapType::Linked as i32 {
                match files.get(&r.remap_id) {
                    Some(FileDesc::Reg { path, remap: None, .. }) => Remap::Linked(path.clone()),
                    _ => {
                        return Err(bad(
                            &rf,
                            0,
                            format!("entry {i}: link remap {} is not a regular file entry", r.remap_id),
                        ))
                    }
                }
            } else if ty == pb::RemapType::Procfs as i32 {
                // A file of /proc/<remap_id>, a process that was gone.
                let pid = r.remap_id as i32;
                if pid <= 0 || pstree.iter().any(|p| p.pid as i32 == pid) {
                    return Err(bad(&rf, 0, format!("entry {i}: dead pid {pid} is not a dead pid")));
                }
                if !dead_pids.contains(&pid) {
                    dead_pids.push(pid);
                }
                continue;
            } else {
                return Err(unsupported(&rf, 0, format!("entry {i}: remap type {ty}")));
            };
            match files.get_mut(&r.orig_id) {
                Some(FileDesc::Reg { remap: slot, .. }) => *slot = Some(remap),
                _ => {
                    return Err(bad(
                        &rf,
                        0,
                        format!("entry {i}: file id {} is not a regular file", r.orig_id),
                    ))
                }
            }
        }
    }
    for (fifo, regf) in fifo_regf {
        let remap = match files.get(&regf) {
            Some(FileDesc::Reg { remap, .. }) => remap.clone(),
            _ => None,
        };
        if let Some(FileDesc::Fifo { remap: slot, .. }) = files.get_mut(&fifo) {
            *slot = remap;
        }
    }
    let mut pipe_data = HashMap::new();
    let (mut pipe_size, mut fifo_size) = (HashMap::new(), HashMap::new());
    for (e, data) in set.pipes_data()? {
        if let Some(sz) = e.size {
            pipe_size.insert(e.pipe_id, sz);
        }
        if data.len() != e.bytes as usize {
            return Err(bad(
                set.path("pipes-data.img").display().to_string(),
                0,
                format!(
                    "pipe {}: {} bytes announced, {} present",
                    e.pipe_id,
                    e.bytes,
                    data.len()
                ),
            ));
        }
        pipe_data.insert(e.pipe_id, data);
    }
    let mut fifo_data = HashMap::new();
    if set.has("fifo-data.img") {
        for (e, data) in set.with_payload::<pb::PipeDataEntry>("fifo-data.img")? {
            if let Some(sz) = e.size {
                fifo_size.insert(e.pipe_id, sz);
            }
            if data.len() != e.bytes as usize {
                return Err(bad(
                    set.path("fifo-data.img").display().to_string(),
                    0,
                    format!(
                        "fifo {}: {} bytes announced, {} present",
                        e.pipe_id,
                        e.bytes,
                        data.len()
                    ),
                ));
            }
            fifo_data.insert(e.pipe_id, data);
        }
    }
    let mut tty_data = BTreeMap::new();
    if set.has("tty-data.img") {
        let es: Vec<pb::TtyDataEntry> = set.entries("tty-data.img", "TTY_DATA")?;
        for e in es {
            if !tty_infos.iter().any(|x| x.id == e.tty_id) {
                return Err(bad(
                    set.path("tty-data.img").display().to_string(),
                    0,
                    format!("data for terminal {}, which is not in tty-info.img", e.tty_id),
                ));
            }
            tty_data.insert(e.tty_id, e.data);
        }
    }
    let mut memfds = BTreeMap::new();
    if set.has("memfd.img") {
        let ms: Vec<pb::MemfdInodeEntry> = set.entries("memfd.img", "MEMFD_INODE")?;
        for m in ms {
            memfds.insert(
                m.inode_id as u32,
                MemfdInode {
                    name: m.name,
                    size: m.size,
                    shmid: m.shmid,
                    seals: m.seals,
                    mode: m.mode.unwrap_or(0o777),
                    uid: m.uid,
                    gid: m.gid,
                    hugetlb_flag: m.hugetlb_flag,
                },
            );
        }
    }
    for (id, f) in &files {
        if let FileDesc::Memfd { inode, .. } = f {
            if !memfds.contains_key(inode) {
                return Err(bad(
                    &files_file,
                    0,
                    format!("file id {id}: memfd inode {inode} not in memfd.img"),
                ));
            }
        }
    }

    let dumped_clocks = read_timens(&set, &listing)?;
    let (seccomp, seccomp_prev) = read_seccomp(&set)?;
    // fd tables shared between processes (CLONE_FILES): as with CRIU, a
    // task may share its parent's table (it is then forked with CLONE_FILES);
    // a table shared by tasks of which neither is the other's parent cannot be
    // made by clone() and is refused.
    let mut files_ids: BTreeMap<u32, i32> = BTreeMap::new();
    let mut task_files: BTreeMap<u32, u32> = BTreeMap::new();
    let mut shares_parent: BTreeSet<u32> = BTreeSet::new();
    for p in &pstree {
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
    let mut procs = Vec::new();
    for p in &pstree {
        let shares = shares_parent.contains(&p.pid);
        procs.push(build_proc(
            &set,
            p,
            &files,
            inv.root_ids.as_ref(),
            &seccomp_prev,
            shares,
        )?);
    }
    // Sessions and groups whose leader is not in the tree get helper tasks
    // (see [`helpers`], planned with the caller's options).
    // The contents of every shared-memory inode, mapped or only open.
    let mut shmem = HashMap::new();
    for m in memfds.values() {
        let name = format!("pagemap-shmem-{}.img", m.shmid);
        if set.has(&name) && !shmem.contains_key(&m.shmid) {
            shmem.insert(m.shmid, read_pagemap(&set, &name)?);
        }
    }
    // Epoll items are added by the first task holding the epoll file, under
    // its fd numbers: they must all be fds of that task.
    for (id, f) in &files {
        if let FileDesc::Epoll(e) = f {
            if let Some(owner) = procs.iter().find(|p| p.fds.iter().any(|x| x.file_id == *id)) {
                let fds: Vec<i32> = owner.fds.iter().map(|x| x.fd).collect();
                crate::files::epoll::check(e, owner.pid, &fds)
                    .map_err(|what| unsupported(&files_file, owner.pid, format!("epoll file id {id}: {what}")))?;
            }
        }
    }
    // pidfds: of tree processes, each held by one process (files::pidfd).
    {
        let pids: Vec<i32> = procs.iter().map(|p| p.pid).collect();
        let mut holders: BTreeMap<u32, Vec<i32>> = BTreeMap::new();
        for p in &procs {
            for f in &p.fds {
                let h = holders.entry(f.file_id).or_default();
                if !h.contains(&p.pid) {
                    h.push(p.pid);
                }
            }
        }
        let pidfds: Vec<(u32, &pb::PidfdEntry)> = files
            .iter()
            .filter_map(|(id, d)| match d {
                FileDesc::Pidfd(e) => Some((*id, e)),
                _ => None,
            })
            .collect();
        crate::files::pidfd::check(&pidfds, &holders, &pids).map_err(|what| unsupported(&files_file, 0, what))?;
    }
    // File owners: set once every task exists; each must be one of the tree.
    let mut fown = BTreeMap::new();
    let mut async_files: BTreeSet<u32> = all_files
        .iter()
        .filter(|f| crate::files::fown::flags_of(f).is_some_and(|fl| fl & libc::O_ASYNC as u32 != 0))
        .map(|f| f.id)
        .collect();
    // A FIFO's flags live in the REG entry it names.
    for (id, d) in &files {
        if let FileDesc::Fifo { flags, .. } = d {
            if flags & libc::O_ASYNC as u32 != 0 {
                async_files.insert(*id);
            }
        }
    }
    {
        let pids: Vec<i32> = procs.iter().map(|p| p.pid).collect();
        let tids: Vec<i32> = procs.iter().flat_map(|p| p.threads.iter().map(|t| t.tid)).collect();
        let pgids: Vec<i32> = procs.iter().map(|p| p.pgid).collect();
        for f in &all_files {
            let Some(o) = crate::files::fown::of_entry(f).filter(|o| crate::files::fown::is_set(o)) else {
                continue;
            };
            crate::files::fown::check(o, &pids, &tids, &pgids)
                .map_err(|what| unsupported(&files_file, 0, format!("file id {}: {what}", f.id)))?;
            fown.insert(f.id, *o);
        }
    }
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
    // A controlling terminal goes back to its session's leader, which must
    // be restored (a shell job's terminal, without its master, is cryo's).
    for info in &tty_infos {
        let has_master = info
            .pty
            .as_ref()
            .is_some_and(|p| tty_infos.iter().any(|x| x.id == p.index * 2 + 1));
        let simple = info.r#type == pb::TtyType::Console as i32 || info.r#type == pb::TtyType::Vt as i32;
        if info.sid == 0 || info.termios.is_none() || !(has_master || simple) {
            continue;
        }
        let leader = procs.iter().find(|p| p.pid == info.sid as i32);
        if !leader.is_some_and(|p| p.sid == p.pid && p.state != TASK_DEAD) {
            return Err(unsupported(
                set.path("tty-info.img").display().to_string(),
                info.sid as i32,
                format!(
                    "terminal {} is the controlling terminal of session {}, whose leader is not a live task of the images",
                    info.id, info.sid
                ),
            ));
        }
    }
    Ok(Plan {
        dir: dir.to_path_buf(),
        procs,
        files,
        pipe_data,
        pipe_size,
        fifo_size,
        fown,
        async_files,
        fifo_data,
        tty_data,
        memfds,
        shmem,
        set,
        locks,
        seccomp,
        dumped_clocks,
        helpers: Vec::new(),
        dead_pids,
    })
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

/// An anon-inode kind's entry, checked by its module.
fn anon_desc(f: &pb::FileEntry) -> Result<FileDesc, String> {
    use crate::files::{eventfd, inotify, timerfd};
    let missing = || "the entry has no body for its type".to_string();
    let ty = pb::FdTypes::try_from(f.r#type).map_err(|_| missing())?;
    Ok(match ty {
        pb::FdTypes::Eventfd => {
            let e = f.efd.ok_or_else(missing)?;
            eventfd::check(&e)?;
            FileDesc::Eventfd(e)
        }
        pb::FdTypes::Timerfd => {
            let e = f.tfd.ok_or_else(missing)?;
            timerfd::check(&e)?;
            FileDesc::Timerfd(e)
        }
        pb::FdTypes::Signalfd => FileDesc::Signalfd(f.sgfd.ok_or_else(missing)?),
        pb::FdTypes::Inotify => {
            let e = f.ify.clone().ok_or_else(missing)?;
            inotify::check(&e)?;
            FileDesc::Inotify(e)
        }
        pb::FdTypes::Eventpoll => FileDesc::Epoll(f.epfd.clone().ok_or_else(missing)?),
        _ => return Err(missing()),
    })
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

fn creds(c: &pb::CredsEntry, file: &str, tid: i32) -> Result<RstCreds, PlanError> {
    if c.groups.len() > RST_MAX_GROUPS {
        return Err(unsupported(
            file,
            tid,
            format!("{} supplementary groups (max {RST_MAX_GROUPS})", c.groups.len()),
        ));
    }
    let two = |v: &[u32]| [v.first().copied().unwrap_or(0), v.get(1).copied().unwrap_or(0)];
    let mut groups = [0u32; RST_MAX_GROUPS];
    groups[..c.groups.len()].copy_from_slice(&c.groups);
    Ok(RstCreds {
        uid: c.uid,
        euid: c.euid,
        suid: c.suid,
        fsuid: c.fsuid,
        gid: c.gid,
        egid: c.egid,
        sgid: c.sgid,
        fsgid: c.fsgid,
        cap_inh: two(&c.cap_inh),
        cap_prm: two(&c.cap_prm),
        cap_eff: two(&c.cap_eff),
        cap_bnd: two(&c.cap_bnd),
        cap_amb: two(&c.cap_amb),
        secbits: c.secbits,
        ngroups: c.groups.len() as u32,
        groups,
    })
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
        if name != "timens-0.img" {
            return Err(PlanError::BadSet {
                file: set.path(name).display().to_string(),
                what: "a time namespace of the dumped tree: namespaces are not restored by cryo yet \
                       (refused before creating any task)"
                    .into(),
            });
        }
    }
    if !set.has("timens-0.img") {
        return Ok(None);
    }
    let file = set.path("timens-0.img").display().to_string();
    let entries: Vec<pb::TimensEntry> = set.entries("timens-0.img", "TIMENS")?;
    let [e] = entries.as_slice() else {
        return Err(PlanError::BadSet {
            file,
            what: format!("{} entries, expected one", entries.len()),
        });
    };
    let mut clocks = [(0, 0); 2];
    for (i, (clock, t)) in [("monotonic", &e.monotonic), ("boottime", &e.boottime)]
        .into_iter()
        .enumerate()
    {
        if t.tv_nsec >= 1_000_000_000 || t.tv_sec > i64::MAX as u64 {
            return Err(PlanError::BadSet {
                file,
                what: format!("{clock} clock {}.{:09} is not a valid time", t.tv_sec, t.tv_nsec),
            });
        }
        clocks[i] = (t.tv_sec, t.tv_nsec);
    }
    Ok(Some(clocks))
}

/// seccomp.img: the programs (validated) and each filter's predecessor.
fn read_seccomp(set: &ImageSet) -> Result<(Vec<SeccompProg>, Vec<Option<u32>>), PlanError> {
    if !set.has("seccomp.img") {
        return Ok((Vec::new(), Vec::new()));
    }
    let file = set.path("seccomp.img").display().to_string();
    let entries: Vec<pb::SeccompEntry> = set.entries("seccomp.img", "SECCOMP")?;
    let filters: Vec<&pb::SeccompFilter> = entries.iter().flat_map(|e| e.seccomp_filters.iter()).collect();
    let mut progs = Vec::new();
    let mut prev = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let n = f.filter.len() / 8;
        if f.filter.len() % 8 != 0 || n == 0 || n > BPF_MAXINSNS {
            return Err(bad(
                &file,
                0,
                format!(
                    "filter {i}: {} bytes is not a BPF program of 1..={BPF_MAXINSNS} instructions",
                    f.filter.len()
                ),
            ));
        }
        let flags = f.flags.unwrap_or(0) & !SECCOMP_FILTER_FLAG_TSYNC;
        if flags & !SECCOMP_FLAGS_KNOWN != 0 {
            return Err(unsupported(
                &file,
                0,
                format!("filter {i}: seccomp filter flags {flags:#x}"),
            ));
        }
        if let Some(p) = f.prev {
            if p as usize >= filters.len() || p as usize == i {
                return Err(bad(&file, 0, format!("filter {i}: prev {p} names no other filter")));
            }
        }
        progs.push(SeccompProg {
            insns: f.filter.clone(),
            flags,
        });
        prev.push(f.prev);
    }
    Ok((progs, prev))
}

/// The chain ending at filter `newest`, oldest first.
fn seccomp_chain(newest: u32, prev: &[Option<u32>], file: &str, tid: i32) -> Result<Vec<u32>, PlanError> {
    let mut chain = Vec::new();
    let mut cur = Some(newest);
    while let Some(i) = cur {
        let Some(&p) = prev.get(i as usize) else {
            return Err(bad(
                file,
                tid,
                format!("seccomp filter {i} is not in seccomp.img ({} filters)", prev.len()),
            ));
        };
        if chain.len() > prev.len() {
            return Err(bad(file, tid, format!("the seccomp chain from filter {newest} loops")));
        }
        chain.push(i);
        cur = p;
    }
    chain.reverse();
    Ok(chain)
}

fn build_thread(
    set: &ImageSet,
    tid: i32,
    leader_tc: Option<&pb::TaskCoreEntry>,
    seccomp_prev: &[Option<u32>],
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
    let creds = thc.creds.as_ref().map(|c| creds(c, &file, tid)).transpose()?;
    let seccomp = match thc.seccomp_mode.unwrap_or(0) {
        0 => Seccomp::Off,
        1 => Seccomp::Strict,
        2 => {
            let newest = thc
                .seccomp_filter
                .ok_or_else(|| bad(&file, tid, "seccomp filter mode without a filter"))?;
            Seccomp::Filters(seccomp_chain(newest, seccomp_prev, &file, tid)?)
        }
        m => return Err(unsupported(&file, tid, format!("seccomp mode {m}"))),
    };
    let no_new_privs = thc.creds.as_ref().and_then(|c| c.no_new_privs).unwrap_or(0) != 0;
    if let Some(pol) = thc.sched_policy {
        // What sched_setscheduler takes: OTHER, FIFO, RR, BATCH, IDLE (+ RESET_ON_FORK).
        let base = pol & !(libc::SCHED_RESET_ON_FORK as u32);
        if ![0, 1, 2, 3, 5].contains(&base) {
            return Err(unsupported(&file, tid, format!("scheduling policy {pol:#x}")));
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
            &file,
            tid,
            format!("an rseq critical section pointer ({cs:#x}, RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL)"),
        ));
    }
    Ok(Thread {
        tid,
        regs: gpregs(&ti.gpregs),
        fp: fpregs(&ti.fpregs, &file, tid)?,
        clear_tid: ti.clear_tid_addr,
        sigmask,
        alt,
        creds,
        signals: siginfos(thc.signals_p.as_ref(), &file, tid)?,
        rseq: thc
            .rseq_entry
            .as_ref()
            .filter(|r| r.rseq_abi_pointer != 0)
            .map(|r| (r.rseq_abi_pointer, r.rseq_abi_size, r.signature)),
        comm: thc.comm.clone().or(tc.map(|t| t.comm.clone())).unwrap_or_default(),
        pdeath_sig: thc.pdeath_sig.unwrap_or(0),
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
    files: &BTreeMap<u32, FileDesc>,
    root_ids: Option<&pb::TaskKobjIdsEntry>,
    seccomp_prev: &[Option<u32>],
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
            threads.push(build_thread(set, t as i32, Some(tc), seccomp_prev)?);
        }
        if threads.is_empty() {
            return Err(bad(&file, pid, "a live task without threads"));
        }
    }
    let mut sigactions = Vec::new();
    for (i, s) in tc.sigactions.iter().enumerate() {
        if s.compat_sigaction == Some(true) {
            return Err(unsupported(
                &file,
                pid,
                format!("compat sigaction for signal {}", i + 1),
            ));
        }
        sigactions.push(KSigaction {
            handler: s.sigaction,
            flags: s.flags,
            restorer: s.restorer,
            mask: s.mask,
        });
    }
    let it = |e: Option<&pb::ItimerEntry>| {
        e.map_or(RstItimer::default(), |e| RstItimer {
            interval_sec: e.isec as i64,
            interval_usec: e.iusec as i64,
            value_sec: e.vsec as i64,
            value_usec: e.vusec as i64,
        })
    };
    let timers = tc.timers.as_ref();
    let itimers = [
        it(timers.map(|t| &t.real)),
        it(timers.map(|t| &t.virt)),
        it(timers.map(|t| &t.prof)),
    ];
    let mut posix_timers: Vec<RstPosixTimer> = timers
        .map(|t| t.posix.as_slice())
        .unwrap_or(&[])
        .iter()
        .map(|t| RstPosixTimer {
            id: t.it_id as i32,
            clock: t.clock_id as i32,
            sigev_notify: t.it_sigev_notify as i32,
            sigev_signo: t.si_signo as i32,
            sigev_value: t.sival_ptr,
            notify_tid: t.notify_thread_id.unwrap_or(0),
            _pad: 0,
            interval_sec: t.isec as i64,
            interval_nsec: t.insec as i64,
            value_sec: t.vsec as i64,
            value_nsec: t.vnsec as i64,
        })
        .collect();
    posix_timers.sort_by_key(|t| t.id);
    // A timer aimed at one thread (SIGEV_THREAD_ID) must name a thread of
    // this process: the kernel would refuse another, and a wrong target
    // would leave the thread that waits for it hanging.
    for t in &posix_timers {
        if t.sigev_notify & libc::SIGEV_THREAD_ID != 0 && !threads.iter().any(|th| th.tid == t.notify_tid) {
            return Err(bad(
                &file,
                pid,
                format!(
                    "POSIX timer {} signals thread {}, which is not a thread of this process",
                    t.id, t.notify_tid
                ),
            ));
        }
    }

    let (mut mm, mut fds, mut cwd, mut root, mut umask) = (None, Vec::new(), None, None, 0o022);
    if state != TASK_DEAD {
        let ids = set.ids(p.pid)?;
        // Namespaces are not restored yet: every task must live in the
        // namespaces the dump was made from (which the restore inherits).
        if let Some(r) = root_ids {
            let pairs = [
                ("pid", ids.pid_ns_id, r.pid_ns_id),
                ("net", ids.net_ns_id, r.net_ns_id),
                ("ipc", ids.ipc_ns_id, r.ipc_ns_id),
                ("uts", ids.uts_ns_id, r.uts_ns_id),
                ("mnt", ids.mnt_ns_id, r.mnt_ns_id),
                ("user", ids.user_ns_id, r.user_ns_id),
                ("cgroup", ids.cgroup_ns_id, r.cgroup_ns_id),
                ("time", ids.time_ns_id, r.time_ns_id),
            ];
            for (ns, mine, root) in pairs {
                if mine.is_some() && root.is_some() && mine != root {
                    return Err(unsupported(
                        set.path(&format!("ids-{pid}.img")).display().to_string(),
                        pid,
                        format!(
                            "a {ns} namespace of its own (id {} vs the root's {})",
                            mine.unwrap_or(0),
                            root.unwrap_or(0)
                        ),
                    ));
                }
            }
        }
        mm = Some(build_mm(set, pid, files)?);
        let fdinfo_file = set.path(&format!("fdinfo-{}.img", ids.files_id)).display().to_string();
        // A table shared with the parent is the parent's to set up.
        let fdinfo = if shares_parent_fds {
            Vec::new()
        } else {
            set.fdinfo(ids.files_id)?
        };
        for (i, f) in fdinfo.iter().enumerate() {
            if !files.contains_key(&f.id) {
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
        let fs = set.fs(p.pid)?;
        let fs_file = set.path(&format!("fs-{pid}.img")).display().to_string();
        for id in [fs.cwd_id, fs.root_id] {
            if !matches!(files.get(&id), Some(FileDesc::Reg { .. })) {
                return Err(bad(
                    &fs_file,
                    pid,
                    format!("cwd/root names file id {id}, not a regular file in files.img"),
                ));
            }
        }
        cwd = Some(fs.cwd_id);
        root = Some(fs.root_id);
        umask = fs.umask.unwrap_or(0o022);
    }
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
        rlimits: tc
            .rlimits
            .as_ref()
            .map(|r| r.rlimits.iter().map(|l| (l.cur, l.max)).collect())
            .unwrap_or_default(),
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
    })
}

fn build_mm(set: &ImageSet, pid: i32, files: &BTreeMap<u32, FileDesc>) -> Result<Mm, PlanError> {
    use vma_status as s;
    let file = set.path(&format!("mm-{pid}.img")).display().to_string();
    let entry = set.mm(pid as u32)?;
    let mut vmas: Vec<Vma> = Vec::new();
    let mut guards = Vec::new();
    let mut prev_end = 0;
    for (i, v) in entry.vmas.iter().enumerate() {
        let what = |w: &str| bad(&file, pid, format!("vma {i} ({:#x}-{:#x}): {w}", v.start, v.end));
        if v.start % 4096 != 0 || v.end % 4096 != 0 || v.end <= v.start {
            return Err(what("not a page-aligned non-empty range"));
        }
        if v.status & s::GUARD != 0 {
            // Guards lie inside VMAs listed before them (a range may span
            // adjacent ones).
            let mut a = v.start;
            for w in &vmas {
                if w.start <= a && a < w.end {
                    a = w.end;
                }
            }
            if a < v.end || v.status != s::GUARD {
                return Err(what("a guard range outside every vma"));
            }
            guards.push((v.start, v.end));
            continue;
        }
        if !guards.is_empty() {
            return Err(what("a vma after the guard ranges"));
        }
        if v.start < prev_end {
            return Err(what("overlaps the previous vma or is out of order"));
        }
        prev_end = v.end;
        let st = v.status;
        let kind = if st & s::VSYSCALL != 0 {
            VmaKind::Vsyscall
        } else if st & s::VVAR != 0 {
            VmaKind::Vvar
        } else if st & s::VDSO != 0 {
            VmaKind::Vdso
        } else if st & s::AIORING != 0 {
            let a = entry
                .aios
                .iter()
                .find(|a| a.id == v.start)
                .ok_or_else(|| what("an AIO ring without its aio_ring_entry"))?;
            if a.ring_len as u64 != v.end - v.start || a.nr_req == 0 {
                return Err(what(&format!(
                    "AIO ring of {} bytes for {} requests",
                    a.ring_len, a.nr_req
                )));
            }
            VmaKind::AioRing(a.nr_req)
        } else if st & (s::SYSVIPC | s::SOCKET | s::UNSUPP) != 0 {
            return Err(unsupported(
                &file,
                pid,
                format!(
                    "vma {i} at {:#x} (status {st:#x}: SysV shm, socket or AIO mapping)",
                    v.start
                ),
            ));
        } else if st & s::ANON_SHARED != 0 {
            return Err(unsupported(
                &file,
                pid,
                format!("vma {i} at {:#x}: shared anonymous memory without memfd", v.start),
            ));
        } else if st & s::FILE_SHARED != 0 {
            let id = v.shmid as u32;
            if !files.contains_key(&id) {
                return Err(what(&format!("file id {id} not in files.img")));
            }
            VmaKind::FileShared(id)
        } else if st & s::FILE_PRIVATE != 0 {
            let id = v.shmid as u32;
            if !files.contains_key(&id) {
                return Err(what(&format!("file id {id} not in files.img")));
            }
            VmaKind::FilePrivate(id)
        } else if st & s::ANON_PRIVATE != 0 {
            VmaKind::AnonPrivate
        } else {
            return Err(what(&format!("unknown status {st:#x}")));
        };
        let vma = Vma {
            start: v.start,
            end: v.end,
            pgoff: v.pgoff,
            prot: v.prot,
            flags: v.flags,
            madv: v.madv.unwrap_or(0),
            kind,
        };
        if let Some(hp) = vma.hugetlb_page() {
            // Private anonymous huge-page memory is restored, and mappings of
            // hugetlb memfd inodes (shared MAP_HUGETLB memory is one, as CRIU
            // records it); SysV and hugetlbfs files are not.
            // Shared ones only on a memfd inode (restored with MFD_HUGETLB).
            let on_memfd = match vma.kind {
                VmaKind::FileShared(id) | VmaKind::FilePrivate(id) => {
                    matches!(files.get(&id), Some(FileDesc::Memfd { .. }))
                }
                _ => false,
            };
            if vma.kind != VmaKind::AnonPrivate && !on_memfd {
                return Err(unsupported(
                    &file,
                    pid,
                    format!(
                        "vma {i} at {:#x}: shared or file-backed huge-page (MAP_HUGETLB) memory",
                        v.start
                    ),
                ));
            }
            if !(hp == 2 << 20 || hp == 1 << 30) || v.start % hp != 0 || v.end % hp != 0 {
                return Err(what(&format!("MAP_HUGETLB with {hp}-byte pages not aligned to them")));
            }
        }
        vmas.push(vma);
    }
    if !files.contains_key(&entry.exe_file_id) {
        return Err(bad(
            &file,
            pid,
            format!("exe file id {} not in files.img", entry.exe_file_id),
        ));
    }
    if entry.mm_saved_auxv.len() > 2 * 64 {
        return Err(bad(&file, pid, format!("auxv has {} words", entry.mm_saved_auxv.len())));
    }
    let (pagemap, pages_path) = read_pagemap(set, &format!("pagemap-{pid}.img"))?;
    let pm_file = set.path(&format!("pagemap-{pid}.img")).display().to_string();
    for r in &pagemap.runs {
        if r.flags & cryo_image::PE_PARENT != 0 {
            return Err(unsupported(
                &pm_file,
                pid,
                format!("pages at {:#x} in a parent image (incremental dumps)", r.vaddr),
            ));
        }
        // Every run must lie inside VMAs.
        let mut a = r.vaddr;
        while a < r.end() {
            let Some(v) = vmas.iter().find(|v| v.start <= a && a < v.end) else {
                return Err(bad(&pm_file, pid, format!("page {a:#x} is outside every vma")));
            };
            a = v.end;
        }
    }
    Ok(Mm {
        vmas,
        guards,
        exe_file: entry.exe_file_id,
        entry,
        pagemap,
        pages_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_chains_are_oldest_first_and_checked() {
        // 0 <- 1 <- 2, and 3 <- 1 is not possible: 3 follows 0 (a fork
        // that added another filter).
        let prev = [None, Some(0), Some(1), Some(0)];
        assert_eq!(seccomp_chain(2, &prev, "f", 1).unwrap(), vec![0, 1, 2]);
        assert_eq!(seccomp_chain(3, &prev, "f", 1).unwrap(), vec![0, 3]);
        assert_eq!(seccomp_chain(0, &prev, "f", 1).unwrap(), vec![0]);
        let e = seccomp_chain(4, &prev, "f", 7).unwrap_err().to_string();
        assert!(e.contains("pid 7") && e.contains("filter 4"), "{e}");
        let looped = [Some(1), Some(0)];
        let e = seccomp_chain(0, &looped, "f", 7).unwrap_err().to_string();
        assert!(e.contains("loops"), "{e}");
    }

    fn ids(v: &[(i32, i32, i32, i32)]) -> Vec<TreeIds> {
        v.iter()
            .map(|&(pid, ppid, sid, pgid)| TreeIds { pid, ppid, sid, pgid })
            .collect()
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
