//! Restore tests: terminals: pty pairs, pty masters, /dev/tty, consoles, vts.

#[allow(unused_imports)]
use super::*;

/// The shell command starting `prog /tmp/anchor` on a devpts instance of
/// the test's own (mounted in its mount namespace, so that tests running at
/// once do not compete for pty indexes); its pid is the program's.
fn own_devpts(prog: &std::path::Path) -> String {
    format!(
        "sh -c 'mount -t devpts -o newinstance,ptmxmode=0666 cryo-pts /dev/pts && exec {} /tmp/anchor'",
        prog.display()
    )
}

/// (session, tty_nr, tpgid) of a pid, from /proc/PID/stat.
fn stat_tty(pid: i32) -> (i32, u64, i32) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = s[s.rfind(')').unwrap() + 2..].split_whitespace().collect();
    (f[3].parse().unwrap(), f[4].parse().unwrap(), f[5].parse().unwrap())
}

/// Two pty pairs whose masters and slaves are all in the tree: a session
/// leader with pair A as its controlling terminal (and /dev/tty open), a
/// child in its own group as the foreground group, data queued both ways
/// (complete lines, one ended by EOF, an unfinished one and their echo on A, packet mode on
/// B). Restored twice, the program finds the same indexes, session,
/// foreground group, termios, window sizes, every queued byte (lines still
/// lines, no echo twice) and talks through /dev/tty.
#[test]
fn dump_restore_pty_pairs_with_queued_data_and_controlling_terminal_twice() {
    let prog = build_prog("ptypair");
    dump_restore_cmd_twice(&own_devpts(&prog), "pty.ready", |ns, pid, round| {
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
        // Asked first: the program answers once the whole tree runs.
        let v = ns.ask(pid, "pty.verify", "");
        assert_eq!(v.trim(), "pty=ok", "round {round}");
        let index: u64 = ready
            .split("index=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
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
    });
}

/// The same program dumped with --leave-running first: the queued data read
/// for that dump goes back into both ends (lines, the unfinished line, no
/// extra echo), so the dump after it, restored twice, still finds all of it.
#[test]
fn a_leave_running_dump_puts_the_queued_terminal_data_back() {
    let prog = build_prog("ptypair");
    dump_restore_cmd_twice_with(
        &own_devpts(&prog),
        "pty.ready",
        "",
        &format!("mkdir /tmp/anchor/img0; {CRYO} dump --leave-running -t $P -D /tmp/anchor/img0 || exit 1;"),
        |ns, pid, round| {
            let v = ns.ask(pid, "pty.verify", "");
            assert_eq!(v.trim(), "pty=ok", "round {round}");
        },
    );
}

/// A controlling terminal with no fd open on it (only its master is held,
/// by another session), two hung-up fds of a slave whose master was closed,
/// and a console node. Restored twice: the child leads a session with that
/// terminal again, so closing the master sends it SIGHUP; the slaves are
/// still hung up; the console is the console.
#[test]
fn dump_restore_hung_up_slaves_and_a_terminal_without_fds_twice() {
    let prog = build_prog("ptyhup");
    dump_restore_cmd_twice(&own_devpts(&prog), "hup.ready", |ns, pid, round| {
        let v = ns.ask(pid, "hup.verify", "");
        assert_eq!(v.trim(), "hup=ok", "round {round}");
    });
}

/// Dumping only the child of the pty program: the slaves it holds have
/// their masters outside the dumped tree (in its parent). Refused without
/// --shell-job, naming the pid, fd and terminal; the tree goes on with its
/// terminal state and queued data untouched.
#[test]
fn a_slave_whose_master_is_outside_the_tree_is_refused_and_left_alone() {
    let prog = build_prog("ptypair");
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         {} >/dev/null 2>&1 </dev/null & P=$!; echo $P > /tmp/anchor/.root; \
         while [ ! -s /tmp/anchor/pty.ready ]; do sleep 0.02; done; \
         C=$(sed 's/.*child=\\([0-9]*\\).*/\\1/' /tmp/anchor/pty.ready); \
         mkdir img; {CRYO} dump -t $C -D img 2>.dump-err; echo $? > .dump-rc; exec sleep 100000",
        own_devpts(&prog)
    );
    let ns = Ns::start(&script);
    let rc = ns.wait_status(".dump-rc", "\n");
    let err = std::fs::read_to_string(ns.anchor(".dump-err")).unwrap();
    let ready = std::fs::read_to_string(ns.anchor("pty.ready")).unwrap();
    let child = ready.split("child=").nth(1).unwrap().split_whitespace().next().unwrap();
    assert_ne!(rc.trim(), "0", "the dump of the child alone succeeded: {err}");
    assert!(
        err.contains(&format!("pid {child} fd"))
            && err.contains("master is not in the dumped tree")
            && err.contains("--shell-job"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(ns.anchor("img")).unwrap().next().is_none(),
        "images were left"
    );
    let root: i32 = std::fs::read_to_string(ns.anchor(".root"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let v = ns.ask(root, "pty.verify", "");
    assert_eq!(v.trim(), "pty=ok", "after the refused dump");
}
