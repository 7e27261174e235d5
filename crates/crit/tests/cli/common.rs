//! Shared helpers: run the built crit, find fixtures, make scratch copies.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn crit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crit"))
}

/// Run crit with arguments; returns the output (whatever the exit status).
pub fn run(args: &[&str]) -> Output {
    crit().args(args).output().expect("crit runs")
}

/// Run crit and demand success; returns stdout as text.
pub fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "crit {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8 output")
}

/// Run crit and demand failure; returns stderr.
pub fn fails(args: &[&str]) -> String {
    let o = run(args);
    assert!(!o.status.success(), "crit {args:?} should fail");
    assert_ne!(o.status.code(), None, "crit {args:?} died of a signal");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub use cryo_testsupport::fixtures;

/// All fixture names.
pub fn fixture_names() -> Vec<String> {
    cryo_testsupport::fixture_dirs()
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

pub fn images(name: &str) -> String {
    cryo_testsupport::fixture_images(name).display().to_string()
}

/// A scratch directory unique to this test (removed first if left over).
pub fn scratch(tag: &str) -> PathBuf {
    cryo_testsupport::scratch("crit-test", tag)
}

/// Copy a fixture's images to a scratch directory.
pub fn copy_images(name: &str, tag: &str) -> PathBuf {
    let d = scratch(tag);
    cryo_testsupport::copy_dir(Path::new(&images(name)), &d);
    d
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The fixtures' fill_pattern(p, n, seed) (common.h): xorshift64 words.
pub fn pattern(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        if n - out.len() >= 8 {
            out.extend_from_slice(&s.to_le_bytes());
        } else {
            out.push(s as u8);
        }
    }
    out
}
