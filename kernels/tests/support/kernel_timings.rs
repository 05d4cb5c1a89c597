//! Timings of a GPU backend's kernels at the issues' sizes (a benchmark, not a timed test),
//! shared by `cuda_bench.rs` and `wgpu_bench.rs`: NTT of 2^12 (the fixed cost of a call) and
//! 2^24 points, a 16-column 2^20 NTT and
//! coset LDE (blowup 8), and `Rp64_256` commitments (one permutation per 8-element row plus one
//! per tree node). Each result is also checked against the CPU backend once, so a fast wrong
//! kernel cannot report a figure. Medians of 5 runs after a warm-up; every backend operation
//! returns when the device work is finished (a stream synchronisation on CUDA, a queue wait on
//! wgpu), so host wall-clock times cover it. `json_env=path` also writes the figures as JSON.

use std::time::{Duration, Instant};

use epa_kernels::{Backend, ColumnMatrix, CpuBackend, RowMatrix, conformance};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use winter_math::{StarkField, fields::f64::BaseElement};

fn median(mut f: impl FnMut() -> Duration) -> Duration {
    f();
    let mut t: Vec<Duration> = (0..5).map(|_| f()).collect();
    t.sort();
    t[2]
}

/// Times `b` (labelled `label` in the figure ids) and prints the figures; writes JSON to the
/// path in the environment variable `json_env` when set.
pub fn kernel_timings<B: Backend>(b: &B, label: &str, json_env: &str) {
    let cpu = CpuBackend::new().expect("the CPU backend");
    let mut rng = ChaCha20Rng::seed_from_u64(conformance::fresh_seed());
    let mut rows: Vec<(String, f64, String)> = Vec::new();

    // NTT 2^12 (what a call costs besides the work), 2^24, one column, and 16 columns of 2^20.
    for (log_n, cols) in [(12u32, 1usize), (24, 1), (20, 16)] {
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
            format!("ntt/{label}/{log_n}x{cols}"),
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
        format!("lde/{label}/20x16x8"),
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
        format!("commit-rp64/{label}/23x16"),
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
        format!("rp64-permutations/{label}/20"),
        perms / 1e6,
        "M/s".into(),
    ));

    let info = b.info();
    eprintln!("{label} kernel timings on {:?}:", info.device);
    for (id, v, unit) in &rows {
        eprintln!("  {id:<28} {v:>10.3} {unit}");
    }
    if let Ok(path) = std::env::var(json_env) {
        let entries: Vec<String> = rows
            .iter()
            .map(|(id, v, unit)| format!("{{\"id\":\"{id}\",\"value\":{v},\"unit\":\"{unit}\"}}"))
            .collect();
        let json = format!(
            "{{\"device\":\"{}\",\"results\":[{}]}}\n",
            format!("{:?}", info.device).replace('"', "'"),
            entries.join(",")
        );
        std::fs::write(&path, json).expect("the JSON path of the timings is writable");
    }
}
