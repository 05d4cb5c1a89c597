//! The store: shard SMT nodes against crypto's `MemStore`, staged writes, shard metadata and
//! the commitment log, all on a real RocksDB in a temporary directory.

use crypto::smt::{EMPTY_WORD, MemStore, NodeStore, Smt, Word};
use epa_scheduler::{JobId, ShardMeta, Store, StoreWrite, WriteSet};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_math::fields::f64::BaseElement;

const DEPTH: u8 = 20;

fn random_word(rng: &mut impl Rng) -> Word {
    [(); 4].map(|()| BaseElement::new(rng.r#gen()))
}

/// Random updates over a small key space so that keys repeat and some values are deleted.
fn random_updates(rng: &mut impl Rng, n: usize, keys: u64) -> Vec<(u64, Word)> {
    (0..n)
        .map(|_| {
            let key = rng.gen_range(0..keys) * ((1u64 << DEPTH) / keys);
            let value = if rng.gen_ratio(1, 5) {
                EMPTY_WORD
            } else {
                random_word(rng)
            };
            (key, value)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// `ShardNodeStore` behaves as `MemStore` under the SMT: same roots, witnesses, values and
    /// proofs after every round, and the same root after reopening the database.
    #[test]
    fn shard_node_store_matches_mem_store(seed in any::<u64>(), rounds in 1usize..5) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let dir = tempfile::tempdir().expect("tempdir");
        let shard = rng.r#gen::<u64>();
        let final_root;
        {
            let store = Store::open(dir.path()).expect("open");
            let mut db_tree = Smt::new(DEPTH, store.node_store(shard)).expect("tree");
            let mut mem_tree = Smt::new(DEPTH, MemStore::new()).expect("tree");
            for round in 0..rounds {
                let n = 1 + rng.gen_range(0..24);
                let updates = random_updates(&mut rng, n, 16);
                if round % 2 == 0 {
                    let a = db_tree.update_batch(&updates).expect("db update");
                    let b = mem_tree.update_batch(&updates).expect("mem update");
                    prop_assert_eq!(a, b);
                } else {
                    let a = db_tree.apply_batch(&updates).expect("db apply");
                    let b = mem_tree.apply_batch(&updates).expect("mem apply");
                    prop_assert_eq!(a, b);
                }
                prop_assert_eq!(db_tree.root(), mem_tree.root());
                for &(key, _) in &updates {
                    prop_assert_eq!(db_tree.get(key).expect("get"), mem_tree.get(key).expect("get"));
                    prop_assert_eq!(db_tree.prove(key).expect("prove"), mem_tree.prove(key).expect("prove"));
                }
            }
            final_root = mem_tree.root();
            // Another shard in the same database is untouched.
            let other = Smt::new(DEPTH, store.node_store(shard ^ 1)).expect("tree");
            prop_assert_eq!(other.root(), Smt::new(DEPTH, MemStore::new()).expect("tree").root());
        }
        let store = Store::open(dir.path()).expect("reopen");
        let reopened = Smt::new(DEPTH, store.node_store(shard)).expect("tree");
        prop_assert_eq!(reopened.root(), final_root);
    }

    /// Writes made through a `StagedNodeStore` and committed in a `WriteSet` give the same
    /// tree as direct writes; before the commit the database is unchanged.
    #[test]
    fn staged_writes_commit_atomically(seed in any::<u64>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let shard = 9;
        let mut mem_tree = Smt::new(DEPTH, MemStore::new()).expect("tree");
        let first = random_updates(&mut rng, 10, 32);
        mem_tree.update_batch(&first).expect("mem");
        Smt::new(DEPTH, store.node_store(shard)).expect("tree").update_batch(&first).expect("db");
        let root_before = mem_tree.root();

        let second = random_updates(&mut rng, 12, 32);
        let mut staged = Smt::new(DEPTH, store.staged_node_store(shard)).expect("tree");
        let witnesses = staged.update_batch(&second).expect("staged");
        prop_assert_eq!(witnesses, mem_tree.update_batch(&second).expect("mem"));
        prop_assert_eq!(staged.root(), mem_tree.root());
        // Nothing reached the database yet.
        prop_assert_eq!(Smt::new(DEPTH, store.node_store(shard)).expect("tree").root(), root_before);

        let mut staged_store = staged.into_store();
        let mut writes = WriteSet::new();
        writes
            .smt(shard, staged_store.take_batch())
            .shard_meta(shard, ShardMeta { root: mem_tree.root(), height: 2 });
        store.commit(&writes).expect("commit");
        prop_assert!(staged_store.pending().is_empty());
        prop_assert_eq!(Smt::new(DEPTH, store.node_store(shard)).expect("tree").root(), mem_tree.root());
        prop_assert_eq!(store.shard_meta(shard).expect("read"), Some(ShardMeta { root: mem_tree.root(), height: 2 }));
    }
}

#[test]
fn staged_store_reads_its_own_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut rng = ChaCha20Rng::from_entropy();
    let value = random_word(&mut rng);
    let mut direct = store.node_store(1);
    direct.put_leaf(5, value).expect("put");
    let mut staged = store.staged_node_store(1);
    assert_eq!(staged.get_leaf(5).expect("read"), Some(value));
    staged.delete_leaf(5).expect("delete");
    assert_eq!(
        staged.get_leaf(5).expect("read"),
        None,
        "the pending delete hides the stored leaf"
    );
    assert_eq!(
        direct.get_leaf(5).expect("read"),
        Some(value),
        "the database still has it"
    );
    assert_eq!(staged.pending().len(), 1);
}

#[test]
fn commitment_log_range_reads_stay_in_their_shard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut rng = ChaCha20Rng::from_entropy();
    let mut expected: Vec<Vec<(u64, Vec<u8>)>> = vec![Vec::new(); 3];
    let mut writes = WriteSet::new();
    for (shard, entries) in expected.iter_mut().enumerate() {
        for height in 1..=(5 + 3 * shard as u64) {
            let bytes: Vec<u8> = (0..rng.gen_range(1..40)).map(|_| rng.r#gen()).collect();
            writes.commitment(shard as u64, height, bytes.clone());
            entries.push((height, bytes));
        }
    }
    // A shard id whose big-endian bytes sort just after shard 1's keys must not leak in.
    writes.commitment(u64::MAX, 0, b"far".to_vec());
    store.commit(&writes).expect("commit");

    for (shard, entries) in expected.iter().enumerate() {
        let shard = shard as u64;
        assert_eq!(
            &store.commitments_from(shard, 0, usize::MAX).expect("read"),
            entries
        );
        assert_eq!(
            &store.commitments_from(shard, 3, 2).expect("read")[..],
            &entries[2..4]
        );
        let last = entries.last().expect("non-empty").0;
        assert!(
            store
                .commitments_from(shard, last + 1, 10)
                .expect("read")
                .is_empty()
        );
        assert_eq!(
            store.commitment(shard, 2).expect("read"),
            Some(entries[1].1.clone())
        );
    }
    assert!(store.commitments_from(7, 0, 10).expect("read").is_empty());
    assert_eq!(
        store.commitments_from(u64::MAX, 0, 10).expect("read"),
        vec![(0, b"far".to_vec())]
    );
}

#[test]
fn metadata_sequence_numbers_and_proofs_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = ChaCha20Rng::from_entropy();
    let meta = ShardMeta {
        root: random_word(&mut rng),
        height: rng.r#gen(),
    };
    let proof: Vec<u8> = (0..100).map(|_| rng.r#gen()).collect();
    let seq = rng.r#gen::<u64>();
    {
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.shard_meta(4).expect("read"), None);
        assert_eq!(store.aggregator_seq(4, b"agg-a").expect("read"), None);
        let mut writes = WriteSet::new();
        writes
            .shard_meta(4, meta)
            .aggregator_seq(4, b"agg-a", seq)
            .aggregator_seq(4, b"agg-b", seq.wrapping_add(1))
            .proof(JobId(11), proof.clone());
        writes.push(StoreWrite::AggregatorSeq {
            shard: 5,
            aggregator: b"agg-a".to_vec(),
            seq: 1,
        });
        store.commit(&writes).expect("commit");
    }
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.shard_meta(4).expect("read"), Some(meta));
    assert_eq!(store.shard_meta(5).expect("read"), None);
    assert_eq!(store.aggregator_seq(4, b"agg-a").expect("read"), Some(seq));
    assert_eq!(
        store.aggregator_seq(4, b"agg-b").expect("read"),
        Some(seq.wrapping_add(1))
    );
    assert_eq!(store.aggregator_seq(5, b"agg-a").expect("read"), Some(1));
    assert_eq!(store.aggregator_seq(4, b"agg").expect("read"), None);
    assert_eq!(store.proof(JobId(11)).expect("read"), Some(proof));
    assert_eq!(store.proof(JobId(12)).expect("read"), None);
}

