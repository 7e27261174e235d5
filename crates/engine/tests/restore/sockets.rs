//! Unix sockets: socketpairs with their queues, shutdown states and
//! options, shared between a parent and its child; listening sockets bound
//! to a path and to an abstract name; CRIU 4.2's own dump of socketpairs.

use super::*;

/// tests/progs/unixsk.c dumped and restored twice: after each restore the
/// queues are there byte for byte with their message boundaries (an empty
/// datagram included), the shutdown and closed-peer states, SO_PASSCRED,
/// SO_RCVBUF, SO_RCVTIMEO and O_NONBLOCK are kept, every pair carries new
/// data both ways, the child (asleep in read at dump) still shares its
/// sockets with the parent, a connection accepted by the path listener
/// keeps its queues both ways and its names, a bound datagram socket keeps
/// the datagrams of a closed client and of a connected one, which still
/// sends to it, and takes new clients, a datagram socket connected to
/// itself keeps its queue and talks to itself, a socket bound to a relative
/// name keeps it, and both listeners accept new connections.
/// The image set decodes with Debian's crit.
#[test]
fn unix_sockets_keep_queues_states_and_sharing_twice() {
    self_check_twice(
        "unixsk",
        "unixsk.ready",
        "unixsk.verify",
        "unixsk=",
        "unixsk=ok",
        |ns, _, round| {
            if round == 1 {
                let img = ns.anchor("img");
                let q = img.join("sk-queues.img");
                assert!(q.exists(), "no sk-queues.img");
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
                        assert_eq!(s.matches("UNIXSK").count(), 20, "{s}");
                        assert!(s.contains("\"name_dir\": \"/tmp/anchor\""), "{s}");
                        assert!(
                            s.contains("\"/tmp/anchor/unixsk.sock\"") && s.contains("\"state\": 10"),
                            "{s}"
                        );
                    } else {
                        // 1 or more reads of the big stream queue, 1 of the small one, 6 datagrams, 5 packets, 4 small queues.
                        assert!(s.matches("id_for").count() >= 20, "{s}");
                    }
                }
            }
        },
    );
}

/// CRIU 4.2's dump of three socketpairs with queued data (fixture
/// unix_pair) restores with cryo and checks its queues itself.
#[test]
fn criu_unix_pair_restores_with_its_queues() {
    let ns = restore_fixture("unix_pair");
    let pid = pstree_pids("unix_pair")[0];
    ns.wait_status("unix_pair.status", &format!("pid={pid}"));
    let v = ns.ask(pid, "unix_pair.verify.status", "queued_data=");
    assert!(v.contains("queued_data=ok"), "{v}");
}
