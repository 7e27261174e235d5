//! Time namespaces: `timens-ID.img` (CRIU 4.2's `TimensEntry`) holds the
//! namespace's CLOCK_MONOTONIC and CLOCK_BOOTTIME as its tasks saw them at
//! dump time (CRIU reads them with clock_gettime() inside the namespace;
//! cryo adds the namespace's offsets, /proc/PID/timens_offsets, to its own
//! clocks: the same values). A restore creates a time namespace whose
//! offsets make both clocks go on from the dumped values, writing them
//! before any task enters it.

use cryo_image::pb;

/// CLOCK_MONOTONIC's and CLOCK_BOOTTIME's offsets of a time namespace:
/// (seconds, nanoseconds in 0..1e9), as /proc/PID/timens_offsets lists them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    pub monotonic: (i64, i64),
    pub boottime: (i64, i64),
}

/// Parse /proc/PID/timens_offsets ("monotonic SEC NSEC", "boottime SEC NSEC").
pub fn parse_offsets(text: &str) -> Result<Offsets, String> {
    let mut o = Offsets::default();
    let (mut m, mut b) = (false, false);
    for l in text.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        let [name, s, ns] = w.as_slice() else {
            if w.is_empty() {
                continue;
            }
            return Err(format!("{l:?} is not \"CLOCK SECONDS NANOSECONDS\""));
        };
        let n = |v: &str| v.parse::<i64>().map_err(|_| format!("{l:?}: {v:?} is not a number"));
        let v = (n(s)?, n(ns)?);
        match *name {
            "monotonic" => (o.monotonic, m) = (v, true),
            "boottime" => (o.boottime, b) = (v, true),
            _ => return Err(format!("{l:?}: unknown clock {name:?}")),
        }
    }
    if !(m && b) {
        return Err("monotonic or boottime missing".into());
    }
    Ok(o)
}

fn norm(sec: i64, nsec: i64) -> (i64, i64) {
    let t = sec as i128 * 1_000_000_000 + nsec as i128;
    (t.div_euclid(1_000_000_000) as i64, t.rem_euclid(1_000_000_000) as i64)
}

/// Dump: the clocks inside a time namespace with `off`, now.
pub fn dump(off: &Offsets) -> pb::TimensEntry {
    let at = |clock, (s, ns): (i64, i64)| {
        let (hs, hns) = crate::sys::clock_gettime(clock);
        let (s, ns) = norm(hs as i64 + s, hns as i64 + ns);
        pb::Timespec {
            tv_sec: s as u64,
            tv_nsec: ns as u64,
        }
    };
    pb::TimensEntry {
        monotonic: at(libc::CLOCK_MONOTONIC, off.monotonic),
        boottime: at(libc::CLOCK_BOOTTIME, off.boottime),
    }
}

/// The dumped clocks of a time namespace, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clocks {
    pub monotonic: (u64, u64),
    pub boottime: (u64, u64),
}

impl TryFrom<&pb::TimensEntry> for Clocks {
    type Error = String;

    fn try_from(e: &pb::TimensEntry) -> Result<Clocks, String> {
        let one = |what: &str, t: &pb::Timespec| {
            // The kernel keeps a namespace's clocks below KTIME_SEC_MAX / 2.
            if t.tv_nsec >= 1_000_000_000 || t.tv_sec > (i64::MAX / 1_000_000_000 / 2) as u64 {
                return Err(format!(
                    "{what} clock {}.{:09} is not a valid time",
                    t.tv_sec, t.tv_nsec
                ));
            }
            Ok((t.tv_sec, t.tv_nsec))
        };
        Ok(Clocks {
            monotonic: one("monotonic", &e.monotonic)?,
            boottime: one("boottime", &e.boottime)?,
        })
    }
}

impl Clocks {
    /// The offsets that make a new namespace's clocks read the dumped
    /// values now (and go on from there).
    pub fn offsets_now(&self) -> Offsets {
        let off = |clock, (s, ns): (u64, u64)| {
            let (hs, hns) = crate::sys::clock_gettime(clock);
            norm(s as i64 - hs as i64, ns as i64 - hns as i64)
        };
        Offsets {
            monotonic: off(libc::CLOCK_MONOTONIC, self.monotonic),
            boottime: off(libc::CLOCK_BOOTTIME, self.boottime),
        }
    }
}

/// Write the offsets of the time namespace `pid`'s children will enter
/// (/proc/PID/timens_offsets; before any task is in it), as CRIU does: one
/// write per clock.
pub fn write_offsets(pid: i32, o: &Offsets) -> Result<(), String> {
    use std::io::Write;
    let path = format!("/proc/{pid}/timens_offsets");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| format!("{path}: {e}"))?;
    for (id, (s, ns)) in [(libc::CLOCK_MONOTONIC, o.monotonic), (libc::CLOCK_BOOTTIME, o.boottime)] {
        f.write_all(format!("{id} {s} {ns}\n").as_bytes())
            .map_err(|e| format!("{path}: clock {id} offset {s}.{ns:09}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_and_normalise() {
        // /proc/PID/timens_offsets of a zdtm ns-flavor test (10 and 20 days ahead).
        let o = parse_offsets("monotonic     864000         0\nboottime     1728000         0\n").unwrap();
        assert_eq!(o.monotonic, (864000, 0));
        assert_eq!(o.boottime, (1728000, 0));
        assert_eq!(
            parse_offsets("monotonic -5 999999999\nboottime 0 0\n")
                .unwrap()
                .monotonic,
            (-5, 999999999)
        );
        assert!(parse_offsets("monotonic 1 0\n").unwrap_err().contains("missing"));
        assert!(parse_offsets("realtime 1 0\nmonotonic 0 0\nboottime 0 0")
            .unwrap_err()
            .contains("unknown clock"));
        assert_eq!(norm(1, -1), (0, 999_999_999));
        assert_eq!(norm(-3, 1_500_000_000), (-2, 500_000_000));
    }

    #[test]
    fn dumped_clocks_come_back_through_offsets() {
        let o = Offsets {
            monotonic: (864000, 0),
            boottime: (1728000, 250),
        };
        let e = dump(&o);
        let c = Clocks::try_from(&e).unwrap();
        let back = c.offsets_now();
        // The clocks moved on a little between the two reads.
        assert!((back.monotonic.0 - 864000).abs() <= 1, "{back:?}");
        assert!((back.boottime.0 - 1728000).abs() <= 1, "{back:?}");
        let bad = pb::TimensEntry {
            monotonic: pb::Timespec {
                tv_sec: 1,
                tv_nsec: 1_000_000_000,
            },
            boottime: e.boottime,
        };
        assert!(Clocks::try_from(&bad).unwrap_err().contains("monotonic clock"));
    }
}
