//! Batch ML-KEM-768 decapsulation on the GPU (WGSL, `shaders/mlkem_*.wgsl`).
//!
//! One key, many ciphertexts:
//!
//! 1. On the host, once per batch, the decapsulation key is unpacked into 32-bit words: `s_hat`
//!    and `t_hat` (ByteDecode_12, reduced mod q), the matrix `A_hat` expanded from `rho`
//!    (SHAKE-128 rejection sampling, FIPS 203 SampleNTT), `H(ek)`, `z`, and the NTT tables
//!    (`17^BitRev7(i)` and `17^(2 BitRev7(i) + 1)`). The words are uploaded and the host copies
//!    zeroized at once.
//! 2. The ciphertexts go up in chunks (at most [`MAX_CHUNK`] and within the device's buffer
//!    limit); each chunk runs four kernels in one compute pass: `decrypt` (one 128-invocation
//!    workgroup per ciphertext: K-PKE.Decrypt to `m'`), `hash_gj` (one invocation per
//!    ciphertext: G and J), `prf` (one invocation per ciphertext and PRF block) and `encrypt`
//!    (one workgroup per ciphertext: re-encryption, constant-time comparison and the selection
//!    of `K'` or `K_bar`, 32 bytes out). Keccak runs one hash per invocation so that every lane
//!    hashes; the per-ciphertext intermediates live in a scratch buffer on the device.
//! 3. The shared secrets come back through a staging buffer of this module's own; the secret
//!    device buffers (the key, the scratch, the secrets and the staging copy) are cleared on
//!    the device before they are released, whether the batch succeeded or not.
//!
//! All arithmetic is exact mod q = 3329 on canonical representatives, so every intermediate
//! value and the result are those of FIPS 203 and bit-exact with the reference
//! ([`DecapsulationKey::decapsulate`]), implicit rejection included.
//!
//! Secrets on the device: wgpu cannot promise that freed device memory is wiped, so every
//! buffer that held key material, intermediates or shared secrets is overwritten with zeros (a
//! `clear_buffer` submitted and waited for) before it is dropped. Workgroup (on-chip) memory,
//! which holds polynomials derived from the key while a workgroup runs, is reused by the next
//! workgroup and cannot be cleared from the API.

use std::sync::mpsc;

use sha3::{
    Shake128,
    digest::{ExtendableOutput, Update, XofReader},
};
use zeroize::{Zeroize, Zeroizing};

use crypto::kem::{
    SharedSecret,
    mlkem768::{Ciphertext, DecapsulationKey},
};

use super::{Dispatch, MAP_TIMEOUT, WORKGROUP, WgpuBackend};
use crate::Error;

const KECCAK: &str = include_str!("shaders/mlkem_keccak.wgsl");
const DECAP: &str = include_str!("shaders/mlkem_decap.wgsl");

/// The ML-KEM modulus.
const Q: u32 = 3329;
/// Bytes of an ML-KEM-768 ciphertext.
const CT_BYTES: usize = 1088;
/// Bytes of an ML-KEM-768 decapsulation key.
const DK_BYTES: usize = 2400;
/// Bytes of a shared secret.
const SS_BYTES: usize = 32;
/// Bytes of a ciphertext's scratch on the device (`m'`, `K'`, `r`, `K_bar`, seven PRF blocks:
/// the shader's `SCRATCH_WORDS`); below [`CT_BYTES`], so the chunk bound covers it.
const SCRATCH_BYTES: usize = 1024;
/// Words of the key buffer: s_hat, t_hat, A_hat, H(ek), z, zetas, gammas (the layout the
/// shader's `S_HAT` .. `GAMMAS` constants name).
const KEY_WORDS: usize = 768 + 768 + 9 * 256 + 8 + 8 + 128 + 128;
/// Most ciphertexts per dispatch: 71 MB of ciphertexts, 2 MiB of secrets.
pub(super) const MAX_CHUNK: usize = 1 << 16;

