//! cgroups: every task's membership (v1 hierarchies and the v2 one, as
//! `/proc/PID/cgroup` lists them), the cgroups under the tree's with their
//! controllers' settings, and the cgroup namespace's root — in CRIU 4.2's
//! `cgroup.img` (`CgroupEntry`: `sets`, `controllers` with `dirs` and
//! their `properties`) and each thread's `cg_set` in its core.
//!
//! - **dump** ([`dump`], tree frozen): cryo's own set is set 1 (inventory's
//!   `root_cg_set`, not written, as CRIU); every other distinct set of the
//!   tree's threads gets the next id. A tree wholly in cryo's set writes no
//!   cgroup.img (as CRIU). Unless the mode is `ignore`, each hierarchy a set
//!   uses is mounted (a detached instance, `sys::fs_instance`) and the
//!   subtree under the task's cgroup is walked: every directory with its
//!   permissions and the known properties of its controllers
//!   ([`props_of`]). With a cgroup namespace of its own, the part of each
//!   path above the namespace's root is `cgns_prefix`.
//! - **describe and check** ([`plan`], restore's validation): sets and
//!   controllers checked, `--cgroup-root` applied, every hierarchy mounted,
//!   each cgroup looked up and judged by the mode (criu's: `none` and `props`
//!   need it to exist, `soft`/`full`/`strict` create it, `strict` refuses an
//!   existing one; `props`/`full` write the settings of existing ones, `soft`
//!   only of those it created), v2 controllers checked available. Nothing
//!   exists yet.
//! - **restore**: [`CgPlan::make`] creates the missing cgroups (remembered,
//!   removed again by [`CgPlan::remove_created`] when the restore fails),
//!   writes the settings that must precede any task (cpuset, subtree_control
//!   …) and opens each set's `cgroup.procs`; each task writes itself into
//!   them right after its clone ([`Join`]), the root first entering its
//!   namespace's root and unsharing the cgroup namespace there. The other
//!   settings (limits) are written by [`CgPlan::apply_props`] once every task is
//!   in, before any runs.

use cryo_image::pb;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// criu's `--manage-cgroups` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Nothing at all: no cgroup is made, no task moved, nothing written.
    Ignore,
    /// Tasks join their cgroups, which must exist; nothing is written to them.
    None,
    /// Cgroups must exist; their settings are written.
    Props,
    /// Missing cgroups are created with their settings; existing ones are
    /// joined as they are (criu's default).
    #[default]
    Soft,
    /// Missing cgroups are created; every cgroup gets its settings.
    Full,
    /// Missing cgroups are created; an existing one refuses the restore.
    Strict,
}

impl Mode {
    /// criu's spellings (and rpc.proto's criu_cg_mode names, lowercased).
    pub fn parse(s: &str) -> Result<Mode, String> {
        Ok(match s {
            "ignore" => Mode::Ignore,
            "none" | "cg_none" => Mode::None,
            "props" => Mode::Props,
            "soft" | "default" | "" => Mode::Soft,
            "full" => Mode::Full,
            "strict" => Mode::Strict,
            _ => {
                return Err(format!(
                    "--manage-cgroups {s}: expected ignore, none, props, soft, full or strict"
                ))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Ignore => "ignore",
            Mode::None => "none",
            Mode::Props => "props",
            Mode::Soft => "soft",
            Mode::Full => "full",
            Mode::Strict => "strict",
        }
    }
}

/// A new root for cgroups (criu's `--cgroup-root [CONTROLLER:]PATH`, the
/// RPC's `cg_root`): `ctrl` None applies to every hierarchy without one of
/// its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root {
    pub ctrl: Option<String>,
    pub path: String,
}

impl Root {
    /// `[CONTROLLER:]PATH` as criu splits it (at the first ':').
    pub fn parse(s: &str) -> Result<Root, String> {
        let (ctrl, path) = match s.split_once(':') {
            Some((c, p)) => (Some(c.to_string()), p.to_string()),
            None => (None, s.to_string()),
        };
        if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
            return Err(format!("--cgroup-root {s}: the path must be absolute, without '..'"));
        }
        Ok(Root { ctrl, path })
    }
}

/// What the cgroup code of a dump or a restore is asked to do.
#[derive(Clone, Debug, Default)]
pub struct CgOpts {
    pub mode: Mode,
    pub roots: Vec<Root>,
    /// criu's --cgroup-yard: a directory where the caller mounted every
    /// hierarchy (named as criu names them: "cpu,cpuacct", "unified" for
    /// v2, "systemd" for name=systemd), used instead of cryo's own mounts.
    pub yard: Option<PathBuf>,
}

/// Why cgroups cannot be dumped or restored.
#[derive(Debug, thiserror::Error)]
pub enum CgError {
    #[error("pid {pid}: refusing to dump its cgroups: {what}")]
    Dump { pid: i32, what: String },
    #[error("{file}: {what} (refused before creating any task)")]
    Image { file: String, what: String },
    #[error("cgroups: {0} (refused before creating any task)")]
    Check(String),
    #[error("cgroups: {0}")]
    Restore(String),
}

/// One line of `/proc/PID/cgroup`: the hierarchy's controllers ("" for v2,
/// "cpu,cpuacct", "name=systemd") and the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub path: String,
    /// Length of the path's part above the cgroup namespace's root (0: none).
    pub cgns_prefix: u32,
}

/// `/proc/PID/cgroup` in the file's order.
pub fn parse_cgroup(text: &str) -> Result<Vec<Member>, String> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let mut it = l.splitn(3, ':');
        let (Some(_id), Some(name), Some(path)) = (it.next(), it.next(), it.next()) else {
            return Err(format!("line {}: {l:?} is not ID:CONTROLLERS:PATH", i + 1));
        };
        if !path.starts_with('/') {
            return Err(format!("line {}: path {path:?} is not absolute", i + 1));
        }
        out.push(Member {
            name: name.to_string(),
            path: path.to_string(),
            cgns_prefix: 0,
        });
    }
    Ok(out)
}

/// A set as CRIU keeps it: sorted by hierarchy name.
fn sorted(mut m: Vec<Member>) -> Vec<Member> {
    m.sort_by(|a, b| a.name.cmp(&b.name));
    m
}

/// Whether hierarchy `cnames` is the one named `name` in /proc/PID/cgroup
/// (every controller of it among the name's, or both v2).
pub fn contains(cnames: &[String], name: &str) -> bool {
    if cnames.len() == 1 && cnames[0].is_empty() {
        return name.is_empty();
    }
    !cnames.is_empty() && cnames.iter().all(|c| name.split(',').any(|t| t == c))
}

fn is_v2(cnames: &[String]) -> bool {
    cnames.len() == 1 && cnames[0].is_empty()
}

