//! The AIR registry: prove and verify a named AIR with a hash chosen at run time.
//!
//! A validator names an AIR ([`AirId`], by name such as `"rescue-chain"` or by its envelope
//! wire id), hands over a [`ProveRequest`] (the AIR's inputs and witness), picks options and a
//! hash, and gets a [`ProofEnvelope`]. [`verify`] dispatches an envelope back to the right AIR
//! and hash and runs the stock winterfell verifier.

use core::fmt;
use core::str::FromStr;

use winter_crypto::hashers::{Blake3_256, Rp64_256};
use winter_crypto::{DefaultRandomCoin, ElementHasher, MerkleTree};
use winter_math::fields::f64::BaseElement;
use winterfell::{AcceptableOptions, Air, Proof, ProofOptions};

use kernels::{Backend, BackendInfo, CpuBackend, Isa};

use crate::Error;
use crate::accel::AccelComponents;
use crate::air::rescue_chain::{self, RescueChainAir, RescueChainPublicInputs};
use crate::air::smt_update::{self, SmtUpdateAir, SmtUpdatePublicInputs, SmtUpdateWitness};
use crate::envelope::{ExpectedShape, ProofEnvelope, VerifiedStatement, check_proof_shape};
use crate::options::{HashId, OptionsChoice};
use crate::prover::{DefaultComponents, ProverComponents};
use crate::rescue::STATE_WIDTH;

/// The AIRs this build can prove and verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AirId {
    /// Sparse-Merkle-tree batch updates (`smt-update`), wire id 1.
    SmtUpdate,
    /// The Rescue-Prime hash chain (`rescue-chain`), wire id 2.
    RescueChain,
}

impl AirId {
    /// Every registered AIR, in wire-id order.
    pub const ALL: [AirId; 2] = [AirId::SmtUpdate, AirId::RescueChain];

    /// The registry name.
    pub const fn name(self) -> &'static str {
        match self {
            AirId::SmtUpdate => smt_update::AIR_NAME,
            AirId::RescueChain => rescue_chain::AIR_NAME,
        }
    }

    /// The one-byte identifier used in proof envelopes.
    pub const fn wire_id(self) -> u8 {
        match self {
            AirId::SmtUpdate => 1,
            AirId::RescueChain => 2,
        }
    }

    /// Parses a wire identifier written by [`AirId::wire_id`].
    pub fn from_wire_id(id: u8) -> Result<Self, Error> {
        AirId::ALL
            .into_iter()
            .find(|a| a.wire_id() == id)
            .ok_or_else(|| Error::UnknownAir {
                name: format!("wire id {id}"),
            })
    }
}

impl fmt::Display for AirId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AirId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        AirId::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| Error::UnknownAir { name: s.to_owned() })
    }
}

/// A hash that has an envelope identifier.
pub trait NamedHash: ElementHasher<BaseField = BaseElement> + Send + Sync {
    /// The hash's identifier.
    const ID: HashId;
}

impl NamedHash for Blake3_256<BaseElement> {
    const ID: HashId = HashId::Blake3_256;
}

impl NamedHash for Rp64_256 {
    const ID: HashId = HashId::Rp64_256;
}

/// The inputs and witness of one proving job.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProveRequest {
    /// A rescue chain of `steps` merges from `seed`.
    RescueChain {
        /// The first word of the chain.
        seed: rescue_chain::Word,
        /// Number of merges (a power of two).
        steps: u64,
    },
    /// A batch of sparse-Merkle-tree updates (witnesses from `crypto::smt`'s batch update).
    SmtUpdate {
        /// Tree depth.
        depth: u8,
        /// The updates in order, each with its authentication path and roots.
        witnesses: Vec<SmtUpdateWitness>,
    },
}

impl ProveRequest {
    /// The AIR this request is for.
    pub fn air(&self) -> AirId {
        match self {
            ProveRequest::RescueChain { .. } => AirId::RescueChain,
            ProveRequest::SmtUpdate { .. } => AirId::SmtUpdate,
        }
    }
}

