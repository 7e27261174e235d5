//! Memory of a process: its VMAs and mm fields (mm-PID.img, one `MmEntry`
//! with its `VmaEntry`s and AIO rings). Dump: /proc/PID/maps + smaps +
//! stat + the parasite's brk/dumpable/THP -> the entry. Describe: the entry
//! -> validated [`Vma`]s, then [`check_pagemap`] against the pagemap. The
//! page contents are `dump::pages`' and the restore's.

use crate::proc::{Stat, Vma as MapsVma};
use crate::sys;
use cryo_image::{pb, Pagemap};
use std::path::PathBuf;
use std::sync::Arc;

pub use cryo_image::vma::*;

/// Why an mm entry (or the pagemap of its process) cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum MmError {
    #[error("vma {i} ({start:#x}-{end:#x}): {what}")]
    Vma {
        i: usize,
        start: u64,
        end: u64,
        what: String,
    },
    #[error("{0} is not supported by cryo restore yet")]
    Unsupported(String),
    #[error("exe file id {0} not in files.img")]
    ExeFile(u32),
    #[error("auxv has {0} words")]
    Auxv(usize),
    #[error("page {0:#x} is outside every vma")]
    PageOutside(u64),
}

// ---- dump ----

/// `MAP_DROPPABLE` (Linux 6.11), smaps flag "dp".
pub const MAP_DROPPABLE: u32 = 0x08;

/// What a mapping of /proc/PID/maps is, for dumping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    Vsyscall,
    Vdso,
    Vvar,
    Heap,
    AnonPrivate,
    FilePrivate,
    FileShared,
    /// Shared anonymous memory or memfd (not supported yet: refused).
    ShmemLike,
    /// MAP_PRIVATE of a memfd: its own pages are the copied-on-write ones.
    MemfdPrivate,
    SysvShm,
    /// The ring of an AIO context (io_setup), "/[aio] (deleted)".
    AioRing,
}

pub fn classify(v: &MapsVma) -> MapKind {
    match v.name.as_str() {
        "[vsyscall]" => MapKind::Vsyscall,
        "[vdso]" => MapKind::Vdso,
        n if n.starts_with("[vvar") => MapKind::Vvar,
        "[heap]" => MapKind::Heap,
        n if n.starts_with("/SYSV") => MapKind::SysvShm,
        n if n.starts_with("/[aio]") => MapKind::AioRing,
        n if v.shared && (n.starts_with("/dev/zero") || n.starts_with("/memfd:")) => MapKind::ShmemLike,
        n if n.starts_with("/memfd:") => MapKind::MemfdPrivate,
        // MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB: anonymous memory on the
        // kernel's internal hugetlbfs mount (CRIU records it as anonymous).
        n if !v.shared && n.starts_with("/anon_hugepage") => MapKind::AnonPrivate,
        // MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB: recorded as a (hugetlb) memfd, as CRIU does.
        n if v.shared && n.starts_with("/anon_hugepage") => MapKind::ShmemLike,
        _ if v.ino == 0 => MapKind::AnonPrivate,
        _ if v.shared => MapKind::FileShared,
        _ => MapKind::FilePrivate,
    }
}

/// The MAP_HUGE_* page-size bits of `vma_entry.flags` (log2 of the huge page
/// size at bit 26, as mmap(2) takes them and CRIU records them).
pub const MAP_HUGE_SHIFT: u32 = 26;
pub const MAP_HUGE_MASK: u32 = 0x3f << MAP_HUGE_SHIFT;

/// The MAP_HUGE_* bits for a huge page of `size` bytes (a power of two).
pub fn hugetlb_size_flag(size: u64) -> Option<u32> {
    (size.is_power_of_two() && size > 4096).then(|| size.trailing_zeros() << MAP_HUGE_SHIFT)
}

