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

/// The words of possibly uninitialised elements.
pub(crate) fn uninit_words_mut(
    elements: &mut [MaybeUninit<BaseElement>],
) -> &mut [MaybeUninit<u64>] {
    // SAFETY: `BaseElement` has the layout of `u64` (checked above), so `MaybeUninit` of one
    // has the layout of `MaybeUninit` of the other; the exclusive borrow carries over.
    unsafe { core::slice::from_raw_parts_mut(elements.as_mut_ptr().cast(), elements.len()) }
}

/// The words of `words`, all of which have been written.
///
/// # Safety
/// Every word of `words` is initialised.
pub(crate) unsafe fn assume_init_words_mut(words: &mut [MaybeUninit<u64>]) -> &mut [u64] {
    // SAFETY: `MaybeUninit<u64>` has the layout of `u64` and the caller guarantees that every
    // word is initialised; the exclusive borrow carries over.
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast(), words.len()) }
}

/// A buffer of words that several threads read and write at once, each its own disjoint
/// ranges (a matrix whose tasks own interleaved rows or column slices).
pub(crate) struct SharedWords<'a> {
    ptr: *mut u64,
    len: usize,
    _borrow: PhantomData<&'a mut [MaybeUninit<u64>]>,
}

// SAFETY: `SharedWords` only gives access through `read` and `write`, whose contract is that
// concurrent callers touch disjoint ranges; the borrowed buffer outlives it.
unsafe impl Send for SharedWords<'_> {}
// SAFETY: see `Send`.
unsafe impl Sync for SharedWords<'_> {}

impl<'a> SharedWords<'a> {
    /// Wraps an exclusively borrowed, possibly uninitialised buffer of elements.
    pub(crate) fn new(buf: &'a mut [MaybeUninit<BaseElement>]) -> Self {
        let buf = uninit_words_mut(buf);
        Self {
            ptr: buf.as_mut_ptr().cast(),
            len: buf.len(),
            _borrow: PhantomData,
        }
    }

    /// Wraps an exclusively borrowed, initialised buffer of words.
    pub(crate) fn new_init(buf: &'a mut [u64]) -> Self {
        Self {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            _borrow: PhantomData,
        }
    }

    /// Writes `values` at word `at`.
    ///
    /// # Safety
    /// No other thread may read or write words `at .. at + values.len()` during the call.
    pub(crate) unsafe fn write(&self, at: usize, values: &[u64]) {
        assert!(
            at + values.len() <= self.len,
            "words {at}..{} outside the buffer of {}",
            at + values.len(),
            self.len
        );
        // SAFETY: the destination lies inside the buffer (asserted above), cannot overlap
        // `values` (the buffer is exclusively borrowed by `self`), and the caller guarantees
        // that no other thread touches it meanwhile.
        unsafe { core::ptr::copy_nonoverlapping(values.as_ptr(), self.ptr.add(at), values.len()) };
    }

    /// Reads words `at .. at + dst.len()` into `dst`.
    ///
    /// # Safety
    /// Those words are initialised and no other thread writes them during the call.
    pub(crate) unsafe fn read(&self, at: usize, dst: &mut [u64]) {
        assert!(
            at + dst.len() <= self.len,
            "words {at}..{} outside the buffer of {}",
            at + dst.len(),
            self.len
        );
        // SAFETY: the source lies inside the buffer (asserted above) and is initialised and
        // not written concurrently (the caller's contract); `dst` is a distinct allocation.
        unsafe { core::ptr::copy_nonoverlapping(self.ptr.add(at), dst.as_mut_ptr(), dst.len()) };
    }
}
