use super::*;
use crate::Error;
use crypto::dsa::mldsa65::{self, KeyPair, SIGNATURE_LEN, Signature};
use proptest::prelude::*;
use sha3::Shake256;
use sha3::digest::{ExtendableOutput, Update, XofReader};

/// Small limits so over-limit cases stay cheap.
fn small() -> Limits {
    Limits {
        max_frame_len: 64 * 1024,
        max_txs_per_batch: 4,
        max_tx_len: 64,
        max_air_name_len: 16,
        max_public_inputs_len: 32,
        max_witness_len: 128,
        max_proof_len: 256,
        max_shards_per_subscription: 5,
        max_message_len: 24,
    }
}

fn keypair(seed: u8) -> KeyPair {
    KeyPair::from_seed(&[seed; 32])
}

fn sig_from(bytes: &[u8]) -> Signature {
    let mut full = vec![0u8; SIGNATURE_LEN];
    for (i, b) in full.iter_mut().enumerate() {
        *b = bytes[i % bytes.len().max(1)].wrapping_add(i as u8);
    }
    Signature::from_bytes(&full).expect("exactly SIGNATURE_LEN bytes")
}

fn reference_shake(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Shake256::default();
    for p in parts {
        h.update(p);
    }
    let mut out = [0u8; 32];
    h.finalize_xof().read(&mut out);
    out
}

// ---------- strategies ----------

fn arb_sig() -> impl Strategy<Value = Signature> {
    prop::collection::vec(any::<u8>(), 1..8).prop_map(|b| sig_from(&b))
}

fn arb_batch(l: Limits) -> impl Strategy<Value = Batch> {
    (
        any::<u32>(),
        any::<u64>(),
        any::<[u8; 32]>(),
        prop::collection::vec(
            prop::collection::vec(any::<u8>(), 0..=l.max_tx_len as usize),
            0..=l.max_txs_per_batch as usize,
        ),
        any::<[u8; 32]>(),
        arb_sig(),
    )
        .prop_map(|(shard, seq, prev_root, txs, agg, signature)| Batch {
            shard,
            seq,
            prev_root,
            txs,
            aggregator: KeyId(agg),
            signature,
        })
}

fn arb_text(max: u32) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::char::range('a', 'z'), 0..=max as usize)
        .prop_map(|c| c.into_iter().collect())
}

fn arb_request(l: Limits) -> impl Strategy<Value = Request> {
    prop_oneof![
        arb_batch(l).prop_map(Request::SubmitBatch),
        (
            arb_text(l.max_air_name_len),
            prop::collection::vec(any::<u8>(), 0..=l.max_public_inputs_len as usize),
            prop::collection::vec(any::<u8>(), 0..=l.max_witness_len as usize),
            any::<u8>(),
            any::<u8>(),
        )
            .prop_map(|(air, public_inputs, witness, preset, hash)| {
                Request::SubmitProvingJob(ProvingJob {
                    air,
                    public_inputs,
                    witness,
                    options: ProvingOptions { preset, hash },
                })
            }),
        any::<u64>().prop_map(|id| Request::JobStatus { id: JobId(id) }),
        any::<u64>().prop_map(|id| Request::FetchProof { id: JobId(id) }),
        (
            prop::collection::btree_set(any::<u32>(), 0..=l.max_shards_per_subscription as usize),
            any::<u64>()
        )
            .prop_map(
                |(shards, from_height)| Request::Subscribe(SubscribeRequest {
                    shards: shards.into_iter().collect(),
                    from_height,
                })
            ),
    ]
}

fn arb_code() -> impl Strategy<Value = RejectCode> {
    prop::sample::select(RejectCode::ALL.to_vec())
}

fn arb_response(l: Limits) -> impl Strategy<Value = Response> {
    let states = vec![
        JobState::Queued,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
        JobState::Cancelled,
    ];
    let stages = vec![
        Stage::Pending,
        Stage::Decap,
        Stage::Execute,
        Stage::Prove,
        Stage::Publish,
        Stage::Finished,
    ];
    prop_oneof![
        any::<u64>().prop_map(|id| Response::Accepted { id: JobId(id) }),
        (arb_code(), arb_text(l.max_message_len))
            .prop_map(|(code, message)| Response::Rejected(Rejection { code, message })),
        (
            any::<u64>(),
            prop::sample::select(states),
            prop::sample::select(stages),
            0..=MAX_PROGRESS
        )
            .prop_map(
                |(id, state, stage, progress)| Response::Status(JobStatusReport {
                    id: JobId(id),
                    state,
                    stage,
                    progress,
                })
            ),
        (
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..=l.max_proof_len as usize)
        )
            .prop_map(|(id, envelope)| Response::Proof {
                id: JobId(id),
                envelope
            }),
        any::<u64>().prop_map(|id| Response::NotFound { id: JobId(id) }),
        any::<u64>().prop_map(|subscription| Response::Subscribed { subscription }),
        arb_text(l.max_message_len).prop_map(|tenant| Response::Authenticated { tenant }),
    ]
}

