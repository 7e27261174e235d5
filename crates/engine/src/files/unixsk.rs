//! Unix sockets (`socket:[ino]`, AF_UNIX): files.img UNIXSK entries (CRIU
//! 4.2's `unix_sk_entry` in the `usk` field) and their queued data in
//! sk-queues.img (one `sk_packet_entry` per packet, its bytes after it; the
//! queue is the receive queue of the socket `id_for` names).
//!
//! Dump: the whole tree's sockets are surveyed first ([`survey`]) through
//! sock_diag (type, state, name, peer inode, pending connections, queue
//! lengths, shutdown); anything not restorable is refused there, before any
//! image is written. The queue is read without consuming it: the fd is taken
//! with pidfd_getfd, SO_PEEK_OFF set to 0 and the data read with MSG_PEEK
//! (one packet per read for datagram and seqpacket sockets, so message
//! boundaries are kept), then SO_PEEK_OFF put back.
//!
//! Restore: the engine makes each socket before the fork (the tasks inherit
//! it from the fd pool, so one socket in several fds or tasks is one socket
//! again): a connected pair is a socketpair() (its ends re-bound to their
//! own names, such as an autobind name from SO_PASSCRED); a peer whose
//! end was closed is a socketpair whose other end is closed once the queue
//! is in; a datagram socket connected to itself connects to its own name;
//! a datagram client connected one way connects to its server again (an
//! external one, USK_EXTERN, by its name: --ext-unix-sk); bound sockets are
//! bound (a stale socket file at the path is removed first), listening ones
//! listen; a connection waiting in a backlog (its peer in the image is the
//! listener, as CRIU writes it) connects again after the listener's
//! accepted connections are made. A socket bound to a path unlinked since
//! (`deleted`) is bound and unlinked again, a file now at the path moved
//! aside meanwhile; connections to it go through an O_PATH fd of its file.
//! The options go in first, then each queue is sent from the socket's
//! peer, with the files in flight of each packet (SCM_RIGHTS: CRIU's scm
//! entries name files.img ids; dumped like any fd from the duplicates the
//! peek gives, restored through their kinds and shared with the tree's
//! fds), then the shutdown states.
//!
//! Refused (at dump, naming pid and fd): non-unix sockets, peers outside the
//! tree (without --ext-unix-sk, or a stream one, or an unnamed one),
//! one-way connections to unbound sockets, queued data of a datagram client
//! connected one way, a connection waiting in a backlog whose client sent
//! data or is closed (as CRIU: the data is in a socket without an fd),
//! sockets, epolls and pidfds in flight. A set SO_PEEK_OFF (CRIU's entry
//! has no field for it) is kept in cryo's sidecar (`peek_off`) and set again
//! on the restored socket. SCM_CREDENTIALS of queued messages are not kept
//! (CRIU's format has no field): a receiver with SO_PASSCRED sees the
//! engine's credentials on them.

use super::{fown, DescribeCx, FdCtx, FdKind, FileError, FileSet, FileTable, OpenFile, SetError, TreeFd};
use crate::sys::sockets as sks;
use cryo_image::pb;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

// Socket options (asm-generic/socket.h, x86_64).
const SO_REUSEADDR: i32 = 2;
const SO_DONTROUTE: i32 = 5;
const SO_BROADCAST: i32 = 6;
const SO_SNDBUF: i32 = 7;
const SO_RCVBUF: i32 = 8;
const SO_KEEPALIVE: i32 = 9;
const SO_OOBINLINE: i32 = 10;
const SO_NO_CHECK: i32 = 11;
const SO_PRIORITY: i32 = 12;
const SO_REUSEPORT: i32 = 15;
const SO_PASSCRED: i32 = 16;
const SO_RCVLOWAT: i32 = 18;
const SO_RCVTIMEO: i32 = 20;
const SO_SNDTIMEO: i32 = 21;
const SO_SNDBUFFORCE: i32 = 32;
const SO_RCVBUFFORCE: i32 = 33;
const SO_PASSSEC: i32 = 34;
const SO_MARK: i32 = 36;
const SO_PEEK_OFF: i32 = 42;
const SO_BUF_LOCK: i32 = 72;

// sock_diag for AF_UNIX (linux/unix_diag.h).
const UDIAG_SHOW_NAME: u32 = 0x1;
const UDIAG_SHOW_VFS: u32 = 0x2;
const UDIAG_SHOW_PEER: u32 = 0x4;
const UDIAG_SHOW_ICONS: u32 = 0x8;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;

/// Socket states as sock_diag and CRIU's entry spell them.
pub const TCP_ESTABLISHED: u32 = 1;
pub const TCP_CLOSE: u32 = 7;
pub const TCP_LISTEN: u32 = 10;

/// What sock_diag says of one unix socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixDiag {
    pub ino: u32,
    /// SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET.
    pub ty: u32,
    pub state: u32,
    /// The bound name (a path, or an abstract name starting with NUL);
    /// empty when unbound.
    pub name: Vec<u8>,
    /// (inode, device) of the socket file of a path-bound socket.
    pub vfs: Option<(u32, u32)>,
    /// The peer's inode (0: none, or its socket is gone).
    pub peer: u32,
    /// Inodes of the connections waiting in a listen backlog.
    pub icons: Vec<u32>,
    /// (receive queue, send queue): for a listening socket (pending
    /// connections, backlog).
    pub rqlen: (u32, u32),
    /// sk_shutdown: RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2.
    pub shutdown: u32,
}

fn ne32(b: &[u8]) -> u32 {
    u32::from_ne_bytes(b[..4].try_into().unwrap())
}

/// One sock_diag answer (struct unix_diag_msg, then attributes).
pub fn parse_diag(b: &[u8]) -> Result<UnixDiag, String> {
    if b.len() < 16 {
        return Err(format!("unix_diag_msg of {} bytes", b.len()));
    }
    let mut d = UnixDiag {
        ty: b[1] as u32,
        state: b[2] as u32,
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
        let want = |n: usize| {
            if p.len() < n {
                Err(format!("attribute {ty}: {} bytes", p.len()))
            } else {
                Ok(())
            }
        };
        match ty {
            UNIX_DIAG_NAME => {
                d.name = p.to_vec();
                // A path comes with its terminating NUL (an abstract name
                // starts with one and is taken as is).
                if d.name.first().is_some_and(|c| *c != 0) {
                    while d.name.last() == Some(&0) {
                        d.name.pop();
                    }
                }
            }
            UNIX_DIAG_VFS => {
                want(8)?;
                d.vfs = Some((ne32(p), ne32(&p[4..])));
            }
            UNIX_DIAG_PEER => {
                want(4)?;
                d.peer = ne32(p);
            }
            UNIX_DIAG_ICONS => d.icons = p.chunks_exact(4).map(ne32).collect(),
            UNIX_DIAG_RQLEN => {
                want(8)?;
                d.rqlen = (ne32(p), ne32(&p[4..]));
            }
            UNIX_DIAG_SHUTDOWN => {
                want(1)?;
                d.shutdown = p[0] as u32;
            }
            _ => {}
        }
        off += (len + 3) & !3;
    }
    Ok(d)
}

/// Every unix socket of our network namespace, by inode.
fn diag_all() -> std::io::Result<HashMap<u32, UnixDiag>> {
    let show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;
    // UDIAG_SHOW_SHUTDOWN does not exist: the kernel always adds it.
    let mut out = HashMap::new();
    for m in sks::unix_diag_dump(show)? {
        let d = parse_diag(&m).map_err(std::io::Error::other)?;
        out.insert(d.ino, d);
    }
    Ok(out)
}

pub use super::socket_ino;

/// The unix sockets of a dumped tree, surveyed before anything is written.
#[derive(Default)]
pub struct Survey {
    pub socks: HashMap<u32, UnixDiag>,
    /// The files of the path-bound ones, by inode.
    pub bound: HashMap<u32, Bound>,
    /// Their queued packets (receive queues), by inode.
    pub queues: HashMap<u32, Vec<Packet>>,
    /// Named datagram sockets outside the tree the tree's sockets are
    /// connected to (--ext-unix-sk), by inode.
    pub external: HashMap<u32, UnixDiag>,
    /// The files.img ids of their USK_EXTERN entries, once written.
    pub external_ids: HashMap<u32, u32>,
    /// The files in flight once dumped, held until the dump ends: a fd of
    /// the tree dumped later is matched to them with kcmp.
    pub in_flight: Vec<OwnedFd>,
}

