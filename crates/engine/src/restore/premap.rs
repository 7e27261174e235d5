//! Premap: each VMA a task will have (private ones, shared file ones, and
//! the dumped vdso/vvar when they are jumped through) mapped at a temporary
//! place and filled with its pages, before the task forks its children.
//!
//! A child inherits its parent's premapped copies through fork. Where one
//! of its own VMAs matches one of them (same range, same kind, the same
//! file at the same offset), the child takes that copy instead of a fresh
//! mapping: each page whose dumped contents equal the inherited ones stays
//! shared copy-on-write with the parent, as it was at dump (CRIU's
//! "inherited" VMAs); a page that differs is written, and a page the child
//! has no contents for (absent, zero, or still the file's) is dropped with
//! MADV_DONTNEED. The restorer then moves the copies into place.

use super::layout::{self, Span, PAGE};
use super::plan::{Proc, Vma, VmaKind};
use super::task::TaskError;
use super::TaskEnv;
use crate::sys::mem::Area;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

/// `MAP_DROPPABLE` (Linux 6.11): a private anonymous mapping whose pages
/// the kernel may drop under memory pressure.
pub const MAP_DROPPABLE: u32 = 0x08;

/// Premapped VMAs larger than this get the offset of their final address
/// within a huge page, so that THP survive the move.
const HUGE: u64 = 2 << 20;

/// One premapped VMA: its copy lies at `at`.
#[derive(Clone, Debug)]
pub(crate) struct PremapVma {
    pub vma: Vma,
    pub at: u64,
    /// The area holding the copy (the parent's for an inherited one).
    pub area: Area,
    /// Taken from the parent's premap (through fork), not mapped here.
    pub inherited: bool,
}

/// A task's premapped VMAs, in the order of its mm.
#[derive(Clone, Debug, Default)]
pub(crate) struct Premapped {
    pub vmas: Vec<PremapVma>,
}

/// The VMAs of `p` that are premapped.
fn wanted(env: &TaskEnv, p: &Proc) -> Vec<Vma> {
    let Some(mm) = p.mm.as_ref() else { return Vec::new() };
    mm.vmas
        .iter()
        .filter(|v| {
            matches!(
                v.kind,
                VmaKind::AnonPrivate
                    | VmaKind::FilePrivate(_)
                    | VmaKind::FileShared(_)
                    | VmaKind::AioRing(_)
                    | VmaKind::SysvShm(_)
            ) || (env.vdso_jump && matches!(v.kind, VmaKind::Vdso | VmaKind::Vvar))
        })
        .cloned()
        .collect()
}

/// Can `v` (of the child) take the parent's copy `pv`?
fn inheritable(v: &Vma, pv: &Vma) -> bool {
    let same_kind = match (&v.kind, &pv.kind) {
        (VmaKind::AnonPrivate, VmaKind::AnonPrivate) => true,
        (VmaKind::FilePrivate(a), VmaKind::FilePrivate(b)) => a == b && v.pgoff == pv.pgoff,
        _ => false,
    };
    let must_match = (libc::MAP_GROWSDOWN | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB) as u32 | MAP_DROPPABLE;
    same_kind
        && v.start == pv.start
        && v.end == pv.end
        && (v.flags ^ pv.flags) & must_match == 0
        && v.flags & (libc::MAP_HUGETLB as u32 | MAP_DROPPABLE) == 0
}

