//! Shared low-level code for cryo's injected blobs (`parasite`, `restorer`).
//!
//! `#![no_std]`, no allocator, no libc: raw syscalls ([`sys`]), the memory
//! primitives the compiler expects (`memcpy` & co.) and a panic handler that
//! traps. The host/blob interface is the `cryo-abi` crate, which the engine
//! uses too.
#![no_std]

pub mod sys;

use core::arch::asm;

/// Copy `n` bytes (non-overlapping). Written with `rep movsb` so the compiler
/// can't turn it back into a call to itself.
///
/// # Safety
/// `dst` and `src` must be valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: caller guarantees both ranges are valid.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dst
}

/// Copy `n` bytes, ranges may overlap.
///
/// # Safety
/// `dst` and `src` must be valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
        // SAFETY: forward copy is safe when dst is below src or disjoint.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: backward copy with the direction flag set, then cleared.
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
             options(nostack));
    }
    dst
}

/// Fill `n` bytes with `c`.
///
/// # Safety
/// `dst` must be valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: caller guarantees the range is valid.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8,
             options(nostack, preserves_flags));
    }
    dst
}

/// Compare `n` bytes.
///
/// # Safety
/// Both ranges must be valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n, ranges valid per the caller.
        let (x, y) = unsafe { (core::ptr::read_volatile(a.add(i)), core::ptr::read_volatile(b.add(i))) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// Same as [`memcmp`], only equality matters.
///
/// # Safety
/// Both ranges must be valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { memcmp(a, b, n) }
}

/// Trap into the tracer with `rax = code`; never returns to the caller.
#[inline(always)]
pub fn trap(code: i64) -> ! {
    loop {
        // SAFETY: int3 only raises SIGTRAP, which the tracer intercepts.
        unsafe { asm!("int3", in("rax") code, options(nomem, nostack)) };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    trap(-0xdead)
}
