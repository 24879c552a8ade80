//! Hints to the CPU that change no result, only when memory is fetched.

/// Asks the CPU to bring the cache line at `addr` into its caches, so that a later read or
/// write of it does not wait for memory. Any address will do: a prefetch never faults, reads
/// nothing into the program and is dropped for an unmapped address. A no-op off x86-64.
#[inline(always)]
pub fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 CPU has (it is in the target's
        // baseline), and it never dereferences the address: it cannot fault or read.
        #[expect(unsafe_code, reason = "the prefetch intrinsic is an unsafe fn")]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(addr as *const i8);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}
