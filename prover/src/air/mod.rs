//! (being written)
pub mod rescue_chain;
pub mod smt_update;
