//! memfd files (and the shared memory they back): created once in the
//! engine with their contents and seals, shared by inheritance.
#![allow(unsafe_code)]

use crate::restore::plan::{FileDesc, Plan};
use crate::restore::RestoreError;
use std::os::fd::{FromRawFd, OwnedFd};

fn err(object: String, reason: impl std::fmt::Display) -> RestoreError {
    RestoreError::Prepare {
        object,
        reason: reason.to_string(),
    }
}

/// Restore side: a memfd with the inode's name, size, contents and seals.
pub fn restore_open(plan: &Plan, id: u32, desc: &FileDesc) -> Result<OwnedFd, RestoreError> {
    let FileDesc::Memfd { inode, flags, pos } = desc else {
        unreachable!("not a memfd")
    };
    let ino = &plan.memfds[inode];
    let object = format!("memfd file id {id} (memfd:{})", ino.name);
    let name = std::ffi::CString::new(ino.name.trim_start_matches("memfd:")).map_err(|e| err(object.clone(), e))?;
    let mfl = libc::MFD_CLOEXEC | if ino.seals != 0 { libc::MFD_ALLOW_SEALING } else { 0 };
    // SAFETY: name is a valid C string.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), mfl) };
    if fd < 0 {
        return Err(err(object, std::io::Error::last_os_error()));
    }
    // SAFETY: fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    nix::unistd::ftruncate(&fd, ino.size as i64).map_err(|e| err(object.clone(), e))?;
    if let Some((pm, pages)) = plan.shmem.get(&ino.shmid) {
        let src = std::fs::File::open(pages).map_err(|e| err(pages.display().to_string(), e))?;
        for r in &pm.runs {
            let Some(off) = r.offset else { continue };
            let len = (r.nr_pages * 4096) as usize;
            let mut buf = vec![0u8; len];
            std::os::unix::fs::FileExt::read_exact_at(&src, &mut buf, off)
                .map_err(|e| err(pages.display().to_string(), e))?;
            nix::sys::uio::pwrite(&fd, &buf, r.vaddr as i64).map_err(|e| err(object.clone(), e))?;
        }
    }
    if *pos != 0 {
        nix::unistd::lseek(&fd, *pos as i64, nix::unistd::Whence::SeekSet).map_err(|e| err(object.clone(), e))?;
    }
    if ino.seals != 0 {
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_ADD_SEALS(nix::fcntl::SealFlag::from_bits_truncate(ino.seals as i32)),
        )
        .map_err(|e| err(object.clone(), e))?;
    }
    let _ = flags;
    Ok(fd)
}
