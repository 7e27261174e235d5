//! Regular files, directories, O_PATH fds and device nodes (REG in files.img),
//! including files deleted while open ("ghost" files: their contents go to
//! ghost-file-N.img, holes kept, linked from remap-fpath.img).

use super::{fown, DescribeCx, FdCtx, FdKind, FileError, FileTable, OpenFile, SetError};
use cryo_image::pb;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

pub struct Reg;

impl FdKind for Reg {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Reg
    }

    fn detect(&self, c: &FdCtx) -> bool {
        matches!(
            c.fmt(),
            libc::S_IFREG | libc::S_IFDIR | libc::S_IFCHR | libc::S_IFBLK | libc::S_IFLNK
        ) && c.link.starts_with('/')
    }

    fn dump(&self, c: &FdCtx, id: u32, t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        let (name, deleted) = split_deleted(&c.link);
        let open = if deleted {
            Some(deleted_fd(c)?)
        } else if c.info.locks.iter().any(|l| l.class == "LEASE") {
            // Opening a leased file breaks the lease (SIGIO to its holder,
            // and a 45 s wait): its build id is read through the task's own
            // description instead (pread does not move its position).
            Some(File::from(c.steal()?))
        } else {
            None
        };
        reg_entry(id, name, deleted, &c.stat, c.flags(), c.info.pos, open, t)
    }

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        Ok(Box::new(Reg::describe_entry(e, cx)?))
    }
}

/// An fd of our own on the deleted file behind fd `c.fd`, to save it from.
/// A regular file is opened anew through /proc (a new open file
/// description: lseek(SEEK_DATA) on a dup would move the task's own file
/// position, and the task's fd may be write-only); anything else (a
/// directory, a device, a FIFO, a symlink held by an O_PATH fd) is never
/// opened again (that could block or have side effects): the task's fd is
/// duplicated with pidfd_getfd.
pub fn deleted_fd(c: &FdCtx) -> Result<File, FileError> {
    if c.fmt() == libc::S_IFREG {
        let p = format!("/proc/{}/fd/{}", c.pid, c.fd);
        File::open(&p).map_err(|source| FileError::Io {
            pid: c.pid,
            fd: c.fd,
            what: "reopening a deleted file".into(),
            source,
        })
    } else {
        Ok(File::from(c.steal()?))
    }
}

/// "/path (deleted)" -> ("/path", true).
pub fn split_deleted(link: &str) -> (&str, bool) {
    match link.strip_suffix(" (deleted)") {
        Some(n) => (n, true),
        None => (link, false),
    }
}

/// Build a REG files.img entry. `open` is needed only for deleted files
/// (their data is saved as a ghost file) — any fd on the same file.
#[allow(clippy::too_many_arguments)]
pub fn reg_entry(
    id: u32,
    name: &str,
    deleted: bool,
    st: &libc::stat,
    flags: u32,
    pos: u64,
    open: Option<File>,
    t: &mut FileTable,
) -> Result<pb::FileEntry, FileError> {
    let is_reg = st.st_mode & libc::S_IFMT == libc::S_IFREG;
    let build_id = if is_reg {
        match &open {
            Some(f) => build_id_of(f),
            None => File::open(name).ok().map(|f| build_id_of(&f)).unwrap_or_default(),
        }
    } else {
        Vec::new()
    };
    if let Some(pid) = dead_proc_pid(name, deleted) {
        // A file of /proc/<pid> of a process that is gone: CRIU's PROCFS
        // remap (once per pid), for a stand-in process with that pid at
        // restore.
        if !t.dead_pids.contains(&pid) {
            t.dead_pids.push(pid);
            t.remaps.push(pb::RemapFilePathEntry {
                orig_id: id,
                remap_id: pid as u32,
                remap_type: Some(pb::RemapType::Procfs as i32),
            });
        }
    } else if deleted {
        let f = open.ok_or_else(|| FileError::Path {
            path: name.into(),
            source: std::io::Error::other("deleted file without an fd to read it"),
        })?;
        let (remap_id, ty) = if st.st_nlink == 0 {
            (ghost(name, st, &f, t)?, pb::RemapType::Ghost)
        } else {
            (link_remap(name, st, &f, t)?, pb::RemapType::Linked)
        };
        t.remaps.push(pb::RemapFilePathEntry {
            orig_id: id,
            remap_id,
            remap_type: Some(ty as i32),
        });
    }
    Ok(pb::FileEntry {
        r#type: pb::FdTypes::Reg as i32,
        id,
        reg: Some(pb::RegFileEntry {
            id,
            flags,
            pos,
            fown: fown(),
            name: name.to_string(),
            mnt_id: None,
            size: is_reg.then_some(st.st_size as u64),
            ext: None,
            mode: Some(st.st_mode),
            build_id,
            checksum: None,
            checksum_config: None,
            checksum_parameter: None,
        }),
        ..Default::default()
    })
}

