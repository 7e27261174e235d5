//! `cryo restore` integration tests: real image sets restored into a fresh
//! PID namespace (a private mount namespace too, with its own tmpfs on
//! /tmp/anchor so that tests don't see each other's status files). Killing
//! the namespace's pid 1 cleans up everything a test started.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;
use common::ns::Ns;
use common::{build_prog, gcc, kv as field, pty, CRYO};

// Tests by class of program (each file uses this file's helpers via `super::*`).
#[path = "restore/cgroup.rs"]
mod cgroup;
#[path = "restore/container.rs"]
mod container;
#[path = "restore/fdkinds.rs"]
mod fdkinds;
#[path = "restore/foreign.rs"]
mod foreign;
#[path = "restore/ghost.rs"]
mod ghost;
#[path = "restore/identity.rs"]
mod identity;
#[path = "restore/incremental.rs"]
mod incremental;
// Inet sockets: TCP listeners and unconnected sockets, UDP with queues, python3 -m http.server, a JVM.
#[path = "restore/inet.rs"]
mod inet;
#[path = "restore/lazy.rs"]
mod lazy;
#[path = "restore/live.rs"]
mod live;
#[path = "restore/mem.rs"]
mod mem;
#[path = "restore/ns.rs"]
mod namespaces;
#[path = "restore/netsk.rs"]
mod netsk;
#[path = "restore/periodic.rs"]
mod periodic;
#[path = "restore/pidfds.rs"]
mod pidfds;
// podman 4.3 (Debian's podman, runc as its runtime) with cryo as `criu` on PATH.
#[path = "restore/podman.rs"]
mod podman;
// runc 1.1 (Debian's runc) drives cryo swrk: checkpoint and restore of busybox containers.
#[path = "restore/runc.rs"]
mod runc;
#[path = "restore/sockets.rs"]
mod sockets;
#[path = "restore/tasks.rs"]
mod tasks;
#[path = "restore/tcp.rs"]
mod tcp;
#[path = "restore/tty.rs"]
mod tty;

use cryo_testsupport::fixtures;

/// Compile the fixture program of `name` to the path its images name
/// (/tmp/cryo-fx/bin/<name>) with the flags that reproduce the dumped binary
/// (gcc -O2: same size and build-id), and check the size against files.img.
fn build_fixture(name: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap();
    let dir = fixtures().join(name);
    let set = cryo_image::ImageSet::open(dir.join("images")).unwrap();
    let files = set.files().unwrap();
    let want = format!("/tmp/cryo-fx/bin/{name}");
    let exe = files
        .iter()
        .filter_map(|f| f.reg.as_ref())
        .find(|r| r.name == want)
        .unwrap_or_else(|| panic!("{name}: files.img does not name {want}"));
    let size = exe.size.expect("exe size in files.img");
    std::fs::create_dir_all("/tmp/cryo-fx/bin").unwrap();
    if std::fs::metadata(&want).map(|m| m.len()).ok() == Some(size) {
        return PathBuf::from(want);
    }
    let tmp = format!("{want}.tmp.{}", std::process::id());
    let src = dir.join(format!("src/{name}.c"));
    let threads = std::fs::read_to_string(&src).unwrap().contains("pthread");
    gcc(
        &src,
        if threads { &["-O2", "-pthread"] } else { &["-O2"] },
        Path::new(&tmp),
    );
    let got = std::fs::metadata(&tmp).unwrap().len();
    assert_eq!(got, size, "{name}: gcc -O2 gives {got} bytes, the image says {size}");
    std::fs::rename(&tmp, &want).unwrap();
    PathBuf::from(want)
}

/// Restore a CRIU 4.2 fixture (`cryo restore -d`, checked to succeed); None
/// where this CPU lacks a feature the fixture's FPU state uses, after
/// checking that the restore is refused ([`refused_by_this_cpu`]).
fn restore_fixture(name: &str) -> Option<Ns> {
    build_fixture(name);
    if refused_by_this_cpu(name) {
        return None;
    }
    let ns = Ns::restore(&fixtures().join(name).join("images"), &[]);
    let (rc, err) = ns.cryo_result();
    assert_eq!(rc, 0, "cryo restore of {name} failed: {err}");
    Some(ns)
}

/// Whether this CPU lacks a feature that the FPU state of fixture `name`
/// uses (the xsave components in its cores against /proc/cpuinfo, read
/// apart from cryo's own check of XCR0). A set dumped on a CPU with more
/// features must not be restored (glibc picked its string functions for
/// that CPU, and the program would die of SIGILL): then the refusal is
/// checked ([`assert_cpu_refusal`]) and the caller skips its restore checks.
/// The fixtures were recorded on an AVX2 machine: on one with AVX-512 their
/// restore is refused too (a smaller XSAVE area, see docs/architecture.md).
fn refused_by_this_cpu(name: &str) -> bool {
    let dir = fixtures().join(name).join("images");
    let lacks = common::cpu::set_lacks(&dir);
    if lacks.is_empty() {
        return false;
    }
    let _ = assert_cpu_refusal(&dir, &lacks);
    eprintln!("{name}: this CPU lacks {lacks:?}; checked that its restore is refused instead");
    true
}

/// `cryo restore` of the set in `dir` (in a fresh network namespace, with
/// --tcp-established where it has TCP streams) is refused before any task
/// exists: a non-zero exit, an error naming each feature of `lacks`, no task
/// left, the images untouched.
fn assert_cpu_refusal(dir: &Path, lacks: &[String]) -> String {
    let before = dir_digest(dir);
    let tcp = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("tcp-stream-"));
    let ns = Ns::start_net(&format!(
        "ip link set lo up; mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; \
         {CRYO} restore -D {} -d {} 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; exec sleep 100000",
        dir.display(),
        if tcp { "--tcp-established" } else { "" }
    ));
    let (rc, err) = ns.cryo_result();
    assert_ne!(
        rc, 0,
        "the restore of a set using {lacks:?}, which this CPU lacks, succeeded: {err}"
    );
    assert!(err.contains("FPU state") && err.contains("does not have"), "{err}");
    for name in lacks {
        assert!(err.contains(name.as_str()), "the error does not name {name}: {err}");
    }
    assert_eq!(ns.inner_pids(), Vec::<i32>::new(), "tasks left behind: {err}");
    assert_eq!(dir_digest(dir), before, "images modified");
    err
}

fn pstree_pids(name: &str) -> Vec<i32> {
    let set = cryo_image::ImageSet::open(fixtures().join(name).join("images")).unwrap();
    set.pstree().unwrap().iter().map(|p| p.pid as i32).collect()
}

#[test]
fn criu_loop_heap_restores_and_checks_its_heap() {
    build_fixture("loop_heap");
    if refused_by_this_cpu("loop_heap") {
        return;
    }
    let ns = Ns::restore(
        &fixtures().join("loop_heap/images"),
        &["--pidfile", "/tmp/anchor/root.pid"],
    );
    let (rc, err) = ns.cryo_result();
    assert_eq!(rc, 0, "{err}");
    let pid = pstree_pids("loop_heap")[0];
    assert_eq!(
        std::fs::read_to_string(ns.anchor("root.pid")).unwrap().trim(),
        pid.to_string()
    );
    assert_eq!(ns.inner_pids(), vec![pid]);
    // The program keeps running (its counter advances) ...
    let first = ns.wait_status("loop_heap.status", &format!("pid={pid}"));
    let cnt = |s: &str| s.split("cnt=").nth(1).unwrap().trim().parse::<u64>().unwrap();
    let c0 = cnt(&first);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = std::fs::read_to_string(ns.anchor("loop_heap.status")).unwrap();
        if cnt(&s) > c0 {
            break;
        }
        assert!(Instant::now() < deadline, "the restored loop does not advance");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every mapping of the restored process is one the dump had (merges of
    // neighbours aside): nothing of the engine or the restorer is left.
    let set = cryo_image::ImageSet::open(fixtures().join("loop_heap/images")).unwrap();
    let vmas: Vec<(u64, u64)> = set
        .mm(pid as u32)
        .unwrap()
        .vmas
        .iter()
        .map(|v| (v.start, v.end))
        .collect();
    let o = ns.outer(pid).unwrap();
    for l in std::fs::read_to_string(format!("/proc/{o}/maps")).unwrap().lines() {
        // The running kernel's vdso and vvar stay where it put them when its
        // vdso differs from the dumped one (which is then reached through a
        // jump table at the dumped address: a_different_vdso_is_reached_...).
        if l.ends_with("[vvar]") || l.ends_with("[vvar_vclock]") || l.ends_with("[vdso]") {
            continue;
        }
        let (a, b) = l.split_whitespace().next().unwrap().split_once('-').unwrap();
        let (a, b) = (u64::from_str_radix(a, 16).unwrap(), u64::from_str_radix(b, 16).unwrap());
        let mut x = a;
        while x < b {
            let v = vmas
                .iter()
                .find(|v| v.0 <= x && x < v.1)
                .unwrap_or_else(|| panic!("mapping not in the dump: {l}"));
            x = v.1;
        }
    }
    // ... and its SIGUSR1 handler finds the heap pattern intact.
    ns.kill(pid, libc::SIGUSR1);
    let v = ns.wait_status("loop_heap.verify.status", "heap=");
    assert!(v.contains(&format!("pid={pid} ")) && v.contains("heap=ok"), "{v}");
}

#[test]
fn criu_images_restore_twice_and_stay_untouched() {
    let name = "loop_heap";
    let dir = fixtures().join(name).join("images");
    let before = dir_digest(&dir);
    for _ in 0..2 {
        let Some(ns) = restore_fixture(name) else {
            return;
        };
        let pid = pstree_pids(name)[0];
        ns.kill(pid, libc::SIGUSR1);
        let v = ns.wait_status("loop_heap.verify.status", "heap=");
        assert!(v.contains("heap=ok"), "{v}");
    }
    assert_eq!(dir_digest(&dir), before, "restore modified the images");
}

/// (name, size, contents hash) of every file in a directory.
fn dir_digest(dir: &Path) -> Vec<(String, u64, u64)> {
    use std::hash::{Hash, Hasher};
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let data = std::fs::read(e.path()).unwrap();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        data.hash(&mut h);
        v.push((
            e.file_name().to_string_lossy().into_owned(),
            data.len() as u64,
            h.finish(),
        ));
    }
    v.sort();
    v
}

