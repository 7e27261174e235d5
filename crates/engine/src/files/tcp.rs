//! Established TCP connections through TCP_REPAIR, in CRIU 4.2's format:
//! `tcp-stream-INO.img` holds one `TcpStreamEntry` (sequence numbers, queue
//! lengths, the unsent part, options, window) followed by the receive queue
//! and then the send queue; the socket's state is in its `InetSkEntry`.
//!
//! Dump ([`pause`], [`save`]): the socket (stolen from the task with
//! pidfd_getfd) goes into repair mode, which it keeps until the dumped task
//! is gone: closing a socket in repair mode sends nothing, so the peer sees
//! no FIN and no reset. The queues are read with MSG_PEEK in repair mode
//! (the receive queue: what the task has not read; the send queue: what the
//! peer has not acknowledged, of which the last `unsq_len` bytes were never
//! sent). With `--leave-running`, [`resume`] turns repair off again.
//!
//! Restore ([`restore`]) into a fresh socket, in the order the kernel needs
//! (CRIU's soccr does the same): repair on, bind, the two queue sequences,
//! connect (no SYN in repair mode), the options negotiated at connect
//! (SACK, window scale, timestamps, MSS), the timestamp clock, the receive
//! queue and the sent-but-unacknowledged data in repair mode, the unsent
//! data with repair off (so the kernel sends it), the window, then the FINs
//! of a half-closed connection. The socket stays in repair mode until the
//! whole tree is restored ([`finish`]): only then may the kernel send.
//!
//! Half-closed connections: our FIN is restored with shutdown(SHUT_WR) (in
//! repair mode with the send queue selected, a FIN already sent); the
//! peer's FIN, and the ACK of ours, are segments the socket must receive,
//! sent from a raw socket (IPv4, or IPv6 with the header built here) whose
//! packets carry [`SOCCR_MARK`] so the network lock lets them through.
//!
//! CLOSE with a peer (CRIU 4.2 dumps it as a connection too): a connection
//! closed by both sides, or reset. Its send queue is dropped (the task can
//! no longer send it), its receive queue kept; CRIU restores it as closed
//! by both sides (both FINs received and acknowledged). A reset connection
//! has an error pending (SO_ERROR: ECONNRESET, or EPIPE after the peer's
//! FIN), which CRIU's restore loses: cryo reads it at dump (which clears
//! it, so only when the dump ends the tree), keeps it in its sidecar
//! (`tcp_reset`) and restores the connection as established (or
//! CLOSE_WAIT) and then sends it a reset segment, so the kernel sets the
//! same error, state and shutdown bits. Any other pending error is refused.
//!
//! SYN_SENT (a connect in progress, as CRIU 4.2): the sequence numbers are
//! set in repair mode, then connect(2) runs with repair off (non-blocking:
//! the SYN goes out and the network lock drops it), repair on again; once
//! repair is off for good the kernel retransmits the SYN.
#![forbid(unsafe_code)]

use crate::sys::tcp as sys;
use crate::sys::tcp::InetAddr;
use cryo_image::pb;
use std::io;
use std::os::fd::RawFd;

/// The mark of packets the network lock lets through (CRIU's SOCCR_MARK).
pub const SOCCR_MARK: u32 = 0xC114;

/// Kernel TCP states (include/net/tcp_states.h).
pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_SYN_SENT: u8 = 2;
pub const TCP_SYN_RECV: u8 = 3;
pub const TCP_FIN_WAIT1: u8 = 4;
pub const TCP_FIN_WAIT2: u8 = 5;
pub const TCP_TIME_WAIT: u8 = 6;
pub const TCP_CLOSE: u8 = 7;
pub const TCP_CLOSE_WAIT: u8 = 8;
pub const TCP_LAST_ACK: u8 = 9;
pub const TCP_LISTEN: u8 = 10;
pub const TCP_CLOSING: u8 = 11;

/// TCP_INFO's tcpi_options bits.
pub const TCPI_OPT_TIMESTAMPS: u32 = 1;
pub const TCPI_OPT_SACK: u32 = 2;
pub const TCPI_OPT_WSCALE: u32 = 4;

const TCPOPT_MAXSEG: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;

/// The name of a state, as `ss` and CRIU's logs spell it.
pub fn state_name(s: u32) -> &'static str {
    match s as u8 {
        TCP_ESTABLISHED => "ESTABLISHED",
        TCP_SYN_SENT => "SYN_SENT",
        TCP_SYN_RECV => "SYN_RECV",
        TCP_FIN_WAIT1 => "FIN_WAIT1",
        TCP_FIN_WAIT2 => "FIN_WAIT2",
        TCP_TIME_WAIT => "TIME_WAIT",
        TCP_CLOSE => "CLOSE",
        TCP_CLOSE_WAIT => "CLOSE_WAIT",
        TCP_LAST_ACK => "LAST_ACK",
        TCP_LISTEN => "LISTEN",
        TCP_CLOSING => "CLOSING",
        _ => "unknown",
    }
}

const fn bit(s: u8) -> u32 {
    1 << s
}

/// Our FIN restored first (before the peer's).
const SNDQ_FIRST_FIN: u32 = bit(TCP_FIN_WAIT1) | bit(TCP_FIN_WAIT2) | bit(TCP_CLOSING);
/// Our FIN restored after the peer's.
const SNDQ_SECOND_FIN: u32 = bit(TCP_LAST_ACK) | bit(TCP_CLOSE);
/// Our FIN was acknowledged.
const SNDQ_FIN_ACKED: u32 = bit(TCP_FIN_WAIT2) | bit(TCP_CLOSE);
/// The peer's FIN came first.
const RCVQ_FIRST_FIN: u32 = bit(TCP_CLOSE_WAIT) | bit(TCP_LAST_ACK) | bit(TCP_CLOSE);
/// The peer's FIN came after ours.
const RCVQ_SECOND_FIN: u32 = bit(TCP_CLOSING);
/// The peer's FIN was acknowledged.
const RCVQ_FIN_ACKED: u32 = bit(TCP_CLOSE);

