//! Messages of the wire protocol and their canonical bodies.

use crypto::dsa::mldsa65::{self, SIGNATURE_LEN, Signature, SigningKey, VerifyingKey};
use crypto::encoding::{Reader, Writer};
use sha3::Shake256;
use sha3::digest::{ExtendableOutput, Update, XofReader};

use super::{Frame, Limits, WIRE_VERSION};
use crate::Error;

/// Frame kinds. Requests are `0x00__`, responses `0x01__`, server pushes `0x02__`.
pub mod kinds {
    /// [`super::Request::SubmitBatch`].
    pub const SUBMIT_BATCH: u16 = 0x0001;
    /// [`super::Request::SubmitProvingJob`].
    pub const SUBMIT_PROVING_JOB: u16 = 0x0002;
    /// [`super::Request::JobStatus`].
    pub const JOB_STATUS: u16 = 0x0003;
    /// [`super::Request::FetchProof`].
    pub const FETCH_PROOF: u16 = 0x0004;
    /// [`super::Request::Subscribe`].
    pub const SUBSCRIBE: u16 = 0x0005;
    /// [`super::Authenticate`]: the connection's first request when authentication is on.
    pub const AUTHENTICATE: u16 = 0x0006;
    /// [`super::Response::Accepted`].
    pub const ACCEPTED: u16 = 0x0101;
    /// [`super::Response::Rejected`].
    pub const REJECTED: u16 = 0x0102;
    /// [`super::Response::Status`].
    pub const STATUS: u16 = 0x0103;
    /// [`super::Response::Proof`].
    pub const PROOF: u16 = 0x0104;
    /// [`super::Response::NotFound`].
    pub const NOT_FOUND: u16 = 0x0105;
    /// [`super::Response::Subscribed`].
    pub const SUBSCRIBED: u16 = 0x0106;
    /// [`super::Response::Authenticated`].
    pub const AUTHENTICATED: u16 = 0x0107;
    /// [`super::Push::Start`].
    pub const PUSH_START: u16 = 0x0201;
    /// [`super::Push::Commitment`].
    pub const COMMITMENT: u16 = 0x0202;
}

/// ML-DSA context string of batch signatures.
pub const BATCH_CONTEXT: &[u8] = b"EPA-v1/wire/batch";
/// ML-DSA context string of commitment signatures.
pub const COMMITMENT_CONTEXT: &[u8] = b"EPA-v1/wire/commitment";
/// SHAKE-256 domain prefix of [`Batch::batch_hash`].
pub const BATCH_HASH_DOMAIN: &[u8] = b"EPA-v1/wire/batch-hash";
/// SHAKE-256 domain prefix of [`Commitment::proof_hash`].
pub const PROOF_HASH_DOMAIN: &[u8] = b"EPA-v1/wire/proof-hash";
/// ML-DSA context string of connection-authentication signatures ([`Authenticate`]).
pub const AUTH_CONTEXT: &[u8] = b"EPA-v1/wire/auth";
/// Domain prefix of the bytes an [`Authenticate`] signature covers.
pub const AUTH_DOMAIN: &[u8] = b"EPA-v1/wire/auth-challenge";
/// The TLS exporter label of the connection challenge (RFC 5705 / RFC 8446 section 7.5).
pub const AUTH_EXPORTER_LABEL: &[u8] = b"EXPORTER-EPA-v1-auth-challenge";
/// Bytes of the connection challenge taken from the TLS exporter.
pub const CHALLENGE_LEN: usize = 32;
/// SHAKE-256 domain prefix of [`KeyId::of`].
pub const KEY_ID_DOMAIN: &[u8] = b"EPA-v1/wire/key-id";

fn shake32(domain: &[u8], data: &[u8]) -> [u8; 32] {
    let mut h = Shake256::default();
    h.update(domain);
    h.update(data);
    let mut out = [0u8; 32];
    h.finalize_xof().read(&mut out);
    out
}

/// A typed, canonically encoded wire message of one family (requests, responses, pushes).
pub trait Message: Sized {
    /// Family name used in errors.
    const FAMILY: &'static str;
    /// The frame kind of this message.
    fn kind(&self) -> u16;
    /// A short name of the variant, for errors and logs.
    fn name(&self) -> &'static str;
    /// Appends the canonical body, refusing fields over `limits`.
    fn encode_body(&self, w: &mut Writer, limits: &Limits) -> Result<(), Error>;
    /// Parses a body of frame kind `kind`, strictly (limits, no trailing bytes).
    fn decode_body(kind: u16, body: &[u8], limits: &Limits) -> Result<Self, Error>;

