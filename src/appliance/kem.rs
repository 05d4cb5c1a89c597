//! Batch ML-KEM-768 decapsulation routed by batch size: the decap stage's [`KemDispatch`].
//!
//! 1. At start the appliance probes the accelerators once (`prover::registry::probe`, only
//!    when sysfs shows GPU hardware and `backends.allowed` names one); [`KemDispatch::new`]
//!    takes that result and keeps the most preferred GPU (cuda > wgpu) that is allowed,
//!    probed, a hardware device (never a software adapter such as lavapipe) and able to
//!    decapsulate. It reuses the device the probe opened (the prover's shared backends), so
//!    nothing is opened twice.
//! 2. [`KemDispatch::decap`] sends a batch of at least `backends.kem_gpu_min_batch`
//!    ciphertexts to that GPU and smaller ones to the CPU kernels; a GPU error (or a result of
//!    the wrong length) redoes the batch on the CPU kernels and counts one
//!    `epa_kem_gpu_fallbacks_total`. Every batch counts its ciphertexts in
//!    `epa_kem_decaps_total{backend}` and itself in `epa_kem_batches_total{backend}`, under the
//!    backend that produced the secrets.
//! 3. Every backend is bit-exact with the reference (implicit rejection included), so the
//!    route changes the speed, never the secrets.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crypto::kem::SharedSecret;
use crypto::kem::mlkem768::{Ciphertext, DecapsulationKey};
use prover::registry::{ProbedBackend, ProverBackend};

use super::Metrics;

/// The backend labels of the decap counters, in the order of [`Metrics::kem_decaps`] and
/// [`Metrics::kem_batches`]: the CPU kernels, the two GPU backends, and the reference
/// implementation one by one (when the CPU kernels cannot be built on this machine).
pub const KEM_BACKENDS: [&str; 4] = ["cpu", "wgpu", "cuda", "reference"];

/// Index of a label in [`KEM_BACKENDS`] (unknown labels count as `cpu`).
fn label_index(name: &str) -> usize {
    KEM_BACKENDS.iter().position(|b| *b == name).unwrap_or(0)
}

/// A backend that decapsulates whole batches: any `kernels::Backend` (and test doubles).
pub(crate) trait KemDevice: Send + Sync {
    /// The label of the decap counters (`wgpu`, `cuda`).
    fn label(&self) -> &'static str;
    /// One shared secret per ciphertext, in order.
    fn decap_batch(
        &self,
        dk: &DecapsulationKey,
        ciphertexts: &[Ciphertext],
    ) -> Result<Vec<SharedSecret>, kernels::Error>;
}

/// A kernels backend as a [`KemDevice`].
struct OnKernels<B> {
    backend: Arc<B>,
    label: &'static str,
}

impl<B: kernels::Backend> KemDevice for OnKernels<B> {
    fn label(&self) -> &'static str {
        self.label
    }

    fn decap_batch(
        &self,
        dk: &DecapsulationKey,
        ciphertexts: &[Ciphertext],
    ) -> Result<Vec<SharedSecret>, kernels::Error> {
        self.backend.decap_batch(dk, ciphertexts)
    }
}

/// Wraps a kernels backend (a GPU the probe found) for the dispatcher.
pub(crate) fn on_kernels<B: kernels::Backend + 'static>(
    backend: Arc<B>,
    label: &'static str,
) -> Arc<dyn KemDevice> {
    Arc::new(OnKernels { backend, label })
}

/// Where the decap stage's batches run: the CPU kernels, and a GPU for large batches.
pub(crate) struct KemDispatch {
    /// The CPU kernels (`None`: the reference decapsulates one by one).
    cpu: Option<Arc<kernels::CpuBackend>>,
    /// The GPU of large batches, if one is allowed, probed and a hardware device.
    gpu: Option<Arc<dyn KemDevice>>,
    /// Batches of at least this many ciphertexts go to the GPU.
    gpu_min_batch: usize,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for KemDispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KemDispatch")
            .field("cpu", &self.cpu.as_ref().map(|c| c.isa()))
            .field("gpu", &self.gpu_label())
            .field("gpu_min_batch", &self.gpu_min_batch)
            .finish()
    }
}

