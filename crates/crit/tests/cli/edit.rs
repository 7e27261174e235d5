//! crit check / diff / rewrite / edit on the CRIU 4.2 fixture sets and on copies corrupted or changed in
//! known ways. Every test works on its own temporary copy; the fixtures are never written.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cryo_image::{pb, read_entries, write_entries, ImageWriter};

use cryo_testsupport::fixture_images as fixture;

fn all_fixture_sets() -> Vec<PathBuf> {
    cryo_testsupport::fixture_dirs()
        .iter()
        .map(|d| d.join("images"))
        .collect()
}

use super::common::run as crit;

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A private copy of a fixture set.
fn copy_set(name: &str) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let dst = t.path().join("images");
    cryo_testsupport::copy_dir(&fixture(name), &dst);
    (t, dst)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn first_pid(dir: &Path) -> u32 {
    read_entries::<pb::PstreeEntry>(dir.join("pstree.img"), "PSTREE").unwrap()[0].pid
}

/// (head, runs) of a pagemap image.
fn read_pagemap(path: &Path) -> (pb::PagemapHead, Vec<pb::PagemapEntry>) {
    use prost::Message;
    let data = fs::read(path).unwrap();
    let img = cryo_image::decode(s(path), &data).unwrap();
    let mut it = img.entries.iter().map(|e| e.msg.encode_to_vec());
    let head = pb::PagemapHead::decode(it.next().unwrap().as_slice()).unwrap();
    let runs = it.map(|b| pb::PagemapEntry::decode(b.as_slice()).unwrap()).collect();
    (head, runs)
}

fn write_pagemap(path: &Path, head: &pb::PagemapHead, runs: &[pb::PagemapEntry]) {
    let mut w = ImageWriter::create(path, Some("PAGEMAP")).unwrap();
    w.entry(head).unwrap();
    for r in runs {
        w.entry(r).unwrap();
    }
    w.finish().unwrap();
}

/// Run `crit check --json` and return (exit code, problems as "file|entry|what").
fn check_problems(dir: &Path) -> (i32, Vec<String>) {
    let o = crit(&["check", "--json", s(dir)]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(&o)));
    let probs = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}|{}|{}",
                p["file"].as_str().unwrap(),
                p["entry"],
                p["what"].as_str().unwrap()
            )
        })
        .collect();
    (o.status.code().unwrap(), probs)
}

// ------------------------------------------------------------------------------------------------
// check

#[test]
fn check_passes_every_fixture() {
    for dir in all_fixture_sets() {
        let o = crit(&["check", s(&dir)]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{}: {out}{err}", dir.display());
        assert!(out.contains(": ok ("), "{out}");
    }
}

#[test]
fn check_reports_a_deleted_image() {
    let (_t, dir) = copy_set("proctree");
    fs::remove_file(dir.join("mm-9409.img")).unwrap();
    let (code, p) = check_problems(&dir);
    assert_eq!(code, 1);
    assert_eq!(p, vec!["pstree.img|2|mm-9409.img is missing (memory map of pid 9409)"]);
    // The human form names the same thing, one line per problem.
    let o = crit(&["check", s(&dir)]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        out,
        "pstree.img entry 2: mm-9409.img is missing (memory map of pid 9409)\n"
    );
    assert!(err.contains("1 problem"), "{err}");
}

#[test]
fn check_reports_a_missing_thread_core_not_a_missing_fdinfo() {
    let (_t, dir) = copy_set("threads4");
    fs::remove_file(dir.join("core-9307.img")).unwrap();
    // CRIU writes no fdinfo image for a process without fds: not a problem.
    fs::remove_file(dir.join("fdinfo-2.img")).unwrap();
    let (code, p) = check_problems(&dir);
    assert_eq!(code, 1);
    assert_eq!(
        p,
        vec!["pstree.img|0|core-9307.img is missing (thread 9307 of pid 9304)"]
    );
}

#[test]
fn check_reports_truncated_pages() {
    let (_t, dir) = copy_set("loop_heap");
    let pages = dir.join("pages-1.img");
    let len = fs::metadata(&pages).unwrap().len();
    cryo_testsupport::cut_short(&pages, 100);
    let (code, p) = check_problems(&dir);
    assert_eq!(code, 1);
    let pid = first_pid(&dir);
    let present = len / 4096;
    assert_eq!(
        p,
        vec![format!(
            "pages-1.img|null|is {} bytes, but pagemap-{pid}.img has {present} present pages = {len} bytes (not a whole number of pages: truncated?)",
            len - 100
        )]
    );
}

#[test]
fn check_reports_a_duplicate_pid() {
    let (_t, dir) = copy_set("proctree");
    let path = dir.join("pstree.img");
    let mut tree = read_entries::<pb::PstreeEntry>(&path, "PSTREE").unwrap();
    // Entry 3 (9410) becomes a second 9409; its child 9411 now has a parent that is not in the tree.
    tree[3].pid = 9409;
    tree[3].threads = vec![9409];
    write_entries(&path, "PSTREE", &tree).unwrap();
    let (code, p) = check_problems(&dir);
    assert_eq!(code, 1);
    assert_eq!(
        p,
        vec![
            "pstree.img|3|pid 9409 appears twice (also entry 2)",
            "pstree.img|3|thread 9409 also belongs to entry 2 (pid 9409)",
            "pstree.img|4|pid 9411: parent 9410 is not in the tree",
        ]
    );
}

#[test]
fn check_reports_a_cycle() {
    let (_t, dir) = copy_set("proctree");
    let path = dir.join("pstree.img");
    let mut tree = read_entries::<pb::PstreeEntry>(&path, "PSTREE").unwrap();
    tree[3].ppid = 9411; // 9410 <-> 9411
    write_entries(&path, "PSTREE", &tree).unwrap();
    let (_, p) = check_problems(&dir);
    assert_eq!(
        p,
        vec!["pstree.img|3|pid 9410: parent chain through 9411 loops (not a tree)"]
    );
}

#[test]
fn check_reports_a_page_run_outside_the_vmas() {
    let (_t, dir) = copy_set("loop_heap");
    let pid = first_pid(&dir);
    let path = dir.join(format!("pagemap-{pid}.img"));
    let (head, mut runs) = read_pagemap(&path);
    let nr = runs[1].nr_pages.unwrap();
    runs[1].vaddr = 0x10000; // nothing is mapped that low
    write_pagemap(&path, &head, &runs);
    let (code, p) = check_problems(&dir);
    assert_eq!(code, 1);
    assert_eq!(
        p,
        vec![format!(
            "pagemap-{pid}.img|2|run 0x10000-{:#x} ({nr} pages): 0x10000 is outside every VMA of the mm image",
            0x10000 + nr * 4096
        )]
    );
}

#[test]
fn check_reports_a_dangling_fd() {
    let (_t, dir) = copy_set("pipe_unread");
    let path = dir.join("fdinfo-2.img");
    let mut fds = read_entries::<pb::FdinfoEntry>(&path, "FDINFO").unwrap();
    let fd = fds[1].fd;
    fds[1].id = 999;
    write_entries(&path, "FDINFO", &fds).unwrap();
    let (code, p) = check_problems(&dir);
    assert_eq!(code, 1);
    assert_eq!(
        p,
        vec![format!("fdinfo-2.img|1|fd {fd}: file id 999 is not in files.img")]
    );
}

#[test]
fn check_reports_a_corrupt_image_and_short_payload() {
    let (_t, dir) = copy_set("pipe_unread");
    // Cut the pipe data short: the payload no longer has the bytes its entry announces.
    let path = dir.join("pipes-data.img");
    cryo_testsupport::cut_short(&path, 10);
    let (code, p) = check_problems(&dir);
    assert_eq!(code, 1);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("pipes-data.img|0|at byte 24: pipe data: needs 16384 bytes, only 16374 left"),
        "{p:?}"
    );
}

