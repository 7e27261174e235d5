//! pagemap-*.img + pages-*.img: which pages of a process were dumped, and where their bytes are.
//!
//! A pagemap image is a `pagemap_head` (naming `pages-<pages_id>.img`) and then runs of pages. Runs flagged
//! `PE_PRESENT` have their bytes in the pages file, one after the other in pagemap order; `PE_PARENT` runs
//! are in the parent image set (incremental dumps); `PE_LAZY` runs are served later by a page server. The
//! number of pages is `nr_pages` (CRIU 4.x, 64-bit) or, in older images, `compat_nr_pages`.

use crate::error::{ImageError, Result};
use crate::{pb, PAGE_SIZE};

pub const PE_PARENT: u32 = 1 << 0;
pub const PE_LAZY: u32 = 1 << 1;
pub const PE_PRESENT: u32 = 1 << 2;

/// One run of pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRun {
    pub vaddr: u64,
    pub nr_pages: u64,
    pub flags: u32,
    /// Byte offset of the run in the pages file (only for `PE_PRESENT` runs).
    pub offset: Option<u64>,
}

impl PageRun {
    pub fn end(&self) -> u64 {
        self.vaddr + self.nr_pages * PAGE_SIZE
    }
}

/// A validated pagemap: runs sorted by address, none overflowing, all inside the pages file.
#[derive(Debug, Clone, Default)]
pub struct Pagemap {
    pub pages_id: u32,
    pub runs: Vec<PageRun>,
}

impl Pagemap {
    /// Build from decoded entries. `pages_len` is the size of the pages file (None: don't check).
    pub fn new(
        file: &str,
        head: &pb::PagemapHead,
        entries: &[pb::PagemapEntry],
        pages_len: Option<u64>,
    ) -> Result<Self> {
        let mut runs = Vec::with_capacity(entries.len());
        let mut off = 0u64;
        for (i, e) in entries.iter().enumerate() {
            let index = i + 1;
            let bad = |what: String| ImageError::Entry {
                file: file.into(),
                index,
                offset: 0,
                what,
            };
            let nr = e.nr_pages.unwrap_or(e.compat_nr_pages as u64);
            let flags = e.flags.unwrap_or(PE_PRESENT);
            if e.vaddr % PAGE_SIZE != 0 {
                return Err(bad(format!("vaddr {:#x} is not page aligned", e.vaddr)));
            }
            let bytes = nr
                .checked_mul(PAGE_SIZE)
                .ok_or_else(|| bad(format!("{nr} pages overflow")))?;
            if e.vaddr.checked_add(bytes).is_none() {
                return Err(bad(format!("{nr} pages at {:#x} overflow the address space", e.vaddr)));
            }
            let offset = if flags & PE_PRESENT != 0 {
                let o = off;
                off = off
                    .checked_add(bytes)
                    .ok_or_else(|| bad("pages file offset overflows".into()))?;
                if let Some(len) = pages_len {
                    if off > len {
                        return Err(bad(format!(
                            "pages up to byte {off} of pages-{}.img, but that file is {len} bytes",
                            head.pages_id
                        )));
                    }
                }
                Some(o)
            } else {
                None
            };
            runs.push(PageRun {
                vaddr: e.vaddr,
                nr_pages: nr,
                flags,
                offset,
            });
        }
        runs.sort_by_key(|r| r.vaddr);
        for w in runs.windows(2) {
            if w[0].end() > w[1].vaddr {
                return Err(ImageError::invalid(
                    file,
                    format!("page runs at {:#x} and {:#x} overlap", w[0].vaddr, w[1].vaddr),
                ));
            }
        }
        Ok(Pagemap {
            pages_id: head.pages_id,
            runs,
        })
    }

    /// The run holding `addr`, if any.
    pub fn find(&self, addr: u64) -> Option<&PageRun> {
        let i = self.runs.partition_point(|r| r.end() <= addr);
        self.runs.get(i).filter(|r| r.vaddr <= addr)
    }

    /// Bytes the present runs take in the pages file.
    pub fn present_bytes(&self) -> u64 {
        self.runs
            .iter()
            .filter(|r| r.offset.is_some())
            .map(|r| r.nr_pages * PAGE_SIZE)
            .sum()
    }
}
