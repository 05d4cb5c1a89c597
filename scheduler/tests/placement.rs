//! Topology discovery through hwloc (synthetic and XML machines), placement on pure data, and
//! the scheduler's placement, admission control, fairness and GPU health end to end.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use epa_scheduler::topology::parse_sysfs_numa_node;
use epa_scheduler::{
    Budgets, Config, Footprint, GpuDevice, Job, JobId, JobKind, JobOptions, JobSpec, JobState,
    PlacementRecord, Placer, Scheduler, SchedulerError, Stage, StageContext, StageExecutor,
    StageFailure, StageOutcome, Target, Topology, WriteSet,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const WAIT: Duration = Duration::from_secs(20);
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn topology_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/topologies")
        .join(name)
}

fn two_socket() -> Topology {
    Topology::from_xml_file(topology_file("two-socket-4gpu.xml"))
        .expect("the two-socket topology loads")
        .0
}

fn uneven() -> Topology {
    Topology::from_xml_file(topology_file("uneven.xml"))
        .expect("the uneven topology loads")
        .0
}

#[test]
fn synthetic_two_sockets_have_disjoint_cores() {
    let (topology, _) =
        Topology::from_synthetic("pack:2 numa:1 core:16 pu:1").expect("synthetic topology");
    assert_eq!(topology.nodes.len(), 2);
    assert_eq!(topology.nodes[0].cpus, (0..16).collect::<Vec<_>>());
    assert_eq!(topology.nodes[1].cpus, (16..32).collect::<Vec<_>>());
    assert!(topology.gpus.is_empty(), "synthetic topologies have no I/O");
    assert!(topology.validate().is_ok());
    assert!(matches!(
        Topology::from_synthetic("pack:banana"),
        Err(SchedulerError::Topology { .. })
    ));
}

#[test]
fn xml_two_sockets_with_four_gpus() {
    let topology = two_socket();
    assert_eq!(topology.nodes.len(), 2);
    for (i, node) in topology.nodes.iter().enumerate() {
        assert_eq!(node.os_index, i);
        assert_eq!(node.cpus, (16 * i..16 * (i + 1)).collect::<Vec<_>>());
        assert_eq!(node.memory_bytes, 64 * GIB);
    }
    let gpus: Vec<(&str, Option<usize>)> = topology
        .gpus
        .iter()
        .map(|g| (g.pci_address.as_str(), g.node))
        .collect();
    assert_eq!(
        gpus,
        [
            ("0000:17:00.0", Some(0)),
            ("0000:31:00.0", Some(0)),
            ("0000:98:00.0", Some(1)),
            ("0000:b1:00.0", Some(1)),
        ]
    );
    assert!(topology.gpus.iter().all(|g| g.vendor_id == 0x10de));
    assert_eq!(topology.gpus_on(1).collect::<Vec<_>>(), [2, 3]);
}

#[test]
fn xml_uneven_machine_and_a_gpu_of_unknown_locality() {
    let topology = uneven();
    let cores: Vec<usize> = topology.nodes.iter().map(|n| n.cpus.len()).collect();
    assert_eq!(cores, [24, 8]);
    assert_eq!(topology.nodes[1].memory_bytes, 32 * GIB);
    // The network card (class 0x0200) is not a GPU; the VGA controller (0x0300) is.
    let gpus: Vec<(&str, Option<usize>)> = topology
        .gpus
        .iter()
        .map(|g| (g.pci_address.as_str(), g.node))
        .collect();
    assert_eq!(
        gpus,
        [
            ("0000:17:00.0", Some(0)),
            ("0000:31:00.0", Some(0)),
            ("0000:4b:00.0", Some(0)),
            ("0000:e0:00.0", None),
        ]
    );
}

#[test]
fn this_machine_is_discovered() {
    let (topology, _) = Topology::discover().expect("hwloc reads this machine");
    assert!(topology.validate().is_ok());
    assert!(topology.cpu_count() >= 1);
    let mut all: Vec<usize> = topology.nodes.iter().flat_map(|n| n.cpus.clone()).collect();
    let count = all.len();
    all.dedup();
    assert_eq!(all.len(), count, "a core belongs to one node");
}

#[test]
fn sysfs_numa_node_minus_one_means_any_node() {
    assert_eq!(parse_sysfs_numa_node("-1\n").expect("valid"), None);
    assert_eq!(parse_sysfs_numa_node("1\n").expect("valid"), Some(1));
    for bad in ["", "-2", "node0", "1.5"] {
        assert!(
            matches!(
                parse_sysfs_numa_node(bad),
                Err(SchedulerError::Topology { .. })
            ),
            "{bad:?} must be refused"
        );
    }
}

