//! Accelerated prover components: winterfell's trace LDE and constraint commitment on any
//! [`kernels::Backend`].
//!
//! [`AccelComponents`] is a [`ProverComponents`] bundle whose `TraceLde` and
//! `ConstraintCommitment` run the heavy steps on a backend, while the constraints are evaluated
//! on every host core by [`evaluator::ParallelConstraintEvaluator`] (bit-identical to
//! winterfell's `DefaultConstraintEvaluator`) and the vector commitment stays winter-crypto's
//! `MerkleTree<H>`. The proof bytes are identical to those of
//! [`crate::prover::DefaultComponents`] (tests in `tests/accel.rs` check it for both AIRs,
//! both hashes and both presets on the CPU kernels, `tests/accel_wgpu.rs` on the wgpu kernels),
//! because every step reproduces winter-prover 0.13.1's
//! `DefaultTraceLde` / `DefaultConstraintCommitment` exactly:
//!
//! * trace polynomials: inverse NTT of each trace column on the backend
//!   (`ColMatrix::interpolate_columns`);
//! * LDE: coset evaluation over `domain.offset() * <g>` with `|<g>| = trace_len * blowup`,
//!   natural order, into a row-major matrix (`RowMatrix::evaluate_polys_over`);
//! * commitment: every row hashed with `H::hash_elements` and a Merkle tree over the row
//!   hashes (`RowMatrix::commit_to_rows`), both on the backend. With more than one partition
//!   ([`PartitionOptions`] other than the default) rows are hashed per partition on the host
//!   exactly as winterfell does and only the tree is built from those digests.
//!
//! Extension-field data (an auxiliary trace segment, the composition polynomial over the
//! quadratic or cubic extension `E`) runs on the backend through its base-field
//! representation: an `E` column is `E::EXTENSION_DEGREE` base columns, the NTT and the LDE are
//! linear over the base field with base-field twiddles, so the extension of each component is
//! the component of the extension; laying the components of column `j` at base columns
//! `j * d .. (j + 1) * d` makes each LDE row exactly `E::slice_as_base_elements` of the `E` row,
//! which both hashes consume element by element. The interpolation of the composition
//! polynomial's trace (one column of `trace_len * num_cols` points, an offset inverse NTT) stays
//! winterfell's own `CompositionPoly::new` on the host; its LDE and commitment run on the
//! backend.
//!
//! Backend failures inside these factories cannot be reported through winterfell's
//! infallible interfaces. A step whose backend call fails (a lost GPU, a device error, out of
//! device memory, even a panic inside a driver) is redone on the CPU backend, which is
//! bit-exact with every other backend, so the proof bytes do not change; every such redo is
//! counted in [`cpu_fallbacks_total`] (the appliance exports it as
//! `epa_backend_cpu_fallbacks_total`) and its reason is kept in [`last_cpu_fallback`]. The
//! inputs are shapes winterfell has already validated (power-of-two columns within the field's
//! two-adicity), so a failure of the CPU redo itself is a broken invariant and panics with a
//! message naming it.

pub mod coin;
pub mod cuda;
pub mod evaluator;
pub mod pipeline;

use core::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use kernels::{Backend, ColumnMatrix, CpuBackend, Isa, RowMatrix};
use winter_crypto::hashers::{Blake3_256, Rp64_256};
use winter_crypto::{ElementHasher, Hasher, MerkleTree, VectorCommitment};
use winter_math::FieldElement;
use winter_math::fields::f64::BaseElement;
use winter_prover::ConstraintCommitment;
use winter_prover::proof::Queries;
use winterfell::matrix::ColMatrix;
use winterfell::{
    Air, AuxRandElements, CompositionPoly, CompositionPolyTrace, ConstraintCompositionCoefficients,
    EvaluationFrame, PartitionOptions, Proof, ProverError, StarkDomain, TraceInfo, TraceLde,
    TracePolyTable, TraceTable,
};

use crate::Error;
use crate::accel::evaluator::ParallelConstraintEvaluator;
use crate::prover::{EpaProver, ProverComponents};
use crate::registry::NamedHash;

