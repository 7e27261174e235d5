//! Established TCP connections: the TCP_REPAIR dump and restore of
//! files::tcp and the network lock (netlock), each run in a network
//! namespace of its own (a thread that unshared CLONE_NEWNET: its sockets
//! and the nft/iptables it runs live there, nothing touches the host).

use super::*;
use common::pattern;
use cryo_engine::files::netlock::{self, Lock, Method};
use cryo_engine::files::tcp;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd};

/// Run `f` on a thread in a fresh network namespace with lo up.
fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        let st = Command::new("ip").args(["link", "set", "lo", "up"]).status().unwrap();
        assert!(st.success());
        f()
    })
    .join()
    .unwrap()
}

fn nft_ruleset() -> String {
    let o = Command::new("nft").args(["list", "ruleset"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn nft(script: &str) {
    let mut c = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "nft {script}");
}

fn ipt_rules() -> String {
    let o = Command::new("iptables").args(["-w", "-S"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn setopt(fd: i32, level: i32, name: i32, v: i32) {
    cryo_engine::sys::sockets::setsockopt_int(fd, level, name, v).unwrap();
}

/// A connected pair on 127.0.0.1 (the client with a small receive window)
/// with `inq` bytes at the server it has not read. Returns (client, server).
fn pair(inq: usize) -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let c = cryo_engine::sys::tcp::tcp_socket(libc::AF_INET).unwrap();
    setopt(c.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 4096);
    let c = connect_v4(c, port);
    let (s, _) = l.accept().unwrap();
    setopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, 65536);
    let mut cc = &c;
    cc.write_all(&pattern(inq, 1)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    (c, s)
}

/// Fill the server's send queue (nonblocking writes): what it took.
fn fill(s: &TcpStream) -> Vec<u8> {
    s.set_nonblocking(true).unwrap();
    let out = pattern(1 << 20, 2);
    let mut n = 0;
    let mut ss = s;
    while let Ok(k) = ss.write(&out[n..]) {
        n += k;
    }
    s.set_nonblocking(false).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    out[..n].to_vec()
}

/// A pair with both queues of the server loaded: `inq` bytes unread, and
/// a full send queue. Returns (client, server, what the server wrote).
fn loaded_pair(inq: usize) -> (TcpStream, TcpStream, Vec<u8>) {
    let (c, s) = pair(inq);
    let w = fill(&s);
    (c, s, w)
}

/// connect(2) a fresh socket to 127.0.0.1:port and make it a TcpStream.
fn connect_v4(fd: std::os::fd::OwnedFd, port: u16) -> TcpStream {
    let ia = cryo_engine::sys::tcp::InetAddr {
        family: libc::AF_INET,
        addr: [u32::from_ne_bytes([127, 0, 0, 1]), 0, 0, 0],
        port,
    };
    cryo_engine::sys::tcp::inet_connect(fd.as_raw_fd(), &ia).unwrap();
    TcpStream::from(fd)
}

fn read_exact_timeout(s: &TcpStream, n: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; n];
    let mut r = s;
    r.read_exact(&mut buf).unwrap();
    buf
}

/// The server end of a connection with both queues loaded is dumped in
/// repair mode under the nftables lock, closed (silently), restored into a
/// fresh socket and let go: the client reads every byte the server had
/// written (sent, unacknowledged and never sent), the restored server
/// reads what the client had written, both exchange more, and no rule is
/// left once the lock is released.
#[test]
fn tcp_repair_moves_a_connection_with_both_queues() {
    in_netns(|| {
        let (c, s) = pair(3000);
        let conn = tcp::Conn::of(s.as_raw_fd()).unwrap();
        // The server's segments are lost on the way in (a drop at input,
        // after the server sent them): what the client's window allows is
        // sent and never acknowledged, the rest waits unsent.
        nft(&format!(
            "add table inet lossy\nadd chain inet lossy input {{ type filter hook input priority -10; }}\n\
             add rule inet lossy input tcp sport {} drop\n",
            conn.local.port
        ));
        let written = fill(&s);
        let lock = Lock::take(Method::Nftables, "0123456789abcdef-0123456789", &[conn]).unwrap();
        nft("delete table inet lossy\n");
        assert!(
            nft_ruleset().contains("CRIU-0123456789abcdef-0123"),
            "{}",
            nft_ruleset()
        );
        tcp::pause(s.as_raw_fd()).unwrap();
        let st = tcp::save(s.as_raw_fd()).unwrap();
        assert_eq!(st.state, tcp::TCP_ESTABLISHED);
        assert_eq!(st.inq, pattern(3000, 1));
        let unsent = st.entry.unsq_len.unwrap() as usize;
        assert!(
            unsent > 0 && st.outq.len() > unsent,
            "outq {} unsent {unsent}",
            st.outq.len()
        );
        assert_eq!(&written[written.len() - st.outq.len()..], &st.outq[..]);
        // Closed in repair mode: the client sees nothing.
        drop(s);
        let fd = cryo_engine::sys::tcp::tcp_socket(libc::AF_INET).unwrap();
        setopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
        tcp::restore(fd.as_raw_fd(), &conn, &st).unwrap();
        tcp::finish(fd.as_raw_fd()).unwrap();
        lock.release().unwrap();
        assert!(!nft_ruleset().contains("CRIU-"), "{}", nft_ruleset());
        let s = TcpStream::from(fd);
        assert_eq!(read_exact_timeout(&s, 3000), pattern(3000, 1));
        assert_eq!(read_exact_timeout(&c, written.len()), written);
        let (mut cw, mut sw) = (&c, &s);
        cw.write_all(b"more from the client").unwrap();
        sw.write_all(b"more from the server").unwrap();
        assert_eq!(read_exact_timeout(&s, 20), b"more from the client");
        assert_eq!(read_exact_timeout(&c, 20), b"more from the server");
    });
}

/// Half-closed connections: the server shut its writing side (FIN_WAIT2
/// once the client acks) or the client did (CLOSE_WAIT at the server); the
/// restored server is in the same state, reads or writes what it still may,
/// and the client sees the end of stream exactly where it was.
#[test]
fn tcp_repair_restores_half_closed_states() {
    in_netns(|| {
        for (server_shuts, want) in [(true, tcp::TCP_FIN_WAIT2), (false, tcp::TCP_CLOSE_WAIT)] {
            let (c, s, written) = loaded_pair(100);
            // Drain so that the FIN gets acknowledged.
            assert_eq!(read_exact_timeout(&c, written.len()), written);
            if server_shuts {
                s.shutdown(std::net::Shutdown::Write).unwrap();
            } else {
                c.shutdown(std::net::Shutdown::Write).unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
            let conn = tcp::Conn::of(s.as_raw_fd()).unwrap();
            let lock = Lock::take(Method::Iptables, "half", &[conn]).unwrap();
            tcp::pause(s.as_raw_fd()).unwrap();
            let st = tcp::save(s.as_raw_fd()).unwrap();
            assert_eq!(st.state, want);
            drop(s);
            let fd = cryo_engine::sys::tcp::tcp_socket(libc::AF_INET).unwrap();
            setopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
            tcp::restore(fd.as_raw_fd(), &conn, &st).unwrap();
            tcp::finish(fd.as_raw_fd()).unwrap();
            lock.release().unwrap();
            assert!(!ipt_rules().contains("0xc114"), "{}", ipt_rules());
            let s = TcpStream::from(fd);
            let mut b = [0u8; 1];
            let info = {
                let mut v = [0u8; 8];
                cryo_engine::sys::tcp::getsockopt_bytes(s.as_raw_fd(), libc::SOL_TCP, libc::TCP_INFO, &mut v).unwrap();
                v[0]
            };
            assert_eq!(info, want, "restored state");
            assert_eq!(read_exact_timeout(&s, 100), pattern(100, 1));
            if server_shuts {
                // The client still sees the end of the server's stream, and can write.
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                assert_eq!((&c).read(&mut b).unwrap(), 0);
                (&c).write_all(b"late").unwrap();
                assert_eq!(read_exact_timeout(&s, 4), b"late");
            } else {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                assert_eq!((&s).read(&mut b).unwrap(), 0, "EOF after the queue");
                (&s).write_all(b"reply").unwrap();
                assert_eq!(read_exact_timeout(&c, 5), b"reply");
            }
            let _ = s.into_raw_fd();
        }
    });
}

/// Locks are scoped to the connections and go away: iptables rules as
/// CRIU writes them (INPUT and OUTPUT), an nftables table named after the
/// run id; a dropped lock (a failed dump) removes its rules; one kept past
/// the dump is removed by [`netlock::unlock`] as a restore does.
#[test]
fn network_locks_cover_the_connection_and_never_stay() {
    in_netns(|| {
        let (c, s) = pair(10);
        let conn = tcp::Conn::of(s.as_raw_fd()).unwrap();
        let l = Lock::take(Method::Iptables, "x", &[conn]).unwrap();
        let r = ipt_rules();
        let port = conn.local.port;
        assert!(
            r.contains(&format!(
                "-A INPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport {} --dport {port} -j DROP",
                conn.peer.port
            )),
            "{r}"
        );
        assert_eq!(r.matches("0xc114").count(), 2, "{r}");
        drop(l);
        assert!(!ipt_rules().contains("0xc114"), "{}", ipt_rules());
        let l = Lock::take(Method::Nftables, "run-1", &[conn]).unwrap();
        l.keep();
        assert!(nft_ruleset().contains("CRIU-run-1"));
        netlock::unlock(Method::Nftables, "run-1", &[conn]).unwrap();
        assert!(!nft_ruleset().contains("CRIU-"), "{}", nft_ruleset());
        let l = Lock::take(Method::Iptables, "x", &[conn]).unwrap();
        l.keep();
        netlock::unlock(Method::Iptables, "x", &[conn]).unwrap();
        assert!(!ipt_rules().contains("0xc114"), "{}", ipt_rules());
        // While locked, the peer's packets do not get through (and no reset comes back).
        let l = Lock::take(Method::Nftables, "run-2", &[conn]).unwrap();
        (&c).write_all(b"held").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            cryo_engine::sys::tcp::inq(s.as_raw_fd()).unwrap(),
            10,
            "a locked packet arrived"
        );
        l.release().unwrap();
        assert_eq!(read_exact_timeout(&s, 14)[10..], *b"held");
    });
}

/// The script of the veth tests: pid 1 of a fresh PID + mount namespace
/// makes network namespace A (the server's, where cryo runs) and B (the
/// peer's), joined by a veth pair 10.77.0.1 <-> 10.77.0.2; the peer
/// (tests/progs/tcppair.c) is never dumped. `steps` runs in A with $P the
/// server's pid and $PAIR the program.
fn veth_script(steps: &str) -> String {
    let pair = build_prog("tcppair");
    let d = "/tmp/anchor";
    format!(
        "mkdir -p {d}; mount -t tmpfs cryo-test {d}; cd {d}; export PAIR={pair}; \
         exec unshare --net sh -c '\
           ip link set lo up; \
           unshare --net sh -c \"echo \\$\\$ > {d}/b.pid; ip link set lo up; \
             while [ ! -e {d}/b.go ]; do sleep 0.02; done; \
             ip addr add 10.77.0.2/24 dev vb; ip link set vb up; \
             exec $PAIR peer {d} 10.77.0.1 7001\" >{d}/peer.out 2>&1 & \
           while [ ! -s {d}/b.pid ]; do sleep 0.02; done; \
           ip link add va type veth peer name vb netns $(cat {d}/b.pid); \
           ip addr add 10.77.0.1/24 dev va; ip link set va up; \
           $PAIR server {d} 10.77.0.1 7001 >{d}/srv.out 2>&1 </dev/null & P=$!; \
           while [ ! -e {d}/srv.listening ]; do sleep 0.02; done; touch {d}/b.go; \
           while [ ! -s {d}/srv.ready ]; do sleep 0.02; done; \
           {steps}; \
           echo done > {d}/steps.done; exec sleep 100000'",
        pair = pair.display()
    )
}

fn wait_for(ns: &Ns, file: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(s) = std::fs::read_to_string(ns.anchor(file)) {
            if s.ends_with('\n') {
                return s;
            }
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = ["srv.out", "peer.out", ".dump-err", ".rst-err", "steps.log"]
                .iter()
                .map(|f| format!("{f}: {}", std::fs::read_to_string(ns.anchor(f)).unwrap_or_default()))
                .collect();
            panic!("{file} did not appear: {}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An established connection across a veth pair, its peer in another
/// network namespace outside the dumped tree, with data queued both ways
/// at dump time (5000 bytes the server has not read; a send queue holding
/// sent-but-unacknowledged and never-sent bytes). First cryo refuses it
/// without --tcp-established, naming the connection; a dump failing right
/// after the network lock (CRYO_FAULT=after-netlock) leaves no rule and
/// the server running; a dump with --leave-running leaves it running with
/// the connection out of repair mode and no rule; the real dump kills it and leaves the lock (the
/// peer would otherwise get resets); a restore failing in its task leaves
/// no rule and no process; the real restore brings the server back and
/// removes the lock. Then every byte arrives intact both ways and the two
/// exchange more: the peer never saw a reset. The images decode with
/// Debian's crit.
#[test]
fn established_connection_across_veth_survives_dump_and_restore() {
    let d = "/tmp/anchor";
    let steps = format!(
        "rules() {{ nft list ruleset | grep -c CRIU; }}; \
         mkdir {d}/img; \
         {CRYO} dump -t $P -D {d}/img > {d}/refused.out 2>&1; echo $? > {d}/refused.rc; \
         CRYO_FAULT=after-netlock {CRYO} dump --tcp-established -t $P -D {d}/img > {d}/fault.out 2>&1; \
         echo $? > {d}/fault.rc; rules > {d}/fault.rules; kill -0 $P; echo $? > {d}/fault.alive; \
         mkdir {d}/imgR; {CRYO} dump --tcp-established -R -t $P -D {d}/imgR > {d}/lr.out 2>&1; echo $? > {d}/lr.rc; \
         rules > {d}/lr.rules; kill -0 $P; echo $? > {d}/lr.alive; \
         {CRYO} dump --tcp-established -t $P -D {d}/img 2>{d}/.dump-err; echo $? > {d}/dump.rc; \
         wait $P; rules > {d}/dumped.rules; \
         CRYO_FAULT=task-error:$P {CRYO} restore --tcp-established -D {d}/img -d 2>{d}/rfault.out; \
         echo $? > {d}/rfault.rc; rules > {d}/rfault.rules; kill -0 $P 2>/dev/null; echo $? > {d}/rfault.alive; \
         {CRYO} restore --tcp-established -D {d}/img -d 2>{d}/.rst-err; echo $? > {d}/rst.rc; \
         rules > {d}/rst.rules; touch {d}/go"
    );
    let ns = Ns::start(&veth_script(&steps));
    wait_for(&ns, "steps.done", 120);
    let rd = |f: &str| {
        std::fs::read_to_string(ns.anchor(f))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert_ne!(rd("refused.rc"), "0");
    let r = rd("refused.out");
    assert!(
        r.contains("10.77.0.1:7001 -> 10.77.0.2:") && r.contains("--tcp-established"),
        "{r}"
    );
    assert_ne!(rd("fault.rc"), "0", "{}", rd("fault.out"));
    assert!(rd("fault.out").contains("after-netlock"), "{}", rd("fault.out"));
    assert_eq!(rd("fault.rules"), "0", "a failed dump left a lock behind");
    assert_eq!(rd("fault.alive"), "0", "the server died in a failed dump");
    assert_eq!(rd("lr.rc"), "0", "--leave-running: {}", rd("lr.out"));
    assert_eq!(rd("lr.rules"), "0", "--leave-running left the lock");
    assert_eq!(rd("lr.alive"), "0", "--leave-running: the server is gone");
    assert_eq!(rd("dump.rc"), "0", "dump: {}", rd(".dump-err"));
    assert_ne!(rd("dumped.rules"), "0", "no lock between dump and restore");
    assert_ne!(rd("rfault.rc"), "0", "{}", rd("rfault.out"));
    assert_eq!(rd("rfault.rules"), "0", "a failed restore left a lock behind");
    assert_ne!(rd("rfault.alive"), "0", "a failed restore left the server");
    assert_eq!(rd("rst.rc"), "0", "restore: {}", rd(".rst-err"));
    assert_eq!(rd("rst.rules"), "0", "the restore left the lock");
    assert_eq!(wait_for(&ns, "srv.result", 60).trim(), "ok");
    assert_eq!(wait_for(&ns, "peer.result", 60).trim(), "ok");
    // The stream image: both queues, and it decodes with Debian's crit.
    let img = ns.anchor("img");
    let streams: Vec<_> = std::fs::read_dir(&img)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("tcp-stream-"))
        .collect();
    assert_eq!(streams.len(), 1);
    for f in ["files.img".into(), streams[0].path()] {
        let out = Command::new("/usr/bin/crit")
            .args(["decode", "-i"])
            .arg(img.join(f))
            .output()
            .unwrap();
        assert!(out.status.success(), "crit: {}", String::from_utf8_lossy(&out.stderr));
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(s.contains("inq_len") || s.contains("INETSK"), "{s}");
        if s.contains("inq_len") {
            assert!(s.contains("\"inq_len\": 5000"), "{s}");
        }
    }
}

/// CRIU 4.2's dump of a process holding a listener and both ends of an
/// established loopback connection with data queued both ways (fixture
/// tcp_est, with CRIU's iptables lock method) restores with cryo in a
/// fresh network namespace, and the program checks its queues and does a
/// ping-pong over the connection itself.
#[test]
fn criu_tcp_est_restores_and_checks_itself() {
    build_fixture("tcp_est");
    if refused_by_this_cpu("tcp_est") {
        return;
    }
    let dir = cryo_testsupport::fixtures().join("tcp_est/images");
    let ns = Ns::start(&format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; \
         unshare --net sh -c 'ip link set lo up; {CRYO} restore --tcp-established -D {} -d 2>/tmp/anchor/.cryo-err; \
         echo $? > /tmp/anchor/.cryo-rc'; exec sleep 100000",
        dir.display()
    ));
    let (rc, err) = ns.cryo_result();
    assert_eq!(rc, 0, "cryo restore of tcp_est failed: {err}");
    let pid = pstree_pids("tcp_est")[0];
    ns.wait_status("tcp_est.status", &format!("pid={pid}"));
    let v = ns.ask(pid, "tcp_est.verify.status", "queued+pingpong=");
    assert!(v.contains("queued+pingpong=ok"), "{v}");
}

/// The loopback address of `family`.
fn lo(family: i32, port: u16) -> cryo_engine::sys::tcp::InetAddr {
    let mut addr = [0u32; 4];
    if family == libc::AF_INET6 {
        addr[3] = u32::from_ne_bytes([0, 0, 0, 1]);
    } else {
        addr[0] = u32::from_ne_bytes([127, 0, 0, 1]);
    }
    cryo_engine::sys::tcp::InetAddr { family, addr, port }
}

/// A connected pair on the loopback address of `family`, `inq` bytes
/// queued at the server. Returns (client, server).
fn pair_of(family: i32, inq: usize) -> (TcpStream, TcpStream) {
    let l = if family == libc::AF_INET6 {
        TcpListener::bind("[::1]:0").unwrap()
    } else {
        TcpListener::bind("127.0.0.1:0").unwrap()
    };
    let port = l.local_addr().unwrap().port();
    let c = cryo_engine::sys::tcp::tcp_socket(family).unwrap();
    cryo_engine::sys::tcp::inet_connect(c.as_raw_fd(), &lo(family, port)).unwrap();
    let c = TcpStream::from(c);
    let (s, _) = l.accept().unwrap();
    (&c).write_all(&pattern(inq, 1)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    (c, s)
}

fn tcp_state(fd: i32) -> u8 {
    let mut v = [0u8; 8];
    cryo_engine::sys::tcp::getsockopt_bytes(fd, libc::SOL_TCP, libc::TCP_INFO, &mut v).unwrap();
    v[0]
}

fn so_error(fd: i32) -> i32 {
    cryo_engine::sys::sockets::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR).unwrap()
}

/// Close with SO_LINGER {on, 0}: the peer gets a reset.
fn abort(s: TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a linger of ours with its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
    drop(s);
    std::thread::sleep(Duration::from_millis(100));
}

/// Dump `s` (a connection in repair mode, under a lock), close it, restore
/// it into a fresh socket and let it go, as a dump and restore do.
fn move_connection(s: TcpStream, family: i32, reset: Option<i32>) -> (TcpStream, tcp::Stream) {
    let conn = tcp::Conn {
        local: cryo_engine::sys::tcp::inet_name(s.as_raw_fd(), false).unwrap(),
        peer: cryo_engine::sys::tcp::inet_peer_any(s.as_raw_fd(), family).unwrap(),
    };
    let lock = Lock::take(Method::Nftables, "moving", &[conn]).unwrap();
    tcp::pause(s.as_raw_fd()).unwrap();
    let mut st = tcp::save(s.as_raw_fd()).unwrap();
    st.reset = reset;
    drop(s);
    let fd = cryo_engine::sys::tcp::tcp_socket(family).unwrap();
    setopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
    tcp::restore(fd.as_raw_fd(), &conn, &st).unwrap();
    tcp::finish(fd.as_raw_fd()).unwrap();
    lock.release().unwrap();
    assert!(!nft_ruleset().contains("CRIU-"), "{}", nft_ruleset());
    (TcpStream::from(fd), st)
}

/// Connections in CLOSE with their peer (zdtm's socket-tcp-reseted), over
/// IPv4 and IPv6: reset while established (ECONNRESET pending), reset
/// after the peer's FIN (EPIPE pending), and closed by both sides (no
/// error). Each is dumped with its receive queue and comes back in CLOSE
/// with the same bytes to read, the same pending error (SO_ERROR) and the
/// same end: reads end, writes fail.
#[test]
fn tcp_repair_restores_reset_and_closed_connections() {
    in_netns(|| {
        for family in [libc::AF_INET, libc::AF_INET6] {
            for case in ["reset", "reset-after-fin", "closed"] {
                let (c, s) = pair_of(family, 100);
                let want = match case {
                    "reset" => {
                        abort(c);
                        libc::ECONNRESET
                    }
                    "reset-after-fin" => {
                        c.shutdown(std::net::Shutdown::Write).unwrap();
                        std::thread::sleep(Duration::from_millis(50));
                        abort(c);
                        libc::EPIPE
                    }
                    _ => {
                        c.shutdown(std::net::Shutdown::Write).unwrap();
                        std::thread::sleep(Duration::from_millis(50));
                        s.shutdown(std::net::Shutdown::Write).unwrap();
                        std::thread::sleep(Duration::from_millis(100));
                        drop(c);
                        0
                    }
                };
                let what = format!("family {family}, {case}");
                assert_eq!(tcp_state(s.as_raw_fd()), tcp::TCP_CLOSE, "{what}");
                let pending =
                    cryo_engine::sys::sockets::poll_now(s.as_raw_fd(), libc::POLLERR).unwrap() & libc::POLLERR;
                assert_eq!(pending != 0, want != 0, "{what}: POLLERR");
                // What a dump reads (and so clears).
                let err = so_error(s.as_raw_fd());
                assert_eq!(err, want, "{what}");
                let (s, st) = move_connection(s, family, (err != 0).then_some(err));
                assert_eq!(st.state, tcp::TCP_CLOSE, "{what}");
                assert_eq!(st.inq, pattern(100, 1), "{what}");
                assert_eq!(tcp_state(s.as_raw_fd()), tcp::TCP_CLOSE, "{what}: restored state");
                let mut buf = vec![0u8; 200];
                assert_eq!((&s).read(&mut buf).unwrap(), 100, "{what}");
                assert_eq!(&buf[..100], &pattern(100, 1)[..], "{what}");
                assert_eq!(so_error(s.as_raw_fd()), want, "{what}: the pending error");
                assert_eq!((&s).read(&mut buf).unwrap(), 0, "{what}: end of stream");
                let e = (&s).write(b"x").unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::EPIPE), "{what}: {e}");
            }
        }
    });
}

/// IPv6 half-closed connections (the server's FIN acknowledged, or the
/// client's received): their restore sends the peer's segments as IPv6
/// packets built by cryo; the restored server is in the same state and the
/// client sees the end of stream where it was.
#[test]
fn tcp_repair_restores_half_closed_ipv6_connections() {
    in_netns(|| {
        for (server_shuts, want) in [(true, tcp::TCP_FIN_WAIT2), (false, tcp::TCP_CLOSE_WAIT)] {
            let (c, s) = pair_of(libc::AF_INET6, 100);
            if server_shuts {
                s.shutdown(std::net::Shutdown::Write).unwrap();
            } else {
                c.shutdown(std::net::Shutdown::Write).unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
            let (s, st) = move_connection(s, libc::AF_INET6, None);
            assert_eq!(st.state, want);
            assert_eq!(tcp_state(s.as_raw_fd()), want, "restored state");
            assert_eq!(read_exact_timeout(&s, 100), pattern(100, 1));
            let mut b = [0u8; 1];
            if server_shuts {
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                assert_eq!((&c).read(&mut b).unwrap(), 0);
                (&c).write_all(b"late").unwrap();
                assert_eq!(read_exact_timeout(&s, 4), b"late");
            } else {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                assert_eq!((&s).read(&mut b).unwrap(), 0, "EOF after the queue");
                (&s).write_all(b"reply").unwrap();
                assert_eq!(read_exact_timeout(&c, 5), b"reply");
            }
        }
    });
}

/// A connect in progress (SYN_SENT: the listener's input drops the SYN) is
/// dumped and restored as CRIU 4.2 does; once the drop goes, the restored
/// socket's SYN gets through, the listener accepts and data flows.
#[test]
fn tcp_repair_restores_a_connect_in_progress() {
    in_netns(|| {
        for family in [libc::AF_INET, libc::AF_INET6] {
            let l = if family == libc::AF_INET6 {
                TcpListener::bind("[::1]:0").unwrap()
            } else {
                TcpListener::bind("127.0.0.1:0").unwrap()
            };
            let port = l.local_addr().unwrap().port();
            nft(&format!(
                "add table inet syndrop\nadd chain inet syndrop input {{ type filter hook input priority -10; }}\n\
                 add rule inet syndrop input tcp dport {port} drop\n"
            ));
            let c = cryo_engine::sys::tcp::tcp_socket(family).unwrap();
            cryo_engine::sys::add_fl(c.as_raw_fd(), libc::O_NONBLOCK).unwrap();
            let e = cryo_engine::sys::tcp::inet_connect(c.as_raw_fd(), &lo(family, port)).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINPROGRESS));
            let c = TcpStream::from(c);
            assert_eq!(tcp_state(c.as_raw_fd()), tcp::TCP_SYN_SENT);
            let (c, st) = move_connection(c, family, None);
            assert_eq!(st.state, tcp::TCP_SYN_SENT);
            assert_eq!(tcp_state(c.as_raw_fd()), tcp::TCP_SYN_SENT, "restored state");
            assert_eq!(
                cryo_engine::sys::restore::get_fl(c.as_raw_fd()).unwrap() & libc::O_NONBLOCK,
                0,
                "the O_NONBLOCK of the connect is taken off again (the file's flags come later)"
            );
            nft("delete table inet syndrop\n");
            l.set_nonblocking(false).unwrap();
            let (s, _) = l.accept().unwrap();
            c.set_nonblocking(false).unwrap();
            (&c).write_all(b"hello").unwrap();
            assert_eq!(read_exact_timeout(&s, 5), b"hello");
            (&s).write_all(b"back").unwrap();
            assert_eq!(read_exact_timeout(&c, 4), b"back");
        }
    });
}
