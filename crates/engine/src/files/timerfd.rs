//! timerfd: a TIMERFD entry in files.img with the clock, the settime flags,
//! the remaining time and interval (relative, as fdinfo shows them) and the
//! expirations not read yet (`ticks`). Restored with timerfd_create +
//! timerfd_settime, then TFD_IOC_SET_TICKS (CONFIG_CHECKPOINT_RESTORE) puts
//! the unread expirations back.

use super::anon::{self, fdinfo_text, is_anon, set_status_flags};
use super::set::open_err;
use super::{fown, DescribeCx, FdCtx, FdKind, FileError, FileTable, OpenError, OpenFile, RestoreCx, SetError};
use crate::sys::files as sys;
use cryo_image::pb;
use std::os::fd::OwnedFd;

pub struct Timerfd;

/// What fdinfo says of a timerfd.
#[derive(Debug, PartialEq, Eq)]
pub struct TimerfdInfo {
    pub clockid: u32,
    pub ticks: u64,
    pub settime_flags: u32,
    /// (seconds, nanoseconds) left until the next expiry.
    pub value: (u64, u64),
    pub interval: (u64, u64),
}

/// "(sec, nsec)".
fn pair(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.trim().strip_prefix('(')?.strip_suffix(')')?.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Parse a timerfd's fdinfo text.
pub fn parse(text: &str) -> Result<TimerfdInfo, String> {
    Ok(TimerfdInfo {
        clockid: anon::need(text, "clockid", |v| v.parse().ok())?,
        ticks: anon::need(text, "ticks", anon::dec64)?,
        settime_flags: anon::need(text, "settime flags", |v| u32::from_str_radix(v, 8).ok())?,
        value: anon::need(text, "it_value", pair)?,
        interval: anon::need(text, "it_interval", pair)?,
    })
}

impl FdKind for Timerfd {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Timerfd
    }

    fn detect(&self, c: &FdCtx) -> bool {
        is_anon(c, "[timerfd]")
    }

    fn dump(&self, c: &FdCtx, id: u32, _t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        let i = parse(&fdinfo_text(c)?).map_err(|e| c.unsupported(format!("timerfd: {e}")))?;
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Timerfd as i32,
            id,
            tfd: Some(pb::TimerfdEntry {
                id,
                flags: c.flags(),
                fown: fown(),
                clockid: i.clockid,
                ticks: i.ticks,
                settime_flags: i.settime_flags,
                vsec: i.value.0,
                vnsec: i.value.1,
                isec: i.interval.0,
                insec: i.interval.1,
            }),
            ..Default::default()
        })
    }

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        anon::describe_body(e, cx, e.tfd, check, TimerfdFile)
    }
}

/// Clocks a timerfd can use.
const CLOCKS: &[u32] = &[
    libc::CLOCK_REALTIME as u32,
    libc::CLOCK_MONOTONIC as u32,
    libc::CLOCK_BOOTTIME as u32,
    libc::CLOCK_REALTIME_ALARM as u32,
    libc::CLOCK_BOOTTIME_ALARM as u32,
];

/// Validation of an image entry.
pub fn check(e: &pb::TimerfdEntry) -> Result<(), String> {
    if !CLOCKS.contains(&e.clockid) {
        return Err(format!("clock id {} is not one a timerfd can use", e.clockid));
    }
    let known = (libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET) as u32;
    if e.settime_flags & !known != 0 {
        return Err(format!("unknown settime flags {:#x}", e.settime_flags));
    }
    if e.vnsec >= 1_000_000_000 || e.insec >= 1_000_000_000 || e.vsec > i64::MAX as u64 || e.isec > i64::MAX as u64 {
        return Err(format!(
            "time out of range: value ({}, {}), interval ({}, {})",
            e.vsec, e.vnsec, e.isec, e.insec
        ));
    }
    Ok(())
}

// ---- Restore side -------------------------------------------------------

/// A timerfd to recreate (its files.img entry).
#[derive(Clone, Debug)]
pub struct TimerfdFile(pub pb::TimerfdEntry);

impl OpenFile for TimerfdFile {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Timerfd
    }

    /// A new timerfd on the dumped clock, armed with the time that was left
    /// and the interval, holding the unread expirations.
    fn restore(&self, id: u32, _cx: &mut RestoreCx) -> Result<Option<OwnedFd>, OpenError> {
        let e = &self.0;
        let object = format!("timerfd (file id {id}, clock {})", e.clockid);
        let err = |r: String| open_err(pb::FdTypes::Timerfd, &object, r);
        let fl = libc::TFD_CLOEXEC | (e.flags as i32 & libc::TFD_NONBLOCK);
        let fd = sys::timerfd_create(e.clockid, fl).map_err(|x| err(format!("timerfd_create: {x}")))?;
        let ts = |s: u64, ns: u64| libc::timespec {
            tv_sec: s as libc::time_t,
            tv_nsec: ns as libc::c_long,
        };
        let mut value = ts(e.vsec, e.vnsec);
        let interval = ts(e.isec, e.insec);
        let armed = e.vsec != 0 || e.vnsec != 0;
        if !armed && (e.isec != 0 || e.insec != 0) {
            // A periodic timer that has expired and not been read has no time
            // left in fdinfo (the kernel forwards it on read): a zero value
            // would disarm it, so it fires again one interval from now.
            value = interval;
        }
        let abs = e.settime_flags as i32 & libc::TFD_TIMER_ABSTIME != 0;
        if abs && (value.tv_sec != 0 || value.tv_nsec != 0) {
            // The image holds the time left; an absolute timer needs the date.
            let (s, ns) = crate::sys::clock_gettime(e.clockid as libc::clockid_t);
            let total = value.tv_nsec as u64 + ns;
            value.tv_sec += s as libc::time_t + (total / 1_000_000_000) as libc::time_t;
            value.tv_nsec = (total % 1_000_000_000) as libc::c_long;
        }
        let its = libc::itimerspec {
            it_interval: interval,
            it_value: value,
        };
        sys::timerfd_settime(&fd, e.settime_flags as i32, &its).map_err(|x| err(format!("timerfd_settime: {x}")))?;
        if e.ticks != 0 {
            // After settime (which clears the count).
            sys::timerfd_set_ticks(&fd, e.ticks).map_err(|x| {
                err(format!(
                    "TFD_IOC_SET_TICKS {} (kernel without CONFIG_CHECKPOINT_RESTORE?): {x}",
                    e.ticks
                ))
            })?;
        }
        set_status_flags(&fd, e.flags).map_err(|x| err(x.to_string()))?;
        Ok(Some(fd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timerfd_fdinfo() {
        let t = "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1030\nclockid: 1\nticks: 3\nsettime flags: 01\n\
                 it_value: (0, 165467889)\nit_interval: (2, 200000000)\n";
        assert_eq!(
            parse(t).unwrap(),
            TimerfdInfo {
                clockid: 1,
                ticks: 3,
                settime_flags: 1,
                value: (0, 165467889),
                interval: (2, 200000000)
            }
        );
        assert!(parse("clockid: 1\nticks: 0\n").is_err());
    }

    #[test]
    fn bad_entries_are_refused() {
        let mut e = pb::TimerfdEntry {
            clockid: 1,
            ..Default::default()
        };
        assert!(check(&e).is_ok());
        e.clockid = 77;
        assert!(check(&e).unwrap_err().contains("clock id 77"));
        e.clockid = 0;
        e.vnsec = 2_000_000_000;
        assert!(check(&e).is_err());
    }
}
