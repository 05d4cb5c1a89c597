//! Jobs, their stages and states, and the journal record that makes them durable.

use std::fmt;

use crypto::encoding::{Reader, Writer};

use crate::SchedulerError;
use crate::placement::{Footprint, PlacementRecord};

/// The longest tenant name accepted, in bytes.
pub const MAX_TENANT_LEN: usize = 64;

/// The longest failure reason kept in the journal, in bytes (longer ones are truncated).
pub const MAX_REASON_LEN: usize = 1024;

/// Version byte of the journal's job record (version 1, without priority, footprint and
/// placement, is still read).
const RECORD_VERSION: u8 = 2;

/// A job's identity: assigned by [`Scheduler::submit`](crate::Scheduler::submit), increasing in
/// submission order and never reused within a data dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One step of a job's pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Batch ML-KEM decapsulation of the batch's ciphertexts.
    Decap,
    /// Decryption, validation and application of the transactions to the shard's SMT.
    Execute,
    /// The STARK proof of the state transition.
    Prove,
    /// Signing the commitment and handing it to the subscribers.
    Publish,
}

impl Stage {
    /// All stages, in pipeline order.
    pub const ALL: [Stage; 4] = [Stage::Decap, Stage::Execute, Stage::Prove, Stage::Publish];

    /// The stage's name as metrics and logs spell it.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Decap => "decap",
            Stage::Execute => "execute",
            Stage::Prove => "prove",
            Stage::Publish => "publish",
        }
    }

    /// Whether jobs with the same ordering key run this stage strictly in submission order.
    ///
    /// Execute changes the shard's state and publish appends to its commitment log, so both
    /// are ordered; decap and prove of different jobs run in parallel.
    pub fn is_ordered(self) -> bool {
        matches!(self, Stage::Execute | Stage::Publish)
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Stage::Decap => 0,
            Stage::Execute => 1,
            Stage::Prove => 2,
            Stage::Publish => 3,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a job is, which decides its stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// A batch from a shard aggregator: decap → execute → prove → publish.
    Batch,
    /// A proving job from a validator: prove only; the validator fetches the proof.
    Proving,
    /// A proving job whose result is also published: prove → publish.
    ProvingPublished,
}

impl JobKind {
    /// The job's stages, in order.
    pub fn stages(self) -> &'static [Stage] {
        match self {
            JobKind::Batch => &Stage::ALL,
            JobKind::Proving => &[Stage::Prove],
            JobKind::ProvingPublished => &[Stage::Prove, Stage::Publish],
        }
    }

    fn code(self) -> u8 {
        match self {
            JobKind::Batch => 0,
            JobKind::Proving => 1,
            JobKind::ProvingPublished => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(JobKind::Batch),
            1 => Some(JobKind::Proving),
            2 => Some(JobKind::ProvingPublished),
            _ => None,
        }
    }
}

/// A job as submitted: who, what, in which order, and its opaque payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The tenant whose queue and limits the job counts against (1 to [`MAX_TENANT_LEN`]
    /// bytes).
    pub tenant: String,
    /// What the job is.
    pub kind: JobKind,
    /// The ordering key (a shard id): ordered stages of jobs with the same key run in
    /// submission order. `None` puts the job in no order.
    pub ordering_key: Option<u64>,
    /// The job's input, opaque to the scheduler: the first stage receives it.
    pub payload: Vec<u8>,
}

/// The state of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for its next stage to be picked (also between stages and during a backoff).
    Queued,
    /// A stage is running now.
    Running(Stage),
    /// Every stage completed.
    Done,
    /// A stage failed for good; the reason is recorded.
    Failed(String),
    /// Cancelled before it finished.
    Cancelled,
}

impl JobState {
    /// Whether the job will never run again.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed(_) | JobState::Cancelled
        )
    }
}

/// What a stage executor learns about the job it runs a stage of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The job's id.
    pub id: JobId,
    /// Its tenant.
    pub tenant: String,
    /// Its kind.
    pub kind: JobKind,
    /// Its ordering key.
    pub ordering_key: Option<u64>,
}

