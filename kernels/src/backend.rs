//! The backend boundary: what a backend is and the operations every backend offers.

use winter_crypto::{
    Hasher, MerkleTree,
    hashers::{Blake3_256, Rp64_256},
};
use winter_math::fields::f64::BaseElement;

use crypto::kem::{
    SharedSecret,
    mlkem768::{Ciphertext, DecapsulationKey},
};

use crate::{Error, cpu::Isa};

/// Where a backend computes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Device {
    /// Host CPU cores.
    Cpu {
        /// The instruction set the kernels use.
        isa: Isa,
        /// Worker threads available to the kernels.
        threads: usize,
    },
    /// A GPU (or a software Vulkan driver such as Mesa's lavapipe) driven through wgpu, or an
    /// NVIDIA GPU driven through CUDA.
    Gpu {
        /// The adapter's name as the driver reports it.
        name: String,
        /// The driver's name and version.
        driver: String,
        /// The API used for it: what wgpu uses (Vulkan, Metal, DX12), or `CUDA (compute
        /// capability X.Y)` for the CUDA backend.
        api: String,
    },
}

/// Which operations a backend implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Batched forward and inverse NTT over Goldilocks.
    pub ntt: bool,
    /// Batched coset low-degree extension into a row-major matrix.
    pub coset_lde: bool,
    /// Row hashing and Merkle trees with Rescue-Prime `Rp64_256`.
    pub merkle_rp64_256: bool,
    /// Row hashing and Merkle trees with BLAKE3-256.
    pub merkle_blake3: bool,
    /// Batched ML-KEM-768 decapsulation.
    pub mlkem768_decap: bool,
    /// Log2 of the largest transform (NTT or LDE domain) supported.
    pub max_log_size: u32,
}

/// What a backend is: its name, device, memory and capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// Stable name used in logs, metrics and bench ids, e.g. `cpu-avx2`.
    pub name: String,
    /// Where the backend computes.
    pub device: Device,
    /// Memory the backend can use, in bytes, when known.
    pub memory_bytes: Option<u64>,
    /// Operations offered.
    pub capabilities: Capabilities,
}

/// A host matrix of Goldilocks elements stored column by column (one polynomial or one trace
/// column per column). Every column has the same power-of-two length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMatrix {
    data: Vec<BaseElement>,
    num_rows: usize,
    num_cols: usize,
}

impl ColumnMatrix {
    /// Builds a matrix from columns of equal, power-of-two length (at least one column).
    pub fn new(columns: Vec<Vec<BaseElement>>) -> Result<Self, Error> {
        let num_cols = columns.len();
        let num_rows = columns.first().map_or(0, Vec::len);
        if num_cols == 0 {
            return Err(Error::Shape {
                what: "number of columns",
                expected: 1,
                found: 0,
            });
        }
        for c in &columns {
            if c.len() != num_rows {
                return Err(Error::Shape {
                    what: "column length",
                    expected: num_rows,
                    found: c.len(),
                });
            }
        }
        check_len("column length", num_rows)?;
        Ok(Self {
            data: columns.concat(),
            num_rows,
            num_cols,
        })
    }

    /// Builds a matrix from column-major data: `data.len() / num_rows` columns of `num_rows`.
    pub fn from_column_major(data: Vec<BaseElement>, num_rows: usize) -> Result<Self, Error> {
        check_len("column length", num_rows)?;
        if data.is_empty() || !data.len().is_multiple_of(num_rows) {
            return Err(Error::Shape {
                what: "column-major data length (a non-zero multiple of the column length)",
                expected: num_rows,
                found: data.len(),
            });
        }
        let num_cols = data.len() / num_rows;
        Ok(Self {
            data,
            num_rows,
            num_cols,
        })
    }

    /// Number of rows (the length of every column).
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// Number of columns.
    pub fn num_cols(&self) -> usize {
        self.num_cols
    }

    /// Column `i`. Panics if `i >= num_cols()` (a caller bug, not input data).
    pub fn column(&self, i: usize) -> &[BaseElement] {
        &self.data[i * self.num_rows..(i + 1) * self.num_rows]
    }

    /// Iterates over the columns.
    pub fn columns(&self) -> impl Iterator<Item = &[BaseElement]> {
        self.data.chunks_exact(self.num_rows)
    }

    /// The columns as separate vectors.
    pub fn to_columns(&self) -> Vec<Vec<BaseElement>> {
        self.columns().map(<[BaseElement]>::to_vec).collect()
    }

