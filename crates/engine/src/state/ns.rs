//! Namespaces: which ones a tree lives in, their ids in the images (CRIU's
//! numbering), the refusal of what cannot be restored, and each supported
//! kind's dump (kernel → image entries), describe (entries → a validated
//! [`NsPlan`]) and restore (applied inside the first task of the restore,
//! which is cloned into the new namespaces).
//!
//! The shape, per namespace kind (see [`Kind`]):
//!
//! - **detect** ([`survey`], before anything is frozen): every task's
//!   `/proc/PID/ns/*` inodes. The namespaces the tree's root does not share
//!   with cryo are the tree's own: they are dumped and created again at
//!   restore. Every other task must share the root's (nested namespaces
//!   are refused), and each own kind must be one [`Kind::support`] accepts.
//! - **ids** ([`Numbering`]): as CRIU numbers them: cryo's own namespaces
//!   first (1..=8, in the order CRIU meets them, which is also
//!   inventory.img's `root_ids`), then every other namespace in the order
//!   the tasks meet them. A task's `ids-PID.img` names its namespaces.
//! - **dump** ([`dump_contents`], while the tree is frozen): uts → `utsns-ID.img`;
//!   ipc → `ipcns-var-ID.img`, `ipcns-shm-ID.img` (+ `pagemap-shmem-SHMID.img`
//!   and its pages), `ipcns-sem-ID.img`, `ipcns-msg-ID.img`; pid → `pidns-ID.img`
//!   (empty, as CRIU writes it). Read by a thread of cryo's that setns()s
//!   into the namespace.
//! - **describe** ([`describe`], at restore's validation): the images → an
//!   [`NsPlan`] (clone flags, hostname, IPC objects), every entry checked.
//! - **restore**: the first task the restore clones gets [`NsPlan::clone_flags`]
//!   (the kernel creates a user namespace first, the others owned by it), and
//!   runs [`NsPlan::apply`] before it forks anything: hostname, IPC sysctls
//!   and objects with their ids. The namespaces live only in the restored
//!   tasks: a failed restore kills them, and nothing is left behind.
//!
//! Adding a kind: its [`Kind::support`] line, its dump in [`dump_contents`],
//! its images in [`NsDump::write`], its part of [`describe`] and [`NsPlan::apply`].

use cryo_image::{pb, ImageSet, ImageWriter};
use std::collections::BTreeMap;

pub mod holder;
pub mod ipc;

/// A namespace kind, in the order CRIU meets them (criu/namespaces.c
/// dump_task_ns_ids): that order gives the ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pid,
    Net,
    Ipc,
    Uts,
    Time,
    Mnt,
    User,
    Cgroup,
}

