//! The search schedule and the paired comparisons it ranks by.
//!
//! Successive halving: every candidate that passes the NLL guard is scored on the first n₀ dev
//! questions; the better half (by correct answers minus the base's on the same questions) goes
//! on to 2·n₀ questions, and so on, so most of the budget goes to the promising candidates.
//! n₀ follows from the budget (dev answers over all rounds, base excluded).

use serde::Serialize;

/// One round: how many candidates run and on how many dev questions (a prefix of the order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Round {
    /// Candidates evaluated in this round.
    pub candidates: usize,
    /// Dev questions each is scored on (cumulative).
    pub items: usize,
}

/// The rounds for `candidates` candidates, `rounds` rounds and a budget of `budget` candidate
/// dev answers, with no round on more than `available` questions and none on fewer than
/// `min_items`.
pub fn schedule(candidates: usize, rounds: usize, budget: usize, available: usize, min_items: usize) -> Vec<Round> {
    if candidates == 0 || rounds == 0 || available == 0 {
        return Vec::new();
    }
    let mut counts = vec![candidates];
    while counts.len() < rounds && *counts.last().expect("non-empty") > 1 {
        let last = *counts.last().expect("non-empty");
        counts.push(last.div_ceil(2));
    }
    let weight: usize = counts.iter().enumerate().map(|(r, c)| c << r).sum();
    let n0 = (budget / weight).max(min_items).max(1);
    counts.iter().enumerate().map(|(r, &c)| Round { candidates: c, items: (n0 << r).min(available) }).collect()
}

/// A paired comparison on identical items.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Paired {
    /// Items.
    pub n: usize,
    /// The base's metric.
    pub base: f64,
    /// The other model's metric.
    pub other: f64,
    /// other − base.
    pub delta: f64,
    /// Paired bootstrap 95 % interval of the difference.
    pub ci95: (f64, f64),
    /// Items only the base got right / only the other got right (binary metrics).
    pub discordant: Option<(usize, usize)>,
    /// Exact McNemar p (binary metrics).
    pub mcnemar_p: Option<f64>,
}

/// Compares metric `m` of `other` against `base` item by item (`binary`: 0/1 scores).
pub fn paired(base: &[Vec<(f64, f64)>], other: &[Vec<(f64, f64)>], m: usize, binary: bool, resamples: usize, seed: u64) -> Paired {
    use crate::eval::stats;
    use crate::eval::task::Aggregate;
    let n = base.len().min(other.len());
    let b: Vec<(f64, f64)> = base[..n].iter().map(|s| s[m]).collect();
    let o: Vec<(f64, f64)> = other[..n].iter().map(|s| s[m]).collect();
    let (vb, vo) = (stats::aggregate(Aggregate::Ratio, &b), stats::aggregate(Aggregate::Ratio, &o));
    let (discordant, mcnemar_p) = if binary {
        let right = |xs: &[(f64, f64)]| xs.iter().map(|x| x.0 > 0.5).collect::<Vec<bool>>();
        let (x, y) = stats::discordant(&right(&b), &right(&o));
        (Some((x, y)), Some(stats::mcnemar_exact_p(x, y)))
    } else {
        (None, None)
    };
    Paired { n, base: vb, other: vo, delta: vo - vb, ci95: stats::paired_bootstrap_ci(Aggregate::Ratio, &b, &o, resamples, seed), discordant, mcnemar_p }
}

/// Correct answers (metric `m` > 0.5) among the first `n` items.
pub fn correct(scores: &[Vec<(f64, f64)>], m: usize, n: usize) -> i64 {
    scores.iter().take(n).filter(|s| s[m].0 > 0.5).count() as i64
}

/// Orders candidate indices best first: more dev answers right than the base (`gain`), then a
/// smaller NLL change, then the earlier candidate (so ties are broken the same way every run).
pub fn rank(mut entries: Vec<(usize, i64, f64)>) -> Vec<usize> {
    entries.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.total_cmp(&b.2)).then(a.0.cmp(&b.0)));
    entries.into_iter().map(|e| e.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_spends_about_the_budget() {
        let s = schedule(12, 3, 1152, 10_000, 8);
        assert_eq!(s, vec![Round { candidates: 12, items: 32 }, Round { candidates: 6, items: 64 }, Round { candidates: 3, items: 128 }]);
        let spent: usize = s.iter().map(|r| r.candidates * r.items).sum();
        assert_eq!(spent, 1152);
        assert_eq!(schedule(12, 3, 10, 100, 8)[0].items, 8, "a minimum per round");
        assert_eq!(schedule(12, 3, 100_000, 100, 8).last().unwrap().items, 100, "capped by the dev set");
        assert_eq!(schedule(1, 3, 100, 100, 8).len(), 1);
    }

    #[test]
    fn ranking_is_total_and_stable() {
        assert_eq!(rank(vec![(0, 1, 0.2), (1, 2, 0.5), (2, 1, 0.1), (3, 1, 0.1)]), vec![1, 2, 3, 0]);
    }

    #[test]
    fn paired_counts_discordant_items() {
        let s = |v: &[f64]| v.iter().map(|&x| vec![(x, 1.0)]).collect::<Vec<_>>();
        let p = paired(&s(&[1.0, 0.0, 0.0, 1.0]), &s(&[1.0, 1.0, 1.0, 0.0]), 0, true, 200, 1);
        assert_eq!((p.n, p.discordant), (4, Some((1, 2))));
        assert!((p.delta - 0.25).abs() < 1e-12 && p.mcnemar_p.unwrap() > 0.99);
    }
}
