//! QUIC on loopback: a test service behind the real server, real clients.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crypto::dsa::mldsa65::{KeyPair, VerifyingKey};
use epa_node_lite::Error;
use epa_node_lite::client::{Client, ClientConfig};
use epa_node_lite::server::{
    PRE_AUTH_MAX_FRAME, PeerInfo, Server, ServerConfig, ServerStats, Service, SubscriptionFeed,
};
use epa_node_lite::tls::{Fingerprint, Identity};
use epa_node_lite::wire::{
    Batch, Commitment, CommitmentFields, Frame, JobId, JobState, JobStatusReport, KeyId, Limits,
    Message, ProvingJob, ProvingOptions, RejectCode, Rejection, Request, Response, Stage,
    SubscribeRequest, kinds,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tokio::sync::{Notify, mpsc};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);

/// A minimal appliance: checks batches like the real one must (key, signature, replay,
/// prev_root), remembers jobs, serves commitments from a history plus a live channel.
struct TestService {
    aggregator: VerifyingKey,
    limits: Limits,
    shards: Mutex<HashMap<u32, (u64, [u8; 32])>>,
    jobs: Mutex<HashMap<u64, Vec<u8>>>,
    next_id: AtomicU64,
    history: Vec<Commitment>,
    live: Mutex<Vec<mpsc::Sender<Commitment>>>,
    /// `JobStatus` for id `u64::MAX` waits on this (holds a stream open).
    gate: Notify,
}

impl TestService {
    fn new(aggregator: VerifyingKey, limits: Limits, history: Vec<Commitment>) -> Self {
        Self {
            aggregator,
            limits,
            shards: Mutex::default(),
            jobs: Mutex::default(),
            next_id: AtomicU64::new(1),
            history,
            live: Mutex::default(),
            gate: Notify::new(),
        }
    }

    fn reject(&self, code: RejectCode, msg: &str) -> Response {
        Response::Rejected(Rejection::new(code, msg, self.limits.max_message_len))
    }

    fn accept(&self, payload: Vec<u8>) -> Response {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.jobs.lock().unwrap().insert(id, payload);
        Response::Accepted { id: JobId(id) }
    }

    async fn publish(&self, c: Commitment) {
        let senders: Vec<_> = self.live.lock().unwrap().clone();
        for tx in senders {
            let _ = tx.send(c.clone()).await;
        }
    }
}

impl Service for TestService {
    async fn handle(&self, _peer: PeerInfo, request: Request) -> Response {
        match request {
            Request::SubmitBatch(b) => {
                if b.aggregator != KeyId::of(&self.aggregator) {
                    return self.reject(RejectCode::UnknownKey, "unknown aggregator key");
                }
                if b.verify(&self.aggregator, &self.limits).is_err() {
                    return self.reject(RejectCode::BadSignature, "bad batch signature");
                }
                let hash = b
                    .batch_hash(&self.limits)
                    .expect("decoded under the same limits");
                {
                    let mut shards = self.shards.lock().unwrap();
                    let (last_seq, root) = shards.entry(b.shard).or_insert((0, [0; 32]));
                    if b.seq <= *last_seq {
                        return self.reject(RejectCode::Replay, "sequence number already used");
                    }
                    if b.prev_root != *root {
                        return self.reject(RejectCode::WrongPrevRoot, "prev_root is stale");
                    }
                    *last_seq = b.seq;
                    *root = hash;
                }
                self.accept(hash.to_vec())
            }
            Request::SubmitProvingJob(job) => {
                if job.air != "rescue-chain" {
                    return self.reject(RejectCode::UnknownAir, "no such AIR");
                }
                self.accept(job.witness)
            }
            Request::JobStatus { id } => {
                if id.0 == u64::MAX {
                    self.gate.notified().await;
                }
                if self.jobs.lock().unwrap().contains_key(&id.0) {
                    Response::Status(JobStatusReport {
                        id,
                        state: JobState::Done,
                        stage: Stage::Finished,
                        progress: 10_000,
                    })
                } else {
                    Response::NotFound { id }
                }
            }
            Request::FetchProof { id } => match self.jobs.lock().unwrap().get(&id.0) {
                Some(p) => Response::Proof {
                    id,
                    envelope: p.clone(),
                },
                None => Response::NotFound { id },
            },
            Request::Subscribe(_) => self.reject(RejectCode::Internal, "handled by the server"),
        }
    }