/// CRIU's uflags: a socket outside the tree (an entry with no fd, which
/// the tree's sockets name as their peer).
pub const USK_EXTERN: u32 = 1;

/// One queued packet: its bytes and the files in flight with it
/// (SCM_RIGHTS; the peek installed them in the engine).
#[derive(Debug)]
pub struct Packet {
    pub data: Vec<u8>,
    pub rights: Vec<OwnedFd>,
}

/// A name as CRIU's entry holds it: the kernel's bytes, which end a path
/// with its NUL (CRIU's restore uses a deleted socket's path as a C string).
fn image_name(n: &[u8]) -> Vec<u8> {
    let mut v = n.to_vec();
    if v.first().is_some_and(|c| *c != 0) {
        v.push(0);
    }
    v
}

/// A name from an entry: a path without its terminating NUL(s) (CRIU's
/// images have one, older cryo images none), an abstract name as it is.
fn plain_name(n: &[u8]) -> Vec<u8> {
    let mut v = n.to_vec();
    if v.first().is_some_and(|c| *c != 0) {
        while v.last() == Some(&0) {
            v.pop();
        }
    }
    v
}

/// A bound name as messages show it (a path, or @ and an abstract name).
fn show_name(n: &[u8]) -> String {
    match n.first() {
        None => "none".into(),
        Some(0) => format!("@{:?}", String::from_utf8_lossy(&n[1..])),
        Some(_) => format!("{:?}", String::from_utf8_lossy(n)),
    }
}

/// A socket that has a peer which names it back (a socketpair, or both ends
/// of a connection).
fn mutual(socks: &HashMap<u32, UnixDiag>, d: &UnixDiag) -> bool {
    d.peer != 0 && socks.get(&d.peer).is_some_and(|p| p.peer == d.ino)
}

/// Check every unix socket fd of the tree (`fds`: every fd) before the
/// dump writes anything: only unix sockets this module restores pass
/// (the others, sockets of other families, are left to their kinds).
/// `ext_unix_sk`: criu's --ext-unix-sk.
pub fn survey(fds: &[TreeFd], ext_unix_sk: bool) -> Result<Survey, FileError> {
    let socks: Vec<(i32, i32, &str, u32)> = fds
        .iter()
        .filter_map(|f| socket_ino(&f.link).map(|i| (f.pid, f.fd, f.link.as_str(), i)))
        .collect();
    if socks.is_empty() {
        return Ok(Survey::default());
    }
    let refuse = |pid: i32, fd: i32, link: &str, what: String| FileError::Unsupported {
        pid,
        fd,
        link: link.into(),
        what,
    };
    let mut all = diag_all().map_err(|source| FileError::Io {
        pid: socks[0].0,
        fd: socks[0].1,
        what: "sock_diag of the unix sockets".into(),
        source,
    })?;
    // A tree in a network namespace of its own (a container): its sockets
    // are in that namespace's tables, read from a thread that enters it.
    {
        use std::os::unix::fs::MetadataExt;
        let own = std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino()).ok();
        let mut seen = HashSet::new();
        for s in &socks {
            let path = format!("/proc/{}/ns/net", s.0);
            let Ok(f) = std::fs::File::open(&path) else { continue };
            let ino = f.metadata().map(|m| m.ino()).ok();
            if ino == own || !seen.insert(ino) {
                continue;
            }
            let theirs = crate::sys::rtnl::in_netns(&f, diag_all)
                .and_then(|r| r)
                .map_err(|source| FileError::Io {
                    pid: s.0,
                    fd: s.1,
                    what: "sock_diag of the unix sockets in its network namespace".into(),
                    source,
                })?;
            all.extend(theirs);
        }
    }
    let ours: HashSet<u32> = socks.iter().map(|s| s.3).collect();
    // Connections waiting in a backlog (not accepted yet): the connecting
    // socket's inode (what UNIX_DIAG_ICONS lists) -> the listener's. The
    // connecting socket's own peer, the embryo socket accept() would
    // return, has no inode yet: sock_diag gives 0.
    let mut waiting: HashMap<u32, u32> = HashMap::new();
    for l in all.values() {
        for c in &l.icons {
            waiting.insert(*c, l.ino);
        }
    }
    let mut mine = HashMap::new();
    let mut bound = HashMap::new();
    let mut queues = HashMap::new();
    let mut external = HashMap::new();
    for &(pid, fd, link, ino) in &socks {
        if mine.contains_key(&ino) {
            // The same socket in another fd or task: surveyed (and its
            // queue read: a second peek would skip empty datagrams the
            // first one marked as peeked) once.
            continue;
        }
        let Some(d) = all.get(&ino) else {
            // Not a unix socket of this network namespace: another kind's,
            // or refused by `files::survey` if no kind claims it.
            continue;
        };
        if !matches!(d.ty as i32, libc::SOCK_STREAM | libc::SOCK_DGRAM | libc::SOCK_SEQPACKET) {
            return Err(refuse(pid, fd, link, format!("unix socket of unknown type {}", d.ty)));
        }
        for c in &d.icons {
            if *c == 0 {
                // As CRIU: what the closed socket sent cannot be read.
                return Err(refuse(
                    pid,
                    fd,
                    link,
                    "listening unix socket with a connection in its backlog whose connecting socket is closed \
                     (what it sent cannot be read without accepting it): not supported"
                        .into(),
                ));
            }
            if !ours.contains(c) {
                return Err(refuse(
                    pid,
                    fd,
                    link,
                    format!(
                        "listening unix socket with a connection in its backlog from socket inode {c}, \
                         outside the dumped tree: not supported"
                    ),
                ));
            }
        }
        let d = d.clone();
        let backlog_of = (d.peer == 0 && d.state == TCP_ESTABLISHED && d.ty as i32 != libc::SOCK_DGRAM)
            .then(|| waiting.get(&d.ino).copied())
            .flatten();
        if let Some(l) = backlog_of {
            if !ours.contains(&l) {
                return Err(refuse(
                    pid,
                    fd,
                    link,
                    format!("connecting to listening socket inode {l}, outside the dumped tree (not accepted yet): not supported"),
                ));
            }
            if d.rqlen.1 != 0 {
                // As CRIU: the data waits in the embryo socket accept() would
                // return, which has no fd to read it through.
                return Err(refuse(
                    pid,
                    fd,
                    link,
                    format!(
                        "connected to listening socket inode {l} but not accepted yet, with {} byte(s) sent that wait \
                         in the connection (they cannot be read without accepting it): not supported",
                        d.rqlen.1
                    ),
                ));
            }
        }
        if d.peer != 0 && !ours.contains(&d.peer) {
            let p = all.get(&d.peer);
            let pname = p.map(|p| show_name(&p.name)).unwrap_or_else(|| "unknown".into());
            if !ext_unix_sk {
                return Err(refuse(
                    pid,
                    fd,
                    link,
                    format!(
                        "unix socket inode {ino} is connected to socket inode {} (name {pname}) outside the dumped \
                         tree; dump with --ext-unix-sk to treat it as external",
                        d.peer
                    ),
                ));
            }
            let Some(p) = p.filter(|p| d.ty as i32 == libc::SOCK_DGRAM && !p.name.is_empty()) else {
                return Err(refuse(
                    pid,
                    fd,
                    link,
                    format!(
                        "unix socket inode {ino} is connected to socket inode {} (name {pname}) outside the dumped \
                         tree: only a datagram socket connected to a named one can be external (as in CRIU 4.2)",
                        d.peer
                    ),
                ));
            };
            external.insert(p.ino, p.clone());
        }
        let d = &d;
        if d.peer == d.ino && (d.name.is_empty() || d.ty as i32 != libc::SOCK_DGRAM) {
            return Err(refuse(pid, fd, link, "an unbound socket connected to itself".into()));
        }
        if d.peer != 0 && !mutual(&all, d) && !external.contains_key(&d.peer) {
            // A datagram client connected to a bound server: connected again.
            let named_server = all.get(&d.peer).is_some_and(|p| !p.name.is_empty());
            if d.ty as i32 != libc::SOCK_DGRAM || !named_server {
                return Err(refuse(
                    pid,
                    fd,
                    link,
                    format!(
                        "one-way connection to unbound socket inode {} (which is not connected back): not supported yet",
                        d.peer
                    ),
                ));
            }
        }
        // An accepted connection shares its listener's name: the listener
        // must be in the tree (restore connects to it), or gone.
        let foreign_listener = !d.name.is_empty()
            && d.state != TCP_LISTEN
            && all
                .values()
                .any(|o| o.ino != d.ino && o.name == d.name && o.state == TCP_LISTEN && !ours.contains(&o.ino));
        if foreign_listener {
            return Err(refuse(
                pid,
                fd,
                link,
                "an accepted connection of a listening socket outside the dumped tree: not supported yet".into(),
            ));
        }
        if !d.name.is_empty() && d.name[0] != 0 {
            let b = resolve_path(pid, fd, d).map_err(|what| refuse(pid, fd, link, what))?;
            bound.insert(ino, b);
        }
        if d.state != TCP_ESTABLISHED && d.state != TCP_CLOSE && d.state != TCP_LISTEN {
            return Err(refuse(pid, fd, link, format!("unix socket in state {}", d.state)));
        }
        if d.state != TCP_LISTEN {
            let packets = survey_queue(pid, fd, link, d, &all)?;
            if !packets.is_empty() && external.contains_key(&d.peer) {
                return Err(refuse(
                    pid,
                    fd,
                    link,
                    format!(
                        "queued data from its peer outside the tree (socket inode {}): only that peer could send it again",
                        d.peer
                    ),
                ));
            }
            if !packets.is_empty() {
                queues.insert(ino, packets);
            }
        }
        let mut d = d.clone();
        if let Some(l) = backlog_of {
            // CRIU's image: the connection's peer is the listener (restore
            // connects to it again and leaves it in the backlog).
            d.peer = l;
        }
        mine.insert(ino, d);
    }
    Ok(Survey {
        socks: mine,
        bound,
        queues,
        external,
        external_ids: HashMap::new(),
        in_flight: Vec::new(),
    })
}