/// Premap the VMAs of `p` and fill them with its pages; `parent` is the
/// premap of the task that forked us (its copies are in our address space).
pub(crate) fn premap(env: &TaskEnv, p: &Proc, parent: Option<&Premapped>) -> Result<Premapped, TaskError> {
    let Some(mm) = p.mm.as_ref() else {
        return Ok(Premapped::default());
    };
    let want = wanted(env, p);
    // Lazy restore: the lazy VMAs are fresh and empty here (the daemon
    // fills them), never a parent's copy.
    let lazy = super::task::task_is_lazy(env, p);
    let from_parent = |v: &Vma| -> Option<(u64, Area)> {
        if lazy && super::lazy::vma_is_lazy(v) {
            return None;
        }
        parent?
            .vmas
            .iter()
            .find(|pv| inheritable(v, &pv.vma))
            .map(|pv| (pv.at, pv.area))
    };
    // Fresh copies go to one reservation that overlaps nothing mapped now
    // and no final VMA of any task (children may inherit these copies and
    // keep them where they are until their restorer moves them).
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| ("reading /proc/self/maps", e))?;
    let maps = layout::parse_maps(&maps).map_err(|e| ("parsing /proc/self/maps", e))?;
    let mut busy: Vec<Span> = maps.iter().map(|m| m.span).collect();
    for q in &env.plan.procs {
        if let Some(qm) = &q.mm {
            busy.extend(qm.vmas.iter().map(|v| Span::new(v.start, v.end.min(layout::TASK_SIZE))));
        }
    }
    let mut out = Premapped::default();
    let mut total = 0u64;
    for v in &want {
        if from_parent(v).is_none() {
            let len = v.end - v.start;
            total += len + PAGE + align_of(v);
        }
    }
    let mut cursor = 0u64;
    let mut end = 0u64;
    let mut area = None;
    if total > 0 {
        total += PAGE;
        let a = super::task::reserve_hole(&busy, total, "the premapped memory")?;
        cursor = a.start() + PAGE;
        end = a.end();
        area = Some(a);
    }
    for v in want {
        if let Some((at, area)) = from_parent(&v) {
            out.vmas.push(PremapVma {
                vma: v,
                at,
                area,
                inherited: true,
            });
            continue;
        }
        // Not inherited: total counted it, so the area exists.
        let area = area.ok_or_else(|| TaskError("premap area missing (engine bug)".into()))?;
        let len = v.end - v.start;
        let mut at = cursor;
        let align = align_of(&v);
        if align > 0 {
            let want = v.start % align;
            at = (at - at % align) + want;
            if at < cursor {
                at += align;
            }
        }
        if at + len > end {
            return Err(TaskError("premap area too small (engine bug)".into()));
        }
        cursor = at + len + PAGE;
        map_one(env, &v, &area, at)?;
        out.vmas.push(PremapVma {
            vma: v,
            at,
            area,
            inherited: false,
        });
    }
    // The set's own pages file, then its parents' (only those a run uses).
    // In a restored mount namespace the images are reached through their
    // directory's fd (parents by their path relative to it).
    let base = mm.pages_files.first().and_then(|p| p.parent()).map(Path::to_path_buf);
    let open = |p: &Path| -> std::io::Result<std::fs::File> {
        let rel = base
            .as_deref()
            .and_then(|b| p.strip_prefix(b).ok())
            .and_then(|r| r.to_str());
        match (env.images_fd, rel) {
            (Some(dir), Some(rel)) => crate::sys::files::openat_raw(dir, rel, libc::O_RDONLY).map(std::fs::File::from),
            _ => std::fs::File::open(p),
        }
    };
    let mut pages = Vec::with_capacity(mm.pages_files.len());
    for (i, p) in mm.pages_files.iter().enumerate() {
        if i > 0 && !mm.run_file.contains(&i) {
            pages.push(None);
            continue;
        }
        pages.push(Some(open(p).map_err(|e| TaskError(format!("{}: {e}", p.display())))?));
    }
    fill(&pages, &mm.pagemap.runs, &mm.run_file, &out, lazy).map_err(|e| {
        TaskError(format!(
            "{}: reading pages: {e}",
            mm.pages_files
                .first()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ))
    })?;
    Ok(out)
}

/// The alignment of `v`'s premapped copy (0: a page is enough). A hugetlb
/// VMA must sit on its huge pages (mmap and mremap refuse less); other big
/// ones keep their offset within a huge page, so that THP survive the move.
fn align_of(v: &Vma) -> u64 {
    match v.hugetlb_page() {
        Some(hp) => hp,
        None if v.end - v.start >= HUGE => HUGE,
        None => 0,
    }
}

