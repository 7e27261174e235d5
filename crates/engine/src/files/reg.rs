//! Regular files (and directories, devices, O_PATH fds), including ghost
//! files: files deleted while open, whose contents the dump saved.
#![allow(unsafe_code)]

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
    (flags as i32) & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC) | libc::O_NOCTTY
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
        prost::Message::decode(prost::Message::encode_to_vec(&e.msg).as_slice()).map_err(|e2| err(name.clone(), e2))?;
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
