//! The scheduler end to end over a real RocksDB in a temporary directory, with a test
//! executor whose stages leave checkable side effects in the store.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use epa_scheduler::{
    Config, Job, JobId, JobKind, JobSpec, JobState, Scheduler, SchedulerError, ShardMeta, Stage,
    StageContext, StageExecutor, StageFailure, StageOutcome, Store, WriteSet,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_math::fields::f64::BaseElement;

const WAIT: Duration = Duration::from_secs(20);
const PUBLISHED: &[u8] = b"published";

/// A test pipeline:
/// - decap: output = payload reversed;
/// - execute: reads the shard's height `h`, writes height `h + 1`; output = `h + 1` (LE) ++ input;
/// - prove: output = input ++ "proof"; stores the output as the job's proof;
/// - publish: appends the commitment (shard, height) = job id, and bumps a per-job
///   "published" counter in the same atomic write.
///
/// Stages listed in `parked` wait while the gate is closed (returning `Interrupted` on
/// shutdown). `failures` makes a job's decap fail that many times first.
#[derive(Default)]
struct Pipeline {
    parked: HashSet<Stage>,
    gate_open: Mutex<bool>,
    gate: Condvar,
    parked_now: AtomicUsize,
    successes: Mutex<Vec<(JobId, Stage)>>,
    attempts: Mutex<HashMap<JobId, Vec<Instant>>>,
    failures: Mutex<HashMap<JobId, (u32, bool)>>,
    panic_once: Mutex<HashSet<JobId>>,
    executing: Mutex<HashSet<u64>>,
    overlap: AtomicBool,
    max_delay_us: u64,
}

impl Pipeline {
    fn parking(stages: &[Stage]) -> Self {
        Self {
            parked: stages.iter().copied().collect(),
            ..Self::default()
        }
    }

    fn open_gate(&self) {
        *self.gate_open.lock().expect("lock") = true;
        self.gate.notify_all();
    }

