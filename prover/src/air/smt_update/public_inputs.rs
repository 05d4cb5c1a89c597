//! Public inputs of `smt-update` and their canonical byte encoding.
//!
//! Encoding (version 1, little-endian, strict): `version: u8 = 1`, `depth: u8`,
//! `count: u32`, `old_root`, `new_root`, `commitment` (each 4 × `u64`), then `count` updates of
//! `key: u64`, `old_value`, `new_value` (4 × `u64` each). Field elements must be canonical
//! (`< p`), keys must fit the depth, the commitment must match the list, and nothing may follow.

use winter_math::{StarkField, fields::f64::BaseElement};

use super::{CYCLE_LENGTH, Layout, MAX_UPDATES, SmtUpdateWitness, Word, commit_updates};
use crate::Error;

/// Current encoding version of [`SmtUpdatePublicInputs::to_bytes`].
pub const ENCODING_VERSION: u8 = 1;

const WORD_BYTES: usize = 32;
const HEADER_BYTES: usize = 1 + 1 + 4 + 3 * WORD_BYTES;
const UPDATE_BYTES: usize = 8 + 2 * WORD_BYTES;

/// One public update: `key` moved from `old_value` to `new_value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmtUpdate {
    /// The updated key.
    pub key: u64,
    /// The leaf's value before the update.
    pub old_value: Word,
    /// The leaf's value after the update.
    pub new_value: Word,
}

impl From<&SmtUpdateWitness> for SmtUpdate {
    fn from(w: &SmtUpdateWitness) -> Self {
        SmtUpdate {
            key: w.key,
            old_value: w.old_value,
            new_value: w.new_value,
        }
    }
}

/// The public statement of an `smt-update` proof: depth, both roots, the ordered update list
/// and the Rescue commitment to that list.
///
/// Always valid once built: the constructors check the depth, the batch size and every key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtUpdatePublicInputs {
    depth: u8,
    old_root: Word,
    new_root: Word,
    updates: Vec<SmtUpdate>,
    commitment: Word,
    layout: Layout,
}

impl SmtUpdatePublicInputs {
    /// Builds the statement "`updates`, applied in order to the tree of depth `depth` with root
    /// `old_root`, give `new_root`".
    pub fn new(
        depth: u8,
        old_root: Word,
        new_root: Word,
        updates: Vec<SmtUpdate>,
    ) -> Result<Self, Error> {
        let layout = Layout::new(depth as usize, updates.len())?;
        for (index, update) in updates.iter().enumerate() {
            check_key(index, update.key, depth)?;
        }
        let commitment = commit_updates(depth, &updates);
        Ok(SmtUpdatePublicInputs {
            depth,
            old_root,
            new_root,
            updates,
            commitment,
            layout,
        })
    }

    /// The statement a batch of witnesses claims: `old_root` of the first, `new_root` of the
    /// last, and the list of `(key, old_value, new_value)`.
    pub fn from_witnesses(depth: u8, witnesses: &[SmtUpdateWitness]) -> Result<Self, Error> {
        let (Some(first), Some(last)) = (witnesses.first(), witnesses.last()) else {
            return Err(Error::SmtEmptyBatch);
        };
        Self::new(
            depth,
            first.old_root,
            last.new_root,
            witnesses.iter().map(SmtUpdate::from).collect(),
        )
    }

    /// Tree depth.
    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// Root before the batch.
    pub fn old_root(&self) -> &Word {
        &self.old_root
    }

    /// Root after the batch.
    pub fn new_root(&self) -> &Word {
        &self.new_root
    }

    /// The ordered update list.
    pub fn updates(&self) -> &[SmtUpdate] {
        &self.updates
    }

    /// The Rescue commitment to the update list (see [`commit_updates`]).
    pub fn commitment(&self) -> &Word {
        &self.commitment
    }

    /// The trace layout of this statement.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The trace length a proof of this statement has.
    pub fn trace_length(&self) -> usize {
        self.layout.trace_length
    }

    /// The update proved in segment `segment`: a real update, or for padding segments the last
    /// update replayed as a no-op (`new_value → new_value`).
    pub(crate) fn segment_update(&self, segment: usize) -> SmtUpdate {
        match self.updates.get(segment) {
            Some(update) => *update,
            None => {
                let last = *self
                    .updates
                    .last()
                    .expect("constructors reject an empty update list");
                SmtUpdate {
                    key: last.key,
                    old_value: last.new_value,
                    new_value: last.new_value,
                }
            }
        }
    }

