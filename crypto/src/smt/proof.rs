//! Membership and non-membership proofs and their byte encoding.
//!
//! # Encoding, version 1 (all integers little-endian)
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, `1` |
//! | 1 | depth `d`, `1..=64` |
//! | 1 | flags: bit 0 set = the value is the empty word and is omitted; other bits zero |
//! | 8 | key, `< 2^d` |
//! | 8 | default bitmap: bit `i` set = `siblings[i]` is the empty-subtree root `E[i]` and is omitted; bits `>= d` zero |
//! | 0 or 32 | the value: four field elements, 8 bytes each, canonical (`< 2^64 - 2^32 + 1`) |
//! | 32 per clear bit | the other siblings, leaf level first, canonical |
//!
//! The encoding is unique: a value or sibling that could have been omitted must be, any other
//! form is rejected, and there are no trailing bytes. The whole length is known after the
//! 19-byte header and is checked before anything is allocated; no proof exceeds
//! [`MAX_PROOF_BYTES`].

use winter_math::{StarkField, fields::f64::BaseElement};

use super::{
    EMPTY_WORD, Word, check_depth, check_key, empty_subtree_root, key_in_range, root_from_path,
};
use crate::Error;

/// The encoding version written by [`SmtProof::to_bytes`] and accepted by
/// [`SmtProof::from_bytes`].
pub const PROOF_VERSION: u8 = 1;

/// Header: version, depth, flags, key, default bitmap.
const HEADER_BYTES: usize = 3 + 8 + 8;

/// One word on the wire: four 8-byte elements.
const WORD_BYTES: usize = 32;

/// Flag bit: the value is the empty word and is omitted.
const FLAG_EMPTY_VALUE: u8 = 1;

/// The largest encoded proof: depth 64 with a value and no default sibling.
pub const MAX_PROOF_BYTES: usize = HEADER_BYTES + WORD_BYTES * (1 + 64);

/// A proof that `key` holds `value` in a tree with a given root; with `value` equal to
/// [`EMPTY_WORD`] it proves that `key` is absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtProof {
    /// The proven key.
    pub key: u64,
    /// The key's value ([`EMPTY_WORD`] for a non-membership proof).
    pub value: Word,
    /// The authentication path, leaf level first; its length is the tree's depth.
    pub siblings: Vec<Word>,
}

impl SmtProof {
    /// `true` if the proof has `depth` siblings, its key fits that depth and hashing `value`
    /// up the path gives `root`.
    pub fn verify(&self, root: &Word, depth: u8) -> bool {
        check_depth(depth).is_ok()
            && self.siblings.len() == usize::from(depth)
            && key_in_range(self.key, depth)
            && root_from_path(self.key, &self.value, &self.siblings) == *root
    }

    /// The root this proof commits to (hashing `value` up the path), whatever the depth.
    pub fn computed_root(&self) -> Word {
        root_from_path(self.key, &self.value, &self.siblings)
    }

    /// Encodes the proof (version 1, see the [module documentation](self)).
    ///
    /// A proof whose path is longer than 64 cannot come from a tree; only its first 64
    /// siblings are then considered and [`from_bytes`](Self::from_bytes) would read back a
    /// different proof, so callers encode proofs made by [`Smt::prove`](super::Smt::prove).
    pub fn to_bytes(&self) -> Vec<u8> {
        let siblings = &self.siblings[..self.siblings.len().min(64)];
        let depth = u8::try_from(siblings.len()).expect("at most 64 siblings are encoded");
        let mut bitmap = 0u64;
        for (level, sibling) in siblings.iter().enumerate() {
            if *sibling == empty_subtree_root(depth_level(level)) {
                bitmap |= 1 << level;
            }
        }
        let value_empty = self.value == EMPTY_WORD;
        let explicit = siblings.len() - bitmap.count_ones() as usize + usize::from(!value_empty);
        let mut out = Vec::with_capacity(HEADER_BYTES + WORD_BYTES * explicit);
        out.push(PROOF_VERSION);
        out.push(depth);
        out.push(if value_empty { FLAG_EMPTY_VALUE } else { 0 });
        out.extend_from_slice(&self.key.to_le_bytes());
        out.extend_from_slice(&bitmap.to_le_bytes());
        if !value_empty {
            put_word(&mut out, &self.value);
        }
        for (level, sibling) in siblings.iter().enumerate() {
            if bitmap & (1 << level) == 0 {
                put_word(&mut out, sibling);
            }
        }
        out
    }