    fn wait_parked(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.parked_now.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "fewer than {n} stages parked in time"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn runs_of(&self, id: JobId) -> Vec<Stage> {
        let runs = self.successes.lock().expect("lock");
        runs.iter()
            .filter(|(j, _)| *j == id)
            .map(|(_, s)| *s)
            .collect()
    }

    fn order_of(&self, stage: Stage) -> Vec<JobId> {
        let runs = self.successes.lock().expect("lock");
        runs.iter()
            .filter(|(_, s)| *s == stage)
            .map(|(j, _)| *j)
            .collect()
    }

    fn park(&self, ctx: &StageContext<'_>) -> Result<(), StageFailure> {
        let mut open = self.gate_open.lock().expect("lock");
        self.parked_now.fetch_add(1, Ordering::SeqCst);
        while !*open {
            if ctx.should_stop() || ctx.is_cancelled() {
                self.parked_now.fetch_sub(1, Ordering::SeqCst);
                return Err(StageFailure::Interrupted);
            }
            open = self
                .gate
                .wait_timeout(open, Duration::from_millis(5))
                .expect("lock")
                .0;
        }
        self.parked_now.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    fn stage(
        &self,
        ctx: &StageContext<'_>,
        job: &Job,
        stage: Stage,
        input: &[u8],
    ) -> Result<StageOutcome, StageFailure> {
        let store = ctx.store();
        let mut writes = WriteSet::new();
        let output = match stage {
            Stage::Decap => {
                if let Some((left, fatal)) = self.failures.lock().expect("lock").get_mut(&job.id) {
                    if *fatal {
                        return Err(StageFailure::Fatal("ciphertext 3 is malformed".into()));
                    }
                    if *left > 0 {
                        *left -= 1;
                        return Err(StageFailure::Retryable("device busy".into()));
                    }
                }
                if self.panic_once.lock().expect("lock").remove(&job.id) {
                    panic!("decap bug");
                }
                input.iter().rev().copied().collect()
            }
            Stage::Execute => {
                let shard = job.ordering_key.expect("batch jobs have a shard");
                if !self.executing.lock().expect("lock").insert(shard) {
                    self.overlap.store(true, Ordering::SeqCst);
                }
                self.delay();
                let height = store
                    .shard_meta(shard)
                    .map_err(|e| StageFailure::Retryable(e.to_string()))?
                    .map_or(0, |m| m.height)
                    + 1;
                self.executing.lock().expect("lock").remove(&shard);
                writes.shard_meta(
                    shard,
                    ShardMeta {
                        root: [BaseElement::new(height); 4],
                        height,
                    },
                );
                let mut out = height.to_le_bytes().to_vec();
                out.extend_from_slice(input);
                out
            }
            Stage::Prove => {
                let mut out = input.to_vec();
                out.extend_from_slice(b"proof");
                writes.proof(job.id, out.clone());
                out
            }
            Stage::Publish => {
                if let Some(shard) = job.ordering_key {
                    let height = u64::from_le_bytes(
                        input[..8]
                            .try_into()
                            .expect("execute output starts with the height"),
                    );
                    writes.commitment(shard, height, job.id.0.to_le_bytes().to_vec());
                }
                let count = store
                    .aggregator_seq(job.id.0, PUBLISHED)
                    .map_err(|e| StageFailure::Retryable(e.to_string()))?
                    .unwrap_or(0);
                writes.aggregator_seq(job.id.0, PUBLISHED, count + 1);
                input.to_vec()
            }
        };
        Ok(StageOutcome::with_writes(output, writes))
    }

    fn delay(&self) {
        if self.max_delay_us > 0 {
            let us = rand::thread_rng().gen_range(0..self.max_delay_us);
            std::thread::sleep(Duration::from_micros(us));
        }
    }
}

impl StageExecutor for Pipeline {
    fn run(
        &self,
        ctx: &StageContext<'_>,
        job: &Job,
        stage: Stage,
        input: &[u8],
    ) -> Result<StageOutcome, StageFailure> {
        assert_eq!(ctx.stage(), stage);
        self.attempts
            .lock()
            .expect("lock")
            .entry(job.id)
            .or_default()
            .push(Instant::now());
        if self.parked.contains(&stage) {
            self.park(ctx)?;
        }
        if stage != Stage::Execute {
            self.delay();
        }
        let outcome = self.stage(ctx, job, stage, input)?;
        self.successes.lock().expect("lock").push((job.id, stage));
        Ok(outcome)
    }
}

fn config(workers: usize) -> Config {
    Config {
        workers,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        ..Config::default()
    }
}

fn batch(tenant: &str, shard: u64, payload: Vec<u8>) -> JobSpec {
    JobSpec {
        tenant: tenant.into(),
        kind: JobKind::Batch,
        ordering_key: Some(shard),
        payload,
    }
}

fn random_payload(rng: &mut impl Rng) -> Vec<u8> {
    (0..rng.gen_range(1..64)).map(|_| rng.r#gen()).collect()
}

fn published_count(store: &Store, id: JobId) -> u64 {
    store
        .aggregator_seq(id.0, PUBLISHED)
        .expect("read")
        .unwrap_or(0)
}

/// Checks a finished batch job's side effects: outputs chained, proof stored, published once.
fn check_batch_effects(store: &Store, id: JobId, payload: &[u8]) {
    let reversed: Vec<u8> = payload.iter().rev().copied().collect();
    assert_eq!(
        store.stage_output(id, Stage::Decap).expect("read"),
        Some(reversed.clone())
    );
    let executed = store
        .stage_output(id, Stage::Execute)
        .expect("read")
        .expect("executed");
    assert_eq!(&executed[8..], &reversed[..]);
    let mut proof = executed.clone();
    proof.extend_from_slice(b"proof");
    assert_eq!(store.proof(id).expect("read"), Some(proof));
    assert_eq!(
        published_count(store, id),
        1,
        "job {id} must be published exactly once"
    );
}

/// The job ids in a shard's commitment log, checking the heights are 1..=n.
fn commitment_log(store: &Store, shard: u64) -> Vec<JobId> {
    let log = store.commitments_from(shard, 0, usize::MAX).expect("read");
    for (i, (height, _)) in log.iter().enumerate() {
        assert_eq!(
            *height,
            i as u64 + 1,
            "shard {shard}: heights must be contiguous"
        );
    }
    log.into_iter()
        .map(|(_, b)| JobId(u64::from_le_bytes(b.try_into().expect("8-byte job id"))))
        .collect()
}

#[test]
fn jobs_run_all_stages_in_order_with_their_side_effects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Pipeline::default());
    let scheduler = Scheduler::open(dir.path(), config(2), exec.clone()).expect("open");
    let mut rng = ChaCha20Rng::from_entropy();
    let mut jobs = Vec::new();
    for _ in 0..5 {
        let payload = random_payload(&mut rng);
        jobs.push((
            scheduler
                .submit(batch("agg", 3, payload.clone()))
                .expect("submit"),
            payload,
        ));
    }
    assert!(scheduler.wait_idle(WAIT), "jobs did not finish");
    for (id, payload) in &jobs {
        let status = scheduler.status(*id).expect("status");
        assert_eq!(status.state, JobState::Done);
        assert_eq!(status.completed, Stage::ALL.to_vec());
        assert_eq!(exec.runs_of(*id), Stage::ALL.to_vec());
        check_batch_effects(scheduler.store(), *id, payload);
    }
    let ids: Vec<JobId> = jobs.iter().map(|(id, _)| *id).collect();
    assert_eq!(commitment_log(scheduler.store(), 3), ids);
    assert_eq!(
        scheduler
            .store()
            .shard_meta(3)
            .expect("read")
            .map(|m| m.height),
        Some(5)
    );
    let snap = scheduler.snapshot();
    assert_eq!(
        (snap.done, snap.failed, snap.queued, snap.running),
        (5, 0, 0, 0)
    );
    for (stage, latency) in &snap.stage_latency {
        assert_eq!(latency.count, 5, "stage {stage}");
        assert!(latency.max >= latency.mean());
    }
}

#[test]
fn proving_jobs_run_only_their_stages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Pipeline::default());
    let scheduler = Scheduler::open(dir.path(), config(2), exec.clone()).expect("open");
    let spec = |kind| JobSpec {
        tenant: "validator".into(),
        kind,
        ordering_key: None,
        payload: b"air:rescue-chain".to_vec(),
    };
    let a = scheduler.submit(spec(JobKind::Proving)).expect("submit");
    let b = scheduler
        .submit(spec(JobKind::ProvingPublished))
        .expect("submit");
    assert_eq!(
        scheduler.wait(a, WAIT).expect("status").state,
        JobState::Done
    );
    assert_eq!(
        scheduler.wait(b, WAIT).expect("status").state,
        JobState::Done
    );
    assert_eq!(exec.runs_of(a), [Stage::Prove]);
    assert_eq!(exec.runs_of(b), [Stage::Prove, Stage::Publish]);
    assert_eq!(
        scheduler.store().proof(a).expect("read"),
        Some(b"air:rescue-chainproof".to_vec())
    );
    assert_eq!(published_count(scheduler.store(), a), 0);
    assert_eq!(published_count(scheduler.store(), b), 1);
}