/// "/proc/<pid>" or "/proc/<pid>/..." of a process that is gone: its pid.
fn dead_proc_pid(name: &str, deleted: bool) -> Option<i32> {
    let rest = name.strip_prefix("/proc/")?;
    let pid: i32 = rest.split('/').next()?.parse().ok()?;
    (pid > 0 && (deleted || !std::path::Path::new(&format!("/proc/{pid}")).exists())).then_some(pid)
}

/// CRIU writes the contents of smaller ghost files as one blob, not chunks.
const GHOST_CHUNKS_THRESH: u64 = 3 * 4096;

/// The ghost-file image of a deleted file (one per inode: every file id on
/// it shares it): its metadata, and for a regular file its data. The limit
/// counts the data blocks (st_blocks), not the holes, as CRIU's does.
fn ghost(name: &str, st: &libc::stat, f: &File, t: &mut FileTable) -> Result<u32, FileError> {
    let key = (st.st_dev, st.st_ino);
    if let Some(&g) = t.ghost_ids.get(&key) {
        return Ok(g);
    }
    let perr = |source: std::io::Error| FileError::Path {
        path: name.into(),
        source,
    };
    let data = st.st_blocks as u64 * 512;
    if data > t.ghost_limit {
        return Err(perr(std::io::Error::other(format!(
            "deleted file holding {data} bytes of data ({} bytes long) is over the ghost limit ({} bytes); raise it with --ghost-limit",
            st.st_size, t.ghost_limit
        ))));
    }
    let fmt = st.st_mode & libc::S_IFMT;
    let size = st.st_size as u64;
    let chunked = fmt == libc::S_IFREG && size >= GHOST_CHUNKS_THRESH;
    let symlnk_target = if fmt == libc::S_IFLNK {
        let t = nix::fcntl::readlinkat(f, "").map_err(|e| perr(std::io::Error::other(format!("readlink: {e}"))))?;
        Some(t.to_string_lossy().into_owned())
    } else {
        None
    };
    let pieces = if fmt != libc::S_IFREG {
        Vec::new()
    } else if chunked {
        data_chunks(f, size, t.ghost_fiemap).map_err(perr)?
    } else {
        let mut buf = vec![0u8; size as usize];
        let mut got = 0;
        while got < buf.len() {
            match f.read_at(&mut buf[got..], got as u64).map_err(perr)? {
                0 => break,
                n => got += n,
            }
        }
        buf.truncate(got);
        vec![(0, buf)]
    };
    let tv = |s: i64, ns: i64| pb::Timeval {
        tv_sec: s as u64,
        tv_usec: (ns / 1000) as u64,
    };
    let g = pb::GhostFileEntry {
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode,
        dev: Some(kdev(st.st_dev)),
        ino: Some(st.st_ino),
        rdev: matches!(fmt, libc::S_IFCHR | libc::S_IFBLK).then_some(kdev(st.st_rdev)),
        atim: Some(tv(st.st_atime, st.st_atime_nsec)),
        mtim: Some(tv(st.st_mtime, st.st_mtime_nsec)),
        chunks: chunked.then_some(true),
        size: chunked.then_some(size),
        symlnk_target,
    };
    let gid = t.alloc_ghost_id();
    t.ghosts.push((gid, g, pieces));
    t.ghost_ids.insert(key, gid);
    Ok(gid)
}

/// A deleted file that still has links elsewhere (criu's --link-remap): a
/// new hard link `link_remap.<id>` is made beside it (or in the nearest
/// existing parent), recorded as a REG entry of its own; restore links it
/// back at the old name, and removes it once restored. The link is removed
/// again if the dump fails.
fn link_remap(name: &str, st: &libc::stat, f: &File, t: &mut FileTable) -> Result<u32, FileError> {
    use std::os::fd::AsRawFd;
    let perr = |source: std::io::Error| FileError::Path {
        path: name.into(),
        source,
    };
    if !t.link_remap {
        return Err(perr(std::io::Error::other(format!(
            "deleted while open, but still has {} link(s) elsewhere: dump it with --link-remap",
            st.st_nlink
        ))));
    }
    let lid = t.alloc_id();
    let src = format!("/proc/self/fd/{}", f.as_raw_fd());
    let mut dir = std::path::Path::new(name).parent();
    let lpath = loop {
        let Some(d) = dir else {
            return Err(perr(std::io::Error::other("no directory to make its link remap in")));
        };
        let lp = d.join(format!("link_remap.{lid}"));
        match nix::unistd::linkat(
            nix::fcntl::AT_FDCWD,
            src.as_str(),
            nix::fcntl::AT_FDCWD,
            &lp,
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        ) {
            Ok(()) => break lp,
            Err(nix::errno::Errno::ENOENT) => dir = d.parent(),
            Err(e) => {
                return Err(perr(std::io::Error::other(format!(
                    "making its link remap {}: {e}",
                    lp.display()
                ))))
            }
        }
    };
    t.link_remaps.push(lpath.clone());
    t.insert(pb::FileEntry {
        r#type: pb::FdTypes::Reg as i32,
        id: lid,
        reg: Some(pb::RegFileEntry {
            id: lid,
            flags: 0,
            pos: 0,
            fown: fown(),
            name: lpath.to_string_lossy().into_owned(),
            mnt_id: None,
            size: None,
            ext: None,
            mode: None,
            build_id: Vec::new(),
            checksum: None,
            checksum_config: None,
            checksum_parameter: None,
        }),
        ..Default::default()
    });
    Ok(lid)
}

