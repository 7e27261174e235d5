//! Restore tests: namespaces of the tree's own (uts, ipc, pid), made with unshare(1), and
//! `--new-pidns`. Every test works inside the namespaces it creates (the test's own PID + mount
//! namespace, and the uts/ipc/pid namespaces unshare makes): the host's hostname and IPC objects
//! are never touched.

#[allow(unused_imports)]
use super::*;
use crate::common::prog;

fn uname_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap()
}

/// A tree in uts and ipc namespaces of its own (hostname and domainname set, a queue made by ipcmk,
/// and the program's own shm segment it has attached, a queue with 3 messages, a semaphore set):
/// dumped, restored twice; the program finds everything again with the same ids, and Python crit
/// decodes the namespace images.
#[test]
fn uts_and_ipc_namespaces_come_back_with_every_object() {
    let host = uname_host();
    let prog = prog("ipcns");
    let cmd = format!(
        "unshare --uts --ipc sh -c 'hostname cryo-uts-test && domainname cryo-dom && ipcmk -Q >/dev/null && exec {}'",
        prog.display()
    );
    dump_restore_cmd_twice_with(&cmd, "ipcns.ready", "", "", |ns, pid, round| {
        let v = ns.ask(pid, "ipcns.verify", "queues=");
        assert_eq!(
            v.trim(),
            format!("pid={pid} host=cryo-uts-test dom=cryo-dom shm=ok ids=same msg=ok sem=ok queues=2"),
            "round {round}"
        );
        let outer = ns.outer(pid).unwrap();
        for k in ["uts", "ipc"] {
            let mine = std::fs::read_link(format!("/proc/self/ns/{k}")).unwrap();
            let theirs = std::fs::read_link(format!("/proc/{outer}/ns/{k}")).unwrap();
            assert_ne!(mine, theirs, "round {round}: {k} namespace");
        }
        if round == 1 {
            let img = ns.anchor("img");
            let mut names: Vec<String> = std::fs::read_dir(&img)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("ipcns-") || n.starts_with("utsns-") || n.starts_with("pagemap-shmem"))
                .collect();
            names.sort();
            assert_eq!(names.len(), 6, "{names:?}");
            // stats-dump counts every page the pages images hold, the shm segment's among them
            // (shpages_written), as CRIU counts them: zdtm checks the sum.
            let out = Command::new("/usr/bin/crit")
                .args(["decode", "-i"])
                .arg(img.join("stats-dump"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let d = &v["entries"][0]["dump"];
            let n = |k: &str| d[k].as_u64().unwrap_or(0);
            assert!(n("shpages_written") > 0, "{d}");
            let bytes: u64 = std::fs::read_dir(&img)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
                .map(|e| e.metadata().unwrap().len())
                .sum();
            assert_eq!(n("pages_written") + n("shpages_written"), bytes / 4096, "{d}");
            for n in &names {
                let out = Command::new("/usr/bin/crit")
                    .args(["decode", "-i"])
                    .arg(img.join(n))
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "crit decode {n}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let text = String::from_utf8_lossy(&out.stdout);
                if n.starts_with("utsns-") {
                    assert!(text.contains("cryo-uts-test") && text.contains("cryo-dom"), "{text}");
                }
                if n.starts_with("ipcns-msg-") {
                    assert!(text.contains("\"qnum\": 3") || text.contains("\"qnum\":3"), "{text}");
                }
            }
        }
    });
    assert_eq!(uname_host(), host, "the host's hostname changed");
}

/// Run `script` (after the anchor mount, cwd /tmp/anchor) in a fresh namespace and wait for `file`.
fn start_and_wait(script: &str, file: &str) -> Ns {
    let ns = Ns::start(&format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; {script}; exec sleep 100000"
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(ns.anchor(file)).is_ok_and(|s| s.ends_with('\n')) {
        assert!(Instant::now() < deadline, "{file} never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    ns
}

fn read(ns: &Ns, file: &str) -> String {
    std::fs::read_to_string(ns.anchor(file)).unwrap_or_default()
}

/// The pid (as the test sees it) of the task that is `pid` in the namespace `ns` runs in, also
/// when it lives in a pid namespace nested below that one.
fn by_ns_pid(ns: &Ns, pid: i32) -> Option<i32> {
    let level = nspid(ns.pid1).split_whitespace().count() - 2;
    // Tests running at once have namespaces of their own with the same pids: the task must be in
    // this namespace's mount namespace too (every task started or restored in it is).
    let mnt = |p: i32| std::fs::read_link(format!("/proc/{p}/ns/mnt")).ok();
    let want = mnt(ns.pid1);
    std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
        let p: i32 = e.file_name().to_string_lossy().parse().ok()?;
        let st = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
        let l = st.lines().find(|l| l.starts_with("NSpid:"))?;
        let v: Vec<i32> = l.split_whitespace().skip(1).filter_map(|w| w.parse().ok()).collect();
        (v.get(level) == Some(&pid) && mnt(p) == want).then_some(p)
    })
}

fn nspid(outer: i32) -> String {
    let st = std::fs::read_to_string(format!("/proc/{outer}/status")).unwrap();
    st.lines().find(|l| l.starts_with("NSpid:")).unwrap().to_string()
}

/// A tree in a pid namespace of its own (its init and a child: pids 1 and 2 inside), dumped and
/// restored: the restored tasks are pids 1 and 2 of a new pid namespace again, and go on.
#[test]
fn a_pid_namespace_comes_back_with_its_pids() {
    let prog = prog("pidns");
    let ns = start_and_wait(
        &format!(
            "unshare --pid --fork setsid {} >/dev/null 2>&1 </dev/null & U=$!; \
             while [ ! -s pidns.ready ]; do sleep 0.02; done; P=$(cat /proc/$U/task/$U/children); \
             mkdir img; {CRYO} dump -t $P -D img 2>.dump-err; echo $? > .dump-rc; wait $U; \
             {CRYO} restore -d -D img --pidfile /tmp/anchor/.pidfile 2>.cryo-err; echo $? > .cryo-rc",
            prog.display()
        ),
        ".cryo-rc",
    );
    assert_eq!(read(&ns, ".dump-rc").trim(), "0", "dump: {}", read(&ns, ".dump-err"));
    assert_eq!(read(&ns, ".cryo-rc").trim(), "0", "restore: {}", read(&ns, ".cryo-err"));
    assert_eq!(read(&ns, "pidns.ready").trim(), "pid=1 child=2");
    // The pidfile holds the root's pid as the restoring namespace sees it.
    let inner: i32 = read(&ns, ".pidfile").trim().parse().unwrap();
    let outer = by_ns_pid(&ns, inner).expect("restored root");
    assert!(nspid(outer).ends_with("\t1"), "{}", nspid(outer));
    let _ = std::fs::remove_file(ns.anchor("pidns.verify"));
    assert!(common::kill(outer, libc::SIGUSR1));
    let v = ns.wait_status("pidns.verify", "alive=");
    // Its parent (cryo, gone) is outside its namespace: getppid() is 0.
    assert_eq!(v.trim(), "pid=1 ppid=0 child=2 alive=1");
    let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
    let pids: Vec<u32> = set.pstree().unwrap().iter().map(|p| p.pid).collect();
    assert_eq!(pids, vec![1, 2]);
    assert!(set.has("pidns-9.img"), "pidns image");
}

/// `--new-pidns`: a tree dumped in the namespace it runs in, left running (its pids stay taken), is
/// restored next to it in a new pid namespace where it keeps its pids; cryo's init is pid 1 there.
#[test]
fn new_pidns_restores_a_tree_whose_pids_are_taken() {
    let prog = prog("pidns");
    let ns = start_and_wait(
        &format!(
            "setsid {} >/dev/null 2>&1 </dev/null & \
             while [ ! -s pidns.ready ]; do sleep 0.02; done; P=$(cat pidns.ready | sed 's/pid=\\([0-9]*\\).*/\\1/'); \
             mkdir img; {CRYO} dump --leave-running -t $P -D img 2>.dump-err; echo $? > .dump-rc; \
             {CRYO} restore --pid-wait 0.2 -D img 2>.busy-err; echo $? > .busy-rc; \
             {CRYO} restore --new-pidns -d -D img --pidfile /tmp/anchor/.pidfile 2>.cryo-err; echo $? > .cryo-rc",
            prog.display()
        ),
        ".cryo-rc",
    );
    assert_eq!(read(&ns, ".dump-rc").trim(), "0", "dump: {}", read(&ns, ".dump-err"));
    // Without --new-pidns its pids are taken.
    assert_ne!(read(&ns, ".busy-rc").trim(), "0");
    assert!(read(&ns, ".busy-err").contains("in use"), "{}", read(&ns, ".busy-err"));
    assert_eq!(read(&ns, ".cryo-rc").trim(), "0", "restore: {}", read(&ns, ".cryo-err"));
    let ready = read(&ns, "pidns.ready");
    let orig: i32 = field(&ready, "pid").parse().unwrap();
    let child: i32 = field(&ready, "child").parse().unwrap();
    let inner: i32 = read(&ns, ".pidfile").trim().parse().unwrap();
    assert_ne!(inner, orig, "the pidfile names the restored root as seen from outside");
    let outer = by_ns_pid(&ns, inner).expect("restored root");
    assert!(nspid(outer).ends_with(&format!("\t{orig}")), "{}", nspid(outer));
    // pid 1 of its namespace is cryo's init, its parent.
    let ppid_line = std::fs::read_to_string(format!("/proc/{outer}/status")).unwrap();
    let ppid: i32 = ppid_line
        .lines()
        .find(|l| l.starts_with("PPid:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{ppid}/comm")).unwrap().trim(),
        "cryo-init"
    );
    assert!(nspid(ppid).ends_with("\t1"), "{}", nspid(ppid));
    // Both copies go on: the restored one answers with its own pids.
    let _ = std::fs::remove_file(ns.anchor("pidns.verify"));
    assert!(common::kill(outer, libc::SIGUSR1));
    let v = ns.wait_status("pidns.verify", "alive=");
    assert_eq!(v.trim(), format!("pid={orig} ppid=1 child={child} alive=1"));
    assert!(ns.outer(orig).is_some(), "the original still runs");
    // Killing the restored root ends its namespace (cryo's init exits with it).
    assert!(common::kill(outer, libc::SIGKILL));
    assert!(common::wait_gone(ppid), "cryo-init outlived the root");
}

/// Dump and restore (`-d`) the tree of `prog userns ARGS` (its root is the program's child), in a
/// fresh namespace of the test's; returns it once the restore ended, with the root's pid.
fn userns_round(wrap: &str, args: &str, dump_opts: &str) -> (Ns, i32) {
    let prog = prog("userns");
    let ns = start_and_wait(
        &format!(
            "{wrap} {} {args} >/dev/null 2>&1 </dev/null; while [ ! -s userns.ready ]; do sleep 0.02; done; \
             P=$(sed 's/pid=\\([0-9]*\\).*/\\1/' userns.ready); \
             cat /proc/$P/uid_map > .orig-uid-map; \
             mkdir img; {CRYO} dump {dump_opts} -t $P -D img 2>.dump-err; echo $? > .dump-rc; \
             while [ -e /proc/$P ]; do sleep 0.05; done; \
             {CRYO} restore -d -D img 2>.cryo-err; echo $? > .cryo-rc",
            prog.display()
        ),
        ".cryo-rc",
    );
    assert_eq!(read(&ns, ".dump-rc").trim(), "0", "dump: {}", read(&ns, ".dump-err"));
    assert_eq!(read(&ns, ".cryo-rc").trim(), "0", "restore: {}", read(&ns, ".cryo-err"));
    let root: i32 = field(&read(&ns, "userns.ready"), "pid").parse().unwrap();
    (ns, root)
}

fn status_ids(pid: i32, key: &str) -> String {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    st.lines().find(|l| l.starts_with(key)).unwrap()[key.len()..]
        .trim()
        .to_string()
}

/// A tree in a user namespace of its own with explicit maps (0 → 100000 and 0 → 200000, 65536
/// each, written to /proc/PID/uid_map by its parent), its root uid 0 inside and its child uid 1000,
/// a file it chowned to 5:6: dumped (userns-ID.img holds the maps, the cores the ids inside, as
/// CRIU 4.2 writes them), restored into a new user namespace with the same maps; from inside, the
/// tree sees the same ids, maps and file owner, and cryo sees the same host ids.
#[test]
fn a_user_namespace_comes_back_with_its_maps_and_creds() {
    let (ns, root) = userns_round("", "'0 100000 65536' '0 200000 65536'", "");
    let outer = ns.outer(root).expect("restored root");
    let child: i32 = field(&read(&ns, "userns.ready"), "child").parse().unwrap();
    let kid = ns.outer(child).expect("restored child");
    assert_eq!(status_ids(outer, "Uid:"), "100000\t100000\t100000\t100000");
    assert_eq!(status_ids(outer, "Gid:"), "200000\t200000\t200000\t200000");
    assert_eq!(status_ids(kid, "Uid:"), "101000\t101000\t101000\t101000");
    let map = std::fs::read_to_string(format!("/proc/{outer}/uid_map")).unwrap();
    assert_eq!(map, read(&ns, ".orig-uid-map"));
    let user = std::fs::read_link(format!("/proc/{outer}/ns/user")).unwrap();
    assert_ne!(
        user,
        std::fs::read_link("/proc/self/ns/user").unwrap(),
        "not in a user namespace"
    );
    // (Not compared with the original's: its inode number may be given again once it is gone.)
    assert_eq!(
        std::fs::read_link(format!("/proc/{kid}/ns/user")).unwrap(),
        user,
        "the child is in its parent's user namespace"
    );
    let v = ns.ask(root, "userns.verify", "gid_map=");
    assert_eq!(
        v.trim(),
        "uid=0,0,0 gid=0,0,0 groups=0 file=5:6 child=1:1000 uid_map=0,100000,65536 gid_map=0,200000,65536"
    );
    let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
    let e: cryo_image::pb::UsernsEntry = set.one("userns-9.img", "USERNS").unwrap();
    assert_eq!(
        (e.uid_map[0].first, e.uid_map[0].lower_first, e.uid_map[0].count),
        (0, 100000, 65536)
    );
    assert_eq!(e.gid_map[0].lower_first, 200000);
    let ids = set.ids(root as u32).unwrap();
    assert_eq!(ids.user_ns_id, Some(9));
    // Python crit decodes it.
    let out = Command::new("/usr/bin/crit")
        .args(["decode", "-i"])
        .arg(ns.anchor("img/userns-9.img"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("100000"));
}

/// Validation first: images whose user namespace cannot be made as they say (overlapping extents in
/// userns-ID.img, a thread whose uid the map lacks) are refused before any task exists.
#[test]
fn a_user_namespace_that_cannot_be_made_is_refused_before_any_task() {
    let (ns, root) = userns_round("", "'0 100000 65536' '0 200000 65536'", "");
    let dir = cryo_testsupport::scratch("userns", "refuse");
    cryo_testsupport::copy_dir(&ns.anchor("img"), &dir);
    drop(ns);
    let write = |e: &cryo_image::pb::UsernsEntry| {
        let mut w = cryo_image::ImageWriter::create(dir.join("userns-9.img"), Some("USERNS")).unwrap();
        w.entry(e).unwrap();
        w.finish().unwrap();
    };
    let ext = |first, lower_first, count| cryo_image::pb::UidGidExtent {
        first,
        lower_first,
        count,
    };
    let good = cryo_image::pb::UsernsEntry {
        uid_map: vec![ext(0, 100000, 65536)],
        gid_map: vec![ext(0, 200000, 65536)],
    };
    for (bad, want) in [
        (
            cryo_image::pb::UsernsEntry {
                uid_map: vec![ext(0, 100000, 10), ext(5, 300000, 10)],
                ..good.clone()
            },
            "extents 0 and 1 overlap",
        ),
        (
            cryo_image::pb::UsernsEntry {
                uid_map: vec![ext(0, 100000, 1000)],
                ..good.clone()
            },
            "uid 1000 is not mapped",
        ),
    ] {
        write(&bad);
        let r = Ns::restore(&dir, &[]);
        let (rc, err) = r.cryo_result();
        assert_ne!(rc, 0);
        assert!(err.contains(want), "{err}");
        assert!(!r.inner_pids().contains(&root), "{:?}", r.inner_pids());
        assert!(r.inner_pids().len() <= 2, "a task was left: {:?}", r.inner_pids());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `unshare --user --map-root-user` (the rootless container's setup: root inside is the caller
/// outside): the tree comes back in a user namespace of its own with the same one-id map.
#[test]
fn a_map_root_user_tree_comes_back() {
    let (ns, root) = userns_round("unshare --user --map-root-user", "-", "");
    let outer = ns.outer(root).expect("restored root");
    let map = std::fs::read_to_string(format!("/proc/{outer}/uid_map")).unwrap();
    assert_eq!(map.split_whitespace().collect::<Vec<_>>(), ["0", "0", "1"]);
    assert_ne!(
        std::fs::read_link(format!("/proc/{outer}/ns/user")).unwrap(),
        std::fs::read_link("/proc/self/ns/user").unwrap()
    );
    let v = ns.ask(root, "userns.verify", "gid_map=");
    assert!(
        v.starts_with("uid=0,0,0 gid=0,0,0 ") && v.contains("uid_map=0,0,1 gid_map=0,0,1"),
        "{v}"
    );
}

/// A container-shaped tree in a user namespace (`--map-root-user`) owning its pid, uts and ipc
/// namespaces: the restore makes the user namespace first and the others in it; the tree is pids 1
/// and 2 again, in namespaces other than the test's, and its uts namespace is owned by its user
/// namespace (the hostname it set is back, set from inside).
#[test]
fn a_user_namespace_owning_pid_uts_ipc_comes_back() {
    let prog = prog("pidns");
    let ns = start_and_wait(
        &format!(
            "unshare --user --map-root-user --pid --uts --ipc --fork sh -c 'hostname cryo-userns && exec setsid {}' \
             >/dev/null 2>&1 </dev/null & U=$!; \
             while [ ! -s pidns.ready ]; do sleep 0.02; done; P=$(cat /proc/$U/task/$U/children); \
             mkdir img; {CRYO} dump -t $P -D img 2>.dump-err; echo $? > .dump-rc; wait $U; \
             {CRYO} restore -d -D img --pidfile /tmp/anchor/.pidfile 2>.cryo-err; echo $? > .cryo-rc; \
             R=$(cat /tmp/anchor/.pidfile); nsenter -t $R -U -u hostname > .hostname 2>&1; \
             nsenter -t $R -U sh -c 'cat /proc/self/uid_map' > .inside-map 2>&1; echo done > .done",
            prog.display()
        ),
        ".done",
    );
    assert_eq!(read(&ns, ".dump-rc").trim(), "0", "dump: {}", read(&ns, ".dump-err"));
    assert_eq!(read(&ns, ".cryo-rc").trim(), "0", "restore: {}", read(&ns, ".cryo-err"));
    // (pid 2 was hostname.)
    assert_eq!(read(&ns, "pidns.ready").trim(), "pid=1 child=3");
    let inner: i32 = read(&ns, ".pidfile").trim().parse().unwrap();
    let outer = by_ns_pid(&ns, inner).expect("restored root");
    assert!(nspid(outer).ends_with("\t1"), "{}", nspid(outer));
    for k in ["user", "pid", "uts", "ipc"] {
        assert_ne!(
            std::fs::read_link(format!("/proc/{outer}/ns/{k}")).unwrap(),
            std::fs::read_link(format!("/proc/self/ns/{k}")).unwrap(),
            "{k} namespace"
        );
    }
    assert_eq!(read(&ns, ".hostname").trim(), "cryo-userns");
    assert_eq!(
        read(&ns, ".inside-map").split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "1"]
    );
    let _ = std::fs::remove_file(ns.anchor("pidns.verify"));
    assert!(common::kill(outer, libc::SIGUSR1));
    assert_eq!(
        ns.wait_status("pidns.verify", "alive=").trim(),
        "pid=1 ppid=0 child=3 alive=1"
    );
}

/// The zdtm uns flavor's shape: a busybox tree in a user namespace (`--map-root-user`) owning its
/// pid and mount namespaces, on a root of its own with a proc of its pid namespace. The kernel lets
/// a task of a non-initial user namespace mount proc only while another proc is fully visible in
/// its mount namespace; the restore (`--root`) gives the rebuilt tree a stand-in until its own proc
/// is made from inside. Restored, /proc is the new pid namespace's again (its pid 1 is busybox) and
/// it is the only proc there.
#[test]
fn a_user_namespace_owning_mount_and_pid_gets_its_proc_back() {
    let root = super::container::rootfs("uns-proc");
    let null = root.join("dev/null");
    let st = Command::new("mknod")
        .args(["-m", "666"])
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(st.success());
    let r = root.display();
    let ns = start_and_wait(
        &format!(
            "unshare --user --map-root-user --pid --mount --propagation private --fork sh -c \
             'mount --bind {r} {r} && mount -t proc proc {r}/proc && cd {r} && pivot_root . old && \
             /bin/busybox umount -l /old && exec /bin/busybox sleep 100000' >/dev/null 2>&1 </dev/null & U=$!; \
             P=; while [ -z \"$P\" ] || [ \"$(cat /proc/$P/comm)\" != busybox ]; do sleep 0.02; P=$(cat /proc/$U/task/$U/children); P=${{P% }}; done; \
             mkdir img; {CRYO} dump -t $P -D img 2>.dump-err; echo $? > .dump-rc; wait $U; \
             {CRYO} restore -d -D img --root {r} --pidfile /tmp/anchor/.pidfile 2>.cryo-err; echo $? > .cryo-rc; \
             R=$(cat /tmp/anchor/.pidfile); nsenter -t $R -U -m /bin/busybox cat /proc/1/comm > .inside 2>&1; \
             nsenter -t $R -U -m /bin/busybox grep -c ' - proc ' /proc/1/mountinfo >> .inside 2>&1; echo done > .done"
        ),
        ".done",
    );
    assert_eq!(read(&ns, ".dump-rc").trim(), "0", "dump: {}", read(&ns, ".dump-err"));
    assert_eq!(read(&ns, ".cryo-rc").trim(), "0", "restore: {}", read(&ns, ".cryo-err"));
    let inner: i32 = read(&ns, ".pidfile").trim().parse().unwrap();
    // The restored root is in a mount namespace of its own (by_ns_pid wants the test's): the
    // busybox whose pid in the test's namespace is `inner`, pid 1 of a namespace one level below.
    let level = nspid(ns.pid1).split_whitespace().count() - 2;
    let outer = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .find_map(|e| {
            let p: i32 = e.file_name().to_string_lossy().parse().ok()?;
            let l = nspid(p);
            let v: Vec<i32> = l.split_whitespace().skip(1).filter_map(|w| w.parse().ok()).collect();
            (v.len() == level + 2 && v[level] == inner && v[level + 1] == 1).then_some(p)
        })
        .expect("restored root");
    for k in ["user", "pid", "mnt"] {
        assert_ne!(
            std::fs::read_link(format!("/proc/{outer}/ns/{k}")).unwrap(),
            std::fs::read_link(format!("/proc/self/ns/{k}")).unwrap(),
            "{k} namespace"
        );
    }
    assert_eq!(
        read(&ns, ".inside").split_whitespace().collect::<Vec<_>>(),
        ["busybox", "1"],
        "{}",
        read(&ns, ".inside")
    );
    assert!(common::kill(outer, libc::SIGKILL));
    let _ = std::fs::remove_dir_all(&root);
}

/// A tree in a time namespace of its own (`unshare --time`, CLOCK_MONOTONIC 10 days and
/// CLOCK_BOOTTIME 20 days ahead): timens-ID.img holds its clocks; the restored tree is in a new
/// time namespace whose offsets make its clocks go on from the dumped values.
#[test]
fn a_time_namespace_comes_back_with_its_clocks() {
    let ns = start_and_wait(
        &format!(
            "unshare --time --fork --monotonic 864000 --boottime 1728000 sleep 100000 \
             >/dev/null 2>&1 </dev/null & U=$!; \
             while [ -z \"$(cat /proc/$U/task/$U/children)\" ]; do sleep 0.02; done; P=$(cat /proc/$U/task/$U/children); P=${{P% }}; \
             echo $P > .root; cat /proc/$P/timens_offsets > .orig-off; \
             mkdir img; {CRYO} dump -t $P -D img 2>.dump-err; echo $? > .dump-rc; wait $U; sleep 1; \
             {CRYO} restore -d -D img 2>.cryo-err; echo $? > .cryo-rc"
        ),
        ".cryo-rc",
    );
    assert_eq!(read(&ns, ".dump-rc").trim(), "0", "dump: {}", read(&ns, ".dump-err"));
    assert_eq!(read(&ns, ".cryo-rc").trim(), "0", "restore: {}", read(&ns, ".cryo-err"));
    let root: i32 = read(&ns, ".root").trim().parse().unwrap();
    let outer = ns.outer(root).expect("restored root");
    assert_ne!(
        std::fs::read_link(format!("/proc/{outer}/ns/time")).unwrap(),
        std::fs::read_link("/proc/self/ns/time").unwrap()
    );
    let off = std::fs::read_to_string(format!("/proc/{outer}/timens_offsets")).unwrap();
    let secs = |text: &str, clock: &str| -> i64 {
        let l = text.lines().find(|l| l.starts_with(clock)).unwrap();
        l.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    // The clocks stood still while the tree was away (a second and more): the offsets are that
    // much smaller.
    for (clock, orig) in [("monotonic", 864000), ("boottime", 1728000)] {
        let now = secs(&off, clock);
        assert_eq!(secs(&read(&ns, ".orig-off"), clock), orig);
        assert!(now < orig && now > orig - 60, "{clock}: {off}");
    }
    let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
    let id = set.ids(root as u32).unwrap().time_ns_id.unwrap();
    let e: cryo_image::pb::TimensEntry = set.one(&format!("timens-{id}.img"), "TIMENS").unwrap();
    assert!(e.monotonic.tv_sec > 864000 && e.boottime.tv_sec > 1728000, "{e:?}");
}

/// What cannot be restored is refused at dump, naming the task and the namespace, and the tree goes
/// on as it was: a child in a uts namespace nested in the tree's. (A cgroup namespace of the tree's
/// own is dumped now: tests/restore/cgroup.rs.)
#[test]
fn unsupported_and_nested_namespaces_are_refused_at_dump() {
    let ns = start_and_wait(
        &format!(
            "mkdir img2; \
             unshare --uts sh -c 'unshare --uts sleep 1000 & exec sleep 1000' & V=$!; \
             while [ -z \"$(cat /proc/$V/task/$V/children)\" ]; do sleep 0.02; done; sleep 0.2; \
             {CRYO} dump -t $V -D img2 2>.e2; echo $? > .r2; \
             kill -0 $V && echo $V > .alive; echo done > .done"
        ),
        ".done",
    );
    let e2 = read(&ns, ".e2");
    assert_ne!(read(&ns, ".r2").trim(), "0");
    assert!(
        e2.contains("uts namespace") && e2.contains("nested namespaces are not supported"),
        "{e2}"
    );
    // The tree still runs, and nothing was written.
    let alive = read(&ns, ".alive");
    assert_eq!(alive.split_whitespace().count(), 1, "the refused tree died");
    assert_eq!(
        std::fs::read_dir(ns.anchor("img2")).unwrap().count(),
        0,
        "img2 is not empty"
    );
}

/// A restore that fails while it fills the new namespaces (a queue whose qbytes cannot be set:
/// raising it above msgmnb needs CAP_SYS_RESOURCE, which root lacks here) leaves nothing behind:
/// no task, so no namespace.
#[test]
fn a_restore_failing_in_its_namespaces_leaves_nothing() {
    let name = "sysv_ipc";
    build_fixture(name);
    if refused_by_this_cpu(name) {
        return;
    }
    let dir = copy_images(name, "qbytes");
    let path = dir.join("ipcns-msg-9.img");
    let img = cryo_image::decode("ipcns-msg-9.img", &std::fs::read(&path).unwrap()).unwrap();
    use prost::Message as _;
    let mut w = cryo_image::ImageWriter::create(&path, Some("IPCNS_MSG")).unwrap();
    for e in &img.entries {
        let mut q = cryo_image::pb::IpcMsgEntry::decode(e.msg.encode_to_vec().as_slice()).unwrap();
        q.qbytes = 1 << 30;
        w.entry(&q).unwrap();
        let cryo_image::Extra::Msgs(msgs) = &e.extra else {
            panic!("no messages")
        };
        for (m, data) in msgs {
            let m = cryo_image::pb::IpcMsg::decode(m.encode_to_vec().as_slice()).unwrap();
            w.entry(&m).unwrap();
            let mut d = data.clone();
            d.resize(data.len().div_ceil(8) * 8, 0);
            w.raw(&d).unwrap();
        }
    }
    w.finish().unwrap();
    let pid = pstree_pids(name)[0];
    let ns = Ns::restore(&dir, &[]);
    let (rc, err) = ns.cryo_result();
    assert_ne!(rc, 0);
    assert!(err.contains("ipc namespace") && err.contains("qbytes"), "{err}");
    // Only the namespace's shell (and its sleep) is left.
    assert!(!ns.inner_pids().contains(&pid), "{:?}", ns.inner_pids());
    assert!(ns.inner_pids().len() <= 2, "{:?}", ns.inner_pids());
    drop(ns);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A shm segment removed (IPC_RMID) while the program still has it attached cannot be made again
/// as it is: refused before the tree is frozen, which goes on.
#[test]
fn a_removed_but_attached_segment_is_refused_up_front() {
    let prog = prog("ipcns");
    let ns = start_and_wait(
        &format!(
            "unshare --uts --ipc {} >/dev/null 2>&1 </dev/null & P=$!; \
             while [ ! -s ipcns.ready ]; do sleep 0.02; done; nsenter -t $P --ipc ipcrm -M 0x5151; \
             mkdir img; {CRYO} dump -t $P -D img 2>.e; echo $? > .r; kill -0 $P && echo $P > .alive; echo > .done",
            prog.display()
        ),
        ".done",
    );
    let e = read(&ns, ".e");
    assert_ne!(read(&ns, ".r").trim(), "0");
    assert!(
        e.contains("refusing to dump") && e.contains("IPC_RMID") && e.contains("shm segment"),
        "{e}"
    );
    assert!(!read(&ns, ".alive").trim().is_empty(), "the program died");
    let pid: i32 = read(&ns, ".alive").trim().parse().unwrap();
    // Not frozen, not traced: it answers.
    let v = ns.ask(pid, "ipcns.verify", "queues=");
    assert!(v.contains("msg=ok sem=ok"), "{v}");
}

/// `--new-pidns` with a program nobody here wrote: python3 (a thread of its own too), dumped left
/// running, restored beside itself; the copy goes on counting in its new pid namespace with the
/// pids it had (os.getpid(), threading.get_native_id()).
#[test]
fn new_pidns_restores_python_beside_itself() {
    let py = "import os, threading, time\n\
              tid = []\n\
              def t():\n    tid.append(threading.get_native_id())\n    time.sleep(10**6)\n\
              threading.Thread(target=t, daemon=True).start()\n\
              n = 0\n\
              while True:\n    n += 1\n    ns = os.readlink('/proc/self/ns/pid').strip('pid:[]')\n    open(f'py-{ns}.tmp', 'w').write(f'pid={os.getpid()} tid={tid[0] if tid else 0} n={n}\\n')\n    os.rename(f'py-{ns}.tmp', f'py-{ns}.status')\n    time.sleep(0.05)\n";
    std::fs::create_dir_all(common::tmp_root()).unwrap();
    let script = common::tmp_root().join("newpidns.py");
    std::fs::write(&script, py).unwrap();
    let ns = start_and_wait(
        &format!(
            "setsid python3 {} >/dev/null 2>.py-err </dev/null & P=$!; \
             while ! ls py-*.status >/dev/null 2>&1; do sleep 0.02; done; sleep 0.3; ls py-*.status > .orig; \
             mkdir img; {CRYO} dump --leave-running -t $P -D img 2>.dump-err; echo $? > .dump-rc; \
             {CRYO} restore --new-pidns -d -D img --pidfile /tmp/anchor/.pidfile 2>.cryo-err; echo $? > .cryo-rc",
            script.display()
        ),
        ".cryo-rc",
    );
    assert_eq!(read(&ns, ".dump-rc").trim(), "0", "dump: {}", read(&ns, ".dump-err"));
    assert_eq!(read(&ns, ".cryo-rc").trim(), "0", "restore: {}", read(&ns, ".cryo-err"));
    let orig_file = read(&ns, ".orig").trim().to_string();
    let orig = read(&ns, &orig_file);
    // The copy writes its own status file (named by its pid namespace), with the same pids.
    let deadline = Instant::now() + Duration::from_secs(20);
    let copy = loop {
        let found = std::fs::read_dir(ns.anchor(""))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("py-") && n.ends_with(".status") && *n != orig_file);
        if let Some(f) = found {
            let s = read(&ns, &f);
            if !s.is_empty() {
                break s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the restored python never wrote: {}",
            read(&ns, ".py-err")
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(field(&copy, "pid"), field(&orig, "pid"), "{copy} vs {orig}");
    assert_eq!(field(&copy, "tid"), field(&orig, "tid"), "{copy} vs {orig}");
    assert_ne!(field(&orig, "tid"), "0");
    // It goes on counting.
    let n0: u64 = field(&copy, "n").parse().unwrap();
    let f = std::fs::read_dir(ns.anchor(""))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("py-") && n.ends_with(".status") && *n != orig_file)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while field(&read(&ns, &f), "n").parse::<u64>().unwrap_or(0) <= n0 + 3 {
        assert!(Instant::now() < deadline, "the restored python stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
}
