//! Network namespaces as CRIU 4.2 stores them: the devices (netdev-N.img:
//! loopback and veth, with their ipv4/ipv6 conf sysctls), the namespace's
//! sysctls (netns-N.img: default/all confs, unix max_dgram_qlen,
//! ping_group_range), and what CRIU leaves to the system's tools, raw:
//! `ip addr save` (ifaddr-N.img), `ip route save` (route-N.img), `ip -6
//! route save` (route6-N.img), `ip rule save` (rule-N.img), `nft list
//! ruleset` (nftables-N.img, as CRIU's libnftables writes it) and
//! iptables-legacy-save when that binary exists (iptables-N.img).
//!
//! Devices are read with RTM_GETLINK (`sys::rtnl`): the ifinfomsg flags as
//! they are (ip(8)'s listing drops IFF_RUNNING). Every other kind of device
//! (bridge, tun, macvlan, sit …) is refused at dump, naming it.

use std::collections::BTreeMap;
use std::path::Path;

use cryo_image::pb;

/// CRIU's devconfs4, in its order (net/ipv4/conf/DEV/NAME).
pub const DEVCONFS4: &[&str] = &[
    "accept_local",
    "accept_redirects",
    "accept_source_route",
    "arp_accept",
    "arp_announce",
    "arp_filter",
    "arp_ignore",
    "arp_notify",
    "bootp_relay",
    "disable_policy",
    "disable_xfrm",
    "force_igmp_version",
    "forwarding",
    "igmpv2_unsolicited_report_interval",
    "igmpv3_unsolicited_report_interval",
    "log_martians",
    "medium_id",
    "promote_secondaries",
    "proxy_arp",
    "proxy_arp_pvlan",
    "route_localnet",
    "rp_filter",
    "secure_redirects",
    "send_redirects",
    "shared_media",
    "src_valid_mark",
    "tag",
    "ignore_routes_with_linkdown",
    "drop_gratuitous_arp",
    "drop_unicast_in_l2_multicast",
];

/// CRIU's devconfs6, in its order (net/ipv6/conf/DEV/NAME).
pub const DEVCONFS6: &[&str] = &[
    "accept_dad",
    "accept_ra",
    "accept_ra_defrtr",
    "accept_ra_from_local",
    "accept_ra_min_hop_limit",
    "accept_ra_mtu",
    "accept_ra_pinfo",
    "accept_ra_rt_info_max_plen",
    "accept_ra_rtr_pref",
    "accept_redirects",
    "accept_source_route",
    "autoconf",
    "dad_transmits",
    "disable_ipv6",
    "drop_unicast_in_l2_multicast",
    "drop_unsolicited_na",
    "force_mld_version",
    "force_tllao",
    "forwarding",
    "hop_limit",
    "ignore_routes_with_linkdown",
    "keep_addr_on_down",
    "max_addresses",
    "max_desync_factor",
    "mldv1_unsolicited_report_interval",
    "mldv2_unsolicited_report_interval",
    "mtu",
    "ndisc_notify",
    "optimistic_dad",
    "proxy_ndp",
    "regen_max_retry",
    "router_probe_interval",
    "router_solicitation_delay",
    "router_solicitation_interval",
    "router_solicitations",
    "stable_secret",
    "suppress_frag_ndisc",
    "temp_prefered_lft",
    "temp_valid_lft",
    "use_oif_addrs_only",
    "use_optimistic",
    "use_tempaddr",
];

const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_LINK_NETNSID: u16 = 37;
const RTM_GETLINK: u16 = 18;

/// Why a network namespace cannot be dumped or restored.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("rtnetlink: {0}")]
    Parse(String),
    #[error("network device {name} (index {index}): {why}")]
    Device { name: String, index: i32, why: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{cmd} failed ({status}): {stderr}")]
    Tool {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error(transparent)]
    Image(#[from] cryo_image::ImageError),
    #[error("{file}: {why}")]
    Invalid { file: String, why: String },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Io { what, source }
}

/// One RTM_NEWLINK message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    pub index: i32,
    pub arphrd: u16,
    pub flags: u32,
    pub name: String,
    pub mtu: u32,
    pub address: Option<Vec<u8>>,
    pub link: Option<u32>,
    pub link_netnsid: Option<i32>,
    pub master: Option<u32>,
    pub kind: Option<String>,
}

