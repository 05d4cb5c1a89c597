//! A backend that fails (or panics) on purpose inside the accelerated prover: every failed
//! step is redone on the CPU backend, counted in `accel::cpu_fallbacks_total`, and the proof
//! bytes still equal stock winterfell's.
//!
//! The fallback counter is process-wide, so this file holds a single test (its own process)
//! and asserts exact counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use epa_prover::accel::{
    AccelComponents, AccelHash, HostRows, cpu_fallbacks_total, last_cpu_fallback,
};
use epa_prover::options::{OptionsChoice, Preset};
use epa_prover::prover::DefaultComponents;
use epa_prover::registry::{self, ProveRequest};
use epa_prover::workload::{SmtWorkload, random_word};
use kernels::{
    Backend, BackendInfo, ColumnMatrix, CpuBackend, Error as KernelError, Isa, RowMatrix,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_crypto::hashers::{Blake3_256, Rp64_256};
use winter_crypto::{Hasher, MerkleTree};
use winter_math::fields::f64::BaseElement;

/// How the mock misbehaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// Every coset LDE returns a device error.
    LdeError,
    /// Every row commitment panics (as a driver bug would).
    CommitPanic,
    /// Downloading rows fails on every second call.
    EveryOtherDownload,
}

/// A test-only mock: the CPU backend with a fault injected into one operation.
struct Faulty {
    cpu: CpuBackend,
    fault: Fault,
    calls: AtomicUsize,
}

impl Faulty {
    fn new(fault: Fault) -> Self {
        Faulty {
            cpu: CpuBackend::with_isa(Isa::Scalar).expect("scalar always builds"),
            fault,
            calls: AtomicUsize::new(0),
        }
    }

    fn device_error(&self, what: &str) -> KernelError {
        KernelError::Gpu {
            adapter: "faulty mock".to_owned(),
            what: what.to_owned(),
            detail: format!("injected fault {:?}", self.fault),
        }
    }
}

impl Backend for Faulty {
    type Columns = ColumnMatrix;
    type Rows = RowMatrix;
    type Tree<H: Hasher> = MerkleTree<H>;

    fn info(&self) -> BackendInfo {
        let mut info = self.cpu.info();
        info.name = "faulty".to_owned();
        info
    }
    fn upload_columns(&self, host: ColumnMatrix) -> Result<ColumnMatrix, KernelError> {
        self.cpu.upload_columns(host)
    }
    fn upload_rows(&self, host: RowMatrix) -> Result<RowMatrix, KernelError> {
        self.cpu.upload_rows(host)
    }
    fn download_columns(&self, c: &ColumnMatrix) -> Result<ColumnMatrix, KernelError> {
        self.cpu.download_columns(c)
    }
    fn download_rows(&self, r: &RowMatrix) -> Result<RowMatrix, KernelError> {
        self.cpu.download_rows(r)
    }
    fn read_rows(
        &self,
        r: &RowMatrix,
        indexes: &[usize],
    ) -> Result<Vec<Vec<BaseElement>>, KernelError> {
        self.cpu.read_rows(r, indexes)
    }
    fn ntt(&self, c: &mut ColumnMatrix) -> Result<(), KernelError> {
        self.cpu.ntt(c)
    }
    fn intt(&self, c: &mut ColumnMatrix) -> Result<(), KernelError> {
        self.cpu.intt(c)
    }
    fn coset_lde(
        &self,
        c: &ColumnMatrix,
        blowup: usize,
        offset: BaseElement,
    ) -> Result<RowMatrix, KernelError> {
        if self.fault == Fault::LdeError {
            return Err(self.device_error("coset LDE"));
        }
        self.cpu.coset_lde(c, blowup, offset)
    }
    fn hash_rows_rp64_256(
        &self,
        r: &RowMatrix,
    ) -> Result<Vec<<Rp64_256 as Hasher>::Digest>, KernelError> {
        self.cpu.hash_rows_rp64_256(r)
    }
    fn merkle_tree_rp64_256(
        &self,
        leaves: Vec<<Rp64_256 as Hasher>::Digest>,
    ) -> Result<MerkleTree<Rp64_256>, KernelError> {
        self.cpu.merkle_tree_rp64_256(leaves)
    }
    fn commit_rows_rp64_256(&self, r: &RowMatrix) -> Result<MerkleTree<Rp64_256>, KernelError> {
        assert!(
            self.fault != Fault::CommitPanic,
            "injected panic in a row commitment"
        );
        self.cpu.commit_rows_rp64_256(r)
    }
    fn commit_rows_blake3(
        &self,
        r: &RowMatrix,
    ) -> Result<MerkleTree<Blake3_256<BaseElement>>, KernelError> {
        assert!(
            self.fault != Fault::CommitPanic,
            "injected panic in a row commitment"
        );
        self.cpu.commit_rows_blake3(r)
    }
    fn download_tree<H: Hasher>(&self, tree: MerkleTree<H>) -> Result<MerkleTree<H>, KernelError> {
        Ok(tree)
    }
}

