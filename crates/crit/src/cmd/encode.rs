//! `crit encode`: JSON (plain or pretty) -> image, byte for byte what CRIU writes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use cryo_image::{codec, json};

use crate::io::{read_input, write_output};

#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// Input JSON (default: stdin)
    #[arg(short = 'i', long = "in")]
    pub input: Option<PathBuf>,
    /// Output image (default: stdout)
    #[arg(short = 'o', long = "out")]
    pub output: Option<PathBuf>,
}

/// Encode crit JSON text to image bytes.
pub fn encode_text(name: &str, data: &[u8]) -> Result<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_slice(data)
        .with_context(|| format!("{name}: not JSON (encode expects crit's JSON, e.g. from `crit decode`)"))?;
    let img = json::image_from_json(name, &v)?;
    Ok(codec::encode(name, &img)?)
}

pub fn run(a: &EncodeArgs) -> Result<()> {
    let (name, data) = read_input(a.input.as_deref())?;
    let bytes = encode_text(&name, &data)?;
    write_output(a.output.as_deref(), &bytes)
}
