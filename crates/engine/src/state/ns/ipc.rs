//! The IPC namespace: its sysctls (ipcns-var) and every SysV object, as
//! CRIU 4.2 writes them (criu/ipc_ns.c is the reference for the layout):
//!
//! - `ipcns-var-ID.img`: one `ipc_var_entry` (kernel/sem, msg*, shm*,
//!   fs/mqueue/*, the *_next_id counters when set).
//! - `ipcns-shm-ID.img`: per segment an `ipc_shm_entry` (in_pagemaps);
//!   its contents in `pagemap-shmem-SHMID.img` + `pages-N.img`, as CRIU's
//!   dump_one_sysv_shmem writes them (all-zero pages left out).
//! - `ipcns-sem-ID.img`: per set an `ipc_sem_entry` then its values (u16
//!   each, padded to 8 bytes).
//! - `ipcns-msg-ID.img`: per queue an `ipc_msg_entry`, then per message an
//!   `ipc_msg` and its text (padded to 8 bytes), in queue order.
//!
//! Restore re-creates each object with its id (kernel/*_next_id set just
//! before each get), key, mode, owner, and contents, in the first task of
//! the restore, inside its new IPC namespace. Tasks' attachments are VMAs
//! with VMA_AREA_SYSVIPC naming the segment id (see state/mm.rs).

use super::NsError;
use crate::sys::ipc as sys;
use cryo_image::{pb, ImageSet, ImageWriter};

const PAGE: usize = 4096;

/// Contents of a segment: (offset, bytes) runs.
pub type Runs = Vec<(u64, Vec<u8>)>;
/// A queue's messages as dumped: each header and its text.
pub type Messages = Vec<(pb::IpcMsg, Vec<u8>)>;

/// What was read of one IPC namespace.
#[derive(Debug, Default)]
pub struct IpcDump {
    pub var: pb::IpcVarEntry,
    /// Each segment and its non-zero pages: (offset, bytes).
    pub shm: Vec<(pb::IpcShmEntry, Runs)>,
    pub sem: Vec<(pb::IpcSemEntry, Vec<u16>)>,
    pub msg: Vec<(pb::IpcMsgEntry, Messages)>,
    /// pages ids for the segments' pages images, given by the dump.
    pub pages_ids: Vec<u32>,
}

fn sysctl(name: &str) -> Result<String, String> {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("/proc/sys/{name}: {e}"))
}

fn sysctl_u64(name: &str) -> Result<u64, String> {
    let s = sysctl(name)?;
    s.parse::<u64>()
        .or_else(|_| s.parse::<i64>().map(|v| v as u64))
        .map_err(|_| format!("/proc/sys/{name}: not a number: {s:?}"))
}

fn sysctl_u32(name: &str) -> Result<u32, String> {
    Ok(sysctl_u64(name)? as u32)
}

fn desc(id: i32, p: &sys::Perm) -> pb::IpcDescEntry {
    pb::IpcDescEntry {
        key: p.key as u32,
        uid: p.uid,
        gid: p.gid,
        cuid: p.cuid,
        cgid: p.cgid,
        mode: p.mode,
        id: id as u32,
    }
}

/// SHM_DEST and SHM_LOCKED in a segment's mode.
const SHM_DEST: u32 = 0o1000;
const SHM_LOCKED: u32 = 0o2000;

/// What cannot be dumped, found before the tree is frozen (the calling
/// thread has setns()ed into the namespace).
pub fn precheck() -> Result<(), String> {
    for (id, p, _, _) in sys::shm_list().map_err(|e| format!("listing shm segments: {e}"))? {
        refuse_mode(id, &p)?;
    }
    Ok(())
}

fn refuse_mode(id: i32, p: &sys::Perm) -> Result<(), String> {
    if p.mode & (SHM_DEST | SHM_LOCKED) != 0 {
        return Err(format!(
            "shm segment {id} (key {:#x}) is {}: not supported",
            p.key,
            if p.mode & SHM_DEST != 0 {
                "removed (IPC_RMID) but still attached"
            } else {
                "locked in memory (SHM_LOCK)"
            }
        ));
    }
    Ok(())
}

