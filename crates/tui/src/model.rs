//! What the TUI shows, built from an [`ImageSet`]: the process tree up front (pstree + one core image per
//! process), everything else per process on first selection, and memory only as the screen asks for it.
//!
//! Bad images never panic: each load error becomes text that the tab in question shows.
//! (A stand-in for crit's explorer functions; it can be swapped for them once they land.)

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use cryo_image::pretty::{dict_name, hex, map_flags};
use cryo_image::{json, pb, pyjson, ImageError, ImageSet, Pagemap, PAGE_SIZE, PE_PARENT};
use prost::Message;
use prost_reflect::DynamicMessage;

/// One process of the tree.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub threads: Vec<u32>,
    pub comm: String,
    /// "A" alive, "Z" zombie, "T" stopped, "?" unknown (core image unreadable).
    pub state: &'static str,
    /// Depth in the tree (0 for roots).
    pub depth: usize,
    /// Index of the entry in pstree.img.
    pub pstree_index: usize,
}

/// One mapping with what the dump holds of it.
#[derive(Debug, Clone)]
pub struct Vma {
    pub index: usize,
    pub start: u64,
    pub end: u64,
    /// `r-xp` style.
    pub prot: String,
    /// heap, stack, vdso, anon, file, shm ...
    pub kind: &'static str,
    /// Full flag names (mmap flags and CRIU status), for the wide view and help.
    pub flags: String,
    pub pgoff: u64,
    pub file: String,
    pub pages: u64,
    pub dumped: u64,
    /// Per-slice coverage for the bar: fraction of dumped pages in each of `BAR` slices.
    pub bar: [f32; BAR],
}

/// Cells of the page-coverage bar.
pub const BAR: usize = 8;

/// One open file descriptor (plus cwd/root/exe pseudo rows).
#[derive(Debug, Clone)]
pub struct Fd {
    /// "0", "1", ... or "cwd", "root", "exe".
    pub fd: String,
    pub kind: String,
    pub what: String,
    pub flags: String,
    pub pos: String,
    pub file_id: Option<u32>,
    /// Index of the fdinfo entry (for Raw).
    pub fdinfo_index: Option<usize>,
}

/// A socket held by the process.
#[derive(Debug, Clone)]
pub struct Sock {
    pub fd: u32,
    pub family: String,
    pub ty: String,
    pub state: String,
    pub local: String,
    pub peer: String,
    pub queued: u64,
    pub file_id: u32,
    pub fdinfo_index: usize,
}

/// One thread's core image.
#[derive(Debug, Clone)]
pub struct Thread {
    pub tid: u32,
    pub core: Option<pb::CoreEntry>,
    pub error: Option<String>,
}

/// Everything of one process but its memory.
#[derive(Debug, Default)]
pub struct ProcDetail {
    pub pid: u32,
    pub mm: Option<pb::MmEntry>,
    pub pagemap: Option<Arc<Pagemap>>,
    pub vmas: Vec<Vma>,
    pub fds: Vec<Fd>,
    pub socks: Vec<Sock>,
    pub threads: Vec<Thread>,
    pub files_id: Option<u32>,
    /// Shared mappings whose pages are in a shmem pagemap: (index of the vma, its backing).
    pub shm: Vec<(usize, Arc<Shm>)>,
    /// Load errors, as `file: what`.
    pub errors: Vec<String>,
}

/// The pages of a shared memory object (shared anonymous, SysV shm, memfd): `pagemap-shmem-ID.img`, whose
/// run addresses are offsets in the object, and the pages file it names.
#[derive(Debug)]
pub struct Shm {
    pub shmid: u64,
    pub pagemap: Pagemap,
    pub pages: std::path::PathBuf,
}

impl Shm {
    /// Whether the page at offset `off` of the object is in the dump.
    pub fn dumped(&self, off: u64) -> bool {
        self.pagemap.find(off).is_some_and(|r| r.offset.is_some())
    }

    /// Fill `buf` from offset `off` of the object; pages not in the dump are left as they are.
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), String> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f: Option<std::fs::File> = None;
        let end = off.saturating_add(buf.len() as u64);
        let mut o = off;
        while o < end {
            let page_end = ((o / PAGE_SIZE + 1).saturating_mul(PAGE_SIZE)).min(end).max(o + 1);
            match self.pagemap.find(o) {
                Some(r) if r.offset.is_some() => {
                    let run_end = r.end().min(end);
                    let file = match &mut f {
                        Some(f) => f,
                        None => f.insert(
                            std::fs::File::open(&self.pages).map_err(|e| format!("{}: {e}", self.pages.display()))?,
                        ),
                    };
                    let dst = &mut buf[(o - off) as usize..(run_end - off) as usize];
                    file.seek(SeekFrom::Start(r.offset.unwrap_or(0) + (o - r.vaddr)))
                        .and_then(|_| file.read_exact(dst))
                        .map_err(|e| format!("{}: {e}", self.pages.display()))?;
                    o = run_end;
                }
                _ => o = page_end,
            }
        }
        Ok(())
    }
}

impl ProcDetail {
    /// The mapping holding `addr`.
    pub fn vma_at(&self, addr: u64) -> Option<usize> {
        self.vmas.iter().position(|v| v.start <= addr && addr < v.end)
    }

    /// The shared-memory backing of the mapping holding `addr`: (vma, backing).
    pub fn shm_at(&self, addr: u64) -> Option<(&Vma, &Shm)> {
        let i = self.vma_at(addr)?;
        let shm = self.shm.iter().find(|(j, _)| *j == i)?;
        Some((&self.vmas[i], &shm.1))
    }

