//! The appliance: the scheduler, the stages and the light node wired together.
//!
//! Data flow: an aggregator submits a signed batch over QUIC → [`service`] checks it (known
//! key, allowed shard, signature, next sequence number, `prev_root` is the shard's root and
//! nothing of the shard is waiting to execute) → the scheduler journals it durably → the
//! aggregator gets `Accepted` → the stages ([`stages`]) decap, execute, prove and publish →
//! subscribers receive the signed commitment with its proof.
//!
//! Using it:
//!
//! 1. Build [`Settings`] from a configuration file ([`Settings::from_config`]) or by hand
//!    (tests, `epa demo`).
//! 2. [`Appliance::start`] it inside a Tokio runtime: it opens the store under the data dir,
//!    resumes unfinished jobs and serves QUIC (and HTTP if asked).
//! 3. Clients connect with [`node_lite::client::Client`] pinning
//!    [`Appliance::fingerprint`]; [`client`] has a simulated aggregator and a validator.
//! 4. [`Appliance::shutdown`] drains: no new work, running stages finish, the rest stays
//!    journaled for the next start.
//!
//! Semantics (sequence numbers, the `prev_root` rule, exactly-once publishing, empty batches)
//! are written down in `docs/adr/0006-appliance-semantics.md`.

pub mod client;
pub mod codec;
pub mod demo;
mod error;
pub mod keys;
pub mod service;
mod stages;
pub mod tx;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crypto::dsa::mldsa65;
use crypto::kem::mlkem768;
use node_lite::http::{HttpServer, Metric, MetricKind, Sample, StatusProvider};
use node_lite::server::{Server, ServerConfig};
use node_lite::tls::{Fingerprint, Identity};
use node_lite::wire::{Limits, RejectCode, Response};
use prover::options::{HashId, Preset};
use scheduler::{Scheduler, Snapshot};

pub use error::Error;
pub use service::{Aggregator, Service};

use self::tx::Invalid;

/// The store's directory under the data dir.
pub const STORE_DIR: &str = "store";

