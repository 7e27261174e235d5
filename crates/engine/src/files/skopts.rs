//! Socket options as CRIU 4.2's `sk_opts_entry` holds them, shared by the
//! socket kinds: read from a socket at dump ([`read`]) and put on a fresh
//! one at restore ([`apply`]), as CRIU's `dump_socket_opts` /
//! `restore_socket_opts` do (which fields are present, and when, follows
//! them, so that both tools read each other's entries the same way).

use crate::sys::sockets as sks;
use cryo_image::pb;
use std::os::fd::RawFd;

// Socket options (asm-generic/socket.h, x86_64) libc lacks.
const SO_BUF_LOCK: i32 = 72;
const SO_GET_FILTER: i32 = libc::SO_ATTACH_FILTER;

/// The options of socket `fd` of address family `family`.
pub fn read(fd: RawFd, family: i32) -> std::io::Result<pb::SkOptsEntry> {
    let int = |o| sks::getsockopt_int(fd, libc::SOL_SOCKET, o);
    let (snd_s, snd_us) = sks::getsockopt_timeval(fd, libc::SO_SNDTIMEO)?;
    let (rcv_s, rcv_us) = sks::getsockopt_timeval(fd, libc::SO_RCVTIMEO)?;
    let mark = int(libc::SO_MARK)? as u32;
    let creds = family == libc::AF_UNIX || family == libc::AF_NETLINK;
    let linger = sks::getsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_LINGER, 8)?;
    let (l_onoff, l_linger) = if linger.len() == 8 {
        (
            i32::from_ne_bytes(linger[0..4].try_into().unwrap()),
            i32::from_ne_bytes(linger[4..8].try_into().unwrap()),
        )
    } else {
        (0, 0)
    };
    let dev = sks::getsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, libc::IFNAMSIZ)?;
    let dev = String::from_utf8_lossy(dev.split(|b| *b == 0).next().unwrap_or(&[])).into_owned();
    Ok(pb::SkOptsEntry {
        so_sndbuf: int(libc::SO_SNDBUF)? as u32,
        so_rcvbuf: int(libc::SO_RCVBUF)? as u32,
        so_snd_tmo_sec: snd_s,
        so_snd_tmo_usec: snd_us,
        so_rcv_tmo_sec: rcv_s,
        so_rcv_tmo_usec: rcv_us,
        reuseaddr: Some(int(libc::SO_REUSEADDR)? != 0),
        so_priority: Some(int(libc::SO_PRIORITY)? as u32),
        so_rcvlowat: Some(int(libc::SO_RCVLOWAT)? as u32),
        so_mark: (mark != 0).then_some(mark),
        so_passcred: if creds {
            Some(int(libc::SO_PASSCRED)? != 0)
        } else {
            None
        },
        so_passsec: if creds { Some(int(libc::SO_PASSSEC)? != 0) } else { None },
        so_dontroute: Some(int(libc::SO_DONTROUTE)? != 0),
        so_no_check: Some(int(libc::SO_NO_CHECK)? != 0),
        so_bound_dev: (!dev.is_empty()).then_some(dev),
        so_filter: Vec::new(),
        so_reuseport: Some(int(libc::SO_REUSEPORT)? != 0),
        so_broadcast: Some(int(libc::SO_BROADCAST)? != 0),
        so_keepalive: Some(int(libc::SO_KEEPALIVE)? != 0),
        tcp_keepcnt: None,
        tcp_keepidle: None,
        tcp_keepintvl: None,
        so_oobinline: Some((int(libc::SO_OOBINLINE)? != 0) as u32),
        so_linger: (l_onoff != 0).then_some(l_linger as u32),
        so_buf_lock: Some(int(SO_BUF_LOCK).unwrap_or(0) as u32),
    })
}

/// A socket filter (SO_ATTACH_FILTER) on `fd`: its number of instructions
/// (CRIU's entry can hold it, cryo does not restore it yet).
pub fn filter_len(fd: RawFd) -> std::io::Result<usize> {
    sks::getsockopt_len(fd, libc::SOL_SOCKET, SO_GET_FILTER)
}

