//! The tree itself: reads, proofs and batched updates with per-update witnesses.

use std::collections::{BTreeMap, HashMap};

use super::{
    EMPTY_WORD, NodeIndex, NodeStore, SmtProof, StoreOp, Word, WriteBatch, check_depth, check_key,
    empty_subtree_root, key_in_range, merge, path_index, root_from_path,
};
use crate::Error;

/// What one update did to the tree: the prover's input for one step of the `smt-update` AIR.
///
/// `siblings` is the authentication path of `key` in the tree state just *before* this update
/// (`siblings[0]` is the leaf-level sibling, `siblings.len()` is the depth). Hashing
/// `old_value` up that path gives `old_root`, hashing `new_value` gives `new_root`; within one
/// batch, `old_root` of update `i` equals `new_root` of update `i - 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateWitness {
    /// The updated key.
    pub key: u64,
    /// The leaf's value before the update ([`EMPTY_WORD`] if the key was absent).
    pub old_value: Word,
    /// The leaf's value after the update ([`EMPTY_WORD`] deletes the key).
    pub new_value: Word,
    /// The authentication path before the update, leaf level first.
    pub siblings: Vec<Word>,
    /// The root before the update.
    pub old_root: Word,
    /// The root after the update.
    pub new_root: Word,
}

impl UpdateWitness {
    /// Recomputes both roots from the path; `true` if they match `old_root` and `new_root`.
    ///
    /// Also `false` if the path length is not a valid depth (`1..=64`) or the key does not fit
    /// in it. Use [`verify_witness_chain`] to also pin the depth and the chaining of roots.
    pub fn verify(&self) -> bool {
        let Ok(depth) = u8::try_from(self.siblings.len()) else {
            return false;
        };
        if check_depth(depth).is_err() || !key_in_range(self.key, depth) {
            return false;
        }
        root_from_path(self.key, &self.old_value, &self.siblings) == self.old_root
            && root_from_path(self.key, &self.new_value, &self.siblings) == self.new_root
    }
}

/// Checks a sequence of witnesses as one batch applied to a tree of `depth` whose root was
/// `start_root`: every witness has a path of length `depth` and verifies, and each `old_root`
/// is the previous `new_root` (the first one is `start_root`).
pub fn verify_witness_chain(depth: u8, start_root: &Word, witnesses: &[UpdateWitness]) -> bool {
    let mut root = *start_root;
    for witness in witnesses {
        if witness.siblings.len() != usize::from(depth) || witness.old_root != root {
            return false;
        }
        if !witness.verify() {
            return false;
        }
        root = witness.new_root;
    }
    true
}

/// A sparse Merkle tree of a fixed depth over `Rp64_256`, backed by a [`NodeStore`].
///
/// See the [module documentation](super) for the hashing rules and a walk-through.
#[derive(Debug)]
pub struct Smt<S> {
    depth: u8,
    root: Word,
    threads: usize,
    store: S,
}

impl<S: NodeStore> Smt<S> {
    /// Opens the tree of `depth` (`1..=64`) held by `store`, reading its root back (an empty
    /// store is the empty tree).
    ///
    /// A store must always be opened with the depth it was written with: the store does not
    /// record it.
    ///
    /// # Errors
    /// [`Error::SmtInvalidDepth`] for a depth outside `1..=64`; the store's error if reading
    /// the root fails.
    pub fn new(depth: u8, store: S) -> Result<Self, Error> {
        check_depth(depth)?;
        let root = store
            .get_node(NodeIndex::new(depth, 0))?
            .unwrap_or_else(|| empty_subtree_root(depth));
        Ok(Self {
            depth,
            root,
            threads: 1,
            store,
        })
    }

    /// Lets batch updates hash each level on up to `threads` scoped worker threads (`0` and
    /// `1` mean the calling thread only, the default). The result does not depend on it.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// The number of threads batch updates may hash on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The current root.
    pub fn root(&self) -> Word {
        self.root
    }