#[test]
fn footprint_estimate_counts_the_extended_trace_and_its_merkle_tree() {
    let mut rng = ChaCha20Rng::seed_from_u64(rand::random());
    for _ in 0..100 {
        let f = Footprint {
            trace_len: 1 << rng.gen_range(3..24),
            columns: rng.gen_range(1..300),
            blowup: 1 << rng.gen_range(1..5),
        };
        let rows = f.trace_len * u64::from(f.blowup);
        let expected =
            rows * u64::from(f.columns) * 8 + rows * 64 + f.trace_len * u64::from(f.columns) * 8;
        assert_eq!(f.memory_bytes(), expected);
        assert_eq!(f.host_bytes(), f.trace_len * u64::from(f.columns) * 8);
    }
    let absurd = Footprint {
        trace_len: u64::MAX,
        columns: u32::MAX,
        blowup: u32::MAX,
    };
    assert_eq!(
        absurd.memory_bytes(),
        u64::MAX,
        "saturates instead of wrapping"
    );
}

fn budgets(topology: &Topology, node: u64, gpu: u64, gpu_min: u64) -> Budgets {
    Budgets {
        node_bytes: vec![node; topology.nodes.len()],
        node_slots: vec![4; topology.nodes.len()],
        gpu_bytes: gpu,
        gpu_min_bytes: gpu_min,
    }
}

#[test]
fn large_jobs_go_to_a_gpu_with_cpu_stages_on_its_node_and_small_ones_stay_on_cpus() {
    let topology = two_socket();
    let mut placer = Placer::new(&topology, &budgets(&topology, 4 * GIB, 2 * GIB, 100 * MIB));
    let small = placer.choose(MIB, MIB).expect("room");
    assert_eq!(small.gpu, None);
    assert_eq!(small.reason, None);
    placer.reserve(&small);
    // Four large jobs spread over the four GPUs, each with its CPU stages on the GPU's node.
    let mut used = Vec::new();
    for _ in 0..4 {
        let p = placer.choose(GIB + MIB, 64 * MIB).expect("room");
        let g = p.gpu.expect("a large job goes to a GPU");
        assert_eq!(topology.gpus[g].node, Some(p.node));
        assert_eq!(p.reason, None);
        placer.reserve(&p);
        used.push(g);
    }
    used.sort_unstable();
    assert_eq!(used, [0, 1, 2, 3]);
    // No GPU has room for a fifth: it waits rather than over-commit.
    assert_eq!(placer.choose(GIB + MIB, 64 * MIB), None);
    assert_eq!(
        Placer::target(&placer.choose(MIB, MIB).expect("cpu room"), true),
        Target::Node(1),
        "a small job goes to the node with the most free memory"
    );
}

#[test]
fn a_job_straddles_nodes_only_with_a_reason() {
    let topology = uneven();
    let mut placer = Placer::new(&topology, &budgets(&topology, GIB, 4 * GIB, 100 * MIB));
    // Fill node 0 so that its GPUs' jobs must put their trace on node 1.
    let filler = PlacementRecord {
        node: 0,
        gpu: None,
        node_bytes: GIB,
        gpu_bytes: 0,
        reason: None,
    };
    placer.reserve(&filler);
    let p = placer.choose(2 * GIB, 256 * MIB).expect("room on node 1");
    assert_eq!(p.node, 1);
    let reason = p.reason.expect("a straddling job says why");
    assert!(
        reason.contains("no known NUMA node") || reason.contains("no memory left"),
        "{reason}"
    );
    placer.release(&filler);
    // The GPU of unknown locality: whatever node its trace lands on, the record says why.
    for g in [0, 1, 2] {
        placer.gpu_failed(g, Instant::now() + Duration::from_secs(60));
    }
    let p = placer.choose(2 * GIB, 256 * MIB).expect("the last GPU");
    assert_eq!(p.gpu, Some(3));
    assert!(p.reason.expect("reason").contains("no known NUMA node"));
}

