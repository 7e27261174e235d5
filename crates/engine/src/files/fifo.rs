//! FIFOs (named pipes): a FIFO entry in files.img pointing (regf_id) at a
//! REG entry for the path, and the queued bytes in fifo-data.img.

use super::{fown, reg, DescribeCx, FdCtx, FdKind, FileError, FileTable, OpenFile, SetError};
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

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        let p = e.fifo.as_ref().ok_or_else(|| cx.bad("FIFO without fifo"))?;
        let regf = p.regf_id.unwrap_or(p.id);
        let r = cx
            .reg_entry(regf)
            .ok_or_else(|| cx.bad(format!("FIFO {} names REG entry {regf}, which is missing", p.id)))?;
        let mode = r.mode.unwrap_or(libc::S_IFIFO | 0o600);
        if mode & libc::S_IFMT != libc::S_IFIFO {
            return Err(cx.bad(format!(
                "FIFO {} has path {} of mode {mode:o}, not a FIFO",
                p.id, r.name
            )));
        }
        Ok(Box::new(FifoFile {
            pipe_id: p.pipe_id,
            path: r.name.clone(),
            flags: r.flags,
            mode,
            remap: cx.remaps.by_file.get(&regf).cloned(),
        }))
    }
}

// ---- Restore side -------------------------------------------------------

pub use restore_side::FifoFile;

/// Restore of FIFOs: the engine makes sure the node exists, holds it open
/// read-write (so no open() blocks and the queued bytes have a home), puts the
/// bytes back, then opens every file description non-blocking and sets its
/// real status flags; the restored tasks inherit them.
mod restore_side {
    use crate::files::reg::Remap;
    use crate::files::{OpenError, OpenFile, RestoreCx};
    use crate::sys::files as sys;
    use cryo_image::pb;
    use std::collections::HashMap;
    use std::io::Write;
    use std::os::fd::OwnedFd;

    fn err(pipe_id: u32, path: &str, reason: impl std::fmt::Display) -> OpenError {
        OpenError::Fifo {
            pipe_id,
            path: path.to_string(),
            reason: reason.to_string(),
        }
    }

    /// A FIFO opened at `path` (its REG entry, regf_id), sharing the inode
    /// `pipe_id` with every other fd of the same FIFO.
    #[derive(Clone, Debug)]
    pub struct FifoFile {
        pub pipe_id: u32,
        pub path: String,
        pub flags: u32,
        pub mode: u32,
        /// A deleted FIFO: its node is a ghost (remap of its REG entry).
        pub remap: Option<Remap>,
    }

    /// The FIFO inodes held open (while the fds are opened).
    #[derive(Default)]
    struct Fifos(HashMap<u32, OwnedFd>);

    impl OpenFile for FifoFile {
        fn fd_type(&self) -> pb::FdTypes {
            pb::FdTypes::Fifo
        }

        fn restore(&self, id: u32, cx: &mut RestoreCx) -> Result<Option<OwnedFd>, OpenError> {
            let files = cx.files;
            let FifoFile {
                pipe_id,
                path,
                flags,
                mode,
                remap,
            } = self;
            let path = &match remap {
                None => path.clone(),
                Some(Remap::Linked(p)) => {
                    cx.remaps.note_linked(p);
                    p.clone()
                }
                Some(Remap::Ghost(g)) => {
                    let (p, m) = cx.remaps.ghost_path(files, *g, path)?;
                    if m & libc::S_IFMT != libc::S_IFIFO {
                        return Err(crate::files::set::open_err(
                            pb::FdTypes::Fifo,
                            format!("fifo file id {id} ({path})"),
                            format!("its ghost is of mode {m:o}"),
                        ));
                    }
                    p
                }
            };
            let fifos = cx.scratch::<Fifos>();
            if !fifos.0.contains_key(pipe_id) {
                let data = files.fifo_data.get(pipe_id).map(|v| v.as_slice());
                let size = files.fifo_size.get(pipe_id).copied();
                fifos
                    .0
                    .insert(*pipe_id, restore_inode(*pipe_id, path, *mode, data, size)?);
            }
            restore_open(&fifos.0[pipe_id], *pipe_id, path, *flags).map(Some)
        }
    }

    fn open(path: &str, flags: i32) -> std::io::Result<OwnedFd> {
        sys::open(path, flags | libc::O_CLOEXEC | libc::O_NOCTTY)
    }

    fn ino(fd: &OwnedFd) -> std::io::Result<(u64, u64)> {
        let st = nix::sys::stat::fstat(fd).map_err(std::io::Error::from)?;
        Ok((st.st_dev, st.st_ino))
    }

    /// The FIFO inode `pipe_id` at `path`: created (mode `mode`) if missing, held
    /// open O_RDWR, with `data` queued in it. Keep the returned fd until every
    /// description of this FIFO is opened with [`restore_open`].
    fn restore_inode(
        pipe_id: u32,
        path: &str,
        mode: u32,
        data: Option<&[u8]>,
        size: Option<u32>,
    ) -> Result<OwnedFd, OpenError> {
        match std::fs::symlink_metadata(path) {
            Ok(md) => {
                use std::os::unix::fs::FileTypeExt;
                if !md.file_type().is_fifo() {
                    return Err(err(pipe_id, path, "the path exists and is not a FIFO"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                sys::mkfifo(path, mode & 0o7777).map_err(|e| err(pipe_id, path, format!("mkfifo: {e}")))?;
                // The mode as dumped, whatever the engine's umask.
                sys::chmod(path, mode & 0o7777).map_err(|e| err(pipe_id, path, format!("chmod: {e}")))?;
            }
            Err(e) => return Err(err(pipe_id, path, e)),
        }
        // O_RDWR never blocks on a FIFO (Linux), and makes later
        // read-only/write-only opens succeed at once.
        let keep = open(path, libc::O_RDWR | libc::O_NONBLOCK).map_err(|e| err(pipe_id, path, format!("open: {e}")))?;
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
    fn restore_open(keep: &OwnedFd, pipe_id: u32, path: &str, flags: u32) -> Result<OwnedFd, OpenError> {
        let acc = flags as i32 & libc::O_ACCMODE;
        let fd = open(path, acc | libc::O_NONBLOCK).map_err(|e| err(pipe_id, path, format!("open: {e}")))?;
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
