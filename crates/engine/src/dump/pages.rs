//! Page contents: PAGEMAP_SCAN of the VMAs to dump, then either
//! process_vm_readv straight into pages-N.img while frozen, or the parasite
//! vmsplicing (SPLICE_F_GIFT) into pipes made before the freeze, drained into
//! pages-N.img once the tree is released or killed.

use super::{mem, DumpCtx, DumpError, Result};
use crate::parasite::Parasite;
use crate::proc::Vma;
use crate::state::mm::MapKind;
use cryo_abi::parasite::{Range, MAX_FDS_PER_MSG};
use cryo_image::{pb, ImageWriter};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Pipes (read end, write end) of PIPE_BYTES each, made before the freeze.
#[derive(Default)]
pub(super) struct PipePool {
    pipes: Vec<(OwnedFd, OwnedFd)>,
}

impl PipePool {
    pub(super) fn make() -> std::io::Result<(OwnedFd, OwnedFd)> {
        let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        nix::fcntl::fcntl(&wr, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES as i32))?;
        Ok((rd, wr))
    }

    /// How many pipes the anonymous memory of `pids` (RssAnon) needs,
    /// within our fd limit (raised to the hard one). The fd table is grown
    /// for them now: call this before starting other threads, since growing
    /// a table that threads share waits for an RCU grace period each time
    /// it doubles (~10 ms here, five times for 1 GiB).
    pub(super) fn size_for(pids: &[i32]) -> usize {
        let anon_kb: u64 = pids
            .iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
            .filter_map(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("RssAnon:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .sum();
        let want = (anon_kb * 1024).div_ceil(PIPE_BYTES) as usize + 4 * pids.len();
        // Raise our soft fd limit to the hard one; keep room for everything else.
        let lim = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, lim.1, lim.1);
        let room = (lim.1.saturating_sub(256) / 2) as usize;
        let n = want.min(room);
        // The lowest free fd from 2n + 64 on: the table grows to hold it.
        if let Ok(f) = std::fs::File::open("/dev/null") {
            let high = (2 * n + 64).min(lim.1.saturating_sub(1) as usize) as i32;
            if let Ok(fd) = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(high)) {
                let _ = nix::unistd::close(fd);
            }
        }
        n
    }

    /// `n` pipes (fewer if we run out of fds: more are made on demand).
    pub(super) fn make_n(n: usize) -> PipePool {
        let mut pool = PipePool::default();
        for _ in 0..n {
            match Self::make() {
                Ok(p) => pool.pipes.push(p),
                Err(_) => break,
            }
        }
        pool
    }

    pub(super) fn take(&mut self) -> std::io::Result<(OwnedFd, OwnedFd)> {
        match self.pipes.pop() {
            Some(p) => Ok(p),
            None => Self::make(),
        }
    }
}

/// Pages captured in pipes, to be written to a pages file.
pub(super) struct PendingPages {
    path: PathBuf,
    len: u64,
    pipes: Vec<(OwnedFd, u64)>,
}

/// The runs of pages to dump (and the number of pages scanned).
pub(super) fn scan_pages(pid: i32, vmas: &[(Vma, MapKind)]) -> Result<(Vec<mem::Run>, u64)> {
    let pm_path = format!("/proc/{pid}/pagemap");
    let io = |source| DumpError::Io {
        path: pm_path.clone().into(),
        source,
    };
    let pm = std::fs::File::open(&pm_path).map_err(io)?;
    let mut runs = Vec::new();
    let mut scanned = 0u64;
    for (v, k) in vmas {
        if matches!(
            k,
            MapKind::Heap
                | MapKind::AnonPrivate
                | MapKind::FilePrivate
                | MapKind::MemfdPrivate
                | MapKind::Vdso
                | MapKind::AioRing
        ) {
            scanned += (v.end - v.start) / 4096;
        }
        runs.extend(mem::scan_vma(pm.as_raw_fd(), v, *k).map_err(io)?);
    }
    Ok((mem::merge_runs(runs), scanned))
}

