//! `crit decode`: image -> JSON (crit's JSON, `--pretty` for the readable form).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use cryo_image::{codec, json, pyjson};

use crate::io::{read_input, write_output};

#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// Input image (default: stdin)
    #[arg(short = 'i', long = "in")]
    pub input: Option<PathBuf>,
    /// Output file (default: stdout)
    #[arg(short = 'o', long = "out")]
    pub output: Option<PathBuf>,
    /// Multi-line output with readable values (hex, flag names, devices, addresses)
    #[arg(long)]
    pub pretty: bool,
}

/// Decode bytes of an image to crit's JSON text (with a final newline).
pub fn decode_to_text(name: &str, data: &[u8], pretty: bool) -> Result<String> {
    if let codec::Kind::Raw { .. } = codec::identify(data) {
        if !data.is_empty() && data.len().is_multiple_of(4096) {
            bail!("{name}: not a protobuf image: it has no CRIU magic; {} bytes = {} pages of raw data (a pages-*.img?). Try `crit show {name}`.", data.len(), data.len() / 4096)
        }
    }
    let v = json::decode_to_json(name, data, pretty)?;
    let mut text = pyjson::to_string(&v, pretty.then_some(4));
    text.push('\n');
    Ok(text)
}

pub fn run(a: &DecodeArgs) -> Result<()> {
    let (name, data) = read_input(a.input.as_deref())?;
    let text = decode_to_text(&name, &data, a.pretty)?;
    write_output(a.output.as_deref(), text.as_bytes())
}