/// Whether a tree may have a namespace of a kind of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    Yes,
    /// Refused, with the reason.
    No(&'static str),
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Pid,
        Kind::Net,
        Kind::Ipc,
        Kind::Uts,
        Kind::Time,
        Kind::Mnt,
        Kind::User,
        Kind::Cgroup,
    ];

    /// Its name under /proc/PID/ns/.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pid => "pid",
            Kind::Net => "net",
            Kind::Ipc => "ipc",
            Kind::Uts => "uts",
            Kind::Time => "time",
            Kind::Mnt => "mnt",
            Kind::User => "user",
            Kind::Cgroup => "cgroup",
        }
    }

    pub fn clone_flag(self) -> u64 {
        (match self {
            Kind::Pid => libc::CLONE_NEWPID,
            Kind::Net => libc::CLONE_NEWNET,
            Kind::Ipc => libc::CLONE_NEWIPC,
            Kind::Uts => libc::CLONE_NEWUTS,
            Kind::Time => libc::CLONE_NEWTIME,
            Kind::Mnt => libc::CLONE_NEWNS,
            Kind::User => libc::CLONE_NEWUSER,
            Kind::Cgroup => libc::CLONE_NEWCGROUP,
        }) as u64
    }

    /// The one table of what a tree's own namespace of each kind gets:
    /// dumped and created at restore, or refused (at dump before the tree
    /// is frozen, at restore before any task exists).
    pub fn support(self) -> Support {
        match self {
            // A cgroup namespace has no image of its own: its root is the
            // cgns_prefix of the sets in cgroup.img (state::cgroup), and the
            // restore's root unshares it there.
            Kind::Pid | Kind::Ipc | Kind::Uts | Kind::Net | Kind::Mnt | Kind::User | Kind::Time | Kind::Cgroup => {
                Support::Yes
            }
        }
    }

    pub fn id(self, ids: &pb::TaskKobjIdsEntry) -> Option<u32> {
        match self {
            Kind::Pid => ids.pid_ns_id,
            Kind::Net => ids.net_ns_id,
            Kind::Ipc => ids.ipc_ns_id,
            Kind::Uts => ids.uts_ns_id,
            Kind::Time => ids.time_ns_id,
            Kind::Mnt => ids.mnt_ns_id,
            Kind::User => ids.user_ns_id,
            Kind::Cgroup => ids.cgroup_ns_id,
        }
    }

    pub fn set_id(self, ids: &mut pb::TaskKobjIdsEntry, id: u32) {
        let f = match self {
            Kind::Pid => &mut ids.pid_ns_id,
            Kind::Net => &mut ids.net_ns_id,
            Kind::Ipc => &mut ids.ipc_ns_id,
            Kind::Uts => &mut ids.uts_ns_id,
            Kind::Time => &mut ids.time_ns_id,
            Kind::Mnt => &mut ids.mnt_ns_id,
            Kind::User => &mut ids.user_ns_id,
            Kind::Cgroup => &mut ids.cgroup_ns_id,
        };
        *f = Some(id);
    }
}

/// Why a tree's namespaces cannot be dumped or restored.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    /// At dump: the task and what is refused.
    #[error("pid {pid}: refusing to dump: {what}")]
    Refused { pid: i32, what: String },
    /// At dump: reading a namespace failed.
    #[error("pid {pid}: {ns} namespace: {what}")]
    Read { pid: i32, ns: &'static str, what: String },
    /// At restore: the image, and what is wrong or unsupported in it.
    #[error("{file}: {what}")]
    Image { file: String, what: String },
}

/// The namespace inodes of one task (None: the kernel has no such kind).
pub type Inodes = BTreeMap<Kind, u64>;

