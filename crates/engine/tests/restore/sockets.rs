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
                            s.contains("\"/tmp/anchor/unixsk.sock=00\"") && s.contains("\"state\": 10"),
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
    let Some(ns) = restore_fixture("unix_pair") else {
        return;
    };
    let pid = pstree_pids("unix_pair")[0];
    ns.wait_status("unix_pair.status", &format!("pid={pid}"));
    let v = ns.ask(pid, "unix_pair.verify.status", "queued_data=");
    assert!(v.contains("queued_data=ok"), "{v}");
}

/// tests/progs/unixsk2.c in `mode`, dumped (with `opts`) and restored
/// twice; after each restore the program checks its sockets itself
/// (`also` runs first, on round 1 with the image set).
fn unixsk2_twice(mode: &str, opts: &str, also: impl Fn(&Ns)) {
    let prog = build_prog("unixsk2");
    dump_restore_cmd_twice_with(
        &format!("{} {mode} /tmp/anchor", prog.display()),
        "unixsk2.ready",
        opts,
        "",
        |ns, pid, round| {
            if round == 1 {
                also(ns);
            }
            let v = ns.ask(pid, "unixsk2.verify", "unixsk2=");
            assert_eq!(v.trim(), "unixsk2=ok", "{mode}, round {round}");
        },
    );
}

/// Debian's crit decodes `file` of the image set; its JSON.
fn crit_json(ns: &Ns, file: &str) -> String {
    let out = Command::new("/usr/bin/crit")
        .args(["decode", "-i"])
        .arg(ns.anchor("img").join(file))
        .output()
        .expect("Debian's crit (/usr/bin/crit)");
    assert!(
        out.status.success(),
        "crit decode {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Files in flight (SCM_RIGHTS) come back in their messages: a pipe end
/// with the pipe's data, a regular file at its offset (same inode, written
/// through), the pipe's other end, which is the very file the program
/// holds too (kcmp), and an eventfd with its count in a stream queue
/// between plain data (the boundaries where the kernel puts them); the
/// sockets pass new fds after restore. The packets carry CRIU's scm
/// entries, which Debian's crit decodes.
#[test]
fn unix_fds_in_flight_come_back_in_their_messages() {
    unixsk2_twice("scm", "", |ns| {
        let q = crit_json(ns, "sk-queues.img");
        assert_eq!(q.matches("\"rights\"").count(), 3, "{q}");
        let f = crit_json(ns, "files.img");
        assert!(
            f.contains("PIPE") && f.contains("EVENTFD") && f.contains("scm.file"),
            "{f}"
        );
    });
}

/// A listener with connections waiting in its backlog (not accepted yet):
/// accept() returns them after restore, each talks to its own client, the
/// connection accepted before the dump keeps its queues both ways, a
/// seqpacket one waits too, and new clients connect.
#[test]
fn unix_backlog_connections_wait_to_be_accepted() {
    unixsk2_twice("backlog", "", |ns| {
        let f = crit_json(ns, "files.img");
        // The two listeners, the accepted pair, the three waiting clients
        // (their peer: the listener's inode, as CRIU writes it).
        assert_eq!(f.matches("UNIXSK").count(), 7, "{f}");
    });
}

/// Sockets bound to a path unlinked since come back bound and unlinked: a
/// listener, a datagram server whose directory is gone too (its queued
/// datagrams kept, its connected client still sending to it), one whose
/// path is now a regular file (left as it is), a relative name; nothing
/// of the restore's is left in the directory.
#[test]
fn unix_sockets_bound_to_unlinked_paths_stay_unlinked() {
    unixsk2_twice("unlinked", "", |ns| {
        let f = crit_json(ns, "files.img");
        assert_eq!(f.matches("\"deleted\": true").count(), 4, "{f}");
    });
}

/// With --ext-unix-sk, a datagram client connected to a named server
/// outside the dumped tree comes back connected to it by name (CRIU's
/// USK_EXTERN entry) and the server answers it.
#[test]
fn unix_external_dgram_peer_with_ext_unix_sk() {
    unixsk2_twice("ext", "--ext-unix-sk", |ns| {
        let f = crit_json(ns, "files.img");
        assert!(
            f.contains("\"uflags\": 1,") && f.contains("\"name\": \"/tmp/anchor/ext.sock=00\""),
            "{f}"
        );
    });
}

/// Shutdown states of both ends of stream pairs (SHUT_RD/SHUT_WR with data
/// queued, SHUT_RDWR) and of a datagram end, SO_PASSCRED (new messages
/// carry the sender's credentials), buffer sizes, SO_SNDTIMEO, SO_RCVLOWAT,
/// SO_PRIORITY, SO_MARK, SO_KEEPALIVE and O_NONBLOCK are kept.
#[test]
fn unix_shutdown_states_and_options_are_kept() {
    unixsk2_twice("misc", "", |_| {});
}
