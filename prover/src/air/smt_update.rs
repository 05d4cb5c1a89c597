//! `smt-update`: a batch of sparse-Merkle-tree updates moved the root from `old_root` to
//! `new_root`.
//!
//! The statement: for the public list of `k` updates `(key_i, old_i, new_i)` there are
//! authentication paths (siblings) such that, with `R_0 = old_root`, hashing `old_i` up the path
//! of `key_i` gives `R_i` and hashing `new_i` up the *same* path gives `R_{i+1}`, and
//! `R_k = new_root`. The tree is the one of `crypto::smt`: a leaf node is its value word, level
//! 0 holds the leaves, bit `j` of the key (LSB first) set means the path node is the right child
//! at level `j` (`parent = merge(sibling, node)`), clear means `parent = merge(node, sibling)`,
//! `merge` being `Rp64_256::merge`. Intermediate roots stay private.
//!
//! # Usage
//!
//! 1. Collect the batch's [`SmtUpdateWitness`]es (key, old and new value, siblings, roots), e.g.
//!    from `crypto::smt::Smt::update_batch`, in order.
//! 2. Call [`prove`] with the tree depth, the witnesses, winterfell [`ProofOptions`] (blowup at
//!    least 8) and prover components ([`crate::prover::DefaultComponents`] for winterfell's CPU
//!    code). It validates the witnesses ([`build_trace`]) and returns the proof and the
//!    [`SmtUpdatePublicInputs`] (depth, roots, update list and its commitment).
//! 3. Ship `proof.to_bytes()` and [`SmtUpdatePublicInputs::to_bytes`].
//! 4. A validator decodes both ([`SmtUpdatePublicInputs::from_bytes`] is strict), checks the
//!    [`SmtUpdatePublicInputs::commitment`] against the batch it expects and calls [`verify`]
//!    (the stock `winterfell::verify`).
//!
//! # Trace layout
//!
//! 1. One `Rp64_256` permutation takes [`CYCLE_LENGTH`] = 8 rows (see [`crate::rescue`]): row 0
//!    holds the input, row `r + 1` the state after round `r`, row 7 the output (the free row).
//!    One cycle hashes one tree level.
//! 2. Columns ([`TRACE_WIDTH`] = 34): `A` (0..12) the old-path hash state, `B` (12..24) the
//!    new-path hash state, [`COL_BIT`] (24) the key bit of the level, `S` (25..29) the sibling
//!    of the level, `R` (29..33) the running root (the root *before* the current update) and
//!    the degree anchor `Z` ([`COL_ANCHOR`], 33): 1 on row 0, 0 on every other row.
//! 3. An update occupies one *segment* of `P = 8 · L` rows, `L = depth.next_power_of_two()`:
//!    levels `0..depth` are real, levels `depth..L` are filler permutations whose transitions
//!    are unconstrained (no waste for the default depth 32). The batch is padded to
//!    `k' = k.next_power_of_two()` segments by repeating the last update as a no-op (`key`,
//!    `new → new`): the padding is a function of the public list, so the verifier derives it.
//!    Trace length `n = k' · P`, a power of two.
//! 4. Only row 0 and row 7 of a cycle carry meaning for `BIT` and `S`; rows 1..7 hold
//!    deterministic filler (hash-state values), so on a generic batch every constraint has its
//!    declared degree even without the anchor terms (a unit test checks the declarations
//!    that way).
//!
//! # Constraints (57 transition constraints, all exact in degree)
//!
//! Periodic columns: the 24 round constants and the round flag `ρ` (cycle 8, 1 on rows 0..7),
//! the first-row flag `φ` (cycle 8, 1 on row 0), and per segment (cycle `P`): `λ` (1 on the
//! free row of levels `0..depth-1`), `ε` (1 on the free row of level `depth-1`) and `π` (1 on
//! the row just before it).
//!
//! 1. Rounds, A and B (24): `ρ · (MDS·x⁷ + ARK1 − (MDS⁻¹·(x' − ARK2))⁷)`: degree 7, cycle 8.
//! 2. Capacity of every permutation input, A and B (8): `φ·(x₀ − 8)`, `φ·x₁`, `φ·x₂`, `φ·x₃`:
//!    degree 1, cycle 8.
//! 3. Sibling, A and B (8): `φ·(b·x[4+j] + (1−b)·x[8+j] − S_j)`: the non-node half of both
//!    inputs is the same sibling `S` (degree 2, cycle 8).
//! 4. Node chaining inside an update, A and B (8): `λ·((1−b')·x'[4+j] + b'·x'[8+j] − x[4+j])`:
//!    the next level's input holds this level's digest on the side the next key bit says
//!    (degree 2, cycle `P`).
//! 5. Old root (4): `π·(A'[4+j] − R'_j)`: the old path of every update ends at the running
//!    root. It is read one row early so it also holds when the update ends on the last row,
//!    where winterfell checks no transition (degree 1, cycle `P`).
//! 6. Root chaining (4): `R'_j − R_j − ε·(B[4+j] − R_j)`: the running root is constant except
//!    after an update's last level, where it becomes that update's new root (degree 1, cycle
//!    `P`).
//! 7. Anchor (1): `(1 − φ)·Z`: `Z` is 0 on every row but the first row of a cycle (degree 1,
//!    cycle 8).
//!
//! Every constraint of groups 1 to 6 carries one more *anchor term*, `Z^d·σ`, where `d` is its
//! trace degree and `σ` a selector of its cycle that is 0 on the first row of every cycle:
//! `1 − φ` for groups 1 to 3, `λ` for 4, `π` for 5, `ε` for 6. By constraint 7 the term is 0 on
//! every row a transition constraint is checked on, so it changes nothing the constraints
//! accept (`Z` on first rows is the prover's free choice and is only read there by terms whose
//! selector is 0); see "Degrees" below for what it is for.
//!
//! # Assertions (what binds the proof to the public inputs)
//!
//! 1. `R` at row 0 is `old_root` (4).
//! 2. At the first row of segment `s`: the node half of `A` chosen by bit 0 of `key_s` is
//!    `old_s`, the same half of `B` is `new_s` (8 per segment).
//! 3. `BIT` at row 0 of every cycle is the public key bit of that level (one sequence
//!    assertion, stride 8; filler levels assert 0). With constraints 3 and 4 this fixes every
//!    left/right choice, hence the key.
//! 4. `B`'s digest at the free row of the last real update's last level is `new_root` (4).
//!
//! A different update list, key, value or root changes an assertion; a wrong sibling, a wrong
//! old value or a broken chain breaks constraint 3, 4 or 5 (or needs a Rescue collision). The
//! public inputs given to the Fiat–Shamir transcript are `depth`, `k`, both roots and the
//! Rescue commitment to the update list ([`SmtUpdatePublicInputs::commitment`]).
//!
//! The highest degree is that of the rounds, so any blowup factor of at least 8 works.
//!
//! # Degrees
//!
//! Winterfell's debug build re-derives every constraint's degree from the trace and panics
//! unless it equals the declared one. Without the anchor terms that fails for legitimate
//! batches whose hash-state columns repeat with a shorter period than the trace: a column that
//! takes the same values in segment `s` and segment `s + k'/2` (more generally, whose segments
//! satisfy `Σ_s ω^{sP}·seg_s = 0`) has degree below `n − 1`, and so has every constraint that
//! reads it. Two updates with the same old path do this to `A`: a delete of an absent key on
//! an empty tree followed by any update (each node equals its sibling, so the key does not
//! matter), or two writes of the same key where the first rewrites the value it already had;
//! a leaf toggled `v0 → v1 → v0 → v1` does it with the padding segment; the same no-op twice
//! does it to every column. The statement is true and the proof would verify, but no filler
//! can help, since `A` and `B` are fixed by the witness cell for cell.
//!
//! The anchor term makes the declared degree exact for every witness: `Z` is the Lagrange
//! polynomial of row 0, `(x^n − 1)/(n·(x − 1))`, of degree `n − 1` whatever the batch, and
//! `σ`'s interpolant has full degree (`1 − φ` and every segment selector, tested), so `Z^d·σ`
//! has exactly the declared degree and its leading coefficient is a fixed non-zero constant.
//! A constraint's own leading coefficient is either 0 (a degenerate batch) or a function of
//! Rescue outputs, which equals minus that constant with probability about `2^-64`. The
//! anchor costs one trace column and one constraint; it changes the composition polynomial,
//! hence the proof bytes, and proofs made before it (33 columns) do not verify against this
//! AIR.

