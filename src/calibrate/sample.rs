//! Drawing calibration samples as the reference does: N texts drawn with replacement (or
//! without), seeded with ChaCha8 so the draw is the same on every platform and version; and
//! `--shard i/N`, a contiguous share of the draw, so shards merged give the whole run.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Why samples could not be drawn.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SampleError {
    /// The data set has no texts.
    #[error("the data set has no texts")]
    Empty,
    /// More samples than texts without replacement.
    #[error("{wanted} samples without replacement from a set of {available} texts")]
    NotEnough {
        /// Samples asked for.
        wanted: usize,
        /// Texts available.
        available: usize,
    },
    /// Bad shard specification.
    #[error("shard {index}/{count}: the index must be below the count and the count positive")]
    BadShard {
        /// Shard index.
        index: usize,
        /// Shard count.
        count: usize,
    },
    /// `--shard` text that is not `i/N`.
    #[error("shard `{text}`: expected i/N, e.g. 0/4")]
    ShardSyntax {
        /// The text given.
        text: String,
    },
    /// `--shard` with a part that is not a number.
    #[error("shard `{text}`: `{part}` is not a number")]
    ShardNumber {
        /// The text given.
        text: String,
        /// The part that did not parse.
        part: String,
    },
}

/// Indices of `n` texts drawn from `0..available` with `seed`.
pub fn draw(available: usize, n: usize, seed: u64, with_replacement: bool) -> Result<Vec<usize>, SampleError> {
    if available == 0 {
        return Err(SampleError::Empty);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if with_replacement {
        return Ok((0..n).map(|_| rng.random_range(0..available)).collect());
    }
    if n > available {
        return Err(SampleError::NotEnough { wanted: n, available });
    }
    // Partial Fisher–Yates: the first n of a seeded shuffle.
    let mut idx: Vec<usize> = (0..available).collect();
    for i in 0..n {
        let j = rng.random_range(i..available);
        idx.swap(i, j);
    }
    idx.truncate(n);
    Ok(idx)
}

/// A shard `index` of `count` (from `--shard i/N`, zero-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Zero-based shard index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// Parses `i/N`.
    pub fn parse(s: &str) -> Result<Shard, SampleError> {
        let (a, b) = s.split_once('/').ok_or_else(|| SampleError::ShardSyntax { text: s.to_string() })?;
        let number = |part: &str| part.trim().parse().map_err(|_| SampleError::ShardNumber { text: s.to_string(), part: part.to_string() });
        let index = number(a)?;
        let count = number(b)?;
        if count == 0 || index >= count {
            return Err(SampleError::BadShard { index, count });
        }
        Ok(Shard { index, count })
    }

    /// This shard's contiguous part of `items`.
    pub fn select<T: Clone>(&self, items: &[T]) -> Vec<T> {
        let n = items.len();
        items[self.index * n / self.count..(self.index + 1) * n / self.count].to_vec()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_seeded_and_stable() {
        let a = draw(100, 20, 7, true).unwrap();
        assert_eq!(a, draw(100, 20, 7, true).unwrap());
        assert_ne!(a, draw(100, 20, 8, true).unwrap());
        assert!(a.iter().all(|i| *i < 100));
        let b = draw(10, 10, 1, false).unwrap();
        let mut s = b.clone();
        s.sort();
        assert_eq!(s, (0..10).collect::<Vec<_>>());
        assert_eq!(draw(3, 4, 1, false), Err(SampleError::NotEnough { wanted: 4, available: 3 }));
        assert_eq!(draw(0, 4, 1, true), Err(SampleError::Empty));
    }

    #[test]
    fn shards_partition_the_draw() {
        let items: Vec<usize> = (0..10).collect();
        let parts: Vec<usize> = (0..3).flat_map(|i| Shard { index: i, count: 3 }.select(&items)).collect();
        assert_eq!(parts, items);
        assert!(Shard::parse("3/3").is_err());
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { index: 1, count: 4 });
    }
}
