//! Restore tests with programs nobody here wrote: Debian's python3 (threads, as a non-root user),
//! node (its event loop, worker threads, epoll and eventfds), and a Go program (the Go runtime's
//! threads, signals and timers). Each is dumped and restored twice and must go on: its counter
//! advances and its own check of its memory still passes.

use super::*;

fn progs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/progs")
}

/// The status line of `file` advances after the restore and says ok=1.
fn goes_on(ns: &Ns, file: &str, round: u32) {
    wait_advance(ns, file, "tick");
    let s = ns.wait_status(file, "ok=");
    assert_eq!(field(&s, "ok"), "1", "round {round}: {s}");
}

/// `Uid:`/`Gid:`/`Groups:` of a restored task, by its pid inside the namespace.
fn ids(ns: &Ns, pid: i32) -> Vec<String> {
    let outer = ns.outer(pid).expect("restored task");
    let st = std::fs::read_to_string(format!("/proc/{outer}/status")).unwrap();
    st.lines()
        .filter(|l| l.starts_with("Uid:") || l.starts_with("Gid:") || l.starts_with("Groups:"))
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// python3 with four threads, started as uid/gid 1000 with no supplementary groups (as a service
/// drops privileges), comes back as that user with every thread and goes on.
#[test]
fn python3_threads_of_a_non_root_user_restore_twice() {
    let py = progs_dir().join("foreign.py");
    dump_restore_cmd_twice(
        &format!(
            "setpriv --reuid 1000 --regid 1000 --clear-groups /usr/bin/python3 {} /tmp/anchor",
            py.display()
        ),
        "py.status",
        |ns, pid, round| {
            goes_on(ns, "py.status", round);
            let s = ns.wait_status("py.status", "uid=");
            assert_eq!(field(&s, "uid"), "1000", "round {round}");
            assert_eq!(
                ids(ns, pid),
                [
                    "Uid:\t1000\t1000\t1000\t1000",
                    "Gid:\t1000\t1000\t1000\t1000",
                    "Groups:"
                ],
                "round {round}"
            );
            let outer = ns.outer(pid).unwrap();
            let threads = std::fs::read_dir(format!("/proc/{outer}/task")).unwrap().count();
            assert_eq!(threads, 5, "round {round}: the main thread and four workers");
        },
    );
}

/// node's event loop and timers go on after a restore.
#[test]
fn node_event_loop_restores_twice() {
    let js = progs_dir().join("foreign.js");
    dump_restore_cmd_twice(
        &format!("/usr/bin/node {} /tmp/anchor", js.display()),
        "node.status",
        |ns, _pid, round| goes_on(ns, "node.status", round),
    );
}

/// A Go program (built here with Debian's go) goes on after a restore: the runtime's threads,
/// preemption signals and timers all come back.
#[test]
fn go_program_restores_twice() {
    let bin = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("foreign-go");
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go-cache");
    let st = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(progs_dir().join("foreign.go"))
        .env("GOCACHE", &cache)
        .env("GOPATH", cache.join("path"))
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .status()
        .expect("go is installed (golang-go)");
    assert!(st.success(), "go build failed");
    dump_restore_cmd_twice(
        &format!("{} /tmp/anchor", bin.display()),
        "go.status",
        |ns, _pid, round| goes_on(ns, "go.status", round),
    );
}
