//! VMA status bits (CRIU's `VMA_*`) and what kind of mapping a VMA is.

use cryo_image::pb;
use serde::Serialize;

pub use cryo_image::vma::*;

pub const PROT_READ: u32 = 1;
pub const PROT_WRITE: u32 = 2;
pub const PROT_EXEC: u32 = 4;
pub const MAP_SHARED: u32 = 1;
pub const MAP_GROWSDOWN: u32 = 0x100;

/// What a mapping is, for people and for `crit mem --kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VmaKind {
    /// Private file mapping (program text, libraries, mapped data files).
    File,
    /// Shared mapping: MAP_SHARED files, shared anonymous memory, SysV shm, memfd.
    Shared,
    Heap,
    Stack,
    /// vdso, vvar, vsyscall: the kernel's.
    Kernel,
    /// Private anonymous memory.
    Anon,
}

impl VmaKind {
    pub fn of(v: &pb::VmaEntry, mm: Option<&pb::MmEntry>) -> Self {
        let st = v.status;
        if st & (VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL) != 0 {
            VmaKind::Kernel
        } else if st & (VMA_FILE_SHARED | VMA_ANON_SHARED | VMA_AREA_SYSVIPC | VMA_AREA_MEMFD) != 0
            || v.flags & MAP_SHARED != 0
        {
            VmaKind::Shared
        } else if st & VMA_FILE_PRIVATE != 0 {
            VmaKind::File
        } else if st & VMA_AREA_HEAP != 0 {
            VmaKind::Heap
        } else if st & VMA_AREA_STACK != 0
            || v.flags & MAP_GROWSDOWN != 0
            || mm.is_some_and(|m| m.mm_start_stack >= v.start && m.mm_start_stack < v.end)
        {
            VmaKind::Stack
        } else {
            VmaKind::Anon
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            VmaKind::File => "file",
            VmaKind::Shared => "shared",
            VmaKind::Heap => "heap",
            VmaKind::Stack => "stack",
            VmaKind::Kernel => "kernel",
            VmaKind::Anon => "anon",
        }
    }
}

/// `rwx` string of a protection (crit's three letters).
pub fn prot_str(prot: u32) -> String {
    let mut s = String::with_capacity(3);
    s.push(if prot & PROT_READ != 0 { 'r' } else { '-' });
    s.push(if prot & PROT_WRITE != 0 { 'w' } else { '-' });
    s.push(if prot & PROT_EXEC != 0 { 'x' } else { '-' });
    s
}

/// Whether the VMA's file is backed by files.img (a file mapping, private or shared).
pub fn is_file_backed(v: &pb::VmaEntry) -> bool {
    v.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let v = |status, flags| pb::VmaEntry {
            start: 0x1000,
            end: 0x2000,
            status,
            flags,
            ..Default::default()
        };
        assert_eq!(
            VmaKind::of(&v(VMA_AREA_REGULAR | VMA_FILE_PRIVATE, 2), None),
            VmaKind::File
        );
        assert_eq!(
            VmaKind::of(&v(VMA_AREA_REGULAR | VMA_FILE_SHARED, 1), None),
            VmaKind::Shared
        );
        assert_eq!(
            VmaKind::of(&v(VMA_AREA_REGULAR | VMA_AREA_HEAP | VMA_ANON_PRIVATE, 0x22), None),
            VmaKind::Heap
        );
        assert_eq!(
            VmaKind::of(&v(VMA_AREA_REGULAR | VMA_ANON_PRIVATE, 0x122), None),
            VmaKind::Stack
        );
        assert_eq!(
            VmaKind::of(&v(VMA_AREA_VDSO | VMA_ANON_PRIVATE, 0x22), None),
            VmaKind::Kernel
        );
        assert_eq!(
            VmaKind::of(&v(VMA_AREA_REGULAR | VMA_ANON_PRIVATE, 0x22), None),
            VmaKind::Anon
        );
        assert_eq!(prot_str(5), "r-x");
    }
}
