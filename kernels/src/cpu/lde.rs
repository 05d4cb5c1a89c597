//! The batched coset LDE, computed directly in the row-major output.
//!
//! Row `r = t + blowup * i` of the LDE of `n` coefficients holds the evaluations at
//! `offset * g^r` (`g` of order `n * blowup`): coset `t` is an NTT of size `n` of the
//! coefficients twisted by `(offset * g^t)^j`. Seen as `n` *super-rows* of
//! `W = blowup * width` words (super-row `i` = output rows `blowup * i .. blowup * (i + 1)`),
//! the whole LDE is **one** batched DIT over super-rows: every butterfly combines two whole
//! super-rows with one twiddle, so it runs over `W` contiguous words, SIMD across columns and
//! cosets, with no transpose and no scratch matrix. Three steps, each parallel over cores:
//!
//! 1. **Scatter**: coefficient row `j` goes to the first `width` words of super-row `rev(j)`
//!    (the DIT input order), read column by column in tiles, written as whole rows.
//! 2. **Fill + first stages** ([`fill`], [`rows_dit`]), block by block of super-rows that fit
//!    in L2: each row is expanded into its `blowup` twisted copies, then the DIT stages whose
//!    butterflies stay inside the block run while the block is in cache.
//! 3. **Wide stages** ([`pass`]): the remaining stages, up to `k` at a time: a task gathers
//!    `2^k` strided pieces (a few adjacent super-rows, or a column slice of them) into an
//!    L2-sized buffer, runs `k` stages there and scatters the pieces back.
//!
//! Memory: the output and two tables of `n` words; every task's buffer is at most
//! [`Plan::buffer_words`] words.

use core::mem::MaybeUninit;

use rayon::prelude::*;
use winter_math::{FieldElement, StarkField, fields::f64::BaseElement};

use super::{
    alloc, field,
    kernels::Kernels,
    ntt::{self, Twiddles},
    packed::Packed,
    words::{self, SharedWords},
};

/// winter-math's word of `1` (`2^64 mod p`, the Montgomery form of one). A butterfly with
/// this twiddle skips its multiplication: `b * 1 = b` on every canonical word.
pub(crate) const MONT_ONE: u64 = 0xffff_ffff;

/// Coefficient rows per task in the scatter step.
const SCATTER_TILE: usize = 64;

/// Cache sizes that shape the LDE: super-rows per block of step 2 and words per buffer of
/// step 3.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Words per block of step 2 and per gathered buffer of step 3 (kept in L2).
    pub(crate) buffer_words: usize,
    /// Words per gathered piece in step 3 (about a page: whole cache lines, few TLB misses).
    pub(crate) piece_words: usize,
}

impl Plan {
    /// 256 KiB blocks and buffers of 4 KiB pieces (a quarter of a 1 MiB L2; half of a
    /// 512 KiB one).
    pub(crate) const DEFAULT: Plan = Plan {
        buffer_words: 1 << 15,
        piece_words: 1 << 9,
    };
}

/// What step 2 needs to expand a coefficient row into its twisted copies.
pub(crate) struct Fill<'a> {
    /// Columns of the matrix.
    pub(crate) width: usize,
    /// Cosets (copies per row).
    pub(crate) blowup: usize,
    /// `log2(n)`.
    pub(crate) bits: u32,
    /// `offset^j` for `j < n` (raw words).
    pub(crate) powers: &'a [u64],
    /// `g^j` for `j < n` (raw words), `g` of order `n * blowup`.
    pub(crate) steps: &'a [u64],
}

/// Geometry of one gathered buffer of step 3.
pub(crate) struct Pass {
    /// Stages in this pass (the buffer holds `2^k` pieces).
    pub(crate) k: u32,
    /// Super-rows per piece (adjacent in the output).
    pub(crate) rows: usize,
    /// Words of each super-row in a piece (a column slice, or the whole super-row).
    pub(crate) seg: usize,
    /// Half-size (in super-rows) of the first stage of the pass.
    pub(crate) h: usize,
    /// Index below `h` of the first super-row of piece 0.
    pub(crate) r0: usize,
}