#[test]
fn check_on_a_non_set_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let o = crit(&["check", s(t.path())]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(out.contains("no inventory.img"), "{out}");
}

// ------------------------------------------------------------------------------------------------
// edit

/// Run `crit edit` with EDITOR set to a shell snippet. Its scratch JSON goes under the test's own
/// temporary directory (TMPDIR = the directory above the set), so nothing is left behind.
fn edit_with(img: &Path, editor: &str) -> Output {
    let scratch = img.parent().unwrap().parent().unwrap();
    Command::new(env!("CARGO_BIN_EXE_crit"))
        .args(["edit", s(img)])
        .env_remove("VISUAL")
        .env("EDITOR", editor)
        .env("TMPDIR", scratch)
        .output()
        .unwrap()
}

#[test]
fn edit_changes_a_field_with_sed() {
    let (_t, dir) = copy_set("proctree");
    let img = dir.join("fs-9408.img");
    let before = read_entries::<pb::FsEntry>(&img, "FS").unwrap()[0];
    assert_eq!(before.umask, Some(18));
    // Pretty JSON prints umask as 18; make it 63 (0o77).
    let o = edit_with(&img, "sed -i 's/\"umask\": 18/\"umask\": 63/'");
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let after = read_entries::<pb::FsEntry>(&img, "FS").unwrap()[0];
    assert_eq!(after.umask, Some(63));
    assert_eq!(after.cwd_id, before.cwd_id);
    // Everything else of the set is untouched and the set is still consistent.
    for e in fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "fs-9408.img" {
            assert_eq!(
                fs::read(e.path()).unwrap(),
                fs::read(fixture("proctree").join(e.file_name())).unwrap()
            );
        }
    }
    assert!(crit(&["check", s(&dir)]).status.success());
}

#[test]
fn edit_keeps_the_original_on_bad_json_or_failing_editor() {
    let (_t, dir) = copy_set("proctree");
    let img = dir.join("core-9408.img");
    let orig = fs::read(&img).unwrap();
    // Invalid JSON.
    let o = edit_with(&img, "sed -i 's/\"magic\"/magic/'");
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("not valid JSON") && err.contains("is unchanged"), "{err}");
    assert!(err.contains("your edit is kept in"), "{err}");
    let kept = err
        .split("your edit is kept in ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .trim();
    assert!(Path::new(kept).starts_with(dir.parent().unwrap()), "{kept}");
    assert!(fs::read_to_string(kept).unwrap().contains("magic"), "{kept}");
    assert_eq!(fs::read(&img).unwrap(), orig);
    // Valid JSON but a value of the wrong type.
    let o = edit_with(&img, "sed -i 's/\"comm\": \"proctree\"/\"comm\": 12/'");
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("comm"), "{err}");
    assert_eq!(fs::read(&img).unwrap(), orig);
    // The editor fails.
    let o = edit_with(&img, "false");
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("editor `false` failed"), "{err}");
    assert_eq!(fs::read(&img).unwrap(), orig);
    // No change: nothing written.
    let o = edit_with(&img, "true");
    assert!(o.status.success());
    assert_eq!(fs::read(&img).unwrap(), orig);
    // A raw pages image is refused.
    let o = edit_with(&dir.join("pages-1.img"), "true");
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("not a protobuf image"), "{err}");
    // No temporary file left in the set.
    let n = fs::read_dir(&dir).unwrap().count();
    assert_eq!(n, fs::read_dir(fixture("proctree")).unwrap().count());
}

// ------------------------------------------------------------------------------------------------
// rewrite

use std::collections::BTreeMap;

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Every protobuf image of `dir` decodes with CRIU's own crit (Debian's package `criu`).
fn criu_crit_decodes(dir: &Path) {
    let crit_py = Path::new("/usr/bin/crit");
    assert!(crit_py.exists(), "CRIU's crit is needed (apt-get install criu)");
    for (name, _) in snapshot(dir) {
        if !name.ends_with(".img") || name.starts_with("pages-") {
            continue;
        }
        let o = Command::new(crit_py)
            .args(["decode", "-i", s(&dir.join(&name))])
            .output()
            .unwrap();
        assert!(o.status.success(), "CRIU's crit cannot decode {name}: {}", text(&o).1);
        let _: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    }
}

