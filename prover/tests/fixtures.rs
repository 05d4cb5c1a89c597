//! Golden proof fixtures: small deterministic instances whose envelopes must be reproduced
//! byte for byte (proofs are deterministic) and must verify.
//!
//! `EPA_BLESS=1 cargo test -p epa-prover --test fixtures` rewrites the files after an intended
//! format change (which also needs a new envelope version).

use std::path::PathBuf;

use epa_prover::envelope::verify_envelope;
use epa_prover::options::{HashId, Preset};
use epa_prover::registry::{self, ProveRequest};
use epa_prover::workload::SmtWorkload;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_math::fields::f64::BaseElement;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn hash_tag(hash: HashId) -> &'static str {
    match hash {
        HashId::Blake3_256 => "blake3",
        _ => "rp64",
    }
}

/// Compares `bytes` with the stored fixture (or rewrites it under `EPA_BLESS=1`), then
/// verifies the stored bytes.
fn check_fixture(name: &str, bytes: &[u8]) {
    let path = fixture_path(name);
    if std::env::var_os("EPA_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("fixture paths have a parent")).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    let stored = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with EPA_BLESS=1 to create it", path.display()));
    assert!(
        stored.len() < 100 * 1024,
        "{name} is {} bytes; keep fixtures small",
        stored.len()
    );
    assert!(
        stored == bytes,
        "{name}: regenerated proof differs from the golden file"
    );
    verify_envelope(&stored).unwrap_or_else(|e| panic!("{name} does not verify: {e}"));
}

fn rescue_chain_request() -> ProveRequest {
    let mut rng = ChaCha20Rng::seed_from_u64(0x5eed_0003);
    let seed = core::array::from_fn(|_| BaseElement::new(rng.gen_range(0..0xffff_ffff_0000_0001)));
    ProveRequest::RescueChain { seed, steps: 8 }
}

#[test]
fn rescue_chain_fixtures() {
    for hash in HashId::ALL {
        let env = registry::prove(&rescue_chain_request(), Preset::Fast96.into(), hash).unwrap();
        check_fixture(
            &format!("rescue_chain_{}_v1.bin", hash_tag(hash)),
            &env.to_bytes().unwrap(),
        );
    }
}

#[test]
fn smt_update_fixtures() {
    for hash in HashId::ALL {
        // Same seed for both hashes: the same two updates on an empty depth-16 tree.
        let mut workload = SmtWorkload::new(16, 0x5eed_0001).unwrap();
        let witnesses = workload.next_batch(2).unwrap();
        let request = ProveRequest::SmtUpdate {
            depth: 16,
            witnesses,
        };
        let env = registry::prove(&request, Preset::Fast96.into(), hash).unwrap();
        check_fixture(
            &format!("smt_update_{}_v1.bin", hash_tag(hash)),
            &env.to_bytes().unwrap(),
        );
    }
}
