//! Synthetic STATS for tests and benchmarks: for every target weight of a model, seeded
//! pseudo-random positive column statistics with the right shape and the model's fingerprint.
//! Never used on a real selection path.

use std::collections::BTreeMap;

use crate::gguf::GgufFile;
use crate::gguf::synth::pseudo_random_f32;
use crate::stats::{ActivationStats, WeightStats};

/// STATS shaped for `model`'s targets, values in (0.05, 2.05] drawn from `seed`.
pub fn synthetic_stats(model: &GgufFile, seed: u64, samples: u64, dataset: &str) -> ActivationStats {
    let mut weights = BTreeMap::new();
    for (i, t) in crate::model::target_weights(model).into_iter().enumerate() {
        let n_in = t.dims[0] as usize;
        let groups = super::check::n_groups(t);
        let s = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
        let norm_sum: Vec<f32> = pseudo_random_f32(s, n_in * groups).iter().map(|v| v.abs() * 2.0 + 0.05).collect();
        let sum_sq: Vec<f32> = norm_sum.iter().map(|v| v * v).collect();
        weights.insert(t.name.clone(), WeightStats { n_in, n_groups: groups, norm_sum, sum_sq, tokens: vec![samples * 10; groups] });
    }
    ActivationStats {
        model_fingerprint: crate::model::fingerprint(model),
        samples,
        tokens: samples * 10,
        datasets: vec![dataset.to_string()],
        seeds: vec![seed],
        weights,
    }
}