/// The states of a connection cryo dumps and restores (CRIU 4.2's):
/// established, half-closed, closed with a peer (reset, or closed by both
/// sides) and SYN_SENT.
pub fn can_repair(state: u8) -> Result<(), &'static str> {
    match state {
        TCP_ESTABLISHED | TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_CLOSE_WAIT | TCP_LAST_ACK | TCP_CLOSING | TCP_CLOSE
        | TCP_SYN_SENT => Ok(()),
        TCP_SYN_RECV => Err("a connection being accepted (SYN_RECV) cannot be repaired"),
        TCP_TIME_WAIT => Err("TIME_WAIT sockets have no fd"),
        _ => Err("this TCP state is not a connection"),
    }
}

/// The pending errors of a reset connection that cryo restores (by sending
/// it a reset in the state the kernel gives that error from).
pub fn reset_state(err: i32) -> Option<u8> {
    match err {
        libc::ECONNRESET => Some(TCP_ESTABLISHED),
        libc::EPIPE => Some(TCP_CLOSE_WAIT),
        _ => None,
    }
}

/// A connection's two ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conn {
    pub local: InetAddr,
    pub peer: InetAddr,
}

impl Conn {
    /// The ends of a connected socket (getsockname, getpeername).
    pub fn of(fd: RawFd) -> io::Result<Conn> {
        Ok(Conn {
            local: sys::inet_name(fd, false)?,
            peer: sys::inet_name(fd, true)?,
        })
    }

    /// Both ends as IPv4 when the socket is IPv6 with IPv4-mapped addresses.
    pub fn unmapped(&self) -> Conn {
        if self.local.v4_mapped() && self.peer.v4_mapped() {
            let un = |a: InetAddr| InetAddr {
                family: libc::AF_INET,
                addr: [a.addr[3], 0, 0, 0],
                port: a.port,
            };
            Conn {
                local: un(self.local),
                peer: un(self.peer),
            }
        } else {
            *self
        }
    }
}

impl std::fmt::Display for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ep = |a: &InetAddr| match a.ip() {
            std::net::IpAddr::V4(ip) => format!("{ip}:{}", a.port),
            std::net::IpAddr::V6(ip) => format!("[{ip}]:{}", a.port),
        };
        write!(f, "{} -> {}", ep(&self.local), ep(&self.peer))
    }
}

/// One connection's stream state: what tcp-stream-INO.img holds, and the
/// socket state (from InetSkEntry).
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub state: u8,
    pub entry: pb::TcpStreamEntry,
    /// The receive queue (not read by the task), `entry.inq_len` bytes.
    pub inq: Vec<u8>,
    /// The send queue (not acknowledged by the peer), `entry.outq_len`
    /// bytes, of which the last `entry.unsq_len` were never sent.
    pub outq: Vec<u8>,
    /// A reset connection (state CLOSE): the error pending on it
    /// (ECONNRESET or EPIPE), kept in cryo's sidecar.
    pub reset: Option<i32>,
}

/// The name of the stream image of a socket inode.
pub fn image_name(ino: u32) -> String {
    format!("tcp-stream-{ino:x}.img")
}

/// Repair mode on (the socket is frozen: it sends nothing, and closing it is silent).
pub fn pause(fd: RawFd) -> io::Result<()> {
    crate::sys::sockets::setsockopt_int(fd, libc::SOL_TCP, sys::TCP_REPAIR, 1)
}

/// Repair mode off (the connection goes on; the kernel sends a window probe).
pub fn resume(fd: RawFd) -> io::Result<()> {
    crate::sys::sockets::setsockopt_int(fd, libc::SOL_TCP, sys::TCP_REPAIR, 0)
}

