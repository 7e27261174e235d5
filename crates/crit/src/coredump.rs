//! ELF core files from an image set (`crit core`), built byte by byte: what the kernel would have written
//! had the process crashed at the moment of the dump, so gdb, eu-stack or readelf can open it.
//!
//! Layout: ELF header, program headers (one PT_NOTE, then one PT_LOAD per VMA), the notes, then each
//! VMA's bytes page-aligned. Notes, in the kernel's order: for the main thread NT_PRSTATUS, NT_PRPSINFO,
//! NT_AUXV, NT_FILE, NT_FPREGSET, NT_X86_XSTATE; then NT_PRSTATUS, NT_FPREGSET, NT_X86_XSTATE for every
//! other thread. gdb ties FPREGSET/XSTATE notes to the PRSTATUS before them.
//!
//! Memory: a VMA's file part (`p_filesz`) ends at its last dumped page; pages not dumped below that are
//! zero for anonymous memory and read from the mapped file (when it is readable here and has the size
//! files.img recorded) for file mappings;
//! a VMA with no dumped page has `p_filesz` 0, so gdb reads zeros (anonymous) or the file (text of the
//! program and libraries, found through NT_FILE). Shared memory (shared anonymous, memfd, SysV shm) comes
//! from the objects' own pagemaps (`pagemap-shmem-ID.img`), as in `crit mem`.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use cryo_image::{pb, ImageSet, PAGE_SIZE};

use crate::explore::files::FileTable;
use crate::explore::vma::*;
use crate::explore::{process_of_thread, threads_of, x86_info, ExploreError, Result};
use crate::memory::Memory;

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const NT_PRSTATUS: u32 = 1;
const NT_FPREGSET: u32 = 2;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_FILE: u32 = 0x4649_4c45;
const NT_X86_XSTATE: u32 = 0x202;
const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;

/// Size of the xsave area written in NT_X86_XSTATE: Intel's standard (non-compacted) layout up to PKRU,
/// which gdb recognises by this size.
pub const XSAVE_SIZE: usize = 2696;
const XSAVE_AVX: usize = 576;
const XSAVE_BNDREGS: usize = 960;
const XSAVE_BNDCSR: usize = 1024;
const XSAVE_OPMASK: usize = 1088;
const XSAVE_ZMM_HI256: usize = 1152;
const XSAVE_HI16_ZMM: usize = 1664;
const XSAVE_PKRU: usize = 2688;

/// One thread's register state, as the notes carry it.
#[derive(Debug, Clone)]
struct ThreadState {
    tid: u32,
    gp: pb::UserX86RegsEntry,
    fp: pb::UserX86FpregsEntry,
    blocked: u64,
}

/// What went into a core file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CoreSummary {
    pub pid: u32,
    pub threads: Vec<u32>,
    pub segments: usize,
    /// Bytes of memory written (p_filesz total).
    pub memory_bytes: u64,
    /// Pages taken from mapped files because the dump did not hold them.
    pub pages_from_files: u64,
    pub size: u64,
}

fn put_u16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn pad4(b: &mut Vec<u8>) {
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
}

/// One ELF note: header, name (NUL-terminated, padded to 4) and descriptor (padded to 4).
pub fn note(out: &mut Vec<u8>, name: &str, kind: u32, desc: &[u8]) {
    put_u32(out, name.len() as u32 + 1);
    put_u32(out, desc.len() as u32);
    put_u32(out, kind);
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(desc);
    pad4(out);
}

/// `struct user_regs_struct` (27 longs, the same order as CRIU's user_x86_regs_entry).
pub fn user_regs(g: &pb::UserX86RegsEntry) -> Vec<u8> {
    let mut b = Vec::with_capacity(216);
    for v in [
        g.r15, g.r14, g.r13, g.r12, g.bp, g.bx, g.r11, g.r10, g.r9, g.r8, g.ax, g.cx, g.dx, g.si, g.di, g.orig_ax,
        g.ip, g.cs, g.flags, g.sp, g.ss, g.fs_base, g.gs_base, g.ds, g.es, g.fs, g.gs,
    ] {
        put_u64(&mut b, v);
    }
    b
}