fn arb_commitment(l: Limits) -> impl Strategy<Value = Commitment> {
    (
        any::<u32>(),
        any::<u64>(),
        any::<[[u8; 32]; 3]>(),
        prop::collection::vec(any::<u8>(), 0..=l.max_proof_len as usize),
        arb_sig(),
    )
        .prop_map(
            |(shard, height, [old_root, new_root, batch_hash], proof, signature)| Commitment {
                shard,
                height,
                old_root,
                new_root,
                batch_hash,
                proof,
                signature,
            },
        )
}

fn arb_push(l: Limits) -> impl Strategy<Value = Push> {
    prop_oneof![
        any::<u64>().prop_map(|subscription| Push::Start { subscription }),
        arb_commitment(l).prop_map(Push::Commitment),
    ]
}

/// Feeds `bytes` to a fresh decoder in chunks of `chunk` bytes and collects the frames.
fn decode_chunked(bytes: &[u8], chunk: usize, max: u32) -> Result<Vec<Frame>, Error> {
    let mut dec = FrameDecoder::new(max);
    let mut out = Vec::new();
    for part in bytes.chunks(chunk.max(1)) {
        dec.push(part);
        while let Some(f) = dec.next_frame()? {
            out.push(f);
        }
    }
    dec.finish("test stream")?;
    Ok(out)
}

