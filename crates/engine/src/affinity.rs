//! Per-thread CPU affinity, carried beside the images in a sidecar file.
//!
//! CRIU's image format has no field for CPU affinity, and cryo's images stay
//! CRIU 4.2's format byte for byte, so the affinity travels in
//! `cryo-affinity.json` in the image directory. CRIU and `crit check` read
//! only the `*.img` files they know and ignore it. The format (version 1):
//!
//! ```json
//! {
//!   "version": 1,
//!   "threads": {
//!     "4242": "0-3,6",
//!     "4243": "1"
//!   }
//! }
//! ```
//!
//! * `threads` maps a thread id (decimal, as in `core-TID.img`) to its
//!   allowed CPUs in Linux cpulist syntax, as `Cpus_allowed_list` in
//!   /proc/PID/task/TID/status prints it (comma-separated `N` or `N-M`,
//!   ascending).
//! * Only threads whose mask leaves out at least one CPU that was online at
//!   dump time are listed: a thread allowed on every online CPU keeps the
//!   restoring machine's default. With no such thread the file is not written
//!   at all, so a plain dump is exactly the file set CRIU writes.
//! * `crit rewrite --pid-map` renumbers the keys.
//! * Restore parses it strictly before creating any task (bad JSON, unknown or repeated
//!   keys, a bad cpulist or a tid that is not a live thread of the set are
//!   refused), and once every thread exists sets each listed thread's mask to
//!   the dumped CPUs that are online now; when none of them is (a smaller
//!   machine), it warns and leaves the thread's default.
//!
//! Dump, sidecar format and restore of this one piece of state live here, as
//! the per-object modules do.

use crate::dump::DumpError;
use crate::restore::RestoreError;
use nix::sched::CpuSet;
use nix::unistd::Pid;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the sidecar file in the image directory.
pub const FILE: &str = "cryo-affinity.json";
/// The format version written and the only one read.
pub const VERSION: u64 = 1;

/// A set of CPU numbers.
pub type Cpus = BTreeSet<u32>;

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

impl From<AffinityError> for DumpError {
    fn from(e: AffinityError) -> Self {
        match e {
            AffinityError::Read { tid, .. } | AffinityError::Set { tid, .. } => DumpError::Task {
                pid: tid,
                what: e.to_string(),
            },
            AffinityError::Io { path, source } => DumpError::Io { path, source },
            AffinityError::Bad { path, what } => DumpError::Io {
                path,
                source: std::io::Error::other(what),
            },
        }
    }
}

impl From<AffinityError> for RestoreError {
    fn from(e: AffinityError) -> Self {
        match e {
            AffinityError::Bad { path, what } => RestoreError::Prepare {
                object: path.display().to_string(),
                reason: what,
            },
            e => RestoreError::Sys(e.to_string()),
        }
    }
}

/// The content of the sidecar: tid -> allowed CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sidecar {
    pub threads: BTreeMap<i32, Cpus>,
}

// ---- cpulists (pure) ----

