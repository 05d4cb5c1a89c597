//! Where a whole proof spends its time: winterfell's own tracing spans (trace commitment,
//! constraint evaluation, constraint commitment, DEEP composition, FRI layers, queries), timed
//! for one proof on the CPU backend, on a GPU backend when one is found, and for stock winterfell.
//!
//! `cargo run --release -p epa-benches --example prove_profile -- [rescue-chain STEPS | smt-update UPDATES] [rp64-256 | blake3-256]`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kernels::CpuBackend;
use prover::accel::{AccelComponents, AccelHash};
use prover::options::{OptionsChoice, Preset};
use prover::prover::DefaultComponents;
use prover::registry::{self, ProveRequest};
use tracing::Subscriber;
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use winter_crypto::hashers::{Blake3_256, Rp64_256};
use winter_math::fields::f64::BaseElement;

/// Wall time per span name, summed over the spans closed.
#[derive(Clone, Default)]
struct Timings(Arc<Mutex<BTreeMap<String, (f64, usize)>>>);

struct Started(Instant);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Timings {
    fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Started(Instant::now()));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(started) = span.extensions().get::<Started>().map(|s| s.0) else {
            return;
        };
        let path = ctx
            .span_scope(&id)
            .map(|scope| {
                scope
                    .from_root()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_default();
        let mut map = self.0.lock().expect("timings lock");
        let e = map.entry(path).or_default();
        e.0 += started.elapsed().as_secs_f64();
        e.1 += 1;
    }
}

fn report(label: &str, total: f64, timings: &Timings) {
    let mut map = timings.0.lock().expect("timings lock");
    println!("{label}: {:.1} ms", total * 1e3);
    for (name, (s, n)) in map.iter() {
        println!(
            "  {:>10.1} ms {:>5.1}%  {name} (x{n})",
            s * 1e3,
            100.0 * s / total
        );
    }
    map.clear();
}

fn run<H: AccelHash>(request: &ProveRequest, timings: &Timings) {
    let options = OptionsChoice::Preset(Preset::Fast96);
    let backend = Arc::new(CpuBackend::new().expect("the CPU backend builds"));
    let name = format!("cpu-{}", backend.isa());
    // Warm-up (twiddles, thread pool).
    registry::prove_with(
        request,
        options,
        AccelComponents::<_, H>::new(Arc::clone(&backend)),
    )
    .expect("proof");
    timings.0.lock().expect("timings lock").clear();
    let t = Instant::now();
    let ours = registry::prove_with(request, options, AccelComponents::<_, H>::new(backend))
        .expect("proof");
    report(
        &format!("ours ({name})"),
        t.elapsed().as_secs_f64(),
        timings,
    );
    if let Ok(cuda) = prover::accel::cuda::shared() {
        let t = Instant::now();
        let p = prover::accel::cuda::prove(request, options, H::ID, Arc::clone(&cuda))
            .expect("cuda proof");
        report("ours (cuda)", t.elapsed().as_secs_f64(), timings);
        assert_eq!(p.proof, ours.proof, "cuda proof differs");
    }
    let t = Instant::now();
    let stock =
        registry::prove_with(request, options, DefaultComponents::<H>::new()).expect("proof");
    report("stock winterfell", t.elapsed().as_secs_f64(), timings);
    assert_eq!(ours.proof, stock.proof, "proofs differ");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let air = args.first().map_or("rescue-chain", String::as_str);
    let size: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let hash = args.get(2).map_or("rp64-256", String::as_str);
    let timings = Timings::default();
    let subscriber = tracing_subscriber::registry().with(timings.clone());
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    let request = epa_benches::example_request(air, size);
    match hash {
        "blake3-256" => run::<Blake3_256<BaseElement>>(&request, &timings),
        _ => run::<Rp64_256>(&request, &timings),
    }
}
