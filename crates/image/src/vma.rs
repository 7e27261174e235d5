//! CRIU's VMA status bits (`vma_entry.status`, criu/include/image.h), the one copy every crate uses.

pub const VMA_AREA_NONE: u32 = 0;
pub const VMA_AREA_REGULAR: u32 = 1 << 0;
pub const VMA_AREA_STACK: u32 = 1 << 1;
pub const VMA_AREA_VSYSCALL: u32 = 1 << 2;
pub const VMA_AREA_VDSO: u32 = 1 << 3;
pub const VMA_AREA_HEAP: u32 = 1 << 5;
pub const VMA_FILE_PRIVATE: u32 = 1 << 6;
pub const VMA_FILE_SHARED: u32 = 1 << 7;
pub const VMA_ANON_SHARED: u32 = 1 << 8;
pub const VMA_ANON_PRIVATE: u32 = 1 << 9;
pub const VMA_AREA_SYSVIPC: u32 = 1 << 10;
pub const VMA_AREA_SOCKET: u32 = 1 << 11;
pub const VMA_AREA_VVAR: u32 = 1 << 12;
pub const VMA_AREA_AIORING: u32 = 1 << 13;
pub const VMA_AREA_MEMFD: u32 = 1 << 14;
pub const VMA_AREA_SHSTK: u32 = 1 << 15;
/// Not a kernel VMA: a range covered by MADV_GUARD_INSTALL guards (listed after the VMAs).
pub const VMA_AREA_GUARD: u32 = 1 << 16;
pub const VMA_AREA_UPROBES: u32 = 1 << 17;
pub const VMA_UNSUPP: u32 = 1 << 31;
