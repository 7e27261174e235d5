//! Pipes (anonymous, `pipe:[ino]`): files.img PIPE entries and their queued
//! bytes in pipes-data.img, read without consuming them (the fd is taken with
//! pidfd_getfd and tee'd into a pipe of ours).

use super::{fown, DescribeCx, FdCtx, FdKind, FileError, FileTable, OpenFile, SetError};
use crate::sys;
use cryo_image::pb;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

pub struct Pipe;

impl FdKind for Pipe {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Pipe
    }

    fn detect(&self, c: &FdCtx) -> bool {
        c.fmt() == libc::S_IFIFO && c.link.starts_with("pipe:")
    }

    fn dump(&self, c: &FdCtx, id: u32, t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        let pipe_id = c.stat.st_ino as u32;
        if let std::collections::btree_map::Entry::Vacant(slot) = t.pipes_data.entry(pipe_id) {
            slot.insert(capture(c, pipe_id)?);
        }
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Pipe as i32,
            id,
            pipe: Some(pb::PipeEntry {
                id,
                pipe_id,
                flags: c.flags(),
                fown: fown(),
            }),
            ..Default::default()
        })
    }

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        let p = e.pipe.as_ref().ok_or_else(|| cx.bad("PIPE without pipe"))?;
        Ok(Box::new(PipeFile {
            pipe_id: p.pipe_id,
            flags: p.flags,
        }))
    }
}

/// The queued bytes of the pipe (or FIFO) behind `c`, without consuming them.
pub fn capture(c: &FdCtx, pipe_id: u32) -> Result<(pb::PipeDataEntry, Vec<u8>), FileError> {
    let io = |what: &str, source| FileError::Io {
        pid: c.pid,
        fd: c.fd,
        what: what.into(),
        source,
    };
    let stolen = c.steal()?;
    // tee needs a read end: a write end is reopened read-only through /proc.
    let fd: OwnedFd = if c.info.flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32 {
        let p = format!("/proc/self/fd/{}", stolen.as_raw_fd());
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&p)
            .map_err(|e| io("reopening the write end for reading", e))?
            .into()
    } else {
        stolen
    };
    let queued = sys::fionread(fd.as_raw_fd()).map_err(|e| io("FIONREAD", e))?;
    let size = sys::pipe_size(fd.as_raw_fd()).map_err(|e| io("F_GETPIPE_SZ", e))?;
    let data = if queued > 0 {
        peek_pipe(fd.as_raw_fd(), queued, size).map_err(|e| io("tee", e))?
    } else {
        Vec::new()
    };
    Ok((
        pb::PipeDataEntry {
            pipe_id,
            bytes: data.len() as u32,
            size: Some(size as u32),
        },
        data,
    ))
}

/// Copy the `queued` bytes of pipe `fd` without consuming them: tee into a
/// pipe of ours (sized like the original), then read ours.
pub fn peek_pipe(fd: i32, queued: usize, size: usize) -> std::io::Result<Vec<u8>> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size as i32))?;
    // Our pipe is as big as theirs, so one tee duplicates everything queued.
    let got = sys::tee(fd, w.as_raw_fd(), queued, true)?;
    let mut out = vec![0u8; got];
    let mut off = 0;
    while off < got {
        let n = nix::unistd::read(&r, &mut out[off..])?;
        if n == 0 {
            break;
        }
        off += n;
    }
    out.truncate(off);
    Ok(out)
}

// ---- Restore side -------------------------------------------------------

pub use restore_side::{set_size, PipeFile};

