//! Conformance of the CUDA backend's batch ML-KEM-768 decapsulation (`Backend::decap_batch` on
//! [`CudaBackend`]) with the reference (`DecapsulationKey::decapsulate`): the Wycheproof
//! vectors and fresh random valid, tampered (bit flips in `u` and `v`, a changed last byte,
//! random bytes) and foreign-key ciphertexts, at batch sizes around the block and warp sizes.
//!
//! Needs a CUDA driver and a GPU. A libtest-style harness (`harness = false`, libtest-mimic):
//! without a driver (`Error::NoCuda`) every device test is reported as *ignored*, with one line
//! "skipped: no CUDA driver (<reason>)" on stderr, and fails if run anyway (`--ignored`);
//! `EPA_REQUIRE_CUDA=1` (the GPU machine's suite sets it) makes a missing driver fail them.
//! The measurement (`measure_throughput`) is always ignored unless asked for with `--ignored`.
//! The same CUDA code is checked on every machine through its host build
//! (tests/cuda_mlkem_host.rs).

use std::sync::Arc;

use crypto::kem::{
    SharedSecret,
    mlkem768::{Ciphertext, DecapsulationKey, KeyPair},
};
use epa_kernels::{Backend, CudaBackend, Error};
use libtest_mimic::{Arguments, Trial};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::Value;

/// Environment variable that turns a missing driver into a failure.
#[path = "support/cuda_harness.rs"]
mod cuda_harness;

use cuda_harness::Driver;

fn probe() -> Driver<CudaBackend> {
    match CudaBackend::new() {
        Ok(b) => Driver::Present(Arc::new(b)),
        Err(Error::NoCuda { detail, .. }) => Driver::Missing(detail),
        Err(e) => Driver::Broken(e.to_string()),
    }
}

type DeviceTest = fn(&CudaBackend);

const DEVICE_TESTS: &[(&str, DeviceTest)] = &[
    ("reports_the_capability", reports_the_capability),
    (
        "random_batches_of_every_kind_and_size",
        random_batches_of_every_kind_and_size,
    ),
    (
        "valid_ciphertexts_give_the_encapsulated_secrets",
        valid_ciphertexts_give_the_encapsulated_secrets,
    ),
    ("empty_batch_is_empty", empty_batch_is_empty),
    ("wycheproof_vectors", wycheproof_vectors),
];

fn main() {
    let args = Arguments::from_args();
    let driver = probe();
    let mut trials: Vec<Trial> = DEVICE_TESTS
        .iter()
        .map(|&(name, test)| driver.trial(name, move |b| test(&b), false))
        .collect();
    trials.push(driver.trial("measure_throughput", |b| measure_throughput(&b), true));
    driver.run(&args, trials)
}

fn random_pair(rng: &mut ChaCha20Rng) -> KeyPair {
    let mut seed = [0u8; 64];
    rng.fill_bytes(&mut seed);
    KeyPair::from_seed(&seed)
}

/// A ciphertext of kind `kind % 6`: valid, a bit flipped in `u`, a bit flipped in `v`, the last
/// byte changed, random bytes, or valid for another key.
fn ciphertext(rng: &mut ChaCha20Rng, pair: &KeyPair, other: &KeyPair, kind: u8) -> Ciphertext {
    let mut m = [0u8; 32];
    rng.fill_bytes(&mut m);
    let (ct, _) = pair.encapsulation_key.encapsulate(&m);
    let mut bytes = *ct.as_bytes();
    match kind % 6 {
        0 => return ct,
        1 => bytes[rng.gen_range(0..960)] ^= 1 << rng.gen_range(0..8),
        2 => bytes[rng.gen_range(960..1088)] ^= 1 << rng.gen_range(0..8),
        3 => bytes[1087] = bytes[1087].wrapping_add(rng.gen_range(1..=255)),
        4 => rng.fill_bytes(&mut bytes),
        _ => return other.encapsulation_key.encapsulate(&m).0,
    }
    Ciphertext::from_bytes(&bytes).expect("1088 bytes is an ML-KEM-768 ciphertext")
}

fn check(cuda: &CudaBackend, dk: &DecapsulationKey, cts: &[Ciphertext]) {
    let got = cuda
        .decap_batch(dk, cts)
        .expect("the CUDA backend decapsulates");
    assert_eq!(got.len(), cts.len(), "one secret per ciphertext");
    for (i, (g, ct)) in got.iter().zip(cts).enumerate() {
        let expected = dk.decapsulate(ct);
        assert!(
            g == &expected,
            "ciphertext {i} of {} differs from the reference",
            cts.len()
        );
    }
}

fn reports_the_capability(cuda: &CudaBackend) {
    assert!(cuda.info().capabilities.mlkem768_decap);
}

fn random_batches_of_every_kind_and_size(cuda: &CudaBackend) {
    let mut rng = ChaCha20Rng::from_entropy();
    let pair = random_pair(&mut rng);
    let other = random_pair(&mut rng);
    let odd = rng.gen_range(1..1000) * 2 + 1;
    for n in [1, 2, 3, 31, 32, 33, 255, 256, 257, odd, 2000] {
        let cts: Vec<Ciphertext> = (0..n)
            .map(|_| {
                let kind = rng.gen_range(0..6);
                ciphertext(&mut rng, &pair, &other, kind)
            })
            .collect();
        check(cuda, &pair.decapsulation_key, &cts);
    }
}

