#![no_main]
//! Decodes arbitrary bytes as an SMT proof and verifies it against a fixed tree.
//!
//! Checks: decoding never panics; an accepted encoding is the unique one (re-encoding gives the
//! same bytes); verification never panics; and a proof that verifies against the fixed root
//! states the truth about the fixed tree (no forged membership or non-membership).

use std::sync::OnceLock;

use crypto::smt::{MemStore, Smt, SmtProof, Word, empty_subtree_root};

const DEPTH: u8 = 8;

/// The fixed tree: a few keys of a depth-8 tree.
fn tree() -> &'static Smt<MemStore> {
    static TREE: OnceLock<Smt<MemStore>> = OnceLock::new();
    TREE.get_or_init(|| {
        let mut tree = Smt::new(DEPTH, MemStore::new()).expect("depth 8 is valid");
        // Distinct non-empty values without a field crate: empty-subtree roots are fixed words.
        let updates: [(u64, Word); 4] = [
            (1, empty_subtree_root(1)),
            (2, empty_subtree_root(2)),
            (200, empty_subtree_root(3)),
            (255, empty_subtree_root(4)),
        ];
        tree.update_batch(&updates).expect("keys are below 2^8");
        tree
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(proof) = SmtProof::from_bytes(data) else {
        return;
    };
    assert_eq!(proof.to_bytes(), data, "accepted encodings are unique");
    let tree = tree();
    let root = tree.root();
    let depth =
        u8::try_from(proof.siblings.len()).expect("decoded proofs have at most 64 siblings");
    let _ = proof.verify(&root, depth);
    if proof.verify(&root, DEPTH) {
        let actual = tree
            .get(proof.key)
            .expect("a verified proof's key fits the depth");
        assert_eq!(proof.value, actual, "a forged proof verified");
    }
});
