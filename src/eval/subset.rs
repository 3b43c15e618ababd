//! Which items are evaluated. `--limit N`: a documented, reproducible subset — the indices are
//! drawn without replacement by `rand::seq::index::sample` from a ChaCha8 generator seeded with
//! `--seed`, then evaluated in data order. A range `START..END` (`protocol --gsm8k-range`): the
//! items at those positions of the data file, in file order, so one long run can be split into
//! slices evaluated on different machines and combined later. Without either, every item.

use std::ops::Range;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Sorted indices of the items to evaluate out of `available`: the file-order `range` (clipped
/// to the file) when given, else the seeded `limit` subset.
pub fn select(available: usize, limit: Option<usize>, range: Option<&Range<usize>>, seed: u64) -> Vec<usize> {
    if let Some(r) = range {
        return (r.start.min(available)..r.end.min(available)).collect();
    }
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

/// Parses `START..END` (END exclusive, START < END).
pub fn parse_range(s: &str) -> Result<Range<usize>, String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("{s:?}: expected START..END, e.g. 0..200"))?;
    let num = |t: &str| t.trim().parse::<usize>().map_err(|_| format!("{s:?}: {t:?} is not a whole number"));
    let (start, end) = (num(a)?, num(b)?);
    if start >= end {
        return Err(format!("{s:?}: START must be smaller than END"));
    }
    Ok(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sorted_and_distinct() {
        let a = select(1000, Some(50), None, 3);
        assert_eq!(a, select(1000, Some(50), None, 3));
        assert_ne!(a, select(1000, Some(50), None, 4));
        assert_eq!(a.len(), 50);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(select(5, Some(10), None, 0), vec![0, 1, 2, 3, 4]);
        assert_eq!(select(3, None, None, 0), vec![0, 1, 2]);
    }

    #[test]
    fn a_range_is_the_file_order_slice_clipped_to_the_file() {
        assert_eq!(select(10, None, Some(&(2..5)), 0), vec![2, 3, 4]);
        assert_eq!(select(10, None, Some(&(8..20)), 0), vec![8, 9]);
        assert!(select(10, None, Some(&(12..20)), 0).is_empty());
        assert_eq!(parse_range("200..400"), Ok(200..400));
        assert!(parse_range("4..4").is_err() && parse_range("5").is_err() && parse_range("a..3").is_err());
    }
}
