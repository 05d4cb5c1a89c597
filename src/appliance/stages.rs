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
use super::kem::KemDispatch;
use super::keys::{KeyId, ShardKeys};
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
    /// Every shard's active ML-KEM keys (several while keys rotate).
    pub shard_keys: BTreeMap<u32, ShardKeys>,
    /// Where decap batches run: the CPU kernels, and a probed hardware GPU for batches of at
    /// least `backends.kem_gpu_min_batch` ciphertexts.
    pub kem: KemDispatch,
    /// The prover backend of the prove stage (`backends.allowed`); proofs are byte-identical
    /// on every backend.
    pub prover_backend: registry::ProverBackend,
    pub signing_key: mldsa65::SigningKey,
    pub depth: u8,
    pub preset: Preset,
    pub hash: HashId,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
}

/// The CPU kernels backend for batch decapsulation: the instruction set `EPA_SIMD` names when
/// it is set (tests pin it so), else `simd` (`backends.simd`), else the best of this CPU;
/// `None` if it cannot be built on this machine (the reference decapsulates then).
pub(crate) fn kem_backend(simd: Option<kernels::Isa>) -> Option<Arc<kernels::CpuBackend>> {
    let env_set = std::env::var_os(kernels::cpu::SIMD_ENV).is_some_and(|v| !v.is_empty());
    let backend = match simd {
        Some(isa) if !env_set => kernels::CpuBackend::with_isa(isa),
        _ => kernels::CpuBackend::new(),
    };
    backend.ok().map(Arc::new)
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
        let keys = self.shard_keys.get(&batch.shard).ok_or_else(|| {
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
        // Parse every transaction and pick its key (version 2 names it; version 1 uses the
        // primary), decapsulate each key's ciphertexts in one batch (the key is unpacked once
        // per batch; a large batch on the GPU, see `KemDispatch`), then open each payload
        // with its secret.
        let parsed: Vec<Result<(EncryptedTx, KeyId), Invalid>> = batch
            .txs
            .iter()
            .map(|bytes| {
                let sealed = EncryptedTx::from_bytes(bytes).map_err(|_| Invalid::Malformed)?;
                let id = sealed.key_id().unwrap_or(keys.primary_id());
                if keys.get(&id).is_none() {
                    return Err(Invalid::UnknownKey);
                }
                Ok((sealed, id))
            })
            .collect();
        let mut by_key: BTreeMap<KeyId, Vec<mlkem768::Ciphertext>> = BTreeMap::new();
        for (sealed, id) in parsed.iter().flatten() {
            by_key
                .entry(*id)
                .or_default()
                .push(sealed.kem_ciphertext().clone());
        }
        // Secrets are zeroized on drop, whichever path produced them.
        let mut secrets: BTreeMap<KeyId, std::vec::IntoIter<crypto::kem::SharedSecret>> = by_key
            .iter()
            .filter_map(|(id, cts)| {
                let dk = keys.get(id)?;
                Some((*id, self.kem.decap(dk, cts).into_iter()))
            })
            .collect();
        let txs = parsed
            .into_iter()
            .map(|p| {
                let (sealed, id) = p?;
                let ss = secrets.get_mut(&id).and_then(Iterator::next).expect(
                    "KemDispatch::decap returns one secret per parsed ciphertext of each key",
                );
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
        let options = OptionsChoice::Preset(self.preset);
        let envelope = registry::prove_on(&request, options, self.hash, self.prover_backend)
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
        let envelope = registry::prove_on(&request, options, hash, self.prover_backend)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crypto::seal::{seal_transaction, seal_transaction_keyed};
    use rand::{Rng, SeedableRng};

    fn executor(
        shard: u32,
        keys: ShardKeys,
        simd: Option<kernels::Isa>,
    ) -> (BatchExecutor, mldsa65::KeyPair) {
        let dsa = mldsa65::KeyPair::from_seed(&[7; 32]);
        let metrics = Arc::new(Metrics::default());
        let exec = BatchExecutor {
            shard_keys: [(shard, keys)].into(),
            kem: KemDispatch::with_gpu(kem_backend(simd), None, 1, Arc::clone(&metrics)),
            prover_backend: registry::ProverBackend::Cpu,
            signing_key: dsa.signing_key.clone(),
            depth: 8,
            preset: Preset::Fast96,
            hash: HashId::Rp64_256,
            limits: Limits::default(),
            metrics,
        };
        (exec, dsa)
    }

    /// A stored batch job payload holding `txs` for `shard`.
    fn payload(shard: u32, seq: u64, txs: Vec<Vec<u8>>, dsa: &mldsa65::KeyPair) -> Vec<u8> {
        let limits = Limits::default();
        let batch = Batch::sign(
            shard,
            seq,
            [0; 32],
            txs,
            &dsa.signing_key,
            &dsa.verifying_key,
            &DETERMINISTIC,
            &limits,
        )
        .expect("a small batch signs");
        Request::SubmitBatch(batch)
            .encode(&limits)
            .expect("a small batch encodes")
    }

    fn decap(exec: &BatchExecutor, input: &[u8]) -> Vec<Result<Tx, Invalid>> {
        let out = exec.decap(input).expect("the decap stage runs");
        Decapped::from_bytes(&out.output).expect("decap output").txs
    }

    fn random_tx(rng: &mut impl Rng) -> Tx {
        Tx::Deposit {
            to: rng.r#gen(),
            amount: rng.gen_range(0..1 << 40),
        }
    }

    /// Two active keys: transactions sealed to either (version 2) and unkeyed ones (version 1,
    /// the primary) all open, in batch order. Retire the old key: its transactions are
    /// rejected as `UnknownKey`, the others still open.
    #[test]
    fn keys_rotate_per_transaction_and_retired_keys_are_rejected() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(rand::random());
        let shard = rng.r#gen();
        let seq = rng.gen_range(1..1000);
        let mut seeds = [[0u8; 64]; 2];
        seeds.iter_mut().for_each(|s| rng.fill(&mut s[..]));
        let old = mlkem768::KeyPair::from_seed(&seeds[0]);
        let new = mlkem768::KeyPair::from_seed(&seeds[1]);
        let ctx = TxContext { shard, batch: seq };
        let mut want = Vec::new();
        let mut wire = Vec::new();
        for i in 0..12 {
            let tx = random_tx(&mut rng);
            let sealed = match i % 3 {
                0 => seal_transaction_keyed(&old.encapsulation_key, &tx.to_bytes(), &ctx, &mut rng),
                1 => seal_transaction_keyed(&new.encapsulation_key, &tx.to_bytes(), &ctx, &mut rng),
                _ => seal_transaction(&new.encapsulation_key, &tx.to_bytes(), &ctx, &mut rng),
            }
            .expect("seal");
            want.push((i % 3, tx));
            wire.push(sealed.to_bytes());
        }
        let both = ShardKeys::with_more(
            new.decapsulation_key.clone(),
            [old.decapsulation_key.clone()],
        )
        .expect("two distinct keys");
        let mut ids: Vec<KeyId> = both.ids().collect();
        ids.sort();
        let mut expect_ids = vec![
            KeyId::of(&old.encapsulation_key),
            KeyId::of(&new.encapsulation_key),
        ];
        expect_ids.sort();
        assert_eq!(ids, expect_ids);
        let (exec, dsa) = executor(shard, both, None);
        let input = payload(shard, seq, wire.clone(), &dsa);
        let opened = decap(&exec, &input);
        assert_eq!(
            opened,
            want.iter().map(|(_, tx)| Ok(*tx)).collect::<Vec<_>>()
        );

        // The old key retired: only its transactions are rejected, with the typed reason.
        let (exec, _) = executor(shard, ShardKeys::new(new.decapsulation_key.clone()), None);
        let opened = decap(&exec, &input);
        for ((kind, tx), got) in want.iter().zip(&opened) {
            if *kind == 0 {
                assert_eq!(*got, Err(Invalid::UnknownKey));
            } else {
                assert_eq!(*got, Ok(*tx));
            }
        }
        // A key listed twice is a configuration error, not a silent duplicate.
        assert!(matches!(
            ShardKeys::with_more(
                new.decapsulation_key.clone(),
                [new.decapsulation_key.clone()]
            ),
            Err(Error::Config(_))
        ));
    }

    /// `backends.simd` picks the decap kernels' instruction set (unless `EPA_SIMD` is set, which
    /// wins for tests), and the result is the same on every instruction set.
    #[test]
    fn the_simd_setting_selects_the_decap_kernels() {
        let env_set = std::env::var_os(kernels::cpu::SIMD_ENV).is_some_and(|v| !v.is_empty());
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(rand::random());
        let pair = mlkem768::KeyPair::from_seed(&[3; 64]);
        let ctx = TxContext { shard: 1, batch: 1 };
        let txs: Vec<Tx> = (0..5).map(|_| random_tx(&mut rng)).collect();
        let wire: Vec<Vec<u8>> = txs
            .iter()
            .map(|t| {
                seal_transaction_keyed(&pair.encapsulation_key, &t.to_bytes(), &ctx, &mut rng)
                    .expect("seal")
                    .to_bytes()
            })
            .collect();
        let mut input = None;
        for isa in kernels::Isa::ALL.into_iter().filter(|i| i.is_supported()) {
            let (exec, dsa) =
                executor(1, ShardKeys::new(pair.decapsulation_key.clone()), Some(isa));
            let backend = exec.kem.cpu().expect("a supported ISA builds");
            if !env_set {
                assert_eq!(backend.isa(), isa);
            }
            let input = input
                .get_or_insert_with(|| payload(1, 1, wire.clone(), &dsa))
                .clone();
            assert_eq!(
                decap(&exec, &input),
                txs.iter().map(|t| Ok(*t)).collect::<Vec<_>>(),
                "{isa}"
            );
        }
    }

    struct Noop;

    /// Holds every stage until opened (jobs stay unfinished meanwhile).
    #[derive(Default)]
    struct Gate(std::sync::Mutex<bool>, std::sync::Condvar);

    impl Gate {
        fn open(&self) {
            *self.0.lock().expect("gate lock") = true;
            self.1.notify_all();
        }
    }

    impl StageExecutor for Gate {
        fn run(
            &self,
            _ctx: &StageContext<'_>,
            _job: &Job,
            _stage: Stage,
            input: &[u8],
        ) -> Result<StageOutcome, StageFailure> {
            let mut open = self.0.lock().expect("gate lock");
            while !*open {
                open = self.1.wait(open).expect("gate lock");
            }
            Ok(StageOutcome::new(input.to_vec()))
        }
    }

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

    /// The configuration's `[storage]`, `[numa]`, `[backends]` and `tenants[]` keys reach the
    /// scheduler the appliance opens, and each changes what it does.
    #[test]
    fn configuration_keys_reach_the_scheduler() {
        use super::super::Tuning;
        let mut rng = rand::thread_rng();
        let cache_mib = rng.gen_range(8..64u32);
        let budget_mib = rng.gen_range(1..4096u64);
        let max_queued = rng.gen_range(1..4u32);
        let kem_min = rng.gen_range(1..100_000u32);
        let text = format!(
            "version = 1\n\
             [storage]\nblock_cache_mib = {cache_mib}\nwrite_buffer_mib = 2\nmax_background_jobs = 3\nmax_open_files = 500\n\
             [backends]\ndevice_memory_budget_mib = {budget_mib}\nsimd = \"scalar\"\nkem_gpu_min_batch = {kem_min}\n\
             [numa]\npolicy = \"bind\"\nnodes = [0]\n\
             [[tenants]]\nid = \"a\"\npublic_key = \"a.pk\"\nweight = 7\nreserved_share = 50\nmax_queued = {max_queued}\n\
             [[tenants]]\nid = \"b\"\npublic_key = \"b.pk\"\n"
        );
        let cfg = firmware_config::Config::parse(&text, "test.toml").expect("valid");
        let tuning = Tuning::from_config(&cfg).expect("usable");
        assert_eq!(tuning.simd, Some(kernels::Isa::Scalar));
        // [backends] kem_gpu_min_batch: the decap stage's GPU threshold (256 by default).
        assert_eq!(tuning.kem_gpu_min_batch(), kem_min as usize);
        assert_eq!(Tuning::default().kem_gpu_min_batch(), 256);
        let mut topology = scheduler::Topology::single_node(2, 64 << 30);
        topology.gpus.push(scheduler::GpuDevice {
            pci_address: "0000:01:00.0".into(),
            vendor_id: 0x1002,
            device_id: 1,
            node: Some(0),
            memory_bytes: 64 << 30,
        });
        let base = scheduler::Config {
            workers: 2,
            topology: Some(topology),
            sync_every_stage: false,
            ..scheduler::Config::default()
        };
        let config = tuning.apply(base);
        assert_eq!(config.tenant_weights.get("a"), Some(&7));
        assert_eq!(config.tenant_weights.get("b"), Some(&1));
        assert_eq!(
            config.tenant_reserved_workers.get("a"),
            Some(&1),
            "50% of 2 workers"
        );
        assert_eq!(config.numa_nodes, Some(vec![0]));
        let dir = tempfile::tempdir().expect("tempdir");
        let sched = scheduler::Scheduler::open(dir.path(), config, Arc::new(Noop)).expect("opens");
        // [storage]: RocksDB runs with the configured block cache.
        assert_eq!(
            sched.store().property("rocksdb.block-cache-capacity"),
            Some(((cache_mib as usize) << 20).to_string())
        );
        // [backends] device_memory_budget_mib: the GPU's admission budget.
        assert_eq!(sched.snapshot().gpus[0].memory_budget, budget_mib << 20);
        // tenants[].max_queued: the tenant's own queue limit.
        sched.stop_admitting();
        drop(sched);
        let cfg_limit = scheduler::Config {
            workers: 1,
            topology: Some(scheduler::Topology::single_node(1, 64 << 30)),
            ..scheduler::Config::default()
        };
        let gate = Arc::new(Gate::default());
        let dir = tempfile::tempdir().expect("tempdir");
        let sched = scheduler::Scheduler::open(dir.path(), tuning.apply(cfg_limit), gate.clone())
            .expect("opens");
        let job = |tenant: &str| scheduler::JobSpec {
            tenant: tenant.into(),
            kind: JobKind::Proving,
            ordering_key: None,
            payload: vec![0; 8],
        };
        for _ in 0..max_queued {
            sched.submit(job("a")).expect("under tenant a's limit");
        }
        match sched.submit(job("a")) {
            Err(scheduler::SchedulerError::Busy { max_jobs, .. }) => {
                assert_eq!(max_jobs, max_queued as usize);
            }
            other => panic!("expected Busy at tenant a's limit, got {other:?}"),
        }
        sched
            .submit(job("b"))
            .expect("tenant b keeps the default limit");
        gate.open();
        assert!(sched.wait_idle(std::time::Duration::from_secs(20)));
        // [numa] bind to a node the machine lacks: refused with the field named.
        let mut bad = cfg.clone();
        bad.numa.nodes = vec![9];
        let config = Tuning::from_config(&bad)
            .expect("usable")
            .apply(scheduler::Config {
                workers: 1,
                topology: Some(scheduler::Topology::single_node(1, 1 << 30)),
                ..scheduler::Config::default()
            });
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            scheduler::Scheduler::open(dir.path(), config, Arc::new(Noop)),
            Err(scheduler::SchedulerError::InvalidConfig {
                field: "numa_nodes",
                ..
            })
        ));
        // policy = "none": no pinning.
        let mut none = cfg;
        none.numa.policy = "none".into();
        let t = Tuning::from_config(&none).expect("usable");
        assert!(!t.apply(scheduler::Config::default()).pin_threads);
        assert!(tuning.apply(scheduler::Config::default()).pin_threads);
    }

    /// `backends.allowed` decides the prove stage's backend: a hardware GPU backend when it is
    /// listed and present, the CPU kernels otherwise (and without probing when only `cpu` is
    /// listed); a software GPU is never chosen.
    #[test]
    fn allowed_backends_pick_the_prover_backend() {
        use super::super::Tuning;
        use registry::{ProbedBackend, ProverBackend};
        let info = kernels::Backend::info(&kernels::CpuBackend::new().expect("the CPU backend"));
        let probed = |software| {
            vec![
                ProbedBackend {
                    backend: ProverBackend::Cpu,
                    info: info.clone(),
                    software: false,
                },
                ProbedBackend {
                    backend: ProverBackend::Wgpu,
                    info: info.clone(),
                    software,
                },
            ]
        };
        let tuning = |allowed: &[&str]| {
            let mut cfg = firmware_config::Config::default();
            cfg.backends.allowed = allowed.iter().map(|s| s.to_string()).collect();
            Tuning::from_config(&cfg).expect("usable")
        };
        let all = tuning(&["cpu", "wgpu", "cuda"]);
        assert!(all.allows_accelerators());
        assert!(all.should_probe(true));
        assert!(
            !all.should_probe(false),
            "no GPU hardware: nothing to probe"
        );
        assert_eq!(all.pick_prover_backend(&probed(false)), ProverBackend::Wgpu);
        assert_eq!(all.pick_prover_backend(&probed(true)), ProverBackend::Cpu);
        assert_eq!(
            all.pick_prover_backend(&probed(false)[..1]),
            ProverBackend::Cpu
        );
        let cpu_only = tuning(&["cpu"]);
        assert!(!cpu_only.allows_accelerators());
        assert!(!cpu_only.should_probe(true));
        assert_eq!(
            cpu_only.pick_prover_backend(&probed(false)),
            ProverBackend::Cpu
        );
        assert!(!Tuning::default().allows_accelerators());
    }

    /// `/status` lists the probed backends with the chosen ones marked (a software GPU
    /// listed, flagged and chosen for nothing), and the CPU kernels alone without a probe.
    #[test]
    fn status_lists_the_probed_backends_and_the_chosen_ones() {
        use super::super::status_backends;
        use registry::{ProbedBackend, ProverBackend};
        let info = kernels::Backend::info(&kernels::CpuBackend::new().expect("the CPU backend"));
        let entry = |backend, software| ProbedBackend {
            backend,
            info: info.clone(),
            software,
        };
        let flags = |list: &[super::super::StatusBackend]| {
            list.iter()
                .map(|b| (b.software, b.prove, b.kem))
                .collect::<Vec<_>>()
        };
        let lavapipe = [
            entry(ProverBackend::Cpu, false),
            entry(ProverBackend::Wgpu, true),
        ];
        let listed = status_backends(Some(&lavapipe), ProverBackend::Cpu, None);
        assert_eq!(flags(&listed), [(false, true, true), (true, false, false)]);
        let gpus = [
            entry(ProverBackend::Cpu, false),
            entry(ProverBackend::Wgpu, false),
            entry(ProverBackend::Cuda, false),
        ];
        let listed = status_backends(Some(&gpus), ProverBackend::Cuda, Some("cuda"));
        assert_eq!(
            flags(&listed),
            [
                (false, false, true),
                (false, false, false),
                (false, true, true)
            ]
        );
        let listed = status_backends(None, ProverBackend::Cpu, None);
        assert_eq!(flags(&listed), [(false, true, true)]);
        assert!(
            listed[0].info.name.starts_with("cpu"),
            "{}",
            listed[0].info.name
        );
    }

    /// `tenants[].max_submits_per_second` becomes the tenant's own rate limit in the QUIC
    /// server (node-lite's `Service::submission_rate`, whose limiter is tested there).
    #[test]
    fn tenant_rates_reach_the_quic_service() {
        use super::super::{Service, Tuning};
        use node_lite::server::Service as _;
        let rate = rand::thread_rng().gen_range(1..1000u32);
        let text = format!(
            "version = 1\n[[tenants]]\nid = \"a\"\npublic_key = \"a.pk\"\nmax_submits_per_second = {rate}\n\
             [[tenants]]\nid = \"b\"\npublic_key = \"b.pk\"\n"
        );
        let cfg = firmware_config::Config::parse(&text, "test.toml").expect("valid");
        let tuning = Tuning::from_config(&cfg).expect("usable");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = scheduler::Config {
            workers: 1,
            topology: Some(scheduler::Topology::single_node(1, 1 << 30)),
            ..scheduler::Config::default()
        };
        let sched = Arc::new(
            scheduler::Scheduler::open(dir.path(), config, Arc::new(Noop)).expect("opens"),
        );
        let service = Service::new(
            sched,
            Vec::new(),
            Default::default(),
            8,
            Limits::default(),
            Arc::new(Metrics::default()),
        );
        assert_eq!(
            service.submission_rate("a"),
            None,
            "nothing before start sets it"
        );
        service.set_submission_rates(tuning.tenant_submits_per_second.clone());
        assert_eq!(service.submission_rate("a"), Some(rate));
        assert_eq!(
            service.submission_rate("b"),
            None,
            "0 means the server's limit"
        );
        assert_eq!(service.tenant_submission_rate("a"), Some(rate));
    }
}