fn attrs(mut b: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return Err(format!("attribute {ty} of length {len} in {} bytes", b.len()));
        }
        out.push((ty, &b[4..len]));
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    Ok(out)
}

fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

/// Parse the payload of one RTM_NEWLINK message (ifinfomsg + attributes).
pub fn parse_link(p: &[u8]) -> Result<Link, String> {
    if p.len() < 16 {
        return Err(format!("ifinfomsg of {} bytes", p.len()));
    }
    let mut l = Link {
        arphrd: u16::from_ne_bytes([p[2], p[3]]),
        index: i32::from_ne_bytes(p[4..8].try_into().unwrap()),
        flags: u32::from_ne_bytes(p[8..12].try_into().unwrap()),
        ..Default::default()
    };
    for (ty, v) in attrs(&p[16..])? {
        match ty {
            IFLA_IFNAME => l.name = String::from_utf8_lossy(v.split(|&c| c == 0).next().unwrap_or(v)).into(),
            IFLA_MTU => l.mtu = u32_of(v).ok_or("short IFLA_MTU")?,
            IFLA_ADDRESS => l.address = Some(v.to_vec()),
            IFLA_LINK => l.link = u32_of(v),
            IFLA_MASTER => l.master = u32_of(v),
            IFLA_LINK_NETNSID => l.link_netnsid = u32_of(v).map(|x| x as i32),
            IFLA_LINKINFO => {
                for (t, iv) in attrs(v)? {
                    if t == IFLA_INFO_KIND {
                        l.kind = Some(String::from_utf8_lossy(iv.split(|&c| c == 0).next().unwrap_or(iv)).into());
                    }
                }
            }
            _ => {}
        }
    }
    if l.name.is_empty() {
        return Err(format!("link {} without a name", l.index));
    }
    Ok(l)
}

/// The netdev type CRIU gives a link, or why cryo refuses it.
pub fn link_type(l: &Link) -> Result<pb::NdType, String> {
    if l.arphrd == ARPHRD_LOOPBACK {
        return Ok(pb::NdType::Loopback);
    }
    match (l.arphrd, l.kind.as_deref()) {
        // No IFLA_LINK_NETNSID: the peer is in this namespace too.
        (ARPHRD_ETHER, Some("veth")) if l.link_netnsid.is_none() && l.link.is_some() => {
            Err("a veth pair with both ends in the namespace is not supported".into())
        }
        (ARPHRD_ETHER, Some("veth")) => Ok(pb::NdType::Veth),
        (_, kind) => Err(format!(
            "devices of kind {} (link type {}) are not supported (loopback and veth are)",
            kind.unwrap_or("none"),
            l.arphrd
        )),
    }
}

/// Read one sysctl of the caller's network namespace (`None`: absent).
fn read_sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{path}")).ok()
}

fn conf_entries(proto: &str, dev: &str, names: &[&str]) -> Vec<pb::SysctlEntry> {
    names
        .iter()
        .map(|n| {
            let v = read_sysctl(&format!("net/{proto}/conf/{dev}/{n}"));
            if *n == "stable_secret" {
                // Unset: EIO; CRIU then leaves the string out.
                pb::SysctlEntry {
                    r#type: pb::SysctlType::CtlStr as i32,
                    iarg: None,
                    sarg: v,
                }
            } else {
                pb::SysctlEntry {
                    r#type: pb::SysctlType::Ctl32 as i32,
                    iarg: v.and_then(|s| s.trim().parse().ok()),
                    sarg: None,
                }
            }
        })
        .collect()
}

/// The netdev entry of a link, read in its namespace (`ns_id`: the
/// namespace's id; `peer_ns`: the id of the namespace a link-netnsid names,
/// None when outside the tree).
fn netdev_entry(l: &Link, ty: pb::NdType, ns_id: u32, peer_ns: &dyn Fn(i32) -> Option<u32>) -> pb::NetDeviceEntry {
    let ipv6 = Path::new("/proc/sys/net/ipv6").exists();
    pb::NetDeviceEntry {
        r#type: ty as i32,
        ifindex: l.index as u32,
        mtu: l.mtu,
        flags: l.flags,
        name: l.name.clone(),
        tun: None,
        address: l.address.clone().filter(|_| ty != pb::NdType::Loopback),
        conf: vec![],
        conf4: conf_entries("ipv4", &l.name, DEVCONFS4),
        conf6: if ipv6 {
            conf_entries("ipv6", &l.name, DEVCONFS6)
        } else {
            DEVCONFS6
                .iter()
                .map(|n| pb::SysctlEntry {
                    r#type: if *n == "stable_secret" {
                        pb::SysctlType::CtlStr
                    } else {
                        pb::SysctlType::Ctl32
                    } as i32,
                    iarg: None,
                    sarg: None,
                })
                .collect()
        },
        macvlan: None,
        peer_ifindex: Some(l.link.unwrap_or(l.index as u32)),
        peer_nsid: match l.link_netnsid {
            None => Some(ns_id),
            Some(n) => peer_ns(n),
        },
        master: l.master,
        sit: None,
    }
}

