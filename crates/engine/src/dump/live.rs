//! Live checkpoint (`--leave-running`): the tree is stopped only while its
//! state is collected and its private memory write-protected; then it runs
//! while cryo copies a point-in-time image of that memory, and a page the
//! program writes before cryo has saved it is saved first.
//!
//! Copy-before-write is userfaultfd write-protection in synchronous mode: a
//! userfaultfd made inside each process (it binds to that mm), taken by the
//! engine (the process keeps no fd), the private VMAs registered in WP mode
//! and their dumped pages protected while the tree is frozen. A write to a
//! protected page blocks the writer and queues a message; one thread per
//! process copies the pages in order and, between chunks, serves the
//! messages: a page is read (it still holds what it held at the freeze) and
//! written to the pages file, and only then unprotected, which wakes its
//! writer. Pages are never unprotected before they are saved, so every page
//! of the set is what it was at the freeze.
//!
//! What cannot be protected this way is copied while frozen: a task without
//! CAP_SYS_PTRACE (the userfaultfd must also catch the kernel's writes into
//! its memory, which an unprivileged one cannot), a VMA that a
//! userfaultfd holds already (cryo's own memory tracking, the program's), or
//! of a kind WP mode refuses; shared memory and the vdso are dumped frozen as
//! before. A munmap, mremap or MADV_DONTNEED of pages not saved yet (the
//! userfaultfd reports them) fails the dump: the tree goes on, the images are
//! removed. (A CoW snapshot by fork() was the alternative; it leaves a child
//! that the program would see in its tree and would have to reap.)

use super::mem::{self, Run};
use super::{DumpError, Result};
use crate::proc::Vma;
use crate::state::mm::MapKind;
use crate::sys;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Bytes copied between two looks at the userfaultfd.
const CHUNK: u64 = 256 << 10;

/// The pages of one process still to be copied once the tree runs again.
pub(super) struct LiveCopy {
    pid: i32,
    uffd: OwnedFd,
    /// Protected runs with their offsets in the pages file.
    runs: Vec<(Run, u64)>,
    path: PathBuf,
    /// Pages of `runs` saved (in order of the runs' pages).
    saved: Vec<bool>,
    /// Index of the first page of each run in `saved`.
    first: Vec<usize>,
}

/// Can VMAs of this kind be write-protected for the copy?
fn protectable(k: MapKind) -> bool {
    matches!(k, MapKind::Heap | MapKind::AnonPrivate | MapKind::FilePrivate)
}

/// Arm copy-before-write for the dumped `runs` of frozen process `pid`
/// (leader `leader`). Returns the runs that must be read now, while frozen
/// (not protectable), and the live part.
pub(super) fn arm(
    pid: i32,
    leader: &mut crate::ptrace::Stopped,
    code_addr: u64,
    vmas: &[(Vma, MapKind)],
    runs: &[Run],
) -> Result<(Vec<bool>, Option<OwnedFd>)> {
    // Faults from the kernel (a syscall writing into the task's memory, a
    // signal frame) must wait too: no UFFD_USER_MODE_ONLY. A task without
    // the privilege for that (CAP_SYS_PTRACE) is copied frozen.
    let uffd = match crate::parasite::make_userfaultfd(leader, code_addr, 3, false, true) {
        Ok((_, Some(u))) => u,
        Ok((_, None)) => unreachable!("taken"),
        Err(crate::parasite::ParasiteError::Io { source, .. }) if source.raw_os_error() == Some(libc::EPERM) => {
            return Ok((vec![false; runs.len()], None));
        }
        Err(source) => return Err(DumpError::Parasite { pid, source }),
    };
    let want = sys::uffd::UFFD_FEATURE_EVENT_REMAP
        | sys::uffd::UFFD_FEATURE_EVENT_REMOVE
        | sys::uffd::UFFD_FEATURE_EVENT_UNMAP;
    sys::uffd::api(uffd.as_raw_fd(), want).map_err(|e| DumpError::task(pid, format!("UFFDIO_API: {e}")))?;
    // Which VMAs could be registered.
    let mut ok: Vec<(u64, u64)> = Vec::new();
    for (v, k) in vmas {
        if !protectable(*k) || !v.read || !runs.iter().any(|r| r.start < v.end && v.start < r.start + r.len) {
            continue;
        }
        if sys::uffd::register_wp(uffd.as_raw_fd(), v.start, v.end - v.start).is_ok() {
            ok.push((v.start, v.end));
        }
    }
    // A run is live if a registered VMA holds it whole (runs may span VMAs).
    let mut live = Vec::with_capacity(runs.len());
    for r in runs {
        let inside = r.flags & mem::PE_PRESENT != 0 && covered(&ok, r.start, r.start + r.len);
        if inside {
            sys::uffd::writeprotect(uffd.as_raw_fd(), r.start, r.len, true)
                .map_err(|e| DumpError::task(pid, format!("UFFDIO_WRITEPROTECT {:#x}: {e}", r.start)))?;
        }
        live.push(inside);
    }
    Ok((live, Some(uffd)))
}

fn covered(spans: &[(u64, u64)], start: u64, end: u64) -> bool {
    let mut a = start;
    for &(s, e) in spans {
        if s <= a && a < e {
            a = e;
        }
        if a >= end {
            return true;
        }
    }
    a >= end
}

