//! The crate's one error type.

/// Everything that can go wrong in `epa-prover`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- envelope / options / registry / prover variants go here ----
    /// An AIR name or wire id that the registry does not know.
    #[error("unknown AIR `{name}`: use one of `smt-update`, `rescue-chain`")]
    UnknownAir {
        /// The name (or `wire id N`) that was asked for.
        name: String,
    },
    /// A hash name or wire id that is not supported.
    #[error("unknown commitment hash `{name}`: use `blake3-256` or `rp64-256`")]
    UnknownHash {
        /// The name (or `wire id N`) that was asked for.
        name: String,
    },
    /// A preset name or wire id that is not defined.
    #[error("unknown options preset `{name}`: use `fast-96` or `secure-128`")]
    UnknownPreset {
        /// The name (or `wire id N`) that was asked for.
        name: String,
    },
    /// An explicit proof parameter outside the range winterfell and the EPA AIRs accept.
    #[error("invalid proof option `{field}` = {value}: it {rule}; pick a preset or fix the value")]
    InvalidOptions {
        /// The parameter's field name.
        field: &'static str,
        /// The rejected value.
        value: u64,
        /// The rule it broke.
        rule: &'static str,
    },
    /// An envelope or proof ended before a field could be read.
    #[error(
        "truncated {what}: needs {needed} more bytes but only {remaining} remain; the data is cut short or corrupt"
    )]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the input.
        remaining: u64,
    },
    /// The envelope does not start with the EPA proof magic.
    #[error("not an EPA proof envelope: bad magic bytes {found:02x?}; expected `EPAPROOF`")]
    BadMagic {
        /// The first bytes found.
        found: Vec<u8>,
    },
    /// The envelope version is not one this build reads.
    #[error("unsupported proof envelope version {found}; this build reads version {supported}")]
    UnsupportedVersion {
        /// Version in the input.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// A length field exceeds its limit (checked before any allocation).
    #[error("{what} is {len} bytes, over the limit of {max} bytes; refuse oversized inputs")]
    TooLarge {
        /// The field whose length is too large.
        what: &'static str,
        /// The claimed or actual length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// Bytes remain after a complete structure was decoded.
    #[error("{count} trailing bytes after the {what}; the input must end where the structure ends")]
    TrailingBytes {
        /// The structure that was complete.
        what: &'static str,
        /// Number of bytes left over.
        count: u64,
    },
    /// The winterfell proof bytes are malformed or do not match the envelope's statement.
    #[error("malformed proof for `{air}`: {reason}")]
    MalformedProof {
        /// The AIR the proof claims to be for.
        air: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// Public inputs that cannot be decoded or do not describe a valid statement.
    #[error("invalid public inputs for `{air}`: {reason}")]
    InvalidPublicInputs {
        /// The AIR the inputs are for.
        air: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A witness or workload request that cannot produce a valid trace.
    #[error("invalid witness for `{air}`: {reason}")]
    InvalidWitness {
        /// The AIR the witness is for.
        air: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The winterfell prover failed.
    #[error("proving `{air}` failed: {source}")]
    Prove {
        /// The AIR being proved.
        air: &'static str,
        /// Winterfell's error.
        source: winterfell::ProverError,
    },
    /// The stock winterfell verifier rejected the proof.
    #[error("proof for `{air}` rejected by the verifier: {source}")]
    Rejected {
        /// The AIR the proof is for.
        air: &'static str,
        /// Winterfell's reason.
        source: winterfell::VerifierError,
    },
    /// Winterfell panicked while decoding or verifying a proof that passed the shape checks
    /// (caught as a last resort; the proof is treated as invalid).
    #[error("the verifier failed on malformed proof data for `{air}`; the proof is invalid")]
    VerifierPanicked {
        /// The AIR the proof is for.
        air: &'static str,
    },
    /// A proof whose options give less conjectured security than the verifier requires.
    #[error(
        "proof options give {bits} bits of conjectured security, below the required {min_bits}; re-prove with a stronger preset"
    )]
    InsufficientSecurity {
        /// Conjectured bits of the proof's options.
        bits: u32,
        /// The verifier's minimum.
        min_bits: u32,
    },
    // ---- smt-update variants go here ----
}
