//! A multi-threaded constraint evaluator whose composition trace is bit-identical to
//! winterfell's [`DefaultConstraintEvaluator`](winterfell::DefaultConstraintEvaluator).
//!
//! Winterfell is built without its `concurrent` feature (its parallel grinding search picks a
//! nonce nondeterministically, and a proof must not depend on thread timing), so its default
//! evaluator walks the constraint evaluation domain on one core. [`ParallelConstraintEvaluator`]
//! is a port of winter-prover 0.13.1's default evaluator that runs the loops winterfell would
//! parallelise under `concurrent` on rayon (the caller's thread pool):
//!
//! 1. the constraint evaluation table is split into row fragments, one per thread rounded up to
//!    a power of two, and every fragment reads its evaluation frames from the trace LDE and
//!    evaluates the transition and boundary constraints of its rows on its own thread;
//! 2. the inverse evaluations of every constraint divisor's numerator `x^a - b` are computed
//!    over row batches in parallel (then batch-inverted with winter-math's `batch_inversion`,
//!    the call winterfell makes);
//! 3. the table's columns are divided by their divisors and summed into one column over row
//!    batches in parallel.
//!
//! Every value is computed by the same field operations in the same order as winterfell's serial
//! evaluator: each row is evaluated independently, and where winterfell adds the divided columns
//! one after the other into the combined column, each row here adds them in the same column
//! order. Splitting rows between threads therefore changes no value, so the composition trace,
//! and the proof, are the same for any number of threads; even the Montgomery words are those
//! of winterfell's evaluator in the same thread pool (the one step whose batching may follow the
//! pool's size, winter-math's `batch_inversion`, is the same call on both sides).
//! `tests/accel_evaluator.rs` checks this against winterfell's evaluator in 1- and 4-thread
//! pools, and `tests/accel.rs` checks whole proofs.
//!
//! In debug builds the evaluator also keeps every transition constraint's evaluations and checks
//! their degrees against the AIR's declared degrees, as winterfell does (interpolating the
//! columns in parallel).
//!
//! The boundary constraint groups, the periodic value table, the evaluation table and its
//! fragments follow winter-prover 0.13.1's private `constraints/evaluator/boundary.rs`,
//! `constraints/evaluator/periodic_table.rs`, `constraints/evaluator/default.rs` and
//! `constraints/evaluation_table.rs` (Copyright (c) Facebook, Inc. and its affiliates, MIT
//! license).

use std::collections::BTreeMap;

use rayon::prelude::*;
use winter_math::{ExtensionOf, FieldElement, StarkField, batch_inversion, fft};
use winterfell::{
    Air, AuxRandElements, CompositionPolyTrace, ConstraintCompositionCoefficients,
    ConstraintDivisor, ConstraintEvaluator, EvaluationFrame, StarkDomain, TraceLde,
};

/// Constraint evaluation domains smaller than this are evaluated as one fragment (winterfell's
/// `concurrent` threshold is 8192; a lower one lets mid-sized proofs use every core, and the
/// fragment boundaries change no value).
const MIN_CONCURRENT_DOMAIN_SIZE: usize = 1024;

/// The smallest fragment of the evaluation table (winterfell's `MIN_FRAGMENT_SIZE`).
const MIN_FRAGMENT_SIZE: usize = 16;

/// The smallest row batch of the divisor and combination loops (winterfell's `batch_iter_mut!`
/// minimum for these loops).
const MIN_BATCH_SIZE: usize = 128;

/// Boundary polynomials of this degree or smaller are evaluated on the fly; larger ones are
/// evaluated over the whole constraint evaluation domain up front (winterfell's
/// `SMALL_POLY_DEGREE`).
const SMALL_POLY_DEGREE: usize = 63;

// EVALUATOR
// ================================================================================================

/// Evaluates an AIR's constraints over the constraint evaluation domain on every thread of the
/// current rayon pool; the result is bit-identical to winterfell's
/// [`DefaultConstraintEvaluator`](winterfell::DefaultConstraintEvaluator) (see the module docs).
pub struct ParallelConstraintEvaluator<'a, A: Air, E: FieldElement<BaseField = A::BaseField>> {
    air: &'a A,
    boundary_constraints: BoundaryConstraints<E>,
    transition_constraints: TransitionConstraints<E>,
    aux_rand_elements: Option<AuxRandElements<E>>,
    periodic_values: PeriodicValueTable<E::BaseField>,
}

