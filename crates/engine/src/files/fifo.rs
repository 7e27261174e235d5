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
        if deleted {
            return Err(c.unsupported("deleted FIFO"));
        }
        // The path as a REG entry of its own (written before the FIFO entry, as CRIU does).
        let regf_id = t.alloc_id();
        let e = reg::reg_entry(regf_id, name, false, &c.stat, c.flags(), 0, None, t)?;
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
