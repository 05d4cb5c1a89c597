//! The CUDA backend on a real device: the whole conformance suite, the device-resident
//! commitment path against the CPU backend, large multi-pass transforms, the memory budget
//! and typed errors.
//!
//! A libtest-style harness (`harness = false`, libtest-mimic): the backend is opened once, and
//! where there is no CUDA driver (or NVRTC, or a device: `Error::NoCuda`) every device test is
//! reported as *ignored* and one line "skipped: no CUDA driver (<reason>)" goes to stderr;
//! running them anyway (`--ignored`) fails them. With `EPA_REQUIRE_CUDA=1` a missing driver
//! fails them instead. Any other start-up error fails them too. Without any driver, the
//! backend's constructor must still answer with a typed error, never a panic: that test runs
//! everywhere. Name filters, `--ignored`, `--include-ignored` and `--nocapture` work as with
//! the built-in harness.

use std::sync::Arc;

use epa_kernels::{
    Backend, ColumnMatrix, CpuBackend, CudaBackend, Device, Error, Isa, RowMatrix, conformance,
};
use libtest_mimic::{Arguments, Trial};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use winter_math::{StarkField, fields::f64::BaseElement};

#[path = "support/cuda_harness.rs"]
mod cuda_harness;

use cuda_harness::{Driver, REQUIRE_ENV, required};

fn probe() -> Driver<CudaBackend> {
    match CudaBackend::new() {
        Ok(b) => {
            eprintln!("CUDA device: {:?}", b.info().device);
            Driver::Present(Arc::new(b))
        }
        Err(Error::NoCuda { detail, .. }) => Driver::Missing(detail),
        Err(e) => Driver::Broken(e.to_string()),
    }
}

/// The tests that need a device, by name.
/// The body of a device test, given the shared backend.
type DeviceTest = fn(&CudaBackend);

const DEVICE_TESTS: &[(&str, DeviceTest)] = &[
    ("passes_ntt_conformance", passes_ntt_conformance),
    ("passes_lde_conformance", passes_lde_conformance),
    (
        "passes_rp64_256_merkle_conformance",
        passes_rp64_256_merkle_conformance,
    ),
    (
        "passes_blake3_merkle_conformance",
        passes_blake3_merkle_conformance,
    ),
    (
        "multi_pass_transforms_and_commitments_match_cpu",
        multi_pass_transforms_and_commitments_match_cpu,
    ),
    (
        "blake3_commitment_matches_cpu_for_wide_rows",
        blake3_commitment_matches_cpu_for_wide_rows,
    ),
    (
        "work_above_the_memory_budget_is_refused",
        work_above_the_memory_budget_is_refused,
    ),
    (
        "a_small_budget_runs_the_lde_in_column_groups",
        a_small_budget_runs_the_lde_in_column_groups,
    ),
    (
        "bad_parameters_are_typed_errors",
        bad_parameters_are_typed_errors,
    ),
];

fn main() {
    let args = Arguments::from_args();
    let driver = probe();
    let mut trials = vec![Trial::test(
        "construction_without_a_driver_is_a_typed_error_and_with_one_reports_the_device",
        || {
            construction_without_a_driver_is_a_typed_error_and_with_one_reports_the_device();
            Ok(())
        },
    )];
    trials.extend(
        DEVICE_TESTS
            .iter()
            .map(|&(name, test)| driver.trial(name, move |b| test(&b), false)),
    );
    driver.run(&args, trials)
}