/// A job's progress as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    /// The job.
    pub job: Job,
    /// Its state.
    pub state: JobState,
    /// The stages already completed (durably), in order.
    pub completed: Vec<Stage>,
    /// Failed attempts of the current stage so far.
    pub attempts: u32,
    /// The payload's size in bytes.
    pub payload_len: u64,
    /// Its priority inside its tenant's queue.
    pub priority: u8,
    /// Where it runs (or ran last): its node, its GPU and why it straddles nodes if it does;
    /// `None` while it waits for room.
    pub placement: Option<PlacementRecord>,
}

/// The durable part of a job's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DurableState {
    Active,
    Done,
    Failed(String),
    Cancelled,
}

/// The journal's record of one job (its payload and stage outputs are stored apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobRecord {
    pub job: Job,
    pub state: DurableState,
    /// Number of stages completed; the next stage is `kind.stages()[next_stage]`.
    pub next_stage: u8,
    pub attempts: u32,
    pub payload_len: u64,
    pub priority: u8,
    pub footprint: Option<Footprint>,
    /// Where the job ran its last completed stage.
    pub placement: Option<PlacementRecord>,
}

impl JobRecord {
    pub fn next(&self) -> Option<Stage> {
        self.job
            .kind
            .stages()
            .get(usize::from(self.next_stage))
            .copied()
    }

