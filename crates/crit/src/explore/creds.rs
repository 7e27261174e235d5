//! `crit x DIR creds`: each thread's user and group ids, groups, capabilities and securebits.

use serde::Serialize;

use cryo_image::{pb, ImageSet};

use super::table::{Align, Table};
use super::{threads_of, ExploreError, Result};

#[derive(Debug, Clone, Serialize)]
pub struct Creds {
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
    pub groups: Vec<u32>,
    /// Capability sets as 64-bit masks.
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub secbits: u32,
    pub no_new_privs: bool,
    pub lsm_profile: Option<String>,
}

/// A capability set from its 32-bit words (low word first).
pub fn cap_mask(words: &[u32]) -> u64 {
    words
        .iter()
        .take(2)
        .enumerate()
        .fold(0, |m, (i, &w)| m | (w as u64) << (32 * i))
}

/// Creds of every thread of the given processes (from core-TID.img's thread_core).
pub fn build(set: &ImageSet, procs: &[pb::PstreeEntry]) -> Result<Vec<Creds>> {
    let mut out = Vec::new();
    for p in procs {
        for tid in threads_of(p) {
            let core = set.core(tid)?;
            let c = core
                .thread_core
                .as_ref()
                .and_then(|t| t.creds.clone())
                .ok_or_else(|| ExploreError::Invalid {
                    file: set.path(&format!("core-{tid}.img")).display().to_string(),
                    what: "no creds in thread_core (an image older than CRIU 3.x keeps them in creds-PID.img)".into(),
                })?;
            out.push(Creds {
                pid: p.pid,
                tid,
                uid: c.uid,
                euid: c.euid,
                suid: c.suid,
                fsuid: c.fsuid,
                gid: c.gid,
                egid: c.egid,
                sgid: c.sgid,
                fsgid: c.fsgid,
                groups: c.groups.clone(),
                cap_inh: cap_mask(&c.cap_inh),
                cap_prm: cap_mask(&c.cap_prm),
                cap_eff: cap_mask(&c.cap_eff),
                cap_bnd: cap_mask(&c.cap_bnd),
                cap_amb: cap_mask(&c.cap_amb),
                secbits: c.secbits,
                no_new_privs: c.no_new_privs.unwrap_or(0) != 0,
                lsm_profile: c.lsm_profile.clone(),
            });
        }
    }
    Ok(out)
}

/// An aligned table: ids as real/effective/saved/fs.
pub fn render(creds: &[Creds]) -> String {
    let mut t = Table::new(&[
        ("PID", Align::Right),
        ("TID", Align::Right),
        ("UID r/e/s/fs", Align::Left),
        ("GID r/e/s/fs", Align::Left),
        ("GROUPS", Align::Left),
        ("CAPEFF", Align::Left),
        ("CAPPRM", Align::Left),
        ("CAPINH", Align::Left),
        ("CAPBND", Align::Left),
        ("CAPAMB", Align::Left),
        ("SECBITS", Align::Left),
        ("NNP", Align::Left),
    ]);
    for c in creds {
        let groups: Vec<String> = c.groups.iter().map(u32::to_string).collect();
        t.row(vec![
            c.pid.to_string(),
            c.tid.to_string(),
            format!("{}/{}/{}/{}", c.uid, c.euid, c.suid, c.fsuid),
            format!("{}/{}/{}/{}", c.gid, c.egid, c.sgid, c.fsgid),
            if groups.is_empty() {
                "-".into()
            } else {
                groups.join(",")
            },
            format!("{:016x}", c.cap_eff),
            format!("{:016x}", c.cap_prm),
            format!("{:016x}", c.cap_inh),
            format!("{:016x}", c.cap_bnd),
            format!("{:016x}", c.cap_amb),
            format!("{:#x}", c.secbits),
            if c.no_new_privs { "yes" } else { "no" }.into(),
        ]);
    }
    t.render()
}
