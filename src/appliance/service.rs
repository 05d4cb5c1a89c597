//! The appliance behind the QUIC server: acceptance of batches (every check before any work),
//! proving jobs, job status, proof fetches and subscriptions.
//!
//! Acceptance state lives in the store's `meta` records (written with
//! [`WriteSet::aggregator_seq`]):
//!
//! * `(shard, aggregator key id)` → the aggregator's last accepted sequence number;
//! * `(shard, "epa/last-batch")` → the job id of the shard's last accepted batch;
//! * `(shard, "epa/batch-job/" ‖ aggregator key id ‖ sequence number)` → the job id of that
//!   accepted batch: a resubmission of the same batch (same batch hash) is answered with this
//!   id and creates no second job, a different batch at a used sequence number is `Replay`;
//! * `(RESERVED_SHARD, "epa/accepted-through")` → every batch job up to this id has its two
//!   records above written.
//!
//! The scheduler's durable submit cannot carry extra writes, so acceptance is serialised and
//! runs `submit` (synced) and then one synced commit of those records. A crash between the
//! two leaves a journaled batch whose records are missing: on start, [`Service::recover`] walks
//! the jobs after the watermark and writes them (see ADR 0006).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crypto::dsa::mldsa65;
use crypto::smt::{Word, empty_subtree_root};
use node_lite::server::{PeerInfo, Service as WireService, SubscriptionFeed};
use node_lite::wire::{
    Batch, Commitment, Frame, JobId as WireJobId, JobState as WireJobState, JobStatusReport, KeyId,
    Limits, MAX_PROGRESS, Message, Push, RejectCode, Rejection, Request, Response,
    Stage as WireStage, SubscribeRequest,
};
use scheduler::{
    JobId, JobKind, JobSpec, JobState, Scheduler, SchedulerError, Stage, Store, WriteSet,
};
use tokio::sync::mpsc;

use super::codec::word_to_bytes;
use super::stages::{decode_payload, proving_request};
use super::{Error, Metrics};

/// The shard number under which appliance-wide records are kept (wire shards are `u32`).
pub const RESERVED_SHARD: u64 = u64::MAX;
/// Record name (under a shard) of the job id of the shard's last accepted batch.
pub const LAST_BATCH: &[u8] = b"epa/last-batch";
/// Prefix of the record name (under a shard) of an accepted batch's job id; the aggregator key
/// id and the sequence number (big-endian) follow ([`batch_job_record`]).
pub const BATCH_JOB: &[u8] = b"epa/batch-job/";
/// Record name (under [`RESERVED_SHARD`]) of the acceptance watermark.
pub const ACCEPTED_THROUGH: &[u8] = b"epa/accepted-through";
/// The tenant that proving jobs from the wire are queued under.
pub const PROVING_TENANT: &str = "validators";
/// Commitments buffered per subscription before the poller waits for the subscriber.
const PUSH_QUEUE: usize = 16;
/// How often a subscription looks for new commitments.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// The record name under which the job id of `aggregator`'s batch `seq` is kept.
pub fn batch_job_record(aggregator: &KeyId, seq: u64) -> Vec<u8> {
    let mut name = Vec::with_capacity(BATCH_JOB.len() + 40);
    name.extend_from_slice(BATCH_JOB);
    name.extend_from_slice(&aggregator.0);
    name.extend_from_slice(&seq.to_be_bytes());
    name
}

/// An aggregator allowed to submit batches.
#[derive(Debug, Clone)]
pub struct Aggregator {
    /// Its tenant name (its scheduler queue).
    pub tenant: String,
    /// Its verifying key.
    pub key: mldsa65::VerifyingKey,
    /// The shards it may submit for.
    pub shards: BTreeSet<u32>,
}

/// The appliance logic behind the wire.
pub struct Service {
    scheduler: Arc<Scheduler>,
    store: Store,
    aggregators: HashMap<KeyId, Aggregator>,
    shards: BTreeSet<u32>,
    depth: u8,
    limits: Limits,
    accept: Mutex<()>,
    metrics: Arc<Metrics>,
    closing: Arc<AtomicBool>,
    pollers: Arc<AtomicUsize>,
    records_behind: AtomicBool,
    me: Weak<Service>,
    /// Tenants' own submission rates (`tenants[].max_submits_per_second`), set once at start.
    submission_rates: std::sync::OnceLock<BTreeMap<String, u32>>,
}

