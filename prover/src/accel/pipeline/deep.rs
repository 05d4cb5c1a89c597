//! The DEEP composition polynomial.
//!
//! Ported from winter-prover 0.13.1 `src/composer/mod.rs` (`DeepCompositionPoly`, private
//! there), Copyright (c) Facebook, Inc. and its affiliates, MIT license. The arithmetic is
//! unchanged (the same operations in the same order), so the coefficients and their
//! evaluations are stock winterfell's; the two divisions by `x - z` and `x - z * g` run side by
//! side on rayon, as winterfell's `concurrent` build does.

use rayon::prelude::*;
use winter_math::fields::f64::BaseElement;
use winter_math::{ExtensionOf, FieldElement, StarkField, add_in_place, fft, mul_acc, polynom};
use winter_prover::proof::{QuotientOodFrame, TraceOodFrame};
use winterfell::{CompositionPoly, DeepCompositionCoefficients, StarkDomain, TracePolyTable};

/// The DEEP composition polynomial in coefficient form.
pub struct DeepCompositionPoly<E: FieldElement<BaseField = BaseElement>> {
    coefficients: Vec<E>,
    cc: DeepCompositionCoefficients<E>,
    z: E,
}

impl<E: FieldElement<BaseField = BaseElement>> DeepCompositionPoly<E> {
    /// An empty polynomial for the out-of-domain point `z` and the coefficients `cc`; filled
    /// by [`Self::add_trace_polys`].
    pub fn new(z: E, cc: DeepCompositionCoefficients<E>) -> Self {
        DeepCompositionPoly {
            coefficients: vec![],
            cc,
            z,
        }
    }

    /// Number of coefficients.
    pub fn poly_size(&self) -> usize {
        self.coefficients.len()
    }

    /// Degree of the polynomial.
    pub fn degree(&self) -> usize {
        polynom::degree_of(&self.coefficients)
    }

    /// Combines every trace and quotient polynomial `T_i` into
    /// `sum(cc_i * ((T_i(x) - T_i(z)) / (x - z) + (T_i(x) - T_i(z * g)) / (x - z * g)))`.
    pub fn add_trace_polys(
        &mut self,
        trace_polys: TracePolyTable<E>,
        quotient_polys: CompositionPoly<E>,
        ood_trace_states: TraceOodFrame<E>,
        ood_quotient_states: QuotientOodFrame<E>,
    ) {
        assert!(self.coefficients.is_empty());

        let trace_length = trace_polys.poly_size();
        let g = E::from(BaseElement::get_root_of_unity(trace_length.ilog2()));
        let next_z = self.z * g;

        let mut composition_z = vec![E::ZERO; trace_length];
        let mut composition_gz = vec![E::ZERO; trace_length];

        // the index of a trace polynomial across all trace segments
        let mut i = 0;
        for poly in trace_polys.main_trace_polys() {
            acc_trace_poly::<BaseElement, E>(
                &mut composition_z,
                poly,
                ood_trace_states.current_row()[i],
                self.cc.trace[i],
            );
            acc_trace_poly::<BaseElement, E>(
                &mut composition_gz,
                poly,
                ood_trace_states.next_row()[i],
                self.cc.trace[i],
            );
            i += 1;
        }
        for poly in trace_polys.aux_trace_polys() {
            acc_trace_poly::<E, E>(
                &mut composition_z,
                poly,
                ood_trace_states.current_row()[i],
                self.cc.trace[i],
            );
            acc_trace_poly::<E, E>(
                &mut composition_gz,
                poly,
                ood_trace_states.next_row()[i],
                self.cc.trace[i],
            );
            i += 1;
        }
        for (i, poly) in quotient_polys.into_columns().iter().enumerate() {
            acc_trace_poly::<E, E>(
                &mut composition_z,
                poly,
                ood_quotient_states.current_row()[i],
                self.cc.constraints[i],
            );
            acc_trace_poly::<E, E>(
                &mut composition_gz,
                poly,
                ood_quotient_states.next_row()[i],
                self.cc.constraints[i],
            );
        }

        // divide by (x - z) and (x - z * g) and add up: deg = trace_length - 2
        let trace_poly =
            merge_compositions(vec![composition_z, composition_gz], vec![self.z, next_z]);
        self.coefficients = trace_poly;
        assert_eq!(self.poly_size() - 2, self.degree());
    }

    /// Evaluations over the LDE domain (natural order).
    pub fn evaluate(self, domain: &StarkDomain<BaseElement>) -> Vec<E> {
        fft::evaluate_poly_with_offset(
            &self.coefficients,
            domain.trace_twiddles(),
            domain.offset(),
            domain.trace_to_lde_blowup(),
        )
    }
}

/// Divides each polynomial by its divisor and sums the quotients coefficient-wise.
fn merge_compositions<E: FieldElement>(mut polys: Vec<Vec<E>>, divisors: Vec<E>) -> Vec<E> {
    polys
        .par_iter_mut()
        .zip(divisors)
        .for_each(|(poly, divisor)| polynom::syn_div_in_place(poly, 1, divisor));
    let mut result = polys.remove(0);
    for poly in polys.iter() {
        add_in_place(&mut result, poly);
    }
    result
}

/// `accumulator += (poly - value) * k`.
fn acc_trace_poly<F, E>(accumulator: &mut [E], poly: &[F], value: E, k: E)
where
    F: FieldElement,
    E: FieldElement<BaseField = F::BaseField> + ExtensionOf<F>,
{
    mul_acc(accumulator, poly, k);
    let adjusted_tz = value * k;
    accumulator[0] -= adjusted_tz;
}
