//! The rest of criu's command line, shared by `cryo dump` and `cryo restore`.
//!
//! criu's scripts and test suite (zdtm) pass options cryo has no use for, or
//! that ask for something cryo does not do yet. Every criu option is accepted
//! by the parser, so a criu command line never fails on spelling. Then each
//! falls in one of three classes:
//!
//! * **honoured**: it does what it does in criu (`-W`, `--timeout`, …; the
//!   dump/restore-specific ones live in `dump.rs`/`restore.rs`);
//! * **nothing to do**: in cryo's design the option changes nothing (cryo reads
//!   no configuration files, so `--no-default-config` is what it always does;
//!   `--pidfile` on dump is ignored by criu too);
//! * **refused**: cryo does not do what it asks, and saying yes would produce
//!   something other than what the caller asked for. The command stops before
//!   touching anything with a message naming the option ([`Refused`]).
//!
//! Options that only matter when the tree has a certain object (`--tcp-established`,
//! `--ext-unix-sk`, `--link-remap`, …) are accepted here; the object's own
//! code honours them or refuses the object with a message naming it.

use clap::Args as ClapArgs;
use std::path::{Path, PathBuf};

/// criu's common options (both dump and restore accept all of them).
#[derive(ClapArgs, Debug, Default, Clone)]
pub struct Common {
    /// Working directory for logs and other files (default: the images
    /// directory); a relative --log-file is taken relative to it.
    #[arg(short = 'W', long = "work-dir", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// cryo reads no configuration file: accepted for criu's command line.
    #[arg(long = "no-default-config")]
    pub no_default_config: bool,
    /// A criu configuration file: refused (cryo reads options from its command line only).
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Restore: seconds the tasks may take to reach the end of the restore.
    /// Dump: accepted (cryo's freeze is bounded by itself: 32 passes over the tree).
    #[arg(long = "timeout", value_name = "SECS")]
    pub timeout: Option<u64>,
    /// One log per pid: cryo's log is one short file, accepted.
    #[arg(long = "log-pid", overrides_with = "no_log_pid")]
    pub log_pid: bool,
    #[arg(long = "no-log-pid", hide = true)]
    pub no_log_pid: bool,
    /// Print statistics: accepted (`-v3` prints cryo's phases).
    #[arg(long = "display-stats", overrides_with = "no_display_stats")]
    pub display_stats: bool,
    #[arg(long = "no-display-stats", hide = true)]
    pub no_display_stats: bool,

