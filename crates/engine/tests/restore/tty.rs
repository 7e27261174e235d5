//! Restore tests: terminals: pty pairs, pty masters, /dev/tty, consoles, vts.

#[allow(unused_imports)]
use super::*;

/// (session, tty_nr, tpgid) of a pid, from /proc/PID/stat.
fn stat_tty(pid: i32) -> (i32, u64, i32) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = s[s.rfind(')').unwrap() + 2..].split_whitespace().collect();
    (f[3].parse().unwrap(), f[4].parse().unwrap(), f[5].parse().unwrap())
}

/// Two pty pairs whose masters and slaves are all in the tree: a session
/// leader with pair A as its controlling terminal (and /dev/tty open), a
/// child in its own group as the foreground group, data queued both ways
/// (complete lines, an unfinished one and their echo on A, packet mode on
/// B). Restored twice, the program finds the same indexes, session,
/// foreground group, termios, window sizes, every queued byte (lines still
/// lines, no echo twice) and talks through /dev/tty.
#[test]
fn dump_restore_pty_pairs_with_queued_data_and_controlling_terminal_twice() {
    let prog = build_prog("ptypair");
    dump_restore_cmd_twice(
        &format!("{} /tmp/anchor", prog.display()),
        "pty.ready",
        |ns, pid, round| {
            let ready = std::fs::read_to_string(ns.anchor("pty.ready")).unwrap();
            let child: i32 = ready
                .split("child=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let index: u64 = ready
                .split("index=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let v = ns.ask(pid, "pty.verify", "");
            assert_eq!(v.trim(), "pty=ok", "round {round}");
            // The child inherited the controlling terminal and leads the
            // foreground group (as the kernel shows it from outside).
            let outer = ns.outer(child).expect("the child runs again");
            let (sid, tty_nr, tpgid) = stat_tty(outer);
            let (psid, ptty, _) = stat_tty(ns.outer(pid).unwrap());
            assert_eq!(
                tty_nr,
                libc::makedev(136, index as u32),
                "round {round}: the child's terminal"
            );
            assert_eq!(ptty, tty_nr, "round {round}: the leader's terminal");
            assert_eq!(sid, psid, "round {round}: one session");
            assert_eq!(tpgid, outer, "round {round}: the child is the foreground group");
        },
    );
}
