//! User namespaces: the uid/gid maps of a tree's own user namespace
//! (`userns-ID.img`, CRIU 4.2's `UsernsEntry`: each extent's `first` is the
//! id inside, `lower_first` the id in the parent namespace, cryo's), and the
//! translation of ids between cryo's view and the namespace's.
//!
//! CRIU stores every uid and gid of a tree in its own user namespace as the
//! tree sees it (`userns_uid()`/`userns_gid()`: creds, IPC owners, ghost
//! files, memfds, terminals, the loginuid), so the images mean the same to a
//! restore that creates the namespace with other outside ids. cryo reads
//! those ids from /proc and the kernel in its own view, and converts them
//! with [`UserNs::inside_uid`] at dump and [`UserNs::outside_uid`] wherever
//! the engine (outside the namespace) applies them at restore; the tasks'
//! own credentials are applied inside the namespace, as dumped.

use cryo_image::pb;

/// The kernel's limit of extents per map (since Linux 4.15).
pub const MAX_EXTENTS: usize = 340;

/// One uid or gid map: extents `first` (inside) ← `lower_first` (outside),
/// `count` ids each, in the order /proc lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMap(pub Vec<pb::UidGidExtent>);

impl IdMap {
    /// Parse /proc/PID/uid_map or gid_map ("first lower count" per line).
    pub fn parse(text: &str) -> Result<IdMap, String> {
        let mut out = Vec::new();
        for (i, l) in text.lines().enumerate() {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.is_empty() {
                continue;
            }
            let n = |s: &str| {
                s.parse::<u32>()
                    .map_err(|_| format!("line {}: {s:?} is not an id", i + 1))
            };
            let [a, b, c] = w.as_slice() else {
                return Err(format!("line {}: {l:?} is not \"first lower count\"", i + 1));
            };
            out.push(pb::UidGidExtent {
                first: n(a)?,
                lower_first: n(b)?,
                count: n(c)?,
            });
        }
        Ok(IdMap(out))
    }

    /// The id inside for an id outside (None: not mapped).
    pub fn inside(&self, outside: u32) -> Option<u32> {
        self.0
            .iter()
            .find(|e| outside >= e.lower_first && (outside - e.lower_first) < e.count)
            .map(|e| e.first + (outside - e.lower_first))
    }

    /// The id outside for an id inside (None: not mapped).
    pub fn outside(&self, inside: u32) -> Option<u32> {
        self.0
            .iter()
            .find(|e| inside >= e.first && (inside - e.first) < e.count)
            .map(|e| e.lower_first + (inside - e.first))
    }

    /// What the kernel would refuse when the map is written: no extents,
    /// too many, an empty or overflowing extent, extents overlapping inside
    /// or outside.
    pub fn check(&self) -> Result<(), String> {
        if self.0.is_empty() {
            return Err("no extents (the namespace's map was never written)".into());
        }
        if self.0.len() > MAX_EXTENTS {
            return Err(format!(
                "{} extents (the kernel takes at most {MAX_EXTENTS})",
                self.0.len()
            ));
        }
        let span = |a: u32, n: u32| (a as u64, a as u64 + n as u64);
        for (i, e) in self.0.iter().enumerate() {
            if e.count == 0 {
                return Err(format!("extent {i}: count 0"));
            }
            for (what, v) in [("first", e.first), ("lower_first", e.lower_first)] {
                if span(v, e.count).1 > u32::MAX as u64 {
                    return Err(format!("extent {i}: {what} {v} + count {} overflows", e.count));
                }
            }
            for (j, f) in self.0[..i].iter().enumerate() {
                let over = |(a0, a1): (u64, u64), (b0, b1): (u64, u64)| a0 < b1 && b0 < a1;
                if over(span(e.first, e.count), span(f.first, f.count))
                    || over(span(e.lower_first, e.count), span(f.lower_first, f.count))
                {
                    return Err(format!("extents {j} and {i} overlap"));
                }
            }
        }
        Ok(())
    }

    /// The text written to /proc/PID/uid_map (one write, every line).
    pub fn to_proc(&self) -> String {
        self.0
            .iter()
            .map(|e| format!("{} {} {}\n", e.first, e.lower_first, e.count))
            .collect()
    }
}

