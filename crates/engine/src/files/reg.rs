//! Regular files, directories, O_PATH fds and device nodes (REG in files.img),
//! including files deleted while open ("ghost" files: their contents go to
//! ghost-file-N.img, holes kept, linked from remap-fpath.img).

use super::{fown, FdCtx, FdKind, FileError, FileTable};
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
        // A new open file description (not a dup: lseek(SEEK_DATA) on a dup
        // would move the task's own file position).
        let reopened = if deleted {
            let p = format!("/proc/{}/fd/{}", c.pid, c.fd);
            Some(File::open(&p).map_err(|source| FileError::Io {
                pid: c.pid,
                fd: c.fd,
                what: "reopening a deleted file".into(),
                source,
            })?)
        } else if c.info.locks.iter().any(|l| l.class == "LEASE") {
            // Opening a leased file breaks the lease (SIGIO to its holder,
            // and a 45 s wait): its build id is read through the task's own
            // description instead (pread does not move its position).
            Some(File::from(c.steal()?))
        } else {
            None
        };
        reg_entry(id, name, deleted, &c.stat, c.flags(), c.info.pos, reopened, t)
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
    if deleted && st.st_nlink == 0 {
        let f = open.ok_or_else(|| FileError::Path {
            path: name.into(),
            source: std::io::Error::other("deleted file without an fd to read it"),
        })?;
        if st.st_size as u64 > t.ghost_limit {
            return Err(FileError::Path {
                path: name.into(),
                source: std::io::Error::other(format!(
                    "deleted file of {} bytes is over the ghost limit ({} bytes); raise it with --ghost-limit",
                    st.st_size, t.ghost_limit
                )),
            });
        }
        let gid = t.alloc_ghost_id();
        let chunks = data_chunks(&f, st.st_size as u64).map_err(|source| FileError::Path {
            path: name.into(),
            source,
        })?;
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
            rdev: (st.st_rdev != 0).then_some(kdev(st.st_rdev)),
            atim: Some(tv(st.st_atime, st.st_atime_nsec)),
            mtim: Some(tv(st.st_mtime, st.st_mtime_nsec)),
            chunks: Some(true),
            size: Some(st.st_size as u64),
            symlnk_target: None,
        };
        t.ghosts.push((gid, g, chunks));
        t.remaps.push(pb::RemapFilePathEntry {
            orig_id: id,
            remap_id: gid,
            remap_type: Some(pb::RemapType::Ghost as i32),
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

/// The kernel's internal dev_t encoding CRIU stores (MKKDEV).
pub fn kdev(d: u64) -> u32 {
    let (ma, mi) = (libc::major(d), libc::minor(d));
    (ma << 20) | mi
}

/// (offset, data) of every data extent, holes skipped (SEEK_DATA/SEEK_HOLE).
pub fn data_chunks(f: &File, size: u64) -> std::io::Result<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut off: i64 = 0;
    while (off as u64) < size {
        // SAFETY-free: nix wrappers over lseek.
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
        let c = data_chunks(&f, size).unwrap();
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

pub use restore_side::{restore_map_fd, restore_open};

/// Restore of this kind of file (the engine opens the descriptions once and
/// the restored tasks inherit them).
#[allow(unsafe_code)]
mod restore_side {

    use crate::restore::plan::{FileDesc, Plan};
    use crate::restore::RestoreError;
    use std::fs::File;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    fn err(object: String, reason: impl std::fmt::Display) -> RestoreError {
        RestoreError::Prepare {
            object,
            reason: reason.to_string(),
        }
    }

    /// Open flags kept from the image (no creation or truncation on restore).
    fn open_flags(flags: u32) -> i32 {
        // O_ASYNC is turned on by the task at its fd number (files::fown).
        (flags as i32) & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_ASYNC)
            | libc::O_NOCTTY
    }

    /// Restore side: open the file description of file id `id` in the engine, at
    /// its position; a ghost file is re-created from its image and unlinked.
    pub fn restore_open(plan: &Plan, id: u32, desc: &FileDesc) -> Result<OwnedFd, RestoreError> {
        let FileDesc::Reg {
            path,
            flags,
            pos,
            size,
            ghost,
        } = desc
        else {
            unreachable!("not a regular file")
        };
        let object = format!("file id {id} ({path})");
        let f = match ghost {
            Some(g) => ghost_open(plan, *g, path, *flags, &object)?,
            None => {
                let c = std::ffi::CString::new(path.as_str()).map_err(|e| err(object.clone(), e))?;
                // SAFETY: c is a valid C string.
                let fd = unsafe { libc::open(c.as_ptr(), open_flags(*flags) | libc::O_CLOEXEC) };
                if fd < 0 {
                    return Err(err(object, std::io::Error::last_os_error()));
                }
                // SAFETY: fresh fd.
                unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) }
            }
        };
        let md = f.metadata().map_err(|e| err(object.clone(), e))?;
        if let (Some(sz), true) = (size, md.is_file()) {
            if ghost.is_none() && md.len() != *sz {
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

    /// Re-create a ghost file at its old path from ghost-file-<g>.img, open it
    /// with `flags`, and unlink it right away (the fds keep it alive; nothing is
    /// left behind if the restore fails).
    fn ghost_open(plan: &Plan, g: u32, path: &str, flags: u32, object: &str) -> Result<File, RestoreError> {
        use cryo_image::Extra;
        let name = format!("ghost-file-{g}.img");
        let img = plan.set.image(&name)?;
        let e = img
            .entries
            .first()
            .ok_or_else(|| err(format!("{} ({name})", object), "no entry"))?;
        let gf: cryo_image::pb::GhostFileEntry =
            prost::Message::decode(prost::Message::encode_to_vec(&e.msg).as_slice())
                .map_err(|e2| err(name.clone(), e2))?;
        // Contents: one blob after the entry, or (chunks) ghost_chunk_entry
        // entries each followed by its bytes.
        let mut pieces: Vec<(u64, Vec<u8>)> = Vec::new();
        if gf.chunks == Some(true) {
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
            pieces.push((0, b.clone()));
        }
        if gf.mode & libc::S_IFMT != libc::S_IFREG {
            return Err(err(
                object.to_string(),
                format!("ghost of mode {:o} (only regular files are supported)", gf.mode),
            ));
        }
        if std::path::Path::new(path).exists() {
            return Err(err(object.to_string(), "a file exists at the ghost file's path"));
        }
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(gf.mode & 0o7777)
            .open(path)
            .map_err(|e2| err(object.to_string(), format!("creating ghost file: {e2}")))?;
        let res = (|| -> std::io::Result<()> {
            for (off, data) in &pieces {
                f.seek(SeekFrom::Start(*off))?;
                f.write_all(data)?;
            }
            if let Some(sz) = gf.size {
                f.set_len(sz)?;
            }
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(gf.mode & 0o7777))?;
            // Access and modification times as dumped.
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
            let times = [ts(&gf.atim), ts(&gf.mtim)];
            // SAFETY: f is an open fd and times two valid timespecs.
            if unsafe { libc::futimens(std::os::fd::AsRawFd::as_raw_fd(&f), times.as_ptr()) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })();
        let c = std::ffi::CString::new(path).map_err(|e2| err(object.to_string(), e2))?;
        // SAFETY: c is a valid C string.
        let fd = unsafe { libc::open(c.as_ptr(), open_flags(flags) | libc::O_CLOEXEC) };
        let open_err = std::io::Error::last_os_error();
        let _ = std::fs::remove_file(path);
        res.map_err(|e2| err(object.to_string(), format!("writing ghost file: {e2}")))?;
        if fd < 0 {
            return Err(err(object.to_string(), open_err));
        }
        // SAFETY: fresh fd.
        Ok(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
    }

    /// Restore side: an fd to mmap file id `id` from (read-only, or read-write
    /// for writable shared mappings). Reuses the restored description when there
    /// is one (ghost files have no path any more).
    pub fn restore_map_fd(plan: &Plan, id: u32, write: bool, opened: Option<i32>) -> Result<OwnedFd, RestoreError> {
        let object = format!("mapped file id {id}");
        let acc = if write { libc::O_RDWR } else { libc::O_RDONLY };
        let path = match (&plan.files.get(&id), opened) {
            (_, Some(fd)) => format!("/proc/self/fd/{fd}"),
            (Some(FileDesc::Reg { path, size, .. }), None) => {
                if let (Some(sz), Ok(md)) = (size, std::fs::metadata(path)) {
                    if md.is_file() && md.len() != *sz {
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
            _ => return Err(err(object, "not a regular file")),
        };
        let c = std::ffi::CString::new(path.as_str()).map_err(|e| err(object.clone(), e))?;
        // SAFETY: c is a valid C string.
        let fd = unsafe { libc::open(c.as_ptr(), acc | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(err(format!("{object} ({path})"), std::io::Error::last_os_error()));
        }
        // SAFETY: fresh fd.
        Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
    }
}
