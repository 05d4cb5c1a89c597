//! `rescue-chain`: a hash chain of Rescue-Prime `Rp64_256` 2-to-1 merges over Goldilocks.
//!
//! # Statement
//!
//! Given a seed word `h_0` and `steps` (a power of two, `1..=`[`MAX_STEPS`]), the chain is
//!
//! ```text
//! h_{i+1} = Rp64_256::merge([h_i, h_i])        for i in 0..steps
//! ```
//!
//! and the public inputs are `(seed = h_0, result = h_steps, steps)`.
//!
//! # Trace
//!
//! 12 columns (the permutation state) and `8 · steps` rows. Permutation `k` occupies rows
//! `8k..8k+8`: row `8k` holds the input state `[8, 0, 0, 0, h_k, h_k]` (exactly what `merge`
//! builds), row `8k + r + 1` the state after round `r` (`r < 7`), so row `8k + 7` is the output
//! and `h_{k+1}` is its digest range `[4..8]`.
//!
//! # Constraints
//!
//! * rows `8k + r`, `r < 7` (periodic flag 1): the 12 degree-7 round constraints of
//!   [`crate::rescue::enforce_round`];
//! * rows `8k + 7` (flag 0): the next permutation's input is built from this output:
//!   `next[0] = 8`, `next[1..4] = 0`, `next[4..8] = next[8..12] = cur[4..8]` (12 linear
//!   constraints multiplied by `1 − flag`);
//! * boundary: row 0 is `[8, 0, 0, 0, seed, seed]`, the last row's `[4..8]` is `result`.

use winter_crypto::hashers::Rp64_256;
use winter_crypto::{ElementHasher, Hasher};
use winter_math::fields::f64::BaseElement;
use winter_math::{FieldElement, StarkField, ToElements};
use winterfell::{
    Air, AirContext, Assertion, EvaluationFrame, Proof, ProofOptions, TraceInfo, TraceTable,
    TransitionConstraintDegree,
};

use crate::Error;
use crate::prover::{EpaProver, ProverComponents};
use crate::rescue::{self, CYCLE_LENGTH, NUM_ROUNDS, STATE_WIDTH};

/// The registry name of this AIR.
pub const AIR_NAME: &str = "rescue-chain";

/// A digest word: four Goldilocks elements.
pub type Word = [BaseElement; 4];

/// Largest supported chain length (trace of `8 · 2^17 = 2^20` rows).
pub const MAX_STEPS: u64 = 1 << 17;

/// Encoded size of [`RescueChainPublicInputs`]: seed, result (4 × u64 each) and steps (u64).
pub const PUBLIC_INPUTS_LEN: usize = 72;

/// Public inputs of a rescue-chain proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RescueChainPublicInputs {
    /// The first word of the chain, `h_0`.
    pub seed: Word,
    /// The last word of the chain, `h_steps`.
    pub result: Word,
    /// The number of merges; a power of two in `1..=MAX_STEPS`.
    pub steps: u64,
}

impl RescueChainPublicInputs {
    /// Checks that `steps` is a supported chain length.
    pub fn validate(&self) -> Result<(), Error> {
        validate_steps(self.steps)
    }

    /// The trace length (rows) a proof of this statement has.
    pub fn trace_length(&self) -> usize {
        // Cannot overflow: `validate` bounds steps by MAX_STEPS; callers validate first.
        (self.steps as usize).saturating_mul(CYCLE_LENGTH)
    }

    /// Canonical little-endian encoding: seed (4 × u64), result (4 × u64), steps (u64).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PUBLIC_INPUTS_LEN);
        for e in self.seed.iter().chain(self.result.iter()) {
            out.extend_from_slice(&e.as_int().to_le_bytes());
        }
        out.extend_from_slice(&self.steps.to_le_bytes());
        out
    }

    /// Strict decoding: exactly [`PUBLIC_INPUTS_LEN`] bytes, canonical field elements, a valid
    /// chain length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != PUBLIC_INPUTS_LEN {
            return Err(invalid_pub(format!(
                "expected {PUBLIC_INPUTS_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        let mut words = [0u64; 9];
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            words[i] = u64::from_le_bytes(b);
        }
        let mut elems = [BaseElement::ZERO; 8];
        for (i, w) in words[..8].iter().enumerate() {
            if *w >= BaseElement::MODULUS {
                return Err(invalid_pub(format!(
                    "element {i} is {w:#x}, not a canonical Goldilocks element (< 2^64 - 2^32 + 1)"
                )));
            }
            elems[i] = BaseElement::new(*w);
        }
        let pi = RescueChainPublicInputs {
            seed: [elems[0], elems[1], elems[2], elems[3]],
            result: [elems[4], elems[5], elems[6], elems[7]],
            steps: words[8],
        };
        pi.validate()?;
        Ok(pi)
    }
}

impl ToElements<BaseElement> for RescueChainPublicInputs {
    fn to_elements(&self) -> Vec<BaseElement> {
        let mut v = Vec::with_capacity(9);
        v.extend_from_slice(&self.seed);
        v.extend_from_slice(&self.result);
        v.push(BaseElement::new(self.steps));
        v
    }
}

fn invalid_pub(reason: String) -> Error {
    Error::InvalidPublicInputs {
        air: AIR_NAME,
        reason,
    }
}

fn validate_steps(steps: u64) -> Result<(), Error> {
    if steps == 0 || !steps.is_power_of_two() || steps > MAX_STEPS {
        return Err(invalid_pub(format!(
            "steps = {steps}: the chain length must be a power of two in 1..={MAX_STEPS}"
        )));
    }
    Ok(())
}

