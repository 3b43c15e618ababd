//! The one check every STATS read goes through (`ActivationStats::from_gguf`, hence `apply`,
//! `run`, `stats merge|imatrix|show` and the experiments): a statistic measured on no text, a
//! weight whose norms are all zero, or a NaN, infinite or negative value would make the selection
//! arbitrary (ties decided by index alone) or poison an imatrix, so such files are refused with
//! the tensor named.

use super::ActivationStats;

/// Why statistics cannot be used for a selection.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StatsProblem {
    /// Measured on no text.
    #[error("holds 0 samples (was it calibrated with --samples 0?); calibrate again on at least one text")]
    NoSamples,
    /// Measured on no token.
    #[error("holds 0 tokens; calibrate again on non-empty texts")]
    NoTokens,
    /// Vectors whose lengths disagree with the weight's shape.
    #[error("{weight}: vectors of {norm_sum} / {sum_sq} / {tokens} values for {n_in} inputs × {n_groups} groups")]
    Lengths {
        /// The weight.
        weight: String,
        /// Values of `norm_sum`.
        norm_sum: usize,
        /// Values of `sum_sq`.
        sum_sq: usize,
        /// Values of `tokens`.
        tokens: usize,
        /// Inputs of the weight.
        n_in: usize,
        /// Groups (experts) of the weight.
        n_groups: usize,
    },
    /// A NaN, infinite or negative value.
    #[error("{weight}.{field}[{index}] is {value} (statistics are finite sums of norms, ≥ 0)")]
    BadValue {
        /// The weight.
        weight: String,
        /// `norm_sum` or `sum_sq`.
        field: &'static str,
        /// The value's index.
        index: usize,
        /// The value.
        value: f32,
    },
    /// No activation reached the weight.
    #[error("{weight}.norm_sum is all zero: no activation reached this weight, so its selection would be decided by tie order alone")]
    AllZero {
        /// The weight.
        weight: String,
    },
}

impl ActivationStats {
    /// `Err` with the first problem found: zero samples or tokens, vectors of the wrong length,
    /// non-finite or negative values, or a weight whose `norm_sum` is all zero.
    pub fn validate(&self) -> Result<(), StatsProblem> {
        if self.samples == 0 {
            return Err(StatsProblem::NoSamples);
        }
        if self.tokens == 0 {
            return Err(StatsProblem::NoTokens);
        }
        for (name, w) in &self.weights {
            let n = w.n_in * w.n_groups;
            if w.norm_sum.len() != n || w.sum_sq.len() != n || w.tokens.len() != w.n_groups {
                return Err(StatsProblem::Lengths {
                    weight: name.clone(),
                    norm_sum: w.norm_sum.len(),
                    sum_sq: w.sum_sq.len(),
                    tokens: w.tokens.len(),
                    n_in: w.n_in,
                    n_groups: w.n_groups,
                });
            }
            for (field, values) in [("norm_sum", &w.norm_sum), ("sum_sq", &w.sum_sq)] {
                if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite() || **v < 0.0) {
                    return Err(StatsProblem::BadValue { weight: name.clone(), field, index, value });
                }
            }
            if w.norm_sum.iter().all(|v| *v == 0.0) {
                return Err(StatsProblem::AllZero { weight: name.clone() });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::WeightStats;
    use super::*;

    fn one(norm: Vec<f32>, samples: u64) -> ActivationStats {
        let mut weights = BTreeMap::new();
        weights.insert("blk.0.ffn_up.weight".to_string(), WeightStats { n_in: 2, n_groups: 1, sum_sq: vec![1.0; 2], norm_sum: norm, tokens: vec![4] });
        ActivationStats { model_fingerprint: "f".into(), samples, tokens: 4, datasets: vec![], seeds: vec![], weights }
    }

    #[test]
    fn refuses_empty_zero_and_nan_statistics() {
        assert_eq!(one(vec![1.0, 0.0], 1).validate(), Ok(()));
        assert!(one(vec![1.0, 2.0], 0).validate().unwrap_err().to_string().contains("0 samples"));
        let zero = one(vec![0.0, 0.0], 1).validate().unwrap_err().to_string();
        assert!(zero.contains("blk.0.ffn_up.weight.norm_sum is all zero"), "{zero}");
        let nan = one(vec![1.0, f32::NAN], 1).validate().unwrap_err().to_string();
        assert!(nan.contains("blk.0.ffn_up.weight.norm_sum[1] is NaN"), "{nan}");
        assert!(one(vec![1.0, -1.0], 1).validate().is_err());
        assert!(one(vec![1.0], 1).validate().is_err());
    }
}
