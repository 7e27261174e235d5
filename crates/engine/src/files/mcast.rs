//! Multicast memberships of UDP sockets (CRIU's `ip_opts_entry` has no
//! field for them: they travel in cryo's sidecar, `multicast`).
//!
//! The kernel has no call listing a socket's groups, so the dump takes the
//! groups joined on the namespace's interfaces (`/proc/PID/net/igmp`,
//! `igmp6`: every socket's joins, aggregated) and asks each UDP socket for
//! its filter on each of them with getsockopt(MCAST_MSFILTER), which answers
//! EADDRNOTAVAIL for a group the socket did not join and otherwise gives the
//! filter mode and sources. IP_MULTICAST_TTL/LOOP (IPv6: HOPS/LOOP) go with
//! them when not the defaults. Restore: MCAST_JOIN_GROUP on the interface,
//! then MCAST_MSFILTER when the filter is not "exclude nothing".
//! IP_MULTICAST_IF set by interface index only cannot be read back (the
//! kernel reports the address form only): not kept.
#![forbid(unsafe_code)]

use crate::sys::sockets as sks;
use cryo_image::sidecar::{McastGroup, Multicast};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

const MCAST_JOIN_GROUP: i32 = 42;
const MCAST_MSFILTER: i32 = 48;
const MCAST_INCLUDE: u32 = 1;
/// struct sockaddr_storage, and the offsets of struct group_filter (x86_64).
const SS: usize = 128;
const GF_GROUP: usize = 8;
const GF_FMODE: usize = GF_GROUP + SS;
const GF_NUMSRC: usize = GF_FMODE + 4;
const GF_SLIST: usize = GF_NUMSRC + 4;
/// Sources read per group (more are refused by the caller).
pub const MAX_SOURCES: usize = 64;

/// The (interface index, group) pairs of `/proc/PID/net/igmp` text.
pub fn parse_igmp(text: &str) -> Vec<(u32, IpAddr)> {
    let mut out = Vec::new();
    let mut idx = None;
    for line in text.lines().skip(1) {
        if !line.starts_with(char::is_whitespace) {
            idx = line.split_whitespace().next().and_then(|w| w.parse::<u32>().ok());
            continue;
        }
        let (Some(i), Some(g)) = (idx, line.split_whitespace().next()) else {
            continue;
        };
        if let Ok(v) = u32::from_str_radix(g, 16) {
            // The __be32 printed as a host-order number.
            out.push((i, IpAddr::V4(Ipv4Addr::from(v.to_ne_bytes()))));
        }
    }
    out
}

/// The (interface index, group) pairs of `/proc/PID/net/igmp6` text.
pub fn parse_igmp6(text: &str) -> Vec<(u32, IpAddr)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 3 || w[2].len() != 32 {
            continue;
        }
        let (Ok(i), Ok(v)) = (w[0].parse::<u32>(), u128::from_str_radix(w[2], 16)) else {
            continue;
        };
        out.push((i, IpAddr::V6(Ipv6Addr::from(v))));
    }
    out
}

/// The groups joined in the network namespace of `pid`.
pub fn candidates(pid: i32) -> Vec<(u32, IpAddr)> {
    let read = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).unwrap_or_default();
    let mut c = parse_igmp(&read("igmp"));
    c.extend(parse_igmp6(&read("igmp6")));
    c.sort();
    c.dedup();
    c
}

fn put_addr(b: &mut [u8], a: &IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[4..8].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            b[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            b[8..24].copy_from_slice(&v6.octets());
        }
    }
}

fn get_addr(b: &[u8]) -> Option<IpAddr> {
    match u16::from_ne_bytes([b[0], b[1]]) as i32 {
        libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::new(b[4], b[5], b[6], b[7]))),
        libc::AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&b[8..24]).ok()?))),
        _ => None,
    }
}

fn level(g: &IpAddr) -> i32 {
    if g.is_ipv4() {
        libc::SOL_IP
    } else {
        libc::SOL_IPV6
    }
}

/// The filter of `fd` on `group` at interface `ifindex`; None: not joined.
pub fn filter(fd: RawFd, ifindex: u32, group: &IpAddr) -> io::Result<Option<McastGroup>> {
    let mut req = vec![0u8; GF_SLIST];
    req[..4].copy_from_slice(&ifindex.to_ne_bytes());
    put_addr(&mut req[GF_GROUP..GF_GROUP + SS], group);
    req[GF_NUMSRC..GF_SLIST].copy_from_slice(&(MAX_SOURCES as u32).to_ne_bytes());
    req.resize(GF_SLIST + MAX_SOURCES * SS, 0);
    let b = match sks::getsockopt_in(fd, level(group), MCAST_MSFILTER, &req) {
        Ok(b) => b,
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => return Ok(None),
        // A v6 socket asked of a v4 group it cannot hold, and the like.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(None),
        Err(e) => return Err(e),
    };
    if b.len() < GF_SLIST {
        return Err(io::Error::other(format!("MCAST_MSFILTER: {} bytes", b.len())));
    }
    let mode = u32::from_ne_bytes(b[GF_FMODE..GF_NUMSRC].try_into().unwrap());
    let n = u32::from_ne_bytes(b[GF_NUMSRC..GF_SLIST].try_into().unwrap()) as usize;
    if n > MAX_SOURCES {
        return Err(io::Error::other(format!(
            "group {group}: {n} sources in its filter (cryo reads {MAX_SOURCES})"
        )));
    }
    let sources = (0..n)
        .filter_map(|i| b.get(GF_SLIST + i * SS..GF_SLIST + (i + 1) * SS).and_then(get_addr))
        .collect();
    Ok(Some(McastGroup {
        group: *group,
        ifindex,
        include: mode == MCAST_INCLUDE,
        sources,
    }))
}

