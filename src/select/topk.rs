//! Exact top-k by selection (`select_nth_unstable`, O(n)), not a full sort.
//!
//! Order: larger score first by `f32::total_cmp`; **equal scores: the lower flat index wins**.
//! The result is therefore exactly "sort the flattened scores by (score descending, index
//! ascending) and take the first k". It is described by a `Threshold`: every score above `value`
//! is in, and of the scores equal to `value` the first `ties_taken` in flat-index order are in.

use std::cmp::Ordering;

/// The k-th largest score and how many of the entries equal to it belong to the top k.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    /// The k-th largest score (`None` when k = 0: nothing is selected).
    pub value: Option<f32>,
    /// Entries equal to `value` that are selected, taken in increasing flat index.
    pub ties_taken: u64,
}

/// The threshold of the top `k` of `scores`. Reorders `scores` (it is used as scratch space).
pub fn threshold(scores: &mut [f32], k: u64) -> Threshold {
    let k = k.min(scores.len() as u64) as usize;
    if k == 0 {
        return Threshold { value: None, ties_taken: 0 };
    }
    let (above, kth, _) = scores.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let kth = *kth;
    let greater = above.iter().filter(|s| s.total_cmp(&kth) == Ordering::Greater).count();
    Threshold { value: Some(kth), ties_taken: (k - greater) as u64 }
}

/// Walks scores in flat-index order and says which are in the top k of a `Threshold`.
#[derive(Clone, Debug)]
pub struct Membership {
    threshold: Threshold,
    ties_left: u64,
}

impl Membership {
    /// Starts a walk at flat index 0.
    pub fn new(threshold: Threshold) -> Membership {
        Membership { threshold, ties_left: threshold.ties_taken }
    }

    /// Whether the next score (in flat-index order) is selected.
    #[inline]
    pub fn next(&mut self, score: f32) -> bool {
        let Some(t) = self.threshold.value else { return false };
        match score.total_cmp(&t) {
            Ordering::Greater => true,
            Ordering::Equal if self.ties_left > 0 => {
                self.ties_left -= 1;
                true
            }
            _ => false,
        }
    }
}

/// Reference implementation for tests: full sort by (score desc, index asc), first k indices.
pub fn reference_top_k(scores: &[f32], k: u64) -> Vec<u64> {
    let mut idx: Vec<u64> = (0..scores.len() as u64).collect();
    idx.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
    idx.truncate(k as usize);
    idx.sort_unstable();
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_selection(scores: &[f32], k: u64) -> Vec<u64> {
        let mut scratch = scores.to_vec();
        let mut m = Membership::new(threshold(&mut scratch, k));
        (0..scores.len() as u64).filter(|&i| m.next(scores[i as usize])).collect()
    }

    #[test]
    fn planted_ties_resolve_to_lower_index() {
        let scores = [1.0, 3.0, 2.0, 3.0, 2.0, 2.0, 0.5, 2.0];
        assert_eq!(by_selection(&scores, 3), vec![1, 2, 3]);
        assert_eq!(by_selection(&scores, 4), vec![1, 2, 3, 4]);
        assert_eq!(by_selection(&scores, 0), Vec::<u64>::new());
        assert_eq!(by_selection(&scores, 99), (0..8).collect::<Vec<_>>());
        for k in 0..=8 {
            assert_eq!(by_selection(&scores, k), reference_top_k(&scores, k), "k={k}");
        }
    }
}
