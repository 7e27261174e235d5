//! The syscalls of the socket kinds (files/unixsk.rs, files/inetsk.rs): sock_diag over
//! netlink, socket options as raw integers and timevals, unix addresses.
//! Every function is safe: pointers are built here from Rust values.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// NETLINK_SOCK_DIAG's SOCK_DIAG_BY_FAMILY.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// Every unix socket of our network namespace as sock_diag reports it
/// (`show`: the UDIAG_SHOW_* bits): the payloads (struct unix_diag_msg and
/// its attributes) of the netlink messages, one per socket.
pub fn unix_diag_dump(show: u32) -> io::Result<Vec<Vec<u8>>> {
    // unix_diag_req (24 bytes).
    let mut req = Vec::with_capacity(24);
    req.push(libc::AF_UNIX as u8);
    req.push(0); // protocol
    req.extend_from_slice(&0u16.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&0u32.to_ne_bytes()); // ino
    req.extend_from_slice(&show.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // no cookie
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    diag_dump(&req)
}

/// Every inet socket of our network namespace of `family` (AF_INET,
/// AF_INET6) and `protocol` (IPPROTO_TCP, _UDP, _UDPLITE) in the states of
/// the mask `states` (bit 1 << TCP_*), as sock_diag reports it with the
/// extensions `ext` (bits 1 << (INET_DIAG_X - 1)): the payloads (struct
/// inet_diag_msg and its attributes).
/// SIOCGSKNS: the network namespace of socket `fd`, as an fd.
pub fn socket_netns(fd: RawFd) -> io::Result<OwnedFd> {
    const SIOCGSKNS: libc::c_ulong = 0x894C;
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd.
    super::owned(unsafe { libc::ioctl(fd, SIOCGSKNS as _, 0) } as libc::c_long)
}

pub fn inet_diag_dump(family: i32, protocol: i32, states: u32, ext: u8) -> io::Result<Vec<Vec<u8>>> {
    // inet_diag_req_v2 (56 bytes): family, protocol, ext, pad, states, a zero sockid.
    let mut req = vec![family as u8, protocol as u8, ext, 0];
    req.extend_from_slice(&states.to_ne_bytes());
    req.resize(56, 0);
    diag_dump(&req)
}

/// One NETLINK_SOCK_DIAG dump request (`body` after the nlmsghdr).
fn diag_dump(body: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    // SAFETY: scalar arguments.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    })?;
    // SAFETY: a fresh fd, owned from here on.
    let sk = unsafe { OwnedFd::from_raw_fd(fd) };
    // nlmsghdr (16 bytes) + the request.
    let mut req = Vec::with_capacity(16 + body.len());
    req.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid
    req.extend_from_slice(body);
    nix::sys::socket::send(sk.as_raw_fd(), &req, nix::sys::socket::MsgFlags::empty()).map_err(io::Error::from)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = nix::sys::socket::recv(sk.as_raw_fd(), &mut buf, nix::sys::socket::MsgFlags::empty())
            .map_err(io::Error::from)?;
        if n == 0 {
            return Err(io::Error::other("sock_diag: end of stream before NLMSG_DONE"));
        }
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
            if len < 16 || off + len > n {
                return Err(io::Error::other("sock_diag: malformed netlink message"));
            }
            match ty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let e = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap());
                    return Err(io::Error::from_raw_os_error(-e));
                }
                SOCK_DIAG_BY_FAMILY => out.push(buf[off + 16..off + len].to_vec()),
                _ => {}
            }
            off += (len + 3) & !3;
        }
    }
}

/// getsockopt(2) of an int option.
pub fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are ours and sized for an int.
    cvt(unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut libc::c_int).cast(), &mut len) })?;
    Ok(v)
}

/// getsockopt(2) of an option of up to `max` bytes: the bytes the kernel wrote.
pub fn getsockopt_bytes(fd: RawFd, level: i32, name: i32, max: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0u8; max];
    let mut len = max as libc::socklen_t;
    // SAFETY: v is ours, `len` bytes long.
    cvt(unsafe { libc::getsockopt(fd, level, name, v.as_mut_ptr().cast(), &mut len) })?;
    v.truncate(len as usize);
    Ok(v)
}

