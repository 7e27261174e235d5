//! Files: one module per kind of fd (`reg`, `pipe`, `eventfd`, ...), each
//! owning both directions behind the [`FdKind`] trait (detect, dump,
//! describe, check) and the [`OpenFile`] trait of its domain type (restore);
//! a single registry ([`REGISTRY`]) that dump, restore and a unit test
//! consult; the [`FileTable`] that assigns CRIU's file ids at dump (shared by
//! fds, file mappings, exe, cwd and root) and collects files.img and the
//! images that hang off it (pipes-data, remap-fpath, ghost-file-N); and the
//! [`FileSet`] a restore reads back (see `set`).
//!
//! Nothing here imports `crate::restore` or `crate::dump`: what a kind needs
//! of the plan comes through [`Tree`] (the tree's pids and fds) and the
//! [`FileSet`] (other files by id, side images, remaps). The syscalls are in
//! `crate::sys::files`; this module tree holds no `unsafe`.
//!
//! Adding a kind (`unixsk` is a worked example; say `inetsk` next):
//! 1. `files/inetsk.rs`: a unit struct implementing [`FdKind`]: `fd_type`
//!    (`pb::FdTypes::Inetsk`), `detect` (from the [`FdCtx`]: st_mode, link
//!    text, fdinfo), `dump` (its files.img entry, side images through the
//!    [`FileTable`]), `describe` (entry -> its own domain type, validated
//!    alone; errors through [`DescribeCx::bad`] or a [`SetError`]) and, if it
//!    refers to other objects, `check` (against the [`FileSet`] and its
//!    [`Tree`]); the domain type implements [`OpenFile`]: `restore` opens
//!    it in the engine (per-kind state between files in
//!    [`RestoreCx::state`]/[`RestoreCx::scratch`]) or returns `None` when
//!    the task must open it itself, and `map_fd` if it can be mmapped.
//! 2. Its raw syscalls go to `sys/files.rs` (sockets: `sys/sockets.rs`) as safe fns (`unsafe fn` with a
//!    `# Safety` section if they take raw addresses); nix where it has them.
//! 3. `pub mod inetsk;` above and its [`Registered::Refused`] line in
//!    [`REGISTRY`] becomes `Registered::Kind(&inetsk::InetSk)`; the order of
//!    the kinds is the order `detect` is tried. A kind with state that must
//!    be checked across the whole tree before anything is written (peers,
//!    names, queues: unix sockets) implements [`FdKind::survey`]; a socket
//!    kind claims its sockets there ([`FileTable::claim_socket`]), and a
//!    socket no kind claims is refused. Records of an image several kinds
//!    share (sk-queues.img) go through [`FileTable::side_record`]. Its image
//!    leaves `restore::plan::REFUSED_IMAGES` if it has a side image.
//! 4. Tests: a unit test of its fdinfo/entry parsing beside it; a restore
//!    test with a real program (tests/progs) that checks the state after
//!    restore; `every_fd_type_is_registered_once` keeps the registry whole.
#![forbid(unsafe_code)]

pub mod anon;
pub mod epoll;
pub mod eventfd;
pub mod fanotify;
pub mod fifo;
pub mod fown;
pub mod inetsk;
pub mod inotify;
pub mod lock;
pub mod mcast;
pub mod memfd;
pub mod netlinksk;
pub mod netlock;
pub mod nsfile;
pub mod packetsk;
pub mod pidfd;
pub mod pipe;
pub mod reg;
mod set;
pub mod signalfd;
pub mod skfamily;
pub mod skopts;
pub mod tcp;
pub mod timerfd;
pub mod tty;
pub mod unixsk;

pub use set::{bad as set_bad, unsupported as set_unsupported};
pub use set::{AsAny, DescribeCx, Fd, FileSet, OpenError, OpenFile, RestoreCx, SetError, Task, Tree};

use crate::proc::FdInfo;
use cryo_image::pb;
use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("pid {pid} fd {fd} ({link}): refusing to dump: {what}")]
    Unsupported {
        pid: i32,
        fd: i32,
        link: String,
        what: String,
    },
    #[error("pid {pid} fd {fd}: {what}: {source}")]
    Io {
        pid: i32,
        fd: i32,
        what: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Path { path: PathBuf, source: std::io::Error },
}

