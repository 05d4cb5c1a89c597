//! Presets reach their documented conjectured security, measured on real proofs with
//! winterfell's own estimate.

use epa_prover::options::{HashId, Preset, ProofParams};
use epa_prover::registry::{self, ProveRequest};
use proptest::prelude::*;
use winter_crypto::Hasher;
use winter_crypto::hashers::{Blake3_256, Rp64_256};
use winter_math::fields::f64::BaseElement;
use winter_prover::proof::Context;
use winterfell::{Proof, TraceInfo};

fn winterfell_bits(proof: &Proof, hash: HashId) -> u32 {
    match hash {
        HashId::Blake3_256 => proof
            .conjectured_security::<Blake3_256<BaseElement>>()
            .bits(),
        HashId::Rp64_256 => proof.conjectured_security::<Rp64_256>().bits(),
        _ => unreachable!("only two hashes exist"),
    }
}

#[test]
fn presets_reach_their_security_level() {
    for preset in Preset::ALL {
        for hash in HashId::ALL {
            let req = ProveRequest::RescueChain {
                seed: [BaseElement::new(3); 4],
                steps: 16,
            };
            let env = registry::prove(&req, preset.into(), hash).unwrap();
            let proof = Proof::from_bytes(&env.proof).unwrap();
            let bits = winterfell_bits(&proof, hash);
            assert!(bits >= preset.target_bits(), "{preset}/{hash}: {bits} bits");
            assert_eq!(
                bits,
                preset.params().conjectured_bits(128),
                "{preset}/{hash}"
            );
            assert_eq!(proof.options(), &preset.params().to_winterfell().unwrap());
        }
    }
    assert_eq!(Blake3_256::<BaseElement>::COLLISION_RESISTANCE, 128);
    assert_eq!(Rp64_256::COLLISION_RESISTANCE, 128);
    // 128 bits needs the cubic extension over Goldilocks.
    assert_eq!(Preset::Secure128.params().field_extension, 3);
    let quadratic = ProofParams {
        field_extension: 2,
        ..Preset::Secure128.params()
    };
    assert!(quadratic.conjectured_bits(128) < 128);
}

#[test]
fn names_round_trip() {
    for p in Preset::ALL {
        assert_eq!(p.name().parse::<Preset>().unwrap(), p);
        assert_eq!(Preset::from_wire_id(p.wire_id()).unwrap(), p);
    }
    for h in HashId::ALL {
        assert_eq!(h.name().parse::<HashId>().unwrap(), h);
        assert_eq!(HashId::from_wire_id(h.wire_id()).unwrap(), h);
    }
    assert!("fast-80".parse::<Preset>().is_err());
    assert!("sha3".parse::<HashId>().is_err());
}

proptest! {
    /// Our security formula equals winterfell's `ConjecturedSecurity::compute` for any valid
    /// parameters, and validation accepts exactly what `ProofOptions::new` accepts.
    #[test]
    fn security_formula_matches_winterfell(
        q in 1u8..=255, lb in 3u32..=7, g in 0u8..=32, e in 1u8..=3,
        f in prop::sample::select(vec![2u8, 4, 8, 16]), lr in 0u32..=8,
    ) {
        let p = ProofParams {
            num_queries: q, blowup_factor: 1 << lb, grinding_factor: g, field_extension: e,
            fri_folding_factor: f, fri_remainder_max_degree: ((1u16 << lr) - 1) as u8,
        };
        let options = p.to_winterfell().unwrap();
        let mut proof = Proof::new_dummy();
        proof.context = Context::new::<BaseElement>(TraceInfo::new(12, 256), options, 1);
        prop_assert_eq!(p.conjectured_bits(128), proof.conjectured_security::<Rp64_256>().bits());
        prop_assert_eq!(p.conjectured_bits(128), proof.conjectured_security::<Blake3_256<BaseElement>>().bits());
    }

    /// Invalid explicit parameters are refused with a typed error instead of winterfell's panic.
    #[test]
    fn invalid_params_are_refused(q in any::<u8>(), b in any::<u8>(), g in any::<u8>(), e in any::<u8>(), f in any::<u8>(), r in any::<u8>()) {
        let p = ProofParams { num_queries: q, blowup_factor: b, grinding_factor: g, field_extension: e, fri_folding_factor: f, fri_remainder_max_degree: r };
        let valid = q > 0 && b.is_power_of_two() && (8..=128).contains(&b) && g <= 32 && (1..=3).contains(&e)
            && matches!(f, 2 | 4 | 8 | 16) && (u16::from(r) + 1).is_power_of_two();
        prop_assert_eq!(p.to_winterfell().is_ok(), valid);
    }
}
