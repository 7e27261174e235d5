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
            _ => String::new(),
        };
    }
    Ok(out)
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
