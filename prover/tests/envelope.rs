//! Proof envelope: encoding round trips, strict decoding, and tampering (every corruption gives
//! a typed error, never a panic).

use epa_prover::Error;
use epa_prover::air::rescue_chain::Word;
use epa_prover::envelope::{
    ENVELOPE_VERSION, MAGIC, MAX_PROOF_LEN, ProofEnvelope, verify_envelope,
    verify_envelope_min_security,
};
use epa_prover::options::{HashId, OptionsChoice, Preset, ProofParams};
use epa_prover::registry::{self, AirId, ProveRequest};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::sync::OnceLock;
use winter_math::fields::f64::BaseElement;

/// One honest small proof per hash, shared by the tests of this file.
fn honest(hash: HashId) -> &'static Vec<u8> {
    static CACHE: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        let mut rng = ChaCha20Rng::from_entropy();
        HashId::ALL
            .into_iter()
            .map(|h| {
                let seed: Word =
                    core::array::from_fn(|_| BaseElement::new(rng.gen_range(0..1u64 << 63)));
                let req = ProveRequest::RescueChain { seed, steps: 32 };
                registry::prove(&req, Preset::Fast96.into(), h)
                    .unwrap()
                    .to_bytes()
                    .unwrap()
            })
            .collect()
    });
    &all[HashId::ALL.iter().position(|h| *h == hash).unwrap()]
}

fn arb_params() -> impl Strategy<Value = ProofParams> {
    (
        1u8..=255,
        3u32..=7,
        0u8..=32,
        1u8..=3,
        prop::sample::select(vec![2u8, 4, 8, 16]),
        0u32..=8,
    )
        .prop_map(|(q, lb, g, e, f, lr)| ProofParams {
            num_queries: q,
            blowup_factor: 1 << lb,
            grinding_factor: g,
            field_extension: e,
            fri_folding_factor: f,
            fri_remainder_max_degree: ((1u16 << lr) - 1) as u8,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any well-formed envelope survives encode/decode unchanged.
    #[test]
    fn envelope_round_trip(
        air in prop::sample::select(AirId::ALL.to_vec()),
        hash in prop::sample::select(HashId::ALL.to_vec()),
        preset in prop::option::of(prop::sample::select(Preset::ALL.to_vec())),
        params in arb_params(),
        public_inputs in prop::collection::vec(any::<u8>(), 0..200),
        proof in prop::collection::vec(any::<u8>(), 0..2000),
    ) {
        let options = preset.map_or(OptionsChoice::Explicit(params), OptionsChoice::Preset);
        let env = ProofEnvelope { air, hash, options, public_inputs, proof };
        let bytes = env.to_bytes().unwrap();
        prop_assert_eq!(&bytes[..8], &MAGIC[..]);
        prop_assert_eq!(ProofEnvelope::from_bytes(&bytes).unwrap(), env);
        // every strict prefix is rejected as truncated
        let cut = bytes.len() / 2;
        let truncated = matches!(ProofEnvelope::from_bytes(&bytes[..cut]), Err(Error::Truncated { .. }));
        prop_assert!(truncated);
        // trailing bytes are rejected
        let mut longer = bytes.clone();
        longer.push(0);
        let trailing = matches!(ProofEnvelope::from_bytes(&longer), Err(Error::TrailingBytes { .. }));
        prop_assert!(trailing);
    }

    /// Arbitrary bytes, with or without a valid header, never panic the verifier.
    #[test]
    fn arbitrary_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..600), header in any::<bool>()) {
        let mut bytes = Vec::new();
        if header {
            bytes.extend_from_slice(&MAGIC);
            bytes.extend_from_slice(&ENVELOPE_VERSION.to_le_bytes());
        }
        bytes.extend_from_slice(&tail);
        prop_assert!(verify_envelope(&bytes).is_err());
    }
}

