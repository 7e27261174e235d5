//! Rewriting an image set: renumber PIDs, move a mapping. Works on decoded images
//! ([`cryo_image::Image`], dynamic messages, so fields our code does not know survive), re-encodes only the
//! images it changed (everything else is copied byte for byte), never touches the input, checks the result
//! with [`cryo_image::check`] and only then gives the output directory its name (built under a temporary
//! name next to it and renamed, so no half set ever appears).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use prost_reflect::{DynamicMessage, ReflectMessage, Value};
use thiserror::Error;

use cryo_image::check::{self, VMA_ANON_SHARED, VMA_AREA_SYSVIPC};
use cryo_image::{codec, pb, sidecar, Image, PAGE_SIZE, PE_PARENT, PE_PRESENT};

/// Why a rewrite was refused or failed. Nothing was written when one of these is returned.
#[derive(Debug, Error)]
pub enum RewriteError {
    #[error("bad --pid-map: {0}")]
    BadMap(String),
    #[error("bad --move-vma: {0}")]
    BadMove(String),
    #[error("{dir}: the input set has {n} problem(s); fix them first (see `crit check`):\n{list}")]
    BrokenInput { dir: String, n: usize, list: String },
    #[error("the rewritten set would not be consistent, nothing written:\n{0}")]
    BrokenOutput(String),
    #[error("{0}: output directory already exists and is not empty")]
    OutputExists(String),
    #[error("{file}: {what}")]
    Image { file: String, what: String },
    #[error(transparent)]
    Decode(#[from] cryo_image::ImageError),
    #[error("re-encoding an entry: {0}")]
    Proto(#[from] prost::DecodeError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

type Result<T, E = RewriteError> = std::result::Result<T, E>;

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> RewriteError + '_ {
    move |e| RewriteError::Io(p.display().to_string(), e)
}

/// The largest PID Linux hands out (PID_MAX_LIMIT on 64-bit).
pub const PID_MAX: u32 = 4 * 1024 * 1024;
/// Lowest address a mapping may have (the usual vm.mmap_min_addr).
pub const MMAP_MIN_ADDR: u64 = 0x10000;
/// End of the x86_64 user address space (4-level paging).
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// Parse `OLD:NEW[,OLD:NEW...]`.
pub fn parse_pid_map(s: &str) -> Result<BTreeMap<u32, u32>> {
    let mut m = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part
            .split_once(':')
            .ok_or_else(|| RewriteError::BadMap(format!("`{part}` is not OLD:NEW")))?;
        let num = |x: &str| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| RewriteError::BadMap(format!("`{x}` in `{part}` is not a pid")))
        };
        let (old, new) = (num(a)?, num(b)?);
        if new == 0 || new > PID_MAX {
            return Err(RewriteError::BadMap(format!("new pid {new} is outside 1..={PID_MAX}")));
        }
        if let Some(prev) = m.insert(old, new) {
            if prev != new {
                return Err(RewriteError::BadMap(format!(
                    "pid {old} is mapped twice ({prev} and {new})"
                )));
            }
        }
    }
    if m.is_empty() {
        return Err(RewriteError::BadMap("empty map".into()));
    }
    Ok(m)
}

/// Parse a number in decimal or 0x hex.
pub fn parse_addr(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Parse `OLD_START:NEW_START`.
pub fn parse_move(s: &str) -> Result<(u64, u64)> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| RewriteError::BadMove(format!("`{s}` is not OLD_START:NEW_START")))?;
    let a = parse_addr(a).ok_or_else(|| RewriteError::BadMove(format!("`{a}` is not an address")))?;
    let b = parse_addr(b).ok_or_else(|| RewriteError::BadMove(format!("`{b}` is not an address")))?;
    Ok((a, b))
}

/// What one output file is made of.
#[derive(Debug)]
enum Out {
    /// The input file, byte for byte.
    Copy(PathBuf),
    /// A decoded image (re-encoded only if `changed`; otherwise its source is copied).
    Img { src: PathBuf, img: Image, changed: bool },
    /// A pages file assembled from byte ranges of an input pages file.
    Pages { src: PathBuf, ranges: Vec<(u64, u64)> },
    /// A symlink (the `parent` link of an incremental dump).
    Link(PathBuf),
    /// New contents of a non-image file (the renumbered sidecar).
    Data(Vec<u8>),
}

/// An image set loaded for rewriting.
#[derive(Debug)]
pub struct Rewrite {
    input: PathBuf,
    files: BTreeMap<String, Out>,
    /// What was changed, for the report.
    pub changes: Vec<String>,
    /// What could not be fixed (the user must know).
    pub notes: Vec<String>,
}

/// Per-pid image names (`core-TID`, `mm-PID`, ...; old per-pid images too).
const PER_PID: &[&str] = &[
    "core",
    "mm",
    "pagemap",
    "ids",
    "fs",
    "sigacts",
    "itimers",
    "posix-timers",
    "creds",
    "rlimit",
    "signal-p",
    "fdinfo-pid",
];

