//! Prove / verify benchmarks of the EPA AIRs, plus a stock-winterfell anchor.
//!
//! * `prove/smt-update/<hash>/<n>` and `verify/...`: batches of 16, 64, 256 random updates on a
//!   depth-32 tree.
//! * `prove/rescue-chain/<hash>/2^k` and `verify/...`: rescue chains with traces of 2^12..2^16
//!   rows (2^(k-3) merges).
//! * `anchor/fib-small/<hash>/2^k`: winterfell's `fib-small` example AIR (2 registers, two
//!   Fibonacci terms per row) re-created here and proved with a plain winterfell `Prover` that
//!   uses only winterfell's default components, for traces of 2^16 and 2^20 rows; the anchor
//!   ties our numbers to stock winterfell on this machine.
//!
//! All use preset `fast-96`. Slow configurations are timed with a clock instead of criterion
//! (see [`CRITERION_MAX`]), printed as `timed:` lines. Before each benchmark, a line `info: <id>: ...` gives the trace
//! size, proof size and conjectured security. Filter with criterion's usual argument, e.g.
//! `cargo bench -p epa-prover --bench prove -- rescue-chain`.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_main};
use epa_prover::envelope::{ProofEnvelope, verify_envelope};
use epa_prover::options::{HashId, Preset};
use epa_prover::registry::{self, ProveRequest};
use epa_prover::workload::{SmtWorkload, seed_word};
use winter_crypto::hashers::{Blake3_256, Rp64_256};
use winter_crypto::{DefaultRandomCoin, ElementHasher, MerkleTree};
use winter_math::fields::f64::BaseElement;
use winter_math::{FieldElement, ToElements};
use winterfell::matrix::ColMatrix;
use winterfell::{
    AcceptableOptions, Air, AirContext, Assertion, AuxRandElements, CompositionPoly,
    CompositionPolyTrace, ConstraintCompositionCoefficients, DefaultConstraintCommitment,
    DefaultConstraintEvaluator, DefaultTraceLde, EvaluationFrame, PartitionOptions, Proof,
    ProofOptions, Prover, StarkDomain, Trace, TraceInfo, TracePolyTable, TraceTable,
    TransitionConstraintDegree,
};

/// Criterion's positional filter, applied before the (slow) setup proofs are made too.
fn wanted(id: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| id.contains(f.as_str()))
}

/// Budget rule that keeps a full run within ~15 minutes on 2 cores: a configuration whose
/// first (setup) proof took less than [`CRITERION_MAX`] is measured by criterion (10 samples);
/// one below [`REPEAT_MAX`] is timed over 3 runs with a clock (first run included, median
/// printed); slower ones are timed once. The `timed:` lines say which.
const CRITERION_MAX: Duration = Duration::from_millis(1500);
/// See [`CRITERION_MAX`].
const REPEAT_MAX: Duration = Duration::from_secs(20);

/// Measures `prove` outside criterion after a first run that took `first` (see
/// [`CRITERION_MAX`]); returns `false` if criterion should measure it instead.
fn timed(id: &str, first: Duration, mut prove: impl FnMut()) -> bool {
    if first < CRITERION_MAX {
        return false;
    }
    let mut runs = vec![first];
    if first < REPEAT_MAX {
        for _ in 0..2 {
            let started = Instant::now();
            prove();
            runs.push(started.elapsed());
        }
    }
    runs.sort_unstable();
    let secs: Vec<String> = runs
        .iter()
        .map(|d| format!("{:.3}", d.as_secs_f64()))
        .collect();
    println!(
        "timed: {id}: median {:.3} s over {} run(s) [{}] (clock, not criterion)",
        runs[runs.len() / 2].as_secs_f64(),
        runs.len(),
        secs.join(", ")
    );
    true
}

/// Prints the trace and proof sizes.
fn info(id: &str, env: &ProofEnvelope) {
    let bytes = env.to_bytes().expect("bench envelopes are within limits");
    let v = verify_envelope(&bytes).expect("bench proofs verify");
    println!(
        "info: {id}: trace {} rows x {} cols, proof {} B (envelope {} B), {} bits",
        v.trace_length,
        v.trace_width,
        v.proof_len,
        bytes.len(),
        v.conjectured_bits
    );
}

