//! Rescue-chain: trace against the reference chain, prove/verify round trips with both hashes,
//! wrong public inputs rejected, determinism.

use epa_prover::Error;
use epa_prover::air::rescue_chain::{
    self, PUBLIC_INPUTS_LEN, RescueChainPublicInputs, Word, build_trace, reference_chain,
};
use epa_prover::envelope::{ProofEnvelope, verify_envelope};
use epa_prover::options::{HashId, OptionsChoice, Preset};
use epa_prover::registry::{self, ProveRequest, Statement};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_math::fields::f64::BaseElement;
use winterfell::Trace;

fn random_word(rng: &mut impl Rng) -> Word {
    // Uniform canonical elements: rejection-sample below the modulus.
    core::array::from_fn(|_| {
        loop {
            let v: u64 = rng.r#gen();
            if v < 0xffff_ffff_0000_0001 {
                break BaseElement::new(v);
            }
        }
    })
}

fn prove_chain(seed: Word, steps: u64, hash: HashId) -> ProofEnvelope {
    registry::prove(
        &ProveRequest::RescueChain { seed, steps },
        Preset::Fast96.into(),
        hash,
    )
    .expect("a valid chain proves")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// The trace's result and every cycle's output equal winterfell's `Rp64_256::merge` chain.
    #[test]
    fn trace_matches_reference(seed_bits in any::<[u64; 4]>(), log_steps in 0u32..6) {
        let seed = seed_bits.map(BaseElement::new);
        let steps = 1u64 << log_steps;
        let (trace, pi) = build_trace(seed, steps).unwrap();
        prop_assert_eq!(trace.length(), 8 * steps as usize);
        prop_assert_eq!(pi.result, reference_chain(seed, steps));
        for k in 0..steps {
            let row = 8 * k as usize + 7;
            let out: Word = core::array::from_fn(|i| trace.get(4 + i, row));
            prop_assert_eq!(out, reference_chain(seed, k + 1));
        }
    }

    /// Public inputs round-trip through their canonical encoding.
    #[test]
    fn public_inputs_round_trip(seed_bits in any::<[u64; 4]>(), res_bits in any::<[u64; 4]>(), log_steps in 0u32..18) {
        let pi = RescueChainPublicInputs {
            seed: seed_bits.map(BaseElement::new),
            result: res_bits.map(BaseElement::new),
            steps: 1 << log_steps,
        };
        let bytes = pi.to_bytes();
        prop_assert_eq!(bytes.len(), PUBLIC_INPUTS_LEN);
        prop_assert_eq!(RescueChainPublicInputs::from_bytes(&bytes).unwrap(), pi);
    }
}

#[test]
fn public_inputs_reject_bad_encodings() {
    let pi = RescueChainPublicInputs {
        seed: [BaseElement::new(1); 4],
        result: [BaseElement::new(2); 4],
        steps: 4,
    };
    let good = pi.to_bytes();
    assert!(matches!(
        RescueChainPublicInputs::from_bytes(&good[..71]),
        Err(Error::InvalidPublicInputs { .. })
    ));
    let mut non_canonical = good.clone();
    non_canonical[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        RescueChainPublicInputs::from_bytes(&non_canonical),
        Err(Error::InvalidPublicInputs { .. })
    ));
    for steps in [0u64, 3, 6, rescue_chain::MAX_STEPS * 2] {
        let mut b = good.clone();
        b[64..].copy_from_slice(&steps.to_le_bytes());
        assert!(
            matches!(
                RescueChainPublicInputs::from_bytes(&b),
                Err(Error::InvalidPublicInputs { .. })
            ),
            "steps {steps}"
        );
    }
}

#[test]
fn round_trip_both_hashes() {
    let mut rng = ChaCha20Rng::from_entropy();
    for hash in HashId::ALL {
        for steps in [32u64, 128] {
            let seed = random_word(&mut rng);
            let env = prove_chain(seed, steps, hash);
            let verified =
                verify_envelope(&env.to_bytes().unwrap()).expect("honest proof verifies");
            assert_eq!(verified.hash, hash);
            assert_eq!(verified.conjectured_bits, 96);
            let Statement::RescueChain(pi) = verified.statement else {
                panic!("wrong statement kind")
            };
            assert_eq!(pi.seed, seed);
            assert_eq!(pi.steps, steps);
            assert_eq!(pi.result, reference_chain(seed, steps));
        }
    }
}

#[test]
fn wrong_public_inputs_rejected() {
    let mut rng = ChaCha20Rng::from_entropy();
    let seed = random_word(&mut rng);
    for hash in HashId::ALL {
        let env = prove_chain(seed, 32, hash);
        let pi = RescueChainPublicInputs::from_bytes(&env.public_inputs).unwrap();
        let i = rng.gen_range(0..4);
        let delta = BaseElement::new(rng.gen_range(1..u32::MAX as u64));

        let mut wrong_result = pi;
        wrong_result.result[i] += delta;
        let mut wrong_seed = pi;
        wrong_seed.seed[i] += delta;
        for bad in [wrong_result, wrong_seed] {
            let mut e = env.clone();
            e.public_inputs = bad.to_bytes();
            let err = verify_envelope(&e.to_bytes().unwrap()).unwrap_err();
            assert!(matches!(err, Error::Rejected { .. }), "{hash}: {err}");
        }
        // A different chain length implies a different trace length: caught before winterfell.
        let mut wrong_steps = pi;
        wrong_steps.steps = 64;
        let mut e = env.clone();
        e.public_inputs = wrong_steps.to_bytes();
        let err = verify_envelope(&e.to_bytes().unwrap()).unwrap_err();
        assert!(matches!(err, Error::MalformedProof { .. }), "{hash}: {err}");
        // The same proof presented under the other hash is rejected.
        let mut e = env.clone();
        e.hash = HashId::ALL.into_iter().find(|h| *h != hash).unwrap();
        assert!(verify_envelope(&e.to_bytes().unwrap()).is_err());
        // ... and under other options.
        let mut e = env.clone();
        e.options = OptionsChoice::Preset(Preset::Secure128);
        assert!(matches!(
            verify_envelope(&e.to_bytes().unwrap()),
            Err(Error::MalformedProof { .. })
        ));
    }
}

#[test]
fn proofs_are_deterministic() {
    let mut rng = ChaCha20Rng::from_entropy();
    let seed = random_word(&mut rng);
    for hash in HashId::ALL {
        let a = prove_chain(seed, 32, hash).to_bytes().unwrap();
        let b = prove_chain(seed, 32, hash).to_bytes().unwrap();
        assert_eq!(a, b, "{hash}: same inputs must give the same proof bytes");
        let other = prove_chain(random_word(&mut rng), 32, hash)
            .to_bytes()
            .unwrap();
        assert_ne!(a, other);
    }
}
