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
mod kem;
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
use node_lite::http::{
    HistogramFamily, HttpOptions, HttpServer, Metric, MetricKind, Sample, StatusProvider,
};
use node_lite::server::{Server, ServerConfig};
use node_lite::tls::{Fingerprint, Identity};
use node_lite::wire::{Limits, RejectCode, Response};
use prover::options::{HashId, Preset};
use scheduler::{JobState, Scheduler, Snapshot};

pub use error::Error;
pub use service::{Aggregator, Service};

use self::tx::Invalid;
use crate::logging::{Observations, Observed};

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

/// What the configuration tunes beyond [`Settings`] ([`Appliance::start_tuned`]): the keys a
/// shard rotates through, RocksDB, the CPU instruction set, NUMA, GPU memory and the tenants'
/// shares. The default is what a configuration without those keys gives.
#[derive(Default)]
pub struct Tuning {
    /// More active ML-KEM-768 keys per shard besides [`Settings::shard_keys`]
    /// (`shards[].kem_keys`).
    pub shard_extra_keys: BTreeMap<u32, Vec<mlkem768::DecapsulationKey>>,
    /// RocksDB options of the store (`[storage]`).
    pub store: scheduler::StoreOptions,
    /// The CPU instruction set of the decap kernels (`backends.simd`; `None` for `auto`);
    /// `EPA_SIMD` still wins when set.
    pub simd: Option<kernels::Isa>,
    /// The prover backends that may run (`backends.allowed`); empty means the CPU kernels
    /// only.
    pub backends_allowed: Vec<String>,
    /// Memory budget of each GPU in bytes (`backends.device_memory_budget_mib`; 0: 80% of
    /// each device).
    pub device_memory_budget: u64,
    /// Smallest decap batch sent to a hardware GPU (`backends.kem_gpu_min_batch`; `None`:
    /// the configuration's default).
    pub kem_gpu_min_batch: Option<u32>,
    /// `numa.policy = "none"`: no pinned pools.
    pub unpinned: bool,
    /// `numa.policy = "bind"`: only these nodes.
    pub numa_nodes: Option<Vec<usize>>,
    /// `tenants[].weight` (tenants not listed weigh 1).
    pub tenant_weights: BTreeMap<String, u32>,
    /// `tenants[].reserved_share`, percent of the workers.
    pub tenant_reserved_share: BTreeMap<String, u32>,
    /// `tenants[].max_queued`.
    pub tenant_max_queued: BTreeMap<String, usize>,
    /// `tenants[].max_submits_per_second` (tenants with a limit only).
    pub tenant_submits_per_second: BTreeMap<String, u32>,
}

impl std::fmt::Debug for Tuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let extra: BTreeMap<u32, Vec<String>> = self
            .shard_extra_keys
            .iter()
            .map(|(s, ks)| {
                let ids = ks
                    .iter()
                    .map(|k| keys::KeyId::of_decapsulation_key(k).to_string());
                (*s, ids.collect())
            })
            .collect();
        f.debug_struct("Tuning")
            .field("shard_extra_keys", &extra)
            .field("store", &self.store)
            .field("simd", &self.simd)
            .field("backends_allowed", &self.backends_allowed)
            .field("device_memory_budget", &self.device_memory_budget)
            .field("kem_gpu_min_batch", &self.kem_gpu_min_batch)
            .field("unpinned", &self.unpinned)
            .field("numa_nodes", &self.numa_nodes)
            .field("tenant_weights", &self.tenant_weights)
            .field("tenant_reserved_share", &self.tenant_reserved_share)
            .field("tenant_max_queued", &self.tenant_max_queued)
            .field("tenant_submits_per_second", &self.tenant_submits_per_second)
            .finish()
    }
}

