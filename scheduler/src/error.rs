//! The scheduler's error type.

use crate::job::JobId;

/// Everything that can go wrong in the scheduler and its store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// RocksDB reported an error (open, read or write).
    #[error(
        "storage error while {context}: {message}; check the data dir's disk space and permissions"
    )]
    Storage {
        /// What the scheduler was doing.
        context: &'static str,
        /// What RocksDB said.
        message: String,
    },
    /// A record read back from the store does not decode: the data dir is damaged or was written
    /// by an incompatible version.
    #[error(
        "corrupt {what} record in the store: {detail}; restore the data dir from a backup or start with an empty one"
    )]
    Corrupt {
        /// Which kind of record.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The tenant already has as much queued work as its limit allows (back-pressure).
    #[error(
        "tenant `{tenant}` is busy: {queued_jobs} jobs / {queued_bytes} bytes queued \
         (limits {max_jobs} jobs / {max_bytes} bytes); retry after some of its jobs finish"
    )]
    Busy {
        /// The tenant whose queue is full.
        tenant: String,
        /// Jobs queued for the tenant now.
        queued_jobs: usize,
        /// Payload bytes queued for the tenant now.
        queued_bytes: u64,
        /// The tenant's job limit.
        max_jobs: usize,
        /// The tenant's byte limit.
        max_bytes: u64,
    },
    /// The scheduler as a whole holds as many unfinished jobs as it allows (back-pressure
    /// across all tenants).
    #[error("the appliance is full: {queued_jobs} unfinished jobs (limit {max_jobs}); retry later")]
    Full {
        /// Unfinished jobs now.
        queued_jobs: usize,
        /// The configured limit.
        max_jobs: usize,
    },
    /// A job's payload is larger than the configured maximum.
    #[error("job payload is {size} bytes, the limit is {max}; split the batch")]
    PayloadTooLarge {
        /// The payload's size.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A tenant name is empty or too long.
    #[error("invalid tenant name: {reason}")]
    InvalidTenant {
        /// Why it was refused.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("invalid scheduler configuration: `{field}` {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The scheduler is shutting down and admits no new work.
    #[error("the scheduler is shutting down and accepts no new jobs; resubmit after it restarts")]
    ShuttingDown,
    /// No job with this id exists in the journal.
    #[error("unknown job {0}: it was never submitted to this data dir")]
    UnknownJob(JobId),
    /// hwloc could not describe the machine, or a topology file or description is invalid.
    #[error(
        "hardware topology error: {message}; check that libhwloc can read the machine (or the topology file)"
    )]
    Topology {
        /// What went wrong.
        message: String,
    },
    /// A job's memory estimate exceeds the largest budget of every resource it could run on:
    /// it could never be admitted, so it is refused at submission.
    #[error(
        "job needs an estimated {needed} bytes but the largest {limit} budget is {budget} bytes; \
         lower the trace length or blowup, split the job, or raise the budget"
    )]
    TooLarge {
        /// The job's memory estimate in bytes.
        needed: u64,
        /// Which limit it exceeds (for example `node memory` or `GPU memory`).
        limit: &'static str,
        /// The largest such budget, in bytes.
        budget: u64,
    },
    /// A worker thread could not be started.
    #[error("could not start the scheduler's threads: {message}; check the process's thread limit")]
    Threads {
        /// What the OS reported.
        message: String,
    },
}

impl SchedulerError {
    pub(crate) fn storage(context: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Storage {
            context,
            message: err.to_string(),
        }
    }

    pub(crate) fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }
}
