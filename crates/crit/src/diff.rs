//! Semantic comparison of two image sets: processes added and gone, and for each process in both, its
//! mappings, fds (sockets and pipes with their queued bytes), credentials, registers, task state, and its
//! memory compared page by page (streamed from the pages files, never loaded whole), reported as address
//! ranges with page counts.
//!
//! Processes are matched by pid, mappings by start address, fds by number, threads by tid. The result is a
//! plain data structure ([`SetDiff`]) that serialises to the JSON `crit diff --json` prints, so the TUI can
//! use it as is.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use prost::Message;
use serde::Serialize;
use serde_json::{Map, Value as Json};

use cryo_image::check::{VMA_ANON_SHARED, VMA_AREA_SYSVIPC, VMA_FILE_PRIVATE, VMA_FILE_SHARED};
use cryo_image::{json, pb, ImageError, ImageSet, Pagemap, PAGE_SIZE};

/// One field that differs: its path (`gpregs.ip`, `uid`) and both values as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Json,
    pub new: Json,
}

/// A process that is only on one side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcInfo {
    pub pid: u32,
    pub comm: String,
    pub threads: usize,
}

/// A mapping (`start-end prot kind`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// `rwxp` / `rw-s`.
    pub prot: String,
    /// File path, `[heap]`, `[stack]`, `[vdso]`, `[vvar]`, `anon`, `shmem`, `sysvipc`.
    pub what: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MappingChange {
    pub start: u64,
    pub old: Mapping,
    pub new: Mapping,
    pub fields: Vec<FieldChange>,
}

/// An fd as one line (`REG /etc/passwd pos 12`, `PIPE pipe:[1234] 10 bytes queued`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fd {
    pub fd: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub what: String,
    pub socket: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FdChange {
    pub fd: u32,
    pub old: Fd,
    pub new: Fd,
    /// Unified diff of the two file entries as pretty JSON (ids left out).
    pub diff: String,
}

/// Per-thread differences: registers (general and FPU), credentials, and other thread state.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ThreadDiff {
    pub tid: u32,
    /// Its tid in B (the same unless matching by order).
    pub tid_b: u32,
    pub registers: Vec<FieldChange>,
    /// FPU/SSE/AVX state differs (too big to list register by register).
    pub fpregs_changed: bool,
    pub creds: Vec<FieldChange>,
    pub other: Vec<FieldChange>,
}

/// A range of pages with the same fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageRange {
    pub start: u64,
    pub end: u64,
    pub pages: u64,
    /// `changed` (in both, different bytes), `added` (only in B), `removed` (only in A).
    pub kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct MemoryDiff {
    /// Pages dumped on both sides and compared.
    pub compared: u64,
    pub changed: u64,
    pub added: u64,
    pub removed: u64,
    pub ranges: Vec<PageRange>,
}

impl MemoryDiff {
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// A process in both sets.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ProcDiff {
    pub pid: u32,
    /// Its pid in B (the same unless matching by order).
    pub pid_b: u32,
    pub comm: String,
    /// pstree (ppid, pgid, sid) and task state (tc) fields.
    pub task: Vec<FieldChange>,
    pub threads_added: Vec<u32>,
    pub threads_gone: Vec<u32>,
    pub mappings_added: Vec<Mapping>,
    pub mappings_removed: Vec<Mapping>,
    pub mappings_changed: Vec<MappingChange>,
    /// Other mm fields (brk, arg/env, auxv...).
    pub mm: Vec<FieldChange>,
    pub fds_added: Vec<Fd>,
    pub fds_removed: Vec<Fd>,
    pub fds_changed: Vec<FdChange>,
    pub threads: Vec<ThreadDiff>,
    pub memory: MemoryDiff,
}

impl ProcDiff {
    pub fn is_empty(&self) -> bool {
        self.task.is_empty()
            && self.threads_added.is_empty()
            && self.threads_gone.is_empty()
            && self.mappings_added.is_empty()
            && self.mappings_removed.is_empty()
            && self.mappings_changed.is_empty()
            && self.mm.is_empty()
            && self.fds_added.is_empty()
            && self.fds_removed.is_empty()
            && self.fds_changed.is_empty()
            && self.threads.is_empty()
            && self.memory.is_empty()
    }
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct SetDiff {
    pub a: String,
    pub b: String,
    pub same: bool,
    pub processes_added: Vec<ProcInfo>,
    pub processes_gone: Vec<ProcInfo>,
    /// Only processes with differences.
    pub processes_changed: Vec<ProcDiff>,
    /// Processes in both sets with no difference at all.
    pub processes_same: Vec<u32>,
    /// Shared memory objects (memfd, shared anonymous, SysV) that differ, by pagemap image.
    pub shmem: Vec<ShmemDiff>,
}

/// A shared memory object (`pagemap-shmem-ID.img`) that differs: only on one side, or its pages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShmemDiff {
    pub image: String,
    /// `added`, `gone` or `changed`.
    pub status: &'static str,
    /// Ranges are offsets in the object.
    pub memory: MemoryDiff,
}

