//! The durable store: one RocksDB database with a column family per kind of record.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `jobs` | job id (u64 BE) | the job's record (kind, tenant, state, stages done, attempts) |
//! | `active` | job id | empty: the index of unfinished jobs, read on open to resume them |
//! | `payloads` | job id | the job's payload |
//! | `outputs` | job id, stage | a completed stage's output |
//! | `smt` | shard (BE), 0, key (BE) / shard, 1, level, index (BE) | SMT leaves / internal nodes |
//! | `meta` | `S`, shard / `A`, shard, aggregator | [`ShardMeta`] / last sequence number |
//! | `commitments` | shard (BE), height (BE) | commitment bytes (opaque) |
//! | `proofs` | job id | proof bytes (opaque) |
//!
//! Big-endian keys make RocksDB's byte order the numeric order, so range reads (catch-up from
//! a height) are plain forward iterations. Every write the scheduler makes goes through one
//! `WriteBatch` with `sync = true`: a stage's completion and its side effects ([`WriteSet`])
//! land together or not at all, and nothing is reported done before the WAL is on disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crypto::smt::{NodeIndex, NodeStore, StoreOp, Word};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options,
    WriteOptions,
};
use winter_math::StarkField;
use winter_math::fields::f64::BaseElement;

use crate::SchedulerError;
use crate::job::{JobId, JobRecord, Stage};

const CF_JOBS: &str = "jobs";
const CF_ACTIVE: &str = "active";
const CF_PAYLOADS: &str = "payloads";
const CF_OUTPUTS: &str = "outputs";
const CF_SMT: &str = "smt";
const CF_META: &str = "meta";
const CF_COMMITMENTS: &str = "commitments";
const CF_PROOFS: &str = "proofs";
const ALL_CFS: [&str; 8] = [
    CF_JOBS,
    CF_ACTIVE,
    CF_PAYLOADS,
    CF_OUTPUTS,
    CF_SMT,
    CF_META,
    CF_COMMITMENTS,
    CF_PROOFS,
];

/// Bytes of an encoded [`Word`].
const WORD_BYTES: usize = 32;

/// A shard's metadata: its current SMT root and height (number of applied batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardMeta {
    /// The shard's current SMT root.
    pub root: Word,
    /// The number of batches applied so far (the height of the last commitment).
    pub height: u64,
}

/// One durable write that a stage (or the caller) commits together with others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreWrite {
    /// SMT node and leaf writes of one shard (from a [`StagedNodeStore`]).
    Smt {
        /// The shard.
        shard: u64,
        /// The writes, in order.
        batch: crypto::smt::WriteBatch,
    },
    /// Sets a shard's metadata.
    ShardMeta {
        /// The shard.
        shard: u64,
        /// The new metadata.
        meta: ShardMeta,
    },
    /// Sets an aggregator's last accepted sequence number on a shard.
    AggregatorSeq {
        /// The shard.
        shard: u64,
        /// The aggregator's identity (for example a hash of its public key).
        aggregator: Vec<u8>,
        /// The last sequence number.
        seq: u64,
    },
    /// Appends (or replaces) the commitment at `(shard, height)`.
    Commitment {
        /// The shard.
        shard: u64,
        /// The height.
        height: u64,
        /// The commitment's bytes (opaque to the store).
        bytes: Vec<u8>,
    },
    /// Stores a job's proof.
    Proof {
        /// The job.
        job: JobId,
        /// The proof's bytes (opaque to the store).
        bytes: Vec<u8>,
    },
}

/// An ordered set of [`StoreWrite`]s that is committed atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSet {
    ops: Vec<StoreWrite>,
}