#[test]
fn admission_refuses_what_fits_nowhere_naming_the_limit() {
    let topology = two_socket();
    let placer = Placer::new(&topology, &budgets(&topology, GIB, 2 * GIB, 100 * MIB));
    assert!(placer.admit(GIB, GIB).is_ok());
    assert!(placer.admit(2 * GIB, 100 * MIB).is_ok(), "fits a GPU");
    match placer.admit(3 * GIB, 100 * MIB) {
        Err(SchedulerError::TooLarge {
            needed,
            limit,
            budget,
        }) => {
            assert_eq!((needed, limit, budget), (3 * GIB, "GPU memory", 2 * GIB));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let cpu_only = Topology::single_node(4, 8 * GIB);
    let placer = Placer::new(&cpu_only, &budgets(&cpu_only, GIB, 2 * GIB, 100 * MIB));
    assert!(matches!(
        placer.admit(GIB + 1, GIB + 1),
        Err(SchedulerError::TooLarge {
            limit: "node memory",
            ..
        })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever jobs arrive and leave, no node or GPU is ever reserved past its budget, and
    /// releasing everything gives every byte back.
    #[test]
    fn placement_never_over_commits(ops in prop::collection::vec((any::<bool>(), 1u64..3000, 1u64..1500), 1..120)) {
        let topology = two_socket();
        let node_budget = 4000 * MIB;
        let gpu_budget = 3000 * MIB;
        let mut placer = Placer::new(&topology, &budgets(&topology, node_budget, gpu_budget, 1000 * MIB));
        let mut held: Vec<PlacementRecord> = Vec::new();
        for (place, total, host) in ops {
            if place || held.is_empty() {
                let (total, host) = (total * MIB, host.min(total) * MIB);
                if let Some(p) = placer.choose(total, host) {
                    placer.reserve(&p);
                    held.push(p);
                }
            } else {
                let p = held.swap_remove(usize::try_from(total).expect("small") % held.len());
                placer.release(&p);
            }
            for view in placer.node_views(&topology, &[]) {
                prop_assert!(view.memory_used <= node_budget);
            }
            for view in placer.gpu_views(&[]) {
                prop_assert!(view.memory_used <= gpu_budget);
            }
        }
        for p in held.drain(..) {
            placer.release(&p);
        }
        prop_assert!(placer.node_views(&topology, &[]).iter().all(|v| v.memory_used == 0));
        prop_assert!(placer.gpu_views(&[]).iter().all(|v| v.memory_used == 0));
    }
}

/// One recorded stage run: job, tenant, stage, where it ran, the job's placement.
type Run = (JobId, String, Stage, Target, Option<PlacementRecord>);

/// A test executor: records where every stage ran, can hold the first stage at a gate, fails
/// GPU stages on chosen devices, and checks the memory reserved by concurrently placed jobs.
#[derive(Default)]
struct Recorder {
    runs: Mutex<Vec<Run>>,
    gate_closed: Mutex<bool>,
    gate: Condvar,
    held: AtomicUsize,
    /// GPUs whose stages fail with a device error.
    failing: Mutex<Vec<usize>>,
    probes: Mutex<Vec<usize>>,
    probe_passes: Mutex<bool>,
}

impl Recorder {
    fn gated() -> Self {
        Self {
            gate_closed: Mutex::new(true),
            ..Self::default()
        }
    }

    fn wait_held(&self) {
        let deadline = Instant::now() + WAIT;
        while self.held.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "no stage reached the gate");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn open(&self) {
        *self.gate_closed.lock().expect("lock") = false;
        self.gate.notify_all();
    }

    fn runs(&self) -> Vec<Run> {
        self.runs.lock().expect("lock").clone()
    }
}

impl StageExecutor for Recorder {
    fn run(
        &self,
        ctx: &StageContext<'_>,
        job: &Job,
        stage: Stage,
        input: &[u8],
    ) -> Result<StageOutcome, StageFailure> {
        let mut closed = self.gate_closed.lock().expect("lock");
        if *closed {
            self.held.fetch_add(1, Ordering::SeqCst);
            while *closed {
                closed = self.gate.wait(closed).expect("lock");
            }
        }
        drop(closed);
        if let Target::Gpu(g) = ctx.target()
            && self.failing.lock().expect("lock").contains(&g)
        {
            return Err(StageFailure::DeviceFailed(format!("GPU {g} lost")));
        }
        self.runs.lock().expect("lock").push((
            job.id,
            job.tenant.clone(),
            stage,
            ctx.target(),
            ctx.placement().cloned(),
        ));
        Ok(StageOutcome::new(input.to_vec()))
    }

    fn probe_device(&self, gpu: usize, _device: &GpuDevice) -> bool {
        self.probes.lock().expect("lock").push(gpu);
        *self.probe_passes.lock().expect("lock")
    }
}

fn base_config(workers: usize, topology: Topology) -> Config {
    Config {
        workers,
        topology: Some(topology),
        sync_every_stage: false,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        ..Config::default()
    }
}

fn spec(tenant: &str, kind: JobKind, key: Option<u64>) -> JobSpec {
    JobSpec {
        tenant: tenant.into(),
        kind,
        ordering_key: key,
        payload: vec![1, 2, 3],
    }
}

fn large(trace_len: u64) -> JobOptions {
    JobOptions {
        priority: 0,
        footprint: Some(Footprint {
            trace_len,
            columns: 64,
            blowup: 8,
        }),
    }
}

#[test]
fn a_gpu_job_runs_its_cpu_stages_on_the_gpus_node_and_keeps_its_placement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Recorder::default());
    let cfg = Config {
        gpu_min_bytes: 64 * MIB,
        ..base_config(4, two_socket())
    };
    let scheduler = Scheduler::open(dir.path(), cfg, exec.clone()).expect("open");
    let mut rng = ChaCha20Rng::seed_from_u64(rand::random());
    let mut ids = Vec::new();
    for i in 0..8u64 {
        let options = large(1 << rng.gen_range(17..20));
        let id = scheduler
            .submit_job(
                spec("t", JobKind::Batch, Some(i % 3)),
                options,
                &WriteSet::new(),
            )
            .expect("submit");
        ids.push(id);
    }
    let small = scheduler
        .submit(spec("t", JobKind::Batch, None))
        .expect("submit");
    assert!(scheduler.wait_idle(WAIT));
    let topology = scheduler.topology().clone();
    for &id in &ids {
        let status = scheduler.status(id).expect("status");
        assert_eq!(status.state, JobState::Done);
        let placement = status.placement.expect("the record keeps the placement");
        let g = placement.gpu.expect("a large job is proved on a GPU");
        assert_eq!(topology.gpus[g].node, Some(placement.node));
        for (_, _, stage, target, p) in exec.runs().into_iter().filter(|r| r.0 == id) {
            assert_eq!(
                p.as_ref(),
                Some(&placement),
                "one placement for the whole job"
            );
            let expected = if stage == Stage::Prove {
                Target::Gpu(g)
            } else {
                Target::Node(placement.node)
            };
            assert_eq!(target, expected, "stage {stage} of job {id}");
        }
    }
    let small = scheduler
        .status(small)
        .expect("status")
        .placement
        .expect("placed");
    assert_eq!(small.gpu, None);
    let snap = scheduler.snapshot();
    assert_eq!(snap.nodes.len(), 2);
    assert_eq!(snap.gpus.len(), 4);
    assert_eq!(snap.workers, 4);
    assert_eq!(snap.gpus.iter().map(|g| g.placed).sum::<u64>(), 8);
    assert!(
        snap.nodes.iter().all(|n| n.memory_used == 0),
        "all released"
    );
    assert!(snap.placements.is_empty());
}

#[test]
fn a_burst_of_large_jobs_never_over_commits_and_all_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Recorder::default());
    let node_budget = 512 * MIB;
    let gpu_budget = 768 * MIB;
    let cfg = Config {
        node_memory_budget: Some(node_budget),
        gpu_memory_budget: gpu_budget,
        gpu_min_bytes: 200 * MIB,
        ..base_config(4, two_socket())
    };
    let scheduler = Scheduler::open(dir.path(), cfg, exec.clone()).expect("open");
    // Too large for any GPU: refused at once, naming the limit; nothing journaled.
    let refused = scheduler.submit_job(
        spec("t", JobKind::Proving, None),
        large(1 << 22),
        &WriteSet::new(),
    );
    assert!(matches!(
        refused,
        Err(SchedulerError::TooLarge {
            limit: "GPU memory",
            ..
        })
    ));
    let mut rng = ChaCha20Rng::seed_from_u64(rand::random());
    let mut ids = Vec::new();
    for i in 0..40u64 {
        // 2^17 rows x 64 columns x 8 blowup: 640 MiB (GPU); 2^15: 160 MiB (CPU).
        let options = large(if rng.gen_bool(0.5) { 1 << 17 } else { 1 << 15 });
        let kind = if i % 2 == 0 {
            JobKind::Batch
        } else {
            JobKind::ProvingPublished
        };
        ids.push(
            scheduler
                .submit_job(spec("t", kind, Some(i % 5)), options, &WriteSet::new())
                .expect("fits later, so it is admitted"),
        );
        if i % 8 == 0 {
            let snap = scheduler.snapshot();
            assert!(snap.nodes.iter().all(|n| n.memory_used <= node_budget));
            assert!(snap.gpus.iter().all(|g| g.memory_used <= gpu_budget));
        }
    }
    assert!(scheduler.wait_idle(WAIT));
    for id in ids {
        assert_eq!(scheduler.status(id).expect("status").state, JobState::Done);
    }
    let snap = scheduler.snapshot();
    for n in &snap.nodes {
        assert!(n.memory_peak <= node_budget, "node peak {}", n.memory_peak);
        assert!(n.memory_peak > 0);
    }
    let gpu_job = large(1 << 17).footprint.expect("set").memory_bytes();
    for g in &snap.gpus {
        assert!(g.memory_peak <= gpu_budget, "GPU peak {}", g.memory_peak);
        assert!(g.memory_peak <= gpu_job, "one large job per GPU at a time");
    }
    // Every reserved byte was checked against budgets the runs agree with.
    let runs = exec.runs();
    assert!(runs.iter().all(|r| r.4.is_some()));
}

