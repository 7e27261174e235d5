//! `cryo restore` integration tests: real image sets restored into a fresh
//! PID namespace (a private mount namespace too, with its own tmpfs on
//! /tmp/anchor so that tests don't see each other's status files). Killing
//! the namespace's pid 1 cleans up everything a test started.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const CRYO: &str = env!("CARGO_BIN_EXE_cryo");

fn fixtures() -> PathBuf {
    PathBuf::from("/work/shared/fixtures/criu-4.2")
}

/// Compile the fixture program of `name` to the path its images name
/// (/tmp/cryo-fx/bin/<name>) with the flags that reproduce the dumped binary
/// (gcc -O2: same size and build-id), and check the size against files.img.
fn build_fixture(name: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap();
    let dir = fixtures().join(name);
    let set = cryo_image::ImageSet::open(dir.join("images")).unwrap();
    let files = set.files().unwrap();
    let want = format!("/tmp/cryo-fx/bin/{name}");
    let exe = files
        .iter()
        .filter_map(|f| f.reg.as_ref())
        .find(|r| r.name == want)
        .unwrap_or_else(|| panic!("{name}: files.img does not name {want}"));
    let size = exe.size.expect("exe size in files.img");
    std::fs::create_dir_all("/tmp/cryo-fx/bin").unwrap();
    if std::fs::metadata(&want).map(|m| m.len()).ok() == Some(size) {
        return PathBuf::from(want);
    }
    let tmp = format!("{want}.tmp.{}", std::process::id());
    let mut cmd = Command::new("gcc");
    cmd.args(["-O2", "-o", &tmp]).arg(dir.join(format!("src/{name}.c")));
    if std::fs::read_to_string(dir.join(format!("src/{name}.c")))
        .unwrap()
        .contains("pthread")
    {
        cmd.arg("-pthread");
    }
    let st = cmd.status().expect("gcc");
    assert!(st.success(), "gcc failed for {name}");
    let got = std::fs::metadata(&tmp).unwrap().len();
    assert_eq!(got, size, "{name}: gcc -O2 gives {got} bytes, the image says {size}");
    std::fs::rename(&tmp, &want).unwrap();
    PathBuf::from(want)
}

/// A PID + mount namespace running `cryo restore` (pid 1 is a shell that
/// then sleeps: killing it kills the namespace).
struct Ns {
    child: Child,
    pid1: i32,
}

impl Ns {
    /// Start a namespace and run `cryo restore -D dir -d <extra>` in it.
    fn restore(dir: &Path, extra: &[&str]) -> Ns {
        let script = format!(
            "mkdir -p /tmp/anchor && mount -t tmpfs cryo-test /tmp/anchor && echo ready > /tmp/anchor/.ns && \
             {CRYO} restore -D {} -d {} 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; exec sleep 100000",
            dir.display(),
            extra.join(" ")
        );
        Self::start(&script)
    }

    fn start(script: &str) -> Ns {
        let child = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount",
                "--mount-proc",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let upid = child.id();
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid1 = loop {
            let c = std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children")).unwrap_or_default();
            if let Some(p) = c.split_whitespace().next() {
                break p.parse().unwrap();
            }
            assert!(Instant::now() < deadline, "namespace did not start");
            std::thread::sleep(Duration::from_millis(10));
        };
        Ns { child, pid1 }
    }

    fn anchor(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/tmp/anchor/{file}", self.pid1))
    }

    /// Wait for cryo to finish; (exit code, stderr).
    fn cryo_result(&self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(rc) = std::fs::read_to_string(self.anchor(".cryo-rc")) {
                if rc.ends_with('\n') {
                    let err = std::fs::read_to_string(self.anchor(".cryo-err")).unwrap_or_default();
                    return (rc.trim().parse().unwrap(), err);
                }
            }
            assert!(Instant::now() < deadline, "cryo restore did not finish");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Outer pid of the process with pid `inner` in this namespace.
    fn outer(&self, inner: i32) -> Option<i32> {
        let ns = std::fs::read_link(format!("/proc/{}/ns/pid", self.pid1)).ok()?;
        for e in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok().as_ref() != Some(&ns) {
                continue;
            }
            let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let nspid = st.lines().find(|l| l.starts_with("NSpid:")).unwrap_or("");
            if nspid.split_whitespace().last().and_then(|s| s.parse::<i32>().ok()) == Some(inner) {
                return Some(pid);
            }
        }
        None
    }

