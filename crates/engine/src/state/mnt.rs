//! Mount namespaces: /proc/PID/mountinfo as CRIU 4.2 reads it, the
//! `MntEntry`s of mountpoints-N.img, and the checks of a mount tree that
//! the restore can rebuild.
//!
//! One line of mountinfo is
//! `ID PARENT MAJ:MIN ROOT MOUNTPOINT MNT-OPTS [OPTIONAL...] - FSTYPE SOURCE SB-OPTS`;
//! CRIU keeps the per-mount options as MS_* flags (`flags`, plus
//! MS_STRICTATIME when neither relatime nor noatime is set), the optional
//! fields as MS_SHARED/MS_SLAVE/MS_UNBINDABLE with the group ids, and the
//! superblock options as `sb_flags` (ro, sync, dirsync, mand) and the rest
//! as the `options` string given back to mount(2). Paths are unmangled
//! (`\040` space, `\011` tab, `\134` backslash; CRIU unmangles only these).
//! A root ending in ` (deleted)` is kept without it and `deleted` set.
//!
//! The image holds the mounts in the reverse of mountinfo's order (CRIU
//! prepends each parsed line to its list and writes the list).

use std::collections::{BTreeMap, BTreeSet};

use cryo_image::pb;

// MS_* flags (linux/mount.h), as CRIU stores them.
pub const MS_RDONLY: u32 = 1;
pub const MS_NOSUID: u32 = 2;
pub const MS_NODEV: u32 = 4;
pub const MS_NOEXEC: u32 = 8;
pub const MS_SYNCHRONOUS: u32 = 16;
pub const MS_MANDLOCK: u32 = 64;
pub const MS_DIRSYNC: u32 = 128;
pub const MS_NOATIME: u32 = 1024;
pub const MS_NODIRATIME: u32 = 2048;
pub const MS_BIND: u32 = 4096;
pub const MS_REC: u32 = 16384;
pub const MS_UNBINDABLE: u32 = 1 << 17;
pub const MS_PRIVATE: u32 = 1 << 18;
pub const MS_SLAVE: u32 = 1 << 19;
pub const MS_SHARED: u32 = 1 << 20;
pub const MS_RELATIME: u32 = 1 << 21;
pub const MS_STRICTATIME: u32 = 1 << 24;

/// The propagation bits of `flags`.
pub const MS_PROPAGATION: u32 = MS_SHARED | MS_SLAVE | MS_UNBINDABLE | MS_PRIVATE;

/// Why mountinfo, a mount tree or a mountpoints image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MntError {
    #[error("mountinfo line {line}: {why}: {text:?}")]
    Parse { line: usize, why: String, text: String },
    #[error("mount {mnt_id} at {mountpoint}: {why}")]
    Mount {
        mnt_id: u32,
        mountpoint: String,
        why: String,
    },
    #[error("mount tree: {0}")]
    Tree(String),
}

/// CRIU's fstype codes (mnt.proto `fstype`) by the kernel's name; names
/// it does not know are UNSUPPORTED (0).
pub fn fstype_code(name: &str) -> pb::Fstype {
    use pb::Fstype as F;
    // The kernel reports subtypes as "fuse.sshfs": CRIU drops them.
    match name.split('.').next().unwrap_or(name) {
        "proc" => F::Proc,
        "sysfs" => F::Sysfs,
        "devtmpfs" => F::Devtmpfs,
        "binfmt_misc" => F::BinfmtMisc,
        "tmpfs" => F::Tmpfs,
        "devpts" => F::Devpts,
        "simfs" => F::Simfs,
        "pstore" => F::Pstore,
        "mqueue" => F::Mqueue,
        "securityfs" => F::Securityfs,
        "fusectl" => F::Fusectl,
        "debugfs" => F::Debugfs,
        "tracefs" => F::Tracefs,
        "cgroup" => F::Cgroup,
        "cgroup2" => F::Cgroup2,
        "aufs" => F::Aufs,
        "fuse" => F::Fuse,
        "overlay" => F::Overlayfs,
        "autofs" => F::Autofs,
        _ => F::Unsupported,
    }
}

/// The kernel's name of the file systems cryo mounts anew at restore
/// (fsroot mounts of these types); None for the others.
pub fn mountable_fs(code: u32) -> Option<&'static str> {
    use pb::Fstype as F;
    match F::try_from(code as i32).ok()? {
        F::Proc => Some("proc"),
        F::Sysfs => Some("sysfs"),
        F::Tmpfs => Some("tmpfs"),
        F::Devpts => Some("devpts"),
        F::Mqueue => Some("mqueue"),
        F::Cgroup2 => Some("cgroup2"),
        _ => None,
    }
}

/// CRIU's kernel device encoding (MKKDEV: 12 bits of major above 20 of minor).
pub fn mkkdev(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xfffff)
}

/// One line of mountinfo, as CRIU parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mnt_id: u32,
    pub parent_mnt_id: u32,
    /// MKKDEV(major, minor).
    pub s_dev: u32,
    pub root: String,
    pub deleted: bool,
    pub mountpoint: String,
    /// Per-mount options and propagation as MS_* flags.
    pub flags: u32,
    pub shared_id: u32,
    pub master_id: u32,
    /// The kernel's name ("tmpfs", "fuse.sshfs").
    pub fsname: String,
    pub fstype: pb::Fstype,
    pub source: String,
    /// Superblock options CRIU keeps as flags (ro, sync, dirsync, mand).
    pub sb_flags: u32,
    /// The other superblock options, comma-separated, for mount(2).
    pub options: String,
}

fn unmangle(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
}

fn mnt_flags(opts: &str) -> Result<u32, String> {
    let mut f = 0;
    for o in opts.split(',') {
        f |= match o {
            "rw" => 0,
            "ro" => MS_RDONLY,
            "nosuid" => MS_NOSUID,
            "nodev" => MS_NODEV,
            "noexec" => MS_NOEXEC,
            "noatime" => MS_NOATIME,
            "nodiratime" => MS_NODIRATIME,
            "relatime" => MS_RELATIME,
            _ => return Err(format!("unknown per-mount option {o:?}")),
        };
    }
    // Otherwise the kernel assumes relatime by default.
    if f & (MS_RELATIME | MS_NOATIME) == 0 {
        f |= MS_STRICTATIME;
    }
    Ok(f)
}

fn sb_opts(opts: &str) -> (u32, String) {
    let mut f = 0;
    let mut rest = Vec::new();
    for o in opts.split(',') {
        match o {
            "rw" => {}
            "ro" => f |= MS_RDONLY,
            "sync" => f |= MS_SYNCHRONOUS,
            "dirsync" => f |= MS_DIRSYNC,
            // CRIU's table spells it "mad" (sic): "mand" stays an option.
            "mad" => f |= MS_MANDLOCK,
            _ => rest.push(o),
        }
    }
    (f, rest.join(","))
}