fn ctx(what: &'static str) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// TCP_INFO's first bytes: (state, options, snd_wscale, rcv_wscale).
fn tcp_info(fd: RawFd) -> io::Result<(u8, u32, u32, u32)> {
    let mut b = [0u8; 256];
    let n = sys::getsockopt_bytes(fd, libc::SOL_TCP, libc::TCP_INFO, &mut b).map_err(ctx("TCP_INFO"))?;
    if n < 7 {
        return Err(io::Error::other(format!("TCP_INFO: {n} bytes")));
    }
    Ok((b[0], b[5] as u32, (b[6] & 0xf) as u32, (b[6] >> 4) as u32))
}

fn get_u32(fd: RawFd, name: i32, what: &'static str) -> io::Result<u32> {
    let mut b = [0u8; 4];
    sys::getsockopt_bytes(fd, libc::SOL_TCP, name, &mut b).map_err(ctx(what))?;
    Ok(u32::from_ne_bytes(b))
}

fn set_u32(fd: RawFd, name: i32, v: u32, what: &'static str) -> io::Result<()> {
    sys::setsockopt_bytes(fd, libc::SOL_TCP, name, &v.to_ne_bytes()).map_err(ctx(what))
}

/// Select a queue for the next TCP_QUEUE_SEQ, send or recv in repair mode.
fn select_queue(fd: RawFd, q: i32) -> io::Result<()> {
    set_u32(fd, sys::TCP_REPAIR_QUEUE, q as u32, "TCP_REPAIR_QUEUE")
}

/// Read the stream state of a socket in repair mode ([`pause`]), queues included.
pub fn save(fd: RawFd) -> io::Result<Stream> {
    let (state, opt_mask, snd_wscale, rcv_wscale) = tcp_info(fd)?;
    can_repair(state).map_err(io::Error::other)?;
    let mut outq_len = sys::outq(fd).map_err(ctx("SIOCOUTQ"))?;
    let mut unsq_len = sys::outq_unsent(fd).map_err(ctx("SIOCOUTQNSD"))?;
    if state == TCP_CLOSE {
        // Reset: what is left in the send queue can never be sent (CRIU
        // drops it too); closed by both sides: it is empty.
        outq_len = 0;
        unsq_len = 0;
    }
    // Our FIN is counted in the send queue but holds no data.
    if bit(state) & (SNDQ_FIRST_FIN | SNDQ_SECOND_FIN) != 0 {
        outq_len = outq_len.saturating_sub(1);
        unsq_len = unsq_len.saturating_sub(1);
    }
    let inq_len = sys::inq(fd).map_err(ctx("SIOCINQ"))?;
    let mss_clamp = get_u32(fd, libc::TCP_MAXSEG, "TCP_MAXSEG")?;
    let timestamp = if opt_mask & TCPI_OPT_TIMESTAMPS != 0 {
        Some(get_u32(fd, sys::TCP_TIMESTAMP, "TCP_TIMESTAMP")?)
    } else {
        None
    };
    let mut w = [0u8; 20];
    let n =
        sys::getsockopt_bytes(fd, libc::SOL_TCP, sys::TCP_REPAIR_WINDOW, &mut w).map_err(ctx("TCP_REPAIR_WINDOW"))?;
    if n != 20 {
        return Err(io::Error::other(format!("TCP_REPAIR_WINDOW: {n} bytes, want 20")));
    }
    let wv = |i: usize| u32::from_ne_bytes(w[i * 4..i * 4 + 4].try_into().unwrap());
    let (inq_seq, inq) = get_queue(fd, sys::TCP_RECV_QUEUE, inq_len, "receive")?;
    let (outq_seq, outq) = get_queue(fd, sys::TCP_SEND_QUEUE, outq_len, "send")?;
    select_queue(fd, sys::TCP_NO_QUEUE)?;
    let wscale = opt_mask & TCPI_OPT_WSCALE != 0;
    Ok(Stream {
        state,
        entry: pb::TcpStreamEntry {
            inq_len,
            inq_seq,
            outq_len,
            outq_seq,
            opt_mask,
            snd_wscale: if wscale { snd_wscale } else { 0 },
            mss_clamp,
            rcv_wscale: wscale.then_some(rcv_wscale),
            timestamp,
            cork: None,
            nodelay: None,
            unsq_len: Some(unsq_len),
            snd_wl1: Some(wv(0)),
            snd_wnd: Some(wv(1)),
            max_window: Some(wv(2)),
            rcv_wnd: Some(wv(3)),
            rcv_wup: Some(wv(4)),
        },
        inq,
        outq,
        reset: None,
    })
}

/// The sequence number and the bytes of one queue (repair mode, MSG_PEEK).
fn get_queue(fd: RawFd, q: i32, len: u32, what: &str) -> io::Result<(u32, Vec<u8>)> {
    select_queue(fd, q)?;
    let seq = get_u32(fd, sys::TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ")?;
    if len == 0 {
        return Ok((seq, Vec::new()));
    }
    // One byte more than expected: the queue must hold exactly len.
    let mut buf = vec![0u8; len as usize + 1];
    let n = sys::peek(fd, &mut buf).map_err(|e| io::Error::new(e.kind(), format!("peeking the {what} queue: {e}")))?;
    if n != len as usize {
        return Err(io::Error::other(format!(
            "the {what} queue gave {n} bytes, its size says {len}"
        )));
    }
    buf.truncate(n);
    Ok((seq, buf))
}

/// Problems of a stream image (file name and field named by the caller).
pub fn validate(s: &Stream) -> Result<(), String> {
    let e = &s.entry;
    can_repair(s.state).map_err(|w| format!("state {} ({}): {w}", s.state, state_name(s.state as u32)))?;
    if e.unsq_len.is_none() {
        return Err("unsq_len is missing (CRIU refuses such images too)".into());
    }
    if e.unsq_len.unwrap_or(0) > e.outq_len {
        return Err(format!(
            "unsq_len {} exceeds outq_len {}",
            e.unsq_len.unwrap_or(0),
            e.outq_len
        ));
    }
    if e.opt_mask & TCPI_OPT_WSCALE != 0 && e.rcv_wscale.is_none() {
        return Err("window scaling is on but rcv_wscale is missing".into());
    }
    if e.opt_mask & TCPI_OPT_TIMESTAMPS != 0 && e.timestamp.is_none() {
        return Err("timestamps are on but timestamp is missing".into());
    }
    if s.inq.len() != e.inq_len as usize || s.outq.len() != e.outq_len as usize {
        return Err(format!(
            "queues hold {} and {} bytes, the entry says {} and {}",
            s.inq.len(),
            s.outq.len(),
            e.inq_len,
            e.outq_len
        ));
    }
    Ok(())
}

/// Write tcp-stream-INO.img (entry, receive queue, send queue) through `w`.
pub fn write(w: &mut cryo_image::writer::ImageWriter, s: &Stream) -> cryo_image::Result<()> {
    w.entry(&s.entry)?;
    w.raw(&s.inq)?;
    w.raw(&s.outq)
}

/// Read a tcp-stream image's bytes (`file` names it in errors); `state` is
/// the socket's state from its InetSkEntry.
pub fn parse(file: &str, data: &[u8], state: u8) -> Result<Stream, String> {
    // One entry, then the queues' bytes: read by hand (the entry readers
    // expect entries to the end of the file).
    let magics = 8usize; // head magic + TCP_STREAM magic
    if data.len() < magics + 4 {
        return Err(format!("{file}: truncated ({} bytes)", data.len()));
    }
    let m = cryo_image::magic::by_name("TCP_STREAM").expect("TCP_STREAM magic");
    let got = u32::from_le_bytes(data[4..8].try_into().unwrap());
    if got != m.magic {
        return Err(format!("{file}: magic {got:#x} is not TCP_STREAM's {:#x}", m.magic));
    }
    let len = u32::from_le_bytes(data[8..12].try_into().unwrap()) as usize;
    let body = data
        .get(12..12 + len)
        .ok_or_else(|| format!("{file}: entry 0 of {len} bytes is truncated"))?;
    let entry = cryo_image::writer::decode_typed::<pb::TcpStreamEntry>(file, 0, 12, body).map_err(|e| e.to_string())?;
    let rest = &data[12 + len..];
    let (il, ol) = (entry.inq_len as usize, entry.outq_len as usize);
    if rest.len() != il + ol {
        return Err(format!(
            "{file}: {} bytes of queues after the entry, inq_len + outq_len say {}",
            rest.len(),
            il + ol
        ));
    }
    let s = Stream {
        state,
        inq: rest[..il].to_vec(),
        outq: rest[il..].to_vec(),
        entry,
        reset: None,
    };
    validate(&s).map_err(|w| format!("{file}: entry 0: {w}"))?;
    Ok(s)
}

/// Restore a connection into `fd`, a fresh TCP socket of `conn.local`'s
/// family (with SO_REUSEADDR set by the caller when ports are shared). It
/// is left in repair mode: [`finish`] turns repair off once the tree is
/// restored.
pub fn restore(fd: RawFd, conn: &Conn, s: &Stream) -> io::Result<()> {
    validate(s).map_err(io::Error::other)?;
    let e = &s.entry;
    // A reset connection is made in the state it was reset from, then reset.
    let state = match s.reset {
        Some(err) => reset_state(err).ok_or_else(|| io::Error::other(format!("{conn}: reset with error {err}")))?,
        None => s.state,
    };
    if state != TCP_CLOSE && s.state == TCP_CLOSE && s.entry.outq_len != 0 {
        return Err(io::Error::other(format!(
            "{conn}: a reset connection with a send queue"
        )));
    }
    let mstate = bit(state);
    let plain = conn.unmapped();
    pause(fd).map_err(ctx("TCP_REPAIR on"))?;
    sys::inet_bind(fd, &conn.local).map_err(ctx("bind"))?;
    let mut inq_seq = e.inq_seq;
    let mut outq_seq = e.outq_seq;
    if mstate & (RCVQ_FIRST_FIN | RCVQ_SECOND_FIN) != 0 {
        inq_seq = inq_seq.wrapping_sub(1);
    }
    if mstate & (SNDQ_FIRST_FIN | SNDQ_SECOND_FIN) != 0 {
        outq_seq = outq_seq.wrapping_sub(1);
    }
    select_queue(fd, sys::TCP_RECV_QUEUE)?;
    set_u32(
        fd,
        sys::TCP_QUEUE_SEQ,
        inq_seq.wrapping_sub(e.inq_len),
        "TCP_QUEUE_SEQ (receive)",
    )?;
    select_queue(fd, sys::TCP_SEND_QUEUE)?;
    // SYN_SENT: the SYN takes one sequence number before the first byte.
    let syn = u32::from(state == TCP_SYN_SENT);
    set_u32(
        fd,
        sys::TCP_QUEUE_SEQ,
        outq_seq.wrapping_sub(e.outq_len).wrapping_sub(syn),
        "TCP_QUEUE_SEQ (send)",
    )?;
    if state == TCP_SYN_SENT {
        return restore_syn_sent(fd, conn, s);
    }
    sys::inet_connect(fd, &conn.peer).map_err(ctx("connect in repair mode"))?;
    let mut opts: Vec<u8> = Vec::new();
    let mut opt = |code: u32, val: u32| {
        opts.extend_from_slice(&code.to_ne_bytes());
        opts.extend_from_slice(&val.to_ne_bytes());
    };
    if e.opt_mask & TCPI_OPT_SACK != 0 {
        opt(TCPOPT_SACK_PERM, 0);
    }
    if e.opt_mask & TCPI_OPT_WSCALE != 0 {
        opt(TCPOPT_WINDOW, e.snd_wscale + (e.rcv_wscale.unwrap_or(0) << 16));
    }
    if e.opt_mask & TCPI_OPT_TIMESTAMPS != 0 {
        opt(TCPOPT_TIMESTAMP, 0);
    }
    opt(TCPOPT_MAXSEG, e.mss_clamp);
    sys::setsockopt_bytes(fd, libc::SOL_TCP, sys::TCP_REPAIR_OPTIONS, &opts).map_err(ctx("TCP_REPAIR_OPTIONS"))?;
    if let (true, Some(ts)) = (e.opt_mask & TCPI_OPT_TIMESTAMPS != 0, e.timestamp) {
        set_u32(fd, sys::TCP_TIMESTAMP, ts, "TCP_TIMESTAMP")?;
    }
    // Room for the queues (the socket's own buffer sizes come back with its
    // options afterwards): nothing may wait here, the network is locked.
    room(fd, libc::SO_SNDBUF, libc::SO_SNDBUFFORCE, s.outq.len())?;
    room(fd, libc::SO_RCVBUF, libc::SO_RCVBUFFORCE, s.inq.len())?;
    // The receive queue, and the sent part of the send queue, in repair mode.
    if !s.inq.is_empty() {
        select_queue(fd, sys::TCP_RECV_QUEUE)?;
        send_all(fd, &s.inq, "receive")?;
    }
    let unsent = e.unsq_len.unwrap_or(0) as usize;
    let sent = s.outq.len() - unsent;
    if sent > 0 {
        select_queue(fd, sys::TCP_SEND_QUEUE)?;
        send_all(fd, &s.outq[..sent], "send")?;
    }
    // The part never sent goes through the normal path, repair off.
    if unsent > 0 {
        resume(fd).map_err(ctx("TCP_REPAIR off for the unsent data"))?;
        send_all(fd, &s.outq[sent..], "unsent send")?;
        pause(fd).map_err(ctx("TCP_REPAIR on"))?;
    }
    if let (Some(snd_wl1), Some(snd_wnd), Some(max_window), Some(rcv_wnd), Some(rcv_wup)) =
        (e.snd_wl1, e.snd_wnd, e.max_window, e.rcv_wnd, e.rcv_wup)
    {
        let (mut rcv_wnd, mut rcv_wup) = (rcv_wnd, rcv_wup);
        if mstate & (RCVQ_FIRST_FIN | RCVQ_SECOND_FIN) != 0 {
            rcv_wup = rcv_wup.wrapping_sub(1);
            rcv_wnd = rcv_wnd.wrapping_add(1);
        }
        let w: Vec<u8> = [snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        sys::setsockopt_bytes(fd, libc::SOL_TCP, sys::TCP_REPAIR_WINDOW, &w).map_err(ctx("TCP_REPAIR_WINDOW"))?;
    }
    select_queue(fd, sys::TCP_NO_QUEUE)?;
    let rcv_wnd = e.rcv_wnd.unwrap_or(65535);
    if mstate & SNDQ_FIRST_FIN != 0 {
        fin_in_send_queue(fd, mstate & SNDQ_FIN_ACKED != 0)?;
    }
    if mstate & (RCVQ_FIRST_FIN | RCVQ_SECOND_FIN) != 0 {
        // The peer's FIN: seq = its position in our receive stream, acking what we sent.
        send_segment(
            &plain,
            inq_seq,
            outq_seq.wrapping_sub(e.outq_len),
            TH_ACK | TH_FIN,
            rcv_wnd,
        )?;
    }
    if mstate & SNDQ_SECOND_FIN != 0 {
        fin_in_send_queue(fd, mstate & SNDQ_FIN_ACKED != 0)?;
    }
    if mstate & RCVQ_FIN_ACKED != 0 {
        inq_seq = inq_seq.wrapping_add(1);
    }
    if mstate & SNDQ_FIN_ACKED != 0 {
        outq_seq = outq_seq.wrapping_add(1);
        send_segment(&plain, inq_seq, outq_seq.wrapping_sub(e.outq_len), TH_ACK, rcv_wnd)?;
    }
    if s.reset.is_some() {
        // The reset: its sequence number is the next one the socket expects.
        send_segment(&plain, inq_seq, 0, TH_RST, 0)?;
        let (now, ..) = tcp_info(fd)?;
        if now != TCP_CLOSE {
            return Err(io::Error::other(format!(
                "{conn}: the reset sent to it left it in state {}",
                state_name(now as u32)
            )));
        }
    }
    Ok(())
}

/// The rest of a SYN_SENT restore (sequence numbers set, in repair mode):
/// connect with repair off and O_NONBLOCK (the SYN goes out, and the
/// network lock drops it), repair on again, the timestamp clock.
fn restore_syn_sent(fd: RawFd, conn: &Conn, s: &Stream) -> io::Result<()> {
    let fl = crate::sys::swap_fl(fd, |f| f | libc::O_NONBLOCK).map_err(ctx("O_NONBLOCK for connect"))?;
    resume(fd).map_err(ctx("TCP_REPAIR off for connect"))?;
    let r = match sys::inet_connect(fd, &conn.peer) {
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), format!("connect (SYN_SENT): {e}"))),
    };
    let back = pause(fd).map_err(ctx("TCP_REPAIR on"));
    crate::sys::swap_fl(fd, |_| fl).map_err(ctx("file flags after connect"))?;
    r?;
    back?;
    let e = &s.entry;
    if let (true, Some(ts)) = (e.opt_mask & TCPI_OPT_TIMESTAMPS != 0, e.timestamp) {
        set_u32(fd, sys::TCP_TIMESTAMP, ts, "TCP_TIMESTAMP")?;
    }
    Ok(())
}

