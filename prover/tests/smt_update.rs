//! `smt-update` end to end: batches from `crypto::smt` are proved and verified with both
//! commitment hashes; forged witnesses and altered statements never verify.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crypto::smt::{MemStore, Smt};
use epa_prover::Error;
use epa_prover::air::smt_update::{
    self, COL_NEW, COL_SIBLING, SmtUpdate, SmtUpdatePublicInputs, SmtUpdateWitness, Word,
    build_trace, build_trace_unverified, prove_trace, root_from_path,
};
use epa_prover::options::{OptionsChoice, Preset};
use epa_prover::prover::DefaultComponents;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_crypto::ElementHasher;
use winter_crypto::hashers::{Blake3_256, Rp64_256};
use winter_math::{FieldElement, StarkField, fields::f64::BaseElement};
use winterfell::{AcceptableOptions, BatchingMethod, FieldExtension, Proof, ProofOptions, Trace};

type Blake = Blake3_256<BaseElement>;

/// Small, fast options (tests only; security is not the point here).
fn test_options() -> ProofOptions {
    ProofOptions::new(
        12,
        8,
        0,
        FieldExtension::Quadratic,
        4,
        7,
        BatchingMethod::Linear,
        BatchingMethod::Linear,
    )
}

fn acceptable() -> AcceptableOptions {
    AcceptableOptions::OptionSet(vec![test_options()])
}

fn random_word(rng: &mut ChaCha20Rng) -> Word {
    [(); 4].map(|_| BaseElement::new(rng.r#gen::<u64>() % BaseElement::MODULUS))
}

fn random_key(rng: &mut ChaCha20Rng, depth: u8) -> u64 {
    if depth >= 64 {
        rng.r#gen()
    } else {
        rng.gen_range(0..1u64 << depth)
    }
}

/// A random tree of `depth` with a few leaves, and witnesses of `count` random updates on it
/// (keys may repeat, values may be empty = deletions).
fn random_batch(depth: u8, count: usize, seed: u64) -> Vec<SmtUpdateWitness> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut tree = Smt::new(depth, MemStore::new()).expect("valid depth");
    let prefill: Vec<(u64, Word)> = (0..5)
        .map(|_| (random_key(&mut rng, depth), random_word(&mut rng)))
        .collect();
    tree.update_batch(&prefill).expect("keys in range");
    let mut updates: Vec<(u64, Word)> = Vec::with_capacity(count);
    for i in 0..count {
        let key = match i % 3 {
            // update an existing key or repeat one from this batch
            1 => prefill[rng.gen_range(0..prefill.len())].0,
            2 if i > 0 => updates[rng.gen_range(0..i)].0,
            _ => random_key(&mut rng, depth),
        };
        let value = if rng.gen_ratio(1, 6) {
            [BaseElement::ZERO; 4]
        } else {
            random_word(&mut rng)
        };
        updates.push((key, value));
    }
    let witnesses = tree.update_batch(&updates).expect("keys in range");
    assert_eq!(witnesses[count - 1].new_root, tree.root());
    witnesses
}

fn prove_with<H>(depth: u8, witnesses: &[SmtUpdateWitness]) -> (Proof, SmtUpdatePublicInputs)
where
    H: ElementHasher<BaseField = BaseElement> + Send + Sync,
{
    smt_update::prove(
        depth,
        witnesses,
        test_options(),
        DefaultComponents::<H>::new(),
    )
    .expect("honest batch proves")
}

/// Proving `trace` against `pi` must never give a proof that verifies: winterfell's debug
/// build panics on an invalid trace, an optimised build yields a proof the verifier rejects.
fn assert_never_verifies<H>(trace: winterfell::TraceTable<BaseElement>, pi: &SmtUpdatePublicInputs)
where
    H: ElementHasher<BaseField = BaseElement> + Send + Sync,
{
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        prove_trace(
            trace,
            pi.clone(),
            test_options(),
            DefaultComponents::<H>::new(),
        )
    }));
    if let Ok(Ok((proof, _))) = outcome {
        let verdict = smt_update::verify::<H>(proof, pi, &acceptable());
        assert!(
            verdict.is_err(),
            "a forged trace produced a verifying proof"
        );
    }
}

