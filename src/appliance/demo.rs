//! `epa demo`: the whole appliance on loopback. An appliance with a temporary data dir, a
//! simulated aggregator sending encrypted batches over QUIC, and a simulated validator that
//! subscribes over QUIC and verifies every commitment (appliance signature, proof with the
//! stock winterfell verifier, statement, chaining, batch hash) before it counts it.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crypto::dsa::mldsa65;
use crypto::kem::mlkem768;
use node_lite::client::{Client, ClientConfig};
use node_lite::server::ServerConfig;
use node_lite::tls::Identity;
use node_lite::wire::SubscribeRequest;
use prover::options::{HashId, Preset};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use scheduler::Snapshot;

use super::client::{SimAggregator, verify_commitment};
use super::{Aggregator, Appliance, Error, Settings};

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Batches the aggregator sends.
    pub batches: usize,
    /// Transactions per batch.
    pub txs: usize,
    /// Tree depth.
    pub depth: u8,
    /// Proof options preset.
    pub preset: Preset,
    /// Proof commitment hash.
    pub hash: HashId,
    /// Seed of the keys and transactions.
    pub seed: u64,
    /// Stage worker threads.
    pub workers: usize,
    /// How long to wait for everything to verify.
    pub timeout: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            batches: 8,
            txs: 16,
            depth: 32,
            preset: Preset::Fast96,
            hash: HashId::Blake3_256,
            seed: 1,
            workers: std::thread::available_parallelism().map_or(2, usize::from),
            timeout: Duration::from_secs(600),
        }
    }
}

/// Something that happened, for progress output.
#[derive(Debug, Clone)]
pub enum DemoEvent {
    /// The appliance is up.
    Started {
        /// Its QUIC address.
        addr: SocketAddr,
        /// Its certificate fingerprint.
        fingerprint: String,
    },
    /// A batch was accepted.
    Accepted {
        /// 1-based batch number.
        batch: usize,
        /// The appliance's job id.
        job: u64,
        /// Transactions in it.
        txs: usize,
    },
    /// A commitment arrived and verified.
    Verified {
        /// Its height (= batch number).
        height: u64,
        /// Old root, hex.
        old_root: String,
        /// New root, hex.
        new_root: String,
        /// Proof envelope bytes.
        proof_bytes: usize,
        /// Submit to verified.
        latency: Duration,
    },
    /// A commitment failed a check.
    Failed {
        /// Its height.
        height: u64,
        /// Why.
        reason: String,
    },
}

/// The demo's result.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Batches accepted.
    pub batches: usize,
    /// Transactions submitted.
    pub txs: usize,
    /// Commitments that passed every check.
    pub verified: usize,
    /// Failures, one line each.
    pub failures: Vec<String>,
    /// Submit-to-verified latency of each verified batch.
    pub latencies: Vec<Duration>,
    /// First submit to last verification.
    pub elapsed: Duration,
    /// The scheduler's counters at the end.
    pub snapshot: Snapshot,
}

fn short(bytes: &[u8; 32]) -> String {
    hex::encode(&bytes[..6])
}

