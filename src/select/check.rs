//! Checks that a STATS file belongs to the model before anything is selected: same fingerprint,
//! a statistic for every target weight, with the weight's input width and expert count, and
//! finite non-negative values. Each failure names the tensor.

use super::SelectError;
use crate::gguf::{GgufFile, TensorInfo};
use crate::stats::{ActivationStats, WeightStats};

pub use crate::model::n_groups;

/// Verifies `stats` (labelled `which`, "math" or "general") against `model`'s fingerprint.
fn check_fingerprint(which: &str, stats: &ActivationStats, model_fingerprint: &str) -> Result<(), SelectError> {
    if stats.model_fingerprint != model_fingerprint {
        return Err(SelectError::OtherModel {
            which: which.to_string(),
            stats: stats.model_fingerprint.clone(),
            model: model_fingerprint.to_string(),
        });
    }
    Ok(())
}

/// The statistic of target `t` in `stats`, checked for shape and values.
pub fn stats_for<'s>(which: &str, stats: &'s ActivationStats, t: &TensorInfo) -> Result<&'s WeightStats, SelectError> {
    let ws = stats
        .weights
        .get(&t.name)
        .ok_or_else(|| SelectError::MissingStats { which: which.to_string(), tensor: t.name.clone() })?;
    let n_in = t.dims[0] as usize;
    let groups = n_groups(t);
    let want = n_in * groups;
    if ws.n_in != n_in || ws.n_groups != groups || ws.norm_sum.len() != want || ws.sum_sq.len() != want {
        return Err(SelectError::Shape {
            which: which.to_string(),
            tensor: t.name.clone(),
            stats_n_in: ws.n_in,
            stats_groups: ws.n_groups,
            model_n_in: n_in,
            model_groups: groups,
        });
    }
    for (name, values) in [("norm_sum", &ws.norm_sum), ("sum_sq", &ws.sum_sq)] {
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite() || **v < 0.0) {
            return Err(SelectError::BadValue {
                which: which.to_string(),
                tensor: t.name.clone(),
                field: name,
                index: i,
                value: *v,
            });
        }
    }
    Ok(ws)
}

/// Checks both STATS files against every target of `model` up front, so a mismatch is reported
/// before any work is done.
pub fn check_all(model: &GgufFile, math: &ActivationStats, general: &ActivationStats) -> Result<(), SelectError> {
    let fp = crate::model::fingerprint(model);
    check_fingerprint("math", math, &fp)?;
    check_fingerprint("general", general, &fp)?;
    for t in crate::model::target_weights(model) {
        stats_for("math", math, t)?;
        stats_for("general", general, t)?;
    }
    Ok(())
}