/// The reference computation: `steps` merges starting from `seed`, with winterfell's `Rp64_256`.
pub fn reference_chain(seed: Word, steps: u64) -> Word {
    let mut h = <Rp64_256 as Hasher>::Digest::from(seed);
    for _ in 0..steps {
        h = Rp64_256::merge(&[h, h]);
    }
    h.into()
}

/// Hashes arbitrary elements to a seed word (a convenience for deriving seeds from bytes).
pub fn seed_from_elements(elements: &[BaseElement]) -> Word {
    Rp64_256::hash_elements(elements).into()
}

/// The AIR of the rescue chain (see the module docs).
pub struct RescueChainAir {
    context: AirContext<BaseElement>,
    pub_inputs: RescueChainPublicInputs,
}

impl Air for RescueChainAir {
    type BaseField = BaseElement;
    type PublicInputs = RescueChainPublicInputs;

    fn new(
        trace_info: TraceInfo,
        pub_inputs: RescueChainPublicInputs,
        options: ProofOptions,
    ) -> Self {
        let mut degrees =
            vec![TransitionConstraintDegree::with_cycles(7, vec![CYCLE_LENGTH]); STATE_WIDTH];
        degrees.extend(vec![
            TransitionConstraintDegree::with_cycles(
                1,
                vec![CYCLE_LENGTH]
            );
            STATE_WIDTH
        ]);
        // 12 input-state assertions on row 0 and 4 result assertions on the last row.
        let context = AirContext::new(trace_info, degrees, STATE_WIDTH + 4, options);
        RescueChainAir {
            context,
            pub_inputs,
        }
    }

    fn context(&self) -> &AirContext<BaseElement> {
        &self.context
    }

    fn evaluate_transition<E: FieldElement<BaseField = BaseElement> + From<BaseElement>>(
        &self,
        frame: &EvaluationFrame<E>,
        periodic_values: &[E],
        result: &mut [E],
    ) {
        let current = frame.current();
        let next = frame.next();
        let flag = periodic_values[0];
        let ark = &periodic_values[1..];
        rescue::enforce_round(&mut result[..STATE_WIDTH], current, next, ark, flag);

        let free = E::ONE - flag;
        let link = &mut result[STATE_WIDTH..2 * STATE_WIDTH];
        link[0] = free * (next[0] - E::from(BaseElement::new(rescue::MERGE_CAPACITY_TAG)));
        for i in 1..4 {
            link[i] = free * next[i];
        }
        for i in 0..4 {
            link[4 + i] = free * (next[4 + i] - current[4 + i]);
            link[8 + i] = free * (next[8 + i] - current[4 + i]);
        }
    }

    fn get_assertions(&self) -> Vec<Assertion<BaseElement>> {
        let last = self.trace_length() - 1;
        let mut a = Vec::with_capacity(STATE_WIDTH + 4);
        for (col, value) in initial_state(self.pub_inputs.seed).into_iter().enumerate() {
            a.push(Assertion::single(col, 0, value));
        }
        for (i, value) in self.pub_inputs.result.into_iter().enumerate() {
            a.push(Assertion::single(4 + i, last, value));
        }
        a
    }

    fn get_periodic_column_values(&self) -> Vec<Vec<BaseElement>> {
        let mut columns = Vec::with_capacity(1 + 2 * STATE_WIDTH);
        columns.push(rescue::periodic_round_flag());
        columns.extend(rescue::periodic_round_constants());
        columns
    }
}

/// The permutation input of `merge([h, h])`.
fn initial_state(h: Word) -> [BaseElement; STATE_WIDTH] {
    rescue::merge_input(&h, &h)
}

/// Builds the execution trace and the public inputs of a chain of `steps` merges from `seed`.
pub fn build_trace(
    seed: Word,
    steps: u64,
) -> Result<(TraceTable<BaseElement>, RescueChainPublicInputs), Error> {
    validate_steps(steps)?;
    let rows = (steps as usize) * CYCLE_LENGTH;
    let mut trace = TraceTable::new(STATE_WIDTH, rows);
    trace.fill(
        |state| state.copy_from_slice(&initial_state(seed)),
        |step, state| {
            let r = step % CYCLE_LENGTH;
            if r < NUM_ROUNDS {
                let s: &mut [BaseElement; STATE_WIDTH] = state
                    .try_into()
                    .expect("the trace has exactly STATE_WIDTH columns");
                rescue::apply_round(s, r);
            } else {
                let s: &[BaseElement; STATE_WIDTH] = (&*state)
                    .try_into()
                    .expect("the trace has exactly STATE_WIDTH columns");
                let h = rescue::digest_of(s);
                state.copy_from_slice(&initial_state(h));
            }
        },
    );
    let last = rows - 1;
    let result = [
        trace.get(4, last),
        trace.get(5, last),
        trace.get(6, last),
        trace.get(7, last),
    ];
    Ok((
        trace,
        RescueChainPublicInputs {
            seed,
            result,
            steps,
        },
    ))
}

/// Proves a chain of `steps` merges from `seed` with the given backend components.
pub fn prove<C: ProverComponents>(
    seed: Word,
    steps: u64,
    options: ProofOptions,
    components: C,
) -> Result<(Proof, RescueChainPublicInputs), Error> {
    let (trace, pub_inputs) = build_trace(seed, steps)?;
    let prover = EpaProver::<RescueChainAir, C>::new(options, pub_inputs, components);
    let proof = prover.prove_trace(AIR_NAME, trace)?;
    Ok((proof, pub_inputs))
}
