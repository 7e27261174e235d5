#![forbid(unsafe_code)]
//! CRIU image format (placeholder, being written).
