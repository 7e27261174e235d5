//! Checkpoint archives: the tarball `podman container checkpoint --export` writes (plain, gzip or
//! zstd, as `--compress` says) and the one the kubelet writes for a container checkpoint (CRI-O or
//! containerd; an uncompressed tar), which checkpointctl reads. Both hold the CRIU images in
//! `checkpoint/`, beside the engine's metadata: `config.dump` (container id, name, image, runtime,
//! times), `spec.dump` (the OCI runtime spec: mounts, annotations), `network.status`, `stats-dump`,
//! `dump.log`, `rootfs-diff.tar`, `deleted.files`, `volumes/`, `devshm-checkpoint.tar`.
//!
//! Every command that takes an image directory also takes an archive in its place: the images of
//! `checkpoint/` are streamed out once into a private temporary directory (mode 0700, removed
//! again when the command ends); nothing else of the archive is written anywhere. One image of an
//! archive is spelled `ARCHIVE:IMAGE` (`crit show dump.tar.zst:pstree.img`; IMAGE is a member of
//! `checkpoint/`, or a member path of the archive such as `checkpoint/core-1.img`), read straight
//! from the archive.
//!
//! The format is recognised by its first bytes (gzip `1f 8b`, zstd `28 b5 2f fd`, else a tar
//! with `ustar` at offset 257), not by the file name. Errors name the archive, the member and the
//! problem: not an archive, truncated or corrupt, a member path leaving the archive, no
//! `checkpoint/inventory.img`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

/// The largest metadata file read into memory (config.dump, spec.dump, ...).
const MAX_META: u64 = 16 << 20;

/// Files beside `checkpoint/` read into memory for `crit inspect`.
pub const META_FILES: &[&str] = &[
    "config.dump",
    "spec.dump",
    "network.status",
    "stats-dump",
    "status",
    "pod.options",
    "pod.dump",
    "deleted.files",
];

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: not a checkpoint archive: {what}")]
    NotArchive { path: String, what: String },
    #[error("{path}: truncated or corrupt archive{}: {what}", member.as_ref().map(|m| format!(" (member {m})")).unwrap_or_default())]
    Corrupt {
        path: String,
        member: Option<String>,
        what: String,
    },
    #[error("{path}: member {member}: {what}")]
    BadMember { path: String, member: String, what: String },
    #[error("{path}: no checkpoint images in the archive (no checkpoint/inventory.img)")]
    NoImages { path: String },
    #[error("{path}: no member {member} in the archive")]
    NoMember { path: String, member: String },
}

type Result<T> = std::result::Result<T, ArchiveError>;

/// How the tar stream is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// What the first bytes of a file say: a checkpoint archive's compression, or None (not one).
pub fn sniff(head: &[u8]) -> Option<Compression> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Compression::Zstd)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some(Compression::None)
    } else {
        None
    }
}

/// Is `path` a regular file that looks like a checkpoint archive?
pub fn is_archive(path: &Path) -> bool {
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = [0u8; 512];
    let n = read_full(&mut f, &mut head).unwrap_or(0);
    sniff(&head[..n]).is_some()
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A zstd stream of one or more frames (a multi-threaded compressor writes several).
struct Zstd<R: BufRead> {
    dec: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: BufRead> Read for Zstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(d) = self.dec.as_mut() else { return Ok(0) };
            let n = d.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // The frame ended: another one follows, or the stream is over.
            let mut src = self.dec.take().expect("checked above").into_inner();
            if src.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.dec = Some(
                ruzstd::decoding::StreamingDecoder::new(src)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?,
            );
        }
    }
}