/// The namespace's own sysctls (netns-N.img).
fn netns_entry() -> pb::NetnsEntry {
    let unix = read_sysctl("net/unix/max_dgram_qlen").and_then(|s| s.trim().parse().ok());
    let pgr = read_sysctl("net/ipv4/ping_group_range");
    // The default "1 0" is left out, as CRIU does.
    let pgr = pgr.filter(|s| {
        let v: Vec<&str> = s.split_whitespace().collect();
        v != ["1", "0"]
    });
    pb::NetnsEntry {
        def_conf: vec![],
        all_conf: vec![],
        def_conf4: conf_entries("ipv4", "default", DEVCONFS4),
        all_conf4: conf_entries("ipv4", "all", DEVCONFS4),
        def_conf6: conf_entries("ipv6", "default", DEVCONFS6),
        all_conf6: conf_entries("ipv6", "all", DEVCONFS6),
        nsids: vec![],
        ext_key: None,
        unix_conf: unix
            .map(|v| {
                vec![pb::SysctlEntry {
                    r#type: pb::SysctlType::Ctl32 as i32,
                    iarg: Some(v),
                    sarg: None,
                }]
            })
            .unwrap_or_default(),
        ipv4_sysctl: vec![pb::SysctlEntry {
            r#type: pb::SysctlType::CtlStr as i32,
            iarg: None,
            sarg: pgr,
        }],
    }
}

/// Run a tool (in the current thread's namespaces) with its stdout into `out`.
fn run_tool(cmd: &[&str], out: &Path, may_fail: bool) -> Result<bool, NetError> {
    let f = std::fs::File::create(out).map_err(io_err(out.display().to_string()))?;
    let o = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(std::process::Stdio::null())
        .stdout(f)
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(io_err(cmd.join(" ")))?;
    if !o.status.success() {
        if may_fail {
            let _ = std::fs::remove_file(out);
            return Ok(false);
        }
        return Err(NetError::Tool {
            cmd: cmd.join(" "),
            status: o.status.to_string(),
            stderr: String::from_utf8_lossy(&o.stderr).trim().into(),
        });
    }
    Ok(true)
}

fn which(bin: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(bin).exists())
}

/// The links of the caller's namespace.
pub fn links() -> Result<Vec<Link>, NetError> {
    // rtgenmsg padded to an ifinfomsg: family AF_UNSPEC.
    let body = [0u8; 16];
    let msgs = crate::sys::rtnl::route_dump(RTM_GETLINK, &body).map_err(io_err("RTM_GETLINK"))?;
    msgs.iter().map(|m| parse_link(m).map_err(NetError::Parse)).collect()
}

/// Check that every device of the namespace of `ns` can be dumped (nothing written).
pub fn survey(ns: &std::fs::File) -> Result<Vec<Link>, NetError> {
    crate::sys::rtnl::in_netns(ns, || {
        let links = links()?;
        for l in &links {
            link_type(l).map_err(|why| NetError::Device {
                name: l.name.clone(),
                index: l.index,
                why,
            })?;
        }
        Ok(links)
    })
    .map_err(io_err("setns into the network namespace"))?
}

