//! `cryo swrk FD`: CRIU's RPC interface, as runc, podman (through go-criu)
//! and libcriu drive `criu swrk`.
//!
//! FD is one end of a SOCK_SEQPACKET socket pair; the client holds the other.
//! Every datagram is one protobuf message of proto/rpc/rpc.proto: `criu_req`
//! in, `criu_resp` out. As in CRIU, one request is served and the process
//! exits, except that VERSION and FEATURE_CHECK may ask to keep the socket
//! open (`keep_open`) for the next request.
//!
//! * **VERSION**: CRIU 4.2 (the image format and RPC cryo speaks: runc 1.1
//!   wants 3.0 and up, podman 4.3 wants 3.16 for pods), `name` says cryo.
//! * **CHECK**, **FEATURE_CHECK**: cryo's answers for this kernel (`cryo check`).
//! * **DUMP**, **RESTORE**: the engine, with the options of `criu_opts` mapped
//!   as `cryo dump`/`cryo restore` map criu's command line: an option cryo
//!   cannot honour is answered with `success = false` and a `cr_errmsg`
//!   naming the field, before anything is touched; a field cryo does not know
//!   (a newer rpc.proto) is refused the same way, never skipped.
//! * **WAIT_PID**: waitpid on one of cryo's children.
//! * **PRE_DUMP** / SINGLE_PRE_DUMP: `cryo pre-dump` (criu_opts.parent_img, track_mem).
//! * page server and cpuinfo requests: refused (not done yet).
//!
//! Images and work directories are the client's fds, opened as CRIU opens
//! them: `/proc/PEER/fd/N`, PEER from SO_PEERCRED.
//!
//! **Notifications** (`notify_scripts`): at the points where criu runs its
//! action scripts, a `criu_resp` of type NOTIFY names the script and cryo waits
//! for the client's `criu_req` NOTIFY answer; `notify_success = false` (or
//! any other answer) aborts. Dump: `pre-dump` (nothing frozen yet),
//! `query-ext-files` (frozen; external resources the client names are
//! refused), `post-dump` (the image set is complete, the tree still frozen:
//! on "no" it is resumed as it was and the images removed). Restore:
//! `pre-restore`, `post-restore` with the root's pid and `pre-resume` (every
//! task restored and waiting: on "no" the tree is killed, nothing is left),
//! `post-resume` (the tree runs; a "no" is logged, as criu logs it).
//! `network-lock`/`network-unlock` and `setup-namespaces` (criu sends them for
//! trees with namespaces of their own) are not sent yet. cryo aborts on a "no"
//! to `pre-resume` where criu only logs it: the tree has not run yet, so the
//! abort is clean.
//!
//! `rst_sibling`: the restored root is the client's child (CLONE_PARENT), as
//! runc and podman want their container's init. `config_file` (runc's
//! runc.conf or `org.criu.config`) overrides the request, as in criu.

use super::{check, criu};
use anyhow::{anyhow, Context};
use cryo_engine::{dump, restore};
use cryo_image::rpc::{self as pb, CriuReqType as T};
use nix::sys::socket::{self, MsgFlags};
use prost::Message;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `cryo swrk FD`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The SOCK_SEQPACKET socket inherited from the client.
    #[arg(value_name = "FD")]
    pub fd: RawFd,
    /// Started by `cryo service` for one connection: rst_sibling and
    /// inherit_fd are refused (the client is not cryo's parent).
    #[arg(long, hide = true)]
    pub service: bool,
}

/// The version reported to VERSION requests and by `cryo --version`: the
/// CRIU release whose image format and rpc.proto cryo follows.
pub const CRIU_MAJOR: i32 = 4;
pub const CRIU_MINOR: i32 = 2;

/// EBADRQC, what criu answers to options it cannot set up.
const EBADRQC: i32 = libc::EBADRQC;