impl<'a, A, E> ParallelConstraintEvaluator<'a, A, E>
where
    A: Air,
    E: FieldElement<BaseField = A::BaseField>,
{
    /// An evaluator of `air`'s transition and boundary constraints, composed with
    /// `composition_coefficients` (winterfell's `DefaultConstraintEvaluator::new`).
    pub fn new(
        air: &'a A,
        aux_rand_elements: Option<AuxRandElements<E>>,
        composition_coefficients: ConstraintCompositionCoefficients<E>,
    ) -> Self {
        let transition_constraints = TransitionConstraints::new(air, &composition_coefficients);
        let periodic_values = PeriodicValueTable::new(air);
        let boundary_constraints = BoundaryConstraints::new(
            air,
            aux_rand_elements.as_ref(),
            &composition_coefficients.boundary,
        );
        ParallelConstraintEvaluator {
            air,
            boundary_constraints,
            transition_constraints,
            aux_rand_elements,
            periodic_values,
        }
    }

    /// Evaluates the constraints over the main trace segment for the rows of one fragment.
    fn evaluate_fragment_main<T: TraceLde<E>>(
        &self,
        trace: &T,
        domain: &StarkDomain<A::BaseField>,
        fragment: &mut TableFragment<'_, E>,
    ) {
        let mut main_frame = EvaluationFrame::new(trace.trace_info().main_trace_width());
        let mut evaluations = vec![E::ZERO; fragment.num_columns()];
        let mut t_evaluations = vec![E::BaseField::ZERO; self.transition_constraints.num_main];
        // a step of the constraint evaluation domain to a step of the LDE domain
        let lde_shift = domain.ce_to_lde_blowup().trailing_zeros();

        for i in 0..fragment.num_rows() {
            let step = i + fragment.offset;
            trace.read_main_trace_frame_into(step << lde_shift, &mut main_frame);
            evaluations[0] = self.evaluate_main_transition(&main_frame, step, &mut t_evaluations);
            #[cfg(debug_assertions)]
            fragment.update_transition_evaluations(i, &t_evaluations, &[]);
            self.boundary_constraints.evaluate_main(
                main_frame.current(),
                domain,
                step,
                &mut evaluations[1..],
            );
            fragment.update_row(i, &evaluations);
        }
    }

    /// Evaluates the constraints over the main and the auxiliary trace segments for the rows of
    /// one fragment.
    fn evaluate_fragment_full<T: TraceLde<E>>(
        &self,
        trace: &T,
        domain: &StarkDomain<A::BaseField>,
        fragment: &mut TableFragment<'_, E>,
    ) {
        let mut main_frame = EvaluationFrame::new(trace.trace_info().main_trace_width());
        let mut aux_frame = EvaluationFrame::new(trace.trace_info().aux_segment_width());
        let mut tm_evaluations = vec![E::BaseField::ZERO; self.transition_constraints.num_main];
        let mut ta_evaluations = vec![E::ZERO; self.transition_constraints.num_aux];
        let mut evaluations = vec![E::ZERO; fragment.num_columns()];
        let lde_shift = domain.ce_to_lde_blowup().trailing_zeros();

        for i in 0..fragment.num_rows() {
            let step = i + fragment.offset;
            trace.read_main_trace_frame_into(step << lde_shift, &mut main_frame);
            trace.read_aux_trace_frame_into(step << lde_shift, &mut aux_frame);
            // all transition constraints share one divisor: their merged evaluations add up
            evaluations[0] = self.evaluate_main_transition(&main_frame, step, &mut tm_evaluations);
            evaluations[0] +=
                self.evaluate_aux_transition(&main_frame, &aux_frame, step, &mut ta_evaluations);
            #[cfg(debug_assertions)]
            fragment.update_transition_evaluations(i, &tm_evaluations, &ta_evaluations);
            self.boundary_constraints.evaluate_all(
                main_frame.current(),
                aux_frame.current(),
                domain,
                step,
                &mut evaluations[1..],
            );
            fragment.update_row(i, &evaluations);
        }
    }

    /// The main segment's transition constraints at `step`, merged with their composition
    /// coefficients.
    fn evaluate_main_transition(
        &self,
        main_frame: &EvaluationFrame<E::BaseField>,
        step: usize,
        evaluations: &mut [E::BaseField],
    ) -> E {
        evaluations.fill(E::BaseField::ZERO);
        let periodic_values = self.periodic_values.get_row(step);
        self.air
            .evaluate_transition(main_frame, periodic_values, evaluations);
        evaluations
            .iter()
            .zip(&self.transition_constraints.main_coefficients)
            .fold(E::ZERO, |acc, (&value, &coef)| acc + coef.mul_base(value))
    }

    /// The auxiliary segment's transition constraints at `step`, merged with their composition
    /// coefficients.
    fn evaluate_aux_transition(
        &self,
        main_frame: &EvaluationFrame<E::BaseField>,
        aux_frame: &EvaluationFrame<E>,
        step: usize,
        evaluations: &mut [E],
    ) -> E {
        evaluations.fill(E::ZERO);
        let periodic_values = self.periodic_values.get_row(step);
        self.air.evaluate_aux_transition(
            main_frame,
            aux_frame,
            periodic_values,
            self.aux_rand_elements
                .as_ref()
                .expect("winterfell draws the auxiliary random elements for a multi-segment trace"),
            evaluations,
        );
        evaluations
            .iter()
            .zip(&self.transition_constraints.aux_coefficients)
            .fold(E::ZERO, |acc, (&value, &coef)| acc + coef * value)
    }
}

