//! Restore tests: task state: credentials of non-root tasks, interrupted syscalls, scheduling, rseq, futexes, timers, stops.

#[allow(unused_imports)]
use super::*;

/// Shell commands (for `pre_dump`) that write every thread's credential
/// lines of process `$P` to /tmp/anchor/creds.before, in the form of
/// [`task_creds`].
const CREDS_BEFORE: &str = "for t in $(ls /proc/$P/task | sort -n); do echo \"tid $t\"; \
     grep -E '^(Uid|Gid|Groups|Cap|NoNewPrivs)' /proc/$P/task/$t/status; done > /tmp/anchor/creds.before;";

/// Uid/Gid/Groups/Cap*/NoNewPrivs lines of every thread of `inner` (a pid in
/// the namespace), read through the namespace's own /proc.
fn task_creds(ns: &Ns, inner: i32) -> String {
    let dir = format!("/proc/{}/root/proc/{inner}/task", ns.pid1);
    let mut tids: Vec<i32> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect();
    tids.sort();
    let mut out = String::new();
    for t in tids {
        out += &format!("tid {t}\n");
        let st = std::fs::read_to_string(format!("{dir}/{t}/status")).unwrap();
        for l in st.lines() {
            if ["Uid:", "Gid:", "Groups:", "Cap", "NoNewPrivs:"]
                .iter()
                .any(|k| l.starts_with(k))
            {
                out += l;
                out += "\n";
            }
        }
    }
    out
}

/// Dump and restore (twice) the program `cmd` (creds.c), check that every
/// thread has the credentials it was dumped with (as /proc shows them and as
/// the thread itself reads them) and still runs; `want` must be among the
/// dumped lines (the test's own check that the set-up happened).
fn creds_twice(cmd: &str, want: &[&str]) {
    dump_restore_cmd_twice_with(cmd, "creds.ready", "", CREDS_BEFORE, |ns, pid, round| {
        let before = std::fs::read_to_string(ns.anchor("creds.before")).unwrap();
        assert_eq!(before.matches("tid ").count(), 4, "{before}");
        for w in want {
            assert!(before.contains(w), "dumped credentials lack {w:?}:\n{before}");
        }
        // The program answers once every thread runs again (the restore is over).
        let v = ns.ask(pid, "creds.verify", "creds=");
        assert_eq!(v.trim(), "creds=ok", "round {round}");
        assert_eq!(task_creds(ns, pid), before, "round {round}: credentials after restore");
    });
}

/// A program started as a non-root user (setpriv: uid/gid 1000, no groups,
/// CAP_NET_BIND_SERVICE inheritable and ambient) with threads: after restore
/// every thread has exactly its ids, groups and capability sets again.
#[test]
fn non_root_threads_keep_their_credentials_and_ambient_caps_twice() {
    let prog = build_prog("creds");
    creds_twice(
        &format!(
            "setpriv --reuid 1000 --regid 1000 --clear-groups --inh-caps +net_bind_service \
             --ambient-caps +net_bind_service {} plain /tmp/anchor",
            prog.display()
        ),
        &[
            "Uid:\t1000\t1000\t1000\t1000",
            "CapAmb:\t0000000000000400",
            "CapEff:\t0000000000000400",
        ],
    );
}

/// Threads whose credentials differ (raw per-thread setresuid/setresgid,
/// PR_SET_KEEPCAPS + supplementary groups + ambient caps, a different fsuid,
/// a reduced bounding set and securebits, a root thread with few caps): each
/// thread gets back its own.
#[test]
fn threads_with_credentials_of_their_own_keep_them_twice() {
    let prog = build_prog("creds");
    creds_twice(
        &format!("{} mixed /tmp/anchor", prog.display()),
        &[
            "Uid:\t1001\t1002\t1003\t1002",
            "Gid:\t2001\t2002\t2003\t2002",
            "Groups:\t5 6 7",
            "CapAmb:\t0000000000000400",
            "Uid:\t0\t0\t0\t4321",
            "CapBnd:\t000001fffebfffff",
            "Gid:\t100\t100\t100\t100",
        ],
    );
}

/// A thread whose credentials cannot be put back (cryo runs without
/// CAP_NET_BIND_SERVICE, which the dumped threads hold in their bounding
/// set and one of them in its permitted set): the restore fails with an
/// error naming the task and the credentials, without hanging, and leaves
/// no task behind.
#[test]
fn credentials_that_cannot_be_restored_fail_the_restore_cleanly() {
    let prog = build_prog("creds");
    let ns = Ns::start(&format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         {} mixed /tmp/anchor >/dev/null 2>&1 </dev/null & P=$!; \
         while [ ! -s /tmp/anchor/creds.ready ]; do sleep 0.02; done; echo $P > /tmp/anchor/.root; \
         mkdir img; {CRYO} dump -t $P -D /tmp/anchor/img 2>/tmp/anchor/.dump-err; wait $P; \
         setpriv --bounding-set=-net_bind_service {CRYO} restore -D /tmp/anchor/img 2>/tmp/anchor/.cryo-err; \
         echo $? > /tmp/anchor/.cryo-rc; exec sleep 100000",
        prog.display()
    ));
    let t0 = Instant::now();
    let (rc, err) = ns.cryo_result();
    assert_ne!(rc, 0, "restore succeeded: {err}");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "the failed restore took {:?}",
        t0.elapsed()
    );
    let pid: i32 = std::fs::read_to_string(ns.anchor(".root"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("credentials"),
        "{err}"
    );
    wait_gone(&ns, &[pid]);
    assert_eq!(
        ns.inner_pids(),
        Vec::<i32>::new(),
        "tasks left after the failed restore"
    );
}

