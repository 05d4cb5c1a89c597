//! ML-KEM (FIPS 203, final) over parse-don't-validate newtypes.
//!
//! Two parameter sets, one module each with the same API: [`mlkem768`] (what the appliance uses
//! for transactions) and [`mlkem1024`]. The [`MlKem`] trait, implemented by the marker types
//! [`MlKem768`] and [`MlKem1024`], lets code be written once for both.
//!
//! 1. Generate a key pair from a 64-byte seed `d || z` ([`mlkem768::KeyPair::from_seed`]) or
//!    from an RNG ([`mlkem768::KeyPair::generate`]).
//! 2. Parse keys and ciphertexts from bytes: lengths are checked, and the FIPS 203 section 7.2
//!    modulus check (encapsulation keys) and section 7.3 hash check (decapsulation keys) run at
//!    parse time, so a value of these types is always valid input for the algorithms.
//! 3. Encapsulate with explicit 32-byte randomness or with an RNG; decapsulate. A tampered
//!    ciphertext is not an error: decapsulation returns the implicit-rejection secret
//!    `J(z || c)`, which matches no sender's secret.
//!
//! Secrets ([`mlkem768::DecapsulationKey`], [`SharedSecret`]) are zeroized on drop, compare in
//! constant time, and print as `<redacted>`. The arithmetic is libcrux's formally verified code,
//! with its AVX2 path chosen at run time.

use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::Error;
use crate::dsa::{byte_newtype, exact};

/// Bytes of an ML-KEM shared secret.
pub const SHARED_SECRET_LEN: usize = 32;
/// Bytes of the key-generation seed `d || z`.
pub const KEYGEN_SEED_LEN: usize = 64;
/// Bytes of the encapsulation randomness `m`.
pub const ENCAPS_RANDOMNESS_LEN: usize = 32;

/// A 32-byte ML-KEM shared secret: zeroized on drop, compared in constant time, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SharedSecret([u8; SHARED_SECRET_LEN]);

impl SharedSecret {
    /// Wraps raw secret bytes (for example a secret decapsulated elsewhere, by a batch kernel).
    pub fn from_bytes(bytes: [u8; SHARED_SECRET_LEN]) -> Self {
        Self(bytes)
    }

    /// The secret bytes. Keep them in zeroizing storage.
    pub fn as_bytes(&self) -> &[u8; SHARED_SECRET_LEN] {
        &self.0
    }
}

byte_newtype!(secret SharedSecret);

/// An ML-KEM parameter set, implemented by [`MlKem768`] and [`MlKem1024`]: lets the
/// deterministic-encapsulation adapter and batch code be generic over both.
pub trait MlKem {
    /// The parameter set's name, e.g. `"ML-KEM-768"`.
    const NAME: &'static str;
    /// Bytes of an encapsulation key.
    const ENCAPSULATION_KEY_LEN: usize;
    /// Bytes of a decapsulation key.
    const DECAPSULATION_KEY_LEN: usize;
    /// Bytes of a ciphertext.
    const CIPHERTEXT_LEN: usize;
    /// The encapsulation (public) key type.
    type EncapsulationKey;
    /// The decapsulation (secret) key type.
    type DecapsulationKey;
    /// The ciphertext type.
    type Ciphertext;

    /// The encoded encapsulation key.
    fn encapsulation_key_bytes(ek: &Self::EncapsulationKey) -> &[u8];
    /// FIPS 203 `ML-KEM.Encaps_internal(ek, m)`.
    fn encapsulate(
        ek: &Self::EncapsulationKey,
        randomness: &[u8; ENCAPS_RANDOMNESS_LEN],
    ) -> (Self::Ciphertext, SharedSecret);
    /// FIPS 203 `ML-KEM.Decaps(dk, c)`.
    fn decapsulate(dk: &Self::DecapsulationKey, ct: &Self::Ciphertext) -> SharedSecret;
}

fn random_array<const N: usize>(rng: &mut (impl CryptoRng + RngCore)) -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    rng.try_fill_bytes(&mut out)
        .map_err(|_| Error::RandomnessUnavailable)?;
    Ok(out)
}