use winter_crypto::{ElementHasher, hashers::Rp64_256};
use winter_math::{FieldElement, ToElements, fields::f64::BaseElement};
use winterfell::{
    AcceptableOptions, Air, AirContext, Assertion, EvaluationFrame, Proof, ProofOptions, Trace,
    TraceInfo, TraceTable, TransitionConstraintDegree,
};

use crate::Error;
use crate::prover::{EpaProver, ProverComponents};
use crate::rescue::{
    self, CYCLE_LENGTH, DIGEST_LEN, DIGEST_START, MERGE_CAPACITY_TAG, NUM_ROUNDS, STATE_WIDTH,
};

mod public_inputs;
mod trace;

#[cfg(test)]
mod tests;

pub use public_inputs::{SmtUpdate, SmtUpdatePublicInputs};
pub use trace::{build_trace, build_trace_unverified, root_from_path};

/// The registry name of this AIR.
pub const AIR_NAME: &str = "smt-update";

/// A tree word: a leaf value or a node digest (`crypto::smt::Word`).
pub use crypto::smt::Word;

/// The value of an absent leaf (`crypto::smt::EMPTY_WORD`).
pub use crypto::smt::EMPTY_WORD;

/// Smallest supported tree depth.
pub const MIN_DEPTH: u8 = 2;