fn split_per_pid(name: &str) -> Option<(&str, u32)> {
    let stem = name.strip_suffix(".img")?;
    let (prefix, n) = stem.rsplit_once('-')?;
    if !PER_PID.contains(&prefix) {
        return None;
    }
    Some((prefix, n.parse().ok()?))
}

/// The pid-bearing fields of each message (proto names).
const PID_FIELDS: &[(&str, &[&str])] = &[
    ("pstree_entry", &["pid", "ppid", "pgid", "sid", "threads"]),
    ("fown_entry", &["pid"]),
    ("pidfd_entry", &["nspid"]),
    ("tty_info_entry", &["sid", "pgrp"]),
    ("file_lock_entry", &["pid"]),
];

/// Map every pid-bearing field inside `msg` (recursively). Returns how many values changed.
fn map_pids_in(msg: &mut DynamicMessage, map: &BTreeMap<u32, u32>) -> usize {
    let name = msg.descriptor().name().to_string();
    let pid_fields = PID_FIELDS
        .iter()
        .find(|(m, _)| *m == name)
        .map(|(_, f)| *f)
        .unwrap_or(&[]);
    let mut n = 0;
    let map_val = |v: &mut Value| -> usize {
        match v {
            Value::U32(x) => match map.get(x) {
                Some(&new) if new != *x => {
                    *x = new;
                    1
                }
                _ => 0,
            },
            Value::I32(x) if *x > 0 => match map.get(&(*x as u32)) {
                Some(&new) if new as i32 != *x => {
                    *x = new as i32;
                    1
                }
                _ => 0,
            },
            _ => 0,
        }
    };
    for (fd, v) in msg.fields_mut() {
        let is_pid = pid_fields.contains(&fd.name());
        match v {
            Value::Message(m) => n += map_pids_in(m, map),
            Value::List(l) => {
                for x in l.iter_mut() {
                    match x {
                        Value::Message(m) => n += map_pids_in(m, map),
                        x if is_pid => n += map_val(x),
                        _ => {}
                    }
                }
            }
            v if is_pid => n += map_val(v),
            _ => {}
        }
    }
    n
}

fn typed<M: Message + Default>(img: &Image, i: usize) -> Option<M> {
    M::decode(img.entries.get(i)?.msg.encode_to_vec().as_slice()).ok()
}

/// Turn a typed message back into the dynamic entry, keeping the dynamic message's unknown fields.
fn set_typed<M: Message>(img: &mut Image, i: usize, m: &M) -> Result<()> {
    let desc = img.entries[i].msg.descriptor();
    let unknown: Vec<_> = img.entries[i].msg.unknown_fields().cloned().collect();
    let mut buf = m.encode_to_vec();
    for u in &unknown {
        u.encode(&mut buf);
    }
    img.entries[i].msg = DynamicMessage::decode(desc, buf.as_slice())?;
    Ok(())
}

/// A checked `--move-vma`: the mapping `vma` (index `k` in the mm's list) of `pid` goes from `old` to `new`.
#[derive(Debug, Clone, Copy)]
struct VmaMove {
    pid: u32,
    k: usize,
    /// The mapping as it was.
    vma: pb::VmaEntry,
    old: u64,
    new: u64,
    new_end: u64,
}

impl VmaMove {
    /// End of the old range.
    fn end(&self) -> u64 {
        self.vma.end
    }

    /// `a` is an address in the old range.
    fn inside(&self, a: u64) -> bool {
        a >= self.old && a < self.vma.end
    }

    /// `a` is an end (exclusive bound) in the old range.
    fn inside_end(&self, a: u64) -> bool {
        a > self.old && a <= self.vma.end
    }

    /// Where the address `a` of the old range lands.
    fn shifted(&self, a: u64) -> u64 {
        a.wrapping_add(self.new.wrapping_sub(self.old))
    }
}

/// Shift the mm fields and the pointer-valued auxv entries of `mm` that point into the moved range; returns
/// the names of the shifted fields (each once).
fn shift_mm_pointers(mm: &mut pb::MmEntry, mv: &VmaMove) -> Vec<&'static str> {
    let mut fixed = Vec::new();
    macro_rules! fix {
        ($f:ident, $test:ident) => {
            if mv.$test(mm.$f) {
                mm.$f = mv.shifted(mm.$f);
                fixed.push(stringify!($f));
            }
        };
    }
    fix!(mm_start_code, inside);
    fix!(mm_end_code, inside_end);
    fix!(mm_start_data, inside);
    fix!(mm_end_data, inside_end);
    fix!(mm_start_stack, inside);
    fix!(mm_start_brk, inside);
    fix!(mm_brk, inside_end);
    fix!(mm_arg_start, inside);
    fix!(mm_arg_end, inside_end);
    fix!(mm_env_start, inside);
    fix!(mm_env_end, inside_end);
    // Pointer-valued auxv entries: AT_PHDR, AT_BASE, AT_ENTRY, AT_PLATFORM, AT_BASE_PLATFORM, AT_RANDOM,
    // AT_EXECFN, AT_SYSINFO_EHDR.
    const AUXV_PTRS: &[u64] = &[3, 7, 9, 15, 24, 25, 31, 33];
    for pair in mm.mm_saved_auxv.chunks_mut(2) {
        if let [key, val] = pair {
            if AUXV_PTRS.contains(key) && mv.inside(*val) {
                *val = mv.shifted(*val);
                fixed.push("mm_saved_auxv");
            }
        }
    }
    fixed.dedup();
    fixed
}