    // --- accepted; the object's code honours them ------------------------
    /// Dump/restore external unix sockets (optionally by inode).
    #[arg(short = 'x', long = "ext-unix-sk", value_name = "INODE", num_args = 0..=1, default_missing_value = "")]
    pub ext_unix_sk: Vec<String>,
    /// Checkpoint established TCP connections.
    #[arg(long = "tcp-established", overrides_with = "no_tcp_established")]
    pub tcp_established: bool,
    #[arg(long = "no-tcp-established", hide = true)]
    pub no_tcp_established: bool,
    /// Close established TCP connections on restore.
    #[arg(long = "tcp-close", overrides_with = "no_tcp_close")]
    pub tcp_close: bool,
    #[arg(long = "no-tcp-close", hide = true)]
    pub no_tcp_close: bool,
    /// Skip TCP connections still being established.
    #[arg(long = "skip-in-flight", overrides_with = "no_skip_in_flight")]
    pub skip_in_flight: bool,
    #[arg(long = "no-skip-in-flight", hide = true)]
    pub no_skip_in_flight: bool,
    /// Allow link remaps of files that were unlinked but are still open.
    #[arg(long = "link-remap", overrides_with = "no_link_remap")]
    pub link_remap: bool,
    #[arg(long = "no-link-remap", hide = true)]
    pub no_link_remap: bool,
    /// Find the data extents of ghost files with FS_IOC_FIEMAP (the default;
    /// SEEK_DATA/SEEK_HOLE where the file system has no extent map).
    #[arg(long = "ghost-fiemap", overrides_with = "no_ghost_fiemap")]
    pub ghost_fiemap: bool,
    /// Save ghost files' data extents found with SEEK_DATA/SEEK_HOLE
    /// instead of FS_IOC_FIEMAP (the holes are skipped either way).
    #[arg(long = "no-ghost-fiemap")]
    pub no_ghost_fiemap: bool,
    /// Resolve inotify/fanotify watch paths by scanning (cryo always records the path).
    #[arg(long = "force-irmap", overrides_with = "no_force_irmap")]
    pub force_irmap: bool,
    #[arg(long = "no-force-irmap", hide = true)]
    pub no_force_irmap: bool,
    /// Where irmap scans (cryo records paths directly).
    #[arg(long = "irmap-scan-path", value_name = "PATH")]
    pub irmap_scan_path: Vec<PathBuf>,
    /// How the network is locked during the dump: iptables, nftables, skip.
    #[arg(long = "network-lock", value_name = "METHOD", value_parser = ["iptables", "nftables", "skip"])]
    pub network_lock: Option<String>,
    /// Accepted: device files whose device cannot be found are dumped as paths.
    #[arg(long = "evasive-devices", overrides_with = "no_evasive_devices")]
    pub evasive_devices: bool,
    #[arg(long = "no-evasive-devices", hide = true)]
    pub no_evasive_devices: bool,
    /// How file mappings are validated: filesize or buildid (cryo checks both size and inode).
    #[arg(long = "file-validation", value_name = "MODE", value_parser = ["filesize", "buildid"])]
    pub file_validation: Option<String>,
    /// Accepted.
    #[arg(long = "skip-file-rwx-check", overrides_with = "no_skip_file_rwx_check")]
    pub skip_file_rwx_check: bool,
    #[arg(long = "no-skip-file-rwx-check", hide = true)]
    pub no_skip_file_rwx_check: bool,
    /// Accepted (sysctls are not restored by cryo).
    #[arg(long = "weak-sysctls", overrides_with = "no_weak_sysctls")]
    pub weak_sysctls: bool,
    #[arg(long = "no-weak-sysctls", hide = true)]
    pub no_weak_sysctls: bool,
    /// Accepted.
    #[arg(long = "deprecated", overrides_with = "no_deprecated")]
    pub deprecated: bool,
    #[arg(long = "no-deprecated", hide = true)]
    pub no_deprecated: bool,
    /// CPU compatibility check on restore (cryo checks the xsave layout it needs).
    #[arg(long = "cpu-cap", value_name = "CAPS", num_args = 0..=1, default_missing_value = "fpu")]
    pub cpu_cap: Option<String>,
    /// Uprobes in the tree's memory are allowed.
    #[arg(long = "allow-uprobes", overrides_with = "no_allow_uprobes")]
    pub allow_uprobes: bool,
    #[arg(long = "no-allow-uprobes", hide = true)]
    pub no_allow_uprobes: bool,
    /// Pre-dump mode: splice or read (only pre-dump uses it).
    #[arg(long = "pre-dump-mode", value_name = "MODE", value_parser = ["splice", "read"])]
    pub pre_dump_mode: Option<String>,

    /// How cgroups are dumped and restored: ignore, none, props, soft (the default), full, strict
    /// (criu's modes; docs/cgroups.md).
    #[arg(long = "manage-cgroups", value_name = "MODE", num_args = 0..=1, default_missing_value = "soft")]
    pub manage_cgroups: Option<String>,
    /// Restore: the tree's cgroups go under PATH (for CTRL's hierarchy only, if given; "" is cgroup v2).
    /// Dump: the cgroups under PATH are dumped instead of those under the tree's.
    #[arg(long = "cgroup-root", value_name = "[CTRL:]PATH")]
    pub cgroup_root: Vec<String>,
    /// Dump: the tree's freezer (or v2) cgroup, as criu takes it; cryo freezes with ptrace and checks
    /// that every task in that cgroup is in the tree.
    #[arg(long = "freeze-cgroup", value_name = "PATH")]
    pub freeze_cgroup: Option<String>,
    /// A directory where every cgroup hierarchy is mounted (named as criu names them), used instead of
    /// cryo's own detached mounts.
    #[arg(long = "cgroup-yard", value_name = "PATH")]
    pub cgroup_yard: Option<String>,

