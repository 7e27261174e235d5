//! cryo's sidecar: the state CRIU's image format cannot hold, in one JSON file beside the images.
//!
//! cryo's images stay CRIU 4.2's format byte for byte. What that format has no field for travels in
//! `cryo.json` in the image directory; CRIU and `crit check` read only the `*.img` files they know and
//! ignore it. A dump writes it only when there is something to say, so a plain dump is exactly the file
//! set CRIU writes. The format (version 2; every key but `version` may be left out):
//!
//! ```json
//! {
//!   "version": 2,
//!   "affinity": { "4242": "0-3,6", "4243": "1" },
//!   "eventfd_semaphore": [7, 12],
//!   "tcp_reset": { "9": "ECONNRESET" },
//!   "udp_sources": { "11": ["127.0.0.1:5001", "[::1]:6000"] },
//!   "peek_off": { "5": 3 },
//!   "multicast": { "11": { "groups": [{ "group": "239.1.2.3", "ifindex": 1, "mode": "exclude",
//!                                       "sources": ["127.0.0.9"] }], "ttl": 4, "loop": false } }
//! }
//! ```
//!
//! * `affinity` maps a thread id (decimal, as in `core-TID.img`) to its allowed CPUs in Linux cpulist
//!   syntax, as `Cpus_allowed_list` in /proc/PID/task/TID/status prints it (comma-separated `N` or
//!   `N-M`, ascending). Only threads whose mask leaves out a CPU online at dump time are listed.
//!   Restore sets each listed thread to its CPUs that are online there (none online: a warning, the
//!   default affinity). `crit rewrite --pid-map` renumbers the keys.
//! * `eventfd_semaphore` lists the file ids (`id` of the EVENTFD entry in files.img) of the eventfds
//!   created with EFD_SEMAPHORE: CRIU's `EventfdFileEntry` has no place for the flag, and a restore
//!   without it would change what each read returns.
//! * `tcp_reset` maps the file id of an INETSK entry (a TCP connection in state CLOSE with its
//!   tcp-stream image) to the error pending on it at dump, `ECONNRESET` or `EPIPE`: the connection
//!   was reset. CRIU's format has no field for it (CRIU's restore makes it closed by both sides,
//!   and the program then reads end-of-file where it would have had the error); cryo's restore
//!   makes the same error pending again.
//! * `udp_sources` maps the file id of an INETSK entry (a UDP or UDP-Lite socket) to the source
//!   address of each datagram queued on it, in the order of its `sk_packet_entry`s in
//!   sk-queues.img (`ADDR:PORT`, IPv6 as `[ADDR]:PORT`). CRIU drops the queues of inet sockets
//!   (its `sk_packet_entry` has no field for a sender); cryo's restore sends each datagram again
//!   from its address. A connected socket's queue needs no entry (its datagrams come from its peer).
//! * `peek_off` maps the file id of a UNIXSK or INETSK (UDP) entry to its SO_PEEK_OFF (the offset
//!   in its receive queue the next MSG_PEEK reads from), for sockets where it is set (>= 0; the
//!   kernel's default -1 is not written). CRIU's `sk_opts_entry` has no field for it.
//! * `multicast` maps the file id of an INETSK entry (UDP) to its multicast state, which CRIU's
//!   `ip_opts_entry` has no field for: `groups`, each group the socket joined with the index of its
//!   interface, its filter `mode` (`exclude` or `include`) and its `sources`; `ttl`
//!   (IP_MULTICAST_TTL, or IPV6_MULTICAST_HOPS) and `loop` (IP_MULTICAST_LOOP, IPV6_MULTICAST_LOOP)
//!   when not the kernel's defaults (1, true).
//!
//! Version 1 (`{"version": 1, "threads": {...}}`, affinity only, in `cryo-affinity.json`) is still read.
//! Parsing is strict: unknown or repeated keys, bad cpulists and bad ids are refused with a message
//! naming them; the engine checks ids against the image set before creating any task.

use std::collections::{BTreeMap, BTreeSet};

