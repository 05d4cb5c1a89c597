//! Sealed transactions: ML-KEM-768 + SHAKE-256 KDF + ChaCha20-Poly1305.
//!
//! Wire formats. Version 1 ([`TX_FORMAT_VERSION`]) names no key:
//!
//! ```text
//! version u8 = 1 || kem_ciphertext [1088] || nonce [12] || sealed_payload (payload || tag [16])
//! ```
//!
//! Version 2 ([`TX_FORMAT_VERSION_KEYED`]) names the encapsulation key it was sealed to, so a
//! shard can hold several active keys while they rotate ([`KeyId`]: the first 8 bytes of
//! SHA3-256 of the encapsulation key):
//!
//! ```text
//! version u8 = 2 || key_id [8] || kem_ciphertext [1088] || nonce [12] || sealed_payload
//! ```
//!
//! Both parse; [`seal_transaction`] writes version 1 (its bytes are unchanged) and
//! [`seal_transaction_keyed`] version 2.
//!
//! The sealed payload runs to the end of the encoding (the enclosing frame gives the length); it
//! holds at most [`MAX_PAYLOAD_LEN`] payload bytes, checked before anything is allocated.
//!
//! Keys and binding:
//!
//! - `ss = ML-KEM-768.Encaps(ek)`, `(ct, ss)` fresh for every transaction;
//! - `key = KDF("EPA-v1/seal/key", ss, ct, u8(version), u32le(shard), u64le(batch))`
//!   (see [`crate::kdf`]);
//! - `aad = "EPA-v1/seal/aad" || u8(version) || u32le(shard) || u64le(batch) || ct`, followed
//!   by `key_id` in version 2 (so a changed key id fails to open);
//! - `sealed = ChaCha20-Poly1305(key, nonce, aad, payload)`.
//!
//! A transaction moved to another shard or batch, a changed version byte, ciphertext, nonce or
//! sealed byte all fail to open with [`Error::OpenFailed`].
//!
//! Opening in two steps suits batch work: decapsulate every ciphertext in bulk (CPU SIMD or GPU,
//! see the kernels crate), then [`open_with_shared_secret`] each transaction.
//!
//! ```
//! use epa_crypto::kem::mlkem768;
//! use epa_crypto::seal::{open_transaction, seal_transaction, EncryptedTx, TxContext};
//!
//! let pair = mlkem768::KeyPair::from_seed(&[9u8; 64]);
//! let ctx = TxContext { shard: 4, batch: 17 };
//! let tx = seal_transaction(&pair.encapsulation_key, b"transfer 5", &ctx, &mut rand::rngs::OsRng).unwrap();
//! let wire = tx.to_bytes();
//! let parsed = EncryptedTx::from_bytes(&wire).unwrap();
//! assert_eq!(&open_transaction(&pair.decapsulation_key, &parsed, &ctx).unwrap()[..], b"transfer 5");
//! ```

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::Error;
use crate::encoding::Reader;
use crate::kdf::Kdf;
use crate::kem::{ENCAPS_RANDOMNESS_LEN, SharedSecret, mlkem768};

/// The format version without a key id (written by [`seal_transaction`], always read).
pub const TX_FORMAT_VERSION: u8 = 1;
/// The format version that names its key ([`KeyId`]) for rotation.
pub const TX_FORMAT_VERSION_KEYED: u8 = 2;
/// Bytes of a [`KeyId`].
pub const KEY_ID_LEN: usize = 8;
/// Bytes of the AEAD nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of the AEAD tag.
pub const TAG_LEN: usize = 16;
/// Largest payload a transaction may carry.
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024;
/// Bytes of an encrypted transaction before its sealed payload.
pub const HEADER_LEN: usize = 1 + mlkem768::CIPHERTEXT_LEN + NONCE_LEN;
/// Smallest encrypted transaction (empty payload).
pub const MIN_ENCODED_LEN: usize = HEADER_LEN + TAG_LEN;
/// Largest encrypted transaction (version 1).
pub const MAX_ENCODED_LEN: usize = HEADER_LEN + MAX_PAYLOAD_LEN + TAG_LEN;
/// Bytes of a version 2 transaction before its sealed payload.
pub const HEADER_LEN_KEYED: usize = HEADER_LEN + KEY_ID_LEN;
/// Largest encrypted transaction of version 2.
pub const MAX_ENCODED_LEN_KEYED: usize = MAX_ENCODED_LEN + KEY_ID_LEN;

