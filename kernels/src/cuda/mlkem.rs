//! Batch ML-KEM-768 decapsulation on the CUDA backend: one key, many ciphertexts.
//!
//! The CUDA C is `kernels/cuda/mlkem.cuh` (the algorithm, every helper `__host__ __device__`)
//! and `kernels/cuda/mlkem.cu` (three kernels). The host C compiler builds the same header
//! for the CPU checks (`tests/cuda_mlkem_host.rs`), so the arithmetic, the hashing and the
//! stage barriers are checked against the reference without a GPU.
//!
//! A batch on the device:
//!
//! 1. the 2400-byte key goes up once and `mlkem768_expand_key_kernel` expands it (`s_hat`,
//!    `t_hat`, the matrix `A_hat` by SampleNTT, `h`, `z`: 7744 bytes) into device memory; the
//!    uploaded key is overwritten with zeros right after;
//! 2. per chunk of at most [`CHUNK`] ciphertexts, alternately on the two lanes of
//!    [`Staging`] (a stream, a pinned host buffer and a device buffer each, kept by the
//!    backend across batches): the host packs the ciphertexts into the lane's pinned buffer
//!    (in parallel), they go up asynchronously, `mlkem768_reject_kernel` writes every
//!    implicit-rejection secret `J(z || c)` (one thread per ciphertext),
//!    `mlkem768_decaps_kernel` (one block of [`DECAPS_BLOCK`] threads per ciphertext)
//!    decrypts, re-encrypts, compares in constant time and keeps `K'` or the rejection
//!    secret; one lane's upload overlaps the other lane's kernels. The secrets of the batch
//!    come down once at the end and the device copy is zeroed;
//! 3. the expanded key is zeroed before its buffer is freed.
//!
//! Host copies of the key and of the secrets are zeroized; the result is bit-exact with
//! [`DecapsulationKey::decapsulate`], implicit rejection included (tests/cuda_mlkem.rs on a
//! GPU, tests/cuda_mlkem_host.rs everywhere).
//!
//! The contract with `mod.rs`: [`HEADERS`] and [`UNITS`] list this module's CUDA C files for
//! NVRTC and `scripts/cuda-check.sh`; the module is compiled for the device on first use
//! ([`CudaBackend::load_unit`]) and kept in the backend.

use std::sync::{Arc, Mutex};

use crypto::kem::{
    SharedSecret,
    mlkem768::{Ciphertext, DecapsulationKey},
};
use cudarc::driver::{
    CudaEvent, CudaFunction, CudaModule, CudaSlice, CudaStream, CudaViewMut, DevicePtrMut,
    LaunchConfig, PinnedHostSlice, PushKernelArg, result::memcpy_htod_async,
};
use rayon::prelude::*;
use zeroize::Zeroize;

use super::CudaBackend;
use crate::Error;

/// CUDA C headers of the ML-KEM kernels, by the name they are `#include`d under.
pub(crate) const HEADERS: &[(&str, &str)] = &[("mlkem.cuh", include_str!("../../cuda/mlkem.cuh"))];

/// CUDA C translation units of the ML-KEM kernels.
pub(crate) const UNITS: &[(&str, &str)] = &[("mlkem.cu", include_str!("../../cuda/mlkem.cu"))];

/// Whether [`CudaBackend::decap_batch_cuda`] decapsulates on the device.
pub(crate) const SUPPORTED: bool = true;

/// Bytes of an encoded ML-KEM-768 decapsulation key.
const DK_BYTES: usize = 2400;
/// Bytes of an ML-KEM-768 ciphertext.
const CT_BYTES: usize = 1088;
/// Bytes of a shared secret.
const SS_BYTES: usize = 32;
/// Bytes of the expanded key (`sizeof(mlkem768_key)`, checked at compile time in mlkem.cuh).
const KEY_BYTES: usize = 7744;
/// Threads per block of the key expansion, and the most threads per block that
/// `mlkem768_decaps_kernel` is compiled for (`MLKEM_BLOCK` in mlkem.cu).
const BLOCK: u32 = 256;
/// Threads per block of `mlkem768_decaps_kernel` (one ciphertext per block): 128 beat 256 and
/// 64 on an H100 (docs/adr/0009-cuda.md): twice as many ciphertexts per SM as with 256 at the
/// same register-limited thread count, so one block's single-lane stages (G, the PRFs) overlap
/// other blocks' arithmetic.
const DECAPS_BLOCK: u32 = 128;
/// Threads per block of `mlkem768_reject_kernel` (one ciphertext per thread).
const REJECT_BLOCK: u32 = 256;
/// Bytes of host secrets each rayon task zeroizes.
const WIPE_CHUNK: usize = 1 << 16;
/// Most ciphertexts per launch and per staging lane: 32 Ki ciphertexts are 34 MiB in and 1 MiB
/// out, enough to fill an H100 many times over, and small enough that a batch of 64 Ki already
/// overlaps one chunk's upload with the other's kernels (32 Ki beat 64 Ki and 16 Ki on an
/// H100, docs/adr/0009-cuda.md).
pub(crate) const CHUNK: usize = 1 << 15;