/// `struct elf_prstatus` of x86_64 (336 bytes).
fn prstatus(t: &ThreadState, p: &pb::PstreeEntry) -> Vec<u8> {
    let mut b = Vec::with_capacity(336);
    b.extend_from_slice(&[0; 12]); // pr_info: si_signo, si_code, si_errno
    put_u16(&mut b, 0); // pr_cursig
    put_u16(&mut b, 0);
    put_u64(&mut b, 0); // pr_sigpend
    put_u64(&mut b, t.blocked); // pr_sighold
    for v in [t.tid, p.ppid, p.pgid, p.sid] {
        put_u32(&mut b, v);
    }
    b.extend_from_slice(&[0; 64]); // utime, stime, cutime, cstime
    b.extend_from_slice(&user_regs(&t.gp));
    put_u32(&mut b, 1); // pr_fpvalid
    put_u32(&mut b, 0);
    debug_assert_eq!(b.len(), 336);
    b
}

/// `struct elf_prpsinfo` of x86_64 (136 bytes).
fn prpsinfo(p: &pb::PstreeEntry, tc: &pb::TaskCoreEntry, uid: u32, gid: u32, psargs: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(136);
    let (state, sname) = match tc.task_state {
        crate::explore::TASK_DEAD => (4u8, b'Z'),
        crate::explore::TASK_STOPPED => (3, b'T'),
        _ => (0, b'R'),
    };
    b.extend_from_slice(&[state, sname, (sname == b'Z') as u8, 0, 0, 0, 0, 0]);
    put_u64(&mut b, tc.flags as u64); // pr_flag
    put_u32(&mut b, uid);
    put_u32(&mut b, gid);
    for v in [p.pid, p.ppid, p.pgid, p.sid] {
        put_u32(&mut b, v);
    }
    let mut fname = [0u8; 16];
    let c = tc.comm.as_bytes();
    fname[..c.len().min(15)].copy_from_slice(&c[..c.len().min(15)]);
    b.extend_from_slice(&fname);
    let mut args = [0u8; 80];
    let n = psargs.len().min(79);
    for (i, &ch) in psargs[..n].iter().enumerate() {
        args[i] = if ch == 0 { b' ' } else { ch };
    }
    b.extend_from_slice(&args);
    debug_assert_eq!(b.len(), 136);
    b
}

/// The 512-byte FXSAVE image (`struct user_fpregs_struct`).
pub fn fxsave(f: &pb::UserX86FpregsEntry) -> Vec<u8> {
    let mut b = Vec::with_capacity(512);
    put_u16(&mut b, f.cwd as u16);
    put_u16(&mut b, f.swd as u16);
    put_u16(&mut b, f.twd as u16);
    put_u16(&mut b, f.fop as u16);
    put_u64(&mut b, f.rip);
    put_u64(&mut b, f.rdp);
    put_u32(&mut b, f.mxcsr);
    put_u32(&mut b, f.mxcsr_mask);
    for i in 0..32 {
        put_u32(&mut b, f.st_space.get(i).copied().unwrap_or(0));
    }
    for i in 0..64 {
        put_u32(&mut b, f.xmm_space.get(i).copied().unwrap_or(0));
    }
    for i in 0..24 {
        put_u32(&mut b, f.padding.get(i).copied().unwrap_or(0));
    }
    debug_assert_eq!(b.len(), 512);
    b
}