    fn subscribe(
        &self,
        _peer: PeerInfo,
        request: &SubscribeRequest,
    ) -> Result<SubscriptionFeed, Rejection> {
        let history = self
            .history
            .iter()
            .filter(|c| request.wants(c.shard) && c.height >= request.from_height)
            .cloned()
            .collect();
        let (tx, live) = mpsc::channel(16);
        self.live.lock().unwrap().push(tx);
        Ok(SubscriptionFeed { history, live })
    }

    fn authorize(&self, peer: PeerInfo, key: &VerifyingKey) -> Result<String, Rejection> {
        assert!(
            peer.key.is_none(),
            "authorize runs before the connection is authenticated"
        );
        if KeyId::of(key) == KeyId::of(&self.aggregator) {
            Ok("aggregator".into())
        } else {
            Err(Rejection::new(
                RejectCode::UnknownKey,
                "not a tenant key",
                self.limits.max_message_len,
            ))
        }
    }
}

struct Fixture {
    server: Server,
    service: Arc<TestService>,
    aggregator: KeyPair,
    appliance: KeyPair,
    rng: ChaCha20Rng,
}

fn commitment(appliance: &KeyPair, shard: u32, height: u64, rng: &mut ChaCha20Rng) -> Commitment {
    Commitment::sign(
        CommitmentFields {
            shard,
            height,
            old_root: rng.r#gen(),
            new_root: rng.r#gen(),
            batch_hash: rng.r#gen(),
            proof: (0..rng.gen_range(1..300)).map(|_| rng.r#gen()).collect(),
        },
        &appliance.signing_key,
        &rng.r#gen(),
    )
    .expect("signing with a valid key")
}

fn fixture(config: ServerConfig) -> Fixture {
    let mut rng = ChaCha20Rng::from_entropy();
    let aggregator = KeyPair::from_seed(&rng.r#gen());
    let appliance = KeyPair::from_seed(&rng.r#gen());
    let history = vec![
        commitment(&appliance, 0, 1, &mut rng),
        commitment(&appliance, 1, 1, &mut rng),
        commitment(&appliance, 0, 2, &mut rng),
        commitment(&appliance, 0, 3, &mut rng),
    ];
    let service = Arc::new(TestService::new(
        aggregator.verifying_key.clone(),
        config.limits,
        history,
    ));
    let identity = Identity::generate().unwrap();
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        &identity,
        config,
        Arc::clone(&service),
    )
    .unwrap();
    Fixture {
        server,
        service,
        aggregator,
        appliance,
        rng,
    }
}

/// Runs `body` against a fresh server with `config` and the test service, bounded by [`T`].
async fn with_fixture(config: ServerConfig, body: impl AsyncFnOnce(&mut Fixture)) {
    let mut fx = fixture(config);
    timeout(T, body(&mut fx)).await.expect("test timed out");
}

fn client_config() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    }
}

impl Fixture {
    /// A connection to the server, or why it failed.
    async fn connect(&self) -> Result<Client, Error> {
        Client::connect(
            self.server.local_addr(),
            self.server.fingerprint(),
            client_config(),
        )
        .await
    }

    /// A connection (not authenticated).
    async fn client(&self) -> Client {
        self.connect().await.expect("loopback connection")
    }

    /// A connection authenticated as the aggregator tenant.
    async fn authenticated(&self) -> Client {
        let (client, tenant) = Client::connect_authenticated(
            self.server.local_addr(),
            self.server.fingerprint(),
            client_config(),
            &self.aggregator,
        )
        .await
        .expect("the aggregator key authenticates");
        assert_eq!(tenant, "aggregator");
        client
    }

    /// One server counter.
    fn stat(&self, counter: impl Fn(&ServerStats) -> &AtomicU64) -> u64 {
        counter(self.server.stats()).load(Ordering::Relaxed)
    }