fn madv(v: &MapsVma) -> u64 {
    let mut m = 0u64;
    for (f, adv) in [
        ("sr", libc::MADV_SEQUENTIAL),
        ("rr", libc::MADV_RANDOM),
        ("dc", libc::MADV_DONTFORK),
        ("dd", libc::MADV_DONTDUMP),
        ("mg", libc::MADV_MERGEABLE),
        ("hg", libc::MADV_HUGEPAGE),
        ("nh", libc::MADV_NOHUGEPAGE),
        ("wf", libc::MADV_WIPEONFORK),
    ] {
        if v.has_flag(f) {
            m |= 1 << adv;
        }
    }
    m
}

/// One VMA entry; `shmid` is the file id for file mappings.
pub fn vma_entry(v: &MapsVma, kind: MapKind, shmid: u64) -> pb::VmaEntry {
    let bit = |on: bool, b: i32| if on { b as u32 } else { 0 };
    let prot = bit(v.read, libc::PROT_READ) | bit(v.write, libc::PROT_WRITE) | bit(v.exec, libc::PROT_EXEC);
    let mut flags = if v.shared { libc::MAP_SHARED } else { libc::MAP_PRIVATE } as u32;
    for (f, m) in [
        ("gd", libc::MAP_GROWSDOWN),
        ("lo", libc::MAP_LOCKED),
        ("nr", libc::MAP_NORESERVE),
        ("ht", libc::MAP_HUGETLB),
    ] {
        if v.has_flag(f) {
            flags |= m as u32;
        }
    }
    // A droppable mapping is its own mapping type, not MAP_PRIVATE (as CRIU
    // records it).
    if v.has_flag("dp") && !v.shared {
        flags = flags & !(libc::MAP_PRIVATE as u32) | MAP_DROPPABLE;
    }
    let (status, anon, file) = match kind {
        MapKind::Vsyscall => (VMA_AREA_VSYSCALL | VMA_ANON_PRIVATE, true, false),
        MapKind::Vdso => (VMA_AREA_REGULAR | VMA_AREA_VDSO | VMA_ANON_PRIVATE, true, false),
        MapKind::Vvar => (VMA_AREA_REGULAR | VMA_ANON_PRIVATE | VMA_AREA_VVAR, true, false),
        MapKind::Heap => (VMA_AREA_REGULAR | VMA_AREA_HEAP | VMA_ANON_PRIVATE, true, false),
        MapKind::AnonPrivate => (VMA_AREA_REGULAR | VMA_ANON_PRIVATE, true, false),
        MapKind::FilePrivate => (VMA_AREA_REGULAR | VMA_FILE_PRIVATE, false, true),
        MapKind::FileShared => (VMA_AREA_REGULAR | VMA_FILE_SHARED, false, true),
        MapKind::ShmemLike => (VMA_AREA_REGULAR | VMA_FILE_SHARED | VMA_AREA_MEMFD, false, true),
        MapKind::MemfdPrivate => (VMA_AREA_REGULAR | VMA_FILE_PRIVATE | VMA_AREA_MEMFD, false, true),
        // As CRIU records an attachment (shmid: the segment id, fdflags as a file's).
        MapKind::SysvShm => (VMA_AREA_REGULAR | VMA_ANON_SHARED | VMA_AREA_SYSVIPC, true, false),
        // As CRIU records it: no other status bit.
        MapKind::AioRing => (VMA_AREA_AIORING, false, false),
    };
    if anon {
        flags |= libc::MAP_ANONYMOUS as u32;
    }
    let m = madv(v);
    pb::VmaEntry {
        start: v.start,
        end: v.end,
        pgoff: if file { v.pgoff } else { 0 },
        shmid: if file || kind == MapKind::SysvShm { shmid } else { 0 },
        prot,
        flags,
        status,
        fd: -1,
        madv: (m != 0).then_some(m),
        fdflags: (file || kind == MapKind::SysvShm).then_some(if v.shared && v.write {
            libc::O_RDWR as u32
        } else {
            libc::O_RDONLY as u32
        }),
    }
}

