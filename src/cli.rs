//! The `epa` command line.
//!
//! * `epa prove --air smt-update --updates 64 [--depth 32] [--preset fast-96] [--hash rp64-256]
//!   [--seed N] --out p.bin` proves a random valid batch drawn from an in-memory sparse Merkle
//!   tree; `epa prove --air rescue-chain --steps 4096 ... --out p.bin` proves a hash chain.
//! * `epa verify p.bin [--min-security BITS]` verifies a proof envelope with the stock
//!   winterfell verifier and prints the statement.
//! * `epa demo [--batches N] [--updates M]` keeps one in-memory tree, proves and verifies N
//!   random batches of M updates and prints a line per batch and a latency summary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use prover::envelope::{ProofEnvelope, VerifiedStatement, verify_envelope_min_security};
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
    /// Prove and verify a stream of random SMT batches against one in-memory tree.
    Demo(DemoArgs),
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
    /// Number of batches.
    #[arg(long, default_value_t = 8)]
    batches: usize,
    /// Updates per batch.
    #[arg(long, default_value_t = 64)]
    updates: usize,
    /// Tree depth.
    #[arg(long, default_value_t = 32)]
    depth: u8,
    #[command(flatten)]
    choice: ProofChoice,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Prove(args) => prove(&args),
        Command::Verify(args) => verify(&args),
        Command::Demo(args) => demo(&args),
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

fn demo(args: &DemoArgs) -> Result<()> {
    if args.batches == 0 || args.updates == 0 {
        bail!("--batches and --updates must be at least 1");
    }
    let choice = &args.choice;
    let mut workload = SmtWorkload::new(args.depth, choice.seed)?;
    println!(
        "demo: {} batches x {} updates, depth {}, {} / {}",
        args.batches, args.updates, args.depth, choice.preset, choice.hash
    );
    let mut prove_times = Vec::with_capacity(args.batches);
    let mut verify_times = Vec::with_capacity(args.batches);
    let mut verified_count = 0usize;
    for batch in 1..=args.batches {
        let before = workload.root();
        let witnesses = workload.next_batch(args.updates)?;
        let request = ProveRequest::SmtUpdate {
            depth: args.depth,
            witnesses,
        };
        let started = Instant::now();
        let envelope = registry::prove(&request, choice.preset.into(), choice.hash)
            .with_context(|| format!("proving batch {batch}"))?;
        let prove_time = started.elapsed();
        let bytes = envelope.to_bytes()?;
        let started = Instant::now();
        // Verify from the wire bytes, exactly as a validator would.
        let outcome = ProofEnvelope::from_bytes(&bytes).and_then(|e| registry::verify(&e));
        let verify_time = started.elapsed();
        let status = match &outcome {
            Ok(v) => match &v.statement {
                Statement::SmtUpdate(pi)
                    if *pi.old_root() == before && *pi.new_root() == workload.root() =>
                {
                    verified_count += 1;
                    "verified".to_owned()
                }
                _ => "WRONG STATEMENT".to_owned(),
            },
            Err(e) => format!("REJECTED: {e}"),
        };
        println!(
            "batch {batch:>4}/{}: root {} -> {}  prove {}  verify {}  proof {} B  {status}",
            args.batches,
            short_hex(&before),
            short_hex(&workload.root()),
            fmt_duration(prove_time),
            fmt_duration(verify_time),
            bytes.len(),
        );
        prove_times.push(prove_time);
        verify_times.push(verify_time);
    }
    let total_updates = args.batches * args.updates;
    let total_prove: Duration = prove_times.iter().sum();
    println!("summary");
    println!("  batches         {}", args.batches);
    println!("  updates         {total_updates}");
    println!("  proofs verified {verified_count}/{}", args.batches);
    println!(
        "  prove  p50 {}  p99 {}",
        fmt_duration(percentile(&mut prove_times, 50)),
        fmt_duration(percentile(&mut prove_times, 99))
    );
    println!(
        "  verify p50 {}  p99 {}",
        fmt_duration(percentile(&mut verify_times, 50)),
        fmt_duration(percentile(&mut verify_times, 99))
    );
    println!(
        "  throughput      {:.1} updates/s (proving)",
        total_updates as f64 / total_prove.as_secs_f64().max(1e-9)
    );
    if verified_count != args.batches {
        bail!(
            "{} of {} proofs failed verification",
            args.batches - verified_count,
            args.batches
        );
    }
    Ok(())
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

fn short_hex(w: &prover::air::smt_update::Word) -> String {
    word_hex(w).chars().take(12).collect()
}