macro_rules! ml_kem_parameter_set {
    (
        $(#[$doc:meta])*
        $module:ident, $marker:ident, $lib:ident, $name:literal,
        ek = $ek_len:literal, dk = $dk_len:literal, ct = $ct_len:literal
    ) => {
        $(#[$doc])*
        pub mod $module {
            use super::*;
            use libcrux_ml_kem::$lib as lib;

            /// Name of this parameter set.
            pub const NAME: &str = $name;
            /// Bytes of an encapsulation key.
            pub const ENCAPSULATION_KEY_LEN: usize = $ek_len;
            /// Bytes of a decapsulation key.
            pub const DECAPSULATION_KEY_LEN: usize = $dk_len;
            /// Bytes of a ciphertext.
            pub const CIPHERTEXT_LEN: usize = $ct_len;

            type LibEk = libcrux_ml_kem::MlKemPublicKey<$ek_len>;
            type LibDk = libcrux_ml_kem::MlKemPrivateKey<$dk_len>;
            type LibCt = libcrux_ml_kem::MlKemCiphertext<$ct_len>;

            /// An encapsulation (public) key that passed the FIPS 203 modulus check.
            #[derive(Clone)]
            pub struct EncapsulationKey(Box<LibEk>);

            impl EncapsulationKey {
                const WHAT: &'static str = concat!($name, " encapsulation key");

                /// Parses an encoded key: exact length, then the FIPS 203 modulus check.
                pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
                    let key = Box::new(LibEk::from(exact::<$ek_len>(Self::WHAT, bytes)?));
                    if lib::validate_public_key(&key) {
                        Ok(Self(key))
                    } else {
                        Err(Error::InvalidPublicKey { what: Self::WHAT })
                    }
                }

                /// The encoded key.
                pub fn as_bytes(&self) -> &[u8; $ek_len] {
                    self.0.as_slice()
                }

                /// Encapsulates with explicit randomness `m` (FIPS 203 `ML-KEM.Encaps_internal`).
                /// `m` must be fresh and secret; see [`crate::detenc`] for deriving it.
                pub fn encapsulate(
                    &self,
                    randomness: &[u8; ENCAPS_RANDOMNESS_LEN],
                ) -> (Ciphertext, SharedSecret) {
                    let (ct, ss) = lib::encapsulate(&self.0, *randomness);
                    (Ciphertext(Box::new(ct)), SharedSecret(ss))
                }

                /// Encapsulates with randomness drawn from `rng`.
                pub fn encapsulate_with_rng(
                    &self,
                    rng: &mut (impl CryptoRng + RngCore),
                ) -> Result<(Ciphertext, SharedSecret), Error> {
                    let m = zeroize::Zeroizing::new(random_array::<ENCAPS_RANDOMNESS_LEN>(rng)?);
                    Ok(self.encapsulate(&m))
                }
            }

            byte_newtype!(public EncapsulationKey, $name);

            /// A decapsulation (secret) key that passed the FIPS 203 hash check. Zeroized on
            /// drop, compared in constant time, never printed.
            #[derive(Clone)]
            pub struct DecapsulationKey(Box<LibDk>);

            impl DecapsulationKey {
                const WHAT: &'static str = concat!($name, " decapsulation key");

                /// Parses an encoded key: exact length, the FIPS 203 hash check (`H(ek)` stored in
                /// the key matches the stored `ek`), and the modulus check of the stored `ek`.
                pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
                    let raw = zeroize::Zeroizing::new(exact::<$dk_len>(Self::WHAT, bytes)?);
                    let key = Self(Box::new(LibDk::from(&*raw)));
                    // The ciphertext argument only matters for the ciphertext length check,
                    // which the type already guarantees.
                    if !lib::validate_private_key(&key.0, &LibCt::default()) {
                        return Err(Error::InvalidSecretKey { what: Self::WHAT });
                    }
                    // The embedded encapsulation key is handed out by `encapsulation_key`, so it
                    // must pass the modulus check as well.
                    if !lib::validate_public_key(&key.encapsulation_key().0) {
                        return Err(Error::InvalidPublicKey { what: Self::WHAT });
                    }
                    Ok(key)
                }

                /// The encoded secret key. Handle with care: store it only in zeroizing or
                /// encrypted storage.
                pub fn as_bytes(&self) -> &[u8; $dk_len] {
                    self.0.as_slice()
                }

                /// The encapsulation key embedded in this key (FIPS 203 `dk = dk_pke || ek ||
                /// H(ek) || z`).
                pub fn encapsulation_key(&self) -> EncapsulationKey {
                    const START: usize = $dk_len - $ek_len - 64;
                    let mut ek = [0u8; $ek_len];
                    ek.copy_from_slice(&self.as_bytes()[START..START + $ek_len]);
                    EncapsulationKey(Box::new(LibEk::from(ek)))
                }

                /// Decapsulates (FIPS 203 `ML-KEM.Decaps`). Never fails: a ciphertext that does not
                /// re-encrypt yields the implicit-rejection secret `J(z || c)`.
                pub fn decapsulate(&self, ct: &Ciphertext) -> SharedSecret {
                    SharedSecret(lib::decapsulate(&self.0, &ct.0))
                }
            }

            byte_newtype!(secret DecapsulationKey, $name);
            byte_newtype!(zeroize DecapsulationKey, |key| key.0[0..].zeroize());

            /// A ciphertext of the right length. Every such byte string is a valid
            /// decapsulation input.
            #[derive(Clone)]
            pub struct Ciphertext(Box<LibCt>);

            impl Ciphertext {
                const WHAT: &'static str = concat!($name, " ciphertext");

                /// Parses a ciphertext: exact length.
                pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
                    Ok(Self(Box::new(LibCt::from(exact::<$ct_len>(Self::WHAT, bytes)?))))
                }

                /// The encoded ciphertext.
                pub fn as_bytes(&self) -> &[u8; $ct_len] {
                    self.0.as_slice()
                }
            }

            byte_newtype!(public Ciphertext, $name);

            /// A key pair.
            #[derive(Clone, Debug, PartialEq, Eq)]
            pub struct KeyPair {
                /// The public half.
                pub encapsulation_key: EncapsulationKey,
                /// The secret half.
                pub decapsulation_key: DecapsulationKey,
            }

            impl KeyPair {
                /// FIPS 203 `ML-KEM.KeyGen_internal(d, z)` from the 64-byte seed `d || z`.
                pub fn from_seed(seed: &[u8; KEYGEN_SEED_LEN]) -> Self {
                    let (dk, ek) = lib::generate_key_pair(*seed).into_parts();
                    Self {
                        encapsulation_key: EncapsulationKey(Box::new(ek)),
                        decapsulation_key: DecapsulationKey(Box::new(dk)),
                    }
                }

                /// Key generation with a seed drawn from `rng`.
                pub fn generate(rng: &mut (impl CryptoRng + RngCore)) -> Result<Self, Error> {
                    let seed = zeroize::Zeroizing::new(random_array::<KEYGEN_SEED_LEN>(rng)?);
                    let pair = Self::from_seed(&seed);
                    Ok(pair)
                }
            }

            /// Marker type for this parameter set, implementing [`MlKem`].
            #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
            pub struct $marker;

            impl MlKem for $marker {
                const NAME: &'static str = $name;
                const ENCAPSULATION_KEY_LEN: usize = $ek_len;
                const DECAPSULATION_KEY_LEN: usize = $dk_len;
                const CIPHERTEXT_LEN: usize = $ct_len;
                type EncapsulationKey = EncapsulationKey;
                type DecapsulationKey = DecapsulationKey;
                type Ciphertext = Ciphertext;

                fn encapsulation_key_bytes(ek: &EncapsulationKey) -> &[u8] {
                    ek.as_bytes()
                }

                fn encapsulate(
                    ek: &EncapsulationKey,
                    randomness: &[u8; ENCAPS_RANDOMNESS_LEN],
                ) -> (Ciphertext, SharedSecret) {
                    ek.encapsulate(randomness)
                }

                fn decapsulate(dk: &DecapsulationKey, ct: &Ciphertext) -> SharedSecret {
                    dk.decapsulate(ct)
                }
            }
        }

        pub use $module::$marker;
    };
}

ml_kem_parameter_set! {
    /// ML-KEM-768 (NIST category 3): the parameter set of encrypted transactions.
    mlkem768, MlKem768, mlkem768, "ML-KEM-768", ek = 1184, dk = 2400, ct = 1088
}

ml_kem_parameter_set! {
    /// ML-KEM-1024 (NIST category 5).
    mlkem1024, MlKem1024, mlkem1024, "ML-KEM-1024", ek = 1568, dk = 3168, ct = 1568
}
