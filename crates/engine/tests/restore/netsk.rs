//! Netlink and packet sockets, dumped and restored in a network namespace
//! of the test's own; the socket families and states cryo refuses.

use super::*;

/// Debian's crit decodes files.img; returns its JSON.
fn debian_crit_files(img: &Path) -> String {
    let out = Command::new("/usr/bin/crit")
        .args(["decode", "-i"])
        .arg(img.join("files.img"))
        .output()
        .expect("Debian's crit (/usr/bin/crit)");
    assert!(
        out.status.success(),
        "crit decode files.img: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// tests/progs/netlinksk.c dumped and restored twice in a fresh network
/// namespace: after each restore the NETLINK_ROUTE monitor keeps its port
/// id and groups and receives the RTM_NEWADDR notification of an address
/// the program adds, the second socket keeps its explicit port id, its
/// NETLINK_ADD_MEMBERSHIP group, its connection, O_NONBLOCK, SO_RCVBUF and
/// its BPF filter, and the unbound NETLINK_GENERIC socket stays unbound and
/// answers a request. Debian's crit decodes the entries.
#[test]
fn netlink_sockets_keep_ports_groups_and_get_notifications_twice() {
    let prog = build_prog("netlinksk");
    dump_restore_cmd_twice_in(
        true,
        &format!("{} /tmp/anchor", prog.display()),
        "netlinksk.ready",
        "",
        "",
        |ns, pid, round| {
            if round == 1 {
                let s = debian_crit_files(&ns.anchor("img"));
                assert_eq!(s.matches("\"NETLINKSK\"").count(), 3, "{s}");
                assert!(s.contains("\"portid\": 2046820353"), "{s}");
                assert!(s.contains("\"protocol\": 16"), "{s}");
                assert!(s.contains("\"so_filter\""), "{s}");
            }
            let v = ns.ask(pid, "netlinksk.verify", "netlinksk=");
            assert_eq!(v.trim(), "netlinksk=ok", "round {round}");
        },
    );
}

/// tests/progs/packetsk.c dumped and restored twice in a fresh network
/// namespace: the ETH_P_IP socket bound to lo keeps its binding,
/// PACKET_AUXDATA, its promiscuous membership and its BPF filter (TCP
/// traffic is dropped, a UDP datagram sent after restore arrives with its
/// aux data); the ETH_P_ALL socket keeps TPACKET_V2, PACKET_RESERVE and its
/// fanout group and sees the traffic. Debian's crit decodes the entries.
#[test]
fn packet_sockets_keep_binding_options_filter_and_receive_twice() {
    let prog = build_prog("packetsk");
    dump_restore_cmd_twice_in(
        true,
        &format!("{} /tmp/anchor", prog.display()),
        "packetsk.ready",
        "",
        "",
        |ns, pid, round| {
            if round == 1 {
                let s = debian_crit_files(&ns.anchor("img"));
                assert_eq!(s.matches("\"PACKETSK\"").count(), 2, "{s}");
                assert!(s.contains("\"aux_data\": true") && s.contains("\"mclist\""), "{s}");
                assert!(s.contains("\"fanout\": 42,"), "{s}"); // group 42, PACKET_FANOUT_HASH (0)
            }
            let v = ns.ask(pid, "packetsk.verify", "packetsk=");
            assert_eq!(v.trim(), "packetsk=ok", "round {round}");
        },
    );
}

/// Sockets cryo does not restore (vsock, MPTCP over IPv4 and IPv6, raw IPv4
/// and IPv6, ICMP and ICMPv6 "ping" sockets, AF_XDP, a netlink
/// socket with an unread answer queued, a packet socket with a mapped
/// ring) are refused naming pid, fd and what they are, before anything is
/// written; the program keeps its socket as it was (the queued answer too).
#[test]
fn other_socket_families_and_states_are_refused_naming_pid_and_fd() {
    let prog = build_prog("skrefuse");
    for (mode, why) in [
        ("vsock", "family AF_VSOCK"),
        ("mptcp", "MPTCP"),
        ("raw", "raw inet (IPv4) socket"),
        ("raw6", "raw inet6 (IPv6) socket"),
        ("icmp", "inet (IPv4) socket of type 2, ICMP: not supported"),
        ("icmp6", "inet6 (IPv6) socket of type 2, ICMPv6: not supported"),
        ("mptcp6", "inet6 (IPv6) socket of type 1, MPTCP"),
        ("xdp", "family AF_XDP"),
        ("nlqueue", "messages are queued"),
        ("ring", "its ring is mapped"),
    ] {
        let script = format!(
            "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; \
             exec unshare --net sh -c 'ip link set lo up; sysctl -qw net.ipv4.ping_group_range=\"0 0\"; cd /tmp/anchor; \
             {} /tmp/anchor {mode} </dev/null >/dev/null 2>&1 & P=$!; echo $P > .pid; \
             while [ ! -s skrefuse.ready ]; do sleep 0.02; done; mkdir img; \
             {CRYO} dump -t $P -D img 2>.dump-err; echo $? > .dump-rc; exec sleep 100000'",
            prog.display()
        );
        let ns = Ns::start(&script);
        let rc = ns.wait_status(".dump-rc", "\n");
        let err = std::fs::read_to_string(ns.anchor(".dump-err")).unwrap();
        let pid: i32 = std::fs::read_to_string(ns.anchor(".pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_ne!(rc.trim(), "0", "{mode}: the dump did not fail");
        assert!(
            err.contains(why) && err.contains(&format!("pid {pid} fd 3 (socket:[")),
            "{mode}: {err}"
        );
        let left: Vec<_> = std::fs::read_dir(ns.anchor("img")).unwrap().collect();
        assert!(left.is_empty(), "{mode}: images written: {left:?}");
        let v = ns.ask(pid, "skrefuse.verify", "\n");
        assert_eq!(v.trim(), "ok", "{mode}: the socket changed");
    }
}