fn valid_ciphertexts_give_the_encapsulated_secrets(cuda: &CudaBackend) {
    let mut rng = ChaCha20Rng::from_entropy();
    let pair = random_pair(&mut rng);
    let (cts, secrets): (Vec<Ciphertext>, Vec<SharedSecret>) = (0..64)
        .map(|_| {
            let mut m = [0u8; 32];
            rng.fill_bytes(&mut m);
            pair.encapsulation_key.encapsulate(&m)
        })
        .unzip();
    let got = cuda
        .decap_batch(&pair.decapsulation_key, &cts)
        .expect("decap");
    assert!(got == secrets, "not the encapsulated secrets");
}

fn empty_batch_is_empty(cuda: &CudaBackend) {
    let mut rng = ChaCha20Rng::from_entropy();
    let pair = random_pair(&mut rng);
    let got = cuda
        .decap_batch(&pair.decapsulation_key, &[])
        .expect("decap");
    assert!(got.is_empty());
}

fn hex_field(t: &Value, key: &str) -> Vec<u8> {
    let s = t[key]
        .as_str()
        .unwrap_or_else(|| panic!("tcId {}: no field {key}", t["tcId"]));
    hex::decode(s).unwrap_or_else(|e| panic!("tcId {}: {key}: {e}", t["tcId"]))
}

/// Every valid Wycheproof case (implicit rejections included) gives the expected `K`, in a
/// batch with fresh valid and tampered ciphertexts for the same key.
fn wycheproof_vectors(cuda: &CudaBackend) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crypto/tests/vectors/wycheproof/mlkem_768_test.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"));
    let mut rng = ChaCha20Rng::from_entropy();
    let other = random_pair(&mut rng);
    let mut valid = 0;
    for group in doc["testGroups"].as_array().expect("testGroups") {
        for t in group["tests"].as_array().expect("tests") {
            let seed: Result<[u8; 64], _> = hex_field(t, "seed").try_into();
            let ct = Ciphertext::from_bytes(&hex_field(t, "c"));
            let (Ok(seed), Ok(ct)) = (seed, ct) else {
                assert_eq!(t["result"], "invalid", "tcId {}", t["tcId"]);
                continue;
            };
            let pair = KeyPair::from_seed(&seed);
            let batch = [
                ct,
                ciphertext(&mut rng, &pair, &other, 0),
                ciphertext(&mut rng, &pair, &other, 1),
                ciphertext(&mut rng, &pair, &other, 2),
            ];
            let got = cuda
                .decap_batch(&pair.decapsulation_key, &batch)
                .expect("decap");
            assert_eq!(
                &got[0].as_bytes()[..],
                &hex_field(t, "K")[..],
                "tcId {}",
                t["tcId"]
            );
            for (g, c) in got.iter().zip(&batch) {
                assert!(
                    g == &pair.decapsulation_key.decapsulate(c),
                    "tcId {}",
                    t["tcId"]
                );
            }
            valid += 1;
        }
    }
    assert_eq!(valid, 153, "every valid Wycheproof case seen");
}

/// Batch size of the measurement when `EPA_MLKEM_CUDA_MEASURE` is not set.
const DEFAULT_MEASURE_BATCH: usize = 65_536;

/// Opt-in measurement, not a timed test (an ignored trial: run it with `--ignored`): prints the
/// decapsulations per second of one `decap_batch` call at the batch size
/// `EPA_MLKEM_CUDA_MEASURE=<batch>` (default [`DEFAULT_MEASURE_BATCH`]), host-device transfers
/// and key expansion included (best of 5 after a warm-up), and checks the timed batch's
/// secrets against the reference. Run on a GPU machine (scripts/gpu-suite.sh).
fn measure_throughput(cuda: &CudaBackend) {
    let batch: usize = match std::env::var("EPA_MLKEM_CUDA_MEASURE") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("EPA_MLKEM_CUDA_MEASURE={v:?} is not a batch size")),
        Err(_) => DEFAULT_MEASURE_BATCH,
    };
    let mut rng = ChaCha20Rng::from_entropy();
    let pair = random_pair(&mut rng);
    let other = random_pair(&mut rng);
    // 1024 distinct ciphertexts of every kind, repeated to the batch size.
    let distinct: Vec<Ciphertext> = (0..1024)
        .map(|i| ciphertext(&mut rng, &pair, &other, (i % 6) as u8))
        .collect();
    let expected: Vec<SharedSecret> = distinct
        .iter()
        .map(|c| pair.decapsulation_key.decapsulate(c))
        .collect();
    let cts: Vec<Ciphertext> = (0..batch).map(|i| distinct[i % 1024].clone()).collect();
    let dk = &pair.decapsulation_key;
    cuda.decap_batch(dk, &cts).expect("warm-up");
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let got = cuda.decap_batch(dk, &cts).expect("decap");
        best = best.min(t.elapsed().as_secs_f64());
        for (i, g) in got.iter().enumerate() {
            assert!(
                g == &expected[i % 1024],
                "ciphertext {i} of the timed batch"
            );
        }
    }
    println!(
        "cuda ML-KEM-768 decap_batch: batch {batch}: {:.3} ms, {:.0} decapsulations/s \
         (transfers included) on {}",
        best * 1e3,
        batch as f64 / best,
        cuda.device_name()
    );
}