    /// Whether the page of `addr` is in the dump (here, in a parent set, or in a shmem pagemap).
    pub fn dumped(&self, addr: u64) -> bool {
        if let Some((v, shm)) = self.shm_at(addr) {
            return shm.dumped((addr - v.start).saturating_add(v.pgoff));
        }
        self.pagemap
            .as_ref()
            .and_then(|p| p.find(addr))
            .is_some_and(|r| r.offset.is_some() || r.flags & PE_PARENT != 0)
    }

    /// Address ranges of dumped pages, adjacent runs merged, in address order.
    pub fn dumped_ranges(&self) -> Vec<(u64, u64)> {
        let mut all: Vec<(u64, u64)> = Vec::new();
        if let Some(pm) = &self.pagemap {
            all.extend(
                pm.runs
                    .iter()
                    .filter(|r| r.offset.is_some() || r.flags & PE_PARENT != 0)
                    .map(|r| (r.vaddr, r.end())),
            );
        }
        for (i, shm) in &self.shm {
            let v = &self.vmas[*i];
            let (lo, hi) = (v.pgoff, v.pgoff.saturating_add(v.end - v.start));
            for r in shm.pagemap.runs.iter().filter(|r| r.offset.is_some()) {
                let (a, b) = (r.vaddr.max(lo), r.end().min(hi));
                if a < b {
                    all.push((a - lo + v.start, b - lo + v.start));
                }
            }
        }
        all.sort();
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (a, b) in all {
            match out.last_mut() {
                Some(last) if last.1 >= a => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        out
    }
}

/// What the Raw tab shows: the image entry behind a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawTarget {
    Pstree {
        pid: u32,
    },
    Core {
        tid: u32,
    },
    Vma {
        pid: u32,
        index: usize,
    },
    Mm {
        pid: u32,
    },
    File {
        files_id: u32,
        fdinfo_index: Option<usize>,
        file_id: Option<u32>,
    },
    PageRun {
        pid: u32,
        addr: u64,
    },
}

/// An opened dump.
pub struct Dump {
    set: ImageSet,
    /// The directory as given (shown in the header).
    pub dir: String,
    pub procs: Vec<Proc>,
    /// Problems found while loading the tree.
    pub errors: Vec<String>,
    pub img_version: u32,
    files: OnceCell<Result<HashMap<u32, pb::FileEntry>, String>>,
    /// memfd inode id → (name, shmid), from memfd.img.
    memfds: OnceCell<HashMap<u64, (String, u64)>>,
    remaps: OnceCell<HashMap<u32, String>>,
    shms: RefCell<HashMap<u64, Result<Arc<Shm>, String>>>,
    details: RefCell<HashMap<u32, Rc<ProcDetail>>>,
    container: OnceCell<Vec<String>>,
}

fn state_letter(s: u32) -> &'static str {
    match s {
        // CRIU's task states (compel): 1 alive, 2 dead (zombie), 3 stopped.
        1 => "A",
        2 => "Z",
        3 => "T",
        _ => "?",
    }
}

impl Dump {
    /// The set-wide container text (tabs::container), built on first use.
    pub fn container_lines(&self) -> &[String] {
        self.container.get_or_init(|| crate::tabs::container::lines(&self.set))
    }

