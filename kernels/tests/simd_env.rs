//! `EPA_SIMD` selects the CPU backend's instruction set. This file holds a single test so that
//! nothing else in its process reads the environment while it is changed.

use epa_kernels::{CpuBackend, Error, Isa, cpu::SIMD_ENV};

fn set(value: Option<&str>) {
    // SAFETY: this test binary runs exactly one test, on one thread, and no other thread of
    // the process reads or writes the environment meanwhile.
    unsafe {
        match value {
            Some(v) => std::env::set_var(SIMD_ENV, v),
            None => std::env::remove_var(SIMD_ENV),
        }
    }
}

#[test]
fn epa_simd_selects_or_rejects() {
    set(None);
    assert_eq!(CpuBackend::new().expect("default").isa(), Isa::best());
    set(Some("scalar"));
    assert_eq!(
        CpuBackend::new().expect("scalar is always there").isa(),
        Isa::Scalar
    );
    set(Some(""));
    assert_eq!(
        CpuBackend::new().expect("empty means unset").isa(),
        Isa::best()
    );
    set(Some("neon9"));
    assert_eq!(
        CpuBackend::new().err(),
        Some(Error::InvalidSimdEnv {
            value: "neon9".into()
        })
    );
    for isa in [Isa::Avx2, Isa::Avx512] {
        set(Some(isa.name()));
        match CpuBackend::new() {
            Ok(b) => assert!(isa.is_supported() && b.isa() == isa),
            Err(e) => {
                assert!(!isa.is_supported());
                assert_eq!(
                    e,
                    Error::UnsupportedIsa {
                        requested: isa,
                        available: Isa::best()
                    }
                );
            }
        }
    }
    set(None);
}
