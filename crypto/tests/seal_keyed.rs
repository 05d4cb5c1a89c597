//! Sealed transactions of format version 2 (they name their key for rotation): the documented
//! construction rebuilt from the primitives, the key id, version 1 still read unchanged, and
//! tampering of every byte, the key id included.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use epa_crypto::Error;
use epa_crypto::kdf::Kdf;
use epa_crypto::kem::mlkem768;
use epa_crypto::seal::{
    EncryptedTx, HEADER_LEN_KEYED, KeyId, MAX_ENCODED_LEN_KEYED, MAX_PAYLOAD_LEN, SealRandomness,
    TX_FORMAT_VERSION, TX_FORMAT_VERSION_KEYED, TxContext, open_transaction,
    open_with_shared_secret, seal_transaction, seal_transaction_keyed,
    seal_transaction_keyed_with_randomness,
};
use proptest::prelude::*;
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use sha3::Digest;

fn keypair() -> mlkem768::KeyPair {
    mlkem768::KeyPair::generate(&mut OsRng).expect("OS randomness")
}

fn random_ctx() -> TxContext {
    TxContext {
        shard: OsRng.r#gen(),
        batch: OsRng.r#gen(),
    }
}

/// Version 2 exactly as the module documentation states it.
fn reference_seal_keyed(
    ek: &mlkem768::EncapsulationKey,
    payload: &[u8],
    ctx: &TxContext,
    m: &[u8; 32],
    nonce: &[u8; 12],
) -> Vec<u8> {
    let id = &sha3::Sha3_256::digest(ek.as_bytes())[..8];
    let (ct, ss) = ek.encapsulate(m);
    let key = Kdf::new(b"EPA-v1/seal/key")
        .input(ss.as_bytes())
        .input(ct.as_bytes())
        .input(&[2])
        .input(&ctx.shard.to_le_bytes())
        .input(&ctx.batch.to_le_bytes())
        .derive_array::<32>();
    let mut aad = b"EPA-v1/seal/aad".to_vec();
    aad.push(2);
    aad.extend_from_slice(&ctx.shard.to_le_bytes());
    aad.extend_from_slice(&ctx.batch.to_le_bytes());
    aad.extend_from_slice(ct.as_bytes());
    aad.extend_from_slice(id);
    let sealed = ChaCha20Poly1305::new(Key::from_slice(&key[..]))
        .encrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: payload,
                aad: &aad,
            },
        )
        .expect("small payload");
    let mut out = vec![2u8];
    out.extend_from_slice(id);
    out.extend_from_slice(ct.as_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&sealed);
    out
}

#[test]
fn keyed_matches_the_documented_construction() {
    for _ in 0..6 {
        let pair = keypair();
        let mut payload = vec![0u8; OsRng.gen_range(0..400)];
        OsRng.fill_bytes(&mut payload);
        let ctx = random_ctx();
        let r = SealRandomness::generate(&mut OsRng).expect("OS randomness");
        let tx =
            seal_transaction_keyed_with_randomness(&pair.encapsulation_key, &payload, &ctx, &r)
                .expect("seal");
        let bytes = tx.to_bytes();
        assert_eq!(
            bytes,
            reference_seal_keyed(&pair.encapsulation_key, &payload, &ctx, &r.encaps, &r.nonce)
        );
        assert_eq!(bytes.len(), HEADER_LEN_KEYED + payload.len() + 16);
        assert_eq!(tx.encoded_len(), bytes.len());
        assert_eq!(tx.version(), TX_FORMAT_VERSION_KEYED);
        let id = KeyId::of(&pair.encapsulation_key);
        assert_eq!(tx.key_id(), Some(id));
        assert_eq!(KeyId::of_decapsulation_key(&pair.decapsulation_key), id);
        assert_eq!(id.to_string(), hex::encode(id.0));
        let parsed = EncryptedTx::from_bytes(&bytes).expect("parse");
        assert_eq!(parsed, tx);
        let opened = open_transaction(&pair.decapsulation_key, &parsed, &ctx).expect("open");
        assert_eq!(&opened[..], &payload[..]);
    }
}

