//! The winterfell [`Prover`] implementation shared by every EPA AIR.
//!
//! [`EpaProver`] is generic over the AIR and over a [`ProverComponents`] bundle that names the
//! four swappable pieces of winterfell's prover: the trace low-degree extension (`TraceLde`), the
//! constraint evaluator, the constraint commitment and the vector commitment (`VC`). Accelerated
//! backends plug in by implementing [`ProverComponents`]; winterfell itself is never forked, and
//! the verifier side never sees these types (proofs verify with stock `winterfell::verify`).
//!
//! [`DefaultComponents`] uses winterfell's own CPU implementations.

use core::marker::PhantomData;

use winter_crypto::{DefaultRandomCoin, ElementHasher, MerkleTree, RandomCoin, VectorCommitment};
use winter_math::FieldElement;
use winter_math::fields::f64::BaseElement;
use winter_prover::ConstraintCommitment;
use winterfell::matrix::ColMatrix;
use winterfell::{
    Air, AuxRandElements, CompositionPoly, CompositionPolyTrace, ConstraintCompositionCoefficients,
    ConstraintEvaluator, DefaultConstraintCommitment, DefaultConstraintEvaluator, DefaultTraceLde,
    PartitionOptions, Proof, ProofOptions, Prover, ProverError, StarkDomain, TraceInfo, TraceLde,
    TracePolyTable, TraceTable,
};

use crate::Error;

/// The pieces of winterfell's prover that a backend may replace.
///
/// Every factory receives exactly what the corresponding [`Prover`] method receives. An
/// implementation must produce bit-identical commitments to [`DefaultComponents`] so that proofs
/// do not depend on the backend.
pub trait ProverComponents: Send + Sync {
    /// Hash used for commitments and the random coin.
    type HashFn: ElementHasher<BaseField = BaseElement> + Send + Sync;
    /// Vector commitment scheme over [`Self::HashFn`].
    type VC: VectorCommitment<Self::HashFn>;
    /// Public coin of the prover's channel; it must draw exactly what winter-crypto's
    /// `DefaultRandomCoin` over [`Self::HashFn`] draws (the verifier's coin).
    type RandomCoin: RandomCoin<BaseField = BaseElement, Hasher = Self::HashFn> + Send + Sync;
    /// Trace LDE and commitment.
    type TraceLde<E>: TraceLde<E, HashFn = Self::HashFn, VC = Self::VC>
    where
        E: FieldElement<BaseField = BaseElement>;
    /// Constraint evaluator for AIR `A`.
    type ConstraintEvaluator<'a, A, E>: ConstraintEvaluator<E, Air = A>
    where
        A: Air<BaseField = BaseElement> + 'a,
        E: FieldElement<BaseField = BaseElement>;
    /// Composition polynomial LDE and commitment.
    type ConstraintCommitment<E>: ConstraintCommitment<E, HashFn = Self::HashFn, VC = Self::VC>
    where
        E: FieldElement<BaseField = BaseElement>;

    /// Builds the trace LDE (see [`Prover::new_trace_lde`]).
    fn new_trace_lde<E: FieldElement<BaseField = BaseElement>>(
        &self,
        trace_info: &TraceInfo,
        main_trace: &ColMatrix<BaseElement>,
        domain: &StarkDomain<BaseElement>,
        partition_options: PartitionOptions,
    ) -> (Self::TraceLde<E>, TracePolyTable<E>);

    /// Builds the constraint evaluator (see [`Prover::new_evaluator`]).
    fn new_evaluator<'a, A, E>(
        &self,
        air: &'a A,
        aux_rand_elements: Option<AuxRandElements<E>>,
        composition_coefficients: ConstraintCompositionCoefficients<E>,
    ) -> Self::ConstraintEvaluator<'a, A, E>
    where
        A: Air<BaseField = BaseElement> + 'a,
        E: FieldElement<BaseField = BaseElement>;

    /// Builds the constraint commitment (see [`Prover::build_constraint_commitment`]).
    fn build_constraint_commitment<E: FieldElement<BaseField = BaseElement>>(
        &self,
        composition_poly_trace: CompositionPolyTrace<E>,
        num_constraint_composition_columns: usize,
        domain: &StarkDomain<BaseElement>,
        partition_options: PartitionOptions,
    ) -> (Self::ConstraintCommitment<E>, CompositionPoly<E>);

    /// Proves `trace` with `prover`, whose components are `self`. The default is winterfell's
    /// [`Prover::prove`]; components that run more of the proof themselves (the accelerated
    /// components' pipeline, `accel::pipeline`) override it and produce the same proof bytes.
    fn prove<A>(
        &self,
        prover: &EpaProver<A, Self>,
        trace: TraceTable<BaseElement>,
    ) -> Result<Proof, ProverError>
    where
        Self: Sized,
        A: Air<BaseField = BaseElement> + 'static,
        A::PublicInputs: Clone + Send + Sync,
    {
        Prover::prove(prover, trace)
    }
}

/// Winterfell's stock CPU components with commitment hash `H` and Merkle-tree commitments.
pub struct DefaultComponents<H>(PhantomData<fn() -> H>);

impl<H> DefaultComponents<H> {
    /// Creates the (stateless) default components.
    pub const fn new() -> Self {
        DefaultComponents(PhantomData)
    }
}

