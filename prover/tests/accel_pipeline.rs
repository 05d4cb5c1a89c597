//! The accelerated proof pipeline (`accel::pipeline`) produces stock winterfell's bytes.
//!
//! * Its FRI prover against winter-fri's `FriProver`, both driven by winter-fri's
//!   `DefaultProverChannel` on the same random evaluations: the layer commitments and the
//!   `FriProof` are equal, for every folding factor (2, 4, 8, 16), several remainder degrees,
//!   blowups and domain sizes, the three fields, both hashes, in a 1-thread and a 4-thread
//!   rayon pool (proptest).
//! * Whole proofs (`rescue-chain`) through `AccelComponents` (which route `prove_trace` into the
//!   pipeline) against `DefaultComponents` (stock `Prover::prove`): the same bytes for every
//!   folding factor, several remainder degrees, with grinding, both hashes, 1 and 4 threads,
//!   and no step redone on the CPU fallback.

use std::sync::Arc;

use epa_prover::accel::pipeline::fri::FriProver as AccelFriProver;
use epa_prover::accel::{AccelComponents, AccelHash, cpu_fallbacks_total};
use epa_prover::air::rescue_chain;
use epa_prover::prover::DefaultComponents;
use epa_prover::workload::random_word;
use kernels::{CpuBackend, Isa};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_crypto::hashers::{Blake3_256, Rp64_256};
use winter_crypto::{DefaultRandomCoin, MerkleTree};
use winter_fri::{DefaultProverChannel, FriOptions, FriProver};
use winter_math::fields::f64::BaseElement;
use winter_math::fields::{CubeExtension, QuadExtension};
use winter_math::{FieldElement, StarkField, fft};
use winter_utils::Serializable;
use winterfell::{BatchingMethod, FieldExtension, ProofOptions};

type Channel<E, H> = DefaultProverChannel<E, H, DefaultRandomCoin<H>>;

/// Runs `f` in a rayon pool of `threads` threads.
fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool builds")
        .install(f)
}

/// The CPU backends to commit on: scalar, and the widest instruction set of this CPU.
fn backends() -> Vec<Arc<CpuBackend>> {
    let mut out = vec![Arc::new(CpuBackend::with_isa(Isa::Scalar).expect("scalar"))];
    if Isa::best() != Isa::Scalar {
        out.push(Arc::new(
            CpuBackend::with_isa(Isa::best()).expect("best ISA"),
        ));
    }
    out
}

