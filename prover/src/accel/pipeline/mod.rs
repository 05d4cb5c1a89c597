//! The accelerated prover's own proof pipeline: winterfell's proof generation with the FRI layer
//! commitments on a kernels backend and the proof-of-work search on every core.
//!
//! winter-prover 0.13.1 builds the FRI layers inside `Prover::generate_proof` with winter-fri's
//! `FriProver`, which hashes every layer and builds its Merkle tree on the host; its channel and
//! its DEEP composition polynomial are private, so the step cannot be replaced through the
//! `Prover` trait's associated types. This module ports that procedure:
//!
//! 1. [`prove`] dispatches on the field extension as `Prover::prove` does (an AIR with an
//!    auxiliary trace segment is proved by winterfell's own `Prover::prove`, see below);
//! 2. `generate_proof` is winter-prover 0.13.1 `src/lib.rs` `Prover::generate_proof`
//!    (Copyright (c) Facebook, Inc. and its affiliates, MIT license) step for step, calling the
//!    prover's own factories (`new_trace_lde`, `new_evaluator`,
//!    `build_constraint_commitment`) and opening winterfell's tracing spans under the same names
//!    (`build_domain`, `commit_to_main_trace_segment`, `commit_to_constraint_evaluations`,
//!    `build_deep_composition_poly`, `evaluate_deep_composition_poly`, `compute_fri_layers`,
//!    `determine_query_positions`, `build_proof_object`);
//! 3. [`channel`] ports its `ProverChannel`; the grinding is winterfell's sequential search over
//!    the prover's coin (for [`super::AccelComponents`] the parallel, deterministic
//!    [`super::coin::GrindingCoin`]), so the nonce is stock winterfell's;
//! 4. [`deep`] ports its `DeepCompositionPoly`;
//! 5. [`fri`] ports winter-fri's `FriProver` with every layer committed on the backend.
//!
//! The proof is byte-identical to stock winterfell's (`tests/accel.rs`,
//! `tests/accel_pipeline.rs`: both AIRs, both hashes, every FRI folding factor, several
//! remainder degrees, 1 and 4 threads). Auxiliary trace segments are not ported (no EPA AIR has
//! one): such a proof goes through winterfell's `Prover::prove` with the same components, so
//! it is still correct, only without the FRI layers on the backend.

pub mod channel;
pub mod deep;
pub mod fri;

use kernels::Backend;
use tracing::{Level, event, info_span};
use winter_crypto::MerkleTree;
use winter_math::fields::f64::BaseElement;
use winter_math::fields::{CubeExtension, QuadExtension};
use winter_math::{FieldElement, ToElements, fft::infer_degree};
use winter_prover::ConstraintCommitment;
use winterfell::{
    Air, ConstraintEvaluator, FieldExtension, Proof, Prover, ProverError, StarkDomain, Trace,
    TraceLde,
};

use self::channel::ProverChannel;
use self::deep::DeepCompositionPoly;
use self::fri::FriProver;
use super::AccelHash;

/// Proves `trace` with `prover`'s components and options, committing the FRI layers on
/// `backend`: the same proof as `Prover::prove(prover, trace)`, byte for byte.
///
/// # Errors
/// Winterfell's [`ProverError::UnsupportedFieldExtension`] for an extension the base field
/// does not support, as `Prover::prove`; every other failure panics as in winterfell.
pub fn prove<P, B, H>(prover: &P, backend: &B, trace: P::Trace) -> Result<Proof, ProverError>
where
    P: Prover<BaseField = BaseElement, HashFn = H, VC = MerkleTree<H>>,
    <P::Air as Air>::PublicInputs: Send,
    B: Backend,
    H: AccelHash,
{
    if trace.info().is_multi_segment() {
        return prover.prove(trace);
    }
    match prover.options().field_extension() {
        FieldExtension::None => generate_proof::<P, B, H, BaseElement>(prover, backend, trace),
        FieldExtension::Quadratic => {
            if !<QuadExtension<BaseElement>>::is_supported() {
                return Err(ProverError::UnsupportedFieldExtension(2));
            }
            generate_proof::<P, B, H, QuadExtension<BaseElement>>(prover, backend, trace)
        }
        FieldExtension::Cubic => {
            if !<CubeExtension<BaseElement>>::is_supported() {
                return Err(ProverError::UnsupportedFieldExtension(3));
            }
            generate_proof::<P, B, H, CubeExtension<BaseElement>>(prover, backend, trace)
        }
    }
}

