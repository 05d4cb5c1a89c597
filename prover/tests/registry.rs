//! Registry dispatch by name and wire id, and the `ProverComponents` hook: a wrapped backend
//! produces the same proof bytes as winterfell's defaults.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use epa_prover::Error;
use epa_prover::air::rescue_chain::{Word, reference_chain};
use epa_prover::air::smt_update::SmtUpdatePublicInputs;
use epa_prover::envelope::verify_envelope;
use epa_prover::options::{HashId, Preset};
use epa_prover::prover::{DefaultComponents, ProverComponents};
use epa_prover::registry::{self, AirId, ProveRequest, Statement};
use epa_prover::workload::SmtWorkload;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_crypto::hashers::{Blake3_256, Rp64_256};
use winter_crypto::{DefaultRandomCoin, ElementHasher, MerkleTree};
use winter_math::FieldElement;
use winter_math::fields::f64::BaseElement;
use winterfell::matrix::ColMatrix;
use winterfell::{
    Air, AuxRandElements, CompositionPoly, CompositionPolyTrace, ConstraintCompositionCoefficients,
    DefaultConstraintCommitment, DefaultConstraintEvaluator, DefaultTraceLde, PartitionOptions,
    StarkDomain, TraceInfo, TracePolyTable,
};

#[test]
fn air_names_and_wire_ids_round_trip() {
    for air in AirId::ALL {
        assert_eq!(air.name().parse::<AirId>().unwrap(), air);
        assert_eq!(AirId::from_wire_id(air.wire_id()).unwrap(), air);
    }
    assert_eq!("rescue-chain".parse::<AirId>().unwrap(), AirId::RescueChain);
    assert_eq!("smt-update".parse::<AirId>().unwrap(), AirId::SmtUpdate);
    assert!(matches!(
        "fib".parse::<AirId>(),
        Err(Error::UnknownAir { .. })
    ));
    assert!(matches!(
        AirId::from_wire_id(0),
        Err(Error::UnknownAir { .. })
    ));
}

#[test]
fn dispatch_by_name_and_hash() {
    let mut rng = ChaCha20Rng::from_entropy();
    let seed: Word = core::array::from_fn(|_| BaseElement::new(rng.gen_range(0..1u64 << 63)));
    for hash_name in ["blake3-256", "rp64-256"] {
        let hash: HashId = hash_name.parse().unwrap();
        let air: AirId = "rescue-chain".parse().unwrap();
        let request = ProveRequest::RescueChain { seed, steps: 16 };
        assert_eq!(request.air(), air);
        let env =
            registry::prove(&request, "fast-96".parse::<Preset>().unwrap().into(), hash).unwrap();
        assert_eq!((env.air, env.hash), (air, hash));
        let verified = registry::verify(&env).unwrap();
        assert_eq!(
            verified.statement,
            verify_envelope(&env.to_bytes().unwrap()).unwrap().statement
        );
        let Statement::RescueChain(pi) = verified.statement else {
            panic!("wrong statement")
        };
        assert_eq!(pi.result, reference_chain(seed, 16));
    }
}

/// A backend that delegates to winterfell's defaults and counts the factory calls, as an
/// accelerated backend would wrap its own types.
struct Counting<H> {
    inner: DefaultComponents<H>,
    calls: Arc<AtomicUsize>,
}

impl<H: ElementHasher<BaseField = BaseElement> + Send + Sync> ProverComponents for Counting<H> {
    type HashFn = H;
    type VC = MerkleTree<H>;
    type RandomCoin = DefaultRandomCoin<H>;
    type TraceLde<E>
        = DefaultTraceLde<E, H, MerkleTree<H>>
    where
        E: FieldElement<BaseField = BaseElement>;
    type ConstraintEvaluator<'a, A, E>
        = DefaultConstraintEvaluator<'a, A, E>
    where
        A: Air<BaseField = BaseElement> + 'a,
        E: FieldElement<BaseField = BaseElement>;
    type ConstraintCommitment<E>
        = DefaultConstraintCommitment<E, H, MerkleTree<H>>
    where
        E: FieldElement<BaseField = BaseElement>;

