//! The parallel constraint evaluator computes exactly what winterfell's
//! `DefaultConstraintEvaluator` computes: both evaluate the same trace LDE over the same domain
//! with the same random composition coefficients, and the composition traces are compared
//! element for element and Montgomery word for word, in a 1-thread and a 4-thread rayon pool.
//! Covered: both EPA AIRs (periodic columns, single-value assertions) over the base field and
//! the quadratic and cubic extensions, and a small test AIR with an auxiliary segment and small
//! and large polynomial (sequence) assertions, which the EPA AIRs do not have.

use epa_prover::accel::evaluator::{ParallelConstraintEvaluator, fragment_count};
use epa_prover::air::rescue_chain::{self, RescueChainAir};
use epa_prover::air::smt_update::{self, SmtUpdateAir, SmtUpdatePublicInputs};
use epa_prover::workload::{SmtWorkload, random_word};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_crypto::hashers::Blake3_256;
use winter_crypto::{DefaultRandomCoin, MerkleTree, RandomCoin};
use winter_math::fields::f64::BaseElement;
use winter_math::fields::{CubeExtension, QuadExtension};
use winter_math::{ExtensionOf, FieldElement};
use winterfell::matrix::ColMatrix;
use winterfell::{
    Air, AirContext, Assertion, AuxRandElements, BatchingMethod, ConstraintEvaluator,
    DefaultConstraintEvaluator, DefaultTraceLde, EvaluationFrame, FieldExtension, PartitionOptions,
    ProofOptions, StarkDomain, Trace, TraceInfo, TraceLde, TransitionConstraintDegree,
};

type Hash = Blake3_256<BaseElement>;
type Lde<E> = DefaultTraceLde<E, Hash, MerkleTree<Hash>>;

fn options(extension: FieldExtension) -> ProofOptions {
    ProofOptions::new(
        20,
        8,
        0,
        extension,
        4,
        7,
        BatchingMethod::Linear,
        BatchingMethod::Linear,
    )
}

fn random_base(rng: &mut ChaCha20Rng) -> BaseElement {
    BaseElement::new(rng.r#gen())
}

/// Random composition coefficients for `air`, drawn from a coin with a fresh random seed.
fn coefficients<A, E>(
    air: &A,
    rng: &mut ChaCha20Rng,
) -> winterfell::ConstraintCompositionCoefficients<E>
where
    A: Air<BaseField = BaseElement>,
    E: FieldElement<BaseField = BaseElement>,
{
    let seed: Vec<BaseElement> = (0..4).map(|_| random_base(rng)).collect();
    let mut coin = DefaultRandomCoin::<Hash>::new(&seed);
    air.get_constraint_composition_coefficients(&mut coin)
        .expect("a fresh coin draws the coefficients")
}

/// Evaluates `air`'s constraints over `lde` with winterfell's evaluator and with ours in a
/// 1-thread and a 4-thread pool (winterfell's too, so that winter-math's own thread-dependent
/// batching is the same on both sides) and checks the composition traces are identical.
fn assert_same_evaluations<A, E>(
    air: &A,
    lde: &Lde<E>,
    domain: &StarkDomain<BaseElement>,
    aux_rand: Option<AuxRandElements<E>>,
    rng: &mut ChaCha20Rng,
) where
    A: Air<BaseField = BaseElement>,
    E: FieldElement<BaseField = BaseElement>,
{
    let coefficients = coefficients::<A, E>(air, rng);
    for threads in [1, 4] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a small rayon pool builds");
        let (stock, ours) = pool.install(|| {
            let stock =
                DefaultConstraintEvaluator::new(air, aux_rand.clone(), coefficients.clone())
                    .evaluate(lde, domain)
                    .into_inner();
            let ours =
                ParallelConstraintEvaluator::new(air, aux_rand.clone(), coefficients.clone())
                    .evaluate(lde, domain)
                    .into_inner();
            (stock, ours)
        });
        assert_eq!(stock.len(), domain.ce_domain_size());
        assert_eq!(ours.len(), stock.len(), "{threads} threads: lengths differ");
        if let Some(i) = (0..stock.len()).find(|&i| ours[i] != stock[i]) {
            panic!(
                "{threads} threads, extension degree {}: row {i} is {} but winterfell has {}",
                E::EXTENSION_DEGREE,
                ours[i],
                stock[i]
            );
        }
        assert_eq!(
            E::elements_as_bytes(&ours),
            E::elements_as_bytes(&stock),
            "{threads} threads: the same values in other Montgomery words"
        );
        // the constraints are not trivially zero: the comparison means something
        assert!(stock.iter().any(|v| *v != E::ZERO));
    }
}

/// Builds the LDE of `main` for `air` and compares both evaluators over it.
fn check_main_only<A, E>(air: &A, main: &ColMatrix<BaseElement>, rng: &mut ChaCha20Rng)
where
    A: Air<BaseField = BaseElement>,
    E: FieldElement<BaseField = BaseElement>,
{
    let domain = StarkDomain::new(air);
    let (lde, _) = Lde::<E>::new(air.trace_info(), main, &domain, PartitionOptions::default());
    assert_same_evaluations::<A, E>(air, &lde, &domain, None, rng);
}

