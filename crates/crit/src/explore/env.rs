//! `crit x DIR env`: each process's command line and environment, read from its dumped memory
//! (mm's `mm_arg_start..mm_arg_end` and `mm_env_start..mm_env_end`).

use serde::Serialize;

use cryo_image::{pb, ImageSet};

use super::Result;

#[derive(Debug, Clone, Serialize)]
pub struct ProcEnv {
    pub pid: u32,
    pub argv: Vec<String>,
    pub env: Vec<String>,
}

/// NUL-separated strings (a missing final NUL is tolerated), lossily as UTF-8.
pub fn split_nul(b: &[u8]) -> Vec<String> {
    let b = b.strip_suffix(&[0]).unwrap_or(b);
    if b.is_empty() {
        return Vec::new();
    }
    b.split(|&c| c == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

pub fn build(set: &ImageSet, procs: &[pb::PstreeEntry]) -> Result<Vec<ProcEnv>> {
    let mut out = Vec::new();
    for p in procs {
        let mm = set.mm(p.pid)?;
        let read = |a: u64, b: u64| -> Result<Vec<u8>> {
            let len = b.saturating_sub(a) as usize;
            Ok(set.read_memory(p.pid, a, len)?)
        };
        out.push(ProcEnv {
            pid: p.pid,
            argv: split_nul(&read(mm.mm_arg_start, mm.mm_arg_end)?),
            env: split_nul(&read(mm.mm_env_start, mm.mm_env_end)?),
        });
    }
    Ok(out)
}

/// Shell-like quoting of one word, when needed.
fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

pub fn render(procs: &[ProcEnv]) -> String {
    let mut s = String::new();
    for p in procs {
        let argv: Vec<String> = p.argv.iter().map(|a| quote(a)).collect();
        s.push_str(&format!("{}\n\targv: {}\n", p.pid, argv.join(" ")));
        for e in &p.env {
            s.push_str(&format!("\tenv:  {e}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        assert_eq!(split_nul(b"a\0bc\0"), vec!["a", "bc"]);
        assert_eq!(split_nul(b"a\0bc"), vec!["a", "bc"]);
        assert!(split_nul(b"").is_empty());
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
