//! Reading and writing cryo's sidecar (`cryo.json`: the state CRIU's format
//! cannot hold; its format is `cryo_image::sidecar`'s) in an image directory.

use cryo_image::sidecar::{self, Sidecar};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the sidecar could not be read, written or accepted.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {what}")]
    Bad { path: PathBuf, what: String },
}

/// Dump: write `side` into `dir` atomically (temporary name, fsync, rename)
/// at the path `register` gives (the dump's list of outputs, removed if the
/// dump fails). With nothing to say no file is written, and a stale sidecar
/// (of either name) left in `dir` by an earlier dump is removed.
pub fn write(dir: &Path, side: &Sidecar, register: impl FnOnce(&str) -> PathBuf) -> Result<(), SidecarError> {
    for stale in [sidecar::LEGACY_FILE, sidecar::FILE] {
        if stale == sidecar::FILE && !side.is_empty() {
            continue;
        }
        let path = dir.join(stale);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(SidecarError::Io { path, source: e }),
            _ => {}
        }
    }
    if side.is_empty() {
        return Ok(());
    }
    write_atomic(&register(sidecar::FILE), sidecar::to_json(side).as_bytes())
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), SidecarError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SidecarError::Io { path, source }
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        if let Some(d) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
            d.sync_all().map_err(io(path))?;
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Restore, validation: read and check the sidecar of `dir` (`cryo.json`,
/// else the version-1 `cryo-affinity.json`), if any, against the threads the
/// restore will create (`tids`) and the eventfd entries of files.img
/// (`eventfds`). Nothing exists yet. No sidecar: an empty one.
pub fn load(dir: &Path, tids: &[i32], eventfds: &BTreeSet<u32>) -> Result<Sidecar, SidecarError> {
    let mut found = None;
    for name in [sidecar::FILE, sidecar::LEGACY_FILE] {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(b) => {
                found = Some((path, b));
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(SidecarError::Io { path, source }),
        }
    }
    let Some((path, text)) = found else {
        return Ok(Sidecar::default());
    };
    let bad = |what: String| SidecarError::Bad {
        path: path.clone(),
        what,
    };
    let text = String::from_utf8(text).map_err(|_| bad("not UTF-8 text".into()))?;
    let side = sidecar::parse(&text).map_err(bad)?;
    if let Some(tid) = side.affinity.keys().find(|t| !tids.contains(t)) {
        return Err(bad(format!("thread {tid} is not a live thread of the image set")));
    }
    if let Some(id) = side.eventfd_semaphore.iter().find(|i| !eventfds.contains(i)) {
        return Err(bad(format!(
            "eventfd_semaphore: file id {id} is not an eventfd in files.img"
        )));
    }
    Ok(side)
}
