//! `cryo swrk FD` driven by a small RPC client of our own over a SOCK_SEQPACKET socket pair, as runc and
//! go-criu drive `criu swrk`: one rpc.proto message per datagram. The tests that dump and restore run as
//! pid 1 of a fresh PID + mount namespace: the test binary runs itself there (`CRYO_SWRK_INNER`), so the
//! restored tree (cryo's child; cryo exits after the request) is reparented to the test, and everything
//! the test started dies with the namespace.

mod common;

use common::{build_prog, tmp_dir, CRYO};
use cryo_image::rpc::{self as pb, CriuReqType as T};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use prost::Message;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `cryo swrk` and our end of its socket.
struct Swrk {
    child: Child,
    sk: OwnedFd,
}

impl Swrk {
    fn start() -> Swrk {
        Self::start_with(None)
    }

    /// With `dir` inherited by cryo as fd 900.
    fn start_with(dir: Option<&std::fs::File>) -> Swrk {
        let dfd = dir.map(|d| d.as_raw_fd());
        // Both ends close on exec: other test threads fork meanwhile, and
        // our end must not leak into cryo (it would never see us close).
        let (ours, theirs) =
            socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).unwrap();
        let fd = theirs.as_raw_fd();
        let mut cmd = Command::new(CRYO);
        cmd.args(["swrk", &fd.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let hook = move || {
            // SAFETY: scalar arguments.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 clears close-on-exec on the copy.
            if let Some(d) = dfd {
                // SAFETY: scalar arguments.
                if unsafe { libc::dup2(d, 900) } != 900 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        };
        // SAFETY: between fork and exec only fcntl and dup2 (async-signal-safe) run.
        unsafe { cmd.pre_exec(hook) };
        let child = cmd.spawn().unwrap();
        drop(theirs);
        Swrk { child, sk: ours }
    }

    fn send_raw(&self, b: &[u8]) {
        socket::send(self.sk.as_raw_fd(), b, MsgFlags::MSG_NOSIGNAL).unwrap();
    }

    fn send(&self, req: &pb::CriuReq) {
        self.send_raw(&req.encode_to_vec());
    }

    /// The next response (None: cryo closed the socket).
    fn recv(&self) -> Option<pb::CriuResp> {
        let mut buf = vec![0u8; 1 << 16];
        let n = socket::recv(self.sk.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
        if n == 0 {
            return None;
        }
        Some(pb::CriuResp::decode(&buf[..n]).expect("a criu_resp"))
    }

    /// Close our end and wait for cryo: (exit code, stderr).
    fn finish(mut self) -> (i32, String) {
        drop(self.sk);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
                return (st.code().unwrap_or(128 + 9), err);
            }
            assert!(Instant::now() < deadline, "cryo swrk did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Answer notifications with `answer(script)` until the final response of the request; returns
    /// (the scripts in order with their pids, the final response).
    fn serve_notifications(&self, answer: impl Fn(&str) -> bool) -> (Vec<(String, Option<i32>)>, pb::CriuResp) {
        let mut seen = Vec::new();
        loop {
            let r = self.recv().expect("a response");
            if r.r#type != T::Notify as i32 {
                return (seen, r);
            }
            let n = r.notify.clone().expect("notify");
            let script = n.script.clone().unwrap_or_default();
            seen.push((script.clone(), n.pid));
            self.send(&pb::CriuReq {
                r#type: T::Notify as i32,
                notify_success: Some(answer(&script)),
                ..Default::default()
            });
        }
    }
}

fn req(ty: T) -> pb::CriuReq {
    pb::CriuReq {
        r#type: ty as i32,
        ..Default::default()
    }
}

#[test]
fn version_feature_check_and_check_on_one_socket() {
    let s = Swrk::start();
    s.send(&pb::CriuReq {
        keep_open: Some(true),
        ..req(T::Version)
    });
    let r = s.recv().unwrap();
    assert!(r.success);
    assert_eq!(r.r#type, T::Version as i32);
    let v = r.version.unwrap();
    // go-criu's number: major * 10000 + minor * 100 + sublevel; runc 1.1 needs 30000, podman 4.3 31600.
    let n = v.major_number * 10000 + v.minor_number * 100 + v.sublevel.unwrap_or(0);
    assert!(n >= 31600, "{n}");
    assert!(v.name.unwrap_or_default().contains("cryo"));
    s.send(&pb::CriuReq {
        keep_open: Some(true),
        features: Some(pb::CriuFeatures {
            mem_track: Some(true),
            lazy_pages: Some(true),
            pidfd_store: Some(true),
        }),
        ..req(T::FeatureCheck)
    });
    let r = s.recv().unwrap();
    assert!(r.success && r.r#type == T::FeatureCheck as i32);
    // Memory tracking (userfaultfd async write-protection, Linux 6.7+, as
    // here); no lazy pages, no pidfd store, whatever the kernel.
    assert_eq!(
        r.features.unwrap(),
        pb::CriuFeatures {
            mem_track: Some(true),
            lazy_pages: Some(false),
            pidfd_store: Some(false)
        }
    );
    // CHECK without keep_open: the last request.
    s.send(&req(T::Check));
    let r = s.recv().unwrap();
    assert_eq!(r.r#type, T::Check as i32);
    assert!(r.success, "{:?}", r.cr_errmsg);
    assert!(s.recv().is_none(), "cryo closes after a request without keep_open");
    let (rc, err) = s.finish();
    assert_eq!(rc, 0, "{err}");

    // WAIT_PID on a pid that is not cryo's child: waitpid's errno.
    let s = Swrk::start();
    s.send(&pb::CriuReq {
        pid: Some(1),
        ..req(T::WaitPid)
    });
    let r = s.recv().unwrap();
    assert!(r.r#type == T::WaitPid as i32 && !r.success);
    assert_eq!(r.cr_errno, Some(libc::ECHILD));
    let (rc, err) = s.finish();
    assert_eq!(rc, 1, "{err}");

    // The command line agrees.
    let out = Command::new(CRYO).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("Version: 4.2\n"), "{text}");
    let st = Command::new(CRYO).arg("check").output().unwrap();
    assert!(st.status.success() && String::from_utf8_lossy(&st.stdout).contains("Looks good."));
    let f = |name: &str| {
        Command::new(CRYO)
            .args([
                "check",
                "--no-default-config",
                "--no-default-config",
                "-verbosity=0",
                "--feature",
                name,
            ])
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(f("mnt_id"), Some(0));
    // A kernel fact zdtm gates tests on (NSpid in /proc/PID/status, Linux 4.1+):
    // answered as criu answers it, though cryo refuses child pid namespaces.
    assert_eq!(f("ns_pid"), Some(0));
    // zdtm's epoll tests ask for this one.
    assert_eq!(f("kcmp_epoll"), Some(0));
    assert_eq!(f("mem_dirty_track"), Some(0));
    assert_eq!(f("no_such_feature"), Some(1));
}

/// `cryo service`: each connection is a swrk session (VERSION, then CHECK on a second connection).
#[test]
fn service_serves_each_connection() {
    let dir = tmp_dir("swrk-service");
    let addr = dir.join("criu_service.socket");
    let mut svc = Command::new(CRYO)
        .args(["service", "--address"])
        .arg(&addr)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !addr.exists() {
        assert!(Instant::now() < deadline, "the service does not listen");
        std::thread::sleep(Duration::from_millis(5));
    }
    for ty in [T::Version, T::Check] {
        let sk = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).unwrap();
        socket::connect(sk.as_raw_fd(), &socket::UnixAddr::new(&addr).unwrap()).unwrap();
        socket::send(sk.as_raw_fd(), &req(ty).encode_to_vec(), MsgFlags::MSG_NOSIGNAL).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = socket::recv(sk.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
        let r = pb::CriuResp::decode(&buf[..n]).unwrap();
        assert!(r.success && r.r#type == ty as i32, "{ty:?}: {r:?}");
    }
    // rst_sibling through the service: refused, as criu's service refuses it
    // (the restored root would be the service's child, not the client's).
    let sk = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).unwrap();
    socket::connect(sk.as_raw_fd(), &socket::UnixAddr::new(&addr).unwrap()).unwrap();
    let r = pb::CriuReq {
        opts: Some(pb::CriuOpts {
            images_dir: Some(dir.display().to_string()),
            rst_sibling: Some(true),
            ..Default::default()
        }),
        ..req(T::Restore)
    };
    socket::send(sk.as_raw_fd(), &r.encode_to_vec(), MsgFlags::MSG_NOSIGNAL).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = socket::recv(sk.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
    let r = pb::CriuResp::decode(&buf[..n]).unwrap();
    assert!(!r.success, "{r:?}");
    assert!(r.cr_errmsg.unwrap_or_default().contains("criu_opts.rst_sibling"));
    svc.kill().unwrap();
    svc.wait().unwrap();
}

/// An images directory the client does not hold itself but let cryo inherit (fd 900 in cryo): used,
/// the log goes there; the dump of a pid that does not exist fails naming it.
#[test]
fn an_inherited_images_dir_fd_is_used() {
    let dir = tmp_dir("swrk-inherited");
    let d = std::fs::File::open(&dir).unwrap();
    let s = Swrk::start_with(Some(&d));
    s.send(&pb::CriuReq {
        opts: Some(pb::CriuOpts {
            images_dir_fd: 900,
            pid: Some(i32::MAX),
            log_file: Some("inherited.log".into()),
            ..Default::default()
        }),
        ..req(T::Dump)
    });
    let r = s.recv().unwrap();
    assert!(!r.success);
    let m = r.cr_errmsg.unwrap_or_default();
    assert!(
        m.contains(&format!("pid {}", i32::MAX)) && !m.contains("images_dir_fd"),
        "{m}"
    );
    let (rc, _) = s.finish();
    assert_eq!(rc, 1);
    let log = std::fs::read_to_string(dir.join("inherited.log")).unwrap();
    assert!(log.contains("DUMP failed"), "{log}");
}

/// Each bad message: cryo answers success = false naming the problem, and exits 1 (not a panic).
#[test]
fn bad_messages_get_an_error_reply() {
    for (what, bytes, needle) in [
        ("truncated", vec![0x08, 1, 0x12, 10, 0x08], "truncated"),
        (
            "unknown field",
            vec![0x08, 10, 0x38, 1],
            "criu_req field 7 is not known",
        ),
        (
            "unknown opts field",
            vec![0x08, 1, 0x12, 5, 0x08, 3, 0xc0, 0x0c, 1],
            "criu_opts field 200",
        ),
        ("wrong wire type", vec![0x0a, 1, b'x'], "wire type"),
        ("no type", vec![0x18, 1], "required field type"),
        ("unknown request type", vec![0x08, 99], "unexpected request type"),
        ("keep_open with CHECK", vec![0x08, 3, 0x20, 1], "keep_open"),
    ] {
        let s = Swrk::start();
        s.send_raw(&bytes);
        let r = s.recv().unwrap_or_else(|| panic!("{what}: no reply"));
        assert!(!r.success, "{what}");
        let m = r.cr_errmsg.unwrap_or_default();
        assert!(m.contains(needle), "{what}: {m}");
        let (rc, err) = s.finish();
        assert_eq!(rc, 1, "{what}: {err}");
    }
    // A client that goes away without a request.
    let s = Swrk::start();
    let (rc, err) = s.finish();
    assert_eq!(rc, 1);
    assert!(err.contains("without a request"), "{err}");
}

/// Run the test function `name` again as pid 1 of a fresh PID + mount namespace.
fn in_namespace(name: &str) {
    if std::env::var_os("CRYO_SWRK_INNER").is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private"])
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("CRYO_SWRK_INNER", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} in its namespace failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "{name} did not run in its namespace:\n{text}"
    );
}

fn inner() -> bool {
    std::env::var_os("CRYO_SWRK_INNER").is_some()
}

/// tests/progs/spin started with its status file in `dir`; (pid, status file).
fn start_spin(dir: &Path) -> (Child, PathBuf) {
    let status = dir.join("spin.status");
    let out = std::fs::File::create(dir.join("spin.out")).unwrap();
    let child = Command::new(build_prog("spin"))
        .arg(&status)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(dir.join("spin.out"))
        .unwrap_or_default()
        .contains("ready")
    {
        assert!(Instant::now() < deadline, "spin did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, status)
}

/// spin's counter, asked with SIGUSR1 (it must answer: it runs, unstopped).
fn counter(pid: i32, status: &Path) -> u64 {
    let _ = std::fs::remove_file(status);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGUSR1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = std::fs::read_to_string(status).unwrap_or_default();
        if let Some(n) = s.strip_prefix("counter=").and_then(|r| r.split_whitespace().next()) {
            if s.ends_with("ok\n") {
                return n.parse().unwrap();
            }
        }
        assert!(Instant::now() < deadline, "pid {pid} does not answer SIGUSR1");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The counter of `pid` goes on (read twice, 50 ms apart).
fn runs(pid: i32, status: &Path) -> u64 {
    let a = counter(pid, status);
    std::thread::sleep(Duration::from_millis(50));
    let b = counter(pid, status);
    assert!(b > a, "pid {pid}: counter {a} then {b}");
    b
}

fn opts(dir: &std::fs::File) -> pb::CriuOpts {
    pb::CriuOpts {
        images_dir_fd: dir.as_raw_fd(),
        log_file: Some("rpc.log".into()),
        log_level: Some(4),
        ..Default::default()
    }
}

fn open_dir(p: &Path) -> std::fs::File {
    std::fs::File::open(p).unwrap()
}

fn exists(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Reap whatever exited (we are pid 1: restored trees are reparented to us).
fn reap() {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if st == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
}

/// The parent of `pid` (/proc/PID/stat).
fn ppid(pid: i32) -> i32 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    s.rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// rst_sibling (runc's and podman's restores): the restored root is the
/// client's child, not cryo's, already when post-restore names it; the
/// client waits for it. Without it the root is cryo's child.
#[test]
fn rst_sibling_makes_the_restored_root_the_clients_child() {
    in_namespace("rst_sibling_makes_the_restored_root_the_clients_child");
    if !inner() {
        return;
    }
    let dir = tmp_dir("swrk-sibling");
    let (mut child, status) = start_spin(&dir);
    let pid = child.id() as i32;
    let img = dir.join("img");
    std::fs::create_dir(&img).unwrap();
    let d = open_dir(&img);
    let me = std::process::id() as i32;
    for sibling in [false, true] {
        let s = Swrk::start();
        s.send(&pb::CriuReq {
            opts: Some(pb::CriuOpts {
                pid: Some(pid),
                ..opts(&d)
            }),
            ..req(T::Dump)
        });
        let r = s.recv().unwrap();
        assert!(r.success, "{:?}", r.cr_errmsg);
        assert_eq!(s.finish().0, 0);
        if sibling {
            // Restored by the first round: ours to reap.
            let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
            assert!(matches!(st, nix::sys::wait::WaitStatus::Signaled(..)), "{st:?}");
        } else {
            child.wait().unwrap();
        }
        let s = Swrk::start();
        let cryo = s.child.id() as i32;
        s.send(&pb::CriuReq {
            opts: Some(pb::CriuOpts {
                notify_scripts: Some(true),
                rst_sibling: Some(sibling),
                ..opts(&d)
            }),
            ..req(T::Restore)
        });
        let parent = std::cell::Cell::new(0);
        let (seen, r) = s.serve_notifications(|script| {
            if script == "post-restore" {
                parent.set(ppid(pid));
            }
            true
        });
        assert!(r.success, "{:?}", r.cr_errmsg);
        assert!(
            seen.iter().any(|(n, p)| n == "post-restore" && *p == Some(pid)),
            "{seen:?}"
        );
        let want = if sibling { me } else { cryo };
        assert_eq!(
            parent.get(),
            want,
            "rst_sibling={sibling}: the restored root's parent at post-restore (client {me}, cryo {cryo})"
        );
        assert_eq!(s.finish().0, 0);
        runs(pid, &status);
        if sibling {
            // The client's child: it reaps it.
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
            let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
            assert!(matches!(st, nix::sys::wait::WaitStatus::Signaled(..)), "{st:?}");
        }
    }
}

/// DUMP with leave_running and notifications (answered yes, in criu's order), the program goes on;
/// then a plain DUMP (the program is killed) and a RESTORE with notifications: the program runs again
/// with its pid and its counter goes on from where it was.
#[test]
fn dump_and_restore_with_notifications() {
    in_namespace("dump_and_restore_with_notifications");
    if !inner() {
        return;
    }
    let dir = tmp_dir("swrk-notify");
    let (mut child, status) = start_spin(&dir);
    let pid = child.id() as i32;
    let before = runs(pid, &status);

    let img1 = dir.join("img-running");
    std::fs::create_dir(&img1).unwrap();
    let d = open_dir(&img1);
    let s = Swrk::start();
    s.send(&pb::CriuReq {
        opts: Some(pb::CriuOpts {
            pid: Some(pid),
            leave_running: Some(true),
            notify_scripts: Some(true),
            ..opts(&d)
        }),
        ..req(T::Dump)
    });
    let (seen, r) = s.serve_notifications(|_| true);
    assert!(r.success, "{:?}", r.cr_errmsg);
    assert_eq!(r.r#type, T::Dump as i32);
    assert_eq!(r.dump.and_then(|d| d.restored), Some(false));
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["pre-dump", "query-ext-files", "post-dump"]);
    let (rc, err) = s.finish();
    assert_eq!(rc, 0, "{err}");
    assert!(img1.join("inventory.img").exists());
    assert!(std::fs::read_to_string(img1.join("rpc.log"))
        .unwrap()
        .contains("dumped pid"));
    let after = runs(pid, &status);
    assert!(after > before);

    // A plain dump: the program is killed.
    let img = dir.join("img");
    std::fs::create_dir(&img).unwrap();
    let d = open_dir(&img);
    let s = Swrk::start();
    s.send(&pb::CriuReq {
        opts: Some(pb::CriuOpts {
            pid: Some(pid),
            ..opts(&d)
        }),
        ..req(T::Dump)
    });
    let r = s.recv().unwrap();
    assert!(r.success, "{:?}", r.cr_errmsg);
    let (rc, err) = s.finish();
    assert_eq!(rc, 0, "{err}");
    let st = child.wait().unwrap();
    assert!(!st.success(), "spin was killed by the dump");

    // Restore with notifications.
    let s = Swrk::start();
    s.send(&pb::CriuReq {
        opts: Some(pb::CriuOpts {
            notify_scripts: Some(true),
            ..opts(&d)
        }),
        ..req(T::Restore)
    });
    let (seen, r) = s.serve_notifications(|_| true);
    assert!(r.success, "{:?}", r.cr_errmsg);
    assert_eq!(r.restore.map(|x| x.pid), Some(pid));
    assert_eq!(
        seen,
        [
            ("pre-restore".to_string(), None),
            ("post-restore".to_string(), Some(pid)),
            ("pre-resume".to_string(), None),
            ("post-resume".to_string(), None),
        ]
    );
    let (rc, err) = s.finish();
    assert_eq!(rc, 0, "{err}");
    let c = runs(pid, &status);
    assert!(c > after, "restored counter {c} <= {after} (before the dump)");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while exists(pid) {
        reap();
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A client that says no: to post-dump (the program is resumed as it was, no image set is left), to
/// pre-dump (nothing is touched), to post-restore (the restored tree is killed before it runs). An
/// option cryo cannot honour is refused by name before anything happens.
#[test]
fn refused_notifications_and_options_abort_cleanly() {
    in_namespace("refused_notifications_and_options_abort_cleanly");
    if !inner() {
        return;
    }
    let dir = tmp_dir("swrk-refuse");
    let (mut child, status) = start_spin(&dir);
    let pid = child.id() as i32;
    let img = dir.join("img");
    std::fs::create_dir(&img).unwrap();
    let d = open_dir(&img);
    for no in ["pre-dump", "post-dump"] {
        let s = Swrk::start();
        s.send(&pb::CriuReq {
            opts: Some(pb::CriuOpts {
                pid: Some(pid),
                notify_scripts: Some(true),
                ..opts(&d)
            }),
            ..req(T::Dump)
        });
        let (seen, r) = s.serve_notifications(|script| script != no);
        assert_eq!(seen.last().map(|x| x.0.as_str()), Some(no));
        assert!(!r.success);
        let m = r.cr_errmsg.unwrap_or_default();
        assert!(m.contains(no), "{m}");
        let (rc, _) = s.finish();
        assert_eq!(rc, 1);
        assert!(!img.join("inventory.img").exists(), "{no}: an image set is left");
        assert!(
            !std::fs::read_dir(&img)
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".img")),
            "{no}: images are left"
        );
        // Resumed as it was: not traced, not stopped, counting.
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(st.contains("TracerPid:\t0\n"), "{st}");
        runs(pid, &status);
    }

    // Refused options, named by their rpc.proto field; the program is untouched.
    for (o, field) in [
        (
            pb::CriuOpts {
                lazy_pages: Some(true),
                ..opts(&d)
            },
            "criu_opts.lazy_pages",
        ),
        (
            pb::CriuOpts {
                cgroup_props: Some("x".into()),
                ..opts(&d)
            },
            "criu_opts.cgroup_props ",
        ),
        (
            pb::CriuOpts {
                external: vec!["dev[x]:y".into()],
                ..opts(&d)
            },
            "criu_opts.external",
        ),
    ] {
        let s = Swrk::start();
        s.send(&pb::CriuReq {
            opts: Some(pb::CriuOpts { pid: Some(pid), ..o }),
            ..req(T::Dump)
        });
        let r = s.recv().unwrap();
        assert!(!r.success);
        let m = r.cr_errmsg.unwrap_or_default();
        assert!(m.contains(field), "{field}: {m}");
        assert_eq!(r.cr_errno, Some(libc::EBADRQC));
        s.finish();
        runs(pid, &status);
    }
    // PRE_DUMP: the program's pages, and it goes on running.
    let pre = dir.join("pre");
    std::fs::create_dir(&pre).unwrap();
    let pd = open_dir(&pre);
    let s = Swrk::start();
    s.send(&pb::CriuReq {
        opts: Some(pb::CriuOpts {
            pid: Some(pid),
            track_mem: Some(true),
            ..opts(&pd)
        }),
        ..req(T::PreDump)
    });
    let r = s.recv().unwrap();
    assert!(r.success && r.r#type == T::PreDump as i32, "{:?}", r.cr_errmsg);
    s.finish();
    assert!(pre.join(format!("pagemap-{pid}.img")).is_file() && pre.join("inventory.img").is_file());
    runs(pid, &status);

    // Dump for real (incremental: its parent is the pre-dump), then a
    // restore the client stops at post-restore.
    let s = Swrk::start();
    s.send(&pb::CriuReq {
        opts: Some(pb::CriuOpts {
            pid: Some(pid),
            track_mem: Some(true),
            parent_img: Some("../pre".into()),
            ..opts(&d)
        }),
        ..req(T::Dump)
    });
    assert!(s.recv().unwrap().success);
    s.finish();
    child.wait().unwrap();
    assert!(!exists(pid));
    for no in ["post-restore", "pre-resume"] {
        let s = Swrk::start();
        s.send(&pb::CriuReq {
            opts: Some(pb::CriuOpts {
                notify_scripts: Some(true),
                ..opts(&d)
            }),
            ..req(T::Restore)
        });
        let (seen, r) = s.serve_notifications(|script| script != no);
        assert_eq!(seen.last().map(|x| x.0.as_str()), Some(no));
        assert!(!r.success);
        assert_eq!(r.restore.map(|x| x.pid), Some(-1));
        let m = r.cr_errmsg.unwrap_or_default();
        assert!(m.contains(no), "{m}");
        let (rc, _) = s.finish();
        assert_eq!(rc, 1);
        // Nothing restored is left (the killed root may still be a zombie for a moment).
        let deadline = Instant::now() + Duration::from_secs(10);
        while exists(pid) {
            reap();
            assert!(Instant::now() < deadline, "{no}: pid {pid} still runs");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// go-criu, the library runc and podman use, as the client (tests/gocriu/main.go, built against
/// Debian's golang-github-checkpoint-restore-go-criu-dev in GOPATH mode): VERSION, FEATURE_CHECK,
/// DUMP with leave_running and notifications, a post-dump its Notify refuses (go-criu then closes
/// the socket), a plain DUMP and a RESTORE with notifications after which the program runs on.
/// go and go-criu must be installed (.ci/run installs them).
#[test]
fn go_criu_client_dumps_and_restores() {
    let src = Path::new("/usr/share/gocode/src");
    let gocriu = src.join("github.com/checkpoint-restore/go-criu");
    let go_ok = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        go_ok && gocriu.join("main.go").exists() && src.join("google.golang.org/protobuf").exists(),
        "go and go-criu are needed (apt packages golang-go and golang-github-checkpoint-restore-go-criu-dev; .ci/run installs them)"
    );
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gocriu");
    let gopath = tmp.join("gopath");
    let _ = std::fs::remove_dir_all(&gopath);
    let link = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(from, to).unwrap();
    };
    // The module path is github.com/checkpoint-restore/go-criu/v5.
    link(&gocriu, &gopath.join("src/github.com/checkpoint-restore/go-criu/v5"));
    link(
        &src.join("google.golang.org/protobuf"),
        &gopath.join("src/google.golang.org/protobuf"),
    );
    let bin = tmp.join("gocriu-client");
    let st = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gocriu"))
        .env("GO111MODULE", "off")
        .env("GOPATH", &gopath)
        .env("GOCACHE", tmp.join("cache"))
        .env("GOFLAGS", "")
        .status()
        .unwrap();
    assert!(st.success(), "go build of tests/gocriu failed");
    let dir = tmp_dir("swrk-gocriu");
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private"])
        .arg(&bin)
        .arg(CRYO)
        .arg(build_prog("spin"))
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(dir.join("gocriu.log")).unwrap_or_default();
    assert!(out.status.success() && text.contains("\nok "), "{text}\n{log}");
}
