//! Structured logs and the stage measurements taken at the same points.
//!
//! 1. [`init`] installs the process's `tracing` subscriber from the `[logging]` section:
//!    `json` writes one JSON object per line on standard error (fields at the top level:
//!    `timestamp`, `level`, `target`, `message`, then the event's fields), `pretty` writes
//!    human-readable lines; `level` is the least severe level written.
//! 2. The appliance wraps its stage executor in [`Observed`]: every stage of every job is
//!    logged with the fields `job_id`, `tenant`, `shard` (`-1` for proving jobs, which belong to
//!    no shard), `stage` and `attempt`; its run time goes into the
//!    `epa_stage_duration_seconds` histogram and every proof's size into `epa_proof_size_bytes`
//!    ([`Observations`]), with the latest proofs kept for `/status`.
//!
//! What is never logged: key material, shared secrets, payloads, proofs. Events carry ids,
//! counts, sizes, durations and error messages only (the tests grep a full run's logs for the
//! bytes of every secret key).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use node_lite::http::{Histogram, HistogramFamily};
use scheduler::{Job, JobKind, Stage, StageContext, StageExecutor, StageFailure, StageOutcome};
use tracing_subscriber::filter::LevelFilter;

use crate::appliance::codec::Proved;

/// Proofs kept for `/status` ([`Observations::recent_proofs`]).
pub const RECENT_PROOFS: usize = 32;

/// Installs the global subscriber: `format` is `json` or `pretty`, `level` one of `error`,
/// `warn`, `info`, `debug`, `trace` (anything else means `info`; the configuration is
/// validated before this). Returns `false` if a subscriber was already installed (the first
/// one stays).
pub fn init(format: &str, level: &str) -> bool {
    let level = match level {
        "error" => LevelFilter::ERROR,
        "warn" => LevelFilter::WARN,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => LevelFilter::INFO,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(true);
    if format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
            .is_ok()
    } else {
        builder.with_ansi(false).try_init().is_ok()
    }
}

/// One proof produced, for `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofRecord {
    /// The job.
    pub job: u64,
    /// Its tenant.
    pub tenant: String,
    /// The shard (batches only).
    pub shard: Option<u32>,
    /// The height it proves (batches only).
    pub height: Option<u64>,
    /// Size of the proof envelope in bytes.
    pub proof_bytes: u64,
    /// How long the prove stage ran, in milliseconds.
    pub prove_ms: u64,
}

/// Stage run times, proof sizes and the latest proofs, since the process started.
#[derive(Debug)]
pub struct Observations {
    stage_seconds: [Histogram; 4],
    proof_bytes: Histogram,
    recent: Mutex<VecDeque<ProofRecord>>,
}

impl Default for Observations {
    fn default() -> Self {
        // 5 ms to ~22 min by factors of 2.5; 1 KiB to 16 MiB by factors of 2.
        let seconds = Histogram::exponential_bounds(0.005, 2.5, 14);
        let sizes = Histogram::exponential_bounds(1024.0, 2.0, 15);
        Self {
            stage_seconds: std::array::from_fn(|_| Histogram::new(&seconds)),
            proof_bytes: Histogram::new(&sizes),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_PROOFS)),
        }
    }
}

impl Observations {
    fn stage(&self, stage: Stage) -> &Histogram {
        let i = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        &self.stage_seconds[i]
    }

    fn proved(&self, record: ProofRecord) {
        self.proof_bytes.observe(record.proof_bytes as f64);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_PROOFS {
            recent.pop_front();
        }
        recent.push_back(record);
    }

    /// The latest proofs, oldest first.
    pub fn recent_proofs(&self) -> Vec<ProofRecord> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().cloned().collect()
    }

    /// `epa_stage_duration_seconds{stage}` and `epa_proof_size_bytes`.
    pub fn histograms(&self) -> Vec<HistogramFamily> {
        vec![
            HistogramFamily {
                name: "epa_stage_duration_seconds".into(),
                help: "Run time of each completed stage.".into(),
                series: Stage::ALL
                    .iter()
                    .map(|s| {
                        self.stage(*s)
                            .series(vec![("stage".into(), s.name().into())])
                    })
                    .collect(),
            },
            HistogramFamily {
                name: "epa_proof_size_bytes".into(),
                help: "Size of each proof envelope produced.".into(),
                series: vec![self.proof_bytes.series(Vec::new())],
            },
        ]
    }
}