#[test]
fn per_shard_order_holds_under_parallel_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Pipeline {
        max_delay_us: 2000,
        ..Pipeline::default()
    });
    let scheduler = Scheduler::open(dir.path(), config(4), exec.clone()).expect("open");
    let mut rng = ChaCha20Rng::from_entropy();
    let mut by_shard: HashMap<u64, Vec<JobId>> = HashMap::new();
    let mut payloads = Vec::new();
    for i in 0..30 {
        let shard = rng.gen_range(0..3);
        let payload = random_payload(&mut rng);
        let tenant = if i % 2 == 0 { "agg-a" } else { "agg-b" };
        let id = scheduler
            .submit(batch(tenant, shard, payload.clone()))
            .expect("submit");
        by_shard.entry(shard).or_default().push(id);
        payloads.push((id, payload));
    }
    assert!(scheduler.wait_idle(WAIT), "jobs did not finish");
    assert!(
        !exec.overlap.load(Ordering::SeqCst),
        "two executes of one shard overlapped"
    );
    let executes = exec.order_of(Stage::Execute);
    let publishes = exec.order_of(Stage::Publish);
    for (shard, ids) in &by_shard {
        let in_shard = |order: &[JobId]| -> Vec<JobId> {
            order
                .iter()
                .filter(|id| ids.contains(id))
                .copied()
                .collect()
        };
        assert_eq!(&in_shard(&executes), ids, "shard {shard}: execute order");
        assert_eq!(&in_shard(&publishes), ids, "shard {shard}: publish order");
        assert_eq!(&commitment_log(scheduler.store(), *shard), ids);
    }
    for (id, payload) in &payloads {
        check_batch_effects(scheduler.store(), *id, payload);
    }
}