#[test]
fn a_failing_gpu_leaves_rotation_and_its_jobs_move_then_it_is_probed_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Recorder::default());
    exec.failing.lock().expect("lock").push(0);
    let cfg = Config {
        gpu_min_bytes: 64 * MIB,
        gpu_probe_interval: Duration::from_millis(300),
        ..base_config(2, two_socket())
    };
    let scheduler = Scheduler::open(dir.path(), cfg, exec.clone()).expect("open");
    let ids: Vec<JobId> = (0..12)
        .map(|_| {
            scheduler
                .submit_job(
                    spec("t", JobKind::Proving, None),
                    large(1 << 17),
                    &WriteSet::new(),
                )
                .expect("submit")
        })
        .collect();
    assert!(scheduler.wait_idle(WAIT));
    for &id in &ids {
        let status = scheduler.status(id).expect("status");
        assert_eq!(status.state, JobState::Done);
        assert_eq!(status.attempts, 0, "a device failure is not an attempt");
        let g = status.placement.expect("placed").gpu.expect("on a GPU");
        assert_ne!(g, 0, "job {id} finished on the failed GPU");
    }
    let snap = scheduler.snapshot();
    assert!(snap.gpus[0].failures >= 1);
    assert!(!snap.gpus[0].healthy, "probe interval not over yet");
    assert!(snap.warnings.iter().any(|w| w.contains("0000:17:00.0")));
    // The probe fails: it stays out; then the device recovers and the probe brings it back.
    let deadline = Instant::now() + WAIT;
    while exec.probes.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "the failed GPU was never probed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!scheduler.snapshot().gpus[0].healthy);
    exec.failing.lock().expect("lock").clear();
    *exec.probe_passes.lock().expect("lock") = true;
    while !scheduler.snapshot().gpus[0].healthy {
        assert!(
            Instant::now() < deadline,
            "the recovered GPU never came back"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn with_its_only_gpu_failing_a_large_job_is_proved_on_the_cpu() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Recorder::default());
    exec.failing.lock().expect("lock").push(0);
    let mut topology = Topology::single_node(2, 64 * GIB);
    topology.gpus.push(GpuDevice {
        pci_address: "0000:01:00.0".into(),
        vendor_id: 0x10de,
        device_id: 0x2330,
        node: None,
        memory_bytes: 0,
    });
    let cfg = Config {
        gpu_min_bytes: 64 * MIB,
        node_memory_budget: Some(8 * GIB),
        gpu_probe_interval: Duration::from_secs(60),
        ..base_config(2, topology)
    };
    let scheduler = Scheduler::open(dir.path(), cfg, exec.clone()).expect("open");
    let id = scheduler
        .submit_job(
            spec("t", JobKind::Batch, Some(1)),
            large(1 << 17),
            &WriteSet::new(),
        )
        .expect("submit");
    let status = scheduler.wait(id, WAIT).expect("status");
    assert_eq!(status.state, JobState::Done);
    assert_eq!(status.placement.expect("placed").gpu, None);
    let prove = exec
        .runs()
        .into_iter()
        .find(|r| r.0 == id && r.2 == Stage::Prove)
        .expect("proved");
    assert_eq!(prove.3, Target::Node(0));
}

