//! `crit merge DIR OUT`: an incremental dump (a set whose pagemaps have `PE_PARENT` runs, the last of a
//! chain of pre-dumps) made into one self-contained set in OUT: every image of DIR copied, each
//! process's pagemap rewritten with the pages of the whole chain in its own pages file, no `parent`
//! link. The chain itself is left as it is.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use cryo_image::{pb, ImageSet, ImageWriter, PAGE_SIZE, PE_PARENT};

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The last set of the chain
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Where to write the merged set (created; must not exist or be empty)
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
}

pub fn run(a: &MergeArgs) -> Result<()> {
    if a.out.exists() && fs::read_dir(&a.out)?.next().is_some() {
        bail!("{}: not empty", a.out.display());
    }
    fs::create_dir_all(&a.out).with_context(|| a.out.display().to_string())?;
    let set = ImageSet::open(&a.dir)?;
    if !a.dir.join("inventory.img").is_file() {
        bail!("{}: no inventory.img (not a complete image set)", a.dir.display());
    }
    // Process pagemaps and the pages files they own are rewritten; the rest is copied.
    let mut pids = Vec::new();
    let mut own_pages = Vec::new();
    let mut names: Vec<String> = fs::read_dir(&a.dir)?
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
    let mut pages_total = 0u64;
    for n in &names {
        if n == "parent" || n == "cryo-track.json" || n.starts_with("pagemap-") && !n.starts_with("pagemap-shmem-") {
            continue;
        }
        if own_pages.contains(n) {
            continue;
        }
        let src = a.dir.join(n);
        if !src.is_file() {
            continue;
        }
        fs::copy(&src, a.out.join(n)).with_context(|| format!("copying {}", src.display()))?;
    }
    for pid in pids {
        let flat = set.flat_pagemap(pid)?;
        let pm = set.pagemap(pid)?;
        let pages_name = format!("pages-{}.img", pm.pages_id);
        let mut out = fs::File::create(a.out.join(&pages_name)).with_context(|| pages_name.clone())?;
        let mut files: Vec<Option<fs::File>> = flat.files.iter().map(|_| None).collect();
        let mut entries: Vec<pb::PagemapEntry> = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        for (r, &fi) in flat.runs.iter().zip(&flat.file) {
            let flags = r.flags & !PE_PARENT;
            if let Some(off) = r.offset {
                let f = match &mut files[fi] {
                    Some(f) => f,
                    slot => slot
                        .insert(fs::File::open(&flat.files[fi]).with_context(|| flat.files[fi].display().to_string())?),
                };
                f.seek(SeekFrom::Start(off))?;
                let mut left = r.nr_pages * PAGE_SIZE;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    f.read_exact(&mut buf[..n])
                        .with_context(|| format!("{}: reading {n} bytes at {off:#x}", flat.files[fi].display()))?;
                    out.write_all(&buf[..n])?;
                    left -= n as u64;
                }
                pages_total += r.nr_pages;
            }
            match entries.last_mut() {
                Some(l) if l.flags == Some(flags) && l.vaddr + l.nr_pages.unwrap_or(0) * PAGE_SIZE == r.vaddr => {
                    *l.nr_pages.as_mut().expect("set below") += r.nr_pages;
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
        let name = format!("pagemap-{pid}.img");
        let mut w = ImageWriter::create(a.out.join(&name), Some("PAGEMAP"))?;
        w.entry(&pb::PagemapHead { pages_id: pm.pages_id })?;
        for e in &entries {
            w.entry(e)?;
        }
        w.finish()?;
    }
    println!(
        "merged {} into {}: {pages_total} pages",
        a.dir.display(),
        a.out.display()
    );
    Ok(())
}
