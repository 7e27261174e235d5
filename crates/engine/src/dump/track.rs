//! Memory tracking for incremental dumps (pre-dump chains, `--track-mem`),
//! without soft-dirty: a userfaultfd in asynchronous write-protect mode
//! (`UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED`) made inside each
//! process, and PAGEMAP_SCAN with `PAGE_IS_WRITTEN` + `PM_SCAN_WP_MATCHING`,
//! which finds the pages written since the last scan and protects them again
//! in the same walk. docs/memory-tracking.md says what it cannot track.
//!
//! The userfaultfd must live from one dump to the next, and cryo does not:
//! it stays in the process, at a high fd (`O_CLOEXEC`), and a record of
//! it is kept in [`state_dir`] (`PIDNS-PID-STARTTIME`: the fd, the run id of the
//! last dump that re-armed it, and whether that dump completed). A dump
//! re-arms the pages it scans, so a dump that fails after its scan leaves
//! the record `pending`: the next dump trusts nothing it would have taken
//! from a parent and writes every page again.
//!
//! A process's pages are taken from the parent set only when: the parent
//! set records the same process (pid and start time) and run id, the
//! record says that run completed and was the last to re-arm, the fd is
//! still a userfaultfd, and the VMA is registered with it (PAGEMAP_SCAN
//! with `PM_SCAN_CHECK_WPASYNC` fails with EPERM on a VMA that is not: a
//! mapping made, moved or forked since). Anything else is written whole,
//! and registered for the next dump.

use super::mem::{self, Run};
use super::{DumpError, Result};
use crate::proc::Vma;
use crate::state::mm::MapKind;
use crate::sys;
use cryo_image::{ImageSet, Pagemap};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file of an image set naming the tracked processes (cryo's own).
pub const TRACK_FILE: &str = "cryo-track.json";

/// Where the records of live userfaultfds are kept (`CRYO_TRACK_DIR`, else
/// /run/cryo/track).
pub fn state_dir() -> PathBuf {
    std::env::var_os("CRYO_TRACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/cryo/track"))
}

/// Field 22 of /proc/PID/stat: when the process started (clock ticks after boot).
pub fn start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    // rest starts at field 3 (state): field 22 is the 20th from here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A record of a process's userfaultfd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub fd: i32,
    /// The run id of the last dump that re-armed it.
    pub run_id: String,
    /// That dump completed (its inventory was written).
    pub complete: bool,
}

/// Our pid namespace (pids are ours to name only there: tests run cryo in
/// many namespaces at once, each with its own pid 4).
fn pidns() -> String {
    std::fs::metadata("/proc/self/ns/pid")
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m).to_string())
        .unwrap_or_else(|_| "0".into())
}

fn record_path(pid: i32, start: u64) -> PathBuf {
    state_dir().join(format!("{}-{pid}-{start}", pidns()))
}

/// The record of `pid` started at `start`, if any.
pub fn read_record(pid: i32, start: u64) -> Option<Record> {
    let s = std::fs::read_to_string(record_path(pid, start)).ok()?;
    let mut w = s.split_whitespace();
    let fd = w.next()?.parse().ok()?;
    let run_id = w.next()?.to_string();
    let complete = w.next()? == "complete";
    Some(Record { fd, run_id, complete })
}

fn write_record(pid: i32, start: u64, r: &Record) -> std::io::Result<()> {
    let dir = state_dir();
    std::fs::create_dir_all(&dir)?;
    let p = record_path(pid, start);
    let tmp = p.with_extension("tmp");
    std::fs::write(
        &tmp,
        format!(
            "{} {} {}\n",
            r.fd,
            r.run_id,
            if r.complete { "complete" } else { "pending" }
        ),
    )?;
    std::fs::rename(&tmp, &p)
}

/// Forget the records of processes that are gone, and of `pids` (a tree killed by its dump).
pub fn prune(gone: &[(i32, u64)]) {
    for &(pid, start) in gone {
        let _ = std::fs::remove_file(record_path(pid, start));
    }
    let Ok(rd) = std::fs::read_dir(state_dir()) else { return };
    let ns = format!("{}-", pidns());
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // Only records of our pid namespace name pids we can check.
        let Some(rest) = name.strip_prefix(&ns) else {
            continue;
        };
        let Some((pid, start)) = rest.split_once('-') else {
            continue;
        };
        let (Ok(pid), Ok(start)) = (pid.parse::<i32>(), start.parse::<u64>()) else {
            continue;
        };
        if start_time(pid) != Some(start) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Is fd `fd` of `pid` a userfaultfd?
fn is_uffd(pid: i32, fd: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|l| l.as_os_str() == "anon_inode:[userfaultfd]")
}