/// The ML-KEM kernels of one backend, compiled and loaded on first use.
pub(crate) struct MlkemKernels {
    /// Keeps the module loaded while the functions are in use.
    _module: Arc<CudaModule>,
    expand: CudaFunction,
    reject: CudaFunction,
    decaps: CudaFunction,
    /// Pinned staging buffers and streams, kept across batches (one batch at a time).
    staging: Mutex<Option<Staging>>,
}

impl CudaBackend {
    /// The ML-KEM kernels, compiled with NVRTC and loaded the first time they are needed.
    fn mlkem_kernels(&self) -> Result<&MlkemKernels, Error> {
        if let Some(k) = self.mlkem.get() {
            return Ok(k);
        }
        let module = self.load_unit("mlkem.cu")?;
        let func = |name: &str| {
            module
                .load_function(name)
                .map_err(self.drv(&format!("loading the kernel {name}")))
        };
        let kernels = MlkemKernels {
            expand: func("mlkem768_expand_key_kernel")?,
            reject: func("mlkem768_reject_kernel")?,
            decaps: func("mlkem768_decaps_kernel")?,
            staging: Mutex::new(None),
            _module: Arc::clone(&module),
        };
        // Two threads may both compile on first use; one result is kept, both are the same.
        Ok(self.mlkem.get_or_init(|| kernels))
    }

    /// Refuses, before allocating, a batch whose device buffers would exceed the backend's
    /// memory budget or the device's free memory: the key (uploaded and expanded), the
    /// ciphertexts of two chunks in flight and the secrets of the whole batch.
    fn check_mlkem_budget(&self, n: usize, chunk: usize) -> Result<(), Error> {
        let in_flight = chunk.min(n).saturating_mul(2).min(n) as u64;
        let bytes = (DK_BYTES + KEY_BYTES) as u64
            + in_flight * CT_BYTES as u64
            + (n as u64).saturating_mul(SS_BYTES as u64);
        let free = self
            .context()
            .mem_get_info()
            .map_or(self.budget, |(free, _)| free as u64);
        let limit = self.budget.min(free);
        if bytes > limit {
            return Err(Error::DeviceMemory {
                what: "ML-KEM-768 batch decapsulation",
                bytes,
                limit,
            });
        }
        Ok(())
    }

    /// ML-KEM-768 decapsulation of every ciphertext under one key on the device, in order,
    /// chunks of at most [`CHUNK`] ciphertexts at a time.
    pub(crate) fn decap_batch_cuda(
        &self,
        dk: &DecapsulationKey,
        ciphertexts: &[Ciphertext],
    ) -> Result<Vec<SharedSecret>, Error> {
        self.decap_batch_chunked(dk, ciphertexts, CHUNK)
    }