fn round_trip<M: Message + PartialEq + core::fmt::Debug>(msgs: &[M], chunk: usize, l: &Limits) {
    let mut stream = Vec::new();
    for m in msgs {
        stream.extend(m.encode(l).expect("generated within limits"));
    }
    let frames = decode_chunked(&stream, chunk, l.max_frame_len).expect("valid stream");
    let back: Vec<M> = frames
        .iter()
        .map(|f| M::from_frame(f, l).expect("valid frame"))
        .collect();
    assert_eq!(back.as_slice(), msgs);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn requests_round_trip(msgs in prop::collection::vec(arb_request(small()), 1..4), chunk in 1usize..300) {
        round_trip(&msgs, chunk, &small());
    }

    #[test]
    fn responses_round_trip(msgs in prop::collection::vec(arb_response(small()), 1..6), chunk in 1usize..300) {
        round_trip(&msgs, chunk, &small());
    }

    #[test]
    fn pushes_round_trip(msgs in prop::collection::vec(arb_push(small()), 1..4), chunk in 1usize..5000) {
        round_trip(&msgs, chunk, &small());
    }

    #[test]
    fn every_encoding_is_canonical(req in arb_request(small())) {
        // Re-encoding a decoded message gives the same bytes.
        let l = small();
        let bytes = req.encode(&l).unwrap();
        let frame = Frame::decode_exact(&bytes, l.max_frame_len).unwrap();
        let back = Request::from_frame(&frame, &l).unwrap();
        prop_assert_eq!(back.encode(&l).unwrap(), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..64, kind in any::<u16>()) {
        let l = small();
        // Through the streaming decoder, in chunks: frames or a typed error.
        let mut dec = FrameDecoder::new(l.max_frame_len);
        let mut err = None;
        for part in bytes.chunks(chunk) {
            dec.push(part);
            loop {
                match dec.next_frame() {
                    Ok(Some(f)) => {
                        let _ = Request::from_frame(&f, &l);
                        let _ = Response::from_frame(&f, &l);
                        let _ = Push::from_frame(&f, &l);
                    }
                    Ok(None) => break,
                    Err(e) => { err = Some(e); break; }
                }
            }
            if err.is_some() { break; }
        }
        if err.is_some() {
            assert!(matches!(dec.next_frame(), Err(Error::DecoderPoisoned)));
        }
        // Every message decoder on the raw body, for any kind.
        let _ = Request::decode_body(kind, &bytes, &l);
        let _ = Response::decode_body(kind, &bytes, &l);
        let _ = Push::decode_body(kind, &bytes, &l);
    }

    #[test]
    fn truncated_frames_are_errors(req in arb_request(small()), cut_seed in any::<usize>()) {
        let l = small();
        let bytes = req.encode(&l).unwrap();
        let cut = cut_seed % bytes.len();
        // A truncated stream is incomplete, never a different message.
        assert!(matches!(
            Frame::decode_exact(&bytes[..cut], l.max_frame_len),
            Err(Error::IncompleteFrame { .. })
        ));
        // A body cut short (with a consistent length) fails to decode.
        let frame = Frame::decode_exact(&bytes, l.max_frame_len).unwrap();
        if !frame.body.is_empty() {
            let short = &frame.body[..cut_seed % frame.body.len()];
            prop_assert!(Request::decode_body(frame.kind, short, &l).is_err());
        }
        // A trailing byte is rejected.
        let mut long = frame.body.clone();
        long.push(0);
        prop_assert!(Request::decode_body(frame.kind, &long, &l).is_err());
    }

    #[test]
    fn pair_harness_delivers_in_any_chunking(reqs in prop::collection::vec(arb_request(small()), 1..4),
                                             resps in prop::collection::vec(arb_response(small()), 1..4),
                                             c1 in 1usize..97, c2 in 1usize..97) {
        let mut pair = MemoryPair::new(small());
        for r in &reqs { pair.client_send(r).unwrap(); }
        prop_assert_eq!(pair.pump_to_server(c1).unwrap(), reqs);
        for r in &resps { pair.server_send(r).unwrap(); }
        prop_assert_eq!(pair.pump_to_client(c2).unwrap(), resps);
    }
}

// ---------- frame layout and limits ----------

#[test]
fn fixed_vector_job_status_frame() {
    let bytes = Request::JobStatus {
        id: JobId(0x0102_0304_0506_0708),
    }
    .encode(&Limits::default())
    .unwrap();
    let expected: Vec<u8> = [
        &12u32.to_le_bytes()[..],     // len = version + kind + 8-byte body
        &1u16.to_le_bytes()[..],      // version
        &0x0003u16.to_le_bytes()[..], // kind JobStatus
        &0x0102_0304_0506_0708u64.to_le_bytes()[..],
    ]
    .concat();
    assert_eq!(bytes, expected);
}

#[test]
fn fixed_vector_rejected_frame() {
    let rej = Response::Rejected(Rejection {
        code: RejectCode::WrongPrevRoot,
        message: "stale".into(),
    });
    let bytes = rej.encode(&Limits::default()).unwrap();
    let expected: Vec<u8> = [
        &(4u32 + 2 + 4 + 5).to_le_bytes()[..],
        &1u16.to_le_bytes()[..],
        &0x0102u16.to_le_bytes()[..],
        &4u16.to_le_bytes()[..],
        &5u32.to_le_bytes()[..],
        b"stale",
    ]
    .concat();
    assert_eq!(bytes, expected);
}

#[test]
fn oversized_frame_is_refused_from_its_header_alone() {
    let max = 1000u32;
    let mut dec = FrameDecoder::new(max);
    // Only the 4 length bytes: the decoder refuses before any body arrives.
    dec.push(&(max + 1).to_le_bytes());
    assert!(matches!(
        dec.next_frame(),
        Err(Error::FrameTooLarge {
            len: 1001,
            max: 1000
        })
    ));
    assert!(matches!(dec.next_frame(), Err(Error::DecoderPoisoned)));
    assert_eq!(dec.buffered(), 0);
    // Exactly at the limit is accepted.
    let frame = Frame {
        version: WIRE_VERSION,
        kind: 1,
        body: vec![7; (max - 4) as usize],
    };
    let bytes = frame.encode(max).unwrap();
    assert_eq!(Frame::decode_exact(&bytes, max).unwrap(), frame);
    // One byte over is refused by the writer too.
    let big = Frame {
        body: vec![7; (max - 3) as usize],
        ..frame
    };
    assert!(matches!(big.encode(max), Err(Error::FrameTooLarge { .. })));
}

#[test]
fn short_and_unversioned_frames_are_typed_errors() {
    for len in 0u32..4 {
        let mut dec = FrameDecoder::new(100);
        dec.push(&len.to_le_bytes());
        assert!(matches!(dec.next_frame(), Err(Error::FrameTooShort { .. })));
    }
    for version in [0u16, 2, u16::MAX] {
        let mut dec = FrameDecoder::new(100);
        dec.push(&8u32.to_le_bytes());
        dec.push(&version.to_le_bytes());
        // Refused as soon as the version arrives, before kind and body.
        let err = dec.next_frame().unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { .. }), "{err}");
        assert_eq!(err.reject_code(), RejectCode::Unsupported);
    }
}

