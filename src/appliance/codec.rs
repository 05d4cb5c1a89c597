//! Canonical encodings of what the stages hand each other through the journal, and of SMT
//! witness lists in proving jobs. All little-endian through `crypto::encoding`, versioned,
//! strict (no trailing bytes), limits checked before allocation: the journal is input too.

use crypto::encoding::{Reader, Writer};
use crypto::smt::{UpdateWitness, Word};
use winter_math::StarkField;
use winter_math::fields::f64::BaseElement;

use super::Error;
use super::tx::{Invalid, Tx};

const VERSION: u8 = 1;
/// Most transactions a stored batch may carry (the wire limit is lower).
const MAX_TXS: u32 = 1 << 20;
/// Most witnesses in one list.
const MAX_WITNESSES: u32 = 1 << 20;

fn corrupt(what: &'static str) -> impl Fn(crypto::Error) -> Error {
    move |source| Error::Codec { what, source }
}

/// The 32-byte form of a word: its four elements as little-endian `u64`s (the wire's roots).
pub fn word_to_bytes(word: &Word) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, e) in out.chunks_exact_mut(8).zip(word) {
        chunk.copy_from_slice(&e.as_int().to_le_bytes());
    }
    out
}

/// Parses the 32-byte form of a word; `None` if an element is not canonical.
pub fn word_from_bytes(bytes: &[u8; 32]) -> Option<Word> {
    let mut word = [BaseElement::new(0); 4];
    for (e, chunk) in word.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut limb = [0u8; 8];
        limb.copy_from_slice(chunk);
        let v = u64::from_le_bytes(limb);
        if v >= BaseElement::MODULUS {
            return None;
        }
        *e = BaseElement::new(v);
    }
    Some(word)
}

fn put_word(w: &mut Writer, word: &Word) {
    w.put_raw(&word_to_bytes(word));
}

fn read_word(r: &mut Reader<'_>, what: &'static str) -> Result<Word, Error> {
    let bytes = r.array::<32>(what).map_err(corrupt(what))?;
    word_from_bytes(&bytes).ok_or(Error::NonCanonicalWord { what })
}

/// Output of the decap stage: the batch header and every transaction opened (or why not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decapped {
    /// Shard.
    pub shard: u32,
    /// Aggregator sequence number.
    pub seq: u64,
    /// The root the batch applies on.
    pub prev_root: [u8; 32],
    /// The batch hash.
    pub batch_hash: [u8; 32],
    /// The opened transactions in batch order.
    pub txs: Vec<Result<Tx, Invalid>>,
}

impl Decapped {
    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(80 + self.txs.len() * 40);
        w.put_u8(VERSION)
            .put_u32(self.shard)
            .put_u64(self.seq)
            .put_raw(&self.prev_root)
            .put_raw(&self.batch_hash)
            .put_u32(u32::try_from(self.txs.len()).unwrap_or(u32::MAX));
        for tx in &self.txs {
            match tx {
                Ok(tx) => w.put_u8(0).put_raw(&tx.to_bytes()),
                Err(reason) => w.put_u8(reason.code()),
            };
        }
        w.into_bytes()
    }

    /// Strict parse.
    ///
    /// # Errors
    /// [`Error::Codec`] on any defect.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let what = "decap output";
        let c = corrupt(what);
        let mut r = Reader::new(bytes);
        check_version(&mut r, what)?;
        let shard = r.u32(what).map_err(&c)?;
        let seq = r.u64(what).map_err(&c)?;
        let prev_root = r.array::<32>(what).map_err(&c)?;
        let batch_hash = r.array::<32>(what).map_err(&c)?;
        let n = r.u32(what).map_err(&c)?;
        if n > MAX_TXS || n as usize > r.remaining() {
            return Err(Error::Malformed {
                what,
                detail: format!("{n} transactions claimed"),
            });
        }
        let mut txs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let tag = r.u8(what).map_err(&c)?;
            if tag == 0 {
                // Peek the tag to know the length of the canonical encoding.
                let rest = r.rest();
                let len = match rest.get(1) {
                    Some(1) => super::tx::TRANSFER_LEN,
                    Some(2) => super::tx::DEPOSIT_LEN,
                    _ => {
                        return Err(Error::Malformed {
                            what,
                            detail: "unknown transaction tag".into(),
                        });
                    }
                };
                let Some(tx_bytes) = rest.get(..len) else {
                    return Err(Error::Malformed {
                        what,
                        detail: "truncated transaction".into(),
                    });
                };
                let tx = Tx::from_bytes(tx_bytes).map_err(|_| Error::Malformed {
                    what,
                    detail: "non-canonical transaction".into(),
                })?;
                txs.push(Ok(tx));
                r = Reader::new(&rest[len..]);
            } else {
                let reason = Invalid::from_code(tag).ok_or_else(|| Error::Malformed {
                    what,
                    detail: format!("unknown skip reason {tag}"),
                })?;
                txs.push(Err(reason));
            }
        }
        r.finish(what).map_err(&c)?;
        Ok(Self {
            shard,
            seq,
            prev_root,
            batch_hash,
            txs,
        })
    }
}