impl<A, E> ConstraintEvaluator<E> for ParallelConstraintEvaluator<'_, A, E>
where
    A: Air,
    E: FieldElement<BaseField = A::BaseField>,
{
    type Air = A;

    #[tracing::instrument(
        skip_all,
        name = "evaluate_constraints",
        fields(ce_domain_size = %domain.ce_domain_size())
    )]
    fn evaluate<T: TraceLde<E>>(
        self,
        trace: &T,
        domain: &StarkDomain<E::BaseField>,
    ) -> CompositionPolyTrace<E> {
        assert_eq!(
            trace.trace_len(),
            domain.lde_domain_size(),
            "extended trace length is not consistent with evaluation domain"
        );

        // the transition constraints' divisor first, then one per boundary constraint group
        let mut divisors = vec![self.transition_constraints.divisor.clone()];
        divisors.extend(self.boundary_constraints.divisors());

        let mut table = EvaluationTable::new(domain, divisors, &self.transition_constraints);
        let num_fragments = fragment_count(domain.ce_domain_size(), rayon::current_num_threads());
        let multi_segment = self.air.trace_info().is_multi_segment();
        table
            .fragments(num_fragments)
            .into_par_iter()
            .for_each(|mut fragment| {
                if multi_segment {
                    self.evaluate_fragment_full(trace, domain, &mut fragment);
                } else {
                    self.evaluate_fragment_main(trace, domain, &mut fragment);
                }
            });

        #[cfg(debug_assertions)]
        table.validate_transition_degrees();

        CompositionPolyTrace::new(table.combine())
    }
}

/// How many fragments the evaluation table of a `ce_domain_size`-row domain is split into on
/// `threads` threads: one per thread rounded up to a power of two (as winterfell does under
/// `concurrent`), one for small domains, and never fragments under [`MIN_FRAGMENT_SIZE`] rows.
pub fn fragment_count(ce_domain_size: usize, threads: usize) -> usize {
    if ce_domain_size < MIN_CONCURRENT_DOMAIN_SIZE {
        return 1;
    }
    threads
        .max(1)
        .next_power_of_two()
        .min(ce_domain_size / MIN_FRAGMENT_SIZE)
}

/// How many columns [`EvaluationTable::combine`] divides at once: each holds one divisor
/// inverse of up to the domain's size while it is added in.
const COMBINE_GROUP: usize = 8;

/// The batch size of a parallel loop over `len` rows: one batch per thread rounded up to a
/// power of two, at least [`MIN_BATCH_SIZE`] rows (winterfell's `batch_iter_mut!`).
fn batch_size(len: usize) -> usize {
    let batch = len / rayon::current_num_threads().max(1).next_power_of_two();
    if batch < MIN_BATCH_SIZE {
        len.max(1)
    } else {
        batch
    }
}

// TRANSITION CONSTRAINTS
// ================================================================================================

/// What the evaluator needs of winterfell's `TransitionConstraints` (a type winterfell does not
/// re-export): the common divisor, the composition coefficients (winterfell clones them for
/// every row) and, in debug builds, the expected degrees.
struct TransitionConstraints<E: FieldElement> {
    divisor: ConstraintDivisor<E::BaseField>,
    num_main: usize,
    num_aux: usize,
    main_coefficients: Vec<E>,
    aux_coefficients: Vec<E>,
    /// The evaluation degree of every transition constraint with the divisor's degree removed:
    /// the degree of `C(x) / z(x)` (winterfell's `build_transition_constraint_degrees`).
    #[cfg(debug_assertions)]
    expected_degrees: Vec<usize>,
}

impl<E: FieldElement> TransitionConstraints<E> {
    /// `air`'s transition constraints composed with `coefficients.transition`.
    fn new<A: Air<BaseField = E::BaseField>>(
        air: &A,
        coefficients: &ConstraintCompositionCoefficients<E>,
    ) -> Self {
        let source = air.get_transition_constraints(&coefficients.transition);
        #[cfg(debug_assertions)]
        let expected_degrees = {
            let divisor_degree = source.divisor().degree();
            source
                .main_constraint_degrees()
                .iter()
                .chain(source.aux_constraint_degrees())
                .map(|degree| degree.get_evaluation_degree(air.trace_length()) - divisor_degree)
                .collect()
        };
        TransitionConstraints {
            divisor: source.divisor().clone(),
            num_main: source.num_main_constraints(),
            num_aux: source.num_aux_constraints(),
            main_coefficients: source.main_constraint_coef(),
            aux_coefficients: source.aux_constraint_coef(),
            #[cfg(debug_assertions)]
            expected_degrees,
        }
    }
}

// EVALUATION TABLE
// ================================================================================================

/// The constraint evaluations over the constraint evaluation domain: one column for the merged
/// transition constraints and one per boundary constraint divisor (winterfell's
/// `ConstraintEvaluationTable`).
struct EvaluationTable<'d, E: FieldElement> {
    evaluations: Vec<Vec<E>>,
    divisors: Vec<ConstraintDivisor<E::BaseField>>,
    domain: &'d StarkDomain<E::BaseField>,
    /// Every main transition constraint's evaluations, for the degree check.
    #[cfg(debug_assertions)]
    main_transition_evaluations: Vec<Vec<E::BaseField>>,
    /// Every auxiliary transition constraint's evaluations, for the degree check.
    #[cfg(debug_assertions)]
    aux_transition_evaluations: Vec<Vec<E>>,
    /// The degrees the AIR declares for its transition constraints (divisor removed).
    #[cfg(debug_assertions)]
    expected_transition_degrees: Vec<usize>,
}

