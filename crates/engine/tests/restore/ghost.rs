//! Restore tests: deleted and unlinked files, ghost files, link remaps, cwd/root, /proc files.

#[allow(unused_imports)]
use super::*;
