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
//! 2. per chunk of at most [`CHUNK`] ciphertexts: the ciphertexts go up,
//!    `mlkem768_reject_kernel` writes every implicit-rejection secret `J(z || c)` (one thread
//!    per ciphertext), `mlkem768_decaps_kernel` (one block of [`BLOCK`] threads per
//!    ciphertext) decrypts, re-encrypts, compares in constant time and keeps `K'` or the
//!    rejection secret; the secrets come down and the device copy is zeroed;
//! 3. the expanded key is zeroed before its buffer is freed.
//!
//! Host copies of the key and of the secrets are zeroized; the result is bit-exact with
//! [`DecapsulationKey::decapsulate`], implicit rejection included (tests/cuda_mlkem.rs on a
//! GPU, tests/cuda_mlkem_host.rs everywhere).
//!
//! The contract with `mod.rs`: [`HEADERS`] and [`UNITS`] list this module's CUDA C files for
//! NVRTC and `scripts/cuda-check.sh`; the module is compiled for the device on first use
//! ([`CudaBackend::load_unit`]) and kept in the backend.

use std::sync::Arc;

use crypto::kem::{
    SharedSecret,
    mlkem768::{Ciphertext, DecapsulationKey},
};
use cudarc::driver::{CudaFunction, CudaModule, CudaSlice, LaunchConfig, PushKernelArg};
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
/// Threads per block of `mlkem768_decaps_kernel` (`MLKEM_BLOCK` in mlkem.cu) and of the other
/// two kernels.
const BLOCK: u32 = 256;
/// Most ciphertexts per launch: 64 Ki ciphertexts are 68 MiB in and 2 MiB out, far below any
/// launch limit, and large enough to fill an H100 (132 SMs x 8 resident blocks) many times.
pub(crate) const CHUNK: usize = 1 << 16;

/// The ML-KEM kernels of one backend, compiled and loaded on first use.
pub(crate) struct MlkemKernels {
    /// Keeps the module loaded while the functions are in use.
    _module: Arc<CudaModule>,
    expand: CudaFunction,
    reject: CudaFunction,
    decaps: CudaFunction,
}

