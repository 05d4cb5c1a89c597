//! The byte encoding of SMT proofs: round trips, hand-derived golden bytes, every rejection,
//! and arbitrary input never panicking.

use epa_crypto::Error;
use epa_crypto::smt::{
    MAX_PROOF_BYTES, MemStore, PROOF_VERSION, Smt, SmtProof, Word, empty_subtree_root,
};
use proptest::prelude::*;
use winter_math::fields::f64::BaseElement;

/// The Goldilocks modulus `2^64 - 2^32 + 1`.
const MODULUS: u64 = 0xffff_ffff_0000_0001;

fn word(raw: [u64; 4]) -> Word {
    raw.map(BaseElement::new)
}

fn word_bytes(word: &Word) -> Vec<u8> {
    word.iter().flat_map(|e| e.as_int().to_le_bytes()).collect()
}

/// A tree of `depth` holding `entries`, and a proof for `key` in it.
fn proof_in(depth: u8, entries: &[(u64, Word)], key: u64) -> (Word, SmtProof) {
    let mut tree = Smt::new(depth, MemStore::new()).expect("valid depth");
    tree.update_batch(entries).expect("keys are in range");
    (tree.root(), tree.prove(key).expect("key is in range"))
}

#[test]
fn golden_bytes_follow_the_documented_layout() {
    // Non-membership in the empty tree of depth 2: value and both siblings are defaults.
    let (root, proof) = proof_in(2, &[], 3);
    let mut expected = vec![PROOF_VERSION, 2, 0b1];
    expected.extend_from_slice(&3u64.to_le_bytes());
    expected.extend_from_slice(&0b11u64.to_le_bytes());
    assert_eq!(proof.to_bytes(), expected);
    assert_eq!(
        SmtProof::from_bytes(&expected).expect("golden decodes"),
        proof
    );
    assert!(proof.verify(&root, 2));

    // Key 1 holds `v`; the proof for key 0 (absent) has sibling 0 = `v` and sibling 1 = E[1].
    let v = word([1, 2, 3, MODULUS - 1]);
    let (root, proof) = proof_in(2, &[(1, v)], 0);
    let mut expected = vec![PROOF_VERSION, 2, 0b1];
    expected.extend_from_slice(&0u64.to_le_bytes());
    expected.extend_from_slice(&0b10u64.to_le_bytes());
    expected.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(proof.to_bytes(), expected);
    assert!(proof.verify(&root, 2));

    // The membership proof for key 1: flags 0, the value, then sibling 0 (empty leaf 0) omitted.
    let (_, proof) = proof_in(2, &[(1, v)], 1);
    let bytes = proof.to_bytes();
    assert_eq!(&bytes[..3], &[PROOF_VERSION, 2, 0]);
    assert_eq!(&bytes[11..19], &0b11u64.to_le_bytes());
    assert_eq!(&bytes[19..], &word_bytes(&v)[..]);
}

#[test]
fn every_malformed_header_is_rejected_with_its_error() {
    let v = word([9, 8, 7, 6]);
    let (_, proof) = proof_in(8, &[(5, v), (200, v)], 5);
    let good = proof.to_bytes();
    assert_eq!(SmtProof::from_bytes(&good).expect("valid"), proof);

    for len in 0..good.len() {
        let err = SmtProof::from_bytes(&good[..len]).expect_err("truncated");
        assert!(
            matches!(err, Error::SmtProofLength { actual, .. } if actual == len),
            "{err}"
        );
    }
    let mut long = good.clone();
    long.push(0);
    assert_eq!(
        SmtProof::from_bytes(&long),
        Err(Error::SmtProofLength {
            expected: good.len(),
            actual: good.len() + 1
        })
    );

    let with = |at: usize, byte: u8| {
        let mut bytes = good.clone();
        bytes[at] = byte;
        SmtProof::from_bytes(&bytes)
    };
    assert_eq!(with(0, 2), Err(Error::SmtProofVersion { version: 2 }));
    assert_eq!(with(1, 0), Err(Error::SmtInvalidDepth { depth: 0 }));
    assert_eq!(with(1, 65), Err(Error::SmtInvalidDepth { depth: 65 }));
    assert_eq!(with(2, 0b10), Err(Error::SmtProofFlags { flags: 0b10 }));
    assert_eq!(
        with(4, 1),
        Err(Error::SmtKeyOutOfRange {
            key: 5 + 256,
            depth: 8
        })
    );
    let bitmap = u64::from_le_bytes(good[11..19].try_into().expect("8 bytes"));
    assert_eq!(
        with(12, 1),
        Err(Error::SmtProofBitmap {
            bitmap: bitmap | 1 << 8,
            depth: 8
        })
    );
}

