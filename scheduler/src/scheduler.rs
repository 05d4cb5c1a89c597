//! The scheduler: admission, fair picking, ordering, the worker pool, retries and recovery.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::SchedulerError;
use crate::job::{
    DurableState, Job, JobId, JobRecord, JobSpec, JobStatus, MAX_REASON_LEN, Stage, check_tenant,
    truncate_utf8,
};
use crate::placement::{Budgets, GpuView, JobOptions, NodeView, PlacementRecord, Placer, Target};
use crate::store::{Store, StoreOptions, WriteSet};
use crate::topology::{Binder, GpuDevice, Topology};

#[path = "stats.rs"]
mod stats;
pub use stats::{Activity, PlacementDecision, RECENT_JOBS, RECENT_PLACEMENTS};

/// Binding warnings kept for the snapshot, at most.
const MAX_WARNINGS: usize = 64;

/// The scheduler's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Threads of the CPU worker pool: at most this many stages run at once (1 to 1024).
    pub workers: usize,
    /// Unfinished jobs a tenant may have; a submission past it gets [`SchedulerError::Busy`].
    pub max_queued_jobs_per_tenant: usize,
    /// Unfinished jobs of all tenants together; past it a submission gets
    /// [`SchedulerError::Full`]. This bounds the scheduler's memory whatever the number of
    /// tenants.
    pub max_queued_jobs: usize,
    /// Payload bytes of unfinished jobs a tenant may have; past it, [`SchedulerError::Busy`].
    pub max_queued_bytes_per_tenant: u64,
    /// The largest payload accepted (at most `max_queued_bytes_per_tenant`).
    pub max_payload_bytes: usize,
    /// Per-tenant weights of the fair pick (a tenant of weight `w` gets up to `w` stages
    /// picked in a row); tenants not listed weigh 1. Weights are at least 1.
    pub tenant_weights: BTreeMap<String, u32>,
    /// Attempts of one stage before its job fails (at least 1).
    pub max_attempts: u32,
    /// Wait before the first retry; each further retry waits twice as long.
    pub backoff_base: Duration,
    /// The longest wait between retries.
    pub backoff_max: Duration,
    /// Whether every stage completion is fsynced (`true`, the default) or only publish and a
    /// job's last stage. Submissions and cancellations are always fsynced. Without it a stage
    /// completed just before a power loss (not a process crash) may run again from its input
    /// after the restart, with its side effects rolled back with it; a synced write also makes
    /// every earlier write durable, so nothing published is ever lost.
    pub sync_every_stage: bool,
    /// The machine to schedule on. `None` (the default) discovers this machine with hwloc
    /// and pins threads there; a given model (for example from
    /// [`Topology::from_xml_file`]) is scheduled on without pinning anything.
    pub topology: Option<Topology>,
    /// Whether worker and GPU driver threads are pinned to their node's cores and bind
    /// their memory there (only for a discovered topology). A host that refuses the binding
    /// gets a warning in the [`Snapshot`], not an error.
    pub pin_threads: bool,
    /// Memory budget of each NUMA node for admitted jobs, in bytes; `None` takes three
    /// quarters of each node's memory (no limit where the topology does not say).
    pub node_memory_budget: Option<u64>,
    /// Memory budget of each GPU for admitted jobs, in bytes, capped at the GPU's memory when
    /// the topology knows it; 0 means 80% of each GPU's memory ([`crate::gpu_budget`]).
    pub gpu_memory_budget: u64,
    /// Jobs estimated at this many bytes or more are proved on a GPU when one is healthy;
    /// smaller jobs stay on one node's CPUs.
    pub gpu_min_bytes: u64,
    /// How long a GPU that failed stays out of rotation before it is probed again
    /// ([`StageExecutor::probe_device`]).
    pub gpu_probe_interval: Duration,
    /// Worker slots held for a tenant: other tenants leave this many CPU slots free while
    /// the tenant has work waiting (reserved capacity).
    pub tenant_reserved_workers: BTreeMap<String, usize>,
    /// Per-tenant limits on unfinished jobs that replace
    /// [`max_queued_jobs_per_tenant`](Self::max_queued_jobs_per_tenant) for those tenants.
    pub tenant_max_queued_jobs: BTreeMap<String, usize>,
    /// RocksDB tuning of the store [`Scheduler::open`] opens.
    pub store: StoreOptions,
    /// With `Some`, only these NUMA nodes (operating-system indices) get a worker pool and
    /// admitted jobs (the `bind` policy); GPUs local to other nodes are driven from the first
    /// of them. `None` uses every node.
    pub numa_nodes: Option<Vec<usize>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(2, usize::from),
            max_queued_jobs_per_tenant: 1024,
            max_queued_jobs: 65_536,
            max_queued_bytes_per_tenant: 256 << 20,
            max_payload_bytes: 16 << 20,
            tenant_weights: BTreeMap::new(),
            max_attempts: 5,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            sync_every_stage: true,
            topology: None,
            pin_threads: true,
            node_memory_budget: None,
            gpu_memory_budget: 8 << 30,
            gpu_min_bytes: 64 << 20,
            gpu_probe_interval: Duration::from_secs(30),
            tenant_reserved_workers: BTreeMap::new(),
            tenant_max_queued_jobs: BTreeMap::new(),
            store: StoreOptions::default(),
            numa_nodes: None,
        }
    }
}

