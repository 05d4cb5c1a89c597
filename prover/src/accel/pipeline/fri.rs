//! The FRI prover with its layer commitments on a kernels backend.
//!
//! Ported from winter-fri 0.13.1 `src/prover/mod.rs` (`FriProver`: `build_layers`,
//! `build_layer`, `set_remainder`, `build_proof`, `query_layer`, `build_layer_commitment`),
//! Copyright (c) Facebook, Inc. and its affiliates, MIT license.
//!
//! What changes is where a layer is committed. A layer with folding factor `N` over `E` is a
//! matrix of `n / N` rows, row `i` holding the evaluations `i, i + n / N, ..., i + (N - 1) n / N`
//! (winter-utils' `transpose_slice`); its leaf is `H::hash_elements(row)`, which both of our
//! hashes compute over `E::slice_as_base_elements(row)`. The rows are laid out as a
//! [`RowMatrix`] of `N * d` base elements per row and committed with the constraint
//! commitment's path ([`AccelHash::commit_rows`] after `upload_rows`); the host keeps the same
//! matrix, from which the next layer is folded (winter-fri's public `apply_drp`, parallel on
//! rayon) and the queried rows are read. A layer whose backend commitment fails (an error or a
//! panic) is redone on the CPU backend, bit-exact, and the layers after it in the same proof go
//! to the CPU backend directly: the FRI commit phase counts as one step in
//! [`crate::accel::cpu_fallbacks_total`], however many layers it has.
//!
//! `FriProof::new` and `FriProofLayer::new` are private to winter-fri, so [`FriProver::build_proof`]
//! writes the exact serialization of winter-fri's `Serializable for FriProof` / `FriProofLayer`
//! (`src/proof.rs`: the layer count as a `u8`; per layer the value bytes and the batch-opening
//! bytes, each behind a `u32` length; the remainder bytes behind a `u16` length; the number of
//! partitions as a power-of-two exponent, 0 for the one partition winterfell's prover uses) and
//! reads it back with `FriProof::read_from_bytes`. The tests compare the result with
//! winter-fri's own prover on random inputs.

use core::marker::PhantomData;

use kernels::{Backend, RowMatrix};
use rayon::prelude::*;
use winter_crypto::{ElementHasher, MerkleTree, VectorCommitment};
use winter_fri::folding::{apply_drp, fold_positions};
use winter_fri::{FriOptions, FriProof, ProverChannel};
use winter_math::fields::f64::BaseElement;
use winter_math::{FieldElement, fft};
use winter_utils::{ByteWriter, Deserializable, Serializable, group_slice_elements};

use crate::accel::{AccelHash, SHAPE_INVARIANT, fallback_cpu, with_cpu_fallback};

/// Rows per rayon task when a layer matrix is laid out.
const ROWS_PER_TASK: usize = 1024;

/// One committed FRI layer: its rows (base elements, `N * d` per row) and the tree over them.
struct FriLayer<H: ElementHasher<BaseField = BaseElement>> {
    rows: RowMatrix,
    tree: MerkleTree<H>,
}

/// winter-fri's `FriProver` with the layer commitments on backend `B` (see the module docs).
pub struct FriProver<'b, E, C, H, B>
where
    E: FieldElement<BaseField = BaseElement>,
    C: ProverChannel<E, Hasher = H>,
    H: AccelHash,
    B: Backend,
{
    backend: &'b B,
    options: FriOptions,
    layers: Vec<FriLayer<H>>,
    remainder: Vec<E>,
    /// Whether a layer of this proof has fallen back to the CPU backend.
    on_cpu: bool,
    _channel: PhantomData<fn(&mut C)>,
}