/// The coset LDE of the column-major `coeffs` (`width` columns of `n` words) over the domain
/// of `n * blowup` points shifted by `offset`, as row-major words.
pub(crate) fn coset_lde(
    k: &Kernels,
    coeffs: &[u64],
    n: usize,
    blowup: usize,
    offset: BaseElement,
    tw: &Twiddles,
    plan: Plan,
) -> Vec<BaseElement> {
    let width = coeffs.len().checked_div(n).unwrap_or(0);
    let w_words = width * blowup;
    let total = n * w_words;
    let mut out: Vec<BaseElement> = alloc::vec_with_huge_capacity(total);
    if total == 0 {
        return out;
    }
    let bits = n.trailing_zeros();
    // winter-math has no "root of unity of order 1"; a domain of one point needs none.
    let g = match (n * blowup).ilog2() {
        0 => BaseElement::ONE,
        log => BaseElement::get_root_of_unity(log),
    };
    let powers = power_series(offset, n);
    let steps = power_series(g, n);
    let block = prev_pow2((plan.buffer_words / w_words).max(1)).min(n);

    // Step 1: coefficient row j -> the first `width` words of super-row rev(j).
    {
        let target = SharedWords::new(out.spare_capacity_mut());
        let tile = SCATTER_TILE.min(n);
        (0..n / tile).into_par_iter().for_each_init(
            || vec![0u64; tile * width],
            |buf, t| {
                let j0 = t * tile;
                for (c, col) in coeffs.chunks_exact(n).enumerate() {
                    for (jj, v) in col[j0..j0 + tile].iter().enumerate() {
                        buf[jj * width + c] = *v;
                    }
                }
                for (jj, row) in buf.chunks_exact(width).enumerate() {
                    let p = ntt::rev(j0 + jj, bits);
                    // SAFETY: `rev` is a bijection on `0..n`, so row j0 + jj (handled by
                    // this task alone) is the only one written to super-row p.
                    unsafe { target.write(p * w_words, row) };
                }
            },
        );
    }

    // Step 2: expand and run the stages inside each block of `block` super-rows.
    let fill_args = Fill {
        width,
        blowup,
        bits,
        powers: &powers,
        steps: &steps,
    };
    out.spare_capacity_mut()
        .par_chunks_mut(block * w_words)
        .enumerate()
        .for_each(|(b, chunk)| {
            let chunk = words::uninit_words_mut(chunk);
            // SAFETY: step 1 wrote the first `width` words of every super-row (all `n` of
            // them), and it finished before this step started.
            unsafe { k.lde_fill(chunk, b * block, &fill_args) };
            // SAFETY: `lde_fill` wrote every word of the chunk.
            let chunk = unsafe { words::assume_init_words_mut(chunk) };
            k.rows_dit(chunk, w_words, &tw.fwd);
        });
    // SAFETY: step 2 wrote every word of the `total` reserved above (its chunks cover them).
    unsafe { out.set_len(total) };

    // Step 3: the stages with half-size `block .. n / 2`, a few at a time.
    let seg = w_words.min(plan.piece_words);
    let slices = w_words.div_ceil(seg);
    let mut h = block;
    let mut left = bits - block.trailing_zeros();
    while left > 0 {
        let rows = prev_pow2((plan.piece_words / seg).max(1)).min(h);
        let k_max = (plan.buffer_words / (rows * seg)).max(2).ilog2();
        let passes = left.div_ceil(k_max);
        let stages = left.div_ceil(passes);
        wide_stages(
            k,
            &mut out,
            w_words,
            &tw.fwd,
            (h, stages, rows, seg, slices),
        );
        h <<= stages;
        left -= stages;
    }
    out
}

/// One pass of step 3: `stages` stages starting at half-size `h`, in units of `2^stages`
/// pieces of `rows` super-rows x `seg` words.
fn wide_stages(
    k: &Kernels,
    out: &mut [BaseElement],
    w_words: usize,
    tw: &[u64],
    (h, stages, rows, seg, slices): (usize, u32, usize, usize, usize),
) {
    let n = out.len() / w_words;
    let span = h << stages;
    let chunks = h / rows;
    let units = (n / span) * chunks * slices;
    let pieces = 1usize << stages;
    let target = SharedWords::new_init(words::as_words_mut(out));
    (0..units).into_par_iter().for_each_init(
        || vec![0u64; pieces * rows * seg],
        |buf, u| {
            let slice = u % slices;
            let c0 = slice * seg;
            let len = seg.min(w_words - c0);
            let rest = u / slices;
            let r0 = (rest % chunks) * rows;
            let base = (rest / chunks) * span + r0;
            let buf = &mut buf[..pieces * rows * len];
            let at = |q: usize| {
                let (j, rr) = (q / rows, q % rows);
                (base + j * h + rr) * w_words + c0
            };
            for (q, dst) in buf.chunks_exact_mut(len).enumerate() {
                // SAFETY: this unit alone reads and writes columns c0..c0 + len of the
                // super-rows base + j * h + rr (j < pieces, rr < rows): the units' (group,
                // r-chunk, slice) triples are distinct and cover disjoint words.
                unsafe { target.read(at(q), dst) };
            }
            let geom = Pass {
                k: stages,
                rows,
                seg: len,
                h,
                r0,
            };
            k.lde_pass(buf, &geom, tw);
            for (q, src) in buf.chunks_exact(len).enumerate() {
                // SAFETY: as for the reads above.
                unsafe { target.write(at(q), src) };
            }
        },
    );
}

