//! Proof option presets and commitment hash identifiers.
//!
//! A proof is made with a [`ProofParams`] (the winterfell protocol parameters, as plain fields that
//! are validated before winterfell sees them) and a [`HashId`] (the hash of the vector commitments
//! and of the Fiat-Shamir coin). The named [`Preset`]s are the parameter sets an operator picks
//! from; explicit parameters remain possible for experiments.
//!
//! | preset       | extension | blowup | queries | grinding | FRI folding / remainder | conjectured bits |
//! |--------------|-----------|--------|---------|----------|-------------------------|------------------|
//! | `fast-96`    | quadratic | 8      | 27      | 16       | 8 / 31                  | 96               |
//! | `secure-128` | cubic     | 8      | 38      | 16       | 8 / 31                  | 128              |
//!
//! Conjectured security (winterfell's Conjecture 1 estimate) is
//! `min(64·ext_degree, log2(blowup)·queries + grinding) − 1`, capped by the hash's collision
//! resistance (128 bits for both hashes here). Goldilocks is a 64-bit field, so the quadratic
//! extension caps a proof at 127 bits and 128-bit security needs the cubic extension.

use core::fmt;
use core::str::FromStr;

use winterfell::{BatchingMethod, FieldExtension, ProofOptions};

use crate::Error;

/// Blowup factor of both presets: the rescue round constraints have degree 7 (8 with the periodic
/// round flag), which needs a blowup of at least 8.
pub const PRESET_BLOWUP: usize = 8;

/// The commitment hash of a proof (Merkle trees and the Fiat-Shamir random coin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashId {
    /// BLAKE3 with 256-bit output over Goldilocks elements (`Blake3_256`), wire id 1.
    Blake3_256,
    /// Rescue-Prime `Rp64_256` over Goldilocks, wire id 2 (cheaper to verify inside a STARK).
    Rp64_256,
}

impl HashId {
    /// Every supported hash, in wire-id order.
    pub const ALL: [HashId; 2] = [HashId::Blake3_256, HashId::Rp64_256];

    /// The name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            HashId::Blake3_256 => "blake3-256",
            HashId::Rp64_256 => "rp64-256",
        }
    }

    /// The one-byte identifier used in proof envelopes.
    pub const fn wire_id(self) -> u8 {
        match self {
            HashId::Blake3_256 => 1,
            HashId::Rp64_256 => 2,
        }
    }

    /// Parses a wire identifier written by [`HashId::wire_id`].
    pub fn from_wire_id(id: u8) -> Result<Self, Error> {
        HashId::ALL
            .into_iter()
            .find(|h| h.wire_id() == id)
            .ok_or_else(|| Error::UnknownHash {
                name: format!("wire id {id}"),
            })
    }
}

impl fmt::Display for HashId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        HashId::ALL
            .into_iter()
            .find(|h| h.name() == s)
            .ok_or_else(|| Error::UnknownHash { name: s.to_owned() })
    }
}

/// A named, documented parameter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Preset {
    /// ~96-bit conjectured security: quadratic extension, blowup 8, 27 queries, 16 grinding bits.
    Fast96,
    /// 128-bit conjectured security: cubic extension, blowup 8, 38 queries, 16 grinding bits.
    Secure128,
}

impl Preset {
    /// Every preset, in wire-id order.
    pub const ALL: [Preset; 2] = [Preset::Fast96, Preset::Secure128];

    /// The name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Preset::Fast96 => "fast-96",
            Preset::Secure128 => "secure-128",
        }
    }

    /// The conjectured security (bits) this preset reaches with either supported hash.
    pub const fn target_bits(self) -> u32 {
        match self {
            Preset::Fast96 => 96,
            Preset::Secure128 => 128,
        }
    }

    /// The one-byte identifier used in proof envelopes (0 is reserved for explicit parameters).
    pub const fn wire_id(self) -> u8 {
        match self {
            Preset::Fast96 => 1,
            Preset::Secure128 => 2,
        }
    }

    /// Parses a wire identifier written by [`Preset::wire_id`].
    pub fn from_wire_id(id: u8) -> Result<Self, Error> {
        Preset::ALL
            .into_iter()
            .find(|p| p.wire_id() == id)
            .ok_or_else(|| Error::UnknownPreset {
                name: format!("wire id {id}"),
            })
    }

    /// The protocol parameters of this preset.
    pub const fn params(self) -> ProofParams {
        match self {
            Preset::Fast96 => ProofParams {
                num_queries: 27,
                blowup_factor: PRESET_BLOWUP as u8,
                grinding_factor: 16,
                field_extension: 2,
                fri_folding_factor: 8,
                fri_remainder_max_degree: 31,
            },
            Preset::Secure128 => ProofParams {
                num_queries: 38,
                blowup_factor: PRESET_BLOWUP as u8,
                grinding_factor: 16,
                field_extension: 3,
                fri_folding_factor: 8,
                fri_remainder_max_degree: 31,
            },
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| Error::UnknownPreset { name: s.to_owned() })
    }
}

