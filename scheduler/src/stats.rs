//! The operators' read API: what runs where, what finished, and the placement decisions
//! taken lately, for `/status` pages and metrics. Everything here is a copy taken under the
//! scheduler's lock: reading it never blocks the dispatcher for longer than the copy.
//!
//! [`Scheduler::activity`] returns an [`Activity`]: every unfinished job with its stage and
//! progress ([`JobStatus::progress`]), the last [`RECENT_JOBS`] jobs that finished and the last
//! [`RECENT_PLACEMENTS`] placement decisions (bounded rings: memory stays constant whatever
//! the load). Per-node and per-device figures are in [`Snapshot`](super::Snapshot)
//! (`nodes`, `gpus`); [`NodeView::utilisation`] turns a node's busy workers into a ratio.

use std::collections::VecDeque;

use super::{Inner, Scheduler};
use crate::job::{JobId, JobStatus};
use crate::placement::{NodeView, PlacementRecord};

/// Finished jobs kept for [`Activity::finished`].
pub const RECENT_JOBS: usize = 64;
/// Placement decisions kept for [`Activity::placements`].
pub const RECENT_PLACEMENTS: usize = 64;

/// One placement decision: which job, whose, where, and for how much memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementDecision {
    /// The job placed.
    pub job: JobId,
    /// Its tenant.
    pub tenant: String,
    /// Where it went and what it reserved (with the reason if it straddles nodes).
    pub record: PlacementRecord,
    /// Sequence number of the decision since the scheduler opened (1 for the first).
    pub seq: u64,
}

/// What the scheduler is doing, for status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// Every unfinished job, by id: its state (queued or running which stage), completed
    /// stages, attempts and placement.
    pub in_flight: Vec<JobStatus>,
    /// The jobs that finished last (done, failed or cancelled), oldest first.
    pub finished: Vec<JobStatus>,
    /// The latest placement decisions, oldest first.
    pub placements: Vec<PlacementDecision>,
    /// Placement decisions taken since the scheduler opened.
    pub placements_total: u64,
}

impl JobStatus {
    /// The share of the job's stages completed, from 0 to 1 (1 once it is done).
    pub fn progress(&self) -> f64 {
        let stages = self.job.kind.stages().len();
        if stages == 0 || self.state == crate::JobState::Done {
            return 1.0;
        }
        (self.completed.len() as f64 / stages as f64).min(1.0)
    }
}

impl NodeView {
    /// Busy workers over all workers (0 for a node without workers).
    pub fn utilisation(&self) -> f64 {
        if self.workers == 0 {
            0.0
        } else {
            (self.running as f64 / self.workers as f64).min(1.0)
        }
    }
}

/// A ring that keeps the last `N` items.
#[derive(Debug)]
struct Ring<T, const N: usize> {
    items: VecDeque<T>,
}

impl<T, const N: usize> Default for Ring<T, N> {
    fn default() -> Self {
        Self {
            items: VecDeque::with_capacity(N),
        }
    }
}

impl<T: Clone, const N: usize> Ring<T, N> {
    fn push(&mut self, item: T) {
        if self.items.len() == N {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    fn to_vec(&self) -> Vec<T> {
        self.items.iter().cloned().collect()
    }
}

/// The bounded history the scheduler keeps in its state.
#[derive(Debug, Default)]
pub(super) struct Recent {
    finished: Ring<JobStatus, RECENT_JOBS>,
    placements: Ring<PlacementDecision, RECENT_PLACEMENTS>,
    placed: u64,
}

impl Recent {
    /// Records a job that became terminal.
    pub(super) fn finished(&mut self, status: JobStatus) {
        self.finished.push(status);
    }

    /// Records a placement decision.
    pub(super) fn placed(&mut self, job: JobId, tenant: &str, record: &PlacementRecord) {
        self.placed += 1;
        self.placements.push(PlacementDecision {
            job,
            tenant: tenant.to_owned(),
            record: record.clone(),
            seq: self.placed,
        });
    }
}

impl Inner {
    fn activity(&self) -> Activity {
        let mut in_flight: Vec<JobStatus> = self
            .active
            .values()
            .map(|a| {
                let mut status = a.record.status(a.running);
                // The in-memory placement is the current one (the record keeps the last
                // completed stage's).
                if a.placement.is_some() {
                    status.placement.clone_from(&a.placement);
                }
                status
            })
            .collect();
        in_flight.sort_by_key(|s| s.job.id);
        Activity {
            in_flight,
            finished: self.recent.finished.to_vec(),
            placements: self.recent.placements.to_vec(),
            placements_total: self.recent.placed,
        }
    }
}

impl Scheduler {
    /// Every unfinished job with its stage and progress, the jobs that finished last and the
    /// latest placement decisions, all bounded (at most [`RECENT_JOBS`] and
    /// [`RECENT_PLACEMENTS`]).
    pub fn activity(&self) -> Activity {
        self.shared.lock().activity()
    }
}