    /// [`Self::decap_batch_cuda`] with chunks of at most `chunk` ciphertexts (tests use small
    /// chunks to cross chunk boundaries). Chunks alternate between the two lanes of
    /// [`Staging`]: the host packs chunk k + 2 into lane k's pinned buffer as soon as lane k's
    /// upload is done, and lane k + 1's upload overlaps lane k's kernels. The secrets of the
    /// whole batch come back in one download at the end.
    pub(crate) fn decap_batch_chunked(
        &self,
        dk: &DecapsulationKey,
        ciphertexts: &[Ciphertext],
        chunk: usize,
    ) -> Result<Vec<SharedSecret>, Error> {
        if ciphertexts.is_empty() {
            return Ok(Vec::new());
        }
        let n = ciphertexts.len();
        let chunk = chunk.clamp(1, CHUNK);
        self.check_mlkem_budget(n, chunk)?;
        let kernels = self.mlkem_kernels()?;
        // One batch at a time uses the staging lanes; a poisoned lock only means another
        // batch failed, and the lanes hold nothing that a failure leaves inconsistent.
        let mut staging = kernels
            .staging
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stream = self.stream();
        let mut key = stream
            .alloc_zeros::<u8>(KEY_BYTES)
            .map_err(self.drv("allocating the expanded ML-KEM key"))?;
        let mut secrets = match stream.alloc_zeros::<u8>(n * SS_BYTES) {
            Ok(s) => s,
            Err(e) => {
                drop(key);
                return Err(self.drv("allocating the ML-KEM shared secrets")(e));
            }
        };
        let queued = self
            .expand_key(kernels, dk, &mut key)
            .and_then(|()| self.staging_for(&mut staging, chunk.min(n)))
            .and_then(|lanes| {
                for lane in lanes.iter() {
                    lane.stream
                        .join(stream)
                        .map_err(self.drv("ordering the ML-KEM lanes after the key"))?;
                }
                let queued = ciphertexts
                    .chunks(chunk)
                    .enumerate()
                    .try_for_each(|(k, cts)| {
                        let at = k * chunk * SS_BYTES;
                        let mut out = secrets.slice_mut(at..at + cts.len() * SS_BYTES);
                        self.decap_chunk(kernels, &key, cts, &mut lanes[k % 2], &mut out)
                    });
                // The download and the wipe below run on the backend's stream: it waits for
                // both lanes, also after an error (nothing may still use the buffers then).
                for lane in lanes.iter() {
                    stream
                        .join(&lane.stream)
                        .map_err(self.drv("waiting for the ML-KEM lanes"))?;
                }
                queued
            });
        let downloaded = queued.and_then(|()| {
            stream
                .clone_dtoh(&secrets)
                .and_then(|v| stream.synchronize().map(|()| v))
                .map_err(self.drv("downloading the ML-KEM shared secrets"))
        });
        // The expanded key and the secrets on the device are overwritten before their buffers
        // go back to the driver, whatever happened above.
        let wiped = stream
            .memset_zeros(&mut key)
            .and_then(|()| stream.memset_zeros(&mut secrets))
            .and_then(|()| stream.synchronize())
            .map_err(self.drv("zeroing the ML-KEM key and secrets on the device"));
        let mut bytes = downloaded?;
        // In parallel: a batch of 1 Mi is 32 MiB of secrets, and `zeroize` writes byte by
        // byte (volatile), which took tens of milliseconds on one thread.
        let out = bytes
            .par_chunks_exact(SS_BYTES)
            .map(|s| {
                let mut one = [0u8; SS_BYTES];
                one.copy_from_slice(s);
                let secret = SharedSecret::from_bytes(one);
                one.zeroize();
                secret
            })
            .collect();
        bytes
            .par_chunks_mut(WIPE_CHUNK)
            .for_each(|part| part.zeroize());
        wiped?;
        Ok(out)
    }

