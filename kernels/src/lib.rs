//! Compute backends for EPA.
//!
//! This crate owns the [`Backend`] API from the design (what a backend is: name, device,
//! memory, capabilities) and its implementations:
//!
//! 1. [`cpu`]: a scalar reference path plus AVX2 / AVX-512 paths chosen at run time (done);
//! 2. `wgpu` (feature `wgpu`, on by default): WGSL compute shaders for any Vulkan, Metal or
//!    DX12 GPU with 64-bit shader integers, Mesa's lavapipe included;
//! 3. [`cuda`] (feature `cuda`, on by default): CUDA C kernels compiled at run time with NVRTC,
//!    driven through `cudarc` with the driver loaded dynamically (builds without CUDA).
//!
//! Operations: batched Goldilocks NTT and coset LDE, Rescue-Prime / BLAKE3 Merkle trees and
//! (later) batched ML-KEM-768 decapsulation, with one conformance suite every backend must
//! pass ([`conformance`]). It is the only crate of the workspace allowed to contain `unsafe`
//! code, each block with a `// SAFETY:` comment.
//!
//! # Usage
//!
//! 1. Build a backend: [`CpuBackend::new`] picks the widest instruction set of this CPU (or the
//!    one named by `EPA_SIMD`), [`CpuBackend::with_isa`] asks for one explicitly.
//! 2. Move trace columns to it with [`Backend::upload_columns`] and interpolate them in place
//!    with [`Backend::intt`] (winterfell's trace polynomials).
//! 3. Extend them over the blowup domain with [`Backend::coset_lde`]: a row-major matrix, one
//!    row per domain point, still on the device.
//! 4. Commit with [`Backend::commit_rows_rp64_256`] (or BLAKE3) and bring back the tree with
//!    [`Backend::download_tree`] for the root and query openings; read queried rows with
//!    [`Backend::read_rows`].
//!
//! ```
//! use epa_kernels::{Backend, ColumnMatrix, CpuBackend};
//! use winter_math::{FieldElement, StarkField, fields::f64::BaseElement};
//!
//! let cpu = CpuBackend::new()?;
//! let trace: Vec<BaseElement> = (0..16u64).map(BaseElement::new).collect();
//! let mut cols = cpu.upload_columns(ColumnMatrix::new(vec![trace])?)?;
//! cpu.intt(&mut cols)?;
//! let lde = cpu.coset_lde(&cols, 8, BaseElement::GENERATOR)?;
//! let tree = cpu.download_tree(cpu.commit_rows_rp64_256(&lde)?)?;
//! assert_eq!(tree.leaves().len(), 128);
//! # Ok::<(), epa_kernels::Error>(())
//! ```
//!
//! All results are bit-exact with winter-math and winter-crypto, which the [`conformance`]
//! suite checks on fresh random inputs for every backend and instruction set.

pub mod backend;
pub mod conformance;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod device_words;
mod error;
#[cfg(feature = "wgpu")]
pub mod wgpu;

#[cfg(feature = "cuda")]
pub use crate::cuda::CudaBackend;
#[cfg(feature = "wgpu")]
pub use crate::wgpu::WgpuBackend;
pub use backend::{Backend, BackendInfo, Capabilities, ColumnMatrix, Device, RowMatrix};
pub use cpu::{CpuBackend, Isa, KemPath};
pub use error::Error;
