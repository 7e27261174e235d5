//! The blobs built from `parasite/` (the loader side lives with its users).
pub mod blob;
