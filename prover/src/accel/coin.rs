//! A public coin whose proof-of-work search runs on every core and still finds winterfell's
//! nonce.
//!
//! winter-prover 0.13.1 grinds the query seed with
//! `(1..).find(|&n| coin.check_leading_zeros(n) >= grinding_factor)`: one hash per nonce, on one
//! thread (its `concurrent` feature would use rayon's `find_any`, which may return any valid
//! nonce, so proofs would stop being reproducible). With 16 grinding bits that is about 65,536
//! `Rp64_256` permutations in a row, 15% of a whole accelerated proof.
//!
//! [`GrindingCoin`] is winter-crypto's `DefaultRandomCoin` step for step (the same seed,
//! reseeding, draws and query positions, checked against it in the tests below and by every
//! byte-identical proof test), except that [`RandomCoin::check_leading_zeros`] answers from a
//! window of precomputed results: the first call for a nonce outside the window hashes the next
//! 2^13 nonces at once, in parallel (`Rp64_256`: as rows of the CPU backend's
//! `hash_rows_rp64_256`, vectorised and on every core; other hashes: `H::merge_with_int` spread
//! with rayon). winterfell's sequential search then reads the answers in order, so it stops at
//! the same, smallest nonce as stock winterfell. At most one window is spent past the nonce
//! found.

use std::sync::Mutex;

use kernels::{Backend, RowMatrix};
use rayon::prelude::*;
#[cfg(test)]
use winter_crypto::DefaultRandomCoin;
use winter_crypto::hashers::{Blake3_256, Rp64_256};
use winter_crypto::{Digest, ElementHasher, Hasher, RandomCoin, RandomCoinError};
use winter_math::fields::f64::BaseElement;
use winter_math::{FieldElement, StarkField};

use super::fallback_cpu;

/// Nonces hashed at once: enough rows to keep every core's SIMD lanes busy, few enough that the
/// hashes spent past the nonce found stay small (an eighth of the 2^16 nonces a 16-bit search
/// needs on average).
const WINDOW: usize = 1 << 13;

/// Hashes that can answer a window of proof-of-work checks at once.
pub trait GrindingHash: ElementHasher<BaseField = BaseElement> + Sized {
    /// `trailing_zeros` of the first 8 bytes of `Self::merge_with_int(seed, start + i)` for
    /// each `i < count`, exactly as winter-crypto's `DefaultRandomCoin::check_leading_zeros`
    /// computes them.
    fn grind_window(seed: Self::Digest, start: u64, count: usize) -> Vec<u8> {
        window_by_merge::<Self>(seed, start, count)
    }
}

/// [`GrindingHash::grind_window`] through `H::merge_with_int`, one nonce per rayon item.
fn window_by_merge<H: ElementHasher>(seed: H::Digest, start: u64, count: usize) -> Vec<u8> {
    (0..count as u64)
        .into_par_iter()
        .map(|i| zeros_of::<H>(H::merge_with_int(seed, start + i)))
        .collect()
}

/// The first 8 bytes of a digest as a little-endian integer: what `DefaultRandomCoin` reads
/// for its proof-of-work check and its query positions.
fn head_u64<H: Hasher + ?Sized>(digest: H::Digest) -> u64 {
    let bytes = digest.as_bytes();
    let mut head = [0u8; 8];
    head.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(head)
}

/// What `DefaultRandomCoin::check_leading_zeros` reads from a digest.
fn zeros_of<H: Hasher + ?Sized>(digest: H::Digest) -> u8 {
    // At most 64: fits a byte.
    head_u64::<H>(digest).trailing_zeros() as u8
}

impl GrindingHash for Blake3_256<BaseElement> {}