    /// The column-major data.
    pub fn data(&self) -> &[BaseElement] {
        &self.data
    }

    pub(crate) fn data_mut(&mut self) -> &mut [BaseElement] {
        &mut self.data
    }
}

/// A host matrix stored row by row: the evaluations of an LDE, one row per domain point, as
/// the prover hashes and opens them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMatrix {
    data: Vec<BaseElement>,
    num_rows: usize,
    num_cols: usize,
}

impl RowMatrix {
    /// Builds a matrix from row-major data with `num_cols` elements per row; the number of
    /// rows must be a power of two.
    pub fn from_row_major(data: Vec<BaseElement>, num_cols: usize) -> Result<Self, Error> {
        if num_cols == 0 || !data.len().is_multiple_of(num_cols) {
            return Err(Error::Shape {
                what: "row-major data length (a multiple of a non-zero row width)",
                expected: num_cols,
                found: data.len(),
            });
        }
        let num_rows = data.len() / num_cols;
        check_len("number of rows", num_rows)?;
        Ok(Self {
            data,
            num_rows,
            num_cols,
        })
    }

    pub(crate) fn from_parts(data: Vec<BaseElement>, num_rows: usize, num_cols: usize) -> Self {
        debug_assert_eq!(data.len(), num_rows * num_cols);
        Self {
            data,
            num_rows,
            num_cols,
        }
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// Number of columns (elements per row).
    pub fn num_cols(&self) -> usize {
        self.num_cols
    }

    /// Row `i`. Panics if `i >= num_rows()` (a caller bug, not input data).
    pub fn row(&self, i: usize) -> &[BaseElement] {
        &self.data[i * self.num_cols..(i + 1) * self.num_cols]
    }

    /// The row-major data.
    pub fn data(&self) -> &[BaseElement] {
        &self.data
    }
}

/// Checks that a length is a non-zero power of two within the field's two-adicity.
pub(crate) fn check_len(what: &'static str, len: usize) -> Result<(), Error> {
    if !len.is_power_of_two() {
        return Err(Error::NotPowerOfTwo { what, len });
    }
    let log = len.ilog2();
    if log > MAX_LOG_SIZE {
        return Err(Error::TooLarge {
            what,
            log_size: log,
            max_log: MAX_LOG_SIZE,
        });
    }
    Ok(())
}

/// Checks the arguments of [`Backend::coset_lde`] over `num_rows` coefficients per column and
/// returns the size of the LDE domain (`num_rows * blowup`, a power of two within the field's
/// two-adicity). Every backend validates its LDE arguments here, so they all refuse the same
/// inputs with the same errors.
pub(crate) fn lde_domain(
    num_rows: usize,
    blowup: usize,
    offset: BaseElement,
) -> Result<usize, Error> {
    if !blowup.is_power_of_two() {
        return Err(Error::NotPowerOfTwo {
            what: "LDE blowup factor",
            len: blowup,
        });
    }
    if offset == <BaseElement as winter_math::FieldElement>::ZERO {
        return Err(Error::ZeroOffset);
    }
    let big = num_rows.checked_mul(blowup).ok_or(Error::TooLarge {
        what: "LDE domain",
        log_size: num_rows.ilog2() + blowup.ilog2(),
        max_log: MAX_LOG_SIZE,
    })?;
    check_len("LDE domain", big)?;
    Ok(big)
}

/// Largest transform size (log2) of the CPU backend: Goldilocks has roots of unity of order
/// 2^32.
pub(crate) const MAX_LOG_SIZE: u32 = 32;

/// A compute backend: the operations the prover offloads, over buffers that live on the
/// backend's device.
///
/// Data moves to the device once ([`Backend::upload_columns`]), stays there through the
/// interpolation, the LDE and the commitment, and only what the protocol needs comes back:
/// the tree (root and openings, [`Backend::download_tree`]) and the queried rows
/// ([`Backend::read_rows`]). On the CPU backend the buffer types are the host matrices
/// themselves, so every transfer is a move.
///
/// Every operation is bit-exact with winter-math / winter-crypto; [`crate::conformance`]
/// checks it.
pub trait Backend: Send + Sync {
    /// A column matrix resident on the device.
    type Columns: Send + Sync;
    /// A row-major matrix resident on the device.
    type Rows: Send + Sync;
    /// A Merkle tree resident on the device.
    type Tree<H: Hasher>;