/// A stage executor that logs and measures every stage of `inner`.
pub struct Observed<E> {
    inner: E,
    observations: Arc<Observations>,
}

impl<E> Observed<E> {
    /// Wraps `inner`, recording into `observations`.
    pub fn new(inner: E, observations: Arc<Observations>) -> Self {
        Self {
            inner,
            observations,
        }
    }
}

/// The shard a job belongs to as a log field: its ordering key, `-1` for none.
fn shard_field(job: &Job) -> i64 {
    job.ordering_key
        .and_then(|k| i64::try_from(k).ok())
        .unwrap_or(-1)
}

impl<E: StageExecutor> StageExecutor for Observed<E> {
    fn run(
        &self,
        ctx: &StageContext<'_>,
        job: &Job,
        stage: Stage,
        input: &[u8],
    ) -> Result<StageOutcome, StageFailure> {
        let (job_id, tenant, shard) = (job.id.0, job.tenant.as_str(), shard_field(job));
        tracing::debug!(
            job_id,
            tenant,
            shard,
            stage = stage.name(),
            attempt = ctx.attempt(),
            input_bytes = input.len(),
            "stage started"
        );
        let started = Instant::now();
        let result = self.inner.run(ctx, job, stage, input);
        let elapsed = started.elapsed();
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(outcome) => {
                self.observations
                    .stage(stage)
                    .observe(elapsed.as_secs_f64());
                if stage == Stage::Prove {
                    self.observations
                        .proved(proof_record(job, &outcome.output, elapsed_ms));
                }
                tracing::info!(
                    job_id,
                    tenant,
                    shard,
                    stage = stage.name(),
                    attempt = ctx.attempt(),
                    elapsed_ms,
                    output_bytes = outcome.output.len(),
                    "stage completed"
                );
            }
            Err(StageFailure::Interrupted) => tracing::info!(
                job_id,
                tenant,
                shard,
                stage = stage.name(),
                attempt = ctx.attempt(),
                "stage interrupted by shutdown; it re-runs after the restart"
            ),
            Err(failure) => tracing::warn!(
                job_id,
                tenant,
                shard,
                stage = stage.name(),
                attempt = ctx.attempt(),
                elapsed_ms,
                error = %failure,
                "stage failed"
            ),
        }
        result
    }

    fn probe_device(&self, gpu: usize, device: &scheduler::GpuDevice) -> bool {
        let passed = self.inner.probe_device(gpu, device);
        tracing::info!(
            gpu,
            device = device.pci_address.as_str(),
            passed,
            "GPU health probe"
        );
        passed
    }
}

/// What `/status` keeps of a prove stage's output: a batch's output is a [`Proved`] record,
/// a proving job's is the envelope itself.
fn proof_record(job: &Job, output: &[u8], prove_ms: u64) -> ProofRecord {
    let (shard, height, proof_bytes) = match job.kind {
        JobKind::Batch => match Proved::from_bytes(output) {
            Ok(p) => (Some(p.shard), Some(p.height), p.envelope.len()),
            Err(_) => (None, None, output.len()),
        },
        JobKind::Proving | JobKind::ProvingPublished => (None, None, output.len()),
    };
    ProofRecord {
        job: job.id.0,
        tenant: job.tenant.clone(),
        shard,
        height,
        proof_bytes: proof_bytes as u64,
        prove_ms,
    }
}