/// The options of an entry onto a fresh socket, but SO_REUSEADDR and
/// SO_REUSEPORT (the caller sets those, as they matter for bind) and the
/// TCP keepalive values of old images (see [`apply_tcp`]).
pub fn apply(fd: RawFd, o: &pb::SkOptsEntry) -> std::io::Result<()> {
    let int = |opt, v: i32| sks::setsockopt_int(fd, libc::SOL_SOCKET, opt, v);
    let get = |opt| sks::getsockopt_int(fd, libc::SOL_SOCKET, opt);
    // The kernel doubles what it is given.
    if get(libc::SO_SNDBUF)? as u32 != o.so_sndbuf {
        int(libc::SO_SNDBUFFORCE, (o.so_sndbuf / 2) as i32)
            .or_else(|_| int(libc::SO_SNDBUF, (o.so_sndbuf / 2) as i32))?;
    }
    if get(libc::SO_RCVBUF)? as u32 != o.so_rcvbuf {
        int(libc::SO_RCVBUFFORCE, (o.so_rcvbuf / 2) as i32)
            .or_else(|_| int(libc::SO_RCVBUF, (o.so_rcvbuf / 2) as i32))?;
    }
    if let Some(l) = o.so_buf_lock {
        if get(SO_BUF_LOCK).is_ok_and(|cur| cur as u32 != l) {
            int(SO_BUF_LOCK, l as i32)?;
        }
    }
    if let Some(p) = o.so_priority.filter(|p| *p != 0) {
        int(libc::SO_PRIORITY, p as i32)?;
    }
    if let Some(l) = o.so_rcvlowat.filter(|l| *l > 1) {
        int(libc::SO_RCVLOWAT, l as i32)?;
    }
    if let Some(m) = o.so_mark.filter(|m| *m != 0) {
        int(libc::SO_MARK, m as i32)?;
    }
    for (opt, v) in [
        (libc::SO_PASSCRED, o.so_passcred),
        (libc::SO_PASSSEC, o.so_passsec),
        (libc::SO_DONTROUTE, o.so_dontroute),
        (libc::SO_NO_CHECK, o.so_no_check),
        (libc::SO_BROADCAST, o.so_broadcast),
        (libc::SO_KEEPALIVE, o.so_keepalive),
    ] {
        if v == Some(true) {
            int(opt, 1)?;
        }
    }
    if o.so_oobinline.is_some_and(|v| v != 0) {
        int(libc::SO_OOBINLINE, 1)?;
    }
    if let Some(l) = o.so_linger {
        let mut b = 1i32.to_ne_bytes().to_vec();
        b.extend_from_slice(&(l as i32).to_ne_bytes());
        sks::setsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_LINGER, &b)?;
    }
    if o.so_snd_tmo_sec != 0 || o.so_snd_tmo_usec != 0 {
        sks::setsockopt_timeval(fd, libc::SO_SNDTIMEO, o.so_snd_tmo_sec, o.so_snd_tmo_usec)?;
    }
    if o.so_rcv_tmo_sec != 0 || o.so_rcv_tmo_usec != 0 {
        sks::setsockopt_timeval(fd, libc::SO_RCVTIMEO, o.so_rcv_tmo_sec, o.so_rcv_tmo_usec)?;
    }
    if let Some(dev) = o.so_bound_dev.as_deref().filter(|d| !d.is_empty()) {
        sks::setsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, dev.as_bytes())?;
    }
    Ok(())
}

/// TCP options: CRIU's `tcp_opts_entry` (each field present when not zero).
pub fn read_tcp(fd: RawFd) -> std::io::Result<pb::TcpOptsEntry> {
    let int = |o| sks::getsockopt_int(fd, libc::SOL_TCP, o);
    let nz = |v: i32| (v != 0).then_some(v as u32);
    Ok(pb::TcpOptsEntry {
        nodelay: (int(libc::TCP_NODELAY)? != 0).then_some(true),
        cork: (int(libc::TCP_CORK)? != 0).then_some(true),
        keepcnt: nz(int(libc::TCP_KEEPCNT)?),
        keepidle: nz(int(libc::TCP_KEEPIDLE)?),
        keepintvl: nz(int(libc::TCP_KEEPINTVL)?),
    })
}

/// TCP options onto a socket: the `tcp_opts_entry`, and the keepalive values
/// older CRIUs kept in `sk_opts_entry`.
pub fn apply_tcp(fd: RawFd, o: &pb::SkOptsEntry, t: Option<&pb::TcpOptsEntry>) -> std::io::Result<()> {
    let int = |opt, v: i32| sks::setsockopt_int(fd, libc::SOL_TCP, opt, v);
    for (opt, v) in [
        (libc::TCP_KEEPCNT, o.tcp_keepcnt),
        (libc::TCP_KEEPIDLE, o.tcp_keepidle),
        (libc::TCP_KEEPINTVL, o.tcp_keepintvl),
    ] {
        if let Some(v) = v {
            int(opt, v as i32)?;
        }
    }
    let Some(t) = t else { return Ok(()) };
    for (opt, v) in [
        (libc::TCP_NODELAY, t.nodelay.map(u32::from)),
        (libc::TCP_CORK, t.cork.map(u32::from)),
        (libc::TCP_KEEPCNT, t.keepcnt),
        (libc::TCP_KEEPIDLE, t.keepidle),
        (libc::TCP_KEEPINTVL, t.keepintvl),
    ] {
        if let Some(v) = v {
            int(opt, v as i32)?;
        }
    }
    Ok(())
}