/// Read the calling thread's IPC namespace (it has setns()ed into it).
pub fn dump() -> Result<IpcDump, String> {
    let mut sem_ctls = Vec::new();
    for w in sysctl("kernel/sem")?.split_whitespace() {
        sem_ctls.push(w.parse::<u32>().map_err(|_| format!("/proc/sys/kernel/sem: {w:?}"))?);
    }
    let next = |n: &str| -> Result<Option<u32>, String> {
        let v = sysctl(n)?;
        Ok(match v.parse::<i64>() {
            Ok(-1) => None, // the initial value, which cannot be written back
            Ok(v) => Some(v as u32),
            Err(_) => return Err(format!("/proc/sys/{n}: {v:?}")),
        })
    };
    let mq = std::path::Path::new("/proc/sys/fs/mqueue").exists();
    let mqv = |n: &str| -> Result<u32, String> {
        if mq {
            sysctl_u32(&format!("fs/mqueue/{n}"))
        } else {
            Ok(0)
        }
    };
    let var = pb::IpcVarEntry {
        sem_ctls,
        msg_ctlmax: sysctl_u32("kernel/msgmax")?,
        msg_ctlmnb: sysctl_u32("kernel/msgmnb")?,
        msg_ctlmni: sysctl_u32("kernel/msgmni")?,
        auto_msgmni: sysctl_u32("kernel/auto_msgmni")?,
        shm_ctlmax: sysctl_u64("kernel/shmmax")?,
        shm_ctlall: sysctl_u64("kernel/shmall")?,
        shm_ctlmni: sysctl_u32("kernel/shmmni")?,
        shm_rmid_forced: sysctl_u32("kernel/shm_rmid_forced")?,
        mq_queues_max: mqv("queues_max")?,
        mq_msg_max: mqv("msg_max")?,
        mq_msgsize_max: mqv("msgsize_max")?,
        mq_msg_default: Some(mqv("msg_default")?),
        mq_msgsize_default: Some(mqv("msgsize_default")?),
        msg_next_id: next("kernel/msg_next_id")?,
        sem_next_id: next("kernel/sem_next_id")?,
        shm_next_id: next("kernel/shm_next_id")?,
    };
    let mut d = IpcDump {
        var,
        ..Default::default()
    };
    for (id, p, size, _nattch) in sys::shm_list().map_err(|e| format!("listing shm segments: {e}"))? {
        refuse_mode(id, &p)?;
        let at = sys::ShmAttach::new(id, size, false).map_err(|e| format!("attaching shm segment {id}: {e}"))?;
        let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
        for (i, page) in at.bytes().chunks(PAGE).enumerate() {
            if page.iter().all(|&b| b == 0) {
                continue;
            }
            let off = (i * PAGE) as u64;
            let mut pg = page.to_vec();
            pg.resize(PAGE, 0);
            match runs.last_mut() {
                Some((o, data)) if *o + data.len() as u64 == off => data.extend_from_slice(&pg),
                _ => runs.push((off, pg)),
            }
        }
        d.shm.push((
            pb::IpcShmEntry {
                desc: desc(id, &p),
                size,
                in_pagemaps: Some(true),
                hugetlb_flag: None,
            },
            runs,
        ));
    }
    for (id, p, nsems) in sys::sem_list().map_err(|e| format!("listing semaphore sets: {e}"))? {
        let v = sys::sem_values(id, nsems as usize).map_err(|e| format!("semaphore set {id}: GETALL: {e}"))?;
        d.sem.push((
            pb::IpcSemEntry {
                desc: desc(id, &p),
                nsems: nsems as u32,
            },
            v,
        ));
    }
    let msgmax = sysctl_u32("kernel/msgmax")? as usize;
    for (id, p, qbytes, qnum) in sys::msg_list().map_err(|e| format!("listing message queues: {e}"))? {
        let mut msgs = Vec::new();
        for n in 0..qnum {
            let (mtype, data) = sys::msg_copy(id, n as i64, msgmax)
                .map_err(|e| format!("message queue {id}: message {n} (MSG_COPY): {e}"))?;
            msgs.push((
                pb::IpcMsg {
                    mtype: mtype as u64,
                    msize: data.len() as u32,
                },
                data,
            ));
        }
        d.msg.push((
            pb::IpcMsgEntry {
                desc: desc(id, &p),
                qbytes: qbytes as u32,
                qnum: qnum as u32,
            },
            msgs,
        ));
    }
    Ok(d)
}

