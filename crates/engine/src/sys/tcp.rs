//! The syscalls of established TCP connections (files/tcp.rs): TCP_REPAIR
//! and its queue, sequence, option and window calls, the queue-size ioctls,
//! inet addresses for bind/connect, and a raw IPv4 socket that sends the
//! one TCP segment a half-closed connection needs at restore. Every function
//! is safe: pointers are built here from Rust values.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub const TCP_REPAIR: i32 = 19;
pub const TCP_REPAIR_QUEUE: i32 = 20;
pub const TCP_QUEUE_SEQ: i32 = 21;
pub const TCP_REPAIR_OPTIONS: i32 = 22;
pub const TCP_TIMESTAMP: i32 = 24;
pub const TCP_REPAIR_WINDOW: i32 = 29;

/// TCP_REPAIR_QUEUE values.
pub const TCP_NO_QUEUE: i32 = 0;
pub const TCP_RECV_QUEUE: i32 = 1;
pub const TCP_SEND_QUEUE: i32 = 2;

const SIOCINQ: libc::c_ulong = 0x541B;
const SIOCOUTQ: libc::c_ulong = 0x5411;
const SIOCOUTQNSD: libc::c_ulong = 0x894B;

/// getsockopt(2) into a byte buffer: the bytes the kernel wrote.
pub fn getsockopt_bytes(fd: RawFd, level: i32, name: i32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf and len are ours; the kernel writes at most len bytes.
    cvt(unsafe { libc::getsockopt(fd, level, name, buf.as_mut_ptr().cast(), &mut len) })?;
    Ok(len as usize)
}

/// setsockopt(2) of a byte buffer.
pub fn setsockopt_bytes(fd: RawFd, level: i32, name: i32, buf: &[u8]) -> io::Result<()> {
    // SAFETY: buf is ours and its length is passed.
    cvt(unsafe { libc::setsockopt(fd, level, name, buf.as_ptr().cast(), buf.len() as libc::socklen_t) })?;
    Ok(())
}

fn ioctl_int(fd: RawFd, req: libc::c_ulong) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: these ioctls write one int to the pointer given.
    cvt(unsafe { libc::ioctl(fd, req as _, &mut v as *mut libc::c_int) })?;
    Ok(v)
}

/// Bytes in the receive queue not read yet (SIOCINQ).
pub fn inq(fd: RawFd) -> io::Result<u32> {
    ioctl_int(fd, SIOCINQ).map(|v| v as u32)
}

/// Bytes in the send queue not acknowledged yet (SIOCOUTQ).
pub fn outq(fd: RawFd) -> io::Result<u32> {
    ioctl_int(fd, SIOCOUTQ).map(|v| v as u32)
}

/// Bytes in the send queue never sent (SIOCOUTQNSD).
pub fn outq_unsent(fd: RawFd) -> io::Result<u32> {
    ioctl_int(fd, SIOCOUTQNSD).map(|v| v as u32)
}

/// recv(2) with MSG_PEEK | MSG_DONTWAIT: bytes copied.
pub fn peek(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is ours and its length is passed.
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// send(2) with MSG_DONTWAIT | MSG_NOSIGNAL: bytes taken.
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is ours and its length is passed.
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// An inet socket address as CRIU's images hold it: the family, the
/// address as 32-bit words in network byte order (1 for IPv4, 4 for IPv6)
/// and the port in host order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InetAddr {
    pub family: i32,
    pub addr: [u32; 4],
    pub port: u16,
}

