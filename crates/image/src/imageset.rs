//! A dump directory, opened lazily: nothing is read until asked for, and process memory is read page by
//! page straight from `pages-*.img`, so a set with gigabytes of pages opens instantly.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use prost::Message;
use prost_reflect::ReflectMessage;

use crate::error::{ImageError, Result};
use crate::pages::{PageRun, Pagemap, PE_PARENT};
use crate::writer::{self, entries_from_bytes};
use crate::{codec, pb, Extra, Image, PAGE_SIZE};

/// An image directory.
#[derive(Debug)]
pub struct ImageSet {
    dir: PathBuf,
    pagemaps: Mutex<HashMap<u32, Arc<Pagemap>>>,
}

impl ImageSet {
    /// Open a dump directory. It must hold `inventory.img`, which a dump writes last.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let inv = dir.join("inventory.img");
        if !inv.is_file() {
            let what = if dir.is_dir() {
                "no inventory.img: not a complete image set"
            } else {
                "not a directory"
            };
            return Err(ImageError::invalid(dir.display().to_string(), what));
        }
        Ok(ImageSet {
            dir,
            pagemaps: Mutex::new(HashMap::new()),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of an image file in the set.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether an image file exists in the set.
    pub fn has(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    fn read(&self, name: &str) -> Result<(String, Vec<u8>)> {
        let p = self.path(name);
        let file = p.display().to_string();
        let data = fs::read(&p).map_err(|e| ImageError::io(&file, e))?;
        Ok((file, data))
    }

    /// Decode any image of the set dynamically.
    pub fn image(&self, name: &str) -> Result<Image> {
        let (file, data) = self.read(name)?;
        codec::decode(&file, &data)
    }

    /// All entries of a plain entry image as type `M`.
    pub fn entries<M: Message + Default>(&self, name: &str, magic: &str) -> Result<Vec<M>> {
        let (file, data) = self.read(name)?;
        entries_from_bytes(&file, &data, magic)
    }

    /// The single entry of a one-entry image.
    pub fn one<M: Message + Default>(&self, name: &str, magic: &str) -> Result<M> {
        let file = self.path(name).display().to_string();
        self.entries(name, magic)?
            .into_iter()
            .next()
            .ok_or_else(|| ImageError::invalid(file, "image has no entry"))
    }

    pub fn inventory(&self) -> Result<pb::InventoryEntry> {
        self.one("inventory.img", "INVENTORY")
    }
    /// The process tree. A zombie's only thread is itself: CRIU never
    /// seizes a zombie and writes whatever its thread slot held (an
    /// arbitrary number), so for a process whose core says TASK_DEAD the
    /// threads read are replaced by its pid (the image is not changed).
    pub fn pstree(&self) -> Result<Vec<pb::PstreeEntry>> {
        let mut tree: Vec<pb::PstreeEntry> = self.entries("pstree.img", "PSTREE")?;
        for p in &mut tree {
            if p.threads != [p.pid] && self.has(&format!("core-{}.img", p.pid)) && self.zombie(p.pid) {
                p.threads = vec![p.pid];
            }
        }
        Ok(tree)
    }

    /// Whether core-PID.img says the task is dead (a zombie).
    fn zombie(&self, pid: u32) -> bool {
        self.core(pid)
            .ok()
            .and_then(|c| c.tc)
            .is_some_and(|tc| tc.task_state == crate::check::TASK_DEAD)
    }
    pub fn core(&self, pid: u32) -> Result<pb::CoreEntry> {
        self.one(&format!("core-{pid}.img"), "CORE")
    }
    pub fn mm(&self, pid: u32) -> Result<pb::MmEntry> {
        self.one(&format!("mm-{pid}.img"), "MM")
    }
    pub fn ids(&self, pid: u32) -> Result<pb::TaskKobjIdsEntry> {
        self.one(&format!("ids-{pid}.img"), "IDS")
    }
    pub fn fs(&self, pid: u32) -> Result<pb::FsEntry> {
        self.one(&format!("fs-{pid}.img"), "FS")
    }
    pub fn files(&self) -> Result<Vec<pb::FileEntry>> {
        if !self.has("files.img") {
            return Ok(Vec::new());
        }
        self.entries("files.img", "FILES")
    }
    pub fn fdinfo(&self, files_id: u32) -> Result<Vec<pb::FdinfoEntry>> {
        self.entries(&format!("fdinfo-{files_id}.img"), "FDINFO")
    }

    /// Entries with a raw payload (pipes-data, fifo-data, sk-queues), typed, each with its bytes.
    pub fn with_payload<M: Message + Default>(&self, name: &str) -> Result<Vec<(M, Vec<u8>)>> {
        let img = self.image(name)?;
        let file = self.path(name).display().to_string();
        img.entries
            .into_iter()
            .enumerate()
            .map(|(index, e)| {
                let m = M::decode(e.msg.encode_to_vec().as_slice()).map_err(|cause| ImageError::Decode {
                    file: file.clone(),
                    index,
                    offset: 0,
                    message: e.msg.descriptor().name().into(),
                    cause,
                })?;
                let data = match e.extra {
                    Extra::Blob(b) => b,
                    _ => Vec::new(),
                };
                Ok((m, data))
            })
            .collect()
    }

    /// Pipe contents (`pipes-data.img`): entries and their queued bytes.
    pub fn pipes_data(&self) -> Result<Vec<(pb::PipeDataEntry, Vec<u8>)>> {
        if !self.has("pipes-data.img") {
            return Ok(Vec::new());
        }
        self.with_payload("pipes-data.img")
    }

    /// The pagemap of a process, validated against its pages file (cached).
    pub fn pagemap(&self, pid: u32) -> Result<Arc<Pagemap>> {
        if let Some(p) = self.pagemaps.lock().unwrap().get(&pid) {
            return Ok(p.clone());
        }
        let pm = Arc::new(self.pagemap_file(&format!("pagemap-{pid}.img"))?);
        self.pagemaps.lock().unwrap().insert(pid, pm.clone());
        Ok(pm)
    }

    /// Any pagemap image of the set (a process's, or a shared memory object's `pagemap-shmem-ID.img`,
    /// whose run addresses are offsets in the object), validated against its pages file. Not cached.
    pub fn pagemap_file(&self, name: &str) -> Result<Pagemap> {
        let (file, data) = self.read(name)?;
        let raw = writer::raw_entries(&file, &data, "PAGEMAP")?;
        let (&(hoff, head), rest) = raw
            .split_first()
            .ok_or_else(|| ImageError::invalid(&file, "no pagemap_head entry"))?;
        let head: pb::PagemapHead = writer::decode_typed(&file, 0, hoff, head)?;
        let entries = rest
            .iter()
            .enumerate()
            .map(|(i, &(off, body))| writer::decode_typed::<pb::PagemapEntry>(&file, i + 1, off, body))
            .collect::<Result<Vec<_>>>()?;
        let pages = self.path(&format!("pages-{}.img", head.pages_id));
        let pages_len = fs::metadata(&pages).map(|m| m.len()).ok();
        if pages_len.is_none()
            && entries
                .iter()
                .any(|e| e.flags.unwrap_or(crate::PE_PRESENT) & crate::PE_PRESENT != 0)
        {
            return Err(ImageError::invalid(&file, format!("{} is missing", pages.display())));
        }
        Pagemap::new(&file, &head, &entries, pages_len)
    }

    /// The parent image set of an incremental dump (the `parent` link), if any.
    pub fn parent(&self) -> Option<ImageSet> {
        let p = self.dir.join("parent");
        p.exists().then(|| ImageSet {
            dir: p,
            pagemaps: Mutex::new(HashMap::new()),
        })
    }

    /// Read `len` bytes of process `pid`'s memory at `addr` from the dumped pages. Fails naming the first
    /// address that is not in the dump.
    pub fn read_memory(&self, pid: u32, addr: u64, len: usize) -> Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        let missing = self.read_memory_into(pid, addr, &mut out)?;
        if let Some(a) = missing {
            return Err(ImageError::invalid(
                self.dir.display().to_string(),
                format!("pid {pid}: page {a:#x} is not in the dump"),
            ));
        }
        Ok(out)
    }

    /// Fill `buf` with memory at `addr`; pages not in the dump are left as they are. Returns the first
    /// address that was not in the dump, if any.
    pub fn read_memory_into(&self, pid: u32, addr: u64, buf: &mut [u8]) -> Result<Option<u64>> {
        let pm = self.pagemap(pid)?;
        let pages = self.path(&format!("pages-{}.img", pm.pages_id));
        let mut f: Option<File> = None;
        let mut missing = None;
        let end = addr
            .checked_add(buf.len() as u64)
            .ok_or_else(|| ImageError::invalid(self.dir.display().to_string(), "address range overflows"))?;
        let mut a = addr;
        while a < end {
            let page_end = (a / PAGE_SIZE + 1) * PAGE_SIZE;
            let chunk_end = page_end.min(end);
            let dst = &mut buf[(a - addr) as usize..(chunk_end - addr) as usize];
            match pm.find(a) {
                Some(r) if r.offset.is_some() => {
                    let off = r.offset.unwrap() + (a - r.vaddr);
                    // Read up to the end of the run in one go.
                    let run_end = r.end().min(end);
                    let dst = &mut buf[(a - addr) as usize..(run_end - addr) as usize];
                    let file = match &mut f {
                        Some(f) => f,
                        None => {
                            f.insert(File::open(&pages).map_err(|e| ImageError::io(pages.display().to_string(), e))?)
                        }
                    };
                    file.seek(SeekFrom::Start(off))
                        .and_then(|_| file.read_exact(dst))
                        .map_err(|e| ImageError::io(pages.display().to_string(), e))?;
                    a = run_end;
                    continue;
                }
                Some(r) if r.flags & PE_PARENT != 0 => match self.parent() {
                    Some(p) => {
                        if let Some(m) = p.read_memory_into(pid, a, dst)? {
                            missing.get_or_insert(m);
                        }
                    }
                    None => {
                        missing.get_or_insert(a);
                    }
                },
                _ => {
                    missing.get_or_insert(a);
                }
            }
            a = chunk_end;
        }
        Ok(missing)
    }
}

/// A process's pagemap with the runs of parent sets resolved: every run with contents has its offset in
/// one of `files` (`file[i]` for `runs[i]`; 0 is the set's own pages file, then its parent's, ...).
#[derive(Debug, Clone, Default)]
pub struct FlatPagemap {
    pub files: Vec<PathBuf>,
    pub runs: Vec<PageRun>,
    pub file: Vec<usize>,
}

impl FlatPagemap {
    /// Does any run come from a parent set?
    pub fn has_parents(&self) -> bool {
        self.file.iter().any(|&f| f != 0)
    }
}

/// Longest parent chain followed (a loop of `parent` links is an error, not a hang).
pub const MAX_CHAIN: usize = 64;

impl ImageSet {
    /// [`ImageSet::pagemap`] of `pid` with `PE_PARENT` runs replaced by the runs of the parent sets that
    /// hold them (pieces of them where the parent's runs are shorter). Fails naming the set and address
    /// of a page no parent holds.
    pub fn flat_pagemap(&self, pid: u32) -> Result<FlatPagemap> {
        let pm = self.pagemap(pid)?;
        let mut out = FlatPagemap::default();
        out.files.push(self.path(&format!("pages-{}.img", pm.pages_id)));
        let mut chain: Vec<(ImageSet, Arc<Pagemap>)> = Vec::new();
        for r in &pm.runs {
            if r.flags & PE_PARENT == 0 {
                out.runs.push(*r);
                out.file.push(0);
                continue;
            }
            self.resolve(pid, r.vaddr, r.end(), 0, &mut chain, &mut out)?;
        }
        Ok(out)
    }

    /// Resolve `[start, end)` in the parent at `depth` (0: this set's parent) of the chain.
    fn resolve(
        &self,
        pid: u32,
        start: u64,
        end: u64,
        depth: usize,
        chain: &mut Vec<(ImageSet, Arc<Pagemap>)>,
        out: &mut FlatPagemap,
    ) -> Result<()> {
        let bad = |what: String| ImageError::invalid(self.dir.display().to_string(), what);
        if depth >= MAX_CHAIN {
            return Err(bad(format!("pid {pid}: parent chain longer than {MAX_CHAIN} sets")));
        }
        while chain.len() <= depth {
            let below = match chain.last() {
                Some((s, _)) => s.parent(),
                None => self.parent(),
            };
            let Some(p) = below else {
                return Err(bad(format!(
                    "pid {pid}: pages at {start:#x} are in a parent set, but there is no parent at depth {}",
                    chain.len() + 1
                )));
            };
            let pm = p.pagemap(pid)?;
            out.files.push(p.path(&format!("pages-{}.img", pm.pages_id)));
            chain.push((p, pm));
        }
        let pm = chain[depth].1.clone();
        let mut a = start;
        while a < end {
            let Some(r) = pm.find(a) else {
                return Err(bad(format!(
                    "pid {pid}: page {a:#x} is marked in the parent, but {} does not hold it",
                    chain[depth].0.dir.display()
                )));
            };
            let e = r.end().min(end);
            if let Some(off) = r.offset {
                out.runs.push(PageRun {
                    vaddr: a,
                    nr_pages: (e - a) / PAGE_SIZE,
                    flags: r.flags,
                    offset: Some(off + (a - r.vaddr)),
                });
                out.file.push(depth + 1);
            } else if r.flags & PE_PARENT != 0 {
                self.resolve(pid, a, e, depth + 1, chain, out)?;
            } else {
                return Err(bad(format!(
                    "pid {pid}: page {a:#x} is marked in the parent, but {} has no contents for it",
                    chain[depth].0.dir.display()
                )));
            }
            a = e;
        }
        Ok(())
    }
}