/// Parse Linux cpulist syntax (`0-3,6`). Empty lists, descending ranges,
/// strides and CPUs at or above `CpuSet::count()` are refused.
pub fn parse_cpulist(s: &str) -> Result<Cpus, String> {
    let max = CpuSet::count() as u32;
    let num = |x: &str| -> Result<u32, String> {
        if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{x}` is not a CPU number"));
        }
        let n: u32 = x.parse().map_err(|_| format!("`{x}` is not a CPU number"))?;
        if n >= max {
            return Err(format!("CPU {n} is beyond the {max} CPUs a mask can hold"));
        }
        Ok(n)
    };
    let mut cpus = Cpus::new();
    if s.trim().is_empty() {
        return Err("empty CPU list".into());
    }
    for part in s.trim().split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(part)?;
                (n, n)
            }
        };
        if a > b {
            return Err(format!("descending range `{part}`"));
        }
        cpus.extend(a..=b);
    }
    Ok(cpus)
}

/// Format CPUs as a cpulist (ranges of 2 or more as `N-M`).
pub fn format_cpulist(cpus: &Cpus) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = cpus.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end += 1;
            it.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
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

// ---- the sidecar (pure) ----

/// The sidecar as read: unknown and repeated keys are refused (serde_json
/// alone would keep the last of two equal keys without a word).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object with `version` and `threads`")]
struct Raw {
    version: serde_json::Value,
    threads: Threads,
}

/// `threads` in file order, each key once.
struct Threads(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Threads {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Threads;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of thread id -> CPU list")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Threads, A::Error> {
                let mut v: Vec<(String, serde_json::Value)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some((k, val)) = m.next_entry::<String, serde_json::Value>()? {
                    if !seen.insert(k.clone()) {
                        return Err(serde::de::Error::custom(format!("thread `{k}` is listed twice")));
                    }
                    v.push((k, val));
                }
                Ok(Threads(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parse the sidecar text strictly; errors name the thread when one is at fault.
pub fn parse(text: &str) -> Result<Sidecar, String> {
    let raw: Raw = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            e.to_string()
        } else {
            format!("not valid JSON: {e}")
        }
    })?;
    match &raw.version {
        serde_json::Value::Number(n) if n.as_u64() == Some(VERSION) => {}
        other => return Err(format!("version {other} (only {VERSION} is known)")),
    }
    let threads = raw.threads.0;
    let mut out = Sidecar::default();
    for (k, v) in threads {
        let tid = k
            .parse::<i32>()
            .ok()
            .filter(|t| *t > 0 && t.to_string() == *k)
            .ok_or_else(|| format!("thread `{k}`: not a thread id"))?;
        let list = v
            .as_str()
            .ok_or_else(|| format!("thread {tid}: the CPU list is not a string ({v})"))?;
        let cpus = parse_cpulist(list).map_err(|e| format!("thread {tid}: bad CPU list `{list}`: {e}"))?;
        out.threads.insert(tid, cpus);
    }
    Ok(out)
}

/// The sidecar as JSON text (threads in ascending tid order).
pub fn to_json(s: &Sidecar) -> String {
    let mut threads = serde_json::Map::new();
    for (tid, cpus) in &s.threads {
        threads.insert(tid.to_string(), serde_json::Value::String(format_cpulist(cpus)));
    }
    let mut top = serde_json::Map::new();
    top.insert("version".into(), VERSION.into());
    top.insert("threads".into(), serde_json::Value::Object(threads));
    let mut text = serde_json::to_string_pretty(&serde_json::Value::Object(top)).expect("a JSON tree serializes");
    text.push('\n');
    text
}

/// The threads worth recording: those whose mask leaves out an online CPU.
pub fn pinned(masks: &[(i32, Cpus)], online: &Cpus) -> Sidecar {
    Sidecar {
        threads: masks
            .iter()
            .filter(|(_, m)| !online.is_subset(m))
            .map(|(t, m)| (*t, m.clone()))
            .collect(),
    }
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

/// Dump: read the affinity of every thread in `tids` (the tree is frozen)
/// and, if any is pinned, write the sidecar into `dir` atomically (temporary
/// name, fsync, rename) at the path `register` gives (the dump's list of
/// outputs, removed if the dump fails). Otherwise a stale sidecar left in
/// `dir` by an earlier dump is removed. Returns the number of pinned threads.
pub fn dump(dir: &Path, tids: &[i32], register: impl FnOnce(&str) -> PathBuf) -> Result<usize, AffinityError> {
    let online = online_cpus()?;
    let mut masks = Vec::with_capacity(tids.len());
    for &tid in tids {
        masks.push((tid, thread_cpus(tid)?));
    }
    let side = pinned(&masks, &online);
    if side.threads.is_empty() {
        let stale = dir.join(FILE);
        match std::fs::remove_file(&stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(AffinityError::Io { path: stale, source: e })
            }
            _ => return Ok(0),
        }
    }
    let path = register(FILE);
    write_atomic(&path, to_json(&side).as_bytes())?;
    Ok(side.threads.len())
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), AffinityError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AffinityError::Io { path, source }
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        if let Some(d) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
            d.sync_all().map_err(io(path))?;
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Restore, validation: read and check the sidecar of `dir`, if any, against
/// the threads the restore will create (`tids`). Nothing exists yet.
pub fn load(dir: &Path, tids: &[i32]) -> Result<Option<Sidecar>, AffinityError> {
    let path = dir.join(FILE);
    let text = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(AffinityError::Io { path, source }),
    };
    let bad = |what: String| AffinityError::Bad {
        path: path.clone(),
        what,
    };
    let text = String::from_utf8(text).map_err(|_| bad("not UTF-8 text".into()))?;
    let side = parse(&text).map_err(bad)?;
    for tid in side.threads.keys() {
        if !tids.contains(tid) {
            return Err(bad(format!("thread {tid} is not a live thread of the image set")));
        }
    }
    Ok(Some(side))
}

/// Restore, once every thread exists: set each listed thread's affinity to
/// its dumped CPUs that are online now. Returns warnings for the threads
/// left with their default (none of their CPUs is online here, or the
/// kernel refused the mask, e.g. outside the cpuset of the cgroup).
pub fn apply(side: &Sidecar) -> Result<Vec<String>, AffinityError> {
    let online = online_cpus()?;
    let mut warnings = Vec::new();
    for (&tid, cpus) in &side.threads {
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
    fn cpulists_round_trip() {
        for (text, want) in [
            ("0", vec![0]),
            ("0-3,6", vec![0, 1, 2, 3, 6]),
            ("1,3,5-6", vec![1, 3, 5, 6]),
            ("0-1\n", vec![0, 1]),
        ] {
            let got = parse_cpulist(text).unwrap();
            assert_eq!(got, cpus(&want), "{text:?}");
            assert_eq!(format_cpulist(&got), text.trim());
        }
        assert_eq!(format_cpulist(&cpus(&[0, 1, 2, 4, 5, 7])), "0-2,4-5,7");
    }

    #[test]
    fn bad_cpulists_are_refused() {
        for bad in [
            "",
            "a",
            "1-",
            "-1",
            "3-1",
            "0,,1",
            "0-7:2/4",
            "+1",
            "1 ,2",
            "1024",
            "99999999999",
        ] {
            assert!(parse_cpulist(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sidecar_round_trips_and_lists_only_pinned_threads() {
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
        assert_eq!(side.threads.keys().copied().collect::<Vec<_>>(), vec![10, 11]);
        let text = to_json(&side);
        assert_eq!(parse(&text).unwrap(), side);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["threads"]["10"], "0");
        assert_eq!(v["threads"]["11"], "1");
    }

    #[test]
    fn bad_sidecars_name_what_is_wrong() {
        for (text, needle) in [
            ("{", "not valid JSON"),
            ("[]", "expected an object with `version` and `threads`"),
            (r#"{"threads": {}}"#, "missing field `version`"),
            (r#"{"version": 2, "threads": {}}"#, "version 2"),
            (r#"{"version": "1", "threads": {}}"#, "version \"1\""),
            (r#"{"version": 1}"#, "missing field `threads`"),
            (r#"{"version": 1, "threads": {}, "x": 1}"#, "unknown field `x`"),
            (
                r#"{"version": 1, "version": 1, "threads": {}}"#,
                "duplicate field `version`",
            ),
            (
                r#"{"version": 1, "threads": []}"#,
                "expected an object of thread id -> CPU list",
            ),
            (
                r#"{"version": 1, "threads": {"7": "0", "7": "1"}}"#,
                "thread `7` is listed twice",
            ),
            (r#"{"version": 1, "threads": {"abc": "0"}}"#, "thread `abc`"),
            (r#"{"version": 1, "threads": {"012": "0"}}"#, "thread `012`"),
            (r#"{"version": 1, "threads": {"-4": "0"}}"#, "thread `-4`"),
            (
                r#"{"version": 1, "threads": {"7": 3}}"#,
                "thread 7: the CPU list is not a string",
            ),
            (
                r#"{"version": 1, "threads": {"7": "2-1"}}"#,
                "thread 7: bad CPU list `2-1`",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
