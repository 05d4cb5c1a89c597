//! Unit tests: layout, periodic columns, constraint evaluation on honest and forged traces,
//! witness validation and the public-input codec. Proving end to end lives in
//! `tests/smt_update*.rs`.

use crypto::smt::{MemStore, Smt};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_math::{StarkField, fft, polynom};
use winterfell::{BatchingMethod, FieldExtension, Trace};

use super::*;

fn random_word(rng: &mut ChaCha20Rng) -> Word {
    [(); 4].map(|_| BaseElement::new(rng.r#gen::<u64>() % BaseElement::MODULUS))
}

/// `count` random updates on a random pre-populated tree of `depth`, through `crypto::smt`.
fn random_batch(depth: u8, count: usize, seed: u64) -> Vec<SmtUpdateWitness> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut tree = Smt::new(depth, MemStore::new()).expect("depth is valid");
    let key_space = if depth >= 64 {
        u64::MAX
    } else {
        (1u64 << depth) - 1
    };
    let key = |rng: &mut ChaCha20Rng| rng.gen_range(0..=key_space);
    let prefill: Vec<(u64, Word)> = (0..6)
        .map(|_| (key(&mut rng), random_word(&mut rng)))
        .collect();
    tree.update_batch(&prefill).expect("keys in range");
    let updates: Vec<(u64, Word)> = (0..count)
        .map(|_| (key(&mut rng), random_word(&mut rng)))
        .collect();
    tree.update_batch(&updates).expect("keys in range")
}

fn options() -> ProofOptions {
    ProofOptions::new(
        8,
        8,
        0,
        FieldExtension::None,
        4,
        7,
        BatchingMethod::Linear,
        BatchingMethod::Linear,
    )
}

fn air_for(pi: &SmtUpdatePublicInputs) -> SmtUpdateAir {
    let info = TraceInfo::new(TRACE_WIDTH, pi.trace_length());
    SmtUpdateAir::new(info, pi.clone(), options())
}

/// (rows where some transition constraint is non-zero, assertions that fail).
fn violations(air: &SmtUpdateAir, trace: &TraceTable<BaseElement>) -> (Vec<usize>, usize) {
    let n = trace.length();
    let periodic = air.get_periodic_column_values();
    let mut bad_rows = Vec::new();
    let mut result = vec![BaseElement::ZERO; NUM_CONSTRAINTS];
    for row in 0..n - 1 {
        let current: Vec<_> = (0..TRACE_WIDTH).map(|c| trace.get(c, row)).collect();
        let next: Vec<_> = (0..TRACE_WIDTH).map(|c| trace.get(c, row + 1)).collect();
        let values: Vec<_> = periodic.iter().map(|col| col[row % col.len()]).collect();
        let frame = EvaluationFrame::from_rows(current, next);
        air.evaluate_transition(&frame, &values, &mut result);
        if result.iter().any(|&v| v != BaseElement::ZERO) {
            bad_rows.push(row);
        }
    }
    let mut failed = 0;
    for assertion in air.get_assertions() {
        let mut ok = true;
        assertion.apply(n, |step, value| {
            ok &= trace.get(assertion.column(), step) == value
        });
        failed += usize::from(!ok);
    }
    (bad_rows, failed)
}

#[test]
fn layout_rules() {
    let l = Layout::new(32, 3).expect("valid");
    assert_eq!((l.levels, l.segment_rows, l.segments), (32, 256, 4));
    assert_eq!(l.trace_length, 1024);
    assert_eq!(l.segment_end(2), 2 * 256 + 255);
    let l = Layout::new(5, 1).expect("valid");
    assert_eq!((l.levels, l.segment_rows, l.trace_length), (8, 64, 64));
    assert_eq!(l.segment_end(0), 39);
    assert!(matches!(
        Layout::new(1, 1),
        Err(Error::SmtDepthOutOfRange { depth: 1 })
    ));
    assert!(matches!(
        Layout::new(65, 1),
        Err(Error::SmtDepthOutOfRange { depth: 65 })
    ));
    assert!(matches!(Layout::new(8, 0), Err(Error::SmtEmptyBatch)));
    let max = MAX_TRACE_LENGTH / 256;
    assert!(Layout::new(32, max).is_ok());
    assert!(matches!(
        Layout::new(32, max + 1),
        Err(Error::SmtTooManyUpdates { count, .. }) if count == max + 1
    ));
}

/// Winterfell's debug build requires each constraint's degree to be exactly the declared one;
/// that holds only if every per-segment selector's interpolant has full degree `P - 1`.
#[test]
fn segment_selectors_have_full_degree_for_every_depth() {
    for depth in MIN_DEPTH..=MAX_DEPTH {
        let pi = SmtUpdatePublicInputs::new(
            depth,
            EMPTY_WORD,
            EMPTY_WORD,
            vec![SmtUpdate {
                key: 0,
                old_value: EMPTY_WORD,
                new_value: EMPTY_WORD,
            }],
        )
        .expect("valid statement");
        let air = air_for(&pi);
        let rows = pi.layout().segment_rows;
        let inv_twiddles = fft::get_inv_twiddles::<BaseElement>(rows);
        for column in air.segment_periodic_columns() {
            assert_eq!(column.len(), rows);
            let mut poly = column.clone();
            fft::interpolate_poly(&mut poly, &inv_twiddles);
            assert_eq!(polynom::degree_of(&poly), rows - 1, "depth {depth}");
        }
        for column in [
            rescue::periodic_round_flag(),
            rescue::periodic_first_row_flag(),
        ] {
            let mut poly = column.clone();
            fft::interpolate_poly(&mut poly, &fft::get_inv_twiddles::<BaseElement>(8));
            assert_eq!(polynom::degree_of(&poly), 7);
        }
    }
}

/// The degree of every transition constraint's polynomial `C(x)` over `trace` (before the
/// division by the `n − 1`-degree divisor), derived the way winterfell's debug build does it:
/// evaluate the constraints over an 8-fold coset extension of the trace and interpolate.
/// A zero polynomial counts as degree 0.
fn constraint_degrees(air: &SmtUpdateAir, trace: &TraceTable<BaseElement>) -> Vec<usize> {
    let n = trace.length();
    let blowup = 8;
    let big = n * blowup;
    let offset = BaseElement::GENERATOR;
    let inv_twiddles = fft::get_inv_twiddles::<BaseElement>(n);
    let twiddles = fft::get_twiddles::<BaseElement>(n);
    let extend = |mut values: Vec<BaseElement>| {
        fft::interpolate_poly(&mut values, &inv_twiddles);
        fft::evaluate_poly_with_offset(&values, &twiddles, offset, blowup)
    };
    let columns: Vec<Vec<BaseElement>> = (0..TRACE_WIDTH)
        .map(|c| extend(trace.get_column(c).to_vec()))
        .collect();
    // a periodic column of cycle c is the trace-length column that repeats it
    let periodic: Vec<Vec<BaseElement>> = air
        .get_periodic_column_values()
        .into_iter()
        .map(|column| extend((0..n).map(|row| column[row % column.len()]).collect()))
        .collect();
    let mut evaluations = vec![vec![BaseElement::ZERO; big]; NUM_CONSTRAINTS];
    let mut result = vec![BaseElement::ZERO; NUM_CONSTRAINTS];
    for point in 0..big {
        let next = (point + blowup) % big;
        let frame = EvaluationFrame::from_rows(
            columns.iter().map(|c| c[point]).collect(),
            columns.iter().map(|c| c[next]).collect(),
        );
        let values: Vec<_> = periodic.iter().map(|c| c[point]).collect();
        air.evaluate_transition(&frame, &values, &mut result);
        for (column, &value) in evaluations.iter_mut().zip(&result) {
            column[point] = value;
        }
    }
    let big_inv_twiddles = fft::get_inv_twiddles::<BaseElement>(big);
    evaluations
        .into_iter()
        .map(|mut column| {
            fft::interpolate_poly_with_offset(&mut column, &big_inv_twiddles, offset);
            polynom::degree_of(&column)
        })
        .collect()
}

/// The degrees `SmtUpdateAir` declares, as polynomial degrees over a trace of `n` rows.
fn declared_degrees(pi: &SmtUpdatePublicInputs) -> Vec<usize> {
    transition_degrees(&pi.layout())
        .iter()
        .map(|d| d.get_evaluation_degree(pi.trace_length()))
        .collect()
}

/// The trace and statement of `witnesses`, the anchor column kept or zeroed (a zero anchor
/// still satisfies every constraint; it switches the anchor terms off).
fn trace_and_inputs(
    depth: u8,
    witnesses: &[SmtUpdateWitness],
    anchored: bool,
) -> (TraceTable<BaseElement>, SmtUpdatePublicInputs) {
    let mut trace = build_trace(depth, witnesses).expect("honest witnesses");
    if !anchored {
        trace.set(COL_ANCHOR, 0, BaseElement::ZERO);
    }
    let pi = SmtUpdatePublicInputs::from_witnesses(depth, witnesses).expect("valid");
    (trace, pi)
}

/// Batches at `depth` whose hash-state columns repeat with a shorter period than the trace:
/// (name, witnesses).
fn degenerate_batches(depth: u8, seed: u64) -> Vec<(&'static str, Vec<SmtUpdateWitness>)> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let key = |rng: &mut ChaCha20Rng| rng.gen_range(0..1u64 << depth);
    let mut batches = Vec::new();

    // delete of an absent key on an empty tree, then a write: `A` repeats
    let mut tree = Smt::new(depth, MemStore::new()).expect("depth is valid");
    let (k0, k1) = (key(&mut rng), key(&mut rng));
    let value = random_word(&mut rng);
    let w = tree
        .update_batch(&[(k0, EMPTY_WORD), (k1, value)])
        .expect("keys in range");
    batches.push(("empty-tree no-op, then a write", w));

    // the same leaf rewritten with its own value twice: the whole trace repeats
    let mut tree = Smt::new(depth, MemStore::new()).expect("depth is valid");
    let (k0, v0) = (key(&mut rng), random_word(&mut rng));
    tree.update_batch(&[(k0, v0), (key(&mut rng), random_word(&mut rng))])
        .expect("keys in range");
    let w = tree
        .update_batch(&[(k0, v0), (k0, v0)])
        .expect("keys in range");
    batches.push(("the same no-op twice", w));

    // three updates toggling one leaf v0 -> v1 -> v0 -> v1: with the padding segment (a
    // replay of the last update as a no-op) `A` holds the paths of v0, v1, v0, v1
    let v1 = random_word(&mut rng);
    let w = tree
        .update_batch(&[(k0, v1), (k0, v0), (k0, v1)])
        .expect("keys in range");
    batches.push(("a leaf toggled three times", w));
    batches
}

/// The declared degrees are tight: on generic batches every constraint reaches its declared
/// degree even with the anchor terms switched off, so no declaration is too high.
#[test]
fn declared_degrees_are_tight_without_the_anchor() {
    for (depth, count, seed) in [
        (2u8, 1usize, 1u64),
        (3, 2, 2),
        (5, 3, 3),
        (8, 2, 4),
        (4, 4, 5),
    ] {
        let witnesses = random_batch(depth, count, seed);
        for anchored in [false, true] {
            let (trace, pi) = trace_and_inputs(depth, &witnesses, anchored);
            let air = air_for(&pi);
            let mut actual = constraint_degrees(&air, &trace);
            let mut declared = declared_degrees(&pi);
            if !anchored {
                // constraint 7 reads only the anchor, which is zero here
                assert_eq!(actual.pop(), Some(0));
                declared.pop();
            }
            assert_eq!(
                actual, declared,
                "depth {depth}, {count} updates, anchored {anchored}"
            );
        }
    }
}

/// The defect the anchor fixes: on batches whose columns repeat, some constraints fall below
/// their declared degree without it (winterfell's debug build panics), and every constraint
/// has exactly its declared degree with it.
#[test]
fn anchor_keeps_degrees_exact_on_degenerate_batches() {
    for (depth, seed) in [(8u8, 11u64), (4, 12), (3, 13)] {
        for (name, witnesses) in degenerate_batches(depth, seed) {
            let (trace, pi) = trace_and_inputs(depth, &witnesses, false);
            let declared = declared_degrees(&pi);
            let unanchored = constraint_degrees(&air_for(&pi), &trace);
            let short = (0..NUM_CONSTRAINTS - 1)
                .filter(|&c| unanchored[c] < declared[c])
                .count();
            assert!(short > 0, "{name} (depth {depth}): expected a degree drop");
            assert!(
                (0..NUM_CONSTRAINTS).all(|c| unanchored[c] <= declared[c]),
                "{name} (depth {depth}): a constraint exceeds its declared degree"
            );

            let (trace, pi) = trace_and_inputs(depth, &witnesses, true);
            let air = air_for(&pi);
            assert_eq!(
                constraint_degrees(&air, &trace),
                declared,
                "{name} (depth {depth})"
            );
            let (bad_rows, failed) = violations(&air, &trace);
            assert!(bad_rows.is_empty() && failed == 0, "{name}: honest trace");
        }
    }
}

/// The anchor cannot be abused: a non-zero anchor cell off the first row of a cycle violates
/// constraint 7, and any non-zero anchor on first rows leaves the other constraints unchanged
/// on every checked row.
#[test]
fn anchor_is_pinned_by_its_constraint() {
    let witnesses = random_batch(4, 2, 21);
    let (trace, pi) = trace_and_inputs(4, &witnesses, true);
    let air = air_for(&pi);
    let mut rng = ChaCha20Rng::seed_from_u64(22);
    for _ in 0..16 {
        let row = rng.gen_range(0..trace.length() - 1);
        let mut forged = trace.clone();
        forged.set(COL_ANCHOR, row, random_word(&mut rng)[0] + BaseElement::ONE);
        let (bad_rows, _) = violations(&air, &forged);
        if row % CYCLE_LENGTH == 0 {
            assert!(bad_rows.is_empty(), "first row {row}: anchor is free there");
        } else {
            assert_eq!(bad_rows, vec![row], "row {row}: constraint 7 must fail");
        }
    }
}

#[test]
fn commitment_depends_on_every_field() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let updates: Vec<SmtUpdate> = (0..3)
        .map(|_| SmtUpdate {
            key: rng.gen_range(0..1 << 16),
            old_value: random_word(&mut rng),
            new_value: random_word(&mut rng),
        })
        .collect();
    let base = commit_updates(16, &updates);
    assert_eq!(base, commit_updates(16, &updates.clone()));
    assert_ne!(base, commit_updates(17, &updates));
    assert_ne!(base, commit_updates(16, &updates[..2]));
    let mut swapped = updates.clone();
    swapped.swap(0, 1);
    assert_ne!(base, commit_updates(16, &swapped));
    let mut changed = updates.clone();
    changed[2].key ^= 1 << 40;
    assert_ne!(base, commit_updates(16, &changed));
    let mut changed = updates.clone();
    changed[1].new_value[3] += BaseElement::ONE;
    assert_ne!(base, commit_updates(16, &changed));
    let mut changed = updates;
    changed[0].old_value[0] += BaseElement::ONE;
    assert_ne!(base, commit_updates(16, &changed));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// An honest trace satisfies every constraint and assertion; it matches the tree's roots.
    #[test]
    fn honest_traces_satisfy_the_air(depth in 2u8..=9, count in 1usize..=5, seed in any::<u64>()) {
        let witnesses = random_batch(depth, count, seed);
        let trace = build_trace(depth, &witnesses).expect("honest witnesses");
        let pi = SmtUpdatePublicInputs::from_witnesses(depth, &witnesses).expect("valid");
        prop_assert_eq!(trace.length(), pi.trace_length());
        let air = air_for(&pi);
        let (bad_rows, failed) = violations(&air, &trace);
        prop_assert!(bad_rows.is_empty(), "constraints fail at rows {:?}", bad_rows);
        prop_assert_eq!(failed, 0);
        // the new path of the last update ends at the tree's new root, and the path agrees
        // with the tree
        let end = pi.layout().segment_end(count - 1);
        for j in 0..4 {
            prop_assert_eq!(
                trace.get(COL_NEW + DIGEST_START + j, end),
                witnesses[count - 1].new_root[j]
            );
            prop_assert_eq!(trace.get(COL_ROOT + j, 0), witnesses[0].old_root[j]);
        }
        for w in &witnesses {
            prop_assert_eq!(root_from_path(w.key, &w.old_value, &w.siblings), w.old_root);
            prop_assert!(w.verify());
        }
    }

    /// A wrong old value, a wrong sibling (in the witness, or in one path only) or a broken
    /// chain always leaves a violated constraint or assertion.
    #[test]
    fn forged_traces_violate_the_air(
        depth in 2u8..=8,
        count in 2usize..=4,
        seed in any::<u64>(),
        target in any::<prop::sample::Index>(),
        level in any::<prop::sample::Index>(),
    ) {
        let witnesses = random_batch(depth, count, seed);
        let i = target.index(count);
        let j = level.index(depth as usize);
        let pi = SmtUpdatePublicInputs::from_witnesses(depth, &witnesses).expect("valid");
        let air = air_for(&pi);

        // wrong old value (the public list claims it too)
        let mut forged = witnesses.clone();
        forged[i].old_value[0] += BaseElement::ONE;
        let refused = matches!(
            build_trace(depth, &forged),
            Err(Error::SmtPathMismatch { index, which: "old" }) if index == i
        );
        prop_assert!(refused);
        let trace = build_trace_unverified(depth, &forged).expect("shape is fine");
        let forged_pi = SmtUpdatePublicInputs::from_witnesses(depth, &forged).expect("valid");
        let (rows, failed) = violations(&air_for(&forged_pi), &trace);
        prop_assert!(!rows.is_empty() || failed > 0);

        // wrong sibling shared by both paths
        let mut forged = witnesses.clone();
        forged[i].siblings[j][1] += BaseElement::ONE;
        prop_assert!(build_trace(depth, &forged).is_err());
        let trace = build_trace_unverified(depth, &forged).expect("shape is fine");
        let (rows, failed) = violations(&air, &trace);
        prop_assert!(!rows.is_empty() || failed > 0);

        // wrong sibling in the old path only: rewrite A from level j of update i
        let mut trace = build_trace(depth, &witnesses).expect("honest");
        let layout = pi.layout();
        let mut node: Option<Word> = None;
        for level in j..layout.levels {
            let row0 = layout.segment_start(i) + level * CYCLE_LENGTH;
            let mut state: [BaseElement; STATE_WIDTH] =
                core::array::from_fn(|c| trace.get(COL_OLD + c, row0));
            if let Some(node) = node {
                let bit = trace.get(COL_BIT, row0) == BaseElement::ONE;
                let half = if bit { DIGEST_LEN } else { 0 };
                state[DIGEST_START + half..DIGEST_START + half + DIGEST_LEN]
                    .copy_from_slice(&node);
            } else {
                let bit = trace.get(COL_BIT, row0) == BaseElement::ONE;
                let sibling_half = if bit { 0 } else { DIGEST_LEN };
                state[DIGEST_START + sibling_half] += BaseElement::ONE;
            }
            for r in 0..CYCLE_LENGTH {
                if r > 0 {
                    rescue::apply_round(&mut state, r - 1);
                }
                for (c, &v) in state.iter().enumerate() {
                    trace.set(COL_OLD + c, row0 + r, v);
                }
            }
            node = Some(rescue::digest_of(&state));
        }
        let (rows, failed) = violations(&air, &trace);
        prop_assert!(!rows.is_empty() || failed > 0);

        // broken chain: update i replaced by a consistent update of another tree
        let other = random_batch(depth, count, seed ^ 0x5eed);
        let mut forged = witnesses.clone();
        forged[i] = other[i].clone();
        if forged != witnesses {
            prop_assert!(build_trace(depth, &forged).is_err());
            let trace = build_trace_unverified(depth, &forged).expect("shape is fine");
            let forged_pi = SmtUpdatePublicInputs::from_witnesses(depth, &forged).expect("valid");
            let (rows, failed) = violations(&air_for(&forged_pi), &trace);
            prop_assert!(!rows.is_empty() || failed > 0);
        }
    }

    /// Encoding round-trips, and any single-byte corruption or truncation is refused or
    /// decodes to a different statement (never a panic).
    #[test]
    fn public_inputs_codec(depth in 2u8..=64, count in 1usize..=4, seed in any::<u64>(), flip in any::<prop::sample::Index>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let updates: Vec<SmtUpdate> = (0..count)
            .map(|_| SmtUpdate {
                key: if depth == 64 { rng.r#gen() } else { rng.gen_range(0..1u64 << depth) },
                old_value: random_word(&mut rng),
                new_value: random_word(&mut rng),
            })
            .collect();
        let pi = SmtUpdatePublicInputs::new(depth, random_word(&mut rng), random_word(&mut rng), updates)
            .expect("valid");
        let bytes = pi.to_bytes();
        prop_assert_eq!(bytes.len(), 6 + 96 + 72 * count);
        prop_assert_eq!(&SmtUpdatePublicInputs::from_bytes(&bytes).expect("round trip"), &pi);

        for cut in [0, 1, 5, bytes.len() / 2, bytes.len() - 1] {
            prop_assert!(SmtUpdatePublicInputs::from_bytes(&bytes[..cut]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(
            matches!(SmtUpdatePublicInputs::from_bytes(&longer), Err(Error::TrailingBytes { count: 1, .. })),
            "trailing byte must be refused"
        );
        let mut corrupt = bytes.clone();
        let at = flip.index(bytes.len());
        corrupt[at] ^= 0x01;
        if let Ok(decoded) = SmtUpdatePublicInputs::from_bytes(&corrupt) {
            prop_assert_ne!(decoded, pi);
        }
    }
}

#[test]
fn public_inputs_decoding_is_strict() {
    let witnesses = random_batch(8, 2, 99);
    let pi = SmtUpdatePublicInputs::from_witnesses(8, &witnesses).expect("valid");
    let bytes = pi.to_bytes();

    let mut v = bytes.clone();
    v[0] = 2;
    assert!(matches!(
        SmtUpdatePublicInputs::from_bytes(&v),
        Err(Error::UnsupportedVersion { found: 2, .. })
    ));
    // a listed value changed: the commitment no longer matches
    let mut v = bytes.clone();
    let first_update = 6 + 96;
    v[first_update + 8] ^= 0x10;
    assert!(matches!(
        SmtUpdatePublicInputs::from_bytes(&v),
        Err(Error::SmtCommitmentMismatch)
    ));
    // a non-canonical element
    let mut v = bytes.clone();
    v[6..14].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        SmtUpdatePublicInputs::from_bytes(&v),
        Err(Error::SmtNonCanonical {
            value: u64::MAX,
            ..
        })
    ));
    // a key out of range for the depth
    let mut v = bytes.clone();
    v[first_update..first_update + 8].copy_from_slice(&(1u64 << 8).to_le_bytes());
    assert!(matches!(
        SmtUpdatePublicInputs::from_bytes(&v),
        Err(Error::SmtKeyOutOfRange { key: 256, .. })
    ));
    // a huge count is refused before allocating
    let mut v = bytes.clone();
    v[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        SmtUpdatePublicInputs::from_bytes(&v),
        Err(Error::SmtTooManyUpdates { .. })
    ));
    // a count that promises more updates than there are bytes
    let mut v = bytes.clone();
    v[2..6].copy_from_slice(&3u32.to_le_bytes());
    assert!(matches!(
        SmtUpdatePublicInputs::from_bytes(&v),
        Err(Error::Truncated { .. })
    ));
    // depth out of range
    let mut v = bytes;
    v[1] = 1;
    assert!(matches!(
        SmtUpdatePublicInputs::from_bytes(&v),
        Err(Error::SmtDepthOutOfRange { depth: 1 })
    ));
}

#[test]
fn witness_validation_errors() {
    let witnesses = random_batch(6, 3, 5);
    assert!(build_trace(6, &witnesses).is_ok());
    assert!(matches!(build_trace(6, &[]), Err(Error::SmtEmptyBatch)));
    assert!(matches!(
        build_trace(7, &witnesses),
        Err(Error::SmtDepthMismatch {
            index: 0,
            siblings: 6,
            depth: 7
        })
    ));
    assert!(matches!(
        build_trace(0, &witnesses),
        Err(Error::SmtDepthOutOfRange { depth: 0 })
    ));
    let mut bad = witnesses.clone();
    bad[1].key = 1 << 6;
    assert!(matches!(
        build_trace(6, &bad),
        Err(Error::SmtKeyOutOfRange {
            index: 1,
            key: 64,
            depth: 6
        })
    ));
    let mut bad = witnesses.clone();
    bad[2].new_value[2] += BaseElement::ONE;
    assert!(matches!(
        build_trace(6, &bad),
        Err(Error::SmtPathMismatch {
            index: 2,
            which: "new"
        })
    ));
    // swapping two updates breaks the chain (each stays consistent on its own)
    let mut bad = witnesses.clone();
    bad.swap(1, 2);
    assert!(matches!(
        build_trace(6, &bad),
        Err(Error::SmtBrokenChain { index: 1 })
    ));
}

#[test]
fn to_elements_binds_the_commitment() {
    let witnesses = random_batch(8, 2, 11);
    let pi = SmtUpdatePublicInputs::from_witnesses(8, &witnesses).expect("valid");
    let elements = pi.to_elements();
    assert_eq!(elements.len(), 14);
    assert_eq!(&elements[10..14], pi.commitment());
    assert_eq!(&elements[2..6], pi.old_root());
    assert_eq!(&elements[6..10], pi.new_root());
}
