//! FIFOs (named pipes): a FIFO entry in files.img pointing (regf_id) at a
//! REG entry for the path, and the queued bytes in fifo-data.img.

use super::{fown, reg, FdCtx, FdKind, FileError, FileTable};
use cryo_image::pb;

pub struct Fifo;

impl FdKind for Fifo {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Fifo
    }

    fn detect(&self, c: &FdCtx) -> bool {
        c.fmt() == libc::S_IFIFO && c.link.starts_with('/')
    }

    fn dump(&self, c: &FdCtx, id: u32, t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        let pipe_id = c.stat.st_ino as u32;
        let (name, deleted) = reg::split_deleted(&c.link);
        // A deleted FIFO gets a ghost (a node made again at restore).
        let open = if deleted { Some(reg::deleted_fd(c)?) } else { None };
        // The path as a REG entry of its own (written before the FIFO entry, as CRIU does).
        let regf_id = t.alloc_id();
        let e = reg::reg_entry(regf_id, name, deleted, &c.stat, c.flags(), 0, open, t)?;
        t.insert(e);
        if let std::collections::btree_map::Entry::Vacant(slot) = t.fifo_data.entry(pipe_id) {
            slot.insert(super::pipe::capture(c, pipe_id)?);
        }
        let _ = fown;
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Fifo as i32,
            id,
            fifo: Some(pb::FifoEntry {
                id,
                pipe_id,
                regf_id: Some(regf_id),
            }),
            ..Default::default()
        })
    }
}

// ---- Restore side -------------------------------------------------------

pub use restore_side::{restore_inode, restore_open};

/// Restore of FIFOs: the engine makes sure the node exists, holds it open
/// read-write (so no open() blocks and the queued bytes have a home), puts the
/// bytes back, then opens every file description non-blocking and sets its
/// real status flags; the restored tasks inherit them.
#[allow(unsafe_code)]
mod restore_side {
    use crate::restore::RestoreError;
    use std::ffi::CString;
    use std::io::Write;
    use std::os::fd::{FromRawFd, OwnedFd};

    fn err(pipe_id: u32, path: &str, reason: impl std::fmt::Display) -> RestoreError {
        RestoreError::Prepare {
            object: format!("fifo {pipe_id} ({path})"),
            reason: reason.to_string(),
        }
    }

    fn open(c: &CString, flags: i32) -> std::io::Result<OwnedFd> {
        // SAFETY: c is a valid C string.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOCTTY) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fresh fd, owned from here on.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn ino(fd: &OwnedFd) -> std::io::Result<(u64, u64)> {
        let st = nix::sys::stat::fstat(fd).map_err(std::io::Error::from)?;
        Ok((st.st_dev, st.st_ino))
    }

    /// The FIFO inode `pipe_id` at `path`: created (mode `mode`) if missing, held
    /// open O_RDWR, with `data` queued in it. Keep the returned fd until every
    /// description of this FIFO is opened with [`restore_open`].
    pub fn restore_inode(
        pipe_id: u32,
        path: &str,
        mode: u32,
        data: Option<&[u8]>,
        size: Option<u32>,
    ) -> Result<OwnedFd, RestoreError> {
        let c = CString::new(path).map_err(|e| err(pipe_id, path, e))?;
        match std::fs::symlink_metadata(path) {
            Ok(md) => {
                use std::os::unix::fs::FileTypeExt;
                if !md.file_type().is_fifo() {
                    return Err(err(pipe_id, path, "the path exists and is not a FIFO"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // SAFETY: c is a valid C string.
                if unsafe { libc::mkfifo(c.as_ptr(), mode & 0o7777) } != 0 {
                    return Err(err(
                        pipe_id,
                        path,
                        format!("mkfifo: {}", std::io::Error::last_os_error()),
                    ));
                }
                // The mode as dumped, whatever the engine's umask.
                // SAFETY: c is a valid C string.
                if unsafe { libc::chmod(c.as_ptr(), mode & 0o7777) } != 0 {
                    return Err(err(
                        pipe_id,
                        path,
                        format!("chmod: {}", std::io::Error::last_os_error()),
                    ));
                }
            }
            Err(e) => return Err(err(pipe_id, path, e)),
        }
        // O_RDWR never blocks on a FIFO (Linux), and makes later
        // read-only/write-only opens succeed at once.
        let keep = open(&c, libc::O_RDWR | libc::O_NONBLOCK).map_err(|e| err(pipe_id, path, format!("open: {e}")))?;
        super::super::pipe::set_size(&keep, size, data.map_or(0, |d| d.len())).map_err(|e| err(pipe_id, path, e))?;
        if let Some(d) = data.filter(|d| !d.is_empty()) {
            let mut f = std::fs::File::from(keep.try_clone().map_err(|e| err(pipe_id, path, e))?);
            f.write_all(d)
                .map_err(|e| err(pipe_id, path, format!("putting back {} queued bytes: {e}", d.len())))?;
        }
        Ok(keep)
    }

    /// One file description of the FIFO held open by `keep`, with its access
    /// mode and status flags.
    pub fn restore_open(keep: &OwnedFd, pipe_id: u32, path: &str, flags: u32) -> Result<OwnedFd, RestoreError> {
        let c = CString::new(path).map_err(|e| err(pipe_id, path, e))?;
        let acc = flags as i32 & libc::O_ACCMODE;
        let fd = open(&c, acc | libc::O_NONBLOCK).map_err(|e| err(pipe_id, path, format!("open: {e}")))?;
        if ino(&fd).map_err(|e| err(pipe_id, path, e))? != ino(keep).map_err(|e| err(pipe_id, path, e))? {
            return Err(err(pipe_id, path, "the path was replaced during the restore"));
        }
        let st = flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND | libc::O_DIRECT | libc::O_NOATIME);
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::from_bits_truncate(st)),
        )
        .map_err(|e| err(pipe_id, path, format!("setting flags {st:o}: {e}")))?;
        Ok(fd)
    }
}
