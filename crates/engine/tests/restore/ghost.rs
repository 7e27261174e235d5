//! Restore tests: deleted and unlinked files, ghost files, link remaps, cwd/root, /proc files.

#[allow(unused_imports)]
use super::*;

/// Start tests/progs/ghosts.c in `mode`, dump it (with `opts`), restore it
/// twice, and have it check itself after each restore.
fn ghosts_twice(mode: &str, opts: &str, dir: &str) {
    let bin = build_prog("ghosts");
    let ready = format!("{dir}ghosts.status");
    let verify = format!("{dir}ghosts.verify.status");
    dump_restore_cmd_twice_with(
        &format!("{} {mode}", bin.display()),
        &ready,
        opts,
        "",
        |ns, pid, round| {
            let v = ns.ask(pid, &verify, "\n");
            assert_eq!(v.trim(), "ok", "round {round} ({mode}): {v}");
        },
    );
}

/// Regular files deleted while open: contents (a sparse one keeps its
/// holes), offsets, owner and mode, two names of one inode staying one
/// inode, a shared mapping of an unlinked file, an O_TMPFILE file; no ghost
/// left on disk; an inotify watch on a deleted file is on the restored inode.
#[test]
fn deleted_regular_files_come_back_with_data_offsets_owners_and_one_inode() {
    ghosts_twice("reg", "", "");
}

/// Other kinds of deleted objects: the cwd in a removed directory, a
/// removed directory held open, an unlinked FIFO with its queued bytes, an
/// unlinked device node, an unlinked symlink held by an O_PATH fd.
#[test]
fn removed_cwd_directories_fifos_devices_and_symlinks_come_back() {
    ghosts_twice("kinds", "", "");
}

/// --link-remap: a file deleted under the name it was opened by but linked
/// elsewhere is the same inode after the restore, and the link remap the
/// dump made is gone once restored (as with CRIU, such images restore once).
#[test]
fn a_deleted_file_linked_elsewhere_comes_back_with_link_remap() {
    let bin = build_prog("ghosts");
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         {} linked >/dev/null 2>&1 </dev/null & P=$!; \
         while [ ! -s /tmp/anchor/ghosts.status ]; do sleep 0.02; done; \
         mkdir img; {CRYO} dump --link-remap -t $P -D /tmp/anchor/img 2>/tmp/anchor/.dump-err; echo $? > /tmp/anchor/.dump-rc; \
         wait $P; ls > /tmp/anchor/.after-dump; \
         {CRYO} restore --link-remap -d -D /tmp/anchor/img 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; \
         exec sleep 100000",
        bin.display()
    );
    let ns = Ns::start(&script);
    let rc = ns.wait_status(".dump-rc", "\n");
    let derr = std::fs::read_to_string(ns.anchor(".dump-err")).unwrap_or_default();
    assert_eq!(rc.trim(), "0", "dump: {derr}");
    let (rc, err) = ns.cryo_result();
    assert_eq!(rc, 0, "restore: {err}");
    let after = std::fs::read_to_string(ns.anchor(".after-dump")).unwrap();
    assert!(after.contains("link_remap."), "no link remap made by the dump: {after}");
    let pid = *ns.inner_pids().iter().max().expect("restored task");
    let v = ns.ask(pid, "ghosts.verify.status", "\n");
    assert_eq!(v.trim(), "ok", "{v}");
}

/// Without --link-remap such a file is refused by the dump, naming the option.
#[test]
fn a_deleted_file_linked_elsewhere_is_refused_without_link_remap() {
    let bin = build_prog("ghosts");
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         {} linked >/dev/null 2>&1 </dev/null & P=$!; \
         while [ ! -s /tmp/anchor/ghosts.status ]; do sleep 0.02; done; \
         mkdir img; {CRYO} dump -t $P -D /tmp/anchor/img 2>/tmp/anchor/.dump-err; echo $? > /tmp/anchor/.dump-rc; \
         kill -9 $P; exec sleep 100000",
        bin.display()
    );
    let ns = Ns::start(&script);
    let rc = ns.wait_status(".dump-rc", "\n");
    let err = std::fs::read_to_string(ns.anchor(".dump-err")).unwrap_or_default();
    assert_ne!(rc.trim(), "0", "dump succeeded: {err}");
    assert!(err.contains("--link-remap") && err.contains("lnk.a"), "{err}");
    let left: Vec<_> = std::fs::read_dir(ns.anchor(""))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !left.iter().any(|n| n.to_string_lossy().contains("link_remap")),
        "link remap left: {left:?}"
    );
}

/// A chrooted task with its cwd inside the new root, holding files of
/// /proc/<pid> of itself and of its child.
#[test]
fn chroot_cwd_and_proc_files_of_the_tree_come_back() {
    ghosts_twice("chroot", "", "jail/");
}

/// The ghost limit counts data, not holes: a deleted file of 64 MiB with
/// 32 KiB of data is saved under a 1 MiB limit; one holding 2 MiB of data is
/// refused, naming the limit.
#[test]
fn the_ghost_limit_counts_data_not_holes() {
    ghosts_twice("reg", "--no-ghost-fiemap", "");
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         head -c 2M /dev/urandom > big; (exec 3<big; rm big; echo > ready; exec sleep 1000) & P=$!; \
         while [ ! -s /tmp/anchor/ready ]; do sleep 0.02; done; \
         mkdir img; {CRYO} dump --ghost-limit 1M -t $P -D /tmp/anchor/img 2>/tmp/anchor/.dump-err; echo $? > /tmp/anchor/.dump-rc; \
         kill -9 $P; exec sleep 100000"
    );
    let ns = Ns::start(&script);
    let rc = ns.wait_status(".dump-rc", "\n");
    let err = std::fs::read_to_string(ns.anchor(".dump-err")).unwrap_or_default();
    assert_ne!(rc.trim(), "0", "dump succeeded: {err}");
    assert!(err.contains("ghost limit") && err.contains("big"), "{err}");
}

/// The cwd in /proc/<pid> of a process that is gone, and a file of it held
/// open: a stand-in with that pid lets them be opened at restore, and is
/// gone again (getcwd fails, reading the file fails with ESRCH).
#[test]
fn cwd_and_files_in_the_proc_dir_of_a_dead_process_come_back() {
    ghosts_twice("deadproc", "", "");
}

/// /proc/self/fdinfo/N and /proc/self/fd/N of the task's own eventfd come
/// back naming that fd of the restored process (they are opened once the
/// task's fds are at their numbers), twice.
#[test]
fn proc_files_of_the_tasks_own_fds_come_back_twice() {
    let prog = build_prog("ownfdinfo");
    dump_restore_cmd_twice(
        &format!("{} /tmp/anchor", prog.display()),
        "ownfdinfo.ready",
        |ns, pid, round| {
            let v = ns.ask(pid, "ownfdinfo.verify", "\n");
            assert_eq!(v.trim(), "ok", "round {round}");
        },
    );
}
