//! `--limit N`: which items are evaluated. The subset is documented and reproducible: the
//! indices are drawn without replacement by `rand::seq::index::sample` from a ChaCha8 generator
//! seeded with `--seed`, then evaluated in data order. Without a limit (or with N ≥ the number
//! of items) every item is evaluated.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Sorted indices of the items to evaluate out of `available`.
pub fn select(available: usize, limit: Option<usize>, seed: u64) -> Vec<usize> {
    match limit {
        Some(n) if n < available => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut picked = rand::seq::index::sample(&mut rng, available, n).into_vec();
            picked.sort_unstable();
            picked
        }
        _ => (0..available).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sorted_and_distinct() {
        let a = select(1000, Some(50), 3);
        assert_eq!(a, select(1000, Some(50), 3));
        assert_ne!(a, select(1000, Some(50), 4));
        assert_eq!(a.len(), 50);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(select(5, Some(10), 0), vec![0, 1, 2, 3, 4]);
        assert_eq!(select(3, None, 0), vec![0, 1, 2]);
    }
}