/// Logs that a batch job of `txs` transactions was accepted (durably journaled) for `tenant`.
pub fn job_accepted(job_id: u64, tenant: &str, shard: Option<u32>, txs: usize) {
    tracing::info!(
        job_id,
        tenant,
        shard = shard.map_or(-1, i64::from),
        stage = "accept",
        txs,
        "job accepted (journaled)"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rand::{Rng, SeedableRng};
    use scheduler::{Config, JobSpec, JobState, Scheduler, Topology};

    use super::*;

    /// A stage executor whose prove stage outputs a batch's `Proved` record with an envelope
    /// of the job's payload length, and whose decap fails for good on payloads starting with 0.
    struct Fake;

    impl StageExecutor for Fake {
        fn run(
            &self,
            _ctx: &StageContext<'_>,
            job: &Job,
            stage: Stage,
            input: &[u8],
        ) -> Result<StageOutcome, StageFailure> {
            match stage {
                Stage::Decap if input.first() == Some(&0) => {
                    Err(StageFailure::Fatal("refused".into()))
                }
                Stage::Prove if job.kind == JobKind::Batch => {
                    let proved = Proved {
                        shard: 7,
                        height: job.id.0,
                        old_root: [1; 32],
                        new_root: [2; 32],
                        batch_hash: [3; 32],
                        envelope: vec![9; input.len()],
                    };
                    Ok(StageOutcome::new(proved.to_bytes()))
                }
                _ => Ok(StageOutcome::new(input.to_vec())),
            }
        }
    }

    #[test]
    fn observed_stages_fill_the_histograms_and_the_proof_ring() {
        let seed = rand::random::<u64>();
        eprintln!("seed {seed}");
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let dir = tempfile::tempdir().expect("tempdir");
        let observations = Arc::new(Observations::default());
        let config = Config {
            workers: 2,
            topology: Some(Topology::single_node(2, 1 << 30)),
            sync_every_stage: false,
            ..Config::default()
        };
        let scheduler = Scheduler::open(
            dir.path(),
            config,
            Arc::new(Observed::new(Fake, Arc::clone(&observations))),
        )
        .expect("open");
        let n = 2 * RECENT_PROOFS + rng.gen_range(1..10);
        let mut proved_sizes = Vec::new();
        let mut failed = 0;
        let mut proving_jobs = 0;
        for _ in 0..n {
            let len = rng.gen_range(1..2000);
            let mut payload = vec![1u8; len];
            let kind = if rng.gen_bool(0.2) {
                proving_jobs += 1;
                JobKind::Proving
            } else {
                JobKind::Batch
            };
            if kind == JobKind::Batch && rng.gen_bool(0.2) {
                payload[0] = 0;
                failed += 1;
            } else {
                proved_sizes.push(len as u64);
            }
            scheduler
                .submit(JobSpec {
                    tenant: "t".into(),
                    kind,
                    ordering_key: None,
                    payload,
                })
                .expect("submit");
        }
        assert!(scheduler.wait_idle(Duration::from_secs(20)));
        let snap = scheduler.snapshot();
        assert_eq!(snap.failed, failed);
        let batches = (n - proving_jobs) as u64;
        let fams = observations.histograms();
        assert_eq!(fams[0].name, "epa_stage_duration_seconds");
        let count = |stage: &str| {
            fams[0]
                .series
                .iter()
                .find(|s| s.labels == vec![("stage".to_owned(), stage.to_owned())])
                .map(|s| s.count)
                .expect("a series per stage")
        };
        // Failed decaps are not observed; every other stage of every job is, once.
        assert_eq!(count("decap"), batches - failed);
        assert_eq!(count("execute"), batches - failed);
        assert_eq!(count("prove"), proved_sizes.len() as u64);
        assert_eq!(count("publish"), batches - failed);
        let sizes = &fams[1].series[0];
        assert_eq!(sizes.count, proved_sizes.len() as u64);
        // A batch's proof is its envelope (the payload's length here); a proving job's is its
        // whole output (also the payload).
        assert_eq!(sizes.sum, proved_sizes.iter().sum::<u64>() as f64);
        let recent = observations.recent_proofs();
        assert_eq!(recent.len(), proved_sizes.len().min(RECENT_PROOFS));
        for r in &recent {
            assert_eq!(r.tenant, "t");
            match r.shard {
                Some(shard) => {
                    assert_eq!(shard, 7);
                    assert_eq!(r.height, Some(r.job));
                }
                None => assert_eq!(r.height, None),
            }
        }
        let statuses: Vec<_> = (1..=n as u64)
            .map(|i| scheduler.status(scheduler::JobId(i)).expect("status").state)
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == JobState::Done).count(),
            n - failed as usize
        );
    }
}
