//! The appliance's [`StageExecutor`]: decap → execute → prove → publish for batches, prove for
//! proving jobs. Every stage is deterministic in its input (a re-run after a crash produces the
//! same output and the same writes), and its side effects go into the stage's [`WriteSet`] so
//! the scheduler commits them atomically with the stage's completion, exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;

use crypto::dsa::mldsa65;
use crypto::kem::mlkem768;
use crypto::seal::{EncryptedTx, TxContext, open_with_shared_secret};
use crypto::smt::{Smt, empty_subtree_root};
use node_lite::wire::{
    Batch, Commitment, CommitmentFields, Frame, Limits, Message, ProvingJob, Push, Request,
};
use prover::options::{HashId, OptionsChoice, Preset};
use prover::registry::{self, AirId, ProveRequest};
use scheduler::{
    Job, JobKind, ShardMeta, Stage, StageContext, StageExecutor, StageFailure, StageOutcome,
    WriteSet,
};

use super::codec::{Decapped, Executed, Proved, witnesses_from_bytes, word_to_bytes};
use super::tx::{self, Invalid, Tx};
use super::{Error, Metrics};

/// Parses a stored job payload: one request frame.
pub(crate) fn decode_payload(bytes: &[u8], limits: &Limits) -> Result<Request, Error> {
    let frame = Frame::decode_exact(bytes, limits.max_frame_len)?;
    Ok(Request::from_frame(&frame, limits)?)
}

/// The ML-DSA hedging input of appliance signatures: all zero, the deterministic variant, so a
/// re-run of a stage signs the same bytes (no OS randomness feeds a commitment).
pub(crate) const DETERMINISTIC: [u8; 32] = [0u8; 32];

/// What the executor needs: keys, proof settings, wire limits.
pub(crate) struct BatchExecutor {
    pub shard_keys: BTreeMap<u32, Arc<mlkem768::DecapsulationKey>>,
    pub signing_key: mldsa65::SigningKey,
    pub depth: u8,
    pub preset: Preset,
    pub hash: HashId,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
}

/// The CPU kernels backend used for batch decapsulation, probed once; `None` if it cannot be
/// built on this machine.
fn kem_backend() -> Option<&'static kernels::CpuBackend> {
    static BACKEND: std::sync::OnceLock<Option<kernels::CpuBackend>> = std::sync::OnceLock::new();
    BACKEND
        .get_or_init(|| kernels::CpuBackend::new().ok())
        .as_ref()
}

/// ML-KEM-768 decapsulation of every ciphertext, in order: the batch kernel when it is
/// available, else the reference one by one (bit-exact either way, implicit rejection included).
fn decap_all(
    dk: &mlkem768::DecapsulationKey,
    ciphertexts: &[mlkem768::Ciphertext],
) -> Vec<crypto::kem::SharedSecret> {
    if let Some(backend) = kem_backend()
        && let Ok(secrets) = kernels::Backend::decap_batch(backend, dk, ciphertexts)
        && secrets.len() == ciphertexts.len()
    {
        return secrets;
    }
    ciphertexts.iter().map(|ct| dk.decapsulate(ct)).collect()
}

fn fatal(e: impl std::fmt::Display) -> StageFailure {
    StageFailure::Fatal(e.to_string())
}

impl BatchExecutor {
    fn decap(&self, input: &[u8]) -> Result<StageOutcome, StageFailure> {
        let batch: Batch = match decode_payload(input, &self.limits).map_err(fatal)? {
            Request::SubmitBatch(b) => b,
            other => return Err(fatal(format!("a batch job holds a {other:?} request"))),
        };
        let dk = self.shard_keys.get(&batch.shard).ok_or_else(|| {
            fatal(format!(
                "shard {} has no ML-KEM key configured",
                batch.shard
            ))
        })?;
        let batch_hash = batch.batch_hash(&self.limits).map_err(fatal)?;
        let ctx = TxContext {
            shard: batch.shard,
            batch: batch.seq,
        };
        // Parse every transaction, decapsulate all ciphertexts in one batch on the CPU kernels
        // (the key is unpacked once per batch), then open each payload with its secret.
        let parsed: Vec<Result<EncryptedTx, Invalid>> = batch
            .txs
            .iter()
            .map(|bytes| EncryptedTx::from_bytes(bytes).map_err(|_| Invalid::Malformed))
            .collect();
        let ciphertexts: Vec<mlkem768::Ciphertext> = parsed
            .iter()
            .filter_map(|p| p.as_ref().ok().map(|s| s.kem_ciphertext().clone()))
            .collect();
        // Secrets are zeroized on drop, whichever path produced them.
        let mut secrets = decap_all(dk, &ciphertexts).into_iter();
        let txs = parsed
            .into_iter()
            .map(|p| {
                let sealed = p?;
                let ss = secrets
                    .next()
                    .expect("decap_all returns one secret per parsed ciphertext");
                let plain =
                    open_with_shared_secret(&ss, &sealed, &ctx).map_err(|_| Invalid::Open)?;
                Tx::from_bytes(&plain)
            })
            .collect();
        let out = Decapped {
            shard: batch.shard,
            seq: batch.seq,
            prev_root: batch.prev_root,
            batch_hash,
            txs,
        };
        Ok(StageOutcome::new(out.to_bytes()))
    }

