//! Restore tests: memory: protections, many VMAs, copy-on-write sharing, aio rings, hugetlb.

use super::*;

/// Every field of a memzoo verify line must be ok.
fn all_ok(line: &str, round: u32, who: &str) {
    for f in line.split_whitespace().filter(|f| f.contains('=')) {
        assert!(f.ends_with("=ok"), "round {round}: {who}: {f} in {line:?}");
    }
}

/// madvise flags, mlock, MAP_NORESERVE and MAP_DROPPABLE come back in
/// smaps unchanged; data behind PROT_NONE/write-only and beside a guard
/// page survives, and the guard still faults; 5000 one-page VMAs dump
/// with an fd limit of 4096 (their pages share pipes) and restore (the
/// restorer's arguments have room for all of them); pages a parent and its
/// child shared copy-on-write are the same physical pages again, and those
/// either one changed, or the child dropped, are not.
#[test]
fn dump_restore_keeps_vma_flags_hidden_data_guards_many_vmas_and_cow_sharing_twice() {
    let prog = build_prog("memzoo");
    dump_restore_cmd_twice_with(
        prog.to_str().unwrap(),
        "memzoo.status",
        "",
        "ulimit -n 4096;",
        |ns, pid, round| {
            let kid: i32 = field(&ns.wait_status("memzoo.status", "kid="), "kid").parse().unwrap();
            let p = ns.ask(pid, "memzoo.verify.status", "cow=");
            all_ok(&p, round, "parent");
            for must in [
                "locked=ok",
                "maplocked=ok",
                "seq=ok",
                "rand=ok",
                "wipeonfork=ok",
                "protnone=ok",
            ] {
                assert!(p.contains(must), "round {round}: parent: no {must} in {p:?}");
            }
            let c = ns.ask(kid, "memzoo.child.verify.status", "done");
            all_ok(&c, round, "child");
            assert!(c.contains("wiped=ok"), "round {round}: child: {c:?}");
        },
    );
}

/// `cryo dump` of `memrefuse MODE` fails naming the pid, the mapping and
/// `what`; nothing is written and the program goes on untouched.
fn refused(mode: &str, what: &str) {
    let prog = build_prog("memrefuse");
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         {} {mode} >/dev/null 2>&1 </dev/null & P=$!; \
         while [ ! -s /tmp/anchor/memrefuse.status ]; do sleep 0.02; done; \
         if grep -q ready memrefuse.status; then \
           mkdir /tmp/anchor/img; {CRYO} dump -t $P -D /tmp/anchor/img 2>/tmp/anchor/.dump-err; \
           echo $? > /tmp/anchor/.dump-rc; ls /tmp/anchor/img > /tmp/anchor/.imgs; \
         fi; echo $P > /tmp/anchor/.root; wait $P; exec sleep 100000",
        prog.display()
    );
    let ns = Ns::start(&script);
    let st = ns.wait_status("memrefuse.status", "\n");
    if st.contains("nohuge") {
        eprintln!("no huge page to map (vm.nr_hugepages): the hugetlb refusal is not exercised");
        return;
    }
    let rc = ns.wait_status(".dump-rc", "\n");
    let err = std::fs::read_to_string(ns.anchor(".dump-err")).unwrap_or_default();
    let pid: i32 = ns.wait_status(".root", "\n").trim().parse().unwrap();
    assert_ne!(rc.trim(), "0", "the dump of {mode} succeeded");
    assert!(
        err.contains(what) && err.contains(&format!("pid {pid}")) && err.contains("0x"),
        "{mode}: {err}"
    );
    assert_eq!(ns.wait_status(".imgs", "").trim(), "", "{mode}: images were written");
    assert_eq!(ns.ask(pid, "memrefuse.verify.status", "\n").trim(), "ok");
}

/// An AIO context comes back at its address with the completed events
/// nobody had read yet, and takes new requests.
#[test]
fn dump_restore_keeps_an_aio_ring_with_unread_events_twice() {
    let prog = build_prog("aioring");
    dump_restore_cmd_twice(prog.to_str().unwrap(), "aioring.status", |ns, pid, round| {
        let ctx = field(&ns.wait_status("aioring.status", "ctx="), "ctx");
        // The answer comes from the restored program: its maps are final.
        let v = ns.ask(pid, "aioring.verify.status", "again=");
        assert_eq!(v.trim(), "events=ok again=ok", "round {round}");
        let o = ns.outer(pid).unwrap();
        let maps = std::fs::read_to_string(format!("/proc/{o}/maps")).unwrap();
        assert!(
            maps.lines()
                .any(|l| l.starts_with(&format!("{ctx}-")) && l.contains("/[aio]")),
            "round {round}: no AIO ring at {ctx}:\n{maps}"
        );
    });
}

/// Hugetlb memory (MAP_HUGETLB) is refused at dump, not taken for a ghost file.
#[test]
fn hugetlb_mappings_are_refused_at_dump() {
    refused("hugetlb", "hugetlb mapping");
}

/// A private mapping of a memfd comes back as a private mapping of the
/// same memfd: its copied-on-write page stays its own, the others follow
/// later writes to the memfd.
#[test]
fn dump_restore_keeps_a_private_memfd_mapping_twice() {
    let prog = build_prog("memfdpriv");
    dump_restore_cmd_twice(prog.to_str().unwrap(), "memfdpriv.status", |ns, pid, round| {
        let v = ns.ask(pid, "memfdpriv.verify.status", "after=");
        assert_eq!(v.trim(), "before=ok after=ok", "round {round}");
    });
}
