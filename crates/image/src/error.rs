//! Errors of the image layer. Every variant names the file; entry errors also name the entry index and the
//! byte offset where the entry starts.

use std::io;

/// Anything that can go wrong reading, decoding, converting or writing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    // The cause is part of the message and deliberately not a `source()`, so that a printed error chain
    // does not repeat it.
    #[error("{file}: {cause}")]
    Io { file: String, cause: io::Error },
    #[error("{file}: file is {len} bytes, too short for an image head")]
    NoHead { file: String, len: usize },
    #[error("{file}: unknown magic {magic:#010x} at byte {offset}{hint}")]
    UnknownMagic {
        file: String,
        magic: u32,
        offset: usize,
        hint: &'static str,
    },
    #[error("{file}: is a {found} image, expected {expected}")]
    WrongKind {
        file: String,
        found: String,
        expected: String,
    },
    #[error("{file}: entry {index} at byte {offset}: {what}")]
    Entry {
        file: String,
        index: usize,
        offset: usize,
        what: String,
    },
    #[error("{file}: entry {index} at byte {offset}: {message} does not decode: {cause}")]
    Decode {
        file: String,
        index: usize,
        offset: usize,
        message: String,
        cause: prost::DecodeError,
    },
    #[error("{file}: JSON: {what}")]
    Json { file: String, what: String },
    #[error("{file}: {what}")]
    Invalid { file: String, what: String },
}

impl ImageError {
    pub(crate) fn io(file: impl Into<String>, source: io::Error) -> Self {
        ImageError::Io {
            file: file.into(),
            cause: source,
        }
    }
    pub(crate) fn invalid(file: impl Into<String>, what: impl Into<String>) -> Self {
        ImageError::Invalid {
            file: file.into(),
            what: what.into(),
        }
    }
}

/// Result alias of the image layer.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;
