//! Post-quantum primitive benchmarks: ML-KEM-768 encapsulation and decapsulation, ML-DSA-65
//! signing and verification, and transaction sealing/opening.
//!
//! `cargo bench -p epa-crypto --bench pq`

use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use epa_crypto::dsa::mldsa65;
use epa_crypto::kem::mlkem768;
use epa_crypto::seal::{TxContext, open_transaction, seal_transaction};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn mlkem768(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let pair = mlkem768::KeyPair::generate(&mut rng).expect("seeded rng");
    let (ct, _) = pair.encapsulation_key.encapsulate(&[7; 32]);
    let mut g = c.benchmark_group("mlkem768");
    g.throughput(Throughput::Elements(1));
    g.bench_function("keygen", |b| {
        b.iter(|| mlkem768::KeyPair::from_seed(black_box(&[3; 64])))
    });
    g.bench_function("encaps", |b| {
        b.iter(|| pair.encapsulation_key.encapsulate(black_box(&[5; 32])))
    });
    g.bench_function("decaps", |b| {
        b.iter(|| pair.decapsulation_key.decapsulate(black_box(&ct)))
    });
    g.bench_function("parse-ek", |b| {
        b.iter(|| {
            mlkem768::EncapsulationKey::from_bytes(black_box(pair.encapsulation_key.as_bytes()))
        })
    });
    g.finish();
}

fn mldsa65(c: &mut Criterion) {
    let pair = mldsa65::KeyPair::from_seed(&[1; 32]);
    let msg = [0x42u8; 256];
    let sig = pair
        .signing_key
        .sign(&msg, b"bench", &[0; 32])
        .expect("signing terminates");
    let mut g = c.benchmark_group("mldsa65");
    g.throughput(Throughput::Elements(1));
    g.bench_function("keygen", |b| {
        b.iter(|| mldsa65::KeyPair::from_seed(black_box(&[2; 32])))
    });
    g.bench_function("sign", |b| {
        b.iter(|| {
            pair.signing_key
                .sign(black_box(&msg), b"bench", &[9; 32])
                .expect("signing terminates")
        })
    });
    g.bench_function("verify", |b| {
        b.iter(|| {
            pair.verifying_key
                .verify(black_box(&msg), b"bench", &sig)
                .expect("valid signature")
        })
    });
    g.finish();
}

fn seal(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let pair = mlkem768::KeyPair::generate(&mut rng).expect("seeded rng");
    let ctx = TxContext { shard: 1, batch: 2 };
    let payload = vec![0x17u8; 512];
    let mut g = c.benchmark_group("seal");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("seal/512", |b| {
        b.iter(|| seal_transaction(&pair.encapsulation_key, black_box(&payload), &ctx, &mut rng))
    });
    g.bench_function("open/512", |b| {
        b.iter_batched(
            || seal_transaction(&pair.encapsulation_key, &payload, &ctx, &mut rng).expect("seal"),
            |tx| open_transaction(&pair.decapsulation_key, &tx, &ctx).expect("open"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// The benchmark group (in a private module: the macro's function needs no public docs).
mod group {
    use super::*;
    criterion_group!(benches, mlkem768, mldsa65, seal);
}
criterion_main!(group::benches);
