//! The CPU backend: a scalar reference path and AVX2 / AVX-512 paths chosen at run time,
//! spread over cores with rayon.
//!
//! The instruction set is picked when the backend is built: the best one this CPU has, or the
//! one named by the constructor argument or the `EPA_SIMD` environment variable
//! (`scalar|avx2|avx512`). Asking for one the CPU lacks is an [`Error::UnsupportedIsa`].

use std::{
    fmt,
    str::FromStr,
    sync::{Arc, Mutex},
};

use crypto::kem::{
    SharedSecret,
    mlkem768::{Ciphertext, DecapsulationKey},
};
use rayon::prelude::*;
use winter_crypto::{
    Hasher, MerkleTree,
    hashers::{Blake3_256, Rp64_256},
};
use winter_math::fields::f64::BaseElement;

use crate::{
    Error,
    backend::{
        Backend, BackendInfo, Capabilities, ColumnMatrix, Device, MAX_LOG_SIZE, RowMatrix,
        check_len, lde_domain,
    },
};

mod alloc;
pub(crate) mod field;
mod kernels;
mod lde;
mod merkle;
mod mlkem;
pub(crate) mod ntt;
pub(crate) mod packed;
mod rescue;
mod words;

use kernels::Kernels;
pub use mlkem::KemPath;

/// Name of the environment variable that overrides the instruction set of [`CpuBackend::new`].
pub const SIMD_ENV: &str = "EPA_SIMD";

/// An instruction set the CPU backend can run its kernels with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Isa {
    /// Portable scalar code: the reference path, available everywhere.
    Scalar,
    /// x86-64 AVX2: 4 lanes of 64 bits.
    Avx2,
    /// x86-64 AVX-512F: 8 lanes of 64 bits.
    Avx512,
}

impl Isa {
    /// Every instruction set, from the most portable to the widest.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    /// Lower-case name as used in `EPA_SIMD` and bench ids.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run kernels of this instruction set (checked at run time).
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The widest instruction set this CPU supports.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|i| i.is_supported())
            .unwrap_or(Isa::Scalar)
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| Error::InvalidSimdEnv {
                value: s.to_owned(),
            })
    }
}

/// The CPU backend.
pub struct CpuBackend {
    kernels: Kernels,
    twiddles: Mutex<Option<Arc<ntt::Twiddles>>>,
    rescue: rescue::Constants,
    kem_path: KemPath,
}

impl fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpuBackend")
            .field("isa", &self.isa())
            .finish_non_exhaustive()
    }
}

/// Parallel pieces smaller than this many rows are not worth a task.
const ROWS_PER_TASK: usize = 256;

impl CpuBackend {
    /// The backend with the instruction set named by `EPA_SIMD` if set, else the best this
    /// CPU has.
    pub fn new() -> Result<Self, Error> {
        match std::env::var(SIMD_ENV) {
            Ok(v) if !v.trim().is_empty() => Self::with_isa(v.parse()?),
            Ok(_) | Err(std::env::VarError::NotPresent) => Self::with_isa(Isa::best()),
            Err(std::env::VarError::NotUnicode(v)) => Err(Error::InvalidSimdEnv {
                value: v.to_string_lossy().into_owned(),
            }),
        }
    }

    /// The backend with exactly this instruction set; an error if the CPU lacks it.
    pub fn with_isa(isa: Isa) -> Result<Self, Error> {
        let kernels = Kernels::new(isa).ok_or(Error::UnsupportedIsa {
            requested: isa,
            available: Isa::best(),
        })?;
        Ok(Self {
            kernels,
            twiddles: Mutex::new(None),
            rescue: rescue::Constants::new(),
            // The scalar backend is the reference configuration: it runs libcrux's portable
            // ML-KEM too, so both implementations are reachable through the public API.
            kem_path: if isa == Isa::Scalar {
                KemPath::Portable
            } else {
                KemPath::detect()
            },
        })
    }