/// The fds of the tree that are cryo's userfaultfds (left out of the dump):
/// the recorded fd of a process, and the same number in the processes of
/// the tree (children inherit it across fork).
pub fn own_fds(pids: &[i32]) -> Vec<i32> {
    let mut v: Vec<i32> = pids
        .iter()
        .filter_map(|&p| read_record(p, start_time(p)?))
        .map(|r| r.fd)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Is `(fd, link)` of a process one of cryo's userfaultfds (`own` from [`own_fds`])?
pub fn is_own(own: &[i32], fd: i32, link: &str) -> bool {
    link == "anon_inode:[userfaultfd]" && own.contains(&fd)
}

/// The parent set of an incremental dump and what it tracked.
pub struct Parent {
    pub set: ImageSet,
    pub run_id: String,
    /// (pid, start time, fd) of the processes it tracked.
    pub procs: Vec<(i32, u64, i32)>,
}

impl Parent {
    /// Read `dir`'s tracking file (absent: a set made without tracking,
    /// e.g. by CRIU: nothing is taken from it).
    pub fn open(dir: &Path) -> Result<Parent> {
        let set = ImageSet::open(dir).map_err(DumpError::Image)?;
        let p = dir.join(TRACK_FILE);
        let (run_id, procs) = match std::fs::read_to_string(&p) {
            Ok(s) => {
                let v: serde_json::Value = serde_json::from_str(&s).map_err(|e| DumpError::Io {
                    path: p.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                })?;
                let run_id = v["run_id"].as_str().unwrap_or_default().to_string();
                let procs = v["procs"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| {
                                Some((
                                    p["pid"].as_i64()? as i32,
                                    p["start_time"].as_u64()?,
                                    p["fd"].as_i64()? as i32,
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (run_id, procs)
            }
            Err(_) => (String::new(), Vec::new()),
        };
        Ok(Parent { set, run_id, procs })
    }
}

/// Tracking of one dump.
pub struct TrackCtx {
    pub run_id: String,
    pub parent: Option<Parent>,
    /// (pid, start time, fd) of the processes armed by this dump.
    pub armed: Vec<(i32, u64, i32)>,
}

impl TrackCtx {
    pub fn new(run_id: String, parent: Option<Parent>) -> Self {
        TrackCtx {
            run_id,
            parent,
            armed: Vec::new(),
        }
    }

    /// Get (or make) the userfaultfd of the frozen process `pid` whose
    /// leader is `leader`, and say whether its pages may come from the parent.
    /// (`vpid`: the pid the images name it by, inside the tree's pid namespace.)
    pub fn prepare(
        &mut self,
        pid: i32,
        vpid: i32,
        leader: &mut crate::ptrace::Stopped,
        code_addr: u64,
    ) -> Result<ProcTrack> {
        let start = start_time(pid).ok_or_else(|| DumpError::task(pid, "task died (no /proc/PID/stat)"))?;
        let rec = read_record(pid, start).filter(|r| is_uffd(pid, r.fd));
        let parent_pm = match (&self.parent, &rec) {
            (Some(p), Some(r))
                if r.complete
                    && !p.run_id.is_empty()
                    && r.run_id == p.run_id
                    && p.procs.iter().any(|&(pp, ps, pf)| (pp, ps, pf) == (pid, start, r.fd)) =>
            {
                p.set.pagemap(vpid as u32).ok()
            }
            _ => None,
        };
        let pidfd = sys::pidfd_open(pid).map_err(|e| DumpError::task(pid, format!("pidfd_open: {e}")))?;
        let (fd, uffd) = match &rec {
            Some(r) => {
                let u = sys::pidfd_getfd(pidfd.as_raw_fd(), r.fd)
                    .map_err(|e| DumpError::task(pid, format!("taking its userfaultfd (fd {}): {e}", r.fd)))?;
                (r.fd, u)
            }
            None => {
                let min = min_fd(pid);
                let (fd, _) = crate::parasite::make_userfaultfd(leader, code_addr, min, true, false)
                    .map_err(|source| DumpError::Parasite { pid, source })?;
                let u = sys::pidfd_getfd(pidfd.as_raw_fd(), fd)
                    .map_err(|e| DumpError::task(pid, format!("taking its userfaultfd (fd {fd}): {e}")))?;
                let want = sys::uffd::UFFD_FEATURE_WP_ASYNC | sys::uffd::UFFD_FEATURE_WP_UNPOPULATED;
                let got = sys::uffd::api(u.as_raw_fd(), want)
                    .map_err(|e| DumpError::task(pid, format!("UFFDIO_API (WP_ASYNC, Linux 6.7+): {e}")))?;
                if got & want != want {
                    return Err(DumpError::task(
                        pid,
                        "the kernel lacks UFFD_FEATURE_WP_ASYNC (Linux 6.7+): memory cannot be tracked",
                    ));
                }
                (fd, u)
            }
        };
        write_record(
            pid,
            start,
            &Record {
                fd,
                run_id: self.run_id.clone(),
                complete: false,
            },
        )
        .map_err(|source| DumpError::Io {
            path: record_path(pid, start),
            source,
        })?;
        self.armed.push((pid, start, fd));
        Ok(ProcTrack {
            pid,
            uffd,
            parent: parent_pm,
            written: 0,
            from_parent: 0,
            untracked: 0,
        })
    }

    /// The dump is complete: the records say so, and the set names what it tracked.
    pub fn commit(&self, dir: &Path) -> Result<PathBuf> {
        let procs: Vec<serde_json::Value> = self
            .armed
            .iter()
            .map(|&(pid, start, fd)| serde_json::json!({"pid": pid, "start_time": start, "fd": fd}))
            .collect();
        let v = serde_json::json!({"run_id": self.run_id, "procs": procs});
        let p = dir.join(TRACK_FILE);
        let io = |source| DumpError::Io {
            path: p.clone(),
            source,
        };
        std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap_or_default() + "\n").map_err(io)?;
        for &(pid, start, fd) in &self.armed {
            let r = Record {
                fd,
                run_id: self.run_id.clone(),
                complete: true,
            };
            write_record(pid, start, &r).map_err(|source| DumpError::Io {
                path: record_path(pid, start),
                source,
            })?;
        }
        Ok(p)
    }
}

/// The lowest fd number cryo puts its userfaultfd at: near the top of the
/// process's soft RLIMIT_NOFILE, out of the way of the numbers it uses.
fn min_fd(pid: i32) -> i32 {
    let soft = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse::<i64>().ok()))
        })
        .unwrap_or(1024);
    (soft.min(1 << 20) - 64).max(3) as i32
}

