//! Radix-2 NTT kernels over packed words and the cache-blocked, multi-threaded drivers.
//!
//! The column transforms are decimations in frequency (DIF, natural order in, bit-reversed
//! order out, then one cache-friendly bit reversal). Stage `h` (half-size of its butterflies)
//! uses the twiddles `tw[h..2h]`, `tw[h + j] = w_{2h}^j` with `w_{2h}` winter-math's root of
//! unity of order `2h`; one table therefore serves every transform size up to its length (the
//! row-major LDE of [`super::lde`] runs its decimation in time on the same table).
//!
//! Blocking: stages whose butterflies span more than [`BLOCK`] words run as full passes over
//! the column (split into pieces for the thread pool); the remaining stages run block by block
//! while a block stays in the core's cache.

use rayon::prelude::*;
use winter_math::{FieldElement, StarkField, fields::f64::BaseElement};

use super::{field, kernels::Kernels};

/// Words per L2 block (256 KiB, half of a 512 KiB L2).
pub(crate) const BLOCK: usize = 1 << 15;
/// Words per L1 block (16 KiB, half of a 32 KiB L1).
pub(crate) const L1_BLOCK: usize = 1 << 11;
/// Words per task when one stage's butterflies are split across threads.
const PIECE: usize = 1 << 12;

/// Twiddle table for all stages up to a maximum transform size.
pub(crate) struct Twiddles {
    /// `fwd[h + j] = w_{2h}^j` (raw words); index 0 unused.
    pub(crate) fwd: Vec<u64>,
    /// `inv[h + j] = w_{2h}^{-j}` (raw words); index 0 unused.
    pub(crate) inv: Vec<u64>,
}

impl Twiddles {
    /// Tables for transforms of up to `n` points (`n` a power of two, at least 2).
    pub(crate) fn new(n: usize) -> Self {
        let half = n / 2;
        let root = BaseElement::get_root_of_unity(n.ilog2());
        let series = |r: BaseElement| {
            let mut top = Vec::with_capacity(half);
            let mut acc = BaseElement::ONE;
            for _ in 0..half {
                top.push(acc.inner());
                acc *= r;
            }
            let mut table = vec![0u64; n];
            let mut h = half;
            while h >= 1 {
                let step = half / h;
                for j in 0..h {
                    table[h + j] = top[j * step];
                }
                h /= 2;
            }
            table
        };
        Self {
            fwd: series(root),
            inv: series(root.inv()),
        }
    }

    /// Number of points the table covers.
    pub(crate) fn len(&self) -> usize {
        self.fwd.len()
    }
}

// LEAF KERNELS (generic over the packing, no threading)
// ================================================================================================

/// One DIF stage on a pair of half-blocks: `a' = a + b`, `b' = (a - b) * w`.
#[inline(always)]
pub(crate) fn dif_pair<P: super::packed::Packed>(lo: &mut [u64], hi: &mut [u64], w: &[u64]) {
    let n = lo.len();
    let main = n - n % P::WIDTH;
    for j in (0..main).step_by(P::WIDTH) {
        let a = P::load(&lo[j..]);
        let b = P::load(&hi[j..]);
        a.add(b).store(&mut lo[j..]);
        a.sub(b).mul(P::load(&w[j..])).store(&mut hi[j..]);
    }
    for j in main..n {
        let (a, b) = (lo[j], hi[j]);
        lo[j] = field::add(a, b);
        hi[j] = field::mul(field::sub(a, b), w[j]);
    }
}

/// All DIF stages `h = x.len() / 2, ..., 1` of one L2-resident block: stages whose
/// butterflies span more than [`L1_BLOCK`] words as passes over the block, the rest
/// sub-block by sub-block while each sub-block stays in L1.
#[inline(always)]
pub(crate) fn dif_block<P: super::packed::Packed>(x: &mut [u64], tw: &[u64]) {
    let mut h = x.len() / 2;
    while h >= 1 && 2 * h > L1_BLOCK {
        dif_stage::<P>(x, h, tw);
        h /= 2;
    }
    if h >= 1 {
        for sub in x.chunks_exact_mut(2 * h) {
            let mut hh = h;
            while hh >= 1 {
                dif_stage::<P>(sub, hh, tw);
                hh /= 2;
            }
        }
    }
}