impl KemDispatch {
    /// The dispatcher of a start-up probe: the CPU kernels `cpu` and the most preferred GPU
    /// among `probed` (cuda > wgpu) that `allowed` lists, that is not a software adapter and
    /// that reports ML-KEM-768 decapsulation; its device is the one the probe opened (the
    /// prover's shared backend). `probed` is empty when the appliance did not probe: the CPU
    /// kernels then take every batch. Opening a shared backend again only happens when the
    /// probed device was lost meanwhile, so this may block: call it off the async runtime.
    pub(crate) fn new<S: AsRef<str>>(
        cpu: Option<Arc<kernels::CpuBackend>>,
        probed: &[ProbedBackend],
        allowed: &[S],
        gpu_min_batch: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let usable = |b: ProverBackend| {
            allowed.iter().any(|a| a.as_ref().trim() == b.name())
                && probed
                    .iter()
                    .any(|p| p.backend == b && !p.software && p.info.capabilities.mlkem768_decap)
        };
        let mut gpu = None;
        if usable(ProverBackend::Cuda) {
            gpu = prover::accel::cuda::shared()
                .ok()
                .map(|c| on_kernels(c, "cuda"));
        }
        if gpu.is_none() && usable(ProverBackend::Wgpu) {
            gpu = prover::registry::shared_wgpu()
                .ok()
                .map(|w| on_kernels(w, "wgpu"));
        }
        Self::with_gpu(cpu, gpu, gpu_min_batch, metrics)
    }

    /// A dispatcher over given backends, whatever they are (tests force a software adapter
    /// or a failing double here); `gpu_min_batch` 0 counts as 1.
    pub(crate) fn with_gpu(
        cpu: Option<Arc<kernels::CpuBackend>>,
        gpu: Option<Arc<dyn KemDevice>>,
        gpu_min_batch: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            cpu,
            gpu,
            gpu_min_batch: gpu_min_batch.max(1),
            metrics,
        }
    }

    /// The CPU kernels of small batches and of the fallback.
    #[cfg(test)]
    pub(crate) fn cpu(&self) -> Option<&Arc<kernels::CpuBackend>> {
        self.cpu.as_ref()
    }

    /// The label of the GPU of large batches (`cuda`, `wgpu`), if there is one.
    pub(crate) fn gpu_label(&self) -> Option<&'static str> {
        self.gpu.as_ref().map(|g| g.label())
    }

    /// ML-KEM-768 decapsulation of every ciphertext, in order: on the GPU when the batch holds
    /// at least `gpu_min_batch` ciphertexts and a GPU is present, else (and after a GPU
    /// error) on the CPU kernels, else the reference one by one. Bit-exact on every route,
    /// implicit rejection included.
    pub(crate) fn decap(
        &self,
        dk: &DecapsulationKey,
        ciphertexts: &[Ciphertext],
    ) -> Vec<SharedSecret> {
        if let Some(gpu) = self
            .gpu
            .as_ref()
            .filter(|_| ciphertexts.len() >= self.gpu_min_batch)
        {
            match gpu.decap_batch(dk, ciphertexts) {
                Ok(secrets) if secrets.len() == ciphertexts.len() => {
                    self.count(gpu.label(), ciphertexts.len());
                    return secrets;
                }
                Ok(secrets) => self.gpu_failed(
                    gpu.label(),
                    &format!(
                        "returned {} secrets for {} ciphertexts",
                        secrets.len(),
                        ciphertexts.len()
                    ),
                ),
                Err(e) => self.gpu_failed(gpu.label(), &e.to_string()),
            }
        }
        if let Some(cpu) = &self.cpu
            && let Ok(secrets) = kernels::Backend::decap_batch(cpu.as_ref(), dk, ciphertexts)
            && secrets.len() == ciphertexts.len()
        {
            self.count("cpu", ciphertexts.len());
            return secrets;
        }
        self.count("reference", ciphertexts.len());
        ciphertexts.iter().map(|ct| dk.decapsulate(ct)).collect()
    }

    fn count(&self, label: &str, ciphertexts: usize) {
        let i = label_index(label);
        self.metrics.kem_decaps[i].fetch_add(ciphertexts as u64, Ordering::Relaxed);
        self.metrics.kem_batches[i].fetch_add(1, Ordering::Relaxed);
    }

    fn gpu_failed(&self, label: &str, reason: &str) {
        self.metrics
            .kem_gpu_fallbacks
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            backend = label,
            reason,
            "ML-KEM batch decapsulation failed on the GPU; redoing the batch on the CPU kernels"
        );
    }
}

#[cfg(test)]
mod tests;