#[test]
fn submitted_jobs_survive_a_restart_before_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = ChaCha20Rng::from_entropy();
    let mut jobs = Vec::new();
    {
        let exec = Arc::new(Pipeline::parking(&[Stage::Decap]));
        let scheduler = Scheduler::open(dir.path(), config(2), exec.clone()).expect("open");
        for i in 0..6 {
            let payload = random_payload(&mut rng);
            let id = scheduler
                .submit(batch("agg", i % 2, payload.clone()))
                .expect("submit");
            jobs.push((id, payload));
        }
        exec.wait_parked(2);
        assert_eq!(
            scheduler.status(jobs[5].0).expect("status").state,
            JobState::Queued
        );
        scheduler.shutdown();
        assert!(exec.successes.lock().expect("lock").is_empty());
    }
    let exec = Arc::new(Pipeline::default());
    let scheduler = Scheduler::open(dir.path(), config(2), exec.clone()).expect("reopen");
    assert!(scheduler.wait_idle(WAIT), "resumed jobs did not finish");
    for (id, payload) in &jobs {
        assert_eq!(scheduler.status(*id).expect("status").state, JobState::Done);
        assert_eq!(
            scheduler.store().payload(*id).expect("read").as_ref(),
            Some(payload)
        );
        check_batch_effects(scheduler.store(), *id, payload);
    }
    let next = scheduler.submit(batch("agg", 0, vec![1])).expect("submit");
    assert!(next > jobs[5].0, "ids are never reused after a restart");
}

#[test]
fn restart_mid_run_finishes_every_job_and_publishes_each_once() {
    restart_mid_run(true);
}

#[test]
fn restart_mid_run_with_only_publish_synced() {
    restart_mid_run(false);
}

fn restart_mid_run(sync_every_stage: bool) {
    let config = |workers| Config {
        sync_every_stage,
        ..config(workers)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = ChaCha20Rng::from_entropy();
    let mut jobs = Vec::new();
    let mut by_shard: HashMap<u64, Vec<JobId>> = HashMap::new();
    let first = Arc::new(Pipeline {
        max_delay_us: 500,
        ..Pipeline::parking(&[Stage::Prove])
    });
    {
        let scheduler = Scheduler::open(dir.path(), config(3), first.clone()).expect("open");
        for _ in 0..12 {
            let shard = rng.gen_range(0..2);
            let payload = random_payload(&mut rng);
            let id = scheduler
                .submit(batch("agg", shard, payload.clone()))
                .expect("submit");
            by_shard.entry(shard).or_default().push(id);
            jobs.push((id, payload));
        }
        // Three workers stuck in prove; the rest of the jobs are somewhere before it.
        first.wait_parked(3);
        drop(scheduler);
    }
    assert_eq!(
        first.parked_now.load(Ordering::SeqCst),
        0,
        "shutdown released parked stages"
    );
    assert!(first.order_of(Stage::Prove).is_empty());
    let second = Arc::new(Pipeline {
        max_delay_us: 500,
        ..Pipeline::default()
    });
    let scheduler = Scheduler::open(dir.path(), config(3), second.clone()).expect("reopen");
    assert!(scheduler.wait_idle(WAIT), "resumed jobs did not finish");
    for (id, payload) in &jobs {
        assert_eq!(scheduler.status(*id).expect("status").state, JobState::Done);
        check_batch_effects(scheduler.store(), *id, payload);
        // Every stage completed exactly once over both runs.
        let mut runs = first.runs_of(*id);
        runs.extend(second.runs_of(*id));
        assert_eq!(runs, Stage::ALL.to_vec(), "job {id}");
    }
    for (shard, ids) in &by_shard {
        assert_eq!(&commitment_log(scheduler.store(), *shard), ids);
    }
}

#[test]
fn a_full_tenant_queue_is_busy_and_others_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Pipeline::parking(&[Stage::Decap]));
    let cfg = Config {
        max_queued_jobs_per_tenant: 3,
        max_queued_bytes_per_tenant: 100,
        max_payload_bytes: 80,
        ..config(1)
    };
    let scheduler = Scheduler::open(dir.path(), cfg, exec.clone()).expect("open");
    let mut a = Vec::new();
    for _ in 0..3 {
        a.push(
            scheduler
                .submit(batch("a", 0, vec![0; 10]))
                .expect("under the limit"),
        );
    }
    match scheduler.submit(batch("a", 0, vec![0; 10])) {
        Err(SchedulerError::Busy {
            tenant,
            queued_jobs: 3,
            queued_bytes: 30,
            max_jobs: 3,
            max_bytes: 100,
        }) => assert_eq!(tenant, "a"),
        other => panic!("expected Busy, got {other:?}"),
    }
    // Bytes count as well as jobs.
    let b = scheduler
        .submit(batch("b", 1, vec![0; 60]))
        .expect("under the limit");
    assert!(matches!(
        scheduler.submit(batch("b", 1, vec![0; 60])),
        Err(SchedulerError::Busy {
            queued_bytes: 60,
            ..
        })
    ));
    assert!(matches!(
        scheduler.submit(batch("c", 1, vec![0; 81])),
        Err(SchedulerError::PayloadTooLarge { size: 81, max: 80 })
    ));
    assert!(matches!(
        scheduler.submit(batch("", 1, vec![])),
        Err(SchedulerError::InvalidTenant { .. })
    ));
    assert!(matches!(
        scheduler.submit(batch(&"x".repeat(65), 1, vec![])),
        Err(SchedulerError::InvalidTenant { .. })
    ));
    let snap = scheduler.snapshot();
    assert_eq!((snap.queued + snap.running, snap.tenants.len()), (4, 2));
    let depth: Vec<(String, usize, u64)> = snap
        .tenants
        .iter()
        .map(|t| (t.tenant.clone(), t.jobs, t.bytes))
        .collect();
    assert_eq!(depth, [("a".into(), 3, 30), ("b".into(), 1, 60)]);
    // Refused submissions used no ids: the next accepted one follows `b` directly.
    assert!(scheduler.cancel(a[2]).expect("cancel"));
    let again = scheduler
        .submit(batch("a", 0, vec![0; 10]))
        .expect("room after a cancel");
    assert_eq!(again.0, b.0 + 1);
    exec.open_gate();
    assert!(scheduler.wait_idle(WAIT));
    assert_eq!(scheduler.snapshot().tenants, []);
}

