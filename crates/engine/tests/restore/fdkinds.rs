//! Restore tests: fd kinds and their state: pipes, memfd, locks, leases, owners, pidfd, fanotify, epoll, shared fd tables.

#[allow(unused_imports)]
use super::*;

/// Run tests/progs/fdstate.c in `mode`, dump and restore it twice (with
/// `opts` given to both), and have it check its fds after each restore.
fn fdstate_twice(mode: &str, opts: &str, also: impl Fn(&Ns, i32, u32)) {
    let prog = build_prog("fdstate");
    dump_restore_cmd_twice_with(
        &format!("{} /tmp/anchor {mode}", prog.display()),
        "fdstate.ready",
        opts,
        "",
        |ns, pid, round| {
            let v = ns.ask(pid, "fdstate.verify", "\n");
            assert_eq!(v.trim(), "ok", "{mode}, round {round}");
            also(ns, pid, round);
        },
    );
}

/// Pipes keep their buffer sizes (grown to 1 MiB, shrunk to a page, the
/// default), their queued bytes, and each open file description its own
/// status flags: a reopened end does not share O_NONBLOCK with the
/// original, which does not gain O_LARGEFILE; every pipe, empty ones too,
/// has its pipes-data entry with its size, as CRIU writes it.
#[test]
fn pipes_keep_sizes_data_and_per_description_flags() {
    fdstate_twice("pipes", "", |ns, _, round| {
        let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
        let sizes: Vec<(u32, Option<u32>)> = set
            .pipes_data()
            .unwrap()
            .iter()
            .map(|(e, _)| (e.bytes, e.size))
            .collect();
        // (The harness may hand the program a pipe of its own too.)
        for want in [(0, Some(4096)), (0, Some(65536)), (200000, Some(1 << 20))] {
            assert!(sizes.contains(&want), "round {round}: {want:?} not in {sizes:?}");
        }
        assert!(sizes.iter().all(|s| s.1.is_some()), "round {round}: {sizes:?}");
    });
}

/// memfds keep their mode (fchmod), contents (held by an fd only), position,
/// O_APPEND and seals; a memfd that is also mapped shared can still be
/// execveat()ed after the restore (no ETXTBSY from a writer the restore
/// left behind).
#[test]
fn memfds_keep_mode_contents_seals_and_stay_executable() {
    fdstate_twice("memfd", "", |_, _, _| {});
}

/// An flock taken by a parent and inherited by a child that alone still
/// holds the file is dumped (by the child) and held again after restore.
#[test]
fn an_inherited_flock_held_only_by_a_child_comes_back() {
    fdstate_twice("flock", "--file-locks", |ns, _, round| {
        let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
        let locks: Vec<cryo_image::pb::FileLockEntry> = set.entries("filelocks.img", "FILE_LOCKS").unwrap();
        let child = set.pstree().unwrap()[1].pid as i32;
        assert_eq!(locks.len(), 1, "round {round}");
        assert_eq!(
            (locks[0].flag, locks[0].pid, locks[0].fd),
            (2, child, 9),
            "round {round}"
        );
    });
}

/// The owner of an O_ASYNC pipe (F_SETOWN) and its F_SETSIG signal come
/// back: writing to the pipe after restore signals the owner with si_fd;
/// the images hold the owner as CRIU's FownEntry.
#[test]
fn the_sigio_owner_and_signal_of_a_file_come_back() {
    fdstate_twice("fown", "", |ns, pid, round| {
        let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
        let owned: Vec<cryo_image::pb::FownEntry> = set
            .files()
            .unwrap()
            .iter()
            .filter_map(|f| f.pipe.as_ref().map(|p| p.fown))
            .filter(|o| o.pid != 0)
            .collect();
        assert_eq!(owned.len(), 1, "round {round}: {owned:?}");
        assert_eq!((owned[0].pid as i32, owned[0].pid_type), (pid, 1), "round {round}");
        assert_eq!(owned[0].signum as i32, libc::SIGRTMIN() + 2, "round {round}");
    });
}

/// An epoll item whose target was added under a dup and closed there lives
/// on under the target's other fd: dumped under that fd (as CRIU), it
/// reports its events with its data after restore.
#[test]
fn an_epoll_item_added_under_a_closed_dup_comes_back() {
    fdstate_twice("epoll", "", |ns, _, round| {
        let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
        let items: Vec<(u32, u64)> = set
            .files()
            .unwrap()
            .iter()
            .filter_map(|f| f.epfd.as_ref())
            .flat_map(|e| e.tfd.iter().map(|t| (t.tfd, t.data)))
            .collect();
        assert!(
            items.iter().any(|&(fd, d)| d == 0xabc && fd != 700),
            "round {round}: {items:?}"
        );
    });
}

