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
