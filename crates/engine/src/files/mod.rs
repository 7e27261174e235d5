#![allow(clippy::multiple_unsafe_ops_per_block)] // temporary: the fdreg worker moves this unsafe into sys/files.rs
//! Files: one module per kind of fd (`reg`, `pipe`), a single registry
//! ([`FD_KINDS`]) consulted for every fd, and the [`FileTable`] that assigns
//! CRIU's file ids (shared by fds, file mappings, exe, cwd and root) and
//! collects files.img and the images that hang off it (pipes-data,
//! remap-fpath, ghost-file-N).

pub mod anon;
pub mod epoll;
pub mod eventfd;
pub mod fanotify;
pub mod fifo;
pub mod fown;
pub mod inotify;
pub mod lock;
pub mod memfd;
pub mod nsfile;
pub mod pidfd;
pub mod pipe;
pub mod reg;
pub mod signalfd;
pub mod timerfd;
pub mod tty;

use crate::proc::FdInfo;
use cryo_image::pb;
use std::collections::BTreeMap;
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

/// One kind of fd: detection and dump (restore lives beside it, in the same module).
pub trait FdKind: Sync {
    /// The fd type in fdinfo-N.img.
    fn fd_type(&self) -> pb::FdTypes;
    fn detect(&self, c: &FdCtx) -> bool;
    /// Build the files.img entry with id `id` (and any side images via `t`).
    fn dump(&self, c: &FdCtx, id: u32, t: &mut FileTable) -> Result<pb::FileEntry, FileError>;
}

/// The registry: the first kind whose `detect` accepts an fd handles it.
pub static FD_KINDS: &[&dyn FdKind] = &[
    &pipe::Pipe,
    &fifo::Fifo,
    &memfd::Memfd,
    &tty::Tty,
    &reg::Reg,
    &eventfd::Eventfd,
    &timerfd::Timerfd,
    &signalfd::Signalfd,
    &inotify::Inotify,
    &epoll::Epoll,
    &pidfd::Pidfd,
    &fanotify::Fanotify,
    &nsfile::NsFile,
];

/// Kinds refused for now, with the reason (checked before the registry).
pub fn refuse(c: &FdCtx) -> Option<FileError> {
    match c.fmt() {
        libc::S_IFSOCK => Some(c.unsupported("sockets are not supported yet")),
        _ if c.link.starts_with("anon_inode:") && !FD_KINDS.iter().any(|k| k.detect(c)) => {
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
struct OpenFile {
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
    open_files: Vec<OpenFile>,
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
    /// pidfds of dead processes: pidfs inode -> the pid holding them
    /// (restore recreates such pidfds within one process only).
    pub dead_pidfds: BTreeMap<u64, i32>,
    /// Ghost image of each deleted inode: (dev, ino) -> ghost id.
    pub ghost_ids: BTreeMap<(u64, u64), u32>,
    /// Ghost data extents from FS_IOC_FIEMAP (criu's --ghost-fiemap, the
    /// default) rather than SEEK_DATA/SEEK_HOLE.
    pub ghost_fiemap: bool,
    /// Deleted files still linked elsewhere get a link remap (criu's --link-remap).
    pub link_remap: bool,
    /// Dead pids whose /proc files are held (one PROCFS remap each).
    pub dead_pids: Vec<i32>,
    /// The link remaps made on disk (removed again if the dump fails).
    pub link_remaps: Vec<PathBuf>,
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
    pub fn remove_link_remaps(&mut self) {
        for p in self.link_remaps.drain(..) {
            let _ = std::fs::remove_file(p);
        }
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
        let kind = FD_KINDS
            .iter()
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
                    if kind.fd_type() == pb::FdTypes::Pidfd && of.pid != c.pid {
                        return Err(c.unsupported(format!(
                            "its pidfd file description is shared with pid {} (inherited): \
                             restore opens each process's pidfds itself, so one description cannot span processes",
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
        self.open_files.push(OpenFile {
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
        let mut seen = std::collections::BTreeSet::new();
        for k in FD_KINDS {
            assert!(seen.insert(k.fd_type() as i32), "{:?} registered twice", k.fd_type());
        }
        assert!(seen.contains(&(pb::FdTypes::Reg as i32)));
        assert!(seen.contains(&(pb::FdTypes::Pipe as i32)));
        assert!(seen.contains(&(pb::FdTypes::Fifo as i32)));
        assert!(seen.contains(&(pb::FdTypes::Memfd as i32)));
        assert!(seen.contains(&(pb::FdTypes::Tty as i32)));
        for t in [
            pb::FdTypes::Eventfd,
            pb::FdTypes::Timerfd,
            pb::FdTypes::Signalfd,
            pb::FdTypes::Inotify,
            pb::FdTypes::Eventpoll,
            pb::FdTypes::Pidfd,
            pb::FdTypes::Fanotify,
            pb::FdTypes::Ns,
        ] {
            assert!(seen.contains(&(t as i32)), "{t:?}");
        }
    }
}
