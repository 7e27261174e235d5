//! crit check / diff / rewrite / edit on the CRIU 4.2 fixture sets and on copies corrupted or changed in
//! known ways. Every test works on its own temporary copy; the fixtures are never written.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cryo_image::{pb, read_entries, write_entries, ImageWriter};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/criu-4.2")
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join(name).join("images")
}

fn all_fixture_sets() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path().join("images"))
        .collect();
    v.sort();
    assert!(v.len() >= 10, "fixtures missing");
    v
}

fn crit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crit"))
        .args(args)
        .output()
        .expect("run crit")
}

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
    fs::create_dir(&dst).unwrap();
    for e in fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
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
fn check_reports_a_missing_thread_core_and_fdinfo() {
    let (_t, dir) = copy_set("threads4");
    fs::remove_file(dir.join("core-9307.img")).unwrap();
    fs::remove_file(dir.join("fdinfo-2.img")).unwrap();
    let (code, p) = check_problems(&dir);
    assert_eq!(code, 1);
    assert_eq!(
        p,
        vec![
            "pstree.img|0|core-9307.img is missing (thread 9307 of pid 9304)",
            "ids-9304.img|0|fdinfo-2.img is missing (fds of files_id 2)",
        ]
    );
}

#[test]
fn check_reports_truncated_pages() {
    let (_t, dir) = copy_set("loop_heap");
    let pages = dir.join("pages-1.img");
    let len = fs::metadata(&pages).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&pages)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
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
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
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

/// Run `crit edit` with EDITOR set to a shell snippet.
fn edit_with(img: &Path, editor: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crit"))
        .args(["edit", s(img)])
        .env_remove("VISUAL")
        .env("EDITOR", editor)
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