/// `[s^0, s^1, ..., s^(n-1)]` as raw words.
fn power_series(s: BaseElement, n: usize) -> Vec<u64> {
    let mut acc = BaseElement::ONE;
    (0..n)
        .map(|_| {
            let v = acc.inner();
            acc *= s;
            v
        })
        .collect()
}

/// The largest power of two at most `x` (`x >= 1`).
fn prev_pow2(x: usize) -> usize {
    1 << x.ilog2()
}

// LEAF KERNELS (generic over the packing, instantiated per ISA in `kernels.rs`)
// ================================================================================================

/// Step 2's expansion of the super-rows `p0 ..` of `dst`: segment `t` of super-row `p` becomes
/// the coefficient row found in segment 0 times `(offset * g^t)^rev(p)`.
///
/// # Safety
/// The first `f.width` words of every super-row of `dst` are initialised.
#[inline(always)]
pub(crate) unsafe fn fill<P: Packed>(dst: &mut [MaybeUninit<u64>], p0: usize, f: &Fill<'_>) {
    let w_words = f.width * f.blowup;
    let mut src = vec![0u64; f.width];
    for (q, row) in dst.chunks_exact_mut(w_words).enumerate() {
        for (s, d) in src.iter_mut().zip(&row[..f.width]) {
            // SAFETY: the caller guarantees that segment 0 is initialised.
            *s = unsafe { d.assume_init() };
        }
        let j = ntt::rev(p0 + q, f.bits);
        let mut factor = f.powers[j];
        for (t, segment) in row.chunks_exact_mut(f.width).enumerate() {
            if t > 0 {
                factor = field::mul(factor, f.steps[j]);
            }
            scale_into::<P>(segment, &src, factor);
        }
    }
}

/// `dst[i] = src[i] * c`, written into possibly uninitialised words.
#[inline(always)]
fn scale_into<P: Packed>(dst: &mut [MaybeUninit<u64>], src: &[u64], c: u64) {
    let n = dst.len();
    let main = n - n % P::WIDTH;
    let vc = P::splat(c);
    for j in (0..main).step_by(P::WIDTH) {
        P::load(&src[j..]).mul(vc).store_uninit(&mut dst[j..]);
    }
    for j in main..n {
        dst[j].write(field::mul(src[j], c));
    }
}

/// One DIT butterfly of two super-rows (or slices of them) with the twiddle `w`:
/// `t = hi * w`, `lo' = lo + t`, `hi' = lo - t`.
#[inline(always)]
fn butterfly<P: Packed>(lo: &mut [u64], hi: &mut [u64], w: u64) {
    let n = lo.len();
    let main = n - n % P::WIDTH;
    if w == MONT_ONE {
        for j in (0..main).step_by(P::WIDTH) {
            let a = P::load(&lo[j..]);
            let b = P::load(&hi[j..]);
            a.add(b).store(&mut lo[j..]);
            a.sub(b).store(&mut hi[j..]);
        }
    } else {
        let vw = P::splat(w);
        for j in (0..main).step_by(P::WIDTH) {
            let a = P::load(&lo[j..]);
            let t = P::load(&hi[j..]).mul(vw);
            a.add(t).store(&mut lo[j..]);
            a.sub(t).store(&mut hi[j..]);
        }
    }
    for j in main..n {
        let (a, t) = (lo[j], field::mul(hi[j], w));
        lo[j] = field::add(a, t);
        hi[j] = field::sub(a, t);
    }
}