/// Runs the demo, reporting progress through `progress`.
///
/// # Errors
/// Setup failures (keys, sockets, store). Verification failures are in the report.
pub async fn run_demo(
    opts: &DemoOptions,
    mut progress: impl FnMut(&DemoEvent),
) -> Result<DemoReport, Error> {
    let data_dir = tempfile::Builder::new()
        .prefix("epa-demo-")
        .tempdir()
        .map_err(|e| Error::Config(format!("cannot create a temporary data dir: {e}")))?;
    let mut rng = ChaCha20Rng::seed_from_u64(opts.seed);
    let identity = mldsa65::KeyPair::generate(&mut rng)?;
    let agg_pair = mldsa65::KeyPair::generate(&mut rng)?;
    let shard_pair = mlkem768::KeyPair::generate(&mut rng)?;
    let validator_pair = mldsa65::KeyPair::generate(&mut rng)?;
    let shard = 0u32;
    // As `epa run` by default: every connection authenticates with a tenant key.
    let server = ServerConfig {
        require_authentication: true,
        ..ServerConfig::default()
    };
    let settings = Settings {
        data_dir: data_dir.path().to_path_buf(),
        quic_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        http_listen: None,
        workers: opts.workers.max(1),
        identity,
        tls: Identity::generate()?,
        aggregators: vec![
            Aggregator {
                tenant: "aggregator-0".into(),
                key: agg_pair.verifying_key.clone(),
                shards: [shard].into(),
            },
            Aggregator {
                tenant: "validator-0".into(),
                key: validator_pair.verifying_key.clone(),
                shards: Default::default(),
            },
        ],
        shard_keys: [(shard, shard_pair.decapsulation_key.clone())].into(),
        depth: opts.depth,
        preset: opts.preset,
        hash: opts.hash,
        server,
        max_queued_jobs_per_tenant: 1024,
        max_queued_bytes_per_tenant: 256 << 20,
    };
    let appliance = Appliance::start(settings).await?;
    progress(&DemoEvent::Started {
        addr: appliance.quic_addr(),
        fingerprint: appliance.fingerprint().to_hex(),
    });
    let outcome = drive(
        opts,
        &appliance,
        agg_pair,
        &validator_pair,
        shard_pair.encapsulation_key,
        &mut progress,
    )
    .await;
    let snapshot = appliance.snapshot();
    appliance.shutdown().await;
    let (batches, txs, verified, failures, latencies, elapsed) = outcome?;
    Ok(DemoReport {
        batches,
        txs,
        verified,
        failures,
        latencies,
        elapsed,
        snapshot,
    })
}

type Outcome = (usize, usize, usize, Vec<String>, Vec<Duration>, Duration);

