//! The accelerated prover on the CUDA kernels produces proofs byte-identical to stock
//! winterfell's: both AIRs, both hashes, both presets, fresh random inputs.
//!
//! Without a CUDA driver (or NVRTC, or a device) every test prints "skipped: no CUDA driver"
//! to stderr and returns, unless `EPA_REQUIRE_CUDA=1` is set: then it fails (the GPU suite,
//! scripts/gpu-suite.sh, sets it).

use std::sync::Arc;

use epa_prover::accel::cuda;
use epa_prover::envelope::verify_envelope;
use epa_prover::options::{HashId, OptionsChoice, Preset};
use epa_prover::registry::{self, ProveRequest};
use epa_prover::workload::{SmtWorkload, random_word};
use kernels::CudaBackend;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Environment variable that turns a missing driver into a failure.
const REQUIRE_ENV: &str = "EPA_REQUIRE_CUDA";

/// The process's shared CUDA backend, or `None` (after saying so) when this host has none.
fn gpu() -> Option<Arc<CudaBackend>> {
    match cuda::shared() {
        Ok(b) => Some(b),
        Err(e) => {
            assert!(
                !std::env::var(REQUIRE_ENV).is_ok_and(|v| v.trim() == "1"),
                "{REQUIRE_ENV}=1 but the CUDA backend is unavailable: {e}"
            );
            eprintln!("skipped: no CUDA driver ({e})");
            None
        }
    }
}

fn fresh_rng() -> ChaCha20Rng {
    let seed = std::env::var("EPA_TEST_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("seed {seed} (replay with EPA_TEST_SEED={seed})");
    ChaCha20Rng::seed_from_u64(seed)
}

fn assert_same_as_stock(
    request: &ProveRequest,
    options: OptionsChoice,
    hash: HashId,
    gpu: Arc<CudaBackend>,
    what: &str,
) {
    let ours = cuda::prove(request, options, hash, gpu).expect("CUDA proof");
    let stock = registry::prove_stock(request, options, hash).expect("stock proof");
    assert_eq!(
        ours.proof,
        stock.proof,
        "{what}: {} {hash:?}: proof bytes differ from stock winterfell",
        request.air()
    );
    let bytes = ours.to_bytes().expect("envelope");
    assert_eq!(bytes, stock.to_bytes().expect("envelope"));
    verify_envelope(&bytes).expect("the CUDA proof verifies");
}

#[test]
fn cuda_proofs_are_byte_identical_to_stock() {
    let Some(gpu) = gpu() else { return };
    let mut rng = fresh_rng();
    let mut workload = SmtWorkload::new(8, rng.r#gen()).expect("workload");
    let requests = [
        ProveRequest::RescueChain {
            seed: random_word(&mut rng),
            steps: 8,
        },
        ProveRequest::SmtUpdate {
            depth: 8,
            witnesses: workload.next_batch(2).expect("witnesses"),
        },
    ];
    for request in &requests {
        for hash in [HashId::Rp64_256, HashId::Blake3_256] {
            for preset in [Preset::Fast96, Preset::Secure128] {
                assert_same_as_stock(
                    request,
                    preset.into(),
                    hash,
                    Arc::clone(&gpu),
                    &format!("{preset:?}"),
                );
            }
        }
    }
}

/// A longer trace: the LDE domain spans several shared-memory passes of the NTT kernels.
#[test]
fn a_longer_rescue_chain_is_byte_identical_to_stock() {
    let Some(gpu) = gpu() else { return };
    let mut rng = fresh_rng();
    let request = ProveRequest::RescueChain {
        seed: random_word(&mut rng),
        steps: 1 << 12,
    };
    assert_same_as_stock(
        &request,
        Preset::Fast96.into(),
        HashId::Rp64_256,
        gpu,
        "2^12 steps",
    );
}