impl<H> Default for DefaultComponents<H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H> ProverComponents for DefaultComponents<H>
where
    H: ElementHasher<BaseField = BaseElement> + Send + Sync,
{
    type HashFn = H;
    type VC = MerkleTree<H>;
    type RandomCoin = DefaultRandomCoin<H>;
    type TraceLde<E>
        = DefaultTraceLde<E, H, MerkleTree<H>>
    where
        E: FieldElement<BaseField = BaseElement>;
    type ConstraintEvaluator<'a, A, E>
        = DefaultConstraintEvaluator<'a, A, E>
    where
        A: Air<BaseField = BaseElement> + 'a,
        E: FieldElement<BaseField = BaseElement>;
    type ConstraintCommitment<E>
        = DefaultConstraintCommitment<E, H, MerkleTree<H>>
    where
        E: FieldElement<BaseField = BaseElement>;

    fn new_trace_lde<E: FieldElement<BaseField = BaseElement>>(
        &self,
        trace_info: &TraceInfo,
        main_trace: &ColMatrix<BaseElement>,
        domain: &StarkDomain<BaseElement>,
        partition_options: PartitionOptions,
    ) -> (Self::TraceLde<E>, TracePolyTable<E>) {
        DefaultTraceLde::new(trace_info, main_trace, domain, partition_options)
    }

    fn new_evaluator<'a, A, E>(
        &self,
        air: &'a A,
        aux_rand_elements: Option<AuxRandElements<E>>,
        composition_coefficients: ConstraintCompositionCoefficients<E>,
    ) -> Self::ConstraintEvaluator<'a, A, E>
    where
        A: Air<BaseField = BaseElement> + 'a,
        E: FieldElement<BaseField = BaseElement>,
    {
        DefaultConstraintEvaluator::new(air, aux_rand_elements, composition_coefficients)
    }

    fn build_constraint_commitment<E: FieldElement<BaseField = BaseElement>>(
        &self,
        composition_poly_trace: CompositionPolyTrace<E>,
        num_constraint_composition_columns: usize,
        domain: &StarkDomain<BaseElement>,
        partition_options: PartitionOptions,
    ) -> (Self::ConstraintCommitment<E>, CompositionPoly<E>) {
        DefaultConstraintCommitment::new(
            composition_poly_trace,
            num_constraint_composition_columns,
            domain,
            partition_options,
        )
    }
}

/// A winterfell prover for AIR `A` with backend components `C`.
///
/// The public inputs are fixed when the prover is created (the trace builder computes them), so
/// [`Prover::get_pub_inputs`] only hands back a copy.
pub struct EpaProver<A: Air, C> {
    options: ProofOptions,
    pub_inputs: A::PublicInputs,
    components: C,
}

impl<A, C> EpaProver<A, C>
where
    A: Air<BaseField = BaseElement> + 'static,
    A::PublicInputs: Clone + Send + Sync,
    C: ProverComponents,
{
    /// Creates a prover that proves traces of `A` with public inputs `pub_inputs`.
    pub fn new(options: ProofOptions, pub_inputs: A::PublicInputs, components: C) -> Self {
        EpaProver {
            options,
            pub_inputs,
            components,
        }
    }

    /// Proves `trace` and maps winterfell's error to [`Error::Prove`].
    pub fn prove_trace(
        &self,
        air: &'static str,
        trace: TraceTable<BaseElement>,
    ) -> Result<Proof, Error> {
        self.components
            .prove(self, trace)
            .map_err(|source| Error::Prove { air, source })
    }
}

impl<A, C> Prover for EpaProver<A, C>
where
    A: Air<BaseField = BaseElement> + 'static,
    A::PublicInputs: Clone + Send + Sync,
    C: ProverComponents,
{
    type BaseField = BaseElement;
    type Air = A;
    type Trace = TraceTable<BaseElement>;
    type HashFn = C::HashFn;
    type VC = C::VC;
    type RandomCoin = C::RandomCoin;
    type TraceLde<E>
        = C::TraceLde<E>
    where
        E: FieldElement<BaseField = BaseElement>;
    type ConstraintEvaluator<'a, E>
        = C::ConstraintEvaluator<'a, A, E>
    where
        E: FieldElement<BaseField = BaseElement>;
    type ConstraintCommitment<E>
        = C::ConstraintCommitment<E>
    where
        E: FieldElement<BaseField = BaseElement>;

    fn get_pub_inputs(&self, _trace: &Self::Trace) -> A::PublicInputs {
        self.pub_inputs.clone()
    }

    fn options(&self) -> &ProofOptions {
        &self.options
    }

    fn new_trace_lde<E: FieldElement<BaseField = BaseElement>>(
        &self,
        trace_info: &TraceInfo,
        main_trace: &ColMatrix<BaseElement>,
        domain: &StarkDomain<BaseElement>,
        partition_options: PartitionOptions,
    ) -> (Self::TraceLde<E>, TracePolyTable<E>) {
        self.components
            .new_trace_lde(trace_info, main_trace, domain, partition_options)
    }

    fn new_evaluator<'a, E: FieldElement<BaseField = BaseElement>>(
        &self,
        air: &'a A,
        aux_rand_elements: Option<AuxRandElements<E>>,
        composition_coefficients: ConstraintCompositionCoefficients<E>,
    ) -> Self::ConstraintEvaluator<'a, E> {
        self.components
            .new_evaluator(air, aux_rand_elements, composition_coefficients)
    }

    fn build_constraint_commitment<E: FieldElement<BaseField = BaseElement>>(
        &self,
        composition_poly_trace: CompositionPolyTrace<E>,
        num_constraint_composition_columns: usize,
        domain: &StarkDomain<BaseElement>,
        partition_options: PartitionOptions,
    ) -> (Self::ConstraintCommitment<E>, CompositionPoly<E>) {
        self.components.build_constraint_commitment(
            composition_poly_trace,
            num_constraint_composition_columns,
            domain,
            partition_options,
        )
    }
}