/// The end of the restore: repair off, the kernel sends what it must.
pub fn finish(fd: RawFd) -> io::Result<()> {
    resume(fd)
}

/// Grow a socket buffer (SO_*BUFFORCE: above the sysctl limits) so that
/// `len` bytes of queue fit with room to spare.
fn room(fd: RawFd, get: i32, force: i32, len: usize) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    use crate::sys::sockets::{getsockopt_int, setsockopt_int};
    let want = (len as i64 * 2 + (256 << 10)).min(i32::MAX as i64 / 2) as i32;
    if getsockopt_int(fd, libc::SOL_SOCKET, get)? < want {
        setsockopt_int(fd, libc::SOL_SOCKET, force, want / 2 + 1)
            .map_err(ctx("growing the socket buffer for its queue"))?;
    }
    Ok(())
}

fn send_all(fd: RawFd, mut buf: &[u8], what: &str) -> io::Result<()> {
    // In repair mode the kernel makes one linear buffer of what each send
    // gives; a big one may not be allocatable: halve the chunk and retry.
    let mut chunk = buf.len();
    while !buf.is_empty() {
        let n = chunk.min(buf.len());
        match sys::send(fd, &buf[..n]) {
            Ok(0) | Err(_) if chunk > 1024 => chunk /= 2,
            Ok(0) => {
                return Err(io::Error::other(format!(
                    "refilling the {what} queue: send took nothing"
                )))
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("refilling the {what} queue: {e}"))),
            Ok(k) => buf = &buf[k..],
        }
    }
    Ok(())
}

