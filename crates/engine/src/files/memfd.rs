//! memfd files and shared anonymous memory (which 6.18 shows as
//! "/dev/zero (deleted)" and CRIU 4.2 records the same way): MEMFD entries in
//! files.img, one MEMFD_INODE entry per inode in memfd.img, and the inode's
//! data as pagemap-shmem-INO.img + pages-N.img (written once, however many
//! processes share it).

use super::{fown, reg, FdCtx, FdKind, FileError, FileTable};
use cryo_image::pb;
use std::fs::File;

/// One shared-memory inode and its contents to dump.
pub struct ShmemInode {
    pub entry: pb::MemfdInodeEntry,
    pub pages_id: u32,
    pub file: File,
}

pub struct Memfd;

/// The name CRIU records: "/memfd:NAME (deleted)" -> "NAME"; "/dev/zero (deleted)" -> "/dev/zero".
pub fn inode_name(link: &str) -> String {
    let (n, _) = reg::split_deleted(link);
    n.strip_prefix("/memfd:").unwrap_or(n).to_string()
}

pub fn is_shmem_link(link: &str) -> bool {
    link.starts_with("/memfd:") || link.starts_with("/dev/zero")
}

impl FdKind for Memfd {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Memfd
    }

    /// memfds, and shared anonymous memory opened through map_files
    /// ("/dev/zero (deleted)", a regular file: the real /dev/zero is a
    /// character device), which must stay one inode with its mappings.
    fn detect(&self, c: &FdCtx) -> bool {
        c.fmt() == libc::S_IFREG && (c.link.starts_with("/memfd:") || c.link == "/dev/zero (deleted)")
    }

    fn dump(&self, c: &FdCtx, id: u32, t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        let path = format!("/proc/{}/fd/{}", c.pid, c.fd);
        let inode_id = t.shmem_inode(&path, &c.link)?;
        Ok(memfd_entry(id, c.flags(), c.info.pos, inode_id))
    }
}

pub fn memfd_entry(id: u32, flags: u32, pos: u64, inode_id: u32) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Memfd as i32,
        id,
        memfd: Some(pb::MemfdFileEntry {
            id,
            flags,
            pos,
            fown: fown(),
            inode_id,
        }),
        ..Default::default()
    }
}

impl FileTable {
    /// The inode id of the shared-memory inode behind `path` (an fd or a
    /// map_files link), registering it (and a pages id) on first sight.
    pub fn shmem_inode(&mut self, path: &str, link: &str) -> Result<u32, FileError> {
        let perr = |source| FileError::Path {
            path: path.into(),
            source,
        };
        let st = super::stat_path(path).map_err(perr)?;
        if let Some(s) = self.shmem.iter().find(|s| s.entry.shmid as u64 == st.st_ino) {
            return Ok(s.entry.inode_id as u32);
        }
        let file = File::open(path).map_err(perr)?;
        let seals = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GET_SEALS).unwrap_or(0) as u32;
        // Huge-page memory (MFD_HUGETLB, MAP_SHARED|MAP_HUGETLB): recorded
        // as CRIU does, MFD_HUGETLB | MFD_HUGE_* of its page size.
        let hugetlb_flag = match nix::sys::statfs::fstatfs(&file) {
            Ok(s) if s.filesystem_type() == nix::sys::statfs::HUGETLBFS_MAGIC => {
                let size = s.block_size() as u64;
                let bits = (size.is_power_of_two() && size > 4096)
                    .then(|| size.trailing_zeros() << 26)
                    .ok_or_else(|| perr(std::io::Error::other(format!("huge pages of {size} bytes"))))?;
                Some(bits | libc::MFD_HUGETLB)
            }
            _ => None,
        };
        let inode_id = self.shmem.len() as u32 + 1;
        let pages_id = self.alloc_pages_id();
        self.shmem.push(ShmemInode {
            entry: pb::MemfdInodeEntry {
                name: inode_name(link),
                uid: st.st_uid,
                gid: st.st_gid,
                size: st.st_size as u64,
                shmid: st.st_ino as u32,
                seals,
                inode_id: inode_id as u64,
                hugetlb_flag,
                mode: Some(st.st_mode),
            },
            pages_id,
            file,
        });
        Ok(inode_id)
    }

    /// Next pages-N.img id (shared by processes and shared memory).
    pub fn alloc_pages_id(&mut self) -> u32 {
        self.next_pages_id += 1;
        self.next_pages_id
    }
}

