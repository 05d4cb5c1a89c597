//! Conformance of batch ML-KEM-768 decapsulation (`Backend::decap_batch`) on every CPU path:
//! equal to the reference (`epa_crypto::kem`) and to aws-lc-rs, on the Wycheproof vectors and
//! on fresh random valid and tampered ciphertexts, batch sizes 1 to 1000 including odd ones.

use aws_lc_rs::kem::{Ciphertext as AwsCiphertext, DecapsulationKey as AwsDk, ML_KEM_768};
use crypto::kem::{
    SharedSecret,
    mlkem768::{Ciphertext, DecapsulationKey, KeyPair},
};
use epa_kernels::{Backend, CpuBackend, Isa, KemPath};
use proptest::prelude::*;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::Value;

/// Every CPU backend configuration: the scalar one runs libcrux's portable ML-KEM, the others
/// the detected (AVX2 where present) one.
fn backends() -> Vec<CpuBackend> {
    Isa::ALL
        .into_iter()
        .filter(|i| i.is_supported())
        .map(|i| CpuBackend::with_isa(i).expect("a supported ISA builds"))
        .collect()
}

fn random_pair(rng: &mut ChaCha20Rng) -> KeyPair {
    let mut seed = [0u8; 64];
    rng.fill_bytes(&mut seed);
    KeyPair::from_seed(&seed)
}