/// A detached mount of the hierarchy of `cnames` (or its directory in the yard).
fn mount_hierarchy(cnames: &[String], yard: Option<&std::path::Path>) -> std::io::Result<OwnedFd> {
    if let Some(y) = yard {
        let name: Vec<&str> = cnames
            .iter()
            .map(|c| match c.as_str() {
                "" => "unified",
                c => c.strip_prefix("name=").unwrap_or(c),
            })
            .collect();
        let d = y.join(name.join(","));
        return crate::sys::files::open(
            &d.display().to_string(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
    }
    if is_v2(cnames) {
        return crate::sys::fs_instance("cgroup2", &[], &[]);
    }
    let flags: Vec<&str> = cnames
        .iter()
        .filter(|c| !c.starts_with("name="))
        .map(|c| c.as_str())
        .collect();
    let names: Vec<(&str, &str)> = cnames
        .iter()
        .filter_map(|c| c.strip_prefix("name="))
        .map(|n| ("name", n))
        .collect();
    crate::sys::fs_instance("cgroup", &flags, &names)
}

fn hier_name(cnames: &[String]) -> String {
    if is_v2(cnames) {
        "cgroup2".into()
    } else {
        cnames.join(",")
    }
}

/// `rel` (a cgroup path, "/" or "" for the root) under the mount `fd`.
fn under(fd: &OwnedFd, rel: &str) -> PathBuf {
    let rel = rel.trim_matches('/');
    if rel.is_empty() {
        PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    } else {
        PathBuf::from(format!("/proc/self/fd/{}/{rel}", fd.as_raw_fd()))
    }
}

fn join_path(a: &str, b: &str) -> String {
    let a = a.trim_end_matches('/');
    let b = b.trim_start_matches('/');
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a.to_string(),
        (true, false) => b.to_string(),
        _ => format!("{a}/{b}"),
    }
}

// ---- the properties ----

/// The properties dumped for a v1 controller (CRIU's built-in lists; the
/// order is the order of the writes at restore: limit before memsw limit).
pub fn props_of(ctrl: &str) -> &'static [&'static str] {
    match ctrl {
        "cpu" => &[
            "cpu.shares",
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us",
            "cpu.rt_period_us",
            "cpu.rt_runtime_us",
        ],
        "memory" => &[
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.swappiness",
            "memory.soft_limit_in_bytes",
            "memory.move_charge_at_immigrate",
            "memory.oom_control",
            "memory.use_hierarchy",
            "memory.kmem.limit_in_bytes",
            "memory.kmem.tcp.limit_in_bytes",
        ],
        "cpuset" => &[
            "cpuset.cpus",
            "cpuset.mems",
            "cpuset.memory_migrate",
            "cpuset.cpu_exclusive",
            "cpuset.mem_exclusive",
            "cpuset.mem_hardwall",
            "cpuset.memory_spread_page",
            "cpuset.memory_spread_slab",
            "cpuset.sched_load_balance",
            "cpuset.sched_relax_domain_level",
        ],
        "blkio" => &["blkio.weight"],
        "net_cls" => &["net_cls.classid"],
        "net_prio" => &["net_prio.ifpriomap"],
        "pids" => &["pids.max"],
        "devices" => &["devices.list"],
        _ => &[],
    }
}

const V1_GLOBAL: &[&str] = &["cgroup.clone_children", "notify_on_release", "cgroup.procs", "tasks"];
const V2_GLOBAL: &[&str] = &[
    "cgroup.subtree_control",
    "cgroup.max.descendants",
    "cgroup.max.depth",
    "cgroup.freeze",
    "cgroup.type",
];
/// The v2 controllers' settings cryo dumps (CRIU 4.2 has no v2 list; its
/// restore writes whatever properties the image holds).
const V2_CTRL: &[&str] = &[
    "cpu.weight",
    "cpu.max",
    "cpuset.cpus",
    "cpuset.mems",
    "memory.min",
    "memory.low",
    "memory.high",
    "memory.max",
    "memory.swap.max",
    "memory.oom.group",
    "pids.max",
    "io.weight",
    "io.max",
];

/// Written as soon as the cgroup is made, before any child cgroup or task
/// (criu's special properties, plus v2's subtree_control, which must
/// precede the children's controller files and cannot change once tasks are in).
fn is_special(name: &str) -> bool {
    matches!(
        name,
        "cpuset.cpus"
            | "cpuset.mems"
            | "devices.list"
            | "memory.kmem.limit_in_bytes"
            | "memory.swappiness"
            | "memory.oom_control"
            | "memory.use_hierarchy"
            | "cgroup.type"
            | "cgroup.subtree_control"
    )
}

