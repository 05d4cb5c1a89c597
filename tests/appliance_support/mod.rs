//! Shared helpers of the appliance tests: fresh keys, an in-process appliance on loopback with
//! tiny proofs, authenticated clients, a collector that verifies commitments like a validator,
//! and `epa run` as a child process ([`write_config`], [`start`]).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crypto::dsa::mldsa65;
use crypto::kem::mlkem768;
use epa::appliance::client::{SimAggregator, verify_commitment};
use epa::appliance::{Aggregator, Appliance, Settings, keys};
use node_lite::client::{Client, ClientConfig};
use node_lite::server::ServerConfig;
use node_lite::tls::{Fingerprint, Identity};
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
    /// A validator tenant: no shards, it subscribes and fetches.
    pub validator: mldsa65::KeyPair,
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
            validator: mldsa65::KeyPair::generate(&mut rng).expect("rng works"),
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
            aggregators: vec![
                Aggregator {
                    tenant: "aggregator-a".into(),
                    key: self.aggregator.verifying_key.clone(),
                    shards: [SHARD].into(),
                },
                Aggregator {
                    tenant: "validator-v".into(),
                    key: self.validator.verifying_key.clone(),
                    shards: Default::default(),
                },
            ],
            shard_keys: [
                (SHARD, self.shard.decapsulation_key.clone()),
                (SHARD + 1, self.shard.decapsulation_key.clone()),
            ]
            .into(),
            depth: DEPTH,
            preset: Preset::Fast96,
            hash: HashId::Blake3_256,
            // As `epa run` by default (`quic.require_authentication = true`).
            server: ServerConfig {
                require_authentication: true,
                ..ServerConfig::default()
            },
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

/// A connection authenticated as `key`'s tenant.
pub async fn connect_as(addr: SocketAddr, fp: Fingerprint, key: &mldsa65::KeyPair) -> Client {
    let (client, _tenant) = Client::connect_authenticated(addr, fp, quick(), key)
        .await
        .expect("loopback connection authenticates with a tenant key");
    client
}

/// A connection authenticated as the aggregator tenant.
pub async fn client(app: &Appliance, keys: &Keys) -> Client {
    connect_as(app.quic_addr(), app.fingerprint(), &keys.aggregator).await
}

/// A connection authenticated as the validator tenant.
pub async fn validator(app: &Appliance, keys: &Keys) -> Client {
    connect_as(app.quic_addr(), app.fingerprint(), &keys.validator).await
}

/// Client settings with a short request deadline (a dead appliance fails fast).
pub fn quick() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    }
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

/// An `epa run` child process, ready (its store opened clean).
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    pub fingerprint: Fingerprint,
    /// The HTTP face (`/metrics`, `/status`).
    pub http: SocketAddr,
    /// Its stdout lines after the ready line.
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    /// SIGKILL, no chance to drain; reaps the child.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL delivered");
        self.child.wait().expect("the child is reaped");
    }

    /// Resident memory of the appliance process, in KiB (Linux `/proc`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the appliance process is alive");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS is reported")
    }

    /// A connection authenticated as `key`'s tenant.
    pub async fn connect_as(&self, key: &mldsa65::KeyPair) -> Client {
        connect_as(self.addr, self.fingerprint, key).await
    }
}

impl Drop for Running {
    /// A test that fails must not leave its appliance running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `epa run --config <config>` and waits for its ready line, reading the address and the
/// fingerprint it prints: a store that does not open clean never gets there.
pub fn start(config: &Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_epa"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the epa binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut addr, mut fingerprint, mut http) = (None, None, None);
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("`epa run` prints its ready line within 60 s (the store opened clean)");
        if let Some(a) = line.strip_prefix("epa: QUIC listening on ") {
            addr = Some(a.parse().expect("a socket address"));
        }
        if let Some(a) = line.strip_prefix("epa: HTTP listening on ") {
            http = Some(a.parse().expect("a socket address"));
        }
        if let Some(f) = line.strip_prefix("epa: certificate fingerprint ") {
            fingerprint = Some(Fingerprint::from_hex(f).expect("hex fingerprint"));
        }
        if line == "epa: ready" {
            break;
        }
    }
    Running {
        child,
        addr: addr.expect("the address was printed"),
        fingerprint: fingerprint.expect("the fingerprint was printed"),
        http: http.expect("the HTTP address was printed"),
        lines: rx,
    }
}

/// Key files and a configuration for `epa run`: one shard, one aggregator tenant `agg`, one
/// validator tenant `val` (no shards), tiny proofs, loopback ports.
pub struct ProcessSetup {
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub agg_keys: keys::GeneratedKeys,
    pub shard_keys: keys::GeneratedKeys,
    pub val_keys: keys::GeneratedKeys,
    pub agg_pair: mldsa65::KeyPair,
    pub val_pair: mldsa65::KeyPair,
}

impl ProcessSetup {
    /// A simulated aggregator for the configured shard and key.
    pub fn aggregator(&self, seed: u64) -> SimAggregator {
        SimAggregator::new(
            self.agg_pair.clone(),
            SHARD,
            DEPTH,
            keys::load_kem_public(&self.shard_keys.kem_public).expect("ek"),
            6,
            seed,
            Limits::default(),
        )
        .expect("depth 8")
    }

    /// The appliance's verifying key (written under the data dir by the first start).
    pub fn appliance_key(&self) -> mldsa65::VerifyingKey {
        keys::load_dsa_public(&self.data_dir.join(keys::IDENTITY_PUBLIC_FILE)).expect("identity")
    }
}

/// Generates the key files and writes the configuration; `limits` is appended to `[limits]`
/// and `quic` to `[quic]`.
pub fn write_config(limits: &str, quic: &str) -> ProcessSetup {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key_dir = dir.path().join("keys");
    let agg_keys = keys::generate_keys(&key_dir, "agg").expect("keys");
    let shard_keys = keys::generate_keys(&key_dir, "shard").expect("keys");
    let val_keys = keys::generate_keys(&key_dir, "val").expect("keys");
    let data_dir = dir.path().join("data");
    let config = dir.path().join("epa.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 1
[appliance]
data_dir = "{data}"
[quic]
listen = "127.0.0.1:0"
{quic}
[http]
listen = "127.0.0.1:0"
[workers]
threads = 2
[prover]
preset = "fast-96"
hash = "blake3-256"
smt_depth = {DEPTH}
[limits]
{limits}
[[shards]]
id = {SHARD}
kem_key = "{kem}"
[[tenants]]
id = "agg"
public_key = "{pk}"
shards = [{SHARD}]
[[tenants]]
id = "val"
public_key = "{val}"
"#,
            data = data_dir.display(),
            kem = shard_keys.kem_secret.display(),
            pk = agg_keys.dsa_public.display(),
            val = val_keys.dsa_public.display(),
        ),
    )
    .expect("config written");
    let agg_pair = keys::load_dsa_seed(&agg_keys.dsa_secret).expect("seed");
    let val_pair = keys::load_dsa_seed(&val_keys.dsa_secret).expect("seed");
    ProcessSetup {
        dir,
        data_dir,
        config,
        agg_keys,
        shard_keys,
        val_keys,
        agg_pair,
        val_pair,
    }
}

/// GETs `path` from the HTTP face and returns the whole answer (headers and body).
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("HTTP connects");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("request sent");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("response read");
    out
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} is not in /metrics:\n{text}"))
}