    /// The message as a frame of the current wire version.
    fn to_frame(&self, limits: &Limits) -> Result<Frame, Error> {
        let mut w = Writer::new();
        self.encode_body(&mut w, limits)?;
        Ok(Frame {
            version: WIRE_VERSION,
            kind: self.kind(),
            body: w.into_bytes(),
        })
    }

    /// Parses a frame of this family.
    fn from_frame(frame: &Frame, limits: &Limits) -> Result<Self, Error> {
        Self::decode_body(frame.kind, &frame.body, limits)
    }

    /// The full frame bytes (`len || version || kind || body`).
    fn encode(&self, limits: &Limits) -> Result<Vec<u8>, Error> {
        self.to_frame(limits)?.encode(limits.max_frame_len)
    }
}

/// Identifier of an accepted batch or proving job, assigned by the appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

impl core::fmt::Display for JobId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "job-{}", self.0)
    }
}

/// The identifier of an ML-DSA-65 verifying key: SHAKE-256 of [`KEY_ID_DOMAIN`] and the
/// encoded key, 32 bytes. Batches name their aggregator by key id; the appliance looks the key
/// up in its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 32]);

impl KeyId {
    /// The id of `key`.
    pub fn of(key: &VerifyingKey) -> Self {
        Self(shake32(KEY_ID_DOMAIN, key.as_bytes()))
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// A batch of encrypted transactions for one shard, signed by its aggregator with ML-DSA-65.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The shard the transactions apply to.
    pub shard: u32,
    /// The aggregator's sequence number for this shard (strictly increasing).
    pub seq: u64,
    /// The shard's SMT root the batch applies on top of.
    pub prev_root: [u8; 32],
    /// Encrypted transactions, each a `crypto::seal::EncryptedTx` encoding.
    pub txs: Vec<Vec<u8>>,
    /// The aggregator's key id.
    pub aggregator: KeyId,
    /// ML-DSA-65 signature over [`Batch::signing_bytes`] under [`BATCH_CONTEXT`].
    pub signature: Signature,
}

/// Writes the fields every batch encoding shares (signing bytes and wire body).
fn put_batch_fields(
    w: &mut Writer,
    shard: u32,
    seq: u64,
    prev_root: &[u8; 32],
    txs: &[Vec<u8>],
    aggregator: &KeyId,
    limits: &Limits,
) -> Result<(), Error> {
    let enc = Error::encoding("SubmitBatch");
    w.put_u32(shard).put_u64(seq).put_raw(prev_root);
    let tx_max = limits.max_tx_len;
    w.put_vec(txs, limits.max_txs_per_batch, |w, tx| {
        w.put_bytes(tx, tx_max).map(|_| ())
    })
    .map_err(enc)?;
    w.put_raw(&aggregator.0);
    Ok(())
}

impl Batch {
    /// Signs a batch: `signing_key` must be the key whose verifying half is `verifying_key`
    /// (its id goes into the batch). `randomness` is the FIPS 204 hedging input (all zero gives
    /// the deterministic variant). Fails if a field is over `limits`.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        shard: u32,
        seq: u64,
        prev_root: [u8; 32],
        txs: Vec<Vec<u8>>,
        signing_key: &SigningKey,
        verifying_key: &VerifyingKey,
        randomness: &[u8; 32],
        limits: &Limits,
    ) -> Result<Self, Error> {
        let aggregator = KeyId::of(verifying_key);
        let mut w = Writer::new();
        put_batch_fields(&mut w, shard, seq, &prev_root, &txs, &aggregator, limits)?;
        let signature = signing_key
            .sign(w.as_slice(), BATCH_CONTEXT, randomness)
            .map_err(|source| Error::Signature {
                what: "batch signing",
                source,
            })?;
        Ok(Self {
            shard,
            seq,
            prev_root,
            txs,
            aggregator,
            signature,
        })
    }

