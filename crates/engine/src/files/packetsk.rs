//! Packet sockets (AF_PACKET: SOCK_RAW, SOCK_DGRAM and the obsolete
//! SOCK_PACKET): files.img PACKETSK entries (CRIU 4.2's `packet_sock_entry`
//! in the `psk` field: type, protocol, interface, TPACKET version, reserve,
//! aux data, orig dev, vnet header, loss, timestamp source, copy threshold,
//! multicast memberships, fanout, rx/tx rings, options with the socket
//! filter).
//!
//! Dump: sock_diag (NETLINK_SOCK_DIAG, family AF_PACKET) of our network
//! namespace gives each socket's protocol, interface index, version,
//! reserve, flags, copy threshold, memberships, fanout and rings; the socket
//! options and the classic BPF filter come from the socket itself (taken
//! with pidfd_getfd). Refused, naming pid and fd: a ring mapped into a
//! task's memory (cryo's memory restore does not map from a socket; a ring
//! set up but not mapped is kept), fanout with a BPF program of its own,
//! the options CRIU's entry cannot hold (PACKET_IGNORE_OUTGOING,
//! PACKET_QDISC_BYPASS, PACKET_TX_HAS_OFF), an eBPF filter, a file owner,
//! and a socket sock_diag does not see (another network namespace).
//! Packets queued for reading are not kept, as CRIU does not keep them: a
//! packet socket may lose packets at any time (the kernel drops what does
//! not fit), and these are the packets that arrived while the program was
//! frozen.
//!
//! Restore (CRIU's order): socket(AF_PACKET, type, protocol), bound to the
//! interface index (0: every interface; SOCK_PACKET: by the interface's
//! name), then PACKET_VERSION, RESERVE, TIMESTAMP, COPY_THRESH, the flag
//! options, memberships, rings, fanout, and the socket options and filter.

use super::skfamily::Sock;
use super::{fown, DescribeCx, FdCtx, FdKind, FileError, FileSet, FileTable, OpenFile, SetError, TreeFd};
use crate::sys::sockets as sks;
use cryo_image::pb;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};

// linux/if_packet.h
const PACKET_ADD_MEMBERSHIP: i32 = 1;
const PACKET_COPY_THRESH: i32 = 7;
const PACKET_AUXDATA: i32 = 8;
const PACKET_ORIGDEV: i32 = 9;
const PACKET_VERSION: i32 = 10;
const PACKET_RESERVE: i32 = 12;
const PACKET_LOSS: i32 = 14;
const PACKET_VNET_HDR: i32 = 15;
const PACKET_TIMESTAMP: i32 = 17;
const PACKET_FANOUT: i32 = 18;
const PACKET_TX_HAS_OFF: i32 = 19;
const PACKET_QDISC_BYPASS: i32 = 20;
const PACKET_IGNORE_OUTGOING: i32 = 23;
const PACKET_FANOUT_CBPF: u32 = 6;
const PACKET_FANOUT_EBPF: u32 = 7;
const PACKET_RX_RING: i32 = 5;
const PACKET_TX_RING: i32 = 13;
/// The obsolete SOCK_PACKET type (bound by interface name).
const SOCK_PACKET: i32 = 10;
const PACKET_MR_MULTICAST: u32 = 0;
const PACKET_MR_PROMISC: u32 = 1;
const PACKET_MR_ALLMULTI: u32 = 2;
const PACKET_MR_UNICAST: u32 = 3;

// sock_diag for AF_PACKET (linux/packet_diag.h).
const PACKET_SHOW_INFO: u32 = 0x1;
const PACKET_SHOW_MCLIST: u32 = 0x2;
const PACKET_SHOW_RING_CFG: u32 = 0x4;
const PACKET_SHOW_FANOUT: u32 = 0x8;
const PACKET_DIAG_INFO: u16 = 0;
const PACKET_DIAG_MCLIST: u16 = 1;
const PACKET_DIAG_RX_RING: u16 = 2;
const PACKET_DIAG_TX_RING: u16 = 3;
const PACKET_DIAG_FANOUT: u16 = 4;
const PDI_AUXDATA: u32 = 0x2;
const PDI_ORIGDEV: u32 = 0x4;
const PDI_VNETHDR: u32 = 0x8;
const PDI_LOSS: u32 = 0x10;
/// struct packet_diag_mclist: index, count, type (u16), alen (u16), addr[32].
const MCLIST_SIZE: usize = 44;
/// struct packet_mreq_max's address room.
const MAX_ADDR_LEN: usize = 32;

