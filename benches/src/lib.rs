//! EPA benchmarks: the `epa bench` perf suite.
//!
//! Criterion micro-benchmarks live under `benches/` of each crate that owns the measured code;
//! this crate owns the side-by-side comparison that `epa bench --suite kernels` runs: ours and
//! an anchor timed in one process, built with the same flags, reported as a table and as JSON
//! ([`Report`]).
//!
//! The `kernels` suite ([`run_kernels`]) covers:
//! * `ntt`: single-column forward NTT, ours (`kernels::CpuBackend`) against winter-math's
//!   `fft::evaluate_poly` (on one thread, as winterfell's default build runs it) and Plonky3's `p3-dft` `Radix2DitParallel` over `p3-goldilocks`;
//! * `lde-16col`: coset LDE of 16 columns, blowup 8, ours against winter-math (one
//!   `fft::evaluate_poly_with_offset` per column, columns in parallel) and `p3-dft`
//!   `coset_dft_batch` on the zero-padded coefficient matrix;
//! * `merkle-rp64`: an `Rp64_256` Merkle tree over random leaves, ours against winter-crypto's
//!   `MerkleTree::new` on one thread;
//! * `prove/<air>/<hash>`: whole proofs, [`prover::accel::AccelComponents`] on the CPU backend
//!   against stock winterfell's default components (preset `fast-96`) on one thread.
//!
//! winterfell's default build is single-threaded. This workspace builds winter-fri,
//! winter-crypto and winter-math with their `concurrent` feature (deterministic; winter-prover
//! stays without it), so the anchors that stand for default winterfell run in a pool of one
//! thread; the LDE anchor spreads its columns over every thread itself.
//!
//! Every case is also timed on each GPU backend that opens on this machine ([`gpu_targets`]):
//! `kernels::CudaBackend` (skipped without a CUDA driver, device or NVRTC) and
//! `kernels::WgpuBackend` (skipped without an adapter). Their rows name the device:
//! `cuda/<GPU name>`, `wgpu/<adapter name>`, and `wgpu-software/<adapter name>` for a software
//! implementation on the CPU such as Mesa's lavapipe, which runs only the smallest size of
//! each case (it is there to exercise the path, not to be fast). A GPU's NTT, LDE and tree
//! results must equal the CPU backend's (which the anchors checked) and its proofs must equal
//! stock winterfell's bytes, or the suite fails. The anchors are timed once per case; each
//! backend's row repeats their figures. A GPU's NTT and Merkle times include the transfers
//! (upload, download); its LDE time starts from coefficients resident on the device and ends
//! when one row has been read back (so the GPU's work is finished). Proof rows on a GPU whose
//! steps fell back to the CPU kernels say so in the backend name (`+N cpu fallbacks`).
//!
//! The `kem` suite ([`run_kem`], module [`kem`]) times ML-KEM-768 batch decapsulation, ours
//! against `libcrux-ml-kem` and `aws-lc-rs` single operations, on one thread and on all.
//!
//! Plonky3 is an anchor only: it is a normal dependency of this crate (the suite is a library
//! the `epa` binary runs), not of any crate on the proving path. Its DFT output is left in the
//! bit-reversed view `dft_batch` returns (no reordering is timed), which favours the anchor.
//! Its values are checked against ours after timing, every point: p3 evaluates at powers of
//! its own generator of the subgroup, `h = g^k` for winter-math's `g`, so its point `i` is
//! compared with our point `i * k mod n` (see `p3_agrees`).
//!
//! Timing: each case runs once to warm up (twiddle caches, page faults), then the best of
//! [`SuiteOptions::repeats`] runs counts. Peak memory: before each measured side the
//! process's peak resident set (`VmHWM` in `/proc/self/status`) is reset by writing `5` to
//! `/proc/self/clear_refs`; `peak_rss_bytes` is the `VmHWM` after our runs and
//! `anchor_peak_rss_bytes` after the anchor's (the whole process, inputs included). Where the
//! reset is refused, [`Machine::peak_rss_method`] says so and the figures are process peaks.
#![forbid(unsafe_code)]

pub mod kem;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use kernels::{Backend, ColumnMatrix, CpuBackend, Device, RowMatrix};
use p3_dft::{Radix2DitParallel, TwoAdicSubgroupDft};
use p3_field::{PrimeCharacteristicRing, PrimeField64, TwoAdicField};
use p3_goldilocks::Goldilocks;
use p3_matrix::Matrix as _;
use p3_matrix::dense::RowMajorMatrix;
use prover::accel::{AccelComponents, AccelHash};
use prover::options::{OptionsChoice, Preset};
use prover::prover::DefaultComponents;
use prover::registry::{self, NamedHash, ProveRequest};
use prover::workload::{SmtWorkload, random_word};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;
use serde::Serialize;
use winter_crypto::hashers::{Blake3_256, Rp64_256};
use winter_crypto::{ElementHasher, Hasher, MerkleTree};
use winter_math::fields::f64::BaseElement;
use winter_math::{FieldElement, StarkField, fft};