impl WriteSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds SMT writes of `shard`.
    pub fn smt(&mut self, shard: u64, batch: crypto::smt::WriteBatch) -> &mut Self {
        self.ops.push(StoreWrite::Smt { shard, batch });
        self
    }

    /// Sets `shard`'s metadata.
    pub fn shard_meta(&mut self, shard: u64, meta: ShardMeta) -> &mut Self {
        self.ops.push(StoreWrite::ShardMeta { shard, meta });
        self
    }

    /// Sets an aggregator's last sequence number on `shard`.
    pub fn aggregator_seq(&mut self, shard: u64, aggregator: &[u8], seq: u64) -> &mut Self {
        self.ops.push(StoreWrite::AggregatorSeq {
            shard,
            aggregator: aggregator.to_vec(),
            seq,
        });
        self
    }

    /// Stores the commitment at `(shard, height)`.
    pub fn commitment(&mut self, shard: u64, height: u64, bytes: Vec<u8>) -> &mut Self {
        self.ops.push(StoreWrite::Commitment {
            shard,
            height,
            bytes,
        });
        self
    }

    /// Stores `job`'s proof.
    pub fn proof(&mut self, job: JobId, bytes: Vec<u8>) -> &mut Self {
        self.ops.push(StoreWrite::Proof { job, bytes });
        self
    }

    /// Adds one write.
    pub fn push(&mut self, write: StoreWrite) -> &mut Self {
        self.ops.push(write);
        self
    }

    /// The writes, in order.
    pub fn ops(&self) -> &[StoreWrite] {
        &self.ops
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// The appliance's durable store (cheap to clone: clones share one database).
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.db.path())
            .finish()
    }
}

/// RocksDB tuning of a [`Store`] (the configuration's `[storage]` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Bytes of the LRU block cache all column families share.
    pub block_cache_bytes: usize,
    /// Bytes a column family's memtable holds before it is flushed.
    pub write_buffer_bytes: usize,
    /// Background flush and compaction threads (at least 1).
    pub max_background_jobs: i32,
    /// Files RocksDB keeps open; `None` means no limit.
    pub max_open_files: Option<i32>,
}

impl Default for StoreOptions {
    /// The configuration's defaults: 256 MiB cache, 64 MiB memtables, 4 jobs, no file limit.
    fn default() -> Self {
        Self {
            block_cache_bytes: 256 << 20,
            write_buffer_bytes: 64 << 20,
            max_background_jobs: 4,
            max_open_files: None,
        }
    }
}

impl StoreOptions {
    fn column_family(&self, cache: &Cache) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(cache);
        let mut opts = Options::default();
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_size(self.write_buffer_bytes);
        opts
    }
}