fn put_words_u32(area: &mut [u8], off: usize, words: &[u32], max: usize) {
    for (i, w) in words.iter().take(max).enumerate() {
        area[off + 4 * i..off + 4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
}
fn put_words_u64(area: &mut [u8], off: usize, words: &[u64], max: usize) {
    for (i, w) in words.iter().take(max).enumerate() {
        area[off + 8 * i..off + 8 * i + 8].copy_from_slice(&w.to_le_bytes());
    }
}

/// XCR0 for the note: x87, SSE and AVX always; MPX, AVX-512 and PKRU when the dump holds their state.
pub fn xcr0_of(x: &pb::UserX86XsaveEntry) -> u64 {
    let mut xcr0 = 0b111;
    if !x.bndreg_state.is_empty() || !x.bndcsr_state.is_empty() {
        xcr0 |= 0b11 << 3;
    }
    if !x.opmask_reg.is_empty() || !x.zmm_upper.is_empty() || !x.hi16_zmm.is_empty() {
        xcr0 |= 0b111 << 5;
    }
    if !x.pkru.is_empty() {
        xcr0 |= 1 << 9;
    }
    xcr0
}

/// The XSAVE area (standard layout, [`XSAVE_SIZE`] bytes) with XCR0 in the software-reserved bytes
/// 464..472 as the kernel writes it, or `None` when the dump has no xsave state.
pub fn xsave_area(f: &pb::UserX86FpregsEntry) -> Option<Vec<u8>> {
    let x = f.xsave.as_ref()?;
    let mut a = fxsave(f);
    a.resize(XSAVE_SIZE, 0);
    let xcr0 = xcr0_of(x);
    a[464..472].copy_from_slice(&xcr0.to_le_bytes());
    a[512..520].copy_from_slice(&(x.xstate_bv & xcr0).to_le_bytes());
    put_words_u32(&mut a, XSAVE_AVX, &x.ymmh_space, 64);
    put_words_u64(&mut a, XSAVE_BNDREGS, &x.bndreg_state, 8);
    put_words_u64(&mut a, XSAVE_BNDCSR, &x.bndcsr_state, 2);
    put_words_u64(&mut a, XSAVE_OPMASK, &x.opmask_reg, 8);
    put_words_u64(&mut a, XSAVE_ZMM_HI256, &x.zmm_upper, 64);
    put_words_u64(&mut a, XSAVE_HI16_ZMM, &x.hi16_zmm, 128);
    put_words_u32(&mut a, XSAVE_PKRU, &x.pkru, 2);
    Some(a)
}

/// NT_AUXV: the saved auxv up to and including AT_NULL.
fn auxv(mm: &pb::MmEntry) -> Vec<u8> {
    let mut b = Vec::new();
    for pair in mm.mm_saved_auxv.chunks(2) {
        let (k, v) = (pair[0], pair.get(1).copied().unwrap_or(0));
        put_u64(&mut b, k);
        put_u64(&mut b, v);
        if k == 0 {
            return b;
        }
    }
    put_u64(&mut b, 0);
    put_u64(&mut b, 0);
    b
}

/// NT_FILE: count, page size, (start, end, offset in pages) per file mapping, then the names.
fn nt_file(mm: &pb::MmEntry, files: &FileTable) -> Vec<u8> {
    let maps: Vec<(&pb::VmaEntry, String)> = mm
        .vmas
        .iter()
        .filter(|v| is_file_backed(v))
        .map(|v| (v, files.reg_name(v.shmid as u32)))
        .collect();
    let mut b = Vec::new();
    put_u64(&mut b, maps.len() as u64);
    put_u64(&mut b, PAGE_SIZE);
    for (v, _) in &maps {
        put_u64(&mut b, v.start);
        put_u64(&mut b, v.end);
        put_u64(&mut b, v.pgoff / PAGE_SIZE);
    }
    for (_, n) in &maps {
        b.extend_from_slice(n.as_bytes());
        b.push(0);
    }
    b
}

fn pflags(prot: u32) -> u32 {
    // PF_X 1, PF_W 2, PF_R 4
    (if prot & PROT_EXEC != 0 { 1 } else { 0 })
        | (if prot & PROT_WRITE != 0 { 2 } else { 0 })
        | (if prot & PROT_READ != 0 { 4 } else { 0 })
}

/// One PT_LOAD to be.
struct Segment<'a> {
    vma: &'a pb::VmaEntry,
    start: u64,
    end: u64,
    prot: u32,
    filesz: u64,
    offset: u64,
}

/// Undumped space at the bottom of a VMA from which it gets a segment of its own.
const SPLIT_BELOW: u64 = 64 * 1024;

/// Write the core of the process of `tid` (a pid or any thread id) to `out`; thread `tid` comes first, so
/// it is gdb's current thread. Returns what was written.
pub fn write_core(set: &ImageSet, tid: u32, out: &Path) -> Result<CoreSummary> {
    let p = process_of_thread(set, tid)?;
    let pid = p.pid;
    let mem = Memory::open(set, pid)?; // refuses a zombie
    let mm = set.mm(pid)?;
    let core = set.core(pid)?;
    let tc = core.tc.clone().unwrap_or_default();
    let files = FileTable::load(set)?;

    let threads = thread_states(set, &p, &core, &tc, tid)?;
    let notes = build_notes(set, &p, &core, &tc, &mm, &files, &threads);
    let mut segs = plan_segments(&mm, &mem);
    let phnum = 1 + segs.len();
    if phnum >= 0xffff {
        return Err(ExploreError::Invalid {
            file: set.path(&format!("mm-{pid}.img")).display().to_string(),
            what: format!(
                "{} mappings: too many for an ELF core without extended numbering",
                mm.vmas.len()
            ),
        });
    }
    let notes_off = place_segments(&mut segs, phnum, notes.len());

    let io_err = write_error(out);
    let (pos, memory_bytes, pages_from_files) = write_atomically(out, |w| {
        let h = elf_headers(phnum, notes_off, &notes, &segs);
        w.write_all(&h).map_err(io_err)?;
        write_memory(w, &segs, h.len() as u64, &mem, &files, out)
    })?;
    Ok(CoreSummary {
        pid,
        threads: threads.iter().map(|t| t.tid).collect(),
        segments: segs.len(),
        memory_bytes,
        pages_from_files,
        size: pos,
    })
}

/// The register state of every thread of `p` (`core` and `tc` are the main thread's), the thread `tid`
/// first: gdb makes the first PRSTATUS the current thread.
fn thread_states(
    set: &ImageSet,
    p: &pb::PstreeEntry,
    core: &pb::CoreEntry,
    tc: &pb::TaskCoreEntry,
    tid: u32,
) -> Result<Vec<ThreadState>> {
    let pid = p.pid;
    let mut threads = Vec::new();
    for tid in threads_of(p) {
        let c = if tid == pid { core.clone() } else { set.core(tid)? };
        let ti = x86_info(set, tid, &c)?.clone();
        let blocked = c
            .thread_core
            .as_ref()
            .and_then(|t| t.blk_sigset)
            .unwrap_or(tc.blk_sigset);
        threads.push(ThreadState {
            tid,
            gp: ti.gpregs,
            fp: ti.fpregs,
            blocked,
        });
    }
    // The asked-for thread first: gdb makes the first PRSTATUS the current thread.
    if let Some(i) = threads.iter().position(|t| t.tid == tid) {
        let main = threads.remove(i);
        threads.insert(0, main);
    }
    Ok(threads)
}

/// The PT_NOTE contents, in the kernel's order: for the first thread NT_PRSTATUS, NT_PRPSINFO (credentials
/// and the first 80 bytes of the arguments), NT_AUXV, NT_FILE, NT_FPREGSET, NT_X86_XSTATE; for every other
/// thread NT_PRSTATUS, NT_FPREGSET, NT_X86_XSTATE.
fn build_notes(
    set: &ImageSet,
    p: &pb::PstreeEntry,
    core: &pb::CoreEntry,
    tc: &pb::TaskCoreEntry,
    mm: &pb::MmEntry,
    files: &FileTable,
    threads: &[ThreadState],
) -> Vec<u8> {
    let creds = core
        .thread_core
        .as_ref()
        .and_then(|t| t.creds.clone())
        .unwrap_or_default();
    let psargs = set
        .read_memory(
            p.pid,
            mm.mm_arg_start,
            mm.mm_arg_end.saturating_sub(mm.mm_arg_start).min(80) as usize,
        )
        .unwrap_or_default();

    let mut notes = Vec::new();
    for (i, t) in threads.iter().enumerate() {
        note(&mut notes, "CORE", NT_PRSTATUS, &prstatus(t, p));
        if i == 0 {
            note(
                &mut notes,
                "CORE",
                NT_PRPSINFO,
                &prpsinfo(p, tc, creds.uid, creds.gid, &psargs),
            );
            note(&mut notes, "CORE", NT_AUXV, &auxv(mm));
            note(&mut notes, "CORE", NT_FILE, &nt_file(mm, files));
        }
        note(&mut notes, "CORE", NT_FPREGSET, &fxsave(&t.fp));
        if let Some(x) = xsave_area(&t.fp) {
            note(&mut notes, "LINUX", NT_X86_XSTATE, &x);
        }
    }
    notes
}

/// Segments: one per VMA, its file part from the first to the last dumped page; a VMA whose dumped
/// pages start high (a stack, a thread stack) gets an empty segment below them, so the core does not
/// carry megabytes of zeros. Offsets are set later by [`place_segments`].
fn plan_segments<'a>(mm: &'a pb::MmEntry, mem: &Memory) -> Vec<Segment<'a>> {
    let mut segs: Vec<Segment> = Vec::with_capacity(mm.vmas.len() + 8);
    for (vi, v) in mm.vmas.iter().enumerate() {
        let seg = |start, end, filesz| Segment {
            vma: v,
            start,
            end,
            prot: v.prot,
            filesz,
            offset: 0,
        };
        let spans = mem.spans_in(&mem.regions[vi], v.start, v.end);
        match (spans.first(), spans.last()) {
            (Some(&(first, _)), Some(&(_, last))) if v.status & VMA_AREA_VVAR == 0 => {
                if first - v.start >= SPLIT_BELOW {
                    segs.push(seg(v.start, first, 0));
                    segs.push(seg(first, v.end, last - first));
                } else {
                    segs.push(seg(v.start, v.end, last - v.start));
                }
            }
            _ => segs.push(seg(v.start, v.end, 0)),
        }
    }
    segs
}

