//! Adding STATS files together: the statistics are sums over samples, so the stats of A ∪ B are
//! the element-wise sums of the stats of A and of B. Only files measured on the same model (same
//! fingerprint, same weights and widths) can be added.

use super::{ActivationStats, WeightStats};

/// Why stats could not be merged. `index` is the position of the offending input.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("nothing to merge")]
    Empty,
    /// Measured on another model.
    #[error("input {index} was measured on another model (fingerprint {found}…, expected {expected}…)")]
    OtherModel {
        /// Offending input.
        index: usize,
        /// Its fingerprint (prefix).
        found: String,
        /// The first input's fingerprint (prefix).
        expected: String,
    },
    /// Different weights or shapes.
    #[error("input {index}: {problem}")]
    Shape {
        /// Offending input.
        index: usize,
        /// What differs.
        problem: String,
    },
}

/// The element-wise sum of `parts` (samples, tokens, norm sums, Σx², token counts); data set
/// names and seeds are concatenated.
pub fn merge(parts: &[ActivationStats]) -> Result<ActivationStats, MergeError> {
    let first = parts.first().ok_or(MergeError::Empty)?;
    for (index, p) in parts.iter().enumerate().skip(1) {
        if p.model_fingerprint != first.model_fingerprint {
            return Err(MergeError::OtherModel {
                index,
                found: p.model_fingerprint.chars().take(12).collect(),
                expected: first.model_fingerprint.chars().take(12).collect(),
            });
        }
        if p.weights.len() != first.weights.len() || p.weights.keys().ne(first.weights.keys()) {
            let missing = first.weights.keys().find(|k| !p.weights.contains_key(*k)).or_else(|| p.weights.keys().find(|k| !first.weights.contains_key(*k)));
            return Err(MergeError::Shape { index, problem: format!("captured weights differ (e.g. {})", missing.map_or("?", |s| s.as_str())) });
        }
        for (name, w) in &p.weights {
            let f = &first.weights[name];
            if (w.n_in, w.n_groups) != (f.n_in, f.n_groups) {
                return Err(MergeError::Shape { index, problem: format!("{name}: shape {}×{} vs {}×{}", w.n_in, w.n_groups, f.n_in, f.n_groups) });
            }
        }
    }
    let add = |get: &dyn Fn(&WeightStats) -> &Vec<f32>, name: &str| -> Vec<f32> {
        let mut acc: Vec<f64> = vec![0.0; get(&first.weights[name]).len()];
        for p in parts {
            for (a, v) in acc.iter_mut().zip(get(&p.weights[name])) {
                *a += *v as f64;
            }
        }
        acc.into_iter().map(|v| v as f32).collect()
    };
    let weights = first
        .weights
        .iter()
        .map(|(name, f)| {
            let tokens = (0..f.n_groups).map(|g| parts.iter().map(|p| p.weights[name].tokens[g]).sum()).collect();
            (name.clone(), WeightStats { n_in: f.n_in, n_groups: f.n_groups, norm_sum: add(&|w| &w.norm_sum, name), sum_sq: add(&|w| &w.sum_sq, name), tokens })
        })
        .collect();
    Ok(ActivationStats {
        model_fingerprint: first.model_fingerprint.clone(),
        samples: parts.iter().map(|p| p.samples).sum(),
        tokens: parts.iter().map(|p| p.tokens).sum(),
        datasets: parts.iter().flat_map(|p| p.datasets.iter().cloned()).collect(),
        seeds: parts.iter().flat_map(|p| p.seeds.iter().copied()).collect(),
        weights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn stats(fp: &str, v: f32) -> ActivationStats {
        let mut weights = BTreeMap::new();
        weights.insert("blk.0.attn_q.weight".to_string(), WeightStats { n_in: 2, n_groups: 1, norm_sum: vec![v, 2.0 * v], sum_sq: vec![v; 2], tokens: vec![3] });
        ActivationStats { model_fingerprint: fp.into(), samples: 2, tokens: 3, datasets: vec!["a".into()], seeds: vec![1], weights }
    }

    #[test]
    fn sums_and_refuses_other_models() {
        let m = merge(&[stats("x", 1.0), stats("x", 2.0)]).unwrap();
        let w = &m.weights["blk.0.attn_q.weight"];
        assert_eq!((w.norm_sum.clone(), w.tokens.clone(), m.samples, m.tokens), (vec![3.0, 6.0], vec![6], 4, 6));
        assert_eq!(m.datasets, vec!["a", "a"]);
        assert!(matches!(merge(&[stats("x", 1.0), stats("y", 1.0)]), Err(MergeError::OtherModel { index: 1, .. })));
        assert_eq!(merge(&[]), Err(MergeError::Empty));
    }
}
