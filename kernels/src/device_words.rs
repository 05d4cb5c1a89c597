//! Conversions between winter-math / winter-crypto types and the raw `u64` words the GPU
//! backends (wgpu and CUDA) move to and from device memory: field elements as their Montgomery
//! words, digests as 4 words each, and Merkle trees rebuilt from downloaded node words.

use winter_crypto::{
    Hasher, MerkleTree,
    hashers::{Blake3_256, Rp64_256},
};
use winter_math::fields::f64::BaseElement;

use crate::{Error, backend::check_len};

/// The raw Montgomery words of `elements`.
pub(crate) fn words_of(elements: &[BaseElement]) -> Vec<u64> {
    elements.iter().map(|e| e.inner()).collect()
}

/// The elements whose raw Montgomery words are `words`.
pub(crate) fn elements_of(words: &[u64]) -> Vec<BaseElement> {
    words.iter().map(|&w| BaseElement::from_mont(w)).collect()
}

/// The `Rp64_256` digests stored as 4 Montgomery words each.
pub(crate) fn rp_digests(words: &[u64]) -> Vec<<Rp64_256 as Hasher>::Digest> {
    words
        .chunks_exact(4)
        .map(|w| {
            <Rp64_256 as Hasher>::Digest::new([
                BaseElement::from_mont(w[0]),
                BaseElement::from_mont(w[1]),
                BaseElement::from_mont(w[2]),
                BaseElement::from_mont(w[3]),
            ])
        })
        .collect()
}

/// The BLAKE3 digests stored as 4 little-endian words (32 bytes) each.
fn b3_digests(words: &[u64]) -> Vec<<Blake3_256<BaseElement> as Hasher>::Digest> {
    words
        .chunks_exact(4)
        .map(|w| {
            let mut bytes = [0u8; 32];
            for (out, word) in bytes.chunks_exact_mut(8).zip(w) {
                out.copy_from_slice(&word.to_le_bytes());
            }
            <Blake3_256<BaseElement> as Hasher>::Digest::new(bytes)
        })
        .collect()
}

/// Builds winter-crypto's `Rp64_256` tree from raw node and leaf words.
pub(crate) fn rp_finish(nodes: Vec<u64>, leaves: Vec<u64>) -> Result<MerkleTree<Rp64_256>, Error> {
    let leaves = rp_digests(&leaves);
    let found = leaves.len();
    MerkleTree::from_raw_parts(rp_digests(&nodes), leaves)
        .map_err(|_| Error::TooFewLeaves { leaves: found })
}

/// Builds winter-crypto's BLAKE3 tree from raw node and leaf words.
pub(crate) fn b3_finish(
    nodes: Vec<u64>,
    leaves: Vec<u64>,
) -> Result<MerkleTree<Blake3_256<BaseElement>>, Error> {
    let leaves = b3_digests(&leaves);
    let found = leaves.len();
    MerkleTree::from_raw_parts(b3_digests(&nodes), leaves)
        .map_err(|_| Error::TooFewLeaves { leaves: found })
}

/// The words of Merkle leaves to upload, after the checks every backend makes on them: at
/// least two leaves, a power-of-two count.
pub(crate) fn rp_leaf_words(leaves: &[<Rp64_256 as Hasher>::Digest]) -> Result<Vec<u64>, Error> {
    if leaves.len() < 2 {
        return Err(Error::TooFewLeaves {
            leaves: leaves.len(),
        });
    }
    check_len("number of Merkle leaves", leaves.len())?;
    Ok(leaves
        .iter()
        .flat_map(|d| d.as_elements().iter().map(|e| e.inner()))
        .collect())
}