/// Serve the client on `a.fd`; returns the exit code.
pub fn run(a: &Args) -> anyhow::Result<i32> {
    let conn = Conn::open(a.fd)?;
    let conn = Arc::new(conn);
    let mut served = 0;
    loop {
        let Some(buf) = conn.recv()? else {
            if served == 0 {
                return Err(anyhow!("the client closed the socket without a request"));
            }
            return Ok(0);
        };
        served += 1;
        let req = match parse_req(&buf) {
            Ok(r) => r,
            Err(msg) => {
                conn.send(&error_resp(T::Empty, &msg, Some(EBADRQC)))?;
                return Err(anyhow!("bad request: {msg}"));
            }
        };
        let ty = T::try_from(req.req.r#type).unwrap_or(T::Empty);
        let keep_open = req.req.keep_open.unwrap_or(false);
        if keep_open && !matches!(ty, T::Version | T::FeatureCheck) {
            let msg = format!(
                "keep_open is not supported with {} requests (as in criu: only VERSION and FEATURE_CHECK)",
                ty.as_str_name()
            );
            conn.send(&error_resp(ty, &msg, Some(EBADRQC)))?;
            return Err(anyhow!("{msg}"));
        }
        if a.service {
            let o = req.req.opts.clone().unwrap_or_default();
            let bad = [
                ("rst_sibling", o.rst_sibling == Some(true)),
                ("inherit_fd", !o.inherit_fd.is_empty()),
            ];
            if let Some((f, _)) = bad.iter().find(|(_, on)| *on) {
                let msg = format!(
                    "criu_opts.{f} is not allowed through cryo service (as in criu's service): the client is not \
                     cryo's parent; use cryo swrk"
                );
                conn.send(&error_resp(ty, &msg, Some(EBADRQC)))?;
                return Err(anyhow!("{msg}"));
            }
        }
        let ok = serve(&conn, ty, req)?;
        if !keep_open {
            return Ok(if ok { 0 } else { 1 });
        }
    }
}

/// The socket to the client and the client's pid.
struct Conn {
    sk: OwnedFd,
    peer: i32,
}

impl Conn {
    fn open(fd: RawFd) -> anyhow::Result<Conn> {
        // Our own fd N as an owned fd (a duplicate), without unsafe.
        let me = nix::unistd::getpid().as_raw();
        let sk = cryo_engine::sys::pidfd_open(me)
            .and_then(|p| cryo_engine::sys::pidfd_getfd(p.as_raw_fd(), fd))
            .with_context(|| format!("fd {fd}: not an open fd"))?;
        let ty =
            socket::getsockopt(&sk, socket::sockopt::SockType).with_context(|| format!("fd {fd}: not a socket"))?;
        if ty != socket::SockType::SeqPacket {
            return Err(anyhow!("fd {fd}: a {ty:?} socket, not SOCK_SEQPACKET"));
        }
        let cred = socket::getsockopt(&sk, socket::sockopt::PeerCredentials)
            .with_context(|| format!("fd {fd}: SO_PEERCRED"))?;
        let _ = nix::unistd::close(fd);
        Ok(Conn { sk, peer: cred.pid() })
    }

    /// One datagram; None when the client closed its end.
    fn recv(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let fd = self.sk.as_raw_fd();
        let len = loop {
            match socket::recv(fd, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r.context("reading a request")?,
            }
        };
        let mut buf = vec![0u8; len];
        let n = loop {
            match socket::recv(fd, &mut buf, MsgFlags::MSG_TRUNC) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r.context("reading a request")?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some(buf))
    }

    fn send(&self, resp: &pb::CriuResp) -> anyhow::Result<()> {
        let buf = resp.encode_to_vec();
        socket::send(self.sk.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL).context("sending a response")?;
        Ok(())
    }

    /// Send notification `script` and wait for the client's answer; the
    /// answer's request when the client said yes.
    fn notify(&self, script: &str, pid: Option<i32>) -> Result<pb::CriuReq, String> {
        let resp = pb::CriuResp {
            r#type: T::Notify as i32,
            success: true,
            notify: Some(pb::CriuNotify {
                script: Some(script.to_string()),
                pid,
            }),
            ..Default::default()
        };
        self.send(&resp).map_err(|e| format!("{script} notification: {e:#}"))?;
        let buf = match self.recv() {
            Ok(Some(b)) => b,
            Ok(None) => return Err(format!("{script} notification: the client closed the socket")),
            Err(e) => return Err(format!("{script} notification: {e:#}")),
        };
        let req = parse_req(&buf).map_err(|e| format!("{script} notification: bad answer: {e}"))?;
        if req.req.r#type != T::Notify as i32 {
            return Err(format!(
                "{script} notification: the client answered with a {} request",
                T::try_from(req.req.r#type)
                    .map(|t| t.as_str_name())
                    .unwrap_or("unknown")
            ));
        }
        if req.req.notify_success != Some(true) {
            return Err(format!("the client answered no to the {script} notification"));
        }
        Ok(req.req)
    }
}

/// A decoded request and the `criu_opts` fields it carries (name, wire
/// value: the varint of a scalar, 1 for a string or a message).
struct Req {
    req: pb::CriuReq,
    opts_set: Vec<(&'static str, u64)>,
}

/// Decode a `criu_req` strictly: a truncated message, a field cryo does not
/// know (at any depth) or a field of the wrong wire type is an error naming
/// it; protobuf's usual rule (skip unknown fields) would ignore options.
fn parse_req(buf: &[u8]) -> Result<Req, String> {
    let top = scan(buf, "criu_req")?;
    if !top.iter().any(|(n, _, _)| *n == "type") {
        return Err("criu_req without its required field type".into());
    }
    let mut opts_set = Vec::new();
    if let Some((_, _, Some(opts))) = top.iter().rev().find(|(n, _, _)| *n == "opts") {
        for (n, v, _) in scan(opts, "criu_opts")? {
            opts_set.push((n, v));
        }
    }
    let req = pb::CriuReq::decode(buf).map_err(|e| format!("criu_req: {e}"))?;
    Ok(Req { req, opts_set })
}

fn fields_of(msg: &str) -> &'static [(u32, u8, &'static str, &'static str)] {
    pb::FIELDS
        .iter()
        .find(|(m, _)| *m == msg)
        .map(|(_, f)| *f)
        .unwrap_or(&[])
}

/// The fields of one message on the wire: (name, varint value or 1, the
/// bytes of a nested message); nested messages are checked too.
type Scanned<'a> = Vec<(&'static str, u64, Option<&'a [u8]>)>;

fn scan<'a>(mut b: &'a [u8], msg: &str) -> Result<Scanned<'a>, String> {
    fn varint(b: &mut &[u8], what: &str) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some((&c, rest)) = b.split_first() else {
                return Err(format!("{what}: truncated"));
            };
            *b = rest;
            v |= u64::from(c & 0x7f) << (7 * i);
            if c & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("{what}: bad varint"))
    }
    let known = fields_of(msg);
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b, msg)?;
        let (num, wt) = ((key >> 3) as u32, (key & 7) as u8);
        let Some(&(_, want, name, sub)) = known.iter().find(|f| f.0 == num) else {
            return Err(format!(
                "{msg} field {num} is not known to cryo (CRIU 4.2's rpc.proto): refused rather than ignored"
            ));
        };
        if wt != want {
            return Err(format!(
                "{msg}.{name} (field {num}) has wire type {wt}, rpc.proto says {want}"
            ));
        }
        let what = format!("{msg}.{name}");
        match wt {
            0 => {
                let v = varint(&mut b, &what)?;
                out.push((name, v, None));
            }
            1 | 5 => {
                let n = if wt == 1 { 8 } else { 4 };
                if b.len() < n {
                    return Err(format!("{what}: truncated"));
                }
                b = &b[n..];
                out.push((name, 1, None));
            }
            2 => {
                let n = varint(&mut b, &what)? as usize;
                if b.len() < n {
                    return Err(format!("{what}: truncated ({n} bytes announced, {} left)", b.len()));
                }
                let (body, rest) = b.split_at(n);
                b = rest;
                if !sub.is_empty() {
                    scan(body, sub)?;
                    out.push((name, 1, Some(body)));
                } else {
                    if std::str::from_utf8(body).is_err() {
                        return Err(format!("{what}: not UTF-8"));
                    }
                    out.push((name, 1, None));
                }
            }
            _ => return Err(format!("{what}: wire type {wt} is not used by rpc.proto")),
        }
    }
    Ok(out)
}

fn error_resp(ty: T, msg: &str, errno: Option<i32>) -> pb::CriuResp {
    pb::CriuResp {
        r#type: ty as i32,
        success: false,
        cr_errmsg: Some(msg.to_string()),
        cr_errno: errno,
        ..Default::default()
    }
}

