//! Lazy restore: `cryo restore --lazy-pages` and the daemon that fills the
//! memory, `cryo lazy-pages` (criu's spellings and handoff; see
//! docs/memory-tracking.md).
//!
//! * **Which memory**: the pages of a private anonymous VMA ([`vma_is_lazy`])
//!   whose pagemap run is flagged `PE_LAZY` ([`run_is_lazy`]; dumps of cryo
//!   and CRIU flag every anonymous run so except, in CRIU's, the stack page
//!   under each thread's stack pointer). The premap leaves them out; the
//!   other pages of those VMAs are read as usual.
//! * **Handoff** (CRIU's protocol): the daemon listens on `lazy-pages.socket`
//!   in the work dir (SOCK_STREAM). The restore connects once, before the
//!   first task is forked; each task, before it jumps into the restorer,
//!   creates a userfaultfd (non-cooperative: fork, remap, remove and unmap
//!   events) and sends its pid as an `i32` (its pid in the images; a zombie
//!   sends `-pid` and nothing else), then one byte carrying the fd
//!   (SCM_RIGHTS). The restorer registers the lazy VMAs in missing mode once
//!   they are in place and closes its copy. Once the tree runs the restore
//!   sends [`RESTORE_FINISHED`].
//! * **Daemon** ([`serve`]): faults are served at any time (the page block
//!   around the fault, UFFDIO_COPY straight from the pages file mapped
//!   read-only, or UFFDIO_ZEROPAGE where the image has nothing); after
//!   `RESTORE_FINISHED` the rest is copied in the background in large
//!   chunks, between the faults. Fork events give the child's userfaultfd and
//!   the parent's missing pages; remap moves them; unmap and remove
//!   (MADV_DONTNEED) drop them. Parent image sets (PE_PARENT) are resolved by
//!   the plan: each run names the pages file of the set that holds it.
//! * **Failure**: a watchdog process (the daemon's child, `cryo lazy-pages
//!   --watchdog`) holds a copy of every userfaultfd. If the daemon dies or
//!   fails before every page is in, the faults wait (the userfaultfds stay
//!   open, so no page reads as zero) and the watchdog SIGKILLs every process
//!   it was told of and their descendants, says so on stderr, and exits
//!   with status 1. Without the watchdog a daemon's death would release the
//!   userfaultfds and the missing pages would read as zeros.

use super::plan::{Mm, Vma, VmaKind};
use crate::sys::uffd::{self, FileMap, Filled, Msg};
use std::collections::{BTreeMap, HashMap};
use std::io::{IoSlice, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The daemon's socket, in the work dir (CRIU's name).
pub const SOCK_NAME: &str = "lazy-pages.socket";
/// Sent by the restore once the tree runs ("RSTF", CRIU's value).
pub const RESTORE_FINISHED: u32 = 0x5253_5446;
/// The userfaultfd features a lazy restore needs (CRIU's set).
pub const FEATURES: u64 = uffd::UFFD_FEATURE_EVENT_FORK
    | uffd::UFFD_FEATURE_EVENT_REMAP
    | uffd::UFFD_FEATURE_EVENT_REMOVE
    | uffd::UFFD_FEATURE_EVENT_UNMAP;
const PAGE: u64 = 4096;
/// Pages copied for one fault (the aligned block around it).
const FAULT_BLOCK: u64 = 64 << 10;
/// Pages copied per background step.
const CHUNK: u64 = 2 << 20;

/// Can this kernel (and this user) make a userfaultfd with `features`?
pub fn probe(features: u64) -> Result<(), String> {
    let fd = uffd::userfaultfd((libc::O_CLOEXEC | libc::O_NONBLOCK) as u64).map_err(|e| e.to_string())?;
    let got = uffd::api(fd.as_raw_fd(), features).map_err(|e| format!("UFFDIO_API: {e}"))?;
    if got & features != features {
        return Err(format!("features {got:#x} granted, {features:#x} wanted"));
    }
    Ok(())
}

