//! The crate's one error type.

use crate::wire::RejectCode;

/// Everything that can go wrong in `epa-node-lite`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- wire codec ----
    /// A canonical-encoding rule was broken inside a message body (truncation, a length over
    /// its limit, trailing bytes, a bad boolean).
    #[error(
        "malformed {message} message: {source}; the peer sent a non-canonical body, fix the sender"
    )]
    Encoding {
        /// Which message was being decoded or encoded.
        message: &'static str,
        /// The encoding rule that failed.
        #[source]
        source: crypto::Error,
    },
    /// A frame header announced a length above the configured maximum frame size.
    #[error(
        "frame of {len} bytes exceeds the maximum frame size of {max} bytes; split the request or raise the limit on both sides"
    )]
    FrameTooLarge {
        /// Announced length (bytes after the length prefix).
        len: u64,
        /// The configured maximum.
        max: u32,
    },
    /// A frame header announced a length too small to hold the version and kind fields.
    #[error(
        "frame length {len} is shorter than the 4-byte version and kind header; the stream is corrupt"
    )]
    FrameTooShort {
        /// Announced length.
        len: u32,
    },
    /// A frame carries a protocol version this build does not speak.
    #[error(
        "wire version {version} is not supported (this build speaks {min}..={max}); upgrade the older side"
    )]
    UnsupportedVersion {
        /// Version in the frame.
        version: u16,
        /// Oldest version understood.
        min: u16,
        /// Newest version understood.
        max: u16,
    },
    /// A frame's kind is not a message of the family expected here (for example a response
    /// kind sent to the server).
    #[error("frame kind {kind:#06x} is not a valid {family}; the peer speaks another protocol")]
    UnknownKind {
        /// Which family of messages was expected (`"request"`, `"response"`, `"push"`).
        family: &'static str,
        /// The kind found.
        kind: u16,
    },
    /// An enumerated field holds a value with no meaning.
    #[error("{what} has no meaning for value {value}; the peer sent an invalid field")]
    InvalidValue {
        /// Which field.
        what: &'static str,
        /// The value found.
        value: u64,
    },
    /// A text field is not valid UTF-8.
    #[error("{what} is not valid UTF-8; send UTF-8 text")]
    InvalidUtf8 {
        /// Which field.
        what: &'static str,
    },
    /// The shard list of a subscription is not strictly increasing (duplicates or disorder),
    /// so it has more than one encoding.
    #[error("subscription shards must be strictly increasing; sort and deduplicate them")]
    UnsortedShards,
    /// The decoder failed earlier; a byte stream cannot be resynchronised after a bad frame.
    #[error("the frame decoder already failed on this stream; close the stream and open a new one")]
    DecoderPoisoned,
    /// The stream ended in the middle of a frame.
    #[error(
        "{what}: stream ended with {buffered} bytes of an incomplete frame; the peer closed early"
    )]
    IncompleteFrame {
        /// Which stream.
        what: &'static str,
        /// Bytes of the partial frame.
        buffered: usize,
    },

    // ---- signatures ----
    /// The batch names an aggregator key id that is not the id of the key it was checked with.
    #[error(
        "{what} names key id {named} but was checked against key id {given}; look the key up by the id in the message"
    )]
    KeyMismatch {
        /// What was being verified.
        what: &'static str,
        /// The key id in the message (hex).
        named: String,
        /// The key id of the key supplied (hex).
        given: String,
    },
    /// An ML-DSA signature did not verify, or signing failed.
    #[error("{what}: {source}")]
    Signature {
        /// What was being signed or verified.
        what: &'static str,
        /// The failure reported by the signature scheme.
        #[source]
        source: crypto::Error,
    },

    // ---- TLS and QUIC ----
    /// The appliance certificate could not be generated or parsed.
    #[error("appliance certificate: {0}; regenerate the identity")]
    Certificate(String),
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The server presented a certificate whose SHA-256 fingerprint is not the pinned one.
    #[error(
        "server certificate fingerprint {found} does not match the pinned {expected}; check the address or re-pin the appliance's fingerprint"
    )]
    FingerprintMismatch {
        /// The pinned fingerprint (hex).
        expected: String,
        /// The fingerprint presented (hex).
        found: String,
    },
    /// The QUIC endpoint configuration was refused (cipher suites, timeouts out of range).
    #[error("QUIC configuration: {0}; use TLS 1.3 with an AEAD suite and timeouts under 2^62 ms")]
    QuicConfig(String),
    /// A fingerprint string is not 64 hex digits.
    #[error(
        "fingerprint {0:?} is not 64 hex digits (a SHA-256); copy it from the appliance's status"
    )]
    BadFingerprint(String),
    /// A socket could not be opened or used.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// The QUIC connection could not be started.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialled.
        addr: std::net::SocketAddr,
        /// Why quinn refused.
        #[source]
        source: quinn::ConnectError,
    },
    /// The QUIC connection failed or was closed.
    #[error("QUIC connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing to a QUIC stream failed.
    #[error("QUIC stream write: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading from a QUIC stream failed.
    #[error("QUIC stream read: {0}")]
    Read(#[from] quinn::ReadError),
    /// The server closed the connection with an EPA application code.
    #[error("the appliance closed the connection ({code:?}): {reason}")]
    ClosedByPeer {
        /// The EPA close code.
        code: RejectCode,
        /// The reason text sent by the peer.
        reason: String,
    },
    /// The appliance answered with a typed rejection.
    #[error("rejected by the appliance ({code:?}): {message}")]
    Rejected {
        /// The rejection code.
        code: RejectCode,
        /// The appliance's explanation.
        message: String,
    },
    /// The peer answered with a message that does not answer the request.
    #[error(
        "unexpected {got} in answer to {request}; the appliance speaks another protocol version"
    )]
    UnexpectedMessage {
        /// The request sent.
        request: &'static str,
        /// The message received.
        got: &'static str,
    },
    /// An operation did not finish in time.
    #[error("{what} timed out after {millis} ms; the peer is slow or gone, retry later")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// The deadline in milliseconds.
        millis: u64,
    },
    /// A subscription's push stream ended or its internal channel closed.
    #[error("subscription closed: {0}")]
    SubscriptionClosed(&'static str),
}

impl Error {
    /// Wraps an encoding error for `message`.
    pub(crate) fn encoding(message: &'static str) -> impl FnOnce(crypto::Error) -> Self {
        move |source| Self::Encoding { message, source }
    }

    /// The rejection code a server answers with when a request fails to decode with this error.
    pub fn reject_code(&self) -> RejectCode {
        match self {
            Self::FrameTooLarge { .. } => RejectCode::TooLarge,
            Self::Encoding {
                source: crypto::Error::TooLong { .. },
                ..
            } => RejectCode::TooLarge,
            Self::UnsupportedVersion { .. } | Self::UnknownKind { .. } => RejectCode::Unsupported,
            Self::Rejected { code, .. } | Self::ClosedByPeer { code, .. } => *code,
            Self::Signature { .. } => RejectCode::BadSignature,
            Self::KeyMismatch { .. } => RejectCode::UnknownKey,
            Self::Timeout { .. } => RejectCode::Busy,
            Self::Io { .. }
            | Self::Connect { .. }
            | Self::Connection(_)
            | Self::Write(_)
            | Self::Read(_)
            | Self::Tls(_)
            | Self::Certificate(_)
            | Self::QuicConfig(_)
            | Self::SubscriptionClosed(_) => RejectCode::Internal,
            _ => RejectCode::Malformed,
        }
    }
}