#[test]
fn retries_back_off_then_the_failure_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Pipeline::default());
    let cfg = Config {
        max_attempts: 3,
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..config(2)
    };
    let scheduler = Scheduler::open(dir.path(), cfg, exec.clone()).expect("open");
    // Ids are assigned in order from 1 on a fresh dir; set the failures up front.
    exec.failures.lock().expect("lock").extend([
        (JobId(1), (2, false)),
        (JobId(2), (u32::MAX, false)),
        (JobId(3), (0, true)),
    ]);
    exec.panic_once.lock().expect("lock").insert(JobId(4));
    let ids: Vec<JobId> = (0..4)
        .map(|i| {
            scheduler
                .submit(batch("agg", i, vec![1, 2, 3]))
                .expect("submit")
        })
        .collect();
    assert_eq!(ids, (1..=4).map(JobId).collect::<Vec<_>>());
    assert!(scheduler.wait_idle(WAIT));

    let attempts = exec.attempts.lock().expect("lock").clone();
    // Job 1: two failures, then success; the waits doubled (20 ms, then 40 ms).
    assert_eq!(
        scheduler.status(ids[0]).expect("status").state,
        JobState::Done
    );
    let times = &attempts[&ids[0]];
    assert_eq!(
        times.len(),
        3 + 3,
        "three decap attempts plus three later stages"
    );
    assert!(times[1] - times[0] >= Duration::from_millis(20));
    assert!(times[2] - times[1] >= Duration::from_millis(40));
    // Job 2: out of attempts.
    let status = scheduler.status(ids[1]).expect("status");
    match &status.state {
        JobState::Failed(reason) => {
            assert!(reason.contains("stage decap failed"), "{reason}");
            assert!(reason.contains("device busy"), "{reason}");
            assert!(reason.contains("after 3 attempts"), "{reason}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(status.attempts, 3);
    assert!(status.completed.is_empty());
    assert_eq!(attempts[&ids[1]].len(), 3);
    // Job 3: a fatal failure is not retried.
    match scheduler.status(ids[2]).expect("status").state {
        JobState::Failed(reason) => assert!(reason.contains("malformed"), "{reason}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(attempts[&ids[2]].len(), 1);
    // Job 4: a panicking stage counts as a failed attempt, and the retry succeeds.
    assert_eq!(
        scheduler.status(ids[3]).expect("status").state,
        JobState::Done
    );
    assert_eq!(published_count(scheduler.store(), ids[3]), 1);
    let snap = scheduler.snapshot();
    assert_eq!((snap.done, snap.failed), (2, 2));
    drop(scheduler);
    // The failure reasons are durable.
    let scheduler =
        Scheduler::open(dir.path(), config(1), Arc::new(Pipeline::default())).expect("reopen");
    assert!(matches!(
        scheduler.status(ids[1]).expect("status").state,
        JobState::Failed(_)
    ));
    assert_eq!(scheduler.snapshot().queued, 0, "failed jobs do not resume");
}

#[test]
fn cancellation_stops_running_and_queued_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Pipeline::parking(&[Stage::Prove]));
    let scheduler = Scheduler::open(dir.path(), config(1), exec.clone()).expect("open");
    let running = scheduler.submit(batch("agg", 0, vec![1])).expect("submit");
    exec.wait_parked(1);
    let queued = scheduler.submit(batch("agg", 1, vec![2])).expect("submit");
    let kept = scheduler.submit(batch("agg", 2, vec![3])).expect("submit");
    assert_eq!(
        scheduler.status(running).expect("status").state,
        JobState::Running(Stage::Prove)
    );
    assert!(scheduler.cancel(queued).expect("cancel"));
    assert!(scheduler.cancel(running).expect("cancel"));
    assert!(
        !scheduler.cancel(running).expect("cancel"),
        "already cancelled"
    );
    assert!(matches!(
        scheduler.cancel(JobId(999)),
        Err(SchedulerError::UnknownJob(JobId(999)))
    ));
    exec.open_gate();
    assert_eq!(
        scheduler.wait(kept, WAIT).expect("status").state,
        JobState::Done
    );
    assert!(scheduler.wait_idle(WAIT));
    assert_eq!(
        scheduler.status(running).expect("status").state,
        JobState::Cancelled
    );
    assert_eq!(
        scheduler.status(queued).expect("status").state,
        JobState::Cancelled
    );
    assert_eq!(
        exec.runs_of(queued),
        [],
        "a cancelled queued job never runs"
    );
    // The parked prove may still return its outcome after the cancel: it is discarded.
    let runs = exec.runs_of(running);
    assert_eq!(runs[..2], [Stage::Decap, Stage::Execute]);
    assert!(!runs.contains(&Stage::Publish), "runs {runs:?}");
    assert_eq!(
        scheduler.status(running).expect("status").completed,
        [Stage::Decap, Stage::Execute]
    );
    assert_eq!(scheduler.store().proof(running).expect("read"), None);
    assert_eq!(published_count(scheduler.store(), running), 0);
    assert_eq!(scheduler.snapshot().cancelled, 2);
    drop(scheduler);
    let scheduler = Scheduler::open(dir.path(), config(1), exec.clone()).expect("reopen");
    assert_eq!(
        scheduler.status(running).expect("status").state,
        JobState::Cancelled
    );
    assert!(!scheduler.cancel(queued).expect("cancel"));
}

#[test]
fn tenants_share_the_workers_by_weight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Pipeline::parking(&[Stage::Decap]));
    let cfg = Config {
        tenant_weights: [("a".to_owned(), 2)].into(),
        ..config(1)
    };
    let scheduler = Scheduler::open(dir.path(), cfg, exec.clone()).expect("open");
    let proving = |tenant: &str| JobSpec {
        tenant: tenant.into(),
        kind: JobKind::Proving,
        ordering_key: None,
        payload: vec![0],
    };
    // The only worker is held by a blocker while both tenants queue up: `a` first, in bulk.
    let blocker = scheduler.submit(batch("z", 0, vec![0])).expect("submit");
    exec.wait_parked(1);
    let a: Vec<JobId> = (0..8)
        .map(|_| scheduler.submit(proving("a")).expect("submit"))
        .collect();
    let b: Vec<JobId> = (0..4)
        .map(|_| scheduler.submit(proving("b")).expect("submit"))
        .collect();
    exec.open_gate();
    assert!(scheduler.wait_idle(WAIT));
    let order: Vec<char> = exec
        .order_of(Stage::Prove)
        .into_iter()
        .filter(|id| *id != blocker)
        .map(|id| {
            if a.contains(&id) {
                'a'
            } else if b.contains(&id) {
                'b'
            } else {
                'z'
            }
        })
        .collect();
    assert_eq!(order.len(), 12);
    // Weighted round robin: in the first nine picks `a` gets two for each one of `b`.
    let first: String = order[..9].iter().collect();
    assert_eq!(first.matches('b').count(), 3, "order {order:?}");
    assert_eq!(first.matches('a').count(), 6, "order {order:?}");
    // Within a tenant, jobs run in submission order.
    let a_order: Vec<JobId> = exec
        .order_of(Stage::Prove)
        .into_iter()
        .filter(|id| a.contains(id))
        .collect();
    assert_eq!(a_order, a);
}