impl GrindingHash for Rp64_256 {
    /// `Rp64_256::merge_with_int(seed, v)` for `v < p` absorbs `[seed, v]` with the first
    /// capacity element set to 5: that is `hash_elements` of the 5-element row `[seed, v]`,
    /// which the CPU backend hashes four or eight rows at a time on every core. Nonces of
    /// `p` and above (never reached by a search from 1) take winterfell's own path.
    fn grind_window(seed: Self::Digest, start: u64, count: usize) -> Vec<u8> {
        const WIDTH: usize = 5;
        let in_field = start
            .checked_add(count as u64)
            .is_some_and(|end| end <= BaseElement::MODULUS);
        let rows = count.next_power_of_two();
        if !in_field || rows < 2 {
            return window_by_merge::<Self>(seed, start, count);
        }
        let seed = seed.as_elements();
        let mut data = vec![BaseElement::ZERO; rows * WIDTH];
        data.par_chunks_mut(WIDTH).enumerate().for_each(|(i, row)| {
            row[..4].copy_from_slice(seed);
            row[4] = BaseElement::new(start + i as u64);
        });
        let matrix = RowMatrix::from_row_major(data, WIDTH)
            .expect("a power-of-two number of rows of width 5 is a valid row matrix");
        let digests = fallback_cpu()
            .hash_rows_rp64_256(&matrix)
            .expect("the CPU backend hashes any valid row matrix");
        digests[..count]
            .par_iter()
            .map(|d| zeros_of::<Self>(*d))
            .collect()
    }
}

/// The precomputed answers: `zeros[i]` for nonce `start + i`.
#[derive(Default)]
struct Window {
    start: u64,
    zeros: Vec<u8>,
}

/// winter-crypto's `DefaultRandomCoin` with a parallel proof-of-work search (see the module docs).
pub struct GrindingCoin<H: GrindingHash> {
    seed: H::Digest,
    counter: u64,
    window: Mutex<Window>,
}

impl<H: GrindingHash> GrindingCoin<H> {
    fn next(&mut self) -> H::Digest {
        self.counter += 1;
        H::merge_with_int(self.seed, self.counter)
    }

    fn reset_window(&mut self) {
        *self.window.get_mut().unwrap_or_else(|e| e.into_inner()) = Window::default();
    }
}

impl<H: GrindingHash> RandomCoin for GrindingCoin<H> {
    type BaseField = BaseElement;
    type Hasher = H;

    fn new(seed: &[BaseElement]) -> Self {
        GrindingCoin {
            seed: H::hash_elements(seed),
            counter: 0,
            window: Mutex::new(Window::default()),
        }
    }

    fn reseed(&mut self, data: H::Digest) {
        self.seed = H::merge(&[self.seed, data]);
        self.counter = 0;
        self.reset_window();
    }

    fn check_leading_zeros(&self, value: u64) -> u32 {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let offset = value.wrapping_sub(w.start);
        if let Some(z) = usize::try_from(offset).ok().and_then(|i| w.zeros.get(i)) {
            return u32::from(*z);
        }
        // A miss: hash the next window from `value` on.
        let count = WINDOW.min(
            usize::try_from(u64::MAX - value)
                .unwrap_or(usize::MAX)
                .max(1),
        );
        let zeros = H::grind_window(self.seed, value, count);
        let answer = u32::from(zeros[0]);
        *w = Window {
            start: value,
            zeros,
        };
        answer
    }

    fn draw<E: FieldElement<BaseField = BaseElement>>(&mut self) -> Result<E, RandomCoinError> {
        for _ in 0..1000 {
            let value = self.next();
            let bytes = &value.as_bytes()[..E::ELEMENT_BYTES];
            if let Some(element) = E::from_random_bytes(bytes) {
                return Ok(element);
            }
        }
        Err(RandomCoinError::FailedToDrawFieldElement(1000))
    }