/// Map a fresh copy of `v` at `at`.
fn map_one(env: &TaskEnv, v: &Vma, area: &Area, at: u64) -> Result<(), TaskError> {
    let len = v.end - v.start;
    let what = |e: std::io::Error| TaskError(format!("premapping vma {:#x}-{:#x}: {e}", v.start, v.end));
    let growsdown = v.flags as i32 & libc::MAP_GROWSDOWN;
    let noreserve = v.flags as i32 & libc::MAP_NORESERVE;
    let growsdown = if matches!(v.kind, VmaKind::AioRing(_)) {
        0
    } else {
        growsdown
    };
    let fd_of = |id: u32| {
        env.map_pool
            .get(&id)
            .copied()
            .ok_or_else(|| TaskError(format!("no fd for file id {id} (engine bug)")))
    };
    match v.kind {
        VmaKind::AnonPrivate | VmaKind::Vdso | VmaKind::Vvar | VmaKind::AioRing(_) => {
            // An AIO ring's contents wait here for the restorer to put them
            // into a ring io_setup() makes.
            let kind = if v.flags & MAP_DROPPABLE != 0 && v.kind == VmaKind::AnonPrivate {
                MAP_DROPPABLE as i32
            } else {
                libc::MAP_PRIVATE
            };
            // MAP_HUGETLB with its MAP_HUGE_* page size, as dumped (the
            // plan admits it on private anonymous VMAs only).
            let huge = if v.kind == VmaKind::AnonPrivate {
                v.flags as i32 & (libc::MAP_HUGETLB | (0x3f << 26))
            } else {
                0
            };
            area.map(
                at,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                kind | libc::MAP_ANONYMOUS | libc::MAP_FIXED | growsdown | noreserve | huge,
                -1,
                0,
            )
            .map_err(what)?;
        }
        VmaKind::FilePrivate(id) => {
            area.map(
                at,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED | noreserve,
                fd_of(id)?,
                v.pgoff,
            )
            .map_err(what)?;
        }
        VmaKind::FileShared(id) => {
            area.map(
                at,
                len,
                v.prot as i32,
                libc::MAP_SHARED | libc::MAP_FIXED | noreserve,
                fd_of(id)?,
                v.pgoff,
            )
            .map_err(what)?;
        }
        VmaKind::SysvShm(id) => {
            // The whole segment is attached: the VMA must be all of it.
            let size = crate::sys::ipc::shm_size(id).map_err(what)?;
            if size.div_ceil(PAGE) * PAGE != len {
                return Err(TaskError(format!(
                    "vma {:#x}-{:#x} attaches SysV shm segment {id} of {size} bytes: only whole-segment \
                     attachments are restored",
                    v.start, v.end
                )));
            }
            area.shmat(at, len, id, v.prot & libc::PROT_WRITE as u32 == 0)
                .map_err(what)?;
        }
        VmaKind::Vsyscall => unreachable!("never premapped"),
    }
    // Huge pages only where the dumped VMA asked for them: with THP defrag
    // on madvise, forcing them makes every fault compact memory (measured:
    // a 1 GiB pread took 3-7 s instead of 1.3 s on the loaded machine).
    if v.madv & (1 << libc::MADV_HUGEPAGE) != 0 && env.thp {
        let _ = area.madvise(at, len, libc::MADV_HUGEPAGE);
    }
    Ok(())
}

/// Read the dumped pages into the premapped copies: straight into fresh
/// ones, compared page by page into inherited ones (see the module doc).
/// Read the pages of `runs` (run `i` in the pages file `fds[run_file[i]]`;
/// all in `fds[0]` when `run_file` is empty) into the premapped copies.
fn fill(
    files: &[Option<std::fs::File>],
    runs: &[cryo_image::PageRun],
    run_file: &[usize],
    pre: &Premapped,
    lazy: bool,
) -> std::io::Result<()> {
    // (destination, length, file offset) of every piece to read.
    let mut reads: Vec<Read> = Vec::new();
    for pv in &pre.vmas {
        let v = &pv.vma;
        if let VmaKind::FileShared(_) | VmaKind::SysvShm(_) = v.kind {
            continue; // contents live in the shared object itself
        }
        // A droppable mapping's pages may be gone at any time: CRIU restores
        // none (and writes none).
        let droppable = v.flags & MAP_DROPPABLE != 0;
        // Lazy restore: the daemon copies the lazy runs of a lazy VMA.
        let skip_lazy = lazy && super::lazy::vma_is_lazy(v);
        // Pieces of the VMA that have contents in the image (sorted).
        let mut covered: Vec<(u64, u64, u64, usize)> = Vec::new();
        let file = |i: usize| {
            files
                .get(i)
                .and_then(|f| f.as_ref())
                .ok_or_else(|| std::io::Error::other(format!("pages file {i} not open (engine bug)")))
        };
        if !droppable {
            let first = runs.partition_point(|r| r.end() <= v.start);
            for (i, r) in runs.iter().enumerate().skip(first) {
                if r.vaddr >= v.end {
                    break;
                }
                let Some(off) = r.offset else { continue };
                if skip_lazy && super::lazy::run_is_lazy(r) {
                    continue;
                }
                let s = r.vaddr.max(v.start);
                let e = r.end().min(v.end);
                let fi = run_file.get(i).copied().unwrap_or(0);
                if s < e {
                    covered.push((s, e, off + (s - r.vaddr), fi));
                }
            }
        }
        if !pv.inherited {
            for &(s, e, off, fi) in &covered {
                reads.push(Read {
                    area: pv.area,
                    dst: pv.at + (s - v.start),
                    len: e - s,
                    off,
                    fd: file(fi)?.as_raw_fd(),
                });
            }
            continue;
        }
        let mut at = v.start;
        for &(s, e, off, fi) in &covered {
            drop_pages(&pv.area, pv.at + (at - v.start), s - at)?;
            merge_pages(file(fi)?, &pv.area, pv.at + (s - v.start), e - s, off)?;
            at = e;
        }
        drop_pages(&pv.area, pv.at + (at - v.start), v.end - at)?;
    }
    read_pages(&reads)
}

