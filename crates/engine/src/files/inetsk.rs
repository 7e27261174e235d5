//! Inet sockets (AF_INET, AF_INET6; TCP, UDP, UDP-Lite): files.img INETSK
//! entries as CRIU 4.2 writes them (`inet_sk_entry` in the `isk` field,
//! with `sk_opts_entry`, `ip_opts_entry` and `tcp_opts_entry`), and the
//! receive queue of a UDP socket in sk-queues.img (one `sk_packet_entry`
//! per datagram, `id_for` the socket's own id; CRIU drops UDP queues, and
//! its restore leaves entries it does not use alone). What CRIU's format
//! has no field for goes into cryo's sidecar: the sender of each datagram
//! not from the socket's peer (`udp_sources`), SO_PEEK_OFF (`peek_off`),
//! multicast groups and options (`multicast`, files/mcast.rs), the error
//! pending on a reset TCP connection (`tcp_reset`, files/tcp.rs).
//!
//! Dump: the tree's inet sockets are surveyed first ([`InetSk::survey`]):
//! family, type and protocol from the socket itself (pidfd_getfd +
//! SO_DOMAIN/SO_TYPE/SO_PROTOCOL), state, addresses, backlog, queue lengths
//! and shutdown from sock_diag (inet_diag), or, for a socket the kernel's
//! tables do not hold (a TCP socket created or bound but neither listening
//! nor connected, or reset, or closed by both sides; an unbound UDP
//! socket), from getsockname, SO_PEERNAME and TCP_INFO as CRIU does (a TCP
//! socket in CLOSE that still names its peer is a connection). Anything not
//! restorable is refused there, naming pid, fd and the socket: raw sockets
//! and other protocols (MPTCP, SCTP, ICMP), listeners with connections not
//! yet accepted, corked UDP sockets, eBPF socket filters (a classic one is
//! kept in `so_filter`, as CRIU keeps it). The UDP queue is read
//! without consuming it (SO_PEEK_OFF 0 + MSG_PEEK, one datagram per read,
//! then the program's SO_PEEK_OFF put back). TCP connections go to
//! `files::tcp` ([`super::tcp::survey`]): refused without
//! `--tcp-established` naming the connection, else locked, put in repair
//! mode and their streams read; `dump` writes their tcp-stream-INO.img and
//! the state TCP_INFO gave.
//!
//! Restore: the engine makes each socket before the fork (one socket in
//! several fds or tasks is one socket again): socket, IPV6_V6ONLY,
//! SO_REUSEADDR and SO_REUSEPORT forced on while the sockets of one port
//! are bound (as CRIU: their dumped values go back once the port's last
//! socket is bound), bind, listen with its backlog, connect (UDP), the
//! flags, IP, socket and TCP options, shutdown; a UDP socket's queue is
//! sent again, each datagram from its sender's address (a restored socket
//! of the tree bound there, or a socket bound there for the purpose, with
//! IP_FREEBIND), then its multicast groups joined and SO_PEEK_OFF set. A
//! TCP connection is restored in repair mode from its stream
//! (`files::tcp::restore_into`); the restore turns repair off once every
//! task is ready.

use super::{fown, skopts, DescribeCx, FdCtx, FdKind, FileError, FileSet, FileTable, OpenFile, SetError, TreeFd};
use crate::sys::sockets as sks;
use cryo_image::pb;
use nix::sys::socket::{self as nsk, SockaddrIn, SockaddrIn6, SockaddrStorage};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

// TCP states (include/net/tcp_states.h).
pub const TCP_ESTABLISHED: u32 = 1;
pub const TCP_SYN_SENT: u32 = 2;
pub const TCP_FIN_WAIT1: u32 = 4;
pub const TCP_FIN_WAIT2: u32 = 5;
pub const TCP_CLOSE: u32 = 7;
pub const TCP_CLOSE_WAIT: u32 = 8;
pub const TCP_LAST_ACK: u32 = 9;
pub const TCP_LISTEN: u32 = 10;
pub const TCP_CLOSING: u32 = 11;

/// inet_diag attribute: the shutdown bits (u8).
const INET_DIAG_SHUTDOWN: u16 = 8;
const UDP_CORK: i32 = 1;
const SO_PEEK_OFF: i32 = 42;
const IPV6_FREEBIND: i32 = 78;
const TCP_REPAIR: i32 = 19;

/// The name of a TCP state, for messages.
pub fn tcp_state_name(s: u32) -> &'static str {
    match s {
        TCP_ESTABLISHED => "ESTABLISHED",
        TCP_SYN_SENT => "SYN_SENT",
        3 => "SYN_RECV",
        TCP_FIN_WAIT1 => "FIN_WAIT1",
        TCP_FIN_WAIT2 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        TCP_CLOSE => "CLOSE",
        TCP_CLOSE_WAIT => "CLOSE_WAIT",
        TCP_LAST_ACK => "LAST_ACK",
        TCP_LISTEN => "LISTEN",
        TCP_CLOSING => "CLOSING",
        _ => "unknown",
    }
}

/// The TCP states of a connection (what `--tcp-established` is about).
pub fn is_connected_tcp_state(s: u32) -> bool {
    matches!(
        s,
        TCP_ESTABLISHED | TCP_SYN_SENT | TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_CLOSE_WAIT | TCP_LAST_ACK | TCP_CLOSING
    )
}

/// Queued datagrams, each with its sender.
pub type Datagrams = Vec<(Vec<u8>, std::net::SocketAddr)>;

/// One inet socket as the survey saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InetDiag {
    pub ino: u32,
    pub family: i32,
    pub ty: i32,
    pub proto: i32,
    pub state: u32,
    /// Addresses as CRIU keeps them: the bytes of the address (network
    /// order) as native u32 words, 4 of them (IPv4 in the first).
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    /// inet_diag's rqueue (a listener: connections not yet accepted; UDP:
    /// bytes queued).
    pub rqlen: u32,
    /// inet_diag's wqueue (a listener: its backlog; UDP: bytes unsent), or
    /// for a socket outside the tables TCP_INFO's backoff (CRIU's `backlog`).
    pub wqlen: u32,
    /// Shutdown bits (1 read, 2 write).
    pub shutdown: u8,
    /// Found in sock_diag's tables (CRIU then records the net namespace).
    pub in_diag: bool,
}

impl InetDiag {
    fn words(&self) -> usize {
        if self.family == libc::AF_INET6 {
            4
        } else {
            1
        }
    }
    /// `addr:port` of the source and destination, for messages.
    pub fn describe(&self) -> String {
        let s = fmt_addr(self.family, &self.src, self.sport);
        if self.dport != 0 {
            format!("{s} -> {}", fmt_addr(self.family, &self.dst, self.dport))
        } else {
            s
        }
    }
}