    // --- refused: cryo does not do what they ask (yet) --------------------
    #[arg(long = "cgroup-props", value_name = "PROPS", hide = true)]
    pub cgroup_props: Option<String>,
    #[arg(long = "cgroup-props-file", value_name = "FILE", hide = true)]
    pub cgroup_props_file: Option<String>,
    #[arg(long = "cgroup-dump-controller", value_name = "NAME", hide = true)]
    pub cgroup_dump_controller: Vec<String>,
    #[arg(short = 'r', long = "root", value_name = "PATH", hide = true)]
    pub root: Option<String>,
    #[arg(short = 'J', long = "join-ns", value_name = "NS:PATH", hide = true)]
    pub join_ns: Vec<String>,
    #[arg(long = "empty-ns", value_name = "NS", hide = true)]
    pub empty_ns: Vec<String>,
    #[arg(long = "external", value_name = "RES", hide = true)]
    pub external: Vec<String>,
    #[arg(short = 'M', long = "ext-mount-map", value_name = "KEY:VAL", hide = true)]
    pub ext_mount_map: Vec<String>,
    #[arg(long = "skip-mnt", value_name = "PATH", hide = true)]
    pub skip_mnt: Vec<String>,
    #[arg(long = "enable-fs", value_name = "FS", hide = true)]
    pub enable_fs: Vec<String>,
    #[arg(long = "enable-external-sharing", hide = true)]
    pub enable_external_sharing: bool,
    #[arg(long = "enable-external-masters", hide = true)]
    pub enable_external_masters: bool,
    #[arg(long = "mntns-compat-mode", hide = true)]
    pub mntns_compat_mode: bool,
    #[arg(long = "no-mntns-compat-mode", hide = true)]
    pub no_mntns_compat_mode: bool,
    #[arg(long = "inherit-fd", value_name = "fd[N]:RES", hide = true)]
    pub inherit_fd: Vec<String>,
    #[arg(long = "veth-pair", value_name = "IN=OUT", hide = true)]
    pub veth_pair: Vec<String>,
    #[arg(long = "action-script", value_name = "SCRIPT", hide = true)]
    pub action_script: Vec<String>,
    #[arg(long = "exec-cmd", hide = true)]
    pub exec_cmd: bool,
    #[arg(long = "status-fd", value_name = "FD", hide = true)]
    pub status_fd: Option<i32>,
    #[arg(long = "lsm-profile", value_name = "TYPE:NAME", hide = true)]
    pub lsm_profile: Option<String>,
    #[arg(long = "lsm-mount-context", value_name = "CTX", hide = true)]
    pub lsm_mount_context: Option<String>,
    #[arg(short = 'L', long = "libdir", value_name = "DIR", hide = true)]
    pub libdir: Option<String>,
    #[arg(long = "page-server", hide = true)]
    pub page_server: bool,
    #[arg(long = "no-page-server", hide = true)]
    pub no_page_server: bool,
    #[arg(long = "address", value_name = "ADDR", hide = true)]
    pub address: Option<String>,
    #[arg(long = "port", value_name = "PORT", hide = true)]
    pub port: Option<String>,
    #[arg(long = "ps-socket", value_name = "FD", hide = true)]
    pub ps_socket: Option<String>,
    #[arg(long = "prev-images-dir", value_name = "DIR", hide = true)]
    pub prev_images_dir: Option<String>,
    #[arg(long = "track-mem", hide = true)]
    pub track_mem: bool,
    #[arg(long = "no-track-mem", hide = true)]
    pub no_track_mem: bool,
    #[arg(long = "auto-dedup", hide = true)]
    pub auto_dedup: bool,
    #[arg(long = "no-auto-dedup", hide = true)]
    pub no_auto_dedup: bool,
    #[arg(long = "lazy-pages", hide = true)]
    pub lazy_pages: bool,
    #[arg(long = "stream", hide = true)]
    pub stream: bool,
    #[arg(long = "no-stream", hide = true)]
    pub no_stream: bool,
    #[arg(long = "tls", hide = true)]
    pub tls: bool,
    #[arg(long = "no-tls", hide = true)]
    pub no_tls: bool,
    #[arg(long = "tls-cacert", hide = true)]
    pub tls_cacert: Option<String>,
    #[arg(long = "tls-cacrl", hide = true)]
    pub tls_cacrl: Option<String>,
    #[arg(long = "tls-cert", hide = true)]
    pub tls_cert: Option<String>,
    #[arg(long = "tls-key", hide = true)]
    pub tls_key: Option<String>,
    #[arg(long = "tls-no-cn-verify", hide = true)]
    pub tls_no_cn_verify: bool,
    #[arg(long = "unprivileged", hide = true)]
    pub unprivileged: bool,
    #[arg(long = "no-unprivileged", hide = true)]
    pub no_unprivileged: bool,
    #[arg(long = "feature", value_name = "NAME", hide = true)]
    pub feature: Vec<String>,
    #[arg(long = "extra", hide = true)]
    pub extra: bool,
    #[arg(long = "experimental", hide = true)]
    pub experimental: bool,
    #[arg(long = "ms", hide = true)]
    pub ms: bool,
    #[arg(long = "all", hide = true)]
    pub all: bool,
}

