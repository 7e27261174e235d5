//! `crit merge DIR OUT`: an incremental dump and its chain of parent sets made into one self-contained
//! set in OUT (`cryo_image::merge`); the chain itself is left as it is.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The last set of the chain
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Where to write the merged set (created; must not exist or be empty)
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
}

pub fn run(a: &MergeArgs) -> Result<()> {
    let pages = cryo_image::merge::merge_chain(&a.dir, &a.out)?;
    println!("merged {} into {}: {pages} pages", a.dir.display(), a.out.display());
    Ok(())
}
