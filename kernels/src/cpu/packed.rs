//! Packed Goldilocks words: one vector type per instruction set, the same integer recipes as
//! [`super::field`] lane by lane.
//!
//! The algorithms (NTT stages, the Rescue permutation) are written once over [`Packed`] and
//! instantiated per ISA. The AVX2 and AVX-512 types are private to this crate and are only
//! ever used from functions compiled with the matching `#[target_feature]` that the dispatcher
//! in [`super`] calls after `is_x86_feature_detected!` confirmed the feature.

use core::mem::MaybeUninit;

use super::field;

/// A vector of `WIDTH` raw Montgomery words with winter-math's arithmetic in every lane.
pub(crate) trait Packed: Copy + Send + Sync {
    /// Number of lanes.
    const WIDTH: usize;
    /// All lanes set to `x`.
    fn splat(x: u64) -> Self;
    /// Loads the first `WIDTH` words of `src` (which must hold at least `WIDTH`).
    fn load(src: &[u64]) -> Self;
    /// Stores the lanes into the first `WIDTH` words of `dst`.
    fn store(self, dst: &mut [u64]);
    /// Stores the lanes into the first `WIDTH` words of a possibly uninitialised `dst`.
    fn store_uninit(self, dst: &mut [MaybeUninit<u64>]);
    /// winter-math's `+`.
    fn add(self, rhs: Self) -> Self;
    /// winter-math's `-`.
    fn sub(self, rhs: Self) -> Self;
    /// winter-math's `*` (Montgomery product).
    fn mul(self, rhs: Self) -> Self;
    /// `self * self`, bit-identical to [`Packed::mul`] with equal operands.
    #[inline(always)]
    fn square(self) -> Self {
        self.mul(self)
    }
    /// Splits every lane into its low and high 32-bit halves.
    fn split(self) -> (Self, Self);
    /// Lane-wise `self * c` where both are below 2^32 (an exact 64-bit product).
    fn mul_u32(self, c: Self) -> Self;
    /// Lane-wise wrapping 64-bit integer addition.
    fn wadd(self, rhs: Self) -> Self;
    /// [`field::mds_reduce`] lane by lane.
    fn mds_reduce(l: Self, h: Self) -> Self;
}

/// One lane: the portable reference path.
#[derive(Clone, Copy)]
pub(crate) struct Scalar(u64);

