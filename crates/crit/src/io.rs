//! Input and output as crit does it: a file or stdin/stdout, and a closed pipe is not an error.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// Read all of `path`, or stdin when it is `None` or `-`. Returns (name for messages, bytes).
pub fn read_input(path: Option<&Path>) -> Result<(String, Vec<u8>)> {
    match path {
        Some(p) if p != Path::new("-") && crate::archive::split_member(p).is_some() => {
            // ARCHIVE:IMAGE, read from the checkpoint archive.
            let (ar, member) = crate::archive::split_member(p).expect("checked");
            let data = crate::archive::read_member(&ar, &member)?;
            Ok((p.display().to_string(), data))
        }
        Some(p) if p != Path::new("-") => {
            let data = fs::read(p).with_context(|| format!("{}: cannot read", p.display()))?;
            Ok((p.display().to_string(), data))
        }
        _ => {
            let mut data = Vec::new();
            io::stdin().read_to_end(&mut data).context("<stdin>: cannot read")?;
            Ok(("<stdin>".to_string(), data))
        }
    }
}

/// Write `data` to `path` (atomically: temp name + rename) or to stdout.
pub fn write_output(path: Option<&Path>, data: &[u8]) -> Result<()> {
    match path {
        Some(p) if p != Path::new("-") => {
            let mut tmp = p.as_os_str().to_owned();
            tmp.push(".tmp");
            fs::write(&tmp, data).with_context(|| format!("{}: cannot write", p.display()))?;
            fs::rename(&tmp, p).with_context(|| format!("{}: cannot write", p.display()))?;
            Ok(())
        }
        _ => {
            let mut out = io::stdout().lock();
            out.write_all(data)
                .and_then(|_| out.flush())
                .map_err(anyhow::Error::from)
        }
    }
}

/// Whether an error chain ends in a closed pipe (`crit ... | head`), which is not a failure.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}
