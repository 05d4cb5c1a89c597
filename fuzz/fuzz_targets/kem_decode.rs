#![no_main]
//! Parses arbitrary bytes as every ML-KEM key and ciphertext type.
//!
//! Checks: parsing never panics; whatever parses round-trips to the same bytes; a parsed
//! ciphertext decapsulates under a fixed key (implicit rejection: deterministic, never an error
//! or a panic); a parsed encapsulation key encapsulates deterministically in its randomness; a
//! decapsulation key that parses embeds an encapsulation key that parses.

use std::sync::OnceLock;

use crypto::kem::{mlkem768, mlkem1024};

fn keys() -> &'static (mlkem768::KeyPair, mlkem1024::KeyPair) {
    static KEYS: OnceLock<(mlkem768::KeyPair, mlkem1024::KeyPair)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            mlkem768::KeyPair::from_seed(&[1; 64]),
            mlkem1024::KeyPair::from_seed(&[2; 64]),
        )
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (k768, k1024) = keys();

    if let Ok(ek) = mlkem768::EncapsulationKey::from_bytes(data) {
        assert_eq!(&ek.as_bytes()[..], data);
        let (a, sa) = ek.encapsulate(&[3; 32]);
        let (b, sb) = ek.encapsulate(&[3; 32]);
        assert!(a == b && sa == sb);
    }
    if let Ok(dk) = mlkem768::DecapsulationKey::from_bytes(data) {
        assert_eq!(&dk.as_bytes()[..], data);
        // A key that parsed holds a valid ek (hash and modulus checks): it must parse too.
        // (Decapsulating what that ek encapsulates need not succeed: the checks cannot tell
        // whether the secret vector belongs to the ek.)
        let ek = dk.encapsulation_key();
        assert!(mlkem768::EncapsulationKey::from_bytes(ek.as_bytes()).is_ok());
        let (ct, _) = ek.encapsulate(&[4; 32]);
        let _ = dk.decapsulate(&ct);
    }
    if let Ok(ct) = mlkem768::Ciphertext::from_bytes(data) {
        assert_eq!(&ct.as_bytes()[..], data);
        let a = k768.decapsulation_key.decapsulate(&ct);
        assert_eq!(k768.decapsulation_key.decapsulate(&ct), a);
    }

    if let Ok(ek) = mlkem1024::EncapsulationKey::from_bytes(data) {
        assert_eq!(&ek.as_bytes()[..], data);
    }
    if let Ok(dk) = mlkem1024::DecapsulationKey::from_bytes(data) {
        assert_eq!(&dk.as_bytes()[..], data);
    }
    if let Ok(ct) = mlkem1024::Ciphertext::from_bytes(data) {
        let _ = k1024.decapsulation_key.decapsulate(&ct);
    }
});