    /// The tree's depth: keys are below `2^depth`, proofs carry `depth` siblings.
    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// The backing store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the backing store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// The value at `key` ([`EMPTY_WORD`] if absent).
    ///
    /// # Errors
    /// [`Error::SmtKeyOutOfRange`] if `key >= 2^depth`; the store's error if the read fails.
    pub fn get(&self, key: u64) -> Result<Word, Error> {
        check_key(key, self.depth)?;
        Ok(self.store.get_leaf(key)?.unwrap_or(EMPTY_WORD))
    }

    /// A membership proof for `key`, or a non-membership proof (value [`EMPTY_WORD`]) if the
    /// key is absent.
    ///
    /// # Errors
    /// [`Error::SmtKeyOutOfRange`] if `key >= 2^depth`; the store's error if a read fails.
    pub fn prove(&self, key: u64) -> Result<SmtProof, Error> {
        check_key(key, self.depth)?;
        let value = self.node(0, key)?;
        let siblings = self.path(key)?;
        Ok(SmtProof {
            key,
            value,
            siblings,
        })
    }

    /// Sets `key` to `value` (the empty word deletes it) and returns the update's witness.
    ///
    /// # Errors
    /// As [`update_batch`](Self::update_batch).
    pub fn insert(&mut self, key: u64, value: Word) -> Result<UpdateWitness, Error> {
        let mut witnesses = self.update_batch(&[(key, value)])?;
        Ok(witnesses
            .pop()
            .expect("update_batch returns exactly one witness per update"))
    }

