//! Container-shaped trees built with the system's tools: a busybox root
//! filesystem (Debian's busybox-static) pivot_root'ed in a mount namespace
//! of its own, with proc, a tmpfs holding files, a bind mount of a
//! directory of that tmpfs, a read-only bind mount of a directory of the
//! root, mqueue, and a network namespace with lo up and a veth whose other
//! end is in a client namespace the test also makes (`unshare -n`). Nothing
//! touches the host's mounts or network: the container's mounts die with
//! its mount namespace, the veth with its network namespaces.

use super::*;

use std::collections::BTreeMap;
use std::process::{Child, Stdio};

use cryo_engine::state::{mnt, netns};
use cryo_image::pb;

/// The container's address on the veth, and the client's.
const CT_ADDR: &str = "10.213.7.2";
const CL_ADDR: &str = "10.213.7.1";

pub struct Container {
    pub root: PathBuf,
    pub pid: i32,
    ct: Child,
    client: Child,
    pub client_pid: i32,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.ct.kill();
        let _ = self.ct.wait();
        let _ = self.client.kill();
        let _ = self.client.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn busybox() -> &'static str {
    assert!(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox missing: apt-get install busybox-static (.ci/run does)"
    );
    "/bin/busybox"
}

/// A busybox root filesystem in a fresh directory.
pub fn rootfs(name: &str) -> PathBuf {
    let root = common::tmp_dir(name);
    for d in [
        "bin",
        "proc",
        "data",
        "mnt/sub",
        "mnt/etc",
        "etc",
        "dev/mqueue",
        "old",
        "tmp",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(busybox(), root.join("bin/busybox")).unwrap();
    std::fs::write(root.join("etc/conf"), "conf\n").unwrap();
    root
}

impl Container {
    /// Start the container; `exec` is what its init runs after pivot_root
    /// (a busybox command line).
    pub fn start(name: &str, exec: &str) -> Container {
        Self::start_ext(name, exec, None, false)
    }

    /// With `ext`, a directory outside the root is bound at /mnt/ext; with
    /// `pidns`, the container has a pid namespace of its own (`exec` is its init).
    pub fn start_ext(name: &str, exec: &str, ext: Option<&Path>, pidns: bool) -> Container {
        Self::start_in(name, exec, ext, pidns, "")
    }

    /// [`Container::start_ext`] with `pre` run first by the container's shell (e.g. joining cgroups).
    pub fn start_in(name: &str, exec: &str, ext: Option<&Path>, pidns: bool, pre: &str) -> Container {
        let root = rootfs(name);
        let ext_bind = match ext {
            Some(e) => {
                std::fs::create_dir_all(root.join("mnt/ext")).unwrap();
                format!("mount --bind {} {}/mnt/ext", e.display(), root.display())
            }
            None => String::new(),
        };
        let client = Command::new("unshare")
            .args(["-n", "sleep", "100000"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let client_pid = client.id() as i32;
        // unshare execs sleep in place: wait until it has its own netns.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(format!("/proc/{client_pid}/ns/net")).ok()
            == std::fs::read_link("/proc/self/ns/net").ok()
        {
            assert!(Instant::now() < deadline, "client namespace did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        let r = root.display();
        let script = format!(
            "set -e
             {pre}
             for f in /proc/self/fd/*; do n=${{f##*/}}; [ $n -gt 2 ] && eval \"exec $n>&-\" 2>/dev/null || true; done
             mount --bind {r} {r}
             mount -t proc proc {r}/proc
             mount -t tmpfs -o size=1m,mode=755 data {r}/data
             mkdir {r}/data/sub; echo hello > {r}/data/sub/f; echo top > {r}/data/top
             mount --bind {r}/data/sub {r}/mnt/sub
             mount --bind {r}/etc {r}/mnt/etc; mount -o remount,bind,ro {r}/mnt/etc
             mount -t mqueue mq {r}/dev/mqueue
             {ext_bind}
             ip link set lo up
             ip link add eth0 type veth peer name cl0 netns /proc/{client_pid}/ns/net
             ip addr add {CT_ADDR}/24 dev eth0
             ip link set eth0 up
             ip route add 10.213.8.0/24 via {CL_ADDR}
             nsenter --net=/proc/{client_pid}/ns/net ip addr add {CL_ADDR}/24 dev cl0
             nsenter --net=/proc/{client_pid}/ns/net ip link set cl0 up
             nsenter --net=/proc/{client_pid}/ns/net ip link set lo up
             nft add table inet cryotest
             nft add chain inet cryotest input '{{ type filter hook input priority 0 ; }}'
             nft add rule inet cryotest input tcp dport 9 drop
             cd {r}; pivot_root . old; /bin/busybox umount -l /old
             exec {exec} <&- >&- 2>/tmp/ct.err"
        );
        let mut args = vec!["unshare", "-m", "-n", "--propagation", "private"];
        if pidns {
            args.extend(["-p", "-f"]);
        }
        let ct = Command::new("setsid")
            .args(&args)
            .args(["bash", "-c", &script])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pid = ct.id() as i32;
        if pidns {
            // unshare -f: the container is its child.
            loop {
                let k = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
                if let Some(p) = k.split_whitespace().next() {
                    pid = p.parse().unwrap();
                    break;
                }
                assert!(Instant::now() < deadline, "container did not fork");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let mut c = Container {
            root,
            pid,
            ct,
            client,
            client_pid,
        };
        loop {
            let mi = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "busybox" && mi.contains(" /dev/mqueue ") && !mi.contains(" /old") {
                break;
            }
            if let Ok(Some(st)) = c.ct.try_wait() {
                let mut e = String::new();
                use std::io::Read;
                c.ct.stderr.take().unwrap().read_to_string(&mut e).unwrap();
                panic!("container setup failed ({st}): {e}");
            }
            assert!(Instant::now() < deadline, "container did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        c
    }

    /// Run a command in the client's network namespace.
    pub fn client(&self, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", self.client_pid))
            .args(args)
            .output()
            .unwrap()
    }
}

fn decode_json(path: &Path) -> serde_json::Value {
    let o = Command::new("crit")
        .args(["decode", "-i"])
        .arg(path)
        .output()
        .expect("Debian's crit");
    assert!(
        o.status.success(),
        "python crit cannot decode {}: {}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn container_mounts_and_net_dump_as_criu_writes_them() {
    let c = Container::start("ct-dump", "/bin/busybox sleep 100000");
    let dir = common::tmp_dir("ct-dump-img");
    // The client reaches the container over the veth.
    let o = c.client(&["/bin/busybox", "ping", "-c1", "-W5", CT_ADDR]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let (mounts, _) = mnt::survey(c.pid, &BTreeMap::new()).unwrap();
    let written = mnt::dump(c.pid, 10, &dir, &BTreeMap::new()).unwrap();
    let data = mounts.iter().find(|m| m.mountpoint == "/data").unwrap();
    assert_eq!(
        written,
        vec![mnt::tmpfs_image_name(data.s_dev), "mountpoints-10.img".to_string()]
    );
    // The entries: mountinfo reversed, each mount as it is.
    let entries: Vec<pb::MntEntry> = cryo_image::read_entries(dir.join("mountpoints-10.img"), "MNTS").unwrap();
    let mps: Vec<&str> = entries.iter().map(|e| e.mountpoint.as_str()).collect();
    assert_eq!(mps, ["/dev/mqueue", "/mnt/etc", "/mnt/sub", "/data", "/proc", "/"]);
    let by = |mp: &str| entries.iter().find(|e| e.mountpoint == mp).unwrap();
    assert_eq!(by("/proc").fstype, pb::Fstype::Proc as u32);
    assert_eq!(by("/data").fstype, pb::Fstype::Tmpfs as u32);
    assert_eq!(by("/data").options, "size=1024k,mode=755");
    assert_eq!(by("/mnt/sub").root, "/sub");
    assert_eq!(by("/mnt/etc").flags & mnt::MS_RDONLY, mnt::MS_RDONLY);
    assert_eq!(by("/").root, c.root.display().to_string());
    let tree = mnt::describe(&entries).unwrap();
    assert_eq!(
        tree.get(by("/mnt/sub").mnt_id).unwrap().kind,
        mnt::MountKind::Bind { of: by("/data").mnt_id }
    );
    assert_eq!(
        tree.get(by("/mnt/etc").mnt_id).unwrap().kind,
        mnt::MountKind::Bind { of: by("/").mnt_id }
    );
    // The tmpfs tarball holds the files (tar as CRIU runs it).
    let tgz = dir.join(mnt::tmpfs_image_name(data.s_dev));
    let o = Command::new("tar").arg("tzf").arg(&tgz).output().unwrap();
    let list = String::from_utf8_lossy(&o.stdout);
    assert!(list.contains("./sub/f") && list.contains("./top"), "{list}");

    // The network namespace.
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", c.pid)).unwrap();
    let files = netns::dump(&ns, 9, &dir, &|_| None).unwrap();
    for f in [
        "netdev-9.img",
        "ifaddr-9.img",
        "route-9.img",
        "nftables-9.img",
        "netns-9.img",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} not written: {files:?}");
    }
    let devs: Vec<pb::NetDeviceEntry> = cryo_image::read_entries(dir.join("netdev-9.img"), "NETDEV").unwrap();
    let names: Vec<&str> = devs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["lo", "eth0"]);
    assert_eq!(devs[0].r#type, pb::NdType::Loopback as i32);
    assert_eq!(devs[0].flags & 1, 1, "lo is up");
    assert_eq!(devs[1].r#type, pb::NdType::Veth as i32);
    assert_eq!(devs[1].address.as_ref().map(|a| a.len()), Some(6));
    assert_eq!(devs[1].peer_nsid, None, "the peer is outside the tree");
    assert_eq!(devs[0].conf4.len(), netns::DEVCONFS4.len());
    assert_eq!(devs[0].conf6.len(), netns::DEVCONFS6.len());
    let nft = std::fs::read_to_string(dir.join("nftables-9.img")).unwrap();
    assert!(
        nft.contains("table inet cryotest") && nft.contains("tcp dport 9 drop"),
        "{nft}"
    );
    // ifaddr/route are `ip ... save` dumps: `ip ... showdump` reads them.
    let show = |what: &str, f: &str| {
        let o = Command::new("ip")
            .args([what, "showdump"])
            .stdin(std::fs::File::open(dir.join(f)).unwrap())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(show("addr", "ifaddr-9.img").contains(&format!("{CT_ADDR}/24")));
    assert!(show("route", "route-9.img").contains("10.213.8.0/24 via 10.213.7.1"));
    // Python crit decodes every image with a magic.
    for f in ["mountpoints-10.img", "netdev-9.img", "netns-9.img"] {
        let j = decode_json(&dir.join(f));
        assert!(j["entries"].as_array().is_some_and(|e| !e.is_empty()), "{f}: {j}");
    }
    // A device cryo cannot make is refused, naming it.
    std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", c.pid))
        .args(["ip", "link", "add", "br0", "type", "bridge"])
        .status()
        .unwrap();
    let e = netns::survey(&ns).unwrap_err().to_string();
    assert!(e.contains("br0") && e.contains("bridge"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run a command inside namespaces held by this test process's fds.
fn nsenter(mnt: Option<&std::fs::File>, net: Option<&std::fs::File>, args: &[&str]) -> std::process::Output {
    use std::os::fd::AsRawFd;
    let me = std::process::id();
    let mut c = Command::new("nsenter");
    if let Some(f) = mnt {
        c.arg(format!("--mount=/proc/{me}/fd/{}", f.as_raw_fd()));
    }
    if let Some(f) = net {
        c.arg(format!("--net=/proc/{me}/fd/{}", f.as_raw_fd()));
    }
    c.args(args).output().unwrap()
}

#[test]
fn container_mount_and_net_namespaces_are_rebuilt_from_the_images() {
    let c = Container::start("ct-rebuild", "/bin/busybox sleep 100000");
    let dir = common::tmp_dir("ct-rebuild-img");
    let before = std::fs::read_to_string(format!("/proc/{}/mountinfo", c.pid)).unwrap();
    mnt::dump(c.pid, 10, &dir, &BTreeMap::new()).unwrap();
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", c.pid)).unwrap();
    netns::dump(&ns, 9, &dir, &|_| None).unwrap();
    drop(ns);
    // The container goes away (its veth with it), its root directory stays.
    let root = c.root.clone();
    let keep = common::tmp_dir("ct-rebuild-root");
    std::fs::remove_dir_all(&keep).unwrap();
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&root)
        .arg(&keep)
        .status()
        .unwrap()
        .success());
    let client_pid = c.client_pid;
    let mut c = c;
    let _ = c.ct.kill();
    let _ = c.ct.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while String::from_utf8_lossy(&c.client(&["ip", "link"]).stdout).contains("cl0") {
        assert!(Instant::now() < deadline, "the old veth stays");
        std::thread::sleep(Duration::from_millis(20));
    }

    let entries: Vec<pb::MntEntry> = cryo_image::read_entries(dir.join("mountpoints-10.img"), "MNTS").unwrap();
    let tree = mnt::describe(&entries).unwrap();
    let mut o = mnt::MntRestoreOpts::default();
    let e = mnt::check_restore(&tree, &dir, &o).unwrap_err().to_string();
    assert!(e.contains("--root"), "{e}");
    o.root = Some(keep.clone());
    mnt::check_restore(&tree, &dir, &o).unwrap();
    let devs: Vec<pb::NetDeviceEntry> = cryo_image::read_entries(dir.join("netdev-9.img"), "NETDEV").unwrap();
    let nse: Vec<pb::NetnsEntry> = cryo_image::read_entries(dir.join("netns-9.img"), "NETNS").unwrap();
    let e = netns::describe(9, &devs, nse.first().cloned(), &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--external veth[eth0]"), "{e}");
    let pairs = BTreeMap::from([("eth0".to_string(), "cl0".to_string())]);
    let plan = netns::describe(9, &devs, nse.first().cloned(), &pairs).unwrap();
    netns::check_restore(&plan).unwrap();

    let m = mnt::make_ns(&tree, &dir, &o, &|_| false, None, None).unwrap();
    let n = netns::make_ns(&plan, &dir, &pairs, client_pid as u32, None).unwrap();

    // Inside: the mounts, the files of the tmpfs, the bind mounts.
    let out = nsenter(
        Some(&m.fd),
        None,
        &[
            "/bin/busybox",
            "cat",
            "/data/sub/f",
            "/mnt/sub/f",
            "/data/top",
            "/mnt/etc/conf",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello\nhello\ntop\nconf\n",
        "{out:?}"
    );
    let out = nsenter(Some(&m.fd), None, &["/bin/busybox", "touch", "/mnt/etc/x"]);
    assert!(!out.status.success(), "/mnt/etc is read-only again");
    let after =
        String::from_utf8_lossy(&nsenter(Some(&m.fd), None, &["/bin/busybox", "cat", "/proc/self/mountinfo"]).stdout)
            .into_owned();
    let shape = |t: &str| -> Vec<(String, String, String, String)> {
        mnt::parse_mountinfo(t)
            .unwrap()
            .into_iter()
            .map(|m| (m.mountpoint, m.fsname, format!("{:x}", m.flags), m.options))
            .collect()
    };
    assert_eq!(shape(&after), shape(&before), "{after}");
    // The network: lo up, eth0 with its address and route; nft rules.
    let out = nsenter(None, Some(&n.fd), &["ip", "-o", "addr"]);
    let addrs = String::from_utf8_lossy(&out.stdout);
    assert!(
        addrs.contains(&format!("eth0    inet {CT_ADDR}/24")) && addrs.contains("lo    inet 127.0.0.1/8"),
        "{addrs}"
    );
    let routes = String::from_utf8_lossy(&nsenter(None, Some(&n.fd), &["ip", "route"]).stdout).into_owned();
    assert!(routes.contains("10.213.8.0/24 via 10.213.7.1"), "{routes}");
    let nft = String::from_utf8_lossy(&nsenter(None, Some(&n.fd), &["nft", "list", "ruleset"]).stdout).into_owned();
    assert!(nft.contains("tcp dport 9 drop"), "{nft}");
    // Outside: the client reaches the restored namespace over the new veth.
    assert!(c.client(&["ip", "link", "set", "cl0", "up"]).status.success());
    assert!(c
        .client(&["ip", "addr", "add", &format!("{CL_ADDR}/24"), "dev", "cl0"])
        .status
        .success());
    let o2 = c.client(&["/bin/busybox", "ping", "-c1", "-W5", CT_ADDR]);
    assert!(o2.status.success(), "{}", String::from_utf8_lossy(&o2.stdout));
    // Closing the namespaces removes them: the veth goes with its netns.
    drop(n);
    drop(m);
    let deadline = Instant::now() + Duration::from_secs(10);
    while String::from_utf8_lossy(&c.client(&["ip", "link"]).stdout).contains("cl0") {
        assert!(Instant::now() < deadline, "the restored veth outlives its namespace");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&keep);
}

fn cryo(args: &[&str]) -> std::process::Output {
    Command::new(CRYO).args(args).output().unwrap()
}

#[test]
fn container_with_its_mounts_and_veth_dumps_and_restores() {
    let ext = common::tmp_dir("ct-e2e-ext");
    std::fs::write(ext.join("shared"), "from outside\n").unwrap();
    // In cgroups of its own with a memory limit and pids.max, removed after the dump: the restore
    // makes them again with the limits.
    let cg = crate::cgroup::Cgroups::new("ct");
    let c = Container::start_in("ct-e2e", "/bin/busybox sleep 100000", Some(&ext), false, &cg.enter("t"));
    let dir = common::tmp_dir("ct-e2e-img");
    let d = dir.display().to_string();
    let pid = c.pid.to_string();
    // A bind mount from outside the namespace, not declared: refused, the tree left as it was.
    let o = cryo(&["dump", "-t", &pid, "-D", &d]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--external mnt[/mnt/ext]:KEY"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "a refused dump writes nothing"
    );
    assert!(
        std::fs::read_to_string(format!("/proc/{}/stat", c.pid)).is_ok_and(|s| s.contains(") S ")),
        "the refused tree still runs"
    );
    let o = cryo(&["dump", "-t", &pid, "-D", &d, "--external", "mnt[/mnt/ext]:shared"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(common::wait_gone(c.pid), "the dumped tree is killed");
    for i in 0..3 {
        std::fs::remove_dir(cg.dir(i, "t")).unwrap();
    }
    for f in [
        "cgroup.img",
        "mountpoints-",
        "netdev-",
        "netns-",
        "ifaddr-",
        "route-",
        "nftables-",
        "tmpfs-dev-",
    ] {
        assert!(
            std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(f)),
            "no {f}* image"
        );
    }
    // Python crit decodes the whole set.
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.ends_with(".img") && !cryo_image::check::is_raw_image(&n) && !n.starts_with("pages-") {
            decode_json(&e.path());
        }
    }
    let root = c.root.display().to_string();
    let netns = format!("/proc/{}/ns/net", c.client_pid);
    // Without --root, without the external mount, without the veth's outside name: refused before any task.
    for (extra, want) in [
        (
            vec![
                "--external",
                "mnt[shared]:/nonexistent-cryo",
                "--external",
                "veth[eth0]:cl0",
            ],
            "--root",
        ),
        (
            vec!["--root", root.as_str(), "--external", "veth[eth0]:cl0"],
            "--external mnt[shared]:PATH",
        ),
        (
            vec!["--root", root.as_str(), "--external", "mnt[shared]:/tmp"],
            "--external veth[eth0]",
        ),
    ] {
        let ns = Ns::start_in_netns(
            &netns,
            &format!(
                "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; {CRYO} restore -D {d} -d {} \
                 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; exec sleep 100000",
                extra.join(" ")
            ),
        );
        let (rc, err) = ns.cryo_result();
        assert_ne!(rc, 0);
        assert!(err.contains(want), "{want}: {err}");
        assert!(ns.inner_pids().is_empty(), "a refused restore starts nothing");
        assert!(!String::from_utf8_lossy(&c.client(&["ip", "link"]).stdout).contains("cl0"));
    }
    let e = ext.display().to_string();
    let ns = Ns::start_in_netns(
        &netns,
        &format!(
            "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; {CRYO} restore -D {d} -d --root {root} \
             --external mnt[shared]:{e} --veth-pair eth0=cl0 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; \
             exec sleep 100000"
        ),
    );
    let (rc, err) = ns.cryo_result();
    assert_eq!(rc, 0, "{err}");
    let o = ns.outer(c.pid).expect("the restored busybox runs");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{o}/comm")).unwrap().trim(),
        "busybox"
    );
    // Inside: its mounts, the tmpfs files, the binds, the external mount.
    let inside = |args: &[&str]| {
        // Its mount namespace holds busybox only: ip and nft run in its network namespace alone.
        let ns = if args[0] == "/bin/busybox" { "-m" } else { "-n" };
        let out = Command::new("nsenter")
            .args(["-t", &o.to_string(), ns])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        inside(&[
            "/bin/busybox",
            "cat",
            "/data/sub/f",
            "/mnt/sub/f",
            "/data/top",
            "/mnt/etc/conf",
            "/mnt/ext/shared"
        ]),
        "hello\nhello\ntop\nconf\nfrom outside\n"
    );
    let mi = std::fs::read_to_string(format!("/proc/{o}/mountinfo")).unwrap();
    let mps: Vec<String> = mnt::parse_mountinfo(&mi)
        .unwrap()
        .into_iter()
        .map(|m| m.mountpoint)
        .collect();
    assert_eq!(
        mps,
        ["/", "/proc", "/data", "/mnt/sub", "/mnt/etc", "/dev/mqueue", "/mnt/ext"],
        "{mi}"
    );
    assert!(mi.contains(" /mnt/etc ro,"), "{mi}");
    // Its cgroups (as it reads them inside) and their limits.
    // (its /proc shows the pids of the namespace it was restored in: its own pid there)
    let cgs = inside(&["/bin/busybox", "cat", &format!("/proc/{}/cgroup", c.pid)]);
    for (i, h) in [(0, "memory"), (1, "pids"), (2, "")] {
        assert!(cgs.contains(&format!(":{h}:{}\n", cg.path(i, "t"))), "{cgs}");
    }
    let limit = std::fs::read_to_string(format!("{}/memory.limit_in_bytes", cg.dir(0, "t"))).unwrap();
    assert_eq!(limit.trim(), crate::cgroup::LIMIT.to_string());
    let max = std::fs::read_to_string(format!("{}/pids.max", cg.dir(1, "t"))).unwrap();
    assert_eq!(max.trim(), crate::cgroup::PIDS_MAX.to_string());
    let addrs = inside(&["ip", "-o", "addr"]);
    assert!(addrs.contains(&format!("eth0    inet {CT_ADDR}/24")), "{addrs}");
    assert!(inside(&["nft", "list", "ruleset"]).contains("tcp dport 9 drop"));
    // Outside: the client reaches it over the restored veth.
    assert!(c
        .client(&["ip", "addr", "add", &format!("{CL_ADDR}/24"), "dev", "cl0"])
        .status
        .success());
    assert!(c.client(&["ip", "link", "set", "cl0", "up"]).status.success());
    let p = c.client(&["/bin/busybox", "ping", "-c1", "-W5", CT_ADDR]);
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stdout));
    drop(ns);
    assert!(common::wait_gone(o));
    let deadline = Instant::now() + Duration::from_secs(10);
    while String::from_utf8_lossy(&c.client(&["ip", "link"]).stdout).contains("cl0") {
        assert!(Instant::now() < deadline, "the veth outlives the restored tree");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&ext);
}

#[test]
fn container_with_its_own_pid_namespace_gets_its_proc_back() {
    let c = Container::start_ext("ct-pidns", "/bin/busybox sleep 100000", None, true);
    let dir = common::tmp_dir("ct-pidns-img");
    let d = dir.display().to_string();
    let o = cryo(&["dump", "-t", &c.pid.to_string(), "-D", &d]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let root = c.root.display().to_string();
    let netns = format!("/proc/{}/ns/net", c.client_pid);
    // The dumped container's veth goes away with its netns, asynchronously.
    let deadline = Instant::now() + Duration::from_secs(10);
    while String::from_utf8_lossy(&c.client(&["ip", "link"]).stdout).contains("cl0") {
        assert!(Instant::now() < deadline, "the old veth stays");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ns = Ns::start_in_netns(
        &netns,
        &format!(
            "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; {CRYO} restore -D {d} -d --root {root} \
             --veth-pair eth0=cl0 2>/tmp/anchor/.cryo-err; echo $? > /tmp/anchor/.cryo-rc; exec sleep 100000"
        ),
    );
    let (rc, err) = ns.cryo_result();
    assert_eq!(rc, 0, "{err}");
    // The restored init: pid 1 of a pid namespace under the test's (a child of its pid 1).
    let kids = std::fs::read_to_string(format!("/proc/{}/task/{}/children", ns.pid1, ns.pid1)).unwrap();
    let o: i32 = kids
        .split_whitespace()
        .map(|k| k.parse().unwrap())
        .find(|k| std::fs::read_to_string(format!("/proc/{k}/comm")).is_ok_and(|c| c.trim() == "busybox"))
        .unwrap_or_else(|| panic!("no restored busybox among {kids:?}"));
    let st = std::fs::read_to_string(format!("/proc/{o}/status")).unwrap();
    assert!(
        st.lines()
            .any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1")),
        "{st}"
    );
    // Its /proc is the new pid namespace's: pid 1 is busybox.
    let out = Command::new("nsenter")
        .args([
            "-t",
            &o.to_string(),
            "-m",
            "/bin/busybox",
            "cat",
            "/proc/1/comm",
            "/data/sub/f",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "busybox\nhello\n", "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