/// Lay the file out: the headers (`phnum` program headers), the notes (`notes_len` bytes), then each
/// segment's bytes from the next page boundary on. Sets each segment's offset; returns the notes' offset.
fn place_segments(segs: &mut [Segment], phnum: usize, notes_len: usize) -> u64 {
    let notes_off = EHDR_SIZE + PHDR_SIZE * phnum as u64;
    let mut off = (notes_off + notes_len as u64).next_multiple_of(PAGE_SIZE);
    for s in segs {
        s.offset = off;
        off += s.filesz;
    }
    notes_off
}

/// The error for a failed write of the core file `out`.
fn write_error(out: &Path) -> impl Fn(std::io::Error) -> ExploreError + Copy + '_ {
    move |e| ExploreError::Invalid {
        file: out.display().to_string(),
        what: format!("cannot write: {e}"),
    }
}

/// Create `out` through the temporary name `OUT.tmp`: `write` fills it (buffered); on any error the
/// temporary is removed, so no half core is left behind, and on success it is renamed to `out`.
fn write_atomically<T>(out: &Path, write: impl FnOnce(&mut BufWriter<File>) -> Result<T>) -> Result<T> {
    let tmp = {
        let mut t = out.as_os_str().to_owned();
        t.push(".tmp");
        std::path::PathBuf::from(t)
    };
    let io_err = write_error(out);
    let file = File::create(&tmp).map_err(io_err)?;
    let result = (|| -> Result<T> {
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let v = write(&mut w)?;
        w.flush().map_err(io_err)?;
        Ok(v)
    })();
    let v = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, out).map_err(io_err)?;
    Ok(v)
}

