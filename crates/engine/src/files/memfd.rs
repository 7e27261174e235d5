//! memfd files and shared anonymous memory (which 6.18 shows as
//! "/dev/zero (deleted)" and CRIU 4.2 records the same way): MEMFD entries in
//! files.img, one MEMFD_INODE entry per inode in memfd.img, and the inode's
//! data as pagemap-shmem-INO.img + pages-N.img (written once, however many
//! processes share it).

use super::{fown, reg, DescribeCx, FdCtx, FdKind, FileError, FileSet, FileTable, OpenFile, SetError};
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

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        let m = e.memfd.as_ref().ok_or_else(|| cx.bad("MEMFD without memfd"))?;
        Ok(Box::new(MemfdFile {
            inode: m.inode_id,
            flags: m.flags,
            pos: m.pos,
        }))
    }

    fn check(&self, files: &FileSet) -> Result<(), SetError> {
        Memfd::check_inodes(files)
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

pub use restore_side::{make_inodes, read_inodes, MemfdFile, MemfdInode};

/// Restore of memfd inodes and their file descriptions.
mod restore_side {
    use crate::files::set::{bad, open_err};
    use crate::files::{FileSet, OpenError, OpenFile, RestoreCx, SetError};
    use crate::sys::files as sys;
    use cryo_image::{pb, ImageSet};
    use std::collections::{BTreeMap, HashMap, HashSet};
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};

    fn err(object: String, reason: impl std::fmt::Display) -> OpenError {
        open_err(pb::FdTypes::Memfd, object, reason)
    }

    const F_SEAL_SEAL: u32 = 1;

    /// A memfd inode (memfd.img).
    #[derive(Clone, Debug)]
    pub struct MemfdInode {
        pub name: String,
        pub size: u64,
        pub shmid: u32,
        pub seals: u32,
        pub mode: u32,
        pub uid: u32,
        pub gid: u32,
        /// MFD_HUGETLB with its MFD_HUGE_* size bits: the inode is huge-page memory.
        pub hugetlb_flag: Option<u32>,
    }

    /// memfd.img, by inode id.
    pub fn read_inodes(set: &ImageSet) -> Result<BTreeMap<u32, MemfdInode>, SetError> {
        let mut memfds = BTreeMap::new();
        if set.has("memfd.img") {
            let ms: Vec<pb::MemfdInodeEntry> = set.entries("memfd.img", "MEMFD_INODE")?;
            for m in ms {
                memfds.insert(
                    m.inode_id as u32,
                    MemfdInode {
                        name: m.name,
                        size: m.size,
                        shmid: m.shmid,
                        seals: m.seals,
                        mode: m.mode.unwrap_or(0o777),
                        uid: m.uid,
                        gid: m.gid,
                        hugetlb_flag: m.hugetlb_flag,
                    },
                );
            }
        }
        Ok(memfds)
    }

    /// A file description of a memfd (its own position and flags).
    #[derive(Clone, Debug)]
    pub struct MemfdFile {
        pub inode: u32,
        pub flags: u32,
        pub pos: u64,
    }

    impl super::Memfd {
        /// Every memfd file names an inode of memfd.img.
        pub(super) fn check_inodes(files: &FileSet) -> Result<(), SetError> {
            for (id, f) in files.of::<MemfdFile>() {
                if !files.memfds.contains_key(&f.inode) {
                    return Err(bad(
                        &files.files_file,
                        0,
                        format!("file id {id}: memfd inode {} not in memfd.img", f.inode),
                    ));
                }
            }
            Ok(())
        }
    }

    /// The memfd inodes made, and those whose memfd_create description went
    /// to an fd.
    #[derive(Default)]
    struct Inodes {
        fds: HashMap<u32, OwnedFd>,
        owned: HashSet<u32>,
    }

    /// Make every memfd inode of the set now (their pages are read through
    /// the images directory's path: before the engine enters a restored
    /// mount namespace, where that path does not exist).
    pub fn make_inodes(cx: &mut RestoreCx) -> Result<(), OpenError> {
        let inodes: Vec<u32> = cx.files.memfds.keys().copied().collect();
        for i in inodes {
            inode_fd(cx, i)?;
        }
        Ok(())
    }

    fn inode_fd<'a>(cx: &'a mut RestoreCx, inode: u32) -> Result<&'a mut Inodes, OpenError> {
        let files = cx.files;
        let st = cx.state::<Inodes>();
        if let std::collections::hash_map::Entry::Vacant(v) = st.fds.entry(inode) {
            v.insert(restore_inode(files, inode)?);
        }
        Ok(st)
    }

    impl OpenFile for MemfdFile {
        fn fd_type(&self) -> pb::FdTypes {
            pb::FdTypes::Memfd
        }

        fn restore(&self, id: u32, cx: &mut RestoreCx) -> Result<Option<OwnedFd>, OpenError> {
            let st = inode_fd(cx, self.inode)?;
            let own = can_own(self.flags) && st.owned.insert(self.inode);
            restore_open(id, self, &st.fds[&self.inode], own).map(Some)
        }

        fn map_fd(
            &self,
            id: u32,
            _write: bool,
            _opened: Option<RawFd>,
            cx: &mut RestoreCx,
        ) -> Result<OwnedFd, OpenError> {
            let st = inode_fd(cx, self.inode)?;
            // The memfd_create description itself (read-write, and no
            // writer of the inode: a reopen would be, and the mapping would
            // then make execveat() of the memfd fail with ETXTBSY).
            st.fds[&self.inode]
                .try_clone()
                .map_err(|e| err(format!("mapped file id {id}"), e))
        }
    }

    /// The memfd inode `inode` (memfd.img) with its size, contents and
    /// seals. CRIU records shared anonymous memory as a memfd inode named
    /// "/dev/zero": that one is recreated as real shared anonymous memory (a
    /// shmem file reached through /proc/self/map_files), so it looks the same in
    /// the restored task's maps.
    fn restore_inode(plan: &FileSet, inode: u32) -> Result<OwnedFd, OpenError> {
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
            sys::shared_anon(ino.size, huge).map_err(|e| err(object.clone(), e))?
        } else {
            let name = ino.name.trim_start_matches("memfd:");
            let sealing = ino.seals & !F_SEAL_SEAL != 0 || ino.seals == 0;
            let mfl = libc::MFD_CLOEXEC | if sealing { libc::MFD_ALLOW_SEALING } else { 0 };
            let mfl = mfl | ino.hugetlb_flag.unwrap_or(0);
            let fd = sys::memfd_create(name, mfl).map_err(|e| err(object.clone(), e))?;
            nix::unistd::ftruncate(&fd, ino.size as i64).map_err(|e| err(object.clone(), e))?;
            fd
        };
        if let Some((pm, pages)) = plan.shmem.get(&ino.shmid) {
            let src = std::fs::File::open(pages).map_err(|e| err(pages.display().to_string(), e))?;
            // hugetlbfs has no write(): its pages are filled through a mapping.
            let window = if ino.hugetlb_flag.is_some() {
                Some(sys::SharedWindow::new(&fd, ino.size).map_err(|e| err(object.clone(), e))?)
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

    /// A file description of a memfd (its own position and flags) on the
    /// inode restored by [`restore_inode`]. With `own`, the description is
    /// the one memfd_create made (read-write): unlike a reopen through
    /// /proc it does not count as a writer of the inode, so execveat() of the
    /// memfd keeps working (a reopened O_RDWR one gives ETXTBSY).
    fn restore_open(id: u32, desc: &MemfdFile, inode_fd: &OwnedFd, own: bool) -> Result<OwnedFd, OpenError> {
        let MemfdFile { flags, pos, .. } = desc;
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
            sys::open(
                &format!("/proc/self/fd/{}", inode_fd.as_raw_fd()),
                acc | libc::O_CLOEXEC,
            )
            .map_err(|e| err(object.clone(), e))?
        };
        nix::unistd::lseek(&fd, *pos as i64, nix::unistd::Whence::SeekSet).map_err(|e| err(object.clone(), e))?;
        Ok(fd)
    }

    /// Whether a description with these flags can be the memfd_create one.
    fn can_own(flags: u32) -> bool {
        flags as i32 & libc::O_ACCMODE == libc::O_RDWR
    }
}