/// Biggest pipe an unprivileged F_SETPIPE_SZ gets here (pipe-max-size).
pub(super) const PIPE_BYTES: u64 = 1 << 20;

/// What [`scan_and_splice`] found: runs, pages scanned, and the pipes
/// holding the runs' bytes in order (with their lengths).
type Scanned = (Vec<mem::Run>, u64, Vec<(OwnedFd, u64)>);

/// Address space scanned per step of [`scan_and_splice`]: one full batch
/// of pipes when every page is there, so that each step's batch is in
/// flight while the next step is scanned.
const SCAN_STEP: u64 = MAX_FDS_PER_MSG as u64 * PIPE_BYTES;

/// Scan the VMAs with PAGEMAP_SCAN and have the parasite vmsplice every run
/// into pipes of ours (1 MiB each), pipelined: while the parasite splices
/// one batch, the next stretch of address space is scanned. Returns the
/// merged runs, the pages scanned, and the pipes with their lengths in
/// the order of the runs. The vdso is copied from outside instead (its
/// pages are the kernel's).
pub(super) fn scan_and_splice(
    para_: &mut Parasite,
    pool: &mut PipePool,
    pid: i32,
    vmas: &[(Vma, MapKind)],
) -> Result<Scanned> {
    let pm_path = format!("/proc/{pid}/pagemap");
    let pm = std::fs::File::open(&pm_path).map_err(|source| DumpError::Io {
        path: pm_path.clone().into(),
        source,
    })?;
    let mut batches = Splicer {
        para_,
        pid,
        batch: Vec::new(),
        in_flight: None,
    };
    let res = scan_and_splice_inner(&mut batches, &pm, &pm_path, pool, pid, vmas);
    // Never leave a reply unread, even on error: the parasite must be idle
    // before it is told to go.
    let last = batches.wait();
    let (runs, scanned, out) = res?;
    last?;
    Ok((mem::merge_runs(runs), scanned, out))
}

fn scan_and_splice_inner(
    b: &mut Splicer,
    pm: &std::fs::File,
    pm_path: &str,
    pool: &mut PipePool,
    pid: i32,
    vmas: &[(Vma, MapKind)],
) -> Result<Scanned> {
    let io = |what: &str, e: std::io::Error| DumpError::task(pid, format!("{what}: {e}"));
    let mut runs = Vec::new();
    let mut scanned = 0u64;
    let mut out: Vec<(OwnedFd, u64)> = Vec::new();
    // The pipe being filled by the parasite: runs share pipes (a VMA of one
    // page must not cost a pipe: thousands of them would run out of fds).
    let mut cur: Option<(OwnedFd, OwnedFd, u64)> = None;
    let mut mem: Option<std::fs::File> = None;
    for (v, k) in vmas {
        if !matches!(
            k,
            MapKind::Heap
                | MapKind::AnonPrivate
                | MapKind::FilePrivate
                | MapKind::MemfdPrivate
                | MapKind::Vdso
                | MapKind::AioRing
        ) {
            continue; // no pages of their own to dump
        }
        scanned += (v.end - v.start) / 4096;
        // The vdso's pages are the kernel's, and a mapping without PROT_READ
        // (PROT_NONE after a write, write-only) makes vmsplice fail with
        // EFAULT: those are copied from outside into pipes of their own.
        // An AIO ring is the kernel's too: read through /proc/PID/mem.
        let outside = matches!(k, MapKind::Vdso | MapKind::AioRing) || !v.read;
        let mut at = v.start;
        while at < v.end {
            let end = if matches!(k, MapKind::Vdso | MapKind::AioRing) {
                v.end
            } else {
                at.saturating_add(SCAN_STEP).min(v.end)
            };
            let part = mem::scan_vma_part(pm.as_raw_fd(), v, *k, at, end).map_err(|source| DumpError::Io {
                path: pm_path.into(),
                source,
            })?;
            at = end;
            for r in &part {
                let mut a = r.start;
                let end = r.start + r.len;
                while a < end {
                    let n = (end - a).min(PIPE_BYTES);
                    if outside {
                        // After the pages already in the shared pipe.
                        if let Some((rd, _, used)) = cur.take() {
                            out.push((rd, used));
                        }
                        let (rd, wr) = pool.take().map_err(|e| io("making a page pipe", e))?;
                        let buf = read_outside(pid, &mut mem, *k == MapKind::Vdso, a, n as usize)?;
                        nix::unistd::write(&wr, &buf).map_err(|e| io("filling a pipe", e.into()))?;
                        out.push((rd, n));
                    } else {
                        if cur.as_ref().is_some_and(|c| c.2 + n > PIPE_BYTES) {
                            let (rd, _, used) = cur.take().expect("checked");
                            out.push((rd, used));
                        }
                        if cur.is_none() {
                            let (rd, wr) = pool.take().map_err(|e| io("making a page pipe", e))?;
                            cur = Some((rd, wr, 0));
                        }
                        let c = cur.as_mut().expect("set above");
                        let wr = c.1.try_clone().map_err(|e| io("duplicating a page pipe", e))?;
                        c.2 += n;
                        b.batch.push((Range { addr: a, len: n }, wr));
                        if b.batch.len() == MAX_FDS_PER_MSG {
                            b.send()?;
                        }
                    }
                    a += n;
                }
            }
            runs.extend(part);
            // The step's pages go now: the next step is scanned meanwhile.
            b.send()?;
        }
    }
    if let Some((rd, _, used)) = cur.take() {
        out.push((rd, used));
    }
    Ok((runs, scanned, out))
}

