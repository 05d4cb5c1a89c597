//! The crate's one error type.

/// Everything that can go wrong in `epa-prover`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- envelope / options / registry / prover variants go here ----
    /// A compute backend of the accelerated prover failed or could not be built.
    #[error("compute backend failed: {0}; check EPA_SIMD or pick another backend")]
    Backend(#[from] kernels::Error),
    /// A vector commitment over row hashes could not be built.
    #[error("building the row commitment failed: {reason}; the LDE domain must be a power of two")]
    Commitment {
        /// Winter-crypto's reason.
        reason: String,
    },
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
    /// An `smt-update` tree depth outside `2..=64`.
    #[error("smt-update: tree depth {depth} is not supported; use a depth in 2..=64 (default 32)")]
    SmtDepthOutOfRange {
        /// The rejected depth.
        depth: usize,
    },
    /// An `smt-update` batch with no updates.
    #[error("smt-update: the batch is empty; submit at least one update")]
    SmtEmptyBatch,
    /// An `smt-update` batch larger than the trace-length limit allows at its depth.
    #[error(
        "smt-update: {count} updates exceed the limit of {max} at depth {depth}; split the batch"
    )]
    SmtTooManyUpdates {
        /// Updates in the batch.
        count: usize,
        /// The most this depth allows.
        max: usize,
        /// The tree depth.
        depth: usize,
    },
    /// An update whose authentication path length is not the tree depth.
    #[error(
        "smt-update: update {index} has {siblings} siblings but the tree depth is {depth}; the witness comes from another tree"
    )]
    SmtDepthMismatch {
        /// Position of the update in the batch.
        index: usize,
        /// Number of siblings given.
        siblings: usize,
        /// The tree depth.
        depth: usize,
    },
    /// An update key that does not fit the tree depth.
    #[error(
        "smt-update: key {key} of update {index} is not below 2^{depth}; fix the key or the depth"
    )]
    SmtKeyOutOfRange {
        /// Position of the update in the batch.
        index: usize,
        /// The key.
        key: u64,
        /// The tree depth.
        depth: usize,
    },
    /// An update whose path does not hash its old (or new) value to its old (or new) root.
    #[error(
        "smt-update: update {index}'s path does not hash its {which} value to its {which} root; the witness is corrupt"
    )]
    SmtPathMismatch {
        /// Position of the update in the batch.
        index: usize,
        /// `"old"` or `"new"`.
        which: &'static str,
    },
    /// An update whose old root is not the previous update's new root.
    #[error(
        "smt-update: update {index}'s old root is not update {}'s new root; witnesses must be applied in order", index - 1
    )]
    SmtBrokenChain {
        /// Position of the update in the batch (at least 1).
        index: usize,
    },
    /// A field element in encoded public inputs that is not canonical (`>= p`).
    #[error(
        "smt-update: {what} holds {value:#x}, not a canonical Goldilocks element; the data is corrupt"
    )]
    SmtNonCanonical {
        /// The field being decoded.
        what: &'static str,
        /// The rejected raw value.
        value: u64,
    },
    /// Encoded public inputs whose commitment does not match their update list.
    #[error(
        "smt-update: the update-list commitment does not match the listed updates; the public inputs were altered"
    )]
    SmtCommitmentMismatch,
}