/// A pagemap run after the move, with its offset in the old pages file (`None`: it has no pages there).
type Piece = (pb::PagemapEntry, Option<u64>);

/// The runs of the pagemap image `pm_img` (named `pm_name`) cut at the bounds of the moved range, the pieces
/// inside it at their new address, sorted by address, each with its offset in the old pages file (`None` for
/// a run without pages there); and how many pages moved. Pages kept in the parent dump cannot move.
fn cut_runs(pm_img: &Image, pm_name: &str, mv: &VmaMove) -> Result<(Vec<Piece>, u64)> {
    let bad = |s: String| RewriteError::BadMove(s);
    let (old, end_old) = (mv.old, mv.end());
    let mut segs: Vec<Piece> = Vec::new();
    let mut off = 0u64;
    let mut moved_pages = 0u64;
    for i in 1..pm_img.entries.len() {
        let e: pb::PagemapEntry = typed(pm_img, i).ok_or_else(|| bad(format!("{pm_name}: entry {i}")))?;
        let nr = e.nr_pages.unwrap_or(e.compat_nr_pages as u64);
        let flags = e.flags.unwrap_or(PE_PRESENT);
        let present = flags & PE_PRESENT != 0;
        let end = e.vaddr + nr * PAGE_SIZE;
        // Cut at the VMA's bounds.
        let mut cuts = vec![e.vaddr];
        for b in [old, end_old] {
            if b > e.vaddr && b < end {
                cuts.push(b);
            }
        }
        cuts.push(end);
        for w in cuts.windows(2) {
            let (s, t) = (w[0], w[1]);
            let mut piece = e;
            piece.vaddr = s;
            let n = (t - s) / PAGE_SIZE;
            if e.nr_pages.is_some() {
                piece.nr_pages = Some(n);
            } else {
                piece.compat_nr_pages = n as u32;
            }
            let o = present.then(|| off + (s - e.vaddr));
            if mv.inside(s) {
                if flags & PE_PARENT != 0 {
                    return Err(bad(format!(
                        "pages of {old:#x} are in the parent dump; move the mapping there first"
                    )));
                }
                piece.vaddr = mv.shifted(s);
                moved_pages += n;
            }
            segs.push((piece, o));
        }
        if present {
            off += nr * PAGE_SIZE;
        }
    }
    segs.sort_by_key(|(e, _)| e.vaddr);
    Ok((segs, moved_pages))
}

/// The registers and other pointers of thread core `c` (outside memory) that point into the moved range,
/// as `name=value` (signal handlers as a count).
fn thread_pointers(c: &pb::CoreEntry, mv: &VmaMove) -> Vec<String> {
    let inside = |a: u64| mv.inside(a);
    let mut hits = Vec::new();
    if let Some(ti) = &c.thread_info {
        let g = &ti.gpregs;
        for r in cryo_image::x86::GP_REGS.iter().filter(|r| r.addr) {
            let (n, val) = (r.field, (r.get)(g));
            if inside(val) {
                hits.push(format!("{n}={val:#x}"));
            }
        }
        if inside(ti.clear_tid_addr) {
            hits.push(format!("clear_tid_addr={:#x}", ti.clear_tid_addr));
        }
    }
    if let Some(tc) = &c.thread_core {
        if inside(tc.futex_rla) {
            hits.push(format!("futex_rla={:#x}", tc.futex_rla));
        }
        if let Some(r) = &tc.rseq_entry {
            if inside(r.rseq_abi_pointer) {
                hits.push(format!("rseq={:#x}", r.rseq_abi_pointer));
            }
        }
        if let Some(s) = &tc.sas {
            if inside(s.ss_sp) {
                hits.push(format!("sigaltstack={:#x}", s.ss_sp));
            }
        }
    }
    if let Some(tc) = &c.tc {
        let n = tc
            .sigactions
            .iter()
            .filter(|s| inside(s.sigaction) || inside(s.restorer))
            .count();
        if n > 0 {
            hits.push(format!("{n} signal handler(s)"));
        }
    }
    hits
}