/// Name of the sidecar file in the image directory.
pub const FILE: &str = "cryo.json";
/// The affinity-only sidecar of version 1, still read when [`FILE`] is absent.
pub const LEGACY_FILE: &str = "cryo-affinity.json";
/// The format version written.
pub const VERSION: u64 = 2;
/// CPUs a mask can hold (the kernel's `cpu_set_t` as glibc sizes it).
pub const MAX_CPUS: u32 = 1024;

/// A set of CPU numbers.
pub type Cpus = BTreeSet<u32>;

/// The content of the sidecar.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sidecar {
    /// Thread id -> allowed CPUs.
    pub affinity: BTreeMap<i32, Cpus>,
    /// File ids of EFD_SEMAPHORE eventfds.
    pub eventfd_semaphore: BTreeSet<u32>,
    /// File id of a reset TCP connection -> its pending error.
    pub tcp_reset: BTreeMap<u32, TcpReset>,
    /// File id of a UDP socket -> the sender of each queued datagram.
    pub udp_sources: BTreeMap<u32, Vec<std::net::SocketAddr>>,
    /// File id of a unix or UDP socket -> its SO_PEEK_OFF (set ones only).
    pub peek_off: BTreeMap<u32, u32>,
    /// File id of a UDP socket -> its multicast memberships and options.
    pub multicast: BTreeMap<u32, Multicast>,
}

/// One multicast group a socket joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McastGroup {
    pub group: std::net::IpAddr,
    pub ifindex: u32,
    /// MCAST_INCLUDE (only `sources`), else MCAST_EXCLUDE (all but `sources`).
    pub include: bool,
    pub sources: Vec<std::net::IpAddr>,
}

/// The multicast state of a UDP socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Multicast {
    pub groups: Vec<McastGroup>,
    pub ttl: Option<u32>,
    pub loop_: Option<bool>,
}

/// The error pending on a reset TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpReset {
    /// Reset while established (or with our FIN sent).
    ConnReset,
    /// Reset after the peer's FIN (CLOSE_WAIT).
    Pipe,
}

impl TcpReset {
    /// The name written (the errno's).
    pub fn name(self) -> &'static str {
        match self {
            TcpReset::ConnReset => "ECONNRESET",
            TcpReset::Pipe => "EPIPE",
        }
    }
    fn parse(s: &str) -> Option<TcpReset> {
        match s {
            "ECONNRESET" => Some(TcpReset::ConnReset),
            "EPIPE" => Some(TcpReset::Pipe),
            _ => None,
        }
    }
}

impl Sidecar {
    /// Nothing to say: no file is written.
    pub fn is_empty(&self) -> bool {
        self.affinity.is_empty()
            && self.eventfd_semaphore.is_empty()
            && self.tcp_reset.is_empty()
            && self.udp_sources.is_empty()
            && self.peek_off.is_empty()
            && self.multicast.is_empty()
    }

    /// The same sidecar with thread ids renumbered by `map` (ids not in it stay); returns how many
    /// changed. Two threads becoming one id is refused.
    pub fn renumber_threads(&self, map: &BTreeMap<u32, u32>) -> Result<(Sidecar, usize), String> {
        let mut out = Sidecar {
            affinity: BTreeMap::new(),
            ..self.clone()
        };
        let mut n = 0;
        for (&tid, cpus) in &self.affinity {
            let new = match map.get(&(tid as u32)) {
                Some(&new) => {
                    n += usize::from(new != tid as u32);
                    i32::try_from(new).map_err(|_| format!("thread {tid} -> {new}: not a thread id"))?
                }
                None => tid,
            };
            if out.affinity.insert(new, cpus.clone()).is_some() {
                return Err(format!("two threads would both become {new}"));
            }
        }
        Ok((out, n))
    }
}

// ---- cpulists ----