impl Tuning {
    /// The tuning a validated configuration asks for; reads the extra shard key files.
    ///
    /// # Errors
    /// [`Error::KeyFile`] for unreadable or malformed key files, [`Error::Config`] for values
    /// this build cannot use.
    pub fn from_config(cfg: &firmware_config::Config) -> Result<Self, Error> {
        let mut shard_extra_keys = BTreeMap::new();
        for s in cfg.shards.iter().filter(|s| !s.kem_keys.is_empty()) {
            let loaded = s
                .kem_keys
                .iter()
                .map(|p| keys::load_kem_secret(p))
                .collect::<Result<Vec<_>, _>>()?;
            shard_extra_keys.insert(s.id, loaded);
        }
        let st = &cfg.storage;
        let mib = |v: u32| (v as usize) << 20;
        let store = scheduler::StoreOptions {
            block_cache_bytes: mib(st.block_cache_mib),
            write_buffer_bytes: mib(st.write_buffer_mib),
            max_background_jobs: i32::try_from(st.max_background_jobs).unwrap_or(i32::MAX),
            max_open_files: match st.max_open_files {
                0 => None,
                n => Some(i32::try_from(n).unwrap_or(i32::MAX)),
            },
        };
        let simd = match cfg.backends.simd.as_str() {
            "auto" => None,
            other => Some(
                other
                    .parse::<kernels::Isa>()
                    .map_err(|e| Error::Config(format!("backends.simd: {e}")))?,
            ),
        };
        let numa_nodes = (cfg.numa.policy == "bind")
            .then(|| cfg.numa.nodes.iter().map(|n| *n as usize).collect());
        let by_tenant = |f: &dyn Fn(&firmware_config::Tenant) -> Option<u32>| {
            cfg.tenants
                .iter()
                .filter_map(|t| f(t).map(|v| (t.id.clone(), v)))
                .collect::<BTreeMap<String, u32>>()
        };
        Ok(Self {
            shard_extra_keys,
            store,
            simd,
            backends_allowed: cfg.backends.allowed.clone(),
            device_memory_budget: cfg
                .backends
                .device_memory_budget_mib
                .saturating_mul(1 << 20),
            kem_gpu_min_batch: Some(cfg.backends.kem_gpu_min_batch),
            unpinned: cfg.numa.policy == "none",
            numa_nodes,
            tenant_weights: by_tenant(&|t| Some(t.weight)),
            tenant_reserved_share: by_tenant(&|t| {
                (t.reserved_share > 0).then_some(t.reserved_share)
            }),
            tenant_submits_per_second: by_tenant(&|t| {
                (t.max_submits_per_second > 0).then_some(t.max_submits_per_second)
            }),
            tenant_max_queued: by_tenant(&|t| t.max_queued)
                .into_iter()
                .map(|(t, n)| (t, n as usize))
                .collect(),
        })
    }

    /// The prover backend for proofs among `probed` ([`prover::registry::probe`]): the most
    /// preferred one `backends.allowed` lists (see [`prover::registry::pick_backend`]; a
    /// software GPU is never preferred), the CPU kernels when none is.
    pub fn pick_prover_backend(
        &self,
        probed: &[prover::registry::ProbedBackend],
    ) -> prover::registry::ProverBackend {
        prover::registry::pick_backend(&self.backends_allowed, probed)
    }

    /// The smallest decap batch sent to a hardware GPU (`backends.kem_gpu_min_batch`, 256
    /// by default).
    pub fn kem_gpu_min_batch(&self) -> usize {
        let v = self
            .kem_gpu_min_batch
            .unwrap_or(firmware_config::Backends::default().kem_gpu_min_batch);
        usize::try_from(v).unwrap_or(usize::MAX)
    }

    /// Whether `backends.allowed` names anything besides the CPU kernels.
    pub fn allows_accelerators(&self) -> bool {
        self.backends_allowed.iter().any(|b| b != "cpu")
    }

    /// Whether to probe the accelerators at start: only when one is allowed and the machine
    /// has GPU hardware (`gpu_hardware`, a display-class PCI device in sysfs). Without one only
    /// a software GPU could open, which is never preferred to the CPU kernels, and opening it
    /// would cost start-up time and print the graphics stack's messages.
    pub fn should_probe(&self, gpu_hardware: bool) -> bool {
        self.allows_accelerators() && gpu_hardware
    }

