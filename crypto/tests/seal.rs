//! Sealed transactions: round trips, the documented construction rebuilt independently, strict
//! parsing, and tampering of every part.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use epa_crypto::Error;
use epa_crypto::detenc::{self, DetEncContext, DetEncSeed};
use epa_crypto::kdf::Kdf;
use epa_crypto::kem::{MlKem768, mlkem768};
use epa_crypto::seal::{
    EncryptedTx, HEADER_LEN, MAX_ENCODED_LEN, MAX_PAYLOAD_LEN, MIN_ENCODED_LEN, SealRandomness,
    TxContext, open_transaction, open_with_shared_secret, seal_transaction,
    seal_transaction_with_randomness, seal_with_shared_secret,
};
use proptest::prelude::*;
use rand::rngs::OsRng;
use rand::{Rng, RngCore};

fn keypair() -> mlkem768::KeyPair {
    mlkem768::KeyPair::generate(&mut OsRng).expect("OS randomness")
}

fn random_payload(max: usize) -> Vec<u8> {
    let mut p = vec![0u8; OsRng.gen_range(0..=max)];
    OsRng.fill_bytes(&mut p);
    p
}

fn random_ctx() -> TxContext {
    TxContext {
        shard: OsRng.r#gen(),
        batch: OsRng.r#gen(),
    }
}

/// The format and key schedule exactly as the module documentation states them, rebuilt from
/// the primitives.
fn reference_seal(
    ek: &mlkem768::EncapsulationKey,
    payload: &[u8],
    ctx: &TxContext,
    m: &[u8; 32],
    nonce: &[u8; 12],
) -> Vec<u8> {
    let (ct, ss) = ek.encapsulate(m);
    let key = Kdf::new(b"EPA-v1/seal/key")
        .input(ss.as_bytes())
        .input(ct.as_bytes())
        .input(&[1])
        .input(&ctx.shard.to_le_bytes())
        .input(&ctx.batch.to_le_bytes())
        .derive_array::<32>();
    let mut aad = b"EPA-v1/seal/aad".to_vec();
    aad.push(1);
    aad.extend_from_slice(&ctx.shard.to_le_bytes());
    aad.extend_from_slice(&ctx.batch.to_le_bytes());
    aad.extend_from_slice(ct.as_bytes());
    let sealed = ChaCha20Poly1305::new(Key::from_slice(&key[..]))
        .encrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: payload,
                aad: &aad,
            },
        )
        .expect("small payload");
    let mut out = vec![1u8];
    out.extend_from_slice(ct.as_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&sealed);
    out
}

#[test]
fn matches_the_documented_construction() {
    for _ in 0..8 {
        let pair = keypair();
        let payload = random_payload(300);
        let ctx = random_ctx();
        let r = SealRandomness::generate(&mut OsRng).expect("OS randomness");
        let tx = seal_transaction_with_randomness(&pair.encapsulation_key, &payload, &ctx, &r)
            .expect("seal");
        let bytes = tx.to_bytes();
        assert_eq!(
            bytes,
            reference_seal(&pair.encapsulation_key, &payload, &ctx, &r.encaps, &r.nonce)
        );
        assert_eq!(bytes.len(), HEADER_LEN + payload.len() + 16);
        assert_eq!(tx.encoded_len(), bytes.len());
        assert_eq!(tx.payload_len(), payload.len());
        assert_eq!(&bytes[1..1089], tx.kem_ciphertext().as_bytes());
        assert_eq!(&bytes[1089..1101], tx.nonce());
        assert_eq!(&bytes[1101..], tx.sealed_payload());
        // Explicit randomness is deterministic.
        let again = seal_transaction_with_randomness(&pair.encapsulation_key, &payload, &ctx, &r)
            .expect("seal");
        assert_eq!(again, tx);
    }
}