fn pad(w: &mut ImageWriter, n: usize, to: usize) -> cryo_image::Result<()> {
    let r = n.div_ceil(to) * to - n;
    if r > 0 {
        w.raw(&vec![0u8; r])?;
    }
    Ok(())
}

impl IpcDump {
    /// The objects' owners and creators as the tree's user namespace sees
    /// them (CRIU's `userns_uid()`; read by cryo in its own view).
    pub fn ids_inside(&mut self, u: &crate::state::userns::UserNs) {
        let descs = self
            .shm
            .iter_mut()
            .map(|(e, _)| &mut e.desc)
            .chain(self.sem.iter_mut().map(|(e, _)| &mut e.desc))
            .chain(self.msg.iter_mut().map(|(e, _)| &mut e.desc));
        for d in descs {
            d.uid = u.inside_uid(d.uid);
            d.gid = u.inside_gid(d.gid);
            d.cuid = u.inside_uid(d.cuid);
            d.cgid = u.inside_gid(d.cgid);
        }
    }

    /// How many pages ids [`IpcDump::write`] needs (one per segment).
    pub fn segments(&self) -> usize {
        self.shm.len()
    }

    /// The segments' pages as CRIU counts them in stats-dump: (scanned,
    /// written): every page of every segment is scanned, the non-zero
    /// ones are written to the segment's pages image.
    pub fn shm_pages(&self) -> (u64, u64) {
        let scanned = self.shm.iter().map(|(e, _)| e.size.div_ceil(PAGE as u64)).sum();
        let written = self
            .shm
            .iter()
            .flat_map(|(_, runs)| runs.iter())
            .map(|(_, data)| (data.len() / PAGE) as u64)
            .sum();
        (scanned, written)
    }

    /// The images of namespace `id`.
    pub fn write(
        &self,
        id: u32,
        create: &mut impl FnMut(&str, Option<&str>) -> cryo_image::Result<ImageWriter>,
    ) -> cryo_image::Result<Vec<ImageWriter>> {
        let mut out = Vec::new();
        let mut w = create(&format!("ipcns-var-{id}.img"), Some("IPC_VAR"))?;
        w.entry(&self.var)?;
        out.push(w);
        let mut w = create(&format!("ipcns-shm-{id}.img"), Some("IPCNS_SHM"))?;
        for (i, (e, runs)) in self.shm.iter().enumerate() {
            w.entry(e)?;
            let pages_id = self.pages_ids.get(i).copied().unwrap_or(0);
            let mut pm = create(&format!("pagemap-shmem-{}.img", e.desc.id), Some("PAGEMAP"))?;
            pm.entry(&pb::PagemapHead { pages_id })?;
            let mut pw = create(&format!("pages-{pages_id}.img"), None)?;
            for (off, data) in runs {
                pm.entry(&pb::PagemapEntry {
                    vaddr: *off,
                    compat_nr_pages: 0,
                    in_parent: None,
                    flags: Some(cryo_image::PE_PRESENT),
                    nr_pages: Some((data.len() / PAGE) as u64),
                })?;
                pw.raw(data)?;
            }
            out.push(pm);
            out.push(pw);
        }
        out.push(w);
        let mut w = create(&format!("ipcns-msg-{id}.img"), Some("IPCNS_MSG"))?;
        for (e, msgs) in &self.msg {
            w.entry(e)?;
            for (m, data) in msgs {
                w.entry(m)?;
                w.raw(data)?;
                pad(&mut w, data.len(), 8)?;
            }
        }
        out.push(w);
        let mut w = create(&format!("ipcns-sem-{id}.img"), Some("IPCNS_SEM"))?;
        for (e, v) in &self.sem {
            w.entry(e)?;
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            w.raw(&bytes)?;
            pad(&mut w, bytes.len(), 8)?;
        }
        out.push(w);
        Ok(out)
    }
}