/// Everything the appliance needs to start.
pub struct Settings {
    /// Directory of the store (created if absent).
    pub data_dir: PathBuf,
    /// UDP address of the QUIC listener (port 0 picks one).
    pub quic_listen: SocketAddr,
    /// TCP address of the HTTP face; `None` serves no HTTP.
    pub http_listen: Option<SocketAddr>,
    /// Stage worker threads.
    pub workers: usize,
    /// The appliance's ML-DSA-65 identity (signs commitments).
    pub identity: mldsa65::KeyPair,
    /// The TLS certificate clients pin.
    pub tls: Identity,
    /// The aggregators allowed to submit batches.
    pub aggregators: Vec<Aggregator>,
    /// The shards served, with their ML-KEM-768 decapsulation keys.
    pub shard_keys: BTreeMap<u32, mlkem768::DecapsulationKey>,
    /// Depth of every shard's tree (2..=64).
    pub depth: u8,
    /// Proof options preset.
    pub preset: Preset,
    /// Proof commitment hash.
    pub hash: HashId,
    /// QUIC server limits (wire limits included).
    pub server: ServerConfig,
    /// Unfinished jobs per tenant before `Busy`.
    pub max_queued_jobs_per_tenant: usize,
    /// Queued payload bytes per tenant before `Busy`.
    pub max_queued_bytes_per_tenant: u64,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("quic_listen", &self.quic_listen)
            .field("http_listen", &self.http_listen)
            .field("shards", &self.shard_keys.keys().collect::<Vec<_>>())
            .field("depth", &self.depth)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Settings from a validated configuration: reads every key file, loads or creates the
    /// identity and the TLS certificate under the data dir.
    ///
    /// # Errors
    /// [`Error::KeyFile`] for unreadable or malformed key files, [`Error::Config`] for values
    /// this build cannot use.
    pub fn from_config(cfg: &firmware_config::Config) -> Result<Self, Error> {
        let data_dir = cfg.appliance.data_dir.clone();
        keys::require_private_secrets(cfg)?;
        let identity =
            keys::load_or_create_identity(&data_dir, cfg.appliance.identity_key.as_deref())?;
        let tls = match (&cfg.tls.cert, &cfg.tls.key) {
            (Some(cert), Some(key)) => {
                Identity::from_der(keys::read_key_file(cert)?, keys::read_key_file(key)?)
            }
            _ => keys::load_or_create_tls(&data_dir)?,
        };
        let parse_addr = |what: &str, s: &str| {
            s.parse::<SocketAddr>()
                .map_err(|e| Error::Config(format!("{what} `{s}`: {e}")))
        };
        let quic_listen = parse_addr("quic.listen", &cfg.quic.listen)?;
        let http_listen = Some(parse_addr("http.listen", &cfg.http.listen)?);
        let mut aggregators = Vec::new();
        for t in &cfg.tenants {
            aggregators.push(Aggregator {
                tenant: t.id.clone(),
                key: keys::load_dsa_public(&t.public_key)?,
                shards: t.shards.iter().copied().collect(),
            });
        }
        let mut shard_keys = BTreeMap::new();
        for s in &cfg.shards {
            shard_keys.insert(s.id, keys::load_kem_secret(&s.kem_key)?);
        }
        let depth = u8::try_from(cfg.prover.smt_depth)
            .ok()
            .filter(|d| (2..=64).contains(d))
            .ok_or_else(|| Error::Config("prover.smt_depth must be 2..=64".into()))?;
        let preset = cfg
            .prover
            .preset
            .parse()
            .map_err(|e| Error::Config(format!("prover.preset: {e}")))?;
        let hash = cfg
            .prover
            .hash
            .parse()
            .map_err(|e| Error::Config(format!("prover.hash: {e}")))?;
        let workers = match cfg.workers.threads {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        };
        let limits = Limits {
            max_frame_len: cfg.limits.max_frame_bytes,
            max_txs_per_batch: cfg.limits.max_batch_txs,
            ..Limits::default()
        };
        let server = ServerConfig {
            limits,
            max_concurrent_streams: cfg.limits.max_streams_per_connection,
            max_connections_per_ip: cfg.limits.max_connections_per_peer as usize,
            ..ServerConfig::default()
        };
        Ok(Self {
            data_dir,
            quic_listen,
            http_listen,
            workers,
            identity,
            tls,
            aggregators,
            shard_keys,
            depth,
            preset,
            hash,
            server,
            max_queued_jobs_per_tenant: cfg.limits.max_queued_jobs_per_tenant as usize,
            max_queued_bytes_per_tenant: cfg.limits.max_queued_bytes_per_tenant,
        })
    }
}

/// Counters the appliance keeps besides the scheduler's (since the process started).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Batches accepted.
    pub batches_accepted: AtomicU64,
    /// Batch submissions rejected, by reject code (index = code - 1).
    pub rejected: [AtomicU64; 13],
    /// Transactions applied.
    pub txs_valid: AtomicU64,
    /// Transactions skipped, by [`Invalid`] code (index = code - 1).
    pub txs_invalid: [AtomicU64; 8],
}