/// Errors while comparing (an unreadable set): `crit diff` exits 2.
pub type Result<T> = std::result::Result<T, ImageError>;

fn typed<M: Message + Default>(img: &cryo_image::Image, i: usize) -> Option<M> {
    M::decode(img.entries.get(i)?.msg.encode_to_vec().as_slice()).ok()
}

/// Field-by-field differences of two JSON values: objects recurse by key, arrays by index (`a.b[3].c`);
/// an element or key on one side only is compared with `null`.
pub fn json_changes(prefix: &str, a: &Json, b: &Json, out: &mut Vec<FieldChange>) {
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            // Keep the order of the message's fields: first A's keys, then B's new ones.
            let mut ordered: Vec<&String> = x.keys().collect();
            ordered.extend(y.keys().filter(|k| !x.contains_key(*k)));
            debug_assert_eq!(ordered.len(), keys.len());
            for k in ordered {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let (va, vb) = (x.get(k).unwrap_or(&Json::Null), y.get(k).unwrap_or(&Json::Null));
                json_changes(&path, va, vb, out);
            }
        }
        (Json::Array(x), Json::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let (va, vb) = (x.get(i).unwrap_or(&Json::Null), y.get(i).unwrap_or(&Json::Null));
                json_changes(&format!("{prefix}[{i}]"), va, vb, out);
            }
        }
        _ if a != b => out.push(FieldChange {
            field: prefix.to_string(),
            old: a.clone(),
            new: b.clone(),
        }),
        _ => {}
    }
}

/// One side of the comparison, with what is needed to describe mappings and fds.
struct Side<'a> {
    set: &'a ImageSet,
    tree: BTreeMap<u32, pb::PstreeEntry>,
    /// The pstree in image order.
    order: Vec<pb::PstreeEntry>,
    /// files.img entries by id, typed and as pretty JSON.
    files: HashMap<u32, (pb::FileEntry, Json)>,
    pipe_bytes: HashMap<u32, usize>,
    sk_bytes: HashMap<u32, usize>,
}

impl<'a> Side<'a> {
    fn load(set: &'a ImageSet) -> Result<Self> {
        let order = set.pstree()?;
        let tree = order.iter().map(|p| (p.pid, p.clone())).collect();
        let mut files = HashMap::new();
        if set.has("files.img") {
            let img = set.image("files.img")?;
            for (i, e) in img.entries.iter().enumerate() {
                if let Some(f) = typed::<pb::FileEntry>(&img, i) {
                    files.insert(f.id, (f, Json::Object(json::message_to_json(&e.msg, true, false))));
                }
            }
        }
        let mut pipe_bytes = HashMap::new();
        for (e, data) in set.pipes_data()? {
            *pipe_bytes.entry(e.pipe_id).or_default() += data.len();
        }
        let mut sk_bytes = HashMap::new();
        if set.has("sk-queues.img") {
            for (e, data) in set.with_payload::<pb::SkPacketEntry>("sk-queues.img")? {
                *sk_bytes.entry(e.id_for).or_default() += data.len();
            }
        }
        Ok(Side {
            set,
            tree,
            order,
            files,
            pipe_bytes,
            sk_bytes,
        })
    }

    fn core(&self, tid: u32) -> Option<(pb::CoreEntry, Json)> {
        let img = self.set.image(&format!("core-{tid}.img")).ok()?;
        let c = typed::<pb::CoreEntry>(&img, 0)?;
        let j = Json::Object(json::message_to_json(&img.entries.first()?.msg, true, false));
        Some((c, j))
    }

    fn comm(&self, pid: u32) -> String {
        self.core(pid)
            .and_then(|(c, _)| c.tc.map(|t| t.comm))
            .unwrap_or_default()
    }

    fn info(&self, p: &pb::PstreeEntry) -> ProcInfo {
        ProcInfo {
            pid: p.pid,
            comm: self.comm(p.pid),
            threads: p.threads.len(),
        }
    }