#[test]
fn shutdown_refuses_new_work_and_bad_config_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = Config {
        workers: 0,
        ..Config::default()
    };
    assert!(matches!(
        Scheduler::open(dir.path(), bad, Arc::new(Pipeline::default())),
        Err(SchedulerError::InvalidConfig {
            field: "workers",
            ..
        })
    ));
    let scheduler =
        Scheduler::open(dir.path(), config(1), Arc::new(Pipeline::default())).expect("open");
    assert!(matches!(
        scheduler.status(JobId(1)),
        Err(SchedulerError::UnknownJob(JobId(1)))
    ));
    let id = scheduler.submit(batch("agg", 0, vec![1])).expect("submit");
    scheduler.stop_admitting();
    assert!(matches!(
        scheduler.submit(batch("agg", 0, vec![2])),
        Err(SchedulerError::ShuttingDown)
    ));
    drop(scheduler);
    // Whatever the shutdown left unfinished resumes on the next open.
    let scheduler =
        Scheduler::open(dir.path(), config(1), Arc::new(Pipeline::default())).expect("reopen");
    assert_eq!(
        scheduler.wait(id, WAIT).expect("status").state,
        JobState::Done
    );
    assert_eq!(published_count(scheduler.store(), id), 1);
}

/// An executor whose execute stage applies the payload's updates to the shard's SMT through a
/// staged node store, committing the nodes and the new root with the stage.
struct SmtExecutor;

