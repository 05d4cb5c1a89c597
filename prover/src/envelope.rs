//! The versioned proof envelope and its verification.
//!
//! # Format (version 1, all integers little-endian)
//!
//! | field            | size            | meaning                                                   |
//! |------------------|-----------------|-----------------------------------------------------------|
//! | magic            | 8               | `EPAPROOF`                                                |
//! | version          | 2 (u16)         | [`ENVELOPE_VERSION`]                                      |
//! | air id           | 1               | [`AirId::wire_id`]: 1 = `smt-update`, 2 = `rescue-chain`  |
//! | hash id          | 1               | [`HashId::wire_id`]: 1 = `blake3-256`, 2 = `rp64-256`     |
//! | options kind     | 1               | 0 = explicit, else [`Preset::wire_id`]                    |
//! | explicit options | 6 if kind = 0   | queries, blowup, grinding, extension, FRI folding, FRI remainder degree |
//! | public inputs    | 4 (u32) + len   | the AIR's canonical public-input bytes, len ≤ [`MAX_PUBLIC_INPUTS_LEN`] |
//! | proof            | 4 (u32) + len   | winterfell `Proof::to_bytes`, len ≤ [`MAX_PROOF_LEN`]     |
//!
//! Nothing may follow the proof. Every length is checked against its limit and against the
//! bytes that remain before anything is allocated.
//!
//! # Verification
//!
//! [`verify_envelope`] decodes the envelope, decodes the public inputs with the AIR's strict
//! decoder, then checks the *shape* of the winterfell proof bytes before winterfell parses them
//! (trace width and length implied by the statement, Goldilocks modulus, exactly the envelope's
//! options, every length field within the remaining bytes, no trailing bytes): winterfell's own
//! decoder panics or allocates unbounded memory on some malformed inputs, which the shape check
//! rules out. It then runs the stock `winterfell::verify` with the envelope's options as the only
//! acceptable option set. As a last resort, a panic inside winterfell on data that passed the
//! shape check is caught and reported as [`Error::VerifierPanicked`].

use winter_math::StarkField;
use winter_math::fields::f64::BaseElement;
use winter_utils::Serializable;
use winterfell::ProofOptions;

use crate::Error;
use crate::options::{HashId, OptionsChoice, Preset, ProofParams};
use crate::registry::{self, AirId, Statement};

/// The magic bytes every envelope starts with.
pub const MAGIC: [u8; 8] = *b"EPAPROOF";
/// The envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u16 = 1;
/// Largest accepted public-input encoding.
pub const MAX_PUBLIC_INPUTS_LEN: usize = 64 * 1024;
/// Largest accepted winterfell proof.
pub const MAX_PROOF_LEN: usize = 4 * 1024 * 1024;
/// Largest accepted envelope: header, explicit options and both maximal payloads.
pub const MAX_ENVELOPE_LEN: usize = 8 + 2 + 3 + 6 + 4 + MAX_PUBLIC_INPUTS_LEN + 4 + MAX_PROOF_LEN;
/// Largest trace (log2 of rows) a proof may claim; bounds the verifier's work.
pub const MAX_LOG_TRACE_LENGTH: u8 = 24;

/// A decoded (not yet verified) proof envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofEnvelope {
    /// Which AIR the proof is for.
    pub air: AirId,
    /// The commitment hash.
    pub hash: HashId,
    /// The proof options (a preset or explicit parameters).
    pub options: OptionsChoice,
    /// The AIR's canonical public-input bytes.
    pub public_inputs: Vec<u8>,
    /// Winterfell's proof bytes.
    pub proof: Vec<u8>,
}

/// What a successfully verified envelope proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedStatement {
    /// The AIR.
    pub air: AirId,
    /// The commitment hash.
    pub hash: HashId,
    /// The options the proof was made with.
    pub options: OptionsChoice,
    /// Conjectured security of the proof in bits (winterfell's estimate).
    pub conjectured_bits: u32,
    /// The decoded public inputs: the statement itself.
    pub statement: Statement,
    /// Size of the winterfell proof in bytes.
    pub proof_len: usize,
    /// Rows of the proved execution trace.
    pub trace_length: usize,
    /// Columns of the proved execution trace.
    pub trace_width: usize,
}