/// The queued packets of one socket, read without consuming them, and
/// whether they can be put back (no SO_PEEK_OFF in use, a sender for them
/// at restore).
fn survey_queue(
    pid: i32,
    fdno: i32,
    link: &str,
    d: &UnixDiag,
    all: &HashMap<u32, UnixDiag>,
) -> Result<Vec<Packet>, FileError> {
    let io = |what: &str, source| FileError::Io {
        pid,
        fd: fdno,
        what: what.into(),
        source,
    };
    let refuse = |what: String| FileError::Unsupported {
        pid,
        fd: fdno,
        link: link.into(),
        what,
    };
    let pidfd = crate::sys::pidfd_open(pid).map_err(|e| io("pidfd_open", e))?;
    let sk = crate::sys::pidfd_getfd(pidfd.as_raw_fd(), fdno).map_err(|e| io("pidfd_getfd", e))?;
    let fd = sk.as_raw_fd();
    let packets = peek_queue(pid, fdno, link, fd, d)?;
    let one_way = d.peer != 0 && !mutual(all, d);
    if !packets.is_empty() && !queue_refillable(d.ty as i32, d.state, d.peer, one_way, &d.name) {
        return Err(refuse(if one_way {
            "queued data in a datagram client connected one way (only its server could send it again): not supported yet"
                .into()
        } else {
            "queued data in an unconnected, unbound unix socket (nothing can send it again): not supported yet".into()
        }));
    }
    Ok(packets)
}

/// The file of a path-bound socket: the directory a relative name is in
/// (CRIU's `name_dir`) and the file's mode and owner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bound {
    /// Its file was unlinked (or replaced) since the bind.
    pub deleted: bool,
    pub dir: Option<String>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A path-bound socket must still be the file at its path (asked of the
/// socket itself: SIOCUNIXFILE gives the file it is bound to).
fn resolve_path(pid: i32, fd: i32, d: &UnixDiag) -> Result<Bound, String> {
    let name = String::from_utf8_lossy(&d.name).into_owned();
    let pidfd = crate::sys::pidfd_open(pid).map_err(|e| format!("pidfd_open: {e}"))?;
    let sk = crate::sys::pidfd_getfd(pidfd.as_raw_fd(), fd).map_err(|e| format!("pidfd_getfd: {e}"))?;
    let file = sks::unix_file(sk.as_raw_fd()).map_err(|e| format!("SIOCUNIXFILE (the file it is bound to): {e}"))?;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| format!("reading the path of its file: {e}"))?
        .to_string_lossy()
        .into_owned();
    // Unlinked since (CRIU's `deleted`: restore binds, then unlinks).
    let (path, mut deleted) = match path.strip_suffix(" (deleted)") {
        Some(p) => (p.to_string(), true),
        None => (path, false),
    };
    let st = nix::sys::stat::fstat(&file).map_err(|e| format!("fstat of its file: {e}"))?;
    let dir = if name.starts_with('/') {
        if path != name {
            return Err(format!(
                "bound to {name:?}, whose file is now {path:?} (moved, or seen through another mount): not supported yet"
            ));
        }
        None
    } else {
        let Some(dir) = path.strip_suffix(&name).and_then(|p| p.strip_suffix('/')) else {
            return Err(format!(
                "bound to the relative name {name:?}, whose file {path:?} does not end with it: not supported yet"
            ));
        };
        Some(if dir.is_empty() {
            "/".to_string()
        } else {
            dir.to_string()
        })
    };
    let full = match &dir {
        Some(d) => format!("{}/{name}", d.trim_end_matches('/')),
        None => name.clone(),
    };
    if !deleted {
        // Replaced by another file since (or unlinked and the path used
        // again): the socket is bound to a name no file stands for, as
        // CRIU says it, deleted.
        deleted = !super::stat_path(&full).is_ok_and(|now| now.st_ino == st.st_ino && now.st_dev == st.st_dev);
    }
    Ok(Bound {
        deleted,
        dir,
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
    })
}