    pub fn status(&self, running: Option<Stage>) -> JobStatus {
        let stages = self.job.kind.stages();
        let done = usize::from(self.next_stage).min(stages.len());
        let state = match &self.state {
            DurableState::Active => running.map_or(JobState::Queued, JobState::Running),
            DurableState::Done => JobState::Done,
            DurableState::Failed(reason) => JobState::Failed(reason.clone()),
            DurableState::Cancelled => JobState::Cancelled,
        };
        JobStatus {
            job: self.job.clone(),
            state,
            completed: stages[..done].to_vec(),
            attempts: self.attempts,
            payload_len: self.payload_len,
            priority: self.priority,
            placement: self.placement.clone(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + self.job.tenant.len());
        w.put_u8(RECORD_VERSION);
        w.put_u64(self.job.id.0);
        w.put_u8(
            u8::try_from(self.job.tenant.len())
                .expect("tenant names are validated to at most 64 bytes"),
        );
        w.put_raw(self.job.tenant.as_bytes());
        w.put_u8(self.job.kind.code());
        match self.job.ordering_key {
            Some(key) => w.put_bool(true).put_u64(key),
            None => w.put_bool(false),
        };
        w.put_u8(self.next_stage);
        w.put_u32(self.attempts);
        w.put_u64(self.payload_len);
        match &self.state {
            DurableState::Active => w.put_u8(0),
            DurableState::Done => w.put_u8(1),
            DurableState::Failed(reason) => {
                let reason = truncate_utf8(reason, MAX_REASON_LEN);
                w.put_u8(2);
                w.put_u16(
                    u16::try_from(reason.len()).expect("reasons are truncated to 1024 bytes"),
                );
                w.put_raw(reason.as_bytes())
            }
            DurableState::Cancelled => w.put_u8(3),
        };
        w.put_u8(self.priority);
        match &self.footprint {
            Some(f) => w
                .put_bool(true)
                .put_u64(f.trace_len)
                .put_u32(f.columns)
                .put_u32(f.blowup),
            None => w.put_bool(false),
        };
        match &self.placement {
            Some(p) => {
                w.put_bool(true);
                w.put_u32(u32::try_from(p.node).unwrap_or(u32::MAX));
                w.put_u32(
                    p.gpu
                        .map_or(u32::MAX, |g| u32::try_from(g).unwrap_or(u32::MAX)),
                );
                w.put_u64(p.node_bytes).put_u64(p.gpu_bytes);
                let reason = truncate_utf8(p.reason.as_deref().unwrap_or(""), MAX_REASON_LEN);
                w.put_u16(
                    u16::try_from(reason.len()).expect("reasons are truncated to 1024 bytes"),
                );
                w.put_raw(reason.as_bytes())
            }
            None => w.put_bool(false),
        };
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, SchedulerError> {
        let bad = |e: crypto::Error| SchedulerError::corrupt("job", e);
        let mut r = Reader::new(bytes);
        let version = r.u8("job record version").map_err(bad)?;
        if version != RECORD_VERSION && version != 1 {
            return Err(SchedulerError::corrupt(
                "job",
                format!("record version {version}, this build reads version {RECORD_VERSION}"),
            ));
        }
        let id = JobId(r.u64("job id").map_err(bad)?);
        let tenant_len = r.u8("tenant length").map_err(bad)?;
        let tenant = r.take("tenant", usize::from(tenant_len)).map_err(bad)?;
        let tenant = String::from_utf8(tenant.to_vec())
            .map_err(|_| SchedulerError::corrupt("job", "tenant name is not UTF-8"))?;
        let kind_code = r.u8("job kind").map_err(bad)?;
        let kind = JobKind::from_code(kind_code).ok_or_else(|| {
            SchedulerError::corrupt("job", format!("unknown job kind {kind_code}"))
        })?;
        let ordering_key = if r.bool("ordering key flag").map_err(bad)? {
            Some(r.u64("ordering key").map_err(bad)?)
        } else {
            None
        };
        let next_stage = r.u8("next stage").map_err(bad)?;
        if usize::from(next_stage) > kind.stages().len() {
            return Err(SchedulerError::corrupt(
                "job",
                format!(
                    "{next_stage} stages completed, the job has {}",
                    kind.stages().len()
                ),
            ));
        }
        let attempts = r.u32("attempts").map_err(bad)?;
        let payload_len = r.u64("payload length").map_err(bad)?;
        let state = match r.u8("job state").map_err(bad)? {
            0 => DurableState::Active,
            1 => DurableState::Done,
            2 => {
                let len = r.u16("failure reason length").map_err(bad)?;
                let reason = r.take("failure reason", usize::from(len)).map_err(bad)?;
                DurableState::Failed(String::from_utf8_lossy(reason).into_owned())
            }
            3 => DurableState::Cancelled,
            other => {
                return Err(SchedulerError::corrupt(
                    "job",
                    format!("unknown job state {other}"),
                ));
            }
        };
        let (priority, footprint, placement) = if version == 1 {
            (0, None, None)
        } else {
            decode_v2_tail(&mut r).map_err(bad)?
        };
        r.finish("job record").map_err(bad)?;
        Ok(Self {
            job: Job {
                id,
                tenant,
                kind,
                ordering_key,
            },
            state,
            next_stage,
            attempts,
            payload_len,
            priority,
            footprint,
            placement,
        })
    }
}

type Tail = (u8, Option<Footprint>, Option<PlacementRecord>);

/// The fields version 2 added: priority, footprint and placement.
fn decode_v2_tail(r: &mut Reader<'_>) -> Result<Tail, crypto::Error> {
    let priority = r.u8("priority")?;
    let footprint = if r.bool("footprint flag")? {
        Some(Footprint {
            trace_len: r.u64("trace length")?,
            columns: r.u32("columns")?,
            blowup: r.u32("blowup")?,
        })
    } else {
        None
    };
    let placement = if r.bool("placement flag")? {
        let node = r.u32("placement node")? as usize;
        let gpu = r.u32("placement GPU")?;
        let node_bytes = r.u64("placement node bytes")?;
        let gpu_bytes = r.u64("placement GPU bytes")?;
        let len = r.u16("placement reason length")?;
        let reason = r.take("placement reason", usize::from(len))?;
        Some(PlacementRecord {
            node,
            gpu: (gpu != u32::MAX).then_some(gpu as usize),
            node_bytes,
            gpu_bytes,
            reason: (!reason.is_empty()).then(|| String::from_utf8_lossy(reason).into_owned()),
        })
    } else {
        None
    };
    Ok((priority, footprint, placement))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Checks a tenant name: 1 to [`MAX_TENANT_LEN`] bytes.
pub(crate) fn check_tenant(tenant: &str) -> Result<(), SchedulerError> {
    if tenant.is_empty() {
        return Err(SchedulerError::InvalidTenant {
            reason: "the name is empty; use the tenant name from the configuration".into(),
        });
    }
    if tenant.len() > MAX_TENANT_LEN {
        return Err(SchedulerError::InvalidTenant {
            reason: format!(
                "the name is {} bytes, at most {MAX_TENANT_LEN} are allowed",
                tenant.len()
            ),
        });
    }
    Ok(())
}
