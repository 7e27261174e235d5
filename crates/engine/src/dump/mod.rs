//! `cryo dump`: freeze a live process tree from outside and write a
//! CRIU 4.2-compatible image set.
//!
//! Order: refuse what we cannot dump (before anything is written), freeze,
//! collect and write every per-process image, then the shared images, and
//! inventory.img last (fsync'd). On failure every task is released as it
//! was, the parasite is removed, and the images written so far are deleted.

pub mod core;
pub mod freeze;
pub mod mem;

use crate::files::{reg, FdCtx, FileError, FileTable};
use crate::parasite::{self, Parasite, ParasiteError};
use crate::proc::{self, Vma};
use crate::ptrace::PtraceError;
use cryo_image::{pb, ImageError, ImageWriter};
use freeze::{FreezeError, FrozenProc, FrozenTree};
use mem::VmaKind;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
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
    pub pages: PageReader,
}

/// How page contents are read from the frozen tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PageReader {
    /// process_vm_readv in large chunks, written straight to pages-N.img.
    #[default]
    Readv,
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
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl DumpError {
    fn task(pid: i32, what: impl Into<String>) -> Self {
        DumpError::Task {
            pid,
            what: what.into(),
        }
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

/// Shared state of one dump.
struct DumpCtx {
    opts: DumpOpts,
    out: Written,
    files: FileTable,
    /// kcmp-deduplicated kernel object ids: (type, representative pid, id).
    kids: Vec<(i32, i32, u32)>,
    next_kid: [u32; 5],
    next_pages_id: u32,
    written_fdinfo: Vec<u32>,
    pstree: Vec<pb::PstreeEntry>,
    stats: pb::DumpStatsEntry,
    threads: usize,
}

/// Dump the tree rooted at `opts.pid` into `opts.dir`.
pub fn dump(opts: DumpOpts) -> Result<DumpSummary> {
    let t0 = Instant::now();
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
    let t_freeze = Instant::now();
    let mut tree = freeze::freeze_tree(opts.pid)?;
    let freezing_time = t_freeze.elapsed();
    let mut ctx = DumpCtx {
        opts,
        out: Written {
            dir: dir.clone(),
            files: Vec::new(),
        },
        files: FileTable::new(),
        kids: Vec::new(),
        next_kid: [1; 5],
        next_pages_id: 0,
        written_fdinfo: Vec::new(),
        pstree: Vec::new(),
        stats: pb::DumpStatsEntry::default(),
        threads: 0,
    };
    ctx.stats.freezing_time = freezing_time.as_micros() as u32;
    let res = dump_frozen(&mut ctx, &mut tree);
    match res {
        Ok(()) => {
            let frozen_t0 = t_freeze;
            let nprocs = tree.procs.len();
            // Stats and inventory, then release or kill.
            ctx.stats.frozen_time = frozen_t0.elapsed().as_micros() as u32;
            let fin = write_stats(&mut ctx).and_then(|_| write_inventory(&mut ctx, &tree));
            if let Err(e) = fin {
                ctx.out.remove_all();
                tree.release();
                return Err(e);
            }
            if ctx.opts.leave_running {
                tree.release();
            } else {
                kill_tree(tree);
            }
            let frozen = frozen_t0.elapsed();
            Ok(DumpSummary {
                processes: nprocs,
                threads: ctx.threads,
                pages_written: ctx.stats.pages_written,
                files: ctx.files.entries().count(),
                frozen,
                total: t0.elapsed(),
            })
        }
        Err(e) => {
            ctx.out.remove_all();
            let _ = std::fs::remove_file(&inv);
            tree.release();
            Err(e)
        }
    }
}

/// SIGKILL every process (still traced, so nothing runs in between), then
/// let them go and reap what we can.
fn kill_tree(tree: FrozenTree) {
    for p in &tree.procs {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    for p in tree.procs {
        for t in p.threads {
            let tid = t.tid();
            let _ = t.detach();
            let mut st = 0;
            // SAFETY-free: nix would do the same; libc keeps __WALL.
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(tid),
                Some(nix::sys::wait::WaitPidFlag::__WALL | nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            st += 1;
            let _ = st;
        }
    }
}

const NS_KINDS: [&str; 8] = ["pid", "net", "ipc", "uts", "mnt", "user", "cgroup", "time"];

/// Refusals that need no freezing (namespaces); more come per process.
fn precheck(pid: i32) -> Result<()> {
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(DumpError::task(pid, "no such process"));
    }
    check_ns(pid)
}

fn check_ns(pid: i32) -> Result<()> {
    for ns in NS_KINDS {
        let mine = std::fs::read_link(format!("/proc/self/ns/{ns}")).ok();
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok();
        if mine != theirs {
            return Err(DumpError::Refused {
                pid,
                what: format!("it is in a non-default {ns} namespace ({theirs:?}); namespaces are not supported yet"),
            });
        }
    }
    Ok(())
}

/// Everything read from /proc for one process before anything is written.
struct ProcFacts {
    stat: proc::Stat,
    status: proc::Status,
    vmas: Vec<(Vma, VmaKind)>,
    fds: Vec<(i32, String)>,
    timers: Vec<proc::PosixTimerInfo>,
    auxv: Vec<u64>,
}

fn collect_facts(pid: i32) -> Result<ProcFacts> {
    let stat = proc::parse_stat(&read(&format!("/proc/{pid}/stat"), pid)?)
        .map_err(|e| DumpError::task(pid, e.to_string()))?;
    let status = proc::parse_status(&read(&format!("/proc/{pid}/status"), pid)?)
        .map_err(|e| DumpError::task(pid, e.to_string()))?;
    let smaps = proc::parse_smaps(&read(&format!("/proc/{pid}/smaps"), pid)?)
        .map_err(|e| DumpError::task(pid, e.to_string()))?;
    let mut vmas: Vec<(Vma, VmaKind)> = smaps
        .into_iter()
        .map(|v| {
            let k = mem::classify(&v);
            (v, k)
        })
        .collect();
    mem::merge_vvar(&mut vmas);
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
        fds,
        timers,
        auxv,
    })
}

/// Refuse what we cannot dump yet, before writing anything.
fn refuse(pid: i32, f: &ProcFacts) -> Result<()> {
    check_ns(pid)?;
    for (v, k) in &f.vmas {
        match k {
            VmaKind::SysvShm => {
                return Err(DumpError::Refused {
                    pid,
                    what: format!("SysV shared memory mapped at {:#x} ({})", v.start, v.name),
                })
            }
            VmaKind::ShmemLike => {
                return Err(DumpError::Refused {
                    pid,
                    what: format!(
                        "shared anonymous/memfd mapping at {:#x} ({}) is not supported yet",
                        v.start, v.name
                    ),
                })
            }
            _ => {}
        }
    }
    for (fd, link) in &f.fds {
        if link.starts_with("socket:") {
            return Err(DumpError::Refused {
                pid,
                what: format!("fd {fd} is a socket ({link}); sockets are not supported yet"),
            });
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
    if f.status.seccomp == 2 {
        return Err(DumpError::Refused {
            pid,
            what: "seccomp filters are not supported yet".into(),
        });
    }
    Ok(())
}

fn dump_frozen(ctx: &mut DumpCtx, tree: &mut FrozenTree) -> Result<()> {
    let mut facts = Vec::new();
    for p in &tree.procs {
        let f = collect_facts(p.pid)?;
        refuse(p.pid, &f)?;
        facts.push(f);
    }
    for (p, f) in tree.procs.iter_mut().zip(facts) {
        dump_proc(ctx, p, f)?;
    }
    write_shared(ctx)
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

fn root_ns_ids() -> pb::TaskKobjIdsEntry {
    // CRIU numbers namespaces in the order it meets them; for the (only
    // supported) case of the dumper's own namespaces this order is fixed.
    pb::TaskKobjIdsEntry {
        vm_id: 1,
        files_id: 1,
        fs_id: 1,
        sighand_id: 1,
        pid_ns_id: Some(1),
        net_ns_id: Some(2),
        ipc_ns_id: Some(3),
        uts_ns_id: Some(4),
        mnt_ns_id: Some(6),
        user_ns_id: Some(7),
        cgroup_ns_id: Some(8),
        time_ns_id: Some(5),
    }
}

fn dump_proc(ctx: &mut DumpCtx, p: &mut FrozenProc, f: ProcFacts) -> Result<()> {
    let pid = p.pid;
    let ptr = |source| DumpError::Ptrace { pid, source };
    let para = |source| DumpError::Parasite { pid, source };

    // --- inside the target: the parasite ---
    let code_addr =
        parasite::find_code_addr(pid).map_err(|e| DumpError::task(pid, e.to_string()))?;
    let (leader, others) = p.threads.split_first_mut().expect("a process has a leader");
    let timer_ids: Vec<i32> = f.timers.iter().map(|t| t.id).collect();
    let (sigacts, itimers, posix, misc, mut tmisc) = {
        let mut para_ = Parasite::inject(leader, code_addr).map_err(para)?;
        let sa = para_.sigactions().map_err(para)?;
        let it = para_.itimers().map_err(para)?;
        let pt = if timer_ids.is_empty() {
            Vec::new()
        } else {
            para_.posix_timers(&timer_ids).map_err(para)?
        };
        let misc = para_.misc().map_err(para)?;
        let mut tm = vec![para_.thread_misc().map_err(para)?];
        for t in others.iter_mut() {
            tm.push(para_.thread_misc_of(t).map_err(para)?);
        }
        para_.cure().map_err(para)?;
        (sa, it, pt, misc, tm)
    };

    // --- files (ids: mappings first, then fds, then cwd/root, like CRIU) ---
    let mut vma_entries = Vec::new();
    for (v, k) in &f.vmas {
        let mut shmid = 0;
        if matches!(k, VmaKind::FilePrivate | VmaKind::FileShared) {
            let mf = format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end);
            let st = crate::files::stat_path(&mf).map_err(|source| DumpError::Io {
                path: mf.clone().into(),
                source,
            })?;
            let name = v.name.clone();
            let deleted = v.deleted;
            shmid = ctx.files.mapped_file(st.st_dev, st.st_ino, |id| {
                let open = if deleted {
                    std::fs::File::open(&mf).ok()
                } else {
                    None
                };
                reg::reg_entry(
                    id,
                    &name,
                    deleted,
                    &st,
                    libc::O_RDONLY as u32,
                    0,
                    open,
                    &mut FileTable::new(),
                )
            })? as u64;
        }
        vma_entries.push(mem::vma_entry(v, *k, shmid));
    }
    let exe_file_id = {
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
        ctx.files.mapped_file(st.st_dev, st.st_ino, |id| {
            let open = if deleted {
                std::fs::File::open(&exe).ok()
            } else {
                None
            };
            reg::reg_entry(
                id,
                &name,
                deleted,
                &st,
                libc::O_RDONLY as u32,
                0,
                open,
                &mut FileTable::new(),
            )
        })?
    };

    let ids = pb::TaskKobjIdsEntry {
        vm_id: kid(ctx, 0, crate::sys::KCMP_VM, pid),
        files_id: kid(ctx, 1, crate::sys::KCMP_FILES, pid),
        fs_id: kid(ctx, 2, crate::sys::KCMP_FS, pid),
        sighand_id: kid(ctx, 3, crate::sys::KCMP_SIGHAND, pid),
        ..root_ns_ids()
    };

    if !ctx.written_fdinfo.contains(&ids.files_id) {
        let pidfd = crate::sys::pidfd_open(pid)
            .map_err(|e| DumpError::task(pid, format!("pidfd_open: {e}")))?;
        let mut fdinfos = Vec::new();
        for (fd, link) in &f.fds {
            fdinfos.push(dump_one_fd(ctx, pid, *fd, link, &pidfd)?);
        }
        let path = ctx.out.path(&format!("fdinfo-{}.img", ids.files_id));
        write_image(&path, "FDINFO", &fdinfos)?;
        ctx.written_fdinfo.push(ids.files_id);
    }

    let cwd_id = fs_file(ctx, pid, "cwd")?;
    let root_id = fs_file(ctx, pid, "root")?;

    // --- registers, signals: per thread ---
    let leader_mask;
    {
        let t = &p.threads[0];
        leader_mask = t.sigmask().map_err(ptr)?;
    }
    let shared_pending = p.threads[0].peek_siginfo(true).map_err(ptr)?;
    for (i, t) in p.threads.iter().enumerate() {
        let tid = t.tid();
        let tm = tmisc.get_mut(i).map(|m| *m).unwrap_or_default();
        let tstat = proc::parse_stat(&read(&format!("/proc/{pid}/task/{tid}/stat"), pid)?)
            .map_err(|e| DumpError::task(pid, e.to_string()))?;
        let tstatus = proc::parse_status(&read(&format!("/proc/{pid}/task/{tid}/status"), pid)?)
            .map_err(|e| DumpError::task(pid, e.to_string()))?;
        let regs = t.regs().map_err(ptr)?;
        let xs = t.xstate().map_err(ptr)?;
        let mut tls = [[0u32; 4]; 3];
        for (j, d) in tls.iter_mut().enumerate() {
            *d = t.thread_area(12 + j as u32).map_err(ptr)?;
        }
        let (rla, rla_len) = crate::sys::get_robust_list(tid).unwrap_or((0, 0));
        let facts = core::ThreadFacts {
            comm: tstat.comm.clone(),
            stat: tstat,
            status: tstatus,
            secbits: tm.secbits as u32,
            misc: tm,
            futex_rla: rla,
            futex_rla_len: rla_len as u32,
            sigmask: t.sigmask().map_err(ptr)?,
            pending: t.peek_siginfo(false).map_err(ptr)?,
            rseq: t.rseq().map_err(ptr)?,
        };
        let leader = i == 0;
        let tc = leader.then(|| pb::TaskCoreEntry {
            task_state: if p.threads[0].was_group_stopped() {
                3
            } else {
                1
            },
            exit_code: 0,
            personality: u32::from_str_radix(
                read(&format!("/proc/{pid}/personality"), pid)
                    .unwrap_or_default()
                    .trim(),
                16,
            )
            .unwrap_or(0),
            flags: f.stat.flags,
            blk_sigset: leader_mask,
            comm: f.stat.comm.clone(),
            timers: Some(core::timers(&itimers, &f.timers, &posix)),
            rlimits: Some(pb::TaskRlimitsEntry {
                rlimits: misc
                    .rlimits
                    .iter()
                    .map(|r| pb::RlimitEntry {
                        cur: r[0],
                        max: r[1],
                    })
                    .collect(),
            }),
            cg_set: None,
            signals_s: Some(core::signal_queue(&shared_pending)),
            old_seccomp_mode: None,
            old_seccomp_filter: None,
            loginuid: read(&format!("/proc/{pid}/loginuid"), pid)
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            oom_score_adj: read(&format!("/proc/{pid}/oom_score_adj"), pid)
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            sigactions: core::sigactions(&sigacts),
            child_subreaper: Some(misc.child_subreaper != 0),
            blk_sigset_extended: None,
            stop_signo: match p.threads[0].first_stop {
                crate::ptrace::StopKind::Event { sig } if sig != libc::SIGTRAP => Some(sig as u32),
                _ => None,
            },
            membarrier_registration_mask: None,
        });
        let core_e = pb::CoreEntry {
            mtype: pb::core_entry::March::X8664 as i32,
            thread_info: Some(pb::ThreadInfoX86 {
                clear_tid_addr: tm.clear_tid,
                gpregs: core::gpregs(&regs),
                fpregs: core::fpregs(&xs),
                tls: core::tls(&tls),
            }),
            tc,
            ids: None,
            thread_core: Some(core::thread_core(&facts, leader)),
            ..Default::default()
        };
        let path = ctx.out.path(&format!("core-{tid}.img"));
        write_image(&path, "CORE", &[core_e])?;
    }
    ctx.threads += p.threads.len();

    // --- memory ---
    let mm = mem::mm_entry(
        &f.stat,
        misc.brk,
        f.auxv.clone(),
        exe_file_id,
        vma_entries,
        misc.dumpable,
        misc.thp_disabled != 0,
    );
    let path = ctx.out.path(&format!("mm-{pid}.img"));
    write_image(&path, "MM", &[mm])?;
    dump_pages(ctx, pid, &f.vmas)?;

    // --- ids, fs, pstree ---
    let path = ctx.out.path(&format!("ids-{pid}.img"));
    write_image(&path, "IDS", &[ids])?;
    let fs = pb::FsEntry {
        cwd_id,
        root_id,
        umask: Some(f.status.umask.unwrap_or(misc.umask)),
    };
    let path = ctx.out.path(&format!("fs-{pid}.img"));
    write_image(&path, "FS", &[fs])?;
    ctx.pstree.push(pb::PstreeEntry {
        pid: pid as u32,
        ppid: p.ppid as u32,
        pgid: f.stat.pgid as u32,
        sid: f.stat.sid as u32,
        threads: p.threads.iter().map(|t| t.tid() as u32).collect(),
    });
    Ok(())
}

fn dump_one_fd(
    ctx: &mut DumpCtx,
    pid: i32,
    fd: i32,
    link: &str,
    pidfd: &OwnedFd,
) -> Result<pb::FdinfoEntry> {
    let p = format!("/proc/{pid}/fd/{fd}");
    let st = crate::files::stat_path(&p).map_err(|source| DumpError::Io {
        path: p.clone().into(),
        source,
    })?;
    let info = proc::parse_fdinfo(&read(&format!("/proc/{pid}/fdinfo/{fd}"), pid)?)
        .map_err(|e| DumpError::task(pid, e.to_string()))?;
    let c = FdCtx {
        pid,
        fd,
        link: link.to_string(),
        stat: st,
        info,
        pidfd,
    };
    Ok(ctx.files.dump_fd(&c)?)
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
    if deleted {
        return Err(DumpError::Refused {
            pid,
            what: format!("its {which} {name} was deleted"),
        });
    }
    let name = name.to_string();
    Ok(ctx.files.standalone(|id| {
        reg::reg_entry(id, &name, false, &st, 0, 0, None, &mut FileTable::new())
    })?)
}

/// pagemap-PID.img + pages-N.img.
fn dump_pages(ctx: &mut DumpCtx, pid: i32, vmas: &[(Vma, VmaKind)]) -> Result<()> {
    let t = Instant::now();
    let pm_path = format!("/proc/{pid}/pagemap");
    let pm = std::fs::File::open(&pm_path).map_err(|source| DumpError::Io {
        path: pm_path.clone().into(),
        source,
    })?;
    let mut runs = Vec::new();
    let mut scanned = 0u64;
    for (v, k) in vmas {
        if matches!(
            k,
            VmaKind::Heap | VmaKind::AnonPrivate | VmaKind::FilePrivate | VmaKind::Vdso
        ) {
            scanned += (v.end - v.start) / 4096;
        }
        runs.extend(
            mem::scan_vma(pm.as_raw_fd(), v, *k).map_err(|source| DumpError::Io {
                path: pm_path.clone().into(),
                source,
            })?,
        );
    }
    let runs = mem::merge_runs(runs);
    ctx.next_pages_id += 1;
    let pages_id = ctx.next_pages_id;
    let pages_path = ctx.out.path(&format!("pages-{pages_id}.img"));
    let written = write_pages(pid, &runs, &pages_path)?;
    ctx.stats.memdump_time += t.elapsed().as_micros() as u32;
    ctx.stats.pages_scanned += scanned;
    ctx.stats.pages_written += written / 4096;
    let path = ctx.out.path(&format!("pagemap-{pid}.img"));
    let mut w = ImageWriter::create(&path, Some("PAGEMAP"))?;
    w.entry(&pb::PagemapHead { pages_id })?;
    for e in mem::pagemap_entries(&runs) {
        w.entry(&e)?;
    }
    w.finish()?;
    Ok(())
}

/// Read the runs with process_vm_readv in large chunks and append them to the pages file.
/// Pages go to the page cache (no fsync: the inventory's fsync comes last).
fn write_pages(pid: i32, runs: &[mem::Run], path: &Path) -> Result<u64> {
    const CHUNK: usize = 8 << 20;
    let io = |source| DumpError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::create(path).map_err(io)?;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    let mut batch: Vec<(u64, usize)> = Vec::new();
    let mut batch_len = 0usize;
    let flush = |batch: &mut Vec<(u64, usize)>,
                 len: &mut usize,
                 buf: &mut Vec<u8>,
                 f: &mut std::fs::File|
     -> Result<u64> {
        if *len == 0 {
            return Ok(0);
        }
        let n = crate::sys::process_vm_readv(pid, &mut buf[..*len], batch).map_err(|e| {
            DumpError::task(pid, format!("reading memory at {:#x}: {e}", batch[0].0))
        })?;
        if n != *len {
            return Err(DumpError::task(
                pid,
                format!("short memory read at {:#x}: {n} of {len} bytes", batch[0].0),
            ));
        }
        f.write_all(&buf[..*len]).map_err(|source| DumpError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let done = *len as u64;
        batch.clear();
        *len = 0;
        Ok(done)
    };
    for r in runs {
        let mut a = r.start;
        let end = r.start + r.len;
        while a < end {
            let room = CHUNK - batch_len;
            let n = ((end - a) as usize).min(room);
            batch.push((a, n));
            batch_len += n;
            a += n as u64;
            if batch_len == CHUNK || batch.len() >= 512 {
                total += flush(&mut batch, &mut batch_len, &mut buf, &mut f)?;
            }
        }
    }
    total += flush(&mut batch, &mut batch_len, &mut buf, &mut f)?;
    Ok(total)
}

fn write_image<M: prost::Message>(path: &Path, magic: &str, entries: &[M]) -> Result<()> {
    let mut w = ImageWriter::create(path, Some(magic))?;
    for e in entries {
        w.entry(e)?;
    }
    w.finish()?;
    Ok(())
}

/// files.img and its side images, pstree, seccomp, timens.
fn write_shared(ctx: &mut DumpCtx) -> Result<()> {
    let entries: Vec<pb::FileEntry> = ctx.files.entries().cloned().collect();
    let path = ctx.out.path("files.img");
    write_image(&path, "FILES", &entries)?;
    let pipes: Vec<(pb::PipeDataEntry, Vec<u8>)> = ctx
        .files
        .pipes_data
        .values()
        .filter(|(e, _)| e.bytes > 0)
        .cloned()
        .collect();
    if !pipes.is_empty() {
        let path = ctx.out.path("pipes-data.img");
        let mut w = ImageWriter::create(&path, Some("PIPES_DATA"))?;
        for (e, d) in &pipes {
            w.entry(e)?;
            w.raw(d)?;
        }
        w.finish()?;
    }
    if !ctx.files.remaps.is_empty() {
        let remaps = ctx.files.remaps.clone();
        let path = ctx.out.path("remap-fpath.img");
        write_image(&path, "REMAP_FPATH", &remaps)?;
    }
    let ghosts = std::mem::take(&mut ctx.files.ghosts);
    for (id, g, chunks) in &ghosts {
        let path = ctx.out.path(&format!("ghost-file-{id}.img"));
        let mut w = ImageWriter::create(&path, Some("GHOST_FILE"))?;
        w.entry(g)?;
        for (off, data) in chunks {
            w.entry(&pb::GhostChunkEntry {
                len: data.len() as u64,
                off: *off,
            })?;
            w.raw(data)?;
        }
        w.finish()?;
    }
    let pstree = ctx.pstree.clone();
    let path = ctx.out.path("pstree.img");
    write_image(&path, "PSTREE", &pstree)?;
    let path = ctx.out.path("seccomp.img");
    write_image(
        &path,
        "SECCOMP",
        &[pb::SeccompEntry {
            seccomp_filters: Vec::new(),
        }],
    )?;
    let now = |c| {
        let (s, ns) = crate::sys::clock_gettime(c);
        pb::Timespec {
            tv_sec: s,
            tv_nsec: ns,
        }
    };
    let tn = pb::TimensEntry {
        monotonic: now(libc::CLOCK_MONOTONIC),
        boottime: now(libc::CLOCK_BOOTTIME),
    };
    let path = ctx.out.path("timens-0.img");
    write_image(&path, "TIMENS", &[tn])?;
    Ok(())
}

fn write_stats(ctx: &mut DumpCtx) -> Result<()> {
    let mut s = ctx.stats;
    s.irmap_resolve = Some(0);
    s.page_pipes = Some(0);
    s.page_pipe_bufs = Some(0);
    s.shpages_scanned = Some(0);
    s.shpages_skipped_parent = Some(0);
    s.shpages_written = Some(0);
    let path = ctx.out.path("stats-dump");
    write_image(
        &path,
        "STATS",
        &[pb::StatsEntry {
            dump: Some(s),
            restore: None,
        }],
    )
}

fn write_inventory(ctx: &mut DumpCtx, _tree: &FrozenTree) -> Result<()> {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .unwrap_or_default()
        .trim()
        .to_string();
    let inv = pb::InventoryEntry {
        img_version: 2,
        fdinfo_per_id: Some(true),
        root_ids: Some(root_ns_ids()),
        ns_per_id: Some(true),
        root_cg_set: Some(1),
        lsmtype: Some(pb::Lsmtype::NoLsm as i32),
        dump_uptime: None,
        pre_dump_mode: None,
        tcp_close: None,
        network_lock_method: Some(0),
        plugins_entry: Some(pb::PluginsEntry {
            plugins: Vec::new(),
        }),
        dump_criu_run_id: Some(uuid),
        allow_uprobes: None,
    };
    let path = ctx.out.path("inventory.img");
    write_image(&path, "INVENTORY", &[inv])
}