fn bench_air(c: &mut Criterion, air: &str, label: &str, request: &ProveRequest) {
    for hash in HashId::ALL {
        let id = format!("{air}/{hash}/{label}");
        if !wanted(&format!("prove/{id}")) && !wanted(&format!("verify/{id}")) {
            continue;
        }
        let started = Instant::now();
        let env =
            registry::prove(request, Preset::Fast96.into(), hash).expect("bench request proves");
        let first = started.elapsed();
        info(&id, &env);
        let prove_once = || {
            registry::prove(request, Preset::Fast96.into(), hash).expect("proves");
        };
        if !timed(&format!("prove/{id}"), first, prove_once) {
            let mut group = c.benchmark_group("prove");
            group
                .sample_size(10)
                .warm_up_time(Duration::from_millis(500));
            group.measurement_time(Duration::from_secs(2));
            group.bench_function(BenchmarkId::new(air, format!("{hash}/{label}")), |b| {
                b.iter(|| registry::prove(request, Preset::Fast96.into(), hash).expect("proves"))
            });
            group.finish();
        }
        let bytes = env.to_bytes().expect("within limits");
        let mut group = c.benchmark_group("verify");
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(200));
        group.measurement_time(Duration::from_secs(1));
        group.bench_function(BenchmarkId::new(air, format!("{hash}/{label}")), |b| {
            b.iter(|| verify_envelope(&bytes).expect("verifies"))
        });
        group.finish();
    }
}

fn smt_update(c: &mut Criterion) {
    for n in [16usize, 64, 256] {
        let mut workload = SmtWorkload::new(32, 0xbe0c_0000 + n as u64).expect("depth 32 is valid");
        // Start from a tree that already holds some keys, as a live shard would.
        workload.next_batch(256).expect("setup batch");
        let witnesses = workload.next_batch(n).expect("random batch");
        let request = ProveRequest::SmtUpdate {
            depth: 32,
            witnesses,
        };
        bench_air(c, "smt-update", &n.to_string(), &request);
    }
}

fn rescue_chain(c: &mut Criterion) {
    for log_rows in 12u32..=16 {
        let request = ProveRequest::RescueChain {
            seed: seed_word(7),
            steps: 1 << (log_rows - 3),
        };
        bench_air(c, "rescue-chain", &format!("2^{log_rows}"), &request);
    }
}

// ANCHOR: winterfell's fib-small example AIR on a plain winterfell prover
// ================================================================================================

struct FibSmallAir {
    context: AirContext<BaseElement>,
    result: BaseElement,
}

impl Air for FibSmallAir {
    type BaseField = BaseElement;
    type PublicInputs = FibInputs;

    fn new(trace_info: TraceInfo, pub_inputs: FibInputs, options: ProofOptions) -> Self {
        let degrees = vec![
            TransitionConstraintDegree::new(1),
            TransitionConstraintDegree::new(1),
        ];
        FibSmallAir {
            context: AirContext::new(trace_info, degrees, 3, options),
            result: pub_inputs.0,
        }
    }

    fn context(&self) -> &AirContext<BaseElement> {
        &self.context
    }

    fn evaluate_transition<E: FieldElement<BaseField = BaseElement> + From<BaseElement>>(
        &self,
        frame: &EvaluationFrame<E>,
        _periodic_values: &[E],
        result: &mut [E],
    ) {
        let (cur, next) = (frame.current(), frame.next());
        // s_{0, i+1} = s_{0, i} + s_{1, i};  s_{1, i+1} = s_{1, i} + s_{0, i+1}
        result[0] = next[0] - (cur[0] + cur[1]);
        result[1] = next[1] - (cur[1] + next[0]);
    }

    fn get_assertions(&self) -> Vec<Assertion<BaseElement>> {
        let last = self.trace_length() - 1;
        vec![
            Assertion::single(0, 0, BaseElement::ONE),
            Assertion::single(1, 0, BaseElement::ONE),
            Assertion::single(1, last, self.result),
        ]
    }
}

#[derive(Clone, Copy)]
struct FibInputs(BaseElement);

impl ToElements<BaseElement> for FibInputs {
    fn to_elements(&self) -> Vec<BaseElement> {
        vec![self.0]
    }
}

fn fib_trace(rows: usize) -> TraceTable<BaseElement> {
    let mut trace = TraceTable::new(2, rows);
    trace.fill(
        |s| {
            s[0] = BaseElement::ONE;
            s[1] = BaseElement::ONE;
        },
        |_, s| {
            s[0] += s[1];
            s[1] += s[0];
        },
    );
    trace
}

struct FibProver<H> {
    options: ProofOptions,
    _hash: core::marker::PhantomData<H>,
}

