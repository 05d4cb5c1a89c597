//! Scalar Goldilocks arithmetic on raw Montgomery words, operation for operation the same as
//! `winter_math::fields::f64::BaseElement`.
//!
//! winter-math stores an element `x` as the word `x * 2^64 mod p` and its operations are
//! integer recipes on those words. The recipes agree with field arithmetic on canonical words
//! (`< p`), and they also define what happens to the rare non-canonical word that Rescue's MDS
//! reduction can produce (about one word in 2^32). We copy the recipes exactly, so that every
//! kernel here is bit-exact with winter-math on *any* word, not only on canonical ones.

/// The Goldilocks prime `p = 2^64 - 2^32 + 1`.
pub(crate) const P: u64 = 0xffff_ffff_0000_0001;

/// `a + b` exactly as winter-math computes it: `a - (p - b)`, corrected on borrow.
#[inline(always)]
pub(crate) const fn add(a: u64, b: u64) -> u64 {
    let (x1, c1) = a.overflowing_sub(P.wrapping_sub(b));
    let adj = 0u32.wrapping_sub(c1 as u32);
    x1.wrapping_sub(adj as u64)
}

/// `a - b` exactly as winter-math computes it.
#[inline(always)]
pub(crate) const fn sub(a: u64, b: u64) -> u64 {
    let (x1, c1) = a.overflowing_sub(b);
    let adj = 0u32.wrapping_sub(c1 as u32);
    x1.wrapping_sub(adj as u64)
}

/// Montgomery multiplication `a * b / 2^64 mod p` exactly as winter-math computes it.
#[inline(always)]
pub(crate) const fn mul(a: u64, b: u64) -> u64 {
    mont_red((a as u128) * (b as u128))
}

/// winter-math's constant-time Montgomery reduction of a 128-bit product.
#[inline(always)]
pub(crate) const fn mont_red(x: u128) -> u64 {
    let xl = x as u64;
    let xh = (x >> 64) as u64;
    let (a, e) = xl.overflowing_add(xl << 32);
    let b = a.wrapping_sub(a >> 32).wrapping_sub(e as u64);
    let (r, c) = xh.overflowing_sub(b);
    r.wrapping_sub(0u32.wrapping_sub(c as u32) as u64)
}

/// The reduction that closes winter-crypto's 12x12 MDS multiplication: `l + h * 2^32` folded
/// with the special form of `p` (`2^64 = 2^32 - 1 mod p`).
#[inline(always)]
pub(crate) const fn mds_reduce(l: u64, h: u64) -> u64 {
    let s = l as u128 + ((h as u128) << 32);
    let s_hi = (s >> 64) as u64;
    let s_lo = s as u64;
    let z = (s_hi << 32).wrapping_sub(s_hi);
    let (res, over) = s_lo.overflowing_add(z);
    res.wrapping_add(0u32.wrapping_sub(over as u32) as u64)
}

/// Converts a Montgomery word to the canonical integer (winter-math's `as_int`).
#[inline(always)]
pub(crate) const fn to_canonical(x: u64) -> u64 {
    let (a, e) = x.overflowing_add(x << 32);
    let b = a.wrapping_sub(a >> 32).wrapping_sub(e as u64);
    let (r, c) = 0u64.overflowing_sub(b);
    r.wrapping_sub(0u32.wrapping_sub(c as u32) as u64)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use winter_math::{FieldElement, StarkField, fields::f64::BaseElement};

    use super::*;

    fn e(x: u64) -> BaseElement {
        BaseElement::from_mont(x)
    }

    proptest! {
        // Any word, canonical or not: the recipes must agree bit for bit.
        #[test]
        fn ops_match_winter_math(a in any::<u64>(), b in any::<u64>(), c in 0..=P) {
            // winter-math computes `p - b` unchecked, so its addend must not exceed p.
            prop_assert_eq!(add(a, c), (e(a) + e(c)).inner());
            prop_assert_eq!(sub(a, b), (e(a) - e(b)).inner());
            prop_assert_eq!(mul(a, b), (e(a) * e(b)).inner());
            prop_assert_eq!(to_canonical(a), e(a).as_int());
        }

        #[test]
        fn canonical_words_stay_canonical(a in 0..P, b in 0..P) {
            prop_assert!(add(a, b) < P && sub(a, b) < P && mul(a, b) < P);
            let expected = ((to_canonical(a) as u128 * to_canonical(b) as u128)
                % BaseElement::MODULUS as u128) as u64;
            prop_assert_eq!(to_canonical(mul(a, b)), expected);
            prop_assert_eq!(e(mul(a, b)), e(a) * e(b));
            prop_assert_eq!(e(a).square().inner(), mul(a, a));
        }
    }
}