/// Largest supported tree depth (keys are any `u64`).
pub const MAX_DEPTH: u8 = 64;

/// Largest trace this AIR builds: `2^22` rows (16384 updates at depth 32).
pub const MAX_TRACE_LENGTH: usize = 1 << 22;

/// Hard cap on the number of updates in one batch, checked before any allocation.
pub const MAX_UPDATES: usize = MAX_TRACE_LENGTH / (CYCLE_LENGTH * MIN_DEPTH as usize);

/// Smallest blowup factor the constraints allow (the rounds have degree 7 plus a periodic
/// factor, so the constraint evaluation domain is 8 times the trace).
pub const MIN_BLOWUP_FACTOR: usize = 8;

/// First column of the old-path hash state `A`.
pub const COL_OLD: usize = 0;
/// First column of the new-path hash state `B`.
pub const COL_NEW: usize = COL_OLD + STATE_WIDTH;
/// The key-bit column.
pub const COL_BIT: usize = COL_NEW + STATE_WIDTH;
/// First of the 4 sibling columns `S`.
pub const COL_SIBLING: usize = COL_BIT + 1;
/// First of the 4 running-root columns `R`.
pub const COL_ROOT: usize = COL_SIBLING + DIGEST_LEN;
/// The degree-anchor column `Z`: 1 on row 0, 0 elsewhere (see the module docs, "Degrees").
pub const COL_ANCHOR: usize = COL_ROOT + DIGEST_LEN;
/// Number of trace columns.
pub const TRACE_WIDTH: usize = COL_ANCHOR + 1;

/// Number of transition constraints.
pub const NUM_CONSTRAINTS: usize =
    2 * STATE_WIDTH + 2 * 4 + 2 * DIGEST_LEN * 2 + 2 * DIGEST_LEN + 1;

/// One update of a batch with its authentication path, as `crypto::smt`'s batch update
/// produces it: `siblings[0]` is the leaf-level sibling and `siblings.len()` is the tree depth;
/// `old_root` is the root before this update and `new_root` the root after it.
pub use crypto::smt::UpdateWitness as SmtUpdateWitness;

/// The shape of a trace for a given depth and batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Tree depth (real levels per update).
    pub depth: usize,
    /// Number of real updates `k`.
    pub updates: usize,
    /// Levels per segment, `depth.next_power_of_two()`.
    pub levels: usize,
    /// Rows per segment, `8 · levels`.
    pub segment_rows: usize,
    /// Segments, `k.next_power_of_two()`.
    pub segments: usize,
    /// Trace length, `segments · segment_rows`.
    pub trace_length: usize,
}

