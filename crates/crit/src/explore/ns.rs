//! `crit x DIR ns`: the namespaces of the tree (each kind's id, whether it is the dumper's or the tree's
//! own, its tasks, and what its images hold), and `crit x DIR ipc`: every SysV object of the tree's IPC
//! namespaces (shm segments with their attachments, semaphore sets with their values, message queues
//! with their messages).

use serde::Serialize;

use cryo_image::{pb, ImageSet};

use super::table::{Align, Table};
use super::Result;

const KINDS: [&str; 8] = ["pid", "net", "ipc", "uts", "time", "mnt", "user", "cgroup"];

fn id_of(ids: &pb::TaskKobjIdsEntry, kind: &str) -> Option<u32> {
    match kind {
        "pid" => ids.pid_ns_id,
        "net" => ids.net_ns_id,
        "ipc" => ids.ipc_ns_id,
        "uts" => ids.uts_ns_id,
        "time" => ids.time_ns_id,
        "mnt" => ids.mnt_ns_id,
        "user" => ids.user_ns_id,
        _ => ids.cgroup_ns_id,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Namespace {
    pub kind: String,
    pub id: u32,
    /// The dumper's own (inventory.img root_ids): not dumped, not created at restore.
    pub dumper: bool,
    /// Tasks in it, in pstree order.
    pub pids: Vec<u32>,
    /// What its images say (hostname, object counts), if anything.
    pub info: String,
}

fn transcode<M: prost::Message + Default>(m: &impl prost::Message) -> Option<M> {
    M::decode(m.encode_to_vec().as_slice()).ok()
}

fn decode(set: &ImageSet, name: &str) -> Result<Vec<cryo_image::Entry>> {
    if !set.has(name) {
        return Ok(Vec::new());
    }
    let data = std::fs::read(set.path(name)).map_err(|e| cryo_image::ImageError::Io {
        file: set.path(name).display().to_string(),
        cause: e,
    })?;
    Ok(cryo_image::decode(name, &data)?.entries)
}

pub fn build(set: &ImageSet) -> Result<Vec<Namespace>> {
    let inv = set.inventory()?;
    let root = inv.root_ids.unwrap_or_default();
    let mut out: Vec<Namespace> = Vec::new();
    for p in set.pstree()? {
        let Ok(ids) = set.ids(p.pid) else { continue };
        for k in KINDS {
            let Some(id) = id_of(&ids, k) else { continue };
            match out.iter_mut().find(|n| n.kind == k && n.id == id) {
                Some(n) => n.pids.push(p.pid),
                None => out.push(Namespace {
                    kind: k.into(),
                    id,
                    dumper: id_of(&root, k) == Some(id),
                    pids: vec![p.pid],
                    info: String::new(),
                }),
            }
        }
    }
    for n in out.iter_mut().filter(|n| !n.dumper) {
        n.info = match n.kind.as_str() {
            "uts" => {
                let e: pb::UtsnsEntry = set.one(&format!("utsns-{}.img", n.id), "UTSNS")?;
                format!("hostname {:?} domainname {:?}", e.nodename, e.domainname)
            }
            "ipc" => {
                let c = |what: &str| decode(set, &format!("ipcns-{what}-{}.img", n.id)).map(|e| e.len());
                format!("{} shm, {} sem, {} msg", c("shm")?, c("sem")?, c("msg")?)
            }
            "pid" => "init: the tree's root".into(),
            "user" => {
                let e: pb::UsernsEntry = set.one(&format!("userns-{}.img", n.id), "USERNS")?;
                format!("uid_map {} gid_map {}", extents(&e.uid_map), extents(&e.gid_map))
            }
            "time" => {
                let e: pb::TimensEntry = set.one(&format!("timens-{}.img", n.id), "TIMENS")?;
                format!(
                    "monotonic {}.{:09} boottime {}.{:09} (at dump)",
                    e.monotonic.tv_sec, e.monotonic.tv_nsec, e.boottime.tv_sec, e.boottime.tv_nsec
                )
            }
            "mnt" => format!("{} mounts", decode(set, &format!("mountpoints-{}.img", n.id))?.len()),
            "net" => format!("{} devices", decode(set, &format!("netdev-{}.img", n.id))?.len()),
            _ => String::new(),
        };
    }
    Ok(out)
}

/// A uid/gid map as /proc/PID/uid_map lists it, one extent per "inside:outside:count".
fn extents(m: &[pb::UidGidExtent]) -> String {
    if m.is_empty() {
        return "(none)".into();
    }
    m.iter()
        .map(|e| format!("{}:{}:{}", e.first, e.lower_first, e.count))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn render(ns: &[Namespace]) -> String {
    let mut t = Table::new(&[
        ("KIND", Align::Left),
        ("ID", Align::Right),
        ("OF", Align::Left),
        ("PIDS", Align::Left),
        ("", Align::Left),
    ]);
    for n in ns {
        t.row(vec![
            n.kind.clone(),
            n.id.to_string(),
            if n.dumper { "dumper" } else { "tree" }.into(),
            n.pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","),
            n.info.clone(),
        ]);
    }
    t.render()
}

#[derive(Debug, Clone, Serialize)]
pub struct IpcObject {
    /// The IPC namespace's id.
    pub ns: u32,
    /// shm, sem, msg.
    pub kind: String,
    pub id: u32,
    pub key: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// shm: bytes; sem: semaphores; msg: messages.
    pub size: u64,
    /// shm: bytes of dumped pages; sem: values; msg: (mtype, bytes) of each message.
    pub detail: String,
    /// shm: (pid, address) of every attachment.
    pub attached: Vec<(u32, u64)>,
}

pub fn build_ipc(set: &ImageSet) -> Result<Vec<IpcObject>> {
    let mut out = Vec::new();
    let ids: Vec<u32> = build(set)?
        .into_iter()
        .filter(|n| n.kind == "ipc" && !n.dumper)
        .map(|n| n.id)
        .collect();
    // Attachments: VMAs with VMA_AREA_SYSVIPC name their segment in shmid.
    let mut attach: Vec<(u64, u32, u64)> = Vec::new();
    for p in set.pstree()? {
        if let Ok(mm) = set.mm(p.pid) {
            for v in mm
                .vmas
                .iter()
                .filter(|v| v.status & cryo_image::check::VMA_AREA_SYSVIPC != 0)
            {
                attach.push((v.shmid, p.pid, v.start));
            }
        }
    }
    let obj = |ns, kind: &str, d: &pb::IpcDescEntry, size, detail| IpcObject {
        ns,
        kind: kind.into(),
        id: d.id,
        key: d.key,
        mode: d.mode,
        uid: d.uid,
        gid: d.gid,
        size,
        detail,
        attached: Vec::new(),
    };
    for ns in ids {
        for e in decode(set, &format!("ipcns-shm-{ns}.img"))? {
            let Some(s) = transcode::<pb::IpcShmEntry>(&e.msg) else {
                continue;
            };
            let pm = format!("pagemap-shmem-{}.img", s.desc.id);
            let pages = if set.has(&pm) {
                set.pagemap_file(&pm)?.present_bytes()
            } else {
                0
            };
            let mut o = obj(ns, "shm", &s.desc, s.size, format!("{pages} bytes of pages"));
            o.attached = attach
                .iter()
                .filter(|a| a.0 == s.desc.id as u64)
                .map(|a| (a.1, a.2))
                .collect();
            out.push(o);
        }
        for e in decode(set, &format!("ipcns-sem-{ns}.img"))? {
            let Some(s) = transcode::<pb::IpcSemEntry>(&e.msg) else {
                continue;
            };
            let vals = match &e.extra {
                cryo_image::Extra::Sems(v) => v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","),
                _ => String::new(),
            };
            out.push(obj(ns, "sem", &s.desc, s.nsems as u64, format!("values {vals}")));
        }
        for e in decode(set, &format!("ipcns-msg-{ns}.img"))? {
            let Some(q) = transcode::<pb::IpcMsgEntry>(&e.msg) else {
                continue;
            };
            let msgs = match &e.extra {
                cryo_image::Extra::Msgs(v) => v
                    .iter()
                    .filter_map(|(m, _)| transcode::<pb::IpcMsg>(m))
                    .map(|m| format!("{}:{}", m.mtype, m.msize))
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => String::new(),
            };
            out.push(obj(ns, "msg", &q.desc, q.qnum as u64, format!("type:bytes {msgs}")));
        }
    }
    Ok(out)
}

pub fn render_ipc(objs: &[IpcObject]) -> String {
    let mut t = Table::new(&[
        ("NS", Align::Right),
        ("KIND", Align::Left),
        ("ID", Align::Right),
        ("KEY", Align::Left),
        ("MODE", Align::Left),
        ("UID:GID", Align::Left),
        ("SIZE", Align::Right),
        ("CONTENTS", Align::Left),
        ("ATTACHED", Align::Left),
    ]);
    for o in objs {
        t.row(vec![
            o.ns.to_string(),
            o.kind.clone(),
            o.id.to_string(),
            format!("{:#010x}", o.key),
            format!("{:o}", o.mode),
            format!("{}:{}", o.uid, o.gid),
            o.size.to_string(),
            o.detail.clone(),
            o.attached
                .iter()
                .map(|(p, a)| format!("{p}@{a:#x}"))
                .collect::<Vec<_>>()
                .join(" "),
        ]);
    }
    if objs.is_empty() {
        return "no SysV IPC objects (no IPC namespace of the tree's own)\n".into();
    }
    t.render()
}

/// One mount of a mount namespace's tree, as mountpoints-ID.img holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Mount {
    /// The mount namespace's id.
    pub ns: u32,
    pub mnt_id: u32,
    pub parent: u32,
    /// Depth below the namespace's root mount (0: the root).
    pub depth: usize,
    pub mountpoint: String,
    pub fstype: String,
    pub source: String,
    /// The directory of its file system that is mounted (a bind mount's source inside it).
    pub root: String,
    /// Per-mount flags (MS_*), in mount(8)'s words.
    pub flags: Vec<String>,
    pub options: String,
    /// "shared:N", "master:N", "external KEY", "deleted".
    pub sharing: Vec<String>,
}