const SMT_DEPTH: u8 = 24;

fn decode_updates(bytes: &[u8]) -> Vec<(u64, crypto::smt::Word)> {
    bytes
        .chunks_exact(16)
        .map(|c| {
            let key = u64::from_le_bytes(c[..8].try_into().expect("8 bytes")) % (1 << SMT_DEPTH);
            let value = u64::from_le_bytes(c[8..].try_into().expect("8 bytes")) % 1000;
            (
                key,
                [
                    BaseElement::new(value),
                    BaseElement::new(0),
                    BaseElement::new(0),
                    BaseElement::new(0),
                ],
            )
        })
        .collect()
}

impl StageExecutor for SmtExecutor {
    fn run(
        &self,
        ctx: &StageContext<'_>,
        job: &Job,
        stage: Stage,
        input: &[u8],
    ) -> Result<StageOutcome, StageFailure> {
        if stage != Stage::Execute {
            return Ok(StageOutcome::new(input.to_vec()));
        }
        let shard = job.ordering_key.expect("batch jobs have a shard");
        let fail = |e: &dyn std::fmt::Display| StageFailure::Retryable(e.to_string());
        let height = ctx
            .store()
            .shard_meta(shard)
            .map_err(|e| fail(&e))?
            .map_or(0, |m| m.height);
        let mut tree = crypto::smt::Smt::new(SMT_DEPTH, ctx.store().staged_node_store(shard))
            .map_err(|e| fail(&e))?;
        let root = tree
            .apply_batch(&decode_updates(input))
            .map_err(|e| fail(&e))?;
        let mut nodes = tree.into_store();
        let mut writes = WriteSet::new();
        writes.smt(shard, nodes.take_batch()).shard_meta(
            shard,
            ShardMeta {
                root,
                height: height + 1,
            },
        );
        Ok(StageOutcome::with_writes(input.to_vec(), writes))
    }
}

#[test]
fn execute_commits_smt_nodes_with_the_stage_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = ChaCha20Rng::from_entropy();
    let mut models: HashMap<u64, crypto::smt::Smt<crypto::smt::MemStore>> = HashMap::new();
    let mut specs = Vec::new();
    for _ in 0..15 {
        let shard = rng.gen_range(0..3);
        let payload: Vec<u8> = (0..rng.gen_range(1..8) * 16).map(|_| rng.r#gen()).collect();
        models
            .entry(shard)
            .or_insert_with(|| {
                crypto::smt::Smt::new(SMT_DEPTH, crypto::smt::MemStore::new()).expect("tree")
            })
            .apply_batch(&decode_updates(&payload))
            .expect("model");
        specs.push(batch("agg", shard, payload));
    }
    {
        let scheduler =
            Scheduler::open(dir.path(), config(3), Arc::new(SmtExecutor)).expect("open");
        for spec in specs.iter().take(10).cloned() {
            scheduler.submit(spec).expect("submit");
        }
        // Dropped at once: whatever ran is committed, the rest resumes below.
    }
    let scheduler = Scheduler::open(dir.path(), config(3), Arc::new(SmtExecutor)).expect("reopen");
    for spec in specs.iter().skip(10).cloned() {
        scheduler.submit(spec).expect("submit");
    }
    assert!(scheduler.wait_idle(WAIT));
    let per_shard = |shard: u64| {
        specs
            .iter()
            .filter(|s| s.ordering_key == Some(shard))
            .count() as u64
    };
    for (shard, model) in &models {
        let meta = scheduler
            .store()
            .shard_meta(*shard)
            .expect("read")
            .expect("written");
        assert_eq!(meta.root, model.root(), "shard {shard}");
        assert_eq!(meta.height, per_shard(*shard));
        let stored =
            crypto::smt::Smt::new(SMT_DEPTH, scheduler.store().node_store(*shard)).expect("tree");
        assert_eq!(
            stored.root(),
            model.root(),
            "shard {shard}: nodes and metadata agree"
        );
    }
}

