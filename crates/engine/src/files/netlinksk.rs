//! Netlink sockets (AF_NETLINK): files.img NETLINKSK entries (CRIU 4.2's
//! `netlink_sk_entry` in the `nlsk` field: protocol, bound port id, the
//! groups it listens to, the destination it is connected to, options).
//!
//! Dump: the tree's netlink sockets are surveyed with the others
//! ([`survey`], before anything is written): sock_diag (NETLINK_SOCK_DIAG,
//! family AF_NETLINK) gives the port id, state, destination, group bitmap
//! and flags of every bound socket of our network namespace; an unbound
//! socket is not in it (its protocol comes from SO_PROTOCOL on the fd taken
//! with pidfd_getfd). Refused, naming pid and fd, as CRIU does: messages
//! queued for reading (CRIU refuses them: they are answers or notifications
//! the kernel will not send again), groups above 32; and beyond CRIU: a
//! dump in progress (NDIAG_FLAG_CB_RUNNING: the kernel's continuation cannot
//! be carried), the SOL_NETLINK options CRIU's entry has no field for
//! (NETLINK_PKTINFO, BROADCAST_ERROR, NO_ENOBUFS, LISTEN_ALL_NSID, CAP_ACK,
//! EXT_ACK, GET_STRICT_CHK: restored without them the socket would behave
//! differently), an eBPF filter, an F_SETOWN owner, and a bound socket
//! sock_diag does not see (another network namespace).
//!
//! Restore: socket(AF_NETLINK, SOCK_RAW, protocol), bound to its port id
//! with its first 32 groups (a port id taken by another socket is an
//! error, where CRIU would take another one: the program may rely on it),
//! connected to its destination, options and its classic BPF filter put
//! back.

use super::skfamily::Sock;
use super::{fown, DescribeCx, FdCtx, FdKind, FileError, FileSet, FileTable, OpenFile, SetError, TreeFd};
use crate::sys::sockets as sks;
use cryo_image::pb;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};

const SOL_NETLINK: i32 = 270;
/// netlink_sk_entry.state of a connected socket (NETLINK_CONNECTED).
pub const NETLINK_CONNECTED: u32 = 1;

// sock_diag for AF_NETLINK (linux/netlink_diag.h).
const NDIAG_PROTO_ALL: u8 = 255;
const NDIAG_SHOW_MEMINFO: u32 = 0x1;
const NDIAG_SHOW_GROUPS: u32 = 0x2;
const NDIAG_SHOW_FLAGS: u32 = 0x8;
const NETLINK_DIAG_MEMINFO: u16 = 0;
const NETLINK_DIAG_GROUPS: u16 = 1;
const NETLINK_DIAG_FLAGS: u16 = 4;
const NDIAG_FLAG_CB_RUNNING: u32 = 0x1;

/// SOL_NETLINK options CRIU's entry cannot hold: (number, name).
const UNKEPT_OPTS: &[(i32, &str)] = &[
    (3, "NETLINK_PKTINFO"),
    (4, "NETLINK_BROADCAST_ERROR"),
    (5, "NETLINK_NO_ENOBUFS"),
    (8, "NETLINK_LISTEN_ALL_NSID"),
    (10, "NETLINK_CAP_ACK"),
    (11, "NETLINK_EXT_ACK"),
    (12, "NETLINK_GET_STRICT_CHK"),
];

/// What sock_diag says of one netlink socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NlDiag {
    pub ino: u32,
    pub protocol: u32,
    pub state: u32,
    pub portid: u32,
    pub dst_portid: u32,
    pub dst_group: u32,
    /// The group bitmap, 32 groups a word (None: no groups ever joined).
    pub groups: Option<Vec<u32>>,
    /// NDIAG_FLAG_* bits.
    pub flags: u32,
    /// Bytes allocated to the receive queue (SK_MEMINFO_RMEM_ALLOC).
    pub rmem: u32,
}

fn ne32(b: &[u8]) -> u32 {
    u32::from_ne_bytes(b[..4].try_into().unwrap())
}

