//! The EPA job scheduler: durable jobs, stages, per-tenant fair queues and crash recovery.
//!
//! A job is a batch from a shard aggregator (`decap → execute → prove → publish`) or a
//! proving job from a validator (`prove`, or `prove → publish`). The scheduler owns ordering,
//! durability, retries and resumption; the caller supplies each stage's work through
//! [`StageExecutor`]. Everything lives in one RocksDB database ([`Store`]): the job journal,
//! the stage outputs, each shard's SMT nodes ([`ShardNodeStore`]) and metadata, the commitment
//! log and the proofs. The crate knows nothing of the network.
//!
//! Using it:
//!
//! 1. Implement [`StageExecutor`]: `run` gets the job, the stage and its input (the payload,
//!    or the previous stage's output) and returns a [`StageOutcome`]: the stage's output plus
//!    a [`WriteSet`] of side effects (SMT writes from a [`StagedNodeStore`], shard metadata,
//!    a commitment, a proof) that commit in the same atomic write as the stage's completion.
//! 2. [`Scheduler::open`] a data dir with a [`Config`] (worker threads, per-tenant limits and
//!    weights, retry policy). Every unfinished job found in the journal resumes at its first
//!    incomplete stage; a completed stage never runs again.
//! 3. [`Scheduler::submit`] a [`JobSpec`] (or [`Scheduler::submit_with`] to commit records
//!    such as an aggregator's sequence number in the same write): it returns only once the job
//!    is synced to disk, so its [`JobId`] may be acknowledged. A full tenant queue answers
//!    [`SchedulerError::Busy`], a full scheduler [`SchedulerError::Full`].
//! 4. Follow jobs with [`Scheduler::status`] / [`Scheduler::wait`], cancel them with
//!    [`Scheduler::cancel`], watch [`Scheduler::snapshot`], and read results from
//!    [`Scheduler::store`] (for example [`Store::commitments_from`] for a subscriber's
//!    catch-up).
//! 5. Drop the scheduler (or call [`Scheduler::shutdown`]): it admits nothing more, lets the
//!    running stages finish or stop, and leaves everything else journaled.
//!
//! **Placement.** The scheduler runs on a [`Topology`] (this machine through hwloc, or a
//! given model such as a synthetic or XML one in tests): one CPU worker pool per NUMA node,
//! its threads pinned to the node's cores with their memory bound there (so buffers are
//! first touched on the node that uses them), and one driver thread per GPU on the GPU's
//! node. [`Scheduler::submit_job`] takes [`JobOptions`]: a priority inside the tenant and a
//! [`Footprint`] whose memory estimate is admitted against every node's and GPU's budget (a
//! job that fits nowhere is refused with [`SchedulerError::TooLarge`]; one that fits later
//! waits). Large proofs go to a healthy GPU, with the job's CPU stages on that GPU's node;
//! small jobs stay on one node's CPUs; the [`PlacementRecord`] in the job's status says
//! where and why a job straddles nodes. A GPU stage that fails with
//! [`StageFailure::DeviceFailed`] takes the device out of rotation until
//! [`StageExecutor::probe_device`] passes, and its jobs move elsewhere.
//!
//! **Ordering.** Jobs carry an ordering key (the shard): their ordered stages
//! ([`Stage::is_ordered`]: execute and publish) run in submission order per key; decap and
//! prove of different jobs run in parallel. A job that fails or is cancelled stops holding
//! back the jobs after it.
//!
//! **Durability.** A submission is fsynced before [`Scheduler::submit`] returns; a stage's
//! completion is fsynced before the next stage starts (or, with
//! [`Config::sync_every_stage`] off, only publish and a job's last stage are, which still makes
//! every earlier write durable). Journal writes happen outside the scheduler's lock, so
//! concurrent submissions and completions share one fsync (RocksDB's group commit). Nothing
//! lives only in memory: a process killed at any point resumes from the journal.
//!
//! **Exactly once.** A stage's completion, its output and its side effects are one synced
//! RocksDB write, and a stage is marked complete only if it is still the job's next stage, so
//! each `(job, stage)` completes at most once, including across crashes. A stage interrupted
//! before that write re-runs from its recorded input, so executors must be deterministic in
//! their input.
#![forbid(unsafe_code)]

mod error;
mod job;
mod placement;
mod scheduler;
mod store;
pub mod topology;

pub use error::SchedulerError;
pub use job::{
    Job, JobId, JobKind, JobSpec, JobState, JobStatus, MAX_REASON_LEN, MAX_TENANT_LEN, Stage,
};
pub use placement::{
    Budgets, Footprint, GpuView, JobOptions, NodeView, PlacementRecord, Placer, Target,
    UNKNOWN_GPU_BUDGET, gpu_budget,
};
pub use scheduler::{
    Activity, Config, PlacementDecision, RECENT_JOBS, RECENT_PLACEMENTS, Scheduler, Snapshot,
    StageContext, StageExecutor, StageFailure, StageLatency, StageOutcome, TenantDepth,
};
pub use store::{
    ShardMeta, ShardNodeStore, StagedNodeStore, Store, StoreOptions, StoreWrite, WriteSet,
};
pub use topology::{GpuDevice, NumaNode, Topology};

#[cfg(test)]
mod tests;
