//! `crit info`: the magic and entry count of an image; for a raw pages image, what it holds.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use cryo_image::{codec, pyjson};
use serde_json::{json, Value};

use crate::io::{read_input, write_output};

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The image
    #[arg(value_name = "IN")]
    pub input: PathBuf,
}

/// Describe a raw image (no magic): its size, pages, and the pagemaps in the same directory that point at it.
///
/// Shape: `{"magic": "RAW", "kind": "pages", "size": BYTES, "pages": N, "pages_id": ID,
/// "used_by": [{"pagemap": "pagemap-PID.img", "pid": PID, "present_pages": N}], "note": "..."}`.
pub fn describe_raw(path: &Path, data_len: u64) -> Value {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id: Option<u32> = name
        .strip_prefix("pages-")
        .and_then(|s| s.strip_suffix(".img"))
        .and_then(|s| s.parse().ok());
    let mut users = Vec::new();
    if let (Some(id), Some(dir)) = (id, path.parent()) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(rd) = std::fs::read_dir(dir) {
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for n in names
                .iter()
                .filter(|n| n.starts_with("pagemap-") && n.ends_with(".img"))
            {
                let Ok(bytes) = std::fs::read(dir.join(n)) else {
                    continue;
                };
                let Ok(img) = codec::decode(n, &bytes) else { continue };
                let Some(head) = img.entries.first() else { continue };
                if codec::get_u64(&head.msg, "pages_id") as u32 != id {
                    continue;
                }
                let present: u64 = img.entries[1..]
                    .iter()
                    .filter(|e| e.msg.get_field_by_name("flags").and_then(|v| v.as_u32()).unwrap_or(4) & 4 != 0)
                    .map(|e| {
                        let nr = codec::get_u64(&e.msg, "nr_pages");
                        if nr != 0 {
                            nr
                        } else {
                            codec::get_u64(&e.msg, "compat_nr_pages")
                        }
                    })
                    .sum();
                let owner = n.trim_start_matches("pagemap-").trim_end_matches(".img");
                let mut u = json!({"pagemap": n, "present_pages": present});
                match owner.parse::<u64>() {
                    Ok(pid) => u["pid"] = json!(pid),
                    Err(_) => u["owner"] = json!(owner),
                }
                users.push(u);
            }
        }
    }
    let mut v = json!({
        "magic": "RAW",
        "kind": if id.is_some() { "pages" } else { "raw" },
        "size": data_len,
        "pages": data_len / 4096,
    });
    if let Some(id) = id {
        v["pages_id"] = json!(id);
    }
    v["used_by"] = Value::Array(users);
    v["note"] = json!("raw image without a magic: page contents in the order of the pagemap's PE_PRESENT runs; read them with `crit mem` or the image library");
    v
}

pub fn run(a: &InfoArgs) -> Result<()> {
    let (name, data) = read_input(Some(&a.input))?;
    let v = match codec::identify(&data) {
        codec::Kind::Raw { .. } => describe_raw(&a.input, data.len() as u64),
        _ => {
            let img = codec::decode(&name, &data)?;
            let count = if img.magic.name == "PAGEMAP" {
                img.entries.len().saturating_sub(1)
            } else {
                img.entries.len()
            };
            json!({"magic": img.magic.name, "count": count})
        }
    };
    let mut text = pyjson::to_string(&v, Some(4));
    text.push('\n');
    write_output(None, text.as_bytes())
}
