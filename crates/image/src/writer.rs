//! Writing images atomically, and typed reading of plain entry images.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use prost::Message;

use crate::codec::{self, Kind};
use crate::error::{ImageError, Result};
use crate::magic;

/// Writes one image: head magic(s), then entries and raw payloads. The data goes to `NAME.tmp` and is
/// renamed to its final name only by [`ImageWriter::finish`] after an fsync, so a half-written image never
/// has the final name.
pub struct ImageWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
}

impl ImageWriter {
    /// Create `path` for an image of kind `magic_name` (crit's name, e.g. `"CORE"`). For a raw image
    /// (pages) pass `None`: nothing is written before the data.
    pub fn create(path: impl AsRef<Path>, magic_name: Option<&str>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = path.display().to_string();
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let f = File::create(&tmp).map_err(|e| ImageError::io(&file, e))?;
        let mut w = ImageWriter {
            path,
            tmp,
            out: Some(BufWriter::with_capacity(1 << 20, f)),
        };
        if let Some(name) = magic_name {
            let m = magic::by_name(name).ok_or_else(|| ImageError::invalid(&file, format!("unknown magic {name}")))?;
            if let Some(h) = magic::head_magic(name) {
                w.raw(&h.to_le_bytes())?;
            }
            w.raw(&m.magic.to_le_bytes())?;
        }
        Ok(w)
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// Append one `[u32 size][message]` entry.
    pub fn entry<M: Message>(&mut self, msg: &M) -> Result<()> {
        let buf = msg.encode_to_vec();
        self.raw(&(buf.len() as u32).to_le_bytes())?;
        self.raw(&buf)
    }

    /// Append raw bytes (a payload after an entry, or page data).
    pub fn raw(&mut self, data: &[u8]) -> Result<()> {
        let name = self.name();
        self.out
            .as_mut()
            .expect("not finished")
            .write_all(data)
            .map_err(|e| ImageError::io(name, e))
    }

    /// Flush, fsync and give the image its final name.
    pub fn finish(mut self) -> Result<()> {
        let name = self.name();
        let f = self
            .out
            .take()
            .expect("not finished")
            .into_inner()
            .map_err(|e| ImageError::io(&name, e.into_error()))?;
        f.sync_all().map_err(|e| ImageError::io(&name, e))?;
        drop(f);
        fs::rename(&self.tmp, &self.path).map_err(|e| ImageError::io(&name, e))?;
        // Make the rename itself durable.
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for ImageWriter {
    fn drop(&mut self) {
        // Not finished: remove the temporary file (after finish() it no longer exists).
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Write an image of plain entries in one call.
pub fn write_entries<M: Message>(path: impl AsRef<Path>, magic_name: &str, entries: &[M]) -> Result<()> {
    let mut w = ImageWriter::create(path, Some(magic_name))?;
    for e in entries {
        w.entry(e)?;
    }
    w.finish()
}

/// Read every entry of a plain entry image as type `M`, checking that it is a `magic_name` image.
pub fn read_entries<M: Message + Default>(path: impl AsRef<Path>, magic_name: &str) -> Result<Vec<M>> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let data = fs::read(path).map_err(|e| ImageError::io(&file, e))?;
    entries_from_bytes(&file, &data, magic_name)
}

/// As [`read_entries`], from bytes already in memory.
pub fn entries_from_bytes<M: Message + Default>(file: &str, data: &[u8], magic_name: &str) -> Result<Vec<M>> {
    raw_entries(file, data, magic_name)?
        .into_iter()
        .enumerate()
        .map(|(index, (offset, body))| decode_typed(file, index, offset, body))
        .collect()
}

/// Decode one entry body as `M`, with an error naming file, entry and offset.
pub fn decode_typed<M: Message + Default>(file: &str, index: usize, offset: usize, body: &[u8]) -> Result<M> {
    M::decode(body).map_err(|cause| ImageError::Decode {
        file: file.into(),
        index,
        offset,
        message: std::any::type_name::<M>()
            .rsplit("::")
            .next()
            .unwrap_or("message")
            .into(),
        cause,
    })
}

/// The `[u32 size][message]` entries of an entry image of kind `magic_name`, as (offset, body) without
/// decoding them (no payloads: for images whose entries are all messages).
pub fn raw_entries<'a>(file: &str, data: &'a [u8], magic_name: &str) -> Result<Vec<(usize, &'a [u8])>> {
    let body = match codec::identify(data) {
        Kind::Entries { magic, body, .. } if magic.name == magic_name => body,
        Kind::Entries { magic, .. } => {
            return Err(ImageError::WrongKind {
                file: file.into(),
                found: magic.name.into(),
                expected: magic_name.into(),
            })
        }
        Kind::Raw { .. } => {
            return Err(ImageError::WrongKind {
                file: file.into(),
                found: "raw (no magic)".into(),
                expected: magic_name.into(),
            })
        }
    };
    let mut out = Vec::new();
    let mut pos = body;
    while pos < data.len() {
        let index = out.len();
        let left = data.len() - pos;
        if left < 4 {
            return Err(ImageError::Entry {
                file: file.into(),
                index,
                offset: pos,
                what: format!("truncated length prefix ({left} of 4 bytes)"),
            });
        }
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        if len > left - 4 {
            return Err(ImageError::Entry {
                file: file.into(),
                index,
                offset: pos,
                what: format!(
                    "length prefix {len} runs past the end of the file ({} bytes left)",
                    left - 4
                ),
            });
        }
        out.push((pos, &data[pos + 4..pos + 4 + len]));
        pos += 4 + len;
    }
    Ok(out)
}