/// `len` bytes at `addr` of `pid`, read from outside: the vdso with
/// process_vm_readv, anything else through /proc/PID/mem (which reads
/// mappings without PROT_READ too), opened on first use into `mem`.
fn read_outside(pid: i32, mem: &mut Option<std::fs::File>, vdso: bool, addr: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    if vdso {
        let got = crate::sys::process_vm_readv(pid, &mut buf, &[(addr, len)])
            .map_err(|e| DumpError::task(pid, format!("reading the vdso: {e}")))?;
        if got != len {
            return Err(DumpError::task(pid, "short read of the vdso"));
        }
        return Ok(buf);
    }
    read_mem(pid, mem, addr, &mut buf)?;
    Ok(buf)
}

/// Fill `buf` from `addr` of `pid` through /proc/PID/mem.
fn read_mem(pid: i32, mem: &mut Option<std::fs::File>, addr: u64, buf: &mut [u8]) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let path = format!("/proc/{pid}/mem");
    if mem.is_none() {
        *mem = Some(std::fs::File::open(&path).map_err(|source| DumpError::Io {
            path: path.clone().into(),
            source,
        })?);
    }
    let f = mem.as_ref().expect("opened above");
    f.read_exact_at(buf, addr)
        .map_err(|e| DumpError::task(pid, format!("reading memory at {addr:#x} through {path}: {e}")))
}

/// Batches of vmsplice commands, at most one in flight.
struct Splicer<'a, 'b> {
    para_: &'a mut Parasite<'b>,
    pid: i32,
    batch: Vec<(Range, OwnedFd)>,
    /// Bytes of the batch the parasite is splicing now.
    in_flight: Option<u64>,
}

impl Splicer<'_, '_> {
    /// Wait for the batch in flight (if any), then send the pending one.
    fn send(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.wait()?;
        let ranges: Vec<Range> = self.batch.iter().map(|(r, _)| *r).collect();
        let fds: Vec<i32> = self.batch.iter().map(|(_, f)| f.as_raw_fd()).collect();
        let pid = self.pid;
        self.para_
            .vmsplice_batch_send(&ranges, &fds)
            .map_err(|source| DumpError::Parasite { pid, source })?;
        self.in_flight = Some(ranges.iter().map(|r| r.len).sum());
        self.batch.clear(); // closes our write ends: the parasite has its own
        Ok(())
    }