impl Packed for Scalar {
    const WIDTH: usize = 1;
    #[inline(always)]
    fn splat(x: u64) -> Self {
        Self(x)
    }
    #[inline(always)]
    fn load(src: &[u64]) -> Self {
        Self(src[0])
    }
    #[inline(always)]
    fn store(self, dst: &mut [u64]) {
        dst[0] = self.0;
    }
    #[inline(always)]
    fn store_uninit(self, dst: &mut [MaybeUninit<u64>]) {
        dst[0].write(self.0);
    }
    #[inline(always)]
    fn add(self, rhs: Self) -> Self {
        Self(field::add(self.0, rhs.0))
    }
    #[inline(always)]
    fn sub(self, rhs: Self) -> Self {
        Self(field::sub(self.0, rhs.0))
    }
    #[inline(always)]
    fn mul(self, rhs: Self) -> Self {
        Self(field::mul(self.0, rhs.0))
    }
    #[inline(always)]
    fn split(self) -> (Self, Self) {
        (Self(self.0 & 0xffff_ffff), Self(self.0 >> 32))
    }
    #[inline(always)]
    fn mul_u32(self, c: Self) -> Self {
        Self(self.0 * c.0)
    }
    #[inline(always)]
    fn wadd(self, rhs: Self) -> Self {
        Self(self.0.wrapping_add(rhs.0))
    }
    #[inline(always)]
    fn mds_reduce(l: Self, h: Self) -> Self {
        Self(field::mds_reduce(l.0, h.0))
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::{arch::x86_64::*, mem::MaybeUninit};

    use super::{Packed, field::P};

    /// Four lanes in a 256-bit AVX2 register.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2(__m256i);

    // Every method below calls AVX2 intrinsics. The shared SAFETY argument: `Avx2` is private
    // to the crate and only used inside `#[target_feature(enable = "avx2")]` functions of the
    // CPU backend, which the dispatcher only calls when `is_x86_feature_detected!("avx2")`
    // held (an `Isa::Avx2` cannot be constructed otherwise); all methods are
    // `#[inline(always)]` so they are compiled into those functions.
    impl Avx2 {
        /// Unsigned `a < b` per lane as an all-ones / all-zeros mask.
        #[inline(always)]
        fn lt(a: __m256i, b: __m256i) -> __m256i {
            // SAFETY: AVX2 is available, see the comment on the impl.
            unsafe {
                let sign = _mm256_set1_epi64x(i64::MIN);
                _mm256_cmpgt_epi64(_mm256_xor_si256(b, sign), _mm256_xor_si256(a, sign))
            }
        }
    }

    impl Avx2 {
        /// winter-math's Montgomery reduction of the 128-bit `xh:xl` per lane.
        #[inline(always)]
        fn mont_red(xl: __m256i, xh: __m256i) -> Self {
            // SAFETY: AVX2 is available, see the comment on the impl.
            Self::mont_red_s(
                xl,
                unsafe { _mm256_xor_si256(xl, _mm256_set1_epi64x(i64::MIN)) },
                xh,
            )
        }

        /// [`Self::mont_red`] given `xl_s = xl + 2^63` as well (a caller that compared `xl`
        /// already has it).
        #[inline(always)]
        fn mont_red_s(xl: __m256i, xl_s: __m256i, xh: __m256i) -> Self {
            // winter-math's `mont_red_cst`, with both unsigned comparisons done on words
            // offset by 2^63 (signed compare); `b` is only ever needed offset, since
            // `(xh + 2^63) - (b + 2^63) = xh - b`.
            // SAFETY: AVX2 is available, see the comment on the impl.
            unsafe {
                let sign = _mm256_set1_epi64x(i64::MIN);
                let a = _mm256_add_epi64(xl, _mm256_slli_epi64(xl, 32));
                let a_s = _mm256_xor_si256(a, sign);
                // e = all ones where `xl + (xl << 32)` carried (a < xl).
                let e = _mm256_cmpgt_epi64(xl_s, a_s);
                // b + 2^63, where b = a - (a >> 32) - carry.
                let b_s = _mm256_add_epi64(_mm256_sub_epi64(a_s, _mm256_srli_epi64(a, 32)), e);
                let xh_s = _mm256_xor_si256(xh, sign);
                // c = all ones where `xh - b` borrows (b > xh).
                let c = _mm256_cmpgt_epi64(b_s, xh_s);
                let r = _mm256_sub_epi64(xh_s, b_s);
                Self(_mm256_sub_epi64(r, _mm256_srli_epi64(c, 32)))
            }
        }
    }

    impl Packed for Avx2 {
        const WIDTH: usize = 4;
        #[inline(always)]
        fn splat(x: u64) -> Self {
            // SAFETY: AVX2 is available, see the comment on the impl.
            Self(unsafe { _mm256_set1_epi64x(x as i64) })
        }
        #[inline(always)]
        fn load(src: &[u64]) -> Self {
            let src = &src[..4];
            // SAFETY: `src` holds 4 readable words (checked by the slice above); unaligned load.
            Self(unsafe { _mm256_loadu_si256(src.as_ptr().cast()) })
        }
        #[inline(always)]
        fn store(self, dst: &mut [u64]) {
            let dst = &mut dst[..4];
            // SAFETY: `dst` holds 4 writable words (checked by the slice above); unaligned store.
            unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), self.0) }
        }
        #[inline(always)]
        fn store_uninit(self, dst: &mut [MaybeUninit<u64>]) {
            let dst = &mut dst[..4];
            // SAFETY: `dst` holds 4 writable words (checked by the slice above); unaligned
            // store, which initialises them.
            unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), self.0) }
        }
        #[inline(always)]
        fn add(self, rhs: Self) -> Self {
            // SAFETY: AVX2 is available, see the comment on the impl.
            unsafe {
                let t = _mm256_sub_epi64(_mm256_set1_epi64x(P as i64), rhs.0);
                let x1 = _mm256_sub_epi64(self.0, t);
                let borrow = Self::lt(self.0, t);
                Self(_mm256_sub_epi64(x1, _mm256_srli_epi64(borrow, 32)))
            }
        }
        #[inline(always)]
        fn sub(self, rhs: Self) -> Self {
            // SAFETY: AVX2 is available, see the comment on the impl.
            unsafe {
                let x1 = _mm256_sub_epi64(self.0, rhs.0);
                let borrow = Self::lt(self.0, rhs.0);
                Self(_mm256_sub_epi64(x1, _mm256_srli_epi64(borrow, 32)))
            }
        }
        #[inline(always)]
        fn mul(self, rhs: Self) -> Self {
            // SAFETY: AVX2 is available, see the comment on the impl.
            unsafe {
                let (a, b) = (self.0, rhs.0);
                let zero = _mm256_setzero_si256();
                // 64x64 -> 128 from four 32x32 -> 64 partial products.
                let a_hi = _mm256_srli_epi64(a, 32);
                let b_hi = _mm256_srli_epi64(b, 32);
                let ll = _mm256_mul_epu32(a, b);
                let lh = _mm256_mul_epu32(a, b_hi);
                let hl = _mm256_mul_epu32(a_hi, b);
                let hh = _mm256_mul_epu32(a_hi, b_hi);
                let t = _mm256_add_epi64(hl, _mm256_srli_epi64(ll, 32));
                let u = _mm256_add_epi64(lh, _mm256_blend_epi32(t, zero, 0b1010_1010));
                let xl = _mm256_blend_epi32(ll, _mm256_slli_epi64(u, 32), 0b1010_1010);
                let xh = _mm256_add_epi64(
                    hh,
                    _mm256_add_epi64(_mm256_srli_epi64(t, 32), _mm256_srli_epi64(u, 32)),
                );
                Self::mont_red(xl, xh)
            }
        }
        #[inline(always)]
        fn square(self) -> Self {
            // SAFETY: AVX2 is available, see the comment on the impl.
            unsafe {
                let a = self.0;
                let sign = _mm256_set1_epi64x(i64::MIN);
                // a^2 = ll + hl * 2^33 + hh * 2^64 with ll = lo^2, hl = lo * hi, hh = hi^2:
                // the doubled cross product is split at bit 64 by shifts (hl << 33, hl >> 31),
                // and the one carry of the low half is found by a compare whose offset `xl`
                // the reduction reuses. Three operations fewer than `mul`'s recipe.
                let a_hi = _mm256_srli_epi64(a, 32);
                let ll = _mm256_mul_epu32(a, a);
                let hl = _mm256_mul_epu32(a_hi, a);
                let hh = _mm256_mul_epu32(a_hi, a_hi);
                let xl = _mm256_add_epi64(ll, _mm256_slli_epi64(hl, 33));
                let xl_s = _mm256_xor_si256(xl, sign);
                let carry = _mm256_cmpgt_epi64(_mm256_xor_si256(ll, sign), xl_s);
                let xh = _mm256_sub_epi64(_mm256_add_epi64(hh, _mm256_srli_epi64(hl, 31)), carry);
                Self::mont_red_s(xl, xl_s, xh)
            }
        }
        #[inline(always)]
        fn split(self) -> (Self, Self) {
            // SAFETY: AVX2 is available, see the comment on the impl.
            unsafe {
                let lo = _mm256_blend_epi32(self.0, _mm256_setzero_si256(), 0b1010_1010);
                (Self(lo), Self(_mm256_srli_epi64(self.0, 32)))
            }
        }
        #[inline(always)]
        fn mul_u32(self, c: Self) -> Self {
            // SAFETY: AVX2 is available, see the comment on the impl.
            Self(unsafe { _mm256_mul_epu32(self.0, c.0) })
        }
        #[inline(always)]
        fn wadd(self, rhs: Self) -> Self {
            // SAFETY: AVX2 is available, see the comment on the impl.
            Self(unsafe { _mm256_add_epi64(self.0, rhs.0) })
        }
        #[inline(always)]
        fn mds_reduce(l: Self, h: Self) -> Self {
            // SAFETY: AVX2 is available, see the comment on the impl.
            unsafe {
                let lo = _mm256_add_epi64(l.0, _mm256_slli_epi64(h.0, 32));
                let carry = Self::lt(lo, l.0);
                let hi = _mm256_sub_epi64(_mm256_srli_epi64(h.0, 32), carry);
                let z = _mm256_sub_epi64(_mm256_slli_epi64(hi, 32), hi);
                let res = _mm256_add_epi64(lo, z);
                let over = Self::lt(res, lo);
                Self(_mm256_add_epi64(res, _mm256_srli_epi64(over, 32)))
            }
        }
    }

    /// Eight lanes in a 512-bit AVX-512 register.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512(__m512i);

    // Every method below calls AVX-512F intrinsics. The shared SAFETY argument: `Avx512` is
    // private to the crate and only used inside `#[target_feature(enable = "avx512f")]`
    // functions of the CPU backend, which the dispatcher only calls when
    // `is_x86_feature_detected!("avx512f")` held (an `Isa::Avx512` cannot be constructed
    // otherwise); all methods are `#[inline(always)]` so they are compiled into those functions.
    impl Avx512 {
        /// winter-math's Montgomery reduction of the 128-bit `xh:xl` per lane.
        #[inline(always)]
        fn mont_red(xl: __m512i, xh: __m512i) -> Self {
            // SAFETY: AVX-512F is available, see the comment on the impl.
            unsafe {
                let a = _mm512_add_epi64(xl, _mm512_slli_epi64(xl, 32));
                let e = _mm512_cmplt_epu64_mask(a, xl);
                let b = _mm512_sub_epi64(a, _mm512_srli_epi64(a, 32));
                let b = _mm512_mask_sub_epi64(b, e, b, _mm512_set1_epi64(1));
                let r = _mm512_sub_epi64(xh, b);
                let c = _mm512_cmplt_epu64_mask(xh, b);
                Self(_mm512_mask_sub_epi64(
                    r,
                    c,
                    r,
                    _mm512_set1_epi64(0xffff_ffff),
                ))
            }
        }
    }

    impl Packed for Avx512 {
        const WIDTH: usize = 8;
        #[inline(always)]
        fn splat(x: u64) -> Self {
            // SAFETY: AVX-512F is available, see the comment on the impl.
            Self(unsafe { _mm512_set1_epi64(x as i64) })
        }
        #[inline(always)]
        fn load(src: &[u64]) -> Self {
            let src = &src[..8];
            // SAFETY: `src` holds 8 readable words (checked by the slice above); unaligned load.
            Self(unsafe { _mm512_loadu_si512(src.as_ptr().cast()) })
        }
        #[inline(always)]
        fn store(self, dst: &mut [u64]) {
            let dst = &mut dst[..8];
            // SAFETY: `dst` holds 8 writable words (checked by the slice above); unaligned store.
            unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), self.0) }
        }
        #[inline(always)]
        fn store_uninit(self, dst: &mut [MaybeUninit<u64>]) {
            let dst = &mut dst[..8];
            // SAFETY: `dst` holds 8 writable words (checked by the slice above); unaligned
            // store, which initialises them.
            unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), self.0) }
        }
        #[inline(always)]
        fn add(self, rhs: Self) -> Self {
            // SAFETY: AVX-512F is available, see the comment on the impl.
            unsafe {
                let t = _mm512_sub_epi64(_mm512_set1_epi64(P as i64), rhs.0);
                let x1 = _mm512_sub_epi64(self.0, t);
                let borrow = _mm512_cmplt_epu64_mask(self.0, t);
                Self(_mm512_mask_sub_epi64(
                    x1,
                    borrow,
                    x1,
                    _mm512_set1_epi64(0xffff_ffff),
                ))
            }
        }
        #[inline(always)]
        fn sub(self, rhs: Self) -> Self {
            // SAFETY: AVX-512F is available, see the comment on the impl.
            unsafe {
                let x1 = _mm512_sub_epi64(self.0, rhs.0);
                let borrow = _mm512_cmplt_epu64_mask(self.0, rhs.0);
                Self(_mm512_mask_sub_epi64(
                    x1,
                    borrow,
                    x1,
                    _mm512_set1_epi64(0xffff_ffff),
                ))
            }
        }
        #[inline(always)]
        fn mul(self, rhs: Self) -> Self {
            // SAFETY: AVX-512F is available, see the comment on the impl.
            unsafe {
                let (a, b) = (self.0, rhs.0);
                let a_hi = _mm512_srli_epi64(a, 32);
                let b_hi = _mm512_srli_epi64(b, 32);
                let ll = _mm512_mul_epu32(a, b);
                let lh = _mm512_mul_epu32(a, b_hi);
                let hl = _mm512_mul_epu32(a_hi, b);
                let hh = _mm512_mul_epu32(a_hi, b_hi);
                let t = _mm512_add_epi64(hl, _mm512_srli_epi64(ll, 32));
                let u = _mm512_add_epi64(lh, _mm512_maskz_mov_epi32(0x5555, t));
                let xl = _mm512_mask_blend_epi32(0xaaaa, ll, _mm512_slli_epi64(u, 32));
                let xh = _mm512_add_epi64(
                    hh,
                    _mm512_add_epi64(_mm512_srli_epi64(t, 32), _mm512_srli_epi64(u, 32)),
                );
                Self::mont_red(xl, xh)
            }
        }
        #[inline(always)]
        fn square(self) -> Self {
            // SAFETY: AVX-512F is available, see the comment on the impl.
            unsafe {
                let a = self.0;
                // As in `mul` with b = a: the two cross products are equal, one multiply less.
                let a_hi = _mm512_srli_epi64(a, 32);
                let ll = _mm512_mul_epu32(a, a);
                let hl = _mm512_mul_epu32(a_hi, a);
                let hh = _mm512_mul_epu32(a_hi, a_hi);
                let t = _mm512_add_epi64(hl, _mm512_srli_epi64(ll, 32));
                let u = _mm512_add_epi64(hl, _mm512_maskz_mov_epi32(0x5555, t));
                let xl = _mm512_mask_blend_epi32(0xaaaa, ll, _mm512_slli_epi64(u, 32));
                let xh = _mm512_add_epi64(
                    hh,
                    _mm512_add_epi64(_mm512_srli_epi64(t, 32), _mm512_srli_epi64(u, 32)),
                );
                Self::mont_red(xl, xh)
            }
        }
        #[inline(always)]
        fn split(self) -> (Self, Self) {
            // SAFETY: AVX-512F is available, see the comment on the impl.
            unsafe {
                (
                    Self(_mm512_maskz_mov_epi32(0x5555, self.0)),
                    Self(_mm512_srli_epi64(self.0, 32)),
                )
            }
        }
        #[inline(always)]
        fn mul_u32(self, c: Self) -> Self {
            // SAFETY: AVX-512F is available, see the comment on the impl.
            Self(unsafe { _mm512_mul_epu32(self.0, c.0) })
        }
        #[inline(always)]
        fn wadd(self, rhs: Self) -> Self {
            // SAFETY: AVX-512F is available, see the comment on the impl.
            Self(unsafe { _mm512_add_epi64(self.0, rhs.0) })
        }
        #[inline(always)]
        fn mds_reduce(l: Self, h: Self) -> Self {
            // SAFETY: AVX-512F is available, see the comment on the impl.
            unsafe {
                let lo = _mm512_add_epi64(l.0, _mm512_slli_epi64(h.0, 32));
                let carry = _mm512_cmplt_epu64_mask(lo, l.0);
                let hi = _mm512_srli_epi64(h.0, 32);
                let hi = _mm512_mask_add_epi64(hi, carry, hi, _mm512_set1_epi64(1));
                let z = _mm512_sub_epi64(_mm512_slli_epi64(hi, 32), hi);
                let res = _mm512_add_epi64(lo, z);
                let over = _mm512_cmplt_epu64_mask(res, lo);
                Self(_mm512_mask_add_epi64(
                    res,
                    over,
                    res,
                    _mm512_set1_epi64(0xffff_ffff),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::cpu::Isa;

    /// Words where carries, borrows and non-canonical forms happen.
    const EDGES: [u64; 12] = [
        0,
        1,
        2,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0001,
        field::P - 1,
        field::P,
        field::P + 1,
        1 << 63,
        0xffff_ffff_0000_0000,
        u64::MAX,
    ];

    /// Every lane operation of `V` against the scalar recipe, for each pair of `a` and `b`.
    fn check<V: Packed>(a: &[u64], b: &[u64]) {
        let w = V::WIDTH;
        for (ca, cb) in a.chunks_exact(w).zip(b.chunks_exact(w)) {
            let (x, y) = (V::load(ca), V::load(cb));
            let mut out = vec![0u64; w];
            let lanes = |v: V, out: &mut Vec<u64>| {
                v.store(out);
                out.clone()
            };
            let want = |f: fn(u64, u64) -> u64| -> Vec<u64> {
                ca.iter().zip(cb).map(|(&p, &q)| f(p, q)).collect()
            };
            assert_eq!(
                lanes(x.mul(y), &mut out),
                want(field::mul),
                "mul {ca:x?} {cb:x?}"
            );
            assert_eq!(
                lanes(x.square(), &mut out),
                want(|p, _| field::mul(p, p)),
                "square {ca:x?}"
            );
            assert_eq!(
                lanes(x.sub(y), &mut out),
                want(field::sub),
                "sub {ca:x?} {cb:x?}"
            );
            // As in winter-math, the addend of `add` is at most p.
            let c: Vec<u64> = cb.iter().map(|&q| q.min(field::P)).collect();
            let sum = lanes(x.add(V::load(&c)), &mut out);
            let want_sum: Vec<u64> = ca.iter().zip(&c).map(|(&p, &q)| field::add(p, q)).collect();
            assert_eq!(sum, want_sum, "add {ca:x?} {c:x?}");
            // `mds_reduce` takes sums of 32-bit halves times small constants (< 2^41).
            let (l, h): (Vec<u64>, Vec<u64>) =
                ca.iter().zip(cb).map(|(&p, &q)| (p >> 23, q >> 23)).unzip();
            let red = lanes(V::mds_reduce(V::load(&l), V::load(&h)), &mut out);
            let want_red: Vec<u64> = l
                .iter()
                .zip(&h)
                .map(|(&p, &q)| field::mds_reduce(p, q))
                .collect();
            assert_eq!(red, want_red, "mds_reduce {l:x?} {h:x?}");
        }
    }

    fn check_all(a: &[u64], b: &[u64]) {
        check::<Scalar>(a, b);
        #[cfg(target_arch = "x86_64")]
        {
            // The vector packings are only used after their feature check.
            if Isa::Avx2.is_supported() {
                check::<Avx2>(a, b);
            }
            if Isa::Avx512.is_supported() {
                check::<Avx512>(a, b);
            }
        }
    }

    #[test]
    fn lane_ops_match_the_scalar_recipes_on_edge_words() {
        // Every ordered pair of edge words, eight pairs at a time.
        let mut a = Vec::new();
        let mut b = Vec::new();
        for &p in &EDGES {
            for &q in &EDGES {
                a.push(p);
                b.push(q);
            }
        }
        check_all(&a, &b);
    }

    proptest! {
        #[test]
        fn lane_ops_match_the_scalar_recipes(a in any::<[u64; 8]>(), b in any::<[u64; 8]>()) {
            check_all(&a, &b);
        }
    }
}