impl ProofEnvelope {
    /// Canonical encoding (see the module docs).
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        if self.public_inputs.len() > MAX_PUBLIC_INPUTS_LEN {
            return Err(too_large(
                "public inputs",
                self.public_inputs.len(),
                MAX_PUBLIC_INPUTS_LEN,
            ));
        }
        if self.proof.len() > MAX_PROOF_LEN {
            return Err(too_large("proof", self.proof.len(), MAX_PROOF_LEN));
        }
        let mut out = Vec::with_capacity(32 + self.public_inputs.len() + self.proof.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&ENVELOPE_VERSION.to_le_bytes());
        out.push(self.air.wire_id());
        out.push(self.hash.wire_id());
        match self.options {
            OptionsChoice::Preset(p) => out.push(p.wire_id()),
            OptionsChoice::Explicit(p) => {
                p.validate()?;
                out.push(0);
                out.extend_from_slice(&[
                    p.num_queries,
                    p.blowup_factor,
                    p.grinding_factor,
                    p.field_extension,
                    p.fri_folding_factor,
                    p.fri_remainder_max_degree,
                ]);
            }
        }
        // Lengths fit in u32: both are bounded by the limits checked above.
        out.extend_from_slice(&(self.public_inputs.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.public_inputs);
        out.extend_from_slice(&(self.proof.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.proof);
        Ok(out)
    }

    /// Strict decoding: magic, version, known ids, valid options, bounded lengths, no trailing
    /// bytes. Never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(too_large("proof envelope", bytes.len(), MAX_ENVELOPE_LEN));
        }
        let mut r = Cursor::new(bytes);
        let magic = r.take("envelope magic", MAGIC.len())?;
        if magic != MAGIC {
            return Err(Error::BadMagic {
                found: magic.to_vec(),
            });
        }
        let version = r.u16("envelope version")?;
        if version != ENVELOPE_VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: ENVELOPE_VERSION,
            });
        }
        let air = AirId::from_wire_id(r.u8("air id")?)?;
        let hash = HashId::from_wire_id(r.u8("hash id")?)?;
        let options = match r.u8("options kind")? {
            0 => {
                let f = r.take("explicit options", 6)?;
                let p = ProofParams {
                    num_queries: f[0],
                    blowup_factor: f[1],
                    grinding_factor: f[2],
                    field_extension: f[3],
                    fri_folding_factor: f[4],
                    fri_remainder_max_degree: f[5],
                };
                p.validate()?;
                OptionsChoice::Explicit(p)
            }
            id => OptionsChoice::Preset(Preset::from_wire_id(id)?),
        };
        let public_inputs = r
            .len_prefixed("public inputs", MAX_PUBLIC_INPUTS_LEN)?
            .to_vec();
        let proof = r.len_prefixed("proof", MAX_PROOF_LEN)?.to_vec();
        r.finish("proof envelope")?;
        Ok(ProofEnvelope {
            air,
            hash,
            options,
            public_inputs,
            proof,
        })
    }
}

/// Decodes and verifies an envelope with the stock winterfell verifier.
///
/// Returns the verified statement, or a typed error for any defect; never panics on any input.
pub fn verify_envelope(bytes: &[u8]) -> Result<VerifiedStatement, Error> {
    let envelope = ProofEnvelope::from_bytes(bytes)?;
    registry::verify(&envelope)
}

/// Like [`verify_envelope`], and additionally requires at least `min_bits` of conjectured
/// security (a verifier's policy: a valid proof with weak explicit options is refused).
pub fn verify_envelope_min_security(
    bytes: &[u8],
    min_bits: u32,
) -> Result<VerifiedStatement, Error> {
    let envelope = ProofEnvelope::from_bytes(bytes)?;
    let params = envelope.options.params();
    let bits = params.conjectured_bits(128);
    if bits < min_bits {
        return Err(Error::InsufficientSecurity { bits, min_bits });
    }
    registry::verify(&envelope)
}