fn ns_inode(path: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// The namespaces of `pid` ("self" for cryo).
pub fn inodes(pid: &str) -> Inodes {
    Kind::ALL
        .iter()
        .filter_map(|&k| ns_inode(&format!("/proc/{pid}/ns/{}", k.name())).map(|i| (k, i)))
        .collect()
}

/// CRIU's numbering of namespaces: cryo's own first, then in the order met.
#[derive(Clone, Debug)]
pub struct Numbering {
    known: Vec<(Kind, u64, u32)>,
    next: u32,
}

impl Numbering {
    /// cryo's own namespaces get 1..=8, in [`Kind::ALL`] order.
    pub fn new() -> Numbering {
        let mine = inodes("self");
        let mut n = Numbering {
            known: Vec::new(),
            next: 0,
        };
        for k in Kind::ALL {
            n.next += 1;
            // A kind the kernel lacks still takes its number (as CRIU's
            // fixed order does).
            n.known.push((k, mine.get(&k).copied().unwrap_or(0), n.next));
        }
        n
    }

    /// inventory.img's root_ids: cryo's namespaces (vm/files/fs/sighand 1).
    pub fn root_ids(&self) -> pb::TaskKobjIdsEntry {
        let mut ids = pb::TaskKobjIdsEntry {
            vm_id: 1,
            files_id: 1,
            fs_id: 1,
            sighand_id: 1,
            ..Default::default()
        };
        for &(k, _, id) in self.known.iter().take(Kind::ALL.len()) {
            k.set_id(&mut ids, id);
        }
        ids
    }

    /// The id of a namespace, numbered now if new.
    pub fn id(&mut self, k: Kind, ino: u64) -> u32 {
        if let Some(&(_, _, id)) = self.known.iter().find(|(kk, i, _)| *kk == k && *i == ino) {
            return id;
        }
        self.next += 1;
        self.known.push((k, ino, self.next));
        self.next
    }

    /// A task's namespace ids into `ids`.
    pub fn fill(&mut self, task: &Inodes, ids: &mut pb::TaskKobjIdsEntry) {
        for k in Kind::ALL {
            if let Some(&ino) = task.get(&k) {
                let id = self.id(k, ino);
                k.set_id(ids, id);
            }
        }
    }
}

impl Default for Numbering {
    fn default() -> Self {
        Self::new()
    }
}

/// The namespaces of a tree, found before the freeze.
#[derive(Clone, Debug, Default)]
pub struct TreeNs {
    /// The root's namespaces.
    pub root: Inodes,
    /// The kinds the tree has of its own (the root's differ from cryo's).
    pub own: Vec<Kind>,
    /// With a pid namespace of its own: host pid → pid inside it, for every
    /// task and thread of the tree.
    pub vpids: BTreeMap<i32, i32>,
    /// With a user namespace of its own: its maps (ids in the images are
    /// the namespace's, see state/userns.rs).
    pub user: Option<super::userns::UserNs>,
    /// With a time namespace of its own: its offsets.
    pub time: Option<super::timens::Offsets>,
}

impl TreeNs {
    pub fn has(&self, k: Kind) -> bool {
        self.own.contains(&k)
    }

    /// The pid of host pid `pid` as the images record it.
    pub fn vpid(&self, pid: i32) -> i32 {
        if pid <= 0 {
            return pid;
        }
        self.vpids.get(&pid).copied().unwrap_or(pid)
    }
}

/// The last field of an `NS...:` line of /proc/PID/status (the id in the
/// task's own pid namespace) and the number of levels.
pub fn ns_field(status: &str, key: &str) -> Option<(i32, usize)> {
    let l = status.lines().find(|l| l.starts_with(key))?;
    let v: Vec<i32> = l[key.len()..]
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    Some((*v.last()?, v.len()))
}

/// Check the namespaces of every task of the tree (`pids`, root first,
/// before anything is frozen): which kinds are the tree's own, nested
/// namespaces refused, each own kind supported; with a pid namespace, the
/// pids inside it.
pub fn survey(pids: &[i32]) -> Result<TreeNs, NsError> {
    let Some(&root) = pids.first() else {
        return Ok(TreeNs::default());
    };
    let mine = inodes("self");
    let refused = |pid, what: String| NsError::Refused { pid, what };
    let root_ns = inodes(&root.to_string());
    let mut own = Vec::new();
    for k in Kind::ALL {
        let (Some(r), Some(m)) = (root_ns.get(&k), mine.get(&k)) else {
            continue;
        };
        if r != m {
            if let Support::No(why) = k.support() {
                return Err(refused(
                    root,
                    format!(
                        "it is in a {} namespace of its own (inode {r}, cryo's is {m}): {why}",
                        k.name()
                    ),
                ));
            }
            own.push(k);
        }
    }
    let mut vpids = BTreeMap::new();
    let my_levels = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| ns_field(&s, "NSpid:"))
        .map_or(1, |(_, n)| n);
    for &pid in pids {
        let theirs = inodes(&pid.to_string());
        for k in Kind::ALL {
            if let (Some(t), Some(r)) = (theirs.get(&k), root_ns.get(&k)) {
                if t != r {
                    return Err(refused(
                        pid,
                        format!(
                            "it is in a {} namespace (inode {t}) other than the tree root {root}'s ({r}): \
                             nested namespaces are not supported",
                            k.name()
                        ),
                    ));
                }
            }
        }
        // After unshare(CLONE_NEWPID/CLONE_NEWTIME) the task stays but its
        // future children would enter a new namespace.
        for (k, child) in [(Kind::Pid, "pid_for_children"), (Kind::Time, "time_for_children")] {
            let c = ns_inode(&format!("/proc/{pid}/ns/{child}"));
            if c.is_some() && c != theirs.get(&k).copied() {
                return Err(refused(
                    pid,
                    format!(
                        "its children would be in a {} namespace of their own (/proc/{pid}/ns/{child} differs \
                         from its {} namespace: an unshare without a child yet); nested namespaces are not supported",
                        k.name(),
                        k.name()
                    ),
                ));
            }
        }
        if own.contains(&Kind::Pid) {
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map_err(|e| NsError::Read {
                    pid,
                    ns: "pid",
                    what: e.to_string(),
                })?
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok());
            for tid in tasks {
                let st = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap_or_default();
                let (v, levels) = ns_field(&st, "NSpid:").ok_or_else(|| NsError::Read {
                    pid,
                    ns: "pid",
                    what: format!("no NSpid in /proc/{pid}/task/{tid}/status"),
                })?;
                if levels != my_levels + 1 {
                    return Err(refused(
                        pid,
                        format!(
                            "its pid namespace is {} levels below cryo's: only a pid namespace that is a child \
                             of cryo's is supported",
                            levels as i64 - my_levels as i64
                        ),
                    ));
                }
                vpids.insert(tid, v);
            }
        }
    }
    if own.contains(&Kind::Pid) && vpids.get(&root) != Some(&1) {
        return Err(refused(
            root,
            format!(
                "the tree's root is pid {} in its own pid namespace, not its init (pid 1): dump the \
                 namespace's init",
                vpids.get(&root).copied().unwrap_or(0)
            ),
        ));
    }
    let user = if own.contains(&Kind::User) {
        Some(super::userns::UserNs::read(root).map_err(|e| refused(root, format!("its user namespace: {e}")))?)
    } else {
        None
    };
    if let Some(u) = &user {
        for &pid in pids {
            check_mapped(pid, u)?;
        }
    }
    check_owners(root, &root_ns, &mine, &own)?;
    let time = if own.contains(&Kind::Time) {
        let path = format!("/proc/{root}/timens_offsets");
        let text = std::fs::read_to_string(&path).map_err(|e| refused(root, format!("{path}: {e}")))?;
        Some(super::timens::parse_offsets(&text).map_err(|e| refused(root, format!("{path}: {e}")))?)
    } else {
        None
    };
    if own.contains(&Kind::Ipc) {
        in_ns(root, Kind::Ipc, ipc::precheck).map_err(|e| match e {
            NsError::Read { pid, what, .. } => refused(pid, format!("in its IPC namespace: {what}")),
            e => e,
        })?;
    }
    Ok(TreeNs {
        root: root_ns,
        own,
        vpids,
        user,
        time,
    })
}