impl HostRows for Faulty {
    fn take_host_rows(&self, rows: RowMatrix) -> Result<RowMatrix, epa_prover::Error> {
        if self.fault == Fault::EveryOtherDownload
            && self.calls.fetch_add(1, Ordering::Relaxed) % 2 == 1
        {
            return Err(self.device_error("downloading rows").into());
        }
        Ok(rows)
    }
}

/// Proves with the faulty mock and with stock winterfell; returns the fallbacks counted.
fn prove_both<H: AccelHash>(request: &ProveRequest, options: OptionsChoice, fault: Fault) -> u64 {
    let before = cpu_fallbacks_total();
    let ours = registry::prove_with(
        request,
        options,
        AccelComponents::<_, H>::new(Arc::new(Faulty::new(fault))),
    )
    .expect("a failing backend degrades to the CPU, it does not fail the proof");
    let counted = cpu_fallbacks_total() - before;
    let stock =
        registry::prove_with(request, options, DefaultComponents::<H>::new()).expect("stock proof");
    assert_eq!(
        ours.proof,
        stock.proof,
        "{} {:?} with fault {fault:?}: proof bytes differ from stock",
        request.air(),
        H::ID
    );
    counted
}

#[test]
fn failing_steps_are_redone_on_the_cpu_counted_and_bit_exact() {
    let mut rng = fresh_rng();
    let chain = ProveRequest::RescueChain {
        seed: random_word(&mut rng),
        steps: 8,
    };
    let mut workload = SmtWorkload::new(8, rng.r#gen()).expect("workload");
    let smt = ProveRequest::SmtUpdate {
        depth: 8,
        witnesses: workload.next_batch(1).expect("witnesses"),
    };
    assert_eq!(
        last_cpu_fallback(),
        None,
        "no fallback before the first fault"
    );
    let fast: OptionsChoice = Preset::Fast96.into();

    // Two backend steps per proof of these AIRs (main trace, constraint commitment): both fail.
    for request in [&chain, &smt] {
        assert_eq!(prove_both::<Rp64_256>(request, fast, Fault::LdeError), 2);
        assert_eq!(
            prove_both::<Blake3_256<BaseElement>>(request, fast, Fault::LdeError),
            2
        );
    }
    let reason = last_cpu_fallback().expect("a fallback was recorded");
    assert!(
        reason.contains("constraint commitment") && reason.contains("injected fault"),
        "{reason}"
    );

    // A panicking commitment is caught and redone too (Rp64_256 commits rows on the backend):
    // the main trace, the constraint commitment and the FRI layers (one step however many
    // layers: after the first failed layer the others go to the CPU directly).
    assert_eq!(
        prove_both::<Rp64_256>(&chain, Preset::Secure128.into(), Fault::CommitPanic),
        3
    );
    assert!(
        last_cpu_fallback().is_some_and(|r| r.contains("panicked")),
        "{:?}",
        last_cpu_fallback()
    );

    // Only the failing step moves: the main trace's download succeeds, the constraint
    // commitment's fails.
    assert_eq!(
        prove_both::<Rp64_256>(&smt, fast, Fault::EveryOtherDownload),
        1
    );
}

/// A generator from a fresh seed, printed so that a failure can be replayed (`EPA_TEST_SEED`).
fn fresh_rng() -> ChaCha20Rng {
    let seed = std::env::var("EPA_TEST_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("seed {seed} (replay with EPA_TEST_SEED={seed})");
    ChaCha20Rng::seed_from_u64(seed)
}