impl Rewrite {
    /// Load `dir`. The set must pass `crit check` first: rewriting a broken set would only hide problems.
    pub fn load(dir: &Path) -> Result<Self> {
        let report = check::check_dir(dir);
        if !report.is_ok() {
            return Err(RewriteError::BrokenInput {
                dir: dir.display().to_string(),
                n: report.problems.len(),
                list: report.to_string(),
            });
        }
        let mut files = BTreeMap::new();
        let mut names: Vec<_> = fs::read_dir(dir).map_err(io(dir))?.filter_map(|e| e.ok()).collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let ft = fs::symlink_metadata(&path).map_err(io(&path))?.file_type();
            if ft.is_symlink() {
                // Keep it working from the new place: point at the absolute target.
                let target = fs::canonicalize(&path).map_err(io(&path))?;
                files.insert(name, Out::Link(target));
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            if name.ends_with(".img") && !check::is_raw_image(&name) {
                let data = fs::read(&path).map_err(io(&path))?;
                let img = codec::decode(&name, &data)?;
                files.insert(
                    name,
                    Out::Img {
                        src: path,
                        img,
                        changed: false,
                    },
                );
            } else {
                files.insert(name, Out::Copy(path));
            }
        }
        Ok(Rewrite {
            input: dir.to_path_buf(),
            files,
            changes: Vec::new(),
            notes: Vec::new(),
        })
    }

    fn img(&self, name: &str) -> Option<&Image> {
        match self.files.get(name) {
            Some(Out::Img { img, .. }) => Some(img),
            _ => None,
        }
    }

    fn img_mut(&mut self, name: &str) -> Option<&mut Image> {
        match self.files.get_mut(name) {
            Some(Out::Img { img, changed, .. }) => {
                *changed = true;
                Some(img)
            }
            _ => None,
        }
    }

    fn pstree(&self) -> Vec<pb::PstreeEntry> {
        self.img("pstree.img")
            .map(|img| (0..img.entries.len()).filter_map(|i| typed(img, i)).collect())
            .unwrap_or_default()
    }

    /// Renumber processes and threads everywhere they appear: check the map, renumber the pid values inside
    /// the images, rename the per-pid images, renumber cryo's sidecar, then note what is left unchanged.
    pub fn map_pids(&mut self, map: &BTreeMap<u32, u32>) -> Result<()> {
        self.check_pid_map(map)?;
        let names: Vec<String> = self.files.keys().cloned().collect();
        self.renumber_values(map, &names);
        self.rename_per_pid(map, &names)?;
        self.renumber_sidecar(map)?;
        self.note_unmapped_pids(map);
        Ok(())
    }

    /// Refuse a map the set cannot take: an incremental dump, an old id that is no process, thread, group or
    /// session of the set, two olds with one new, a new id clashing with an id that stays. Notes the ids that
    /// are only a group or session here.
    fn check_pid_map(&mut self, map: &BTreeMap<u32, u32>) -> Result<()> {
        let tree = self.pstree();
        if self.files.contains_key("parent") {
            return Err(RewriteError::BadMap(
                "the set is an incremental dump (it has a parent link): its parent would need the same map".into(),
            ));
        }
        let mut ids: BTreeSet<u32> = BTreeSet::new();
        let mut groups: BTreeSet<u32> = BTreeSet::new();
        for p in &tree {
            ids.insert(p.pid);
            ids.extend(&p.threads);
            groups.insert(p.pgid);
            groups.insert(p.sid);
        }
        for (&old, &new) in map {
            if !ids.contains(&old) && !groups.contains(&old) {
                return Err(RewriteError::BadMap(format!(
                    "pid {old} is not a process, thread, group or session of the set"
                )));
            }
            if !ids.contains(&old) {
                self.notes.push(format!(
                    "{old} is only a process group or session id here (its leader is not in the set); it is renamed \
                     all the same, so the restored tree must find a group/session {new} to join"
                ));
            }
        }
        // Injective, and no clash with an id that stays.
        let mut seen: HashMap<u32, u32> = HashMap::new();
        for (&old, &new) in map {
            if let Some(o) = seen.insert(new, old) {
                return Err(RewriteError::BadMap(format!("{o} and {old} would both become {new}")));
            }
        }
        let all: BTreeSet<u32> = ids.union(&groups).copied().collect();
        for (&old, &new) in map {
            if old != new && all.contains(&new) && !map.contains_key(&new) {
                return Err(RewriteError::BadMap(format!(
                    "{old}:{new} collides with {new}, which is already in the set and is not mapped away"
                )));
            }
        }
        Ok(())
    }

    /// Renumber the pid values inside every image of `names` (entries and their extra messages).
    fn renumber_values(&mut self, map: &BTreeMap<u32, u32>, names: &[String]) {
        for name in names {
            let Some(Out::Img { img, changed, .. }) = self.files.get_mut(name) else {
                continue;
            };
            let mut n = 0;
            for e in &mut img.entries {
                n += map_pids_in(&mut e.msg, map);
                if let codec::Extra::Msgs(v) = &mut e.extra {
                    for (m, _) in v {
                        n += map_pids_in(m, map);
                    }
                }
            }
            if n > 0 {
                *changed = true;
                self.changes.push(format!("{name}: {n} pid value(s) renumbered"));
            }
        }
    }