#[test]
fn round_trip_through_bytes() {
    let pair = keypair();
    for _ in 0..16 {
        let payload = random_payload(2000);
        let ctx = random_ctx();
        let tx =
            seal_transaction(&pair.encapsulation_key, &payload, &ctx, &mut OsRng).expect("seal");
        let parsed = EncryptedTx::from_bytes(&tx.to_bytes()).expect("parse");
        assert_eq!(parsed, tx);
        let opened = open_transaction(&pair.decapsulation_key, &parsed, &ctx).expect("open");
        assert_eq!(&opened[..], &payload[..]);
    }
}

#[test]
fn batch_path_decapsulates_first_and_opens_later() {
    let pair = keypair();
    let ctx = random_ctx();
    let payloads: Vec<Vec<u8>> = (0..10).map(|_| random_payload(100)).collect();
    let txs: Vec<EncryptedTx> = payloads
        .iter()
        .map(|p| seal_transaction(&pair.encapsulation_key, p, &ctx, &mut OsRng).expect("seal"))
        .collect();
    // Stage 1: decapsulate every ciphertext (what the batch kernel does).
    let secrets: Vec<_> = txs
        .iter()
        .map(|tx| pair.decapsulation_key.decapsulate(tx.kem_ciphertext()))
        .collect();
    // Stage 2: open each with its secret; a secret from another transaction fails.
    for (i, tx) in txs.iter().enumerate() {
        let opened = open_with_shared_secret(&secrets[i], tx, &ctx).expect("open");
        assert_eq!(&opened[..], &payloads[i][..]);
        let other = &secrets[(i + 1) % secrets.len()];
        assert_eq!(
            open_with_shared_secret(other, tx, &ctx),
            Err(Error::OpenFailed)
        );
    }
}

#[test]
fn deterministic_encapsulation_seals_reproducibly() {
    let pair = keypair();
    let seed = DetEncSeed::from_bytes(OsRng.r#gen());
    let ctx = random_ctx();
    let dctx = DetEncContext {
        shard: ctx.shard,
        batch: ctx.batch,
        tx_index: 5,
        extra: b"",
    };
    let payload = random_payload(500);
    let seal = || {
        let (ct, ss) = detenc::encapsulate::<MlKem768>(&pair.encapsulation_key, &seed, &dctx);
        seal_with_shared_secret(&ss, ct, [7; 12], &payload, &ctx).expect("seal")
    };
    let tx = seal();
    assert_eq!(seal().to_bytes(), tx.to_bytes());
    let opened = open_transaction(&pair.decapsulation_key, &tx, &ctx).expect("open");
    assert_eq!(&opened[..], &payload[..]);
}

#[test]
fn every_tampered_byte_fails_to_open() {
    let pair = keypair();
    let ctx = random_ctx();
    let payload = random_payload(64);
    let tx = seal_transaction(&pair.encapsulation_key, &payload, &ctx, &mut OsRng).expect("seal");
    let bytes = tx.to_bytes();
    // Every position of the encoding: version, KEM ciphertext, nonce, sealed payload and tag.
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 1 << OsRng.gen_range(0..8);
        match EncryptedTx::from_bytes(&bad) {
            Err(Error::UnsupportedVersion { version, .. }) => {
                assert_eq!(i, 0);
                assert_ne!(version, 1);
            }
            Ok(bad_tx) => assert_eq!(
                open_transaction(&pair.decapsulation_key, &bad_tx, &ctx),
                Err(Error::OpenFailed),
                "byte {i} tampered"
            ),
            Err(e) => panic!("byte {i}: unexpected {e}"),
        }
    }
}

#[test]
fn wrong_context_or_key_fails_to_open() {
    let pair = keypair();
    let ctx = random_ctx();
    let tx = seal_transaction(&pair.encapsulation_key, b"payload", &ctx, &mut OsRng).expect("seal");
    for other in [
        TxContext {
            shard: ctx.shard ^ 1,
            ..ctx
        },
        TxContext {
            batch: ctx.batch ^ 1,
            ..ctx
        },
    ] {
        assert_eq!(
            open_transaction(&pair.decapsulation_key, &tx, &other),
            Err(Error::OpenFailed)
        );
    }
    assert_eq!(
        open_transaction(&keypair().decapsulation_key, &tx, &ctx),
        Err(Error::OpenFailed)
    );
}