    /// Wait for the batch in flight, if any, and check that it was spliced whole.
    fn wait(&mut self) -> Result<()> {
        let Some(want) = self.in_flight.take() else {
            return Ok(());
        };
        let pid = self.pid;
        let got = self
            .para_
            .vmsplice_batch_wait()
            .map_err(|source| DumpError::Parasite { pid, source })?;
        if got != want {
            return Err(DumpError::task(pid, format!("vmsplice moved {got} of {want} bytes")));
        }
        Ok(())
    }
}

/// pagemap-PID.img, and pages-N.img: written now (readv mode) or created and
/// pre-allocated, to be filled from the pipes later (vmsplice mode).
pub(super) fn dump_pages(
    ctx: &mut DumpCtx,
    pid: i32,
    runs: &[mem::Run],
    spliced: Option<Vec<(OwnedFd, u64)>>,
) -> Result<()> {
    let pages_id = ctx.files.alloc_pages_id();
    let pages_path = ctx.out.path(&format!("pages-{pages_id}.img"));
    let total: u64 = runs.iter().map(|r| r.len).sum();
    match spliced {
        None => {
            let t = Instant::now();
            let written = write_pages(pid, runs, &pages_path)?;
            ctx.stats.memwrite_time += t.elapsed().as_micros() as u32;
            ctx.stats.pages_written += written / 4096;
        }
        Some(pipes) => {
            let io = |source| DumpError::Io {
                path: pages_path.clone(),
                source,
            };
            std::fs::File::create(&pages_path).map_err(io)?;
            ctx.stats.pages_written += total / 4096;
            ctx.stats.page_pipes = Some(ctx.stats.page_pipes.unwrap_or(0) + pipes.len() as u64);
            ctx.pending.push(PendingPages {
                path: pages_path.clone(),
                len: total,
                pipes,
            });
        }
    }
    let path = ctx.out.path(&format!("pagemap-{}.img", ctx.vpid(pid)));
    let mut w = ImageWriter::create(&path, Some("PAGEMAP"))?;
    w.entry(&pb::PagemapHead { pages_id })?;
    for e in mem::pagemap_entries(runs) {
        w.entry(&e)?;
    }
    ctx.defer(w);
    Ok(())
}

/// Before the tree is killed: is there room for the pages still in pipes?
/// (A statvfs check rather than fallocate, which on tmpfs would allocate and
/// zero every page while the tree is frozen.)
pub(super) fn check_room(ctx: &DumpCtx) -> Result<()> {
    let need: u64 = ctx.pending.iter().map(|p| p.len).sum::<u64>() + (1 << 20);
    let dir = &ctx.opts.dir;
    let st = nix::sys::statvfs::statvfs(dir).map_err(|e| DumpError::Io {
        path: dir.clone(),
        source: e.into(),
    })?;
    let avail = st.blocks_available() as u64 * st.fragment_size() as u64;
    if avail < need {
        return Err(DumpError::Io {
            path: dir.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("{need} bytes of pages to write, {avail} available"),
            ),
        });
    }
    Ok(())
}

