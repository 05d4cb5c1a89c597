//! Timings of the wgpu kernels at the issues' sizes (a benchmark, not a timed test; the
//! measurements are in `support/kernel_timings.rs`): NTT 2^24 (issue 6's target: 2 ms on an
//! H100 or H200 through Vulkan), the 16-column NTT and LDE, and `Rp64_256` commitments.
//!
//! Runs only with `EPA_WGPU_BENCH=1` (scripts/gpu-suite.sh sets it) on a machine with a
//! hardware adapter; a software adapter (Mesa's lavapipe) or none prints why it is skipped.
//! `EPA_WGPU_BENCH_JSON=path` also writes the figures as JSON.

#![cfg(feature = "wgpu")]

mod support;

use epa_kernels::{Backend, WgpuBackend};

#[test]
#[ignore = "measurement, not a test: EPA_WGPU_BENCH=1 on a GPU machine (scripts/gpu-suite.sh)"]
fn wgpu_kernel_timings() {
    if std::env::var("EPA_WGPU_BENCH").as_deref() != Ok("1") {
        eprintln!("skipped: set EPA_WGPU_BENCH=1 to time the wgpu kernels (scripts/gpu-suite.sh)");
        return;
    }
    let b = match WgpuBackend::new() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("skipped: no wgpu adapter ({e})");
            return;
        }
    };
    let info = b.info();
    if b.is_software() {
        eprintln!("skipped: {:?} is a software adapter", info.device);
        return;
    }
    support::kernel_timings::kernel_timings(&b, "wgpu", "EPA_WGPU_BENCH_JSON");
}
