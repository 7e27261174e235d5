//! The restore side of the files: [`FileSet`], every file of an image set
//! described by its kind ([`FdKind::describe`]) and checked ([`FdKind::check`]),
//! with the side images (pipe and FIFO data, terminals, memfd inodes, remaps)
//! and a narrow view of the tree ([`Tree`]); [`RestoreCx`], what the kinds'
//! [`OpenFile::restore`] share while the engine opens them.
//!
//! Nothing here knows `restore::` or `dump::`: the restore driver builds a
//! [`Tree`] from its plan and hands it in.

use super::{fown, memfd, reg, registered, FdKind, Registered, REGISTRY};
use cryo_image::{pb, ImageSet, Pagemap};
use std::any::{Any, TypeId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

/// Why the files of an image set cannot be restored (the same shapes as the
/// plan's errors: every one names the image file, the pid and the object).
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error(transparent)]
    Image(#[from] cryo_image::ImageError),
    #[error("{file}: pid {pid}: {what}")]
    Bad { file: String, pid: i32, what: String },
    #[error("{file}: {what}")]
    BadSet { file: String, what: String },
    #[error("{file}: pid {pid}: {what} is not supported by cryo restore yet")]
    Unsupported { file: String, pid: i32, what: String },
}

/// A bad entry of the set: `file`, the pid it concerns (0: none), what is wrong.
pub fn bad(file: impl Into<String>, pid: i32, what: impl Into<String>) -> SetError {
    SetError::Bad {
        file: file.into(),
        pid,
        what: what.into(),
    }
}

/// An entry cryo cannot restore yet.
pub fn unsupported(file: impl Into<String>, pid: i32, what: impl Into<String>) -> SetError {
    SetError::Unsupported {
        file: file.into(),
        pid,
        what: what.into(),
    }
}

/// Why opening a file for the restore failed; each names its kind's object.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Image(#[from] cryo_image::ImageError),
    #[error("pipe {pipe_id}: {reason}")]
    Pipe { pipe_id: u32, reason: String },
    #[error("fifo {pipe_id} ({path}): {reason}")]
    Fifo { pipe_id: u32, path: String, reason: String },
    /// Any other kind: `object` says which file ("file id 7 (/tmp/x)",
    /// "eventfd (file id 3)", ...).
    #[error("{object}: {reason}")]
    File {
        kind: pb::FdTypes,
        object: String,
        reason: String,
    },
}

/// An [`OpenError::File`].
pub(crate) fn open_err(kind: pb::FdTypes, object: impl Into<String>, reason: impl std::fmt::Display) -> OpenError {
    OpenError::File {
        kind,
        object: object.into(),
        reason: reason.to_string(),
    }
}

/// Downcasting for [`OpenFile`]s (trait upcasting needs a newer Rust than
/// the workspace's).
pub trait AsAny: Any {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// One open file description to recreate (shared by every fd naming it),
/// as its kind's [`FdKind::describe`] made it.
pub trait OpenFile: AsAny + std::fmt::Debug + Send + Sync {
    fn fd_type(&self) -> pb::FdTypes;
    /// Open the description in the engine, before any task exists (the
    /// tasks inherit it). `None`: the task holding it opens it itself once
    /// every task exists (pidfds, files of /proc/<pid> of the tree).
    fn restore(&self, id: u32, cx: &mut RestoreCx) -> Result<Option<OwnedFd>, OpenError>;
    /// An fd to mmap the file from (read-write for writable shared
    /// mappings); `opened`: the engine's fd of the restored description.
    fn map_fd(&self, id: u32, _write: bool, _opened: Option<RawFd>, _cx: &mut RestoreCx) -> Result<OwnedFd, OpenError> {
        Err(open_err(
            self.fd_type(),
            format!("mapped file id {id}"),
            "not a regular file",
        ))
    }
}

impl dyn OpenFile {
    pub fn downcast_ref<T: OpenFile>(&self) -> Option<&T> {
        self.as_any().downcast_ref()
    }
    pub fn downcast_mut<T: OpenFile>(&mut self) -> Option<&mut T> {
        self.as_any_mut().downcast_mut()
    }
}

/// An fd of a task: its number, the file it names, close-on-exec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fd {
    pub fd: i32,
    pub file_id: u32,
    pub cloexec: bool,
}

/// What the files need of one task of the tree.
#[derive(Clone, Debug, Default)]
pub struct Task {
    pub pid: i32,
    pub sid: i32,
    pub pgid: i32,
    pub tids: Vec<i32>,
    /// Not a zombie.
    pub alive: bool,
    pub fds: Vec<Fd>,
}

/// The tree as the files see it (root first, parents before children).
#[derive(Clone, Debug, Default)]
pub struct Tree {
    pub tasks: Vec<Task>,
}

