//! Deterministic random workloads for the CLI, the benches and the fixtures.
//!
//! [`SmtWorkload`] keeps one in-memory `crypto::smt` tree and produces batches of random
//! updates with their witnesses, exactly as the execute stage would; [`random_word`] draws a
//! uniformly random canonical Goldilocks word. Everything is driven by a seeded ChaCha20 RNG, so
//! the same seed gives the same workload and hence the same proofs.

use crypto::smt::{MemStore, Smt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_math::StarkField;
use winter_math::fields::f64::BaseElement;

use crate::Error;
use crate::air::smt_update::{self, SmtUpdateWitness, Word};

/// A uniformly random canonical Goldilocks word.
pub fn random_word(rng: &mut impl Rng) -> Word {
    core::array::from_fn(|_| BaseElement::new(rng.gen_range(0..BaseElement::MODULUS)))
}

/// A random word derived from `seed` (for example a rescue-chain seed from a CLI `--seed`).
pub fn seed_word(seed: u64) -> Word {
    random_word(&mut ChaCha20Rng::seed_from_u64(seed))
}

/// One in-memory sparse Merkle tree and the RNG that drives its random updates.
pub struct SmtWorkload {
    tree: Smt<MemStore>,
    rng: ChaCha20Rng,
}

impl SmtWorkload {
    /// An empty tree of `depth` levels and an RNG seeded with `seed`.
    pub fn new(depth: u8, seed: u64) -> Result<Self, Error> {
        let tree = Smt::new(depth, MemStore::new()).map_err(smt_error)?;
        Ok(SmtWorkload {
            tree,
            rng: ChaCha20Rng::seed_from_u64(seed),
        })
    }

    /// The tree's current root.
    pub fn root(&self) -> Word {
        self.tree.root()
    }

    /// The tree's depth.
    pub fn depth(&self) -> u8 {
        self.tree.depth()
    }

    /// Applies `count` random updates to the tree and returns their witnesses (sequential
    /// semantics: each update's `old_root` is the previous one's `new_root`).
    ///
    /// Keys are uniform below `2^depth`; about one update in eight rewrites a key already
    /// touched in the batch, and one in sixteen deletes it (sets the empty word).
    pub fn next_batch(&mut self, count: usize) -> Result<Vec<SmtUpdateWitness>, Error> {
        let depth = u32::from(self.depth());
        let mask = if depth >= 64 {
            u64::MAX
        } else {
            (1u64 << depth) - 1
        };
        let mut updates: Vec<(u64, Word)> = Vec::with_capacity(count);
        for _ in 0..count {
            let key = match updates.len() {
                n if n > 0 && self.rng.gen_ratio(1, 8) => updates[self.rng.gen_range(0..n)].0,
                _ => self.rng.r#gen::<u64>() & mask,
            };
            let value = if self.rng.gen_ratio(1, 16) {
                smt_update::EMPTY_WORD
            } else {
                random_word(&mut self.rng)
            };
            updates.push((key, value));
        }
        self.tree.update_batch(&updates).map_err(smt_error)
    }
}

fn smt_error(e: crypto::Error) -> Error {
    Error::InvalidWitness {
        air: smt_update::AIR_NAME,
        reason: e.to_string(),
    }
}
