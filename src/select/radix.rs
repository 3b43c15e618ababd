//! Exact top-k thresholds by two-level radix selection over the score bits, without storing the
//! scores: every score is |W·A| ≥ 0 with a clear sign bit, so its f32 bit pattern read as u32
//! orders exactly like `f32::total_cmp`. Pass 1 counts the high 16 bits, which fixes the bucket
//! holding the k-th largest score; pass 2 counts the low 16 bits inside that bucket, which fixes
//! the k-th score itself and how many scores lie above it. The result is the same `Threshold` as
//! `topk::threshold` (tested against it), for any number of score streams at once.

use super::topk::Threshold;

const BUCKETS: usize = 1 << 16;

/// Counting state for the thresholds of several score streams over the same entries.
pub struct RadixThresholds {
    k: u64,
    /// Per stream: counts of the high (pass 1) or low (pass 2) half of the bits.
    counts: Vec<Vec<u64>>,
    /// Per stream, after pass 1: (high half of the k-th score, scores in higher buckets).
    bucket: Vec<(u32, u64)>,
}

impl RadixThresholds {
    /// Starts pass 1 for `streams` score streams and the top `k` (clamped to `numel`).
    pub fn new(streams: usize, k: u64, numel: u64) -> RadixThresholds {
        RadixThresholds { k: k.min(numel), counts: vec![vec![0; BUCKETS]; streams], bucket: Vec::new() }
    }

    /// True when nothing is selected (k = 0): no pass is needed.
    pub fn is_empty(&self) -> bool {
        self.k == 0
    }

    /// Pass 1: counts one row of scores of stream `s`.
    #[inline]
    pub fn count_high(&mut self, s: usize, scores: &[f32]) {
        let c = &mut self.counts[s];
        for v in scores {
            c[(v.to_bits() >> 16) as usize] += 1;
        }
    }

    /// Ends pass 1: finds each stream's bucket and resets the counts for pass 2.
    pub fn finish_high(&mut self) {
        let k = self.k;
        self.bucket = self.counts.iter().map(|c| walk_down(c, k, 0)).collect();
        for c in &mut self.counts {
            c.iter_mut().for_each(|x| *x = 0);
        }
    }

    /// Pass 2: counts the scores of stream `s` that fall in its bucket.
    #[inline]
    pub fn count_low(&mut self, s: usize, scores: &[f32]) {
        let hi = self.bucket[s].0;
        let c = &mut self.counts[s];
        for v in scores {
            let b = v.to_bits();
            if b >> 16 == hi {
                c[(b & 0xFFFF) as usize] += 1;
            }
        }
    }

    /// Ends pass 2: the thresholds, one per stream.
    pub fn finish(self) -> Vec<Threshold> {
        if self.k == 0 {
            return vec![Threshold { value: None, ties_taken: 0 }; self.counts.len()];
        }
        self.counts
            .iter()
            .zip(&self.bucket)
            .map(|(c, &(hi, above))| {
                let (lo, greater) = walk_down(c, self.k, above);
                Threshold { value: Some(f32::from_bits(hi << 16 | lo)), ties_taken: self.k - greater }
            })
            .collect()
    }
}

/// From the top bucket down, the bucket where the running count (starting at `above`) reaches
/// `k`, and the count of entries in higher buckets plus `above`.
fn walk_down(counts: &[u64], k: u64, above: u64) -> (u32, u64) {
    let mut cum = above;
    for b in (0..counts.len()).rev() {
        if cum + counts[b] >= k {
            return (b as u32, cum);
        }
        cum += counts[b];
    }
    (0, cum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::topk::threshold;

    #[test]
    fn radix_thresholds_equal_quickselect_thresholds() {
        let raw = crate::gguf::synth::pseudo_random_f32(11, 5000);
        // Coarse values (many ties), fine values, and zeros.
        let coarse: Vec<f32> = raw.iter().map(|v| (v.abs() * 8.0).round() / 8.0).collect();
        let fine: Vec<f32> = raw.iter().map(|v| v.abs() * 1e-3).collect();
        let zeros = vec![0.0f32; 100];
        for scores in [&coarse[..], &fine[..], &zeros[..]] {
            for k in [0u64, 1, 2, 17, 250, 2500, scores.len() as u64 - 1, scores.len() as u64, 99999] {
                let mut r = RadixThresholds::new(1, k, scores.len() as u64);
                for row in scores.chunks(64) {
                    r.count_high(0, row);
                }
                r.finish_high();
                for row in scores.chunks(64) {
                    r.count_low(0, row);
                }
                let got = r.finish()[0];
                let want = threshold(&mut scores.to_vec(), k);
                assert_eq!(got, want, "k={k}");
            }
        }
    }
}
