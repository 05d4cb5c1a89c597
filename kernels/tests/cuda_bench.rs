//! Timings of the CUDA kernels at the sizes (a benchmark, not a timed test; the
//! measurements are in `support/kernel_timings.rs`).
//!
//! Runs only with `EPA_CUDA_BENCH=1` (scripts/gpu-suite.sh sets it) on a machine with a CUDA
//! device; otherwise it prints why it is skipped. Medians of 5 runs after a warm-up; every
//! operation ends with a stream synchronisation, so host wall-clock times cover the device
//! work. `EPA_CUDA_BENCH_JSON=path` also writes the figures as JSON.

#![cfg(feature = "cuda")]

mod support;

use epa_kernels::CudaBackend;

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
    support::kernel_timings::kernel_timings(&b, "cuda", "EPA_CUDA_BENCH_JSON");
}