    /// The bytes the aggregator signs: the canonical body without the signature.
    pub fn signing_bytes(&self, limits: &Limits) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        put_batch_fields(
            &mut w,
            self.shard,
            self.seq,
            &self.prev_root,
            &self.txs,
            &self.aggregator,
            limits,
        )?;
        Ok(w.into_bytes())
    }

    /// Checks that `key` is the key named by the batch and that the signature verifies.
    pub fn verify(&self, key: &VerifyingKey, limits: &Limits) -> Result<(), Error> {
        let given = KeyId::of(key);
        if given != self.aggregator {
            return Err(Error::KeyMismatch {
                what: "batch",
                named: self.aggregator.to_hex(),
                given: given.to_hex(),
            });
        }
        key.verify(&self.signing_bytes(limits)?, BATCH_CONTEXT, &self.signature)
            .map_err(|source| Error::Signature {
                what: "batch signature",
                source,
            })
    }

    /// The batch hash: SHAKE-256 of [`BATCH_HASH_DOMAIN`] followed by the signing bytes,
    /// 32 bytes. It binds the content (not the hedged signature), so it is the same for every
    /// signature of the same batch.
    pub fn batch_hash(&self, limits: &Limits) -> Result<[u8; 32], Error> {
        Ok(shake32(BATCH_HASH_DOMAIN, &self.signing_bytes(limits)?))
    }

    fn encode_into(&self, w: &mut Writer, limits: &Limits) -> Result<(), Error> {
        put_batch_fields(
            w,
            self.shard,
            self.seq,
            &self.prev_root,
            &self.txs,
            &self.aggregator,
            limits,
        )?;
        w.put_raw(self.signature.as_bytes());
        Ok(())
    }

    fn decode_from(r: &mut Reader<'_>, limits: &Limits) -> Result<Self, crypto::Error> {
        let shard = r.u32("batch shard")?;
        let seq = r.u64("batch seq")?;
        let prev_root = r.array::<32>("batch prev_root")?;
        let tx_max = limits.max_tx_len;
        let txs = r.vec("batch txs", limits.max_txs_per_batch, 4, |r| {
            r.bytes("batch tx", tx_max).map(<[u8]>::to_vec)
        })?;
        let aggregator = KeyId(r.array::<32>("batch aggregator")?);
        let signature = Signature::from_bytes(r.take("batch signature", SIGNATURE_LEN)?)?;
        Ok(Self {
            shard,
            seq,
            prev_root,
            txs,
            aggregator,
            signature,
        })
    }
}

/// Proof options of a proving job, as the prover's wire ids (`prover::options`): the service
/// validates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvingOptions {
    /// Options preset id.
    pub preset: u8,
    /// Commitment hash id.
    pub hash: u8,
}

/// A proving job submitted by a validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvingJob {
    /// Registered AIR name, e.g. `"smt-update"`.
    pub air: String,
    /// The AIR's public inputs, in the prover's encoding.
    pub public_inputs: Vec<u8>,
    /// The witness, in the prover's encoding.
    pub witness: Vec<u8>,
    /// Proof options.
    pub options: ProvingOptions,
}

/// A subscription to shard commitments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeRequest {
    /// Shards of interest, strictly increasing; empty means every shard.
    pub shards: Vec<u32>,
    /// Send every commitment with a height at or above this one (catch-up), then live ones.
    pub from_height: u64,
}

impl SubscribeRequest {
    /// Whether a commitment of `shard` is of interest.
    pub fn wants(&self, shard: u32) -> bool {
        self.shards.is_empty() || self.shards.binary_search(&shard).is_ok()
    }
}

/// A client request: one per bidirectional stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Submit a signed batch; answered by `Accepted` or `Rejected`.
    SubmitBatch(Batch),
    /// Submit a proving job; answered by `Accepted` or `Rejected`.
    SubmitProvingJob(ProvingJob),
    /// Ask for a job's state; answered by `Status`, `NotFound` or `Rejected`.
    JobStatus {
        /// The job.
        id: JobId,
    },
    /// Fetch a finished proof; answered by `Proof`, `NotFound` or `Rejected`.
    FetchProof {
        /// The job.
        id: JobId,
    },
    /// Subscribe to commitments; answered by `Subscribed` (then pushes) or `Rejected`.
    Subscribe(SubscribeRequest),
}

/// Why the appliance refused a request. Sent as a `u16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum RejectCode {
    /// The aggregator key id is not in the appliance's configuration.
    UnknownKey = 1,
    /// The batch signature does not verify.
    BadSignature = 2,
    /// The sequence number was already used (or is not the next one).
    Replay = 3,
    /// `prev_root` is not the shard's current root.
    WrongPrevRoot = 4,
    /// A queue is full: back off and retry.
    Busy = 5,
    /// A frame or field is over its limit.
    TooLarge = 6,
    /// The request does not decode.
    Malformed = 7,
    /// The version or message kind is not supported.
    Unsupported = 8,
    /// The appliance failed internally; retry later.
    Internal = 9,
    /// The AIR name is not registered.
    UnknownAir = 10,
    /// The proof options are invalid.
    BadOptions = 11,
    /// The peer exceeded a connection or stream limit.
    LimitExceeded = 12,
    /// The peer is not allowed to do this.
    Unauthorized = 13,
}

impl RejectCode {
    /// Every code, in wire order.
    pub const ALL: [RejectCode; 13] = [
        Self::UnknownKey,
        Self::BadSignature,
        Self::Replay,
        Self::WrongPrevRoot,
        Self::Busy,
        Self::TooLarge,
        Self::Malformed,
        Self::Unsupported,
        Self::Internal,
        Self::UnknownAir,
        Self::BadOptions,
        Self::LimitExceeded,
        Self::Unauthorized,
    ];

