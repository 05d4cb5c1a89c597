//! The wgpu backend on whatever adapter this machine has (Mesa's lavapipe in CI): the whole
//! conformance suite, the device-resident prover path against the CPU backend, device limits
//! and typed errors.
//!
//! Without an adapter every test prints "skipped: no Vulkan adapter" to stderr and passes,
//! unless `EPA_REQUIRE_WGPU=1` is set: then a missing adapter fails the run.

#![cfg(feature = "wgpu")]

use std::{io::Write, sync::OnceLock};

use epa_kernels::{
    Backend, ColumnMatrix, CpuBackend, Device, Error, RowMatrix, WgpuBackend, conformance,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use winter_math::{StarkField, fields::f64::BaseElement};

/// Environment variable that turns a missing adapter into a failure.
const REQUIRE_ENV: &str = "EPA_REQUIRE_WGPU";

fn backend() -> Option<&'static WgpuBackend> {
    static BACKEND: OnceLock<Option<WgpuBackend>> = OnceLock::new();
    BACKEND
        .get_or_init(|| match WgpuBackend::new() {
            Ok(b) => {
                let i = b.adapter_info();
                let _ = writeln!(
                    std::io::stderr(),
                    "wgpu adapter: {} (driver {} {}, {:?}, {:?})",
                    i.name,
                    i.driver,
                    i.driver_info,
                    i.backend,
                    i.device_type
                );
                Some(b)
            }
            Err(e) => {
                if std::env::var(REQUIRE_ENV).is_ok_and(|v| v.trim() == "1") {
                    panic!("{REQUIRE_ENV}=1 but the wgpu backend is unavailable: {e}");
                }
                let _ = writeln!(std::io::stderr(), "skipped: no Vulkan adapter ({e})");
                None
            }
        })
        .as_ref()
}

#[test]
fn reports_the_adapter_and_its_limits() {
    let Some(b) = backend() else { return };
    let info = b.info();
    assert_eq!(info.name, "wgpu");
    assert_eq!(
        b.is_software(),
        format!("{:?}", b.adapter_info().device_type) == "Cpu"
    );
    match &info.device {
        Device::Gpu { name, driver, api } => {
            assert!(!name.is_empty() && !api.is_empty());
            eprintln!("adapter {name}, driver {driver}, api {api}");
        }
        other => panic!("a wgpu backend must report a GPU device, got {other:?}"),
    }
    let max = b.max_buffer_bytes();
    assert_eq!(info.memory_bytes, Some(max));
    assert!(max >= 1 << 20, "buffer limit {max} below 1 MiB");
    let caps = info.capabilities;
    assert!(caps.ntt && caps.coset_lde && caps.merkle_rp64_256);
    assert!(caps.merkle_blake3, "BLAKE3 commitments run on the device");
    assert_eq!(
        b.buffer_budget(),
        max,
        "the default buffer budget is the device limit"
    );
    assert!(b.memory_budget() <= 8 << 32);
    assert!(caps.mlkem768_decap);
    assert!(1u64 << caps.max_log_size <= max / 8);
    eprintln!(
        "limits: max buffer {} B, max storage binding {} B, max workgroups/dim {}",
        b.limits().max_buffer_size,
        b.limits().max_storage_buffer_binding_size,
        b.limits().max_compute_workgroups_per_dimension
    );
}

#[test]
fn passes_ntt_conformance() {
    let Some(b) = backend() else { return };
    assert!(conformance::check_ntt(b) > 0);
}

#[test]
fn passes_lde_conformance() {
    let Some(b) = backend() else { return };
    assert!(conformance::check_lde(b) > 0);
}

#[test]
fn passes_rp64_256_merkle_conformance() {
    let Some(b) = backend() else { return };
    assert!(conformance::check_merkle_rp64(b) > 0);
}

#[test]
fn passes_blake3_merkle_conformance() {
    let Some(b) = backend() else { return };
    assert!(conformance::check_merkle_blake3(b) > 0);
}

