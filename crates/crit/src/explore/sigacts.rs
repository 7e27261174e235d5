//! `crit x DIR sigacts`: signal dispositions of each process, and each thread's blocked mask and pending
//! signals.

use serde::Serialize;

use cryo_image::{pb, ImageSet};

use super::table::{Align, Table};
use super::{threads_of, Result};

/// Name of signal `n` (x86_64 numbering; real-time signals counted from the kernel's SIGRTMIN, 32: glibc
/// keeps 32 and 33 for itself and calls 34 its SIGRTMIN).
pub fn signal_name(n: u32) -> String {
    const NAMES: [&str; 32] = [
        "0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match n {
        1..=31 => NAMES[n as usize].into(),
        32 => "SIGRTMIN".into(),
        64 => "SIGRTMAX".into(),
        33..=63 => format!("SIGRTMIN+{}", n - 32),
        _ => format!("SIG{n}"),
    }
}

/// Names of the signals in a mask (bit n-1 is signal n).
pub fn mask_names(mask: u64) -> Vec<String> {
    (1..=64)
        .filter(|n| mask & (1u64 << (n - 1)) != 0)
        .map(signal_name)
        .collect()
}

const SA_FLAGS: &[(u64, &str)] = &[
    (0x1, "NOCLDSTOP"),
    (0x2, "NOCLDWAIT"),
    (0x4, "SIGINFO"),
    (0x0400_0000, "RESTORER"),
    (0x0800_0000, "ONSTACK"),
    (0x1000_0000, "RESTART"),
    (0x4000_0000, "NODEFER"),
    (0x8000_0000, "RESETHAND"),
];

/// `SA_*` flag names joined by `|`.
pub fn sa_flags(flags: u64) -> String {
    let mut names: Vec<String> = Vec::new();
    let mut rest = flags;
    for &(bit, n) in SA_FLAGS {
        if flags & bit != 0 {
            names.push(n.into());
            rest &= !bit;
        }
    }
    if rest != 0 {
        names.push(format!("{rest:#x}"));
    }
    if names.is_empty() {
        "0".into()
    } else {
        names.join("|")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Sigaction {
    pub signal: u32,
    pub name: String,
    /// SIG_DFL, SIG_IGN or the handler address in hex.
    pub handler: String,
    pub flags: u64,
    pub mask: u64,
    pub restorer: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThreadSignals {
    pub tid: u32,
    pub blocked: u64,
    /// Signals queued for this thread.
    pub pending: Vec<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcSignals {
    pub pid: u32,
    /// Every signal but SIGKILL and SIGSTOP, in order.
    pub actions: Vec<Sigaction>,
    /// Signals queued for the whole process.
    pub shared_pending: Vec<u32>,
    pub threads: Vec<ThreadSignals>,
}

fn queued(q: Option<&pb::SignalQueueEntry>) -> Vec<u32> {
    // Each siginfo is the raw kernel struct: si_signo is its first int.
    q.map(|q| {
        q.signals
            .iter()
            .filter_map(|s| s.siginfo.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect()
    })
    .unwrap_or_default()
}

pub fn build(set: &ImageSet, procs: &[pb::PstreeEntry]) -> Result<Vec<ProcSignals>> {
    let mut out = Vec::new();
    for p in procs {
        let core = set.core(p.pid)?;
        let tc = core.tc.clone().unwrap_or_default();
        // CRIU stores signals 1..=64 without SIGKILL (9) and SIGSTOP (19).
        let signals = (1..=64u32).filter(|&s| s != 9 && s != 19);
        let actions = signals
            .zip(tc.sigactions.iter())
            .map(|(signal, sa)| Sigaction {
                signal,
                name: signal_name(signal),
                handler: match sa.sigaction {
                    0 => "SIG_DFL".into(),
                    1 => "SIG_IGN".into(),
                    a => format!("{a:#x}"),
                },
                flags: sa.flags,
                mask: sa.mask,
                restorer: sa.restorer,
            })
            .collect();
        let mut threads = Vec::new();
        for tid in threads_of(p) {
            let c = if tid == p.pid { core.clone() } else { set.core(tid)? };
            let th = c.thread_core.unwrap_or_default();
            threads.push(ThreadSignals {
                tid,
                blocked: th.blk_sigset.unwrap_or(if tid == p.pid { tc.blk_sigset } else { 0 }),
                pending: queued(th.signals_p.as_ref()),
            });
        }
        out.push(ProcSignals {
            pid: p.pid,
            actions,
            shared_pending: queued(tc.signals_s.as_ref()),
            threads,
        });
    }
    Ok(out)
}

/// Per process: the non-default dispositions as a table, then blocked and pending signals per thread.
pub fn render(procs: &[ProcSignals]) -> String {
    let mut s = String::new();
    for p in procs {
        s.push_str(&format!("{}\n", p.pid));
        let mut t = Table::new(&[
            ("SIG", Align::Right),
            ("NAME", Align::Left),
            ("HANDLER", Align::Left),
            ("FLAGS", Align::Left),
            ("MASK", Align::Left),
            ("RESTORER", Align::Left),
        ]);
        for a in p.actions.iter().filter(|a| a.handler != "SIG_DFL") {
            let mask = mask_names(a.mask);
            t.row(vec![
                a.signal.to_string(),
                a.name.clone(),
                a.handler.clone(),
                sa_flags(a.flags),
                if mask.is_empty() { "-".into() } else { mask.join(",") },
                format!("{:#x}", a.restorer),
            ]);
        }
        if t.is_empty() {
            s.push_str("\tall signals have their default action\n");
        } else {
            s.push_str(&t.render_indented("\t"));
        }
        let names = |v: &[u32]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.iter().map(|&n| signal_name(n)).collect::<Vec<_>>().join(",")
            }
        };
        s.push_str(&format!("\tpending (process): {}\n", names(&p.shared_pending)));
        for th in &p.threads {
            let b = mask_names(th.blocked);
            s.push_str(&format!(
                "\tthread {}: blocked {}; pending {}\n",
                th.tid,
                if b.is_empty() { "-".into() } else { b.join(",") },
                names(&th.pending)
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(signal_name(10), "SIGUSR1");
        assert_eq!(signal_name(36), "SIGRTMIN+4");
        assert_eq!(signal_name(32), "SIGRTMIN");
        assert_eq!(mask_names(1 << 9 | 1 << 1), vec!["SIGINT", "SIGUSR1"]);
        assert_eq!(sa_flags(0x0400_0004), "SIGINFO|RESTORER");
        assert_eq!(sa_flags(0), "0");
    }
}