/// Threads asleep in clock_nanosleep (relative and absolute), nanosleep, a
/// condition variable (futex), pthread_join, read on a pipe, and a main
/// thread in rt_sigsuspend: after restore each one goes on (sleeps finish
/// and start again, the wakeups arrive) and every pthread_join returns the
/// thread's own value.
#[test]
fn threads_asleep_in_system_calls_go_on_after_restore_twice() {
    self_check_twice(
        "sleepers",
        "sleepers.ready",
        "sleepers.verify",
        "sleepers=",
        "sleepers=ok",
        |_, _, _| {},
    );
}

/// A zombie as CRIU 4.2 writes it: CRIU never seizes a zombie, so its
/// pstree entry's thread slot holds an arbitrary number (3002371584 in a
/// real CRIU dump of this program) and its core has only the task core
/// (TASK_DEAD, exit code), no registers and no thread core. cryo restores
/// it: the zombie is back, unreaped, with its exit status, under its
/// running parent.
#[test]
fn a_zombie_written_as_criu_writes_it_is_restored() {
    use cryo_image::pb;
    let prog = build_prog("zombie");
    let ns = Ns::start(&format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         sh -c 'exec {} /tmp/anchor > /tmp/anchor/zombie.out' </dev/null 2>/dev/null & P=$!; \
         while [ ! -s /tmp/anchor/zombie.out ]; do sleep 0.02; done; echo $P > /tmp/anchor/.root; \
         mkdir img; {CRYO} dump -t $P -D /tmp/anchor/img 2>/tmp/anchor/.dump-err; echo $? > /tmp/anchor/.dump-rc; wait $P; \
         while [ ! -e /tmp/anchor/.edited ]; do sleep 0.02; done; \
         {CRYO} restore -d -D /tmp/anchor/img 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; \
         exec sleep 100000",
        prog.display()
    ));
    let rc = ns.wait_status(".dump-rc", "\n");
    assert_eq!(
        rc.trim(),
        "0",
        "dump: {:?}",
        std::fs::read_to_string(ns.anchor(".dump-err"))
    );
    let pid: i32 = ns.wait_status(".root", "\n").trim().parse().unwrap();
    let kid: i32 = field(&ns.wait_status("zombie.out", "zombie="), "zombie")
        .parse()
        .unwrap();
    let img = ns.anchor("img");
    // pstree: the zombie's thread slot as CRIU leaves it.
    let pst = img.join("pstree.img");
    let mut tree: Vec<pb::PstreeEntry> = cryo_image::writer::read_entries(&pst, "PSTREE").unwrap();
    let z = tree
        .iter_mut()
        .find(|p| p.pid == kid as u32)
        .expect("the zombie in pstree.img");
    z.threads = vec![3_002_371_584];
    cryo_image::writer::write_entries(&pst, "PSTREE", &tree).unwrap();
    // core: only the task core, as CRIU's dump_one_zombie writes it.
    let core_p = img.join(format!("core-{kid}.img"));
    let core: Vec<pb::CoreEntry> = cryo_image::writer::read_entries(&core_p, "CORE").unwrap();
    let tc = core[0].tc.clone().expect("a task core");
    // exit_code is the wait status (exit 3), as CRIU reads it from /proc/PID/stat.
    assert_eq!((tc.task_state, tc.exit_code), (2, 768));
    let criu = pb::CoreEntry {
        mtype: core[0].mtype,
        tc: Some(pb::TaskCoreEntry {
            task_state: 2,
            exit_code: tc.exit_code,
            comm: tc.comm.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    cryo_image::writer::write_entries(&core_p, "CORE", &[criu]).unwrap();
    std::fs::write(ns.anchor(".edited"), "").unwrap();
    let (rc, err) = ns.cryo_result();
    assert_eq!(rc, 0, "restore of CRIU's zombie: {err}");
    let o = ns.outer_any(kid).expect("the zombie is back");
    let stat = std::fs::read_to_string(format!("/proc/{o}/stat")).unwrap();
    let f: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    assert_eq!(f[0], "Z", "{stat}");
    assert_eq!(f[49], "768", "exit status of the zombie: {stat}");
    assert_eq!(Some(f[1].parse::<i32>().unwrap()), ns.outer(pid), "the zombie's parent");
    assert_eq!(ns.ask(pid, "verify", "ok").trim(), "ok");
}

/// Thread state that only shows when it is used: a SIGEV_THREAD timer
/// (glibc's helper thread is signalled with SIGEV_THREAD_ID) and a timer
/// aimed at one thread keep firing at the right thread; each thread's robust
/// futex list is registered again (a thread dying with a robust mutex leaves
/// it EOWNERDEAD); a SIGTRAP handler survives dump and restore; a child that
/// changed its uid and then set a parent-death signal still gets it when its
/// parent dies.
#[test]
fn timers_robust_futexes_sigtrap_handler_and_pdeath_signal_work_after_restore_twice() {
    self_check_twice(
        "tstate",
        "tstate.ready",
        "tstate.verify",
        "tstate=",
        "tstate=ok",
        |ns, pid, round| {
            let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
            let tc = set.core(pid as u32).unwrap().tc.unwrap();
            let posix = tc.timers.unwrap().posix;
            assert_eq!(posix.len(), 2, "round {round}");
            for t in &posix {
                assert_eq!(t.it_sigev_notify & 4, 4, "round {round}: SIGEV_THREAD_ID timer {t:?}");
                assert!(t.notify_thread_id.is_some_and(|tid| tid != pid), "round {round}: {t:?}");
            }
            let _ = std::fs::remove_file(ns.anchor("tstate.pdeath"));
        },
    );
}

/// Scheduling policies come back per thread and per process, with
/// SCHED_RESET_ON_FORK (which /proc/PID/stat does not show) and the
/// real-time priorities and nice values.
#[test]
fn scheduling_policies_come_back_per_thread_twice() {
    self_check_twice(
        "sched",
        "sched.ready",
        "sched.verify",
        "sched=",
        "sched=ok",
        |ns, _pid, _round| {
            let kid: i32 = field(&ns.wait_status("sched.ready", "child="), "child")
                .parse()
                .unwrap();
            let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
            let thc = set.core(kid as u32).unwrap().thread_core.unwrap();
            assert_eq!(
                (thc.sched_policy, thc.sched_prio),
                (Some(libc::SCHED_RR as u32 | 0x4000_0000), Some(3))
            );
        },
    );
}

/// `cryo dump` of `cmd` (started in a fresh namespace) fails, leaving the
/// program running, with an error that contains every one of `want`.
fn dump_refused(cmd: &str, ready: &str, want: &[&str]) {
    let ns = Ns::start(&format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         {cmd} >/dev/null 2>&1 </dev/null & P=$!; echo $P > /tmp/anchor/.root; \
         while [ ! -e /tmp/anchor/{ready} ]; do sleep 0.02; done; \
         mkdir img; {CRYO} dump -t $P -D /tmp/anchor/img 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; \
         exec sleep 100000"
    ));
    let (rc, err) = ns.cryo_result();
    assert_ne!(rc, 0, "dump of {cmd} succeeded: {err}");
    let pid: i32 = ns.wait_status(".root", "\n").trim().parse().unwrap();
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    for w in want {
        assert!(err.contains(w), "{err} lacks {w:?}");
    }
    assert!(ns.inner_pids().contains(&pid), "the refused program is gone");
}

/// A task that unshared a time namespace for its future children (its own
/// /proc/PID/ns/time_for_children differs) is refused at dump, never
/// restored without it.
#[test]
fn a_time_namespace_for_children_is_refused_at_dump() {
    dump_refused(
        // unshare(CLONE_NEWTIME): the caller stays, its children would not.
        "perl -e 'syscall(272, 0x80) == 0 or die; open(F, \">/tmp/anchor/ns.ready\"); close F; sleep 1000'",
        "ns.ready",
        &["time_for_children", "time namespace"],
    );
}

/// A pending SIGTRAP cannot be kept (the dumper's own traps are SIGTRAPs):
/// the dump is refused (as CRIU refuses it), naming the thread.
#[test]
fn a_pending_sigtrap_is_refused_at_dump() {
    dump_refused(
        "perl -e '$SIG{TRAP} = sub {}; use POSIX; my $s = POSIX::SigSet->new(5); sigprocmask(SIG_BLOCK, $s); \
         kill 5, $$; open(F, \">/tmp/anchor/trap.ready\"); close F; sleep 1000'",
        "trap.ready",
        &["pending SIGTRAP"],
    );
}

/// A thread dumped inside an rseq critical section is restored at the
/// section's abort handler (as the kernel would have sent it there): before,
/// it went on inside the section after the parasite's run had cleared
/// rseq_cs, unprotected.
#[test]
fn a_thread_inside_an_rseq_critical_section_restarts_at_its_abort_handler_twice() {
    let prog = build_prog("rseqcs");
    dump_restore_cmd_twice(
        &format!("{} /tmp/anchor", prog.display()),
        "rseq.ready",
        |ns, pid, round| {
            let v = ns.ask(pid, "rseq.verify", "rseq=");
            assert!(v.starts_with("rseq=ok"), "round {round}: {v}");
        },
    );
}
