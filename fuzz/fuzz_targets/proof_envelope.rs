#![no_main]
//! Arbitrary bytes -> proof envelope decoding -> verification with the stock winterfell
//! verifier. Must never panic: every defect is a typed error.
//!
//! Besides raw bytes, the target mutates a valid rescue-chain envelope (built once) at the
//! positions the input names, so the fuzzer reaches deep into winterfell's proof parser.

use std::sync::OnceLock;

use prover::air::rescue_chain::seed_from_elements;
use prover::envelope::{ProofEnvelope, verify_envelope};
use prover::options::{HashId, OptionsChoice, ProofParams};
use prover::registry::{self, ProveRequest};

/// Cheap valid options for the seed proofs (no grinding, few queries): the target explores the
/// decoder and verifier, not soundness, and stays fast under sanitizers.
const SEED_PARAMS: ProofParams = ProofParams {
    num_queries: 4,
    blowup_factor: 8,
    grinding_factor: 0,
    field_extension: 2,
    fri_folding_factor: 4,
    fri_remainder_max_degree: 7,
};

fn seeds() -> &'static [Vec<u8>; 2] {
    static SEEDS: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    SEEDS.get_or_init(|| {
        HashId::ALL.map(|hash| {
            let request = ProveRequest::RescueChain {
                seed: seed_from_elements(&[]),
                steps: 4,
            };
            registry::prove(&request, OptionsChoice::Explicit(SEED_PARAMS), hash)
                .and_then(|env| env.to_bytes())
                .expect("a valid rescue chain proves")
        })
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // 1. Raw bytes.
    let _ = ProofEnvelope::from_bytes(data);
    let _ = verify_envelope(data);

    // 2. A valid envelope with the input applied as (position, xor) edits.
    if let Some((&selector, edits)) = data.split_first() {
        let mut bytes = seeds()[usize::from(selector & 1)].clone();
        for edit in edits.chunks_exact(4) {
            let pos =
                usize::from(u16::from_le_bytes([edit[0], edit[1]])) | usize::from(edit[2]) << 16;
            let len = bytes.len();
            bytes[pos % len] ^= edit[3];
        }
        if selector & 2 != 0 {
            bytes.truncate(usize::from(selector) * 37 % bytes.len().max(1));
        }
        let _ = verify_envelope(&bytes);
    }
});
