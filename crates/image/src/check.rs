//! Consistency of a whole image set, as a restore needs it: every image that something refers to is there
//! and decodes, the process tree is a tree, memory runs lie inside the mappings and the pages files hold
//! exactly the pages the pagemaps announce, and every id (fd, file, pipe, socket, memfd) resolves.
//!
//! Pure: it only reads the directory. Problems are collected, not thrown: [`check_set`] returns every
//! problem it found, each naming the image file, the entry index when there is one, and what is wrong.
//! The checks:
//!
//! * every `*.img` decodes (framing, messages, payload sizes), pages files excepted (they are raw);
//! * `inventory.img`: version 2, fdinfo per id;
//! * `pstree.img`: at least one process, unique pids and thread ids, the leader among its threads, one root,
//!   every ppid in the tree and listed before its child (so no cycle);
//! * per thread `core-TID.img`; per live process `ids-`, `mm-`, `pagemap-`, `fs-PID.img`; per files id
//!   `fdinfo-ID.img`; per pagemap `pages-ID.img` (no two pagemaps sharing one, none left over);
//! * VMAs page aligned, sorted, not overlapping; the file a file mapping or `exe_file_id` names exists;
//! * pagemap runs page aligned, not overlapping, inside the VMAs (adjacent VMAs may share a run, as CRIU
//!   merges them); `PE_PARENT` runs need a `parent` set; the pages file is exactly present pages × 4096;
//! * `files.img`: unique ids, the sub-entry of the entry's type present with the same id; fds unique per
//!   fdinfo, each fd's id in files.img with the same type; `fs` cwd/root ids resolve;
//! * pipes-data/fifo-data for existing pipes/fifos; sk-queues for existing unix sockets; unix peers exist;
//!   established TCP sockets have their `tcp-stream-INO.img`; ghost files of remap-fpath exist; memfd
//!   files' inodes exist; shmem pagemaps have an owner; seccomp filters referenced by threads exist; ghost
//!   file contents agree with their size; `PE_PARENT` runs are in the parent dump's pagemap.
//!
//! A restore asks more of the process tree ([`check_set_with`] and [`CheckOpts`]): every id below the
//! kernel's pid_max, and the leader first among its threads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;

use prost::Message;

use crate::codec::{self, Extra, Image, Kind};
use crate::error::ImageError;
use crate::pages::{PE_PARENT, PE_PRESENT};
use crate::{pb, ImageSet, PAGE_SIZE};

/// One thing wrong with an image set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Image file name inside the set (`pstree.img`), or `.` for the directory itself.
    pub file: String,
    /// Index of the entry in that image, when the problem is about one entry.
    pub entry: Option<usize>,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entry {
            Some(i) => write!(f, "{} entry {}: {}", self.file, i, self.what),
            None => write!(f, "{}: {}", self.file, self.what),
        }
    }
}

/// Everything [`check_set`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub problems: Vec<Problem>,
    /// Number of image files looked at.
    pub images: usize,
    /// Processes in the tree.
    pub processes: usize,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Task states in `core.tc.task_state`.
pub const TASK_ALIVE: u32 = 1;
pub const TASK_DEAD: u32 = 2;
pub const TASK_STOPPED: u32 = 3;

pub use crate::vma::{
    VMA_ANON_SHARED, VMA_AREA_MEMFD, VMA_AREA_REGULAR, VMA_AREA_SOCKET, VMA_AREA_SYSVIPC, VMA_FILE_PRIVATE,
    VMA_FILE_SHARED,
};

// fd_types values used here.
const FD_REG: i32 = 1;
const FD_MEMFD: i32 = 18;

const TCP_ESTABLISHED: u32 = 1;
const SOCK_STREAM: u32 = 1;
const IPPROTO_TCP: u32 = 6;

/// Images with no magic (raw data): not decoded.
pub fn is_raw_image(name: &str) -> bool {
    const RAW: &[&str] = &[
        "pages-",
        "ifaddr-",
        "route-",
        "route6-",
        "rule-",
        "tmpfs-",
        "iptables-",
        "ip6tables-",
        "nftables-",
        "netns-ct-",
        "netns-exp-",
    ];
    RAW.iter().any(|p| name.starts_with(p))
}

