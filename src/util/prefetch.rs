//! Cache prefetch hints, shared by the dedup table and the key state.

/// Asks the CPU to start loading the cache line holding `p` (a hint only:
/// it never faults and changes no state). No-op off x86_64.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetch` is a hint that never faults, whatever the address;
    // SSE is part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`prefetch`] of every cache line of `v`.
#[inline(always)]
pub(crate) fn prefetch_all<T: ?Sized>(v: &T) {
    let start = (v as *const T).cast::<u8>();
    let len = std::mem::size_of_val(v);
    let mut off = 0;
    while off < len {
        prefetch(start.wrapping_add(off));
        off += 64;
    }
    if len > 0 {
        prefetch(start.wrapping_add(len - 1));
    }
}