impl Layout {
    /// The layout of `updates` updates at `depth`; checks the depth, the batch size and the
    /// trace-length limit.
    pub fn new(depth: usize, updates: usize) -> Result<Self, Error> {
        if !(MIN_DEPTH as usize..=MAX_DEPTH as usize).contains(&depth) {
            return Err(Error::SmtDepthOutOfRange { depth });
        }
        if updates == 0 {
            return Err(Error::SmtEmptyBatch);
        }
        let levels = depth.next_power_of_two();
        let segment_rows = levels * CYCLE_LENGTH;
        let max = MAX_TRACE_LENGTH / segment_rows;
        if updates > max {
            return Err(Error::SmtTooManyUpdates {
                count: updates,
                max,
                depth,
            });
        }
        let segments = updates.next_power_of_two();
        Ok(Layout {
            depth,
            updates,
            levels,
            segment_rows,
            segments,
            trace_length: segments * segment_rows,
        })
    }

    /// First row of segment `segment`.
    pub fn segment_start(&self, segment: usize) -> usize {
        segment * self.segment_rows
    }

    /// The free row of the last real level of segment `segment` (where its roots appear).
    pub fn segment_end(&self, segment: usize) -> usize {
        self.segment_start(segment) + self.depth * CYCLE_LENGTH - 1
    }
}

/// The winterfell AIR of `smt-update` (see the module docs for the constraints).
pub struct SmtUpdateAir {
    context: AirContext<BaseElement>,
    layout: Layout,
    pub_inputs: SmtUpdatePublicInputs,
}

impl SmtUpdateAir {
    /// The trace layout this AIR instance checks.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn segment_periodic_columns(&self) -> [Vec<BaseElement>; 3] {
        let rows = self.layout.segment_rows;
        let last_free = self.layout.depth * CYCLE_LENGTH - 1;
        let mut level = vec![BaseElement::ZERO; rows];
        for j in 0..self.layout.depth - 1 {
            level[j * CYCLE_LENGTH + CYCLE_LENGTH - 1] = BaseElement::ONE;
        }
        let mut end = vec![BaseElement::ZERO; rows];
        end[last_free] = BaseElement::ONE;
        let mut pre_end = vec![BaseElement::ZERO; rows];
        pre_end[last_free - 1] = BaseElement::ONE;
        [level, end, pre_end]
    }
}

/// The declared degree of every transition constraint, in evaluation order: `(trace degree,
/// cycle of the periodic factor)`.
fn constraint_shapes(layout: &Layout) -> Vec<(usize, usize)> {
    let p = layout.segment_rows;
    let mut shapes = Vec::with_capacity(NUM_CONSTRAINTS);
    // 1. rounds, A and B
    shapes.extend((0..2 * STATE_WIDTH).map(|_| (NUM_ROUNDS, CYCLE_LENGTH)));
    // 2. capacity, A and B
    shapes.extend((0..8).map(|_| (1, CYCLE_LENGTH)));
    // 3. sibling, A and B
    shapes.extend((0..2 * DIGEST_LEN).map(|_| (2, CYCLE_LENGTH)));
    // 4. node chaining, A and B
    shapes.extend((0..2 * DIGEST_LEN).map(|_| (2, p)));
    // 5. old root, 6. root chaining
    shapes.extend((0..2 * DIGEST_LEN).map(|_| (1, p)));
    // 7. anchor
    shapes.push((1, CYCLE_LENGTH));
    debug_assert_eq!(shapes.len(), NUM_CONSTRAINTS);
    shapes
}

fn transition_degrees(layout: &Layout) -> Vec<TransitionConstraintDegree> {
    constraint_shapes(layout)
        .into_iter()
        .map(|(degree, cycle)| TransitionConstraintDegree::with_cycles(degree, vec![cycle]))
        .collect()
}

/// Number of assertions for a layout: old root, 8 leaf cells per segment, the bit sequence and
/// the new root.
fn num_assertions(layout: &Layout) -> usize {
    DIGEST_LEN + 2 * DIGEST_LEN * layout.segments + 1 + DIGEST_LEN
}

impl Air for SmtUpdateAir {
    type BaseField = BaseElement;
    type PublicInputs = SmtUpdatePublicInputs;

