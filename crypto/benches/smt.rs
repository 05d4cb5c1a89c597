//! Sparse Merkle tree benches (depth 32, `MemStore`).
//!
//! Every update bench writes `n` fresh random keys into a tree that already holds 16 384 random
//! keys (the pre-filled store is cloned outside the timed part):
//!
//! - `smt/batch_update/{1k,16k}`: `Smt::update_batch`, with one witness per update, hashing
//!   on the calling thread; `smt/batch_update_<n>threads/...` the same on all `n` cores;
//! - `smt/sequential_insert/{1k,16k}`: the naive path, one `Smt::insert` (own witness, own store
//!   write) per key;
//! - `smt/apply_batch/{1k,16k}`: `Smt::apply_batch`, the bottom-up pass without witnesses;
//! - `smt/prove` and `smt/verify`: one membership proof in the pre-filled tree.

use criterion::{BatchSize, Criterion};
use epa_crypto::smt::{MemStore, Smt, Word};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::hint::black_box;
use winter_math::fields::f64::BaseElement;

const DEPTH: u8 = 32;
const PREFILL: usize = 16 * 1024;

fn random_updates(rng: &mut ChaCha20Rng, n: usize) -> Vec<(u64, Word)> {
    (0..n)
        .map(|_| {
            let key = rng.gen_range(0..1u64 << DEPTH);
            (key, [(); 4].map(|()| BaseElement::new(rng.r#gen())))
        })
        .collect()
}

fn prefilled(rng: &mut ChaCha20Rng) -> MemStore {
    let mut tree = Smt::new(DEPTH, MemStore::new()).expect("depth 32 is valid");
    tree.apply_batch(&random_updates(rng, PREFILL))
        .expect("keys are in range");
    tree.into_store()
}

fn bench_updates(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(0x5eed);
    let base = prefilled(&mut rng);
    let mut group = c.benchmark_group("smt");
    group.sample_size(10);
    for (name, n) in [("1k", 1024usize), ("16k", 16 * 1024)] {
        let updates = random_updates(&mut rng, n);
        group.bench_function(format!("batch_update/{name}"), |b| {
            b.iter_batched(
                || Smt::new(DEPTH, base.clone()).expect("depth 32 is valid"),
                |mut tree| {
                    let witnesses = tree.update_batch(&updates).expect("keys are in range");
                    black_box((tree, witnesses))
                },
                BatchSize::LargeInput,
            )
        });
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        group.bench_function(format!("batch_update_{threads}threads/{name}"), |b| {
            b.iter_batched(
                || {
                    let mut tree = Smt::new(DEPTH, base.clone()).expect("depth 32 is valid");
                    tree.set_threads(threads);
                    tree
                },
                |mut tree| {
                    let witnesses = tree.update_batch(&updates).expect("keys are in range");
                    black_box((tree, witnesses))
                },
                BatchSize::LargeInput,
            )
        });
        group.bench_function(format!("sequential_insert/{name}"), |b| {
            b.iter_batched(
                || Smt::new(DEPTH, base.clone()).expect("depth 32 is valid"),
                |mut tree| {
                    let witnesses: Vec<_> = updates
                        .iter()
                        .map(|&(key, value)| tree.insert(key, value).expect("key is in range"))
                        .collect();
                    black_box((tree, witnesses))
                },
                BatchSize::LargeInput,
            )
        });
        group.bench_function(format!("apply_batch/{name}"), |b| {
            b.iter_batched(
                || Smt::new(DEPTH, base.clone()).expect("depth 32 is valid"),
                |mut tree| {
                    let root = tree.apply_batch(&updates).expect("keys are in range");
                    black_box((tree, root))
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn bench_proofs(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(0xbeef);
    let mut tree = Smt::new(DEPTH, MemStore::new()).expect("depth 32 is valid");
    let updates = random_updates(&mut rng, PREFILL);
    tree.apply_batch(&updates).expect("keys are in range");
    let root = tree.root();
    let key = updates[PREFILL / 2].0;
    c.bench_function("smt/prove", |b| {
        b.iter(|| tree.prove(black_box(key)).expect("key is in range"))
    });
    let proof = tree.prove(key).expect("key is in range");
    assert!(proof.verify(&root, DEPTH));
    c.bench_function("smt/verify", |b| {
        b.iter(|| black_box(&proof).verify(&root, DEPTH))
    });
}

fn main() {
    // `criterion_group!` would generate an undocumented public function; this is its expansion.
    let mut c = Criterion::default().configure_from_args();
    bench_updates(&mut c);
    bench_proofs(&mut c);
    c.final_summary();
}