impl Store {
    /// Opens (or creates) the store under `dir` with the default [`StoreOptions`].
    ///
    /// # Errors
    /// [`SchedulerError::Storage`] if RocksDB cannot open the directory (permissions, another
    /// process holds it, damaged files).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, SchedulerError> {
        Self::open_with(dir, &StoreOptions::default())
    }

    /// Opens (or creates) the store under `dir` with RocksDB tuned by `options`.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with(
        dir: impl AsRef<Path>,
        options: &StoreOptions,
    ) -> Result<Self, SchedulerError> {
        let cache = Cache::new_lru_cache(options.block_cache_bytes);
        let mut opts = options.column_family(&cache);
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(options.max_background_jobs.max(1));
        opts.set_max_open_files(options.max_open_files.unwrap_or(-1));
        let cfs = ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, options.column_family(&cache)));
        let db = DB::open_cf_descriptors(&opts, dir.as_ref(), cfs)
            .map_err(|e| SchedulerError::storage("opening the data dir", e))?;
        Ok(Self { db: Arc::new(db) })
    }

    /// A RocksDB property of the store's job journal column family (for example
    /// `rocksdb.block-cache-capacity`), as operators and tests read the tuning in force;
    /// `None` if RocksDB does not know it.
    pub fn property(&self, name: &str) -> Option<String> {
        self.db
            .property_value_cf(self.cf(ALL_CFS[0]), name)
            .ok()
            .flatten()
    }

    fn cf(&self, name: &'static str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is created when the store is opened")
    }

    fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, SchedulerError> {
        self.db
            .get_cf(self.cf(cf), key)
            .map_err(|e| SchedulerError::storage("reading a record", e))
    }

    /// Writes `batch` durably (WAL fsync before returning).
    pub(crate) fn write(&self, batch: rocksdb::WriteBatch) -> Result<(), SchedulerError> {
        self.write_with(batch, true)
    }

    /// Writes `batch` atomically; with `sync` the WAL (this write and every earlier one) is
    /// fsynced before returning, without it the write survives a process crash but not a
    /// power loss (and is then lost together with every later write: the WAL is a sequence).
    pub(crate) fn write_with(
        &self,
        batch: rocksdb::WriteBatch,
        sync: bool,
    ) -> Result<(), SchedulerError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db
            .write_opt(batch, &opts)
            .map_err(|e| SchedulerError::storage("writing a batch", e))
    }

    /// Commits `writes` atomically and durably.
    ///
    /// # Errors
    /// [`SchedulerError::Storage`] if the write fails; then nothing was written.
    pub fn commit(&self, writes: &WriteSet) -> Result<(), SchedulerError> {
        let mut batch = rocksdb::WriteBatch::default();
        self.add_writes(&mut batch, writes);
        self.write(batch)
    }

    /// Appends `writes` to a RocksDB batch.
    pub(crate) fn add_writes(&self, batch: &mut rocksdb::WriteBatch, writes: &WriteSet) {
        for op in writes.ops() {
            match op {
                StoreWrite::Smt { shard, batch: smt } => self.add_smt_ops(batch, *shard, smt.ops()),
                StoreWrite::ShardMeta { shard, meta } => {
                    batch.put_cf(self.cf(CF_META), shard_meta_key(*shard), encode_meta(meta));
                }
                StoreWrite::AggregatorSeq {
                    shard,
                    aggregator,
                    seq,
                } => batch.put_cf(
                    self.cf(CF_META),
                    aggregator_key(*shard, aggregator),
                    seq.to_le_bytes(),
                ),
                StoreWrite::Commitment {
                    shard,
                    height,
                    bytes,
                } => batch.put_cf(
                    self.cf(CF_COMMITMENTS),
                    commitment_key(*shard, *height),
                    bytes,
                ),
                StoreWrite::Proof { job, bytes } => {
                    batch.put_cf(self.cf(CF_PROOFS), job.0.to_be_bytes(), bytes);
                }
            }
        }
    }

    fn add_smt_ops(&self, batch: &mut rocksdb::WriteBatch, shard: u64, ops: &[StoreOp]) {
        let cf = self.cf(CF_SMT);
        for op in ops {
            match *op {
                StoreOp::PutLeaf { key, value } => {
                    batch.put_cf(cf, leaf_key(shard, key), encode_word(&value));
                }
                StoreOp::DeleteLeaf { key } => batch.delete_cf(cf, leaf_key(shard, key)),
                StoreOp::PutNode { index, value } => {
                    batch.put_cf(cf, node_key(shard, index), encode_word(&value));
                }
                StoreOp::DeleteNode { index } => batch.delete_cf(cf, node_key(shard, index)),
            }
        }
    }

    /// A shard's metadata; `None` for a shard never written.
    ///
    /// # Errors
    /// [`SchedulerError::Storage`] on a failed read, [`SchedulerError::Corrupt`] on a damaged
    /// record.
    pub fn shard_meta(&self, shard: u64) -> Result<Option<ShardMeta>, SchedulerError> {
        self.get(CF_META, &shard_meta_key(shard))?
            .map(|bytes| decode_meta(&bytes))
            .transpose()
    }

    /// An aggregator's last sequence number on `shard`; `None` if it never submitted.
    ///
    /// # Errors
    /// As [`shard_meta`](Self::shard_meta).
    pub fn aggregator_seq(
        &self,
        shard: u64,
        aggregator: &[u8],
    ) -> Result<Option<u64>, SchedulerError> {
        self.get(CF_META, &aggregator_key(shard, aggregator))?
            .map(|bytes| {
                <[u8; 8]>::try_from(bytes.as_slice())
                    .map(u64::from_le_bytes)
                    .map_err(|_| {
                        SchedulerError::corrupt(
                            "sequence number",
                            format!("{} bytes, expected 8", bytes.len()),
                        )
                    })
            })
            .transpose()
    }

    /// The commitment at `(shard, height)`, if stored.
    ///
    /// # Errors
    /// [`SchedulerError::Storage`] on a failed read.
    pub fn commitment(&self, shard: u64, height: u64) -> Result<Option<Vec<u8>>, SchedulerError> {
        self.get(CF_COMMITMENTS, &commitment_key(shard, height))
    }

    /// Up to `max` commitments of `shard` at heights `>= from_height`, in height order: the
    /// catch-up read for a subscriber.
    ///
    /// # Errors
    /// [`SchedulerError::Storage`] on a failed read, [`SchedulerError::Corrupt`] on a
    /// malformed key.
    pub fn commitments_from(
        &self,
        shard: u64,
        from_height: u64,
        max: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, SchedulerError> {
        let start = commitment_key(shard, from_height);
        let iter = self.db.iterator_cf(
            self.cf(CF_COMMITMENTS),
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            if out.len() >= max {
                break;
            }
            let (key, value) =
                item.map_err(|e| SchedulerError::storage("reading commitments", e))?;
            let Ok(key) = <[u8; 16]>::try_from(&key[..]) else {
                return Err(SchedulerError::corrupt(
                    "commitment key",
                    format!("{} bytes, expected 16", key.len()),
                ));
            };
            let (key_shard, height) = key.split_at(8);
            if key_shard != shard.to_be_bytes() {
                break;
            }
            let height = u64::from_be_bytes(
                height
                    .try_into()
                    .expect("the second half of a 16-byte key is 8 bytes"),
            );
            out.push((height, value.into_vec()));
        }
        Ok(out)
    }

    /// A job's proof, if one was stored.
    ///
    /// # Errors
    /// [`SchedulerError::Storage`] on a failed read.
    pub fn proof(&self, job: JobId) -> Result<Option<Vec<u8>>, SchedulerError> {
        self.get(CF_PROOFS, &job.0.to_be_bytes())
    }

    /// A job's payload, if the job exists.
    ///
    /// # Errors
    /// [`SchedulerError::Storage`] on a failed read.
    pub fn payload(&self, job: JobId) -> Result<Option<Vec<u8>>, SchedulerError> {
        self.get(CF_PAYLOADS, &job.0.to_be_bytes())
    }

    /// The output of a job's completed stage, if it completed.
    ///
    /// # Errors
    /// [`SchedulerError::Storage`] on a failed read.
    pub fn stage_output(
        &self,
        job: JobId,
        stage: Stage,
    ) -> Result<Option<Vec<u8>>, SchedulerError> {
        self.get(CF_OUTPUTS, &output_key(job, stage))
    }

    /// The SMT node store of `shard`, writing straight to the database.
    pub fn node_store(&self, shard: u64) -> ShardNodeStore {
        ShardNodeStore {
            store: self.clone(),
            shard,
        }
    }

    /// An SMT node store of `shard` that reads through to the database but keeps its writes in
    /// memory, for a stage to return them in its [`WriteSet`].
    pub fn staged_node_store(&self, shard: u64) -> StagedNodeStore {
        StagedNodeStore {
            base: self.node_store(shard),
            leaves: HashMap::new(),
            nodes: HashMap::new(),
            pending: crypto::smt::WriteBatch::new(),
        }
    }

    // ---- the job journal (crate-internal) ----

    pub(crate) fn job_record(&self, id: JobId) -> Result<Option<JobRecord>, SchedulerError> {
        self.get(CF_JOBS, &id.0.to_be_bytes())?
            .map(|bytes| JobRecord::decode(&bytes))
            .transpose()
    }

    /// Adds a job's record to `batch`, keeping the index of unfinished jobs in step.
    pub(crate) fn put_job(&self, batch: &mut rocksdb::WriteBatch, record: &JobRecord) {
        let key = record.job.id.0.to_be_bytes();
        batch.put_cf(self.cf(CF_JOBS), key, record.encode());
        if record.state == crate::job::DurableState::Active {
            batch.put_cf(self.cf(CF_ACTIVE), key, []);
        } else {
            batch.delete_cf(self.cf(CF_ACTIVE), key);
        }
    }

    pub(crate) fn put_payload(&self, batch: &mut rocksdb::WriteBatch, id: JobId, payload: &[u8]) {
        batch.put_cf(self.cf(CF_PAYLOADS), id.0.to_be_bytes(), payload);
    }

    pub(crate) fn put_output(
        &self,
        batch: &mut rocksdb::WriteBatch,
        id: JobId,
        stage: Stage,
        output: &[u8],
    ) {
        batch.put_cf(self.cf(CF_OUTPUTS), output_key(id, stage), output);
    }

    /// Every unfinished job's record, in id order.
    pub(crate) fn active_jobs(&self) -> Result<Vec<JobRecord>, SchedulerError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_ACTIVE), IteratorMode::Start) {
            let (key, _) =
                item.map_err(|e| SchedulerError::storage("reading the active-job index", e))?;
            let id = <[u8; 8]>::try_from(&key[..])
                .map(|k| JobId(u64::from_be_bytes(k)))
                .map_err(|_| {
                    SchedulerError::corrupt(
                        "active-job index",
                        format!("key of {} bytes", key.len()),
                    )
                })?;
            let record = self.job_record(id)?.ok_or_else(|| {
                SchedulerError::corrupt("active-job index", format!("job {id} has no record"))
            })?;
            out.push(record);
        }
        Ok(out)
    }

    /// The highest job id ever assigned, if any.
    pub(crate) fn last_job_id(&self) -> Result<Option<JobId>, SchedulerError> {
        match self
            .db
            .iterator_cf(self.cf(CF_JOBS), IteratorMode::End)
            .next()
        {
            None => Ok(None),
            Some(item) => {
                let (key, _) =
                    item.map_err(|e| SchedulerError::storage("reading the job journal", e))?;
                <[u8; 8]>::try_from(&key[..])
                    .map(|k| Some(JobId(u64::from_be_bytes(k))))
                    .map_err(|_| {
                        SchedulerError::corrupt(
                            "job key",
                            format!("{} bytes, expected 8", key.len()),
                        )
                    })
            }
        }
    }
}