/// What a criu configuration file may set (criu(8), CONFIGURATION FILES):
/// criu's long options without their dashes, one per line, with a value
/// after a space (in double quotes if it holds spaces) or after `=`; `#`
/// starts a comment. An RPC client's `config_file` (runc names
/// /etc/criu/runc.conf, or the container's `org.criu.config` annotation)
/// overrides the options of the request, as in criu.
#[derive(clap::Parser, Debug, Default)]
#[command(no_binary_name = true, args_override_self = true, disable_help_flag = true)]
pub struct ConfigFile {
    #[command(flatten)]
    pub common: Common,
    #[arg(short = 'R', long = "leave-running")]
    pub leave_running: bool,
    #[arg(short = 'j', long = "shell-job")]
    pub shell_job: bool,
    #[arg(short = 'l', long = "file-locks")]
    pub file_locks: bool,
    #[arg(short = 'o', long = "log-file", value_name = "FILE")]
    pub log_file: Option<String>,
    #[arg(short = 'v', long = "verbosity", num_args = 0..=1, default_missing_value = "2", value_parser = clap::value_parser!(u8).range(0..=4))]
    pub verbosity: Option<u8>,
    #[arg(long = "ghost-limit", value_name = "SIZE")]
    pub ghost_limit: Option<String>,
    #[arg(short = 'S', long = "restore-sibling")]
    pub restore_sibling: bool,
    #[arg(short = 'd', long = "restore-detached")]
    pub restore_detached: bool,
}

