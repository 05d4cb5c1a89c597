//! Rescue-Prime (`Rp64_256`) round gadgets shared by the AIRs of this crate.
//!
//! Every AIR that hashes with `Rp64_256` lays one permutation out over [`CYCLE_LENGTH`] (8)
//! consecutive trace rows:
//!
//! 1. row `r` of the cycle (`r < 7`) holds the state before round `r`; row `r + 1` the state
//!    after it, so row 0 is the permutation input and row 7 its output;
//! 2. the transition out of row 7 (the "free row") belongs to the AIR itself (load the next
//!    input, chain digests, ...): no round constraint applies there;
//! 3. the round constants arrive as 24 periodic columns ([`periodic_round_constants`]) and the
//!    "is a round row" selector as one more ([`periodic_round_flag`]);
//! 4. [`enforce_round`] writes the 12 round constraints
//!    `MDS·cur⁷ + ARK1[r] − (MDS⁻¹·(next − ARK2[r]))⁷ = 0`, each multiplied by the flag, so each
//!    has degree 7 in the trace plus one periodic factor of cycle 8:
//!    `TransitionConstraintDegree::with_cycles(7, vec![CYCLE_LENGTH])`;
//! 5. trace builders call [`apply_round`] (the reference round from `winter-crypto`) to fill the
//!    rows, so the trace and the constraints can never drift apart.

use winter_crypto::hashers::Rp64_256;
use winter_math::{FieldElement, fields::f64::BaseElement};

/// Width of the `Rp64_256` state in field elements (4 capacity + 8 rate).
pub const STATE_WIDTH: usize = 12;

/// Number of rounds of one `Rp64_256` permutation.
pub const NUM_ROUNDS: usize = 7;

/// Rows per permutation in a trace: 7 round rows + 1 row free for the AIR's own transition.
pub const CYCLE_LENGTH: usize = 8;

/// Index of the first digest element in the state (`Rp64_256::DIGEST_RANGE.start`).
pub const DIGEST_START: usize = 4;

/// Number of field elements in a digest.
pub const DIGEST_LEN: usize = 4;

/// Value of `state[0]` (the first capacity element) when two digests are merged: the number of
/// elements absorbed, 8.
pub const MERGE_CAPACITY_TAG: u64 = 8;

// Keep our constants honest against the library they describe.
const _: () = assert!(STATE_WIDTH == Rp64_256::STATE_WIDTH);
const _: () = assert!(NUM_ROUNDS == Rp64_256::NUM_ROUNDS);
const _: () = assert!(CYCLE_LENGTH == NUM_ROUNDS + 1);
const _: () = assert!(DIGEST_START == Rp64_256::DIGEST_RANGE.start);
const _: () = assert!(DIGEST_LEN == Rp64_256::DIGEST_RANGE.end - Rp64_256::DIGEST_RANGE.start);

/// Periodic columns for round constants: 24 columns (`ARK1[0..12]` then `ARK2[0..12]`), each of
/// length [`CYCLE_LENGTH`]; row `r < 7` holds round `r`'s constants, row 7 holds zeros.
pub fn periodic_round_constants() -> Vec<Vec<BaseElement>> {
    let mut columns = vec![vec![BaseElement::ZERO; CYCLE_LENGTH]; 2 * STATE_WIDTH];
    for (round, (ark1, ark2)) in Rp64_256::ARK1.iter().zip(Rp64_256::ARK2.iter()).enumerate() {
        for (i, (&a1, &a2)) in ark1.iter().zip(ark2.iter()).enumerate() {
            columns[i][round] = a1;
            columns[STATE_WIDTH + i][round] = a2;
        }
    }
    columns
}

/// Periodic "round row" selector of length [`CYCLE_LENGTH`]: 1 on rows 0..7 (a round is applied
/// on the transition out of them), 0 on the free row 7.
pub fn periodic_round_flag() -> Vec<BaseElement> {
    let mut flag = vec![BaseElement::ONE; CYCLE_LENGTH];
    flag[CYCLE_LENGTH - 1] = BaseElement::ZERO;
    flag
}

/// Periodic "first row of a cycle" selector of length [`CYCLE_LENGTH`]: 1 on row 0 (where a
/// permutation input sits), 0 elsewhere.
pub fn periodic_first_row_flag() -> Vec<BaseElement> {
    let mut flag = vec![BaseElement::ZERO; CYCLE_LENGTH];
    flag[0] = BaseElement::ONE;
    flag
}

