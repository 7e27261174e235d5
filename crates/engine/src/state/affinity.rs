//! Per-thread CPU affinity: read at dump, set again at restore.
//!
//! CRIU's image format has no field for it, so it travels in cryo's sidecar
//! (`cryo.json`, format and parsing in `cryo_image::sidecar`, file I/O in
//! [`crate::sidecar`]). Only threads whose mask leaves out a CPU that was
//! online at dump time are recorded; restore sets each listed thread's mask
//! to the dumped CPUs that are online now, and when none of them is (a
//! smaller machine), it warns and leaves the thread's default.

use nix::sched::CpuSet;
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use cryo_image::sidecar::{format_cpulist, parse_cpulist, Cpus};

/// Why the affinity could not be read, written, parsed or applied.
#[derive(Debug, thiserror::Error)]
pub enum AffinityError {
    #[error("thread {tid}: reading its CPU affinity: {source}")]
    Read { tid: i32, source: nix::Error },
    #[error("thread {tid}: setting its CPU affinity to {cpus}: {source}")]
    Set { tid: i32, cpus: String, source: nix::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {what}")]
    Bad { path: PathBuf, what: String },
}

fn to_cpuset(cpus: &Cpus) -> CpuSet {
    let mut set = CpuSet::new();
    for &c in cpus {
        // parse_cpulist and from_cpuset keep every CPU below CpuSet::count().
        let _ = set.set(c as usize);
    }
    set
}

fn from_cpuset(set: &CpuSet) -> Cpus {
    (0..CpuSet::count())
        .filter(|&i| set.is_set(i).unwrap_or(false))
        .map(|i| i as u32)
        .collect()
}

/// The threads worth recording: those whose mask leaves out an online CPU.
pub fn pinned(masks: &[(i32, Cpus)], online: &Cpus) -> BTreeMap<i32, Cpus> {
    masks
        .iter()
        .filter(|(_, m)| !online.is_subset(m))
        .map(|(t, m)| (*t, m.clone()))
        .collect()
}

// ---- I/O ----

/// CPUs online now (/sys/devices/system/cpu/online).
pub fn online_cpus() -> Result<Cpus, AffinityError> {
    let path = PathBuf::from("/sys/devices/system/cpu/online");
    let s = std::fs::read_to_string(&path).map_err(|source| AffinityError::Io {
        path: path.clone(),
        source,
    })?;
    parse_cpulist(&s).map_err(|what| AffinityError::Bad { path, what })
}

/// The CPU affinity of thread `tid` (read from outside).
pub fn thread_cpus(tid: i32) -> Result<Cpus, AffinityError> {
    let set =
        nix::sched::sched_getaffinity(Pid::from_raw(tid)).map_err(|source| AffinityError::Read { tid, source })?;
    Ok(from_cpuset(&set))
}

/// Dump: the affinity of every thread in `tids` (the tree is frozen) that
/// is pinned, for the sidecar.
pub fn collect(tids: &[i32]) -> Result<BTreeMap<i32, Cpus>, AffinityError> {
    let online = online_cpus()?;
    let mut masks = Vec::with_capacity(tids.len());
    for &tid in tids {
        masks.push((tid, thread_cpus(tid)?));
    }
    Ok(pinned(&masks, &online))
}

/// Restore, once every thread exists: set each listed thread's affinity to
/// its dumped CPUs that are online now. Returns warnings for the threads
/// left with their default (none of their CPUs is online here, or the
/// kernel refused the mask, e.g. outside the cpuset of the cgroup).
pub fn apply(threads: &BTreeMap<i32, Cpus>) -> Result<Vec<String>, AffinityError> {
    if threads.is_empty() {
        return Ok(Vec::new());
    }
    let online = online_cpus()?;
    let mut warnings = Vec::new();
    for (&tid, cpus) in threads {
        let now: Cpus = cpus.intersection(&online).copied().collect();
        if now.is_empty() {
            warnings.push(format!(
                "thread {tid}: none of its CPUs ({}) is online here ({}); it keeps the default affinity",
                format_cpulist(cpus),
                format_cpulist(&online)
            ));
            continue;
        }
        match nix::sched::sched_setaffinity(Pid::from_raw(tid), &to_cpuset(&now)) {
            Ok(()) => {}
            Err(nix::Error::EINVAL) => warnings.push(format!(
                "thread {tid}: the kernel refused CPUs {} (cpuset?); it keeps the default affinity",
                format_cpulist(&now)
            )),
            Err(source) => {
                return Err(AffinityError::Set {
                    tid,
                    cpus: format_cpulist(&now),
                    source,
                })
            }
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(v: &[u32]) -> Cpus {
        v.iter().copied().collect()
    }

    #[test]
    fn only_pinned_threads_are_recorded() {
        let online = cpus(&[0, 1]);
        let side = pinned(
            &[
                (10, cpus(&[0])),
                (11, cpus(&[1])),
                (12, cpus(&[0, 1])),
                (13, cpus(&(0..64).collect::<Vec<_>>())),
            ],
            &online,
        );
        assert_eq!(side.keys().copied().collect::<Vec<_>>(), vec![10, 11]);
    }

    #[test]
    fn cpusets_round_trip() {
        let c = cpus(&[0, 3, 1023]);
        assert_eq!(from_cpuset(&to_cpuset(&c)), c);
    }
}