/// Merge `[vvar]` + `[vvar_vclock]` (6.18) into one entry as CRIU records it.
pub fn merge_vvar(vmas: &mut Vec<(MapsVma, MapKind)>) {
    let mut out: Vec<(MapsVma, MapKind)> = Vec::with_capacity(vmas.len());
    for (v, k) in vmas.drain(..) {
        if let Some((last, MapKind::Vvar)) = out.last_mut() {
            if k == MapKind::Vvar && last.end == v.start {
                last.end = v.end;
                continue;
            }
        }
        out.push((v, k));
    }
    *vmas = out;
}

/// mm fields from /proc stat + brk + auxv.
pub fn mm_entry(
    st: &Stat,
    brk: u64,
    auxv: Vec<u64>,
    exe_file_id: u32,
    vmas: Vec<pb::VmaEntry>,
    dumpable: i32,
    thp_disabled: bool,
) -> pb::MmEntry {
    pb::MmEntry {
        mm_start_code: st.start_code,
        mm_end_code: st.end_code,
        mm_start_data: st.start_data,
        mm_end_data: st.end_data,
        mm_start_stack: st.start_stack,
        mm_start_brk: st.start_brk,
        mm_brk: brk,
        mm_arg_start: st.arg_start,
        mm_arg_end: st.arg_end,
        mm_env_start: st.env_start,
        mm_env_end: st.env_end,
        exe_file_id,
        mm_saved_auxv: auxv,
        vmas,
        dumpable: Some(dumpable),
        aios: Vec::new(),
        thp_disabled: Some(thp_disabled),
    }
}

/// The AIO rings among `vmas`, as CRIU records them: the ring's address
/// (the context id), its length, and the io_setup() size that makes a ring
/// of that length again.
pub fn aio_entries(vmas: &[(MapsVma, MapKind)]) -> Vec<pb::AioRingEntry> {
    vmas.iter()
        .filter(|(_, k)| *k == MapKind::AioRing)
        .map(|(v, _)| {
            let len = v.end - v.start;
            pb::AioRingEntry {
                id: v.start,
                nr_req: aio_nr_req(len),
                ring_len: len as u32,
            }
        })
        .collect()
}

/// The io_setup() size whose ring is `len` bytes: the kernel makes room for
/// 2 * max(n, 4 * cpus) + 2 events after a 32-byte header and rounds up to
/// pages, so the ring holds (len - 32) / 32 events; half of that less one
/// grows back to the same ring.
pub fn aio_nr_req(len: u64) -> u32 {
    let events = (len.saturating_sub(32) / 32) as u32;
    events.saturating_sub(2) / 2
}

/// The ranges covered by MADV_GUARD_INSTALL guards, as CRIU records them:
/// entries of their own with status VMA_AREA_GUARD, after every VMA.
pub fn guard_entries(pagemap_fd: i32) -> std::io::Result<Vec<pb::VmaEntry>> {
    let regions = match sys::pagemap_scan(
        pagemap_fd,
        0,
        0x7fff_ffff_f000,
        sys::PAGE_IS_GUARD,
        0,
        sys::PAGE_IS_GUARD,
    ) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(Vec::new()),
        r => r?,
    };
    Ok(regions
        .into_iter()
        .map(|r| pb::VmaEntry {
            start: r.start,
            end: r.end,
            status: VMA_AREA_GUARD,
            fd: -1,
            ..Default::default()
        })
        .collect())
}

// ---- restore ----

/// CRIU's VMA status bits, under short names (the values live in cryo_image::vma).
pub mod vma_status {
    pub use cryo_image::vma::{
        VMA_ANON_PRIVATE as ANON_PRIVATE, VMA_ANON_SHARED as ANON_SHARED, VMA_AREA_AIORING as AIORING,
        VMA_AREA_GUARD as GUARD, VMA_AREA_HEAP as HEAP, VMA_AREA_MEMFD as MEMFD, VMA_AREA_REGULAR as REGULAR,
        VMA_AREA_SOCKET as SOCKET, VMA_AREA_STACK as STACK, VMA_AREA_SYSVIPC as SYSVIPC, VMA_AREA_VDSO as VDSO,
        VMA_AREA_VSYSCALL as VSYSCALL, VMA_AREA_VVAR as VVAR, VMA_FILE_PRIVATE as FILE_PRIVATE,
        VMA_FILE_SHARED as FILE_SHARED, VMA_UNSUPP as UNSUPP,
    };
}