/// Everything known about one fd of a frozen task.
pub struct FdCtx<'a> {
    pub pid: i32,
    pub fd: i32,
    /// readlink of /proc/PID/fd/FD.
    pub link: String,
    pub stat: libc::stat,
    pub info: FdInfo,
    /// pidfd of the task (for pidfd_getfd).
    pub pidfd: &'a OwnedFd,
}

impl FdCtx<'_> {
    pub fn fmt(&self) -> u32 {
        self.stat.st_mode & libc::S_IFMT
    }
    /// A duplicate of the fd in our own process.
    pub fn steal(&self) -> Result<OwnedFd, FileError> {
        crate::sys::pidfd_getfd(self.pidfd.as_raw_fd(), self.fd).map_err(|source| FileError::Io {
            pid: self.pid,
            fd: self.fd,
            what: "pidfd_getfd".into(),
            source,
        })
    }
    /// Open-file flags as CRIU stores them (without O_CLOEXEC).
    pub fn flags(&self) -> u32 {
        self.info.flags & !(libc::O_CLOEXEC as u32)
    }
    /// The address family of a socket fd (SO_DOMAIN of a stolen copy), for
    /// the socket kinds' `detect`; `None` if not a socket or not readable.
    pub fn socket_domain(&self) -> Option<i32> {
        if self.fmt() != libc::S_IFSOCK {
            return None;
        }
        let fd = self.steal().ok()?;
        crate::sys::sockets::getsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN).ok()
    }
    pub fn unsupported(&self, what: impl Into<String>) -> FileError {
        FileError::Unsupported {
            pid: self.pid,
            fd: self.fd,
            link: self.link.clone(),
            what: what.into(),
        }
    }
}

pub fn fown() -> pb::FownEntry {
    pb::FownEntry {
        uid: 0,
        euid: 0,
        signum: 0,
        pid_type: 0,
        pid: 0,
    }
}

/// One fd of the dumped tree as the tree-wide survey sees it (before the
/// per-process dump: no stat, no fdinfo yet).
pub struct TreeFd {
    pub pid: i32,
    pub fd: i32,
    /// readlink of /proc/PID/fd/FD.
    pub link: String,
}

/// The inode of a `socket:[ino]` link.
pub fn socket_ino(link: &str) -> Option<u32> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// One kind of fd, both directions (CRIU's `file_desc_ops`): `survey`,
/// `detect` and `dump` at dump time; `describe` (files.img entry -> validated domain
/// type, an [`OpenFile`]) and `check` (against the whole set) when a
/// restore validates the images. Restoring is the [`OpenFile`]'s.
pub trait FdKind: Sync {
    /// The fd type in fdinfo-N.img.
    fn fd_type(&self) -> pb::FdTypes;
    /// Tree-wide checks, once per dump with every fd of the frozen tree,
    /// before any image is written: what only makes sense across the tree
    /// (peers, names, shared queues) is checked and refused here, and what
    /// `dump` needs later is kept in [`FileTable::survey_state`]. A socket
    /// kind claims the sockets it will dump ([`FileTable::claim_socket`]).
    fn survey(&self, _fds: &[TreeFd], _t: &mut FileTable) -> Result<(), FileError> {
        Ok(())
    }
    fn detect(&self, c: &FdCtx) -> bool;
    /// Build the files.img entry with id `id` (and any side images via `t`).
    fn dump(&self, c: &FdCtx, id: u32, t: &mut FileTable) -> Result<pb::FileEntry, FileError>;
    /// Entry `cx.index` of files.img (of this kind) as the domain type the
    /// restore opens, validated on its own.
    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError>;
    /// Checks of this kind's files against the whole set once the tree is
    /// known (`files.tree`): referenced ids exist, holders are tasks, ...
    fn check(&self, _files: &FileSet) -> Result<(), SetError> {
        Ok(())
    }
}

