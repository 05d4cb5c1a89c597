//! Views of winter-math elements as their raw Montgomery words, and a shared row writer.

use core::{marker::PhantomData, mem::MaybeUninit};

use winter_math::fields::f64::BaseElement;

// `BaseElement` is a single `u64` (its Montgomery word). winter-math relies on that layout
// itself: `FieldElement::elements_as_bytes` reinterprets `&[BaseElement]` as the bytes of
// those words. We check size and alignment at compile time.
const _: () = assert!(size_of::<BaseElement>() == size_of::<u64>());
const _: () = assert!(align_of::<BaseElement>() == align_of::<u64>());

/// The raw words of `elements`.
pub(crate) fn as_words(elements: &[BaseElement]) -> &[u64] {
    // SAFETY: `BaseElement` wraps exactly one `u64` with the same size and alignment (checked
    // above), every bit pattern is a valid `u64`, and the lifetime and length carry over.
    unsafe { core::slice::from_raw_parts(elements.as_ptr().cast(), elements.len()) }
}

/// The raw words of `elements`, mutably. Any word written is a valid `BaseElement` (winter-math
/// accepts any word through `from_mont`); the kernels only write words winter-math computes.
pub(crate) fn as_words_mut(elements: &mut [BaseElement]) -> &mut [u64] {
    // SAFETY: as in `as_words`; the exclusive borrow is carried over to the returned slice.
    unsafe { core::slice::from_raw_parts_mut(elements.as_mut_ptr().cast(), elements.len()) }
}

/// A row-major output that several threads fill, each writing a disjoint set of rows.
pub(crate) struct SharedRows<'a> {
    ptr: *mut u64,
    len: usize,
    _borrow: PhantomData<&'a mut [MaybeUninit<BaseElement>]>,
}

// SAFETY: `SharedRows` only hands out writes through `write_row`, whose contract is
// that concurrent callers write disjoint rows; the borrowed buffer outlives it.
unsafe impl Send for SharedRows<'_> {}
// SAFETY: see `Send`.
unsafe impl Sync for SharedRows<'_> {}

impl<'a> SharedRows<'a> {
    /// Wraps an exclusively borrowed, possibly uninitialised buffer of elements.
    pub(crate) fn new(buf: &'a mut [MaybeUninit<BaseElement>]) -> Self {
        // `BaseElement` has the layout of `u64` (checked above), and so has its `MaybeUninit`.
        Self {
            ptr: buf.as_mut_ptr().cast(),
            len: buf.len(),
            _borrow: PhantomData,
        }
    }

    /// Writes `values` as row `row` of a matrix with `values.len()` words per row.
    ///
    /// # Safety
    /// No other thread may read or write row `row` during the call.
    pub(crate) unsafe fn write_row(&self, row: usize, values: &[u64]) {
        let start = row * values.len();
        assert!(
            start + values.len() <= self.len,
            "row {row} outside the output"
        );
        // SAFETY: the destination range lies inside the buffer (asserted above), cannot
        // overlap `values` (the buffer is exclusively borrowed by `self`), and the caller
        // guarantees that this row is written by this thread alone.
        unsafe {
            core::ptr::copy_nonoverlapping(values.as_ptr(), self.ptr.add(start), values.len())
        };
    }
}
