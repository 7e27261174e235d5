//! Incremental dumps: `cryo pre-dump` chains tracked with userfaultfd
//! write-protection (no soft-dirty here), `--track-mem --prev-images-dir`,
//! restore through the parent links, `crit check` and `crit merge`.

use super::*;

/// Pages each set of a chain wrote (its pages files' bytes / 4096).
fn pages_in(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .map(|e| e.metadata().unwrap().len() / 4096)
        .sum()
}

/// A chain of 5 sets (4 pre-dumps and a dump) of a program that rewrites
/// 1% of its 64 MiB between them: the first writes everything, each later
/// one about 1%; the last set checks as a whole (crit check follows the
/// chain) and restores with its contents exact (the program checks every
/// page); the merged set (crit merge) is self-contained and restores too.
#[test]
fn pre_dump_chain_writes_only_what_changed_and_restores_exactly() {
    let prog = build_prog("dirty");
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         {} 64 /tmp/anchor >/dev/null 2>&1 </dev/null & P=$!; \
         while ! grep -qs ready dirty.status; do sleep 0.02; done; mkdir 1 2 3 4 5; \
         {CRYO} pre-dump -t $P -D 1 2>>.err || echo 'pre-dump 1 failed' >>.err; \
         for i in 2 3 4 5; do \
           kill -USR1 $P; while ! grep -qs gen=$((i-1)) dirty.status; do sleep 0.02; done; \
           if [ $i = 5 ]; then {CRYO} dump -t $P -D 5 --track-mem --prev-images-dir ../4 2>>.err || echo 'dump failed' >>.err; \
           else {CRYO} pre-dump -t $P -D $i --prev-images-dir ../$((i-1)) 2>>.err || echo \"pre-dump $i failed\" >>.err; fi; \
         done; \
         echo $P > .root; wait $P; echo done > .dumped; \
         {CRYO} restore -D 5 -d 2>.rst-err; echo $? > .rst-rc; \
         while [ ! -e .merged ]; do sleep 0.02; done; \
         {CRYO} restore -D merged -d 2>.rst2-err; echo $? > .rst2-rc; \
         exec sleep 100000",
        prog.display()
    );
    let ns = Ns::start(&script);
    ns.wait_status(".dumped", "done");
    let err = std::fs::read_to_string(ns.anchor(".err")).unwrap_or_default();
    assert!(!err.contains("failed"), "{err}");
    let root: i32 = ns.wait_status(".root", "\n").trim().parse().unwrap();
    let first = pages_in(&ns.anchor("1"));
    assert!(first >= 64 * 256, "the first pre-dump wrote {first} pages");
    for i in 2..=5 {
        let d = ns.anchor(&i.to_string());
        let n = pages_in(&d);
        // 1% of 16384 pages is 164; the stack, libc's data and the
        // status-file buffers add a few.
        assert!((150..=260).contains(&n), "set {i} wrote {n} pages (1% is 164)");
        assert_eq!(
            std::fs::read_link(d.join("parent")).unwrap(),
            PathBuf::from(format!("../{}", i - 1))
        );
    }
    let r = cryo_image::check::check_dir(ns.anchor("5"));
    assert!(r.is_ok(), "{r}");
    let rc = ns.wait_status(".rst-rc", "\n");
    assert_eq!(
        rc.trim(),
        "0",
        "{}",
        std::fs::read_to_string(ns.anchor(".rst-err")).unwrap_or_default()
    );
    let _ = std::fs::remove_file(ns.anchor("dirty.verify"));
    ns.kill(root, libc::SIGUSR2);
    assert_eq!(ns.wait_status("dirty.verify", "gen=").trim(), "gen=4 ok");
    // Goes on: one more generation, checked.
    ns.kill(root, libc::SIGUSR1);
    ns.wait_status("dirty.status", "gen=5");
    let _ = std::fs::remove_file(ns.anchor("dirty.verify"));
    ns.kill(root, libc::SIGUSR2);
    assert_eq!(ns.wait_status("dirty.verify", "gen=").trim(), "gen=5 ok");
    ns.kill(root, libc::SIGKILL);
    // crit merge: one self-contained set.
    cryo_crit::cmd::merge::run(&cryo_crit::cmd::merge::MergeArgs {
        dir: ns.anchor("5"),
        out: ns.anchor("merged"),
    })
    .expect("crit merge");
    assert!(!ns.anchor("merged/parent").exists());
    let r = cryo_image::check::check_dir(ns.anchor("merged"));
    assert!(r.is_ok(), "{r}");
    while ns.outer(root).is_some() {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(ns.anchor(".merged"), "").unwrap();
    let rc = ns.wait_status(".rst2-rc", "\n");
    assert_eq!(
        rc.trim(),
        "0",
        "{}",
        std::fs::read_to_string(ns.anchor(".rst2-err")).unwrap_or_default()
    );
    let _ = std::fs::remove_file(ns.anchor("dirty.verify"));
    ns.kill(root, libc::SIGUSR2);
    assert_eq!(ns.wait_status("dirty.verify", "gen=").trim(), "gen=4 ok");
    // A chain with a link missing is refused by check and restore.
    std::fs::remove_file(ns.anchor(&format!("3/pagemap-{root}.img"))).unwrap();
    let r = cryo_image::check::check_dir(ns.anchor("5"));
    assert!(!r.is_ok(), "a chain without set 3's pagemap checked ok");
}
