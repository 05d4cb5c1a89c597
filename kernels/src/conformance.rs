//! The conformance suite every backend must pass: fresh random inputs of many shapes, results
//! compared bit for bit with winter-math and winter-crypto.
//!
//! Each `check_*` function draws a fresh seed (or takes the one in `EPA_CONFORMANCE_SEED`),
//! runs its cases and panics with the seed, the case and the first differing value on a
//! mismatch; the `*_seeded` variants replay a given seed. On success they return the number of
//! cases run, so a caller can assert that work was done.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_crypto::{
    ElementHasher, Hasher, MerkleTree,
    hashers::{Blake3_256, Rp64_256},
};
use winter_math::{StarkField, fft, fields::f64::BaseElement};

use crate::{Backend, ColumnMatrix, RowMatrix};

/// Environment variable that fixes the seed of the conformance checks (to replay a failure).
pub const SEED_ENV: &str = "EPA_CONFORMANCE_SEED";

/// A fresh seed, or the one in [`SEED_ENV`] when set.
pub fn fresh_seed() -> u64 {
    std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(rand::random)
}

/// Canonical random elements, with the edge values 0, 1, p - 1, 2^32 - 1, 2^32 mixed in.
pub fn random_elements(rng: &mut impl Rng, n: usize) -> Vec<BaseElement> {
    const EDGES: [u64; 5] = [0, 1, BaseElement::MODULUS - 1, (1 << 32) - 1, 1 << 32];
    (0..n)
        .map(|_| {
            if rng.gen_ratio(1, 16) {
                BaseElement::new(EDGES[rng.gen_range(0..EDGES.len())])
            } else {
                BaseElement::new(rng.gen_range(0..BaseElement::MODULUS))
            }
        })
        .collect()
}

fn random_columns(rng: &mut impl Rng, n: usize, cols: usize) -> Vec<Vec<BaseElement>> {
    (0..cols).map(|_| random_elements(rng, n)).collect()
}

fn first_diff<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T]) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("length {} instead of {}", got.len(), want.len()));
    }
    got.iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .map(|i| format!("index {i}: got {:?}, expected {:?}", got[i], want[i]))
}

/// Compares element slices on their raw words (winter-math's `==` is on the words too).
fn same_words(got: &[BaseElement], want: &[BaseElement]) -> Option<String> {
    let g: Vec<u64> = got.iter().map(|e| e.inner()).collect();
    let w: Vec<u64> = want.iter().map(|e| e.inner()).collect();
    first_diff(&g, &w)
}

fn fail(backend: &str, seed: u64, what: &str, detail: &str) -> ! {
    panic!(
        "conformance failure on {backend}: {what}: {detail} (seed {seed}; replay with \
         {SEED_ENV}={seed})"
    )
}

fn ok<T>(backend: &str, seed: u64, what: &str, r: Result<T, crate::Error>) -> T {
    r.unwrap_or_else(|e| fail(backend, seed, what, &format!("returned an error: {e}")))
}

/// Forward and inverse NTT against `fft::evaluate_poly` / `fft::interpolate_poly` for sizes
/// 2^0..2^16 (2^14 and 2^16: the CPU's cache-blocked path), one to five columns (two from 2^13).
pub fn check_ntt<B: Backend>(backend: &B) -> usize {
    check_ntt_seeded(backend, fresh_seed())
}

/// [`check_ntt`] with a given seed.
pub fn check_ntt_seeded<B: Backend>(backend: &B, seed: u64) -> usize {
    let name = backend.info().name;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut cases = 0;
    // 2^12..2^16 give every split of a GPU transform: workgroup-memory stages plus one to
    // five larger strides (radix 2, 4, 8, 16 and 16 + 2 passes on wgpu).
    let logs: Vec<u32> = (0..=16).collect();
    for log_n in logs {
        let n = 1usize << log_n;
        let cols = if log_n >= 13 {
            rng.gen_range(1..=2)
        } else {
            rng.gen_range(1..=5)
        };
        let input = random_columns(&mut rng, n, cols);
        let what = format!("ntt of 2^{log_n} x {cols} columns");
        let mut dev = ok(
            &name,
            seed,
            &what,
            backend.upload_columns(ok(&name, seed, &what, ColumnMatrix::new(input.clone()))),
        );
        ok(&name, seed, &what, backend.ntt(&mut dev));
        let fwd = ok(&name, seed, &what, backend.download_columns(&dev));
        ok(&name, seed, &what, backend.intt(&mut dev));
        let back = ok(&name, seed, &what, backend.download_columns(&dev));
        let mut inv_input = random_columns(&mut rng, n, cols);
        let mut dev2 = ok(
            &name,
            seed,
            &what,
            backend.upload_columns(ok(&name, seed, &what, ColumnMatrix::new(inv_input.clone()))),
        );
        ok(&name, seed, &what, backend.intt(&mut dev2));
        let inv = ok(&name, seed, &what, backend.download_columns(&dev2));
        for (c, col) in input.iter().enumerate() {
            let mut want = col.clone();
            if n > 1 {
                fft::evaluate_poly(&mut want, &fft::get_twiddles::<BaseElement>(n));
            }
            if let Some(d) = same_words(fwd.column(c), &want) {
                fail(&name, seed, &format!("forward {what}, column {c}"), &d);
            }
            if let Some(d) = same_words(back.column(c), col) {
                fail(
                    &name,
                    seed,
                    &format!("inverse of forward {what}, column {c}"),
                    &d,
                );
            }
            let want_inv = &mut inv_input[c];
            if n > 1 {
                fft::interpolate_poly(want_inv, &fft::get_inv_twiddles::<BaseElement>(n));
            }
            if let Some(d) = same_words(inv.column(c), want_inv) {
                fail(&name, seed, &format!("inverse {what}, column {c}"), &d);
            }
            cases += 1;
        }
    }
    cases
}

