//! The CUDA kernels backend (`kernels::CudaBackend`) as a prover backend.
//!
//! 1. [`shared`] opens the process's CUDA backend once (device 0; the kernels are compiled
//!    with NVRTC on the first open, which costs far more than a small proof) and hands out
//!    the same backend afterwards; without a driver it returns the kernels' typed
//!    `NoCuda` error, and a failed open is not cached.
//! 2. [`prove`] proves a request on it with [`AccelComponents`]: trace LDE and commitments on
//!    the GPU, the LDE rows brought to the host once for the constraint evaluation
//!    ([`HostRows`]); the proof bytes equal stock winterfell's (`tests/accel_cuda.rs` checks
//!    both AIRs and both hashes on a GPU machine).

use std::sync::{Arc, Mutex};

use kernels::{Backend, CudaBackend, RowMatrix};
use winter_crypto::hashers::{Blake3_256, Rp64_256};
use winter_math::fields::f64::BaseElement;

use super::{AccelComponents, HostRows};
use crate::Error;
use crate::envelope::ProofEnvelope;
use crate::options::{HashId, OptionsChoice};
use crate::registry::{ProveRequest, prove_with};

impl HostRows for CudaBackend {
    /// Downloads the rows (one copy back through pinned memory; the device buffer is freed
    /// when `rows` drops).
    fn take_host_rows(&self, rows: Self::Rows) -> Result<RowMatrix, Error> {
        Ok(self.download_rows(&rows)?)
    }
}

/// The process's CUDA kernels backend, opened on first use and shared by every later proof.
/// A failed open (no driver, no NVRTC, no device) is returned as the kernels' error and not
/// cached: the next call tries again. A shared backend whose driver calls have failed
/// (`CudaBackend::has_failed`: a faulted context stays unusable) is dropped and opened
/// anew.
pub fn shared() -> Result<Arc<CudaBackend>, Error> {
    static SHARED: Mutex<Option<Arc<CudaBackend>>> = Mutex::new(None);
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = slot.as_ref() {
        if !b.has_failed() {
            return Ok(Arc::clone(b));
        }
        *slot = None;
    }
    let b = Arc::new(CudaBackend::new()?);
    *slot = Some(Arc::clone(&b));
    Ok(b)
}

/// Proves `request` on the CUDA backend `gpu` with the hash `hash`; the proof bytes equal
/// those of stock winterfell for the same request and options.
pub fn prove(
    request: &ProveRequest,
    options: OptionsChoice,
    hash: HashId,
    gpu: Arc<CudaBackend>,
) -> Result<ProofEnvelope, Error> {
    match hash {
        HashId::Blake3_256 => prove_with(
            request,
            options,
            AccelComponents::<_, Blake3_256<BaseElement>>::new(gpu),
        ),
        HashId::Rp64_256 => prove_with(request, options, AccelComponents::<_, Rp64_256>::new(gpu)),
    }
}