impl Config {
    /// Checks every field's range.
    ///
    /// # Errors
    /// [`SchedulerError::InvalidConfig`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), SchedulerError> {
        let bad = |field, reason: &str| {
            Err(SchedulerError::InvalidConfig {
                field,
                reason: reason.to_owned(),
            })
        };
        if !(1..=1024).contains(&self.workers) {
            return bad("workers", "must be between 1 and 1024");
        }
        if self.max_queued_jobs_per_tenant == 0
            || self.tenant_max_queued_jobs.values().any(|n| *n == 0)
        {
            return bad("max_queued_jobs_per_tenant", "must be at least 1");
        }
        if self.numa_nodes.as_ref().is_some_and(Vec::is_empty) {
            return bad("numa_nodes", "names no node; give at least one or use None");
        }
        if self.max_queued_jobs == 0 {
            return bad("max_queued_jobs", "must be at least 1");
        }
        if self.max_payload_bytes as u64 > self.max_queued_bytes_per_tenant {
            return bad(
                "max_payload_bytes",
                "must not exceed max_queued_bytes_per_tenant (one job must fit in a queue)",
            );
        }
        if self.max_attempts == 0 {
            return bad("max_attempts", "must be at least 1");
        }
        if self.backoff_base > self.backoff_max {
            return bad("backoff_base", "must not exceed backoff_max");
        }
        if let Some((tenant, _)) = self.tenant_weights.iter().find(|(_, w)| **w == 0) {
            return Err(SchedulerError::InvalidConfig {
                field: "tenant_weights",
                reason: format!("tenant `{tenant}` has weight 0; weights are at least 1"),
            });
        }
        if let Some(topology) = &self.topology {
            topology.validate()?;
        }
        if self.gpu_probe_interval.is_zero() {
            return bad("gpu_probe_interval", "must be positive");
        }
        Ok(())
    }

    fn max_queued_jobs(&self, tenant: &str) -> usize {
        self.tenant_max_queued_jobs
            .get(tenant)
            .copied()
            .unwrap_or(self.max_queued_jobs_per_tenant)
    }

    fn weight(&self, tenant: &str) -> u32 {
        self.tenant_weights.get(tenant).copied().unwrap_or(1)
    }

    fn reserved(&self, tenant: &str) -> usize {
        self.tenant_reserved_workers
            .get(tenant)
            .copied()
            .unwrap_or(0)
    }

    /// The wait before retry number `attempts` (1 for the first retry).
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempts.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff_base
            .checked_mul(factor)
            .map_or(self.backoff_max, |d| d.min(self.backoff_max))
    }
}

/// What a stage executor sees besides the job: the store, and whether to give up early.
#[derive(Debug)]
pub struct StageContext<'a> {
    stage: Stage,
    attempt: u32,
    store: &'a Store,
    cancelled: &'a AtomicBool,
    stopping: &'a AtomicBool,
    target: Target,
    placement: Option<&'a PlacementRecord>,
}

impl StageContext<'_> {
    /// The stage being run.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Earlier failed attempts of this stage (0 on the first run).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The store, for reads (shard state, earlier outputs). Writes belong in the returned
    /// [`StageOutcome`] so that they commit with the stage.
    pub fn store(&self) -> &Store {
        self.store
    }

    /// Where this stage runs: a node's CPU pool or a GPU's driver thread. A stage on a GPU
    /// that fails because of the device returns [`StageFailure::DeviceFailed`].
    pub fn target(&self) -> Target {
        self.target
    }

    /// The job's placement (its node, its GPU, what it reserved).
    pub fn placement(&self) -> Option<&PlacementRecord> {
        self.placement
    }

    /// Whether the job was cancelled: the stage's result will be discarded.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Whether the scheduler is shutting down: a long stage may return
    /// [`StageFailure::Interrupted`]; it is re-run from its input after a restart.
    pub fn should_stop(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// A completed stage: its output (the next stage's input) and the writes to commit with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageOutcome {
    /// The output, stored under `(job, stage)` and handed to the next stage.
    pub output: Vec<u8>,
    /// Side effects committed in the same atomic write as the stage's completion.
    pub writes: WriteSet,
}

impl StageOutcome {
    /// An outcome with `output` and no side effects.
    pub fn new(output: Vec<u8>) -> Self {
        Self {
            output,
            writes: WriteSet::new(),
        }
    }

    /// An outcome with `output` and side effects `writes`.
    pub fn with_writes(output: Vec<u8>, writes: WriteSet) -> Self {
        Self { output, writes }
    }
}

/// Why a stage did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageFailure {
    /// A transient failure: the stage is retried after a backoff, until the attempts run out.
    Retryable(String),
    /// A permanent failure (for example invalid input): the job fails at once with this reason.
    Fatal(String),
    /// The stage stopped because [`StageContext::should_stop`] said so; it is not an attempt
    /// and re-runs later from the same input.
    Interrupted,
    /// The GPU running the stage failed: the device is taken out of rotation (and probed
    /// again after [`Config::gpu_probe_interval`]) and the job moves to another device or
    /// the CPU; it does not count as an attempt. From a CPU stage it counts as
    /// [`Retryable`](Self::Retryable).
    DeviceFailed(String),
}

impl std::fmt::Display for StageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StageFailure::Retryable(reason) => write!(f, "transient failure: {reason}"),
            StageFailure::Fatal(reason) => write!(f, "{reason}"),
            StageFailure::Interrupted => f.write_str("interrupted by shutdown"),
            StageFailure::DeviceFailed(reason) => write!(f, "device failure: {reason}"),
        }
    }
}

/// The work of each stage, supplied by the caller; the scheduler owns ordering, durability,
/// retries and resumption.
///
/// `run` must be deterministic in its input up to the writes it returns: a stage interrupted
/// by a crash before its completion was committed runs again from the same input.
pub trait StageExecutor: Send + Sync + 'static {
    /// Runs `stage` of `job` on `input` (the payload for the first stage, else the previous
    /// stage's output).
    ///
    /// # Errors
    /// A [`StageFailure`] saying whether to retry, fail the job, or re-run later.
    fn run(
        &self,
        ctx: &StageContext<'_>,
        job: &Job,
        stage: Stage,
        input: &[u8],
    ) -> Result<StageOutcome, StageFailure>;

    /// Checks whether GPU `gpu` (index into [`Topology::gpus`]) works again after it failed;
    /// called from the dispatcher once [`Config::gpu_probe_interval`] has passed. The default
    /// trusts the device again.
    fn probe_device(&self, gpu: usize, device: &GpuDevice) -> bool {
        let _ = (gpu, device);
        true
    }
}

/// Latency figures of one stage since the scheduler opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageLatency {
    /// Completed runs.
    pub count: u64,
    /// Their total time.
    pub total: Duration,
    /// The slowest.
    pub max: Duration,
}

impl StageLatency {
    /// The mean time of a run (zero if none ran).
    pub fn mean(&self) -> Duration {
        match u32::try_from(self.count) {
            Ok(0) => Duration::ZERO,
            Ok(n) => self.total / n,
            Err(_) => Duration::from_secs_f64(self.total.as_secs_f64() / self.count as f64),
        }
    }

