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

    fn detect(&self, c: &FdCtx) -> bool {
        c.fmt() == libc::S_IFREG && c.link.starts_with("/memfd:")
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
                hugetlb_flag: None,
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
    for (off, data) in reg::data_chunks(&s.file, s.entry.size)? {
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