impl<'d, E: FieldElement> EvaluationTable<'d, E> {
    /// A table of `divisors.len()` columns over the constraint evaluation domain.
    #[cfg_attr(not(debug_assertions), allow(unused_variables))]
    fn new(
        domain: &'d StarkDomain<E::BaseField>,
        divisors: Vec<ConstraintDivisor<E::BaseField>>,
        transition_constraints: &TransitionConstraints<E>,
    ) -> Self {
        let num_rows = domain.ce_domain_size();
        EvaluationTable {
            evaluations: zero_matrix(divisors.len(), num_rows),
            divisors,
            domain,
            #[cfg(debug_assertions)]
            main_transition_evaluations: zero_matrix(transition_constraints.num_main, num_rows),
            #[cfg(debug_assertions)]
            aux_transition_evaluations: zero_matrix(transition_constraints.num_aux, num_rows),
            #[cfg(debug_assertions)]
            expected_transition_degrees: transition_constraints.expected_degrees.clone(),
        }
    }

    /// The number of rows (the size of the constraint evaluation domain).
    fn num_rows(&self) -> usize {
        self.domain.ce_domain_size()
    }

    /// Splits the table into `num_fragments` row ranges that can be filled independently.
    fn fragments(&mut self, num_fragments: usize) -> Vec<TableFragment<'_, E>> {
        let fragment_size = self.num_rows() / num_fragments;
        assert!(
            fragment_size >= MIN_FRAGMENT_SIZE,
            "fragment size must be at least {MIN_FRAGMENT_SIZE}, but was {fragment_size}"
        );
        let evaluations = make_fragments(&mut self.evaluations, num_fragments);

        #[cfg(debug_assertions)]
        {
            let tm = make_fragments(&mut self.main_transition_evaluations, num_fragments);
            let ta = make_fragments(&mut self.aux_transition_evaluations, num_fragments);
            evaluations
                .into_iter()
                .zip(tm)
                .zip(ta)
                .enumerate()
                .map(
                    |(i, ((evaluations, tm_evaluations), ta_evaluations))| TableFragment {
                        offset: i * fragment_size,
                        evaluations,
                        tm_evaluations,
                        ta_evaluations,
                    },
                )
                .collect()
        }

        #[cfg(not(debug_assertions))]
        evaluations
            .into_iter()
            .enumerate()
            .map(|(i, evaluations)| TableFragment {
                offset: i * fragment_size,
                evaluations,
            })
            .collect()
    }

    /// Divides every column by its divisor and adds the quotients into one column
    /// (winterfell's `combine` and `acc_column`).
    ///
    /// Winterfell adds the columns one after the other into the combined column; here each row
    /// batch adds them in the same column order, so every row sees the same additions.
    fn combine(self) -> Vec<E> {
        let domain = self.domain;
        let mut combined = vec![E::ZERO; self.num_rows()];
        let batch = batch_size(combined.len());
        // The divisors' inverses are as long as the domain for single-step assertions: built
        // for a few columns at a time (winterfell builds one at a time), not for every column
        // at once, which had held one domain-sized vector per boundary divisor (67 MB of a
        // 64-update smt-update proof) beside the table.
        for (columns, divisors) in self
            .evaluations
            .chunks(COMBINE_GROUP)
            .zip(self.divisors.chunks(COMBINE_GROUP))
        {
            let inverses: Vec<Vec<E::BaseField>> = divisors
                .iter()
                .map(|divisor| inverse_numerator_evaluations(divisor, domain))
                .collect();
            combined
                .par_chunks_mut(batch)
                .enumerate()
                .for_each(|(b, out)| {
                    let start = b * batch;
                    for ((column, divisor), z) in columns.iter().zip(divisors).zip(&inverses) {
                        let column = &column[start..start + out.len()];
                        if divisor.exemptions().is_empty() {
                            // a boundary column: value / (x^a - b) = value * z
                            for (i, (acc, &value)) in out.iter_mut().zip(column).enumerate() {
                                let z = z[(start + i) % z.len()];
                                *acc += value.mul_base(z);
                            }
                        } else {
                            // the transition column: value * e(x) / (x^a - 1), e(x) the
                            // exemptions
                            for (i, (acc, &value)) in out.iter_mut().zip(column).enumerate() {
                                let x = domain.get_ce_x_at(start + i);
                                let e = divisor.evaluate_exemptions_at(x);
                                let z = z[(start + i) % z.len()];
                                *acc += value.mul_base(z * e);
                            }
                        }
                    }
                });
        }
        combined
    }

    /// Checks that every transition constraint's evaluations have the degree the AIR declares,
    /// and that the constraint evaluation domain is no larger than the largest degree needs
    /// (winterfell's debug-build check; panics with both lists on a mismatch).
    #[cfg(debug_assertions)]
    fn validate_transition_degrees(&self) {
        let num_rows = self.num_rows();
        let div_values: Vec<E::BaseField> =
            divisor_evaluations(&self.divisors[0], num_rows, self.domain.offset());
        let inv_twiddles = fft::get_inv_twiddles::<E::BaseField>(num_rows);

        let main_degrees: Vec<usize> = self
            .main_transition_evaluations
            .par_iter()
            .map(|column| transition_poly_degree(column, &inv_twiddles, &div_values))
            .collect();
        let aux_degrees: Vec<usize> = self
            .aux_transition_evaluations
            .par_iter()
            .map(|column| transition_poly_degree(column, &inv_twiddles, &div_values))
            .collect();
        let actual_degrees: Vec<usize> = main_degrees.into_iter().chain(aux_degrees).collect();
        let max_degree = actual_degrees.iter().copied().max().unwrap_or(0);

        assert_eq!(
            self.expected_transition_degrees, actual_degrees,
            "transition constraint degrees didn't match\nexpected: {:>3?}\nactual:   {:>3?}",
            self.expected_transition_degrees, actual_degrees
        );
        let expected_domain_size =
            core::cmp::max(max_degree, self.domain.trace_length() + 1).next_power_of_two();
        assert_eq!(
            expected_domain_size, num_rows,
            "incorrect constraint evaluation domain size; expected {expected_domain_size}, but \
             was {num_rows}"
        );
    }
}

