#![forbid(unsafe_code)]
//! CRIU's on-disk image format, byte for byte.
//!
//! * [`pb`]: the protobuf types of every CRIU 4.2 image, generated at build time from `proto/` with
//!   prost-build + protox (no system protoc);
//! * [`pool`]: the same definitions as a prost-reflect descriptor pool, so any image decodes dynamically;
//! * [`magic`]: the magic table; [`codec`]: framing and payloads; [`json`]: crit's JSON both ways;
//! * [`ImageSet`]: lazy, typed access to a dump directory, including process memory read straight from
//!   `pages-*.img`; [`ImageWriter`]: writes an image atomically (temp name, fsync, rename).

pub mod check;
pub mod codec;
pub mod error;
pub mod fast;
pub mod imageset;
pub mod json;
pub mod magic;
pub mod merge;
pub mod pages;
pub mod pretty;
pub mod pyjson;
pub mod sidecar;
pub mod vma;
pub mod writer;
pub mod x86;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use prost_reflect::{DescriptorPool, MessageDescriptor};

pub use codec::{decode, encode, Entry, Extra, Image};
pub use error::{ImageError, Result};
pub use imageset::{FlatPagemap, ImageSet};
pub use pages::{PageRun, Pagemap, PE_LAZY, PE_PARENT, PE_PRESENT};
pub use writer::{read_entries, write_entries, ImageWriter};

/// Generated protobuf types (CRIU's protos have no package; names are prost's CamelCase of CRIU's).
#[allow(clippy::all, missing_docs, non_camel_case_types)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

/// CRIU's RPC (`criu swrk`, proto/rpc/rpc.proto): the request and response types and, in [`rpc::FIELDS`],
/// the field numbers and wire types of every message (a server refuses fields it does not know).
#[allow(clippy::all, missing_docs, non_camel_case_types)]
pub mod rpc {
    include!(concat!(env!("OUT_DIR"), "/rpc/_.rs"));
    include!(concat!(env!("OUT_DIR"), "/rpc/fields.rs"));
}

static DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// The descriptor pool of all image definitions (built on first use; tools that handle one image kind
/// use [`message_descriptor`], which builds only what that kind needs).
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTOR_SET).expect("embedded descriptor set decodes"))
}

mod subsets {
    include!(concat!(env!("OUT_DIR"), "/subsets.rs"));
}

/// The descriptor of a top-level message by its proto name, from a pool holding only its .proto file and
/// that file's imports, for x86_64 (without other architectures' registers). Messages decoded with it that
/// turn out to carry fields it lacks are decoded again with [`message_descriptor_full`].
pub fn message_descriptor(name: &str) -> Option<MessageDescriptor> {
    subset_descriptor(name, false)
}

/// As [`message_descriptor`], with every architecture's definitions.
pub fn message_descriptor_full(name: &str) -> Option<MessageDescriptor> {
    subset_descriptor(name, true)
}

/// Whether [`message_descriptor`] is a lean variant of [`message_descriptor_full`].
pub fn has_lean_variant(name: &str) -> bool {
    subset_index(name).is_some_and(|(l, f)| l != f)
}

fn subset_index(name: &str) -> Option<(usize, usize)> {
    let i = subsets::MESSAGE_SUBSET
        .binary_search_by(|(m, _, _)| (*m).cmp(name))
        .ok()?;
    let (_, lean, full) = subsets::MESSAGE_SUBSET[i];
    Some((lean, full))
}

fn subset_descriptor(name: &str, full: bool) -> Option<MessageDescriptor> {
    static POOLS: OnceLock<Mutex<HashMap<usize, DescriptorPool>>> = OnceLock::new();
    let (lean, fullx) = subset_index(name)?;
    let idx = if full { fullx } else { lean };
    let pools = POOLS.get_or_init(|| Mutex::new(HashMap::new()));
    let pool = pools
        .lock()
        .unwrap()
        .entry(idx)
        .or_insert_with(|| DescriptorPool::decode(subsets::SUBSETS[idx]).expect("embedded descriptor subset decodes"))
        .clone();
    pool.get_message_by_name(name)
}

/// Size of a page in CRIU images (x86_64).
pub const PAGE_SIZE: u64 = 4096;
