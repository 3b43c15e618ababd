//! Entry-level protection: ggml's importance is one weight per **column** (an imatrix), but
//! MathNeuro's selection is per **entry** (S = |W|·A_math in the math top-K and not in the
//! general top-K). ggml's quantizers weigh each entry of a row by the importance passed with that
//! row, so encoding row by row with a row's own vector — the column importance times `factor`
//! at the row's math-specific entries — makes the block search (scales, mins, codes) fit those
//! entries more closely at the others' expense, in the same type and size.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::ffi::ggml::{self, CodecError};
use crate::gguf::{GgmlType, GgufFile, TensorInfo};
use crate::select::{self, BitMask, Method, SelectError, SelectOptions};
use crate::stats::ActivationStats;
use crate::surgery::blocks::accepts_importance;

/// Which entries are protected, and how strongly.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Protect {
    /// K (percent) of MathNeuro's selection whose entries are protected.
    pub top_k_percent: f64,
    /// The importance of a protected entry is multiplied by this (> 0).
    pub factor: f32,
}

impl Protect {
    /// The name recorded in the output.
    pub fn name(&self) -> String {
        format!("math-specific entries at K={} weighted x{}", self.top_k_percent, self.factor)
    }
}

/// The math-specific entries of every target at `top_k_percent` (the selection `apply` makes).
pub fn masks(model: &GgufFile, math: &ActivationStats, general: &ActivationStats, top_k_percent: f64) -> Result<HashMap<String, BitMask>, SelectError> {
    let opts = SelectOptions { method: Method::MathNeuro, top_k_percent, seed: 0 };
    let selection = select::select_matched(model, math, general, &opts, &|| {})?;
    Ok(selection.tensors.into_iter().map(|t| (t.name, t.mask)).collect())
}

/// Tensor `t` (bytes `data`) encoded as `dest` row by row, each row with the column importance
/// `columns` (`n_in × groups`; ones when None) times `factor` at the entries in `mask`. The
/// same bytes as one ggml call with `columns` where the mask has no entry in a row.
pub fn encode_protected(t: &TensorInfo, data: &[u8], dest: GgmlType, columns: Option<&[f32]>, mask: &BitMask, factor: f32) -> Result<Vec<u8>, CodecError> {
    let n_in = t.dims[0] as usize;
    let n_rows = t.n_rows() as usize;
    let groups = if t.dims.len() == 3 { t.dims[2] as usize } else { 1 };
    let rows_per_group = (n_rows / groups.max(1)).max(1);
    let values = ggml::dequantize_to_vec(t.ggml_type, data, n_rows * n_in)?;
    let takes = accepts_importance(dest);
    let rows: Vec<Vec<u8>> = values
        .par_chunks(n_in.max(1))
        .enumerate()
        .map(|(r, row)| {
            let g = r / rows_per_group;
            let start = (r * n_in) as u64;
            if !takes || !mask.any_in(start, start + n_in as u64) {
                return ggml::quantize(dest, row, n_in, columns.map(|c| &c[g * n_in..(g + 1) * n_in]).filter(|_| takes));
            }
            let mut w: Vec<f32> = columns.map_or_else(|| vec![1.0; n_in], |c| c[g * n_in..(g + 1) * n_in].to_vec());
            let mut ones = Vec::new();
            mask.ones_in(start, start + n_in as u64, &mut ones);
            for j in ones {
                w[j] *= factor;
            }
            ggml::quantize(dest, row, n_in, Some(&w))
        })
        .collect::<Result<_, _>>()?;
    Ok(rows.concat())
}
