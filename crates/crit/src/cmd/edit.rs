//! `crit edit DIR/IMG`: decode an image to pretty JSON in a temporary file, open `$VISUAL` / `$EDITOR`
//! (default `vi`), then validate the result (JSON, crit's shape, every message and payload encodes, and
//! the bytes decode back) and replace the image atomically (temp name in the same directory, fsync,
//! rename). On any error the original image is left as it was, and the edited JSON is kept and named so
//! the work is not lost. If the image belongs to a set, `crit check` problems of the set after the edit
//! are printed as warnings.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;
use cryo_image::{check, codec, json, pyjson, ImageSet};

#[derive(Args, Debug)]
pub struct EditArgs {
    /// The image to edit (e.g. DIR/core-1234.img)
    #[arg(value_name = "IMG")]
    pub image: PathBuf,
}

/// The editor command: `$VISUAL`, else `$EDITOR`, else `vi`.
fn editor() -> String {
    ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "vi".into())
}

/// Image bytes from edited JSON text, validated by decoding them back.
pub fn encode_edited(name: &str, text: &[u8]) -> Result<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_slice(text).with_context(|| format!("{name}: not valid JSON"))?;
    let img = json::image_from_json(name, &v)?;
    let bytes = codec::encode(name, &img)?;
    codec::decode(name, &bytes).with_context(|| format!("{name}: the edited image does not decode back"))?;
    Ok(bytes)
}

/// Replace `path` by `data` atomically, keeping its permissions.
pub fn replace_file(path: &Path, data: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{name}.crit-edit.{}", std::process::id()));
    let res = (|| -> Result<()> {
        let mut f = File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        f.write_all(data)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
        if let Ok(m) = fs::metadata(path) {
            fs::set_permissions(&tmp, m.permissions())?;
        }
        fs::rename(&tmp, path).with_context(|| format!("{}: cannot replace", path.display()))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

pub fn run(a: &EditArgs) -> Result<()> {
    let path = &a.image;
    let name = path.display().to_string();
    let data = fs::read(path).with_context(|| format!("{name}: cannot read"))?;
    if let codec::Kind::Raw { .. } = codec::identify(&data) {
        bail!("{name}: not a protobuf image (raw data such as pages-*.img cannot be edited as JSON)");
    }
    let img = codec::decode(&name, &data)?;
    let mut original = pyjson::to_string(&json::image_to_json(&img, true), Some(4));
    original.push('\n');

    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmpdir = std::env::temp_dir().join(format!("crit-edit-{}", std::process::id()));
    fs::create_dir_all(&tmpdir).with_context(|| format!("{}: cannot create", tmpdir.display()))?;
    let json_path = tmpdir.join(format!("{}.json", base.trim_end_matches(".img")));
    fs::write(&json_path, &original).with_context(|| format!("{}: cannot write", json_path.display()))?;
    let cleanup = || {
        let _ = fs::remove_file(&json_path);
        let _ = fs::remove_dir(&tmpdir);
    };

    let ed = editor();
    // Through the shell, as git does, so that EDITOR may carry arguments ("code --wait").
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{ed} \"$@\""))
        .arg(&ed)
        .arg(&json_path)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            cleanup();
            bail!("editor `{ed}` failed ({s}); {name} is unchanged");
        }
        Err(e) => {
            cleanup();
            bail!("cannot run editor `{ed}`: {e}; {name} is unchanged");
        }
    }
    let edited = fs::read(&json_path).with_context(|| format!("{}: cannot read back", json_path.display()))?;
    if edited == original.as_bytes() {
        cleanup();
        eprintln!("crit edit: {name}: no change");
        return Ok(());
    }
    let bytes = match encode_edited(&name, &edited) {
        Ok(b) => b,
        Err(e) => {
            return Err(e.context(format!(
                "{name} is unchanged; your edit is kept in {}",
                json_path.display()
            )))
        }
    };
    if bytes == data {
        cleanup();
        eprintln!("crit edit: {name}: same image bytes, nothing to write");
        return Ok(());
    }
    replace_file(path, &bytes).map_err(|e| e.context(format!("your edit is kept in {}", json_path.display())))?;
    cleanup();
    eprintln!("crit edit: {name}: written ({} bytes)", bytes.len());
    if let Some(dir) = path.parent().filter(|d| d.join("inventory.img").is_file()) {
        if let Ok(set) = ImageSet::open(dir) {
            let r = check::check_set(&set);
            for p in &r.problems {
                eprintln!("crit edit: warning: the set now has a problem: {p}");
            }
        }
    }
    Ok(())
}
