#![no_main]
//! Parses arbitrary bytes as an encrypted transaction and tries to open it with a fixed key.
//!
//! Checks: parsing and opening never panic; what parses re-encodes to the same bytes; the only
//! input that opens is the one transaction genuinely sealed to the fixed key and context (also
//! the seed corpus entry): anything else that opened would be a Poly1305 forgery.

use std::sync::OnceLock;

use crypto::kem::mlkem768;
use crypto::seal::{
    EncryptedTx, SealRandomness, TxContext, open_transaction, seal_transaction_with_randomness,
};

const CTX: TxContext = TxContext { shard: 1, batch: 2 };

fn fixed() -> &'static (mlkem768::KeyPair, Vec<u8>) {
    static FIXED: OnceLock<(mlkem768::KeyPair, Vec<u8>)> = OnceLock::new();
    FIXED.get_or_init(|| {
        let pair = mlkem768::KeyPair::from_seed(&[7; 64]);
        let randomness = SealRandomness {
            encaps: [1; 32],
            nonce: [2; 12],
        };
        let genuine =
            seal_transaction_with_randomness(&pair.encapsulation_key, b"hello", &CTX, &randomness)
                .expect("a 5-byte payload is within the limit");
        (pair, genuine.to_bytes())
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (pair, genuine) = fixed();
    if let Ok(tx) = EncryptedTx::from_bytes(data) {
        assert_eq!(tx.to_bytes(), data);
        match open_transaction(&pair.decapsulation_key, &tx, &CTX) {
            Ok(payload) => {
                assert_eq!(data, &genuine[..], "a forged transaction opened");
                assert_eq!(&payload[..], b"hello");
            }
            Err(_) => assert_ne!(data, &genuine[..]),
        }
    }
});
