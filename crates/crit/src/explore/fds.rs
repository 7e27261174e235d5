//! `crit x DIR fds`: each process's file descriptors, cwd and root.

use serde::Serialize;

use cryo_image::{pb, ImageSet};

use super::files::FileTable;
use super::Result;

/// One open file descriptor.
#[derive(Debug, Clone, Serialize)]
pub struct Fd {
    pub fd: u32,
    /// fd type as in the image (REG, PIPE, UNIXSK, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// File id (files.img).
    pub id: u32,
    /// What crit prints for it.
    pub file: String,
}

/// The fds of one process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcFds {
    pub pid: u32,
    pub files_id: u32,
    pub fds: Vec<Fd>,
    pub cwd: String,
    pub root: String,
}

/// Build the fd lists of the given processes (pstree order).
pub fn build(set: &ImageSet, procs: &[pb::PstreeEntry]) -> Result<Vec<ProcFds>> {
    let files = FileTable::load(set)?;
    let mut out = Vec::with_capacity(procs.len());
    for p in procs {
        let ids = set.ids(p.pid)?;
        let fds = set
            .fdinfo(ids.files_id)?
            .into_iter()
            .map(|e| Fd {
                fd: e.fd,
                kind: pb::FdTypes::try_from(e.r#type)
                    .map(|t| t.as_str_name().to_string())
                    .unwrap_or_else(|_| e.r#type.to_string()),
                id: e.id,
                file: files.describe(e.r#type, e.id),
            })
            .collect();
        let fs = set.fs(p.pid)?;
        out.push(ProcFds {
            pid: p.pid,
            files_id: ids.files_id,
            fds,
            cwd: files.reg_name(fs.cwd_id),
            root: files.reg_name(fs.root_id),
        });
    }
    Ok(out)
}

/// CRIU crit's text.
pub fn render(procs: &[ProcFds]) -> String {
    let mut s = String::new();
    for p in procs {
        s.push_str(&format!("{}\n", p.pid));
        for fd in &p.fds {
            s.push_str(&format!("\t{:>7}: {}\n", fd.fd, fd.file));
        }
        s.push_str(&format!("\t{:>7}: {}\n", "cwd", p.cwd));
        s.push_str(&format!("\t{:>7}: {}\n", "root", p.root));
    }
    s
}