/// MADV_DONTNEED on `[addr, addr + len)` of an inherited copy: anonymous
/// pages read back as zero, private file pages as the file's again.
fn drop_pages(area: &Area, addr: u64, len: u64) -> std::io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    area.madvise(addr, len, libc::MADV_DONTNEED)
}

/// Write the pages of `[addr, addr + len)` (from `off` in the pages file)
/// that differ from what the inherited copy holds; equal ones stay shared.
fn merge_pages(fd: &std::fs::File, area: &Area, addr: u64, len: u64, off: u64) -> std::io::Result<()> {
    const CHUNK: u64 = 64 * PAGE;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut cur = vec![0u8; CHUNK as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK);
        let got = nix::sys::uio::pread(fd, &mut buf[..n as usize], (off + done) as i64)?;
        if (got as u64) < n {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "pages file is short",
            ));
        }
        area.read(addr + done, &mut cur[..n as usize])?;
        for (i, (page, now)) in buf[..n as usize]
            .chunks(PAGE as usize)
            .zip(cur[..n as usize].chunks(PAGE as usize))
            .enumerate()
        {
            if now != page {
                area.write(addr + done + i as u64 * PAGE, page)?;
            }
        }
        done += n;
    }
    Ok(())
}

/// One piece to read from the pages file into a premapped copy.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Read {
    area: Area,
    /// Destination address (inside `area`).
    dst: u64,
    len: u64,
    /// Offset in the pages file.
    off: u64,
    /// The pages file (open for the whole fill).
    fd: RawFd,
}

impl Read {
    fn run(&self) -> std::io::Result<()> {
        self.area.pread(self.fd, self.dst, self.len, self.off)
    }
}

/// Below this many bytes the pieces are read by the task alone.
const SPLIT_MIN: u64 = 64 << 20;

/// The pieces cut into two halves by bytes (pieces may be split), or None
/// when they total less than [`SPLIT_MIN`] bytes: then no reader thread is
/// started. (A thread matters beyond speed: glibc's first pthread_create in
/// a process unblocks SIGCANCEL and SIGSETXID (32, 33) in the calling
/// thread for good, and the task hands its signal mask on to the restorer,
/// where every signal must stay blocked.)
fn split_reads(reads: &[Read]) -> Option<(Vec<Read>, Vec<Read>)> {
    let total: u64 = reads.iter().map(|r| r.len).sum();
    if total < SPLIT_MIN {
        return None;
    }
    let half = total / 2 / PAGE * PAGE;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut acc = 0u64;
    for &r in reads {
        if acc >= half {
            b.push(r);
        } else if acc + r.len <= half {
            a.push(r);
        } else {
            let k = half - acc;
            a.push(Read { len: k, ..r });
            b.push(Read {
                dst: r.dst + k,
                len: r.len - k,
                off: r.off + k,
                ..r
            });
        }
        acc += r.len;
    }
    Some((a, b))
}

