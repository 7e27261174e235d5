//! `crit show`: `decode --pretty` to stdout; `--nopl` replaces payloads by their size. A raw pages image
//! gets a short description instead of an error.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use cryo_image::{codec, json, pyjson, Extra};
use serde_json::Value;

use crate::io::{read_input, write_output};

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The image
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// Do not show entry payloads, only their size
    #[arg(long)]
    pub nopl: bool,
}

/// Python crit's human-readable size ("4KB", "1.5MB").
pub fn human_size(n: u64) -> String {
    let mut x = n as f64;
    for unit in ["", "K", "M", "G", "T", "P", "E", "Z"] {
        if x < 1024.0 {
            return if x.fract() == 0.0 {
                format!("{}{unit}B", x as u64)
            } else {
                format!("{x:.1}{unit}B")
            };
        }
        x /= 1024.0;
    }
    format!("{x:.1}YB")
}

fn payload_size(e: &Extra) -> u64 {
    match e {
        Extra::None => 0,
        Extra::Blob(b) => b.len() as u64,
        Extra::Tcp { inq, outq } => (inq.len() + outq.len()) as u64,
        Extra::Sems(v) => v.len() as u64 * 2,
        Extra::Msgs(v) => v
            .iter()
            .map(|(m, d)| (prost::Message::encoded_len(m) + d.len()) as u64)
            .sum(),
    }
}

pub fn run(a: &ShowArgs) -> Result<()> {
    let (name, data) = read_input(Some(&a.input))?;
    let v = match codec::identify(&data) {
        codec::Kind::Raw { .. } => super::info::describe_raw(&a.input, data.len() as u64),
        _ if !a.nopl => json::decode_to_json(&name, &data, true)?,
        _ => {
            let img = codec::decode(&name, &data)?;
            let mut v = json::image_to_json(&img, true);
            let ghost = img.magic.name == "GHOST_FILE";
            if let Some(Value::Array(entries)) = v.get_mut("entries") {
                for (j, e) in entries.iter_mut().zip(&img.entries) {
                    if let Some(o) = j.as_object_mut() {
                        if o.contains_key("extra") {
                            if ghost {
                                o.remove("extra");
                            } else {
                                o.insert(
                                    "extra".into(),
                                    Value::String(format!("... <{}>", human_size(payload_size(&e.extra)))),
                                );
                            }
                        }
                    }
                }
            }
            v
        }
    };
    let mut text = pyjson::to_string(&v, Some(4));
    text.push('\n');
    write_output(None, text.as_bytes())
}