/// A tree's own user namespace: its maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserNs {
    pub uid: IdMap,
    pub gid: IdMap,
}

impl UserNs {
    /// Read the maps of `pid`'s user namespace (as cryo's namespace, its
    /// parent, sees them).
    pub fn read(pid: i32) -> Result<UserNs, String> {
        let map = |name: &str| {
            let path = format!("/proc/{pid}/{name}");
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
            let m = IdMap::parse(&text).map_err(|e| format!("{path}: {e}"))?;
            m.check().map_err(|e| format!("{path}: {e}"))?;
            Ok::<_, String>(m)
        };
        Ok(UserNs {
            uid: map("uid_map")?,
            gid: map("gid_map")?,
        })
    }

    pub fn entry(&self) -> pb::UsernsEntry {
        pb::UsernsEntry {
            uid_map: self.uid.0.clone(),
            gid_map: self.gid.0.clone(),
        }
    }

    /// Describe: an image entry, validated as the kernel would.
    pub fn from_entry(e: &pb::UsernsEntry) -> Result<UserNs, String> {
        let u = UserNs {
            uid: IdMap(e.uid_map.clone()),
            gid: IdMap(e.gid_map.clone()),
        };
        u.uid.check().map_err(|e| format!("uid_map: {e}"))?;
        u.gid.check().map_err(|e| format!("gid_map: {e}"))?;
        Ok(u)
    }

    /// A uid of cryo's view as the namespace sees it; CRIU writes an
    /// unmapped one as `~0`.
    pub fn inside_uid(&self, uid: u32) -> u32 {
        self.uid.inside(uid).unwrap_or(u32::MAX)
    }

    pub fn inside_gid(&self, gid: u32) -> u32 {
        self.gid.inside(gid).unwrap_or(u32::MAX)
    }

    /// A uid of the images (inside) as the engine, outside, applies it.
    pub fn outside_uid(&self, uid: u32) -> Result<u32, String> {
        self.uid
            .outside(uid)
            .ok_or_else(|| format!("uid {uid} is not mapped in the tree's user namespace"))
    }

    pub fn outside_gid(&self, gid: u32) -> Result<u32, String> {
        self.gid
            .outside(gid)
            .ok_or_else(|| format!("gid {gid} is not mapped in the tree's user namespace"))
    }

    /// Dump: a thread's credentials (read by cryo, in its own view) as the
    /// namespace sees them. Every id a task holds inside must be mapped.
    pub fn creds_inside(&self, c: &mut pb::CredsEntry) -> Result<(), String> {
        let uid = |v: &mut u32, what: &str| {
            *v = self.uid.inside(*v).ok_or_else(|| {
                format!(
                    "its {what} {v} is not mapped in its user namespace (uid_map {:?})",
                    self.uid.to_proc()
                )
            })?;
            Ok::<_, String>(())
        };
        uid(&mut c.uid, "uid")?;
        uid(&mut c.euid, "euid")?;
        uid(&mut c.suid, "suid")?;
        uid(&mut c.fsuid, "fsuid")?;
        let gid = |v: &mut u32, what: &str| {
            *v = self.gid.inside(*v).ok_or_else(|| {
                format!(
                    "its {what} {v} is not mapped in its user namespace (gid_map {:?})",
                    self.gid.to_proc()
                )
            })?;
            Ok::<_, String>(())
        };
        gid(&mut c.gid, "gid")?;
        gid(&mut c.egid, "egid")?;
        gid(&mut c.sgid, "sgid")?;
        gid(&mut c.fsgid, "fsgid")?;
        for g in c.groups.iter_mut() {
            gid(g, "supplementary group")?;
        }
        Ok(())
    }

    /// Restore's check: every id of a thread's credentials (inside) is
    /// mapped, or setresuid() in the namespace would fail.
    pub fn check_creds(&self, c: &pb::CredsEntry) -> Result<(), String> {
        for (what, v) in [("uid", c.uid), ("euid", c.euid), ("suid", c.suid), ("fsuid", c.fsuid)] {
            self.outside_uid(v).map_err(|e| format!("{what}: {e}"))?;
        }
        let gids = [("gid", c.gid), ("egid", c.egid), ("sgid", c.sgid), ("fsgid", c.fsgid)];
        for (what, v) in gids.into_iter().chain(c.groups.iter().map(|&g| ("group", g))) {
            self.outside_gid(v).map_err(|e| format!("{what}: {e}"))?;
        }
        Ok(())
    }