    /// What this backend is.
    fn info(&self) -> BackendInfo;

    /// Which implementation [`Backend::decap_batch`] runs on this backend, e.g.
    /// `libcrux-avx2-unpacked` on the CPU; `None` where the backend does not say (or does not
    /// decapsulate).
    fn kem_implementation(&self) -> Option<String> {
        None
    }

    /// Moves a host column matrix to the device.
    fn upload_columns(&self, host: ColumnMatrix) -> Result<Self::Columns, Error>;

    /// Moves a host row-major matrix to the device (e.g. to commit to rows computed elsewhere).
    fn upload_rows(&self, host: RowMatrix) -> Result<Self::Rows, Error>;

    /// Copies a device column matrix back to the host.
    fn download_columns(&self, columns: &Self::Columns) -> Result<ColumnMatrix, Error>;

    /// Copies a device row-major matrix back to the host.
    fn download_rows(&self, rows: &Self::Rows) -> Result<RowMatrix, Error>;

    /// Reads the rows at `indexes` (the query openings); an index out of range is an error.
    fn read_rows(
        &self,
        rows: &Self::Rows,
        indexes: &[usize],
    ) -> Result<Vec<Vec<BaseElement>>, Error>;

    /// Forward NTT of every column in place: coefficients to evaluations over the subgroup of
    /// size `num_rows`, natural order (winter-math `fft::evaluate_poly`).
    fn ntt(&self, columns: &mut Self::Columns) -> Result<(), Error>;

    /// Inverse NTT of every column in place: evaluations to coefficients (winter-math
    /// `fft::interpolate_poly`).
    fn intt(&self, columns: &mut Self::Columns) -> Result<(), Error>;

    /// Coset low-degree extension: evaluates every column (polynomial coefficients) over
    /// `offset * <g>` with `|<g>| = num_rows * blowup`, natural order, into a row-major matrix
    /// (column `j` equals winter-math `fft::evaluate_poly_with_offset` of column `j`).
    fn coset_lde(
        &self,
        coefficients: &Self::Columns,
        blowup: usize,
        offset: BaseElement,
    ) -> Result<Self::Rows, Error>;

    /// `Rp64_256::hash_elements` of every row, as winterfell's prover hashes trace rows.
    fn hash_rows_rp64_256(
        &self,
        rows: &Self::Rows,
    ) -> Result<Vec<<Rp64_256 as Hasher>::Digest>, Error>;

    /// Merkle tree (winter-crypto `MerkleTree` layout) over `Rp64_256` leaves.
    fn merkle_tree_rp64_256(
        &self,
        leaves: Vec<<Rp64_256 as Hasher>::Digest>,
    ) -> Result<Self::Tree<Rp64_256>, Error>;

    /// Hashes every row with `Rp64_256` and builds the Merkle tree over the row hashes: the
    /// trace commitment of winterfell's prover.
    fn commit_rows_rp64_256(&self, rows: &Self::Rows) -> Result<Self::Tree<Rp64_256>, Error>;

    /// Hashes every row with BLAKE3-256 and builds the Merkle tree over the row hashes.
    fn commit_rows_blake3(
        &self,
        rows: &Self::Rows,
    ) -> Result<Self::Tree<Blake3_256<BaseElement>>, Error>;

    /// Brings a tree to the host as winter-crypto's `MerkleTree` (root, leaves and all nodes
    /// for openings).
    fn download_tree<H: Hasher>(&self, tree: Self::Tree<H>) -> Result<MerkleTree<H>, Error>;

    /// ML-KEM-768 decapsulation (FIPS 203 `ML-KEM.Decaps`) of every ciphertext under one key:
    /// one shared secret per ciphertext, in order, each zeroized on drop. Bit-exact with
    /// [`DecapsulationKey::decapsulate`], including the implicit-rejection secret of tampered
    /// ciphertexts. Backends without it ([`Capabilities::mlkem768_decap`] false) return
    /// [`Error::Unsupported`].
    fn decap_batch(
        &self,
        dk: &DecapsulationKey,
        ciphertexts: &[Ciphertext],
    ) -> Result<Vec<SharedSecret>, Error> {
        let _ = (dk, ciphertexts);
        Err(Error::Unsupported {
            backend: self.info().name,
            operation: "ML-KEM-768 batch decapsulation",
        })
    }
}
