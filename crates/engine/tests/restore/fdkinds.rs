//! Restore tests: fd kinds and their state: pipes, memfd, locks, leases, owners, pidfd, fanotify, epoll, shared fd tables.

#[allow(unused_imports)]
use super::*;
