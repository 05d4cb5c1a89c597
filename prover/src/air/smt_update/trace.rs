//! Witness validation and trace generation for `smt-update`.

use winter_crypto::{Hasher, hashers::Rp64_256};
use winter_math::{FieldElement, fields::f64::BaseElement};
use winterfell::TraceTable;

use super::public_inputs::check_key;
use super::{
    COL_ANCHOR, COL_BIT, COL_NEW, COL_OLD, COL_ROOT, COL_SIBLING, CYCLE_LENGTH, DIGEST_LEN,
    EMPTY_WORD, Layout, NUM_ROUNDS, STATE_WIDTH, SmtUpdateWitness, TRACE_WIDTH, Word, rescue,
};
use crate::Error;

/// The root reached by hashing `value` up the path of `key` with `siblings` (leaf level first):
/// at level `j`, bit `j` of `key` set means `parent = merge(sibling, node)`, clear means
/// `parent = merge(node, sibling)`. Levels past bit 63 use bit 0 (never for depth ≤ 64).
pub fn root_from_path(key: u64, value: &Word, siblings: &[Word]) -> Word {
    let mut node = *value;
    for (level, sibling) in siblings.iter().enumerate() {
        let right = level < 64 && (key >> level) & 1 == 1;
        let pair = if right {
            [(*sibling).into(), node.into()]
        } else {
            [node.into(), (*sibling).into()]
        };
        node = Rp64_256::merge(&pair).into();
    }
    node
}

/// Checks the witnesses and builds the execution trace of the batch.
///
/// Typed errors, in this order: depth out of `2..=64`, empty batch, too many updates for the
/// trace-length limit, a path whose length is not `depth`, a key `≥ 2^depth`, a path that does
/// not hash the old (new) value to the witness's old (new) root, and an update whose old root
/// is not the previous update's new root.
pub fn build_trace(
    depth: u8,
    witnesses: &[SmtUpdateWitness],
) -> Result<TraceTable<BaseElement>, Error> {
    let layout = check_shape(depth, witnesses)?;
    for (index, w) in witnesses.iter().enumerate() {
        if root_from_path(w.key, &w.old_value, &w.siblings) != w.old_root {
            return Err(Error::SmtPathMismatch {
                index,
                which: "old",
            });
        }
        if root_from_path(w.key, &w.new_value, &w.siblings) != w.new_root {
            return Err(Error::SmtPathMismatch {
                index,
                which: "new",
            });
        }
        if index > 0 && witnesses[index - 1].new_root != w.old_root {
            return Err(Error::SmtBrokenChain { index });
        }
    }
    Ok(fill(&layout, witnesses))
}

/// Builds the trace with shape checks only (depth, batch size, path lengths, key ranges), *not*
/// checking that paths hash to the claimed roots or that roots chain.
///
/// For tests and audits of the AIR: the trace of an inconsistent witness does not satisfy the
/// constraints, so it cannot be turned into a proof that verifies.
pub fn build_trace_unverified(
    depth: u8,
    witnesses: &[SmtUpdateWitness],
) -> Result<TraceTable<BaseElement>, Error> {
    let layout = check_shape(depth, witnesses)?;
    Ok(fill(&layout, witnesses))
}

fn check_shape(depth: u8, witnesses: &[SmtUpdateWitness]) -> Result<Layout, Error> {
    let layout = Layout::new(depth as usize, witnesses.len())?;
    for (index, w) in witnesses.iter().enumerate() {
        if w.siblings.len() != layout.depth {
            return Err(Error::SmtDepthMismatch {
                index,
                siblings: w.siblings.len(),
                depth: layout.depth,
            });
        }
        check_key(index, w.key, depth)?;
    }
    Ok(layout)
}

/// Fills the trace; `witnesses` passed `check_shape` for `layout`.
fn fill(layout: &Layout, witnesses: &[SmtUpdateWitness]) -> TraceTable<BaseElement> {
    let n = layout.trace_length;
    let mut columns = vec![vec![BaseElement::ZERO; n]; TRACE_WIDTH];
    let last = &witnesses[layout.updates - 1];
    let mut running_root = witnesses[0].old_root;

    for segment in 0..layout.segments {
        // padding segments replay the last update as a no-op
        let (witness, old_value) = match witnesses.get(segment) {
            Some(w) => (w, w.old_value),
            None => (last, last.new_value),
        };
        let mut node_old = old_value;
        let mut node_new = witness.new_value;
        let start = layout.segment_start(segment);

        for level in 0..layout.levels {
            let row0 = start + level * CYCLE_LENGTH;
            let (bit, sibling) = if level < layout.depth {
                ((witness.key >> level) & 1 == 1, witness.siblings[level])
            } else {
                (false, EMPTY_WORD)
            };
            let mut old_state = level_input(bit, &node_old, &sibling);
            let mut new_state = level_input(bit, &node_new, &sibling);

            for r in 0..CYCLE_LENGTH {
                let row = row0 + r;
                if r > 0 {
                    rescue::apply_round(&mut old_state, r - 1);
                    rescue::apply_round(&mut new_state, r - 1);
                }
                for i in 0..STATE_WIDTH {
                    columns[COL_OLD + i][row] = old_state[i];
                    columns[COL_NEW + i][row] = new_state[i];
                }
                for j in 0..DIGEST_LEN {
                    columns[COL_ROOT + j][row] = running_root[j];
                }
                if r == 0 {
                    columns[COL_BIT][row] = BaseElement::from(bit);
                    for j in 0..DIGEST_LEN {
                        columns[COL_SIBLING + j][row] = sibling[j];
                    }
                } else {
                    // filler (see the module docs, layout step 4): unconstrained cells take
                    // hash-state values so these columns never degenerate
                    columns[COL_BIT][row] = old_state[1];
                    for j in 0..DIGEST_LEN {
                        columns[COL_SIBLING + j][row] = new_state[j];
                    }
                }
            }
            debug_assert_eq!(NUM_ROUNDS, CYCLE_LENGTH - 1);
            node_old = rescue::digest_of(&old_state);
            node_new = rescue::digest_of(&new_state);
            if level + 1 == layout.depth {
                // from the row after this update's end on, the running root is its new root
                running_root = node_new;
            }
        }
    }
    // the degree anchor (module docs, "Degrees"): the Lagrange polynomial of row 0
    columns[COL_ANCHOR][0] = BaseElement::ONE;
    TraceTable::init(columns)
}

fn level_input(right: bool, node: &Word, sibling: &Word) -> [BaseElement; STATE_WIDTH] {
    if right {
        rescue::merge_input(sibling, node)
    } else {
        rescue::merge_input(node, sibling)
    }
}