    fn mapping(&self, v: &pb::VmaEntry, mm: &pb::MmEntry) -> Mapping {
        let r = |bit: u32, c: char| if v.prot & bit != 0 { c } else { '-' };
        let prot = format!(
            "{}{}{}{}",
            r(1, 'r'),
            r(2, 'w'),
            r(4, 'x'),
            if v.flags & 1 != 0 { 's' } else { 'p' }
        );
        let what = if v.status & (1 << 3) != 0 {
            "[vdso]".into()
        } else if v.status & (1 << 12) != 0 {
            "[vvar]".into()
        } else if v.status & (1 << 2) != 0 {
            "[vsyscall]".into()
        } else if v.status & (1 << 5) != 0 {
            "[heap]".into()
        } else if v.status & (1 << 1) != 0 || (v.start <= mm.mm_start_stack && mm.mm_start_stack < v.end) {
            "[stack]".into()
        } else if v.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
            match self.files.get(&(v.shmid as u32)).map(|(f, _)| f) {
                Some(pb::FileEntry { reg: Some(r), .. }) => r.name.clone(),
                Some(pb::FileEntry { memfd: Some(m), .. }) => format!("memfd inode {}", m.inode_id),
                _ => format!("file id {}", v.shmid),
            }
        } else if v.status & VMA_AREA_SYSVIPC != 0 {
            format!("sysvipc shm {}", v.shmid)
        } else if v.status & VMA_ANON_SHARED != 0 {
            format!("shmem {}", v.shmid)
        } else {
            "anon".into()
        };
        Mapping {
            start: v.start,
            end: v.end,
            prot,
            what,
        }
    }

    fn fds(&self, pid: u32) -> BTreeMap<u32, (Fd, Json)> {
        let mut out = BTreeMap::new();
        let Ok(ids) = self.set.ids(pid) else { return out };
        let Ok(fds) = self.set.fdinfo(ids.files_id) else {
            return out;
        };
        for fd in fds {
            let kind = cryo_image::check::fd_type_name(fd.r#type);
            let (what, j) = match self.files.get(&fd.id) {
                Some((f, j)) => (self.describe(f), strip_ids(j)),
                None => (format!("file id {} (missing)", fd.id), Json::Null),
            };
            let socket = matches!(fd.r#type, 4 | 5 | 10 | 13);
            out.insert(
                fd.fd,
                (
                    Fd {
                        fd: fd.fd,
                        kind,
                        what,
                        socket,
                    },
                    j,
                ),
            );
        }
        out
    }

    /// One line for a file.
    fn describe(&self, f: &pb::FileEntry) -> String {
        if let Some(r) = &f.reg {
            return format!("{} pos {} flags {:#o}", r.name, r.pos, r.flags);
        }
        if let Some(p) = &f.pipe {
            let q = self.pipe_bytes.get(&p.pipe_id).copied().unwrap_or(0);
            return format!("pipe:[{}] {} bytes queued", p.pipe_id, q);
        }
        if let Some(p) = &f.fifo {
            return format!("fifo pipe:[{}]", p.pipe_id);
        }
        if let Some(s) = &f.isk {
            let proto = match s.proto {
                6 => "tcp",
                17 => "udp",
                _ => "ip",
            };
            let addr = |a: &[u32], port: u32| {
                if a.len() == 1 {
                    let b = a[0].to_le_bytes();
                    format!("{}.{}.{}.{}:{port}", b[0], b[1], b[2], b[3])
                } else {
                    let w: Vec<String> = a.iter().map(|x| format!("{:08x}", u32::from_be(*x))).collect();
                    format!("[{}]:{port}", w.join(""))
                }
            };
            // A connected TCP socket's queues are in tcp-stream-INO.img.
            let queues = self
                .set
                .image(&format!("tcp-stream-{:x}.img", s.ino))
                .ok()
                .and_then(|img| typed::<pb::TcpStreamEntry>(&img, 0))
                .map(|t| format!(", {} bytes queued to read, {} to send", t.inq_len, t.outq_len))
                .unwrap_or_default();
            return format!(
                "{proto} {} -> {} state {}{queues}",
                addr(&s.src_addr, s.src_port),
                addr(&s.dst_addr, s.dst_port),
                tcp_state(s.state)
            );
        }
        if let Some(u) = &f.usk {
            let q = self.sk_bytes.get(&u.id).copied().unwrap_or(0);
            let name = String::from_utf8_lossy(&u.name).replace('\0', "@");
            return format!(
                "unix {} ino {} peer {} state {}{} {} bytes queued",
                match u.r#type {
                    1 => "stream",
                    2 => "dgram",
                    5 => "seqpacket",
                    _ => "?",
                },
                u.ino,
                u.peer,
                tcp_state(u.state),
                if name.is_empty() {
                    String::new()
                } else {
                    format!(" name {name}")
                },
                q
            );
        }
        if let Some(e) = &f.efd {
            return format!("eventfd counter {}", e.counter);
        }
        if let Some(m) = &f.memfd {
            return format!("memfd inode {} pos {}", m.inode_id, m.pos);
        }
        cryo_image::check::fd_type_name(f.r#type)
    }
}

fn tcp_state(s: u32) -> String {
    const N: &[&str] = &[
        "?",
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
    ];
    N.get(s as usize)
        .map(|x| x.to_string())
        .unwrap_or_else(|| s.to_string())
}

/// A file entry's JSON without its ids (which differ between dumps for the same file).
fn strip_ids(j: &Json) -> Json {
    match j {
        Json::Object(m) => {
            let mut o = Map::new();
            for (k, v) in m {
                if k == "id" {
                    continue;
                }
                o.insert(k.clone(), strip_ids(v));
            }
            Json::Object(o)
        }
        x => x.clone(),
    }
}

/// Unified diff of two JSON values, pretty printed.
pub fn json_text_diff(a: &Json, b: &Json) -> String {
    let ta = serde_json::to_string_pretty(a).unwrap_or_default() + "\n";
    let tb = serde_json::to_string_pretty(b).unwrap_or_default() + "\n";
    similar::TextDiff::from_lines(&ta, &tb)
        .unified_diff()
        .context_radius(2)
        .header("a", "b")
        .to_string()
}

fn mapping_fields(a: &pb::VmaEntry, b: &pb::VmaEntry, ma: &Mapping, mb: &Mapping) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut f = |name: &str, x: Json, y: Json| {
        if x != y {
            out.push(FieldChange {
                field: name.into(),
                old: x,
                new: y,
            })
        }
    };
    f(
        "end",
        Json::from(format!("{:#x}", a.end)),
        Json::from(format!("{:#x}", b.end)),
    );
    f("prot", Json::from(ma.prot.clone()), Json::from(mb.prot.clone()));
    f(
        "flags",
        Json::from(format!("{:#x}", a.flags)),
        Json::from(format!("{:#x}", b.flags)),
    );
    f(
        "status",
        Json::from(format!("{:#x}", a.status)),
        Json::from(format!("{:#x}", b.status)),
    );
    f("pgoff", Json::from(a.pgoff), Json::from(b.pgoff));
    f("what", Json::from(ma.what.clone()), Json::from(mb.what.clone()));
    f("madv", Json::from(a.madv), Json::from(b.madv));
    out
}

