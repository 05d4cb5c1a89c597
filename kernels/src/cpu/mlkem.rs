//! Batch ML-KEM-768 decapsulation on the CPU: one key, many ciphertexts, all cores.
//!
//! Decapsulating `n` ciphertexts under one key with the packed API parses the secret key,
//! deserializes `t`, hashes nothing new but re-expands the matrix `A` from its seed (nine
//! SHAKE-128 rejection samplings) once per ciphertext. Here the key is unpacked **once per
//! batch** into libcrux's unpacked key pair (secret vector in NTT form, `t` in NTT form, `A`
//! expanded, `H(ek)` and the implicit-rejection value `z`), and every ciphertext is decapsulated
//! against it with libcrux's unpacked decapsulation, spread over the rayon pool.
//!
//! The instruction set is chosen at run time: libcrux's AVX2 instantiation when this CPU has
//! AVX2 ([`KemPath::Avx2`]), its portable one otherwise ([`KemPath::Portable`]). The result is
//! bit-exact with [`epa_crypto::kem::mlkem768::DecapsulationKey::decapsulate`], including the
//! implicit-rejection secret `J(z || c)` of tampered ciphertexts; the conformance tests check
//! it against the reference and aws-lc-rs.

use std::{fmt, sync::atomic};

use crypto::kem::{
    SharedSecret,
    mlkem768::{Ciphertext, DecapsulationKey},
};
use libcrux_ml_kem::mlkem768::{self, MlKem768Ciphertext, MlKem768PrivateKey};
use rayon::prelude::*;
use zeroize::Zeroize;

/// Which libcrux ML-KEM implementation the CPU backend's batch decapsulation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KemPath {
    /// libcrux's portable (scalar) implementation.
    Portable,
    /// libcrux's AVX2 implementation (x86-64 with AVX2, detected at run time).
    Avx2,
}

impl KemPath {
    /// The fastest path this CPU can run, detected at run time.
    pub fn detect() -> KemPath {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return KemPath::Avx2;
        }
        KemPath::Portable
    }

    /// Lower-case name as used in logs and bench ids.
    pub fn name(self) -> &'static str {
        match self {
            KemPath::Portable => "portable",
            KemPath::Avx2 => "avx2",
        }
    }

    /// The implementation that decapsulates a batch of two or more ciphertexts on this path,
    /// as [`crate::Backend::kem_implementation`] reports it: `libcrux-avx2-unpacked` or
    /// `libcrux-portable-unpacked` (the key unpacked once per batch).
    pub fn implementation(self) -> &'static str {
        match self {
            KemPath::Portable => "libcrux-portable-unpacked",
            KemPath::Avx2 => "libcrux-avx2-unpacked",
        }
    }
}

impl fmt::Display for KemPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Ciphertexts per rayon task: small enough to balance two to a few dozen cores on batches of
/// a few hundred, large enough that task overhead (~1 us) stays below 1% of the work.
const CIPHERTEXTS_PER_TASK: usize = 8;

/// Overwrites a libcrux unpacked key with its default (all-zero) value through a volatile
/// write, so the secret vector, `z` and everything derived from the key are gone before the
/// memory is freed.
fn wipe<T: Default>(key: &mut T) {
    // SAFETY: `key` is a valid, aligned, exclusive reference to an initialised `T`; writing a
    // fresh `T` over it without dropping the old value is sound because the libcrux unpacked
    // key types are plain arrays of integers and SIMD vectors (no heap data, no `Drop`).
    unsafe { std::ptr::write_volatile(key as *mut T, T::default()) };
    atomic::compiler_fence(atomic::Ordering::SeqCst);
}

/// A decapsulation key unpacked for one implementation, zeroized on drop.
enum Unpacked {
    Portable(Box<mlkem768::portable::unpacked::MlKem768KeyPairUnpacked>),
    #[cfg(target_arch = "x86_64")]
    Avx2(Box<mlkem768::avx2::unpacked::MlKem768KeyPairUnpacked>),
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        match self {
            Unpacked::Portable(k) => wipe(&mut **k),
            #[cfg(target_arch = "x86_64")]
            Unpacked::Avx2(k) => wipe(&mut **k),
        }
    }
}