/// The invariant behind every backend call of this module.
const SHAPE_INVARIANT: &str = "winterfell hands the prover power-of-two columns within the \
    field's two-adicity, which every backend accepts";

/// Steps of the accelerated prover redone on the CPU backend after their backend failed, in
/// this process.
static CPU_FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// Why the latest CPU fallback happened.
static LAST_FALLBACK: Mutex<Option<String>> = Mutex::new(None);

/// How many prover steps (a trace LDE and commitment, an auxiliary segment, a constraint
/// commitment) this process has redone on the CPU backend because their backend returned an
/// error or panicked; monotonic, for the `epa_backend_cpu_fallbacks_total` metric.
pub fn cpu_fallbacks_total() -> u64 {
    CPU_FALLBACKS.load(Ordering::Relaxed)
}

/// The step and the backend error of the latest CPU fallback in this process, if any (for
/// `/status` and logs).
pub fn last_cpu_fallback() -> Option<String> {
    LAST_FALLBACK
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// The CPU backend the failed steps are redone on: the widest instruction set of this CPU
/// (never `EPA_SIMD`, which may name something invalid; every ISA is bit-exact).
fn fallback_cpu() -> &'static CpuBackend {
    static CPU: OnceLock<CpuBackend> = OnceLock::new();
    CPU.get_or_init(|| {
        CpuBackend::with_isa(Isa::best())
            .expect("Isa::best() names an instruction set this CPU has, so the backend builds")
    })
}

/// Runs a step on the backend; on an error (or a panic) counts a fallback and redoes it on
/// the CPU backend.
fn with_cpu_fallback<T>(
    step: &str,
    on_backend: impl FnOnce() -> Result<T, Error>,
    on_cpu: impl FnOnce(&CpuBackend) -> Result<T, Error>,
) -> T {
    let reason = match catch_unwind(AssertUnwindSafe(on_backend)) {
        Ok(Ok(v)) => return v,
        Ok(Err(e)) => e.to_string(),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            format!("the backend panicked: {msg}")
        }
    };
    count_cpu_fallback(step, &reason);
    on_cpu(fallback_cpu()).expect(SHAPE_INVARIANT)
}

/// Counts one step moved to the CPU backend and records why.
pub(crate) fn count_cpu_fallback(step: &str, reason: &str) {
    CPU_FALLBACKS.fetch_add(1, Ordering::Relaxed);
    *LAST_FALLBACK.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{step}: {reason}"));
}

/// A commitment hash that a backend can commit rows with.
pub trait AccelHash: NamedHash + coin::GrindingHash + Sized {
    /// Whether rows are hashed on the backend; when `false` the backend computes the LDE and
    /// the rows are hashed on the host with `Self::hash_elements`, exactly as winterfell does.
    const ROWS_ON_BACKEND: bool;

    /// Hashes every row of `rows` with `Self::hash_elements` and builds the Merkle tree over
    /// the row hashes on `backend`.
    fn commit_rows<B: Backend>(backend: &B, rows: &B::Rows) -> Result<MerkleTree<Self>, Error>;
}

impl AccelHash for Rp64_256 {
    const ROWS_ON_BACKEND: bool = true;

    fn commit_rows<B: Backend>(backend: &B, rows: &B::Rows) -> Result<MerkleTree<Self>, Error> {
        let tree = backend.commit_rows_rp64_256(rows)?;
        Ok(backend.download_tree(tree)?)
    }
}

impl AccelHash for Blake3_256<BaseElement> {
    // Rows hashed on the backend (the data stays on the device); `tests/accel.rs` (every CPU
    // instruction set) and `tests/accel_wgpu.rs` check the proofs against stock winterfell.
    const ROWS_ON_BACKEND: bool = true;

    fn commit_rows<B: Backend>(backend: &B, rows: &B::Rows) -> Result<MerkleTree<Self>, Error> {
        let tree = backend.commit_rows_blake3(rows)?;
        Ok(backend.download_tree(tree)?)
    }
}

/// A backend whose row matrices can be handed to the host without a copy where the device is
/// the host (the LDE rows are read for every constraint evaluation step, so they must live on
/// the host).
pub trait HostRows: Backend {
    /// Moves `rows` to the host, consuming the device buffer.
    fn take_host_rows(&self, rows: Self::Rows) -> Result<RowMatrix, Error>;
}

