//! Criterion benches of the CPU backend against winter-math / winter-crypto, measured in the
//! same binary with the same flags.
//!
//! Ids: `ntt/<impl>/<log n>` (one column, 2^16 and 2^20), `lde/<impl>/<log n>` (16 columns of
//! 2^16 and 2^20, blowup 8), `merkle-rp64/<impl>/<log leaves>` (2^14..2^20); `<impl>` is `winter` or
//! `cpu-<isa>`. `EPA_BENCH_MAX_LOG` caps the sizes (default 20) so a quick run stays short
//! (winter-crypto needs about 20 s per 2^20-leaf tree here, times 10 samples;
//! `EPA_BENCH_MERKLE_MAX_LOG` caps the Merkle sizes alone).

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use epa_kernels::{Backend, ColumnMatrix, CpuBackend, Isa};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_crypto::{ElementHasher, MerkleTree, hashers::Rp64_256};
use winter_math::{StarkField, fft, fields::f64::BaseElement};

const LDE_COLUMNS: usize = 16;
const BLOWUP: usize = 8;

fn max_log() -> u32 {
    std::env::var("EPA_BENCH_MAX_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Cap of the Merkle sizes (`EPA_BENCH_MERKLE_MAX_LOG`, default [`max_log`]).
fn merkle_max_log() -> u32 {
    std::env::var("EPA_BENCH_MERKLE_MAX_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(max_log)
}

fn random(rng: &mut impl Rng, n: usize) -> Vec<BaseElement> {
    (0..n)
        .map(|_| BaseElement::new(rng.gen_range(0..BaseElement::MODULUS)))
        .collect()
}

fn backends() -> Vec<CpuBackend> {
    Isa::ALL
        .into_iter()
        .filter(|i| i.is_supported())
        .map(|i| CpuBackend::with_isa(i).expect("a supported ISA builds"))
        .collect()
}

fn ntt(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut g = c.benchmark_group("ntt");
    g.sample_size(10);
    for log_n in [16u32, 20].into_iter().filter(|l| *l <= max_log()) {
        let n = 1usize << log_n;
        let poly = random(&mut rng, n);
        let tw = fft::get_twiddles::<BaseElement>(n);
        g.bench_function(format!("winter/{log_n}"), |b| {
            b.iter_batched_ref(
                || poly.clone(),
                |p| fft::evaluate_poly(p, &tw),
                BatchSize::LargeInput,
            )
        });
        for be in backends() {
            let name = be.info().name;
            // Warm the twiddle cache outside the measurement.
            let mut warm = ColumnMatrix::new(vec![poly.clone()]).expect("valid shape");
            be.ntt(&mut warm).expect("ntt runs");
            g.bench_function(format!("{name}/{log_n}"), |b| {
                b.iter_batched_ref(
                    || ColumnMatrix::new(vec![poly.clone()]).expect("valid shape"),
                    |m| be.ntt(m).expect("ntt runs"),
                    BatchSize::LargeInput,
                )
            });
        }
    }
    g.finish();
}

fn lde(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut g = c.benchmark_group("lde");
    g.sample_size(10);
    for log_n in [16u32, 20]
        .into_iter()
        .filter(|l| *l + BLOWUP.ilog2() <= max_log() + 3)
    {
        let n = 1usize << log_n;
        let polys: Vec<Vec<BaseElement>> = (0..LDE_COLUMNS).map(|_| random(&mut rng, n)).collect();
        let tw = fft::get_twiddles::<BaseElement>(n);
        let offset = BaseElement::GENERATOR;
        g.bench_function(format!("winter/{log_n}"), |b| {
            b.iter(|| {
                polys
                    .iter()
                    .map(|p| fft::evaluate_poly_with_offset(p, &tw, offset, BLOWUP))
                    .collect::<Vec<_>>()
            })
        });
        let m = ColumnMatrix::new(polys.clone()).expect("valid shape");
        for be in backends() {
            let name = be.info().name;
            be.coset_lde(&m, BLOWUP, offset).expect("lde runs");
            g.bench_function(format!("{name}/{log_n}"), |b| {
                b.iter(|| be.coset_lde(&m, BLOWUP, offset).expect("lde runs"))
            });
        }
    }
    g.finish();
}

fn merkle(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut g = c.benchmark_group("merkle-rp64");
    g.sample_size(10);
    for log_n in (14u32..=20).step_by(2).filter(|l| *l <= merkle_max_log()) {
        let n = 1usize << log_n;
        let leaves: Vec<_> = (0..n)
            .map(|_| Rp64_256::hash_elements(&random(&mut rng, 4)))
            .collect();
        g.bench_function(format!("winter/{log_n}"), |b| {
            b.iter_batched(
                || leaves.clone(),
                |l| MerkleTree::<Rp64_256>::new(l).expect("valid tree"),
                BatchSize::LargeInput,
            )
        });
        for be in backends().into_iter().filter(|b| b.isa() != Isa::Scalar) {
            let name = be.info().name;
            g.bench_function(format!("{name}/{log_n}"), |b| {
                b.iter_batched(
                    || leaves.clone(),
                    |l| be.merkle_tree_rp64_256(l).expect("valid tree"),
                    BatchSize::LargeInput,
                )
            });
        }
    }
    g.finish();
}

mod group {
    // `criterion_group!` generates an undocumented public function.
    #![allow(missing_docs)]
    use super::*;
    criterion_group!(benches, ntt, lde, merkle);
}
criterion_main!(group::benches);