/// The tracking of one process in one dump.
pub struct ProcTrack {
    pub pid: i32,
    uffd: OwnedFd,
    /// The parent's pagemap of this process, when its pages may come from it.
    parent: Option<Arc<Pagemap>>,
    /// Pages written (data in this set), taken from the parent, and VMAs
    /// that were not tracked (written whole).
    pub written: u64,
    pub from_parent: u64,
    pub untracked: u64,
}

/// Can the pages of a VMA of this kind be tracked?
fn trackable(k: MapKind) -> bool {
    matches!(
        k,
        MapKind::Heap | MapKind::AnonPrivate | MapKind::FilePrivate | MapKind::MemfdPrivate
    )
}

impl ProcTrack {
    /// The pages of `[start, end)` of `v` to dump (as [`mem::scan_vma_part`])
    /// with the ones unwritten since the parent's scan flagged `PE_PARENT`;
    /// every page scanned is write-protected again. `first`: this is the
    /// first part of `v` (its registration is checked then).
    pub fn scan(&mut self, pm_fd: i32, v: &Vma, k: MapKind, start: u64, end: u64) -> std::io::Result<Vec<Run>> {
        if !trackable(k) {
            return mem::scan_vma_part(pm_fd, v, k, start, end);
        }
        let (s, e) = (start.max(v.start), end.min(v.end));
        // Registered already? (EPERM: not with a WP_ASYNC userfaultfd.)
        let probe = sys::pagemap_scan_flags(
            pm_fd,
            s,
            (s + 4096).min(e),
            sys::PAGE_IS_PRESENT,
            0,
            sys::PAGE_IS_PRESENT,
            sys::uffd::PM_SCAN_CHECK_WPASYNC,
        );
        let was_tracked = match probe {
            Ok(_) => true,
            Err(err) if err.raw_os_error() == Some(libc::EPERM) => false,
            Err(err) => return Err(err),
        };
        if !was_tracked {
            self.untracked += 1;
            // Register the whole VMA once (the first part); a VMA another
            // userfaultfd holds (EBUSY) or the kernel refuses stays untracked.
            if s == v.start && sys::uffd::register_wp(self.uffd.as_raw_fd(), v.start, v.end - v.start).is_err() {
                return mem::scan_vma_part(pm_fd, v, k, start, end);
            }
        }
        let (anyof, excl, flags) = mem::scan_masks(k);
        let ret = anyof | excl | sys::PAGE_IS_WRITTEN;
        let wp = sys::uffd::PM_SCAN_WP_MATCHING | sys::uffd::PM_SCAN_CHECK_WPASYNC;
        let regions = match sys::pagemap_scan_flags(pm_fd, s, e, anyof, excl | sys::PAGE_IS_GUARD, ret, wp) {
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                sys::pagemap_scan_flags(pm_fd, s, e, anyof, excl, ret, wp)?
            }
            // Registration failed quietly (part of the VMA): dump it whole.
            Err(err) if err.raw_os_error() == Some(libc::EPERM) => return mem::scan_vma_part(pm_fd, v, k, start, end),
            r => r?,
        };
        let mut out = Vec::with_capacity(regions.len());
        for r in regions {
            let len = r.end - r.start;
            let in_parent = was_tracked
                && r.categories & sys::PAGE_IS_WRITTEN == 0
                && self.parent.as_ref().is_some_and(|p| covered(p, r.start, r.end));
            if in_parent {
                self.from_parent += len / 4096;
                out.push(Run {
                    start: r.start,
                    len,
                    flags: cryo_image::PE_PARENT,
                });
            } else {
                self.written += len / 4096;
                out.push(Run {
                    start: r.start,
                    len,
                    flags,
                });
            }
        }
        Ok(out)
    }
}