    fn record(&mut self, elapsed: Duration) {
        self.count += 1;
        self.total += elapsed;
        self.max = self.max.max(elapsed);
    }
}

/// One tenant's queue depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantDepth {
    /// The tenant.
    pub tenant: String,
    /// Unfinished jobs (queued or running).
    pub jobs: usize,
    /// Their payload bytes.
    pub bytes: u64,
}

/// A point-in-time view of the scheduler for metrics and status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Worker threads.
    pub workers: usize,
    /// Unfinished jobs not running a stage now.
    pub queued: usize,
    /// Jobs running a stage now.
    pub running: usize,
    /// Jobs completed since the scheduler opened.
    pub done: u64,
    /// Jobs failed since the scheduler opened.
    pub failed: u64,
    /// Jobs cancelled since the scheduler opened.
    pub cancelled: u64,
    /// Queue depth per tenant with unfinished jobs, by tenant name.
    pub tenants: Vec<TenantDepth>,
    /// Latency of each stage, in pipeline order.
    pub stage_latency: Vec<(Stage, StageLatency)>,
    /// Per NUMA node: workers, queue, running stages, memory reserved and placements.
    pub nodes: Vec<NodeView>,
    /// Per GPU: health, queue, whether it runs, memory reserved and placements.
    pub gpus: Vec<GpuView>,
    /// Where each placed unfinished job runs, by job id.
    pub placements: Vec<(JobId, PlacementRecord)>,
    /// Warnings about the machine (topology discovery, thread binding), oldest first.
    pub warnings: Vec<String>,
}

/// An unfinished job in memory.
struct ActiveJob {
    record: JobRecord,
    running: Option<Stage>,
    /// A journal write for this job is in flight outside the lock (its submission or a stage
    /// completion): it is not eligible, and a cancellation waits for the write.
    committing: bool,
    cancel: Arc<AtomicBool>,
    not_before: Option<Instant>,
    /// Where it runs, once placed (memory reserved until it finishes).
    placement: Option<PlacementRecord>,
    /// Its memory estimate: total and host bytes.
    estimate: (u64, u64),
}

#[derive(Default)]
struct TenantQueue {
    jobs: BTreeSet<JobId>,
    /// The same jobs, highest priority first, then in submission order.
    order: BTreeSet<(Reverse<u8>, JobId)>,
    bytes: u64,
}

#[derive(Default)]
struct Inner {
    active: HashMap<JobId, ActiveJob>,
    tenants: BTreeMap<String, TenantQueue>,
    /// Per (ordering key, ordered stage): the jobs that still have to run that stage.
    order: HashMap<(u64, Stage), BTreeSet<JobId>>,
    /// The tenant picked last and how many picks in a row it got.
    cursor: Option<(String, u32)>,
    running: usize,
    /// Stages running now per tenant (tenants with none are absent).
    tenant_running: HashMap<String, usize>,
    placer: Placer,
    next_id: u64,
    stopping: bool,
    done: u64,
    failed: u64,
    cancelled: u64,
    latency: [StageLatency; 4],
    /// Finished jobs and placement decisions kept for [`Scheduler::activity`].
    recent: stats::Recent,
}

impl Inner {
    fn register(&mut self, record: JobRecord, committing: bool) {
        let id = record.job.id;
        let queue = self.tenants.entry(record.job.tenant.clone()).or_default();
        queue.jobs.insert(id);
        queue.order.insert((Reverse(record.priority), id));
        queue.bytes += record.payload_len;
        let options = JobOptions {
            priority: record.priority,
            footprint: record.footprint,
        };
        let estimate = options.estimate(record.payload_len);
        if let Some(key) = record.job.ordering_key {
            let remaining = &record.job.kind.stages()[usize::from(record.next_stage)..];
            for stage in remaining.iter().filter(|s| s.is_ordered()) {
                self.order.entry((key, *stage)).or_default().insert(id);
            }
        }
        self.active.insert(
            id,
            ActiveJob {
                record,
                running: None,
                committing,
                cancel: Arc::new(AtomicBool::new(false)),
                not_before: None,
                placement: None,
                estimate,
            },
        );
    }

    fn leave_order(&mut self, key: Option<u64>, stage: Stage, id: JobId) {
        if let Some(key) = key
            && let Some(set) = self.order.get_mut(&(key, stage))
        {
            set.remove(&id);
            if set.is_empty() {
                self.order.remove(&(key, stage));
            }
        }
    }

    /// Forgets a job that became terminal.
    fn finish(&mut self, id: JobId) -> Option<ActiveJob> {
        let active = self.active.remove(&id)?;
        if let Some(placement) = &active.placement {
            self.placer.release(placement);
        }
        let job = &active.record.job;
        if let Some(queue) = self.tenants.get_mut(&job.tenant) {
            queue.jobs.remove(&id);
            queue.order.remove(&(Reverse(active.record.priority), id));
            queue.bytes = queue.bytes.saturating_sub(active.record.payload_len);
            if queue.jobs.is_empty() {
                self.tenants.remove(&job.tenant);
            }
        }
        for stage in Stage::ALL.iter().filter(|s| s.is_ordered()) {
            self.leave_order(job.ordering_key, *stage, id);
        }
        match active.record.state {
            DurableState::Done => self.done += 1,
            DurableState::Failed(_) => self.failed += 1,
            DurableState::Cancelled => self.cancelled += 1,
            DurableState::Active => {}
        }
        self.recent.finished(active.record.status(None));
        Some(active)
    }

    /// Whether `id` may run its next stage now; `Err(t)` if it waits for a backoff until `t`.
    fn eligible(&self, id: JobId, now: Instant) -> Result<Option<Stage>, Instant> {
        let Some(active) = self.active.get(&id) else {
            return Ok(None);
        };
        if active.running.is_some() || active.committing {
            return Ok(None);
        }
        let Some(stage) = active.record.next() else {
            return Ok(None);
        };
        if let Some(t) = active.not_before
            && t > now
        {
            return Err(t);
        }
        if let (Some(key), true) = (active.record.job.ordering_key, stage.is_ordered()) {
            let first = self.order.get(&(key, stage)).and_then(|set| set.first());
            if first != Some(&id) {
                return Ok(None);
            }
        }
        Ok(Some(stage))
    }

