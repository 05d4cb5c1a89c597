//! The prover's side of the Fiat-Shamir channel.
//!
//! Ported from winter-prover 0.13.1 `src/channel.rs` (`ProverChannel`, private there), Copyright
//! (c) Facebook, Inc. and its affiliates, MIT license. The commitments, the public-coin
//! reseeding, the draws and the proof assembly are unchanged, so the transcript and the proof
//! bytes are stock winterfell's. One difference: the proof-of-work search is always winterfell's
//! sequential `(1..).find(..)` (never its `concurrent` `find_any`), so it returns the smallest
//! nonce; a coin such as [`crate::accel::coin::GrindingCoin`] answers it on every core.

use core::marker::PhantomData;

use winter_crypto::{ElementHasher, Hasher, RandomCoin};
use winter_fri::FriProof;
use winter_math::fields::f64::BaseElement;
use winter_math::{FieldElement, ToElements};
use winter_prover::proof::{
    Commitments, Context, OodFrame, Proof, Queries, QuotientOodFrame, TraceOodFrame,
    merge_ood_evaluations,
};
use winterfell::{Air, ConstraintCompositionCoefficients, DeepCompositionCoefficients};

/// The prover channel: the proof context, the commitments sent so far, the out-of-domain
/// frame, the public coin and the proof-of-work nonce.
pub struct ProverChannel<'a, A, E, H, R>
where
    A: Air<BaseField = BaseElement>,
    E: FieldElement<BaseField = BaseElement>,
    H: ElementHasher<BaseField = BaseElement>,
    R: RandomCoin<BaseField = BaseElement, Hasher = H>,
{
    air: &'a A,
    public_coin: R,
    context: Context,
    commitments: Commitments,
    ood_frame: OodFrame,
    pow_nonce: u64,
    _e: PhantomData<fn() -> E>,
}

impl<'a, A, E, H, R> ProverChannel<'a, A, E, H, R>
where
    A: Air<BaseField = BaseElement>,
    E: FieldElement<BaseField = BaseElement>,
    H: ElementHasher<BaseField = BaseElement>,
    R: RandomCoin<BaseField = BaseElement, Hasher = H>,
{
    /// A channel for `air` whose public coin is seeded with the proof context and the public
    /// inputs.
    pub fn new(air: &'a A, mut pub_inputs_elements: Vec<BaseElement>) -> Self {
        let num_constraints =
            air.context().num_assertions() + air.context().num_transition_constraints();
        let context = Context::new::<BaseElement>(
            air.trace_info().clone(),
            air.options().clone(),
            num_constraints,
        );
        let mut coin_seed_elements = context.to_elements();
        coin_seed_elements.append(&mut pub_inputs_elements);
        ProverChannel {
            air,
            public_coin: R::new(&coin_seed_elements),
            context,
            commitments: Commitments::default(),
            ood_frame: OodFrame::default(),
            pow_nonce: 0,
            _e: PhantomData,
        }
    }

    /// Commits to a trace segment's LDE.
    pub fn commit_trace(&mut self, trace_root: H::Digest) {
        self.commitments.add::<H>(&trace_root);
        self.public_coin.reseed(trace_root);
    }

    /// Commits to the evaluations of the constraint composition polynomial.
    pub fn commit_constraints(&mut self, constraint_root: H::Digest) {
        self.commitments.add::<H>(&constraint_root);
        self.public_coin.reseed(constraint_root);
    }

    /// Records the out-of-domain evaluations and reseeds the coin with their hash.
    pub fn send_ood_evaluations(
        &mut self,
        trace_ood_frame: &TraceOodFrame<E>,
        constraints_ood_frame: &QuotientOodFrame<E>,
    ) {
        self.ood_frame.set_trace_states::<E>(trace_ood_frame);
        self.ood_frame
            .set_quotient_states::<E>(constraints_ood_frame);
        let ood_evals = merge_ood_evaluations(trace_ood_frame, constraints_ood_frame);
        let digest = H::hash_elements(&ood_evals);
        self.public_coin.reseed(digest);
    }

    /// The public coin.
    pub fn public_coin(&mut self) -> &mut R {
        &mut self.public_coin
    }

    /// Coefficients of the constraint composition polynomial.
    pub fn get_constraint_composition_coeffs(&mut self) -> ConstraintCompositionCoefficients<E> {
        self.air
            .get_constraint_composition_coefficients(&mut self.public_coin)
            .expect("failed to draw composition coefficients")
    }

    /// The out-of-domain point.
    pub fn get_ood_point(&mut self) -> E {
        self.public_coin.draw().expect("failed to draw OOD point")
    }

    /// Coefficients of the DEEP composition polynomial.
    pub fn get_deep_composition_coeffs(&mut self) -> DeepCompositionCoefficients<E> {
        self.air
            .get_deep_composition_coefficients(&mut self.public_coin)
            .expect("failed to draw DEEP composition coefficients")
    }

    /// Query positions in the LDE domain, drawn with the proof-of-work nonce, sorted and without
    /// duplicates.
    pub fn get_query_positions(&mut self) -> Vec<usize> {
        let num_queries = self.context.options().num_queries();
        let lde_domain_size = self.context.lde_domain_size();
        let mut positions = self
            .public_coin
            .draw_integers(num_queries, lde_domain_size, self.pow_nonce)
            .expect("failed to draw query position");
        positions.sort_unstable();
        positions.dedup();
        positions
    }

    /// Finds the smallest nonce whose hash with the coin's seed has `grinding_factor` leading
    /// zeros: winterfell's sequential search, whatever the coin does inside
    /// `check_leading_zeros`.
    pub fn grind_query_seed(&mut self) {
        let grinding_factor = self.context.options().grinding_factor();
        let nonce = (1..u64::MAX)
            .find(|&nonce| self.public_coin.check_leading_zeros(nonce) >= grinding_factor)
            .expect("nonce not found");
        self.pow_nonce = nonce;
    }

    /// Assembles the proof from the channel's state and the queries.
    pub fn build_proof(
        self,
        trace_queries: Vec<Queries>,
        constraint_queries: Queries,
        fri_proof: FriProof,
        num_query_positions: usize,
    ) -> Proof {
        assert!(
            num_query_positions <= u8::MAX as usize,
            "num_query_positions too big"
        );
        Proof {
            context: self.context,
            commitments: self.commitments,
            ood_frame: self.ood_frame,
            trace_queries,
            constraint_queries,
            fri_proof,
            pow_nonce: self.pow_nonce,
            num_unique_queries: num_query_positions as u8,
        }
    }
}

impl<A, E, H, R> winter_fri::ProverChannel<E> for ProverChannel<'_, A, E, H, R>
where
    A: Air<BaseField = BaseElement>,
    E: FieldElement<BaseField = BaseElement>,
    H: ElementHasher<BaseField = BaseElement>,
    R: RandomCoin<BaseField = BaseElement, Hasher = H>,
{
    type Hasher = H;

    fn commit_fri_layer(&mut self, layer_root: <H as Hasher>::Digest) {
        self.commitments.add::<H>(&layer_root);
        self.public_coin.reseed(layer_root);
    }

    fn draw_fri_alpha(&mut self) -> E {
        self.public_coin.draw().expect("failed to draw FRI alpha")
    }
}
