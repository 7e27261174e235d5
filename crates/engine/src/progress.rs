//! Progress of long page copies (dump, live copy, pre-dump) on stderr, only
//! when stderr is a terminal and the copy is big enough to be worth one.

use std::io::IsTerminal;

/// Below this many bytes no bar is shown.
const MIN_BYTES: u64 = 64 << 20;

/// A progress bar, or nothing (not a terminal, small work, `CRYO_PROGRESS=0`).
#[derive(Clone)]
pub struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    pub fn new(what: &str, bytes: u64) -> Progress {
        if bytes < MIN_BYTES
            || !std::io::stderr().is_terminal()
            || std::env::var_os("CRYO_PROGRESS").is_some_and(|v| v == "0")
        {
            return Progress(None);
        }
        let b = indicatif::ProgressBar::new(bytes);
        if let Ok(st) = indicatif::ProgressStyle::with_template(
            "{msg:>12} [{bar:40}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
        ) {
            b.set_style(st.progress_chars("=> "));
        }
        b.set_message(what.to_string());
        Progress(Some(b))
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}
