//! Sealed transactions: ML-KEM-768 + SHAKE-256 KDF + ChaCha20-Poly1305.
//!
//! Wire format, version 1 ([`TX_FORMAT_VERSION`]):
//!
//! ```text
//! version u8 || kem_ciphertext [1088] || nonce [12] || sealed_payload (payload || tag [16])
//! ```
//!
//! The sealed payload runs to the end of the encoding (the enclosing frame gives the length); it
//! holds at most [`MAX_PAYLOAD_LEN`] payload bytes, checked before anything is allocated.
//!
//! Keys and binding:
//!
//! - `ss = ML-KEM-768.Encaps(ek)`, `(ct, ss)` fresh for every transaction;
//! - `key = KDF("EPA-v1/seal/key", ss, ct, u8(version), u32le(shard), u64le(batch))`
//!   (see [`crate::kdf`]);
//! - `aad = "EPA-v1/seal/aad" || u8(version) || u32le(shard) || u64le(batch) || ct`;
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

/// The format version this build writes and reads.
pub const TX_FORMAT_VERSION: u8 = 1;
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
/// Largest encrypted transaction.
pub const MAX_ENCODED_LEN: usize = HEADER_LEN + MAX_PAYLOAD_LEN + TAG_LEN;

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

/// An encrypted transaction (format version 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedTx {
    kem_ciphertext: mlkem768::Ciphertext,
    nonce: [u8; NONCE_LEN],
    sealed: Vec<u8>,
}

impl EncryptedTx {
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
        HEADER_LEN + self.sealed.len()
    }

    /// The canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(TX_FORMAT_VERSION);
        out.extend_from_slice(self.kem_ciphertext.as_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.sealed);
        out
    }

    /// Parses the canonical encoding, strictly: known version, at least a header and a tag, at
    /// most [`MAX_ENCODED_LEN`] bytes (checked before allocating).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let version = r.u8("encrypted transaction version")?;
        if version != TX_FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "encrypted transaction",
                version: u16::from(version),
                min: u16::from(TX_FORMAT_VERSION),
                max: u16::from(TX_FORMAT_VERSION),
            });
        }
        if bytes.len() > MAX_ENCODED_LEN {
            return Err(Error::TooLong {
                what: "encrypted transaction",
                len: bytes.len() as u64,
                max: MAX_ENCODED_LEN as u64,
            });
        }
        let kem_ciphertext = mlkem768::Ciphertext::from_bytes(r.take(
            "encrypted transaction KEM ciphertext",
            mlkem768::CIPHERTEXT_LEN,
        )?)?;
        let nonce = r.array("encrypted transaction nonce")?;
        // The tag is part of the sealed payload: require it before taking the rest.
        r.clone().take("encrypted transaction tag", TAG_LEN)?;
        let sealed = r.rest().to_vec();
        Ok(Self {
            kem_ciphertext,
            nonce,
            sealed,
        })
    }
}

fn payload_key(
    ss: &SharedSecret,
    ct: &mlkem768::Ciphertext,
    ctx: &TxContext,
) -> Zeroizing<[u8; 32]> {
    Kdf::new(KEY_LABEL)
        .input(ss.as_bytes())
        .input(ct.as_bytes())
        .input(&[TX_FORMAT_VERSION])
        .input(&ctx.shard.to_le_bytes())
        .input(&ctx.batch.to_le_bytes())
        .derive_array()
}

fn aad(ct: &mlkem768::Ciphertext, ctx: &TxContext) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 13 + mlkem768::CIPHERTEXT_LEN);
    aad.extend_from_slice(AAD_LABEL);
    aad.push(TX_FORMAT_VERSION);
    aad.extend_from_slice(&ctx.shard.to_le_bytes());
    aad.extend_from_slice(&ctx.batch.to_le_bytes());
    aad.extend_from_slice(ct.as_bytes());
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

/// Seals `payload` under an already encapsulated `(kem_ciphertext, ss)` pair (for example one
/// from [`crate::detenc::encapsulate`]). `ss` must be fresh: never seal twice under one pair.
pub fn seal_with_shared_secret(
    ss: &SharedSecret,
    kem_ciphertext: mlkem768::Ciphertext,
    nonce: [u8; NONCE_LEN],
    payload: &[u8],
    ctx: &TxContext,
) -> Result<EncryptedTx, Error> {
    check_payload_len(payload.len())?;
    let key = payload_key(ss, &kem_ciphertext, ctx);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key[..]));
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: payload,
                aad: &aad(&kem_ciphertext, ctx),
            },
        )
        .map_err(|_| Error::TooLong {
            what: "transaction payload",
            len: payload.len() as u64,
            max: MAX_PAYLOAD_LEN as u64,
        })?;
    Ok(EncryptedTx {
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
    let key = payload_key(ss, &tx.kem_ciphertext, ctx);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key[..]));
    cipher
        .decrypt(
            Nonce::from_slice(&tx.nonce),
            Payload {
                msg: &tx.sealed,
                aad: &aad(&tx.kem_ciphertext, ctx),
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