/// getsockopt(2) of an option whose buffer also carries the request
/// (MCAST_MSFILTER): `req` goes in, the bytes the kernel wrote come out.
pub fn getsockopt_in(fd: RawFd, level: i32, name: i32, req: &[u8]) -> io::Result<Vec<u8>> {
    let mut v = req.to_vec();
    let mut len = v.len() as libc::socklen_t;
    // SAFETY: v is ours, `len` bytes long.
    cvt(unsafe { libc::getsockopt(fd, level, name, v.as_mut_ptr().cast(), &mut len) })?;
    v.truncate(len as usize);
    Ok(v)
}

/// The length getsockopt(2) reports for an option given no buffer
/// (SO_GET_FILTER: the number of filter instructions).
pub fn getsockopt_len(fd: RawFd, level: i32, name: i32) -> io::Result<usize> {
    let mut len: libc::socklen_t = 0;
    // SAFETY: a null buffer of length 0; len is ours.
    cvt(unsafe { libc::getsockopt(fd, level, name, std::ptr::null_mut(), &mut len) })?;
    Ok(len as usize)
}

/// setsockopt(2) of an option given as bytes.
pub fn setsockopt_bytes(fd: RawFd, level: i32, name: i32, v: &[u8]) -> io::Result<()> {
    // SAFETY: v is a live slice of v.len() bytes.
    cvt(unsafe { libc::setsockopt(fd, level, name, v.as_ptr().cast(), v.len() as libc::socklen_t) })?;
    Ok(())
}

/// setsockopt(2) of an int option.
pub fn setsockopt_int(fd: RawFd, level: i32, name: i32, v: i32) -> io::Result<()> {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v is ours and len is its size.
    cvt(unsafe { libc::setsockopt(fd, level, name, (&v as *const libc::c_int).cast(), len) })?;
    Ok(())
}

/// getsockopt(2) of a timeval option (SO_SNDTIMEO, SO_RCVTIMEO): (sec, usec).
pub fn getsockopt_timeval(fd: RawFd, name: i32) -> io::Result<(u64, u64)> {
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: tv and len are ours and sized for a timeval.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&mut tv as *mut libc::timeval).cast(),
            &mut len,
        )
    })?;
    Ok((tv.tv_sec as u64, tv.tv_usec as u64))
}

/// setsockopt(2) of a timeval option.
pub fn setsockopt_timeval(fd: RawFd, name: i32, sec: u64, usec: u64) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: sec as libc::time_t,
        tv_usec: usec as libc::suseconds_t,
    };
    let len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: tv is ours and len is its size.
    cvt(unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, name, (&tv as *const libc::timeval).cast(), len) })?;
    Ok(())
}

/// A sockaddr_un for `name` as sock_diag reports it (a path, or an
/// abstract name starting with a NUL byte), and its length.
fn sockaddr_un(name: &[u8]) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if name.len() >= a.sun_path.len() {
        return Err(io::Error::other("unix socket name too long"));
    }
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in a.sun_path.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + name.len() + usize::from(name.first() != Some(&0));
    Ok((a, len as libc::socklen_t))
}

/// bind(2) of a unix socket to `name` (a path or an abstract name, exactly
/// the bytes sock_diag gave).
pub fn unix_bind(fd: RawFd, name: &[u8]) -> io::Result<()> {
    let (a, len) = sockaddr_un(name)?;
    // SAFETY: a is a sockaddr_un of ours and len within it.
    cvt(unsafe { libc::bind(fd, (&a as *const libc::sockaddr_un).cast(), len) })?;
    Ok(())
}

/// connect(2) of a unix socket to `name`.
pub fn unix_connect(fd: RawFd, name: &[u8]) -> io::Result<()> {
    let (a, len) = sockaddr_un(name)?;
    // SAFETY: a is a sockaddr_un of ours and len within it.
    cvt(unsafe { libc::connect(fd, (&a as *const libc::sockaddr_un).cast(), len) })?;
    Ok(())
}

/// accept4(2) with SOCK_CLOEXEC, the peer's address not wanted.
pub fn accept(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: null address and length: the kernel writes nothing back.
    let s = cvt(unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) })?;
    // SAFETY: a fresh fd, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(s) })
}

/// SIOCUNIXFILE: an O_PATH fd of the file a path-bound unix socket is bound to.
const SIOCUNIXFILE: libc::c_ulong = 0x89E0;