/// The compiled decapsulation kernels (`mlkem_decap.wgsl`), in the order they run.
pub(super) struct Kernels {
    decrypt: wgpu::ComputePipeline,
    hash_gj: wgpu::ComputePipeline,
    prf: wgpu::ComputePipeline,
    encrypt: wgpu::ComputePipeline,
}

impl Kernels {
    /// Compiles the decapsulation kernels on the backend's device. They share one explicit bind
    /// group layout (key, ciphertexts, scratch, secrets, params) although each uses only some
    /// of the bindings.
    pub(super) fn new(b: &WgpuBackend) -> Result<Self, Error> {
        b.guarded("compiling the ML-KEM-768 kernels", || {
            let buffer = |binding, ty| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            };
            let read = wgpu::BufferBindingType::Storage { read_only: true };
            let write = wgpu::BufferBindingType::Storage { read_only: false };
            let bgl = b
                .device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some("ML-KEM bindings"),
                    entries: &[
                        buffer(0, read),
                        buffer(1, read),
                        buffer(2, write),
                        buffer(3, write),
                        buffer(4, wgpu::BufferBindingType::Uniform),
                    ],
                });
            let layout = b
                .device
                .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some("ML-KEM layout"),
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: 0,
                });
            let module = module(b, "mlkem_decap", &[KECCAK, DECAP]);
            let pipe = |entry| pipeline(b, &module, Some(&layout), entry);
            Ok(Self {
                decrypt: pipe("decrypt"),
                hash_gj: pipe("hash_gj"),
                prf: pipe("prf"),
                encrypt: pipe("encrypt"),
            })
        })
    }
}

fn module(b: &WgpuBackend, name: &str, parts: &[&str]) -> wgpu::ShaderModule {
    b.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(name),
        source: wgpu::ShaderSource::Wgsl(parts.concat().into()),
    })
}

fn pipeline(
    b: &WgpuBackend,
    module: &wgpu::ShaderModule,
    layout: Option<&wgpu::PipelineLayout>,
    entry: &str,
) -> wgpu::ComputePipeline {
    b.device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout,
            module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        })
}

/// `BitRev7(i)`.
fn bitrev7(i: u32) -> u32 {
    i.reverse_bits() >> 25
}

fn pow_mod(base: u32, mut e: u32) -> u32 {
    let (mut acc, mut b) = (1u32, base % Q);
    while e > 0 {
        if e & 1 == 1 {
            acc = acc * b % Q;
        }
        b = b * b % Q;
        e >>= 1;
    }
    acc
}

/// ByteDecode_12 of `bytes` (384 bytes a polynomial), each coefficient reduced mod q.
fn byte_decode12(bytes: &[u8], out: &mut [u32]) {
    for (c, o) in bytes.chunks_exact(3).zip(out.chunks_exact_mut(2)) {
        let (b0, b1, b2) = (u32::from(c[0]), u32::from(c[1]), u32::from(c[2]));
        o[0] = (b0 | ((b1 & 0xf) << 8)) % Q;
        o[1] = ((b1 >> 4) | (b2 << 4)) % Q;
    }
}

/// FIPS 203 SampleNTT: `A_hat[i][j]` from SHAKE-128(`rho || j || i`) by rejection sampling.
fn sample_ntt(rho: &[u8], j: u8, i: u8, out: &mut [u32]) {
    let mut xof = Shake128::default();
    xof.update(rho);
    xof.update(&[j, i]);
    let mut reader = xof.finalize_xof();
    let mut block = [0u8; 168];
    let mut n = 0;
    while n < out.len() {
        reader.read(&mut block);
        for c in block.chunks_exact(3) {
            let d1 = u32::from(c[0]) | ((u32::from(c[1]) & 0xf) << 8);
            let d2 = (u32::from(c[1]) >> 4) | (u32::from(c[2]) << 4);
            for d in [d1, d2] {
                if d < Q && n < out.len() {
                    out[n] = d;
                    n += 1;
                }
            }
        }
    }
}

