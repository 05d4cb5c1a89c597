//! The accelerated components produce byte-identical proofs to winterfell's defaults: both
//! AIRs, both hashes, several sizes, both presets (quadratic and cubic extension), with the
//! scalar and the AVX2 CPU kernels, on fresh random inputs.

use std::sync::Arc;

use epa_prover::accel::{AccelComponents, AccelHash};
use epa_prover::air::rescue_chain::{self, Word};
use epa_prover::air::smt_update;
use epa_prover::envelope::verify_envelope;
use epa_prover::options::{HashId, OptionsChoice, Preset};
use epa_prover::prover::DefaultComponents;
use epa_prover::registry::{self, ProveRequest};
use epa_prover::workload::{SmtWorkload, random_word};
use kernels::{CpuBackend, Isa};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_crypto::hashers::{Blake3_256, Rp64_256};
use winter_math::fields::f64::BaseElement;
use winterfell::{BatchingMethod, FieldExtension, ProofOptions};

/// The instruction sets to run: scalar always, AVX2 where this CPU has it.
fn backends() -> Vec<Arc<CpuBackend>> {
    let mut out = vec![Arc::new(CpuBackend::with_isa(Isa::Scalar).unwrap())];
    if Isa::best() != Isa::Scalar {
        out.push(Arc::new(CpuBackend::with_isa(Isa::Avx2).unwrap()));
    }
    out
}

fn requests(rng: &mut ChaCha20Rng) -> Vec<ProveRequest> {
    let mut out = Vec::new();
    for steps in [8u64, 32] {
        out.push(ProveRequest::RescueChain {
            seed: random_word(rng),
            steps,
        });
    }
    let mut workload = SmtWorkload::new(8, rng.r#gen()).unwrap();
    for count in [1usize, 3] {
        out.push(ProveRequest::SmtUpdate {
            depth: 8,
            witnesses: workload.next_batch(count).unwrap(),
        });
    }
    out
}

fn check_identical<H: AccelHash>(request: &ProveRequest, options: OptionsChoice) {
    let stock = registry::prove_with(request, options, DefaultComponents::<H>::new()).unwrap();
    let stock_bytes = stock.to_bytes().unwrap();
    for backend in backends() {
        let name = format!("{:?}", backend.isa());
        let ours =
            registry::prove_with(request, options, AccelComponents::<_, H>::new(backend)).unwrap();
        assert_eq!(
            ours.proof,
            stock.proof,
            "{} {:?} {name}: proof bytes differ",
            request.air(),
            H::ID
        );
        assert_eq!(ours.to_bytes().unwrap(), stock_bytes);
    }
    verify_envelope(&stock_bytes).unwrap();
}

#[test]
fn byte_identical_to_stock_for_both_airs_hashes_and_presets() {
    let mut rng = ChaCha20Rng::from_entropy();
    for request in requests(&mut rng) {
        for preset in [Preset::Fast96, Preset::Secure128] {
            check_identical::<Rp64_256>(&request, preset.into());
            check_identical::<Blake3_256<BaseElement>>(&request, preset.into());
        }
    }
}

/// Explicit options with several partitions take the host-hashing path of the commitment and
/// still match stock winterfell; a base-field-only proof (no extension) matches too.
#[test]
fn partitions_and_base_field_match_stock() {
    let mut rng = ChaCha20Rng::from_entropy();
    let seed: Word = random_word(&mut rng);
    let plain = |ext| {
        ProofOptions::new(
            20,
            8,
            0,
            ext,
            4,
            7,
            BatchingMethod::Linear,
            BatchingMethod::Linear,
        )
    };
    let cases = [
        plain(FieldExtension::Quadratic).with_partitions(2, 8),
        plain(FieldExtension::Cubic).with_partitions(4, 1),
        plain(FieldExtension::None),
    ];
    for options in cases {
        let (stock, _) = rescue_chain::prove(
            seed,
            16,
            options.clone(),
            DefaultComponents::<Rp64_256>::new(),
        )
        .unwrap();
        for backend in backends() {
            let (ours, _) = rescue_chain::prove(
                seed,
                16,
                options.clone(),
                AccelComponents::<_, Rp64_256>::new(backend),
            )
            .unwrap();
            assert_eq!(ours.to_bytes(), stock.to_bytes());
        }
    }
    let mut workload = SmtWorkload::new(8, rng.r#gen()).unwrap();
    let witnesses = workload.next_batch(2).unwrap();
    let options = plain(FieldExtension::Quadratic).with_partitions(3, 4);
    let (stock, _) = smt_update::prove(
        8,
        &witnesses,
        options.clone(),
        DefaultComponents::<Blake3_256<BaseElement>>::new(),
    )
    .unwrap();
    let (ours, _) = smt_update::prove(
        8,
        &witnesses,
        options,
        AccelComponents::<_, Blake3_256<BaseElement>>::cpu().unwrap(),
    )
    .unwrap();
    assert_eq!(ours.to_bytes(), stock.to_bytes());
}

/// The registry's default prover is the accelerated one and its proofs verify.
#[test]
fn registry_default_matches_stock() {
    let mut rng = ChaCha20Rng::from_entropy();
    let request = ProveRequest::RescueChain {
        seed: random_word(&mut rng),
        steps: 16,
    };
    for hash in [HashId::Blake3_256, HashId::Rp64_256] {
        let ours = registry::prove(&request, Preset::Fast96.into(), hash).unwrap();
        let stock = registry::prove_stock(&request, Preset::Fast96.into(), hash).unwrap();
        assert_eq!(ours.to_bytes().unwrap(), stock.to_bytes().unwrap());
        verify_envelope(&ours.to_bytes().unwrap()).unwrap();
    }
}
