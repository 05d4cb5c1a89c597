//! The crate's one error type.

/// Everything that can go wrong in `epa-crypto`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    // ---- encoding / kem / dsa / detenc / kdf / seal variants go here ----
    /// A fixed-size object (key, ciphertext, signature, seed) was given the wrong number of bytes.
    #[error("{what}: expected {expected} bytes, got {actual}; pass the exact encoding of a {what}")]
    InvalidLength {
        /// Which object was being parsed, e.g. `"ML-KEM-768 encapsulation key"`.
        what: &'static str,
        /// The length the encoding must have.
        expected: usize,
        /// The length that was given.
        actual: usize,
    },
    /// An ML-KEM encapsulation key failed the FIPS 203 section 7.2 modulus check (a coefficient
    /// is not reduced modulo q).
    #[error(
        "{what}: a coefficient is not reduced modulo q (FIPS 203 modulus check failed); the key is corrupt or forged, ask the owner for its key again"
    )]
    InvalidPublicKey {
        /// Which key type was being parsed.
        what: &'static str,
    },
    /// An ML-KEM decapsulation key failed the FIPS 203 section 7.3 hash check (its embedded
    /// `H(ek)` does not match its embedded encapsulation key).
    #[error(
        "{what}: the embedded hash of the encapsulation key does not match (FIPS 203 hash check failed); the key file is corrupt, restore it from backup"
    )]
    InvalidSecretKey {
        /// Which key type was being parsed.
        what: &'static str,
    },
    /// An ML-DSA context string is longer than the 255 bytes FIPS 204 allows.
    #[error(
        "ML-DSA context string is {len} bytes, FIPS 204 allows at most 255; shorten the context"
    )]
    ContextTooLong {
        /// The length that was given.
        len: usize,
    },
    /// ML-DSA signing gave up in its rejection-sampling loop (probability below 2^-100 per
    /// signature).
    #[error("ML-DSA signing did not terminate its rejection loop; retry with fresh randomness")]
    SigningFailed,
    /// An ML-DSA signature did not verify for this key, message and context.
    #[error(
        "{what}: signature does not verify for this key, message and context; reject the message"
    )]
    InvalidSignature {
        /// Which parameter set was verifying.
        what: &'static str,
    },
    /// The random number generator failed to produce bytes.
    #[error("the random number generator failed; check the operating system's entropy source")]
    RandomnessUnavailable,
    /// A reader needed more bytes than are left in its input.
    #[error(
        "truncated input: {what} needs {needed} bytes at offset {offset}, only {remaining} left; the data was cut short"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed for the item.
        needed: u64,
        /// Bytes left in the input.
        remaining: usize,
        /// Offset of the item in the input.
        offset: usize,
    },
    /// Bytes were left over after a complete object was decoded.
    #[error(
        "{count} trailing bytes after a complete {what}; encodings are strict, remove the extra bytes"
    )]
    TrailingBytes {
        /// What was decoded.
        what: &'static str,
        /// How many bytes were left over.
        count: usize,
    },
    /// A length-prefixed field, a vector or a body is longer than its limit.
    #[error("{what} is {len} long, the limit is {max}; the data is oversized or corrupt")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its declared or actual length (bytes, or items for vectors).
        len: u64,
        /// The limit.
        max: u64,
    },
    /// An envelope did not start with the expected magic bytes.
    #[error(
        "bad magic {found:02x?}, expected {expected:02x?}: this is not the kind of file or message expected here"
    )]
    BadMagic {
        /// The magic bytes this decoder accepts.
        expected: [u8; 4],
        /// The magic bytes found.
        found: [u8; 4],
    },
    /// A format version this build does not understand.
    #[error(
        "{what} version {version} is not supported (this build reads {min}..={max}); upgrade the reader or re-encode the data"
    )]
    UnsupportedVersion {
        /// Which format.
        what: &'static str,
        /// The version found.
        version: u16,
        /// Lowest version supported.
        min: u16,
        /// Highest version supported.
        max: u16,
    },
    /// An envelope holds another kind of object than the one expected.
    #[error(
        "envelope kind {found} where kind {expected} was expected; the object was sent to the wrong place"
    )]
    UnexpectedKind {
        /// The kind expected.
        expected: u16,
        /// The kind found.
        found: u16,
    },
    /// A field holds a value outside its allowed set (e.g. a boolean byte other than 0 or 1).
    #[error("{what}: invalid value {value}; the data is corrupt")]
    InvalidValue {
        /// Which field.
        what: &'static str,
        /// The value found.
        value: u64,
    },
    /// An AEAD-sealed payload failed authentication: wrong key, wrong context, or tampered bytes.
    #[error(
        "sealed payload failed authentication: wrong key or context, or the transaction was tampered with; drop it"
    )]
    OpenFailed,

    // ---- smt variants go here ----
    /// A sparse Merkle tree depth outside `1..=64`.
    #[error(
        "SMT depth {depth} is not supported: the depth must be in 1..=64 (keys are u64); fix the configured or encoded depth"
    )]
    SmtInvalidDepth {
        /// The depth given.
        depth: u8,
    },
    /// A key that does not address a leaf of the tree (`key >= 2^depth`).
    #[error(
        "SMT key {key} does not fit a tree of depth {depth} (keys must be below 2^{depth}); map the key into range before using it"
    )]
    SmtKeyOutOfRange {
        /// The key given.
        key: u64,
        /// The tree's depth.
        depth: u8,
    },
    /// The node store behind a sparse Merkle tree failed to read or write.
    #[error(
        "SMT node store failed: {message}; the tree was not changed, check the store and retry"
    )]
    SmtStore {
        /// What the store reported.
        message: String,
    },
    /// An encoded SMT proof is shorter or longer than its header says.
    #[error(
        "SMT proof is {actual} bytes, its header requires {expected}; the proof was truncated or has trailing bytes"
    )]
    SmtProofLength {
        /// The length the proof must have (the header length if even that is missing).
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// An encoded SMT proof of a version this build does not read.
    #[error(
        "SMT proof version {version} is not supported (this build reads version 1); re-encode the proof with a matching version"
    )]
    SmtProofVersion {
        /// The version byte found.
        version: u8,
    },
    /// An encoded SMT proof with unknown flag bits set.
    #[error(
        "SMT proof flags {flags:#04x} set unknown bits (only bit 0 is defined); the proof is corrupt"
    )]
    SmtProofFlags {
        /// The flags byte found.
        flags: u8,
    },
    /// An encoded SMT proof whose default-sibling bitmap marks levels at or above its depth.
    #[error(
        "SMT proof bitmap {bitmap:#x} marks levels at or above the depth {depth}; the proof is corrupt"
    )]
    SmtProofBitmap {
        /// The bitmap found.
        bitmap: u64,
        /// The depth from the header.
        depth: u8,
    },
    /// An encoded SMT proof holds a field element that is not below the Goldilocks modulus.
    #[error(
        "SMT proof: the element at byte offset {offset} is not a canonical Goldilocks element (must be below 2^64 - 2^32 + 1); the proof is corrupt"
    )]
    SmtProofNonCanonical {
        /// Byte offset of the element in the proof.
        offset: usize,
    },
    /// An encoded SMT proof writes out a word that the encoding requires to be omitted (an
    /// empty value or a sibling equal to the empty-subtree default).
    #[error(
        "SMT proof: the word at byte offset {offset} must be omitted and flagged instead (the encoding is unique); the proof was not written by a conforming encoder"
    )]
    SmtProofNotCompact {
        /// Byte offset of the word in the proof.
        offset: usize,
    },
}
