//! The CUDA ML-KEM-768 decapsulation checked on the CPU, without a GPU: the host C compiler
//! builds `kernels/cuda/mlkem_host.c`, which runs the very `__host__ __device__` code of the
//! kernel (`kernels/cuda/mlkem.cuh`), and its secrets are compared with the reference
//! (`DecapsulationKey::decapsulate`) on the Wycheproof vectors and on fresh random valid,
//! tampered (bit flips in `u` and in `v`, a changed last byte, random bytes) and foreign-key
//! ciphertexts. The thread-block barriers of the kernel are exercised by running a group as
//! several POSIX threads with a barrier; the NTT is checked against schoolbook multiplication
//! in `Z_q[X]/(X^256 + 1)` and the Keccak functions against the `sha3` crate.
//!
//! Needs a C compiler (`$CC`, else `cc`) with POSIX threads.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use crypto::kem::mlkem768::{Ciphertext, DecapsulationKey, KeyPair};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::Value;
use sha3::{
    Digest, Sha3_512, Shake128, Shake256,
    digest::{ExtendableOutput, Update, XofReader},
};

const Q: u32 = 3329;

/// Scratch directory of this test binary.
fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cuda_mlkem_host");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// A fresh file name in the scratch directory (tests run in parallel).
fn fresh(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    scratch().join(format!("{}-{n}.{what}", std::process::id()))
}

/// The harness executable, compiled once per test run.
fn harness() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda/mlkem_host.c");
        let exe = scratch().join(format!("mlkem_host-{}", std::process::id()));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
        let out = Command::new(&cc)
            .args(["-O2", "-std=c11", "-pthread", "-Wall", "-Wextra", "-Werror"])
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .output()
            .unwrap_or_else(|e| panic!("run the C compiler {cc:?} (set CC to one): {e}"));
        assert!(
            out.status.success(),
            "{cc} failed on {}:\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        exe
    })
}

/// Runs the harness in `mode` (with extra leading arguments) on `input`; returns its output.
fn run(mode: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let (inp, outp) = (fresh("in"), fresh("out"));
    std::fs::write(&inp, input).expect("write the harness input");
    let status = Command::new(harness())
        .arg(mode)
        .args(args)
        .arg(&inp)
        .arg(&outp)
        .output()
        .expect("run the harness");
    let _ = std::fs::remove_file(&inp);
    assert!(
        status.status.success(),
        "mlkem_host {mode} failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let out = std::fs::read(&outp).expect("read the harness output");
    let _ = std::fs::remove_file(&outp);
    out
}

/// The CUDA code's secrets for `cts` under `dk`, with a group of `threads` threads.
fn decaps(dk: &DecapsulationKey, cts: &[Ciphertext], threads: u32) -> Vec<[u8; 32]> {
    let mut input = dk.as_bytes().to_vec();
    for ct in cts {
        input.extend_from_slice(ct.as_bytes());
    }
    let out = run("decaps", &[&threads.to_string()], &input);
    assert_eq!(
        out.len(),
        32 * cts.len(),
        "one 32-byte secret per ciphertext"
    );
    out.chunks_exact(32)
        .map(|c| c.try_into().expect("32-byte chunk"))
        .collect()
}

fn random_pair(rng: &mut ChaCha20Rng) -> KeyPair {
    let mut seed = [0u8; 64];
    rng.fill_bytes(&mut seed);
    KeyPair::from_seed(&seed)
}

/// The kinds of ciphertext every batch mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Valid,
    /// One bit flipped in `c1` (the compressed `u`).
    FlipU,
    /// One bit flipped in `c2` (the compressed `v`).
    FlipV,
    /// The last byte changed.
    LastByte,
    /// Uniformly random bytes.
    Random,
    /// A valid ciphertext for another key.
    Foreign,
}

const KINDS: [Kind; 6] = [
    Kind::Valid,
    Kind::FlipU,
    Kind::FlipV,
    Kind::LastByte,
    Kind::Random,
    Kind::Foreign,
];

fn ciphertext(rng: &mut ChaCha20Rng, pair: &KeyPair, other: &KeyPair, kind: Kind) -> Ciphertext {
    let mut m = [0u8; 32];
    rng.fill_bytes(&mut m);
    let (ct, _) = pair.encapsulation_key.encapsulate(&m);
    let mut bytes = *ct.as_bytes();
    match kind {
        Kind::Valid => return ct,
        Kind::FlipU => bytes[rng.gen_range(0..960)] ^= 1 << rng.gen_range(0..8),
        Kind::FlipV => bytes[rng.gen_range(960..1088)] ^= 1 << rng.gen_range(0..8),
        Kind::LastByte => bytes[1087] = bytes[1087].wrapping_add(rng.gen_range(1..=255)),
        Kind::Random => rng.fill_bytes(&mut bytes),
        Kind::Foreign => return other.encapsulation_key.encapsulate(&m).0,
    }
    Ciphertext::from_bytes(&bytes).expect("1088 bytes is an ML-KEM-768 ciphertext")
}

