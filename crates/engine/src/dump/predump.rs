//! `cryo pre-dump`: the pages of a tree written since its parent set (all of
//! them the first time), with the tree stopped only to arm the tracking and
//! scan: the pages are read after it runs again (criu's
//! `--pre-dump-mode=read`). A page written after the scan may be saved with
//! its newer contents; the scan re-armed it, so the next dump saves it again.
//!
//! A pre-dump set holds pagemap-PID.img, pages-N.img, stats-dump,
//! inventory.img (last) and cryo-track.json; `parent` links to the previous
//! set of the chain, as criu makes it.

use super::track::{self, TrackCtx};
use super::{
    classify_vmas, commit_track, freeze, mem, new_run_id, open_track, pages, precheck, read, tree_pids,
    write_inventory, write_stats, DumpCtx, DumpError, DumpOpts, DumpSummary, Phases, Result,
};
use crate::files::FileTable;
use crate::proc;
use cryo_image::{pb, ImageWriter};
use std::time::Instant;

/// criu's PRE_DUMP_READ (inventory's pre_dump_mode).
const PRE_DUMP_READ: u32 = 2;

/// Pre-dump the tree rooted at `opts.pid` into `opts.dir` (the tree goes on running).
pub fn pre_dump(mut opts: DumpOpts) -> Result<DumpSummary> {
    let t0 = Instant::now();
    opts.track_mem = true;
    opts.leave_running = true;
    let dir = opts.dir.clone();
    if !dir.is_dir() {
        return Err(DumpError::Io {
            path: dir,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let inv = dir.join("inventory.img");
    if inv.exists() {
        std::fs::remove_file(&inv).map_err(|source| DumpError::Io {
            path: inv.clone(),
            source,
        })?;
    }
    precheck(opts.pid)?;
    let run_id = new_run_id();
    let track = open_track(&opts, &run_id)?;
    let pids = tree_pids(opts.pid);
    let own = track::own_fds(&pids);
    let tree_ns = crate::state::ns::survey(&pids)?;
    let mut phases = Phases::new(t0);
    let mut ctx = DumpCtx::new(
        opts,
        FileTable::with_ghost_limit(0),
        pages::PipePool::default(),
        Phases::new(t0),
        track,
        own,
        run_id,
        tree_ns,
    );
    let res = run(&mut ctx, &mut phases);
    match res {
        Ok(s) => Ok(s),
        Err(e) => {
            ctx.discard();
            let _ = std::fs::remove_file(&inv);
            Err(e)
        }
    }
}

fn run(ctx: &mut DumpCtx, phases: &mut Phases) -> Result<DumpSummary> {
    let t0 = phases.last;
    let t_freeze = Instant::now();
    let mut tree = freeze::freeze_tree(ctx.opts.pid)?;
    phases.mark("freeze");
    // Frozen: arm (or re-arm) each process and scan what it wrote.
    let scanned = scan_frozen(ctx, &mut tree);
    let nprocs = tree.procs.len();
    let threads: usize = tree.procs.iter().map(|p| p.threads.len()).sum();
    tree.release();
    let frozen = t_freeze.elapsed();
    phases.mark("arm + scan (frozen)");
    let scanned = scanned?;
    for (pid, runs) in &scanned {
        write_proc(ctx, *pid, runs)?;
    }
    phases.mark("pages written");
    ctx.stats.frozen_time = frozen.as_micros() as u32;
    ctx.stats.memwrite_time = phases.list.last().map_or(0, |p| p.1.as_micros() as u32);
    for w in std::mem::take(&mut ctx.unfinished) {
        w.finish()?;
    }
    write_stats(ctx)?;
    write_inventory(ctx, Some(PRE_DUMP_READ))?;
    commit_track(ctx)?;
    phases.mark("inventory");
    Ok(DumpSummary {
        processes: nprocs,
        threads,
        pages_written: ctx.stats.pages_written,
        files: 0,
        frozen,
        total: t0.elapsed(),
        phases: std::mem::take(&mut phases.list),
        warnings: Vec::new(),
    })
}

/// For each live process of the frozen tree: its userfaultfd, and the runs
/// to write (pages written since the parent, the rest `PE_PARENT`).
fn scan_frozen(ctx: &mut DumpCtx, tree: &mut freeze::FrozenTree) -> Result<Vec<(i32, Vec<mem::Run>)>> {
    let mut out = Vec::new();
    for p in tree.procs.iter_mut() {
        if p.is_zombie() {
            continue;
        }
        let pid = p.pid;
        let maps = proc::parse_maps(&read(&format!("/proc/{pid}/maps"), pid)?)
            .map_err(|e| DumpError::task(pid, e.to_string()))?;
        let vmas = classify_vmas(maps);
        let tc: &mut TrackCtx = ctx.track.as_mut().expect("pre-dump tracks");
        let code_addr = crate::parasite::find_code_addr(pid).map_err(|e| DumpError::task(pid, e.to_string()))?;
        let vpid = ctx.ns.vpid(pid);
        let mut pt = tc.prepare(pid, vpid, p.leader_mut(), code_addr)?;
        let (runs, scanned) = pages::scan_pages(pid, &vmas, Some(&mut pt))?;
        ctx.stats.pages_scanned += scanned;
        ctx.stats.pages_skipped_parent += pt.from_parent;
        super::trace(&format!(
            "pid {pid}: {} pages written since the parent, {} in it, {} VMAs untracked",
            pt.written, pt.from_parent, pt.untracked
        ));
        out.push((pid, mem::merge_runs(runs)));
    }
    Ok(out)
}

/// pagemap-PID.img and pages-N.img of one process, read while it runs.
fn write_proc(ctx: &mut DumpCtx, pid: i32, runs: &[mem::Run]) -> Result<()> {
    let pages_id = ctx.files.alloc_pages_id();
    let pages_path = ctx.out.path(&format!("pages-{pages_id}.img"));
    let written = pages::write_pages(pid, runs, &pages_path, true)?;
    ctx.stats.pages_written += written / 4096;
    let path = ctx.out.path(&format!("pagemap-{}.img", ctx.vpid(pid)));
    let mut w: ImageWriter = ImageWriter::create(&path, Some("PAGEMAP"))?;
    w.entry(&pb::PagemapHead { pages_id })?;
    for e in mem::pagemap_entries(runs) {
        w.entry(&e)?;
    }
    ctx.defer(w);
    Ok(())
}