/// Parse one mountinfo line.
pub fn parse_mountinfo_line(text: &str) -> Result<MountInfo, String> {
    let (head, tail) = text
        .split_once(" - ")
        .ok_or_else(|| "no \" - \" separator before the file system type".to_string())?;
    let mut it = head.split(' ');
    let mut next = |what: &str| it.next().ok_or_else(|| format!("no {what}"));
    let num = |s: &str, what: &str| s.parse::<u32>().map_err(|_| format!("bad {what} {s:?}"));
    let mnt_id = num(next("mount id")?, "mount id")?;
    let parent_mnt_id = num(next("parent id")?, "parent id")?;
    let dev = next("device")?;
    let (ma, mi) = dev.split_once(':').ok_or_else(|| format!("bad device {dev:?}"))?;
    let s_dev = mkkdev(num(ma, "major")?, num(mi, "minor")?);
    let mut root = unmangle(next("root")?);
    let mut deleted = false;
    if let Some(r) = root.strip_suffix(" (deleted)") {
        root = r.to_string();
        deleted = true;
    }
    let mountpoint = unmangle(next("mountpoint")?);
    let mut flags = mnt_flags(next("mount options")?)?;
    let (mut shared_id, mut master_id) = (0, 0);
    for opt in it {
        if let Some(n) = opt.strip_prefix("shared:") {
            flags |= MS_SHARED;
            shared_id = num(n, "shared group")?;
        } else if let Some(n) = opt.strip_prefix("master:") {
            flags |= MS_SLAVE;
            master_id = num(n, "master group")?;
        } else if opt.starts_with("propagate_from:") {
        } else if opt == "unbindable" {
            flags |= MS_UNBINDABLE;
        } else if !opt.is_empty() {
            return Err(format!("unknown optional field {opt:?}"));
        }
    }
    let mut t = tail.split(' ');
    let fsname = t
        .next()
        .filter(|s| !s.is_empty())
        .ok_or("no file system type")?
        .to_string();
    let a = t.next().ok_or("no source")?;
    // The source may be empty ("- tmpfs  rw"): then two fields remain.
    let (source, opts) = match t.next() {
        Some(o) => (unmangle(a), o),
        None => (String::new(), a),
    };
    let (sb_flags, options) = sb_opts(opts.trim_end());
    Ok(MountInfo {
        mnt_id,
        parent_mnt_id,
        s_dev,
        root,
        deleted,
        mountpoint,
        flags,
        shared_id,
        master_id,
        fstype: fstype_code(&fsname),
        fsname,
        source,
        sb_flags,
        options,
    })
}

/// Parse a whole mountinfo file (in the kernel's order).
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountInfo>, MntError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            parse_mountinfo_line(l).map_err(|why| MntError::Parse {
                line: i + 1,
                why,
                text: l.to_string(),
            })
        })
        .collect()
}

/// What a mount of the tree is to the restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// The namespace's root ("/"): the restore's `--root`.
    Root,
    /// A file system cryo mounts anew (proc, sysfs, tmpfs, devpts, mqueue, cgroup2).
    Fresh,
    /// A bind mount of a directory of another mount of the tree (its mnt id) or of the root.
    Bind { of: u32 },
    /// A mount from outside declared with `--external mnt[MOUNTPOINT]:KEY`.
    External { key: String },
}

fn is_sub_path(path: &str, dir: &str) -> bool {
    dir == "/" || path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Classify every mount of a namespace's mountinfo (`externals`: mountpoint
/// → key from `--external mnt[MOUNTPOINT]:KEY`). Refuses what the restore
/// cannot rebuild: file systems it cannot mount, bind mounts of something
/// outside the tree not declared external, propagation to outside groups,
/// two mounts over one another.
pub fn classify(mounts: &[MountInfo], externals: &BTreeMap<String, String>) -> Result<Vec<MountKind>, MntError> {
    let ids: BTreeSet<u32> = mounts.iter().map(|m| m.mnt_id).collect();
    let roots: Vec<&MountInfo> = mounts.iter().filter(|m| !ids.contains(&m.parent_mnt_id)).collect();
    let [root] = roots.as_slice() else {
        return Err(MntError::Tree(format!(
            "{} mounts without a parent in the namespace (expected one root)",
            roots.len()
        )));
    };
    if root.mountpoint != "/" {
        return Err(MntError::Tree(format!(
            "the root mount {} is at {}, not /",
            root.mnt_id, root.mountpoint
        )));
    }
    let err = |m: &MountInfo, why: String| MntError::Mount {
        mnt_id: m.mnt_id,
        mountpoint: m.mountpoint.clone(),
        why,
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(mounts.len());
    for m in mounts {
        if !seen.insert((m.parent_mnt_id, m.mountpoint.clone())) {
            return Err(err(
                m,
                "mounted over another mount at the same place (overmounts are not restored)".into(),
            ));
        }
        if m.deleted {
            return Err(err(m, format!("its root {} was deleted", m.root)));
        }
        let kind = if m.mnt_id == root.mnt_id {
            MountKind::Root
        } else if let Some(key) = externals.get(&m.mountpoint) {
            MountKind::External { key: key.clone() }
        } else if m.s_dev == root.s_dev && is_sub_path(&m.root, &root.root) {
            MountKind::Bind { of: root.mnt_id }
        } else if let Some(t) = mounts.iter().find(|t| {
            t.mnt_id != m.mnt_id && t.s_dev == m.s_dev && t.root == "/" && mountable_fs(t.fstype as u32).is_some()
        }) {
            if m.root == "/" && mountable_fs(m.fstype as u32).is_some() {
                MountKind::Fresh
            } else {
                MountKind::Bind { of: t.mnt_id }
            }
        } else if m.root == "/" {
            if mountable_fs(m.fstype as u32).is_none() {
                return Err(err(
                    m,
                    format!(
                        "file system {} (source {}) cannot be mounted by cryo",
                        m.fsname, m.source
                    ),
                ));
            }
            MountKind::Fresh
        } else {
            return Err(err(
                m,
                format!(
                    "a bind mount of {}:{} from outside the mount namespace (device {}:{}): declare it with \
                     --external mnt[{}]:KEY",
                    m.fsname,
                    m.root,
                    m.s_dev >> 20,
                    m.s_dev & 0xfffff,
                    m.mountpoint
                ),
            ));
        };
        // Propagation: a group must be one of the tree (a slave of the
        // host's groups would need the host's mounts at restore).
        if m.master_id != 0 && !mounts.iter().any(|t| t.shared_id == m.master_id) {
            return Err(err(
                m,
                format!(
                    "a slave of peer group {} outside the mount namespace (make it private, or restore \
                     with CRIU)",
                    m.master_id
                ),
            ));
        }
        out.push(kind);
    }
    // Fresh mounts of one superblock are one mount: the others are binds.
    let mut first: BTreeMap<u32, u32> = BTreeMap::new();
    for (m, k) in mounts.iter().zip(out.iter_mut()) {
        if *k == MountKind::Fresh {
            match first.get(&m.s_dev) {
                Some(&of) => *k = MountKind::Bind { of },
                None => {
                    first.insert(m.s_dev, m.mnt_id);
                }
            }
        }
    }
    Ok(out)
}

/// The image entry CRIU writes for one mount.
pub fn to_entry(m: &MountInfo, kind: &MountKind) -> pb::MntEntry {
    pb::MntEntry {
        fstype: m.fstype as u32,
        mnt_id: m.mnt_id,
        root_dev: m.s_dev,
        parent_mnt_id: m.parent_mnt_id,
        flags: m.flags,
        root: m.root.clone(),
        mountpoint: m.mountpoint.clone(),
        source: m.source.clone(),
        options: m.options.clone(),
        shared_id: Some(m.shared_id),
        master_id: Some(m.master_id),
        with_plugin: None,
        ext_mount: None,
        fsname: (m.fstype == pb::Fstype::Auto).then(|| m.fsname.clone()),
        internal_sharing: None,
        deleted: m.deleted.then_some(true),
        sb_flags: Some(m.sb_flags),
        ext_key: match kind {
            MountKind::External { key } => Some(key.clone()),
            _ => None,
        },
    }
}

/// The entries of mountpoints-N.img, in CRIU's order (mountinfo reversed).
pub fn entries(mounts: &[MountInfo], kinds: &[MountKind]) -> Vec<pb::MntEntry> {
    mounts.iter().zip(kinds).rev().map(|(m, k)| to_entry(m, k)).collect()
}

/// A mount of the image, checked, for the restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mnt_id: u32,
    pub parent_mnt_id: u32,
    pub s_dev: u32,
    pub fstype: u32,
    pub root: String,
    pub mountpoint: String,
    pub source: String,
    pub options: String,
    pub flags: u32,
    pub sb_flags: u32,
    pub shared_id: u32,
    pub master_id: u32,
    pub kind: MountKind,
}

/// The mount tree of an image, parents before children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountTree {
    pub mounts: Vec<Mount>,
}

