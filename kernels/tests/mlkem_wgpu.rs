//! Conformance of the wgpu backend's batch ML-KEM-768 decapsulation (`WgpuBackend::decap_batch`,
//! WGSL kernels) on whatever adapter this machine has (Mesa's lavapipe in CI): equal to the
//! reference (`epa_crypto::kem`) and to aws-lc-rs on the Wycheproof vectors and on fresh random
//! valid, tampered (bit flips in `u` and in `v`), random and foreign-key ciphertexts, batch
//! sizes 1, 3 and 64.
//!
//! Without an adapter every test prints "skipped: no Vulkan adapter" to stderr and passes,
//! unless `EPA_REQUIRE_WGPU=1` is set: then a missing adapter fails the run.

#![cfg(feature = "wgpu")]

use std::sync::OnceLock;

use aws_lc_rs::kem::{Ciphertext as AwsCiphertext, DecapsulationKey as AwsDk, ML_KEM_768};
use crypto::kem::{
    SharedSecret,
    mlkem768::{Ciphertext, DecapsulationKey, KeyPair},
};
use epa_kernels::{Backend, Error, WgpuBackend};
use proptest::prelude::*;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::Value;

/// Environment variable that turns a missing adapter into a failure.
const REQUIRE_ENV: &str = "EPA_REQUIRE_WGPU";

/// Bytes of `c1` (the compressed `u`, 3 x 256 x 10 bits) at the start of a ciphertext.
const C1_BYTES: usize = 960;

fn open() -> Option<WgpuBackend> {
    match WgpuBackend::new() {
        Ok(b) => Some(b),
        Err(e) => {
            if std::env::var(REQUIRE_ENV).is_ok_and(|v| v.trim() == "1") {
                panic!("{REQUIRE_ENV}=1 but the wgpu backend is unavailable: {e}");
            }
            eprintln!("skipped: no Vulkan adapter ({e})");
            None
        }
    }
}

fn backend() -> Option<&'static WgpuBackend> {
    static BACKEND: OnceLock<Option<WgpuBackend>> = OnceLock::new();
    BACKEND.get_or_init(open).as_ref()
}

fn random_pair(rng: &mut ChaCha20Rng) -> KeyPair {
    let mut seed = [0u8; 64];
    rng.fill_bytes(&mut seed);
    KeyPair::from_seed(&seed)
}

/// The kinds of ciphertext every batch mixes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// An honest encapsulation to the key.
    Valid,
    /// One bit flipped in `c1` (the compressed `u`).
    FlipU,
    /// One bit flipped in `c2` (the compressed `v`).
    FlipV,
    /// Uniformly random bytes.
    Random,
    /// An honest encapsulation to another key.
    Foreign,
}

const KINDS: [Kind; 5] = [
    Kind::Valid,
    Kind::FlipU,
    Kind::FlipV,
    Kind::Random,
    Kind::Foreign,
];

fn ciphertext(rng: &mut ChaCha20Rng, pair: &KeyPair, other: &KeyPair, kind: Kind) -> Ciphertext {
    let mut m = [0u8; 32];
    rng.fill_bytes(&mut m);
    let (ct, _) = pair.encapsulation_key.encapsulate(&m);
    let mut bytes = *ct.as_bytes();
    match kind {
        Kind::Valid => return ct,
        Kind::Foreign => return other.encapsulation_key.encapsulate(&m).0,
        Kind::FlipU => bytes[rng.gen_range(0..C1_BYTES)] ^= 1 << rng.gen_range(0..8),
        Kind::FlipV => bytes[rng.gen_range(C1_BYTES..bytes.len())] ^= 1 << rng.gen_range(0..8),
        Kind::Random => rng.fill_bytes(&mut bytes),
    }
    Ciphertext::from_bytes(&bytes).expect("1088 bytes is an ML-KEM-768 ciphertext")
}