/// Serve one request; Ok(success).
fn serve(conn: &Arc<Conn>, ty: T, req: Req) -> anyhow::Result<bool> {
    let resp = match ty {
        T::Version => pb::CriuResp {
            r#type: ty as i32,
            success: true,
            version: Some(pb::CriuVersion {
                major_number: CRIU_MAJOR,
                minor_number: CRIU_MINOR,
                gitid: None,
                sublevel: None,
                extra: None,
                name: Some(format!("cryo {} (CRIU 4.2 images and RPC)", env!("CARGO_PKG_VERSION"))),
            }),
            ..Default::default()
        },
        T::Check => {
            let problems = check::problems();
            pb::CriuResp {
                r#type: ty as i32,
                success: problems.is_empty(),
                cr_errmsg: (!problems.is_empty()).then(|| problems.join("; ")),
                ..Default::default()
            }
        }
        T::FeatureCheck => feature_check(&req.req),
        T::WaitPid => wait_pid(req.req.pid.unwrap_or(0) as i32),
        T::PageServer | T::PageServerChld => error_resp(
            ty,
            "the page server is not supported by cryo: it reads and writes image directories only",
            Some(libc::EOPNOTSUPP),
        ),
        T::CpuinfoDump | T::CpuinfoCheck => error_resp(
            ty,
            "cpuinfo dump/check is not supported by cryo (restore checks the xsave layout it needs)",
            Some(libc::EOPNOTSUPP),
        ),
        T::Dump | T::PreDump | T::SinglePreDump => return do_dump(conn, req, ty),
        T::Restore => return do_restore(conn, req),
        T::Empty | T::Notify => error_resp(
            T::Empty,
            &format!(
                "unexpected request type {} (field type = {})",
                ty.as_str_name(),
                req.req.r#type
            ),
            Some(EBADRQC),
        ),
    };
    let ok = resp.success;
    conn.send(&resp)?;
    Ok(ok)
}

fn feature_check(req: &pb::CriuReq) -> pb::CriuResp {
    let asked = req.features.unwrap_or_default();
    let f = |on: Option<bool>, name: &str| on.map(|on| on && check::feature(name).is_ok());
    pb::CriuResp {
        r#type: T::FeatureCheck as i32,
        success: true,
        features: Some(pb::CriuFeatures {
            mem_track: f(asked.mem_track, "mem_dirty_track").or(Some(false)),
            // `cryo restore --lazy-pages` works, but not over RPC yet (refused there).
            lazy_pages: asked.lazy_pages.map(|_| false).or(Some(false)),
            pidfd_store: f(asked.pidfd_store, "pidfd_store").or(Some(false)),
        }),
        ..Default::default()
    }
}

fn wait_pid(pid: i32) -> pb::CriuResp {
    use nix::sys::wait::{waitpid, WaitStatus};
    let r = waitpid(nix::unistd::Pid::from_raw(pid), None);
    let status = match r {
        Ok(WaitStatus::Exited(_, code)) => Ok((code & 0xff) << 8),
        Ok(WaitStatus::Signaled(_, sig, core)) => Ok(sig as i32 | if core { 0x80 } else { 0 }),
        Ok(other) => Err((libc::EINVAL, format!("waitpid({pid}): {other:?}"))),
        Err(e) => Err((e as i32, format!("waitpid({pid}): {e}"))),
    };
    match status {
        Ok(st) => pb::CriuResp {
            r#type: T::WaitPid as i32,
            success: true,
            status: Some(st),
            ..Default::default()
        },
        Err((errno, msg)) => error_resp(T::WaitPid, &msg, Some(errno)),
    }
}

/// Where a DUMP/RESTORE reads and writes, and its log.
struct Setup {
    dir: PathBuf,
    /// criu's work directory (work_dir_fd; the images directory without it).
    work: PathBuf,
    log: Log,
}

/// The log file of a request (criu's `log_file` in the work directory,
/// criu.log by default, or standard error with `log_to_stderr`).
#[derive(Clone)]
struct Log(Option<Arc<Mutex<std::fs::File>>>);

impl Log {
    fn line(&self, msg: &str) {
        match &self.0 {
            Some(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = writeln!(f, "{msg}");
                }
            }
            None => eprintln!("{msg}"),
        }
    }
}

/// The client's fd N as a path of ours (the directory it names, checked to
/// be the same inode as the fd): the client's own fd, as criu opens it, or,
/// when the client has no fd N, one cryo inherited.
fn client_dir(peer: i32, fd: i32, what: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::MetadataExt;
    let mut link = format!("/proc/{peer}/fd/{fd}");
    let st = match std::fs::metadata(&link) {
        Ok(st) => st,
        // Not the client's: an fd the client let cryo inherit.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            link = format!("/proc/self/fd/{fd}");
            std::fs::metadata(&link)
                .map_err(|_| format!("{what} {fd}: neither pid {peer} nor cryo has it open: {e}"))?
        }
        Err(e) => return Err(format!("{what} {fd} of pid {peer}: {e}")),
    };
    if !st.is_dir() {
        return Err(format!("{what} {fd} of pid {peer} is not a directory"));
    }
    let path = std::fs::read_link(&link).map_err(|e| format!("{link}: {e}"))?;
    match std::fs::metadata(&path) {
        Ok(p) if p.dev() == st.dev() && p.ino() == st.ino() => Ok(path),
        _ => Err(format!(
            "{what} {fd} of pid {peer} ({}) is not reachable by that path from cryo (another mount namespace, or removed)",
            path.display()
        )),
    }
}

fn setup(conn: &Conn, o: &pb::CriuOpts, ty: T) -> Result<Setup, String> {
    let dir = if o.images_dir_fd != -1 {
        client_dir(conn.peer, o.images_dir_fd, "images_dir_fd")?
    } else if let Some(d) = &o.images_dir {
        std::path::absolute(d).map_err(|e| format!("images_dir {d}: {e}"))?
    } else {
        return Err("neither images_dir_fd nor images_dir was passed".into());
    };
    let work = match o.work_dir_fd {
        Some(fd) => client_dir(conn.peer, fd, "work_dir_fd")?,
        None => dir.clone(),
    };
    let log = if o.log_to_stderr == Some(true) && o.log_file.is_none() {
        Log(None)
    } else {
        // A config file's log-file wins (as in criu); a bad file is refused later.
        let conf_log = o
            .config_file
            .as_ref()
            .map(std::path::Path::new)
            .filter(|p| p.exists())
            .and_then(|p| criu::ConfigFile::read(p).ok())
            .and_then(|c| c.log_file);
        let name = conf_log.or(o.log_file.clone()).unwrap_or_else(|| "criu.log".into());
        if name.contains('/') {
            return Err(format!(
                "log_file {name:?}: no subdirectories are allowed (use work_dir_fd)"
            ));
        }
        let p = work.join(&name);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| format!("log file {}: {e}", p.display()))?;
        Log(Some(Arc::new(Mutex::new(f))))
    };
    log.line(&format!(
        "cryo swrk: {} request from pid {}, images {}",
        ty.as_str_name(),
        conn.peer,
        dir.display()
    ));
    Ok(Setup { dir, work, log })
}

/// The criu_opts fields by what cryo does with them. Every field of
/// rpc.proto is listed once (a unit test checks): `Honoured` fields do what
/// they do in criu; `Accepted` ones change nothing in cryo's design or are
/// honoured by the object's own code, as on the command line (criu.rs);
/// `Common` ones are decided by [`criu::Common::refused`] from their values;
/// `Refused` ones are refused when set to anything but false/0;
/// `PtsMaster` (orphan_pts_master: hand the master of a pty whose master
/// was outside the tree to the client) does nothing on a dump (as in criu;
/// runc always sets it) and is refused on a restore of images holding ttys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Honoured,
    Accepted,
    Common,
    Refused(&'static str),
    PtsMaster,
}

