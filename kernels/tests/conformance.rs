//! Runs the conformance suite on every instruction set of the CPU backend.
//!
//! A libtest-style harness (`harness = false`, libtest-mimic) so that an instruction set this
//! CPU lacks (AVX-512 on most development machines) is reported as *ignored*, with one line
//! "skipped: no <ISA> on this CPU" on stderr, instead of passing without running; running it
//! anyway (`--ignored`) fails with the reason. Name filters, `--ignored`, `--include-ignored`
//! and `--nocapture` work as with the built-in harness; the trials are named `<isa>::<check>`
//! (`avx512::lde`).

use epa_kernels::{CpuBackend, Isa, conformance};
use libtest_mimic::{Arguments, Failed, Trial};

/// One suite check, given the backend of an instruction set.
type Check = fn(&CpuBackend);

const CHECKS: [(&str, Check); 4] = [
    ("ntt", |b| assert!(conformance::check_ntt(b) >= 15)),
    ("lde", |b| assert!(conformance::check_lde(b) >= 11)),
    ("merkle_rp64", |b| {
        assert_eq!(conformance::check_merkle_rp64(b), 10)
    }),
    ("merkle_blake3", |b| {
        assert_eq!(conformance::check_merkle_blake3(b), 10)
    }),
];

/// The trial `<isa>::<check>`: ignored where this CPU lacks `isa`, failing if run anyway.
fn trial(isa: Isa, name: &str, check: Check) -> Trial {
    Trial::test(format!("{isa}::{name}"), move || {
        let b = CpuBackend::with_isa(isa)
            .map_err(|e| Failed::from(format!("no {isa} backend on this CPU: {e}")))?;
        assert_eq!(b.isa(), isa);
        check(&b);
        Ok(())
    })
    .with_ignored_flag(!isa.is_supported())
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
        for (name, check) in CHECKS {
            trials.push(trial(isa, name, check));
        }
    }
    #[cfg(target_arch = "x86_64")]
    trials.push(Trial::test("avx2_is_present_on_the_build_baseline", || {
        avx2_is_present_on_the_build_baseline();
        Ok(())
    }));
    trials.push(Trial::test("blake3_rows_as_winterfell_hashes_them", || {
        blake3_rows_as_winterfell_hashes_them();
        Ok(())
    }));
    if !args.list {
        for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
            let prefix = format!("{isa}::");
            if !isa.is_supported()
                && trials
                    .iter()
                    .any(|t| t.name().starts_with(&prefix) && !args.is_filtered_out(t))
            {
                eprintln!("skipped: no {isa} on this CPU");
            }
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// AVX2 is the build baseline of the appliance (x86-64-v3): it must be there, or the AVX2
/// suite above would be ignored.
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
    // Every instruction set this CPU has (the per-ISA trials above report the others ignored).
    for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
        let b = CpuBackend::with_isa(isa).expect("a supported instruction set builds");
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
