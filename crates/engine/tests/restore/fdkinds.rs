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