/// The decompressed tar stream of `path`.
fn tar_stream(path: &Path) -> Result<(Box<dyn Read>, Compression, u64)> {
    let p = path.display().to_string();
    let io_err = |source| ArchiveError::Io {
        path: p.clone(),
        source,
    };
    let f = fs::File::open(path).map_err(io_err)?;
    let size = f.metadata().map_err(io_err)?.len();
    let mut r = BufReader::with_capacity(1 << 16, f);
    let head = r.fill_buf().map_err(io_err)?.to_vec();
    let mut head = head;
    if head.len() < 512 {
        // A short first read: look at up to 512 bytes without consuming them.
        let mut f2 = fs::File::open(path).map_err(io_err)?;
        head = vec![0u8; 512];
        let n = read_full(&mut f2, &mut head).map_err(io_err)?;
        head.truncate(n);
    }
    let c = sniff(&head).ok_or_else(|| ArchiveError::NotArchive {
        path: p.clone(),
        what: if head.is_empty() {
            "the file is empty".into()
        } else {
            "neither a tar file nor gzip- or zstd-compressed".into()
        },
    })?;
    let s: Box<dyn Read> = match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(Zstd {
            dec: Some(
                ruzstd::decoding::StreamingDecoder::new(r).map_err(|e| ArchiveError::Corrupt {
                    path: p.clone(),
                    member: None,
                    what: format!("zstd: {e}"),
                })?,
            ),
        }),
    };
    Ok((s, c, size))
}

/// A member path made relative and checked: no absolute path, no `..`.
fn clean(name: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(s) => out.push(s),
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// io::copy telling a read error (the archive's) from a write error (ours); returns the bytes copied.
fn copy(r: &mut impl Read, w: &mut impl io::Write) -> std::result::Result<u64, CopyError> {
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..k]).map_err(CopyError::Write)?;
        n += k as u64;
    }
}

/// One member of the archive as listed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Member {
    pub path: String,
    pub size: u64,
}

/// An archive opened for reading: its images in a private temporary directory, its metadata
/// files in memory, the list of its members.
#[derive(Debug)]
pub struct Archive {
    pub path: PathBuf,
    pub compression: Compression,
    /// Size of the archive file.
    pub file_size: u64,
    /// Every member (files only), in archive order.
    pub members: Vec<Member>,
    /// The metadata files beside `checkpoint/` (of [`META_FILES`]) that the archive has.
    pub meta: BTreeMap<String, Vec<u8>>,
    /// The directory holding the images of `checkpoint/`.
    dir: TempDir,
}

/// A directory removed with everything in it on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> io::Result<TempDir> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = base.join(format!(
            "crit-archive-{}-{}-{nanos:x}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut b = fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        match b.create(&p) {
            Ok(()) => return Ok(TempDir(p)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("cannot make a temporary directory"))
}

