//! Post-quantum cryptography for EPA.
//!
//! Everything the appliance signs, encrypts, hashes into a state root or puts on a wire or disk
//! goes through this crate:
//!
//! 1. [`kem`]: ML-KEM-768 / ML-KEM-1024 (FIPS 203) key generation, encapsulation and
//!    decapsulation over length-checked newtypes; secrets are zeroized.
//! 2. [`dsa`]: ML-DSA-65 / ML-DSA-87 (FIPS 204) key generation, signing and verification.
//! 3. [`detenc`]: deterministic encapsulation whose randomness comes from a SHAKE-256 DRBG
//!    seeded with domain-separated bytes; its ciphertexts are standard FIPS 203 ciphertexts.
//! 4. [`kdf`] and [`seal`]: a SHAKE-256 KDF with explicit domain labels and the AEAD that seals
//!    a transaction payload; [`seal`] also defines the versioned encrypted-transaction format.
//! 5. [`encoding`]: canonical little-endian encoding helpers with a versioned envelope, strict
//!    lengths and limits checked before allocation, used by every wire and disk format.
//! 6. [`smt`]: the sparse Merkle tree over Rescue-Prime `Rp64_256` that the prover proves
//!    updates of.
//!
//! Errors of every module are variants of the one [`Error`] enum.
#![forbid(unsafe_code)]

pub mod detenc;
pub mod dsa;
pub mod encoding;
mod error;
pub mod kdf;
pub mod kem;
pub mod seal;
pub mod smt;

pub use error::Error;