impl MountTree {
    pub fn root(&self) -> &Mount {
        &self.mounts[0]
    }
    pub fn get(&self, id: u32) -> Option<&Mount> {
        self.mounts.iter().find(|m| m.mnt_id == id)
    }
    /// The tmpfs superblocks (s_dev) whose contents the image holds.
    pub fn tmpfs_devs(&self) -> Vec<u32> {
        self.mounts
            .iter()
            .filter(|m| m.kind == MountKind::Fresh && m.fstype == pb::Fstype::Tmpfs as u32)
            .map(|m| m.s_dev)
            .collect()
    }
    /// The keys of external mounts.
    pub fn external_keys(&self) -> Vec<&str> {
        self.mounts
            .iter()
            .filter_map(|m| match &m.kind {
                MountKind::External { key } => Some(key.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// Describe: the entries of mountpoints-N.img → a validated tree (what the
/// dump classified, classified again from the entries: an image from CRIU
/// holds the same facts).
pub fn describe(entries: &[pb::MntEntry]) -> Result<MountTree, MntError> {
    let mut externals = BTreeMap::new();
    let mut infos = Vec::with_capacity(entries.len());
    // The image is mountinfo reversed: back to the kernel's order.
    for e in entries.iter().rev() {
        if e.with_plugin == Some(true) {
            return Err(MntError::Mount {
                mnt_id: e.mnt_id,
                mountpoint: e.mountpoint.clone(),
                why: "dumped by a CRIU plugin".into(),
            });
        }
        if let Some(k) = &e.ext_key {
            externals.insert(e.mountpoint.clone(), k.clone());
        }
        let fstype = pb::Fstype::try_from(e.fstype as i32).map_err(|_| MntError::Mount {
            mnt_id: e.mnt_id,
            mountpoint: e.mountpoint.clone(),
            why: format!("unknown fstype {}", e.fstype),
        })?;
        infos.push(MountInfo {
            mnt_id: e.mnt_id,
            parent_mnt_id: e.parent_mnt_id,
            s_dev: e.root_dev,
            root: e.root.clone(),
            deleted: e.deleted == Some(true),
            mountpoint: e.mountpoint.clone(),
            flags: e.flags,
            shared_id: e.shared_id.unwrap_or(0),
            master_id: e.master_id.unwrap_or(0),
            fsname: e.fsname.clone().unwrap_or_default(),
            fstype,
            source: e.source.clone(),
            sb_flags: e.sb_flags.unwrap_or(0),
            options: e.options.clone(),
        });
    }
    let kinds = classify(&infos, &externals)?;
    // Parents before children: mountinfo's order has that for mounts made
    // one after another, but not always (a move); sort by depth.
    let mut mounts: Vec<Mount> = infos
        .into_iter()
        .zip(kinds)
        .map(|(m, kind)| Mount {
            mnt_id: m.mnt_id,
            parent_mnt_id: m.parent_mnt_id,
            s_dev: m.s_dev,
            fstype: m.fstype as u32,
            root: m.root,
            mountpoint: m.mountpoint,
            source: m.source,
            options: m.options,
            flags: m.flags,
            sb_flags: m.sb_flags,
            shared_id: m.shared_id,
            master_id: m.master_id,
            kind,
        })
        .collect();
    let depth = |m: &Mount, all: &[Mount]| {
        let mut d = 0;
        let mut p = m.parent_mnt_id;
        while let Some(q) = all.iter().find(|x| x.mnt_id == p) {
            d += 1;
            p = q.parent_mnt_id;
            if d > all.len() {
                break;
            }
        }
        d
    };
    let depths: Vec<usize> = mounts.iter().map(|m| depth(m, &mounts)).collect();
    if depths.iter().any(|&d| d > mounts.len()) {
        return Err(MntError::Tree("a cycle of parents".into()));
    }
    let mut order: Vec<usize> = (0..mounts.len()).collect();
    order.sort_by_key(|&i| depths[i]);
    let sorted = order.iter().map(|&i| mounts[i].clone()).collect();
    mounts = sorted;
    Ok(MountTree { mounts })
}

/// Why the dump of a mount namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum MntDumpError {
    #[error(transparent)]
    Mnt(#[from] MntError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Image(#[from] cryo_image::ImageError),
    #[error("tmpfs at {mountpoint} (mount {mnt_id}): {why}")]
    Tmpfs {
        mnt_id: u32,
        mountpoint: String,
        why: String,
    },
}

fn io_err(path: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> MntDumpError {
    let path = path.to_string();
    move |source| MntDumpError::Io { path, source }
}

/// The mount namespace of `pid`, read and checked (nothing written).
pub fn survey(
    pid: i32,
    externals: &BTreeMap<String, String>,
) -> Result<(Vec<MountInfo>, Vec<MountKind>), MntDumpError> {
    let path = format!("/proc/{pid}/mountinfo");
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let mounts = parse_mountinfo(&text)?;
    let kinds = classify(&mounts, externals)?;
    Ok((mounts, kinds))
}

/// The mount id of an open file (its fdinfo's `mnt_id:`).
fn mnt_id_of(f: &std::fs::File) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let t = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", f.as_raw_fd())).ok()?;
    t.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The name CRIU gives a tmpfs's contents.
pub fn tmpfs_image_name(s_dev: u32) -> String {
    format!("tmpfs-dev-{s_dev}.tar.gz.img")
}

/// Write the contents of a tmpfs mount as CRIU does: a gzip'ed tar made by
/// tar(1) with CRIU's flags, run in the mount's directory as `pid` sees it.
fn dump_tmpfs(pid: i32, m: &MountInfo, dir: &std::path::Path) -> Result<(), MntDumpError> {
    let terr = |why: String| MntDumpError::Tmpfs {
        mnt_id: m.mnt_id,
        mountpoint: m.mountpoint.clone(),
        why,
    };
    let path = format!("/proc/{pid}/root{}", m.mountpoint);
    let d = std::fs::File::open(&path).map_err(io_err(&path))?;
    match mnt_id_of(&d) {
        Some(id) if id == m.mnt_id => {}
        other => {
            return Err(terr(format!(
                "{path} is mount {other:?}: the tmpfs is covered by another mount"
            )))
        }
    }
    let out = dir.join(tmpfs_image_name(m.s_dev));
    let f = std::fs::File::create(&out).map_err(io_err(out.display()))?;
    let st = std::process::Command::new("tar")
        .args([
            "--create",
            "--gzip",
            "--no-unquote",
            "--no-wildcards",
            "--one-file-system",
            "--check-links",
            "--preserve-permissions",
            "--sparse",
            "--numeric-owner",
            "--directory",
            "/proc/self/fd/0",
            ".",
        ])
        .stdin(d)
        .stdout(f)
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(io_err("tar"))?;
    if !st.status.success() {
        let _ = std::fs::remove_file(&out);
        return Err(terr(format!(
            "tar failed ({}): {}",
            st.status,
            String::from_utf8_lossy(&st.stderr).trim()
        )));
    }
    Ok(())
}

/// Dump the mount namespace of `pid` as namespace `ns_id`:
/// mountpoints-NS_ID.img and a tmpfs-dev-DEV.tar.gz.img per tmpfs
/// superblock. Returns the names of the files written (the caller removes
/// them if the dump fails later).
pub fn dump(
    pid: i32,
    ns_id: u32,
    dir: &std::path::Path,
    externals: &BTreeMap<String, String>,
) -> Result<Vec<String>, MntDumpError> {
    let (mounts, kinds) = survey(pid, externals)?;
    let mut written = Vec::new();
    let res = (|| {
        for (m, k) in mounts.iter().zip(&kinds) {
            if *k == MountKind::Fresh && m.fstype == pb::Fstype::Tmpfs {
                written.push(tmpfs_image_name(m.s_dev));
                dump_tmpfs(pid, m, dir)?;
            }
        }
        let name = format!("mountpoints-{ns_id}.img");
        written.push(name.clone());
        let mut w = cryo_image::ImageWriter::create(dir.join(&name), Some("MNTS"))?;
        for e in entries(&mounts, &kinds) {
            w.entry(&e)?;
        }
        w.finish()?;
        Ok(())
    })();
    match res {
        Ok(()) => Ok(written),
        Err(e) => {
            for n in &written {
                let _ = std::fs::remove_file(dir.join(n));
            }
            Err(e)
        }
    }
}

/// Why a mount namespace cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum MntRestoreError {
    #[error("{0}")]
    Check(String),
    #[error("mount {mnt_id} at {mountpoint}: {what}: {errno}")]
    Sys {
        mnt_id: u32,
        mountpoint: String,
        what: String,
        errno: nix::errno::Errno,
    },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

/// How the restore finds what is outside the images.
#[derive(Debug, Clone, Default)]
pub struct MntRestoreOpts {
    /// `--root`: the root filesystem the namespace is rebuilt on.
    pub root: Option<std::path::PathBuf>,
    /// `--external mnt[KEY]:PATH` / `--ext-mount-map KEY:PATH`.
    pub externals: BTreeMap<String, std::path::PathBuf>,
}

/// The tmpfs contents image of a superblock: CRIU's tmpfs-dev-DEV (or the
/// older tmpfs-MNTID) tarball.
pub fn tmpfs_image(images: &std::path::Path, m: &Mount) -> Option<std::path::PathBuf> {
    [tmpfs_image_name(m.s_dev), format!("tmpfs-{}.tar.gz.img", m.mnt_id)]
        .into_iter()
        .map(|n| images.join(n))
        .find(|p| p.exists())
}

/// Check, before anything exists, that the tree can be rebuilt here:
/// `--root` given, every external mount declared and present, every tmpfs
/// with its contents, every file system known to the kernel.
pub fn check_restore(tree: &MountTree, images: &std::path::Path, o: &MntRestoreOpts) -> Result<(), MntRestoreError> {
    let root = o.root.as_ref().ok_or_else(|| {
        MntRestoreError::Check(format!(
            "the tree has a mount namespace of its own (root mount {} was {}): give the root filesystem to \
             restore it on with --root DIR",
            tree.root().mnt_id,
            tree.root().root
        ))
    })?;
    if !root.is_dir() {
        return Err(MntRestoreError::Check(format!(
            "--root {}: not a directory",
            root.display()
        )));
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    for m in &tree.mounts {
        match &m.kind {
            MountKind::External { key } => match o.externals.get(key) {
                None => {
                    return Err(MntRestoreError::Check(format!(
                        "mount {} at {} is external (key {key:?}): say where it is with --external mnt[{key}]:PATH \
                         (or --ext-mount-map {key}:PATH)",
                        m.mnt_id, m.mountpoint
                    )))
                }
                Some(p) if !p.exists() => {
                    return Err(MntRestoreError::Check(format!(
                        "--external mnt[{key}]:{}: no such file or directory",
                        p.display()
                    )))
                }
                Some(_) => {}
            },
            MountKind::Fresh => {
                let name = mountable_fs(m.fstype).unwrap_or("?");
                if !fs.lines().any(|l| l.split_whitespace().last() == Some(name)) {
                    return Err(MntRestoreError::Check(format!(
                        "mount {} at {}: this kernel has no {name} file system",
                        m.mnt_id, m.mountpoint
                    )));
                }
                if m.fstype == pb::Fstype::Tmpfs as u32 && tmpfs_image(images, m).is_none() {
                    return Err(MntRestoreError::Check(format!(
                        "mount {} at {}: its contents ({}) are not in {}",
                        m.mnt_id,
                        m.mountpoint,
                        tmpfs_image_name(m.s_dev),
                        images.display()
                    )));
                }
            }
            MountKind::Root | MountKind::Bind { .. } => {}
        }
        if m.flags & MS_SHARED != 0 && m.flags & MS_SLAVE != 0 {
            return Err(MntRestoreError::Check(format!(
                "mount {} at {}: shared and a slave at once is not restored",
                m.mnt_id, m.mountpoint
            )));
        }
    }
    Ok(())
}

/// fsmount(2)'s MOUNT_ATTR_RDONLY.
const MOUNT_ATTR_RDONLY: u32 = 0x1;

/// The per-mount MS_* flags mount(2) takes back.
const MNT_FLAGS: u32 =
    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME;

fn ms(f: u32) -> nix::mount::MsFlags {
    nix::mount::MsFlags::from_bits_truncate(f as libc::c_ulong)
}

/// A mount the tree's first task makes itself, once it is in the restored
/// mount namespace: a proc that must show the tree's pid namespace (only a
/// task in it can mount one), and every mount below such a proc (runc's
/// masked and read-only paths: /proc/sys, /proc/kcore …), made in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateMount {
    /// Where, in the restored namespace.
    pub at: String,
    pub how: LateHow,
    /// Then `mount(NULL, at, NULL, MS_REMOUNT | flags (| MS_BIND), data)`.
    pub remount: Option<(u32, String, bool)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LateHow {
    /// `mount("proc", at, "proc", flags, opts)`. With `stand_in`, a bind
    /// of cryo's own proc is on `at` (see [`build`]): the new proc is made
    /// detached first (the kernel lets it in while another proc is visible
    /// in the namespace), then the stand-in is detached and the new proc
    /// moved onto `at`.
    Proc { opts: String, flags: u32, stand_in: bool },
    /// A bind of `src`, a path below a late proc.
    Bind { src: String },
    /// A detached mount the engine made (the fd, in the engine's pool,
    /// which the first task inherits): move_mount onto `at`.
    Detached { fd: i32 },
}

impl LateMount {
    /// Make it (in the first task, in the restored namespaces).
    pub fn make(&self) -> Result<(), String> {
        use nix::mount::{mount, MsFlags};
        let at = self.at.as_str();
        match &self.how {
            LateHow::Proc {
                opts,
                flags,
                stand_in: false,
            } => {
                let data = (!opts.is_empty()).then_some(opts.as_str());
                mount(Some("proc"), at, Some("proc"), ms(*flags), data)
                    .map_err(|e| format!("mount proc at {at}: {e}"))?;
            }
            LateHow::Proc {
                opts,
                flags,
                stand_in: true,
            } => {
                use std::os::fd::AsRawFd;
                let ro = if flags & MS_RDONLY != 0 { MOUNT_ATTR_RDONLY } else { 0 };
                let fd =
                    crate::sys::mount::new_mount("proc", "proc", opts, crate::sys::mount::mount_attrs(*flags) | ro)
                        .map_err(|e| format!("fsmount proc for {at}: {e}"))?;
                nix::mount::umount2(at, nix::mount::MntFlags::MNT_DETACH)
                    .map_err(|e| format!("detach the stand-in proc at {at}: {e}"))?;
                crate::sys::mount::attach(fd.as_raw_fd(), at).map_err(|e| format!("move_mount proc onto {at}: {e}"))?;
            }
            LateHow::Bind { src } => {
                mount(Some(src.as_str()), at, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .map_err(|e| format!("bind {src} at {at}: {e}"))?;
            }
            LateHow::Detached { fd } => {
                crate::sys::mount::attach(*fd, at).map_err(|e| format!("move_mount onto {at}: {e}"))?;
            }
        }
        if let Some((flags, data, bind)) = &self.remount {
            let f = MsFlags::MS_REMOUNT | ms(*flags) | if *bind { MsFlags::MS_BIND } else { MsFlags::empty() };
            let data = (!data.is_empty()).then_some(data.as_str());
            mount(None::<&str>, at, None::<&str>, f, data).map_err(|e| format!("remount {at}: {e}"))?;
        }
        Ok(())
    }
}

/// Rebuild the tree in the calling thread's mount namespace, under `yard`
/// (a directory the tree's root is bound on), then make `yard` the root
/// (pivot_root, the old root detached). The caller has unshared
/// CLONE_FS|CLONE_NEWNS on this thread: nothing of it is seen outside, and
/// every mount disappears with the namespace if anything fails.
/// `skip` says which mounts to leave for later (proc, which must be
/// mounted from inside the tree's pid namespace).
///
/// `stand_ins`: detached copies of cryo's own proc (open_tree), one per
/// skipped proc, when the namespace is owned by the tree's user namespace.
/// There the kernel lets a proc be mounted only while another proc is fully
/// visible in the namespace (mount_too_revealing), and once the old root is
/// detached none is: each stand-in is attached on its skipped proc's
/// mountpoint, and the first task, in the tree's user and pid namespaces,
/// makes its proc while the stand-in is there, then puts it in the
/// stand-in's place ([`LateHow::Proc`]). Until then no task of the tree runs.
pub fn build(
    tree: &MountTree,
    images: &std::path::Path,
    o: &MntRestoreOpts,
    skip: &dyn Fn(&Mount) -> bool,
    mut stand_ins: Vec<std::os::fd::OwnedFd>,
) -> Result<Vec<(LateMount, Option<std::os::fd::OwnedFd>)>, MntRestoreError> {
    use nix::mount::{mount, MsFlags};
    let root = o
        .root
        .as_ref()
        .ok_or_else(|| MntRestoreError::Check("no --root".into()))?;
    let sys = |m: &Mount, what: String| {
        let (mnt_id, mountpoint) = (m.mnt_id, m.mountpoint.clone());
        move |errno| MntRestoreError::Sys {
            mnt_id,
            mountpoint,
            what,
            errno,
        }
    };
    let r = tree.root();
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys(r, "make / private".into()))?;
    mount(
        Some(root.as_path()),
        root.as_path(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(sys(r, format!("bind --root {}", root.display())))?;
    // Where each mount of the tree is now (for binds of it).
    let mut at: BTreeMap<u32, std::path::PathBuf> = BTreeMap::new();
    at.insert(r.mnt_id, root.clone());
    let join = |base: &std::path::Path, p: &str| base.join(p.trim_start_matches('/'));
    // Mounts made later by the first task: the skipped ones and every mount below them.
    let mut late_ids: std::collections::BTreeSet<u32> = std::collections::BTreeSet::new();
    let mut late = Vec::new();
    // Groups: the first mount of a peer group made shared, the others bound from it.
    for m in &tree.mounts[1..] {
        if skip(m) || late_ids.contains(&m.parent_mnt_id) {
            late_ids.insert(m.mnt_id);
            let mut l = late_mount(tree, images, o, m, skip(m), &at, &late_ids)?;
            if let LateHow::Proc { stand_in, .. } = &mut l.0.how {
                if let Some(fd) = stand_ins.pop() {
                    use std::os::fd::AsRawFd;
                    let target = mount_target(tree, &at, m)?;
                    crate::sys::mount::attach(fd.as_raw_fd(), &target.display().to_string()).map_err(|e| {
                        MntRestoreError::Sys {
                            mnt_id: m.mnt_id,
                            mountpoint: m.mountpoint.clone(),
                            what: "attach the stand-in proc".into(),
                            errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                        }
                    })?;
                    *stand_in = true;
                }
            }
            late.push(l);
            continue;
        }
        let target = mount_target(tree, &at, m)?;
        match &m.kind {
            MountKind::Root => unreachable!("one root"),
            MountKind::Fresh => {
                let fs = mountable_fs(m.fstype).unwrap();
                let flags =
                    (m.flags & MNT_FLAGS & !MS_RDONLY) | (m.sb_flags & (MS_SYNCHRONOUS | MS_DIRSYNC | MS_MANDLOCK));
                let data = (!m.options.is_empty()).then_some(m.options.as_str());
                let src = if m.source.is_empty() { fs } else { m.source.as_str() };
                mount(Some(src), &target, Some(fs), ms(flags), data).map_err(sys(m, format!("mount {fs}")))?;
                if m.fstype == pb::Fstype::Tmpfs as u32 {
                    untar(images, m, &target)?;
                }
                // Superblock read-only last (after the contents).
                if m.sb_flags & MS_RDONLY != 0 || m.flags & MS_RDONLY != 0 {
                    let f = flags | MS_RDONLY;
                    mount(None::<&str>, &target, None::<&str>, MsFlags::MS_REMOUNT | ms(f), data)
                        .map_err(sys(m, "remount read-only".into()))?;
                }
            }
            MountKind::Bind { of } => {
                let src_m = tree.get(*of).unwrap();
                let base = at.get(of).ok_or_else(|| {
                    MntRestoreError::Check(format!("mount {}: bind source {of} not mounted", m.mnt_id))
                })?;
                let sub = m.root.strip_prefix(&src_m.root).unwrap_or(&m.root);
                let src = if src_m.root == "/" {
                    join(base, &m.root)
                } else {
                    join(base, sub)
                };
                mount(Some(&src), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .map_err(sys(m, format!("bind {}", src.display())))?;
            }
            MountKind::External { key } => {
                let src = &o.externals[key];
                mount(
                    Some(src.as_path()),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(sys(m, format!("bind external {}", src.display())))?;
            }
        }
        if !matches!(m.kind, MountKind::Fresh) && m.flags & MNT_FLAGS & !(MS_RELATIME | MS_STRICTATIME) != 0 {
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | ms(m.flags & MNT_FLAGS),
                None::<&str>,
            )
            .map_err(sys(m, "remount bind with its flags".into()))?;
        }
        at.insert(m.mnt_id, target);
    }
    // Propagation, parents first: shared groups, then slaves.
    let mut groups: BTreeMap<u32, u32> = BTreeMap::new();
    for m in &tree.mounts {
        let Some(p) = at.get(&m.mnt_id) else { continue };
        if m.flags & MS_SHARED != 0 {
            mount(None::<&str>, p, None::<&str>, MsFlags::MS_SHARED, None::<&str>)
                .map_err(sys(m, "make shared".into()))?;
            groups.entry(m.shared_id).or_insert(m.mnt_id);
        }
        if m.flags & MS_UNBINDABLE != 0 {
            mount(None::<&str>, p, None::<&str>, MsFlags::MS_UNBINDABLE, None::<&str>)
                .map_err(sys(m, "make unbindable".into()))?;
        }
    }
    for m in &tree.mounts {
        if m.master_id == 0 {
            continue;
        }
        let Some(p) = at.get(&m.mnt_id) else { continue };
        mount(None::<&str>, p, None::<&str>, MsFlags::MS_SLAVE, None::<&str>).map_err(sys(m, "make slave".into()))?;
    }
    // The root's own flags, then pivot_root into it.
    if r.flags & MS_RDONLY != 0 {
        mount(
            None::<&str>,
            root.as_path(),
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | ms(r.flags & MNT_FLAGS),
            None::<&str>,
        )
        .map_err(sys(r, "remount the root read-only".into()))?;
    }
    nix::unistd::chdir(root.as_path()).map_err(sys(r, "chdir to the root".into()))?;
    nix::unistd::pivot_root(".", ".").map_err(sys(r, "pivot_root".into()))?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH).map_err(sys(r, "detach the old root".into()))?;
    nix::unistd::chdir("/").map_err(sys(r, "chdir /".into()))?;
    Ok(late)
}

/// Where mount `m` goes in the tree being rebuilt (its parent is made, at
/// its place in `at`), checked to exist.
fn mount_target(
    tree: &MountTree,
    at: &BTreeMap<u32, std::path::PathBuf>,
    m: &Mount,
) -> Result<std::path::PathBuf, MntRestoreError> {
    let parent = at
        .get(&m.parent_mnt_id)
        .ok_or_else(|| MntRestoreError::Check(format!("mount {}: parent {} not mounted", m.mnt_id, m.parent_mnt_id)))?;
    let parent_m = tree.get(m.parent_mnt_id).ok_or_else(|| {
        MntRestoreError::Check(format!(
            "mount {}: parent {} not in the tree",
            m.mnt_id, m.parent_mnt_id
        ))
    })?;
    let rel = m.mountpoint.strip_prefix(&parent_m.mountpoint).ok_or_else(|| {
        MntRestoreError::Check(format!(
            "mount {} at {} is not under its parent",
            m.mnt_id, m.mountpoint
        ))
    })?;
    let target = parent.join(rel.trim_start_matches('/'));
    if !target.exists() {
        return Err(MntRestoreError::Check(format!(
            "mount {}: its mountpoint {} does not exist in the restored tree",
            m.mnt_id,
            target.display()
        )));
    }
    Ok(target)
}

/// Fill a fresh tmpfs mounted at (or reachable by) `dir` from its image.
fn untar(images: &std::path::Path, m: &Mount, dir: &std::path::Path) -> Result<(), MntRestoreError> {
    let img = tmpfs_image(images, m)
        .ok_or_else(|| MntRestoreError::Check(format!("no tmpfs image for mount {}", m.mnt_id)))?;
    let f = std::fs::File::open(&img).map_err(|source| MntRestoreError::Io {
        what: img.display().to_string(),
        source,
    })?;
    let out = std::process::Command::new("tar")
        .args(["--extract", "--gzip", "--no-unquote", "--no-wildcards", "--directory"])
        .arg(dir)
        .stdin(f)
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|source| MntRestoreError::Io {
            what: "tar".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(MntRestoreError::Check(format!(
            "mount {} at {}: tar --extract of {} failed: {}",
            m.mnt_id,
            m.mountpoint,
            img.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// How the first task makes late mount `m` (`proc`: it is a proc to mount
/// there); detached mounts are made here, in the engine.
fn late_mount(
    tree: &MountTree,
    images: &std::path::Path,
    o: &MntRestoreOpts,
    m: &Mount,
    proc: bool,
    at: &BTreeMap<u32, std::path::PathBuf>,
    late: &std::collections::BTreeSet<u32>,
) -> Result<(LateMount, Option<std::os::fd::OwnedFd>), MntRestoreError> {
    let check = |why: &str| MntRestoreError::Check(format!("mount {} at {}: {why}", m.mnt_id, m.mountpoint));
    let sys = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| MntRestoreError::Sys {
            mnt_id: m.mnt_id,
            mountpoint: m.mountpoint.clone(),
            what,
            errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    };
    if m.flags & (MS_SHARED | MS_UNBINDABLE) != 0 || m.master_id != 0 {
        return Err(check(
            "a shared, slave or unbindable mount below a proc of the tree's pid namespace is not supported",
        ));
    }
    let bind_remount = (m.flags & MNT_FLAGS & !(MS_RELATIME | MS_STRICTATIME) != 0)
        .then(|| (m.flags & MNT_FLAGS, String::new(), true));
    let (how, fd, remount) = match &m.kind {
        MountKind::Fresh if proc => (
            LateHow::Proc {
                opts: m.options.clone(),
                flags: m.flags & MNT_FLAGS,
                stand_in: false,
            },
            None,
            None,
        ),
        MountKind::Fresh => {
            let fs = mountable_fs(m.fstype).ok_or_else(|| check("not a file system cryo mounts"))?;
            let src = if m.source.is_empty() { fs } else { m.source.as_str() };
            let flags = (m.flags & MNT_FLAGS & !MS_RDONLY) | (m.sb_flags & (MS_SYNCHRONOUS | MS_DIRSYNC | MS_MANDLOCK));
            let fd = crate::sys::mount::new_mount(fs, src, &m.options, crate::sys::mount::mount_attrs(flags))
                .map_err(sys(&format!("fsmount {fs}")))?;
            if m.fstype == pb::Fstype::Tmpfs as u32 {
                use std::os::fd::AsRawFd;
                let dir = format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd());
                untar(images, m, std::path::Path::new(&dir))?;
            }
            let ro = m.sb_flags & MS_RDONLY != 0 || m.flags & MS_RDONLY != 0;
            (
                LateHow::Detached { fd: -1 },
                Some(fd),
                ro.then(|| (flags | MS_RDONLY, m.options.clone(), false)),
            )
        }
        MountKind::Bind { of } => {
            let src_m = tree.get(*of).ok_or_else(|| check("bind of a mount not in the tree"))?;
            let sub = m.root.strip_prefix(&src_m.root).unwrap_or(&m.root);
            let rel = if src_m.root == "/" { m.root.as_str() } else { sub };
            if late.contains(of) {
                // Below a late proc, by its path in the restored namespace.
                let src = std::path::Path::new(&src_m.mountpoint).join(rel.trim_start_matches('/'));
                (
                    LateHow::Bind {
                        src: src.display().to_string(),
                    },
                    None,
                    bind_remount,
                )
            } else {
                let base = at.get(of).ok_or_else(|| check("its bind source is not mounted"))?;
                let src = base.join(rel.trim_start_matches('/'));
                let fd = crate::sys::mount::clone_tree(&src.display().to_string())
                    .map_err(sys(&format!("open_tree {}", src.display())))?;
                (LateHow::Detached { fd: -1 }, Some(fd), bind_remount)
            }
        }
        MountKind::External { key } => {
            let src = &o.externals[key];
            let fd = crate::sys::mount::clone_tree(&src.display().to_string())
                .map_err(sys(&format!("open_tree external {}", src.display())))?;
            (LateHow::Detached { fd: -1 }, Some(fd), bind_remount)
        }
        MountKind::Root => return Err(check("the root below a proc")),
    };
    Ok((
        LateMount {
            at: m.mountpoint.clone(),
            how,
            remount,
        },
        fd,
    ))
}

/// A mount namespace made for a restore: held by an open /proc/…/ns/mnt
/// (setns into it to enter); closing it (and no task in it) removes it with
/// every mount.
pub struct MntNs {
    pub fd: std::fs::File,
    /// What the first task mounts itself, with the detached mounts' fds.
    pub late: Vec<(LateMount, Option<std::os::fd::OwnedFd>)>,
}

/// Make a new mount namespace (on a scoped thread that unshares
/// CLONE_FS|CLONE_NEWNS), rebuild the tree in it and pivot_root to its root.
/// With `into`, the namespace exists already (made in the tree's user
/// namespace, see state::ns::holder): the thread enters it instead.
pub fn make_ns(
    tree: &MountTree,
    images: &std::path::Path,
    o: &MntRestoreOpts,
    skip: &(dyn Fn(&Mount) -> bool + Sync),
    net: Option<&std::fs::File>,
    into: Option<&std::fs::File>,
) -> Result<MntNs, MntRestoreError> {
    // In a namespace owned by the tree's user namespace, a stand-in for each
    // proc the first task mounts (see build): copies of cryo's own /proc,
    // made here, in cryo's mount namespace.
    let mut stand_ins = Vec::new();
    if into.is_some() {
        for m in tree.mounts.iter().filter(|m| is_proc(m) && skip(m)) {
            let fd = crate::sys::mount::clone_tree("/proc").map_err(|e| MntRestoreError::Sys {
                mnt_id: m.mnt_id,
                mountpoint: m.mountpoint.clone(),
                what: "open_tree of cryo's /proc (a stand-in until the tree's proc is mounted)".into(),
                errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
            stand_ins.push(fd);
        }
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            use nix::sched::{unshare, CloneFlags};
            if let Some(n) = net {
                // sysfs shows the network namespace of whoever mounts it.
                nix::sched::setns(n, CloneFlags::CLONE_NEWNET).map_err(|errno| MntRestoreError::Sys {
                    mnt_id: tree.root().mnt_id,
                    mountpoint: "/".into(),
                    what: "setns into the restored network namespace".into(),
                    errno,
                })?;
            }
            let sys = |what: &str| {
                let what = what.to_string();
                move |errno| MntRestoreError::Sys {
                    mnt_id: tree.root().mnt_id,
                    mountpoint: "/".into(),
                    what,
                    errno,
                }
            };
            match into {
                Some(ns) => {
                    unshare(CloneFlags::CLONE_FS).map_err(sys("unshare CLONE_FS"))?;
                    nix::sched::setns(ns, CloneFlags::CLONE_NEWNS)
                        .map_err(sys("setns into the mount namespace made in the tree's user namespace"))?;
                }
                None => {
                    unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS).map_err(sys("unshare a mount namespace"))?
                }
            }
            let fd = std::fs::File::open("/proc/thread-self/ns/mnt").map_err(|source| MntRestoreError::Io {
                what: "/proc/thread-self/ns/mnt".into(),
                source,
            })?;
            let late = build(tree, images, o, skip, stand_ins)?;
            Ok(MntNs { fd, late })
        })
        .join()
        .map_err(|_| MntRestoreError::Check("the mount namespace thread panicked".into()))?
    })
}

/// The calling thread, in a mount namespace for a while (to open the
/// tree's files by their paths in it); back in its own when dropped.
pub struct Entered {
    home: std::fs::File,
    cwd: std::fs::File,
}

/// Enter `ns` on the calling thread (after unsharing its fs: setns needs
/// a root and cwd of its own).
pub fn enter(ns: &MntNs) -> Result<Entered, MntRestoreError> {
    use nix::sched::{setns, unshare, CloneFlags};
    let e = |what: &str| {
        let what = what.to_string();
        move |errno| MntRestoreError::Sys {
            mnt_id: 0,
            mountpoint: "/".into(),
            what,
            errno,
        }
    };
    let home = std::fs::File::open("/proc/thread-self/ns/mnt").map_err(|source| MntRestoreError::Io {
        what: "/proc/thread-self/ns/mnt".into(),
        source,
    })?;
    let cwd = std::fs::File::open(".").map_err(|source| MntRestoreError::Io {
        what: "the current directory".into(),
        source,
    })?;
    unshare(CloneFlags::CLONE_FS).map_err(e("unshare CLONE_FS"))?;
    setns(&ns.fd, CloneFlags::CLONE_NEWNS).map_err(e("setns into the restored mount namespace"))?;
    Ok(Entered { home, cwd })
}

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = nix::sched::setns(&self.home, nix::sched::CloneFlags::CLONE_NEWNS);
        let _ = nix::unistd::fchdir(&self.cwd);
    }
}

/// A proc of the tree's own (made fresh at restore).
pub fn is_proc(m: &Mount) -> bool {
    m.kind == MountKind::Fresh && m.fstype == pb::Fstype::Proc as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from `unshare -m --propagation private` with a busybox root
    // (pivot_root), proc, a tmpfs, a bind mount of it and one of the root.
    const CONTAINER: &str = "\
812 790 0:93 / / rw,relatime - tmpfs rootfs rw,size=65536k,mode=755
813 812 0:94 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
814 812 0:95 / /data rw,nosuid,nodev,relatime shared:400 - tmpfs none rw,size=1024k,mode=755
815 812 0:95 /sub /mnt/sub rw,nosuid,nodev,relatime shared:400 - tmpfs none rw,size=1024k,mode=755
816 812 0:93 /etc /mnt/etc ro,relatime - tmpfs rootfs rw,size=65536k,mode=755
817 812 0:96 / /dev/mqueue rw,nosuid,nodev,noexec,relatime - mqueue mqueue rw
818 812 0:97 / /with\\040space rw - tmpfs  rw,sync
";

    #[test]
    fn parses_lines_as_criu() {
        let m = parse_mountinfo(CONTAINER).unwrap();
        assert_eq!(m.len(), 7);
        assert_eq!(m[0].mnt_id, 812);
        assert_eq!(m[0].parent_mnt_id, 790);
        assert_eq!(m[0].s_dev, 93);
        assert_eq!(m[0].flags, MS_RELATIME);
        assert_eq!(m[0].options, "size=65536k,mode=755");
        assert_eq!(m[1].flags, MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME);
        assert_eq!(m[1].fstype, pb::Fstype::Proc);
        assert_eq!(m[1].options, "");
        assert_eq!(m[2].flags & MS_SHARED, MS_SHARED);
        assert_eq!(m[2].shared_id, 400);
        assert_eq!(m[3].root, "/sub");
        assert_eq!(m[4].flags, MS_RDONLY | MS_RELATIME);
        // Empty source, strictatime, sync as an sb flag, unmangled space.
        assert_eq!(m[6].mountpoint, "/with space");
        assert_eq!(m[6].source, "");
        assert_eq!(m[6].flags, MS_STRICTATIME);
        assert_eq!(m[6].sb_flags, MS_SYNCHRONOUS);
        assert_eq!(m[6].options, "");
        assert_eq!(mkkdev(259, 3), (259 << 20) | 3);
    }

    #[test]
    fn bad_lines_are_named() {
        let e = parse_mountinfo("1 2 0:3 / / rw - tmpfs x rw\nbogus\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = parse_mountinfo_line("1 0 0:3 / / rw,bogus - tmpfs x rw").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = parse_mountinfo_line("1 0 0:3 / / rw weird:1 - tmpfs x rw").unwrap_err();
        assert!(e.contains("weird"), "{e}");
        let m = parse_mountinfo_line("1 0 0:3 /x\\040(deleted) / rw - tmpfs x rw").unwrap();
        assert_eq!(m.root, "/x");
        assert!(m.deleted);
    }

    #[test]
    fn classifies_a_container_tree() {
        let m = parse_mountinfo(CONTAINER).unwrap();
        let k = classify(&m, &BTreeMap::new()).unwrap();
        assert_eq!(
            k,
            vec![
                MountKind::Root,
                MountKind::Fresh,
                MountKind::Fresh,
                MountKind::Bind { of: 814 },
                MountKind::Bind { of: 812 },
                MountKind::Fresh,
                MountKind::Fresh,
            ]
        );
        let e = entries(&m, &k);
        assert_eq!(e[0].mnt_id, 818, "CRIU's order: mountinfo reversed");
        assert_eq!(e[6].mnt_id, 812);
        assert_eq!(e[6].shared_id, Some(0));
        let t = describe(&e).unwrap();
        assert_eq!(t.root().mnt_id, 812);
        assert_eq!(t.get(815).unwrap().kind, MountKind::Bind { of: 814 });
        assert_eq!(t.tmpfs_devs(), vec![95, 97]);
    }

    #[test]
    fn outside_binds_need_external() {
        let text = "\
1 0 0:93 / / rw - tmpfs rootfs rw
2 1 8:1 /home/x /src rw,relatime - ext4 /dev/sda1 rw
3 1 8:1 / /whole rw,relatime - ext4 /dev/sda1 rw
";
        let m = parse_mountinfo(text).unwrap();
        let e = classify(&m[..2], &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.contains("--external mnt[/src]:KEY"), "{e}");
        assert!(e.contains("mount 2 at /src"), "{e}");
        let ext = BTreeMap::from([("/src".to_string(), "src".to_string())]);
        let k = classify(&m[..2], &ext).unwrap();
        assert_eq!(k[1], MountKind::External { key: "src".into() });
        let en = entries(&m[..2], &k);
        assert_eq!(en[0].ext_key.as_deref(), Some("src"));
        assert_eq!(describe(&en).unwrap().external_keys(), vec!["src"]);
        let e = classify(&m, &ext).unwrap_err().to_string();
        assert!(e.contains("ext4") && e.contains("cannot be mounted"), "{e}");
    }

    #[test]
    fn refuses_what_cannot_be_rebuilt() {
        let slave = "1 0 0:93 / / rw - tmpfs r rw\n2 1 0:94 / /p rw master:7 - proc proc rw\n";
        let e = classify(&parse_mountinfo(slave).unwrap(), &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("peer group 7"), "{e}");
        let over = "1 0 0:93 / / rw - tmpfs r rw\n2 1 0:94 / /p rw - proc proc rw\n3 1 0:95 / /p rw - tmpfs t rw\n";
        let e = classify(&parse_mountinfo(over).unwrap(), &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("same place"), "{e}");
        let two = "1 0 0:93 / / rw - tmpfs r rw\n2 9 0:94 / /p rw - proc proc rw\n";
        let e = classify(&parse_mountinfo(two).unwrap(), &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("2 mounts without a parent"), "{e}");
    }
}
