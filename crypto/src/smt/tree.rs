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
        Ok(Self { depth, root, store })
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
        let view = Overlay::new(&self.store);
        let value = view.leaf(key)?;
        let siblings = view.path(key, self.depth)?;
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
    /// Witnesses are produced sequentially over an in-memory overlay of the nodes changed so
    /// far, so every node is read from the store at most once per batch, the final tree needs
    /// no further hashing, and the store receives all changes in one atomic
    /// [`WriteBatch`]. Each update that changes its leaf costs exactly `depth` hashes: its
    /// `new_root` is a fresh value on every level of its path, so no scheme that returns
    /// per-update roots can do fewer. An update that rewrites a leaf's current value costs no
    /// hash. When only the final root is needed, [`apply_batch`](Self::apply_batch) hashes
    /// each changed node once instead.
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
        let mut overlay = Overlay::new(&self.store);
        let mut root = self.root;
        let mut witnesses = Vec::with_capacity(updates.len());
        for &(key, new_value) in updates {
            let old_value = overlay.leaf(key)?;
            let siblings = overlay.path(key, depth)?;
            let new_root = if new_value == old_value {
                root
            } else {
                overlay.leaves.insert(key, new_value);
                let mut node = new_value;
                for (level, sibling) in (0..depth).zip(&siblings) {
                    node = if path_index(key, level) & 1 == 1 {
                        merge(sibling, &node)
                    } else {
                        merge(&node, sibling)
                    };
                    let parent = NodeIndex::new(level + 1, path_index(key, level + 1));
                    overlay.nodes.insert(parent, node);
                }
                node
            };
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
        let batch = overlay.into_batch();
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
    /// changed parent is hashed exactly once from its two children, so keys that share upper
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
        let view = Overlay::new(&self.store);
        for level in 0..self.depth {
            let mut parents = Vec::with_capacity(dirty.len().div_ceil(2));
            let mut i = 0;
            while i < dirty.len() {
                let (index, value) = dirty[i];
                let (left, right) = if index & 1 == 1 {
                    (view.node(level, index ^ 1)?, value)
                } else if let Some(&(next, right)) =
                    dirty.get(i + 1).filter(|(next, _)| *next == index | 1)
                {
                    i += 1;
                    debug_assert_eq!(next, index | 1);
                    (value, right)
                } else {
                    (value, view.node(level, index | 1)?)
                };
                i += 1;
                let parent = NodeIndex::new(level + 1, index >> 1);
                let hash = merge(&left, &right);
                batch.push(node_op(parent, hash));
                parents.push((parent.index, hash));
            }
            dirty = parents;
        }
        let root = dirty
            .first()
            .map(|&(_, root)| root)
            .expect("the dirty set stays non-empty up to the single root");
        self.store.write_batch(&batch)?;
        self.root = root;
        Ok(root)
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

/// The nodes changed by a batch so far, over the store's state before the batch.
struct Overlay<'a, S: ?Sized> {
    store: &'a S,
    leaves: HashMap<u64, Word>,
    nodes: HashMap<NodeIndex, Word>,
}

impl<'a, S: NodeStore + ?Sized> Overlay<'a, S> {
    fn new(store: &'a S) -> Self {
        Self {
            store,
            leaves: HashMap::new(),
            nodes: HashMap::new(),
        }
    }

    /// The current value of the leaf at `key`.
    fn leaf(&self, key: u64) -> Result<Word, Error> {
        if let Some(value) = self.leaves.get(&key) {
            return Ok(*value);
        }
        Ok(self.store.get_leaf(key)?.unwrap_or(EMPTY_WORD))
    }

    /// The current value of the node at `level` (0 = leaves) and `index`.
    fn node(&self, level: u8, index: u64) -> Result<Word, Error> {
        if level == 0 {
            return self.leaf(index);
        }
        let at = NodeIndex::new(level, index);
        if let Some(value) = self.nodes.get(&at) {
            return Ok(*value);
        }
        Ok(self
            .store
            .get_node(at)?
            .unwrap_or_else(|| empty_subtree_root(level)))
    }

    /// The current authentication path of `key`, leaf level first.
    fn path(&self, key: u64, depth: u8) -> Result<Vec<Word>, Error> {
        (0..depth)
            .map(|level| self.node(level, path_index(key, level) ^ 1))
            .collect()
    }

    /// The overlay's content as one store batch, in a deterministic order (leaves by key, then
    /// nodes by level and index).
    fn into_batch(self) -> WriteBatch {
        let mut leaves: Vec<(u64, Word)> = self.leaves.into_iter().collect();
        leaves.sort_unstable_by_key(|&(key, _)| key);
        let mut nodes: Vec<(NodeIndex, Word)> = self.nodes.into_iter().collect();
        nodes.sort_unstable_by_key(|&(index, _)| index);
        let mut batch = WriteBatch::with_capacity(leaves.len() + nodes.len());
        for (key, value) in leaves {
            batch.push(if value == EMPTY_WORD {
                StoreOp::DeleteLeaf { key }
            } else {
                StoreOp::PutLeaf { key, value }
            });
        }
        for (index, value) in nodes {
            batch.push(node_op(index, value));
        }
        batch
    }
}