/// Is `v` filled lazily? Private anonymous memory, not hugetlb, not
/// droppable, not locked (mlock would fault it all in at once), and not
/// MADV_DONTFORK/WIPEONFORK (a forked child's copy would not match its
/// parent's missing pages).
pub fn vma_is_lazy(v: &Vma) -> bool {
    let no_flags = (libc::MAP_HUGETLB | libc::MAP_LOCKED) as u32 | super::premap::MAP_DROPPABLE;
    let no_madv = (1u64 << libc::MADV_DONTFORK) | (1u64 << libc::MADV_WIPEONFORK);
    v.kind == VmaKind::AnonPrivate && v.flags & no_flags == 0 && v.madv & no_madv == 0
}

/// Is a pagemap run (with its bytes in some pages file) filled lazily?
pub fn run_is_lazy(r: &cryo_image::PageRun) -> bool {
    r.flags & cryo_image::PE_LAZY != 0 && r.offset.is_some()
}

/// A piece of lazy memory: `[start, end)` (the map key is `start`), whose
/// bytes are at `off` in pages file `file`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    end: u64,
    file: usize,
    off: u64,
}

/// The lazy pieces of an mm: `(start, end, pages file index, offset)`.
pub fn pieces(mm: &Mm) -> Vec<(u64, u64, usize, u64)> {
    let mut out = Vec::new();
    let runs = &mm.pagemap.runs;
    for v in mm.vmas.iter().filter(|v| vma_is_lazy(v)) {
        let first = runs.partition_point(|r| r.end() <= v.start);
        for (i, r) in runs.iter().enumerate().skip(first) {
            if r.vaddr >= v.end {
                break;
            }
            if !run_is_lazy(r) {
                continue;
            }
            let (s, e) = (r.vaddr.max(v.start), r.end().min(v.end));
            let off = r.offset.unwrap_or(0) + (s - r.vaddr);
            if s < e {
                out.push((s, e, mm.run_file.get(i).copied().unwrap_or(0), off));
            }
        }
    }
    out
}

/// Missing pages of one mm, by start address (no two overlap).
#[derive(Clone, Debug, Default)]
struct Pending(BTreeMap<u64, Piece>);

impl Pending {
    fn bytes(&self) -> u64 {
        self.0.iter().map(|(s, p)| p.end - s).sum()
    }

    /// The piece holding `addr`.
    fn find(&self, addr: u64) -> Option<(u64, Piece)> {
        let (&s, &p) = self.0.range(..=addr).next_back()?;
        (addr < p.end).then_some((s, p))
    }

    /// Take `[s, e)` out; returns what was there (pieces cut to the range).
    fn cut(&mut self, s: u64, e: u64) -> Vec<(u64, Piece)> {
        let keys: Vec<u64> = self
            .0
            .range(..e)
            .rev()
            .take_while(|(_, p)| p.end > s)
            .map(|(&k, _)| k)
            .collect();
        let mut out = Vec::new();
        for k in keys {
            let p = self.0.remove(&k).expect("key just seen");
            if k < s {
                self.0.insert(k, Piece { end: s, ..p });
            }
            if p.end > e {
                self.0.insert(
                    e,
                    Piece {
                        end: p.end,
                        file: p.file,
                        off: p.off + (e - k),
                    },
                );
            }
            let (a, b) = (k.max(s), p.end.min(e));
            out.push((
                a,
                Piece {
                    end: b,
                    file: p.file,
                    off: p.off + (a - k),
                },
            ));
        }
        out.reverse();
        out
    }