    fn execute(&self, ctx: &StageContext<'_>, input: &[u8]) -> Result<StageOutcome, StageFailure> {
        let d = Decapped::from_bytes(input).map_err(fatal)?;
        let store = ctx.store();
        let shard = u64::from(d.shard);
        let meta = store
            .shard_meta(shard)
            .map_err(|e| StageFailure::Retryable(e.to_string()))?;
        let retry = |e: crypto::Error| StageFailure::Retryable(e.to_string());
        let mut tree = Smt::new(self.depth, store.staged_node_store(shard)).map_err(fatal)?;
        let (old_root, height) = match meta {
            Some(m) => (m.root, m.height),
            None => (empty_subtree_root(self.depth), 0),
        };
        if tree.root() != old_root || word_to_bytes(&old_root) != d.prev_root {
            // Acceptance admits a batch only on the current root with nothing pending, so
            // this means the data dir was changed behind the appliance's back.
            return Err(fatal(format!(
                "shard {} root moved since the batch was accepted (batch applies on {}); \
                 the batch cannot be executed",
                d.shard,
                hex::encode(d.prev_root)
            )));
        }
        let applied = tx::apply(&tree, &d.txs).map_err(retry)?;
        let updates = if applied.updates.is_empty() {
            // No valid transaction: prove a no-op write of leaf 0 (old == new root), so every
            // batch gets a commitment with a proof (ADR 0006).
            vec![(0, tree.get(0).map_err(retry)?)]
        } else {
            applied.updates.clone()
        };
        let witnesses = tree.update_batch(&updates).map_err(retry)?;
        let new_root = tree.root();
        let smt_writes = tree.into_store().take_batch();
        let mut writes = WriteSet::new();
        writes.smt(shard, smt_writes).shard_meta(
            shard,
            ShardMeta {
                root: new_root,
                height: height + 1,
            },
        );
        self.metrics.record_txs(applied.valid, &applied.invalid);
        let out = Executed {
            shard: d.shard,
            height: height + 1,
            batch_hash: d.batch_hash,
            valid: applied.valid,
            invalid: applied.invalid_total(),
            depth: self.depth,
            witnesses,
        };
        Ok(StageOutcome::with_writes(out.to_bytes(), writes))
    }

    fn prove_batch(&self, job: &Job, input: &[u8]) -> Result<StageOutcome, StageFailure> {
        let e = Executed::from_bytes(input).map_err(fatal)?;
        let (Some(first), Some(last)) = (e.witnesses.first(), e.witnesses.last()) else {
            return Err(fatal("the execute output holds no update"));
        };
        let (old_root, new_root) = (
            word_to_bytes(&first.old_root),
            word_to_bytes(&last.new_root),
        );
        let request = ProveRequest::SmtUpdate {
            depth: e.depth,
            witnesses: e.witnesses,
        };
        let envelope = registry::prove(&request, OptionsChoice::Preset(self.preset), self.hash)
            .and_then(|env| env.to_bytes())
            .map_err(fatal)?;
        let mut writes = WriteSet::new();
        writes.proof(job.id, envelope.clone());
        let out = Proved {
            shard: e.shard,
            height: e.height,
            old_root,
            new_root,
            batch_hash: e.batch_hash,
            envelope,
        };
        Ok(StageOutcome::with_writes(out.to_bytes(), writes))
    }

