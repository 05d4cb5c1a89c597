//! The table of leaf kernels of one instruction set, chosen once when a backend is built.
//!
//! Each entry is the generic kernel of [`super::ntt`] / [`super::rescue`] instantiated with an
//! ISA's packing and compiled inside a `#[target_feature]` function. Threading stays outside:
//! the drivers split work with rayon and call these leaves on cache-sized pieces, so no closure
//! has to inherit a target feature.

use core::mem::MaybeUninit;

use super::{
    Isa, lde, ntt,
    packed::{Packed, Scalar},
    rescue::{self, Constants, RawDigest},
};

type PairFn = unsafe fn(&mut [u64], &mut [u64], &[u64]);
type BlockFn = unsafe fn(&mut [u64], &[u64]);
type ScaleFn = unsafe fn(&mut [u64], u64);
type HashRowsFn = unsafe fn(&[u64], usize, &mut [RawDigest], &Constants);
type MergeFn = unsafe fn(&[RawDigest], &mut [RawDigest], &Constants);
type LdeFillFn = unsafe fn(&mut [MaybeUninit<u64>], usize, &lde::Fill<'_>);
type RowsDitFn = unsafe fn(&mut [u64], usize, &[u64]);
type LdePassFn = unsafe fn(&mut [u64], &lde::Pass, &[u64]);

/// Leaf kernels of one ISA.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    isa: Isa,
    dif_pair: PairFn,
    dif_block: BlockFn,
    scale: ScaleFn,
    hash_rows: HashRowsFn,
    merge: MergeFn,
    lde_fill: LdeFillFn,
    rows_dit: RowsDitFn,
    lde_pass: LdePassFn,
}

/// Hashes every row of `rows` (`width` words each) into `out`, `P::WIDTH` rows at a time.
#[inline(always)]
fn hash_rows_all<P: Packed>(rows: &[u64], width: usize, out: &mut [RawDigest], k: &Constants) {
    let n = out.len();
    let main = n - n % P::WIDTH;
    for r in (0..main).step_by(P::WIDTH) {
        rescue::hash_rows::<P>(&rows[r * width..], width, &mut out[r..], k);
    }
    for r in main..n {
        rescue::hash_rows::<Scalar>(&rows[r * width..], width, &mut out[r..], k);
    }
}

/// Merges the pairs `pairs[2j], pairs[2j + 1]` into `out[j]`, `P::WIDTH` pairs at a time.
#[inline(always)]
fn merge_all<P: Packed>(pairs: &[RawDigest], out: &mut [RawDigest], k: &Constants) {
    let n = out.len();
    let main = n - n % P::WIDTH;
    for j in (0..main).step_by(P::WIDTH) {
        rescue::merge::<P>(&pairs[2 * j..], &mut out[j..], k);
    }
    for j in main..n {
        rescue::merge::<Scalar>(&pairs[2 * j..], &mut out[j..], k);
    }
}