/// Little-endian words of a byte string whose length is a multiple of 4.
fn words_of(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect()
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
            _module: Arc::clone(&module),
        };
        // Two threads may both compile on first use; one result is kept, both are the same.
        Ok(self.mlkem.get_or_init(|| kernels))
    }

    /// Refuses a batch whose device buffers would exceed the backend's memory budget.
    fn check_mlkem_budget(&self, chunk: usize) -> Result<(), Error> {
        let bytes = (DK_BYTES + KEY_BYTES) as u64 + (chunk as u64) * (CT_BYTES + SS_BYTES) as u64;
        if bytes > self.budget {
            return Err(Error::DeviceMemory {
                what: "ML-KEM-768 batch decapsulation",
                bytes,
                limit: self.budget,
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
    /// chunks to cross chunk boundaries).
    pub(crate) fn decap_batch_chunked(
        &self,
        dk: &DecapsulationKey,
        ciphertexts: &[Ciphertext],
        chunk: usize,
    ) -> Result<Vec<SharedSecret>, Error> {
        if ciphertexts.is_empty() {
            return Ok(Vec::new());
        }
        let chunk = chunk.clamp(1, CHUNK);
        self.check_mlkem_budget(chunk.min(ciphertexts.len()))?;
        let kernels = self.mlkem_kernels()?;
        let stream = self.stream();
        let mut key = stream
            .alloc_zeros::<u32>(KEY_BYTES / 4)
            .map_err(self.drv("allocating the expanded ML-KEM key"))?;
        let result = self.expand_key(kernels, dk, &mut key).and_then(|()| {
            let mut out = Vec::with_capacity(ciphertexts.len());
            for cts in ciphertexts.chunks(chunk) {
                self.decap_chunk(kernels, &key, cts, &mut out)?;
            }
            Ok(out)
        });
        // The expanded key is secret: overwrite it before the buffer goes back to the driver,
        // whatever happened above.
        let wiped = stream
            .memset_zeros(&mut key)
            .and_then(|()| stream.synchronize())
            .map_err(self.drv("zeroing the expanded ML-KEM key"));
        let out = result?;
        wiped?;
        Ok(out)
    }

    /// Uploads `dk`, expands it into `key` on the device and overwrites the upload.
    fn expand_key(
        &self,
        kernels: &MlkemKernels,
        dk: &DecapsulationKey,
        key: &mut CudaSlice<u32>,
    ) -> Result<(), Error> {
        let stream = self.stream();
        let mut host = words_of(dk.as_bytes());
        let uploaded = stream.clone_htod(&host);
        host.zeroize();
        let mut dev = uploaded.map_err(self.drv("uploading the ML-KEM key"))?;
        let cfg = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = stream.launch_builder(&kernels.expand);
        launch.arg(&dev).arg(key);
        // SAFETY: `mlkem768_expand_key_kernel(const u8 *dk, mlkem768_key *key)` reads the 2400
        // bytes of `dev` (600 words) and writes the 7744 bytes of `key` (1936 words); both
        // buffers have exactly those sizes and stay alive until the stream is synchronised
        // (cudarc records their use on the stream).
        let launched = unsafe { launch.launch(cfg) }
            .map(|_| ())
            .map_err(self.drv("launching the ML-KEM key expansion"));
        let wiped = stream
            .memset_zeros(&mut dev)
            .map_err(self.drv("zeroing the uploaded ML-KEM key"));
        launched?;
        wiped
    }

    /// Decapsulates one chunk against the expanded `key`, appending the secrets to `out`.
    fn decap_chunk(
        &self,
        kernels: &MlkemKernels,
        key: &CudaSlice<u32>,
        cts: &[Ciphertext],
        out: &mut Vec<SharedSecret>,
    ) -> Result<(), Error> {
        let stream = self.stream();
        let n = u32::try_from(cts.len()).map_err(|_| Error::TooLarge {
            what: "ML-KEM-768 decapsulation chunk",
            log_size: cts.len().ilog2(),
            max_log: 31,
        })?;
        let mut host = Vec::with_capacity(cts.len() * CT_BYTES / 4);
        for ct in cts {
            host.extend(words_of(ct.as_bytes()));
        }
        let dev_cts = stream
            .clone_htod(&host)
            .map_err(self.drv("uploading ML-KEM ciphertexts"))?;
        let mut dev_ss = stream
            .alloc_zeros::<u32>(cts.len() * SS_BYTES / 4)
            .map_err(self.drv("allocating the ML-KEM shared secrets"))?;
        let reject_cfg = LaunchConfig {
            grid_dim: (n.div_ceil(BLOCK), 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let decaps_cfg = LaunchConfig {
            grid_dim: (n, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut reject = stream.launch_builder(&kernels.reject);
        reject.arg(key).arg(&dev_cts).arg(&mut dev_ss).arg(&n);
        // SAFETY: `mlkem768_reject_kernel(const mlkem768_key *, const u32 *cts, u32 *ss, u32 n)`:
        // thread i < n reads ciphertext i (272 words of `dev_cts`, n * 272 long) and the key
        // (1936 words), and writes words 8i..8i+8 of `dev_ss` (n * 8 long); threads i >= n do
        // nothing. The buffers outlive the launch (the download below synchronises).
        let launched = unsafe { reject.launch(reject_cfg) }
            .map_err(self.drv("launching the ML-KEM rejection secrets"));
        let launched = launched.and_then(|_| {
            let mut decaps = stream.launch_builder(&kernels.decaps);
            decaps.arg(key).arg(&dev_cts).arg(&mut dev_ss).arg(&n);
            // SAFETY: `mlkem768_decaps_kernel` with the same arguments and bounds: block b < n
            // (grid-stride) reads ciphertext b and words 8b..8b+8 of `dev_ss`, then writes those
            // words; its 5668 bytes of shared memory are static, within every device's 48 KiB.
            unsafe { decaps.launch(decaps_cfg) }
                .map_err(self.drv("launching the ML-KEM decapsulation"))
        });
        let downloaded = launched.and_then(|_| {
            stream
                .clone_dtoh(&dev_ss)
                .and_then(|v| stream.synchronize().map(|()| v))
                .map_err(self.drv("downloading the ML-KEM shared secrets"))
        });
        // The secrets on the device are overwritten whether or not the download worked.
        let wiped = stream
            .memset_zeros(&mut dev_ss)
            .map_err(self.drv("zeroing the ML-KEM shared secrets"));
        let mut words = downloaded?;
        wiped?;
        for w in words.chunks_exact(SS_BYTES / 4) {
            let mut bytes = [0u8; SS_BYTES];
            for (b, x) in bytes.chunks_exact_mut(4).zip(w) {
                b.copy_from_slice(&x.to_le_bytes());
            }
            out.push(SharedSecret::from_bytes(bytes));
            bytes.zeroize();
        }
        words.zeroize();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto::kem::mlkem768::KeyPair;
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    /// The backend, or `None` after "skipped: no CUDA driver" (a failure with
    /// `EPA_REQUIRE_CUDA=1`).
    fn backend() -> Option<CudaBackend> {
        match CudaBackend::new() {
            Ok(b) => Some(b),
            Err(e @ Error::NoCuda { .. }) => {
                assert!(
                    std::env::var("EPA_REQUIRE_CUDA").as_deref() != Ok("1"),
                    "EPA_REQUIRE_CUDA=1 but the CUDA backend cannot start: {e}"
                );
                eprintln!("skipped: no CUDA driver ({e})");
                None
            }
            Err(e) => panic!("the CUDA backend failed to start: {e}"),
        }
    }

    #[test]
    fn words_are_little_endian() {
        assert_eq!(
            words_of(&[1, 2, 3, 4, 5, 6, 7, 8]),
            [0x0403_0201, 0x0807_0605]
        );
    }

    /// Chunks of any size give the same secrets as the reference, in order.
    #[test]
    fn chunk_boundaries_keep_order_and_values() {
        let Some(cuda) = backend() else { return };
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
    fn over_budget_is_refused() {
        let Some(mut cuda) = backend() else { return };
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