/// A ciphertext of one of five kinds: valid, one bit flipped, last byte changed, uniformly
/// random bytes, or valid for another key (all but the first are implicit rejections).
fn ciphertext(rng: &mut ChaCha20Rng, pair: &KeyPair, other: &KeyPair, kind: u8) -> Ciphertext {
    let mut m = [0u8; 32];
    rng.fill_bytes(&mut m);
    let (ct, _) = pair.encapsulation_key.encapsulate(&m);
    let mut bytes = *ct.as_bytes();
    match kind % 5 {
        0 => return ct,
        1 => {
            let at = rng.gen_range(0..bytes.len());
            bytes[at] ^= 1 << rng.gen_range(0..8);
        }
        2 => bytes[1087] = bytes[1087].wrapping_add(rng.gen_range(1..=255)),
        3 => rng.fill_bytes(&mut bytes),
        _ => return other.encapsulation_key.encapsulate(&m).0,
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

/// Checks every backend against the reference and aws-lc-rs on this batch.
fn check(dk: &DecapsulationKey, cts: &[Ciphertext]) {
    let reference: Vec<SharedSecret> = cts.iter().map(|ct| dk.decapsulate(ct)).collect();
    let aws = aws(dk, cts);
    for (r, a) in reference.iter().zip(&aws) {
        assert_eq!(r.as_bytes(), a, "reference and aws-lc-rs disagree");
    }
    for cpu in backends() {
        let got = cpu
            .decap_batch(dk, cts)
            .expect("the CPU backend decapsulates");
        assert_eq!(
            got.len(),
            cts.len(),
            "{}: one secret per ciphertext",
            cpu.kem_path()
        );
        for (i, (g, r)) in got.iter().zip(&reference).enumerate() {
            assert!(
                g.as_bytes() == r.as_bytes(),
                "{} (path {}): ciphertext {i} of {} differs from the reference",
                cpu.info().name,
                cpu.kem_path(),
                cts.len()
            );
        }
    }
}

#[test]
fn random_batches_of_every_kind_and_size() {
    let mut rng = ChaCha20Rng::from_entropy();
    let pair = random_pair(&mut rng);
    let other = random_pair(&mut rng);
    let odd = rng.gen_range(1..500) * 2 + 1;
    for n in [1, 2, 3, 7, 8, 9, 64, 127, odd, 1000] {
        let cts: Vec<Ciphertext> = (0..n)
            .map(|_| {
                let kind = rng.gen_range(0..5);
                ciphertext(&mut rng, &pair, &other, kind)
            })
            .collect();
        check(&pair.decapsulation_key, &cts);
    }
}

#[test]
fn valid_ciphertexts_give_the_encapsulated_secrets() {
    let mut rng = ChaCha20Rng::from_entropy();
    let pair = random_pair(&mut rng);
    let (cts, secrets): (Vec<Ciphertext>, Vec<SharedSecret>) = (0..33)
        .map(|_| {
            let mut m = [0u8; 32];
            rng.fill_bytes(&mut m);
            pair.encapsulation_key.encapsulate(&m)
        })
        .unzip();
    for cpu in backends() {
        let got = cpu
            .decap_batch(&pair.decapsulation_key, &cts)
            .expect("decap");
        assert!(
            got == secrets,
            "{}: not the encapsulated secrets",
            cpu.info().name
        );
    }
}

#[test]
fn empty_batch_is_empty() {
    let mut rng = ChaCha20Rng::from_entropy();
    let pair = random_pair(&mut rng);
    for cpu in backends() {
        assert!(
            cpu.decap_batch(&pair.decapsulation_key, &[])
                .expect("decap")
                .is_empty()
        );
    }
}

#[test]
fn backend_info_reports_the_kem_path() {
    for cpu in backends() {
        let info = cpu.info();
        assert!(info.capabilities.mlkem768_decap);
        let expected = if cpu.isa() == Isa::Scalar {
            KemPath::Portable
        } else {
            KemPath::detect()
        };
        assert_eq!(cpu.kem_path(), expected);
        assert_eq!(
            cpu.kem_implementation().as_deref(),
            Some(expected.implementation())
        );
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        assert_eq!(KemPath::detect(), KemPath::Avx2);
        let best = CpuBackend::with_isa(Isa::best()).expect("best ISA");
        assert_eq!(best.kem_path(), KemPath::Avx2);
        assert_eq!(
            best.kem_implementation().as_deref(),
            Some("libcrux-avx2-unpacked")
        );
        let scalar = CpuBackend::with_isa(Isa::Scalar).expect("scalar");
        assert_eq!(
            scalar.kem_implementation().as_deref(),
            Some("libcrux-portable-unpacked")
        );
    }
}

fn hex_field(t: &Value, key: &str) -> Vec<u8> {
    let s = t[key]
        .as_str()
        .unwrap_or_else(|| panic!("tcId {}: no field {key}", t["tcId"]));
    hex::decode(s).unwrap_or_else(|e| panic!("tcId {}: {key}: {e}", t["tcId"]))
}

/// Project Wycheproof ML-KEM-768 decapsulation vectors (in the crypto crate's test data): every
/// valid case's ciphertext, in a batch with a fresh valid and a fresh tampered ciphertext, gives
/// the expected `K` on every path (the vectors include implicit-rejection cases).
#[test]
fn wycheproof_vectors() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crypto/tests/vectors/wycheproof/mlkem_768_test.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"));
    let mut rng = ChaCha20Rng::from_entropy();
    let other = random_pair(&mut rng);
    let backends = backends();
    let (mut valid, mut skipped) = (0, 0);
    for group in doc["testGroups"].as_array().expect("testGroups") {
        for t in group["tests"].as_array().expect("tests") {
            let seed: Result<[u8; 64], _> = hex_field(t, "seed").try_into();
            let ct = Ciphertext::from_bytes(&hex_field(t, "c"));
            let (Ok(seed), Ok(ct)) = (seed, ct) else {
                // Invalid cases are wrong seed or ciphertext lengths, which the types reject
                // before any batch can be formed.
                assert_eq!(
                    t["result"], "invalid",
                    "tcId {}: a valid case fails to parse",
                    t["tcId"]
                );
                skipped += 1;
                continue;
            };
            assert_eq!(t["result"], "valid", "tcId {}", t["tcId"]);
            let pair = KeyPair::from_seed(&seed);
            let expected = hex_field(t, "K");
            let batch = vec![
                ct.clone(),
                ciphertext(&mut rng, &pair, &other, 0),
                ciphertext(&mut rng, &pair, &other, 1),
                ct,
            ];
            let reference: Vec<SharedSecret> = batch
                .iter()
                .map(|c| pair.decapsulation_key.decapsulate(c))
                .collect();
            assert_eq!(
                &reference[0].as_bytes()[..],
                &expected[..],
                "tcId {}",
                t["tcId"]
            );
            assert_eq!(
                &aws(&pair.decapsulation_key, &batch[..1])[0][..],
                &expected[..]
            );
            for cpu in &backends {
                let got = cpu
                    .decap_batch(&pair.decapsulation_key, &batch)
                    .expect("decap");
                assert!(got == reference, "tcId {}: {}", t["tcId"], cpu.info().name);
                let single = cpu
                    .decap_batch(&pair.decapsulation_key, &batch[3..])
                    .expect("decap");
                assert_eq!(
                    &single[0].as_bytes()[..],
                    &expected[..],
                    "tcId {}",
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Any batch of any mix of ciphertext kinds equals the reference on every path.
    #[test]
    fn batches_match_reference(
        seed in any::<u64>(),
        kinds in proptest::collection::vec(0u8..5, 1..40),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let pair = random_pair(&mut rng);
        let other = random_pair(&mut rng);
        let cts: Vec<Ciphertext> =
            kinds.iter().map(|&k| ciphertext(&mut rng, &pair, &other, k)).collect();
        check(&pair.decapsulation_key, &cts);
    }
}
