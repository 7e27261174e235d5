//! Restore tests: task state: credentials of non-root tasks, interrupted syscalls, scheduling, rseq, futexes, timers, stops.

#[allow(unused_imports)]
use super::*;