/// Wait until `key` in `file` differs from its current value (the restored
/// program keeps running).
fn wait_advance(ns: &Ns, file: &str, key: &str) {
    let s0 = ns.wait_status(file, &format!("{key}="));
    let v0 = field(&s0, key);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = std::fs::read_to_string(ns.anchor(file)).unwrap_or_default();
        if s.contains(&format!("{key}=")) && field(&s, key) != v0 {
            return;
        }
        assert!(Instant::now() < deadline, "{file}: {key} stays at {v0}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn criu_threads4_restores_all_threads() {
    let Some(ns) = restore_fixture("threads4") else {
        return;
    };
    let pid = pstree_pids("threads4")[0];
    let o = ns.outer(pid).unwrap();
    let tids: Vec<String> = std::fs::read_dir(format!("/proc/{o}/task"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(tids.len(), 4, "threads: {tids:?}");
    // The three workers' counters and the shared total advance.
    wait_advance(&ns, "threads4.status", "total");
    ns.kill(pid, libc::SIGUSR1);
    let v = ns.wait_status("threads4.verify.status", "blocks=");
    assert!(v.contains("blocks=ok"), "{v}");
}

/// `cryo restore -v` as `cryo dump -v`: a summary line once the tree runs
/// (processes, threads, root pid), from -v3 the time of each stage; the log
/// file (-o, relative to the images directory) gets the same; without -v
/// nothing on stdout.
#[test]
fn restore_verbosity_prints_a_summary_and_from_v3_the_stages() {
    build_fixture("threads4");
    if refused_by_this_cpu("threads4") {
        return;
    }
    let src = fixtures().join("threads4").join("images");
    let pid = pstree_pids("threads4")[0];
    for (opt, phases) in [("", false), ("-v", false), ("-v3", true)] {
        let ns = Ns::start(&format!(
            "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cp -r {} /tmp/anchor/img; \
             {CRYO} restore -D /tmp/anchor/img -d {opt} -o restore.log >/tmp/anchor/.out 2>/tmp/anchor/.cryo-err; \
             echo $? > /tmp/anchor/.cryo-rc; exec sleep 100000",
            src.display()
        ));
        let (rc, err) = ns.cryo_result();
        assert_eq!(rc, 0, "restore {opt}: {err}");
        let out = std::fs::read_to_string(ns.anchor(".out")).unwrap();
        let log = std::fs::read_to_string(ns.anchor("img/restore.log")).unwrap();
        let summary = format!("1 process(es), 4 thread(s); root pid {pid}, total ");
        assert!(log.contains(&summary), "restore {opt}: log {log:?}");
        assert_eq!(log.contains("all tasks ready"), phases, "restore {opt}: log {log:?}");
        if opt.is_empty() {
            assert_eq!(out, "", "restore without -v prints nothing");
        } else {
            assert!(
                out.starts_with("restored and detached from /tmp/anchor/img: "),
                "restore {opt}: {out:?}"
            );
            assert!(out.contains(&summary), "restore {opt}: {out:?}");
            for stage in ["validated", "prepared", "forked", "all tasks ready", "resumed"] {
                assert_eq!(
                    out.contains(&format!("\n  {stage} ")),
                    phases,
                    "restore {opt}: {stage} in {out:?}"
                );
            }
        }
        ns.kill(pid, libc::SIGKILL);
    }
}

#[test]
fn criu_proctree_restores_parents_children_sessions_groups() {
    let Some(ns) = restore_fixture("proctree") else {
        return;
    };
    let pids = pstree_pids("proctree");
    assert_eq!(ns.inner_pids(), {
        let mut p = pids.clone();
        p.sort();
        p
    });
    // Parent/child links, sessions and groups as dumped.
    let set = cryo_image::ImageSet::open(fixtures().join("proctree/images")).unwrap();
    for p in set.pstree().unwrap() {
        let o = ns.outer(p.pid as i32).unwrap();
        // Values as seen inside the namespace (the last of the NS* columns).
        let inner = |pid: i32, key: &str| -> u32 {
            let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let l = st.lines().find(|l| l.starts_with(key)).unwrap();
            l.split_whitespace().last().unwrap().parse().unwrap()
        };
        let outer_ppid = inner(o, "PPid:") as i32;
        let (ppid, pgrp, sid) = (inner(outer_ppid, "NSpid:"), inner(o, "NSpgid:"), inner(o, "NSsid:"));
        let want_ppid = if p.ppid == 0 { 1 } else { p.ppid };
        assert_eq!((ppid, pgrp, sid), (want_ppid, p.pgid, p.sid), "pid {}", p.pid);
    }
    wait_advance(&ns, "proctree.parent.status", "c");
    assert_eq!(field(&ns.wait_status("proctree.parent.status", "alive="), "alive"), "3");
    for p in &pids[1..] {
        ns.kill(*p, libc::SIGUSR1);
    }
    for tag in ["child0", "child1", "child2", "grandchild"] {
        let v = ns.wait_status(&format!("proctree.{tag}.verify.status"), "heap=");
        assert!(v.contains("heap=ok"), "{tag}: {v}");
    }
}

#[test]
fn criu_pipe_unread_gets_its_queued_data_back() {
    let Some(ns) = restore_fixture("pipe_unread") else {
        return;
    };
    let pids = pstree_pids("pipe_unread");
    wait_advance(&ns, "pipe_unread.parent.status", "c");
    ns.kill(pids[1], libc::SIGUSR1);
    let v = ns.wait_status("pipe_unread.child.status", "VERIFY");
    assert!(v.contains("got=16384") && v.contains("data=ok"), "{v}");
}

#[test]
fn criu_ghost_file_comes_back_deleted_with_contents_and_offset() {
    let Some(ns) = restore_fixture("ghost_file") else {
        return;
    };
    let pid = pstree_pids("ghost_file")[0];
    ns.kill(pid, libc::SIGUSR1);
    let v = ns.wait_status("ghost_file.verify.status", "data=");
    assert!(v.contains("offset=1000") && v.contains("data=ok"), "{v}");
    // The ghost is not left behind on disk.
    assert!(!ns.anchor("ghost.dat").exists());
    // It is open again, deleted, with its dumped modification time.
    let o = ns.outer(pid).unwrap();
    let fd = std::fs::read_dir(format!("/proc/{o}/fd"))
        .unwrap()
        .flatten()
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().ends_with("ghost.dat (deleted)")))
        .expect("the ghost file is open");
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(fd.path()).unwrap();
    assert_eq!(md.mtime(), 1796220838, "mtime of the ghost (ghost-file-1.img mtim)");
    assert_eq!(md.len(), 65536);
}

#[test]
fn criu_memfd_and_shared_anon_are_shared_again() {
    let Some(ns) = restore_fixture("memfd_shm") else {
        return;
    };
    let pids = pstree_pids("memfd_shm");
    // The child sees the counter the parent bumps in the shared region.
    wait_advance(&ns, "memfd_shm.child.status", "shared_ctr");
    for p in &pids {
        ns.kill(*p, libc::SIGUSR1);
    }
    for who in ["parent", "child"] {
        let v = ns.wait_status(&format!("memfd_shm.{who}.verify.status"), "shanon=");
        assert!(v.contains("memfd=ok") && v.contains("shanon=ok"), "{who}: {v}");
    }
}

/// The eventfd, timerfd, signalfd, inotify and epoll of the fdzoo fixture
/// work after a restore: the eventfd still holds 5, the timer keeps ticking,
/// SIGUSR2 arrives through the signalfd, a file created in the watched
/// directory is seen through inotify, all through the restored epoll.
fn check_fdzoo(ns: &Ns, pid: i32, round: u32) {
    let _ = std::fs::remove_file(ns.anchor("fdzoo.verify.status"));
    wait_advance(ns, "fdzoo.status", "ticks");
    ns.kill(pid, libc::SIGUSR2);
    let v = ns.wait_status("fdzoo.verify.status", &format!("pid={pid} "));
    assert_eq!(field(&v, "eventfd"), "5", "round {round}: {v}");
    let sigs: u64 = field(&v, "sigs").parse().unwrap();
    let ticks: u64 = field(&v, "ticks").parse().unwrap();
    let ev0: u64 = field(&v, "inotify_events").parse().unwrap();
    assert!(sigs >= 1, "round {round}: {v}");
    // A file created in the watched directory raises the inotify count.
    std::fs::write(ns.anchor(&format!("fdzoo-dir/new-{round}")), "x").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = std::fs::read_to_string(ns.anchor("fdzoo.status")).unwrap_or_default();
        if s.contains("inotify_events=") && field(&s, "inotify_events").parse::<u64>().unwrap() > ev0 {
            break;
        }
        assert!(Instant::now() < deadline, "round {round}: no inotify event seen: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A second signal: counted again; the timer went on; the eventfd kept 5.
    wait_advance(ns, "fdzoo.status", "ticks");
    let _ = std::fs::remove_file(ns.anchor("fdzoo.verify.status"));
    ns.kill(pid, libc::SIGUSR2);
    let v2 = ns.wait_status("fdzoo.verify.status", &format!("pid={pid} "));
    assert_eq!(
        field(&v2, "sigs").parse::<u64>().unwrap(),
        sigs + 1,
        "round {round}: {v2}"
    );
    assert!(
        field(&v2, "ticks").parse::<u64>().unwrap() > ticks,
        "round {round}: {v2}"
    );
    assert!(
        field(&v2, "inotify_events").parse::<u64>().unwrap() > ev0,
        "round {round}: {v2}"
    );
    assert_eq!(field(&v2, "eventfd"), "5", "round {round}: {v2}");
}

#[test]
fn criu_fdzoo_restores_eventfd_timerfd_signalfd_inotify_epoll_twice() {
    let name = "fdzoo";
    build_fixture(name);
    if refused_by_this_cpu(name) {
        return;
    }
    let dir = fixtures().join(name).join("images");
    let before = dir_digest(&dir);
    let pid = pstree_pids(name)[0];
    for round in 1..=2 {
        // The watched directory is found by the path recorded beside its
        // file handle (the dumped inode is long gone).
        let ns = Ns::start(&format!(
            "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; mkdir /tmp/anchor/fdzoo-dir; \
             {CRYO} restore -D {} -d 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; exec sleep 100000",
            dir.display()
        ));
        let (rc, err) = ns.cryo_result();
        assert_eq!(rc, 0, "round {round}: {err}");
        // The fds are back at their numbers with their kinds.
        let o = ns.outer(pid).unwrap();
        let link = |fd: i32| {
            std::fs::read_link(format!("/proc/{o}/fd/{fd}"))
                .unwrap()
                .display()
                .to_string()
        };
        assert_eq!(
            [link(3), link(4), link(5), link(6), link(7)],
            [
                "anon_inode:[signalfd]",
                "anon_inode:[eventfd]",
                "anon_inode:[timerfd]",
                "anon_inode:inotify",
                "anon_inode:[eventpoll]"
            ]
        );
        let epoll = std::fs::read_to_string(format!("/proc/{o}/fdinfo/7")).unwrap();
        let tfds: Vec<&str> = epoll.lines().filter(|l| l.starts_with("tfd:")).collect();
        assert_eq!(tfds.len(), 4, "{epoll}");
        assert!(
            tfds.iter()
                .any(|l| l.split_whitespace().nth(1) == Some("4") && l.contains("events: 80000019")),
            "the eventfd is watched edge-triggered: {epoll}"
        );
        check_fdzoo(&ns, pid, round);
    }
    assert_eq!(dir_digest(&dir), before, "restore modified the images");
}

/// An epoll item whose target is not an fd of the task holding the epoll
/// (closed, or in another process) is refused before any task exists.
#[test]
fn epoll_target_outside_the_owner_is_refused_up_front() {
    build_fixture("fdzoo");
    if refused_by_this_cpu("fdzoo") {
        return;
    }
    let pid = pstree_pids("fdzoo")[0];
    let dir = copy_images("fdzoo", "epoll-closed");
    let set = cryo_image::ImageSet::open(&dir).unwrap();
    let mut files = set.files().unwrap();
    let ep = files.iter_mut().find_map(|f| f.epfd.as_mut()).unwrap();
    ep.tfd[0].tfd = 99;
    cryo_image::write_entries(dir.join("files.img"), "FILES", &files).unwrap();
    let ns = Ns::restore(&dir, &[]);
    let (rc, err) = ns.cryo_result();
    assert_ne!(rc, 0);
    assert!(
        err.contains("files.img") && err.contains("target fd 99") && err.contains(&format!("pid {pid}")),
        "{err}"
    );
    assert!(!ns.inner_pids().contains(&pid));
    drop(ns);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Unsupported objects are refused before any task exists.
#[test]
fn unsupported_images_are_refused_before_creating_tasks() {
    // (sysv_ipc restores since issue 13: criu_sysv_ipc_restores_its_ipc_namespace.)
    // TCP connections without --tcp-established: refused, naming one.
    let name = "tcp_est";
    build_fixture(name);
    if refused_by_this_cpu(name) {
        return;
    }
    let ns = Ns::restore(&fixtures().join(name).join("images"), &[]);
    let (rc, err) = ns.cryo_result();
    assert_ne!(rc, 0, "{name}");
    assert!(
        err.contains("TCP connection 127.0.0.1:") && err.contains("--tcp-established"),
        "{name}: {err}"
    );
    assert!(
        ns.inner_pids().iter().all(|p| !pstree_pids(name).contains(p)),
        "{name}: a task was created"
    );
}

/// Wait (bounded) until none of `pids` exists in the namespace.
fn wait_gone(ns: &Ns, pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<i32> = ns.inner_pids().into_iter().filter(|p| pids.contains(p)).collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "half-restored tasks survive: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A copy of a fixture's images in a temp dir.
fn copy_images(name: &str, tag: &str) -> PathBuf {
    copy_set(&cryo_testsupport::fixture_images(name), tag)
}

/// A copy of the image set in `src` in a temp dir.
fn copy_set(src: &Path, tag: &str) -> PathBuf {
    let dst = cryo_testsupport::scratch("cryo-restore-test", tag);
    cryo_testsupport::copy_dir(src, &dst);
    dst
}

#[test]
fn corrupt_images_are_refused_naming_the_file_and_left_untouched() {
    build_fixture("loop_heap");
    if refused_by_this_cpu("loop_heap") {
        return;
    }
    let pid = pstree_pids("loop_heap")[0];
    type Corrupt = fn(&Path);
    let cases: [(&str, Corrupt); 4] = [
        ("core-9217.img", |d| {
            let p = d.join("core-9217.img");
            let data = std::fs::read(&p).unwrap();
            std::fs::write(&p, &data[..data.len() / 2]).unwrap();
        }),
        ("mm-9217.img", |d| {
            let p = d.join("mm-9217.img");
            let mut data = std::fs::read(&p).unwrap();
            for b in &mut data[12..40] {
                *b = 0xff;
            }
            std::fs::write(&p, &data).unwrap();
        }),
        ("pages-1.img", |d| {
            let p = d.join("pages-1.img");
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.set_len(4096).unwrap();
        }),
        ("core-9217.img", |d| {
            // A membarrier registration mask with a bit that is no command.
            let set = cryo_image::ImageSet::open(d).unwrap();
            let mut core = set.core(9217).unwrap();
            core.tc.as_mut().unwrap().membarrier_registration_mask = Some(0x11);
            let mut w = cryo_image::ImageWriter::create(d.join("core-9217.img"), Some("CORE")).unwrap();
            w.entry(&core).unwrap();
            w.finish().unwrap();
        }),
    ];
    for (i, (file, corrupt)) in cases.iter().enumerate() {
        let dir = copy_images("loop_heap", &format!("corrupt{i}"));
        corrupt(&dir);
        let before = dir_digest(&dir);
        let ns = Ns::restore(&dir, &[]);
        let (rc, err) = ns.cryo_result();
        assert_ne!(rc, 0, "{file}: restore of a corrupt set succeeded");
        let stem = file.split('-').next().unwrap();
        assert!(err.contains(stem), "{file}: error does not name the file: {err}");
        if i == 3 {
            assert!(err.contains("membarrier_registration_mask 0x11"), "{err}");
        }
        assert!(!ns.inner_pids().contains(&pid), "{file}: a task was left behind");
        assert_eq!(dir_digest(&dir), before, "{file}: images modified");
        drop(ns);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn the_cpu_helper_reads_xstate_bits_against_cpuinfo_flags() {
    use common::cpu::{lacking, PKRU_AT_EXEC};
    use std::collections::BTreeSet;
    let flags = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<BTreeSet<String>>();
    let avx2_pku = flags(&["fpu", "sse", "avx", "avx2", "pku", "ospke"]);
    // The first recording of the fixtures (an AVX-512 machine): opmask + Hi16_ZMM + an untouched PKRU.
    assert_eq!(lacking(0x2a2, Some(PKRU_AT_EXEC), &avx2_pku), ["AVX-512"]);
    assert!(lacking(0x2a2, Some(PKRU_AT_EXEC), &flags(&["avx", "avx512f", "ospke"])).is_empty());
    // AVX2 state with PKRU: fine on a CPU with protection keys, and without them while PKRU is untouched.
    assert!(lacking(0x207, Some(PKRU_AT_EXEC), &avx2_pku).is_empty());
    assert!(lacking(0x207, Some(PKRU_AT_EXEC), &flags(&["avx"])).is_empty());
    assert_eq!(lacking(0x207, Some(0x5555_5550), &flags(&["avx"])), ["PKRU"]);
    // AMX tile data; an unknown component.
    assert_eq!(lacking(0x40202, Some(PKRU_AT_EXEC), &avx2_pku), ["AMX"]);
    assert_eq!(lacking(1 << 40 | 3, None, &avx2_pku), ["xsave component 40"]);
}

/// A fresh cryo dump of loop_heap whose core is edited to say the thread's
/// FPU state uses a feature this CPU lacks (AMX tile data, else AVX-512, CET,
/// MPX: the first that /proc/cpuinfo does not show) is refused at
/// validation, naming the feature and the core image, with no task left and
/// the images untouched; the same dump unedited restores and runs.
#[test]
fn fpu_state_using_a_feature_this_cpu_lacks_is_refused_naming_it() {
    use cryo_image::pb;
    let exe = build_fixture("loop_heap");
    let ns = Ns::start(&format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/cryo-fx; \
         echo 9999 > /proc/sys/kernel/ns_last_pid; setsid {} </dev/null >/dev/null 2>&1 & P=$!; echo $P > /tmp/anchor/.root; \
         while [ ! -s /tmp/anchor/loop_heap.status ]; do sleep 0.02; done; mkdir /tmp/anchor/img; \
         {CRYO} dump -t $P -D /tmp/anchor/img 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; \
         exec sleep 100000",
        exe.display()
    ));
    let (rc, err) = ns.cryo_result();
    assert_eq!(rc, 0, "cryo dump: {err}");
    let pid: i32 = std::fs::read_to_string(ns.anchor(".root"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let plain = copy_set(&ns.anchor("img"), "fpu-plain");
    let faked = copy_set(&ns.anchor("img"), "fpu-faked");
    drop(ns);
    // Dumped here, the set needs nothing this CPU lacks.
    assert_eq!(common::cpu::set_lacks(&plain), Vec::<String>::new());
    let flags = common::cpu::cpu_flags();
    let &(bit, _, name) = [18, 7, 11, 3]
        .iter()
        .find_map(|b| {
            common::cpu::COMPONENTS
                .iter()
                .find(|c| c.0 == *b && !flags.contains(c.1))
        })
        .expect("this CPU has AMX, AVX-512, CET and MPX: no feature to fake");
    let core_img = faked.join(format!("core-{pid}.img"));
    let mut core = cryo_image::read_entries::<pb::CoreEntry>(&core_img, "CORE").unwrap();
    let x = core[0]
        .thread_info
        .as_mut()
        .unwrap()
        .fpregs
        .xsave
        .as_mut()
        .expect("the dump has xsave state");
    x.xstate_bv |= 1 << bit;
    cryo_image::write_entries(&core_img, "CORE", &core).unwrap();
    assert_eq!(common::cpu::set_lacks(&faked), [name]);
    let err = assert_cpu_refusal(&faked, &[name.to_string()]);
    assert!(err.contains(&format!("core-{pid}.img")), "{err}");
    // The same dump as it was restores and runs on.
    let ns = Ns::restore(&plain, &[]);
    let (rc, err) = ns.cryo_result();
    assert_eq!(rc, 0, "{err}");
    ns.kill(pid, libc::SIGUSR1);
    let v = ns.wait_status("loop_heap.verify.status", "heap=");
    assert!(v.contains(&format!("pid={pid} ")) && v.contains("heap=ok"), "{v}");
    drop(ns);
    std::fs::remove_dir_all(&plain).unwrap();
    std::fs::remove_dir_all(&faked).unwrap();
}

#[test]
fn busy_pid_is_reported_and_nothing_is_created() {
    build_fixture("loop_heap");
    if refused_by_this_cpu("loop_heap") {
        return;
    }
    let pid = pstree_pids("loop_heap")[0];
    let dir = fixtures().join("loop_heap/images");
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; echo {} > /proc/sys/kernel/ns_last_pid; \
         sleep 100000 & sleep 0.01; {CRYO} restore -D {} -d --pid-wait 0.2 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; exec sleep 100000",
        pid - 1,
        dir.display()
    );
    let ns = Ns::start(&script);
    let (rc, err) = ns.cryo_result();
    assert_ne!(rc, 0);
    assert!(
        err.contains(&format!("pid {pid} is in use")) && err.contains("sleep"),
        "{err}"
    );
    // The only process with that pid is the sleep that held it.
    let o = ns.outer(pid).unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{o}/comm")).unwrap().trim(),
        "sleep"
    );
}

#[test]
fn a_pid_freed_while_waiting_is_taken() {
    build_fixture("loop_heap");
    if refused_by_this_cpu("loop_heap") {
        return;
    }
    let pid = pstree_pids("loop_heap")[0];
    let dir = fixtures().join("loop_heap/images");
    // The pid is held by a short-lived process when the restore starts.
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; echo {} > /proc/sys/kernel/ns_last_pid; \
         sleep 0.3 & sleep 0.01; {CRYO} restore -D {} -d --pid-wait 20 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; exec sleep 100000",
        pid - 1,
        dir.display()
    );
    let ns = Ns::start(&script);
    let (rc, err) = ns.cryo_result();
    assert_eq!(rc, 0, "{err}");
    ns.kill(pid, libc::SIGUSR1);
    assert!(ns.wait_status("loop_heap.verify.status", "heap=").contains("heap=ok"));
}

#[test]
fn a_failing_task_takes_the_whole_tree_down() {
    build_fixture("proctree");
    if refused_by_this_cpu("proctree") {
        return;
    }
    let pids = pstree_pids("proctree");
    let dir = fixtures().join("proctree/images");
    let victim = pids[3];
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; \
         CRYO_FAULT=task-error:{victim} {CRYO} restore -D {} -d 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; exec sleep 100000",
        dir.display()
    );
    let ns = Ns::start(&script);
    let (rc, err) = ns.cryo_result();
    assert_ne!(rc, 0);
    assert!(
        err.contains(&format!("pid {victim}")) && err.contains("injected fault"),
        "{err}"
    );
    wait_gone(&ns, &pids);
}

#[test]
fn a_failed_restore_removes_its_ghost_files() {
    build_fixture("ghost_file");
    if refused_by_this_cpu("ghost_file") {
        return;
    }
    let pid = pstree_pids("ghost_file")[0];
    let dir = fixtures().join("ghost_file/images");
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; \
         CRYO_FAULT=task-error:{pid} {CRYO} restore -D {} -d 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; exec sleep 100000",
        dir.display()
    );
    let ns = Ns::start(&script);
    let (rc, _) = ns.cryo_result();
    assert_ne!(rc, 0);
    wait_gone(&ns, &[pid]);
    assert!(!ns.anchor("ghost.dat").exists(), "ghost file left behind");
}

#[test]
fn killing_cryo_mid_restore_leaves_no_task() {
    build_fixture("proctree");
    if refused_by_this_cpu("proctree") {
        return;
    }
    let pids = pstree_pids("proctree");
    let dir = fixtures().join("proctree/images");
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; \
         (CRYO_FAULT=stall-before-resume exec {CRYO} restore -D {} -d 2>/tmp/anchor/.cryo-err) & echo $! > /tmp/anchor/.cryo-pid; \
         exec sleep 100000",
        dir.display()
    );
    let ns = Ns::start(&script);
    let deadline = Instant::now() + Duration::from_secs(30);
    let cryo: i32 = loop {
        if let Ok(s) = std::fs::read_to_string(ns.anchor(".cryo-pid")) {
            if s.ends_with('\n') {
                break s.trim().parse().unwrap();
            }
        }
        assert!(Instant::now() < deadline, "cryo did not start");
        std::thread::sleep(Duration::from_millis(10));
    };
    // Wait until every task of the tree exists and waits at the barrier
    // (in futex(2)): the restore is in the middle.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all_waiting = pids.iter().all(|p| {
            ns.outer(*p).is_some_and(|o| {
                std::fs::read_to_string(format!("/proc/{o}/syscall")).is_ok_and(|s| s.starts_with("202 "))
            })
        });
        if all_waiting {
            break;
        }
        assert!(Instant::now() < deadline, "the tasks never reached the barrier");
        std::thread::sleep(Duration::from_millis(10));
    }
    ns.kill(cryo, libc::SIGKILL);
    wait_gone(&ns, &pids);
}