impl LiveCopy {
    /// The live runs (`live[i]` for `runs[i]`) of `pid`, whose pages file
    /// `path` has the frozen runs written already.
    pub(super) fn new(pid: i32, uffd: OwnedFd, runs: &[Run], live: &[bool], path: PathBuf) -> LiveCopy {
        let mut off = 0;
        let mut out = Vec::new();
        let mut first = Vec::new();
        let mut n = 0usize;
        for (r, &l) in runs.iter().zip(live) {
            if r.flags & mem::PE_PRESENT == 0 {
                continue;
            }
            if l {
                out.push((*r, off));
                first.push(n);
                n += (r.len / 4096) as usize;
            }
            off += r.len;
        }
        LiveCopy {
            pid,
            uffd,
            runs: out,
            path,
            saved: vec![false; n],
            first,
        }
    }

    pub(super) fn bytes(&self) -> u64 {
        self.runs.iter().map(|(r, _)| r.len).sum()
    }

    /// Copy every page while the process runs; faults first.
    pub(super) fn run(mut self, bar: crate::progress::Progress) -> Result<u64> {
        let io = |source| DumpError::Io {
            path: self.path.clone(),
            source,
        };
        let f = std::fs::OpenOptions::new().write(true).open(&self.path).map_err(io)?;
        let mut buf = vec![0u8; CHUNK as usize];
        let mut faults = 0u64;
        for i in 0..self.runs.len() {
            let (r, off) = self.runs[i];
            let mut a = r.start;
            while a < r.start + r.len {
                faults += self.serve(&f)?;
                let n = (r.start + r.len - a).min(CHUNK);
                self.save(&f, &mut buf, i, a, n, off + (a - r.start))?;
                bar.inc(n);
                a += n;
            }
        }
        faults += self.serve(&f)?;
        Ok(faults)
    }

    /// Save `[a, a + n)` of run `i` (at `off` in the file) where not saved yet, then unprotect it.
    fn save(&mut self, f: &std::fs::File, buf: &mut [u8], i: usize, a: u64, n: u64, off: u64) -> Result<()> {
        let (r, _) = self.runs[i];
        let p0 = self.first[i] + ((a - r.start) / 4096) as usize;
        let np = (n / 4096) as usize;
        let pid = self.pid;
        if self.saved[p0..p0 + np].iter().any(|s| !s) {
            let got = sys::process_vm_readv(pid, &mut buf[..n as usize], &[(a, n as usize)])
                .map_err(|e| DumpError::task(pid, format!("live copy at {a:#x}: {e} (did it exit?)")))?;
            if got != n as usize {
                return Err(DumpError::task(
                    pid,
                    format!("live copy at {a:#x}: short read ({got} of {n})"),
                ));
            }
            for k in 0..np {
                if !self.saved[p0 + k] {
                    let page = &buf[k * 4096..(k + 1) * 4096];
                    f.write_all_at(page, off + k as u64 * 4096)
                        .map_err(|source| DumpError::Io {
                            path: self.path.clone(),
                            source,
                        })?;
                    self.saved[p0 + k] = true;
                }
            }
        }
        sys::uffd::writeprotect(self.uffd.as_raw_fd(), a, n, false)
            .map_err(|e| DumpError::task(pid, format!("UFFDIO_WRITEPROTECT off {a:#x}: {e}")))?;
        Ok(())
    }

    /// The run and page holding `addr`, if it is one of ours.
    fn find(&self, addr: u64) -> Option<(usize, u64)> {
        let i = self.runs.partition_point(|(r, _)| r.start + r.len <= addr);
        let (r, _) = self.runs.get(i)?;
        (r.start <= addr).then_some((i, addr & !4095))
    }

    /// Any unsaved page in `[start, end)`?
    fn unsaved_in(&self, start: u64, end: u64) -> Option<u64> {
        let mut a = start & !4095;
        while a < end {
            if let Some((i, p)) = self.find(a) {
                let (r, _) = self.runs[i];
                if !self.saved[self.first[i] + ((p - r.start) / 4096) as usize] {
                    return Some(p);
                }
            }
            a += 4096;
        }
        None
    }

    /// Serve the messages queued on the userfaultfd; returns the write faults served.
    fn serve(&mut self, f: &std::fs::File) -> Result<u64> {
        let pid = self.pid;
        let mut n = 0;
        let mut buf = vec![0u8; 4096];
        loop {
            let m = sys::uffd::read_msg(self.uffd.as_fd())
                .map_err(|e| DumpError::task(pid, format!("reading its userfaultfd: {e}")))?;
            match m {
                None => return Ok(n),
                Some(sys::uffd::Msg::Fault { addr, .. }) => {
                    n += 1;
                    match self.find(addr) {
                        Some((i, p)) => {
                            let off = self.runs[i].1 + (p - self.runs[i].0.start);
                            self.save(f, &mut buf, i, p, 4096, off)?;
                        }
                        // Not ours (unprotected already): wake the writer.
                        None => {
                            let _ = sys::uffd::writeprotect(self.uffd.as_raw_fd(), addr & !4095, 4096, false);
                        }
                    }
                }
                Some(sys::uffd::Msg::Remove { start, end }) | Some(sys::uffd::Msg::Unmap { start, end }) => {
                    if let Some(p) = self.unsaved_in(start, end) {
                        return Err(DumpError::task(
                            pid,
                            format!(
                                "it discarded or unmapped memory at {p:#x} during the live copy, before it was saved"
                            ),
                        ));
                    }
                }
                Some(sys::uffd::Msg::Remap { from, len, .. }) => {
                    if let Some(p) = self.unsaved_in(from, from + len) {
                        return Err(DumpError::task(
                            pid,
                            format!("it moved memory at {p:#x} (mremap) during the live copy, before it was saved"),
                        ));
                    }
                }
                Some(sys::uffd::Msg::Fork { .. }) | Some(sys::uffd::Msg::Other(_)) => {}
            }
        }
    }
}
