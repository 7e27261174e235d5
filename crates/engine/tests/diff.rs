//! Two dumps of the same program taken at different moments: `crit diff` (its library) reports exactly
//! the pages the program changed in between, and both dumps pass `crit check`.

mod common;

use std::process::Command;

use common::*;
use cryo_image::ImageSet;

fn dump(pid: i32, dir: &std::path::Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_cryo"))
        .args(["dump", "--leave-running", "-t", &pid.to_string(), "-D"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cryo dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn diff_of_two_dumps_shows_exactly_the_changed_pages() {
    let root = tmp_dir("diff-two-dumps");
    let status = root.join("status");
    let (t, line) = Target::start("pages", &[status.to_str().unwrap()]);
    let base = u64::from_str_radix(line.trim_start_matches("ready 0x"), 16).unwrap();
    let (a, b) = (root.join("a"), root.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    dump(t.pid, &a);
    ask(t.pid, &status, "changed");
    dump(t.pid, &b);
    drop(t);

    let (sa, sb) = (ImageSet::open(&a).unwrap(), ImageSet::open(&b).unwrap());
    for s in [&sa, &sb] {
        let r = cryo_image::check::check_set(s);
        assert!(r.is_ok(), "{r}");
    }
    let d = cryo_crit::diff::diff_sets(&sa, &sb).unwrap();
    assert!(!d.same);
    let p = d
        .processes_changed
        .iter()
        .find(|p| p.pid as i32 == p.pid_b as i32)
        .unwrap();
    // Inside the program's own mapping, only pages 5 and 40 changed.
    let end = base + 64 * 4096;
    let ours: Vec<(u64, u64, &str)> = p
        .memory
        .ranges
        .iter()
        .filter(|r| r.start < end && r.end > base)
        .map(|r| (r.start, r.pages, r.kind))
        .collect();
    assert_eq!(
        ours,
        vec![(base + 5 * 4096, 1, "changed"), (base + 40 * 4096, 1, "changed")]
    );
    // And the changed bytes are the ones the program flipped.
    let pa = sa.read_memory(p.pid, base + 5 * 4096 + 100, 1).unwrap();
    let pb = sb.read_memory(p.pid, base + 5 * 4096 + 100, 1).unwrap();
    assert_eq!(pa[0] ^ 0xff, pb[0]);
}

/// `crit core` of a live program dumped here: gdb, given the very program and this machine's libc,
/// unwinds every thread to its function (the fixture-based crit tests cannot: their libc is another
/// machine's).
#[test]
fn gdb_unwinds_every_thread_of_a_crit_core_of_a_live_dump() {
    let root = tmp_dir("gdb-live-core");
    let (t, _) = Target::start("workers", &[]);
    let images = root.join("images");
    std::fs::create_dir_all(&images).unwrap();
    // The threads are in pause() once the barrier is past: wait until every one sleeps.
    for _ in 0..polls(10) {
        let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{}/task", t.pid)).unwrap().collect();
        let sleeping = tasks
            .iter()
            .filter(|e| {
                let p = e.as_ref().unwrap().path().join("stat");
                std::fs::read_to_string(p).is_ok_and(|s| s.contains(") S "))
            })
            .count();
        if tasks.len() == 4 && sleeping == 4 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    dump(t.pid, &images);
    let set = ImageSet::open(&images).unwrap();
    let core = root.join("core");
    let sum = cryo_crit::coredump::write_core(&set, t.pid as u32, &core).unwrap();
    assert_eq!(sum.threads.len(), 4);
    let o = cryo_testsupport::gdb(&["thread apply all bt"])
        .arg(prog("workers"))
        .arg(&core)
        .output()
        .expect("gdb is installed");
    drop(t);
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}");
    assert!(out.contains(" main ("), "{out}");
    assert_eq!(out.matches(" worker (").count(), 3, "{out}");
    std::fs::remove_dir_all(root).unwrap();
}