fn construction_without_a_driver_is_a_typed_error_and_with_one_reports_the_device() {
    match CudaBackend::new() {
        Ok(b) => {
            let info = b.info();
            assert_eq!(info.name, "cuda");
            let Device::Gpu { name, driver, api } = &info.device else {
                panic!("a CUDA backend reports a GPU, got {:?}", info.device);
            };
            assert!(!name.is_empty() && driver.starts_with("CUDA") && api.starts_with("CUDA"));
            assert!(info.capabilities.ntt && info.capabilities.merkle_rp64_256);
            assert!(info.memory_bytes.is_some_and(|m| m > 0));
        }
        Err(Error::NoCuda { detail }) => {
            assert!(!required(), "{REQUIRE_ENV}=1 but: {detail}");
            assert!(!detail.is_empty());
        }
        Err(e) => panic!("expected a CUDA backend or Error::NoCuda, got {e}"),
    }
}

fn passes_ntt_conformance(b: &CudaBackend) {
    assert!(conformance::check_ntt(b) > 0);
}

fn passes_lde_conformance(b: &CudaBackend) {
    assert!(conformance::check_lde(b) > 0);
}

fn passes_rp64_256_merkle_conformance(b: &CudaBackend) {
    assert!(conformance::check_merkle_rp64(b) > 0);
}

fn passes_blake3_merkle_conformance(b: &CudaBackend) {
    assert!(conformance::check_merkle_blake3(b) > 0);
}

fn cpu() -> CpuBackend {
    CpuBackend::with_isa(Isa::Scalar).expect("the scalar path exists everywhere")
}

/// Transforms with several shared-memory passes (2^12 .. 2^20) and LDEs over them, against
/// the CPU backend, then both commitments of the LDE.
fn multi_pass_transforms_and_commitments_match_cpu(b: &CudaBackend) {
    let cpu = cpu();
    let seed = conformance::fresh_seed();
    eprintln!("seed {seed:#x}");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    for (log_n, cols, blowup) in [(12u32, 3usize, 8usize), (16, 2, 4), (20, 1, 2)] {
        let n = 1usize << log_n;
        let data: Vec<Vec<BaseElement>> = (0..cols)
            .map(|_| conformance::random_elements(&mut rng, n))
            .collect();
        let m = ColumnMatrix::new(data).expect("equal power-of-two columns");
        let mut g = b.upload_columns(m.clone()).expect("upload");
        let mut c = cpu.upload_columns(m).expect("upload");
        b.intt(&mut g).expect("intt");
        cpu.intt(&mut c).expect("intt");
        assert_eq!(
            b.download_columns(&g).expect("download"),
            c,
            "iNTT 2^{log_n}"
        );
        let off = BaseElement::GENERATOR;
        let gl = b.coset_lde(&g, blowup, off).expect("lde");
        let cl = cpu.coset_lde(&c, blowup, off).expect("lde");
        assert_eq!(b.download_rows(&gl).expect("download"), cl, "LDE 2^{log_n}");
        let gt = b
            .download_tree(b.commit_rows_rp64_256(&gl).expect("commit"))
            .expect("tree");
        let ct = cpu
            .download_tree(cpu.commit_rows_rp64_256(&cl).expect("commit"))
            .expect("tree");
        assert_eq!(gt.root(), ct.root(), "Rp64_256 root 2^{log_n}");
        let gt = b
            .download_tree(b.commit_rows_blake3(&gl).expect("commit"))
            .expect("tree");
        let ct = cpu
            .download_tree(cpu.commit_rows_blake3(&cl).expect("commit"))
            .expect("tree");
        assert_eq!(gt.root(), ct.root(), "BLAKE3 root 2^{log_n}");
        let idx = [0, 1, n * blowup - 1, (n * blowup) / 3];
        assert_eq!(
            b.read_rows(&gl, &idx).expect("rows"),
            idx.iter().map(|&i| cl.row(i).to_vec()).collect::<Vec<_>>()
        );
        b.ntt(&mut g).expect("ntt");
        cpu.ntt(&mut c).expect("ntt");
        assert_eq!(
            b.download_columns(&g).expect("download"),
            c,
            "NTT 2^{log_n}"
        );
    }
}