/// Every id in the credentials of every thread of `pid` must be mapped in
/// the tree's user namespace (the images hold them as it sees them).
fn check_mapped(pid: i32, u: &super::userns::UserNs) -> Result<(), NsError> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| NsError::Read {
        pid,
        ns: "user",
        what: format!("/proc/{pid}/task: {e}"),
    })?;
    for tid in tasks.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")) else {
            continue;
        };
        let ids = |key: &str| -> Vec<u32> {
            st.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.split_whitespace().filter_map(|w| w.parse().ok()).collect())
                .unwrap_or_default()
        };
        let mut c = cryo_image::pb::CredsEntry::default();
        if let ([a, b, c2, d], [e, f, g, h]) = (ids("Uid:").as_slice(), ids("Gid:").as_slice()) {
            (c.uid, c.euid, c.suid, c.fsuid) = (*a, *b, *c2, *d);
            (c.gid, c.egid, c.sgid, c.fsgid) = (*e, *f, *g, *h);
        }
        c.groups = ids("Groups:");
        u.creds_inside(&mut c).map_err(|what| NsError::Refused {
            pid: tid,
            what: format!("{what}: its credentials cannot be restored in the namespace"),
        })?;
    }
    Ok(())
}

/// The inode of the user namespace owning `root`'s namespace of kind `k`.
fn owner_inode(root: i32, k: Kind) -> Result<u64, String> {
    use std::os::unix::fs::MetadataExt;
    let path = format!("/proc/{root}/ns/{}", k.name());
    let f = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    let o = crate::sys::ns_owner(&f).map_err(|e| format!("{path}: NS_GET_USERNS: {e}"))?;
    let st = std::fs::File::from(o)
        .metadata()
        .map_err(|e| format!("{path}: owner: {e}"))?;
    Ok(st.ino())
}

