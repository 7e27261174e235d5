//! runc end to end (Debian's runc 1.1, `apt install runc`): a busybox
//! container (`runc spec` with the test's process) checkpointed and
//! restored by `runc --criu <cryo>`. runc drives cryo through `cryo swrk`
//! (CRIU's RPC): its mount namespace with runc's masked and read-only
//! paths, /dev on tmpfs with the device nodes, devpts, mqueue, sysfs and the
//! cgroup v1 bind mounts; a pid namespace; the network namespace dumped
//! empty (runc always passes `--empty-ns net`) or one of the test's own
//! (external, handed back by runc with `inherit_fd`); the restored init
//! becomes runc's child (`rst_sibling`).
//!
//! Every test uses its own container id, `--root` state directory and
//! bundle, and `runc delete -f` on the way out.

use super::*;

use std::process::Stdio;

fn runc_bin() -> &'static str {
    assert!(
        Path::new("/usr/sbin/runc").exists(),
        "/usr/sbin/runc missing: apt-get install runc (.ci/run does)"
    );
    "/usr/sbin/runc"
}

/// Whether cryo dumps and restores cgroups (criu's default
/// `--manage-cgroups soft`, which runc 1.1 always asks for and cannot turn
/// off). Until it does, each container names a CRIU configuration file
/// (runc's `org.criu.config` annotation) saying `manage-cgroups ignore`;
/// once cryo takes the option, the tests run with runc's default mode.
pub fn cryo_manages_cgroups() -> bool {
    let o = Command::new(CRYO)
        .args(["dump", "--manage-cgroups=soft", "-t", "1", "-D", "/nonexistent"])
        .output()
        .unwrap();
    !String::from_utf8_lossy(&o.stderr).contains("--manage-cgroups is not supported")
}

/// One runc container: its bundle (busybox root filesystem, config.json
/// from `runc spec`), its own runc state directory, and the work dirs.
pub struct Runc {
    pub id: String,
    pub dir: PathBuf,
    pub bundle: PathBuf,
    state: PathBuf,
}

impl Drop for Runc {
    fn drop(&mut self) {
        let _ = self.runc().args(["delete", "-f", &self.id]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Runc {
    /// A bundle whose process is `args`, with `edit` applied to config.json.
    pub fn new(name: &str, args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) -> Runc {
        let dir = common::tmp_dir(name);
        let bundle = dir.join("bundle");
        let rootfs = bundle.join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "www"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("/bin/busybox (busybox-static)");
        let id = format!("cryo-{name}-{}", std::process::id());
        let c = Runc {
            id,
            state: dir.join("state"),
            bundle: bundle.clone(),
            dir: dir.clone(),
        };
        let o = c.runc().args(["spec", "--bundle"]).arg(&bundle).output().unwrap();
        assert!(o.status.success(), "runc spec: {o:?}");
        let path = bundle.join("config.json");
        let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        cfg["process"]["terminal"] = false.into();
        cfg["process"]["args"] = args.iter().map(|a| serde_json::Value::from(*a)).collect();
        cfg["root"]["readonly"] = false.into();
        cfg["hostname"] = name.into();
        if !cryo_manages_cgroups() {
            let conf = dir.join("criu.conf");
            std::fs::write(&conf, "# cryo does not dump cgroups yet\nmanage-cgroups ignore\n").unwrap();
            cfg["annotations"] = serde_json::json!({ "org.criu.config": conf.display().to_string() });
        }
        edit(&mut cfg);
        std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        c
    }

    fn runc(&self) -> Command {
        let mut c = Command::new(runc_bin());
        c.arg("--root").arg(&self.state);
        c.arg("--log").arg(self.dir.join("runc.log"));
        c
    }

    /// runc's own log (its errors), for failure messages.
    fn runc_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("runc.log")).unwrap_or_default()
    }

    /// `runc run -d`, stdio /dev/null: runc -d hands its own to the
    /// container (a pipe would stay open, a file outside the container
    /// could not be opened again at restore); runc's errors go to --log.
    pub fn run(&self) {
        let st = self
            .runc()
            .args(["run", "-d", "--bundle"])
            .arg(&self.bundle)
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "runc run: {}", self.runc_log());
    }

    /// `runc state`: (status, pid), None when runc knows no such container.
    pub fn state(&self) -> Option<(String, i32)> {
        let o = self.runc().args(["state", &self.id]).output().unwrap();
        if !o.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        Some((
            v["status"].as_str().unwrap().to_string(),
            v["pid"].as_i64().unwrap() as i32,
        ))
    }