/// Drives two tenants at 10:1 load through one worker and returns the order of tenants.
fn drive_two_tenants(weights: BTreeMap<String, u32>) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Recorder::gated());
    let cfg = Config {
        tenant_weights: weights,
        ..base_config(1, Topology::single_node(1, 64 * GIB))
    };
    let scheduler = Scheduler::open(dir.path(), cfg, exec.clone()).expect("open");
    let blocker = scheduler
        .submit(spec("z", JobKind::Proving, None))
        .expect("submit");
    exec.wait_held();
    for i in 0..110 {
        let tenant = if i % 11 == 10 { "light" } else { "heavy" };
        scheduler
            .submit(spec(tenant, JobKind::Proving, None))
            .expect("submit");
    }
    exec.open();
    assert!(scheduler.wait_idle(WAIT));
    exec.runs()
        .into_iter()
        .filter(|r| r.0 != blocker)
        .map(|r| r.1)
        .collect()
}

#[test]
fn two_tenants_at_ten_to_one_load_share_by_weight_without_starvation() {
    // Equal weights: while both have work, the light tenant gets half the picks.
    let order = drive_two_tenants(BTreeMap::new());
    assert_eq!(order.len(), 110);
    let first: Vec<&String> = order.iter().take(20).collect();
    let light = first.iter().filter(|t| t.as_str() == "light").count();
    assert!(
        (9..=11).contains(&light),
        "light got {light} of the first 20: {order:?}"
    );
    let last_light = order.iter().rposition(|t| t == "light").expect("light ran");
    assert!(
        last_light < 22,
        "light's last job ran at {last_light}: starved"
    );
    // Weights 3:1 for the heavy tenant: a quarter for the light one while both have work.
    let order = drive_two_tenants([("heavy".to_owned(), 3)].into());
    let first: Vec<&String> = order.iter().take(40).collect();
    let light = first.iter().filter(|t| t.as_str() == "light").count();
    assert!(
        (9..=11).contains(&light),
        "light got {light} of the first 40: {order:?}"
    );
}