#[test]
fn concurrent_submitters_get_unique_ids_and_id_order_is_shard_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Pipeline {
        max_delay_us: 300,
        ..Pipeline::default()
    });
    let scheduler = Scheduler::open(dir.path(), config(3), exec.clone()).expect("open");
    let per_thread: Vec<Vec<JobId>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4u8)
            .map(|t| {
                let scheduler = &scheduler;
                scope.spawn(move || {
                    (0..10u8)
                        .map(|i| {
                            let tenant = format!("agg-{t}");
                            scheduler
                                .submit(batch(&tenant, 7, vec![t, i]))
                                .expect("submit")
                        })
                        .collect::<Vec<JobId>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("submitter"))
            .collect()
    });
    let mut all: Vec<JobId> = per_thread.iter().flatten().copied().collect();
    for ids in &per_thread {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "one submitter's ids increase"
        );
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 40, "ids are unique");
    assert!(scheduler.wait_idle(WAIT));
    assert!(!exec.overlap.load(Ordering::SeqCst));
    // Submission order on one key is id order: the commitment log lists every job by id.
    assert_eq!(commitment_log(scheduler.store(), 7), all);
    for id in &all {
        assert_eq!(published_count(scheduler.store(), *id), 1);
    }
}

#[test]
fn the_total_limit_bounds_all_tenants_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Pipeline::parking(&[Stage::Decap]));
    let cfg = Config {
        max_queued_jobs_per_tenant: 2,
        max_queued_jobs: 5,
        ..config(1)
    };
    let scheduler = Scheduler::open(dir.path(), cfg, exec.clone()).expect("open");
    for tenant in ["a", "a", "b", "b", "c"] {
        scheduler
            .submit(batch(tenant, 0, vec![1]))
            .expect("under both limits");
    }
    assert!(matches!(
        scheduler.submit(batch("d", 0, vec![1])),
        Err(SchedulerError::Full {
            queued_jobs: 5,
            max_jobs: 5
        })
    ));
    exec.open_gate();
    assert!(scheduler.wait_idle(WAIT));
    scheduler
        .submit(batch("d", 0, vec![1]))
        .expect("room again");
    let bad = Config {
        max_queued_jobs: 0,
        ..config(1)
    };
    assert!(matches!(
        bad.validate(),
        Err(SchedulerError::InvalidConfig {
            field: "max_queued_jobs",
            ..
        })
    ));
}

#[test]
fn submit_with_commits_acceptance_records_with_the_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Pipeline::parking(&[Stage::Decap]));
    let cfg = Config {
        max_queued_jobs_per_tenant: 1,
        ..config(1)
    };
    let mut rng = ChaCha20Rng::from_entropy();
    let seq: u64 = rng.r#gen();
    let id = {
        let scheduler = Scheduler::open(dir.path(), cfg.clone(), exec.clone()).expect("open");
        let mut writes = WriteSet::new();
        writes.aggregator_seq(5, b"agg-key", seq);
        let id = scheduler
            .submit_with(batch("agg", 5, vec![1, 2]), &writes)
            .expect("submit");
        let mut refused = WriteSet::new();
        refused.aggregator_seq(5, b"agg-key", seq.wrapping_add(1));
        assert!(matches!(
            scheduler.submit_with(batch("agg", 5, vec![3]), &refused),
            Err(SchedulerError::Busy { .. })
        ));
        assert_eq!(
            scheduler
                .store()
                .aggregator_seq(5, b"agg-key")
                .expect("read"),
            Some(seq)
        );
        id
    };
    let scheduler =
        Scheduler::open(dir.path(), cfg, Arc::new(Pipeline::default())).expect("reopen");
    assert_eq!(
        scheduler
            .store()
            .aggregator_seq(5, b"agg-key")
            .expect("read"),
        Some(seq)
    );
    assert_eq!(
        scheduler.wait(id, WAIT).expect("status").state,
        JobState::Done
    );
}