impl Tree {
    pub fn pids(&self) -> Vec<i32> {
        self.tasks.iter().map(|t| t.pid).collect()
    }
    pub fn has_pid(&self, pid: i32) -> bool {
        self.tasks.iter().any(|t| t.pid == pid)
    }
    /// The first task holding file `id` (the one that sets it up).
    pub fn first_holder(&self, id: u32) -> Option<&Task> {
        self.tasks.iter().find(|t| t.fds.iter().any(|f| f.file_id == id))
    }
}

/// What [`FdKind::describe`] sees of the set.
pub struct DescribeCx<'a> {
    pub set: &'a ImageSet,
    /// files.img's path (for errors).
    pub file: &'a str,
    /// The entry's index in files.img.
    pub index: usize,
    /// Every files.img entry (FIFOs and terminals name REG entries).
    pub all: &'a [pb::FileEntry],
    pub tty_infos: &'a [pb::TtyInfoEntry],
    /// remap-fpath.img: where deleted files come back from.
    pub remaps: &'a reg::RemapTable,
}

impl DescribeCx<'_> {
    /// "files.img: pid 0: entry I: WHAT".
    pub fn bad(&self, what: impl std::fmt::Display) -> SetError {
        bad(self.file, 0, format!("entry {}: {what}", self.index))
    }
    /// The REG entry with id `id`.
    pub fn reg_entry(&self, id: u32) -> Option<&pb::RegFileEntry> {
        self.all
            .iter()
            .find(|g| g.id == id && g.r#type == pb::FdTypes::Reg as i32)
            .and_then(|g| g.reg.as_ref())
    }
}

/// Every file of the set, validated, with its side images.
#[derive(Debug)]
pub struct FileSet {
    pub set: Arc<ImageSet>,
    /// files.img's path (for errors).
    pub files_file: String,
    files: BTreeMap<u32, Box<dyn OpenFile>>,
    /// pipes-data.img: queued bytes and buffer sizes (F_GETPIPE_SZ at dump) by pipe id.
    pub pipe_data: HashMap<u32, Vec<u8>>,
    pub pipe_size: HashMap<u32, u32>,
    /// fifo-data.img: FIFO inode -> queued bytes, buffer size.
    pub fifo_data: HashMap<u32, Vec<u8>>,
    pub fifo_size: HashMap<u32, u32>,
    /// tty-info.img.
    pub tty_infos: Vec<pb::TtyInfoEntry>,
    /// tty-data.img: queued terminal data by tty_id (the end it was read from).
    pub tty_data: BTreeMap<u32, Vec<u8>>,
    pub memfds: BTreeMap<u32, memfd::MemfdInode>,
    /// Shared memory contents: shmid -> (pagemap, pages file).
    pub shmem: HashMap<u32, (Arc<Pagemap>, PathBuf)>,
    /// Owners (F_SETOWN/F_SETSIG) of the file descriptions that have one,
    /// by file id (files::fown).
    pub fown: BTreeMap<u32, pb::FownEntry>,
    /// Files that were O_ASYNC (set by the tasks at their fd numbers).
    pub async_files: BTreeSet<u32>,
    /// Pids of dead processes whose /proc/<pid> files the tree holds
    /// (remap-fpath PROCFS): a short-lived process with that pid exists
    /// while the engine opens the files.
    pub dead_pids: Vec<i32>,
    /// The tree (set by [`FileSet::check`]).
    pub tree: Tree,
}

