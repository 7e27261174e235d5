#![forbid(unsafe_code)]
//! Test support shared by the integration tests of every cryo crate (a dev-dependency only; ripgrep's
//! tests/util.rs and youki's test_framework are the models): where the CRIU 4.2 fixture image sets
//! are, which sets and images there are, scratch directories and copies of image sets. Portable (no
//! Linux-only dependency), so the image crate's and crit's tests build anywhere.

use std::path::{Path, PathBuf};

/// The CRIU 4.2 image sets bundled in the repository (fixtures/criu-4.2): one directory a program,
/// each with `images/`, `golden/` (crit's JSON of every image) and `src/`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/criu-4.2")
}

/// The image directory of fixture `name` (fixtures/criu-4.2/NAME/images).
pub fn fixture_images(name: &str) -> PathBuf {
    fixtures().join(name).join("images")
}

/// Every fixture directory (fixtures/criu-4.2/NAME), sorted; at least ten.
pub fn fixture_dirs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("images").is_dir())
        .collect();
    v.sort();
    assert!(v.len() >= 10, "fixtures missing: {v:?}");
    v
}

/// Every protobuf image of every fixture set (all but pages-*.img), sorted.
pub fn protobuf_images() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for set in fixture_dirs() {
        for img in std::fs::read_dir(set.join("images")).unwrap() {
            let p = img.unwrap().path();
            if !p.file_name().unwrap().to_string_lossy().starts_with("pages-") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

/// Copy every file of directory `src` into `dst` (created if missing).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

/// A fresh empty directory `<temp>/<prefix>-<pid>-<tag>` (a leftover one is removed first).
pub fn scratch(prefix: &str, tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("{prefix}-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Cut `bytes` off the end of the file at `path` (a truncated image).
pub fn cut_short(path: &Path, bytes: u64) {
    let len = std::fs::metadata(path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len.checked_sub(bytes).expect("file shorter than the cut"))
        .unwrap();
}

/// `gdb -nx -batch` with debuginfod off, running `commands` in order (add the program and core files,
/// then run it; gdb must be installed).
pub fn gdb(commands: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new("gdb");
    c.args(["-nx", "-batch", "-ex", "set debuginfod enabled off"]);
    for cmd in commands {
        c.args(["-ex", cmd]);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_are_found_and_copied() {
        let imgs = protobuf_images();
        assert!(imgs.len() > 100, "{}", imgs.len());
        assert!(imgs.iter().all(|p| p.starts_with(fixtures())));
        let d = scratch("cryo-testsupport", "copy");
        copy_dir(&fixture_images("loop_heap"), &d);
        assert_eq!(
            std::fs::read(d.join("pstree.img")).unwrap(),
            std::fs::read(fixture_images("loop_heap").join("pstree.img")).unwrap()
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}
