//! Block-wise rewrite of one target weight: only the quantization blocks that contain a selected
//! entry are decoded, changed (×s, or 0 when pruning) and re-encoded in the tensor's own type;
//! every other block is copied byte-for-byte. A block whose intended values equal its decoded
//! values (e.g. `--scale 1`) keeps its bytes. Rows run in parallel.
//!
//! Candidates for a touched block, cheapest first:
//! 1. the in-grid edit (`regrid`: Q8_0, Q5_0, Q6_K, Q4_K, and since issue 25 Q4_0, Q4_1, Q5_1,
//!    Q5_K, Q2_K, Q3_K, IQ4_NL, IQ4_XS): scales kept, only the selected codes
//!    re-rounded, so no other entry moves — taken at once when every target is in range (and,
//!    for a prune, every zero is exact);
//! 2. for a Q4_K prune whose 0 is off the grid: the zero-exact encoding of `q4k`; for Q4_1 and
//!    Q5_1 that of `affine` (m = −k·d);
//! 3. for a scaled target out of range (`--edit keep`): `refit` — a unit's scale widened, or for
//!    the K-quants the super-block's, only where that lowers the block's importance-weighted
//!    error; the block is never re-encoded;
//! 4. for a pruned target out of range: the unit's scale widened (`regrid::widen`), or for
//!    K-quants at their code limit the super-block scale (`regrid::widen_block`); only when none
//!    of these exists (or for other types): ggml's quantizer, with the importance vector (the
//!    STATS' Σx²) where the type takes one.
//!
//! For IQ4_NL and IQ4_XS (16 non-linear values, none of them 0) the in-grid edit and ggml's
//! re-encoding of the block always compete.
//!
//! The candidate with the fewest inexact zeros (prune), then the smallest importance-weighted
//! squared error against the intended values wins (ties: the earlier candidate).

use rayon::prelude::*;

use super::regrid::GridType;
use super::{affine, grids, q4k, refit, regrid};
use super::report::BlockTally;
use crate::ffi::ggml::{self, CodecError};
use crate::gguf::{GgmlType, TensorInfo};
use crate::select::BitMask;

/// How selected entries change.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// W ← s·W.
    Scale(f32),
    /// W ← 0.
    Prune,
}

impl Change {
    /// The factor applied (0 for a prune).
    pub fn factor(self) -> f32 {
        match self {
            Change::Scale(s) => s,
            Change::Prune => 0.0,
        }
    }
}

/// True when ggml's quantizer for `ty` uses an importance vector.
pub fn accepts_importance(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ1_S | IQ1_M | IQ4_NL | IQ4_XS
    )
}

/// Rewrites `data` (all of tensor `info`) for the entries in `mask`. `importance` holds one
/// weight per column and group (`n_in × groups`). Returns the new bytes and the tallies.
pub fn rewrite_tensor(
    info: &TensorInfo,
    data: &[u8],
    mask: &BitMask,
    change: Change,
    importance: Option<&[f32]>,
) -> Result<(Vec<u8>, BlockTally), CodecError> {
    let ty = info.ggml_type;
    let n_in = info.dims[0] as usize;
    let groups = crate::model::n_groups(info) as u64;
    let rows_per_group = info.n_rows() / groups;
    let row_bytes = info.row_bytes() as usize;
    let mut out = vec![0u8; data.len()];
    let tally = out
        .par_chunks_mut(row_bytes)
        .zip(data.par_chunks(row_bytes))
        .enumerate()
        .map(|(r, (dst, src))| {
            let g = (r as u64 / rows_per_group) as usize;
            let imp = importance.map(|v| &v[g * n_in..(g + 1) * n_in]);
            rewrite_row(ty, r as u64 * n_in as u64, n_in, src, dst, mask, change, imp)
        })
        .collect::<Result<Vec<BlockTally>, CodecError>>()?
        .into_iter()
        // Summed in row order, not in rayon's reduction tree, so the report's float totals are
        // the same bytes on every run and thread count.
        .fold(BlockTally::default(), BlockTally::merge);
    Ok((out, tally))
}