/// One multicast membership as sock_diag reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mc {
    pub index: u32,
    pub count: u32,
    pub ty: u32,
    pub addr: Vec<u8>,
}

/// What sock_diag says of one packet socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PktDiag {
    pub ino: u32,
    pub ty: u32,
    /// The protocol in host order (pdiag_num).
    pub num: u16,
    pub ifindex: u32,
    pub version: u32,
    pub reserve: u32,
    pub copy_thresh: u32,
    pub tstamp: u32,
    pub flags: u32,
    pub mclist: Vec<Mc>,
    pub fanout: Option<u32>,
    pub rx_ring: Option<pb::PacketRing>,
    pub tx_ring: Option<pb::PacketRing>,
    /// PACKET_DIAG_INFO was there.
    pub has_info: bool,
}

fn ne32(b: &[u8]) -> u32 {
    u32::from_ne_bytes(b[..4].try_into().unwrap())
}

fn ring(p: &[u8]) -> Result<pb::PacketRing, String> {
    if p.len() < 28 {
        return Err(format!("ring attribute of {} bytes", p.len()));
    }
    Ok(pb::PacketRing {
        block_size: ne32(p),
        block_nr: ne32(&p[4..]),
        frame_size: ne32(&p[8..]),
        frame_nr: ne32(&p[12..]),
        retire_tmo: ne32(&p[16..]),
        sizeof_priv: ne32(&p[20..]),
        features: ne32(&p[24..]),
    })
}

/// One sock_diag answer (struct packet_diag_msg, 16 bytes, then attributes).
pub fn parse_diag(b: &[u8]) -> Result<PktDiag, String> {
    if b.len() < 16 {
        return Err(format!("packet_diag_msg of {} bytes", b.len()));
    }
    let mut d = PktDiag {
        ty: b[1] as u32,
        num: u16::from_ne_bytes([b[2], b[3]]),
        ino: ne32(&b[4..]),
        ..Default::default()
    };
    let mut off = 16;
    while off + 4 <= b.len() {
        let len = u16::from_ne_bytes([b[off], b[off + 1]]) as usize;
        let ty = u16::from_ne_bytes([b[off + 2], b[off + 3]]);
        if len < 4 || off + len > b.len() {
            return Err(format!("attribute of {len} bytes at {off}"));
        }
        let p = &b[off + 4..off + len];
        match ty {
            PACKET_DIAG_INFO => {
                if p.len() < 24 {
                    return Err(format!("packet_diag_info of {} bytes", p.len()));
                }
                d.ifindex = ne32(p);
                d.version = ne32(&p[4..]);
                d.reserve = ne32(&p[8..]);
                d.copy_thresh = ne32(&p[12..]);
                d.tstamp = ne32(&p[16..]);
                d.flags = ne32(&p[20..]);
                d.has_info = true;
            }
            PACKET_DIAG_MCLIST => {
                for m in p.chunks_exact(MCLIST_SIZE) {
                    let alen = (u16::from_ne_bytes([m[10], m[11]]) as usize).min(MAX_ADDR_LEN);
                    d.mclist.push(Mc {
                        index: ne32(m),
                        count: ne32(&m[4..]),
                        ty: u16::from_ne_bytes([m[8], m[9]]) as u32,
                        addr: m[12..12 + alen].to_vec(),
                    });
                }
            }
            PACKET_DIAG_RX_RING => d.rx_ring = Some(ring(p)?),
            PACKET_DIAG_TX_RING => d.tx_ring = Some(ring(p)?),
            PACKET_DIAG_FANOUT if p.len() >= 4 => d.fanout = Some(ne32(p)),
            _ => {}
        }
        off += (len + 3) & !3;
    }
    Ok(d)
}