    /// Rename the per-pid images of `names` (`core-PID.img`, ...) whose pid is mapped to another.
    fn rename_per_pid(&mut self, map: &BTreeMap<u32, u32>, names: &[String]) -> Result<()> {
        let mut renamed = BTreeMap::new();
        for name in names {
            if let Some((prefix, pid)) = split_per_pid(name) {
                if let Some(&new) = map.get(&pid) {
                    if new != pid {
                        renamed.insert(name.clone(), format!("{prefix}-{new}.img"));
                    }
                }
            }
        }
        let mut moved = Vec::new();
        for (old, new) in &renamed {
            let out = self.files.remove(old).expect("listed");
            moved.push((new.clone(), out));
            self.changes.push(format!("{old} -> {new}"));
        }
        for (new, out) in moved {
            if self.files.insert(new.clone(), out).is_some() {
                return Err(RewriteError::BadMap(format!("two images would be named {new}")));
            }
        }
        Ok(())
    }

    /// cryo's sidecar: its affinity keys are tids (either file name; it is written back as version 2
    /// under the name it had).
    fn renumber_sidecar(&mut self, map: &BTreeMap<u32, u32>) -> Result<()> {
        for name in [sidecar::FILE, sidecar::LEGACY_FILE] {
            let src = match self.files.get(name) {
                Some(Out::Copy(src)) => src.clone(),
                _ => continue,
            };
            let bad = |what: String| RewriteError::Image {
                file: src.display().to_string(),
                what,
            };
            let text = fs::read_to_string(&src).map_err(io(&src))?;
            let side = sidecar::parse(&text).map_err(bad)?;
            let (side, n) = side.renumber_threads(map).map_err(bad)?;
            if n > 0 {
                self.files
                    .insert(name.into(), Out::Data(sidecar::to_json(&side).into_bytes()));
                self.changes.push(format!("{name}: {n} thread id(s) renumbered"));
            }
        }
        Ok(())
    }

    /// What cannot be fixed: /proc paths naming a renumbered pid and netlink sockets in files.img, queued
    /// signals (their siginfo holds the sender's pid), pids inside process memory.
    fn note_unmapped_pids(&mut self, map: &BTreeMap<u32, u32>) {
        let olds: Vec<u32> = map.iter().filter(|(o, n)| o != n).map(|(o, _)| *o).collect();
        let notes = self.file_notes(&olds);
        self.notes.extend(notes);
        let queued = self.queued_signals();
        if queued > 0 {
            self.notes.push(format!(
                "{queued} queued signal(s) carry their sender's pid inside raw siginfo; not rewritten"
            ));
        }
        self.notes.push(
            "pids stored inside process memory (pid files, caches of getpid(), tids in pthread structures) are not \
             rewritten; glibc caches the tid of each thread in its TCB"
                .into(),
        );
    }