macro_rules! isa_module {
    ($name:ident, $packed:ty $(, $feature:literal)?) => {
        mod $name {
            use super::*;

            $(#[target_feature(enable = $feature)])?
            pub(super) unsafe fn dif_pair(lo: &mut [u64], hi: &mut [u64], w: &[u64]) {
                ntt::dif_pair::<$packed>(lo, hi, w)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) unsafe fn dif_block(x: &mut [u64], tw: &[u64]) {
                ntt::dif_block::<$packed>(x, tw)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) unsafe fn scale(x: &mut [u64], c: u64) {
                ntt::scale::<$packed>(x, c)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) unsafe fn hash_rows(
                rows: &[u64],
                width: usize,
                out: &mut [RawDigest],
                k: &Constants,
            ) {
                hash_rows_all::<$packed>(rows, width, out, k)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) unsafe fn merge(pairs: &[RawDigest], out: &mut [RawDigest], k: &Constants) {
                merge_all::<$packed>(pairs, out, k)
            }

            /// # Safety
            /// As [`lde::fill`], plus the ISA check of every entry.
            $(#[target_feature(enable = $feature)])?
            pub(super) unsafe fn lde_fill(
                dst: &mut [MaybeUninit<u64>],
                p0: usize,
                f: &lde::Fill<'_>,
            ) {
                // SAFETY: the caller upholds `lde::fill`'s contract (see `Kernels::lde_fill`).
                unsafe { lde::fill::<$packed>(dst, p0, f) }
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) unsafe fn rows_dit(x: &mut [u64], w_words: usize, tw: &[u64]) {
                lde::rows_dit::<$packed>(x, w_words, tw)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) unsafe fn lde_pass(buf: &mut [u64], g: &lde::Pass, tw: &[u64]) {
                lde::pass::<$packed>(buf, g, tw)
            }

            pub(super) const TABLE: Kernels = Kernels {
                isa: Isa::Scalar,
                dif_pair,
                dif_block,
                scale,
                hash_rows,
                merge,
                lde_fill,
                rows_dit,
                lde_pass,
            };
        }
    };
}

isa_module!(scalar, Scalar);
#[cfg(target_arch = "x86_64")]
isa_module!(avx2, super::super::packed::Avx2, "avx2");
#[cfg(target_arch = "x86_64")]
isa_module!(avx512, super::super::packed::Avx512, "avx512f");

impl Kernels {
    /// The kernels of `isa`, or `None` when this CPU cannot run them. This check is what makes
    /// every call through the table sound.
    pub(crate) fn new(isa: Isa) -> Option<Self> {
        if !isa.is_supported() {
            return None;
        }
        let table = match isa {
            Isa::Scalar => scalar::TABLE,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::TABLE,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::TABLE,
            #[cfg(not(target_arch = "x86_64"))]
            _ => return None,
        };
        Some(Self { isa, ..table })
    }

    /// The instruction set of this table.
    pub(crate) fn isa(&self) -> Isa {
        self.isa
    }

    /// See [`ntt::dif_pair`]; `lo`, `hi`, `w` of equal length.
    pub(crate) fn dif_pair(&self, lo: &mut [u64], hi: &mut [u64], w: &[u64]) {
        // SAFETY: the table was built by `Kernels::new`, which checked that this CPU supports
        // the table's ISA (the only precondition of the `#[target_feature]` entries).
        unsafe { (self.dif_pair)(lo, hi, w) }
    }

    /// See [`ntt::dif_block`].
    pub(crate) fn dif_block(&self, x: &mut [u64], tw: &[u64]) {
        // SAFETY: ISA support was checked by `Kernels::new`.
        unsafe { (self.dif_block)(x, tw) }
    }

    /// See [`ntt::scale`].
    pub(crate) fn scale(&self, x: &mut [u64], c: u64) {
        // SAFETY: ISA support was checked by `Kernels::new`.
        unsafe { (self.scale)(x, c) }
    }

    /// Rp64_256 `hash_elements` of each row (`rows.len() == out.len() * width`).
    pub(crate) fn hash_rows(
        &self,
        rows: &[u64],
        width: usize,
        out: &mut [RawDigest],
        k: &Constants,
    ) {
        // SAFETY: ISA support was checked by `Kernels::new`.
        unsafe { (self.hash_rows)(rows, width, out, k) }
    }

    /// Rp64_256 `merge` of each pair (`pairs.len() == 2 * out.len()`).
    pub(crate) fn merge(&self, pairs: &[RawDigest], out: &mut [RawDigest], k: &Constants) {
        // SAFETY: ISA support was checked by `Kernels::new`.
        unsafe { (self.merge)(pairs, out, k) }
    }

    /// See [`lde::fill`].
    ///
    /// # Safety
    /// The first `f.width` words of every super-row (`f.width * f.blowup` words) of `dst` are
    /// initialised.
    pub(crate) unsafe fn lde_fill(
        &self,
        dst: &mut [MaybeUninit<u64>],
        p0: usize,
        f: &lde::Fill<'_>,
    ) {
        // SAFETY: ISA support was checked by `Kernels::new`; the caller guarantees the
        // initialised first segments `lde::fill` reads.
        unsafe { (self.lde_fill)(dst, p0, f) }
    }

    /// See [`lde::rows_dit`].
    pub(crate) fn rows_dit(&self, x: &mut [u64], w_words: usize, tw: &[u64]) {
        // SAFETY: ISA support was checked by `Kernels::new`.
        unsafe { (self.rows_dit)(x, w_words, tw) }
    }

    /// See [`lde::pass`].
    pub(crate) fn lde_pass(&self, buf: &mut [u64], g: &lde::Pass, tw: &[u64]) {
        // SAFETY: ISA support was checked by `Kernels::new`.
        unsafe { (self.lde_pass)(buf, g, tw) }
    }
}
