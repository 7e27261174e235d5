//! Process memory from an image set: the mappings, reading bytes at an address, hexdumps, and searching
//! the dumped pages for a string, bytes or a regular expression.
//!
//! Search streams: each dumped span of a mapping is read in windows of [`WINDOW`] bytes that overlap by
//! [`OVERLAP`] bytes, so memory is never loaded whole and a match of up to `OVERLAP` bytes that straddles
//! two windows is still found (once). Longer regex matches may be cut at a window edge.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use prost::Message as _;
use std::path::PathBuf;

use regex::bytes::{Regex, RegexBuilder};
use serde::Serialize;

use cryo_image::{pb, ImageSet, Pagemap, PAGE_SIZE, PE_PARENT};

use crate::explore::files::FileTable;
use crate::explore::vma::{
    is_file_backed, prot_str, VmaKind, VMA_ANON_SHARED, VMA_AREA_MEMFD, VMA_AREA_SYSVIPC, VMA_AREA_VDSO,
    VMA_AREA_VSYSCALL, VMA_AREA_VVAR,
};
use crate::explore::{is_zombie, process_of_thread, ExploreError, Result};

/// Bytes read at a time while searching.
pub const WINDOW: usize = 1 << 20;
/// Overlap of consecutive windows: the longest match guaranteed to be found whole.
pub const OVERLAP: usize = 64 * 1024;

/// A mapping of the process, described for people and programs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub prot: u32,
    /// `rwx` letters.
    pub perms: String,
    pub kind: VmaKind,
    /// The mapped file, or `[stack]`, `[heap]`, `[vdso]`, `[vvar]`, `[vsyscall]`, or empty for anonymous memory.
    pub name: String,
    pub pgoff: u64,
    /// Bytes of this mapping held by the dump.
    pub dumped: u64,
}

impl Region {
    /// `start-end perms kind name`.
    pub fn describe(&self) -> String {
        let mut s = format!("{:x}-{:x} {} {}", self.start, self.end, self.perms, self.kind.name());
        if !self.name.is_empty() {
            s.push(' ');
            s.push_str(&self.name);
            if self.pgoff != 0 {
                s.push_str(&format!(" +{:#x}", self.pgoff));
            }
        }
        s
    }
}

/// Where the dumped bytes of an address range are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The process's pagemap (including runs in a parent image set).
    Pagemap,
    /// A shared memory object's pagemap (`pagemap-shmem-ID.img`): bytes at `offset` of `pages`.
    Shmem { pages: PathBuf, offset: u64 },
}

/// A dumped address range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
    pub source: Source,
}

/// The process's memory: its mappings and the dumped spans they are read from (private memory from the
/// process's pagemap, shared memory, memfd and SysV shm from the shared objects' pagemaps).
pub struct Memory<'a> {
    set: &'a ImageSet,
    pub pid: u32,
    pub regions: Vec<Region>,
    /// Sorted, non-overlapping.
    pub spans: Vec<Span>,
}

/// A shared memory object's pagemap: runs in object offsets, and its pages file.
fn shmem_pagemap(set: &ImageSet, id: u64) -> Result<Option<(Pagemap, PathBuf)>> {
    let name = format!("pagemap-shmem-{id}.img");
    if !set.has(&name) {
        return Ok(None);
    }
    let pm = set.pagemap_file(&name)?;
    let pages = set.path(&format!("pages-{}.img", pm.pages_id));
    Ok(Some((pm, pages)))
}