/// What a VMA is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmaKind {
    AnonPrivate,
    /// MAP_PRIVATE of a file (the file id in files.img).
    FilePrivate(u32),
    /// MAP_SHARED of a file or memfd (the file id).
    FileShared(u32),
    Vdso,
    Vvar,
    Vsyscall,
    /// The ring of an AIO context, with the io_setup() size that makes it.
    AioRing(u32),
    /// An attachment of a SysV shm segment (its id, in the tree's IPC
    /// namespace, which the restore re-creates before the tasks).
    SysvShm(i32),
}

/// One VMA to recreate.
#[derive(Clone, Debug)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub pgoff: u64,
    pub prot: u32,
    pub flags: u32,
    pub madv: u64,
    pub kind: VmaKind,
}

impl Vma {
    /// The huge page size of a MAP_HUGETLB VMA (from its MAP_HUGE_* bits;
    /// none recorded means the kernel's default, 2 MiB on x86-64).
    pub fn hugetlb_page(&self) -> Option<u64> {
        if self.flags & libc::MAP_HUGETLB as u32 == 0 {
            return None;
        }
        let log2 = (self.flags >> 26) & 0x3f;
        Some(if log2 == 0 { 2 << 20 } else { 1u64 << log2 })
    }
}

/// Memory of a process.
#[derive(Clone, Debug)]
pub struct Mm {
    pub vmas: Vec<Vma>,
    /// Ranges covered by MADV_GUARD_INSTALL guards (VMA_AREA_GUARD entries).
    pub guards: Vec<(u64, u64)>,
    pub entry: pb::MmEntry,
    pub exe_file: u32,
    pub pagemap: Arc<Pagemap>,
    pub pages_path: PathBuf,
}

/// What a file id a VMA maps names in files.img (None: nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappedFile {
    Memfd,
    Other,
}

/// The address space an mm entry describes.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// In address order, none overlapping.
    pub vmas: Vec<Vma>,
    /// Ranges covered by MADV_GUARD_INSTALL guards, inside `vmas`.
    pub guards: Vec<(u64, u64)>,
}