#[inline(always)]
fn dif_stage<P: super::packed::Packed>(x: &mut [u64], h: usize, tw: &[u64]) {
    if h < P::WIDTH {
        return narrow_stage::<P>(x, h, tw);
    }
    for blk in x.chunks_exact_mut(2 * h) {
        let (lo, hi) = blk.split_at_mut(h);
        dif_pair::<P>(lo, hi, &tw[h..2 * h]);
    }
}

/// A stage whose butterflies are narrower than a vector (`h < P::WIDTH`): the `P::WIDTH`
/// butterflies of `2 * P::WIDTH` consecutive words are gathered into one vector of upper and
/// one of lower operands, computed together and scattered back.
#[inline(always)]
fn narrow_stage<P: super::packed::Packed>(x: &mut [u64], h: usize, tw: &[u64]) {
    let lanes = P::WIDTH;
    let mut lo = [0u64; 8];
    let mut hi = [0u64; 8];
    let mut w = [0u64; 8];
    for (k, v) in w.iter_mut().enumerate().take(lanes) {
        *v = tw[h + k % h];
    }
    let vw = P::load(&w);
    let mut chunks = x.chunks_exact_mut(2 * lanes);
    for chunk in &mut chunks {
        for k in 0..lanes {
            let i = (k / h) * 2 * h + k % h;
            lo[k] = chunk[i];
            hi[k] = chunk[i + h];
        }
        let (a, b) = (P::load(&lo), P::load(&hi));
        let (a, b) = (a.add(b), a.sub(b).mul(vw));
        a.store(&mut lo);
        b.store(&mut hi);
        for k in 0..lanes {
            let i = (k / h) * 2 * h + k % h;
            chunk[i] = lo[k];
            chunk[i + h] = hi[k];
        }
    }
    for blk in chunks.into_remainder().chunks_exact_mut(2 * h) {
        let (l, r) = blk.split_at_mut(h);
        dif_pair::<super::packed::Scalar>(l, r, &tw[h..2 * h]);
    }
}

/// `x[i] = x[i] * c`.
#[inline(always)]
pub(crate) fn scale<P: super::packed::Packed>(x: &mut [u64], c: u64) {
    let n = x.len();
    let main = n - n % P::WIDTH;
    let vc = P::splat(c);
    for j in (0..main).step_by(P::WIDTH) {
        P::load(&x[j..]).mul(vc).store(&mut x[j..]);
    }
    for v in &mut x[main..] {
        *v = field::mul(*v, c);
    }
}

// DRIVERS
// ================================================================================================

/// DIF of one column in place (natural order in, bit-reversed out); `par` spreads the work
/// over the thread pool.
pub(crate) fn dif(k: &Kernels, x: &mut [u64], tw: &[u64], par: bool) {
    let n = x.len();
    if n < 2 {
        return;
    }
    let mut h = n / 2;
    while 2 * h > BLOCK {
        let w = &tw[h..2 * h];
        for blk in x.chunks_exact_mut(2 * h) {
            let (lo, hi) = blk.split_at_mut(h);
            if par {
                lo.par_chunks_mut(PIECE)
                    .zip(hi.par_chunks_mut(PIECE))
                    .zip(w.par_chunks(PIECE))
                    .for_each(|((a, b), w)| k.dif_pair(a, b, w));
            } else {
                k.dif_pair(lo, hi, w);
            }
        }
        h /= 2;
    }
    let bs = 2 * h;
    if par {
        x.par_chunks_mut(bs).for_each(|blk| k.dif_block(blk, tw));
    } else {
        x.chunks_mut(bs).for_each(|blk| k.dif_block(blk, tw));
    }
}