/// Every packet socket of our network namespace, by inode.
fn diag_all() -> std::io::Result<HashMap<u32, PktDiag>> {
    let mut req = vec![libc::AF_PACKET as u8, 0, 0, 0];
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(
        &(PACKET_SHOW_INFO | PACKET_SHOW_MCLIST | PACKET_SHOW_RING_CFG | PACKET_SHOW_FANOUT).to_ne_bytes(),
    );
    req.extend_from_slice(&[0u8; 8]);
    let mut out = HashMap::new();
    for m in sks::sock_diag_dump(&req)? {
        let d = parse_diag(&m).map_err(std::io::Error::other)?;
        out.insert(d.ino, d);
    }
    Ok(out)
}

/// The tree's packet sockets, surveyed: their entries (without id and flags), by inode.
#[derive(Default)]
pub struct Survey {
    pub socks: HashMap<u32, pb::PacketSockEntry>,
}

/// Check the tree's packet sockets (of `socks`, the classified sockets;
/// `pids`: every process of the tree, whose mappings are looked at for
/// mapped rings) before anything is written, and read their state.
pub fn survey(pk: &[&Sock], pids: &[i32]) -> Result<Survey, FileError> {
    let mut out = Survey::default();
    if pk.is_empty() {
        return Ok(out);
    }
    let all = diag_all().map_err(|source| FileError::Io {
        pid: pk[0].pid,
        fd: pk[0].fd,
        what: "sock_diag of the packet sockets".into(),
        source,
    })?;
    for &s in pk {
        if out.socks.contains_key(&s.ino) {
            continue;
        }
        let e = one(s, all.get(&s.ino))?;
        if e.rx_ring.is_some() || e.tx_ring.is_some() {
            let needle = format!(" socket:[{}]", s.ino);
            for &pid in pids {
                let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
                if maps.lines().any(|l| l.ends_with(&needle)) {
                    return Err(FileError::Unsupported {
                        pid: s.pid,
                        fd: s.fd,
                        link: s.link.clone(),
                        what: format!(
                            "packet socket: its ring is mapped into the memory of pid {pid}: not supported (the ring itself is)"
                        ),
                    });
                }
            }
        }
        out.socks.insert(s.ino, e);
    }
    Ok(out)
}

/// The entry of a packet socket from what sock_diag said of it (`opts`
/// read from the socket), or why it cannot be restored.
pub fn entry_of(d: &PktDiag, opts: pb::SkOptsEntry) -> Result<pb::PacketSockEntry, String> {
    if !d.has_info {
        return Err("sock_diag gave no packet_diag_info".into());
    }
    if let Some(f) = d.fanout {
        let ty = (f >> 16) & 0xff;
        if ty == PACKET_FANOUT_CBPF || ty == PACKET_FANOUT_EBPF {
            return Err("its fanout group steers with a BPF program: not supported".into());
        }
    }
    let mut mclist = Vec::new();
    for m in &d.mclist {
        if !matches!(
            m.ty,
            PACKET_MR_MULTICAST | PACKET_MR_PROMISC | PACKET_MR_ALLMULTI | PACKET_MR_UNICAST
        ) {
            return Err(format!("membership of unknown type {}", m.ty));
        }
        let addr = if matches!(m.ty, PACKET_MR_MULTICAST | PACKET_MR_UNICAST) {
            m.addr.clone()
        } else {
            Vec::new()
        };
        // A membership added n times is listed n times: restore adds it as often.
        for _ in 0..m.count.max(1) {
            mclist.push(pb::PacketMclist {
                index: m.index,
                r#type: m.ty,
                addr: addr.clone(),
            });
        }
    }
    Ok(pb::PacketSockEntry {
        id: 0,
        r#type: d.ty,
        protocol: d.num.to_be() as u32,
        flags: 0,
        ifindex: d.ifindex,
        fown: super::fown(),
        opts,
        version: d.version,
        reserve: d.reserve,
        aux_data: d.flags & PDI_AUXDATA != 0,
        orig_dev: d.flags & PDI_ORIGDEV != 0,
        vnet_hdr: d.flags & PDI_VNETHDR != 0,
        loss: d.flags & PDI_LOSS != 0,
        timestamp: d.tstamp,
        copy_thresh: d.copy_thresh,
        mclist,
        fanout: d.fanout,
        rx_ring: d.rx_ring,
        tx_ring: d.tx_ring,
        ns_id: Some(2),
    })
}

