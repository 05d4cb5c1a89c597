//! The EPA wire protocol, sans-IO: frames, the streaming decoder, every message, and the
//! signing rules of batches and commitments. Nothing here touches a socket or a clock; the QUIC
//! layer ([`crate::server`], [`crate::client`]) only moves the bytes this module produces.
//!
//! A frame is `len u32 || version u16 || kind u16 || body`, little-endian, where `len` counts
//! the bytes after the length field (so `len = 4 + body.len()`). The decoder checks `len`
//! against the configured maximum frame size, and the version, **before** it waits for or
//! buffers the body. Bodies use the canonical encoding of [`crypto::encoding`]; every variable
//! field has a limit in [`Limits`], checked before allocation. `docs/wire.md` is the
//! specification.
//!
//! 1. Build a message ([`Request`], [`Response`], [`Push`]); sign batches with
//!    [`Batch::sign`] and commitments with [`Commitment::sign`].
//! 2. Turn it into bytes with [`Message::encode`].
//! 3. Feed received bytes, in any chunking, to a [`FrameDecoder`] (or a [`Codec`]) and take
//!    out whole frames and typed messages, or a typed [`crate::Error`].

mod message;
pub mod pair;

pub use message::{
    AUTH_CONTEXT, AUTH_DOMAIN, AUTH_EXPORTER_LABEL, Authenticate, BATCH_CONTEXT, BATCH_HASH_DOMAIN,
    Batch, CHALLENGE_LEN, COMMITMENT_CONTEXT, Commitment, CommitmentFields, JobId, JobState,
    JobStatusReport, KEY_ID_DOMAIN, KeyId, MAX_PROGRESS, Message, PROOF_HASH_DOMAIN, ProvingJob,
    ProvingOptions, Push, RejectCode, Rejection, Request, Response, SIGNATURE_SCHEME, Stage,
    SubscribeRequest, kinds,
};
pub use pair::{ClientCodec, Codec, MemoryPair, ServerCodec};

use crate::Error;

/// The wire version this build writes.
pub const WIRE_VERSION: u16 = 1;
/// The oldest wire version this build reads.
pub const MIN_WIRE_VERSION: u16 = 1;
/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// Bytes of a frame header: length (4) + version (2) + kind (2).
pub const FRAME_HEADER_LEN: usize = 8;
/// Default maximum frame size: 16 MiB after the length prefix.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;

/// Size limits of the wire, checked before anything is allocated. Both sides must use the
/// same limits (a writer refuses to produce what the matching reader would reject).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame, counted after the 4-byte length prefix.
    pub max_frame_len: u32,
    /// Most transactions in one batch.
    pub max_txs_per_batch: u32,
    /// Largest encrypted transaction (the `crypto::seal` encoding).
    pub max_tx_len: u32,
    /// Longest AIR name of a proving job.
    pub max_air_name_len: u32,
    /// Largest public-inputs blob of a proving job.
    pub max_public_inputs_len: u32,
    /// Largest witness blob of a proving job.
    pub max_witness_len: u32,
    /// Largest proof envelope.
    pub max_proof_len: u32,
    /// Most shards named in one subscription.
    pub max_shards_per_subscription: u32,
    /// Longest rejection message text.
    pub max_message_len: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_txs_per_batch: 1024,
            // The seal format bounds itself (64 KiB payload plus header and tag).
            max_tx_len: crypto::seal::MAX_ENCODED_LEN as u32,
            max_air_name_len: 64,
            max_public_inputs_len: 64 * 1024,
            max_witness_len: 8 * 1024 * 1024,
            max_proof_len: 8 * 1024 * 1024,
            max_shards_per_subscription: 256,
            max_message_len: 1024,
        }
    }
}

/// One frame: a versioned, typed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Wire version of the body.
    pub version: u16,
    /// What the body holds (see [`kinds`]).
    pub kind: u16,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Frame {
    /// The full encoding `len || version || kind || body`. Fails with
    /// [`Error::FrameTooLarge`] if the frame would exceed `max_frame_len`.
    pub fn encode(&self, max_frame_len: u32) -> Result<Vec<u8>, Error> {
        let len = check_frame_len(self.body.len(), max_frame_len)?;
        let mut out = Vec::with_capacity(FRAME_HEADER_LEN + self.body.len());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.kind.to_le_bytes());
        out.extend_from_slice(&self.body);
        Ok(out)
    }

    /// Decodes exactly one frame from `bytes` (no trailing bytes).
    pub fn decode_exact(bytes: &[u8], max_frame_len: u32) -> Result<Self, Error> {
        let mut dec = FrameDecoder::new(max_frame_len);
        dec.push(bytes);
        match dec.next_frame()? {
            Some(frame) if dec.buffered() == 0 => Ok(frame),
            Some(_) => Err(Error::Encoding {
                message: "frame",
                source: crypto::Error::TrailingBytes {
                    what: "frame",
                    count: dec.buffered(),
                },
            }),
            None => Err(Error::IncompleteFrame {
                what: "frame",
                buffered: dec.buffered(),
            }),
        }
    }
}

