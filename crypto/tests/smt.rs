//! Model-based property tests of the sparse Merkle tree.
//!
//! The model is a `BTreeMap<u64, Word>` of the non-empty leaves. Two references, written from
//! the hashing rules with `Rp64_256::merge` directly and sharing no code with the tree, give
//! roots and authentication paths: a dense one that hashes the full tree (depth 8) and a
//! sparse recursive one (depth 32).

use std::collections::BTreeMap;

use epa_crypto::smt::{MemStore, Smt, UpdateWitness, Word, verify_witness_chain};
use proptest::prelude::*;
use winter_crypto::{Hasher, hashers::Rp64_256};
use winter_math::fields::f64::BaseElement;

const ZERO_WORD: Word = [BaseElement::new(0); 4];

fn h(left: &Word, right: &Word) -> Word {
    Rp64_256::merge(&[(*left).into(), (*right).into()]).into()
}

/// `E[0..=64]` from the recurrence.
fn empties() -> Vec<Word> {
    let mut out = vec![ZERO_WORD];
    for level in 0..64 {
        let e = out[level];
        out.push(h(&e, &e));
    }
    out
}

/// Reference over the whole tree: every level of every node, for small depths.
struct Dense {
    levels: Vec<Vec<Word>>,
}

impl Dense {
    fn new(model: &BTreeMap<u64, Word>, depth: u8) -> Self {
        let mut leaves = vec![ZERO_WORD; 1 << depth];
        for (&key, &value) in model {
            leaves[key as usize] = value;
        }
        let mut levels = vec![leaves];
        for level in 0..usize::from(depth) {
            let next = levels[level]
                .chunks(2)
                .map(|pair| h(&pair[0], &pair[1]))
                .collect();
            levels.push(next);
        }
        Self { levels }
    }

    fn root(&self) -> Word {
        self.levels.last().expect("at least one level")[0]
    }

    fn path(&self, key: u64) -> Vec<Word> {
        let depth = self.levels.len() - 1;
        (0..depth)
            .map(|level| self.levels[level][((key >> level) ^ 1) as usize])
            .collect()
    }
}

/// Reference over the non-empty leaves only: recursive, for any depth below 64.
struct Sparse<'a> {
    model: &'a BTreeMap<u64, Word>,
    depth: u8,
    empties: &'a [Word],
}

impl Sparse<'_> {
    /// The root of the subtree of height `level` holding `entries` (sorted, one subtree).
    fn subtree(&self, entries: &[(u64, Word)], level: u8) -> Word {
        if entries.is_empty() {
            return self.empties[usize::from(level)];
        }
        if level == 0 {
            assert_eq!(entries.len(), 1);
            return entries[0].1;
        }
        let split = entries.partition_point(|(key, _)| (key >> (level - 1)) & 1 == 0);
        h(
            &self.subtree(&entries[..split], level - 1),
            &self.subtree(&entries[split..], level - 1),
        )
    }

    /// The node at `level` and `index`.
    fn node(&self, level: u8, index: u64) -> Word {
        let first = index << level;
        let last = first + ((1u64 << level) - 1);
        let entries: Vec<(u64, Word)> = self
            .model
            .range(first..=last)
            .map(|(&k, &v)| (k, v))
            .collect();
        self.subtree(&entries, level)
    }

    fn root(&self) -> Word {
        self.node(self.depth, 0)
    }

    fn path(&self, key: u64) -> Vec<Word> {
        (0..self.depth)
            .map(|level| self.node(level, (key >> level) ^ 1))
            .collect()
    }
}

/// Root and path of `key` in the model, from the reference that fits the depth.
fn reference(
    model: &BTreeMap<u64, Word>,
    depth: u8,
    empties: &[Word],
    key: u64,
) -> (Word, Vec<Word>) {
    if depth <= 10 {
        let dense = Dense::new(model, depth);
        (dense.root(), dense.path(key))
    } else {
        let sparse = Sparse {
            model,
            depth,
            empties,
        };
        (sparse.root(), sparse.path(key))
    }
}

