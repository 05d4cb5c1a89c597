use std::sync::atomic::{AtomicUsize, Ordering};

use crypto::kem::mlkem768::KeyPair;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::*;

/// Environment variable that turns a missing wgpu adapter into a failure.
const REQUIRE_ENV: &str = "EPA_REQUIRE_WGPU";

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(rand::random())
}

fn random_pair(rng: &mut ChaCha20Rng) -> KeyPair {
    let mut seed = [0u8; 64];
    rng.fill_bytes(&mut seed);
    KeyPair::from_seed(&seed)
}

/// `n` ciphertexts: honest encapsulations to `pair` and random bytes (implicit rejection).
fn ciphertexts(rng: &mut ChaCha20Rng, pair: &KeyPair, n: usize) -> Vec<Ciphertext> {
    (0..n)
        .map(|_| {
            if rng.r#gen::<bool>() {
                let mut m = [0u8; 32];
                rng.fill_bytes(&mut m);
                pair.encapsulation_key.encapsulate(&m).0
            } else {
                let mut bytes = vec![0u8; crypto::kem::mlkem768::CIPHERTEXT_LEN];
                rng.fill_bytes(&mut bytes);
                Ciphertext::from_bytes(&bytes).expect("exact ciphertext length")
            }
        })
        .collect()
}

/// The reference crate's secrets, one by one.
fn reference(dk: &DecapsulationKey, cts: &[Ciphertext]) -> Vec<[u8; 32]> {
    cts.iter()
        .map(|ct| *dk.decapsulate(ct).as_bytes())
        .collect()
}

fn bytes(secrets: &[SharedSecret]) -> Vec<[u8; 32]> {
    secrets.iter().map(|s| *s.as_bytes()).collect()
}

fn cpu() -> Option<Arc<kernels::CpuBackend>> {
    Some(Arc::new(
        kernels::CpuBackend::with_isa(kernels::Isa::best()).expect("the best ISA builds"),
    ))
}

fn decaps(m: &Metrics, label: &str) -> u64 {
    m.kem_decaps[label_index(label)].load(Ordering::Relaxed)
}

fn batches(m: &Metrics, label: &str) -> u64 {
    m.kem_batches[label_index(label)].load(Ordering::Relaxed)
}

/// How a test double behaves.
#[derive(Clone, Copy)]
enum Mode {
    /// The reference crate's secrets.
    Correct,
    /// A device error.
    Fails,
    /// One secret short.
    Short,
}

/// A GPU double that counts its calls.
struct Mock {
    mode: Mode,
    calls: AtomicUsize,
}

impl Mock {
    fn new(mode: Mode) -> Arc<Self> {
        Arc::new(Self {
            mode,
            calls: AtomicUsize::new(0),
        })
    }
}

impl KemDevice for Mock {
    fn label(&self) -> &'static str {
        "wgpu"
    }

    fn decap_batch(
        &self,
        dk: &DecapsulationKey,
        ciphertexts: &[Ciphertext],
    ) -> Result<Vec<SharedSecret>, kernels::Error> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut secrets: Vec<SharedSecret> =
            ciphertexts.iter().map(|ct| dk.decapsulate(ct)).collect();
        match self.mode {
            Mode::Correct => Ok(secrets),
            Mode::Short => {
                secrets.pop();
                Ok(secrets)
            }
            Mode::Fails => Err(kernels::Error::Gpu {
                adapter: "mock".into(),
                what: "ML-KEM decapsulation".into(),
                detail: "injected failure".into(),
            }),
        }
    }
}

/// A failing GPU (an error, or a result of the wrong length): the batch is redone on the
/// CPU kernels, the fallback is counted, and the secrets equal the reference's.
#[test]
fn a_failing_gpu_falls_back_to_the_cpu_and_is_counted() {
    let mut rng = rng();
    let pair = random_pair(&mut rng);
    for (round, mode) in [Mode::Fails, Mode::Short, Mode::Fails]
        .into_iter()
        .enumerate()
    {
        let metrics = Arc::new(Metrics::default());
        let mock = Mock::new(mode);
        let dispatch = KemDispatch::with_gpu(
            cpu(),
            Some(mock.clone() as Arc<dyn KemDevice>),
            rng.gen_range(1..8),
            Arc::clone(&metrics),
        );
        let n = rng.gen_range(8..40);
        let cts = ciphertexts(&mut rng, &pair, n);
        let got = dispatch.decap(&pair.decapsulation_key, &cts);
        assert_eq!(
            bytes(&got),
            reference(&pair.decapsulation_key, &cts),
            "round {round}"
        );
        assert_eq!(mock.calls.load(Ordering::Relaxed), 1, "the GPU was tried");
        assert_eq!(metrics.kem_gpu_fallbacks.load(Ordering::Relaxed), 1);
        assert_eq!(decaps(&metrics, "cpu"), n as u64, "counted where it ran");
        assert_eq!(batches(&metrics, "cpu"), 1);
        assert_eq!(decaps(&metrics, "wgpu"), 0);
    }
}

