//! Merkle trees in winter-crypto's layout: `nodes[1]` is the root, `nodes[i]` merges
//! `nodes[2i]` and `nodes[2i + 1]`, and `nodes[n/2 + j]` merges leaves `2j` and `2j + 1`
//! (`nodes[0]` is unused and holds the default digest).

use rayon::prelude::*;
use winter_crypto::{Hasher, hashers::Blake3_256, hashers::Rp64_256};
use winter_math::fields::f64::BaseElement;

use super::{
    field,
    kernels::Kernels,
    rescue::{Constants, RawDigest},
    words,
};
use crate::backend::RowMatrix;

type RpDigest = <Rp64_256 as Hasher>::Digest;
type B3Digest = <Blake3_256<BaseElement> as Hasher>::Digest;

/// Parent nodes per parallel task.
const NODES_PER_TASK: usize = 64;

/// A raw digest as winter-crypto's digest (the same words).
pub(crate) fn to_element_digest(d: RawDigest) -> RpDigest {
    RpDigest::new(d.map(BaseElement::from_mont))
}

/// winter-crypto's digest as raw words (an `Rp64_256` digest always holds four elements).
pub(crate) fn from_element_digest(d: &RpDigest) -> RawDigest {
    let e = d.as_elements();
    [e[0].inner(), e[1].inner(), e[2].inner(), e[3].inner()]
}

/// Inner nodes over Rp64_256 leaves (`leaves.len()` a power of two, at least 2).
pub(crate) fn rp_nodes(k: &Kernels, c: &Constants, leaves: &[RawDigest]) -> Vec<RawDigest> {
    let n = leaves.len();
    let mut nodes = vec![[0u64; 4]; n];
    merge_level(k, c, leaves, &mut nodes[n / 2..]);
    let mut m = n / 2;
    while m > 1 {
        let (upper, lower) = nodes.split_at_mut(m);
        merge_level(k, c, &lower[..m], &mut upper[m / 2..]);
        m /= 2;
    }
    nodes
}

fn merge_level(k: &Kernels, c: &Constants, children: &[RawDigest], parents: &mut [RawDigest]) {
    if parents.len() >= 2 * NODES_PER_TASK {
        parents
            .par_chunks_mut(NODES_PER_TASK)
            .zip(children.par_chunks(2 * NODES_PER_TASK))
            .for_each(|(p, ch)| k.merge(ch, p, c));
    } else {
        k.merge(children, parents, c);
    }
}

/// BLAKE3-256 leaves (each row's canonical little-endian bytes, as winter-crypto serialises
/// elements) and the inner nodes.
pub(crate) fn blake3_tree(rows: &RowMatrix) -> (Vec<B3Digest>, Vec<B3Digest>) {
    let width = rows.num_cols();
    let words = words::as_words(rows.data());
    let leaves: Vec<[u8; 32]> = words
        .par_chunks(width)
        .map_init(
            || Vec::with_capacity(width * 8),
            |buf, row| {
                buf.clear();
                for &w in row {
                    buf.extend_from_slice(&field::to_canonical(w).to_le_bytes());
                }
                *blake3::hash(buf).as_bytes()
            },
        )
        .collect();
    let n = leaves.len();
    let mut nodes = vec![[0u8; 32]; n];
    blake3_level(&leaves, &mut nodes[n / 2..]);
    let mut m = n / 2;
    while m > 1 {
        let (upper, lower) = nodes.split_at_mut(m);
        blake3_level(&lower[..m], &mut upper[m / 2..]);
        m /= 2;
    }
    let nodes = nodes.into_iter().map(B3Digest::new).collect();
    let leaves = leaves.into_iter().map(B3Digest::new).collect();
    (nodes, leaves)
}

fn blake3_merge(pair: &[[u8; 32]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&pair[0]);
    h.update(&pair[1]);
    *h.finalize().as_bytes()
}

fn blake3_level(children: &[[u8; 32]], parents: &mut [[u8; 32]]) {
    if parents.len() >= 2 * NODES_PER_TASK {
        parents
            .par_iter_mut()
            .zip(children.par_chunks_exact(2))
            .for_each(|(p, ch)| *p = blake3_merge(ch));
    } else {
        for (p, ch) in parents.iter_mut().zip(children.chunks_exact(2)) {
            *p = blake3_merge(ch);
        }
    }
}
