//! Shared helpers of the appliance tests: fresh keys, an in-process appliance on loopback with
//! tiny proofs, clients, and a collector that verifies commitments like a validator.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crypto::dsa::mldsa65;
use crypto::kem::mlkem768;
use epa::appliance::client::{SimAggregator, verify_commitment};
use epa::appliance::{Aggregator, Appliance, Settings};
use node_lite::client::{Client, ClientConfig};
use node_lite::server::ServerConfig;
use node_lite::tls::Identity;
use node_lite::wire::{Commitment, Limits, SubscribeRequest};
use prover::options::{HashId, Preset};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Tree depth of every test shard.
pub const DEPTH: u8 = 8;
/// The test shard.
pub const SHARD: u32 = 3;

/// Fresh random seed for this run (printed so a failure can be replayed).
pub fn fresh_seed() -> u64 {
    let seed = rand::random::<u64>();
    eprintln!("test seed {seed}");
    seed
}

/// Everything a test appliance is made of; kept so it can be restarted on the same dir.
pub struct Keys {
    pub identity: mldsa65::KeyPair,
    pub tls: (Vec<u8>, Vec<u8>),
    pub aggregator: mldsa65::KeyPair,
    pub shard: mlkem768::KeyPair,
}

impl Keys {
    pub fn new(seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let tls = Identity::generate().expect("a self-signed certificate");
        Self {
            identity: mldsa65::KeyPair::generate(&mut rng).expect("rng works"),
            tls: (tls.cert_der().to_vec(), tls.key_der().to_vec()),
            aggregator: mldsa65::KeyPair::generate(&mut rng).expect("rng works"),
            shard: mlkem768::KeyPair::generate(&mut rng).expect("rng works"),
        }
    }

    pub fn settings(&self, data_dir: &Path) -> Settings {
        Settings {
            data_dir: data_dir.to_path_buf(),
            quic_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            http_listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
            workers: 2,
            identity: self.identity.clone(),
            tls: Identity::from_der(self.tls.0.clone(), self.tls.1.clone()),
            aggregators: vec![Aggregator {
                tenant: "aggregator-a".into(),
                key: self.aggregator.verifying_key.clone(),
                shards: [SHARD].into(),
            }],
            shard_keys: [
                (SHARD, self.shard.decapsulation_key.clone()),
                (SHARD + 1, self.shard.decapsulation_key.clone()),
            ]
            .into(),
            depth: DEPTH,
            preset: Preset::Fast96,
            hash: HashId::Blake3_256,
            server: ServerConfig::default(),
            max_queued_jobs_per_tenant: 64,
            max_queued_bytes_per_tenant: 64 << 20,
        }
    }

    pub fn aggregator(&self, seed: u64) -> SimAggregator {
        SimAggregator::new(
            self.aggregator.clone(),
            SHARD,
            DEPTH,
            self.shard.encapsulation_key.clone(),
            6,
            seed,
            Limits::default(),
        )
        .expect("depth 8 is valid")
    }
}

pub async fn client(app: &Appliance) -> Client {
    Client::connect(app.quic_addr(), app.fingerprint(), ClientConfig::default())
        .await
        .expect("loopback connection")
}

/// Collects `n` commitments of the test shard from height 1, verifying each like a validator;
/// then checks that nothing more arrives for a moment (exactly once).
pub async fn collect_verified(
    client: &Client,
    key: &mldsa65::VerifyingKey,
    n: usize,
) -> Vec<Commitment> {
    let mut sub = client
        .subscribe(SubscribeRequest {
            shards: vec![SHARD],
            from_height: 1,
        })
        .await
        .expect("subscription opens");
    let mut out = Vec::new();
    while out.len() < n {
        let c = tokio::time::timeout(Duration::from_secs(60), sub.next())
            .await
            .expect("a commitment within 60 s")
            .expect("the subscription stays open")
            .expect("a well-formed commitment");
        let key = key.clone();
        let c2 = c.clone();
        tokio::task::spawn_blocking(move || verify_commitment(&c2, &key))
            .await
            .expect("verifier task")
            .expect("every commitment verifies");
        out.push(c);
    }
    let extra = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
    assert!(extra.is_err(), "an extra commitment arrived: {extra:?}");
    out
}
