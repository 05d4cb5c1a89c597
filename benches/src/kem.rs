//! The `kem` suite: ML-KEM-768 batch decapsulation, ours against single-operation
//! implementations called in a loop.
//!
//! For every batch size, one fresh key pair and that many fresh, valid ciphertexts:
//! * ours: [`kernels::CpuBackend::decap_batch`] (the key unpacked once per batch; the backend
//!   name carries [`kernels::Backend::kem_implementation`], e.g.
//!   `cpu-avx2/libcrux-avx2-unpacked`), and every other backend of the registry probe that
//!   reports `mlkem768_decap` and is not a software GPU: CUDA (`kernels::CudaBackend`) and
//!   wgpu, their rows named after the device (`cuda/<GPU name>`, `wgpu/<adapter name>`);
//! * anchors: `libcrux-ml-kem` (its packed API with its own AVX2 dispatch) and `aws-lc-rs`,
//!   one `decapsulate` per ciphertext. (`pqcrypto-mlkem`, PQClean, is not an anchor: the
//!   supply-chain policy in `deny.toml` bans it, RUSTSEC-2026-0161 unmaintained.)
//!
//! Each runs on a rayon pool of one thread (workload `mlkem768-decap/1-thread`: the anchors
//! loop, ours runs its batch path on that one worker) and on a pool of every hardware thread
//! (`mlkem768-decap/<n>-threads`: the anchors' loop split into one contiguous piece per
//! thread). A device backend is measured once, in the all-threads rows. `anchor` is the
//! fastest anchor at that size and thread count. Every implementation's shared secrets are
//! compared with the reference's (`crypto::kem`) before a result is recorded.

use std::sync::Arc;

use aws_lc_rs::kem::{Ciphertext as AwsCiphertext, DecapsulationKey as AwsDk, ML_KEM_768};
use crypto::kem::mlkem768::{Ciphertext, DecapsulationKey, KeyPair};
use kernels::{Backend, CpuBackend};
use libcrux_ml_kem::mlkem768::{self, MlKem768Ciphertext, MlKem768PrivateKey};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

use prover::registry::ProverBackend;

use crate::{BenchResult, Error, Rss, SuiteOptions, best, device_name};

/// Workload name prefix of the suite's results.
const WORKLOAD: &str = "mlkem768-decap";

/// A decapsulation path: the secrets of a slice of ciphertexts under the batch's key.
type Decap<'a> = Box<dyn Fn(&[Ciphertext]) -> Result<Vec<[u8; 32]>, Error> + Sync + 'a>;

/// Where our decapsulation runs: the CPU backend, or a device backend of the probe.
enum Ours {
    Cpu(Arc<CpuBackend>),
    Cuda(Arc<kernels::CudaBackend>),
    #[cfg(feature = "wgpu")]
    Wgpu(Arc<kernels::WgpuBackend>),
}

impl Ours {
    fn name(&self) -> String {
        let (name, implementation) = match self {
            Ours::Cpu(b) => (b.info().name, b.kem_implementation()),
            Ours::Cuda(b) => (device_name("cuda", &b.info()), b.kem_implementation()),
            #[cfg(feature = "wgpu")]
            Ours::Wgpu(b) => (device_name("wgpu", &b.info()), b.kem_implementation()),
        };
        match implementation {
            Some(i) => format!("{name}/{i}"),
            None => name,
        }
    }

    /// Whether the backend computes on host threads (then it is timed on every pool).
    fn on_host(&self) -> bool {
        matches!(self, Ours::Cpu(_))
    }

    fn decap<'a>(&'a self, dk: &'a DecapsulationKey) -> Decap<'a> {
        let secrets = |r: Result<Vec<crypto::kem::SharedSecret>, kernels::Error>| {
            r.map(|ss| ss.iter().map(|s| *s.as_bytes()).collect())
                .map_err(|source| Error::Kernel {
                    workload: WORKLOAD.into(),
                    source,
                })
        };
        match self {
            Ours::Cpu(b) => Box::new(move |cts| secrets(b.decap_batch(dk, cts))),
            Ours::Cuda(b) => Box::new(move |cts| secrets(b.decap_batch(dk, cts))),
            #[cfg(feature = "wgpu")]
            Ours::Wgpu(b) => Box::new(move |cts| secrets(b.decap_batch(dk, cts))),
        }
    }
}

/// Our backends: the CPU one and every hardware device of the registry probe that reports
/// ML-KEM-768 decapsulation.
fn ours(cpu: &Arc<CpuBackend>) -> Vec<Ours> {
    let mut out = vec![Ours::Cpu(Arc::clone(cpu))];
    for probed in prover::registry::probe() {
        if !probed.info.capabilities.mlkem768_decap || probed.software {
            continue;
        }
        match probed.backend {
            ProverBackend::Cuda => match prover::accel::cuda::shared() {
                Ok(c) => out.push(Ours::Cuda(c)),
                Err(e) => eprintln!("  kem: the probed CUDA device did not open: {e}"),
            },
            #[cfg(feature = "wgpu")]
            ProverBackend::Wgpu => match prover::registry::shared_wgpu() {
                Ok(w) => out.push(Ours::Wgpu(w)),
                Err(e) => eprintln!("  kem: the probed wgpu device did not open: {e}"),
            },
            _ => {}
        }
    }
    out
}