/// Evaluates the 12 round constraints of `next == round(current)` into `result[..12]`, each
/// multiplied by `flag` (a periodic/selector value, 1 on round rows, 0 on the free row).
///
/// `ark` is the 24 periodic values of [`periodic_round_constants`] at the current row.
/// Every constraint is `flag · (MDS·current⁷ + ARK1 − (MDS⁻¹·(next − ARK2))⁷)`: degree 7 in the
/// trace, times the flag.
///
/// # Panics
/// If `result`, `current` or `next` is shorter than [`STATE_WIDTH`] or `ark` shorter than
/// `2 * STATE_WIDTH`: these are fixed by the calling AIR's layout, never by input bytes.
pub fn enforce_round<E: FieldElement + From<BaseElement>>(
    result: &mut [E],
    current: &[E],
    next: &[E],
    ark: &[E],
    flag: E,
) {
    // Forward half: MDS·current⁷ + ARK1.
    let mut forward = [E::ZERO; STATE_WIDTH];
    for (f, &c) in forward.iter_mut().zip(current[..STATE_WIDTH].iter()) {
        *f = exp7(c);
    }
    let mut forward = mds_mul(&Rp64_256::MDS, &forward);
    for (f, &a) in forward.iter_mut().zip(ark[..STATE_WIDTH].iter()) {
        *f += a;
    }

    // Backward half: (MDS⁻¹·(next − ARK2))⁷.
    let mut backward = [E::ZERO; STATE_WIDTH];
    for ((b, &n), &a) in backward
        .iter_mut()
        .zip(next[..STATE_WIDTH].iter())
        .zip(ark[STATE_WIDTH..2 * STATE_WIDTH].iter())
    {
        *b = n - a;
    }
    let mut backward = mds_mul(&Rp64_256::INV_MDS, &backward);
    for b in backward.iter_mut() {
        *b = exp7(*b);
    }

    for ((r, f), b) in result[..STATE_WIDTH]
        .iter_mut()
        .zip(forward.iter())
        .zip(backward.iter())
    {
        *r = flag * (*f - *b);
    }
}

/// Trace generation helper: applies round `round` (`< NUM_ROUNDS`) to `state` in place
/// (delegates to `Rp64_256::apply_round`).
///
/// # Panics
/// If `round >= NUM_ROUNDS` (a layout bug of the caller, never input-derived).
pub fn apply_round(state: &mut [BaseElement; STATE_WIDTH], round: usize) {
    Rp64_256::apply_round(state, round);
}

/// Applies the full permutation (all [`NUM_ROUNDS`] rounds) in place.
pub fn apply_permutation(state: &mut [BaseElement; STATE_WIDTH]) {
    Rp64_256::apply_permutation(state);
}

/// The permutation input that `Rp64_256::merge([left, right])` starts from: capacity
/// `[8, 0, 0, 0]`, rate `left ‖ right`.
pub fn merge_input(
    left: &[BaseElement; DIGEST_LEN],
    right: &[BaseElement; DIGEST_LEN],
) -> [BaseElement; STATE_WIDTH] {
    let mut state = [BaseElement::ZERO; STATE_WIDTH];
    state[0] = BaseElement::new(MERGE_CAPACITY_TAG);
    state[DIGEST_START..DIGEST_START + DIGEST_LEN].copy_from_slice(left);
    state[DIGEST_START + DIGEST_LEN..].copy_from_slice(right);
    state
}

/// The digest part (`state[4..8]`) of a permutation state.
pub fn digest_of(state: &[BaseElement; STATE_WIDTH]) -> [BaseElement; DIGEST_LEN] {
    let mut digest = [BaseElement::ZERO; DIGEST_LEN];
    digest.copy_from_slice(&state[DIGEST_START..DIGEST_START + DIGEST_LEN]);
    digest
}

#[inline(always)]
fn exp7<E: FieldElement>(x: E) -> E {
    let x2 = x.square();
    let x4 = x2.square();
    x4 * x2 * x
}