/// The file a path-bound unix socket is bound to, as an O_PATH fd (Linux 4.11+).
pub fn unix_file(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: this ioctl takes no argument and returns a new fd.
    let f = cvt(unsafe { libc::ioctl(fd, SIOCUNIXFILE as _, 0) })?;
    // SAFETY: a fresh fd, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(f) })
}

/// What one recvmsg(MSG_PEEK) of a unix socket's queue gave.
pub struct Peeked {
    /// Bytes copied into the buffer.
    pub len: usize,
    /// msg_flags (MSG_TRUNC, MSG_CTRUNC).
    pub flags: i32,
    /// The sender had a name (a bound socket).
    pub named_sender: bool,
    /// Fds in flight (SCM_RIGHTS) the peek installed in our process.
    pub rights: Vec<OwnedFd>,
}

/// recvmsg(2) with MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC into `buf`,
/// with room for control messages (credentials, up to 253 fds).
pub fn peek_msg(fd: RawFd, buf: &mut [u8]) -> io::Result<Peeked> {
    // SAFETY: plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut ctl = vec![0u64; 256];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_un).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.as_mut_ptr().cast();
    msg.msg_controllen = ctl.len() * 8;
    // SAFETY: every pointer in msg points to a live buffer of ours of the size given.
    let n = unsafe {
        libc::recvmsg(
            fd,
            &mut msg,
            libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut rights = Vec::new();
    // SAFETY: the CMSG macros walk the control buffer the kernel filled,
    // within msg_controllen; every header they return lies inside it.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: c is a header inside the control buffer (above).
        let h = unsafe { c.read_unaligned() };
        if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: c is a header inside the control buffer.
            let data = unsafe { libc::CMSG_DATA(c) } as *const i32;
            // SAFETY: a constant computation.
            let n = (h.cmsg_len - unsafe { libc::CMSG_LEN(0) } as usize) / 4;
            for i in 0..n {
                // SAFETY: the n ints after the header are in the buffer (cmsg_len).
                let fd = unsafe { data.wrapping_add(i).read_unaligned() };
                // SAFETY: SCM_RIGHTS gave this process a fresh fd, owned from here on.
                rights.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // SAFETY: c is a header inside msg's control buffer.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    let family = std::mem::size_of::<libc::sa_family_t>() as libc::socklen_t;
    Ok(Peeked {
        len: n as usize,
        flags: msg.msg_flags,
        named_sender: msg.msg_namelen > family,
        rights,
    })
}

/// socket(2) with CLOEXEC (any family, type and protocol, e.g. UDP-Lite).
pub fn socket(family: i32, ty: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: scalar arguments.
    let fd = cvt(unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: a fresh fd, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// poll(2) of one fd with `events`, not waiting: the returned events.
pub fn poll_now(fd: RawFd, events: i16) -> io::Result<i16> {
    let mut p = libc::pollfd { fd, events, revents: 0 };
    // SAFETY: one pollfd of ours.
    cvt(unsafe { libc::poll(&mut p, 1, 0) })?;
    Ok(p.revents)
}

// The syscalls of netlink and packet sockets (files/netlinksk.rs,
// files/packetsk.rs, files/skfamily.rs): a generic sock_diag dump, raw
// socket addresses and byte-buffer options.

/// A sock_diag dump (SOCK_DIAG_BY_FAMILY | NLM_F_DUMP) with the
/// family-specific request `req` (after the nlmsghdr): the payloads of the
/// answers, one per socket.
pub fn sock_diag_dump(req: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    // SAFETY: scalar arguments.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    })?;
    // SAFETY: a fresh fd, owned from here on.
    let sk = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut m = Vec::with_capacity(16 + req.len());
    m.extend_from_slice(&((16 + req.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(req);
    nix::sys::socket::send(sk.as_raw_fd(), &m, nix::sys::socket::MsgFlags::empty()).map_err(io::Error::from)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = nix::sys::socket::recv(sk.as_raw_fd(), &mut buf, nix::sys::socket::MsgFlags::empty())
            .map_err(io::Error::from)?;
        if n == 0 {
            return Err(io::Error::other("sock_diag: end of stream before NLMSG_DONE"));
        }
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
            if len < 16 || off + len > n {
                return Err(io::Error::other("sock_diag: malformed netlink message"));
            }
            match ty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let e = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap());
                    return Err(io::Error::from_raw_os_error(-e));
                }
                SOCK_DIAG_BY_FAMILY => out.push(buf[off + 16..off + len].to_vec()),
                _ => {}
            }
            off += (len + 3) & !3;
        }
    }
}

/// getsockname(2) (`peer` false) or getpeername(2) (`peer` true): the raw address.
pub fn sock_name(fd: RawFd, peer: bool) -> io::Result<Vec<u8>> {
    // SAFETY: plain data; all zeroes is a valid value.
    let mut a: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut a as *mut libc::sockaddr_storage).cast();
    if peer {
        // SAFETY: a and len are ours, len is a's size.
        cvt(unsafe { libc::getpeername(fd, p, &mut len) })?;
    } else {
        // SAFETY: a and len are ours, len is a's size.
        cvt(unsafe { libc::getsockname(fd, p, &mut len) })?;
    }
    // SAFETY: a is plain data of its size; the kernel wrote at most len bytes of it.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&a as *const libc::sockaddr_storage).cast::<u8>(),
            std::mem::size_of::<libc::sockaddr_storage>(),
        )
    };
    Ok(bytes[..(len as usize).min(bytes.len())].to_vec())
}