/// Describe: the VMAs of `entry` (validated) and its guard ranges.
/// `file` tells what a file id of files.img is.
pub fn describe(entry: &pb::MmEntry, file: impl Fn(u32) -> Option<MappedFile>) -> Result<Layout, MmError> {
    use vma_status as s;
    let mut vmas: Vec<Vma> = Vec::new();
    let mut guards = Vec::new();
    let mut prev_end = 0;
    for (i, v) in entry.vmas.iter().enumerate() {
        let what = |w: &str| MmError::Vma {
            i,
            start: v.start,
            end: v.end,
            what: w.to_string(),
        };
        if v.start % 4096 != 0 || v.end % 4096 != 0 || v.end <= v.start {
            return Err(what("not a page-aligned non-empty range"));
        }
        if v.status & s::GUARD != 0 {
            // Guards lie inside VMAs listed before them (a range may span
            // adjacent ones).
            let mut a = v.start;
            for w in &vmas {
                if w.start <= a && a < w.end {
                    a = w.end;
                }
            }
            if a < v.end || v.status != s::GUARD {
                return Err(what("a guard range outside every vma"));
            }
            guards.push((v.start, v.end));
            continue;
        }
        if !guards.is_empty() {
            return Err(what("a vma after the guard ranges"));
        }
        if v.start < prev_end {
            return Err(what("overlaps the previous vma or is out of order"));
        }
        prev_end = v.end;
        let st = v.status;
        let kind = if st & s::VSYSCALL != 0 {
            VmaKind::Vsyscall
        } else if st & s::VVAR != 0 {
            VmaKind::Vvar
        } else if st & s::VDSO != 0 {
            VmaKind::Vdso
        } else if st & s::AIORING != 0 {
            let a = entry
                .aios
                .iter()
                .find(|a| a.id == v.start)
                .ok_or_else(|| what("an AIO ring without its aio_ring_entry"))?;
            if a.ring_len as u64 != v.end - v.start || a.nr_req == 0 {
                return Err(what(&format!(
                    "AIO ring of {} bytes for {} requests",
                    a.ring_len, a.nr_req
                )));
            }
            VmaKind::AioRing(a.nr_req)
        } else if st & s::SYSVIPC != 0 && st & (s::SOCKET | s::UNSUPP) == 0 {
            if v.flags & libc::MAP_SHARED as u32 == 0 || v.pgoff != 0 {
                return Err(what("a SysV shm attachment that is not MAP_SHARED from offset 0"));
            }
            VmaKind::SysvShm(v.shmid as i32)
        } else if st & (s::SOCKET | s::UNSUPP) != 0 {
            return Err(MmError::Unsupported(format!(
                "vma {i} at {:#x} (status {st:#x}: socket or AIO mapping)",
                v.start
            )));
        } else if st & s::ANON_SHARED != 0 {
            return Err(MmError::Unsupported(format!(
                "vma {i} at {:#x}: shared anonymous memory without memfd",
                v.start
            )));
        } else if st & s::FILE_SHARED != 0 {
            let id = v.shmid as u32;
            if file(id).is_none() {
                return Err(what(&format!("file id {id} not in files.img")));
            }
            VmaKind::FileShared(id)
        } else if st & s::FILE_PRIVATE != 0 {
            let id = v.shmid as u32;
            if file(id).is_none() {
                return Err(what(&format!("file id {id} not in files.img")));
            }
            VmaKind::FilePrivate(id)
        } else if st & s::ANON_PRIVATE != 0 {
            VmaKind::AnonPrivate
        } else {
            return Err(what(&format!("unknown status {st:#x}")));
        };
        let vma = Vma {
            start: v.start,
            end: v.end,
            pgoff: v.pgoff,
            prot: v.prot,
            flags: v.flags,
            madv: v.madv.unwrap_or(0),
            kind,
        };
        if let Some(hp) = vma.hugetlb_page() {
            // Private anonymous huge-page memory is restored, and mappings of
            // hugetlb memfd inodes (shared MAP_HUGETLB memory is one, as CRIU
            // records it); SysV and hugetlbfs files are not.
            // Shared ones only on a memfd inode (restored with MFD_HUGETLB).
            let on_memfd = match vma.kind {
                VmaKind::FileShared(id) | VmaKind::FilePrivate(id) => file(id) == Some(MappedFile::Memfd),
                _ => false,
            };
            if vma.kind != VmaKind::AnonPrivate && !on_memfd {
                return Err(MmError::Unsupported(format!(
                    "vma {i} at {:#x}: shared or file-backed huge-page (MAP_HUGETLB) memory",
                    v.start
                )));
            }
            if !(hp == 2 << 20 || hp == 1 << 30) || v.start % hp != 0 || v.end % hp != 0 {
                return Err(what(&format!("MAP_HUGETLB with {hp}-byte pages not aligned to them")));
            }
        }
        vmas.push(vma);
    }
    if file(entry.exe_file_id).is_none() {
        return Err(MmError::ExeFile(entry.exe_file_id));
    }
    if entry.mm_saved_auxv.len() > 2 * 64 {
        return Err(MmError::Auxv(entry.mm_saved_auxv.len()));
    }
    Ok(Layout { vmas, guards })
}