/// A verified statement's public inputs, by AIR.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Statement {
    /// `result = H^steps(seed)` for the rescue chain.
    RescueChain(RescueChainPublicInputs),
    /// `old_root -> new_root` by exactly the listed updates.
    SmtUpdate(SmtUpdatePublicInputs),
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statement::RescueChain(pi) => write!(
                f,
                "rescue-chain: {} merges, seed {} -> result {}",
                pi.steps,
                word_hex(&pi.seed),
                word_hex(&pi.result)
            ),
            Statement::SmtUpdate(pi) => write!(
                f,
                "smt-update: {} updates at depth {}, root {} -> {}",
                pi.updates().len(),
                pi.depth(),
                word_hex(pi.old_root()),
                word_hex(pi.new_root())
            ),
        }
    }
}

/// Formats a word as 4 little-endian u64 limbs in hex, joined by `:`.
pub fn word_hex(w: &[BaseElement; 4]) -> String {
    w.iter()
        .map(|e| format!("{:016x}", e.as_int()))
        .collect::<Vec<_>>()
        .join(":")
}

/// Which prover components [`prove_on`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProverBackend {
    /// The accelerated components on the CPU kernels ([`crate::accel::AccelComponents`] over
    /// `kernels::CpuBackend`, instruction set from the CPU or `EPA_SIMD`): the default.
    #[default]
    Cpu,
    /// Winterfell's stock components (the reference; same proof bytes).
    Stock,
    /// The accelerated components on the wgpu kernels (`kernels::WgpuBackend`, the
    /// process's shared device, see [`shared_wgpu`]); a failing step is redone on the CPU
    /// kernels and counted in [`crate::accel::cpu_fallbacks_total`].
    #[cfg(feature = "wgpu")]
    Wgpu,
    /// The accelerated components on the CUDA kernels (`kernels::CudaBackend`, the process's
    /// shared device, see [`crate::accel::cuda::shared`]). Without a usable CUDA driver,
    /// device or NVRTC the whole proof runs on the CPU kernels instead (the design's rule: a
    /// failing GPU degrades to the CPU, it does not fail the job), counted in
    /// [`crate::accel::cpu_fallbacks_total`]; a failing step on an open device is redone on
    /// the CPU kernels the same way. The proof bytes are the same either way.
    Cuda,
}

impl ProverBackend {
    /// The name used in the configuration's `[backends] allowed` list and in logs: `cpu`,
    /// `stock`, `wgpu` or `cuda`.
    pub const fn name(self) -> &'static str {
        match self {
            ProverBackend::Cpu => "cpu",
            ProverBackend::Stock => "stock",
            #[cfg(feature = "wgpu")]
            ProverBackend::Wgpu => "wgpu",
            ProverBackend::Cuda => "cuda",
        }
    }
}

impl fmt::Display for ProverBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A prover backend that is usable on this host, with what its kernels backend reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbedBackend {
    /// The prover backend.
    pub backend: ProverBackend,
    /// Its kernels backend: name, device (adapter name, driver, API), memory, capabilities.
    pub info: BackendInfo,
    /// A software implementation of a GPU API on the CPU (such as Mesa's lavapipe): usable
    /// and bit-exact, but slower than the CPU kernels, so [`pick_backend`] does not prefer it.
    pub software: bool,
}

