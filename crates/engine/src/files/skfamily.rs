//! Which kind handles a socket, by its family, type and protocol (read
//! from the socket itself: pidfd_getfd, then SO_DOMAIN, SO_TYPE and
//! SO_PROTOCOL): unix sockets go to `unixsk`, inet ones to `inetsk` (which
//! refuses the inet types it does not restore: raw, SCTP, MPTCP, ICMP),
//! netlink sockets to `netlinksk`, packet sockets to `packetsk`. Every other
//! family (vsock, AF_ALG, Bluetooth, XDP, CAN, TIPC, ...) is refused here,
//! naming pid, fd and the family, before the dump writes anything.

use super::{FileError, FileTable, TreeFd};
use crate::sys::sockets as sks;
use std::os::fd::{AsRawFd, OwnedFd};

const SO_TYPE: i32 = 3;
const SO_PROTOCOL: i32 = 38;
const SO_DOMAIN: i32 = 39;

/// A socket of the tree: where it is, what it is, and our duplicate of it.
pub struct Sock {
    pub pid: i32,
    pub fd: i32,
    pub link: String,
    pub ino: u32,
    pub family: i32,
    pub ty: i32,
    pub proto: i32,
    pub dup: OwnedFd,
}

/// A family's name as `<sys/socket.h>` spells it.
pub fn family_name(f: i32) -> String {
    let n = match f {
        libc::AF_UNIX => "AF_UNIX",
        libc::AF_INET => "AF_INET",
        libc::AF_INET6 => "AF_INET6",
        libc::AF_NETLINK => "AF_NETLINK",
        libc::AF_PACKET => "AF_PACKET",
        libc::AF_KEY => "AF_KEY",
        libc::AF_RDS => "AF_RDS",
        libc::AF_PPPOX => "AF_PPPOX",
        libc::AF_LLC => "AF_LLC",
        libc::AF_IB => "AF_IB",
        libc::AF_MPLS => "AF_MPLS",
        libc::AF_CAN => "AF_CAN",
        libc::AF_TIPC => "AF_TIPC",
        libc::AF_BLUETOOTH => "AF_BLUETOOTH",
        libc::AF_ISDN => "AF_ISDN",
        libc::AF_IEEE802154 => "AF_IEEE802154",
        libc::AF_ALG => "AF_ALG",
        libc::AF_NFC => "AF_NFC",
        libc::AF_VSOCK => "AF_VSOCK",
        41 => "AF_KCM",
        42 => "AF_QIPCRTR",
        43 => "AF_SMC",
        44 => "AF_XDP",
        45 => "AF_MCTP",
        _ => return format!("family {f}"),
    };
    n.into()
}

/// The tree's sockets, classified once per dump (by the first socket
/// kind's survey) and kept in the [`FileTable`] for the others.
#[derive(Default)]
pub struct Classified {
    done: bool,
    pub socks: Vec<Sock>,
}

/// Run `f` on the tree's sockets of `family`, classifying (and refusing the
/// unsupported ones among) every socket of the tree on first use.
pub fn with_family<T>(
    fds: &[TreeFd],
    t: &mut FileTable,
    family: i32,
    f: impl FnOnce(&[&Sock]) -> Result<T, FileError>,
) -> Result<T, FileError> {
    let c = t.survey_state::<Classified>();
    if !c.done {
        c.socks = classify(fds)?;
        c.done = true;
    }
    let mine: Vec<&Sock> = c.socks.iter().filter(|s| s.family == family).collect();
    f(&mine)
}

/// Steal and classify every socket fd of `fds`; refuse the ones no kind
/// restores. Returns the sockets, in the order given.
pub fn classify(fds: &[TreeFd]) -> Result<Vec<Sock>, FileError> {
    let mut out = Vec::new();
    let mut pidfds: Vec<(i32, OwnedFd)> = Vec::new();
    for TreeFd { pid, fd, link } in fds {
        let (pid, fd) = (*pid, *fd);
        let io = |what: &str, source| FileError::Io {
            pid,
            fd,
            what: what.into(),
            source,
        };
        let Some(ino) = super::socket_ino(link) else {
            continue;
        };
        if !pidfds.iter().any(|p| p.0 == pid) {
            pidfds.push((pid, crate::sys::pidfd_open(pid).map_err(|e| io("pidfd_open", e))?));
        }
        let pidfd = &pidfds.iter().find(|p| p.0 == pid).expect("opened above").1;
        let dup = crate::sys::pidfd_getfd(pidfd.as_raw_fd(), fd).map_err(|e| io("pidfd_getfd", e))?;
        let int = |o| sks::getsockopt_int(dup.as_raw_fd(), libc::SOL_SOCKET, o);
        let family = int(SO_DOMAIN).map_err(|e| io("getsockopt(SO_DOMAIN)", e))?;
        let ty = int(SO_TYPE).map_err(|e| io("getsockopt(SO_TYPE)", e))?;
        let proto = int(SO_PROTOCOL).map_err(|e| io("getsockopt(SO_PROTOCOL)", e))?;
        let s = Sock {
            pid,
            fd,
            link: link.clone(),
            ino,
            family,
            ty,
            proto,
            dup,
        };
        refuse(&s)?;
        out.push(s);
    }
    Ok(out)
}

/// The refusal of a socket no kind restores.
fn refuse(s: &Sock) -> Result<(), FileError> {
    let no = |what: String| {
        Err(FileError::Unsupported {
            pid: s.pid,
            fd: s.fd,
            link: s.link.clone(),
            what,
        })
    };
    match s.family {
        libc::AF_UNIX | libc::AF_NETLINK => Ok(()),
        libc::AF_PACKET => Ok(()),
        // inetsk surveys (and refuses) the inet sockets itself.
        libc::AF_INET | libc::AF_INET6 => Ok(()),
        f => no(format!("a socket of family {}: not supported", family_name(f))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_their_names() {
        assert_eq!(family_name(libc::AF_ALG), "AF_ALG");
        assert_eq!(family_name(libc::AF_VSOCK), "AF_VSOCK");
        assert_eq!(family_name(44), "AF_XDP");
        assert_eq!(family_name(200), "family 200");
    }
}
