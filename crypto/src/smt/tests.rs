//! Unit tests of the tree internals; the model-based property tests live in `tests/smt.rs`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_crypto::{Hasher, hashers::Rp64_256};
use winter_math::fields::f64::BaseElement;

use super::*;
use crate::Error;

fn random_word(rng: &mut impl Rng) -> Word {
    [(); 4].map(|()| BaseElement::new(rng.r#gen()))
}

/// A store whose writes can be made to fail, to check that a failed batch changes nothing.
#[derive(Default)]
struct FlakyStore {
    inner: MemStore,
    fail_writes: bool,
    batches: usize,
}

impl NodeStore for FlakyStore {
    fn get_leaf(&self, key: u64) -> Result<Option<Word>, Error> {
        self.inner.get_leaf(key)
    }

    fn get_node(&self, index: NodeIndex) -> Result<Option<Word>, Error> {
        self.inner.get_node(index)
    }

    fn write_batch(&mut self, batch: &WriteBatch) -> Result<(), Error> {
        if self.fail_writes {
            return Err(Error::SmtStore {
                message: "disk full".into(),
            });
        }
        self.batches += 1;
        self.inner.write_batch(batch)
    }
}

#[test]
fn merge_is_rp64_256_merge_of_the_two_digests() {
    let mut rng = ChaCha20Rng::from_entropy();
    let (a, b) = (random_word(&mut rng), random_word(&mut rng));
    let expected: Word = Rp64_256::merge(&[a.into(), b.into()]).into();
    assert_eq!(merge(&a, &b), expected);
    assert_ne!(merge(&a, &b), merge(&b, &a), "merge must be ordered");
}

#[test]
fn empty_roots_follow_the_recurrence() {
    assert_eq!(empty_subtree_root(0), EMPTY_WORD);
    let mut expected = EMPTY_WORD;
    for level in 1..=MAX_DEPTH {
        expected = Rp64_256::merge(&[expected.into(), expected.into()]).into();
        assert_eq!(empty_subtree_root(level), expected, "level {level}");
    }
    assert_eq!(empty_subtree_root(200), empty_subtree_root(MAX_DEPTH));
}

#[test]
fn depth_and_key_bounds() {
    assert_eq!(
        Smt::new(0, MemStore::new()).unwrap_err(),
        Error::SmtInvalidDepth { depth: 0 }
    );
    assert_eq!(
        Smt::new(65, MemStore::new()).unwrap_err(),
        Error::SmtInvalidDepth { depth: 65 }
    );
    let mut tree = Smt::new(8, MemStore::new()).expect("depth 8 is valid");
    assert_eq!(tree.root(), empty_subtree_root(8));
    assert_eq!(
        tree.get(256).unwrap_err(),
        Error::SmtKeyOutOfRange { key: 256, depth: 8 }
    );
    assert_eq!(
        tree.prove(1 << 40).unwrap_err(),
        Error::SmtKeyOutOfRange {
            key: 1 << 40,
            depth: 8
        }
    );
    // A bad key anywhere in a batch rejects the whole batch before anything changes.
    let value = [BaseElement::new(1); 4];
    assert!(tree.update_batch(&[(3, value), (300, value)]).is_err());
    assert!(tree.apply_batch(&[(3, value), (300, value)]).is_err());
    assert_eq!(tree.root(), empty_subtree_root(8));
    assert_eq!(tree.store().leaf_count(), 0);
    // Depth 64 takes every key.
    let mut full = Smt::new(64, MemStore::new()).expect("depth 64 is valid");
    let witness = full
        .insert(u64::MAX, value)
        .expect("u64::MAX fits depth 64");
    assert!(witness.verify());
    assert!(
        full.prove(u64::MAX)
            .expect("in range")
            .verify(&full.root(), 64)
    );
    assert_eq!(path_index(u64::MAX, 64), 0);
}

#[test]
fn failed_store_write_leaves_tree_unchanged() {
    let mut rng = ChaCha20Rng::from_entropy();
    let mut tree = Smt::new(16, FlakyStore::default()).expect("valid depth");
    let first: Vec<(u64, Word)> = (0..20)
        .map(|_| (rng.gen_range(0..1 << 16), random_word(&mut rng)))
        .collect();
    tree.update_batch(&first).expect("store accepts writes");
    let root = tree.root();
    let mut store = tree.into_store();
    store.fail_writes = true;
    let mut tree = Smt::new(16, store).expect("reopening reads the stored root");
    assert_eq!(tree.root(), root, "root is read back from the store");
    let second = [(7, random_word(&mut rng))];
    assert!(matches!(
        tree.update_batch(&second),
        Err(Error::SmtStore { .. })
    ));
    assert!(matches!(
        tree.apply_batch(&second),
        Err(Error::SmtStore { .. })
    ));
    assert_eq!(tree.root(), root);
    assert_eq!(
        tree.store().batches,
        1,
        "one batch per successful update_batch"
    );
}

#[test]
fn deleting_everything_empties_the_store() {
    let mut rng = ChaCha20Rng::from_entropy();
    for use_apply in [false, true] {
        let mut tree = Smt::new(32, MemStore::new()).expect("valid depth");
        let keys: Vec<u64> = (0..50).map(|_| rng.gen_range(0..1 << 32)).collect();
        let inserts: Vec<(u64, Word)> = keys.iter().map(|&k| (k, random_word(&mut rng))).collect();
        tree.update_batch(&inserts).expect("in range");
        assert!(tree.store().node_count() > 0);
        let deletes: Vec<(u64, Word)> = keys.iter().map(|&k| (k, EMPTY_WORD)).collect();
        if use_apply {
            tree.apply_batch(&deletes).expect("in range");
        } else {
            tree.update_batch(&deletes).expect("in range");
        }
        assert_eq!(tree.root(), empty_subtree_root(32));
        assert_eq!(tree.store().leaf_count(), 0);
        assert_eq!(
            tree.store().node_count(),
            0,
            "stores keep only non-default nodes"
        );
    }
}

#[test]
fn rewriting_a_value_costs_nothing_and_keeps_the_root() {
    let mut rng = ChaCha20Rng::from_entropy();
    let mut tree = Smt::new(32, MemStore::new()).expect("valid depth");
    let value = random_word(&mut rng);
    let key = rng.gen_range(0..1 << 32);
    let first = tree.insert(key, value).expect("in range");
    let again = tree.insert(key, value).expect("in range");
    assert_eq!(again.old_root, first.new_root);
    assert_eq!(again.new_root, first.new_root);
    assert_eq!(again.siblings, first.siblings);
    assert!(again.verify());
    assert_eq!(
        tree.apply_batch(&[(key, value)]).expect("in range"),
        first.new_root
    );
}

#[test]
fn boxed_dyn_store_works() {
    let store: Box<dyn NodeStore> = Box::new(MemStore::new());
    let mut tree = Smt::new(DEFAULT_DEPTH, store).expect("valid depth");
    let value = [BaseElement::new(5); 4];
    tree.insert(9, value).expect("in range");
    assert_eq!(tree.get(9).expect("in range"), value);
    assert_eq!(tree.get(10).expect("in range"), EMPTY_WORD);
}

#[test]
fn threads_do_not_change_results() {
    let mut rng = ChaCha20Rng::from_entropy();
    // Enough updates that every level's merges are split across workers, with repeated keys.
    let keys: Vec<u64> = (0..150).map(|_| rng.gen_range(0..1 << 20)).collect();
    let updates: Vec<(u64, Word)> = (0..400)
        .map(|i| {
            let value = if i % 7 == 0 {
                EMPTY_WORD
            } else {
                random_word(&mut rng)
            };
            (keys[rng.gen_range(0..keys.len())], value)
        })
        .collect();
    let mut single = Smt::new(20, MemStore::new()).expect("valid depth");
    let mut parallel = Smt::new(20, MemStore::new()).expect("valid depth");
    parallel.set_threads(3);
    assert_eq!(parallel.threads(), 3);
    let start = single.root();
    let expected = single.update_batch(&updates).expect("in range");
    assert_eq!(parallel.update_batch(&updates).expect("in range"), expected);
    assert!(verify_witness_chain(20, &start, &expected));
    assert_eq!(parallel.root(), single.root());

    let more: Vec<(u64, Word)> = (0..300)
        .map(|_| (rng.gen_range(0..1 << 20), random_word(&mut rng)))
        .collect();
    let root = parallel.apply_batch(&more).expect("in range");
    assert_eq!(single.apply_batch(&more).expect("in range"), root);
    let witnesses = single.update_batch(&more).expect("in range");
    assert_eq!(
        witnesses.last().map(|w| w.new_root),
        Some(root),
        "rewriting the same values keeps the root"
    );
}