#[test]
fn key_ids_differ_between_keys_and_version_1_stays_readable() {
    let (a, b) = (keypair(), keypair());
    assert_ne!(
        KeyId::of(&a.encapsulation_key),
        KeyId::of(&b.encapsulation_key)
    );
    let ctx = random_ctx();
    let v1 = seal_transaction(&a.encapsulation_key, b"old", &ctx, &mut OsRng).expect("seal");
    let bytes = v1.to_bytes();
    assert_eq!(bytes[0], TX_FORMAT_VERSION);
    let parsed = EncryptedTx::from_bytes(&bytes).expect("version 1 parses");
    assert_eq!(parsed.key_id(), None);
    assert_eq!(parsed.version(), TX_FORMAT_VERSION);
    assert_eq!(
        &open_transaction(&a.decapsulation_key, &parsed, &ctx).expect("open")[..],
        b"old"
    );
    // A transaction sealed to `a` does not open with `b`'s key.
    let v2 = seal_transaction_keyed(&a.encapsulation_key, b"new", &ctx, &mut OsRng).expect("seal");
    assert_eq!(
        open_transaction(&b.decapsulation_key, &v2, &ctx),
        Err(Error::OpenFailed)
    );
}

#[test]
fn every_tampered_byte_of_a_keyed_transaction_fails_to_open() {
    let pair = keypair();
    let ctx = random_ctx();
    let tx = seal_transaction_keyed(&pair.encapsulation_key, b"rotate me", &ctx, &mut OsRng)
        .expect("seal");
    let bytes = tx.to_bytes();
    let ss = pair.decapsulation_key.decapsulate(tx.kem_ciphertext());
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 1 << OsRng.gen_range(0..8);
        match EncryptedTx::from_bytes(&bad) {
            Err(Error::UnsupportedVersion { .. }) => assert_eq!(i, 0),
            // The key id, then everything else: the shared secret of the untouched ciphertext
            // still fails, because the id and the version are bound into the AEAD.
            Ok(bad_tx) => assert_eq!(
                open_with_shared_secret(&ss, &bad_tx, &ctx).and_then(|_| open_transaction(
                    &pair.decapsulation_key,
                    &bad_tx,
                    &ctx
                )),
                Err(Error::OpenFailed),
                "byte {i} tampered"
            ),
            Err(e) => panic!("byte {i}: unexpected {e}"),
        }
    }
    // Rewritten as version 1 (key id dropped) it does not open either.
    let mut as_v1 = vec![TX_FORMAT_VERSION];
    as_v1.extend_from_slice(&bytes[9..]);
    let parsed = EncryptedTx::from_bytes(&as_v1).expect("a well-formed version 1");
    assert_eq!(
        open_transaction(&pair.decapsulation_key, &parsed, &ctx),
        Err(Error::OpenFailed)
    );
}

#[test]
fn keyed_limits() {
    let pair = keypair();
    let ctx = random_ctx();
    let max = vec![7u8; MAX_PAYLOAD_LEN];
    let tx = seal_transaction_keyed(&pair.encapsulation_key, &max, &ctx, &mut OsRng).expect("seal");
    let mut bytes = tx.to_bytes();
    assert_eq!(bytes.len(), MAX_ENCODED_LEN_KEYED);
    EncryptedTx::from_bytes(&bytes).expect("the largest keyed transaction parses");
    bytes.push(0);
    assert!(matches!(
        EncryptedTx::from_bytes(&bytes),
        Err(Error::TooLong { .. })
    ));
    for len in 0..HEADER_LEN_KEYED + 16 {
        assert!(
            matches!(
                EncryptedTx::from_bytes(&bytes[..len]),
                Err(Error::Truncated { .. })
            ),
            "length {len}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn keyed_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..600),
                        shard in any::<u32>(), batch in any::<u64>(),
                        m in any::<[u8; 32]>(), nonce in any::<[u8; 12]>()) {
        let pair = mlkem768::KeyPair::from_seed(&[5; 64]);
        let ctx = TxContext { shard, batch };
        let r = SealRandomness { encaps: m, nonce };
        let tx = seal_transaction_keyed_with_randomness(&pair.encapsulation_key, &payload, &ctx, &r)?;
        let parsed = EncryptedTx::from_bytes(&tx.to_bytes())?;
        prop_assert_eq!(parsed.key_id(), Some(KeyId::of(&pair.encapsulation_key)));
        let opened = open_transaction(&pair.decapsulation_key, &parsed, &ctx)?;
        prop_assert_eq!(&opened[..], &payload[..]);
    }
}
