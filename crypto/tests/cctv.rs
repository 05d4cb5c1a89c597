//! C2SP/CCTV "accumulated" vectors for ML-KEM-768 and ML-DSA-65 (final FIPS 203 / FIPS 204).
//!
//! Inputs come from one SHAKE-128 stream over empty input; outputs are absorbed into a second
//! SHAKE-128 instance whose first 32 output bytes must equal the published hash. 10,000
//! iterations exercise far more key, ciphertext and signature shapes than fixed KATs.

use epa_crypto::dsa::mldsa65;
use epa_crypto::kem::mlkem768;
use sha3::Shake128;
use sha3::digest::{ExtendableOutput, Update, XofReader};

fn squeeze<const N: usize>(stream: &mut impl XofReader) -> [u8; N] {
    let mut out = [0u8; N];
    stream.read(&mut out);
    out
}

fn hex32(acc: &Shake128) -> String {
    let mut out = [0u8; 32];
    acc.clone().finalize_xof().read(&mut out);
    hex::encode(out)
}

/// Per iteration: draw `d || z` (64), `m` (32) and a random ciphertext (1088); absorb
/// `ek || dk || ct || k || k_reject` where `k_reject` is the decapsulation of the random
/// ciphertext (implicit rejection).
#[test]
fn mlkem768_accumulated_10000() {
    let mut stream = Shake128::default().finalize_xof();
    let mut acc = Shake128::default();
    for _ in 0..10_000 {
        let seed: [u8; 64] = squeeze(&mut stream);
        let m: [u8; 32] = squeeze(&mut stream);
        let random_ct: [u8; mlkem768::CIPHERTEXT_LEN] = squeeze(&mut stream);

        let pair = mlkem768::KeyPair::from_seed(&seed);
        let (ct, k) = pair.encapsulation_key.encapsulate(&m);
        assert_eq!(pair.decapsulation_key.decapsulate(&ct), k);
        let random_ct = mlkem768::Ciphertext::from_bytes(&random_ct).expect("1088 bytes");
        let k_reject = pair.decapsulation_key.decapsulate(&random_ct);

        acc.update(pair.encapsulation_key.as_bytes());
        acc.update(pair.decapsulation_key.as_bytes());
        acc.update(ct.as_bytes());
        acc.update(k.as_bytes());
        acc.update(k_reject.as_bytes());
    }
    assert_eq!(
        hex32(&acc),
        "f959d18d3d1180121433bf0e05f11e7908cf9d03edc150b2b07cb90bef5bc1c1"
    );
}

/// Per iteration: draw `xi` (32); absorb the public key, then the deterministic signature
/// (`rnd` = 0) of the empty message under the empty context. The signature is also verified.
#[test]
fn mldsa65_accumulated_10000() {
    let mut stream = Shake128::default().finalize_xof();
    let mut acc = Shake128::default();
    for i in 1..=10_000 {
        let pair = mldsa65::KeyPair::from_seed(&squeeze(&mut stream));
        let sig = pair
            .signing_key
            .sign(b"", b"", &[0; 32])
            .expect("signing terminates");
        pair.verifying_key
            .verify(b"", b"", &sig)
            .expect("own signature verifies");
        acc.update(pair.verifying_key.as_bytes());
        acc.update(sig.as_bytes());
        if i == 100 {
            assert_eq!(
                hex32(&acc),
                "8358a1843220194417cadbc2651295cd8fc65125b5a5c1a239a16dc8b57ca199",
                "published 100-iteration value"
            );
        }
    }
    assert_eq!(
        hex32(&acc),
        "5ff5e196f0b830c3b10a9eb5358e7c98a3a20136cb677f3ae3b90175c3ace329"
    );
}
