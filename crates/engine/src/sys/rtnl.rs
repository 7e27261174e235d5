//! rtnetlink dumps (RTM_GETLINK …) in the caller's network namespace, and
//! running code in another network namespace (a scoped thread that setns'es
//! into it: namespaces are per thread, and commands it spawns inherit it).
//! Safe functions only: nix wraps every call.

use std::io;
use std::os::fd::AsRawFd;

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// A NETLINK_ROUTE dump request of `ty` with `body` (its family header):
/// the payloads of the replies (the header and attributes of each object).
pub fn route_dump(ty: u16, body: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    let sk = socket::socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(io::Error::from)?;
    let len = 16 + body.len();
    let mut req = Vec::with_capacity(len);
    req.extend_from_slice(&(len as u32).to_ne_bytes());
    req.extend_from_slice(&ty.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(body);
    socket::send(sk.as_raw_fd(), &req, MsgFlags::empty()).map_err(io::Error::from)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = socket::recv(sk.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(io::Error::from)?;
        if n == 0 {
            return Err(io::Error::other("rtnetlink: end of stream before NLMSG_DONE"));
        }
        let mut off = 0;
        while off + 16 <= n {
            let mlen = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            let mty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
            if mlen < 16 || off + mlen > n {
                return Err(io::Error::other("rtnetlink: malformed message"));
            }
            match mty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let e = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap());
                    return Err(io::Error::from_raw_os_error(-e));
                }
                t if t == ty - 2 || t == ty => out.push(buf[off + 16..off + mlen].to_vec()),
                _ => {}
            }
            off += (mlen + 3) & !3;
        }
    }
}

/// Run `f` on a thread in the network namespace of `ns` (an open
/// /proc/PID/ns/net or a bind mount of one).
pub fn in_netns<T: Send>(ns: &std::fs::File, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("the network namespace thread panicked"))?
    })
}
