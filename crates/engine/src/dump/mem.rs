//! The page dump: pagemap-PID.img + pages-N.img (mm-PID.img is
//! [`crate::state::mm`]'s). Absent and zero pages are skipped using
//! PAGEMAP_SCAN.

use crate::proc::Vma;
use crate::state::mm::MapKind;
use crate::sys;
use cryo_image::pb;

pub const PE_LAZY: u32 = 1 << 1;
pub const PE_PRESENT: u32 = 1 << 2;

/// A run of pages to dump: `[start, start + len)`, with its pagemap flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub start: u64,
    pub len: u64,
    pub flags: u32,
}

/// The pages of one VMA worth dumping, via PAGEMAP_SCAN on `pagemap_fd`.
pub fn scan_vma(pagemap_fd: i32, v: &Vma, kind: MapKind) -> std::io::Result<Vec<Run>> {
    scan_vma_part(pagemap_fd, v, kind, v.start, v.end)
}

/// The PAGEMAP_SCAN masks (any of, none of) and the pagemap flags of the
/// pages of a private VMA of kind `kind` worth dumping.
pub fn scan_masks(kind: MapKind) -> (u64, u64, u32) {
    match kind {
        // Only the pages that differ from the file (anonymous COW copies).
        MapKind::FilePrivate | MapKind::MemfdPrivate => (
            sys::PAGE_IS_PRESENT | sys::PAGE_IS_SWAPPED,
            sys::PAGE_IS_PFNZERO | sys::PAGE_IS_FILE,
            PE_PRESENT,
        ),
        _ => (
            sys::PAGE_IS_PRESENT | sys::PAGE_IS_SWAPPED,
            sys::PAGE_IS_PFNZERO,
            PE_LAZY | PE_PRESENT,
        ),
    }
}

/// [`scan_vma`] of `[start, end)`, a part of `v` (the vdso is always whole).
pub fn scan_vma_part(pagemap_fd: i32, v: &Vma, kind: MapKind, start: u64, end: u64) -> std::io::Result<Vec<Run>> {
    let (anyof, excl, flags) = match kind {
        MapKind::Heap | MapKind::AnonPrivate | MapKind::FilePrivate | MapKind::MemfdPrivate => scan_masks(kind),
        // The vdso and AIO rings are dumped whole, present or not (CRIU
        // does the same).
        MapKind::Vdso | MapKind::AioRing => {
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

/// Bytes of the runs that have their pages in this set's pages file.
pub fn present_bytes(runs: &[Run]) -> u64 {
    runs.iter().filter(|r| r.flags & PE_PRESENT != 0).map(|r| r.len).sum()
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