#[test]
fn a_second_open_of_the_same_dir_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = Store::open(dir.path()).expect("open");
    let second = Store::open(dir.path());
    assert!(
        matches!(second, Err(epa_scheduler::SchedulerError::Storage { .. })),
        "RocksDB's lock must refuse a second opener: {second:?}"
    );
}

/// `[storage]` reaches RocksDB: the block cache capacity, the memtable size, the background
/// jobs and the open-file limit in force are the ones given, on random values.
#[test]
fn store_options_are_in_force() {
    let mut rng = rand::thread_rng();
    let dir = tempfile::tempdir().expect("tempdir");
    let options = epa_scheduler::StoreOptions {
        block_cache_bytes: rng.gen_range(8..64usize) << 20,
        write_buffer_bytes: rng.gen_range(1..32usize) << 20,
        max_background_jobs: rng.gen_range(1..16),
        max_open_files: Some(rng.gen_range(64..4096)),
    };
    let store = Store::open_with(dir.path(), &options).expect("opens");
    assert_eq!(
        store.property("rocksdb.block-cache-capacity"),
        Some(options.block_cache_bytes.to_string())
    );
    drop(store);
    // RocksDB writes the options it runs with into OPTIONS-* in the data dir.
    let written = std::fs::read_dir(dir.path())
        .expect("data dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("OPTIONS-"))
        .map(|e| std::fs::read_to_string(e.path()).expect("options file"))
        .max_by_key(String::len)
        .expect("an OPTIONS file");
    for line in [
        format!("max_background_jobs={}", options.max_background_jobs),
        format!("max_open_files={}", options.max_open_files.unwrap_or(-1)),
        format!("write_buffer_size={}", options.write_buffer_bytes),
    ] {
        assert!(
            written.lines().any(|l| l.trim() == line),
            "OPTIONS lacks `{line}`"
        );
    }
    // The defaults differ, so the test would notice options being ignored.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    assert_eq!(
        store.property("rocksdb.block-cache-capacity"),
        Some((256usize << 20).to_string())
    );
}