fn aws(dk: &DecapsulationKey, cts: &[Ciphertext]) -> Vec<[u8; 32]> {
    let dk = AwsDk::new(&ML_KEM_768, dk.as_bytes()).expect("aws-lc-rs accepts the key");
    cts.iter()
        .map(|ct| {
            let ss = dk
                .decapsulate(AwsCiphertext::from(&ct.as_bytes()[..]))
                .expect("aws-lc-rs decapsulates any 1088-byte ciphertext");
            ss.as_ref().try_into().expect("32-byte shared secret")
        })
        .collect()
}

/// Decapsulates on the GPU and checks every secret against the reference and aws-lc-rs.
fn check(b: &WgpuBackend, dk: &DecapsulationKey, cts: &[Ciphertext], what: &str) {
    let reference: Vec<SharedSecret> = cts.iter().map(|ct| dk.decapsulate(ct)).collect();
    for (i, (r, a)) in reference.iter().zip(aws(dk, cts)).enumerate() {
        assert_eq!(
            r.as_bytes(),
            &a,
            "{what}: reference and aws-lc-rs differ at {i}"
        );
    }
    let got = b
        .decap_batch(dk, cts)
        .expect("the wgpu backend decapsulates");
    assert_eq!(got.len(), cts.len(), "{what}: one secret per ciphertext");
    for (i, (g, r)) in got.iter().zip(&reference).enumerate() {
        assert!(
            g.as_bytes() == r.as_bytes(),
            "{what}: ciphertext {i} of {} differs from the reference",
            cts.len()
        );
    }
}

#[test]
fn reports_the_capability() {
    let Some(b) = backend() else { return };
    assert!(b.info().capabilities.mlkem768_decap);
}