    /// Applies `updates` in order (a key may repeat; the empty word deletes) and returns one
    /// witness per update.
    ///
    /// Each update that changes its leaf costs exactly `depth` hashes: its `new_root` is a
    /// fresh value on every level of its path, so no scheme that returns per-update roots can
    /// do fewer (an update that rewrites a leaf's current value costs none). What the batch
    /// shares is the structure: the tree is processed one level at a time, bottom-up. At level
    /// `l`, one in-order sweep over the updates finds each update's sibling as it was just
    /// before that update (the last earlier update through the sibling node, else the store),
    /// and then the level's merges are all independent of each other: one flat batch of hashes
    /// that runs on [`threads`](Self::set_threads) worker threads (or, later, an accelerator).
    /// The last value of every touched node is the final tree, written to the store in one
    /// atomic [`WriteBatch`]. When only the final root is needed,
    /// [`apply_batch`](Self::apply_batch) hashes each changed node once instead.
    ///
    /// # Errors
    /// [`Error::SmtKeyOutOfRange`] if any key is `>= 2^depth` (checked before anything is
    /// done); the store's error if a read or the final write fails. On error the tree and the
    /// store are unchanged.
    pub fn update_batch(&mut self, updates: &[(u64, Word)]) -> Result<Vec<UpdateWitness>, Error> {
        for &(key, _) in updates {
            check_key(key, self.depth)?;
        }
        let depth = self.depth;
        let count = updates.len();
        let mut batch = WriteBatch::new();

        // Level 0: old values, leaf-level siblings, which updates change anything.
        let mut siblings: Vec<Vec<Word>> = Vec::with_capacity(count);
        let mut old_values = Vec::with_capacity(count);
        let mut changes = Vec::with_capacity(count);
        // `path[i]`: the node on update `i`'s path at the current level, just after update `i`.
        let mut path = Vec::with_capacity(count);
        let mut current: HashMap<u64, Word> = HashMap::new();
        for &(key, new_value) in updates {
            let old_value = lookup(&current, key, || self.store.get_leaf(key), EMPTY_WORD)?;
            let sibling = lookup(
                &current,
                key ^ 1,
                || self.store.get_leaf(key ^ 1),
                EMPTY_WORD,
            )?;
            let mut path_siblings = Vec::with_capacity(usize::from(depth));
            path_siblings.push(sibling);
            siblings.push(path_siblings);
            old_values.push(old_value);
            changes.push(old_value != new_value);
            if old_value != new_value {
                current.insert(key, new_value);
            }
            path.push(new_value);
        }
        push_leaf_ops(&mut batch, current);

        for level in 0..depth {
            // The merges of this level, all independent.
            let pairs: Vec<(Word, Word)> = (0..count)
                .filter(|&i| changes[i])
                .map(|i| {
                    let sibling = siblings[i][usize::from(level)];
                    if path_index(updates[i].0, level) & 1 == 1 {
                        (sibling, path[i])
                    } else {
                        (path[i], sibling)
                    }
                })
                .collect();
            let mut parents = merge_pairs(&pairs, self.threads).into_iter();

            // One in-order sweep: parents of changing updates come from the merges, the others
            // keep the current node; siblings one level up are read just before each update.
            let up = level + 1;
            let default = empty_subtree_root(up);
            let mut current: HashMap<u64, Word> = HashMap::new();
            for i in 0..count {
                let index = path_index(updates[i].0, up);
                if up < depth {
                    let at = NodeIndex::new(up, index ^ 1);
                    siblings[i].push(lookup(
                        &current,
                        at.index,
                        || self.store.get_node(at),
                        default,
                    )?);
                }
                path[i] = if changes[i] {
                    let parent = parents
                        .next()
                        .expect("one merge per changing update on every level");
                    current.insert(index, parent);
                    parent
                } else {
                    let at = NodeIndex::new(up, index);
                    lookup(&current, index, || self.store.get_node(at), default)?
                };
            }
            let mut nodes: Vec<(u64, Word)> = current.into_iter().collect();
            nodes.sort_unstable_by_key(|&(index, _)| index);
            for (index, value) in nodes {
                batch.push(node_op(NodeIndex::new(up, index), value));
            }
        }

        let mut witnesses = Vec::with_capacity(count);
        let mut root = self.root;
        for ((&(key, new_value), (old_value, siblings)), new_root) in updates
            .iter()
            .zip(old_values.into_iter().zip(siblings))
            .zip(path)
        {
            witnesses.push(UpdateWitness {
                key,
                old_value,
                new_value,
                siblings,
                old_root: root,
                new_root,
            });
            root = new_root;
        }
        if !batch.is_empty() {
            self.store.write_batch(&batch)?;
        }
        self.root = root;
        Ok(witnesses)
    }

    /// Applies `updates` (in order: for a repeated key the last value wins) without witnesses
    /// and returns the new root.
    ///
    /// This is the bottom-up pass: the changed leaves are sorted, and level by level each
    /// changed parent is hashed exactly once from its two children (one batch of independent
    /// hashes per level, on [`threads`](Self::set_threads) threads), so keys that share upper
    /// levels share that work. The result is written in one atomic [`WriteBatch`].
    ///
    /// # Errors
    /// [`Error::SmtKeyOutOfRange`] if any key is `>= 2^depth` (checked before anything is
    /// done); the store's error if a read or the write fails. On error the tree and the store
    /// are unchanged.
    pub fn apply_batch(&mut self, updates: &[(u64, Word)]) -> Result<Word, Error> {
        for &(key, _) in updates {
            check_key(key, self.depth)?;
        }
        let last_values: BTreeMap<u64, Word> = updates.iter().copied().collect();
        let mut batch = WriteBatch::new();
        // The changed nodes of the current level, sorted by index.
        let mut dirty: Vec<(u64, Word)> = Vec::with_capacity(last_values.len());
        for (key, value) in last_values {
            if self.store.get_leaf(key)?.unwrap_or(EMPTY_WORD) == value {
                continue;
            }
            batch.push(if value == EMPTY_WORD {
                StoreOp::DeleteLeaf { key }
            } else {
                StoreOp::PutLeaf { key, value }
            });
            dirty.push((key, value));
        }
        if dirty.is_empty() {
            return Ok(self.root);
        }
        for level in 0..self.depth {
            let mut indices = Vec::with_capacity(dirty.len().div_ceil(2));
            let mut pairs = Vec::with_capacity(dirty.len().div_ceil(2));
            let mut i = 0;
            while i < dirty.len() {
                let (index, value) = dirty[i];
                let pair = if index & 1 == 1 {
                    (self.node(level, index ^ 1)?, value)
                } else if let Some(&(_, right)) =
                    dirty.get(i + 1).filter(|(next, _)| *next == index | 1)
                {
                    i += 1;
                    (value, right)
                } else {
                    (value, self.node(level, index | 1)?)
                };
                i += 1;
                indices.push(index >> 1);
                pairs.push(pair);
            }
            let hashes = merge_pairs(&pairs, self.threads);
            dirty = indices.into_iter().zip(hashes).collect();
            for &(index, value) in &dirty {
                batch.push(node_op(NodeIndex::new(level + 1, index), value));
            }
        }
        let root = dirty
            .first()
            .map(|&(_, root)| root)
            .expect("the dirty set stays non-empty up to the single root");
        self.store.write_batch(&batch)?;
        self.root = root;
        Ok(root)
    }

