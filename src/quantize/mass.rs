//! MathNeuro's per-tensor math-specific mass for the allocation: the share of each target's
//! entries that MathNeuro selects at K (in the math top-K of S = |W|·A_math and not in the
//! general top-K), from the same selection `apply` makes (`select::select_matched`, STATS
//! matched to the master by name and shape).

use std::collections::HashMap;

use crate::gguf::GgufFile;
use crate::select::{self, Method, SelectError, SelectOptions};
use crate::stats::ActivationStats;

/// selected / entries of every target of `model`, at `top_k_percent`.
pub fn selected_share(model: &GgufFile, math: &ActivationStats, general: &ActivationStats, top_k_percent: f64) -> Result<HashMap<String, f64>, SelectError> {
    let opts = SelectOptions { method: Method::MathNeuro, top_k_percent, seed: 0 };
    let selection = select::select_matched(model, math, general, &opts, &|| {})?;
    Ok(selection
        .tensors
        .iter()
        .map(|t| (t.name.clone(), if t.numel() == 0 { 0.0 } else { t.selected as f64 / t.numel() as f64 }))
        .collect())
}
