//! Signal dispositions of a process (`SaEntry`s in its task core).

use cryo_abi::parasite::KSigaction;
use cryo_image::pb;

/// Why the sigactions of a task core cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum SigactionError {
    #[error("compat sigaction for signal {signo} is not supported by cryo restore yet")]
    Compat { signo: usize },
}

/// One signal's disposition, in the kernel's `struct sigaction` terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// Dump: the 62 sigactions CRIU stores (signals 1..=64 except SIGKILL and
/// SIGSTOP), from the parasite's 64.
pub fn dump(all: &[KSigaction]) -> Vec<pb::SaEntry> {
    all.iter()
        .enumerate()
        .filter(|(i, _)| *i + 1 != libc::SIGKILL as usize && *i + 1 != libc::SIGSTOP as usize)
        .map(|(_, s)| pb::SaEntry {
            sigaction: s.handler,
            flags: s.flags,
            restorer: s.restorer,
            mask: s.mask,
            compat_sigaction: Some(false),
            mask_extended: None,
        })
        .collect()
}

/// Describe: the entries in image order (native ones only).
pub fn describe(entries: &[pb::SaEntry]) -> Result<Vec<Sigaction>, SigactionError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.compat_sigaction == Some(true) {
                return Err(SigactionError::Compat { signo: i + 1 });
            }
            Ok(Sigaction {
                handler: s.sigaction,
                flags: s.flags,
                restorer: s.restorer,
                mask: s.mask,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigactions_skip_kill_and_stop() {
        let mut all = vec![KSigaction::default(); 64];
        all[9].handler = 0x1234; // SIGUSR1
        let sa = dump(&all);
        assert_eq!(sa.len(), 62);
        assert_eq!(sa[8].sigaction, 0x1234);
        let d = describe(&sa).unwrap();
        assert_eq!(d[8].handler, 0x1234);
        let mut compat = sa.clone();
        compat[3].compat_sigaction = Some(true);
        assert!(describe(&compat).unwrap_err().to_string().contains("signal 4"));
    }
}