impl Unpacked {
    /// Unpacks `dk` for `path`. `path` must be supported by this CPU ([`KemPath::detect`]
    /// or `Portable`).
    fn new(dk: &DecapsulationKey, path: KemPath) -> Self {
        let mut packed = Box::new(MlKem768PrivateKey::from(dk.as_bytes()));
        let unpacked = match path {
            #[cfg(target_arch = "x86_64")]
            KemPath::Avx2 => {
                let mut k = Box::new(mlkem768::avx2::unpacked::init_key_pair());
                mlkem768::avx2::unpacked::key_pair_from_private_mut(&packed, &mut k);
                Unpacked::Avx2(k)
            }
            _ => {
                let mut k = Box::new(mlkem768::portable::unpacked::init_key_pair());
                mlkem768::portable::unpacked::key_pair_from_private_mut(&packed, &mut k);
                Unpacked::Portable(k)
            }
        };
        packed[0..].zeroize();
        unpacked
    }

    fn decapsulate(&self, ct: &Ciphertext) -> SharedSecret {
        let ct = MlKem768Ciphertext::from(ct.as_bytes());
        let ss = match self {
            Unpacked::Portable(k) => mlkem768::portable::unpacked::decapsulate(k, &ct),
            #[cfg(target_arch = "x86_64")]
            Unpacked::Avx2(k) => mlkem768::avx2::unpacked::decapsulate(k, &ct),
        };
        SharedSecret::from_bytes(ss)
    }
}

/// Decapsulates every ciphertext under `dk` on the current rayon pool with `path` (which the
/// caller has checked this CPU supports). The output has one secret per ciphertext, in order.
pub(crate) fn decap_batch(
    dk: &DecapsulationKey,
    cts: &[Ciphertext],
    path: KemPath,
) -> Vec<SharedSecret> {
    match cts {
        [] => Vec::new(),
        // Unpacking costs about one decapsulation: not worth it for a single ciphertext, for
        // which libcrux's packed API (its own run-time AVX2 dispatch) is the same computation.
        [ct] => vec![dk.decapsulate(ct)],
        _ => {
            let key = Unpacked::new(dk, path);
            // An indexed parallel iterator collects straight into one allocation of exactly
            // `cts.len()` secrets: no reallocation leaves secret copies behind.
            cts.par_iter()
                .with_min_len(CIPHERTEXTS_PER_TASK)
                .map(|ct| key.decapsulate(ct))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto::kem::mlkem768::KeyPair;
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    fn check_path(path: KemPath) {
        let mut rng = ChaCha20Rng::from_entropy();
        let mut seed = [0u8; 64];
        rng.fill_bytes(&mut seed);
        let pair = KeyPair::from_seed(&seed);
        let mut cts = Vec::new();
        let mut expected = Vec::new();
        for i in 0..9 {
            let mut m = [0u8; 32];
            rng.fill_bytes(&mut m);
            let (ct, ss) = pair.encapsulation_key.encapsulate(&m);
            if i % 3 == 0 {
                let mut bytes = *ct.as_bytes();
                let at = (rng.next_u32() as usize) % bytes.len();
                bytes[at] ^= 1 << (rng.next_u32() % 8);
                let bad = Ciphertext::from_bytes(&bytes).expect("1088 bytes is a ciphertext");
                let reject = pair.decapsulation_key.decapsulate(&bad);
                assert_ne!(reject, ss, "a flipped bit must change the secret");
                expected.push(reject);
                cts.push(bad);
            } else {
                expected.push(ss);
                cts.push(ct);
            }
        }
        let got = decap_batch(&pair.decapsulation_key, &cts, path);
        assert_eq!(got, expected, "path {path}");
    }

    #[test]
    fn portable_path_matches_reference() {
        check_path(KemPath::Portable);
    }

    #[test]
    fn detected_path_matches_reference() {
        check_path(KemPath::detect());
    }

    #[test]
    fn wipe_zeroes_the_unpacked_key() {
        let pair = KeyPair::from_seed(&[7u8; 64]);
        let mut k = mlkem768::portable::unpacked::init_key_pair();
        let packed = MlKem768PrivateKey::from(pair.decapsulation_key.as_bytes());
        mlkem768::portable::unpacked::key_pair_from_private_mut(&packed, &mut k);
        let before = mlkem768::portable::unpacked::key_pair_serialized_private_key(&k);
        assert_eq!(before.as_slice(), pair.decapsulation_key.as_bytes());
        wipe(&mut k);
        let after = mlkem768::portable::unpacked::key_pair_serialized_private_key(&k);
        // The secret part (`dk_pke`, 1152 bytes) and `z` (last 32) are zero after the wipe.
        assert!(after.as_slice()[..1152].iter().all(|&b| b == 0));
        assert!(after.as_slice()[2400 - 32..].iter().all(|&b| b == 0));
    }
}
