//! Scheduler overhead: jobs per second placed, journaled and completed with no-op stages.
//!
//! Every job is one synced submit plus one commit per stage (each synced, or with
//! `sync_every_stage = false` only publish's), so the figure is bounded by the disk's fsync
//! rate; the stages themselves do nothing.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use epa_scheduler::{
    Config, Job, JobKind, JobSpec, Scheduler, Stage, StageContext, StageExecutor, StageFailure,
    StageOutcome,
};

/// Jobs submitted per iteration.
const JOBS: u64 = 200;

struct Noop;

impl StageExecutor for Noop {
    fn run(
        &self,
        _ctx: &StageContext<'_>,
        _job: &Job,
        _stage: Stage,
        input: &[u8],
    ) -> Result<StageOutcome, StageFailure> {
        Ok(StageOutcome::new(input.to_vec()))
    }
}

fn overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("scheduler");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(JOBS));
    let cases = [
        ("batch-noop", JobKind::Batch, true),
        ("batch-noop-sync-publish", JobKind::Batch, false),
        ("proving-noop", JobKind::Proving, true),
    ];
    for (name, kind, sync_every_stage) in cases {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = Config {
            workers: 2,
            sync_every_stage,
            ..Config::default()
        };
        let scheduler =
            Scheduler::open(dir.path(), config, Arc::new(Noop)).expect("the scheduler opens");
        group.bench_function(BenchmarkId::new(name, "2workers"), |b| {
            b.iter(|| {
                for i in 0..JOBS {
                    scheduler
                        .submit(JobSpec {
                            tenant: format!("t{}", i % 2),
                            kind,
                            ordering_key: Some(i % 4),
                            payload: vec![0; 64],
                        })
                        .expect("the queue has room");
                }
                assert!(scheduler.wait_idle(Duration::from_secs(60)));
            });
        });
    }
    group.finish();
}

fn main() {
    // `criterion_group!` would generate an undocumented public function; this is its expansion.
    let mut c = Criterion::default().configure_from_args();
    overhead(&mut c);
    c.final_summary();
}