/// BLAKE3-256 row hashing on the device against winter-crypto's `Blake3_256::hash_elements`
/// and `MerkleTree::new`, including rows over one BLAKE3 chunk (128 elements: the chunk tree
/// and its chaining-value stack) and rows of edge values (canonical conversion).
#[test]
fn blake3_commitment_matches_winter_crypto_for_wide_rows() {
    use winter_crypto::{ElementHasher, MerkleTree, hashers::Blake3_256};
    let Some(b) = backend() else { return };
    let seed = conformance::fresh_seed();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    // 1 block, partial blocks, exactly one chunk, one chunk + 1 element, 2, 3, 4 and 5 chunks
    // (stack merges at 2 and 4), and a random width.
    let random_width = 1 + (rand::Rng::r#gen::<u32>(&mut rng) % 700) as usize;
    for width in [
        1usize,
        8,
        13,
        127,
        128,
        129,
        256,
        300,
        512,
        640,
        random_width,
    ] {
        let log_rows = 1 + (width % 4) as u32;
        let n = 1usize << log_rows;
        let data = conformance::random_elements(&mut rng, n * width);
        let host = RowMatrix::from_row_major(data, width).expect("n rows of width");
        let leaves: Vec<_> = (0..n)
            .map(|r| Blake3_256::<BaseElement>::hash_elements(host.row(r)))
            .collect();
        let want = MerkleTree::<Blake3_256<BaseElement>>::new(leaves).expect("2^k >= 2 leaves");
        let rows = b.upload_rows(host).expect("upload");
        let got = b
            .download_tree(b.commit_rows_blake3(&rows).expect("commit"))
            .expect("tree");
        assert_eq!(got.leaves(), want.leaves(), "width {width}, seed {seed}");
        assert_eq!(got.root(), want.root(), "width {width}, seed {seed}");
        for leaf in 0..n {
            assert_eq!(
                got.prove(leaf).ok(),
                want.prove(leaf).ok(),
                "width {width}, leaf {leaf}, seed {seed}"
            );
        }
    }
}

/// With a buffer budget far below the work, matrices are split into column groups and row
/// ranges and the LDE runs one column group at a time; every result equals the unchunked
/// backend's (and so the CPU backend's).
#[test]
fn chunked_work_under_a_tiny_budget_equals_unchunked() {
    let Some(whole) = backend() else { return };
    let small = WgpuBackend::new()
        .expect("a second device on the adapter found above")
        .with_buffer_budget(1024);
    assert_eq!(small.buffer_budget(), 1024);
    let seed = conformance::fresh_seed();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (n, cols, blowup) = (1usize << 6, 5, 8);
    let trace: Vec<Vec<BaseElement>> = (0..cols)
        .map(|_| conformance::random_elements(&mut rng, n))
        .collect();
    let m = ColumnMatrix::new(trace).expect("equal power-of-two columns");
    let offset = BaseElement::GENERATOR;

    let mut a = whole.upload_columns(m.clone()).expect("upload");
    let mut c = small.upload_columns(m).expect("upload");
    assert_eq!(a.num_chunks(), 1);
    // 1024 B hold two columns of 64: three column groups.
    assert_eq!(c.num_chunks(), 3, "seed {seed}");
    whole.intt(&mut a).expect("intt");
    small.intt(&mut c).expect("intt");
    assert_eq!(
        small.download_columns(&c).expect("download"),
        whole.download_columns(&a).expect("download"),
        "seed {seed}"
    );
    let la = whole.coset_lde(&a, blowup, offset).expect("lde");
    let lc = small.coset_lde(&c, blowup, offset).expect("lde");
    // 512 rows of 40 B: 16 rows per 1024 B range, 32 ranges.
    assert_eq!(lc.num_chunks(), 32, "seed {seed}");
    assert_eq!(
        small.download_rows(&lc).expect("download"),
        whole.download_rows(&la).expect("download"),
        "seed {seed}"
    );
    let queries = [0usize, 15, 16, 17, 511, 200, 3];
    assert_eq!(
        small.read_rows(&lc, &queries).expect("rows"),
        whole.read_rows(&la, &queries).expect("rows"),
        "seed {seed}"
    );
    assert_eq!(
        small.hash_rows_rp64_256(&lc).expect("hashes"),
        whole.hash_rows_rp64_256(&la).expect("hashes"),
        "seed {seed}"
    );
    let rp = |b: &WgpuBackend, r| b.download_tree(b.commit_rows_rp64_256(r).expect("commit"));
    assert_eq!(
        rp(&small, &lc).expect("tree").root(),
        rp(whole, &la).expect("tree").root(),
        "seed {seed}"
    );
    let b3 = |b: &WgpuBackend, r| b.download_tree(b.commit_rows_blake3(r).expect("commit"));
    assert_eq!(
        b3(&small, &lc).expect("tree").root(),
        b3(whole, &la).expect("tree").root(),
        "seed {seed}"
    );
    // Uploaded rows are chunked the same way.
    let host = whole.download_rows(&la).expect("download");
    let up = small.upload_rows(host.clone()).expect("upload");
    assert_eq!(up.num_chunks(), 32);
    assert_eq!(small.download_rows(&up).expect("download"), host);
}

/// A matrix above the memory budget is refused with a typed error naming the budget, before
/// any allocation.
#[test]
fn work_above_the_memory_budget_is_refused() {
    if backend().is_none() {
        return;
    }
    let b = WgpuBackend::new()
        .expect("a second device on the adapter found above")
        .with_memory_budget(64 * 1024);
    assert_eq!(b.memory_budget(), 64 * 1024);
    let cols = b
        .upload_columns(
            ColumnMatrix::new(vec![vec![BaseElement::new(9); 256]; 4]).expect("4 x 256"),
        )
        .expect("8 KiB fit");
    // 256 * 16 rows x 4 columns x 8 B = 128 KiB.
    assert_eq!(
        b.coset_lde(&cols, 16, BaseElement::GENERATOR).err(),
        Some(Error::DeviceMemory {
            what: "LDE matrix",
            bytes: 128 * 1024,
            limit: 64 * 1024
        })
    );
    assert!(matches!(
        b.upload_rows(
            RowMatrix::from_row_major(vec![BaseElement::new(1); 16 * 1024], 8).expect("2^11 rows")
        ),
        Err(Error::DeviceMemory { limit, .. }) if limit == 64 * 1024
    ));
    // Within the budget it still works.
    assert!(b.coset_lde(&cols, 4, BaseElement::GENERATOR).is_ok());
}

/// The prover's path with everything on the device: interpolate, extend, commit; only the
/// root, openings and queried rows come back, and they equal the CPU backend's.
#[test]
fn device_resident_trace_commitment_matches_cpu() {
    let Some(b) = backend() else { return };
    let cpu = CpuBackend::new().expect("the CPU backend always builds");
    let seed = conformance::fresh_seed();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (n, cols, blowup) = (1usize << 9, 7, 4);
    let trace: Vec<Vec<BaseElement>> = (0..cols)
        .map(|_| conformance::random_elements(&mut rng, n))
        .collect();
    let m = ColumnMatrix::new(trace).expect("equal power-of-two columns");

    let mut g = b.upload_columns(m.clone()).expect("upload");
    b.intt(&mut g).expect("intt");
    let g_lde = b
        .coset_lde(&g, blowup, BaseElement::GENERATOR)
        .expect("lde");
    let g_tree = b
        .download_tree(b.commit_rows_rp64_256(&g_lde).expect("commit"))
        .expect("tree");

    let mut c = cpu.upload_columns(m).expect("upload");
    cpu.intt(&mut c).expect("intt");
    let c_lde = cpu
        .coset_lde(&c, blowup, BaseElement::GENERATOR)
        .expect("lde");
    let c_tree = cpu
        .download_tree(cpu.commit_rows_rp64_256(&c_lde).expect("commit"))
        .expect("tree");
    assert_eq!(g_tree.root(), c_tree.root(), "seed {seed}");

    let queries: Vec<usize> = (0..8)
        .map(|i| (i * 257 + seed as usize) % (n * blowup))
        .collect();
    let g_rows = b.read_rows(&g_lde, &queries).expect("read rows");
    let c_rows = cpu.read_rows(&c_lde, &queries).expect("read rows");
    assert_eq!(g_rows, c_rows, "seed {seed}");
    for &q in &queries {
        assert_eq!(
            g_tree.prove(q).ok(),
            c_tree.prove(q).ok(),
            "seed {seed}, leaf {q}"
        );
    }
}

#[test]
fn out_of_range_rows_and_bad_parameters_are_typed_errors() {
    let Some(b) = backend() else { return };
    let rows = b
        .upload_rows(
            RowMatrix::from_row_major((0..12u64).map(BaseElement::new).collect(), 3)
                .expect("4 rows of 3"),
        )
        .expect("upload");
    assert_eq!(
        b.read_rows(&rows, &[1, 4]),
        Err(Error::Shape {
            what: "row index (must be below)",
            expected: 4,
            found: 4
        })
    );
    let cols = b
        .upload_columns(ColumnMatrix::new(vec![vec![BaseElement::new(3); 8]]).expect("8"))
        .expect("upload");
    assert_eq!(
        b.coset_lde(&cols, 3, BaseElement::GENERATOR).err(),
        Some(Error::NotPowerOfTwo {
            what: "LDE blowup factor",
            len: 3
        })
    );
    assert_eq!(
        b.coset_lde(&cols, 2, BaseElement::new(0)).err(),
        Some(Error::ZeroOffset)
    );
    assert!(matches!(
        b.merkle_tree_rp64_256(Vec::new()),
        Err(Error::TooFewLeaves { leaves: 0 })
    ));
}

/// A job larger than the device's buffers is refused with a typed error before any
/// allocation, never a crash.
#[test]
fn work_above_the_device_limits_is_refused() {
    let Some(b) = backend() else { return };
    let cols = b
        .upload_columns(
            ColumnMatrix::new(vec![vec![BaseElement::new(5); 1 << 10]; 4]).expect("4 x 2^10"),
        )
        .expect("upload");
    // 2^32 rows x 4 columns: 128 GiB, beyond the backend's 2^32-word (32 GiB) buffer cap.
    match b.coset_lde(&cols, 1 << 22, BaseElement::GENERATOR) {
        Err(Error::DeviceMemory { bytes, limit, .. }) => {
            assert_eq!(bytes, (1u64 << 34) * 8);
            assert!(limit < bytes);
        }
        other => panic!("expected DeviceMemory, got {other:?}"),
    }
    // The backend still works afterwards.
    let back = b.download_columns(&cols).expect("download");
    assert_eq!(back.column(3)[1023], BaseElement::new(5));
}

/// A device that goes away mid-work gives typed errors, never a panic.
#[test]
fn a_lost_device_is_a_typed_error() {
    if backend().is_none() {
        return;
    }
    let b = WgpuBackend::new().expect("a second device on the adapter found above");
    let cols = b
        .upload_columns(ColumnMatrix::new(vec![vec![BaseElement::new(7); 64]]).expect("64"))
        .expect("upload");
    assert!(!b.is_lost());
    b.destroy();
    assert!(b.is_lost());
    let mut cols = cols;
    match b.ntt(&mut cols) {
        Err(Error::Gpu {
            adapter, detail, ..
        }) => {
            assert_eq!(adapter, b.adapter_info().name);
            assert!(!detail.is_empty());
        }
        other => panic!("expected a GPU error after destroying the device, got {other:?}"),
    }
    assert!(matches!(b.download_columns(&cols), Err(Error::Gpu { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// Forward NTT then LDE of random columns equal the CPU backend's, element for element.
    #[test]
    fn ntt_and_lde_match_cpu(log_n in 1u32..9, cols in 1usize..4, log_blowup in 0u32..4,
                             seed in any::<u64>(), offset in 1u64..BaseElement::MODULUS) {
        let Some(b) = backend() else { return Ok(()) };
        let cpu = CpuBackend::new().expect("the CPU backend always builds");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let data: Vec<Vec<BaseElement>> =
            (0..cols).map(|_| conformance::random_elements(&mut rng, 1 << log_n)).collect();
        let m = ColumnMatrix::new(data).expect("equal power-of-two columns");
        let mut g = b.upload_columns(m.clone()).expect("upload");
        let mut c = cpu.upload_columns(m).expect("upload");
        b.ntt(&mut g).expect("ntt");
        cpu.ntt(&mut c).expect("ntt");
        prop_assert_eq!(b.download_columns(&g).expect("download"), c.clone());
        let off = BaseElement::new(offset);
        let gl = b.coset_lde(&g, 1 << log_blowup, off).expect("lde");
        let cl = cpu.coset_lde(&c, 1 << log_blowup, off).expect("lde");
        prop_assert_eq!(b.download_rows(&gl).expect("download"), cl);
    }
}
