//! Pipes: both ends are created once in the engine, the queued data is put
//! back, and every task that had an end gets it by inheritance.

use crate::restore::RestoreError;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

fn err(pipe_id: u32, reason: impl std::fmt::Display) -> RestoreError {
    RestoreError::Prepare {
        object: format!("pipe {pipe_id}"),
        reason: reason.to_string(),
    }
}

/// Restore side: a new pipe holding `data`. Returns (read end, write end).
pub fn restore_pipe(pipe_id: u32, data: Option<&[u8]>) -> Result<(OwnedFd, OwnedFd), RestoreError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| err(pipe_id, e))?;
    if let Some(d) = data.filter(|d| !d.is_empty()) {
        if d.len() > 65536 {
            nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(d.len() as i32))
                .map_err(|e| err(pipe_id, format!("growing the pipe to {} bytes: {e}", d.len())))?;
        }
        let mut f = std::fs::File::from(w.try_clone().map_err(|e| err(pipe_id, e))?);
        f.write_all(d)
            .map_err(|e| err(pipe_id, format!("putting back {} queued bytes: {e}", d.len())))?;
    }
    Ok((r, w))
}

/// The end a file entry refers to (by its access mode), with its status flags.
pub fn restore_end(ends: &(OwnedFd, OwnedFd), pipe_id: u32, flags: u32) -> Result<OwnedFd, RestoreError> {
    let acc = flags as i32 & libc::O_ACCMODE;
    let end = if acc == libc::O_WRONLY {
        ends.1.as_fd()
    } else {
        ends.0.as_fd()
    };
    let fd = end.try_clone_to_owned().map_err(|e| err(pipe_id, e))?;
    let st = nix::fcntl::OFlag::from_bits_truncate(flags as i32 & (libc::O_NONBLOCK | libc::O_DIRECT));
    if !st.is_empty() {
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(st)).map_err(|e| err(pipe_id, e))?;
    }
    Ok(fd)
}
