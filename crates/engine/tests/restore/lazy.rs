//! Lazy restore: `cryo restore --lazy-pages` served by `cryo lazy-pages`.
//! The program (tests/progs/lazymem.c) stamps its memory before the dump;
//! once restored it reports how much of it is resident before touching it,
//! then checks every page (and, by mode, forks a child that checks it, or
//! unmaps, moves and discards parts of it while the daemon is filling it).

use super::*;

/// Dump lazymem (MIB MiB, MODE) in a fresh namespace, start the daemon,
/// restore lazily; returns the namespace and the restored pid.
fn lazy_restore(mib: u32, mode: &str) -> (Ns, i32) {
    let prog = build_prog("lazymem");
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         {prog} {mib} /tmp/anchor {mode} >/dev/null 2>&1 </dev/null & P=$!; \
         while ! grep -qs ready lazymem.status; do sleep 0.02; done; mkdir img; \
         {CRYO} dump -t $P -D img 2>.err || echo 'dump failed' >>.err; \
         wait $P; \
         {CRYO} lazy-pages -D img -d -o lazy.log --pidfile lp.pid 2>>.err || echo 'lazy-pages failed' >>.err; \
         {CRYO} restore --lazy-pages -D img -d 2>>.err || echo 'restore failed' >>.err; \
         echo $P > .root; exec sleep 100000",
        prog = prog.display()
    );
    let ns = Ns::start(&script);
    let root: i32 = ns.wait_status(".root", "\n").trim().parse().unwrap();
    let err = std::fs::read_to_string(ns.anchor(".err")).unwrap_or_default();
    assert!(!err.contains("failed"), "{err}");
    (ns, root)
}

/// `resident=R of N` → (R, N).
fn resident(s: &str) -> (u64, u64) {
    let r = field(s, "resident").parse().unwrap();
    let n = s.trim().rsplit(' ').next().unwrap().parse().unwrap();
    (r, n)
}

/// The daemon's summary once it is done (and gone).
fn daemon_done(ns: &Ns) -> String {
    let line = ns.wait_status("img/lazy.log", "lazy-pages");
    assert!(line.contains("all pages in"), "{line}");
    let pid: i32 = std::fs::read_to_string(ns.anchor("lp.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Gone, or a zombie (the namespace's init, a sleep, reaps nothing).
    let running = |o: i32| {
        std::fs::read_to_string(format!("/proc/{o}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().starts_with('Z')))
            .is_some_and(|zombie| !zombie)
    };
    while ns.outer(pid).is_some_and(running) {
        assert!(
            Instant::now() < deadline,
            "the daemon is still running after its summary"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    line
}

/// 1 GiB restored lazily: the program runs with most of its memory not in
/// yet (it counts its resident pages with mincore before touching them, and
/// the daemon has not finished then), then reads all of it correctly (every
/// word as stamped before the dump, and the sum of them), and the daemon
/// exits once every page is in.
#[test]
fn lazy_restore_of_1gib_runs_before_its_pages_are_in() {
    let (ns, root) = lazy_restore(1024, "read");
    ns.kill(root, libc::SIGUSR1);
    let first = ns.wait_status("lazymem.first", "resident=");
    let daemon_finished = ns.anchor("img/lazy.log").exists();
    let (r, n) = resident(&first);
    assert_eq!(n, 1024 * 256);
    assert!(r < n / 2, "{r} of {n} pages were in when the program first ran");
    assert!(!daemon_finished, "the daemon had finished before the program ran");
    let v = ns.wait_status("lazymem.verify", "sum=");
    assert!(v.starts_with("ok"), "{v}");
    let line = daemon_done(&ns);
    assert!(line.contains("1 process(es)"), "{line}");
}

/// A child forked after the lazy restore (its userfaultfd comes with the
/// fork event) reads the whole memory correctly, so does its parent.
#[test]
fn lazy_restore_child_forked_after_restore_reads_its_memory() {
    let (ns, root) = lazy_restore(256, "fork");
    ns.kill(root, libc::SIGUSR1);
    let v = ns.wait_status("lazymem.verify", "\n");
    assert!(v.starts_with("ok"), "{v}");
    let line = daemon_done(&ns);
    assert!(line.contains("(1 forked)"), "{line}");
}

/// munmap, mremap and MADV_DONTNEED while the daemon fills the memory: the
/// moved pages are right at their new address, the discarded ones read as
/// zero, the rest is as stamped, and the daemon drops what went away.
#[test]
fn lazy_restore_follows_munmap_mremap_and_dontneed() {
    let (ns, root) = lazy_restore(256, "remap");
    ns.kill(root, libc::SIGUSR1);
    let v = ns.wait_status("lazymem.verify", "\n");
    assert!(v.starts_with("ok"), "{v}");
    let line = daemon_done(&ns);
    assert!(!line.contains(" 0.0 MiB dropped"), "{line}");
}

/// A restore with --lazy-pages and no daemon is refused, naming the socket.
#[test]
fn lazy_restore_without_a_daemon_is_refused() {
    let (ns, root) = {
        let prog = build_prog("lazymem");
        let script = format!(
            "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
             {prog} 8 /tmp/anchor read >/dev/null 2>&1 </dev/null & P=$!; \
             while ! grep -qs ready lazymem.status; do sleep 0.02; done; mkdir img; \
             {CRYO} dump -t $P -D img 2>.err; wait $P; \
             {CRYO} restore --lazy-pages -D img -d 2>.rst-err; echo $? > .rst-rc; \
             echo $P > .root; exec sleep 100000",
            prog = prog.display()
        );
        let ns = Ns::start(&script);
        let root: i32 = ns.wait_status(".root", "\n").trim().parse().unwrap();
        (ns, root)
    };
    assert_ne!(ns.wait_status(".rst-rc", "\n").trim(), "0");
    let e = std::fs::read_to_string(ns.anchor(".rst-err")).unwrap();
    assert!(e.contains("lazy-pages.socket") && e.contains("cryo lazy-pages"), "{e}");
    assert!(ns.outer(root).is_none(), "a failed restore left the task behind");
}