/// One sock_diag answer (struct netlink_diag_msg, 28 bytes, then attributes).
pub fn parse_diag(b: &[u8]) -> Result<NlDiag, String> {
    if b.len() < 28 {
        return Err(format!("netlink_diag_msg of {} bytes", b.len()));
    }
    let mut d = NlDiag {
        protocol: b[2] as u32,
        state: b[3] as u32,
        portid: ne32(&b[4..]),
        dst_portid: ne32(&b[8..]),
        dst_group: ne32(&b[12..]),
        ino: ne32(&b[16..]),
        ..Default::default()
    };
    let mut off = 28;
    while off + 4 <= b.len() {
        let len = u16::from_ne_bytes([b[off], b[off + 1]]) as usize;
        let ty = u16::from_ne_bytes([b[off + 2], b[off + 3]]);
        if len < 4 || off + len > b.len() {
            return Err(format!("attribute of {len} bytes at {off}"));
        }
        let p = &b[off + 4..off + len];
        match ty {
            NETLINK_DIAG_GROUPS => d.groups = Some(p.chunks_exact(4).map(ne32).collect()),
            NETLINK_DIAG_FLAGS if p.len() >= 4 => d.flags = ne32(p),
            NETLINK_DIAG_MEMINFO if p.len() >= 4 => d.rmem = ne32(p),
            _ => {}
        }
        off += (len + 3) & !3;
    }
    Ok(d)
}

/// Every bound netlink socket of our network namespace, by inode.
fn diag_all() -> std::io::Result<HashMap<u32, NlDiag>> {
    let mut req = vec![libc::AF_NETLINK as u8, NDIAG_PROTO_ALL, 0, 0];
    req.extend_from_slice(&0u32.to_ne_bytes()); // ino
    req.extend_from_slice(&(NDIAG_SHOW_MEMINFO | NDIAG_SHOW_GROUPS | NDIAG_SHOW_FLAGS).to_ne_bytes());
    req.extend_from_slice(&[0u8; 8]); // cookie
    let mut out = HashMap::new();
    for m in sks::sock_diag_dump(&req)? {
        let d = parse_diag(&m).map_err(std::io::Error::other)?;
        out.insert(d.ino, d);
    }
    Ok(out)
}

/// The group bitmap as the entry holds it: trailing empty words dropped
/// (the kernel rounds the bitmap up to longs); more than one word left
/// (a group above 32) is refused, as CRIU refuses it.
pub fn entry_groups(g: &Option<Vec<u32>>) -> Result<Vec<u32>, String> {
    let Some(g) = g else { return Ok(Vec::new()) };
    let mut g = g.clone();
    while g.len() > 1 && g.last() == Some(&0) {
        g.pop();
    }
    if g.len() > 1 {
        return Err("it listens to netlink groups above 32 (CRIU's restore binds the first 32 only)".into());
    }
    Ok(g)
}

/// The tree's netlink sockets, surveyed: their entries (without id and flags), by inode.
#[derive(Default)]
pub struct Survey {
    pub socks: HashMap<u32, pb::NetlinkSkEntry>,
}

/// Check the tree's netlink sockets (of `socks`, the classified sockets)
/// before anything is written, and read their state.
pub fn survey(nl: &[&Sock]) -> Result<Survey, FileError> {
    let mut out = Survey::default();
    if nl.is_empty() {
        return Ok(out);
    }
    let all = diag_all().map_err(|source| FileError::Io {
        pid: nl[0].pid,
        fd: nl[0].fd,
        what: "sock_diag of the netlink sockets".into(),
        source,
    })?;
    for &s in nl {
        if out.socks.contains_key(&s.ino) {
            continue;
        }
        let e = one(s, all.get(&s.ino))?;
        out.socks.insert(s.ino, e);
    }
    Ok(out)
}