/// CRIU's entry for a socket outside the tree: a named datagram socket
/// (which the restore connects to by its name), flagged USK_EXTERN.
fn extern_entry(id: u32, p: &UnixDiag) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Unixsk as i32,
        id,
        usk: Some(pb::UnixSkEntry {
            id,
            ino: p.ino,
            r#type: libc::SOCK_DGRAM as u32,
            state: TCP_LISTEN,
            flags: 0,
            uflags: USK_EXTERN,
            backlog: 0,
            peer: 0,
            fown: fown(),
            opts: pb::SkOptsEntry::default(),
            name: image_name(&p.name),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A file in flight in the queue of the socket at `c` (a duplicate the
/// peek gave the engine), dumped like any fd: its files.img entry (shared
/// with the tree's fd if it is the same open file) and its id.
fn dump_in_flight(t: &mut FileTable, f: &OwnedFd, c: &FdCtx) -> Result<u32, FileError> {
    let wrap = |what: String| FileError::Unsupported {
        pid: c.pid,
        fd: c.fd,
        link: c.link.clone(),
        what: format!("a file in flight (SCM_RIGHTS) in its queue: {what}"),
    };
    let me = std::process::id() as i32;
    let fd = f.as_raw_fd();
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map_err(|e| wrap(format!("readlink: {e}")))?
        .to_string_lossy()
        .into_owned();
    // Files whose restore belongs to a task: an epoll's targets are fd
    // numbers of the task that added them (which one, the queue does not
    // say), a pidfd of a live process is opened by a task of the tree.
    if link == "anon_inode:[eventpoll]" || link == "anon_inode:[pidfd]" {
        return Err(wrap(format!(
            "{link}: a file of this kind is restored by a task, so it cannot be put back in flight: not supported"
        )));
    }
    let stat = super::stat_path(&format!("/proc/self/fd/{fd}")).map_err(|e| wrap(format!("{link}: stat: {e}")))?;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .map_err(|e| e.to_string())
        .and_then(|s| crate::proc::parse_fdinfo(&s).map_err(|e| e.to_string()))
        .map_err(|e| wrap(format!("{link}: fdinfo: {e}")))?;
    let pidfd = crate::sys::pidfd_open(me).map_err(|e| wrap(format!("pidfd_open: {e}")))?;
    let fc = FdCtx {
        pid: me,
        fd,
        link: link.clone(),
        stat,
        info,
        pidfd: &pidfd,
    };
    t.dump_fd(&fc).map(|e| e.id).map_err(|e| wrap(format!("{link}: {e}")))
}

pub struct UnixSk;

impl FdKind for UnixSk {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Unixsk
    }

    fn survey(&self, fds: &[TreeFd], t: &mut FileTable) -> Result<(), FileError> {
        let s = survey(fds, t.ext_unix_sk)?;
        for &ino in s.socks.keys() {
            t.claim_socket(ino);
        }
        *t.survey_state::<Survey>() = s;
        Ok(())
    }

    fn detect(&self, c: &FdCtx) -> bool {
        c.socket_domain() == Some(libc::AF_UNIX)
    }

    fn dump(&self, c: &FdCtx, id: u32, t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        let ino = c.stat.st_ino as u32;
        let d = t
            .survey_state::<Survey>()
            .socks
            .get(&ino)
            .cloned()
            .ok_or_else(|| c.unsupported("a socket the survey did not see (not a unix socket?)"))?;
        let io = |what: &str, source| FileError::Io {
            pid: c.pid,
            fd: c.fd,
            what: what.into(),
            source,
        };
        let sk = c.steal()?;
        let fd = sk.as_raw_fd();
        let opts = read_opts(fd).map_err(|e| io("reading the socket options", e))?;
        // SO_PEEK_OFF (CRIU's entry has no field): into the sidecar.
        let po = sks::getsockopt_int(fd, libc::SOL_SOCKET, SO_PEEK_OFF).map_err(|e| io("SO_PEEK_OFF", e))?;
        if po >= 0 {
            t.peek_off.insert(id, po as u32);
        }
        let packets = t.survey_state::<Survey>().queues.remove(&ino).unwrap_or_default();
        for p in packets {
            let mut scm = Vec::new();
            if !p.rights.is_empty() {
                let rights = p
                    .rights
                    .iter()
                    .map(|r| dump_in_flight(t, r, c))
                    .collect::<Result<Vec<u32>, FileError>>()?;
                scm.push(pb::ScmEntry {
                    r#type: libc::SCM_RIGHTS as u32,
                    rights,
                });
            }
            let e = pb::SkPacketEntry {
                id_for: id,
                length: p.data.len() as u32,
                scm,
            };
            t.side_record(super::SK_QUEUES, &e, p.data);
            t.survey_state::<Survey>().in_flight.extend(p.rights);
        }
        // A peer outside the tree (--ext-unix-sk): its USK_EXTERN entry, once.
        if let Some(p) = t.survey_state::<Survey>().external.get(&d.peer).cloned() {
            if !t.survey_state::<Survey>().external_ids.contains_key(&p.ino) {
                let eid = t.standalone(|eid, _| Ok(extern_entry(eid, &p)))?;
                t.survey_state::<Survey>().external_ids.insert(p.ino, eid);
            }
        }
        // A listening socket's backlog, or the bytes its sent data holds.
        let backlog = d.rqlen.1;
        let bound = t.survey_state::<Survey>().bound.get(&ino).cloned();
        let file_perms = bound.as_ref().map(|b| pb::FilePermsEntry {
            mode: b.mode,
            uid: b.uid,
            gid: b.gid,
        });
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Unixsk as i32,
            id,
            usk: Some(pb::UnixSkEntry {
                id,
                ino,
                r#type: d.ty,
                state: d.state,
                flags: c.flags(),
                uflags: 0,
                backlog,
                peer: d.peer,
                fown: fown(),
                opts,
                name: image_name(&d.name),
                shutdown: (d.shutdown != 0).then_some(d.shutdown as i32),
                file_perms,
                deleted: bound.as_ref().is_some_and(|b| b.deleted).then_some(true),
                name_dir: bound.and_then(|b| b.dir),
                ns_id: Some(2),
                mnt_id: None,
            }),
            ..Default::default()
        })
    }

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        let u = e.usk.as_ref().ok_or_else(|| cx.bad("UNIXSK without usk"))?;
        if !matches!(
            u.r#type as i32,
            libc::SOCK_STREAM | libc::SOCK_DGRAM | libc::SOCK_SEQPACKET
        ) {
            return Err(cx.bad(format!("unix socket {}: type {}", u.id, u.r#type)));
        }
        if !matches!(u.state, TCP_ESTABLISHED | TCP_CLOSE | TCP_LISTEN) {
            return Err(cx.bad(format!("unix socket {}: state {}", u.id, u.state)));
        }
        let external = u.uflags == USK_EXTERN;
        if u.uflags != 0 && !external {
            return Err(cx.bad(format!(
                "unix socket {}: uflags {:#x} (service, callback or inherited sockets) are not supported",
                u.id, u.uflags
            )));
        }
        if external && (u.r#type as i32 != libc::SOCK_DGRAM || u.name.is_empty()) {
            return Err(cx.bad(format!(
                "unix socket {}: an external socket (USK_EXTERN) must be a named datagram socket",
                u.id
            )));
        }
        let deleted = u.deleted == Some(true);
        if deleted && (u.name.is_empty() || u.name[0] == 0) {
            return Err(cx.bad(format!("unix socket {}: deleted without a path", u.id)));
        }
        let relative = !u.name.is_empty() && u.name[0] != 0 && u.name[0] != b'/';
        if relative && !u.name_dir.as_deref().is_some_and(|d| d.starts_with('/')) {
            return Err(cx.bad(format!(
                "unix socket {}: relative bound name without an absolute name_dir",
                u.id
            )));
        }
        Ok(Box::new(UnixSkFile {
            ino: u.ino,
            ty: u.r#type as i32,
            state: u.state,
            flags: u.flags,
            backlog: u.backlog,
            peer: u.peer,
            opts: u.opts.clone(),
            name: plain_name(&u.name),
            shutdown: u.shutdown.unwrap_or(0) as u32,
            perms: u.file_perms.as_ref().map(|p| (p.mode, p.uid, p.gid)),
            name_dir: if relative { u.name_dir.clone() } else { None },
            external,
            deleted,
            peek_off: None,
        }))
    }

    fn check(&self, files: &FileSet) -> Result<(), SetError> {
        let by_ino: HashMap<u32, &UnixSkFile> = files.of::<UnixSkFile>().map(|(_, u)| (u.ino, u)).collect();
        for (id, u) in files.of::<UnixSkFile>() {
            let bad = |what: String| super::set::bad(&files.files_file, 0, format!("unix socket {id}: {what}"));
            if u.peer != 0 {
                let Some(p) = by_ino.get(&u.peer) else {
                    return Err(bad(format!("peer inode {} is not in files.img", u.peer)));
                };
                let waiting = p.state == TCP_LISTEN && u.ty != libc::SOCK_DGRAM && u.state == TCP_ESTABLISHED;
                if p.peer != u.ino && !waiting && (u.ty != libc::SOCK_DGRAM || p.name.is_empty()) {
                    return Err(super::set::unsupported(
                        &files.files_file,
                        0,
                        format!(
                            "unix socket {id}: a one-way connection to socket inode {}, which is not a bound datagram socket",
                            u.peer
                        ),
                    ));
                }
                if p.ty != u.ty {
                    return Err(bad(format!("peer of another type ({} vs {})", p.ty, u.ty)));
                }
            }
        }
        if files.set.has("sk-queues.img") {
            for (i, (e, data)) in files
                .set
                .with_payload::<pb::SkPacketEntry>("sk-queues.img")?
                .iter()
                .enumerate()
            {
                let file = files.set.path("sk-queues.img").display().to_string();
                for scm in &e.scm {
                    if scm.r#type != libc::SCM_RIGHTS as u32 {
                        return Err(super::set::unsupported(
                            file,
                            0,
                            format!(
                                "entry {i}: a control message of type {} (only SCM_RIGHTS is)",
                                scm.r#type
                            ),
                        ));
                    }
                    if scm.rights.is_empty() || scm.rights.len() > 253 {
                        return Err(super::set::bad(
                            file,
                            0,
                            format!("entry {i}: SCM_RIGHTS with {} files", scm.rights.len()),
                        ));
                    }
                    for r in &scm.rights {
                        match files.get(*r) {
                            None => {
                                return Err(super::set::bad(
                                    file,
                                    0,
                                    format!("entry {i}: file {r} in flight is not in files.img"),
                                ))
                            }
                            Some(f) if f.fd_type() == pb::FdTypes::Unixsk => {
                                return Err(super::set::unsupported(
                                    file,
                                    0,
                                    format!("entry {i}: a unix socket (file {r}) in flight"),
                                ))
                            }
                            Some(_) => {}
                        }
                    }
                }
                if data.len() != e.length as usize {
                    return Err(super::set::bad(
                        file,
                        0,
                        format!("entry {i}: {} bytes announced, {} present", e.length, data.len()),
                    ));
                }
                if files.get_as::<super::inetsk::InetSkFile>(e.id_for).is_some() {
                    // A UDP socket's queue (files/inetsk.rs checks it).
                    continue;
                }
                let Some(u) = files.get_as::<UnixSkFile>(e.id_for) else {
                    return Err(super::set::bad(
                        file,
                        0,
                        format!("entry {i}: queue of file {}, not a unix socket", e.id_for),
                    ));
                };
                let one_way = u.peer != 0
                    && files
                        .of::<UnixSkFile>()
                        .any(|(_, p)| p.ino == u.peer && p.peer != u.ino);
                if !queue_refillable(u.ty, u.state, u.peer, one_way, &u.name) {
                    return Err(super::set::unsupported(
                        file,
                        0,
                        format!(
                            "entry {i}: queued data of unix socket {} without a peer to send it",
                            e.id_for
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A connected pair (or an end whose peer is gone) is made with
/// socketpair(); a bound datagram socket without a peer is a plain socket
/// even when its state says ESTABLISHED (a client connected to it, which
/// must be able to connect again). An unbound one in that state can only
/// have lost its own peer (nobody connects to an unbound socket).
fn is_pair(ty: i32, state: u32, peer: u32, name: &[u8]) -> bool {
    peer != 0 || (state == TCP_ESTABLISHED && (ty != libc::SOCK_DGRAM || name.is_empty()))
}

/// Can the restore send this socket's queue again? From its peer (or the
/// stand-in of a gone one), or, for a bound datagram socket, from a socket
/// of the engine's to its name. Not into a datagram client connected one
/// way to a server (only the server could send to it).
fn queue_refillable(ty: i32, state: u32, peer: u32, one_way: bool, name: &[u8]) -> bool {
    state != TCP_LISTEN && !one_way && (is_pair(ty, state, peer, name) || (ty == libc::SOCK_DGRAM && !name.is_empty()))
}

/// The socket options of CRIU's `sk_opts_entry` that a unix socket has.
fn read_opts(fd: RawFd) -> std::io::Result<pb::SkOptsEntry> {
    let int = |o| sks::getsockopt_int(fd, libc::SOL_SOCKET, o);
    let (snd_s, snd_us) = sks::getsockopt_timeval(fd, SO_SNDTIMEO)?;
    let (rcv_s, rcv_us) = sks::getsockopt_timeval(fd, SO_RCVTIMEO)?;
    let mark = int(SO_MARK)? as u32;
    Ok(pb::SkOptsEntry {
        so_sndbuf: int(SO_SNDBUF)? as u32,
        so_rcvbuf: int(SO_RCVBUF)? as u32,
        so_snd_tmo_sec: snd_s,
        so_snd_tmo_usec: snd_us,
        so_rcv_tmo_sec: rcv_s,
        so_rcv_tmo_usec: rcv_us,
        reuseaddr: Some(int(SO_REUSEADDR)? != 0),
        so_priority: Some(int(SO_PRIORITY)? as u32),
        so_rcvlowat: Some(int(SO_RCVLOWAT)? as u32),
        so_mark: (mark != 0).then_some(mark),
        so_passcred: Some(int(SO_PASSCRED)? != 0),
        so_passsec: Some(int(SO_PASSSEC)? != 0),
        so_dontroute: Some(int(SO_DONTROUTE)? != 0),
        so_no_check: Some(int(SO_NO_CHECK)? != 0),
        so_bound_dev: None,
        so_filter: Vec::new(),
        so_reuseport: Some(int(SO_REUSEPORT)? != 0),
        so_broadcast: Some(int(SO_BROADCAST)? != 0),
        so_keepalive: Some(int(SO_KEEPALIVE)? != 0),
        tcp_keepcnt: None,
        tcp_keepidle: None,
        tcp_keepintvl: None,
        so_oobinline: Some(int(SO_OOBINLINE)? as u32),
        so_linger: None,
        so_buf_lock: Some(int(SO_BUF_LOCK).unwrap_or(0) as u32),
    })
}

/// The receive queue of the socket, packet by packet, without consuming it.
fn peek_queue(pid: i32, fdno: i32, link: &str, fd: RawFd, d: &UnixDiag) -> Result<Vec<Packet>, FileError> {
    let io = |what: &str, source| FileError::Io {
        pid,
        fd: fdno,
        what: what.into(),
        source,
    };
    let refuse = |what: String| FileError::Unsupported {
        pid,
        fd: fdno,
        link: link.into(),
        what,
    };
    let stream_like = d.ty as i32 != libc::SOCK_DGRAM;
    // Bytes queued (stream, seqpacket: all of them; dgram: the first packet).
    let inq = crate::sys::fionread(fd).map_err(|e| io("SIOCINQ", e))?;
    if stream_like && inq == 0 {
        return Ok(Vec::new());
    }
    // The program's own peek offset (kept in the sidecar at dump) is put back after.
    let peek_off = sks::getsockopt_int(fd, libc::SOL_SOCKET, SO_PEEK_OFF).map_err(|e| io("SO_PEEK_OFF", e))?;
    sks::setsockopt_int(fd, libc::SOL_SOCKET, SO_PEEK_OFF, 0).map_err(|e| io("setting SO_PEEK_OFF", e))?;
    // A pair's packets are sent again by the peer (under its own name, if
    // bound); other datagrams by an unbound socket.
    let paired = is_pair(d.ty as i32, d.state, d.peer, &d.name);
    let r = peek_all(fd, stream_like, paired, inq, d.shutdown & 1 != 0);
    // Put the peek offset back as it was whatever happened.
    let back = sks::setsockopt_int(fd, libc::SOL_SOCKET, SO_PEEK_OFF, peek_off);
    let packets = r.map_err(|e| match e {
        PeekError::Io(e) => io("peeking at the queue (MSG_PEEK)", e),
        PeekError::Refuse(w) => refuse(w),
    })?;
    back.map_err(|e| io("resetting SO_PEEK_OFF", e))?;
    let total: usize = packets.iter().map(|p| p.data.len()).sum();
    if stream_like && total != inq {
        return Err(refuse(format!(
            "read {total} of the {inq} queued bytes without consuming them"
        )));
    }
    Ok(packets)
}

enum PeekError {
    Io(std::io::Error),
    Refuse(String),
}

fn peek_all(fd: RawFd, stream_like: bool, paired: bool, inq: usize, rcv_shut: bool) -> Result<Vec<Packet>, PeekError> {
    let cap = if stream_like { inq.max(1) } else { 8 << 20 };
    let mut buf = vec![0u8; cap];
    let mut out = Vec::new();
    let mut total = 0usize;
    loop {
        if stream_like && total >= inq {
            break;
        }
        let m = match sks::peek_msg(fd, &mut buf) {
            Ok(m) => m,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
            Err(e) => return Err(PeekError::Io(e)),
        };
        for r in &m.rights {
            // A socket in flight would need the socket graph (its peer, its
            // own queue, possibly in flight itself) restored around it.
            let st = nix::sys::stat::fstat(r).map_err(|e| PeekError::Io(e.into()))?;
            if st.st_mode & libc::S_IFMT == libc::S_IFSOCK {
                return Err(PeekError::Refuse(format!(
                    "a socket (inode {}) in flight (SCM_RIGHTS) in its queue: not supported yet",
                    st.st_ino
                )));
            }
        }
        if !paired && m.named_sender {
            return Err(PeekError::Refuse(
                "a queued datagram from a bound sender (its address cannot be given back): not supported yet".into(),
            ));
        }
        if m.flags & libc::MSG_CTRUNC != 0 {
            return Err(PeekError::Refuse(
                "control messages in its queue too big to read".into(),
            ));
        }
        if m.flags & libc::MSG_TRUNC != 0 {
            return Err(PeekError::Refuse(format!("a queued datagram bigger than {cap} bytes")));
        }
        let n = m.len;
        if n == 0 && (stream_like || rcv_shut) {
            // End of the queue of a socket shut down for reading.
            break;
        }
        total += n;
        out.push(Packet {
            data: buf[..n].to_vec(),
            rights: m.rights,
        });
    }
    Ok(out)
}

// ---- Restore side -------------------------------------------------------

/// One unix socket to recreate.
#[derive(Clone, Debug)]
pub struct UnixSkFile {
    pub ino: u32,
    pub ty: i32,
    pub state: u32,
    pub flags: u32,
    pub backlog: u32,
    pub peer: u32,
    pub opts: pb::SkOptsEntry,
    pub name: Vec<u8>,
    pub shutdown: u32,
    pub perms: Option<(u32, u32, u32)>,
    /// The directory a relative name is bound in.
    pub name_dir: Option<String>,
    /// A socket outside the tree (USK_EXTERN): connected to by its name.
    pub external: bool,
    /// Its path was unlinked since the bind (or replaced): bound, then
    /// unlinked again.
    pub deleted: bool,
    /// SO_PEEK_OFF (the sidecar's `peek_off`).
    pub peek_off: Option<u32>,
}

impl UnixSkFile {
    fn object(&self) -> String {
        format!("unix socket (inode {})", self.ino)
    }
}

/// A packet of sk-queues.img: its bytes and the ids of the files in
/// flight with it.
#[derive(Debug, Default)]
struct Queued {
    data: Vec<u8>,
    rights: Vec<u32>,
}

/// Sockets made ahead of their own turn (the other end of a pair), by
/// inode, and the queues by file id.
#[derive(Default)]
struct Made {
    ends: HashMap<u32, OwnedFd>,
    /// Unconnected sockets made so far (datagram clients connect to them).
    plain_done: HashSet<u32>,
    /// The listening sockets made so far (accepted connections connect to them).
    listeners: HashMap<u32, OwnedFd>,
    queues: Option<BTreeMap<u32, Vec<Queued>>>,
    /// Sockets whose making has begun (a pair's other end is in `ends`).
    started: HashSet<u32>,
    /// O_PATH fds of the files of sockets bound to a path unlinked since
    /// (connections to them go through /proc/self/fd).
    unlinked: HashMap<u32, std::fs::File>,
}

fn oerr(u: &UnixSkFile, reason: impl std::fmt::Display) -> super::OpenError {
    super::set::open_err(pb::FdTypes::Unixsk, u.object(), reason)
}

impl OpenFile for UnixSkFile {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Unixsk
    }

    fn restore(&self, id: u32, cx: &mut super::RestoreCx) -> Result<Option<OwnedFd>, super::OpenError> {
        let r = self.restore_socket(id, cx)?;
        if let (Some(s), Some(off)) = (&r, self.peek_off) {
            // The offset is a number the kernel only moves on reads: set
            // once the socket exists, whenever its queue is filled.
            sks::setsockopt_int(s.as_raw_fd(), libc::SOL_SOCKET, SO_PEEK_OFF, off as i32)
                .map_err(|e| oerr(self, format!("SO_PEEK_OFF {off}: {e}")))?;
        }
        Ok(r)
    }
}

impl UnixSkFile {
    fn restore_socket(&self, id: u32, cx: &mut super::RestoreCx) -> Result<Option<OwnedFd>, super::OpenError> {
        let files = cx.files;
        let st = cx.scratch::<Made>();
        if st.queues.is_none() {
            let mut q: BTreeMap<u32, Vec<Queued>> = BTreeMap::new();
            if files.set.has("sk-queues.img") {
                for (e, data) in files.set.with_payload::<pb::SkPacketEntry>("sk-queues.img")? {
                    let rights = e.scm.iter().flat_map(|c| c.rights.iter().copied()).collect();
                    q.entry(e.id_for).or_default().push(Queued { data, rights });
                }
            }
            st.queues = Some(q);
        }
        if let Some(fd) = st.ends.remove(&self.ino) {
            return Ok(Some(fd));
        }
        if self.external {
            return Err(oerr(self, "an external socket has no fd to restore"));
        }
        st.started.insert(self.ino);
        if self.peer == self.ino {
            // Connected to itself (a bound datagram socket): bound, then
            // connected to its own name; its queue it sent itself.
            let q = st.queues.as_mut().expect("loaded above").remove(&id);
            let s = new_bound(self, cx)?;
            connect_to(&s, self, cx).map_err(|e| oerr(self, format!("connecting to itself: {e}")))?;
            fill(&s, q.as_ref(), self, cx)?;
            shut(&s, self.shutdown).map_err(|e| oerr(self, format!("shutdown: {e}")))?;
            set_flags(&s, self.flags).map_err(|e| oerr(self, e))?;
            cx.scratch::<Made>().plain_done.insert(self.ino);
            return Ok(Some(s));
        }
        let peer = files
            .of::<UnixSkFile>()
            .find(|(_, p)| self.peer != 0 && p.ino == self.peer);
        if let Some((_, l)) = peer.filter(|(_, p)| p.state == TCP_LISTEN && self.ty != libc::SOCK_DGRAM) {
            // A connection waiting in its listener's backlog (not accepted
            // yet): connected again and left there, after the connections
            // the listener did accept (which accept() must not take from
            // the backlog in their place).
            ensure_listener(l, cx)?;
            for (aid, a) in files.of::<UnixSkFile>() {
                let st = cx.scratch::<Made>();
                if accepted_by(files, a).is_some_and(|x| x.ino == l.ino)
                    && !st.started.contains(&a.ino)
                    && !st.ends.contains_key(&a.ino)
                {
                    if let Some(fd) = a.restore(aid, cx)? {
                        cx.scratch::<Made>().ends.insert(a.ino, fd);
                    }
                }
            }
            let s = new_bound(self, cx)?;
            connect_to(&s, l, cx)
                .map_err(|e| oerr(self, format!("connecting to its listener (inode {}): {e}", l.ino)))?;
            set_flags(&s, self.flags).map_err(|e| oerr(self, e))?;
            return Ok(Some(s));
        }
        let st = cx.scratch::<Made>();
        if let Some((sid, srv)) = peer.filter(|(_, p)| p.peer != self.ino) {
            // A datagram client connected to a bound server: the server
            // first (with its queue), then connect to it (an external one
            // is there already).
            if !srv.external && !st.plain_done.contains(&srv.ino) {
                let q = st.queues.as_mut().expect("loaded above").remove(&sid);
                let fd = plain(srv, q.as_ref(), cx)?;
                let st = cx.scratch::<Made>();
                st.ends.insert(srv.ino, fd);
                st.plain_done.insert(srv.ino);
            }
            let s = new_bound(self, cx)?;
            connect_to(&s, srv, cx)
                .map_err(|e| oerr(self, format!("connecting to its server (inode {}): {e}", srv.ino)))?;
            shut(&s, self.shutdown).map_err(|e| oerr(self, format!("shutdown: {e}")))?;
            set_flags(&s, self.flags).map_err(|e| oerr(self, e))?;
            return Ok(Some(s));
        }
        // The queues of both ends (taken: each is put back once).
        let queues = st.queues.as_mut().expect("loaded above");
        let my_q = queues.remove(&id);
        let peer_q = peer.and_then(|(pid, _)| queues.remove(&pid));
        let ty = sock_type(self.ty);
        let cloexec = nix::sys::socket::SockFlag::SOCK_CLOEXEC;
        let unix = nix::sys::socket::AddressFamily::Unix;
        if is_pair(self.ty, self.state, self.peer, &self.name) {
            // A connected pair: both ends now (the peer's, if it is gone, is
            // closed once the queue is in).
            let listener_of = |u: &UnixSkFile| accepted_by(files, u).map(|l| ((), l));
            let (a, b) = if let Some((_, l)) = listener_of(self) {
                // This end was accepted by listener l: connect to it.
                let (s, c) = accepted_pair(self, peer.map(|p| p.1), l, cx)?;
                (s, c)
            } else if let Some((_, l)) = peer.and_then(|(_, p)| listener_of(p)) {
                let (s, c) = accepted_pair(peer.expect("peer").1, Some(self), l, cx)?;
                (c, s)
            } else {
                let (a, b) = nix::sys::socket::socketpair(unix, ty, None, cloexec).map_err(|e| oerr(self, e))?;
                set_opts(a.as_raw_fd(), &self.opts).map_err(|e| oerr(self, format!("socket options: {e}")))?;
                bind(&a, self, cx)?;
                if let Some((_, p)) = peer {
                    set_opts(b.as_raw_fd(), &p.opts).map_err(|e| oerr(p, format!("socket options: {e}")))?;
                    bind(&b, p, cx)?;
                }
                (a, b)
            };
            fill(&b, my_q.as_ref(), self, cx)?;
            if let Some((_, p)) = peer {
                fill(&a, peer_q.as_ref(), p, cx)?;
            }
            shut(&a, self.shutdown).map_err(|e| oerr(self, format!("shutdown: {e}")))?;
            if let Some((_, p)) = peer {
                shut(&b, p.shutdown).map_err(|e| oerr(p, format!("shutdown: {e}")))?;
                set_flags(&b, p.flags).map_err(|e| oerr(p, e))?;
                cx.scratch::<Made>().ends.insert(p.ino, b);
            } else {
                drop(b);
            }
            set_flags(&a, self.flags).map_err(|e| oerr(self, e))?;
            return Ok(Some(a));
        }
        let s = plain(self, my_q.as_ref(), cx)?;
        cx.scratch::<Made>().plain_done.insert(self.ino);
        if self.state == TCP_LISTEN {
            let dup = s.try_clone().map_err(|e| oerr(self, e))?;
            cx.scratch::<Made>().listeners.insert(self.ino, dup);
        }
        Ok(Some(s))
    }
}

/// A connection accepted by listener `l`: `s` (the accepted end) and its
/// peer `c` (or a stand-in closed later when the peer is gone). The
/// listener is the restored one (made now if its turn has not come), and
/// nothing is left in its backlog.
fn accepted_pair(
    s: &UnixSkFile,
    c: Option<&UnixSkFile>,
    l: &UnixSkFile,
    cx: &mut super::RestoreCx,
) -> Result<(OwnedFd, OwnedFd), super::OpenError> {
    let lfd = ensure_listener(l, cx)?;
    let cfd = match c {
        Some(c) => new_bound(c, cx)?,
        None => new_socket(s)?,
    };
    connect_to(&cfd, l, cx).map_err(|e| oerr(s, format!("connecting to its listener (inode {}): {e}", l.ino)))?;
    let sfd = sks::accept(lfd).map_err(|e| oerr(s, format!("accept on its listener: {e}")))?;
    set_opts(sfd.as_raw_fd(), &s.opts).map_err(|e| oerr(s, format!("socket options: {e}")))?;
    Ok((sfd, cfd))
}

/// The listener a connection was accepted from: the listening socket of
/// the set bound to the same name.
fn accepted_by<'a>(files: &'a FileSet, u: &UnixSkFile) -> Option<&'a UnixSkFile> {
    if u.name.is_empty() || u.state == TCP_LISTEN || !is_pair(u.ty, u.state, u.peer, &u.name) {
        return None;
    }
    files
        .of::<UnixSkFile>()
        .map(|(_, l)| l)
        .find(|l| l.state == TCP_LISTEN && l.name == u.name && l.ino != u.ino && !l.external)
}

/// The restored listener `l` (made now if its turn has not come; kept in
/// `ends` for it): its fd.
fn ensure_listener(l: &UnixSkFile, cx: &mut super::RestoreCx) -> Result<RawFd, super::OpenError> {
    if !cx.scratch::<Made>().listeners.contains_key(&l.ino) {
        cx.scratch::<Made>().started.insert(l.ino);
        let fd = plain(l, None, cx)?;
        let st = cx.scratch::<Made>();
        let dup = fd.try_clone().map_err(|e| oerr(l, e))?;
        st.ends.insert(l.ino, fd);
        st.plain_done.insert(l.ino);
        st.listeners.insert(l.ino, dup);
    }
    Ok(cx.scratch::<Made>().listeners[&l.ino].as_raw_fd())
}

fn sock_type(ty: i32) -> nix::sys::socket::SockType {
    match ty {
        libc::SOCK_STREAM => nix::sys::socket::SockType::Stream,
        libc::SOCK_DGRAM => nix::sys::socket::SockType::Datagram,
        _ => nix::sys::socket::SockType::SeqPacket,
    }
}

/// An unconnected socket: made, optioned, bound, listening, its queue
/// (a bound datagram socket's) sent to its name, shut down.
fn plain(u: &UnixSkFile, queue: Option<&Vec<Queued>>, cx: &mut super::RestoreCx) -> Result<OwnedFd, super::OpenError> {
    let s = new_bound(u, cx)?;
    if u.state == TCP_LISTEN {
        let backlog = nix::sys::socket::Backlog::new(u.backlog.min(i32::MAX as u32) as i32)
            .unwrap_or(nix::sys::socket::Backlog::MAXCONN);
        nix::sys::socket::listen(&s, backlog).map_err(|e| oerr(u, format!("listen: {e}")))?;
    }
    if let Some(q) = queue.filter(|q| !q.is_empty()) {
        // Sent by an unbound socket of ours, connected to it (the senders
        // were unbound as well: the dump checked).
        let t = new_socket(u)?;
        connect_to(&t, u, cx).map_err(|e| oerr(u, format!("connecting a sender to put back its queue: {e}")))?;
        fill(&t, Some(q), u, cx)?;
    }
    shut(&s, u.shutdown).map_err(|e| oerr(u, format!("shutdown: {e}")))?;
    set_flags(&s, u.flags).map_err(|e| oerr(u, e))?;
    Ok(s)
}

/// A new socket of `u`'s type (close-on-exec).
fn new_socket(u: &UnixSkFile) -> Result<OwnedFd, super::OpenError> {
    nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Unix,
        sock_type(u.ty),
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| oerr(u, e))
}

/// A new socket of `u`'s type with `u`'s options, bound to `u`'s name.
fn new_bound(u: &UnixSkFile, cx: &mut super::RestoreCx) -> Result<OwnedFd, super::OpenError> {
    let s = new_socket(u)?;
    set_opts(s.as_raw_fd(), &u.opts).map_err(|e| oerr(u, format!("socket options: {e}")))?;
    bind(&s, u, cx)?;
    Ok(s)
}

/// Connect `s` to the name `to` is bound to (relative names from its directory).
fn connect_to(s: &OwnedFd, to: &UnixSkFile, cx: &mut super::RestoreCx) -> std::io::Result<()> {
    if let Some(f) = cx.scratch::<Made>().unlinked.get(&to.ino) {
        // Its path is gone: through the file itself.
        let p = format!("/proc/self/fd/{}", f.as_raw_fd());
        return sks::unix_connect(s.as_raw_fd(), p.as_bytes());
    }
    match &to.name_dir {
        None => sks::unix_connect(s.as_raw_fd(), &to.name),
        Some(d) => in_dir(d, || sks::unix_connect(s.as_raw_fd(), &to.name)),
    }
}

/// Bind the socket to its dumped name, if it had one (a stale socket file
/// the dumped tree left at the path is removed first).
fn bind(s: &OwnedFd, u: &UnixSkFile, cx: &mut super::RestoreCx) -> Result<(), super::OpenError> {
    if u.name.is_empty() {
        return Ok(());
    }
    if u.deleted {
        return bind_deleted(s, u, cx);
    }
    if u.name[0] == 0 {
        return sks::unix_bind(s.as_raw_fd(), &u.name).map_err(|e| oerr(u, format!("bind (abstract name): {e}")));
    }
    let name = String::from_utf8_lossy(&u.name).into_owned();
    let path = match &u.name_dir {
        Some(d) => format!("{}/{name}", d.trim_end_matches('/')),
        None => name.clone(),
    };
    if super::stat_path(&path).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK) {
        let _ = std::fs::remove_file(&path);
    }
    match &u.name_dir {
        None => sks::unix_bind(s.as_raw_fd(), &u.name),
        Some(d) => in_dir(d, || sks::unix_bind(s.as_raw_fd(), &u.name)),
    }
    .map_err(|e| oerr(u, format!("bind to {path:?}: {e}")))?;
    if let Some((mode, uid, gid)) = u.perms {
        crate::sys::files::chmod(&path, mode & 0o7777).map_err(|e| oerr(u, format!("chmod {path:?}: {e}")))?;
        crate::sys::files::lchown(&path, uid, gid).map_err(|e| oerr(u, format!("chown {path:?}: {e}")))?;
    }
    Ok(())
}

/// Bind to a path that was unlinked (or replaced) since, as CRIU does: the
/// directories gone since are made for the bind and removed after, a file
/// now at the path is moved aside meanwhile, and the socket's own file is
/// unlinked once bound (an O_PATH fd of it is kept for the connections
/// the restore makes to it).
fn bind_deleted(s: &OwnedFd, u: &UnixSkFile, cx: &mut super::RestoreCx) -> Result<(), super::OpenError> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = String::from_utf8_lossy(&u.name).into_owned();
    let path = match &u.name_dir {
        Some(d) => format!("{}/{name}", d.trim_end_matches('/')),
        None => name.clone(),
    };
    let p = std::path::Path::new(&path);
    let mut missing = Vec::new();
    let mut dir = p.parent();
    while let Some(d) = dir.filter(|d| std::fs::symlink_metadata(d).is_err()) {
        missing.push(d.to_path_buf());
        dir = d.parent();
    }
    let mut made = Vec::new();
    let park = format!("{path}.cryo-park-{}", u.ino);
    let mut parked = false;
    let r = (|| -> Result<std::fs::File, String> {
        for d in missing.iter().rev() {
            std::fs::create_dir(d).map_err(|e| format!("making the directory {d:?} gone since: {e}"))?;
            made.push(d.clone());
        }
        if std::fs::symlink_metadata(p).is_ok() {
            std::fs::rename(p, &park).map_err(|e| format!("moving aside the file now at {path:?}: {e}"))?;
            parked = true;
        }
        match &u.name_dir {
            None => sks::unix_bind(s.as_raw_fd(), &u.name),
            Some(d) => in_dir(d, || sks::unix_bind(s.as_raw_fd(), &u.name)),
        }
        .map_err(|e| format!("bind to {path:?}: {e}"))?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
            .open(p)
            .map_err(|e| format!("opening the socket file {path:?}: {e}"));
        let gone = std::fs::remove_file(p).map_err(|e| format!("unlinking {path:?} again: {e}"));
        let f = f?;
        gone?;
        Ok(f)
    })();
    if parked {
        if let Err(e) = std::fs::rename(&park, p) {
            return Err(oerr(
                u,
                format!("putting back the file at {path:?} (now {park:?}): {e}"),
            ));
        }
    }
    for d in made.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
    let f = r.map_err(|e| oerr(u, e))?;
    cx.scratch::<Made>().unlinked.insert(u.ino, f);
    Ok(())
}

/// Run `f` (a bind or connect to a relative name) in directory `dir`: in a
/// thread of our own with a working directory of its own
/// (unshare(CLONE_FS)), so the engine's stays as it is.
fn in_dir(dir: &str, f: impl FnOnce() -> std::io::Result<()> + Send) -> std::io::Result<()> {
    std::thread::scope(|sc| {
        sc.spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
            nix::unistd::chdir(dir)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the thread binding a relative name panicked")))
    })
}

/// Send the packets of a queue into the socket at the other end.
/// The files in flight go with their packet (SCM_RIGHTS), opened through
/// their kinds (or shared with the task that holds them too).
fn fill(
    from: &OwnedFd,
    packets: Option<&Vec<Queued>>,
    u: &UnixSkFile,
    cx: &mut super::RestoreCx,
) -> Result<(), super::OpenError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    let err = |e: nix::Error| oerr(u, format!("putting back the queue: {e}"));
    for p in packets.into_iter().flatten() {
        let mut off = 0;
        let fds = p
            .rights
            .iter()
            .map(|r| cx.in_flight(*r))
            .collect::<Result<Vec<RawFd>, _>>()?;
        loop {
            let n = if off == 0 && !fds.is_empty() {
                let iov = [std::io::IoSlice::new(&p.data)];
                let cmsg = [ControlMessage::ScmRights(&fds)];
                sendmsg::<UnixAddr>(from.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_DONTWAIT, None).map_err(err)?
            } else {
                nix::sys::socket::send(from.as_raw_fd(), &p.data[off..], MsgFlags::MSG_DONTWAIT).map_err(err)?
            };
            off += n;
            if off >= p.data.len() {
                break;
            }
        }
    }
    Ok(())
}

fn shut(s: &OwnedFd, how: u32) -> std::io::Result<()> {
    use nix::sys::socket::Shutdown;
    let h = match how & 3 {
        0 => return Ok(()),
        1 => Shutdown::Read,
        2 => Shutdown::Write,
        _ => Shutdown::Both,
    };
    nix::sys::socket::shutdown(s.as_raw_fd(), h).map_err(std::io::Error::from)
}

pub(super) fn set_flags(s: &OwnedFd, flags: u32) -> Result<(), String> {
    let fl = nix::fcntl::OFlag::from_bits_truncate(flags as i32 & (libc::O_NONBLOCK | libc::O_ASYNC));
    if fl.contains(nix::fcntl::OFlag::O_NONBLOCK) {
        nix::fcntl::fcntl(s, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
            .map_err(|e| format!("F_SETFL: {e}"))?;
    }
    Ok(())
}

/// The options of the entry onto a fresh socket (buffer sizes first: the
/// queued data must fit).
fn set_opts(fd: RawFd, o: &pb::SkOptsEntry) -> std::io::Result<()> {
    let int = |opt, v: i32| sks::setsockopt_int(fd, libc::SOL_SOCKET, opt, v);
    let get = |opt| sks::getsockopt_int(fd, libc::SOL_SOCKET, opt);
    // The kernel doubles what it is given.
    if get(SO_SNDBUF)? as u32 != o.so_sndbuf {
        int(SO_SNDBUFFORCE, (o.so_sndbuf / 2) as i32).or_else(|_| int(SO_SNDBUF, (o.so_sndbuf / 2) as i32))?;
    }
    if get(SO_RCVBUF)? as u32 != o.so_rcvbuf {
        int(SO_RCVBUFFORCE, (o.so_rcvbuf / 2) as i32).or_else(|_| int(SO_RCVBUF, (o.so_rcvbuf / 2) as i32))?;
    }
    if let Some(l) = o.so_buf_lock {
        if get(SO_BUF_LOCK).is_ok_and(|cur| cur as u32 != l) {
            int(SO_BUF_LOCK, l as i32)?;
        }
    }
    if o.so_snd_tmo_sec != 0 || o.so_snd_tmo_usec != 0 {
        sks::setsockopt_timeval(fd, SO_SNDTIMEO, o.so_snd_tmo_sec, o.so_snd_tmo_usec)?;
    }
    if o.so_rcv_tmo_sec != 0 || o.so_rcv_tmo_usec != 0 {
        sks::setsockopt_timeval(fd, SO_RCVTIMEO, o.so_rcv_tmo_sec, o.so_rcv_tmo_usec)?;
    }
    for (opt, v) in [
        (SO_REUSEADDR, o.reuseaddr),
        (SO_PASSCRED, o.so_passcred),
        (SO_PASSSEC, o.so_passsec),
        (SO_DONTROUTE, o.so_dontroute),
        (SO_NO_CHECK, o.so_no_check),
        (SO_REUSEPORT, o.so_reuseport),
        (SO_BROADCAST, o.so_broadcast),
        (SO_KEEPALIVE, o.so_keepalive),
    ] {
        if v == Some(true) {
            int(opt, 1)?;
        }
    }
    if let Some(p) = o.so_priority.filter(|p| *p != 0) {
        int(SO_PRIORITY, p as i32)?;
    }
    if let Some(l) = o.so_rcvlowat.filter(|l| *l > 1) {
        int(SO_RCVLOWAT, l as i32)?;
    }
    if let Some(m) = o.so_mark.filter(|m| *m != 0) {
        int(SO_MARK, m as i32)?;
    }
    if let Some(v) = o.so_oobinline.filter(|v| *v != 0) {
        int(SO_OOBINLINE, v as i32)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, p: &[u8]) -> Vec<u8> {
        let mut v = ((4 + p.len()) as u16).to_ne_bytes().to_vec();
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(p);
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        v
    }

    #[test]
    fn path_names_carry_their_nul_in_the_image_as_criu_writes_them() {
        assert_eq!(image_name(b"/a/b.sock"), b"/a/b.sock\0");
        assert_eq!(image_name(b"\0abs"), b"\0abs");
        assert_eq!(image_name(b""), b"");
        assert_eq!(plain_name(b"/a/b.sock\0"), b"/a/b.sock");
        assert_eq!(plain_name(b"/a/b.sock"), b"/a/b.sock");
        assert_eq!(plain_name(b"\0abs\0"), b"\0abs\0");
    }

    #[test]
    fn a_diag_message_is_parsed() {
        let mut m = vec![libc::AF_UNIX as u8, 5, 1, 0];
        m.extend_from_slice(&1234u32.to_ne_bytes());
        m.extend_from_slice(&[0xff; 8]);
        m.extend(attr(UNIX_DIAG_NAME, b"\0abs"));
        m.extend(attr(UNIX_DIAG_PEER, &1235u32.to_ne_bytes()));
        let mut rq = 0u32.to_ne_bytes().to_vec();
        rq.extend_from_slice(&4864u32.to_ne_bytes());
        m.extend(attr(UNIX_DIAG_RQLEN, &rq));
        m.extend(attr(UNIX_DIAG_SHUTDOWN, &[2]));
        let d = parse_diag(&m).unwrap();
        assert_eq!(
            d,
            UnixDiag {
                ino: 1234,
                ty: 5,
                state: 1,
                name: b"\0abs".to_vec(),
                vfs: None,
                peer: 1235,
                icons: vec![],
                rqlen: (0, 4864),
                shutdown: 2,
            }
        );
        assert!(parse_diag(&m[..10]).is_err());
        let mut bad = m.clone();
        bad.extend_from_slice(&[40, 0, 0, 0]);
        assert!(parse_diag(&bad).is_err());
        assert_eq!(socket_ino("socket:[77]"), Some(77));
        assert_eq!(socket_ino("pipe:[77]"), None);
    }
}