async fn drive(
    opts: &DemoOptions,
    appliance: &Appliance,
    agg_pair: mldsa65::KeyPair,
    validator_pair: &mldsa65::KeyPair,
    shard_key: mlkem768::EncapsulationKey,
    progress: &mut impl FnMut(&DemoEvent),
) -> Result<Outcome, Error> {
    let shard = 0u32;
    let config = ClientConfig {
        request_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        ..ClientConfig::default()
    };
    let limits = config.limits;
    let (validator, _) = Client::connect_authenticated(
        appliance.quic_addr(),
        appliance.fingerprint(),
        config,
        validator_pair,
    )
    .await?;
    let mut sub = validator
        .subscribe(SubscribeRequest {
            shards: vec![shard],
            from_height: 1,
        })
        .await?;
    let (aggregator, _) = Client::connect_authenticated(
        appliance.quic_addr(),
        appliance.fingerprint(),
        config,
        &agg_pair,
    )
    .await?;
    let mut agg = SimAggregator::new(
        agg_pair,
        shard,
        opts.depth,
        shard_key,
        (opts.txs * 2).max(8),
        opts.seed,
        limits,
    )?;
    let appliance_key = appliance.appliance_key().clone();

    // The aggregator runs on its own task; the validator loop below verifies as commitments
    // arrive, so proving and verification overlap with submission.
    let (expect_tx, mut expect_rx) =
        tokio::sync::mpsc::channel::<(u64, [u8; 32], [u8; 32], Instant, usize)>(
            opts.batches.max(1),
        );
    let (batches, txs) = (opts.batches, opts.txs);
    let (event_tx, mut event_rx) = tokio::sync::mpsc::unbounded_channel::<DemoEvent>();
    let submitter = tokio::spawn(async move {
        let mut sent = 0usize;
        for i in 1..=batches {
            let list = agg.random_txs(txs)?;
            let prepared = agg.prepare(&list, Vec::new())?;
            let started = Instant::now();
            let job = agg
                .submit(&aggregator, &prepared, Duration::from_secs(120))
                .await?;
            sent += prepared.txs;
            let _ = event_tx.send(DemoEvent::Accepted {
                batch: i,
                job: job.0,
                txs: prepared.txs,
            });
            if expect_tx
                .send((
                    i as u64,
                    prepared.batch_hash,
                    prepared.new_root,
                    started,
                    prepared.txs,
                ))
                .await
                .is_err()
            {
                break;
            }
        }
        aggregator.close().await;
        Ok::<usize, Error>(sent)
    });

    let first = Instant::now();
    let mut expected: BTreeMap<u64, ([u8; 32], [u8; 32], Instant)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut latencies = Vec::new();
    let mut verified = 0usize;
    let mut prev_root: Option<[u8; 32]> = None;
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let mut next_height = 1u64;
    while next_height <= opts.batches as u64 {
        tokio::select! {
            Some(e) = event_rx.recv() => progress(&e),
            Some((h, hash, root, at, _)) = expect_rx.recv() => { expected.insert(h, (hash, root, at)); }
            next = sub.next() => {
                let c = match next {
                    Some(Ok(c)) => c,
                    Some(Err(e)) => { failures.push(format!("subscription: {e}")); break; }
                    None => { failures.push("the subscription ended early".into()); break; }
                };
                let key = appliance_key.clone();
                let c2 = c.clone();
                let check = tokio::task::spawn_blocking(move || verify_commitment(&c2, &key)).await;
                // The batch's expectation is sent right after it is accepted; wait for it.
                while !expected.contains_key(&c.height) {
                    match expect_rx.recv().await {
                        Some((h, hash, root, at, _)) => { expected.insert(h, (hash, root, at)); }
                        None => break,
                    }
                }
                while let Ok(e) = event_rx.try_recv() { progress(&e); }
                let mut problems = Vec::new();
                match check {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => problems.push(e.to_string()),
                    Err(e) => problems.push(format!("verifier task: {e}")),
                }
                if c.height != next_height {
                    problems.push(format!("height {} arrived, {next_height} expected", c.height));
                }
                if let Some(p) = prev_root.filter(|p| *p != c.old_root) {
                    problems.push(format!("old_root {} does not chain to {}", short(&c.old_root), short(&p)));
                }
                let at = match expected.get(&c.height) {
                    Some((hash, root, at)) => {
                        if *hash != c.batch_hash {
                            problems.push("batch hash is not the submitted batch's".into());
                        }
                        if *root != c.new_root {
                            problems.push("new_root is not the aggregator's expected root".into());
                        }
                        *at
                    }
                    None => { problems.push("no such batch was submitted".into()); first }
                };
                let event = if problems.is_empty() {
                    verified += 1;
                    let latency = at.elapsed();
                    latencies.push(latency);
                    DemoEvent::Verified {
                        height: c.height,
                        old_root: short(&c.old_root),
                        new_root: short(&c.new_root),
                        proof_bytes: c.proof.len(),
                        latency,
                    }
                } else {
                    let reason = problems.join("; ");
                    failures.push(format!("height {}: {reason}", c.height));
                    DemoEvent::Failed { height: c.height, reason }
                };
                progress(&event);
                prev_root = Some(c.new_root);
                next_height = c.height + 1;
            }
            () = tokio::time::sleep_until(deadline) => {
                failures.push(format!("timed out after {:?} at height {next_height}", opts.timeout));
                break;
            }
        }
    }
    let elapsed = first.elapsed();
    while let Ok(e) = event_rx.try_recv() {
        progress(&e);
    }
    let sent = match submitter.await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            failures.push(format!("aggregator: {e}"));
            0
        }
        Err(e) => {
            failures.push(format!("aggregator task: {e}"));
            0
        }
    };
    drop(sub);
    validator.close().await;
    Ok((opts.batches, sent, verified, failures, latencies, elapsed))
}
