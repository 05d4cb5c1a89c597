//! ML-DSA (FIPS 204, final) over length-checked newtypes.
//!
//! Two parameter sets with the same API: [`mldsa65`] (aggregator and appliance identities) and
//! [`mldsa87`].
//!
//! 1. Generate a key pair from a 32-byte seed `xi` ([`mldsa65::KeyPair::from_seed`]) or from an
//!    RNG ([`mldsa65::KeyPair::generate`]).
//! 2. Sign: [`mldsa65::SigningKey::sign`] is hedged signing with explicit 32-byte randomness
//!    `rnd` (all zeros gives FIPS 204 deterministic signing), [`mldsa65::SigningKey::sign_with_rng`]
//!    draws `rnd` from an RNG. Every signature is bound to a context string of at most 255 bytes
//!    (FIPS 204 pure ML-DSA with domain separation).
//! 3. Verify with [`mldsa65::VerifyingKey::verify`]: a typed error unless the signature is valid
//!    for exactly this key, message and context.
//!
//! Keys and signatures parse from bytes with an exact length check. Every encoding of the right
//! length is a well-formed ML-DSA verification key (`rho || t1` with 10-bit coefficients), and
//! malformed signatures (hint encodings, norms) are rejected by verification, as FIPS 204
//! specifies. Signing keys are zeroized on drop, compared in constant time and never printed.

use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroize;

use crate::Error;

/// Bytes of the key-generation seed `xi`.
pub const KEYGEN_SEED_LEN: usize = 32;
/// Bytes of the signing randomness `rnd`.
pub const SIGNING_RANDOMNESS_LEN: usize = 32;
/// Longest context string FIPS 204 allows.
pub const MAX_CONTEXT_LEN: usize = 255;

/// The exact-length parse every key, ciphertext and signature newtype of [`crate::dsa`] and
/// [`crate::kem`] starts with: `bytes` as an `N`-byte array, or [`Error::InvalidLength`] naming
/// `what`.
pub(crate) fn exact<const N: usize>(what: &'static str, bytes: &[u8]) -> Result<[u8; N], Error> {
    <[u8; N]>::try_from(bytes).map_err(|_| Error::InvalidLength {
        what,
        expected: N,
        actual: bytes.len(),
    })
}

/// The trait boilerplate the ML-DSA and ML-KEM newtypes share; each type has an
/// `as_bytes(&self) -> &[u8; N]`.
///
/// * `public Type, "NAME"`: equality on the bytes, and `Debug` as `Type(NAME, [first 8 bytes]..)`.
/// * `secret Type[, "NAME"]`: equality in constant time ([`ConstantTimeEq`]), and `Debug` as
///   `Type([NAME, ]<redacted>)`: a secret is never printed.
/// * `zeroize Type, |key| wipe`: `Drop` runs `wipe` (which must overwrite every secret byte of
///   `key`), and the type is marked [`ZeroizeOnDrop`].
macro_rules! byte_newtype {
    (public $ty:ident, $name:literal) => {
        impl PartialEq for $ty {
            fn eq(&self, other: &Self) -> bool {
                self.as_bytes() == other.as_bytes()
            }
        }

        impl Eq for $ty {}

        impl core::fmt::Debug for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(
                    f,
                    concat!(stringify!($ty), "({}, {:02x?}..)"),
                    $name,
                    &self.as_bytes()[..8]
                )
            }
        }
    };
    (secret $ty:ident $(, $name:literal)?) => {
        impl subtle::ConstantTimeEq for $ty {
            fn ct_eq(&self, other: &Self) -> subtle::Choice {
                subtle::ConstantTimeEq::ct_eq(&self.as_bytes()[..], &other.as_bytes()[..])
            }
        }

        impl PartialEq for $ty {
            fn eq(&self, other: &Self) -> bool {
                subtle::ConstantTimeEq::ct_eq(self, other).into()
            }
        }

        impl Eq for $ty {}

        impl core::fmt::Debug for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(concat!(stringify!($ty), "(", $($name, ", ",)? "<redacted>)"))
            }
        }
    };
    (zeroize $ty:ident, |$key:ident| $wipe:expr) => {
        impl Drop for $ty {
            fn drop(&mut self) {
                let $key = self;
                $wipe;
            }
        }

        impl zeroize::ZeroizeOnDrop for $ty {}
    };
}
pub(crate) use byte_newtype;

fn check_context(context: &[u8]) -> Result<(), Error> {
    if context.len() > MAX_CONTEXT_LEN {
        Err(Error::ContextTooLong { len: context.len() })
    } else {
        Ok(())
    }
}

