//! memfd files (and the shared memory they back): created once in the
//! engine with their contents and seals, shared by inheritance.
#![allow(unsafe_code)]

use crate::restore::plan::{FileDesc, Plan};
use crate::restore::RestoreError;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn err(object: String, reason: impl std::fmt::Display) -> RestoreError {
    RestoreError::Prepare {
        object,
        reason: reason.to_string(),
    }
}

const F_SEAL_SEAL: u32 = 1;

/// Restore side: the memfd inode `inode` (memfd.img) with its size, contents
/// and seals. CRIU records shared anonymous memory as a memfd inode named
/// "/dev/zero": that one is recreated as real shared anonymous memory (a
/// shmem file reached through /proc/self/map_files), so it looks the same in
/// the restored task's maps.
pub fn restore_inode(plan: &Plan, inode: u32) -> Result<OwnedFd, RestoreError> {
    let ino = plan
        .memfds
        .get(&inode)
        .ok_or_else(|| err(format!("memfd inode {inode}"), "not in memfd.img"))?;
    let object = format!("memfd inode {inode} ({})", ino.name);
    let fd = if ino.name == "/dev/zero" {
        shared_anon(ino.size).map_err(|e| err(object.clone(), e))?
    } else {
        let name = std::ffi::CString::new(ino.name.trim_start_matches("memfd:")).map_err(|e| err(object.clone(), e))?;
        let sealing = ino.seals & !F_SEAL_SEAL != 0 || ino.seals == 0;
        let mfl = libc::MFD_CLOEXEC | if sealing { libc::MFD_ALLOW_SEALING } else { 0 };
        // SAFETY: name is a valid C string.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), mfl) };
        if fd < 0 {
            return Err(err(object, std::io::Error::last_os_error()));
        }
        // SAFETY: fresh fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        nix::unistd::ftruncate(&fd, ino.size as i64).map_err(|e| err(object.clone(), e))?;
        fd
    };
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
    if ino.seals & !F_SEAL_SEAL != 0 && ino.name != "/dev/zero" {
        let seals = nix::fcntl::SealFlag::from_bits_truncate(ino.seals as i32);
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_ADD_SEALS(seals)).map_err(|e| err(object.clone(), e))?;
    }
    Ok(fd)
}

/// A shmem file as MAP_SHARED|MAP_ANONYMOUS creates it.
fn shared_anon(size: u64) -> std::io::Result<OwnedFd> {
    let len = size.max(4096);
    // SAFETY: a fresh shared anonymous mapping, unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    let a = p as u64;
    let r =
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/self/map_files/{:x}-{:x}", a, a + len));
    // SAFETY: unmapping the mapping made above.
    unsafe { libc::munmap(p, len as usize) };
    Ok(r?.into())
}

/// Restore side: a file description of a memfd (its own position and flags)
/// on the inode restored by [`restore_inode`].
pub fn restore_open(id: u32, desc: &FileDesc, inode_fd: &OwnedFd) -> Result<OwnedFd, RestoreError> {
    let FileDesc::Memfd { flags, pos, .. } = desc else {
        unreachable!("not a memfd")
    };
    let object = format!("memfd file id {id}");
    let acc = *flags as i32 & (libc::O_ACCMODE | libc::O_APPEND | libc::O_NONBLOCK);
    let acc = if acc & libc::O_ACCMODE == 0 && *flags == 0 {
        libc::O_RDWR
    } else {
        acc
    };
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", inode_fd.as_raw_fd())).expect("no NUL");
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), acc | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(err(object, std::io::Error::last_os_error()));
    }
    // SAFETY: fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if *pos != 0 {
        nix::unistd::lseek(&fd, *pos as i64, nix::unistd::Whence::SeekSet).map_err(|e| err(object.clone(), e))?;
    }
    Ok(fd)
}