/// Everything that can go wrong while running a suite.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A suite name that does not exist.
    #[error("unknown bench suite `{name}`: the suites are `kernels` and `kem`")]
    UnknownSuite {
        /// The name asked for.
        name: String,
    },
    /// A kernel of our backend failed.
    #[error("backend kernel failed in `{workload}`: {source}")]
    Kernel {
        /// The workload being measured.
        workload: String,
        /// The backend's error.
        source: kernels::Error,
    },
    /// A proof could not be made.
    #[error("proving `{workload}` failed: {source}")]
    Prove {
        /// The workload being measured.
        workload: String,
        /// The prover's error.
        source: prover::Error,
    },
    /// Ours and the anchor disagree: the comparison would be meaningless.
    #[error("`{workload}` at size {size}: our result differs from the anchor `{anchor}`")]
    Mismatch {
        /// The workload.
        workload: String,
        /// The size.
        size: usize,
        /// The anchor.
        anchor: &'static str,
    },
    /// An implementation decapsulated to secrets other than the reference's.
    #[error(
        "`{workload}` at batch {size}: `{implementation}` gave shared secrets that differ from \
         the reference ML-KEM-768 (crypto::kem); its timing is not reported"
    )]
    KemMismatch {
        /// The workload.
        workload: String,
        /// The batch size.
        size: usize,
        /// The implementation that differed.
        implementation: String,
    },
    /// Something the suite needs could not be set up (a thread pool, an anchor's key).
    #[error("bench setup failed: {what}: {reason}")]
    Setup {
        /// What was being set up.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// A winter-crypto Merkle tree could not be built.
    #[error("winter-crypto Merkle tree failed for `{workload}`: {reason}")]
    Merkle {
        /// The workload.
        workload: String,
        /// Winter-crypto's reason.
        reason: String,
    },
}

/// How the suite runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteOptions {
    /// Log2 sizes of the single-column NTT.
    pub ntt_log_sizes: Vec<u32>,
    /// Log2 row counts of the 16-column LDE (before the blowup of 8).
    pub lde_log_sizes: Vec<u32>,
    /// Log2 leaf counts of the Merkle trees.
    pub merkle_log_sizes: Vec<u32>,
    /// Rescue-chain lengths (merges; trace rows are 8 per merge).
    pub rescue_steps: Vec<u64>,
    /// Updates per smt-update batch (depth-32 tree).
    pub smt_updates: Vec<usize>,
    /// ML-KEM-768 decapsulation batch sizes of the `kem` suite.
    pub kem_batches: Vec<usize>,
    /// Timed runs per side after one warm-up; the best counts.
    pub repeats: usize,
}

impl SuiteOptions {
    /// The full suite of the issue: NTT 2^16..2^22, LDE 2^16 and 2^20 rows, Merkle
    /// 2^14..2^20 leaves and proofs with traces of 2^13 and 2^16 rows.
    pub fn full() -> Self {
        SuiteOptions {
            ntt_log_sizes: vec![16, 18, 20, 22],
            lde_log_sizes: vec![16, 20],
            merkle_log_sizes: vec![14, 16, 18, 20],
            rescue_steps: vec![1 << 10, 1 << 13],
            smt_updates: vec![16, 64],
            kem_batches: vec![1, 64, 1024, 16384],
            repeats: 3,
        }
    }

    /// Small sizes that finish in about a minute.
    pub fn quick() -> Self {
        SuiteOptions {
            ntt_log_sizes: vec![12, 16],
            lde_log_sizes: vec![12, 14],
            merkle_log_sizes: vec![12, 14],
            rescue_steps: vec![1 << 8],
            smt_updates: vec![4],
            kem_batches: vec![1, 64, 1024],
            repeats: 2,
        }
    }

    /// Tiny sizes for tests (a few seconds even unoptimised).
    pub fn tiny() -> Self {
        SuiteOptions {
            ntt_log_sizes: vec![8],
            lde_log_sizes: vec![6],
            merkle_log_sizes: vec![6],
            rescue_steps: vec![8],
            smt_updates: vec![1],
            kem_batches: vec![1, 8],
            repeats: 1,
        }
    }
}

/// The machine a report was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Hardware threads available to this process.
    pub cores: usize,
    /// Instruction set of our CPU kernels (e.g. `avx2`).
    pub simd: String,
    /// GPUs seen by the driver (empty when none).
    pub gpus: Vec<String>,
    /// Versions of what was measured, the build profile and its target features.
    pub versions: Versions,
    /// How `peak_rss_bytes` was measured.
    pub peak_rss_method: String,
}

/// Versions of the measured code and the build.
#[derive(Debug, Clone, Serialize)]
pub struct Versions {
    /// This crate's (and EPA's) version.
    pub epa: String,
    /// Winterfell (stock prover, winter-math, winter-crypto).
    pub winterfell: String,
    /// Plonky3 crates (`p3-dft`, `p3-goldilocks`).
    pub plonky3: String,
    /// `release` or `debug`.
    pub profile: String,
    /// Compile-time x86 target features (`-C target-cpu`): all kernels pick their ISA at run
    /// time, the anchors use what these flags give them.
    pub target_features: String,
}

/// One measured case.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// The suite (`kernels` or `kem`).
    pub suite: String,
    /// The workload, e.g. `ntt`, `lde-16col`, `merkle-rp64`, `prove/rescue-chain/rp64-256`.
    pub workload: String,
    /// Size: elements per column, leaves, trace rows or ciphertexts per batch.
    pub size: usize,
    /// Our backend, e.g. `cpu-avx2`.
    pub backend: String,
    /// Our best time in seconds.
    pub ours_s: f64,
    /// The anchor's name.
    pub anchor: String,
    /// The anchor's best time in seconds.
    pub anchor_s: f64,
    /// `anchor_s / ours_s`.
    pub speedup: f64,
    /// Peak resident set while ours ran, in bytes (see the crate docs).
    pub peak_rss_bytes: u64,
    /// Peak resident set while the anchor ran, in bytes.
    pub anchor_peak_rss_bytes: u64,
}