/// The contents of SysV shm segment `shmid` of the set's IPC namespaces (`ipcns-shm-NS.img` names it,
/// `pagemap-shmem-SHMID.img` and its pages file hold the non-zero pages; the rest reads as zeros), as
/// the segment's own offsets: attached or not. Returns the segment's namespace id and its bytes.
pub fn shm_segment(set: &ImageSet, shmid: u32) -> Result<(u32, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(set.dir())
        .map_err(|e| cryo_image::ImageError::Io {
            file: set.dir().display().to_string(),
            cause: e,
        })?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ipcns-shm-") && n.ends_with(".img"))
        .collect();
    names.sort();
    for name in &names {
        let ns: u32 = name["ipcns-shm-".len()..name.len() - 4].parse().unwrap_or(0);
        let data = std::fs::read(set.path(name)).map_err(|e| cryo_image::ImageError::Io {
            file: set.path(name).display().to_string(),
            cause: e,
        })?;
        for e in cryo_image::decode(name, &data)?.entries {
            let seg: pb::IpcShmEntry = match pb::IpcShmEntry::decode(prost::Message::encode_to_vec(&e.msg).as_slice()) {
                Ok(s) => s,
                Err(_) => continue,
            };
            if seg.desc.id != shmid {
                continue;
            }
            let size = usize::try_from(seg.size)
                .ok()
                .filter(|&n| n <= 1 << 34)
                .ok_or_else(|| ExploreError::Invalid {
                    file: set.path(name).display().to_string(),
                    what: format!("segment {shmid}: size {} is too big to read", seg.size),
                })?;
            let mut buf = vec![0u8; size];
            if let Some((pm, pages)) = shmem_pagemap(set, shmid as u64)? {
                let mut f = File::open(&pages).map_err(|e| cryo_image::ImageError::Io {
                    file: pages.display().to_string(),
                    cause: e,
                })?;
                for r in &pm.runs {
                    let Some(off) = r.offset else { continue };
                    let (s, e) = (r.vaddr.min(size as u64) as usize, r.end().min(size as u64) as usize);
                    if s >= e {
                        continue;
                    }
                    f.seek(SeekFrom::Start(off))
                        .and_then(|_| f.read_exact(&mut buf[s..e]))
                        .map_err(|e| cryo_image::ImageError::Io {
                            file: pages.display().to_string(),
                            cause: e,
                        })?;
                }
            }
            return Ok((ns, buf));
        }
    }
    Err(ExploreError::Invalid {
        file: set.dir().display().to_string(),
        what: format!("no SysV shm segment {shmid} in the set's IPC namespaces (ipcns-shm-*.img)"),
    })
}

impl<'a> Memory<'a> {
    /// Open the memory of process `pid` (or of the process of thread `pid`); its mm and pagemap must be
    /// readable.
    pub fn open(set: &'a ImageSet, pid: u32) -> Result<Self> {
        let pid = process_of_thread(set, pid)?.pid;
        if is_zombie(set, pid)? {
            return Err(ExploreError::Invalid {
                file: set.path(&format!("core-{pid}.img")).display().to_string(),
                what: format!("process {pid} is a zombie: it has no memory"),
            });
        }
        let mm = set.mm(pid)?;
        let pm = set.pagemap(pid)?;
        let files = FileTable::load(set)?;
        let memfd_inodes: Vec<pb::MemfdInodeEntry> = if set.has("memfd.img") {
            set.entries("memfd.img", "MEMFD_INODE")?
        } else {
            Vec::new()
        };
        let mut shmem_cache: HashMap<u64, Option<(Pagemap, PathBuf)>> = HashMap::new();
        let mut regions = Vec::with_capacity(mm.vmas.len());
        let mut spans: Vec<Span> = Vec::new();
        let mut prev_end = 0;
        for (i, v) in mm.vmas.iter().enumerate() {
            if v.start >= v.end || v.start % PAGE_SIZE != 0 || v.end % PAGE_SIZE != 0 || v.start < prev_end {
                return Err(ExploreError::Invalid {
                    file: set.path(&format!("mm-{pid}.img")).display().to_string(),
                    what: format!(
                        "vma {i} ({:#x}-{:#x}) is empty, unaligned or overlaps the one before",
                        v.start, v.end
                    ),
                });
            }
            prev_end = v.end;
            let kind = VmaKind::of(v, Some(&mm));
            let memfd = (v.status & VMA_AREA_MEMFD != 0)
                .then(|| files.get(v.shmid as u32).and_then(|f| f.memfd.as_ref()))
                .flatten()
                .and_then(|m| memfd_inodes.iter().find(|i| i.inode_id == m.inode_id as u64));
            let name = if let Some(i) = memfd {
                format!("memfd:{}", i.name)
            } else if v.status & VMA_AREA_SYSVIPC != 0 {
                format!("[sysv shm {}]", v.shmid)
            } else if v.status & VMA_ANON_SHARED != 0 {
                format!("[shared anon {}]", v.shmid)
            } else if is_file_backed(v) {
                files.reg_name(v.shmid as u32)
            } else if v.status & VMA_AREA_VDSO != 0 {
                "[vdso]".into()
            } else if v.status & VMA_AREA_VVAR != 0 {
                "[vvar]".into()
            } else if v.status & VMA_AREA_VSYSCALL != 0 {
                "[vsyscall]".into()
            } else {
                match kind {
                    VmaKind::Stack => "[stack]".into(),
                    VmaKind::Heap => "[heap]".into(),
                    _ => String::new(),
                }
            };
            // The shared object this VMA shows, if its pages live in a shmem pagemap.
            let object = if let Some(i) = memfd {
                Some(i.shmid as u64)
            } else if v.status & (VMA_AREA_SYSVIPC | VMA_ANON_SHARED) != 0 {
                Some(v.shmid)
            } else {
                None
            };
            let before = spans.len();
            match object {
                Some(id) => {
                    if let std::collections::hash_map::Entry::Vacant(e) = shmem_cache.entry(id) {
                        e.insert(shmem_pagemap(set, id)?);
                    }
                    if let Some((spm, pages)) = &shmem_cache[&id] {
                        let (lo, hi) = (v.pgoff, v.pgoff.saturating_add(v.end - v.start));
                        for r in spm.runs.iter() {
                            let Some(off) = r.offset else { continue };
                            let (s, e) = (r.vaddr.max(lo), r.end().min(hi));
                            if s < e {
                                spans.push(Span {
                                    start: v.start + (s - lo),
                                    end: v.start + (e - lo),
                                    source: Source::Shmem {
                                        pages: pages.clone(),
                                        offset: off + (s - r.vaddr),
                                    },
                                });
                            }
                        }
                    }
                }
                None => {
                    for r in pm
                        .runs
                        .iter()
                        .filter(|r| r.offset.is_some() || r.flags & PE_PARENT != 0)
                    {
                        let (s, e) = (r.vaddr.max(v.start), r.end().min(v.end));
                        if s < e {
                            spans.push(Span {
                                start: s,
                                end: e,
                                source: Source::Pagemap,
                            });
                        }
                    }
                }
            }
            let dumped = spans[before..].iter().map(|s| s.end - s.start).sum();
            regions.push(Region {
                start: v.start,
                end: v.end,
                prot: v.prot,
                perms: prot_str(v.prot),
                kind,
                name,
                pgoff: if is_file_backed(v) && memfd.is_none() {
                    v.pgoff
                } else {
                    0
                },
                dumped,
            });
        }
        spans.sort_by_key(|s| s.start);
        Ok(Memory {
            set,
            pid,
            regions,
            spans,
        })
    }

