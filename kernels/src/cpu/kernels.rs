//! The table of leaf kernels of one instruction set, chosen once when a backend is built.
//!
//! Each entry is the generic kernel of [`super::ntt`] / [`super::rescue`] instantiated with an
//! ISA's packing and compiled inside a `#[target_feature]` function. Threading stays outside:
//! the drivers split work with rayon and call these leaves on cache-sized pieces, so no closure
//! has to inherit a target feature.

use super::{
    Isa, ntt,
    packed::{Packed, Scalar},
    rescue::{self, Constants, RawDigest},
};

type PairFn = unsafe fn(&mut [u64], &mut [u64], &[u64]);
type BlockFn = unsafe fn(&mut [u64], &[u64]);
type MulIntoFn = unsafe fn(&mut [u64], &[u64], &[u64]);
type ScaleFn = unsafe fn(&mut [u64], u64);
type HashRowsFn = unsafe fn(&[u64], usize, &mut [RawDigest], &Constants);
type MergeFn = unsafe fn(&[RawDigest], &mut [RawDigest], &Constants);

/// Leaf kernels of one ISA.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    isa: Isa,
    dif_pair: PairFn,
    dit_pair: PairFn,
    dif_block: BlockFn,
    dit_block: BlockFn,
    mul_into: MulIntoFn,
    scale: ScaleFn,
    hash_rows: HashRowsFn,
    merge: MergeFn,
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
            pub(super) unsafe fn dit_pair(lo: &mut [u64], hi: &mut [u64], w: &[u64]) {
                ntt::dit_pair::<$packed>(lo, hi, w)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) unsafe fn dif_block(x: &mut [u64], tw: &[u64]) {
                ntt::dif_block::<$packed>(x, tw)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) unsafe fn dit_block(x: &mut [u64], tw: &[u64]) {
                ntt::dit_block::<$packed>(x, tw)
            }
            $(#[target_feature(enable = $feature)])?
            pub(super) unsafe fn mul_into(dst: &mut [u64], a: &[u64], b: &[u64]) {
                ntt::mul_into::<$packed>(dst, a, b)
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

            pub(super) const TABLE: Kernels = Kernels {
                isa: Isa::Scalar,
                dif_pair,
                dit_pair,
                dif_block,
                dit_block,
                mul_into,
                scale,
                hash_rows,
                merge,
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

    /// See [`ntt::dit_pair`]; `lo`, `hi`, `w` of equal length.
    pub(crate) fn dit_pair(&self, lo: &mut [u64], hi: &mut [u64], w: &[u64]) {
        // SAFETY: ISA support was checked by `Kernels::new`.
        unsafe { (self.dit_pair)(lo, hi, w) }
    }

    /// See [`ntt::dif_block`].
    pub(crate) fn dif_block(&self, x: &mut [u64], tw: &[u64]) {
        // SAFETY: ISA support was checked by `Kernels::new`.
        unsafe { (self.dif_block)(x, tw) }
    }

    /// See [`ntt::dit_block`].
    pub(crate) fn dit_block(&self, x: &mut [u64], tw: &[u64]) {
        // SAFETY: ISA support was checked by `Kernels::new`.
        unsafe { (self.dit_block)(x, tw) }
    }

    /// See [`ntt::mul_into`].
    pub(crate) fn mul_into(&self, dst: &mut [u64], a: &[u64], b: &[u64]) {
        // SAFETY: ISA support was checked by `Kernels::new`.
        unsafe { (self.mul_into)(dst, a, b) }
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
}
