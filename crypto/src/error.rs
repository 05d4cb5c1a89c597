//! The crate's one error type.

/// Everything that can go wrong in `epa-crypto`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    // ---- encoding / kem / dsa / detenc / kdf / seal variants go here ----

    // ---- smt variants go here ----
}