/// Rows wider than one BLAKE3 chunk (128 elements) hash through the chunk tree.
fn blake3_commitment_matches_cpu_for_wide_rows(b: &CudaBackend) {
    let cpu = cpu();
    let mut rng = ChaCha20Rng::seed_from_u64(conformance::fresh_seed());
    for width in [1usize, 8, 127, 128, 129, 300] {
        let rows =
            RowMatrix::from_row_major(conformance::random_elements(&mut rng, 16 * width), width)
                .expect("16 rows");
        let g = b.upload_rows(rows.clone()).expect("upload");
        let gt = b
            .download_tree(b.commit_rows_blake3(&g).expect("commit"))
            .expect("tree");
        let ct = cpu
            .download_tree(cpu.commit_rows_blake3(&rows).expect("commit"))
            .expect("tree");
        assert_eq!(gt.root(), ct.root(), "width {width}");
        assert_eq!(gt.leaves(), ct.leaves(), "width {width}");
    }
}

fn work_above_the_memory_budget_is_refused(_shared: &CudaBackend) {
    let mut b = CudaBackend::new().expect("a second backend on the same device");
    b.set_memory_budget(1 << 20);
    let n = 1usize << 14;
    let m = ColumnMatrix::new(vec![vec![BaseElement::new(3); n]; 4]).expect("columns");
    let g = b.upload_columns(m).expect("512 KiB fits a 1 MiB budget");
    match b.coset_lde(&g, 8, BaseElement::GENERATOR) {
        Err(Error::DeviceMemory { bytes, limit, .. }) => assert!(bytes > limit),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A budget that holds the LDE output but not the scratch of every column makes the LDE run
/// in column groups; the rows do not change.
fn a_small_budget_runs_the_lde_in_column_groups(_shared: &CudaBackend) {
    let mut b = CudaBackend::new().expect("a second backend on the same device");
    let cpu = cpu();
    let mut rng = ChaCha20Rng::seed_from_u64(conformance::fresh_seed());
    let (n, cols, blowup) = (1usize << 12, 5usize, 4usize);
    let words = (n * blowup * cols) as u64;
    // Output plus two columns of scratch: groups of 2, 2 and 1.
    b.set_memory_budget((words + 2 * (n * blowup) as u64) * 8);
    let data: Vec<Vec<BaseElement>> = (0..cols)
        .map(|_| conformance::random_elements(&mut rng, n))
        .collect();
    let m = ColumnMatrix::new(data).expect("columns");
    let g = b.upload_columns(m.clone()).expect("upload");
    let c = cpu.upload_columns(m).expect("upload");
    let off = BaseElement::GENERATOR;
    let gl = b.coset_lde(&g, blowup, off).expect("grouped LDE");
    let cl = cpu.coset_lde(&c, blowup, off).expect("lde");
    assert_eq!(b.download_rows(&gl).expect("download"), cl);
}

fn bad_parameters_are_typed_errors(b: &CudaBackend) {
    let m = ColumnMatrix::new(vec![vec![BaseElement::new(1); 8]]).expect("columns");
    let g = b.upload_columns(m).expect("upload");
    assert!(matches!(
        b.coset_lde(&g, 3, BaseElement::GENERATOR),
        Err(Error::NotPowerOfTwo { .. })
    ));
    assert!(matches!(
        b.coset_lde(&g, 2, BaseElement::new(0)),
        Err(Error::ZeroOffset)
    ));
    let rows = b.coset_lde(&g, 2, BaseElement::GENERATOR).expect("lde");
    assert!(matches!(
        b.read_rows(&rows, &[16]),
        Err(Error::Shape { .. })
    ));
    let one = b
        .upload_rows(RowMatrix::from_row_major(vec![BaseElement::new(1); 4], 4).expect("1 row"))
        .expect("upload");
    assert!(matches!(
        b.commit_rows_rp64_256(&one),
        Err(Error::TooFewLeaves { leaves: 1 })
    ));
    // Argument errors are caught before the device: they do not mark it as failed.
    assert!(!b.has_failed());
}