/// A value as CRIU stores it: without its trailing newline, "-1" for a
/// number at or past i64::MAX, the oom_kill_disable flag of memory.oom_control.
fn prop_value(name: &str, raw: &str) -> Result<String, String> {
    let v = raw.strip_suffix('\n').unwrap_or(raw);
    if name == "memory.oom_control" {
        let d = v
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill_disable "))
            .and_then(|n| n.trim().parse::<i64>().ok())
            .ok_or_else(|| format!("memory.oom_control: no oom_kill_disable in {v:?}"))?;
        return Ok(d.to_string());
    }
    let t = v.trim_start();
    let digits: String = t
        .char_indices()
        .take_while(|&(i, c)| c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+')))
        .map(|(_, c)| c)
        .collect();
    if digits.parse::<i128>().is_ok_and(|n| n >= i64::MAX as i128) {
        return Ok("-1".into());
    }
    Ok(v.to_string())
}

fn perms_of(m: &std::fs::Metadata) -> pb::CgroupPerms {
    use std::os::unix::fs::MetadataExt;
    pb::CgroupPerms {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
    }
}

/// The known properties of one cgroup directory of hierarchy `cnames`.
fn read_props(dir: &std::path::Path, cnames: &[String]) -> Result<Vec<pb::CgroupPropEntry>, String> {
    let mut names: Vec<&str> = Vec::new();
    if is_v2(cnames) {
        names.extend(V2_CTRL);
        names.extend(V2_GLOBAL);
    } else {
        for c in cnames {
            names.extend(props_of(c));
        }
        names.extend(V1_GLOBAL);
    }
    let mut out = Vec::new();
    for n in names {
        let p = dir.join(n);
        let Ok(m) = std::fs::metadata(&p) else {
            continue; // not on this kernel, or the controller is not enabled here
        };
        let value = if n == "cgroup.procs" || n == "tasks" {
            String::new()
        } else {
            match std::fs::read_to_string(&p) {
                Ok(s) => prop_value(n, &s)?,
                // Deprecated files (memory.kmem.*) that exist but cannot be read.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOENT)) => continue,
                Err(e) => return Err(format!("{}: {e}", p.display())),
            }
        };
        out.push(pb::CgroupPropEntry {
            name: n.to_string(),
            value,
            perms: Some(perms_of(&m)),
        });
    }
    Ok(out)
}

// ---- dump ----

/// What the dump writes: cgroup.img (None: the whole tree is in cryo's
/// cgroups) and each thread's set.
#[derive(Debug, Default)]
pub struct CgDump {
    pub entry: Option<pb::CgroupEntry>,
    pub by_tid: HashMap<i32, u32>,
}

impl CgDump {
    /// The cg_set of a thread's core (cryo's own set, 1, when unknown).
    pub fn set_of(&self, tid: i32) -> u32 {
        self.by_tid.get(&tid).copied().unwrap_or(1)
    }
}

/// A hierarchy being dumped: its controllers and every cgroup walked,
/// by path (relative, "" for the root).
struct DumpHier {
    cnames: Vec<String>,
    threaded: bool,
    dirs: BTreeMap<String, pb::CgroupDirEntry>,
}

/// Read the cgroups of the tree's threads (`tasks`: pid and its tids, the
/// tree frozen). `own_cgns`: the tree's root is in a cgroup namespace of
/// its own.
pub fn dump(tasks: &[(i32, Vec<i32>)], opts: &CgOpts, own_cgns: bool) -> Result<CgDump, CgError> {
    let derr = |pid: i32, what: String| CgError::Dump { pid, what };
    let me = std::process::id() as i32;
    let read = |pid: i32, path: &str| -> Result<Vec<Member>, CgError> {
        let s = std::fs::read_to_string(path).map_err(|e| derr(pid, format!("{path}: {e}")))?;
        parse_cgroup(&s).map_err(|e| derr(pid, format!("{path}: {e}")))
    };
    let mine_raw = read(me, "/proc/self/cgroup")?;
    // The hierarchies: cryo's, in its /proc/self/cgroup order, without the
    // named ones (added when a set uses them).
    let mut hiers: Vec<DumpHier> = Vec::new();
    for m in &mine_raw {
        let cnames: Vec<String> = if m.name.is_empty() {
            vec![String::new()]
        } else {
            m.name
                .split(',')
                .filter(|c| !c.starts_with("name="))
                .map(String::from)
                .collect()
        };
        if !cnames.is_empty() {
            hiers.push(DumpHier {
                cnames,
                threaded: false,
                dirs: BTreeMap::new(),
            });
        }
    }
    let mut sets: Vec<(u32, Vec<Member>)> = vec![(1, sorted(mine_raw))];
    // The cgroup namespace's root, per hierarchy: the path the root task
    // has from outside minus the one it sees inside.
    let mut prefix: HashMap<String, u32> = HashMap::new();
    if let (true, Some((root, _))) = (own_cgns, tasks.first()) {
        let root = *root;
        let outside = read(root, &format!("/proc/{root}/cgroup"))?;
        let inside = crate::state::ns::in_cgroupns(root, || {
            std::fs::read_to_string(format!("/proc/{root}/cgroup")).map_err(|e| e.to_string())
        })
        .map_err(|e| derr(root, e.to_string()))?;
        let inside = parse_cgroup(&inside).map_err(|e| derr(root, format!("/proc/{root}/cgroup inside: {e}")))?;
        for i in &inside {
            let Some(o) = outside.iter().find(|o| o.name == i.name) else {
                continue;
            };
            if o.path == i.path {
                continue;
            }
            let tail = &i.path[1..];
            if !o.path.ends_with(tail) {
                return Err(derr(
                    root,
                    format!(
                        "hierarchy {:?}: its cgroup {} inside its cgroup namespace is not a suffix of {}",
                        i.name, i.path, o.path
                    ),
                ));
            }
            let mut n = o.path.len() - tail.len();
            if n > 0 && o.path.as_bytes()[n - 1] == b'/' {
                n -= 1;
            }
            prefix.insert(i.name.clone(), n as u32);
        }
    }
    let mut by_tid = HashMap::new();
    for (pid, tids) in tasks {
        let mut leader_set = None;
        for &tid in tids {
            let mut ms = sorted(read(*pid, &format!("/proc/{pid}/task/{tid}/cgroup"))?);
            for m in &mut ms {
                if let Some(&n) = prefix.get(&m.name) {
                    if m.path.len() < n as usize {
                        return Err(derr(
                            *pid,
                            format!(
                                "its cgroup {} ({:?}) is above its cgroup namespace's root",
                                m.path, m.name
                            ),
                        ));
                    }
                    m.cgns_prefix = n;
                }
            }
            let id = match sets.iter().find(|(_, s)| *s == ms) {
                Some((id, _)) => *id,
                None => {
                    let id = sets.len() as u32 + 1;
                    sets.push((id, ms));
                    id
                }
            };
            match leader_set {
                None => leader_set = Some(id),
                Some(l) if l != id => {
                    return Err(derr(
                        *pid,
                        format!(
                            "thread {tid} is in cgroups other than its process's (set {id}, not {l}): not supported"
                        ),
                    ))
                }
                _ => {}
            }
            by_tid.insert(tid, id);
        }
    }
    if sets.len() == 1 {
        return Ok(CgDump { entry: None, by_tid });
    }
    for (_, set) in sets.iter().skip(1) {
        for m in set {
            let h = match hiers.iter().position(|h| contains(&h.cnames, &m.name)) {
                Some(h) => h,
                None if m.name.starts_with("name=") => {
                    hiers.push(DumpHier {
                        cnames: vec![m.name.clone()],
                        threaded: false,
                        dirs: BTreeMap::new(),
                    });
                    hiers.len() - 1
                }
                None => return Err(derr(tasks[0].0, format!("hierarchy {:?} is not one of cryo's", m.name))),
            };
            // Where the tree shares cryo's cgroup it has none of its own
            // there: nothing to walk (criu walks it, and so dumps every
            // cgroup of a hierarchy whose root both are in).
            let mine = sets[0].1.iter().any(|c| c.name == m.name && c.path == m.path);
            if opts.mode == Mode::Ignore || (mine && opts.roots.is_empty()) {
                continue;
            }
            let root = opts
                .roots
                .iter()
                .find(|r| r.ctrl.as_deref() == Some(m.name.as_str()))
                .or_else(|| opts.roots.iter().find(|r| r.ctrl.is_none()))
                .map_or(m.path.as_str(), |r| r.path.as_str());
            walk(&mut hiers[h], root, opts.yard.as_deref()).map_err(|e| derr(tasks[0].0, e))?;
        }
    }
    let entry = pb::CgroupEntry {
        sets: sets
            .iter()
            .skip(1)
            .map(|(id, ms)| pb::CgSetEntry {
                id: *id,
                ctls: ms
                    .iter()
                    .map(|m| pb::CgMemberEntry {
                        name: m.name.clone(),
                        path: m.path.clone(),
                        cgns_prefix: (m.cgns_prefix > 0).then_some(m.cgns_prefix),
                    })
                    .collect(),
            })
            .collect(),
        controllers: hiers.into_iter().map(controller_entry).collect(),
    };
    Ok(CgDump {
        entry: Some(entry),
        by_tid,
    })
}

/// criu's --freeze-cgroup: cryo freezes with ptrace, but the caller names the
/// cgroup that holds the whole tree; a task in it that is not in the tree
/// (`pids`) would be left out of the dump, so it is refused.
pub fn check_freeze_cgroup(path: &std::path::Path, pids: &[i32]) -> Result<(), CgError> {
    let root = pids.first().copied().unwrap_or(0);
    let procs = path.join("cgroup.procs");
    let s = std::fs::read_to_string(&procs).map_err(|e| CgError::Dump {
        pid: root,
        what: format!("--freeze-cgroup {}: {e}", procs.display()),
    })?;
    // Under a pid namespace of cryo's own the file shows pids as cryo sees them.
    // A task that was exiting when the freeze came is not seized (nor dumped) yet
    // stays listed until it is reaped: gone by now, or dead (state Z or X), it is
    // not a task left out.
    let exited = |p: i32| {
        std::fs::read_to_string(format!("/proc/{p}/stat")).map_or(true, |st| {
            st.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "Z" || state == "X")
        })
    };
    for p in s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
        if !pids.contains(&p) && !exited(p) {
            return Err(CgError::Dump {
                pid: root,
                what: format!(
                    "pid {p} is in the freezer cgroup {} but not in the tree: it would not be dumped",
                    path.display()
                ),
            });
        }
    }
    Ok(())
}

