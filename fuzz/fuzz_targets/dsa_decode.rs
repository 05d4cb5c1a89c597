#![no_main]
//! Parses arbitrary bytes as ML-DSA keys and signatures and verifies with fixed keys.
//!
//! Checks: parsing and verification never panic; nothing but the fixed signatures verifies
//! under the fixed keys (the input is split into context and signature so both vary).

use std::sync::OnceLock;

use crypto::dsa::{mldsa65, mldsa87};

const MSG: &[u8] = b"fuzz message";

struct Fixed {
    k65: mldsa65::KeyPair,
    sig65: mldsa65::Signature,
    k87: mldsa87::KeyPair,
    sig87: mldsa87::Signature,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let k65 = mldsa65::KeyPair::from_seed(&[5; 32]);
        let k87 = mldsa87::KeyPair::from_seed(&[6; 32]);
        let sig65 = k65
            .signing_key
            .sign(MSG, b"", &[0; 32])
            .expect("signing terminates");
        let sig87 = k87
            .signing_key
            .sign(MSG, b"", &[0; 32])
            .expect("signing terminates");
        Fixed {
            k65,
            sig65,
            k87,
            sig87,
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let f = fixed();
    // First byte: context length; then the context; the rest is the signature.
    let (ctx, rest) = match data.split_first() {
        Some((&n, rest)) if (n as usize) <= rest.len() => rest.split_at(n as usize),
        _ => (&[][..], data),
    };

    if let Ok(sig) = mldsa65::Signature::from_bytes(rest) {
        let ok = f.k65.verifying_key.verify(MSG, ctx, &sig).is_ok();
        assert_eq!(
            ok,
            ctx.is_empty() && sig == f.sig65,
            "forged ML-DSA-65 signature"
        );
    }
    if let Ok(sig) = mldsa87::Signature::from_bytes(rest) {
        let ok = f.k87.verifying_key.verify(MSG, ctx, &sig).is_ok();
        assert_eq!(
            ok,
            ctx.is_empty() && sig == f.sig87,
            "forged ML-DSA-87 signature"
        );
    }
    if let Ok(vk) = mldsa65::VerifyingKey::from_bytes(data) {
        assert_eq!(&vk.as_bytes()[..], data);
        let ok = vk.verify(MSG, b"", &f.sig65).is_ok();
        assert_eq!(ok, vk == f.k65.verifying_key);
    }
    if let Ok(vk) = mldsa87::VerifyingKey::from_bytes(data) {
        let _ = vk.verify(MSG, b"", &f.sig87);
    }
    if let Ok(sk) = mldsa65::SigningKey::from_bytes(data) {
        // An arbitrary signing key may be malformed; signing must still not panic.
        let _ = sk.sign(MSG, b"", &[0; 32]);
    }
    let _ = mldsa87::SigningKey::from_bytes(data);
});