/// A suite's report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// Every case, in run order.
    pub results: Vec<BenchResult>,
}

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report of strings and numbers serialises")
    }

    /// The report as a plain-text table.
    pub fn table(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "machine: {} ({} threads, kernels {}), {} build, target features [{}]\n",
            m.cpu, m.cores, m.simd, m.versions.profile, m.versions.target_features
        );
        let bw = self
            .results
            .iter()
            .map(|r| r.backend.len())
            .max()
            .unwrap_or(0)
            .max(10);
        let _ = writeln!(
            out,
            "{:<30} {:>9} {:<bw$} {:>11} {:<20} {:>11} {:>8} {:>10} {:>10}",
            "workload",
            "size",
            "backend",
            "ours ms",
            "anchor",
            "anchor ms",
            "speedup",
            "rss MiB",
            "anch MiB"
        );
        for r in &self.results {
            let _ = writeln!(
                out,
                "{:<30} {:>9} {:<bw$} {:>11.3} {:<20} {:>11.3} {:>7.2}x {:>10.1} {:>10.1}",
                r.workload,
                r.size,
                r.backend,
                r.ours_s * 1e3,
                r.anchor,
                r.anchor_s * 1e3,
                r.speedup,
                r.peak_rss_bytes as f64 / 1048576.0,
                r.anchor_peak_rss_bytes as f64 / 1048576.0
            );
        }
        out
    }
}

/// The proof request the single-proof examples (`prove_profile`, `prove_memory`) take from
/// their command line: `smt-update UPDATES` (depth 32, workload seed 7) or, for any other name,
/// `rescue-chain STEPS` (seed drawn from a ChaCha20 stream seeded with 7). Panics on a workload
/// that cannot be built (an example's argument error).
pub fn example_request(air: &str, size: u64) -> ProveRequest {
    match air {
        "smt-update" => {
            let mut w = SmtWorkload::new(32, 7).expect("workload");
            ProveRequest::SmtUpdate {
                depth: 32,
                witnesses: w.next_batch(size as usize).expect("witnesses"),
            }
        }
        _ => ProveRequest::RescueChain {
            seed: random_word(&mut ChaCha20Rng::seed_from_u64(7)),
            steps: size,
        },
    }
}

/// Runs a suite by name (`kernels` or `kem`).
pub fn run_suite(name: &str, options: &SuiteOptions) -> Result<Report, Error> {
    match name {
        "kernels" => run_kernels(options),
        "kem" => run_kem(options),
        other => Err(Error::UnknownSuite {
            name: other.to_owned(),
        }),
    }
}

/// Runs the `kernels` suite (see the crate docs) on the CPU backend (`EPA_SIMD` or the best
/// instruction set of this CPU).
pub fn run_kernels(options: &SuiteOptions) -> Result<Report, Error> {
    let backend = Arc::new(CpuBackend::new().map_err(|source| Error::Kernel {
        workload: "backend setup".into(),
        source,
    })?);
    let mut rss = Rss::probe();
    let gpus = gpu_targets();
    let mut suite = Suite {
        backend,
        gpus,
        options: options.clone(),
        rng: ChaCha20Rng::from_entropy(),
        results: Vec::new(),
    };
    for &log in &options.ntt_log_sizes {
        suite.ntt(log, &mut rss)?;
    }
    for &log in &options.lde_log_sizes {
        suite.lde(log, &mut rss)?;
    }
    for &log in &options.merkle_log_sizes {
        suite.merkle(log, &mut rss)?;
    }
    for &steps in &options.rescue_steps {
        let request = ProveRequest::RescueChain {
            seed: random_word(&mut suite.rng),
            steps,
        };
        let rows = usize::try_from(steps * 8).unwrap_or(usize::MAX);
        let smallest = options.rescue_steps.iter().min() == Some(&steps);
        suite.prove::<Rp64_256>(&request, rows, smallest, &mut rss)?;
        suite.prove::<Blake3_256<BaseElement>>(&request, rows, smallest, &mut rss)?;
    }
    for &updates in &options.smt_updates {
        let mut workload =
            SmtWorkload::new(32, suite.rng.r#gen()).map_err(|source| Error::Prove {
                workload: "smt-update workload".into(),
                source,
            })?;
        let witnesses = workload
            .next_batch(updates)
            .map_err(|source| Error::Prove {
                workload: "smt-update workload".into(),
                source,
            })?;
        let request = ProveRequest::SmtUpdate {
            depth: 32,
            witnesses,
        };
        let smallest = options.smt_updates.iter().min() == Some(&updates);
        suite.prove::<Rp64_256>(&request, updates, smallest, &mut rss)?;
        suite.prove::<Blake3_256<BaseElement>>(&request, updates, smallest, &mut rss)?;
    }
    let simd = suite.backend.isa().to_string();
    let gpus = suite.gpus.iter().map(|g| g.name.clone()).collect();
    Ok(Report {
        machine: machine(simd, &rss, gpus),
        results: suite.results,
    })
}