    fn prove_job(&self, job: &Job, input: &[u8]) -> Result<StageOutcome, StageFailure> {
        let pj = match decode_payload(input, &self.limits).map_err(fatal)? {
            Request::SubmitProvingJob(pj) => pj,
            other => return Err(fatal(format!("a proving job holds a {other:?} request"))),
        };
        let (request, options, hash) = proving_request(&pj).map_err(fatal)?;
        let envelope = registry::prove(&request, options, hash)
            .and_then(|env| env.to_bytes())
            .map_err(fatal)?;
        let mut writes = WriteSet::new();
        writes.proof(job.id, envelope.clone());
        Ok(StageOutcome::with_writes(envelope, writes))
    }

    fn publish(&self, input: &[u8]) -> Result<StageOutcome, StageFailure> {
        let p = Proved::from_bytes(input).map_err(fatal)?;
        let fields = CommitmentFields {
            shard: p.shard,
            height: p.height,
            old_root: p.old_root,
            new_root: p.new_root,
            batch_hash: p.batch_hash,
            proof: p.envelope,
        };
        let c = Commitment::sign(fields, &self.signing_key, &DETERMINISTIC).map_err(fatal)?;
        let bytes = Push::Commitment(c).encode(&self.limits).map_err(fatal)?;
        let mut writes = WriteSet::new();
        writes.commitment(u64::from(p.shard), p.height, bytes);
        Ok(StageOutcome::with_writes(Vec::new(), writes))
    }
}

/// Checks a proving job and turns it into a prover request: only `smt-update` is accepted
/// from the wire; the witness is a [`witnesses_to_bytes`](super::codec::witnesses_to_bytes)
/// list and the public inputs must be exactly the statement those witnesses make.
pub(crate) fn proving_request(
    pj: &ProvingJob,
) -> Result<(ProveRequest, OptionsChoice, HashId), ProvingJobError> {
    let air: AirId = pj
        .air
        .parse()
        .map_err(|_| ProvingJobError::UnknownAir(pj.air.clone()))?;
    if air != AirId::SmtUpdate {
        return Err(ProvingJobError::UnknownAir(pj.air.clone()));
    }
    let preset = Preset::from_wire_id(pj.options.preset)
        .map_err(|e| ProvingJobError::Options(e.to_string()))?;
    let hash = HashId::from_wire_id(pj.options.hash)
        .map_err(|e| ProvingJobError::Options(e.to_string()))?;
    let (depth, witnesses) =
        witnesses_from_bytes(&pj.witness).map_err(|e| ProvingJobError::Input(e.to_string()))?;
    let statement =
        prover::air::smt_update::SmtUpdatePublicInputs::from_witnesses(depth, &witnesses)
            .map_err(|e| ProvingJobError::Input(e.to_string()))?;
    if statement.to_bytes() != pj.public_inputs {
        return Err(ProvingJobError::Input(
            "the public inputs are not the statement of the witnesses".into(),
        ));
    }
    if !crypto::smt::verify_witness_chain(depth, &witnesses[0].old_root, &witnesses) {
        return Err(ProvingJobError::Input(
            "the witnesses do not verify as one chained batch".into(),
        ));
    }
    Ok((
        ProveRequest::SmtUpdate { depth, witnesses },
        OptionsChoice::Preset(preset),
        hash,
    ))
}

/// Why a proving job is refused at the door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProvingJobError {
    UnknownAir(String),
    Options(String),
    Input(String),
}

impl std::fmt::Display for ProvingJobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownAir(name) => write!(
                f,
                "AIR `{name}` cannot be proved from the wire; use `smt-update`"
            ),
            Self::Options(e) => write!(f, "invalid proof options: {e}"),
            Self::Input(e) => write!(f, "invalid smt-update job: {e}"),
        }
    }
}

impl StageExecutor for BatchExecutor {
    fn run(
        &self,
        ctx: &StageContext<'_>,
        job: &Job,
        stage: Stage,
        input: &[u8],
    ) -> Result<StageOutcome, StageFailure> {
        match (job.kind, stage) {
            (JobKind::Batch, Stage::Decap) => self.decap(input),
            (JobKind::Batch, Stage::Execute) => self.execute(ctx, input),
            (JobKind::Batch, Stage::Prove) => self.prove_batch(job, input),
            (JobKind::Batch, Stage::Publish) => self.publish(input),
            (JobKind::Proving | JobKind::ProvingPublished, Stage::Prove) => {
                self.prove_job(job, input)
            }
            (kind, stage) => Err(fatal(format!(
                "stage {stage} of a {kind:?} job is not handled by this appliance"
            ))),
        }
    }
}