/// Names an ML-KEM-768 encapsulation key: the first 8 bytes of SHA3-256 of its encoding.
/// Public (it is derived from the public key), stable, and what `epa keys generate` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl KeyId {
    /// The id of `ek`.
    pub fn of(ek: &mlkem768::EncapsulationKey) -> Self {
        use sha3::Digest;
        let digest = sha3::Sha3_256::digest(ek.as_bytes());
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Self(id)
    }

    /// The id of the encapsulation key that belongs to `dk`.
    pub fn of_decapsulation_key(dk: &mlkem768::DecapsulationKey) -> Self {
        Self::of(&dk.encapsulation_key())
    }
}

impl core::fmt::Display for KeyId {
    /// Lower-case hex, 16 digits.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// KDF label of the payload key.
pub const KEY_LABEL: &[u8] = b"EPA-v1/seal/key";
/// Prefix of the associated data.
pub const AAD_LABEL: &[u8] = b"EPA-v1/seal/aad";

/// What a transaction is bound to: opening under another context fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxContext {
    /// Shard the transaction is for.
    pub shard: u32,
    /// Batch the transaction belongs to.
    pub batch: u64,
}

/// The randomness one sealing consumes. Zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SealRandomness {
    /// FIPS 203 encapsulation randomness `m`.
    pub encaps: [u8; ENCAPS_RANDOMNESS_LEN],
    /// AEAD nonce (public once sealed; unique per key is enough, and every key is fresh).
    pub nonce: [u8; NONCE_LEN],
}

impl SealRandomness {
    /// Draws both values from `rng`.
    pub fn generate(rng: &mut (impl CryptoRng + RngCore)) -> Result<Self, Error> {
        let mut r = Self {
            encaps: [0; ENCAPS_RANDOMNESS_LEN],
            nonce: [0; NONCE_LEN],
        };
        rng.try_fill_bytes(&mut r.encaps)
            .and_then(|()| rng.try_fill_bytes(&mut r.nonce))
            .map_err(|_| Error::RandomnessUnavailable)?;
        Ok(r)
    }
}

impl core::fmt::Debug for SealRandomness {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SealRandomness(<redacted>)")
    }
}

/// An encrypted transaction (format version 1, or 2 when it names its key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedTx {
    key_id: Option<KeyId>,
    kem_ciphertext: mlkem768::Ciphertext,
    nonce: [u8; NONCE_LEN],
    sealed: Vec<u8>,
}

impl EncryptedTx {
    /// The key the transaction was sealed to (format version 2), `None` for version 1.
    pub fn key_id(&self) -> Option<KeyId> {
        self.key_id
    }

    /// The format version: [`TX_FORMAT_VERSION`] or [`TX_FORMAT_VERSION_KEYED`].
    pub fn version(&self) -> u8 {
        version_of(self.key_id.as_ref())
    }

    /// The ML-KEM-768 ciphertext (what the batch decapsulation stage consumes).
    pub fn kem_ciphertext(&self) -> &mlkem768::Ciphertext {
        &self.kem_ciphertext
    }

    /// The AEAD nonce.
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// The sealed payload: ciphertext then 16-byte tag.
    pub fn sealed_payload(&self) -> &[u8] {
        &self.sealed
    }

    /// Length of the plaintext payload.
    pub fn payload_len(&self) -> usize {
        self.sealed.len() - TAG_LEN
    }

    /// Length of [`Self::to_bytes`].
    pub fn encoded_len(&self) -> usize {
        let id = if self.key_id.is_some() { KEY_ID_LEN } else { 0 };
        HEADER_LEN + id + self.sealed.len()
    }