    /// The scheduler configuration `base` with this tuning applied for `workers` threads.
    pub fn apply(&self, base: scheduler::Config) -> scheduler::Config {
        let workers = base.workers;
        let mut tenant_weights = base.tenant_weights;
        tenant_weights.extend(
            self.tenant_weights
                .iter()
                .map(|(t, w)| (t.clone(), (*w).max(1))),
        );
        scheduler::Config {
            tenant_weights,
            tenant_reserved_workers: self
                .tenant_reserved_share
                .iter()
                .map(|(t, pct)| (t.clone(), workers * *pct as usize / 100))
                .filter(|(_, n)| *n > 0)
                .collect(),
            tenant_max_queued_jobs: self
                .tenant_max_queued
                .iter()
                .map(|(t, n)| (t.clone(), (*n).max(1)))
                .collect(),
            store: self.store.clone(),
            pin_threads: base.pin_threads && !self.unpinned,
            numa_nodes: self.numa_nodes.clone(),
            gpu_memory_budget: self.device_memory_budget,
            ..base
        }
    }

    /// The active ML-KEM keys of every shard: `primary` (from [`Settings::shard_keys`]) plus
    /// this tuning's extra keys.
    ///
    /// # Errors
    /// [`Error::Config`] if a shard lists one key twice, or has extra keys but no primary.
    pub fn shard_keys(
        &mut self,
        primary: BTreeMap<u32, mlkem768::DecapsulationKey>,
    ) -> Result<BTreeMap<u32, keys::ShardKeys>, Error> {
        if let Some(s) = self
            .shard_extra_keys
            .keys()
            .find(|s| !primary.contains_key(s))
        {
            return Err(Error::Config(format!(
                "shard {s} has extra ML-KEM keys but no primary kem_key"
            )));
        }
        primary
            .into_iter()
            .map(|(s, dk)| {
                let more = self.shard_extra_keys.remove(&s).unwrap_or_default();
                Ok((s, keys::ShardKeys::with_more(dk, more)?))
            })
            .collect()
    }
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
            max_subscriptions_per_connection: cfg.limits.max_subscriptions_per_connection as usize,
            max_streams_per_second: cfg.limits.max_streams_per_second,
            idle_timeout: Duration::from_secs(cfg.limits.idle_timeout_secs.into()),
            request_timeout: Duration::from_secs(cfg.limits.request_timeout_secs.into()),
            max_inflight_bytes: cfg.limits.max_inflight_bytes,
            require_authentication: cfg.quic.require_authentication,
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
    pub txs_invalid: [AtomicU64; Invalid::ALL.len()],
    /// Resubmissions of an accepted batch, answered with its job id (no second job).
    pub batches_duplicate: AtomicU64,
    /// ML-KEM decap batches a GPU failed (an error or a wrong result length) and the CPU
    /// kernels redid (`epa_kem_gpu_fallbacks_total`).
    pub kem_gpu_fallbacks: AtomicU64,
    /// ML-KEM-768 decapsulations by the backend that produced the secrets
    /// (`epa_kem_decaps_total{backend}`; index order `cpu`, `wgpu`, `cuda`, `reference`).
    pub kem_decaps: [AtomicU64; 4],
    /// ML-KEM decap batches by backend (`epa_kem_batches_total{backend}`, same order).
    pub kem_batches: [AtomicU64; 4],
    /// The QUIC server's counters (limits, authentication), exported as `epa_quic_*`; set
    /// once the server is bound.
    pub quic: std::sync::OnceLock<Arc<node_lite::server::ServerStats>>,
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
    observations: Arc<Observations>,
    /// The kernels backends of this process, probed once at start.
    backends: Vec<StatusBackend>,
    shards: Vec<u32>,
    /// The active ML-KEM key ids of each shard (several while keys rotate).
    kem_key_ids: BTreeMap<u32, Vec<keys::KeyId>>,
    started: Instant,
}

/// A kernels backend as `/status` and `/metrics` list it.
struct StatusBackend {
    info: kernels::BackendInfo,
    /// A software GPU (lavapipe): never chosen.
    software: bool,
    /// The prove stage's backend.
    prove: bool,
    /// Takes decap batches (the CPU kernels always: small batches and the fallback).
    kem: bool,
}

/// The backends `/status` lists: the probe's (with which one proves and which take decap
/// batches) when the appliance probed, else the CPU kernels alone.
fn status_backends(
    probed: Option<&[prover::registry::ProbedBackend]>,
    prover_backend: prover::registry::ProverBackend,
    kem_gpu: Option<&str>,
) -> Vec<StatusBackend> {
    match probed {
        Some(probed) => probed
            .iter()
            .map(|p| StatusBackend {
                info: p.info.clone(),
                software: p.software,
                prove: p.backend == prover_backend,
                kem: p.backend == prover::registry::ProverBackend::Cpu
                    || kem_gpu == Some(p.backend.name()),
            })
            .collect(),
        None => kernels::CpuBackend::new()
            .map(|b| StatusBackend {
                info: kernels::Backend::info(&b),
                software: false,
                prove: true,
                kem: true,
            })
            .into_iter()
            .collect(),
    }
}