const OPTS: &[(&str, Class)] = {
    use Class::*;
    &[
        ("images_dir_fd", Honoured),
        ("images_dir", Honoured),
        ("pid", Honoured),
        ("leave_running", Honoured),
        ("ext_unix_sk", Honoured),
        ("tcp_established", Honoured),
        ("evasive_devices", Accepted),
        ("shell_job", Honoured),
        ("file_locks", Honoured),
        ("log_level", Honoured),
        ("log_file", Honoured),
        ("ps", Common),
        ("notify_scripts", Honoured),
        ("root", Common),
        ("parent_img", Common),
        ("track_mem", Common),
        ("auto_dedup", Common),
        ("work_dir_fd", Honoured),
        ("link_remap", Honoured),
        ("veths", Common),
        ("cpu_cap", Accepted),
        ("force_irmap", Accepted),
        ("exec_cmd", Common),
        ("ext_mnt", Common),
        ("manage_cgroups", Honoured),
        ("cg_root", Honoured),
        ("rst_sibling", Honoured),
        ("inherit_fd", Common),
        (
            "auto_ext_mnt",
            Refused("cryo does not handle mount or other namespaces yet"),
        ),
        ("ext_sharing", Common),
        ("ext_masters", Common),
        ("skip_mnt", Common),
        ("enable_fs", Common),
        ("unix_sk_ino", Accepted),
        ("manage_cgroups_mode", Honoured),
        ("ghost_limit", Honoured),
        ("irmap_scan_paths", Accepted),
        ("external", Common),
        ("empty_ns", Common),
        ("join_ns", Common),
        ("cgroup_props", Common),
        ("cgroup_props_file", Common),
        ("cgroup_dump_controller", Common),
        ("freeze_cgroup", Honoured),
        ("timeout", Honoured),
        ("tcp_skip_in_flight", Honoured),
        ("weak_sysctls", Accepted),
        ("lazy_pages", Common),
        ("status_fd", Common),
        ("orphan_pts_master", PtsMaster),
        ("config_file", Common),
        ("tcp_close", Honoured),
        ("lsm_profile", Common),
        ("tls_cacert", Common),
        ("tls_cacrl", Common),
        ("tls_cert", Common),
        ("tls_key", Common),
        ("tls", Common),
        ("tls_no_cn_verify", Common),
        ("cgroup_yard", Honoured),
        ("pre_dump_mode", Accepted),
        (
            "pidfd_store_sk",
            Refused("cryo keeps no pidfd store (it serves pre-dumps, which cryo does not do)"),
        ),
        ("lsm_mount_context", Common),
        ("network_lock", Honoured),
        ("mntns_compat_mode", Common),
        ("skip_file_rwx_check", Accepted),
        ("unprivileged", Common),
        (
            "leave_stopped",
            Refused("a dumped tree is killed or left running, a restored one runs"),
        ),
        ("display_stats", Accepted),
        ("log_to_stderr", Honoured),
    ]
};

/// freeze_cgroup names a cgroup already frozen (`runc pause`): cryo freezes
/// with ptrace, which a task in a frozen cgroup never answers.
fn frozen_cgroup(path: &str) -> Option<String> {
    let p = std::path::Path::new(path);
    let v1 = std::fs::read_to_string(p.join("freezer.state")).ok();
    let v2 = std::fs::read_to_string(p.join("cgroup.freeze")).ok();
    let frozen = v1.as_deref().is_some_and(|s| s.trim() != "THAWED") || v2.as_deref().is_some_and(|s| s.trim() == "1");
    frozen.then(|| {
        format!(
            "criu_opts.freeze_cgroup {path}: the cgroup is frozen (a paused container): cryo freezes the tree with \
             ptrace, which frozen tasks do not answer; thaw it (runc resume) first"
        )
    })
}

/// The request's config file (criu_opts.config_file), if it exists: criu
/// skips one that does not (runc always names /etc/criu/runc.conf).
fn config_file(req: &Req) -> Result<Option<criu::ConfigFile>, String> {
    let Some(p) = req.req.opts.as_ref().and_then(|o| o.config_file.as_ref()) else {
        return Ok(None);
    };
    let p = std::path::Path::new(p);
    if !p.exists() {
        return Ok(None);
    }
    criu::ConfigFile::read(p)
        .map(Some)
        .map_err(|e| format!("criu_opts.config_file: {e}"))
}

/// The first option of the request cryo does not honour, as "field: why".
fn refused(req: &Req, images: Option<&std::path::Path>) -> Option<String> {
    let conf = match config_file(req) {
        Ok(c) => c,
        Err(e) => return Some(e),
    };
    if let Some(r) = conf.as_ref().and_then(|c| c.common.refused()) {
        let path = req
            .req
            .opts
            .as_ref()
            .and_then(|o| o.config_file.clone())
            .unwrap_or_default();
        return Some(format!("criu_opts.config_file {path}: {r}"));
    }
    refused_rpc(req, images, conf.as_ref())
}