    /// mremap of `[from, from + len)` to `to`: its missing pages move.
    fn remap(&mut self, from: u64, to: u64, len: u64) {
        let moved = self.cut(from, from + len);
        for (s, p) in moved {
            let ns = s - from + to;
            self.0.insert(
                ns,
                Piece {
                    end: p.end - from + to,
                    ..p
                },
            );
        }
    }
}

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum LazyError {
    #[error("lazy-pages: {0}")]
    Setup(String),
    #[error("lazy-pages: pid {pid}: {what}")]
    Task { pid: i32, what: String },
    #[error("lazy-pages: the restore closed its connection before it finished (it failed or was killed)")]
    RestoreGone,
    #[error(transparent)]
    Plan(#[from] super::plan::PlanError),
}

fn setup(what: impl std::fmt::Display, e: impl std::fmt::Display) -> LazyError {
    LazyError::Setup(format!("{what}: {e}"))
}

/// The restore side: the connection to the daemon.
pub mod client {
    use super::*;

    /// Connect to the daemon's socket in `work_dir`.
    pub fn connect(work_dir: &Path) -> Result<OwnedFd, String> {
        let path = work_dir.join(SOCK_NAME);
        let s = UnixStream::connect(&path).map_err(|e| {
            format!(
                "connecting to the lazy-pages daemon at {}: {e} (start `cryo lazy-pages -D DIR` first, with the same --work-dir)",
                path.display()
            )
        })?;
        Ok(OwnedFd::from(s))
    }

    /// A userfaultfd of this process for a lazy restore (non-blocking,
    /// close-on-exec, with [`FEATURES`]).
    pub fn make_uffd() -> std::io::Result<OwnedFd> {
        let fd = uffd::userfaultfd((libc::O_CLOEXEC | libc::O_NONBLOCK) as u64)?;
        let got = uffd::api(fd.as_raw_fd(), FEATURES)?;
        if got & FEATURES != FEATURES {
            return Err(std::io::Error::other(format!(
                "the kernel's userfaultfd lacks the events a lazy restore needs (features {got:#x})"
            )));
        }
        Ok(fd)
    }

    /// Send `pid` and (for a live task) its userfaultfd.
    pub fn send_uffd(sock: RawFd, pid: i32, fd: Option<RawFd>) -> std::io::Result<()> {
        use nix::sys::socket::{send, sendmsg, ControlMessage, MsgFlags, UnixAddr};
        send(sock, &pid.to_ne_bytes(), MsgFlags::MSG_NOSIGNAL).map_err(std::io::Error::from)?;
        if let Some(fd) = fd {
            let fds = [fd];
            sendmsg::<UnixAddr>(
                sock,
                &[IoSlice::new(&[0u8])],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(std::io::Error::from)?;
        }
        Ok(())
    }

    /// The tree runs: the daemon may copy the rest.
    pub fn send_finished(sock: RawFd) -> std::io::Result<()> {
        use nix::sys::socket::{send, MsgFlags};
        send(sock, &RESTORE_FINISHED.to_ne_bytes(), MsgFlags::MSG_NOSIGNAL).map_err(std::io::Error::from)?;
        Ok(())
    }
}

/// What `cryo lazy-pages` does.
#[derive(Clone, Debug)]
pub struct LazyOpts {
    pub dir: PathBuf,
    pub work_dir: PathBuf,
    /// Start the watchdog (see the module docs); tests may turn it off.
    pub watchdog: bool,
}

/// What the daemon did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Processes whose userfaultfd came from the restore, and forked since.
    pub procs: usize,
    pub forks: usize,
    pub faults: u64,
    /// Bytes copied for faults, and in the background.
    pub fault_bytes: u64,
    pub background_bytes: u64,
    /// Zero pages given for faults outside the image's pages.
    pub zero_pages: u64,
    /// Bytes no longer wanted: unmapped, discarded (MADV_DONTNEED), or of a
    /// process that exited.
    pub dropped_bytes: u64,
    /// From the first userfaultfd to the last page.
    pub elapsed: Duration,
}

/// One mm the daemon serves.
struct Served {
    fd: OwnedFd,
    /// The pid in the images (0: forked after the restore).
    pid: i32,
    pending: Pending,
    files: Files,
    /// Faults to serve again once the mm's events are read (EAGAIN).
    retry: Vec<u64>,
    gone: bool,
}

/// The pages files of an mm, mapped (shared by the mms that fork from it).
type Files = Arc<Vec<Arc<FileMap>>>;

/// The images' lazy memory: per pid, its pieces and its pages files.
struct Images {
    procs: HashMap<i32, (Pending, Files)>,
    nr_tasks: usize,
}

fn load(dir: &Path) -> Result<Images, LazyError> {
    let plan = super::plan::build(dir)?;
    let mut maps: HashMap<PathBuf, Arc<FileMap>> = HashMap::new();
    let mut procs = HashMap::new();
    for p in &plan.procs {
        let Some(mm) = &p.mm else { continue };
        let mut files = Vec::new();
        for f in &mm.pages_files {
            let m = match maps.get(f) {
                Some(m) => m.clone(),
                None => {
                    let file = std::fs::File::open(f).map_err(|e| setup(f.display(), e))?;
                    let m = Arc::new(FileMap::new(&file).map_err(|e| setup(format!("mapping {}", f.display()), e))?);
                    maps.insert(f.clone(), m.clone());
                    m
                }
            };
            files.push(m);
        }
        let mut pending = Pending::default();
        for (s, e, file, off) in pieces(mm) {
            if files.get(file).is_none_or(|m| off + (e - s) > m.len()) {
                return Err(setup(
                    format!("pid {}", p.pid),
                    format!("pages at {s:#x} lie beyond pages file {file}"),
                ));
            }
            pending.0.insert(s, Piece { end: e, file, off });
        }
        procs.insert(p.pid, (pending, Arc::new(files)));
    }
    Ok(Images {
        procs,
        nr_tasks: plan.procs.len(),
    })
}

/// The daemon's state.
struct Daemon {
    images: Images,
    served: Vec<Served>,
    received: usize,
    finished: bool,
    sum: Summary,
    started: Option<Instant>,
    watchdog: Option<(UnixStream, std::process::Child)>,
    /// Next mm for the background copy.
    next: usize,
}

/// Run the daemon: listen in `opts.work_dir`, call `ready` once the socket
/// exists, serve one restore until every page is in.
pub fn serve(opts: &LazyOpts, ready: impl FnOnce()) -> Result<Summary, LazyError> {
    let images = load(&opts.dir)?;
    let path = opts.work_dir.join(SOCK_NAME);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| setup(path.display(), e))?;
    let mut d = Daemon {
        images,
        served: Vec::new(),
        received: 0,
        finished: false,
        sum: Summary::default(),
        started: None,
        watchdog: None,
        next: 0,
    };
    if opts.watchdog {
        d.watchdog = Some(start_watchdog()?);
    }
    ready();
    let (conn, _) = listener.accept().map_err(|e| setup("accepting the restore", e))?;
    drop(listener);
    let _ = std::fs::remove_file(&path);
    let r = d.run(conn);
    if r.is_ok() {
        if let Some((mut w, mut child)) = d.watchdog.take() {
            use std::io::Write;
            let _ = w.write_all(b"D");
            let _ = child.wait();
        }
    }
    // On error the watchdog sees its socket close and kills the tree.
    r.map(|()| d.sum)
}