    /// Whether every earlier job with the same ordering key is placed: jobs of one key are
    /// placed in submission order, so memory is never held by later jobs that wait (by the
    /// key's order) for an earlier one that waits for memory.
    fn predecessors_placed(&self, id: JobId, key: Option<u64>) -> bool {
        let Some(key) = key else {
            return true;
        };
        Stage::ALL.iter().filter(|s| s.is_ordered()).all(|s| {
            self.order.get(&(key, *s)).is_none_or(|set| {
                set.range(..id)
                    .all(|j| self.active.get(j).is_none_or(|a| a.placement.is_some()))
            })
        })
    }

    /// CPU slots that tenants other than `tenant` may still claim under their reservations.
    fn reserved_for_others(&self, config: &Config, tenant: &str) -> usize {
        config
            .tenant_reserved_workers
            .iter()
            .filter(|(name, _)| name.as_str() != tenant)
            .filter_map(|(name, reserved)| {
                let queue = self.tenants.get(name)?;
                let running = self.tenant_running.get(name).copied().unwrap_or(0);
                (queue.jobs.len() > running).then(|| reserved.saturating_sub(running))
            })
            .sum()
    }

    /// The next stage to run under the weighted round robin across tenants (highest priority
    /// first inside a tenant), where it runs, or the earliest time a backoff ends. A job is
    /// placed (its memory reserved) when it is first picked; a job that does not fit now
    /// waits and the next one is considered.
    fn pick(
        &mut self,
        config: &Config,
        now: Instant,
    ) -> Result<(JobId, Stage, Target), Option<Instant>> {
        let names: Vec<&String> = self.tenants.keys().collect();
        let n = names.len();
        // Stay with the last tenant while it has weight left, else start after it.
        let start = match &self.cursor {
            None => 0,
            Some((last, served)) if *served < config.weight(last) => {
                names.partition_point(|name| name.as_str() < last.as_str())
            }
            Some((last, _)) => names.partition_point(|name| name.as_str() <= last.as_str()),
        };
        let (_, free_cpu) = self.placer.cpu_slots();
        let mut wake: Option<Instant> = None;
        let mut found = None;
        'tenants: for step in 0..n {
            let tenant = names[(start + step) % n];
            let running = self.tenant_running.get(tenant).copied().unwrap_or(0);
            let may_take_cpu = running < config.reserved(tenant)
                || free_cpu > self.reserved_for_others(config, tenant);
            for &(_, id) in &self.tenants[tenant].order {
                match self.eligible(id, now) {
                    Ok(Some(stage)) => {
                        let active = &self.active[&id];
                        let on_gpu = stage == Stage::Prove;
                        let fresh = match &active.placement {
                            Some(_) => None,
                            None => {
                                if !self.predecessors_placed(id, active.record.job.ordering_key) {
                                    continue;
                                }
                                let (total, host) = active.estimate;
                                match self.placer.choose(total, host) {
                                    Some(p) => Some(p),
                                    None => continue,
                                }
                            }
                        };
                        let placement = fresh
                            .as_ref()
                            .or(active.placement.as_ref())
                            .expect("a job is placed or was just given a placement");
                        let target = Placer::target(placement, on_gpu);
                        if !self.placer.has_slot(target)
                            || (matches!(target, Target::Node(_)) && !may_take_cpu)
                        {
                            continue;
                        }
                        found = Some((tenant.clone(), id, stage, target, fresh));
                        break 'tenants;
                    }
                    Ok(None) => {}
                    Err(t) => wake = Some(wake.map_or(t, |w| w.min(t))),
                }
            }
        }
        let Some((tenant, id, stage, target, fresh)) = found else {
            return Err(wake);
        };
        if let Some(placement) = fresh {
            self.placer.reserve(&placement);
            self.recent.placed(id, &tenant, &placement);
            if let Some(active) = self.active.get_mut(&id) {
                active.placement = Some(placement);
            }
        }
        let served = match &self.cursor {
            Some((last, served)) if *last == tenant => served + 1,
            _ => 1,
        };
        self.cursor = Some((tenant, served));
        Ok((id, stage, target))
    }

    /// Takes back the placements of the waiting jobs placed on GPU `gpu` (taken out of
    /// rotation): they are placed again, on another device or the CPU.
    fn evict_gpu(&mut self, gpu: usize) {
        let mut freed = Vec::new();
        for active in self.active.values_mut() {
            if active.running.is_none()
                && !active.committing
                && active
                    .placement
                    .as_ref()
                    .is_some_and(|p| p.gpu == Some(gpu))
                && let Some(p) = active.placement.take()
            {
                freed.push(p);
            }
        }
        for p in &freed {
            self.placer.release(p);
        }
    }
}

struct Shared {
    store: Store,
    config: Config,
    executor: Arc<dyn StageExecutor>,
    inner: Mutex<Inner>,
    changed: Condvar,
    stopping: AtomicBool,
    topology: Topology,
    /// One CPU worker pool per NUMA node, by node index.
    node_pools: Vec<rayon::ThreadPool>,
    /// One driver thread per GPU, by GPU index.
    gpu_pools: Vec<rayon::ThreadPool>,
    warnings: Arc<Mutex<Vec<String>>>,
}

fn push_warning(warnings: &Mutex<Vec<String>>, warning: String) {
    let mut list = warnings.lock().unwrap_or_else(|p| p.into_inner());
    if list.len() < MAX_WARNINGS {
        list.push(warning);
    }
}

/// This machine as hwloc sees it, discovered once per process.
fn discovered() -> &'static Result<(Topology, Arc<hwlocality::Topology>), String> {
    static DISCOVERED: OnceLock<Result<(Topology, Arc<hwlocality::Topology>), String>> =
        OnceLock::new();
    DISCOVERED.get_or_init(|| {
        let (topology, hw) = Topology::discover().map_err(|e| e.to_string())?;
        topology.validate().map_err(|e| e.to_string())?;
        Ok((topology, Arc::new(hw)))
    })
}