fn one(s: &Sock, d: Option<&NlDiag>) -> Result<pb::NetlinkSkEntry, FileError> {
    let refuse = |what: String| FileError::Unsupported {
        pid: s.pid,
        fd: s.fd,
        link: s.link.clone(),
        what: format!("netlink socket (protocol {}): {what}", s.proto),
    };
    let io = |what: &str, source| FileError::Io {
        pid: s.pid,
        fd: s.fd,
        what: what.into(),
        source,
    };
    let fd = s.dup.as_raw_fd();
    if crate::sys::restore::poll_in(fd, 0).map_err(|e| io("poll", e))? || d.is_some_and(|d| d.rmem != 0) {
        return Err(refuse(
            "messages are queued for reading (CRIU refuses them too: the kernel would not send them again)".into(),
        ));
    }
    for &(opt, name) in UNKEPT_OPTS {
        if sks::getsockopt_int(fd, SOL_NETLINK, opt).unwrap_or(0) != 0 {
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
    let opts = pb::SkOptsEntry {
        so_filter: filter,
        ..opts
    };
    let e = match d {
        Some(d) => {
            if d.flags & NDIAG_FLAG_CB_RUNNING != 0 {
                return Err(refuse(
                    "a netlink dump is in progress (the kernel's continuation of it cannot be carried)".into(),
                ));
            }
            let groups = entry_groups(&d.groups).map_err(refuse)?;
            if groups.iter().any(|g| *g != 0) && d.portid == 0 {
                return Err(refuse("bound to groups but not to a port id".into()));
            }
            pb::NetlinkSkEntry {
                id: 0,
                ino: s.ino,
                protocol: d.protocol,
                state: d.state,
                flags: 0,
                portid: d.portid,
                groups,
                dst_portid: d.dst_portid,
                dst_group: d.dst_group,
                fown: super::fown(),
                opts,
                ns_id: Some(2),
            }
        }
        None => {
            // Not in sock_diag: unbound (or of another network namespace,
            // which its own name gives away).
            let name = sks::sock_name(fd, false).map_err(|e| io("getsockname", e))?;
            if name.len() >= 8 && ne32(&name[4..]) != 0 {
                return Err(refuse(format!(
                    "bound to port id {} but not seen by sock_diag: a socket of another network namespace",
                    ne32(&name[4..])
                )));
            }
            pb::NetlinkSkEntry {
                id: 0,
                ino: s.ino,
                protocol: s.proto as u32,
                state: 0,
                flags: 0,
                portid: 0,
                groups: Vec::new(),
                dst_portid: 0,
                dst_group: 0,
                fown: super::fown(),
                opts,
                ns_id: Some(2),
            }
        }
    };
    Ok(e)
}

pub struct NetlinkSk;

impl FdKind for NetlinkSk {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Netlinksk
    }

    fn survey(&self, fds: &[TreeFd], t: &mut FileTable) -> Result<(), FileError> {
        let s = super::skfamily::with_family(fds, t, libc::AF_NETLINK, survey)?;
        for ino in s.socks.keys() {
            t.claim_socket(*ino);
        }
        *t.survey_state::<Survey>() = s;
        Ok(())
    }

    fn detect(&self, c: &FdCtx) -> bool {
        c.socket_domain() == Some(libc::AF_NETLINK)
    }

    fn dump(&self, c: &FdCtx, id: u32, t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        let ino = c.stat.st_ino as u32;
        let mut e = t
            .survey_state::<Survey>()
            .socks
            .get(&ino)
            .cloned()
            .ok_or_else(|| c.unsupported("a netlink socket the survey did not see"))?;
        e.id = id;
        e.flags = c.flags();
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Netlinksk as i32,
            id,
            nlsk: Some(e),
            ..Default::default()
        })
    }

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        let n = e.nlsk.as_ref().ok_or_else(|| cx.bad("NETLINKSK without nlsk"))?;
        if n.protocol > 31 {
            return Err(cx.bad(format!("netlink socket {}: protocol {}", n.id, n.protocol)));
        }
        if n.groups.len() > 1 {
            return Err(super::set::unsupported(
                cx.file,
                0,
                format!(
                    "entry {}: netlink socket {}: groups above 32 ({} words)",
                    cx.index,
                    n.id,
                    n.groups.len()
                ),
            ));
        }
        // Unconnected: 0 (NETLINK_UNCONNECTED, after a disconnect, and what
        // CRIU writes for unbound sockets) or 7 (TCP_CLOSE, a fresh socket's).
        if !matches!(n.state, 0 | NETLINK_CONNECTED | 7) {
            return Err(cx.bad(format!("netlink socket {}: state {}", n.id, n.state)));
        }
        if n.dst_group > 32 {
            return Err(cx.bad(format!("netlink socket {}: destination group {}", n.id, n.dst_group)));
        }
        Ok(Box::new(NetlinkSkFile { entry: n.clone() }))
    }

    fn check(&self, _files: &FileSet) -> Result<(), SetError> {
        Ok(())
    }
}