/// Drain the page pipes into their pages files, `threads` at a time.
///
/// Each file is first given its blocks with fallocate (on ext4 this takes a
/// few ms for 1 GiB and makes the writes after it cheaper: no delayed
/// allocation to reserve block by block); not on tmpfs, where it would
/// allocate and zero every page before the copy. Splice then copies each
/// pipe into the page cache at its offset: once the tree is dead the pipes
/// hold the last references to its pages, so every splice frees pages that
/// the next one reuses (recently used memory, where fresh memory may first
/// have to be faulted in by the hypervisor).
pub(super) fn drain_pending(pending: Vec<PendingPages>, threads: usize) -> Result<()> {
    let mut jobs: Vec<(usize, OwnedFd, u64, u64)> = Vec::new();
    let mut files = Vec::new();
    for (i, p) in pending.into_iter().enumerate() {
        let io = |source| DumpError::Io {
            path: p.path.clone(),
            source,
        };
        let f = std::fs::OpenOptions::new().write(true).open(&p.path).map_err(io)?;
        if p.len > 0 && !is_tmpfs(&f) {
            match nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, p.len as i64) {
                Ok(()) | Err(nix::errno::Errno::EOPNOTSUPP) => {}
                Err(e) => return Err(io(e.into())),
            }
        }
        let mut off = 0;
        for (rd, len) in p.pipes {
            jobs.push((i, rd, off, len));
            off += len;
        }
        files.push((p.path, f));
    }
    let run = |jobs: Vec<(usize, OwnedFd, u64, u64)>| -> Result<()> {
        for (i, rd, off, len) in jobs {
            let (path, f) = &files[i];
            let io = |source| DumpError::Io {
                path: path.clone(),
                source,
            };
            let mut done = 0u64;
            while done < len {
                let n = crate::sys::splice_to(
                    rd.as_raw_fd(),
                    f.as_raw_fd(),
                    off + done,
                    (len - done) as usize,
                    libc::SPLICE_F_MOVE,
                )
                .map_err(io)?;
                if n == 0 {
                    return Err(io(std::io::Error::other("page pipe ended early")));
                }
                done += n as u64;
            }
        }
        Ok(())
    };
    // Consecutive shares, so that threads mostly write different files.
    let threads = threads.clamp(1, jobs.len().max(1));
    let per = jobs.len().div_ceil(threads);
    let mut shares = Vec::new();
    while jobs.len() > per {
        let rest = jobs.split_off(per);
        shares.push(std::mem::replace(&mut jobs, rest));
    }
    shares.push(jobs);
    let first = shares.remove(0);
    std::thread::scope(|s| {
        let hs: Vec<_> = shares.into_iter().map(|j| s.spawn(|| run(j))).collect();
        let mut res = run(first);
        for h in hs {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(DumpError::task(0, "page writer thread panicked")));
            res = res.and(r);
        }
        res
    })
}

fn is_tmpfs(f: &std::fs::File) -> bool {
    nix::sys::statfs::fstatfs(f).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// Read the runs with process_vm_readv in large chunks and append them to the pages file.
/// Pages go to the page cache (no fsync: the inventory's fsync comes last).
pub(super) fn write_pages(pid: i32, runs: &[mem::Run], path: &Path) -> Result<u64> {
    const CHUNK: usize = 8 << 20;
    let io = |source| DumpError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::create(path).map_err(io)?;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    let mut batch: Vec<(u64, usize)> = Vec::new();
    let mut batch_len = 0usize;
    let mut mem: Option<std::fs::File> = None;
    let mut flush =
        |batch: &mut Vec<(u64, usize)>, len: &mut usize, buf: &mut Vec<u8>, f: &mut std::fs::File| -> Result<u64> {
            if *len == 0 {
                return Ok(0);
            }
            let n = crate::sys::process_vm_readv(pid, &mut buf[..*len], batch).unwrap_or(0);
            if n != *len {
                // A mapping without PROT_READ (PROT_NONE after a write,
                // write-only): process_vm_readv stops there, /proc/PID/mem
                // reads it.
                let mut o = 0;
                for &(a, l) in batch.iter() {
                    read_mem(pid, &mut mem, a, &mut buf[o..o + l])?;
                    o += l;
                }
            }
            // 1 MiB per write: larger writes get 2 MiB page-cache folios,
            // which on this VM come from memory the host has to fault in
            // again (see scripts/bench-dump.sh).
            for piece in buf[..*len].chunks(PIPE_BYTES as usize) {
                f.write_all(piece).map_err(|source| DumpError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
            }
            let done = *len as u64;
            batch.clear();
            *len = 0;
            Ok(done)
        };
    for r in runs {
        let mut a = r.start;
        let end = r.start + r.len;
        while a < end {
            let room = CHUNK - batch_len;
            let n = ((end - a) as usize).min(room);
            batch.push((a, n));
            batch_len += n;
            a += n as u64;
            if batch_len == CHUNK || batch.len() >= 512 {
                total += flush(&mut batch, &mut batch_len, &mut buf, &mut f)?;
            }
        }
    }
    total += flush(&mut batch, &mut batch_len, &mut buf, &mut f)?;
    Ok(total)
}