    /// The key bit of every cycle of the trace (filler levels: 0).
    pub(crate) fn bit_sequence(&self) -> Vec<BaseElement> {
        let layout = &self.layout;
        let mut bits = Vec::with_capacity(layout.trace_length / CYCLE_LENGTH);
        for segment in 0..layout.segments {
            let key = self.segment_update(segment).key;
            for level in 0..layout.levels {
                let bit = level < layout.depth && (key >> level) & 1 == 1;
                bits.push(BaseElement::from(bit));
            }
        }
        bits
    }

    /// The canonical encoding (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + UPDATE_BYTES * self.updates.len());
        out.push(ENCODING_VERSION);
        out.push(self.depth);
        // the constructors bound the count by MAX_UPDATES < 2^32
        let count = u32::try_from(self.updates.len()).expect("update count bounded by MAX_UPDATES");
        out.extend_from_slice(&count.to_le_bytes());
        for word in [&self.old_root, &self.new_root, &self.commitment] {
            put_word(&mut out, word);
        }
        for update in &self.updates {
            out.extend_from_slice(&update.key.to_le_bytes());
            put_word(&mut out, &update.old_value);
            put_word(&mut out, &update.new_value);
        }
        out
    }

    /// Decodes [`SmtUpdatePublicInputs::to_bytes`] strictly: version, limits (before
    /// allocating), exact length, canonical field elements, key ranges and the commitment.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut reader = Reader { bytes, pos: 0 };
        let version = reader.u8("public inputs version")?;
        if version != ENCODING_VERSION {
            return Err(Error::UnsupportedVersion {
                found: version.into(),
                supported: ENCODING_VERSION.into(),
            });
        }
        let depth = reader.u8("tree depth")?;
        let count = reader.u32("update count")? as usize;
        if count > MAX_UPDATES {
            return Err(Error::SmtTooManyUpdates {
                count,
                max: MAX_UPDATES,
                depth: depth as usize,
            });
        }
        let old_root = reader.word("old root")?;
        let new_root = reader.word("new root")?;
        let commitment = reader.word("update-list commitment")?;
        let needed = count * UPDATE_BYTES;
        let remaining = bytes.len() - reader.pos;
        if remaining < needed {
            return Err(Error::Truncated {
                what: "update list",
                needed: needed as u64,
                remaining: remaining as u64,
            });
        }
        if remaining > needed {
            return Err(Error::TrailingBytes {
                what: "smt-update public inputs",
                count: (remaining - needed) as u64,
            });
        }
        let mut updates = Vec::with_capacity(count);
        for _ in 0..count {
            let key = reader.u64("update key")?;
            let old_value = reader.word("old value")?;
            let new_value = reader.word("new value")?;
            updates.push(SmtUpdate {
                key,
                old_value,
                new_value,
            });
        }
        let inputs = Self::new(depth, old_root, new_root, updates)?;
        if inputs.commitment != commitment {
            return Err(Error::SmtCommitmentMismatch);
        }
        Ok(inputs)
    }
}

pub(super) fn check_key(index: usize, key: u64, depth: u8) -> Result<(), Error> {
    if depth < 64 && key >> depth != 0 {
        return Err(Error::SmtKeyOutOfRange {
            index,
            key,
            depth: depth as usize,
        });
    }
    Ok(())
}

fn put_word(out: &mut Vec<u8>, word: &Word) {
    for element in word {
        out.extend_from_slice(&element.as_int().to_le_bytes());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let remaining = self.bytes.len() - self.pos;
        let Some(slice) = self.bytes.get(self.pos..self.pos + N) else {
            return Err(Error::Truncated {
                what,
                needed: N as u64,
                remaining: remaining as u64,
            });
        };
        self.pos += N;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.take::<1>(what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.take(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.take(what)?))
    }

    fn word(&mut self, what: &'static str) -> Result<Word, Error> {
        let mut word = [BaseElement::new(0); 4];
        for element in word.iter_mut() {
            let value = self.u64(what)?;
            if value >= BaseElement::MODULUS {
                return Err(Error::SmtNonCanonical { what, value });
            }
            *element = BaseElement::new(value);
        }
        Ok(word)
    }
}
