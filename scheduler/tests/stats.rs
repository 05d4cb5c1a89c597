//! The operators' read API: jobs in flight with their stage and progress, finished jobs and
//! placement decisions in bounded rings, per-node utilisation; checked against what the test
//! itself submitted, on random loads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use epa_scheduler::{
    Config, Job, JobId, JobKind, JobSpec, JobState, RECENT_JOBS, RECENT_PLACEMENTS, Scheduler,
    Stage, StageContext, StageExecutor, StageFailure, StageOutcome, Topology,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const WAIT: Duration = Duration::from_secs(20);

/// Stages wait until the gate opens; counts the stages running.
#[derive(Default)]
struct Gated {
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

impl Gated {
    fn open(&self) {
        self.state.lock().expect("lock").0 = true;
        self.changed.notify_all();
    }

    /// Waits until `n` stages are blocked at the gate.
    fn wait_blocked(&self, n: usize) -> bool {
        let deadline = Instant::now() + WAIT;
        let mut st = self.state.lock().expect("lock");
        while st.1 < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .expect("lock")
                .0;
        }
        true
    }
}

impl StageExecutor for Gated {
    fn run(
        &self,
        _ctx: &StageContext<'_>,
        _job: &Job,
        _stage: Stage,
        input: &[u8],
    ) -> Result<StageOutcome, StageFailure> {
        let mut st = self.state.lock().expect("lock");
        st.1 += 1;
        self.changed.notify_all();
        while !st.0 {
            st = self.changed.wait(st).expect("lock");
        }
        st.1 -= 1;
        Ok(StageOutcome::new(input.to_vec()))
    }
}

fn two_socket() -> Topology {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/topologies/two-socket-4gpu.xml");
    Topology::from_xml_file(path)
        .expect("the two-socket topology loads")
        .0
}

fn config(workers: usize) -> Config {
    Config {
        workers,
        topology: Some(two_socket()),
        sync_every_stage: false,
        ..Config::default()
    }
}

#[test]
fn jobs_in_flight_show_their_stage_progress_and_placement_then_finish() {
    let seed = rand::random::<u64>();
    eprintln!("seed {seed}");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let workers = rng.gen_range(2..5);
    let exec = Arc::new(Gated::default());
    let scheduler = Scheduler::open(dir.path(), config(workers), exec.clone()).expect("open");
    let n = rng.gen_range(workers + 1..workers + 8);
    let kinds = [JobKind::Batch, JobKind::Proving, JobKind::ProvingPublished];
    let mut submitted: BTreeMap<JobId, (String, JobKind)> = BTreeMap::new();
    for _ in 0..n {
        let tenant = format!("tenant-{}", rng.gen_range(0..3));
        let kind = kinds[rng.gen_range(0..kinds.len())];
        let id = scheduler
            .submit(JobSpec {
                tenant: tenant.clone(),
                kind,
                ordering_key: None,
                // One size: the placer then alternates the nodes, so every worker gets a job.
                payload: vec![7; 32],
            })
            .expect("submit");
        submitted.insert(id, (tenant, kind));
    }
    assert!(exec.wait_blocked(workers), "every worker runs a stage");

    let activity = scheduler.activity();
    let snap = scheduler.snapshot();
    let ids: Vec<JobId> = activity.in_flight.iter().map(|s| s.job.id).collect();
    assert_eq!(ids, submitted.keys().copied().collect::<Vec<_>>());
    let running: Vec<_> = activity
        .in_flight
        .iter()
        .filter(|s| matches!(s.state, JobState::Running(_)))
        .collect();
    assert_eq!(running.len(), workers);
    assert_eq!(snap.running, workers);
    for s in &activity.in_flight {
        let (tenant, kind) = &submitted[&s.job.id];
        assert_eq!((&s.job.tenant, s.job.kind), (tenant, *kind));
        assert!(s.completed.is_empty());
        assert_eq!(s.progress(), 0.0);
        match &s.state {
            JobState::Running(stage) => {
                assert_eq!(*stage, kind.stages()[0]);
                assert!(s.placement.is_some(), "a running job is placed");
            }
            JobState::Queued => {}
            other => panic!("job {} is {other:?} while in flight", s.job.id),
        }
    }
    // Per-node figures: busy workers per node add up to the running stages.
    assert_eq!(snap.nodes.iter().map(|n| n.running).sum::<usize>(), workers);
    assert_eq!(snap.nodes.iter().map(|n| n.workers).sum::<usize>(), workers);
    for node in &snap.nodes {
        let u = node.utilisation();
        assert!((0.0..=1.0).contains(&u));
        assert!((u - node.running as f64 / node.workers as f64).abs() < 1e-12);
    }
    // Every placed job has its decision in the ring, in order, with its tenant.
    let placed: Vec<JobId> = activity.placements.iter().map(|p| p.job).collect();
    assert!(placed.len() >= workers);
    assert_eq!(activity.placements_total, placed.len() as u64);
    for (i, p) in activity.placements.iter().enumerate() {
        assert_eq!(p.seq, i as u64 + 1);
        assert_eq!(p.tenant, submitted[&p.job].0);
        let status = activity
            .in_flight
            .iter()
            .find(|s| s.job.id == p.job)
            .expect("a placed job is in flight");
        assert_eq!(status.placement.as_ref(), Some(&p.record));
    }
    assert!(activity.finished.is_empty());

    exec.open();
    assert!(scheduler.wait_idle(WAIT));
    let activity = scheduler.activity();
    assert!(activity.in_flight.is_empty());
    assert_eq!(activity.placements_total, n as u64, "each job placed once");
    let mut finished: Vec<JobId> = activity.finished.iter().map(|s| s.job.id).collect();
    for s in &activity.finished {
        assert_eq!(s.state, JobState::Done);
        assert_eq!(s.progress(), 1.0);
        assert_eq!(s.completed, s.job.kind.stages());
    }
    finished.sort();
    assert_eq!(finished, submitted.keys().copied().collect::<Vec<_>>());
    let snap = scheduler.snapshot();
    assert!(
        snap.nodes
            .iter()
            .all(|n| n.running == 0 && n.utilisation() == 0.0)
    );
}

#[test]
fn the_rings_stay_bounded_and_keep_the_latest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Gated::default());
    exec.open();
    let scheduler = Scheduler::open(dir.path(), config(2), exec).expect("open");
    let n = RECENT_JOBS.max(RECENT_PLACEMENTS) + rand::thread_rng().gen_range(1..20);
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            scheduler
                .submit(JobSpec {
                    tenant: "t".into(),
                    kind: JobKind::ProvingPublished,
                    // One ordering key: publish is ordered, so jobs finish in submission order.
                    ordering_key: Some(1),
                    payload: vec![u8::try_from(i % 251).expect("below 251")],
                })
                .expect("submit"),
        );
        if i % 16 == 15 {
            assert!(scheduler.wait_idle(WAIT));
        }
    }
    assert!(scheduler.wait_idle(WAIT));
    let activity = scheduler.activity();
    assert_eq!(activity.finished.len(), RECENT_JOBS);
    assert_eq!(activity.placements.len(), RECENT_PLACEMENTS);
    assert_eq!(activity.placements_total, n as u64);
    let mut last: Vec<JobId> = activity.finished.iter().map(|s| s.job.id).collect();
    last.sort();
    assert_eq!(last, ids[n - RECENT_JOBS..].to_vec());
    let seqs: Vec<u64> = activity.placements.iter().map(|p| p.seq).collect();
    let want: Vec<u64> = (n - RECENT_PLACEMENTS + 1..=n).map(|s| s as u64).collect();
    assert_eq!(seqs, want);
}
