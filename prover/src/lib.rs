//! (being written)
pub mod air;
pub mod envelope;
mod error;
pub mod options;
pub mod prover;
pub mod registry;
pub mod rescue;

pub use error::Error;
