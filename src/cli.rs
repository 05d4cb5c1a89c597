//! The `epa` command line.
//!
//! * `epa prove --air smt-update --updates 64 [--depth 32] [--preset fast-96] [--hash rp64-256]
//!   [--seed N] --out p.bin` proves a random valid batch drawn from an in-memory sparse Merkle
//!   tree; `epa prove --air rescue-chain --steps 4096 ... --out p.bin` proves a hash chain.
//! * `epa verify p.bin [--min-security BITS]` verifies a proof envelope with the stock
//!   winterfell verifier and prints the statement.
//! * `epa demo [--batches N] [--txs M]` runs the whole appliance on loopback: a simulated
//!   aggregator sends N encrypted batches of M transactions over QUIC, a simulated validator
//!   subscribes and verifies every commitment and proof; a summary with latency, throughput
//!   and time per stage follows.
//! * `epa run --config FILE` runs the appliance until SIGINT/SIGTERM, then drains.
//! * `epa keys generate --out DIR [--name NAME]` writes ML-DSA-65 and ML-KEM-768 key files.
//! * `epa config check FILE` validates a configuration (exit status 0 or 1);
//!   `epa config show --effective [--config FILE]` prints it with defaults and `EPA_…`
//!   environment overrides applied and secrets redacted.
//! * `epa doctor [--json] [--config FILE]` checks the host (see [`crate::doctor`]).
//! * `epa bench --suite kernels [--quick] [--json PATH]` times our kernels and proofs against
//!   their anchors (winter-math, Plonky3 `p3-dft`, winter-crypto, stock winterfell) side by
//!   side and prints a table (see the `epa-benches` crate); `epa bench --suite kem` times
//!   ML-KEM-768 batch decapsulation against libcrux and aws-lc-rs.
//! * `epa submit ...` signs and sends batches of random transactions to a running appliance;
//!   `epa subscribe ...` prints its verified commitments. Both authenticate the connection with
//!   an ML-DSA-65 tenant key (`submit --key`, the aggregator's; `subscribe --key`, a
//!   validator's), as `epa run` requires by default (`quic.require_authentication`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::appliance::demo as epa_demo;
use clap::{Args, Parser, Subcommand};
use prover::envelope::{VerifiedStatement, verify_envelope_min_security};
use prover::options::{HashId, OptionsChoice, Preset};
use prover::registry::{self, AirId, ProveRequest, Statement, word_hex};
use prover::workload::{SmtWorkload, seed_word};