/// The SMT nodes of one shard in the store, as a [`NodeStore`]:
/// [`write_batch`](NodeStore::write_batch) is one atomic, synced RocksDB write.
#[derive(Debug, Clone)]
pub struct ShardNodeStore {
    store: Store,
    shard: u64,
}

impl ShardNodeStore {
    /// The shard this store holds.
    pub fn shard(&self) -> u64 {
        self.shard
    }

    fn read_word(&self, key: &[u8]) -> Result<Option<Word>, crypto::Error> {
        let bytes = self
            .store
            .db
            .get_pinned_cf(self.store.cf(CF_SMT), key)
            .map_err(|e| crypto::Error::SmtStore {
                message: format!("reading shard {} SMT node: {e}", self.shard),
            })?;
        bytes
            .map(|b| {
                decode_word(&b).map_err(|detail| crypto::Error::SmtStore {
                    message: format!("shard {} SMT node is corrupt: {detail}", self.shard),
                })
            })
            .transpose()
    }
}

impl NodeStore for ShardNodeStore {
    fn get_leaf(&self, key: u64) -> Result<Option<Word>, crypto::Error> {
        self.read_word(&leaf_key(self.shard, key))
    }

    fn get_node(&self, index: NodeIndex) -> Result<Option<Word>, crypto::Error> {
        self.read_word(&node_key(self.shard, index))
    }

