//! Rescue-Prime `Rp64_256` permutations over packed words: `WIDTH` independent states (rows or
//! node pairs) at once, operation for operation the same as winter-crypto.

use winter_crypto::hashers::Rp64_256;
use winter_math::{FieldElement, fields::f64::BaseElement};

use super::packed::Packed;

/// State width of `Rp64_256`.
const STATE: usize = 12;
/// Number of rounds.
const ROUNDS: usize = 7;
/// The rate part of the state starts here; the digest is `state[4..8]`.
const RATE_START: usize = 4;
/// Rate width.
const RATE: usize = 8;

/// A raw digest: four Montgomery words.
pub(crate) type RawDigest = [u64; 4];

/// First row of the circulant MDS matrix as small integers: `Rp64_256::MDS[0]`, which a test
/// checks. A constant, so the unrolled product below multiplies by immediates from the
/// constant pool (the table lookup with a run-time `% 12` it replaces cost about as much as the
/// products themselves).
const MDS_ROW: [u64; STATE] = [7, 23, 8, 26, 13, 10, 9, 7, 6, 22, 21, 8];

/// Round constants as raw words.
fn ark(which: &[[BaseElement; STATE]; ROUNDS]) -> [[u64; STATE]; ROUNDS] {
    let mut out = [[0u64; STATE]; ROUNDS];
    for (o, r) in out.iter_mut().zip(which.iter()) {
        for (w, e) in o.iter_mut().zip(r.iter()) {
            *w = e.inner();
        }
    }
    out
}

/// Constants of the permutation in raw form, computed once per call site.
pub(crate) struct Constants {
    ark1: [[u64; STATE]; ROUNDS],
    ark2: [[u64; STATE]; ROUNDS],
    /// `BaseElement::new(k)` words for the capacity element, indexed by `k`.
    len_word_8: u64,
}

impl Constants {
    /// Builds the constants from winter-crypto's public tables.
    pub(crate) fn new() -> Self {
        Self {
            ark1: ark(&Rp64_256::ARK1),
            ark2: ark(&Rp64_256::ARK2),
            len_word_8: BaseElement::new(RATE as u64).inner(),
        }
    }
}

#[inline(always)]
fn square<P: Packed>(x: P) -> P {
    x.square()
}

#[inline(always)]
fn exp_acc<P: Packed, const M: usize>(base: [P; STATE], tail: [P; STATE]) -> [P; STATE] {
    let mut result = base;
    for _ in 0..M {
        for r in result.iter_mut() {
            *r = square(*r);
        }
    }
    for (r, t) in result.iter_mut().zip(tail) {
        *r = r.mul(t);
    }
    result
}

/// Output word `R` of the MDS product before reduction: the dot products of the low and high
/// 32-bit halves with row `R` of the circulant (entry `(R, c)` is `MDS_ROW[(c - R) mod 12]`),
/// written out term by term so that every index and coefficient is a constant.
#[inline(always)]
fn mds_out<P: Packed, const R: usize>(lo: &[P; STATE], hi: &[P; STATE]) -> P {
    macro_rules! dot {
        ($($c:literal)*) => {{
            let mut acc_l = P::splat(0);
            let mut acc_h = P::splat(0);
            $(
                let m = P::splat(MDS_ROW[($c + STATE - R) % STATE]);
                acc_l = acc_l.wadd(lo[$c].mul_u32(m));
                acc_h = acc_h.wadd(hi[$c].mul_u32(m));
            )*
            P::mds_reduce(acc_l, acc_h)
        }};
    }
    dot!(0 1 2 3 4 5 6 7 8 9 10 11)
}

#[inline(always)]
fn mds<P: Packed>(state: &mut [P; STATE]) {
    let mut lo = [P::splat(0); STATE];
    let mut hi = [P::splat(0); STATE];
    for (i, s) in state.iter().enumerate() {
        let (l, h) = s.split();
        lo[i] = l;
        hi[i] = h;
    }
    macro_rules! rows {
        ($($r:literal)*) => {
            $( state[$r] = mds_out::<P, $r>(&lo, &hi); )*
        };
    }
    rows!(0 1 2 3 4 5 6 7 8 9 10 11);
}