    /// Processes (inner pids) in the namespace other than pid 1.
    fn inner_pids(&self) -> Vec<i32> {
        let ns = std::fs::read_link(format!("/proc/{}/ns/pid", self.pid1)).unwrap();
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok().as_ref() != Some(&ns) {
                continue;
            }
            let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let nspid = st.lines().find(|l| l.starts_with("NSpid:")).unwrap_or("");
            if let Some(p) = nspid.split_whitespace().last().and_then(|s| s.parse::<i32>().ok()) {
                if p != 1 {
                    v.push(p);
                }
            }
        }
        v.sort();
        v
    }

    /// Send a signal to the process with inner pid `inner`.
    fn kill(&self, inner: i32, sig: i32) {
        let o = self
            .outer(inner)
            .unwrap_or_else(|| panic!("pid {inner} is not running in the namespace"));
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(o, sig) }, 0);
    }

    /// Wait for a status file whose content contains `what`; returns it.
    fn wait_status(&self, file: &str, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(s) = std::fs::read_to_string(self.anchor(file)) {
                if s.contains(what) {
                    return s;
                }
                last = s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{file}: expected {what:?}, last content {last:?}");
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        // SAFETY: pid1 is the namespace's init; SIGKILL takes everything in it.
        unsafe { libc::kill(self.pid1, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Restore a CRIU 4.2 fixture, send SIGUSR1 to `pids`, and check the
/// programs' verify lines.
fn restore_fixture(name: &str) -> Ns {
    build_fixture(name);
    let ns = Ns::restore(&fixtures().join(name).join("images"), &[]);
    let (rc, err) = ns.cryo_result();
    assert_eq!(rc, 0, "cryo restore of {name} failed: {err}");
    ns
}

fn pstree_pids(name: &str) -> Vec<i32> {
    let set = cryo_image::ImageSet::open(fixtures().join(name).join("images")).unwrap();
    set.pstree().unwrap().iter().map(|p| p.pid as i32).collect()
}

#[test]
fn criu_loop_heap_restores_and_checks_its_heap() {
    let ns = restore_fixture("loop_heap");
    let pid = pstree_pids("loop_heap")[0];
    assert_eq!(ns.inner_pids(), vec![pid]);
    // The program keeps running (its counter advances) ...
    let first = ns.wait_status("loop_heap.status", &format!("pid={pid}"));
    let cnt = |s: &str| s.split("cnt=").nth(1).unwrap().trim().parse::<u64>().unwrap();
    let c0 = cnt(&first);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = std::fs::read_to_string(ns.anchor("loop_heap.status")).unwrap();
        if cnt(&s) > c0 {
            break;
        }
        assert!(Instant::now() < deadline, "the restored loop does not advance");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ... and its SIGUSR1 handler finds the heap pattern intact.
    ns.kill(pid, libc::SIGUSR1);
    let v = ns.wait_status("loop_heap.verify.status", "heap=");
    assert!(v.contains(&format!("pid={pid} ")) && v.contains("heap=ok"), "{v}");
}

#[test]
fn criu_images_restore_twice_and_stay_untouched() {
    let name = "loop_heap";
    let dir = fixtures().join(name).join("images");
    let before = dir_digest(&dir);
    for _ in 0..2 {
        let ns = restore_fixture(name);
        let pid = pstree_pids(name)[0];
        ns.kill(pid, libc::SIGUSR1);
        let v = ns.wait_status("loop_heap.verify.status", "heap=");
        assert!(v.contains("heap=ok"), "{v}");
    }
    assert_eq!(dir_digest(&dir), before, "restore modified the images");
}

/// (name, size, contents hash) of every file in a directory.
fn dir_digest(dir: &Path) -> Vec<(String, u64, u64)> {
    use std::hash::{Hash, Hasher};
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let data = std::fs::read(e.path()).unwrap();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        data.hash(&mut h);
        v.push((
            e.file_name().to_string_lossy().into_owned(),
            data.len() as u64,
            h.finish(),
        ));
    }
    v.sort();
    v
}