fn apply(model: &mut BTreeMap<u64, Word>, key: u64, value: Word) {
    if value == ZERO_WORD {
        model.remove(&key);
    } else {
        model.insert(key, value);
    }
}

fn word(raw: [u64; 4]) -> Word {
    raw.map(BaseElement::new)
}

/// An update: a key from `keys` (so keys repeat) and either a delete or a random value.
fn update(keys: Vec<u64>) -> impl Strategy<Value = (u64, Word)> {
    (
        prop::sample::select(keys),
        prop_oneof![1 => Just(ZERO_WORD), 4 => any::<[u64; 4]>().prop_map(word)],
    )
}

/// Batches of updates for a tree of `depth`. Depth 8 draws from all keys; deeper trees draw
/// from a few random keys and their neighbours so that paths share upper levels.
fn batches(depth: u8) -> impl Strategy<Value = Vec<Vec<(u64, Word)>>> {
    let keys = if depth <= 8 {
        Just((0..1u64 << depth).collect::<Vec<_>>()).boxed()
    } else {
        let bound = 1u64 << depth;
        prop::collection::vec((0..bound, 0u64..8), 4..10)
            .prop_map(move |seeds| {
                seeds
                    .into_iter()
                    .flat_map(|(key, delta)| [key, key ^ delta, key ^ (bound >> 1)])
                    .collect::<Vec<_>>()
            })
            .boxed()
    };
    keys.prop_flat_map(|keys| {
        prop::collection::vec(prop::collection::vec(update(keys), 0..12), 1..4)
    })
}

/// Runs `batches` through `update_batch` and checks every witness, root, value and proof
/// against the model and the reference.
fn check_against_model(depth: u8, batches: &[Vec<(u64, Word)>]) -> Result<(), TestCaseError> {
    let empties = empties();
    let mut tree = Smt::new(depth, MemStore::new()).expect("valid depth");
    let mut model = BTreeMap::new();
    let mut touched = Vec::new();
    for batch in batches {
        let start_root = tree.root();
        let witnesses = tree.update_batch(batch).expect("keys are in range");
        prop_assert_eq!(witnesses.len(), batch.len());
        prop_assert!(verify_witness_chain(depth, &start_root, &witnesses));
        for (witness, &(key, value)) in witnesses.iter().zip(batch) {
            let (old_root, path) = reference(&model, depth, &empties, key);
            prop_assert_eq!(witness.key, key);
            prop_assert_eq!(
                witness.old_value,
                model.get(&key).copied().unwrap_or(ZERO_WORD)
            );
            prop_assert_eq!(witness.new_value, value);
            prop_assert_eq!(&witness.siblings, &path);
            prop_assert_eq!(witness.old_root, old_root);
            apply(&mut model, key, value);
            let (new_root, _) = reference(&model, depth, &empties, key);
            prop_assert_eq!(witness.new_root, new_root);
            prop_assert!(witness.verify());
            touched.push(key);
        }
        let (root, _) = reference(&model, depth, &empties, 0);
        prop_assert_eq!(tree.root(), root);
    }
    // A reopened tree reads the same root; values and proofs match the model.
    let tree = Smt::new(depth, tree.into_store()).expect("valid depth");
    let root = tree.root();
    touched.push(0);
    touched.push((1u64 << depth) - 1);
    for key in touched {
        let expected = model.get(&key).copied().unwrap_or(ZERO_WORD);
        prop_assert_eq!(tree.get(key).expect("in range"), expected);
        let proof = tree.prove(key).expect("in range");
        prop_assert_eq!(proof.value, expected);
        prop_assert_eq!(&proof.siblings, &reference(&model, depth, &empties, key).1);
        prop_assert!(proof.verify(&root, depth));
    }
    Ok(())
}

