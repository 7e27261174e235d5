//! membarrier(2) registrations: per mm, recorded in the task core's
//! `membarrier_registration_mask` as CRIU 4.2 does.
//!
//! Dump: the parasite asks the target's mm with MEMBARRIER_CMD_GET_REGISTRATIONS
//! (Linux 6.3+), which answers with the MEMBARRIER_CMD_REGISTER_* bits of the
//! commands the mm registered for (`cryo_abi::parasite::Misc::membarrier_mask`);
//! the image stores that mask unchanged, and only when it is not zero.
//! Restore: each bit of the mask is a registration command; the restored task
//! issues every one of them once, before the restorer runs (registration
//! belongs to the mm, which the restorer and the threads it creates share).

use std::fmt;

/// MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED.
pub const REGISTER_GLOBAL_EXPEDITED: u32 = 1 << 2;
/// MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED.
pub const REGISTER_PRIVATE_EXPEDITED: u32 = 1 << 4;
/// MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE.
pub const REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: u32 = 1 << 6;
/// MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ.
pub const REGISTER_PRIVATE_EXPEDITED_RSEQ: u32 = 1 << 8;

/// Every registration command, with its kernel name.
pub const REGISTRATIONS: [(u32, &str); 4] = [
    (REGISTER_GLOBAL_EXPEDITED, "REGISTER_GLOBAL_EXPEDITED"),
    (REGISTER_PRIVATE_EXPEDITED, "REGISTER_PRIVATE_EXPEDITED"),
    (
        REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
        "REGISTER_PRIVATE_EXPEDITED_SYNC_CORE",
    ),
    (REGISTER_PRIVATE_EXPEDITED_RSEQ, "REGISTER_PRIVATE_EXPEDITED_RSEQ"),
];

const ALL: u32 = REGISTER_GLOBAL_EXPEDITED
    | REGISTER_PRIVATE_EXPEDITED
    | REGISTER_PRIVATE_EXPEDITED_SYNC_CORE
    | REGISTER_PRIVATE_EXPEDITED_RSEQ;

/// A validated registration mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Registrations(u32);

/// A mask with bits that are no registration command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("membarrier_registration_mask {mask:#x} has unknown bits {unknown:#x}")]
pub struct UnknownBits {
    pub mask: u32,
    pub unknown: u32,
}

impl TryFrom<u32> for Registrations {
    type Error = UnknownBits;
    fn try_from(mask: u32) -> Result<Self, UnknownBits> {
        if mask & !ALL != 0 {
            return Err(UnknownBits {
                mask,
                unknown: mask & !ALL,
            });
        }
        Ok(Registrations(mask))
    }
}

impl Registrations {
    pub fn mask(self) -> u32 {
        self.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The image field: None when nothing is registered (as CRIU writes it).
    pub fn image_field(self) -> Option<u32> {
        (self.0 != 0).then_some(self.0)
    }

    /// Register the calling process's mm for every command of the mask.
    pub fn register(self) -> Result<(), String> {
        for (bit, name) in REGISTRATIONS {
            if self.0 & bit != 0 {
                crate::sys::membarrier(bit, 0).map_err(|e| format!("membarrier({name}): {e}"))?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Registrations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = REGISTRATIONS
            .iter()
            .filter(|(b, _)| self.0 & b != 0)
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join("|"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_validated_and_named() {
        let r = Registrations::try_from(REGISTER_PRIVATE_EXPEDITED | REGISTER_PRIVATE_EXPEDITED_RSEQ).unwrap();
        assert_eq!(
            r.to_string(),
            "REGISTER_PRIVATE_EXPEDITED|REGISTER_PRIVATE_EXPEDITED_RSEQ"
        );
        assert_eq!(r.image_field(), Some(0x110));
        assert_eq!(Registrations::try_from(0).unwrap().image_field(), None);
        let e = Registrations::try_from(0x111).unwrap_err();
        assert_eq!(e.unknown, 1);
        assert!(e.to_string().contains("0x111"), "{e}");
    }
}
