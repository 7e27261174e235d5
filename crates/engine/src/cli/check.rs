//! `cryo check [--feature NAME]...`, spelled like `criu check`: whether cryo
//! can dump and restore on this kernel, and whether it supports one of the
//! features criu's `check --feature` knows (zdtm asks for them to skip tests).
//!
//! A feature is one of two kinds. A **kernel** feature is a fact about the
//! running kernel (and its tools), answered by probing it as criu does:
//! what cryo relies on (mnt_id in fdinfo, PTRACE_GET_RSEQ_CONFIGURATION, ...)
//! and what zdtm gates its tests on (namespaces, nftables, socket options):
//! where cryo cannot dump what such a test sets up, the test runs and cryo
//! refuses it at dump with a message, instead of the test being skipped. A
//! **cryo** feature is a mechanism criu has and cryo has not yet (memory
//! the pidfd store, a few socket kinds): answered no,
//! saying why, whatever the kernel. A name criu does not know either is an
//! error, as in criu.

/// `cryo check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Check one feature (criu's names; repeatable).
    #[arg(long = "feature", value_name = "NAME")]
    pub feature: Vec<String>,
    /// criu's extra checks: cryo has none beyond the basic ones.
    #[arg(long = "extra")]
    pub extra: bool,
    /// criu's experimental checks: cryo has none beyond the basic ones.
    #[arg(long = "experimental")]
    pub experimental: bool,
    /// criu's --all: the basic checks.
    #[arg(long = "all")]
    pub all: bool,
    /// Accepted (cryo reads no configuration files); zdtm gives it twice.
    #[arg(long = "no-default-config", action = clap::ArgAction::Count)]
    pub no_default_config: u8,
    /// Accepted: zdtm's rootless runs pass it; cryo's answers are root's.
    #[arg(long = "unprivileged")]
    pub unprivileged: bool,
    /// Verbosity (criu's -v, also zdtm's `-verbosity=0`): 0 prints nothing.
    #[arg(short = 'v', long = "verbosity", num_args = 0..=1, default_missing_value = "2")]
    pub verbosity: Option<String>,
    /// Log file: cryo prints its answers on standard output, accepted.
    #[arg(short = 'o', long = "log-file", value_name = "FILE")]
    pub log: Option<String>,
}

/// Run `cryo check`; exit code 0 when everything asked is supported.
pub fn run(a: &Args) -> i32 {
    let quiet = matches!(a.verbosity.as_deref(), Some("0") | Some("erbosity=0"));
    if a.feature.is_empty() {
        let p = problems();
        if p.is_empty() {
            if !quiet {
                println!("Looks good.");
            }
            return 0;
        }
        for m in &p {
            eprintln!("cryo check: {m}");
        }
        return 1;
    }
    let mut code = 0;
    for f in &a.feature {
        match feature(f) {
            Ok(()) => {
                if !quiet {
                    println!("{f} is supported");
                }
            }
            Err(why) => {
                code = 1;
                if !quiet {
                    eprintln!("{f} is not supported: {why}");
                }
            }
        }
    }
    code
}

/// The kernel's version as (major, minor).
fn kernel() -> (u32, u32) {
    let rel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut it = rel.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Ok if `path` exists.
fn exists(path: &str, what: &str) -> Result<(), String> {
    if std::path::Path::new(path).exists() {
        Ok(())
    } else {
        Err(format!("{what}: {path} does not exist"))
    }
}

/// Ok if the program `name` is on PATH.
fn on_path(name: &str, what: &str) -> Result<(), String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| d.join(name).is_file()) {
        Ok(())
    } else {
        Err(format!("{what} is not installed"))
    }
}

fn kernel_at_least(major: u32, minor: u32, what: &str) -> Result<(), String> {
    let k = kernel();
    if k >= (major, minor) {
        Ok(())
    } else {
        Err(format!("{what} needs Linux {major}.{minor}, this is {}.{}", k.0, k.1))
    }
}

/// What keeps cryo from dumping and restoring here (empty: nothing).
pub fn problems() -> Vec<String> {
    let mut p = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        p.push("cryo runs as root (it needs CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE)".to_string());
    }
    if let Err(e) = kernel_at_least(5, 6, "clone3 with set_tid and pidfd_getfd") {
        p.push(e);
    }
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope") {
        if s.trim() == "3" {
            p.push("ptrace is disabled (kernel.yama.ptrace_scope = 3)".to_string());
        }
    }
    let me = nix::unistd::getpid().as_raw();
    if let Err(e) = cryo_engine::sys::pidfd_open(me) {
        p.push(format!("pidfd_open: {e}"));
    }
    if std::fs::read_dir("/proc/self/map_files").is_err() {
        p.push("/proc/self/map_files is not readable".to_string());
    }
    p
}

