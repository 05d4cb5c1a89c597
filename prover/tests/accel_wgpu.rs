//! The accelerated prover on the wgpu kernels (Mesa's lavapipe in CI) produces proofs
//! byte-identical to stock winterfell's: both AIRs, both hashes, small sizes; with a tiny
//! buffer budget the chunked kernels give the same bytes; a lost device degrades to the CPU.
//!
//! Without an adapter every test prints "skipped: no Vulkan adapter" to stderr and passes,
//! unless `EPA_REQUIRE_WGPU=1` is set: then a missing adapter fails the run.

#![cfg(feature = "wgpu")]

use std::sync::{Arc, Mutex, MutexGuard};

use epa_prover::accel::cpu_fallbacks_total;
use epa_prover::envelope::verify_envelope;
use epa_prover::options::{HashId, OptionsChoice, Preset};
use epa_prover::registry::{self, ProveRequest, ProverBackend};
use epa_prover::workload::{SmtWorkload, random_word};
use kernels::WgpuBackend;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Environment variable that turns a missing adapter into a failure.
const REQUIRE_ENV: &str = "EPA_REQUIRE_WGPU";

/// The process's shared wgpu backend, or `None` (after saying so) when this host has none.
fn gpu() -> Option<Arc<WgpuBackend>> {
    match registry::shared_wgpu() {
        Ok(b) => Some(b),
        Err(e) => {
            assert!(
                !std::env::var(REQUIRE_ENV).is_ok_and(|v| v.trim() == "1"),
                "{REQUIRE_ENV}=1 but the wgpu backend is unavailable: {e}"
            );
            eprintln!("skipped: no Vulkan adapter ({e})");
            None
        }
    }
}