/// Index `i` with its `bits` low bits reversed.
#[inline(always)]
pub(crate) fn rev(i: usize, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        i.reverse_bits() >> (usize::BITS - bits)
    }
}

/// Bit-reversal permutation in place.
///
/// Cache-friendly: an index is split into `(a, m, b)` with `a` and `b` of [`TILE_BITS`] bits
/// each; the 2^TILE_BITS x 2^TILE_BITS tile of middle part `m` swaps with the tile of
/// `rev(m)`, transposed and reversed, so every cache line is read and written whole.
pub(crate) fn bit_reverse(x: &mut [u64]) {
    let n = x.len();
    let bits = n.trailing_zeros();
    if bits < 2 * TILE_BITS + 1 {
        for i in 0..n {
            let j = rev(i, bits);
            if j > i {
                x.swap(i, j);
            }
        }
        return;
    }
    const T: usize = 1 << TILE_BITS;
    let mid_bits = bits - 2 * TILE_BITS;
    let hi_shift = bits - TILE_BITS;
    let mut ta = [[0u64; T]; T];
    let mut tb = [[0u64; T]; T];
    for m in 0..1usize << mid_bits {
        let mr = rev(m, mid_bits);
        if mr < m {
            continue;
        }
        let (base_m, base_mr) = (m << TILE_BITS, mr << TILE_BITS);
        for a in 0..T {
            let (ia, ib) = ((a << hi_shift) | base_m, (a << hi_shift) | base_mr);
            ta[a].copy_from_slice(&x[ia..ia + T]);
            tb[a].copy_from_slice(&x[ib..ib + T]);
        }
        // Element (a, m, b) goes to (rev b, rev m, rev a).
        for b in 0..T {
            let rb = rev(b, TILE_BITS);
            let (oa, ob) = ((rb << hi_shift) | base_mr, (rb << hi_shift) | base_m);
            for a in 0..T {
                let ra = rev(a, TILE_BITS);
                x[oa + ra] = ta[a][b];
                x[ob + ra] = tb[a][b];
            }
        }
    }
}

/// Bits of each tile side in [`bit_reverse`] (8 words: one 64-byte cache line).
const TILE_BITS: u32 = 3;

/// Forward NTT of one column, natural order in and out (winter-math's `evaluate_poly`).
pub(crate) fn forward(k: &Kernels, x: &mut [u64], tw: &Twiddles, par: bool) {
    dif(k, x, &tw.fwd, par);
    bit_reverse(x);
}

/// Inverse NTT of one column, natural order in and out, scaled by `1/n` (winter-math's
/// `interpolate_poly`).
pub(crate) fn inverse(k: &Kernels, x: &mut [u64], tw: &Twiddles, par: bool) {
    dif(k, x, &tw.inv, par);
    bit_reverse(x);
    let n = x.len();
    let inv_n = BaseElement::new(n as u64).inv().inner();
    if par {
        x.par_chunks_mut(PIECE).for_each(|c| k.scale(c, inv_n));
    } else {
        k.scale(x, inv_n);
    }
}

#[cfg(feature = "wgpu")]
/// Powers `s^rev(p)` for `p < n` (raw words), the coset shift of an LDE in the order a DIT
/// input needs.
pub(crate) fn shift_powers_bitrev(s: BaseElement, n: usize) -> Vec<u64> {
    let bits = n.trailing_zeros();
    let mut natural = Vec::with_capacity(n);
    let mut acc = BaseElement::ONE;
    for _ in 0..n {
        natural.push(acc.inner());
        acc *= s;
    }
    (0..n).map(|p| natural[rev(p, bits)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_reverse_matches_the_naive_permutation() {
        for bits in 0..=13u32 {
            let n = 1usize << bits;
            let mut x: Vec<u64> = (0..n as u64)
                .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .collect();
            let orig = x.clone();
            bit_reverse(&mut x);
            for (i, v) in x.iter().enumerate() {
                assert_eq!(*v, orig[rev(i, bits)], "n = 2^{bits}, index {i}");
            }
        }
    }
}
