//! The other side of the wire, for `epa demo`, `epa submit`, `epa subscribe` and the tests: a
//! simulated aggregator that keeps a mirror of its shard's accounts (so it knows each batch's
//! `prev_root` and the root it must lead to) and a validator check that trusts nothing the
//! appliance says: it verifies the appliance signature and the proof with the stock
//! winterfell verifier, and that the proved statement is the committed transition.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crypto::dsa::mldsa65;
use crypto::kem::mlkem768;
use crypto::seal::{TxContext, seal_transaction_keyed};
use crypto::smt::{MemStore, Smt};
use node_lite::client::Client;
use node_lite::wire::{Batch, Commitment, JobId, Limits, RejectCode};
use prover::air::smt_update::AIR_NAME;
use prover::envelope::VerifiedStatement;
use prover::registry::Statement;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::Error;
use super::codec::word_to_bytes;
use super::tx::{self, Account, Applied, Tx, account_key};

/// A simulated shard aggregator.
pub struct SimAggregator {
    pair: mldsa65::KeyPair,
    shard: u32,
    shard_key: mlkem768::EncapsulationKey,
    mirror: Smt<MemStore>,
    accounts: Vec<u64>,
    seq: u64,
    rng: ChaCha20Rng,
    limits: Limits,
    external_root: Option<[u8; 32]>,
}

impl std::fmt::Debug for SimAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimAggregator")
            .field("shard", &self.shard)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// A signed batch ready to submit, and what it does to the mirror once accepted.
#[derive(Debug, Clone)]
pub struct PreparedBatch {
    /// The signed batch.
    pub batch: Batch,
    /// Its batch hash.
    pub batch_hash: [u8; 32],
    /// The root the shard reaches when the appliance executes it.
    pub new_root: [u8; 32],
    /// Transactions in the batch.
    pub txs: usize,
    applied: Applied,
}

