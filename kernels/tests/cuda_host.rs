//! The CUDA C helpers (`kernels/cuda/*.cuh`), compiled with the host C compiler, against the
//! Rust references on fresh random inputs: Goldilocks add/sub/mul/inverse, the NTT
//! butterflies, the `Rp64_256` permutation, sponge and merge, BLAKE3 row hashing and merge,
//! and whole NTT / inverse NTT / coset LDE runs of the kernels' tile code with the backend's
//! pass plan. Needs a C compiler (`$CC`, else `cc`), no GPU.
#![cfg(feature = "cuda")]

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use epa_kernels::cuda::{dif_passes, lde_shift_tables};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use winter_crypto::{
    Digest, ElementHasher, Hasher,
    hashers::{Blake3_256, Rp64_256},
};
use winter_math::{FieldElement, StarkField, fft, fields::f64::BaseElement};

const P: u64 = BaseElement::MODULUS;

fn cuda_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda")
}

/// Builds the harness once per test binary.
fn harness() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cuda-host");
        std::fs::create_dir_all(&dir).expect("the target tmp dir is writable");
        let bin = dir.join(format!("host_harness-{}", std::process::id()));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
        let out = Command::new(&cc)
            .args([
                "-O2",
                "-std=gnu11",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-Wno-unknown-pragmas",
            ])
            .arg("-I")
            .arg(cuda_dir())
            .arg(cuda_dir().join("host_harness.c"))
            .arg("-o")
            .arg(&bin)
            .output()
            .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?} ({e}); install gcc"));
        assert!(
            out.status.success(),
            "the CUDA C headers do not compile with {cc}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        bin
    })
}

/// Runs the harness on `input` (one command per line) and returns one line per command.
fn run(input: &str) -> Vec<Vec<u64>> {
    let bin = harness();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cuda-host");
    let file = dir.join(format!(
        "input-{}-{:?}.txt",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&file, input).expect("the target tmp dir is writable");
    let out = Command::new(bin)
        .stdin(Stdio::from(
            std::fs::File::open(&file).expect("the input file was just written"),
        ))
        .output()
        .expect("the harness runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "harness failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("the harness prints ASCII");
    text.lines()
        .map(|l| {
            l.split_whitespace()
                .map(|w| u64::from_str_radix(w, 16).expect("hex word"))
                .collect()
        })
        .collect()
}

fn rng(test: &str) -> ChaCha8Rng {
    let seed: u64 = rand::random();
    eprintln!("{test}: seed {seed:#x}");
    ChaCha8Rng::seed_from_u64(seed)
}

fn hex(out: &mut String, words: impl IntoIterator<Item = u64>) {
    for w in words {
        write!(out, " {w:x}").expect("writing to a String");
    }
}

fn canonical(r: &mut ChaCha8Rng) -> u64 {
    r.gen_range(0..P)
}

fn elem(w: u64) -> BaseElement {
    BaseElement::from_mont(w)
}

/// A random word: canonical most of the time, sometimes any 64-bit pattern or an edge value.
fn any_word(r: &mut ChaCha8Rng) -> u64 {
    match r.gen_range(0..8) {
        0 => r.r#gen(),
        1 => [0, 1, P - 1, P, u64::MAX, 0xffff_ffff, 1 << 32][r.gen_range(0..7)],
        _ => canonical(r),
    }
}

#[test]
fn field_ops_match_winter_math_on_any_word() {
    let mut r = rng("field_ops");
    let mut input = String::new();
    let mut expect = Vec::new();
    for _ in 0..3000 {
        let a = any_word(&mut r);
        let b = any_word(&mut r);
        // winter-math computes `p - b` unchecked in `+`: its addend is at most p.
        let c = any_word(&mut r).min(P);
        writeln!(
            input,
            "add {a:x} {c:x}\nsub {a:x} {b:x}\nmul {a:x} {b:x}\ncanon {a:x}"
        )
        .unwrap();
        expect.push(vec![(elem(a) + elem(c)).inner()]);
        expect.push(vec![(elem(a) - elem(b)).inner()]);
        expect.push(vec![(elem(a) * elem(b)).inner()]);
        expect.push(vec![elem(a).as_int()]);
        let x = canonical(&mut r);
        writeln!(input, "inv {x:x}").unwrap();
        expect.push(vec![elem(x).inv().inner()]);
    }
    assert_eq!(run(&input), expect);
}

#[test]
fn butterflies_match_the_field_formulas() {
    let mut r = rng("butterflies");
    let mut input = String::new();
    let mut expect = Vec::new();
    for _ in 0..2000 {
        let (a, b, w) = (canonical(&mut r), canonical(&mut r), canonical(&mut r));
        writeln!(input, "dif {a:x} {b:x} {w:x}\ndit {a:x} {b:x} {w:x}").unwrap();
        let (ea, eb, ew) = (elem(a), elem(b), elem(w));
        expect.push(vec![(ea + eb).inner(), ((ea - eb) * ew).inner()]);
        let t = eb * ew;
        expect.push(vec![(ea + t).inner(), (ea - t).inner()]);
    }
    assert_eq!(run(&input), expect);
}

#[test]
fn rescue_permutation_sponge_and_merge_match_winter_crypto() {
    let mut r = rng("rescue");
    let mut input = String::new();
    let mut expect: Vec<Vec<u64>> = Vec::new();
    for _ in 0..200 {
        let mut st = [BaseElement::ZERO; 12];
        for s in st.iter_mut() {
            *s = elem(canonical(&mut r));
        }
        input.push_str("perm");
        hex(&mut input, st.iter().map(|e| e.inner()));
        input.push('\n');
        Rp64_256::apply_permutation(&mut st);
        expect.push(st.iter().map(|e| e.inner()).collect());
    }
    for len in (0..40).chain([64, 100, 129]) {
        let xs: Vec<BaseElement> = (0..len).map(|_| elem(canonical(&mut r))).collect();
        write!(
            input,
            "rph {len:x} {:x}",
            BaseElement::new(len as u64).inner()
        )
        .unwrap();
        hex(&mut input, xs.iter().map(|e| e.inner()));
        input.push('\n');
        let d = Rp64_256::hash_elements(&xs);
        expect.push(d.as_elements().iter().map(|e| e.inner()).collect());
    }
    for _ in 0..100 {
        let a: Vec<BaseElement> = (0..4).map(|_| elem(canonical(&mut r))).collect();
        let b: Vec<BaseElement> = (0..4).map(|_| elem(canonical(&mut r))).collect();
        input.push_str("rpm");
        hex(&mut input, a.iter().chain(&b).map(|e| e.inner()));
        input.push('\n');
        let da = <Rp64_256 as Hasher>::Digest::new(a.try_into().expect("4 elements"));
        let db = <Rp64_256 as Hasher>::Digest::new(b.try_into().expect("4 elements"));
        let m = Rp64_256::merge(&[da, db]);
        expect.push(m.as_elements().iter().map(|e| e.inner()).collect());
    }
    assert_eq!(run(&input), expect);
}

fn le_words(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_le_bytes(c.try_into().expect("4 bytes"))))
        .collect()
}

