//! `crit x DIR sk`: sockets (unix, inet, packet, netlink) with their owners, addresses, state, peer and
//! queued bytes (unix queues from sk-queues.img, TCP queues from tcp-stream-INO.img).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use prost::Message;
use serde::Serialize;

use cryo_image::{pb, Extra, ImageSet};

use super::table::{Align, Table};
use super::{ExploreError, Result};

/// Who holds a socket: a process and fd.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub fd: u32,
}

/// One socket.
#[derive(Debug, Clone, Serialize)]
pub struct Socket {
    /// File id (files.img).
    pub id: u32,
    pub ino: u32,
    /// unix, inet, inet6, packet, netlink.
    pub family: String,
    /// STREAM, DGRAM, SEQPACKET, RAW, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// TCP, UDP, a netlink or ethernet protocol number, ...
    pub proto: String,
    pub state: String,
    pub local: String,
    pub peer: String,
    /// Bytes queued for reading (unix: sk-queues; tcp: the receive queue).
    pub recv_q: u64,
    /// Bytes queued for sending (tcp: the send queue, including not yet sent bytes).
    pub send_q: u64,
    /// Number of queued packets (unix).
    pub packets: u64,
    pub owners: Vec<Owner>,
}

fn sk_name(dict_field: &str, v: u32) -> String {
    cryo_image::pretty::dict_name("sk", dict_field, v as i128)
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// An address from CRIU's words (network-order u32s: one for IPv4, four for IPv6).
pub fn ip(words: &[u32], family: u32) -> String {
    if family == 10 || words.len() >= 4 {
        let mut b = [0u8; 16];
        for (i, x) in words.iter().take(4).enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&x.to_ne_bytes());
        }
        Ipv6Addr::from(b).to_string()
    } else {
        let w = words.first().copied().unwrap_or(0);
        Ipv4Addr::from(u32::from_be(w)).to_string()
    }
}

fn inet_addr(words: &[u32], port: u32, family: u32) -> String {
    let a = ip(words, family);
    if family == 10 {
        format!("[{a}]:{port}")
    } else {
        format!("{a}:{port}")
    }
}

