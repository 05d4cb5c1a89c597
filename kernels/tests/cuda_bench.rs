//! Timings of the CUDA kernels at the sizes (a benchmark, not a timed test): NTT of
//! 2^24 points, a 16-column 2^20 NTT and coset LDE (blowup 8), and `Rp64_256` commitments
//! (one permutation per 8-element row plus one per tree node). Each result is also checked
//! against the CPU backend once, so a fast wrong kernel cannot report a figure.
//!
//! Runs only with `EPA_CUDA_BENCH=1` (scripts/gpu-suite.sh sets it) on a machine with a CUDA
//! device; otherwise it prints why it is skipped. Medians of 5 runs after a warm-up; every
//! operation ends with a stream synchronisation, so host wall-clock times cover the device
//! work. `EPA_CUDA_BENCH_JSON=path` also writes the figures as JSON.

#![cfg(feature = "cuda")]

use std::time::{Duration, Instant};

use epa_kernels::{Backend, ColumnMatrix, CpuBackend, CudaBackend, RowMatrix, conformance};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use winter_math::{StarkField, fields::f64::BaseElement};

fn median(mut f: impl FnMut() -> Duration) -> Duration {
    f();
    let mut t: Vec<Duration> = (0..5).map(|_| f()).collect();
    t.sort();
    t[2]
}

#[test]
#[ignore = "measurement, not a test: EPA_CUDA_BENCH=1 on a GPU machine (scripts/gpu-suite.sh)"]
fn cuda_kernel_timings() {
    if std::env::var("EPA_CUDA_BENCH").as_deref() != Ok("1") {
        eprintln!("skipped: set EPA_CUDA_BENCH=1 to time the CUDA kernels (scripts/gpu-suite.sh)");
        return;
    }
    let b = match CudaBackend::new() {
        Ok(b) => b,
        Err(e) => {
            assert!(
                std::env::var("EPA_REQUIRE_CUDA").as_deref() != Ok("1"),
                "EPA_REQUIRE_CUDA=1 but the CUDA backend is unavailable: {e}"
            );
            eprintln!("skipped: no CUDA driver ({e})");
            return;
        }
    };
    let cpu = CpuBackend::new().expect("the CPU backend");
    let mut rng = ChaCha20Rng::seed_from_u64(conformance::fresh_seed());
    let mut rows: Vec<(String, f64, String)> = Vec::new();

    // NTT 2^24, one column, and 16 columns of 2^20.
    for (log_n, cols) in [(24u32, 1usize), (20, 16)] {
        let n = 1usize << log_n;
        let data: Vec<Vec<BaseElement>> = (0..cols)
            .map(|_| conformance::random_elements(&mut rng, n))
            .collect();
        let m = ColumnMatrix::new(data).expect("columns");
        let mut g = b.upload_columns(m.clone()).expect("upload");
        let t = median(|| {
            let s = Instant::now();
            b.ntt(&mut g).expect("ntt");
            s.elapsed()
        });
        // Check: 6 forward transforms ran; one more on a fresh copy against the CPU.
        let mut once = b.upload_columns(m.clone()).expect("upload");
        b.ntt(&mut once).expect("ntt");
        let mut c = cpu.upload_columns(m).expect("upload");
        cpu.ntt(&mut c).expect("ntt");
        assert_eq!(b.download_columns(&once).expect("download"), c);
        rows.push((
            format!("ntt/cuda/{log_n}x{cols}"),
            t.as_secs_f64() * 1e3,
            "ms".into(),
        ));
    }

    // Coset LDE: 16 columns of 2^20 coefficients, blowup 8 (2^23 rows), then its commitment.
    let (n, cols, blowup) = (1usize << 20, 16usize, 8usize);
    let data: Vec<Vec<BaseElement>> = (0..cols)
        .map(|_| conformance::random_elements(&mut rng, n))
        .collect();
    let m = ColumnMatrix::new(data).expect("columns");
    let g = b.upload_columns(m.clone()).expect("upload");
    let t = median(|| {
        let s = Instant::now();
        drop(
            b.coset_lde(&g, blowup, BaseElement::GENERATOR)
                .expect("lde"),
        );
        s.elapsed()
    });
    rows.push((
        "lde/cuda/20x16x8".into(),
        t.as_secs_f64() * 1e3,
        "ms".into(),
    ));
    let lde = b
        .coset_lde(&g, blowup, BaseElement::GENERATOR)
        .expect("lde");
    let c = cpu.upload_columns(m).expect("upload");
    let cl = cpu
        .coset_lde(&c, blowup, BaseElement::GENERATOR)
        .expect("lde");
    let probe = [0, 1, n * blowup / 2 + 7, n * blowup - 1];
    assert_eq!(
        b.read_rows(&lde, &probe).expect("rows"),
        probe
            .iter()
            .map(|&i| cl.row(i).to_vec())
            .collect::<Vec<_>>()
    );
    let t = median(|| {
        let s = Instant::now();
        drop(b.commit_rows_rp64_256(&lde).expect("commit"));
        s.elapsed()
    });
    rows.push((
        "commit-rp64/cuda/23x16".into(),
        t.as_secs_f64() * 1e3,
        "ms".into(),
    ));
    drop(lde);

    // Rp64_256 permutations per second: 2^20 rows of 8 elements (one permutation each) and
    // the 2^20 - 1 merges of the tree.
    let leaves = 1usize << 20;
    let r = RowMatrix::from_row_major(conformance::random_elements(&mut rng, leaves * 8), 8)
        .expect("rows");
    let gr = b.upload_rows(r.clone()).expect("upload");
    let t = median(|| {
        let s = Instant::now();
        drop(b.commit_rows_rp64_256(&gr).expect("commit"));
        s.elapsed()
    });
    let tree = b
        .download_tree(b.commit_rows_rp64_256(&gr).expect("commit"))
        .expect("tree");
    let ct = cpu
        .download_tree(cpu.commit_rows_rp64_256(&r).expect("commit"))
        .expect("tree");
    assert_eq!(tree.root(), ct.root());
    let perms = (2 * leaves - 1) as f64 / t.as_secs_f64();
    rows.push((
        "rp64-permutations/cuda/20".into(),
        perms / 1e6,
        "M/s".into(),
    ));

    let info = b.info();
    eprintln!("CUDA kernel timings on {:?}:", info.device);
    for (id, v, unit) in &rows {
        eprintln!("  {id:<28} {v:>10.3} {unit}");
    }
    if let Ok(path) = std::env::var("EPA_CUDA_BENCH_JSON") {
        let entries: Vec<String> = rows
            .iter()
            .map(|(id, v, unit)| format!("{{\"id\":\"{id}\",\"value\":{v},\"unit\":\"{unit}\"}}"))
            .collect();
        let json = format!(
            "{{\"device\":\"{}\",\"results\":[{}]}}\n",
            format!("{:?}", info.device).replace('"', "'"),
            entries.join(",")
        );
        std::fs::write(&path, json).expect("EPA_CUDA_BENCH_JSON is writable");
    }
}