    /// The canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(self.version());
        if let Some(id) = &self.key_id {
            out.extend_from_slice(&id.0);
        }
        out.extend_from_slice(self.kem_ciphertext.as_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.sealed);
        out
    }

    /// Parses the canonical encoding, strictly: known version, at least a header and a tag, at
    /// most [`MAX_ENCODED_LEN`] bytes ([`MAX_ENCODED_LEN_KEYED`] for version 2), checked before
    /// allocating.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let version = r.u8("encrypted transaction version")?;
        let max = match version {
            TX_FORMAT_VERSION => MAX_ENCODED_LEN,
            TX_FORMAT_VERSION_KEYED => MAX_ENCODED_LEN_KEYED,
            _ => {
                return Err(Error::UnsupportedVersion {
                    what: "encrypted transaction",
                    version: u16::from(version),
                    min: u16::from(TX_FORMAT_VERSION),
                    max: u16::from(TX_FORMAT_VERSION_KEYED),
                });
            }
        };
        if bytes.len() > max {
            return Err(Error::TooLong {
                what: "encrypted transaction",
                len: bytes.len() as u64,
                max: max as u64,
            });
        }
        let key_id = if version == TX_FORMAT_VERSION_KEYED {
            Some(KeyId(r.array("encrypted transaction key id")?))
        } else {
            None
        };
        let kem_ciphertext = mlkem768::Ciphertext::from_bytes(r.take(
            "encrypted transaction KEM ciphertext",
            mlkem768::CIPHERTEXT_LEN,
        )?)?;
        let nonce = r.array("encrypted transaction nonce")?;
        // The tag is part of the sealed payload: require it before taking the rest.
        r.clone().take("encrypted transaction tag", TAG_LEN)?;
        let sealed = r.rest().to_vec();
        Ok(Self {
            key_id,
            kem_ciphertext,
            nonce,
            sealed,
        })
    }
}

fn version_of(key_id: Option<&KeyId>) -> u8 {
    if key_id.is_some() {
        TX_FORMAT_VERSION_KEYED
    } else {
        TX_FORMAT_VERSION
    }
}

fn payload_key(
    ss: &SharedSecret,
    ct: &mlkem768::Ciphertext,
    ctx: &TxContext,
    key_id: Option<&KeyId>,
) -> Zeroizing<[u8; 32]> {
    Kdf::new(KEY_LABEL)
        .input(ss.as_bytes())
        .input(ct.as_bytes())
        .input(&[version_of(key_id)])
        .input(&ctx.shard.to_le_bytes())
        .input(&ctx.batch.to_le_bytes())
        .derive_array()
}

fn aad(ct: &mlkem768::Ciphertext, ctx: &TxContext, key_id: Option<&KeyId>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 13 + mlkem768::CIPHERTEXT_LEN + KEY_ID_LEN);
    aad.extend_from_slice(AAD_LABEL);
    aad.push(version_of(key_id));
    aad.extend_from_slice(&ctx.shard.to_le_bytes());
    aad.extend_from_slice(&ctx.batch.to_le_bytes());
    aad.extend_from_slice(ct.as_bytes());
    if let Some(id) = key_id {
        aad.extend_from_slice(&id.0);
    }
    aad
}

fn check_payload_len(len: usize) -> Result<(), Error> {
    if len > MAX_PAYLOAD_LEN {
        Err(Error::TooLong {
            what: "transaction payload",
            len: len as u64,
            max: MAX_PAYLOAD_LEN as u64,
        })
    } else {
        Ok(())
    }
}

/// Seals `payload` for the holder of `ek` under `ctx`, with explicit randomness.
pub fn seal_transaction_with_randomness(
    ek: &mlkem768::EncapsulationKey,
    payload: &[u8],
    ctx: &TxContext,
    randomness: &SealRandomness,
) -> Result<EncryptedTx, Error> {
    check_payload_len(payload.len())?;
    let (kem_ciphertext, ss) = ek.encapsulate(&randomness.encaps);
    seal_with_shared_secret(&ss, kem_ciphertext, randomness.nonce, payload, ctx)
}