/// Whether cryo supports feature `name` here; Err says why not.
pub fn feature(name: &str) -> Result<(), String> {
    const SK: &str = "cryo does not dump this kind of socket yet";
    let no = |why: &str| Err(why.to_string());
    match name {
        // Kernel facts cryo relies on as criu does.
        "mnt_id" => std::fs::read_to_string("/proc/self/fdinfo/0")
            .ok()
            .filter(|s| s.contains("mnt_id:"))
            .map(|_| ())
            .ok_or_else(|| "fdinfo has no mnt_id".to_string()),
        "fdinfo_lock" => kernel_at_least(4, 1, "lock lines in fdinfo"),
        "seccomp_filters" => kernel_at_least(4, 4, "PTRACE_SECCOMP_GET_FILTER"),
        "seccomp_suspend" => kernel_at_least(4, 3, "PTRACE_O_SUSPEND_SECCOMP"),
        "get_rseq_conf" => kernel_at_least(5, 13, "PTRACE_GET_RSEQ_CONFIGURATION"),
        "clone3_set_tid" => kernel_at_least(5, 5, "clone3 with set_tid"),
        "pidfd" => kernel_at_least(5, 3, "pidfd_open"),
        "pagemap_scan" => kernel_at_least(6, 7, "PAGEMAP_SCAN"),
        "pagemap_scan_guard_pages" => kernel_at_least(6, 14, "PAGEMAP_SCAN of guard pages"),
        "aio_remap" => kernel_at_least(3, 19, "mremap of AIO rings"),
        "kcmp_epoll" => kernel_at_least(4, 13, "KCMP_EPOLL_TFD"),
        "can_map_vdso" => kernel_at_least(4, 9, "ARCH_MAP_VDSO_64"),
        "memfd_hugetlb" => kernel_at_least(4, 14, "MFD_HUGETLB"),
        "timerfd" => {
            if std::path::Path::new("/proc/sys/kernel/ns_last_pid").exists() {
                kernel_at_least(3, 17, "TFD_IOC_SET_TICKS")
            } else {
                no("the kernel lacks CONFIG_CHECKPOINT_RESTORE (TFD_IOC_SET_TICKS)")
            }
        }
        "loginuid" => {
            if std::path::Path::new("/proc/self/loginuid").exists() {
                Ok(())
            } else {
                no("the kernel has no /proc/PID/loginuid (CONFIG_AUDITSYSCALL)")
            }
        }
        // What criu can do and cryo cannot yet.
        // Dirty tracking is userfaultfd's async write-protection, not soft-dirty.
        "mem_dirty_track" | "uffd_wp_async" => cryo_engine::dump::track::probe()
            .map_err(|e| format!("no asynchronous userfaultfd write-protection (Linux 6.7+): {e}")),
        // Lazy restore: a userfaultfd with the non-cooperative events
        // (fork, remap, remove, unmap), probed as criu does.
        "uffd" => cryo_engine::restore::lazy::probe(0).map_err(|e| format!("no userfaultfd: {e}")),
        "uffd-noncoop" | "lazy_pages" => cryo_engine::restore::lazy::probe(cryo_engine::restore::lazy::FEATURES)
            .map_err(|e| format!("no non-cooperative userfaultfd (fork, remap, remove and unmap events): {e}")),
        "pidfd_store" => no("cryo keeps no pidfd store (it serves pre-dumps, which cryo does not do)"),
        // Kernel facts about namespaces, netfilter and sockets, answered as
        // criu answers them (zdtm gates tests on them): cryo itself does
        // not dump or restore what needs them yet and refuses such a tree
        // at dump, naming what it found, so the tests run and fail there.
        "userns" => exists("/proc/self/ns/user", "user namespaces"),
        "cgroupns" => exists("/proc/self/ns/cgroup", "cgroup namespaces"),
        "timens" => exists("/proc/self/ns/time", "time namespaces"),
        "ns_pid" => std::fs::read_to_string("/proc/self/status")
            .ok()
            .filter(|s| s.contains("NSpid:"))
            .map(|_| ())
            .ok_or_else(|| "/proc/PID/status has no NSpid".to_string()),
        "nsid" | "link_nsid" => kernel_at_least(4, 0, "network namespace ids"),
        "sk_ns" | "external_net_ns" => kernel_at_least(4, 9, "SIOCGSKNS"),
        "tun_ns" => kernel_at_least(5, 2, "TUNGETDEVNETNS"),
        "move_mount_set_group" => kernel_at_least(5, 15, "MOVE_MOUNT_SET_GROUP"),
        "autofs" => std::fs::read_to_string("/proc/filesystems")
            .ok()
            .filter(|s| s.lines().any(|l| l.ends_with("autofs")))
            .map(|_| ())
            .ok_or_else(|| "no autofs in /proc/filesystems".to_string()),
        "apparmor_stacking" => exists(
            "/sys/kernel/security/apparmor/features/domain/stack",
            "AppArmor stacking",
        ),
        "nftables" | "network_lock_nftables" => on_path("nft", "nftables (nft)"),
        "has_ipt_legacy" => on_path("iptables-legacy", "iptables-legacy"),
        "tun" => exists("/dev/net/tun", "/dev/net/tun"),
        "net_diag_raw" => kernel_at_least(4, 14, "sock_diag of raw sockets"),
        "ipv6_freebind" => kernel_at_least(4, 15, "IPV6_FREEBIND"),
        "sockopt_buf_lock" => kernel_at_least(5, 14, "SO_BUF_LOCK"),
        "tcp_half_closed" => kernel_at_least(4, 16, "TCP_REPAIR of half-closed sockets"),
        "newifindex" | "sk_unix_file" => no(SK),
        "compat_cr" => no("cryo dumps and restores 64-bit x86 tasks only"),
        _ => Err(format!(
            "unknown feature {name} (criu's names: e.g. mnt_id, mem_dirty_track, uffd)"
        )),
    }
}
