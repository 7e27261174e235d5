//! seccomp of threads: the filter programs of seccomp.img (shared by the
//! threads and processes that inherited them) and each thread's mode and
//! newest filter (in its thread core).

use cryo_image::pb;

/// SECCOMP_FILTER_FLAG_TSYNC: a way of installing, not a property of a filter.
const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;
/// Flags a restored filter may carry: LOG, SPEC_ALLOW (NEW_LISTENER and
/// TSYNC_ESRCH need a listener fd nobody would hold).
const SECCOMP_FLAGS_KNOWN: u32 = 2 | 4;
/// BPF_MAXINSNS.
const BPF_MAXINSNS: usize = 4096;

/// Why seccomp state cannot be restored. The first three are about
/// seccomp.img, the others about a thread's core.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("filter {i}: {len} bytes is not a BPF program of 1..={BPF_MAXINSNS} instructions")]
    Program { i: usize, len: usize },
    #[error("filter {i}: seccomp filter flags {flags:#x} is not supported by cryo restore yet")]
    Flags { i: usize, flags: u32 },
    #[error("filter {i}: prev {prev} names no other filter")]
    Prev { i: usize, prev: u32 },
    #[error("seccomp filter {i} is not in seccomp.img ({n} filters)")]
    Missing { i: u32, n: usize },
    #[error("the seccomp chain from filter {newest} loops")]
    Loop { newest: u32 },
    #[error("seccomp filter mode without a filter")]
    NoFilter,
    #[error("seccomp mode {0} is not supported by cryo restore yet")]
    Mode(i32),
}

/// A thread's seccomp state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seccomp {
    Off,
    /// SECCOMP_MODE_STRICT.
    Strict,
    /// SECCOMP_MODE_FILTER: indices into the filter table, oldest first
    /// (the kernel runs the newest first). Threads with the same newest
    /// filter share the chain.
    Filters(Vec<u32>),
}

/// One filter of seccomp.img.
#[derive(Clone, Debug)]
pub struct SeccompProg {
    /// `struct sock_filter` instructions, 8 bytes each.
    pub insns: Vec<u8>,
    /// SECCOMP_FILTER_FLAG_* it was installed with (TSYNC masked out).
    pub flags: u32,
}

// ---- dump ----

/// Dump: the filters of every thread, shared where they are the same.
#[derive(Debug, Default)]
pub struct Filters {
    /// (BPF program, index of the older filter it runs after,
    /// SECCOMP_FILTER_FLAG_* it was installed with).
    list: Vec<(Vec<u8>, Option<u32>, u32)>,
}

impl Filters {
    /// Add a thread's chain (oldest first: program and flags); a filter
    /// already there with the same program and predecessor is shared, as
    /// forked children and TSYNC'd threads share them. Returns the index of
    /// the thread's newest filter (None: an empty chain).
    pub fn add_chain(&mut self, chain: Vec<(Vec<u8>, u32)>) -> Option<u32> {
        let mut prev: Option<u32> = None;
        for (f, flags) in chain {
            let idx = match self
                .list
                .iter()
                .position(|(g, p, fl)| *g == f && *p == prev && *fl == flags)
            {
                Some(i) => i as u32,
                None => {
                    self.list.push((f, prev, flags));
                    self.list.len() as u32 - 1
                }
            };
            prev = Some(idx);
        }
        prev
    }

    /// The seccomp.img entry.
    pub fn entry(&self) -> pb::SeccompEntry {
        pb::SeccompEntry {
            seccomp_filters: self
                .list
                .iter()
                .map(|(f, prev, flags)| pb::SeccompFilter {
                    filter: f.clone(),
                    prev: *prev,
                    flags: (*flags != 0).then_some(*flags),
                })
                .collect(),
        }
    }
}

/// Dump: a thread core's (seccomp_mode, seccomp_filter) from the mode in
/// /proc/TID/status and the newest filter's index (mode 2).
pub fn thread_fields(mode: u32, newest: Option<u32>) -> (Option<i32>, Option<u32>) {
    ((mode != 0).then_some(mode as i32), newest)
}

// ---- restore ----

/// seccomp.img, validated: every program, and each one's predecessor.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub progs: Vec<SeccompProg>,
    pub prev: Vec<Option<u32>>,
}