/// Every namespace the tree has of its own must be owned by the user
/// namespace the restore creates it in: the tree's own user namespace if it
/// has one (the restore creates that first and the others in it), cryo's
/// otherwise.
fn check_owners(root: i32, root_ns: &Inodes, mine: &Inodes, own: &[Kind]) -> Result<(), NsError> {
    let (want, whose) = if own.contains(&Kind::User) {
        (root_ns.get(&Kind::User), "the tree's own")
    } else {
        (mine.get(&Kind::User), "cryo's")
    };
    let Some(&want) = want else {
        return Ok(());
    };
    for &k in own.iter().filter(|&&k| k != Kind::User) {
        let o = owner_inode(root, k).map_err(|what| NsError::Read {
            pid: root,
            ns: k.name(),
            what,
        })?;
        if o != want {
            return Err(NsError::Refused {
                pid: root,
                what: format!(
                    "its {} namespace is owned by user namespace {o}, not by {whose} ({want}): a namespace \
                     owned by another user namespace than its tree's is not supported",
                    k.name()
                ),
            });
        }
    }
    Ok(())
}

/// A task found after the survey (forked meanwhile) must be in the tree's
/// namespaces too; in the tree's pid namespace its pids inside are read
/// now (it is frozen: its threads are all there). `frozen` holds the tids
/// the freeze seized: a listed thread that is gone by now was exiting and
/// never seized, and is left out; every seized one must get its pid inside.
pub fn check_task(pid: i32, frozen: &[i32], tree: &mut TreeNs) -> Result<(), NsError> {
    let theirs = inodes(&pid.to_string());
    for (k, r) in &tree.root {
        if let Some(t) = theirs.get(k) {
            if t != r {
                return Err(NsError::Refused {
                    pid,
                    what: format!(
                        "it is in a {} namespace (inode {t}) other than the tree root's ({r}): nested namespaces \
                         are not supported",
                        k.name()
                    ),
                });
            }
        }
    }
    if tree.has(Kind::Pid) && !tree.vpids.contains_key(&pid) {
        let read = |what: String| NsError::Read { pid, ns: "pid", what };
        // A zombie has no task directory to list: its pid alone.
        let tids: Vec<i32> = match std::fs::read_dir(format!("/proc/{pid}/task")) {
            Ok(d) => d
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .collect(),
            Err(_) => vec![pid],
        };
        for tid in tids {
            let path = if tid == pid {
                format!("/proc/{pid}/status")
            } else {
                format!("/proc/{pid}/task/{tid}/status")
            };
            let st = match std::fs::read_to_string(&path) {
                Ok(st) => st,
                // A thread listed a moment ago that has exited since: it was
                // exiting when the freeze came, so it was never seized and is
                // not dumped.
                Err(e) if tid != pid && !frozen.contains(&tid) && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(read(format!(
                        "{path}: {e} (a task that appeared during the freeze is gone again: dump again)"
                    )))
                }
            };
            let (v, _) = ns_field(&st, "NSpid:").ok_or_else(|| read(format!("no NSpid in {path}")))?;
            tree.vpids.insert(tid, v);
        }
        if let Some(t) = frozen.iter().find(|t| !tree.vpids.contains_key(t)) {
            return Err(read(format!(
                "thread {t} was frozen but is not in /proc/{pid}/task (a task of the tree went away: dump again)"
            )));
        }
    }
    Ok(())
}

/// Every task and thread in the pid namespace of `first` (a pid of the
/// caller's): pid inside → pid as the caller sees it.
pub fn host_pids(first: i32) -> Result<std::collections::HashMap<i32, i32>, String> {
    let ns = ns_inode(&format!("/proc/{first}/ns/pid")).ok_or_else(|| format!("pid {first} is gone"))?;
    let mut out = std::collections::HashMap::new();
    let dir = std::fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))?;
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if ns_inode(&format!("/proc/{pid}/ns/pid")) != Some(ns) {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Ok(tid) = t.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let st = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap_or_default();
            if let Some((v, _)) = ns_field(&st, "NSpid:") {
                out.insert(v, tid);
            }
        }
    }
    Ok(out)
}