/// Dump the network namespace of `ns` (an open /proc/PID/ns/net) as
/// namespace `ns_id` into `dir`. Returns the names of the files written.
pub fn dump(
    ns: &std::fs::File,
    ns_id: u32,
    dir: &Path,
    peer_ns: &(dyn Fn(i32) -> Option<u32> + Sync),
) -> Result<Vec<String>, NetError> {
    let mut written = Vec::new();
    let res = crate::sys::rtnl::in_netns(ns, || -> Result<(), NetError> {
        let links = links()?;
        let mut devs = Vec::new();
        for l in &links {
            let ty = link_type(l).map_err(|why| NetError::Device {
                name: l.name.clone(),
                index: l.index,
                why,
            })?;
            devs.push(netdev_entry(l, ty, ns_id, peer_ns));
        }
        let name = format!("netdev-{ns_id}.img");
        written.push(name.clone());
        let mut w = cryo_image::ImageWriter::create(dir.join(&name), Some("NETDEV"))?;
        for d in &devs {
            w.entry(d)?;
        }
        w.finish()?;
        let ipv6 = Path::new("/proc/sys/net/ipv6").exists();
        let mut tools: Vec<(String, Vec<&str>, bool)> = vec![
            (format!("ifaddr-{ns_id}.img"), vec!["ip", "addr", "save"], false),
            (format!("route-{ns_id}.img"), vec!["ip", "route", "save"], false),
        ];
        if ipv6 {
            tools.push((format!("route6-{ns_id}.img"), vec!["ip", "-6", "route", "save"], false));
        }
        tools.push((format!("rule-{ns_id}.img"), vec!["ip", "rule", "save"], true));
        if which("iptables-legacy-save") {
            tools.push((format!("iptables-{ns_id}.img"), vec!["iptables-legacy-save"], false));
            if ipv6 && which("ip6tables-legacy-save") {
                tools.push((format!("ip6tables-{ns_id}.img"), vec!["ip6tables-legacy-save"], false));
            }
        }
        tools.push((format!("nftables-{ns_id}.img"), vec!["nft", "list", "ruleset"], false));
        for (name, cmd, may_fail) in tools {
            written.push(name.clone());
            run_tool(&cmd, &dir.join(&name), may_fail)?;
        }
        let name = format!("netns-{ns_id}.img");
        written.push(name.clone());
        let mut w = cryo_image::ImageWriter::create(dir.join(&name), Some("NETNS"))?;
        w.entry(&netns_entry())?;
        w.finish()?;
        Ok(())
    })
    .map_err(io_err("setns into the network namespace"))
    .and_then(|r| r);
    match res {
        Ok(()) => Ok(written.into_iter().filter(|n| dir.join(n).exists()).collect()),
        Err(e) => {
            for n in &written {
                let _ = std::fs::remove_file(dir.join(n));
            }
            Err(e)
        }
    }
}

/// The calling thread in another network namespace for a while (the
/// engine opens the tree's sockets in the tree's namespace); back in its
/// own when dropped.
pub struct NetEntered {
    home: std::fs::File,
}

/// Enter the network namespace `ns` (an open ns file) on the calling thread.
pub fn enter(ns: &std::fs::File) -> Result<NetEntered, NetError> {
    let home = std::fs::File::open("/proc/thread-self/ns/net").map_err(io_err("/proc/thread-self/ns/net"))?;
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| io_err("setns into the restored network namespace")(e.into()))?;
    Ok(NetEntered { home })
}

impl Drop for NetEntered {
    fn drop(&mut self) {
        let _ = nix::sched::setns(&self.home, nix::sched::CloneFlags::CLONE_NEWNET);
    }
}

/// A network namespace from outside the tree (criu's `--external
/// net[INODE]:KEY`): netns-N.img holds only its key, as CRIU writes it.
pub fn dump_external(ns_id: u32, dir: &Path, key: &str) -> Result<Vec<String>, NetError> {
    let name = format!("netns-{ns_id}.img");
    let mut w = cryo_image::ImageWriter::create(dir.join(&name), Some("NETNS"))?;
    w.entry(&pb::NetnsEntry {
        ext_key: Some(key.to_string()),
        ..Default::default()
    })?;
    w.finish()?;
    Ok(vec![name])
}

/// A network namespace dumped empty (criu's `--empty-ns net`): netns-N.img
/// without an entry, as CRIU writes it; nothing else.
pub fn dump_empty(ns_id: u32, dir: &Path) -> Result<Vec<String>, NetError> {
    let name = format!("netns-{ns_id}.img");
    let w = cryo_image::ImageWriter::create(dir.join(&name), Some("NETNS"))?;
    w.finish()?;
    Ok(vec![name])
}

/// A new network namespace with nothing in it but the kernel's loopback
/// (down), for a tree dumped with `--empty-ns net`: the caller (runc,
/// podman) sets it up, as with CRIU.
pub fn make_empty() -> Result<NetNs, NetError> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<NetNs, NetError> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| io_err("unshare a network namespace")(e.into()))?;
            let fd = std::fs::File::open("/proc/thread-self/ns/net").map_err(io_err("/proc/thread-self/ns/net"))?;
            Ok(NetNs { fd })
        })
        .join()
        .map_err(|_| NetError::Parse("the network namespace thread panicked".into()))?
    })
}