#[test]
fn unknown_kinds_are_typed_errors() {
    let l = Limits::default();
    for kind in [0u16, 0x0006, 0x0101, 0x0202, 0xffff] {
        assert!(matches!(
            Request::decode_body(kind, &[], &l),
            Err(Error::UnknownKind {
                family: "request",
                ..
            })
        ));
    }
    // A response kind sent where a push is expected.
    assert!(matches!(
        Push::decode_body(kinds::ACCEPTED, &[0; 8], &l),
        Err(Error::UnknownKind { .. })
    ));
}

/// Builds a batch body by hand with a given tx count and tx sizes (no limit checks).
fn raw_batch_body(txs: &[Vec<u8>]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(3u32.to_le_bytes());
    b.extend(9u64.to_le_bytes());
    b.extend([1u8; 32]);
    b.extend((txs.len() as u32).to_le_bytes());
    for tx in txs {
        b.extend((tx.len() as u32).to_le_bytes());
        b.extend(tx);
    }
    b.extend([2u8; 32]);
    b.extend(vec![0u8; SIGNATURE_LEN]);
    b
}

fn assert_too_large(r: Result<impl core::fmt::Debug, Error>) {
    let e = r.unwrap_err();
    assert_eq!(e.reject_code(), RejectCode::TooLarge, "{e}");
}

#[test]
fn every_length_limit_is_enforced_on_read_and_write() {
    let l = small();
    let sig = sig_from(&[1]);
    // Batch: tx count and tx size.
    let ok = raw_batch_body(&vec![vec![0; 64]; 4]);
    assert!(Request::decode_body(kinds::SUBMIT_BATCH, &ok, &l).is_ok());
    assert_too_large(Request::decode_body(
        kinds::SUBMIT_BATCH,
        &raw_batch_body(&vec![vec![0; 1]; 5]),
        &l,
    ));
    assert_too_large(Request::decode_body(
        kinds::SUBMIT_BATCH,
        &raw_batch_body(&[vec![0; 65]]),
        &l,
    ));
    let mut batch = match Request::decode_body(kinds::SUBMIT_BATCH, &ok, &l).unwrap() {
        Request::SubmitBatch(b) => b,
        other => panic!("decoded {other:?}"),
    };
    batch.txs.push(vec![0]);
    assert_too_large(Request::SubmitBatch(batch.clone()).encode(&l));
    batch.txs = vec![vec![0; 65]];
    assert_too_large(Request::SubmitBatch(batch).encode(&l));

    // Proving job: AIR name, public inputs, witness.
    let job = |air: usize, pi: usize, wit: usize| {
        Request::SubmitProvingJob(ProvingJob {
            air: "a".repeat(air),
            public_inputs: vec![0; pi],
            witness: vec![0; wit],
            options: ProvingOptions { preset: 0, hash: 0 },
        })
    };
    let big = Limits {
        max_air_name_len: 1000,
        max_public_inputs_len: 1000,
        max_witness_len: 1000,
        ..l
    };
    assert!(job(16, 32, 128).encode(&l).is_ok());
    for (a, p, w) in [(17, 0, 0), (0, 33, 0), (0, 0, 129)] {
        let req = job(a, p, w);
        assert_too_large(req.encode(&l));
        // Written under bigger limits, the bytes are refused by the small reader.
        let frame = req.to_frame(&big).unwrap();
        assert_too_large(Request::from_frame(&frame, &l));
    }

    // Subscription shards.
    let sub = |n: u32| {
        Request::Subscribe(SubscribeRequest {
            shards: (0..n).collect(),
            from_height: 0,
        })
    };
    assert!(sub(5).encode(&l).is_ok());
    assert_too_large(sub(6).encode(&l));
    let frame = sub(6)
        .to_frame(&Limits {
            max_shards_per_subscription: 6,
            ..l
        })
        .unwrap();
    assert_too_large(Request::from_frame(&frame, &l));

    // Proof envelopes (response and push) and rejection text.
    let proof = |n: usize| Response::Proof {
        id: JobId(1),
        envelope: vec![0; n],
    };
    assert!(proof(256).encode(&l).is_ok());
    assert_too_large(proof(257).encode(&l));
    let bigger = Limits {
        max_proof_len: 257,
        max_message_len: 25,
        ..l
    };
    assert_too_large(Response::from_frame(
        &proof(257).to_frame(&bigger).unwrap(),
        &l,
    ));
    let commitment = |n: usize| {
        Push::Commitment(Commitment {
            shard: 0,
            height: 1,
            old_root: [0; 32],
            new_root: [0; 32],
            batch_hash: [0; 32],
            proof: vec![0; n],
            signature: sig.clone(),
        })
    };
    assert!(commitment(256).encode(&l).is_ok());
    assert_too_large(commitment(257).encode(&l));
    assert_too_large(Push::from_frame(
        &commitment(257).to_frame(&bigger).unwrap(),
        &l,
    ));
    let rej = |n: usize| {
        Response::Rejected(Rejection {
            code: RejectCode::Busy,
            message: "x".repeat(n),
        })
    };
    assert!(rej(24).encode(&l).is_ok());
    assert_too_large(rej(25).encode(&l));
    assert_too_large(Response::from_frame(
        &rej(25).to_frame(&bigger).unwrap(),
        &l,
    ));
    // Rejection::new cuts long text on a character boundary so it always encodes.
    let cut = Rejection::new(RejectCode::Busy, "é".repeat(20), l.max_message_len);
    assert_eq!(cut.message, "é".repeat(12));
    assert!(Response::Rejected(cut).encode(&l).is_ok());

    // The frame size itself.
    let tiny = Limits {
        max_frame_len: 100,
        ..l
    };
    assert!(matches!(
        proof(200).encode(&tiny),
        Err(Error::FrameTooLarge { .. })
    ));
}