/// A unix socket name for people: a path, `@name` for the abstract namespace, `-` for none.
pub fn unix_name(name: &[u8]) -> String {
    if name.is_empty() {
        return "-".into();
    }
    let (prefix, rest) = if name[0] == 0 { ("@", &name[1..]) } else { ("", name) };
    let mut s = String::from(prefix);
    for &b in rest {
        if (0x20..0x7f).contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

fn unix_state(state: u32, kind: u32) -> String {
    // Unix sockets reuse TCP state numbers: 1 connected, 7 unconnected, 10 listening.
    match (state, kind) {
        (1, _) => "CONNECTED".into(),
        (7, 2) => "UNCONNECTED".into(),
        (7, _) => "CLOSED".into(),
        (10, _) => "LISTEN".into(),
        _ => sk_name("state", state),
    }
}

/// Queue sizes of TCP socket `ino` (tcp-stream-INO.img, ino in hex), if dumped.
fn tcp_queues(set: &ImageSet, ino: u32) -> Result<Option<(u64, u64)>> {
    let name = format!("tcp-stream-{ino:x}.img");
    if !set.has(&name) {
        return Ok(None);
    }
    let img = set.image(&name)?;
    let Some(e) = img.entries.first() else {
        return Ok(None);
    };
    let t = pb::TcpStreamEntry::decode(e.msg.encode_to_vec().as_slice()).map_err(|err| ExploreError::Invalid {
        file: set.path(&name).display().to_string(),
        what: format!("tcp_stream_entry does not decode: {err}"),
    })?;
    let (inq, outq) = match &e.extra {
        Extra::Tcp { inq, outq } => (inq.len() as u64, outq.len() as u64),
        _ => (t.inq_len as u64, t.outq_len as u64),
    };
    Ok(Some((inq, outq)))
}

/// A netlink protocol by its name (linux/netlink.h), or its number.
pub fn netlink_proto(p: u32) -> String {
    let n = match p {
        0 => "ROUTE",
        2 => "USERSOCK",
        4 => "SOCK_DIAG",
        5 => "NFLOG",
        6 => "XFRM",
        7 => "SELINUX",
        8 => "ISCSI",
        9 => "AUDIT",
        10 => "FIB_LOOKUP",
        11 => "CONNECTOR",
        12 => "NETFILTER",
        13 => "IP6_FW",
        14 => "DNRTMSG",
        15 => "KOBJECT_UEVENT",
        16 => "GENERIC",
        18 => "SCSITRANSPORT",
        19 => "ECRYPTFS",
        20 => "RDMA",
        21 => "CRYPTO",
        22 => "SMC",
        _ => return p.to_string(),
    };
    n.into()
}

/// A netlink socket's own address: port id and the groups it listens to.
pub fn netlink_local(n: &pb::NetlinkSkEntry) -> String {
    let groups: Vec<String> = n
        .groups
        .iter()
        .enumerate()
        .flat_map(|(w, &bits)| {
            (0..32)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| (w * 32 + b + 1).to_string())
        })
        .collect();
    if n.portid == 0 && groups.is_empty() {
        return "unbound".into();
    }
    if groups.is_empty() {
        format!("portid {}", n.portid)
    } else {
        format!("portid {} groups {}", n.portid, groups.join(","))
    }
}

/// Where a netlink socket is connected to (`-`: not connected).
pub fn netlink_peer(n: &pb::NetlinkSkEntry) -> String {
    if n.state != 1 && n.dst_portid == 0 && n.dst_group == 0 {
        return "-".into();
    }
    match (n.dst_portid, n.dst_group) {
        (0, 0) => "kernel".into(),
        (p, 0) => format!("portid {p}"),
        (p, g) => format!("portid {p} group {g}"),
    }
}

/// An ethernet protocol (host order) by its name, or in hex.
pub fn eth_proto(p: u16) -> String {
    match p {
        0x0003 => "ALL".into(),
        0x0800 => "IP".into(),
        0x0806 => "ARP".into(),
        0x86dd => "IPV6".into(),
        0x8100 => "8021Q".into(),
        0 => "0".into(),
        _ => format!("{p:#06x}"),
    }
}

/// A packet socket's binding and settings: interface, TPACKET version, aux data, fanout, memberships.
pub fn packet_local(p: &pb::PacketSockEntry) -> String {
    let mut s = if p.ifindex == 0 {
        "any interface".to_string()
    } else {
        format!("ifindex {}", p.ifindex)
    };
    if p.version != 0 {
        s.push_str(&format!(" v{}", p.version + 1));
    }
    if p.aux_data {
        s.push_str(" auxdata");
    }
    if let Some(f) = p.fanout.filter(|f| *f != u32::MAX) {
        s.push_str(&format!(" fanout {}:{}", f & 0xffff, (f >> 16) & 0xff));
    }
    if !p.mclist.is_empty() {
        s.push_str(&format!(" mc {}", p.mclist.len()));
    }
    s
}

/// All sockets of the set, in files.img order.
pub fn build(set: &ImageSet) -> Result<Vec<Socket>> {
    let files = set.files()?;
    // Owners: every (pid, fd) whose fdinfo points at the file id.
    let mut owners: HashMap<u32, Vec<Owner>> = HashMap::new();
    let mut seen_tables = HashMap::new();
    for p in super::select_live(set, None)? {
        let ids = set.ids(p.pid)?;
        if seen_tables.insert(ids.files_id, p.pid).is_some() {
            continue; // shared fd table: already listed under its first user
        }
        for fd in set.fdinfo(ids.files_id)? {
            owners.entry(fd.id).or_default().push(Owner { pid: p.pid, fd: fd.fd });
        }
    }
    // Unix queues: packets per socket id.
    let mut uq: HashMap<u32, (u64, u64)> = HashMap::new();
    if set.has("sk-queues.img") {
        for (e, data) in set.with_payload::<pb::SkPacketEntry>("sk-queues.img")? {
            let q = uq.entry(e.id_for).or_default();
            q.0 += data.len().max(e.length as usize) as u64;
            q.1 += 1;
        }
    }
    let unix_by_ino: HashMap<u32, &pb::UnixSkEntry> = files
        .iter()
        .filter_map(|f| f.usk.as_ref())
        .map(|u| (u.ino, u))
        .collect();
    let mut out = Vec::new();
    for f in &files {
        let own = owners.get(&f.id).cloned().unwrap_or_default();
        if let Some(u) = &f.usk {
            let (recv_q, packets) = uq.get(&u.id).copied().unwrap_or_default();
            let peer = if u.peer == 0 {
                "-".into()
            } else {
                match unix_by_ino.get(&u.peer) {
                    Some(p) if !p.name.is_empty() => format!("{} (ino {})", unix_name(&p.name), u.peer),
                    _ => format!("ino {}", u.peer),
                }
            };
            out.push(Socket {
                id: f.id,
                ino: u.ino,
                family: "unix".into(),
                kind: sk_name("type", u.r#type),
                proto: "-".into(),
                state: unix_state(u.state, u.r#type),
                local: unix_name(&u.name),
                peer,
                recv_q,
                send_q: 0,
                packets,
                owners: own,
            });
        } else if let Some(i) = &f.isk {
            let (recv_q, send_q) = if i.proto == 6 {
                tcp_queues(set, i.ino)?.unwrap_or_default()
            } else {
                (0, 0)
            };
            let connected = i.dst_port != 0 || i.dst_addr.iter().any(|&w| w != 0);
            out.push(Socket {
                id: f.id,
                ino: i.ino,
                family: if i.family == 10 { "inet6" } else { "inet" }.into(),
                kind: sk_name("type", i.r#type),
                proto: sk_name("proto", i.proto),
                state: sk_name("state", i.state),
                local: inet_addr(&i.src_addr, i.src_port, i.family),
                peer: if connected {
                    inet_addr(&i.dst_addr, i.dst_port, i.family)
                } else {
                    "-".into()
                },
                recv_q,
                send_q,
                packets: 0,
                owners: own,
            });
        } else if let Some(p) = &f.psk {
            out.push(Socket {
                id: f.id,
                ino: 0,
                family: "packet".into(),
                kind: sk_name("type", p.r#type),
                proto: eth_proto(u16::from_be(p.protocol as u16)),
                state: "-".into(),
                local: packet_local(p),
                peer: "-".into(),
                recv_q: 0,
                send_q: 0,
                packets: 0,
                owners: own,
            });
        } else if let Some(n) = &f.nlsk {
            out.push(Socket {
                id: f.id,
                ino: n.ino,
                family: "netlink".into(),
                kind: "RAW".into(),
                proto: netlink_proto(n.protocol),
                state: if n.state == 1 { "CONNECTED" } else { "UNCONNECTED" }.into(),
                local: netlink_local(n),
                peer: netlink_peer(n),
                recv_q: 0,
                send_q: 0,
                packets: 0,
                owners: own,
            });
        }
    }
    Ok(out)
}

/// An aligned table.
pub fn render(socks: &[Socket]) -> String {
    let mut t = Table::new(&[
        ("PID", Align::Right),
        ("FD", Align::Right),
        ("FAMILY", Align::Left),
        ("TYPE", Align::Left),
        ("PROTO", Align::Left),
        ("STATE", Align::Left),
        ("RECV-Q", Align::Right),
        ("SEND-Q", Align::Right),
        ("INO", Align::Right),
        ("LOCAL", Align::Left),
        ("PEER", Align::Left),
    ]);
    for s in socks {
        let owners: Vec<Owner> = if s.owners.is_empty() {
            vec![Owner { pid: 0, fd: 0 }]
        } else {
            s.owners.clone()
        };
        for o in owners {
            let (pid, fd) = if o.pid == 0 {
                ("-".to_string(), "-".to_string())
            } else {
                (o.pid.to_string(), o.fd.to_string())
            };
            t.row(vec![
                pid,
                fd,
                s.family.clone(),
                s.kind.clone(),
                s.proto.clone(),
                s.state.clone(),
                s.recv_q.to_string(),
                s.send_q.to_string(),
                s.ino.to_string(),
                s.local.clone(),
                s.peer.clone(),
            ]);
        }
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(ip(&[u32::from_be_bytes([127, 0, 0, 1]).to_be()], 2), "127.0.0.1");
        assert_eq!(ip(&[0, 0, 0, u32::from_ne_bytes([0, 0, 0, 1])], 10), "::1");
        assert_eq!(unix_name(b"\0abs"), "@abs");
        assert_eq!(unix_name(b"/tmp/x\n"), "/tmp/x\\x0a");
        assert_eq!(unix_name(b""), "-");
    }
}
