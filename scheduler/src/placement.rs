//! Placement on pure data: memory estimates, per-node and per-GPU budgets, GPU health, and
//! the record of where a job runs.
//!
//! [`Placer`] knows the topology's nodes and GPUs, their memory budgets, what is reserved on
//! each and which GPUs are healthy; it decides where a job goes and never over-commits a
//! budget. The scheduler calls it under its lock; tests drive it directly.

use std::time::{Duration, Instant};

use crate::SchedulerError;
use crate::topology::Topology;

/// Bytes of one Goldilocks field element.
const FELT_BYTES: u64 = 8;
/// Bytes of one Merkle tree node (an `Rp64_256` digest: four field elements).
const DIGEST_BYTES: u64 = 32;

/// What a proof will need, from which its memory is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Footprint {
    /// Rows of the execution trace.
    pub trace_len: u64,
    /// Columns of the execution trace (main and auxiliary).
    pub columns: u32,
    /// The low-degree extension's blowup factor.
    pub blowup: u32,
}

impl Footprint {
    /// Bytes of the trace itself on the host (`trace_len x columns x 8`): the part the CPU
    /// stages build on the job's node.
    pub fn host_bytes(&self) -> u64 {
        self.trace_len
            .saturating_mul(u64::from(self.columns))
            .saturating_mul(FELT_BYTES)
    }

    /// The estimate of the proof's working memory: the extended trace
    /// (`trace_len x columns x blowup x 8` bytes) plus its Merkle tree (two digests per
    /// extended row: the leaves and the inner nodes) plus the trace itself. Saturates rather
    /// than overflows, so an absurd footprint is refused as too large.
    pub fn memory_bytes(&self) -> u64 {
        let lde_rows = self.trace_len.saturating_mul(u64::from(self.blowup));
        let lde = lde_rows
            .saturating_mul(u64::from(self.columns))
            .saturating_mul(FELT_BYTES);
        let merkle = lde_rows.saturating_mul(2 * DIGEST_BYTES);
        lde.saturating_add(merkle).saturating_add(self.host_bytes())
    }
}

/// Submission options besides the [`JobSpec`](crate::JobSpec).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobOptions {
    /// Priority inside the tenant's queue: higher runs first; equal priorities run in
    /// submission order. Tenants stay fair to each other whatever their priorities.
    pub priority: u8,
    /// The proof's footprint, for admission control and placement; `None` estimates the job
    /// by its payload size (a small job that stays on one node's CPUs).
    pub footprint: Option<Footprint>,
}

impl JobOptions {
    /// The memory estimate `(total, host)` of a job with `payload_len` bytes of payload.
    pub fn estimate(&self, payload_len: u64) -> (u64, u64) {
        match self.footprint {
            Some(f) => (f.memory_bytes(), f.host_bytes()),
            None => (payload_len, payload_len),
        }
    }
}

/// Where a job runs: the node of its CPU stages and, for a large proof, the GPU that proves
/// it, with the memory reserved on each. Kept with the job's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRecord {
    /// Index into [`Topology::nodes`] of the node that runs the job's CPU stages.
    pub node: usize,
    /// Index into [`Topology::gpus`] of the GPU that runs its prove stage, if any.
    pub gpu: Option<usize>,
    /// Bytes reserved on the node.
    pub node_bytes: u64,
    /// Bytes reserved on the GPU.
    pub gpu_bytes: u64,
    /// Why the job straddles nodes (its CPU stages are not on its GPU's local node); `None`
    /// when it does not.
    pub reason: Option<String>,
}

/// Where one stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The CPU pool of the node with this index.
    Node(usize),
    /// The driver thread of the GPU with this index.
    Gpu(usize),
}

/// The memory budget of a GPU with `device_memory` bytes (0: unknown) when `configured`
/// bytes are configured (0: 80% of the device): the configured budget capped at the device's
/// memory, or 80% of the device, or [`UNKNOWN_GPU_BUDGET`] when neither is known.
pub fn gpu_budget(configured: u64, device_memory: u64) -> u64 {
    match (configured, device_memory) {
        (0, 0) => UNKNOWN_GPU_BUDGET,
        (0, m) => m / 5 * 4,
        (c, 0) => c,
        (c, m) => c.min(m),
    }
}

