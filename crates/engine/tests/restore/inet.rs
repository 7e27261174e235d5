//! Inet sockets, each test in network namespaces of its own (loopback
//! only): TCP listeners with their options and backlogs, a bound and an
//! unbound TCP socket, UDP pairs (IPv4 and IPv6) connected both ways with
//! datagrams queued, python3's http.server answering after restore, a JVM.

use super::*;

/// tests/progs/inetsk.c dumped and restored twice in a fresh network
/// namespace: after each restore the program finds (getsockopt from
/// itself) every option of its listeners (SO_REUSEADDR/REUSEPORT,
/// TCP_NODELAY, keepalive with TCP_KEEPIDLE/INTVL/CNT, buffer sizes,
/// IP_TOS, IPV6_V6ONLY, SO_LINGER, O_NONBLOCK, the backlog through
/// TCP_INFO), its bound and unbound TCP sockets, the datagrams queued both
/// ways on two connected UDP pairs (IPv4, IPv6) byte for byte with their
/// boundaries (an empty one included), new datagrams both ways, an
/// unconnected UDP socket receiving, and new connections accepted by both
/// listeners. The images decode with Debian's crit.
#[test]
fn inet_sockets_keep_options_queues_and_take_connections_twice() {
    let prog = build_prog("inetsk");
    dump_restore_cmd_twice_net(
        &format!("{} /tmp/anchor", prog.display()),
        "inetsk.ready",
        "",
        |ns, pid, round| {
            if round == 1 {
                let img = ns.anchor("img");
                for f in ["files.img", "sk-queues.img"] {
                    let out = Command::new("/usr/bin/crit")
                        .args(["decode", "-i"])
                        .arg(img.join(f))
                        .output()
                        .expect("Debian's crit (/usr/bin/crit)");
                    assert!(
                        out.status.success(),
                        "crit decode {f}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let s = String::from_utf8_lossy(&out.stdout);
                    if f == "files.img" {
                        assert_eq!(s.matches("\"INETSK\"").count(), 9, "{s}");
                        assert!(s.contains("\"TCP_LISTEN\"") || s.contains("\"state\": 10"), "{s}");
                    } else {
                        // 4 datagrams queued on each of the 4 UDP sockets.
                        assert_eq!(s.matches("id_for").count(), 16, "{s}");
                    }
                }
            }
            let v = ns.ask(pid, "inetsk.verify", "inetsk=");
            assert_eq!(v.trim(), "inetsk=ok", "round {round}");
        },
    );
}

/// Run `script` (after the namespace's /tmp/anchor and loopback are up) in
/// fresh PID, mount and network namespaces; wait for /tmp/anchor/`done`.
fn run_net(script: &str, done: &str, secs: u64) -> (Ns, String) {
    let ns = Ns::start_net(&format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; ip link set lo up; {script}; \
         exec sleep 100000"
    ));
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(s) = std::fs::read_to_string(ns.anchor(done)) {
            if s.ends_with('\n') {
                return (ns, s);
            }
        }
        let err = std::fs::read_to_string(ns.anchor(".dump-err")).unwrap_or_default()
            + &std::fs::read_to_string(ns.anchor(".cryo-err")).unwrap_or_default();
        assert!(Instant::now() < deadline, "{done} not written in {secs} s: {err}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const PY: &str = "/usr/bin/python3";

/// `python3 -m http.server` in a fresh network namespace, dumped after it
/// answered a request, restored, answers the next request with the file's
/// contents.
#[test]
fn python_http_server_answers_after_restore() {
    let get = |path: &str, out: &str| {
        format!(
            "{PY} -c 'import sys,urllib.request; sys.stdout.write(urllib.request.urlopen(\"http://127.0.0.1:7480/{path}\", \
             timeout=5).read().decode())' > {out} 2>&1"
        )
    };
    let script = format!(
        "mkdir www; echo hello-from-cryo > www/hello.txt; \
         {PY} -m http.server 7480 --bind 127.0.0.1 --directory /tmp/anchor/www >/dev/null 2>&1 </dev/null & P=$!; \
         for i in $(seq 200); do {} && break; sleep 0.05; done; \
         mkdir img; {CRYO} dump -t $P -D img 2>.dump-err; echo $? > .dump-rc; wait $P; echo $P > .pid; \
         {CRYO} restore -d -D img 2>.cryo-err; echo $? > .cryo-rc; \
         {}; echo $? > .answer-rc",
        get("", ".first"),
        get("hello.txt", ".answer"),
    );
    let (ns, rc) = run_net(&script, ".answer-rc", 90);
    let read = |f: &str| std::fs::read_to_string(ns.anchor(f)).unwrap_or_default();
    assert_eq!(read(".dump-rc").trim(), "0", "dump: {}", read(".dump-err"));
    assert_eq!(read(".cryo-rc").trim(), "0", "restore: {}", read(".cryo-err"));
    assert_eq!(rc.trim(), "0", "request after restore: {}", read(".answer"));
    assert_eq!(read(".answer"), "hello-from-cryo\n");
    let pid: i32 = read(".pid").trim().parse().unwrap();
    assert!(
        ns.inner_pids().contains(&pid),
        "the server is not the restored pid {pid}"
    );
}

/// A JVM (Debian's OpenJDK, `java Count.java`: the source launcher compiles it in memory) counting
/// into a file: dumped (with --file-locks: the JVM holds a flock on its hsperfdata file; it also
/// holds a unix socketpair end whose peer is closed, and 19 threads), restored, and counting on
/// from where it was.
#[test]
fn a_jvm_keeps_counting_after_restore() {
    let java = "import java.nio.file.*;\n\
        public class Count {\n\
          public static void main(String[] a) throws Exception {\n\
            Path out = Paths.get(a[0]), tmp = Paths.get(a[0] + \".tmp\");\n\
            for (long n = 1; ; n++) {\n\
              Files.writeString(tmp, n + \"\\n\");\n\
              Files.move(tmp, out, StandardCopyOption.ATOMIC_MOVE);\n\
              Thread.sleep(10);\n\
            }\n\
          }\n\
        }\n";
    let script = format!(
        "cat > Count.java <<'EOF'\n{java}EOF\n\
         java Count.java /tmp/anchor/count >/tmp/anchor/.java-out 2>&1 </dev/null & P=$!; \
         for i in $(seq 600); do [ \"$(cat count 2>/dev/null)\" -gt 20 ] 2>/dev/null && break; sleep 0.05; done; \
         mkdir img; {CRYO} dump --file-locks -t $P -D img 2>.dump-err; echo $? > .dump-rc; wait $P; \
         cat count > .at-dump; echo $P > .pid; \
         {CRYO} restore -d --file-locks -D img 2>.cryo-err; echo $? > .cryo-rc"
    );
    let (ns, rc) = run_net(&script, ".cryo-rc", 120);
    let read = |f: &str| std::fs::read_to_string(ns.anchor(f)).unwrap_or_default();
    assert_eq!(
        read(".dump-rc").trim(),
        "0",
        "dump: {} {}",
        read(".dump-err"),
        read(".java-out")
    );
    assert_eq!(rc.trim(), "0", "restore: {}", read(".cryo-err"));
    let at_dump: u64 = read(".at-dump").trim().parse().unwrap();
    let pid: i32 = read(".pid").trim().parse().unwrap();
    let count = || read("count").trim().parse::<u64>().unwrap_or(0);
    // The counter goes on from memory: never below what it wrote before the dump.
    let first = count();
    assert!(
        first >= at_dump,
        "counting started again: {first} after {at_dump} at dump"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while count() < at_dump + 20 {
        assert!(
            Instant::now() < deadline,
            "the restored JVM does not count on: {} at dump, {} now",
            at_dump,
            count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ns.inner_pids().contains(&pid), "the JVM is not the restored pid {pid}");
    let c = count();
    std::thread::sleep(Duration::from_millis(300));
    assert!(count() > c, "stopped counting after {c}");
}

/// tests/progs/udpq.c dumped and restored twice: the datagrams queued on
/// unconnected UDP sockets (IPv4 bound to the wildcard with three senders,
/// IPv6 with two; CRIU drops these queues) come back in order from the same
/// senders (cryo.json's `udp_sources`), and the programs' SO_PEEK_OFF on a
/// UDP socket and on unix stream and datagram pairs (cryo.json's
/// `peek_off`) is kept: each MSG_PEEK goes on where it was; a UDP socket's
/// multicast groups (one with an include filter) and IP_MULTICAST_TTL/LOOP
/// (cryo.json's `multicast`) are kept and a datagram to the group arrives;
/// a classic BPF filter is kept (sk_opts' so_filter, as CRIU) and attached
/// after the queue it would have dropped is in.
/// The images decode with Debian's crit.
#[test]
fn unconnected_udp_queues_keep_their_senders_and_peek_offsets_stay() {
    let prog = build_prog("udpq");
    dump_restore_cmd_twice_net(
        &format!("{} /tmp/anchor", prog.display()),
        "udpq.ready",
        "",
        |ns, pid, round| {
            if round == 1 {
                let img = ns.anchor("img");
                let side = std::fs::read_to_string(img.join("cryo.json")).unwrap();
                assert!(
                    side.contains("\"udp_sources\"") && side.contains("127.0.0.2:7502"),
                    "{side}"
                );
                assert!(side.contains("\"peek_off\""), "{side}");
                assert!(side.contains("\"multicast\"") && side.contains("239.7.7.8"), "{side}");
                let out = Command::new("/usr/bin/crit")
                    .args(["decode", "-i"])
                    .arg(img.join("sk-queues.img"))
                    .output()
                    .expect("Debian's crit (/usr/bin/crit)");
                assert!(out.status.success(), "crit: {}", String::from_utf8_lossy(&out.stderr));
                let s = String::from_utf8_lossy(&out.stdout);
                // 3 + 2 datagrams, 1 stream chunk, 2 unix datagrams, 1 behind the filter.
                assert_eq!(s.matches("id_for").count(), 9, "{s}");
            }
            let v = ns.ask(pid, "udpq.verify", "udpq=");
            assert_eq!(v.trim(), "udpq=ok", "round {round}");
        },
    );
}