fn check_honest<H>(depth: u8, count: usize, seed: u64)
where
    H: ElementHasher<BaseField = BaseElement> + Send + Sync,
{
    let witnesses = random_batch(depth, count, seed);
    let (proof, pi) = prove_with::<H>(depth, &witnesses);
    assert_eq!(pi.old_root(), &witnesses[0].old_root);
    assert_eq!(pi.new_root(), &witnesses[count - 1].new_root);
    assert_eq!(pi.updates().len(), count);
    // the statement travels as bytes and the proof as bytes
    let pi = SmtUpdatePublicInputs::from_bytes(&pi.to_bytes()).expect("canonical bytes");
    let proof = Proof::from_bytes(&proof.to_bytes()).expect("canonical proof bytes");
    smt_update::verify::<H>(proof, &pi, &acceptable()).expect("honest proof verifies");
}

#[test]
fn honest_batches_verify_with_blake3() {
    for (depth, count, seed) in [(4, 1, 1), (5, 3, 2), (6, 8, 3), (8, 5, 4), (7, 2, 5)] {
        check_honest::<Blake>(depth, count, seed);
    }
}

#[test]
fn honest_batches_verify_with_rescue() {
    for (depth, count, seed) in [(4, 2, 11), (8, 4, 12), (6, 1, 13)] {
        check_honest::<Rp64_256>(depth, count, seed);
    }
}

#[test]
fn depth_32_batch_verifies() {
    check_honest::<Blake>(32, 2, 32);
}

#[test]
fn depth_64_batch_verifies() {
    check_honest::<Rp64_256>(64, 1, 64);
}

/// Degenerate-looking batches (key 0, the all-ones key, a no-op deletion, an update followed by
/// its own key) prove too: winterfell's debug-build degree checks hold for them.
#[test]
fn degenerate_batches_verify() {
    let depth = 8;
    let value: Word = [BaseElement::new(5); 4];
    for updates in [
        vec![(0u64, value)],
        vec![(255, value)],
        vec![(0, [BaseElement::ZERO; 4])],
        vec![(1, value), (0, value)],
        vec![(3, value), (3, [BaseElement::new(6); 4])],
    ] {
        let mut tree = Smt::new(depth, MemStore::new()).expect("valid depth");
        let witnesses = tree.update_batch(&updates).expect("keys in range");
        let (proof, pi) = prove_with::<Blake>(depth, &witnesses);
        assert_eq!(pi.new_root(), &tree.root());
        smt_update::verify::<Blake>(proof, &pi, &acceptable()).expect("honest proof verifies");
    }
}

/// A batch whose second half replays the first (the same write twice: the new path, `B`,
/// repeats with half the trace's period) proves in every build, debug included, and verifies:
/// the anchor terms keep every constraint at its declared degree (see the module docs of
/// `smt_update`, "Degrees"; `tests/smt_degrees.rs` covers more such batches).
#[test]
fn repeated_write_batch() {
    let depth = 8;
    let value: Word = [BaseElement::new(5); 4];
    let mut tree = Smt::new(depth, MemStore::new()).expect("valid depth");
    let witnesses = tree
        .update_batch(&[(3, value), (3, value)])
        .expect("keys in range");
    let (proof, pi) = prove_with::<Blake>(depth, &witnesses);
    assert_eq!(pi.new_root(), &tree.root());
    smt_update::verify::<Blake>(proof, &pi, &acceptable()).expect("honest proof verifies");
}

#[test]
fn works_with_the_fast_96_preset() {
    let witnesses = random_batch(16, 3, 96);
    let options = OptionsChoice::from(Preset::Fast96)
        .params()
        .to_winterfell()
        .expect("preset is valid");
    let (proof, pi) = smt_update::prove(
        16,
        &witnesses,
        options.clone(),
        DefaultComponents::<Rp64_256>::new(),
    )
    .expect("proves");
    let acceptable = AcceptableOptions::OptionSet(vec![options]);
    smt_update::verify::<Rp64_256>(proof, &pi, &acceptable).expect("verifies");
}