fn check_frame_len(body_len: usize, max_frame_len: u32) -> Result<u32, Error> {
    let len = body_len as u64 + 4;
    if len > u64::from(max_frame_len) {
        return Err(Error::FrameTooLarge {
            len,
            max: max_frame_len,
        });
    }
    // len <= max_frame_len <= u32::MAX.
    Ok(len as u32)
}

fn check_version(version: u16) -> Result<(), Error> {
    if (MIN_WIRE_VERSION..=WIRE_VERSION).contains(&version) {
        Ok(())
    } else {
        Err(Error::UnsupportedVersion {
            version,
            min: MIN_WIRE_VERSION,
            max: WIRE_VERSION,
        })
    }
}

/// A streaming frame decoder: push bytes in arbitrary chunks, take whole frames out.
///
/// The length and version are checked as soon as their bytes arrive, before the body is
/// waited for, so a forged length never makes the decoder buffer more than the maximum frame
/// size (plus whatever the caller pushes in one go). After an error the decoder is poisoned:
/// a byte stream cannot be resynchronised, so every later call returns
/// [`Error::DecoderPoisoned`].
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max_frame_len: u32,
    poisoned: bool,
}

impl FrameDecoder {
    /// A decoder accepting frames of at most `max_frame_len` bytes after the length prefix.
    pub fn new(max_frame_len: u32) -> Self {
        Self {
            buf: Vec::new(),
            max_frame_len,
            poisoned: false,
        }
    }

    /// The configured maximum frame size.
    pub fn max_frame_len(&self) -> u32 {
        self.max_frame_len
    }

    /// Appends received bytes. Ignored once the decoder is poisoned.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.poisoned {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes buffered and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether an earlier error poisoned the decoder.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// How many more bytes the next frame needs before [`Self::next_frame`] can return it
    /// (at least 1 while the header is incomplete), or 0 if a frame is ready.
    pub fn wanted(&self) -> usize {
        if self.buf.len() < LEN_PREFIX {
            return LEN_PREFIX - self.buf.len();
        }
        let len = self.announced_len().unwrap_or(0) as usize;
        (LEN_PREFIX + len).saturating_sub(self.buf.len())
    }

    fn announced_len(&self) -> Option<u32> {
        let prefix: [u8; 4] = self.buf.get(..LEN_PREFIX)?.try_into().ok()?;
        Some(u32::from_le_bytes(prefix))
    }

    fn fail(&mut self, err: Error) -> Result<Option<Frame>, Error> {
        self.poisoned = true;
        self.buf = Vec::new();
        Err(err)
    }

    /// The next whole frame, `Ok(None)` if more bytes are needed, or a typed error (frame too
    /// large or too short, unsupported version) that poisons the decoder.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        if self.poisoned {
            return Err(Error::DecoderPoisoned);
        }
        let Some(len) = self.announced_len() else {
            return Ok(None);
        };
        if len < 4 {
            return self.fail(Error::FrameTooShort { len });
        }
        if len > self.max_frame_len {
            return self.fail(Error::FrameTooLarge {
                len: u64::from(len),
                max: self.max_frame_len,
            });
        }
        if self.buf.len() >= LEN_PREFIX + 2 {
            let version = u16::from_le_bytes([self.buf[4], self.buf[5]]);
            if let Err(e) = check_version(version) {
                return self.fail(e);
            }
        }
        let total = LEN_PREFIX + len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let version = u16::from_le_bytes([self.buf[4], self.buf[5]]);
        let kind = u16::from_le_bytes([self.buf[6], self.buf[7]]);
        let body = self.buf[FRAME_HEADER_LEN..total].to_vec();
        self.buf.drain(..total);
        Ok(Some(Frame {
            version,
            kind,
            body,
        }))
    }

    /// Checks that the stream ended on a frame boundary (call when the peer finished).
    pub fn finish(&self, what: &'static str) -> Result<(), Error> {
        if self.poisoned {
            return Err(Error::DecoderPoisoned);
        }
        match self.buf.len() {
            0 => Ok(()),
            buffered => Err(Error::IncompleteFrame { what, buffered }),
        }
    }
}

#[cfg(test)]
mod tests;