impl HostRows for CpuBackend {
    fn take_host_rows(&self, rows: RowMatrix) -> Result<RowMatrix, Error> {
        Ok(rows)
    }
}

#[cfg(feature = "wgpu")]
impl HostRows for kernels::WgpuBackend {
    /// Downloads the rows (one copy back; the device buffer is freed when `rows` drops).
    fn take_host_rows(&self, rows: Self::Rows) -> Result<RowMatrix, Error> {
        Ok(self.download_rows(&rows)?)
    }
}

/// Prover components that run the trace LDE and the commitments on backend `B` with hash `H`.
pub struct AccelComponents<B, H> {
    backend: Arc<B>,
    _h: PhantomData<fn() -> H>,
}

impl<B, H> Clone for AccelComponents<B, H> {
    fn clone(&self) -> Self {
        AccelComponents {
            backend: Arc::clone(&self.backend),
            _h: PhantomData,
        }
    }
}

impl<B, H> AccelComponents<B, H> {
    /// Components over a shared backend.
    pub fn new(backend: Arc<B>) -> Self {
        AccelComponents {
            backend,
            _h: PhantomData,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }
}

impl<H> AccelComponents<CpuBackend, H> {
    /// Components over the CPU backend with the widest instruction set of this CPU, or the one
    /// named by `EPA_SIMD` (an unknown or unsupported name is an error).
    pub fn cpu() -> Result<Self, Error> {
        Ok(Self::new(Arc::new(CpuBackend::new()?)))
    }
}

impl<B, H> ProverComponents for AccelComponents<B, H>
where
    B: HostRows + 'static,
    H: AccelHash,
{
    type HashFn = H;
    type VC = MerkleTree<H>;
    type RandomCoin = coin::GrindingCoin<H>;
    type TraceLde<E>
        = AccelTraceLde<E, B, H>
    where
        E: FieldElement<BaseField = BaseElement>;
    type ConstraintEvaluator<'a, A, E>
        = ParallelConstraintEvaluator<'a, A, E>
    where
        A: Air<BaseField = BaseElement> + 'a,
        E: FieldElement<BaseField = BaseElement>;
    type ConstraintCommitment<E>
        = AccelConstraintCommitment<E, H>
    where
        E: FieldElement<BaseField = BaseElement>;

    fn new_trace_lde<E: FieldElement<BaseField = BaseElement>>(
        &self,
        trace_info: &TraceInfo,
        main_trace: &ColMatrix<BaseElement>,
        domain: &StarkDomain<BaseElement>,
        partition_options: PartitionOptions,
    ) -> (Self::TraceLde<E>, TracePolyTable<E>) {
        let (lde, tree, polys) = with_cpu_fallback(
            "main trace LDE and commitment",
            || {
                extend_and_commit::<BaseElement, B, H>(
                    &self.backend,
                    main_trace,
                    domain,
                    partition_options,
                )
            },
            |cpu| {
                extend_and_commit::<BaseElement, _, H>(cpu, main_trace, domain, partition_options)
            },
        );
        let trace_lde = AccelTraceLde {
            backend: Arc::clone(&self.backend),
            main_lde: lde,
            main_tree: tree,
            aux: None,
            blowup: domain.trace_to_lde_blowup(),
            trace_info: trace_info.clone(),
            partition_options,
            _e: PhantomData,
        };
        (trace_lde, TracePolyTable::new(polys))
    }

    fn new_evaluator<'a, A, E>(
        &self,
        air: &'a A,
        aux_rand_elements: Option<AuxRandElements<E>>,
        composition_coefficients: ConstraintCompositionCoefficients<E>,
    ) -> Self::ConstraintEvaluator<'a, A, E>
    where
        A: Air<BaseField = BaseElement> + 'a,
        E: FieldElement<BaseField = BaseElement>,
    {
        ParallelConstraintEvaluator::new(air, aux_rand_elements, composition_coefficients)
    }

