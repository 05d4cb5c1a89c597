//! Peak memory of one proof in a process of its own: the heap high-water mark (`VmHWM`, reset
//! with `clear_refs` once the request is built) of the accelerated CPU prover or of stock
//! winterfell. `epa bench` measures both sides in one process, where memory the process already
//! holds from earlier rows dilutes the ratio; one proof per process does not.
//!
//! `cargo run --release -p epa-benches --example prove_memory -- (ours | stock) [smt-update UPDATES | rescue-chain STEPS] [rp64-256 | blake3-256]`
//! (Linux only: it reads `/proc/self/status`.)

use std::sync::Arc;

use kernels::CpuBackend;
use prover::accel::{AccelComponents, AccelHash};
use prover::options::{OptionsChoice, Preset};
use prover::prover::DefaultComponents;
use prover::registry::{self, ProveRequest};
use winter_crypto::hashers::{Blake3_256, Rp64_256};
use winter_math::fields::f64::BaseElement;

/// A field of `/proc/self/status` in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn prove<H: AccelHash>(side: &str, request: &ProveRequest) -> usize {
    let options = OptionsChoice::Preset(Preset::Fast96);
    let proof = if side == "ours" {
        let backend = Arc::new(CpuBackend::new().expect("the CPU backend builds"));
        registry::prove_with(request, options, AccelComponents::<_, H>::new(backend))
    } else {
        registry::prove_with(request, options, DefaultComponents::<H>::new())
    };
    proof.expect("proof").proof.len()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let side = args.first().map_or("ours", String::as_str);
    assert!(
        side == "ours" || side == "stock",
        "first argument: ours | stock"
    );
    let air = args.get(1).map_or("smt-update", String::as_str);
    let size: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let hash = args.get(3).map_or("rp64-256", String::as_str);
    let request = epa_benches::example_request(air, size);
    // Reset the high-water mark to the current resident set: what follows is the proof's.
    std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");
    let before = status_kib("VmHWM:");
    let bytes = match hash {
        "blake3-256" => prove::<Blake3_256<BaseElement>>(side, &request),
        _ => prove::<Rp64_256>(side, &request),
    };
    let peak = status_kib("VmHWM:");
    println!(
        "{side} {air} {size} {hash}: peak {:.1} MiB (resident before the proof {:.1} MiB), proof {bytes} bytes",
        peak as f64 / 1024.0,
        before as f64 / 1024.0
    );
}