/// Reads pages of one process in address order, a chunk at a time.
struct PageReader<'a> {
    set: &'a ImageSet,
    /// The process whose memory this is (None: a shared memory object, no parent lookups).
    pid: Option<u32>,
    pm: std::sync::Arc<Pagemap>,
    file: Option<File>,
}

impl<'a> PageReader<'a> {
    fn new(set: &'a ImageSet, pid: u32) -> Result<Self> {
        Ok(Self::with(set, Some(pid), set.pagemap(pid)?))
    }

    fn with(set: &'a ImageSet, pid: Option<u32>, pm: std::sync::Arc<Pagemap>) -> Self {
        let path = set.path(&format!("pages-{}.img", pm.pages_id));
        let file = File::open(&path).ok();
        PageReader { set, pid, pm, file }
    }

    /// Page runs that have data (present here or in a parent dump), as (start, end).
    fn spans(&self) -> Vec<(u64, u64)> {
        self.pm
            .runs
            .iter()
            .filter(|r| r.offset.is_some() || (self.pid.is_some() && r.flags & cryo_image::PE_PARENT != 0))
            .map(|r| (r.vaddr, r.end()))
            .collect()
    }

    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<()> {
        let name = self.set.path(&format!("pages-{}.img", self.pm.pages_id));
        if let Some(r) = self.pm.find(addr) {
            if let (Some(off), Some(f)) = (r.offset, self.file.as_mut()) {
                if addr + buf.len() as u64 <= r.end() {
                    let io = |e| ImageError::Io {
                        file: name.display().to_string(),
                        cause: e,
                    };
                    f.seek(SeekFrom::Start(off + (addr - r.vaddr))).map_err(io)?;
                    f.read_exact(buf).map_err(io)?;
                    return Ok(());
                }
            }
        }
        match self.pid {
            Some(pid) => match self.set.read_memory_into(pid, addr, buf)? {
                None => Ok(()),
                Some(m) => Err(ImageError::Invalid {
                    file: self.set.dir().display().to_string(),
                    what: format!("pid {pid}: page {m:#x} is in the pagemap but in no dump (parent missing?)"),
                }),
            },
            None => Err(ImageError::Invalid {
                file: name.display().to_string(),
                what: format!("page {addr:#x} is not in the file"),
            }),
        }
    }
}

/// Split `[start, end)` at every boundary of `spans` and say for each piece whether A and B have it.
fn coverage(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64, bool, bool)> {
    let mut cuts: Vec<u64> = a.iter().chain(b).flat_map(|&(s, e)| [s, e]).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let covers = |v: &[(u64, u64)], x: u64| {
        let i = v.partition_point(|r| r.1 <= x);
        v.get(i).is_some_and(|r| r.0 <= x)
    };
    let mut out: Vec<(u64, u64, bool, bool)> = Vec::new();
    for w in cuts.windows(2) {
        let (s, e) = (w[0], w[1]);
        let (ia, ib) = (covers(a, s), covers(b, s));
        if !ia && !ib {
            continue;
        }
        out.push((s, e, ia, ib));
    }
    out
}

fn push_range(ranges: &mut Vec<PageRange>, start: u64, pages: u64, kind: &'static str) {
    if let Some(last) = ranges.last_mut() {
        if last.kind == kind && last.end == start {
            last.end += pages * PAGE_SIZE;
            last.pages += pages;
            return;
        }
    }
    ranges.push(PageRange {
        start,
        end: start + pages * PAGE_SIZE,
        pages,
        kind,
    });
}

/// Compare the dumped memory of `pid` in both sets, page by page.
pub fn diff_memory(a: &ImageSet, b: &ImageSet, pid: u32) -> Result<MemoryDiff> {
    compare_pages(PageReader::new(a, pid)?, PageReader::new(b, pid)?)
}

/// Compare a shared memory object (`pagemap-shmem-ID.img`) in both sets; addresses are offsets in it.
pub fn diff_shmem(a: &ImageSet, b: &ImageSet, name: &str) -> Result<MemoryDiff> {
    let ra = PageReader::with(a, None, std::sync::Arc::new(a.pagemap_file(name)?));
    let rb = PageReader::with(b, None, std::sync::Arc::new(b.pagemap_file(name)?));
    compare_pages(ra, rb)
}