/// Little-endian 32-bit words of `bytes` (a multiple of 4 long).
fn le_words(bytes: &[u8], out: &mut [u32]) {
    for (c, o) in bytes.chunks_exact(4).zip(out.iter_mut()) {
        *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

/// Unpacks `dk` (FIPS 203 `dk_pke || ek || H(ek) || z`) into the key buffer's words.
fn key_words(dk: &[u8; DK_BYTES]) -> Zeroizing<Vec<u32>> {
    let mut w = Zeroizing::new(vec![0u32; KEY_WORDS]);
    let (dk_pke, rest) = dk.split_at(1152);
    let (ek, rest) = rest.split_at(1184);
    let (h, z) = rest.split_at(32);
    let (t_bytes, rho) = ek.split_at(1152);
    byte_decode12(dk_pke, &mut w[0..768]);
    byte_decode12(t_bytes, &mut w[768..1536]);
    for i in 0..3u8 {
        for j in 0..3u8 {
            let at = 1536 + (3 * usize::from(i) + usize::from(j)) * 256;
            sample_ntt(rho, j, i, &mut w[at..at + 256]);
        }
    }
    le_words(h, &mut w[3840..3848]);
    le_words(z, &mut w[3848..3856]);
    for i in 0..128u32 {
        w[3856 + i as usize] = pow_mod(17, bitrev7(i));
        w[3984 + i as usize] = pow_mod(17, 2 * bitrev7(i) + 1);
    }
    w
}

/// Packs 32-bit words into the 64-bit words the backend's upload takes (low word first, the
/// byte order of the shader's `array<u32>` view).
fn pack_u64(words: &[u32]) -> Zeroizing<Vec<u64>> {
    Zeroizing::new(
        words
            .chunks(2)
            .map(|p| u64::from(p[0]) | (u64::from(p.get(1).copied().unwrap_or(0)) << 32))
            .collect(),
    )
}

/// A device buffer that held secrets: cleared on the device, and the clear waited for, before
/// it is released.
struct Secret<'a> {
    b: &'a WgpuBackend,
    buf: wgpu::Buffer,
}

impl Drop for Secret<'_> {
    fn drop(&mut self) {
        let mut enc = self
            .b
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("clear secrets"),
            });
        enc.clear_buffer(&self.buf, 0, None);
        self.b.queue.submit([enc.finish()]);
        // A failing device reports through the backend's error scopes and lost flag; the
        // clear is best effort on a device that is already gone.
        let _ = self.b.wait();
    }
}

/// Copies the first `bytes` of `src` to the host through a staging buffer that is cleared
/// before it is released (it holds shared secrets).
fn read_secrets(b: &WgpuBackend, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>, Error> {
    let staging = Secret {
        b,
        buf: b.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ML-KEM secrets readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }),
    };
    let mut enc = b
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
    enc.copy_buffer_to_buffer(src, 0, &staging.buf, 0, bytes);
    b.queue.submit([enc.finish()]);
    let (tx, rx) = mpsc::channel();
    staging.buf.map_async(wgpu::MapMode::Read, .., move |r| {
        // The receiver lives until the loop below has seen the result.
        let _ = tx.send(r);
    });
    let deadline = std::time::Instant::now() + MAP_TIMEOUT;
    loop {
        b.wait()?;
        match rx.recv_timeout(std::time::Duration::from_millis(10)) {
            Ok(Ok(())) => break,
            Ok(Err(e)) => return Err(b.gpu_err("mapping the secrets readback", e.to_string())),
            Err(mpsc::RecvTimeoutError::Timeout) if std::time::Instant::now() < deadline => {}
            Err(_) => {
                return Err(b.gpu_err(
                    "mapping the secrets readback",
                    "the map did not complete within 30 s of the device being idle",
                ));
            }
        }
    }
    let out = {
        let view = staging
            .buf
            .get_mapped_range(..)
            .map_err(|e| b.gpu_err("reading the secrets readback", e.to_string()))?;
        view.to_vec()
    };
    staging.buf.unmap();
    Ok(out)
}