/// What the statement implies about the proof: checked before winterfell parses the proof.
#[derive(Debug, Clone)]
pub(crate) struct ExpectedShape {
    /// The AIR name, for errors.
    pub air: &'static str,
    /// Main trace width.
    pub width: usize,
    /// Trace length (rows), a power of two.
    pub trace_length: usize,
    /// The options the proof must carry.
    pub options: ProofOptions,
}

/// Walks winterfell 0.13's proof serialisation without allocating, checking every field that
/// winterfell's decoder would trust (see the module docs).
pub(crate) fn check_proof_shape(proof: &[u8], expected: &ExpectedShape) -> Result<(), Error> {
    let air = expected.air;
    let bad = |reason: String| Error::MalformedProof { air, reason };
    let mut r = Cursor::new(proof);

    // Context: trace info.
    let width = r.u8("trace width")?;
    if usize::from(width) != expected.width {
        return Err(bad(format!(
            "trace width {width}, expected {}",
            expected.width
        )));
    }
    let aux_width = r.u8("aux trace width")?;
    let aux_rands = r.u8("aux random elements")?;
    if aux_width != 0 || aux_rands != 0 {
        return Err(bad(
            "an auxiliary trace segment, which this AIR does not have".into(),
        ));
    }
    let log_len = r.u8("trace length")?;
    if log_len > MAX_LOG_TRACE_LENGTH || (1usize << log_len) != expected.trace_length {
        return Err(bad(format!(
            "trace length 2^{log_len}, expected {} rows",
            expected.trace_length
        )));
    }
    let meta_len = r.u16("trace metadata length")?;
    if meta_len != 0 {
        return Err(bad(format!(
            "{meta_len} bytes of trace metadata, expected none"
        )));
    }
    // Context: field modulus.
    let modulus_len = r.u8("field modulus length")?;
    let modulus = r.take("field modulus", usize::from(modulus_len))?;
    if modulus != BaseElement::MODULUS.to_le_bytes() {
        return Err(bad("the field is not Goldilocks".into()));
    }
    // Context: options must be exactly the envelope's.
    let options = expected.options.to_bytes();
    if r.take("proof options", options.len())? != options.as_slice() {
        return Err(bad(
            "the proof's options differ from the envelope's options".into(),
        ));
    }
    r.vint("number of constraints")?;
    // Proof body.
    let unique_queries = r.u8("number of unique queries")?;
    if unique_queries == 0 || usize::from(unique_queries) > expected.options.num_queries() {
        return Err(bad(format!("{unique_queries} unique queries")));
    }
    r.u16_prefixed("commitments")?;
    // Merkle openings are over the LDE domain: depth log2(trace length · blowup).
    let lde_depth = u32::from(log_len) + expected.options.blowup_factor().ilog2();
    // One trace segment, then the constraint queries: values and paths, vint-prefixed.
    for (values, paths) in [
        ("trace query values", "trace query paths"),
        ("constraint query values", "constraint query paths"),
    ] {
        let len = r.vint(values)?;
        r.take(values, len)?;
        let len = r.vint(paths)?;
        check_multiproof(r.take(paths, len)?, lde_depth, &bad)?;
    }
    // winterfell's `OodFrame::parse` asserts (panics) that each frame starts with its frame
    // size, 2 (current and next row): check it here so such a proof is a typed error.
    for what in [
        "out-of-domain trace states",
        "out-of-domain quotient states",
    ] {
        let frame = r.u16_prefixed(what)?;
        if frame.first() != Some(&OOD_FRAME_SIZE) {
            return Err(bad(format!(
                "{what} do not start with the frame size {OOD_FRAME_SIZE}"
            )));
        }
    }
    let layers = r.u8("FRI layer count")?;
    let fold_bits = expected.options.to_fri_options().folding_factor().ilog2();
    for i in 0..u32::from(layers) {
        let values = r.u32("FRI layer values length")?;
        if values == 0 {
            return Err(bad("an empty FRI layer".into()));
        }
        r.take("FRI layer values", values as usize)?;
        let paths = r.u32("FRI layer paths length")?;
        let paths = r.take("FRI layer paths", paths as usize)?;
        let depth = lde_depth
            .checked_sub((i + 1) * fold_bits)
            .ok_or_else(|| bad(format!("{layers} FRI layers exceed the domain")))?;
        check_multiproof(paths, depth, &bad)?;
    }
    r.u16_prefixed("FRI remainder")?;
    r.u8("FRI partitions")?;
    r.u64("proof-of-work nonce")?;
    r.finish("winterfell proof")
}