    fn logs(&self, what: &str) -> String {
        let mut s = String::new();
        for l in ["dump.log", "restore.log"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.join(what).join(l)) {
                s.push_str(&format!("--- {l}\n{t}"));
            }
        }
        s
    }

    /// `runc --criu <cryo> checkpoint` into images `what` (+ extra args).
    pub fn checkpoint(&self, what: &str, extra: &[&str]) {
        let o = self
            .runc()
            .arg("--criu")
            .arg(CRYO)
            .arg("checkpoint")
            .args(extra)
            .arg("--image-path")
            .arg(self.dir.join(what))
            .arg("--work-path")
            .arg(self.dir.join(what))
            .arg(&self.id)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "runc checkpoint: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.logs(what)
        );
    }

    /// `runc --criu <cryo> restore -d` from images `what`.
    pub fn restore(&self, what: &str) {
        let st = self
            .runc()
            .arg("--criu")
            .arg(CRYO)
            .args(["restore", "-d", "--bundle"])
            .arg(&self.bundle)
            .arg("--image-path")
            .arg(self.dir.join(what))
            .arg("--work-path")
            .arg(self.dir.join(what))
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "runc restore: {}\n{}", self.runc_log(), self.logs(what));
    }

    /// `runc delete -f`.
    pub fn delete(&self) {
        let o = self.runc().args(["delete", "-f", &self.id]).output().unwrap();
        assert!(o.status.success(), "runc delete -f: {o:?}");
    }

    fn rootfs(&self, p: &str) -> PathBuf {
        self.bundle.join("rootfs").join(p)
    }
}

/// A counter the container writes ten times a second to /counter.
const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i > /counter.new; /bin/busybox mv /counter.new /counter; \
                       /bin/busybox sleep 0.1; done";

fn counter(c: &Runc) -> Option<u64> {
    std::fs::read_to_string(c.rootfs("counter")).ok()?.trim().parse().ok()
}

/// Wait until the counter is at least `n`; its value.
fn wait_counter(c: &Runc, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = counter(c).filter(|&v| v >= n) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "the counter did not reach {n} ({:?})",
            counter(c)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// After a restore from a checkpoint taken at `at`: the counter goes on
/// from there (the next values are at+1, at+2 …, not 1 again).
fn goes_on_from(c: &Runc, at: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        if let Some(v) = counter(c).filter(|&v| v != at) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the restored counter does not move from {at}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        first > at && first <= at + 3,
        "after the restore the counter is {first}: it should go on from {at}"
    );
    wait_counter(c, first + 5);
}

#[test]
fn runc_checkpoint_and_restore_a_counting_container() {
    let c = Runc::new("runc-counter", &["/bin/busybox", "sh", "-c", COUNTER], |_| {});
    c.run();
    let (st, _) = c.state().expect("runc knows the container");
    assert_eq!(st, "running");
    wait_counter(&c, 15);
    c.checkpoint("ck", &[]);
    // The container is gone and its counter stopped.
    assert!(
        c.state().is_none_or(|(s, _)| s == "stopped"),
        "after checkpoint: {:?}",
        c.state()
    );
    let at = counter(&c).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(counter(&c), Some(at), "the counter runs on after the checkpoint");
    let img = c.dir.join("ck");
    for f in ["inventory.img", "pstree.img", "stats-dump", "descriptors.json"] {
        assert!(img.join(f).exists(), "{f} missing in the checkpoint");
    }
    c.restore("ck");
    goes_on_from(&c, at);
    // runc knows the restored init (the pid post-restore named) and its pid
    // namespace holds the same tree.
    let (st, pid) = c.state().expect("runc knows the restored container");
    assert_eq!(st, "running");
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .contains("NSpid:\t"),
        "pid {pid}"
    );
    let o = c
        .runc()
        .args(["exec", &c.id, "/bin/busybox", "cat", "/proc/1/cmdline"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("while true"), "{o:?}");
    // runc's masked and read-only paths came back as they were.
    let o = c
        .runc()
        .args(["exec", &c.id, "/bin/busybox", "cat", "/proc/self/mountinfo"])
        .output()
        .unwrap();
    let mi = String::from_utf8_lossy(&o.stdout).to_string();
    for (at, what) in [
        (" /proc/sys ro,", "/proc/sys read-only"),
        (" /proc/keys ", "/proc/keys masked"),
        (" /proc/acpi ro,", "/proc/acpi masked"),
        (" /dev/pts ", "devpts"),
        (" /dev/mqueue ", "mqueue"),
        (" /sys ro,", "sysfs read-only"),
    ] {
        assert!(mi.contains(at), "{what}: not in the restored mountinfo:\n{mi}");
    }
    let o = c
        .runc()
        .args(["exec", &c.id, "/bin/busybox", "hostname"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "runc-counter");
    c.delete();
    assert!(c.state().is_none());
}

#[test]
fn runc_checkpoint_leave_running_then_restore_the_checkpoint() {
    let c = Runc::new("runc-leave", &["/bin/busybox", "sh", "-c", COUNTER], |_| {});
    c.run();
    wait_counter(&c, 10);
    c.checkpoint("ck", &["--leave-running"]);
    let at = std::fs::read_to_string(c.dir.join("ck/dump.log")).unwrap();
    assert!(at.contains("left running"), "{at}");
    // It runs on.
    assert_eq!(c.state().map(|s| s.0).as_deref(), Some("running"));
    let after = counter(&c).unwrap();
    let later = wait_counter(&c, after + 10);
    // A second checkpoint of the same container, killing it this time;
    // then the restore goes on from the second.
    c.checkpoint("ck2", &[]);
    let at2 = counter(&c).unwrap();
    assert!(at2 >= later);
    c.restore("ck2");
    goes_on_from(&c, at2);
    c.delete();
    // And the first checkpoint restores too, to its own (earlier) count.
    std::fs::write(c.rootfs("counter"), "0\n").unwrap();
    c.restore("ck");
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        if let Some(v) = counter(&c).filter(|&v| v != 0) {
            break v;
        }
        assert!(Instant::now() < deadline, "the first checkpoint's counter does not run");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        v < later,
        "restored from the first checkpoint the counter is {v}, it was < {later} then"
    );
    c.delete();
}