/// The topology to schedule on, the binder for its threads, and warnings.
fn resolve_topology(config: &Config) -> (Topology, Binder, Vec<String>) {
    if let Some(topology) = &config.topology {
        return (topology.clone(), Binder::disabled(), Vec::new());
    }
    match discovered() {
        Ok((topology, hw)) => {
            let binder = if config.pin_threads {
                Binder::new(Arc::clone(hw))
            } else {
                Binder::disabled()
            };
            (topology.clone(), binder, Vec::new())
        }
        Err(e) => (
            Topology::single_node(config.workers, 0),
            Binder::disabled(),
            vec![format!("{e}; scheduling as one node without pinning")],
        ),
    }
}

/// Splits `workers` threads across the nodes in proportion to their cores, at least one each.
fn split_workers(topology: &Topology, workers: usize) -> Vec<usize> {
    let total = topology.cpu_count().max(1);
    let mut slots: Vec<usize> = topology
        .nodes
        .iter()
        .map(|n| (workers * n.cpus.len() / total).max(1))
        .collect();
    let mut given: usize = slots.iter().sum();
    let mut i = 0;
    let len = slots.len();
    while given < workers {
        slots[i % len] += 1;
        given += 1;
        i += 1;
    }
    slots
}

fn build_pool(
    threads: usize,
    name: String,
    bind: Option<(usize, Vec<usize>)>,
    binder: &Arc<Binder>,
    warnings: &Arc<Mutex<Vec<String>>>,
) -> Result<rayon::ThreadPool, SchedulerError> {
    let binder = Arc::clone(binder);
    let warnings = Arc::clone(warnings);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("{name}-{i}"))
        .start_handler(move |_| {
            if let Some((node, cpus)) = &bind
                && let Err(e) = binder.bind_current_thread(*node, cpus)
            {
                push_warning(&warnings, e);
            }
        })
        .build()
        .map_err(|e| SchedulerError::Threads {
            message: e.to_string(),
        })
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated in a way that
        // matters more than stopping would: keep serving with the data as it is.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The job scheduler over a durable [`Store`].
///
/// Dropping it shuts it down gracefully (see [`shutdown`](Self::shutdown)).
pub struct Scheduler {
    shared: Arc<Shared>,
    dispatcher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("store", &self.shared.store)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// A stage handed to the pool.
struct Task {
    job: Job,
    stage: Stage,
    target: Target,
    placement: Option<PlacementRecord>,
    stage_index: u8,
    attempt: u32,
    cancel: Arc<AtomicBool>,
}

impl Scheduler {
    /// Opens the store under `data_dir` and starts the scheduler: every unfinished job in the
    /// journal resumes at its first incomplete stage.
    ///
    /// # Errors
    /// [`SchedulerError::InvalidConfig`] for a bad `config`, [`SchedulerError::Storage`] or
    /// [`SchedulerError::Corrupt`] if the store cannot be opened or read,
    /// [`SchedulerError::Threads`] if the worker threads cannot start.
    pub fn open(
        data_dir: impl AsRef<Path>,
        config: Config,
        executor: Arc<dyn StageExecutor>,
    ) -> Result<Self, SchedulerError> {
        config.validate()?;
        let store = Store::open_with(data_dir, &config.store)?;
        Self::with_store(store, config, executor)
    }

