//! An incremental dump (a set whose pagemaps have `PE_PARENT` runs, the last of a chain of pre-dumps)
//! made into one self-contained set: every image copied, each process's pagemap rewritten with the
//! pages of the whole chain in its own pages file, no `parent` link (`crit merge`, and `cryo run` when
//! it drops the oldest sets of a chain).

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{ImageError, Result};
use crate::{pb, ImageSet, ImageWriter, PAGE_SIZE, PE_PARENT};

/// Merge the set `dir` and its parents into `out` (created; must be empty). Returns the pages written.
pub fn merge_chain(dir: &Path, out: &Path) -> Result<u64> {
    let d = dir.display().to_string();
    let io = |f: &Path, e| ImageError::io(f.display().to_string(), e);
    if out.exists() && fs::read_dir(out).map_err(|e| io(out, e))?.next().is_some() {
        return Err(ImageError::invalid(out.display().to_string(), "not empty"));
    }
    if !dir.join("inventory.img").is_file() {
        return Err(ImageError::invalid(d, "no inventory.img (not a complete image set)"));
    }
    fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let set = ImageSet::open(dir)?;
    let mut pids = Vec::new();
    let mut own_pages = Vec::new();
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in &names {
        if let Some(pid) = n
            .strip_prefix("pagemap-")
            .and_then(|r| r.strip_suffix(".img"))
            .and_then(|r| r.parse::<u32>().ok())
        {
            let pm = set.pagemap(pid)?;
            own_pages.push(format!("pages-{}.img", pm.pages_id));
            pids.push(pid);
        }
    }
    for n in &names {
        let skip = n == "parent"
            || n == "cryo-track.json"
            || (n.starts_with("pagemap-") && !n.starts_with("pagemap-shmem-"))
            || own_pages.contains(n);
        let src = dir.join(n);
        if skip || !src.is_file() {
            continue;
        }
        fs::copy(&src, out.join(n)).map_err(|e| io(&src, e))?;
    }
    let mut total = 0u64;
    for pid in pids {
        let flat = set.flat_pagemap(pid)?;
        let pm = set.pagemap(pid)?;
        let pages = out.join(format!("pages-{}.img", pm.pages_id));
        let mut w_pages = fs::File::create(&pages).map_err(|e| io(&pages, e))?;
        let mut files: Vec<Option<fs::File>> = flat.files.iter().map(|_| None).collect();
        let mut entries: Vec<pb::PagemapEntry> = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        for (r, &fi) in flat.runs.iter().zip(&flat.file) {
            let flags = r.flags & !PE_PARENT;
            if let Some(off) = r.offset {
                let src = &flat.files[fi];
                let f = match &mut files[fi] {
                    Some(f) => f,
                    slot => slot.insert(fs::File::open(src).map_err(|e| io(src, e))?),
                };
                f.seek(SeekFrom::Start(off)).map_err(|e| io(src, e))?;
                let mut left = r.nr_pages * PAGE_SIZE;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    f.read_exact(&mut buf[..n]).map_err(|e| io(src, e))?;
                    w_pages.write_all(&buf[..n]).map_err(|e| io(&pages, e))?;
                    left -= n as u64;
                }
                total += r.nr_pages;
            }
            match entries.last_mut() {
                Some(l) if l.flags == Some(flags) && l.vaddr + l.nr_pages.unwrap_or(0) * PAGE_SIZE == r.vaddr => {
                    l.nr_pages = Some(l.nr_pages.unwrap_or(0) + r.nr_pages);
                }
                _ => entries.push(pb::PagemapEntry {
                    vaddr: r.vaddr,
                    compat_nr_pages: 0,
                    in_parent: None,
                    flags: Some(flags),
                    nr_pages: Some(r.nr_pages),
                }),
            }
        }
        w_pages.sync_all().map_err(|e| io(&pages, e))?;
        let mut w = ImageWriter::create(out.join(format!("pagemap-{pid}.img")), Some("PAGEMAP"))?;
        w.entry(&pb::PagemapHead { pages_id: pm.pages_id })?;
        for e in &entries {
            w.entry(e)?;
        }
        w.finish()?;
    }
    Ok(total)
}