    fn draw_integers(
        &mut self,
        num_values: usize,
        domain_size: usize,
        nonce: u64,
    ) -> Result<Vec<usize>, RandomCoinError> {
        // The same checks, draws and reseeding as `DefaultRandomCoin::draw_integers` (which
        // asserts them: winterfell only calls it with a power-of-two domain larger than the
        // number of queries).
        assert!(
            domain_size.is_power_of_two(),
            "domain size must be a power of two"
        );
        assert!(
            num_values < domain_size,
            "number of values must be smaller than domain size"
        );
        self.seed = H::merge_with_int(self.seed, nonce);
        self.counter = 0;
        self.reset_window();
        let v_mask = (domain_size - 1) as u64;
        let mut values = Vec::new();
        for _ in 0..1000 {
            let digest = self.next();
            values.push((head_u64::<H>(digest) & v_mask) as usize);
            if values.len() == num_values {
                break;
            }
        }
        if values.len() < num_values {
            return Err(RandomCoinError::FailedToDrawIntegers(
                num_values,
                values.len(),
                1000,
            ));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use winter_math::fields::QuadExtension;

    use super::*;

    type StockCoin<H> = DefaultRandomCoin<H>;

    /// Drives both coins through the same random operations and compares every answer.
    fn same_as_stock<H: GrindingHash>(seed: u64) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let init: Vec<BaseElement> = (0..rng.gen_range(1..12))
            .map(|_| BaseElement::new(rng.r#gen()))
            .collect();
        let mut ours = GrindingCoin::<H>::new(&init);
        let mut stock = StockCoin::<H>::new(&init);
        for step in 0..40 {
            match rng.gen_range(0..5) {
                0 => {
                    let d = H::hash(&rng.r#gen::<[u8; 16]>());
                    ours.reseed(d);
                    stock.reseed(d);
                }
                1 => {
                    let a: QuadExtension<BaseElement> = ours.draw().expect("draw");
                    let b: QuadExtension<BaseElement> = stock.draw().expect("draw");
                    assert_eq!(a, b, "step {step}: draw");
                }
                2 => {
                    let nonce = rng.gen_range(0..1u64 << 20);
                    assert_eq!(
                        ours.draw_integers(20, 1 << 12, nonce).expect("draw"),
                        stock.draw_integers(20, 1 << 12, nonce).expect("draw"),
                        "step {step}: query positions"
                    );
                }
                3 => {
                    // A sequential search, as winterfell grinds (a low factor keeps it short).
                    let factor = rng.gen_range(0..9);
                    let find = |c: &dyn Fn(u64) -> u32| (1..u64::MAX).find(|&n| c(n) >= factor);
                    let a = find(&|n| ours.check_leading_zeros(n));
                    let b = find(&|n| stock.check_leading_zeros(n));
                    assert_eq!(a, b, "step {step}: nonce for {factor} bits");
                }
                _ => {
                    // Random probes, inside and outside the current window, and at the edges
                    // of the field (values >= p take winterfell's two-element path).
                    let probes = [
                        rng.r#gen::<u64>(),
                        rng.gen_range(0..1 << 14),
                        BaseElement::MODULUS - 1,
                        BaseElement::MODULUS,
                        u64::MAX,
                    ];
                    for v in probes {
                        assert_eq!(
                            ours.check_leading_zeros(v),
                            stock.check_leading_zeros(v),
                            "step {step}: check_leading_zeros({v})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rp64_256_coin_is_the_default_coin() {
        for seed in 0..3 {
            same_as_stock::<Rp64_256>(seed);
        }
    }

    #[test]
    fn blake3_coin_is_the_default_coin() {
        for seed in 0..3 {
            same_as_stock::<Blake3_256<BaseElement>>(seed);
        }
    }

    #[test]
    fn windows_cross_the_field_modulus() {
        let seed = Rp64_256::hash(b"edge");
        let start = BaseElement::MODULUS - 3;
        let got = Rp64_256::grind_window(seed, start, 6);
        for (i, z) in got.iter().enumerate() {
            let want = zeros_of::<Rp64_256>(Rp64_256::merge_with_int(seed, start + i as u64));
            assert_eq!(*z, want, "nonce p - 3 + {i}");
        }
    }

    #[test]
    fn a_twelve_bit_search_finds_the_stock_nonce() {
        let init = [BaseElement::new(42), BaseElement::new(7)];
        let ours = GrindingCoin::<Rp64_256>::new(&init);
        let stock = StockCoin::<Rp64_256>::new(&init);
        let a = (1..u64::MAX).find(|&n| ours.check_leading_zeros(n) >= 12);
        let b = (1..u64::MAX).find(|&n| stock.check_leading_zeros(n) >= 12);
        assert!(a.is_some());
        assert_eq!(a, b);
    }
}