    /// The mapping holding `addr`.
    pub fn region_of(&self, addr: u64) -> Option<&Region> {
        let i = self.regions.partition_point(|r| r.end <= addr);
        self.regions.get(i).filter(|r| r.start <= addr)
    }

    /// Whether the byte at `addr` is in the dump.
    pub fn is_dumped(&self, addr: u64) -> bool {
        let i = self.spans.partition_point(|s| s.end <= addr);
        self.spans.get(i).is_some_and(|s| s.start <= addr)
    }

    fn err(&self, what: String) -> ExploreError {
        ExploreError::Invalid {
            file: self
                .set
                .path(&format!("pagemap-{}.img", self.pid))
                .display()
                .to_string(),
            what: format!("pid {}: {what}", self.pid),
        }
    }

    /// Fill `buf` with the memory at `addr`; bytes not in the dump are left as they are. Returns the
    /// first address that is not in the dump, if any.
    pub fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<Option<u64>> {
        let end = addr
            .checked_add(buf.len() as u64)
            .ok_or_else(|| self.err(format!("{addr:#x} + {} overflows", buf.len())))?;
        let mut missing = None;
        let mut a = addr;
        let mut i = self.spans.partition_point(|s| s.end <= addr);
        while a < end {
            let Some(sp) = self.spans.get(i).filter(|s| s.start < end) else {
                missing.get_or_insert(a);
                break;
            };
            if sp.start > a {
                missing.get_or_insert(a);
                a = sp.start;
            }
            let e = sp.end.min(end);
            let dst = &mut buf[(a - addr) as usize..(e - addr) as usize];
            match &sp.source {
                Source::Pagemap => {
                    if let Some(m) = self.set.read_memory_into(self.pid, a, dst)? {
                        missing.get_or_insert(m);
                    }
                }
                Source::Shmem { pages, offset } => {
                    let io = |e: std::io::Error| ExploreError::Invalid {
                        file: pages.display().to_string(),
                        what: e.to_string(),
                    };
                    let mut f = File::open(pages).map_err(io)?;
                    f.seek(SeekFrom::Start(offset + (a - sp.start))).map_err(io)?;
                    f.read_exact(dst).map_err(io)?;
                }
            }
            a = e;
            i += 1;
        }
        Ok(missing)
    }