fn check_version(r: &mut Reader<'_>, what: &'static str) -> Result<(), Error> {
    let v = r.u8(what).map_err(corrupt(what))?;
    if v != VERSION {
        return Err(Error::Malformed {
            what,
            detail: format!("version {v}, this build reads {VERSION}"),
        });
    }
    Ok(())
}

/// Appends a witness list (`depth u8 || count u32 || witnesses`).
pub fn put_witnesses(w: &mut Writer, depth: u8, witnesses: &[UpdateWitness]) {
    w.put_u8(depth)
        .put_u32(u32::try_from(witnesses.len()).unwrap_or(u32::MAX));
    for wit in witnesses {
        w.put_u64(wit.key);
        put_word(w, &wit.old_value);
        put_word(w, &wit.new_value);
        for s in &wit.siblings {
            put_word(w, s);
        }
        put_word(w, &wit.old_root);
        put_word(w, &wit.new_root);
    }
}

/// Reads a witness list written by [`put_witnesses`]; every path has `depth` siblings.
///
/// # Errors
/// [`Error::Codec`] / [`Error::Malformed`] on any defect.
pub fn read_witnesses(r: &mut Reader<'_>) -> Result<(u8, Vec<UpdateWitness>), Error> {
    let what = "witness list";
    let c = corrupt(what);
    let depth = r.u8(what).map_err(&c)?;
    if !(1..=64).contains(&depth) {
        return Err(Error::Malformed {
            what,
            detail: format!("depth {depth} outside 1..=64"),
        });
    }
    let n = r.u32(what).map_err(&c)?;
    let each = 8 + 32 * (4 + usize::from(depth));
    if n > MAX_WITNESSES || (n as usize).saturating_mul(each) > r.remaining() {
        return Err(Error::Malformed {
            what,
            detail: format!("{n} witnesses claimed"),
        });
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let key = r.u64(what).map_err(&c)?;
        let old_value = read_word(r, what)?;
        let new_value = read_word(r, what)?;
        let mut siblings = Vec::with_capacity(usize::from(depth));
        for _ in 0..depth {
            siblings.push(read_word(r, what)?);
        }
        let old_root = read_word(r, what)?;
        let new_root = read_word(r, what)?;
        out.push(UpdateWitness {
            key,
            old_value,
            new_value,
            siblings,
            old_root,
            new_root,
        });
    }
    Ok((depth, out))
}

/// Encodes a witness list on its own (the `witness` blob of an `smt-update` proving job).
pub fn witnesses_to_bytes(depth: u8, witnesses: &[UpdateWitness]) -> Vec<u8> {
    let mut w = Writer::new();
    w.put_u8(VERSION);
    put_witnesses(&mut w, depth, witnesses);
    w.into_bytes()
}

/// Parses [`witnesses_to_bytes`].
///
/// # Errors
/// As [`read_witnesses`].
pub fn witnesses_from_bytes(bytes: &[u8]) -> Result<(u8, Vec<UpdateWitness>), Error> {
    let mut r = Reader::new(bytes);
    check_version(&mut r, "witness list")?;
    let out = read_witnesses(&mut r)?;
    r.finish("witness list").map_err(corrupt("witness list"))?;
    Ok(out)
}

/// Output of the execute stage: everything prove and publish need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// Shard.
    pub shard: u32,
    /// The height this batch reaches.
    pub height: u64,
    /// The batch hash.
    pub batch_hash: [u8; 32],
    /// Transactions applied.
    pub valid: u32,
    /// Transactions skipped.
    pub invalid: u32,
    /// Tree depth.
    pub depth: u8,
    /// The update witnesses, in order (at least one).
    pub witnesses: Vec<UpdateWitness>,
}

impl Executed {
    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.put_u8(VERSION)
            .put_u32(self.shard)
            .put_u64(self.height)
            .put_raw(&self.batch_hash)
            .put_u32(self.valid)
            .put_u32(self.invalid);
        put_witnesses(&mut w, self.depth, &self.witnesses);
        w.into_bytes()
    }

    /// Strict parse.
    ///
    /// # Errors
    /// [`Error::Codec`] / [`Error::Malformed`] on any defect.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let what = "execute output";
        let c = corrupt(what);
        let mut r = Reader::new(bytes);
        check_version(&mut r, what)?;
        let shard = r.u32(what).map_err(&c)?;
        let height = r.u64(what).map_err(&c)?;
        let batch_hash = r.array::<32>(what).map_err(&c)?;
        let valid = r.u32(what).map_err(&c)?;
        let invalid = r.u32(what).map_err(&c)?;
        let (depth, witnesses) = read_witnesses(&mut r)?;
        r.finish(what).map_err(&c)?;
        Ok(Self {
            shard,
            height,
            batch_hash,
            valid,
            invalid,
            depth,
            witnesses,
        })
    }
}