/// The budget of a GPU whose memory is not known and for which no budget is configured.
pub const UNKNOWN_GPU_BUDGET: u64 = 8 << 30;

/// Budgets and thresholds of a [`Placer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budgets {
    /// Memory budget of each node, by node index.
    pub node_bytes: Vec<u64>,
    /// Stage slots (worker threads) of each node, by node index.
    pub node_slots: Vec<usize>,
    /// Memory budget of each GPU as configured; 0 means 80% of each GPU's memory (see
    /// [`gpu_budget`]).
    pub gpu_bytes: u64,
    /// Jobs estimated at this many bytes or more are proved on a GPU when one is healthy.
    pub gpu_min_bytes: u64,
}

#[derive(Debug, Clone)]
struct NodeState {
    budget: u64,
    used: u64,
    peak: u64,
    slots: usize,
    running: usize,
    placed: u64,
}

#[derive(Debug, Clone)]
struct GpuState {
    node: Option<usize>,
    address: String,
    budget: u64,
    used: u64,
    peak: u64,
    running: bool,
    placed: u64,
    failures: u64,
    /// `Some(t)`: out of rotation, to be probed at `t`.
    probe_at: Option<Instant>,
}

/// A node's figures for the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node's operating-system index.
    pub os_index: usize,
    /// Its worker threads.
    pub workers: usize,
    /// Stages running on it now.
    pub running: usize,
    /// Jobs placed on it that wait for a stage.
    pub queued: usize,
    /// Its memory budget in bytes.
    pub memory_budget: u64,
    /// Bytes reserved by the jobs placed on it now.
    pub memory_used: u64,
    /// The most bytes ever reserved at once since the scheduler opened.
    pub memory_peak: u64,
    /// Jobs placed on it since the scheduler opened.
    pub placed: u64,
}

/// A GPU's figures for the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuView {
    /// Its PCI address.
    pub pci_address: String,
    /// Index of its local node, if known.
    pub node: Option<usize>,
    /// Whether it is in rotation.
    pub healthy: bool,
    /// Whether its driver thread runs a stage now.
    pub running: bool,
    /// Jobs placed on it that wait for their prove stage.
    pub queued: usize,
    /// Its memory budget in bytes.
    pub memory_budget: u64,
    /// Bytes reserved by the jobs placed on it now.
    pub memory_used: u64,
    /// The most bytes ever reserved at once since the scheduler opened.
    pub memory_peak: u64,
    /// Jobs placed on it since the scheduler opened.
    pub placed: u64,
    /// Times it was taken out of rotation.
    pub failures: u64,
}

/// Decides where jobs run and accounts for what they reserve.
#[derive(Debug, Clone, Default)]
pub struct Placer {
    nodes: Vec<NodeState>,
    gpus: Vec<GpuState>,
    gpu_min_bytes: u64,
}

impl Placer {
    /// A placer over `topology` with `budgets` (one entry per node in each node list).
    pub fn new(topology: &Topology, budgets: &Budgets) -> Self {
        let nodes = topology
            .nodes
            .iter()
            .enumerate()
            .map(|(i, _)| NodeState {
                budget: budgets.node_bytes.get(i).copied().unwrap_or(0),
                used: 0,
                peak: 0,
                slots: budgets.node_slots.get(i).copied().unwrap_or(1).max(1),
                running: 0,
                placed: 0,
            })
            .collect();
        let gpus = topology
            .gpus
            .iter()
            .map(|g| GpuState {
                node: g.node,
                address: g.pci_address.clone(),
                budget: gpu_budget(budgets.gpu_bytes, g.memory_bytes),
                used: 0,
                peak: 0,
                running: false,
                placed: 0,
                failures: 0,
                probe_at: None,
            })
            .collect();
        Self {
            nodes,
            gpus,
            gpu_min_bytes: budgets.gpu_min_bytes,
        }
    }