/// Run `f` in a thread of cryo's that entered `pid`'s namespace of kind `k`
/// (uts and ipc are per thread: setns() in a thread changes that thread only).
fn in_ns<T: Send>(pid: i32, k: Kind, f: impl FnOnce() -> Result<T, String> + Send) -> Result<T, NsError> {
    let err = |what: String| NsError::Read {
        pid,
        ns: k.name(),
        what,
    };
    let path = format!("/proc/{pid}/ns/{}", k.name());
    let fd = std::fs::File::open(&path).map_err(|e| err(format!("{path}: {e}")))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&fd, nix::sched::CloneFlags::from_bits_retain(k.clone_flag() as i32))
                .map_err(|e| format!("setns: {e}"))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err("reader thread panicked".into()))
    })
    .map_err(err)
}

/// Run `f` in a thread of cryo's in `pid`'s cgroup namespace (what
/// /proc files show from inside it).
pub fn in_cgroupns<T: Send>(pid: i32, f: impl FnOnce() -> Result<T, String> + Send) -> Result<T, NsError> {
    in_ns(pid, Kind::Cgroup, f)
}

/// What was read of the tree's own namespaces, to be written with the
/// shared images.
#[derive(Debug, Default)]
pub struct NsDump {
    /// (ns id, entry).
    pub uts: Option<(u32, pb::UtsnsEntry)>,
    pub ipc: Option<(u32, ipc::IpcDump)>,
    pub pid: Option<u32>,
    pub user: Option<(u32, pb::UsernsEntry)>,
    pub time: Option<(u32, pb::TimensEntry)>,
}

/// Read the contents of the tree's own namespaces (the tree frozen).
pub fn dump_contents(tree: &TreeNs, root: i32, ids: &mut Numbering) -> Result<NsDump, NsError> {
    let mut d = NsDump::default();
    let id = |ids: &mut Numbering, k: Kind| ids.id(k, tree.root.get(&k).copied().unwrap_or(0));
    if tree.has(Kind::Uts) {
        let e = in_ns(root, Kind::Uts, || {
            let u = nix::sys::utsname::uname().map_err(|e| format!("uname: {e}"))?;
            Ok(pb::UtsnsEntry {
                nodename: u.nodename().to_string_lossy().into_owned(),
                domainname: u.domainname().to_string_lossy().into_owned(),
            })
        })?;
        d.uts = Some((id(ids, Kind::Uts), e));
    }
    if tree.has(Kind::Ipc) {
        let mut e = in_ns(root, Kind::Ipc, ipc::dump)?;
        if let Some(u) = &tree.user {
            e.ids_inside(u);
        }
        d.ipc = Some((id(ids, Kind::Ipc), e));
    }
    if tree.has(Kind::Pid) {
        d.pid = Some(id(ids, Kind::Pid));
    }
    if let Some(u) = &tree.user {
        d.user = Some((id(ids, Kind::User), u.entry()));
    }
    if let Some(o) = &tree.time {
        d.time = Some((id(ids, Kind::Time), super::timens::dump(o)));
    }
    Ok(d)
}