    fn build_constraint_commitment<E: FieldElement<BaseField = BaseElement>>(
        &self,
        composition_poly_trace: CompositionPolyTrace<E>,
        num_constraint_composition_columns: usize,
        domain: &StarkDomain<BaseElement>,
        partition_options: PartitionOptions,
    ) -> (Self::ConstraintCommitment<E>, CompositionPoly<E>) {
        // winterfell's own offset interpolation and segmentation into columns
        let composition_poly = CompositionPoly::new(
            composition_poly_trace,
            domain,
            num_constraint_composition_columns,
        );
        let (evaluations, tree) = with_cpu_fallback(
            "constraint commitment",
            || {
                commit_composition::<E, B, H>(
                    &self.backend,
                    composition_poly.data(),
                    domain,
                    partition_options,
                )
            },
            |cpu| {
                commit_composition::<E, _, H>(
                    cpu,
                    composition_poly.data(),
                    domain,
                    partition_options,
                )
            },
        );
        (
            AccelConstraintCommitment {
                evaluations,
                tree,
                _e: PhantomData,
            },
            composition_poly,
        )
    }

    /// The accelerated pipeline ([`pipeline::prove`]): winterfell's proof generation with the
    /// FRI layers committed on the backend; the same proof bytes.
    fn prove<A>(
        &self,
        prover: &EpaProver<A, Self>,
        trace: TraceTable<BaseElement>,
    ) -> Result<Proof, ProverError>
    where
        A: Air<BaseField = BaseElement> + 'static,
        A::PublicInputs: Clone + Send + Sync,
    {
        pipeline::prove(prover, self.backend.as_ref(), trace)
    }
}

/// Trace LDE and commitments of the main (and auxiliary) trace segments, computed on backend
/// `B`; the rows live on the host in base-field row-major form.
pub struct AccelTraceLde<E, B, H: Hasher> {
    backend: Arc<B>,
    main_lde: RowMatrix,
    main_tree: MerkleTree<H>,
    aux: Option<(RowMatrix, MerkleTree<H>)>,
    blowup: usize,
    trace_info: TraceInfo,
    partition_options: PartitionOptions,
    _e: PhantomData<fn() -> E>,
}

impl<E, B, H> TraceLde<E> for AccelTraceLde<E, B, H>
where
    E: FieldElement<BaseField = BaseElement>,
    B: HostRows + 'static,
    H: AccelHash,
{
    type HashFn = H;
    type VC = MerkleTree<H>;

    fn get_main_trace_commitment(&self) -> H::Digest {
        *self.main_tree.root()
    }

    fn set_aux_trace(
        &mut self,
        aux_trace: &ColMatrix<E>,
        domain: &StarkDomain<BaseElement>,
    ) -> (ColMatrix<E>, H::Digest) {
        let partition_options = self.partition_options;
        let (lde, tree, polys) = with_cpu_fallback(
            "auxiliary trace LDE and commitment",
            || extend_and_commit::<E, B, H>(&self.backend, aux_trace, domain, partition_options),
            |cpu| extend_and_commit::<E, _, H>(cpu, aux_trace, domain, partition_options),
        );
        // the same checks (and panics) as winterfell's `DefaultTraceLde`
        assert!(
            usize::from(self.aux.is_some()) < self.trace_info.num_aux_segments(),
            "the auxiliary trace has already been added"
        );
        assert_eq!(
            self.main_lde.num_rows(),
            lde.num_rows(),
            "the number of rows in the auxiliary segment must be the same as in the main segment"
        );
        let root = *tree.root();
        self.aux = Some((lde, tree));
        (polys, root)
    }

    fn read_main_trace_frame_into(
        &self,
        lde_step: usize,
        frame: &mut EvaluationFrame<BaseElement>,
    ) {
        let next_lde_step = (lde_step + self.blowup) % self.trace_len();
        frame
            .current_mut()
            .copy_from_slice(self.main_lde.row(lde_step));
        frame
            .next_mut()
            .copy_from_slice(self.main_lde.row(next_lde_step));
    }

    fn read_aux_trace_frame_into(&self, lde_step: usize, frame: &mut EvaluationFrame<E>) {
        let next_lde_step = (lde_step + self.blowup) % self.trace_len();
        let (lde, _) = self
            .aux
            .as_ref()
            .expect("winterfell reads auxiliary frames only after set_aux_trace");
        frame
            .current_mut()
            .copy_from_slice(ext_row::<E>(lde, lde_step));
        frame
            .next_mut()
            .copy_from_slice(ext_row::<E>(lde, next_lde_step));
    }

    fn query(&self, positions: &[usize]) -> Vec<Queries> {
        let mut result = vec![segment_queries::<BaseElement, H>(
            &self.main_lde,
            &self.main_tree,
            positions,
        )];
        if let Some((lde, tree)) = &self.aux {
            result.push(segment_queries::<E, H>(lde, tree, positions));
        }
        result
    }

    fn trace_len(&self) -> usize {
        self.main_lde.num_rows()
    }

    fn blowup(&self) -> usize {
        self.blowup
    }

    fn trace_info(&self) -> &TraceInfo {
        &self.trace_info
    }
}