/// Runs the same updates as one batch, as single inserts, and as a bottom-up batch.
fn check_batch_equals_sequential(depth: u8, updates: &[(u64, Word)]) -> Result<(), TestCaseError> {
    let mut batched = Smt::new(depth, MemStore::new()).expect("valid depth");
    let mut single = Smt::new(depth, MemStore::new()).expect("valid depth");
    let mut bottom_up = Smt::new(depth, MemStore::new()).expect("valid depth");
    let from_batch = batched.update_batch(updates).expect("in range");
    let from_single: Vec<UpdateWitness> = updates
        .iter()
        .map(|&(key, value)| single.insert(key, value).expect("in range"))
        .collect();
    prop_assert_eq!(&from_batch, &from_single);
    prop_assert_eq!(batched.root(), single.root());
    prop_assert_eq!(
        bottom_up.apply_batch(updates).expect("in range"),
        batched.root()
    );
    prop_assert_eq!(bottom_up.root(), batched.root());
    for store in [bottom_up.store(), single.store()] {
        prop_assert_eq!(store.leaf_count(), batched.store().leaf_count());
        prop_assert_eq!(store.node_count(), batched.store().node_count());
    }
    for &(key, _) in updates {
        let proof = batched.prove(key).expect("in range");
        prop_assert_eq!(&bottom_up.prove(key).expect("in range"), &proof);
        prop_assert_eq!(&single.prove(key).expect("in range"), &proof);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn depth8_matches_dense_reference(batches in batches(8)) {
        check_against_model(8, &batches)?;
    }

    #[test]
    fn depth32_matches_sparse_reference(batches in batches(32)) {
        check_against_model(32, &batches)?;
    }

    #[test]
    fn batch_equals_sequential_inserts(
        small in batches(8),
        large in batches(32),
    ) {
        check_batch_equals_sequential(8, &small.concat())?;
        check_batch_equals_sequential(32, &large.concat())?;
    }

    #[test]
    fn wrong_proofs_fail(
        batches in batches(32),
        pick in any::<prop::sample::Index>(),
        level in 0usize..32,
        other in any::<[u64; 4]>().prop_map(word),
    ) {
        let depth = 32;
        let mut tree = Smt::new(depth, MemStore::new()).expect("valid depth");
        let updates = batches.concat();
        tree.update_batch(&updates).expect("in range");
        let root = tree.root();
        let members: Vec<u64> = updates
            .iter()
            .map(|&(key, _)| key)
            .filter(|&key| tree.get(key).expect("in range") != ZERO_WORD)
            .collect();
        prop_assume!(!members.is_empty());
        let key = members[pick.index(members.len())];
        let proof = tree.prove(key).expect("in range");
        prop_assert!(proof.verify(&root, depth));

        let mut wrong = proof.clone();
        prop_assume!(other != proof.value);
        wrong.value = other;
        prop_assert!(!wrong.verify(&root, depth), "wrong value");
        wrong = proof.clone();
        wrong.value = ZERO_WORD;
        prop_assert!(!wrong.verify(&root, depth), "member claimed absent");

        let mut wrong = proof.clone();
        prop_assume!(other != proof.siblings[level]);
        wrong.siblings[level] = other;
        prop_assert!(!wrong.verify(&root, depth), "wrong sibling at {}", level);

        let mut wrong = proof.clone();
        wrong.key ^= 1 << level;
        prop_assert!(!wrong.verify(&root, depth), "wrong key bit {}", level);
        wrong.key = proof.key | (1 << depth);
        prop_assert!(!wrong.verify(&root, depth), "key out of range");

        prop_assert!(!proof.verify(&other, depth), "wrong root");
        prop_assert!(!proof.verify(&root, depth - 1), "wrong depth");
        let mut short = proof.clone();
        short.siblings.pop();
        prop_assert!(!short.verify(&root, depth), "short path");

        // A witness with a tampered path or root no longer verifies.
        let mut witness = tree.insert(key, other).expect("in range");
        prop_assert!(witness.verify());
        witness.siblings[level][0] += BaseElement::new(1);
        prop_assert!(!witness.verify(), "tampered witness path");
    }
}