#[test]
fn forged_counts_do_not_allocate() {
    // A batch claiming u32::MAX transactions under a permissive limit fails on the bytes
    // left, before reserving memory for them.
    let l = Limits {
        max_txs_per_batch: u32::MAX,
        ..small()
    };
    let mut body = Vec::new();
    body.extend(0u32.to_le_bytes());
    body.extend(0u64.to_le_bytes());
    body.extend([0u8; 32]);
    body.extend(u32::MAX.to_le_bytes());
    assert!(Request::decode_body(kinds::SUBMIT_BATCH, &body, &l).is_err());
}

#[test]
fn invalid_enumerations_and_text_are_typed_errors() {
    let l = Limits::default();
    let status = |state: u8, stage: u8, progress: u16| {
        let mut b = 5u64.to_le_bytes().to_vec();
        b.extend([state, stage]);
        b.extend(progress.to_le_bytes());
        Response::decode_body(kinds::STATUS, &b, &l)
    };
    assert!(status(4, 5, 10_000).is_ok());
    assert!(matches!(
        status(5, 0, 0),
        Err(Error::InvalidValue {
            what: "job state",
            ..
        })
    ));
    assert!(matches!(
        status(0, 6, 0),
        Err(Error::InvalidValue {
            what: "job stage",
            ..
        })
    ));
    assert!(matches!(
        status(0, 0, 10_001),
        Err(Error::InvalidValue {
            what: "job progress",
            ..
        })
    ));
    for code in [0u16, 14, 999] {
        let mut b = code.to_le_bytes().to_vec();
        b.extend(0u32.to_le_bytes());
        assert!(matches!(
            Response::decode_body(kinds::REJECTED, &b, &l),
            Err(Error::InvalidValue {
                what: "rejection code",
                ..
            })
        ));
    }
    for code in RejectCode::ALL {
        assert_eq!(RejectCode::from_u16(code.to_u16()).unwrap(), code);
    }
    let mut b = 2u32.to_le_bytes().to_vec();
    b.extend([0xff, 0xfe]);
    b.extend(0u32.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend([0, 0]);
    assert!(matches!(
        Request::decode_body(kinds::SUBMIT_PROVING_JOB, &b, &l),
        Err(Error::InvalidUtf8 { .. })
    ));
    // Unsorted or duplicate shards have a second encoding: refused both ways.
    let mut b = 2u32.to_le_bytes().to_vec();
    b.extend(7u32.to_le_bytes());
    b.extend(7u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    assert!(matches!(
        Request::decode_body(kinds::SUBSCRIBE, &b, &l),
        Err(Error::UnsortedShards)
    ));
    let unsorted = Request::Subscribe(SubscribeRequest {
        shards: vec![3, 1],
        from_height: 0,
    });
    assert!(matches!(unsorted.encode(&l), Err(Error::UnsortedShards)));
}

// ---------- signatures and hashes ----------

#[test]
fn batch_signing_bytes_and_hash_match_a_hand_built_reference() {
    let l = Limits::default();
    let kp = keypair(11);
    let txs = vec![vec![1, 2, 3], vec![], vec![9; 40]];
    let batch = Batch::sign(
        7,
        42,
        [5; 32],
        txs.clone(),
        &kp.signing_key,
        &kp.verifying_key,
        &[0; 32],
        &l,
    )
    .unwrap();
    let key_id = reference_shake(&[KEY_ID_DOMAIN, kp.verifying_key.as_bytes()]);
    assert_eq!(batch.aggregator.0, key_id);
    let mut reference = Vec::new();
    reference.extend(7u32.to_le_bytes());
    reference.extend(42u64.to_le_bytes());
    reference.extend([5u8; 32]);
    reference.extend(3u32.to_le_bytes());
    for tx in &txs {
        reference.extend((tx.len() as u32).to_le_bytes());
        reference.extend(tx);
    }
    reference.extend(key_id);
    assert_eq!(batch.signing_bytes(&l).unwrap(), reference);
    assert_eq!(
        batch.batch_hash(&l).unwrap(),
        reference_shake(&[BATCH_HASH_DOMAIN, &reference])
    );
    // The signature is a plain FIPS 204 signature under the batch context.
    kp.verifying_key
        .verify(&reference, BATCH_CONTEXT, &batch.signature)
        .unwrap();
    // The wire body is the signing bytes followed by the signature.
    let frame = Request::SubmitBatch(batch.clone()).to_frame(&l).unwrap();
    assert_eq!(
        frame.body,
        [&reference[..], batch.signature.as_bytes()].concat()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn batch_signatures_verify_and_detect_tampering(
        shard in any::<u32>(), seq in any::<u64>(), root in any::<[u8; 32]>(),
        txs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..4),
        rnd in any::<[u8; 32]>(), which in 0usize..5,
    ) {
        let l = Limits::default();
        let kp = keypair(1);
        let other = keypair(2);
        let batch = Batch::sign(shard, seq, root, txs, &kp.signing_key, &kp.verifying_key, &rnd, &l).unwrap();
        batch.verify(&kp.verifying_key, &l).unwrap();
        assert!(matches!(batch.verify(&other.verifying_key, &l), Err(Error::KeyMismatch { .. })));
        let hash = batch.batch_hash(&l).unwrap();
        // A signature with other randomness still gives the same batch hash.
        let again = Batch::sign(shard, seq, root, batch.txs.clone(), &kp.signing_key, &kp.verifying_key, &[9; 32], &l).unwrap();
        prop_assert_eq!(again.batch_hash(&l).unwrap(), hash);
        let mut bad = batch.clone();
        match which {
            0 => bad.shard ^= 1,
            1 => bad.seq ^= 1,
            2 => bad.prev_root[0] ^= 1,
            3 => bad.txs.push(vec![0]),
            _ => {
                let mut s = bad.signature.as_bytes().to_vec();
                s[100] ^= 1;
                bad.signature = mldsa65::Signature::from_bytes(&s).unwrap();
            }
        }
        let err = bad.verify(&kp.verifying_key, &l).unwrap_err();
        assert!(matches!(err, Error::Signature { .. }), "{}", err);
        prop_assert_eq!(err.reject_code(), RejectCode::BadSignature);
        if which < 4 {
            prop_assert_ne!(bad.batch_hash(&l).unwrap(), hash);
        }
    }

    #[test]
    fn commitment_signatures_verify_and_detect_tampering(
        shard in any::<u32>(), height in any::<u64>(), roots in any::<[[u8; 32]; 3]>(),
        proof in prop::collection::vec(any::<u8>(), 0..200), which in 0usize..6,
    ) {
        let kp = keypair(3);
        let c = Commitment::sign(CommitmentFields {
            shard, height, old_root: roots[0], new_root: roots[1], batch_hash: roots[2], proof: proof.clone(),
        }, &kp.signing_key, &[0; 32]).unwrap();
        c.verify(&kp.verifying_key).unwrap();
        // Signing bytes: the documented 140-byte layout.
        let reference = [
            &shard.to_le_bytes()[..], &height.to_le_bytes()[..], &roots[0][..], &roots[1][..], &roots[2][..],
            &reference_shake(&[PROOF_HASH_DOMAIN, &proof])[..],
        ].concat();
        prop_assert_eq!(c.signing_bytes(), reference.clone());
        prop_assert_eq!(reference.len(), 140);
        kp.verifying_key.verify(&reference, COMMITMENT_CONTEXT, &c.signature).unwrap();
        // A batch signature context does not verify a commitment (domain separation).
        prop_assert!(kp.verifying_key.verify(&reference, BATCH_CONTEXT, &c.signature).is_err());
        let mut bad = c.clone();
        match which {
            0 => bad.shard ^= 1,
            1 => bad.height ^= 1,
            2 => bad.old_root[31] ^= 1,
            3 => bad.new_root[0] ^= 1,
            4 => bad.batch_hash[7] ^= 1,
            _ => bad.proof.push(1),
        }
        assert!(matches!(bad.verify(&kp.verifying_key), Err(Error::Signature { .. })));
        prop_assert!(c.verify(&keypair(4).verifying_key).is_err());
    }
}

#[test]
fn memory_pair_reports_malformed_input_as_typed_error() {
    let mut pair = MemoryPair::new(small());
    pair.client_send(&Request::JobStatus { id: JobId(1) })
        .unwrap();
    // A frame with a valid header but a response kind.
    let bad = Frame {
        version: WIRE_VERSION,
        kind: kinds::ACCEPTED,
        body: vec![0; 8],
    };
    pair.client_send_raw(&bad.encode(100).unwrap());
    let err = pair.pump_to_server(5).unwrap_err();
    assert!(matches!(err, Error::UnknownKind { .. }), "{err}");
    // An oversized header poisons the decoder for good.
    let mut pair = MemoryPair::new(small());
    pair.client_send_raw(&u32::MAX.to_le_bytes());
    assert!(matches!(
        pair.pump_to_server(2),
        Err(Error::FrameTooLarge { .. })
    ));
    assert!(matches!(
        pair.server.next_message(),
        Err(Error::DecoderPoisoned)
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// An authentication signature verifies for its own challenge only, round-trips through
    /// the wire, and any other challenge or a flipped signature byte is refused.
    #[test]
    fn authenticate_binds_the_challenge(
        seed in any::<[u8; 32]>(),
        challenge in any::<[u8; CHALLENGE_LEN]>(),
        other in any::<[u8; CHALLENGE_LEN]>(),
        flip in 0usize..SIGNATURE_LEN,
    ) {
        let l = small();
        let kp = KeyPair::from_seed(&seed);
        let auth = Authenticate::sign(&challenge, &kp.signing_key, &kp.verifying_key, &seed)
            .unwrap();
        prop_assert!(auth.verify(&challenge).is_ok());
        let frame = auth.to_frame(&l).unwrap();
        prop_assert_eq!(frame.kind, kinds::AUTHENTICATE);
        let back = Authenticate::from_frame(&frame, &l).unwrap();
        prop_assert_eq!(&back, &auth);
        prop_assert!(back.verify(&challenge).is_ok());
        if other != challenge {
            let refused = matches!(auth.verify(&other), Err(Error::Signature { .. }));
            prop_assert!(refused);
        }
        let mut sig = auth.signature.as_bytes().to_vec();
        sig[flip] ^= 1;
        let bad = Authenticate { key: auth.key.clone(), signature: Signature::from_bytes(&sig).unwrap() };
        prop_assert!(bad.verify(&challenge).is_err());
        // Strict length: one byte short or long never decodes.
        prop_assert!(Authenticate::decode_body(kinds::AUTHENTICATE, &frame.body[1..], &l).is_err());
        let mut long = frame.body.clone();
        long.push(0);
        prop_assert!(Authenticate::decode_body(kinds::AUTHENTICATE, &long, &l).is_err());
        // Not a request of the ordinary family.
        prop_assert!(Request::decode_body(kinds::AUTHENTICATE, &frame.body, &l).is_err());
    }
}