/// Coset LDE against `fft::evaluate_poly_with_offset` column by column: trace lengths
/// 2^1..2^11 with blowups 1..16 and 1..=9 columns, plus 2^12 and 2^16 (the cache-blocked
/// paths), random offsets (and the field generator); plus the whole trace path (interpolate
/// then extend) on one case.
pub fn check_lde<B: Backend>(backend: &B) -> usize {
    check_lde_seeded(backend, fresh_seed())
}

/// [`check_lde`] with a given seed.
pub fn check_lde_seeded<B: Backend>(backend: &B, seed: u64) -> usize {
    let name = backend.info().name;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut cases = 0;
    // Random shapes up to 2^11, then the cache-blocked sizes: 2^12 (passes over an L2 block)
    // and 2^16 (passes over the column, threads inside a column when blowup is 1).
    let mut shapes: Vec<(u32, usize, usize)> = (1..=11u32)
        .map(|log_n| (log_n, 1usize << rng.gen_range(0..=4), rng.gen_range(1..=9)))
        .collect();
    shapes.extend([(12, 2, 2), (16, 1, 1), (16, 2, 1)]);
    for (log_n, blowup, cols) in shapes {
        let n = 1usize << log_n;
        let offset = if rng.gen_bool(0.5) {
            BaseElement::GENERATOR
        } else {
            BaseElement::new(rng.gen_range(1..BaseElement::MODULUS))
        };
        let what =
            format!("coset LDE of 2^{log_n} x {cols} columns, blowup {blowup}, offset {offset}");
        let polys = random_columns(&mut rng, n, cols);
        let dev = ok(
            &name,
            seed,
            &what,
            backend.upload_columns(ok(&name, seed, &what, ColumnMatrix::new(polys.clone()))),
        );
        let rows = ok(&name, seed, &what, backend.coset_lde(&dev, blowup, offset));
        let rows = ok(&name, seed, &what, backend.download_rows(&rows));
        compare_lde(&name, seed, &what, &rows, &polys, blowup, offset);
        cases += cols;
    }
    // The trace path of the prover: evaluations -> polynomials -> LDE.
    let (n, cols, blowup) = (1 << 10, 3, 8);
    let what = "trace interpolation + LDE of 2^10 x 3 columns, blowup 8";
    let trace = random_columns(&mut rng, n, cols);
    let mut dev = ok(
        &name,
        seed,
        what,
        backend.upload_columns(ok(&name, seed, what, ColumnMatrix::new(trace.clone()))),
    );
    ok(&name, seed, what, backend.intt(&mut dev));
    let rows = ok(
        &name,
        seed,
        what,
        backend.coset_lde(&dev, blowup, BaseElement::GENERATOR),
    );
    let rows = ok(&name, seed, what, backend.download_rows(&rows));
    let inv_tw = fft::get_inv_twiddles::<BaseElement>(n);
    let polys: Vec<Vec<BaseElement>> = trace
        .into_iter()
        .map(|mut c| {
            fft::interpolate_poly(&mut c, &inv_tw);
            c
        })
        .collect();
    compare_lde(
        &name,
        seed,
        what,
        &rows,
        &polys,
        blowup,
        BaseElement::GENERATOR,
    );
    cases + cols
}

fn compare_lde(
    name: &str,
    seed: u64,
    what: &str,
    rows: &RowMatrix,
    polys: &[Vec<BaseElement>],
    blowup: usize,
    offset: BaseElement,
) {
    let n = polys[0].len();
    if rows.num_rows() != n * blowup || rows.num_cols() != polys.len() {
        fail(
            name,
            seed,
            what,
            &format!("shape {}x{}", rows.num_rows(), rows.num_cols()),
        );
    }
    let tw = fft::get_twiddles::<BaseElement>(n);
    for (c, p) in polys.iter().enumerate() {
        let want = fft::evaluate_poly_with_offset(p, &tw, offset, blowup);
        let got: Vec<BaseElement> = (0..rows.num_rows()).map(|r| rows.row(r)[c]).collect();
        if let Some(d) = same_words(&got, &want) {
            fail(name, seed, &format!("{what}, column {c}"), &d);
        }
    }
}

fn random_rows(rng: &mut impl Rng, log_rows: u32, width: usize) -> RowMatrix {
    let data = random_elements(rng, (1 << log_rows) * width);
    RowMatrix::from_row_major(data, width).expect("a power-of-two number of rows of width >= 1")
}

