//! Shared helpers of the engine's integration tests (dump.rs, restore.rs, diff.rs): build the C
//! programs of tests/progs with gcc, start them and kill them by PID on drop ([`Target`]), poll status
//! files, read /proc; [`ns::Ns`] runs a script as pid 1 of a fresh PID + mount namespace; [`pty`]
//! makes pseudo-terminals; [`cpu`] tells what an image set's FPU state needs that this CPU lacks.
//! Fixture paths and image-set copies are in the cryo-testsupport crate.
#![allow(dead_code)]

pub mod cpu;
pub mod ns;
pub mod pty;

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

/// The cryo binary under test.
pub const CRYO: &str = env!("CARGO_BIN_EXE_cryo");

/// Compile the C program `src` with gcc and `flags` into `out`.
pub fn gcc(src: &Path, flags: &[&str], out: &Path) {
    let st = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(src)
        .status()
        .expect("gcc");
    assert!(st.success(), "gcc failed for {}", src.display());
}

/// Compile tests/progs/<name>.c (gcc -O2, again on every call) into the test target's temp dir and
/// return the binary's path (the restore tests' programs).
pub fn build_prog(name: &str) -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("prog-{name}"));
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/progs/{name}.c"));
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let tmp = out.with_extension(format!("tmp{}-{seq}", std::process::id()));
    gcc(&src, &["-O2"], &tmp);
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// Compile tests/progs/<name>.c (gcc -O1 -g -pthread, once per test binary run) into [`tmp_root`]
/// and return the binary's path (the dump tests' programs).
pub fn prog(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/progs")
        .join(format!("{name}.c"));
    let bin = tmp_root().join(format!("prog-{name}"));
    // Tests run in parallel: compile each program once, under a lock, so a
    // running program's binary is never replaced.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.exists() {
        let tmp = tmp_root().join(format!("prog-{name}.{:?}", std::thread::current().id()));
        gcc(&src, &["-O1", "-g", "-pthread"], &tmp);
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
        Self::start_bin(&prog(name), args)
    }

    /// Start a binary at `bin` (see [`Target::start`]).
    pub fn start_bin(bin: &Path, args: &[&str]) -> (Target, String) {
        let name = bin.display().to_string();
        // A binary just copied can be briefly busy (ETXTBSY): another test
        // thread's fork may still hold the copy's write fd until its exec.
        let mut tries = 0;
        let mut child = loop {
            match Command::new(bin)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
            {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                r => break r.expect("spawn"),
            }
        };
        let pid = child.id() as i32;
        let mut line = String::new();
        let mut rd = BufReader::new(child.stdout.take().unwrap());
        rd.read_line(&mut line).unwrap();
        assert!(line.starts_with("ready"), "{name}: unexpected first line {line:?}");
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

/// How long the polling helpers wait before giving up: generous, because the
/// machine is shared (a busy moment must not fail a test); they return as
/// soon as the condition holds.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

pub fn polls(step_ms: u64) -> u64 {
    PATIENCE.as_millis() as u64 / step_ms
}

/// Wait (bounded, polling) until `path` exists with content containing `needle`.
pub fn wait_file(path: &Path, needle: &str) -> String {
    for _ in 0..polls(10) {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.contains(needle) {
                return s;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} never contained {needle:?}", path.display());
}

/// Ask a program to check itself: send SIGUSR1 to `pid` and wait (bounded) until `path` contains
/// `needle`; returns the content.
pub fn ask(pid: i32, path: &Path, needle: &str) -> String {
    assert!(kill(pid, libc::SIGUSR1), "pid {pid} is gone");
    wait_file(path, needle)
}

pub fn maps(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap()
}

/// The xorshift64 pattern the C test programs write (fill() in tests/progs).
pub fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// "key=value" words of a ready line.
pub fn kv(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} not in {line:?}"))
        .to_string()
}

pub fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

/// Send a signal by pid.
pub fn kill(pid: i32, sig: i32) -> bool {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::try_from(sig).unwrap(),
    )
    .is_ok()
}

/// TracerPid of a task (0 when not traced).
pub fn tracer(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Wait (bounded) until a process is gone or a zombie.
pub fn wait_gone(pid: i32) -> bool {
    for _ in 0..polls(10) {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(s) if s.contains(") Z ") => return true,
            _ => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    false
}

/// Wait (bounded) until thread `tid` of `pid` sleeps in syscall `nr` (/proc/.../syscall).
pub fn wait_in_syscall(pid: i32, tid: i32, nr: i64) {
    for _ in 0..polls(5) {
        let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).unwrap_or_default();
        if s.split_whitespace().next() == Some(&nr.to_string()) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("thread {tid} never entered syscall {nr}");
}