/// bind(2) (`connect` false) or connect(2) (`connect` true) to a raw address.
pub fn bind_raw(fd: RawFd, addr: &[u8], connect: bool) -> io::Result<()> {
    // Copied into a sockaddr_storage so that it is aligned for the kernel's reading.
    // SAFETY: plain data; all zeroes is a valid value.
    let mut a: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    if addr.len() > std::mem::size_of::<libc::sockaddr_storage>() {
        return Err(io::Error::other("socket address too long"));
    }
    // SAFETY: addr.len() bytes fit in a (checked above); the regions do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            addr.as_ptr(),
            (&mut a as *mut libc::sockaddr_storage).cast::<u8>(),
            addr.len(),
        )
    };
    let p = (&a as *const libc::sockaddr_storage).cast();
    let len = addr.len() as libc::socklen_t;
    if connect {
        // SAFETY: p points to len bytes of ours.
        cvt(unsafe { libc::connect(fd, p, len) })?;
    } else {
        // SAFETY: p points to len bytes of ours.
        cvt(unsafe { libc::bind(fd, p, len) })?;
    }
    Ok(())
}

/// SO_GET_FILTER: the classic BPF program attached to the socket, one u64
/// per instruction as CRIU's image holds it (code << 48 | jt << 40 | jf << 32
/// | k, so that the image means the same on any architecture); empty: none.
pub fn get_filter(fd: RawFd) -> io::Result<Vec<u64>> {
    const SO_GET_FILTER: i32 = 26;
    let mut n: libc::socklen_t = 0;
    // SAFETY: a zero length asks for the number of instructions; nothing is written to the null buffer.
    cvt(unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, SO_GET_FILTER, std::ptr::null_mut(), &mut n) })?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut v = vec![
        libc::sock_filter {
            code: 0,
            jt: 0,
            jf: 0,
            k: 0
        };
        n as usize
    ];
    let mut len = n;
    // SAFETY: v holds n instructions; len (counted in instructions) says so.
    cvt(unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, SO_GET_FILTER, v.as_mut_ptr().cast(), &mut len) })?;
    v.truncate(len as usize);
    Ok(v.iter()
        .map(|f| (f.code as u64) << 48 | (f.jt as u64) << 40 | (f.jf as u64) << 32 | f.k as u64)
        .collect())
}

/// SO_ATTACH_FILTER of a classic BPF program (in the image's encoding, as [`get_filter`] gives it).
pub fn attach_filter(fd: RawFd, prog: &[u64]) -> io::Result<()> {
    let mut f: Vec<libc::sock_filter> = prog
        .iter()
        .map(|i| libc::sock_filter {
            code: (i >> 48) as u16,
            jt: (i >> 40) as u8,
            jf: (i >> 32) as u8,
            k: *i as u32,
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: f.len() as u16,
        filter: f.as_mut_ptr(),
    };
    // SAFETY: fprog points at f's instructions, which outlive the call; the kernel copies them.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// if_indextoname(3): the name of interface `index` in our network namespace.
pub fn if_name(index: u32) -> io::Result<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname writes at most.
    let r = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if r.is_null() {
        return Err(io::Error::last_os_error());
    }
    let name: Vec<u8> = buf.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
    Ok(String::from_utf8_lossy(&name).into_owned())
}
