#![forbid(unsafe_code)]
//! CRIU's on-disk image format, byte for byte.
//!
//! * [`pb`]: the protobuf types of every CRIU 4.2 image, generated at build time from `proto/` with
//!   prost-build + protox (no system protoc);
//! * [`pool`]: the same definitions as a prost-reflect descriptor pool, so any image decodes dynamically;
//! * [`magic`]: the magic table; [`codec`]: framing and payloads; [`json`]: crit's JSON both ways;
//! * [`ImageSet`]: lazy, typed access to a dump directory, including process memory read straight from
//!   `pages-*.img`; [`ImageWriter`]: writes an image atomically (temp name, fsync, rename).

pub mod codec;
pub mod error;
pub mod imageset;
pub mod json;
pub mod magic;
pub mod pages;
pub mod pretty;
pub mod pyjson;
pub mod writer;

use std::sync::OnceLock;

use prost_reflect::DescriptorPool;

pub use codec::{decode, encode, Entry, Extra, Image};
pub use error::{ImageError, Result};
pub use imageset::ImageSet;
pub use pages::{PageRun, Pagemap, PE_LAZY, PE_PARENT, PE_PRESENT};
pub use writer::{read_entries, write_entries, ImageWriter};

/// Generated protobuf types (CRIU's protos have no package; names are prost's CamelCase of CRIU's).
#[allow(clippy::all, missing_docs, non_camel_case_types)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

static DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// The descriptor pool of all image definitions.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTOR_SET).expect("embedded descriptor set decodes"))
}

/// Size of a page in CRIU images (x86_64).
pub const PAGE_SIZE: u64 = 4096;
