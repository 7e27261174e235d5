//! `crit check DIR`: consistency of a whole image set (the checks of `cryo_image::check`, which restore
//! runs too). Prints one line per problem (`FILE entry N: WHAT`) and exits 1 when there is any.
//!
//! `--json`: `{"dir": DIR, "ok": BOOL, "processes": N, "images": N,
//! "problems": [{"file": NAME, "entry": N|null, "what": TEXT}]}`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use cryo_image::check;
use serde_json::json;

use crate::io::write_output;
use crate::status::Exit;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The image directory
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

/// The report as the JSON documented above.
pub fn report_json(dir: &str, r: &check::Report) -> serde_json::Value {
    json!({
        "dir": dir,
        "ok": r.is_ok(),
        "processes": r.processes,
        "images": r.images,
        "problems": r.problems.iter().map(|p| json!({"file": p.file, "entry": p.entry, "what": p.what})).collect::<Vec<_>>(),
    })
}

pub fn run(a: &CheckArgs) -> Result<()> {
    let dir = a.dir.display().to_string();
    let r = match crate::archive::SetDir::open(&a.dir) {
        Ok(sd) => {
            let mut r = check::check_dir(sd.path());
            if let Some(ar) = sd.archive() {
                let tmp = ar.image_dir().display().to_string();
                for p in &mut r.problems {
                    p.what = p.what.replace(&tmp, &ar.path.display().to_string());
                }
            }
            r
        }
        Err(e) => check::Report {
            problems: vec![check::Problem {
                file: ".".into(),
                entry: None,
                what: e.to_string(),
            }],
            ..check::Report::default()
        },
    };
    if a.json {
        let mut text = serde_json::to_string_pretty(&report_json(&dir, &r))?;
        text.push('\n');
        write_output(None, text.as_bytes())?;
    } else if r.is_ok() {
        let text = format!("{dir}: ok ({} processes, {} files)\n", r.processes, r.images);
        write_output(None, text.as_bytes())?;
    } else {
        write_output(None, r.to_string().as_bytes())?;
        let n = r.problems.len();
        eprintln!("crit check: {dir}: {n} problem{}", if n == 1 { "" } else { "s" });
    }
    if r.is_ok() {
        Ok(())
    } else {
        Err(Exit(1).into())
    }
}