fn compare_pages(mut ra: PageReader, mut rb: PageReader) -> Result<MemoryDiff> {
    let (sa, sb) = (ra.spans(), rb.spans());
    let mut d = MemoryDiff::default();
    const CHUNK: u64 = 256; // pages per read
    let mut ba = vec![0u8; (CHUNK * PAGE_SIZE) as usize];
    let mut bb = vec![0u8; (CHUNK * PAGE_SIZE) as usize];
    for (s, e, ia, ib) in coverage(&sa, &sb) {
        let pages = (e - s) / PAGE_SIZE;
        match (ia, ib) {
            (true, false) => {
                d.removed += pages;
                push_range(&mut d.ranges, s, pages, "removed");
            }
            (false, true) => {
                d.added += pages;
                push_range(&mut d.ranges, s, pages, "added");
            }
            _ => {
                let mut at = s;
                while at < e {
                    let n = ((e - at) / PAGE_SIZE).min(CHUNK);
                    let len = (n * PAGE_SIZE) as usize;
                    ra.read(at, &mut ba[..len])?;
                    rb.read(at, &mut bb[..len])?;
                    for (k, (pa, pb)) in ba[..len]
                        .chunks_exact(PAGE_SIZE as usize)
                        .zip(bb[..len].chunks_exact(PAGE_SIZE as usize))
                        .enumerate()
                    {
                        d.compared += 1;
                        if pa != pb {
                            d.changed += 1;
                            push_range(&mut d.ranges, at + k as u64 * PAGE_SIZE, 1, "changed");
                        }
                    }
                    at += n * PAGE_SIZE;
                }
            }
        }
    }
    Ok(d)
}

fn diff_thread(tid: u32, a: &Json, b: &Json) -> ThreadDiff {
    let mut t = ThreadDiff {
        tid,
        tid_b: tid,
        ..Default::default()
    };
    let get = |j: &Json, path: &[&str]| {
        let mut v = j;
        for p in path {
            v = v.get(*p).unwrap_or(&Json::Null);
        }
        v.clone()
    };
    json_changes(
        "",
        &get(a, &["thread_info", "gpregs"]),
        &get(b, &["thread_info", "gpregs"]),
        &mut t.registers,
    );
    t.fpregs_changed = get(a, &["thread_info", "fpregs"]) != get(b, &["thread_info", "fpregs"]);
    json_changes(
        "",
        &get(a, &["thread_core", "creds"]),
        &get(b, &["thread_core", "creds"]),
        &mut t.creds,
    );
    // The rest of the thread's state (signal mask, rseq, sigaltstack, ...), creds and registers excluded.
    let rest = |j: &Json| {
        let mut tc = get(j, &["thread_core"]);
        if let Some(o) = tc.as_object_mut() {
            o.remove("creds");
        }
        let mut ti = get(j, &["thread_info"]);
        if let Some(o) = ti.as_object_mut() {
            o.remove("gpregs");
            o.remove("fpregs");
        }
        serde_json::json!({"thread_core": tc, "thread_info": ti})
    };
    json_changes("", &rest(a), &rest(b), &mut t.other);
    t
}

/// Compare process `pa` of A with `pbe` of B (paired by `m`; `pids` translates A's ids into B's): its
/// pstree fields, threads, task and thread state, mappings, mm fields and memory, then its fds.
fn diff_process(
    a: &Side,
    b: &Side,
    pa: &pb::PstreeEntry,
    pbe: &pb::PstreeEntry,
    m: Match,
    pids: &HashMap<u32, u32>,
) -> Result<ProcDiff> {
    let (pid, pid_b) = (pa.pid, pbe.pid);
    let mut d = ProcDiff {
        pid,
        pid_b,
        comm: b.comm(pid_b),
        ..Default::default()
    };
    diff_pstree_fields(&mut d, pa, pbe, pids);
    let pairs = pair_threads(&mut d, pa, pbe, m);
    diff_cores(&mut d, a, b, &pairs);
    if a.set.has(&format!("mm-{pid}.img")) && b.set.has(&format!("mm-{pid_b}.img")) {
        diff_mm(&mut d, a, b)?;
    }
    diff_fds(&mut d, a, b);
    Ok(d)
}

/// The pstree fields (ppid, pgid, sid) that differ once A's ids are translated by `pids` (identity when
/// matching by pid), into `d.task`.
fn diff_pstree_fields(d: &mut ProcDiff, pa: &pb::PstreeEntry, pbe: &pb::PstreeEntry, pids: &HashMap<u32, u32>) {
    let tr = |x: u32| pids.get(&x).copied().unwrap_or(x);
    for (name, x, y) in [
        ("ppid", pa.ppid, pbe.ppid),
        ("pgid", pa.pgid, pbe.pgid),
        ("sid", pa.sid, pbe.sid),
    ] {
        if tr(x) != y {
            d.task.push(FieldChange {
                field: name.into(),
                old: x.into(),
                new: y.into(),
            });
        }
    }
}