    /// Decodes a proof written by [`to_bytes`](Self::to_bytes), strictly.
    ///
    /// Decoding does not verify the proof: call [`verify`](Self::verify) with the trusted root
    /// and depth.
    ///
    /// # Errors
    /// [`Error::SmtProofLength`] if the input is shorter or longer than its header says;
    /// [`Error::SmtProofVersion`], [`Error::SmtInvalidDepth`], [`Error::SmtProofFlags`],
    /// [`Error::SmtKeyOutOfRange`] or [`Error::SmtProofBitmap`] for a bad header field;
    /// [`Error::SmtProofNonCanonical`] for a field element `>= 2^64 - 2^32 + 1`;
    /// [`Error::SmtProofNotCompact`] for a value or sibling written out that must be omitted.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let header: &[u8; HEADER_BYTES] = bytes
            .get(..HEADER_BYTES)
            .and_then(|h| h.try_into().ok())
            .ok_or(Error::SmtProofLength {
                expected: HEADER_BYTES,
                actual: bytes.len(),
            })?;
        let [version, depth, flags, ..] = *header;
        if version != PROOF_VERSION {
            return Err(Error::SmtProofVersion { version });
        }
        check_depth(depth)?;
        if flags & !FLAG_EMPTY_VALUE != 0 {
            return Err(Error::SmtProofFlags { flags });
        }
        let key = u64::from_le_bytes(split8(&header[3..11]));
        check_key(key, depth)?;
        let bitmap = u64::from_le_bytes(split8(&header[11..19]));
        if depth < 64 && bitmap >> depth != 0 {
            return Err(Error::SmtProofBitmap { bitmap, depth });
        }
        let value_empty = flags & FLAG_EMPTY_VALUE != 0;
        let explicit =
            usize::from(depth) - bitmap.count_ones() as usize + usize::from(!value_empty);
        let expected = HEADER_BYTES + WORD_BYTES * explicit;
        if bytes.len() != expected {
            return Err(Error::SmtProofLength {
                expected,
                actual: bytes.len(),
            });
        }
        let mut offset = HEADER_BYTES;
        let value = if value_empty {
            EMPTY_WORD
        } else {
            let value = read_word(bytes, offset)?;
            if value == EMPTY_WORD {
                return Err(Error::SmtProofNotCompact { offset });
            }
            offset += WORD_BYTES;
            value
        };
        let mut siblings = Vec::with_capacity(usize::from(depth));
        for level in 0..usize::from(depth) {
            let default = empty_subtree_root(depth_level(level));
            if bitmap & (1 << level) != 0 {
                siblings.push(default);
                continue;
            }
            let sibling = read_word(bytes, offset)?;
            if sibling == default {
                return Err(Error::SmtProofNotCompact { offset });
            }
            siblings.push(sibling);
            offset += WORD_BYTES;
        }
        Ok(Self {
            key,
            value,
            siblings,
        })
    }
}

/// A path level (below 64 by construction) as the `u8` the empty-root table takes.
fn depth_level(level: usize) -> u8 {
    u8::try_from(level).unwrap_or(u8::MAX)
}

/// An 8-byte slice as an array (callers pass fixed 8-byte ranges).
fn split8(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(bytes);
    out
}

/// Appends a word as four canonical little-endian `u64`s.
fn put_word(out: &mut Vec<u8>, word: &Word) {
    for element in word {
        out.extend_from_slice(&element.as_int().to_le_bytes());
    }
}

/// Reads the word at `offset`; the caller has checked the total length.
fn read_word(bytes: &[u8], offset: usize) -> Result<Word, Error> {
    let mut word = EMPTY_WORD;
    for (i, element) in word.iter_mut().enumerate() {
        let at = offset + 8 * i;
        let raw = bytes
            .get(at..at + 8)
            .map(split8)
            .ok_or(Error::SmtProofLength {
                expected: at + 8,
                actual: bytes.len(),
            })?;
        let int = u64::from_le_bytes(raw);
        if int >= BaseElement::MODULUS {
            return Err(Error::SmtProofNonCanonical { offset: at });
        }
        *element = BaseElement::new(int);
    }
    Ok(word)
}
