//! Log-softmax of one logit row, computed in one pass without allocating: the maximum, its
//! index (greedy token) and log Σ exp(x − max), in f64 so long vocabularies lose no precision.

/// Summary of a logit row sufficient for any token's log-probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogSoftmaxRow {
    /// Index of the largest logit (the first one on ties).
    pub argmax: usize,
    /// The largest logit.
    pub max: f64,
    /// log Σ exp(logit − max).
    pub log_sum_exp: f64,
}

impl LogSoftmaxRow {
    /// log p(token) under the row's softmax.
    pub fn logprob(&self, logits: &[f32], token: i32) -> f64 {
        logits[token as usize] as f64 - self.max - self.log_sum_exp
    }
}

/// Summarises `logits` (must not be empty).
pub fn row_stats(logits: &[f32]) -> LogSoftmaxRow {
    let mut argmax = 0;
    let mut max = f32::NEG_INFINITY;
    for (i, &x) in logits.iter().enumerate() {
        if x > max {
            max = x;
            argmax = i;
        }
    }
    let sum: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    LogSoftmaxRow { argmax, max: max as f64, log_sum_exp: sum.ln() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_direct_log_softmax() {
        let logits = [1.0f32, 3.0, -2.0, 3.0];
        let row = row_stats(&logits);
        assert_eq!(row.argmax, 1);
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        for (i, &x) in logits.iter().enumerate() {
            assert!((row.logprob(&logits, i as i32) - ((x as f64) - z.ln())).abs() < 1e-12);
        }
    }
}