    fn write_batch(&mut self, batch: &crypto::smt::WriteBatch) -> Result<(), crypto::Error> {
        let mut wb = rocksdb::WriteBatch::default();
        self.store.add_smt_ops(&mut wb, self.shard, batch.ops());
        self.store.write(wb).map_err(|e| crypto::Error::SmtStore {
            message: format!("writing shard {} SMT nodes: {e}", self.shard),
        })
    }
}

/// A shard's SMT nodes with writes held in memory: reads see the pending writes first, then
/// the database. [`take_batch`](Self::take_batch) hands the writes over for a [`WriteSet`], so
/// that they commit atomically with a stage's completion.
#[derive(Debug, Clone)]
pub struct StagedNodeStore {
    base: ShardNodeStore,
    leaves: HashMap<u64, Option<Word>>,
    nodes: HashMap<NodeIndex, Option<Word>>,
    pending: crypto::smt::WriteBatch,
}

impl StagedNodeStore {
    /// The pending writes, in order, leaving none pending.
    pub fn take_batch(&mut self) -> crypto::smt::WriteBatch {
        self.leaves.clear();
        self.nodes.clear();
        std::mem::take(&mut self.pending)
    }

    /// The pending writes.
    pub fn pending(&self) -> &crypto::smt::WriteBatch {
        &self.pending
    }
}

impl NodeStore for StagedNodeStore {
    fn get_leaf(&self, key: u64) -> Result<Option<Word>, crypto::Error> {
        match self.leaves.get(&key) {
            Some(value) => Ok(*value),
            None => self.base.get_leaf(key),
        }
    }

