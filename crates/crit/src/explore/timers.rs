//! `crit x DIR timers`: interval timers (real, virtual, prof) and POSIX timers of each process.

use serde::Serialize;

use cryo_image::{pb, ImageSet};

use super::sigacts::signal_name;
use super::table::{Align, Table};
use super::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Itimer {
    /// real, virt, prof.
    pub which: String,
    /// Time to the next expiry, microseconds.
    pub value_us: u64,
    /// Interval, microseconds (0: one-shot).
    pub interval_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PosixTimer {
    pub id: u32,
    pub clock: String,
    pub signal: u32,
    pub notify: String,
    pub value_ns: u64,
    pub interval_ns: u64,
    pub overrun: u32,
    pub sival_ptr: u64,
    pub notify_thread: Option<i32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcTimers {
    pub pid: u32,
    pub itimers: Vec<Itimer>,
    pub posix: Vec<PosixTimer>,
}

/// Name of a clock id.
pub fn clock_name(id: u32) -> String {
    match id {
        0 => "REALTIME".into(),
        1 => "MONOTONIC".into(),
        2 => "PROCESS_CPUTIME".into(),
        3 => "THREAD_CPUTIME".into(),
        4 => "MONOTONIC_RAW".into(),
        5 => "REALTIME_COARSE".into(),
        6 => "MONOTONIC_COARSE".into(),
        7 => "BOOTTIME".into(),
        8 => "REALTIME_ALARM".into(),
        9 => "BOOTTIME_ALARM".into(),
        11 => "TAI".into(),
        n => format!("clock {n}"),
    }
}

fn notify_name(n: u32) -> String {
    match n {
        0 => "SIGNAL".into(),
        1 => "NONE".into(),
        2 => "THREAD".into(),
        4 => "THREAD_ID".into(),
        6 => "SIGNAL|THREAD_ID".into(),
        n => n.to_string(),
    }
}

pub fn build(set: &ImageSet, procs: &[pb::PstreeEntry]) -> Result<Vec<ProcTimers>> {
    let mut out = Vec::new();
    for p in procs {
        let tc = set.core(p.pid)?.tc.unwrap_or_default();
        let t = tc.timers.unwrap_or_default();
        let it = |which: &str, e: &pb::ItimerEntry| Itimer {
            which: which.into(),
            value_us: e.vsec.saturating_mul(1_000_000).saturating_add(e.vusec),
            interval_us: e.isec.saturating_mul(1_000_000).saturating_add(e.iusec),
        };
        out.push(ProcTimers {
            pid: p.pid,
            itimers: vec![it("real", &t.real), it("virt", &t.virt), it("prof", &t.prof)],
            posix: t
                .posix
                .iter()
                .map(|x| PosixTimer {
                    id: x.it_id,
                    clock: clock_name(x.clock_id),
                    signal: x.si_signo,
                    notify: notify_name(x.it_sigev_notify),
                    value_ns: x.vsec.saturating_mul(1_000_000_000).saturating_add(x.vnsec),
                    interval_ns: x.isec.saturating_mul(1_000_000_000).saturating_add(x.insec),
                    overrun: x.overrun,
                    sival_ptr: x.sival_ptr,
                    notify_thread: x.notify_thread_id,
                })
                .collect(),
        });
    }
    Ok(out)
}

/// Seconds with up to nine decimals, trailing zeros cut (`1.5s`, `0s`).
fn secs(ns: u64) -> String {
    let s = format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}s")
}

pub fn render(procs: &[ProcTimers]) -> String {
    let mut s = String::new();
    for p in procs {
        s.push_str(&format!("{}\n", p.pid));
        let mut t = Table::new(&[
            ("TIMER", Align::Left),
            ("VALUE", Align::Right),
            ("INTERVAL", Align::Right),
        ]);
        for i in &p.itimers {
            t.row(vec![
                format!("itimer {}", i.which),
                if i.value_us == 0 {
                    "off".into()
                } else {
                    secs(i.value_us.saturating_mul(1000))
                },
                secs(i.interval_us.saturating_mul(1000)),
            ]);
        }
        s.push_str(&t.render_indented("\t"));
        if p.posix.is_empty() {
            s.push_str("\tno POSIX timers\n");
            continue;
        }
        let mut t = Table::new(&[
            ("ID", Align::Right),
            ("CLOCK", Align::Left),
            ("NOTIFY", Align::Left),
            ("SIGNAL", Align::Left),
            ("VALUE", Align::Right),
            ("INTERVAL", Align::Right),
            ("OVERRUN", Align::Right),
        ]);
        for x in &p.posix {
            t.row(vec![
                x.id.to_string(),
                x.clock.clone(),
                match x.notify_thread {
                    Some(tid) => format!("{} ({tid})", x.notify),
                    None => x.notify.clone(),
                },
                signal_name(x.signal),
                if x.value_ns == 0 {
                    "off".into()
                } else {
                    secs(x.value_ns)
                },
                secs(x.interval_ns),
                x.overrun.to_string(),
            ]);
        }
        s.push_str(&t.render_indented("\t"));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn secs() {
        assert_eq!(super::secs(1_500_000_000), "1.5s");
        assert_eq!(super::secs(0), "0s");
        assert_eq!(super::secs(250), "0.00000025s");
    }
}