/// The prover backends usable on this host, in preference order from the least preferred:
/// `cpu` always (the widest instruction set of this CPU, or `EPA_SIMD` when it is valid), then
/// `wgpu` when an adapter with 64-bit shader integers (`SHADER_INT64`) opens, then `cuda`
/// when [`crate::accel::cuda::shared`] opens (a CUDA driver, device 0 and NVRTC; the kernels
/// are compiled there). Opening a device here also caches it for [`shared_wgpu`] and
/// [`crate::accel::cuda::shared`], so probing at start-up costs each device creation once and
/// later users of those functions get the probed device.
pub fn probe() -> Vec<ProbedBackend> {
    let cpu = CpuBackend::new().or_else(|_| CpuBackend::with_isa(Isa::best()));
    let mut out = Vec::new();
    if let Ok(cpu) = cpu {
        out.push(ProbedBackend {
            backend: ProverBackend::Cpu,
            info: cpu.info(),
            software: false,
        });
    }
    #[cfg(feature = "wgpu")]
    if let Ok(w) = shared_wgpu() {
        out.push(ProbedBackend {
            backend: ProverBackend::Wgpu,
            info: w.info(),
            software: w.is_software(),
        });
    }
    if let Ok(c) = crate::accel::cuda::shared() {
        out.push(ProbedBackend {
            backend: ProverBackend::Cuda,
            info: c.info(),
            software: false,
        });
    }
    out
}

/// Picks the prover backend from the configuration's allowed names (`[backends] allowed`:
/// `cpu`, `wgpu`, `cuda`) and what [`probe`] found: the most preferred backend that is
/// allowed, present and not a software GPU (see [`ProbedBackend::software`]), in the order
/// cuda > wgpu > cpu, and [`ProverBackend::Cpu`] when none is (the CPU kernels are the
/// fallback of every configuration). Unknown names are ignored (the configuration crate
/// rejects them when it loads the file).
pub fn pick_backend<S: AsRef<str>>(allowed: &[S], probed: &[ProbedBackend]) -> ProverBackend {
    let is_allowed = |name: &str| allowed.iter().any(|a| a.as_ref().trim() == name);
    // Preference order, most preferred first.
    let order: &[ProverBackend] = &[
        ProverBackend::Cuda,
        #[cfg(feature = "wgpu")]
        ProverBackend::Wgpu,
        ProverBackend::Cpu,
    ];
    order
        .iter()
        .copied()
        .find(|b| is_allowed(b.name()) && probed.iter().any(|p| p.backend == *b && !p.software))
        .unwrap_or(ProverBackend::Cpu)
}

/// The process's wgpu kernels backend: opened on first use (the best adapter with
/// `SHADER_INT64`, see `kernels::WgpuBackend::new`) and shared by every later proof, since
/// opening a device and compiling its shaders costs far more than a small proof. A failed
/// open is not cached, and a lost device (driver reset, [`kernels::WgpuBackend::destroy`]) is
/// replaced by a freshly opened one: the next call tries again.
#[cfg(feature = "wgpu")]
pub fn shared_wgpu() -> Result<std::sync::Arc<kernels::WgpuBackend>, Error> {
    use std::sync::{Arc, Mutex};
    static SHARED: Mutex<Option<Arc<kernels::WgpuBackend>>> = Mutex::new(None);
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = slot.as_ref().filter(|b| !b.is_lost()) {
        return Ok(Arc::clone(b));
    }
    let b = Arc::new(kernels::WgpuBackend::new()?);
    *slot = Some(Arc::clone(&b));
    Ok(b)
}

/// Proves `request` with the default backend ([`ProverBackend::Cpu`], the accelerated CPU
/// kernels) and the hash `hash`. The proof bytes equal those of [`prove_stock`].
pub fn prove(
    request: &ProveRequest,
    options: OptionsChoice,
    hash: HashId,
) -> Result<ProofEnvelope, Error> {
    prove_on(request, options, hash, ProverBackend::default())
}

