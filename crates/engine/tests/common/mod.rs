//! Test helpers: build C programs from tests/progs with gcc (once per test
//! binary run, into a temp dir), start them, and kill them by PID on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// Temp dir for this test binary run (removed at exit is not guaranteed; it is under /tmp).
pub fn tmp_root() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("cryo-engine-tests-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// A fresh empty directory for one test.
pub fn tmp_dir(name: &str) -> PathBuf {
    let d = tmp_root().join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Compile tests/progs/<name>.c (cached) and return the binary's path.
pub fn prog(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/progs")
        .join(format!("{name}.c"));
    let bin = tmp_root().join(format!("prog-{name}"));
    if !bin.exists() {
        let tmp = tmp_root().join(format!("prog-{name}.{:?}", std::thread::current().id()));
        let st = Command::new("gcc")
            .args(["-O1", "-g", "-pthread", "-o"])
            .arg(&tmp)
            .arg(&src)
            .status()
            .expect("gcc");
        assert!(st.success(), "gcc failed for {}", src.display());
        std::fs::rename(&tmp, &bin).unwrap();
    }
    bin
}

/// A started test program; killed (SIGKILL by pid) and reaped on drop.
pub struct Target {
    pub child: Child,
    pub pid: i32,
}

impl Target {
    /// Start `prog(name)` with args and wait until it prints its first line ("ready ...").
    pub fn start(name: &str, args: &[&str]) -> (Target, String) {
        let mut child = Command::new(prog(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
        let pid = child.id() as i32;
        let mut line = String::new();
        let mut rd = BufReader::new(child.stdout.take().unwrap());
        rd.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("ready"),
            "{name}: unexpected first line {line:?}"
        );
        // Keep the pipe's read end open so the program never gets EPIPE.
        std::mem::forget(rd);
        (Target { child, pid }, line.trim().to_string())
    }

    pub fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // SAFETY-free: kill by PID via the std API, then reap.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait (bounded, polling) until `path` exists with content containing `needle`.
pub fn wait_file(path: &Path, needle: &str) -> String {
    for _ in 0..500 {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.contains(needle) {
                return s;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} never contained {needle:?}", path.display());
}

pub fn maps(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap()
}
