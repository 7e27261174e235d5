//! A fresh PID + mount namespace for a test (`unshare --pid --fork --mount --mount-proc`): pid 1 is a
//! shell running the test's script, with its own tmpfs on /tmp/anchor (so that tests running at once
//! never see each other's status files); killing pid 1 on drop ends everything the test started.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::CRYO;

/// A PID + mount namespace running `cryo restore` (pid 1 is a shell that
/// then sleeps: killing it kills the namespace).
pub struct Ns {
    child: Child,
    pub pid1: i32,
}

impl Ns {
    /// Start a namespace and run `cryo restore -D dir -d <extra>` in it.
    pub fn restore(dir: &Path, extra: &[&str]) -> Ns {
        let script = format!(
            "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; \
             {CRYO} restore -D {} -d {} 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; exec sleep 100000",
            dir.display(),
            extra.join(" ")
        );
        Self::start(&script)
    }

    /// Run `script` as pid 1 of a new namespace. The script must mount the
    /// tmpfs on /tmp/anchor first (`mount -t tmpfs cryo-test /tmp/anchor;`);
    /// nothing is read from the namespace before the marker written right
    /// after that mount appears (the host's /tmp/anchor is never consulted).
    pub fn start(script: &str) -> Ns {
        Self::start_in(script, false)
    }

    /// [`Ns::start`] in a fresh network namespace as well (`unshare --net`:
    /// only loopback, down until the script sets it up).
    pub fn start_net(script: &str) -> Ns {
        Self::start_in(script, true)
    }

    fn start_in(script: &str, net: bool) -> Ns {
        Self::start_with(script, net, None)
    }

    /// [`Ns::start`] with the namespace in the network namespace `netns`
    /// (a /proc/PID/ns/net path) instead of the test's.
    pub fn start_in_netns(netns: &str, script: &str) -> Ns {
        Self::start_with(script, false, Some(netns))
    }

    fn start_with(script: &str, net: bool, netns: Option<&str>) -> Ns {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let token = format!(
            "{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let script = script.replacen(
            "mount -t tmpfs cryo-test /tmp/anchor;",
            &format!("mount -t tmpfs cryo-test /tmp/anchor; echo {token} > /tmp/anchor/.ns;"),
            1,
        );
        assert!(script.contains(&token), "script does not mount /tmp/anchor: {script}");
        let mut cmd = match netns {
            Some(n) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={n}")).arg("unshare");
                c
            }
            None => Command::new("unshare"),
        };
        let child = cmd
            .args(if net { &["--net"][..] } else { &[][..] })
            .args([
                "--pid",
                "--fork",
                "--mount",
                "--mount-proc",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
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
        let ns = Ns { child, pid1 };
        while std::fs::read_to_string(ns.anchor(".ns"))
            .map(|t| t.trim() != token)
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "namespace did not mount its /tmp/anchor");
            std::thread::sleep(Duration::from_millis(5));
        }
        ns
    }

    pub fn anchor(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/tmp/anchor/{file}", self.pid1))
    }

    /// Wait for cryo to finish; (exit code, stderr).
    pub fn cryo_result(&self) -> (i32, String) {
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

    /// (outer pid, inner pid, /proc/PID/status) of every process in this namespace (zombies included).
    pub fn tasks(&self) -> Vec<(i32, i32, String)> {
        let Ok(ns) = std::fs::read_link(format!("/proc/{}/ns/pid", self.pid1)) else {
            return Vec::new();
        };
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
            if let Some(inner) = nspid.split_whitespace().last().and_then(|s| s.parse::<i32>().ok()) {
                v.push((pid, inner, st));
            }
        }
        v
    }

    /// Outer pid of the process with pid `inner` in this namespace.
    pub fn outer(&self, inner: i32) -> Option<i32> {
        self.tasks().into_iter().find(|t| t.1 == inner).map(|t| t.0)
    }

    /// Outer pid of the task with pid `inner` in this namespace, zombies included.
    pub fn outer_any(&self, inner: i32) -> Option<i32> {
        self.outer(inner)
    }

    /// Processes (inner pids) in the namespace other than pid 1.
    pub fn inner_pids(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .tasks()
            .into_iter()
            // Dead tasks nobody reaps (pid 1 here is a plain sleep) don't count.
            .filter(|(_, p, st)| *p != 1 && !st.lines().any(|l| l.starts_with("State:") && l.contains("zombie")))
            .map(|t| t.1)
            .collect();
        v.sort();
        v
    }

    /// Send a signal to the process with inner pid `inner`.
    pub fn kill(&self, inner: i32, sig: i32) {
        let o = self
            .outer(inner)
            .unwrap_or_else(|| panic!("pid {inner} is not running in the namespace"));
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(o, sig) }, 0);
    }

    /// Wait for a status file whose content contains `what`; returns it.
    /// Ask a test program to check itself: remove its old answer, send SIGUSR1 to `pid` and wait
    /// for the new answer in `file` (containing `what`).
    pub fn ask(&self, pid: i32, file: &str, what: &str) -> String {
        let _ = std::fs::remove_file(self.anchor(file));
        self.kill(pid, libc::SIGUSR1);
        self.wait_status(file, what)
    }

    pub fn wait_status(&self, file: &str, what: &str) -> String {
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