/// Ciphertexts per dispatch on this device: [`MAX_CHUNK`] or fewer when the ciphertext buffer
/// would exceed the device's buffer limit.
pub(super) fn chunk_len(b: &WgpuBackend) -> usize {
    let by_limit = (b.max_buffer_bytes() / CT_BYTES as u64).max(1);
    usize::try_from(by_limit).map_or(MAX_CHUNK, |n| n.min(MAX_CHUNK))
}

/// The backend's decapsulation kernel, compiled on first use.
fn kernels(b: &WgpuBackend) -> Result<&Kernels, Error> {
    if let Some(k) = b.mlkem.get() {
        return Ok(k);
    }
    let k = Kernels::new(b)?;
    Ok(b.mlkem.get_or_init(|| k))
}

/// Decapsulates every ciphertext under `dk`, [`chunk_len`] ciphertexts per dispatch.
pub(super) fn decap_batch(
    b: &WgpuBackend,
    dk: &DecapsulationKey,
    cts: &[Ciphertext],
) -> Result<Vec<SharedSecret>, Error> {
    if cts.is_empty() {
        return Ok(Vec::new());
    }
    decap_chunked(b, kernels(b)?, dk, cts, chunk_len(b))
}

/// Decapsulates every ciphertext under `dk`, at most `chunk` (at least 1) per dispatch.
fn decap_chunked(
    b: &WgpuBackend,
    kernels: &Kernels,
    dk: &DecapsulationKey,
    cts: &[Ciphertext],
    chunk: usize,
) -> Result<Vec<SharedSecret>, Error> {
    if cts.is_empty() {
        return Ok(Vec::new());
    }
    let chunk = chunk.max(1);
    b.guarded("ML-KEM-768 batch decapsulation", || {
        let key = {
            let words = key_words(dk.as_bytes());
            Secret {
                b,
                buf: b.upload("ML-KEM key", &pack_u64(&words))?,
            }
            // `words` and its packed copy are zeroized here; the queue holds its own copy
            // only until the next submit.
        };
        // One allocation of exactly `cts.len()` secrets: no reallocation leaves copies behind.
        let mut secrets = Vec::with_capacity(cts.len());
        for part in cts.chunks(chunk) {
            let mut ct_words = Vec::with_capacity(part.len() * CT_BYTES / 8);
            for ct in part {
                ct_words.extend(
                    ct.as_bytes()
                        .chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().expect("chunks of 8 bytes"))),
                );
            }
            let ct_buf = b.upload("ML-KEM ciphertexts", &ct_words)?;
            let scratch = Secret {
                b,
                buf: b.storage("ML-KEM scratch", part.len() * SCRATCH_BYTES / 8)?,
            };
            let out = Secret {
                b,
                buf: b.storage("ML-KEM shared secrets", part.len() * SS_BYTES / 8)?,
            };
            let count = u32::try_from(part.len()).expect("a chunk is at most MAX_CHUNK long");
            let n = part.len() as u64;
            let step = |pipeline, threads| Dispatch {
                pipeline,
                buffers: vec![&key.buf, &ct_buf, &scratch.buf, &out.buf],
                params: vec![count, 0, 0, 0],
                threads,
            };
            // The grid counts 64-invocation groups: `n * WORKGROUP` invocations give one
            // workgroup per ciphertext to the 128-invocation kernels.
            b.dispatch(&[
                step(&kernels.decrypt, n * WORKGROUP),
                step(&kernels.hash_gj, n),
                step(&kernels.prf, n * 7),
                step(&kernels.encrypt, n * WORKGROUP),
            ])?;
            let mut bytes =
                Zeroizing::new(read_secrets(b, &out.buf, (part.len() * SS_BYTES) as u64)?);
            for ss in bytes.chunks_exact(SS_BYTES) {
                let mut k = [0u8; SS_BYTES];
                k.copy_from_slice(ss);
                secrets.push(SharedSecret::from_bytes(k));
                k.zeroize();
            }
            bytes.zeroize();
        }
        drop(key);
        Ok(secrets)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto::kem::mlkem768::KeyPair;
    use rand::{Rng, RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use sha3::{Digest, Sha3_512, Shake256};

    const KECCAK_TEST: &str = include_str!("shaders/mlkem_keccak_test.wgsl");

    fn backend() -> Option<WgpuBackend> {
        match WgpuBackend::new() {
            Ok(b) => Some(b),
            Err(e) => {
                if std::env::var("EPA_REQUIRE_WGPU").is_ok_and(|v| v.trim() == "1") {
                    panic!("EPA_REQUIRE_WGPU=1 but the wgpu backend is unavailable: {e}");
                }
                eprintln!("skipped: no Vulkan adapter ({e})");
                None
            }
        }
    }

    /// The sponges of the decapsulation kernel (G, PRF, J) alone, on random inputs, against
    /// the `sha3` crate.
    #[test]
    fn keccak_sponges_match_sha3() {
        let Some(b) = backend() else { return };
        let mut rng = ChaCha20Rng::from_entropy();
        let n = 37;
        let mut cases = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..n {
            let mut g_in = [0u8; 64];
            let mut r = [0u8; 32];
            let mut zc = vec![0u8; 1120];
            rng.fill_bytes(&mut g_in);
            rng.fill_bytes(&mut r);
            rng.fill_bytes(&mut zc);
            let nonce: u8 = rng.r#gen();
            let mut words = [0u32; 306];
            le_words(&g_in, &mut words[0..16]);
            le_words(&r, &mut words[16..24]);
            words[24] = u32::from(nonce);
            le_words(&zc, &mut words[25..305]);
            cases.extend_from_slice(&words);

            let mut want = Vec::with_capacity(224);
            want.extend_from_slice(&Sha3_512::digest(g_in));
            let mut prf = [0u8; 128];
            let mut x = Shake256::default();
            Update::update(&mut x, &r);
            Update::update(&mut x, &[nonce]);
            x.finalize_xof().read(&mut prf);
            want.extend_from_slice(&prf);
            let mut j = [0u8; 32];
            let mut x = Shake256::default();
            Update::update(&mut x, &zc);
            x.finalize_xof().read(&mut j);
            want.extend_from_slice(&j);
            expected.push(want);
        }
        let got = b
            .guarded("Keccak test", || {
                let m = module(&b, "keccak_test", &[KECCAK, KECCAK_TEST]);
                let p = pipeline(&b, &m, None, "keccak_test");
                let input = b.upload("Keccak cases", &pack_u64(&cases))?;
                let out = b.storage("Keccak results", n * 28)?;
                b.dispatch(&[Dispatch {
                    pipeline: &p,
                    buffers: vec![&input, &out],
                    params: vec![n as u32, 0, 0, 0],
                    threads: n as u64,
                }])?;
                b.read_all(&out, n * 28)
            })
            .expect("the Keccak test kernel runs");
        for (i, want) in expected.iter().enumerate() {
            let bytes: Vec<u8> = got[i * 28..(i + 1) * 28]
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect();
            assert_eq!(&bytes[..64], &want[..64], "case {i}: G (SHA3-512)");
            assert_eq!(&bytes[64..192], &want[64..192], "case {i}: PRF (SHAKE-256)");
            assert_eq!(&bytes[192..], &want[192..], "case {i}: J (SHAKE-256)");
        }
    }

    /// The NTT tables match FIPS 203 Appendix A (first and last entries).
    #[test]
    fn ntt_tables_match_fips_203_appendix() {
        let pair = KeyPair::from_seed(&[3u8; 64]);
        let w = key_words(pair.decapsulation_key.as_bytes());
        assert_eq!(&w[3856..3860], &[1, 1729, 2580, 3289]);
        assert_eq!(w[3856 + 127], 2154);
        assert_eq!(&w[3984..3988], &[17, 3312, 2761, 568]);
        assert_eq!(w[3984 + 127], 1175);
        // z and H(ek) are the key's last 64 bytes, as little-endian words.
        let dk = pair.decapsulation_key.as_bytes();
        let mut tail = [0u32; 16];
        le_words(&dk[2336..], &mut tail);
        assert_eq!(&w[3840..3856], &tail);
        assert!(w[..3840].iter().all(|&c| c < Q));
    }

    /// Batches split over several dispatches (chunks of 1, 2 and 3) give the reference's
    /// secrets, valid and rejected alike.
    #[test]
    fn chunked_batches_match_reference() {
        let Some(b) = backend() else { return };
        let kernels = Kernels::new(&b).expect("the ML-KEM kernel compiles");
        let mut rng = ChaCha20Rng::from_entropy();
        let mut seed = [0u8; 64];
        rng.fill_bytes(&mut seed);
        let pair = KeyPair::from_seed(&seed);
        let cts: Vec<Ciphertext> = (0..5)
            .map(|i| {
                let mut m = [0u8; 32];
                rng.fill_bytes(&mut m);
                let (ct, _) = pair.encapsulation_key.encapsulate(&m);
                if i % 2 == 0 {
                    return ct;
                }
                let mut bytes = *ct.as_bytes();
                bytes[rng.gen_range(0..CT_BYTES)] ^= 1 << rng.gen_range(0..8);
                Ciphertext::from_bytes(&bytes).expect("1088 bytes")
            })
            .collect();
        let want: Vec<SharedSecret> = cts
            .iter()
            .map(|c| pair.decapsulation_key.decapsulate(c))
            .collect();
        for chunk in [1, 2, 3] {
            let got = decap_chunked(&b, &kernels, &pair.decapsulation_key, &cts, chunk)
                .expect("decapsulates");
            assert!(got == want, "chunk {chunk}: differs from the reference");
        }
        assert!(chunk_len(&b) >= 1 && chunk_len(&b) <= MAX_CHUNK);
    }

    /// Releasing a secret buffer on a device that was lost meanwhile does not panic, and the
    /// next batch is a typed error.
    #[test]
    fn clearing_on_a_lost_device_does_not_panic() {
        let Some(b) = backend() else { return };
        let buf = b.upload("secret test", &[7u64; 8]).expect("upload");
        let s = Secret { b: &b, buf };
        b.destroy();
        drop(s);
        let pair = KeyPair::from_seed(&[5u8; 64]);
        let (ct, _) = pair.encapsulation_key.encapsulate(&[6u8; 32]);
        let got = decap_batch(&b, &pair.decapsulation_key, &[ct]);
        assert!(matches!(got, Err(Error::Gpu { .. })), "got {got:?}");
    }

    /// A secret buffer reads back as zeros once it has been cleared.
    #[test]
    fn secret_buffers_are_cleared() {
        let Some(b) = backend() else { return };
        let words: Vec<u64> = (1..=64).collect();
        let buf = b.upload("secret test", &words).expect("upload");
        let s = Secret { b: &b, buf };
        assert_eq!(b.read_all(&s.buf, 64).expect("read"), words);
        // Run the clear that `drop` runs, on a handle to the same buffer.
        let view = Secret {
            b: &b,
            buf: s.buf.clone(),
        };
        drop(view);
        assert!(
            b.read_all(&s.buf, 64)
                .expect("read")
                .iter()
                .all(|&w| w == 0)
        );
    }
}