/// Does the parent's pagemap hold every page of `[start, end)` (in its
/// pages file or in its own parent)?
fn covered(pm: &Pagemap, start: u64, end: u64) -> bool {
    let mut a = start;
    while a < end {
        match pm.find(a) {
            Some(r) if r.offset.is_some() || r.flags & cryo_image::PE_PARENT != 0 => a = r.end(),
            _ => return false,
        }
    }
    true
}

/// Can this kernel track writes this way? (A userfaultfd of our own with
/// `UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED`.)
pub fn probe() -> std::io::Result<()> {
    let u = sys::uffd::userfaultfd(libc::O_CLOEXEC as u64 | sys::uffd::UFFD_USER_MODE_ONLY)?;
    let want = sys::uffd::UFFD_FEATURE_WP_ASYNC | sys::uffd::UFFD_FEATURE_WP_UNPOPULATED;
    let got = sys::uffd::api(u.as_raw_fd(), want)?;
    if got & want != want {
        return Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_needs_every_page() {
        let pm = Pagemap {
            pages_id: 1,
            runs: vec![
                cryo_image::PageRun {
                    vaddr: 0x1000,
                    nr_pages: 2,
                    flags: cryo_image::PE_PRESENT,
                    offset: Some(0),
                },
                cryo_image::PageRun {
                    vaddr: 0x3000,
                    nr_pages: 1,
                    flags: cryo_image::PE_PARENT,
                    offset: None,
                },
                cryo_image::PageRun {
                    vaddr: 0x5000,
                    nr_pages: 1,
                    flags: cryo_image::PE_PRESENT,
                    offset: Some(0x2000),
                },
            ],
        };
        assert!(covered(&pm, 0x1000, 0x4000));
        assert!(!covered(&pm, 0x1000, 0x5000));
        assert!(covered(&pm, 0x5000, 0x6000));
        assert!(!covered(&pm, 0x6000, 0x7000));
    }
}
