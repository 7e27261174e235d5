//! Restore tests: terminals: pty pairs, pty masters, /dev/tty, consoles, vts.

#[allow(unused_imports)]
use super::*;