/// Runs the `kem` suite (see [`kem`]) on the CPU backend (`EPA_SIMD` or the best instruction
/// set of this CPU) and the probed devices that decapsulate.
pub fn run_kem(options: &SuiteOptions) -> Result<Report, Error> {
    let backend = Arc::new(CpuBackend::new().map_err(|source| Error::Kernel {
        workload: "backend setup".into(),
        source,
    })?);
    let mut rss = Rss::probe();
    let mut results = Vec::new();
    let gpus = kem::run(options, &backend, &mut rss, &mut results)?;
    Ok(Report {
        machine: machine(backend.isa().to_string(), &rss, gpus),
        results,
    })
}

/// Peak-RSS measurement by `VmHWM`, reset through `clear_refs` where allowed.
struct Rss {
    resettable: bool,
}

impl Rss {
    fn probe() -> Self {
        Rss {
            resettable: std::fs::write("/proc/self/clear_refs", "5").is_ok(),
        }
    }

    fn reset(&mut self) {
        if self.resettable {
            self.resettable = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        }
    }

    /// `VmHWM` in bytes, 0 where `/proc` is unavailable.
    fn peak(&self) -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024)
    }

    fn method(&self) -> String {
        if self.resettable {
            "VmHWM of this process, reset (clear_refs 5) before each side".into()
        } else {
            "VmHWM of this process (reset refused: process-lifetime peaks)".into()
        }
    }
}

/// A GPU backend of the kernels suite.
enum Gpu {
    /// The CUDA kernels on device 0.
    Cuda(Arc<kernels::CudaBackend>),
    /// The wgpu kernels on the best adapter.
    #[cfg(feature = "wgpu")]
    Wgpu(Arc<kernels::WgpuBackend>),
}

/// A GPU backend that opened, with the name its rows carry.
pub struct GpuTarget {
    /// `cuda/<GPU name>`, `wgpu/<adapter name>` or `wgpu-software/<adapter name>`.
    pub name: String,
    /// A software implementation on the CPU (Mesa's lavapipe): only the smallest sizes run.
    pub software: bool,
    gpu: Gpu,
}

impl std::fmt::Debug for GpuTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuTarget")
            .field("name", &self.name)
            .field("software", &self.software)
            .finish_non_exhaustive()
    }
}

/// Runs `$body` with `$b` bound to the target's backend (`&Arc<B>` for its concrete type).
macro_rules! on_gpu {
    ($target:expr, $b:ident => $body:expr) => {
        match &$target.gpu {
            Gpu::Cuda($b) => $body,
            #[cfg(feature = "wgpu")]
            Gpu::Wgpu($b) => $body,
        }
    };
}

/// The row name of a backend on a device: `prefix/<device name>`.
fn device_name(prefix: &str, info: &kernels::BackendInfo) -> String {
    match &info.device {
        Device::Gpu { name, .. } => format!("{prefix}/{name}"),
        _ => prefix.to_owned(),
    }
}

/// The GPU backends that open on this machine: CUDA (`kernels::CudaBackend::new`, the
/// prover's shared device; skipped on `NoCuda`) and wgpu (`kernels::WgpuBackend::new`, the
/// prover's shared device; skipped on `NoAdapter`). Any other error opening a device is
/// reported on stderr and that device skipped: the suite measures what works.
pub fn gpu_targets() -> Vec<GpuTarget> {
    let mut out = Vec::new();
    match prover::accel::cuda::shared() {
        Ok(b) => out.push(GpuTarget {
            name: device_name("cuda", &b.info()),
            software: false,
            gpu: Gpu::Cuda(b),
        }),
        Err(prover::Error::Backend(kernels::Error::NoCuda { .. })) => {}
        Err(e) => eprintln!("  bench: the CUDA device did not open, skipped: {e}"),
    }
    #[cfg(feature = "wgpu")]
    match registry::shared_wgpu() {
        Ok(b) => {
            let software = b.is_software();
            let prefix = if software { "wgpu-software" } else { "wgpu" };
            out.push(GpuTarget {
                name: device_name(prefix, &b.info()),
                software,
                gpu: Gpu::Wgpu(b),
            });
        }
        Err(prover::Error::Backend(kernels::Error::NoAdapter { .. })) => {}
        Err(e) => eprintln!("  bench: the wgpu device did not open, skipped: {e}"),
    }
    out
}

/// Our NTT on `backend`: upload, forward NTT, download, timed together.
fn time_ntt<B: Backend>(
    backend: &B,
    input: &[BaseElement],
    reps: usize,
    rss: &mut Rss,
) -> (f64, u64, Result<ColumnMatrix, kernels::Error>) {
    let n = input.len();
    rss.reset();
    let (s, out) = best(
        reps,
        || ColumnMatrix::from_column_major(input.to_vec(), n),
        |m| -> Result<ColumnMatrix, kernels::Error> {
            let mut cols = backend.upload_columns(m?)?;
            backend.ntt(&mut cols)?;
            backend.download_columns(&cols)
        },
    );
    (s, rss.peak(), out)
}

