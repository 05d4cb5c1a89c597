//! A SHAKE-256 key derivation function with explicit domain labels.
//!
//! The hashed input is an unambiguous encoding of the label, the inputs and the output length:
//!
//! ```text
//! SHAKE-256( "EPA-KDF-v1" || lp(label) || lp(input_1) || ... || lp(input_n) || u64le(n) || u64le(out_len) )
//! lp(x) = u64le(len(x)) || x
//! ```
//!
//! Every field is length-prefixed, and the field count and output length close the input, so two
//! different `(label, inputs, out_len)` never hash the same bytes: outputs of different lengths
//! are independent (not prefixes of each other), and moving bytes between fields changes the
//! result.
//!
//! ```
//! use epa_crypto::kdf::Kdf;
//!
//! let key: [u8; 32] = *Kdf::new(b"EPA-v1/example").input(b"secret").input(&7u32.to_le_bytes()).derive_array();
//! assert_ne!(key, *Kdf::new(b"EPA-v1/example").input(b"secre").input(b"t\x07\0\0\0").derive_array::<32>());
//! ```

use sha3::Shake256;
use sha3::digest::{ExtendableOutput, Update, XofReader};
use zeroize::Zeroizing;

/// Prefix absorbed before everything else, versioning the KDF construction itself.
pub const KDF_PREFIX: &[u8] = b"EPA-KDF-v1";

/// An incremental SHAKE-256 KDF: a label, then any number of length-prefixed inputs.
#[derive(Clone)]
pub struct Kdf {
    shake: Shake256,
    inputs: u64,
}

impl core::fmt::Debug for Kdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The absorbed state depends on secrets: show only the input count.
        f.debug_struct("Kdf").field("inputs", &self.inputs).finish()
    }
}

fn absorb_lp(shake: &mut Shake256, data: &[u8]) {
    shake.update(&(data.len() as u64).to_le_bytes());
    shake.update(data);
}

impl Kdf {
    /// Starts a derivation under a domain label, e.g. `b"EPA-v1/seal/key"`. Every use in the
    /// project has its own label.
    pub fn new(label: &[u8]) -> Self {
        let mut shake = Shake256::default();
        shake.update(KDF_PREFIX);
        absorb_lp(&mut shake, label);
        Self { shake, inputs: 0 }
    }

    /// Absorbs one length-prefixed input.
    #[must_use]
    pub fn input(mut self, data: &[u8]) -> Self {
        absorb_lp(&mut self.shake, data);
        self.inputs += 1;
        self
    }

    /// Fills `out` with key material bound to `out.len()`.
    pub fn fill(mut self, out: &mut [u8]) {
        self.shake.update(&self.inputs.to_le_bytes());
        self.shake.update(&(out.len() as u64).to_le_bytes());
        self.shake.finalize_xof().read(out);
    }

    /// Derives `N` bytes, zeroized when dropped.
    pub fn derive_array<const N: usize>(self) -> Zeroizing<[u8; N]> {
        let mut out = Zeroizing::new([0u8; N]);
        self.fill(out.as_mut());
        out
    }

    /// Derives `len` bytes, zeroized when dropped.
    pub fn derive_vec(self, len: usize) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![0u8; len]);
        self.fill(&mut out);
        out
    }
}

/// One-shot form of [`Kdf`]: `derive(label, &[a, b], out)`.
pub fn derive(label: &[u8], inputs: &[&[u8]], out: &mut [u8]) {
    inputs
        .iter()
        .fold(Kdf::new(label), |kdf, input| kdf.input(input))
        .fill(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The construction spelled out independently, as the module docs describe it.
    fn reference(label: &[u8], inputs: &[Vec<u8>], out_len: usize) -> Vec<u8> {
        let mut msg = KDF_PREFIX.to_vec();
        for field in std::iter::once(label).chain(inputs.iter().map(Vec::as_slice)) {
            msg.extend_from_slice(&(field.len() as u64).to_le_bytes());
            msg.extend_from_slice(field);
        }
        msg.extend_from_slice(&(inputs.len() as u64).to_le_bytes());
        msg.extend_from_slice(&(out_len as u64).to_le_bytes());
        let mut out = vec![0u8; out_len];
        Shake256::digest_xof(&msg, &mut out);
        out
    }

    proptest! {
        #[test]
        fn matches_reference(label in proptest::collection::vec(any::<u8>(), 0..40),
                             inputs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..5),
                             out_len in 0usize..200) {
            let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
            let mut out = vec![0u8; out_len];
            derive(&label, &refs, &mut out);
            prop_assert_eq!(&out, &reference(&label, &inputs, out_len));
            let incremental = inputs.iter().fold(Kdf::new(&label), |k, i| k.input(i)).derive_vec(out_len);
            prop_assert_eq!(&out, &*incremental);
        }

        #[test]
        fn field_boundaries_matter(a in proptest::collection::vec(any::<u8>(), 1..40),
                                   b in proptest::collection::vec(any::<u8>(), 0..40)) {
            // Moving the last byte of `a` to the front of `b` must change the output.
            let mut a2 = a.clone();
            let last = a2.pop().expect("a is non-empty by the strategy");
            let mut b2 = vec![last];
            b2.extend_from_slice(&b);
            let x = Kdf::new(b"t").input(&a).input(&b).derive_array::<32>();
            let y = Kdf::new(b"t").input(&a2).input(&b2).derive_array::<32>();
            prop_assert_ne!(*x, *y);
        }
    }

    #[test]
    fn labels_lengths_and_counts_separate() {
        let base = *Kdf::new(b"label-a").input(b"x").derive_array::<32>();
        assert_ne!(base, *Kdf::new(b"label-b").input(b"x").derive_array::<32>());
        // A 64-byte output is not an extension of the 32-byte one.
        assert_ne!(
            &base[..],
            &Kdf::new(b"label-a").input(b"x").derive_vec(64)[..32]
        );
        // An extra empty input changes the result.
        assert_ne!(
            base,
            *Kdf::new(b"label-a")
                .input(b"x")
                .input(b"")
                .derive_array::<32>()
        );
    }
}
