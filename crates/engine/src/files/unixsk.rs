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
//! a datagram client connected one way connects to its server again; bound sockets are bound (a stale socket file at the path is
//! removed first), listening ones listen. The options go in first, then
//! each queue is sent from the socket's peer, then the shutdown states.
//!
//! Refused (at dump, naming pid and fd): non-unix sockets, peers outside the
//! tree, one-way connections to unbound sockets, queued data of a datagram
//! client connected one way, pending connections in a listen backlog, fds in
//! flight (SCM_RIGHTS), bound paths that were unlinked or replaced, a set
//! SO_PEEK_OFF (CRIU's entry has no field for it).

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
    pub queues: HashMap<u32, Vec<Vec<u8>>>,
}

/// A socket that has a peer which names it back (a socketpair, or both ends
/// of a connection).
fn mutual(socks: &HashMap<u32, UnixDiag>, d: &UnixDiag) -> bool {
    d.peer != 0 && socks.get(&d.peer).is_some_and(|p| p.peer == d.ino)
}

/// Check every unix socket fd of the tree (`fds`: every fd) before the
/// dump writes anything: only unix sockets this module restores pass
/// (the others, sockets of other families, are left to their kinds).
pub fn survey(fds: &[TreeFd]) -> Result<Survey, FileError> {
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
    let all = diag_all().map_err(|source| FileError::Io {
        pid: socks[0].0,
        fd: socks[0].1,
        what: "sock_diag of the unix sockets".into(),
        source,
    })?;
    let ours: HashSet<u32> = socks.iter().map(|s| s.3).collect();
    let mut mine = HashMap::new();
    let mut bound = HashMap::new();
    let mut queues = HashMap::new();
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
        if !d.icons.is_empty() {
            return Err(refuse(
                pid,
                fd,
                link,
                format!(
                    "listening unix socket with {} pending connection(s) in its backlog: not supported yet",
                    d.icons.len()
                ),
            ));
        }
        if d.peer != 0 && !ours.contains(&d.peer) {
            return Err(refuse(
                pid,
                fd,
                link,
                format!(
                    "its peer (socket inode {}) is outside the dumped tree: not supported yet",
                    d.peer
                ),
            ));
        }
        if d.peer == d.ino && (d.name.is_empty() || d.ty as i32 != libc::SOCK_DGRAM) {
            return Err(refuse(pid, fd, link, "an unbound socket connected to itself".into()));
        }
        if d.peer != 0 && !mutual(&all, d) {
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
            if !packets.is_empty() {
                queues.insert(ino, packets);
            }
        }
        mine.insert(ino, d.clone());
    }
    Ok(Survey {
        socks: mine,
        bound,
        queues,
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
) -> Result<Vec<Vec<u8>>, FileError> {
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
    let peek_off = sks::getsockopt_int(fd, libc::SOL_SOCKET, SO_PEEK_OFF).map_err(|e| io("SO_PEEK_OFF", e))?;
    if peek_off >= 0 {
        return Err(refuse(format!(
            "SO_PEEK_OFF is set ({peek_off}): CRIU's unix socket entry cannot hold it"
        )));
    }
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
    if path.ends_with(" (deleted)") {
        return Err(format!(
            "bound to {name:?}, which was unlinked since: not supported yet"
        ));
    }
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
    match super::stat_path(&full) {
        Ok(now) if now.st_ino == st.st_ino && now.st_dev == st.st_dev => {}
        _ => {
            return Err(format!(
                "bound to {full:?}, which was replaced since: not supported yet"
            ))
        }
    }
    Ok(Bound {
        dir,
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
    })
}

pub struct UnixSk;

impl FdKind for UnixSk {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Unixsk
    }

    fn survey(&self, fds: &[TreeFd], t: &mut FileTable) -> Result<(), FileError> {
        let s = survey(fds)?;
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
        let packets = t.survey_state::<Survey>().queues.remove(&ino).unwrap_or_default();
        for p in packets {
            let e = pb::SkPacketEntry {
                id_for: id,
                length: p.len() as u32,
                scm: Vec::new(),
            };
            t.side_record(super::SK_QUEUES, &e, p);
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
                name: d.name.clone(),
                shutdown: (d.shutdown != 0).then_some(d.shutdown as i32),
                file_perms,
                name_dir: bound.and_then(|b| b.dir),
                deleted: None,
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
        if u.uflags != 0 {
            return Err(cx.bad(format!(
                "unix socket {}: uflags {:#x} (external, callback or in-flight sockets) are not supported",
                u.id, u.uflags
            )));
        }
        if u.deleted == Some(true) {
            return Err(cx.bad(format!("unix socket {}: bound to a deleted path", u.id)));
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
            name: u.name.clone(),
            shutdown: u.shutdown.unwrap_or(0) as u32,
            perms: u.file_perms.as_ref().map(|p| (p.mode, p.uid, p.gid)),
            name_dir: if relative { u.name_dir.clone() } else { None },
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
                if p.peer != u.ino && (u.ty != libc::SOCK_DGRAM || p.name.is_empty()) {
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
                if !e.scm.is_empty() {
                    return Err(super::set::unsupported(
                        file,
                        0,
                        format!("entry {i}: a packet carrying control messages (SCM_RIGHTS ...)"),
                    ));
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
fn peek_queue(pid: i32, fdno: i32, link: &str, fd: RawFd, d: &UnixDiag) -> Result<Vec<Vec<u8>>, FileError> {
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
    sks::setsockopt_int(fd, libc::SOL_SOCKET, SO_PEEK_OFF, 0).map_err(|e| io("setting SO_PEEK_OFF", e))?;
    // A pair's packets are sent again by the peer (under its own name, if
    // bound); other datagrams by an unbound socket.
    let paired = is_pair(d.ty as i32, d.state, d.peer, &d.name);
    let r = peek_all(fd, stream_like, paired, inq, d.shutdown & 1 != 0);
    // Put the peek offset back as it was (off) whatever happened.
    let back = sks::setsockopt_int(fd, libc::SOL_SOCKET, SO_PEEK_OFF, -1);
    let packets = r.map_err(|e| match e {
        PeekError::Io(e) => io("peeking at the queue (MSG_PEEK)", e),
        PeekError::Refuse(w) => refuse(w),
    })?;
    back.map_err(|e| io("resetting SO_PEEK_OFF", e))?;
    let total: usize = packets.iter().map(|p| p.len()).sum();
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

fn peek_all(fd: RawFd, stream_like: bool, paired: bool, inq: usize, rcv_shut: bool) -> Result<Vec<Vec<u8>>, PeekError> {
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
        if !m.rights.is_empty() {
            return Err(PeekError::Refuse(format!(
                "{} fd(s) in flight (SCM_RIGHTS) in its queue: not supported yet",
                m.rights.len()
            )));
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
        out.push(buf[..n].to_vec());
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
}

impl UnixSkFile {
    fn object(&self) -> String {
        format!("unix socket (inode {})", self.ino)
    }
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
    queues: Option<BTreeMap<u32, Vec<Vec<u8>>>>,
}

fn oerr(u: &UnixSkFile, reason: impl std::fmt::Display) -> super::OpenError {
    super::set::open_err(pb::FdTypes::Unixsk, u.object(), reason)
}

impl OpenFile for UnixSkFile {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Unixsk
    }

    fn restore(&self, id: u32, cx: &mut super::RestoreCx) -> Result<Option<OwnedFd>, super::OpenError> {
        let files = cx.files;
        let st = cx.scratch::<Made>();
        if st.queues.is_none() {
            let mut q: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
            if files.set.has("sk-queues.img") {
                for (e, data) in files.set.with_payload::<pb::SkPacketEntry>("sk-queues.img")? {
                    q.entry(e.id_for).or_default().push(data);
                }
            }
            st.queues = Some(q);
        }
        if let Some(fd) = st.ends.remove(&self.ino) {
            return Ok(Some(fd));
        }
        if self.peer == self.ino {
            // Connected to itself (a bound datagram socket): bound, then
            // connected to its own name; its queue it sent itself.
            let q = st.queues.as_mut().expect("loaded above").remove(&id);
            let s = new_bound(self)?;
            connect_to(&s, self).map_err(|e| oerr(self, format!("connecting to itself: {e}")))?;
            fill(&s, q.as_ref()).map_err(|e| oerr(self, format!("putting back the queue: {e}")))?;
            shut(&s, self.shutdown).map_err(|e| oerr(self, format!("shutdown: {e}")))?;
            set_flags(&s, self.flags).map_err(|e| oerr(self, e))?;
            cx.scratch::<Made>().plain_done.insert(self.ino);
            return Ok(Some(s));
        }
        let peer = files
            .of::<UnixSkFile>()
            .find(|(_, p)| self.peer != 0 && p.ino == self.peer);
        if let Some((sid, srv)) = peer.filter(|(_, p)| p.peer != self.ino) {
            // A datagram client connected to a bound server: the server
            // first (with its queue), then connect to it.
            if !st.plain_done.contains(&srv.ino) {
                let q = st.queues.as_mut().expect("loaded above").remove(&sid);
                let fd = plain(srv, q.as_ref())?;
                st.ends.insert(srv.ino, fd);
                st.plain_done.insert(srv.ino);
            }
            let s = new_bound(self)?;
            connect_to(&s, srv)
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
            let listener_of = |u: &UnixSkFile| {
                (!u.name.is_empty())
                    .then(|| {
                        files
                            .of::<UnixSkFile>()
                            .find(|(_, l)| l.state == TCP_LISTEN && l.name == u.name && l.ino != u.ino)
                    })
                    .flatten()
            };
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
                bind(&a, self)?;
                if let Some((_, p)) = peer {
                    set_opts(b.as_raw_fd(), &p.opts).map_err(|e| oerr(p, format!("socket options: {e}")))?;
                    bind(&b, p)?;
                }
                (a, b)
            };
            fill(&b, my_q.as_ref()).map_err(|e| oerr(self, format!("putting back the queue: {e}")))?;
            if let Some((_, p)) = peer {
                fill(&a, peer_q.as_ref()).map_err(|e| oerr(p, format!("putting back the queue: {e}")))?;
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
        let s = plain(self, my_q.as_ref())?;
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
    let st = cx.scratch::<Made>();
    if !st.listeners.contains_key(&l.ino) {
        let fd = plain(l, None)?;
        let dup = fd.try_clone().map_err(|e| oerr(l, e))?;
        st.ends.insert(l.ino, fd);
        st.listeners.insert(l.ino, dup);
    }
    let lfd = st.listeners.get(&l.ino).expect("made above");
    let cfd = match c {
        Some(c) => new_bound(c)?,
        None => new_socket(s)?,
    };
    connect_to(&cfd, l).map_err(|e| oerr(s, format!("connecting to its listener (inode {}): {e}", l.ino)))?;
    let sfd = sks::accept(lfd.as_raw_fd()).map_err(|e| oerr(s, format!("accept on its listener: {e}")))?;
    set_opts(sfd.as_raw_fd(), &s.opts).map_err(|e| oerr(s, format!("socket options: {e}")))?;
    Ok((sfd, cfd))
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
fn plain(u: &UnixSkFile, queue: Option<&Vec<Vec<u8>>>) -> Result<OwnedFd, super::OpenError> {
    let s = new_bound(u)?;
    if u.state == TCP_LISTEN {
        let backlog = nix::sys::socket::Backlog::new(u.backlog.min(i32::MAX as u32) as i32)
            .unwrap_or(nix::sys::socket::Backlog::MAXCONN);
        nix::sys::socket::listen(&s, backlog).map_err(|e| oerr(u, format!("listen: {e}")))?;
    }
    if let Some(q) = queue.filter(|q| !q.is_empty()) {
        // Sent by an unbound socket of ours, connected to it (the senders
        // were unbound as well: the dump checked).
        let t = new_socket(u)?;
        connect_to(&t, u).map_err(|e| oerr(u, format!("connecting a sender to put back its queue: {e}")))?;
        fill(&t, Some(q)).map_err(|e| oerr(u, format!("putting back the queue: {e}")))?;
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
fn new_bound(u: &UnixSkFile) -> Result<OwnedFd, super::OpenError> {
    let s = new_socket(u)?;
    set_opts(s.as_raw_fd(), &u.opts).map_err(|e| oerr(u, format!("socket options: {e}")))?;
    bind(&s, u)?;
    Ok(s)
}

/// Connect `s` to the name `to` is bound to (relative names from its directory).
fn connect_to(s: &OwnedFd, to: &UnixSkFile) -> std::io::Result<()> {
    match &to.name_dir {
        None => sks::unix_connect(s.as_raw_fd(), &to.name),
        Some(d) => in_dir(d, || sks::unix_connect(s.as_raw_fd(), &to.name)),
    }
}

/// Bind the socket to its dumped name, if it had one (a stale socket file
/// the dumped tree left at the path is removed first).
fn bind(s: &OwnedFd, u: &UnixSkFile) -> Result<(), super::OpenError> {
    if u.name.is_empty() {
        return Ok(());
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
fn fill(from: &OwnedFd, packets: Option<&Vec<Vec<u8>>>) -> std::io::Result<()> {
    for p in packets.into_iter().flatten() {
        let mut off = 0;
        loop {
            let n = nix::sys::socket::send(from.as_raw_fd(), &p[off..], nix::sys::socket::MsgFlags::MSG_DONTWAIT)?;
            off += n;
            if off >= p.len() {
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
