//! Every CUDA kernel translation unit compiles with NVRTC for sm_80 and sm_90 (as PTX for
//! `compute_80` / `compute_90`). Needs `libnvrtc.so.12` on the library path, no GPU:
//! `scripts/cuda-check.sh` installs it, runs this test with `EPA_REQUIRE_NVRTC=1` and
//! `EPA_CUDA_PTX_DIR` set, and assembles the PTX written there with `ptxas -v`, failing on
//! register spills. Without NVRTC (and without `EPA_REQUIRE_NVRTC=1`) the test says it is
//! skipped.
#![cfg(feature = "cuda")]

use epa_kernels::cuda::{arch_for, compile_ptx, kernel_sources, nvrtc_present};

fn nvrtc_or_skip() -> bool {
    if nvrtc_present() {
        return true;
    }
    assert!(
        std::env::var("EPA_REQUIRE_NVRTC").as_deref() != Ok("1"),
        "EPA_REQUIRE_NVRTC=1 but libnvrtc.so.12 is not on the library path"
    );
    eprintln!("skipped: no NVRTC library (run scripts/cuda-check.sh)");
    false
}

#[test]
fn every_kernel_compiles_for_sm80_and_sm90() {
    if !nvrtc_or_skip() {
        return;
    }
    let out_dir = std::env::var_os("EPA_CUDA_PTX_DIR").map(std::path::PathBuf::from);
    let sources = kernel_sources().expect("the kernel sources expand");
    assert!(
        sources.iter().any(|s| s.name == "ntt.cu") && sources.iter().any(|s| s.name == "merkle.cu")
    );
    for arch in ["compute_80", "compute_90"] {
        for src in &sources {
            let ptx = compile_ptx(src, arch).unwrap_or_else(|e| panic!("{e}"));
            let text = ptx.to_src();
            assert!(
                text.contains(".entry"),
                "{} for {arch}: no kernel entry in the PTX",
                src.name
            );
            if let Some(dir) = &out_dir {
                std::fs::create_dir_all(dir).expect("EPA_CUDA_PTX_DIR is writable");
                let stem = src.name.trim_end_matches(".cu");
                let sm = arch.trim_start_matches("compute_");
                std::fs::write(dir.join(format!("{stem}.sm_{sm}.ptx")), text)
                    .expect("EPA_CUDA_PTX_DIR is writable");
            }
        }
    }
}

#[test]
fn a_compile_error_is_a_typed_error_with_the_log() {
    if !nvrtc_or_skip() {
        return;
    }
    let bad = epa_kernels::cuda::KernelSource {
        name: "broken.cu",
        code: "extern \"C\" __global__ void k(int *x) { x[0] = undefined_name; }".to_owned(),
    };
    match compile_ptx(&bad, "compute_90") {
        Err(epa_kernels::Error::Cuda { device, detail, .. }) => {
            assert_eq!(device, "nvrtc");
            assert!(detail.contains("undefined_name"), "log missing: {detail}");
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}

#[test]
fn architectures_follow_the_compute_capability() {
    assert_eq!(arch_for((9, 0)), Some("compute_90"));
    assert_eq!(arch_for((8, 0)), Some("compute_80"));
    assert_eq!(arch_for((8, 7)), Some("compute_86"));
    assert_eq!(arch_for((6, 1)), None);
}
