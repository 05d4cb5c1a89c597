//! Where the tree's nodes live: the [`NodeStore`] trait and the in-memory [`MemStore`].

use std::collections::HashMap;

use super::Word;
use crate::Error;

/// The position of an internal node: `level` in `1..=depth` (the root is `(depth, 0)`) and
/// `index`, the key's bits above `level` (`key >> level`).
///
/// Leaves (level 0) are addressed by their key and stored apart from internal nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeIndex {
    /// Height above the leaves: 1 for the leaves' parents, `depth` for the root.
    pub level: u8,
    /// Position among the nodes of that level, counted from the left.
    pub index: u64,
}

impl NodeIndex {
    /// Builds a node index.
    pub const fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }
}

/// One write of a [`WriteBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// Stores a non-empty leaf value under its key.
    PutLeaf {
        /// The leaf's key.
        key: u64,
        /// The leaf's value (never the empty word).
        value: Word,
    },
    /// Removes a leaf (its value became the empty word).
    DeleteLeaf {
        /// The leaf's key.
        key: u64,
    },
    /// Stores an internal node that differs from its empty-subtree default.
    PutNode {
        /// The node's position.
        index: NodeIndex,
        /// The node's hash.
        value: Word,
    },
    /// Removes an internal node (its subtree became empty).
    DeleteNode {
        /// The node's position.
        index: NodeIndex,
    },
}

/// An ordered list of writes that a [`NodeStore`] applies all together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<StoreOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `capacity` writes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            ops: Vec::with_capacity(capacity),
        }
    }

    /// Appends one write.
    pub fn push(&mut self, op: StoreOp) {
        self.ops.push(op);
    }

    /// The writes, in order.
    pub fn ops(&self) -> &[StoreOp] {
        &self.ops
    }

    /// The number of writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch has no writes.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Storage for a sparse Merkle tree's leaves and internal nodes.
///
/// A store holds only what differs from the empty tree: absent leaves read as `None` (the empty
/// word) and absent nodes as `None` (the empty-subtree default of their level). The tree never
/// stores a default value, and the root lives at `NodeIndex::new(depth, 0)`.
///
/// Every method is fallible so that a durable store can report I/O failures as
/// [`Error::SmtStore`]; [`write_batch`](NodeStore::write_batch) must be atomic. The trait is
/// object safe: `Smt<Box<dyn NodeStore>>` works.
pub trait NodeStore {
    /// Reads a leaf; `None` if the key holds the empty word.
    fn get_leaf(&self, key: u64) -> Result<Option<Word>, Error>;

    /// Reads an internal node; `None` if its subtree is empty.
    fn get_node(&self, index: NodeIndex) -> Result<Option<Word>, Error>;

    /// Applies every write of `batch` in order, atomically: after an error nothing was written.
    fn write_batch(&mut self, batch: &WriteBatch) -> Result<(), Error>;

    /// Stores one leaf (a one-write batch).
    fn put_leaf(&mut self, key: u64, value: Word) -> Result<(), Error> {
        let mut batch = WriteBatch::with_capacity(1);
        batch.push(StoreOp::PutLeaf { key, value });
        self.write_batch(&batch)
    }

    /// Removes one leaf (a one-write batch).
    fn delete_leaf(&mut self, key: u64) -> Result<(), Error> {
        let mut batch = WriteBatch::with_capacity(1);
        batch.push(StoreOp::DeleteLeaf { key });
        self.write_batch(&batch)
    }

    /// Stores one internal node (a one-write batch).
    fn put_node(&mut self, index: NodeIndex, value: Word) -> Result<(), Error> {
        let mut batch = WriteBatch::with_capacity(1);
        batch.push(StoreOp::PutNode { index, value });
        self.write_batch(&batch)
    }

    /// Removes one internal node (a one-write batch).
    fn delete_node(&mut self, index: NodeIndex) -> Result<(), Error> {
        let mut batch = WriteBatch::with_capacity(1);
        batch.push(StoreOp::DeleteNode { index });
        self.write_batch(&batch)
    }
}

impl<S: NodeStore + ?Sized> NodeStore for Box<S> {
    fn get_leaf(&self, key: u64) -> Result<Option<Word>, Error> {
        (**self).get_leaf(key)
    }

    fn get_node(&self, index: NodeIndex) -> Result<Option<Word>, Error> {
        (**self).get_node(index)
    }

    fn write_batch(&mut self, batch: &WriteBatch) -> Result<(), Error> {
        (**self).write_batch(batch)
    }
}

impl<S: NodeStore + ?Sized> NodeStore for &mut S {
    fn get_leaf(&self, key: u64) -> Result<Option<Word>, Error> {
        (**self).get_leaf(key)
    }

    fn get_node(&self, index: NodeIndex) -> Result<Option<Word>, Error> {
        (**self).get_node(index)
    }

    fn write_batch(&mut self, batch: &WriteBatch) -> Result<(), Error> {
        (**self).write_batch(batch)
    }
}

/// A [`NodeStore`] in memory (hash maps); it never fails.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    leaves: HashMap<u64, Word>,
    nodes: HashMap<NodeIndex, Word>,
}

impl MemStore {
    /// An empty store (the empty tree).
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of stored (non-empty) leaves.
    pub fn leaf_count(&self) -> usize {
        self.leaves.len()
    }

    /// The number of stored internal nodes (those that differ from their empty default).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

impl NodeStore for MemStore {
    fn get_leaf(&self, key: u64) -> Result<Option<Word>, Error> {
        Ok(self.leaves.get(&key).copied())
    }

    fn get_node(&self, index: NodeIndex) -> Result<Option<Word>, Error> {
        Ok(self.nodes.get(&index).copied())
    }

    fn write_batch(&mut self, batch: &WriteBatch) -> Result<(), Error> {
        for op in batch.ops() {
            match *op {
                StoreOp::PutLeaf { key, value } => {
                    self.leaves.insert(key, value);
                }
                StoreOp::DeleteLeaf { key } => {
                    self.leaves.remove(&key);
                }
                StoreOp::PutNode { index, value } => {
                    self.nodes.insert(index, value);
                }
                StoreOp::DeleteNode { index } => {
                    self.nodes.remove(&index);
                }
            }
        }
        Ok(())
    }
}