#[test]
fn priorities_order_jobs_inside_a_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Recorder::gated());
    let scheduler = Scheduler::open(
        dir.path(),
        base_config(1, Topology::single_node(1, 64 * GIB)),
        exec.clone(),
    )
    .expect("open");
    let blocker = scheduler
        .submit(spec("t", JobKind::Proving, None))
        .expect("submit");
    exec.wait_held();
    let mut rng = ChaCha20Rng::seed_from_u64(rand::random());
    let mut submitted: Vec<(u8, JobId)> = Vec::new();
    for _ in 0..30 {
        let priority = rng.gen_range(0..4u8);
        let options = JobOptions {
            priority,
            footprint: None,
        };
        let id = scheduler
            .submit_job(spec("t", JobKind::Proving, None), options, &WriteSet::new())
            .expect("submit");
        assert_eq!(scheduler.status(id).expect("status").priority, priority);
        submitted.push((priority, id));
    }
    exec.open();
    assert!(scheduler.wait_idle(WAIT));
    let ran: Vec<JobId> = exec
        .runs()
        .into_iter()
        .map(|r| r.0)
        .filter(|id| *id != blocker)
        .collect();
    submitted.sort_by_key(|(p, id)| (std::cmp::Reverse(*p), *id));
    let expected: Vec<JobId> = submitted.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        ran, expected,
        "highest priority first, then submission order"
    );
}

#[test]
fn reserved_capacity_keeps_a_worker_for_a_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Recorder::gated());
    let cfg = Config {
        tenant_reserved_workers: [("vip".to_owned(), 1)].into(),
        tenant_weights: [("bulk".to_owned(), 100)].into(),
        ..base_config(2, Topology::single_node(2, 64 * GIB))
    };
    let scheduler = Scheduler::open(dir.path(), cfg, exec.clone()).expect("open");
    let vip = scheduler
        .submit(spec("vip", JobKind::Proving, None))
        .expect("submit");
    exec.wait_held();
    // The vip job holds one worker at the gate; bulk floods the queue.
    let bulk: Vec<JobId> = (0..6)
        .map(|_| {
            scheduler
                .submit(spec("bulk", JobKind::Proving, None))
                .expect("submit")
        })
        .collect();
    // A second vip job: bulk may not take the last worker while vip waits for its reserve...
    let vip2 = scheduler
        .submit(spec("vip", JobKind::Proving, None))
        .expect("submit");
    exec.open();
    assert!(scheduler.wait_idle(WAIT));
    let ran: Vec<JobId> = exec.runs().into_iter().map(|r| r.0).collect();
    let pos = |id: JobId| ran.iter().position(|r| *r == id).expect("ran");
    // ...so with weight 100 for bulk, vip's second job still runs before most of bulk.
    assert!(pos(vip) < 2);
    let bulk_before = bulk.iter().filter(|b| pos(**b) < pos(vip2)).count();
    assert!(
        bulk_before <= 2,
        "{bulk_before} bulk jobs ran before vip's second: {ran:?}"
    );
}

