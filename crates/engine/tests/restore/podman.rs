//! podman end to end (Debian's podman 4.3, `apt install podman`; its OCI
//! runtime here is runc): cryo reached as `criu` on PATH (a temp dir with a
//! symlink), a local image made with `podman import` from a busybox root
//! filesystem. `podman container checkpoint` (--print-stats reads cryo's
//! stats-dump in the work dir), `restore` (conmon's stdio pipes handed back
//! with inherit_fd, --print-stats reads stats-restore), `--export` to a
//! checkpoint archive, `restore --import` of it after the container is
//! removed, and `crit x ARCHIVE ps` listing the container's processes.
//!
//! Everything of podman's lives under the test's temp dir: --root,
//! --runroot, --tmpdir, --network-config-dir, --volumepath; the container
//! has no network (`--network none`: podman's own empty namespace). What
//! podman 4.3 writes anyway outside them: containers/image's blob-info
//! cache (/var/lib/containers/cache, a fixed path for root) and an empty
//! /run/containers/networks, removed at the end when the test created them.

use super::*;

/// One podman with its own storage and state.
struct Podman {
    dir: PathBuf,
    bin: PathBuf,
    /// /var/lib/containers and /run/containers did not exist before the test.
    made_cache: bool,
    made_run: bool,
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman().args(["rm", "-f", "-a", "-t", "0"]).output();
        let _ = self.podman().args(["system", "reset", "-f"]).output();
        if self.made_cache {
            let _ = std::fs::remove_dir_all("/var/lib/containers");
        }
        if self.made_run {
            let _ = std::fs::remove_dir_all("/run/containers");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Podman {
    fn new(name: &str) -> Podman {
        assert!(
            Path::new("/usr/bin/podman").exists() && Path::new("/usr/sbin/runc").exists(),
            "podman and runc missing: apt-get install podman runc (.ci/run does)"
        );
        let dir = common::tmp_dir(name);
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(CRYO, bin.join("criu")).unwrap();
        Podman {
            made_cache: !Path::new("/var/lib/containers").exists(),
            made_run: !Path::new("/run/containers").exists(),
            dir,
            bin,
        }
    }

    fn podman(&self) -> Command {
        let d = &self.dir;
        let mut c = Command::new("/usr/bin/podman");
        c.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--network-config-dir")
            .arg(d.join("networks"))
            .arg("--volumepath")
            .arg(d.join("volumes"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--runtime",
                "/usr/sbin/runc",
            ]);
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default());
        c.env("PATH", path);
        c.stdin(std::process::Stdio::null());
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.podman().args(args).output().unwrap();
        if !o.status.success() {
            // cryo's logs in the containers' bundle dirs (runc's --work-path).
            let mut logs = String::new();
            for e in std::fs::read_dir(self.dir.join("root/vfs-containers"))
                .into_iter()
                .flatten()
                .flatten()
            {
                for l in ["dump.log", "restore.log"] {
                    if let Ok(t) = std::fs::read_to_string(e.path().join("userdata").join(l)) {
                        logs.push_str(&format!("--- {l}\n{t}"));
                    }
                }
            }
            panic!(
                "podman {}: {}\n{}\n{logs}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr),
                String::from_utf8_lossy(&o.stdout)
            );
        }
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// `podman import` of a busybox root filesystem as localhost/cryo-busybox:test.
    fn import_busybox(&self) {
        let rootfs = self.dir.join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("/bin/busybox (busybox-static)");
        let tar = self.dir.join("rootfs.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        self.ok(&["import", &tar.display().to_string(), "localhost/cryo-busybox:test"]);
    }

    fn counter(&self, name: &str) -> Option<u64> {
        let o = self
            .podman()
            .args(["exec", name, "/bin/busybox", "cat", "/counter"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    }

    /// The counter goes on from `at` (not from 1 again).
    fn goes_on_from(&self, name: &str, at: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = self.counter(name).filter(|&v| v > at) {
                assert!(v < at + 40, "restored counter {v}: it should go on from {at}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the restored counter does not go on from {at}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i > /counter.new; /bin/busybox mv /counter.new /counter; \
                       /bin/busybox sleep 0.1; done";

fn stats(out: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["container_statistics"][0]["criu_statistics"].clone()
}

#[test]
fn podman_checkpoint_restore_export_and_import() {
    let p = Podman::new("podman-e2e");
    p.import_busybox();
    let name = format!("cryo-podman-{}", std::process::id());
    let mut run = vec!["run", "-d", "--name", &name, "--network", "none"];
    // podman's default rlimits (nofile 1048576 …) are above what root may
    // set here (no CAP_SYS_RESOURCE).
    run.extend(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]);
    let conf = p.dir.join("criu.conf");
    let annotation;
    if !super::runc::cryo_manages_cgroups() {
        // As for runc (restore/runc.rs): until cryo dumps cgroups.
        std::fs::write(&conf, "manage-cgroups ignore\n").unwrap();
        annotation = format!("org.criu.config={}", conf.display());
        run.extend(["--annotation", &annotation]);
    }
    run.extend(["localhost/cryo-busybox:test", "/bin/busybox", "sh", "-c", COUNTER]);
    p.ok(&run);
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.counter(&name).unwrap_or(0) < 10 {
        assert!(Instant::now() < deadline, "the container's counter does not run");
        std::thread::sleep(Duration::from_millis(50));
    }

    // checkpoint (kept on disk), --print-stats: cryo's stats-dump.
    let out = p.ok(&["container", "checkpoint", "--print-stats", &name]);
    let s = stats(&out);
    assert!(s["pages_written"].as_u64().unwrap_or(0) > 0, "{out}");
    assert!(s["frozen_time"].as_u64().unwrap_or(0) > 0, "{out}");
    assert!(p.ok(&["ps", "-a", "--format", "{{.Status}}"]).contains("Exited"));
    // restore, --print-stats: stats-restore.
    let out = p.ok(&["container", "restore", "--print-stats", &name]);
    let s = stats(&out);
    assert!(s["pages_restored"].as_u64().unwrap_or(0) > 0, "{out}");
    assert!(s["restore_time"].as_u64().unwrap_or(0) > 0, "{out}");
    assert!(p.ok(&["ps", "--format", "{{.Status}}"]).contains("Up"));
    let at = p.counter(&name).unwrap();
    assert!(at >= 10, "the restored counter starts again: {at}");
    p.goes_on_from(&name, at);

    // --export to an archive, the container removed, restore --import.
    let archive = p.dir.join("ct.tar.gz");
    p.ok(&[
        "container",
        "checkpoint",
        "--export",
        &archive.display().to_string(),
        &name,
    ]);
    assert!(archive.exists());
    p.ok(&["rm", "-f", "-t", "0", &name]);
    // crit x on the archive: the container's processes (its init, pid 1
    // in its namespace, is busybox sh).
    let ps = cryo_crit::archive::with_dir(&archive, |dir| {
        let set = cryo_image::ImageSet::open(dir)?;
        cryo_crit::cmd::x::explore_text(&set, cryo_crit::cmd::x::What::Ps, false, None)
    })
    .unwrap_or_else(|e| panic!("crit x {} ps: {e:#}", archive.display()));
    let rows: Vec<Vec<&str>> = ps.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert!(
        rows.iter()
            .any(|r| r.first() == Some(&"1") && r.last() == Some(&"busybox")),
        "crit x ps:\n{ps}"
    );
    p.ok(&["container", "restore", "--import", &archive.display().to_string()]);
    assert!(p
        .ok(&["ps", "--format", "{{.Names}} {{.Status}}"])
        .contains(&format!("{name} Up")));
    let at2 = p.counter(&name).unwrap();
    assert!(
        at2 > at,
        "restored from the archive the counter is {at2}, it was past {at} before"
    );
    p.goes_on_from(&name, at2);
    p.ok(&["rm", "-f", "-t", "0", &name]);
}