#[inline(always)]
fn add_constants<P: Packed>(state: &mut [P; STATE], ark: &[u64; STATE]) {
    for (s, &k) in state.iter_mut().zip(ark) {
        *s = s.add(P::splat(k));
    }
}

#[inline(always)]
fn sbox<P: Packed>(state: &mut [P; STATE]) {
    for s in state.iter_mut() {
        let x2 = square(*s);
        let x4 = square(x2);
        let x3 = x2.mul(*s);
        *s = x3.mul(x4);
    }
}

#[inline(always)]
fn inv_sbox<P: Packed>(state: &mut [P; STATE]) {
    let mut t1 = *state;
    for t in t1.iter_mut() {
        *t = square(*t);
    }
    let mut t2 = t1;
    for t in t2.iter_mut() {
        *t = square(*t);
    }
    let t3 = exp_acc::<P, 3>(t2, t2);
    let t4 = exp_acc::<P, 6>(t3, t3);
    let t5 = exp_acc::<P, 12>(t4, t4);
    let t6 = exp_acc::<P, 6>(t5, t3);
    let t7 = exp_acc::<P, 31>(t6, t6);
    for (i, s) in state.iter_mut().enumerate() {
        let a = square(square(square(t7[i]).mul(t6[i])));
        let b = t1[i].mul(t2[i]).mul(*s);
        *s = a.mul(b);
    }
}

/// The `Rp64_256` permutation on `P::WIDTH` states.
#[inline(always)]
pub(crate) fn permute<P: Packed>(state: &mut [P; STATE], k: &Constants) {
    for round in 0..ROUNDS {
        sbox(state);
        mds(state);
        add_constants(state, &k.ark1[round]);
        inv_sbox(state);
        mds(state);
        add_constants(state, &k.ark2[round]);
    }
}

/// `Rp64_256::hash_elements` of `P::WIDTH` consecutive rows of a row-major matrix with
/// `width` words per row, starting at `rows[0]`; writes one digest per row into `out`.
#[inline(always)]
pub(crate) fn hash_rows<P: Packed>(
    rows: &[u64],
    width: usize,
    out: &mut [RawDigest],
    k: &Constants,
) {
    let lanes = P::WIDTH;
    let mut state = [P::splat(0); STATE];
    state[0] = P::splat(BaseElement::new(width as u64).inner());
    let mut buf = [0u64; 8];
    let mut i = 0;
    for c in 0..width {
        for (l, b) in buf.iter_mut().enumerate().take(lanes) {
            *b = rows[l * width + c];
        }
        state[RATE_START + i] = state[RATE_START + i].add(P::load(&buf));
        i += 1;
        if i == RATE {
            permute(&mut state, k);
            i = 0;
        }
    }
    if i > 0 {
        permute(&mut state, k);
    }
    store_digests(&state, out);
}

/// `Rp64_256::merge` of `P::WIDTH` pairs: `pairs[2j], pairs[2j + 1]` into `out[j]`.
#[inline(always)]
pub(crate) fn merge<P: Packed>(pairs: &[RawDigest], out: &mut [RawDigest], k: &Constants) {
    let lanes = P::WIDTH;
    let mut state = [P::splat(0); STATE];
    state[0] = P::splat(k.len_word_8);
    let mut buf = [0u64; 8];
    for w in 0..RATE {
        for (l, b) in buf.iter_mut().enumerate().take(lanes) {
            *b = pairs[2 * l + w / 4][w % 4];
        }
        state[RATE_START + w] = P::load(&buf);
    }
    permute(&mut state, k);
    store_digests(&state, out);
}

#[inline(always)]
fn store_digests<P: Packed>(state: &[P; STATE], out: &mut [RawDigest]) {
    let mut buf = [0u64; 8];
    for w in 0..4 {
        state[RATE_START + w].store(&mut buf);
        for (l, d) in out.iter_mut().enumerate().take(P::WIDTH) {
            d[w] = buf[l];
        }
    }
}