/// Winterfell protocol parameters as plain, checkable fields.
///
/// Batching is always linear for constraints and DEEP composition, and the trace is committed
/// in one partition; these are fixed by the envelope version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProofParams {
    /// Number of FRI / trace queries, 1..=255.
    pub num_queries: u8,
    /// LDE blowup factor: a power of two in 8..=128 (at least 8 for the degree-7 rescue rounds).
    pub blowup_factor: u8,
    /// Proof-of-work bits, 0..=32.
    pub grinding_factor: u8,
    /// Field extension degree: 1 (none), 2 (quadratic) or 3 (cubic).
    pub field_extension: u8,
    /// FRI folding factor: 2, 4, 8 or 16 (winterfell's FRI supports these).
    pub fri_folding_factor: u8,
    /// FRI remainder maximum degree: one less than a power of two, at most 255.
    pub fri_remainder_max_degree: u8,
}

impl ProofParams {
    /// Checks every field against winterfell's limits (which panic inside winterfell) and the
    /// limits of the EPA AIRs, so that [`ProofParams::to_winterfell`] cannot panic.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &'static str, value: u8, rule: &'static str| {
            Err(Error::InvalidOptions {
                field,
                value: u64::from(value),
                rule,
            })
        };
        if self.num_queries == 0 {
            return bad("num_queries", self.num_queries, "must be in 1..=255");
        }
        if !self.blowup_factor.is_power_of_two() || !(8..=128).contains(&self.blowup_factor) {
            return bad(
                "blowup_factor",
                self.blowup_factor,
                "must be a power of two in 8..=128",
            );
        }
        if self.grinding_factor > 32 {
            return bad(
                "grinding_factor",
                self.grinding_factor,
                "must be at most 32",
            );
        }
        if !(1..=3).contains(&self.field_extension) {
            return bad("field_extension", self.field_extension, "must be 1, 2 or 3");
        }
        if !matches!(self.fri_folding_factor, 2 | 4 | 8 | 16) {
            return bad(
                "fri_folding_factor",
                self.fri_folding_factor,
                "must be 2, 4, 8 or 16",
            );
        }
        if !(u16::from(self.fri_remainder_max_degree) + 1).is_power_of_two() {
            return bad(
                "fri_remainder_max_degree",
                self.fri_remainder_max_degree,
                "must be one less than a power of two",
            );
        }
        Ok(())
    }

    /// Builds winterfell's [`ProofOptions`] after [`ProofParams::validate`].
    pub fn to_winterfell(&self) -> Result<ProofOptions, Error> {
        self.validate()?;
        let extension = match self.field_extension {
            1 => FieldExtension::None,
            2 => FieldExtension::Quadratic,
            _ => FieldExtension::Cubic,
        };
        Ok(ProofOptions::new(
            usize::from(self.num_queries),
            usize::from(self.blowup_factor),
            u32::from(self.grinding_factor),
            extension,
            usize::from(self.fri_folding_factor),
            usize::from(self.fri_remainder_max_degree),
            BatchingMethod::Linear,
            BatchingMethod::Linear,
        ))
    }

    /// Conjectured security in bits of a proof with these parameters over Goldilocks, for a hash
    /// with the given collision resistance (winterfell's formula, see the module docs).
    pub fn conjectured_bits(&self, collision_resistance: u32) -> u32 {
        let field_bits = 64 * u32::from(self.field_extension);
        let per_query = u32::from(self.blowup_factor).max(1).ilog2();
        let mut query_bits = per_query * u32::from(self.num_queries);
        if query_bits >= 80 {
            query_bits += u32::from(self.grinding_factor);
        }
        (field_bits.min(query_bits).saturating_sub(1)).min(collision_resistance)
    }
}

/// How a proof's parameters are named in an envelope: a preset, or explicit fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptionsChoice {
    /// A named preset.
    Preset(Preset),
    /// Explicit parameters (validated when decoded).
    Explicit(ProofParams),
}

impl OptionsChoice {
    /// The protocol parameters this choice stands for.
    pub fn params(&self) -> ProofParams {
        match self {
            OptionsChoice::Preset(p) => p.params(),
            OptionsChoice::Explicit(p) => *p,
        }
    }

    /// A short human-readable name: the preset's name or `explicit`.
    pub fn name(&self) -> &'static str {
        match self {
            OptionsChoice::Preset(p) => p.name(),
            OptionsChoice::Explicit(_) => "explicit",
        }
    }
}

impl From<Preset> for OptionsChoice {
    fn from(p: Preset) -> Self {
        OptionsChoice::Preset(p)
    }
}
