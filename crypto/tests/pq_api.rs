//! Behaviour of the ML-KEM / ML-DSA newtypes: typed length errors, the FIPS 203 parse-time
//! checks, round trips on fresh random keys, contexts, redacted `Debug`, constant-time equality
//! and zeroization.

use epa_crypto::Error;
use epa_crypto::dsa::{self, mldsa65, mldsa87};
use epa_crypto::kem::{MlKem, MlKem768, MlKem1024, SharedSecret, mlkem768, mlkem1024};
use proptest::prelude::*;
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use sha3::{Digest, Sha3_256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

fn random_vec(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    OsRng.fill_bytes(&mut v);
    v
}

fn wrong_lengths(right: usize) -> [usize; 4] {
    [0, right - 1, right + 1, right * 2]
}

fn assert_len_err<T: std::fmt::Debug>(r: Result<T, Error>, expected: usize, actual: usize) {
    match r {
        Err(Error::InvalidLength {
            expected: e,
            actual: a,
            what,
        }) => {
            assert_eq!((e, a), (expected, actual), "{what}");
            let msg = Error::InvalidLength {
                what,
                expected: e,
                actual: a,
            }
            .to_string();
            assert!(msg.contains(&expected.to_string()) && msg.contains(&actual.to_string()));
        }
        other => panic!("expected InvalidLength({expected}, {actual}), got {other:?}"),
    }
}

macro_rules! kem_api_tests {
    ($modname:ident, $m:ident, $marker:ty, $ek:literal, $dk:literal, $ct:literal) => {
        mod $modname {
            use super::*;

            #[test]
            fn sizes_and_length_errors() {
                assert_eq!(
                    (
                        <$marker as MlKem>::ENCAPSULATION_KEY_LEN,
                        <$marker as MlKem>::DECAPSULATION_KEY_LEN,
                        <$marker as MlKem>::CIPHERTEXT_LEN
                    ),
                    ($ek, $dk, $ct)
                );
                for n in wrong_lengths($ek) {
                    assert_len_err($m::EncapsulationKey::from_bytes(&random_vec(n)), $ek, n);
                }
                for n in wrong_lengths($dk) {
                    assert_len_err($m::DecapsulationKey::from_bytes(&random_vec(n)), $dk, n);
                }
                for n in wrong_lengths($ct) {
                    assert_len_err($m::Ciphertext::from_bytes(&random_vec(n)), $ct, n);
                }
            }

            #[test]
            fn round_trips_on_fresh_keys() {
                for _ in 0..8 {
                    let pair = $m::KeyPair::generate(&mut OsRng).expect("OS randomness");
                    let ek = $m::EncapsulationKey::from_bytes(pair.encapsulation_key.as_bytes())
                        .expect("own ek parses");
                    let dk = $m::DecapsulationKey::from_bytes(pair.decapsulation_key.as_bytes())
                        .expect("own dk parses");
                    assert_eq!(ek, pair.encapsulation_key);
                    assert_eq!(dk, pair.decapsulation_key);
                    assert_eq!(dk.encapsulation_key(), ek);
                    let m: [u8; 32] = OsRng.r#gen();
                    let (ct, ss) = ek.encapsulate(&m);
                    assert_eq!(<$marker as MlKem>::encapsulate(&ek, &m).0, ct);
                    let ct = $m::Ciphertext::from_bytes(ct.as_bytes()).expect("own ct parses");
                    assert_eq!(dk.decapsulate(&ct), ss);
                    // Different randomness, different ciphertext and secret.
                    let (ct2, ss2) = ek.encapsulate_with_rng(&mut OsRng).expect("OS randomness");
                    assert_ne!(ct2, ct);
                    assert_ne!(ss2, ss);
                    assert_eq!(<$marker as MlKem>::decapsulate(&dk, &ct2), ss2);
                }
            }

            #[test]
            fn seed_determines_the_keys() {
                let seed: [u8; 64] = {
                    let mut s = [0u8; 64];
                    OsRng.fill_bytes(&mut s);
                    s
                };
                assert_eq!($m::KeyPair::from_seed(&seed), $m::KeyPair::from_seed(&seed));
                let mut other = seed;
                other[63] ^= 1; // z only: same ek, different dk
                let (a, b) = (
                    $m::KeyPair::from_seed(&seed),
                    $m::KeyPair::from_seed(&other),
                );
                assert_eq!(a.encapsulation_key, b.encapsulation_key);
                assert_ne!(a.decapsulation_key, b.decapsulation_key);
            }

            #[test]
            fn modulus_check_at_parse_time() {
                let pair = $m::KeyPair::generate(&mut OsRng).expect("OS randomness");
                let good = *pair.encapsulation_key.as_bytes();
                // Put q = 3329 (or anything up to 4095) into a random 12-bit coefficient slot of
                // the t vector (the final 32 bytes are rho and are not checked).
                for _ in 0..16 {
                    let mut bad = good;
                    let coeff = OsRng.gen_range(0..($ek - 32) * 2 / 3);
                    let value: u16 = OsRng.gen_range(3329..4096);
                    let (byte, odd) = (coeff / 2 * 3, coeff % 2 == 1);
                    if odd {
                        bad[byte + 1] = (bad[byte + 1] & 0x0f) | ((value as u8 & 0x0f) << 4);
                        bad[byte + 2] = (value >> 4) as u8;
                    } else {
                        bad[byte] = value as u8;
                        bad[byte + 1] = (bad[byte + 1] & 0xf0) | (value >> 8) as u8;
                    }
                    assert!(matches!(
                        $m::EncapsulationKey::from_bytes(&bad),
                        Err(Error::InvalidPublicKey { .. })
                    ));
                }
            }

            #[test]
            fn hash_check_at_parse_time() {
                let pair = $m::KeyPair::generate(&mut OsRng).expect("OS randomness");
                let good = *pair.decapsulation_key.as_bytes();
                // Positions of the embedded ek and of H(ek): dk = dk_pke || ek || H(ek) || z.
                let ek_start = $dk - $ek - 64;
                for i in [ek_start, ek_start + $ek / 2, $dk - 64, $dk - 33] {
                    let mut bad = good;
                    bad[i] ^= 0x80;
                    assert!(
                        matches!(
                            $m::DecapsulationKey::from_bytes(&bad),
                            Err(Error::InvalidSecretKey { .. })
                        ),
                        "byte {i}"
                    );
                }
                // z is not covered by the hash check: a changed z still parses.
                let mut z_changed = good;
                z_changed[$dk - 1] ^= 1;
                assert!($m::DecapsulationKey::from_bytes(&z_changed).is_ok());
                // An embedded ek with an unreduced coefficient and a matching H(ek) passes the
                // hash check but not the modulus check, which also runs on decapsulation keys.
                let mut forged = good;
                forged[ek_start] = 0xff;
                forged[ek_start + 1] |= 0x0f;
                let h = Sha3_256::digest(&forged[ek_start..ek_start + $ek]);
                forged[$dk - 64..$dk - 32].copy_from_slice(&h);
                assert!(matches!(
                    $m::DecapsulationKey::from_bytes(&forged),
                    Err(Error::InvalidPublicKey { .. })
                ));
            }

            #[test]
            fn tampered_ciphertext_gives_implicit_rejection() {
                let pair = $m::KeyPair::generate(&mut OsRng).expect("OS randomness");
                let (ct, ss) = pair
                    .encapsulation_key
                    .encapsulate_with_rng(&mut OsRng)
                    .expect("OS randomness");
                let mut bad = *ct.as_bytes();
                bad[OsRng.gen_range(0..$ct)] ^= 4;
                let bad = $m::Ciphertext::from_bytes(&bad).expect("right length");
                let rejected = pair.decapsulation_key.decapsulate(&bad);
                assert_ne!(rejected, ss);
                // Implicit rejection is a deterministic function of (dk, c).
                assert_eq!(pair.decapsulation_key.decapsulate(&bad), rejected);
            }

            #[test]
            fn secrets_are_redacted_and_compared_in_constant_time() {
                let pair = $m::KeyPair::from_seed(&[0x11; 64]);
                let dk = &pair.decapsulation_key;
                let printed = format!("{dk:?} {pair:?}");
                assert!(printed.contains("<redacted>"));
                // No run of the secret bytes appears in either debug form.
                let secret_hex = hex::encode(&dk.as_bytes()[..6]);
                let secret_list = format!("{:02x?}", &dk.as_bytes()[..6]);
                let secret_list = &secret_list[1..secret_list.len() - 1];
                assert!(!printed.contains(&secret_hex) && !printed.contains(secret_list));
                let other = $m::KeyPair::from_seed(&[0x12; 64]).decapsulation_key;
                assert!(bool::from(dk.ct_eq(&dk.clone())));
                assert!(!bool::from(dk.ct_eq(&other)));
                fn zeroize_on_drop<T: ZeroizeOnDrop>(_: &T) {}
                zeroize_on_drop(dk);
            }
        }
    };
}

kem_api_tests!(mlkem768_api, mlkem768, MlKem768, 1184, 2400, 1088);
kem_api_tests!(mlkem1024_api, mlkem1024, MlKem1024, 1568, 3168, 1568);

#[test]
fn shared_secret_zeroizes_and_hides() {
    let mut ss = SharedSecret::from_bytes([0xa7; 32]);
    let printed = format!("{ss:?}");
    assert_eq!(printed, "SharedSecret(<redacted>)");
    assert!(bool::from(ss.ct_eq(&SharedSecret::from_bytes([0xa7; 32]))));
    assert!(!bool::from(ss.ct_eq(&SharedSecret::from_bytes([0xa6; 32]))));
    ss.zeroize();
    assert_eq!(ss.as_bytes(), &[0u8; 32]);
}

macro_rules! dsa_api_tests {
    ($modname:ident, $m:ident, $vk:literal, $sk:literal, $sig:literal) => {
        mod $modname {
            use super::*;

            #[test]
            fn sizes_and_length_errors() {
                assert_eq!(
                    (
                        $m::VERIFYING_KEY_LEN,
                        $m::SIGNING_KEY_LEN,
                        $m::SIGNATURE_LEN
                    ),
                    ($vk, $sk, $sig)
                );
                for n in wrong_lengths($vk) {
                    assert_len_err($m::VerifyingKey::from_bytes(&random_vec(n)), $vk, n);
                }
                for n in wrong_lengths($sk) {
                    assert_len_err($m::SigningKey::from_bytes(&random_vec(n)), $sk, n);
                }
                for n in wrong_lengths($sig) {
                    assert_len_err($m::Signature::from_bytes(&random_vec(n)), $sig, n);
                }
            }

            #[test]
            fn sign_verify_on_fresh_keys_with_contexts() {
                for _ in 0..4 {
                    let pair = $m::KeyPair::generate(&mut OsRng).expect("OS randomness");
                    let vk =
                        $m::VerifyingKey::from_bytes(pair.verifying_key.as_bytes()).expect("vk");
                    let sk = $m::SigningKey::from_bytes(pair.signing_key.as_bytes()).expect("sk");
                    assert_eq!(sk, pair.signing_key);
                    let msg = random_vec(OsRng.gen_range(0..1000));
                    let ctx = random_vec(OsRng.gen_range(0..=255));
                    let sig = sk.sign_with_rng(&msg, &ctx, &mut OsRng).expect("sign");
                    let sig = $m::Signature::from_bytes(sig.as_bytes()).expect("sig parses");
                    vk.verify(&msg, &ctx, &sig).expect("verifies");

                    // Another context, message or key fails with the typed error.
                    let mut other_ctx = ctx.clone();
                    other_ctx.push(1);
                    assert_eq!(
                        vk.verify(&msg, &other_ctx, &sig),
                        Err(Error::InvalidSignature { what: $m::NAME })
                    );
                    let mut other_msg = msg.clone();
                    other_msg.push(1);
                    assert!(vk.verify(&other_msg, &ctx, &sig).is_err());
                    let other = $m::KeyPair::generate(&mut OsRng).expect("OS randomness");
                    assert!(other.verifying_key.verify(&msg, &ctx, &sig).is_err());

                    // Deterministic signing (rnd = 0) repeats; hedged signing does not.
                    let d1 = sk.sign(&msg, &ctx, &[0; 32]).expect("sign");
                    assert_eq!(sk.sign(&msg, &ctx, &[0; 32]).expect("sign"), d1);
                    let h = sk.sign_with_rng(&msg, &ctx, &mut OsRng).expect("sign");
                    assert_ne!(h, d1);
                    vk.verify(&msg, &ctx, &h).expect("hedged verifies");
                }
            }

            #[test]
            fn context_limit() {
                let pair = $m::KeyPair::from_seed(&[9; 32]);
                let ok = vec![0u8; dsa::MAX_CONTEXT_LEN];
                let sig = pair
                    .signing_key
                    .sign(b"m", &ok, &[1; 32])
                    .expect("255 bytes is allowed");
                pair.verifying_key
                    .verify(b"m", &ok, &sig)
                    .expect("verifies");
                let long = vec![0u8; dsa::MAX_CONTEXT_LEN + 1];
                assert_eq!(
                    pair.signing_key.sign(b"m", &long, &[1; 32]),
                    Err(Error::ContextTooLong { len: 256 })
                );
                assert_eq!(
                    pair.verifying_key.verify(b"m", &long, &sig),
                    Err(Error::ContextTooLong { len: 256 })
                );
            }

            #[test]
            fn signing_key_is_redacted() {
                let pair = $m::KeyPair::from_seed(&[0x33; 32]);
                let printed = format!("{:?} {pair:?}", pair.signing_key);
                assert!(printed.contains("<redacted>"));
                let secret_list = format!("{:02x?}", &pair.signing_key.as_bytes()[64..70]);
                assert!(!printed.contains(&secret_list[1..secret_list.len() - 1]));
                assert!(!printed.contains(&hex::encode(&pair.signing_key.as_bytes()[64..70])));
                fn zeroize_on_drop<T: ZeroizeOnDrop>(_: &T) {}
                zeroize_on_drop(&pair.signing_key);
            }
        }
    };
}

dsa_api_tests!(mldsa65_api, mldsa65, 1952, 4032, 3309);
dsa_api_tests!(mldsa87_api, mldsa87, 2592, 4896, 4627);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Arbitrary bytes of arbitrary length never panic any parser; what parses round-trips.
    #[test]
    fn parsers_never_panic(len_choice in 0usize..8, fill in any::<u8>(), noise in proptest::collection::vec(any::<u8>(), 0..64)) {
        let lens = [0, 1088, 1184, 1568, 2400, 3168, 3309, 1952];
        let mut bytes = vec![fill; lens[len_choice]];
        for (i, b) in noise.iter().enumerate() {
            if let Some(x) = bytes.get_mut(i * 37 % lens[len_choice].max(1)) { *x = *b; }
        }
        if let Ok(k) = mlkem768::EncapsulationKey::from_bytes(&bytes) { prop_assert_eq!(&k.as_bytes()[..], &bytes[..]); }
        if let Ok(k) = mlkem768::DecapsulationKey::from_bytes(&bytes) { prop_assert_eq!(&k.as_bytes()[..], &bytes[..]); }
        if let Ok(c) = mlkem768::Ciphertext::from_bytes(&bytes) { prop_assert_eq!(&c.as_bytes()[..], &bytes[..]); }
        let _ = mlkem1024::EncapsulationKey::from_bytes(&bytes);
        let _ = mlkem1024::DecapsulationKey::from_bytes(&bytes);
        if let Ok(vk) = mldsa65::VerifyingKey::from_bytes(&bytes) {
            let sig = mldsa65::Signature::from_bytes(&[fill; 3309]).expect("right length");
            prop_assert!(vk.verify(b"msg", b"", &sig).is_err());
        }
        let _ = mldsa65::Signature::from_bytes(&bytes);
        let _ = mldsa87::VerifyingKey::from_bytes(&bytes);
    }
}
