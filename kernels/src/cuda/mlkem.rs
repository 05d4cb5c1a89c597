//! Batch ML-KEM-768 decapsulation on the CUDA backend: not written yet. Until it is, the
//! backend reports `mlkem768_decap: false` and [`CudaBackend::decap_batch_cuda`] returns
//! [`Error::Unsupported`].
//!
//! The contract with `mod.rs`: [`HEADERS`] and [`UNITS`] list this module's CUDA C files
//! (`kernels/cuda/mlkem*.cuh`, `mlkem*.cu`) for NVRTC and `scripts/cuda-check.sh`;
//! [`CudaBackend::load_unit`] compiles a unit for the device on first use.

use crypto::kem::{
    SharedSecret,
    mlkem768::{Ciphertext, DecapsulationKey},
};

use super::CudaBackend;
use crate::Error;

/// CUDA C headers of the ML-KEM kernels, by the name they are `#include`d under.
pub(crate) const HEADERS: &[(&str, &str)] = &[];

/// CUDA C translation units of the ML-KEM kernels.
pub(crate) const UNITS: &[(&str, &str)] = &[];

/// Whether [`CudaBackend::decap_batch_cuda`] decapsulates on the device.
pub(crate) const SUPPORTED: bool = false;

impl CudaBackend {
    /// ML-KEM-768 decapsulation of every ciphertext under one key on the device.
    pub(crate) fn decap_batch_cuda(
        &self,
        dk: &DecapsulationKey,
        ciphertexts: &[Ciphertext],
    ) -> Result<Vec<SharedSecret>, Error> {
        let _ = (dk, ciphertexts);
        Err(Error::Unsupported {
            backend: "cuda".to_owned(),
            operation: "ML-KEM-768 batch decapsulation",
        })
    }
}