#[test]
fn non_canonical_and_non_compact_words_are_rejected() {
    let v = word([9, 8, 7, 6]);
    let (_, proof) = proof_in(8, &[(5, v), (4, v)], 5);
    let good = proof.to_bytes();
    // Value element 2 set to the modulus (reduces to 0 if accepted: two encodings).
    let mut bytes = good.clone();
    bytes[19 + 16..19 + 24].copy_from_slice(&MODULUS.to_le_bytes());
    assert_eq!(
        SmtProof::from_bytes(&bytes),
        Err(Error::SmtProofNonCanonical { offset: 35 })
    );
    bytes[19 + 16..19 + 24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(
        SmtProof::from_bytes(&bytes),
        Err(Error::SmtProofNonCanonical { offset: 35 })
    );

    // The empty value written out instead of flagged.
    let mut bytes = good.clone();
    bytes[19..51].fill(0);
    assert_eq!(
        SmtProof::from_bytes(&bytes),
        Err(Error::SmtProofNotCompact { offset: 19 })
    );

    // A default sibling written out instead of flagged: clear bit 1 and insert E[1].
    assert_eq!(proof.siblings[1], empty_subtree_root(1));
    let mut bytes = good[..19].to_vec();
    let bitmap = u64::from_le_bytes(good[11..19].try_into().expect("8 bytes"));
    assert_ne!(bitmap & 1, 1, "sibling 0 is key 4's leaf");
    bytes[11..19].copy_from_slice(&(bitmap & !0b10).to_le_bytes());
    bytes.extend_from_slice(&good[19..19 + 64]); // value, sibling 0
    bytes.extend_from_slice(&word_bytes(&empty_subtree_root(1)));
    bytes.extend_from_slice(&good[19 + 64..]);
    assert_eq!(
        SmtProof::from_bytes(&bytes),
        Err(Error::SmtProofNotCompact { offset: 19 + 64 })
    );
}

/// Proofs from trees of random depth and content, for random keys (members or not).
fn proofs() -> impl Strategy<Value = (u8, Word, SmtProof)> {
    (1u8..=64)
        .prop_flat_map(|depth| {
            let bound = if depth == 64 {
                u64::MAX
            } else {
                (1u64 << depth) - 1
            };
            (
                Just(depth),
                prop::collection::vec((0..=bound, any::<[u64; 4]>().prop_map(word)), 0..8),
                0..=bound,
                any::<bool>(),
            )
        })
        .prop_map(|(depth, entries, other, member)| {
            let key = match entries.first() {
                Some(&(key, _)) if member => key,
                _ => other,
            };
            let (root, proof) = proof_in(depth, &entries, key);
            (depth, root, proof)
        })
}

/// Random bytes behind a mostly plausible header (version 1, a small depth, few flags), so
/// that decoding gets past the first checks.
fn header_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..=2,
        0u8..=66,
        0u8..=2,
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..(MAX_PROOF_BYTES - 19)),
    )
        .prop_map(|(version, depth, flags, key, bitmap, tail)| {
            let mask = if depth >= 64 {
                u64::MAX
            } else {
                (1u64 << depth) - 1
            };
            let mut bytes = vec![version, depth, flags];
            bytes.extend_from_slice(&(key & mask).to_le_bytes());
            bytes.extend_from_slice(&(bitmap & mask).to_le_bytes());
            bytes.extend_from_slice(&tail);
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip((depth, root, proof) in proofs()) {
        prop_assert!(proof.verify(&root, depth));
        let bytes = proof.to_bytes();
        prop_assert!(bytes.len() <= MAX_PROOF_BYTES);
        let decoded = SmtProof::from_bytes(&bytes).expect("an encoded proof decodes");
        prop_assert_eq!(&decoded, &proof);
        prop_assert!(decoded.verify(&root, depth));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..700),
        header_like_bytes(),
    ]) {
        if let Ok(proof) = SmtProof::from_bytes(&bytes) {
            prop_assert_eq!(proof.to_bytes(), bytes, "the encoding is unique");
        }
    }

    #[test]
    fn mutated_proofs_never_panic_and_stay_unique(
        (depth, root, proof) in proofs(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let good = proof.to_bytes();
        let mut bytes = good.clone();
        for (at, xor) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= xor;
        }
        if let Ok(decoded) = SmtProof::from_bytes(&bytes) {
            prop_assert_eq!(decoded.to_bytes(), bytes.clone());
            if bytes != good {
                prop_assert_ne!(&decoded, &proof);
                // Only a change the verifier cannot see (a key bit above a level where both
                // children are equal) could still verify; anything else must fail.
                if decoded.verify(&root, depth) {
                    prop_assert_eq!(decoded.value, proof.value);
                    prop_assert_eq!(&decoded.siblings, &proof.siblings);
                }
            }
        }
        let truncated = &good[..cut.index(good.len())];
        prop_assert!(SmtProof::from_bytes(truncated).is_err());
    }
}