impl NsDump {
    /// Write the images; `create` makes an image writer for a file name and
    /// magic. Returns the writers, unfinished.
    pub fn write(
        &self,
        mut create: impl FnMut(&str, Option<&str>) -> cryo_image::Result<ImageWriter>,
    ) -> cryo_image::Result<Vec<ImageWriter>> {
        let mut out = Vec::new();
        if let Some((id, e)) = &self.uts {
            let mut w = create(&format!("utsns-{id}.img"), Some("UTSNS"))?;
            w.entry(e)?;
            out.push(w);
        }
        if let Some(id) = self.pid {
            // CRIU writes it without entries (ext_key only for external ones).
            out.push(create(&format!("pidns-{id}.img"), Some("PIDNS"))?);
        }
        if let Some((id, e)) = &self.ipc {
            out.extend(e.write(*id, &mut create)?);
        }
        if let Some((id, e)) = &self.user {
            let mut w = create(&format!("userns-{id}.img"), Some("USERNS"))?;
            w.entry(e)?;
            out.push(w);
        }
        if let Some((id, e)) = &self.time {
            let mut w = create(&format!("timens-{id}.img"), Some("TIMENS"))?;
            w.entry(e)?;
            out.push(w);
        }
        Ok(out)
    }
}

/// The namespaces a restore creates, validated.
#[derive(Clone, Debug, Default)]
pub struct NsPlan {
    /// The kinds to create (the root task's namespaces that are not the
    /// dumper's, inventory.img's root_ids).
    pub own: Vec<Kind>,
    pub uts: Option<pb::UtsnsEntry>,
    pub ipc: Option<ipc::IpcNs>,
    /// The image id of each created kind.
    pub ids: BTreeMap<Kind, u32>,
    /// Mount and network namespaces the engine made before forking (held
    /// by these fds, inherited by the first task): entered with setns()
    /// instead of being created by clone3.
    pub enter: Vec<(Kind, std::os::fd::RawFd)>,
    /// Mounts made by the first task once in its namespaces: proc, which
    /// shows the pid namespace of whoever mounts it, and the mounts below it.
    pub late_mounts: Vec<crate::state::mnt::LateMount>,
    /// The tree's own user namespace: its maps.
    pub user: Option<super::userns::UserNs>,
    /// The tree's own time namespace: its clocks at dump time.
    pub time: Option<super::timens::Clocks>,
    /// The user namespace made by the restore (held by this fd): every task
    /// enters it last, before its credentials (see restore/task.rs).
    pub user_fd: Option<std::os::fd::RawFd>,
}

impl NsPlan {
    /// clone3 flags of the restore's first task.
    pub fn clone_flags(&self) -> u64 {
        // User and time namespaces are never made by clone3: the first
        // needs its maps written from outside before the others are made
        // in it, the second its offsets before any task is in it.
        self.own
            .iter()
            // The cgroup namespace is unshared by the root once in its
            // namespace's root cgroup (state::cgroup::Join).
            .filter(|k| !matches!(k, Kind::User | Kind::Time | Kind::Cgroup))
            .filter(|k| !self.enter.iter().any(|(e, _)| e == *k))
            .fold(0, |f, k| f | k.clone_flag())
    }

    pub fn has(&self, k: Kind) -> bool {
        self.own.contains(&k)
    }