impl ConfigFile {
    /// Read and parse a configuration file; errors name the file, and the
    /// line of a statement criu's parser would reject.
    pub fn read(path: &Path) -> Result<ConfigFile, String> {
        use clap::Parser;
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let argv = config_argv(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        ConfigFile::try_parse_from(&argv).map_err(|e| {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("").trim_start_matches("error: ");
            format!("{}: {first}", path.display())
        })
    }
}

/// A configuration file's statements as command-line words, by criu's
/// rules: `name` → `--name`; `name value` → `--name`, `value`; a value in
/// double quotes may hold spaces (and `\"`); `#` starts a comment.
pub fn config_argv(text: &str) -> Result<Vec<String>, String> {
    let mut argv = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find([' ', '\t']) {
            Some(i) => (&line[..i], line[i + 1..].trim_start()),
            None => (line, ""),
        };
        argv.push(format!("--{name}"));
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        if let Some(q) = rest.strip_prefix('"') {
            // Up to the next quote not escaped; only a comment may follow.
            let mut end = None;
            let b = q.as_bytes();
            for i in 0..b.len() {
                if b[i] == b'"' && (i == 0 || b[i - 1] != b'\\') {
                    end = Some(i);
                    break;
                }
            }
            let Some(e) = end else {
                return Err(format!("line {}: a value without its closing quote", n + 1));
            };
            let after = q[e + 1..].trim_start();
            if !after.is_empty() && !after.starts_with('#') {
                return Err(format!("line {}: more than one value for {name}", n + 1));
            }
            argv.push(q[..e].replace("\\\"", "\""));
        } else {
            let v = rest.split([' ', '\t']).next().unwrap_or("");
            argv.push(v.to_string());
        }
    }
    Ok(argv)
}

/// An option cryo does not honour; the message names it and says why.
#[derive(Debug, thiserror::Error)]
#[error("criu option {option} is not supported by cryo: {why}")]
pub struct Refused {
    pub option: &'static str,
    pub why: &'static str,
}

const CGROUPS: &str =
    "cryo mounts the cgroup hierarchies itself and dumps its own list of properties (--manage-cgroups and --cgroup-root are supported)";
const MOUNTS: &str = "cryo takes external mounts, veths and network namespaces only (--external mnt[..]:.., \
     veth[..]:.., net[..]:.., --ext-mount-map, --veth-pair, --empty-ns net)";
const REMOTE: &str = "cryo reads and writes image directories only (no page server or streaming; lazy pages only for `cryo restore --lazy-pages` served by `cryo lazy-pages` from the images dir)";

/// The external resources of criu's options: mounts (`--external
/// mnt[A]:B`, `-M A:B`: at dump mountpoint A has key B, at restore key A is
/// at path B) and veths (`--external veth[IN]:OUT`, `--veth-pair IN=OUT`).
#[derive(Debug, Default)]
pub struct Externals {
    pub mounts: std::collections::BTreeMap<String, String>,
    pub veths: std::collections::BTreeMap<String, String>,
    /// Network namespaces from outside the tree (`--external net[INODE]:KEY`): inode → key.
    pub netns: std::collections::BTreeMap<u64, String>,
    /// `--inherit-fd fd[N]:KEY`: key → fd.
    pub inherit: std::collections::BTreeMap<String, i32>,
    /// `--empty-ns net`.
    pub empty_net: bool,
}