macro_rules! ml_dsa_parameter_set {
    (
        $(#[$doc:meta])*
        $module:ident, $lib:ident, $name:literal, vk = $vk_len:literal, sk = $sk_len:literal, sig = $sig_len:literal
    ) => {
        $(#[$doc])*
        pub mod $module {
            use super::*;
            use libcrux_ml_dsa::$lib as lib;

            /// Name of this parameter set.
            pub const NAME: &str = $name;
            /// Bytes of a verification key.
            pub const VERIFYING_KEY_LEN: usize = $vk_len;
            /// Bytes of a signing key.
            pub const SIGNING_KEY_LEN: usize = $sk_len;
            /// Bytes of a signature.
            pub const SIGNATURE_LEN: usize = $sig_len;

            type LibVk = libcrux_ml_dsa::MLDSAVerificationKey<$vk_len>;
            type LibSk = libcrux_ml_dsa::MLDSASigningKey<$sk_len>;
            type LibSig = libcrux_ml_dsa::MLDSASignature<$sig_len>;

            /// A verification (public) key.
            #[derive(Clone)]
            pub struct VerifyingKey(Box<LibVk>);

            impl VerifyingKey {
                const WHAT: &'static str = concat!($name, " verification key");

                /// Parses an encoded key: exact length.
                pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
                    Ok(Self(Box::new(LibVk::new(exact::<$vk_len>(Self::WHAT, bytes)?))))
                }

                /// The encoded key.
                pub fn as_bytes(&self) -> &[u8; $vk_len] {
                    LibVk::as_ref(&self.0)
                }

                /// Verifies `signature` on `message` under `context` (FIPS 204 `ML-DSA.Verify`).
                pub fn verify(
                    &self,
                    message: &[u8],
                    context: &[u8],
                    signature: &Signature,
                ) -> Result<(), Error> {
                    check_context(context)?;
                    lib::verify(&self.0, message, context, &signature.0)
                        .map_err(|_| Error::InvalidSignature { what: $name })
                }
            }

            byte_newtype!(public VerifyingKey, $name);

            /// A signing (secret) key. Zeroized on drop, compared in constant time, never
            /// printed.
            #[derive(Clone)]
            pub struct SigningKey(Box<LibSk>);

            impl SigningKey {
                const WHAT: &'static str = concat!($name, " signing key");

                /// Parses an encoded (expanded) signing key: exact length.
                pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
                    let raw = zeroize::Zeroizing::new(exact::<$sk_len>(Self::WHAT, bytes)?);
                    let mut key = Self(Box::new(LibSk::zero()));
                    key.0.as_ref_mut().copy_from_slice(&*raw);
                    Ok(key)
                }

                /// The encoded secret key. Handle with care: store it only in zeroizing or
                /// encrypted storage.
                pub fn as_bytes(&self) -> &[u8; $sk_len] {
                    LibSk::as_ref(&self.0)
                }

                /// Hedged signing (FIPS 204 `ML-DSA.Sign`) of `message` under `context` with
                /// explicit randomness `rnd`; all-zero `rnd` is the deterministic variant.
                pub fn sign(
                    &self,
                    message: &[u8],
                    context: &[u8],
                    randomness: &[u8; SIGNING_RANDOMNESS_LEN],
                ) -> Result<Signature, Error> {
                    check_context(context)?;
                    lib::sign(&self.0, message, context, *randomness)
                        .map(|sig| Signature(Box::new(sig)))
                        .map_err(|e| match e {
                            libcrux_ml_dsa::SigningError::ContextTooLongError => {
                                Error::ContextTooLong { len: context.len() }
                            }
                            libcrux_ml_dsa::SigningError::RejectionSamplingError => {
                                Error::SigningFailed
                            }
                        })
                }

                /// Hedged signing with `rnd` drawn from `rng` (the FIPS 204 default).
                pub fn sign_with_rng(
                    &self,
                    message: &[u8],
                    context: &[u8],
                    rng: &mut (impl CryptoRng + RngCore),
                ) -> Result<Signature, Error> {
                    let mut rnd = zeroize::Zeroizing::new([0u8; SIGNING_RANDOMNESS_LEN]);
                    rng.try_fill_bytes(&mut rnd[..])
                        .map_err(|_| Error::RandomnessUnavailable)?;
                    self.sign(message, context, &rnd)
                }
            }

            byte_newtype!(secret SigningKey, $name);
            byte_newtype!(zeroize SigningKey, |key| key.0.as_ref_mut().zeroize());

            /// A signature of the right length (its contents are checked by verification).
            #[derive(Clone)]
            pub struct Signature(Box<LibSig>);

            impl Signature {
                const WHAT: &'static str = concat!($name, " signature");

                /// Parses an encoded signature: exact length.
                pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
                    Ok(Self(Box::new(LibSig::new(exact::<$sig_len>(Self::WHAT, bytes)?))))
                }

                /// The encoded signature.
                pub fn as_bytes(&self) -> &[u8; $sig_len] {
                    LibSig::as_ref(&self.0)
                }
            }

            byte_newtype!(public Signature, $name);

            /// A key pair.
            #[derive(Clone, Debug, PartialEq, Eq)]
            pub struct KeyPair {
                /// The public half.
                pub verifying_key: VerifyingKey,
                /// The secret half.
                pub signing_key: SigningKey,
            }

            impl KeyPair {
                /// FIPS 204 `ML-DSA.KeyGen_internal(xi)` from a 32-byte seed.
                pub fn from_seed(seed: &[u8; KEYGEN_SEED_LEN]) -> Self {
                    let mut pair = lib::generate_key_pair(*seed);
                    let mut signing_key = SigningKey(Box::new(LibSk::zero()));
                    signing_key
                        .0
                        .as_ref_mut()
                        .copy_from_slice(pair.signing_key.as_ref());
                    pair.signing_key.as_ref_mut().zeroize();
                    Self {
                        verifying_key: VerifyingKey(Box::new(pair.verification_key)),
                        signing_key,
                    }
                }

                /// Key generation with a seed drawn from `rng`.
                pub fn generate(rng: &mut (impl CryptoRng + RngCore)) -> Result<Self, Error> {
                    let mut seed = zeroize::Zeroizing::new([0u8; KEYGEN_SEED_LEN]);
                    rng.try_fill_bytes(&mut seed[..])
                        .map_err(|_| Error::RandomnessUnavailable)?;
                    Ok(Self::from_seed(&seed))
                }
            }
        }
    };
}