/// The anchors for one key: name and single-operation loop.
fn anchors(dk: &DecapsulationKey) -> Result<Vec<(&'static str, Decap<'static>)>, Error> {
    let lib_dk = MlKem768PrivateKey::from(dk.as_bytes());
    let libcrux: Decap<'static> = Box::new(move |cts| {
        Ok(cts
            .iter()
            .map(|ct| mlkem768::decapsulate(&lib_dk, &MlKem768Ciphertext::from(ct.as_bytes())))
            .collect())
    });
    let aws_dk = AwsDk::new(&ML_KEM_768, dk.as_bytes().as_slice()).map_err(|e| Error::Setup {
        what: "an aws-lc-rs ML-KEM-768 decapsulation key".into(),
        reason: e.to_string(),
    })?;
    let aws: Decap<'static> = Box::new(move |cts| {
        cts.iter()
            .map(|ct| {
                let ss = aws_dk
                    .decapsulate(AwsCiphertext::from(ct.as_bytes().as_slice()))
                    .map_err(|e| Error::Setup {
                        what: "aws-lc-rs decapsulation".into(),
                        reason: e.to_string(),
                    })?;
                let mut out = [0u8; 32];
                out.copy_from_slice(ss.as_ref());
                Ok(out)
            })
            .collect()
    });
    Ok(vec![("libcrux-ml-kem", libcrux), ("aws-lc-rs", aws)])
}

fn pool(threads: usize) -> Result<rayon::ThreadPool, Error> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Setup {
            what: format!("a rayon pool of {threads} threads"),
            reason: e.to_string(),
        })
}

/// Runs the kem suite on `cpu` (and the probed devices); results are appended to `results`.
/// Returns the names of the GPU backends measured.
pub(crate) fn run(
    options: &SuiteOptions,
    cpu: &Arc<CpuBackend>,
    rss: &mut Rss,
    results: &mut Vec<BenchResult>,
) -> Result<Vec<String>, Error> {
    let mut rng = ChaCha20Rng::from_entropy();
    let all = std::thread::available_parallelism().map_or(1, usize::from);
    let mut pools = vec![(1usize, pool(1)?)];
    if all > 1 {
        pools.push((all, pool(all)?));
    }
    let ours = ours(cpu);
    let gpus = ours
        .iter()
        .filter(|o| !o.on_host())
        .map(|o| o.name())
        .collect();
    for &n in &options.kem_batches {
        let mut seed = [0u8; 64];
        rng.fill_bytes(&mut seed);
        let pair = KeyPair::from_seed(&seed);
        let dk = &pair.decapsulation_key;
        let cts: Vec<Ciphertext> = (0..n)
            .map(|_| {
                let mut m = [0u8; 32];
                rng.fill_bytes(&mut m);
                pair.encapsulation_key.encapsulate(&m).0
            })
            .collect();
        let want: Vec<[u8; 32]> = cts
            .iter()
            .map(|ct| *dk.decapsulate(ct).as_bytes())
            .collect();
        let anchors = anchors(dk)?;
        for (threads, pool) in &pools {
            let workload = if *threads == 1 {
                format!("{WORKLOAD}/1-thread")
            } else {
                format!("{WORKLOAD}/{threads}-threads")
            };
            let mut fastest: Option<(&str, f64, u64)> = None;
            for (name, f) in &anchors {
                let (s, peak, out) = time(options.repeats, rss, pool, *threads, &cts, f);
                check(&workload, n, name, &out?, &want)?;
                if fastest.is_none_or(|(_, t, _)| s < t) {
                    fastest = Some((name, s, peak));
                }
            }
            let Some((anchor, anchor_s, anchor_rss)) = fastest else {
                continue;
            };
            for backend in &ours {
                if !backend.on_host() && *threads != all {
                    continue;
                }
                let name = backend.name();
                let f = backend.decap(dk);
                // Our batch path spreads itself over the pool it runs on: one call.
                let (s, peak, out) = time(options.repeats, rss, pool, 1, &cts, &f);
                check(&workload, n, "epa", &out?, &want)?;
                eprintln!(
                    "  {workload} {n}: {name} {:.0}/s, {anchor} {:.0}/s ({:.2}x)",
                    n as f64 / s,
                    n as f64 / anchor_s,
                    anchor_s / s
                );
                results.push(BenchResult {
                    suite: "kem".into(),
                    workload: workload.clone(),
                    size: n,
                    backend: name,
                    ours_s: s,
                    anchor: anchor.to_owned(),
                    anchor_s,
                    speedup: anchor_s / s,
                    peak_rss_bytes: peak,
                    anchor_peak_rss_bytes: anchor_rss,
                });
            }
        }
    }
    Ok(gpus)
}

/// Best time of the batch on `pool`; with `pieces > 1` the batch is split into that many
/// contiguous pieces decapsulated in parallel (how a single-operation API uses every core).
fn time(
    repeats: usize,
    rss: &mut Rss,
    pool: &rayon::ThreadPool,
    pieces: usize,
    cts: &[Ciphertext],
    f: &Decap<'_>,
) -> (f64, u64, Result<Vec<[u8; 32]>, Error>) {
    rss.reset();
    let piece = cts.len().div_ceil(pieces.max(1)).max(1);
    let (s, out) = best(
        repeats,
        || (),
        |()| {
            pool.install(|| {
                if pieces > 1 {
                    cts.par_chunks(piece)
                        .map(f)
                        .collect::<Result<Vec<_>, _>>()
                        .map(|v| v.concat())
                } else {
                    f(cts)
                }
            })
        },
    );
    (s, rss.peak(), out)
}

/// Secrets must equal the reference's, or the timing is meaningless.
fn check(
    workload: &str,
    size: usize,
    who: &str,
    got: &[[u8; 32]],
    want: &[[u8; 32]],
) -> Result<(), Error> {
    if got == want {
        Ok(())
    } else {
        Err(Error::KemMismatch {
            workload: workload.into(),
            size,
            implementation: who.into(),
        })
    }
}
