//! Timers of a process: the three itimers and the POSIX timers
//! (`TaskTimersEntry` in its task core).

use crate::proc::PosixTimerInfo;
use cryo_abi::parasite::{Itimerval, PosixTimer as ParasiteTimer};
use cryo_image::pb;

/// Why the timers of a task core cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    #[error("POSIX timer {id} signals thread {tid}, which is not a thread of this process")]
    ForeignThread { id: i32, tid: i32 },
}

/// An itimer (`struct itimerval`: seconds, microseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Itimer {
    pub interval_sec: i64,
    pub interval_usec: i64,
    pub value_sec: i64,
    pub value_usec: i64,
}

/// A POSIX timer: created with `timer_create(clock, sigev)` until the
/// kernel hands out `id`, then armed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PosixTimer {
    pub id: i32,
    pub clock: i32,
    /// The kernel's sigev_notify (with SIGEV_THREAD_ID for a thread target).
    pub sigev_notify: i32,
    pub sigev_signo: i32,
    pub sigev_value: u64,
    /// The target thread of a SIGEV_THREAD_ID timer (0: none).
    pub notify_tid: i32,
    pub interval_sec: i64,
    pub interval_nsec: i64,
    pub value_sec: i64,
    pub value_nsec: i64,
}

/// The timers of a process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timers {
    /// ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF.
    pub itimers: [Itimer; 3],
    /// By id.
    pub posix: Vec<PosixTimer>,
}

fn itimer(t: &Itimerval) -> pb::ItimerEntry {
    pb::ItimerEntry {
        isec: t.interval_sec as u64,
        iusec: t.interval_usec as u64,
        vsec: t.value_sec as u64,
        vusec: t.value_usec as u64,
    }
}

/// Dump: the itimers (parasite), the POSIX timers as /proc/PID/timers
/// lists them (`info`) with their times (parasite, same order).
pub fn dump(it: &[Itimerval], info: &[PosixTimerInfo], posix: &[ParasiteTimer]) -> pb::TaskTimersEntry {
    let posix = info
        .iter()
        .zip(posix)
        .map(|(i, p)| pb::PosixTimerEntry {
            it_id: i.id as u32,
            clock_id: i.clock_id as u32,
            si_signo: i.signo as u32,
            // The kernel's sigev_notify: the kind, plus SIGEV_THREAD_ID for a
            // signal aimed at one thread (how glibc runs SIGEV_THREAD timers).
            it_sigev_notify: match i.notify.as_str() {
                "none" => libc::SIGEV_NONE as u32,
                "thread" => libc::SIGEV_THREAD as u32,
                _ => libc::SIGEV_SIGNAL as u32,
            } | if i.to_thread { libc::SIGEV_THREAD_ID as u32 } else { 0 },
            sival_ptr: i.sival_ptr,
            overrun: p.overrun as u32,
            isec: p.interval_sec as u64,
            insec: p.interval_nsec as u64,
            vsec: p.value_sec as u64,
            vnsec: p.value_nsec as u64,
            notify_thread_id: i.to_thread.then_some(i.notify_tid),
        })
        .collect();
    pb::TaskTimersEntry {
        real: itimer(&it[0]),
        virt: itimer(&it[1]),
        prof: itimer(&it[2]),
        posix,
    }
}

/// Describe: the entry (none: no timers), POSIX timers sorted by id.
pub fn describe(timers: Option<&pb::TaskTimersEntry>) -> Timers {
    let it = |e: Option<&pb::ItimerEntry>| {
        e.map_or(Itimer::default(), |e| Itimer {
            interval_sec: e.isec as i64,
            interval_usec: e.iusec as i64,
            value_sec: e.vsec as i64,
            value_usec: e.vusec as i64,
        })
    };
    let itimers = [
        it(timers.map(|t| &t.real)),
        it(timers.map(|t| &t.virt)),
        it(timers.map(|t| &t.prof)),
    ];
    let mut posix: Vec<PosixTimer> = timers
        .map(|t| t.posix.as_slice())
        .unwrap_or(&[])
        .iter()
        .map(|t| PosixTimer {
            id: t.it_id as i32,
            clock: t.clock_id as i32,
            sigev_notify: t.it_sigev_notify as i32,
            sigev_signo: t.si_signo as i32,
            sigev_value: t.sival_ptr,
            notify_tid: t.notify_thread_id.unwrap_or(0),
            interval_sec: t.isec as i64,
            interval_nsec: t.insec as i64,
            value_sec: t.vsec as i64,
            value_nsec: t.vnsec as i64,
        })
        .collect();
    posix.sort_by_key(|t| t.id);
    Timers { itimers, posix }
}

impl Timers {
    /// A timer aimed at one thread (SIGEV_THREAD_ID) must name a thread of
    /// the process (`tids`): the kernel would refuse another, and a wrong
    /// target would leave the thread that waits for it hanging.
    pub fn check(&self, tids: &[i32]) -> Result<(), TimerError> {
        for t in &self.posix {
            if t.sigev_notify & libc::SIGEV_THREAD_ID != 0 && !tids.contains(&t.notify_tid) {
                return Err(TimerError::ForeignThread {
                    id: t.id,
                    tid: t.notify_tid,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_round_trip_and_thread_targets_are_checked() {
        let it = [
            Itimerval {
                interval_sec: 1,
                interval_usec: 2,
                value_sec: 3,
                value_usec: 4,
            },
            Itimerval::default(),
            Itimerval::default(),
        ];
        let info = |id, to_thread| PosixTimerInfo {
            id,
            signo: 10,
            sival_ptr: 0x55,
            notify: "signal".into(),
            to_thread,
            notify_tid: if to_thread { 42 } else { 0 },
            clock_id: 1,
        };
        let pt = |id| ParasiteTimer {
            id,
            overrun: 0,
            interval_sec: 0,
            interval_nsec: 5,
            value_sec: 6,
            value_nsec: 7,
        };
        let e = dump(&it, &[info(3, true), info(1, false)], &[pt(3), pt(1)]);
        let t = describe(Some(&e));
        assert_eq!(t.itimers[0].value_usec, 4);
        assert_eq!(t.posix.iter().map(|p| p.id).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(t.posix[1].sigev_notify, libc::SIGEV_SIGNAL | libc::SIGEV_THREAD_ID);
        assert!(t.check(&[40, 42]).is_ok());
        let err = t.check(&[40]).unwrap_err().to_string();
        assert!(err.contains("POSIX timer 3 signals thread 42"), "{err}");
        assert_eq!(describe(None), Timers::default());
    }
}