/// Our coset LDE on `backend` from device-resident coefficients; each timed run ends with
/// row `probe` read back (the device's work is done). The whole result is downloaded after
/// timing, for the checks.
fn time_lde<B: Backend>(
    backend: &B,
    columns: &[Vec<BaseElement>],
    blowup: usize,
    offset: BaseElement,
    probe: usize,
    reps: usize,
    rss: &mut Rss,
) -> (f64, u64, Result<RowMatrix, kernels::Error>) {
    let device = match ColumnMatrix::new(columns.to_vec()).and_then(|m| backend.upload_columns(m)) {
        Ok(d) => d,
        Err(e) => return (0.0, 0, Err(e)),
    };
    rss.reset();
    let (s, out) = best(
        reps,
        || (),
        |()| {
            let rows = backend.coset_lde(&device, blowup, offset)?;
            backend.read_rows(&rows, &[probe])?;
            Ok(rows)
        },
    );
    let peak = rss.peak();
    (s, peak, out.and_then(|rows| backend.download_rows(&rows)))
}

/// Our Rp64_256 Merkle tree on `backend`: upload of the leaves, tree, download, timed together.
fn time_merkle<B: Backend>(
    backend: &B,
    leaves: &[<Rp64_256 as Hasher>::Digest],
    reps: usize,
    rss: &mut Rss,
) -> (f64, u64, Result<MerkleTree<Rp64_256>, kernels::Error>) {
    rss.reset();
    let (s, out) = best(
        reps,
        || leaves.to_vec(),
        |l| {
            backend
                .merkle_tree_rp64_256(l)
                .and_then(|t| backend.download_tree(t))
        },
    );
    (s, rss.peak(), out)
}

/// A whole proof on a GPU backend with the hash `H` (steps that fail on the device are redone
/// on the CPU kernels by the prover and counted).
fn prove_on_gpu<H: NamedHash>(
    target: &GpuTarget,
    request: &ProveRequest,
    options: OptionsChoice,
) -> Result<prover::envelope::ProofEnvelope, prover::Error> {
    match &target.gpu {
        Gpu::Cuda(b) => prover::accel::cuda::prove(request, options, H::ID, Arc::clone(b)),
        #[cfg(feature = "wgpu")]
        Gpu::Wgpu(b) => registry::prove_on_wgpu(request, options, H::ID, Arc::clone(b)),
    }
}

struct Suite {
    backend: Arc<CpuBackend>,
    gpus: Vec<GpuTarget>,
    options: SuiteOptions,
    rng: ChaCha20Rng,
    results: Vec<BenchResult>,
}

/// Best time of `repeats` runs after a warm-up; `setup` builds each run's input untimed.
/// Runs `f` on a pool of one thread: winterfell's default build (without its `concurrent`
/// feature) is single-threaded, and the anchors that stand for it (stock proofs, winter-math's
/// single-column FFT, winter-crypto's `MerkleTree::new`) are timed that way although this
/// binary builds winter-fri, winter-crypto and winter-math with `concurrent` (the prover's
/// FRI layers, Merkle trees and FFTs use every core; docs/adr/0010-determinism.md).
fn one_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("the OS starts one more thread for the one-thread anchor pool")
    })
    .install(f)
}

fn best<I, O>(repeats: usize, mut setup: impl FnMut() -> I, mut f: impl FnMut(I) -> O) -> (f64, O) {
    let mut out = f(setup());
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let input = setup();
        let started = Instant::now();
        out = f(input);
        best = best.min(started.elapsed().as_secs_f64());
    }
    (best, out)
}

fn to_p3(values: &[BaseElement]) -> Vec<Goldilocks> {
    values
        .iter()
        .map(|v| Goldilocks::from_u64(v.as_int()))
        .collect()
}

/// The exponent `k < 2^bits` with `h = g^k`, where `g` generates the subgroup of order
/// `2^bits` and `h` lies in it (bit by bit: `h * g^-k` must have order `2^(bits - j)` at step `j`).
fn subgroup_log(g: BaseElement, h: BaseElement, bits: u32) -> Option<u64> {
    let mut k = 0u64;
    for j in 0..bits {
        let rest = h * g.exp(k).inv();
        if rest.exp(1u64 << (bits - 1 - j)) != BaseElement::ONE {
            k |= 1 << j;
        }
    }
    (h == g.exp(k)).then_some(k)
}

/// Whether Plonky3's evaluations equal ours, point for point. `p3_rows` holds `n` rows of
/// `width` values in the order `to_row_major_matrix` gives (p3 returns a bit-reversed view of
/// its DIT output, so that order is the natural one), at the points `shift * h^i` with `h`
/// Plonky3's generator of order `n`; `ours(r)` is our row at `shift * g^r` with `g`
/// winter-math's generator. The two fields fix different generators, `h = g^k`, so p3's row
/// `i` is our row `i * k mod n`.
fn p3_agrees<'a>(
    p3_rows: &[Goldilocks],
    width: usize,
    n: usize,
    ours: impl Fn(usize) -> &'a [BaseElement],
) -> bool {
    let bits = n.trailing_zeros();
    let g = BaseElement::get_root_of_unity(bits);
    let h = BaseElement::new(Goldilocks::two_adic_generator(bits as usize).as_canonical_u64());
    let Some(k) = subgroup_log(g, h, bits) else {
        return false;
    };
    p3_rows.len() == n * width
        && p3_rows.chunks_exact(width).enumerate().all(|(i, row)| {
            let r = ((i as u128 * k as u128) % n as u128) as usize;
            row.iter()
                .map(PrimeField64::as_canonical_u64)
                .eq(ours(r).iter().map(|v| v.as_int()))
        })
}