    /// Whether a job of `total` estimated bytes (`host` of them on the host) can ever run
    /// here, whatever else runs.
    ///
    /// # Errors
    /// [`SchedulerError::TooLarge`] naming the budget it exceeds.
    pub fn admit(&self, total: u64, host: u64) -> Result<(), SchedulerError> {
        let max_node = self.nodes.iter().map(|n| n.budget).max().unwrap_or(0);
        let max_gpu = self.gpus.iter().map(|g| g.budget).max();
        if total <= max_node {
            return Ok(());
        }
        match max_gpu {
            Some(max_gpu) if total >= self.gpu_min_bytes && total <= max_gpu => {
                if host <= max_node {
                    Ok(())
                } else {
                    Err(SchedulerError::TooLarge {
                        needed: host,
                        limit: "node memory (for the trace of a GPU job)",
                        budget: max_node,
                    })
                }
            }
            Some(max_gpu) if max_gpu > max_node => Err(SchedulerError::TooLarge {
                needed: total,
                limit: "GPU memory",
                budget: max_gpu,
            }),
            _ => Err(SchedulerError::TooLarge {
                needed: total,
                limit: "node memory",
                budget: max_node,
            }),
        }
    }

    fn gpu_usable(&self, g: usize) -> bool {
        self.gpus[g].probe_at.is_none()
    }

    /// Where a job of `total` estimated bytes (`host` on the host) would go now, or `None`
    /// if no resource has the room now (the job waits). Reserves nothing.
    pub fn choose(&self, total: u64, host: u64) -> Option<PlacementRecord> {
        let gpu_capable = total >= self.gpu_min_bytes
            && (0..self.gpus.len()).any(|g| self.gpu_usable(g) && self.gpus[g].budget >= total);
        if gpu_capable {
            return self.choose_gpu(total, host);
        }
        // CPU only: the node with the most free memory that fits the whole job.
        let node = self.best_node(total, None)?;
        Some(PlacementRecord {
            node,
            gpu: None,
            node_bytes: total,
            gpu_bytes: 0,
            reason: None,
        })
    }

    fn best_node(&self, bytes: u64, prefer: Option<usize>) -> Option<usize> {
        if let Some(n) = prefer
            && self.fits_node(n, bytes)
        {
            return Some(n);
        }
        (0..self.nodes.len())
            .filter(|&n| self.fits_node(n, bytes))
            .max_by_key(|&n| {
                (
                    self.nodes[n].budget - self.nodes[n].used,
                    std::cmp::Reverse(n),
                )
            })
    }

    fn fits_node(&self, n: usize, bytes: u64) -> bool {
        let node = &self.nodes[n];
        node.budget.saturating_sub(node.used) >= bytes
    }

    fn choose_gpu(&self, total: u64, host: u64) -> Option<PlacementRecord> {
        // The least loaded usable GPU with room, whose local node (or any node) has room for
        // the trace; a GPU whose local node is full is taken only if no other GPU works.
        let mut candidates: Vec<usize> = (0..self.gpus.len())
            .filter(|&g| {
                self.gpu_usable(g) && self.gpus[g].budget.saturating_sub(self.gpus[g].used) >= total
            })
            .collect();
        candidates.sort_by_key(|&g| (self.gpus[g].used, self.gpus[g].running, g));
        let local = candidates.iter().find_map(|&g| match self.gpus[g].node {
            Some(n) if self.fits_node(n, host) => Some((g, n, None)),
            _ => None,
        });
        let (gpu, node, reason) = match local {
            Some(found) => found,
            None => {
                let &g = candidates.first()?;
                let n = self.best_node(host, None)?;
                let reason = match self.gpus[g].node {
                    None => format!(
                        "GPU {} has no known NUMA node; CPU stages on node {}",
                        self.gpus[g].address, n
                    ),
                    Some(local) => format!(
                        "node {local} (local to GPU {}) has no memory left for the trace; \
                         CPU stages on node {n}",
                        self.gpus[g].address
                    ),
                };
                (g, n, Some(reason))
            }
        };
        Some(PlacementRecord {
            node,
            gpu: Some(gpu),
            node_bytes: host,
            gpu_bytes: total,
            reason,
        })
    }

    /// Reserves what `record` says.
    pub fn reserve(&mut self, record: &PlacementRecord) {
        let node = &mut self.nodes[record.node];
        node.used = node.used.saturating_add(record.node_bytes);
        node.peak = node.peak.max(node.used);
        node.placed += 1;
        if let Some(g) = record.gpu {
            let gpu = &mut self.gpus[g];
            gpu.used = gpu.used.saturating_add(record.gpu_bytes);
            gpu.peak = gpu.peak.max(gpu.used);
            gpu.placed += 1;
        }
    }