/// Row hashing and Merkle trees with `Rp64_256` against `Rp64_256::hash_elements` and
/// `MerkleTree::new`: 2^1..2^10 rows of 1..=24 columns, plus trees over random leaves.
pub fn check_merkle_rp64<B: Backend>(backend: &B) -> usize {
    check_merkle_rp64_seeded(backend, fresh_seed())
}

/// [`check_merkle_rp64`] with a given seed.
pub fn check_merkle_rp64_seeded<B: Backend>(backend: &B, seed: u64) -> usize {
    let name = backend.info().name;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut cases = 0;
    for log_rows in 1..=10u32 {
        let width = match log_rows {
            1 => 8,
            2 => 16,
            _ => rng.gen_range(1..=24),
        };
        let what = format!("Rp64_256 commitment to 2^{log_rows} rows x {width} columns");
        let host = random_rows(&mut rng, log_rows, width);
        let leaves: Vec<_> = (0..host.num_rows())
            .map(|r| Rp64_256::hash_elements(host.row(r)))
            .collect();
        let rows = ok(&name, seed, &what, backend.upload_rows(host));
        let hashed = ok(&name, seed, &what, backend.hash_rows_rp64_256(&rows));
        if let Some(d) = first_diff(&hashed, &leaves) {
            fail(&name, seed, &format!("{what}: row hashes"), &d);
        }
        let want = MerkleTree::<Rp64_256>::new(leaves.clone()).expect("a power of two >= 2 leaves");
        let tree = ok(&name, seed, &what, backend.commit_rows_rp64_256(&rows));
        let tree = ok(&name, seed, &what, backend.download_tree(tree));
        compare_trees(&name, seed, &what, &mut rng, &tree, &want);
        let from_leaves = ok(&name, seed, &what, backend.merkle_tree_rp64_256(leaves));
        let from_leaves = ok(&name, seed, &what, backend.download_tree(from_leaves));
        compare_trees(
            &name,
            seed,
            &format!("{what} (from leaves)"),
            &mut rng,
            &from_leaves,
            &want,
        );
        cases += 1;
    }
    cases
}

/// Row hashing and Merkle trees with BLAKE3-256 against `Blake3_256::hash_elements` and
/// `MerkleTree::new`.
pub fn check_merkle_blake3<B: Backend>(backend: &B) -> usize {
    check_merkle_blake3_seeded(backend, fresh_seed())
}

/// [`check_merkle_blake3`] with a given seed.
pub fn check_merkle_blake3_seeded<B: Backend>(backend: &B, seed: u64) -> usize {
    let name = backend.info().name;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut cases = 0;
    for log_rows in 1..=10u32 {
        let width = rng.gen_range(1..=24);
        let what = format!("BLAKE3 commitment to 2^{log_rows} rows x {width} columns");
        let host = random_rows(&mut rng, log_rows, width);
        let leaves: Vec<_> = (0..host.num_rows())
            .map(|r| Blake3_256::<BaseElement>::hash_elements(host.row(r)))
            .collect();
        let rows = ok(&name, seed, &what, backend.upload_rows(host));
        let want =
            MerkleTree::<Blake3_256<BaseElement>>::new(leaves).expect("a power of two >= 2 leaves");
        let tree = ok(&name, seed, &what, backend.commit_rows_blake3(&rows));
        let tree = ok(&name, seed, &what, backend.download_tree(tree));
        compare_trees(&name, seed, &what, &mut rng, &tree, &want);
        cases += 1;
    }
    cases
}

fn compare_trees<H: Hasher>(
    name: &str,
    seed: u64,
    what: &str,
    rng: &mut impl Rng,
    got: &MerkleTree<H>,
    want: &MerkleTree<H>,
) {
    if got.root() != want.root() {
        fail(
            name,
            seed,
            what,
            &format!("root {:?} instead of {:?}", got.root(), want.root()),
        );
    }
    if let Some(d) = first_diff(got.leaves(), want.leaves()) {
        fail(name, seed, &format!("{what}: leaves"), &d);
    }
    // winter-crypto exposes inner nodes only through openings: every node but the root is a
    // sibling on some path, so comparing all openings compares the whole node array.
    for index in 0..want.leaves().len() {
        let (g, w) = (got.prove(index), want.prove(index));
        if g.as_ref().ok() != w.as_ref().ok() {
            fail(
                name,
                seed,
                &format!("{what}: opening of leaf {index}"),
                "the openings differ",
            );
        }
    }
    let index = rng.gen_range(0..want.leaves().len());
    let batch = [index, want.leaves().len() - 1 - index];
    let (g, w) = (got.prove_batch(&batch), want.prove_batch(&batch));
    let same = match (&g, &w) {
        (Ok((gl, gp)), Ok((wl, wp))) => gl == wl && gp.nodes == wp.nodes && gp.depth == wp.depth,
        _ => false,
    };
    if !same {
        fail(
            name,
            seed,
            &format!("{what}: batch opening of {batch:?}"),
            "the openings differ",
        );
    }
}
