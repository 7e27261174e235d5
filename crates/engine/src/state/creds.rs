//! Credentials of a thread: uids/gids, capabilities, securebits,
//! supplementary groups, no_new_privs (`CredsEntry` in the thread core).

use crate::proc::Status;
use cryo_image::pb;

/// Most supplementary groups a restored thread may carry (the restorer's
/// fixed-size group list).
pub const MAX_GROUPS: usize = 64;

/// Why a `CredsEntry` cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum CredsError {
    #[error("{n} supplementary groups (max {MAX_GROUPS}) is not supported by cryo restore yet")]
    TooManyGroups { n: usize },
}

/// A thread's credentials, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
    /// Capability sets, low and high 32 bits.
    pub cap_inh: [u32; 2],
    pub cap_prm: [u32; 2],
    pub cap_eff: [u32; 2],
    pub cap_bnd: [u32; 2],
    pub cap_amb: [u32; 2],
    pub secbits: u32,
    /// At most [`MAX_GROUPS`].
    pub groups: Vec<u32>,
    /// PR_SET_NO_NEW_PRIVS.
    pub no_new_privs: bool,
}

/// Dump: the entry from /proc/TID/status (+ securebits, read by the parasite).
pub fn dump(st: &Status, secbits: u32) -> pb::CredsEntry {
    let cap = |v: u64| vec![v as u32, (v >> 32) as u32];
    pb::CredsEntry {
        uid: st.uids[0],
        gid: st.gids[0],
        euid: st.uids[1],
        egid: st.gids[1],
        suid: st.uids[2],
        sgid: st.gids[2],
        fsuid: st.uids[3],
        fsgid: st.gids[3],
        cap_inh: cap(st.cap_inh),
        cap_prm: cap(st.cap_prm),
        cap_eff: cap(st.cap_eff),
        cap_bnd: cap(st.cap_bnd),
        secbits,
        groups: st.groups.clone(),
        lsm_profile: None,
        lsm_sockcreate: None,
        apparmor_data: None,
        no_new_privs: (st.no_new_privs != 0).then_some(st.no_new_privs),
        cap_amb: cap(st.cap_amb),
    }
}

impl TryFrom<&pb::CredsEntry> for Creds {
    type Error = CredsError;

    /// Describe: the entry as the restore applies it.
    fn try_from(c: &pb::CredsEntry) -> Result<Self, CredsError> {
        if c.groups.len() > MAX_GROUPS {
            return Err(CredsError::TooManyGroups { n: c.groups.len() });
        }
        let two = |v: &[u32]| [v.first().copied().unwrap_or(0), v.get(1).copied().unwrap_or(0)];
        Ok(Creds {
            uid: c.uid,
            euid: c.euid,
            suid: c.suid,
            fsuid: c.fsuid,
            gid: c.gid,
            egid: c.egid,
            sgid: c.sgid,
            fsgid: c.fsgid,
            cap_inh: two(&c.cap_inh),
            cap_prm: two(&c.cap_prm),
            cap_eff: two(&c.cap_eff),
            cap_bnd: two(&c.cap_bnd),
            cap_amb: two(&c.cap_amb),
            secbits: c.secbits,
            groups: c.groups.clone(),
            no_new_privs: c.no_new_privs.unwrap_or(0) != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creds_round_trip_and_group_limit() {
        let st = Status {
            uids: [1000, 1001, 1002, 1003],
            gids: [100, 101, 102, 103],
            cap_eff: 0x1_0000_0002,
            groups: vec![5, 6],
            no_new_privs: 1,
            ..Default::default()
        };
        let c = Creds::try_from(&dump(&st, 3)).unwrap();
        assert_eq!((c.uid, c.euid, c.suid, c.fsuid), (1000, 1001, 1002, 1003));
        assert_eq!((c.gid, c.fsgid, c.secbits), (100, 103, 3));
        assert_eq!(c.cap_eff, [2, 1]);
        assert_eq!(c.groups, vec![5, 6]);
        assert!(c.no_new_privs);
        let mut e = dump(&st, 0);
        e.groups = (0..=MAX_GROUPS as u32).collect();
        let err = Creds::try_from(&e).unwrap_err().to_string();
        assert!(err.contains("65 supplementary groups (max 64)"), "{err}");
    }
}