impl FileSet {
    /// Read and describe every file of the set (the tree's pids: `pids`).
    pub fn build(set: &Arc<ImageSet>, pids: &[i32]) -> Result<FileSet, SetError> {
        let files_file = set.path("files.img").display().to_string();
        let tty_infos: Vec<pb::TtyInfoEntry> = if set.has("tty-info.img") {
            set.entries("tty-info.img", "TTY_INFO")?
        } else {
            Vec::new()
        };
        let all_files = set.files()?;
        let remaps = reg::RemapTable::read(set, &all_files, pids)?;
        let mut files: BTreeMap<u32, Box<dyn OpenFile>> = BTreeMap::new();
        for (i, f) in all_files.iter().enumerate() {
            let ty = pb::FdTypes::try_from(f.r#type)
                .map_err(|_| bad(&files_file, 0, format!("entry {i}: unknown fd type {}", f.r#type)))?;
            let kind: &dyn FdKind = match registered(ty) {
                Some(Registered::Kind(k)) => *k,
                _ => {
                    return Err(SetError::BadSet {
                        file: files_file.clone(),
                        what: format!(
                            "entry {i} (file id {}): {} files are not supported by cryo restore yet (refused before creating any task)",
                            f.id,
                            ty.as_str_name()
                        ),
                    })
                }
            };
            let cx = DescribeCx {
                set,
                file: &files_file,
                index: i,
                all: &all_files,
                tty_infos: &tty_infos,
                remaps: &remaps,
            };
            let d = kind.describe(f, &cx)?;
            if files.insert(f.id, d).is_some() {
                return Err(bad(&files_file, 0, format!("entry {i}: file id {} listed twice", f.id)));
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
        let memfds = memfd::read_inodes(set)?;
        // The contents of every shared-memory inode, mapped or only open.
        let mut shmem = HashMap::new();
        for m in memfds.values() {
            let name = format!("pagemap-shmem-{}.img", m.shmid);
            if set.has(&name) && !shmem.contains_key(&m.shmid) {
                let pm = set.pagemap_file(&name)?;
                let pages = set.path(&format!("pages-{}.img", pm.pages_id));
                shmem.insert(m.shmid, (Arc::new(pm), pages));
            }
        }
        // File owners are set once every task exists (checked with the tree).
        let mut fown = BTreeMap::new();
        let mut async_files: BTreeSet<u32> = all_files
            .iter()
            .filter(|f| fown::flags_of(f).is_some_and(|fl| fl & libc::O_ASYNC as u32 != 0))
            .map(|f| f.id)
            .collect();
        // A FIFO's flags live in the REG entry it names.
        for (id, d) in &files {
            if let Some(f) = d.downcast_ref::<super::fifo::FifoFile>() {
                if f.flags & libc::O_ASYNC as u32 != 0 {
                    async_files.insert(*id);
                }
            }
        }
        for f in &all_files {
            if let Some(o) = fown::of_entry(f).filter(|o| fown::is_set(o)) {
                fown.insert(f.id, *o);
            }
        }
        Ok(FileSet {
            set: set.clone(),
            files_file,
            files,
            pipe_data,
            pipe_size,
            fifo_data,
            fifo_size,
            tty_infos,
            tty_data,
            memfds,
            shmem,
            fown,
            async_files,
            dead_pids: remaps.dead_pids.clone(),
            tree: Tree::default(),
        })
    }

    /// Check every file against the whole set and the tree (kept for the
    /// restore).
    pub fn check(&mut self, tree: Tree) -> Result<(), SetError> {
        self.tree = tree;
        for r in REGISTRY {
            if let Registered::Kind(k) = r {
                k.check(self)?;
            }
        }
        // File owners: each must be one of the tree.
        let pids = self.tree.pids();
        let tids: Vec<i32> = self.tree.tasks.iter().flat_map(|t| t.tids.iter().copied()).collect();
        let pgids: Vec<i32> = self.tree.tasks.iter().map(|t| t.pgid).collect();
        for (id, o) in &self.fown {
            fown::check(o, &pids, &tids, &pgids)
                .map_err(|what| unsupported(&self.files_file, 0, format!("file id {id}: {what}")))?;
        }
        Ok(())
    }

    pub fn get(&self, id: u32) -> Option<&dyn OpenFile> {
        self.files.get(&id).map(|b| &**b)
    }
    /// File `id` if it is a `T`.
    pub fn get_as<T: OpenFile>(&self, id: u32) -> Option<&T> {
        self.get(id).and_then(|f| f.downcast_ref())
    }
    pub fn contains(&self, id: u32) -> bool {
        self.files.contains_key(&id)
    }
    pub fn iter(&self) -> impl Iterator<Item = (u32, &dyn OpenFile)> {
        self.files.iter().map(|(id, f)| (*id, &**f))
    }
    /// Every file that is a `T`, by id.
    pub fn of<T: OpenFile>(&self) -> impl Iterator<Item = (u32, &T)> {
        self.iter().filter_map(|(id, f)| f.downcast_ref::<T>().map(|t| (id, t)))
    }
    /// Every file that is a `T`, mutable.
    pub fn of_mut<T: OpenFile>(&mut self) -> impl Iterator<Item = (u32, &mut T)> {
        self.files
            .iter_mut()
            .filter_map(|(id, f)| (**f).downcast_mut::<T>().map(|t| (*id, t)))
    }
    /// Is `path` under /proc/<pid>/ of a process of the restored tree? It
    /// can only be opened once that process exists.
    pub fn is_tree_proc_path(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix("/proc/") else {
            return false;
        };
        let pid = rest.split('/').next().unwrap_or("");
        pid.parse::<i32>().is_ok_and(|pid| self.tree.has_pid(pid))
    }
}

/// What the kinds share while the engine opens the files: the set, the
/// remaps (ghosts made, link remaps used) and per-kind state (pipe ends
/// opened, memfd inodes made, terminals opened together), keyed by type.
pub struct RestoreCx<'a> {
    pub files: &'a FileSet,
    pub remaps: reg::Remaps,
    /// --shell-job: the job's terminal is cryo's.
    pub shell_job: bool,
    /// --tcp-close: TCP connections are restored closed.
    pub tcp_close: bool,
    state: HashMap<TypeId, Box<dyn Any>>,
    scratch: HashMap<TypeId, Box<dyn Any>>,
}

impl<'a> RestoreCx<'a> {
    pub fn new(files: &'a FileSet, shell_job: bool) -> Self {
        RestoreCx {
            files,
            remaps: reg::Remaps::default(),
            shell_job,
            tcp_close: false,
            state: HashMap::new(),
            scratch: HashMap::new(),
        }
    }

    /// A kind's state, kept until the end of the restore's preparation.
    pub fn state<T: Default + 'static>(&mut self) -> &mut T {
        self.state
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()))
            .downcast_mut()
            .expect("keyed by its type")
    }

    /// A kind's state for the opening of the fds only ([`RestoreCx::end_fds`]
    /// drops it: the pipe ends, the FIFO nodes held open).
    pub fn scratch<T: Default + 'static>(&mut self) -> &mut T {
        self.scratch
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()))
            .downcast_mut()
            .expect("keyed by its type")
    }

    /// Every fd is open: drop what only the opening needed.
    pub fn end_fds(&mut self) {
        self.scratch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{fifo::FifoFile, kinds, reg::RegFile, reg::Remap};
    use super::*;

    /// An image set directory with nothing but an (empty) inventory.
    fn empty_set(test: &str) -> (PathBuf, ImageSet) {
        let dir = std::env::temp_dir().join(format!("cryo-describe-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("inventory.img"), b"").unwrap();
        let set = ImageSet::open(&dir).unwrap();
        (dir, set)
    }

    #[test]
    fn every_kind_refuses_an_entry_without_its_body() {
        let (dir, set) = empty_set("bodies");
        let remaps = reg::RemapTable::default();
        for k in kinds() {
            let e = pb::FileEntry {
                r#type: k.fd_type() as i32,
                id: 7,
                ..Default::default()
            };
            let cx = DescribeCx {
                set: &set,
                file: "files.img",
                index: 3,
                all: std::slice::from_ref(&e),
                tty_infos: &[],
                remaps: &remaps,
            };
            let err = k.describe(&e, &cx).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|m| m.starts_with("files.img: pid 0: entry 3")),
                "{:?}: {err:?}",
                k.fd_type()
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_fifo_takes_path_flags_and_remap_from_its_reg_entry() {
        let (dir, set) = empty_set("fifo");
        let mut remaps = reg::RemapTable::default();
        remaps.by_file.insert(1, Remap::Ghost(4));
        let all = [
            pb::FileEntry {
                r#type: pb::FdTypes::Reg as i32,
                id: 1,
                reg: Some(pb::RegFileEntry {
                    id: 1,
                    name: "/tmp/f".into(),
                    flags: 0o4002,
                    mode: Some(libc::S_IFIFO | 0o640),
                    ..Default::default()
                }),
                ..Default::default()
            },
            pb::FileEntry {
                r#type: pb::FdTypes::Fifo as i32,
                id: 2,
                fifo: Some(pb::FifoEntry {
                    id: 2,
                    pipe_id: 9,
                    regf_id: Some(1),
                }),
                ..Default::default()
            },
        ];
        let cx = |index| DescribeCx {
            set: &set,
            file: "files.img",
            index,
            all: &all,
            tty_infos: &[],
            remaps: &remaps,
        };
        let kind = |t| match registered(t) {
            Some(Registered::Kind(k)) => *k,
            _ => panic!("{t:?} has no kind"),
        };
        let f = kind(pb::FdTypes::Fifo).describe(&all[1], &cx(1)).unwrap();
        assert_eq!(f.fd_type(), pb::FdTypes::Fifo);
        let f = f.downcast_ref::<FifoFile>().expect("a FifoFile");
        assert_eq!(
            (f.pipe_id, f.path.as_str(), f.flags, f.mode),
            (9, "/tmp/f", 0o4002, libc::S_IFIFO | 0o640)
        );
        assert_eq!(f.remap, Some(Remap::Ghost(4)));
        let r = kind(pb::FdTypes::Reg).describe(&all[0], &cx(0)).unwrap();
        assert_eq!(
            r.downcast_ref::<RegFile>().and_then(|r| r.remap.clone()),
            Some(Remap::Ghost(4))
        );
        assert!(r.downcast_ref::<FifoFile>().is_none());
        // A FIFO naming a REG entry that is not there.
        let lone = &all[1..];
        let cx = DescribeCx {
            set: &set,
            file: "files.img",
            index: 0,
            all: lone,
            tty_infos: &[],
            remaps: &remaps,
        };
        let e = kind(pb::FdTypes::Fifo).describe(&all[1], &cx).unwrap_err().to_string();
        assert!(e.contains("names REG entry 1, which is missing"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
