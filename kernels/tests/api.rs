//! The backend API's contracts: what the CPU backend reports, typed errors for bad shapes and
//! parameters (never a panic), and ISA selection.

use epa_kernels::{Backend, ColumnMatrix, CpuBackend, Device, Error, Isa, RowMatrix};
use proptest::prelude::*;
use winter_math::{FieldElement, StarkField, fields::f64::BaseElement};

fn elements(n: usize) -> Vec<BaseElement> {
    (0..n as u64)
        .map(|i| BaseElement::new(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect()
}

#[test]
fn info_describes_the_cpu_backend() {
    for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
        let b = CpuBackend::with_isa(isa).expect("supported");
        let info = b.info();
        assert_eq!(info.name, format!("cpu-{}", isa.name()));
        match info.device {
            Device::Cpu { isa: i, threads } => {
                assert_eq!(i, isa);
                assert!(threads >= 1);
            }
            other => panic!("unexpected device {other:?}"),
        }
        assert!(info.capabilities.ntt && info.capabilities.coset_lde);
        assert!(info.capabilities.merkle_rp64_256 && info.capabilities.merkle_blake3);
        // The CPU backend decapsulates ML-KEM-768 batches (`cpu::mlkem`).
        assert!(info.capabilities.mlkem768_decap);
        assert_eq!(info.capabilities.max_log_size, 32);
        if cfg!(target_os = "linux") {
            assert!(info.memory_bytes.is_some_and(|m| m > 0));
        }
    }
}

#[test]
fn unsupported_isa_is_a_typed_error() {
    for isa in Isa::ALL {
        match CpuBackend::with_isa(isa) {
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
                assert!(e.to_string().contains(isa.name()));
            }
        }
    }
}

#[test]
fn isa_names_parse() {
    for isa in Isa::ALL {
        assert_eq!(isa.name().parse::<Isa>(), Ok(isa));
        assert_eq!(isa.name().to_uppercase().parse::<Isa>(), Ok(isa));
    }
    assert_eq!(
        "sse2".parse::<Isa>(),
        Err(Error::InvalidSimdEnv {
            value: "sse2".into()
        })
    );
}

#[test]
fn lde_parameters_are_checked() {
    let b = CpuBackend::new().expect("default backend");
    let m = ColumnMatrix::new(vec![elements(8)]).expect("valid");
    assert_eq!(
        b.coset_lde(&m, 8, BaseElement::ZERO),
        Err(Error::ZeroOffset)
    );
    assert_eq!(
        b.coset_lde(&m, 3, BaseElement::GENERATOR),
        Err(Error::NotPowerOfTwo {
            what: "LDE blowup factor",
            len: 3
        })
    );
    assert!(matches!(
        b.coset_lde(&m, 1 << 30, BaseElement::GENERATOR),
        Err(Error::TooLarge { .. })
    ));
    assert_eq!(
        b.coset_lde(&m, 0, BaseElement::ONE),
        Err(Error::NotPowerOfTwo {
            what: "LDE blowup factor",
            len: 0
        })
    );
}

#[test]
fn trees_need_two_leaves_and_rows_in_range() {
    let b = CpuBackend::new().expect("default backend");
    let one = RowMatrix::from_row_major(elements(5), 5).expect("one row of 5");
    assert_eq!(
        b.commit_rows_rp64_256(&one).err(),
        Some(Error::TooFewLeaves { leaves: 1 })
    );
    assert_eq!(
        b.commit_rows_blake3(&one).err(),
        Some(Error::TooFewLeaves { leaves: 1 })
    );
    assert_eq!(
        b.merkle_tree_rp64_256(vec![]).err(),
        Some(Error::TooFewLeaves { leaves: 0 })
    );
    let rows = RowMatrix::from_row_major(elements(12), 3).expect("4 rows of 3");
    assert_eq!(
        b.read_rows(&rows, &[3, 0]).expect("in range"),
        vec![rows.row(3).to_vec(), rows.row(0).to_vec()]
    );
    assert!(matches!(
        b.read_rows(&rows, &[4]),
        Err(Error::Shape { found: 4, .. })
    ));
}

proptest! {
    // Shapes from untrusted sizes: a typed error or a valid matrix, never a panic.
    #[test]
    fn column_matrix_shapes(lens in proptest::collection::vec(0usize..70, 0..5)) {
        let cols: Vec<Vec<BaseElement>> = lens.iter().map(|&n| elements(n)).collect();
        let valid = !lens.is_empty() && lens.iter().all(|&n| n == lens[0]) && lens[0].is_power_of_two();
        match ColumnMatrix::new(cols) {
            Ok(m) => {
                prop_assert!(valid);
                prop_assert_eq!(m.num_cols(), lens.len());
                prop_assert_eq!(m.num_rows(), lens[0]);
            }
            Err(_) => prop_assert!(!valid),
        }
    }

    #[test]
    fn row_matrix_shapes(len in 0usize..300, width in 0usize..20) {
        let valid = width > 0 && len % width == 0 && (len / width).is_power_of_two();
        match RowMatrix::from_row_major(elements(len), width) {
            Ok(m) => {
                prop_assert!(valid);
                prop_assert_eq!(m.num_rows() * m.num_cols(), len);
            }
            Err(_) => prop_assert!(!valid),
        }
        let rows = if width == 0 { 0 } else { len / width.max(1) };
        let valid_cm = rows.is_power_of_two() && len > 0 && len.is_multiple_of(rows.max(1));
        if let Ok(m) = ColumnMatrix::from_column_major(elements(len), rows) {
            prop_assert!(valid_cm);
            prop_assert_eq!(m.num_rows(), rows);
        }
    }
}
