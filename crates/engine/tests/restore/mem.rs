//! Restore tests: memory: protections, many VMAs, copy-on-write sharing, aio rings, hugetlb.

#[allow(unused_imports)]
use super::*;