/// The request's options as criu's command line would hold them, with the
/// config file's on top (criu: the file overrides the request).
fn common(req: &Req, conf: Option<&criu::ConfigFile>) -> criu::Common {
    let o = req.req.opts.clone().unwrap_or_default();
    let cg_mode = o
        .manage_cgroups_mode
        .map(|m| {
            pb::CriuCgMode::try_from(m)
                .map(|m| m.as_str_name().to_lowercase())
                .unwrap_or_else(|_| format!("mode {m}"))
        })
        .or(o
            .manage_cgroups
            .map(|on| if on { "soft" } else { "ignore" }.to_string()));
    let mut c = criu::Common {
        manage_cgroups: cg_mode,
        cgroup_root: cg_roots(&o),
        cgroup_yard: o.cgroup_yard.clone(),
        cgroup_props: o.cgroup_props.clone(),
        cgroup_props_file: o.cgroup_props_file.clone(),
        cgroup_dump_controller: o.cgroup_dump_controller.clone(),
        freeze_cgroup: o.freeze_cgroup.clone(),
        root: o.root.clone(),
        join_ns: o.join_ns.iter().map(|j| format!("{}:{}", j.ns, j.ns_file)).collect(),
        empty_ns: o
            .empty_ns
            .filter(|&m| m != 0)
            .map(|m| {
                if m == libc::CLONE_NEWNET as u32 {
                    "net".to_string()
                } else {
                    format!("{m:#x}")
                }
            })
            .into_iter()
            .collect(),
        external: o.external.clone(),
        ext_mount_map: o.ext_mnt.iter().map(|m| format!("{}:{}", m.key, m.val)).collect(),
        skip_mnt: o.skip_mnt.clone(),
        enable_fs: o.enable_fs.clone(),
        enable_external_sharing: o.ext_sharing == Some(true),
        enable_external_masters: o.ext_masters == Some(true),
        mntns_compat_mode: o.mntns_compat_mode == Some(true),
        inherit_fd: o.inherit_fd.iter().map(|i| format!("fd[{}]:{}", i.fd, i.key)).collect(),
        veth_pair: o.veths.iter().map(|v| format!("{}={}", v.if_in, v.if_out)).collect(),
        exec_cmd: !o.exec_cmd.is_empty(),
        status_fd: o.status_fd,
        lsm_profile: o.lsm_profile.clone(),
        lsm_mount_context: o.lsm_mount_context.clone(),
        page_server: o.ps.is_some(),
        prev_images_dir: o.parent_img.clone(),
        track_mem: o.track_mem == Some(true),
        auto_dedup: o.auto_dedup == Some(true),
        lazy_pages: o.lazy_pages == Some(true),
        tls: o.tls == Some(true),
        tls_cacert: o.tls_cacert.clone(),
        tls_cacrl: o.tls_cacrl.clone(),
        tls_cert: o.tls_cert.clone(),
        tls_key: o.tls_key.clone(),
        tls_no_cn_verify: o.tls_no_cn_verify == Some(true),
        unprivileged: o.unprivileged == Some(true),
        tcp_established: o.tcp_established == Some(true),
        tcp_close: o.tcp_close == Some(true),
        skip_in_flight: o.tcp_skip_in_flight == Some(true),
        link_remap: o.link_remap == Some(true),
        ext_unix_sk: if o.ext_unix_sk == Some(true) {
            vec![String::new()]
        } else {
            vec![]
        },
        ..Default::default()
    };
    if let Some(f) = conf.map(|f| &f.common) {
        macro_rules! or {
            ($($x:ident),*) => { $( if f.$x.is_some() { c.$x = f.$x.clone(); } )* };
        }
        macro_rules! ext {
            ($($x:ident),*) => { $( c.$x.extend(f.$x.iter().cloned()); )* };
        }
        macro_rules! on {
            ($($x:ident),*) => { $( c.$x |= f.$x; )* };
        }
        or!(
            manage_cgroups,
            root,
            freeze_cgroup,
            cgroup_yard,
            cgroup_props,
            cgroup_props_file,
            lsm_profile,
            lsm_mount_context,
            network_lock,
            status_fd,
            timeout
        );
        ext!(
            external,
            ext_mount_map,
            veth_pair,
            inherit_fd,
            empty_ns,
            join_ns,
            skip_mnt,
            enable_fs,
            cgroup_root,
            ext_unix_sk
        );
        on!(
            tcp_established,
            tcp_close,
            skip_in_flight,
            link_remap,
            auto_dedup,
            lazy_pages,
            track_mem
        );
        if f.no_tcp_established {
            c.tcp_established = false;
        }
    }
    c
}

fn refused_rpc(req: &Req, images: Option<&std::path::Path>, conf: Option<&criu::ConfigFile>) -> Option<String> {
    let o = req.req.opts.clone().unwrap_or_default();
    for (name, v) in &req.opts_set {
        match OPTS.iter().find(|(n, _)| n == name).map(|(_, c)| *c) {
            Some(Class::Refused(why)) if *v != 0 => {
                return Some(format!("criu_opts.{name} is not supported by cryo: {why}"));
            }
            Some(Class::PtsMaster) if *v != 0 => {
                let ttys = images
                    .and_then(|d| std::fs::metadata(d.join("tty-info.img")).ok())
                    .is_some_and(|m| m.len() > 8);
                if ttys {
                    return Some(format!(
                        "criu_opts.{name} is not supported by cryo: it does not hand pty masters to the client \
                         (the images hold ttys)"
                    ));
                }
            }
            Some(_) => {}
            None => return Some(format!("criu_opts.{name}: not classified by cryo")),
        }
    }
    if let Err(e) = cg_opts(&o) {
        return Some(format!("criu_opts.manage_cgroups_mode/cg_root: {e}"));
    }
    let c = common(req, conf);
    let bad_externals = c.externals().err();
    c.refused()
        .map(|r| {
            let field = match RPC_NAMES.iter().find(|(cli, _)| *cli == r.option) {
                // The older boolean (runc sets it) when the mode is not given.
                Some(_) if r.option == "--manage-cgroups" && o.manage_cgroups_mode.is_none() => "manage_cgroups",
                Some((_, f)) => f,
                None => r.option,
            };
            format!(
                "criu_opts.{field} (criu {}) is not supported by cryo: {}",
                r.option, r.why
            )
        })
        .or(bad_externals)
}

/// cg_root as criu's --cgroup-root spells it (`CTRL:PATH`; `ctrl` unset:
/// every hierarchy, "" is cgroup v2, as runc sends it).
fn cg_roots(o: &pb::CriuOpts) -> Vec<String> {
    o.cg_root
        .iter()
        .map(|c| match &c.ctrl {
            Some(ctrl) => format!("{ctrl}:{}", c.path),
            None => c.path.clone(),
        })
        .collect()
}

/// The cgroup options of a request: manage_cgroups_mode (or the older
/// manage_cgroups boolean: soft or ignore; neither: soft, criu's default)
/// and cg_root.
fn cg_opts(o: &pb::CriuOpts) -> Result<cryo_engine::state::cgroup::CgOpts, String> {
    use cryo_engine::state::cgroup::{CgOpts, Mode, Root};
    let mode = match (o.manage_cgroups_mode, o.manage_cgroups) {
        (Some(m), _) => Mode::parse(
            &pb::CriuCgMode::try_from(m)
                .map_err(|_| format!("manage_cgroups_mode {m} is not a criu_cg_mode"))?
                .as_str_name()
                .to_lowercase(),
        )?,
        (None, Some(false)) => Mode::Ignore,
        (None, _) => Mode::Soft,
    };
    let roots = o
        .cg_root
        .iter()
        .map(|c| {
            let mut r = Root::parse(&c.path)?;
            r.ctrl = c.ctrl.clone();
            Ok(r)
        })
        .collect::<Result<_, String>>()?;
    Ok(CgOpts {
        mode,
        roots,
        yard: o.cgroup_yard.as_ref().map(std::path::PathBuf::from),
    })
}