#[test]
fn header_defects_are_typed() {
    let good = honest(HashId::Blake3_256);
    let mut b = good.clone();
    b[0] ^= 1;
    assert!(matches!(verify_envelope(&b), Err(Error::BadMagic { .. })));
    let mut b = good.clone();
    b[8] = 9;
    assert!(matches!(
        verify_envelope(&b),
        Err(Error::UnsupportedVersion { found: 9, .. })
    ));
    let mut b = good.clone();
    b[10] = 77;
    assert!(matches!(verify_envelope(&b), Err(Error::UnknownAir { .. })));
    let mut b = good.clone();
    b[11] = 0;
    assert!(matches!(
        verify_envelope(&b),
        Err(Error::UnknownHash { .. })
    ));
    let mut b = good.clone();
    b[12] = 200;
    assert!(matches!(
        verify_envelope(&b),
        Err(Error::UnknownPreset { .. })
    ));
    // A proof length over the limit is refused before anything is read or allocated.
    let env = ProofEnvelope::from_bytes(good).unwrap();
    let mut b = good[..13].to_vec();
    b.extend_from_slice(&(env.public_inputs.len() as u32).to_le_bytes());
    b.extend_from_slice(&env.public_inputs);
    b.extend_from_slice(&(MAX_PROOF_LEN as u32 + 1).to_le_bytes());
    assert!(matches!(
        verify_envelope(&b),
        Err(Error::TooLarge { what: "proof", .. })
    ));
    // Explicit options outside winterfell's limits are refused at decode time.
    let bad = ProofParams {
        blowup_factor: 6,
        ..Preset::Fast96.params()
    };
    let mut b = good[..12].to_vec();
    b.push(0);
    b.extend_from_slice(&[
        bad.num_queries,
        bad.blowup_factor,
        bad.grinding_factor,
        bad.field_extension,
        8,
        31,
    ]);
    assert!(matches!(
        verify_envelope(&b),
        Err(Error::InvalidOptions {
            field: "blowup_factor",
            ..
        })
    ));
}

#[test]
fn flipped_bytes_are_rejected_with_typed_errors() {
    let mut rng = ChaCha20Rng::from_entropy();
    for hash in HashId::ALL {
        let good = honest(hash);
        assert!(verify_envelope(good).is_ok());
        for _ in 0..150 {
            let mut b = good.clone();
            let flips = rng.gen_range(1..4);
            for _ in 0..flips {
                let i = rng.gen_range(0..b.len());
                b[i] ^= rng.gen_range(1..=255u8);
            }
            let err = verify_envelope(&b).expect_err("a corrupted envelope must not verify");
            // Every error renders a message (and none is a caught panic on this honest layout).
            assert!(!err.to_string().is_empty());
            assert!(
                !matches!(err, Error::VerifierPanicked { .. }),
                "{hash}: {err}"
            );
        }
        for _ in 0..50 {
            let cut = rng.gen_range(0..good.len());
            assert!(verify_envelope(&good[..cut]).is_err());
        }
    }
}

#[test]
fn explicit_options_verify_and_min_security_policy() {
    // An honest proof with weak explicit options verifies, but a policy can refuse it.
    let weak = ProofParams {
        num_queries: 8,
        ..Preset::Fast96.params()
    };
    let req = ProveRequest::RescueChain {
        seed: [BaseElement::new(7); 4],
        steps: 32,
    };
    let env = registry::prove(&req, OptionsChoice::Explicit(weak), HashId::Rp64_256).unwrap();
    let bytes = env.to_bytes().unwrap();
    let verified = verify_envelope(&bytes).unwrap();
    assert_eq!(verified.conjectured_bits, weak.conjectured_bits(128));
    assert!(verified.conjectured_bits < 96);
    assert!(matches!(
        verify_envelope_min_security(&bytes, 96),
        Err(Error::InsufficientSecurity { min_bits: 96, .. })
    ));
    assert!(verify_envelope_min_security(honest(HashId::Rp64_256), 96).is_ok());
}

/// Regression (found by the `proof_envelope` fuzz target): a proof whose out-of-domain frame
/// does not start with its frame size made winterfell's `OodFrame::parse` panic inside the
/// verifier. The shape check now refuses it as a malformed proof before winterfell sees it.
#[test]
fn ood_frame_size_is_checked_before_winterfell() {
    let params = ProofParams {
        num_queries: 4,
        blowup_factor: 8,
        grinding_factor: 0,
        field_extension: 2,
        fri_folding_factor: 4,
        fri_remainder_max_degree: 7,
    };
    let request = ProveRequest::RescueChain {
        seed: epa_prover::air::rescue_chain::seed_from_elements(&[]),
        steps: 4,
    };
    let mut bytes = registry::prove(&request, OptionsChoice::Explicit(params), HashId::ALL[0])
        .unwrap()
        .to_bytes()
        .unwrap();
    // The fuzzer's input `00 06 ff ff 01 01`: selector 0, one edit flipping bit 0 at 0xffff06.
    let len = bytes.len();
    bytes[0xff_ff06 % len] ^= 0x01;
    match verify_envelope(&bytes) {
        Err(Error::MalformedProof { reason, .. }) => {
            assert!(reason.contains("frame size"), "unexpected reason: {reason}")
        }
        other => panic!("expected a malformed-proof error, got {other:?}"),
    }
}