/// The multicast state of UDP socket `fd` (family `family`) among the
/// namespace's groups `cands`; None: nothing joined and default options.
pub fn read(fd: RawFd, family: i32, cands: &[(u32, IpAddr)]) -> io::Result<Option<Multicast>> {
    let mut m = Multicast::default();
    for (i, g) in cands {
        if g.is_ipv6() && family != libc::AF_INET6 {
            continue;
        }
        if let Some(f) = filter(fd, *i, g)? {
            m.groups.push(f);
        }
    }
    let (lvl, ttl_opt, loop_opt) = if family == libc::AF_INET6 {
        (libc::SOL_IPV6, libc::IPV6_MULTICAST_HOPS, libc::IPV6_MULTICAST_LOOP)
    } else {
        (libc::SOL_IP, libc::IP_MULTICAST_TTL, libc::IP_MULTICAST_LOOP)
    };
    let ttl = sks::getsockopt_int(fd, lvl, ttl_opt)?;
    let lp = sks::getsockopt_int(fd, lvl, loop_opt)?;
    m.ttl = (ttl != 1).then_some(ttl as u32);
    m.loop_ = (lp == 0).then_some(false);
    Ok((!m.groups.is_empty() || m.ttl.is_some() || m.loop_.is_some()).then_some(m))
}

/// Join the groups again and set the options (restore).
pub fn apply(fd: RawFd, family: i32, m: &Multicast) -> io::Result<()> {
    for g in &m.groups {
        let ctx = |what: &'static str| move |e: io::Error| io::Error::new(e.kind(), format!("{what} {}: {e}", g.group));
        let mut req = vec![0u8; GF_GROUP + SS];
        req[..4].copy_from_slice(&g.ifindex.to_ne_bytes());
        put_addr(&mut req[GF_GROUP..], &g.group);
        sks::setsockopt_bytes(fd, level(&g.group), MCAST_JOIN_GROUP, &req).map_err(ctx("MCAST_JOIN_GROUP"))?;
        if g.include || !g.sources.is_empty() {
            let mut f = vec![0u8; GF_SLIST + g.sources.len().max(1) * SS];
            f[..4].copy_from_slice(&g.ifindex.to_ne_bytes());
            put_addr(&mut f[GF_GROUP..GF_GROUP + SS], &g.group);
            f[GF_FMODE..GF_NUMSRC].copy_from_slice(&u32::from(g.include).to_ne_bytes());
            f[GF_NUMSRC..GF_SLIST].copy_from_slice(&(g.sources.len() as u32).to_ne_bytes());
            for (i, s) in g.sources.iter().enumerate() {
                put_addr(&mut f[GF_SLIST + i * SS..GF_SLIST + (i + 1) * SS], s);
            }
            sks::setsockopt_bytes(fd, level(&g.group), MCAST_MSFILTER, &f).map_err(ctx("MCAST_MSFILTER"))?;
        }
    }
    let (lvl, ttl_opt, loop_opt) = if family == libc::AF_INET6 {
        (libc::SOL_IPV6, libc::IPV6_MULTICAST_HOPS, libc::IPV6_MULTICAST_LOOP)
    } else {
        (libc::SOL_IP, libc::IP_MULTICAST_TTL, libc::IP_MULTICAST_LOOP)
    };
    if let Some(t) = m.ttl {
        sks::setsockopt_int(fd, lvl, ttl_opt, t as i32)?;
    }
    if let Some(l) = m.loop_ {
        sks::setsockopt_int(fd, lvl, loop_opt, l as i32)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn igmp_tables_are_parsed() {
        let t = "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n\
                 1\tlo        :     2      V3\n\
                 \t\t\t\t030201EF     1 0:00000000\t\t0\n\
                 \t\t\t\t010000E0     1 0:00000000\t\t0\n\
                 4\teth0      :     1      V3\n\
                 \t\t\t\t010000E0     1 0:00000000\t\t0\n";
        let g = parse_igmp(t);
        assert_eq!(
            g,
            vec![
                (1, "239.1.2.3".parse().unwrap()),
                (1, "224.0.0.1".parse().unwrap()),
                (4, "224.0.0.1".parse().unwrap())
            ]
        );
        let t6 = "1    lo              ff020000000000000000000000000001     1 0000000C 0\n\
                  2    eth0            ff1e0000000000000000000000001234     1 00000004 0\n";
        assert_eq!(
            parse_igmp6(t6),
            vec![(1, "ff02::1".parse().unwrap()), (2, "ff1e::1234".parse().unwrap())]
        );
    }
}