/// Pair the threads of the two processes by tid, or by position in the thread list; the unpaired ones go
/// to `d.threads_added` / `d.threads_gone`. Returns the pairs (tid in A, tid in B).
fn pair_threads(d: &mut ProcDiff, pa: &pb::PstreeEntry, pbe: &pb::PstreeEntry, m: Match) -> Vec<(u32, u32)> {
    match m {
        Match::Pid => {
            let ta: BTreeSet<u32> = pa.threads.iter().copied().collect();
            let tb: BTreeSet<u32> = pbe.threads.iter().copied().collect();
            d.threads_added = tb.difference(&ta).copied().collect();
            d.threads_gone = ta.difference(&tb).copied().collect();
            ta.intersection(&tb).map(|&t| (t, t)).collect()
        }
        Match::Order => {
            let n = pa.threads.len().min(pbe.threads.len());
            d.threads_gone = pa.threads[n..].to_vec();
            d.threads_added = pbe.threads[n..].to_vec();
            pa.threads[..n]
                .iter()
                .copied()
                .zip(pbe.threads[..n].iter().copied())
                .collect()
        }
    }
}

/// Task-wide state (the core's tc, into `d.task`) and the state of each thread pair that differs (into
/// `d.threads`).
fn diff_cores(d: &mut ProcDiff, a: &Side, b: &Side, pairs: &[(u32, u32)]) {
    let (ca, cb) = (a.core(d.pid), b.core(d.pid_b));
    if let (Some((_, ja)), Some((_, jb))) = (&ca, &cb) {
        json_changes(
            "tc",
            ja.get("tc").unwrap_or(&Json::Null),
            jb.get("tc").unwrap_or(&Json::Null),
            &mut d.task,
        );
    }
    for &(ta, tb) in pairs {
        let (Some((_, ja)), Some((_, jb))) = (a.core(ta), b.core(tb)) else {
            continue;
        };
        let mut t = diff_thread(ta, &ja, &jb);
        t.tid_b = tb;
        if !t.registers.is_empty() || t.fpregs_changed || !t.creds.is_empty() || !t.other.is_empty() {
            d.threads.push(t);
        }
    }
}

/// Mappings (by start address), the other mm fields and the memory of a process both sides have an mm
/// image for.
fn diff_mm(d: &mut ProcDiff, a: &Side, b: &Side) -> Result<()> {
    let (pid, pid_b) = (d.pid, d.pid_b);
    let (mma, mmb) = (a.set.mm(pid)?, b.set.mm(pid_b)?);
    diff_mappings(d, a, b, &mma, &mmb);
    // The other mm fields, as JSON (hex where crit prints hex).
    let mm_json = |set: &ImageSet, pid: u32| -> Result<Json> {
        let img = set.image(&format!("mm-{pid}.img"))?;
        let mut j = img
            .entries
            .first()
            .map(|e| Json::Object(json::message_to_json(&e.msg, true, false)))
            .unwrap_or(Json::Null);
        if let Some(o) = j.as_object_mut() {
            o.remove("vmas");
        }
        Ok(j)
    };
    json_changes("", &mm_json(a.set, pid)?, &mm_json(b.set, pid_b)?, &mut d.mm);
    d.memory = compare_pages(PageReader::new(a.set, pid)?, PageReader::new(b.set, pid_b)?)?;
    Ok(())
}

/// Mappings removed, changed (same start, other fields) and added, matched by start address.
fn diff_mappings(d: &mut ProcDiff, a: &Side, b: &Side, mma: &pb::MmEntry, mmb: &pb::MmEntry) {
    let va: BTreeMap<u64, &pb::VmaEntry> = mma.vmas.iter().map(|v| (v.start, v)).collect();
    let vb: BTreeMap<u64, &pb::VmaEntry> = mmb.vmas.iter().map(|v| (v.start, v)).collect();
    for (s, v) in &va {
        match vb.get(s) {
            None => d.mappings_removed.push(a.mapping(v, mma)),
            Some(w) => {
                let (ma, mb) = (a.mapping(v, mma), b.mapping(w, mmb));
                let fields = mapping_fields(v, w, &ma, &mb);
                if !fields.is_empty() {
                    d.mappings_changed.push(MappingChange {
                        start: *s,
                        old: ma,
                        new: mb,
                        fields,
                    });
                }
            }
        }
    }
    for (s, w) in &vb {
        if !va.contains_key(s) {
            d.mappings_added.push(b.mapping(w, mmb));
        }
    }
}

/// Fds removed, changed (with a diff of their file entries) and added, matched by number.
fn diff_fds(d: &mut ProcDiff, a: &Side, b: &Side) {
    let (fa, fb) = (a.fds(d.pid), b.fds(d.pid_b));
    for (n, (fd, ja)) in &fa {
        match fb.get(n) {
            None => d.fds_removed.push(fd.clone()),
            Some((fd2, jb)) => {
                if fd != fd2 || ja != jb {
                    d.fds_changed.push(FdChange {
                        fd: *n,
                        old: fd.clone(),
                        new: fd2.clone(),
                        diff: json_text_diff(ja, jb),
                    });
                }
            }
        }
    }
    for (n, (fd, _)) in &fb {
        if !fa.contains_key(n) {
            d.fds_added.push(fd.clone());
        }
    }
}