impl Archive {
    /// Read the archive at `path` once: the images of `checkpoint/` to a temporary directory,
    /// the metadata into memory.
    pub fn open(path: &Path) -> Result<Archive> {
        let p = path.display().to_string();
        let (stream, compression, file_size) = tar_stream(path)?;
        let dir = temp_dir().map_err(|source| ArchiveError::Io {
            path: std::env::temp_dir().display().to_string(),
            source,
        })?;
        let mut members = Vec::new();
        let mut meta = BTreeMap::new();
        let corrupt = |member: Option<String>, e: io::Error| ArchiveError::Corrupt {
            path: p.clone(),
            member,
            what: e.to_string(),
        };
        let mut ar = tar::Archive::new(stream);
        let entries = ar.entries().map_err(|e| corrupt(None, e))?;
        let mut last: Option<String> = None;
        for e in entries {
            let mut e = e.map_err(|e| corrupt(last.clone(), e))?;
            let raw = e.path().map_err(|e| corrupt(last.clone(), e))?.into_owned();
            let name = raw.display().to_string();
            last = Some(name.clone());
            let ty = e.header().entry_type();
            if !(ty.is_file() || ty == tar::EntryType::Continuous) {
                continue;
            }
            let rel = clean(&raw).ok_or_else(|| ArchiveError::BadMember {
                path: p.clone(),
                member: name.clone(),
                what: "an absolute path or one with `..`".into(),
            })?;
            let size = e.size();
            members.push(Member {
                path: rel.display().to_string(),
                size,
            });
            let parts: Vec<_> = rel.iter().collect();
            if parts.len() == 2 && parts[0] == "checkpoint" {
                let out = dir.0.join(parts[1]);
                let mut f = fs::File::create(&out).map_err(|source| ArchiveError::Io {
                    path: out.display().to_string(),
                    source,
                })?;
                let n = copy(&mut e, &mut f).map_err(|err| match err {
                    CopyError::Read(err) => corrupt(Some(name.clone()), err),
                    CopyError::Write(source) => ArchiveError::Io {
                        path: out.display().to_string(),
                        source,
                    },
                })?;
                if n != size {
                    return Err(ArchiveError::Corrupt {
                        path: p.clone(),
                        member: Some(name),
                        what: format!("{n} of its {size} bytes"),
                    });
                }
            } else if parts.len() == 1 && META_FILES.iter().any(|m| parts[0] == *m) && size <= MAX_META {
                let mut v = Vec::with_capacity(size as usize);
                e.read_to_end(&mut v).map_err(|err| corrupt(Some(name.clone()), err))?;
                if v.len() as u64 != size {
                    return Err(ArchiveError::Corrupt {
                        path: p.clone(),
                        member: Some(name),
                        what: format!("{} of its {size} bytes", v.len()),
                    });
                }
                meta.insert(rel.display().to_string(), v);
            }
        }
        if !dir.0.join("inventory.img").exists() {
            return Err(ArchiveError::NoImages { path: p });
        }
        Ok(Archive {
            path: path.to_path_buf(),
            compression,
            file_size,
            members,
            meta,
            dir,
        })
    }

    /// The directory holding the images (valid while the archive is open).
    pub fn image_dir(&self) -> &Path {
        &self.dir.0
    }

    /// Bytes of the checkpoint images.
    pub fn checkpoint_size(&self) -> u64 {
        self.members
            .iter()
            .filter(|m| m.path.starts_with("checkpoint/"))
            .map(|m| m.size)
            .sum()
    }

    /// Size of a member, if the archive has it.
    pub fn member_size(&self, path: &str) -> Option<u64> {
        self.members.iter().find(|m| m.path == path).map(|m| m.size)
    }
}

/// Read one member of an archive without unpacking the rest: `member` is a member path
/// (`checkpoint/pstree.img`, `config.dump`) or an image name of `checkpoint/` (`pstree.img`).
pub fn read_member(path: &Path, member: &str) -> Result<Vec<u8>> {
    let p = path.display().to_string();
    let want = clean(Path::new(member)).ok_or_else(|| ArchiveError::BadMember {
        path: p.clone(),
        member: member.into(),
        what: "an absolute path or one with `..`".into(),
    })?;
    let alt = Path::new("checkpoint").join(&want);
    let (stream, _, _) = tar_stream(path)?;
    let corrupt = |member: Option<String>, e: io::Error| ArchiveError::Corrupt {
        path: p.clone(),
        member,
        what: e.to_string(),
    };
    let mut ar = tar::Archive::new(stream);
    let mut found: Option<Vec<u8>> = None;
    for e in ar.entries().map_err(|e| corrupt(None, e))? {
        let mut e = e.map_err(|e| corrupt(None, e))?;
        let raw = e.path().map_err(|e| corrupt(None, e))?.into_owned();
        let Some(rel) = clean(&raw) else { continue };
        if !e.header().entry_type().is_file() {
            continue;
        }
        if rel == want || rel == alt {
            let mut v = Vec::new();
            e.read_to_end(&mut v)
                .map_err(|err| corrupt(Some(raw.display().to_string()), err))?;
            if v.len() as u64 != e.size() {
                return Err(ArchiveError::Corrupt {
                    path: p.clone(),
                    member: Some(raw.display().to_string()),
                    what: format!("{} of its {} bytes", v.len(), e.size()),
                });
            }
            if rel == want {
                return Ok(v);
            }
            found = Some(v);
        }
    }
    found.ok_or_else(|| ArchiveError::NoMember {
        path: p,
        member: member.into(),
    })
}