/// Describe: the entries of seccomp.img.
pub fn describe(entries: &[pb::SeccompEntry]) -> Result<Table, SeccompError> {
    let filters: Vec<&pb::SeccompFilter> = entries.iter().flat_map(|e| e.seccomp_filters.iter()).collect();
    let mut t = Table::default();
    for (i, f) in filters.iter().enumerate() {
        let n = f.filter.len() / 8;
        if f.filter.len() % 8 != 0 || n == 0 || n > BPF_MAXINSNS {
            return Err(SeccompError::Program { i, len: f.filter.len() });
        }
        let flags = f.flags.unwrap_or(0) & !SECCOMP_FILTER_FLAG_TSYNC;
        if flags & !SECCOMP_FLAGS_KNOWN != 0 {
            return Err(SeccompError::Flags { i, flags });
        }
        if let Some(p) = f.prev {
            if p as usize >= filters.len() || p as usize == i {
                return Err(SeccompError::Prev { i, prev: p });
            }
        }
        t.progs.push(SeccompProg {
            insns: f.filter.clone(),
            flags,
        });
        t.prev.push(f.prev);
    }
    Ok(t)
}

impl Table {
    /// The chain ending at filter `newest`, oldest first.
    pub fn chain(&self, newest: u32) -> Result<Vec<u32>, SeccompError> {
        chain(newest, &self.prev)
    }

    /// Describe a thread's seccomp fields against the table.
    pub fn thread(&self, mode: Option<i32>, newest: Option<u32>) -> Result<Seccomp, SeccompError> {
        match mode.unwrap_or(0) {
            0 => Ok(Seccomp::Off),
            1 => Ok(Seccomp::Strict),
            2 => Ok(Seccomp::Filters(self.chain(newest.ok_or(SeccompError::NoFilter)?)?)),
            m => Err(SeccompError::Mode(m)),
        }
    }
}

fn chain(newest: u32, prev: &[Option<u32>]) -> Result<Vec<u32>, SeccompError> {
    let mut chain = Vec::new();
    let mut cur = Some(newest);
    while let Some(i) = cur {
        let Some(&p) = prev.get(i as usize) else {
            return Err(SeccompError::Missing { i, n: prev.len() });
        };
        if chain.len() > prev.len() {
            return Err(SeccompError::Loop { newest });
        }
        chain.push(i);
        cur = p;
    }
    chain.reverse();
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_chains_are_oldest_first_and_checked() {
        // 0 <- 1 <- 2, and 3 <- 1 is not possible: 3 follows 0 (a fork
        // that added another filter).
        let prev = [None, Some(0), Some(1), Some(0)];
        assert_eq!(chain(2, &prev).unwrap(), vec![0, 1, 2]);
        assert_eq!(chain(3, &prev).unwrap(), vec![0, 3]);
        assert_eq!(chain(0, &prev).unwrap(), vec![0]);
        let e = chain(4, &prev).unwrap_err().to_string();
        assert!(e.contains("filter 4"), "{e}");
        let looped = [Some(1), Some(0)];
        let e = chain(0, &looped).unwrap_err().to_string();
        assert!(e.contains("loops"), "{e}");
    }

    #[test]
    fn dumped_filters_are_shared_and_described_back() {
        let mut f = Filters::default();
        let a = (vec![1u8; 8], 0);
        let b = (vec![2u8; 8], 2);
        assert_eq!(f.add_chain(vec![a.clone(), b.clone()]), Some(1));
        assert_eq!(f.add_chain(vec![a.clone()]), Some(0));
        assert_eq!(f.add_chain(vec![a, (vec![3u8; 16], 0)]), Some(2));
        assert_eq!(f.add_chain(Vec::new()), None);
        let t = describe(&[f.entry()]).unwrap();
        assert_eq!(t.prev, vec![None, Some(0), Some(0)]);
        assert_eq!(t.progs[1].flags, 2);
        assert_eq!(t.thread(Some(2), Some(2)).unwrap(), Seccomp::Filters(vec![0, 2]));
        assert_eq!(t.thread(None, None).unwrap(), Seccomp::Off);
        assert!(matches!(t.thread(Some(2), None), Err(SeccompError::NoFilter)));
        assert!(matches!(t.thread(Some(7), None), Err(SeccompError::Mode(7))));
        let bad = pb::SeccompEntry {
            seccomp_filters: vec![pb::SeccompFilter {
                filter: vec![0; 8],
                prev: None,
                flags: Some(8),
            }],
        };
        assert!(matches!(describe(&[bad]), Err(SeccompError::Flags { i: 0, flags: 8 })));
    }
}
