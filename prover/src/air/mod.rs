//! The EPA AIRs (algebraic intermediate representations) proved with winterfell.
//!
//! * [`rescue_chain`]: a chain of Rescue-Prime `Rp64_256` merges, the throughput anchor.
//! * [`smt_update`]: a batch of sparse-Merkle-tree updates moving a root from `old_root` to
//!   `new_root`.
//!
//! Both share the Rescue-Prime round constraints of [`crate::rescue`].
pub mod rescue_chain;
pub mod smt_update;