/// Compares the CUDA code's secrets with the reference's on one batch.
fn check(dk: &DecapsulationKey, cts: &[Ciphertext], kinds: &[Kind], threads: u32) {
    let got = decaps(dk, cts, threads);
    for (i, (ct, g)) in cts.iter().zip(&got).enumerate() {
        let expected = dk.decapsulate(ct);
        assert!(
            g == expected.as_bytes(),
            "ciphertext {i} of {} ({:?}, group of {threads} threads) differs from the reference",
            cts.len(),
            kinds[i]
        );
    }
}

/// 64 fresh ciphertexts of every kind under a fresh key, in one shuffled batch, one thread.
#[test]
fn random_batch_of_every_kind_matches_the_reference() {
    let mut rng = ChaCha20Rng::from_entropy();
    let pair = random_pair(&mut rng);
    let other = random_pair(&mut rng);
    let mut kinds: Vec<Kind> = KINDS.iter().flat_map(|&k| [k; 64]).collect();
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, rng.gen_range(0..=i));
    }
    let cts: Vec<Ciphertext> = kinds
        .iter()
        .map(|&k| ciphertext(&mut rng, &pair, &other, k))
        .collect();
    check(&pair.decapsulation_key, &cts, &kinds, 1);
}

/// Valid ciphertexts give exactly the encapsulated secrets.
#[test]
fn valid_ciphertexts_give_the_encapsulated_secrets() {
    let mut rng = ChaCha20Rng::from_entropy();
    let pair = random_pair(&mut rng);
    let (cts, secrets): (Vec<Ciphertext>, Vec<_>) = (0..16)
        .map(|_| {
            let mut m = [0u8; 32];
            rng.fill_bytes(&mut m);
            pair.encapsulation_key.encapsulate(&m)
        })
        .unzip();
    let got = decaps(&pair.decapsulation_key, &cts, 1);
    for (g, s) in got.iter().zip(&secrets) {
        assert_eq!(g, s.as_bytes());
    }
}

/// A thread block emulated by POSIX threads with a barrier for `__syncthreads`: the secrets are
/// the same for group sizes that split every stage differently (a missing or misplaced
/// barrier makes threads read half-written shared memory).
#[test]
fn groups_of_several_threads_match_the_reference() {
    let mut rng = ChaCha20Rng::from_entropy();
    let pair = random_pair(&mut rng);
    let other = random_pair(&mut rng);
    // 256 is the kernel's block size; the others split the stages unevenly.
    for threads in [2, 7, 32, 96, 256] {
        let kinds: Vec<Kind> = (0..6).map(|i| KINDS[(i + threads as usize) % 6]).collect();
        let cts: Vec<Ciphertext> = kinds
            .iter()
            .map(|&k| ciphertext(&mut rng, &pair, &other, k))
            .collect();
        check(&pair.decapsulation_key, &cts, &kinds, threads);
    }
}

fn hex_field(t: &Value, key: &str) -> Vec<u8> {
    let s = t[key]
        .as_str()
        .unwrap_or_else(|| panic!("tcId {}: no field {key}", t["tcId"]));
    hex::decode(s).unwrap_or_else(|e| panic!("tcId {}: {key}: {e}", t["tcId"]))
}

/// Project Wycheproof ML-KEM-768 decapsulation vectors: every valid case (implicit rejections
/// included) gives the expected `K`, in a batch with a fresh valid and a fresh tampered
/// ciphertext for the same key.
#[test]
fn wycheproof_vectors() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crypto/tests/vectors/wycheproof/mlkem_768_test.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"));
    let mut rng = ChaCha20Rng::from_entropy();
    let other = random_pair(&mut rng);
    let (mut valid, mut skipped) = (0, 0);
    for group in doc["testGroups"].as_array().expect("testGroups") {
        for t in group["tests"].as_array().expect("tests") {
            let seed: Result<[u8; 64], _> = hex_field(t, "seed").try_into();
            let ct = Ciphertext::from_bytes(&hex_field(t, "c"));
            let (Ok(seed), Ok(ct)) = (seed, ct) else {
                // Wrong seed or ciphertext lengths, which the types reject before a batch.
                assert_eq!(t["result"], "invalid", "tcId {}", t["tcId"]);
                skipped += 1;
                continue;
            };
            assert_eq!(t["result"], "valid", "tcId {}", t["tcId"]);
            let pair = KeyPair::from_seed(&seed);
            let batch = [
                ct,
                ciphertext(&mut rng, &pair, &other, Kind::Valid),
                ciphertext(&mut rng, &pair, &other, Kind::FlipU),
            ];
            let got = decaps(&pair.decapsulation_key, &batch, 1);
            assert_eq!(&got[0][..], &hex_field(t, "K")[..], "tcId {}", t["tcId"]);
            for (g, c) in got.iter().zip(&batch) {
                assert_eq!(g, pair.decapsulation_key.decapsulate(c).as_bytes());
            }
            valid += 1;
        }
    }
    assert_eq!((valid, skipped), (153, 40), "every Wycheproof case seen");
}