/// winter-prover's `Prover::generate_proof` for a single-segment trace (see the module docs).
fn generate_proof<P, B, H, E>(
    prover: &P,
    backend: &B,
    trace: P::Trace,
) -> Result<Proof, ProverError>
where
    P: Prover<BaseField = BaseElement, HashFn = H, VC = MerkleTree<H>>,
    B: Backend,
    H: AccelHash,
    E: FieldElement<BaseField = BaseElement>,
{
    // 0 ----- instantiate AIR and prover channel -------------------------------------------------
    let pub_inputs = prover.get_pub_inputs(&trace);
    let pub_inputs_elements = pub_inputs.to_elements();
    let air = P::Air::new(trace.info().clone(), pub_inputs, prover.options().clone());
    let mut channel = ProverChannel::<P::Air, E, H, P::RandomCoin>::new(&air, pub_inputs_elements);

    // 1 ----- commit to the execution trace ------------------------------------------------------
    let lde_domain_size = air.lde_domain_size();
    let trace_length = air.trace_length();
    let domain = info_span!("build_domain", trace_length, lde_domain_size)
        .in_scope(|| StarkDomain::new(&air));
    assert_eq!(domain.lde_domain_size(), lde_domain_size);
    assert_eq!(domain.trace_length(), trace_length);

    let (trace_lde, trace_polys) = info_span!("commit_to_main_trace_segment").in_scope(|| {
        let (trace_lde, trace_polys) = prover.new_trace_lde::<E>(
            trace.info(),
            trace.main_segment(),
            &domain,
            prover.options().partition_options(),
        );
        channel.commit_trace(trace_lde.get_main_trace_commitment());
        (trace_lde, trace_polys)
    });

    // the same (expensive) check as winterfell, in debug builds only
    #[cfg(debug_assertions)]
    trace.validate::<P::Air, E>(&air, None);
    drop(trace);

    // 2 ----- evaluate constraints ---------------------------------------------------------------
    let ce_domain_size = air.ce_domain_size();
    let composition_poly_trace = prover
        .new_evaluator(&air, None, channel.get_constraint_composition_coeffs())
        .evaluate(&trace_lde, &domain);
    assert_eq!(composition_poly_trace.num_rows(), ce_domain_size);

    // 3 ----- commit to constraint evaluations ---------------------------------------------------
    let (constraint_commitment, composition_poly) = info_span!("commit_to_constraint_evaluations")
        .in_scope(|| {
            let (constraint_commitment, composition_poly) = prover
                .build_constraint_commitment::<E>(
                    composition_poly_trace,
                    air.context().num_constraint_composition_columns(),
                    &domain,
                    prover.options().partition_options(),
                );
            channel.commit_constraints(constraint_commitment.commitment());
            (constraint_commitment, composition_poly)
        });

    // 4 ----- build DEEP composition polynomial --------------------------------------------------
    let deep_composition_poly = info_span!("build_deep_composition_poly").in_scope(|| {
        let z = channel.get_ood_point();
        let ood_trace_states = trace_polys.get_ood_frame(z);
        let ood_evaluations = composition_poly.get_ood_frame(z);
        channel.send_ood_evaluations(&ood_trace_states, &ood_evaluations);
        let deep_coefficients = channel.get_deep_composition_coeffs();
        let mut deep_composition_poly = DeepCompositionPoly::new(z, deep_coefficients);
        deep_composition_poly.add_trace_polys(
            trace_polys,
            composition_poly,
            ood_trace_states,
            ood_evaluations,
        );
        event!(Level::DEBUG, "degree: {}", deep_composition_poly.degree());
        deep_composition_poly
    });
    assert_eq!(trace_length - 2, deep_composition_poly.degree());

    // 5 ----- evaluate DEEP composition polynomial over LDE domain -------------------------------
    let deep_evaluations = info_span!("evaluate_deep_composition_poly").in_scope(|| {
        let deep_evaluations = deep_composition_poly.evaluate(&domain);
        debug_assert_eq!(
            trace_length - 2,
            infer_degree(&deep_evaluations, domain.offset())
        );
        deep_evaluations
    });

    // 6 ----- compute FRI layers for the composition polynomial ----------------------------------
    let fri_options = air.options().to_fri_options();
    let num_layers = fri_options.num_fri_layers(lde_domain_size);
    let mut fri_prover = FriProver::<E, _, H, B>::new(fri_options, backend);
    info_span!("compute_fri_layers", num_layers)
        .in_scope(|| fri_prover.build_layers(&mut channel, deep_evaluations));

    // 7 ----- determine query positions ----------------------------------------------------------
    let query_positions = {
        let grinding_factor = air.options().grinding_factor();
        let num_positions = air.options().num_queries();
        let _span =
            info_span!("determine_query_positions", grinding_factor, num_positions).entered();
        channel.grind_query_seed();
        let query_positions = channel.get_query_positions();
        event!(
            Level::DEBUG,
            "query_positions_len: {}",
            query_positions.len()
        );
        query_positions
    };

    // 8 ----- build proof object -----------------------------------------------------------------
    let proof = info_span!("build_proof_object").in_scope(|| {
        let fri_proof = fri_prover.build_proof(&query_positions);
        let trace_queries = trace_lde.query(&query_positions);
        let constraint_queries = constraint_commitment.query(&query_positions);
        channel.build_proof(
            trace_queries,
            constraint_queries,
            fri_proof,
            query_positions.len(),
        )
    });
    Ok(proof)
}
