//! Deterministic ML-KEM encapsulation.
//!
//! Some producers must be able to re-create a transaction's ciphertext bit for bit (replays,
//! audits, test fixtures) without storing the encapsulation randomness. This adapter derives the
//! 32-byte FIPS 203 randomness `m` from a secret seed with a SHAKE-256 DRBG over
//! domain-separated, length-prefixed input (see [`crate::kdf`]):
//!
//! ```text
//! m = KDF("EPA-v1/detenc", seed, ek, u32le(shard), u64le(batch), u64le(tx_index), extra)
//! ```
//!
//! The encapsulation key is part of the input, so the same seed and context never reuse `m`
//! towards two recipients. The ciphertexts are ordinary FIPS 203 ciphertexts that any
//! implementation decapsulates. Security needs the seed to be secret, uniformly random, and each
//! `(ek, context)` to be used for one message only: reusing a context re-sends the same shared
//! secret.
//!
//! ```
//! use epa_crypto::detenc::{encapsulate, DetEncContext, DetEncSeed};
//! use epa_crypto::kem::{mlkem768, MlKem768};
//!
//! let pair = mlkem768::KeyPair::from_seed(&[7u8; 64]);
//! let seed = DetEncSeed::from_bytes([1u8; 32]);
//! let ctx = DetEncContext { shard: 3, batch: 9, tx_index: 0, extra: b"" };
//! let (ct, ss) = encapsulate::<MlKem768>(&pair.encapsulation_key, &seed, &ctx);
//! assert_eq!(pair.decapsulation_key.decapsulate(&ct), ss);
//! assert_eq!(encapsulate::<MlKem768>(&pair.encapsulation_key, &seed, &ctx).0, ct);
//! ```

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::kdf::Kdf;
use crate::kem::{ENCAPS_RANDOMNESS_LEN, MlKem, SharedSecret};

/// Domain label of the deterministic-encapsulation DRBG.
pub const DETENC_LABEL: &[u8] = b"EPA-v1/detenc";

/// Bytes of a deterministic-encapsulation seed.
pub const DETENC_SEED_LEN: usize = 32;

/// The secret seed of the DRBG. Zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DetEncSeed([u8; DETENC_SEED_LEN]);

impl DetEncSeed {
    /// Wraps 32 secret, uniformly random bytes.
    pub fn from_bytes(bytes: [u8; DETENC_SEED_LEN]) -> Self {
        Self(bytes)
    }

    /// The seed bytes.
    pub fn as_bytes(&self) -> &[u8; DETENC_SEED_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for DetEncSeed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DetEncSeed(<redacted>)")
    }
}

/// Where an encapsulation belongs: every field goes into the DRBG input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetEncContext<'a> {
    /// Shard the transaction is for.
    pub shard: u32,
    /// Batch the transaction is in.
    pub batch: u64,
    /// Position of the transaction in its batch.
    pub tx_index: u64,
    /// Any further caller-defined context (may be empty).
    pub extra: &'a [u8],
}

/// Derives the FIPS 203 encapsulation randomness `m` for `ek` and `context`.
pub fn encaps_randomness(
    seed: &DetEncSeed,
    encapsulation_key: &[u8],
    context: &DetEncContext<'_>,
) -> Zeroizing<[u8; ENCAPS_RANDOMNESS_LEN]> {
    Kdf::new(DETENC_LABEL)
        .input(seed.as_bytes())
        .input(encapsulation_key)
        .input(&context.shard.to_le_bytes())
        .input(&context.batch.to_le_bytes())
        .input(&context.tx_index.to_le_bytes())
        .input(context.extra)
        .derive_array()
}

/// Encapsulates to `ek` with randomness derived from `seed` and `context`: the same inputs give
/// the same ciphertext and shared secret.
pub fn encapsulate<K: MlKem>(
    ek: &K::EncapsulationKey,
    seed: &DetEncSeed,
    context: &DetEncContext<'_>,
) -> (K::Ciphertext, SharedSecret) {
    let m = encaps_randomness(seed, K::encapsulation_key_bytes(ek), context);
    K::encapsulate(ek, &m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kem::{MlKem768, MlKem1024, mlkem768, mlkem1024};
    use rand::{RngCore, rngs::OsRng};

    fn random<const N: usize>() -> [u8; N] {
        let mut out = [0u8; N];
        OsRng.fill_bytes(&mut out);
        out
    }

    #[test]
    fn deterministic_and_context_bound() {
        let pair = mlkem768::KeyPair::from_seed(&random());
        let seed = DetEncSeed::from_bytes(random());
        let ctx = DetEncContext {
            shard: 1,
            batch: 2,
            tx_index: 3,
            extra: b"x",
        };
        let ek = &pair.encapsulation_key;
        let (ct, ss) = encapsulate::<MlKem768>(ek, &seed, &ctx);
        let (ct2, ss2) = encapsulate::<MlKem768>(ek, &seed, &ctx);
        assert_eq!(ct, ct2);
        assert_eq!(ss, ss2);
        assert_eq!(pair.decapsulation_key.decapsulate(&ct), ss);
        // It is exactly encapsulation with the documented randomness.
        let m = encaps_randomness(&seed, ek.as_bytes(), &ctx);
        assert_eq!(ek.encapsulate(&m).0, ct);

        let variants = [
            DetEncContext { shard: 0, ..ctx },
            DetEncContext { batch: 0, ..ctx },
            DetEncContext { tx_index: 0, ..ctx },
            DetEncContext { extra: b"", ..ctx },
        ];
        for other in variants {
            assert_ne!(
                encapsulate::<MlKem768>(ek, &seed, &other).0,
                ct,
                "{other:?}"
            );
        }
        let other_seed = DetEncSeed::from_bytes(random());
        assert_ne!(encapsulate::<MlKem768>(ek, &other_seed, &ctx).0, ct);
        let other_pair = mlkem768::KeyPair::from_seed(&random());
        assert_ne!(
            *encaps_randomness(&seed, other_pair.encapsulation_key.as_bytes(), &ctx),
            *m
        );
    }

    #[test]
    fn works_for_1024() {
        let pair = mlkem1024::KeyPair::from_seed(&random());
        let seed = DetEncSeed::from_bytes(random());
        let ctx = DetEncContext {
            shard: 7,
            batch: u64::MAX,
            tx_index: 0,
            extra: &[],
        };
        let (ct, ss) = encapsulate::<MlKem1024>(&pair.encapsulation_key, &seed, &ctx);
        assert_eq!(pair.decapsulation_key.decapsulate(&ct), ss);
        assert_eq!(
            format!("{seed:?}"),
            "DetEncSeed(<redacted>)",
            "the seed never prints"
        );
    }
}