impl Suite {
    fn random_vec(&mut self, n: usize) -> Vec<BaseElement> {
        (0..n)
            .map(|_| BaseElement::new(self.rng.gen_range(0..BaseElement::MODULUS)))
            .collect()
    }

    fn name(&self) -> String {
        format!("cpu-{}", self.backend.isa())
    }

    /// Whether GPU target `i` runs a case of size `size` out of `sizes`: a hardware GPU every
    /// size, a software one only the smallest.
    fn runs<T: Ord>(&self, i: usize, size: &T, sizes: &[T]) -> bool {
        !self.gpus[i].software || sizes.iter().min() == Some(size)
    }

    fn push(
        &mut self,
        workload: &str,
        size: usize,
        backend: &str,
        ours: (f64, u64),
        anchor: &str,
        theirs: (f64, u64),
    ) {
        let result = BenchResult {
            suite: "kernels".into(),
            workload: workload.into(),
            size,
            backend: backend.into(),
            ours_s: ours.0,
            anchor: anchor.into(),
            anchor_s: theirs.0,
            speedup: theirs.0 / ours.0,
            peak_rss_bytes: ours.1,
            anchor_peak_rss_bytes: theirs.1,
        };
        eprintln!(
            "  {workload} {size} {backend}: ours {:.3} ms, {anchor} {:.3} ms ({:.2}x)",
            ours.0 * 1e3,
            theirs.0 * 1e3,
            result.speedup
        );
        self.results.push(result);
    }

    /// One row per anchor (name, best seconds, peak RSS) for our `backend`.
    fn push_all(
        &mut self,
        workload: &str,
        size: usize,
        backend: &str,
        ours: (f64, u64),
        anchors: &[(&str, f64, u64)],
    ) {
        for &(anchor, s, peak) in anchors {
            self.push(workload, size, backend, ours, anchor, (s, peak));
        }
    }