/// NTT^-1(NTT(a) o NTT(b)) of the CUDA code equals schoolbook multiplication modulo X^256 + 1
/// on fresh random polynomials, edge values included.
#[test]
fn ntt_product_matches_schoolbook() {
    let mut rng = ChaCha20Rng::from_entropy();
    let mut pairs: Vec<(Vec<u32>, Vec<u32>)> = (0..6)
        .map(|_| {
            let a = (0..256).map(|_| rng.gen_range(0..Q)).collect();
            let b = (0..256).map(|_| rng.gen_range(0..Q)).collect();
            (a, b)
        })
        .collect();
    pairs.push((vec![Q - 1; 256], vec![Q - 1; 256]));
    let mut x = vec![0; 256];
    x[1] = 1;
    let mut x255 = vec![0; 256];
    x255[255] = 1;
    // X * X^255 = X^256 = -1.
    pairs.push((x, x255));
    let mut input = Vec::new();
    for (a, b) in &pairs {
        for c in a.iter().chain(b) {
            input.extend_from_slice(&(*c as u16).to_le_bytes());
        }
    }
    let out = run("ntt", &[], &input);
    assert_eq!(out.len(), 512 * pairs.len());
    for (p, (a, b)) in pairs.iter().enumerate() {
        let mut c = [0i64; 256];
        for i in 0..256 {
            for j in 0..256 {
                let prod = i64::from(a[i]) * i64::from(b[j]);
                if i + j < 256 {
                    c[i + j] += prod;
                } else {
                    c[i + j - 256] -= prod;
                }
            }
        }
        for (k, ck) in c.iter().enumerate() {
            let got = u16::from_le_bytes([out[512 * p + 2 * k], out[512 * p + 2 * k + 1]]);
            assert_eq!(
                i64::from(got),
                ck.rem_euclid(i64::from(Q)),
                "pair {p}, coefficient {k}"
            );
        }
    }
}

/// G (SHA3-512), PRF (SHAKE256, 128 bytes), J (SHAKE256 of z || c) and SampleNTT's SHAKE128
/// stream of the CUDA code equal the `sha3` crate's on fresh random inputs.
#[test]
fn keccak_functions_match_sha3() {
    let mut rng = ChaCha20Rng::from_entropy();
    for _ in 0..4 {
        let mut input = vec![0u8; 96 + 1088];
        rng.fill_bytes(&mut input);
        let out = run("hash", &[], &input);
        assert_eq!(out.len(), 64 + 7 * 128 + 32 + 512);
        let (m, h, z, c) = (&input[..32], &input[32..64], &input[64..96], &input[96..]);
        let g = Sha3_512::new().chain_update(m).chain_update(h).finalize();
        assert_eq!(&out[..64], &g[..], "G");
        for n in 0..7u8 {
            let mut prf = [0u8; 128];
            let mut x = Shake256::default();
            x.update(m);
            x.update(&[n]);
            x.finalize_xof().read(&mut prf);
            assert_eq!(&out[64 + 128 * n as usize..][..128], &prf[..], "PRF N={n}");
        }
        let mut j = [0u8; 32];
        let mut x = Shake256::default();
        x.update(z);
        x.update(c);
        x.finalize_xof().read(&mut j);
        assert_eq!(&out[64 + 896..][..32], &j[..], "J");
        // SampleNTT(m || 1 || 2): 12-bit candidates below q from the SHAKE128 stream.
        let mut x = Shake128::default();
        x.update(m);
        x.update(&[1, 2]);
        let mut reader = x.finalize_xof();
        let mut expected = Vec::new();
        while expected.len() < 256 {
            let mut t = [0u8; 3];
            reader.read(&mut t);
            let d1 = u32::from(t[0]) | (u32::from(t[1] & 15) << 8);
            let d2 = u32::from(t[1] >> 4) | (u32::from(t[2]) << 4);
            for d in [d1, d2] {
                if d < Q && expected.len() < 256 {
                    expected.push(d as u16);
                }
            }
        }
        let got: Vec<u16> = out[64 + 896 + 32..]
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(got, expected, "SampleNTT");
    }
}