impl SimAggregator {
    /// An aggregator for `shard` (tree `depth`, fresh state) with `accounts` random accounts;
    /// `seed` makes its transactions reproducible.
    ///
    /// # Errors
    /// [`Error::Crypto`] for an invalid depth.
    pub fn new(
        pair: mldsa65::KeyPair,
        shard: u32,
        depth: u8,
        shard_key: mlkem768::EncapsulationKey,
        accounts: usize,
        seed: u64,
        limits: Limits,
    ) -> Result<Self, Error> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut keys = std::collections::BTreeSet::new();
        let mut ids = Vec::new();
        // Distinct leaves; at most 2^depth of them exist.
        let want = accounts.clamp(2, 1usize << depth.min(20));
        while ids.len() < want {
            let id: u64 = rng.r#gen();
            if keys.insert(account_key(id, depth)) {
                ids.push(id);
            }
        }
        Ok(Self {
            pair,
            shard,
            shard_key,
            mirror: Smt::new(depth, MemStore::new())?,
            accounts: ids,
            seq: 0,
            rng,
            limits,
            external_root: None,
        })
    }

    /// The aggregator's verifying key (configure it as a tenant).
    pub fn verifying_key(&self) -> &mldsa65::VerifyingKey {
        &self.pair.verifying_key
    }

    /// The shard.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// The last accepted sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The root the next batch applies on: the mirror's root (the shard root after every
    /// accepted batch executed), unless [`resume_at`](Self::resume_at) set one.
    pub fn root(&self) -> [u8; 32] {
        self.external_root
            .unwrap_or_else(|| word_to_bytes(&self.mirror.root()))
    }

    /// Continues a shard whose state this aggregator did not produce: the last accepted
    /// sequence number and the shard's current root (from its latest commitment). The mirror
    /// no longer predicts roots, so [`PreparedBatch::new_root`] is then only a guess.
    pub fn resume_at(&mut self, last_seq: u64, root: [u8; 32]) {
        self.seq = last_seq;
        self.external_root = Some(root);
    }

    /// `count` transactions valid on the current mirror, in order: deposits while accounts
    /// are unfunded, random transfers among funded accounts after.
    ///
    /// # Errors
    /// Never for the in-memory mirror; the signature is kept for symmetry with stores.
    pub fn random_txs(&mut self, count: usize) -> Result<Vec<Tx>, Error> {
        let depth = self.mirror.depth();
        let mut state: HashMap<u64, Account> = HashMap::new();
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let get = |id: u64, mirror: &Smt<MemStore>| -> Result<Account, Error> {
                let key = account_key(id, depth);
                if let Some(a) = state.get(&key) {
                    return Ok(*a);
                }
                Ok(Account::from_word(&mirror.get(key)?).unwrap_or_default())
            };
            let from = self.accounts[self.rng.gen_range(0..self.accounts.len())];
            let mut to = self.accounts[self.rng.gen_range(0..self.accounts.len())];
            if to == from {
                to = self.accounts[(self.accounts.iter().position(|a| *a == from).unwrap_or(0)
                    + 1)
                    % self.accounts.len()];
            }
            let sender = get(from, &self.mirror)?;
            let receiver = get(to, &self.mirror)?;
            let tx = if sender.balance == 0 {
                let amount = self.rng.gen_range(1_000..10_000);
                state.insert(
                    account_key(from, depth),
                    Account {
                        balance: sender.balance + amount,
                        nonce: sender.nonce,
                    },
                );
                Tx::Deposit { to: from, amount }
            } else {
                let amount = self.rng.gen_range(1..=sender.balance.min(500));
                state.insert(
                    account_key(from, depth),
                    Account {
                        balance: sender.balance - amount,
                        nonce: sender.nonce + 1,
                    },
                );
                state.insert(
                    account_key(to, depth),
                    Account {
                        balance: receiver.balance + amount,
                        nonce: receiver.nonce,
                    },
                );
                Tx::Transfer {
                    from,
                    to,
                    amount,
                    nonce: sender.nonce,
                }
            };
            out.push(tx);
        }
        Ok(out)
    }

    /// Seals `txs` to the shard key for the next sequence number and signs the batch. Extra
    /// raw entries in `raw` are appended as they are (tests use them for undecryptable
    /// transactions).
    ///
    /// # Errors
    /// [`Error::Crypto`] or [`Error::Node`] if sealing or signing fails.
    pub fn prepare(&mut self, txs: &[Tx], raw: Vec<Vec<u8>>) -> Result<PreparedBatch, Error> {
        let seq = self.seq + 1;
        let ctx = TxContext {
            shard: self.shard,
            batch: seq,
        };
        let mut sealed = Vec::with_capacity(txs.len() + raw.len());
        for tx in txs {
            sealed.push(
                seal_transaction_keyed(&self.shard_key, &tx.to_bytes(), &ctx, &mut self.rng)?
                    .to_bytes(),
            );
        }
        let n = sealed.len() + raw.len();
        let mut entries: Vec<Result<Tx, tx::Invalid>> = txs.iter().copied().map(Ok).collect();
        entries.extend(raw.iter().map(|_| Err(tx::Invalid::Open)));
        sealed.extend(raw);
        let applied = tx::apply(&self.mirror, &entries)?;
        // The new root: apply to the mirror, then undo (the mirror moves only on acceptance).
        let updates = if applied.updates.is_empty() {
            vec![(0, self.mirror.get(0)?)]
        } else {
            applied.updates.clone()
        };
        let witnesses = self.mirror.update_batch(&updates)?;
        let new_root = self.mirror.root();
        // Roll back: undo the updates in reverse order.
        let undo: Vec<_> = witnesses
            .iter()
            .rev()
            .map(|w| (w.key, w.old_value))
            .collect();
        self.mirror.apply_batch(&undo)?;
        let prev_root = self.root();
        let batch = Batch::sign(
            self.shard,
            seq,
            prev_root,
            sealed,
            &self.pair.signing_key,
            &self.pair.verifying_key,
            &self.rng.r#gen(),
            &self.limits,
        )?;
        let batch_hash = batch.batch_hash(&self.limits)?;
        Ok(PreparedBatch {
            batch,
            batch_hash,
            new_root: word_to_bytes(&new_root),
            txs: n,
            applied,
        })
    }

    /// Records that `prepared` was accepted: the sequence number and the mirror move on.
    ///
    /// # Errors
    /// Never for the in-memory mirror.
    pub fn accepted(&mut self, prepared: &PreparedBatch) -> Result<(), Error> {
        self.seq = prepared.batch.seq;
        if !prepared.applied.updates.is_empty() {
            self.mirror.apply_batch(&prepared.applied.updates)?;
        }
        Ok(())
    }

    /// Submits `prepared`, retrying while the appliance answers `Busy` (the shard's previous
    /// batch has not executed yet) until `patience` runs out; records acceptance.
    ///
    /// # Errors
    /// [`Error::Node`] with the rejection or the transport error.
    pub async fn submit(
        &mut self,
        client: &Client,
        prepared: &PreparedBatch,
        patience: Duration,
    ) -> Result<JobId, Error> {
        let deadline = Instant::now() + patience;
        let mut wait = Duration::from_millis(2);
        loop {
            match client.submit_batch(&prepared.batch).await {
                Ok(id) => {
                    self.accepted(prepared)?;
                    return Ok(id);
                }
                Err(node_lite::Error::Rejected {
                    code: RejectCode::Busy,
                    ..
                }) if Instant::now() < deadline => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Verifies a commitment as a validator does: the appliance's ML-DSA-65 signature, the proof
/// envelope with the stock winterfell verifier (never the appliance's prover code), and that
/// the proof's statement is an `smt-update` from the commitment's `old_root` to its
/// `new_root`.
///
/// # Errors
/// [`Error::Unverified`] naming what failed.
pub fn verify_commitment(
    c: &Commitment,
    appliance_key: &mldsa65::VerifyingKey,
) -> Result<VerifiedStatement, Error> {
    let fail = |reason: String| Error::Unverified {
        shard: c.shard,
        height: c.height,
        reason,
    };
    c.verify(appliance_key)
        .map_err(|e| fail(format!("appliance signature: {e}")))?;
    let verified =
        prover::envelope::verify_envelope(&c.proof).map_err(|e| fail(format!("proof: {e}")))?;
    match &verified.statement {
        Statement::SmtUpdate(pi) => {
            if word_to_bytes(pi.old_root()) != c.old_root
                || word_to_bytes(pi.new_root()) != c.new_root
            {
                return Err(fail("the proof's roots are not the committed roots".into()));
            }
        }
        other => {
            return Err(fail(format!(
                "the proof is not an {AIR_NAME} proof: {other}"
            )));
        }
    }
    Ok(verified)
}