#[test]
fn strict_parsing_and_limits() {
    let pair = keypair();
    let ctx = random_ctx();
    assert!(matches!(
        EncryptedTx::from_bytes(&[]),
        Err(Error::Truncated { .. })
    ));
    let tx = seal_transaction(&pair.encapsulation_key, b"", &ctx, &mut OsRng).expect("seal");
    let bytes = tx.to_bytes();
    assert_eq!(bytes.len(), MIN_ENCODED_LEN);
    // Every truncation below the minimum is refused.
    for len in 0..MIN_ENCODED_LEN {
        assert!(
            matches!(
                EncryptedTx::from_bytes(&bytes[..len]),
                Err(Error::Truncated { .. })
            ),
            "length {len}"
        );
    }
    let mut v3 = bytes.clone();
    v3[0] = 3;
    assert_eq!(
        EncryptedTx::from_bytes(&v3),
        Err(Error::UnsupportedVersion {
            what: "encrypted transaction",
            version: 3,
            min: 1,
            max: 2
        })
    );
    // The largest payload seals and opens; one byte more is refused before any work.
    let max = vec![0xabu8; MAX_PAYLOAD_LEN];
    let tx = seal_transaction(&pair.encapsulation_key, &max, &ctx, &mut OsRng).expect("seal");
    let big = tx.to_bytes();
    assert_eq!(big.len(), MAX_ENCODED_LEN);
    let parsed = EncryptedTx::from_bytes(&big).expect("max size parses");
    assert_eq!(
        open_transaction(&pair.decapsulation_key, &parsed, &ctx)
            .expect("open")
            .len(),
        MAX_PAYLOAD_LEN
    );
    let mut too_big = big.clone();
    too_big.push(0);
    assert!(matches!(
        EncryptedTx::from_bytes(&too_big),
        Err(Error::TooLong { .. })
    ));
    let over = vec![0u8; MAX_PAYLOAD_LEN + 1];
    assert_eq!(
        seal_transaction(&pair.encapsulation_key, &over, &ctx, &mut OsRng),
        Err(Error::TooLong {
            what: "transaction payload",
            len: (MAX_PAYLOAD_LEN + 1) as u64,
            max: MAX_PAYLOAD_LEN as u64
        })
    );
}

#[test]
fn randomness_never_prints() {
    let r = SealRandomness {
        encaps: [0x5a; 32],
        nonce: [0x5a; 12],
    };
    let s = format!("{r:?}");
    assert!(s.contains("redacted") && !s.contains("90") && !s.contains("5a"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
        let pair = mlkem768::KeyPair::from_seed(&[3; 64]);
        if let Ok(tx) = EncryptedTx::from_bytes(&bytes) {
            prop_assert_eq!(tx.to_bytes(), bytes.clone());
            prop_assert_eq!(
                open_transaction(&pair.decapsulation_key, &tx, &TxContext { shard: 0, batch: 0 }),
                Err(Error::OpenFailed)
            );
        }
    }

    #[test]
    fn seal_open_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..600),
                            shard in any::<u32>(), batch in any::<u64>(),
                            m in any::<[u8; 32]>(), nonce in any::<[u8; 12]>()) {
        let pair = mlkem768::KeyPair::from_seed(&[4; 64]);
        let ctx = TxContext { shard, batch };
        let r = SealRandomness { encaps: m, nonce };
        let tx = seal_transaction_with_randomness(&pair.encapsulation_key, &payload, &ctx, &r)?;
        let parsed = EncryptedTx::from_bytes(&tx.to_bytes())?;
        let opened = open_transaction(&pair.decapsulation_key, &parsed, &ctx)?;
        prop_assert_eq!(&opened[..], &payload[..]);
    }
}