/// How processes (and their threads) of the two sets are paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Match {
    /// Same pid, same tid (dumps of the same processes).
    #[default]
    Pid,
    /// Same position in the process tree and thread lists (the same program run twice, other pids).
    Order,
}

/// Compare two image sets, pairing processes by pid.
pub fn diff_sets(a: &ImageSet, b: &ImageSet) -> Result<SetDiff> {
    diff_sets_with(a, b, Match::Pid)
}

/// Compare two image sets.
pub fn diff_sets_with(a: &ImageSet, b: &ImageSet, m: Match) -> Result<SetDiff> {
    let (sa, sb) = (Side::load(a)?, Side::load(b)?);
    let mut d = SetDiff {
        a: a.dir().display().to_string(),
        b: b.dir().display().to_string(),
        ..Default::default()
    };
    let pairs: Vec<(&pb::PstreeEntry, &pb::PstreeEntry)> = match m {
        Match::Pid => sa
            .order
            .iter()
            .filter_map(|p| sb.tree.get(&p.pid).map(|q| (p, q)))
            .collect(),
        Match::Order => sa.order.iter().zip(sb.order.iter()).collect(),
    };
    let paired_a: BTreeSet<u32> = pairs.iter().map(|(p, _)| p.pid).collect();
    let paired_b: BTreeSet<u32> = pairs.iter().map(|(_, q)| q.pid).collect();
    let mut pids: HashMap<u32, u32> = HashMap::new();
    for (p, q) in &pairs {
        pids.insert(p.pid, q.pid);
        for (x, y) in p.threads.iter().zip(&q.threads) {
            pids.insert(*x, *y);
        }
    }
    for p in sa.order.iter().filter(|p| !paired_a.contains(&p.pid)) {
        d.processes_gone.push(sa.info(p));
    }
    for (p, q) in pairs {
        let pd = diff_process(&sa, &sb, p, q, m, &pids)?;
        if pd.is_empty() {
            d.processes_same.push(p.pid);
        } else {
            d.processes_changed.push(pd);
        }
    }
    for q in sb.order.iter().filter(|q| !paired_b.contains(&q.pid)) {
        d.processes_added.push(sb.info(q));
    }
    let shm = |s: &ImageSet| -> BTreeSet<String> {
        std::fs::read_dir(s.dir())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("pagemap-shmem-") && n.ends_with(".img"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (ma, mb) = (shm(a), shm(b));
    for name in ma.union(&mb) {
        let (status, memory) = match (ma.contains(name), mb.contains(name)) {
            (true, true) => ("changed", diff_shmem(a, b, name)?),
            (true, false) => ("gone", MemoryDiff::default()),
            _ => ("added", MemoryDiff::default()),
        };
        if status != "changed" || !memory.is_empty() {
            d.shmem.push(ShmemDiff {
                image: name.clone(),
                status,
                memory,
            });
        }
    }
    d.same = d.processes_added.is_empty()
        && d.processes_gone.is_empty()
        && d.processes_changed.is_empty()
        && d.shmem.is_empty();
    Ok(d)
}

/// A value for people: strings bare, long values cut (the JSON output has them whole).
fn show(v: &Json) -> String {
    let s = match v {
        Json::String(s) => s.trim_end().replace('\n', ""),
        Json::Null => "(none)".into(),
        x => x.to_string(),
    };
    const MAX: usize = 80;
    if s.chars().count() > MAX {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}...")
    } else {
        s
    }
}

fn changes_line(c: &[FieldChange]) -> String {
    c.iter()
        .map(|f| format!("{} {} -> {}", f.field, show(&f.old), show(&f.new)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// The human summary `crit diff` prints.
pub fn render(d: &SetDiff) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    if d.same {
        let _ = writeln!(o, "no differences ({} processes compared)", d.processes_same.len());
        return o;
    }
    let _ = writeln!(
        o,
        "processes: {} added, {} gone, {} changed, {} same{}",
        d.processes_added.len(),
        d.processes_gone.len(),
        d.processes_changed.len(),
        d.processes_same.len(),
        if d.shmem.is_empty() {
            String::new()
        } else {
            format!("; shared memory: {} differ", d.shmem.len())
        }
    );
    for p in &d.processes_gone {
        let _ = writeln!(
            o,
            "- process {} ({}, {})",
            p.pid,
            p.comm,
            plural(p.threads as u64, "thread")
        );
    }
    for p in &d.processes_added {
        let _ = writeln!(
            o,
            "+ process {} ({}, {})",
            p.pid,
            p.comm,
            plural(p.threads as u64, "thread")
        );
    }
    for p in &d.processes_changed {
        if p.pid == p.pid_b {
            let _ = writeln!(o, "~ process {} ({})", p.pid, p.comm);
        } else {
            let _ = writeln!(o, "~ process {} -> {} ({})", p.pid, p.pid_b, p.comm);
        }
        if !p.task.is_empty() {
            let _ = writeln!(o, "    task: {}", changes_line(&p.task));
        }
        for t in &p.threads_gone {
            let _ = writeln!(o, "    - thread {t}");
        }
        for t in &p.threads_added {
            let _ = writeln!(o, "    + thread {t}");
        }
        let m = |x: &Mapping| format!("{:#x}-{:#x} {} {}", x.start, x.end, x.prot, x.what);
        for x in &p.mappings_removed {
            let _ = writeln!(o, "    - mapping {}", m(x));
        }
        for x in &p.mappings_added {
            let _ = writeln!(o, "    + mapping {}", m(x));
        }
        for x in &p.mappings_changed {
            let _ = writeln!(o, "    ~ mapping {}: {}", m(&x.old), changes_line(&x.fields));
        }
        if !p.mm.is_empty() {
            let _ = writeln!(o, "    mm: {}", changes_line(&p.mm));
        }
        let f = |x: &Fd| format!("fd {} {} {}", x.fd, x.kind, x.what);
        for x in &p.fds_removed {
            let _ = writeln!(o, "    - {}", f(x));
        }
        for x in &p.fds_added {
            let _ = writeln!(o, "    + {}", f(x));
        }
        for x in &p.fds_changed {
            let _ = writeln!(o, "    ~ {} -> {} {}", f(&x.old), x.new.kind, x.new.what);
            for line in x.diff.lines().skip(2) {
                let _ = writeln!(o, "        {line}");
            }
        }
        for t in &p.threads {
            if !t.registers.is_empty() {
                let _ = writeln!(o, "    thread {} registers: {}", t.tid, changes_line(&t.registers));
            }
            if t.fpregs_changed {
                let _ = writeln!(o, "    thread {} FPU/vector registers changed", t.tid);
            }
            if !t.creds.is_empty() {
                let _ = writeln!(o, "    thread {} creds: {}", t.tid, changes_line(&t.creds));
            }
            if !t.other.is_empty() {
                let _ = writeln!(o, "    thread {} state: {}", t.tid, changes_line(&t.other));
            }
        }
        render_memory(&mut o, "    memory", &p.memory);
    }
    for m in &d.shmem {
        match m.status {
            "added" => {
                let _ = writeln!(o, "+ shared memory {}", m.image);
            }
            "gone" => {
                let _ = writeln!(o, "- shared memory {}", m.image);
            }
            _ => render_memory(&mut o, &format!("~ shared memory {}", m.image), &m.memory),
        }
    }
    o
}

fn render_memory(o: &mut String, title: &str, mem: &MemoryDiff) {
    use std::fmt::Write as _;
    if mem.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "{title}: {} changed, {} added, {} removed ({} compared)",
        plural(mem.changed, "page"),
        plural(mem.added, "page"),
        plural(mem.removed, "page"),
        mem.compared
    );
    let indent = " ".repeat(title.len() - title.trim_start().len() + 2);
    for r in &mem.ranges {
        let sign = match r.kind {
            "added" => '+',
            "removed" => '-',
            _ => '~',
        };
        let _ = writeln!(
            o,
            "{indent}{sign} {:#x}-{:#x} {} {}",
            r.start,
            r.end,
            plural(r.pages, "page"),
            r.kind
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_splits() {
        let a = [(0x1000, 0x4000)];
        let b = [(0x2000, 0x3000), (0x5000, 0x6000)];
        assert_eq!(
            coverage(&a, &b),
            vec![
                (0x1000, 0x2000, true, false),
                (0x2000, 0x3000, true, true),
                (0x3000, 0x4000, true, false),
                (0x5000, 0x6000, false, true),
            ]
        );
    }

    #[test]
    fn ranges_coalesce() {
        let mut r = Vec::new();
        push_range(&mut r, 0x1000, 1, "changed");
        push_range(&mut r, 0x2000, 1, "changed");
        push_range(&mut r, 0x4000, 1, "changed");
        push_range(&mut r, 0x5000, 2, "added");
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].start, r[0].end, r[0].pages), (0x1000, 0x3000, 2));
        assert_eq!(
            (r[2].start, r[2].end, r[2].pages, r[2].kind),
            (0x5000, 0x7000, 2, "added")
        );
    }

    #[test]
    fn json_field_changes() {
        let a = serde_json::json!({"uid": 0, "caps": [1, 2], "x": {"y": 1}, "l": [{"p": 1}, {"p": 2}]});
        let b = serde_json::json!({"uid": 5, "caps": [1, 3, 4], "x": {"y": 2}, "z": true, "l": [{"p": 1}, {"p": 5}]});
        let mut c = Vec::new();
        json_changes("", &a, &b, &mut c);
        let got: Vec<_> = c.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(got, vec!["uid", "caps[1]", "caps[2]", "x.y", "l[1].p", "z"]);
        assert_eq!(c[2].old, Json::Null);
        assert_eq!(show(&Json::String("x".repeat(100))).len(), 83);
    }
}