/// Restore of this kind of file (the engine opens the descriptions once and
/// the restored tasks inherit them).
mod restore_side {
    use crate::files::{FileSet, OpenError, OpenFile, RestoreCx};
    use cryo_image::pb;
    use std::collections::{HashMap, HashSet};
    use std::io::Write;
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};

    fn err(pipe_id: u32, reason: impl std::fmt::Display) -> OpenError {
        OpenError::Pipe {
            pipe_id,
            reason: reason.to_string(),
        }
    }

    /// One end of a pipe (`flags` says which) to open.
    #[derive(Clone, Debug)]
    pub struct PipeFile {
        pub pipe_id: u32,
        pub flags: u32,
    }

    /// The pipes made so far (while the fds are opened).
    #[derive(Default)]
    struct Pipes {
        ends: HashMap<u32, (OwnedFd, OwnedFd)>,
        originals: Option<HashSet<u32>>,
    }

    impl OpenFile for PipeFile {
        fn fd_type(&self) -> pb::FdTypes {
            pb::FdTypes::Pipe
        }

        fn restore(&self, id: u32, cx: &mut RestoreCx) -> Result<Option<OwnedFd>, OpenError> {
            let files = cx.files;
            let st = cx.scratch::<Pipes>();
            let originals = st.originals.get_or_insert_with(|| originals(files));
            let original = originals.contains(&id);
            let pipe_id = self.pipe_id;
            let ends = match st.ends.remove(&pipe_id) {
                Some(e) => e,
                None => restore_pipe(
                    pipe_id,
                    files.pipe_data.get(&pipe_id).map(|v| v.as_slice()),
                    files.pipe_size.get(&pipe_id).copied(),
                )?,
            };
            let fd = restore_end(&ends, pipe_id, self.flags, original);
            st.ends.insert(pipe_id, ends);
            fd.map(Some)
        }
    }

    /// The buffer of pipe (or FIFO) `fd` set to `size` bytes (its size at
    /// dump), before any data goes in; without a dumped size, grown to hold
    /// `data_len` bytes. Growing past /proc/sys/fs/pipe-max-size needs
    /// CAP_SYS_RESOURCE: the error says so.
    pub fn set_size(fd: &impl AsFd, size: Option<u32>, data_len: usize) -> Result<(), String> {
        let want = match size {
            Some(s) => s as usize,
            None if data_len > 65536 => data_len,
            None => return Ok(()),
        };
        let cur =
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETPIPE_SZ).map_err(|e| format!("F_GETPIPE_SZ: {e}"))?;
        if cur as usize == want {
            return Ok(());
        }
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(want as i32)).map_err(|e| {
            let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size").unwrap_or_default();
            format!(
                "setting the buffer size to {want} bytes (as dumped; pipe-max-size is {}): {e}",
                max.trim()
            )
        })?;
        Ok(())
    }

    /// A new pipe of `size` bytes holding `data`. Returns (read end, write end).
    fn restore_pipe(pipe_id: u32, data: Option<&[u8]>, size: Option<u32>) -> Result<(OwnedFd, OwnedFd), OpenError> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| err(pipe_id, e))?;
        set_size(&w, size, data.map_or(0, |d| d.len())).map_err(|e| err(pipe_id, e))?;
        if let Some(d) = data.filter(|d| !d.is_empty()) {
            let mut f = std::fs::File::from(w.try_clone().map_err(|e| err(pipe_id, e))?);
            f.write_all(d)
                .map_err(|e| err(pipe_id, format!("putting back {} queued bytes: {e}", d.len())))?;
        }
        Ok((r, w))
    }

    /// The kernel's O_LARGEFILE (libc spells it 0 on x86_64).
    const O_LARGEFILE: u32 = 0o100000;

    /// Which file ids get the pipe's own ends (the rest reopen them through
    /// /proc, which adds O_LARGEFILE): per pipe and end, the first
    /// description dumped without O_LARGEFILE, else the first one.
    fn originals(plan: &FileSet) -> HashSet<u32> {
        let mut best: HashMap<(u32, bool), (u32, bool)> = HashMap::new();
        for (id, PipeFile { pipe_id, flags }) in plan.of::<PipeFile>() {
            let write = *flags as i32 & libc::O_ACCMODE == libc::O_WRONLY;
            let plain = *flags & O_LARGEFILE == 0;
            match best.get(&(*pipe_id, write)) {
                Some(&(_, true)) => {}
                Some(&(_, false)) if !plain => {}
                _ => {
                    best.insert((*pipe_id, write), (id, plain));
                }
            }
        }
        best.values().map(|&(id, _)| id).collect()
    }

    /// The end a file entry refers to (by its access mode), with its status
    /// flags. Each files.img entry is one open file description: the one
    /// chosen by [`originals`] gets the end pipe() made, the others a
    /// description of their own reopened through /proc (two opens of the
    /// same end do not share O_NONBLOCK).
    fn restore_end(ends: &(OwnedFd, OwnedFd), pipe_id: u32, flags: u32, original: bool) -> Result<OwnedFd, OpenError> {
        let acc = flags as i32 & libc::O_ACCMODE;
        let end = if acc == libc::O_WRONLY {
            ends.1.as_fd()
        } else {
            ends.0.as_fd()
        };
        let fd = if original {
            end.try_clone_to_owned().map_err(|e| err(pipe_id, e))?
        } else {
            let acc = if acc == libc::O_WRONLY {
                libc::O_WRONLY
            } else {
                libc::O_RDONLY
            };
            // Both ends are held open here, so opening either side never blocks.
            crate::sys::files::open(&format!("/proc/self/fd/{}", end.as_raw_fd()), acc | libc::O_CLOEXEC)
                .map_err(|e| err(pipe_id, format!("reopening the pipe end: {e}")))?
        };
        let st =
            nix::fcntl::OFlag::from_bits_truncate(flags as i32 & (libc::O_NONBLOCK | libc::O_DIRECT | libc::O_NOATIME));
        if !st.is_empty() {
            nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(st)).map_err(|e| err(pipe_id, e))?;
        }
        Ok(fd)
    }
}
