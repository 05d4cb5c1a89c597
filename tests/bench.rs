//! `epa bench --suite kernels --quick --json PATH` at test sizes (`EPA_BENCH_TINY`): it prints
//! a table and writes JSON of the documented shape.

use std::process::Command;

#[test]
fn bench_kernels_quick_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.json");
    let out = Command::new(env!("CARGO_BIN_EXE_epa"))
        .args(["bench", "--suite", "kernels", "--quick", "--json"])
        .arg(&path)
        .env("EPA_BENCH_TINY", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("merkle-rp64") && table.contains("speedup"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for key in ["cpu", "cores", "simd", "gpus", "versions"] {
        assert!(json["machine"].get(key).is_some(), "machine.{key} missing");
    }
    let results = json["results"].as_array().unwrap();
    assert!(results.len() >= 8);
    for r in results {
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
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        let (ours, anchor) = (
            r["ours_s"].as_f64().unwrap(),
            r["anchor_s"].as_f64().unwrap(),
        );
        let speedup = r["speedup"].as_f64().unwrap();
        assert!(ours > 0.0 && (speedup - anchor / ours).abs() <= 1e-9 * speedup.max(1.0));
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_epa"))
        .args(["bench", "--suite", "nope"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