#[allow(clippy::too_many_arguments)]
fn rewrite_row(
    ty: GgmlType,
    row_start: u64,
    n_in: usize,
    src: &[u8],
    dst: &mut [u8],
    mask: &BitMask,
    change: Change,
    importance: Option<&[f32]>,
) -> Result<BlockTally, CodecError> {
    let bs = ty.block_size() as usize;
    let tb = ty.type_size() as usize;
    let mut tally = BlockTally::default();
    let mut orig = vec![0f32; bs];
    let mut target = vec![0f32; bs];
    let mut decoded = vec![0f32; bs];
    let mut sel = vec![false; bs];
    let mut selected: Vec<usize> = Vec::with_capacity(bs);
    for b in 0..n_in / bs {
        let (s, d) = (&src[b * tb..(b + 1) * tb], &mut dst[b * tb..(b + 1) * tb]);
        tally.blocks += 1;
        let start = row_start + (b * bs) as u64;
        if !mask.any_in(start, start + bs as u64) {
            d.copy_from_slice(s);
            continue;
        }
        tally.blocks_touched += 1;
        ggml::dequantize(ty, s, &mut orig)?;
        target.copy_from_slice(&orig);
        selected.clear();
        mask.ones_in(start, start + bs as u64, &mut selected);
        sel.fill(false);
        for &j in &selected {
            sel[j] = true;
            target[j] = match change {
                Change::Scale(f) => orig[j] * f,
                Change::Prune => 0.0,
            };
        }
        if selected.iter().all(|&j| target[j].to_bits() == orig[j].to_bits()) {
            d.copy_from_slice(s);
            tally.record(&orig, &target, &orig, &sel, &selected);
            continue;
        }
        tally.blocks_rewritten += 1;
        // Candidate 1, the in-grid edit, made in place and taken at once when it fits (the
        // common case, without allocations); otherwise it joins the other candidates.
        let mut in_grid = None;
        if let Ok(gt) = GridType::try_from(ty) {
            d.copy_from_slice(s);
            let clamped = regrid::regrid(gt, d, &target, &sel);
            // The IQ4 tables are too coarse near 0 for most small changes: ggml's re-encoding
            // always competes with their in-grid edit (`encode_best`).
            if !clamped && !grids::is_table(gt) {
                ggml::dequantize(ty, d, &mut decoded)?;
                let zeros_missed = change == Change::Prune && selected.iter().any(|&j| decoded[j] != 0.0);
                if !zeros_missed {
                    tally.record(&orig, &target, &decoded, &sel, &selected);
                    continue;
                }
            }
            in_grid = Some((gt, d.to_vec(), clamped));
        }
        let imp = importance.map(|v| &v[b * bs % n_in..b * bs % n_in + bs]);
        if let (Change::Scale(_), Some((gt, edited, true))) = (change, &in_grid)
            && !grids::is_table(*gt)
        {
            // Keep: widen only where the block's weighted error goes down; never re-encode.
            let (bytes, best) = refit::refit(*gt, s, edited, &target, &sel, imp)?;
            d.copy_from_slice(&bytes);
            tally.record(&orig, &target, &best, &sel, &selected);
            continue;
        }
        let (bytes, best) = encode_best(ty, s, in_grid, &target, &sel, change, imp)?;
        d.copy_from_slice(&bytes);
        tally.record(&orig, &target, &best, &sel, &selected);
    }
    Ok(tally)
}

/// Candidate encodings of one block's intended values; the best one and its decoded values.
/// `in_grid`: the block's grid type, its in-grid edit (`regrid` applied to `original`) and whether it
/// clamped a target, for the types `regrid` supports; the caller already found it not good
/// enough on its own.
fn encode_best(
    ty: GgmlType,
    original: &[u8],
    in_grid: Option<(GridType, Vec<u8>, bool)>,
    target: &[f32],
    sel: &[bool],
    change: Change,
    imp: Option<&[f32]>,
) -> Result<(Vec<u8>, Vec<f32>), CodecError> {
    let bs = target.len();
    let mut candidates: Vec<Vec<u8>> = Vec::with_capacity(3);
    // Without an in-grid edit (other types) the block is always re-encoded by ggml.
    let mut needs_full_encode = true;
    if let Some((gt, edited, clamped)) = in_grid {
        candidates.push(edited);
        needs_full_encode = clamped || grids::is_table(gt);
        if ty == GgmlType::Q4_K && change == Change::Prune {
            // 0 is off this block's grid: choose dmin and the scales so that it is on it.
            if let Some(z) = q4k::encode_zero_exact(original, target, sel, imp) {
                candidates.push(z);
                needs_full_encode = false;
            }
        } else if matches!(gt, GridType::Q4_1 | GridType::Q5_1) && change == Change::Prune {
            // The same for the legacy types with a min: m = −k·d puts 0 on code k.
            if let Some(z) = affine::encode_zero_exact(gt, original, target, sel, imp) {
                candidates.push(z);
                needs_full_encode = false;
            }
        } else if clamped {
            let mut widened = original.to_vec();
            if regrid::widen(gt, &mut widened, target, sel) {
                // Units that needed no widening still re-round their selected entries.
                regrid::regrid(gt, &mut widened, target, sel);
                candidates.push(widened);
                needs_full_encode = false;
            } else {
                let mut widened = original.to_vec();
                if regrid::widen_block(gt, &mut widened, target) {
                    candidates.push(widened);
                    needs_full_encode = false;
                }
            }
        }
    }
    if needs_full_encode {
        match imp.filter(|_| accepts_importance(ty)) {
            Some(imp) => candidates.push(ggml::quantize(ty, target, bs, Some(imp))?),
            None => candidates.push(ggml::quantize(ty, target, bs, None)?),
        }
    }
    // (inexact zeros, weighted error), bytes, decoded values.
    type Scored = ((usize, f64), Vec<u8>, Vec<f32>);
    let mut best: Option<Scored> = None;
    for c in candidates {
        let dec = ggml::dequantize_to_vec(ty, &c, bs)?;
        // Inexact zeros first (a prune must prune), then importance-weighted squared error.
        let missed_zeros = if change == Change::Prune { (0..bs).filter(|&j| sel[j] && dec[j] != 0.0).count() } else { 0 };
        let err: f64 = (0..bs)
            .map(|j| {
                let w = imp.map_or(1.0, |v| v[j] as f64 + 1e-12);
                let e = (dec[j] - target[j]) as f64;
                w * e * e
            })
            .sum();
        let key = (missed_zeros, err);
        if best.as_ref().is_none_or(|(k, _, _)| key.0 < k.0 || (key.0 == k.0 && key.1 < k.1)) {
            best = Some((key, c, dec));
        }
    }
    let (_, bytes, dec) = best.expect("at least one candidate encoding");
    Ok((bytes, dec))
}