    /// Read `len` bytes at `addr`. Every byte must be in a mapping and in the dump; the error names the
    /// first address that is not, and its mapping.
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let end = addr
            .checked_add(len as u64)
            .ok_or_else(|| self.err(format!("{addr:#x} + {len} overflows")))?;
        let mut a = addr;
        while a < end {
            let r = self
                .region_of(a)
                .ok_or_else(|| self.err(format!("address {a:#x} is not in any mapping")))?;
            a = r.end.min(end);
        }
        let mut buf = vec![0u8; len];
        if let Some(miss) = self.read_into(addr, &mut buf)? {
            let r = self.region_of(miss).map(Region::describe).unwrap_or_default();
            return Err(self.err(format!(
                "address {miss:#x} (mapping {r}) is not in the dump (CRIU leaves out pages never written or unchanged from the file)"
            )));
        }
        Ok(buf)
    }

    /// Dumped spans of a region clipped to `lo..hi`, adjacent ones merged.
    pub fn spans_in(&self, r: &Region, lo: u64, hi: u64) -> Vec<(u64, u64)> {
        let (lo, hi) = (lo.max(r.start), hi.min(r.end));
        let mut out: Vec<(u64, u64)> = Vec::new();
        let i = self.spans.partition_point(|s| s.end <= lo);
        for sp in self.spans[i..].iter().take_while(|s| s.start < hi) {
            let (s, e) = (sp.start.max(lo), sp.end.min(hi));
            if s >= e {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => out.push((s, e)),
            }
        }
        out
    }

    /// Search the dumped memory of the regions that pass `filter` for `re`. `on_match` gets each match in
    /// address order and returns whether to go on.
    pub fn search(
        &self,
        re: &Regex,
        filter: &Filter,
        opts: &SearchOpts,
        mut on_match: impl FnMut(Match) -> std::io::Result<bool>,
    ) -> Result<SearchStats, SearchError> {
        let mut stats = SearchStats::default();
        let (window, overlap, context) = (opts.window, opts.overlap, opts.context);
        if overlap >= window {
            return Err(SearchError::Explore(self.err(format!(
                "search window {window} must be larger than its overlap {overlap}"
            ))));
        }
        let mut buf = vec![0u8; window];
        'regions: for (ri, r) in self.regions.iter().enumerate() {
            if !filter.accepts(r) {
                continue;
            }
            stats.regions += 1;
            let (lo, hi) = filter.range.unwrap_or((0, u64::MAX));
            for (s, e) in self.spans_in(r, lo, hi) {
                let mut pos = s;
                loop {
                    let wend = (pos + window as u64).min(e);
                    let w = &mut buf[..(wend - pos) as usize];
                    w.fill(0); // bytes a parent set lacks read as zeros, not as the last window's
                    self.read_into(pos, w)?;
                    stats.bytes += if pos == s {
                        w.len() as u64
                    } else {
                        (w.len() - overlap) as u64
                    };
                    let last = wend == e;
                    let cutoff = if last { w.len() } else { w.len() - overlap };
                    for m in re.find_iter(w) {
                        if m.start() >= cutoff {
                            break;
                        }
                        // Context within the dumped span, whatever the window.
                        let (ms, me) = (pos + m.start() as u64, pos + m.end() as u64);
                        let (cs, ce) = (ms.saturating_sub(context as u64).max(s), (me + context as u64).min(e));
                        let (before, after) = if cs >= pos && ce <= wend {
                            (
                                w[(cs - pos) as usize..m.start()].to_vec(),
                                w[m.end()..(ce - pos) as usize].to_vec(),
                            )
                        } else {
                            let mut b = vec![0u8; (ms - cs) as usize];
                            let mut a = vec![0u8; (ce - me) as usize];
                            self.read_into(cs, &mut b)?;
                            self.read_into(me, &mut a)?;
                            (b, a)
                        };
                        stats.matches += 1;
                        let go = on_match(Match {
                            addr: ms,
                            len: m.len(),
                            region: ri,
                            before,
                            matched: w[m.start()..m.end()].to_vec(),
                            after,
                        })
                        .map_err(SearchError::Output)?;
                        if !go {
                            break 'regions;
                        }
                    }
                    if last {
                        break;
                    }
                    pos = wend - overlap as u64;
                }
            }
        }
        Ok(stats)
    }
}

/// Errors of a search: reading the image, or writing the results (a closed pipe stops it).
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Explore(#[from] ExploreError),
    #[error(transparent)]
    Output(std::io::Error),
}

impl From<cryo_image::ImageError> for SearchError {
    fn from(e: cryo_image::ImageError) -> Self {
        SearchError::Explore(e.into())
    }
}

/// How to search: context bytes around a match, window size and overlap (the longest match found whole).
#[derive(Debug, Clone, Copy)]
pub struct SearchOpts {
    pub context: usize,
    pub window: usize,
    pub overlap: usize,
}