/// Parse Linux cpulist syntax (`0-3,6`). Empty lists, descending ranges, strides and CPUs at or above
/// [`MAX_CPUS`] are refused.
pub fn parse_cpulist(s: &str) -> Result<Cpus, String> {
    let num = |x: &str| -> Result<u32, String> {
        if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{x}` is not a CPU number"));
        }
        let n: u32 = x.parse().map_err(|_| format!("`{x}` is not a CPU number"))?;
        if n >= MAX_CPUS {
            return Err(format!("CPU {n} is beyond the {MAX_CPUS} CPUs a mask can hold"));
        }
        Ok(n)
    };
    let mut cpus = Cpus::new();
    if s.trim().is_empty() {
        return Err("empty CPU list".into());
    }
    for part in s.trim().split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(part)?;
                (n, n)
            }
        };
        if a > b {
            return Err(format!("descending range `{part}`"));
        }
        cpus.extend(a..=b);
    }
    Ok(cpus)
}

/// Format CPUs as a cpulist (runs of 2 or more as `N-M`).
pub fn format_cpulist(cpus: &Cpus) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = cpus.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end += 1;
            it.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

// ---- JSON ----

/// JSON text as a value tree in which no object gives a key twice (serde_json alone keeps the last of
/// two equal keys without a word). Objects keep file order.
fn strict(text: &str) -> Result<serde_json::Value, String> {
    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    struct Strict(serde_json::Value);
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Strict;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
            Ok(Strict(v.into()))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
            Ok(Strict(v.into()))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
            Ok(Strict(v.into()))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
            Ok(Strict(v.into()))
        }
        fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
            Ok(Strict(v.into()))
        }
        fn visit_unit<E>(self) -> Result<Strict, E> {
            Ok(Strict(serde_json::Value::Null))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Strict, A::Error> {
            let mut out = Vec::new();
            while let Some(Strict(v)) = a.next_element()? {
                out.push(v);
            }
            Ok(Strict(out.into()))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Strict, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some((k, Strict(v))) = m.next_entry::<String, Strict>()? {
                if out.insert(k.clone(), v).is_some() {
                    return Err(serde::de::Error::custom(format!("`{k}` is given twice")));
                }
            }
            Ok(Strict(out.into()))
        }
    }
    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(V)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Strict::deserialize(&mut de).map_err(|e| {
        if e.is_data() {
            e.to_string()
        } else {
            format!("not valid JSON: {e}")
        }
    })?;
    de.end().map_err(|e| format!("not valid JSON: {e}"))?;
    Ok(v.0)
}

fn thread_id(k: &str) -> Result<i32, String> {
    k.parse::<i32>()
        .ok()
        .filter(|t| *t > 0 && t.to_string() == k)
        .ok_or_else(|| format!("thread `{k}`: not a thread id"))
}

fn affinity(v: &serde_json::Value, key: &str) -> Result<BTreeMap<i32, Cpus>, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("`{key}`: expected an object of thread id -> CPU list, not {v}"))?;
    let mut out = BTreeMap::new();
    for (k, list) in obj {
        let tid = thread_id(k)?;
        let list = list
            .as_str()
            .ok_or_else(|| format!("thread {tid}: the CPU list is not a string ({list})"))?;
        let cpus = parse_cpulist(list).map_err(|e| format!("thread {tid}: bad CPU list `{list}`: {e}"))?;
        out.insert(tid, cpus);
    }
    Ok(out)
}

fn file_ids(v: &serde_json::Value) -> Result<BTreeSet<u32>, String> {
    let list = v
        .as_array()
        .ok_or_else(|| format!("`eventfd_semaphore`: expected a list of file ids, not {v}"))?;
    let mut out = BTreeSet::new();
    for id in list {
        let n = id
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("`eventfd_semaphore`: `{id}` is not a file id"))?;
        if !out.insert(n) {
            return Err(format!("`eventfd_semaphore`: file id {n} is listed twice"));
        }
    }
    Ok(out)
}

fn file_id(key: &str, k: &str) -> Result<u32, String> {
    k.parse::<u32>()
        .ok()
        .filter(|n| n.to_string() == k)
        .ok_or_else(|| format!("`{key}`: `{k}` is not a file id"))
}

fn tcp_resets(v: &serde_json::Value) -> Result<BTreeMap<u32, TcpReset>, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("`tcp_reset`: expected an object of file id -> error, not {v}"))?;
    let mut out = BTreeMap::new();
    for (k, e) in obj {
        let id = file_id("tcp_reset", k)?;
        let r = e
            .as_str()
            .and_then(TcpReset::parse)
            .ok_or_else(|| format!("`tcp_reset`: file id {id}: {e} is neither \"ECONNRESET\" nor \"EPIPE\""))?;
        out.insert(id, r);
    }
    Ok(out)
}

fn udp_sources(v: &serde_json::Value) -> Result<BTreeMap<u32, Vec<std::net::SocketAddr>>, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("`udp_sources`: expected an object of file id -> addresses, not {v}"))?;
    let mut out = BTreeMap::new();
    for (k, list) in obj {
        let id = file_id("udp_sources", k)?;
        let list = list
            .as_array()
            .ok_or_else(|| format!("`udp_sources`: file id {id}: expected a list of addresses, not {list}"))?;
        let mut addrs = Vec::with_capacity(list.len());
        for a in list {
            let addr = a
                .as_str()
                .and_then(|t| t.parse::<std::net::SocketAddr>().ok())
                .ok_or_else(|| format!("`udp_sources`: file id {id}: {a} is not an ADDR:PORT"))?;
            addrs.push(addr);
        }
        out.insert(id, addrs);
    }
    Ok(out)
}

fn peek_offs(v: &serde_json::Value) -> Result<BTreeMap<u32, u32>, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("`peek_off`: expected an object of file id -> offset, not {v}"))?;
    let mut out = BTreeMap::new();
    for (k, n) in obj {
        let id = file_id("peek_off", k)?;
        let off = n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n <= i32::MAX as u32)
            .ok_or_else(|| format!("`peek_off`: file id {id}: {n} is not an offset"))?;
        out.insert(id, off);
    }
    Ok(out)
}

fn ip(v: &serde_json::Value, what: &str) -> Result<std::net::IpAddr, String> {
    v.as_str()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("`multicast`: {what}: {v} is not an IP address"))
}

fn mcast_group(id: u32, g: &serde_json::Value) -> Result<McastGroup, String> {
    let g = g
        .as_object()
        .ok_or_else(|| format!("`multicast`: file id {id}: a group is not an object"))?;
    let mut mg = McastGroup {
        group: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        ifindex: 0,
        include: false,
        sources: Vec::new(),
    };
    for (k, v) in g {
        match k.as_str() {
            "group" => mg.group = ip(v, "group")?,
            "ifindex" => {
                mg.ifindex = v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| format!("`multicast`: file id {id}: ifindex {v} is not an index"))?
            }
            "mode" => {
                mg.include = match v.as_str() {
                    Some("include") => true,
                    Some("exclude") => false,
                    _ => {
                        return Err(format!(
                            "`multicast`: file id {id}: mode {v} is neither \"include\" nor \"exclude\""
                        ))
                    }
                }
            }
            "sources" => {
                let l = v
                    .as_array()
                    .ok_or_else(|| format!("`multicast`: file id {id}: `sources` is not a list"))?;
                mg.sources = l.iter().map(|a| ip(a, "source")).collect::<Result<_, _>>()?;
            }
            other => return Err(format!("`multicast`: file id {id}: unknown field `{other}`")),
        }
    }
    if !mg.group.is_multicast() {
        return Err(format!(
            "`multicast`: file id {id}: a group without a multicast `group`"
        ));
    }
    Ok(mg)
}

fn multicasts(v: &serde_json::Value) -> Result<BTreeMap<u32, Multicast>, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("`multicast`: expected an object of file id -> state, not {v}"))?;
    let mut out = BTreeMap::new();
    for (k, m) in obj {
        let id = file_id("multicast", k)?;
        let m = m
            .as_object()
            .ok_or_else(|| format!("`multicast`: file id {id}: expected an object, not {m}"))?;
        let mut st = Multicast::default();
        for (k, v) in m {
            match k.as_str() {
                "groups" => {
                    let l = v
                        .as_array()
                        .ok_or_else(|| format!("`multicast`: file id {id}: `groups` is not a list"))?;
                    st.groups = l.iter().map(|g| mcast_group(id, g)).collect::<Result<_, _>>()?;
                }
                "ttl" => {
                    st.ttl = Some(
                        v.as_u64()
                            .filter(|n| *n <= 255)
                            .ok_or_else(|| format!("`multicast`: file id {id}: ttl {v}"))?
                            as u32,
                    )
                }
                "loop" => {
                    st.loop_ = Some(
                        v.as_bool()
                            .ok_or_else(|| format!("`multicast`: file id {id}: loop {v} is not true or false"))?,
                    )
                }
                other => return Err(format!("`multicast`: file id {id}: unknown field `{other}`")),
            }
        }
        out.insert(id, st);
    }
    Ok(out)
}

/// Parse sidecar text (version 2, or version 1) strictly; errors name what is at fault.
pub fn parse(text: &str) -> Result<Sidecar, String> {
    let top = strict(text)?;
    let top = top
        .as_object()
        .ok_or_else(|| format!("expected an object with `version`, not {top}"))?;
    let version = match top.iter().find(|(k, _)| *k == "version") {
        Some((_, serde_json::Value::Number(n))) if n.as_u64() == Some(1) || n.as_u64() == Some(VERSION) => {
            n.as_u64().unwrap_or(0)
        }
        Some((_, other)) => return Err(format!("version {other} (1 and {VERSION} are known)")),
        None => return Err("missing field `version`".into()),
    };
    let mut out = Sidecar::default();
    let mut threads_seen = false;
    for (k, v) in top {
        match (version, k.as_str()) {
            (_, "version") => {}
            (1, "threads") => {
                threads_seen = true;
                out.affinity = affinity(v, k)?;
            }
            (2, "affinity") => out.affinity = affinity(v, k)?,
            (2, "eventfd_semaphore") => out.eventfd_semaphore = file_ids(v)?,
            (2, "tcp_reset") => out.tcp_reset = tcp_resets(v)?,
            (2, "udp_sources") => out.udp_sources = udp_sources(v)?,
            (2, "peek_off") => out.peek_off = peek_offs(v)?,
            (2, "multicast") => out.multicast = multicasts(v)?,
            (_, other) => return Err(format!("unknown field `{other}` in version {version}")),
        }
    }
    if version == 1 && !threads_seen {
        return Err("missing field `threads`".into());
    }
    Ok(out)
}

/// The sidecar as JSON text (version 2; threads and ids ascending; empty parts left out).
pub fn to_json(s: &Sidecar) -> String {
    let mut top = serde_json::Map::new();
    top.insert("version".into(), VERSION.into());
    if !s.affinity.is_empty() {
        let threads = s
            .affinity
            .iter()
            .map(|(tid, cpus)| (tid.to_string(), serde_json::Value::String(format_cpulist(cpus))))
            .collect();
        top.insert("affinity".into(), serde_json::Value::Object(threads));
    }
    if !s.eventfd_semaphore.is_empty() {
        top.insert(
            "eventfd_semaphore".into(),
            s.eventfd_semaphore
                .iter()
                .map(|&i| serde_json::Value::from(i))
                .collect(),
        );
    }
    if !s.tcp_reset.is_empty() {
        let m = s
            .tcp_reset
            .iter()
            .map(|(id, r)| (id.to_string(), serde_json::Value::from(r.name())))
            .collect();
        top.insert("tcp_reset".into(), serde_json::Value::Object(m));
    }
    if !s.udp_sources.is_empty() {
        let m = s
            .udp_sources
            .iter()
            .map(|(id, l)| {
                let l = l.iter().map(|a| serde_json::Value::from(a.to_string())).collect();
                (id.to_string(), serde_json::Value::Array(l))
            })
            .collect();
        top.insert("udp_sources".into(), serde_json::Value::Object(m));
    }
    if !s.peek_off.is_empty() {
        let m = s
            .peek_off
            .iter()
            .map(|(id, o)| (id.to_string(), serde_json::Value::from(*o)))
            .collect();
        top.insert("peek_off".into(), serde_json::Value::Object(m));
    }
    if !s.multicast.is_empty() {
        let m = s
            .multicast
            .iter()
            .map(|(id, st)| {
                let mut o = serde_json::Map::new();
                let groups = st
                    .groups
                    .iter()
                    .map(|g| {
                        serde_json::json!({
                            "group": g.group.to_string(),
                            "ifindex": g.ifindex,
                            "mode": if g.include { "include" } else { "exclude" },
                            "sources": g.sources.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                o.insert("groups".into(), serde_json::Value::Array(groups));
                if let Some(t) = st.ttl {
                    o.insert("ttl".into(), t.into());
                }
                if let Some(l) = st.loop_ {
                    o.insert("loop".into(), l.into());
                }
                (id.to_string(), serde_json::Value::Object(o))
            })
            .collect();
        top.insert("multicast".into(), serde_json::Value::Object(m));
    }
    let mut text = serde_json::to_string_pretty(&serde_json::Value::Object(top)).expect("a JSON tree serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(v: &[u32]) -> Cpus {
        v.iter().copied().collect()
    }

    #[test]
    fn cpulists_round_trip() {
        for (text, want) in [
            ("0", vec![0]),
            ("0-3,6", vec![0, 1, 2, 3, 6]),
            ("1,3,5-6", vec![1, 3, 5, 6]),
            ("0-1\n", vec![0, 1]),
        ] {
            let got = parse_cpulist(text).unwrap();
            assert_eq!(got, cpus(&want), "{text:?}");
            assert_eq!(format_cpulist(&got), text.trim());
        }
        assert_eq!(format_cpulist(&cpus(&[0, 1, 2, 4, 5, 7])), "0-2,4-5,7");
    }

    #[test]
    fn bad_cpulists_are_refused() {
        for bad in [
            "",
            "a",
            "1-",
            "-1",
            "3-1",
            "0,,1",
            "0-7:2/4",
            "+1",
            "1 ,2",
            "1024",
            "99999999999",
        ] {
            assert!(parse_cpulist(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sidecar_round_trips_and_reads_version_1() {
        let side = Sidecar {
            affinity: [(10, cpus(&[0])), (11, cpus(&[1, 2, 3]))].into_iter().collect(),
            eventfd_semaphore: [7, 12].into_iter().collect(),
            tcp_reset: [(9, TcpReset::ConnReset), (10, TcpReset::Pipe)].into_iter().collect(),
            udp_sources: [(
                11,
                vec!["127.0.0.1:5001".parse().unwrap(), "[::1]:6000".parse().unwrap()],
            )]
            .into_iter()
            .collect(),
            peek_off: [(5, 3)].into_iter().collect(),
            multicast: [(
                11,
                Multicast {
                    groups: vec![McastGroup {
                        group: "239.1.2.3".parse().unwrap(),
                        ifindex: 1,
                        include: true,
                        sources: vec!["127.0.0.9".parse().unwrap()],
                    }],
                    ttl: Some(4),
                    loop_: Some(false),
                },
            )]
            .into_iter()
            .collect(),
        };
        let text = to_json(&side);
        assert_eq!(parse(&text).unwrap(), side);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], 2);
        assert_eq!(v["affinity"]["11"], "1-3");
        assert_eq!(v["eventfd_semaphore"], serde_json::json!([7, 12]));
        assert_eq!(v["tcp_reset"]["9"], "ECONNRESET");
        assert_eq!(v["peek_off"]["5"], 3);
        assert_eq!(
            v["udp_sources"]["11"],
            serde_json::json!(["127.0.0.1:5001", "[::1]:6000"])
        );
        let only_efd = Sidecar {
            eventfd_semaphore: [3].into_iter().collect(),
            ..Default::default()
        };
        let text = to_json(&only_efd);
        assert!(!text.contains("affinity"), "{text}");
        assert_eq!(parse(&text).unwrap(), only_efd);
        let v1 = parse(r#"{"version": 1, "threads": {"10": "0"}}"#).unwrap();
        assert_eq!(v1.affinity, [(10, cpus(&[0]))].into_iter().collect());
        assert!(Sidecar::default().is_empty() && !v1.is_empty());
    }

    #[test]
    fn renumbering_moves_thread_ids_and_refuses_collisions() {
        let side = parse(r#"{"version": 2, "affinity": {"10": "0", "11": "1"}, "eventfd_semaphore": [4]}"#).unwrap();
        let (out, n) = side.renumber_threads(&[(10, 20)].into_iter().collect()).unwrap();
        assert_eq!(n, 1);
        assert_eq!(out.affinity.keys().copied().collect::<Vec<_>>(), [11, 20]);
        assert_eq!(out.eventfd_semaphore, side.eventfd_semaphore);
        let e = side.renumber_threads(&[(10, 11)].into_iter().collect()).unwrap_err();
        assert!(e.contains("both become 11"), "{e}");
    }

    #[test]
    fn bad_sidecars_name_what_is_wrong() {
        for (text, needle) in [
            ("{", "not valid JSON"),
            ("{} x", "not valid JSON"),
            ("[]", "expected an object with `version`"),
            (r#"{"threads": {}}"#, "missing field `version`"),
            (r#"{"version": 3}"#, "version 3"),
            (r#"{"version": "2"}"#, "version \"2\""),
            (r#"{"version": 1}"#, "missing field `threads`"),
            (r#"{"version": 2, "x": 1}"#, "unknown field `x`"),
            (r#"{"version": 2, "threads": {}}"#, "unknown field `threads`"),
            (r#"{"version": 1, "affinity": {}}"#, "unknown field `affinity`"),
            (r#"{"version": 2, "version": 2}"#, "`version` is given twice"),
            (
                r#"{"version": 2, "affinity": []}"#,
                "expected an object of thread id -> CPU list",
            ),
            (
                r#"{"version": 2, "affinity": {"7": "0", "7": "1"}}"#,
                "`7` is given twice",
            ),
            (r#"{"version": 2, "affinity": {"abc": "0"}}"#, "thread `abc`"),
            (r#"{"version": 2, "affinity": {"012": "0"}}"#, "thread `012`"),
            (r#"{"version": 2, "affinity": {"-4": "0"}}"#, "thread `-4`"),
            (
                r#"{"version": 2, "affinity": {"7": 3}}"#,
                "thread 7: the CPU list is not a string",
            ),
            (
                r#"{"version": 2, "affinity": {"7": "2-1"}}"#,
                "thread 7: bad CPU list `2-1`",
            ),
            (
                r#"{"version": 2, "eventfd_semaphore": {}}"#,
                "expected a list of file ids",
            ),
            (r#"{"version": 2, "eventfd_semaphore": [-1]}"#, "`-1` is not a file id"),
            (
                r#"{"version": 2, "eventfd_semaphore": [3, 3]}"#,
                "file id 3 is listed twice",
            ),
            (r#"{"version": 2, "tcp_reset": {"x": "EPIPE"}}"#, "`x` is not a file id"),
            (
                r#"{"version": 2, "peek_off": {"3": -1}}"#,
                "file id 3: -1 is not an offset",
            ),
            (
                r#"{"version": 2, "multicast": {"3": {"groups": [{"group": "10.0.0.1"}]}}}"#,
                "a group without a multicast `group`",
            ),
            (
                r#"{"version": 2, "multicast": {"3": {"groups": [{"group": "239.0.0.1", "mode": "both"}]}}}"#,
                "neither \"include\" nor \"exclude\"",
            ),
            (
                r#"{"version": 2, "tcp_reset": {"4": "ETIMEDOUT"}}"#,
                "neither \"ECONNRESET\" nor \"EPIPE\"",
            ),
            (
                r#"{"version": 2, "udp_sources": {"4": ["1.2.3.4"]}}"#,
                "file id 4: \"1.2.3.4\" is not an ADDR:PORT",
            ),
            (
                r#"{"version": 2, "udp_sources": {"4": "1.2.3.4:5"}}"#,
                "expected a list of addresses",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