/// EPA, the Ecliptica Prover Appliance.
#[derive(Debug, Parser)]
#[command(name = "epa", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prove a random valid workload of a named AIR and write the proof envelope.
    Prove(ProveArgs),
    /// Verify a proof envelope with the stock winterfell verifier.
    Verify(VerifyArgs),
    /// Run the whole appliance on loopback with a simulated aggregator and validator.
    Demo(DemoArgs),
    /// Run the appliance from a configuration file until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Key management.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Sign and send batches of random transactions to a running appliance.
    Submit(SubmitArgs),
    /// Print the verified commitments of a running appliance.
    Subscribe(SubscribeArgs),
    /// Check or show a configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check that this host is ready to prove; prints pass / warn / fail with the fix for each.
    Doctor(DoctorArgs),
    /// Time our kernels and proofs against their anchors; print a table, optionally JSON.
    Bench(BenchArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Parse and validate FILE (with `EPA_…` overrides); exit status 0 when usable.
    Check {
        /// The configuration file.
        file: PathBuf,
    },
    /// Print the configuration the appliance would run with (secrets redacted).
    Show {
        /// Apply defaults and `EPA_…` environment overrides (the only mode; kept explicit).
        #[arg(long)]
        effective: bool,
        /// The configuration file (default: none, only defaults and overrides).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct DoctorArgs {
    /// Print JSON for fleet tooling.
    #[arg(long)]
    json: bool,
    /// The configuration whose data dir, backends and key files to check.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Root of the file system to inspect (to check a captured host tree).
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

/// Options and hash shared by the proving commands.
#[derive(Debug, Args)]
struct ProofChoice {
    /// Options preset: `fast-96` or `secure-128`.
    #[arg(long, default_value = "fast-96")]
    preset: Preset,
    /// Commitment hash: `blake3-256` or `rp64-256`.
    #[arg(long, default_value = "rp64-256")]
    hash: HashId,
    /// Seed of the random workload (same seed, same proof).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Args)]
struct ProveArgs {
    /// The AIR: `smt-update` or `rescue-chain`.
    #[arg(long)]
    air: AirId,
    /// smt-update: number of updates in the batch.
    #[arg(long, default_value_t = 64)]
    updates: usize,
    /// smt-update: tree depth.
    #[arg(long, default_value_t = 32)]
    depth: u8,
    /// rescue-chain: number of chained merges (a power of two; the trace has 8 rows per merge).
    #[arg(long, default_value_t = 4096)]
    steps: u64,
    #[command(flatten)]
    choice: ProofChoice,
    /// Where to write the proof envelope.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The proof envelope file.
    file: PathBuf,
    /// Refuse proofs below this conjectured security (bits).
    #[arg(long, default_value_t = 0)]
    min_security: u32,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Number of batches the aggregator sends.
    #[arg(long, default_value_t = 8)]
    batches: usize,
    /// Transactions per batch.
    #[arg(long, default_value_t = 16)]
    txs: usize,
    /// Depth of the shard's tree.
    #[arg(long, default_value_t = 32)]
    depth: u8,
    /// Options preset: `fast-96` or `secure-128`.
    #[arg(long, default_value = "fast-96")]
    preset: Preset,
    /// Proof commitment hash: `blake3-256` (default here: the demo finishes in seconds) or
    /// `rp64-256` (about 10x slower to prove, cheaper to verify inside a STARK).
    #[arg(long, default_value = "blake3-256")]
    hash: HashId,
    /// Seed of the keys and transactions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stage worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The appliance configuration (TOML).
    #[arg(long)]
    config: PathBuf,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Write `NAME.mldsa65.{sk,pk}` and `NAME.mlkem768.{dk,ek}` (secrets with mode 0600).
    Generate {
        /// Directory to write to (created if absent).
        #[arg(long)]
        out: PathBuf,
        /// File name prefix.
        #[arg(long, default_value = "epa")]
        name: String,
    },
}

/// Where the appliance is and how to trust it.
#[derive(Debug, Args)]
struct Remote {
    /// The appliance's QUIC address.
    #[arg(long)]
    addr: std::net::SocketAddr,
    /// The appliance's TLS certificate fingerprint (printed by `epa run`).
    #[arg(long)]
    fingerprint: String,
}

#[derive(Debug, Args)]
struct SubmitArgs {
    #[command(flatten)]
    remote: Remote,
    /// The aggregator's ML-DSA-65 secret key file (`*.mldsa65.sk`): signs the batches and
    /// authenticates the connection.
    #[arg(long)]
    key: PathBuf,
    /// The shard's ML-KEM-768 encapsulation key file (`*.mlkem768.ek`).
    #[arg(long)]
    shard_key: PathBuf,
    /// The appliance's ML-DSA-65 public key file (to verify the commitments).
    #[arg(long)]
    appliance_key: PathBuf,
    /// The shard.
    #[arg(long, default_value_t = 0)]
    shard: u32,
    /// The aggregator's last accepted sequence number on the shard (0 for none).
    #[arg(long, default_value_t = 0)]
    last_seq: u64,
    /// Batches to send.
    #[arg(long, default_value_t = 1)]
    batches: usize,
    /// Transactions per batch.
    #[arg(long, default_value_t = 16)]
    txs: usize,
    /// The appliance's tree depth (`prover.smt_depth`).
    #[arg(long, default_value_t = 32)]
    depth: u8,
    /// Seed of the random transactions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Args)]
struct SubscribeArgs {
    #[command(flatten)]
    remote: Remote,
    /// The appliance's ML-DSA-65 public key file.
    #[arg(long)]
    appliance_key: PathBuf,
    /// A tenant's ML-DSA-65 secret key file (`*.mldsa65.sk`) that authenticates the
    /// connection; required unless the appliance runs with `quic.require_authentication = false`.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Shards (default: every shard the appliance serves).
    #[arg(long)]
    shard: Vec<u32>,
    /// First height to print.
    #[arg(long, default_value_t = 1)]
    from_height: u64,
    /// Stop after this many commitments (default: run until interrupted).
    #[arg(long)]
    count: Option<u64>,
}

/// Arguments of `epa bench`.
#[derive(Debug, Args)]
struct BenchArgs {
    /// The suite to run (`kernels` or `kem`).
    #[arg(long, default_value = "kernels")]
    suite: String,
    /// Small sizes (about a minute).
    #[arg(long)]
    quick: bool,
    /// Write the report as JSON to PATH too.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

fn bench(args: &BenchArgs) -> Result<()> {
    // EPA_BENCH_TINY=1: test-only sizes (seconds even in a debug build).
    let options = if std::env::var_os("EPA_BENCH_TINY").is_some() {
        benches::SuiteOptions::tiny()
    } else if args.quick {
        benches::SuiteOptions::quick()
    } else {
        benches::SuiteOptions::full()
    };
    let report = benches::run_suite(&args.suite, &options)
        .with_context(|| format!("running bench suite `{}`", args.suite))?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json())
            .with_context(|| format!("writing the bench report to {}", path.display()))?;
    }
    Ok(())
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Prove(args) => prove(&args),
        Command::Verify(args) => verify(&args),
        Command::Demo(args) => demo(&args),
        Command::Run(args) => run(&args),
        Command::Keys(KeysCommand::Generate { out, name }) => keys_generate(&out, &name),
        Command::Submit(args) => submit(&args),
        Command::Subscribe(args) => subscribe(&args),
        Command::Config(cmd) => config_command(&cmd),
        Command::Doctor(args) => return doctor(&args),
        Command::Bench(args) => bench(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn prove(args: &ProveArgs) -> Result<()> {
    let choice = &args.choice;
    let request = match args.air {
        AirId::SmtUpdate => {
            let mut workload = SmtWorkload::new(args.depth, choice.seed)?;
            let witnesses = workload.next_batch(args.updates)?;
            ProveRequest::SmtUpdate {
                depth: args.depth,
                witnesses,
            }
        }
        AirId::RescueChain => ProveRequest::RescueChain {
            seed: seed_word(choice.seed),
            steps: args.steps,
        },
        other => bail!("proving `{other}` from the command line is not supported"),
    };
    let options = OptionsChoice::Preset(choice.preset);
    let started = Instant::now();
    let envelope = registry::prove(&request, options, choice.hash)
        .with_context(|| format!("proving {}", args.air))?;
    let prove_time = started.elapsed();
    let bytes = envelope.to_bytes()?;
    std::fs::write(&args.out, &bytes)
        .with_context(|| format!("writing the proof to {}", args.out.display()))?;

    let started = Instant::now();
    let verified = registry::verify(&envelope).context("self-check of the new proof")?;
    let verify_time = started.elapsed();
    println!(
        "proved     {} with {} / {}",
        verified.air, choice.preset, choice.hash
    );
    print_statement(&verified);
    println!(
        "proof      {} bytes (envelope {} bytes) -> {}",
        verified.proof_len,
        bytes.len(),
        args.out.display()
    );
    println!("prove time {}", fmt_duration(prove_time));
    println!(
        "verify     {} (stock winterfell verifier)",
        fmt_duration(verify_time)
    );
    Ok(())
}

fn verify(args: &VerifyArgs) -> Result<()> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("reading the proof from {}", args.file.display()))?;
    let started = Instant::now();
    let outcome = verify_envelope_min_security(&bytes, args.min_security);
    let verify_time = started.elapsed();
    match outcome {
        Ok(verified) => {
            println!(
                "VALID      {} proof ({} / {})",
                verified.air,
                verified.options.name(),
                verified.hash
            );
            print_statement(&verified);
            println!(
                "proof      {} bytes (envelope {} bytes)",
                verified.proof_len,
                bytes.len()
            );
            println!(
                "verify     {} (stock winterfell verifier)",
                fmt_duration(verify_time)
            );
            Ok(())
        }
        Err(e) => bail!("INVALID proof {}: {e}", args.file.display()),
    }
}

fn print_statement(v: &VerifiedStatement) {
    match &v.statement {
        Statement::SmtUpdate(pi) => {
            println!(
                "statement  {} updates at depth {}",
                pi.updates().len(),
                pi.depth()
            );
            println!("old root   {}", word_hex(pi.old_root()));
            println!("new root   {}", word_hex(pi.new_root()));
        }
        Statement::RescueChain(pi) => {
            println!("statement  {} chained Rp64_256 merges", pi.steps);
            println!("seed       {}", word_hex(&pi.seed));
            println!("result     {}", word_hex(&pi.result));
        }
        other => println!("statement  {other}"),
    }
    println!(
        "trace      {} rows x {} columns",
        v.trace_length, v.trace_width
    );
    println!("security   {} bits (conjectured)", v.conjectured_bits);
}

/// Nearest-rank percentile of a non-empty sample.
fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort_unstable();
    let rank = (p * samples.len()).div_ceil(100).clamp(1, samples.len());
    samples[rank - 1]
}

fn fmt_duration(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.3} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn demo(args: &DemoArgs) -> Result<()> {
    use epa_demo::{DemoEvent, DemoOptions, run_demo};
    if args.batches == 0 || args.txs == 0 {
        bail!("--batches and --txs must be at least 1");
    }
    let opts = DemoOptions {
        batches: args.batches,
        txs: args.txs,
        depth: args.depth,
        preset: args.preset,
        hash: args.hash,
        seed: args.seed,
        workers: args
            .workers
            .unwrap_or_else(|| DemoOptions::default().workers),
        ..DemoOptions::default()
    };
    println!(
        "demo: appliance on loopback, {} batches x {} txs, depth {}, {} / {}, {} workers",
        opts.batches, opts.txs, opts.depth, opts.preset, opts.hash, opts.workers
    );
    let n = opts.batches;
    let report = runtime()?.block_on(run_demo(&opts, |e| match e {
        DemoEvent::Started { addr, fingerprint } => {
            println!("appliance  QUIC {addr}, certificate {fingerprint}");
        }
        DemoEvent::Accepted { batch, job, txs } => {
            println!("batch {batch:>4}/{n}: accepted as job #{job} ({txs} txs, durable)");
        }
        DemoEvent::Verified {
            height,
            old_root,
            new_root,
            proof_bytes,
            latency,
        } => println!(
            "batch {height:>4}/{n}: root {old_root}.. -> {new_root}..  proof {proof_bytes} B  \
             latency {}  verified",
            fmt_duration(*latency)
        ),
        DemoEvent::Failed { height, reason } => {
            println!("batch {height:>4}/{n}: FAILED: {reason}");
        }
    }))?;
    let mut latencies = report.latencies.clone();
    println!("summary");
    println!("  batches         {}", report.batches);
    println!("  transactions    {}", report.txs);
    println!("  proofs verified {}/{}", report.verified, report.batches);
    if !latencies.is_empty() {
        println!(
            "  latency         p50 {}  p99 {} (submit -> verified)",
            fmt_duration(percentile(&mut latencies, 50)),
            fmt_duration(percentile(&mut latencies, 99))
        );
    }
    println!(
        "  throughput      {:.1} tx/s, {:.2} batches/s over {}",
        report.txs as f64 / report.elapsed.as_secs_f64().max(1e-9),
        report.verified as f64 / report.elapsed.as_secs_f64().max(1e-9),
        fmt_duration(report.elapsed)
    );
    for (stage, l) in &report.snapshot.stage_latency {
        println!(
            "  stage {:<9} {:>4} runs  mean {}  max {}  total {}",
            stage.name(),
            l.count,
            fmt_duration(l.mean()),
            fmt_duration(l.max),
            fmt_duration(l.total)
        );
    }
    if !report.failures.is_empty() || report.verified != report.batches {
        for f in &report.failures {
            eprintln!("failure: {f}");
        }
        bail!(
            "{} of {} batches did not verify",
            report.batches - report.verified,
            report.batches
        );
    }
    Ok(())
}

fn run(args: &RunArgs) -> Result<()> {
    use crate::appliance::{Appliance, Settings, Tuning};
    use std::io::Write as _;
    let cfg = firmware_config::Config::load_with_env(&args.config, std::env::vars())?;
    crate::logging::init(&cfg.logging.format, &cfg.logging.level);
    let settings = Settings::from_config(&cfg)?;
    let tuning = Tuning::from_config(&cfg)?;
    let data_dir = settings.data_dir.clone();
    let http_options = node_lite::http::HttpOptions {
        bearer_token: cfg.http.bearer_token.clone(),
    };
    let rt = runtime()?;
    rt.block_on(async move {
        let appliance = Appliance::start_tuned(settings, http_options, tuning).await?;
        tracing::info!(
            quic = %appliance.quic_addr(),
            http = %appliance
                .http_addr()
                .map_or_else(|| "off".to_owned(), |a| a.to_string()),
            fingerprint = %appliance.fingerprint(),
            "appliance ready"
        );
        let key_id = node_lite::wire::KeyId::of(appliance.appliance_key());
        println!("epa: data dir {}", data_dir.display());
        println!("epa: QUIC listening on {}", appliance.quic_addr());
        if let Some(http) = appliance.http_addr() {
            println!("epa: HTTP listening on {http}");
        }
        println!("epa: certificate fingerprint {}", appliance.fingerprint());
        println!("epa: appliance key id {}", key_id.to_hex());
        for (shard, ids) in appliance.kem_key_ids() {
            let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
            println!("epa: shard {shard} ML-KEM key ids {}", ids.join(", "));
        }
        if appliance.recovered() > 0 {
            println!(
                "epa: rewrote acceptance records of {} journaled batches",
                appliance.recovered()
            );
        }
        println!("epa: ready");
        let _ = std::io::stdout().flush();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
            _ = term.recv() => {}
        }
        println!("epa: draining");
        tracing::info!("draining: no new work, running stages finish");
        appliance.shutdown().await;
        println!("epa: stopped");
        Ok::<(), anyhow::Error>(())
    })
}

fn keys_generate(out: &std::path::Path, name: &str) -> Result<()> {
    let keys = crate::appliance::keys::generate_keys(out, name)?;
    for (what, path) in [
        ("ML-DSA-65 secret (seed)", &keys.dsa_secret),
        ("ML-DSA-65 public", &keys.dsa_public),
        ("ML-KEM-768 secret", &keys.kem_secret),
        ("ML-KEM-768 public", &keys.kem_public),
    ] {
        println!("{what:<24} {}", path.display());
    }
    println!("{:<24} {}", "ML-KEM-768 key id", keys.kem_key_id);
    Ok(())
}

/// Connects to the appliance and, with a key, authenticates the connection as its tenant.
async fn connect(
    remote: &Remote,
    key: Option<&crypto::dsa::mldsa65::KeyPair>,
) -> Result<node_lite::client::Client> {
    let fp = node_lite::tls::Fingerprint::from_hex(&remote.fingerprint)?;
    let client = node_lite::client::Client::connect(remote.addr, fp, Default::default()).await?;
    if let Some(key) = key {
        client
            .authenticate(key)
            .await
            .context("authenticating with the tenant key (is it under [[tenants]]?)")?;
    }
    Ok(client)
}

fn print_commitment(c: &node_lite::wire::Commitment, v: &VerifiedStatement) {
    println!(
        "shard {} height {}: {} -> {}  batch {}  proof {} B ({} / {})  VERIFIED",
        c.shard,
        c.height,
        hex::encode(c.old_root),
        hex::encode(c.new_root),
        hex::encode(&c.batch_hash[..8]),
        c.proof.len(),
        v.options.name(),
        v.hash
    );
}

fn submit(args: &SubmitArgs) -> Result<()> {
    use crate::appliance::client::{SimAggregator, verify_commitment};
    use crate::appliance::keys;
    let pair = keys::load_dsa_seed(&args.key)?;
    let ek = keys::load_kem_public(&args.shard_key)?;
    let appliance_key = keys::load_dsa_public(&args.appliance_key)?;
    runtime()?.block_on(async {
        let client = connect(&args.remote, Some(&pair)).await?;
        let limits = node_lite::wire::Limits::default();
        let mut agg = SimAggregator::new(pair, args.shard, args.depth, ek, 64, args.seed, limits)?;
        // The shard's current root: its latest commitment, or the empty tree's root.
        let mut sub = client
            .subscribe(node_lite::wire::SubscribeRequest {
                shards: vec![args.shard],
                from_height: 1,
            })
            .await?;
        let mut root = agg.root();
        let mut height = 0;
        while let Ok(Some(next)) =
            tokio::time::timeout(Duration::from_millis(500), sub.next()).await
        {
            let c = next?;
            root = c.new_root;
            height = c.height;
        }
        agg.resume_at(args.last_seq, root);
        println!(
            "shard {} at height {height}, root {}",
            args.shard,
            hex::encode(root)
        );
        for _ in 0..args.batches {
            let txs = agg.random_txs(args.txs)?;
            let prepared = agg.prepare(&txs, Vec::new())?;
            let job = agg
                .submit(&client, &prepared, Duration::from_secs(60))
                .await?;
            println!(
                "batch seq {} accepted as job {job} ({} txs)",
                prepared.batch.seq, prepared.txs
            );
            // Wait for its commitment: it carries the root the next batch applies on.
            let c = loop {
                match tokio::time::timeout(Duration::from_secs(300), sub.next()).await {
                    Ok(Some(c)) => {
                        let c = c?;
                        if c.batch_hash == prepared.batch_hash {
                            break c;
                        }
                    }
                    Ok(None) => bail!("the appliance closed the subscription"),
                    Err(_) => bail!("no commitment for job {job} within 300 s"),
                }
            };
            let v = verify_commitment(&c, &appliance_key)?;
            print_commitment(&c, &v);
            agg.resume_at(prepared.batch.seq, c.new_root);
        }
        client.close().await;
        Ok(())
    })
}

fn subscribe(args: &SubscribeArgs) -> Result<()> {
    use crate::appliance::client::verify_commitment;
    let appliance_key = crate::appliance::keys::load_dsa_public(&args.appliance_key)?;
    let key = match &args.key {
        Some(path) => Some(crate::appliance::keys::load_dsa_seed(path)?),
        None => None,
    };
    let mut shards = args.shard.clone();
    shards.sort_unstable();
    shards.dedup();
    runtime()?.block_on(async {
        let client = connect(&args.remote, key.as_ref()).await?;
        let mut sub = client
            .subscribe(node_lite::wire::SubscribeRequest {
                shards,
                from_height: args.from_height,
            })
            .await?;
        let mut seen = 0u64;
        while args.count.is_none_or(|n| seen < n) {
            let Some(c) = sub.next().await else {
                bail!("the appliance closed the subscription");
            };
            let c = c?;
            let v = verify_commitment(&c, &appliance_key)?;
            print_commitment(&c, &v);
            seen += 1;
        }
        Ok(())
    })
}

fn config_command(cmd: &ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Check { file } => {
            let cfg = firmware_config::Config::load_with_env(file, std::env::vars())?;
            println!(
                "{}: valid (schema version {}, {} shard(s), {} tenant(s))",
                file.display(),
                cfg.version,
                cfg.shards.len(),
                cfg.tenants.len()
            );
            Ok(())
        }
        ConfigCommand::Show { effective, config } => {
            if !effective {
                bail!("`epa config show` prints the effective configuration: add --effective");
            }
            let cfg = match config {
                Some(file) => firmware_config::Config::load_with_env(file, std::env::vars())?,
                None => firmware_config::Config::parse_with_env(
                    "version = 1\n",
                    "<defaults>",
                    std::env::vars(),
                )?,
            };
            print!("{}", cfg.to_toml_redacted());
            Ok(())
        }
    }
}

fn doctor(args: &DoctorArgs) -> ExitCode {
    use crate::doctor::{Host, any_failed, render_json, render_text, run_checks};
    let config = match &args.config {
        Some(file) => match firmware_config::Config::load_with_env(file, std::env::vars()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => firmware_config::Config::default(),
    };
    let host = Host {
        root: args.root.clone(),
        ..Host::system(config)
    };
    let checks = run_checks(&host);
    if args.json {
        println!("{:#}", render_json(&checks));
    } else {
        print!("{}", render_text(&checks));
    }
    if any_failed(&checks) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