#[test]
fn blake3_rows_and_merge_match_winter_crypto_and_blake3() {
    type B3 = Blake3_256<BaseElement>;
    let mut r = rng("blake3");
    let mut input = String::new();
    let mut expect: Vec<Vec<u64>> = Vec::new();
    // One block, several blocks, one chunk exactly, and several chunks (tree of chunks).
    let lens = (0..20).chain([64, 127, 128, 129, 255, 256, 257, 384, 512, 1000, 2049]);
    for len in lens {
        let xs: Vec<BaseElement> = (0..len)
            .map(|_| elem(any_word(&mut r).min(P - 1)))
            .collect();
        write!(input, "b3h {len:x}").unwrap();
        hex(&mut input, xs.iter().map(|e| e.inner()));
        input.push('\n');
        let d = B3::hash_elements(&xs).as_bytes();
        // The same digest straight from the blake3 crate over the canonical bytes.
        let bytes: Vec<u8> = xs.iter().flat_map(|e| e.as_int().to_le_bytes()).collect();
        assert_eq!(d, *blake3::hash(&bytes).as_bytes(), "len {len}");
        expect.push(le_words(&d));
    }
    for _ in 0..100 {
        let a: [u8; 32] = r.r#gen();
        let b: [u8; 32] = r.r#gen();
        input.push_str("b3m");
        hex(&mut input, le_words(&a).into_iter().chain(le_words(&b)));
        input.push('\n');
        let m = B3::merge(&[
            <B3 as Hasher>::Digest::new(a),
            <B3 as Hasher>::Digest::new(b),
        ]);
        expect.push(le_words(&m.as_bytes()));
    }
    assert_eq!(run(&input), expect);
}

/// `tw[h + j] = w_{2h}^j` for every stage `h < n`, raw words (the kernels' twiddle layout).
fn twiddles(n: usize, inverse: bool) -> Vec<u64> {
    let mut t = vec![0u64; n];
    let mut h = 1;
    while h < n {
        let mut w = BaseElement::get_root_of_unity((2 * h).ilog2());
        if inverse {
            w = w.inv();
        }
        let mut acc = BaseElement::ONE;
        for j in 0..h {
            t[h + j] = acc.inner();
            acc *= w;
        }
        h *= 2;
    }
    t
}