ml_dsa_parameter_set! {
    /// ML-DSA-65 (NIST category 3): aggregator and appliance identities.
    mldsa65, ml_dsa_65, "ML-DSA-65", vk = 1952, sk = 4032, sig = 3309
}

ml_dsa_parameter_set! {
    /// ML-DSA-87 (NIST category 5).
    mldsa87, ml_dsa_87, "ML-DSA-87", vk = 2592, sk = 4896, sig = 4627
}

#[cfg(test)]
mod newtype_tests {
    use super::mldsa65;
    use crate::kem::{SharedSecret, mlkem768};

    /// The one `byte_newtype!` serves both modules: the printed forms are the documented
    /// ones (public prefixes, secrets redacted) and equality compares the bytes.
    #[test]
    fn byte_newtypes_print_prefixes_redact_secrets_and_compare_bytes() {
        let dsa = mldsa65::KeyPair::from_seed(&rand::random());
        let other = mldsa65::KeyPair::from_seed(&rand::random());
        let mut seed = [0u8; 64];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut seed);
        let kem = mlkem768::KeyPair::from_seed(&seed);
        let prefix = |b: &[u8]| format!("{:02x?}..", &b[..8]);
        assert_eq!(
            format!("{:?}", dsa.verifying_key),
            format!(
                "VerifyingKey(ML-DSA-65, {})",
                prefix(dsa.verifying_key.as_bytes())
            )
        );
        assert_eq!(
            format!("{:?}", dsa.signing_key),
            "SigningKey(ML-DSA-65, <redacted>)"
        );
        assert_eq!(
            format!("{:?}", kem.encapsulation_key),
            format!(
                "EncapsulationKey(ML-KEM-768, {})",
                prefix(kem.encapsulation_key.as_bytes())
            )
        );
        assert_eq!(
            format!("{:?}", kem.decapsulation_key),
            "DecapsulationKey(ML-KEM-768, <redacted>)"
        );
        let (ct, ss) = kem.encapsulation_key.encapsulate(&rand::random());
        assert_eq!(
            format!("{ct:?}"),
            format!("Ciphertext(ML-KEM-768, {})", prefix(ct.as_bytes()))
        );
        assert_eq!(format!("{ss:?}"), "SharedSecret(<redacted>)");
        let sig = dsa
            .signing_key
            .sign(b"m", b"", &rand::random())
            .expect("signs");
        assert_eq!(
            format!("{sig:?}"),
            format!("Signature(ML-DSA-65, {})", prefix(sig.as_bytes()))
        );
        // Equality is on the bytes, for public values and secrets alike.
        assert_eq!(dsa.signing_key, dsa.signing_key.clone());
        assert_ne!(dsa.signing_key, other.signing_key);
        assert_ne!(dsa.verifying_key, other.verifying_key);
        assert_eq!(kem.decapsulation_key.decapsulate(&ct), ss);
        assert_ne!(ss, SharedSecret::from_bytes(rand::random()));
    }
}