/// A range of rows of the evaluation table, filled by one thread (winterfell's
/// `EvaluationTableFragment`).
struct TableFragment<'t, E: FieldElement> {
    /// The first row of the fragment in the table.
    offset: usize,
    /// The fragment's part of every table column.
    evaluations: Vec<&'t mut [E]>,
    /// The fragment's part of every main transition constraint's evaluations.
    #[cfg(debug_assertions)]
    tm_evaluations: Vec<&'t mut [E::BaseField]>,
    /// The fragment's part of every auxiliary transition constraint's evaluations.
    #[cfg(debug_assertions)]
    ta_evaluations: Vec<&'t mut [E]>,
}

impl<E: FieldElement> TableFragment<'_, E> {
    /// The number of rows of the fragment.
    fn num_rows(&self) -> usize {
        self.evaluations[0].len()
    }

    /// The number of table columns.
    fn num_columns(&self) -> usize {
        self.evaluations.len()
    }

    /// Writes `row_data` (one value per column) into row `row_idx` of the fragment.
    fn update_row(&mut self, row_idx: usize, row_data: &[E]) {
        for (column, &value) in self.evaluations.iter_mut().zip(row_data) {
            column[row_idx] = value;
        }
    }

    /// Records the individual transition constraint evaluations of row `row_idx`.
    #[cfg(debug_assertions)]
    fn update_transition_evaluations(
        &mut self,
        row_idx: usize,
        main_evaluations: &[E::BaseField],
        aux_evaluations: &[E],
    ) {
        for (column, &value) in self.tm_evaluations.iter_mut().zip(main_evaluations) {
            column[row_idx] = value;
        }
        for (column, &value) in self.ta_evaluations.iter_mut().zip(aux_evaluations) {
            column[row_idx] = value;
        }
    }
}

/// `num_cols` zeroed columns of `num_rows` elements.
fn zero_matrix<E: FieldElement>(num_cols: usize, num_rows: usize) -> Vec<Vec<E>> {
    (0..num_cols).map(|_| vec![E::ZERO; num_rows]).collect()
}

/// Splits every column into `num_fragments` equal row ranges; fragment `i` gets range `i` of
/// every column (an empty list of columns gives `num_fragments` empty fragments).
fn make_fragments<E: FieldElement>(
    source: &mut [Vec<E>],
    num_fragments: usize,
) -> Vec<Vec<&mut [E]>> {
    let mut result: Vec<Vec<&mut [E]>> = (0..num_fragments).map(|_| Vec::new()).collect();
    if let Some(first) = source.first() {
        let fragment_size = first.len() / num_fragments;
        for column in source.iter_mut() {
            for (i, fragment) in column.chunks_mut(fragment_size).enumerate() {
                result[i].push(fragment);
            }
        }
    }
    result
}

/// `1 / (x^a - b)` for the numerator `x^a - b` of `divisor` over the first
/// `ce_domain_size / a` points `x` of the constraint evaluation domain (the values repeat
/// after that; winterfell's `get_inv_evaluation`).
fn inverse_numerator_evaluations<B: StarkField>(
    divisor: &ConstraintDivisor<B>,
    domain: &StarkDomain<B>,
) -> Vec<B> {
    let numerator = divisor.numerator();
    assert_eq!(numerator.len(), 1, "complex divisors are not yet supported");
    let a = numerator[0].0 as u64;
    let b = numerator[0].1;
    // `get_ce_x_power_at` needs this, which limits traces to 2^32 steps (as in winterfell)
    assert!(
        a <= u64::from(u32::MAX),
        "constraint divisor numerator degree cannot exceed {}, but was {a}",
        u32::MAX
    );

    let n = domain.ce_domain_size() / a as usize;
    let domain_offset_exp = domain.offset().exp(a.into());
    let mut evaluations = vec![B::ZERO; n];
    let batch = batch_size(n);
    evaluations
        .par_chunks_mut(batch)
        .enumerate()
        .for_each(|(k, out)| {
            let start = k * batch;
            for (i, value) in out.iter_mut().enumerate() {
                let x = domain.get_ce_x_power_at(start + i, a, domain_offset_exp);
                *value = x - b;
            }
        });
    batch_inversion(&evaluations)
}