/// Our FIN: shutdown(SHUT_WR), as already sent when `acked` (the send
/// queue selected) or as the next segment to send.
fn fin_in_send_queue(fd: RawFd, acked: bool) -> io::Result<()> {
    if acked {
        select_queue(fd, sys::TCP_SEND_QUEUE)?;
    }
    sys::shutdown(fd, libc::SHUT_WR).map_err(ctx("shutdown(SHUT_WR) for our FIN"))?;
    if acked {
        select_queue(fd, sys::TCP_NO_QUEUE)?;
    }
    Ok(())
}

const TH_FIN: u8 = 0x01;
const TH_RST: u8 = 0x04;
const TH_ACK: u8 = 0x10;

fn csum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 or IPv6 packet holding a TCP segment from the peer to us (no
/// options, no data; `conn` of one family, IPv4-mapped ones unmapped).
pub fn build_segment(conn: &Conn, seq: u32, ack: u32, flags: u8, window: u32) -> Vec<u8> {
    let v6 = conn.local.family == libc::AF_INET6;
    let src = conn.peer.octets();
    let dst = conn.local.octets();
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&conn.peer.port.to_be_bytes());
    tcp.extend_from_slice(&conn.local.port.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.push(5 << 4); // data offset: 5 words
    tcp.push(flags);
    tcp.extend_from_slice(&(window.min(0xffff) as u16).to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                                          // The pseudo-header: RFC 793 (IPv4), RFC 8200 8.1 (IPv6).
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    if v6 {
        pseudo.extend_from_slice(&(tcp.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, libc::IPPROTO_TCP as u8]);
    } else {
        pseudo.extend_from_slice(&[0, libc::IPPROTO_TCP as u8]);
        pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    }
    let mut all = pseudo;
    all.extend_from_slice(&tcp);
    let c = csum(&all, 0);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut ip = if v6 {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        h.extend_from_slice(&[libc::IPPROTO_TCP as u8, 64]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h
    } else {
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
        h.extend_from_slice(&[0, 242, 0, 0, 64, libc::IPPROTO_TCP as u8, 0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        let c = csum(&h, 0);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    };
    ip.extend_from_slice(&tcp);
    ip
}

fn send_segment(conn: &Conn, seq: u32, ack: u32, flags: u8, window: u32) -> io::Result<()> {
    let pkt = build_segment(conn, seq, ack, flags, window);
    let raw = sys::raw_ip(conn.local.family, SOCCR_MARK).map_err(ctx("raw socket for a FIN"))?;
    sys::sendto_inet(std::os::fd::AsRawFd::as_raw_fd(&raw), &pkt, &conn.local).map_err(ctx("sending a FIN"))
}

/// What `--tcp-established`, `--tcp-close` and `--network-lock` ask of a
/// dump, and the run id the lock is named after (inventory.img's
/// `dump_criu_run_id`).
#[derive(Debug, Clone, Default)]
pub struct TcpOpts {
    pub established: bool,
    pub close: bool,
    pub lock: crate::files::netlock::Method,
    pub run_id: String,
    /// --leave-running: the tree goes on after the dump (a reset
    /// connection's pending error cannot be read then: reading clears it).
    pub leave_running: bool,
}

/// A connection the inet survey found in the tree, handed to [`survey`]
/// with a copy of the socket (pidfd_getfd).
pub struct Candidate {
    pub pid: i32,
    pub fd: i32,
    pub link: String,
    pub ino: u32,
    pub sk: std::os::fd::OwnedFd,
    pub conn: Conn,
    /// The state sock_diag gave.
    pub state: u8,
}

/// One connection held in repair mode by the dump.
pub struct Held {
    sk: std::os::fd::OwnedFd,
    pub conn: Conn,
    pub stream: Stream,
    /// SO_REUSEADDR before repair (repair off clears it).
    reuseaddr: i32,
}

/// The connections a dump holds (the survey's state for the inet kind):
/// each in repair mode, the network lock over all of them. Dropped without
/// [`Dumped::tree_gone`] (a failed dump), or at [`Dumped::let_go`], every
/// socket leaves repair mode and the lock goes.
#[derive(Default)]
pub struct Dumped {
    pub socks: std::collections::BTreeMap<u32, Held>,
    lock: Option<crate::files::netlock::Lock>,
}

impl Dumped {
    /// The stream of a socket (by inode), if the survey dumped it; the
    /// socket stays held in repair mode.
    pub fn take_stream(&mut self, ino: u32) -> Option<Stream> {
        let h = self.socks.get_mut(&ino)?;
        let empty = Stream {
            state: h.stream.state,
            entry: h.stream.entry,
            inq: Vec::new(),
            outq: Vec::new(),
            reset: h.stream.reset,
        };
        Some(std::mem::replace(&mut h.stream, empty))
    }

    /// The tree goes on (a failed dump, or `--leave-running`): repair off
    /// (SO_REUSEADDR as it was), then the lock is removed.
    pub fn let_go(&mut self) -> Result<(), String> {
        use std::os::fd::AsRawFd;
        let mut first: Option<String> = None;
        for (ino, h) in std::mem::take(&mut self.socks) {
            let fd = h.sk.as_raw_fd();
            let r = resume(fd).and_then(|_| {
                crate::sys::sockets::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, h.reuseaddr)
            });
            if let Err(e) = r {
                first.get_or_insert(format!("socket {ino} ({}): repair off: {e}", h.conn));
            }
        }
        if let Some(l) = self.lock.take() {
            if let Err(e) = l.release() {
                first.get_or_insert(e.to_string());
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The tree was killed: the sockets close in repair mode (silently).
    pub fn tree_gone(&mut self) {
        self.socks.clear();
    }

    /// The dump is complete and the tree gone: the lock stays until the
    /// restore removes it (else the peers' next segments draw resets).
    pub fn done(&mut self) {
        if self.socks.is_empty() {
            if let Some(l) = self.lock.take() {
                l.keep();
            }
        }
    }
}

impl Drop for Dumped {
    fn drop(&mut self) {
        if let Err(e) = self.let_go() {
            eprintln!("cryo: {e}");
        }
    }
}

/// The dump of the tree's TCP connections, before anything is written:
/// without `--tcp-established` (or `--tcp-close`) the first one is refused,
/// naming it; with `--tcp-close` they are dumped as their InetSkEntry only
/// (restored closed), nothing is locked; else all are locked at once
/// (`opts.lock`), put in repair mode and their streams read. The result is
/// `t`'s survey state [`Dumped`].
pub fn survey(cands: Vec<Candidate>, opts: &TcpOpts, t: &mut super::FileTable) -> Result<(), super::FileError> {
    use std::os::fd::AsRawFd;
    let refuse = |c: &Candidate, what: String| super::FileError::Unsupported {
        pid: c.pid,
        fd: c.fd,
        link: c.link.clone(),
        what,
    };
    if cands.is_empty() || opts.close {
        return Ok(());
    }
    if !opts.established {
        let c = &cands[0];
        return Err(refuse(
            c,
            format!(
                "established TCP connection {} ({}): dump it with --tcp-established (or --tcp-close to restore it closed)",
                c.conn,
                state_name(c.state as u32)
            ),
        ));
    }
    for c in &cands {
        if let Err(w) = can_repair(c.state) {
            return Err(refuse(
                c,
                format!("TCP connection {} ({}): {w}", c.conn, state_name(c.state as u32)),
            ));
        }
    }
    // Closed connections with an error pending (reset): the error is read
    // (which clears it) only once nothing else can refuse the dump, and
    // only when the dump ends the tree.
    let mut pending = Vec::new();
    for c in cands.iter().filter(|c| c.state == TCP_CLOSE) {
        let rev = crate::sys::sockets::poll_now(c.sk.as_raw_fd(), libc::POLLERR).map_err(|e| super::FileError::Io {
            pid: c.pid,
            fd: c.fd,
            what: format!("TCP connection {}: poll", c.conn),
            source: e,
        })?;
        if rev & libc::POLLERR == 0 {
            continue;
        }
        if opts.leave_running {
            return Err(refuse(
                c,
                format!(
                    "TCP connection {} (CLOSE) was reset and has an error pending: reading it would clear it, so \
                     cryo dumps it only when the dump ends the tree (not with --leave-running)",
                    c.conn
                ),
            ));
        }
        pending.push(c.ino);
    }
    let mut errors = std::collections::BTreeMap::new();
    for &ino in &pending {
        let c = cands.iter().find(|c| c.ino == ino).expect("a candidate");
        let err =
            crate::sys::sockets::getsockopt_int(c.sk.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ERROR).map_err(|e| {
                super::FileError::Io {
                    pid: c.pid,
                    fd: c.fd,
                    what: format!("TCP connection {}: SO_ERROR", c.conn),
                    source: e,
                }
            })?;
        errors.insert(ino, err);
    }
    for (&ino, &err) in &errors {
        let c = cands.iter().find(|c| c.ino == ino).expect("a candidate");
        if reset_state(err).is_none() {
            let what = if err == 0 {
                "has messages in its error queue (MSG_ERRQUEUE)".to_string()
            } else {
                format!(
                    "failed with error {} ({}), which cryo cannot give back to a restored socket (the dumped one \
                     no longer reports it: reading it cleared it)",
                    err,
                    io::Error::from_raw_os_error(err)
                )
            };
            return Err(refuse(c, format!("closed TCP connection {} {what}", c.conn)));
        }
    }
    let d = t.survey_state::<Dumped>();
    let conns: Vec<Conn> = cands.iter().map(|c| c.conn).collect();
    let c0 = &cands[0];
    d.lock = Some(
        crate::files::netlock::Lock::take(opts.lock, &opts.run_id, &conns)
            .map_err(|e| refuse(c0, format!("locking the network for its TCP connections: {e}")))?,
    );
    if std::env::var("CRYO_FAULT").ok().as_deref() == Some("after-netlock") {
        return Err(refuse(
            c0,
            "fault injected after the network lock (CRYO_FAULT=after-netlock)".into(),
        ));
    }
    for c in cands {
        let fd = c.sk.as_raw_fd();
        let io = |what: &str, e: io::Error| super::FileError::Io {
            pid: c.pid,
            fd: c.fd,
            what: format!("TCP connection {}: {what}", c.conn),
            source: e,
        };
        let reuseaddr = crate::sys::sockets::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR)
            .map_err(|e| io("SO_REUSEADDR", e))?;
        pause(fd).map_err(|e| io("TCP_REPAIR on", e))?;
        let d = t.survey_state::<Dumped>();
        // Held from here on: a failure below turns repair off again.
        let held = Held {
            sk: c.sk,
            conn: c.conn,
            stream: Stream {
                state: c.state,
                entry: Default::default(),
                inq: Vec::new(),
                outq: Vec::new(),
                reset: None,
            },
            reuseaddr,
        };
        d.socks.insert(c.ino, held);
        let mut stream = save(fd).map_err(|e| io("reading its state in repair mode", e))?;
        stream.reset = errors.get(&c.ino).copied();
        t.survey_state::<Dumped>().socks.get_mut(&c.ino).expect("held").stream = stream;
    }
    Ok(())
}

/// A connection to restore, from its InetSkEntry and tcp-stream-INO.img,
/// validated before anything is created.
#[derive(Debug, Clone)]
pub struct Restorable {
    pub conn: Conn,
    /// None: restored closed (the dump or the restore said --tcp-close).
    pub stream: Option<Stream>,
}

/// Read and check the stream of socket `ino` (state `state`, addresses
/// `conn`) from `set`: every problem names the image. `closed`: the dump
/// was made with --tcp-close (no stream image).
pub fn describe(
    set: &cryo_image::ImageSet,
    ino: u32,
    state: u8,
    conn: Conn,
    closed: bool,
) -> Result<Restorable, String> {
    let name = image_name(ino);
    if closed && !set.has(&name) {
        return Ok(Restorable { conn, stream: None });
    }
    let path = set.path(&name);
    let file = path.display().to_string();
    let data = std::fs::read(&path).map_err(|e| format!("{file}: {e} (the stream of TCP connection {conn})"))?;
    let stream = parse(&file, &data, state)?;
    Ok(Restorable {
        conn,
        stream: Some(stream),
    })
}

/// Restore a connection into `fd`, a fresh TCP socket with SO_REUSEADDR on:
/// in repair mode (see [`restore`]), or closed (`close`, or a dump made with
/// --tcp-close: shutdown, as CRIU does).
pub fn restore_into(fd: RawFd, r: &Restorable, close: bool) -> io::Result<()> {
    match (&r.stream, close) {
        (Some(s), false) => restore(fd, &r.conn, s),
        _ => match sys::shutdown(fd, libc::SHUT_RDWR) {
            Err(e) if e.raw_os_error() != Some(libc::ENOTCONN) => Err(e),
            _ => Ok(()),
        },
    }
}

/// The end of a restore, once every task is ready: each restored
/// connection leaves repair mode (its SO_REUSEADDR as dumped), then the
/// dump's network lock over `conns` goes (inventory's method and run id).
pub fn end_restore(
    socks: &[(RawFd, Conn, i32)],
    conns: &[Conn],
    method: crate::files::netlock::Method,
    run_id: &str,
) -> Result<(), String> {
    for &(fd, conn, reuseaddr) in socks {
        finish(fd).map_err(|e| format!("TCP connection {conn}: repair off: {e}"))?;
        crate::sys::sockets::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, reuseaddr)
            .map_err(|e| format!("TCP connection {conn}: SO_REUSEADDR: {e}"))?;
    }
    crate::files::netlock::unlock(method, run_id, conns).map_err(|e| e.to_string())
}

/// The TCP connections of an image set (InetSkEntry of TCP with a peer
/// port) and the network lock its dump left (inventory.img's method and
/// run id): what the end of a restore, or its abort, unlocks.
#[derive(Debug, Default)]
pub struct ImageConns {
    pub method: crate::files::netlock::Method,
    pub run_id: String,
    /// The dump was made with --tcp-close (no streams).
    pub closed: bool,
    /// (file id, connection, SO_REUSEADDR as dumped).
    pub conns: Vec<(u32, Conn, i32)>,
}

/// The ends of an InetSkEntry as a [`Conn`], if it is a TCP connection.
pub fn entry_conn(i: &pb::InetSkEntry) -> Option<Conn> {
    if i.proto as i32 != libc::IPPROTO_TCP || i.dst_port == 0 {
        return None;
    }
    let words = if i.family as i32 == libc::AF_INET { 1 } else { 4 };
    if i.src_addr.len() < words || i.dst_addr.len() < words || i.src_port > 0xffff || i.dst_port > 0xffff {
        return None;
    }
    let a = |w: &[u32], port: u32| {
        let mut addr = [0u32; 4];
        addr[..words].copy_from_slice(&w[..words]);
        InetAddr {
            family: i.family as i32,
            addr,
            port: port as u16,
        }
    };
    Some(Conn {
        local: a(&i.src_addr, i.src_port),
        peer: a(&i.dst_addr, i.dst_port),
    })
}

/// The connections of `set` and its lock (an empty list without inet sockets).
pub fn image_conns(set: &cryo_image::ImageSet) -> Result<ImageConns, String> {
    let inv = set.inventory().map_err(|e| e.to_string())?;
    let method = crate::files::netlock::Method::from_inventory(inv.network_lock_method).ok_or_else(|| {
        format!(
            "{}: network_lock_method {:?} is none of iptables (0), nftables (1), skip (2)",
            set.path("inventory.img").display(),
            inv.network_lock_method
        )
    })?;
    let mut out = ImageConns {
        method,
        run_id: inv.dump_criu_run_id.clone().unwrap_or_default(),
        closed: inv.tcp_close == Some(true),
        conns: Vec::new(),
    };
    for e in set.files().map_err(|e| e.to_string())? {
        if let Some(i) = &e.isk {
            if let Some(c) = entry_conn(i) {
                out.conns.push((i.id, c, i.opts.reuseaddr.unwrap_or(false) as i32));
            }
        }
    }
    Ok(out)
}

/// The end of a restore: every connection restored from a stream (its fd
/// in the engine by file id, `fd_of`) leaves repair mode, then the lock goes.
pub fn end_restore_set(ic: &ImageConns, close: bool, fd_of: impl Fn(u32) -> Option<RawFd>) -> Result<(), String> {
    let socks: Vec<(RawFd, Conn, i32)> = if close || ic.closed {
        Vec::new()
    } else {
        ic.conns
            .iter()
            .filter_map(|&(id, c, r)| fd_of(id).map(|fd| (fd, c, r)))
            .collect()
    };
    let conns: Vec<Conn> = ic.conns.iter().map(|c| c.1).collect();
    end_restore(&socks, &conns, ic.method, &ic.run_id)
}

/// A failed restore: the dump's lock goes all the same (never left behind).
pub fn abort_restore(ic: &ImageConns) {
    let conns: Vec<Conn> = ic.conns.iter().map(|c| c.1).collect();
    if let Err(e) = crate::files::netlock::unlock(ic.method, &ic.run_id, &conns) {
        eprintln!("cryo restore: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], port: u16) -> InetAddr {
        InetAddr {
            family: libc::AF_INET,
            addr: [u32::from_ne_bytes(a), 0, 0, 0],
            port,
        }
    }

    #[test]
    fn segment_checksums_verify() {
        let c = Conn {
            local: v4([10, 0, 0, 1], 80),
            peer: v4([10, 0, 0, 2], 40000),
        };
        let p = build_segment(&c, 1, 2, TH_ACK | TH_FIN, 1000);
        assert_eq!(p.len(), 40);
        assert_eq!(csum(&p[..20], 0), 0, "IP header checksum");
        let mut pseudo = p[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 6, 0, 20]);
        pseudo.extend_from_slice(&p[20..]);
        assert_eq!(csum(&pseudo, 0), 0, "TCP checksum");
        assert_eq!(&p[20..22], &40000u16.to_be_bytes());
        assert_eq!(p[33], TH_ACK | TH_FIN);
    }

    #[test]
    fn ipv6_segment_checksums_verify() {
        let w = |last: u8| {
            let mut b = [0u8; 16];
            b[0] = 0xfd;
            b[15] = last;
            let mut a = [0u32; 4];
            for (i, c) in b.chunks(4).enumerate() {
                a[i] = u32::from_ne_bytes(c.try_into().unwrap());
            }
            InetAddr {
                family: libc::AF_INET6,
                addr: a,
                port: 0,
            }
        };
        let c = Conn {
            local: InetAddr { port: 80, ..w(1) },
            peer: InetAddr { port: 40000, ..w(2) },
        };
        let p = build_segment(&c, 7, 9, TH_RST, 0);
        assert_eq!(p.len(), 60);
        assert_eq!(p[0] >> 4, 6);
        assert_eq!(u16::from_be_bytes([p[4], p[5]]), 20, "payload length");
        assert_eq!(p[6], libc::IPPROTO_TCP as u8);
        let mut pseudo = p[8..40].to_vec();
        pseudo.extend_from_slice(&[0, 0, 0, 20, 0, 0, 0, 6]);
        pseudo.extend_from_slice(&p[40..]);
        assert_eq!(csum(&pseudo, 0), 0, "TCP checksum");
        assert_eq!(p[40 + 13], TH_RST);
        assert_eq!(&p[8..24], &c.peer.octets()[..], "from the peer");
    }

    #[test]
    fn stream_images_round_trip_and_bad_ones_are_named() {
        let s = Stream {
            state: TCP_ESTABLISHED,
            entry: pb::TcpStreamEntry {
                inq_len: 3,
                inq_seq: 10,
                outq_len: 2,
                outq_seq: 20,
                opt_mask: TCPI_OPT_WSCALE,
                snd_wscale: 7,
                mss_clamp: 1460,
                rcv_wscale: Some(7),
                unsq_len: Some(1),
                ..Default::default()
            },
            inq: b"abc".to_vec(),
            outq: b"de".to_vec(),
            reset: None,
        };
        let dir = std::env::temp_dir().join(format!("cryo-tcp-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(image_name(0x1234));
        let mut w = cryo_image::writer::ImageWriter::create(&p, Some("TCP_STREAM")).unwrap();
        write(&mut w, &s).unwrap();
        w.finish().unwrap();
        let data = std::fs::read(&p).unwrap();
        assert_eq!(parse("x", &data, TCP_ESTABLISHED).unwrap(), s);
        let e = parse("x", &data[..data.len() - 1], TCP_ESTABLISHED).unwrap_err();
        assert!(e.contains("x:") && e.contains("queues"), "{e}");
        let e = parse("x", &data, TCP_SYN_RECV).unwrap_err();
        assert!(e.contains("SYN_RECV"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