/// A netlink socket to recreate.
#[derive(Debug)]
pub struct NetlinkSkFile {
    pub entry: pb::NetlinkSkEntry,
}

/// A sockaddr_nl: family, pad, port id, groups.
fn nl_addr(portid: u32, groups: u32) -> Vec<u8> {
    let mut a = (libc::AF_NETLINK as u16).to_ne_bytes().to_vec();
    a.extend_from_slice(&[0, 0]);
    a.extend_from_slice(&portid.to_ne_bytes());
    a.extend_from_slice(&groups.to_ne_bytes());
    a
}

impl OpenFile for NetlinkSkFile {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Netlinksk
    }

    fn restore(&self, id: u32, _cx: &mut super::RestoreCx) -> Result<Option<OwnedFd>, super::OpenError> {
        let n = &self.entry;
        let err = |r: String| {
            super::set::open_err(
                pb::FdTypes::Netlinksk,
                format!("netlink socket (file id {id}, protocol {})", n.protocol),
                r,
            )
        };
        let s = sks::socket(libc::AF_NETLINK, libc::SOCK_RAW, n.protocol as i32)
            .map_err(|e| err(format!("socket: {e}")))?;
        let fd = s.as_raw_fd();
        super::skopts::apply(fd, &n.opts).map_err(|e| err(format!("socket options: {e}")))?;
        if !n.opts.so_filter.is_empty() {
            sks::attach_filter(fd, &n.opts.so_filter).map_err(|e| err(format!("SO_ATTACH_FILTER: {e}")))?;
        }
        if n.portid != 0 {
            let groups = n.groups.first().copied().unwrap_or(0);
            sks::bind_raw(fd, &nl_addr(n.portid, groups), false)
                .map_err(|e| err(format!("bind to port id {} (groups {groups:#x}): {e}", n.portid)))?;
        }
        if n.state == NETLINK_CONNECTED {
            let g = if n.dst_group == 0 { 0 } else { 1u32 << (n.dst_group - 1) };
            sks::bind_raw(fd, &nl_addr(n.dst_portid, g), true).map_err(|e| {
                err(format!(
                    "connect to port id {} group {}: {e}",
                    n.dst_portid, n.dst_group
                ))
            })?;
        }
        super::unixsk::set_flags(&s, n.flags).map_err(err)?;
        Ok(Some(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diag_message_is_parsed() {
        let mut m = vec![libc::AF_NETLINK as u8, libc::SOCK_RAW as u8, 0, 1];
        for v in [4242u32, 0, 3, 777, 0, 0] {
            m.extend_from_slice(&v.to_ne_bytes());
        }
        // NETLINK_DIAG_GROUPS: 8 bytes (a long's worth of groups).
        m.extend_from_slice(&12u16.to_ne_bytes());
        m.extend_from_slice(&NETLINK_DIAG_GROUPS.to_ne_bytes());
        m.extend_from_slice(&0x11u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&NETLINK_DIAG_FLAGS.to_ne_bytes());
        m.extend_from_slice(&1u32.to_ne_bytes());
        let d = parse_diag(&m).unwrap();
        assert_eq!(
            (d.ino, d.protocol, d.state, d.portid, d.dst_group, d.flags),
            (777, 0, 1, 4242, 3, 1)
        );
        assert_eq!(entry_groups(&d.groups).unwrap(), vec![0x11]);
        assert!(entry_groups(&Some(vec![1, 2])).is_err());
        assert_eq!(entry_groups(&None).unwrap(), Vec::<u32>::new());
        assert!(parse_diag(&m[..20]).is_err());
        let mut bad = m.clone();
        bad[28] = 200;
        assert!(parse_diag(&bad).is_err());
    }
}
