//! `crit x DIR mems`: each process's mappings.

use std::collections::HashMap;

use serde::Serialize;

use cryo_image::{pb, ImageSet};

use super::files::FileTable;
use super::vma::*;
use super::Result;

/// One mapping.
#[derive(Debug, Clone, Serialize)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// `rwx` letters.
    pub prot: String,
    pub kind: VmaKind,
    /// Path of the mapped file (file mappings), if known.
    pub file: Option<String>,
    pub pgoff: u64,
    pub shared: bool,
    /// crit's description after the protection (`/lib/x.so + 0x1000 (s)`, `[vdso]`, `shmem[1]`, ...).
    pub label: String,
}

/// The mappings of one process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcMems {
    pub pid: u32,
    pub exe: String,
    pub vmas: Vec<Mapping>,
}

/// crit's numbering of shared memory segments (1, 2, ... by first appearance, across processes).
#[derive(Debug, Default)]
struct ShmIds(HashMap<u64, u64>);

impl ShmIds {
    fn get(&mut self, id: u64) -> u64 {
        let next = self.0.len() as u64 + 1;
        *self.0.entry(id).or_insert(next)
    }
}

fn label(v: &pb::VmaEntry, files: &FileTable, ids: &mut ShmIds) -> String {
    let st = v.status;
    let mut s = if st & VMA_AREA_SYSVIPC != 0 {
        format!(" ips[{:x}]", ids.get(v.shmid))
    } else if st & VMA_ANON_SHARED != 0 {
        format!(" shmem[{:x}]", ids.get(v.shmid))
    } else if st & VMA_AREA_SOCKET != 0 {
        format!(" packet[{:x}]", ids.get(v.shmid))
    } else if st & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
        let mut s = format!(" {}", files.reg_name(v.shmid as u32));
        if v.pgoff != 0 {
            s.push_str(&format!(" + {:#x}", v.pgoff));
        }
        if st & VMA_FILE_SHARED != 0 {
            s.push_str(" (s)");
        }
        s
    } else if st & VMA_AREA_STACK != 0 {
        " [stack]".into()
    } else if st & VMA_AREA_VSYSCALL != 0 {
        " [vsyscall]".into()
    } else if st & VMA_AREA_VDSO != 0 {
        " [vdso]".into()
    } else if v.flags & MAP_GROWSDOWN != 0 {
        " [stack?]".into()
    } else {
        String::new()
    };
    if st & VMA_AREA_REGULAR == 0 {
        s.push_str(" *");
    }
    s
}

/// Build the mapping lists of the given processes (pstree order).
pub fn build(set: &ImageSet, procs: &[pb::PstreeEntry]) -> Result<Vec<ProcMems>> {
    let files = FileTable::load(set)?;
    let mut ids = ShmIds::default();
    let mut out = Vec::with_capacity(procs.len());
    for p in procs {
        let mm = set.mm(p.pid)?;
        let vmas = mm
            .vmas
            .iter()
            .map(|v| Mapping {
                start: v.start,
                end: v.end,
                prot: prot_str(v.prot),
                kind: VmaKind::of(v, Some(&mm)),
                file: is_file_backed(v).then(|| files.reg_name(v.shmid as u32)),
                pgoff: v.pgoff,
                shared: v.flags & MAP_SHARED != 0,
                label: label(v, &files, &mut ids),
            })
            .collect();
        out.push(ProcMems {
            pid: p.pid,
            exe: files.reg_name(mm.exe_file_id),
            vmas,
        });
    }
    Ok(out)
}

/// CRIU crit's text.
pub fn render(procs: &[ProcMems]) -> String {
    let mut s = String::new();
    for p in procs {
        s.push_str(&format!("{}\n", p.pid));
        s.push_str(&format!("\t{:<36}    {}\n", "exe", p.exe));
        for v in &p.vmas {
            let range = format!("{:08x}-{:08x}", v.start, v.end);
            s.push_str(&format!("\t{range:<36}{}{}\n", v.prot, v.label));
        }
    }
    s
}
