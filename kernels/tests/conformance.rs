//! Runs the conformance suite on every instruction set of the CPU backend.

use std::io::Write;

use epa_kernels::{CpuBackend, Isa, conformance};

/// The backend for `isa`, or `None` when this CPU lacks it. The "skipped" line goes straight
/// to stderr, past the test harness' capture, so a skip is visible in every test run.
fn backend(isa: Isa) -> Option<CpuBackend> {
    if !isa.is_supported() {
        let name = if isa == Isa::Avx512 {
            "AVX-512".to_owned()
        } else {
            isa.to_string()
        };
        let _ = writeln!(std::io::stderr(), "skipped: no {name} on this CPU");
        return None;
    }
    let b = CpuBackend::with_isa(isa).expect("a supported ISA builds");
    assert_eq!(b.isa(), isa);
    Some(b)
}

macro_rules! suite {
    ($name:ident, $isa:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn ntt() {
                if let Some(b) = backend($isa) {
                    assert!(conformance::check_ntt(&b) >= 15);
                }
            }

            #[test]
            fn lde() {
                if let Some(b) = backend($isa) {
                    assert!(conformance::check_lde(&b) >= 11);
                }
            }

            #[test]
            fn merkle_rp64() {
                if let Some(b) = backend($isa) {
                    assert_eq!(conformance::check_merkle_rp64(&b), 10);
                }
            }

            #[test]
            fn merkle_blake3() {
                if let Some(b) = backend($isa) {
                    assert_eq!(conformance::check_merkle_blake3(&b), 10);
                }
            }
        }
    };
}

suite!(scalar, Isa::Scalar);
suite!(avx2, Isa::Avx2);
suite!(avx512, Isa::Avx512);

/// AVX2 is the build baseline of the appliance (x86-64-v3): it must be there, or the AVX2
/// suite above would silently skip.
#[test]
#[cfg(target_arch = "x86_64")]
fn avx2_is_present_on_the_build_baseline() {
    assert!(Isa::Avx2.is_supported());
    assert!(Isa::best() >= Isa::Avx2);
}
