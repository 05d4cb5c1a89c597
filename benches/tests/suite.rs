//! The kernels suite at tiny sizes: every case ran on the CPU backend and on every GPU backend
//! that opens here (a software adapter such as lavapipe only at the smallest size), ours
//! matched its anchor (the suite errors otherwise) and the JSON has the documented shape.

use epa_benches::{SuiteOptions, gpu_targets, run_suite};

#[test]
fn tiny_kernels_suite_reports_every_case() {
    // Two NTT sizes: a software GPU runs only the smaller one.
    let options = SuiteOptions {
        ntt_log_sizes: vec![8, 9],
        ..SuiteOptions::tiny()
    };
    let report = run_suite("kernels", &options).unwrap();
    let gpus = gpu_targets();
    // ntt: 2 anchors per size; lde: 2; merkle: 1; proofs: 2 hashes per request.
    let rows = |ntt_sizes: usize| {
        2 * ntt_sizes
            + 2 * options.lde_log_sizes.len()
            + options.merkle_log_sizes.len()
            + 2 * (options.rescue_steps.len() + options.smt_updates.len())
    };
    let cpu_rows = rows(options.ntt_log_sizes.len());
    let expected = cpu_rows
        + gpus
            .iter()
            .map(|g| {
                rows(if g.software {
                    1
                } else {
                    options.ntt_log_sizes.len()
                })
            })
            .sum::<usize>();
    assert_eq!(report.results.len(), expected, "GPU backends: {gpus:?}");
    for r in &report.results {
        assert!(r.ours_s > 0.0 && r.anchor_s > 0.0, "{r:?}");
        assert!((r.speedup - r.anchor_s / r.ours_s).abs() < 1e-9 * r.speedup.max(1.0));
        assert!(
            r.backend.starts_with("cpu-") || gpus.iter().any(|g| r.backend.starts_with(&g.name)),
            "{r:?}"
        );
    }
    let cpu = report
        .results
        .iter()
        .filter(|r| r.backend.starts_with("cpu-"));
    assert_eq!(cpu.count(), cpu_rows);
    for g in &gpus {
        // Every GPU row names the device; a software adapter says so and skips the larger NTT.
        assert!(g.name.contains('/'), "{g:?}");
        assert_eq!(g.software, g.name.starts_with("wgpu-software/"), "{g:?}");
        let larger_ntt = report
            .results
            .iter()
            .any(|r| r.backend == g.name && r.workload == "ntt" && r.size == 1 << 9);
        assert_eq!(larger_ntt, !g.software, "{g:?}");
    }
    if std::env::var_os("EPA_REQUIRE_WGPU").is_some() {
        assert!(
            report.results.iter().any(|r| r.backend.starts_with("wgpu")),
            "EPA_REQUIRE_WGPU is set but the suite measured no wgpu backend"
        );
    }
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    for key in ["cpu", "cores", "simd", "gpus", "versions"] {
        assert!(json["machine"].get(key).is_some(), "machine.{key} missing");
    }
    let listed = json["machine"]["gpus"].as_array().unwrap();
    for g in &gpus {
        assert!(
            listed.iter().any(|l| l == g.name.as_str()),
            "{} not listed",
            g.name
        );
    }
    let workloads: Vec<&str> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["workload"].as_str().unwrap())
        .collect();
    for w in [
        "ntt",
        "lde-16col-blowup8",
        "merkle-rp64",
        "prove/rescue-chain/rp64-256",
        "prove/smt-update/blake3-256",
    ] {
        assert!(workloads.contains(&w), "{w} missing from {workloads:?}");
    }
    assert!(report.table().lines().count() > expected);
}

#[test]
fn unknown_suite_is_an_error() {
    let err = run_suite("gpu-kernels", &SuiteOptions::tiny()).unwrap_err();
    assert!(err.to_string().contains("kernels"));
}

/// The kem suite at tiny sizes: every batch size has a one-thread row and (on a machine with
/// more than one hardware thread) an all-threads row for the CPU backend; secrets matched the
/// reference (the suite errors otherwise); the JSON has the kernels suite's shape.
#[test]
fn tiny_kem_suite_reports_every_batch_in_the_kernels_shape() {
    let options = SuiteOptions::tiny();
    let report = run_suite("kem", &options).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let cpu: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.backend.starts_with("cpu-"))
        .collect();
    let per_size = if threads > 1 { 2 } else { 1 };
    assert_eq!(cpu.len(), per_size * options.kem_batches.len());
    for r in &report.results {
        assert_eq!(r.suite, "kem");
        assert!(r.workload.starts_with("mlkem768-decap/"), "{r:?}");
        assert!(options.kem_batches.contains(&r.size), "{r:?}");
        assert!(r.ours_s > 0.0 && r.anchor_s > 0.0, "{r:?}");
        assert!(
            ["libcrux-ml-kem", "aws-lc-rs"].contains(&r.anchor.as_str()),
            "{r:?}"
        );
        assert!((r.speedup - r.anchor_s / r.ours_s).abs() < 1e-9 * r.speedup.max(1.0));
    }
    for r in &cpu {
        // The implementation that decapsulates is part of the backend name.
        assert!(r.backend.contains("/libcrux-"), "{r:?}");
    }
    for n in &options.kem_batches {
        assert!(
            cpu.iter()
                .any(|r| r.size == *n && r.workload == "mlkem768-decap/1-thread")
        );
    }
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    for key in ["cpu", "cores", "simd", "gpus", "versions"] {
        assert!(json["machine"].get(key).is_some(), "machine.{key} missing");
    }
    for r in json["results"].as_array().unwrap() {
        for key in [
            "suite",
            "workload",
            "size",
            "backend",
            "ours_s",
            "anchor",
            "anchor_s",
            "speedup",
            "peak_rss_bytes",
        ] {
            assert!(r.get(key).is_some(), "results[].{key} missing");
        }
    }
}