/// One IPC namespace to create, validated.
#[derive(Clone, Debug, Default)]
pub struct IpcNs {
    pub var: pb::IpcVarEntry,
    /// Each segment with its contents (offset, bytes).
    pub shm: Vec<(pb::IpcShmEntry, Runs)>,
    pub sem: Vec<(pb::IpcSemEntry, Vec<u16>)>,
    /// Each queue's messages: (mtype, text).
    pub msg: Vec<(pb::IpcMsgEntry, Runs)>,
}

fn img_err(set: &ImageSet, name: &str, what: impl std::fmt::Display) -> NsError {
    NsError::Image {
        file: set.path(name).display().to_string(),
        what: what.to_string(),
    }
}

fn transcode<M: prost::Message + Default>(m: &impl prost::Message) -> Option<M> {
    M::decode(m.encode_to_vec().as_slice()).ok()
}

/// Read and check the images of IPC namespace `id`.
pub fn describe(set: &ImageSet, id: u32) -> Result<IpcNs, NsError> {
    let mut ns = IpcNs::default();
    let var_name = format!("ipcns-var-{id}.img");
    ns.var = set.one(&var_name, "IPC_VAR").map_err(|e| img_err(set, &var_name, e))?;
    if ns.var.sem_ctls.len() != 4 {
        return Err(img_err(
            set,
            &var_name,
            format!("entry 0: sem_ctls has {} values, not 4", ns.var.sem_ctls.len()),
        ));
    }
    let decode = |name: &str| -> Result<Option<cryo_image::Image>, NsError> {
        if !set.has(name) {
            return Ok(None);
        }
        let data = std::fs::read(set.path(name)).map_err(|e| img_err(set, name, e))?;
        cryo_image::decode(name, &data)
            .map(Some)
            .map_err(|e| img_err(set, name, e))
    };
    let shm_name = format!("ipcns-shm-{id}.img");
    let mut ids = std::collections::HashSet::new();
    for (i, e) in decode(&shm_name)?
        .map(|i| i.entries)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let s: pb::IpcShmEntry =
            transcode(&e.msg).ok_or_else(|| img_err(set, &shm_name, format!("entry {i}: not an ipc_shm_entry")))?;
        if s.hugetlb_flag.unwrap_or(0) != 0 {
            return Err(img_err(
                set,
                &shm_name,
                format!("entry {i}: segment {} is on huge pages: not supported", s.desc.id),
            ));
        }
        if !ids.insert(("shm", s.desc.id)) {
            return Err(img_err(
                set,
                &shm_name,
                format!("entry {i}: segment id {} twice", s.desc.id),
            ));
        }
        let mut runs = Vec::new();
        if s.in_pagemaps == Some(true) {
            let pm_name = format!("pagemap-shmem-{}.img", s.desc.id);
            if set.has(&pm_name) {
                let pm = set.pagemap_file(&pm_name).map_err(|e| img_err(set, &pm_name, e))?;
                let pages_name = format!("pages-{}.img", pm.pages_id);
                let pages = std::fs::read(set.path(&pages_name)).map_err(|e| img_err(set, &pages_name, e))?;
                for r in &pm.runs {
                    let Some(off) = r.offset else { continue };
                    let len = (r.nr_pages as usize) * PAGE;
                    if r.end() > s.size.div_ceil(PAGE as u64) * PAGE as u64 {
                        return Err(img_err(
                            set,
                            &pm_name,
                            format!(
                                "pages at {:#x}..{:#x} lie past the segment's size {}",
                                r.vaddr,
                                r.end(),
                                s.size
                            ),
                        ));
                    }
                    let data = pages
                        .get(off as usize..off as usize + len)
                        .ok_or_else(|| img_err(set, &pages_name, "shorter than its pagemap says"))?;
                    runs.push((r.vaddr, data.to_vec()));
                }
            }
        } else if let cryo_image::Extra::Blob(b) = &e.extra {
            runs.push((0, b.clone()));
        }
        ns.shm.push((s, runs));
    }
    let sem_name = format!("ipcns-sem-{id}.img");
    for (i, e) in decode(&sem_name)?
        .map(|i| i.entries)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let s: pb::IpcSemEntry =
            transcode(&e.msg).ok_or_else(|| img_err(set, &sem_name, format!("entry {i}: not an ipc_sem_entry")))?;
        let cryo_image::Extra::Sems(v) = &e.extra else {
            return Err(img_err(set, &sem_name, format!("entry {i}: no semaphore values")));
        };
        if v.len() != s.nsems as usize || !ids.insert(("sem", s.desc.id)) {
            return Err(img_err(
                set,
                &sem_name,
                format!(
                    "entry {i}: set {} has {} values for {} semaphores (or its id twice)",
                    s.desc.id,
                    v.len(),
                    s.nsems
                ),
            ));
        }
        ns.sem.push((s, v.clone()));
    }
    let msg_name = format!("ipcns-msg-{id}.img");
    for (i, e) in decode(&msg_name)?
        .map(|i| i.entries)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let q: pb::IpcMsgEntry =
            transcode(&e.msg).ok_or_else(|| img_err(set, &msg_name, format!("entry {i}: not an ipc_msg_entry")))?;
        let mut msgs = Vec::new();
        if let cryo_image::Extra::Msgs(ms) = &e.extra {
            for (j, (m, data)) in ms.iter().enumerate() {
                let m: pb::IpcMsg = transcode(m)
                    .ok_or_else(|| img_err(set, &msg_name, format!("entry {i}: message {j}: not an ipc_msg")))?;
                if m.msize as usize != data.len() || m.msize > ns.var.msg_ctlmax {
                    return Err(img_err(
                        set,
                        &msg_name,
                        format!(
                            "entry {i}: message {j}: size {} (data {}, msgmax {})",
                            m.msize,
                            data.len(),
                            ns.var.msg_ctlmax
                        ),
                    ));
                }
                msgs.push((m.mtype, data.clone()));
            }
        }
        if msgs.len() != q.qnum as usize || !ids.insert(("msg", q.desc.id)) {
            return Err(img_err(
                set,
                &msg_name,
                format!(
                    "entry {i}: queue {} lists {} messages of {}",
                    q.desc.id,
                    msgs.len(),
                    q.qnum
                ),
            ));
        }
        ns.msg.push((q, msgs));
    }
    Ok(ns)
}