    /// The wire value.
    pub const fn to_u16(self) -> u16 {
        self as u16
    }

    /// Parses a wire value.
    pub fn from_u16(v: u16) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|c| c.to_u16() == v)
            .ok_or(Error::InvalidValue {
                what: "rejection code",
                value: u64::from(v),
            })
    }
}

/// A typed rejection with a human-readable explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The code.
    pub code: RejectCode,
    /// What was wrong and what to do (at most [`Limits::max_message_len`] bytes of UTF-8).
    pub message: String,
}

impl Rejection {
    /// A rejection with `code` and `message`, the message cut (on a character boundary) to
    /// `max_len` bytes so it always encodes.
    pub fn new(code: RejectCode, message: impl Into<String>, max_len: u32) -> Self {
        let mut message = message.into();
        let max = max_len as usize;
        if message.len() > max {
            let mut cut = max;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Self { code, message }
    }
}

/// State of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum JobState {
    /// Durable and waiting.
    Queued = 0,
    /// A stage is running.
    Running = 1,
    /// Finished; the proof is available.
    Done = 2,
    /// Failed for good.
    Failed = 3,
    /// Cancelled.
    Cancelled = 4,
}

/// The stage a job is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Not started.
    Pending = 0,
    /// ML-KEM decapsulation.
    Decap = 1,
    /// Decrypt, validate, apply to the SMT.
    Execute = 2,
    /// STARK proving.
    Prove = 3,
    /// Signing and pushing the commitment.
    Publish = 4,
    /// All stages finished.
    Finished = 5,
}

macro_rules! u8_enum {
    ($t:ty, $what:literal, [$($v:ident),*]) => {
        impl $t {
            /// Parses a wire value.
            pub fn from_u8(v: u8) -> Result<Self, Error> {
                $(if v == Self::$v as u8 { return Ok(Self::$v); })*
                Err(Error::InvalidValue { what: $what, value: u64::from(v) })
            }
        }
    };
}
u8_enum!(
    JobState,
    "job state",
    [Queued, Running, Done, Failed, Cancelled]
);
u8_enum!(
    Stage,
    "job stage",
    [Pending, Decap, Execute, Prove, Publish, Finished]
);

/// Largest progress value: 10 000 basis points = 100 %.
pub const MAX_PROGRESS: u16 = 10_000;

/// A job's state, stage and progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobStatusReport {
    /// The job.
    pub id: JobId,
    /// Its state.
    pub state: JobState,
    /// Its current stage.
    pub stage: Stage,
    /// Progress in basis points, `0..=10_000`.
    pub progress: u16,
}

/// An answer on a request's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The request is durable; this is its id.
    Accepted {
        /// The batch or job id.
        id: JobId,
    },
    /// The request was refused before any work was done.
    Rejected(Rejection),
    /// A job's status.
    Status(JobStatusReport),
    /// A finished proof envelope.
    Proof {
        /// The job.
        id: JobId,
        /// The proof envelope bytes (verifiable with stock winterfell).
        envelope: Vec<u8>,
    },
    /// No job with this id.
    NotFound {
        /// The id asked for.
        id: JobId,
    },
    /// The subscription is open; its commitments arrive on a server-opened unidirectional
    /// stream that starts with `Push::Start` naming this id.
    Subscribed {
        /// Subscription id, unique per connection.
        subscription: u64,
    },
    /// The connection is authenticated as this tenant (the answer to [`Authenticate`]).
    Authenticated {
        /// The tenant the appliance mapped the key to.
        tenant: String,
    },
}

/// A signed state commitment pushed to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commitment {
    /// The shard.
    pub shard: u32,
    /// The shard height this commitment reaches (1 for the first batch).
    pub height: u64,
    /// SMT root before the batch.
    pub old_root: [u8; 32],
    /// SMT root after the batch.
    pub new_root: [u8; 32],
    /// [`Batch::batch_hash`] of the batch applied.
    pub batch_hash: [u8; 32],
    /// The proof envelope of the transition.
    pub proof: Vec<u8>,
    /// The appliance's ML-DSA-65 signature over [`Commitment::signing_bytes`] under
    /// [`COMMITMENT_CONTEXT`].
    pub signature: Signature,
}

/// The fields of a commitment before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitmentFields {
    /// The shard.
    pub shard: u32,
    /// The height reached.
    pub height: u64,
    /// SMT root before.
    pub old_root: [u8; 32],
    /// SMT root after.
    pub new_root: [u8; 32],
    /// The batch hash.
    pub batch_hash: [u8; 32],
    /// The proof envelope.
    pub proof: Vec<u8>,
}