/// An fd type of the format: handled by a kind, or refused with a reason.
pub enum Registered {
    Kind(&'static dyn FdKind),
    /// Neither dumped nor restored yet (dump refuses such fds by what they
    /// are, see [`refuse`]; restore refuses their files.img entries).
    Refused(pb::FdTypes, &'static str),
}

impl Registered {
    pub fn fd_type(&self) -> pb::FdTypes {
        match self {
            Registered::Kind(k) => k.fd_type(),
            Registered::Refused(t, _) => *t,
        }
    }
}

/// The registry, consulted by dump (the first kind whose `detect` accepts an
/// fd handles it, in this order), by restore (each files.img entry goes to
/// the kind of its type) and by the unit test that every fd type of the
/// format is here exactly once. Adding a kind: its module and one line here.
pub static REGISTRY: &[Registered] = &[
    Registered::Kind(&pipe::Pipe),
    Registered::Kind(&fifo::Fifo),
    Registered::Kind(&memfd::Memfd),
    Registered::Kind(&tty::Tty),
    Registered::Kind(&reg::Reg),
    Registered::Kind(&eventfd::Eventfd),
    Registered::Kind(&timerfd::Timerfd),
    Registered::Kind(&signalfd::Signalfd),
    Registered::Kind(&inotify::Inotify),
    Registered::Kind(&epoll::Epoll),
    Registered::Kind(&pidfd::Pidfd),
    Registered::Kind(&fanotify::Fanotify),
    Registered::Kind(&nsfile::NsFile),
    Registered::Kind(&netlinksk::NetlinkSk),
    Registered::Kind(&packetsk::PacketSk),
    Registered::Kind(&unixsk::UnixSk),
    Registered::Kind(&inetsk::InetSk),
    Registered::Refused(pb::FdTypes::Und, "no fd type (an invalid entry)"),
    Registered::Refused(pb::FdTypes::Tunf, "tun devices are not supported yet"),
    Registered::Refused(pb::FdTypes::Ext, "CRIU plugin (external) files are not supported"),
    Registered::Refused(pb::FdTypes::Bpfmap, "BPF maps are not supported yet"),
    Registered::Refused(
        pb::FdTypes::CtlTty,
        "CRIU's internal controlling-terminal entry, not a file",
    ),
    Registered::Refused(pb::FdTypes::AutofsPipe, "autofs pipes are not supported yet"),
];

/// The kinds of the registry, in detection order.
pub fn kinds() -> impl Iterator<Item = &'static dyn FdKind> {
    REGISTRY.iter().filter_map(|r| match r {
        Registered::Kind(k) => Some(*k),
        Registered::Refused(..) => None,
    })
}

/// The registry's entry for an fd type.
pub fn registered(t: pb::FdTypes) -> Option<&'static Registered> {
    REGISTRY.iter().find(|r| r.fd_type() == t)
}

/// The tree-wide survey ([`FdKind::survey`] of every kind, in registry
/// order), then the refusal of every socket no kind claimed. Called by the
/// dump once the tree is frozen, before anything is written.
pub fn survey(fds: &[TreeFd], t: &mut FileTable) -> Result<(), FileError> {
    for k in kinds() {
        k.survey(fds, t)?;
    }
    for f in fds {
        if let Some(ino) = socket_ino(&f.link) {
            if !t.claimed_sockets.contains(&ino) {
                let family = crate::sys::pidfd_open(f.pid)
                    .and_then(|p| crate::sys::pidfd_getfd(p.as_raw_fd(), f.fd))
                    .and_then(|s| {
                        crate::sys::sockets::getsockopt_int(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN)
                    });
                let what = match family {
                    Ok(libc::AF_UNIX) => "a unix socket of another network namespace: not supported yet".into(),
                    Ok(fam) => format!("a {} socket: not supported yet", inetsk::family_name(fam)),
                    Err(e) => format!("a socket whose family cannot be read ({e}): not supported"),
                };
                return Err(FileError::Unsupported {
                    pid: f.pid,
                    fd: f.fd,
                    link: f.link.clone(),
                    what,
                });
            }
        }
    }
    Ok(())
}

/// An image several kinds write records into (sk-queues.img): each record
/// is one entry (already encoded) and the raw bytes after it.
pub struct SideImage {
    /// crit's magic name (`"SK_QUEUES"`).
    pub magic: &'static str,
    /// (encoded entry, payload), in the order they were added.
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
}

/// sk-queues.img: queued packets of sockets, `sk_packet_entry` + bytes.
pub const SK_QUEUES: (&str, &str) = ("sk-queues.img", "SK_QUEUES");

/// Kinds refused for now, with the reason (checked before the registry).
pub fn refuse(c: &FdCtx) -> Option<FileError> {
    match c.fmt() {
        _ if c.link.starts_with("anon_inode:") && !kinds().any(|k| k.detect(c)) => {
            Some(c.unsupported("this anon-inode fd kind is not supported yet"))
        }
        libc::S_IFCHR
            if !tty::is_tty(c.stat.st_rdev)
                && c.stat.st_rdev != libc::makedev(1, 3)
                && !c.link.starts_with("/dev/") =>
        {
            Some(c.unsupported("character device outside /dev"))
        }
        _ => None,
    }
}

