//! Large output buffers backed by transparent huge pages where the kernel offers them.
//!
//! An LDE of 2^20 rows x 16 columns at blowup 8 is a fresh 1 GiB buffer: with 4 KiB pages its
//! first touch costs 262,144 page faults (a quarter of the whole LDE's time on a 2-core
//! machine) and its strided passes miss the TLB. With `transparent_hugepage` in `madvise`
//! mode (what `epa doctor` recommends) the kernel only backs a mapping with 2 MiB pages when
//! asked, so the buffers here ask. The advice changes no value: without huge pages (another
//! mode, another OS) the buffer is an ordinary one.

/// Buffers smaller than this are not worth the advice (fewer than two huge pages).
const MIN_HUGE_BYTES: usize = 4 << 20;

/// A huge page (2 MiB on x86-64 and most aarch64 kernels).
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// An empty vector with room for `capacity` elements, its allocation advised to use huge
/// pages when it is large enough.
pub(crate) fn vec_with_huge_capacity<T>(capacity: usize) -> Vec<T> {
    let v: Vec<T> = Vec::with_capacity(capacity);
    let bytes = capacity.saturating_mul(size_of::<T>());
    if bytes >= MIN_HUGE_BYTES {
        advise_huge(v.as_ptr().cast(), bytes);
    }
    v
}

#[cfg(target_os = "linux")]
fn advise_huge(ptr: *const u8, bytes: usize) {
    /// `MADV_HUGEPAGE` of `<sys/mman.h>` (the same value on every Linux architecture).
    const MADV_HUGEPAGE: i32 = 14;
    unsafe extern "C" {
        /// POSIX `madvise(2)` from the C library the standard library already links.
        fn madvise(addr: *mut core::ffi::c_void, len: usize, advice: i32) -> i32;
    }
    let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
    let end = (ptr as usize + bytes) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        // SAFETY: `start..end` lies inside the live allocation `ptr .. ptr + bytes` that the
        // caller's vector owns, and is page-aligned as `madvise` requires. `MADV_HUGEPAGE`
        // only changes how the kernel backs the pages, never their contents or validity;
        // a failure (no THP support) leaves an ordinary mapping, so the result is ignored.
        let _ = unsafe { madvise(start as *mut core::ffi::c_void, end - start, MADV_HUGEPAGE) };
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_ptr: *const u8, _bytes: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advised_buffers_hold_what_is_written() {
        for len in [0usize, 1, 1000, (MIN_HUGE_BYTES / 8) + 12_345] {
            let mut v: Vec<u64> = vec_with_huge_capacity(len);
            assert!(v.capacity() >= len);
            v.extend((0..len as u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
            assert!(
                v.iter()
                    .enumerate()
                    .all(|(i, x)| *x == (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
            );
        }
    }
}