impl<H: ElementHasher<BaseField = BaseElement> + Send + Sync> Prover for FibProver<H> {
    type BaseField = BaseElement;
    type Air = FibSmallAir;
    type Trace = TraceTable<BaseElement>;
    type HashFn = H;
    type VC = MerkleTree<H>;
    type RandomCoin = DefaultRandomCoin<H>;
    type TraceLde<E: FieldElement<BaseField = BaseElement>> = DefaultTraceLde<E, H, MerkleTree<H>>;
    type ConstraintCommitment<E: FieldElement<BaseField = BaseElement>> =
        DefaultConstraintCommitment<E, H, MerkleTree<H>>;
    type ConstraintEvaluator<'a, E: FieldElement<BaseField = BaseElement>> =
        DefaultConstraintEvaluator<'a, FibSmallAir, E>;

    fn get_pub_inputs(&self, trace: &Self::Trace) -> FibInputs {
        FibInputs(trace.get(1, trace.length() - 1))
    }

    fn options(&self) -> &ProofOptions {
        &self.options
    }

    fn new_trace_lde<E: FieldElement<BaseField = BaseElement>>(
        &self,
        trace_info: &TraceInfo,
        main_trace: &ColMatrix<BaseElement>,
        domain: &StarkDomain<BaseElement>,
        partition_option: PartitionOptions,
    ) -> (Self::TraceLde<E>, TracePolyTable<E>) {
        DefaultTraceLde::new(trace_info, main_trace, domain, partition_option)
    }

    fn build_constraint_commitment<E: FieldElement<BaseField = BaseElement>>(
        &self,
        composition_poly_trace: CompositionPolyTrace<E>,
        num_constraint_composition_columns: usize,
        domain: &StarkDomain<BaseElement>,
        partition_options: PartitionOptions,
    ) -> (Self::ConstraintCommitment<E>, CompositionPoly<E>) {
        DefaultConstraintCommitment::new(
            composition_poly_trace,
            num_constraint_composition_columns,
            domain,
            partition_options,
        )
    }

    fn new_evaluator<'a, E: FieldElement<BaseField = BaseElement>>(
        &self,
        air: &'a FibSmallAir,
        aux_rand_elements: Option<AuxRandElements<E>>,
        composition_coefficients: ConstraintCompositionCoefficients<E>,
    ) -> Self::ConstraintEvaluator<'a, E> {
        DefaultConstraintEvaluator::new(air, aux_rand_elements, composition_coefficients)
    }
}

fn anchor_for<H: ElementHasher<BaseField = BaseElement> + Send + Sync>(
    c: &mut Criterion,
    hash: HashId,
    log_rows: u32,
) {
    if !wanted(&format!("anchor/fib-small/{hash}/2^{log_rows}")) {
        return;
    }
    let options = Preset::Fast96
        .params()
        .to_winterfell()
        .expect("presets are valid");
    let prover = FibProver::<H> {
        options: options.clone(),
        _hash: core::marker::PhantomData,
    };
    let rows = 1usize << log_rows;
    let trace = fib_trace(rows);
    let result = trace.get(1, rows - 1);
    let started = Instant::now();
    let proof: Proof = prover.prove(trace).expect("fib proves");
    let first = started.elapsed();
    let acceptable = AcceptableOptions::OptionSet(vec![options]);
    let id = format!("fib-small/{hash}/2^{log_rows}");
    println!(
        "info: anchor/{id}: trace {rows} rows x 2 cols, proof {} B, {} bits",
        proof.to_bytes().len(),
        proof.conjectured_security::<H>().bits()
    );
    let mut group = c.benchmark_group("anchor");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let prove_once = || {
        prover.prove(fib_trace(rows)).expect("fib proves");
    };
    if !timed(&format!("anchor/{id}/prove"), first, prove_once) {
        group.bench_function(
            BenchmarkId::new("fib-small", format!("{hash}/2^{log_rows}/prove")),
            |b| b.iter(|| prover.prove(fib_trace(rows)).expect("fib proves")),
        );
    }
    group.bench_function(
        BenchmarkId::new("fib-small", format!("{hash}/2^{log_rows}/verify")),
        |b| {
            b.iter(|| {
                winterfell::verify::<FibSmallAir, H, DefaultRandomCoin<H>, MerkleTree<H>>(
                    proof.clone(),
                    FibInputs(result),
                    &acceptable,
                )
                .expect("fib verifies")
            })
        },
    );
    group.finish();
}

fn anchor(c: &mut Criterion) {
    for log_rows in [16u32, 20] {
        anchor_for::<Blake3_256<BaseElement>>(c, HashId::Blake3_256, log_rows);
        anchor_for::<Rp64_256>(c, HashId::Rp64_256, log_rows);
    }
}

fn all(c: &mut Criterion) {
    smt_update(c);
    rescue_chain(c);
    anchor(c);
}

mod group {
    criterion::criterion_group!(benches, super::all);
}
criterion_main!(group::benches);
