//! `crit x DIR rss`: each process's dumped page runs next to the mappings they fall in.

use serde::Serialize;

use cryo_image::{pb, ImageSet};

use super::files::FileTable;
use super::vma::is_file_backed;
use super::{ExploreError, Result};

/// A mapping a run touches. `again` marks a mapping already shown for the previous run (crit's `~`).
#[derive(Debug, Clone, Serialize)]
pub struct RunVma {
    pub start: u64,
    pub pages: u64,
    pub file: Option<String>,
    pub again: bool,
}

/// One run of dumped pages.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub vaddr: u64,
    pub nr_pages: u64,
    /// PE_* flags (1 parent, 2 lazy, 4 present).
    pub flags: u32,
    pub vmas: Vec<RunVma>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcRss {
    pub pid: u32,
    pub runs: Vec<Run>,
}

/// Build the run lists of the given processes. Runs are matched to mappings with crit's walk (a cursor
/// over the sorted VMAs), so the result is what crit shows even for odd pagemaps.
pub fn build(set: &ImageSet, procs: &[pb::PstreeEntry]) -> Result<Vec<ProcRss>> {
    let files = FileTable::load(set)?;
    let mut out = Vec::with_capacity(procs.len());
    for p in procs {
        let vmas = set.mm(p.pid)?.vmas;
        let pm = set.pagemap(p.pid)?;
        let n = vmas.len() as isize;
        // crit indexes a Python list: negative indexes count from the end.
        let at = |i: isize| -> Result<&pb::VmaEntry> {
            let j = if i < 0 { i + n } else { i };
            if j < 0 || j >= n {
                return Err(ExploreError::Invalid {
                    file: set.path(&format!("pagemap-{}.img", p.pid)).display().to_string(),
                    what: "page runs do not match the mappings of mm.img".into(),
                });
            }
            Ok(&vmas[j as usize])
        };
        let mut runs = Vec::with_capacity(pm.runs.len());
        let (mut vmi, mut pvmi): (isize, isize) = (0, -1);
        for r in &pm.runs {
            while vmi < n && at(vmi)?.end <= r.vaddr {
                vmi += 1;
            }
            let pme = r.vaddr.wrapping_add(r.nr_pages << 12);
            let mut rv = Vec::new();
            while vmi < n && at(vmi)?.start < pme {
                let v = at(vmi)?;
                if vmi == pvmi {
                    rv.push(RunVma {
                        start: v.start,
                        pages: v.end.wrapping_sub(v.start) >> 12,
                        file: None,
                        again: true,
                    });
                } else {
                    rv.push(RunVma {
                        start: v.start,
                        pages: (v.end.wrapping_sub(v.start)) >> 12,
                        file: is_file_backed(v).then(|| files.reg_name(v.shmid as u32)),
                        again: false,
                    });
                    pvmi = vmi;
                }
                vmi += 1;
            }
            vmi -= 1;
            runs.push(Run {
                vaddr: r.vaddr,
                nr_pages: r.nr_pages,
                flags: r.flags,
                vmas: rv,
            });
        }
        out.push(ProcRss { pid: p.pid, runs });
    }
    Ok(out)
}

/// CRIU crit's text.
pub fn render(procs: &[ProcRss]) -> String {
    let mut s = String::new();
    for p in procs {
        s.push_str(&format!("{}\n", p.pid));
        for r in &p.runs {
            let pstr = format!("\t{:x} / {:<8}", r.vaddr, r.nr_pages);
            let mut vstr = String::new();
            for v in &r.vmas {
                if v.again {
                    vstr.push_str(" ~");
                } else {
                    vstr.push_str(&format!(" {:08x} / {:<8}", v.start, v.pages));
                    if let Some(f) = &v.file {
                        vstr.push(' ');
                        vstr.push_str(f);
                    }
                }
                vstr.push_str(&format!("\n\t{:23}", ""));
            }
            s.push_str(&format!("{pstr:<24}{vstr}\n"));
        }
    }
    s
}
