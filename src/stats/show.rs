//! A per-weight summary of a STATS file for `mathneuro stats show`: width, experts, tokens and
//! the minimum, median and maximum of `norm_sum`, as text or JSON.

use serde::Serialize;

use super::ActivationStats;

/// One weight's summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WeightSummary {
    /// Weight name.
    pub name: String,
    /// Input width.
    pub n_in: usize,
    /// Experts (1 for a plain matrix).
    pub n_groups: usize,
    /// Tokens seen (all groups).
    pub tokens: u64,
    /// Smallest norm_sum.
    pub min: f32,
    /// Median norm_sum (lower middle).
    pub median: f32,
    /// Largest norm_sum.
    pub max: f32,
    /// True when every value (norm_sum and sum_sq) is finite.
    pub finite: bool,
}

/// The whole file's summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatsSummary {
    /// Model fingerprint.
    pub model_fingerprint: String,
    /// Samples measured.
    pub samples: u64,
    /// Tokens measured.
    pub tokens: u64,
    /// Data sets.
    pub datasets: Vec<String>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Per weight, by name.
    pub weights: Vec<WeightSummary>,
}

/// Summarizes `stats`.
pub fn summarize(stats: &ActivationStats) -> StatsSummary {
    let weights = stats
        .weights
        .iter()
        .map(|(name, w)| {
            let mut v = w.norm_sum.clone();
            v.sort_by(f32::total_cmp);
            WeightSummary {
                name: name.clone(),
                n_in: w.n_in,
                n_groups: w.n_groups,
                tokens: w.tokens.iter().sum(),
                min: v.first().copied().unwrap_or(0.0),
                median: v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0),
                max: v.last().copied().unwrap_or(0.0),
                finite: w.norm_sum.iter().chain(&w.sum_sq).all(|x| x.is_finite()),
            }
        })
        .collect();
    StatsSummary {
        model_fingerprint: stats.model_fingerprint.clone(),
        samples: stats.samples,
        tokens: stats.tokens,
        datasets: stats.datasets.clone(),
        seeds: stats.seeds.clone(),
        weights,
    }
}

impl std::fmt::Display for StatsSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "model fingerprint {}", self.model_fingerprint)?;
        writeln!(f, "samples {}  tokens {}  datasets {}  seeds {:?}", self.samples, self.tokens, self.datasets.join(","), self.seeds)?;
        writeln!(f, "{:<32} {:>6} {:>4} {:>10} {:>12} {:>12} {:>12}", "weight", "n_in", "exp", "tokens", "min", "median", "max")?;
        for w in &self.weights {
            let mark = if w.finite { "" } else { "  NON-FINITE" };
            writeln!(f, "{:<32} {:>6} {:>4} {:>10} {:>12.4} {:>12.4} {:>12.4}{mark}", w.name, w.n_in, w.n_groups, w.tokens, w.min, w.median, w.max)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::WeightStats;

    #[test]
    fn summary_has_min_median_max_and_flags_non_finite() {
        let mut weights = std::collections::BTreeMap::new();
        weights.insert("blk.0.attn_q.weight".to_string(), WeightStats { n_in: 4, n_groups: 1, norm_sum: vec![3.0, 1.0, 4.0, 2.0], sum_sq: vec![1.0; 4], tokens: vec![9] });
        weights.insert("blk.0.ffn_up.weight".to_string(), WeightStats { n_in: 2, n_groups: 1, norm_sum: vec![f32::NAN, 1.0], sum_sq: vec![1.0; 2], tokens: vec![9] });
        let s = ActivationStats { model_fingerprint: "f".into(), samples: 2, tokens: 9, datasets: vec!["gsm8k".into()], seeds: vec![1], weights };
        let sum = summarize(&s);
        let q = &sum.weights[0];
        assert_eq!((q.min, q.median, q.max, q.finite), (1.0, 2.0, 4.0, true));
        assert!(!sum.weights[1].finite);
        let text = sum.to_string();
        assert!(text.contains("blk.0.attn_q.weight") && text.contains("NON-FINITE"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&sum).unwrap()).unwrap();
        assert_eq!(json["weights"][0]["n_in"], 4);
    }
}
