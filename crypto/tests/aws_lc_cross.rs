//! Cross-checks against aws-lc-rs, an independent FIPS 203 / FIPS 204 implementation, on fresh
//! random keys every run: each side's output is consumed by the other.

use aws_lc_rs::encoding::AsRawBytes;
use aws_lc_rs::kem;
use aws_lc_rs::signature::{self as aws_sig, KeyPair as _};
use epa_crypto::detenc::{self, DetEncContext, DetEncSeed};
use epa_crypto::dsa::{mldsa65, mldsa87};
use epa_crypto::kem::{MlKem768, mlkem768, mlkem1024};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};

const ROUNDS: usize = 8;

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

macro_rules! kem_cross {
    ($name:ident, $m:ident, $alg:expr) => {
        /// Our keys and ciphertexts against aws-lc-rs, both directions, including implicit
        /// rejection of tampered ciphertexts.
        #[test]
        fn $name() {
            for _ in 0..ROUNDS {
                // Our key pair, aws-lc-rs encapsulates, we decapsulate.
                let ours = $m::KeyPair::generate(&mut OsRng).expect("OS randomness");
                let aws_ek = kem::EncapsulationKey::new(&$alg, ours.encapsulation_key.as_bytes())
                    .expect("aws-lc-rs accepts our encapsulation key");
                let (aws_ct, aws_ss) = aws_ek.encapsulate().expect("aws encapsulate");
                let ct = $m::Ciphertext::from_bytes(aws_ct.as_ref()).expect("right length");
                assert_eq!(
                    ours.decapsulation_key.decapsulate(&ct).as_bytes()[..],
                    aws_ss.as_ref()[..]
                );

                // aws-lc-rs decapsulates what we encapsulate, with our secret key bytes.
                let aws_dk = kem::DecapsulationKey::new(&$alg, ours.decapsulation_key.as_bytes())
                    .expect("aws-lc-rs accepts our decapsulation key");
                let (ct, ss) = ours
                    .encapsulation_key
                    .encapsulate_with_rng(&mut OsRng)
                    .expect("OS randomness");
                let aws_ss = aws_dk
                    .decapsulate(kem::Ciphertext::from(&ct.as_bytes()[..]))
                    .expect("aws decapsulate");
                assert_eq!(ss.as_bytes()[..], aws_ss.as_ref()[..]);

                // A tampered ciphertext: both sides give the same implicit-rejection secret
                // J(z || c), which is not an error and differs from the honest secret.
                let mut bad = *ct.as_bytes();
                let i = OsRng.gen_range(0..bad.len());
                bad[i] ^= 1 << OsRng.gen_range(0..8);
                let bad_ct = $m::Ciphertext::from_bytes(&bad).expect("right length");
                let rejected = ours.decapsulation_key.decapsulate(&bad_ct);
                let aws_rejected = aws_dk
                    .decapsulate(kem::Ciphertext::from(&bad[..]))
                    .expect("implicit rejection is not an error");
                assert_eq!(rejected.as_bytes()[..], aws_rejected.as_ref()[..]);
                assert_ne!(rejected, ss);

                // aws-lc-rs's own key pair parses on our side and interoperates.
                let aws_dk = kem::DecapsulationKey::generate(&$alg).expect("aws keygen");
                let dk_bytes = aws_dk.key_bytes().expect("aws dk bytes");
                let dk = $m::DecapsulationKey::from_bytes(dk_bytes.as_ref())
                    .expect("aws-lc-rs keys pass the FIPS 203 hash check");
                let ek_bytes = aws_dk
                    .encapsulation_key()
                    .and_then(|ek| ek.key_bytes())
                    .expect("aws ek bytes");
                let ek = $m::EncapsulationKey::from_bytes(ek_bytes.as_ref())
                    .expect("aws-lc-rs keys pass the FIPS 203 modulus check");
                assert_eq!(dk.encapsulation_key(), ek);
                let (ct, ss) = ek.encapsulate(&random());
                let aws_ss = aws_dk
                    .decapsulate(kem::Ciphertext::from(&ct.as_bytes()[..]))
                    .expect("aws decapsulate");
                assert_eq!(ss.as_bytes()[..], aws_ss.as_ref()[..]);
            }
        }
    };
}

kem_cross!(
    mlkem768_interoperates_with_aws_lc,
    mlkem768,
    kem::ML_KEM_768
);
kem_cross!(
    mlkem1024_interoperates_with_aws_lc,
    mlkem1024,
    kem::ML_KEM_1024
);