    fn kernel_err(workload: &str) -> impl FnOnce(kernels::Error) -> Error + '_ {
        move |source| Error::Kernel {
            workload: workload.into(),
            source,
        }
    }

    /// A GPU result that differs from the CPU backend's (itself checked against the anchors).
    fn gpu_mismatch(workload: &str, size: usize) -> Error {
        Error::Mismatch {
            workload: workload.into(),
            size,
            anchor: "cpu kernels",
        }
    }

    fn ntt(&mut self, log: u32, rss: &mut Rss) -> Result<(), Error> {
        let n = 1usize << log;
        let input = self.random_vec(n);
        let reps = self.options.repeats;

        let (ours_s, ours_rss, ours) = time_ntt(&*self.backend, &input, reps, rss);
        let ours = ours.map_err(Self::kernel_err("ntt"))?;

        let twiddles = fft::get_twiddles::<BaseElement>(n);
        rss.reset();
        let (wm_s, wm) = best(
            reps,
            || input.clone(),
            |mut p| {
                one_thread(|| fft::evaluate_poly(&mut p, &twiddles));
                p
            },
        );
        let wm_rss = rss.peak();
        if wm != ours.column(0) {
            return Err(Error::Mismatch {
                workload: "ntt".into(),
                size: n,
                anchor: "winter-math",
            });
        }

        let p3_input = to_p3(&input);
        let dft = Radix2DitParallel::<Goldilocks>::default();
        rss.reset();
        let (p3_s, p3_out) = best(
            reps,
            || RowMajorMatrix::new_col(p3_input.clone()),
            |m| dft.dft_batch(m),
        );
        let p3_rss = rss.peak();
        let p3_vals = p3_out.to_row_major_matrix().values;
        let column = ours.column(0);
        if !p3_agrees(&p3_vals, 1, n, |r| &column[r..=r]) {
            return Err(Error::Mismatch {
                workload: "ntt".into(),
                size: n,
                anchor: "p3-dft",
            });
        }
        drop(p3_vals);
        let anchors = [
            ("winter-math", wm_s, wm_rss),
            ("p3-dft-dit-parallel", p3_s, p3_rss),
        ];
        let cpu = self.name();
        self.push_all("ntt", n, &cpu, (ours_s, ours_rss), &anchors);

        for i in 0..self.gpus.len() {
            if !self.runs(i, &log, &self.options.ntt_log_sizes) {
                continue;
            }
            let target = &self.gpus[i];
            let name = target.name.clone();
            let (s, peak, out) = on_gpu!(target, b => time_ntt(&**b, &input, reps, rss));
            match out {
                Ok(out) if out == ours => {
                    self.push_all("ntt", n, &name, (s, peak), &anchors);
                }
                Ok(_) => return Err(Self::gpu_mismatch("ntt", n)),
                Err(e) => eprintln!("  ntt {n} {name}: failed, row skipped: {e}"),
            }
        }
        Ok(())
    }

    fn lde(&mut self, log: u32, rss: &mut Rss) -> Result<(), Error> {
        const COLS: usize = 16;
        const BLOWUP: usize = 8;
        let n = 1usize << log;
        let columns: Vec<Vec<BaseElement>> = (0..COLS).map(|_| self.random_vec(n)).collect();
        let offset = BaseElement::GENERATOR;
        let reps = self.options.repeats;
        let workload = "lde-16col-blowup8";
        let row = (n * BLOWUP) / 3;

        let (ours_s, ours_rss, ours) =
            time_lde(&*self.backend, &columns, BLOWUP, offset, row, reps, rss);
        let ours = ours.map_err(Self::kernel_err(workload))?;

        let twiddles = fft::get_twiddles::<BaseElement>(n);
        rss.reset();
        let (wm_s, wm) = best(
            reps,
            || (),
            |()| {
                columns
                    .par_iter()
                    .map(|c| fft::evaluate_poly_with_offset(c, &twiddles, offset, BLOWUP))
                    .collect::<Vec<_>>()
            },
        );
        let wm_rss = rss.peak();
        let wm_row: Vec<BaseElement> = wm.iter().map(|c| c[row]).collect();
        if wm_row != ours.row(row) {
            return Err(Error::Mismatch {
                workload: workload.into(),
                size: n,
                anchor: "winter-math",
            });
        }
        drop(wm);

        // Plonky3: coset DFT of the zero-padded coefficient matrix (row-major, 16 wide).
        let mut padded = vec![Goldilocks::ZERO; n * BLOWUP * COLS];
        for (j, c) in columns.iter().enumerate() {
            for (i, v) in c.iter().enumerate() {
                padded[i * COLS + j] = Goldilocks::from_u64(v.as_int());
            }
        }
        let shift = Goldilocks::from_u64(offset.as_int());
        let dft = Radix2DitParallel::<Goldilocks>::default();
        rss.reset();
        let (p3_s, p3_out) = best(
            reps,
            || RowMajorMatrix::new(padded.clone(), COLS),
            |m| dft.coset_dft_batch(m, shift),
        );
        let p3_rss = rss.peak();
        drop(padded);
        let p3_all = p3_out.to_row_major_matrix().values;
        if !p3_agrees(&p3_all, COLS, n * BLOWUP, |r| ours.row(r)) {
            return Err(Error::Mismatch {
                workload: workload.into(),
                size: n,
                anchor: "p3-dft",
            });
        }
        drop(p3_all);
        let anchors = [
            ("winter-math", wm_s, wm_rss),
            ("p3-dft-dit-parallel", p3_s, p3_rss),
        ];
        let cpu = self.name();
        self.push_all(workload, n, &cpu, (ours_s, ours_rss), &anchors);

        for i in 0..self.gpus.len() {
            if !self.runs(i, &log, &self.options.lde_log_sizes) {
                continue;
            }
            let target = &self.gpus[i];
            let name = target.name.clone();
            let (s, peak, out) = on_gpu!(target, b => {
                time_lde(&**b, &columns, BLOWUP, offset, row, reps, rss)
            });
            match out {
                Ok(out) if out == ours => {
                    self.push_all(workload, n, &name, (s, peak), &anchors);
                }
                Ok(_) => return Err(Self::gpu_mismatch(workload, n)),
                Err(e) => eprintln!("  {workload} {n} {name}: failed, row skipped: {e}"),
            }
        }
        Ok(())
    }

    fn merkle(&mut self, log: u32, rss: &mut Rss) -> Result<(), Error> {
        let n = 1usize << log;
        let leaves: Vec<<Rp64_256 as Hasher>::Digest> = (0..n)
            .map(|_| {
                let e = self.random_vec(2);
                Rp64_256::hash_elements(&e)
            })
            .collect();
        let reps = self.options.repeats;
        let workload = "merkle-rp64";
        let (ours_s, ours_rss, ours) = time_merkle(&*self.backend, &leaves, reps, rss);
        let ours = ours.map_err(Self::kernel_err(workload))?;
        rss.reset();
        let (wc_s, wc) = best(
            reps,
            || leaves.clone(),
            |l| one_thread(|| MerkleTree::<Rp64_256>::new(l)),
        );
        let wc_rss = rss.peak();
        let wc = wc.map_err(|e| Error::Merkle {
            workload: workload.into(),
            reason: e.to_string(),
        })?;
        if wc.root() != ours.root() {
            return Err(Error::Mismatch {
                workload: workload.into(),
                size: n,
                anchor: "winter-crypto",
            });
        }
        let anchors = [("winter-crypto", wc_s, wc_rss)];
        let cpu = self.name();
        self.push_all(workload, n, &cpu, (ours_s, ours_rss), &anchors);

        for i in 0..self.gpus.len() {
            if !self.runs(i, &log, &self.options.merkle_log_sizes) {
                continue;
            }
            let target = &self.gpus[i];
            let name = target.name.clone();
            let (s, peak, out) = on_gpu!(target, b => time_merkle(&**b, &leaves, reps, rss));
            match out {
                Ok(tree) if tree.root() == wc.root() => {
                    self.push_all(workload, n, &name, (s, peak), &anchors);
                }
                Ok(_) => return Err(Self::gpu_mismatch(workload, n)),
                Err(e) => eprintln!("  {workload} {n} {name}: failed, row skipped: {e}"),
            }
        }
        Ok(())
    }

    /// Whole proofs of `request` with the hash `H`: the CPU backend's accelerated components
    /// and stock winterfell, then every GPU target (software ones only when `smallest`).
    fn prove<H: AccelHash>(
        &mut self,
        request: &ProveRequest,
        size: usize,
        smallest: bool,
        rss: &mut Rss,
    ) -> Result<(), Error> {
        let workload = format!("prove/{}/{}", request.air(), H::ID);
        let options = OptionsChoice::Preset(Preset::Fast96);
        let reps = self.options.repeats;
        let components = AccelComponents::<_, H>::new(Arc::clone(&self.backend));
        let err = |source| Error::Prove {
            workload: workload.clone(),
            source,
        };
        rss.reset();
        let (ours_s, ours) = best(
            reps,
            || components.clone(),
            |c| registry::prove_with(request, options, c),
        );
        let ours_rss = rss.peak();
        let ours = ours.map_err(err)?;
        rss.reset();
        let (stock_s, stock) = best(
            reps,
            || (),
            |()| {
                one_thread(|| registry::prove_with(request, options, DefaultComponents::<H>::new()))
            },
        );
        let stock_rss = rss.peak();
        let stock = stock.map_err(err)?;
        if ours.proof != stock.proof {
            return Err(Error::Mismatch {
                workload,
                size,
                anchor: "winterfell",
            });
        }
        let anchors = [("winterfell-stock", stock_s, stock_rss)];
        let cpu = self.name();
        self.push_all(&workload, size, &cpu, (ours_s, ours_rss), &anchors);

        for i in 0..self.gpus.len() {
            if self.gpus[i].software && !smallest {
                continue;
            }
            let target = &self.gpus[i];
            let before = prover::accel::cpu_fallbacks_total();
            rss.reset();
            let (s, out) = best(
                reps,
                || (),
                |()| prove_on_gpu::<H>(target, request, options),
            );
            let peak = rss.peak();
            let fallbacks = prover::accel::cpu_fallbacks_total().saturating_sub(before);
            let name = if fallbacks == 0 {
                target.name.clone()
            } else {
                format!("{}+{fallbacks} cpu fallbacks", target.name)
            };
            match out {
                Ok(p) if p.proof == stock.proof => {
                    self.push_all(&workload, size, &name, (s, peak), &anchors);
                }
                Ok(_) => {
                    return Err(Error::Mismatch {
                        workload,
                        size,
                        anchor: "winterfell",
                    });
                }
                Err(e) => eprintln!("  {workload} {size} {name}: failed, row skipped: {e}"),
            }
        }
        Ok(())
    }
}