    /// The instruction set of this backend's kernels.
    pub fn isa(&self) -> Isa {
        self.kernels.isa()
    }

    /// The ML-KEM implementation [`Backend::decap_batch`] runs: libcrux's AVX2 one when this
    /// CPU has AVX2 (detected at run time), its portable one otherwise or on the scalar
    /// backend.
    pub fn kem_path(&self) -> KemPath {
        self.kem_path
    }

    /// Twiddles covering transforms of `n` points, cached across calls.
    fn twiddles(&self, n: usize) -> Arc<ntt::Twiddles> {
        let n = n.max(2);
        // A poisoned lock only means another thread panicked while holding it; the cache
        // value is either a complete table or absent, so it is still valid.
        let mut guard = self.twiddles.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(t) if t.len() >= n => Arc::clone(t),
            _ => {
                let t = Arc::new(ntt::Twiddles::new(n));
                *guard = Some(Arc::clone(&t));
                t
            }
        }
    }

    /// Runs `f` on every column, in parallel over columns when there are enough of them and
    /// inside each column otherwise.
    fn per_column(&self, m: &mut ColumnMatrix, f: impl Fn(&mut [u64], bool) + Sync + Send) {
        let n = m.num_rows();
        let many = m.num_cols() >= rayon::current_num_threads();
        let words = words::as_words_mut(m.data_mut());
        if many {
            words.par_chunks_mut(n).for_each(|c| f(c, false));
        } else {
            words.chunks_mut(n).for_each(|c| f(c, n >= 1 << 12));
        }
    }

    /// The Rp64_256 leaves of a row matrix as raw digests.
    fn raw_row_hashes(&self, rows: &RowMatrix) -> Vec<rescue::RawDigest> {
        let width = rows.num_cols();
        let words = words::as_words(rows.data());
        let mut out = vec![[0u64; 4]; rows.num_rows()];
        out.par_chunks_mut(ROWS_PER_TASK)
            .zip(words.par_chunks(ROWS_PER_TASK * width))
            .for_each(|(o, r)| self.kernels.hash_rows(r, width, o, &self.rescue));
        out
    }

    fn rp_tree(&self, leaves: Vec<rescue::RawDigest>) -> Result<MerkleTree<Rp64_256>, Error> {
        if leaves.len() < 2 {
            return Err(Error::TooFewLeaves {
                leaves: leaves.len(),
            });
        }
        check_len("number of Merkle leaves", leaves.len())?;
        let nodes = merkle::rp_nodes(&self.kernels, &self.rescue, &leaves);
        let nodes = nodes.into_iter().map(merkle::to_element_digest).collect();
        let leaves = leaves.into_iter().map(merkle::to_element_digest).collect();
        let tree = MerkleTree::from_raw_parts(nodes, leaves);
        Ok(tree.expect("leaf count checked above: a power of two, at least 2"))
    }
}

fn memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

