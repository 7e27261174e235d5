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

/// A mapping of a file on a hugetlbfs mount is refused at dump, not taken
/// for a ghost file.
#[test]
fn hugetlbfs_file_mappings_are_refused_at_dump() {
    let _pool = HugePool::at_least(4);
    refused("hugetlb", "hugetlb mapping");
}

/// Free 2 MiB huge pages for a test: vm.nr_hugepages is raised so that at
/// least `free` are free, and put back on drop.
struct HugePool {
    old: Option<String>,
}

impl HugePool {
    const NR: &'static str = "/proc/sys/vm/nr_hugepages";

    fn at_least(free: u64) -> HugePool {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let have: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("HugePages_Free:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        if have >= free {
            return HugePool { old: None };
        }
        let old = std::fs::read_to_string(Self::NR).unwrap();
        let want = old.trim().parse::<u64>().unwrap() + free - have;
        std::fs::write(Self::NR, format!("{want}\n")).unwrap();
        HugePool { old: Some(old) }
    }
}

impl Drop for HugePool {
    fn drop(&mut self) {
        if let Some(old) = &self.old {
            let _ = std::fs::write(Self::NR, old);
        }
    }
}

/// The smaps block of the mapping of `pid` (outer) that starts at `addr` (hex, no 0x).
fn smaps_block(pid: i32, addr: &str) -> String {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut out = String::new();
    let mut inside = false;
    for l in smaps.lines() {
        let head = l.split_whitespace().next().unwrap_or("");
        if head.contains('-') && head.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            inside = head.starts_with(&format!("{addr}-"));
        }
        if inside {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Huge-page memory of a parent and the child it forked comes back: private
/// anonymous MAP_HUGETLB memory with each one's data (the copies stay
/// apart: the child's write after restore does not reach the parent),
/// shared anonymous MAP_HUGETLB memory and a MFD_HUGETLB memfd mapping
/// shared between the two again (the child's writes reach the parent), all
/// on 2 MiB pages again (smaps KernelPageSize, VmFlags ht).
#[test]
fn dump_restore_keeps_private_and_shared_hugetlb_memory_of_parent_and_child_twice() {
    let _pool = HugePool::at_least(12);
    let prog = build_prog("hugemem");
    dump_restore_cmd_twice(prog.to_str().unwrap(), "hugemem.status", |ns, pid, round| {
        let st = ns.wait_status("hugemem.status", "kid=");
        let kid: i32 = field(&st, "kid").parse().unwrap();
        let v = ns.ask(pid, "hugemem.verify.status", "\n");
        assert_eq!(v.trim(), "mem=ok seeds=1000,2000", "round {round}: parent");
        let v = ns.ask(kid, "hugemem.child.verify.status", "\n");
        assert_eq!(v.trim(), "mem=ok seeds=1000,2000", "round {round}: child");
        // Both answered: their mappings are the final ones.
        for who in [pid, kid] {
            let o = ns.outer(who).unwrap();
            for (key, len, name) in [
                ("priv", 4 << 20, "/anon_hugepage"),
                ("shared", 2 << 20, "/anon_hugepage"),
                ("memfd", 2 << 20, "/memfd:cryo-huge"),
            ] {
                let addr = field(&st, key);
                let addr = addr.trim_start_matches("0x");
                let b = smaps_block(o, addr);
                let head = b
                    .lines()
                    .next()
                    .unwrap_or_else(|| panic!("round {round}: {who}: nothing at {addr}"));
                let (s, e) = head.split_whitespace().next().unwrap().split_once('-').unwrap();
                let got = u64::from_str_radix(e, 16).unwrap() - u64::from_str_radix(s, 16).unwrap();
                assert_eq!(got, len, "round {round}: {who}: {key}: {head}");
                assert!(head.contains(name), "round {round}: {who}: {key}: {head}");
                let shared = head.split_whitespace().nth(1).unwrap().ends_with('s');
                assert_eq!(shared, key != "priv", "round {round}: {who}: {key}: {head}");
                assert!(
                    b.lines()
                        .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["KernelPageSize:", "2048", "kB"]),
                    "round {round}: {who}: {key}: {b}"
                );
                let flags = b.lines().find(|l| l.starts_with("VmFlags:")).unwrap_or("");
                assert!(
                    flags.split_whitespace().any(|f| f == "ht"),
                    "round {round}: {who}: {key}: {flags}"
                );
            }
        }
        // The child rewrote its first private page (the parent's keeps the
        // pattern) and both shared pages (the parent sees them).
        let v = ns.ask(pid, "hugemem.verify.status", "\n");
        assert_eq!(
            v.trim(),
            "mem=ok seeds=1001,2001",
            "round {round}: parent after the child's writes"
        );
        let v = ns.ask(kid, "hugemem.child.verify.status", "\n");
        assert_eq!(v.trim(), "mem=ok seeds=1001,2001", "round {round}: child again");
    });
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
