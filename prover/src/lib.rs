//! The EPA STARK prover: AIRs, option presets, the proof envelope and verification, on
//! winterfell 0.13 over Goldilocks.
//!
//! Every proof this crate makes verifies with the stock `winterfell::verify`; nothing on the
//! verification path depends on the prover's (swappable, possibly accelerated) components.
//!
//! # Usage
//!
//! 1. Pick an AIR by name ([`registry::AirId`], `"smt-update"` or `"rescue-chain"`) and build a
//!    [`registry::ProveRequest`] with its inputs and witness.
//! 2. Pick options: a named [`options::Preset`] (`fast-96`, `secure-128`) or explicit
//!    [`options::ProofParams`], and a commitment hash [`options::HashId`] (`blake3-256`,
//!    `rp64-256`).
//! 3. Call [`registry::prove`] (winterfell's CPU components) or [`registry::prove_with`] (any
//!    [`prover::ProverComponents`], the hook for accelerated backends). The result is a
//!    [`envelope::ProofEnvelope`]; `to_bytes` gives the versioned wire form.
//! 4. Anyone verifies the bytes with [`envelope::verify_envelope`], which returns the
//!    [`envelope::VerifiedStatement`] (AIR, hash, options, security, public inputs) or a typed
//!    [`Error`], and never panics on any input.
//!
//! ```
//! use epa_prover::envelope::verify_envelope;
//! use epa_prover::options::{HashId, Preset};
//! use epa_prover::registry::{self, ProveRequest};
//! use winter_math::fields::f64::BaseElement;
//!
//! let seed = [BaseElement::new(1), BaseElement::new(2), BaseElement::new(3), BaseElement::new(4)];
//! let request = ProveRequest::RescueChain { seed, steps: 32 };
//! let envelope = registry::prove(&request, Preset::Fast96.into(), HashId::Rp64_256)?;
//! let verified = verify_envelope(&envelope.to_bytes()?)?;
//! assert_eq!(verified.conjectured_bits, 96);
//! # Ok::<(), epa_prover::Error>(())
//! ```
//!
//! Proofs are deterministic: the same request, options and hash give the same bytes.
#![forbid(unsafe_code)]

pub mod accel;
pub mod air;
pub mod envelope;
mod error;
pub mod options;
pub mod prover;
pub mod registry;
pub mod rescue;
pub mod workload;

pub use error::Error;