/// Check the process's pagemap against its VMAs: every run inside them,
/// none in a parent image.
pub fn check_pagemap(pagemap: &Pagemap, vmas: &[Vma]) -> Result<(), MmError> {
    for r in &pagemap.runs {
        if r.flags & cryo_image::PE_PARENT != 0 {
            return Err(MmError::Unsupported(format!(
                "pages at {:#x} in a parent image (incremental dumps)",
                r.vaddr
            )));
        }
        // Every run must lie inside VMAs.
        let mut a = r.vaddr;
        while a < r.end() {
            let Some(v) = vmas.iter().find(|v| v.start <= a && a < v.end) else {
                return Err(MmError::PageOutside(a));
            };
            a = v.end;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::parse_smaps;

    #[test]
    fn classify_and_encode_fixture_vmas() {
        let s = std::fs::read_to_string(format!("{}/fixtures/proc/smaps.txt", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let mut vmas: Vec<(MapsVma, MapKind)> = parse_smaps(&s)
            .unwrap()
            .into_iter()
            .map(|v| {
                let k = classify(&v);
                (v, k)
            })
            .collect();
        let n = vmas.len();
        merge_vvar(&mut vmas);
        assert_eq!(vmas.len(), n - 1, "vvar + vvar_vclock become one");
        let vv = vmas.iter().find(|(_, k)| *k == MapKind::Vvar).unwrap();
        let e = vma_entry(&vv.0, vv.1, 0);
        assert_eq!(e.status, VMA_AREA_REGULAR | VMA_ANON_PRIVATE | VMA_AREA_VVAR);
        assert_eq!(e.end - e.start, 6 * 4096);
        let st = vmas.iter().find(|(v, _)| v.name == "[stack]").unwrap();
        let e = vma_entry(&st.0, st.1, 0);
        assert_eq!(
            e.flags,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_GROWSDOWN) as u32
        );
        assert_eq!(e.fdflags, None);
        let f = &vmas[0];
        assert_eq!(f.1, MapKind::FilePrivate);
        let e = vma_entry(&f.0, f.1, 7);
        assert_eq!(
            (e.shmid, e.fdflags, e.status),
            (7, Some(0), VMA_AREA_REGULAR | VMA_FILE_PRIVATE)
        );
        let vs = vmas.iter().find(|(_, k)| *k == MapKind::Vsyscall).unwrap();
        assert_eq!(vma_entry(&vs.0, vs.1, 0).status, VMA_AREA_VSYSCALL | VMA_ANON_PRIVATE);
        assert_eq!(hugetlb_size_flag(2 << 20), Some(21 << MAP_HUGE_SHIFT));
        assert_eq!(hugetlb_size_flag(1 << 30), Some(30 << MAP_HUGE_SHIFT));
        assert_eq!(hugetlb_size_flag(3 << 20), None);
    }

    #[test]
    fn described_vmas_are_checked() {
        let vma = |start, end, status, shmid| pb::VmaEntry {
            start,
            end,
            status,
            shmid,
            prot: 3,
            flags: (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u32,
            fd: -1,
            ..Default::default()
        };
        let mut e = pb::MmEntry {
            exe_file_id: 1,
            vmas: vec![
                vma(0x1000, 0x3000, VMA_AREA_REGULAR | VMA_ANON_PRIVATE, 0),
                vma(0x3000, 0x4000, VMA_AREA_REGULAR | VMA_FILE_PRIVATE, 1),
                vma(0x1000, 0x2000, VMA_AREA_GUARD, 0),
            ],
            ..Default::default()
        };
        let files = |id| (id == 1).then_some(MappedFile::Other);
        let l = describe(&e, files).unwrap();
        assert_eq!(l.vmas[1].kind, VmaKind::FilePrivate(1));
        assert_eq!(l.guards, vec![(0x1000, 0x2000)]);
        e.vmas[1].shmid = 9;
        let err = describe(&e, files).unwrap_err().to_string();
        assert_eq!(err, "vma 1 (0x3000-0x4000): file id 9 not in files.img");
        e.vmas[1].shmid = 1;
        e.vmas[1].status = VMA_ANON_SHARED;
        let err = describe(&e, files).unwrap_err().to_string();
        assert!(
            err.ends_with("shared anonymous memory without memfd is not supported by cryo restore yet"),
            "{err}"
        );
        e.vmas.truncate(1);
        e.exe_file_id = 2;
        assert!(matches!(describe(&e, files), Err(MmError::ExeFile(2))));
    }
}