    /// In the first task, in its new namespaces, before it forks anything:
    /// the hostname and domain name, the IPC namespace's sysctls and objects.
    /// `in_user_ns`: the task is in the tree's user namespace already (the
    /// images' ids are its own), else outside it.
    pub fn apply(&self, in_user_ns: bool) -> Result<(), String> {
        // The network namespace first (a mount of sysfs shows it), then the
        // mount namespace (setns makes its root our root and cwd).
        let files = self
            .enter
            .iter()
            .map(|(k, fd)| {
                std::fs::File::open(format!("/proc/self/fd/{fd}"))
                    .map(|f| (*k, f))
                    .map_err(|e| format!("the restored {} namespace (fd {fd}): {e}", k.name()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        for (k, f) in files {
            nix::sched::setns(&f, nix::sched::CloneFlags::from_bits_retain(k.clone_flag() as i32))
                .map_err(|e| format!("setns into the restored {} namespace: {e}", k.name()))?;
        }
        // proc first; the mounts below it (runc's read-only /proc/sys …)
        // once the sysctls below are written.
        let is_proc = |m: &&crate::state::mnt::LateMount| matches!(m.how, crate::state::mnt::LateHow::Proc { .. });
        for m in self.late_mounts.iter().filter(is_proc) {
            m.make()?;
        }
        if let Some(u) = &self.uts {
            std::fs::write("/proc/sys/kernel/hostname", &u.nodename)
                .map_err(|e| format!("uts namespace: hostname {:?}: {e}", u.nodename))?;
            std::fs::write("/proc/sys/kernel/domainname", &u.domainname)
                .map_err(|e| format!("uts namespace: domainname {:?}: {e}", u.domainname))?;
        }
        if let Some(i) = &self.ipc {
            i.apply(self.user.as_ref().filter(|_| !in_user_ns))
                .map_err(|e| format!("ipc namespace: {e}"))?;
        }
        for m in self.late_mounts.iter().filter(|m| !is_proc(m)) {
            m.make()?;
        }
        Ok(())
    }
}

/// The namespaces of an image set: every task must be in the root task's
/// namespaces (no nested ones); the root's that differ from inventory.img's
/// root_ids are created, each of a supported kind and with its images.
pub fn describe(
    set: &ImageSet,
    root_ids: Option<&pb::TaskKobjIdsEntry>,
    tasks: &[(i32, pb::TaskKobjIdsEntry)],
) -> Result<NsPlan, NsError> {
    let Some(((root_pid, root), inv)) = tasks.first().zip(root_ids) else {
        return Ok(NsPlan::default());
    };
    let file = |pid: i32| set.path(&format!("ids-{pid}.img")).display().to_string();
    for (pid, ids) in tasks {
        for k in Kind::ALL {
            if let (Some(mine), Some(r)) = (k.id(ids), k.id(root)) {
                if mine != r {
                    return Err(NsError::Image {
                        file: file(*pid),
                        what: format!(
                            "pid {pid}: a {} namespace (id {mine}) other than the root {root_pid}'s (id {r}): \
                             nested namespaces are not supported (refused before creating any task)",
                            k.name()
                        ),
                    });
                }
            }
        }
    }
    let mut plan = NsPlan::default();
    for k in Kind::ALL {
        let (Some(r), Some(i)) = (k.id(root), k.id(inv)) else {
            continue;
        };
        if r == i {
            continue;
        }
        if let Support::No(why) = k.support() {
            return Err(NsError::Image {
                file: file(*root_pid),
                what: format!(
                    "pid {root_pid}: a {} namespace of its own (id {r}): {why} (refused before creating any task)",
                    k.name()
                ),
            });
        }
        plan.own.push(k);
        plan.ids.insert(k, r);
        match k {
            Kind::Uts => {
                let name = format!("utsns-{r}.img");
                let e: pb::UtsnsEntry = set.one(&name, "UTSNS").map_err(|e| NsError::Image {
                    file: set.path(&name).display().to_string(),
                    what: e.to_string(),
                })?;
                for (what, v) in [("nodename", &e.nodename), ("domainname", &e.domainname)] {
                    if v.len() > 64 || v.contains('\0') {
                        return Err(NsError::Image {
                            file: set.path(&name).display().to_string(),
                            what: format!("entry 0: {what} {v:?} is not a valid name (at most 64 bytes, no NUL)"),
                        });
                    }
                }
                plan.uts = Some(e);
            }
            Kind::Ipc => plan.ipc = Some(ipc::describe(set, r)?),
            Kind::User => {
                let name = format!("userns-{r}.img");
                let err = |what: String| NsError::Image {
                    file: set.path(&name).display().to_string(),
                    what,
                };
                let e: pb::UsernsEntry = set.one(&name, "USERNS").map_err(|e| err(e.to_string()))?;
                plan.user = Some(super::userns::UserNs::from_entry(&e).map_err(|e| err(format!("entry 0: {e}")))?);
            }
            Kind::Time => {
                let name = format!("timens-{r}.img");
                let err = |what: String| NsError::Image {
                    file: set.path(&name).display().to_string(),
                    what,
                };
                let e: pb::TimensEntry = set.one(&name, "TIMENS").map_err(|e| err(e.to_string()))?;
                plan.time = Some(super::timens::Clocks::try_from(&e).map_err(|e| err(format!("entry 0: {e}")))?);
            }
            _ => {}
        }
    }
    Ok(plan)
}
