//! `smt-update` proves in debug builds for every batch: winterfell's debug-build check that
//! each transition constraint has exactly its declared degree must never fire, including on
//! batches whose hash-state columns repeat (see the AIR's module docs, "Degrees").
//!
//! Each proof here is made by stock winterfell in the dev profile (debug assertions on, so the
//! degree check runs), then verified from its envelope bytes and checked against the batch.

use crypto::smt::{MemStore, Smt};
use epa_prover::air::smt_update::{
    self, EMPTY_WORD, SmtUpdate, SmtUpdatePublicInputs, SmtUpdateWitness, Word,
};
use epa_prover::envelope::verify_envelope;
use epa_prover::options::{HashId, Preset};
use epa_prover::prover::DefaultComponents;
use epa_prover::registry::{self, ProveRequest, Statement};
use epa_prover::workload::{SmtWorkload, random_word};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_crypto::hashers::Blake3_256;
use winter_math::fields::f64::BaseElement;
use winterfell::AcceptableOptions;

const DEPTH: u8 = 8;

/// Seeds of `SmtWorkload::new(8, seed)` whose 2-update batch used to trip the debug-build
/// degree check (the first update deletes an absent key of the empty tree).
const FORMERLY_FAILING: [u64; 8] = [3, 9, 21, 22, 25, 26, 35, 39];

/// Proves `witnesses` with stock winterfell (`fast-96`), verifies the envelope bytes and
/// checks that the verified statement is exactly the batch's.
fn prove_and_verify(witnesses: Vec<SmtUpdateWitness>, hash: HashId, what: &str) {
    let expected = SmtUpdatePublicInputs::from_witnesses(DEPTH, &witnesses)
        .unwrap_or_else(|e| panic!("{what}: statement: {e}"));
    let request = ProveRequest::SmtUpdate {
        depth: DEPTH,
        witnesses,
    };
    let envelope = registry::prove_stock(&request, Preset::Fast96.into(), hash)
        .unwrap_or_else(|e| panic!("{what}: prove: {e}"));
    let bytes = envelope
        .to_bytes()
        .unwrap_or_else(|e| panic!("{what}: encode: {e}"));
    let verified = verify_envelope(&bytes).unwrap_or_else(|e| panic!("{what}: verify: {e}"));
    assert_eq!(verified.hash, hash, "{what}");
    let Statement::SmtUpdate(statement) = verified.statement else {
        panic!("{what}: not an smt-update statement");
    };
    assert_eq!(statement, expected, "{what}");
}

/// 64 workload seeds (the formerly failing ones among them) with 2 and 3 updates at depth 8.
/// BLAKE3 commitments only: the degree check does not depend on the hash, and Rescue
/// commitments (with `fast-96`'s grinding) cost about ten times as much in the dev profile;
/// the repeating batches below use both.
#[test]
fn workload_batches_prove_and_verify_in_debug_builds() {
    assert!(FORMERLY_FAILING.iter().all(|&seed| seed < 64));
    for seed in 0..64u64 {
        for count in [2, 3] {
            let mut workload = SmtWorkload::new(DEPTH, seed).expect("depth 8 is valid");
            let witnesses = workload.next_batch(count).expect("random batch");
            if count == 2 && FORMERLY_FAILING.contains(&seed) {
                // the pattern that broke: a no-op on the empty tree comes first
                assert_eq!(
                    witnesses[0].old_value, witnesses[0].new_value,
                    "seed {seed}"
                );
                assert_eq!(witnesses[0].old_root, witnesses[0].new_root, "seed {seed}");
            }
            prove_and_verify(
                witnesses,
                HashId::Blake3_256,
                &format!("seed {seed}, {count} updates"),
            );
        }
    }
}

/// Batches built to repeat themselves: an empty-tree no-op before a write, the same no-op
/// twice (the whole trace repeats), a leaf toggled three times, and a no-op repeated four
/// times; fresh random keys and values each run.
#[test]
fn periodic_batches_prove_and_verify_in_debug_builds() {
    let mut rng = ChaCha20Rng::from_entropy();
    let key = |rng: &mut ChaCha20Rng| rng.gen_range(0..1u64 << DEPTH);
    for hash in HashId::ALL {
        let mut tree = Smt::new(DEPTH, MemStore::new()).expect("depth 8 is valid");
        let (k0, k1) = (key(&mut rng), key(&mut rng));
        let v1 = random_word(&mut rng);
        let w = tree
            .update_batch(&[(k0, EMPTY_WORD), (k1, v1)])
            .expect("keys in range");
        prove_and_verify(w, hash, "empty-tree no-op, then a write");

        let v0 = random_word(&mut rng);
        tree.update_batch(&[(k0, v0)]).expect("key in range");
        let w = tree
            .update_batch(&[(k0, v0), (k0, v0)])
            .expect("keys in range");
        prove_and_verify(w, hash, "the same no-op twice");

        let v2 = random_word(&mut rng);
        let w = tree
            .update_batch(&[(k0, v2), (k0, v0), (k0, v2)])
            .expect("keys in range");
        prove_and_verify(w, hash, "a leaf toggled three times");

        let w = tree
            .update_batch(&[(k1, v1), (k1, v1), (k1, v1), (k1, v1)])
            .expect("keys in range");
        prove_and_verify(w, hash, "one no-op four times");
    }
}

/// A proof of a repeating batch still binds its statement: another update list, value or
/// root is rejected.
#[test]
fn periodic_batch_proofs_still_bind_the_statement() {
    type Blake = Blake3_256<BaseElement>;
    let mut rng = ChaCha20Rng::from_entropy();
    let mut tree = Smt::new(DEPTH, MemStore::new()).expect("depth 8 is valid");
    let k = rng.gen_range(0..1u64 << DEPTH);
    let v: Word = random_word(&mut rng);
    tree.update_batch(&[(k, v)]).expect("key in range");
    let witnesses = tree.update_batch(&[(k, v), (k, v)]).expect("keys in range");
    let options = Preset::Fast96
        .params()
        .to_winterfell()
        .expect("preset options are valid");
    let acceptable = AcceptableOptions::OptionSet(vec![options.clone()]);
    let (proof, pi) = smt_update::prove(
        DEPTH,
        &witnesses,
        options,
        DefaultComponents::<Blake>::new(),
    )
    .expect("honest batch proves");
    smt_update::verify::<Blake>(proof.clone(), &pi, &acceptable).expect("honest proof verifies");

    let other_value = random_word(&mut rng);
    let mut updates: Vec<SmtUpdate> = pi.updates().to_vec();
    updates[1].new_value = other_value;
    let variants = [
        SmtUpdatePublicInputs::new(DEPTH, *pi.old_root(), *pi.new_root(), updates)
            .expect("valid statement"),
        SmtUpdatePublicInputs::new(DEPTH, *pi.old_root(), other_value, pi.updates().to_vec())
            .expect("valid statement"),
        SmtUpdatePublicInputs::new(DEPTH, other_value, *pi.new_root(), pi.updates().to_vec())
            .expect("valid statement"),
    ];
    for (i, wrong) in variants.iter().enumerate() {
        assert!(
            smt_update::verify::<Blake>(proof.clone(), wrong, &acceptable).is_err(),
            "altered statement {i} must be rejected"
        );
    }
}