/// Proves `request` with the components of `backend` and the hash `hash`. A GPU backend
/// whose device does not open (no adapter, no CUDA driver) proves on the CPU kernels instead
/// and counts one [`crate::accel::cpu_fallbacks_total`]; the proof bytes are the same.
pub fn prove_on(
    request: &ProveRequest,
    options: OptionsChoice,
    hash: HashId,
    backend: ProverBackend,
) -> Result<ProofEnvelope, Error> {
    match (backend, hash) {
        (ProverBackend::Stock, _) => prove_stock(request, options, hash),
        (ProverBackend::Cpu, HashId::Blake3_256) => prove_with(
            request,
            options,
            AccelComponents::<_, Blake3_256<BaseElement>>::cpu()?,
        ),
        (ProverBackend::Cpu, HashId::Rp64_256) => {
            prove_with(request, options, AccelComponents::<_, Rp64_256>::cpu()?)
        }
        #[cfg(feature = "wgpu")]
        (ProverBackend::Wgpu, _) => match shared_wgpu() {
            Ok(gpu) => prove_on_wgpu(request, options, hash, gpu),
            Err(e) => {
                // No device to start with: the whole proof runs on the CPU kernels.
                crate::accel::count_cpu_fallback("opening the wgpu device", &e.to_string());
                prove_on(request, options, hash, ProverBackend::Cpu)
            }
        },
        (ProverBackend::Cuda, _) => match crate::accel::cuda::shared() {
            Ok(gpu) => crate::accel::cuda::prove(request, options, hash, gpu),
            Err(e) => {
                // No driver, device or NVRTC: the whole proof runs on the CPU kernels.
                crate::accel::count_cpu_fallback("opening the CUDA device", &e.to_string());
                prove_on(request, options, hash, ProverBackend::Cpu)
            }
        },
    }
}

/// Proves `request` on a given wgpu kernels backend with the hash `hash` (failing steps are
/// redone on the CPU kernels; the proof bytes equal those of [`prove_stock`]).
#[cfg(feature = "wgpu")]
pub fn prove_on_wgpu(
    request: &ProveRequest,
    options: OptionsChoice,
    hash: HashId,
    gpu: std::sync::Arc<kernels::WgpuBackend>,
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

/// Proves `request` with winterfell's default CPU components and the hash `hash`.
pub fn prove_stock(
    request: &ProveRequest,
    options: OptionsChoice,
    hash: HashId,
) -> Result<ProofEnvelope, Error> {
    match hash {
        HashId::Blake3_256 => prove_with(
            request,
            options,
            DefaultComponents::<Blake3_256<BaseElement>>::new(),
        ),
        HashId::Rp64_256 => prove_with(request, options, DefaultComponents::<Rp64_256>::new()),
    }
}

/// Proves `request` with the given backend components (their hash names the envelope's hash).
pub fn prove_with<C>(
    request: &ProveRequest,
    options: OptionsChoice,
    components: C,
) -> Result<ProofEnvelope, Error>
where
    C: ProverComponents,
    C::HashFn: NamedHash,
{
    let wf_options = options.params().to_winterfell()?;
    let (proof, public_inputs) = match request {
        ProveRequest::RescueChain { seed, steps } => {
            let (proof, pi) = rescue_chain::prove(*seed, *steps, wf_options, components)?;
            (proof, pi.to_bytes())
        }
        ProveRequest::SmtUpdate { depth, witnesses } => {
            let (proof, pi) = smt_update::prove(*depth, witnesses, wf_options, components)?;
            (proof, pi.to_bytes())
        }
    };
    Ok(ProofEnvelope {
        air: request.air(),
        hash: <C::HashFn as NamedHash>::ID,
        options,
        public_inputs,
        proof: proof.to_bytes(),
    })
}

/// Verifies a decoded envelope with the stock winterfell verifier (see [`crate::envelope`]).
pub fn verify(envelope: &ProofEnvelope) -> Result<VerifiedStatement, Error> {
    let options = envelope.options.params().to_winterfell()?;
    let (statement, shape) = match envelope.air {
        AirId::RescueChain => {
            let pi = RescueChainPublicInputs::from_bytes(&envelope.public_inputs)?;
            let shape = ExpectedShape {
                air: rescue_chain::AIR_NAME,
                width: STATE_WIDTH,
                trace_length: pi.trace_length(),
                options: options.clone(),
            };
            verify_air::<RescueChainAir>(&shape, envelope.hash, &envelope.proof, pi)?;
            (Statement::RescueChain(pi), shape)
        }
        AirId::SmtUpdate => {
            let pi = SmtUpdatePublicInputs::from_bytes(&envelope.public_inputs)?;
            let shape = ExpectedShape {
                air: smt_update::AIR_NAME,
                width: smt_update::TRACE_WIDTH,
                trace_length: pi.trace_length(),
                options: options.clone(),
            };
            verify_air::<SmtUpdateAir>(&shape, envelope.hash, &envelope.proof, pi.clone())?;
            (Statement::SmtUpdate(pi), shape)
        }
    };
    Ok(VerifiedStatement {
        air: envelope.air,
        hash: envelope.hash,
        options: envelope.options,
        conjectured_bits: envelope.options.params().conjectured_bits(128),
        statement,
        proof_len: envelope.proof.len(),
        trace_length: shape.trace_length,
        trace_width: shape.width,
    })
}

/// Shape-checks, decodes and verifies `proof_bytes` for AIR `A` with hash `hash`.
pub(crate) fn verify_air<A>(
    shape: &ExpectedShape,
    hash: HashId,
    proof_bytes: &[u8],
    pub_inputs: A::PublicInputs,
) -> Result<(), Error>
where
    A: Air<BaseField = BaseElement>,
    A::PublicInputs: Send,
{
    check_proof_shape(proof_bytes, shape)?;
    let air = shape.air;
    let acceptable = AcceptableOptions::OptionSet(vec![shape.options.clone()]);
    // Last resort (see the module docs of `envelope`): winterfell may still panic on data that
    // passed the shape check; such a proof is invalid, never a crash.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let proof = Proof::from_bytes(proof_bytes).map_err(|e| Error::MalformedProof {
            air,
            reason: e.to_string(),
        })?;
        let result = match hash {
            HashId::Blake3_256 => {
                stock_verify::<A, Blake3_256<BaseElement>>(proof, pub_inputs, &acceptable)
            }
            HashId::Rp64_256 => stock_verify::<A, Rp64_256>(proof, pub_inputs, &acceptable),
        };
        result.map_err(|source| Error::Rejected { air, source })
    }));
    outcome.unwrap_or(Err(Error::VerifierPanicked { air }))
}

