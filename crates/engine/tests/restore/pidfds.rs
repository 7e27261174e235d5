//! Restore tests: pidfds of dead processes held by several processes.

#[allow(unused_imports)]
use super::*;

/// pidfds of two dead, reaped processes D and E, held by a parent and its
/// child K (tests/progs/pidfddead.c): one description of each inherited by
/// K, a second description of D opened by K and a third by the parent. After
/// each restore the inherited fds are one description again (kcmp, and
/// F_SETFL through one seen through the other), the others are not; D's
/// pidfds share an inode, E's is on another; fdinfo says Pid: -1, poll,
/// waitid and PIDFD_GET_INFO's exit status (SIGKILL) are as before the dump,
/// signals fail with ESRCH. The images hold
/// CRIU 4.2's PIDFD entries: nspid -1, one entry per description, the
/// inherited ones under one file id in both processes' fdinfo.
#[test]
fn pidfds_of_dead_processes_held_by_two_processes_come_back_shared() {
    let prog = build_prog("pidfddead");
    dump_restore_cmd_twice_with(
        &format!("{} /tmp/anchor", prog.display()),
        "pidfddead.ready",
        "",
        "",
        |ns, pid, round| {
            let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
            let tree = set.pstree().unwrap();
            assert_eq!(tree.len(), 2, "round {round}: the dead processes are not in the tree");
            let kid = tree[1].pid as i32;
            let pidfds: Vec<cryo_image::pb::PidfdEntry> = set.files().unwrap().iter().filter_map(|f| f.pidfd).collect();
            assert_eq!(pidfds.len(), 4, "round {round}: {pidfds:?}");
            assert!(pidfds.iter().all(|e| e.nspid == -1), "round {round}: {pidfds:?}");
            let ino_of = |id: u32| pidfds.iter().find(|e| e.id == id).map(|e| e.ino);
            let fd_ids = |p: i32| -> std::collections::BTreeMap<u32, u32> {
                let files_id = set.ids(p as u32).unwrap().files_id;
                set.fdinfo(files_id).unwrap().iter().map(|f| (f.fd, f.id)).collect()
            };
            let (r, k) = (fd_ids(pid), fd_ids(kid));
            assert_eq!(r[&20], k[&20], "round {round}: fd 20 is one description");
            assert_eq!(r[&23], k[&23], "round {round}: fd 23 is one description");
            let own: std::collections::BTreeSet<u32> = [r[&20], r[&22], k[&21], r[&23]].into();
            assert_eq!(own.len(), 4, "round {round}: {r:?} {k:?}");
            let d = ino_of(r[&20]).unwrap();
            assert_eq!((ino_of(r[&22]), ino_of(k[&21])), (Some(d), Some(d)), "round {round}");
            assert_ne!(ino_of(r[&23]), Some(d), "round {round}");
            assert_eq!(
                ns.ask(pid, "pidfddead.verify", "\n").trim(),
                "ok",
                "round {round}: the parent"
            );
            assert_eq!(
                ns.ask(kid, "pidfddead.child", "\n").trim(),
                "ok",
                "round {round}: the child"
            );
        },
    );
}