/// A network namespace of the test's own, held by a process: the
/// container joins it by path (runc checkpoints it as external and hands it
/// back to cryo at restore).
struct NetNs(std::process::Child);

impl NetNs {
    fn new() -> NetNs {
        let child = Command::new("unshare")
            .args(["-n", "sleep", "100000"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() == std::fs::read_link("/proc/self/ns/net").ok() {
            assert!(Instant::now() < deadline, "netns holder did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        let n = NetNs(child);
        let o = n.run(&["ip", "link", "set", "lo", "up"]);
        assert!(o.status.success(), "{o:?}");
        n
    }
    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }
    /// GET / from `addr` in the namespace: the body.
    fn get(&self, addr: &str) -> Result<String, String> {
        use std::io::{Read, Write};
        let f = std::fs::File::open(self.path()).unwrap();
        cryo_engine::sys::rtnl::in_netns(&f, || -> Result<String, String> {
            let a: std::net::SocketAddr = addr.parse().unwrap();
            let mut s = std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
            let mut r = String::new();
            s.read_to_string(&mut r).map_err(|e| e.to_string())?;
            let (head, body) = r
                .split_once("\r\n\r\n")
                .ok_or_else(|| format!("no HTTP answer: {r:?}"))?;
            if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
                return Err(format!("answer: {head}"));
            }
            Ok(body.to_string())
        })
        .map_err(|e| e.to_string())?
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.path()))
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn runc_container_listening_socket_answers_after_restore() {
    let ns = NetNs::new();
    let path = ns.path();
    let c = Runc::new(
        "runc-httpd",
        &["/bin/busybox", "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www"],
        |cfg| {
            for n in cfg["linux"]["namespaces"].as_array_mut().unwrap() {
                if n["type"] == "network" {
                    n["path"] = path.clone().into();
                }
            }
        },
    );
    std::fs::write(c.rootfs("www/index.html"), "hello from the container\n").unwrap();
    c.run();
    let get = || ns.get("127.0.0.1:8080");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = get();
        if let Ok(body) = &o {
            assert_eq!(body, "hello from the container\n");
            break;
        }
        assert!(Instant::now() < deadline, "httpd does not answer: {o:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.checkpoint("ck", &[]);
    assert!(get().is_err(), "httpd answers after the checkpoint killed it");
    // The page changes on disk: the restored server serves what is there now.
    std::fs::write(c.rootfs("www/index.html"), "hello again\n").unwrap();
    c.restore("ck");
    let o = get();
    assert_eq!(
        o.as_deref().ok(),
        Some("hello again\n"),
        "the restored httpd: {o:?}\n{}",
        c.logs("ck")
    );
    // Its listening socket is the one it had (restored, not opened anew):
    // the same inode number is not kept, but the same pid is listening.
    let (_, pid) = c.state().unwrap();
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .map(|l| l.display().to_string())
        .collect();
    assert!(fds.iter().any(|l| l.starts_with("socket:")), "{fds:?}");
    c.delete();
}

/// A paused container (`runc pause`: its freezer cgroup frozen) is refused
/// by name; after `runc resume` it counts on, and then checkpoints.
#[test]
fn runc_checkpoint_of_a_paused_container_is_refused_and_it_runs_on() {
    let c = Runc::new("runc-paused", &["/bin/busybox", "sh", "-c", COUNTER], |_| {});
    c.run();
    wait_counter(&c, 5);
    let o = c.runc().args(["pause", &c.id]).output().unwrap();
    assert!(o.status.success(), "runc pause: {o:?}");
    let o = c
        .runc()
        .arg("--criu")
        .arg(CRYO)
        .arg("checkpoint")
        .arg("--image-path")
        .arg(c.dir.join("ck"))
        .arg("--work-path")
        .arg(c.dir.join("ck"))
        .arg(&c.id)
        .output()
        .unwrap();
    assert!(!o.status.success(), "a paused container was checkpointed");
    let log = std::fs::read_to_string(c.dir.join("ck/dump.log")).unwrap();
    assert!(log.contains("freeze_cgroup") && log.contains("frozen"), "{log}");
    assert_eq!(c.state().map(|s| s.0).as_deref(), Some("paused"));
    let o = c.runc().args(["resume", &c.id]).output().unwrap();
    assert!(o.status.success(), "runc resume: {o:?}");
    let v = counter(&c).unwrap();
    wait_counter(&c, v + 5);
    c.checkpoint("ck", &[]);
    let at = counter(&c).unwrap();
    c.restore("ck");
    goes_on_from(&c, at);
    c.delete();
}