/// Read the pieces, split over up to two threads when there is a lot (the
/// fault + copy of fresh anonymous memory is CPU-bound).
fn read_pages(reads: &[Read]) -> std::io::Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(2);
    let split = if threads < 2 || std::env::var_os("CRYO_READ_THREADS").is_some_and(|v| v == "1") {
        None
    } else {
        split_reads(reads)
    };
    let Some((a, b)) = split else {
        return reads.iter().try_for_each(|r| r.run());
    };
    std::thread::scope(|sc| {
        let h = sc.spawn(|| b.iter().try_for_each(|r| r.run()));
        let ra = a.iter().try_for_each(|r| r.run());
        let rb = h
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("reader thread panicked")));
        ra.and(rb)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some_area() -> Area {
        (0..64u64)
            .find_map(|i| Area::reserve(0x5b00_0000_0000 + i * 0x100_0000, PAGE).ok())
            .expect("a free range")
    }

    /// The split goes by the pieces' lengths, never by their addresses:
    /// small reads at high addresses start no reader thread (a thread
    /// would leave glibc's SIGCANCEL/SIGSETXID unblocked in the task and so
    /// in its restorer, where a SIGEV_THREAD timer firing during the restore
    /// is then lost).
    #[test]
    fn small_reads_at_high_addresses_are_not_split() {
        let area = some_area();
        let reads: Vec<Read> = (0..8u64)
            .map(|i| Read {
                area,
                dst: 0x7f00_0000_0000 + i * 0x10_0000,
                len: 8 * PAGE,
                off: i * 8 * PAGE,
                fd: -1,
            })
            .collect();
        assert_eq!(split_reads(&reads), None);
    }

    #[test]
    fn large_reads_are_split_in_halves_by_bytes() {
        let area = some_area();
        let big = SPLIT_MIN;
        let reads = [
            Read {
                area,
                dst: 0x1000_0000,
                len: big,
                off: 0,
                fd: -1,
            },
            Read {
                area,
                dst: 0x9000_0000,
                len: 2 * PAGE,
                off: big,
                fd: -1,
            },
        ];
        let (a, b) = split_reads(&reads).expect("split");
        let half = (big + 2 * PAGE) / 2 / PAGE * PAGE;
        assert_eq!(a.iter().map(|r| r.len).sum::<u64>(), half);
        assert_eq!(a.iter().chain(&b).map(|r| r.len).sum::<u64>(), big + 2 * PAGE);
        // The first piece is cut where the halves meet, file offset with it.
        assert_eq!(b[0].dst, 0x1000_0000 + half);
        assert_eq!(b[0].off, half);
        assert_eq!(b[1], reads[1]);
    }

    fn vma(start: u64, end: u64, kind: VmaKind, flags: u32) -> Vma {
        Vma {
            start,
            end,
            pgoff: 0,
            prot: 3,
            flags,
            madv: 0,
            kind,
        }
    }

    #[test]
    fn only_same_range_kind_and_file_are_inherited() {
        let anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u32;
        let a = vma(0x1000, 0x3000, VmaKind::AnonPrivate, anon);
        assert!(inheritable(&a, &a.clone()));
        assert!(!inheritable(&a, &vma(0x1000, 0x4000, VmaKind::AnonPrivate, anon)));
        assert!(!inheritable(
            &a,
            &vma(0x1000, 0x3000, VmaKind::AnonPrivate, anon | libc::MAP_GROWSDOWN as u32)
        ));
        let f = vma(0x1000, 0x3000, VmaKind::FilePrivate(4), libc::MAP_PRIVATE as u32);
        assert!(inheritable(&f, &f.clone()));
        assert!(!inheritable(
            &f,
            &vma(0x1000, 0x3000, VmaKind::FilePrivate(5), libc::MAP_PRIVATE as u32)
        ));
        assert!(!inheritable(&f, &a));
        let sh = vma(0x1000, 0x3000, VmaKind::FileShared(4), libc::MAP_SHARED as u32);
        assert!(!inheritable(&sh, &sh.clone()));
        let d = vma(
            0x1000,
            0x3000,
            VmaKind::AnonPrivate,
            MAP_DROPPABLE | libc::MAP_ANONYMOUS as u32,
        );
        assert!(!inheritable(&d, &d.clone()));
    }
}