    fn new_trace_lde<E: FieldElement<BaseField = BaseElement>>(
        &self,
        trace_info: &TraceInfo,
        main_trace: &ColMatrix<BaseElement>,
        domain: &StarkDomain<BaseElement>,
        partition_options: PartitionOptions,
    ) -> (Self::TraceLde<E>, TracePolyTable<E>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner
            .new_trace_lde(trace_info, main_trace, domain, partition_options)
    }

    fn new_evaluator<'a, A, E>(
        &self,
        air: &'a A,
        aux_rand_elements: Option<AuxRandElements<E>>,
        composition_coefficients: ConstraintCompositionCoefficients<E>,
    ) -> Self::ConstraintEvaluator<'a, A, E>
    where
        A: Air<BaseField = BaseElement> + 'a,
        E: FieldElement<BaseField = BaseElement>,
    {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner
            .new_evaluator(air, aux_rand_elements, composition_coefficients)
    }

    fn build_constraint_commitment<E: FieldElement<BaseField = BaseElement>>(
        &self,
        composition_poly_trace: CompositionPolyTrace<E>,
        num_constraint_composition_columns: usize,
        domain: &StarkDomain<BaseElement>,
        partition_options: PartitionOptions,
    ) -> (Self::ConstraintCommitment<E>, CompositionPoly<E>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.build_constraint_commitment(
            composition_poly_trace,
            num_constraint_composition_columns,
            domain,
            partition_options,
        )
    }
}

fn check_swapped_components<H>()
where
    H: ElementHasher<BaseField = BaseElement> + Send + Sync + registry::NamedHash,
{
    let mut rng = ChaCha20Rng::from_entropy();
    let seed: Word = core::array::from_fn(|_| BaseElement::new(rng.gen_range(0..1u64 << 63)));
    let request = ProveRequest::RescueChain { seed, steps: 32 };
    let calls = Arc::new(AtomicUsize::new(0));
    let counting = Counting::<H> {
        inner: DefaultComponents::new(),
        calls: Arc::clone(&calls),
    };
    let swapped = registry::prove_with(&request, Preset::Fast96.into(), counting).unwrap();
    assert_eq!(
        calls.load(Ordering::Relaxed),
        3,
        "all three factories are used"
    );
    let stock = registry::prove(&request, Preset::Fast96.into(), H::ID).unwrap();
    assert_eq!(swapped, stock, "a backend must not change the proof bytes");
}

#[test]
fn swapped_components_give_identical_proofs() {
    check_swapped_components::<Blake3_256<BaseElement>>();
    check_swapped_components::<Rp64_256>();
}

#[test]
fn smt_update_dispatch_round_trip() {
    let seed = ChaCha20Rng::from_entropy().r#gen::<u64>();
    for hash in HashId::ALL {
        let mut workload = SmtWorkload::new(8, seed).unwrap();
        let before = workload.root();
        let witnesses = workload.next_batch(3).unwrap();
        let request = ProveRequest::SmtUpdate {
            depth: 8,
            witnesses,
        };
        let env = registry::prove(&request, Preset::Fast96.into(), hash).unwrap();
        let bytes = env.to_bytes().unwrap();
        let verified = verify_envelope(&bytes).unwrap();
        let Statement::SmtUpdate(pi) = &verified.statement else {
            panic!("wrong statement")
        };
        assert_eq!((pi.old_root(), pi.new_root()), (&before, &workload.root()));
        assert_eq!(pi.updates().len(), 3);
        // The same proof under the statement of another batch is rejected.
        let other = workload.next_batch(3).unwrap();
        let other_pi = SmtUpdatePublicInputs::from_witnesses(8, &other).unwrap();
        let mut forged = env.clone();
        forged.public_inputs = other_pi.to_bytes();
        assert!(matches!(
            registry::verify(&forged),
            Err(Error::Rejected { .. })
        ));
    }
}