    /// The two staging lanes, each able to hold `chunk` ciphertexts: the ones kept from an
    /// earlier batch when they are large enough, else new ones (pinned host memory and device
    /// buffers are allocated once, not per batch).
    fn staging_for<'a>(
        &self,
        staging: &'a mut Option<Staging>,
        chunk: usize,
    ) -> Result<&'a mut [Lane; 2], Error> {
        if staging.as_ref().is_none_or(|s| s.capacity < chunk) {
            // The old lanes (if any) are released before the larger ones are allocated.
            *staging = None;
            *staging = Some(self.new_staging(chunk)?);
        }
        staging.as_mut().map(|s| &mut s.lanes).ok_or(Error::Cuda {
            device: self.device_name.clone(),
            what: "setting up the ML-KEM staging lanes".to_owned(),
            detail: "no lanes after allocating them".to_owned(),
        })
    }

    /// Two new staging lanes of `chunk` ciphertexts each.
    fn new_staging(&self, chunk: usize) -> Result<Staging, Error> {
        let lane = || -> Result<Lane, Error> {
            let stream = self
                .stream()
                .fork()
                .map_err(self.drv("creating an ML-KEM stream"))?;
            // SAFETY: the pinned buffer is uninitialised; every byte that is uploaded is
            // written first (`decap_chunk` packs the ciphertexts of a chunk before it copies
            // exactly those bytes).
            let host = unsafe { self.context().alloc_pinned::<u8>(chunk * CT_BYTES) }
                .map_err(self.drv("allocating pinned ML-KEM staging memory"))?;
            let dev = stream
                .alloc_zeros::<u8>(chunk * CT_BYTES)
                .map_err(self.drv("allocating device ML-KEM ciphertext memory"))?;
            Ok(Lane {
                stream,
                host,
                dev,
                uploaded: None,
            })
        };
        Ok(Staging {
            capacity: chunk,
            lanes: [lane()?, lane()?],
        })
    }

    /// Uploads `dk`, expands it into `key` on the device and overwrites the upload.
    fn expand_key(
        &self,
        kernels: &MlkemKernels,
        dk: &DecapsulationKey,
        key: &mut CudaSlice<u8>,
    ) -> Result<(), Error> {
        let stream = self.stream();
        let mut dev = stream
            .clone_htod(&dk.as_bytes()[..])
            .map_err(self.drv("uploading the ML-KEM key"))?;
        let cfg = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = stream.launch_builder(&kernels.expand);
        launch.arg(&dev).arg(key);
        // SAFETY: `mlkem768_expand_key_kernel(const u8 *dk, mlkem768_key *key)` reads the 2400
        // bytes of `dev` and writes the 7744 bytes of `key` (device allocations are 256-byte
        // aligned, as the struct needs); both buffers have exactly those sizes and outlive
        // the launch (cudarc orders their use and release on the stream).
        let launched = unsafe { launch.launch(cfg) }
            .map(|_| ())
            .map_err(self.drv("launching the ML-KEM key expansion"));
        let wiped = stream
            .memset_zeros(&mut dev)
            .map_err(self.drv("zeroing the uploaded ML-KEM key"));
        launched?;
        wiped
    }

    /// Queues one chunk (at most the lane's capacity) against the expanded `key` on `lane`:
    /// the ciphertexts packed into the lane's pinned buffer (in parallel, once the lane's
    /// previous upload has finished), the upload, the rejection secrets and the
    /// decapsulation, results into `out` (32 bytes per ciphertext).
    fn decap_chunk(
        &self,
        kernels: &MlkemKernels,
        key: &CudaSlice<u8>,
        cts: &[Ciphertext],
        lane: &mut Lane,
        out: &mut CudaViewMut<'_, u8>,
    ) -> Result<(), Error> {
        let n = u32::try_from(cts.len()).map_err(|_| Error::TooLarge {
            what: "ML-KEM-768 decapsulation chunk",
            log_size: cts.len().ilog2(),
            max_log: 31,
        })?;
        let bytes = cts.len() * CT_BYTES;
        if let Some(done) = lane.uploaded.take() {
            done.synchronize()
                .map_err(self.drv("waiting for an ML-KEM upload"))?;
        }
        let max_log = (lane.host.len() / CT_BYTES).max(1).ilog2();
        let host = lane
            .host
            .as_mut_slice()
            .map_err(self.drv("mapping the pinned ML-KEM staging memory"))?;
        let host = host.get_mut(..bytes).ok_or(Error::TooLarge {
            what: "ML-KEM-768 chunk for its staging buffer",
            log_size: cts.len().ilog2(),
            max_log,
        })?;
        host.par_chunks_mut(CT_BYTES)
            .zip(cts.par_iter())
            .for_each(|(dst, ct)| dst.copy_from_slice(ct.as_bytes()));
        {
            let mut dev_cts = lane.dev.slice_mut(..bytes);
            let (ptr, _record) = dev_cts.device_ptr_mut(&lane.stream);
            // SAFETY: `ptr` is the device address of `bytes` bytes of `lane.dev` (the view
            // above), `host` is exactly `bytes` bytes of pinned memory; the copy is ordered on
            // `lane.stream` after every earlier use of the device buffer (the view's guard
            // records it), and the host buffer is not written again before the event recorded
            // below has completed (`lane.uploaded`, waited for at the top).
            unsafe { memcpy_htod_async(ptr, host, lane.stream.cu_stream()) }
                .map_err(self.drv("uploading ML-KEM ciphertexts"))?;
        }
        lane.uploaded = Some(
            lane.stream
                .record_event(None)
                .map_err(self.drv("recording an ML-KEM upload"))?,
        );
        let dev_cts = lane.dev.slice(..bytes);
        let reject_cfg = LaunchConfig {
            grid_dim: (n.div_ceil(REJECT_BLOCK), 1, 1),
            block_dim: (REJECT_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let decaps_cfg = LaunchConfig {
            grid_dim: (n, 1, 1),
            block_dim: (DECAPS_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut reject = lane.stream.launch_builder(&kernels.reject);
        reject.arg(key).arg(&dev_cts).arg(&mut *out).arg(&n);
        // SAFETY: `mlkem768_reject_kernel(const mlkem768_key *, const u32 *cts, u32 *ss, u32 n)`:
        // thread i < n reads ciphertext i (bytes 1088i..1088(i+1) of `dev_cts`, 1088n long) and
        // the key (7744 bytes), and writes bytes 32i..32(i+1) of `out` (32n long); threads
        // i >= n do nothing. Device allocations are 256-byte aligned and 1088 and 32 are
        // multiples of 8, as the 64-bit loads need. The buffers outlive the launch.
        unsafe { reject.launch(reject_cfg) }
            .map_err(self.drv("launching the ML-KEM rejection secrets"))?;
        let mut decaps = lane.stream.launch_builder(&kernels.decaps);
        decaps.arg(key).arg(&dev_cts).arg(&mut *out).arg(&n);
        // SAFETY: `mlkem768_decaps_kernel` with the same arguments and bounds: block b < n
        // (grid-stride) reads ciphertext b and bytes 32b..32(b+1) of `out`, then writes them;
        // its 5668 bytes of shared memory are static, within every device's 48 KiB; the
        // block size is at most the kernel's launch bound.
        unsafe { decaps.launch(decaps_cfg) }
            .map_err(self.drv("launching the ML-KEM decapsulation"))?;
        Ok(())
    }
}

/// One of the two lanes a batch alternates its chunks between: a stream, a pinned host buffer
/// the ciphertexts are packed into and the device buffer they are uploaded to.
pub(crate) struct Lane {
    stream: Arc<CudaStream>,
    host: PinnedHostSlice<u8>,
    dev: CudaSlice<u8>,
    /// Completes when the last upload from `host` has finished (before `host` is rewritten).
    uploaded: Option<CudaEvent>,
}

/// The staging lanes kept across batches (ciphertexts are public: nothing in them is secret).
pub(crate) struct Staging {
    /// Ciphertexts each lane holds.
    capacity: usize,
    lanes: [Lane; 2],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto::kem::mlkem768::KeyPair;
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    /// The backend on device 0. These tests are `#[ignore]`d (reported as ignored, never as
    /// passed, where nobody asks for them) and run with `--ignored` on a GPU machine
    /// (scripts/gpu-suite.sh); asked for without a driver, they fail with the reason.
    fn backend() -> CudaBackend {
        CudaBackend::new().unwrap_or_else(|e| {
            panic!("this test needs a CUDA driver and a device: {e}; run it on a GPU machine")
        })
    }

    /// Chunks of any size give the same secrets as the reference, in order.
    #[test]
    #[ignore = "needs a CUDA driver: run with --ignored on a GPU machine"]
    fn chunk_boundaries_keep_order_and_values() {
        let cuda = backend();
        let mut rng = ChaCha20Rng::from_entropy();
        let mut seed = [0u8; 64];
        rng.fill_bytes(&mut seed);
        let pair = KeyPair::from_seed(&seed);
        let cts: Vec<Ciphertext> = (0..21)
            .map(|i| {
                let mut m = [0u8; 32];
                rng.fill_bytes(&mut m);
                let (ct, _) = pair.encapsulation_key.encapsulate(&m);
                let mut bytes = *ct.as_bytes();
                // Every third one tampered: implicit rejections across chunk boundaries.
                if i % 3 == 1 {
                    bytes[(rng.next_u32() as usize) % CT_BYTES] ^= 0x10;
                }
                Ciphertext::from_bytes(&bytes).expect("1088 bytes is a ciphertext")
            })
            .collect();
        let expected: Vec<SharedSecret> = cts
            .iter()
            .map(|c| pair.decapsulation_key.decapsulate(c))
            .collect();
        for chunk in [1, 2, 7, 20, 21, 64] {
            let got = cuda
                .decap_batch_chunked(&pair.decapsulation_key, &cts, chunk)
                .expect("decap");
            assert!(got == expected, "chunks of {chunk}");
        }
    }

    /// A budget below one chunk's buffers is refused before anything is allocated.
    #[test]
    #[ignore = "needs a CUDA driver: run with --ignored on a GPU machine"]
    fn over_budget_is_refused() {
        let mut cuda = backend();
        let pair = KeyPair::from_seed(&[3u8; 64]);
        let (ct, _) = pair.encapsulation_key.encapsulate(&[4u8; 32]);
        cuda.set_memory_budget(15_000);
        let cts = vec![ct; 8];
        let err = cuda
            .decap_batch_chunked(&pair.decapsulation_key, &cts, 8)
            .expect_err("8 ciphertexts need more than 15000 bytes");
        assert!(matches!(err, Error::DeviceMemory { .. }), "{err}");
        // One at a time fits.
        let got = cuda
            .decap_batch_chunked(&pair.decapsulation_key, &cts, 1)
            .expect("decap");
        assert_eq!(got.len(), 8);
        assert!(
            got.iter()
                .all(|s| s == &pair.decapsulation_key.decapsulate(&cts[0]))
        );
    }
}