#[test]
fn rewrite_pid_map_renumbers_the_tree_and_passes_both_crits() {
    let input = fixture("proctree");
    let before = snapshot(&input);
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    // A shuffle (9409 and 9411 swap) and two fresh pids.
    let o = crit(&[
        "rewrite",
        s(&input),
        "-o",
        s(&out),
        "--pid-map",
        "9406:500,9408:501,9409:9411,9411:9409",
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{stdout}{err}");
    assert!(stdout.contains("changed: core-9406.img -> core-500.img"), "{stdout}");
    assert!(
        stdout.contains("not fixed: pids stored inside process memory"),
        "{stdout}"
    );
    assert_eq!(snapshot(&input), before, "the input was modified");

    let tree = read_entries::<pb::PstreeEntry>(out.join("pstree.img"), "PSTREE").unwrap();
    let got: Vec<_> = tree
        .iter()
        .map(|p| (p.pid, p.ppid, p.pgid, p.sid, p.threads.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (500, 0, 500, 500, vec![500]),
            (501, 500, 500, 500, vec![501]),
            (9411, 500, 500, 500, vec![9411]),
            (9410, 500, 500, 500, vec![9410]),
            (9409, 9410, 500, 500, vec![9409]),
        ]
    );
    // Per-pid images moved with their process, byte for byte; images without pids are identical.
    let after = snapshot(&out);
    for (old, new) in [(9406, 500), (9408, 501), (9409, 9411), (9411, 9409), (9410, 9410)] {
        for kind in ["core", "mm", "pagemap", "ids", "fs"] {
            assert_eq!(
                after[&format!("{kind}-{new}.img")],
                before[&format!("{kind}-{old}.img")],
                "{kind}-{old} -> {kind}-{new}"
            );
        }
    }
    for name in [
        "files.img",
        "inventory.img",
        "pages-1.img",
        "pages-5.img",
        "fdinfo-4.img",
        "seccomp.img",
    ] {
        assert_eq!(after[name], before[name], "{name}");
    }
    assert!(!after.contains_key("core-9406.img"));
    assert_eq!(after.len(), before.len());
    // Our check and CRIU's crit accept it.
    assert!(crit(&["check", s(&out)]).status.success());
    criu_crit_decodes(&out);
    // No temporary directory left beside it.
    assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1);
}

#[test]
fn rewrite_pid_map_renames_threads_and_fown_owners() {
    let (_t, dir) = copy_set("threads4");
    // Make one file owned by a thread (F_SETOWN), so the fown pid must follow the map.
    let path = dir.join("files.img");
    let mut files = read_entries::<pb::FileEntry>(&path, "FILES").unwrap();
    let reg = files[0].reg.as_mut().unwrap();
    reg.fown.pid = 9307;
    reg.fown.pid_type = 0;
    write_entries(&path, "FILES", &files).unwrap();
    let out = dir.parent().unwrap().join("out");
    let o = crit(&["rewrite", s(&dir), "-o", s(&out), "--pid-map", "9307:700"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let tree = read_entries::<pb::PstreeEntry>(out.join("pstree.img"), "PSTREE").unwrap();
    assert_eq!(tree[0].threads, vec![9304, 9306, 700, 9308]);
    assert!(out.join("core-700.img").exists() && !out.join("core-9307.img").exists());
    let files = read_entries::<pb::FileEntry>(out.join("files.img"), "FILES").unwrap();
    assert_eq!(files[0].reg.as_ref().unwrap().fown.pid, 700);
    assert!(crit(&["check", s(&out)]).status.success());
    criu_crit_decodes(&out);
}

#[test]
fn rewrite_refuses_bad_maps_and_writes_nothing() {
    let input = fixture("proctree");
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    for (map, want) in [
        ("9408:9409", "collides with 9409"),
        ("9408:600,9409:600", "would both become 600"),
        ("1234:600", "pid 1234 is not a process"),
        ("9408:0", "outside 1..="),
        ("9408", "is not OLD:NEW"),
    ] {
        let o = crit(&["rewrite", s(&input), "-o", s(&out), "--pid-map", map]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{map}");
        assert!(err.contains(want), "{map}: {err}");
        assert_eq!(
            fs::read_dir(t.path()).unwrap().count(),
            0,
            "{map}: something was written"
        );
    }
    // An existing, non-empty output directory is refused.
    fs::create_dir(&out).unwrap();
    fs::write(out.join("x"), b"x").unwrap();
    let o = crit(&["rewrite", s(&input), "-o", s(&out), "--pid-map", "9408:600"]);
    assert!(text(&o).1.contains("already exists"), "{:?}", text(&o));
    assert_eq!(snapshot(&out).len(), 1);
    // A broken input is refused.
    let (_t2, bad) = copy_set("proctree");
    fs::remove_file(bad.join("fs-9410.img")).unwrap();
    let out2 = t.path().join("out2");
    let o = crit(&["rewrite", s(&bad), "-o", s(&out2), "--pid-map", "9408:600"]);
    let (_, err) = text(&o);
    assert!(
        err.contains("the input set has 1 problem") && err.contains("fs-9410.img is missing"),
        "{err}"
    );
    assert!(!out2.exists());
}

#[test]
fn rewrite_move_vma_moves_pages_and_mm_fields() {
    let input = fixture("loop_heap");
    let before = snapshot(&input);
    let pid = first_pid(&input);
    let set = cryo_image::ImageSet::open(&input).unwrap();
    let mm = set.mm(pid).unwrap();
    // The data mapping shares a page run with the next one (CRIU merges adjacent runs): moving it splits
    // the run and reorders the pages file.
    let data = mm
        .vmas
        .iter()
        .find(|v| v.start <= mm.mm_start_data && mm.mm_start_data < v.end)
        .unwrap();
    let (old, len) = (data.start, data.end - data.start);
    let new = 0x5500_0000_0000u64;
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let mv = format!("{old:#x}:{new:#x}");
    let o = crit(&[
        "rewrite",
        s(&input),
        "-o",
        s(&out),
        "--pid",
        &pid.to_string(),
        "--move-vma",
        &mv,
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{stdout}{err}");
    assert!(stdout.contains("shifted mm_start_data"), "{stdout}");
    assert!(
        stdout.contains("not fixed: pointers inside memory are NOT changed"),
        "{stdout}"
    );
    assert_eq!(snapshot(&input), before, "the input was modified");

    let moved = cryo_image::ImageSet::open(&out).unwrap();
    let mm2 = moved.mm(pid).unwrap();
    let v2 = mm2.vmas.iter().find(|v| v.start == new).expect("moved vma");
    assert_eq!(v2.end - v2.start, len);
    assert!(!mm2.vmas.iter().any(|v| v.start == old));
    assert!(mm2.vmas.windows(2).all(|w| w[0].end <= w[1].start), "vmas sorted");
    assert_eq!(mm2.mm_start_data, mm.mm_start_data - old + new);
    assert_eq!(mm2.mm_start_code, mm.mm_start_code);
    // The page contents follow the mapping; the rest of memory is where it was.
    assert_eq!(
        moved.read_memory(pid, new, len as usize).unwrap(),
        set.read_memory(pid, old, len as usize).unwrap()
    );
    for r in &set.pagemap(pid).unwrap().runs {
        for a in (r.vaddr..r.end()).step_by(4096) {
            if a < old || a >= old + len {
                assert_eq!(
                    moved.read_memory(pid, a, 4096).unwrap(),
                    set.read_memory(pid, a, 4096).unwrap(),
                    "{a:#x}"
                );
            }
        }
    }
    assert_ne!(
        snapshot(&out)["pages-1.img"],
        before["pages-1.img"],
        "pages were reordered"
    );
    assert!(crit(&["check", s(&out)]).status.success());
    criu_crit_decodes(&out);
}

#[test]
fn rewrite_move_vma_refuses_impossible_moves() {
    let input = fixture("loop_heap");
    let pid = first_pid(&input);
    let mm = cryo_image::ImageSet::open(&input).unwrap().mm(pid).unwrap();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let vdso = mm.vmas.iter().find(|v| v.status & (1 << 3) != 0).unwrap().start;
    let (a, b) = (mm.vmas[0].start, mm.vmas[1].start);
    for (mv, pid_s, want) in [
        (format!("{a:#x}:{b:#x}"), pid.to_string(), "overlaps the mapping"),
        (
            format!("{vdso:#x}:0x550000000000"),
            pid.to_string(),
            "the kernel's vdso",
        ),
        (
            format!("{:#x}:0x550000000000", a + 4096 * 1000),
            pid.to_string(),
            "no mapping starting at",
        ),
        (format!("{a:#x}:0x550000000123"), pid.to_string(), "not page aligned"),
        (format!("{a:#x}:0x1000"), pid.to_string(), "below mmap_min_addr"),
        (
            format!("{a:#x}:0x7ffffffff000"),
            pid.to_string(),
            "past the end of user space",
        ),
        (
            format!("{a:#x}:0x550000000000"),
            "1".to_string(),
            "pid 1 is not a process",
        ),
    ] {
        let o = crit(&["rewrite", s(&input), "-o", s(&out), "--pid", &pid_s, "--move-vma", &mv]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{mv}");
        assert!(err.contains(want), "{mv}: {err}");
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
    }
    // --move-vma without --pid is a usage error.
    let o = crit(&["rewrite", s(&input), "-o", s(&out), "--move-vma", "0x1000:0x2000"]);
    assert_eq!(o.status.code(), Some(2));
    // And --pid without --move-vma.
    let o = crit(&["rewrite", s(&input), "-o", s(&out), "--pid", "1", "--pid-map", "9217:5"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!out.exists());
}

// ------------------------------------------------------------------------------------------------
// diff

fn diff_json(a: &Path, b: &Path) -> (i32, serde_json::Value) {
    let o = crit(&["diff", "--json", s(a), s(b)]);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(&o)));
    (o.status.code().unwrap(), v)
}

#[test]
fn diff_of_a_set_with_itself_is_empty() {
    for name in ["loop_heap", "proctree", "threads4", "tcp_est"] {
        let dir = fixture(name);
        let o = crit(&["diff", s(&dir), s(&dir)]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{name}: {out}{err}");
        assert!(out.starts_with("no differences"), "{out}");
    }
}

#[test]
fn diff_of_different_programs_lists_processes() {
    let (code, v) = diff_json(&fixture("loop_heap"), &fixture("threads4"));
    assert_eq!(code, 1);
    assert_eq!(
        v["processes_gone"],
        serde_json::json!([{"pid": 9217, "comm": "loop_heap", "threads": 1}])
    );
    assert_eq!(
        v["processes_added"],
        serde_json::json!([{"pid": 9304, "comm": "threads4", "threads": 4}])
    );
    assert_eq!(v["processes_changed"], serde_json::json!([]));
    assert_eq!(v["same"], false);
}

#[test]
fn diff_reports_exactly_the_known_changes() {
    let (_t, dir) = copy_set("loop_heap");
    let a = fixture("loop_heap");
    let pid = first_pid(&dir);
    let set = cryo_image::ImageSet::open(&a).unwrap();

    // 1. One byte of one page (the first page of the third dumped run).
    let run = set
        .pagemap(pid)
        .unwrap()
        .runs
        .iter()
        .filter(|r| r.offset.is_some())
        .nth(2)
        .copied()
        .unwrap();
    let pages = dir.join("pages-1.img");
    let mut data = fs::read(&pages).unwrap();
    data[run.offset.unwrap() as usize + 100] ^= 0xff;
    fs::write(&pages, data).unwrap();

    // 2. A register and a credential, through JSON (crit decode -> edit -> crit encode).
    let core = dir.join(format!("core-{pid}.img"));
    let o = crit(&["decode", "-i", s(&core)]);
    let mut j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let old_ip = j["entries"][0]["thread_info"]["gpregs"]["ip"].as_u64().unwrap();
    j["entries"][0]["thread_info"]["gpregs"]["ip"] = (old_ip + 2).into();
    j["entries"][0]["thread_core"]["creds"]["uid"] = 1000.into();
    let jf = dir.parent().unwrap().join("core.json");
    fs::write(&jf, serde_json::to_vec(&j).unwrap()).unwrap();
    assert!(crit(&["encode", "-i", s(&jf), "-o", s(&core)]).status.success());

    // 3. A mapping's protection, and 4. one fd closed.
    let mmp = dir.join(format!("mm-{pid}.img"));
    let mut mm = read_entries::<pb::MmEntry>(&mmp, "MM").unwrap();
    let k = mm[0]
        .vmas
        .iter()
        .position(|v| v.prot == 1 && v.status & (1 << 6) != 0)
        .unwrap();
    mm[0].vmas[k].prot = 3;
    let vma = mm[0].vmas[k];
    write_entries(&mmp, "MM", &mm).unwrap();
    let fdp = dir.join("fdinfo-2.img");
    let mut fds = read_entries::<pb::FdinfoEntry>(&fdp, "FDINFO").unwrap();
    let gone = fds.remove(1);
    write_entries(&fdp, "FDINFO", &fds).unwrap();

    let (code, v) = diff_json(&a, &dir);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["processes_changed"].as_array().unwrap().len(), 1);
    let p = &v["processes_changed"][0];
    assert_eq!(p["pid"], pid);
    let mem = &p["memory"];
    assert_eq!(
        (mem["changed"].as_u64(), mem["added"].as_u64(), mem["removed"].as_u64()),
        (Some(1), Some(0), Some(0))
    );
    assert_eq!(
        mem["ranges"],
        serde_json::json!([{"start": run.vaddr, "end": run.vaddr + 4096, "pages": 1, "kind": "changed"}])
    );
    assert_eq!(
        mem["compared"].as_u64().unwrap(),
        set.pagemap(pid).unwrap().present_bytes() / 4096
    );
    let t = &p["threads"][0];
    assert_eq!(t["tid"], pid);
    assert_eq!(
        t["registers"],
        serde_json::json!([{"field": "ip", "old": format!("{old_ip:#x}"), "new": format!("{:#x}", old_ip + 2)}])
    );
    assert_eq!(t["creds"], serde_json::json!([{"field": "uid", "old": 0, "new": 1000}]));
    assert_eq!(t["fpregs_changed"], false);
    assert_eq!(t["other"], serde_json::json!([]));
    assert_eq!(p["mappings_changed"].as_array().unwrap().len(), 1);
    assert_eq!(p["mappings_changed"][0]["start"], vma.start);
    assert_eq!(
        p["mappings_changed"][0]["fields"],
        serde_json::json!([{"field": "prot", "old": "r--p", "new": "rw-p"}])
    );
    assert_eq!(p["mappings_added"], serde_json::json!([]));
    assert_eq!(p["fds_removed"].as_array().unwrap().len(), 1);
    assert_eq!(p["fds_removed"][0]["fd"], gone.fd);
    assert_eq!(p["fds_added"], serde_json::json!([]));
    assert_eq!(p["fds_changed"], serde_json::json!([]));
    assert_eq!(p["task"], serde_json::json!([]));
    assert_eq!(p["mm"], serde_json::json!([]));

    // The human summary says the same.
    let o = crit(&["diff", s(&a), s(&dir)]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out.contains(&format!(
            "      ~ {:#x}-{:#x} 1 page changed",
            run.vaddr,
            run.vaddr + 4096
        )),
        "{out}"
    );
    assert!(
        out.contains("memory: 1 page changed, 0 pages added, 0 pages removed"),
        "{out}"
    );
    assert!(out.contains(&format!("thread {pid} creds: uid 0 -> 1000")), "{out}");
    assert!(
        out.contains(&format!("registers: ip {old_ip:#x} -> {:#x}", old_ip + 2)),
        "{out}"
    );
    assert!(out.contains(&format!("    - fd {} ", gone.fd)), "{out}");
}

#[test]
fn diff_shows_changed_fds_with_a_json_diff() {
    let (_t, dir) = copy_set("pipe_unread");
    // Drop the last 4096 queued bytes of the pipe.
    let path = dir.join("pipes-data.img");
    let img = cryo_image::decode("p", &fs::read(&path).unwrap()).unwrap();
    let mut img = img;
    let msg = &mut img.entries[0].msg;
    let bytes = msg.get_field_by_name("bytes").unwrap().as_u32().unwrap();
    msg.set_field_by_name("bytes", prost_reflect::Value::U32(bytes - 4096));
    if let cryo_image::Extra::Blob(b) = &mut img.entries[0].extra {
        b.truncate(b.len() - 4096);
    }
    fs::write(&path, cryo_image::encode("p", &img).unwrap()).unwrap();
    // And move the file position of the file behind fd 0 of the first process.
    let fdinfo = read_entries::<pb::FdinfoEntry>(dir.join("fdinfo-2.img"), "FDINFO").unwrap();
    let fd0 = fdinfo.iter().find(|f| f.fd == 0).unwrap();
    let fpath = dir.join("files.img");
    let mut files = read_entries::<pb::FileEntry>(&fpath, "FILES").unwrap();
    files
        .iter_mut()
        .find(|f| f.id == fd0.id)
        .unwrap()
        .reg
        .as_mut()
        .unwrap()
        .pos = 42;
    write_entries(&fpath, "FILES", &files).unwrap();
    let (code, v) = diff_json(&fixture("pipe_unread"), &dir);
    assert_eq!(code, 1);
    let changed: Vec<&serde_json::Value> = v["processes_changed"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["fds_changed"].as_array().unwrap())
        .collect();
    assert!(!changed.is_empty(), "{v:#}");
    let (regs, pipes): (Vec<_>, Vec<_>) = changed.into_iter().partition(|c| c["new"]["type"] == "REG");
    // Both processes share that open file (the child inherited it): both see it change.
    assert_eq!(regs.len(), 2, "{regs:?}");
    for r in regs {
        assert_eq!(r["fd"], 0);
        assert!(r["old"]["what"].as_str().unwrap().contains(" pos 0 "), "{r}");
        assert!(r["new"]["what"].as_str().unwrap().contains(" pos 42 "), "{r}");
        let d = r["diff"].as_str().unwrap();
        assert!(
            d.contains("-    \"pos\": 0,\n") && d.contains("+    \"pos\": 42,\n"),
            "{d}"
        );
    }
    assert!(!pipes.is_empty());
    for c in pipes {
        assert!(
            c["old"]["what"]
                .as_str()
                .unwrap()
                .ends_with(&format!("{bytes} bytes queued")),
            "{c}"
        );
        assert!(
            c["new"]["what"]
                .as_str()
                .unwrap()
                .ends_with(&format!("{} bytes queued", bytes - 4096)),
            "{c}"
        );
    }
}

#[test]
fn diff_after_move_vma_shows_the_moved_mapping_and_pages() {
    let input = fixture("loop_heap");
    let pid = first_pid(&input);
    let mm = cryo_image::ImageSet::open(&input).unwrap().mm(pid).unwrap();
    let heap = mm.vmas.iter().find(|v| v.status & (1 << 5) != 0).copied().unwrap();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let new = 0x5600_0000_0000u64;
    let mv = format!("{:#x}:{new:#x}", heap.start);
    assert!(crit(&[
        "rewrite",
        s(&input),
        "-o",
        s(&out),
        "--pid",
        &pid.to_string(),
        "--move-vma",
        &mv
    ])
    .status
    .success());
    let (code, v) = diff_json(&input, &out);
    assert_eq!(code, 1);
    let p = &v["processes_changed"][0];
    assert_eq!(p["mappings_removed"][0]["start"], heap.start);
    assert_eq!(p["mappings_removed"][0]["what"], "[heap]");
    assert_eq!(p["mappings_added"][0]["start"], new);
    let mm_fields: Vec<&str> = p["mm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(mm_fields, vec!["mm_start_brk", "mm_brk"]);
    let mem = &p["memory"];
    assert_eq!(mem["changed"], 0);
    assert_eq!(mem["added"], mem["removed"]);
    for r in mem["ranges"].as_array().unwrap() {
        let start = r["start"].as_u64().unwrap();
        match r["kind"].as_str().unwrap() {
            "removed" => assert!(start >= heap.start && start < heap.end),
            "added" => assert!(start >= new && start < new + (heap.end - heap.start)),
            k => panic!("{k}"),
        }
    }
}

#[test]
fn diff_of_an_unreadable_set_exits_2() {
    let t = tempfile::tempdir().unwrap();
    let o = crit(&["diff", s(&fixture("loop_heap")), s(t.path())]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("no inventory.img"), "{:?}", text(&o));
    // A set whose pagemap is corrupt: trouble, not "different".
    let (_t, dir) = copy_set("loop_heap");
    let pid = first_pid(&dir);
    fs::write(dir.join(format!("pagemap-{pid}.img")), b"garbage!").unwrap();
    let o = crit(&["diff", s(&fixture("loop_heap")), s(&dir)]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains(&format!("pagemap-{pid}.img")), "{:?}", text(&o));
}

// ------------------------------------------------------------------------------------------------
// bad input everywhere: never a panic, clear exit status, nothing half written

#[test]
fn every_damaged_image_is_reported_without_panic() {
    let names: Vec<String> = snapshot(&fixture("pipe_unread")).into_keys().collect();
    for name in &names {
        for how in ["delete", "half", "garbage", "empty"] {
            let (t, dir) = copy_set("pipe_unread");
            let p = dir.join(name);
            let orig = fs::read(&p).unwrap();
            match how {
                "delete" => fs::remove_file(&p).unwrap(),
                "half" => fs::write(&p, &orig[..orig.len() / 2]).unwrap(),
                "garbage" => fs::write(&p, b"\x19\x43\x56\x54garbage and more garbage").unwrap(),
                _ => fs::write(&p, b"").unwrap(),
            }
            let what = format!("{name} {how}");
            let o = crit(&["check", s(&dir)]);
            let code = o.status.code();
            assert!(
                matches!(code, Some(0) | Some(1)),
                "check {what}: {code:?} {:?}",
                text(&o)
            );
            // Damage to any image that matters must be found.
            // (CRIU writes no fdinfo image for a process without fds: a
            // missing one is a process without fds.)
            let matters = name.ends_with(".img")
                && !(how == "delete"
                    && (["seccomp.img", "timens-0.img", "pipes-data.img"].contains(&name.as_str())
                        || name.starts_with("fdinfo-")));
            if matters {
                assert_eq!(code, Some(1), "check did not notice {what}: {:?}", text(&o));
                assert!(!o.stdout.is_empty());
            }
            let o = crit(&["diff", s(&fixture("pipe_unread")), s(&dir)]);
            assert!(matches!(o.status.code(), Some(0..=2)), "diff {what}: {:?}", text(&o));
            let out = t.path().join("out");
            let o = crit(&["rewrite", s(&dir), "-o", s(&out), "--pid-map", "10076:600"]);
            match o.status.code() {
                Some(0) => assert!(!matters, "rewrite accepted {what}"),
                Some(1) => assert!(!out.exists(), "rewrite {what} left {}", out.display()),
                c => panic!("rewrite {what}: {c:?} {:?}", text(&o)),
            }
            assert_eq!(
                fs::read_dir(t.path()).unwrap().count(),
                if out.exists() { 2 } else { 1 }
            );
        }
    }
}

#[test]
fn check_reports_a_missing_seccomp_filter() {
    let (_t, dir) = copy_set("loop_heap");
    let pid = first_pid(&dir);
    let path = dir.join(format!("core-{pid}.img"));
    let mut core = read_entries::<pb::CoreEntry>(&path, "CORE").unwrap();
    let tc = core[0].thread_core.as_mut().unwrap();
    tc.seccomp_mode = Some(2);
    tc.seccomp_filter = Some(3);
    write_entries(&path, "CORE", &core).unwrap();
    let (code, p) = check_problems(&dir);
    assert_eq!(code, 1);
    assert_eq!(
        p,
        vec![format!(
            "core-{pid}.img|0|seccomp_filter 3, but seccomp.img has 0 filter(s)"
        )]
    );
    fs::remove_file(dir.join("seccomp.img")).unwrap();
    let (_, p) = check_problems(&dir);
    assert_eq!(
        p,
        vec![format!(
            "core-{pid}.img|0|seccomp.img is missing (thread {pid} has a seccomp filter)"
        )]
    );
}

#[test]
fn edit_warns_when_the_set_becomes_inconsistent() {
    let (_t, dir) = copy_set("proctree");
    let img = dir.join("pstree.img");
    // Give 9411 a parent that does not exist: written (the user asked for it), but said plainly.
    let o = edit_with(&img, "sed -i 's/\"ppid\": 9410/\"ppid\": 4242/'");
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(
            "warning: the set now has a problem: pstree.img entry 4: pid 9411: parent 4242 is not in the tree"
        ),
        "{err}"
    );
    assert_eq!(read_entries::<pb::PstreeEntry>(&img, "PSTREE").unwrap()[4].ppid, 4242);
}

#[test]
fn diff_shows_socket_changes() {
    let (_t, dir) = copy_set("tcp_est");
    let path = dir.join("files.img");
    let mut files = read_entries::<pb::FileEntry>(&path, "FILES").unwrap();
    // The listener (fd 3) is closed down; the client side (fd 4) is gone from the fd table.
    let lsn = files
        .iter_mut()
        .find(|f| f.isk.as_ref().is_some_and(|s| s.state == 10))
        .unwrap();
    lsn.isk.as_mut().unwrap().state = 7;
    write_entries(&path, "FILES", &files).unwrap();
    let fdp = dir.join("fdinfo-2.img");
    let mut fds = read_entries::<pb::FdinfoEntry>(&fdp, "FDINFO").unwrap();
    fds.retain(|f| f.fd != 4);
    write_entries(&fdp, "FDINFO", &fds).unwrap();
    let (code, v) = diff_json(&fixture("tcp_est"), &dir);
    assert_eq!(code, 1);
    let p = &v["processes_changed"][0];
    assert_eq!(p["fds_changed"].as_array().unwrap().len(), 1, "{p:#}");
    // A connected socket shows its queues, read from tcp-stream-INO.img.
    assert_eq!(
        p["fds_removed"],
        serde_json::json!([{"fd": 4, "type": "INETSK", "socket": true,
            "what": "tcp 127.0.0.1:60326 -> 127.0.0.1:34567 state ESTABLISHED, 2000 bytes queued to read, 0 to send"}])
    );
    let c = &p["fds_changed"][0];
    assert_eq!(c["fd"], 3);
    assert_eq!(c["new"]["socket"], true);
    assert_eq!(c["old"]["what"], "tcp 127.0.0.1:34567 -> 0.0.0.0:0 state LISTEN");
    assert_eq!(c["new"]["what"], "tcp 127.0.0.1:34567 -> 0.0.0.0:0 state CLOSE");
    assert!(
        c["diff"]
            .as_str()
            .unwrap()
            .contains("-    \"state\": \"LISTEN\",\n+    \"state\": \"CLOSE\","),
        "{c}"
    );
    let o = crit(&["diff", s(&fixture("tcp_est")), s(&dir)]);
    let (out, _) = text(&o);
    assert!(
        out.contains("~ fd 3 INETSK tcp 127.0.0.1:34567 -> 0.0.0.0:0 state LISTEN -> INETSK"),
        "{out}"
    );
    let sd = cryo_crit::diff::diff_sets(
        &cryo_image::ImageSet::open(fixture("tcp_est")).unwrap(),
        &cryo_image::ImageSet::open(fixture("tcp_est")).unwrap(),
    )
    .unwrap();
    assert!(sd.same);
}

#[cfg(unix)]
#[test]
fn incremental_sets_are_checked_against_their_parent() {
    // Turn the last page run into "in the parent dump" and drop its bytes from the pages file.
    let (t, dir) = copy_set("loop_heap");
    let pid = first_pid(&dir);
    let path = dir.join(format!("pagemap-{pid}.img"));
    let (head, mut runs) = read_pagemap(&path);
    let last = runs.len() - 1;
    let nr = runs[last].nr_pages.unwrap();
    let vaddr = runs[last].vaddr;
    runs[last].flags = Some(1); // PE_PARENT
    write_pagemap(&path, &head, &runs);
    let pages = dir.join("pages-1.img");
    cryo_testsupport::cut_short(&pages, nr * 4096);
    let (code, p) = check_problems(&dir);
    assert_eq!(code, 1);
    assert_eq!(
        p,
        vec![format!(
            "pagemap-{pid}.img|{}|run at {vaddr:#x} is in the parent dump, but there is no parent link",
            last + 1
        )]
    );
    // With the original dump as parent the set is whole again, and reads the same memory.
    std::os::unix::fs::symlink(fixture("loop_heap"), dir.join("parent")).unwrap();
    let (code, p) = check_problems(&dir);
    assert_eq!((code, p), (0, vec![]));
    let (code, v) = diff_json(&fixture("loop_heap"), &dir);
    assert_eq!(code, 0, "{v:#}");
    // A parent that lacks those pages is found out.
    let other = t.path().join("other");
    fs::create_dir(&other).unwrap();
    for e in fs::read_dir(fixture("loop_heap")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), other.join(e.file_name())).unwrap();
    }
    let (ohead, mut oruns) = read_pagemap(&other.join(format!("pagemap-{pid}.img")));
    oruns.pop();
    write_pagemap(&other.join(format!("pagemap-{pid}.img")), &ohead, &oruns);
    fs::remove_file(dir.join("parent")).unwrap();
    std::os::unix::fs::symlink(&other, dir.join("parent")).unwrap();
    let (code, p) = check_problems(&dir);
    assert_eq!(code, 1);
    assert_eq!(
        p,
        vec![format!(
            "pagemap-{pid}.img|{}|run {vaddr:#x}-{:#x} is in the parent dump, but the parent's pagemap-{pid}.img lacks {vaddr:#x}",
            last + 1,
            vaddr + nr * 4096
        )]
    );
}

#[test]
fn check_accepts_a_zombie_with_only_its_core() {
    let (_t, dir) = copy_set("proctree");
    let path = dir.join("core-9411.img");
    let mut core = read_entries::<pb::CoreEntry>(&path, "CORE").unwrap();
    core[0].tc.as_mut().unwrap().task_state = 2; // TASK_DEAD
    write_entries(&path, "CORE", &core).unwrap();
    let (head, _) = read_pagemap(&dir.join("pagemap-9411.img"));
    for f in ["mm-9411.img", "pagemap-9411.img", "ids-9411.img", "fs-9411.img"] {
        fs::remove_file(dir.join(f)).unwrap();
    }
    // Its pages file now belongs to nobody.
    let (code, p) = check_problems(&dir);
    assert_eq!(code, 1);
    let pages = format!("pages-{}.img", head.pages_id);
    assert_eq!(p, vec![format!("{pages}|null|no pagemap refers to this pages file")]);
    fs::remove_file(dir.join(&pages)).unwrap();
    assert_eq!(check_problems(&dir), (0, vec![]));
    // A zombie in B: diff still compares what both sides have.
    let o = crit(&["diff", s(&fixture("proctree")), s(&dir)]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out.contains("~ process 9411 (proctree)\n    task: tc.task_state Alive -> 2\n"),
        "{out}"
    );
}

#[test]
fn check_reports_ghost_contents_that_disagree_with_the_size() {
    let (_t, dir) = copy_set("ghost_file");
    let path = dir.join("ghost-file-1.img");
    let o = crit(&["decode", "-i", s(&path)]);
    let mut j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let size = j["entries"][0]["size"].as_u64().unwrap();
    j["entries"][0]["size"] = (size - 4096).into();
    let jf = dir.parent().unwrap().join("g.json");
    fs::write(&jf, serde_json::to_vec(&j).unwrap()).unwrap();
    assert!(crit(&["encode", "-i", s(&jf), "-o", s(&path)]).status.success());
    let (code, p) = check_problems(&dir);
    assert_eq!(code, 1);
    assert_eq!(
        p,
        vec![format!(
            "ghost-file-1.img|1|chunk 0+{size} runs past the file size {}",
            size - 4096
        )]
    );
}

#[test]
fn diff_compares_shared_memory_objects() {
    let (_t, dir) = copy_set("memfd_shm");
    let (head, _) = read_pagemap(&dir.join("pagemap-shmem-3236.img"));
    let pages = dir.join(format!("pages-{}.img", head.pages_id));
    let mut data = fs::read(&pages).unwrap();
    data[5 * 4096 + 7] ^= 0x55;
    fs::write(&pages, data).unwrap();
    let (code, v) = diff_json(&fixture("memfd_shm"), &dir);
    assert_eq!(code, 1);
    assert_eq!(v["processes_changed"], serde_json::json!([]));
    assert_eq!(
        v["shmem"],
        serde_json::json!([{"image": "pagemap-shmem-3236.img", "status": "changed", "memory": {
            "compared": 32, "changed": 1, "added": 0, "removed": 0,
            "ranges": [{"start": 0x5000, "end": 0x6000, "pages": 1, "kind": "changed"}]}}])
    );
    let o = crit(&["diff", s(&fixture("memfd_shm")), s(&dir)]);
    let (out, _) = text(&o);
    assert!(out.contains("; shared memory: 1 differ"), "{out}");
    assert!(
        out.contains("~ shared memory pagemap-shmem-3236.img: 1 page changed, 0 pages added, 0 pages removed (32 compared)\n  ~ 0x5000-0x6000 1 page changed\n"),
        "{out}"
    );
}

#[test]
fn diff_can_pair_processes_by_tree_order() {
    // The pid-mapped copy of proctree is the same tree with other pids (and 9409/9411 swapped).
    let input = fixture("proctree");
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let map = "9406:500,9408:501,9409:9411,9411:9409";
    assert!(crit(&["rewrite", s(&input), "-o", s(&out), "--pid-map", map])
        .status
        .success());
    // By pid: 9409 and 9411 are compared with each other's images, 9406/9408 are gone, 500/501 new.
    let (code, v) = diff_json(&input, &out);
    assert_eq!(code, 1);
    assert_eq!(v["processes_gone"].as_array().unwrap().len(), 2);
    assert_eq!(v["processes_added"].as_array().unwrap().len(), 2);
    assert!(v["processes_changed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["pid"] == 9409));
    // By order: the same processes, nothing different.
    let o = crit(&["diff", "--match", "order", s(&input), s(&out)]);
    let (stdout, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}{err}");
    assert_eq!(stdout, "no differences (5 processes compared)\n");
    // By order, with one page changed in the process that is now 9409 (was 9411).
    let pm = cryo_image::ImageSet::open(&out).unwrap().pagemap(9409).unwrap();
    let run = *pm.runs.iter().find(|r| r.offset.is_some()).unwrap();
    let pages = out.join(format!("pages-{}.img", pm.pages_id));
    let mut data = fs::read(&pages).unwrap();
    data[run.offset.unwrap() as usize] ^= 1;
    fs::write(&pages, data).unwrap();
    let o = crit(&["diff", "--match", "order", "--json", s(&input), s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ch = v["processes_changed"].as_array().unwrap();
    assert_eq!(ch.len(), 1, "{v:#}");
    assert_eq!(
        (ch[0]["pid"].as_u64(), ch[0]["pid_b"].as_u64()),
        (Some(9411), Some(9409))
    );
    assert_eq!(
        ch[0]["memory"]["ranges"],
        serde_json::json!([{"start": run.vaddr, "end": run.vaddr + 4096, "pages": 1, "kind": "changed"}])
    );
    let o = crit(&["diff", "--match", "order", s(&input), s(&out)]);
    assert!(
        text(&o).0.contains("~ process 9411 -> 9409 (proctree)"),
        "{:?}",
        text(&o)
    );
}

#[cfg(unix)]
#[test]
fn diff_of_an_incremental_set_without_its_parent_is_trouble() {
    let (_t, dir) = copy_set("loop_heap");
    let pid = first_pid(&dir);
    let path = dir.join(format!("pagemap-{pid}.img"));
    let (head, mut runs) = read_pagemap(&path);
    let last = runs.len() - 1;
    let nr = runs[last].nr_pages.unwrap();
    let vaddr = runs[last].vaddr;
    runs[last].flags = Some(1); // PE_PARENT, and no parent link
    write_pagemap(&path, &head, &runs);
    let pages = dir.join("pages-1.img");
    cryo_testsupport::cut_short(&pages, nr * 4096);
    let o = crit(&["diff", s(&fixture("loop_heap")), s(&dir)]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("pid {pid}: page {vaddr:#x} is in the pagemap but in no dump")),
        "{err}"
    );
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    // stdout is a pipe whose reading end is already closed: every write fails with EPIPE at once
    // (`crit ... | head` after head has exited).
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let input = fixture("proctree");
    let (a, b) = (fixture("loop_heap"), fixture("proctree"));
    let runs: Vec<(Vec<&str>, i32)> = vec![
        (
            vec!["rewrite", s(&input), "-o", s(&out), "--pid-map", "9406:500,9408:501"],
            0,
        ),
        (vec!["diff", s(&a), s(&b)], 0),
        (vec!["check", "--json", s(&input)], 0),
    ];
    for (args, want) in runs {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = Command::new(env!("CARGO_BIN_EXE_crit"))
            .args(&args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(o.status.code(), Some(want), "{args:?}: {err}");
    }
    // The rewrite was complete before its report hit the closed pipe.
    assert!(crit(&["check", s(&out)]).status.success());
}

/// cryo's sidecar follows the pid map (its affinity keys are tids; eventfd file ids stay); the version-1
/// affinity file too; a broken one is refused with its name.
#[test]
fn rewrite_pid_map_renumbers_the_sidecar() {
    let (_t, dir) = copy_set("threads4");
    fs::write(
        dir.join("cryo.json"),
        "{\"version\": 2, \"affinity\": {\"9304\": \"0\", \"9307\": \"1-3,6\"}, \"eventfd_semaphore\": [5]}\n",
    )
    .unwrap();
    let out = dir.parent().unwrap().join("out");
    let o = crit(&["rewrite", s(&dir), "-o", s(&out), "--pid-map", "9307:700,9304:9304"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(
        text(&o).0.contains("cryo.json: 1 thread id(s) renumbered"),
        "{:?}",
        text(&o)
    );
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(out.join("cryo.json")).unwrap()).unwrap();
    assert_eq!(v["version"], 2);
    let threads = v["affinity"].as_object().unwrap();
    assert_eq!(
        threads
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect::<Vec<_>>(),
        vec![("700", "1-3,6"), ("9304", "0")]
    );
    assert_eq!(v["eventfd_semaphore"], serde_json::json!([5]));
    assert!(out.join("core-700.img").exists());
    assert!(crit(&["check", s(&out)]).status.success());
    // The version-1 file of earlier dumps.
    fs::remove_file(dir.join("cryo.json")).unwrap();
    fs::write(
        dir.join("cryo-affinity.json"),
        "{\"version\": 1, \"threads\": {\"9307\": \"1\"}}",
    )
    .unwrap();
    let out1 = dir.parent().unwrap().join("out1");
    let o = crit(&["rewrite", s(&dir), "-o", s(&out1), "--pid-map", "9307:700"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let side = cryo_image::sidecar::parse(&fs::read_to_string(out1.join("cryo-affinity.json")).unwrap()).unwrap();
    assert_eq!(side.affinity.keys().copied().collect::<Vec<_>>(), [700]);
    // A broken sidecar: refused, naming it, nothing written.
    fs::write(
        dir.join("cryo-affinity.json"),
        "{\"version\": 1, \"threads\": {\"x\": \"0\"}}",
    )
    .unwrap();
    let out2 = dir.parent().unwrap().join("out2");
    let o = crit(&["rewrite", s(&dir), "-o", s(&out2), "--pid-map", "9307:700"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("cryo-affinity.json") && err.contains("thread `x`: not a thread id"),
        "{err}"
    );
    assert!(!out2.exists());
}