    /// # Panics
    /// If `trace_info` does not have the width and length that `pub_inputs` imply; [`verify`]
    /// checks both before winterfell builds the AIR.
    fn new(
        trace_info: TraceInfo,
        pub_inputs: SmtUpdatePublicInputs,
        options: ProofOptions,
    ) -> Self {
        let layout = pub_inputs.layout();
        assert_eq!(trace_info.width(), TRACE_WIDTH, "smt-update trace width");
        assert_eq!(
            trace_info.length(),
            layout.trace_length,
            "smt-update trace length must match the public inputs"
        );
        let degrees = transition_degrees(&layout);
        let context = AirContext::new(trace_info, degrees, num_assertions(&layout), options);
        SmtUpdateAir {
            context,
            layout,
            pub_inputs,
        }
    }

    fn context(&self) -> &AirContext<BaseElement> {
        &self.context
    }

    fn evaluate_transition<E: FieldElement<BaseField = BaseElement>>(
        &self,
        frame: &EvaluationFrame<E>,
        periodic_values: &[E],
        result: &mut [E],
    ) {
        let cur = frame.current();
        let next = frame.next();
        let ark = &periodic_values[..2 * STATE_WIDTH];
        let round_flag = periodic_values[2 * STATE_WIDTH];
        let first_flag = periodic_values[2 * STATE_WIDTH + 1];
        let level_flag = periodic_values[2 * STATE_WIDTH + 2];
        let end_flag = periodic_values[2 * STATE_WIDTH + 3];
        let pre_end_flag = periodic_values[2 * STATE_WIDTH + 4];

        let a = &cur[COL_OLD..COL_OLD + STATE_WIDTH];
        let b = &cur[COL_NEW..COL_NEW + STATE_WIDTH];
        let a_next = &next[COL_OLD..COL_OLD + STATE_WIDTH];
        let b_next = &next[COL_NEW..COL_NEW + STATE_WIDTH];
        let bit = cur[COL_BIT];
        let bit_next = next[COL_BIT];
        let sibling = &cur[COL_SIBLING..COL_SIBLING + DIGEST_LEN];
        let root = &cur[COL_ROOT..COL_ROOT + DIGEST_LEN];
        let root_next = &next[COL_ROOT..COL_ROOT + DIGEST_LEN];
        let anchor = cur[COL_ANCHOR];

        // anchor terms (module docs, "Degrees"): 0 on every checked row by constraint 7
        let not_first = E::ONE - first_flag;
        let anchor2 = anchor.square();
        let anchor7 = anchor2.square() * anchor2 * anchor;
        let round_anchor = anchor7 * not_first;
        let linear_anchor = anchor * not_first;
        let square_anchor = anchor2 * not_first;
        let level_anchor = anchor2 * level_flag;
        let pre_end_anchor = anchor * pre_end_flag;
        let end_anchor = anchor * end_flag;

        // 1. rounds
        rescue::enforce_round(&mut result[0..STATE_WIDTH], a, a_next, ark, round_flag);
        rescue::enforce_round(
            &mut result[STATE_WIDTH..2 * STATE_WIDTH],
            b,
            b_next,
            ark,
            round_flag,
        );
        for r in result[..2 * STATE_WIDTH].iter_mut() {
            *r += round_anchor;
        }
        let mut i = 2 * STATE_WIDTH;

        // 2. capacity of every permutation input
        let tag = E::from(BaseElement::new(MERGE_CAPACITY_TAG));
        for state in [a, b] {
            result[i] = first_flag * (state[0] - tag) + linear_anchor;
            result[i + 1] = first_flag * state[1] + linear_anchor;
            result[i + 2] = first_flag * state[2] + linear_anchor;
            result[i + 3] = first_flag * state[3] + linear_anchor;
            i += 4;
        }

        // 3. the non-node half of both inputs is the sibling
        let not_bit = E::ONE - bit;
        for state in [a, b] {
            for j in 0..DIGEST_LEN {
                let sibling_half =
                    bit * state[DIGEST_START + j] + not_bit * state[DIGEST_START + DIGEST_LEN + j];
                result[i] = first_flag * (sibling_half - sibling[j]) + square_anchor;
                i += 1;
            }
        }

        // 4. the next level's node half is this level's digest
        let not_bit_next = E::ONE - bit_next;
        for (state, state_next) in [(a, a_next), (b, b_next)] {
            for j in 0..DIGEST_LEN {
                let node_half = not_bit_next * state_next[DIGEST_START + j]
                    + bit_next * state_next[DIGEST_START + DIGEST_LEN + j];
                result[i] = level_flag * (node_half - state[DIGEST_START + j]) + level_anchor;
                i += 1;
            }
        }

        // 5. the old path ends at the running root (checked on the row before the end)
        for j in 0..DIGEST_LEN {
            result[i] = pre_end_flag * (a_next[DIGEST_START + j] - root_next[j]) + pre_end_anchor;
            i += 1;
        }

        // 6. the running root becomes the new root after each update
        for j in 0..DIGEST_LEN {
            result[i] =
                root_next[j] - root[j] - end_flag * (b[DIGEST_START + j] - root[j]) + end_anchor;
            i += 1;
        }

        // 7. the anchor is 0 off the first row of every cycle
        result[i] = not_first * anchor;
        i += 1;
        debug_assert_eq!(i, NUM_CONSTRAINTS);
    }