/// Evaluations over `GENERATOR * <g>` (|<g>| = `domain_size`) of a random polynomial of
/// degree below `domain_size / blowup`, as the DEEP composition polynomial hands FRI.
fn low_degree_evaluations<E>(rng: &mut ChaCha20Rng, domain_size: usize, blowup: usize) -> Vec<E>
where
    E: FieldElement<BaseField = BaseElement>,
{
    let degree_bound = domain_size / blowup;
    let coefficients: Vec<E> = (0..degree_bound * E::EXTENSION_DEGREE)
        .map(|_| BaseElement::new(rng.r#gen()))
        .collect::<Vec<_>>()
        .chunks_exact(E::EXTENSION_DEGREE)
        .map(|c| E::slice_from_base_elements(c)[0])
        .collect();
    let twiddles = fft::get_twiddles::<BaseElement>(degree_bound);
    fft::evaluate_poly_with_offset(&coefficients, &twiddles, BaseElement::GENERATOR, blowup)
}

/// Whether winter-fri can fold a domain of `domain_size` with these options: every layer
/// has at least two rows and the remainder at least one coefficient (otherwise both provers
/// panic the same way).
fn foldable(domain_size: usize, options: &FriOptions) -> bool {
    let max_remainder = (options.remainder_max_degree() + 1) * options.blowup_factor();
    let mut size = domain_size;
    while size > max_remainder {
        if size / options.folding_factor() < 2 {
            return false;
        }
        size /= options.folding_factor();
    }
    size >= options.blowup_factor()
}

/// Runs both FRI provers over the same evaluations and compares commitments and proofs.
fn same_fri<E, H>(seed: u64, domain_log: u32, options: &FriOptions, threads: usize)
where
    E: FieldElement<BaseField = BaseElement>,
    H: AccelHash,
{
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let domain_size = 1usize << domain_log;
    let evaluations = low_degree_evaluations::<E>(&mut rng, domain_size, options.blowup_factor());
    let num_queries = rng.gen_range(1..40);
    let nonce = rng.gen_range(0..1u64 << 20);

    let mut channel = Channel::<E, H>::new(domain_size, num_queries);
    let mut stock = FriProver::<E, Channel<E, H>, H, MerkleTree<H>>::new(options.clone());
    stock.build_layers(&mut channel, evaluations.clone());
    let mut positions = channel.draw_query_positions(nonce);
    positions.sort_unstable();
    positions.dedup();
    let stock_proof = stock.build_proof(&positions);
    let stock_commitments = channel.layer_commitments().to_vec();

    for backend in backends() {
        let (proof, commitments) = in_pool(threads, || {
            let mut channel = Channel::<E, H>::new(domain_size, num_queries);
            let mut ours = AccelFriProver::<E, Channel<E, H>, H, CpuBackend>::new(
                options.clone(),
                backend.as_ref(),
            );
            ours.build_layers(&mut channel, evaluations.clone());
            assert_eq!(ours.num_layers(), options.num_fri_layers(domain_size));
            let proof = ours.build_proof(&positions);
            assert_eq!(ours.num_layers(), 0, "build_proof clears the layers");
            (proof, channel.layer_commitments().to_vec())
        });
        let ctx = format!(
            "{:?} E={} N={} remainder degree {} blowup {} domain 2^{domain_log} {threads} threads",
            backend.isa(),
            E::EXTENSION_DEGREE,
            options.folding_factor(),
            options.remainder_max_degree(),
            options.blowup_factor(),
        );
        assert_eq!(commitments, stock_commitments, "{ctx}: layer commitments");
        assert_eq!(proof, stock_proof, "{ctx}: FRI proof");
        assert_eq!(proof.to_bytes(), stock_proof.to_bytes(), "{ctx}: bytes");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn fri_prover_matches_winter_fri(
        seed in any::<u64>(),
        folding_log in 1u32..=4,
        remainder_log in 0u32..=5,
        blowup_log in 1u32..=4,
        domain_log in 6u32..=12,
        field in 0usize..3,
        blake3 in any::<bool>(),
        threads in prop::sample::select(vec![1usize, 4]),
    ) {
        let options = FriOptions::new(
            1 << blowup_log,
            1 << folding_log,
            (1 << remainder_log) - 1,
        );
        prop_assume!(foldable(1 << domain_log, &options));
        match (field, blake3) {
            (0, false) => same_fri::<BaseElement, Rp64_256>(seed, domain_log, &options, threads),
            (1, false) => same_fri::<QuadExtension<BaseElement>, Rp64_256>(
                seed, domain_log, &options, threads,
            ),
            (_, false) => same_fri::<CubeExtension<BaseElement>, Rp64_256>(
                seed, domain_log, &options, threads,
            ),
            (0, true) => same_fri::<BaseElement, Blake3_256<BaseElement>>(
                seed, domain_log, &options, threads,
            ),
            (1, true) => same_fri::<QuadExtension<BaseElement>, Blake3_256<BaseElement>>(
                seed, domain_log, &options, threads,
            ),
            (_, true) => same_fri::<CubeExtension<BaseElement>, Blake3_256<BaseElement>>(
                seed, domain_log, &options, threads,
            ),
        }
    }
}

/// Every folding factor at least once with a layer of many rows, in each field.
#[test]
fn every_folding_factor_in_every_field() {
    let mut rng = ChaCha20Rng::from_entropy();
    for (folding, remainder_degree) in [(2, 0), (4, 7), (8, 3), (16, 15)] {
        let options = FriOptions::new(4, folding, remainder_degree);
        let seed = rng.r#gen();
        same_fri::<BaseElement, Rp64_256>(seed, 11, &options, 4);
        same_fri::<QuadExtension<BaseElement>, Blake3_256<BaseElement>>(seed, 11, &options, 1);
        same_fri::<CubeExtension<BaseElement>, Rp64_256>(seed, 11, &options, 4);
    }
}

/// Proof options of the whole-proof test: (extension, folding factor, remainder degree,
/// grinding bits, chain steps).
const PROOF_CASES: [(FieldExtension, usize, usize, u32, u64); 5] = [
    (FieldExtension::Quadratic, 2, 0, 6, 16),
    (FieldExtension::Cubic, 4, 7, 0, 16),
    (FieldExtension::Quadratic, 8, 3, 8, 16),
    (FieldExtension::None, 16, 31, 4, 16),
    (FieldExtension::Quadratic, 16, 0, 5, 32),
];

fn same_proofs<H: AccelHash>(rng: &mut ChaCha20Rng) {
    for (extension, folding, remainder_degree, grinding, steps) in PROOF_CASES {
        let options = ProofOptions::new(
            24,
            8,
            grinding,
            extension,
            folding,
            remainder_degree,
            BatchingMethod::Linear,
            BatchingMethod::Linear,
        );
        let seed = random_word(rng);
        let (stock, _) =
            rescue_chain::prove(seed, steps, options.clone(), DefaultComponents::<H>::new())
                .expect("stock proof");
        let stock = stock.to_bytes();
        for threads in [1, 4] {
            let fallbacks = cpu_fallbacks_total();
            let (ours, _) = in_pool(threads, || {
                rescue_chain::prove(
                    seed,
                    steps,
                    options.clone(),
                    AccelComponents::<_, H>::cpu().expect("CPU backend"),
                )
            })
            .expect("accelerated proof");
            assert_eq!(
                cpu_fallbacks_total(),
                fallbacks,
                "no step falls back to the CPU backend on the CPU backend"
            );
            assert!(
                ours.to_bytes() == stock,
                "{:?} {extension:?} N={folding} remainder degree {remainder_degree} \
                 grinding {grinding} {threads} threads: proof bytes differ",
                H::ID
            );
        }
    }
}

#[test]
fn whole_proofs_match_stock_with_rp64_256() {
    same_proofs::<Rp64_256>(&mut ChaCha20Rng::from_entropy());
}

#[test]
fn whole_proofs_match_stock_with_blake3() {
    same_proofs::<Blake3_256<BaseElement>>(&mut ChaCha20Rng::from_entropy());
}