/// The name of a file entry's type (`REG`, `PIPE`, ...), or the number.
pub fn fd_type_name(t: i32) -> String {
    pb::FdTypes::try_from(t)
        .map(|e| e.as_str_name().to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// Split an image error into (entry index, text without the file name).
fn describe(e: &ImageError) -> (Option<usize>, String) {
    match e {
        ImageError::Io { cause, .. } => (None, cause.to_string()),
        ImageError::NoHead { len, .. } => (None, format!("file is {len} bytes, too short for an image head")),
        ImageError::UnknownMagic { magic, offset, .. } => {
            (None, format!("unknown magic {magic:#010x} at byte {offset}"))
        }
        ImageError::WrongKind { found, expected, .. } => (None, format!("is a {found} image, expected {expected}")),
        ImageError::Entry {
            index, offset, what, ..
        } => (Some(*index), format!("at byte {offset}: {what}")),
        ImageError::Decode {
            index,
            offset,
            message,
            cause,
            ..
        } => (
            Some(*index),
            format!("at byte {offset}: {message} does not decode: {cause}"),
        ),
        ImageError::Json { what, .. } | ImageError::Invalid { what, .. } => (None, what.clone()),
    }
}

/// Decode entry `i` of a dynamically decoded image as the typed message `M`.
fn typed<M: Message + Default>(img: &Image, i: usize) -> Option<M> {
    M::decode(img.entries.get(i)?.msg.encode_to_vec().as_slice()).ok()
}

fn all_typed<M: Message + Default>(img: &Image) -> Vec<M> {
    (0..img.entries.len()).filter_map(|i| typed(img, i)).collect()
}

/// What a restore demands of a set beyond what every reader needs
/// ([`check_set_with`]; the default asks nothing more).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckOpts {
    /// Every pid and thread id must lie in 1..pid_max (the restoring
    /// kernel's /proc/sys/kernel/pid_max).
    pub pid_max: Option<u32>,
    /// The leader must be the first of its threads (the restore creates
    /// the other threads from it).
    pub leader_first: bool,
}

struct Checker<'a> {
    set: &'a ImageSet,
    opts: CheckOpts,
    /// Every regular file in the directory.
    present: HashSet<String>,
    /// Every protobuf image that decoded.
    images: BTreeMap<String, Image>,
    /// Images that exist but did not decode (already reported).
    broken: HashSet<String>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn problem(&mut self, file: &str, entry: Option<usize>, what: impl Into<String>) {
        self.problems.push(Problem {
            file: file.to_string(),
            entry,
            what: what.into(),
        });
    }

    /// A decoded image that must exist; reports it missing (saying who needs it) when it does not.
    fn need(&mut self, name: &str, who: &str, entry: Option<usize>, why: &str) -> Option<&Image> {
        if self.images.contains_key(name) {
            return self.images.get(name);
        }
        if !self.broken.contains(name) {
            self.problem(who, entry, format!("{name} is missing ({why})"));
        }
        None
    }

    fn load_all(&mut self) {
        let dir = self.set.dir().to_path_buf();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                self.problem(".", None, format!("cannot list {}: {e}", dir.display()));
                return;
            }
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            self.present.insert(name.clone());
            if !name.ends_with(".img") || is_raw_image(&name) {
                continue;
            }
            let data = match fs::read(dir.join(&name)) {
                Ok(d) => d,
                Err(e) => {
                    self.problem(&name, None, format!("cannot read: {e}"));
                    self.broken.insert(name);
                    continue;
                }
            };
            if let Kind::Raw { .. } = codec::identify(&data) {
                self.problem(&name, None, "not a CRIU image: no known magic");
                self.broken.insert(name);
                continue;
            }
            match codec::decode(&name, &data) {
                Ok(img) => {
                    self.images.insert(name, img);
                }
                Err(e) => {
                    let (entry, what) = describe(&e);
                    self.problem(&name, entry, what);
                    self.broken.insert(name);
                }
            }
        }
    }

    /// The image `name` must be of kind `magic`.
    fn kind_is(&mut self, name: &str, magic: &str) -> bool {
        match self.images.get(name) {
            Some(img) if img.magic.name == magic => true,
            Some(img) => {
                let found = img.magic.name;
                self.problem(name, None, format!("is a {found} image, expected {magic}"));
                false
            }
            None => false,
        }
    }

    fn inventory(&mut self) {
        let Some(img) = self.need("inventory.img", ".", None, "every set has one") else {
            return;
        };
        let Some(inv) = typed::<pb::InventoryEntry>(img, 0) else {
            self.problem("inventory.img", None, "has no entry");
            return;
        };
        if img.entries.len() != 1 {
            let n = img.entries.len();
            self.problem("inventory.img", None, format!("has {n} entries, expected 1"));
        }
        if inv.img_version != 2 {
            self.problem(
                "inventory.img",
                Some(0),
                format!("img_version {} (CRIU 4.x images are version 2)", inv.img_version),
            );
        }
        if inv.fdinfo_per_id != Some(true) {
            self.problem(
                "inventory.img",
                Some(0),
                "fdinfo_per_id is not set (old per-pid fdinfo layout is not supported)",
            );
        }
    }

    /// Returns the pstree entries (empty when unusable).
    fn pstree(&mut self) -> Vec<pb::PstreeEntry> {
        if !self.kind_is("pstree.img", "PSTREE") {
            self.need("pstree.img", ".", None, "every set has one");
            return Vec::new();
        }
        let img = &self.images["pstree.img"];
        let mut tree: Vec<pb::PstreeEntry> = all_typed(img);
        // A zombie's thread slot is whatever CRIU had there (it never seizes
        // a zombie): its only thread is itself (see ImageSet::pstree).
        for p in &mut tree {
            let dead = self
                .images
                .get(&format!("core-{}.img", p.pid))
                .and_then(|img| typed::<pb::CoreEntry>(img, 0))
                .and_then(|c| c.tc)
                .is_some_and(|tc| tc.task_state == TASK_DEAD);
            if dead {
                p.threads = vec![p.pid];
            }
        }
        if tree.is_empty() {
            self.problem("pstree.img", None, "no process in the tree");
            return tree;
        }
        let mut pid_at: HashMap<u32, usize> = HashMap::new();
        let mut tid_at: HashMap<u32, usize> = HashMap::new();
        for (i, p) in tree.iter().enumerate() {
            if p.pid == 0 {
                self.problem("pstree.img", Some(i), "pid 0");
            }
            if let Some(j) = pid_at.insert(p.pid, i) {
                self.problem(
                    "pstree.img",
                    Some(i),
                    format!("pid {} appears twice (also entry {j})", p.pid),
                );
                pid_at.insert(p.pid, j);
            }
            if !p.threads.contains(&p.pid) {
                self.problem(
                    "pstree.img",
                    Some(i),
                    format!("pid {}: the leader is not among its threads {:?}", p.pid, p.threads),
                );
            } else if self.opts.leader_first && p.threads[0] != p.pid {
                self.problem(
                    "pstree.img",
                    Some(i),
                    format!(
                        "pid {}: the first thread {} is not the process leader",
                        p.pid, p.threads[0]
                    ),
                );
            }
            if let Some(max) = self.opts.pid_max {
                let mut ids: Vec<u32> = p.threads.iter().copied().filter(|&t| t != p.pid).collect();
                if p.pid != 0 {
                    ids.insert(0, p.pid);
                }
                for id in ids {
                    if id == 0 || id >= max {
                        self.problem(
                            "pstree.img",
                            Some(i),
                            format!("pid {}: id {id} is outside 1..{max}", p.pid),
                        );
                    }
                }
            }
            for &t in &p.threads {
                if let Some(j) = tid_at.insert(t, i) {
                    if j == i {
                        self.problem("pstree.img", Some(i), format!("thread {t} listed twice"));
                    } else {
                        self.problem(
                            "pstree.img",
                            Some(i),
                            format!("thread {t} also belongs to entry {j} (pid {})", tree[j].pid),
                        );
                    }
                    tid_at.insert(t, j);
                }
            }
        }
        // Thread ids of one process may not be the pid of another.
        for (i, p) in tree.iter().enumerate() {
            for &t in &p.threads {
                if t != p.pid {
                    if let Some(&j) = pid_at.get(&t) {
                        self.problem(
                            "pstree.img",
                            Some(i),
                            format!("thread {t} of pid {} is also the pid of entry {j}", p.pid),
                        );
                    }
                }
            }
        }
        for (i, p) in tree.iter().enumerate() {
            if i == 0 {
                if p.ppid != 0 && pid_at.contains_key(&p.ppid) {
                    self.problem(
                        "pstree.img",
                        Some(0),
                        format!("the root {} has ppid {} which is in the tree", p.pid, p.ppid),
                    );
                }
                continue;
            }
            if p.ppid == 0 {
                self.problem(
                    "pstree.img",
                    Some(i),
                    format!("pid {} has ppid 0 but only the first entry is the root", p.pid),
                );
                continue;
            }
            match pid_at.get(&p.ppid) {
                None => self.problem(
                    "pstree.img",
                    Some(i),
                    format!("pid {}: parent {} is not in the tree", p.pid, p.ppid),
                ),
                Some(&j) if j >= i => {
                    // Either a cycle or just out of order; say which.
                    let mut seen = HashSet::from([p.pid]);
                    let mut cur = p.ppid;
                    let mut cycle = false;
                    while let Some(&k) = pid_at.get(&cur) {
                        if !seen.insert(cur) {
                            cycle = true;
                            break;
                        }
                        cur = tree[k].ppid;
                    }
                    let what = if cycle {
                        format!("pid {}: parent chain through {} loops (not a tree)", p.pid, p.ppid)
                    } else {
                        format!(
                            "pid {}: parent {} comes later (entry {j}); parents must come first",
                            p.pid, p.ppid
                        )
                    };
                    self.problem("pstree.img", Some(i), what);
                }
                Some(_) => {}
            }
        }
        tree
    }

    fn files(&mut self) -> BTreeMap<u32, (usize, pb::FileEntry)> {
        let mut out = BTreeMap::new();
        if !self.images.contains_key("files.img") || !self.kind_is("files.img", "FILES") {
            return out;
        }
        let entries: Vec<pb::FileEntry> = all_typed(&self.images["files.img"]);
        for (i, f) in entries.into_iter().enumerate() {
            let sub_id = match f.r#type {
                1 => f.reg.as_ref().map(|x| x.id),
                2 => f.pipe.as_ref().map(|x| x.id),
                3 => f.fifo.as_ref().map(|x| x.id),
                4 => f.isk.as_ref().map(|x| x.id),
                5 => f.usk.as_ref().map(|x| x.id),
                6 => f.efd.as_ref().map(|x| x.id),
                7 => f.epfd.as_ref().map(|x| x.id),
                8 => f.ify.as_ref().map(|x| x.id),
                9 => f.sgfd.as_ref().map(|x| x.id),
                10 => f.psk.as_ref().map(|x| x.id),
                11 => f.tty.as_ref().map(|x| x.id),
                12 => f.ffy.as_ref().map(|x| x.id),
                13 => f.nlsk.as_ref().map(|x| x.id),
                14 => f.nsf.as_ref().map(|x| x.id),
                15 => f.tunf.as_ref().map(|x| x.id),
                16 => f.ext.as_ref().map(|x| x.id),
                17 => f.tfd.as_ref().map(|x| x.id),
                18 => f.memfd.as_ref().map(|x| x.id),
                19 => f.bpf.as_ref().map(|x| x.id),
                20 => f.pidfd.as_ref().map(|x| x.id),
                _ => {
                    let t = fd_type_name(f.r#type);
                    self.problem(
                        "files.img",
                        Some(i),
                        format!("file id {}: type {t} cannot be in files.img", f.id),
                    );
                    None
                }
            };
            match sub_id {
                Some(s) if s != f.id => self.problem(
                    "files.img",
                    Some(i),
                    format!("file id {} but its {} entry says id {s}", f.id, fd_type_name(f.r#type)),
                ),
                None if (1..=20).contains(&f.r#type) => self.problem(
                    "files.img",
                    Some(i),
                    format!("file id {}: type {} without its entry", f.id, fd_type_name(f.r#type)),
                ),
                _ => {}
            }
            if let Some((j, _)) = out.get(&f.id) {
                let j = *j;
                self.problem(
                    "files.img",
                    Some(i),
                    format!("file id {} appears twice (also entry {j})", f.id),
                );
                continue;
            }
            out.insert(f.id, (i, f));
        }
        out
    }

    fn file_ref(
        &mut self,
        files: &BTreeMap<u32, (usize, pb::FileEntry)>,
        who: &str,
        entry: Option<usize>,
        id: u32,
        what: &str,
        types: &[i32],
    ) {
        match files.get(&id) {
            None => self.problem(who, entry, format!("{what} {id} is not in files.img")),
            Some((j, f)) if !types.is_empty() && !types.contains(&f.r#type) => {
                let t = fd_type_name(f.r#type);
                self.problem(who, entry, format!("{what} {id} is a {t} file (files.img entry {j})"))
            }
            _ => {}
        }
    }

    /// One process: its images, memory and fds. Returns the pages ids its pagemap uses.
    fn process(&mut self, i: usize, p: &pb::PstreeEntry, files: &BTreeMap<u32, (usize, pb::FileEntry)>) {
        let pid = p.pid;
        let mut alive = true;
        for &tid in &p.threads {
            let name = format!("core-{tid}.img");
            let why = format!("thread {tid} of pid {pid}");
            let Some(img) = self.need(&name, "pstree.img", Some(i), &why) else {
                continue;
            };
            if img.magic.name != "CORE" {
                self.kind_is(&name, "CORE");
                continue;
            }
            let Some(core) = typed::<pb::CoreEntry>(img, 0) else {
                self.problem(&name, None, "has no entry");
                continue;
            };
            if core.mtype != pb::core_entry::March::X8664 as i32 {
                self.problem(&name, Some(0), format!("mtype {} is not X86_64", core.mtype));
            } else if core.thread_info.is_none() && core.tc.as_ref().is_none_or(|tc| tc.task_state != TASK_DEAD) {
                // A zombie has no registers (CRIU writes none either).
                self.problem(&name, Some(0), "no thread_info (registers)");
            }
            // SECCOMP_MODE_FILTER: the thread's filter chain is in seccomp.img.
            if let Some(tc) = core.thread_core.as_ref().filter(|t| t.seccomp_mode == Some(2)) {
                let idx = tc.seccomp_filter.unwrap_or(0) as usize;
                let why = format!("thread {tid} has a seccomp filter");
                if let Some(img) = self.need("seccomp.img", &name, Some(0), &why) {
                    let n = typed::<pb::SeccompEntry>(img, 0)
                        .map(|e| e.seccomp_filters.len())
                        .unwrap_or(0);
                    if idx >= n {
                        self.problem(
                            &name,
                            Some(0),
                            format!("seccomp_filter {idx}, but seccomp.img has {n} filter(s)"),
                        );
                    }
                }
            }
            if tid == pid {
                match &core.tc {
                    None => self.problem(&name, Some(0), "the leader's core has no tc (task state)"),
                    Some(tc) => match tc.task_state {
                        TASK_ALIVE | TASK_STOPPED => {}
                        TASK_DEAD => alive = false,
                        s => self.problem(&name, Some(0), format!("unknown task_state {s}")),
                    },
                }
            }
        }
        if !alive {
            return; // a zombie has only its core
        }
        let who = "pstree.img";
        let ids_name = format!("ids-{pid}.img");
        let files_id = self
            .need(&ids_name, who, Some(i), &format!("kernel object ids of pid {pid}"))
            .and_then(|img| typed::<pb::TaskKobjIdsEntry>(img, 0))
            .map(|ids| ids.files_id);
        if let Some(fid) = files_id {
            let name = format!("fdinfo-{fid}.img");
            if self
                .need(&name, &ids_name, Some(0), &format!("fds of files_id {fid}"))
                .is_some()
            {
                self.fdinfo(&name, files);
            }
        }
        let fs_name = format!("fs-{pid}.img");
        if let Some(fs) = self
            .need(&fs_name, who, Some(i), &format!("cwd and root of pid {pid}"))
            .and_then(|img| typed::<pb::FsEntry>(img, 0))
        {
            self.file_ref(files, &fs_name, Some(0), fs.cwd_id, "cwd_id", &[FD_REG]);
            self.file_ref(files, &fs_name, Some(0), fs.root_id, "root_id", &[FD_REG]);
        }
        let mm_name = format!("mm-{pid}.img");
        let mm = self
            .need(&mm_name, who, Some(i), &format!("memory map of pid {pid}"))
            .and_then(|img| typed::<pb::MmEntry>(img, 0));
        let vmas = mm.as_ref().map(|mm| self.mm(&mm_name, mm, files));
        let pm_name = format!("pagemap-{pid}.img");
        if self
            .need(&pm_name, who, Some(i), &format!("memory pages of pid {pid}"))
            .is_some()
        {
            self.pagemap(&pm_name, vmas.as_deref());
        }
    }

    /// Checks the mm entry; returns the VMAs as sorted (start, end) ranges.
    fn mm(&mut self, name: &str, mm: &pb::MmEntry, files: &BTreeMap<u32, (usize, pb::FileEntry)>) -> Vec<(u64, u64)> {
        if mm.exe_file_id != 0 {
            self.file_ref(files, name, Some(0), mm.exe_file_id, "exe_file_id", &[FD_REG]);
        }
        let mut out = Vec::with_capacity(mm.vmas.len());
        let mut prev_end = 0u64;
        for (k, v) in mm.vmas.iter().enumerate() {
            let at = format!("vma {k} {:#x}-{:#x}", v.start, v.end);
            if v.start % PAGE_SIZE != 0 || v.end % PAGE_SIZE != 0 {
                self.problem(name, Some(0), format!("{at}: not page aligned"));
            }
            if v.start >= v.end {
                self.problem(name, Some(0), format!("{at}: empty or reversed"));
                continue;
            }
            if v.status & crate::vma::VMA_AREA_GUARD != 0 {
                // MADV_GUARD_INSTALL ranges: listed after the VMAs, inside them.
                let mut a = v.start;
                for &(s, e) in &out {
                    if s <= a && a < e {
                        a = e;
                    }
                }
                if a < v.end {
                    self.problem(name, Some(0), format!("{at}: a guard range outside every vma"));
                }
                continue;
            }
            if v.start < prev_end {
                self.problem(
                    name,
                    Some(0),
                    format!("{at}: overlaps or comes before the previous mapping (ends {prev_end:#x})"),
                );
            }
            prev_end = prev_end.max(v.end);
            out.push((v.start, v.end));
            let file_backed = v.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0;
            if v.status & VMA_AREA_REGULAR != 0 && file_backed && v.status & VMA_AREA_SOCKET == 0 {
                let id = v.shmid as u32;
                if v.shmid > u32::MAX as u64 {
                    self.problem(name, Some(0), format!("{at}: file id {} out of range", v.shmid));
                } else {
                    self.file_ref(files, name, Some(0), id, &format!("{at}: file id"), &[FD_REG, FD_MEMFD]);
                }
            }
        }
        out.sort();
        out
    }

    fn pagemap(&mut self, name: &str, vmas: Option<&[(u64, u64)]>) {
        if !self.kind_is(name, "PAGEMAP") {
            return;
        }
        let img = &self.images[name];
        let Some(head) = typed::<pb::PagemapHead>(img, 0) else {
            self.problem(name, None, "no pagemap_head");
            return;
        };
        let runs: Vec<(usize, pb::PagemapEntry)> = (1..img.entries.len())
            .filter_map(|k| typed::<pb::PagemapEntry>(img, k).map(|e| (k, e)))
            .collect();
        let mut present = 0u64;
        let mut spans: Vec<(u64, u64, usize)> = Vec::new();
        for (k, e) in &runs {
            let nr = e.nr_pages.unwrap_or(e.compat_nr_pages as u64);
            let flags = e.flags.unwrap_or(PE_PRESENT);
            if e.vaddr % PAGE_SIZE != 0 {
                self.problem(name, Some(*k), format!("vaddr {:#x} is not page aligned", e.vaddr));
                continue;
            }
            if nr == 0 {
                self.problem(name, Some(*k), format!("run at {:#x} has no pages", e.vaddr));
                continue;
            }
            let Some(end) = nr.checked_mul(PAGE_SIZE).and_then(|b| e.vaddr.checked_add(b)) else {
                self.problem(name, Some(*k), format!("{nr} pages at {:#x} overflow", e.vaddr));
                continue;
            };
            if flags & PE_PRESENT != 0 {
                present = present.saturating_add(nr);
            }
            if flags & PE_PARENT != 0 && self.set.dir().join("parent").exists() {
                if let Some(what) = parent_lacks(self.set, name, e.vaddr, end) {
                    self.problem(name, Some(*k), what);
                }
            }
            if flags & PE_PARENT != 0 && !self.set.dir().join("parent").exists() {
                self.problem(
                    name,
                    Some(*k),
                    format!(
                        "run at {:#x} is in the parent dump, but there is no parent link",
                        e.vaddr
                    ),
                );
            }
            if flags & PE_PARENT != 0 && flags & PE_PRESENT != 0 {
                self.problem(
                    name,
                    Some(*k),
                    format!("run at {:#x} is both PE_PARENT and PE_PRESENT", e.vaddr),
                );
            }
            spans.push((e.vaddr, end, *k));
            if let Some(vmas) = vmas {
                if let Some(a) = first_uncovered(vmas, e.vaddr, end) {
                    self.problem(
                        name,
                        Some(*k),
                        format!(
                            "run {:#x}-{:#x} ({nr} pages): {a:#x} is outside every VMA of the mm image",
                            e.vaddr, end
                        ),
                    );
                }
            }
        }
        spans.sort();
        for w in spans.windows(2) {
            if w[0].1 > w[1].0 {
                self.problem(
                    name,
                    Some(w[1].2),
                    format!(
                        "run at {:#x} overlaps the run at {:#x} (entry {})",
                        w[1].0, w[0].0, w[0].2
                    ),
                );
            }
        }
        let pages = format!("pages-{}.img", head.pages_id);
        let want = present.saturating_mul(PAGE_SIZE);
        match fs::metadata(self.set.dir().join(&pages)) {
            Ok(m) if m.len() != want => self.problem(
                &pages,
                None,
                format!(
                    "is {} bytes, but {name} has {present} present pages = {want} bytes{}",
                    m.len(),
                    if m.len() % PAGE_SIZE != 0 {
                        " (not a whole number of pages: truncated?)"
                    } else {
                        ""
                    }
                ),
            ),
            Ok(_) => {}
            Err(_) if present > 0 => self.problem(
                name,
                Some(0),
                format!("{pages} is missing ({present} present pages should be there)"),
            ),
            Err(_) => {}
        }
    }

    fn fdinfo(&mut self, name: &str, files: &BTreeMap<u32, (usize, pb::FileEntry)>) {
        if !self.kind_is(name, "FDINFO") {
            return;
        }
        let fds: Vec<pb::FdinfoEntry> = all_typed(&self.images[name]);
        let mut seen: HashMap<u32, usize> = HashMap::new();
        for (k, fd) in fds.iter().enumerate() {
            if let Some(j) = seen.insert(fd.fd, k) {
                self.problem(name, Some(k), format!("fd {} appears twice (also entry {j})", fd.fd));
            }
            match files.get(&fd.id) {
                None => self.problem(
                    name,
                    Some(k),
                    format!("fd {}: file id {} is not in files.img", fd.fd, fd.id),
                ),
                Some((j, f)) if f.r#type != fd.r#type => self.problem(
                    name,
                    Some(k),
                    format!(
                        "fd {}: type {} but file id {} is {} (files.img entry {j})",
                        fd.fd,
                        fd_type_name(fd.r#type),
                        fd.id,
                        fd_type_name(f.r#type)
                    ),
                ),
                Some(_) => {}
            }
        }
    }

    /// Images that refer to files.img objects, and files.img objects that need other images.
    fn cross_refs(&mut self, files: &BTreeMap<u32, (usize, pb::FileEntry)>) {
        let pipe_ids: HashSet<u32> = files
            .values()
            .filter_map(|(_, f)| f.pipe.as_ref().map(|p| p.pipe_id))
            .collect();
        let fifo_ids: HashSet<u32> = files
            .values()
            .filter_map(|(_, f)| f.fifo.as_ref().map(|p| p.pipe_id))
            .collect();
        for (name, ids, what) in [
            ("pipes-data.img", &pipe_ids, "pipe"),
            ("fifo-data.img", &fifo_ids, "fifo"),
        ] {
            let Some(img) = self.images.get(name) else { continue };
            let mut bad = Vec::new();
            let mut seen: HashMap<u32, usize> = HashMap::new();
            for k in 0..img.entries.len() {
                let Some(e) = typed::<pb::PipeDataEntry>(img, k) else {
                    continue;
                };
                if !ids.contains(&e.pipe_id) {
                    bad.push((
                        k,
                        format!(
                            "data for {what} {} but no {what} in files.img has that pipe_id",
                            e.pipe_id
                        ),
                    ));
                }
                if let Some(j) = seen.insert(e.pipe_id, k) {
                    bad.push((k, format!("{what} {} has data twice (also entry {j})", e.pipe_id)));
                }
                if let Some(size) = e.size {
                    if e.bytes > size {
                        bad.push((k, format!("{} bytes queued in a {what} of {size} bytes", e.bytes)));
                    }
                }
                if let Extra::Blob(b) = &img.entries[k].extra {
                    if b.len() != e.bytes as usize {
                        bad.push((k, format!("payload is {} bytes but bytes says {}", b.len(), e.bytes)));
                    }
                }
            }
            for (k, w) in bad {
                self.problem(name, Some(k), w);
            }
        }
        let unix: HashMap<u32, &pb::UnixSkEntry> = files
            .values()
            .filter_map(|(_, f)| f.usk.as_ref().map(|u| (u.ino, u)))
            .collect();
        // Queues of unix sockets, and of UDP sockets (cryo keeps them; CRIU's restore leaves entries
        // it has no socket for alone).
        let unix_ids: HashSet<u32> = files
            .values()
            .filter_map(|(_, f)| {
                f.usk
                    .as_ref()
                    .map(|u| u.id)
                    .or_else(|| f.isk.as_ref().filter(|i| i.r#type == 2).map(|i| i.id))
            })
            .collect();
        if let Some(img) = self.images.get("sk-queues.img") {
            let mut bad = Vec::new();
            for k in 0..img.entries.len() {
                if let Some(e) = typed::<pb::SkPacketEntry>(img, k) {
                    if !unix_ids.contains(&e.id_for) {
                        bad.push((
                            k,
                            format!(
                                "queue for socket id {} which is not a unix or UDP socket in files.img",
                                e.id_for
                            ),
                        ));
                    }
                }
            }
            for (k, w) in bad {
                self.problem("sk-queues.img", Some(k), w);
            }
        }
        let mut later = Vec::new();
        for (id, (i, f)) in files {
            if let Some(u) = &f.usk {
                if u.peer != 0 && !unix.contains_key(&u.peer) {
                    later.push((*i, format!("unix socket {id}: peer inode {} is not in the set", u.peer)));
                }
            }
            if let Some(s) = &f.isk {
                if s.proto == IPPROTO_TCP && s.r#type == SOCK_STREAM && s.state == TCP_ESTABLISHED {
                    let name = format!("tcp-stream-{:x}.img", s.ino);
                    if !self.present.contains(&name) {
                        later.push((
                            *i,
                            format!("established TCP socket {id} (inode {}): {name} is missing", s.ino),
                        ));
                    }
                }
            }
            if let Some(m) = &f.memfd {
                let inodes: Vec<pb::MemfdInodeEntry> = self.images.get("memfd.img").map(all_typed).unwrap_or_default();
                if !inodes.iter().any(|n| n.inode_id == m.inode_id as u64) {
                    later.push((*i, format!("memfd {id}: inode {} is not in memfd.img", m.inode_id)));
                }
            }
        }
        for (i, w) in later {
            self.problem("files.img", Some(i), w);
        }
        if let Some(img) = self.images.get("remap-fpath.img") {
            let remaps: Vec<pb::RemapFilePathEntry> = all_typed(img);
            for (k, r) in remaps.iter().enumerate() {
                if !files.contains_key(&r.orig_id) {
                    self.problem(
                        "remap-fpath.img",
                        Some(k),
                        format!("orig_id {} is not in files.img", r.orig_id),
                    );
                }
                // remap_type: LINKED 0, GHOST 1, PROCFS 2 (absent: LINKED).
                if r.remap_type == Some(1) {
                    let g = format!("ghost-file-{}.img", r.remap_id);
                    if !self.present.contains(&g) {
                        self.problem(
                            "remap-fpath.img",
                            Some(k),
                            format!("ghost file {} of file {}: {g} is missing", r.remap_id, r.orig_id),
                        );
                    }
                }
            }
        }
    }

    /// Ghost files: the contents agree with the size (chunks inside the file, in order).
    fn ghosts(&mut self) {
        let mut bad = Vec::new();
        for (name, img) in &self.images {
            if img.magic.name != "GHOST_FILE" {
                continue;
            }
            let Some(g) = typed::<pb::GhostFileEntry>(img, 0) else {
                continue;
            };
            let Some(size) = g.size else { continue };
            let regular = g.mode & 0o170000 == 0o100000;
            if g.chunks == Some(true) {
                let mut end = 0u64;
                for k in 1..img.entries.len() {
                    let Some(c) = typed::<pb::GhostChunkEntry>(img, k) else {
                        continue;
                    };
                    if c.off < end {
                        bad.push((name.clone(), k, format!("chunk at {} overlaps the previous one", c.off)));
                    }
                    end = c.off.saturating_add(c.len);
                    if end > size {
                        bad.push((
                            name.clone(),
                            k,
                            format!("chunk {}+{} runs past the file size {size}", c.off, c.len),
                        ));
                    }
                }
            } else if regular {
                if let Some(Extra::Blob(b)) = img.entries.first().map(|e| &e.extra) {
                    if b.len() as u64 != size {
                        bad.push((
                            name.clone(),
                            0,
                            format!("{} bytes of contents for a file of size {size}", b.len()),
                        ));
                    }
                }
            }
        }
        for (n, k, w) in bad {
            self.problem(&n, Some(k), w);
        }
    }

    /// Seccomp filter chains: every `prev` names another filter of the image.
    fn seccomp(&mut self) {
        let Some(e) = self
            .images
            .get("seccomp.img")
            .and_then(|i| typed::<pb::SeccompEntry>(i, 0))
        else {
            return;
        };
        for (i, f) in e.seccomp_filters.iter().enumerate() {
            if let Some(p) = f.prev {
                if p as usize >= e.seccomp_filters.len() || p as usize == i {
                    let n = e.seccomp_filters.len();
                    self.problem(
                        "seccomp.img",
                        Some(0),
                        format!("filter {i}: prev {p} is not another of the {n} filters"),
                    );
                }
            }
        }
    }

    /// Shared memory pagemaps: an owner exists, and the pages file matches.
    fn shmem(&mut self, anon_shared: &HashSet<u64>) {
        let names: Vec<String> = self
            .images
            .keys()
            .filter(|n| n.starts_with("pagemap-shmem-"))
            .cloned()
            .collect();
        let memfd: HashSet<u64> = self
            .images
            .get("memfd.img")
            .map(all_typed::<pb::MemfdInodeEntry>)
            .unwrap_or_default()
            .iter()
            .map(|n| n.shmid as u64)
            .collect();
        let mut ipc: HashSet<u64> = HashSet::new();
        for (n, img) in &self.images {
            if n.starts_with("ipcns-shm-") {
                for e in all_typed::<pb::IpcShmEntry>(img) {
                    ipc.insert(e.desc.id as u64);
                }
            }
        }
        for name in names {
            let id: Option<u64> = name
                .strip_prefix("pagemap-shmem-")
                .and_then(|s| s.strip_suffix(".img"))
                .and_then(|s| s.parse().ok());
            match id {
                Some(id) if memfd.contains(&id) || ipc.contains(&id) || anon_shared.contains(&id) => {}
                Some(id) => self.problem(
                    &name,
                    None,
                    format!("shared memory {id} belongs to no memfd, SysV segment or shared mapping"),
                ),
                None => self.problem(&name, None, "name is not pagemap-shmem-ID.img"),
            }
            self.pagemap(&name, None);
        }
    }

    /// Every pages file belongs to exactly one pagemap.
    fn pages_owners(&mut self) {
        let mut owner: BTreeMap<u32, String> = BTreeMap::new();
        let mut dup = Vec::new();
        for (n, img) in &self.images {
            if img.magic.name != "PAGEMAP" {
                continue;
            }
            if let Some(h) = typed::<pb::PagemapHead>(img, 0) {
                if let Some(o) = owner.insert(h.pages_id, n.clone()) {
                    dup.push((n.clone(), format!("pages-{}.img is also used by {o}", h.pages_id)));
                }
            }
        }
        for (n, w) in dup {
            self.problem(&n, Some(0), w);
        }
        let any_broken_pagemap = self.broken.iter().any(|n| n.starts_with("pagemap-"));
        let orphans: Vec<String> = self
            .present
            .iter()
            .filter(|n| n.starts_with("pages-") && n.ends_with(".img"))
            .filter(|n| {
                let id = n[6..n.len() - 4].parse::<u32>().ok();
                id.is_none_or(|id| !owner.contains_key(&id))
            })
            .cloned()
            .collect();
        if !any_broken_pagemap {
            for n in orphans {
                self.problem(&n, None, "no pagemap refers to this pages file");
            }
        }
    }
}

/// For a `PE_PARENT` run of `pagemap-PID.img`: what is wrong if the parent dump does not have those pages.
fn parent_lacks(set: &ImageSet, name: &str, start: u64, end: u64) -> Option<String> {
    let pid: u32 = name.strip_prefix("pagemap-")?.strip_suffix(".img")?.parse().ok()?;
    let parent = set.parent()?;
    let pm = match parent.pagemap(pid) {
        Ok(pm) => pm,
        Err(e) => {
            return Some(format!(
                "run at {start:#x} is in the parent dump, which cannot serve it: {e}"
            ))
        }
    };
    let spans: Vec<(u64, u64)> = pm.runs.iter().map(|r| (r.vaddr, r.end())).collect();
    first_uncovered(&spans, start, end).map(|a| {
        format!("run {start:#x}-{end:#x} is in the parent dump, but the parent's pagemap-{pid}.img lacks {a:#x}")
    })
}

/// The first address of `[start, end)` not covered by the sorted ranges, if any.
fn first_uncovered(vmas: &[(u64, u64)], start: u64, end: u64) -> Option<u64> {
    let mut a = start;
    let mut i = vmas.partition_point(|v| v.1 <= a);
    while a < end {
        match vmas.get(i) {
            Some(&(s, e)) if s <= a => {
                a = e;
                i += 1;
            }
            _ => return Some(a),
        }
    }
    None
}

/// Check a whole image set. Never fails: everything wrong is in the report.
pub fn check_set(set: &ImageSet) -> Report {
    check_set_with(set, CheckOpts::default())
}

/// [`check_set`] with the restore's demands `opts` besides.
pub fn check_set_with(set: &ImageSet, opts: CheckOpts) -> Report {
    let mut c = Checker {
        set,
        opts,
        present: HashSet::new(),
        images: BTreeMap::new(),
        broken: HashSet::new(),
        problems: Vec::new(),
    };
    c.load_all();
    c.inventory();
    let tree = c.pstree();
    let files = c.files();
    let mut anon_shared = HashSet::new();
    for (i, p) in tree.iter().enumerate() {
        c.process(i, p, &files);
        if let Some(mm) = c
            .images
            .get(&format!("mm-{}.img", p.pid))
            .and_then(|img| typed::<pb::MmEntry>(img, 0))
        {
            for v in &mm.vmas {
                if v.status & VMA_ANON_SHARED != 0 {
                    anon_shared.insert(v.shmid);
                }
            }
        }
    }
    c.cross_refs(&files);
    c.seccomp();
    c.ghosts();
    c.shmem(&anon_shared);
    c.pages_owners();
    Report {
        images: c.present.len(),
        processes: tree.len(),
        problems: c.problems,
    }
}

/// Open `dir` and check it; a directory that is not an image set at all is one problem.
pub fn check_dir(dir: impl AsRef<std::path::Path>) -> Report {
    match ImageSet::open(dir.as_ref()) {
        Ok(set) => check_set(&set),
        Err(e) => Report {
            problems: vec![Problem {
                file: ".".into(),
                entry: None,
                what: e.to_string(),
            }],
            ..Report::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncovered() {
        let v = [(0x1000, 0x3000), (0x3000, 0x4000), (0x6000, 0x7000)];
        assert_eq!(first_uncovered(&v, 0x1000, 0x4000), None);
        assert_eq!(first_uncovered(&v, 0x2000, 0x5000), Some(0x4000));
        assert_eq!(first_uncovered(&v, 0x0, 0x1000), Some(0x0));
        assert_eq!(first_uncovered(&v, 0x6000, 0x7000), None);
        assert_eq!(first_uncovered(&v, 0x7000, 0x8000), Some(0x7000));
    }

    #[test]
    fn fixtures_are_consistent() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/criu-4.2");
        let mut n = 0;
        for set in fs::read_dir(root).unwrap() {
            let dir = set.unwrap().path().join("images");
            let r = check_dir(&dir);
            assert!(r.is_ok(), "{}:\n{r}", dir.display());
            assert!(r.processes > 0);
            n += 1;
        }
        assert!(n >= 10);
    }

    #[test]
    fn restore_demands_thread_order_and_pid_range() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/criu-4.2/threads4/images");
        let dir = std::env::temp_dir().join(format!("cryo-check-opts-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for e in fs::read_dir(&src).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
        let strict = CheckOpts {
            pid_max: Some(1 << 22),
            leader_first: true,
        };
        let set = ImageSet::open(&dir).unwrap();
        assert!(check_set_with(&set, strict).is_ok());
        let mut tree: Vec<pb::PstreeEntry> = crate::writer::read_entries(dir.join("pstree.img"), "PSTREE").unwrap();
        let p = &mut tree[0];
        assert!(p.threads.len() > 1 && p.threads[0] == p.pid);
        p.threads.rotate_left(1);
        let pid = p.pid;
        crate::writer::write_entries(dir.join("pstree.img"), "PSTREE", &tree).unwrap();
        let set = ImageSet::open(&dir).unwrap();
        assert!(check_set(&set).is_ok(), "{}", check_set(&set));
        let r = check_set_with(&set, strict);
        assert!(
            r.problems.iter().any(|p| p.what.contains("is not the process leader")),
            "{r}"
        );
        let r = check_set_with(
            &set,
            CheckOpts {
                pid_max: Some(pid),
                leader_first: false,
            },
        );
        let want = format!("pid {pid}: id {pid} is outside 1..{pid}");
        assert!(r.problems.iter().any(|p| p.what == want), "{r}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn not_a_set() {
        let r = check_dir("/nonexistent/cryo-check");
        assert_eq!(r.problems.len(), 1);
        assert!(r.problems[0].what.contains("not a directory"), "{r}");
    }
}