fn addr_bytes(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

fn fmt_addr(family: i32, w: &[u32], port: u16) -> String {
    let b = addr_bytes(w);
    if family == libc::AF_INET6 {
        let a: [u8; 16] = b[..16].try_into().unwrap();
        format!("[{}]:{port}", Ipv6Addr::from(a))
    } else {
        format!("{}:{port}", Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

/// Parse one inet_diag message (struct inet_diag_msg and its attributes).
pub fn parse_diag(b: &[u8], ty: i32, proto: i32) -> Result<InetDiag, String> {
    if b.len() < 72 {
        return Err(format!("inet_diag message of {} bytes", b.len()));
    }
    let be16 = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
    let ne32 = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
    let mut d = InetDiag {
        family: b[0] as i32,
        state: b[1] as u32,
        ty,
        proto,
        sport: be16(4),
        dport: be16(6),
        rqlen: ne32(56),
        wqlen: ne32(60),
        ino: ne32(68),
        in_diag: true,
        ..Default::default()
    };
    for i in 0..4 {
        d.src[i] = ne32(8 + 4 * i);
        d.dst[i] = ne32(24 + 4 * i);
    }
    let mut off = 72;
    while off + 4 <= b.len() {
        let len = u16::from_ne_bytes([b[off], b[off + 1]]) as usize;
        let at = u16::from_ne_bytes([b[off + 2], b[off + 3]]) & 0x3fff;
        if len < 4 || off + len > b.len() {
            return Err("inet_diag: malformed attribute".into());
        }
        if at == INET_DIAG_SHUTDOWN && len >= 5 {
            d.shutdown = b[off + 4];
        }
        off += (len + 3) & !3;
    }
    Ok(d)
}

/// What `--skip-in-flight` asks of the dump (`--tcp-established` and its
/// relatives are `FileTable::tcp`, files/tcp.rs).
#[derive(Clone, Copy, Debug, Default)]
pub struct InetOpts {
    /// --tcp-established: connected TCP sockets are dumped with TCP_REPAIR.
    pub tcp_established: bool,
    /// --skip-in-flight: connections not yet accepted are left out.
    pub skip_in_flight: bool,
}

/// The inet sockets of a dumped tree, surveyed before anything is written.
#[derive(Default)]
pub struct Survey {
    pub socks: HashMap<u32, InetDiag>,
    /// Queued datagrams of UDP sockets with their senders, by inode.
    pub queues: HashMap<u32, Datagrams>,
}

/// The sock_diag tables of each network namespace (by inode), fetched once
/// per (namespace, family, proto): a socket is only in the tables of its
/// own namespace (a container's, read from a thread that enters it).
#[derive(Default)]
struct Tables {
    by: HashMap<(u64, i32, i32), HashMap<u32, InetDiag>>,
}

impl Tables {
    fn get(&mut self, sk: &OwnedFd, family: i32, ty: i32, proto: i32) -> std::io::Result<&HashMap<u32, InetDiag>> {
        use std::os::unix::fs::MetadataExt;
        let ns = std::fs::File::from(sks::socket_netns(sk.as_raw_fd())?);
        let ino = ns.metadata()?.ino();
        let own = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
        let key = (ino, family, proto);
        if let std::collections::hash_map::Entry::Vacant(slot) = self.by.entry(key) {
            let mut m = HashMap::new();
            // TCP: the states CRIU asks for (a socket only bound, or only
            // created, is then read from the socket itself, as CRIU does).
            let states = if proto == libc::IPPROTO_TCP {
                [
                    TCP_LISTEN,
                    TCP_ESTABLISHED,
                    TCP_FIN_WAIT1,
                    TCP_FIN_WAIT2,
                    TCP_CLOSE_WAIT,
                    TCP_LAST_ACK,
                    TCP_CLOSING,
                    TCP_SYN_SENT,
                ]
                .iter()
                .fold(0u32, |m, s| m | 1 << s)
            } else {
                u32::MAX
            };
            let msgs = if ino == own {
                sks::inet_diag_dump(family, proto, states, 1 << (INET_DIAG_SHUTDOWN - 1))?
            } else {
                crate::sys::rtnl::in_netns(&ns, || {
                    sks::inet_diag_dump(family, proto, states, 1 << (INET_DIAG_SHUTDOWN - 1))
                })??
            };
            for msg in msgs {
                let d = parse_diag(&msg, ty, proto).map_err(std::io::Error::other)?;
                if d.ino != 0 {
                    m.insert(d.ino, d);
                }
            }
            slot.insert(m);
        }
        Ok(&self.by[&key])
    }
}

fn sockaddr_words(sa: &SockaddrStorage) -> Option<([u32; 4], u16)> {
    let mut w = [0u32; 4];
    if let Some(v4) = sa.as_sockaddr_in() {
        w[0] = u32::from_ne_bytes(v4.ip().octets());
        return Some((w, v4.port()));
    }
    if let Some(v6) = sa.as_sockaddr_in6() {
        let o = v6.ip().octets();
        for (i, c) in o.chunks(4).enumerate() {
            w[i] = u32::from_ne_bytes(c.try_into().unwrap());
        }
        return Some((w, v6.port()));
    }
    None
}

/// A socket the kernel's tables do not hold (CRIU's `gen_uncon_sk`):
/// addresses from getsockname/getpeername, state CLOSE (checked with
/// TCP_INFO for TCP), TCP_INFO's backoff as the backlog, the shutdown bits
/// from poll.
fn unconnected(sk: &OwnedFd, ino: u32, family: i32, ty: i32, proto: i32) -> Result<InetDiag, String> {
    let fd = sk.as_raw_fd();
    let mut d = InetDiag {
        ino,
        family,
        ty,
        proto,
        state: TCP_CLOSE,
        ..Default::default()
    };
    // SO_PEERNAME, not getpeername(2): a TCP socket in CLOSE that was
    // connected (reset, or closed by both sides) still names its peer so,
    // and is then a connection (files::tcp), as CRIU has it.
    match crate::sys::tcp::inet_peer_any(fd, family) {
        Ok(a) => {
            d.dst = a.addr;
            d.dport = a.port;
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
        Err(e) => return Err(format!("SO_PEERNAME: {e}")),
    }
    let sa = nsk::getsockname::<SockaddrStorage>(fd).map_err(|e| format!("getsockname: {e}"))?;
    if let Some((w, p)) = sockaddr_words(&sa) {
        d.src = w;
        d.sport = p;
    }
    if proto != libc::IPPROTO_TCP {
        // Not in the tables (unbound, or in a network namespace other than
        // the engine's): whether datagrams are queued, so that the survey
        // reads them.
        let rev = sks::poll_now(fd, libc::POLLIN).map_err(|e| format!("poll: {e}"))?;
        if rev & libc::POLLIN != 0 {
            d.rqlen = 1;
        }
    }
    if proto == libc::IPPROTO_TCP {
        let info = sks::getsockopt_bytes(fd, libc::SOL_TCP, libc::TCP_INFO, 8).map_err(|e| format!("TCP_INFO: {e}"))?;
        if info.len() < 6 {
            return Err("TCP_INFO too short".into());
        }
        if info[0] as u32 != TCP_CLOSE {
            return Err(format!(
                "TCP socket in state {} not in the kernel's tables",
                tcp_state_name(info[0] as u32)
            ));
        }
        d.wqlen = info[4] as u32;
        let rev = sks::poll_now(fd, libc::POLLRDHUP | libc::POLLHUP).map_err(|e| format!("poll: {e}"))?;
        if rev & libc::POLLHUP != 0 && rev & libc::POLLRDHUP != 0 {
            d.shutdown = 1;
        }
    }
    Ok(d)
}

fn refuse(f: &TreeFd, what: impl Into<String>) -> FileError {
    FileError::Unsupported {
        pid: f.pid,
        fd: f.fd,
        link: f.link.clone(),
        what: what.into(),
    }
}

fn io_err(f: &TreeFd, what: &str, source: std::io::Error) -> FileError {
    FileError::Io {
        pid: f.pid,
        fd: f.fd,
        what: what.into(),
        source,
    }
}

/// The name of a socket family, for messages.
pub fn family_name(f: i32) -> String {
    match f {
        libc::AF_UNIX => "unix".into(),
        libc::AF_INET => "inet (IPv4)".into(),
        libc::AF_INET6 => "inet6 (IPv6)".into(),
        libc::AF_NETLINK => "netlink".into(),
        libc::AF_PACKET => "packet".into(),
        libc::AF_VSOCK => "vsock".into(),
        libc::AF_BLUETOOTH => "bluetooth".into(),
        libc::AF_ALG => "alg (kernel crypto)".into(),
        libc::AF_XDP => "xdp".into(),
        _ => format!("family {f}"),
    }
}

fn proto_name(p: i32) -> String {
    match p {
        libc::IPPROTO_TCP => "TCP".into(),
        libc::IPPROTO_UDP => "UDP".into(),
        libc::IPPROTO_UDPLITE => "UDP-Lite".into(),
        libc::IPPROTO_ICMP => "ICMP".into(),
        libc::IPPROTO_ICMPV6 => "ICMPv6".into(),
        libc::IPPROTO_SCTP => "SCTP".into(),
        libc::IPPROTO_MPTCP => "MPTCP".into(),
        _ => format!("protocol {p}"),
    }
}

/// Survey one inet socket (stolen as `sk`).
fn survey_one(
    f: &TreeFd,
    sk: &OwnedFd,
    ino: u32,
    family: i32,
    tables: &mut Tables,
    o: &InetOpts,
) -> Result<(InetDiag, Datagrams), FileError> {
    let fd = sk.as_raw_fd();
    let int = |l, n, what: &str| sks::getsockopt_int(fd, l, n).map_err(|e| io_err(f, what, e));
    let ty = int(libc::SOL_SOCKET, libc::SO_TYPE, "SO_TYPE")?;
    let proto = int(libc::SOL_SOCKET, libc::SO_PROTOCOL, "SO_PROTOCOL")?;
    let fam = family_name(family);
    match (ty, proto) {
        (libc::SOCK_STREAM, libc::IPPROTO_TCP) | (libc::SOCK_DGRAM, libc::IPPROTO_UDP | libc::IPPROTO_UDPLITE) => {}
        (libc::SOCK_RAW, _) => {
            return Err(refuse(
                f,
                format!("raw {fam} socket ({}): not supported yet", proto_name(proto)),
            ))
        }
        _ => {
            let mut why = format!("{fam} socket of type {ty}, {}: not supported", proto_name(proto));
            if proto == libc::IPPROTO_MPTCP {
                why.push_str(" (for Go programs, GODEBUG=multipathtcp=0 turns MPTCP off)");
            }
            return Err(refuse(f, why));
        }
    }
    let table = tables
        .get(sk, family, ty, proto)
        .map_err(|e| io_err(f, "sock_diag of the inet sockets", e))?;
    let d = match table.get(&ino) {
        Some(d) => d.clone(),
        None => unconnected(sk, ino, family, ty, proto).map_err(|e| refuse(f, e))?,
    };
    if skopts::filter_len(fd).map_err(|e| io_err(f, "SO_GET_FILTER", e))? != 0 && sks::get_filter(fd).is_err() {
        return Err(refuse(
            f,
            format!(
                "{} socket {} has a socket filter that cannot be read: an eBPF program (SO_ATTACH_BPF) is not \
                 supported",
                proto_name(proto),
                d.describe()
            ),
        ));
    }
    let mut queue = Vec::new();
    if proto == libc::IPPROTO_TCP {
        match d.state {
            TCP_LISTEN if d.rqlen != 0 && !o.skip_in_flight => {
                return Err(refuse(
                    f,
                    format!(
                        "listening TCP socket {} has {} connection(s) not yet accepted: not supported (criu's \
                         --skip-in-flight leaves them out)",
                        d.describe(),
                        d.rqlen
                    ),
                ))
            }
            TCP_LISTEN | TCP_CLOSE => {}
            // A connection (CLOSE with a peer too): files::tcp decides (survey below).
            s if is_connected_tcp_state(s) => {}
            s => {
                return Err(refuse(
                    f,
                    format!(
                        "TCP socket {} in state {}: not supported",
                        d.describe(),
                        tcp_state_name(s)
                    ),
                ))
            }
        }
    } else {
        if int(libc::SOL_UDP, UDP_CORK, "UDP_CORK")? != 0 {
            return Err(refuse(
                f,
                format!("corked UDP socket {} (UDP_CORK): not supported", d.describe()),
            ));
        }
        if d.rqlen != 0 {
            queue = peek_udp(f, sk, &d)?;
        }
    }
    Ok((d, queue))
}

/// The queued datagrams of a UDP socket with their senders, read without
/// consuming them.
fn peek_udp(f: &TreeFd, sk: &OwnedFd, d: &InetDiag) -> Result<Datagrams, FileError> {
    let fd = sk.as_raw_fd();
    // The program's own peek offset (into the sidecar at dump) is put back after.
    let peek_off = sks::getsockopt_int(fd, libc::SOL_SOCKET, SO_PEEK_OFF).map_err(|e| io_err(f, "SO_PEEK_OFF", e))?;
    sks::setsockopt_int(fd, libc::SOL_SOCKET, SO_PEEK_OFF, 0).map_err(|e| io_err(f, "SO_PEEK_OFF", e))?;
    let res = peek_all(sk, d);
    let back = sks::setsockopt_int(fd, libc::SOL_SOCKET, SO_PEEK_OFF, peek_off);
    let packets = res.map_err(|e| match e {
        PeekErr::Io(e) => io_err(f, "reading the UDP queue (MSG_PEEK)", e),
        PeekErr::Refuse(what) => refuse(f, what),
    })?;
    back.map_err(|e| io_err(f, "SO_PEEK_OFF", e))?;
    Ok(packets)
}

enum PeekErr {
    Io(std::io::Error),
    Refuse(String),
}

fn peek_all(sk: &OwnedFd, d: &InetDiag) -> Result<Datagrams, PeekErr> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let (n, from, trunc) = {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let flags = nsk::MsgFlags::MSG_PEEK | nsk::MsgFlags::MSG_DONTWAIT | nsk::MsgFlags::MSG_TRUNC;
            match nsk::recvmsg::<SockaddrStorage>(sk.as_raw_fd(), &mut iov, None, flags) {
                Ok(m) => (m.bytes, m.address, m.flags.contains(nsk::MsgFlags::MSG_TRUNC)),
                Err(nix::errno::Errno::EAGAIN) => return Ok(out),
                Err(e) => return Err(PeekErr::Io(e.into())),
            }
        };
        if trunc || n > buf.len() {
            return Err(PeekErr::Refuse(format!(
                "UDP socket {}: a queued datagram of {n} bytes",
                d.describe()
            )));
        }
        let from = from.as_ref().and_then(to_std).ok_or_else(|| {
            PeekErr::Refuse(format!(
                "UDP socket {}: a queued datagram without an inet sender address",
                d.describe()
            ))
        })?;
        out.push((buf[..n].to_vec(), from));
    }
}

/// An inet socket address as std's.
fn to_std(sa: &SockaddrStorage) -> Option<std::net::SocketAddr> {
    if let Some(v4) = sa.as_sockaddr_in() {
        return Some(std::net::SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())));
    }
    sa.as_sockaddr_in6()
        .map(|v6| std::net::SocketAddr::V6(SocketAddrV6::new(v6.ip(), v6.port(), 0, v6.scope_id())))
}

/// The words and port of a std address, as the images keep them.
fn std_words(a: &std::net::SocketAddr) -> ([u32; 4], u16) {
    let mut w = [0u32; 4];
    match a {
        std::net::SocketAddr::V4(v4) => w[0] = u32::from_ne_bytes(v4.ip().octets()),
        std::net::SocketAddr::V6(v6) => {
            for (i, c) in v6.ip().octets().chunks(4).enumerate() {
                w[i] = u32::from_ne_bytes(c.try_into().unwrap());
            }
        }
    }
    (w, a.port())
}

pub struct InetSk;

impl FdKind for InetSk {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Inetsk
    }

    fn survey(&self, fds: &[TreeFd], t: &mut FileTable) -> Result<(), FileError> {
        let o = t.inet;
        let mut tables = Tables::default();
        let mut s = Survey::default();
        let mut pidfds: HashMap<i32, OwnedFd> = HashMap::new();
        let mut conns = Vec::new();
        for f in fds {
            let Some(ino) = super::socket_ino(&f.link) else {
                continue;
            };
            if t.is_claimed(ino) || s.socks.contains_key(&ino) {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = pidfds.entry(f.pid) {
                slot.insert(crate::sys::pidfd_open(f.pid).map_err(|e| io_err(f, "pidfd_open", e))?);
            }
            let sk =
                crate::sys::pidfd_getfd(pidfds[&f.pid].as_raw_fd(), f.fd).map_err(|e| io_err(f, "pidfd_getfd", e))?;
            let family = sks::getsockopt_int(sk.as_raw_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN)
                .map_err(|e| io_err(f, "SO_DOMAIN", e))?;
            if family != libc::AF_INET && family != libc::AF_INET6 {
                continue;
            }
            let (d, q) = survey_one(f, &sk, ino, family, &mut tables, &o)?;
            if !q.is_empty() {
                s.queues.insert(ino, q);
            }
            if d.proto == libc::IPPROTO_TCP && (is_connected_tcp_state(d.state) || d.state == TCP_CLOSE && d.dport != 0)
            {
                let ep = |w: [u32; 4], port| crate::sys::tcp::InetAddr { family, addr: w, port };
                conns.push(super::tcp::Candidate {
                    pid: f.pid,
                    fd: f.fd,
                    link: f.link.clone(),
                    ino,
                    sk,
                    conn: super::tcp::Conn {
                        local: ep(d.src, d.sport),
                        peer: ep(d.dst, d.dport),
                    },
                    state: d.state as u8,
                });
            }
            s.socks.insert(ino, d);
        }
        // Every connection at once (one network lock), before anything is written.
        let opts = t.tcp.clone();
        super::tcp::survey(conns, &opts, t)?;
        for &ino in s.socks.keys() {
            t.claim_socket(ino);
        }
        *t.survey_state::<Survey>() = s;
        Ok(())
    }

    fn detect(&self, c: &FdCtx) -> bool {
        matches!(c.socket_domain(), Some(libc::AF_INET | libc::AF_INET6))
    }

    fn dump(&self, c: &FdCtx, id: u32, t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        let ino = c.stat.st_ino as u32;
        let d = t
            .survey_state::<Survey>()
            .socks
            .get(&ino)
            .cloned()
            .ok_or_else(|| c.unsupported("an inet socket the survey did not see"))?;
        let io = |what: &str, source| FileError::Io {
            pid: c.pid,
            fd: c.fd,
            what: what.into(),
            source,
        };
        let sk = c.steal()?;
        let fd = sk.as_raw_fd();
        let v6 = d.family == libc::AF_INET6;
        let opts = skopts::read(fd, d.family).map_err(|e| io("reading the socket options", e))?;
        // A classic BPF filter (SO_ATTACH_FILTER), as CRIU keeps it.
        let opts = pb::SkOptsEntry {
            so_filter: sks::get_filter(fd).map_err(|e| io("SO_GET_FILTER", e))?,
            ..opts
        };
        let int = |l, n| sks::getsockopt_int(fd, l, n);
        let flag = |l, n| int(l, n).map(|v| (v != 0).then_some(true));
        let ip_opts = if v6 {
            pb::IpOptsEntry {
                freebind: flag(libc::SOL_IPV6, IPV6_FREEBIND).map_err(|e| io("IPV6_FREEBIND", e))?,
                raw: None,
                pktinfo: flag(libc::SOL_IPV6, libc::IPV6_RECVPKTINFO).map_err(|e| io("IPV6_RECVPKTINFO", e))?,
                tos: None,
                ttl: None,
            }
        } else {
            let nz = |v: i32| (v != 0).then_some(v as u32);
            pb::IpOptsEntry {
                freebind: flag(libc::SOL_IP, libc::IP_FREEBIND).map_err(|e| io("IP_FREEBIND", e))?,
                raw: None,
                pktinfo: flag(libc::SOL_IP, libc::IP_PKTINFO).map_err(|e| io("IP_PKTINFO", e))?,
                tos: nz(int(libc::SOL_IP, libc::IP_TOS).map_err(|e| io("IP_TOS", e))?),
                ttl: nz(int(libc::SOL_IP, libc::IP_TTL).map_err(|e| io("IP_TTL", e))?),
            }
        };
        let v6only = if v6 {
            Some(int(libc::SOL_IPV6, libc::IPV6_V6ONLY).map_err(|e| io("IPV6_V6ONLY", e))? != 0)
        } else {
            None
        };
        let ifname = if v6 && d.sport != 0 && needs_scope_id(&d.src) {
            let dev = sks::getsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, libc::IFNAMSIZ)
                .map_err(|e| io("SO_BINDTODEVICE", e))?;
            let dev = String::from_utf8_lossy(dev.split(|b| *b == 0).next().unwrap_or(&[])).into_owned();
            if dev.is_empty() {
                return Err(c.unsupported(format!(
                    "IPv6 socket {} bound to a link-local address without a device",
                    d.describe()
                )));
            }
            Some(dev)
        } else {
            None
        };
        let tcp = d.proto == libc::IPPROTO_TCP;
        if !tcp {
            let po = int(libc::SOL_SOCKET, SO_PEEK_OFF).map_err(|e| io("SO_PEEK_OFF", e))?;
            if po >= 0 {
                t.peek_off.insert(id, po as u32);
            }
            let cands = super::mcast::candidates(c.pid);
            if let Some(m) =
                super::mcast::read(fd, d.family, &cands).map_err(|e| io("reading its multicast groups", e))?
            {
                t.multicast.insert(id, m);
            }
        }
        let tcp_opts = if tcp {
            skopts::read_tcp(fd).map_err(|e| io("reading the TCP options", e))?
        } else {
            pb::TcpOptsEntry::default()
        };
        let packets = t.survey_state::<Survey>().queues.remove(&ino).unwrap_or_default();
        // Datagrams not from the peer (or on an unconnected socket): their
        // senders go into the sidecar (CRIU's entry has no place for them).
        let from_peer = |a: &std::net::SocketAddr| d.dport != 0 && std_words(a) == (d.dst, d.dport);
        if !packets.iter().all(|(_, a)| from_peer(a)) {
            t.udp_sources.insert(id, packets.iter().map(|(_, a)| *a).collect());
        }
        for (p, _) in packets {
            let e = pb::SkPacketEntry {
                id_for: id,
                length: p.len() as u32,
                scm: Vec::new(),
            };
            t.side_record(super::SK_QUEUES, &e, p);
        }
        // A connection dumped in repair mode: its stream image, and the
        // state TCP_INFO gave in repair mode.
        let mut state = d.state;
        if let Some(st) = t.survey_state::<super::tcp::Dumped>().take_stream(ino) {
            state = st.state as u32;
            match st.reset {
                Some(libc::ECONNRESET) => {
                    t.tcp_reset.insert(id, cryo_image::sidecar::TcpReset::ConnReset);
                }
                Some(libc::EPIPE) => {
                    t.tcp_reset.insert(id, cryo_image::sidecar::TcpReset::Pipe);
                }
                _ => {}
            }
            let mut q = st.inq;
            q.extend_from_slice(&st.outq);
            t.side_record((super::tcp::image_name(ino), "TCP_STREAM"), &st.entry, q);
        }
        let n = d.words();
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Inetsk as i32,
            id,
            isk: Some(pb::InetSkEntry {
                id,
                ino,
                family: d.family as u32,
                r#type: d.ty as u32,
                proto: d.proto as u32,
                state,
                src_port: d.sport as u32,
                dst_port: d.dport as u32,
                flags: c.flags(),
                backlog: d.wqlen,
                src_addr: d.src[..n].to_vec(),
                dst_addr: d.dst[..n].to_vec(),
                fown: fown(),
                opts,
                v6only,
                ip_opts: Some(ip_opts),
                ifname,
                ns_id: d.in_diag.then_some(2),
                shutdown: (d.shutdown != 0).then_some(d.shutdown as i32),
                tcp_opts: Some(tcp_opts),
            }),
            ..Default::default()
        })
    }

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        let i = e.isk.as_ref().ok_or_else(|| cx.bad("INETSK without isk"))?;
        let family = i.family as i32;
        let words = match family {
            libc::AF_INET => 1,
            libc::AF_INET6 => 4,
            f => return Err(cx.bad(format!("inet socket {}: family {f}", i.id))),
        };
        if i.src_addr.len() < words || i.dst_addr.len() < words || (words == 4 && i.src_addr.len() != 4) {
            return Err(cx.bad(format!(
                "inet socket {}: {} source and {} destination address words for family {family}",
                i.id,
                i.src_addr.len(),
                i.dst_addr.len()
            )));
        }
        if i.src_port > u16::MAX as u32 || i.dst_port > u16::MAX as u32 {
            return Err(cx.bad(format!("inet socket {}: port out of range", i.id)));
        }
        let (ty, proto) = (i.r#type as i32, i.proto as i32);
        let mut tcp = None;
        let unsupported = |what: String| super::set::unsupported(cx.file, 0, format!("entry {}: {what}", cx.index));
        match (ty, proto) {
            (libc::SOCK_STREAM, libc::IPPROTO_TCP) => match i.state {
                TCP_LISTEN | TCP_CLOSE if i.dst_port == 0 => {}
                s if is_connected_tcp_state(s) || i.dst_port != 0 => {
                    // A connection: its stream (tcp-stream-INO.img), checked now.
                    let conn = super::tcp::entry_conn(i)
                        .ok_or_else(|| cx.bad(format!("inet socket {}: a TCP connection without addresses", i.id)))?;
                    let closed = !cx.set.has(&super::tcp::image_name(i.ino))
                        && cx.set.inventory().is_ok_and(|inv| inv.tcp_close == Some(true));
                    let r = super::tcp::describe(cx.set, i.ino, s as u8, conn, closed).map_err(|w| {
                        unsupported(format!("inet socket {} ({} {conn}): {w}", i.id, tcp_state_name(s)))
                    })?;
                    tcp = Some(r);
                }
                s => return Err(cx.bad(format!("inet socket {}: TCP state {s}", i.id))),
            },
            (libc::SOCK_DGRAM, libc::IPPROTO_UDP | libc::IPPROTO_UDPLITE) => {
                if i.state != TCP_CLOSE && i.state != TCP_ESTABLISHED {
                    return Err(cx.bad(format!("inet socket {}: UDP state {}", i.id, i.state)));
                }
            }
            (libc::SOCK_RAW, _) => {
                return Err(unsupported(format!(
                    "inet socket {}: a raw socket: not supported yet",
                    i.id
                )))
            }
            _ => {
                return Err(unsupported(format!(
                    "inet socket {}: type {ty} protocol {proto}: not supported",
                    i.id
                )))
            }
        }
        if let Some(r) = i.ip_opts.as_ref().and_then(|o| o.raw.as_ref()) {
            if r.hdrincl == Some(true) || r.nodefrag == Some(true) || !r.icmpv_filter.is_empty() {
                return Err(unsupported(format!("inet socket {}: raw IP options", i.id)));
            }
        }
        let mut src = [0u32; 4];
        let mut dst = [0u32; 4];
        src[..words].copy_from_slice(&i.src_addr[..words]);
        dst[..words].copy_from_slice(&i.dst_addr[..words]);
        Ok(Box::new(InetSkFile {
            e: i.clone(),
            src,
            dst,
            tcp,
            sources: None,
            peek_off: None,
            multicast: None,
        }))
    }

    fn check(&self, files: &FileSet) -> Result<(), SetError> {
        if !files.set.has("sk-queues.img") {
            return Ok(());
        }
        let file = files.set.path("sk-queues.img").display().to_string();
        for (i, (e, data)) in files
            .set
            .with_payload::<pb::SkPacketEntry>("sk-queues.img")?
            .iter()
            .enumerate()
        {
            let Some(s) = files.get_as::<InetSkFile>(e.id_for) else {
                continue;
            };
            if data.len() != e.length as usize {
                return Err(super::set::bad(
                    &file,
                    0,
                    format!("entry {i}: {} bytes announced, {} present", e.length, data.len()),
                ));
            }
            if !e.scm.is_empty() || s.e.r#type as i32 != libc::SOCK_DGRAM {
                return Err(super::set::unsupported(
                    &file,
                    0,
                    format!(
                        "entry {i}: queued data of inet socket {} that is not a UDP socket, or with control messages",
                        e.id_for
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Link-local and some multicast IPv6 addresses need a scope (CRIU's `needs_scope_id`).
fn needs_scope_id(w: &[u32; 4]) -> bool {
    let b = addr_bytes(w);
    (b[0] == 0xff && (b[1] & 0x0f) <= 2 && b[1] & 0x0f != 0) || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
}

/// An inet socket to recreate: its entry (validated by `describe`) and
/// its addresses as 4 words.
#[derive(Debug)]
pub struct InetSkFile {
    pub e: pb::InetSkEntry,
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// A TCP connection: what files::tcp restores it from.
    pub tcp: Option<super::tcp::Restorable>,
    /// The sender of each queued datagram (the sidecar's `udp_sources`);
    /// None: all from the peer.
    pub sources: Option<Vec<std::net::SocketAddr>>,
    /// SO_PEEK_OFF (the sidecar's `peek_off`).
    pub peek_off: Option<u32>,
    /// Multicast groups and options (the sidecar's `multicast`).
    pub multicast: Option<cryo_image::sidecar::Multicast>,
}

/// What the sidecar says of the inet sockets (`tcp_reset`, `udp_sources`),
/// checked against the image set and put on the sockets before anything
/// is created: every id must be a socket of the right kind, every queue of
/// an unconnected UDP socket must have its senders, one per datagram.
pub fn apply_sidecar(files: &mut FileSet, side: &cryo_image::sidecar::Sidecar) -> Result<(), String> {
    use cryo_image::sidecar::TcpReset;
    let mut counts: HashMap<u32, usize> = HashMap::new();
    if files.set.has("sk-queues.img") {
        for (e, _) in files
            .set
            .with_payload::<pb::SkPacketEntry>("sk-queues.img")
            .map_err(|e| e.to_string())?
        {
            if files.get_as::<InetSkFile>(e.id_for).is_some() {
                *counts.entry(e.id_for).or_default() += 1;
            }
        }
    }
    for (&id, r) in &side.tcp_reset {
        let f = files
            .of_mut::<InetSkFile>()
            .find(|(i, _)| *i == id)
            .map(|(_, f)| f)
            .ok_or_else(|| format!("tcp_reset: file id {id} is not an inet socket in files.img"))?;
        let what = f.object();
        let st = f
            .tcp
            .as_mut()
            .and_then(|t| t.stream.as_mut())
            .filter(|st| st.state as u32 == TCP_CLOSE)
            .ok_or_else(|| format!("tcp_reset: {what} is not a closed TCP connection with its stream"))?;
        st.reset = Some(match r {
            TcpReset::ConnReset => libc::ECONNRESET,
            TcpReset::Pipe => libc::EPIPE,
        });
        if st.entry.outq_len != 0 {
            return Err(format!("tcp_reset: {what} has a send queue"));
        }
    }
    for (&id, l) in &side.udp_sources {
        let n = counts.get(&id).copied().unwrap_or(0);
        let f = files
            .of_mut::<InetSkFile>()
            .find(|(i, _)| *i == id)
            .map(|(_, f)| f)
            .ok_or_else(|| format!("udp_sources: file id {id} is not an inet socket in files.img"))?;
        if f.e.r#type as i32 != libc::SOCK_DGRAM {
            return Err(format!("udp_sources: {} is not a UDP socket", f.object()));
        }
        if l.len() != n {
            return Err(format!(
                "udp_sources: {} has {} senders for {n} queued datagrams in sk-queues.img",
                f.object(),
                l.len()
            ));
        }
        let v6 = f.e.family as i32 == libc::AF_INET6;
        if let Some(a) = l.iter().find(|a| a.is_ipv6() != v6) {
            return Err(format!("udp_sources: {}: sender {a} of another family", f.object()));
        }
        f.sources = Some(l.clone());
    }
    for (&id, &off) in &side.peek_off {
        if files.get_as::<InetSkFile>(id).is_some() {
            let (_, f) = files
                .of_mut::<InetSkFile>()
                .find(|(i, _)| *i == id)
                .expect("an inet socket");
            if f.e.r#type as i32 != libc::SOCK_DGRAM {
                return Err(format!("peek_off: {} is not a UDP socket", f.object()));
            }
            f.peek_off = Some(off);
        } else if let Some((_, u)) = files.of_mut::<super::unixsk::UnixSkFile>().find(|(i, _)| *i == id) {
            u.peek_off = Some(off);
        } else {
            return Err(format!(
                "peek_off: file id {id} is neither a unix nor a UDP socket in files.img"
            ));
        }
    }
    for (&id, m) in &side.multicast {
        let (_, f) = files
            .of_mut::<InetSkFile>()
            .find(|(i, _)| *i == id)
            .ok_or_else(|| format!("multicast: file id {id} is not an inet socket in files.img"))?;
        if f.e.r#type as i32 != libc::SOCK_DGRAM {
            return Err(format!("multicast: {} is not a UDP socket", f.object()));
        }
        if f.e.family as i32 == libc::AF_INET {
            if let Some(g) = m.groups.iter().find(|g| g.group.is_ipv6()) {
                return Err(format!(
                    "multicast: {}: IPv6 group {} on an IPv4 socket",
                    f.object(),
                    g.group
                ));
            }
        }
        f.multicast = Some(m.clone());
    }
    for (id, f) in files.of::<InetSkFile>() {
        if f.e.dst_port == 0 && f.sources.is_none() && counts.get(&id).copied().unwrap_or(0) != 0 {
            return Err(format!(
                "sk-queues.img: {} is not connected and has queued datagrams, but the sidecar (cryo.json) gives \
                 no senders for them (udp_sources)",
                f.object()
            ));
        }
    }
    Ok(())
}

fn oerr(s: &InetSkFile, reason: impl std::fmt::Display) -> super::OpenError {
    super::set::open_err(pb::FdTypes::Inetsk, s.object(), reason)
}

/// Per-restore state: the sockets bound to each (type, port) so far with
/// their dumped SO_REUSEADDR/SO_REUSEPORT, put back once the port's last
/// socket is bound; and the restored sockets by local address (senders of
/// queued datagrams).
#[derive(Default)]
struct Ports {
    pending: HashMap<(u32, u32), PortUsers>,
    by_addr: HashMap<(u32, [u32; 4], u32), OwnedFd>,
    queues: Option<HashMap<u32, Vec<Vec<u8>>>>,
}

/// Sockets of one port still to bind, and those bound (a copy of each,
/// its dumped SO_REUSEADDR and SO_REUSEPORT).
type PortUsers = (usize, Vec<(OwnedFd, bool, bool)>);

enum Addr {
    V4(SockaddrIn),
    V6(SockaddrIn6),
}

fn sockaddr(family: u32, w: &[u32; 4], port: u32, scope: u32) -> Addr {
    let b = addr_bytes(w);
    if family as i32 == libc::AF_INET6 {
        let a: [u8; 16] = b[..16].try_into().unwrap();
        Addr::V6(SocketAddrV6::new(Ipv6Addr::from(a), port as u16, 0, scope).into())
    } else {
        Addr::V4(SocketAddrV4::new(Ipv4Addr::new(b[0], b[1], b[2], b[3]), port as u16).into())
    }
}

fn bind_to(fd: RawFd, a: &Addr) -> nix::Result<()> {
    match a {
        Addr::V4(a) => nsk::bind(fd, a),
        Addr::V6(a) => nsk::bind(fd, a),
    }
}

fn connect_to(fd: RawFd, a: &Addr) -> nix::Result<()> {
    match a {
        Addr::V4(a) => nsk::connect(fd, a),
        Addr::V6(a) => nsk::connect(fd, a),
    }
}

impl InetSkFile {
    fn object(&self) -> String {
        let d = InetDiag {
            family: self.e.family as i32,
            src: self.src,
            dst: self.dst,
            sport: self.e.src_port as u16,
            dport: self.e.dst_port as u16,
            ..Default::default()
        };
        format!(
            "inet socket {} ({} {})",
            self.e.id,
            proto_name(self.e.proto as i32),
            d.describe()
        )
    }

    fn new_socket(&self) -> Result<OwnedFd, super::OpenError> {
        sks::socket(self.e.family as i32, self.e.r#type as i32, self.e.proto as i32)
            .map_err(|e| oerr(self, format!("socket: {e}")))
    }

    fn scope(&self) -> Result<u32, super::OpenError> {
        match &self.e.ifname {
            Some(n) => nix::net::if_::if_nametoindex(n.as_str()).map_err(|e| oerr(self, format!("interface {n}: {e}"))),
            None => Ok(0),
        }
    }

    fn bind(&self, fd: RawFd) -> Result<(), super::OpenError> {
        let v6 = self.e.family as i32 == libc::AF_INET6;
        let a = sockaddr(self.e.family, &self.src, self.e.src_port, self.scope()?);
        // An IPv6 address may still be tentative: bind with IP_FREEBIND (as CRIU).
        let freebind = self.e.ip_opts.as_ref().and_then(|o| o.freebind) == Some(true);
        if v6 {
            sks::setsockopt_int(fd, libc::SOL_IP, libc::IP_FREEBIND, 1)
                .map_err(|e| oerr(self, format!("IP_FREEBIND: {e}")))?;
        }
        bind_to(fd, &a).map_err(|e| oerr(self, format!("bind: {e}")))?;
        if v6 && !freebind {
            sks::setsockopt_int(fd, libc::SOL_IP, libc::IP_FREEBIND, 0)
                .map_err(|e| oerr(self, format!("IP_FREEBIND: {e}")))?;
        }
        Ok(())
    }

    fn options(&self, s: &OwnedFd) -> Result<(), super::OpenError> {
        let fd = s.as_raw_fd();
        let e = &self.e;
        if e.flags & libc::O_NONBLOCK as u32 != 0 {
            nix::fcntl::fcntl(s, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
                .map_err(|er| oerr(self, format!("F_SETFL: {er}")))?;
        }
        if let Some(o) = &e.ip_opts {
            let set = |l, n, v: i32, what: &str| {
                sks::setsockopt_int(fd, l, n, v).map_err(|er| oerr(self, format!("{what}: {er}")))
            };
            if e.family as i32 == libc::AF_INET6 {
                if o.freebind == Some(true) {
                    set(libc::SOL_IPV6, IPV6_FREEBIND, 1, "IPV6_FREEBIND")?;
                }
                if o.pktinfo == Some(true) {
                    set(libc::SOL_IPV6, libc::IPV6_RECVPKTINFO, 1, "IPV6_RECVPKTINFO")?;
                }
            } else {
                if o.freebind == Some(true) {
                    set(libc::SOL_IP, libc::IP_FREEBIND, 1, "IP_FREEBIND")?;
                }
                if o.pktinfo == Some(true) {
                    set(libc::SOL_IP, libc::IP_PKTINFO, 1, "IP_PKTINFO")?;
                }
                if let Some(t) = o.tos {
                    set(libc::SOL_IP, libc::IP_TOS, t as i32, "IP_TOS")?;
                }
                if let Some(t) = o.ttl {
                    set(libc::SOL_IP, libc::IP_TTL, t as i32, "IP_TTL")?;
                }
            }
        }
        skopts::apply(fd, &e.opts).map_err(|er| oerr(self, format!("socket options: {er}")))?;
        if e.proto as i32 == libc::IPPROTO_TCP {
            skopts::apply_tcp(fd, &e.opts, e.tcp_opts.as_ref())
                .map_err(|er| oerr(self, format!("TCP options: {er}")))?;
        }
        Ok(())
    }

    /// A socket bound to `from` to send queued datagrams from: a restored
    /// one of the tree bound there, or one made for it (reuse on, free bind).
    fn sender<'a>(
        &self,
        from: ([u32; 4], u16),
        ports: &'a Ports,
        own: &'a mut Vec<OwnedFd>,
    ) -> Result<&'a OwnedFd, super::OpenError> {
        let (w, p) = from;
        for key in [(self.e.r#type, w, p as u32), (self.e.r#type, [0; 4], p as u32)] {
            if let Some(peer) = ports.by_addr.get(&key) {
                return Ok(peer);
            }
        }
        let s = self.new_socket()?;
        let fd = s.as_raw_fd();
        for o in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
            sks::setsockopt_int(fd, libc::SOL_SOCKET, o, 1).map_err(|e| oerr(self, e))?;
        }
        // The sender may be an address of another host (across a veth).
        if self.e.family as i32 == libc::AF_INET6 {
            let _ = sks::setsockopt_int(fd, libc::SOL_IPV6, IPV6_FREEBIND, 1);
        } else {
            let _ = sks::setsockopt_int(fd, libc::SOL_IP, libc::IP_FREEBIND, 1);
        }
        let a = sockaddr(self.e.family, &w, p as u32, 0);
        bind_to(fd, &a).map_err(|e| {
            oerr(
                self,
                format!(
                    "binding a sender of its queued datagrams to {}: {e}",
                    fmt_addr(self.e.family as i32, &w, p)
                ),
            )
        })?;
        own.push(s);
        Ok(own.last().expect("pushed"))
    }

    /// Send the queued datagrams again, each from its sender (the peer's
    /// address, or what the sidecar gives).
    fn refill(&self, s: &OwnedFd, packets: &[Vec<u8>], ports: &Ports) -> Result<(), super::OpenError> {
        let me =
            nsk::getsockname::<SockaddrStorage>(s.as_raw_fd()).map_err(|e| oerr(self, format!("getsockname: {e}")))?;
        let (mut my_w, my_p) = sockaddr_words(&me).ok_or_else(|| oerr(self, "getsockname: not an inet address"))?;
        if my_w == [0; 4] {
            // Bound to the wildcard address: reach it through loopback.
            if self.e.family as i32 == libc::AF_INET6 {
                my_w = [0, 0, 0, u32::from_ne_bytes([0, 0, 0, 1])];
            } else {
                my_w[0] = u32::from_ne_bytes([127, 0, 0, 1]);
            }
        }
        let to = sockaddr(self.e.family, &my_w, my_p as u32, 0);
        let mut own = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            let from = match &self.sources {
                Some(l) => std_words(&l[i]),
                None => (self.dst, self.e.dst_port as u16),
            };
            let sender = self.sender(from, ports, &mut own)?;
            let n = match &to {
                Addr::V4(a) => nsk::sendto(sender.as_raw_fd(), p, a, nsk::MsgFlags::empty()),
                Addr::V6(a) => nsk::sendto(sender.as_raw_fd(), p, a, nsk::MsgFlags::empty()),
            }
            .map_err(|e| oerr(self, format!("sending a queued datagram again: {e}")))?;
            if n != p.len() {
                return Err(oerr(
                    self,
                    format!("a queued datagram trimmed to {n} of {} bytes", p.len()),
                ));
            }
        }
        // Every datagram must be in the queue before the tree runs.
        let want: usize = packets.len();
        for _ in 0..1000 {
            let got = count_queued(s).map_err(|e| oerr(self, format!("counting its queue: {e}")))?;
            if got >= want {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Err(oerr(self, "the queued datagrams sent again did not all arrive"))
    }
}

/// How many datagrams are queued on a UDP socket (peeked with SO_PEEK_OFF).
fn count_queued(s: &OwnedFd) -> std::io::Result<usize> {
    let fd = s.as_raw_fd();
    sks::setsockopt_int(fd, libc::SOL_SOCKET, SO_PEEK_OFF, 0)?;
    let mut n = 0;
    let mut buf = vec![0u8; 1 << 16];
    let res = loop {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        match nsk::recvmsg::<()>(
            fd,
            &mut iov,
            None,
            nsk::MsgFlags::MSG_PEEK | nsk::MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(_) => n += 1,
            Err(nix::errno::Errno::EAGAIN) => break Ok(n),
            Err(e) => break Err(e.into()),
        }
    };
    sks::setsockopt_int(fd, libc::SOL_SOCKET, SO_PEEK_OFF, -1)?;
    res
}

impl OpenFile for InetSkFile {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Inetsk
    }

    fn restore(&self, id: u32, cx: &mut super::RestoreCx) -> Result<Option<OwnedFd>, super::OpenError> {
        let files = cx.files;
        let st = cx.state::<Ports>();
        if st.queues.is_none() {
            let mut q: HashMap<u32, Vec<Vec<u8>>> = HashMap::new();
            if files.set.has("sk-queues.img") {
                for (e, data) in files.set.with_payload::<pb::SkPacketEntry>("sk-queues.img")? {
                    if files.get_as::<InetSkFile>(e.id_for).is_some() {
                        q.entry(e.id_for).or_default().push(data);
                    }
                }
            }
            st.queues = Some(q);
        }
        let e = &self.e;
        let s = self.new_socket()?;
        let fd = s.as_raw_fd();
        let set = |l, n, v: i32, what: &str| {
            sks::setsockopt_int(fd, l, n, v).map_err(|er| oerr(self, format!("{what}: {er}")))
        };
        if e.v6only == Some(true) {
            set(libc::SOL_IPV6, libc::IPV6_V6ONLY, 1, "IPV6_V6ONLY")?;
        }
        // Sockets sharing a port bind with reuse forced on; their own values
        // go back once the port's last socket is bound.
        set(libc::SOL_SOCKET, libc::SO_REUSEADDR, 1, "SO_REUSEADDR")?;
        set(libc::SOL_SOCKET, libc::SO_REUSEPORT, 1, "SO_REUSEPORT")?;
        match (e.proto as i32, e.state) {
            (libc::IPPROTO_TCP, TCP_LISTEN) => {
                self.bind(fd)?;
                nsk::listen(&s, nsk::Backlog::new(e.backlog as i32).unwrap_or(nsk::Backlog::MAXCONN))
                    .map_err(|er| oerr(self, format!("listen: {er}")))?;
            }
            // A connection, in repair mode until the tree is ready (or closed: --tcp-close).
            (libc::IPPROTO_TCP, _) if self.tcp.is_some() => {
                let r = self.tcp.as_ref().expect("a connection");
                super::tcp::restore_into(fd, r, cx.tcp_close).map_err(|er| oerr(self, er))?;
            }
            (libc::IPPROTO_TCP, TCP_CLOSE) => {
                if e.src_port != 0 {
                    if let Err(er) = self.bind(fd) {
                        // A closed connection's port may still be held by
                        // its own TIME_WAIT twin (left by the dump): bind
                        // as it was bound, in repair mode (which forces reuse).
                        let repair = |v| sks::setsockopt_int(fd, libc::SOL_TCP, TCP_REPAIR, v);
                        if repair(1).is_err() {
                            return Err(er);
                        }
                        let r = self.bind(fd);
                        repair(0).map_err(|e| oerr(self, format!("TCP_REPAIR off: {e}")))?;
                        r?;
                    }
                }
            }
            (libc::IPPROTO_TCP, s) => {
                return Err(oerr(self, format!("TCP state {}: not supported", tcp_state_name(s))));
            }
            _ => {
                if e.src_port != 0 {
                    self.bind(fd)?;
                }
                if e.dst_port != 0 {
                    let a = sockaddr(e.family, &self.dst, e.dst_port, 0);
                    connect_to(fd, &a).map_err(|er| oerr(self, format!("connect: {er}")))?;
                }
            }
        }
        self.options(&s)?;
        let st = cx.state::<Ports>();
        if e.src_port != 0 {
            let users = files
                .of::<InetSkFile>()
                .filter(|(_, o)| o.e.r#type == e.r#type && o.e.src_port == e.src_port)
                .count();
            let dup = s.try_clone().map_err(|er| oerr(self, er))?;
            let reuseaddr = e.opts.reuseaddr == Some(true);
            let reuseport = e.opts.so_reuseport == Some(true);
            let slot = st.pending.entry((e.r#type, e.src_port)).or_insert((users, Vec::new()));
            slot.1.push((dup, reuseaddr, reuseport));
            slot.0 = slot.0.saturating_sub(1);
            if slot.0 == 0 {
                for (f, a, p) in slot.1.drain(..) {
                    let fd = f.as_raw_fd();
                    if !a {
                        sks::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 0)
                            .map_err(|er| oerr(self, er))?;
                    }
                    if !p {
                        sks::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 0)
                            .map_err(|er| oerr(self, er))?;
                    }
                }
            }
        } else {
            if e.opts.reuseaddr != Some(true) {
                set(libc::SOL_SOCKET, libc::SO_REUSEADDR, 0, "SO_REUSEADDR")?;
            }
            if e.opts.so_reuseport != Some(true) {
                set(libc::SOL_SOCKET, libc::SO_REUSEPORT, 0, "SO_REUSEPORT")?;
            }
        }
        if let Some(q) = st.queues.as_mut().and_then(|q| q.remove(&id)) {
            self.refill(&s, &q, st)?;
        }
        if e.src_port != 0 && e.r#type as i32 == libc::SOCK_DGRAM {
            let dup = s.try_clone().map_err(|er| oerr(self, er))?;
            st.by_addr.insert((e.r#type, self.src, e.src_port), dup);
        }
        if let Some(m) = &self.multicast {
            super::mcast::apply(fd, e.family as i32, m).map_err(|er| oerr(self, format!("multicast: {er}")))?;
        }
        // The filter last: the queue sent again must not go through it.
        if !e.opts.so_filter.is_empty() {
            sks::attach_filter(fd, &e.opts.so_filter).map_err(|er| oerr(self, format!("SO_ATTACH_FILTER: {er}")))?;
        }
        if let Some(off) = self.peek_off {
            set(libc::SOL_SOCKET, SO_PEEK_OFF, off as i32, "SO_PEEK_OFF")?;
        }
        if let Some(sh) = e.shutdown.filter(|s| *s != 0) {
            let how = match sh {
                1 => nsk::Shutdown::Read,
                2 => nsk::Shutdown::Write,
                _ => nsk::Shutdown::Both,
            };
            if let Err(er) = nsk::shutdown(fd, how) {
                if e.state != TCP_CLOSE && er != nix::errno::Errno::ENOTCONN {
                    return Err(oerr(self, format!("shutdown: {er}")));
                }
            }
        }
        Ok(Some(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inet_diag_message_is_parsed() {
        let mut b = vec![0u8; 72];
        b[0] = libc::AF_INET as u8;
        b[1] = TCP_LISTEN as u8;
        b[4..6].copy_from_slice(&8080u16.to_be_bytes());
        b[8..12].copy_from_slice(&[127, 0, 0, 1]);
        b[56..60].copy_from_slice(&0u32.to_ne_bytes());
        b[60..64].copy_from_slice(&128u32.to_ne_bytes());
        b[68..72].copy_from_slice(&4242u32.to_ne_bytes());
        b.extend_from_slice(&5u16.to_ne_bytes());
        b.extend_from_slice(&INET_DIAG_SHUTDOWN.to_ne_bytes());
        b.extend_from_slice(&[2, 0, 0, 0]);
        let d = parse_diag(&b, libc::SOCK_STREAM, libc::IPPROTO_TCP).unwrap();
        assert_eq!(
            (d.ino, d.state, d.sport, d.wqlen, d.shutdown),
            (4242, TCP_LISTEN, 8080, 128, 2)
        );
        assert_eq!(d.describe(), "127.0.0.1:8080");
        assert!(parse_diag(&b[..40], 1, 6).is_err());
    }

    #[test]
    fn link_local_v6_needs_a_scope() {
        let w = |b: [u8; 16]| {
            let mut o = [0u32; 4];
            for (i, c) in b.chunks(4).enumerate() {
                o[i] = u32::from_ne_bytes(c.try_into().unwrap());
            }
            o
        };
        assert!(needs_scope_id(&w([
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1
        ])));
        assert!(!needs_scope_id(&w([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])));
    }
}