    fn get_periodic_column_values(&self) -> Vec<Vec<BaseElement>> {
        let mut columns = rescue::periodic_round_constants();
        columns.push(rescue::periodic_round_flag());
        columns.push(rescue::periodic_first_row_flag());
        columns.extend(self.segment_periodic_columns());
        columns
    }

    fn get_assertions(&self) -> Vec<Assertion<BaseElement>> {
        let layout = &self.layout;
        let pi = &self.pub_inputs;
        let mut assertions = Vec::with_capacity(num_assertions(layout));

        // 1. the running root starts at old_root
        for (j, &value) in pi.old_root().iter().enumerate() {
            assertions.push(Assertion::single(COL_ROOT + j, 0, value));
        }

        // 2. leaves of every segment (padding segments repeat the last update as a no-op)
        for segment in 0..layout.segments {
            let update = pi.segment_update(segment);
            let row = layout.segment_start(segment);
            let half = if update.key & 1 == 1 { DIGEST_LEN } else { 0 };
            for j in 0..DIGEST_LEN {
                let col = DIGEST_START + half + j;
                assertions.push(Assertion::single(COL_OLD + col, row, update.old_value[j]));
                assertions.push(Assertion::single(COL_NEW + col, row, update.new_value[j]));
            }
        }

        // 3. key bits at the first row of every cycle
        assertions.push(Assertion::sequence(
            COL_BIT,
            0,
            CYCLE_LENGTH,
            pi.bit_sequence(),
        ));

        // 4. the last real update ends at new_root
        let end = layout.segment_end(layout.updates - 1);
        for (j, &value) in pi.new_root().iter().enumerate() {
            assertions.push(Assertion::single(COL_NEW + DIGEST_START + j, end, value));
        }
        assertions
    }
}

/// Proves the batch `witnesses` at `depth` with the given options and backend components.
///
/// Validates the witnesses first ([`build_trace`]); returns the proof and the public inputs
/// that [`verify`] checks it against.
pub fn prove<C: ProverComponents>(
    depth: u8,
    witnesses: &[SmtUpdateWitness],
    options: ProofOptions,
    components: C,
) -> Result<(Proof, SmtUpdatePublicInputs), Error> {
    let trace = build_trace(depth, witnesses)?;
    let pub_inputs = SmtUpdatePublicInputs::from_witnesses(depth, witnesses)?;
    prove_trace(trace, pub_inputs, options, components)
}

