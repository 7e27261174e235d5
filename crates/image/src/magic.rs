//! The table of CRIU image magics (generated from `proto/magics.tsv`) and the rules for an image's head.
//!
//! An image starts with one or two little-endian u32 magics: `IMG_COMMON` or `IMG_SERVICE` and then the
//! image's own magic; `inventory.img` has only its own magic. Raw images (`pages-*.img`, ip tool dumps,
//! tmpfs tarballs) have no magic at all.

/// One known image kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MagicDesc {
    /// The name crit prints as `"magic"` (e.g. `CORE`, `PIPES_DATA`).
    pub name: &'static str,
    /// The image's own magic number.
    pub magic: u32,
    /// Protobuf message of the entries (`None`: not an entry image).
    pub message: Option<&'static str>,
    /// Name of the payload that follows each entry, if any (`pipes_data`, `tcp_stream`, ...).
    pub extra: Option<&'static str>,
}

include!(concat!(env!("OUT_DIR"), "/magics.rs"));

/// First magic of ordinary images.
pub const IMG_COMMON: u32 = 0x5456_4319;
/// First magic of service images (stats, irmap cache).
pub const IMG_SERVICE: u32 = 0x5510_5940;

/// Look a magic up by crit's name.
pub fn by_name(name: &str) -> Option<&'static MagicDesc> {
    MAGICS.iter().find(|m| m.name == name)
}

/// Look a magic up by its number (never matches the two head magics).
pub fn by_value(magic: u32) -> Option<&'static MagicDesc> {
    MAGICS.iter().find(|m| m.magic == magic && m.message.is_some())
}

/// Which head magic an image of this kind is written with (`None`: only its own magic, as inventory).
pub fn head_magic(name: &str) -> Option<u32> {
    match name {
        "INVENTORY" => None,
        "STATS" | "IRMAP_CACHE" => Some(IMG_SERVICE),
        _ => Some(IMG_COMMON),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_unique() {
        for (i, a) in MAGICS.iter().enumerate() {
            for b in &MAGICS[i + 1..] {
                assert_ne!(a.name, b.name, "duplicate name");
                if a.message.is_some() && b.message.is_some() {
                    assert_ne!(a.magic, b.magic, "{} and {} share a magic", a.name, b.name);
                }
            }
        }
    }

    #[test]
    fn every_message_is_in_the_descriptor_pool() {
        for m in MAGICS {
            if let Some(msg) = m.message {
                assert!(
                    crate::pool().get_message_by_name(msg).is_some(),
                    "{}: no message {msg}",
                    m.name
                );
            }
        }
    }

    #[test]
    fn well_known_magics() {
        assert_eq!(by_name("INVENTORY").unwrap().magic, 0x5831_3116);
        assert_eq!(by_value(by_name("CORE").unwrap().magic).unwrap().name, "CORE");
    }
}
