#![no_main]
//! Arbitrary bytes -> the streaming frame decoder (in input-chosen chunk sizes) -> every
//! message decoder. Must never panic: every defect is a typed error. Whatever decodes must
//! re-encode to the same body (the encoding is canonical).

use node_lite::wire::{Frame, FrameDecoder, Limits, Message, Push, Request, Response};

/// Small limits so the fuzzer reaches every limit check quickly.
const LIMITS: Limits = Limits {
    max_frame_len: 64 * 1024,
    max_txs_per_batch: 8,
    max_tx_len: 512,
    max_air_name_len: 16,
    max_public_inputs_len: 256,
    max_witness_len: 1024,
    max_proof_len: 4096,
    max_shards_per_subscription: 8,
    max_message_len: 64,
};

fn check<M: Message>(kind: u16, body: &[u8]) {
    if let Ok(msg) = M::decode_body(kind, body, &LIMITS) {
        let frame = msg.to_frame(&LIMITS).expect("a decoded message re-encodes");
        assert_eq!(frame.kind, kind);
        assert_eq!(frame.body, body, "decoding is canonical");
    }
}

fn all_decoders(frame: &Frame) {
    check::<Request>(frame.kind, &frame.body);
    check::<Response>(frame.kind, &frame.body);
    check::<Push>(frame.kind, &frame.body);
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    // The raw input as a stream, delivered in chunks of 1..=256 bytes.
    let mut dec = FrameDecoder::new(LIMITS.max_frame_len);
    for part in rest.chunks(usize::from(chunk) + 1) {
        dec.push(part);
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => all_decoders(&frame),
                Ok(None) => break,
                Err(_) => {
                    assert!(dec.next_frame().is_err(), "a failed decoder stays failed");
                    return;
                }
            }
        }
    }
    let _ = dec.finish("fuzz stream");
    // The input as a bare body of the kind its first two bytes name.
    if rest.len() >= 2 {
        let kind = u16::from_le_bytes([rest[0], rest[1]]);
        all_decoders(&Frame {
            version: 1,
            kind,
            body: rest[2..].to_vec(),
        });
    }
});