fn commitment_signing_bytes(
    shard: u32,
    height: u64,
    old_root: &[u8; 32],
    new_root: &[u8; 32],
    batch_hash: &[u8; 32],
    proof: &[u8],
) -> Vec<u8> {
    let mut w = Writer::with_capacity(4 + 8 + 4 * 32);
    w.put_u32(shard)
        .put_u64(height)
        .put_raw(old_root)
        .put_raw(new_root)
        .put_raw(batch_hash)
        .put_raw(&shake32(PROOF_HASH_DOMAIN, proof));
    w.into_bytes()
}

impl Commitment {
    /// Signs `fields` with the appliance key (`randomness`: FIPS 204 hedging input).
    pub fn sign(
        fields: CommitmentFields,
        key: &SigningKey,
        randomness: &[u8; 32],
    ) -> Result<Self, Error> {
        let msg = commitment_signing_bytes(
            fields.shard,
            fields.height,
            &fields.old_root,
            &fields.new_root,
            &fields.batch_hash,
            &fields.proof,
        );
        let signature = key
            .sign(&msg, COMMITMENT_CONTEXT, randomness)
            .map_err(|source| Error::Signature {
                what: "commitment signing",
                source,
            })?;
        Ok(Self {
            shard: fields.shard,
            height: fields.height,
            old_root: fields.old_root,
            new_root: fields.new_root,
            batch_hash: fields.batch_hash,
            proof: fields.proof,
            signature,
        })
    }

    /// SHAKE-256 of [`PROOF_HASH_DOMAIN`] and the proof envelope, 32 bytes.
    pub fn proof_hash(&self) -> [u8; 32] {
        shake32(PROOF_HASH_DOMAIN, &self.proof)
    }

    /// The signed bytes: `shard u32 || height u64 || old_root || new_root || batch_hash ||
    /// proof_hash` (140 bytes).
    pub fn signing_bytes(&self) -> Vec<u8> {
        commitment_signing_bytes(
            self.shard,
            self.height,
            &self.old_root,
            &self.new_root,
            &self.batch_hash,
            &self.proof,
        )
    }

    /// Verifies the appliance signature.
    pub fn verify(&self, appliance_key: &VerifyingKey) -> Result<(), Error> {
        appliance_key
            .verify(&self.signing_bytes(), COMMITMENT_CONTEXT, &self.signature)
            .map_err(|source| Error::Signature {
                what: "commitment signature",
                source,
            })
    }
}

/// A message the server pushes on a unidirectional stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// First frame of a push stream: which subscription it serves.
    Start {
        /// The id from `Response::Subscribed`.
        subscription: u64,
    },
    /// A signed commitment.
    Commitment(Commitment),
}

fn put_string(w: &mut Writer, s: &str, max: u32) -> Result<(), crypto::Error> {
    w.put_bytes(s.as_bytes(), max).map(|_| ())
}

fn read_string(r: &mut Reader<'_>, what: &'static str, max: u32) -> Result<String, Error> {
    let bytes = r.bytes(what, max).map_err(Error::encoding(what))?;
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::InvalidUtf8 { what })
}

