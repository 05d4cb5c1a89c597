//! The accelerated prover on the CUDA kernels produces proofs byte-identical to stock
//! winterfell's: both AIRs, both hashes, both presets, fresh random inputs.
//!
//! A libtest-style harness (`harness = false`, libtest-mimic): where the process's shared CUDA
//! backend cannot open for want of a driver (or NVRTC, or a device: `NoCuda`), every test is
//! reported as *ignored* and one line "skipped: no CUDA driver (<reason>)" goes to stderr;
//! running them anyway (`--ignored`) fails them. With `EPA_REQUIRE_CUDA=1` (the GPU suite,
//! scripts/gpu-suite.sh, sets it) a missing driver fails them instead; any other start-up
//! error fails them too.

use std::sync::Arc;

use epa_prover::Error;
use epa_prover::accel::cuda;
use epa_prover::envelope::verify_envelope;
use epa_prover::options::{HashId, OptionsChoice, Preset};
use epa_prover::registry::{self, ProveRequest};
use epa_prover::workload::{SmtWorkload, random_word};
use kernels::CudaBackend;
use libtest_mimic::{Arguments, Trial};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

#[path = "../../kernels/tests/support/cuda_harness.rs"]
mod cuda_harness;

use cuda_harness::Driver;

/// What opening the process's shared CUDA backend found, once for the whole run.
fn probe() -> Driver<CudaBackend> {
    match cuda::shared() {
        Ok(b) => Driver::Present(b),
        Err(Error::Backend(kernels::Error::NoCuda { detail, .. })) => Driver::Missing(detail),
        Err(e) => Driver::Broken(e.to_string()),
    }
}

/// The tests, by name; every one needs a device.
/// The body of a device test, given the shared backend.
type DeviceTest = fn(Arc<CudaBackend>);

const DEVICE_TESTS: &[(&str, DeviceTest)] = &[
    (
        "cuda_proofs_are_byte_identical_to_stock",
        cuda_proofs_are_byte_identical_to_stock,
    ),
    (
        "a_longer_rescue_chain_is_byte_identical_to_stock",
        a_longer_rescue_chain_is_byte_identical_to_stock,
    ),
];

fn main() {
    let args = Arguments::from_args();
    let driver = probe();
    let trials: Vec<Trial> = DEVICE_TESTS
        .iter()
        .map(|&(name, test)| driver.trial(name, test, false))
        .collect();
    driver.run(&args, trials)
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

fn cuda_proofs_are_byte_identical_to_stock(gpu: Arc<CudaBackend>) {
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
fn a_longer_rescue_chain_is_byte_identical_to_stock(gpu: Arc<CudaBackend>) {
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