/// Composition polynomial evaluations over the LDE domain and their commitment, computed on a
/// backend; rows are kept on the host in base-field form.
pub struct AccelConstraintCommitment<E, H: Hasher> {
    evaluations: RowMatrix,
    tree: MerkleTree<H>,
    _e: PhantomData<fn() -> E>,
}

impl<E, H> ConstraintCommitment<E> for AccelConstraintCommitment<E, H>
where
    E: FieldElement<BaseField = BaseElement>,
    H: AccelHash,
{
    type HashFn = H;
    type VC = MerkleTree<H>;

    fn commitment(&self) -> H::Digest {
        *self.tree.root()
    }

    fn query(self, positions: &[usize]) -> Queries {
        segment_queries::<E, H>(&self.evaluations, &self.tree, positions)
    }
}

/// Row `i` of a base-field row matrix read as `E` elements.
fn ext_row<E: FieldElement<BaseField = BaseElement>>(rows: &RowMatrix, i: usize) -> &[E] {
    E::slice_from_base_elements(rows.row(i))
}

/// Rows at `positions` and a batch opening of them (winterfell's `build_segment_queries`).
fn segment_queries<E, H>(rows: &RowMatrix, tree: &MerkleTree<H>, positions: &[usize]) -> Queries
where
    E: FieldElement<BaseField = BaseElement>,
    H: ElementHasher<BaseField = BaseElement>,
{
    let states: Vec<Vec<E>> = positions
        .iter()
        .map(|&p| ext_row::<E>(rows, p).to_vec())
        .collect();
    let (_, proof) = tree
        .open_many(positions)
        .expect("query positions drawn by winterfell lie inside the LDE domain");
    Queries::new::<H, E, MerkleTree<H>>(proof, states)
}

/// The base-field columns of a matrix over `E`: column `j` of `E` becomes base columns
/// `j * d .. (j + 1) * d`, one per coordinate.
fn to_base_columns<E: FieldElement<BaseField = BaseElement>>(
    m: &ColMatrix<E>,
) -> Result<ColumnMatrix, Error> {
    let d = E::EXTENSION_DEGREE;
    let n = m.num_rows();
    let mut data = Vec::with_capacity(n * d * m.num_cols());
    for col in m.columns() {
        let base = E::slice_as_base_elements(col);
        for k in 0..d {
            data.extend(base.iter().skip(k).step_by(d).copied());
        }
    }
    Ok(ColumnMatrix::from_column_major(data, n)?)
}

/// The inverse of [`to_base_columns`].
fn from_base_columns<E: FieldElement<BaseField = BaseElement>>(m: &ColumnMatrix) -> ColMatrix<E> {
    let d = E::EXTENSION_DEGREE;
    let n = m.num_rows();
    let columns = m
        .data()
        .chunks_exact(n * d)
        .map(|parts| {
            let mut interleaved = vec![BaseElement::ZERO; n * d];
            for (k, part) in parts.chunks_exact(n).enumerate() {
                for (i, v) in part.iter().enumerate() {
                    interleaved[i * d + k] = *v;
                }
            }
            E::slice_from_base_elements(&interleaved).to_vec()
        })
        .collect();
    ColMatrix::new(columns)
}