/// The ELF header, the program headers (the PT_NOTE at `notes_off`, then one PT_LOAD per segment) and the
/// notes: everything before the first segment's bytes.
fn elf_headers(phnum: usize, notes_off: u64, notes: &[u8], segs: &[Segment]) -> Vec<u8> {
    // ELF header.
    let mut h = Vec::with_capacity(64);
    h.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    h.extend_from_slice(&[0; 8]);
    put_u16(&mut h, 4); // ET_CORE
    put_u16(&mut h, 62); // EM_X86_64
    put_u32(&mut h, 1);
    put_u64(&mut h, 0); // e_entry
    put_u64(&mut h, EHDR_SIZE); // e_phoff
    put_u64(&mut h, 0); // e_shoff
    put_u32(&mut h, 0);
    put_u16(&mut h, EHDR_SIZE as u16);
    put_u16(&mut h, PHDR_SIZE as u16);
    put_u16(&mut h, phnum as u16);
    put_u16(&mut h, 64); // e_shentsize
    put_u16(&mut h, 0);
    put_u16(&mut h, 0);
    // Program headers.
    let phdr = |h: &mut Vec<u8>, ty: u32, flags: u32, off: u64, vaddr: u64, filesz: u64, memsz: u64, align: u64| {
        put_u32(h, ty);
        put_u32(h, flags);
        put_u64(h, off);
        put_u64(h, vaddr);
        put_u64(h, 0);
        put_u64(h, filesz);
        put_u64(h, memsz);
        put_u64(h, align);
    };
    phdr(&mut h, PT_NOTE, 0, notes_off, 0, notes.len() as u64, 0, 4);
    for s in segs {
        phdr(
            &mut h,
            PT_LOAD,
            pflags(s.prot),
            s.offset,
            s.start,
            s.filesz,
            s.end - s.start,
            PAGE_SIZE,
        );
    }
    h.extend_from_slice(notes);
    h
}

