//! The sparse Merkle tree (SMT) over Rescue-Prime `Rp64_256` whose updates the prover proves.
//!
//! The tree maps `u64` keys (below `2^depth`) to [`Word`]s, four Goldilocks elements. The hash
//! is winterfell's in-circuit hash, so a STARK can prove that the root moved from `old_root` to
//! `new_root` by a given list of updates.
//!
//! # Hashing rules (the `smt-update` AIR depends on them bit for bit)
//!
//! - A leaf's node value *is* its value word; an absent key holds [`EMPTY_WORD`] (`[0; 4]`),
//!   so writing the empty word deletes a key.
//! - Level 0 holds the leaves and level `depth` the root. At level `i` (0-based) bit `i` of the
//!   key (least significant bit first) says whether the node on the key's path is a right child
//!   (bit 1) or a left child (bit 0).
//! - A parent is `Rp64_256::merge([left, right])` ([`merge`]).
//! - The root of an empty subtree of height `i` is `E[i]` ([`empty_subtree_root`]):
//!   `E[0] = [0; 4]`, `E[i + 1] = merge(E[i], E[i])`.
//!
//! # Usage
//!
//! 1. Pick a node store: [`MemStore`] in memory, or any other [`NodeStore`] (the appliance's
//!    durable store implements the same trait). Stores keep only nodes that differ from the
//!    empty-subtree default, and apply a [`WriteBatch`] atomically.
//! 2. Open the tree with [`Smt::new`]`(depth, store)` ([`DEFAULT_DEPTH`] is 32, any depth in
//!    `1..=64` works); the root is read back from the store, so a persisted tree reopens as it was.
//! 3. Apply updates with [`Smt::update_batch`]: they are applied in order (a key may repeat), the
//!    result is written to the store in one batch, and every update gets an [`UpdateWitness`]
//!    (old and new leaf, the authentication path before the update, old and new root) that the
//!    prover turns into a trace. [`UpdateWitness::verify`] and [`verify_witness_chain`] recheck
//!    witnesses from the hashing rules alone. [`Smt::insert`] is the one-update shortcut, and
//!    [`Smt::apply_batch`] applies a batch without witnesses, hashing each changed node once.
//! 4. Read with [`Smt::get`] and [`Smt::root`]; prove membership or non-membership with
//!    [`Smt::prove`] (a non-member's proof carries the empty word), and check a proof with
//!    [`SmtProof::verify`] against a root and a depth.
//! 5. Ship proofs as bytes with [`SmtProof::to_bytes`] / [`SmtProof::from_bytes`]: a versioned,
//!    strict, little-endian encoding in which siblings equal to the empty-subtree default are
//!    replaced by one bit of a bitmap. Every malformed input yields a typed [`Error`].
//!
//! ```
//! use epa_crypto::smt::{MemStore, Smt, Word, DEFAULT_DEPTH};
//! use winter_math::fields::f64::BaseElement;
//!
//! let mut tree = Smt::new(DEFAULT_DEPTH, MemStore::new())?;
//! let value: Word = [BaseElement::new(7), BaseElement::new(0), BaseElement::new(0), BaseElement::new(1)];
//! let witnesses = tree.update_batch(&[(42, value), (7, value)])?;
//! assert!(witnesses.iter().all(|w| w.verify()));
//! assert_eq!(witnesses[1].new_root, tree.root());
//!
//! let proof = tree.prove(42)?;
//! assert_eq!(proof.value, value);
//! let bytes = proof.to_bytes();
//! let decoded = epa_crypto::smt::SmtProof::from_bytes(&bytes)?;
//! assert!(decoded.verify(&tree.root(), DEFAULT_DEPTH));
//! # Ok::<(), epa_crypto::Error>(())
//! ```
//!
//! [`Error`]: crate::Error

mod proof;
mod store;
mod tree;

#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use winter_crypto::{Hasher, hashers::Rp64_256};
use winter_math::fields::f64::BaseElement;

pub use proof::{MAX_PROOF_BYTES, PROOF_VERSION, SmtProof};
pub use store::{MemStore, NodeIndex, NodeStore, StoreOp, WriteBatch};
pub use tree::{Smt, UpdateWitness, verify_witness_chain};

use crate::Error;

/// A leaf value or node hash: four Goldilocks elements (the digest of `Rp64_256`).
pub type Word = [BaseElement; 4];

/// The value of an absent key and of the empty leaf: four zero elements.
pub const EMPTY_WORD: Word = [BaseElement::new(0); 4];

/// The depth used when nothing else is configured.
pub const DEFAULT_DEPTH: u8 = 32;

/// The largest supported depth (keys are `u64`).
pub const MAX_DEPTH: u8 = 64;

/// The digest type of `Rp64_256` (winterfell's `ElementDigest`, not nameable directly).
type RpDigest = <Rp64_256 as Hasher>::Digest;

/// Hashes two children into their parent: `Rp64_256::merge([left, right])`.
pub fn merge(left: &Word, right: &Word) -> Word {
    Rp64_256::merge(&[RpDigest::from(*left), RpDigest::from(*right)]).into()
}

/// The root of an empty subtree of height `level` (`E[level]`), for `level` in `0..=64`.
///
/// Levels above [`MAX_DEPTH`] are clamped to it: no tree has them.
pub fn empty_subtree_root(level: u8) -> Word {
    empty_table()[usize::from(level.min(MAX_DEPTH))]
}

/// `E[0..=64]`, computed once per process.
fn empty_table() -> &'static [Word; MAX_DEPTH as usize + 1] {
    static TABLE: OnceLock<[Word; MAX_DEPTH as usize + 1]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [EMPTY_WORD; MAX_DEPTH as usize + 1];
        for level in 1..table.len() {
            table[level] = merge(&table[level - 1], &table[level - 1]);
        }
        table
    })
}

/// Checks that `depth` is a supported tree depth (`1..=64`).
pub(crate) fn check_depth(depth: u8) -> Result<(), Error> {
    if depth == 0 || depth > MAX_DEPTH {
        return Err(Error::SmtInvalidDepth { depth });
    }
    Ok(())
}

/// Whether `key` addresses a leaf of a tree of `depth` (`key < 2^depth`).
pub(crate) fn key_in_range(key: u64, depth: u8) -> bool {
    depth >= MAX_DEPTH || key >> depth == 0
}

/// Checks that `key < 2^depth`.
pub(crate) fn check_key(key: u64, depth: u8) -> Result<(), Error> {
    if key_in_range(key, depth) {
        Ok(())
    } else {
        Err(Error::SmtKeyOutOfRange { key, depth })
    }
}

/// The index at `level` of the node on `key`'s path (`key >> level`, 0 above bit 63).
pub(crate) fn path_index(key: u64, level: u8) -> u64 {
    key.checked_shr(u32::from(level)).unwrap_or(0)
}

/// Recomputes the root from a leaf value and its authentication path (`siblings[0]` is the
/// leaf-level sibling). The caller checks that the path length is a valid depth.
pub(crate) fn root_from_path(key: u64, leaf: &Word, siblings: &[Word]) -> Word {
    let mut node = *leaf;
    for (level, sibling) in siblings.iter().enumerate() {
        node = if (key >> level) & 1 == 1 {
            merge(sibling, &node)
        } else {
            merge(&node, sibling)
        };
    }
    node
}