// DEBUG HELPERS
// ================================================================================================

/// The degree of the polynomial whose evaluations, divided by `div_values`, are `evaluations`
/// (winterfell's `get_transition_poly_degree`): dividing first keeps the degree under the
/// domain size, so the interpolation is exact.
#[cfg(debug_assertions)]
fn transition_poly_degree<E: FieldElement>(
    evaluations: &[E],
    inv_twiddles: &[E::BaseField],
    div_values: &[E::BaseField],
) -> usize {
    let mut quotients: Vec<E> = evaluations
        .iter()
        .zip(div_values)
        .map(|(&c, &d)| c / E::from(d))
        .collect();
    fft::interpolate_poly(&mut quotients, inv_twiddles);
    winter_math::polynom::degree_of(&quotients)
}

/// `divisor` evaluated (not inverted) over the `domain_size` points of the coset
/// `domain_offset * <g>` (winterfell's `evaluate_divisor`).
#[cfg(debug_assertions)]
fn divisor_evaluations<B: StarkField>(
    divisor: &ConstraintDivisor<B>,
    domain_size: usize,
    domain_offset: B,
) -> Vec<B> {
    let g = B::get_root_of_unity(domain_size.trailing_zeros());
    winter_math::get_power_series_with_offset(g, domain_offset, domain_size)
        .into_iter()
        .map(|x| divisor.evaluate_at(x))
        .collect()
}

// PERIODIC VALUES
// ================================================================================================

/// The values of every periodic column over one period of the constraint evaluation domain,
/// row-major, so a step's values are one slice (winterfell's `PeriodicValueTable`).
struct PeriodicValueTable<B: StarkField> {
    values: Vec<B>,
    length: usize,
    width: usize,
}

impl<B: StarkField> PeriodicValueTable<B> {
    /// Evaluates `air`'s periodic column polynomials over the constraint evaluation domain,
    /// each over as many points as its period covers, expanded to the longest one.
    fn new<A: Air<BaseField = B>>(air: &A) -> Self {
        let polys = air.get_periodic_column_polys();
        let Some(max_poly_size) = polys.iter().map(Vec::len).max() else {
            return PeriodicValueTable {
                values: Vec::new(),
                length: 0,
                width: 0,
            };
        };

        let mut twiddle_map: BTreeMap<usize, Vec<B>> = BTreeMap::new();
        let evaluations: Vec<Vec<B>> = polys
            .iter()
            .map(|poly| {
                let poly_size = poly.len();
                let num_cycles = (air.trace_length() / poly_size) as u64;
                let offset = air.domain_offset().exp(num_cycles.into());
                let twiddles = twiddle_map
                    .entry(poly_size)
                    .or_insert_with(|| fft::get_twiddles(poly_size));
                fft::evaluate_poly_with_offset(poly, twiddles, offset, air.ce_blowup_factor())
            })
            .collect();

        let width = polys.len();
        let length = max_poly_size * air.ce_blowup_factor();
        let mut values = Vec::with_capacity(width * length);
        for i in 0..length {
            values.extend(evaluations.iter().map(|column| column[i % column.len()]));
        }
        PeriodicValueTable {
            values,
            length,
            width,
        }
    }

    /// The periodic values at step `ce_step` of the constraint evaluation domain.
    fn get_row(&self, ce_step: usize) -> &[B] {
        if self.width == 0 {
            &[]
        } else {
            let start = (ce_step % self.length) * self.width;
            &self.values[start..start + self.width]
        }
    }
}

// BOUNDARY CONSTRAINTS
// ================================================================================================

/// An AIR's boundary constraints grouped by divisor, each group specialised for evaluation
/// (winterfell's prover-side `BoundaryConstraints`).
struct BoundaryConstraints<E: FieldElement>(Vec<BoundaryConstraintGroup<E>>);

impl<E: FieldElement> BoundaryConstraints<E> {
    /// The boundary constraints of `air` composed with `composition_coefficients`; auxiliary
    /// constraints join the main group with the same divisor, so each divisor has one group.
    fn new<A: Air<BaseField = E::BaseField>>(
        air: &A,
        aux_rand_elements: Option<&AuxRandElements<E>>,
        composition_coefficients: &[E],
    ) -> Self {
        let source = air.get_boundary_constraints(aux_rand_elements, composition_coefficients);
        // twiddles by polynomial size, shared by the large polynomial constraints
        let mut twiddle_map = BTreeMap::new();

        let mut groups: Vec<BoundaryConstraintGroup<E>> = source
            .main_constraints()
            .iter()
            .map(|group| BoundaryConstraintGroup::from_main(group, air, &mut twiddle_map))
            .collect();
        for group in source.aux_constraints() {
            match groups.iter_mut().find(|g| &g.divisor == group.divisor()) {
                Some(existing) => existing.add_aux(group, air, &mut twiddle_map),
                None => {
                    let mut new = BoundaryConstraintGroup::empty(group.divisor().clone());
                    new.add_aux(group, air, &mut twiddle_map);
                    groups.push(new);
                }
            }
        }
        BoundaryConstraints(groups)
    }