/// Rows in an out-of-domain frame (current and next), the first byte of each serialized frame.
const OOD_FRAME_SIZE: u8 = 2;

/// Serialized size of a digest of both supported hashes (`Blake3_256`: 32 bytes; `Rp64_256`:
/// 4 × 8 bytes).
const DIGEST_BYTES: usize = 32;

/// Checks a serialized winterfell `BatchMerkleProof`: the expected depth (winterfell computes
/// `1 << depth` unchecked), and every count within the bytes that remain (winterfell allocates
/// the claimed count before reading).
fn check_multiproof(blob: &[u8], depth: u32, bad: &dyn Fn(String) -> Error) -> Result<(), Error> {
    let mut r = Cursor::new(blob);
    let found = r.u8("Merkle proof depth")?;
    if u32::from(found) != depth {
        return Err(bad(format!("Merkle proof depth {found}, expected {depth}")));
    }
    let vectors = r.vint("Merkle proof node vectors")?;
    if vectors > r.buf.len() {
        return Err(bad(format!(
            "{vectors} Merkle node vectors in {} bytes",
            r.buf.len()
        )));
    }
    for _ in 0..vectors {
        let nodes = r.vint("Merkle proof nodes")?;
        if nodes > depth as usize {
            return Err(bad(format!(
                "{nodes} Merkle nodes on a path of depth {depth}"
            )));
        }
        r.take("Merkle proof nodes", nodes * DIGEST_BYTES)?;
    }
    r.finish("Merkle proof")
}

fn too_large(what: &'static str, len: usize, max: usize) -> Error {
    Error::TooLarge {
        what,
        len: len as u64,
        max: max as u64,
    }
}

/// A bounds-checked reader over a byte slice; every read returns a typed error when short.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf }
    }

    fn take(&mut self, what: &'static str, n: usize) -> Result<&'a [u8], Error> {
        if n > self.buf.len() {
            return Err(Error::Truncated {
                what,
                needed: n as u64,
                remaining: self.buf.len() as u64,
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(what, N)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A u32 length (≤ `max`) followed by that many bytes.
    fn len_prefixed(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], Error> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(too_large(what, len, max));
        }
        self.take(what, len)
    }

    /// A u16 length followed by that many bytes.
    fn u16_prefixed(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let len = self.u16(what)?;
        self.take(what, usize::from(len))
    }

    /// Winterfell's variable-length `usize` (the count of trailing zeros of the first byte plus
    /// one is the length in bytes; 9 bytes for a full u64). The value is bounded by the bytes
    /// that remain, since every use is a length or a small count.
    fn vint(&mut self, what: &'static str) -> Result<usize, Error> {
        let first = *self.buf.first().ok_or(Error::Truncated {
            what,
            needed: 1,
            remaining: 0,
        })?;
        let len = first.trailing_zeros() as usize + 1;
        let value = if len == 9 {
            self.u8(what)?;
            self.u64(what)?
        } else {
            let mut enc = [0u8; 8];
            enc[..len].copy_from_slice(self.take(what, len)?);
            u64::from_le_bytes(enc) >> len
        };
        usize::try_from(value).map_err(|_| Error::TooLarge {
            what,
            len: value,
            max: usize::MAX as u64,
        })
    }

    fn finish(self, what: &'static str) -> Result<(), Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes {
                what,
                count: self.buf.len() as u64,
            })
        }
    }
}