    /// Write the maps of the namespace of `pid` (a process of cryo's that
    /// was just cloned into it): gid_map after uid_map, each in one write.
    pub fn write_maps(&self, pid: i32) -> Result<(), String> {
        for (name, m) in [("uid_map", &self.uid), ("gid_map", &self.gid)] {
            let path = format!("/proc/{pid}/{name}");
            std::fs::write(&path, m.to_proc()).map_err(|e| format!("writing {path} ({:?}): {e}", m.to_proc()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(first: u32, lower_first: u32, count: u32) -> pb::UidGidExtent {
        pb::UidGidExtent {
            first,
            lower_first,
            count,
        }
    }

    #[test]
    fn maps_parse_and_translate_both_ways() {
        // /proc/PID/uid_map of `unshare -U --map-users 0:100000:65536 --map-users 65536:1000:1`.
        let m = IdMap::parse("         0     100000      65536\n     65536       1000          1\n").unwrap();
        assert_eq!(m.0, vec![ext(0, 100000, 65536), ext(65536, 1000, 1)]);
        m.check().unwrap();
        assert_eq!(m.inside(100000), Some(0));
        assert_eq!(m.inside(165535), Some(65535));
        assert_eq!(m.inside(165536), None);
        assert_eq!(m.inside(1000), Some(65536));
        assert_eq!(m.outside(65536), Some(1000));
        assert_eq!(m.outside(65537), None);
        assert_eq!(m.to_proc(), "0 100000 65536\n65536 1000 1\n");
        assert!(IdMap::parse("0 1").unwrap_err().contains("line 1"));
        assert!(IdMap::parse("0 x 1").unwrap_err().contains("\"x\""));
    }

    #[test]
    fn bad_maps_are_refused() {
        assert!(IdMap(vec![]).check().unwrap_err().contains("no extents"));
        assert!(IdMap(vec![ext(0, 0, 0)]).check().unwrap_err().contains("count 0"));
        assert!(IdMap(vec![ext(0, 10, 5), ext(3, 100, 1)])
            .check()
            .unwrap_err()
            .contains("overlap"));
        assert!(IdMap(vec![ext(0, 10, 5), ext(30, 12, 1)])
            .check()
            .unwrap_err()
            .contains("overlap"));
        assert!(IdMap(vec![ext(u32::MAX, 0, 2)])
            .check()
            .unwrap_err()
            .contains("overflows"));
        let many = IdMap((0..341).map(|i| ext(i, i, 1)).collect());
        assert!(many.check().unwrap_err().contains("341 extents"));
    }

    #[test]
    fn creds_go_inside_and_unmapped_ones_are_named() {
        let u = UserNs {
            uid: IdMap(vec![ext(0, 1000, 1), ext(1, 100000, 1000)]),
            gid: IdMap(vec![ext(0, 1000, 1)]),
        };
        let mut c = pb::CredsEntry {
            uid: 1000,
            euid: 100005,
            suid: 1000,
            fsuid: 100005,
            gid: 1000,
            egid: 1000,
            sgid: 1000,
            fsgid: 1000,
            groups: vec![1000],
            ..Default::default()
        };
        u.creds_inside(&mut c).unwrap();
        assert_eq!((c.uid, c.euid, c.fsuid, c.gid, c.groups[0]), (0, 6, 6, 0, 0));
        u.check_creds(&c).unwrap();
        c.groups.push(7);
        assert!(u.check_creds(&c).unwrap_err().contains("gid 7 is not mapped"));
        let mut d = pb::CredsEntry {
            uid: 0,
            ..Default::default()
        };
        assert!(u.creds_inside(&mut d).unwrap_err().contains("its uid 0 is not mapped"));
        assert_eq!(u.inside_uid(5), u32::MAX);
    }
}