fn stock_verify<A, H>(
    proof: Proof,
    pub_inputs: A::PublicInputs,
    acceptable: &AcceptableOptions,
) -> Result<(), winterfell::VerifierError>
where
    A: Air<BaseField = BaseElement>,
    H: ElementHasher<BaseField = BaseElement>,
{
    winterfell::verify::<A, H, DefaultRandomCoin<H>, MerkleTree<H>>(proof, pub_inputs, acceptable)
}

/// The winterfell options of a choice (validated).
pub fn winterfell_options(options: OptionsChoice) -> Result<ProofOptions, Error> {
    options.params().to_winterfell()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probed(backends: &[ProverBackend]) -> Vec<ProbedBackend> {
        let info = CpuBackend::with_isa(Isa::Scalar)
            .expect("scalar always builds")
            .info();
        backends
            .iter()
            .map(|&backend| ProbedBackend {
                backend,
                info: info.clone(),
                software: false,
            })
            .collect()
    }

    #[test]
    fn pick_prefers_the_best_allowed_and_present_backend() {
        let cpu_only = probed(&[ProverBackend::Cpu]);
        assert_eq!(
            pick_backend(&["cpu", "wgpu", "cuda"], &cpu_only),
            ProverBackend::Cpu
        );
        assert_eq!(pick_backend::<&str>(&[], &cpu_only), ProverBackend::Cpu);
        assert_eq!(pick_backend(&["cuda"], &[]), ProverBackend::Cpu);
        #[cfg(feature = "wgpu")]
        {
            let both = probed(&[ProverBackend::Cpu, ProverBackend::Wgpu]);
            assert_eq!(
                pick_backend(&["cpu", "wgpu", "cuda"], &both),
                ProverBackend::Wgpu
            );
            assert_eq!(pick_backend(&[" wgpu ", "cpu"], &both), ProverBackend::Wgpu);
            assert_eq!(pick_backend(&["cpu", "cuda"], &both), ProverBackend::Cpu);
            assert_eq!(pick_backend(&["cpu", "opencl"], &both), ProverBackend::Cpu);
            // A software GPU (lavapipe) is never preferred to the CPU kernels.
            let mut lavapipe = both.clone();
            lavapipe[1].software = true;
            assert_eq!(
                pick_backend(&["cpu", "wgpu"], &lavapipe),
                ProverBackend::Cpu
            );
            // cuda > wgpu > cpu, each only when allowed and present.
            let all = probed(&[ProverBackend::Cpu, ProverBackend::Wgpu, ProverBackend::Cuda]);
            assert_eq!(
                pick_backend(&["cpu", "wgpu", "cuda"], &all),
                ProverBackend::Cuda
            );
            assert_eq!(pick_backend(&["cpu", "wgpu"], &all), ProverBackend::Wgpu);
            let mut lavapipe_and_cuda = all.clone();
            lavapipe_and_cuda[1].software = true;
            assert_eq!(
                pick_backend(&["cpu", "wgpu"], &lavapipe_and_cuda),
                ProverBackend::Cpu
            );
        }
        let cuda = probed(&[ProverBackend::Cpu, ProverBackend::Cuda]);
        assert_eq!(pick_backend(&["cpu", "cuda"], &cuda), ProverBackend::Cuda);
        assert_eq!(pick_backend(&["cuda", "cpu"], &cuda), ProverBackend::Cuda);
        assert_eq!(pick_backend(&["cpu", "wgpu"], &cuda), ProverBackend::Cpu);
        assert_eq!(pick_backend(&["cpu"], &cuda), ProverBackend::Cpu);
        assert_eq!(ProverBackend::Cuda.name(), "cuda");
        assert_eq!(ProverBackend::Cuda.to_string(), "cuda");
    }

    /// `probe` lists `cuda` exactly when the process's CUDA backend opens. Without a driver
    /// (every machine of the ordinary test run) it is absent, and a proof asked of the CUDA
    /// backend falls back to the CPU kernels (counted), with the stock proof's bytes.
    #[test]
    fn cuda_is_probed_only_with_a_driver_and_falls_back_without_one() {
        use rand::{Rng, SeedableRng};
        let opens = crate::accel::cuda::shared();
        let listed = probe()
            .iter()
            .any(|p| p.backend == ProverBackend::Cuda && !p.software);
        assert_eq!(listed, opens.is_ok(), "{opens:?}");
        let Err(err) = opens else {
            // A CUDA machine: the GPU suite's tests/accel_cuda.rs checks its proofs.
            return;
        };
        assert!(
            matches!(err, Error::Backend(kernels::Error::NoCuda { .. })),
            "without a driver the open fails with the typed NoCuda error, got {err:?}"
        );
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(rand::random());
        let seed: rescue_chain::Word = core::array::from_fn(|_| BaseElement::new(rng.r#gen()));
        let request = ProveRequest::RescueChain { seed, steps: 8 };
        let options = OptionsChoice::Preset(crate::options::Preset::Fast96);
        let before = crate::accel::cpu_fallbacks_total();
        let on_cuda = prove_on(&request, options, HashId::Rp64_256, ProverBackend::Cuda)
            .expect("falls back to the CPU kernels");
        assert!(crate::accel::cpu_fallbacks_total() > before);
        let fallback = crate::accel::last_cpu_fallback().unwrap_or_default();
        assert!(!fallback.is_empty());
        let stock = prove_stock(&request, options, HashId::Rp64_256).expect("stock proves");
        assert_eq!(on_cuda.proof, stock.proof);
        assert_eq!(on_cuda.public_inputs, stock.public_inputs);
        verify(&on_cuda).expect("the fallback proof verifies");
    }

    #[test]
    fn probe_always_lists_the_cpu_first() {
        let found = probe();
        assert_eq!(found.first().map(|p| p.backend), Some(ProverBackend::Cpu));
        assert!(found[0].info.capabilities.merkle_blake3);
        assert_eq!(ProverBackend::default(), ProverBackend::Cpu);
        assert_eq!(ProverBackend::Cpu.to_string(), "cpu");
    }
}