/// Batches of 1, 3 and 64 fresh ciphertexts of every kind, in random order, under a fresh key.
#[test]
fn random_batches_match_reference() {
    let Some(b) = backend() else { return };
    let mut rng = ChaCha20Rng::from_entropy();
    let pair = random_pair(&mut rng);
    let other = random_pair(&mut rng);
    for n in [1usize, 3, 64] {
        let mut kinds: Vec<Kind> = (0..n).map(|i| KINDS[i % KINDS.len()]).collect();
        // Shuffle so that each kind lands in different workgroup positions from run to run.
        for i in (1..kinds.len()).rev() {
            kinds.swap(i, rng.gen_range(0..=i));
        }
        let cts: Vec<Ciphertext> = kinds
            .iter()
            .map(|&k| ciphertext(&mut rng, &pair, &other, k))
            .collect();
        check(b, &pair.decapsulation_key, &cts, &format!("batch of {n}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Any mix of ciphertext kinds, in any order, under any key equals the reference.
    #[test]
    fn any_batch_matches_reference(
        seed in any::<u64>(),
        kinds in proptest::collection::vec(0usize..5, 1..24),
    ) {
        let Some(b) = backend() else { return Ok(()) };
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let pair = random_pair(&mut rng);
        let other = random_pair(&mut rng);
        let cts: Vec<Ciphertext> = kinds
            .iter()
            .map(|&k| ciphertext(&mut rng, &pair, &other, KINDS[k]))
            .collect();
        check(b, &pair.decapsulation_key, &cts, &format!("seed {seed}"));
    }
}

/// Valid ciphertexts give the encapsulated secrets; the same ciphertexts tampered give the
/// implicit-rejection secrets, each different from the encapsulated one.
#[test]
fn valid_and_tampered_pairs() {
    let Some(b) = backend() else { return };
    let mut rng = ChaCha20Rng::from_entropy();
    let pair = random_pair(&mut rng);
    let mut cts = Vec::new();
    let mut secrets = Vec::new();
    for _ in 0..4 {
        let mut m = [0u8; 32];
        rng.fill_bytes(&mut m);
        let (ct, ss) = pair.encapsulation_key.encapsulate(&m);
        cts.push(ct);
        secrets.push(ss);
    }
    let got = b
        .decap_batch(&pair.decapsulation_key, &cts)
        .expect("decapsulates");
    assert!(
        got == secrets,
        "valid ciphertexts: not the encapsulated secrets"
    );
    let tampered: Vec<Ciphertext> = cts
        .iter()
        .enumerate()
        .map(|(i, ct)| {
            let mut bytes = *ct.as_bytes();
            // Alternately the last byte of c1 and of c2: the comparison must cover both ends.
            let at = if i % 2 == 0 { C1_BYTES - 1 } else { 1087 };
            bytes[at] ^= 1 << rng.gen_range(0..8);
            Ciphertext::from_bytes(&bytes).expect("1088 bytes")
        })
        .collect();
    let rejected = b
        .decap_batch(&pair.decapsulation_key, &tampered)
        .expect("decapsulates");
    for (i, (r, s)) in rejected.iter().zip(&secrets).enumerate() {
        assert!(
            r != s,
            "tampered ciphertext {i} gave the encapsulated secret"
        );
        assert!(
            *r == pair.decapsulation_key.decapsulate(&tampered[i]),
            "tampered ciphertext {i}: not the reference's rejection secret"
        );
    }
}

#[test]
fn empty_batch_is_empty() {
    let Some(b) = backend() else { return };
    let mut rng = ChaCha20Rng::from_entropy();
    let pair = random_pair(&mut rng);
    assert!(
        b.decap_batch(&pair.decapsulation_key, &[])
            .expect("decap")
            .is_empty()
    );
}

/// A destroyed device gives a typed error, not a panic or wrong secrets.
#[test]
fn lost_device_is_a_typed_error() {
    let Some(b) = open() else { return };
    let mut rng = ChaCha20Rng::from_entropy();
    let pair = random_pair(&mut rng);
    let other = random_pair(&mut rng);
    let cts = vec![ciphertext(&mut rng, &pair, &other, Kind::Valid)];
    b.destroy();
    match b.decap_batch(&pair.decapsulation_key, &cts) {
        Err(Error::Gpu { .. }) => {}
        other => panic!("expected Error::Gpu after destroy, got {other:?}"),
    }
}

fn vectors(name: &str) -> Value {
    let path = format!(
        "{}/../crypto/tests/vectors/wycheproof/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

fn hex_field(t: &Value, key: &str) -> Vec<u8> {
    let s = t[key]
        .as_str()
        .unwrap_or_else(|| panic!("tcId {}: no field {key}", t["tcId"]));
    hex::decode(s).unwrap_or_else(|e| panic!("tcId {}: {key}: {e}", t["tcId"]))
}

/// Project Wycheproof ML-KEM-768 decapsulation vectors: every valid case's ciphertext, in a
/// batch with a fresh valid and a fresh tampered ciphertext, gives the expected `K` (the
/// vectors include implicit-rejection cases).
#[test]
fn wycheproof_vectors() {
    let Some(b) = backend() else { return };
    let doc = vectors("mlkem_768_test.json");
    let mut rng = ChaCha20Rng::from_entropy();
    let other = random_pair(&mut rng);
    let (mut valid, mut skipped) = (0, 0);
    for group in doc["testGroups"].as_array().expect("testGroups") {
        for t in group["tests"].as_array().expect("tests") {
            let seed: Result<[u8; 64], _> = hex_field(t, "seed").try_into();
            let ct = Ciphertext::from_bytes(&hex_field(t, "c"));
            let (Ok(seed), Ok(ct)) = (seed, ct) else {
                // Wrong seed or ciphertext lengths, which the types reject before any batch.
                assert_eq!(t["result"], "invalid", "tcId {}", t["tcId"]);
                skipped += 1;
                continue;
            };
            assert_eq!(t["result"], "valid", "tcId {}", t["tcId"]);
            let pair = KeyPair::from_seed(&seed);
            let batch = vec![
                ct,
                ciphertext(&mut rng, &pair, &other, Kind::Valid),
                ciphertext(&mut rng, &pair, &other, Kind::FlipU),
            ];
            let got = b
                .decap_batch(&pair.decapsulation_key, &batch)
                .expect("decapsulates");
            assert_eq!(
                &got[0].as_bytes()[..],
                &hex_field(t, "K")[..],
                "tcId {}: K",
                t["tcId"]
            );
            for (i, (g, c)) in got.iter().zip(&batch).enumerate().skip(1) {
                assert!(
                    *g == pair.decapsulation_key.decapsulate(c),
                    "tcId {}: fresh ciphertext {i}",
                    t["tcId"]
                );
            }
            valid += 1;
        }
    }
    assert_eq!(
        (valid, skipped),
        (153, 40),
        "every Wycheproof case accounted for"
    );
}

/// Wycheproof's semi-expanded decapsulation vectors: given decapsulation keys, among them keys
/// crafted so that a comparison that skips the last byte of `c1` or of `c2` would accept.
#[test]
fn wycheproof_semi_expanded_vectors() {
    let Some(b) = backend() else { return };
    let doc = vectors("mlkem_768_semi_expanded_decaps_test.json");
    let (mut valid, mut skipped) = (0, 0);
    for group in doc["testGroups"].as_array().expect("testGroups") {
        for t in group["tests"].as_array().expect("tests") {
            let dk = DecapsulationKey::from_bytes(&hex_field(t, "dk"));
            let ct = Ciphertext::from_bytes(&hex_field(t, "c"));
            let (Ok(dk), Ok(ct)) = (dk, ct) else {
                // Wrong lengths or a key failing the FIPS 203 checks: rejected by the types.
                assert_eq!(t["result"], "invalid", "tcId {}", t["tcId"]);
                skipped += 1;
                continue;
            };
            assert_eq!(t["result"], "valid", "tcId {}", t["tcId"]);
            let got = b.decap_batch(&dk, &[ct]).expect("decapsulates");
            assert_eq!(
                &got[0].as_bytes()[..],
                &hex_field(t, "K")[..],
                "tcId {}: {}",
                t["tcId"],
                t["comment"]
            );
            valid += 1;
        }
    }
    assert!(valid >= 3, "only {valid} valid cases ({skipped} rejected)");
}

/// Long mode, off by default: `EPA_MLKEM_WGPU_MEASURE=<batch>` decapsulates a batch of that
/// many fresh valid ciphertexts three times after a warm-up, prints the best rate in
/// decapsulations per second (host work, transfers and the dispatch included) and checks every
/// secret against the encapsulated one.
#[test]
#[ignore = "measurement, not a test: EPA_MLKEM_WGPU_MEASURE=<batch> (scripts/gpu-suite.sh)"]
fn measured_throughput() {
    let Some(n) = std::env::var("EPA_MLKEM_WGPU_MEASURE")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    else {
        return;
    };
    let Some(b) = backend() else { return };
    let mut rng = ChaCha20Rng::from_entropy();
    let pair = random_pair(&mut rng);
    let (cts, secrets): (Vec<Ciphertext>, Vec<SharedSecret>) = (0..n)
        .map(|_| {
            let mut m = [0u8; 32];
            rng.fill_bytes(&mut m);
            pair.encapsulation_key.encapsulate(&m)
        })
        .unzip();
    b.decap_batch(&pair.decapsulation_key, &cts[..1])
        .expect("warm-up decapsulates");
    let mut best = f64::MAX;
    for _ in 0..3 {
        let start = std::time::Instant::now();
        let got = b
            .decap_batch(&pair.decapsulation_key, &cts)
            .expect("decapsulates");
        best = best.min(start.elapsed().as_secs_f64());
        assert!(got == secrets, "batch of {n}: not the encapsulated secrets");
    }
    eprintln!(
        "wgpu ML-KEM-768 decap on {}: batch {n}: {:.3} s, {:.0} decapsulations/s",
        b.adapter_info().name,
        best,
        n as f64 / best
    );
}