/// Runs `f` on a reader over `body` and requires it to consume everything.
fn strict<T>(
    message: &'static str,
    body: &[u8],
    f: impl FnOnce(&mut Reader<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut r = Reader::new(body);
    let out = f(&mut r)?;
    r.finish(message).map_err(Error::encoding(message))?;
    Ok(out)
}

impl Message for Request {
    const FAMILY: &'static str = "request";

    fn kind(&self) -> u16 {
        match self {
            Self::SubmitBatch(_) => kinds::SUBMIT_BATCH,
            Self::SubmitProvingJob(_) => kinds::SUBMIT_PROVING_JOB,
            Self::JobStatus { .. } => kinds::JOB_STATUS,
            Self::FetchProof { .. } => kinds::FETCH_PROOF,
            Self::Subscribe(_) => kinds::SUBSCRIBE,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::SubmitBatch(_) => "SubmitBatch",
            Self::SubmitProvingJob(_) => "SubmitProvingJob",
            Self::JobStatus { .. } => "JobStatus",
            Self::FetchProof { .. } => "FetchProof",
            Self::Subscribe(_) => "Subscribe",
        }
    }

    fn encode_body(&self, w: &mut Writer, limits: &Limits) -> Result<(), Error> {
        let name = self.name();
        match self {
            Self::SubmitBatch(batch) => batch.encode_into(w, limits)?,
            Self::SubmitProvingJob(job) => {
                put_string(w, &job.air, limits.max_air_name_len).map_err(Error::encoding(name))?;
                w.put_bytes(&job.public_inputs, limits.max_public_inputs_len)
                    .map_err(Error::encoding(name))?;
                w.put_bytes(&job.witness, limits.max_witness_len)
                    .map_err(Error::encoding(name))?;
                w.put_u8(job.options.preset).put_u8(job.options.hash);
            }
            Self::JobStatus { id } | Self::FetchProof { id } => {
                w.put_u64(id.0);
            }
            Self::Subscribe(sub) => {
                if sub.shards.windows(2).any(|p| p[0] >= p[1]) {
                    return Err(Error::UnsortedShards);
                }
                w.put_vec(&sub.shards, limits.max_shards_per_subscription, |w, s| {
                    w.put_u32(*s);
                    Ok(())
                })
                .map_err(Error::encoding(name))?;
                w.put_u64(sub.from_height);
            }
        }
        Ok(())
    }

    fn decode_body(kind: u16, body: &[u8], limits: &Limits) -> Result<Self, Error> {
        match kind {
            kinds::SUBMIT_BATCH => strict("SubmitBatch", body, |r| {
                Batch::decode_from(r, limits)
                    .map(Self::SubmitBatch)
                    .map_err(Error::encoding("SubmitBatch"))
            }),
            kinds::SUBMIT_PROVING_JOB => strict("SubmitProvingJob", body, |r| {
                let enc = || Error::encoding("SubmitProvingJob");
                let air = read_string(r, "proving job AIR name", limits.max_air_name_len)?;
                let public_inputs = r
                    .bytes("proving job public inputs", limits.max_public_inputs_len)
                    .map_err(enc())?
                    .to_vec();
                let witness = r
                    .bytes("proving job witness", limits.max_witness_len)
                    .map_err(enc())?
                    .to_vec();
                let preset = r.u8("proving job preset").map_err(enc())?;
                let hash = r.u8("proving job hash").map_err(enc())?;
                Ok(Self::SubmitProvingJob(ProvingJob {
                    air,
                    public_inputs,
                    witness,
                    options: ProvingOptions { preset, hash },
                }))
            }),
            kinds::JOB_STATUS => strict("JobStatus", body, |r| {
                let id = r.u64("job id").map_err(Error::encoding("JobStatus"))?;
                Ok(Self::JobStatus { id: JobId(id) })
            }),
            kinds::FETCH_PROOF => strict("FetchProof", body, |r| {
                let id = r.u64("job id").map_err(Error::encoding("FetchProof"))?;
                Ok(Self::FetchProof { id: JobId(id) })
            }),
            kinds::SUBSCRIBE => strict("Subscribe", body, |r| {
                let enc = || Error::encoding("Subscribe");
                let shards = r
                    .vec(
                        "subscription shards",
                        limits.max_shards_per_subscription,
                        4,
                        |r| r.u32("shard"),
                    )
                    .map_err(enc())?;
                if shards.windows(2).any(|p| p[0] >= p[1]) {
                    return Err(Error::UnsortedShards);
                }
                let from_height = r.u64("from_height").map_err(enc())?;
                Ok(Self::Subscribe(SubscribeRequest {
                    shards,
                    from_height,
                }))
            }),
            kind => Err(Error::UnknownKind {
                family: Self::FAMILY,
                kind,
            }),
        }
    }
}

impl Message for Response {
    const FAMILY: &'static str = "response";

    fn kind(&self) -> u16 {
        match self {
            Self::Accepted { .. } => kinds::ACCEPTED,
            Self::Rejected(_) => kinds::REJECTED,
            Self::Status(_) => kinds::STATUS,
            Self::Proof { .. } => kinds::PROOF,
            Self::NotFound { .. } => kinds::NOT_FOUND,
            Self::Subscribed { .. } => kinds::SUBSCRIBED,
            Self::Authenticated { .. } => kinds::AUTHENTICATED,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Accepted { .. } => "Accepted",
            Self::Rejected(_) => "Rejected",
            Self::Status(_) => "Status",
            Self::Proof { .. } => "Proof",
            Self::NotFound { .. } => "NotFound",
            Self::Subscribed { .. } => "Subscribed",
            Self::Authenticated { .. } => "Authenticated",
        }
    }

    fn encode_body(&self, w: &mut Writer, limits: &Limits) -> Result<(), Error> {
        let name = self.name();
        match self {
            Self::Accepted { id } | Self::NotFound { id } => {
                w.put_u64(id.0);
            }
            Self::Rejected(rej) => {
                w.put_u16(rej.code.to_u16());
                put_string(w, &rej.message, limits.max_message_len)
                    .map_err(Error::encoding(name))?;
            }
            Self::Status(s) => {
                if s.progress > MAX_PROGRESS {
                    return Err(Error::InvalidValue {
                        what: "job progress",
                        value: u64::from(s.progress),
                    });
                }
                w.put_u64(s.id.0)
                    .put_u8(s.state as u8)
                    .put_u8(s.stage as u8)
                    .put_u16(s.progress);
            }
            Self::Proof { id, envelope } => {
                w.put_u64(id.0);
                w.put_bytes(envelope, limits.max_proof_len)
                    .map_err(Error::encoding(name))?;
            }
            Self::Subscribed { subscription } => {
                w.put_u64(*subscription);
            }
            Self::Authenticated { tenant } => {
                put_string(w, tenant, limits.max_message_len).map_err(Error::encoding(name))?;
            }
        }
        Ok(())
    }

    fn decode_body(kind: u16, body: &[u8], limits: &Limits) -> Result<Self, Error> {
        match kind {
            kinds::ACCEPTED => strict("Accepted", body, |r| {
                let id = r.u64("job id").map_err(Error::encoding("Accepted"))?;
                Ok(Self::Accepted { id: JobId(id) })
            }),
            kinds::NOT_FOUND => strict("NotFound", body, |r| {
                let id = r.u64("job id").map_err(Error::encoding("NotFound"))?;
                Ok(Self::NotFound { id: JobId(id) })
            }),
            kinds::REJECTED => strict("Rejected", body, |r| {
                let code = r
                    .u16("rejection code")
                    .map_err(Error::encoding("Rejected"))?;
                let code = RejectCode::from_u16(code)?;
                let message = read_string(r, "rejection message", limits.max_message_len)?;
                Ok(Self::Rejected(Rejection { code, message }))
            }),
            kinds::STATUS => strict("Status", body, |r| {
                let enc = || Error::encoding("Status");
                let id = JobId(r.u64("job id").map_err(enc())?);
                let state = JobState::from_u8(r.u8("job state").map_err(enc())?)?;
                let stage = Stage::from_u8(r.u8("job stage").map_err(enc())?)?;
                let progress = r.u16("job progress").map_err(enc())?;
                if progress > MAX_PROGRESS {
                    return Err(Error::InvalidValue {
                        what: "job progress",
                        value: u64::from(progress),
                    });
                }
                Ok(Self::Status(JobStatusReport {
                    id,
                    state,
                    stage,
                    progress,
                }))
            }),
            kinds::PROOF => strict("Proof", body, |r| {
                let enc = || Error::encoding("Proof");
                let id = JobId(r.u64("job id").map_err(enc())?);
                let envelope = r
                    .bytes("proof envelope", limits.max_proof_len)
                    .map_err(enc())?
                    .to_vec();
                Ok(Self::Proof { id, envelope })
            }),
            kinds::AUTHENTICATED => strict("Authenticated", body, |r| {
                let tenant = read_string(r, "tenant name", limits.max_message_len)?;
                Ok(Self::Authenticated { tenant })
            }),
            kinds::SUBSCRIBED => strict("Subscribed", body, |r| {
                let subscription = r
                    .u64("subscription id")
                    .map_err(Error::encoding("Subscribed"))?;
                Ok(Self::Subscribed { subscription })
            }),
            kind => Err(Error::UnknownKind {
                family: Self::FAMILY,
                kind,
            }),
        }
    }
}

impl Message for Push {
    const FAMILY: &'static str = "push";

    fn kind(&self) -> u16 {
        match self {
            Self::Start { .. } => kinds::PUSH_START,
            Self::Commitment(_) => kinds::COMMITMENT,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "Start",
            Self::Commitment(_) => "Commitment",
        }
    }

    fn encode_body(&self, w: &mut Writer, limits: &Limits) -> Result<(), Error> {
        match self {
            Self::Start { subscription } => {
                w.put_u64(*subscription);
            }
            Self::Commitment(c) => {
                w.put_u32(c.shard)
                    .put_u64(c.height)
                    .put_raw(&c.old_root)
                    .put_raw(&c.new_root)
                    .put_raw(&c.batch_hash);
                w.put_bytes(&c.proof, limits.max_proof_len)
                    .map_err(Error::encoding("Commitment"))?;
                w.put_raw(c.signature.as_bytes());
            }
        }
        Ok(())
    }

    fn decode_body(kind: u16, body: &[u8], limits: &Limits) -> Result<Self, Error> {
        match kind {
            kinds::PUSH_START => strict("Start", body, |r| {
                let subscription = r.u64("subscription id").map_err(Error::encoding("Start"))?;
                Ok(Self::Start { subscription })
            }),
            kinds::COMMITMENT => strict("Commitment", body, |r| {
                let inner = |r: &mut Reader<'_>| -> Result<Commitment, crypto::Error> {
                    let shard = r.u32("commitment shard")?;
                    let height = r.u64("commitment height")?;
                    let old_root = r.array::<32>("commitment old_root")?;
                    let new_root = r.array::<32>("commitment new_root")?;
                    let batch_hash = r.array::<32>("commitment batch_hash")?;
                    let proof = r.bytes("commitment proof", limits.max_proof_len)?.to_vec();
                    let signature =
                        Signature::from_bytes(r.take("commitment signature", SIGNATURE_LEN)?)?;
                    Ok(Commitment {
                        shard,
                        height,
                        old_root,
                        new_root,
                        batch_hash,
                        proof,
                        signature,
                    })
                };
                inner(r)
                    .map(Self::Commitment)
                    .map_err(Error::encoding("Commitment"))
            }),
            kind => Err(Error::UnknownKind {
                family: Self::FAMILY,
                kind,
            }),
        }
    }
}