impl InetAddr {
    /// The address octets (4 or 16).
    pub fn octets(&self) -> Vec<u8> {
        let n = if self.family == libc::AF_INET { 1 } else { 4 };
        self.addr[..n].iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    /// An IPv4-mapped IPv6 address (::ffff:a.b.c.d).
    pub fn v4_mapped(&self) -> bool {
        self.family == libc::AF_INET6
            && self.addr[0] == 0
            && self.addr[1] == 0
            && self.addr[2] == u32::from_ne_bytes([0, 0, 0xff, 0xff])
    }

    /// The address in text (as `ip`, `nft` and `iptables` take it).
    pub fn ip(&self) -> std::net::IpAddr {
        let o = self.octets();
        if self.family == libc::AF_INET {
            std::net::IpAddr::from(<[u8; 4]>::try_from(&o[..4]).unwrap())
        } else {
            std::net::IpAddr::from(<[u8; 16]>::try_from(&o[..16]).unwrap())
        }
    }
}

enum Sa {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

fn sockaddr(a: &InetAddr) -> io::Result<Sa> {
    let o = a.octets();
    match a.family {
        libc::AF_INET => {
            // SAFETY: plain data; all zeroes is a valid value.
            let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = a.port.to_be();
            s.sin_addr.s_addr = u32::from_ne_bytes(o[..4].try_into().unwrap());
            Ok(Sa::V4(s))
        }
        libc::AF_INET6 => {
            // SAFETY: plain data; all zeroes is a valid value.
            let mut s: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = a.port.to_be();
            s.sin6_addr.s6_addr.copy_from_slice(&o[..16]);
            Ok(Sa::V6(s))
        }
        f => Err(io::Error::other(format!("address family {f} is not inet"))),
    }
}

fn with_sockaddr<T>(a: &InetAddr, f: impl FnOnce(*const libc::sockaddr, libc::socklen_t) -> T) -> io::Result<T> {
    Ok(match sockaddr(a)? {
        Sa::V4(s) => f(
            (&s as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ),
        Sa::V6(s) => f(
            (&s as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        ),
    })
}

/// bind(2) to an inet address.
pub fn inet_bind(fd: RawFd, a: &InetAddr) -> io::Result<()> {
    // SAFETY: the address is a sockaddr of ours of the length given.
    cvt(with_sockaddr(a, |p, l| unsafe { libc::bind(fd, p, l) })?)?;
    Ok(())
}

/// connect(2) to an inet address (EINPROGRESS is an error to the caller).
pub fn inet_connect(fd: RawFd, a: &InetAddr) -> io::Result<()> {
    // SAFETY: the address is a sockaddr of ours of the length given.
    cvt(with_sockaddr(a, |p, l| unsafe { libc::connect(fd, p, l) })?)?;
    Ok(())
}

fn from_storage(s: &libc::sockaddr_storage) -> io::Result<InetAddr> {
    match s.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Ok(InetAddr {
                family: libc::AF_INET,
                addr: [a.sin_addr.s_addr, 0, 0, 0],
                port: u16::from_be(a.sin_port),
            })
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let o = a.sin6_addr.s6_addr;
            let mut addr = [0u32; 4];
            for (i, w) in addr.iter_mut().enumerate() {
                *w = u32::from_ne_bytes(o[i * 4..i * 4 + 4].try_into().unwrap());
            }
            Ok(InetAddr {
                family: libc::AF_INET6,
                addr,
                port: u16::from_be(a.sin6_port),
            })
        }
        f => Err(io::Error::other(format!("address family {f} is not inet"))),
    }
}

/// getsockname(2) (`peer` false) or getpeername(2) (`peer` true) of an inet socket.
pub fn inet_name(fd: RawFd, peer: bool) -> io::Result<InetAddr> {
    // SAFETY: plain data; all zeroes is a valid value.
    let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut s as *mut libc::sockaddr_storage).cast();
    let r = if peer {
        // SAFETY: s and len are ours and len is s's size.
        unsafe { libc::getpeername(fd, p, &mut len) }
    } else {
        // SAFETY: s and len are ours and len is s's size.
        unsafe { libc::getsockname(fd, p, &mut len) }
    };
    cvt(r)?;
    from_storage(&s)
}

/// The peer of an inet socket as SO_PEERNAME gives it: unlike
/// getpeername(2), also for a TCP socket in CLOSE (reset, or closed by
/// both sides) that still has its peer (CRIU's `gen_uncon_sk` reads it so).
/// ENOTCONN: no peer.
/// The kernel wants the length of the family's address exactly (no more).
pub fn inet_peer_any(fd: RawFd, family: i32) -> io::Result<InetAddr> {
    // SAFETY: plain data; all zeroes is a valid value.
    let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = if family == libc::AF_INET6 {
        std::mem::size_of::<libc::sockaddr_in6>()
    } else {
        std::mem::size_of::<libc::sockaddr_in>()
    } as libc::socklen_t;
    // SAFETY: s and len are ours and len is s's size.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERNAME,
            (&mut s as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    from_storage(&s)
}

/// A fresh TCP socket of `family` (SOCK_CLOEXEC).
pub fn tcp_socket(family: i32) -> io::Result<OwnedFd> {
    // SAFETY: scalar arguments.
    let fd = cvt(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, libc::IPPROTO_TCP) })?;
    // SAFETY: a fresh fd, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// shutdown(2).
pub fn shutdown(fd: RawFd, how: i32) -> io::Result<()> {
    // SAFETY: scalar arguments.
    cvt(unsafe { libc::shutdown(fd, how) })?;
    Ok(())
}

/// A raw IPv4 or IPv6 socket (IPPROTO_RAW: the caller builds the IP
/// header; for IPv6 IPPROTO_RAW implies IPV6_HDRINCL) whose packets carry
/// `mark` (SO_MARK), so a network lock lets them through.
pub fn raw_ip(family: i32, mark: u32) -> io::Result<OwnedFd> {
    // SAFETY: scalar arguments.
    let fd = cvt(unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_RAW) })?;
    // SAFETY: a fresh fd, owned from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    setsockopt_bytes(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        libc::SOL_SOCKET,
        libc::SO_MARK,
        &(mark as i32).to_ne_bytes(),
    )?;
    Ok(fd)
}

/// sendto(2) of one packet to an inet address (its port is not used).
pub fn sendto_inet(fd: RawFd, buf: &[u8], dst: &InetAddr) -> io::Result<()> {
    let a = InetAddr { port: 0, ..*dst };
    // SAFETY: buf is ours with its length; the address is a sockaddr of ours of the length given.
    let n = with_sockaddr(&a, |p, l| unsafe {
        libc::sendto(fd, buf.as_ptr().cast(), buf.len(), 0, p, l)
    })?;
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