#[test]
fn rescue_chain_matches_winterfell() {
    let mut rng = ChaCha20Rng::from_entropy();
    // 16 merges: 128 rows, a 1024-row constraint evaluation domain (4 fragments on 4 threads)
    let (trace, pub_inputs) = rescue_chain::build_trace(random_word(&mut rng), 16).unwrap();
    for (extension, degree) in [
        (FieldExtension::None, 1),
        (FieldExtension::Quadratic, 2),
        (FieldExtension::Cubic, 3),
    ] {
        let air = RescueChainAir::new(trace.info().clone(), pub_inputs, options(extension));
        assert!(fragment_count(air.ce_domain_size(), 4) > 1);
        match degree {
            1 => check_main_only::<_, BaseElement>(&air, trace.main_segment(), &mut rng),
            2 => check_main_only::<_, QuadExtension<BaseElement>>(
                &air,
                trace.main_segment(),
                &mut rng,
            ),
            _ => check_main_only::<_, CubeExtension<BaseElement>>(
                &air,
                trace.main_segment(),
                &mut rng,
            ),
        }
    }
}

#[test]
fn smt_update_matches_winterfell() {
    let mut rng = ChaCha20Rng::from_entropy();
    let depth = 8;
    let mut workload = SmtWorkload::new(depth, rng.r#gen()).unwrap();
    let witnesses = workload.next_batch(2).unwrap();
    let trace = smt_update::build_trace(depth, &witnesses).unwrap();
    let pub_inputs = SmtUpdatePublicInputs::from_witnesses(depth, &witnesses).unwrap();
    for extension in [
        FieldExtension::None,
        FieldExtension::Quadratic,
        FieldExtension::Cubic,
    ] {
        let air = SmtUpdateAir::new(trace.info().clone(), pub_inputs.clone(), options(extension));
        assert!(fragment_count(air.ce_domain_size(), 4) > 1);
        match extension {
            FieldExtension::None => {
                check_main_only::<_, BaseElement>(&air, trace.main_segment(), &mut rng)
            }
            FieldExtension::Quadratic => check_main_only::<_, QuadExtension<BaseElement>>(
                &air,
                trace.main_segment(),
                &mut rng,
            ),
            FieldExtension::Cubic => check_main_only::<_, CubeExtension<BaseElement>>(
                &air,
                trace.main_segment(),
                &mut rng,
            ),
        }
    }
}

// A TEST AIR WITH AN AUXILIARY SEGMENT AND SEQUENCE ASSERTIONS
// ================================================================================================

/// Rows of the test trace: a 1024-row constraint evaluation domain at degree 2.
const TEST_LEN: usize = 512;
/// The period of the test AIR's periodic column.
const PERIOD: usize = 4;
/// Stride of the large sequence assertion: `TEST_LEN / LARGE_STRIDE = 64` values, more than
/// winterfell's small-polynomial limit.
const LARGE_STRIDE: usize = 8;
/// Stride of the small sequence assertion: 4 values.
const SMALL_STRIDE: usize = 128;

/// What the test AIR asserts: the initial state, a periodic column and the asserted sequences.
#[derive(Clone)]
struct TestInputs {
    x0: BaseElement,
    y0: BaseElement,
    periodic: Vec<BaseElement>,
    /// `x` at steps `2, 130, 258, 386`.
    small: Vec<BaseElement>,
    /// `y` at steps `1, 9, 17, ...` (starts off step 0).
    large: Vec<BaseElement>,
}

impl winterfell::math::ToElements<BaseElement> for TestInputs {
    fn to_elements(&self) -> Vec<BaseElement> {
        vec![self.x0, self.y0]
    }
}

/// Main columns `x, y` with `x' = x + y * p` (p periodic) and `y' = y^2 + 1`; one auxiliary
/// column `z` with `z' = z * (x + alpha)` and `z_0 = 1`.
struct TestAir {
    context: AirContext<BaseElement>,
    inputs: TestInputs,
}

impl Air for TestAir {
    type BaseField = BaseElement;
    type PublicInputs = TestInputs;

    fn new(trace_info: TraceInfo, inputs: TestInputs, options: ProofOptions) -> Self {
        let main = vec![
            TransitionConstraintDegree::with_cycles(1, vec![PERIOD]),
            TransitionConstraintDegree::new(2),
        ];
        let aux = vec![TransitionConstraintDegree::new(2)];
        let context = AirContext::new_multi_segment(trace_info, main, aux, 4, 1, options);
        TestAir { context, inputs }
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
        let (c, n) = (frame.current(), frame.next());
        result[0] = n[0] - (c[0] + c[1] * periodic_values[0]);
        result[1] = n[1] - (c[1] * c[1] + E::ONE);
    }

    fn evaluate_aux_transition<F, E>(
        &self,
        main_frame: &EvaluationFrame<F>,
        aux_frame: &EvaluationFrame<E>,
        _periodic_values: &[F],
        aux_rand_elements: &AuxRandElements<E>,
        result: &mut [E],
    ) where
        F: FieldElement<BaseField = BaseElement>,
        E: FieldElement<BaseField = BaseElement> + ExtensionOf<F>,
    {
        let alpha = aux_rand_elements.rand_elements()[0];
        let x = E::from(main_frame.current()[0]);
        result[0] = aux_frame.next()[0] - aux_frame.current()[0] * (x + alpha);
    }

    fn get_assertions(&self) -> Vec<Assertion<BaseElement>> {
        vec![
            Assertion::single(0, 0, self.inputs.x0),
            Assertion::single(1, 0, self.inputs.y0),
            Assertion::sequence(0, 2, SMALL_STRIDE, self.inputs.small.clone()),
            Assertion::sequence(1, 1, LARGE_STRIDE, self.inputs.large.clone()),
        ]
    }

    fn get_aux_assertions<E: FieldElement<BaseField = BaseElement>>(
        &self,
        _aux_rand_elements: &AuxRandElements<E>,
    ) -> Vec<Assertion<E>> {
        vec![Assertion::single(0, 0, E::ONE)]
    }

    fn get_periodic_column_values(&self) -> Vec<Vec<BaseElement>> {
        vec![self.inputs.periodic.clone()]
    }
}

/// A random valid main trace of the test AIR and its public inputs.
fn test_trace(rng: &mut ChaCha20Rng) -> (ColMatrix<BaseElement>, TestInputs) {
    let periodic: Vec<BaseElement> = (0..PERIOD).map(|_| random_base(rng)).collect();
    let (x0, y0) = (random_base(rng), random_base(rng));
    let (mut x, mut y) = (vec![x0], vec![y0]);
    for i in 0..TEST_LEN - 1 {
        x.push(x[i] + y[i] * periodic[i % PERIOD]);
        y.push(y[i] * y[i] + BaseElement::ONE);
    }
    let small = x.iter().skip(2).step_by(SMALL_STRIDE).copied().collect();
    let large = y.iter().skip(1).step_by(LARGE_STRIDE).copied().collect();
    let inputs = TestInputs {
        x0,
        y0,
        periodic,
        small,
        large,
    };
    (ColMatrix::new(vec![x, y]), inputs)
}

/// The auxiliary column of the test trace: `z_0 = 1`, `z' = z * (x + alpha)`.
fn test_aux_trace<E: FieldElement<BaseField = BaseElement>>(
    main: &ColMatrix<BaseElement>,
    alpha: E,
) -> ColMatrix<E> {
    let mut z = vec![E::ONE];
    for i in 0..TEST_LEN - 1 {
        z.push(z[i] * (E::from(main.get(0, i)) + alpha));
    }
    ColMatrix::new(vec![z])
}

fn check_test_air<E: FieldElement<BaseField = BaseElement>>(
    extension: FieldExtension,
    rng: &mut ChaCha20Rng,
) {
    let (main, inputs) = test_trace(rng);
    let trace_info = TraceInfo::new_multi_segment(2, 1, 1, TEST_LEN, Vec::new());
    let air = TestAir::new(trace_info.clone(), inputs, options(extension));
    assert!(fragment_count(air.ce_domain_size(), 4) > 1);
    let domain = StarkDomain::new(&air);
    let (mut lde, _) = Lde::<E>::new(&trace_info, &main, &domain, PartitionOptions::default());
    // a random extension element from random base-field coordinates
    let coordinates: Vec<BaseElement> =
        (0..E::EXTENSION_DEGREE).map(|_| random_base(rng)).collect();
    let alpha = E::slice_from_base_elements(&coordinates)[0];
    lde.set_aux_trace(&test_aux_trace(&main, alpha), &domain);
    assert_same_evaluations::<TestAir, E>(
        &air,
        &lde,
        &domain,
        Some(AuxRandElements::new(vec![alpha])),
        rng,
    );
}

#[test]
fn auxiliary_segment_and_sequence_assertions_match_winterfell() {
    let mut rng = ChaCha20Rng::from_entropy();
    check_test_air::<BaseElement>(FieldExtension::None, &mut rng);
    check_test_air::<QuadExtension<BaseElement>>(FieldExtension::Quadratic, &mut rng);
    check_test_air::<CubeExtension<BaseElement>>(FieldExtension::Cubic, &mut rng);
}

proptest! {
    /// Fragments tile the domain: a power of two of them, each at least 16 rows, one per thread
    /// rounded up to a power of two where the domain is large enough.
    #[test]
    fn fragments_tile_the_domain(log_size in 4u32..24, threads in 1usize..200) {
        let size = 1usize << log_size;
        let n = fragment_count(size, threads);
        prop_assert!(n.is_power_of_two());
        prop_assert_eq!(size % n, 0);
        prop_assert!(size / n >= 16);
        prop_assert!(n <= threads.next_power_of_two());
        if size >= 1024 {
            prop_assert_eq!(n, threads.next_power_of_two().min(size / 16));
        } else {
            prop_assert_eq!(n, 1);
        }
    }
}
