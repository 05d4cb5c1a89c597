//! `smt-update` at the default depth 32 on populated trees.
//!
//! `crypto_smt_agrees_with_the_reference_tree` (default suite) checks `crypto::smt`'s batch
//! witnesses against a minimal reference tree kept here. The larger batches are too slow for
//! the default suite: `cargo test -p epa-prover --test smt_update_large -- --ignored
//! --nocapture`. Each proves a batch of random updates on a tree of 1000 random leaves with the
//! `fast-96` preset and both hashes, checks that the proof verifies and that it does not verify
//! for the batch with one value changed, and prints the timings and the proof size.

use std::collections::HashMap;
use std::time::Instant;

use crypto::smt::{MemStore, Smt};
use epa_prover::air::smt_update::{self, SmtUpdate, SmtUpdatePublicInputs, SmtUpdateWitness, Word};
use epa_prover::options::{OptionsChoice, Preset};
use epa_prover::prover::{DefaultComponents, ProverComponents};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use winter_crypto::hashers::{Blake3_256, Rp64_256};
use winter_crypto::{ElementHasher, Hasher};
use winter_math::{FieldElement, fields::f64::BaseElement};
use winterfell::AcceptableOptions;

/// A minimal reference sparse Merkle tree (independent of `crypto::smt`): nodes that differ
/// from the empty-subtree default, keyed by (level, index).
struct ReferenceTree {
    depth: u8,
    empty: Vec<Word>,
    nodes: HashMap<(u8, u64), Word>,
}

impl ReferenceTree {
    fn new(depth: u8) -> Self {
        let mut empty = vec![[BaseElement::ZERO; 4]];
        for level in 0..depth as usize {
            let e = empty[level];
            empty.push(Rp64_256::merge(&[e.into(), e.into()]).into());
        }
        ReferenceTree {
            depth,
            empty,
            nodes: HashMap::new(),
        }
    }

    fn node(&self, level: u8, index: u64) -> Word {
        *self
            .nodes
            .get(&(level, index))
            .unwrap_or(&self.empty[level as usize])
    }

    fn root(&self) -> Word {
        self.node(self.depth, 0)
    }

    fn update(&mut self, key: u64, value: Word) -> SmtUpdateWitness {
        let siblings: Vec<Word> = (0..self.depth)
            .map(|level| self.node(level, (key >> level) ^ 1))
            .collect();
        let old_value = self.node(0, key);
        let old_root = self.root();
        let mut node = value;
        self.nodes.insert((0, key), value);
        for level in 0..self.depth {
            let sibling = siblings[level as usize];
            let pair = if (key >> level) & 1 == 1 {
                [sibling.into(), node.into()]
            } else {
                [node.into(), sibling.into()]
            };
            node = Rp64_256::merge(&pair).into();
            self.nodes.insert((level + 1, key >> (level + 1)), node);
        }
        SmtUpdateWitness {
            key,
            old_value,
            new_value: value,
            siblings,
            old_root,
            new_root: node,
        }
    }
}

fn batch(count: usize, seed: u64) -> Vec<SmtUpdateWitness> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut tree = ReferenceTree::new(32);
    let word = |rng: &mut ChaCha20Rng| {
        [(); 4].map(|_| BaseElement::new(rng.gen_range(0..0xffff_ffff_0000_0001)))
    };
    for _ in 0..1000 {
        let (key, value) = (rng.gen_range(0..1u64 << 32), word(&mut rng));
        tree.update(key, value);
    }
    (0..count)
        .map(|_| {
            let (key, value) = (rng.gen_range(0..1u64 << 32), word(&mut rng));
            tree.update(key, value)
        })
        .collect()
}

fn run<H>(name: &str, count: usize)
where
    H: ElementHasher<BaseField = BaseElement> + Send + Sync,
    DefaultComponents<H>: ProverComponents<HashFn = H>,
{
    let witnesses = batch(count, count as u64);
    let options = OptionsChoice::from(Preset::Fast96)
        .params()
        .to_winterfell()
        .expect("preset is valid");
    let acceptable = AcceptableOptions::OptionSet(vec![options.clone()]);

    let start = Instant::now();
    let (proof, pi) = smt_update::prove(32, &witnesses, options, DefaultComponents::<H>::new())
        .expect("honest batch proves");
    let prove_time = start.elapsed();
    let proof_len = proof.to_bytes().len();

    let start = Instant::now();
    smt_update::verify::<H>(proof.clone(), &pi, &acceptable).expect("honest proof verifies");
    let verify_time = start.elapsed();

    let mut list: Vec<SmtUpdate> = pi.updates().to_vec();
    list[count / 2].new_value[0] += BaseElement::ONE;
    let other = SmtUpdatePublicInputs::new(32, *pi.old_root(), *pi.new_root(), list)
        .expect("valid statement");
    assert!(smt_update::verify::<H>(proof, &other, &acceptable).is_err());

    println!(
        "smt-update depth 32, {count} updates, {name}: trace {} rows, prove {:.0} ms, verify {:.1} ms, proof {} bytes",
        pi.trace_length(),
        prove_time.as_secs_f64() * 1e3,
        verify_time.as_secs_f64() * 1e3,
        proof_len
    );
}

/// `crypto::smt` batch witnesses on a populated depth-32 tree equal the reference tree's, and
/// they prove (not ignored: cheap).
#[test]
fn crypto_smt_agrees_with_the_reference_tree() {
    let mut rng = ChaCha20Rng::seed_from_u64(0xc0ffee);
    let mut reference = ReferenceTree::new(32);
    let mut tree = Smt::new(32, MemStore::new()).expect("valid depth");
    let word = |rng: &mut ChaCha20Rng| {
        [(); 4].map(|_| BaseElement::new(rng.gen_range(0..0xffff_ffff_0000_0001)))
    };
    let prefill: Vec<(u64, Word)> = (0..300)
        .map(|_| (rng.gen_range(0..1u64 << 32), word(&mut rng)))
        .collect();
    let expected: Vec<_> = prefill
        .iter()
        .map(|&(k, v)| reference.update(k, v))
        .collect();
    assert_eq!(
        tree.update_batch(&prefill).expect("keys in range"),
        expected
    );
    let mut updates: Vec<(u64, Word)> = (0..6)
        .map(|_| (rng.gen_range(0..1u64 << 32), word(&mut rng)))
        .collect();
    updates.push((prefill[7].0, word(&mut rng)));
    updates.push((updates[2].0, [BaseElement::ZERO; 4]));
    let expected: Vec<_> = updates
        .iter()
        .map(|&(k, v)| reference.update(k, v))
        .collect();
    let witnesses = tree.update_batch(&updates).expect("keys in range");
    assert_eq!(witnesses, expected);
    assert_eq!(tree.root(), reference.root());
    smt_update::build_trace(32, &witnesses).expect("witnesses chain and hash correctly");
}

#[test]
#[ignore = "large: run with --ignored"]
fn depth_32_batches_of_16_and_64() {
    for count in [16, 64] {
        run::<Blake3_256<BaseElement>>("blake3-256", count);
        run::<Rp64_256>("rp64-256", count);
    }
}
