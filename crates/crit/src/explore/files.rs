//! Naming files the way CRIU's crit names them in its explorers: a regular file by its path, a pipe as
//! `pipe[ID]`, a unix socket as `unix[INO (PEER) NAME]`, anything else as `TYPE.ID`.

use std::collections::HashMap;

use cryo_image::{pb, ImageSet};

use super::Result;

/// `files.img`, indexed by id (the first entry with an id wins, as in crit).
#[derive(Debug, Default, Clone)]
pub struct FileTable {
    by_id: HashMap<u32, pb::FileEntry>,
}

impl FileTable {
    /// Read `files.img` of the set (an absent one gives an empty table).
    pub fn load(set: &ImageSet) -> Result<Self> {
        Ok(Self::from_entries(set.files()?))
    }

    pub fn from_entries(entries: Vec<pb::FileEntry>) -> Self {
        let mut by_id = HashMap::with_capacity(entries.len());
        for e in entries {
            by_id.entry(e.id).or_insert(e);
        }
        FileTable { by_id }
    }

    pub fn get(&self, id: u32) -> Option<&pb::FileEntry> {
        self.by_id.get(&id)
    }

    /// All entries (unordered).
    pub fn iter(&self) -> impl Iterator<Item = &pb::FileEntry> {
        self.by_id.values()
    }

    /// Path of regular file `id`, if it is one and has a name.
    pub fn reg_path(&self, id: u32) -> Option<&str> {
        self.get(id)
            .and_then(|f| f.reg.as_ref())
            .map(|r| r.name.as_str())
            .filter(|n| !n.is_empty())
    }

    /// crit's name for a regular file (`unknown path` when there is none).
    pub fn reg_name(&self, id: u32) -> String {
        self.reg_path(id).unwrap_or("unknown path").to_string()
    }

    /// crit's description of an fd's file, by fd type and file id.
    pub fn describe(&self, fd_type: i32, id: u32) -> String {
        match pb::FdTypes::try_from(fd_type) {
            Ok(pb::FdTypes::Reg) => self.reg_name(id),
            Ok(pb::FdTypes::Pipe) => match self.get(id).and_then(|f| f.pipe.as_ref()) {
                Some(p) => format!("pipe[{}]", p.pipe_id),
                None => "pipe[?]".into(),
            },
            Ok(pb::FdTypes::Unixsk) => match self.get(id).and_then(|f| f.usk.as_ref()) {
                Some(u) => {
                    let name = cryo_image::pretty::quopri_encode(&u.name);
                    let n = if name.is_empty() {
                        String::new()
                    } else {
                        format!(" {name}")
                    };
                    format!("unix[{} ({}){n}]", u.ino, u.peer)
                }
                None => "unix[?]".into(),
            },
            Ok(t) => format!("{}.{id}", t.as_str_name()),
            Err(_) => format!("{fd_type}.{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_like_crit() {
        let reg = pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id: 1,
            reg: Some(pb::RegFileEntry {
                name: "/bin/true".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let usk = pb::FileEntry {
            r#type: pb::FdTypes::Unixsk as i32,
            id: 2,
            usk: Some(pb::UnixSkEntry {
                ino: 10,
                peer: 11,
                name: b"/tmp/s".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let t = FileTable::from_entries(vec![reg, usk]);
        assert_eq!(t.describe(pb::FdTypes::Reg as i32, 1), "/bin/true");
        assert_eq!(t.describe(pb::FdTypes::Reg as i32, 2), "unknown path");
        assert_eq!(t.describe(pb::FdTypes::Unixsk as i32, 2), "unix[10 (11) /tmp/s]");
        assert_eq!(t.describe(pb::FdTypes::Pipe as i32, 2), "pipe[?]");
        assert_eq!(t.describe(pb::FdTypes::Eventfd as i32, 7), "EVENTFD.7");
    }
}