/// A network device of the image, checked, for the restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub ty: pb::NdType,
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub flags: u32,
    pub address: Option<Vec<u8>>,
    /// A veth's peer: its index and namespace id (None: outside the tree).
    pub peer: Option<(u32, u32)>,
    pub conf4: Vec<(String, pb::SysctlEntry)>,
    pub conf6: Vec<(String, pb::SysctlEntry)>,
}

/// A network namespace of the image, checked, for the restore.
#[derive(Debug, Clone, PartialEq)]
pub struct NetPlan {
    pub ns_id: u32,
    pub devices: Vec<Device>,
    pub netns: Option<pb::NetnsEntry>,
}

/// Describe: netdev-N.img and netns-N.img entries → the devices to make.
/// Refuses devices cryo cannot make (before any task exists) and, for a
/// veth whose peer is outside the tree, one `veth_pairs` (IFNAME →
/// OUTSIDE, from `--external veth[IFNAME]:OUTSIDE` / `--veth-pair`) does not name.
pub fn describe(
    ns_id: u32,
    devs: &[pb::NetDeviceEntry],
    netns: Option<pb::NetnsEntry>,
    veth_pairs: &BTreeMap<String, String>,
) -> Result<NetPlan, NetError> {
    let file = format!("netdev-{ns_id}.img");
    let mut out = Vec::new();
    for (i, d) in devs.iter().enumerate() {
        let ty = pb::NdType::try_from(d.r#type).map_err(|_| NetError::Invalid {
            file: file.clone(),
            why: format!("entry {i} ({}): unknown device type {}", d.name, d.r#type),
        })?;
        let bad = |why: String| NetError::Device {
            name: d.name.clone(),
            index: d.ifindex as i32,
            why,
        };
        match ty {
            pb::NdType::Loopback => {}
            pb::NdType::Veth => {
                let inside = d.peer_nsid.is_some() && d.peer_nsid != Some(ns_id);
                if !inside && !veth_pairs.contains_key(&d.name) {
                    return Err(bad(format!(
                        "a veth whose peer is outside the dumped tree: name its outside end with --external \
                         veth[{}]:OUTSIDE_NAME (or --veth-pair {}=OUTSIDE_NAME)",
                        d.name, d.name
                    )));
                }
                if d.peer_nsid == Some(ns_id) {
                    return Err(bad("a veth with both ends in one namespace is not supported".into()));
                }
            }
            other => return Err(bad(format!("{other:?} devices are not restored by cryo"))),
        }
        let named = |names: &[&str], v: &[pb::SysctlEntry]| {
            names
                .iter()
                .zip(v)
                .map(|(n, e)| (n.to_string(), e.clone()))
                .collect::<Vec<_>>()
        };
        out.push(Device {
            ty,
            index: d.ifindex,
            name: d.name.clone(),
            mtu: d.mtu,
            flags: d.flags,
            address: d.address.clone(),
            peer: match (d.peer_ifindex, d.peer_nsid) {
                (Some(i), Some(n)) if ty == pb::NdType::Veth => Some((i, n)),
                _ => None,
            },
            conf4: named(DEVCONFS4, &d.conf4),
            conf6: named(DEVCONFS6, &d.conf6),
        });
    }
    if !out.iter().any(|d| d.ty == pb::NdType::Loopback) {
        return Err(NetError::Invalid {
            file,
            why: "no loopback device".into(),
        });
    }
    Ok(NetPlan {
        ns_id,
        devices: out,
        netns,
    })
}

/// A network namespace made for a restore, held by an open /proc/…/ns/net.
pub struct NetNs {
    pub fd: std::fs::File,
}

fn run(cmd: &[&str], input: Option<&Path>) -> Result<(), NetError> {
    let mut c = std::process::Command::new(cmd[0]);
    c.args(&cmd[1..]).stderr(std::process::Stdio::piped());
    c.stdout(std::process::Stdio::null());
    if let Some(p) = input {
        c.stdin(std::fs::File::open(p).map_err(io_err(p.display().to_string()))?);
    } else {
        c.stdin(std::process::Stdio::null());
    }
    let o = c.output().map_err(io_err(cmd.join(" ")))?;
    if !o.status.success() {
        return Err(NetError::Tool {
            cmd: format!(
                "{}{}",
                cmd.join(" "),
                input.map(|p| format!(" < {}", p.display())).unwrap_or_default()
            ),
            status: o.status.to_string(),
            stderr: String::from_utf8_lossy(&o.stderr).trim().into(),
        });
    }
    Ok(())
}