/// `ARCHIVE:MEMBER` spelled as one path (the archive must exist as a file; the member is after
/// the last colon, so an archive name may hold colons itself, as the kubelet's do).
pub fn split_member(spec: &Path) -> Option<(PathBuf, String)> {
    let s = spec.to_str()?;
    if spec.exists() {
        return None;
    }
    let (a, m) = s.rsplit_once(':')?;
    let a = PathBuf::from(a);
    (!m.is_empty() && a.is_file()).then(|| (a, m.to_string()))
}

/// An image set's directory, or an archive's images unpacked for as long as this lives.
pub enum SetDir {
    Dir(PathBuf),
    Archive(Box<Archive>),
}

impl SetDir {
    /// `path` as an image directory: a directory as it is, a checkpoint archive unpacked.
    pub fn open(path: &Path) -> Result<SetDir> {
        if path.is_dir() || !is_archive(path) {
            // Not an archive: the image set's own errors say what is wrong with it.
            if path.is_file() && !path.is_dir() {
                let mut head = [0u8; 512];
                let n = fs::File::open(path)
                    .and_then(|mut f| read_full(&mut f, &mut head))
                    .unwrap_or(0);
                if sniff(&head[..n]).is_none() {
                    return Err(ArchiveError::NotArchive {
                        path: path.display().to_string(),
                        what: "a file that is neither an image directory nor a tar file (plain, gzip or zstd)".into(),
                    });
                }
            }
            return Ok(SetDir::Dir(path.to_path_buf()));
        }
        Ok(SetDir::Archive(Box::new(Archive::open(path)?)))
    }

    pub fn path(&self) -> &Path {
        match self {
            SetDir::Dir(p) => p,
            SetDir::Archive(a) => a.image_dir(),
        }
    }

    pub fn archive(&self) -> Option<&Archive> {
        match self {
            SetDir::Dir(_) => None,
            SetDir::Archive(a) => Some(a),
        }
    }
}

impl SetDir {
    /// An error of a command run on the unpacked images, with the temporary directory's paths
    /// spelled `ARCHIVE:IMAGE` (exit statuses pass through as they are).
    pub fn rename(&self, e: anyhow::Error) -> anyhow::Error {
        let Some(a) = self.archive() else { return e };
        if e.downcast_ref::<crate::status::Exit>().is_some() {
            return e;
        }
        let tmp = a.image_dir().display().to_string();
        let msg = format!("{e:#}")
            .replace(&format!("{tmp}/"), &format!("{}:", a.path.display()))
            .replace(&tmp, &a.path.display().to_string());
        anyhow::anyhow!(msg)
    }
}

/// Run `f` on the image directory `path`, or on the images of the checkpoint archive `path`
/// (unpacked for the time `f` runs, then removed).
pub fn with_dir<T>(path: &Path, f: impl FnOnce(&Path) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let sd = SetDir::open(path)?;
    f(sd.path()).map_err(|e| sd.rename(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_their_first_bytes() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Some(Compression::Gzip));
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Some(Compression::Zstd));
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(sniff(&tar), Some(Compression::None));
        assert_eq!(sniff(b"CRIU"), None);
        assert_eq!(sniff(&[]), None);
    }

    #[test]
    fn member_paths_stay_inside() {
        assert_eq!(
            clean(Path::new("./checkpoint/x.img")).unwrap(),
            Path::new("checkpoint/x.img")
        );
        assert!(clean(Path::new("../etc/passwd")).is_none());
        assert!(clean(Path::new("/etc/passwd")).is_none());
        assert!(clean(Path::new("checkpoint/../../x")).is_none());
    }
}