/// Output of the prove stage of a batch: the commitment's fields before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proved {
    /// Shard.
    pub shard: u32,
    /// Height reached.
    pub height: u64,
    /// Root before.
    pub old_root: [u8; 32],
    /// Root after.
    pub new_root: [u8; 32],
    /// Batch hash.
    pub batch_hash: [u8; 32],
    /// Proof envelope bytes.
    pub envelope: Vec<u8>,
}

impl Proved {
    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(120 + self.envelope.len());
        w.put_u8(VERSION)
            .put_u32(self.shard)
            .put_u64(self.height)
            .put_raw(&self.old_root)
            .put_raw(&self.new_root)
            .put_raw(&self.batch_hash)
            .put_u32(u32::try_from(self.envelope.len()).unwrap_or(u32::MAX))
            .put_raw(&self.envelope);
        w.into_bytes()
    }

    /// Strict parse.
    ///
    /// # Errors
    /// [`Error::Codec`] on any defect.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let what = "prove output";
        let c = corrupt(what);
        let mut r = Reader::new(bytes);
        check_version(&mut r, what)?;
        let out = Self {
            shard: r.u32(what).map_err(&c)?,
            height: r.u64(what).map_err(&c)?,
            old_root: r.array::<32>(what).map_err(&c)?,
            new_root: r.array::<32>(what).map_err(&c)?,
            batch_hash: r.array::<32>(what).map_err(&c)?,
            envelope: r
                .bytes(what, prover::envelope::MAX_ENVELOPE_LEN as u32)
                .map_err(&c)?
                .to_vec(),
        };
        r.finish(what).map_err(&c)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto::smt::{MemStore, Smt};
    use proptest::prelude::*;

    fn arb_entry() -> impl Strategy<Value = Result<Tx, Invalid>> {
        prop_oneof![
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(a, b, c, d)| Ok(
                Tx::Transfer {
                    from: a,
                    to: b,
                    amount: c,
                    nonce: d
                }
            )),
            (any::<u64>(), any::<u64>()).prop_map(|(a, b)| Ok(Tx::Deposit { to: a, amount: b })),
            (0usize..Invalid::ALL.len()).prop_map(|i| Err(Invalid::ALL[i])),
        ]
    }

    proptest! {
        #[test]
        fn decapped_round_trips_and_rejects_truncation(
            shard in any::<u32>(), seq in any::<u64>(), root in any::<[u8; 32]>(),
            hash in any::<[u8; 32]>(), txs in proptest::collection::vec(arb_entry(), 0..20),
            cut in any::<proptest::sample::Index>(),
        ) {
            let d = Decapped { shard, seq, prev_root: root, batch_hash: hash, txs };
            let bytes = d.to_bytes();
            prop_assert_eq!(Decapped::from_bytes(&bytes).expect("round trip"), d);
            let cut = cut.index(bytes.len());
            prop_assert!(Decapped::from_bytes(&bytes[..cut]).is_err());
        }

        #[test]
        fn witnesses_round_trip(keys in proptest::collection::vec(0u64..256, 1..6), v in any::<u32>()) {
            let mut tree = Smt::new(8, MemStore::new()).expect("depth 8 is valid");
            let updates: Vec<(u64, Word)> = keys.iter().map(|k| (*k, [BaseElement::new(u64::from(v) + k); 4])).collect();
            let witnesses = tree.update_batch(&updates).expect("keys fit depth 8");
            let bytes = witnesses_to_bytes(8, &witnesses);
            let (depth, back) = witnesses_from_bytes(&bytes).expect("round trip");
            prop_assert_eq!(depth, 8);
            prop_assert_eq!(&back, &witnesses);
            let e = Executed { shard: 3, height: 9, batch_hash: [7; 32], valid: 1, invalid: 2, depth, witnesses: back };
            prop_assert_eq!(Executed::from_bytes(&e.to_bytes()).expect("round trip"), e);
            prop_assert!(witnesses_from_bytes(&bytes[..bytes.len() - 1]).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Decapped::from_bytes(&bytes);
            let _ = Executed::from_bytes(&bytes);
            let _ = Proved::from_bytes(&bytes);
            let _ = witnesses_from_bytes(&bytes);
        }
    }

    #[test]
    fn word_bytes_reject_non_canonical_elements() {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&BaseElement::MODULUS.to_le_bytes());
        assert_eq!(word_from_bytes(&bytes), None);
        bytes[..8].copy_from_slice(&(BaseElement::MODULUS - 1).to_le_bytes());
        let w = word_from_bytes(&bytes).expect("p - 1 is canonical");
        assert_eq!(word_to_bytes(&w), bytes);
    }
}