/// The ML-DSA parameter set used for every wire signature.
pub const SIGNATURE_SCHEME: &str = mldsa65::NAME;

/// Connection-level authentication: the peer's ML-DSA-65 key and its signature over the
/// connection's challenge (32 bytes of TLS exporter keying material under
/// [`AUTH_EXPORTER_LABEL`]). The challenge is unique to one TLS session, so a signature made
/// for one connection does not verify on any other. Sent as the first request of a connection;
/// answered by [`Response::Authenticated`] or a rejection.
#[derive(Debug, Clone)]
pub struct Authenticate {
    /// The peer's verifying key.
    pub key: VerifyingKey,
    /// ML-DSA-65 signature over [`Authenticate::signing_bytes`] under [`AUTH_CONTEXT`].
    pub signature: Signature,
}

impl PartialEq for Authenticate {
    fn eq(&self, other: &Self) -> bool {
        self.key.as_bytes() == other.key.as_bytes() && self.signature == other.signature
    }
}

impl Eq for Authenticate {}

impl Authenticate {
    /// The bytes signed for `challenge` by the key with id `key`.
    pub fn signing_bytes(challenge: &[u8; CHALLENGE_LEN], key: &KeyId) -> Vec<u8> {
        let mut out = Vec::with_capacity(AUTH_DOMAIN.len() + CHALLENGE_LEN + 32);
        out.extend_from_slice(AUTH_DOMAIN);
        out.extend_from_slice(challenge);
        out.extend_from_slice(&key.0);
        out
    }