/// Deterministic encapsulation produces standard ciphertexts: aws-lc-rs decapsulates them to the
/// same shared secret.
#[test]
fn detenc_ciphertexts_decapsulate_in_aws_lc() {
    let aws_dk = kem::DecapsulationKey::generate(&kem::ML_KEM_768).expect("aws keygen");
    let ek_bytes = aws_dk
        .encapsulation_key()
        .and_then(|ek| ek.key_bytes())
        .expect("aws ek bytes");
    let ek = mlkem768::EncapsulationKey::from_bytes(ek_bytes.as_ref()).expect("valid ek");
    let seed = DetEncSeed::from_bytes(random());
    for tx_index in 0..ROUNDS as u64 {
        let ctx = DetEncContext {
            shard: OsRng.r#gen(),
            batch: OsRng.r#gen(),
            tx_index,
            extra: b"cross-check",
        };
        let (ct, ss) = detenc::encapsulate::<MlKem768>(&ek, &seed, &ctx);
        let aws_ss = aws_dk
            .decapsulate(kem::Ciphertext::from(&ct.as_bytes()[..]))
            .expect("aws decapsulate");
        assert_eq!(ss.as_bytes()[..], aws_ss.as_ref()[..]);
    }
}

macro_rules! dsa_cross {
    ($name:ident, $m:ident, $verify:expr, $signing:expr) => {
        /// Key generation from a seed matches; each side verifies the other's signatures (empty
        /// context, the only one aws-lc-rs's API offers); tampering is rejected on both sides.
        #[test]
        fn $name() {
            for _ in 0..ROUNDS {
                let seed: [u8; 32] = random();
                let ours = $m::KeyPair::from_seed(&seed);
                let aws = aws_sig::PqdsaKeyPair::from_seed(&$signing, &seed).expect("aws keygen");
                assert_eq!(
                    &ours.verifying_key.as_bytes()[..],
                    aws.public_key().as_ref()
                );
                let aws_sk = aws
                    .private_key()
                    .as_raw_bytes()
                    .expect("aws raw secret key");
                assert_eq!(&ours.signing_key.as_bytes()[..], aws_sk.as_ref());

                let mut msg = vec![0u8; OsRng.gen_range(0..512)];
                OsRng.fill_bytes(&mut msg);

                // aws-lc-rs signs (hedged), we verify.
                let mut aws_sig_bytes = vec![0u8; $m::SIGNATURE_LEN];
                let n = aws.sign(&msg, &mut aws_sig_bytes).expect("aws sign");
                let sig = $m::Signature::from_bytes(&aws_sig_bytes[..n]).expect("right length");
                ours.verifying_key
                    .verify(&msg, b"", &sig)
                    .expect("aws signature verifies");
                assert!(ours.verifying_key.verify(&msg, b"ctx", &sig).is_err());

                // We sign (hedged, random rnd), aws-lc-rs verifies.
                let sig = ours
                    .signing_key
                    .sign_with_rng(&msg, b"", &mut OsRng)
                    .expect("sign");
                let aws_vk =
                    aws_sig::UnparsedPublicKey::new(&$verify, ours.verifying_key.as_bytes());
                aws_vk
                    .verify(&msg, sig.as_bytes())
                    .expect("aws verifies our signature");

                // One flipped bit in the signature or the message: both sides reject.
                let mut bad = *sig.as_bytes();
                bad[OsRng.gen_range(0..bad.len())] ^= 1 << OsRng.gen_range(0..8);
                assert!(aws_vk.verify(&msg, &bad).is_err());
                let bad = $m::Signature::from_bytes(&bad).expect("right length");
                assert!(ours.verifying_key.verify(&msg, b"", &bad).is_err());
                let mut other_msg = msg.clone();
                other_msg.push(0);
                assert!(ours.verifying_key.verify(&other_msg, b"", &sig).is_err());
                assert!(aws_vk.verify(&other_msg, sig.as_bytes()).is_err());
            }
        }
    };
}

dsa_cross!(
    mldsa65_interoperates_with_aws_lc,
    mldsa65,
    aws_sig::ML_DSA_65,
    aws_sig::ML_DSA_65_SIGNING
);
dsa_cross!(
    mldsa87_interoperates_with_aws_lc,
    mldsa87,
    aws_sig::ML_DSA_87,
    aws_sig::ML_DSA_87_SIGNING
);