#[allow(clippy::type_complexity)]
/// Interpolates `trace` (evaluations over the trace domain), extends and commits it: returns
/// the LDE rows, the tree and the trace polynomials (winterfell's `build_trace_commitment`).
fn extend_and_commit<E, B, H>(
    backend: &B,
    trace: &ColMatrix<E>,
    domain: &StarkDomain<BaseElement>,
    partition_options: PartitionOptions,
) -> Result<(RowMatrix, MerkleTree<H>, ColMatrix<E>), Error>
where
    E: FieldElement<BaseField = BaseElement>,
    B: HostRows,
    H: AccelHash,
{
    let base = to_base_columns(trace)?;
    let num_base_cols = base.num_cols();
    let mut device = backend.upload_columns(base)?;
    backend.intt(&mut device)?;
    let polys = from_base_columns::<E>(&backend.download_columns(&device)?);
    let (lde, tree) =
        lde_and_commit::<E, B, H>(backend, &device, num_base_cols, domain, partition_options)?;
    Ok((lde, tree, polys))
}

/// LDE and commitment of the composition polynomial's columns (coefficients over `E`).
fn commit_composition<E, B, H>(
    backend: &B,
    columns: &ColMatrix<E>,
    domain: &StarkDomain<BaseElement>,
    partition_options: PartitionOptions,
) -> Result<(RowMatrix, MerkleTree<H>), Error>
where
    E: FieldElement<BaseField = BaseElement>,
    B: HostRows,
    H: AccelHash,
{
    let coefficients = to_base_columns(columns)?;
    let num_base_cols = coefficients.num_cols();
    let device = backend.upload_columns(coefficients)?;
    lde_and_commit::<E, B, H>(backend, &device, num_base_cols, domain, partition_options)
}

/// Coset LDE of `coefficients` over the LDE domain and the commitment to its rows.
fn lde_and_commit<E, B, H>(
    backend: &B,
    coefficients: &B::Columns,
    num_base_cols: usize,
    domain: &StarkDomain<BaseElement>,
    partition_options: PartitionOptions,
) -> Result<(RowMatrix, MerkleTree<H>), Error>
where
    E: FieldElement<BaseField = BaseElement>,
    B: HostRows,
    H: AccelHash,
{
    let rows = backend.coset_lde(coefficients, domain.trace_to_lde_blowup(), domain.offset())?;
    let num_cols = num_base_cols / E::EXTENSION_DEGREE;
    if partition_options.partition_size::<E>(num_cols) == num_cols && !H::ROWS_ON_BACKEND {
        let host = backend.take_host_rows(rows)?;
        let hashes: Vec<H::Digest> = (0..host.num_rows())
            .map(|i| H::hash_elements(ext_row::<E>(&host, i)))
            .collect();
        let tree = MerkleTree::new(hashes).map_err(|e| Error::Commitment {
            reason: e.to_string(),
        })?;
        Ok((host, tree))
    } else if partition_options.partition_size::<E>(num_cols) == num_cols {
        let tree = H::commit_rows(backend, &rows)?;
        Ok((backend.take_host_rows(rows)?, tree))
    } else {
        let host = backend.take_host_rows(rows)?;
        let tree = commit_partitioned::<E, H>(&host, num_cols, partition_options)?;
        Ok((host, tree))
    }
}

/// Winterfell's multi-partition row hashing (`RowMatrix::commit_to_rows`), then the tree.
fn commit_partitioned<E, H>(
    rows: &RowMatrix,
    num_cols: usize,
    partition_options: PartitionOptions,
) -> Result<MerkleTree<H>, Error>
where
    E: FieldElement<BaseField = BaseElement>,
    H: AccelHash,
{
    let partition_size = partition_options.partition_size::<E>(num_cols);
    let hashes: Vec<H::Digest> = (0..rows.num_rows())
        .map(|i| {
            let parts: Vec<H::Digest> = ext_row::<E>(rows, i)
                .chunks(partition_size)
                .map(H::hash_elements::<E>)
                .collect();
            H::merge_many(&parts)
        })
        .collect();
    MerkleTree::new(hashes).map_err(|e| Error::Commitment {
        reason: e.to_string(),
    })
}
