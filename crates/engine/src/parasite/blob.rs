//! Blobs built from `parasite/` by build.rs (see its doc for the format).

/// A flat position-independent image of one bin of the `parasite/` crate.
#[derive(Debug)]
pub struct Blob {
    /// The bin's name (`parasite`, `restorer`, ...).
    pub name: &'static str,
    /// File-backed part of the image, from vaddr 0 (bss is beyond it, zero).
    pub image: &'static [u8],
    /// Bytes of memory the image needs (page-aligned, bss included).
    pub mem_size: usize,
    /// Entry point offset.
    pub entry: usize,
    /// Offsets of u64 slots to which the load base must be added.
    pub relocs: &'static [u64],
    /// Global symbols: (name, offset).
    pub symbols: &'static [(&'static str, u64)],
}

impl Blob {
    /// The image relocated for loading at `base`.
    pub fn relocated(&self, base: u64) -> Vec<u8> {
        let mut img = self.image.to_vec();
        for &off in self.relocs {
            let o = off as usize;
            let v = u64::from_le_bytes(img[o..o + 8].try_into().expect("8 bytes")).wrapping_add(base);
            img[o..o + 8].copy_from_slice(&v.to_le_bytes());
        }
        img
    }

    /// Offset of a global symbol.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }
}

include!(concat!(env!("OUT_DIR"), "/blobs.rs"));