impl<'b, E, C, H, B> FriProver<'b, E, C, H, B>
where
    E: FieldElement<BaseField = BaseElement>,
    C: ProverChannel<E, Hasher = H>,
    H: AccelHash,
    B: Backend,
{
    /// A prover with `options` committing its layers on `backend`.
    pub fn new(options: FriOptions, backend: &'b B) -> Self {
        FriProver {
            backend,
            options,
            layers: Vec::new(),
            remainder: Vec::new(),
            on_cpu: false,
            _channel: PhantomData,
        }
    }

    /// The folding factor.
    pub fn folding_factor(&self) -> usize {
        self.options.folding_factor()
    }

    /// Number of layers built by the last [`Self::build_layers`].
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Forgets the layers and the remainder (the next proof tries the backend again).
    pub fn reset(&mut self) {
        self.layers.clear();
        self.remainder.clear();
        self.on_cpu = false;
    }

    /// The commit phase: commits to `evaluations`, draws α, folds, and repeats until the
    /// remainder is small enough; then commits to the remainder polynomial.
    ///
    /// # Panics
    /// If layers of an earlier proof are still held (as winter-fri), or the folding factor is
    /// not 2, 4, 8 or 16 (which `FriOptions::new` already refuses).
    pub fn build_layers(&mut self, channel: &mut C, mut evaluations: Vec<E>) {
        assert!(
            self.layers.is_empty(),
            "a prior proof generation request has not been completed yet"
        );
        for _ in 0..self.options.num_fri_layers(evaluations.len()) {
            match self.folding_factor() {
                2 => self.build_layer::<2>(channel, &mut evaluations),
                4 => self.build_layer::<4>(channel, &mut evaluations),
                8 => self.build_layer::<8>(channel, &mut evaluations),
                16 => self.build_layer::<16>(channel, &mut evaluations),
                f => unimplemented!("folding factor {f} is not supported"),
            }
        }
        self.set_remainder(channel, &mut evaluations);
    }

    /// Commits to one layer, draws α and folds `evaluations` by `N`.
    fn build_layer<const N: usize>(&mut self, channel: &mut C, evaluations: &mut Vec<E>) {
        let rows = layer_rows::<E, N>(evaluations);
        let tree = self.commit_layer(&rows);
        channel.commit_fri_layer(*tree.root());
        let alpha = channel.draw_fri_alpha();
        let grouped: &[[E; N]] = group_slice_elements(E::slice_from_base_elements(rows.data()));
        *evaluations = apply_drp(grouped, self.options.domain_offset::<BaseElement>(), alpha);
        self.layers.push(FriLayer { rows, tree });
    }

    /// Commits to the rows of a layer on the backend, or on the CPU backend once a layer of this
    /// proof has failed there (see the module docs). A layer of fewer than two rows has no
    /// Merkle tree: it takes winter-fri's host path, which refuses it with winter-fri's panic.
    fn commit_layer(&mut self, rows: &RowMatrix) -> MerkleTree<H> {
        if rows.num_rows() < 2 {
            let leaves = (0..rows.num_rows())
                .map(|i| H::hash_elements(rows.row(i)))
                .collect();
            return MerkleTree::new(leaves).expect("failed to construct FRI layer commitment");
        }
        let on_cpu = |cpu: &kernels::CpuBackend| {
            let device = cpu.upload_rows(rows.clone())?;
            H::commit_rows(cpu, &device)
        };
        if self.on_cpu {
            return on_cpu(fallback_cpu()).expect(SHAPE_INVARIANT);
        }
        let backend = self.backend;
        let mut failed = false;
        let tree = with_cpu_fallback(
            "FRI layer commitments",
            || {
                let device = backend.upload_rows(rows.clone())?;
                H::commit_rows(backend, &device)
            },
            |cpu| {
                failed = true;
                on_cpu(cpu)
            },
        );
        self.on_cpu = failed;
        tree
    }

    /// Interpolates the last layer and commits to the remainder polynomial's coefficients in
    /// reverse order.
    fn set_remainder(&mut self, channel: &mut C, evaluations: &mut [E]) {
        let inv_twiddles = fft::get_inv_twiddles(evaluations.len());
        fft::interpolate_poly_with_offset(
            evaluations,
            &inv_twiddles,
            self.options.domain_offset::<BaseElement>(),
        );
        let remainder_poly_size = evaluations.len() / self.options.blowup_factor();
        let remainder: Vec<E> = evaluations[..remainder_poly_size]
            .iter()
            .copied()
            .rev()
            .collect();
        channel.commit_fri_layer(H::hash_elements(&remainder));
        self.remainder = remainder;
    }

    /// The query phase: for every layer, the folded `positions`, the rows there and their batch
    /// opening; then the remainder. Clears the prover for the next proof.
    ///
    /// # Panics
    /// If no layers were built (as winter-fri).
    pub fn build_proof(&mut self, positions: &[usize]) -> FriProof {
        assert!(
            !self.remainder.is_empty(),
            "FRI layers have not been built yet"
        );
        let folding_factor = self.folding_factor();
        let mut bytes = Vec::new();
        // the layer count is written as winter-fri writes it (`as u8`)
        bytes.write_u8(self.layers.len() as u8);
        if let Some(first) = self.layers.first() {
            let mut positions = positions.to_vec();
            let mut domain_size = first.rows.num_rows() * folding_factor;
            for layer in &self.layers {
                positions = fold_positions(&positions, domain_size, folding_factor);
                write_layer::<E, H>(layer, &positions, &mut bytes);
                domain_size /= folding_factor;
            }
        }
        assert!(
            self.remainder.len().is_power_of_two(),
            "size of the remainder must be a power of two, but was {}",
            self.remainder.len()
        );
        let mut remainder_bytes = Vec::with_capacity(E::ELEMENT_BYTES * self.remainder.len());
        remainder_bytes.write_many(&self.remainder);
        bytes.write_u16(remainder_bytes.len() as u16);
        bytes.write_bytes(&remainder_bytes);
        // one partition: log2(1)
        bytes.write_u8(0);
        self.reset();
        FriProof::read_from_bytes(&bytes)
            .expect("the bytes follow winter-fri's FriProof serialization, which reads them back")
    }
}

