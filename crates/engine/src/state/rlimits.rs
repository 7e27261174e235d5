//! Resource limits of a process (`TaskRlimitsEntry` in its task core), in
//! RLIMIT_* order. Nothing in them can be wrong for the restore to take:
//! a limit the kernel refuses fails when it is set.

use cryo_image::pb;

/// One limit: (soft, hard).
pub type Rlimit = (u64, u64);

/// Dump: the limits the parasite read (getrlimit for each RLIMIT_*).
pub fn dump(limits: &[[u64; 2]]) -> pb::TaskRlimitsEntry {
    pb::TaskRlimitsEntry {
        rlimits: limits
            .iter()
            .map(|r| pb::RlimitEntry { cur: r[0], max: r[1] })
            .collect(),
    }
}

/// Describe: the limits in RLIMIT_* order (none recorded: none to set).
pub fn describe(e: Option<&pb::TaskRlimitsEntry>) -> Vec<Rlimit> {
    e.map(|r| r.rlimits.iter().map(|l| (l.cur, l.max)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlimits_round_trip() {
        let l = [[1, 2], [u64::MAX, u64::MAX]];
        assert_eq!(describe(Some(&dump(&l))), vec![(1, 2), (u64::MAX, u64::MAX)]);
        assert!(describe(None).is_empty());
    }
}