/// Key of an open file description across the tree: (dev, ino) + a
/// representative (pid, fd) to confirm with kcmp(KCMP_FILE).
#[derive(Debug)]
struct SeenFile {
    dev: u64,
    ino: u64,
    pid: i32,
    fd: i32,
    id: u32,
}

/// One ghost-file-N.img: N, its head entry, and its data chunks (offset, bytes).
pub type Ghost = (u32, pb::GhostFileEntry, Vec<(u64, Vec<u8>)>);

/// Ids and entries of files.img, plus side images.
#[derive(Default)]
pub struct FileTable {
    next_id: u32,
    /// files.img entries in the order they were made (CRIU's order).
    entries: Vec<pb::FileEntry>,
    open_files: Vec<SeenFile>,
    /// File mappings and exe: by (dev, ino).
    mapped: BTreeMap<(u64, u64), u32>,
    /// pipes-data.img: pipe inode -> (entry, data).
    pub pipes_data: BTreeMap<u32, (pb::PipeDataEntry, Vec<u8>)>,
    /// fifo-data.img: FIFO inode -> (entry, data).
    pub fifo_data: BTreeMap<u32, (pb::PipeDataEntry, Vec<u8>)>,
    /// remap-fpath.img entries.
    pub remaps: Vec<pb::RemapFilePathEntry>,
    /// ghost-file-N.img: (N, head entry, chunks with data).
    pub ghosts: Vec<Ghost>,
    next_ghost: u32,
    /// Shared-memory inodes (memfd, shared anonymous), in inode-id order.
    pub shmem: Vec<memfd::ShmemInode>,
    next_pages_id: u32,
    /// --shell-job: terminals from outside the tree may be dumped.
    pub shell_job: bool,
    /// Pids of the dumped tree (a shell job's terminal must belong to a
    /// session outside it).
    pub tree_pids: Vec<i32>,
    /// tty-info.img: one entry per terminal, by tty_info id.
    pub tty_infos: BTreeMap<u32, pb::TtyInfoEntry>,
    /// One dumped fd per terminal (by tty_info id), for the checks and the
    /// queued data at the end ([`tty::finish`]).
    pub tty_dumped: BTreeMap<u32, tty::DumpedTty>,
    /// Biggest deleted file whose contents are saved (criu's --ghost-limit).
    pub ghost_limit: u64,
    /// File ids of EFD_SEMAPHORE eventfds (for the sidecar: CRIU's entry
    /// cannot say so).
    pub eventfd_semaphore: std::collections::BTreeSet<u32>,
    /// File ids of reset TCP connections and their pending errors (the sidecar's `tcp_reset`).
    pub tcp_reset: std::collections::BTreeMap<u32, cryo_image::sidecar::TcpReset>,
    /// File ids of UDP sockets and the sender of each queued datagram (the sidecar's `udp_sources`).
    pub udp_sources: std::collections::BTreeMap<u32, Vec<std::net::SocketAddr>>,
    /// File ids of unix and UDP sockets with SO_PEEK_OFF set, and its value (the sidecar's `peek_off`).
    pub peek_off: std::collections::BTreeMap<u32, u32>,
    /// File ids of UDP sockets with multicast state (the sidecar's `multicast`).
    pub multicast: std::collections::BTreeMap<u32, cryo_image::sidecar::Multicast>,
    /// Ghost image of each deleted inode: (dev, ino) -> ghost id.
    pub ghost_ids: BTreeMap<(u64, u64), u32>,
    /// Ghost data extents from FS_IOC_FIEMAP (criu's --ghost-fiemap, the
    /// default) rather than SEEK_DATA/SEEK_HOLE.
    pub ghost_fiemap: bool,
    /// Deleted files still linked elsewhere get a link remap (criu's --link-remap).
    pub link_remap: bool,
    /// criu's --ext-unix-sk (unixsk's survey).
    pub ext_unix_sk: bool,
    /// Dead pids whose /proc files are held (one PROCFS remap each).
    pub dead_pids: Vec<i32>,
    /// The link remaps made on disk (removed again if the dump fails).
    pub link_remaps: Vec<PathBuf>,
    /// What each kind's survey kept for its `dump`, by type.
    survey: HashMap<TypeId, Box<dyn Any + Send>>,
    /// --tcp-established, --tcp-close, --network-lock and the run id.
    pub tcp: tcp::TcpOpts,
    /// Socket inodes a kind's survey claimed.
    claimed_sockets: HashSet<u32>,
    /// Images several kinds write into, by file name.
    side: BTreeMap<String, SideImage>,
    /// What the dump's options ask of inet sockets (--tcp-established ...).
    pub inet: inetsk::InetOpts,
}