/// Walk the cgroups under `root` (absolute) of hierarchy `h`.
fn walk(h: &mut DumpHier, root: &str, yard: Option<&std::path::Path>) -> Result<(), String> {
    let fd =
        mount_hierarchy(&h.cnames, yard).map_err(|e| format!("mounting hierarchy {}: {e}", hier_name(&h.cnames)))?;
    let start = root.trim_matches('/').to_string();
    let mut todo = vec![start.clone()];
    while let Some(rel) = todo.pop() {
        let dir = under(&fd, &rel);
        // A cgroup below the start that goes away meanwhile (not the tree's:
        // its tasks are frozen in theirs) is left out.
        let gone = |e: &std::io::Error| rel != start && e.kind() == std::io::ErrorKind::NotFound;
        let m = match std::fs::metadata(&dir) {
            Ok(m) => m,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(format!("cgroup /{rel} of {}: {e}", hier_name(&h.cnames))),
        };
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(format!("cgroup /{rel} of {}: {e}", hier_name(&h.cnames))),
        };
        let mut sub = Vec::new();
        for e in rd {
            let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                sub.push(join_path(&rel, &e.file_name().to_string_lossy()));
            }
        }
        if h.dirs.contains_key(&rel) {
            continue;
        }
        let props = match read_props(&dir, &h.cnames) {
            Ok(p) => p,
            Err(_) if rel != start && !dir.exists() => continue,
            Err(e) => return Err(e),
        };
        if props
            .iter()
            .any(|p| (p.name == "cgroup.type" && p.value == "threaded") || p.name == "tasks")
        {
            h.threaded = true;
        }
        h.dirs.insert(
            rel,
            pb::CgroupDirEntry {
                dir_name: String::new(),
                children: Vec::new(),
                properties: props,
                dir_perms: Some(perms_of(&m)),
            },
        );
        sub.sort();
        todo.extend(sub.into_iter().rev());
    }
    Ok(())
}

fn parent_of(p: &str) -> Option<&str> {
    if p.is_empty() {
        return None;
    }
    Some(p.rsplit_once('/').map_or("", |(a, _)| a))
}

/// The walked cgroups as CRIU nests them: heads (no walked parent) named by
/// their path, children by their name.
fn controller_entry(h: DumpHier) -> pb::CgControllerEntry {
    fn build(path: &str, dirs: &BTreeMap<String, pb::CgroupDirEntry>, head: bool) -> pb::CgroupDirEntry {
        let mut d = dirs[path].clone();
        d.dir_name = if head {
            path.to_string()
        } else {
            path.rsplit('/').next().unwrap_or(path).to_string()
        };
        d.children = dirs
            .keys()
            .filter(|k| parent_of(k) == Some(path) && k.as_str() != path)
            .map(|k| build(k, dirs, false))
            .collect();
        d
    }
    let heads: Vec<&String> = h
        .dirs
        .keys()
        .filter(|k| parent_of(k).is_none_or(|p| !h.dirs.contains_key(p)))
        .collect();
    pb::CgControllerEntry {
        cnames: h.cnames.clone(),
        dirs: heads.into_iter().map(|k| build(k, &h.dirs, true)).collect(),
        is_threaded: Some(h.threaded),
    }
}

// ---- restore ----

/// One cgroup of the restore, top-down in its hierarchy.
#[derive(Debug)]
struct PlanDir {
    /// Relative to the hierarchy's root ("" is the root).
    path: String,
    perms: Option<pb::CgroupPerms>,
    props: Vec<pb::CgroupPropEntry>,
    /// It is not there: the restore makes it (mkdir -p: also the parents
    /// missing, which the image does not list).
    create: bool,
    /// Its settings are written (made here, or the mode says so).
    write_props: bool,
    /// Its permissions are set (not in mode none).
    write_perms: bool,
    /// v2 controllers to enable in its subtree_control for the cgroups
    /// below it (a parent the image does not list, or one whose value does
    /// not name them).
    enable: BTreeSet<String>,
}

#[derive(Debug)]
struct Hier {
    cnames: Vec<String>,
    fd: OwnedFd,
    dirs: Vec<PlanDir>,
}

/// The cgroups of a restore, checked against this machine.
#[derive(Debug)]
pub struct CgPlan {
    mode: Mode,
    hiers: Vec<Hier>,
    /// The sets the tasks use, their paths after --cgroup-root.
    sets: BTreeMap<u32, Vec<Member>>,
    /// inventory's root_cg_set: the dumper's own set (a task in it joins
    /// the restoring cryo's cgroups).
    root_set: u32,
    /// The root task's set, when it has a cgroup namespace of its own.
    cgns: Option<u32>,
    /// Cgroups made so far (hierarchy, path), in the order made.
    created: Vec<(usize, String)>,
}

/// Where each task of the restore writes itself (fds open in the engine,
/// inherited by the tasks).
#[derive(Debug, Default)]
pub struct Join {
    /// Per set: each hierarchy's cgroup.procs.
    pub sets: HashMap<u32, Vec<RawFd>>,
    /// The root, in a cgroup namespace of its own: the cgroup.procs of the
    /// namespace's root in each hierarchy (entered before the unshare).
    pub cgns: Vec<RawFd>,
    /// The set of tasks that stay where cryo is (inventory's root_cg_set).
    pub root_set: u32,
}

impl Join {
    /// In a task right after its clone: join `set`, unless it is the set
    /// of `forker_set` (the task that forked it, already there).
    pub fn enter(&self, set: u32, forker_set: Option<u32>, cgns: bool) -> Result<(), String> {
        if cgns {
            for &fd in &self.cgns {
                write_self(fd).map_err(|e| format!("joining its cgroup namespace's root: {e}"))?;
            }
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| format!("unshare(CLONE_NEWCGROUP): {e}"))?;
        } else if set == 0 || Some(set) == forker_set || (forker_set.is_none() && set == self.root_set) {
            return Ok(());
        }
        if let Some(fds) = self.sets.get(&set) {
            for &fd in fds {
                write_self(fd).map_err(|e| format!("joining its cgroups (set {set}): {e}"))?;
            }
        }
        Ok(())
    }
}

