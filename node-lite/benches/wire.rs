//! Wire codec and QUIC loopback micro-benchmarks.
//!
//! `cargo bench -p epa-node-lite --bench wire`

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crypto::dsa::mldsa65::KeyPair;
use epa_node_lite::client::{Client, ClientConfig};
use epa_node_lite::server::{PeerInfo, Server, ServerConfig, Service, SubscriptionFeed};
use epa_node_lite::tls::Identity;
use epa_node_lite::wire::{
    Batch, FrameDecoder, JobId, Limits, Message, Rejection, Request, Response, SubscribeRequest,
};

const TXS: usize = 64;
const TX_LEN: usize = 1024;

fn batch() -> Batch {
    let kp = KeyPair::from_seed(&[7; 32]);
    let txs = (0..TXS).map(|i| vec![i as u8; TX_LEN]).collect();
    Batch::sign(
        1,
        1,
        [0; 32],
        txs,
        &kp.signing_key,
        &kp.verifying_key,
        &[0; 32],
        &Limits::default(),
    )
    .expect("bench batch within limits")
}

fn codec(c: &mut Criterion) {
    let limits = Limits::default();
    let batch = batch();
    let kp = KeyPair::from_seed(&[7; 32]);
    let request = Request::SubmitBatch(batch.clone());
    let bytes = request.encode(&limits).expect("within limits");
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode/batch-64x1k", |b| {
        b.iter(|| request.encode(&limits).expect("within limits"))
    });
    g.bench_function("decode/batch-64x1k", |b| {
        b.iter(|| {
            let mut dec = FrameDecoder::new(limits.max_frame_len);
            dec.push(&bytes);
            let frame = dec.next_frame().expect("valid").expect("whole frame");
            Request::from_frame(&frame, &limits).expect("valid")
        })
    });
    g.bench_function("verify/batch-64x1k", |b| {
        b.iter(|| {
            batch
                .verify(&kp.verifying_key, &limits)
                .expect("valid signature")
        })
    });
    g.finish();
}

struct Echo;

impl Service for Echo {
    async fn handle(&self, _peer: PeerInfo, request: Request) -> Response {
        match request {
            Request::SubmitBatch(b) => Response::Accepted { id: JobId(b.seq) },
            Request::JobStatus { id } | Request::FetchProof { id } => Response::NotFound { id },
            _ => Response::Accepted { id: JobId(0) },
        }
    }

    fn subscribe(
        &self,
        _peer: PeerInfo,
        _request: &SubscribeRequest,
    ) -> Result<SubscriptionFeed, Rejection> {
        let (_tx, live) = tokio::sync::mpsc::channel(1);
        Ok(SubscriptionFeed {
            history: Vec::new(),
            live,
        })
    }
}

fn quic(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let identity = Identity::generate().expect("certificate");
    let (server, client) = rt.block_on(async {
        let server = Server::bind(
            "127.0.0.1:0".parse().expect("literal address"),
            &identity,
            ServerConfig::default(),
            Arc::new(Echo),
        )
        .expect("bind loopback");
        let client = Client::connect(
            server.local_addr(),
            server.fingerprint(),
            ClientConfig::default(),
        )
        .await
        .expect("connect loopback");
        (server, client)
    });
    let batch = batch();
    let mut g = c.benchmark_group("quic");
    g.bench_function("rtt/job-status", |b| {
        b.iter(|| rt.block_on(client.job_status(JobId(1))).expect("answer"))
    });
    g.bench_function("submit/batch-64x1k", |b| {
        b.iter(|| rt.block_on(client.submit_batch(&batch)).expect("accepted"))
    });
    g.finish();
    drop(client);
    drop(server);
}

/// The benchmark group (in a private module: the macro's function needs no public docs).
mod group {
    use super::*;
    criterion_group! {
        name = benches;
        config = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        targets = codec, quic
    }
}
criterion_main!(group::benches);