impl Daemon {
    fn run(&mut self, mut conn: UnixStream) -> Result<(), LazyError> {
        let mut conn_open = true;
        loop {
            let background = self.finished && self.served.iter().any(|s| !s.gone && !s.pending.0.is_empty());
            let retries = self.served.iter().any(|s| !s.retry.is_empty());
            if self.finished && !background && !retries && self.received >= self.images.nr_tasks {
                break;
            }
            let mut fds = Vec::with_capacity(self.served.len() + 1);
            if conn_open {
                fds.push(libc::pollfd {
                    fd: conn.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            for s in &self.served {
                fds.push(libc::pollfd {
                    fd: s.fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            let timeout = if background || retries { 0 } else { 1000 };
            uffd::poll(&mut fds, timeout).map_err(|e| setup("poll", e))?;
            let mut i = 0;
            if conn_open {
                if fds[0].revents != 0 {
                    conn_open = self.on_conn(&mut conn)?;
                }
                i = 1;
            }
            // Only the mms polled (the connection may have added one).
            let ready: Vec<usize> = (0..fds.len() - i).filter(|&k| fds[i + k].revents != 0).collect();
            for k in ready {
                self.drain(k)?;
            }
            self.retry()?;
            if self.finished {
                self.background()?;
            }
        }
        self.sum.elapsed = self.started.map(|t| t.elapsed()).unwrap_or_default();
        Ok(())
    }

    /// A message from the restore; false once the connection is done.
    fn on_conn(&mut self, conn: &mut UnixStream) -> Result<bool, LazyError> {
        let mut w = [0u8; 4];
        match conn.read(&mut w[..1]) {
            Ok(0) if self.finished => return Ok(false),
            Ok(0) => return Err(LazyError::RestoreGone),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(true),
            Err(e) => return Err(setup("reading from the restore", e)),
        }
        conn.read_exact(&mut w[1..]).map_err(|_| LazyError::RestoreGone)?;
        let v = i32::from_ne_bytes(w);
        if self.received >= self.images.nr_tasks {
            if v as u32 != RESTORE_FINISHED {
                return Err(setup(
                    "the restore",
                    format!("sent {:#x}, not restore-finished", v as u32),
                ));
            }
            self.finished = true;
            return Ok(true);
        }
        self.received += 1;
        if v <= 0 {
            return Ok(true); // a zombie
        }
        let fd = recv_fd(conn.as_raw_fd()).map_err(|e| LazyError::Task {
            pid: v,
            what: format!("receiving its userfaultfd: {e}"),
        })?;
        let Some((pending, files)) = self.images.procs.remove(&v) else {
            return Err(LazyError::Task {
                pid: v,
                what: "not a process of the images with memory".into(),
            });
        };
        self.started.get_or_insert_with(Instant::now);
        self.tell_watchdog(v, fd.as_fd())?;
        self.served.push(Served {
            fd,
            pid: v,
            pending,
            files,
            retry: Vec::new(),
            gone: false,
        });
        self.sum.procs += 1;
        Ok(true)
    }

    fn tell_watchdog(&mut self, pid: i32, fd: std::os::fd::BorrowedFd<'_>) -> Result<(), LazyError> {
        let Some((w, _)) = &self.watchdog else { return Ok(()) };
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
        let fds = [fd.as_raw_fd()];
        let b = pid.to_ne_bytes();
        let m = [b'P', b[0], b[1], b[2], b[3]];
        sendmsg::<UnixAddr>(
            w.as_raw_fd(),
            &[IoSlice::new(&m)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| setup("the watchdog", e))?;
        Ok(())
    }

    /// Read and handle every message queued on mm `k`'s userfaultfd.
    fn drain(&mut self, k: usize) -> Result<(), LazyError> {
        loop {
            let m = match uffd::read_msg(self.served[k].fd.as_fd()) {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(LazyError::Task {
                        pid: self.served[k].pid,
                        what: format!("reading its userfaultfd: {e}"),
                    })
                }
            };
            match m {
                Msg::Fault { addr, .. } => {
                    self.sum.faults += 1;
                    self.fault(k, addr)?;
                }
                Msg::Fork { ufd } => {
                    let _ = crate::sys::add_fl(ufd.as_raw_fd(), libc::O_NONBLOCK);
                    let parent = &self.served[k];
                    let child = Served {
                        fd: ufd,
                        pid: 0,
                        pending: parent.pending.clone(),
                        files: parent.files.clone(),
                        retry: Vec::new(),
                        gone: false,
                    };
                    let ppid = parent.pid;
                    self.tell_watchdog(0, child.fd.as_fd())?;
                    let _ = ppid;
                    self.served.push(child);
                    self.sum.forks += 1;
                }
                Msg::Remap { from, to, len } => self.served[k].pending.remap(from, to, len),
                Msg::Remove { start, end } | Msg::Unmap { start, end } => {
                    let gone = self.served[k].pending.cut(start, end);
                    self.sum.dropped_bytes += gone.iter().map(|(s, p)| p.end - s).sum::<u64>();
                }
                Msg::Other(_) => {}
            }
        }
    }

    /// Serve a fault at `addr` of mm `k`.
    fn fault(&mut self, k: usize, addr: u64) -> Result<(), LazyError> {
        let page = addr & !(PAGE - 1);
        let s = &mut self.served[k];
        if s.gone {
            return Ok(());
        }
        if s.pending.find(page).is_some() {
            let b = page & !(FAULT_BLOCK - 1);
            let (n, again) = self.fill(k, b, b + FAULT_BLOCK)?;
            self.sum.fault_bytes += n;
            if again {
                self.served[k].retry.push(page);
            }
            return Ok(());
        }
        // Outside the image's pages (a hole, or discarded since): zeros.
        match uffd::zeropage(s.fd.as_raw_fd(), page, PAGE) {
            Filled::All => self.sum.zero_pages += 1,
            Filled::Part {
                errno: libc::EEXIST, ..
            }
            | Filled::Part {
                errno: libc::ENOENT, ..
            } => {
                let _ = uffd::wake(s.fd.as_raw_fd(), page, PAGE);
            }
            Filled::Part {
                errno: libc::EAGAIN, ..
            } => s.retry.push(page),
            Filled::Part { errno: libc::ESRCH, .. } => s.gone = true,
            Filled::Part { errno, .. } => {
                return Err(LazyError::Task {
                    pid: s.pid,
                    what: format!("zero page at {page:#x}: {}", std::io::Error::from_raw_os_error(errno)),
                })
            }
        }
        Ok(())
    }

    /// Copy the missing pages of `[s, e)` of mm `k`; returns the bytes
    /// copied and whether the mm's events must be read first (EAGAIN).
    fn fill(&mut self, k: usize, s: u64, e: u64) -> Result<(u64, bool), LazyError> {
        let sv = &mut self.served[k];
        let want = sv.pending.cut(s, e);
        let mut copied = 0;
        let mut back: Vec<(u64, Piece)> = Vec::new();
        let mut again = false;
        for (a, p) in want {
            if again || sv.gone {
                back.push((a, p));
                continue;
            }
            let src = sv.files[p.file].clone();
            let mut at = a;
            while at < p.end {
                let off = p.off + (at - a);
                match uffd::copy(sv.fd.as_raw_fd(), at, &src, off, p.end - at).map_err(|e| LazyError::Task {
                    pid: sv.pid,
                    what: e.to_string(),
                })? {
                    Filled::All => {
                        copied += p.end - at;
                        at = p.end;
                    }
                    Filled::Part { n, errno: libc::EEXIST } => {
                        // Present already (a fault's block raced us): skip it.
                        copied += n;
                        at += n + PAGE;
                    }
                    Filled::Part { n, errno: libc::EAGAIN } => {
                        copied += n;
                        at += n;
                        back.push((
                            at,
                            Piece {
                                end: p.end,
                                file: p.file,
                                off: p.off + (at - a),
                            },
                        ));
                        again = true;
                        break;
                    }
                    Filled::Part { n, errno: libc::ENOENT } => {
                        // No registered VMA there any more (its events were
                        // read: it went away).
                        copied += n;
                        self.sum.dropped_bytes += p.end - at - n;
                        at = p.end;
                    }
                    Filled::Part { n, errno: libc::ESRCH } => {
                        copied += n;
                        sv.gone = true;
                        break;
                    }
                    Filled::Part { errno, .. } => {
                        return Err(LazyError::Task {
                            pid: sv.pid,
                            what: format!("copying pages to {at:#x}: {}", std::io::Error::from_raw_os_error(errno)),
                        })
                    }
                }
            }
        }
        for (a, p) in back {
            sv.pending.0.insert(a, p);
        }
        if sv.gone {
            self.sum.dropped_bytes += sv.pending.bytes();
            sv.pending.0.clear();
            sv.retry.clear();
        }
        Ok((copied, again))
    }

    fn retry(&mut self) -> Result<(), LazyError> {
        for k in 0..self.served.len() {
            let r = std::mem::take(&mut self.served[k].retry);
            for a in r {
                self.fault(k, a)?;
            }
        }
        Ok(())
    }

    /// One background chunk of the next mm with missing pages.
    fn background(&mut self) -> Result<(), LazyError> {
        let n = self.served.len();
        for i in 0..n {
            let k = (self.next + i) % n;
            let s = &self.served[k];
            if s.gone || !s.retry.is_empty() {
                continue;
            }
            let Some((&start, _)) = s.pending.0.iter().next() else {
                continue;
            };
            self.next = k;
            let (c, _) = self.fill(k, start, start + CHUNK)?;
            self.sum.background_bytes += c;
            return Ok(());
        }
        Ok(())
    }
}

/// Receive one fd (SCM_RIGHTS, with one byte).
fn recv_fd(sock: RawFd) -> std::io::Result<OwnedFd> {
    let mut b = [0u8; 1];
    let (_, fds) = uffd::recv_with_fds(sock, &mut b)?;
    fds.into_iter()
        .next()
        .ok_or_else(|| std::io::Error::other("no fd came with the message"))
}

/// Start the watchdog (`cryo lazy-pages --watchdog`, its stdin one end of
/// a socket pair).
fn start_watchdog() -> Result<(UnixStream, std::process::Child), LazyError> {
    let (a, b) = UnixStream::pair().map_err(|e| setup("watchdog socket", e))?;
    let exe = std::env::current_exe().map_err(|e| setup("cryo's own binary", e))?;
    let child = std::process::Command::new(exe)
        .args(["lazy-pages", "--watchdog"])
        .stdin(std::process::Stdio::from(OwnedFd::from(b)))
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| setup("starting the watchdog", e))?;
    Ok((a, child))
}

/// The watchdog (see the module docs): keep every userfaultfd the daemon
/// sends on stdin; on `D` exit 0; on end of file (the daemon died or
/// failed) kill the processes and their descendants and exit 1.
pub fn watchdog() -> i32 {
    // Not killed with the daemon's process group by a terminal's ^C.
    let _ = nix::unistd::setsid();
    let started = self_start_ticks();
    let mut held: Vec<OwnedFd> = Vec::new();
    let mut pids: Vec<i32> = Vec::new();
    loop {
        let mut b = [0u8; 5];
        let (n, fds) = match uffd::recv_with_fds(0, &mut b) {
            Ok(r) => r,
            Err(_) => break,
        };
        held.extend(fds);
        if n == 0 {
            break;
        }
        match b[0] {
            b'D' => return 0,
            b'P' if n == 5 => {
                let pid = i32::from_ne_bytes([b[1], b[2], b[3], b[4]]);
                if pid > 0 {
                    pids.push(pid);
                }
            }
            _ => {}
        }
    }
    // The daemon is gone before every page was in.
    let mut all = Vec::new();
    for &p in &pids {
        if ours(p, started) {
            descendants(p, &mut all);
        }
    }
    for &p in &all {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
    }
    eprintln!(
        "cryo lazy-pages: the daemon stopped before every page was in; killed the lazily restored processes {all:?} (their memory is incomplete)"
    );
    drop(held);
    1
}

/// Start time (clock ticks since boot) of a process, from /proc/PID/stat.
fn start_ticks(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

fn self_start_ticks() -> u64 {
    start_ticks("self").unwrap_or(0)
}

/// Is `pid` (a pid in the images) a process of our pid namespace that
/// started after us? (A tree restored into a new pid namespace is not
/// found this way: docs/memory-tracking.md.)
fn ours(pid: i32, started: u64) -> bool {
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    ns("self").is_some()
        && ns(&pid.to_string()) == ns("self")
        && start_ticks(&pid.to_string()).is_some_and(|t| t + 100 >= started)
}

/// `pid` and everything below it.
fn descendants(pid: i32, out: &mut Vec<i32>) {
    if out.contains(&pid) {
        return;
    }
    out.push(pid);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for t in tasks.flatten() {
        let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
            descendants(k, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pend(v: &[(u64, u64, u64)]) -> Pending {
        Pending(
            v.iter()
                .map(|&(s, e, off)| (s, Piece { end: e, file: 0, off }))
                .collect(),
        )
    }

    #[test]
    fn cut_splits_pieces_and_keeps_offsets() {
        let mut p = pend(&[(0x1000, 0x5000, 0), (0x8000, 0x9000, 0x4000)]);
        let got = p.cut(0x2000, 0x8800);
        assert_eq!(
            got,
            vec![
                (
                    0x2000,
                    Piece {
                        end: 0x5000,
                        file: 0,
                        off: 0x1000
                    }
                ),
                (
                    0x8000,
                    Piece {
                        end: 0x8800,
                        file: 0,
                        off: 0x4000
                    }
                ),
            ]
        );
        assert_eq!(
            p.find(0x1000),
            Some((
                0x1000,
                Piece {
                    end: 0x2000,
                    file: 0,
                    off: 0
                }
            ))
        );
        assert_eq!(p.find(0x3000), None);
        assert_eq!(
            p.find(0x8800),
            Some((
                0x8800,
                Piece {
                    end: 0x9000,
                    file: 0,
                    off: 0x4800
                }
            ))
        );
        assert_eq!(p.bytes(), 0x1000 + 0x800);
    }

    #[test]
    fn remap_moves_missing_pages_with_their_offsets() {
        let mut p = pend(&[(0x10000, 0x20000, 0)]);
        p.remap(0x18000, 0x100000, 0x4000);
        assert_eq!(p.find(0x18000), None);
        assert_eq!(
            p.find(0x101000),
            Some((
                0x100000,
                Piece {
                    end: 0x104000,
                    file: 0,
                    off: 0x8000
                }
            ))
        );
        assert_eq!(p.find(0x1c000).map(|x| x.1.off), Some(0xc000));
        assert_eq!(p.bytes(), 0x10000);
    }
}