/// Batches of at least `gpu_min_batch` ciphertexts go to the GPU, smaller ones to the CPU
/// kernels; without a GPU every batch runs on the CPU, without CPU kernels on the reference.
#[test]
fn batches_are_routed_by_size() {
    let mut rng = rng();
    let pair = random_pair(&mut rng);
    let dk = &pair.decapsulation_key;
    let min = rng.gen_range(2..24);
    let metrics = Arc::new(Metrics::default());
    let mock = Mock::new(Mode::Correct);
    let dispatch = KemDispatch::with_gpu(
        cpu(),
        Some(mock.clone() as Arc<dyn KemDevice>),
        min,
        Arc::clone(&metrics),
    );
    assert_eq!(dispatch.gpu_label(), Some("wgpu"));
    let (mut on_gpu, mut on_cpu) = (0u64, 0u64);
    for n in [1, min - 1, min, min + rng.gen_range(1..16)] {
        let cts = ciphertexts(&mut rng, &pair, n);
        let calls = mock.calls.load(Ordering::Relaxed);
        assert_eq!(bytes(&dispatch.decap(dk, &cts)), reference(dk, &cts), "{n}");
        let to_gpu = n >= min;
        assert_eq!(
            mock.calls.load(Ordering::Relaxed) - calls,
            usize::from(to_gpu),
            "a batch of {n} with gpu_min_batch {min}"
        );
        if to_gpu {
            on_gpu += n as u64;
        } else {
            on_cpu += n as u64;
        }
        assert_eq!(decaps(&metrics, "wgpu"), on_gpu);
        assert_eq!(decaps(&metrics, "cpu"), on_cpu);
    }
    assert_eq!(batches(&metrics, "wgpu"), 2);
    assert_eq!(batches(&metrics, "cpu"), 2);
    assert_eq!(metrics.kem_gpu_fallbacks.load(Ordering::Relaxed), 0);

    // No GPU: everything on the CPU kernels; no CPU kernels: the reference.
    let metrics = Arc::new(Metrics::default());
    let cts = ciphertexts(&mut rng, &pair, min + 1);
    let cpu_only = KemDispatch::with_gpu(cpu(), None, 1, Arc::clone(&metrics));
    assert_eq!(bytes(&cpu_only.decap(dk, &cts)), reference(dk, &cts));
    let nothing = KemDispatch::with_gpu(None, None, 1, Arc::clone(&metrics));
    assert_eq!(bytes(&nothing.decap(dk, &cts)), reference(dk, &cts));
    assert_eq!(decaps(&metrics, "cpu"), cts.len() as u64);
    assert_eq!(decaps(&metrics, "reference"), cts.len() as u64);
    // A threshold of 0 means 1: an empty batch never reaches a device.
    let mock = Mock::new(Mode::Correct);
    let zero = KemDispatch::with_gpu(cpu(), Some(mock.clone() as _), 0, metrics);
    assert!(zero.decap(dk, &[]).is_empty());
    assert_eq!(mock.calls.load(Ordering::Relaxed), 0);
}

/// The probe's result decides the GPU: only an allowed hardware device that decapsulates
/// (a software adapter such as lavapipe never takes batches; nothing is opened for it).
#[test]
fn only_allowed_probed_hardware_gpus_take_batches() {
    let cpu_backend = cpu().expect("the CPU backend");
    let info = kernels::Backend::info(cpu_backend.as_ref());
    let probed = |backend, software, decap| {
        let mut info = info.clone();
        info.capabilities.mlkem768_decap = decap;
        ProbedBackend {
            backend,
            info,
            software,
        }
    };
    let cpu_entry = probed(ProverBackend::Cpu, false, true);
    let cases: [(Vec<ProbedBackend>, &[&str]); 5] = [
        (vec![cpu_entry.clone()], &["cpu", "wgpu", "cuda"]),
        (
            vec![cpu_entry.clone(), probed(ProverBackend::Wgpu, true, true)],
            &["cpu", "wgpu", "cuda"],
        ),
        (
            vec![cpu_entry.clone(), probed(ProverBackend::Wgpu, false, true)],
            &["cpu", "cuda"],
        ),
        (
            vec![cpu_entry.clone(), probed(ProverBackend::Wgpu, false, false)],
            &["cpu", "wgpu"],
        ),
        (Vec::new(), &["cpu", "wgpu", "cuda"]),
    ];
    for (i, (probe, allowed)) in cases.iter().enumerate() {
        let d = KemDispatch::new(
            Some(Arc::clone(&cpu_backend)),
            probe,
            allowed,
            1,
            Arc::new(Metrics::default()),
        );
        assert_eq!(d.gpu_label(), None, "case {i}");
        assert!(d.cpu().is_some());
    }
}

/// The real wgpu kernel, forced even on a software adapter (lavapipe): a batch of 64 through
/// the dispatcher equals the reference. Skipped without an adapter unless
/// `EPA_REQUIRE_WGPU=1`.
#[test]
fn wgpu_batches_through_the_dispatcher_equal_the_reference() {
    let gpu = match prover::registry::shared_wgpu() {
        Ok(g) => g,
        Err(e) => {
            if std::env::var(REQUIRE_ENV).is_ok_and(|v| v.trim() == "1") {
                panic!("{REQUIRE_ENV}=1 but the wgpu backend is unavailable: {e}");
            }
            eprintln!("skipped: no wgpu adapter ({e})");
            return;
        }
    };
    let mut rng = rng();
    let pair = random_pair(&mut rng);
    let metrics = Arc::new(Metrics::default());
    let dispatch = KemDispatch::with_gpu(
        cpu(),
        Some(on_kernels(gpu, "wgpu")),
        64,
        Arc::clone(&metrics),
    );
    let cts = ciphertexts(&mut rng, &pair, 64);
    let got = dispatch.decap(&pair.decapsulation_key, &cts);
    assert_eq!(bytes(&got), reference(&pair.decapsulation_key, &cts));
    assert_eq!(metrics.kem_gpu_fallbacks.load(Ordering::Relaxed), 0);
    assert_eq!(decaps(&metrics, "wgpu"), 64, "the batch ran on the GPU");
    assert_eq!(decaps(&metrics, "cpu"), 0);
}