    fn batch(&mut self, shard: u32, seq: u64, prev_root: [u8; 32]) -> Batch {
        let txs = (0..self.rng.gen_range(1..5))
            .map(|_| {
                (0..self.rng.gen_range(1..200))
                    .map(|_| self.rng.r#gen())
                    .collect()
            })
            .collect();
        Batch::sign(
            shard,
            seq,
            prev_root,
            txs,
            &self.aggregator.signing_key,
            &self.aggregator.verifying_key,
            &self.rng.r#gen(),
            &Limits::default(),
        )
        .unwrap()
    }
}

fn assert_rejected<T: core::fmt::Debug>(r: Result<T, Error>, code: RejectCode) {
    match r {
        Err(Error::Rejected { code: got, .. }) => assert_eq!(got, code),
        other => panic!("expected a {code:?} rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_accept_status_and_fetch() {
    with_fixture(ServerConfig::default(), async |fx| {
        let client = fx.client().await;
        let batch = fx.batch(4, 1, [0; 32]);
        let id = client.submit_batch(&batch).await.unwrap();
        let status = client.job_status(id).await.unwrap().expect("known job");
        assert_eq!(status.id, id);
        assert_eq!(status.state, JobState::Done);
        // The test service stores the batch hash as the "proof": it came through intact.
        let proof = client.fetch_proof(id).await.unwrap().expect("known job");
        assert_eq!(
            proof,
            batch.batch_hash(&Limits::default()).unwrap().to_vec()
        );
        assert_eq!(client.job_status(JobId(999_999)).await.unwrap(), None);
        assert_eq!(client.fetch_proof(JobId(999_999)).await.unwrap(), None);
        // The next batch chains on the new root.
        let next = fx.batch(4, 2, batch.batch_hash(&Limits::default()).unwrap());
        let id2 = client.submit_batch(&next).await.unwrap();
        assert_ne!(id, id2);
        let job = ProvingJob {
            air: "rescue-chain".into(),
            public_inputs: vec![1, 2, 3],
            witness: fx.rng.r#gen::<[u8; 32]>().to_vec(),
            options: ProvingOptions { preset: 0, hash: 1 },
        };
        let jid = client.submit_proving_job(&job).await.unwrap();
        assert_eq!(client.fetch_proof(jid).await.unwrap(), Some(job.witness));
        let requests = fx.stat(|s| &s.requests);
        assert_eq!(requests, 8);
        let text = epa_node_lite::http::render_metrics(&fx.server.stats().metrics());
        assert!(text.contains(&format!("\nepa_quic_requests_total {requests}\n")));
        assert!(text.contains("\nepa_quic_connections_open 1\n"));
        client.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_rejections_round_trip() {
    with_fixture(ServerConfig::default(), async |fx| {
        let client = fx.client().await;
        // Unknown key: signed by someone else.
        let stranger = KeyPair::from_seed(&fx.rng.r#gen());
        let foreign = Batch::sign(
            0,
            1,
            [0; 32],
            vec![vec![1]],
            &stranger.signing_key,
            &stranger.verifying_key,
            &[0; 32],
            &Limits::default(),
        )
        .unwrap();
        assert_rejected(client.submit_batch(&foreign).await, RejectCode::UnknownKey);
        // Bad signature: a field changed after signing.
        let mut tampered = fx.batch(0, 1, [0; 32]);
        tampered.seq = 2;
        assert_rejected(
            client.submit_batch(&tampered).await,
            RejectCode::BadSignature,
        );
        // Replay: the same sequence number twice.
        let first = fx.batch(0, 1, [0; 32]);
        client.submit_batch(&first).await.unwrap();
        assert_rejected(client.submit_batch(&first).await, RejectCode::Replay);
        // Wrong prev_root.
        let stale = fx.batch(0, 2, [0; 32]);
        assert_rejected(client.submit_batch(&stale).await, RejectCode::WrongPrevRoot);
        // Unknown AIR, with the service's message carried through.
        let job = ProvingJob {
            air: "no-such-air".into(),
            public_inputs: vec![],
            witness: vec![],
            options: ProvingOptions { preset: 0, hash: 0 },
        };
        match client.submit_proving_job(&job).await {
            Err(Error::Rejected { code, message }) => {
                assert_eq!(code, RejectCode::UnknownAir);
                assert_eq!(message, "no such AIR");
            }
            other => panic!("expected UnknownAir, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_pushes_catch_up_then_live() {
    with_fixture(ServerConfig::default(), async |fx| {
        let client = fx.client().await;
        let mut sub = client
            .subscribe(SubscribeRequest {
                shards: vec![0],
                from_height: 2,
            })
            .await
            .unwrap();
        // Catch-up: shard 0 from height 2, in order, signed by the appliance.
        for height in [2, 3] {
            let c = sub.next().await.expect("stream open").unwrap();
            assert_eq!((c.shard, c.height), (0, height));
            c.verify(&fx.appliance.verifying_key).unwrap();
            assert!(fx.service.history.contains(&c));
        }
        // Live: a duplicate of height 3 and another shard are skipped; height 4 arrives.
        let dup = commitment(&fx.appliance, 0, 3, &mut fx.rng);
        let other_shard = commitment(&fx.appliance, 1, 9, &mut fx.rng);
        let live = commitment(&fx.appliance, 0, 4, &mut fx.rng);
        fx.service.publish(dup).await;
        fx.service.publish(other_shard).await;
        fx.service.publish(live.clone()).await;
        let got = sub.next().await.expect("stream open").unwrap();
        assert_eq!(got, live);
        got.verify(&fx.appliance.verifying_key).unwrap();
        // A second subscription on the same connection gets its own stream.
        let mut all = client
            .subscribe(SubscribeRequest {
                shards: vec![],
                from_height: 1,
            })
            .await
            .unwrap();
        assert_ne!(all.id(), sub.id());
        let mut seen = Vec::new();
        for _ in 0..4 {
            let c = all.next().await.expect("stream open").unwrap();
            seen.push((c.shard, c.height));
        }
        seen.sort_unstable();
        assert_eq!(seen, vec![(0, 1), (0, 2), (0, 3), (1, 1)]);
        assert_eq!(fx.stat(|s| &s.subscriptions_open), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_fingerprint_is_refused() {
    with_fixture(ServerConfig::default(), async |fx| {
        let mut wrong = fx.server.fingerprint().0;
        wrong[0] ^= 1;
        let err = Client::connect(
            fx.server.local_addr(),
            Fingerprint(wrong),
            ClientConfig::default(),
        )
        .await
        .unwrap_err();
        match err {
            Error::FingerprintMismatch { expected, found } => {
                assert_eq!(expected, Fingerprint(wrong).to_hex());
                assert_eq!(found, fx.server.fingerprint().to_hex());
            }
            other => panic!("expected FingerprintMismatch, got {other:?}"),
        }
        // The server still serves a client with the right pin.
        let client = fx.client().await;
        assert_eq!(client.job_status(JobId(1)).await.unwrap(), None);
        // Fingerprints round-trip through hex, with or without colons.
        let fp = fx.server.fingerprint();
        assert_eq!(Fingerprint::from_hex(&fp.to_hex()).unwrap(), fp);
        let colons: Vec<String> = fp.0.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(Fingerprint::from_hex(&colons.join(":")).unwrap(), fp);
        assert!(matches!(
            Fingerprint::from_hex("abcd"),
            Err(Error::BadFingerprint(_))
        ));
    })
    .await;
}

fn rejected_code(r: Response) -> RejectCode {
    match r {
        Response::Rejected(rej) => rej.code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_get_typed_errors() {
    with_fixture(
        ServerConfig {
            limits: Limits {
                max_frame_len: 64 * 1024,
                ..Limits::default()
            },
            ..ServerConfig::default()
        },
        async |fx| {
            let bad = fx.client().await;
            let frame = |kind: u16, body: Vec<u8>| {
                Frame {
                    version: 1,
                    kind,
                    body,
                }
                .encode(u32::MAX)
                .unwrap()
            };
            // A body too short for its kind.
            let r = bad
                .request_raw(&frame(kinds::JOB_STATUS, vec![1, 2, 3]), "raw")
                .await
                .unwrap();
            assert_eq!(rejected_code(r), RejectCode::Malformed);
            // A response kind sent as a request.
            let r = bad
                .request_raw(&frame(kinds::ACCEPTED, vec![0; 8]), "raw")
                .await
                .unwrap();
            assert_eq!(rejected_code(r), RejectCode::Unsupported);
            // An unknown version.
            let mut v2 = frame(kinds::JOB_STATUS, vec![0; 8]);
            v2[4] = 2;
            let r = bad.request_raw(&v2, "raw").await.unwrap();
            assert_eq!(rejected_code(r), RejectCode::Unsupported);
            // A header announcing 1 GiB: refused from the header, the body is never sent.
            let mut huge = (1u32 << 30).to_le_bytes().to_vec();
            huge.extend([1, 0, 1, 0]);
            let r = bad.request_raw(&huge, "raw").await.unwrap();
            assert_eq!(rejected_code(r), RejectCode::TooLarge);
            // A real batch over the server's frame limit (the client's limits are larger).
            let big = Batch::sign(
                0,
                1,
                [0; 32],
                vec![vec![7; 60_000]; 2],
                &fx.aggregator.signing_key,
                &fx.aggregator.verifying_key,
                &[0; 32],
                &Limits::default(),
            )
            .unwrap();
            let bytes = Request::SubmitBatch(big)
                .encode(&Limits::default())
                .unwrap();
            let r = bad.request_raw(&bytes, "raw").await.unwrap();
            assert_eq!(rejected_code(r), RejectCode::TooLarge);
            // Garbage, and a stream closed mid-frame.
            let r = bad.request_raw(&[0xff; 3], "raw").await.unwrap();
            assert_eq!(rejected_code(r), RejectCode::Malformed);
            assert!(fx.stat(|s| &s.malformed) >= 6);
            // The same connection and another client are still served.
            assert_eq!(bad.job_status(JobId(5)).await.unwrap(), None);
            let good = fx.client().await;
            let batch = fx.batch(2, 1, [0; 32]);
            good.submit_batch(&batch).await.unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_streams_are_held_back_while_others_are_served() {
    with_fixture(
        ServerConfig {
            max_concurrent_streams: 3,
            ..ServerConfig::default()
        },
        async |fx| {
            let greedy = Arc::new(fx.client().await);
            // Three requests that the service holds open use up the greedy peer's streams.
            let mut held = Vec::new();
            for _ in 0..3 {
                let c = Arc::clone(&greedy);
                held.push(tokio::spawn(
                    async move { c.job_status(JobId(u64::MAX)).await },
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            // A fourth stream cannot be opened: QUIC flow control holds the peer back.
            let fourth = timeout(Duration::from_millis(300), greedy.connection().open_bi()).await;
            assert!(fourth.is_err(), "the peer opened more streams than allowed");
            // Another client is served meanwhile.
            let other = fx.client().await;
            assert_eq!(other.job_status(JobId(3)).await.unwrap(), None);
            // Releasing the held requests frees the streams again.
            fx.service.gate.notify_waiters();
            for h in held {
                assert!(matches!(h.await.unwrap(), Ok(None)));
            }
            assert_eq!(greedy.job_status(JobId(4)).await.unwrap(), None);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_limited() {
    with_fixture(
        ServerConfig {
            max_connections_per_ip: 2,
            ..ServerConfig::default()
        },
        async |fx| {
            let a = fx.client().await;
            let b = fx.client().await;
            assert_eq!(a.job_status(JobId(1)).await.unwrap(), None);
            assert_eq!(b.job_status(JobId(1)).await.unwrap(), None);
            // The third connection from 127.0.0.1 is closed with a typed code.
            let third = fx.connect().await;
            let err = match third {
                Ok(c) => c.job_status(JobId(1)).await.unwrap_err(),
                Err(e) => e,
            };
            match err {
                Error::ClosedByPeer { code, .. } => assert_eq!(code, RejectCode::LimitExceeded),
                other => panic!("expected LimitExceeded, got {other:?}"),
            }
            assert!(fx.stat(|s| &s.connections_refused) >= 1);
            // The first two keep working; closing one makes room.
            assert_eq!(a.job_status(JobId(2)).await.unwrap(), None);
            b.close().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let c = fx.client().await;
            assert_eq!(c.job_status(JobId(2)).await.unwrap(), None);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_and_idle_connections_time_out() {
    with_fixture(
        ServerConfig {
            request_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(500),
            ..ServerConfig::default()
        },
        async |fx| {
            let slow = fx.client().await;
            // Half a header, then silence: the server answers with a typed rejection once the
            // request deadline passes, without waiting for the rest.
            let (mut send, mut recv) = slow.connection().open_bi().await.unwrap();
            send.write_all(&[12, 0]).await.unwrap();
            let started = std::time::Instant::now();
            let bytes = recv.read_to_end(4096).await.unwrap();
            assert!(started.elapsed() >= Duration::from_millis(250));
            let frame = Frame::decode_exact(&bytes, Limits::default().max_frame_len).unwrap();
            match Response::from_frame(&frame, &Limits::default()).unwrap() {
                Response::Rejected(r) => {
                    assert_eq!(r.code, RejectCode::Busy);
                    assert!(r.message.contains("no complete request"), "{}", r.message);
                }
                other => panic!("expected a rejection, got {other:?}"),
            }
            assert_eq!(fx.stat(|s| &s.request_timeouts), 1);
            // An idle connection is closed by the negotiated idle timeout.
            tokio::time::sleep(Duration::from_millis(1200)).await;
            match slow.job_status(JobId(1)).await {
                Err(Error::Connection(quinn::ConnectionError::TimedOut)) => {}
                other => panic!("expected an idle timeout, got {other:?}"),
            }
            // The server counted it (its own idle timer fires about when the client's does).
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            while fx.stat(|s| &s.idle_timeouts) == 0 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(fx.stat(|s| &s.idle_timeouts), 1);
            // New connections are served.
            let fresh = fx.client().await;
            assert_eq!(fresh.job_status(JobId(1)).await.unwrap(), None);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_per_connection_are_limited() {
    with_fixture(
        ServerConfig {
            max_subscriptions_per_connection: 2,
            ..ServerConfig::default()
        },
        async |fx| {
            let client = fx.client().await;
            let request = SubscribeRequest {
                shards: vec![1],
                from_height: 0,
            };
            let mut first = client.subscribe(request.clone()).await.unwrap();
            let _second = client.subscribe(request.clone()).await.unwrap();
            assert_rejected(
                client.subscribe(request.clone()).await,
                RejectCode::LimitExceeded,
            );
            assert_eq!(fx.stat(|s| &s.subscriptions_refused), 1);
            // The open subscriptions still deliver (shard 1 has one stored commitment).
            let c = first.next().await.expect("stream open").unwrap();
            assert_eq!((c.shard, c.height), (1, 1));
            // Another connection has its own budget.
            let other = fx.client().await;
            assert!(other.subscribe(request).await.is_ok());
        },
    )
    .await;
}

/// The QUIC layer's TLS configurations negotiate the hybrid post-quantum group. quinn does not
/// expose the negotiated group, so this drives a rustls client and server built by the very
/// same functions (`Identity::server_config`, `tls::client_config`) through a TLS 1.3
/// handshake in memory and asks rustls.
#[test]
fn tls_negotiates_hybrid_post_quantum_key_exchange() {
    use epa_node_lite::tls::{self, PREFERRED_KX_GROUP, PinnedVerifier};
    use rustls::pki_types::ServerName;

    fn handshake(
        client_cfg: rustls::ClientConfig,
        server_cfg: rustls::ServerConfig,
    ) -> (rustls::ClientConnection, rustls::ServerConnection) {
        let name = ServerName::try_from(tls::SERVER_NAME).unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client_cfg), name).unwrap();
        let mut s = rustls::ServerConnection::new(Arc::new(server_cfg)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
            }
            s.process_new_packets().unwrap();
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
            }
            c.process_new_packets().unwrap();
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
        }
        assert!(
            !c.is_handshaking() && !s.is_handshaking(),
            "handshake did not finish"
        );
        (c, s)
    }

    let identity = Identity::generate().unwrap();
    let client_cfg =
        || tls::client_config(Arc::new(PinnedVerifier::new(identity.fingerprint()))).unwrap();
    assert_eq!(tls::kx_groups()[0].name(), PREFERRED_KX_GROUP);
    let (c, s) = handshake(client_cfg(), identity.server_config().unwrap());
    let group = |g: Option<&'static dyn rustls::crypto::SupportedKxGroup>| g.unwrap().name();
    assert_eq!(
        group(c.negotiated_key_exchange_group()),
        rustls::NamedGroup::X25519MLKEM768
    );
    assert_eq!(
        group(s.negotiated_key_exchange_group()),
        rustls::NamedGroup::X25519MLKEM768
    );
    assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(c.alpn_protocol(), Some(tls::ALPN));

    // A peer without ML-KEM still connects, classically: the server keeps X25519 as fallback.
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let verifier = Arc::new(PinnedVerifier::new(identity.fingerprint()));
    let mut classical = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    classical.alpn_protocols = vec![tls::ALPN.to_vec()];
    let (c, _) = handshake(classical, identity.server_config().unwrap());
    assert_eq!(
        group(c.negotiated_key_exchange_group()),
        rustls::NamedGroup::X25519
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_gates_the_connection_and_cannot_be_replayed() {
    with_fixture(
        ServerConfig {
            require_authentication: true,
            request_timeout: Duration::from_millis(1500),
            ..ServerConfig::default()
        },
        async |fx| {
            use epa_node_lite::wire::Authenticate;
            let a = fx.client().await;
            let b = fx.client().await;
            // Before authenticating, nothing is served.
            assert_rejected(a.job_status(JobId(1)).await, RejectCode::Unauthorized);
            let batch = fx.batch(0, 1, [0; 32]);
            assert_rejected(a.submit_batch(&batch).await, RejectCode::Unauthorized);
            assert_eq!(fx.stat(|s| &s.unauthorized), 2);
            assert_eq!(fx.stat(|s| &s.requests), 0);
            // Nor can an anonymous peer make the server buffer a frame larger than an
            // `Authenticate`: it is refused from its header.
            let mut big = (PRE_AUTH_MAX_FRAME + 1).to_le_bytes().to_vec();
            big.extend_from_slice(&[1, 0, 3, 0]);
            let r = a.request_raw(&big, "big").await.unwrap();
            assert_eq!(rejected_code(r), RejectCode::Unauthorized);
            assert_eq!(fx.stat(|s| &s.unauthorized), 3);
            assert_eq!(fx.stat(|s| &s.too_large), 0);
            // Each connection has its own challenge.
            let (ca, cb) = (a.challenge().unwrap(), b.challenge().unwrap());
            assert_ne!(ca, cb);
            // A signature over a's challenge (what an eavesdropper or a's server could capture)
            // does not authenticate b.
            let seed: [u8; 32] = fx.rng.r#gen();
            let for_a = Authenticate::sign(
                &ca,
                &fx.aggregator.signing_key,
                &fx.aggregator.verifying_key,
                &seed,
            )
            .unwrap();
            let frame_len = for_a.encode(&Limits::default()).unwrap().len();
            assert!(frame_len <= PRE_AUTH_MAX_FRAME as usize, "{frame_len}");
            assert_rejected(b.send_authenticate(&for_a).await, RejectCode::BadSignature);
            assert_rejected(b.job_status(JobId(1)).await, RejectCode::Unauthorized);
            // An unknown key that signs correctly is refused by the service's mapping.
            let stranger = KeyPair::from_seed(&fx.rng.r#gen());
            assert_rejected(b.authenticate(&stranger).await, RejectCode::UnknownKey);
            // On its own connection the same signature works, and maps to the tenant.
            assert_eq!(a.send_authenticate(&for_a).await.unwrap(), "aggregator");
            let id = a.submit_batch(&batch).await.unwrap();
            assert_eq!(a.job_status(id).await.unwrap().unwrap().id, id);
            // A second authentication on the same connection is refused; the first stays valid.
            assert_rejected(
                a.authenticate(&fx.aggregator).await,
                RejectCode::Unauthorized,
            );
            assert_eq!(a.job_status(id).await.unwrap().unwrap().id, id);
            // The automatic client path.
            let c = fx.authenticated().await;
            assert_eq!(c.job_status(id).await.unwrap().unwrap().id, id);
            assert_eq!(fx.stat(|s| &s.authenticated), 2);
            assert_eq!(fx.stat(|s| &s.auth_failures), 3);
            // b never authenticated: it is closed with Unauthorized once the deadline passes.
            tokio::time::sleep(Duration::from_millis(1800)).await;
            match b.job_status(JobId(1)).await {
                Err(Error::ClosedByPeer { code, .. }) => assert_eq!(code, RejectCode::Unauthorized),
                other => panic!("expected an Unauthorized close, got {other:?}"),
            }
            assert!(fx.stat(|s| &s.auth_timeouts) >= 1);
            assert_eq!(a.job_status(id).await.unwrap().unwrap().id, id);
            let text = fx
                .server
                .stats()
                .metrics()
                .iter()
                .map(|m| m.name.to_string())
                .collect::<Vec<_>>()
                .join(",");
            for name in [
                "epa_quic_unauthorized_total",
                "epa_quic_auth_failures_total",
                "epa_quic_auth_timeouts_total",
            ] {
                assert!(text.contains(name), "{name} missing from {text}");
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_rate_is_limited_per_tenant() {
    with_fixture(
        ServerConfig {
            submissions_per_second: 1,
            submission_burst: 3,
            ..ServerConfig::default()
        },
        async |fx| {
            let agg = fx.authenticated().await;
            let mut prev = [0u8; 32];
            for seq in 1..=3 {
                let b = fx.batch(0, seq, prev);
                agg.submit_batch(&b).await.unwrap();
                prev = b.batch_hash(&Limits::default()).unwrap();
            }
            // The burst is spent: the fourth is refused before the service sees it.
            let b = fx.batch(0, 4, prev);
            assert_rejected(agg.submit_batch(&b).await, RejectCode::Busy);
            assert_eq!(fx.stat(|s| &s.rate_limited), 1);
            // Queries are not submissions.
            assert_eq!(
                agg.job_status(JobId(1)).await.unwrap().unwrap().id,
                JobId(1)
            );
            // Another tenant (here the unauthenticated peer address) has its own bucket.
            let anon = fx.client().await;
            let job = ProvingJob {
                air: "rescue-chain".into(),
                public_inputs: vec![1],
                witness: vec![2],
                options: ProvingOptions { preset: 0, hash: 0 },
            };
            anon.submit_proving_job(&job).await.unwrap();
            // The bucket refills at one a second.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            agg.submit_batch(&b).await.unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_memory_budget_and_frame_limit_are_enforced() {
    with_fixture(
        ServerConfig {
            // Two 16-byte JobStatus frames fit, a third does not.
            max_inflight_bytes: 40,
            ..ServerConfig::default()
        },
        async |fx| {
            let client = Arc::new(fx.client().await);
            // Two requests held by the service (the gate) keep their bytes reserved.
            let held: Vec<_> = (0..2)
                .map(|_| {
                    let c = Arc::clone(&client);
                    tokio::spawn(async move { c.job_status(JobId(u64::MAX)).await })
                })
                .collect();
            while fx.stat(|s| &s.inflight_bytes) < 32 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_rejected(client.job_status(JobId(1)).await, RejectCode::Busy);
            assert_eq!(fx.stat(|s| &s.memory_refused), 1);
            // Released once answered: the budget is whole again.
            while fx.stat(|s| &s.inflight_bytes) > 0 {
                fx.service.gate.notify_waiters();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for h in held {
                assert_eq!(h.await.unwrap().unwrap(), None);
            }
            assert_eq!(client.job_status(JobId(1)).await.unwrap(), None);
            // A frame announcing more than the frame limit is refused from its header alone.
            let mut header = (Limits::default().max_frame_len + 1).to_le_bytes().to_vec();
            header.extend_from_slice(&[1, 0, 3, 0]);
            let r = client.request_raw(&header, "oversized").await.unwrap();
            assert_eq!(rejected_code(r), RejectCode::TooLarge);
            assert_eq!(fx.stat(|s| &s.too_large), 1);
            assert_eq!(fx.stat(|s| &s.inflight_bytes), 0);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_floods_are_refused_counted_and_disconnected() {
    with_fixture(
        ServerConfig {
            // Two streams a second, a bucket of two.
            max_streams_per_second: 2,
            max_concurrent_streams: 2,
            ..ServerConfig::default()
        },
        async |fx| {
            let flooder = fx.client().await;
            let (mut served, mut refused) = (0u64, 0u64);
            let closed = loop {
                match flooder.job_status(JobId(1)).await {
                    Ok(None) => served += 1,
                    Err(Error::Rejected {
                        code: RejectCode::LimitExceeded,
                        message,
                    }) => {
                        assert!(message.contains("stream flood"), "{message}");
                        refused += 1;
                    }
                    Err(e) => break e,
                    Ok(other) => panic!("unexpected answer {other:?}"),
                }
                assert!(served + refused < 50, "the flood was never stopped");
            };
            // The bucket let the first streams through, refused the next ones without
            // reading them, and closed the connection once a bucket's worth was refused.
            assert!(served >= 2, "{served} served");
            assert!(refused >= 1, "{refused} refused");
            match closed {
                Error::ClosedByPeer { code, .. } => assert_eq!(code, RejectCode::LimitExceeded),
                other => panic!("expected a LimitExceeded close, got {other:?}"),
            }
            assert_eq!(fx.stat(|s| &s.stream_floods), refused + 1);
            assert_eq!(fx.stat(|s| &s.flood_disconnects), 1);
            let text = epa_node_lite::http::render_metrics(&fx.server.stats().metrics());
            assert!(text.contains(&format!("\nepa_quic_stream_floods_total {}\n", refused + 1)));
            assert!(text.contains("\nepa_quic_flood_disconnects_total 1\n"));
            // Other connections have their own bucket.
            let other = fx.client().await;
            assert_eq!(other.job_status(JobId(1)).await.unwrap(), None);
        },
    )
    .await;
}