/// Serialises the tests of this file: they read the process-wide fallback counter and one of
/// them replaces the shared device.
fn counter_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn requests(rng: &mut ChaCha20Rng) -> Vec<ProveRequest> {
    let mut workload = SmtWorkload::new(8, rng.r#gen()).expect("workload");
    vec![
        ProveRequest::RescueChain {
            seed: random_word(rng),
            steps: 8,
        },
        ProveRequest::SmtUpdate {
            depth: 8,
            witnesses: workload.next_batch(1).expect("witnesses"),
        },
    ]
}

fn assert_same_as_stock(
    request: &ProveRequest,
    options: OptionsChoice,
    hash: HashId,
    gpu: Arc<WgpuBackend>,
    what: &str,
) {
    let ours = registry::prove_on_wgpu(request, options, hash, gpu).expect("wgpu proof");
    let stock = registry::prove_stock(request, options, hash).expect("stock proof");
    assert_eq!(
        ours.proof,
        stock.proof,
        "{what}: {} {hash:?}: proof bytes differ from stock winterfell",
        request.air()
    );
    let bytes = ours.to_bytes().expect("envelope");
    assert_eq!(bytes, stock.to_bytes().expect("envelope"));
    verify_envelope(&bytes).expect("the wgpu proof verifies");
}

#[test]
fn wgpu_proofs_are_byte_identical_to_stock() {
    let _serial = counter_lock();
    let Some(gpu) = gpu() else { return };
    let before = cpu_fallbacks_total();
    let mut rng = fresh_rng();
    for request in requests(&mut rng) {
        for hash in [HashId::Rp64_256, HashId::Blake3_256] {
            assert_same_as_stock(
                &request,
                Preset::Fast96.into(),
                hash,
                Arc::clone(&gpu),
                "fast-96",
            );
        }
    }
    // The cubic-extension preset once (composition rows of 3 base elements per column).
    let chain = ProveRequest::RescueChain {
        seed: random_word(&mut rng),
        steps: 8,
    };
    assert_same_as_stock(
        &chain,
        Preset::Secure128.into(),
        HashId::Blake3_256,
        Arc::clone(&gpu),
        "secure-128",
    );
    assert_eq!(
        cpu_fallbacks_total(),
        before,
        "a healthy device needs no CPU fallback"
    );
}

/// A budget far below the work makes every kernel split its buffers into chunks (column
/// groups, row ranges); the proofs do not change.
#[test]
fn a_tiny_buffer_budget_chunks_the_work_and_keeps_the_bytes() {
    let _serial = counter_lock();
    if gpu().is_none() {
        return;
    }
    let small = Arc::new(
        WgpuBackend::new()
            .expect("a second device on the adapter found above")
            .with_buffer_budget(4096),
    );
    assert_eq!(small.buffer_budget(), 4096);
    let before = cpu_fallbacks_total();
    let mut rng = fresh_rng();
    for request in requests(&mut rng) {
        for hash in [HashId::Rp64_256, HashId::Blake3_256] {
            assert_same_as_stock(
                &request,
                Preset::Fast96.into(),
                hash,
                Arc::clone(&small),
                "4 KiB budget",
            );
        }
    }
    assert_eq!(
        cpu_fallbacks_total(),
        before,
        "the chunked kernels ran on the device, not on the CPU fallback"
    );
}

/// A device lost before the proof: every step is redone on the CPU kernels, counted, and the
/// proof is still byte-identical.
#[test]
fn a_lost_device_falls_back_to_the_cpu() {
    let _serial = counter_lock();
    if gpu().is_none() {
        return;
    }
    let lost = Arc::new(WgpuBackend::new().expect("a second device on the adapter found above"));
    lost.destroy();
    let mut rng = fresh_rng();
    let request = ProveRequest::RescueChain {
        seed: random_word(&mut rng),
        steps: 8,
    };
    let before = cpu_fallbacks_total();
    assert_same_as_stock(
        &request,
        Preset::Fast96.into(),
        HashId::Blake3_256,
        lost,
        "lost device",
    );
    // The main trace, the constraint commitment and the FRI layer commitments (one step)
    // moved to the CPU.
    assert_eq!(cpu_fallbacks_total(), before + 3);
    let reason = epa_prover::accel::last_cpu_fallback().expect("recorded");
    assert!(reason.contains("device lost"), "{reason}");
}

/// A lost shared device is replaced by a fresh one on the next call, and proofs on it need no
/// fallback.
#[test]
fn a_lost_shared_device_is_reopened() {
    let _serial = counter_lock();
    let Some(first) = gpu() else { return };
    first.destroy();
    assert!(first.is_lost());
    let second = registry::shared_wgpu().expect("the adapter is still there");
    assert!(!second.is_lost());
    assert!(!Arc::ptr_eq(&first, &second));
    let before = cpu_fallbacks_total();
    let request = ProveRequest::RescueChain {
        seed: random_word(&mut fresh_rng()),
        steps: 8,
    };
    assert_same_as_stock(
        &request,
        Preset::Fast96.into(),
        HashId::Rp64_256,
        second,
        "reopened device",
    );
    assert_eq!(cpu_fallbacks_total(), before);
}

/// `probe` finds the wgpu backend on this host and `pick_backend` prefers it when allowed.
#[test]
fn probe_reports_wgpu_and_pick_prefers_it() {
    let _serial = counter_lock();
    if gpu().is_none() {
        return;
    }
    let probed = registry::probe();
    assert_eq!(probed.first().map(|p| p.backend), Some(ProverBackend::Cpu));
    let wgpu = probed
        .iter()
        .find(|p| p.backend == ProverBackend::Wgpu)
        .expect("probe lists wgpu when an adapter opens");
    assert_eq!(wgpu.info.name, "wgpu");
    assert!(wgpu.info.capabilities.merkle_blake3 && wgpu.info.capabilities.merkle_rp64_256);
    assert_eq!(wgpu.software, gpu().expect("checked above").is_software());
    // A real GPU is preferred; a software one (lavapipe in CI) is not.
    let preferred = if wgpu.software {
        ProverBackend::Cpu
    } else {
        ProverBackend::Wgpu
    };
    assert_eq!(
        registry::pick_backend(&["cpu", "wgpu", "cuda"], &probed),
        preferred
    );
    assert_eq!(
        registry::pick_backend(&["cpu"], &probed),
        ProverBackend::Cpu
    );
    // The registry's own wgpu path gives stock bytes too.
    let request = ProveRequest::RescueChain {
        seed: random_word(&mut fresh_rng()),
        steps: 8,
    };
    let ours = registry::prove_on(
        &request,
        Preset::Fast96.into(),
        HashId::Rp64_256,
        ProverBackend::Wgpu,
    )
    .expect("wgpu proof");
    let stock = registry::prove_stock(&request, Preset::Fast96.into(), HashId::Rp64_256)
        .expect("stock proof");
    assert_eq!(ours.proof, stock.proof);
}

/// A generator from a fresh seed, printed so that a failure can be replayed (`EPA_TEST_SEED`).
fn fresh_rng() -> ChaCha20Rng {
    let seed = std::env::var("EPA_TEST_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("seed {seed} (replay with EPA_TEST_SEED={seed})");
    ChaCha20Rng::seed_from_u64(seed)
}