/// criu's default --ghost-limit: 1 MiB.
pub const DEFAULT_GHOST_LIMIT: u64 = 1 << 20;

impl FileTable {
    pub fn new() -> Self {
        Self::with_ghost_limit(DEFAULT_GHOST_LIMIT)
    }

    /// A table saving deleted files up to `ghost_limit` bytes.
    pub fn with_ghost_limit(ghost_limit: u64) -> Self {
        FileTable {
            ghost_limit,
            ghost_fiemap: true,
            ..Self::default()
        }
    }

    pub fn alloc_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    pub fn alloc_ghost_id(&mut self) -> u32 {
        self.next_ghost += 1;
        self.next_ghost
    }

    /// Remove the link remaps made so far (the dump failed).
    /// The tree goes on (a failed dump, or `--leave-running` before the
    /// tree is let go): TCP connections leave repair mode, the network lock goes.
    pub fn let_go(&mut self) -> Result<(), String> {
        self.survey_state::<tcp::Dumped>().let_go()
    }

    /// The dumped tree was killed (its TCP connections close silently).
    pub fn tree_gone(&mut self) {
        self.survey_state::<tcp::Dumped>().tree_gone()
    }

    /// The dump succeeded: what must outlive it (the network lock over a
    /// killed tree's TCP connections, until the restore) stays.
    pub fn dump_done(&mut self) {
        self.survey_state::<tcp::Dumped>().done()
    }