/// The rpc.proto field of each criu option [`criu::Common::refused`] names.
const RPC_NAMES: &[(&str, &str)] = &[
    ("--config", "config_file"),
    ("--manage-cgroups", "manage_cgroups_mode"),
    ("--cgroup-root", "cg_root"),
    ("--cgroup-yard", "cgroup_yard"),
    ("--cgroup-props", "cgroup_props"),
    ("--cgroup-props-file", "cgroup_props_file"),
    ("--cgroup-dump-controller", "cgroup_dump_controller"),
    ("--freeze-cgroup", "freeze_cgroup"),
    ("--root", "root"),
    ("--join-ns", "join_ns"),
    ("--empty-ns", "empty_ns"),
    ("--external", "external"),
    ("--ext-mount-map", "ext_mnt"),
    ("--skip-mnt", "skip_mnt"),
    ("--enable-fs", "enable_fs"),
    ("--enable-external-sharing", "ext_sharing"),
    ("--enable-external-masters", "ext_masters"),
    ("--mntns-compat-mode", "mntns_compat_mode"),
    ("--inherit-fd", "inherit_fd"),
    ("--veth-pair", "veths"),
    ("--exec-cmd", "exec_cmd"),
    ("--status-fd", "status_fd"),
    ("--lsm-profile", "lsm_profile"),
    ("--page-server", "ps"),
    ("--prev-images-dir", "parent_img"),
    ("--track-mem", "track_mem"),
    ("--auto-dedup", "auto_dedup"),
    ("--lazy-pages", "lazy_pages"),
    ("--tls", "tls"),
    ("--unprivileged", "unprivileged"),
];

/// The criu_opts fields the client set, in the log.
fn log_fields(log: &Log, req: &Req) {
    let set: Vec<String> = req.opts_set.iter().map(|(n, v)| format!("{n}={v}")).collect();
    log.line(&format!("cryo swrk: criu_opts set: {}", set.join(" ")));
}

/// A refused request: logged, answered with success = false.
fn refuse(conn: &Conn, ty: T, log: Option<&Log>, msg: &str, errno: Option<i32>) -> anyhow::Result<bool> {
    if let Some(l) = log {
        l.line(&format!("cryo swrk: {} failed: {msg}", ty.as_str_name()));
    }
    let mut resp = error_resp(ty, msg, errno);
    match ty {
        T::Dump => resp.dump = Some(pb::CriuDumpResp { restored: Some(false) }),
        T::Restore => resp.restore = Some(pb::CriuRestoreResp { pid: -1 }),
        _ => {}
    }
    conn.send(&resp)?;
    Ok(false)
}

/// DUMP, or PRE_DUMP / SINGLE_PRE_DUMP (`ty`): the pages written since the
/// parent set (criu_opts.parent_img), the tree left running.
fn do_dump(conn: &Arc<Conn>, req: Req, ty: T) -> anyhow::Result<bool> {
    let pre = ty != T::Dump;
    let Some(o) = req.req.opts.clone() else {
        return refuse(conn, ty, None, "DUMP without opts", Some(EBADRQC));
    };
    let s = match setup(conn, &o, ty) {
        Ok(s) => s,
        Err(m) => return refuse(conn, ty, None, &m, Some(EBADRQC)),
    };
    log_fields(&s.log, &req);
    if let Some(m) = refused(&req, None) {
        return refuse(conn, ty, Some(&s.log), &m, Some(EBADRQC));
    }
    let conf = config_file(&req).ok().flatten();
    let c = common(&req, conf.as_ref());
    let x = match c.externals() {
        Ok(x) => x,
        Err(m) => return refuse(conn, ty, Some(&s.log), &m, Some(EBADRQC)),
    };
    if !x.inherit.is_empty() {
        return refuse(
            conn,
            ty,
            Some(&s.log),
            "criu_opts.inherit_fd is an option of RESTORE",
            Some(EBADRQC),
        );
    }
    let cf = conf.unwrap_or_default();
    if let Some(m) = c.freeze_cgroup.as_deref().and_then(frozen_cgroup) {
        return refuse(conn, ty, Some(&s.log), &m, Some(EBADRQC));
    }
    let pid = o.pid.unwrap_or(conn.peer);
    let leave_running = pre || o.leave_running == Some(true) || cf.leave_running;
    let notify = o.notify_scripts == Some(true);
    s.log.line(&format!("cryo swrk: dumping pid {pid}"));
    if notify && !pre {
        if let Err(m) = conn.notify("pre-dump", None) {
            return refuse(conn, ty, Some(&s.log), &m, None);
        }
    }
    let mut d = dump::DumpOpts::new(pid, s.dir.clone());
    d.leave_running = leave_running;
    d.shell_job = o.shell_job == Some(true) || cf.shell_job;
    d.file_locks = o.file_locks == Some(true) || cf.file_locks;
    d.skip_in_flight = c.skip_in_flight;
    d.link_remap = c.link_remap;
    d.tcp_established = c.tcp_established;
    d.tcp_close = c.tcp_close;
    // rpc.proto's criu_network_lock_method: IPTABLES = 1 (its default), NFTABLES = 2, SKIP = 3.
    d.network_lock = match (c.network_lock.as_deref(), o.network_lock) {
        (Some(m), _) => cryo_engine::files::netlock::Method::parse(m).unwrap_or_default(),
        (None, Some(2)) => cryo_engine::files::netlock::Method::Nftables,
        (None, Some(3)) => cryo_engine::files::netlock::Method::Skip,
        _ => cryo_engine::files::netlock::Method::Iptables,
    };
    d.ext_unix_sk = !c.ext_unix_sk.is_empty();
    d.ext_mounts = x.mounts;
    d.ext_ns = x
        .netns
        .into_iter()
        .map(|(ino, key)| ((cryo_engine::state::ns::Kind::Net, ino), key))
        .collect();
    d.empty_net = x.empty_net;
    d.work_dir = Some(s.work.clone());
    d.ghost_limit = u64::from(o.ghost_limit.unwrap_or(1 << 20));
    d.track_mem = o.track_mem == Some(true);
    d.prev_images_dir = o.parent_img.as_ref().map(std::path::PathBuf::from);
    d.cgroups = cg_opts(&o).unwrap_or_default(); // checked by refused()
    if let Some(y) = d.cgroups.yard.as_mut().filter(|y| y.is_relative()) {
        // Relative to the images dir, where criu runs.
        *y = s.dir.join(&*y);
    }
    d.freeze_cgroup = o.freeze_cgroup.as_ref().map(std::path::PathBuf::from);
    if notify {
        let c = Arc::clone(conn);
        let log = s.log.clone();
        d.notify = Some(dump::Notify(Arc::new(move |n| {
            let script = match n {
                dump::Notice::Frozen => "query-ext-files",
                dump::Notice::Written => "post-dump",
            };
            let answer = c.notify(script, None)?;
            log.line(&format!("cryo swrk: {script}: the client said yes"));
            match answer.opts {
                Some(a) if n == dump::Notice::Frozen && !a.external.is_empty() => Err(format!(
                    "the client named external resources ({}) in its query-ext-files answer: cryo does not support external",
                    a.external.join(", ")
                )),
                _ => Ok(()),
            }
        })));
    }
    let res = if pre { dump::predump::pre_dump(d) } else { dump::dump(d) };
    match res {
        Ok(sum) => {
            let line = format!(
                "cryo swrk: {} pid {pid} to {}: {} process(es), {} thread(s), {} file(s), {} page(s); frozen {:.1} ms, total {:.1} ms{}",
                if pre { "pre-dumped" } else { "dumped" },
                s.dir.display(),
                sum.processes,
                sum.threads,
                sum.files,
                sum.pages_written,
                sum.frozen.as_secs_f64() * 1e3,
                sum.total.as_secs_f64() * 1e3,
                if leave_running { " (left running)" } else { " (tree killed)" }
            );
            for w in &sum.warnings {
                s.log.line(&format!("cryo swrk: warning: {w}"));
            }
            s.log.line(&line);
            if o.log_level.unwrap_or(2) >= 3 {
                for (name, d) in &sum.phases {
                    s.log.line(&format!("  {:<32} {:>9.1} ms", name, d.as_secs_f64() * 1e3));
                }
            }
            // criu sends no answer to a client that dumped (and so killed) itself.
            if pid == conn.peer && !leave_running {
                return Ok(true);
            }
            conn.send(&pb::CriuResp {
                r#type: ty as i32,
                success: true,
                dump: (!pre).then_some(pb::CriuDumpResp { restored: Some(false) }),
                ..Default::default()
            })?;
            Ok(true)
        }
        Err(e) => refuse(
            conn,
            ty,
            Some(&s.log),
            &format!("{} of pid {pid} failed: {e}", if pre { "pre-dump" } else { "dump" }),
            None,
        ),
    }
}