#[test]
fn too_small_blowup_is_a_typed_error() {
    let witnesses = random_batch(4, 1, 3);
    let options = ProofOptions::new(
        12,
        4,
        0,
        FieldExtension::None,
        4,
        7,
        BatchingMethod::Linear,
        BatchingMethod::Linear,
    );
    let result = smt_update::prove(4, &witnesses, options, DefaultComponents::<Blake>::new());
    assert!(matches!(
        result,
        Err(Error::InvalidOptions {
            field: "blowup_factor",
            value: 4,
            ..
        })
    ));
}

/// One honest proof checked against altered statements: another list, roots, key, value,
/// order, depth or batch size. None verifies.
#[test]
fn proof_does_not_verify_for_another_statement() {
    let depth = 6;
    let witnesses = random_batch(depth, 3, 77);
    let (proof, pi) = prove_with::<Blake>(depth, &witnesses);
    let mut rng = ChaCha20Rng::seed_from_u64(78);
    let updates = pi.updates().to_vec();

    let mut altered: Vec<SmtUpdatePublicInputs> = Vec::new();
    let make = |old: Word, new: Word, list: Vec<SmtUpdate>| {
        SmtUpdatePublicInputs::new(depth, old, new, list).expect("valid statement")
    };
    altered.push(make(random_word(&mut rng), *pi.new_root(), updates.clone()));
    altered.push(make(*pi.old_root(), random_word(&mut rng), updates.clone()));
    altered.push(make(*pi.new_root(), *pi.old_root(), updates.clone()));
    for i in 0..updates.len() {
        let mut list = updates.clone();
        list[i].key ^= 1 << rng.gen_range(0..depth);
        altered.push(make(*pi.old_root(), *pi.new_root(), list));
        let mut list = updates.clone();
        list[i].new_value[rng.gen_range(0..4)] += BaseElement::ONE;
        altered.push(make(*pi.old_root(), *pi.new_root(), list));
        let mut list = updates.clone();
        list[i].old_value[rng.gen_range(0..4)] += BaseElement::ONE;
        altered.push(make(*pi.old_root(), *pi.new_root(), list));
    }
    let mut list = updates.clone();
    list.swap(0, 2);
    altered.push(make(*pi.old_root(), *pi.new_root(), list));
    // same trace length (4 segments), one update fewer
    altered.push(make(*pi.old_root(), *pi.new_root(), updates[..2].to_vec()));
    // different trace lengths: refused on shape before winterfell runs
    let mut list = updates.clone();
    list.push(updates[2]);
    list.push(updates[2]);
    altered.push(make(*pi.old_root(), *pi.new_root(), list));
    altered.push(
        SmtUpdatePublicInputs::new(depth + 1, *pi.old_root(), *pi.new_root(), updates.clone())
            .expect("valid statement"),
    );

    for other in &altered {
        assert_ne!(other, &pi);
        let verdict = smt_update::verify::<Blake>(proof.clone(), other, &acceptable());
        assert!(
            matches!(
                verdict,
                Err(Error::Rejected { .. }) | Err(Error::MalformedProof { .. })
            ),
            "altered statement accepted or wrong error: {verdict:?}"
        );
    }
    // and the original still verifies; the other hash does not
    smt_update::verify::<Blake>(proof.clone(), &pi, &acceptable()).expect("original verifies");
    assert!(smt_update::verify::<Rp64_256>(proof, &pi, &acceptable()).is_err());
}

#[test]
fn forged_old_value_never_verifies() {
    let depth = 5;
    let mut witnesses = random_batch(depth, 3, 21);
    witnesses[1].old_value[2] += BaseElement::ONE;
    assert!(matches!(
        build_trace(depth, &witnesses),
        Err(Error::SmtPathMismatch {
            index: 1,
            which: "old"
        })
    ));
    let trace = build_trace_unverified(depth, &witnesses).expect("shape is fine");
    let pi = SmtUpdatePublicInputs::from_witnesses(depth, &witnesses).expect("valid");
    assert_never_verifies::<Blake>(trace, &pi);
}