impl Common {
    /// `--external`, `--ext-mount-map` and `--veth-pair`, parsed.
    pub fn externals(&self) -> Result<Externals, String> {
        let mut x = Externals::default();
        let bracket = |e: &str, pre: &str| -> Option<(String, String)> {
            let rest = e.strip_prefix(pre)?;
            let (k, v) = rest.split_once("]:")?;
            Some((k.to_string(), v.to_string()))
        };
        for e in &self.external {
            if let Some((k, v)) = bracket(e, "mnt[") {
                x.mounts.insert(k, v);
            } else if let Some((k, v)) = bracket(e, "veth[") {
                if v.contains('@') {
                    return Err(format!(
                        "--external {e}: attaching the outside end to a bridge is not supported"
                    ));
                }
                x.veths.insert(k, v);
            } else if let Some((k, v)) = bracket(e, "net[") {
                let ino = k
                    .parse::<u64>()
                    .map_err(|_| format!("--external {e}: expected net[INODE]:KEY"))?;
                x.netns.insert(ino, v);
            } else if e.starts_with("mnt[") || e.starts_with("veth[") || e.starts_with("net[") {
                return Err(format!(
                    "--external {e}: expected mnt[KEY]:VALUE, veth[IN]:OUT or net[INODE]:KEY"
                ));
            }
        }
        for i in &self.inherit_fd {
            let parsed = i
                .strip_prefix("fd[")
                .and_then(|r| r.split_once("]:"))
                .and_then(|(n, k)| Some((n.parse::<i32>().ok()?, k)));
            let Some((fd, key)) = parsed else {
                return Err(format!("--inherit-fd {i}: expected fd[N]:KEY"));
            };
            x.inherit.insert(key.to_string(), fd);
        }
        for n in &self.empty_ns {
            match n.as_str() {
                "net" => x.empty_net = true,
                other => return Err(format!("--empty-ns {other}: only net can be made empty (as in criu)")),
            }
        }
        for m in &self.ext_mount_map {
            let (k, v) = m
                .split_once(':')
                .ok_or_else(|| format!("--ext-mount-map {m}: expected KEY:VALUE"))?;
            x.mounts.insert(k.to_string(), v.to_string());
        }
        for p in &self.veth_pair {
            let (i, o) = p
                .split_once('=')
                .ok_or_else(|| format!("--veth-pair {p}: expected IN=OUT"))?;
            if o.contains('@') {
                return Err(format!(
                    "--veth-pair {p}: attaching the outside end to a bridge is not supported"
                ));
            }
            x.veths.insert(i.to_string(), o.to_string());
        }
        Ok(x)
    }

    /// The first refused option given, if any.
    pub fn refused(&self) -> Option<Refused> {
        self.refused_but(false)
    }