fn mac(a: &[u8]) -> String {
    a.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Write the sysctls of `confs` that differ from what the kernel has now
/// (accept_redirects last, after forwarding, as CRIU orders them).
fn write_confs(proto: &str, dev: &str, confs: &[(String, pb::SysctlEntry)]) -> Result<(), NetError> {
    let mut order: Vec<&(String, pb::SysctlEntry)> = confs.iter().filter(|(n, _)| n != "accept_redirects").collect();
    order.extend(confs.iter().filter(|(n, _)| n == "accept_redirects"));
    for (name, e) in order {
        let path = format!("net/{proto}/conf/{dev}/{name}");
        let want = match (e.iarg, &e.sarg) {
            (Some(i), _) => i.to_string(),
            (None, Some(s)) => s.trim_end().to_string(),
            _ => continue,
        };
        let now = read_sysctl(&path);
        if now.as_deref().map(str::trim_end) == Some(want.as_str()) {
            continue;
        }
        if now.is_none() {
            // The kernel lacks it: CRIU skips sysctls it cannot read too.
            continue;
        }
        std::fs::write(format!("/proc/sys/{path}"), format!("{want}\n"))
            .map_err(io_err(format!("write {path}={want}")))?;
    }
    Ok(())
}

/// An image set CRIU dumped holds the rules of its network lock (a `CRIU`
/// chain dropping what is not marked 0xC114, jumped to from INPUT and
/// OUTPUT in the ip/ip6 filter tables, or a `CRIU…` nftables table); CRIU
/// removes them after its restore, and so does cryo's (the caller's thread
/// is in the restored namespace).
fn unlock_criu() -> Result<(), NetError> {
    let o = std::process::Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .map_err(io_err("nft list ruleset"))?;
    let rules = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut table = String::new();
    let mut locked = Vec::new();
    for l in rules.lines() {
        if let Some(t) = l.strip_prefix("table ") {
            table = t.trim_end_matches(" {").to_string();
            if table.split_whitespace().nth(1).is_some_and(|n| n.starts_with("CRIU")) {
                run(
                    &[
                        "nft",
                        "delete",
                        "table",
                        table.split_whitespace().next().unwrap(),
                        table.split_whitespace().nth(1).unwrap(),
                    ],
                    None,
                )?;
            }
        } else if l.trim() == "chain CRIU {" {
            locked.push(table.clone());
        }
    }
    for t in locked {
        let bin = match t.as_str() {
            "ip filter" => "iptables",
            "ip6 filter" => "ip6tables",
            _ => continue,
        };
        for hook in ["INPUT", "OUTPUT"] {
            if rules.contains("jump CRIU") {
                // Only the jumps CRIU added; a missing one is not an error.
                let _ = run(&[bin, "-w", "-D", hook, "-j", "CRIU"], None);
            }
        }
        run(&[bin, "-w", "-F", "CRIU"], None)?;
        run(&[bin, "-w", "-X", "CRIU"], None)?;
    }
    Ok(())
}

/// Probe, in a scratch network namespace that dies with its thread, that
/// this kernel can make the devices of `plan` (before any task exists).
pub fn check_restore(plan: &NetPlan) -> Result<(), NetError> {
    if !plan.devices.iter().any(|d| d.ty == pb::NdType::Veth) {
        return Ok(());
    }
    std::thread::scope(|s| {
        s.spawn(|| -> Result<(), NetError> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| io_err("unshare a scratch network namespace")(e.into()))?;
            run(
                &[
                    "ip",
                    "link",
                    "add",
                    "cryoprobe0",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "cryoprobe1",
                ],
                None,
            )
            .map_err(|e| NetError::Device {
                name: plan
                    .devices
                    .iter()
                    .find(|d| d.ty == pb::NdType::Veth)
                    .unwrap()
                    .name
                    .clone(),
                index: 0,
                why: format!("this kernel cannot make veth devices: {e}"),
            })
        })
        .join()
        .map_err(|_| NetError::Parse("the probe thread panicked".into()))?
    })
}