    /// Signs `challenge` with `signing_key` (whose public half is `verifying_key`);
    /// `randomness` is the FIPS 204 hedging input.
    pub fn sign(
        challenge: &[u8; CHALLENGE_LEN],
        signing_key: &SigningKey,
        verifying_key: &VerifyingKey,
        randomness: &[u8; 32],
    ) -> Result<Self, Error> {
        let msg = Self::signing_bytes(challenge, &KeyId::of(verifying_key));
        let signature = signing_key
            .sign(&msg, AUTH_CONTEXT, randomness)
            .map_err(|source| Error::Signature {
                what: "connection authentication signing",
                source,
            })?;
        Ok(Self {
            key: verifying_key.clone(),
            signature,
        })
    }

    /// Checks the signature against `challenge` (the verifier's own view of the connection).
    pub fn verify(&self, challenge: &[u8; CHALLENGE_LEN]) -> Result<(), Error> {
        let msg = Self::signing_bytes(challenge, &KeyId::of(&self.key));
        self.key
            .verify(&msg, AUTH_CONTEXT, &self.signature)
            .map_err(|source| Error::Signature {
                what: "connection authentication signature",
                source,
            })
    }
}

impl Message for Authenticate {
    const FAMILY: &'static str = "authentication request";

    fn kind(&self) -> u16 {
        kinds::AUTHENTICATE
    }

    fn name(&self) -> &'static str {
        "Authenticate"
    }

    fn encode_body(&self, w: &mut Writer, _limits: &Limits) -> Result<(), Error> {
        w.put_raw(self.key.as_bytes())
            .put_raw(self.signature.as_bytes());
        Ok(())
    }

    fn decode_body(kind: u16, body: &[u8], _limits: &Limits) -> Result<Self, Error> {
        if kind != kinds::AUTHENTICATE {
            return Err(Error::UnknownKind {
                family: Self::FAMILY,
                kind,
            });
        }
        strict("Authenticate", body, |r| {
            let enc = || Error::encoding("Authenticate");
            let key = VerifyingKey::from_bytes(
                r.take("authentication key", mldsa65::VERIFYING_KEY_LEN)
                    .map_err(enc())?,
            )
            .map_err(enc())?;
            let signature = Signature::from_bytes(
                r.take("authentication signature", SIGNATURE_LEN)
                    .map_err(enc())?,
            )
            .map_err(enc())?;
            Ok(Self { key, signature })
        })
    }
}
