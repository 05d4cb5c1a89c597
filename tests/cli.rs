//! End-to-end tests of the `epa` binary: prove, verify, tamper, demo.

use std::path::PathBuf;
use std::process::{Command, Output};

fn epa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_epa"))
        .args(args)
        .output()
        .expect("the epa binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{}-{name}", std::process::id()))
}

fn random_seed() -> String {
    // Fresh inputs on every run, without an RNG dependency: the clock's nanoseconds.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .subsec_nanos();
    nanos.to_string()
}

#[test]
fn prove_and_verify_rescue_chain() {
    let out = tmp("rc.bin");
    let seed = random_seed();
    let path = out.to_str().unwrap();
    let o = epa(&[
        "prove",
        "--air",
        "rescue-chain",
        "--steps",
        "32",
        "--hash",
        "blake3-256",
        "--seed",
        &seed,
        "--out",
        path,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("32 chained Rp64_256 merges"),
        "{}",
        stdout(&o)
    );
    let v = epa(&["verify", path]);
    assert!(v.status.success(), "{}", stderr(&v));
    let text = stdout(&v);
    assert!(
        text.contains("VALID      rescue-chain proof (fast-96 / blake3-256)"),
        "{text}"
    );
    assert!(text.contains("security   96 bits"), "{text}");
    assert!(text.contains("trace      256 rows x 12 columns"), "{text}");
    // A policy above the proof's security refuses it.
    let v = epa(&["verify", path, "--min-security", "128"]);
    assert!(!v.status.success());
    assert!(
        stderr(&v).contains("below the required 128"),
        "{}",
        stderr(&v)
    );
}

#[test]
fn prove_and_verify_smt_update_deterministically() {
    let seed = random_seed();
    let (a, b) = (tmp("smt-a.bin"), tmp("smt-b.bin"));
    for out in [&a, &b] {
        let o = epa(&[
            "prove",
            "--air",
            "smt-update",
            "--updates",
            "3",
            "--depth",
            "8",
            "--preset",
            "secure-128",
            "--seed",
            &seed,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (bytes_a, bytes_b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(bytes_a, bytes_b, "same seed, same proof bytes");
    let v = epa(&["verify", a.to_str().unwrap(), "--min-security", "128"]);
    assert!(v.status.success(), "{}", stderr(&v));
    let text = stdout(&v);
    assert!(text.contains("statement  3 updates at depth 8"), "{text}");
    assert!(text.contains("security   128 bits"), "{text}");

    // Flip one byte in the proof body: rejected with a message, never a crash.
    let mut tampered = bytes_a.clone();
    let i = bytes_a.len() - 1 - (seed.parse::<usize>().unwrap() % (bytes_a.len() / 2));
    tampered[i] ^= 0x40;
    let t = tmp("smt-bad.bin");
    std::fs::write(&t, &tampered).unwrap();
    let v = epa(&["verify", t.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1), "{}", stderr(&v));
    assert!(stderr(&v).contains("INVALID proof"), "{}", stderr(&v));
}

#[test]
fn demo_proves_and_verifies_every_batch() {
    let o = epa(&[
        "demo",
        "--batches",
        "2",
        "--txs",
        "2",
        "--depth",
        "8",
        "--hash",
        "blake3-256",
        "--seed",
        &random_seed(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.matches(" verified\n").count(), 2, "{text}");
    assert!(text.contains("proofs verified 2/2"), "{text}");
    assert!(text.contains("transactions    4"), "{text}");
}

#[test]
fn bad_arguments_are_reported() {
    let o = epa(&[
        "prove",
        "--air",
        "fib",
        "--out",
        tmp("x.bin").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown AIR `fib`"), "{}", stderr(&o));
    let o = epa(&[
        "prove",
        "--air",
        "rescue-chain",
        "--steps",
        "3",
        "--out",
        tmp("y.bin").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("power of two"), "{}", stderr(&o));
    let o = epa(&["verify", tmp("missing.bin").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("reading the proof"), "{}", stderr(&o));
}