impl Metrics {
    pub(crate) fn record_txs(&self, valid: u32, invalid: &[(Invalid, u32)]) {
        self.txs_valid
            .fetch_add(u64::from(valid), Ordering::Relaxed);
        for (reason, n) in invalid {
            if let Some(c) = self.txs_invalid.get(usize::from(reason.code()) - 1) {
                c.fetch_add(u64::from(*n), Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn count_response(&self, response: &Response) {
        if let Response::Rejected(r) = response
            && let Some(c) = self
                .rejected
                .get(usize::from(r.code.to_u16()).saturating_sub(1))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What `/metrics`, `/status` and `/readyz` show.
struct ApplianceStatus {
    scheduler: Arc<Scheduler>,
    service: Arc<Service>,
    metrics: Arc<Metrics>,
    shards: Vec<u32>,
    started: Instant,
}

impl StatusProvider for ApplianceStatus {
    fn metrics(&self) -> Vec<Metric> {
        let snap = self.scheduler.snapshot();
        let m = &self.metrics;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let mut out = vec![
            Metric::single(
                "epa_batches_accepted_total",
                "Batches accepted.",
                MetricKind::Counter,
                load(&m.batches_accepted),
            ),
            Metric::single(
                "epa_txs_applied_total",
                "Transactions applied.",
                MetricKind::Counter,
                load(&m.txs_valid),
            ),
            Metric::single(
                "epa_jobs_queued",
                "Unfinished jobs not running.",
                MetricKind::Gauge,
                snap.queued as f64,
            ),
            Metric::single(
                "epa_jobs_running",
                "Jobs running a stage.",
                MetricKind::Gauge,
                snap.running as f64,
            ),
            Metric::single(
                "epa_jobs_done_total",
                "Jobs completed.",
                MetricKind::Counter,
                snap.done as f64,
            ),
            Metric::single(
                "epa_jobs_failed_total",
                "Jobs failed.",
                MetricKind::Counter,
                snap.failed as f64,
            ),
            Metric::single(
                "epa_uptime_seconds",
                "Seconds since start.",
                MetricKind::Gauge,
                self.started.elapsed().as_secs_f64(),
            ),
        ];
        out.push(Metric {
            name: "epa_batches_rejected_total".into(),
            help: "Batch submissions rejected, by code.".into(),
            kind: MetricKind::Counter,
            samples: RejectCode::ALL
                .iter()
                .zip(&m.rejected)
                .map(|(code, n)| Sample {
                    labels: vec![("code".into(), format!("{code:?}"))],
                    value: load(n),
                })
                .collect(),
        });
        out.push(Metric {
            name: "epa_txs_skipped_total".into(),
            help: "Transactions skipped, by reason.".into(),
            kind: MetricKind::Counter,
            samples: Invalid::ALL
                .iter()
                .zip(&m.txs_invalid)
                .map(|(r, n)| Sample {
                    labels: vec![("reason".into(), r.name().into())],
                    value: load(n),
                })
                .collect(),
        });
        out.push(Metric {
            name: "epa_stage_seconds_total".into(),
            help: "Time spent in each stage.".into(),
            kind: MetricKind::Counter,
            samples: snap
                .stage_latency
                .iter()
                .map(|(s, l)| Sample {
                    labels: vec![("stage".into(), s.name().into())],
                    value: l.total.as_secs_f64(),
                })
                .collect(),
        });
        out
    }

    fn status(&self) -> serde_json::Value {
        let snap = self.scheduler.snapshot();
        let shards: Vec<serde_json::Value> = self
            .shards
            .iter()
            .map(|s| {
                let (root, height) = self
                    .service
                    .shard_state(*s)
                    .map(|(r, h)| (hex::encode(codec::word_to_bytes(&r)), h))
                    .unwrap_or_else(|e| (format!("error: {e}"), 0));
                serde_json::json!({ "shard": s, "height": height, "root": root })
            })
            .collect();
        serde_json::json!({
            "backends": ["cpu"],
            "jobs": {
                "queued": snap.queued,
                "running": snap.running,
                "done": snap.done,
                "failed": snap.failed,
                "cancelled": snap.cancelled,
            },
            "queues": snap.tenants.iter().map(|t| serde_json::json!({
                "tenant": t.tenant, "jobs": t.jobs, "bytes": t.bytes,
            })).collect::<Vec<_>>(),
            "stages": snap.stage_latency.iter().map(|(s, l)| serde_json::json!({
                "stage": s.name(), "count": l.count,
                "mean_ms": l.mean().as_secs_f64() * 1e3, "max_ms": l.max.as_secs_f64() * 1e3,
            })).collect::<Vec<_>>(),
            "shards": shards,
        })
    }

    fn ready(&self) -> bool {
        true
    }
}

/// A running appliance.
pub struct Appliance {
    scheduler: Arc<Scheduler>,
    service: Arc<Service>,
    server: Server,
    http: Option<HttpServer>,
    appliance_key: mldsa65::VerifyingKey,
    metrics: Arc<Metrics>,
    recovered: u64,
}

impl std::fmt::Debug for Appliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appliance")
            .field("quic", &self.server.local_addr())
            .field("fingerprint", &self.server.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Appliance {
    /// Opens the store, resumes unfinished jobs, and starts serving. Must run inside a
    /// multi-threaded Tokio runtime.
    ///
    /// # Errors
    /// Store, key, socket or configuration errors.
    pub async fn start(settings: Settings) -> Result<Self, Error> {
        let metrics = Arc::new(Metrics::default());
        let limits = settings.server.limits;
        let executor = stages::BatchExecutor {
            shard_keys: settings
                .shard_keys
                .into_iter()
                .map(|(s, k)| (s, Arc::new(k)))
                .collect(),
            signing_key: settings.identity.signing_key.clone(),
            depth: settings.depth,
            preset: settings.preset,
            hash: settings.hash,
            limits,
            metrics: Arc::clone(&metrics),
        };
        let shards: BTreeSet<u32> = executor.shard_keys.keys().copied().collect();
        let mut tenant_weights = BTreeMap::new();
        for a in &settings.aggregators {
            tenant_weights.insert(a.tenant.clone(), 1);
        }
        let config = scheduler::Config {
            workers: settings.workers.clamp(1, 1024),
            max_queued_jobs_per_tenant: settings.max_queued_jobs_per_tenant.max(1),
            max_queued_bytes_per_tenant: settings.max_queued_bytes_per_tenant,
            max_payload_bytes: (limits.max_frame_len as usize + 4)
                .min(settings.max_queued_bytes_per_tenant as usize),
            tenant_weights,
            ..scheduler::Config::default()
        };
        let data_dir = settings.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|e| Error::KeyFile {
            path: data_dir.clone(),
            detail: format!("cannot create the data dir: {e}"),
        })?;
        let store_dir = data_dir.join(STORE_DIR);
        let scheduler = tokio::task::spawn_blocking(move || {
            Scheduler::open(store_dir, config, Arc::new(executor))
        })
        .await
        .map_err(|e| Error::Config(format!("opening the store: {e}")))??;
        let scheduler = Arc::new(scheduler);
        let service = Service::new(
            Arc::clone(&scheduler),
            settings.aggregators,
            shards.clone(),
            settings.depth,
            limits,
            Arc::clone(&metrics),
        );
        let recovered = {
            let service = Arc::clone(&service);
            tokio::task::spawn_blocking(move || service.recover())
                .await
                .map_err(|e| Error::Config(format!("recovering acceptance records: {e}")))??
        };
        let server = Server::bind(
            settings.quic_listen,
            &settings.tls,
            settings.server,
            Arc::clone(&service),
        )?;
        let http = match settings.http_listen {
            Some(addr) => {
                let provider = Arc::new(ApplianceStatus {
                    scheduler: Arc::clone(&scheduler),
                    service: Arc::clone(&service),
                    metrics: Arc::clone(&metrics),
                    shards: shards.iter().copied().collect(),
                    started: Instant::now(),
                });
                Some(HttpServer::bind(addr, provider).await?)
            }
            None => None,
        };
        Ok(Self {
            scheduler,
            service,
            server,
            http,
            appliance_key: settings.identity.verifying_key,
            metrics,
            recovered,
        })
    }

    /// The QUIC address.
    pub fn quic_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The HTTP address, if serving HTTP.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(HttpServer::local_addr)
    }

    /// The TLS certificate fingerprint clients pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.server.fingerprint()
    }

    /// The key commitments are signed with.
    pub fn appliance_key(&self) -> &mldsa65::VerifyingKey {
        &self.appliance_key
    }

    /// The scheduler's counters and per-stage latency.
    pub fn snapshot(&self) -> Snapshot {
        self.scheduler.snapshot()
    }

    /// The appliance's own counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Batch jobs whose acceptance records were rewritten at start (a crash between a submit
    /// and its records).
    pub fn recovered(&self) -> u64 {
        self.recovered
    }

    /// Waits until no job is unfinished or `timeout` passes; returns whether all finished.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let scheduler = Arc::clone(&self.scheduler);
        tokio::task::spawn_blocking(move || scheduler.wait_idle(timeout))
            .await
            .unwrap_or(false)
    }

    /// Drains and stops: closes the QUIC and HTTP listeners, stops subscriptions, admits no
    /// more work, lets running stages finish and leaves the rest journaled for the next start.
    pub async fn shutdown(self) {
        let Self {
            scheduler,
            service,
            server,
            http,
            ..
        } = self;
        scheduler.stop_admitting();
        service.close();
        server.shutdown().await;
        if let Some(http) = http {
            http.shutdown().await;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while service.pollers() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(service);
        // Connection tasks may hold the service (and so the scheduler) a moment longer.
        let mut scheduler = scheduler;
        let owned = loop {
            match Arc::try_unwrap(scheduler) {
                Ok(s) => break Some(s),
                Err(shared) if Instant::now() < deadline => {
                    scheduler = shared;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(_) => break None,
            }
        };
        if let Some(s) = owned {
            let _ = tokio::task::spawn_blocking(move || s.shutdown()).await;
        }
    }
}