fn one(s: &Sock, d: Option<&PktDiag>) -> Result<pb::PacketSockEntry, FileError> {
    let refuse = |what: String| FileError::Unsupported {
        pid: s.pid,
        fd: s.fd,
        link: s.link.clone(),
        what: format!("packet socket: {what}"),
    };
    let io = |what: &str, source| FileError::Io {
        pid: s.pid,
        fd: s.fd,
        what: what.into(),
        source,
    };
    let Some(d) = d else {
        return Err(refuse(
            "not seen by sock_diag in cryo's network namespace (a socket of another network namespace)".into(),
        ));
    };
    let fd = s.dup.as_raw_fd();
    for (opt, name) in [
        (PACKET_IGNORE_OUTGOING, "PACKET_IGNORE_OUTGOING"),
        (PACKET_QDISC_BYPASS, "PACKET_QDISC_BYPASS"),
        (PACKET_TX_HAS_OFF, "PACKET_TX_HAS_OFF"),
    ] {
        if sks::getsockopt_int(fd, libc::SOL_PACKET, opt).unwrap_or(0) != 0 {
            return Err(refuse(format!("{name} is set, and CRIU's image has no place for it")));
        }
    }
    let o = fown::query(fd).map_err(|e| io("F_GETOWN_EX", e))?;
    if fown::is_set(&o) {
        return Err(refuse(
            "it has a file owner (F_SETOWN): not supported for sockets yet".into(),
        ));
    }
    let opts = super::skopts::read(fd, s.family).map_err(|e| io("reading the socket options", e))?;
    let filter = sks::get_filter(fd).map_err(|e| {
        refuse(format!(
            "its socket filter cannot be read ({e}): an eBPF program (SO_ATTACH_BPF) is not supported"
        ))
    })?;
    entry_of(
        d,
        pb::SkOptsEntry {
            so_filter: filter,
            ..opts
        },
    )
    .map_err(refuse)
}

pub struct PacketSk;

impl FdKind for PacketSk {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Packetsk
    }

    fn survey(&self, fds: &[TreeFd], t: &mut FileTable) -> Result<(), FileError> {
        let mut pids: Vec<i32> = fds.iter().map(|f| f.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        let s = super::skfamily::with_family(fds, t, libc::AF_PACKET, |socks| survey(socks, &pids))?;
        for ino in s.socks.keys() {
            t.claim_socket(*ino);
        }
        *t.survey_state::<Survey>() = s;
        Ok(())
    }

    fn detect(&self, c: &FdCtx) -> bool {
        c.socket_domain() == Some(libc::AF_PACKET)
    }

    fn dump(&self, c: &FdCtx, id: u32, t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        let ino = c.stat.st_ino as u32;
        let mut e = t
            .survey_state::<Survey>()
            .socks
            .get(&ino)
            .cloned()
            .ok_or_else(|| c.unsupported("a packet socket the survey did not see"))?;
        e.id = id;
        e.flags = c.flags();
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Packetsk as i32,
            id,
            psk: Some(e),
            ..Default::default()
        })
    }

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        let p = e.psk.as_ref().ok_or_else(|| cx.bad("PACKETSK without psk"))?;
        if !matches!(p.r#type as i32, libc::SOCK_RAW | libc::SOCK_DGRAM | SOCK_PACKET) {
            return Err(super::set::unsupported(
                cx.file,
                0,
                format!("entry {}: packet socket {}: type {}", cx.index, p.id, p.r#type),
            ));
        }
        if p.r#type as i32 == SOCK_PACKET && (p.rx_ring.is_some() || p.tx_ring.is_some() || !p.mclist.is_empty()) {
            return Err(cx.bad(format!("packet socket {}: SOCK_PACKET with rings or memberships", p.id)));
        }
        if p.protocol > 0xffff {
            return Err(cx.bad(format!("packet socket {}: protocol {:#x}", p.id, p.protocol)));
        }
        for m in &p.mclist {
            if m.addr.len() > MAX_ADDR_LEN || m.r#type > PACKET_MR_UNICAST {
                return Err(cx.bad(format!(
                    "packet socket {}: membership of type {} with a {}-byte address",
                    p.id,
                    m.r#type,
                    m.addr.len()
                )));
            }
        }
        Ok(Box::new(PacketSkFile { entry: p.clone() }))
    }

    fn check(&self, _files: &FileSet) -> Result<(), SetError> {
        Ok(())
    }
}