impl Service {
    /// Gives tenants their own submission rate limits (per second, burst one second's worth,
    /// enforced by the QUIC server before a request is read further); the first call wins.
    pub fn set_submission_rates(&self, rates: BTreeMap<String, u32>) {
        let _ = self.submission_rates.set(rates);
    }

    /// The submission rate limit of `tenant`, if it has its own.
    pub fn tenant_submission_rate(&self, tenant: &str) -> Option<u32> {
        self.submission_rates.get()?.get(tenant).copied()
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("shards", &self.shards)
            .field("depth", &self.depth)
            .finish_non_exhaustive()
    }
}

fn reject(code: RejectCode, message: impl Into<String>, limits: &Limits) -> Response {
    Response::Rejected(Rejection::new(code, message, limits.max_message_len))
}

fn internal(e: impl std::fmt::Display, limits: &Limits) -> Response {
    tracing::error!(error = %e, "request failed internally; the client was told to retry");
    reject(
        RejectCode::Internal,
        format!("the appliance failed internally: {e}; retry later"),
        limits,
    )
}

impl Service {
    /// A service over a running scheduler.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        scheduler: Arc<Scheduler>,
        aggregators: Vec<Aggregator>,
        shards: BTreeSet<u32>,
        depth: u8,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let store = scheduler.store().clone();
        Arc::new_cyclic(|me| Self {
            scheduler,
            store,
            aggregators: aggregators
                .into_iter()
                .map(|a| (KeyId::of(&a.key), a))
                .collect(),
            shards,
            depth,
            limits,
            accept: Mutex::new(()),
            metrics,
            closing: Arc::new(AtomicBool::new(false)),
            pollers: Arc::new(AtomicUsize::new(0)),
            records_behind: AtomicBool::new(false),
            me: me.clone(),
            submission_rates: std::sync::OnceLock::new(),
        })
    }

    /// Writes the acceptance records of batch jobs journaled after the watermark (a crash
    /// between a submit and its records). Run once before serving.
    ///
    /// # Errors
    /// Storage errors, or a journaled batch that does not decode.
    pub(crate) fn recover(&self) -> Result<u64, Error> {
        let _guard = self.accept.lock().unwrap_or_else(|p| p.into_inner());
        self.recover_locked()
    }

    /// [`recover`](Self::recover) with the acceptance lock already held.
    fn recover_locked(&self) -> Result<u64, Error> {
        let mark = self
            .store
            .aggregator_seq(RESERVED_SHARD, ACCEPTED_THROUGH)?
            .unwrap_or(0);
        let mut id = mark;
        let mut repaired = 0;
        loop {
            let next = JobId(id + 1);
            let status = match self.scheduler.status(next) {
                Ok(s) => s,
                Err(SchedulerError::UnknownJob(_)) => break,
                Err(e) => return Err(e.into()),
            };
            if status.job.kind == JobKind::Batch {
                let payload = self.store.payload(next)?.ok_or_else(|| Error::Malformed {
                    what: "job payload",
                    detail: format!("job {next} has no payload"),
                })?;
                if let Request::SubmitBatch(batch) = decode_payload(&payload, &self.limits)? {
                    let mut writes = WriteSet::new();
                    self.acceptance_writes(&mut writes, &batch, next);
                    self.store.commit(&writes)?;
                    repaired += 1;
                }
            }
            id = next.0;
        }
        if id != mark {
            let mut writes = WriteSet::new();
            writes.aggregator_seq(RESERVED_SHARD, ACCEPTED_THROUGH, id);
            self.store.commit(&writes)?;
        }
        Ok(repaired)
    }

    fn acceptance_writes(&self, writes: &mut WriteSet, batch: &Batch, id: JobId) {
        let shard = u64::from(batch.shard);
        writes
            .aggregator_seq(shard, &batch.aggregator.0, batch.seq)
            .aggregator_seq(shard, &batch_job_record(&batch.aggregator, batch.seq), id.0)
            .aggregator_seq(shard, LAST_BATCH, id.0)
            .aggregator_seq(RESERVED_SHARD, ACCEPTED_THROUGH, id.0);
    }

    /// The shard's current root (the empty tree's before its first batch) and height.
    pub(crate) fn shard_state(&self, shard: u32) -> Result<(Word, u64), Error> {
        Ok(match self.store.shard_meta(u64::from(shard))? {
            Some(m) => (m.root, m.height),
            None => (empty_subtree_root(self.depth), 0),
        })
    }

    /// Whether the shard's last accepted batch has not executed yet.
    fn pending_execution(&self, shard: u32) -> Result<Option<JobId>, Error> {
        let Some(last) = self.store.aggregator_seq(u64::from(shard), LAST_BATCH)? else {
            return Ok(None);
        };
        let id = JobId(last);
        let status = match self.scheduler.status(id) {
            Ok(s) => s,
            Err(SchedulerError::UnknownJob(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let executed = status.completed.contains(&Stage::Execute) || status.state.is_terminal();
        Ok((!executed).then_some(id))
    }

    /// Every check of a batch, then the durable submit. Blocking (signature check, fsync).
    pub(crate) fn accept_batch(&self, batch: Batch) -> Response {
        let limits = &self.limits;
        let Some(agg) = self.aggregators.get(&batch.aggregator) else {
            return reject(
                RejectCode::UnknownKey,
                format!(
                    "aggregator key {} is not in this appliance's configuration; add it as a tenant",
                    batch.aggregator.to_hex()
                ),
                limits,
            );
        };
        if !agg.shards.contains(&batch.shard) || !self.shards.contains(&batch.shard) {
            return reject(
                RejectCode::Unauthorized,
                format!(
                    "tenant `{}` may not submit batches for shard {}; allowed: {:?}",
                    agg.tenant, batch.shard, agg.shards
                ),
                limits,
            );
        }
        if let Err(e) = batch.verify(&agg.key, limits) {
            return reject(
                RejectCode::BadSignature,
                format!(
                    "the batch signature does not verify: {e}; sign the batch with the key named in it"
                ),
                limits,
            );
        }
        let payload = match Request::SubmitBatch(batch.clone()).encode(limits) {
            Ok(p) => p,
            Err(e) => return reject(RejectCode::TooLarge, e.to_string(), limits),
        };
        let _guard = self.accept.lock().unwrap_or_else(|p| p.into_inner());
        if self.records_behind.load(Ordering::Relaxed) {
            // A journaled batch's records failed to write: bring them up to date first, or
            // a retry of that batch would pass the sequence check a second time.
            match self.recover_locked() {
                Ok(_) => self.records_behind.store(false, Ordering::Relaxed),
                Err(e) => return internal(e, limits),
            }
        }
        let shard = u64::from(batch.shard);
        let last_seq = match self.store.aggregator_seq(shard, &batch.aggregator.0) {
            Ok(s) => s.unwrap_or(0),
            Err(e) => return internal(e, limits),
        };
        if (1..=last_seq).contains(&batch.seq) {
            return self.resubmitted(&batch, last_seq);
        }
        if batch.seq != last_seq + 1 {
            return reject(
                RejectCode::Replay,
                format!(
                    "sequence number {} on shard {}: the next accepted one is {}",
                    batch.seq,
                    batch.shard,
                    last_seq + 1
                ),
                limits,
            );
        }
        match self.pending_execution(batch.shard) {
            Ok(Some(id)) => {
                return reject(
                    RejectCode::Busy,
                    format!(
                        "batch {id} of shard {} has not executed yet, so the shard's next root is \
                         unknown; retry shortly",
                        batch.shard
                    ),
                    limits,
                );
            }
            Ok(None) => {}
            Err(e) => return internal(e, limits),
        }
        let (root, height) = match self.shard_state(batch.shard) {
            Ok(s) => s,
            Err(e) => return internal(e, limits),
        };
        let root = word_to_bytes(&root);
        if batch.prev_root != root {
            return reject(
                RejectCode::WrongPrevRoot,
                format!(
                    "prev_root {} is not shard {}'s root {} at height {height}",
                    hex::encode(batch.prev_root),
                    batch.shard,
                    hex::encode(root)
                ),
                limits,
            );
        }
        let spec = JobSpec {
            tenant: agg.tenant.clone(),
            kind: JobKind::Batch,
            ordering_key: Some(shard),
            payload,
        };
        let id = match self.scheduler.submit(spec) {
            Ok(id) => id,
            Err(e @ SchedulerError::Busy { .. }) => {
                return reject(RejectCode::Busy, e.to_string(), limits);
            }
            Err(e @ SchedulerError::PayloadTooLarge { .. }) => {
                return reject(RejectCode::TooLarge, e.to_string(), limits);
            }
            Err(e @ (SchedulerError::ShuttingDown | SchedulerError::Full { .. })) => {
                return reject(RejectCode::Busy, e.to_string(), limits);
            }
            Err(e) => return internal(e, limits),
        };
        let mut writes = WriteSet::new();
        self.acceptance_writes(&mut writes, &batch, id);
        if let Err(e) = self.store.commit(&writes) {
            self.records_behind.store(true, Ordering::Relaxed);
            // The batch is journaled and will run; its records are rewritten before the next
            // acceptance (or on restart).
            return internal(
                format!("batch {id} is journaled but its sequence record failed: {e}"),
                limits,
            );
        }
        self.metrics
            .batches_accepted
            .fetch_add(1, Ordering::Relaxed);
        crate::logging::job_accepted(id.0, &agg.tenant, Some(batch.shard), batch.txs.len());
        Response::Accepted {
            id: WireJobId(id.0),
        }
    }

    /// A batch at a sequence number already accepted: the same batch (same batch hash, so the
    /// same shard, sequence number, `prev_root` and transactions) gets its job id again and no
    /// second job; any other batch is a `Replay`. Called with the acceptance lock held.
    fn resubmitted(&self, batch: &Batch, last_seq: u64) -> Response {
        let limits = &self.limits;
        let shard = u64::from(batch.shard);
        let record = batch_job_record(&batch.aggregator, batch.seq);
        let job = match self.store.aggregator_seq(shard, &record) {
            Ok(Some(job)) => JobId(job),
            Ok(None) => {
                // Accepted by a build that kept no per-batch records: it cannot be compared.
                return reject(
                    RejectCode::Replay,
                    format!(
                        "sequence number {} on shard {} was already accepted; the next accepted one is {}",
                        batch.seq,
                        batch.shard,
                        last_seq + 1
                    ),
                    limits,
                );
            }
            Err(e) => return internal(e, limits),
        };
        let stored = match self.store.payload(job) {
            Ok(Some(payload)) => payload,
            Ok(None) => {
                return internal(
                    format!("job {job} of an accepted batch has no payload"),
                    limits,
                );
            }
            Err(e) => return internal(e, limits),
        };
        let same = match (decode_payload(&stored, limits), batch.batch_hash(limits)) {
            (Ok(Request::SubmitBatch(first)), Ok(hash)) => {
                first.batch_hash(limits).ok() == Some(hash)
            }
            (Ok(_), _) => false,
            (Err(e), _) => return internal(e, limits),
        };
        if !same {
            return reject(
                RejectCode::Replay,
                format!(
                    "sequence number {} on shard {} is taken by another batch (job {job}); sign new transactions with the next sequence number, {}",
                    batch.seq,
                    batch.shard,
                    last_seq + 1
                ),
                limits,
            );
        }
        self.metrics
            .batches_duplicate
            .fetch_add(1, Ordering::Relaxed);
        Response::Accepted {
            id: WireJobId(job.0),
        }
    }

    fn submit_proving_job(&self, request: Request) -> Response {
        let limits = &self.limits;
        let Request::SubmitProvingJob(pj) = &request else {
            return reject(RejectCode::Malformed, "not a proving job", limits);
        };
        if let Err(e) = proving_request(pj) {
            let code = match e {
                super::stages::ProvingJobError::UnknownAir(_) => RejectCode::UnknownAir,
                super::stages::ProvingJobError::Options(_) => RejectCode::BadOptions,
                super::stages::ProvingJobError::Input(_) => RejectCode::Malformed,
            };
            return reject(code, e.to_string(), limits);
        }
        let payload = match request.encode(limits) {
            Ok(p) => p,
            Err(e) => return reject(RejectCode::TooLarge, e.to_string(), limits),
        };
        let spec = JobSpec {
            tenant: PROVING_TENANT.to_owned(),
            kind: JobKind::Proving,
            ordering_key: None,
            payload,
        };
        match self.scheduler.submit(spec) {
            Ok(id) => Response::Accepted {
                id: WireJobId(id.0),
            },
            Err(
                e @ (SchedulerError::Busy { .. }
                | SchedulerError::Full { .. }
                | SchedulerError::ShuttingDown),
            ) => reject(RejectCode::Busy, e.to_string(), limits),
            Err(e @ SchedulerError::PayloadTooLarge { .. }) => {
                reject(RejectCode::TooLarge, e.to_string(), limits)
            }
            Err(e) => internal(e, limits),
        }
    }

    fn job_status(&self, id: WireJobId) -> Response {
        let status = match self.scheduler.status(JobId(id.0)) {
            Ok(s) => s,
            Err(SchedulerError::UnknownJob(_)) => return Response::NotFound { id },
            Err(e) => return internal(e, &self.limits),
        };
        let stages = status.job.kind.stages();
        let done = status.completed.len();
        let wire_stage = |s: Stage| match s {
            Stage::Decap => WireStage::Decap,
            Stage::Execute => WireStage::Execute,
            Stage::Prove => WireStage::Prove,
            Stage::Publish => WireStage::Publish,
        };
        let (state, stage) = match &status.state {
            JobState::Queued if done == 0 => (WireJobState::Queued, WireStage::Pending),
            JobState::Queued => (
                WireJobState::Queued,
                stages
                    .get(done)
                    .copied()
                    .map_or(WireStage::Finished, wire_stage),
            ),
            JobState::Running(s) => (WireJobState::Running, wire_stage(*s)),
            JobState::Done => (WireJobState::Done, WireStage::Finished),
            JobState::Failed(_) => (
                WireJobState::Failed,
                stages
                    .get(done)
                    .copied()
                    .map_or(WireStage::Finished, wire_stage),
            ),
            _ => (WireJobState::Cancelled, WireStage::Finished),
        };
        let progress = u16::try_from(done * usize::from(MAX_PROGRESS) / stages.len().max(1))
            .unwrap_or(MAX_PROGRESS);
        Response::Status(JobStatusReport {
            id,
            state,
            stage,
            progress,
        })
    }

    fn fetch_proof(&self, id: WireJobId) -> Response {
        match self.store.proof(JobId(id.0)) {
            Ok(Some(envelope)) => Response::Proof { id, envelope },
            Ok(None) => Response::NotFound { id },
            Err(e) => internal(e, &self.limits),
        }
    }

    /// Stops every subscription poller; [`pollers`](Self::pollers) reaches 0 shortly after.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Subscription pollers still running.
    pub(crate) fn pollers(&self) -> usize {
        self.pollers.load(Ordering::Relaxed)
    }
}

/// Decodes a stored commitment record.
pub(crate) fn decode_commitment(bytes: &[u8], limits: &Limits) -> Result<Commitment, Error> {
    let frame = Frame::decode_exact(bytes, limits.max_frame_len)?;
    match Push::from_frame(&frame, limits)? {
        Push::Commitment(c) => Ok(c),
        Push::Start { .. } => Err(Error::Malformed {
            what: "commitment record",
            detail: "holds a stream start, not a commitment".into(),
        }),
    }
}

struct PollerGuard(Arc<AtomicUsize>);

impl Drop for PollerGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Streams the commitment log of `shards` from `from` on into `tx`, in height order per shard,
/// catching up first and then following new commitments, until the subscriber goes away or
/// the appliance closes. Memory is bounded by the channel.
async fn poll_commitments(
    store: Store,
    limits: Limits,
    shards: Vec<u32>,
    from: u64,
    tx: mpsc::Sender<Commitment>,
    closing: Arc<AtomicBool>,
    _guard: PollerGuard,
) {
    let mut next: BTreeMap<u32, u64> = shards.iter().map(|s| (*s, from.max(1))).collect();
    loop {
        let mut sent_any = false;
        for (shard, height) in next.iter_mut() {
            let batch = match store.commitments_from(u64::from(*shard), *height, PUSH_QUEUE) {
                Ok(b) => b,
                Err(_) => return,
            };
            for (h, bytes) in batch {
                let Ok(c) = decode_commitment(&bytes, &limits) else {
                    return;
                };
                if tx.send(c).await.is_err() {
                    return;
                }
                *height = h + 1;
                sent_any = true;
            }
        }
        if closing.load(Ordering::Relaxed) || tx.is_closed() {
            return;
        }
        if !sent_any {
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

impl WireService for Service {
    async fn handle(&self, _peer: PeerInfo, request: Request) -> Response {
        match request {
            Request::SubmitBatch(batch) => {
                // Signature checks and the synced journal write block: keep them off the
                // async workers.
                let this = self.self_arc();
                match tokio::task::spawn_blocking(move || this.accept_batch(batch)).await {
                    Ok(response) => {
                        self.metrics.count_response(&response);
                        response
                    }
                    Err(e) => internal(e, &self.limits),
                }
            }
            r @ Request::SubmitProvingJob(_) => {
                let this = self.self_arc();
                tokio::task::spawn_blocking(move || this.submit_proving_job(r))
                    .await
                    .unwrap_or_else(|e| internal(e, &self.limits))
            }
            Request::JobStatus { id } => self.job_status(id),
            Request::FetchProof { id } => self.fetch_proof(id),
            Request::Subscribe(_) => reject(
                RejectCode::Unsupported,
                "subscriptions are opened by the server's subscribe path",
                &self.limits,
            ),
        }
    }

    fn subscribe(
        &self,
        _peer: PeerInfo,
        request: &SubscribeRequest,
    ) -> Result<SubscriptionFeed, Rejection> {
        let shards: Vec<u32> = if request.shards.is_empty() {
            self.shards.iter().copied().collect()
        } else {
            request.shards.clone()
        };
        if let Some(unknown) = shards.iter().find(|s| !self.shards.contains(s)) {
            return Err(Rejection::new(
                RejectCode::Unauthorized,
                format!(
                    "shard {unknown} is not served by this appliance; it serves {:?}",
                    self.shards
                ),
                self.limits.max_message_len,
            ));
        }
        let (tx, rx) = mpsc::channel(PUSH_QUEUE);
        self.pollers.fetch_add(1, Ordering::Relaxed);
        let guard = PollerGuard(Arc::clone(&self.pollers));
        tokio::spawn(poll_commitments(
            self.store.clone(),
            self.limits,
            shards,
            request.from_height,
            tx,
            Arc::clone(&self.closing),
            guard,
        ));
        Ok(SubscriptionFeed {
            history: Vec::new(),
            live: rx,
        })
    }

    /// A tenant's `max_submits_per_second`, when it has one.
    fn submission_rate(&self, tenant: &str) -> Option<u32> {
        self.submission_rates.get()?.get(tenant).copied()
    }

    /// A connection that proves possession of a configured aggregator key is that tenant;
    /// any other key is refused.
    fn authorize(&self, _peer: PeerInfo, key: &mldsa65::VerifyingKey) -> Result<String, Rejection> {
        match self.aggregators.get(&KeyId::of(key)) {
            Some(agg) => Ok(agg.tenant.clone()),
            None => Err(Rejection::new(
                RejectCode::UnknownKey,
                format!(
                    "key {} is not a tenant of this appliance; add it under [[tenants]]",
                    KeyId::of(key).to_hex()
                ),
                self.limits.max_message_len,
            )),
        }
    }
}

impl Service {
    fn self_arc(&self) -> Arc<Service> {
        self.me
            .upgrade()
            .expect("the service lives in the Arc `Service::new` made while the server calls it")
    }
}