/// The kernel's internal dev_t encoding CRIU stores (MKKDEV).
pub fn kdev(d: u64) -> u32 {
    let (ma, mi) = (libc::major(d), libc::minor(d));
    (ma << 20) | mi
}

/// (offset, data) of every data extent, holes skipped: the extents from
/// FS_IOC_FIEMAP when `fiemap` (criu's --ghost-fiemap, the default) and the
/// file system has it, else SEEK_DATA/SEEK_HOLE.
pub fn data_chunks(f: &File, size: u64, fiemap: bool) -> std::io::Result<Vec<(u64, Vec<u8>)>> {
    if fiemap {
        use std::os::fd::AsRawFd;
        match crate::sys::fiemap(f.as_raw_fd()) {
            Ok(ext) => {
                let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
                for (off, len) in ext {
                    let end = (off + len).min(size);
                    // Extents may overlap what was read already (a delayed
                    // allocation reported twice): keep the offsets rising.
                    let start = out.last().map_or(off, |(o, d)| off.max(o + d.len() as u64));
                    if start >= end {
                        continue;
                    }
                    let mut buf = vec![0u8; (end - start) as usize];
                    f.read_exact_at(&mut buf, start)?;
                    out.push((start, buf));
                }
                return Ok(out);
            }
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            Err(e) => return Err(e),
        }
    }
    let mut out = Vec::new();
    let mut off: i64 = 0;
    while (off as u64) < size {
        let data = match nix::unistd::lseek(f, off, nix::unistd::Whence::SeekData) {
            Ok(d) => d,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let hole = nix::unistd::lseek(f, data, nix::unistd::Whence::SeekHole)?.min(size as i64);
        let mut buf = vec![0u8; (hole - data) as usize];
        f.read_exact_at(&mut buf, data as u64)?;
        out.push((data as u64, buf));
        off = hole;
    }
    Ok(out)
}

/// NT_GNU_BUILD_ID of an ELF file as CRIU stores it (u32 words), or empty.
pub fn build_id_of(f: &File) -> Vec<u32> {
    let mut hdr = [0u8; 64];
    if f.read_exact_at(&mut hdr, 0).is_err() || &hdr[..4] != b"\x7fELF" || hdr[4] != 2 {
        return Vec::new();
    }
    let u16at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u32at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let u64at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64at(&hdr, 32), u16at(&hdr, 54), u16at(&hdr, 56));
    let mut ph = vec![0u8; phentsize * phnum];
    if phentsize < 56 || f.read_exact_at(&mut ph, phoff as u64).is_err() {
        return Vec::new();
    }
    for i in 0..phnum {
        let p = &ph[i * phentsize..];
        if u32at(p, 0) != 4 {
            continue; // PT_NOTE
        }
        let (off, sz) = (u64at(p, 8), u64at(p, 32));
        if sz > 1 << 16 {
            continue;
        }
        let mut n = vec![0u8; sz];
        if f.read_exact_at(&mut n, off as u64).is_err() {
            continue;
        }
        let mut o = 0;
        while o + 12 <= n.len() {
            let (namesz, descsz, ty) = (u32at(&n, o), u32at(&n, o + 4), u32at(&n, o + 8));
            let name_end = o + 12 + namesz.div_ceil(4) * 4;
            let desc_end = name_end + descsz.div_ceil(4) * 4;
            if desc_end > n.len() {
                break;
            }
            if ty == 3 && namesz == 4 && &n[o + 12..o + 15] == b"GNU" {
                return n[name_end..name_end + descsz]
                    .chunks(4)
                    .map(|c| {
                        let mut w = [0u8; 4];
                        w[..c.len()].copy_from_slice(c);
                        u32::from_le_bytes(w)
                    })
                    .collect();
            }
            o = desc_end;
        }
    }
    Vec::new()
}