fn write_self(fd: RawFd) -> std::io::Result<()> {
    // The fd is one of the engine's, open until the tasks are restored.
    match crate::sys::restore::write_fd(fd, b"0")? {
        1 => Ok(()),
        _ => Err(std::io::Error::other("short write")),
    }
}

/// Check the images' cgroups against this machine and the mode (nothing is
/// made). `used`: the set of every restored task; `root_cgns`: the root
/// task's set when the tree has a cgroup namespace of its own. None: there
/// is nothing to do (mode ignore, or no cgroup.img).
pub fn plan(
    img: Option<&pb::CgroupEntry>,
    file: &str,
    root_set: u32,
    used: &[(i32, u32)],
    root_cgns: Option<u32>,
    opts: &CgOpts,
) -> Result<Option<CgPlan>, CgError> {
    let ierr = |what: String| CgError::Image {
        file: file.to_string(),
        what,
    };
    let Some(img) = img else {
        if let Some(&(pid, s)) = used.iter().find(|(_, s)| *s != 0 && *s != root_set) {
            return Err(ierr(format!(
                "pid {pid} is in cgroup set {s}, but the set has no cgroup.img"
            )));
        }
        return Ok(None);
    };
    if opts.mode == Mode::Ignore {
        return Ok(None);
    }
    let mut img = img.clone();
    rewrite_roots(&mut img, &opts.roots);
    let mut sets = BTreeMap::new();
    for s in &img.sets {
        let mut ms = Vec::new();
        for m in &s.ctls {
            check_path(&m.path).map_err(|e| ierr(format!("set {}: {e}", s.id)))?;
            if m.cgns_prefix.unwrap_or(0) as usize > m.path.len() {
                return Err(ierr(format!(
                    "set {}: {:?}: cgns_prefix {} is longer than its path {}",
                    s.id,
                    m.name,
                    m.cgns_prefix.unwrap_or(0),
                    m.path
                )));
            }
            ms.push(Member {
                name: m.name.clone(),
                path: m.path.clone(),
                cgns_prefix: m.cgns_prefix.unwrap_or(0),
            });
        }
        if sets.insert(s.id, ms).is_some() {
            return Err(ierr(format!("set {} is listed twice", s.id)));
        }
    }
    let mut needed: BTreeSet<u32> = BTreeSet::new();
    for &(pid, s) in used {
        if s == 0 || s == root_set {
            continue;
        }
        if !sets.contains_key(&s) {
            return Err(ierr(format!(
                "pid {pid} is in cgroup set {s}, which is not in the image"
            )));
        }
        needed.insert(s);
    }
    sets.retain(|id, _| needed.contains(id));
    // Every hierarchy the image lists, mounted: one missing here (a
    // controller this kernel lacks or has elsewhere) refuses the restore.
    let mut hiers = Vec::new();
    for c in &img.controllers {
        if c.cnames.is_empty() {
            return Err(ierr("a controller entry without controllers".into()));
        }
        let used_here = sets.values().flatten().any(|m| contains(&c.cnames, &m.name));
        if !used_here && c.dirs.is_empty() {
            continue;
        }
        let fd = mount_hierarchy(&c.cnames, opts.yard.as_deref()).map_err(|e| {
            CgError::Check(format!(
                "hierarchy {} is not available on this machine (mounting it: {e})",
                hier_name(&c.cnames)
            ))
        })?;
        let mut dirs = Vec::new();
        for d in &c.dirs {
            flatten(d, "", true, &mut dirs).map_err(&ierr)?;
        }
        hiers.push(Hier {
            cnames: c.cnames.clone(),
            fd,
            dirs,
        });
    }
    for (id, ms) in &sets {
        for m in ms {
            let Some(h) = hiers.iter_mut().find(|h| contains(&h.cnames, &m.name)) else {
                return Err(ierr(format!(
                    "set {id}: hierarchy {:?} has no controller entry",
                    m.name
                )));
            };
            // A set's cgroup the image does not list (dumped with ignore):
            // made too, without settings.
            let rel = m.path.trim_matches('/').to_string();
            if !h.dirs.iter().any(|d| d.path == rel) {
                h.dirs.push(PlanDir {
                    path: rel,
                    perms: None,
                    props: Vec::new(),
                    create: false,
                    write_props: false,
                    write_perms: false,
                    enable: BTreeSet::new(),
                });
            }
        }
    }
    let mode = opts.mode;
    for h in &mut hiers {
        judge(h, mode)?;
    }
    Ok(Some(CgPlan {
        mode,
        hiers,
        sets,
        root_set,
        cgns: root_cgns.filter(|s| *s != 0 && *s != root_set),
        created: Vec::new(),
    }))
}

fn check_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') || p.split('/').any(|c| c == ".." || c == ".") || p.contains('\0') {
        return Err(format!("cgroup path {p:?} is not a clean absolute path"));
    }
    Ok(())
}

/// criu's --cgroup-root: each head cgroup of a hierarchy with a new root
/// becomes that root, and the sets' paths under it move with it.
fn rewrite_roots(img: &mut pb::CgroupEntry, roots: &[Root]) {
    if roots.is_empty() {
        return;
    }
    for c in &mut img.controllers {
        let newroot = roots
            .iter()
            .filter_map(|r| {
                let ctrl = r.ctrl.as_deref()?;
                let hit = if is_v2(&c.cnames) {
                    ctrl.is_empty()
                } else {
                    c.cnames.iter().any(|n| ctrl.split(',').any(|t| t == n))
                };
                hit.then_some(&r.path)
            })
            .next()
            .or_else(|| roots.iter().find(|r| r.ctrl.is_none()).map(|r| &r.path));
        let Some(newroot) = newroot else { continue };
        let newrel = newroot.trim_matches('/').to_string();
        for d in &mut c.dirs {
            let old = d.dir_name.trim_matches('/').to_string();
            let mut renamed = None;
            for s in &mut img.sets {
                for m in &mut s.ctls {
                    if !contains(&c.cnames, &m.name) {
                        continue;
                    }
                    let rel = m.path.trim_start_matches('/');
                    let below = if old.is_empty() {
                        Some(rel)
                    } else if rel == old {
                        Some("")
                    } else {
                        rel.strip_prefix(&format!("{old}/"))
                    };
                    let Some(rest) = below else { continue };
                    match m.cgns_prefix.filter(|&n| n > 0) {
                        Some(n) => {
                            // Below the namespace's root: kept; the root moves.
                            let keep = m.path[n as usize..].to_string();
                            m.path = format!("/{}", join_path(&newrel, &keep));
                            m.cgns_prefix = Some(newroot.trim_end_matches('/').len() as u32);
                            if renamed.is_none() {
                                let head_below = old.get((n as usize).saturating_sub(1)..).unwrap_or("");
                                renamed = Some(join_path(&newrel, head_below));
                            }
                        }
                        None => {
                            m.path = format!("/{}", join_path(&newrel, rest));
                            renamed.get_or_insert_with(|| newrel.clone());
                        }
                    }
                }
            }
            d.dir_name = renamed.unwrap_or_else(|| newrel.clone());
            if old.is_empty() {
                // A hierarchy's root holds settings only a root has
                // (cpu_exclusive, all CPUs): the new cgroup gets none of them.
                d.properties.clear();
            }
        }
    }
}