fn write_sysctl(name: &str, v: &str) -> Result<(), String> {
    match std::fs::write(format!("/proc/sys/{name}"), v) {
        Ok(()) => Ok(()),
        // As CRIU: a sysctl this namespace may not write is left as it is.
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => Ok(()),
        Err(e) => Err(format!("/proc/sys/{name} = {v}: {e}")),
    }
}

impl IpcNs {
    /// Create everything in the calling task's (new, empty) IPC namespace.
    ///
    /// With the tree's user namespace `user`, the owners in the images are
    /// the namespace's ids and are set as cryo (outside it) sees them.
    pub fn apply(&self, user: Option<&crate::state::userns::UserNs>) -> Result<(), String> {
        let owner = |d: &pb::IpcDescEntry| -> Result<(u32, u32), String> {
            match user {
                Some(u) => Ok((
                    u.outside_uid(d.uid)
                        .map_err(|e| format!("object {}: owner: {e}", d.id))?,
                    u.outside_gid(d.gid)
                        .map_err(|e| format!("object {}: group: {e}", d.id))?,
                )),
                None => Ok((d.uid, d.gid)),
            }
        };
        let v = &self.var;
        let sem: Vec<String> = v.sem_ctls.iter().map(|x| x.to_string()).collect();
        write_sysctl("kernel/sem", &sem.join(" "))?;
        write_sysctl("kernel/msgmax", &v.msg_ctlmax.to_string())?;
        write_sysctl("kernel/msgmnb", &v.msg_ctlmnb.to_string())?;
        write_sysctl("kernel/auto_msgmni", &v.auto_msgmni.to_string())?;
        write_sysctl("kernel/msgmni", &v.msg_ctlmni.to_string())?;
        write_sysctl("kernel/shmmax", &v.shm_ctlmax.to_string())?;
        write_sysctl("kernel/shmall", &v.shm_ctlall.to_string())?;
        write_sysctl("kernel/shmmni", &v.shm_ctlmni.to_string())?;
        write_sysctl("kernel/shm_rmid_forced", &v.shm_rmid_forced.to_string())?;
        if std::path::Path::new("/proc/sys/fs/mqueue").exists() {
            write_sysctl("fs/mqueue/queues_max", &v.mq_queues_max.to_string())?;
            write_sysctl("fs/mqueue/msg_max", &v.mq_msg_max.to_string())?;
            write_sysctl("fs/mqueue/msgsize_max", &v.mq_msgsize_max.to_string())?;
            if let (Some(a), Some(b)) = (v.mq_msg_default, v.mq_msgsize_default) {
                write_sysctl("fs/mqueue/msg_default", &a.to_string())?;
                write_sysctl("fs/mqueue/msgsize_default", &b.to_string())?;
            }
        }
        let with_id = |what: &str, counter: &str, want: u32, get: &dyn Fn() -> std::io::Result<i32>| {
            write_sysctl(counter, &want.to_string())?;
            let got = get().map_err(|e| format!("{what} {want}: {e}"))?;
            if got as u32 != want {
                return Err(format!("{what} {want} came back with id {got}"));
            }
            Ok(got)
        };
        let flags = |mode: u32| (mode & 0o777) as i32 | sys::IPC_CREAT | sys::IPC_EXCL;
        for (s, runs) in &self.shm {
            let d = &s.desc;
            let id = with_id("shm segment", "kernel/shm_next_id", d.id, &|| {
                sys::shm_get(d.key as i32, s.size, flags(d.mode))
            })?;
            let (uid, gid) = owner(d)?;
            sys::set_owner(sys::Obj::Shm, id, uid, gid, None).map_err(|e| format!("shm segment {id}: owner: {e}"))?;
            if !runs.is_empty() {
                let mut at =
                    sys::ShmAttach::new(id, s.size, true).map_err(|e| format!("shm segment {id}: attach: {e}"))?;
                for (off, data) in runs {
                    let end = (s.size as usize).min(*off as usize + data.len());
                    let n = end.saturating_sub(*off as usize);
                    at.write(*off as usize, &data[..n])
                        .map_err(|e| format!("shm segment {id}: contents at {off:#x}: {e}"))?;
                }
            }
        }
        for (q, msgs) in &self.msg {
            let d = &q.desc;
            let id = with_id("message queue", "kernel/msg_next_id", d.id, &|| {
                sys::msg_get(d.key as i32, flags(d.mode))
            })?;
            let qbytes = (q.qbytes != v.msg_ctlmnb).then_some(q.qbytes as u64);
            let (uid, gid) = owner(d)?;
            sys::set_owner(sys::Obj::Msg, id, uid, gid, qbytes)
                .map_err(|e| format!("message queue {id}: owner/qbytes {}: {e}", q.qbytes))?;
            for (j, (mtype, data)) in msgs.iter().enumerate() {
                sys::msg_send(id, *mtype as i64, data).map_err(|e| format!("message queue {id}: message {j}: {e}"))?;
            }
        }
        for (s, vals) in &self.sem {
            let d = &s.desc;
            let id = with_id("semaphore set", "kernel/sem_next_id", d.id, &|| {
                sys::sem_get(d.key as i32, s.nsems as i32, flags(d.mode))
            })?;
            let (uid, gid) = owner(d)?;
            sys::set_owner(sys::Obj::Sem, id, uid, gid, None).map_err(|e| format!("semaphore set {id}: owner: {e}"))?;
            sys::sem_set_values(id, vals).map_err(|e| format!("semaphore set {id}: SETALL: {e}"))?;
        }
        // The counters as dumped (after the objects, which consume them).
        for (n, x) in [
            ("kernel/msg_next_id", v.msg_next_id),
            ("kernel/sem_next_id", v.sem_next_id),
            ("kernel/shm_next_id", v.shm_next_id),
        ] {
            if let Some(x) = x {
                write_sysctl(n, &x.to_string())?;
            }
        }
        Ok(())
    }
}