const MS_FLAGS: [(u32, &str); 9] = [
    (1, "ro"),
    (2, "nosuid"),
    (4, "nodev"),
    (8, "noexec"),
    (16, "sync"),
    (1 << 10, "noatime"),
    (1 << 11, "nodiratime"),
    (1 << 21, "relatime"),
    (1 << 24, "strictatime"),
];

fn fstype_name(t: u32, fsname: Option<&str>) -> String {
    match pb::Fstype::try_from(t as i32) {
        Ok(pb::Fstype::Unsupported) | Err(_) => fsname.map_or_else(|| format!("fstype {t}"), str::to_string),
        Ok(f) => f.as_str_name().to_lowercase(),
    }
}

/// Every mount of every mount namespace of the set, in tree order (parents first, as `findmnt`).
pub fn build_mnt(set: &ImageSet) -> Result<Vec<Mount>> {
    let mut names: Vec<(u32, String)> = std::fs::read_dir(set.dir())
        .map_err(|e| cryo_image::ImageError::Io {
            file: set.dir().display().to_string(),
            cause: e,
        })?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let id = n.strip_prefix("mountpoints-")?.strip_suffix(".img")?.parse().ok()?;
            Some((id, n))
        })
        .collect();
    names.sort();
    let mut out = Vec::new();
    for (ns, name) in names {
        let es: Vec<pb::MntEntry> = set.entries(&name, "MNTS")?;
        let ids: std::collections::BTreeSet<u32> = es.iter().map(|e| e.mnt_id).collect();
        // Roots: mounts whose parent is not in the image (the namespace's root).
        let mut stack: Vec<(&pb::MntEntry, usize)> = es
            .iter()
            .filter(|e| !ids.contains(&e.parent_mnt_id) || e.parent_mnt_id == e.mnt_id)
            .rev()
            .map(|e| (e, 0))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        while let Some((e, depth)) = stack.pop() {
            if !seen.insert(e.mnt_id) {
                continue;
            }
            let mut sharing = Vec::new();
            if let Some(s) = e.shared_id.filter(|&s| s != 0) {
                sharing.push(format!("shared:{s}"));
            }
            if let Some(m) = e.master_id.filter(|&m| m != 0) {
                sharing.push(format!("master:{m}"));
            }
            if e.ext_mount == Some(true) || e.ext_key.is_some() {
                sharing.push(format!("external {}", e.ext_key.clone().unwrap_or_default()));
            }
            if e.deleted == Some(true) {
                sharing.push("deleted".into());
            }
            out.push(Mount {
                ns,
                mnt_id: e.mnt_id,
                parent: e.parent_mnt_id,
                depth,
                mountpoint: e.mountpoint.clone(),
                fstype: fstype_name(e.fstype, e.fsname.as_deref()),
                source: e.source.clone(),
                root: e.root.clone(),
                flags: MS_FLAGS
                    .iter()
                    .filter(|(b, _)| e.flags & b != 0)
                    .map(|(_, n)| n.to_string())
                    .collect(),
                options: e.options.clone(),
                sharing,
            });
            // Children in image order (the kernel's), pushed reversed so the first comes out first.
            let kids: Vec<&pb::MntEntry> = es
                .iter()
                .filter(|c| c.parent_mnt_id == e.mnt_id && c.mnt_id != e.mnt_id)
                .collect();
            stack.extend(kids.into_iter().rev().map(|c| (c, depth + 1)));
        }
    }
    Ok(out)
}

pub fn render_mnt(ms: &[Mount]) -> String {
    let mut t = Table::new(&[
        ("NS", Align::Right),
        ("ID", Align::Right),
        ("PARENT", Align::Right),
        ("MOUNTPOINT", Align::Left),
        ("FSTYPE", Align::Left),
        ("SOURCE", Align::Left),
        ("ROOT", Align::Left),
        ("FLAGS", Align::Left),
        ("OPTIONS", Align::Left),
        ("", Align::Left),
    ]);
    for m in ms {
        t.row(vec![
            m.ns.to_string(),
            m.mnt_id.to_string(),
            m.parent.to_string(),
            format!("{}{}", "  ".repeat(m.depth), m.mountpoint),
            m.fstype.clone(),
            m.source.clone(),
            m.root.clone(),
            m.flags.join(","),
            m.options.clone(),
            m.sharing.join(" "),
        ]);
    }
    t.render()
}