/// `cryo dump` a fixture program started in a fresh namespace, then `cryo
/// restore` (without -d: cryo waits for the root) the same images twice.
/// Between rounds the test calls `check(ns, pid, round)`; the root is then
/// SIGKILLed and the next restore starts.
fn dump_restore_twice(name: &str, ready: &str, check: impl Fn(&Ns, i32, u32)) {
    build_fixture(name);
    dump_restore_cmd_twice(&format!("/tmp/cryo-fx/bin/{name}"), ready, check)
}

/// [`dump_restore_twice`] for any program started by the shell command `cmd`.
fn dump_restore_cmd_twice(cmd: &str, ready: &str, check: impl Fn(&Ns, i32, u32)) {
    dump_restore_cmd_twice_with(cmd, ready, "", "", check)
}

/// `tests/progs/<prog> /tmp/anchor` dumped and restored twice ([`dump_restore_cmd_twice`]): after each
/// restore `also` runs, then the program checks itself ([`Ns::ask`] with `verify` and `what`) and must
/// answer `want`.
fn self_check_twice(prog: &str, ready: &str, verify: &str, what: &str, want: &str, also: impl Fn(&Ns, i32, u32)) {
    let prog = build_prog(prog);
    dump_restore_cmd_twice(&format!("{} /tmp/anchor", prog.display()), ready, |ns, pid, round| {
        also(ns, pid, round);
        let v = ns.ask(pid, verify, what);
        assert_eq!(v.trim(), want, "round {round}");
    });
}