// The permutation starts from an all-zero state: winter-math's zero is the zero word.
const _: () = assert!(BaseElement::ZERO.inner() == 0);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use winter_crypto::hashers::Rp64_256;
    use winter_math::fields::f64::BaseElement;

    use super::*;
    use crate::cpu::{Isa, packed::Scalar};

    #[test]
    fn mds_row_is_winter_crypto_s() {
        for (r, row) in Rp64_256::MDS.iter().enumerate() {
            for (c, m) in row.iter().enumerate() {
                assert_eq!(
                    m.as_int(),
                    MDS_ROW[(c + STATE - r) % STATE],
                    "entry ({r}, {c})"
                );
            }
        }
    }

    fn reference(words: [u64; STATE]) -> [u64; STATE] {
        let mut s = words.map(BaseElement::from_mont);
        Rp64_256::apply_permutation(&mut s);
        s.map(|e| e.inner())
    }

    /// Runs `permute::<P>` on `P::WIDTH` states at once (lane `l` gets `states[l]`).
    fn packed<P: Packed>(states: &[[u64; STATE]]) -> Vec<[u64; STATE]> {
        let k = Constants::new();
        let mut st = [P::splat(0); STATE];
        let mut buf = [0u64; 8];
        for (w, s) in st.iter_mut().enumerate() {
            for (l, b) in buf.iter_mut().enumerate().take(P::WIDTH) {
                *b = states[l][w];
            }
            *s = P::load(&buf);
        }
        permute(&mut st, &k);
        let mut out = vec![[0u64; STATE]; P::WIDTH];
        for (w, s) in st.iter().enumerate() {
            s.store(&mut buf);
            for (l, o) in out.iter_mut().enumerate() {
                o[w] = buf[l];
            }
        }
        out
    }

    fn check_all_isas(states: &[[u64; STATE]; 8]) {
        let want: Vec<_> = states.iter().map(|s| reference(*s)).collect();
        for (l, s) in states.iter().enumerate() {
            assert_eq!(packed::<Scalar>(&[*s])[0], want[l], "scalar, lane {l}");
        }
        #[cfg(target_arch = "x86_64")]
        {
            // The Avx2 / Avx512 packings are only used after the feature check below.
            if Isa::Avx2.is_supported() {
                let got = [
                    packed::<super::super::packed::Avx2>(&states[..4]),
                    packed::<super::super::packed::Avx2>(&states[4..]),
                ]
                .concat();
                assert_eq!(got, want, "avx2");
            }
            if Isa::Avx512.is_supported() {
                assert_eq!(
                    packed::<super::super::packed::Avx512>(states),
                    want,
                    "avx512"
                );
            }
        }
    }

    proptest! {
        // Any words, including non-canonical ones (>= p) that winter-crypto's MDS reduction
        // can produce: the permutation must follow winter-crypto bit for bit.
        #[test]
        fn permutation_matches_winter_crypto_on_any_words(states in any::<[[u64; STATE]; 8]>()) {
            check_all_isas(&states);
        }
    }

    #[test]
    fn permutation_matches_on_extreme_words() {
        let p = crate::cpu::field::P;
        let edges = [
            0,
            1,
            p - 1,
            p,
            p + 1,
            u64::MAX,
            u64::MAX - 1,
            1 << 32,
            (1 << 32) - 1,
            1 << 63,
        ];
        let mut states = [[0u64; STATE]; 8];
        for (l, s) in states.iter_mut().enumerate() {
            for (w, x) in s.iter_mut().enumerate() {
                *x = edges[(l * 7 + w * 3) % edges.len()];
            }
        }
        states[0] = [u64::MAX; STATE];
        states[1] = [p; STATE];
        check_all_isas(&states);
    }

    #[test]
    fn mds_reduce_produces_and_matches_non_canonical_words() {
        // l + h * 2^32 whose low word lands in [p, 2^64): winter-crypto keeps it unreduced.
        let (l, h) = (u64::MAX, 0);
        let r = crate::cpu::field::mds_reduce(l, h);
        assert!(
            r >= crate::cpu::field::P,
            "the reduction leaves {r:#x} unreduced"
        );
        let mut out = [0u64];
        Scalar::mds_reduce(Scalar::splat(l), Scalar::splat(h)).store(&mut out);
        assert_eq!(out[0], r);
    }
}