/// Read a whole small file (helper for tests and /proc reads).
pub fn read_all(mut f: &File) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_of_ourselves() {
        let f = File::open("/proc/self/exe").unwrap();
        let id = build_id_of(&f);
        // Rust test binaries are linked with a build id on Debian's toolchain; if not, 0 words.
        assert!(id.is_empty() || id.len() == 5, "{id:?}");
        let libc = File::open("/usr/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        assert_eq!(build_id_of(&libc).len(), 5);
    }

    #[test]
    fn kdev_encoding() {
        assert_eq!(kdev(libc::makedev(254, 0)), 254 << 20);
        assert_eq!(kdev(libc::makedev(8, 17)), (8 << 20) | 17);
    }

    #[test]
    fn chunks_keep_holes() {
        let p = std::env::temp_dir().join(format!("cryo-holes-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        f.write_all_at(b"abc", 0).unwrap();
        f.write_all_at(b"xyz", 1 << 20).unwrap();
        let size = f.metadata().unwrap().len();
        let c = data_chunks(&f, size, false).unwrap();
        let c2 = data_chunks(&f, size, true).unwrap();
        let total = |c: &[(u64, Vec<u8>)]| c.iter().map(|(_, d)| d.len()).sum::<usize>();
        assert!(total(&c2) < (1 << 20), "fiemap keeps holes too");
        // Both ways give the same bytes where the data is.
        let at = |c: &[(u64, Vec<u8>)], off: u64| {
            c.iter()
                .find(|(o, d)| *o <= off && off + 3 <= o + d.len() as u64)
                .map(|(o, d)| d[(off - o) as usize..(off - o) as usize + 3].to_vec())
        };
        for c in [&c, &c2] {
            assert_eq!(at(c, 0).as_deref(), Some(&b"abc"[..]));
            assert_eq!(at(c, 1 << 20).as_deref(), Some(&b"xyz"[..]));
        }
        std::fs::remove_file(&p).unwrap();
        assert!(
            c.len() >= 2,
            "{:?}",
            c.iter().map(|(o, d)| (*o, d.len())).collect::<Vec<_>>()
        );
        assert_eq!(&c[0].1[..3], b"abc");
        let last = c.last().unwrap();
        assert_eq!(&last.1[last.1.len() - 3..], b"xyz");
        assert!(c.iter().map(|(_, d)| d.len()).sum::<usize>() < (1 << 20));
    }
}

// ---- Restore side -------------------------------------------------------

pub use restore_side::{RegFile, Remap, RemapTable, Remaps};

/// Restore of this kind of file (the engine opens the descriptions once and
/// the restored tasks inherit them).
mod restore_side {
    use crate::files::set::{open_err, DescribeCx, OpenError, OpenFile, RestoreCx, SetError};
    use crate::files::FileSet;
    use crate::sys::files as sys;
    use cryo_image::{pb, ImageSet};
    use std::collections::HashMap;
    use std::fs::File;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::fd::{OwnedFd, RawFd};
    use std::os::unix::fs::OpenOptionsExt;

    fn err(object: String, reason: impl std::fmt::Display) -> OpenError {
        open_err(pb::FdTypes::Reg, object, reason)
    }

    /// Where a file deleted at dump time comes back from (remap-fpath.img).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Remap {
        /// ghost-file-N.img holds the inode (its contents and metadata).
        Ghost(u32),
        /// A hard link the dump made (criu's --link-remap): the path of that
        /// link-remap REG entry.
        Linked(String),
    }

    /// remap-fpath.img, validated: file id -> remap, and the dead pids
    /// whose /proc files are held (PROCFS remaps).
    #[derive(Debug, Default)]
    pub struct RemapTable {
        pub by_file: HashMap<u32, Remap>,
        pub dead_pids: Vec<i32>,
    }

    impl RemapTable {
        /// Read remap-fpath.img (`all`: files.img; `pids`: the tree's).
        pub fn read(set: &ImageSet, all: &[pb::FileEntry], pids: &[i32]) -> Result<RemapTable, SetError> {
            let mut t = RemapTable::default();
            if !set.has("remap-fpath.img") {
                return Ok(t);
            }
            let remaps: Vec<pb::RemapFilePathEntry> = set.entries("remap-fpath.img", "REMAP_FPATH")?;
            let rf = set.path("remap-fpath.img").display().to_string();
            let bad = |what: String| crate::files::set::bad(&rf, 0, what);
            let reg = |id: u32| {
                all.iter()
                    .find(|g| g.id == id && g.r#type == pb::FdTypes::Reg as i32)
                    .and_then(|g| g.reg.as_ref())
            };
            for (i, r) in remaps.iter().enumerate() {
                // remap_type: LINKED 0 (also when absent), GHOST 1, PROCFS 2.
                let ty = r.remap_type.unwrap_or(pb::RemapType::Linked as i32);
                let remap = if ty == pb::RemapType::Ghost as i32 {
                    let g = format!("ghost-file-{}.img", r.remap_id);
                    if !set.has(&g) {
                        return Err(bad(format!("entry {i}: {g} is missing")));
                    }
                    Remap::Ghost(r.remap_id)
                } else if ty == pb::RemapType::Linked as i32 {
                    match reg(r.remap_id) {
                        Some(e) if !t.by_file.contains_key(&r.remap_id) => Remap::Linked(e.name.clone()),
                        _ => {
                            return Err(bad(format!(
                                "entry {i}: link remap {} is not a regular file entry",
                                r.remap_id
                            )))
                        }
                    }
                } else if ty == pb::RemapType::Procfs as i32 {
                    // A file of /proc/<remap_id>, a process that was gone.
                    let pid = r.remap_id as i32;
                    if pid <= 0 || pids.contains(&pid) {
                        return Err(bad(format!("entry {i}: dead pid {pid} is not a dead pid")));
                    }
                    if !t.dead_pids.contains(&pid) {
                        t.dead_pids.push(pid);
                    }
                    continue;
                } else {
                    return Err(crate::files::set::unsupported(
                        &rf,
                        0,
                        format!("entry {i}: remap type {ty}"),
                    ));
                };
                if reg(r.orig_id).is_none() {
                    return Err(bad(format!("entry {i}: file id {} is not a regular file", r.orig_id)));
                }
                t.by_file.insert(r.orig_id, remap);
            }
            Ok(t)
        }
    }

    /// A regular file, directory, O_PATH fd or device node to open.
    #[derive(Clone, Debug)]
    pub struct RegFile {
        pub path: String,
        pub flags: u32,
        pub pos: u64,
        pub size: Option<u64>,
        /// Deleted at dump time: where its inode comes from (remap-fpath.img).
        pub remap: Option<Remap>,
    }

    impl super::Reg {
        pub(in crate::files) fn describe_entry(e: &pb::FileEntry, cx: &DescribeCx) -> Result<RegFile, SetError> {
            let r = e.reg.as_ref().ok_or_else(|| cx.bad("REG without reg"))?;
            Ok(RegFile {
                path: r.name.clone(),
                flags: r.flags,
                pos: r.pos,
                size: r.size,
                remap: cx.remaps.by_file.get(&e.id).cloned(),
            })
        }
    }

    impl OpenFile for RegFile {
        fn fd_type(&self) -> pb::FdTypes {
            pb::FdTypes::Reg
        }

        fn restore(&self, id: u32, cx: &mut RestoreCx) -> Result<Option<OwnedFd>, OpenError> {
            // Files of /proc/<pid> of a restored process: opened by the
            // task once every process exists (restore::task).
            if self.remap.is_none() && cx.files.is_tree_proc_path(&self.path) {
                return Ok(None);
            }
            let files = cx.files;
            self.open(files, &mut cx.remaps, id).map(Some)
        }

        fn map_fd(
            &self,
            id: u32,
            write: bool,
            opened: Option<RawFd>,
            cx: &mut RestoreCx,
        ) -> Result<OwnedFd, OpenError> {
            let files = cx.files;
            self.open_map(files, &mut cx.remaps, id, write, opened)
        }
    }

    /// Open flags kept from the image (no creation or truncation on restore;
    /// an O_TMPFILE file is opened as the file it became).
    fn open_flags(flags: u32) -> i32 {
        let mut f = flags as i32;
        if f & libc::O_TMPFILE == libc::O_TMPFILE {
            f &= !libc::O_TMPFILE;
        }
        // O_ASYNC is turned on by the task at its fd number (files::fown).
        f & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_ASYNC) | libc::O_NOCTTY
    }

    fn open_raw(path: &str, flags: i32) -> std::io::Result<File> {
        sys::open(path, flags | libc::O_CLOEXEC).map(File::from)
    }

    /// The inodes of files deleted at dump time, made again for the restore:
    /// ghosts (from ghost-file-N.img) and link remaps. A ghost is made once,
    /// at its old path when that is free (else at `<path>.cr.<N>.ghost`),
    /// every description of it is opened through that one path, and it is
    /// removed when this is dropped while an O_PATH fd still pins its
    /// dentry: so every restored fd shares one dentry, as the task's fds
    /// did, and the kernel does not drop the inode's inotify/fanotify marks
    /// before the last of them is closed. Link remaps are removed only once
    /// the restore succeeded ([`Remaps::take_linked`]): they are the only copy.
    #[derive(Default)]
    pub struct Remaps {
        /// Ghost id -> (path made, mode).
        ghosts: HashMap<u32, (String, u32)>,
        /// Ghost paths to remove (directory or not), in the order made, with
        /// the O_PATH fd pinning each one's dentry.
        made: Vec<(String, bool, Option<OwnedFd>)>,
        linked: Vec<String>,
        /// Ghost id -> (dev, ino) it was dumped from.
        inodes: HashMap<u32, (u32, u64)>,
    }

    impl Drop for Remaps {
        fn drop(&mut self) {
            for (p, dir, _) in self.made.iter().rev() {
                let _ = if *dir {
                    std::fs::remove_dir(p)
                } else {
                    std::fs::remove_file(p)
                };
            }
            // The pins go after every unlink.
            self.made.clear();
        }
    }

    /// "/a/b/c" -> "/a/c": the name one directory up (CRIU's way when the
    /// parent directory is gone too).
    fn trim_last_parent(p: &str) -> Option<String> {
        let (dir, name) = p.rsplit_once('/')?;
        let (up, _) = dir.rsplit_once('/')?;
        Some(format!("{up}/{name}"))
    }

    impl Remaps {
        /// The link remaps used, to remove once the restore succeeded.
        pub fn take_linked(&mut self) -> Vec<String> {
            std::mem::take(&mut self.linked)
        }

        /// A link remap used as it is (a FIFO's node): removed with the others.
        pub fn note_linked(&mut self, p: &str) {
            if !self.linked.iter().any(|l| l == p) {
                self.linked.push(p.to_string());
            }
        }

        /// The path of the ghost of inode `ino` on `kdev` (CRIU's kernel dev
        /// encoding), made if needed, if the images hold one.
        pub fn ghost_of_inode(&mut self, plan: &FileSet, kdev: u32, ino: u64) -> Result<Option<String>, OpenError> {
            let regs = plan.of::<RegFile>().map(|(_, r)| (&r.remap, &r.path));
            let fifos = plan
                .of::<crate::files::fifo::FifoFile>()
                .map(|(_, f)| (&f.remap, &f.path));
            let users: Vec<(u32, String)> = regs
                .chain(fifos)
                .filter_map(|(remap, path)| match remap {
                    Some(Remap::Ghost(g)) => Some((*g, path.clone())),
                    _ => None,
                })
                .collect();
            for (g, orig) in users {
                let key = match self.inodes.get(&g) {
                    Some(k) => *k,
                    None => {
                        let (gf, _) = read_ghost(plan, g, &format!("ghost file {g} ({orig})"))?;
                        let k = (gf.dev.unwrap_or(0), gf.ino.unwrap_or(0));
                        self.inodes.insert(g, k);
                        k
                    }
                };
                if key == (kdev, ino) {
                    return Ok(Some(self.ghost_path(plan, g, &orig)?.0));
                }
            }
            Ok(None)
        }

        /// The path and mode of ghost `g` (for `orig`), made on first use.
        pub fn ghost_path(&mut self, plan: &FileSet, g: u32, orig: &str) -> Result<(String, u32), OpenError> {
            if let Some(v) = self.ghosts.get(&g) {
                return Ok(v.clone());
            }
            let object = format!("ghost file {g} ({orig})");
            let (gf, pieces) = read_ghost(plan, g, &object)?;
            let dir = gf.mode & libc::S_IFMT == libc::S_IFDIR;
            let mut path = if std::fs::symlink_metadata(orig).is_err() {
                orig.to_string()
            } else {
                format!("{orig}.cr.{g:x}.ghost")
            };
            loop {
                match make_node(&path, &gf, &pieces) {
                    Ok(()) => break,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        // The parent directory is gone too: one level up.
                        path = trim_last_parent(&path)
                            .ok_or_else(|| err(object.clone(), format!("creating the ghost: {e}")))?;
                    }
                    Err(e) => return Err(err(object, format!("creating the ghost at {path}: {e}"))),
                }
            }
            let pin = open_raw(&path, libc::O_PATH | libc::O_NOFOLLOW)
                .map_err(|e| err(object.clone(), format!("ghost {path}: {e}")))?;
            self.made.push((path.clone(), dir, Some(pin.into())));
            set_meta(&path, &gf).map_err(|e| err(object.clone(), format!("ghost {path}: {e}")))?;
            self.ghosts.insert(g, (path.clone(), gf.mode));
            Ok((path, gf.mode))
        }

        /// Open a description of the deleted file `orig` with `flags`.
        pub fn open(
            &mut self,
            plan: &FileSet,
            remap: &Remap,
            orig: &str,
            flags: i32,
            object: &str,
        ) -> Result<File, OpenError> {
            let src = match remap {
                Remap::Ghost(g) => {
                    // Always through the ghost's own path (one dentry).
                    let (p, _) = self.ghost_path(plan, *g, orig)?;
                    return open_raw(&p, flags).map_err(|e| err(object.to_string(), format!("opening ghost {p}: {e}")));
                }
                Remap::Linked(p) => {
                    if std::fs::symlink_metadata(p).is_err() {
                        return Err(err(
                            object.to_string(),
                            format!(
                                "its link remap {p} (made by the dump with --link-remap) is gone: \
                                 removed by an earlier restore of these images, which restore once"
                            ),
                        ));
                    }
                    self.note_linked(p);
                    p.clone()
                }
            };
            link_open(&src, orig, flags).map_err(|e| err(object.to_string(), format!("opening {src}: {e}")))
        }
    }

    /// Open the link remap `src` under the name `orig` (linked there for the
    /// open, then unlinked), or `orig.cr_link` when `orig` exists, or `src`
    /// itself when no link can be made (a directory that is gone).
    fn link_open(src: &str, orig: &str, flags: i32) -> std::io::Result<File> {
        for name in [orig.to_string(), format!("{orig}.cr_link")] {
            match std::fs::hard_link(src, &name) {
                Ok(()) => {
                    let r = open_raw(&name, flags);
                    let _ = std::fs::remove_file(&name);
                    return r;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(_) => break,
            }
        }
        open_raw(src, flags)
    }

    /// A ghost's contents: (offset, bytes) pieces.
    type Pieces = Vec<(u64, Vec<u8>)>;

    /// The head entry and contents (offset, bytes) of ghost-file-<g>.img.
    fn read_ghost(plan: &FileSet, g: u32, object: &str) -> Result<(cryo_image::pb::GhostFileEntry, Pieces), OpenError> {
        use cryo_image::Extra;
        let name = format!("ghost-file-{g}.img");
        let img = plan.set.image(&name)?;
        let e = img
            .entries
            .first()
            .ok_or_else(|| err(format!("{object} ({name})"), "no entry"))?;
        let gf: cryo_image::pb::GhostFileEntry =
            prost::Message::decode(prost::Message::encode_to_vec(&e.msg).as_slice())
                .map_err(|e2| err(name.clone(), e2))?;
        // Contents: one blob after the entry, or (chunks) ghost_chunk_entry
        // entries each followed by its bytes.
        let mut pieces: Vec<(u64, Vec<u8>)> = Vec::new();
        if gf.chunks == Some(true) {
            if gf.size.is_none() {
                return Err(err(name, "chunked ghost without a size"));
            }
            for (i, c) in img.entries.iter().enumerate().skip(1) {
                let ch: cryo_image::pb::GhostChunkEntry =
                    prost::Message::decode(prost::Message::encode_to_vec(&c.msg).as_slice())
                        .map_err(|e2| err(format!("{name} entry {i}"), e2))?;
                let Extra::Blob(b) = &c.extra else {
                    return Err(err(format!("{name} entry {i}"), "chunk without data"));
                };
                if b.len() as u64 != ch.len {
                    return Err(err(
                        format!("{name} entry {i}"),
                        format!("chunk of {} bytes announces {}", b.len(), ch.len),
                    ));
                }
                pieces.push((ch.off, b.clone()));
            }
        } else if let Extra::Blob(b) = &e.extra {
            if !b.is_empty() {
                pieces.push((0, b.clone()));
            }
        }
        let fmt = gf.mode & libc::S_IFMT;
        if !matches!(
            fmt,
            libc::S_IFREG | libc::S_IFDIR | libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK | libc::S_IFLNK
        ) {
            return Err(err(
                object.to_string(),
                format!("ghost of mode {:o}: not a file type", gf.mode),
            ));
        }
        if fmt != libc::S_IFREG && !pieces.is_empty() {
            return Err(err(
                object.to_string(),
                format!("ghost of mode {:o} with contents", gf.mode),
            ));
        }
        Ok((gf, pieces))
    }

    /// Make the ghost's node at `path` (never over an existing one).
    fn make_node(path: &str, gf: &cryo_image::pb::GhostFileEntry, pieces: &[(u64, Vec<u8>)]) -> std::io::Result<()> {
        match gf.mode & libc::S_IFMT {
            libc::S_IFREG => {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?;
                let res = (|| -> std::io::Result<()> {
                    for (off, data) in pieces {
                        f.seek(SeekFrom::Start(*off))?;
                        f.write_all(data)?;
                    }
                    if let Some(sz) = gf.size {
                        f.set_len(sz)?;
                    }
                    Ok(())
                })();
                if res.is_err() {
                    let _ = std::fs::remove_file(path);
                }
                res
            }
            libc::S_IFDIR => sys::mkdir(path, 0o700),
            libc::S_IFIFO => sys::mknod(path, libc::S_IFIFO | 0o600, 0),
            fmt @ (libc::S_IFCHR | libc::S_IFBLK) => {
                let rdev = gf
                    .rdev
                    .ok_or_else(|| std::io::Error::other("device ghost without rdev"))?;
                let dev = libc::makedev(rdev >> 20, rdev & 0xfffff);
                sys::mknod(path, fmt | 0o600, dev)
            }
            _ => {
                let t = gf
                    .symlnk_target
                    .as_deref()
                    .ok_or_else(|| std::io::Error::other("symlink ghost without a target"))?;
                std::os::unix::fs::symlink(t, path)
            }
        }
    }

    /// Owner, mode and times of the ghost as dumped (owner first: chown
    /// clears the set-id bits).
    fn set_meta(path: &str, gf: &cryo_image::pb::GhostFileEntry) -> std::io::Result<()> {
        sys::lchown(path, gf.uid, gf.gid)?;
        let link = gf.mode & libc::S_IFMT == libc::S_IFLNK;
        if !link {
            sys::chmod(path, gf.mode & 0o7777)?;
        }
        let ts = |t: &Option<cryo_image::pb::Timeval>| {
            t.as_ref().map_or(
                libc::timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_OMIT,
                },
                |t| libc::timespec {
                    tv_sec: t.tv_sec as i64,
                    tv_nsec: (t.tv_usec * 1000) as i64,
                },
            )
        };
        sys::lutimens(path, &[ts(&gf.atim), ts(&gf.mtim)])
    }

    impl RegFile {
        /// Open the file description of file id `id` at its position; a
        /// deleted file comes back through `remaps`.
        pub fn open(&self, plan: &FileSet, remaps: &mut Remaps, id: u32) -> Result<OwnedFd, OpenError> {
            let RegFile {
                path,
                flags,
                pos,
                size,
                remap,
            } = self;
            let object = format!("file id {id} ({path})");
            let f = match remap {
                Some(r) => remaps.open(plan, r, path, open_flags(*flags), &object)?,
                None => open_raw(path, open_flags(*flags)).map_err(|e| err(object.clone(), e))?,
            };
            let md = f.metadata().map_err(|e| err(object.clone(), e))?;
            if let (Some(sz), true) = (size, md.is_file()) {
                if !matches!(remap, Some(Remap::Ghost(_))) && md.len() != *sz {
                    return Err(err(
                        object,
                        format!(
                            "size is {} bytes, the dump says {sz}: the file changed since the dump",
                            md.len()
                        ),
                    ));
                }
            }
            if *pos != 0 && (md.is_file() || md.is_dir()) {
                let mut f2 = &f;
                f2.seek(SeekFrom::Start(*pos))
                    .map_err(|e| err(object.clone(), format!("seek to {pos}: {e}")))?;
            }
            Ok(f.into())
        }

        /// The same file as an O_PATH directory fd (a cwd or root).
        pub fn as_dir(&self) -> RegFile {
            RegFile {
                path: self.path.clone(),
                flags: (libc::O_PATH | libc::O_DIRECTORY) as u32,
                pos: 0,
                size: None,
                remap: self.remap.clone(),
            }
        }

        /// An fd to mmap file id `id` from (read-only, or read-write for
        /// writable shared mappings). Reuses the restored description when
        /// there is one; a deleted file comes back through `remaps`.
        fn open_map(
            &self,
            plan: &FileSet,
            remaps: &mut Remaps,
            id: u32,
            write: bool,
            opened: Option<RawFd>,
        ) -> Result<OwnedFd, OpenError> {
            let object = format!("mapped file id {id}");
            let acc = if write { libc::O_RDWR } else { libc::O_RDONLY };
            let path = match (&self.remap, opened) {
                (_, Some(fd)) => format!("/proc/self/fd/{fd}"),
                (Some(r), None) => {
                    let object = format!("{object} ({})", self.path);
                    return Ok(remaps.open(plan, r, &self.path, acc, &object)?.into());
                }
                (None, None) => {
                    let path = &self.path;
                    if let (Some(sz), Ok(md)) = (self.size, std::fs::metadata(path)) {
                        if md.is_file() && md.len() != sz {
                            return Err(err(
                                format!("{object} ({path})"),
                                format!(
                                    "size is {} bytes, the dump says {sz}: the file changed since the dump",
                                    md.len()
                                ),
                            ));
                        }
                    }
                    path.clone()
                }
            };
            let f = open_raw(&path, acc).map_err(|e| err(format!("{object} ({path})"), e))?;
            Ok(f.into())
        }
    }
}