/// Leases (F_SETLEASE) held through fds come back with --file-locks: a
/// read and a write lease, and no lease where there was none. The dump does
/// not open the leased files (that would break the leases).
#[test]
fn read_and_write_leases_come_back() {
    fdstate_twice("lease", "--file-locks", |ns, pid, round| {
        let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
        let locks: Vec<cryo_image::pb::FileLockEntry> = set.entries("filelocks.img", "FILE_LOCKS").unwrap();
        let mut got: Vec<(u32, u32, i32, i32)> = locks.iter().map(|l| (l.flag, l.r#type, l.pid, l.fd)).collect();
        got.sort();
        assert_eq!(
            got,
            vec![(8, libc::F_RDLCK as u32, pid, 10), (8, libc::F_WRLCK as u32, pid, 11)],
            "round {round}"
        );
    });
}

/// Start fdstate in `mode` in a fresh namespace, `cryo dump` it (with
/// `opts`), expect the dump to fail, and the program to go on unharmed
/// (its own check passes after the refused dump). Returns cryo's stderr.
fn fdstate_dump_refused(mode: &str, opts: &str) -> String {
    let prog = build_prog("fdstate");
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         {} /tmp/anchor {mode} >/dev/null 2>&1 </dev/null & P=$!; \
         while [ ! -s /tmp/anchor/fdstate.ready ]; do sleep 0.02; done; \
         mkdir /tmp/anchor/img; {CRYO} dump {opts} -t $P -D /tmp/anchor/img 2>/tmp/anchor/.dump-err; \
         echo $? > /tmp/anchor/.dump-rc; echo $P > /tmp/anchor/.root; exec sleep 100000",
        prog.display()
    );
    let ns = Ns::start(&script);
    let rc = ns.wait_status(".dump-rc", "\n");
    let err = std::fs::read_to_string(ns.anchor(".dump-err")).unwrap_or_default();
    assert_ne!(rc.trim(), "0", "{mode}: the dump should have been refused");
    assert!(
        !ns.anchor("img/inventory.img").exists(),
        "{mode}: an image set was written"
    );
    let root: i32 = ns.wait_status(".root", "\n").trim().parse().unwrap();
    let v = ns.ask(root, "fdstate.verify", "\n");
    assert_eq!(v.trim(), "ok", "{mode}: after the refused dump");
    err
}

/// A write lease taken through a read-only fd and being broken to none is
/// refused at dump, naming the fd and the reason: CRIU's image records only
/// the type it is being broken to, and a read-only file stands for a read
/// lease there. The check (a non-blocking read-only open) leaves the lease
/// as it was.
#[test]
fn a_write_lease_on_a_read_only_fd_being_broken_is_refused_at_dump() {
    let err = fdstate_dump_refused("breaking", "--file-locks");
    assert!(
        err.contains("fd 10") && err.contains("write lease taken through a read-only fd is being broken"),
        "{err}"
    );
}

/// A write lease on a deleted file is refused at dump before the file is
/// opened to save its data (that open would break the lease): the lease is
/// still unbroken after the refused dump.
#[test]
fn a_write_lease_on_a_deleted_file_is_refused_at_dump_unbroken() {
    let err = fdstate_dump_refused("lease-deleted", "--file-locks");
    assert!(
        err.contains("fd 10") && err.contains("write lease on a deleted file"),
        "{err}"
    );
}

/// Leases being broken when the dump comes back still being broken (tests/
/// progs/leasebreak.c): two read leases of one file being broken to none by
/// one open (each signalled), a write lease on a read-only file being
/// downgraded, and a write lease that a child waits for in open(). The images hold them as CRIU does (FL_LEASE, the target
/// type marked LEASE_BREAKING: 6 for none, 4 for a read lease). After the
/// restore no second break signal comes, the leases still conflict as
/// before, the child still waits; then every break goes through: given up,
/// downgraded (and broken again, with its signal and si_fd), and the child's
/// open returns.
#[test]
fn leases_being_broken_come_back_being_broken() {
    let prog = build_prog("leasebreak");
    dump_restore_cmd_twice_with(
        &format!("{} /tmp/anchor", prog.display()),
        "leasebreak.ready",
        "--file-locks",
        "",
        |ns, pid, round| {
            let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
            let locks: Vec<cryo_image::pb::FileLockEntry> = set.entries("filelocks.img", "FILE_LOCKS").unwrap();
            let mut got: Vec<(u32, u32, i32, i32)> = locks.iter().map(|l| (l.flag, l.r#type, l.pid, l.fd)).collect();
            got.sort();
            assert_eq!(
                got,
                vec![(8, 4, pid, 11), (8, 4, pid, 12), (8, 6, pid, 10), (8, 6, pid, 13)],
                "round {round}"
            );
            let v = ns.ask(pid, "leasebreak.verify", "\n");
            assert_eq!(v.trim(), "ok", "round {round}");
        },
    );
}

/// A child made with clone(CLONE_FILES) and its own CLONE_FILES child come
/// back sharing the parent's fd table (kcmp), each with its own cwd: an fd
/// one of them opens after the restore is seen by the parent, one the parent
/// closes is gone for them. As with CRIU, the three ids-PID.img name one
/// files_id and its fdinfo image is written once, by the parent.
#[test]
fn an_fd_table_shared_with_the_parent_comes_back_shared() {
    fdstate_twice("fdt", "", |ns, pid, round| {
        let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
        let tree = set.pstree().unwrap();
        assert_eq!(tree.len(), 3, "round {round}");
        let ids: Vec<u32> = tree.iter().map(|p| set.ids(p.pid).unwrap().files_id).collect();
        assert!(ids.iter().all(|&i| i == ids[0]), "round {round}: files_ids {ids:?}");
        let fds: Vec<u32> = set.fdinfo(ids[0]).unwrap().iter().map(|f| f.fd).collect();
        for want in 10..=16 {
            assert!(fds.contains(&want), "round {round}: fd {want} not in {fds:?}");
        }
        let n = std::fs::read_dir(ns.anchor("img"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("fdinfo-"))
            .count();
        assert_eq!(n, 1, "round {round}: one fdinfo image");
        assert_eq!(tree[0].pid as i32, pid);
    });
}

/// An fd table shared by two siblings (CLONE_FILES | CLONE_PARENT), not with
/// their parent, cannot be made by clone() at restore: the dump refuses it.
#[test]
fn an_fd_table_shared_by_siblings_is_refused_at_dump() {
    let err = fdstate_dump_refused("fdt-sibling", "");
    assert!(
        err.contains("shares its fd table") && err.contains("not its parent") && err.contains("CLONE_FILES"),
        "{err}"
    );
}

/// pidfds come back: of the process itself (O_NONBLOCK), of a live child,
/// and two of a dead, reaped child that still share one inode (and not the
/// live child's); signals go through the live ones. The images hold
/// CRIU 4.2's PIDFD entries (nspid -1 for the dead process).
#[test]
fn pidfds_of_self_a_child_and_a_dead_child_come_back() {
    fdstate_twice("pidfd", "", |ns, pid, round| {
        let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
        let mut nspids: Vec<i32> = set
            .files()
            .unwrap()
            .iter()
            .filter_map(|f| f.pidfd.as_ref().map(|p| p.nspid))
            .collect();
        nspids.sort();
        let child = set.pstree().unwrap()[1].pid as i32;
        let mut want = vec![-1, -1, pid, child];
        want.sort();
        assert_eq!(nspids, want, "round {round}");
    });
}

/// A pidfd of a process outside the dumped tree is refused at dump.
#[test]
fn a_pidfd_of_a_process_outside_the_tree_is_refused() {
    let err = fdstate_dump_refused("pidfd-outside", "");
    assert!(
        err.contains("pidfd of pid") && err.contains("not in the dumped tree"),
        "{err}"
    );
}

/// A fanotify group comes back with its inode mark, mount mark and ignore
/// mark (the same fanotify lines in its fdinfo) and reports new events.
#[test]
fn a_fanotify_group_keeps_its_marks_and_reports_events() {
    fdstate_twice("fanotify", "", |ns, _, round| {
        let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
        let marks: Vec<i32> = set
            .files()
            .unwrap()
            .iter()
            .filter_map(|f| f.ffy.as_ref())
            .flat_map(|e| e.mark.iter().map(|m| m.r#type))
            .collect();
        assert_eq!(marks.len(), 2, "round {round}: {marks:?}");
    });
}

/// A pidfd of a live process inherited by a child (one description in two
/// processes) is refused at dump, naming the other pid (one of a dead
/// process comes back shared: restore/pidfds.rs).
#[test]
fn a_pidfd_shared_by_two_processes_is_refused() {
    let err = fdstate_dump_refused("pidfd-shared", "");
    assert!(err.contains("pidfd file description is shared with pid"), "{err}");
}