/// Write each segment's file part at its offset (zeros in between), the file being at `pos` already.
/// Returns the final position, the memory bytes written and the pages taken from mapped files.
fn write_memory(
    w: &mut impl Write,
    segs: &[Segment],
    mut pos: u64,
    mem: &Memory,
    files: &FileTable,
    out: &Path,
) -> Result<(u64, u64, u64)> {
    let io_err = write_error(out);
    let mut memory_bytes = 0;
    let mut pages_from_files = 0;
    let mut buf = vec![0u8; 1 << 20];
    for s in segs {
        if s.filesz == 0 {
            continue;
        }
        let zeros = vec![0u8; (s.offset - pos) as usize];
        w.write_all(&zeros).map_err(io_err)?;
        pos = s.offset;
        let mut file = mapped_file(s.vma, files);
        let mut a = s.start;
        let end = s.start + s.filesz;
        while a < end {
            let n = ((end - a) as usize).min(buf.len());
            let chunk = &mut buf[..n];
            chunk.fill(0);
            mem.read_into(a, chunk)?;
            // Pages the dump does not hold: from the mapped file if we have it.
            if let Some(f) = file.as_mut() {
                pages_from_files += fill_from_file(f, s.vma, a, chunk, mem);
            }
            w.write_all(chunk).map_err(io_err)?;
            a += n as u64;
        }
        pos += s.filesz;
        memory_bytes += s.filesz;
    }
    Ok((pos, memory_bytes, pages_from_files))
}

/// The file mapped by `vma`, open, when it is file backed and the file here is the one the dump saw:
/// same size as files.img recorded (when it recorded one).
fn mapped_file(vma: &pb::VmaEntry, files: &FileTable) -> Option<File> {
    if !is_file_backed(vma) {
        return None;
    }
    let want = files
        .get(vma.shmid as u32)
        .and_then(|f| f.reg.as_ref())
        .and_then(|r| r.size);
    files
        .reg_path(vma.shmid as u32)
        .and_then(|p| File::open(p).ok())
        .filter(|f| want.is_none_or(|w| f.metadata().is_ok_and(|m| m.len() == w)))
}

/// Fill the pages of `chunk` (memory of `vma` from address `a` on) that the dump does not hold from the
/// mapped file `f`. Returns how many pages got bytes from the file.
fn fill_from_file(f: &mut File, vma: &pb::VmaEntry, a: u64, chunk: &mut [u8], mem: &Memory) -> u64 {
    let mut pages = 0;
    let mut pa = a;
    while pa < a + chunk.len() as u64 {
        let dumped = mem.is_dumped(pa);
        if !dumped {
            let i = (pa - a) as usize;
            let page = &mut chunk[i..i + PAGE_SIZE as usize];
            let foff = vma.pgoff + (pa - vma.start);
            if f.seek(SeekFrom::Start(foff)).is_ok() {
                let mut got = 0;
                while got < page.len() {
                    match f.read(&mut page[got..]) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => got += k,
                    }
                }
                if got > 0 {
                    pages += 1;
                }
            }
        }
        pa += PAGE_SIZE;
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_padding() {
        let mut b = Vec::new();
        note(&mut b, "CORE", 1, &[1, 2, 3]);
        assert_eq!(b.len(), 12 + 8 + 4);
        assert_eq!(&b[12..17], b"CORE\0");
        assert_eq!(&b[20..23], &[1, 2, 3]);
    }

    #[test]
    fn register_order_is_user_regs_struct() {
        let g = pb::UserX86RegsEntry {
            r15: 1,
            ip: 17,
            sp: 20,
            gs: 27,
            ..Default::default()
        };
        let b = user_regs(&g);
        let at = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        assert_eq!((at(0), at(16), at(19), at(26)), (1, 17, 20, 27));
    }

    #[test]
    fn xsave_layout() {
        let f = pb::UserX86FpregsEntry {
            mxcsr: 0x1f80,
            xsave: Some(pb::UserX86XsaveEntry {
                xstate_bv: 0x2a2,
                ymmh_space: vec![7; 64],
                pkru: vec![0x5555_5554, 0],
                ..Default::default()
            }),
            ..Default::default()
        };
        let a = xsave_area(&f).unwrap();
        assert_eq!(a.len(), XSAVE_SIZE);
        assert_eq!(u64::from_le_bytes(a[464..472].try_into().unwrap()), 0x207);
        assert_eq!(u32::from_le_bytes(a[24..28].try_into().unwrap()), 0x1f80);
        assert_eq!(u32::from_le_bytes(a[576..580].try_into().unwrap()), 7);
        assert_eq!(u32::from_le_bytes(a[2688..2692].try_into().unwrap()), 0x5555_5554);
    }
}