fn passes_text(log_n: u32) -> String {
    let p = dif_passes(log_n);
    let mut s = format!(" {:x}", p.len());
    for (a, b, c) in p {
        write!(s, " {a:x} {b:x} {c:x}").unwrap();
    }
    s
}

#[test]
fn ntt_and_inverse_tile_code_match_winter_math() {
    let mut r = rng("ntt");
    // Single-pass sizes, one upper pass (12..=19) and two upper passes (20); the element-wise
    // bit reversal below 2^10, the tiled one from 2^10 (no middle bits) on.
    let cases = [
        (1u32, 3usize),
        (2, 1),
        (5, 2),
        (9, 2),
        (10, 2),
        (11, 2),
        (12, 1),
        (13, 2),
        (14, 3),
        (20, 1),
    ];
    for (log_n, cols) in cases {
        let n = 1usize << log_n;
        let data: Vec<Vec<BaseElement>> = (0..cols)
            .map(|_| (0..n).map(|_| elem(canonical(&mut r))).collect())
            .collect();
        for inverse in [false, true] {
            let (scale, flag) = if inverse {
                (BaseElement::new(n as u64).inv().inner(), 1)
            } else {
                (0, 0)
            };
            let mut input = format!("ntt {log_n:x} {cols:x} {scale:x} {flag:x}");
            hex(&mut input, twiddles(n, inverse));
            hex(&mut input, data.iter().flatten().map(|e| e.inner()));
            input.push_str(&passes_text(log_n));
            input.push('\n');
            let mut expect = Vec::new();
            for col in &data {
                let mut c = col.clone();
                if inverse {
                    let tw = fft::get_inv_twiddles::<BaseElement>(n);
                    fft::interpolate_poly(&mut c, &tw);
                } else {
                    let tw = fft::get_twiddles::<BaseElement>(n);
                    fft::evaluate_poly(&mut c, &tw);
                }
                expect.extend(c.iter().map(|e| e.inner()));
            }
            let got = run(&input);
            assert_eq!(got.len(), 1);
            assert!(
                got[0] == expect,
                "NTT mismatch: 2^{log_n} x {cols}, inverse {inverse}"
            );
        }
    }
}

#[test]
fn coset_lde_tile_code_matches_winter_math() {
    let mut r = rng("lde");
    // Small and multi-pass sizes; 2^12 needs more than one high table entry. Each case also
    // runs in column groups (as under a small memory budget), uneven ones included.
    let cases = [
        (1u32, 1u32, 2usize),
        (1, 2, 1),
        (3, 3, 3),
        (6, 2, 5),
        (12, 1, 2),
        (13, 3, 1),
    ];
    for (log_n, log_blowup, cols) in cases {
        let n = 1usize << log_n;
        let blowup = 1usize << log_blowup;
        let offset = if r.gen_bool(0.5) {
            BaseElement::GENERATOR
        } else {
            elem(r.gen_range(1..P))
        };
        let coeffs: Vec<Vec<BaseElement>> = (0..cols)
            .map(|_| (0..n).map(|_| elem(canonical(&mut r))).collect())
            .collect();
        let big = n * blowup;
        let tw = fft::get_twiddles::<BaseElement>(n);
        let evals: Vec<Vec<BaseElement>> = coeffs
            .iter()
            .map(|c| fft::evaluate_poly_with_offset(c, &tw, offset, blowup))
            .collect();
        let expect: Vec<u64> = (0..big)
            .flat_map(|row| evals.iter().map(move |col| col[row].inner()))
            .collect();
        let (lo, hi, hi_len) = lde_shift_tables(offset, n, blowup);
        for group in [cols, cols.div_ceil(2), 1] {
            let mut input = format!("lde {log_n:x} {log_blowup:x} {cols:x} {group:x} {hi_len:x}");
            hex(&mut input, twiddles(n, false));
            hex(&mut input, lo.iter().copied());
            hex(&mut input, hi.iter().copied());
            hex(&mut input, coeffs.iter().flatten().map(|e| e.inner()));
            input.push_str(&passes_text(log_n));
            input.push('\n');
            let got = run(&input);
            assert_eq!(got.len(), 1);
            assert!(
                got[0] == expect,
                "LDE mismatch: 2^{log_n} x {cols}, blowup {blowup}, groups of {group}, \
                 offset {offset}"
            );
        }
    }
}