/// Writes a file under `root`, creating its directories.
fn put(root: &std::path::Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("a file path has a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A fake `/sys` and `/proc`: an AMD GPU on node 1 with its VRAM size, an NVIDIA GPU with
/// `numa_node` -1 but a `local_cpulist` inside node 0 and its memory in the driver's procfs
/// file, a GPU with garbage locality and no memory file, and a bridge that is no GPU.
fn fake_sysfs(rng: &mut impl Rng) -> (tempfile::TempDir, u64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let amd_bytes = rng.gen_range(1..=256u64) * GIB;
    let nvidia_mib = rng.gen_range(1024..=196_608u64);
    let d = "sys/bus/pci/devices";
    put(root, &format!("{d}/0000:41:00.0/class"), "0x030000\n");
    put(root, &format!("{d}/0000:41:00.0/vendor"), "0x1002\n");
    put(root, &format!("{d}/0000:41:00.0/device"), "0x740f\n");
    put(root, &format!("{d}/0000:41:00.0/numa_node"), "1\n");
    put(root, &format!("{d}/0000:41:00.0/local_cpulist"), "16-31\n");
    put(
        root,
        &format!("{d}/0000:41:00.0/mem_info_vram_total"),
        &format!("{amd_bytes}\n"),
    );
    put(root, &format!("{d}/0000:01:00.0/class"), "0x030200\n");
    put(root, &format!("{d}/0000:01:00.0/vendor"), "0x10de\n");
    put(root, &format!("{d}/0000:01:00.0/device"), "0x2330\n");
    put(root, &format!("{d}/0000:01:00.0/numa_node"), "-1\n");
    put(
        root,
        &format!("{d}/0000:01:00.0/local_cpulist"),
        "0-3,8-15\n",
    );
    put(
        root,
        "proc/driver/nvidia/gpus/0000:01:00.0/information",
        &format!("Model: \t\t NVIDIA H100\nVideo Memory: \t {nvidia_mib} MiB\nBus Type: \t PCIe\n"),
    );
    put(root, &format!("{d}/0000:81:00.0/class"), "0x038000\n");
    put(root, &format!("{d}/0000:81:00.0/numa_node"), "banana\n");
    put(root, &format!("{d}/0000:81:00.0/local_cpulist"), "7-3\n");
    put(root, &format!("{d}/0000:00:1f.0/class"), "0x060100\n");
    put(root, &format!("{d}/0000:00:1f.0/numa_node"), "0\n");
    (dir, amd_bytes, nvidia_mib << 20)
}

#[test]
fn sysfs_gives_gpu_memory_and_locality_and_becomes_the_admission_budget() {
    let mut rng = ChaCha20Rng::seed_from_u64(rand::random());
    let (dir, amd_bytes, nvidia_bytes) = fake_sysfs(&mut rng);
    let gpus =
        epa_scheduler::topology::sysfs_gpus(&dir.path().join("sys"), &dir.path().join("proc"))
            .expect("the fake tree lists");
    let addresses: Vec<&str> = gpus.iter().map(|g| g.pci_address.as_str()).collect();
    assert_eq!(addresses, ["0000:01:00.0", "0000:41:00.0", "0000:81:00.0"]);
    assert_eq!((gpus[0].vendor_id, gpus[0].device_id), (0x10de, 0x2330));
    assert_eq!(gpus[0].numa_node, None, "-1 is unknown");
    assert_eq!(gpus[0].memory_bytes, nvidia_bytes);
    assert_eq!(gpus[1].numa_node, Some(1));
    assert_eq!(gpus[1].local_cpus, (16..32).collect::<Vec<_>>());
    assert_eq!(gpus[1].memory_bytes, amd_bytes);
    assert_eq!((gpus[2].numa_node, gpus[2].memory_bytes), (None, 0));
    assert!(
        gpus[2].local_cpus.is_empty(),
        "a malformed cpulist is unknown"
    );

    // Merged into a two-socket machine without I/O: the -1 device is placed by its cpulist.
    let (mut topology, _) =
        Topology::from_synthetic("pack:2 numa:1 core:16 pu:1").expect("synthetic topology");
    topology.merge_sysfs(&gpus);
    let nodes: Vec<Option<usize>> = topology.gpus.iter().map(|g| g.node).collect();
    assert_eq!(nodes, [Some(0), Some(1), None]);
    assert!(topology.validate().is_ok());
    // A probed backend fills in the memory sysfs did not state, never overrides it.
    assert!(topology.set_gpu_memory("0000:81:00.0", 3 * GIB));
    assert!(topology.set_gpu_memory("0000:41:00.0", 1));
    assert!(!topology.set_gpu_memory("0000:99:00.0", 1));
    let memory: Vec<u64> = topology.gpus.iter().map(|g| g.memory_bytes).collect();
    assert_eq!(memory, [nvidia_bytes, amd_bytes, 3 * GIB]);

    // Budget 0 ("80% of the device"): each GPU admits up to 80% of its own memory.
    let placer = Placer::new(&topology, &budgets(&topology, u64::MAX / 4, 0, MIB));
    let views = placer.gpu_views(&[0, 0, 0]);
    for (view, gpu) in views.iter().zip(&topology.gpus) {
        assert_eq!(
            view.memory_budget,
            gpu.memory_bytes / 5 * 4,
            "{}",
            gpu.pci_address
        );
    }
    // A configured budget is capped at the device's memory.
    let configured = 2 * GIB;
    let placer = Placer::new(
        &topology,
        &budgets(&topology, u64::MAX / 4, configured, MIB),
    );
    for (view, gpu) in placer.gpu_views(&[0, 0, 0]).iter().zip(&topology.gpus) {
        assert_eq!(view.memory_budget, configured.min(gpu.memory_bytes));
    }
    assert_eq!(
        epa_scheduler::gpu_budget(0, 0),
        epa_scheduler::UNKNOWN_GPU_BUDGET
    );
    // And a job larger than the smallest GPU's 80% lands on a larger one or waits.
    let mut placer = Placer::new(&topology, &budgets(&topology, u64::MAX / 4, 0, MIB));
    let largest = views
        .iter()
        .map(|v| v.memory_budget)
        .max()
        .expect("three GPUs");
    let p = placer.choose(largest, MIB).expect("fits the largest GPU");
    assert_eq!(views[p.gpu.expect("a GPU job")].memory_budget, largest);
    placer.reserve(&p);
    assert_eq!(
        placer.choose(largest + 1, MIB).and_then(|p| p.gpu),
        None,
        "fits no GPU"
    );
}

#[test]
fn a_missing_sysfs_tree_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        epa_scheduler::topology::sysfs_gpus(&dir.path().join("nothing"), dir.path()),
        Err(SchedulerError::Topology { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `parse_cpulist` expands what a naive reading of random ranges gives.
    #[test]
    fn cpulists_parse_like_their_ranges(ranges in prop::collection::vec((0usize..300, 0usize..20), 0..8)) {
        let text = ranges
            .iter()
            .map(|(lo, len)| if *len == 0 { lo.to_string() } else { format!("{lo}-{}", lo + len) })
            .collect::<Vec<_>>()
            .join(",");
        let mut want: Vec<usize> = ranges.iter().flat_map(|(lo, len)| *lo..=lo + len).collect();
        want.sort_unstable();
        want.dedup();
        prop_assert_eq!(epa_scheduler::topology::parse_cpulist(&format!("{text}\n")), Some(want));
    }
}

#[test]
fn the_bind_policy_keeps_only_the_listed_nodes() {
    let topology = two_socket();
    let only_one = topology
        .restricted_to(&[topology.nodes[1].os_index])
        .expect("node exists");
    assert_eq!(only_one.nodes, vec![topology.nodes[1].clone()]);
    assert_eq!(
        only_one.gpus.len(),
        topology.gpus.len(),
        "every GPU is still driven"
    );
    assert!(only_one.gpus.iter().all(|g| g.node == Some(0)));
    assert!(only_one.validate().is_ok());
    assert!(matches!(
        topology.restricted_to(&[7]),
        Err(SchedulerError::InvalidConfig {
            field: "numa_nodes",
            ..
        })
    ));
    // The scheduler builds pools only on the bound node.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config {
        numa_nodes: Some(vec![topology.nodes[1].os_index]),
        ..base_config(4, topology.clone())
    };
    let scheduler = Scheduler::open(dir.path(), cfg, Arc::new(Recorder::default())).expect("open");
    let snap = scheduler.snapshot();
    assert_eq!(snap.nodes.len(), 1);
    assert_eq!(snap.nodes[0].os_index, topology.nodes[1].os_index);
    assert_eq!(snap.nodes[0].workers, 4);
    let id = scheduler
        .submit(spec("a", JobKind::Proving, None))
        .expect("submit");
    assert_eq!(
        scheduler.wait(id, WAIT).expect("status").state,
        JobState::Done
    );
}

#[test]
fn a_tenant_queue_limit_replaces_the_default_for_that_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(Recorder::gated());
    let limit = rand::thread_rng().gen_range(1..5usize);
    let cfg = Config {
        max_queued_jobs_per_tenant: 8,
        tenant_max_queued_jobs: [("small".to_string(), limit)].into(),
        ..base_config(1, Topology::single_node(1, 64 * GIB))
    };
    let scheduler = Scheduler::open(dir.path(), cfg, exec.clone()).expect("open");
    for _ in 0..limit {
        scheduler
            .submit(spec("small", JobKind::Proving, None))
            .expect("under the limit");
    }
    match scheduler.submit(spec("small", JobKind::Proving, None)) {
        Err(SchedulerError::Busy {
            max_jobs,
            queued_jobs,
            ..
        }) => {
            assert_eq!((max_jobs, queued_jobs), (limit, limit));
        }
        other => panic!("expected Busy at {limit} jobs, got {other:?}"),
    }
    for _ in 0..8 {
        scheduler
            .submit(spec("other", JobKind::Proving, None))
            .expect("the default limit");
    }
    assert!(matches!(
        scheduler.submit(spec("other", JobKind::Proving, None)),
        Err(SchedulerError::Busy { max_jobs: 8, .. })
    ));
    exec.open();
    assert!(scheduler.wait_idle(WAIT));
}
