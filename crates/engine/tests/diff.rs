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
    assert!(kill(t.pid, libc::SIGUSR1));
    wait_file(&status, "changed");
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