impl Default for SearchOpts {
    fn default() -> Self {
        SearchOpts {
            context: 16,
            window: WINDOW,
            overlap: OVERLAP,
        }
    }
}

/// Which mappings to search.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// PROT_* bits a mapping must have all of.
    pub prot: u32,
    /// Only addresses in `lo..hi`.
    pub range: Option<(u64, u64)>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<VmaKind>,
}

impl Filter {
    pub fn accepts(&self, r: &Region) -> bool {
        r.prot & self.prot == self.prot
            && self.range.is_none_or(|(lo, hi)| r.start < hi && r.end > lo)
            && (self.kinds.is_empty() || self.kinds.contains(&r.kind))
    }
}

/// One match.
#[derive(Debug, Clone)]
pub struct Match {
    pub addr: u64,
    pub len: usize,
    /// Index in [`Memory::regions`].
    pub region: usize,
    pub before: Vec<u8>,
    pub matched: Vec<u8>,
    pub after: Vec<u8>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SearchStats {
    pub regions: u64,
    pub bytes: u64,
    pub matches: u64,
}

/// A regex matching `text` literally.
pub fn literal(text: &[u8]) -> Regex {
    let mut p = String::from("(?-u)");
    for b in text {
        p.push_str(&format!("\\x{b:02x}"));
    }
    bytes_regex(&p).expect("an escaped literal is a valid regex")
}

/// A regex over bytes (Unicode off by default: `.` is any byte but `\n`, `\xNN` is a byte).
pub fn bytes_regex(pattern: &str) -> std::result::Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).unicode(false).size_limit(64 << 20).build()
}

/// Parse hex bytes: `de ad be ef`, `deadbeef`, `0xde,0xad`.
pub fn parse_hex(s: &str) -> std::result::Result<Vec<u8>, String> {
    let clean: String = s
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':')
        .map(|w| w.trim_start_matches("0x").trim_start_matches("0X"))
        .collect();
    if clean.is_empty() || !clean.len().is_multiple_of(2) {
        return Err(format!("{s:?}: expected an even number of hex digits"));
    }
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).map_err(|_| format!("{s:?}: not hex")))
        .collect()
}

/// Bytes as a quoted string: printable ASCII as is, the rest escaped.
pub fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0 => s.push_str("\\0"),
            0x20..0x7f => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

/// `hexdump -C` of `data` with offsets starting at `base`: 16 bytes a line, a `*` for repeated lines,
/// and the end offset last.
pub fn hexdump(data: &[u8], base: u64) -> String {
    let mut s = String::with_capacity(data.len() * 4 + 32);
    let mut prev: Option<&[u8]> = None;
    let mut starred = false;
    for (i, line) in data.chunks(16).enumerate() {
        if line.len() == 16 && prev == Some(line) {
            if !starred {
                s.push_str("*\n");
                starred = true;
            }
            continue;
        }
        starred = false;
        prev = Some(line);
        s.push_str(&format!("{:08x} ", base + (i * 16) as u64));
        for j in 0..16 {
            if j == 8 {
                s.push(' ');
            }
            match line.get(j) {
                Some(b) => s.push_str(&format!(" {b:02x}")),
                None => s.push_str("   "),
            }
        }
        s.push_str("  |");
        for &b in line {
            s.push(if (0x20..0x7f).contains(&b) { b as char } else { '.' });
        }
        s.push_str("|\n");
    }
    if !data.is_empty() {
        s.push_str(&format!("{:08x}\n", base + data.len() as u64));
    }
    s
}

/// Round `a` down to its page.
pub fn page_of(a: u64) -> u64 {
    a / PAGE_SIZE * PAGE_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hexdump_like_hexdump_c() {
        let mut d: Vec<u8> = b"Hello, world!\n".to_vec();
        d.extend([0u8; 40]);
        d.extend(b"end");
        let want = "\
00000000  48 65 6c 6c 6f 2c 20 77  6f 72 6c 64 21 0a 00 00  |Hello, world!...|
00000010  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|
*
00000030  00 00 00 00 00 00 65 6e  64                       |......end|
00000039
";
        assert_eq!(hexdump(&d, 0), want);
    }

    #[test]
    fn hex_and_literals() {
        assert_eq!(parse_hex("de ad,0xbe:ef").unwrap(), vec![0xde, 0xad, 0xbe, 0xef]);
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
        let re = literal(b"a.b\xff");
        assert!(re.is_match(b"xxa.b\xffyy"));
        assert!(!re.is_match(b"xxaxb\xffyy"));
        assert_eq!(escape(b"a\0\"\x01"), "a\\0\\\"\\x01");
    }
}
