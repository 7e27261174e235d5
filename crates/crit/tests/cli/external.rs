//! `crit NAME ...` runs `crit-NAME ...` (git-style external subcommands): found in PATH, arguments passed
//! through, exit status kept; an unknown name is a clear error.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// A scratch directory of our own, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn scratch(tag: &str) -> Scratch {
    Scratch(super::common::scratch(&format!("external-{tag}")))
}

#[test]
fn unknown_subcommand_runs_crit_name_from_path() {
    let s = scratch("path");
    let script = s.0.join("crit-cryotest");
    fs::write(&script, "#!/bin/sh\necho \"args:$*\"\nexit 3\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", s.0.display(), std::env::var("PATH").unwrap_or_default());
    let out = super::common::crit()
        .args(["cryotest", "a b", "--flag"])
        .env("PATH", path)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "args:a b --flag\n");
    assert_eq!(out.status.code(), Some(3), "exit status is passed on");
}

#[test]
fn missing_external_subcommand_is_an_error() {
    let s = scratch("missing");
    let out = super::common::crit()
        .arg("no-such-thing")
        .env("PATH", &s.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown subcommand \"no-such-thing\""), "{err}");
}