    /// The divisor of every group, in group order.
    fn divisors(&self) -> impl Iterator<Item = ConstraintDivisor<E::BaseField>> + '_ {
        self.0.iter().map(|g| g.divisor.clone())
    }

    /// Evaluates every group against the main segment's state at `step`, one result per group.
    fn evaluate_main(
        &self,
        main_state: &[E::BaseField],
        domain: &StarkDomain<E::BaseField>,
        step: usize,
        result: &mut [E],
    ) {
        let x = domain.get_ce_x_at(step);
        for (group, result) in self.0.iter().zip(result.iter_mut()) {
            *result = group.evaluate_main(main_state, step, x);
        }
    }

    /// Evaluates every group against the main and auxiliary states at `step`, one result per
    /// group.
    fn evaluate_all(
        &self,
        main_state: &[E::BaseField],
        aux_state: &[E],
        domain: &StarkDomain<E::BaseField>,
        step: usize,
        result: &mut [E],
    ) {
        let x = domain.get_ce_x_at(step);
        for (group, result) in self.0.iter().zip(result.iter_mut()) {
            *result = group.evaluate_all(main_state, aux_state, step, x);
        }
    }
}

/// Boundary constraints sharing one divisor, one [`SegmentConstraints`] per trace segment.
struct BoundaryConstraintGroup<E: FieldElement> {
    divisor: ConstraintDivisor<E::BaseField>,
    main: SegmentConstraints<E::BaseField, E>,
    aux: SegmentConstraints<E, E>,
}

impl<E: FieldElement> BoundaryConstraintGroup<E> {
    /// A group without constraints.
    fn empty(divisor: ConstraintDivisor<E::BaseField>) -> Self {
        BoundaryConstraintGroup {
            divisor,
            main: SegmentConstraints::default(),
            aux: SegmentConstraints::default(),
        }
    }

    /// The group of `source`'s constraints against the main trace segment.
    fn from_main<A: Air<BaseField = E::BaseField>>(
        source: &winterfell::BoundaryConstraintGroup<E::BaseField, E>,
        air: &A,
        twiddle_map: &mut BTreeMap<usize, Vec<E::BaseField>>,
    ) -> Self {
        let mut group = Self::empty(source.divisor().clone());
        for constraint in source.constraints() {
            group.main.push(constraint, air, twiddle_map);
        }
        group
    }

    /// Adds `source`'s constraints against the auxiliary trace segment (same divisor).
    fn add_aux<A: Air<BaseField = E::BaseField>>(
        &mut self,
        source: &winterfell::BoundaryConstraintGroup<E, E>,
        air: &A,
        twiddle_map: &mut BTreeMap<usize, Vec<E::BaseField>>,
    ) {
        assert_eq!(
            source.divisor(),
            &self.divisor,
            "inconsistent constraint divisor"
        );
        for constraint in source.constraints() {
            self.aux.push(constraint, air, twiddle_map);
        }
    }

    /// The sum of the group's main-segment constraints at step `ce_step` (domain point `x`).
    fn evaluate_main(&self, state: &[E::BaseField], ce_step: usize, x: E::BaseField) -> E {
        let mut result = E::ZERO;
        self.main.add_into(&mut result, state, ce_step, x);
        result
    }

    /// The sum of all the group's constraints at step `ce_step` (domain point `x`).
    fn evaluate_all(
        &self,
        main_state: &[E::BaseField],
        aux_state: &[E],
        ce_step: usize,
        x: E::BaseField,
    ) -> E {
        // One running sum, main then auxiliary, as winterfell adds them.
        let mut result = E::ZERO;
        self.main.add_into(&mut result, main_state, ce_step, x);
        self.aux.add_into(&mut result, aux_state, ce_step, x);
        result
    }
}

/// One trace segment's boundary constraints of a group (over `F`: the base field for the main
/// segment, `E` for the auxiliary one), split by how their asserted values are evaluated
/// (winterfell's single-value, small- and large-polynomial constraints).
struct SegmentConstraints<F: FieldElement, E: ExtensionOf<F>> {
    single_value: Vec<SingleValueConstraint<F, E>>,
    small_poly: Vec<SmallPolyConstraint<F, E>>,
    large_poly: Vec<LargePolyConstraint<F, E>>,
}

impl<F: FieldElement, E: ExtensionOf<F>> Default for SegmentConstraints<F, E> {
    fn default() -> Self {
        SegmentConstraints {
            single_value: Vec::new(),
            small_poly: Vec::new(),
            large_poly: Vec::new(),
        }
    }
}

impl<F, E> SegmentConstraints<F, E>
where
    F: FieldElement,
    E: FieldElement<BaseField = F::BaseField> + ExtensionOf<F>,
{
    /// Files `constraint` by the length of its asserted-value polynomial.
    fn push<A: Air<BaseField = F::BaseField>>(
        &mut self,
        constraint: &winterfell::BoundaryConstraint<F, E>,
        air: &A,
        twiddle_map: &mut BTreeMap<usize, Vec<F::BaseField>>,
    ) {
        match constraint.poly().len() {
            1 => self
                .single_value
                .push(SingleValueConstraint::new(constraint)),
            len if len < SMALL_POLY_DEGREE => {
                self.small_poly.push(SmallPolyConstraint::new(constraint))
            }
            _ => self
                .large_poly
                .push(LargePolyConstraint::new(constraint, air, twiddle_map)),
        }
    }

    /// Adds the constraints at step `ce_step` (domain point `x`) into `result`, in winterfell's
    /// order: single values, then small polynomials, then large ones.
    fn add_into(&self, result: &mut E, state: &[F], ce_step: usize, x: F::BaseField) {
        for constraint in &self.single_value {
            *result += constraint.evaluate(state);
        }
        for constraint in &self.small_poly {
            *result += constraint.evaluate(state, x);
        }
        for constraint in &self.large_poly {
            *result += constraint.evaluate(state, ce_step);
        }
    }
}

