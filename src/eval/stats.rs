//! Uncertainty of evaluation scores: percentile bootstrap intervals (single model and paired
//! difference) and McNemar's exact test for paired 0/1 outcomes. Resampling is seeded
//! (ChaCha8), so the same inputs and seed give the same interval.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::task::Aggregate;

/// The mean of `values` and its standard error (sample standard deviation over √n; 0 for fewer
/// than two values, and a mean of 0 for none).
pub fn mean_stderr(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    let nf = n.max(1) as f64;
    let mean = values.iter().sum::<f64>() / nf;
    let var = if n > 1 { values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
    (mean, (var / nf).sqrt())
}

/// The metric over all items.
pub fn aggregate(agg: Aggregate, items: &[(f64, f64)]) -> f64 {
    let (num, den) = items.iter().fold((0.0, 0.0), |(n, d), &(a, b)| (n + a, d + b));
    agg.apply(num, den)
}

fn percentile_interval(mut stats: Vec<f64>) -> (f64, f64) {
    stats.retain(|x| x.is_finite());
    if stats.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    stats.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let at = |q: f64| stats[((q * (stats.len() - 1) as f64).round() as usize).min(stats.len() - 1)];
    (at(0.025), at(0.975))
}

/// 95% percentile-bootstrap interval of the metric, resampling items with replacement.
pub fn bootstrap_ci(agg: Aggregate, items: &[(f64, f64)], resamples: usize, seed: u64) -> (f64, f64) {
    if items.is_empty() || resamples == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = items.len();
    let stats = (0..resamples)
        .map(|_| {
            let (mut num, mut den) = (0.0, 0.0);
            for _ in 0..n {
                let (a, b) = items[rng.random_range(0..n)];
                num += a;
                den += b;
            }
            agg.apply(num, den)
        })
        .collect();
    percentile_interval(stats)
}

/// 95% paired-bootstrap interval of `metric(other) − metric(base)`: the same resampled items
/// for both models. `base` and `other` must be aligned item by item.
pub fn paired_bootstrap_ci(
    agg: Aggregate,
    base: &[(f64, f64)],
    other: &[(f64, f64)],
    resamples: usize,
    seed: u64,
) -> (f64, f64) {
    assert_eq!(base.len(), other.len(), "paired items must align");
    if base.is_empty() || resamples == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = base.len();
    let stats = (0..resamples)
        .map(|_| {
            let (mut n0, mut d0, mut n1, mut d1) = (0.0, 0.0, 0.0, 0.0);
            for _ in 0..n {
                let i = rng.random_range(0..n);
                n0 += base[i].0;
                d0 += base[i].1;
                n1 += other[i].0;
                d1 += other[i].1;
            }
            agg.apply(n1, d1) - agg.apply(n0, d0)
        })
        .collect();
    percentile_interval(stats)
}

/// Discordant pair counts of paired 0/1 outcomes: (base right & other wrong, base wrong &
/// other right).
pub fn discordant(base: &[bool], other: &[bool]) -> (usize, usize) {
    base.iter().zip(other).fold((0, 0), |(b, c), (&x, &y)| match (x, y) {
        (true, false) => (b + 1, c),
        (false, true) => (b, c + 1),
        _ => (b, c),
    })
}

/// Two-sided exact McNemar p-value (binomial test of the discordant pairs at ½).
pub fn mcnemar_exact_p(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k_max = b.min(c);
    // log of C(n, k) 2^-n, summed in log space so large n does not underflow.
    let mut log_term = -(n as f64) * std::f64::consts::LN_2;
    let mut logs = Vec::with_capacity(k_max + 1);
    for k in 0..=k_max {
        logs.push(log_term);
        log_term += ((n - k) as f64).ln() - ((k + 1) as f64).ln();
    }
    let max = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let tail = max + logs.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
    (2.0 * tail.exp()).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_matches_known_values() {
        assert_eq!(mcnemar_exact_p(0, 0), 1.0);
        assert_eq!(mcnemar_exact_p(3, 3), 1.0);
        // b=0, c=5: 2 * 0.5^5.
        assert!((mcnemar_exact_p(0, 5) - 0.0625).abs() < 1e-12);
        // b=2, c=8: 2 * (1 + 10 + 45) / 1024.
        assert!((mcnemar_exact_p(2, 8) - 112.0 / 1024.0).abs() < 1e-12);
        assert!(mcnemar_exact_p(400, 600) < 1e-9 && mcnemar_exact_p(400, 600) > 0.0);
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_mean() {
        let items: Vec<(f64, f64)> = (0..200).map(|i| ((i % 4 == 0) as u8 as f64, 1.0)).collect();
        let a = bootstrap_ci(Aggregate::Ratio, &items, 500, 7);
        assert_eq!(a, bootstrap_ci(Aggregate::Ratio, &items, 500, 7));
        assert!(a.0 < 0.25 && 0.25 < a.1 && a.1 - a.0 < 0.15, "{a:?}");
    }

    #[test]
    fn paired_difference_of_identical_models_is_zero() {
        let items: Vec<(f64, f64)> = (0..50).map(|i| ((i % 3) as f64, 2.0)).collect();
        assert_eq!(paired_bootstrap_ci(Aggregate::ExpRatio, &items, &items, 100, 1), (0.0, 0.0));
        assert_eq!(discordant(&[true, false, true], &[false, true, true]), (1, 1));
    }
}