/// The layer matrix: row `i` is `evaluations[i + j * n / N]` for `j < N`, as base elements.
fn layer_rows<E, const N: usize>(evaluations: &[E]) -> RowMatrix
where
    E: FieldElement<BaseField = BaseElement>,
{
    let d = E::EXTENSION_DEGREE;
    let num_rows = evaluations.len() / N;
    assert_eq!(
        num_rows * N,
        evaluations.len(),
        "source length must be divisible by {N}, but was {}",
        evaluations.len()
    );
    let mut data = vec![BaseElement::ZERO; evaluations.len() * d];
    data.par_chunks_mut(N * d)
        .with_min_len(ROWS_PER_TASK)
        .enumerate()
        .for_each(|(i, row)| {
            for (j, slot) in row.chunks_exact_mut(d).enumerate() {
                slot.copy_from_slice(E::slice_as_base_elements(&[evaluations[i + j * num_rows]]));
            }
        });
    RowMatrix::from_row_major(data, N * d).expect(
        "a FRI layer has a power-of-two number of rows (the LDE domain over a power of two)",
    )
}

/// Writes one `FriProofLayer` as winter-fri serializes it: the queried rows (`N` elements of
/// `E` each) and the batch opening of `positions`.
fn write_layer<E, H>(layer: &FriLayer<H>, positions: &[usize], out: &mut Vec<u8>)
where
    E: FieldElement<BaseField = BaseElement>,
    H: AccelHash,
{
    assert!(!positions.is_empty(), "query values cannot be empty");
    let (_, opening) = layer
        .tree
        .open_many(positions)
        .expect("failed to generate a batch opening proof for FRI layer queries");
    let mut values = Vec::with_capacity(layer.rows.num_cols() * 8 * positions.len());
    for &p in positions {
        values.write_many(E::slice_from_base_elements(layer.rows.row(p)));
    }
    let mut paths = Vec::new();
    opening.write_into(&mut paths);
    // lengths are written as winter-fri writes them (`as u32`)
    out.write_u32(values.len() as u32);
    out.write_bytes(&values);
    out.write_u32(paths.len() as u32);
    out.write_bytes(&paths);
}
