//! Creds/Signals/Timers: credentials and capabilities, blocked and pending signals, handlers, interval and
//! POSIX timers (`t`: next thread).

use ratatui::layout::Rect;
use ratatui::Frame;

use super::regs::State;
use crate::model::{signal_name, sigset, ProcDetail};

fn caps(v: &[u32]) -> String {
    let lo = v.first().copied().unwrap_or(0) as u64;
    let hi = v.get(1).copied().unwrap_or(0) as u64;
    format!("{:016x}", hi << 32 | lo)
}

fn secs(s: u64, us: u64) -> String {
    format!("{s}.{us:06}s")
}

/// The text of the tab. Lines starting with `─` are section headings.
pub fn lines(det: &ProcDetail, thread: usize) -> Vec<String> {
    let mut out = Vec::new();
    let Some(t) = det.threads.get(thread) else {
        out.push("no threads".into());
        return out;
    };
    out.push(format!(
        "thread {} ({}/{})   t: next thread",
        t.tid,
        thread + 1,
        det.threads.len()
    ));
    let Some(core) = &t.core else {
        out.push(t.error.clone().unwrap_or_default());
        return out;
    };
    let th = core.thread_core.as_ref();
    // Task-wide state lives in the main thread's core image.
    let tc = det
        .threads
        .first()
        .and_then(|m| m.core.as_ref())
        .and_then(|c| c.tc.as_ref());
    out.push("─ credentials".into());
    match th.and_then(|t| t.creds.as_ref()) {
        Some(c) => {
            out.push(format!(
                "uid {} euid {} suid {} fsuid {}",
                c.uid, c.euid, c.suid, c.fsuid
            ));
            out.push(format!(
                "gid {} egid {} sgid {} fsgid {}",
                c.gid, c.egid, c.sgid, c.fsgid
            ));
            let groups: Vec<String> = c.groups.iter().map(|g| g.to_string()).collect();
            out.push(format!(
                "groups {}",
                if groups.is_empty() {
                    "none".into()
                } else {
                    groups.join(",")
                }
            ));
            out.push(format!("cap eff {}  prm {}", caps(&c.cap_eff), caps(&c.cap_prm)));
            out.push(format!("cap inh {}  bnd {}", caps(&c.cap_inh), caps(&c.cap_bnd)));
            out.push(format!("cap amb {}  secbits {:#x}", caps(&c.cap_amb), c.secbits));
            out.push(format!(
                "no_new_privs {}  seccomp {}",
                c.no_new_privs.unwrap_or(0),
                match th.and_then(|t| t.seccomp_mode).unwrap_or(0) {
                    0 => "disabled",
                    1 => "strict",
                    _ => "filter",
                }
            ));
            if let Some(l) = &c.lsm_profile {
                out.push(format!("lsm {l}"));
            }
        }
        None => out.push("no credentials in this core image".into()),
    }
    out.push("─ signals".into());
    let blocked = th.and_then(|t| t.blk_sigset).or(tc.map(|t| t.blk_sigset)).unwrap_or(0);
    out.push(format!("blocked {}", sigset(blocked)));
    let pend_t = th.and_then(|t| t.signals_p.as_ref()).map_or(0, |q| q.signals.len());
    let pend_s = tc.and_then(|t| t.signals_s.as_ref()).map_or(0, |q| q.signals.len());
    out.push(format!("pending: {pend_t} for the thread, {pend_s} shared"));
    if let Some(tc) = tc {
        // CRIU stores actions for signals 1..=64 except SIGKILL and SIGSTOP.
        let sigs = (1..=64u64).filter(|s| *s != 9 && *s != 19);
        let set: Vec<String> = sigs
            .zip(&tc.sigactions)
            .filter(|(_, a)| a.sigaction != 0)
            .map(|(s, a)| {
                let h = match a.sigaction {
                    1 => "SIG_IGN".to_string(),
                    h => format!("{h:#x}"),
                };
                format!(
                    "  {:<7} {h:<16} flags {:#x} mask {}",
                    signal_name(s),
                    a.flags,
                    sigset(a.mask)
                )
            })
            .collect();
        if set.is_empty() {
            out.push("handlers: all default".into());
        } else {
            out.push(format!("handlers ({} set, others default):", set.len()));
            out.extend(set);
        }
    }
    out.push("─ timers".into());
    match tc.and_then(|t| t.timers.as_ref()) {
        Some(tm) => {
            for (n, it) in [("real", &tm.real), ("virt", &tm.virt), ("prof", &tm.prof)] {
                let armed = it.vsec != 0 || it.vusec != 0;
                out.push(format!(
                    "itimer {n:<4} {}",
                    if armed {
                        format!("next {} every {}", secs(it.vsec, it.vusec), secs(it.isec, it.iusec))
                    } else {
                        "off".into()
                    }
                ));
            }
            if tm.posix.is_empty() {
                out.push("posix timers: none".into());
            }
            for p in &tm.posix {
                out.push(format!(
                    "posix id {} clock {} sig {} next {}.{:09}s every {}.{:09}s overrun {}",
                    p.it_id,
                    p.clock_id,
                    signal_name(p.si_signo as u64),
                    p.vsec,
                    p.vnsec,
                    p.isec,
                    p.insec,
                    p.overrun
                ));
            }
        }
        None => out.push("no timers in this core image".into()),
    }
    out
}

pub fn draw(f: &mut Frame, area: Rect, det: &ProcDetail, st: &mut State) {
    let text = lines(det, st.thread);
    super::draw_text(f, area, &text, &mut st.scroll);
}