    pub fn remove_link_remaps(&mut self) {
        for p in self.link_remaps.drain(..) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// A kind's survey state (made on first use), kept for its `dump`.
    pub fn survey_state<T: Default + Send + 'static>(&mut self) -> &mut T {
        self.survey
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()))
            .downcast_mut()
            .expect("survey state keyed by its own type")
    }

    /// A socket (by inode) this kind will dump: the survey refuses the
    /// sockets no kind claimed.
    pub fn claim_socket(&mut self, ino: u32) {
        self.claimed_sockets.insert(ino);
    }

    /// Has a kind's survey claimed socket `ino`?
    pub fn is_claimed(&self, ino: u32) -> bool {
        self.claimed_sockets.contains(&ino)
    }

    /// Add a record (an entry and the bytes after it) to the side image
    /// `image` = (file name, magic name), e.g. [`SK_QUEUES`].
    pub fn side_record(
        &mut self,
        image: (impl Into<String>, &'static str),
        entry: &impl prost::Message,
        payload: Vec<u8>,
    ) {
        self.side
            .entry(image.0.into())
            .or_insert_with(|| SideImage {
                magic: image.1,
                records: Vec::new(),
            })
            .records
            .push((entry.encode_to_vec(), payload));
    }

    /// The side images with their records, by file name.
    pub fn side_images(&self) -> impl Iterator<Item = (&str, &SideImage)> {
        self.side.iter().map(|(n, i)| (n.as_str(), i))
    }

    pub fn insert(&mut self, e: pb::FileEntry) {
        self.entries.push(e);
    }

    pub fn entries(&self) -> impl Iterator<Item = &pb::FileEntry> {
        self.entries.iter()
    }

    /// The id of a mapped file (or exe) by (dev, ino); `make` builds its entry on first sight.
    pub fn mapped_file(
        &mut self,
        dev: u64,
        ino: u64,
        make: impl FnOnce(u32, &mut FileTable) -> Result<pb::FileEntry, FileError>,
    ) -> Result<u32, FileError> {
        if let Some(&id) = self.mapped.get(&(dev, ino)) {
            return Ok(id);
        }
        let id = self.alloc_id();
        let e = make(id, self)?;
        self.insert(e);
        self.mapped.insert((dev, ino), id);
        Ok(id)
    }

    /// A standalone entry with a fresh id (cwd, root).
    pub fn standalone(
        &mut self,
        make: impl FnOnce(u32, &mut FileTable) -> Result<pb::FileEntry, FileError>,
    ) -> Result<u32, FileError> {
        let id = self.alloc_id();
        let e = make(id, self)?;
        self.insert(e);
        Ok(id)
    }

    /// Dump one fd: returns its fdinfo entry. Open file descriptions already
    /// seen (same struct file, checked with kcmp) reuse their id.
    pub fn dump_fd(&mut self, c: &FdCtx) -> Result<pb::FdinfoEntry, FileError> {
        if let Some(e) = refuse(c) {
            return Err(e);
        }
        let kind = kinds()
            .find(|k| k.detect(c))
            .ok_or_else(|| c.unsupported(format!("unsupported file type {:o}", c.fmt())))?;
        let fd_flags = if c.info.flags & libc::O_CLOEXEC as u32 != 0 {
            libc::FD_CLOEXEC as u32
        } else {
            0
        };
        let (dev, ino) = (c.stat.st_dev, c.stat.st_ino);
        for of in &self.open_files {
            if of.dev == dev && of.ino == ino {
                let same = crate::sys::kcmp(c.pid, of.pid, crate::sys::KCMP_FILE, c.fd as u64, of.fd as u64);
                if same.ok() == Some(0) {
                    if kind.fd_type() == pb::FdTypes::Pidfd && of.pid != c.pid && !pidfd::is_dead(c)? {
                        return Err(c.unsupported(format!(
                            "its pidfd file description is shared with pid {} (inherited) and refers to a \
                             live process: restore opens pidfds of live processes in each process itself, so \
                             one such description cannot span processes",
                            of.pid
                        )));
                    }
                    return Ok(pb::FdinfoEntry {
                        id: of.id,
                        flags: fd_flags,
                        r#type: kind.fd_type() as i32,
                        fd: c.fd as u32,
                        xattr_security_selinux: None,
                    });
                }
            }
        }
        let id = self.alloc_id();
        let mut e = kind.dump(c, id, self)?;
        // The owner (F_SETOWN, F_SETSIG) of the open file, for the kinds
        // whose entry carries one (O_PATH files have none).
        if c.info.flags & libc::O_PATH as u32 == 0 {
            if let Some(slot) = fown::of_entry_mut(&mut e) {
                let fd = c.steal()?;
                *slot = fown::query(fd.as_raw_fd()).map_err(|source| FileError::Io {
                    pid: c.pid,
                    fd: c.fd,
                    what: "reading the file owner (F_GETOWN_EX)".into(),
                    source,
                })?;
            }
        }
        self.insert(e);
        self.open_files.push(SeenFile {
            dev,
            ino,
            pid: c.pid,
            fd: c.fd,
            id,
        });
        Ok(pb::FdinfoEntry {
            id,
            flags: fd_flags,
            r#type: kind.fd_type() as i32,
            fd: c.fd as u32,
            xattr_security_selinux: None,
        })
    }
}

/// stat(2) of a path.
pub fn stat_path(p: &str) -> std::io::Result<libc::stat> {
    nix::sys::stat::stat(p).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fd_type_is_registered_once() {
        // Every value of the format's enum, to a kind or refused, once.
        let all: Vec<pb::FdTypes> = (0..=u16::MAX as i32)
            .filter_map(|v| pb::FdTypes::try_from(v).ok())
            .collect();
        assert!(all.len() >= 23, "{all:?}");
        for t in &all {
            let n = REGISTRY.iter().filter(|r| r.fd_type() == *t).count();
            assert_eq!(n, 1, "{t:?} is registered {n} times");
        }
        assert_eq!(
            REGISTRY.len(),
            all.len(),
            "the registry names an fd type twice or one not in the format"
        );
        for t in [
            pb::FdTypes::Reg,
            pb::FdTypes::Pipe,
            pb::FdTypes::Fifo,
            pb::FdTypes::Memfd,
            pb::FdTypes::Tty,
            pb::FdTypes::Eventfd,
            pb::FdTypes::Timerfd,
            pb::FdTypes::Signalfd,
            pb::FdTypes::Inotify,
            pb::FdTypes::Eventpoll,
            pb::FdTypes::Pidfd,
            pb::FdTypes::Fanotify,
            pb::FdTypes::Ns,
            pb::FdTypes::Unixsk,
            pb::FdTypes::Inetsk,
            pb::FdTypes::Netlinksk,
            pb::FdTypes::Packetsk,
        ] {
            assert!(matches!(registered(t), Some(Registered::Kind(_))), "{t:?} has no kind");
        }
        assert!(matches!(registered(pb::FdTypes::Tunf), Some(Registered::Refused(..))));
    }
}