/// [`dump_restore_cmd_twice`] with extra options (`opts`) given to both
/// `cryo dump` and `cryo restore`, and shell commands run right before the
/// dump (`pre_dump`; `$P` is the program's pid).
fn dump_restore_cmd_twice_with(cmd: &str, ready: &str, opts: &str, pre_dump: &str, check: impl Fn(&Ns, i32, u32)) {
    dump_restore_cmd_twice_in(false, cmd, ready, opts, pre_dump, check)
}

/// [`dump_restore_cmd_twice_with`] in a fresh network namespace too (its
/// loopback up): the program, the dump and both restores run there.
fn dump_restore_cmd_twice_net(cmd: &str, ready: &str, opts: &str, check: impl Fn(&Ns, i32, u32)) {
    dump_restore_cmd_twice_in(true, cmd, ready, opts, "", check)
}

fn dump_restore_cmd_twice_in(
    net: bool,
    cmd: &str,
    ready: &str,
    opts: &str,
    pre_dump: &str,
    check: impl Fn(&Ns, i32, u32),
) {
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; {} \
         {cmd} >/dev/null 2>&1 </dev/null & P=$!; \
         while [ ! -s /tmp/anchor/{ready} ]; do sleep 0.02; done; {pre_dump} \
         mkdir /tmp/anchor/img; {CRYO} dump {opts} -t $P -D /tmp/anchor/img 2>/tmp/anchor/.dump-err; echo $? > /tmp/anchor/.dump-rc; wait $P; \
         echo $P > /tmp/anchor/.root; \
         for i in 1 2; do \
           {CRYO} restore {opts} -D /tmp/anchor/img 2>/tmp/anchor/.cryo-err$i & R=$!; \
           while [ ! -e /tmp/anchor/.next$i ]; do sleep 0.02; done; \
           kill -9 $P; wait $R; echo $? > /tmp/anchor/.cryo-rc$i; \
         done; exec sleep 100000",
        if net { "ip link set lo up;" } else { "" }
    );
    let ns = if net {
        Ns::start_net(&script)
    } else {
        Ns::start(&script)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let rc = loop {
        if let Ok(s) = std::fs::read_to_string(ns.anchor(".dump-rc")) {
            if s.ends_with('\n') {
                break s.trim().to_string();
            }
        }
        assert!(Instant::now() < deadline, "cryo dump did not finish");
        std::thread::sleep(Duration::from_millis(20));
    };
    let derr = std::fs::read_to_string(ns.anchor(".dump-err")).unwrap_or_default();
    assert_eq!(rc, "0", "cryo dump of {cmd} failed: {derr}");
    let root: i32 = loop {
        if let Ok(s) = std::fs::read_to_string(ns.anchor(".root")) {
            if s.ends_with('\n') {
                break s.trim().parse().unwrap();
            }
        }
        assert!(Instant::now() < deadline, "no root pid");
        std::thread::sleep(Duration::from_millis(20));
    };
    let img = ns.anchor("img");
    let before = dir_digest(&img);
    for round in 1..=2u32 {
        // Restored: the root runs again with its pid.
        let deadline = Instant::now() + Duration::from_secs(30);
        while ns.outer(root).is_none() || !ns.inner_pids().contains(&root) {
            let err = std::fs::read_to_string(ns.anchor(&format!(".cryo-err{round}"))).unwrap_or_default();
            assert!(
                Instant::now() < deadline && !err.contains("error"),
                "round {round}: not restored: {err}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        check(&ns, root, round);
        // Kill the whole restored tree (children outlive a killed parent).
        let set = cryo_image::ImageSet::open(&img).unwrap();
        for p in set.pstree().unwrap().iter().skip(1) {
            // (a check may have ended some of them already)
            if ns.outer(p.pid as i32).is_some() {
                ns.kill(p.pid as i32, libc::SIGKILL);
            }
        }
        std::fs::write(ns.anchor(&format!(".next{round}")), "").unwrap();
        // Without -d cryo waits for the root and exits with its status.
        let rcf = ns.anchor(&format!(".cryo-rc{round}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&rcf).is_ok_and(|s| s.ends_with('\n')) {
            assert!(Instant::now() < deadline, "round {round}: cryo restore did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            std::fs::read_to_string(&rcf).unwrap().trim(),
            "137",
            "round {round}: exit status of the SIGKILLed root"
        );
    }
    assert_eq!(dir_digest(&img), before, "restore modified the images");
}

#[test]
fn dump_restore_loop_heap_twice() {
    dump_restore_twice("loop_heap", "loop_heap.status", |ns, pid, round| {
        let _ = std::fs::remove_file(ns.anchor("loop_heap.verify.status"));
        wait_advance(ns, "loop_heap.status", "cnt");
        ns.kill(pid, libc::SIGUSR1);
        let v = ns.wait_status("loop_heap.verify.status", "heap=");
        assert!(
            v.contains(&format!("pid={pid} ")) && v.contains("heap=ok"),
            "round {round}: {v}"
        );
    });
}

#[test]
fn dump_restore_threads4_twice() {
    dump_restore_twice("threads4", "threads4.status", |ns, pid, round| {
        let _ = std::fs::remove_file(ns.anchor("threads4.verify.status"));
        wait_advance(ns, "threads4.status", "total");
        let o = ns.outer(pid).unwrap();
        assert_eq!(
            std::fs::read_dir(format!("/proc/{o}/task")).unwrap().count(),
            4,
            "round {round}"
        );
        ns.kill(pid, libc::SIGUSR1);
        let v = ns.wait_status("threads4.verify.status", "blocks=");
        assert!(v.contains("blocks=ok"), "round {round}: {v}");
    });
}

#[test]
fn dump_restore_proctree_twice() {
    dump_restore_twice("proctree", "proctree.grandchild.status", |ns, _pid, round| {
        wait_advance(ns, "proctree.parent.status", "c");
        let kids: Vec<i32> = field(&ns.wait_status("proctree.parent.status", "kids="), "kids")
            .split(',')
            .map(|k| k.parse().unwrap())
            .collect();
        let grandchild = field(&ns.wait_status("proctree.grandchild.status", "pid="), "pid")
            .parse::<i32>()
            .unwrap();
        for tag in ["child0", "child1", "child2", "grandchild"] {
            let _ = std::fs::remove_file(ns.anchor(&format!("proctree.{tag}.verify.status")));
        }
        for p in kids.iter().chain([&grandchild]) {
            ns.kill(*p, libc::SIGUSR1);
        }
        for tag in ["child0", "child1", "child2", "grandchild"] {
            let v = ns.wait_status(&format!("proctree.{tag}.verify.status"), "heap=");
            assert!(v.contains("heap=ok"), "round {round}: {tag}: {v}");
        }
    });
}

#[test]
fn dump_restore_pipe_unread_twice() {
    dump_restore_twice("pipe_unread", "pipe_unread.child.status", |ns, _pid, round| {
        let kid = field(&ns.wait_status("pipe_unread.parent.status", "kid="), "kid")
            .parse::<i32>()
            .unwrap();
        wait_advance(ns, "pipe_unread.child.status", "c");
        ns.kill(kid, libc::SIGUSR1);
        let v = ns.wait_status("pipe_unread.child.status", "VERIFY");
        assert!(v.contains("got=16384") && v.contains("data=ok"), "round {round}: {v}");
    });
}

#[test]
fn dump_restore_ghost_file_twice() {
    dump_restore_twice("ghost_file", "ghost_file.status", |ns, pid, round| {
        let _ = std::fs::remove_file(ns.anchor("ghost_file.verify.status"));
        ns.kill(pid, libc::SIGUSR1);
        let v = ns.wait_status("ghost_file.verify.status", "data=");
        assert!(v.contains("offset=1000") && v.contains("data=ok"), "round {round}: {v}");
        assert!(
            !ns.anchor("ghost.dat").exists(),
            "round {round}: ghost file left on disk"
        );
    });
}

#[test]
fn dump_restore_fdzoo_twice() {
    dump_restore_twice("fdzoo", "fdzoo.status", check_fdzoo);
}

/// eventfd counter and flags, timerfds (periodic, absolute with the date
/// kept, an unread expiry), signalfd, inotify watches at their wd numbers and
/// epoll items under their fd numbers all survive dump and restore: the
/// program checks them itself (tests/progs/fdkinds.c).
#[test]
fn dump_restore_keeps_eventfd_timerfd_signalfd_inotify_epoll_twice() {
    let prog = build_prog("fdkinds");
    dump_restore_cmd_twice(
        &format!("{} /tmp/anchor", prog.display()),
        "fdkinds.status",
        |ns, pid, round| {
            let _ = std::fs::remove_file(ns.anchor("fdkinds.verify"));
            wait_advance(ns, "fdkinds.status", "ticks");
            ns.kill(pid, libc::SIGUSR1);
            let v = ns.wait_status("fdkinds.verify", "");
            assert_eq!(v.trim(), "ok", "round {round}");
            // SIGUSR2 arrives through the signalfd and epoll.
            ns.kill(pid, libc::SIGUSR2);
            let deadline = Instant::now() + Duration::from_secs(20);
            while field(&ns.wait_status("fdkinds.status", "sigs="), "sigs") == "0" {
                assert!(Instant::now() < deadline, "round {round}: SIGUSR2 not read");
                std::thread::sleep(Duration::from_millis(20));
            }
        },
    );
}

/// The same objects shared by a parent and its child: the epoll items are
/// added once (by the parent, first holder), both processes use them.
#[test]
fn dump_restore_shares_epoll_and_friends_between_parent_and_child() {
    let prog = build_prog("fdkinds");
    dump_restore_cmd_twice(
        &format!("{} /tmp/anchor fork", prog.display()),
        "fdkinds.child.status",
        |ns, pid, round| {
            let kid: i32 = field(&ns.wait_status("fdkinds.child.status", "pid="), "pid")
                .parse()
                .unwrap();
            assert_ne!(kid, pid);
            for (who, p) in [("fdkinds", pid), ("fdkinds.child", kid)] {
                let _ = std::fs::remove_file(ns.anchor(&format!("{who}.verify")));
                ns.kill(p, libc::SIGUSR1);
                let v = ns.wait_status(&format!("{who}.verify"), "");
                assert_eq!(v.trim(), "ok", "round {round}: {who}");
            }
            let o = ns.outer(pid).unwrap();
            let ep = std::fs::read_to_string(format!("/proc/{o}/fdinfo/9")).unwrap();
            assert_eq!(
                ep.lines().filter(|l| l.starts_with("tfd:")).count(),
                4,
                "items added once: {ep}"
            );
        },
    );
}

#[test]
fn dump_restore_keeps_signals_timers_altstack_umask_rlimits_fds_cwd() {
    self_check_twice("rstate", "state.ready", "state.verify", "", "state=ok", |_, _, _| {});
}

/// membarrier() registrations (per mm) come back: the program registered
/// for private expedited barriers (and their RSEQ flavour), and after each
/// restore GET_REGISTRATIONS answers the same mask and the barriers work
/// (unregistered they fail with EPERM); the image holds CRIU's mask.
#[test]
fn dump_restore_keeps_membarrier_registrations_twice() {
    let prog = build_prog("rmembarrier");
    dump_restore_cmd_twice(
        &format!("{} /tmp/anchor", prog.display()),
        "membarrier.ready",
        |ns, pid, round| {
            let ready = ns.wait_status("membarrier.ready", "\n");
            let mask = ready.split_whitespace().nth(1).unwrap().to_string();
            let m = u32::from_str_radix(mask.trim_start_matches("0x"), 16).unwrap();
            assert_ne!(m & cryo_engine::membarrier::REGISTER_PRIVATE_EXPEDITED, 0, "{ready}");
            let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
            let tc = set.core(pid as u32).unwrap().tc.unwrap();
            assert_eq!(tc.membarrier_registration_mask, Some(m), "core-{pid}.img");
            let v = ns.ask(pid, "membarrier.verify", "\n");
            assert_eq!(v.trim(), format!("ok mask={mask}"), "round {round}");
        },
    );
}

/// The audit loginuid comes back: the program runs with loginuid 1234 (set
/// by its shell before exec) while cryo has none; the restored task sets it
/// again (only the task itself may), and the program finds it unchanged.
#[test]
fn dump_restore_keeps_a_set_loginuid_twice() {
    let prog = build_prog("rstate");
    dump_restore_cmd_twice(
        &format!(
            "sh -c 'echo 1234 > /proc/self/loginuid && exec {} /tmp/anchor'",
            prog.display()
        ),
        "state.ready",
        |ns, pid, round| {
            let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
            assert_eq!(set.core(pid as u32).unwrap().tc.unwrap().loginuid, Some(1234));
            // Asked first: the answer comes from the restored program (its
            // task may still be setting up its memory before that).
            let v = ns.ask(pid, "state.verify", "");
            assert_eq!(v.trim(), "state=ok", "round {round}");
            let o = ns.outer(pid).unwrap();
            let l = std::fs::read_to_string(format!("/proc/{o}/loginuid")).unwrap();
            assert_eq!(l.trim(), "1234", "round {round}");
        },
    );
}

/// A loginuid the kernel will not set fails the restore with a clear error
/// and leaves no task: cryo runs with its own loginuid (999) and without
/// CAP_AUDIT_CONTROL, so a task inheriting 999 may not change it to 1234.
#[test]
fn a_loginuid_that_cannot_be_set_fails_the_restore_cleanly() {
    let prog = build_prog("rstate");
    let ns = Ns::start(&format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         sh -c 'echo 1234 > /proc/self/loginuid && exec {} /tmp/anchor' >/dev/null 2>&1 </dev/null & P=$!; \
         while [ ! -s /tmp/anchor/state.ready ]; do sleep 0.02; done; echo $P > /tmp/anchor/.root; \
         mkdir img; {CRYO} dump -t $P -D /tmp/anchor/img 2>/tmp/anchor/.dump-err; wait $P; \
         sh -c 'echo 999 > /proc/self/loginuid && exec setpriv --bounding-set=-audit_control \
           {CRYO} restore -D /tmp/anchor/img' 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; \
         exec sleep 100000",
        prog.display()
    ));
    let (rc, err) = ns.cryo_result();
    assert_ne!(rc, 0, "restore succeeded: {err}");
    let pid: i32 = std::fs::read_to_string(ns.anchor(".root"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("loginuid 1234") && err.contains("CAP_AUDIT_CONTROL"),
        "{err}"
    );
    wait_gone(&ns, &[pid]);
}

#[test]
fn dump_restore_memfd_and_shared_anon_twice() {
    dump_restore_twice("memfd_shm", "memfd_shm.child.status", |ns, pid, round| {
        // The child sees the parent's counter move in the shared mapping.
        wait_advance(ns, "memfd_shm.child.status", "shared_ctr");
        let kid = field(&ns.wait_status("memfd_shm.child.status", "pid="), "pid")
            .parse::<i32>()
            .unwrap();
        for who in ["parent", "child"] {
            let _ = std::fs::remove_file(ns.anchor(&format!("memfd_shm.{who}.verify.status")));
        }
        ns.kill(pid, libc::SIGUSR1);
        ns.kill(kid, libc::SIGUSR1);
        for who in ["parent", "child"] {
            let v = ns.wait_status(&format!("memfd_shm.{who}.verify.status"), "shanon=");
            assert!(
                v.contains("memfd=ok") && v.contains("shanon=ok"),
                "round {round}: {who}: {v}"
            );
        }
    });
}

/// A stopped task comes back stopped (state T), twice, with exactly the
/// dumped memory layout (the restorer is gone from its maps) and goes on
/// correctly after SIGCONT.
#[test]
fn a_stopped_task_comes_back_stopped_without_the_restorer() {
    stopped_twice("loop_heap", "cnt", "heap=ok");
}

/// The same with four threads: every one of them stopped.
#[test]
fn a_stopped_multithreaded_task_comes_back_stopped() {
    stopped_twice("threads4", "total", "blocks=ok");
}

/// Dump fixture program `name` stopped, restore it twice; `key` advances
/// in its status once it runs again, `ok` is in its verify status.
fn stopped_twice(name: &str, key: &str, ok: &str) {
    build_fixture(name);
    dump_restore_cmd_twice_with(
        &format!("/tmp/cryo-fx/bin/{name}"),
        &format!("{name}.status"),
        "",
        "kill -STOP $P;",
        |ns, pid, round| {
            let o = ns.outer(pid).unwrap();
            let state = |t: i32| {
                let st = std::fs::read_to_string(format!("/proc/{o}/task/{t}/status")).unwrap();
                st.lines().find(|l| l.starts_with("State:")).unwrap().to_string()
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            let tasks = || -> Vec<i32> {
                std::fs::read_dir(format!("/proc/{o}/task"))
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().parse().unwrap())
                    .collect()
            };
            while !tasks().into_iter().all(|t| state(t).contains("(stopped)")) {
                assert!(Instant::now() < deadline, "round {round}: not stopped: {}", state(o));
                std::thread::sleep(Duration::from_millis(20));
            }
            // Exactly the dumped layout, nothing more: the same ranges with
            // the same protection (adjacent ranges of equal protection
            // merged on both sides, as the kernel may merge or split them).
            let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
            let dumped: Vec<(u64, u64, u32)> = set
                .mm(pid as u32)
                .unwrap()
                .vmas
                .iter()
                .map(|v| (v.start, v.end, v.prot))
                .collect();
            let maps = std::fs::read_to_string(format!("/proc/{o}/maps")).unwrap();
            let now: Vec<(u64, u64, u32)> = maps
                .lines()
                .map(|l| {
                    let mut w = l.split_whitespace();
                    let (a, b) = w.next().unwrap().split_once('-').unwrap();
                    let perms = w.next().unwrap().as_bytes();
                    let prot =
                        (perms[0] == b'r') as u32 | ((perms[1] == b'w') as u32) << 1 | ((perms[2] == b'x') as u32) << 2;
                    (
                        u64::from_str_radix(a, 16).unwrap(),
                        u64::from_str_radix(b, 16).unwrap(),
                        prot,
                    )
                })
                .collect();
            let merged = |v: &[(u64, u64, u32)]| {
                let mut out: Vec<(u64, u64, u32)> = Vec::new();
                for &(a, b, p) in v {
                    match out.last_mut() {
                        Some(l) if l.1 == a && l.2 == p => l.1 = b,
                        _ => out.push((a, b, p)),
                    }
                }
                out.iter()
                    .map(|(a, b, p)| format!("{a:x}-{b:x}:{p}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            assert_eq!(
                merged(&now),
                merged(&dumped),
                "round {round}: maps of the stopped task:\n{maps}"
            );
            assert!(state(o).contains("(stopped)"), "round {round}");
            assert_eq!(tasks().len(), set.pstree().unwrap()[0].threads.len(), "round {round}");
            let _ = std::fs::remove_file(ns.anchor(&format!("{name}.status")));
            let _ = std::fs::remove_file(ns.anchor(&format!("{name}.verify.status")));
            ns.kill(pid, libc::SIGCONT);
            wait_advance(ns, &format!("{name}.status"), key);
            ns.kill(pid, libc::SIGUSR1);
            let v = ns.wait_status(&format!("{name}.verify.status"), ok);
            assert!(v.contains(ok), "round {round}: {v}");
        },
    );
}

#[test]
fn a_task_in_its_own_namespace_is_refused_up_front() {
    build_fixture("loop_heap");
    if refused_by_this_cpu("loop_heap") {
        return;
    }
    let pid = pstree_pids("loop_heap")[0];
    let dir = copy_images("loop_heap", "ownns");
    let set = cryo_image::ImageSet::open(&dir).unwrap();
    let mut ids = set.ids(pid as u32).unwrap();
    ids.net_ns_id = Some(ids.net_ns_id.unwrap_or(0) + 100);
    cryo_image::write_entries(dir.join(format!("ids-{pid}.img")), "IDS", &[ids]).unwrap();
    let ns = Ns::restore(&dir, &[]);
    let (rc, err) = ns.cryo_result();
    assert_ne!(rc, 0);
    assert!(
        // Network namespaces are restored now: the one named has no images.
        err.contains(&format!("netdev-{}.img", ids.net_ns_id.unwrap())),
        "{err}"
    );
    assert!(!ns.inner_pids().contains(&pid));
    drop(ns);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dump_restore_keeps_a_zombie_with_its_exit_status() {
    let prog = build_prog("zombie");
    let cmd = format!("sh -c 'exec {} /tmp/anchor > /tmp/anchor/zombie.out'", prog.display());
    dump_restore_cmd_twice(&cmd, "zombie.out", |ns, pid, round| {
        let out = ns.wait_status("zombie.out", "zombie=");
        let kid: i32 = field(&out, "zombie").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // The zombie is back: dead, unreaped, a child of the restored parent,
            // with the status it exited with (3).
            if let Some(o) = ns.outer_any(kid) {
                let stat = std::fs::read_to_string(format!("/proc/{o}/stat")).unwrap_or_default();
                let f: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
                if f.first() == Some(&"Z") {
                    assert_eq!(
                        f.get(49).copied(),
                        Some("768"),
                        "round {round}: exit status of the zombie: {stat}"
                    );
                    let ppid: i32 = f[1].parse().unwrap();
                    assert_eq!(Some(ppid), ns.outer(pid), "round {round}: the zombie's parent");
                    break;
                }
            }
            assert!(Instant::now() < deadline, "round {round}: no zombie {kid}");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(ns.ask(pid, "verify", "ok").trim(), "ok", "round {round}");
    });
}

#[test]
fn a_different_vdso_is_reached_through_a_jump_table() {
    // CRYO_FAULT=vdso-jump-table makes the restore treat the running vdso as
    // different from the dumped one: the running vdso goes elsewhere and the
    // dumped copy at the old address jumps into it.
    let prog = build_prog("vdsoclock");
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         {} /tmp/anchor >/dev/null 2>&1 </dev/null & P=$!; \
         while [ ! -s /tmp/anchor/clock.status ]; do sleep 0.02; done; \
         mkdir img; {CRYO} dump -t $P -D /tmp/anchor/img 2>/tmp/anchor/.dump-err; wait $P; echo $P > /tmp/anchor/.root; \
         rm -f /tmp/anchor/clock.status; \
         CRYO_FAULT=vdso-jump-table {CRYO} restore -D /tmp/anchor/img -d 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; \
         exec sleep 100000",
        prog.display()
    );
    let ns = Ns::start(&script);
    let (rc, err) = ns.cryo_result();
    assert_eq!(rc, 0, "{err}");
    let pid: i32 = std::fs::read_to_string(ns.anchor(".root"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
    let dumped_vdso = set
        .mm(pid as u32)
        .unwrap()
        .vmas
        .iter()
        .find(|v| v.status & (1 << 3) != 0)
        .unwrap()
        .start;
    let o = ns.outer(pid).unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{o}/maps")).unwrap();
    let vdso_line = maps.lines().find(|l| l.ends_with("[vdso]")).unwrap();
    let at = u64::from_str_radix(vdso_line.split('-').next().unwrap(), 16).unwrap();
    assert_ne!(at, dumped_vdso, "the running vdso was not moved elsewhere");
    let old = maps
        .lines()
        .find(|l| l.starts_with(&format!("{dumped_vdso:x}-")))
        .expect("the dumped vdso's place is mapped");
    assert!(old.split_whitespace().nth(1) == Some("r-xp"), "{old}");
    // The old place holds the jump table: `movabs rax, imm64; jmp rax` into
    // the running vdso, one per symbol.
    let end = u64::from_str_radix(
        vdso_line.split('-').nth(1).unwrap().split_whitespace().next().unwrap(),
        16,
    )
    .unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{o}/mem")).unwrap();
    let mut old_bytes = vec![0u8; 8192];
    use std::io::{Read as _, Seek as _};
    mem.seek(std::io::SeekFrom::Start(dumped_vdso)).unwrap();
    mem.read_exact(&mut old_bytes).unwrap();
    let jumps = old_bytes
        .windows(12)
        .filter(|w| w[0] == 0x48 && w[1] == 0xb8 && w[10] == 0xff && w[11] == 0xe0)
        .map(|w| u64::from_le_bytes(w[2..10].try_into().unwrap()))
        .filter(|t| (at..end).contains(t))
        .count();
    assert!(jumps >= 4, "only {jumps} jumps into the running vdso");
    // The program reads the clocks through the old addresses: they work.
    wait_advance(&ns, "clock.status", "n");
    let s = ns.wait_status("clock.status", "real=");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for key in ["real", "tod"] {
        let v: i64 = field(&s, key).parse().unwrap();
        assert!((v - now).abs() < 60, "{key}={v}, now {now}");
    }
    wait_advance(&ns, "clock.status", "mono");
}

#[test]
fn file_locks_come_back_with_file_locks_and_are_refused_without() {
    let prog = build_prog("rlocks");
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         {} /tmp/anchor >/dev/null 2>&1 </dev/null & P=$!; \
         while [ ! -s /tmp/anchor/locks.ready ]; do sleep 0.02; done; \
         mkdir img; {CRYO} dump --file-locks -t $P -D /tmp/anchor/img 2>/tmp/anchor/.dump-err; wait $P; echo $P > /tmp/anchor/.root; \
         {CRYO} restore -D /tmp/anchor/img -d 2>/tmp/anchor/.cryo-err0; echo $? > /tmp/anchor/.cryo-rc0; \
         {CRYO} restore --file-locks -D /tmp/anchor/img -d 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; \
         exec sleep 100000",
        prog.display()
    );
    let ns = Ns::start(&script);
    let (rc, err) = ns.cryo_result();
    assert_eq!(
        rc,
        0,
        "{err} / dump: {}",
        std::fs::read_to_string(ns.anchor(".dump-err")).unwrap_or_default()
    );
    // Without --file-locks: refused, naming the image.
    assert_eq!(std::fs::read_to_string(ns.anchor(".cryo-rc0")).unwrap().trim(), "1");
    let err0 = std::fs::read_to_string(ns.anchor(".cryo-err0")).unwrap();
    assert!(
        err0.contains("filelocks.img") && err0.contains("--file-locks"),
        "{err0}"
    );
    // With it: the restored process holds both locks again.
    let pid: i32 = std::fs::read_to_string(ns.anchor(".root"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let o = ns.outer(pid).unwrap();
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    let mine: Vec<&str> = locks
        .lines()
        .filter(|l| l.split_whitespace().nth(4) == Some(&o.to_string()))
        .collect();
    assert!(
        mine.iter()
            .any(|l| l.contains("POSIX") && l.contains("WRITE") && l.ends_with(" 0 9")),
        "{mine:?}"
    );
    assert!(
        mine.iter().any(|l| l.contains("FLOCK") && l.contains("WRITE")),
        "{mine:?}"
    );
}

/// A shell job dumped with -j (its terminal, /dev/pts/A, belongs to a shell
/// outside the tree) is refused by `cryo restore` without -j, and with -j
/// comes back on the terminal of the session running cryo (/dev/pts/B): it
/// joins that session and process group, gets its termios and window size
/// back, and echoes a line typed on B.
#[test]
fn shell_job_comes_back_on_the_restorers_terminal() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let bin = build_prog("ttyjob");
    let (_ma, sa, _sa_fd) = pty::open_pty(33, 97);
    let (mut mb, sb, _sb_fd) = pty::open_pty(10, 20);
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         {bin} {sa} /tmp/anchor/job </dev/null >/dev/null 2>&1 & S=$!; \
         while [ ! -s /tmp/anchor/job ]; do sleep 0.02; done; J=$(cat /tmp/anchor/job); \
         mkdir img; {CRYO} dump -j -t $J -D img 2>.dump-err; echo $? > .dump-rc; wait $S; \
         {CRYO} restore -d -D img </dev/null 2>.noj-err; echo $? > .noj-rc; \
         setsid -c sh -c '{CRYO} restore -j -d -D /tmp/anchor/img 2>/tmp/anchor/.cryo-err; \
           echo $? > /tmp/anchor/.cryo-rc; exec sleep 100000' <{sb} >{sb} 2>&1 & \
         exec sleep 100000",
        bin = bin.display()
    );
    let ns = Ns::start(&script);
    let (rc, err) = ns.cryo_result();
    let dump_rc = std::fs::read_to_string(ns.anchor(".dump-rc")).unwrap();
    let dump_err = std::fs::read_to_string(ns.anchor(".dump-err")).unwrap();
    assert_eq!(dump_rc.trim(), "0", "cryo dump -j: {dump_err}");
    let noj = std::fs::read_to_string(ns.anchor(".noj-err")).unwrap();
    assert_ne!(std::fs::read_to_string(ns.anchor(".noj-rc")).unwrap().trim(), "0");
    assert!(noj.contains("--shell-job"), "restore without -j: {noj}");
    assert_eq!(rc, 0, "cryo restore -j: {err}");
    let job: i32 = std::fs::read_to_string(ns.anchor("job"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let outer = ns.outer(job).expect("the job runs again with its pid");
    for fd in 0..3 {
        let l = std::fs::read_link(format!("/proc/{outer}/fd/{fd}")).unwrap();
        assert_eq!(l.display().to_string(), sb, "fd {fd}");
    }
    // In the session of the shell that ran cryo, with B as its terminal.
    let stat = std::fs::read_to_string(format!("/proc/{outer}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    let rdev = std::fs::metadata(&sb).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(f[4].parse::<u64>().unwrap(), rdev.rdev(), "controlling terminal is B");
    assert_ne!(f[3], job.to_string(), "not a session of its own");
    // The dumped window size is back on B.
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize.
    assert_eq!(unsafe { libc::ioctl(mb.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) }, 0);
    assert_eq!((ws.ws_row, ws.ws_col), (33, 97));
    // It reads from and writes to B.
    mb.write_all(b"world\n").unwrap();
    // Its /dev/tty is cryo's terminal too.
    let out = pty::read_until(&mut mb, "tty:world");
    assert!(out.contains("echo:world"), "{out}");
}

#[test]
fn dump_restore_fifo_shared_by_two_tasks_with_queued_bytes_twice() {
    let prog = build_prog("rfifo");
    dump_restore_cmd_twice(
        &format!("{} /tmp/anchor", prog.display()),
        "fifo.ready",
        |ns, pid, round| {
            let v = ns.ask(pid, "fifo.verify", "");
            assert_eq!(v.trim(), "fifo=ok", "round {round}");
            // The second restore must create the FIFO node again.
            if round == 1 {
                std::fs::remove_file(ns.anchor("fifo")).unwrap();
            }
        },
    );
}

/// Seccomp comes back per thread: the leader's filter chain (getppid ->
/// EXDEV, with no_new_privs), a strict-mode thread, and a thread whose chain
/// extends the leader's (getpgid -> EILSEQ). The program checks each thread's
/// filters itself and reports its /proc status lines, which must equal the
/// ones before the dump; in round 2 the strict thread makes a forbidden
/// syscall and the kernel kills it. A child process and its thread share
/// one chain (the leader installs it for both with TSYNC).
#[test]
fn dump_restore_seccomp_filters_and_strict_mode_twice() {
    seccomp_twice("");
}

/// The same when the engine does not trace the restored threads (the
/// fallback when seizing them fails): every thread installs its own chain as
/// the very last step before rt_sigreturn.
#[test]
fn seccomp_comes_back_untraced_too() {
    seccomp_twice("export CRYO_FAULT=keep-restorer;");
}

fn seccomp_twice(pre_dump: &str) {
    let prog = build_prog("rseccomp");
    dump_restore_cmd_twice_with(
        &format!("{} /tmp/anchor", prog.display()),
        "seccomp.ready",
        "",
        pre_dump,
        |ns, pid, round| {
            let v = ns.ask(pid, "seccomp.verify", "\n");
            assert_eq!(v.trim(), "ok", "round {round}");
            let before = std::fs::read_to_string(ns.anchor("seccomp.before")).unwrap();
            let after = std::fs::read_to_string(ns.anchor("seccomp.after")).unwrap();
            assert!(before.contains("Seccomp_filters:\t3"), "{before}");
            assert_eq!(after, before, "round {round}: /proc status seccomp lines");
            // The same seen from outside.
            let o = ns.outer(pid).unwrap();
            let mut seen: Vec<(String, String, String)> = std::fs::read_dir(format!("/proc/{o}/task"))
                .unwrap()
                .flatten()
                .map(|t| {
                    let st = std::fs::read_to_string(t.path().join("status")).unwrap();
                    let f = |k: &str| field_tab(&st, k);
                    (f("Seccomp:"), f("Seccomp_filters:"), f("NoNewPrivs:"))
                })
                .collect();
            seen.sort();
            let want = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
            assert_eq!(
                seen,
                vec![want("1", "0", "0"), want("2", "2", "1"), want("2", "3", "1")],
                "round {round}"
            );
            // The child and its thread share the chain (restored with TSYNC).
            let kid: i32 = ns.wait_status("seccomp.child", "\n").trim().parse().unwrap();
            let _ = std::fs::remove_file(ns.anchor("seccomp.child.verify"));
            ns.kill(kid, libc::SIGUSR1);
            assert_eq!(
                ns.wait_status("seccomp.child.verify", "\n").trim(),
                "ok",
                "round {round}"
            );
            let ko = ns.outer(kid).unwrap();
            let kids: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{ko}/task"))
                .unwrap()
                .flatten()
                .map(|t| {
                    let st = std::fs::read_to_string(t.path().join("status")).unwrap();
                    (field_tab(&st, "Seccomp_filters:"), field_tab(&st, "NoNewPrivs:"))
                })
                .collect();
            assert_eq!(
                kids,
                vec![("2".into(), "1".into()); 2],
                "round {round}: the child's threads"
            );
            // The LOG flag of T's own filter is back (the kernel's metadata),
            // and in the image.
            let t_tid = std::fs::read_dir(format!("/proc/{o}/task"))
                .unwrap()
                .flatten()
                .find(|t| {
                    std::fs::read_to_string(t.path().join("status"))
                        .unwrap()
                        .contains("Seccomp_filters:\t3")
                })
                .map(|t| t.file_name().to_string_lossy().parse::<i32>().unwrap())
                .unwrap();
            assert_eq!(
                seccomp_flags(t_tid, 3),
                vec![0, 0, 2],
                "round {round}: filter flags (oldest first)"
            );
            let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
            let se: Vec<cryo_image::pb::SeccompEntry> = set.entries("seccomp.img", "SECCOMP").unwrap();
            assert_eq!(
                se[0].seccomp_filters.iter().filter(|f| f.flags == Some(2)).count(),
                1,
                "one LOG filter in seccomp.img"
            );
            if round == 2 {
                // Strict mode is really on: a forbidden syscall kills the thread.
                ns.kill(pid, libc::SIGUSR2);
                let deadline = Instant::now() + Duration::from_secs(20);
                while std::fs::read_dir(format!("/proc/{o}/task")).unwrap().count() != 2 {
                    assert!(
                        Instant::now() < deadline,
                        "the strict thread survived a forbidden syscall"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        },
    );
}

/// SECCOMP_FILTER_FLAG_* of the `n` filters of thread `tid`, oldest first
/// (PTRACE_SECCOMP_GET_METADATA while the thread is seized and stopped).
fn seccomp_flags(tid: i32, n: u64) -> Vec<u64> {
    const PTRACE_SEIZE: libc::c_uint = 0x4206;
    const PTRACE_INTERRUPT: libc::c_uint = 0x4207;
    const PTRACE_SECCOMP_GET_METADATA: libc::c_uint = 0x420d;
    // SAFETY: (every ptrace/waitpid below) calls on a thread of a test process;
    // the metadata buffer is two u64 as the kernel expects.
    // SAFETY: as above.
    assert_eq!(unsafe { libc::ptrace(PTRACE_SEIZE, tid, 0, 0) }, 0, "seize {tid}");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::ptrace(PTRACE_INTERRUPT, tid, 0, 0) }, 0);
    let mut st = 0;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::waitpid(tid, &mut st, libc::__WALL) }, tid);
    let mut out = Vec::new();
    for i in 0..n {
        let mut md = [i, 0u64];
        // SAFETY: as above.
        let r = unsafe { libc::ptrace(PTRACE_SECCOMP_GET_METADATA, tid, 16usize, md.as_mut_ptr()) };
        assert!(
            r >= 0,
            "PTRACE_SECCOMP_GET_METADATA {i}: {}",
            std::io::Error::last_os_error()
        );
        out.push(md[1]);
    }
    // SAFETY: as above.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0) };
    out
}

/// The value after `key` in a /proc status text.
fn field_tab(status: &str, key: &str) -> String {
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string()
}

/// POSIX, flock and OFD locks come back with --file-locks, twice: the
/// restored program forks a checker that finds each lock held (and the rest
/// of the OFD-locked file free); the OFD lock is in filelocks.img as CRIU
/// writes it (FL_OFD, the owning task's pid and fd).
#[test]
fn dump_restore_posix_flock_and_ofd_locks_twice() {
    let prog = build_prog("rlocks");
    dump_restore_cmd_twice_with(
        &format!("{} /tmp/anchor", prog.display()),
        "locks.ready",
        "--file-locks",
        "",
        |ns, pid, round| {
            let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
            let locks: Vec<cryo_image::pb::FileLockEntry> = set.entries("filelocks.img", "FILE_LOCKS").unwrap();
            let mut kinds: Vec<(u32, i32)> = locks.iter().map(|l| (l.flag, l.pid)).collect();
            kinds.sort();
            assert_eq!(kinds, vec![(1, pid), (2, pid), (4, pid)], "round {round}");
            assert_eq!(ns.ask(pid, "locks.verify", "\n").trim(), "ok", "round {round}");
            // And from outside: the OFD lock is listed again (pid -1).
            let o = ns.outer(pid).unwrap();
            let st = std::fs::read_to_string(format!("/proc/{o}/fdinfo/7")).unwrap();
            assert!(
                st.contains("OFDLCK ADVISORY  WRITE -1") && st.contains(" 100 199"),
                "{st}"
            );
        },
    );
}

/// Time namespaces: a task in one of its own (its ids name another time
/// namespace than the dumper's) whose timens-<id>.img is missing is refused
/// before any task exists, naming the image; a
/// timens-0.img that is not a valid time is refused naming it. timens-0.img
/// holds the dumper's clocks at dump time (CRIU's meaning), not offsets: a
/// set whose monotonic clock is ahead of now restores, with a warning.
#[test]
fn time_namespaces_are_refused_and_dumped_clocks_checked() {
    use cryo_image::pb;
    build_fixture("loop_heap");
    if refused_by_this_cpu("loop_heap") {
        return;
    }
    let pid = pstree_pids("loop_heap")[0];
    let refused = |dir: &Path, want: &[&str]| {
        let ns = Ns::restore(dir, &[]);
        let (rc, err) = ns.cryo_result();
        assert_ne!(rc, 0, "{err}");
        for w in want {
            assert!(err.contains(w), "expected {w:?} in: {err}");
        }
        assert!(!ns.inner_pids().contains(&pid), "a task was created");
    };
    // 1. The task's own time namespace, whose image is missing (time
    // namespaces are restored now: tests/restore/ns.rs).
    let dir = copy_images("loop_heap", "timens-own");
    let set = cryo_image::ImageSet::open(&dir).unwrap();
    let mut ids = set.ids(pid as u32).unwrap();
    let own = ids.time_ns_id.unwrap_or(0) + 100;
    ids.time_ns_id = Some(own);
    cryo_image::write_entries(dir.join(format!("ids-{pid}.img")), "IDS", &[ids]).unwrap();
    refused(&dir, &[&format!("timens-{own}.img"), "No such file"]);
    std::fs::remove_dir_all(&dir).unwrap();
    // 3. An invalid time.
    let dir = copy_images("loop_heap", "timens-bad");
    let set = cryo_image::ImageSet::open(&dir).unwrap();
    let mut t: Vec<pb::TimensEntry> = set.entries("timens-0.img", "TIMENS").unwrap();
    t[0].boottime.tv_nsec = 2_000_000_000;
    cryo_image::write_entries(dir.join("timens-0.img"), "TIMENS", &t).unwrap();
    refused(&dir, &["timens-0.img", "boottime", "not a valid time"]);
    std::fs::remove_dir_all(&dir).unwrap();
    // 4. Dumped "later" than now (another boot): restored, with a warning.
    let dir = copy_images("loop_heap", "timens-ahead");
    let set = cryo_image::ImageSet::open(&dir).unwrap();
    let mut t: Vec<pb::TimensEntry> = set.entries("timens-0.img", "TIMENS").unwrap();
    t[0].monotonic.tv_sec += 1 << 40;
    t[0].boottime.tv_sec += 1 << 40;
    cryo_image::write_entries(dir.join("timens-0.img"), "TIMENS", &t).unwrap();
    let ns = Ns::restore(&dir, &[]);
    let (rc, err) = ns.cryo_result();
    assert_eq!(rc, 0, "{err}");
    assert!(
        err.contains("warning") && err.contains("timens-0.img") && err.contains("go back"),
        "{err}"
    );
    ns.kill(pid, libc::SIGUSR1);
    let v = ns.wait_status("loop_heap.verify.status", "heap=");
    assert!(v.contains("heap=ok"), "{v}");
    drop(ns);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A seccomp filter that is no BPF program, and flags cryo cannot restore
/// (a user-notification listener), are refused before any task exists,
/// naming seccomp.img.
#[test]
fn bad_seccomp_filters_are_refused_up_front() {
    use cryo_image::pb;
    build_fixture("loop_heap");
    if refused_by_this_cpu("loop_heap") {
        return;
    }
    let pid = pstree_pids("loop_heap")[0];
    let cases: [(&str, Vec<u8>, Option<u32>, &str); 2] = [
        ("seccomp-short", vec![6, 0, 0, 0, 0], None, "not a BPF program"),
        (
            "seccomp-listener",
            vec![6, 0, 0, 0, 0, 0, 0xff, 0x7f],
            Some(8),
            "seccomp filter flags 0x8",
        ),
    ];
    for (tag, filter, flags, want) in cases {
        let dir = copy_images("loop_heap", tag);
        let set = cryo_image::ImageSet::open(&dir).unwrap();
        let mut core = set.core(pid as u32).unwrap();
        let tc = core.thread_core.as_mut().unwrap();
        tc.seccomp_mode = Some(2);
        tc.seccomp_filter = Some(0);
        cryo_image::write_entries(dir.join(format!("core-{pid}.img")), "CORE", &[core]).unwrap();
        let e = pb::SeccompEntry {
            seccomp_filters: vec![pb::SeccompFilter {
                filter,
                prev: None,
                flags,
            }],
        };
        cryo_image::write_entries(dir.join("seccomp.img"), "SECCOMP", &[e]).unwrap();
        let ns = Ns::restore(&dir, &[]);
        let (rc, err) = ns.cryo_result();
        assert_ne!(rc, 0, "{tag}: {err}");
        assert!(err.contains("seccomp.img") && err.contains(want), "{tag}: {err}");
        assert!(!ns.inner_pids().contains(&pid), "{tag}: a task was created");
        drop(ns);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// CPU affinity: threads pinned to {0}, {1} and {0,1} are dumped (the
/// sidecar lists the first two), restored twice, and the program finds every
/// thread's mask as it set it.
#[test]
fn dump_restore_keeps_per_thread_cpu_affinity_twice() {
    let prog = build_prog("affinity");
    dump_restore_cmd_twice(
        &format!("{} pin /tmp/anchor", prog.display()),
        "affinity.ready",
        |ns, pid, round| {
            let ready = ns.wait_status("affinity.ready", "t2=");
            let (main, t1) = (field(&ready, "main"), field(&ready, "t1"));
            assert_eq!(main, pid.to_string());
            let side = std::fs::read_to_string(ns.anchor("img/cryo.json")).unwrap();
            let side = cryo_image::sidecar::parse(&side).unwrap();
            assert!(side.eventfd_semaphore.is_empty());
            let got: Vec<(String, String)> = side
                .affinity
                .iter()
                .map(|(t, c)| (t.to_string(), cryo_image::sidecar::format_cpulist(c)))
                .collect();
            assert_eq!(got, vec![(main, "0".to_string()), (t1, "1".to_string())]);
            let v = ns.ask(pid, "affinity.verify", "affinity=");
            assert_eq!(v.trim(), "affinity=ok", "round {round}");
        },
    );
}

/// `Cpus_allowed_list` of a task (by outer pid).
fn cpus_allowed(pid: i32) -> String {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    st.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

/// A sidecar added to a CRIU 4.2 set pins its thread; a sidecar naming only
/// CPUs this machine does not have gives a warning and the default mask.
#[test]
fn affinity_sidecar_pins_criu_images_or_warns_when_the_cpus_are_missing() {
    build_fixture("loop_heap");
    if refused_by_this_cpu("loop_heap") {
        return;
    }
    let pid = pstree_pids("loop_heap")[0];
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    let online = online.trim();
    let last: u32 = online.rsplit(['-', ',']).next().unwrap().parse().unwrap();
    for (tag, cpus, want, warn) in [
        ("affin-pin", format!("{last}"), format!("{last}"), false),
        ("affin-missing", format!("{}", last + 1), online.to_string(), true),
    ] {
        let dir = copy_images("loop_heap", tag);
        // The version-2 cryo.json, and the version-1 file of earlier dumps.
        let (name, text) = if warn {
            (
                "cryo-affinity.json",
                format!("{{\"version\": 1, \"threads\": {{\"{pid}\": \"{cpus}\"}}}}"),
            )
        } else {
            (
                "cryo.json",
                format!("{{\"version\": 2, \"affinity\": {{\"{pid}\": \"{cpus}\"}}}}"),
            )
        };
        std::fs::write(dir.join(name), text).unwrap();
        let before = dir_digest(&dir);
        let ns = Ns::restore(&dir, &[]);
        let (rc, err) = ns.cryo_result();
        assert_eq!(rc, 0, "{tag}: {err}");
        assert_eq!(
            err.contains("warning") && err.contains(&format!("thread {pid}")),
            warn,
            "{tag}: {err}"
        );
        assert_eq!(cpus_allowed(ns.outer(pid).unwrap()), want, "{tag}");
        ns.kill(pid, libc::SIGUSR1);
        assert!(ns.wait_status("loop_heap.verify.status", "heap=").contains("heap=ok"));
        assert_eq!(dir_digest(&dir), before, "{tag}: images modified");
        drop(ns);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A corrupt sidecar, a bad CPU list, a tid that is not in the set and a
/// file id that is not an eventfd are refused before any task exists, naming
/// the file (and the thread or file).
#[test]
fn bad_affinity_sidecars_are_refused_before_any_task() {
    build_fixture("loop_heap");
    if refused_by_this_cpu("loop_heap") {
        return;
    }
    let pid = pstree_pids("loop_heap")[0];
    for (i, (text, needle)) in [
        (
            "{\"version\": 2, \"affinity\": {".to_string(),
            "not valid JSON".to_string(),
        ),
        (
            format!("{{\"version\": 2, \"affinity\": {{\"{pid}\": \"1-0\"}}}}"),
            format!("thread {pid}: bad CPU list"),
        ),
        (
            format!("{{\"version\": 2, \"affinity\": {{\"{}\": \"0\"}}}}", pid + 1),
            format!("thread {} is not a live thread", pid + 1),
        ),
        (
            "{\"version\": 2, \"eventfd_semaphore\": [1]}".to_string(),
            "file id 1 is not an eventfd".to_string(),
        ),
    ]
    .iter()
    .enumerate()
    {
        let dir = copy_images("loop_heap", &format!("affin-bad{i}"));
        std::fs::write(dir.join("cryo.json"), text).unwrap();
        let ns = Ns::restore(&dir, &[]);
        let (rc, err) = ns.cryo_result();
        assert_ne!(rc, 0, "{text}: restored");
        assert!(
            err.contains("cryo.json") && err.contains(needle.as_str()),
            "{text}: {err}"
        );
        assert!(!ns.inner_pids().contains(&pid), "{text}: a task was created");
        drop(ns);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// (ppid, pgid, sid) of the task with inner pid `inner`, as seen inside the namespace.
fn ns_ids(ns: &Ns, inner: i32) -> (i32, i32, i32) {
    let o = ns.outer(inner).unwrap_or_else(|| panic!("pid {inner} is not running"));
    let get = |pid: i32, key: &str| -> i32 {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let l = st.lines().find(|l| l.starts_with(key)).unwrap();
        l.split_whitespace().last().unwrap().parse().unwrap()
    };
    let outer_ppid = get(o, "PPid:");
    (get(outer_ppid, "NSpid:"), get(o, "NSpgid:"), get(o, "NSsid:"))
}

/// A double-forked daemon (tests/progs/daemon.c): its session and group are
/// led by an intermediate process that exited, and with `group` its child is
/// in a group whose leader exited too. `cryo dump` of the daemon, then `cryo
/// restore` twice: helper tasks with those pids recreate the session and the
/// groups and are gone afterwards; every task has its dumped sid and pgid, the
/// child its parent, and the daemon the restoring cryo as its parent.
fn daemon_twice(group: bool) {
    let prog = build_prog("daemon");
    let arg = if group { "group" } else { "" };
    let want_files = if group {
        "[ ! -s daemon.status ] || [ ! -s daemon.kid.status ]"
    } else {
        "[ ! -s daemon.status ]"
    };
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         {} /tmp/anchor {arg} >/dev/null 2>&1 </dev/null; \
         while {want_files}; do sleep 0.02; done; \
         D=$(sed 's/^pid=\\([0-9]*\\).*/\\1/' daemon.status); \
         mkdir img; {CRYO} dump -t $D -D img 2>.dump-err; echo $? > .dump-rc; \
         K=$(sed 's/.* kid=\\([0-9]*\\).*/\\1/' daemon.status); [ \"$K\" = 0 ] && K=$D; \
         CRYO_FAULT=task-error:$K {CRYO} restore -D img -d 2>.fault-err; echo $? > .fault-rc; \
         while [ ! -e .next0 ]; do sleep 0.02; done; \
         for i in 1 2; do \
           {CRYO} restore -D img 2>.cryo-err$i & R=$!; echo $R > .cryo-pid$i; \
           while [ ! -e .next$i ]; do sleep 0.02; done; \
           wait $R; echo $? > .cryo-rc$i; \
         done; exec sleep 100000",
        prog.display()
    );
    let ns = Ns::start(&script);
    let rc = ns.wait_status(".dump-rc", "\n");
    let derr = std::fs::read_to_string(ns.anchor(".dump-err")).unwrap_or_default();
    assert_eq!(rc.trim(), "0", "cryo dump of the daemon failed: {derr}");
    let st = ns.wait_status("daemon.status", "kidpgid=");
    let (pid, sid, pgid): (i32, i32, i32) = (
        field(&st, "pid").parse().unwrap(),
        field(&st, "sid").parse().unwrap(),
        field(&st, "pgid").parse().unwrap(),
    );
    let (kid, kid_pgid): (i32, i32) = (
        field(&st, "kid").parse().unwrap(),
        field(&st, "kidpgid").parse().unwrap(),
    );
    // The shape under test: session and group of a gone leader.
    assert!(sid != pid && pgid == sid, "{st}");
    let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
    let tree = set.pstree().unwrap();
    assert_eq!(tree[0].pid as i32, pid);
    assert_eq!((tree[0].sid as i32, tree[0].pgid as i32), (sid, sid));
    let mut helpers = vec![sid];
    if group {
        assert!(kid_pgid != kid && kid_pgid != pid && kid_pgid != sid, "{st}");
        assert_eq!(tree.len(), 2);
        assert_eq!(
            (
                tree[1].pid as i32,
                tree[1].ppid as i32,
                tree[1].sid as i32,
                tree[1].pgid as i32
            ),
            (kid, pid, sid, kid_pgid)
        );
        helpers.push(kid_pgid);
    } else {
        assert_eq!(tree.len(), 1);
    }
    // A task failing after the helpers exist takes them down with the tree.
    let victim = if group { kid } else { pid };
    let rc = ns.wait_status(".fault-rc", "\n");
    let err = std::fs::read_to_string(ns.anchor(".fault-err")).unwrap_or_default();
    assert_ne!(rc.trim(), "0", "{err}");
    assert!(
        err.contains(&format!("pid {victim}")) && err.contains("injected fault"),
        "{err}"
    );
    let mut all = helpers.clone();
    all.extend([pid, kid]);
    wait_gone(&ns, &all);
    std::fs::write(ns.anchor(".next0"), "").unwrap();
    for round in 1..=2u32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ns.inner_pids().contains(&pid) || (group && !ns.inner_pids().contains(&kid)) {
            let err = std::fs::read_to_string(ns.anchor(&format!(".cryo-err{round}"))).unwrap_or_default();
            let done = ns.anchor(&format!(".cryo-rc{round}")).exists();
            assert!(
                Instant::now() < deadline && !err.contains("error") && !done,
                "round {round}: not restored: {err}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Each task checks itself once it runs again (so the restore is over).
        let mut tags = vec![("", pid)];
        if group {
            tags.push((".kid", kid));
        }
        for (tag, p) in &tags {
            let f = format!("daemon{tag}.verify.status");
            let _ = std::fs::remove_file(ns.anchor(&f));
            ns.kill(*p, libc::SIGUSR1);
            assert_eq!(ns.wait_status(&f, "\n").trim(), "ok", "round {round}: pid {p}");
        }
        let cryo: i32 = ns
            .wait_status(&format!(".cryo-pid{round}"), "\n")
            .trim()
            .parse()
            .unwrap();
        assert_eq!(ns_ids(&ns, pid), (cryo, sid, sid), "round {round}: the daemon");
        if group {
            assert_eq!(ns_ids(&ns, kid), (pid, kid_pgid, sid), "round {round}: its child");
        }
        // No helper is left, running or zombie.
        for h in &helpers {
            assert_eq!(ns.outer_any(*h), None, "round {round}: helper {h} is still there");
        }
        if group {
            ns.kill(kid, libc::SIGKILL);
        }
        ns.kill(pid, libc::SIGKILL);
        std::fs::write(ns.anchor(&format!(".next{round}")), "").unwrap();
        let rc = ns.wait_status(&format!(".cryo-rc{round}"), "\n");
        assert_eq!(rc.trim(), "137", "round {round}: exit status of the SIGKILLed daemon");
    }
}

#[test]
fn a_double_forked_daemon_restores_its_gone_session_leader_twice() {
    daemon_twice(false);
}

#[test]
fn a_daemon_with_a_child_in_a_leaderless_group_restores_twice() {
    daemon_twice(true);
}

/// An EFD_SEMAPHORE eventfd (which CRIU's entry cannot record) is dumped with
/// its file id in the sidecar and comes back a semaphore, twice; the plain
/// eventfd beside it stays plain.
#[test]
fn dump_restore_keeps_an_efd_semaphore_eventfd_twice() {
    let prog = build_prog("efdsem");
    dump_restore_cmd_twice(
        &format!("{} /tmp/anchor", prog.display()),
        "efdsem.ready",
        |ns, pid, round| {
            let side = std::fs::read_to_string(ns.anchor("img/cryo.json")).unwrap();
            let side = cryo_image::sidecar::parse(&side).unwrap();
            assert_eq!(side.eventfd_semaphore.len(), 1, "round {round}: {side:?}");
            let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
            let id = *side.eventfd_semaphore.iter().next().unwrap();
            let e = set.files().unwrap();
            let efd = e.iter().find(|f| f.id == id).and_then(|f| f.efd.as_ref());
            assert_eq!(
                efd.map(|e| e.counter),
                Some(3),
                "round {round}: file {id} is the semaphore"
            );
            let v = ns.ask(pid, "efdsem.verify", "\n");
            assert_eq!(v.trim(), "ok", "round {round}");
        },
    );
}

/// Threads inside interrupted system calls at the dump (clock_nanosleep and
/// nanosleep, whose restart block cannot be carried, a blocking read, the
/// main thread in pthread_join's futex wait) finish their own work after a
/// restore and pthread_join gets each thread's own value. This also catches
/// the killed tree writing into the dumped pages: exiting threads zero their
/// clear_child_tid (the pthread's tid) while the pages are still in the page
/// pipes, and pthread_join then returned at once with NULL.
#[test]
fn threads_interrupted_in_syscalls_finish_their_work_twice() {
    let prog = build_prog("joiners");
    dump_restore_cmd_twice_with(
        &format!("{} /tmp/anchor", prog.display()),
        "joiners.status",
        "",
        "sleep 0.3;",
        |ns, pid, round| {
            let v = ns.ask(pid, "joiners.status", "joined=");
            assert_eq!(v.trim(), "joined=100,101,102", "round {round}");
        },
    );
}

#[test]
fn criu_sysv_ipc_restores_its_ipc_namespace() {
    // CRIU 4.2's images of a task in an IPC namespace of its own: a shm
    // segment it has attached, a queue of 3 messages, a semaphore set; the
    // program checks all three itself.
    let Some(ns) = restore_fixture("sysv_ipc") else {
        return;
    };
    let pid = pstree_pids("sysv_ipc")[0];
    ns.kill(pid, libc::SIGUSR1);
    let v = ns.wait_status("sysv_ipc.verify.status", "shm+msg+sem=");
    assert!(
        v.contains(&format!("pid={pid} ")) && v.contains("shm+msg+sem=ok sems=1,2,3"),
        "{v}"
    );
    // The restored task is in an IPC namespace of its own (not the test's).
    let mine = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    let outer = ns.outer(pid).expect("restored pid");
    let theirs = std::fs::read_link(format!("/proc/{outer}/ns/ipc")).unwrap();
    assert_ne!(mine, theirs);
}