    /// Open a dump: reads inventory, pstree and every process's core image (for comm and state).
    pub fn open(dir: impl AsRef<Path>) -> Result<Dump, ImageError> {
        let set = ImageSet::open(dir.as_ref())?;
        let inv = set.inventory()?;
        let entries = set.pstree()?;
        let mut errors = Vec::new();
        // Depth-first order of the tree, children in pstree order.
        let pids: std::collections::HashSet<u32> = entries.iter().map(|e| e.pid).collect();
        let mut children: HashMap<u32, Vec<usize>> = HashMap::new();
        let mut roots = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if e.ppid != 0 && pids.contains(&e.ppid) && e.ppid != e.pid {
                children.entry(e.ppid).or_default().push(i);
            } else {
                roots.push(i);
            }
        }
        let mut order: Vec<(usize, usize)> = Vec::new();
        let mut seen = vec![false; entries.len()];
        let mut stack: Vec<(usize, usize)> = roots.iter().rev().map(|&i| (i, 0)).collect();
        while let Some((i, d)) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            order.push((i, d));
            if let Some(c) = children.get(&entries[i].pid) {
                stack.extend(c.iter().rev().map(|&j| (j, d + 1)));
            }
        }
        // A cycle in ppid links leaves entries unreached: show them as roots.
        for (i, s) in seen.iter().enumerate() {
            if !s {
                errors.push(format!("pstree.img: pid {} is in a ppid cycle", entries[i].pid));
                order.push((i, 0));
            }
        }
        let mut procs = Vec::with_capacity(order.len());
        for (i, depth) in order {
            let e = &entries[i];
            let (comm, state) = match set.core(e.pid) {
                Ok(c) => match c.tc {
                    Some(tc) => (tc.comm, state_letter(tc.task_state)),
                    None => {
                        errors.push(format!("core-{}.img: no task core (tc)", e.pid));
                        ("?".into(), "?")
                    }
                },
                Err(err) => {
                    errors.push(err.to_string());
                    ("?".into(), "?")
                }
            };
            procs.push(Proc {
                pid: e.pid,
                ppid: e.ppid,
                pgid: e.pgid,
                sid: e.sid,
                threads: if e.threads.is_empty() {
                    vec![e.pid]
                } else {
                    e.threads.clone()
                },
                comm,
                state,
                depth,
                pstree_index: i,
            });
        }
        Ok(Dump {
            set,
            dir: dir.as_ref().display().to_string(),
            procs,
            errors,
            img_version: inv.img_version,
            files: OnceCell::new(),
            memfds: OnceCell::new(),
            remaps: OnceCell::new(),
            shms: RefCell::new(HashMap::new()),
            details: RefCell::new(HashMap::new()),
            container: OnceCell::new(),
        })
    }

    /// The image set.
    pub fn set(&self) -> &ImageSet {
        &self.set
    }

    fn files(&self) -> Result<&HashMap<u32, pb::FileEntry>, String> {
        self.files
            .get_or_init(|| {
                self.set
                    .files()
                    .map(|v| v.into_iter().map(|f| (f.id, f)).collect())
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Everything of a process but its memory (loaded once, then cached).
    pub fn detail(&self, pid: u32) -> Rc<ProcDetail> {
        if let Some(d) = self.details.borrow().get(&pid) {
            return d.clone();
        }
        let d = Rc::new(self.load_detail(pid));
        self.details.borrow_mut().insert(pid, d.clone());
        d
    }

    fn load_detail(&self, pid: u32) -> ProcDetail {
        let mut d = ProcDetail {
            pid,
            ..Default::default()
        };
        let threads = self
            .procs
            .iter()
            .find(|p| p.pid == pid)
            .map(|p| p.threads.clone())
            .unwrap_or_else(|| vec![pid]);
        for tid in threads {
            match self.set.core(tid) {
                Ok(c) => d.threads.push(Thread {
                    tid,
                    core: Some(c),
                    error: None,
                }),
                Err(e) => {
                    d.errors.push(e.to_string());
                    d.threads.push(Thread {
                        tid,
                        core: None,
                        error: Some(e.to_string()),
                    })
                }
            }
        }
        let files = match self.files() {
            Ok(f) => Some(f),
            Err(e) => {
                d.errors.push(e);
                None
            }
        };
        match self.set.mm(pid) {
            Ok(mm) => d.mm = Some(mm),
            Err(e) => d.errors.push(e.to_string()),
        }
        if self.set.has(&format!("pagemap-{pid}.img")) {
            match self.set.pagemap(pid) {
                Ok(p) => d.pagemap = Some(p),
                Err(e) => d.errors.push(e.to_string()),
            }
        }
        if let Some(mm) = &d.mm {
            for (i, v) in mm.vmas.iter().enumerate() {
                let shm = match self.shm_of(v, files) {
                    Some(Ok(shm)) => Some(shm),
                    Some(Err(e)) => {
                        d.errors.push(e);
                        None
                    }
                    None => None,
                };
                d.vmas.push(make_vma(
                    i,
                    v,
                    d.pagemap.as_deref(),
                    files,
                    self.memfds(),
                    shm.as_deref(),
                ));
                if let Some(shm) = shm {
                    d.shm.push((i, shm));
                }
            }
        }
        match self.set.ids(pid) {
            Ok(ids) => {
                d.files_id = Some(ids.files_id);
                self.load_fds(&mut d, ids.files_id, files);
            }
            Err(e) => d.errors.push(e.to_string()),
        }
        d
    }

    fn load_fds(&self, d: &mut ProcDetail, files_id: u32, files: Option<&HashMap<u32, pb::FileEntry>>) {
        let get = |id: u32| files.and_then(|f| f.get(&id));
        let reg_name = |id: u32| match get(id) {
            Some(f) => f
                .reg
                .as_ref()
                .map(|r| r.name.clone())
                .unwrap_or_else(|| format!("file id {id}")),
            None => format!("file id {id} (not in files.img)"),
        };
        if let Ok(fs) = self.set.fs(d.pid) {
            for (name, id) in [("cwd", fs.cwd_id), ("root", fs.root_id)] {
                d.fds.push(Fd {
                    fd: name.into(),
                    kind: "DIR".into(),
                    what: reg_name(id),
                    flags: String::new(),
                    pos: String::new(),
                    file_id: Some(id),
                    fdinfo_index: None,
                });
            }
        }
        if let Some(mm) = &d.mm {
            if mm.exe_file_id != 0 {
                d.fds.push(Fd {
                    fd: "exe".into(),
                    kind: "REG".into(),
                    what: reg_name(mm.exe_file_id),
                    flags: String::new(),
                    pos: String::new(),
                    file_id: Some(mm.exe_file_id),
                    fdinfo_index: None,
                });
            }
        }
        let fdinfo = match self.set.fdinfo(files_id) {
            Ok(v) => v,
            Err(e) => {
                d.errors.push(e.to_string());
                return;
            }
        };
        let queues = self.sk_queues();
        let pipes = self.pipe_bytes();
        for (i, fi) in fdinfo.iter().enumerate() {
            let ty = pb::FdTypes::try_from(fi.r#type)
                .map(|t| t.as_str_name().to_string())
                .unwrap_or_else(|_| format!("type {}", fi.r#type));
            let fdflags = if fi.flags & 1 != 0 { "cloexec" } else { "" };
            let mut row = Fd {
                fd: fi.fd.to_string(),
                kind: ty.clone(),
                what: String::new(),
                flags: fdflags.into(),
                pos: String::new(),
                file_id: Some(fi.id),
                fdinfo_index: Some(i),
            };
            match get(fi.id) {
                None => row.what = format!("id {} not in files.img", fi.id),
                Some(f) => {
                    let (mut what, flags, pos) = describe_file(f, files, &pipes);
                    if let Some(note) = self.remaps().get(&f.id) {
                        what.push_str(note);
                    }
                    row.what = what;
                    if !flags.is_empty() {
                        row.flags = if row.flags.is_empty() {
                            flags
                        } else {
                            format!("{flags} {}", row.flags)
                        };
                    }
                    row.pos = pos;
                    if let Some(s) = describe_socket(fi.fd, i, f, files, &queues, &self.set) {
                        d.socks.push(s);
                    }
                }
            }
            d.fds.push(row);
        }
        // A unix peer held by this same process is named by its fd.
        let by_ino: HashMap<u32, u32> = fdinfo
            .iter()
            .filter_map(|fi| get(fi.id).and_then(|f| f.usk.as_ref()).map(|u| (u.ino, fi.fd)))
            .collect();
        for s in d.socks.iter_mut().filter(|s| s.family == "UNIX") {
            if let Some(ino) = s.peer.strip_prefix("ino ").and_then(|i| i.parse::<u32>().ok()) {
                if let Some(fd) = by_ino.get(&ino) {
                    s.peer = format!("fd {fd}");
                }
            }
        }
    }

    fn memfds(&self) -> &HashMap<u64, (String, u64)> {
        self.memfds.get_or_init(|| {
            if !self.set.has("memfd.img") {
                return HashMap::new();
            }
            self.set
                .entries::<pb::MemfdInodeEntry>("memfd.img", "MEMFD_INODE")
                .map(|v| v.into_iter().map(|m| (m.inode_id, (m.name, m.shmid as u64))).collect())
                .unwrap_or_default()
        })
    }

    /// The shmem pagemap behind a shared mapping, if it has one in the dump.
    fn shm_of(
        &self,
        v: &pb::VmaEntry,
        files: Option<&HashMap<u32, pb::FileEntry>>,
    ) -> Option<Result<Arc<Shm>, String>> {
        const ANON_SHARED: u32 = 1 << 8;
        const MEMFD: u32 = 1 << 14;
        let shmid = if v.status & MEMFD != 0 {
            let inode = files?.get(&(v.shmid as u32))?.memfd.as_ref()?.inode_id as u64;
            self.memfds().get(&inode)?.1
        } else if v.status & ANON_SHARED != 0 {
            v.shmid
        } else {
            return None;
        };
        let name = format!("pagemap-shmem-{shmid}.img");
        if !self.set.has(&name) {
            return None;
        }
        if let Some(r) = self.shms.borrow().get(&shmid) {
            return Some(r.clone());
        }
        let r = self.load_shm(shmid, &name).map(Arc::new).map_err(|e| e.to_string());
        self.shms.borrow_mut().insert(shmid, r.clone());
        Some(r)
    }

    fn load_shm(&self, shmid: u64, name: &str) -> Result<Shm, ImageError> {
        let pagemap = self.set.pagemap_file(name)?;
        let pages = self.set.path(&format!("pages-{}.img", pagemap.pages_id));
        Ok(Shm { shmid, pagemap, pages })
    }

    /// Files that were deleted or otherwise unreachable at dump time (remap-fpath.img): file id → note.
    fn remaps(&self) -> &HashMap<u32, String> {
        self.remaps.get_or_init(|| {
            if !self.set.has("remap-fpath.img") {
                return HashMap::new();
            }
            let Ok(v) = self
                .set
                .entries::<pb::RemapFilePathEntry>("remap-fpath.img", "REMAP_FPATH")
            else {
                return HashMap::new();
            };
            v.into_iter()
                .map(|r| {
                    let note = match pb::RemapType::try_from(r.remap_type.unwrap_or(0)) {
                        Ok(pb::RemapType::Ghost) => format!(" (deleted; contents in ghost-file-{}.img)", r.remap_id),
                        Ok(pb::RemapType::Linked) => format!(" (deleted; linked as file id {})", r.remap_id),
                        Ok(pb::RemapType::Procfs) => " (procfs)".to_string(),
                        Err(_) => " (remapped)".to_string(),
                    };
                    (r.orig_id, note)
                })
                .collect()
        })
    }

    /// Bytes queued per socket id (sk-queues.img).
    fn sk_queues(&self) -> HashMap<u32, u64> {
        let mut m = HashMap::new();
        if !self.set.has("sk-queues.img") {
            return m;
        }
        if let Ok(img) = self.set.image("sk-queues.img") {
            for e in img.entries {
                if let Ok(p) = pb::SkPacketEntry::decode(e.msg.encode_to_vec().as_slice()) {
                    *m.entry(p.id_for).or_default() += p.length as u64;
                }
            }
        }
        m
    }

    /// Bytes queued per pipe id (pipes-data.img).
    fn pipe_bytes(&self) -> HashMap<u32, u64> {
        let mut m = HashMap::new();
        if let Ok(v) = self.set.pipes_data() {
            for (e, data) in v {
                *m.entry(e.pipe_id).or_default() += data.len() as u64;
            }
        }
        m
    }

    /// Read memory of `pid` at `addr` into `buf`; bytes of pages not in the dump are left as they are
    /// (`ProcDetail::dumped` tells which). Small windows only: this is synchronous.
    pub fn read(&self, det: &ProcDetail, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        let end = addr.saturating_add(buf.len() as u64);
        let mut a = addr;
        while a < end {
            // Shared mappings read from their shmem pages; everything else from the process's pagemap, up
            // to the next shared mapping.
            if let Some((v, shm)) = det.shm_at(a) {
                let e = v.end.min(end);
                shm.read(
                    (a - v.start).saturating_add(v.pgoff),
                    &mut buf[(a - addr) as usize..(e - addr) as usize],
                )?;
                a = e;
                continue;
            }
            let e = det
                .shm
                .iter()
                .map(|(i, _)| det.vmas[*i].start)
                .filter(|&s| s > a)
                .min()
                .unwrap_or(end)
                .min(end);
            self.set
                .read_memory_into(det.pid, a, &mut buf[(a - addr) as usize..(e - addr) as usize])
                .map_err(|e| e.to_string())?;
            a = e;
        }
        Ok(())
    }

    /// The crit JSON (pretty, as `crit show`) of the entry behind a target, as a titled text.
    pub fn raw(&self, t: &RawTarget) -> (String, String) {
        match self.raw_inner(t) {
            Ok(x) => x,
            Err(e) => ("error".into(), e),
        }
    }

    fn entry_json(
        &self,
        image: &str,
        pick: impl Fn(&DynamicMessage) -> bool,
    ) -> Result<(usize, serde_json::Value), String> {
        let img = self.set.image(image).map_err(|e| e.to_string())?;
        let skip = usize::from(img.magic.name == "PAGEMAP");
        for (i, e) in img.entries.iter().enumerate().skip(skip) {
            if pick(&e.msg) {
                return Ok((i, serde_json::Value::Object(json::message_to_json(&e.msg, true, false))));
            }
        }
        Err(format!("{image}: no such entry"))
    }

    fn raw_inner(&self, t: &RawTarget) -> Result<(String, String), String> {
        use cryo_image::codec::get_u64;
        let text = |v: &serde_json::Value| pyjson::to_string(v, Some(4));
        Ok(match t {
            RawTarget::Pstree { pid } => {
                let (i, v) = self.entry_json("pstree.img", |m| get_u64(m, "pid") == *pid as u64)?;
                (format!("pstree.img entry {i}"), text(&v))
            }
            RawTarget::Core { tid } => {
                let name = format!("core-{tid}.img");
                let (i, v) = self.entry_json(&name, |_| true)?;
                (format!("{name} entry {i}"), text(&v))
            }
            RawTarget::Mm { pid } => {
                let name = format!("mm-{pid}.img");
                let (_, v) = self.entry_json(&name, |_| true)?;
                (format!("{name} entry 0"), text(&v))
            }
            RawTarget::Vma { pid, index } => {
                let name = format!("mm-{pid}.img");
                let (_, v) = self.entry_json(&name, |_| true)?;
                let vma = v
                    .get("vmas")
                    .and_then(|a| a.get(*index))
                    .ok_or_else(|| format!("{name}: no vma {index}"))?;
                (format!("{name} entry 0 › vmas[{index}]"), text(vma))
            }
            RawTarget::PageRun { pid, addr } => {
                let name = format!("pagemap-{pid}.img");
                let pm = self.set.pagemap(*pid).map_err(|e| e.to_string())?;
                let run = pm
                    .find(*addr)
                    .ok_or_else(|| format!("{name}: {addr:#x} is in no page run"))?;
                let (i, v) = self.entry_json(&name, |m| get_u64(m, "vaddr") == run.vaddr)?;
                (format!("{name} entry {i}"), text(&v))
            }
            RawTarget::File {
                files_id,
                fdinfo_index,
                file_id,
            } => {
                let mut out = String::new();
                let mut title = Vec::new();
                if let Some(fi) = fdinfo_index {
                    let name = format!("fdinfo-{files_id}.img");
                    let img = self.set.image(&name).map_err(|e| e.to_string())?;
                    let e = img.entries.get(*fi).ok_or_else(|| format!("{name}: no entry {fi}"))?;
                    let v = serde_json::Value::Object(json::message_to_json(&e.msg, true, false));
                    out.push_str(&format!("# {name} entry {fi}\n{}\n", text(&v)));
                    title.push(format!("{name} entry {fi}"));
                }
                if let Some(id) = file_id {
                    let (i, v) = self.entry_json("files.img", |m| get_u64(m, "id") == *id as u64)?;
                    out.push_str(&format!("# files.img entry {i}\n{}", text(&v)));
                    title.push(format!("files.img entry {i}"));
                }
                (title.join(" + "), out)
            }
        })
    }
}

fn make_vma(
    index: usize,
    v: &pb::VmaEntry,
    pm: Option<&Pagemap>,
    files: Option<&HashMap<u32, pb::FileEntry>>,
    memfds: &HashMap<u64, (String, u64)>,
    shm: Option<&Shm>,
) -> Vma {
    const MAP_SHARED: u32 = 0x1;
    const MAP_ANON: u32 = 0x20;
    const MAP_GROWSDOWN: u32 = 0x100;
    let st = v.status;
    // A corrupt entry may end before it starts: show it as empty rather than wrap around.
    let end = v.end.max(v.start);
    let mut prot = String::with_capacity(4);
    prot.push(if v.prot & 1 != 0 { 'r' } else { '-' });
    prot.push(if v.prot & 2 != 0 { 'w' } else { '-' });
    prot.push(if v.prot & 4 != 0 { 'x' } else { '-' });
    prot.push(if v.flags & MAP_SHARED != 0 { 's' } else { 'p' });
    let kind = if st & (1 << 5) != 0 {
        "heap"
    } else if st & (1 << 1) != 0 || v.flags & MAP_GROWSDOWN != 0 {
        "stack"
    } else if st & (1 << 3) != 0 {
        "vdso"
    } else if st & (1 << 12) != 0 {
        "vvar"
    } else if st & (1 << 2) != 0 {
        "vsyscall"
    } else if st & (1 << 10) != 0 {
        "sysvipc"
    } else if st & (1 << 14) != 0 {
        "memfd"
    } else if st & (1 << 13) != 0 {
        "aio"
    } else if st & (1 << 11) != 0 {
        "socket"
    } else if st & (1 << 8) != 0 {
        "shm"
    } else if st & ((1 << 6) | (1 << 7)) != 0 {
        "file"
    } else if v.flags & MAP_ANON != 0 {
        "anon"
    } else {
        "?"
    };
    let flags = [
        map_flags(
            v.flags as u64,
            cryo_image::pretty::flags_map("mmap.flags").unwrap_or(&[]),
        ),
        map_flags(st as u64, cryo_image::pretty::flags_map("mmap.status").unwrap_or(&[])),
    ]
    .join(" | ");
    let file = if st & ((1 << 6) | (1 << 7) | (1 << 14)) != 0 {
        let id = v.shmid as u32;
        match files.and_then(|f| f.get(&id)) {
            Some(f) => match (&f.reg, &f.memfd) {
                (Some(r), _) => r.name.clone(),
                (_, Some(m)) => match memfds.get(&(m.inode_id as u64)) {
                    Some((name, _)) => format!("memfd:{name}"),
                    None => format!("memfd inode {}", m.inode_id),
                },
                _ => format!("file id {id}"),
            },
            None => format!("file id {id}"),
        }
    } else if st & (1 << 8) != 0 {
        format!("shmem {}", v.shmid)
    } else if st & (1 << 10) != 0 {
        format!("sysv shm {}", v.shmid)
    } else {
        match kind {
            "heap" => "[heap]".into(),
            "stack" => "[stack]".into(),
            "vdso" => "[vdso]".into(),
            "vvar" => "[vvar]".into(),
            "vsyscall" => "[vsyscall]".into(),
            _ => String::new(),
        }
    };
    let pages = (end - v.start) / PAGE_SIZE;
    let mut dumped = 0;
    let mut bar = [0f32; BAR];
    // The pagemap holding the mapping's pages, and the pagemap address of its first byte: the process's
    // own at `start`, or a shmem object's at `pgoff`.
    let (pm, base) = match shm {
        Some(s) => (Some(&s.pagemap), v.pgoff),
        None => (pm, v.start),
    };
    let len = end - v.start;
    if let (Some(pm), true) = (pm, pages > 0) {
        let i0 = pm.runs.partition_point(|r| r.end() <= base);
        let mut counts = [0u64; BAR];
        for r in pm.runs[i0..].iter().take_while(|r| r.vaddr < base.saturating_add(len)) {
            if r.offset.is_none() && r.flags & PE_PARENT == 0 {
                continue;
            }
            // Offsets in the mapping.
            let a = r.vaddr.max(base) - base;
            let b = r.end().min(base.saturating_add(len)) - base;
            if a >= b {
                continue;
            }
            dumped += (b - a) / PAGE_SIZE;
            // Spread the pages of [a, b) over the bar's slices.
            let mut p = a / PAGE_SIZE;
            let pe = b / PAGE_SIZE;
            while p < pe {
                let slice = (p * BAR as u64 / pages) as usize;
                let slice_end = ((slice as u64 + 1) * pages).div_ceil(BAR as u64);
                let n = slice_end.min(pe) - p;
                counts[slice] += n;
                p += n;
            }
        }
        for (s, c) in counts.iter().enumerate() {
            let lo = (s as u64 * pages).div_ceil(BAR as u64);
            let hi = ((s as u64 + 1) * pages).div_ceil(BAR as u64);
            let n = hi.saturating_sub(lo);
            bar[s] = if n == 0 { -1.0 } else { *c as f32 / n as f32 };
        }
    }
    Vma {
        index,
        start: v.start,
        end,
        prot,
        kind,
        flags,
        pgoff: v.pgoff,
        file,
        pages,
        dumped,
        bar,
    }
}

fn oflags(f: u32) -> String {
    let acc = match f & 3 {
        0 => "r",
        1 => "w",
        _ => "rw",
    };
    let mut s = acc.to_string();
    if f & 0o2000 != 0 {
        s.push_str(" append");
    }
    if f & 0o4000 != 0 {
        s.push_str(" nonblock");
    }
    s
}

fn ip(words: &[u32]) -> String {
    match words.len() {
        0 => "*".into(),
        1 => std::net::Ipv4Addr::from(u32::from_be(words[0])).to_string(),
        _ => {
            let mut b = [0u8; 16];
            for (i, w) in words.iter().take(4).enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            std::net::Ipv6Addr::from(b).to_string()
        }
    }
}

fn unix_name(n: &[u8]) -> String {
    if n.is_empty() {
        String::new()
    } else if n[0] == 0 {
        format!("@{}", String::from_utf8_lossy(&n[1..]))
    } else {
        String::from_utf8_lossy(n).into_owned()
    }
}

fn sig_name(n: u64) -> String {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE", "ALRM",
        "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF",
        "WINCH", "IO", "PWR", "SYS",
    ];
    match n {
        1..=31 => NAMES[n as usize - 1].to_string(),
        _ => format!("RT{}", n.saturating_sub(34)),
    }
}

/// Signal names of a mask (bit n-1 = signal n).
pub fn sigset(mask: u64) -> String {
    if mask == 0 {
        return "none".into();
    }
    (1..=64u64)
        .filter(|s| mask & (1 << (s - 1)) != 0)
        .map(sig_name)
        .collect::<Vec<_>>()
        .join(",")
}

/// The name of signal `n` (SIGUSR1 → "USR1").
pub fn signal_name(n: u64) -> String {
    sig_name(n)
}

/// (what, flags, position) of a file entry for the Files tab.
fn describe_file(
    f: &pb::FileEntry,
    files: Option<&HashMap<u32, pb::FileEntry>>,
    pipes: &HashMap<u32, u64>,
) -> (String, String, String) {
    let queued = |id: u32| match pipes.get(&id) {
        Some(n) if *n > 0 => format!(" ({n} B queued)"),
        _ => String::new(),
    };
    if let Some(r) = &f.reg {
        return (r.name.clone(), oflags(r.flags), r.pos.to_string());
    }
    if let Some(p) = &f.pipe {
        return (
            format!("pipe:[{}]{}", p.pipe_id, queued(p.pipe_id)),
            oflags(p.flags),
            String::new(),
        );
    }
    if let Some(p) = &f.fifo {
        let name = p
            .regf_id
            .and_then(|id| files.and_then(|f| f.get(&id)))
            .and_then(|f| f.reg.as_ref())
            .map(|r| r.name.clone())
            .unwrap_or_default();
        return (
            format!("fifo {name} [{}]{}", p.pipe_id, queued(p.pipe_id)),
            String::new(),
            String::new(),
        );
    }
    if let Some(s) = &f.usk {
        let ty = dict_name("sk", "type", s.r#type as i128).unwrap_or("?");
        let name = unix_name(&s.name);
        let peer = if s.peer != 0 {
            format!(" → ino {}", s.peer)
        } else {
            String::new()
        };
        return (
            format!("unix {ty} {name}{peer}").replace("  ", " "),
            hex(s.flags as i128),
            String::new(),
        );
    }
    if let Some(s) = &f.isk {
        let ty = dict_name("sk", "proto", s.proto as i128).unwrap_or("?");
        return (
            format!(
                "{ty} {}:{} → {}:{}",
                ip(&s.src_addr),
                s.src_port,
                ip(&s.dst_addr),
                s.dst_port
            ),
            hex(s.flags as i128),
            String::new(),
        );
    }
    if let Some(e) = &f.efd {
        return (format!("eventfd counter={}", e.counter), oflags(e.flags), String::new());
    }
    if let Some(e) = &f.epfd {
        let t: Vec<String> = e.tfd.iter().map(|t| t.tfd.to_string()).collect();
        return (format!("epoll on fds {}", t.join(",")), oflags(e.flags), String::new());
    }
    if let Some(e) = &f.sgfd {
        return (
            format!("signalfd {}", sigset(e.sigmask)),
            oflags(e.flags),
            String::new(),
        );
    }
    if let Some(e) = &f.tfd {
        return (
            format!("timerfd clock {} every {}.{:09}s", e.clockid, e.isec, e.insec),
            oflags(e.flags),
            String::new(),
        );
    }
    if let Some(e) = &f.ify {
        let w: Vec<String> =
            e.wd.iter()
                .map(|w| w.f_handle.path.clone().unwrap_or_else(|| format!("ino {}", w.i_ino)))
                .collect();
        return (format!("inotify {}", w.join(",")), oflags(e.flags), String::new());
    }
    if let Some(m) = &f.memfd {
        return (
            format!("memfd inode {}", m.inode_id),
            oflags(m.flags),
            m.pos.to_string(),
        );
    }
    if let Some(n) = &f.nsf {
        return (
            format!("ns {} id {}", n.ns_cflag, n.ns_id),
            oflags(n.flags),
            String::new(),
        );
    }
    if let Some(t) = &f.tty {
        return (format!("tty index {}", t.tty_info_id), oflags(t.flags), String::new());
    }
    if let Some(s) = &f.nlsk {
        return (
            format!("netlink proto {} port {}", s.protocol, s.portid),
            hex(s.flags as i128),
            String::new(),
        );
    }
    if let Some(s) = &f.psk {
        return (
            format!("packet proto {} if {}", s.protocol, s.ifindex),
            hex(s.flags as i128),
            String::new(),
        );
    }
    (format!("file id {}", f.id), String::new(), String::new())
}

fn describe_socket(
    fd: u32,
    fdinfo_index: usize,
    f: &pb::FileEntry,
    files: Option<&HashMap<u32, pb::FileEntry>>,
    queues: &HashMap<u32, u64>,
    set: &ImageSet,
) -> Option<Sock> {
    let q = |id: u32| queues.get(&id).copied().unwrap_or(0);
    let name = |v: u32, field| {
        dict_name("sk", field, v as i128)
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    if let Some(s) = &f.usk {
        // The peer's name, when the peer is in the dump and bound.
        let peer = if s.peer == 0 {
            "-".to_string()
        } else {
            let pn = files
                .and_then(|fs| fs.values().find(|p| p.usk.as_ref().is_some_and(|u| u.ino == s.peer)))
                .and_then(|p| p.usk.as_ref())
                .map(|u| unix_name(&u.name))
                .filter(|n| !n.is_empty());
            match pn {
                Some(n) => format!("{n} (ino {})", s.peer),
                None => format!("ino {}", s.peer),
            }
        };
        let local = unix_name(&s.name);
        return Some(Sock {
            fd,
            family: "UNIX".into(),
            ty: name(s.r#type, "type"),
            state: name(s.state, "state"),
            local: if local.is_empty() {
                format!("ino {}", s.ino)
            } else {
                local
            },
            peer,
            queued: q(s.id),
            file_id: f.id,
            fdinfo_index,
        });
    }
    if let Some(s) = &f.isk {
        let mut queued = q(s.id);
        let tcp = format!("tcp-stream-{:x}.img", s.ino);
        if set.has(&tcp) {
            // The entry is followed by the queues' bytes, so decode it as a whole image.
            if let Ok(img) = set.image(&tcp) {
                for e in img.entries {
                    if let Ok(t) = pb::TcpStreamEntry::decode(e.msg.encode_to_vec().as_slice()) {
                        queued += t.inq_len as u64 + t.outq_len as u64;
                    }
                }
            }
        }
        let addr = |a: &[u32], p: u32| {
            let h = ip(a);
            if h.contains(':') {
                format!("[{h}]:{p}")
            } else {
                format!("{h}:{p}")
            }
        };
        return Some(Sock {
            fd,
            family: name(s.family, "family"),
            ty: format!(
                "{}/{}",
                name(s.r#type, "type"),
                dict_name("sk", "proto", s.proto as i128).unwrap_or("?")
            ),
            state: name(s.state, "state"),
            local: addr(&s.src_addr, s.src_port),
            peer: addr(&s.dst_addr, s.dst_port),
            queued,
            file_id: f.id,
            fdinfo_index,
        });
    }
    if let Some(s) = &f.nlsk {
        // The same words as `crit x DIR sk`.
        use cryo_crit::explore::sk;
        return Some(Sock {
            fd,
            family: "NETLINK".into(),
            ty: sk::netlink_proto(s.protocol),
            state: if s.state == 1 { "CONNECTED" } else { "UNCONNECTED" }.into(),
            local: sk::netlink_local(s),
            peer: sk::netlink_peer(s),
            queued: q(s.id),
            file_id: f.id,
            fdinfo_index,
        });
    }
    if let Some(s) = &f.psk {
        return Some(Sock {
            fd,
            family: "PACKET".into(),
            ty: format!(
                "{}/{}",
                name(s.r#type, "type"),
                cryo_crit::explore::sk::eth_proto(u16::from_be(s.protocol as u16))
            ),
            state: "-".into(),
            local: cryo_crit::explore::sk::packet_local(s),
            peer: "-".into(),
            queued: q(s.id),
            file_id: f.id,
            fdinfo_index,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn fixture(name: &str) -> String {
        format!("../../fixtures/criu-4.2/{name}/images")
    }

    #[test]
    fn proctree_is_a_tree() {
        let d = Dump::open(fixture("proctree")).unwrap();
        let v: Vec<(u32, usize)> = d.procs.iter().map(|p| (p.pid, p.depth)).collect();
        assert_eq!(v, vec![(9406, 0), (9408, 1), (9409, 1), (9410, 1), (9411, 2)]);
        assert!(d.procs.iter().all(|p| p.comm == "proctree" && p.state == "A"));
        assert!(d.errors.is_empty(), "{:?}", d.errors);
    }

    #[test]
    fn heap_mapping_is_fully_dumped() {
        let d = Dump::open(fixture("proctree")).unwrap();
        let det = d.detail(9408);
        let heap = det.vmas.iter().find(|v| v.kind == "heap").unwrap();
        assert_eq!((heap.pages, heap.dumped), (33, 17));
        assert_eq!(heap.prot, "rw-p");
        let sum: f32 = heap.bar.iter().sum();
        assert!(sum > 0.0);
        assert!(det.errors.is_empty(), "{:?}", det.errors);
    }

    #[test]
    fn sockets_of_unix_pair_and_tcp() {
        let d = Dump::open(fixture("unix_pair")).unwrap();
        let det = d.detail(d.procs[0].pid);
        assert_eq!(det.socks.len(), 6);
        assert!(det.socks.iter().any(|s| s.queued > 0));
        let d = Dump::open(fixture("tcp_est")).unwrap();
        let det = d.detail(d.procs[0].pid);
        let est: Vec<_> = det.socks.iter().filter(|s| s.state == "ESTABLISHED").collect();
        assert_eq!(est.len(), 2);
        assert!(est.iter().any(|s| s.queued == 2000), "{est:?}");
    }

    #[test]
    fn raw_json_of_a_vma() {
        let d = Dump::open(fixture("proctree")).unwrap();
        let (title, text) = d.raw(&RawTarget::Vma { pid: 9408, index: 5 });
        assert_eq!(title, "mm-9408.img entry 0 › vmas[5]");
        assert!(text.contains("\"start\": \"0x55d9a9a4d000\""), "{text}");
    }

    #[test]
    fn missing_dir_is_an_error_not_a_panic() {
        assert!(Dump::open("/nonexistent/cryo-tui").is_err());
    }
}