    fn get_node(&self, index: NodeIndex) -> Result<Option<Word>, crypto::Error> {
        match self.nodes.get(&index) {
            Some(value) => Ok(*value),
            None => self.base.get_node(index),
        }
    }

    fn write_batch(&mut self, batch: &crypto::smt::WriteBatch) -> Result<(), crypto::Error> {
        for op in batch.ops() {
            match *op {
                StoreOp::PutLeaf { key, value } => {
                    self.leaves.insert(key, Some(value));
                }
                StoreOp::DeleteLeaf { key } => {
                    self.leaves.insert(key, None);
                }
                StoreOp::PutNode { index, value } => {
                    self.nodes.insert(index, Some(value));
                }
                StoreOp::DeleteNode { index } => {
                    self.nodes.insert(index, None);
                }
            }
            self.pending.push(*op);
        }
        Ok(())
    }
}

// ---- keys and values ----

fn leaf_key(shard: u64, key: u64) -> [u8; 17] {
    let mut out = [0u8; 17];
    out[..8].copy_from_slice(&shard.to_be_bytes());
    out[8] = 0;
    out[9..].copy_from_slice(&key.to_be_bytes());
    out
}

fn node_key(shard: u64, index: NodeIndex) -> [u8; 18] {
    let mut out = [0u8; 18];
    out[..8].copy_from_slice(&shard.to_be_bytes());
    out[8] = 1;
    out[9] = index.level;
    out[10..].copy_from_slice(&index.index.to_be_bytes());
    out
}

fn shard_meta_key(shard: u64) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0] = b'S';
    out[1..].copy_from_slice(&shard.to_be_bytes());
    out
}

fn aggregator_key(shard: u64, aggregator: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + aggregator.len());
    out.push(b'A');
    out.extend_from_slice(&shard.to_be_bytes());
    out.extend_from_slice(aggregator);
    out
}

fn commitment_key(shard: u64, height: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&shard.to_be_bytes());
    out[8..].copy_from_slice(&height.to_be_bytes());
    out
}

fn output_key(job: JobId, stage: Stage) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[..8].copy_from_slice(&job.0.to_be_bytes());
    out[8] = stage.code();
    out
}

fn encode_word(word: &Word) -> [u8; WORD_BYTES] {
    let mut out = [0u8; WORD_BYTES];
    for (chunk, element) in out.chunks_exact_mut(8).zip(word) {
        chunk.copy_from_slice(&element.as_int().to_le_bytes());
    }
    out
}

fn decode_word(bytes: &[u8]) -> Result<Word, String> {
    if bytes.len() != WORD_BYTES {
        return Err(format!("{} bytes, expected {WORD_BYTES}", bytes.len()));
    }
    let mut word = [BaseElement::new(0); 4];
    for (element, chunk) in word.iter_mut().zip(bytes.chunks_exact(8)) {
        let int = u64::from_le_bytes(chunk.try_into().expect("chunks_exact(8) yields 8 bytes"));
        if int >= BaseElement::MODULUS {
            return Err(format!("element {int} is not below the field modulus"));
        }
        *element = BaseElement::new(int);
    }
    Ok(word)
}

fn encode_meta(meta: &ShardMeta) -> [u8; WORD_BYTES + 8] {
    let mut out = [0u8; WORD_BYTES + 8];
    out[..WORD_BYTES].copy_from_slice(&encode_word(&meta.root));
    out[WORD_BYTES..].copy_from_slice(&meta.height.to_le_bytes());
    out
}

fn decode_meta(bytes: &[u8]) -> Result<ShardMeta, SchedulerError> {
    if bytes.len() != WORD_BYTES + 8 {
        return Err(SchedulerError::corrupt(
            "shard metadata",
            format!("{} bytes, expected {}", bytes.len(), WORD_BYTES + 8),
        ));
    }
    let (root, height) = bytes.split_at(WORD_BYTES);
    let root = decode_word(root).map_err(|d| SchedulerError::corrupt("shard metadata", d))?;
    let height = u64::from_le_bytes(height.try_into().expect("the split leaves exactly 8 bytes"));
    Ok(ShardMeta { root, height })
}
