//! `cryo service [--address PATH] [-d] [--pidfile FILE]`: CRIU's RPC on a
//! listening unix socket (`criu service`). Each connection is served by a
//! `cryo swrk FD` of its own (criu forks a worker per connection), so a
//! client sees exactly the swrk protocol, except that the swrk-only options
//! are refused (as criu refuses them in its service): rst_sibling (the root
//! would be the service's child, not the client's) and inherit_fd (the fds
//! would be the service's).

use anyhow::{anyhow, Context};
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `cryo service`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The socket to listen on (criu's default).
    #[arg(
        long = "address",
        value_name = "PATH",
        default_value = "/var/run/criu_service.socket"
    )]
    pub address: PathBuf,
    /// Run in the background once the socket listens.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
    /// Write the service's pid here.
    #[arg(long = "pidfile", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    if a.daemon {
        // The same command without -d, detached; back once it listens.
        let exe = std::env::current_exe().context("cryo's own path")?;
        let _ = std::fs::remove_file(&a.address);
        let mut cmd = Command::new(exe);
        cmd.arg("service").arg("--address").arg(&a.address);
        if let Some(p) = &a.pidfile {
            cmd.arg("--pidfile").arg(p);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the service")?;
        for _ in 0..500 {
            if a.address.exists() {
                return Ok(0);
            }
            if let Some(st) = child.try_wait()? {
                return Err(anyhow!("the service exited at once ({st})"));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        return Err(anyhow!("the service does not listen on {}", a.address.display()));
    }
    let sk = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)
        .context("service socket")?;
    let _ = std::fs::remove_file(&a.address);
    let addr = UnixAddr::new(&a.address).with_context(|| format!("address {}", a.address.display()))?;
    socket::bind(sk.as_raw_fd(), &addr).with_context(|| format!("bind {}", a.address.display()))?;
    // Anyone may connect, as to criu's service.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&a.address, std::fs::Permissions::from_mode(0o666))?;
    socket::listen(&sk, Backlog::new(16).expect("backlog")).context("listen")?;
    if let Some(p) = &a.pidfile {
        std::fs::write(p, format!("{}\n", std::process::id())).with_context(|| format!("{}", p.display()))?;
    }
    let exe = std::env::current_exe().context("cryo's own path")?;
    let mut workers: Vec<std::process::Child> = Vec::new();
    loop {
        // Not close-on-exec: the worker inherits it. The loop is the only
        // thread, so no other worker is started while it is open.
        let fd = match socket::accept4(sk.as_raw_fd(), SockFlag::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(anyhow!("accept: {e}")),
        };
        let w = Command::new(&exe)
            .arg("swrk")
            .arg("--service")
            .arg(fd.to_string())
            .stdin(Stdio::null())
            .spawn();
        let _ = nix::unistd::close(fd);
        match w {
            Ok(c) => workers.push(c),
            Err(e) => eprintln!("cryo service: starting a worker: {e}"),
        }
        workers.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
    }
}
