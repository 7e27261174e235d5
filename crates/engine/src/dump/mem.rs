//! mm-PID.img (VMAs in CRIU's flag/status encoding, mm fields, auxv) and the
//! page dump: pagemap-PID.img + pages-N.img. Absent and zero pages are skipped
//! using PAGEMAP_SCAN.

use crate::proc::{Stat, Vma};
use crate::sys;
use cryo_image::pb;

pub use cryo_image::vma::*;

pub const PE_LAZY: u32 = 1 << 1;
pub const PE_PRESENT: u32 = 1 << 2;
/// `MAP_DROPPABLE` (Linux 6.11), smaps flag "dp".
pub const MAP_DROPPABLE: u32 = 0x08;

/// What a mapping is, for dumping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmaKind {
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

pub fn classify(v: &Vma) -> VmaKind {
    match v.name.as_str() {
        "[vsyscall]" => VmaKind::Vsyscall,
        "[vdso]" => VmaKind::Vdso,
        n if n.starts_with("[vvar") => VmaKind::Vvar,
        "[heap]" => VmaKind::Heap,
        n if n.starts_with("/SYSV") => VmaKind::SysvShm,
        n if n.starts_with("/[aio]") => VmaKind::AioRing,
        n if v.shared && (n.starts_with("/dev/zero") || n.starts_with("/memfd:")) => VmaKind::ShmemLike,
        n if n.starts_with("/memfd:") => VmaKind::MemfdPrivate,
        // MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB: anonymous memory on the
        // kernel's internal hugetlbfs mount (CRIU records it as anonymous).
        n if !v.shared && n.starts_with("/anon_hugepage") => VmaKind::AnonPrivate,
        // MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB: recorded as a (hugetlb) memfd, as CRIU does.
        n if v.shared && n.starts_with("/anon_hugepage") => VmaKind::ShmemLike,
        _ if v.ino == 0 => VmaKind::AnonPrivate,
        _ if v.shared => VmaKind::FileShared,
        _ => VmaKind::FilePrivate,
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

fn madv(v: &Vma) -> u64 {
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
pub fn vma_entry(v: &Vma, kind: VmaKind, shmid: u64) -> pb::VmaEntry {
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
        VmaKind::Vsyscall => (VMA_AREA_VSYSCALL | VMA_ANON_PRIVATE, true, false),
        VmaKind::Vdso => (VMA_AREA_REGULAR | VMA_AREA_VDSO | VMA_ANON_PRIVATE, true, false),
        VmaKind::Vvar => (VMA_AREA_REGULAR | VMA_ANON_PRIVATE | VMA_AREA_VVAR, true, false),
        VmaKind::Heap => (VMA_AREA_REGULAR | VMA_AREA_HEAP | VMA_ANON_PRIVATE, true, false),
        VmaKind::AnonPrivate => (VMA_AREA_REGULAR | VMA_ANON_PRIVATE, true, false),
        VmaKind::FilePrivate => (VMA_AREA_REGULAR | VMA_FILE_PRIVATE, false, true),
        VmaKind::FileShared => (VMA_AREA_REGULAR | VMA_FILE_SHARED, false, true),
        VmaKind::ShmemLike => (VMA_AREA_REGULAR | VMA_FILE_SHARED | VMA_AREA_MEMFD, false, true),
        VmaKind::MemfdPrivate => (VMA_AREA_REGULAR | VMA_FILE_PRIVATE | VMA_AREA_MEMFD, false, true),
        VmaKind::SysvShm => (VMA_AREA_REGULAR | VMA_AREA_SYSVIPC, false, false),
        // As CRIU records it: no other status bit.
        VmaKind::AioRing => (VMA_AREA_AIORING, false, false),
    };
    if anon {
        flags |= libc::MAP_ANONYMOUS as u32;
    }
    let m = madv(v);
    pb::VmaEntry {
        start: v.start,
        end: v.end,
        pgoff: if file { v.pgoff } else { 0 },
        shmid: if file { shmid } else { 0 },
        prot,
        flags,
        status,
        fd: -1,
        madv: (m != 0).then_some(m),
        fdflags: file.then_some(if v.shared && v.write {
            libc::O_RDWR as u32
        } else {
            libc::O_RDONLY as u32
        }),
    }
}

/// Merge `[vvar]` + `[vvar_vclock]` (6.18) into one entry as CRIU records it.
pub fn merge_vvar(vmas: &mut Vec<(Vma, VmaKind)>) {
    let mut out: Vec<(Vma, VmaKind)> = Vec::with_capacity(vmas.len());
    for (v, k) in vmas.drain(..) {
        if let Some((last, VmaKind::Vvar)) = out.last_mut() {
            if k == VmaKind::Vvar && last.end == v.start {
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
pub fn aio_entries(vmas: &[(Vma, VmaKind)]) -> Vec<pb::AioRingEntry> {
    vmas.iter()
        .filter(|(_, k)| *k == VmaKind::AioRing)
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

/// A run of pages to dump: `[start, start + len)`, with its pagemap flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub start: u64,
    pub len: u64,
    pub flags: u32,
}

/// The pages of one VMA worth dumping, via PAGEMAP_SCAN on `pagemap_fd`.
pub fn scan_vma(pagemap_fd: i32, v: &Vma, kind: VmaKind) -> std::io::Result<Vec<Run>> {
    scan_vma_part(pagemap_fd, v, kind, v.start, v.end)
}

/// [`scan_vma`] of `[start, end)`, a part of `v` (the vdso is always whole).
pub fn scan_vma_part(pagemap_fd: i32, v: &Vma, kind: VmaKind, start: u64, end: u64) -> std::io::Result<Vec<Run>> {
    let (anyof, excl, flags) = match kind {
        VmaKind::Heap | VmaKind::AnonPrivate => (
            sys::PAGE_IS_PRESENT | sys::PAGE_IS_SWAPPED,
            sys::PAGE_IS_PFNZERO,
            PE_LAZY | PE_PRESENT,
        ),
        // Only the pages that differ from the file (anonymous COW copies).
        VmaKind::FilePrivate | VmaKind::MemfdPrivate => (
            sys::PAGE_IS_PRESENT | sys::PAGE_IS_SWAPPED,
            sys::PAGE_IS_PFNZERO | sys::PAGE_IS_FILE,
            PE_PRESENT,
        ),
        // The vdso and AIO rings are dumped whole, present or not (CRIU
        // does the same).
        VmaKind::Vdso | VmaKind::AioRing => {
            return Ok(vec![Run {
                start: v.start,
                len: v.end - v.start,
                flags: PE_PRESENT,
            }])
        }
        _ => return Ok(Vec::new()),
    };
    // Guard pages (MADV_GUARD_INSTALL) have nothing to dump and fault when
    // touched: never part of a run (kernels before 6.14 know no such bit).
    let (s, e) = (start.max(v.start), end.min(v.end));
    let regions = match sys::pagemap_scan(pagemap_fd, s, e, anyof, excl | sys::PAGE_IS_GUARD, anyof | excl) {
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
            sys::pagemap_scan(pagemap_fd, s, e, anyof, excl, anyof | excl)?
        }
        r => r?,
    };
    Ok(regions
        .into_iter()
        .map(|r| Run {
            start: r.start,
            len: r.end - r.start,
            flags,
        })
        .collect())
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

/// Merge adjacent runs with equal flags (CRIU merges across VMA borders too).
pub fn merge_runs(runs: Vec<Run>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::with_capacity(runs.len());
    for r in runs {
        if let Some(l) = out.last_mut() {
            if l.start + l.len == r.start && l.flags == r.flags {
                l.len += r.len;
                continue;
            }
        }
        out.push(r);
    }
    out
}

pub fn pagemap_entries(runs: &[Run]) -> Vec<pb::PagemapEntry> {
    runs.iter()
        .map(|r| pb::PagemapEntry {
            vaddr: r.start,
            compat_nr_pages: 0,
            in_parent: None,
            flags: Some(r.flags),
            nr_pages: Some(r.len / 4096),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::parse_smaps;

    #[test]
    fn classify_and_encode_fixture_vmas() {
        let s = std::fs::read_to_string(format!("{}/fixtures/proc/smaps.txt", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let mut vmas: Vec<(Vma, VmaKind)> = parse_smaps(&s)
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
        let vv = vmas.iter().find(|(_, k)| *k == VmaKind::Vvar).unwrap();
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
        assert_eq!(f.1, VmaKind::FilePrivate);
        let e = vma_entry(&f.0, f.1, 7);
        assert_eq!(
            (e.shmid, e.fdflags, e.status),
            (7, Some(0), VMA_AREA_REGULAR | VMA_FILE_PRIVATE)
        );
        let vs = vmas.iter().find(|(_, k)| *k == VmaKind::Vsyscall).unwrap();
        assert_eq!(vma_entry(&vs.0, vs.1, 0).status, VMA_AREA_VSYSCALL | VMA_ANON_PRIVATE);
        assert_eq!(hugetlb_size_flag(2 << 20), Some(21 << MAP_HUGE_SHIFT));
        assert_eq!(hugetlb_size_flag(1 << 30), Some(30 << MAP_HUGE_SHIFT));
        assert_eq!(hugetlb_size_flag(3 << 20), None);
    }

    #[test]
    fn runs_merge_only_when_adjacent_and_equal() {
        let r = merge_runs(vec![
            Run {
                start: 0x1000,
                len: 0x1000,
                flags: PE_PRESENT,
            },
            Run {
                start: 0x2000,
                len: 0x2000,
                flags: PE_PRESENT,
            },
            Run {
                start: 0x4000,
                len: 0x1000,
                flags: PE_LAZY | PE_PRESENT,
            },
            Run {
                start: 0x6000,
                len: 0x1000,
                flags: PE_LAZY | PE_PRESENT,
            },
        ]);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].len, 0x3000);
    }
}