    /// Starts the scheduler over an already opened store (see [`open`](Self::open)).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn with_store(
        store: Store,
        config: Config,
        executor: Arc<dyn StageExecutor>,
    ) -> Result<Self, SchedulerError> {
        config.validate()?;
        let mut inner = Inner {
            next_id: store.last_job_id()?.map_or(1, |id| id.0 + 1),
            ..Inner::default()
        };
        for record in store.active_jobs()? {
            inner.register(record, false);
        }
        let (topology, binder, warnings) = resolve_topology(&config);
        let topology = match &config.numa_nodes {
            Some(nodes) => topology.restricted_to(nodes)?,
            None => topology,
        };
        let binder = Arc::new(binder);
        let warnings = Arc::new(Mutex::new(warnings));
        let slots = split_workers(&topology, config.workers);
        let node_bytes = topology
            .nodes
            .iter()
            .map(|n| {
                config.node_memory_budget.unwrap_or(if n.memory_bytes == 0 {
                    u64::MAX
                } else {
                    n.memory_bytes / 4 * 3
                })
            })
            .collect();
        inner.placer = Placer::new(
            &topology,
            &Budgets {
                node_bytes,
                node_slots: slots.clone(),
                gpu_bytes: config.gpu_memory_budget,
                gpu_min_bytes: config.gpu_min_bytes,
            },
        );
        let node_pools = topology
            .nodes
            .iter()
            .zip(&slots)
            .map(|(node, &threads)| {
                let bind = Some((node.os_index, node.cpus.clone()));
                let name = format!("epa-n{}-stage", node.os_index);
                build_pool(threads, name, bind, &binder, &warnings)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let gpu_pools = topology
            .gpus
            .iter()
            .enumerate()
            .map(|(i, gpu)| {
                let bind = gpu.node.map(|n| {
                    let node = &topology.nodes[n];
                    (node.os_index, node.cpus.clone())
                });
                build_pool(1, format!("epa-gpu{i}"), bind, &binder, &warnings)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared {
            store,
            config,
            executor,
            inner: Mutex::new(inner),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            topology,
            node_pools,
            gpu_pools,
            warnings,
        });
        let for_thread = Arc::clone(&shared);
        let dispatcher = std::thread::Builder::new()
            .name("epa-dispatch".into())
            .spawn(move || dispatch(&for_thread))
            .map_err(|e| SchedulerError::Threads {
                message: e.to_string(),
            })?;
        Ok(Self {
            shared,
            dispatcher: Some(dispatcher),
        })
    }

    /// The store, for reads (commitments, proofs, shard state) and writes outside jobs.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The machine the scheduler places work on.
    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }

    /// Journals `spec` durably (the write is synced to disk before this returns) and queues
    /// it; the returned id may be acknowledged to the submitter.
    ///
    /// # Errors
    /// [`SchedulerError::InvalidTenant`], [`SchedulerError::PayloadTooLarge`],
    /// [`SchedulerError::Busy`] when the tenant's queue is full, [`SchedulerError::Full`] when
    /// all queues together are, [`SchedulerError::ShuttingDown`],
    /// [`SchedulerError::Storage`] if the journal write fails (then nothing was queued).
    pub fn submit(&self, spec: JobSpec) -> Result<JobId, SchedulerError> {
        self.submit_with(spec, &WriteSet::new())
    }

    /// As [`submit`](Self::submit), and commits `writes` in the same atomic, synced write as
    /// the job: for example the acceptance records of a batch (the aggregator's sequence
    /// number), so that a crash leaves either both or neither. A refused submission writes
    /// nothing.
    ///
    /// # Errors
    /// As [`submit`](Self::submit).
    pub fn submit_with(&self, spec: JobSpec, writes: &WriteSet) -> Result<JobId, SchedulerError> {
        self.submit_job(spec, JobOptions::default(), writes)
    }

    /// As [`submit_with`](Self::submit_with), with a priority inside the tenant's queue and
    /// a memory footprint for admission control and placement.
    ///
    /// # Errors
    /// As [`submit`](Self::submit), and [`SchedulerError::TooLarge`] when the job's memory
    /// estimate exceeds every node's and every GPU's budget (a job that fits but not now is
    /// accepted and waits).
    pub fn submit_job(
        &self,
        spec: JobSpec,
        options: JobOptions,
        writes: &WriteSet,
    ) -> Result<JobId, SchedulerError> {
        check_tenant(&spec.tenant)?;
        let config = &self.shared.config;
        if spec.payload.len() > config.max_payload_bytes {
            return Err(SchedulerError::PayloadTooLarge {
                size: spec.payload.len(),
                max: config.max_payload_bytes,
            });
        }
        let mut inner = self.shared.lock();
        if inner.stopping {
            return Err(SchedulerError::ShuttingDown);
        }
        if inner.active.len() >= config.max_queued_jobs {
            return Err(SchedulerError::Full {
                queued_jobs: inner.active.len(),
                max_jobs: config.max_queued_jobs,
            });
        }
        let (queued_jobs, queued_bytes) = inner
            .tenants
            .get(&spec.tenant)
            .map_or((0, 0), |q| (q.jobs.len(), q.bytes));
        let len = spec.payload.len() as u64;
        let (total, host) = options.estimate(len);
        inner.placer.admit(total, host)?;
        let max_jobs = config.max_queued_jobs(&spec.tenant);
        if queued_jobs >= max_jobs || queued_bytes + len > config.max_queued_bytes_per_tenant {
            return Err(SchedulerError::Busy {
                tenant: spec.tenant,
                queued_jobs,
                queued_bytes,
                max_jobs,
                max_bytes: config.max_queued_bytes_per_tenant,
            });
        }
        let id = JobId(inner.next_id);
        let record = JobRecord {
            job: Job {
                id,
                tenant: spec.tenant,
                kind: spec.kind,
                ordering_key: spec.ordering_key,
            },
            state: DurableState::Active,
            next_stage: 0,
            attempts: 0,
            payload_len: len,
            priority: options.priority,
            footprint: options.footprint,
            placement: None,
        };
        let store = &self.shared.store;
        let mut batch = rocksdb::WriteBatch::default();
        store.add_writes(&mut batch, writes);
        store.put_payload(&mut batch, id, &spec.payload);
        store.put_job(&mut batch, &record);
        // Reserve the id, the queue room and the job's place in its key's order, then write
        // outside the lock so that concurrent journal writes share an fsync.
        inner.next_id += 1;
        inner.register(record, true);
        drop(inner);
        let written = store.write(batch);
        let mut inner = self.shared.lock();
        match &written {
            Ok(()) => {
                if let Some(active) = inner.active.get_mut(&id) {
                    active.committing = false;
                }
            }
            Err(_) => {
                inner.finish(id);
            }
        }
        drop(inner);
        self.shared.changed.notify_all();
        written.map(|()| id)
    }

    /// Cancels a job: it runs no further stage, and a stage running now has its result
    /// discarded. Returns `false` if the job had already finished (done, failed or cancelled).
    ///
    /// # Errors
    /// [`SchedulerError::UnknownJob`] if no such job exists; [`SchedulerError::Storage`] if
    /// the cancellation cannot be journaled (then the job is not cancelled).
    pub fn cancel(&self, id: JobId) -> Result<bool, SchedulerError> {
        let mut inner = self.shared.lock();
        while inner.active.get(&id).is_some_and(|a| a.committing) {
            inner = self
                .shared
                .changed
                .wait(inner)
                .unwrap_or_else(|p| p.into_inner());
        }
        let Some(active) = inner.active.get(&id) else {
            drop(inner);
            return match self.shared.store.job_record(id)? {
                Some(_) => Ok(false),
                None => Err(SchedulerError::UnknownJob(id)),
            };
        };
        let mut record = active.record.clone();
        record.state = DurableState::Cancelled;
        let mut batch = rocksdb::WriteBatch::default();
        self.shared.store.put_job(&mut batch, &record);
        self.shared.store.write(batch)?;
        active.cancel.store(true, Ordering::Relaxed);
        if let Some(active) = inner.active.get_mut(&id) {
            active.record = record;
        }
        inner.finish(id);
        drop(inner);
        self.shared.changed.notify_all();
        Ok(true)
    }

    /// A job's state and progress.
    ///
    /// # Errors
    /// [`SchedulerError::UnknownJob`] if no such job exists; storage errors on reading a
    /// finished job's record.
    pub fn status(&self, id: JobId) -> Result<JobStatus, SchedulerError> {
        {
            let inner = self.shared.lock();
            if let Some(active) = inner.active.get(&id) {
                let mut status = active.record.status(active.running);
                if active.placement.is_some() {
                    status.placement.clone_from(&active.placement);
                }
                return Ok(status);
            }
        }
        self.shared
            .store
            .job_record(id)?
            .map(|record| record.status(None))
            .ok_or(SchedulerError::UnknownJob(id))
    }

    /// Waits until job `id` is terminal or `timeout` passes, and returns its status then.
    ///
    /// # Errors
    /// As [`status`](Self::status).
    pub fn wait(&self, id: JobId, timeout: Duration) -> Result<JobStatus, SchedulerError> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.shared.lock();
        loop {
            let now = Instant::now();
            if !inner.active.contains_key(&id) || now >= deadline {
                drop(inner);
                return self.status(id);
            }
            inner = self
                .shared
                .changed
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until no job is unfinished or `timeout` passes; returns whether all finished.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut inner = self.shared.lock();
        loop {
            let now = Instant::now();
            if inner.active.is_empty() {
                return true;
            }
            if now >= deadline {
                return false;
            }
            inner = self
                .shared
                .changed
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Counts of jobs by state, queue depth per tenant and per-stage latency.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.shared.lock();
        let topology = &self.shared.topology;
        let mut node_queued = vec![0; topology.nodes.len()];
        let mut gpu_queued = vec![0; topology.gpus.len()];
        let mut placements = Vec::new();
        for (id, active) in &inner.active {
            if let Some(p) = &active.placement {
                placements.push((*id, p.clone()));
                if active.running.is_none() {
                    match p.gpu {
                        Some(g) if active.record.next() == Some(Stage::Prove) => {
                            gpu_queued[g] += 1;
                        }
                        _ => node_queued[p.node] += 1,
                    }
                }
            }
        }
        placements.sort_by_key(|(id, _)| *id);
        let nodes = inner.placer.node_views(topology, &node_queued);
        Snapshot {
            workers: nodes.iter().map(|n| n.workers).sum(),
            queued: inner.active.len() - inner.running,
            running: inner.running,
            done: inner.done,
            failed: inner.failed,
            cancelled: inner.cancelled,
            tenants: inner
                .tenants
                .iter()
                .map(|(tenant, q)| TenantDepth {
                    tenant: tenant.clone(),
                    jobs: q.jobs.len(),
                    bytes: q.bytes,
                })
                .collect(),
            stage_latency: Stage::ALL
                .iter()
                .map(|s| (*s, inner.latency[usize::from(s.code())]))
                .collect(),
            gpus: inner.placer.gpu_views(&gpu_queued),
            nodes,
            placements,
            warnings: self
                .shared
                .warnings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Begins a shutdown without waiting: from now on [`submit`](Self::submit) answers
    /// [`SchedulerError::ShuttingDown`], no new stage starts, and running stages see
    /// [`StageContext::should_stop`]. Dropping the scheduler then waits for them.
    pub fn stop_admitting(&self) {
        {
            let mut inner = self.shared.lock();
            inner.stopping = true;
            self.shared.stopping.store(true, Ordering::Relaxed);
        }
        self.shared.changed.notify_all();
    }

    /// Stops admitting jobs, tells running stages to stop ([`StageContext::should_stop`]),
    /// waits for them to finish or give up, and stops the threads. Unfinished jobs stay in
    /// the journal and resume on the next [`open`](Self::open).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.stop_admitting();
        if let Some(handle) = self.dispatcher.take() {
            // The dispatcher only returns; a panic in it has nothing left to clean up.
            let _ = handle.join();
        }
        // The last pool tasks drop their handles just after they report; wait for that so
        // that the database is closed when this returns and the data dir can be reopened.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.shared) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The dispatcher thread: picks stages while workers are free and hands them to the pool;
/// on shutdown, waits until no stage runs.
fn dispatch(shared: &Arc<Shared>) {
    let mut inner = shared.lock();
    loop {
        if inner.stopping {
            if inner.running == 0 {
                return;
            }
            inner = shared
                .changed
                .wait(inner)
                .unwrap_or_else(|p| p.into_inner());
            continue;
        }
        let now = Instant::now();
        let due = inner.placer.due_probes(now);
        if !due.is_empty() {
            // Probe outside the lock; meanwhile the devices stay out of rotation.
            let interval = shared.config.gpu_probe_interval;
            for &g in &due {
                inner.placer.probed(g, false, now, interval);
            }
            drop(inner);
            let results: Vec<(usize, bool)> = due
                .iter()
                .map(|&g| {
                    let passed = catch_unwind(AssertUnwindSafe(|| {
                        shared.executor.probe_device(g, &shared.topology.gpus[g])
                    }))
                    .unwrap_or(false);
                    (g, passed)
                })
                .collect();
            inner = shared.lock();
            let now = Instant::now();
            for (g, passed) in results {
                inner.placer.probed(g, passed, now, interval);
            }
            continue;
        }
        let mut wait = Duration::from_secs(1);
        if let Some(t) = inner.placer.next_probe() {
            wait = wait.min(t.saturating_duration_since(now));
        }
        match inner.pick(&shared.config, now) {
            Ok((id, stage, target)) => {
                let active = inner
                    .active
                    .get_mut(&id)
                    .expect("pick returns only active jobs");
                active.running = Some(stage);
                active.not_before = None;
                let task = Task {
                    job: active.record.job.clone(),
                    stage,
                    target,
                    placement: active.placement.clone(),
                    stage_index: active.record.next_stage,
                    attempt: active.record.attempts,
                    cancel: Arc::clone(&active.cancel),
                };
                inner.running += 1;
                inner.placer.start(target);
                *inner
                    .tenant_running
                    .entry(task.job.tenant.clone())
                    .or_default() += 1;
                let for_task = Arc::clone(shared);
                let pool = match target {
                    Target::Node(n) => &shared.node_pools[n],
                    Target::Gpu(g) => &shared.gpu_pools[g],
                };
                pool.spawn(move || run_task(&for_task, task));
                continue;
            }
            Err(Some(wake)) => wait = wait.min(wake.saturating_duration_since(now)),
            Err(None) => {}
        }
        inner = shared
            .changed
            .wait_timeout(inner, wait)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

fn run_task(shared: &Shared, task: Task) {
    let started = Instant::now();
    let result = load_input(shared, &task).and_then(|input| {
        let ctx = StageContext {
            stage: task.stage,
            attempt: task.attempt,
            store: &shared.store,
            cancelled: &task.cancel,
            stopping: &shared.stopping,
            target: task.target,
            placement: task.placement.as_ref(),
        };
        catch_unwind(AssertUnwindSafe(|| {
            shared.executor.run(&ctx, &task.job, task.stage, &input)
        }))
        .unwrap_or_else(|panic| Err(StageFailure::Retryable(panic_message(&panic))))
    });
    let elapsed = started.elapsed();
    let mut inner = shared.lock();
    if let Some(commit) = complete(shared, &mut inner, &task, result) {
        // The completion is written outside the lock: concurrent completions and submissions
        // share RocksDB's group commit, and the job is marked `committing` meanwhile.
        drop(inner);
        let written = shared.store.write_with(commit.batch, commit.sync);
        inner = shared.lock();
        match written {
            Ok(()) => committed(&mut inner, &task, commit.record, elapsed),
            Err(e) => {
                if let Some(active) = inner.active.get_mut(&task.job.id) {
                    active.committing = false;
                    active.running = Some(task.stage);
                }
                let failure = Err(StageFailure::Retryable(e.to_string()));
                let again = complete(shared, &mut inner, &task, failure);
                debug_assert!(again.is_none(), "a failure never yields a commit");
            }
        }
    }
    inner.running -= 1;
    inner.placer.end(task.target);
    if let Some(n) = inner.tenant_running.get_mut(&task.job.tenant) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            inner.tenant_running.remove(&task.job.tenant);
        }
    }
    drop(inner);
    shared.changed.notify_all();
}

/// A stage completion to write: the batch, whether to fsync it, and the job's new record.
struct Commit {
    batch: rocksdb::WriteBatch,
    sync: bool,
    record: JobRecord,
}

/// Applies a written stage completion to the in-memory state.
fn committed(inner: &mut Inner, task: &Task, record: JobRecord, elapsed: Duration) {
    let id = task.job.id;
    let done = record.state == DurableState::Done;
    let key = record.job.ordering_key;
    let Some(active) = inner.active.get_mut(&id) else {
        return;
    };
    active.committing = false;
    active.running = None;
    active.record = record;
    inner.latency[usize::from(task.stage.code())].record(elapsed);
    if task.stage.is_ordered() {
        inner.leave_order(key, task.stage, id);
    }
    if done {
        inner.finish(id);
        return;
    }
    // Its GPU failed while this stage ran: place the job again.
    if let Some(active) = inner.active.get_mut(&id)
        && let Some(g) = active.placement.as_ref().and_then(|p| p.gpu)
        && !inner.placer.is_healthy(g)
        && let Some(p) = active.placement.take()
    {
        inner.placer.release(&p);
    }
}

fn load_input(shared: &Shared, task: &Task) -> Result<Vec<u8>, StageFailure> {
    let id = task.job.id;
    let input = match task.stage_index.checked_sub(1) {
        None => shared.store.payload(id),
        Some(prev) => {
            let prev = task.job.kind.stages()[usize::from(prev)];
            shared.store.stage_output(id, prev)
        }
    };
    match input {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(StageFailure::Fatal(format!(
            "the journal has no input for stage {} of job {id}",
            task.stage
        ))),
        Err(e) => Err(StageFailure::Retryable(e.to_string())),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    format!("the stage panicked: {what}")
}

/// Records a stage's result, called with the lock held. A failure is journaled at once; a
/// success is returned as a [`Commit`] for the caller to write outside the lock (the job is
/// marked `committing` until then, so nothing else touches it).
fn complete(
    shared: &Shared,
    inner: &mut Inner,
    task: &Task,
    result: Result<StageOutcome, StageFailure>,
) -> Option<Commit> {
    let id = task.job.id;
    let Some(active) = inner.active.get_mut(&id) else {
        // Cancelled while running: the result is discarded.
        return None;
    };
    active.running = None;
    if active.record.next() != Some(task.stage) || active.record.next_stage != task.stage_index {
        return None;
    }
    let store = &shared.store;
    let failure = match result {
        Ok(outcome) => {
            let mut record = active.record.clone();
            record.next_stage += 1;
            record.attempts = 0;
            record.placement.clone_from(&active.placement);
            if record.next().is_none() {
                record.state = DurableState::Done;
            }
            let mut batch = rocksdb::WriteBatch::default();
            store.add_writes(&mut batch, &outcome.writes);
            store.put_output(&mut batch, id, task.stage, &outcome.output);
            store.put_job(&mut batch, &record);
            let sync = shared.config.sync_every_stage
                || task.stage == Stage::Publish
                || record.state == DurableState::Done;
            active.committing = true;
            active.running = Some(task.stage);
            return Some(Commit {
                batch,
                sync,
                record,
            });
        }
        Err(failure) => failure,
    };
    let failure = match (failure, task.target) {
        (StageFailure::DeviceFailed(reason), Target::Gpu(g)) => {
            let probe_at = Instant::now() + shared.config.gpu_probe_interval;
            inner.placer.gpu_failed(g, probe_at);
            inner.evict_gpu(g);
            let address = &shared.topology.gpus[g].pci_address;
            push_warning(
                &shared.warnings,
                format!("GPU {address} failed ({reason}); out of rotation until it is probed"),
            );
            return None;
        }
        (StageFailure::DeviceFailed(reason), Target::Node(_)) => StageFailure::Retryable(reason),
        (failure, _) => failure,
    };
    let active = inner
        .active
        .get_mut(&id)
        .expect("the job was found active above and nothing removed it since");
    let mut record = active.record.clone();
    let reason = match failure {
        StageFailure::DeviceFailed(reason) => reason,
        StageFailure::Interrupted => {
            active.not_before = Some(Instant::now() + shared.config.backoff_base);
            return None;
        }
        StageFailure::Fatal(reason) => reason,
        StageFailure::Retryable(reason) => {
            record.attempts = record.attempts.saturating_add(1);
            if record.attempts < shared.config.max_attempts {
                let mut batch = rocksdb::WriteBatch::default();
                store.put_job(&mut batch, &record);
                // A lost attempt count only gives the stage one more try after a restart.
                let _ = store.write(batch);
                active.not_before = Some(Instant::now() + shared.config.backoff(record.attempts));
                active.record = record;
                return None;
            }
            format!("{reason} (after {} attempts)", record.attempts)
        }
    };
    let reason = format!("stage {} failed: {reason}", task.stage);
    record.state = DurableState::Failed(truncate_utf8(&reason, MAX_REASON_LEN).to_owned());
    let mut batch = rocksdb::WriteBatch::default();
    store.put_job(&mut batch, &record);
    if store.write(batch).is_ok() {
        active.record = record;
        inner.finish(id);
    } else {
        // Not journaled: leave the job active and try again after a backoff.
        active.not_before = Some(Instant::now() + shared.config.backoff_max);
    }
    None
}
