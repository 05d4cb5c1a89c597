//! The crate's one error type.

/// Everything that can go wrong in `epa-prover`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- envelope / options / registry / prover variants go here ----

    // ---- smt-update variants go here ----
}