fn do_restore(conn: &Arc<Conn>, req: Req) -> anyhow::Result<bool> {
    let ty = T::Restore;
    let Some(o) = req.req.opts.clone() else {
        return refuse(conn, ty, None, "RESTORE without opts", Some(EBADRQC));
    };
    let s = match setup(conn, &o, ty) {
        Ok(s) => s,
        Err(m) => return refuse(conn, ty, None, &m, Some(EBADRQC)),
    };
    log_fields(&s.log, &req);
    if let Some(m) = refused(&req, Some(&s.dir)) {
        return refuse(conn, ty, Some(&s.log), &m, Some(EBADRQC));
    }
    let notify = o.notify_scripts == Some(true);
    if notify {
        if let Err(m) = conn.notify("pre-restore", None) {
            return refuse(conn, ty, Some(&s.log), &m, None);
        }
    }
    let conf = config_file(&req).ok().flatten();
    let c = common(&req, conf.as_ref());
    let x = match c.externals() {
        Ok(x) => x,
        Err(m) => return refuse(conn, ty, Some(&s.log), &m, Some(EBADRQC)),
    };
    let cf = conf.unwrap_or_default();
    let mut r = restore::RestoreOpts::new(&s.dir);
    r.detach = true;
    r.shell_job = o.shell_job == Some(true) || cf.shell_job;
    r.file_locks = o.file_locks == Some(true) || cf.file_locks;
    r.tcp_established = c.tcp_established;
    r.tcp_close = c.tcp_close;
    r.sibling = o.rst_sibling == Some(true) || cf.restore_sibling;
    r.mnt.externals = x.mounts.into_iter().map(|(k, v)| (k, v.into())).collect();
    r.mnt.root = c.root.as_ref().map(PathBuf::from);
    r.veth_pairs = x.veths;
    r.empty_net = x.empty_net;
    r.inherit_fds = x.inherit;
    r.work_dir = Some(s.work.clone());
    r.cgroups = cg_opts(&o).unwrap_or_default(); // checked by refused_rpc()
    if let Some(y) = r.cgroups.yard.as_mut().filter(|y| y.is_relative()) {
        // Relative to the images dir, where criu runs.
        *y = s.dir.join(&*y);
    }
    if let Some(t) = o.timeout {
        r.timeout = Duration::from_secs(u64::from(t.max(1)));
    }
    if notify {
        let c = Arc::clone(conn);
        let log = s.log.clone();
        r.before_resume = Some(restore::Gate(Arc::new(move |root| {
            c.notify("post-restore", Some(root))?;
            log.line(&format!("cryo swrk: post-restore (pid {root}): the client said yes"));
            c.notify("pre-resume", None)?;
            log.line("cryo swrk: pre-resume: the client said yes");
            Ok(())
        })));
    }
    let verbose = o.log_level.unwrap_or(2) >= 3;
    let log = s.log.clone();
    let root = std::cell::Cell::new(-1);
    let res = restore::restore(r, |done| {
        root.set(done.root);
        log.line(&format!(
            "cryo swrk: restored {}: {} process(es), {} thread(s); root pid {}, total {:.1} ms",
            s.dir.display(),
            done.pids.len(),
            done.threads,
            done.root,
            done.total.as_secs_f64() * 1e3
        ));
        if verbose {
            for (name, d) in &done.phases {
                log.line(&format!("  {:<32} {:>9.1} ms", name, d.as_secs_f64() * 1e3));
            }
        }
    });
    let root = match res {
        Ok(_) => root.get(),
        Err(e) => {
            return refuse(
                conn,
                ty,
                Some(&s.log),
                &format!("restore of {} failed: {e}", s.dir.display()),
                None,
            )
        }
    };
    if notify {
        if let Err(m) = conn.notify("post-resume", None) {
            // As criu: the tree runs already; the answer is only logged.
            s.log.line(&format!("cryo swrk: {m} (the tree runs: nothing to undo)"));
        }
    }
    conn.send(&pb::CriuResp {
        r#type: ty as i32,
        success: true,
        restore: Some(pb::CriuRestoreResp { pid: root }),
        ..Default::default()
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_option_is_classified_once() {
        let fields = fields_of("criu_opts");
        assert!(fields.len() > 60);
        for (_, _, name, _) in fields {
            let n = OPTS.iter().filter(|(o, _)| o == name).count();
            assert_eq!(n, 1, "criu_opts.{name} classified {n} times");
        }
        assert_eq!(OPTS.len(), fields.len(), "OPTS lists a field rpc.proto lacks");
        for (cli, field) in RPC_NAMES {
            assert!(fields.iter().any(|f| f.2 == *field), "{cli}: no field {field}");
        }
    }

    fn enc(req: &pb::CriuReq) -> Vec<u8> {
        req.encode_to_vec()
    }

    #[test]
    fn strict_decoding_names_what_is_wrong() {
        let ok = enc(&pb::CriuReq {
            r#type: T::Version as i32,
            ..Default::default()
        });
        assert!(parse_req(&ok).is_ok());
        // Truncated: a DUMP with opts cut in the middle.
        let full = enc(&pb::CriuReq {
            r#type: T::Dump as i32,
            opts: Some(pb::CriuOpts {
                images_dir_fd: 5,
                log_file: Some("dump.log".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let e = parse_req(&full[..full.len() - 3]).err().unwrap();
        assert!(e.contains("truncated"), "{e}");
        // An unknown field of criu_opts (number 200, varint 1) after images_dir_fd = 3.
        let unk = [0x08, 1, 0x12, 5, 0x08, 3, 0xc0, 0x0c, 1];
        let e = parse_req(&unk).err().unwrap_or_default();
        assert!(e.contains("criu_opts field 200 is not known"), "{e}");
        // And one of criu_req itself (number 7).
        let e = parse_req(&[0x08, 10, 0x38, 1]).err().unwrap_or_default();
        assert!(e.contains("criu_req field 7 is not known"), "{e}");
        // type as a string.
        let e = parse_req(&[0x0a, 1, b'x']).err().unwrap();
        assert!(e.contains("wire type"), "{e}");
        // No type at all.
        let e = parse_req(&[0x18, 1]).err().unwrap();
        assert!(e.contains("type"), "{e}");
    }

    /// Random bytes and random damage to a real DUMP request: an error or a
    /// request, never a panic.
    #[test]
    fn damaged_requests_never_panic() {
        let good = enc(&pb::CriuReq {
            r#type: T::Dump as i32,
            opts: Some(pb::CriuOpts {
                images_dir_fd: 5,
                log_file: Some("dump.log".into()),
                ext_mnt: vec![pb::ExtMountMap {
                    key: "/a".into(),
                    val: "b".into(),
                }],
                ps: Some(pb::CriuPageServerInfo {
                    address: Some("x".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            features: Some(pb::CriuFeatures::default()),
            ..Default::default()
        });
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20000 {
            let mut b = good.clone();
            match next() % 3 {
                0 => {
                    let i = next() as usize % b.len();
                    b[i] = next() as u8;
                }
                1 => b.truncate(next() as usize % b.len()),
                _ => b = (0..next() % 40).map(|_| next() as u8).collect(),
            }
            if let Ok(r) = parse_req(&b) {
                let _ = refused(&r, None);
            }
        }
    }

    #[test]
    fn refusals_name_the_rpc_field() {
        let req = |o: pb::CriuOpts| {
            let b = enc(&pb::CriuReq {
                r#type: T::Dump as i32,
                opts: Some(o),
                ..Default::default()
            });
            refused(&parse_req(&b).unwrap(), None)
        };
        let base = pb::CriuOpts {
            images_dir_fd: 3,
            ..Default::default()
        };
        assert_eq!(req(base.clone()), None);
        for (o, field) in [
            (
                pb::CriuOpts {
                    lazy_pages: Some(true),
                    ..base.clone()
                },
                "lazy_pages",
            ),
            (
                pb::CriuOpts {
                    leave_stopped: Some(true),
                    ..base.clone()
                },
                "leave_stopped",
            ),
            (
                pb::CriuOpts {
                    empty_ns: Some(libc::CLONE_NEWIPC as u32),
                    ..base.clone()
                },
                "empty_ns",
            ),
            (
                pb::CriuOpts {
                    cgroup_dump_controller: vec!["memory".into()],
                    ..base.clone()
                },
                "cgroup_dump_controller",
            ),
            (
                pb::CriuOpts {
                    cgroup_props: Some("x".into()),
                    ..base.clone()
                },
                "cgroup_props",
            ),
            (
                pb::CriuOpts {
                    notify_scripts: Some(true),
                    join_ns: vec![pb::JoinNamespace {
                        ns: "net".into(),
                        ns_file: "/proc/1/ns/net".into(),
                        extra_opt: None,
                    }],
                    ..base.clone()
                },
                "join_ns",
            ),
        ] {
            let m = req(o).unwrap_or_default();
            assert!(m.contains(&format!("criu_opts.{field} ")), "{field}: {m}");
        }
        // What runc 1.1 sets on a checkpoint (freeze_cgroup an existing
        // cgroup; manage_cgroups IGNORE, as its config file would say): accepted.
        let runc = pb::CriuOpts {
            root: Some("/".into()),
            manage_cgroups_mode: Some(pb::CriuCgMode::Ignore as i32),
            cg_root: vec![pb::CgroupRoot {
                ctrl: Some("cpu".into()),
                path: "/x".into(),
            }],
            empty_ns: Some(libc::CLONE_NEWNET as u32),
            freeze_cgroup: Some("/sys/fs/cgroup".into()),
            orphan_pts_master: Some(true),
            rst_sibling: Some(true),
            external: vec!["net[4026531992]:extRootNetNS".into()],
            inherit_fd: vec![pb::InheritFd {
                key: "extRootNetNS".into(),
                fd: 4,
            }],
            ext_mnt: vec![pb::ExtMountMap {
                key: "/proc/kcore".into(),
                val: "/dev/null".into(),
            }],
            ..base.clone()
        };
        assert_eq!(req(runc), None);
        // Set to false / IGNORE: nothing asked, nothing refused.
        let quiet = pb::CriuOpts {
            rst_sibling: Some(false),
            manage_cgroups_mode: Some(pb::CriuCgMode::Ignore as i32),
            leave_stopped: Some(false),
            ..base
        };
        assert_eq!(req(quiet), None);
        // runc's cgroup options are honoured.
        let runc = pb::CriuOpts {
            manage_cgroups: Some(true),
            manage_cgroups_mode: Some(pb::CriuCgMode::Soft as i32),
            cg_root: vec![pb::CgroupRoot {
                ctrl: Some(String::new()),
                path: "/user.slice/c1".into(),
            }],
            ..pb::CriuOpts {
                images_dir_fd: 3,
                ..Default::default()
            }
        };
        assert_eq!(req(runc.clone()), None);
        let c = cg_opts(&runc).unwrap();
        assert_eq!(c.mode, cryo_engine::state::cgroup::Mode::Soft);
        assert_eq!(c.roots[0].ctrl.as_deref(), Some(""));
        assert_eq!(c.roots[0].path, "/user.slice/c1");
        let old = pb::CriuOpts {
            manage_cgroups: Some(false),
            ..Default::default()
        };
        assert_eq!(cg_opts(&old).unwrap().mode, cryo_engine::state::cgroup::Mode::Ignore);
    }
}