/// A packet socket to recreate.
#[derive(Debug)]
pub struct PacketSkFile {
    pub entry: pb::PacketSockEntry,
}

/// A sockaddr_ll for bind: family, protocol 0 (the socket's own), interface.
fn ll_addr(ifindex: u32) -> Vec<u8> {
    let mut a = vec![0u8; 20];
    a[..2].copy_from_slice(&(libc::AF_PACKET as u16).to_ne_bytes());
    a[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    a
}

impl OpenFile for PacketSkFile {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Packetsk
    }

    fn restore(&self, id: u32, _cx: &mut super::RestoreCx) -> Result<Option<OwnedFd>, super::OpenError> {
        let p = &self.entry;
        let err = |r: String| {
            super::set::open_err(
                pb::FdTypes::Packetsk,
                format!("packet socket (file id {id}, ifindex {})", p.ifindex),
                r,
            )
        };
        let s = sks::socket(libc::AF_PACKET, p.r#type as i32, p.protocol as i32)
            .map_err(|e| err(format!("socket: {e}")))?;
        let fd = s.as_raw_fd();
        if p.r#type as i32 == SOCK_PACKET {
            // Bound by the interface's name (struct sockaddr: family, 14 bytes of name).
            if p.ifindex > 0 {
                let name =
                    sks::if_name(p.ifindex).map_err(|e| err(format!("the name of interface {}: {e}", p.ifindex)))?;
                let mut a = vec![0u8; 16];
                a[..2].copy_from_slice(&(libc::AF_PACKET as u16).to_ne_bytes());
                let n = name.as_bytes();
                a[2..2 + n.len().min(13)].copy_from_slice(&n[..n.len().min(13)]);
                sks::bind_raw(fd, &a, false).map_err(|e| err(format!("bind to {name:?}: {e}")))?;
            }
            super::skopts::apply(fd, &p.opts).map_err(|e| err(format!("socket options: {e}")))?;
            if !p.opts.so_filter.is_empty() {
                sks::attach_filter(fd, &p.opts.so_filter).map_err(|e| err(format!("SO_ATTACH_FILTER: {e}")))?;
            }
            super::unixsk::set_flags(&s, p.flags).map_err(err)?;
            return Ok(Some(s));
        }
        sks::bind_raw(fd, &ll_addr(p.ifindex), false).map_err(|e| err(format!("bind: {e}")))?;
        let int = |o, v: u32, name: &str| {
            sks::setsockopt_int(fd, libc::SOL_PACKET, o, v as i32).map_err(|e| err(format!("{name}: {e}")))
        };
        int(PACKET_VERSION, p.version, "PACKET_VERSION")?;
        int(PACKET_RESERVE, p.reserve, "PACKET_RESERVE")?;
        int(PACKET_TIMESTAMP, p.timestamp, "PACKET_TIMESTAMP")?;
        int(PACKET_COPY_THRESH, p.copy_thresh, "PACKET_COPY_THRESH")?;
        for (on, o, name) in [
            (p.aux_data, PACKET_AUXDATA, "PACKET_AUXDATA"),
            (p.orig_dev, PACKET_ORIGDEV, "PACKET_ORIGDEV"),
            (p.vnet_hdr, PACKET_VNET_HDR, "PACKET_VNET_HDR"),
            (p.loss, PACKET_LOSS, "PACKET_LOSS"),
        ] {
            if on {
                int(o, 1, name)?;
            }
        }
        for m in &p.mclist {
            // struct packet_mreq_max: ifindex, type, alen, address[32].
            let mut r = Vec::with_capacity(8 + MAX_ADDR_LEN);
            r.extend_from_slice(&(m.index as i32).to_ne_bytes());
            r.extend_from_slice(&(m.r#type as u16).to_ne_bytes());
            r.extend_from_slice(&(m.addr.len() as u16).to_ne_bytes());
            r.extend_from_slice(&m.addr);
            r.resize(8 + MAX_ADDR_LEN, 0);
            sks::setsockopt_bytes(fd, libc::SOL_PACKET, PACKET_ADD_MEMBERSHIP, &r).map_err(|e| {
                err(format!(
                    "PACKET_ADD_MEMBERSHIP (ifindex {}, type {}): {e}",
                    m.index, m.r#type
                ))
            })?;
        }
        for (ring, o, name) in [
            (&p.rx_ring, PACKET_RX_RING, "PACKET_RX_RING"),
            (&p.tx_ring, PACKET_TX_RING, "PACKET_TX_RING"),
        ] {
            if let Some(r) = ring {
                // struct tpacket_req3 (V1/V2 read its first four fields).
                let mut b = Vec::with_capacity(28);
                for v in [
                    r.block_size,
                    r.block_nr,
                    r.frame_size,
                    r.frame_nr,
                    r.retire_tmo,
                    r.sizeof_priv,
                    r.features,
                ] {
                    b.extend_from_slice(&v.to_ne_bytes());
                }
                sks::setsockopt_bytes(fd, libc::SOL_PACKET, o, &b).map_err(|e| err(format!("{name}: {e}")))?;
            }
        }
        if let Some(f) = p.fanout.filter(|f| *f != u32::MAX) {
            int(PACKET_FANOUT, f, "PACKET_FANOUT")?;
        }
        super::skopts::apply(fd, &p.opts).map_err(|e| err(format!("socket options: {e}")))?;
        if !p.opts.so_filter.is_empty() {
            sks::attach_filter(fd, &p.opts.so_filter).map_err(|e| err(format!("SO_ATTACH_FILTER: {e}")))?;
        }
        super::unixsk::set_flags(&s, p.flags).map_err(err)?;
        Ok(Some(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diag_message_is_parsed_into_an_entry() {
        let mut m = vec![libc::AF_PACKET as u8, libc::SOCK_RAW as u8];
        m.extend_from_slice(&0x0003u16.to_ne_bytes()); // ETH_P_ALL
        m.extend_from_slice(&99u32.to_ne_bytes());
        m.extend_from_slice(&[0u8; 8]);
        // PACKET_DIAG_INFO
        m.extend_from_slice(&28u16.to_ne_bytes());
        m.extend_from_slice(&PACKET_DIAG_INFO.to_ne_bytes());
        for v in [1u32, 2, 0, 0, 0, PDI_AUXDATA | 1] {
            m.extend_from_slice(&v.to_ne_bytes());
        }
        // PACKET_DIAG_MCLIST: one promiscuous membership added twice.
        m.extend_from_slice(&((4 + MCLIST_SIZE) as u16).to_ne_bytes());
        m.extend_from_slice(&PACKET_DIAG_MCLIST.to_ne_bytes());
        m.extend_from_slice(&1u32.to_ne_bytes());
        m.extend_from_slice(&2u32.to_ne_bytes());
        m.extend_from_slice(&(PACKET_MR_PROMISC as u16).to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&[0u8; 32]);
        let d = parse_diag(&m).unwrap();
        assert_eq!((d.ino, d.num, d.ifindex, d.version), (99, 3, 1, 2));
        let e = entry_of(&d, pb::SkOptsEntry::default()).unwrap();
        assert_eq!(e.protocol, 0x0300, "network order, as CRIU writes it");
        assert!(e.aux_data && !e.loss);
        assert_eq!(e.mclist.len(), 2);
        assert_eq!(e.fanout, None);
        let mut ringed = d.clone();
        ringed.rx_ring = Some(pb::PacketRing {
            block_size: 4096,
            ..Default::default()
        });
        assert_eq!(
            entry_of(&ringed, pb::SkOptsEntry::default())
                .unwrap()
                .rx_ring
                .unwrap()
                .block_size,
            4096
        );
        let mut bpf = d.clone();
        bpf.fanout = Some(7 | PACKET_FANOUT_CBPF << 16);
        assert!(entry_of(&bpf, pb::SkOptsEntry::default()).unwrap_err().contains("BPF"));
        assert!(parse_diag(&m[..10]).is_err());
    }
}
