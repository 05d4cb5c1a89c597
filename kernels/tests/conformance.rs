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

/// The rows the prover commits to with BLAKE3, exactly as winterfell hashes them: each LDE row
/// read as extension-field elements (`E::slice_from_base_elements`, hashed by
/// `Blake3_256::hash_elements::<E>`), rows of any word (non-canonical ones included: a Montgomery
/// word `>= p` serialises through `as_int`), rows wider than one BLAKE3 chunk (1,024 bytes),
/// and trees of 2, 4 and 8 leaves. The whole tree is compared: root, leaves and every opening.
#[test]
fn blake3_rows_as_winterfell_hashes_them() {
    use epa_kernels::Backend;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use winter_crypto::{ElementHasher, MerkleTree, hashers::Blake3_256};
    use winter_math::{
        FieldElement,
        fields::{CubeExtension, QuadExtension, f64::BaseElement},
    };

    type B3 = Blake3_256<BaseElement>;

    fn leaves<E: FieldElement<BaseField = BaseElement>>(
        data: &[BaseElement],
        width: usize,
    ) -> Vec<<B3 as winter_crypto::Hasher>::Digest> {
        data.chunks_exact(width)
            .map(|row| B3::hash_elements(E::slice_from_base_elements(row)))
            .collect()
    }

    let seed = conformance::fresh_seed();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    for isa in Isa::ALL {
        let Some(b) = backend(isa) else { continue };
        for (log_rows, width) in [
            (1u32, 1usize),
            (1, 2),
            (2, 3),
            (3, 6),
            (6, 12),
            (6, 24),
            (9, 8),
            (4, 130),
            (5, 129),
        ] {
            let n = 1usize << log_rows;
            // Arbitrary words: canonical or not, as an LDE may leave them.
            let data: Vec<BaseElement> = (0..n * width)
                .map(|_| BaseElement::from_mont(rng.r#gen()))
                .collect();
            let mut refs = vec![("base", leaves::<BaseElement>(&data, width))];
            if width % 2 == 0 {
                refs.push((
                    "quadratic",
                    leaves::<QuadExtension<BaseElement>>(&data, width),
                ));
            }
            if width % 3 == 0 {
                refs.push(("cubic", leaves::<CubeExtension<BaseElement>>(&data, width)));
            }
            let rows = epa_kernels::RowMatrix::from_row_major(data, width).expect("n * width");
            let tree = b.commit_rows_blake3(&rows).expect("at least two rows");
            for (field, want) in refs {
                let what =
                    format!("{isa}: {n} rows x {width} words as {field} elements (seed {seed})");
                assert_eq!(tree.leaves(), &want[..], "{what}: leaves");
                let want = MerkleTree::<B3>::new(want).expect("a power of two >= 2 leaves");
                assert_eq!(tree.root(), want.root(), "{what}: root");
                for i in 0..n {
                    assert_eq!(
                        tree.prove(i).ok(),
                        want.prove(i).ok(),
                        "{what}: opening {i}"
                    );
                }
            }
        }
    }
}