/// A labelled gauge or counter with one sample per `(label value, value)`.
fn labelled(
    name: &str,
    help: &str,
    kind: MetricKind,
    label: &str,
    values: impl IntoIterator<Item = (String, f64)>,
) -> Metric {
    Metric {
        name: name.into(),
        help: help.into(),
        kind,
        samples: values
            .into_iter()
            .map(|(v, value)| Sample {
                labels: vec![(label.into(), v)],
                value,
            })
            .collect(),
    }
}

/// The scheduler's state of a job as `/status` names it.
fn state_name(state: &JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Running(_) => "running",
        JobState::Done => "done",
        JobState::Failed(_) => "failed",
        JobState::Cancelled => "cancelled",
    }
}

fn kind_name(kind: scheduler::JobKind) -> &'static str {
    match kind {
        scheduler::JobKind::Batch => "batch",
        scheduler::JobKind::Proving => "proving",
        scheduler::JobKind::ProvingPublished => "proving-published",
    }
}

impl ApplianceStatus {
    /// Per-node, per-device and per-backend series (issue 9's `/metrics` view).
    fn placement_metrics(&self, snap: &Snapshot, out: &mut Vec<Metric>) {
        let node = |i: usize| snap.nodes.get(i).map_or(i, |n| n.os_index).to_string();
        let per_node = |f: &dyn Fn(&scheduler::NodeView) -> f64| {
            snap.nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (node(i), f(n)))
                .collect::<Vec<_>>()
        };
        out.push(labelled(
            "epa_node_queue_depth",
            "Jobs placed on the NUMA node waiting for a CPU stage.",
            MetricKind::Gauge,
            "node",
            per_node(&|n| n.queued as f64),
        ));
        out.push(labelled(
            "epa_node_running_stages",
            "Stages running on the NUMA node's worker pool now.",
            MetricKind::Gauge,
            "node",
            per_node(&|n| n.running as f64),
        ));
        out.push(labelled(
            "epa_node_workers",
            "Worker threads of the NUMA node's pool.",
            MetricKind::Gauge,
            "node",
            per_node(&|n| n.workers as f64),
        ));
        out.push(labelled(
            "epa_node_utilisation_ratio",
            "Busy workers over all workers of the NUMA node (0 to 1).",
            MetricKind::Gauge,
            "node",
            per_node(&|n| n.utilisation()),
        ));
        out.push(labelled(
            "epa_node_memory_reserved_bytes",
            "Memory reserved on the NUMA node by the jobs placed there.",
            MetricKind::Gauge,
            "node",
            per_node(&|n| n.memory_used as f64),
        ));
        out.push(labelled(
            "epa_node_memory_budget_bytes",
            "Memory budget of the NUMA node for admitted jobs.",
            MetricKind::Gauge,
            "node",
            per_node(&|n| n.memory_budget as f64),
        ));
        out.push(labelled(
            "epa_node_placements_total",
            "Jobs placed on the NUMA node.",
            MetricKind::Counter,
            "node",
            per_node(&|n| n.placed as f64),
        ));
        let per_gpu = |f: &dyn Fn(&scheduler::GpuView) -> f64| {
            snap.gpus
                .iter()
                .map(|g| (g.pci_address.clone(), f(g)))
                .collect::<Vec<_>>()
        };
        out.push(labelled(
            "epa_device_healthy",
            "1 if the GPU is in rotation, 0 if it was taken out after an error.",
            MetricKind::Gauge,
            "device",
            per_gpu(&|g| f64::from(u8::from(g.healthy))),
        ));
        out.push(labelled(
            "epa_device_queue_depth",
            "Jobs placed on the GPU waiting for their prove stage.",
            MetricKind::Gauge,
            "device",
            per_gpu(&|g| g.queued as f64),
        ));
        out.push(labelled(
            "epa_device_running_stages",
            "Stages the GPU's driver thread runs now (0 or 1).",
            MetricKind::Gauge,
            "device",
            per_gpu(&|g| f64::from(u8::from(g.running))),
        ));
        out.push(labelled(
            "epa_device_memory_bytes",
            "Memory budget of the GPU for admitted jobs.",
            MetricKind::Gauge,
            "device",
            per_gpu(&|g| g.memory_budget as f64),
        ));
        out.push(labelled(
            "epa_device_memory_reserved_bytes",
            "Memory reserved on the GPU by the jobs placed there.",
            MetricKind::Gauge,
            "device",
            per_gpu(&|g| g.memory_used as f64),
        ));
        out.push(labelled(
            "epa_device_failures_total",
            "Times the GPU was taken out of rotation.",
            MetricKind::Counter,
            "device",
            per_gpu(&|g| g.failures as f64),
        ));
        out.push(labelled(
            "epa_backend_info",
            "The kernels backends of this process (always 1; the label names each).",
            MetricKind::Gauge,
            "backend",
            self.backends.iter().map(|b| (b.info.name.clone(), 1.0)),
        ));
        out.push(Metric::single(
            "epa_backend_cpu_fallbacks_total",
            "Accelerated prover steps redone on the CPU kernels after their backend failed.",
            MetricKind::Counter,
            prover::accel::cpu_fallbacks_total() as f64,
        ));
        out.push(labelled(
            "epa_backend_memory_bytes",
            "Memory a kernels backend can use, where it says.",
            MetricKind::Gauge,
            "backend",
            self.backends
                .iter()
                .filter_map(|b| Some((b.info.name.clone(), b.info.memory_bytes? as f64))),
        ));
        let m = &self.metrics;
        out.push(Metric::single(
            "epa_kem_gpu_fallbacks_total",
            "ML-KEM decap batches a GPU failed and the CPU kernels redid.",
            MetricKind::Counter,
            m.kem_gpu_fallbacks.load(Ordering::Relaxed) as f64,
        ));
        let by_kem_backend = |counters: &[AtomicU64; 4]| {
            kem::KEM_BACKENDS
                .iter()
                .zip(counters)
                .map(|(b, c)| ((*b).to_owned(), c.load(Ordering::Relaxed) as f64))
                .collect::<Vec<_>>()
        };
        out.push(labelled(
            "epa_kem_decaps_total",
            "ML-KEM-768 decapsulations, by the backend that produced the secrets.",
            MetricKind::Counter,
            "backend",
            by_kem_backend(&m.kem_decaps),
        ));
        out.push(labelled(
            "epa_kem_batches_total",
            "ML-KEM-768 decap batches, by the backend that produced the secrets.",
            MetricKind::Counter,
            "backend",
            by_kem_backend(&m.kem_batches),
        ));
    }

    fn node_json(snap: &Snapshot) -> Vec<serde_json::Value> {
        snap.nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "node": n.os_index, "workers": n.workers, "running": n.running,
                    "queued": n.queued, "utilisation": n.utilisation(),
                    "memory_budget_bytes": n.memory_budget, "memory_used_bytes": n.memory_used,
                    "memory_peak_bytes": n.memory_peak, "placed": n.placed,
                })
            })
            .collect()
    }

    fn device_json(snap: &Snapshot) -> Vec<serde_json::Value> {
        snap.gpus
            .iter()
            .map(|g| {
                serde_json::json!({
                    "device": g.pci_address, "node": g.node, "healthy": g.healthy,
                    "running": g.running, "queued": g.queued,
                    "memory_budget_bytes": g.memory_budget, "memory_used_bytes": g.memory_used,
                    "memory_peak_bytes": g.memory_peak, "placed": g.placed,
                    "failures": g.failures,
                })
            })
            .collect()
    }

    fn backend_json(&self) -> Vec<serde_json::Value> {
        self.backends
            .iter()
            .map(|b| {
                serde_json::json!({
                    "name": b.info.name, "detail": format!("{:?}", b.info.device),
                    "memory_bytes": b.info.memory_bytes, "healthy": true,
                    "software": b.software, "prove": b.prove, "kem": b.kem,
                })
            })
            .collect()
    }

    fn jobs_json(&self) -> serde_json::Value {
        let activity = self.scheduler.activity();
        let job = |s: &scheduler::JobStatus| {
            let stages = s.job.kind.stages();
            let stage = match &s.state {
                JobState::Running(stage) => Some(*stage),
                _ => stages.get(s.completed.len()).copied(),
            };
            let reason = match &s.state {
                JobState::Failed(r) => Some(r.as_str()),
                _ => None,
            };
            serde_json::json!({
                "job": s.job.id.0, "tenant": s.job.tenant, "shard": s.job.ordering_key,
                "kind": kind_name(s.job.kind), "state": state_name(&s.state),
                "stage": stage.map(|st| st.name()), "stage_index": s.completed.len(),
                "stages": stages.len(), "progress": s.progress(), "attempts": s.attempts,
                "node": s.placement.as_ref().map(|p| p.node),
                "gpu": s.placement.as_ref().and_then(|p| p.gpu),
                "reason": reason,
            })
        };
        let placement = |p: &scheduler::PlacementDecision| {
            serde_json::json!({
                "seq": p.seq, "job": p.job.0, "tenant": p.tenant, "node": p.record.node,
                "gpu": p.record.gpu, "node_bytes": p.record.node_bytes,
                "gpu_bytes": p.record.gpu_bytes, "reason": p.record.reason,
            })
        };
        serde_json::json!({
            "in_flight": activity.in_flight.iter().map(job).collect::<Vec<_>>(),
            "recent_jobs": activity.finished.iter().map(job).collect::<Vec<_>>(),
            "recent_placements": activity.placements.iter().map(placement).collect::<Vec<_>>(),
            "placements_total": activity.placements_total,
        })
    }
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
                "epa_batches_duplicate_total",
                "Resubmissions of an accepted batch answered with its job id.",
                MetricKind::Counter,
                load(&m.batches_duplicate),
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
        if let Some(quic) = m.quic.get() {
            out.extend(quic.metrics());
        }
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
        self.placement_metrics(&snap, &mut out);
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

    fn histograms(&self) -> Vec<HistogramFamily> {
        self.observations.histograms()
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
                let key_ids: Vec<String> = self
                    .kem_key_ids
                    .get(s)
                    .map(|ids| ids.iter().map(ToString::to_string).collect())
                    .unwrap_or_default();
                serde_json::json!({
                    "shard": s, "height": height, "root": root, "kem_key_ids": key_ids,
                })
            })
            .collect();
        let jobs = self.jobs_json();
        let proofs: Vec<serde_json::Value> = self
            .observations
            .recent_proofs()
            .iter()
            .map(|p| {
                serde_json::json!({
                    "job": p.job, "tenant": p.tenant, "shard": p.shard, "height": p.height,
                    "proof_bytes": p.proof_bytes, "prove_ms": p.prove_ms,
                })
            })
            .collect();
        serde_json::json!({
            "version": 1,
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "ready": self.ready(),
            "backends": self.backend_json(),
            "cpu_fallbacks_total": prover::accel::cpu_fallbacks_total(),
            "last_cpu_fallback": prover::accel::last_cpu_fallback(),
            "devices": Self::device_json(&snap),
            "nodes": Self::node_json(&snap),
            "in_flight": jobs["in_flight"],
            "recent_jobs": jobs["recent_jobs"],
            "recent_proofs": proofs,
            "placements": snap.placements.iter().map(|(id, p)| serde_json::json!({
                "job": id.0, "node": p.node, "gpu": p.gpu, "node_bytes": p.node_bytes,
                "gpu_bytes": p.gpu_bytes, "reason": p.reason,
            })).collect::<Vec<_>>(),
            "recent_placements": jobs["recent_placements"],
            "placements_total": jobs["placements_total"],
            "warnings": snap.warnings,
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
    kem_key_ids: BTreeMap<u32, Vec<keys::KeyId>>,
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
    /// Opens the store, resumes unfinished jobs, and starts serving (HTTP without a token).
    /// Must run inside a multi-threaded Tokio runtime.
    ///
    /// # Errors
    /// Store, key, socket or configuration errors.
    pub async fn start(settings: Settings) -> Result<Self, Error> {
        Self::start_with(settings, HttpOptions::default()).await
    }

    /// As [`start`](Self::start), with the HTTP face's options (a bearer token for `/status`
    /// and `/metrics`: `http.bearer_token` in the configuration).
    ///
    /// # Errors
    /// Store, key, socket or configuration errors.
    pub async fn start_with(settings: Settings, http_options: HttpOptions) -> Result<Self, Error> {
        Self::start_tuned(settings, http_options, Tuning::default()).await
    }

    /// As [`start_with`](Self::start_with), with the configuration's [`Tuning`] (rotating
    /// shard keys, RocksDB, SIMD, NUMA, GPU memory, tenant shares).
    ///
    /// # Errors
    /// Store, key, socket or configuration errors.
    pub async fn start_tuned(
        settings: Settings,
        http_options: HttpOptions,
        mut tuning: Tuning,
    ) -> Result<Self, Error> {
        let metrics = Arc::new(Metrics::default());
        let observations = Arc::new(Observations::default());
        let limits = settings.server.limits;
        let gpu_hardware = scheduler::topology::sysfs_gpus(
            std::path::Path::new("/sys"),
            std::path::Path::new("/proc"),
        )
        .is_ok_and(|gpus| !gpus.is_empty());
        let probed = if tuning.should_probe(gpu_hardware) {
            // Probing opens the GPU devices (cached for the proofs and the decap stage):
            // blocking work.
            let probed = tokio::task::spawn_blocking(prover::registry::probe)
                .await
                .map_err(|e| Error::Config(format!("probing the prover backends: {e}")))?;
            Some(probed)
        } else {
            None
        };
        let prover_backend = probed
            .as_deref()
            .map_or(prover::registry::ProverBackend::Cpu, |p| {
                tuning.pick_prover_backend(p)
            });
        // The decap stage reuses the probe's devices (no second open).
        let kem = {
            let cpu = stages::kem_backend(tuning.simd);
            let probed = probed.clone().unwrap_or_default();
            let allowed = tuning.backends_allowed.clone();
            let min_batch = tuning.kem_gpu_min_batch();
            let metrics = Arc::clone(&metrics);
            tokio::task::spawn_blocking(move || {
                kem::KemDispatch::new(cpu, &probed, &allowed, min_batch, metrics)
            })
            .await
            .map_err(|e| Error::Config(format!("opening the decap backends: {e}")))?
        };
        let status_backends = status_backends(probed.as_deref(), prover_backend, kem.gpu_label());
        let executor = stages::BatchExecutor {
            prover_backend,
            shard_keys: tuning.shard_keys(settings.shard_keys)?,
            kem,
            signing_key: settings.identity.signing_key.clone(),
            depth: settings.depth,
            preset: settings.preset,
            hash: settings.hash,
            limits,
            metrics: Arc::clone(&metrics),
        };
        let shards: BTreeSet<u32> = executor.shard_keys.keys().copied().collect();
        let kem_key_ids: BTreeMap<u32, Vec<keys::KeyId>> = executor
            .shard_keys
            .iter()
            .map(|(s, k)| (*s, k.ids().collect()))
            .collect();
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
        let config = tuning.apply(config);
        let data_dir = settings.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|e| Error::KeyFile {
            path: data_dir.clone(),
            detail: format!("cannot create the data dir: {e}"),
        })?;
        let store_dir = data_dir.join(STORE_DIR);
        let observations_for_stages = Arc::clone(&observations);
        let scheduler = tokio::task::spawn_blocking(move || {
            Scheduler::open(
                store_dir,
                config,
                Arc::new(Observed::new(executor, observations_for_stages)),
            )
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
        service.set_submission_rates(std::mem::take(&mut tuning.tenant_submits_per_second));
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
        let _ = metrics.quic.set(server.stats_handle());
        let http = match settings.http_listen {
            Some(addr) => {
                let provider = Arc::new(ApplianceStatus {
                    scheduler: Arc::clone(&scheduler),
                    service: Arc::clone(&service),
                    metrics: Arc::clone(&metrics),
                    observations,
                    backends: status_backends,
                    shards: shards.iter().copied().collect(),
                    kem_key_ids: kem_key_ids.clone(),
                    started: Instant::now(),
                });
                Some(HttpServer::bind_with(addr, provider, http_options).await?)
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
            kem_key_ids,
        })
    }

    /// The ids of the active ML-KEM keys of every shard, ascending (what `/status` lists;
    /// see `docs/configuration.md`, key rotation).
    pub fn kem_key_ids(&self) -> &BTreeMap<u32, Vec<keys::KeyId>> {
        &self.kem_key_ids
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