/// Proves an already built trace against `pub_inputs` (no witness validation: a trace that
/// does not satisfy the AIR yields an error, a panic of winterfell's debug-build checks, or a
/// proof that [`verify`] rejects).
pub fn prove_trace<C: ProverComponents>(
    trace: TraceTable<BaseElement>,
    pub_inputs: SmtUpdatePublicInputs,
    options: ProofOptions,
    components: C,
) -> Result<(Proof, SmtUpdatePublicInputs), Error> {
    if options.blowup_factor() < MIN_BLOWUP_FACTOR {
        return Err(Error::InvalidOptions {
            field: "blowup_factor",
            value: options.blowup_factor() as u64,
            rule: "must be at least 8 for smt-update (degree-7 Rescue rounds)",
        });
    }
    let layout = pub_inputs.layout();
    if trace.width() != TRACE_WIDTH || trace.length() != layout.trace_length {
        return Err(Error::InvalidWitness {
            air: AIR_NAME,
            reason: format!(
                "trace is {}x{} but the public inputs need {}x{}",
                trace.width(),
                trace.length(),
                TRACE_WIDTH,
                layout.trace_length
            ),
        });
    }
    let prover = EpaProver::<SmtUpdateAir, C>::new(options, pub_inputs.clone(), components);
    let proof = prover.prove_trace(AIR_NAME, trace)?;
    Ok((proof, pub_inputs))
}

/// Verifies `proof` against `pub_inputs` with the stock winterfell verifier and commitment hash
/// `H` (`Blake3_256<BaseElement>` or `Rp64_256`).
///
/// Checks the proof's trace shape against the public inputs first, so a proof for another
/// statement is rejected with a typed error rather than a panic.
pub fn verify<H>(
    proof: Proof,
    pub_inputs: &SmtUpdatePublicInputs,
    acceptable: &AcceptableOptions,
) -> Result<(), Error>
where
    H: ElementHasher<BaseField = BaseElement>,
{
    let layout = pub_inputs.layout();
    let info = proof.trace_info();
    if info.width() != TRACE_WIDTH
        || info.length() != layout.trace_length
        || info.is_multi_segment()
    {
        return Err(Error::MalformedProof {
            air: AIR_NAME,
            reason: format!(
                "proof trace is {}x{} ({} segments) but the public inputs need one {}x{} segment",
                info.width(),
                info.length(),
                if info.is_multi_segment() { 2 } else { 1 },
                TRACE_WIDTH,
                layout.trace_length
            ),
        });
    }
    let blowup = proof.options().blowup_factor();
    if blowup < MIN_BLOWUP_FACTOR {
        return Err(Error::MalformedProof {
            air: AIR_NAME,
            reason: format!("blowup factor {blowup} is below the minimum {MIN_BLOWUP_FACTOR}"),
        });
    }
    let pub_inputs = pub_inputs.clone();
    // winterfell may still panic on adversarial proof data that passed the shape check; such a
    // proof is invalid, never a crash.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        winterfell::verify::<
            SmtUpdateAir,
            H,
            winter_crypto::DefaultRandomCoin<H>,
            winter_crypto::MerkleTree<H>,
        >(proof, pub_inputs, acceptable)
    }));
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(Error::Rejected {
            air: AIR_NAME,
            source,
        }),
        Err(_) => Err(Error::VerifierPanicked { air: AIR_NAME }),
    }
}

/// The Rescue commitment to an update list: `Rp64_256::hash_elements` over
/// `[depth, k, (key_lo32, key_hi32, old[0..4], new[0..4])…]`.
pub fn commit_updates(depth: u8, updates: &[SmtUpdate]) -> Word {
    let mut elements = Vec::with_capacity(2 + updates.len() * 10);
    elements.push(BaseElement::from(depth));
    elements.push(BaseElement::new(updates.len() as u64));
    for update in updates {
        elements.push(BaseElement::new(update.key & 0xffff_ffff));
        elements.push(BaseElement::new(update.key >> 32));
        elements.extend_from_slice(&update.old_value);
        elements.extend_from_slice(&update.new_value);
    }
    Rp64_256::hash_elements(&elements).into()
}

impl ToElements<BaseElement> for SmtUpdatePublicInputs {
    fn to_elements(&self) -> Vec<BaseElement> {
        let mut elements = Vec::with_capacity(2 + 3 * DIGEST_LEN);
        elements.push(BaseElement::from(self.depth()));
        elements.push(BaseElement::new(self.updates().len() as u64));
        elements.extend_from_slice(self.old_root());
        elements.extend_from_slice(self.new_root());
        elements.extend_from_slice(self.commitment());
        elements
    }
}