    /// Gives back what `record` reserved.
    pub fn release(&mut self, record: &PlacementRecord) {
        let node = &mut self.nodes[record.node];
        node.used = node.used.saturating_sub(record.node_bytes);
        if let Some(g) = record.gpu {
            let gpu = &mut self.gpus[g];
            gpu.used = gpu.used.saturating_sub(record.gpu_bytes);
        }
    }

    /// Where `stage` of a job placed by `record` runs.
    pub fn target(record: &PlacementRecord, on_gpu: bool) -> Target {
        match record.gpu {
            Some(g) if on_gpu => Target::Gpu(g),
            _ => Target::Node(record.node),
        }
    }

    /// Whether `target` has a free slot (and, for a GPU, is in rotation).
    pub fn has_slot(&self, target: Target) -> bool {
        match target {
            Target::Node(n) => self.nodes[n].running < self.nodes[n].slots,
            Target::Gpu(g) => self.gpu_usable(g) && !self.gpus[g].running,
        }
    }

    /// Whether GPU `g` is in rotation.
    pub fn is_healthy(&self, g: usize) -> bool {
        self.gpus.get(g).is_some_and(|s| s.probe_at.is_none())
    }

    /// Marks a stage started on `target`.
    pub fn start(&mut self, target: Target) {
        match target {
            Target::Node(n) => self.nodes[n].running += 1,
            Target::Gpu(g) => self.gpus[g].running = true,
        }
    }

    /// Marks a stage ended on `target`.
    pub fn end(&mut self, target: Target) {
        match target {
            Target::Node(n) => self.nodes[n].running = self.nodes[n].running.saturating_sub(1),
            Target::Gpu(g) => self.gpus[g].running = false,
        }
    }

    /// Total CPU stage slots and those free now.
    pub fn cpu_slots(&self) -> (usize, usize) {
        let total = self.nodes.iter().map(|n| n.slots).sum();
        let busy: usize = self.nodes.iter().map(|n| n.running).sum();
        (total, total.saturating_sub(busy))
    }

    /// Takes GPU `g` out of rotation until `probe_at`.
    pub fn gpu_failed(&mut self, g: usize, probe_at: Instant) {
        if let Some(gpu) = self.gpus.get_mut(g) {
            gpu.failures += 1;
            gpu.probe_at = Some(probe_at);
        }
    }

    /// GPUs out of rotation whose probe is due at `now`.
    pub fn due_probes(&self, now: Instant) -> Vec<usize> {
        (0..self.gpus.len())
            .filter(|&g| self.gpus[g].probe_at.is_some_and(|t| t <= now))
            .collect()
    }

    /// The earliest pending probe.
    pub fn next_probe(&self) -> Option<Instant> {
        self.gpus.iter().filter_map(|g| g.probe_at).min()
    }

    /// Records a probe's result: a passing GPU goes back into rotation, a failing one is
    /// probed again after `retry`.
    pub fn probed(&mut self, g: usize, passed: bool, now: Instant, retry: Duration) {
        if let Some(gpu) = self.gpus.get_mut(g) {
            gpu.probe_at = if passed { None } else { Some(now + retry) };
        }
    }

    /// Per-node figures, `queued` being each node's count of placed jobs waiting.
    pub fn node_views(&self, topology: &Topology, queued: &[usize]) -> Vec<NodeView> {
        self.nodes
            .iter()
            .zip(&topology.nodes)
            .enumerate()
            .map(|(i, (s, n))| NodeView {
                os_index: n.os_index,
                workers: s.slots,
                running: s.running,
                queued: queued.get(i).copied().unwrap_or(0),
                memory_budget: s.budget,
                memory_used: s.used,
                memory_peak: s.peak,
                placed: s.placed,
            })
            .collect()
    }

    /// Per-GPU figures, `queued` being each GPU's count of placed jobs waiting.
    pub fn gpu_views(&self, queued: &[usize]) -> Vec<GpuView> {
        self.gpus
            .iter()
            .enumerate()
            .map(|(i, s)| GpuView {
                pci_address: s.address.clone(),
                node: s.node,
                healthy: s.probe_at.is_none(),
                running: s.running,
                queued: queued.get(i).copied().unwrap_or(0),
                memory_budget: s.budget,
                memory_used: s.used,
                memory_peak: s.peak,
                placed: s.placed,
                failures: s.failures,
            })
            .collect()
    }
}