    /// The stored node at `level` (0 = leaves) and `index`, or its default.
    fn node(&self, level: u8, index: u64) -> Result<Word, Error> {
        if level == 0 {
            return Ok(self.store.get_leaf(index)?.unwrap_or(EMPTY_WORD));
        }
        Ok(self
            .store
            .get_node(NodeIndex::new(level, index))?
            .unwrap_or_else(|| empty_subtree_root(level)))
    }

    /// The authentication path of `key` in the stored tree, leaf level first.
    fn path(&self, key: u64) -> Result<Vec<Word>, Error> {
        (0..self.depth)
            .map(|level| self.node(level, path_index(key, level) ^ 1))
            .collect()
    }
}

/// Batches below this size are hashed on the calling thread.
const PARALLEL_MIN_PAIRS: usize = 64;

/// Hashes every pair, on up to `threads` scoped threads for large inputs; output order is
/// input order.
fn merge_pairs(pairs: &[(Word, Word)], threads: usize) -> Vec<Word> {
    if threads <= 1 || pairs.len() < PARALLEL_MIN_PAIRS {
        return pairs
            .iter()
            .map(|(left, right)| merge(left, right))
            .collect();
    }
    let chunk = pairs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = pairs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(left, right)| merge(left, right))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("hashing workers do not panic"))
            .collect()
    })
}

/// The value of `index` in the batch's changes so far, else from the store, else `default`.
fn lookup(
    changed: &HashMap<u64, Word>,
    index: u64,
    read: impl FnOnce() -> Result<Option<Word>, Error>,
    default: Word,
) -> Result<Word, Error> {
    match changed.get(&index) {
        Some(value) => Ok(*value),
        None => Ok(read()?.unwrap_or(default)),
    }
}

/// Appends the writes of the changed leaves, sorted by key.
fn push_leaf_ops(batch: &mut WriteBatch, leaves: HashMap<u64, Word>) {
    let mut leaves: Vec<(u64, Word)> = leaves.into_iter().collect();
    leaves.sort_unstable_by_key(|&(key, _)| key);
    for (key, value) in leaves {
        batch.push(if value == EMPTY_WORD {
            StoreOp::DeleteLeaf { key }
        } else {
            StoreOp::PutLeaf { key, value }
        });
    }
}

/// The write that records internal node `index` with hash `value`: a delete when the value is
/// its level's empty-subtree default (stores keep only non-default nodes).
fn node_op(index: NodeIndex, value: Word) -> StoreOp {
    if value == empty_subtree_root(index.level) {
        StoreOp::DeleteNode { index }
    } else {
        StoreOp::PutNode { index, value }
    }
}