    /// Notes for the files.img entries holding a pid that is not rewritten: regular files under
    /// `/proc/OLD` for each pid of `olds`, and netlink sockets.
    fn file_notes(&self, olds: &[u32]) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(img) = self.img("files.img") {
            for i in 0..img.entries.len() {
                if let Some(f) = typed::<pb::FileEntry>(img, i) {
                    if let Some(r) = f.reg {
                        for o in olds {
                            if r.name.starts_with(&format!("/proc/{o}/")) || r.name == format!("/proc/{o}") {
                                notes.push(format!(
                                    "files.img entry {i}: file {} names /proc/{o}; paths are not rewritten",
                                    r.name
                                ));
                            }
                        }
                    }
                    if f.nlsk.is_some() {
                        notes.push(format!(
                            "files.img entry {i}: netlink socket port ids are often the creator's pid; they are not \
                             rewritten"
                        ));
                    }
                }
            }
        }
        notes
    }

    /// How many signals are queued in the core images (shared and per-thread queues).
    fn queued_signals(&self) -> usize {
        let mut queued = 0;
        for name in self.files.keys().filter(|n| n.starts_with("core-")) {
            if let Some(img) = self.img(name) {
                if let Some(c) = typed::<pb::CoreEntry>(img, 0) {
                    queued += c.tc.and_then(|t| t.signals_s).map(|q| q.signals.len()).unwrap_or(0);
                    queued += c
                        .thread_core
                        .and_then(|t| t.signals_p)
                        .map(|q| q.signals.len())
                        .unwrap_or(0);
                }
            }
        }
        queued
    }

    /// Move the mapping of `pid` that starts at `old` to `new`: check the move, shift the mapping and the mm
    /// fields pointing into it, move its pages, then note what still points at the old range.
    pub fn move_vma(&mut self, pid: u32, old: u64, new: u64) -> Result<()> {
        let (mut mm, mv) = self.check_move(pid, old, new)?;
        self.shift_mm(&mut mm, &mv)?;
        self.move_pages(&mv)?;
        self.note_old_pointers(&mv)
    }

    /// Validate a move: `pid` is a process of the set with an mm, it has a mapping starting at `old` that is
    /// not the kernel's, and `new` is a page-aligned start in user space where the mapping overlaps no other.
    /// Returns the mm (to be changed) and the move.
    fn check_move(&self, pid: u32, old: u64, new: u64) -> Result<(pb::MmEntry, VmaMove)> {
        let bad = |s: String| RewriteError::BadMove(s);
        if !self.pstree().iter().any(|p| p.pid == pid) {
            return Err(bad(format!("pid {pid} is not a process of the set")));
        }
        let mm_name = format!("mm-{pid}.img");
        let mm: pb::MmEntry = self
            .img(&mm_name)
            .and_then(|i| typed(i, 0))
            .ok_or_else(|| bad(format!("{mm_name} is missing (a zombie has no memory)")))?;
        let k = mm
            .vmas
            .iter()
            .position(|v| v.start == old)
            .ok_or_else(|| bad(format!("pid {pid} has no mapping starting at {old:#x}")))?;
        let v = mm.vmas[k];
        let len = v.end - v.start;
        if !new.is_multiple_of(PAGE_SIZE) {
            return Err(bad(format!("{new:#x} is not page aligned")));
        }
        let new_end = new.checked_add(len).filter(|&e| e <= TASK_SIZE).ok_or_else(|| {
            bad(format!(
                "{new:#x} + {len:#x} runs past the end of user space ({TASK_SIZE:#x})"
            ))
        })?;
        if new < MMAP_MIN_ADDR {
            return Err(bad(format!("{new:#x} is below mmap_min_addr ({MMAP_MIN_ADDR:#x})")));
        }
        if new == old {
            return Err(bad("the new start is the old one".into()));
        }
        // VDSO/VVAR belong to the kernel; the stack grows down into its guard gap.
        const VMA_AREA_VDSO: u32 = 1 << 3;
        const VMA_AREA_VVAR: u32 = 1 << 12;
        const VMA_AREA_VSYSCALL: u32 = 1 << 2;
        if v.status & (VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL) != 0 {
            return Err(bad(format!(
                "{old:#x} is the kernel's vdso/vvar/vsyscall: it cannot be moved"
            )));
        }
        for (j, w) in mm.vmas.iter().enumerate() {
            if j != k && w.start < new_end && new < w.end {
                return Err(bad(format!(
                    "{new:#x}-{new_end:#x} overlaps the mapping {:#x}-{:#x}",
                    w.start, w.end
                )));
            }
        }
        let mv = VmaMove {
            pid,
            k,
            vma: v,
            old,
            new,
            new_end,
        };
        Ok((mm, mv))
    }

    /// Move the VMA in `mm` (keeping the list sorted), shift the mm fields and pointer-valued auxv entries that
    /// point into it, note AIO rings inside it, and store `mm` back into `mm-PID.img`.
    fn shift_mm(&mut self, mm: &mut pb::MmEntry, mv: &VmaMove) -> Result<()> {
        let mm_name = format!("mm-{}.img", mv.pid);
        let (old, new, new_end) = (mv.old, mv.new, mv.new_end);
        // The VMA itself; keep the list sorted.
        mm.vmas[mv.k].start = new;
        mm.vmas[mv.k].end = new_end;
        mm.vmas.sort_by_key(|w| w.start);
        self.changes.push(format!(
            "{mm_name}: mapping {old:#x}-{:#x} moved to {new:#x}-{new_end:#x}",
            mv.end()
        ));
        let fixed = shift_mm_pointers(mm, mv);
        for a in &mm.aios {
            if mv.inside(a.id) {
                self.notes.push(format!(
                    "AIO ring {:#x} lies in the moved mapping; its id (the ring address) is not changed",
                    a.id
                ));
            }
        }
        if !fixed.is_empty() {
            self.changes.push(format!("{mm_name}: shifted {}", fixed.join(", ")));
        }
        let mm_img = self.img_mut(&mm_name).expect("loaded");
        set_typed(mm_img, 0, mm)
    }

    /// Pagemap: runs inside the VMA move (split where a run spans into a neighbour), the list is sorted
    /// again, and the pages file is reassembled in the new order when the runs' pages are no longer in it.
    fn move_pages(&mut self, mv: &VmaMove) -> Result<()> {
        let bad = |s: String| RewriteError::BadMove(s);
        let pm_name = format!("pagemap-{}.img", mv.pid);
        let pm_img = self.img(&pm_name).ok_or_else(|| bad(format!("{pm_name} is missing")))?;
        let head: pb::PagemapHead = typed(pm_img, 0).ok_or_else(|| bad(format!("{pm_name}: no head")))?;
        let (segs, moved_pages) = cut_runs(pm_img, &pm_name, mv)?;
        let ranges: Vec<(u64, u64)> = segs
            .iter()
            .filter_map(|(e, o)| o.map(|o| (o, e.nr_pages.unwrap_or(e.compat_nr_pages as u64) * PAGE_SIZE)))
            .collect();
        let desc_entry = pm_img.entries[1..].first().map(|e| e.msg.descriptor());
        let in_order = ranges.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0);
        let pages_name = format!("pages-{}.img", head.pages_id);
        if !in_order {
            let src = self.input.join(&pages_name);
            self.files.insert(pages_name.clone(), Out::Pages { src, ranges });
            self.changes
                .push(format!("{pages_name}: pages reordered to follow the new pagemap order"));
        }
        let pm = self.img_mut(&pm_name).expect("loaded");
        if let Some(desc) = desc_entry {
            let first = pm.entries[0].clone();
            let mut entries = vec![first];
            for (e, _) in &segs {
                entries.push(codec::Entry {
                    msg: DynamicMessage::decode(desc.clone(), e.encode_to_vec().as_slice())?,
                    extra: codec::Extra::None,
                });
            }
            pm.entries = entries;
        }
        self.changes
            .push(format!("{pm_name}: {moved_pages} page(s) now at the new address"));
        Ok(())
    }

    /// Notes for what still points at the old range and is not changed: registers and other pointers of
    /// each thread outside memory, other processes sharing the memory, and the words in dumped memory.
    fn note_old_pointers(&mut self, mv: &VmaMove) -> Result<()> {
        let (pid, old) = (mv.pid, mv.old);
        let threads = self
            .pstree()
            .into_iter()
            .find(|p| p.pid == pid)
            .map(|p| p.threads)
            .unwrap_or_default();
        for tid in threads {
            let name = format!("core-{tid}.img");
            let Some(c) = self.img(&name).and_then(|i| typed::<pb::CoreEntry>(i, 0)) else {
                continue;
            };
            let hits = thread_pointers(&c, mv);
            if !hits.is_empty() {
                self.notes.push(format!(
                    "thread {tid}: {} point into the old range and are NOT changed",
                    hits.join(", ")
                ));
            }
        }
        if mv.vma.status & (VMA_ANON_SHARED | VMA_AREA_SYSVIPC) != 0 {
            self.notes.push(format!(
                "{old:#x} is shared memory: other processes mapping it keep their own addresses"
            ));
        }
        // Pointers inside memory: count the aligned words that hold an address in the old range.
        let words = self.count_pointers(pid, old, mv.end())?;
        self.notes.push(format!(
            "pointers inside memory are NOT changed: {words} aligned 8-byte word(s) in pid {pid}'s dumped memory hold \
             an address inside the old range {old:#x}-{:#x}",
            mv.end()
        ));
        Ok(())
    }

    /// Aligned u64 values in `[lo, hi)` over the dumped memory of `pid` (read from the input).
    fn count_pointers(&self, pid: u32, lo: u64, hi: u64) -> Result<u64> {
        let set = cryo_image::ImageSet::open(&self.input)?;
        let pm = set.pagemap(pid)?;
        let path = self.input.join(format!("pages-{}.img", pm.pages_id));
        let mut f = File::open(&path).map_err(io(&path))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0;
        for r in pm.runs.iter() {
            let Some(off) = r.offset else { continue };
            let mut left = r.nr_pages * PAGE_SIZE;
            f.seek(SeekFrom::Start(off)).map_err(io(&path))?;
            while left > 0 {
                let chunk = left.min(buf.len() as u64) as usize;
                f.read_exact(&mut buf[..chunk]).map_err(io(&path))?;
                n += buf[..chunk]
                    .chunks_exact(8)
                    .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
                    .filter(|&x| x >= lo && x < hi)
                    .count() as u64;
                left -= chunk as u64;
            }
        }
        Ok(n)
    }

    /// Write the result to `out`: built in a temporary sibling directory, checked, then renamed.
    pub fn write(&self, out: &Path) -> Result<()> {
        if out.exists() {
            let empty = fs::read_dir(out).map(|mut d| d.next().is_none()).unwrap_or(false);
            if !empty {
                return Err(RewriteError::OutputExists(out.display().to_string()));
            }
        }
        let parent = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{base}.crit-rewrite.{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let res = self.write_into(&tmp).and_then(|_| {
            let r = check::check_dir(&tmp);
            if !r.is_ok() {
                return Err(RewriteError::BrokenOutput(r.to_string()));
            }
            if out.exists() {
                fs::remove_dir(out).map_err(io(out))?;
            }
            fs::rename(&tmp, out).map_err(io(out))?;
            if let Ok(d) = File::open(parent) {
                let _ = d.sync_all();
            }
            Ok(())
        });
        if res.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        res
    }

    fn write_into(&self, dir: &Path) -> Result<()> {
        for (name, out) in &self.files {
            let dst = dir.join(name);
            match out {
                Out::Copy(src)
                | Out::Img {
                    src, changed: false, ..
                } => {
                    fs::copy(src, &dst).map_err(io(&dst))?;
                }
                Out::Img { img, .. } => {
                    let bytes = codec::encode(name, img).map_err(|e| RewriteError::Image {
                        file: name.clone(),
                        what: e.to_string(),
                    })?;
                    fs::write(&dst, bytes).map_err(io(&dst))?;
                }
                Out::Pages { src, ranges } => {
                    let mut f = File::open(src).map_err(io(src))?;
                    let mut w = std::io::BufWriter::new(File::create(&dst).map_err(io(&dst))?);
                    let mut buf = vec![0u8; 1 << 20];
                    for &(off, len) in ranges {
                        f.seek(SeekFrom::Start(off)).map_err(io(src))?;
                        let mut left = len;
                        while left > 0 {
                            let c = left.min(buf.len() as u64) as usize;
                            f.read_exact(&mut buf[..c]).map_err(io(src))?;
                            w.write_all(&buf[..c]).map_err(io(&dst))?;
                            left -= c as u64;
                        }
                    }
                    w.flush().map_err(io(&dst))?;
                }
                Out::Data(bytes) => {
                    fs::write(&dst, bytes).map_err(io(&dst))?;
                }
                Out::Link(target) => {
                    #[cfg(unix)]
                    std::os::unix::fs::symlink(target, &dst).map_err(io(&dst))?;
                    #[cfg(not(unix))]
                    return Err(RewriteError::Io(
                        dst.display().to_string(),
                        std::io::Error::other("symlinks need unix"),
                    ));
                }
            }
        }
        for name in self.files.keys() {
            if let Ok(f) = File::open(dir.join(name)) {
                let _ = f.sync_all();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_maps() {
        let m = parse_pid_map("10:20, 11:21").unwrap();
        assert_eq!(m.into_iter().collect::<Vec<_>>(), vec![(10, 20), (11, 21)]);
        assert!(parse_pid_map("10").unwrap_err().to_string().contains("not OLD:NEW"));
        assert!(parse_pid_map("10:x").unwrap_err().to_string().contains("not a pid"));
        assert!(parse_pid_map("10:0").unwrap_err().to_string().contains("outside"));
        assert!(parse_pid_map("10:5000000").unwrap_err().to_string().contains("outside"));
        assert!(parse_pid_map("10:20,10:21")
            .unwrap_err()
            .to_string()
            .contains("mapped twice"));
        assert!(parse_pid_map("").is_err());
    }

    #[test]
    fn moves() {
        assert_eq!(parse_move("0x1000:0x2000").unwrap(), (0x1000, 0x2000));
        assert_eq!(parse_move("4096:8192").unwrap(), (4096, 8192));
        assert!(parse_move("0x1000").is_err());
        assert!(parse_move("zz:0x1").is_err());
    }

    fn dynamic<M: Message>(name: &str, m: &M) -> DynamicMessage {
        DynamicMessage::decode(codec::message(name), m.encode_to_vec().as_slice()).unwrap()
    }

    #[test]
    fn pids_in_every_pid_field() {
        let map: BTreeMap<u32, u32> = [(10, 110), (11, 111)].into();
        // A tty's session and foreground group.
        let tty = pb::TtyInfoEntry {
            id: 1,
            sid: 10,
            pgrp: 11,
            rdev: 12,
            ..Default::default()
        };
        let mut m = dynamic("tty_info_entry", &tty);
        assert_eq!(map_pids_in(&mut m, &map), 2);
        let t: pb::TtyInfoEntry = m.transcode_to().unwrap();
        assert_eq!((t.sid, t.pgrp, t.rdev), (110, 111, 12));
        // A pidfd's pid and its owner (nested fown inside a file entry).
        let f = pb::FileEntry {
            r#type: 20,
            id: 3,
            pidfd: Some(pb::PidfdEntry {
                id: 3,
                ino: 10,
                flags: 0,
                nspid: 11,
                fown: pb::FownEntry {
                    pid: 10,
                    ..Default::default()
                },
            }),
            ..Default::default()
        };
        let mut m = dynamic("file_entry", &f);
        assert_eq!(map_pids_in(&mut m, &map), 2);
        let f: pb::FileEntry = m.transcode_to().unwrap();
        let p = f.pidfd.unwrap();
        assert_eq!((p.nspid, p.fown.pid, p.ino, p.id), (111, 110, 10, 3));
        // A file lock's owner; negative and unmapped values stay.
        let l = pb::FileLockEntry {
            pid: 11,
            fd: 10,
            ..Default::default()
        };
        let mut m = dynamic("file_lock_entry", &l);
        assert_eq!(map_pids_in(&mut m, &map), 1);
        let l: pb::FileLockEntry = m.transcode_to().unwrap();
        assert_eq!((l.pid, l.fd), (111, 10));
        let l = pb::FileLockEntry {
            pid: -1,
            ..Default::default()
        };
        assert_eq!(map_pids_in(&mut dynamic("file_lock_entry", &l), &map), 0);
    }

    #[test]
    fn per_pid_names() {
        assert_eq!(split_per_pid("core-12.img"), Some(("core", 12)));
        assert_eq!(split_per_pid("pagemap-7.img"), Some(("pagemap", 7)));
        assert_eq!(split_per_pid("pagemap-shmem-7.img"), None);
        assert_eq!(split_per_pid("fdinfo-2.img"), None);
        assert_eq!(split_per_pid("pages-1.img"), None);
    }
}
