//! Scheduler overhead: jobs per second placed, journaled and completed with no-op stages.
//!
//! Every job is one synced submit plus one commit per stage (each synced, or with
//! `sync_every_stage = false` only publish's), so the figure is bounded by the disk's fsync
//! rate; the stages themselves do nothing.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use epa_scheduler::{
    Config, Footprint, Job, JobKind, JobOptions, JobSpec, Scheduler, Stage, StageContext,
    StageExecutor, StageFailure, StageOutcome, Topology, WriteSet,
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
    // Placement on a synthetic two-socket, four-GPU machine (from its hwloc XML): half the
    // jobs are large proofs placed on GPUs, half stay on a node's CPUs.
    let xml =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/topologies/two-socket-4gpu.xml");
    let topology = Topology::from_xml_file(xml)
        .expect("the test topology loads")
        .0;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = Config {
        workers: 2,
        sync_every_stage: false,
        topology: Some(topology),
        gpu_min_bytes: 64 << 20,
        ..Config::default()
    };
    let scheduler =
        Scheduler::open(dir.path(), config, Arc::new(Noop)).expect("the scheduler opens");
    group.bench_function(
        BenchmarkId::new("proving-noop-placed", "2socket-4gpu"),
        |b| {
            b.iter(|| {
                for i in 0..JOBS {
                    let footprint = Footprint {
                        trace_len: if i % 2 == 0 { 1 << 17 } else { 1 << 10 },
                        columns: 64,
                        blowup: 8,
                    };
                    let options = JobOptions {
                        priority: 0,
                        footprint: Some(footprint),
                    };
                    scheduler
                        .submit_job(spec(i, JobKind::Proving), options, &WriteSet::new())
                        .expect("the queue has room");
                }
                assert!(scheduler.wait_idle(Duration::from_secs(60)));
            });
        },
    );
    group.finish();
    fairness();
}

fn spec(i: u64, kind: JobKind) -> JobSpec {
    JobSpec {
        tenant: format!("t{}", i % 2),
        kind,
        ordering_key: None,
        payload: vec![0; 64],
    }
}

/// Records which tenant each stage ran for.
struct Tenants(Mutex<Vec<String>>);

impl StageExecutor for Tenants {
    fn run(
        &self,
        _ctx: &StageContext<'_>,
        job: &Job,
        _stage: Stage,
        input: &[u8],
    ) -> Result<StageOutcome, StageFailure> {
        self.0.lock().expect("lock").push(job.tenant.clone());
        Ok(StageOutcome::new(input.to_vec()))
    }
}

/// Two tenants at 10:1 load with equal weights through one worker: the light tenant's share
/// of the stages run while it still had work queued (ideal: 50%).
fn fairness() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let exec = Arc::new(Tenants(Mutex::new(Vec::new())));
    let config = Config {
        workers: 1,
        sync_every_stage: false,
        topology: Some(Topology::single_node(1, 1 << 36)),
        ..Config::default()
    };
    let scheduler = Scheduler::open(dir.path(), config, exec.clone()).expect("the scheduler opens");
    for i in 0..1100u64 {
        let tenant = if i % 11 == 10 { "light" } else { "heavy" };
        let spec = JobSpec {
            tenant: tenant.into(),
            kind: JobKind::Proving,
            ordering_key: None,
            payload: vec![0; 64],
        };
        scheduler.submit(spec).expect("the queue has room");
    }
    assert!(scheduler.wait_idle(Duration::from_secs(120)));
    let order = exec.0.lock().expect("lock").clone();
    let last_light = order.iter().rposition(|t| t == "light").unwrap_or(0);
    let light = order[..=last_light]
        .iter()
        .filter(|t| *t == "light")
        .count();
    println!(
        "scheduler/fairness-10to1: light tenant got {light} of {} stages ({:.1}%) while it had work queued",
        last_light + 1,
        100.0 * light as f64 / (last_light + 1) as f64
    );
}

fn main() {
    // `criterion_group!` would generate an undocumented public function; this is its expansion.
    let mut c = Criterion::default().configure_from_args();
    overhead(&mut c);
    c.final_summary();
}