#[test]
fn forged_sibling_never_verifies() {
    let depth = 6;
    let witnesses = random_batch(depth, 2, 22);
    let pi = SmtUpdatePublicInputs::from_witnesses(depth, &witnesses).expect("valid");

    // a wrong sibling in the witness (shared by both paths)
    let mut forged = witnesses.clone();
    forged[0].siblings[3][0] += BaseElement::ONE;
    assert!(build_trace(depth, &forged).is_err());
    let trace = build_trace_unverified(depth, &forged).expect("shape is fine");
    assert_never_verifies::<Blake>(trace, &pi);

    // a different sibling in the new path only: rewrite the sibling column and the new-path
    // input of one level, so the new path hashes to another root
    let mut trace = build_trace(depth, &witnesses).expect("honest");
    let layout = pi.layout();
    let row0 = layout.segment_start(1) + 2 * 8;
    for j in 0..4 {
        let bumped = trace.get(COL_SIBLING + j, row0) + BaseElement::ONE;
        trace.set(COL_SIBLING + j, row0, bumped);
        for col in [COL_NEW + 4 + j, COL_NEW + 8 + j] {
            let value = trace.get(col, row0);
            // only the sibling half changes; which half that is depends on the key bit, so
            // bump the half that equals the old sibling
            if value + BaseElement::ONE == bumped {
                trace.set(col, row0, bumped);
            }
        }
    }
    assert_never_verifies::<Blake>(trace, &pi);
}

#[test]
fn broken_chain_never_verifies() {
    let depth = 6;
    let first = random_batch(depth, 2, 31);
    let second = random_batch(depth, 2, 32);
    let forged = vec![first[0].clone(), second[1].clone()];
    assert!(forged[0].verify() && forged[1].verify());
    assert!(matches!(
        build_trace(depth, &forged),
        Err(Error::SmtBrokenChain { index: 1 })
    ));
    let trace = build_trace_unverified(depth, &forged).expect("shape is fine");
    let pi = SmtUpdatePublicInputs::from_witnesses(depth, &forged).expect("valid");
    assert_never_verifies::<Rp64_256>(trace, &pi);
}

/// A proof for a valid batch cannot be re-labelled with a made-up new root computed from a
/// different leaf value: the statement's list no longer matches the leaves in the trace.
#[test]
fn honest_trace_with_claimed_other_value_never_verifies() {
    let depth = 5;
    let witnesses = random_batch(depth, 2, 41);
    let trace = build_trace(depth, &witnesses).expect("honest");
    let mut list: Vec<SmtUpdate> = witnesses.iter().map(SmtUpdate::from).collect();
    list[1].new_value = [BaseElement::new(9); 4];
    let claimed_root = root_from_path(list[1].key, &list[1].new_value, &witnesses[1].siblings);
    let pi = SmtUpdatePublicInputs::new(depth, witnesses[0].old_root, claimed_root, list)
        .expect("valid statement");
    assert_never_verifies::<Blake>(trace, &pi);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Random small batches from `crypto::smt` prove and verify; flipping one listed key bit
    /// makes the same proof fail.
    #[test]
    fn random_batches_round_trip(depth in 4u8..=8, count in 1usize..=8, seed in any::<u64>()) {
        let witnesses = random_batch(depth, count, seed);
        let trace = build_trace(depth, &witnesses).expect("honest");
        prop_assert!(trace.length().is_power_of_two());
        let (proof, pi) = prove_with::<Blake>(depth, &witnesses);
        prop_assert!(smt_update::verify::<Blake>(proof.clone(), &pi, &acceptable()).is_ok());
        let mut list = pi.updates().to_vec();
        let i = (seed as usize) % count;
        list[i].key ^= 1 << ((seed >> 8) % u64::from(depth));
        let other = SmtUpdatePublicInputs::new(depth, *pi.old_root(), *pi.new_root(), list)
            .expect("valid statement");
        prop_assert!(smt_update::verify::<Blake>(proof, &other, &acceptable()).is_err());
    }
}