/// Step 2's DIT stages `h = 1 .. x.len() / w_words / 2` on a block of super-rows of
/// `w_words` words; the twiddle of a butterfly is `tw[h + (i mod 2h)]` (see [`ntt`]).
#[inline(always)]
pub(crate) fn rows_dit<P: Packed>(x: &mut [u64], w_words: usize, tw: &[u64]) {
    let rows = x.len() / w_words;
    let mut h = 1;
    while h < rows {
        for blk in x.chunks_exact_mut(2 * h * w_words) {
            let (lo, hi) = blk.split_at_mut(h * w_words);
            for (j, (a, b)) in lo
                .chunks_exact_mut(w_words)
                .zip(hi.chunks_exact_mut(w_words))
                .enumerate()
            {
                butterfly::<P>(a, b, tw[h + j]);
            }
        }
        h *= 2;
    }
}

/// Step 3's stages on a gathered buffer: piece `j` (of `2^k`) holds `g.rows` super-row
/// slices of `g.seg` words, global super-rows `base + j * g.h + rr`; stage `s` pairs pieces
/// `j` and `j + 2^s` with the twiddle of global half-size `g.h * 2^s`.
#[inline(always)]
pub(crate) fn pass<P: Packed>(buf: &mut [u64], g: &Pass, tw: &[u64]) {
    let piece = g.rows * g.seg;
    for s in 0..g.k {
        let hs = 1usize << s;
        let hp = g.h << s;
        for blk in buf.chunks_exact_mut(2 * hs * piece) {
            let (lo, hi) = blk.split_at_mut(hs * piece);
            for (jj, (a, b)) in lo
                .chunks_exact_mut(piece)
                .zip(hi.chunks_exact_mut(piece))
                .enumerate()
            {
                let w0 = hp + g.r0 + jj * g.h;
                for (rr, (x, y)) in a
                    .chunks_exact_mut(g.seg)
                    .zip(b.chunks_exact_mut(g.seg))
                    .enumerate()
                {
                    butterfly::<P>(x, y, tw[w0 + rr]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use winter_math::fft;

    use super::*;
    use crate::cpu::Isa;

    #[test]
    fn mont_one_is_winter_maths_one() {
        assert_eq!(MONT_ONE, BaseElement::ONE.inner());
    }

    /// Small plans force every path at small sizes: several passes of step 3, pieces of one
    /// super-row and pieces cut into column slices.
    #[test]
    fn every_plan_matches_winter_math_on_random_inputs() {
        let seed: u64 = rand::random();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let plans = [
            Plan::DEFAULT,
            Plan {
                buffer_words: 64,
                piece_words: 8,
            },
            Plan {
                buffer_words: 256,
                piece_words: 3,
            },
            Plan {
                buffer_words: 1,
                piece_words: 1,
            },
        ];
        for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
            let k = Kernels::new(isa).expect("supported ISA");
            for plan in plans.into_iter().flat_map(|p| [p; 3]) {
                let log_n = rng.gen_range(0..=10u32);
                let n = 1usize << log_n;
                let blowup = 1usize << rng.gen_range(0..=3);
                let width = rng.gen_range(1..=9);
                let offset = BaseElement::new(rng.gen_range(1..BaseElement::MODULUS));
                let cols: Vec<Vec<BaseElement>> = (0..width)
                    .map(|_| {
                        (0..n)
                            .map(|_| BaseElement::new(rng.gen_range(0..BaseElement::MODULUS)))
                            .collect()
                    })
                    .collect();
                let flat: Vec<u64> = cols.iter().flatten().map(|e| e.inner()).collect();
                let tw = Twiddles::new(n.max(2));
                let got = coset_lde(&k, &flat, n, blowup, offset, &tw, plan);
                for (c, col) in cols.iter().enumerate() {
                    let want = if n == 1 {
                        vec![col[0]; blowup]
                    } else {
                        let rtw = fft::get_twiddles::<BaseElement>(n);
                        fft::evaluate_poly_with_offset(col, &rtw, offset, blowup)
                    };
                    for (r, w) in want.iter().enumerate() {
                        assert_eq!(
                            got[r * width + c].inner(),
                            w.inner(),
                            "seed {seed}, {isa}, {plan:?}, n 2^{log_n}, blowup {blowup}, \
                             width {width}, row {r}, column {c}"
                        );
                    }
                }
            }
        }
    }
}