/// `cc * (p(x) - v)`: one asserted value `v` of column `column`.
struct SingleValueConstraint<F: FieldElement, E: ExtensionOf<F>> {
    column: usize,
    value: F,
    coefficient: E,
}

impl<F, E> SingleValueConstraint<F, E>
where
    F: FieldElement,
    E: FieldElement<BaseField = F::BaseField> + ExtensionOf<F>,
{
    /// The specialisation of a one-value boundary constraint.
    fn new(source: &winterfell::BoundaryConstraint<F, E>) -> Self {
        debug_assert!(source.poly().len() == 1, "not a single value constraint");
        SingleValueConstraint {
            column: source.column(),
            value: source.poly()[0],
            coefficient: *source.cc(),
        }
    }

    /// The composed constraint at a state.
    fn evaluate(&self, state: &[F]) -> E {
        let evaluation = state[self.column] - self.value;
        self.coefficient.mul_base(evaluation)
    }
}

/// `cc * (p(x) - b(x * offset))` with `b` a polynomial of small degree, evaluated on the fly.
struct SmallPolyConstraint<F: FieldElement, E: ExtensionOf<F>> {
    column: usize,
    poly: Vec<F>,
    x_offset: F::BaseField,
    coefficient: E,
}

impl<F, E> SmallPolyConstraint<F, E>
where
    F: FieldElement,
    E: FieldElement<BaseField = F::BaseField> + ExtensionOf<F>,
{
    /// The specialisation of a boundary constraint with a small value polynomial.
    fn new(source: &winterfell::BoundaryConstraint<F, E>) -> Self {
        debug_assert!(
            source.poly().len() > 1 && source.poly().len() < SMALL_POLY_DEGREE,
            "not a small poly constraint"
        );
        SmallPolyConstraint {
            column: source.column(),
            poly: source.poly().to_vec(),
            x_offset: source.poly_offset().1,
            coefficient: *source.cc(),
        }
    }

    /// The composed constraint at a state whose domain point is `x` (Horner evaluation of the
    /// value polynomial at `x * offset`).
    fn evaluate(&self, state: &[F], x: F::BaseField) -> E {
        let x = x * self.x_offset;
        let assertion_value = self
            .poly
            .iter()
            .rev()
            .fold(F::ZERO, |acc, &coeff| acc.mul_base(x) + coeff);
        let evaluation = state[self.column] - assertion_value;
        self.coefficient.mul_base(evaluation)
    }
}

/// `cc * (p(x) - b(x))` with `b` a large polynomial evaluated over the whole constraint
/// evaluation domain up front.
struct LargePolyConstraint<F: FieldElement, E: ExtensionOf<F>> {
    column: usize,
    values: Vec<F>,
    step_offset: usize,
    coefficient: E,
}

impl<F, E> LargePolyConstraint<F, E>
where
    F: FieldElement,
    E: FieldElement<BaseField = F::BaseField> + ExtensionOf<F>,
{
    /// The specialisation of a boundary constraint with a large value polynomial: its
    /// evaluations over the constraint evaluation domain (twiddles shared by size).
    fn new<A: Air<BaseField = F::BaseField>>(
        source: &winterfell::BoundaryConstraint<F, E>,
        air: &A,
        twiddle_map: &mut BTreeMap<usize, Vec<F::BaseField>>,
    ) -> Self {
        debug_assert!(
            source.poly().len() >= SMALL_POLY_DEGREE,
            "not a large poly constraint"
        );
        let poly_length = source.poly().len();
        let twiddles = twiddle_map
            .entry(poly_length)
            .or_insert_with(|| fft::get_twiddles(poly_length));
        let values = fft::evaluate_poly_with_offset(
            source.poly(),
            twiddles,
            air.domain_offset(),
            air.ce_domain_size() / poly_length,
        );
        LargePolyConstraint {
            column: source.column(),
            values,
            step_offset: source.poly_offset().0 * air.ce_blowup_factor(),
            coefficient: *source.cc(),
        }
    }

    /// The composed constraint at step `ce_step` of the constraint evaluation domain; an
    /// assertion starting at a step other than 0 reads its value polynomial shifted back by
    /// that many steps.
    fn evaluate(&self, state: &[F], ce_step: usize) -> E {
        let value_index = if self.step_offset > ce_step {
            self.values.len() + ce_step - self.step_offset
        } else {
            ce_step - self.step_offset
        };
        let evaluation = state[self.column] - self.values[value_index];
        self.coefficient.mul_base(evaluation)
    }
}
