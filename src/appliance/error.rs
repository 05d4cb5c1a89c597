//! The appliance's error type.

use std::path::PathBuf;

/// Everything that can go wrong while wiring or running the appliance.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A stored record (stage output, job payload, commitment) does not decode.
    #[error("cannot decode the {what}: {source}; the data dir is damaged or from another version")]
    Codec {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's error.
        source: crypto::Error,
    },
    /// A stored record is structurally wrong.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A 32-byte word holds an element at or above the field modulus.
    #[error("the {what} holds a non-canonical field element; it was not written by this appliance")]
    NonCanonicalWord {
        /// Where.
        what: &'static str,
    },
    /// A key or certificate file cannot be read or written.
    #[error("key file {path}: {detail}; check the path and its permissions")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// A commitment from the appliance does not verify.
    #[error("commitment of shard {shard} at height {height} does not verify: {reason}")]
    Unverified {
        /// Its shard.
        shard: u32,
        /// Its height.
        height: u64,
        /// What failed.
        reason: String,
    },
    /// A configuration value cannot be used.
    #[error("configuration: {0}")]
    Config(String),
    /// The scheduler or its store failed.
    #[error(transparent)]
    Scheduler(#[from] scheduler::SchedulerError),
    /// The light node (QUIC, HTTP, wire) failed.
    #[error(transparent)]
    Node(#[from] node_lite::Error),
    /// The prover failed.
    #[error(transparent)]
    Prover(#[from] prover::Error),
    /// A cryptographic operation or encoding failed.
    #[error(transparent)]
    Crypto(#[from] crypto::Error),
}