/// Make a new network namespace and restore `plan` in it: devices (lo up,
/// veth pairs whose outside ends go to the engine's namespace under the
/// names `veth_pairs` gives, in the network namespace of `outside_pid`,
/// the engine's own in a restore), their sysctls, the addresses, routes,
/// rules, nftables (and legacy iptables) rules, the namespace's sysctls.
///
/// With `into`, the namespace exists already (made in the tree's user
/// namespace, see state::ns::holder): the thread enters it instead.
pub fn make_ns(
    plan: &NetPlan,
    images: &Path,
    veth_pairs: &BTreeMap<String, String>,
    outside_pid: u32,
    into: Option<&std::fs::File>,
) -> Result<NetNs, NetError> {
    let outside = outside_pid.to_string();
    std::thread::scope(|s| {
        s.spawn(|| -> Result<NetNs, NetError> {
            match into {
                Some(ns) => nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    io_err("setns into the network namespace made in the tree's user namespace")(e.into())
                })?,
                None => nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| io_err("unshare a network namespace")(e.into()))?,
            }
            let fd = std::fs::File::open("/proc/thread-self/ns/net").map_err(io_err("/proc/thread-self/ns/net"))?;
            let ns_id = plan.ns_id;
            if let Some(n) = &plan.netns {
                let named = |v: &[pb::SysctlEntry], names: &[&str]| {
                    names
                        .iter()
                        .zip(v)
                        .map(|(a, b)| (a.to_string(), b.clone()))
                        .collect::<Vec<_>>()
                };
                write_confs("ipv4", "all", &named(&n.all_conf4, DEVCONFS4))?;
                write_confs("ipv4", "default", &named(&n.def_conf4, DEVCONFS4))?;
                if Path::new("/proc/sys/net/ipv6").exists() {
                    write_confs("ipv6", "all", &named(&n.all_conf6, DEVCONFS6))?;
                    write_confs("ipv6", "default", &named(&n.def_conf6, DEVCONFS6))?;
                }
                if let Some(v) = n.unix_conf.first().and_then(|e| e.iarg) {
                    std::fs::write("/proc/sys/net/unix/max_dgram_qlen", format!("{v}\n"))
                        .map_err(io_err("write net/unix/max_dgram_qlen"))?;
                }
                if let Some(v) = n.ipv4_sysctl.first().and_then(|e| e.sarg.as_ref()) {
                    std::fs::write("/proc/sys/net/ipv4/ping_group_range", v)
                        .map_err(io_err("write net/ipv4/ping_group_range"))?;
                }
            }
            for d in &plan.devices {
                let idx = d.index.to_string();
                let mtu = d.mtu.to_string();
                match d.ty {
                    pb::NdType::Loopback => {
                        run(&["ip", "link", "set", "lo", "mtu", &mtu], None)?;
                    }
                    pb::NdType::Veth => {
                        let out = veth_pairs.get(&d.name).ok_or_else(|| NetError::Device {
                            name: d.name.clone(),
                            index: d.index as i32,
                            why: "no outside name".into(),
                        })?;
                        run(
                            &[
                                "ip", "link", "add", &d.name, "index", &idx, "mtu", &mtu, "type", "veth", "peer",
                                "name", out, "netns", &outside,
                            ],
                            None,
                        )?;
                        if let Some(a) = &d.address {
                            run(&["ip", "link", "set", &d.name, "address", &mac(a)], None)?;
                        }
                    }
                    _ => unreachable!("describe refuses other devices"),
                }
                write_confs("ipv4", &d.name, &d.conf4)?;
                if Path::new("/proc/sys/net/ipv6").exists() {
                    write_confs("ipv6", &d.name, &d.conf6)?;
                }
                if d.flags & libc::IFF_UP as u32 != 0 {
                    run(&["ip", "link", "set", &d.name, "up"], None)?;
                }
            }
            let img = |n: &str| images.join(format!("{n}-{ns_id}.img"));
            let nonempty = |p: &Path| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false);
            if nonempty(&img("ifaddr")) {
                run(&["ip", "addr", "restore"], Some(&img("ifaddr")))?;
            }
            if nonempty(&img("route")) {
                run(&["ip", "route", "restore"], Some(&img("route")))?;
            }
            if nonempty(&img("route6")) {
                run(&["ip", "-6", "route", "restore"], Some(&img("route6")))?;
            }
            if nonempty(&img("rule")) {
                // The default rules are there already: CRIU flushes first.
                run(&["ip", "rule", "flush"], None)?;
                run(&["ip", "rule", "restore"], Some(&img("rule")))?;
            }
            if nonempty(&img("iptables")) {
                run(&["iptables-legacy-restore"], Some(&img("iptables")))?;
            }
            if nonempty(&img("ip6tables")) {
                run(&["ip6tables-legacy-restore"], Some(&img("ip6tables")))?;
            }
            if nonempty(&img("nftables")) {
                run(&["nft", "-f", "-"], Some(&img("nftables")))?;
            }
            unlock_criu()?;
            Ok(NetNs { fd })
        })
        .join()
        .map_err(|_| NetError::Parse("the network namespace thread panicked".into()))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, v: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(v);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn ifinfo(ty: u16, index: i32, flags: u32, at: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![0u8, 0];
        p.extend_from_slice(&ty.to_ne_bytes());
        p.extend_from_slice(&index.to_ne_bytes());
        p.extend_from_slice(&flags.to_ne_bytes());
        p.extend_from_slice(&0u32.to_ne_bytes());
        for a in at {
            p.extend_from_slice(a);
        }
        p
    }

    #[test]
    fn parses_links() {
        let lo = ifinfo(772, 1, 0x10049, &[attr(3, b"lo\0"), attr(4, &65536u32.to_ne_bytes())]);
        let l = parse_link(&lo).unwrap();
        assert_eq!((l.index, l.flags, l.mtu, l.name.as_str()), (1, 0x10049, 65536, "lo"));
        assert_eq!(link_type(&l).unwrap(), pb::NdType::Loopback);
        let info = attr(1, b"veth\0");
        let veth = ifinfo(
            1,
            7,
            0x1003,
            &[
                attr(3, b"eth0\0"),
                attr(4, &1500u32.to_ne_bytes()),
                attr(1, &[2, 0, 0, 0, 0, 1]),
                attr(5, &8u32.to_ne_bytes()),
                attr(37, &0u32.to_ne_bytes()),
                attr(18, &info),
            ],
        );
        let v = parse_link(&veth).unwrap();
        assert_eq!(v.kind.as_deref(), Some("veth"));
        assert_eq!((v.link, v.link_netnsid), (Some(8), Some(0)));
        assert_eq!(link_type(&v).unwrap(), pb::NdType::Veth);
        let both = ifinfo(
            1,
            8,
            0x1003,
            &[
                attr(3, b"v1\0"),
                attr(5, &7u32.to_ne_bytes()),
                attr(18, &attr(1, b"veth\0")),
            ],
        );
        assert!(link_type(&parse_link(&both).unwrap())
            .unwrap_err()
            .contains("both ends"));
        let br = parse_link(&ifinfo(1, 3, 0, &[attr(3, b"br0\0"), attr(18, &attr(1, b"bridge\0"))])).unwrap();
        assert!(link_type(&br).unwrap_err().contains("bridge"));
        assert!(parse_link(&[0; 8]).is_err());
        assert!(parse_link(&ifinfo(1, 3, 0, &[vec![200, 0, 3, 0]])).is_err());
    }

    #[test]
    fn outside_veths_need_a_pair() {
        let lo = pb::NetDeviceEntry {
            r#type: pb::NdType::Loopback as i32,
            ifindex: 1,
            name: "lo".into(),
            ..Default::default()
        };
        let veth = pb::NetDeviceEntry {
            r#type: pb::NdType::Veth as i32,
            ifindex: 2,
            name: "eth0".into(),
            peer_ifindex: Some(5),
            ..Default::default()
        };
        let e = describe(3, &[lo.clone(), veth.clone()], None, &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("--external veth[eth0]:OUTSIDE_NAME"), "{e}");
        let pairs = BTreeMap::from([("eth0".to_string(), "out0".to_string())]);
        let p = describe(3, &[lo.clone(), veth], None, &pairs).unwrap();
        assert_eq!(p.devices.len(), 2);
        assert_eq!(p.devices[1].peer, None);
        let tun = pb::NetDeviceEntry {
            r#type: pb::NdType::Tun as i32,
            name: "tun0".into(),
            ..Default::default()
        };
        let e = describe(3, &[lo, tun], None, &pairs).unwrap_err();
        assert!(e.to_string().contains("tun0"), "{e}");
    }
}