#[inline(always)]
fn mds_mul<E: FieldElement + From<BaseElement>>(
    matrix: &[[BaseElement; STATE_WIDTH]; STATE_WIDTH],
    state: &[E; STATE_WIDTH],
) -> [E; STATE_WIDTH] {
    let mut out = [E::ZERO; STATE_WIDTH];
    for (o, row) in out.iter_mut().zip(matrix.iter()) {
        for (&m, &s) in row.iter().zip(state.iter()) {
            *o += E::from(m) * s;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use winter_crypto::{Digest, ElementHasher, Hasher, hashers::Rp64_256};
    use winter_math::fields::{CubeExtension, QuadExtension};

    fn state_from(values: [u64; STATE_WIDTH]) -> [BaseElement; STATE_WIDTH] {
        values.map(BaseElement::new)
    }

    fn ark_row(round: usize) -> Vec<BaseElement> {
        periodic_round_constants()
            .iter()
            .map(|column| column[round])
            .collect()
    }

    #[test]
    fn periodic_columns_have_the_documented_shape() {
        let columns = periodic_round_constants();
        assert_eq!(columns.len(), 2 * STATE_WIDTH);
        for column in &columns {
            assert_eq!(column.len(), CYCLE_LENGTH);
            assert_eq!(column[CYCLE_LENGTH - 1], BaseElement::ZERO);
        }
        for (i, (ark1, ark2)) in columns[..STATE_WIDTH]
            .iter()
            .zip(columns[STATE_WIDTH..].iter())
            .enumerate()
        {
            for round in 0..NUM_ROUNDS {
                assert_eq!(ark1[round], Rp64_256::ARK1[round][i]);
                assert_eq!(ark2[round], Rp64_256::ARK2[round][i]);
            }
        }
        let flag = periodic_round_flag();
        assert_eq!(flag.iter().filter(|&&f| f == BaseElement::ONE).count(), 7);
        assert_eq!(flag[CYCLE_LENGTH - 1], BaseElement::ZERO);
        let first = periodic_first_row_flag();
        assert_eq!(first[0], BaseElement::ONE);
        assert!(first[1..].iter().all(|&f| f == BaseElement::ZERO));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The 7 rounds applied one by one, as a trace would, are the reference permutation.
        #[test]
        fn rounds_compose_to_the_permutation(values in any::<[u64; STATE_WIDTH]>()) {
            let mut by_round = state_from(values);
            for round in 0..NUM_ROUNDS {
                apply_round(&mut by_round, round);
            }
            let mut reference = state_from(values);
            Rp64_256::apply_permutation(&mut reference);
            prop_assert_eq!(by_round, reference);
        }

        /// A merge laid out with `merge_input` + permutation + `digest_of` equals `Rp64_256::merge`.
        #[test]
        fn merge_layout_matches_reference(a in any::<[u64; 4]>(), b in any::<[u64; 4]>()) {
            let left = a.map(BaseElement::new);
            let right = b.map(BaseElement::new);
            let mut state = merge_input(&left, &right);
            apply_permutation(&mut state);
            let expected = Rp64_256::merge(&[left.into(), right.into()]);
            prop_assert_eq!(&digest_of(&state)[..], expected.as_elements());
            // and equals hashing the 8 elements directly
            let mut elements = left.to_vec();
            elements.extend_from_slice(&right);
            prop_assert_eq!(Rp64_256::hash_elements(&elements).as_bytes(), expected.as_bytes());
        }

        /// The round constraints vanish on an honest round and not on a perturbed one.
        #[test]
        fn constraints_vanish_exactly_on_honest_rounds(
            values in any::<[u64; STATE_WIDTH]>(),
            round in 0..NUM_ROUNDS,
            lane in 0..STATE_WIDTH,
            delta in 1u64..u64::MAX,
        ) {
            let current = state_from(values);
            let mut next = current;
            apply_round(&mut next, round);
            let ark = ark_row(round);

            let mut result = [BaseElement::ONE; STATE_WIDTH];
            enforce_round(&mut result, &current, &next, &ark, BaseElement::ONE);
            prop_assert!(result.iter().all(|&r| r == BaseElement::ZERO));

            // a wrong round index (other constants) is caught
            let other = ark_row((round + 1) % NUM_ROUNDS);
            enforce_round(&mut result, &current, &next, &other, BaseElement::ONE);
            prop_assert!(result.iter().any(|&r| r != BaseElement::ZERO));

            // one perturbed lane of the next state is caught
            let mut bad = next;
            bad[lane] += BaseElement::new(delta).max_one();
            enforce_round(&mut result, &current, &bad, &ark, BaseElement::ONE);
            prop_assert!(result.iter().any(|&r| r != BaseElement::ZERO));

            // the flag switches the constraints off (free row)
            enforce_round(&mut result, &current, &bad, &ark, BaseElement::ZERO);
            prop_assert!(result.iter().all(|&r| r == BaseElement::ZERO));
        }

        /// The same constraints evaluated over extension fields (as the prover and verifier do
        /// out of domain) agree with the base-field evaluation lifted.
        #[test]
        fn extension_evaluation_matches_base(
            values in any::<[u64; STATE_WIDTH]>(),
            next_values in any::<[u64; STATE_WIDTH]>(),
            round in 0..NUM_ROUNDS,
            flag in any::<u64>(),
        ) {
            let current = state_from(values);
            let next = state_from(next_values);
            let ark = ark_row(round);
            let flag = BaseElement::new(flag);
            let mut base = [BaseElement::ZERO; STATE_WIDTH];
            enforce_round(&mut base, &current, &next, &ark, flag);

            type Q = QuadExtension<BaseElement>;
            let lift = |s: &[BaseElement]| s.iter().map(|&x| Q::from(x)).collect::<Vec<_>>();
            let mut quad = [Q::ZERO; STATE_WIDTH];
            enforce_round(&mut quad, &lift(&current), &lift(&next), &lift(&ark), Q::from(flag));
            prop_assert_eq!(quad.to_vec(), lift(&base));

            type C = CubeExtension<BaseElement>;
            let lift3 = |s: &[BaseElement]| s.iter().map(|&x| C::from(x)).collect::<Vec<_>>();
            let mut cube = [C::ZERO; STATE_WIDTH];
            enforce_round(&mut cube, &lift3(&current), &lift3(&next), &lift3(&ark), C::from(flag));
            prop_assert_eq!(cube.to_vec(), lift3(&base));
        }
    }

    trait MaxOne {
        fn max_one(self) -> Self;
    }
    impl MaxOne for BaseElement {
        /// Maps zero to one so a perturbation is never a no-op.
        fn max_one(self) -> Self {
            if self == BaseElement::ZERO {
                BaseElement::ONE
            } else {
                self
            }
        }
    }
}