/// The image's cgroups of one head, top-down, with their full paths.
fn flatten(d: &pb::CgroupDirEntry, parent: &str, head: bool, out: &mut Vec<PlanDir>) -> Result<(), String> {
    let name = if head {
        d.dir_name.trim_matches('/')
    } else {
        d.dir_name.as_str()
    };
    if (!head && (name.is_empty() || name.contains('/'))) || name.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!(
            "cgroup {:?} under {parent:?}: not a valid cgroup name",
            d.dir_name
        ));
    }
    let path = join_path(parent, name);
    for p in &d.properties {
        if p.name.contains('/') || p.name.starts_with('.') {
            return Err(format!("cgroup {path:?}: property {:?} is not a file name", p.name));
        }
    }
    out.push(PlanDir {
        path: path.clone(),
        perms: d.dir_perms,
        props: d.properties.clone(),
        create: false,
        write_props: false,
        write_perms: false,
        enable: BTreeSet::new(),
    });
    for c in &d.children {
        flatten(c, &path, false, out)?;
    }
    Ok(())
}

/// Look every cgroup of a hierarchy up and decide what the restore does
/// with it (criu's rules per mode); refuse what cannot be done here.
fn judge(h: &mut Hier, mode: Mode) -> Result<(), CgError> {
    let hn = hier_name(&h.cnames);
    let cerr = |what: String| CgError::Check(what);
    // Parents the image does not list, to be made too (mkdir -p).
    let mut extra: Vec<PlanDir> = Vec::new();
    for d in &h.dirs {
        let mut p = parent_of(&d.path);
        while let Some(pp) = p {
            if pp.is_empty() || h.dirs.iter().any(|x| x.path == pp) || extra.iter().any(|x| x.path == pp) {
                break;
            }
            if !under(&h.fd, pp).is_dir() {
                extra.push(PlanDir {
                    path: pp.to_string(),
                    perms: None,
                    props: Vec::new(),
                    create: false,
                    write_props: false,
                    write_perms: false,
                    enable: BTreeSet::new(),
                });
            }
            p = parent_of(pp);
        }
    }
    h.dirs.extend(extra);
    // Top-down: a parent before its children.
    h.dirs.sort_by(|a, b| {
        let depth = |p: &str| if p.is_empty() { 0 } else { p.split('/').count() };
        depth(&a.path).cmp(&depth(&b.path)).then(a.path.cmp(&b.path))
    });
    for d in &mut h.dirs {
        let at = under(&h.fd, &d.path);
        let exists = at.is_dir();
        let shown = format!("{hn}:/{}", d.path);
        if d.path.is_empty() {
            // The root of a hierarchy: joined, never written (as criu).
            continue;
        }
        if exists {
            if mode == Mode::Strict {
                return Err(cerr(format!(
                    "cgroup {shown} exists already (--manage-cgroups=strict restores only into cgroups it creates)"
                )));
            }
            d.write_props = matches!(mode, Mode::Props | Mode::Full);
            d.write_perms = mode != Mode::None;
        } else {
            if matches!(mode, Mode::None | Mode::Props) {
                return Err(cerr(format!(
                    "cgroup {shown} does not exist (--manage-cgroups={} restores only into existing cgroups)",
                    mode.name()
                )));
            }
            d.create = true;
            d.write_props = true;
            d.write_perms = true;
        }
    }
    // What each cgroup to be made or written needs from this machine.
    let snapshot: Vec<(String, bool, bool, Vec<String>)> = h
        .dirs
        .iter()
        .map(|d| {
            (
                d.path.clone(),
                d.create,
                d.write_props,
                d.props
                    .iter()
                    .find(|p| p.name == "cgroup.subtree_control")
                    .map(|p| p.value.split_whitespace().map(String::from).collect())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let v2 = is_v2(&h.cnames);
    let mut enable: Vec<(String, String)> = Vec::new();
    for d in &h.dirs {
        if !d.write_props {
            continue;
        }
        let shown = format!("{hn}:/{}", d.path);
        if !d.create {
            // Its files must be there.
            for p in &d.props {
                let f = under(&h.fd, &d.path).join(&p.name);
                if !f.exists() && p.name != "cgroup.type" {
                    return Err(cerr(format!("cgroup {shown}: {} is not there on this machine", p.name)));
                }
            }
        }
        if !v2 {
            continue;
        }
        // A v2 controller's file exists where the parent enables it:
        // available at the nearest existing ancestor, enabled by each
        // parent on the way (made here, or written from the image, or
        // enabled already).
        let ctrls: BTreeSet<&str> = d
            .props
            .iter()
            .filter_map(|p| p.name.split_once('.').map(|(c, _)| c))
            .filter(|c| *c != "cgroup")
            .collect();
        for c in ctrls {
            let mut p = parent_of(&d.path);
            while let Some(pp) = p {
                let made = snapshot.iter().find(|s| s.0 == pp);
                match made {
                    Some((_, true, _, sc)) | Some((_, false, true, sc)) if sc.iter().any(|x| x == c) => {}
                    Some((_, true, _, _)) => enable.push((pp.to_string(), c.to_string())),
                    _ => {
                        let dir = under(&h.fd, pp);
                        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
                        if !read("cgroup.controllers").split_whitespace().any(|x| x == c) {
                            return Err(cerr(format!(
                                "cgroup {shown}: controller {c} is not available in {hn}:/{pp} on this machine"
                            )));
                        }
                        if !read("cgroup.subtree_control").split_whitespace().any(|x| x == c) {
                            if pp.is_empty() || made.is_some() {
                                return Err(cerr(format!(
                                    "cgroup {shown}: controller {c} is not enabled in {hn}:/{pp}'s cgroup.subtree_control \
                                     (enable it, or restore with --manage-cgroups=full)"
                                )));
                            }
                            enable.push((pp.to_string(), c.to_string()));
                        }
                        break;
                    }
                }
                if made.is_some_and(|m| !m.1) {
                    break;
                }
                p = parent_of(pp);
            }
        }
    }
    for (path, c) in enable {
        if let Some(d) = h.dirs.iter_mut().find(|d| d.path == path) {
            d.enable.insert(c);
        } else {
            return Err(cerr(format!(
                "cgroup {hn}:/{path}: controller {c} must be enabled in its cgroup.subtree_control, which the restore does not write"
            )));
        }
    }
    // Write access where the restore writes.
    for d in &h.dirs {
        let at = if d.create {
            let mut p = parent_of(&d.path);
            while let Some(pp) = p {
                if under(&h.fd, pp).is_dir() {
                    break;
                }
                p = parent_of(pp);
            }
            under(&h.fd, p.unwrap_or(""))
        } else {
            under(&h.fd, &d.path).join("cgroup.procs")
        };
        if nix::unistd::access(&at, nix::unistd::AccessFlags::W_OK).is_err() {
            return Err(cerr(format!(
                "{hn}:/{}: no permission to write {}",
                d.path,
                if d.create { "its parent" } else { "cgroup.procs" }
            )));
        }
    }
    Ok(())
}

impl CgPlan {
    /// Make the missing cgroups with their permissions and early settings,
    /// and open every set's cgroup.procs. What is made is remembered (see
    /// [`CgPlan::remove_created`]). Returns the fds: per set (for
    /// [`Join::sets`]) and the cgroup namespace's roots (for [`Join::cgns`]).
    #[allow(clippy::type_complexity)]
    pub fn make(&mut self) -> Result<(HashMap<u32, Vec<OwnedFd>>, Vec<OwnedFd>), CgError> {
        let rerr = |w: String| CgError::Restore(w);
        for hi in 0..self.hiers.len() {
            let h = &self.hiers[hi];
            let hn = hier_name(&h.cnames);
            let mut made = Vec::new();
            for d in &h.dirs {
                let at = under(&h.fd, &d.path);
                if d.create {
                    match std::fs::create_dir(&at) {
                        Ok(()) => {
                            made.push(d.path.clone());
                            // A new v1 cpuset has no CPUs or memory nodes (no task
                            // may join it): its parent's, until the image's are written.
                            if let Some(parent) = at.parent() {
                                for f in ["cpuset.cpus", "cpuset.mems"] {
                                    let empty = std::fs::read_to_string(at.join(f)).is_ok_and(|v| v.trim().is_empty());
                                    if empty && !is_v2(&h.cnames) {
                                        let v = std::fs::read_to_string(parent.join(f)).unwrap_or_default();
                                        let _ = std::fs::write(at.join(f), v.trim());
                                    }
                                }
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => {
                            self.created.extend(made.into_iter().map(|p| (hi, p)));
                            return Err(rerr(format!("creating cgroup {hn}:/{}: {e}", d.path)));
                        }
                    }
                }
                let r = (|| {
                    if d.write_perms {
                        if let Some(p) = &d.perms {
                            set_perms(&at, p)?;
                        }
                    }
                    if d.write_props {
                        for p in d.props.iter().filter(|p| is_special(&p.name)) {
                            write_prop(&at, p, &d.enable)?;
                        }
                    }
                    let written = d.write_props && d.props.iter().any(|p| p.name == "cgroup.subtree_control");
                    if !d.enable.is_empty() && !written {
                        let want: Vec<String> = d.enable.iter().map(|c| format!("+{c}")).collect();
                        std::fs::write(at.join("cgroup.subtree_control"), want.join(" "))
                            .map_err(|e| format!("cgroup.subtree_control {}: {e}", want.join(" ")))?;
                    }
                    Ok::<(), String>(())
                })();
                if let Err(e) = r {
                    self.created.extend(made.into_iter().map(|p| (hi, p)));
                    return Err(rerr(format!("cgroup {hn}:/{}: {e}", d.path)));
                }
            }
            self.created.extend(made.into_iter().map(|p| (hi, p)));
        }
        let open = |hi: usize, path: &str| -> Result<OwnedFd, CgError> {
            let h = &self.hiers[hi];
            let f = under(&h.fd, path).join("cgroup.procs");
            crate::sys::files::open(&f.display().to_string(), libc::O_WRONLY | libc::O_CLOEXEC).map_err(|e| {
                CgError::Restore(format!(
                    "opening {}:/{}/cgroup.procs: {e}",
                    hier_name(&h.cnames),
                    path.trim_matches('/')
                ))
            })
        };
        let mut sets = HashMap::new();
        for (id, ms) in &self.sets {
            let mut fds = Vec::new();
            for m in ms {
                let hi = self
                    .hiers
                    .iter()
                    .position(|h| contains(&h.cnames, &m.name))
                    .ok_or_else(|| rerr(format!("set {id}: no hierarchy for {:?}", m.name)))?;
                fds.push(open(hi, &m.path)?);
            }
            sets.insert(*id, fds);
        }
        let mut cgns = Vec::new();
        if let Some(s) = self.cgns {
            for m in self.sets.get(&s).into_iter().flatten() {
                let hi = self
                    .hiers
                    .iter()
                    .position(|h| contains(&h.cnames, &m.name))
                    .ok_or_else(|| rerr(format!("set {s}: no hierarchy for {:?}", m.name)))?;
                cgns.push(open(hi, &m.path[..m.cgns_prefix as usize])?);
            }
        }
        Ok((sets, cgns))
    }

    /// The settings written once every task is in (limits, weights), before any runs.
    pub fn apply_props(&self) -> Result<(), CgError> {
        for h in &self.hiers {
            for d in h.dirs.iter().filter(|d| d.write_props) {
                let at = under(&h.fd, &d.path);
                for p in d.props.iter().filter(|p| !is_special(&p.name)) {
                    write_prop(&at, p, &d.enable)
                        .map_err(|e| CgError::Restore(format!("cgroup {}:/{}: {e}", hier_name(&h.cnames), d.path)))?;
                }
            }
        }
        Ok(())
    }

    /// Remove every cgroup the restore made (deepest first), once its tasks
    /// are gone (a dying task leaves its cgroup a little later: bounded retries).
    pub fn remove_created(&mut self) {
        for (hi, path) in std::mem::take(&mut self.created).into_iter().rev() {
            let at = under(&self.hiers[hi].fd, &path);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                match std::fs::remove_dir(&at) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        eprintln!(
                            "cryo restore: warning: cgroup {}:/{path} made by the restore could not be removed: {e}",
                            hier_name(&self.hiers[hi].cnames)
                        );
                        break;
                    }
                    _ => break,
                }
            }
        }
    }

    /// The restore succeeded: what it made stays.
    pub fn keep_created(&mut self) {
        self.created.clear();
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn root_set(&self) -> u32 {
        self.root_set
    }

    /// The root must unshare its cgroup namespace.
    pub fn has_cgns(&self) -> bool {
        self.cgns.is_some()
    }
}

fn set_perms(at: &std::path::Path, p: &pb::CgroupPerms) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::metadata(at).map_err(|e| format!("{}: {e}", at.display()))?;
    if m.uid() != p.uid || m.gid() != p.gid {
        std::os::unix::fs::chown(at, Some(p.uid), Some(p.gid)).map_err(|e| format!("chown {}: {e}", at.display()))?;
    }
    if m.mode() & 0o7777 != p.mode & 0o7777 {
        std::fs::set_permissions(at, std::fs::Permissions::from_mode(p.mode & 0o7777))
            .map_err(|e| format!("chmod {}: {e}", at.display()))?;
    }
    Ok(())
}

/// Write one property as criu does (devices.list as deny-all then allow
/// per line; subtree_control as +/- changes; one write per line for the
/// multi-line ones), skipping values the file holds already.
fn write_prop(dir: &std::path::Path, p: &pb::CgroupPropEntry, enable: &BTreeSet<String>) -> Result<(), String> {
    let f = dir.join(&p.name);
    if let Some(perms) = &p.perms {
        if f.exists() {
            set_perms(&f, perms)?;
        }
    }
    let w = |name: &str, v: &str| -> Result<(), String> {
        std::fs::write(dir.join(name), v).map_err(|e| format!("writing {v:?} to {name}: {e}"))
    };
    let current = || {
        std::fs::read_to_string(&f)
            .ok()
            .map(|s| s.trim_end_matches('\n').to_string())
    };
    match p.name.as_str() {
        "cgroup.procs" | "tasks" => Ok(()),
        "cgroup.type" if p.value != "threaded" => Ok(()),
        "memory.swappiness" if p.value == "60" => Ok(()),
        "memory.oom_control" if p.value == "0" => Ok(()),
        "cgroup.subtree_control" => {
            let cur = current().unwrap_or_default();
            let want: BTreeSet<&str> = p
                .value
                .split_whitespace()
                .chain(enable.iter().map(|s| s.as_str()))
                .collect();
            let mut ch: Vec<String> = cur
                .split_whitespace()
                .filter(|c| !want.contains(c))
                .map(|c| format!("-{c}"))
                .collect();
            ch.extend(
                want.iter()
                    .filter(|c| !cur.split_whitespace().any(|x| x == **c))
                    .map(|c| format!("+{c}")),
            );
            if ch.is_empty() {
                return Ok(());
            }
            w(&p.name, &ch.join(" "))
        }
        "devices.list" => {
            if current().as_deref() == Some(p.value.as_str()) {
                return Ok(());
            }
            w("devices.deny", "a")?;
            for l in p.value.lines().filter(|l| !l.is_empty()) {
                w("devices.allow", l)?;
            }
            Ok(())
        }
        "net_prio.ifpriomap" => {
            // Interfaces differ between machines: each line alone, failures ignored (criu's way).
            for l in p.value.lines() {
                let _ = w(&p.name, l);
            }
            Ok(())
        }
        _ => {
            if current().as_deref() == Some(p.value.as_str()) {
                return Ok(());
            }
            if p.value.contains('\n') {
                for l in p.value.lines() {
                    w(&p.name, l)?;
                }
                return Ok(());
            }
            match std::fs::write(&f, &p.value) {
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) && p.name == "memory.kmem.limit_in_bytes" => {
                    Ok(())
                }
                Err(e) => Err(format!("writing {:?} to {}: {e}", p.value, p.name)),
                Ok(()) => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_cgroup_parses_and_sorts_as_criu() {
        let t = "11:name=zdtmtst:/\n4:memory:/a/b\n1:cpu,cpuacct:/\n0::/x\n";
        let m = parse_cgroup(t).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].name, "memory");
        let s = sorted(m);
        let names: Vec<&str> = s.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["", "cpu,cpuacct", "memory", "name=zdtmtst"]);
        assert!(parse_cgroup("garbage").is_err());
        assert!(parse_cgroup("1:cpu:relative").is_err());
    }

    #[test]
    fn hierarchies_match_by_their_controllers() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(contains(&v(&[""]), ""));
        assert!(!contains(&v(&[""]), "memory"));
        assert!(contains(&v(&["cpu", "cpuacct"]), "cpu,cpuacct"));
        assert!(!contains(&v(&["cpu", "cpuacct"]), "cpu"));
        assert!(contains(&v(&["name=systemd"]), "name=systemd"));
        assert!(!contains(&v(&["memory"]), ""));
    }

    #[test]
    fn values_are_stored_as_criu_stores_them() {
        assert_eq!(prop_value("memory.max", "max\n").unwrap(), "max");
        assert_eq!(prop_value("pids.max", "9223372036854775807\n").unwrap(), "-1");
        assert_eq!(
            prop_value("memory.limit_in_bytes", "9223372036854771712\n").unwrap(),
            "9223372036854771712"
        );
        assert_eq!(
            prop_value("memory.oom_control", "oom_kill_disable 1\nunder_oom 0\n").unwrap(),
            "1"
        );
        assert_eq!(
            prop_value("io.weight", "default 100\n8:0 200\n").unwrap(),
            "default 100\n8:0 200"
        );
    }

    #[test]
    fn modes_and_roots_parse_as_criu_spells_them() {
        assert_eq!(Mode::parse("soft").unwrap(), Mode::Soft);
        assert_eq!(Mode::parse("cg_none").unwrap(), Mode::None);
        assert_eq!(Mode::parse("default").unwrap(), Mode::Soft);
        assert!(Mode::parse("hard").is_err());
        assert_eq!(
            Root::parse("name=zdtmtst:/prefix").unwrap(),
            Root {
                ctrl: Some("name=zdtmtst".into()),
                path: "/prefix".into()
            }
        );
        assert_eq!(Root::parse("/new").unwrap().ctrl, None);
        assert!(Root::parse("rel").is_err());
    }

    fn img(path: &str, head: &str) -> pb::CgroupEntry {
        pb::CgroupEntry {
            sets: vec![pb::CgSetEntry {
                id: 2,
                ctls: vec![pb::CgMemberEntry {
                    name: "memory".into(),
                    path: path.into(),
                    cgns_prefix: None,
                }],
            }],
            controllers: vec![pb::CgControllerEntry {
                cnames: vec!["memory".into()],
                dirs: vec![pb::CgroupDirEntry {
                    dir_name: head.into(),
                    ..Default::default()
                }],
                is_threaded: Some(true),
            }],
        }
    }

    #[test]
    fn cgroup_root_moves_heads_and_the_paths_below_them() {
        let mut i = img("/test/a/b", "test/a");
        rewrite_roots(
            &mut i,
            &[Root {
                ctrl: None,
                path: "/new".into(),
            }],
        );
        assert_eq!(i.sets[0].ctls[0].path, "/new/b");
        assert_eq!(i.controllers[0].dirs[0].dir_name, "new");
        let mut i = img("/test/a", "test/a");
        rewrite_roots(
            &mut i,
            &[Root {
                ctrl: Some("cpu".into()),
                path: "/other".into(),
            }],
        );
        assert_eq!(
            i.sets[0].ctls[0].path, "/test/a",
            "a root for another controller changes nothing"
        );
    }

    #[test]
    fn walked_dirs_nest_as_criu_nests_them() {
        let mut h = DumpHier {
            cnames: vec!["memory".into()],
            threaded: false,
            dirs: BTreeMap::new(),
        };
        for p in ["t/a", "t/a/x", "t/a/x/y", "u"] {
            h.dirs.insert(p.into(), pb::CgroupDirEntry::default());
        }
        let c = controller_entry(h);
        let names: Vec<&str> = c.dirs.iter().map(|d| d.dir_name.as_str()).collect();
        assert_eq!(names, ["t/a", "u"]);
        assert_eq!(c.dirs[0].children[0].dir_name, "x");
        assert_eq!(c.dirs[0].children[0].children[0].dir_name, "y");
    }
}
