//! Batch ML-KEM-768 decapsulation: ours (`CpuBackend::decap_batch`, one thread and all threads)
//! against single-operation implementations called in a loop on one thread (libcrux packed
//! API with its own AVX2 dispatch, aws-lc-rs).
//!
//! Ids: `kem/decap/<impl>/<batch>`; criterion's throughput is in decapsulations per second.
//! `EPA_KEM_BENCH_MAX` caps the batch sizes (default 16384) for a quick run.

use aws_lc_rs::kem::{Ciphertext as AwsCiphertext, DecapsulationKey as AwsDk, ML_KEM_768};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crypto::kem::mlkem768::{Ciphertext, KeyPair};
use epa_kernels::{Backend, CpuBackend};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const SIZES: [usize; 4] = [1, 64, 1024, 16384];

fn max_size() -> usize {
    std::env::var("EPA_KEM_BENCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16384)
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(0x6b656d);
    let mut seed = [0u8; 64];
    rng.fill_bytes(&mut seed);
    let pair = KeyPair::from_seed(&seed);
    let cpu = CpuBackend::new().expect("the best ISA of this CPU is supported");
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool can be built");
    let all = rayon::current_num_threads();
    let aws_dk = AwsDk::new(&ML_KEM_768, pair.decapsulation_key.as_bytes().as_slice())
        .expect("aws-lc-rs accepts a FIPS 203 decapsulation key");
    let lib_dk =
        libcrux_ml_kem::mlkem768::MlKem768PrivateKey::from(pair.decapsulation_key.as_bytes());

    let mut group = c.benchmark_group("kem/decap");
    group.sample_size(10);
    for n in SIZES.into_iter().filter(|&n| n <= max_size()) {
        let cts: Vec<Ciphertext> = (0..n)
            .map(|_| {
                let mut m = [0u8; 32];
                rng.fill_bytes(&mut m);
                pair.encapsulation_key.encapsulate(&m).0
            })
            .collect();
        let lib_cts: Vec<_> = cts
            .iter()
            .map(|ct| libcrux_ml_kem::mlkem768::MlKem768Ciphertext::from(ct.as_bytes()))
            .collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(
            BenchmarkId::new(format!("epa-{}-1t", cpu.kem_path()), n),
            &cts,
            |b, cts| {
                b.iter(|| one_thread.install(|| cpu.decap_batch(&pair.decapsulation_key, cts)))
            },
        );
        group.bench_with_input(
            BenchmarkId::new(format!("epa-{}-{all}t", cpu.kem_path()), n),
            &cts,
            |b, cts| b.iter(|| cpu.decap_batch(&pair.decapsulation_key, cts)),
        );
        group.bench_with_input(BenchmarkId::new("libcrux-1t", n), &lib_cts, |b, cts| {
            b.iter(|| {
                cts.iter()
                    .map(|ct| libcrux_ml_kem::mlkem768::decapsulate(&lib_dk, ct))
                    .collect::<Vec<_>>()
            })
        });
        group.bench_with_input(BenchmarkId::new("aws-lc-rs-1t", n), &cts, |b, cts| {
            b.iter(|| {
                cts.iter()
                    .map(|ct| {
                        aws_dk
                            .decapsulate(AwsCiphertext::from(ct.as_bytes().as_slice()))
                            .expect("aws-lc-rs decapsulates a well-formed ciphertext")
                    })
                    .collect::<Vec<_>>()
            })
        });
    }
    group.finish();
}

mod group {
    // `criterion_group!` generates an undocumented public function.
    #![allow(missing_docs)]
    use super::*;
    criterion_group!(benches, bench);
}
criterion_main!(group::benches);