/// Page runs (offset, bytes) with data, page-aligned, holes skipped; the
/// last page is zero-padded past the end of the file.
pub fn shmem_runs(s: &ShmemInode) -> std::io::Result<Vec<(u64, Vec<u8>)>> {
    use std::os::unix::fs::FileExt;
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    for (off, data) in reg::data_chunks(&s.file, s.entry.size, false)? {
        let start = off & !4095;
        let end = (off + data.len() as u64).div_ceil(4096) * 4096;
        let mut buf = vec![0u8; (end - start) as usize];
        let mut got = 0;
        while got < buf.len() {
            let n = s.file.read_at(&mut buf[got..], start + got as u64)?;
            if n == 0 {
                break; // past EOF: the rest stays zero
            }
            got += n;
        }
        match out.last_mut() {
            Some((o, d)) if *o + d.len() as u64 == start => d.extend_from_slice(&buf),
            _ => out.push((start, buf)),
        }
    }
    Ok(out)
}

// ---- Restore side -------------------------------------------------------

pub use restore_side::{can_own, restore_inode, restore_open};

/// Restore of memfd inodes and their file descriptions.
#[allow(unsafe_code)]
mod restore_side {

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
        // MAP_SHARED|MAP_HUGETLB memory as CRIU records it: a hugetlb memfd
        // inode named "/anon_hugepage"; recreated as such memory.
        let huge_anon = ino.hugetlb_flag.is_some() && ino.name == "/anon_hugepage";
        let anon = ino.name == "/dev/zero" || huge_anon;
        let fd = if anon {
            let huge = if huge_anon {
                libc::MAP_HUGETLB | (ino.hugetlb_flag.unwrap_or(0) & (0x3f << 26)) as i32
            } else {
                0
            };
            shared_anon(ino.size, huge).map_err(|e| err(object.clone(), e))?
        } else {
            let name =
                std::ffi::CString::new(ino.name.trim_start_matches("memfd:")).map_err(|e| err(object.clone(), e))?;
            let sealing = ino.seals & !F_SEAL_SEAL != 0 || ino.seals == 0;
            let mfl = libc::MFD_CLOEXEC | if sealing { libc::MFD_ALLOW_SEALING } else { 0 };
            let mfl = mfl | ino.hugetlb_flag.unwrap_or(0);
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
            // hugetlbfs has no write(): its pages are filled through a mapping.
            let window = if ino.hugetlb_flag.is_some() {
                Some(SharedWindow::new(&fd, ino.size).map_err(|e| err(object.clone(), e))?)
            } else {
                None
            };
            for r in &pm.runs {
                let Some(off) = r.offset else { continue };
                let len = (r.nr_pages * 4096) as usize;
                let mut buf = vec![0u8; len];
                std::os::unix::fs::FileExt::read_exact_at(&src, &mut buf, off)
                    .map_err(|e| err(pages.display().to_string(), e))?;
                match &window {
                    Some(w) => w.write(r.vaddr, &buf).map_err(|e| err(object.clone(), e))?,
                    None => {
                        nix::sys::uio::pwrite(&fd, &buf, r.vaddr as i64).map_err(|e| err(object.clone(), e))?;
                    }
                }
            }
        }
        // The size as dumped: the pages above are whole pages (and mmap made
        // shared anonymous memory at least a page long; a task may have
        // truncated it through map_files).
        let cur = nix::sys::stat::fstat(&fd).map_err(|e| err(object.clone(), e))?.st_size as u64;
        if cur != ino.size {
            nix::unistd::ftruncate(&fd, ino.size as i64).map_err(|e| err(object.clone(), e))?;
        }
        if !anon {
            // Owner and mode as dumped (fchmod'ed memfds keep their bits).
            nix::unistd::fchown(
                &fd,
                Some(nix::unistd::Uid::from_raw(ino.uid)),
                Some(nix::unistd::Gid::from_raw(ino.gid)),
            )
            .map_err(|e| err(object.clone(), format!("fchown {}:{}: {e}", ino.uid, ino.gid)))?;
            let mode = nix::sys::stat::Mode::from_bits_truncate(ino.mode & 0o7777);
            nix::sys::stat::fchmod(&fd, mode)
                .map_err(|e| err(object.clone(), format!("fchmod {:o}: {e}", ino.mode)))?;
        }
        if ino.seals & !F_SEAL_SEAL != 0 && !anon {
            let seals = nix::fcntl::SealFlag::from_bits_truncate(ino.seals as i32);
            nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_ADD_SEALS(seals)).map_err(|e| err(object.clone(), e))?;
        }
        Ok(fd)
    }

    /// A shared mapping of a whole (hugetlb) memfd, to write its pages.
    struct SharedWindow {
        at: *mut libc::c_void,
        len: usize,
    }

    impl SharedWindow {
        fn new(fd: &OwnedFd, len: u64) -> std::io::Result<SharedWindow> {
            // SAFETY: a fresh shared mapping of our own fd, unmapped on drop.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            Ok(SharedWindow {
                at: p,
                len: len as usize,
            })
        }

        /// Copy `data` to offset `off` of the file.
        fn write(&self, off: u64, data: &[u8]) -> std::io::Result<()> {
            let off = off as usize;
            if off.checked_add(data.len()).is_none_or(|e| e > self.len) {
                return Err(std::io::Error::other(format!(
                    "pages at {off:#x}+{:#x} past the end ({:#x})",
                    data.len(),
                    self.len
                )));
            }
            // SAFETY: the range lies inside our own mapping (checked above).
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), (self.at as *mut u8).add(off), data.len()) };
            Ok(())
        }
    }

    impl Drop for SharedWindow {
        fn drop(&mut self) {
            // SAFETY: unmapping the mapping made in new().
            unsafe { libc::munmap(self.at, self.len) };
        }
    }

    /// A shmem file as MAP_SHARED|MAP_ANONYMOUS (with `huge`: MAP_HUGETLB and
    /// its page size) creates it.
    fn shared_anon(size: u64, huge: i32) -> std::io::Result<OwnedFd> {
        let len = size.max(4096);
        // SAFETY: a fresh shared anonymous mapping, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | huge,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let a = p as u64;
        let r = std::fs::OpenOptions::new().read(true).write(true).open(format!(
            "/proc/self/map_files/{:x}-{:x}",
            a,
            a + len
        ));
        // SAFETY: unmapping the mapping made above.
        unsafe { libc::munmap(p, len as usize) };
        Ok(r?.into())
    }

    /// Restore side: a file description of a memfd (its own position and flags)
    /// on the inode restored by [`restore_inode`]. With `own`, the description
    /// is the one memfd_create made (read-write): unlike a reopen through
    /// /proc it does not count as a writer of the inode, so execveat() of the
    /// memfd keeps working (a reopened O_RDWR one gives ETXTBSY).
    pub fn restore_open(id: u32, desc: &FileDesc, inode_fd: &OwnedFd, own: bool) -> Result<OwnedFd, RestoreError> {
        let FileDesc::Memfd { flags, pos, .. } = desc else {
            unreachable!("not a memfd")
        };
        let object = format!("memfd file id {id}");
        let fd = if own {
            let fd = inode_fd.try_clone().map_err(|e| err(object.clone(), e))?;
            let st = nix::fcntl::OFlag::from_bits_truncate(*flags as i32 & (libc::O_APPEND | libc::O_NONBLOCK));
            nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(st)).map_err(|e| err(object.clone(), e))?;
            fd
        } else {
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
            unsafe { OwnedFd::from_raw_fd(fd) }
        };
        nix::unistd::lseek(&fd, *pos as i64, nix::unistd::Whence::SeekSet).map_err(|e| err(object.clone(), e))?;
        Ok(fd)
    }

    /// Whether a description with these flags can be the memfd_create one.
    pub fn can_own(flags: u32) -> bool {
        flags as i32 & libc::O_ACCMODE == libc::O_RDWR
    }
}