/// The machine's description; `found` lists the GPU backends the suite opened (row names),
/// added to the driver's list of NVIDIA GPUs.
fn machine(simd: String, rss: &Rss, found: Vec<String>) -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    // The NVIDIA driver's GPUs (PCI bus id and model), then every backend the suite opened.
    let mut gpus: Vec<String> = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| {
                    let bus = e.file_name().to_string_lossy().into_owned();
                    let model = std::fs::read_to_string(e.path().join("information"))
                        .ok()
                        .and_then(|s| {
                            s.lines()
                                .find(|l| l.starts_with("Model:"))
                                .and_then(|l| l.split(':').nth(1))
                                .map(|m| m.trim().to_owned())
                        });
                    match model {
                        Some(m) => format!("{bus} {m}"),
                        None => bus,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    for name in found {
        if !gpus.contains(&name) {
            gpus.push(name);
        }
    }
    let mut features = Vec::new();
    if cfg!(target_feature = "avx2") {
        features.push("avx2");
    }
    if cfg!(target_feature = "avx512f") {
        features.push("avx512f");
    }
    if cfg!(target_feature = "bmi2") {
        features.push("bmi2");
    }
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        simd,
        gpus,
        versions: Versions {
            epa: env!("CARGO_PKG_VERSION").into(),
            winterfell: "0.13.1".into(),
            plonky3: "0.3.0".into(),
            profile: if cfg!(debug_assertions) {
                "debug".into()
            } else {
                "release".into()
            },
            target_features: features.join(","),
        },
        peak_rss_method: rss.method(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subgroup_log_finds_the_exponent() {
        let mut rng = ChaCha20Rng::from_entropy();
        for bits in 1..=20u32 {
            let g = BaseElement::get_root_of_unity(bits);
            let k = rng.gen_range(0..1u64 << bits);
            assert_eq!(subgroup_log(g, g.exp(k), bits), Some(k), "2^{bits}");
        }
        // Not in the subgroup of order 2: no exponent.
        assert_eq!(
            subgroup_log(-BaseElement::ONE, BaseElement::new(3), 1),
            None
        );
    }

    #[test]
    fn p3_agrees_on_a_dft_and_catches_one_wrong_value() {
        let mut rng = ChaCha20Rng::from_entropy();
        for log in [1u32, 4, 9] {
            let n = 1usize << log;
            let coeffs: Vec<BaseElement> = (0..n)
                .map(|_| BaseElement::new(rng.gen_range(0..BaseElement::MODULUS)))
                .collect();
            let mut ours = coeffs.clone();
            fft::evaluate_poly(&mut ours, &fft::get_twiddles::<BaseElement>(n));
            let p3 = Radix2DitParallel::<Goldilocks>::default()
                .dft_batch(RowMajorMatrix::new_col(to_p3(&coeffs)))
                .to_row_major_matrix()
                .values;
            assert!(p3_agrees(&p3, 1, n, |r| &ours[r..=r]), "2^{log}");
            let mut wrong = p3.clone();
            let i = rng.gen_range(0..n);
            wrong[i] += Goldilocks::ONE;
            assert!(
                !p3_agrees(&wrong, 1, n, |r| &ours[r..=r]),
                "2^{log}, point {i}"
            );
        }
    }
}