/// Seals `payload` for the holder of `ek` under `ctx`, with randomness from `rng`.
pub fn seal_transaction(
    ek: &mlkem768::EncapsulationKey,
    payload: &[u8],
    ctx: &TxContext,
    rng: &mut (impl CryptoRng + RngCore),
) -> Result<EncryptedTx, Error> {
    seal_transaction_with_randomness(ek, payload, ctx, &SealRandomness::generate(rng)?)
}

/// Seals `payload` for the holder of `ek` under `ctx` in format version 2, naming the key
/// ([`KeyId::of`]`(ek)`), with explicit randomness.
pub fn seal_transaction_keyed_with_randomness(
    ek: &mlkem768::EncapsulationKey,
    payload: &[u8],
    ctx: &TxContext,
    randomness: &SealRandomness,
) -> Result<EncryptedTx, Error> {
    check_payload_len(payload.len())?;
    let (kem_ciphertext, ss) = ek.encapsulate(&randomness.encaps);
    seal_inner(
        &ss,
        kem_ciphertext,
        randomness.nonce,
        payload,
        ctx,
        Some(KeyId::of(ek)),
    )
}

/// Seals `payload` for the holder of `ek` under `ctx` in format version 2 (the transaction
/// names its key, so the receiver picks the right one while keys rotate), with randomness
/// from `rng`.
pub fn seal_transaction_keyed(
    ek: &mlkem768::EncapsulationKey,
    payload: &[u8],
    ctx: &TxContext,
    rng: &mut (impl CryptoRng + RngCore),
) -> Result<EncryptedTx, Error> {
    seal_transaction_keyed_with_randomness(ek, payload, ctx, &SealRandomness::generate(rng)?)
}

/// Seals `payload` under an already encapsulated `(kem_ciphertext, ss)` pair (for example one
/// from [`crate::detenc::encapsulate`]). `ss` must be fresh: never seal twice under one pair.
pub fn seal_with_shared_secret(
    ss: &SharedSecret,
    kem_ciphertext: mlkem768::Ciphertext,
    nonce: [u8; NONCE_LEN],
    payload: &[u8],
    ctx: &TxContext,
) -> Result<EncryptedTx, Error> {
    seal_inner(ss, kem_ciphertext, nonce, payload, ctx, None)
}

fn seal_inner(
    ss: &SharedSecret,
    kem_ciphertext: mlkem768::Ciphertext,
    nonce: [u8; NONCE_LEN],
    payload: &[u8],
    ctx: &TxContext,
    key_id: Option<KeyId>,
) -> Result<EncryptedTx, Error> {
    check_payload_len(payload.len())?;
    let key = payload_key(ss, &kem_ciphertext, ctx, key_id.as_ref());
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key[..]));
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: payload,
                aad: &aad(&kem_ciphertext, ctx, key_id.as_ref()),
            },
        )
        .map_err(|_| Error::TooLong {
            what: "transaction payload",
            len: payload.len() as u64,
            max: MAX_PAYLOAD_LEN as u64,
        })?;
    Ok(EncryptedTx {
        key_id,
        kem_ciphertext,
        nonce,
        sealed,
    })
}

/// Opens `tx` with the shared secret of its KEM ciphertext (decapsulated earlier, possibly in a
/// batch on another device).
pub fn open_with_shared_secret(
    ss: &SharedSecret,
    tx: &EncryptedTx,
    ctx: &TxContext,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let key = payload_key(ss, &tx.kem_ciphertext, ctx, tx.key_id.as_ref());
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key[..]));
    cipher
        .decrypt(
            Nonce::from_slice(&tx.nonce),
            Payload {
                msg: &tx.sealed,
                aad: &aad(&tx.kem_ciphertext, ctx, tx.key_id.as_ref()),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| Error::OpenFailed)
}

/// Decapsulates and opens `tx` under `ctx`.
pub fn open_transaction(
    dk: &mlkem768::DecapsulationKey,
    tx: &EncryptedTx,
    ctx: &TxContext,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let ss = dk.decapsulate(&tx.kem_ciphertext);
    open_with_shared_secret(&ss, tx, ctx)
}
