//! The kernels suite at tiny sizes: every case ran, ours matched its anchor (the suite errors
//! otherwise) and the JSON has the documented shape.

use epa_benches::{SuiteOptions, run_suite};

#[test]
fn tiny_kernels_suite_reports_every_case() {
    let options = SuiteOptions::tiny();
    let report = run_suite("kernels", &options).unwrap();
    // ntt: 2 anchors per size; lde: 2; merkle: 1; proofs: 2 hashes per request.
    let expected = 2 * options.ntt_log_sizes.len()
        + 2 * options.lde_log_sizes.len()
        + options.merkle_log_sizes.len()
        + 2 * (options.rescue_steps.len() + options.smt_updates.len());
    assert_eq!(report.results.len(), expected);
    for r in &report.results {
        assert!(r.ours_s > 0.0 && r.anchor_s > 0.0, "{r:?}");
        assert!((r.speedup - r.anchor_s / r.ours_s).abs() < 1e-9 * r.speedup.max(1.0));
        assert!(r.backend.starts_with("cpu-"));
    }
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    for key in ["cpu", "cores", "simd", "gpus", "versions"] {
        assert!(json["machine"].get(key).is_some(), "machine.{key} missing");
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