impl Backend for CpuBackend {
    type Columns = ColumnMatrix;
    type Rows = RowMatrix;
    type Tree<H: Hasher> = MerkleTree<H>;

    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: format!("cpu-{}", self.isa()),
            device: Device::Cpu {
                isa: self.isa(),
                threads: rayon::current_num_threads(),
            },
            memory_bytes: memory_bytes(),
            capabilities: Capabilities {
                ntt: true,
                coset_lde: true,
                merkle_rp64_256: true,
                merkle_blake3: true,
                mlkem768_decap: true,
                max_log_size: MAX_LOG_SIZE,
            },
        }
    }

    fn kem_implementation(&self) -> Option<String> {
        Some(self.kem_path.implementation().to_owned())
    }

    fn upload_columns(&self, host: ColumnMatrix) -> Result<ColumnMatrix, Error> {
        Ok(host)
    }

    fn upload_rows(&self, host: RowMatrix) -> Result<RowMatrix, Error> {
        Ok(host)
    }

    fn download_columns(&self, columns: &ColumnMatrix) -> Result<ColumnMatrix, Error> {
        Ok(columns.clone())
    }

    fn download_rows(&self, rows: &RowMatrix) -> Result<RowMatrix, Error> {
        Ok(rows.clone())
    }

    fn read_rows(
        &self,
        rows: &RowMatrix,
        indexes: &[usize],
    ) -> Result<Vec<Vec<BaseElement>>, Error> {
        indexes
            .iter()
            .map(|&i| {
                if i < rows.num_rows() {
                    Ok(rows.row(i).to_vec())
                } else {
                    Err(Error::Shape {
                        what: "row index (must be below)",
                        expected: rows.num_rows(),
                        found: i,
                    })
                }
            })
            .collect()
    }

    fn ntt(&self, columns: &mut ColumnMatrix) -> Result<(), Error> {
        let tw = self.twiddles(columns.num_rows());
        let k = &self.kernels;
        self.per_column(columns, |c, par| ntt::forward(k, c, &tw, par));
        Ok(())
    }

    fn intt(&self, columns: &mut ColumnMatrix) -> Result<(), Error> {
        let tw = self.twiddles(columns.num_rows());
        let k = &self.kernels;
        self.per_column(columns, |c, par| ntt::inverse(k, c, &tw, par));
        Ok(())
    }

    fn coset_lde(
        &self,
        coefficients: &ColumnMatrix,
        blowup: usize,
        offset: BaseElement,
    ) -> Result<RowMatrix, Error> {
        let n = coefficients.num_rows();
        let big = lde_domain(n, blowup, offset)?;
        let width = coefficients.num_cols();
        let tw = self.twiddles(n);
        let coeffs = words::as_words(coefficients.data());
        let out = lde::coset_lde(
            &self.kernels,
            coeffs,
            n,
            blowup,
            offset,
            &tw,
            lde::Plan::DEFAULT,
        );
        Ok(RowMatrix::from_parts(out, big, width))
    }

    fn hash_rows_rp64_256(
        &self,
        rows: &RowMatrix,
    ) -> Result<Vec<<Rp64_256 as Hasher>::Digest>, Error> {
        Ok(self
            .raw_row_hashes(rows)
            .into_iter()
            .map(merkle::to_element_digest)
            .collect())
    }

    fn merkle_tree_rp64_256(
        &self,
        leaves: Vec<<Rp64_256 as Hasher>::Digest>,
    ) -> Result<MerkleTree<Rp64_256>, Error> {
        let raw = leaves.iter().map(merkle::from_element_digest).collect();
        self.rp_tree(raw)
    }

    fn commit_rows_rp64_256(&self, rows: &RowMatrix) -> Result<MerkleTree<Rp64_256>, Error> {
        if rows.num_rows() < 2 {
            return Err(Error::TooFewLeaves {
                leaves: rows.num_rows(),
            });
        }
        self.rp_tree(self.raw_row_hashes(rows))
    }

    fn commit_rows_blake3(
        &self,
        rows: &RowMatrix,
    ) -> Result<MerkleTree<Blake3_256<BaseElement>>, Error> {
        if rows.num_rows() < 2 {
            return Err(Error::TooFewLeaves {
                leaves: rows.num_rows(),
            });
        }
        check_len("number of Merkle leaves", rows.num_rows())?;
        let (nodes, leaves) = merkle::blake3_tree(rows);
        let tree = MerkleTree::from_raw_parts(nodes, leaves);
        Ok(tree.expect("leaf count checked above: a power of two, at least 2"))
    }

    fn download_tree<H: Hasher>(&self, tree: MerkleTree<H>) -> Result<MerkleTree<H>, Error> {
        Ok(tree)
    }

    fn decap_batch(
        &self,
        dk: &DecapsulationKey,
        ciphertexts: &[Ciphertext],
    ) -> Result<Vec<SharedSecret>, Error> {
        Ok(mlkem::decap_batch(dk, ciphertexts, self.kem_path))
    }
}