    /// [`Common::refused`], with `--lazy-pages` honoured when `lazy_ok`
    /// (`cryo restore --lazy-pages`: a restore served by `cryo lazy-pages`).
    pub fn refused_but(&self, lazy_ok: bool) -> Option<Refused> {
        let r = |option, why| Some(Refused { option, why });
        if self.config.is_some() {
            return r("--config", "cryo takes its options from the command line only");
        }
        let cg: [(&'static str, bool); 3] = [
            ("--cgroup-props", self.cgroup_props.is_some()),
            ("--cgroup-props-file", self.cgroup_props_file.is_some()),
            ("--cgroup-dump-controller", !self.cgroup_dump_controller.is_empty()),
        ];
        // With --manage-cgroups ignore criu neither dumps nor restores
        // cgroups, and the other cgroup options do nothing (runc passes
        // --cgroup-root on a v1 host whatever the mode).
        let ignore = self.manage_cgroups.as_deref() == Some("ignore");
        if let Some((o, _)) = cg.iter().find(|(_, on)| *on && !ignore) {
            return r(o, CGROUPS);
        }
        let ns: [(&'static str, bool); 8] = [
            ("--join-ns", !self.join_ns.is_empty()),
            ("--empty-ns", self.empty_ns.iter().any(|n| n != "net")),
            (
                "--external",
                self.external
                    .iter()
                    .any(|e| !e.starts_with("mnt[") && !e.starts_with("veth[") && !e.starts_with("net[")),
            ),
            ("--skip-mnt", !self.skip_mnt.is_empty()),
            ("--enable-fs", !self.enable_fs.is_empty()),
            ("--enable-external-sharing", self.enable_external_sharing),
            ("--enable-external-masters", self.enable_external_masters),
            ("--mntns-compat-mode", self.mntns_compat_mode),
        ];
        if let Some((o, _)) = ns.iter().find(|(_, on)| *on) {
            return r(o, MOUNTS);
        }
        let remote: [(&'static str, bool); 11] = [
            ("--page-server", self.page_server),
            ("--address", self.address.is_some()),
            ("--port", self.port.is_some()),
            ("--ps-socket", self.ps_socket.is_some()),
            ("--lazy-pages", self.lazy_pages && !lazy_ok),
            ("--stream", self.stream),
            ("--tls", self.tls),
            ("--tls-cacert", self.tls_cacert.is_some()),
            ("--tls-cacrl", self.tls_cacrl.is_some()),
            ("--tls-cert", self.tls_cert.is_some()),
            ("--tls-key", self.tls_key.is_some() || self.tls_no_cn_verify),
        ];
        if let Some((o, _)) = remote.iter().find(|(_, on)| *on) {
            return r(o, REMOTE);
        }
        let other: [(&'static str, bool, &'static str); 8] = [
            (
                "--auto-dedup",
                self.auto_dedup,
                "incremental dumps are not supported yet",
            ),
            (
                "--action-script",
                !self.action_script.is_empty(),
                "cryo runs no action scripts",
            ),
            ("--exec-cmd", self.exec_cmd, "cryo runs no command after a restore"),
            (
                "--lsm-profile",
                self.lsm_profile.is_some() || self.lsm_mount_context.is_some(),
                "LSM profiles are not handled",
            ),
            ("--libdir", self.libdir.is_some(), "cryo loads no plugins"),
            (
                "--freeze-cgroup",
                self.freeze_cgroup.as_ref().is_some_and(|p| !Path::new(p).is_dir()),
                "that cgroup does not exist",
            ),
            ("--unprivileged", self.unprivileged, "cryo runs as root"),
            (
                "--feature",
                !self.feature.is_empty() || self.extra || self.experimental || self.ms || self.all,
                "these are options of criu check",
            ),
        ];
        if let Some((o, _, why)) = other.iter().find(|(_, on, _)| *on) {
            return r(o, why);
        }
        None
    }

    /// --manage-cgroups, --cgroup-root and --cgroup-yard (a relative yard is
    /// taken relative to the work dir, else the images dir, as criu, which
    /// runs there).
    pub fn cgroups(&self, images: &Path) -> Result<cryo_engine::state::cgroup::CgOpts, String> {
        use cryo_engine::state::cgroup::{CgOpts, Mode, Root};
        Ok(CgOpts {
            mode: self
                .manage_cgroups
                .as_deref()
                .map_or(Ok(Mode::default()), Mode::parse)?,
            roots: self
                .cgroup_root
                .iter()
                .map(|r| Root::parse(r))
                .collect::<Result<_, _>>()?,
            yard: self
                .cgroup_yard
                .as_ref()
                .map(|y| self.work_dir.as_deref().unwrap_or(images).join(y)),
        })
    }

    /// Where a relative log file goes: the work dir, else the images dir
    /// (criu's rule). "-" means standard error.
    pub fn log_path(&self, images: &Path, log: &Path) -> Option<PathBuf> {
        if log.as_os_str() == "-" {
            return None;
        }
        if log.is_absolute() {
            return Some(log.to_path_buf());
        }
        Some(self.work_dir.as_deref().unwrap_or(images).join(log))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        c: Common,
    }

    fn parse(args: &[&str]) -> Common {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .c
    }

    #[test]
    fn zdtm_command_lines_parse_and_are_not_refused() {
        let c = parse(&[
            "--no-default-config",
            "--timeout",
            "10",
            "--pre-dump-mode",
            "splice",
            "--tcp-established",
            "--ext-unix-sk",
            "--link-remap",
            "--ghost-fiemap",
            "--no-ghost-fiemap",
            "--force-irmap",
            "--irmap-scan-path",
            "/zdtm",
            "--skip-in-flight",
            "--tcp-close",
            "--network-lock",
            "nftables",
        ]);
        assert!(c.refused().is_none());
        assert!(!c.ghost_fiemap, "the last of --ghost-fiemap/--no-ghost-fiemap wins");
    }

    #[test]
    fn options_cryo_does_not_honour_are_refused_by_name() {
        for (args, opt) in [
            (&["--empty-ns", "ipc"][..], "--empty-ns"),
            (&["--cgroup-dump-controller", "memory"][..], "--cgroup-dump-controller"),
            (&["--cgroup-props", "x"][..], "--cgroup-props"),
            (&["--config", "/etc/criu.conf"][..], "--config"),
        ] {
            let e = parse(args).refused().expect("refused");
            assert_eq!(e.option, opt);
            assert!(e.to_string().contains(opt));
        }
        for ok in [
            &["--manage-cgroups=ignore"][..],
            &["--manage-cgroups"],
            &[
                "--manage-cgroups=full",
                "--cgroup-root",
                "/x",
                "--cgroup-root",
                "name=zdtmtst:/p",
            ],
        ] {
            assert!(parse(ok).refused().is_none(), "{ok:?}");
        }
    }

    #[test]
    fn cgroup_options_become_the_engine_s() {
        use cryo_engine::state::cgroup::Mode;
        assert_eq!(parse(&[]).cgroups(Path::new("/i")).unwrap().mode, Mode::Soft);
        assert_eq!(
            parse(&["--manage-cgroups"]).cgroups(Path::new("/i")).unwrap().mode,
            Mode::Soft
        );
        let c = parse(&[
            "--manage-cgroups=strict",
            "--cgroup-root",
            "memory:/m",
            "--cgroup-root",
            "/g",
        ])
        .cgroups(Path::new("/i"))
        .unwrap();
        assert_eq!(c.mode, Mode::Strict);
        assert_eq!(c.roots[0].ctrl.as_deref(), Some("memory"));
        assert_eq!(c.roots[1].ctrl, None);
        assert!(parse(&["--manage-cgroups=hard"]).cgroups(Path::new("/i")).is_err());
        let y = parse(&["--cgroup-yard", "y"]).cgroups(Path::new("/i")).unwrap().yard;
        assert_eq!(
            y.as_deref(),
            Some(Path::new("/i/y")),
            "a relative yard is under the images dir"
        );
        assert!(parse(&["--cgroup-root", "rel"]).cgroups(Path::new("/i")).is_err());
    }

    #[test]
    fn config_files_read_as_criu_reads_them() {
        let argv = config_argv(
            "# runc.conf\n  tcp-established\nmanage-cgroups ignore # no cgroups\n\nlsm-profile \"apparmor:a b\"\nlog-file=x.log\n",
        )
        .unwrap();
        assert_eq!(
            argv,
            [
                "--tcp-established",
                "--manage-cgroups",
                "ignore",
                "--lsm-profile",
                "apparmor:a b",
                "--log-file=x.log"
            ]
        );
        assert!(config_argv("lsm-profile \"x\n").unwrap_err().contains("line 1"));
        let dir = std::env::temp_dir().join(format!("cryo-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("runc.conf");
        std::fs::write(&f, "manage-cgroups ignore\nleave-running\nexternal mnt[/a]:b\n").unwrap();
        let c = ConfigFile::read(&f).unwrap();
        assert_eq!(c.common.manage_cgroups.as_deref(), Some("ignore"));
        assert!(c.leave_running);
        assert_eq!(c.common.external, ["mnt[/a]:b"]);
        std::fs::write(&f, "no-such-option 1\n").unwrap();
        let e = ConfigFile::read(&f).unwrap_err();
        assert!(e.contains("runc.conf") && e.contains("no-such-option"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn relative_logs_go_to_the_work_dir_else_the_images_dir() {
        let c = parse(&[]);
        assert_eq!(c.log_path(Path::new("/i"), Path::new("d.log")), Some("/i/d.log".into()));
        assert_eq!(
            c.log_path(Path::new("/i"), Path::new("/l/d.log")),
            Some("/l/d.log".into())
        );
        assert_eq!(c.log_path(Path::new("/i"), Path::new("-")), None);
        let c = parse(&["-W", "/w"]);
        assert_eq!(c.log_path(Path::new("/i"), Path::new("d.log")), Some("/w/d.log".into()));
    }
}
