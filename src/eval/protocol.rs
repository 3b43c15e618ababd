//! The paper's GSM8K protocol beside the full paired test, computed from one base-vs-edit pair of
//! per-question results (issue 23 §3).
//!
//! - **full**: every evaluated question, paired: both accuracies, the difference with a paired
//!   bootstrap 95 % interval, the discordant counts and the exact McNemar p-value;
//! - **paper**: the first `paper_n` questions in data-file order (the paper's code runs
//!   lm-evaluation-harness `gsm8k_cot` with `limit=200`, which takes the first documents), the
//!   same numbers and the relative change (edit − base) / base that the paper reports;
//! - **subsets**: the relative change over `draws` random `paper_n`-question subsets of the full
//!   paired run (seeded, without replacement): its quantiles and how often it reaches the paper's
//!   +4 % and +17 %, so a reader sees how wide a 200-question protocol is;
//! - **paper average**: with several edits (the paper's code averages five calibration draws),
//!   the mean of the edits' first-`paper_n` accuracies against the base's.
//!
//! Every number above depends only on how many questions fall in each cell of the paired 2×2
//! table (both right, base only, edit only, neither), so the analysis is computed from
//! [`PairTable`]s: a run split into file-order slices on several machines and combined by
//! adding the slices' tables gives the same bytes as one run over all of them.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::stats::{discordant, mcnemar_exact_p, paired_bootstrap_ci};
use super::task::Aggregate;

/// The relative changes the paper reports for ×1.1 on GSM8K (+4 % to +17 %).
pub const PAPER_RELATIVE_GAINS: [f64; 2] = [0.04, 0.17];

/// Per-question outcomes of a base and an edited model, aligned and in data-file order.
#[derive(Clone, Debug, PartialEq)]
pub struct Paired {
    /// Each question's position in the data file (ascending).
    pub index: Vec<usize>,
    /// The base model answered correctly.
    pub base: Vec<bool>,
    /// The edited model answered correctly.
    pub edit: Vec<bool>,
}

/// Why two result lists cannot be paired.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PairError {
    /// The lists name different questions.
    #[error("the base and the edit were evaluated on different questions (base {base} items, edit {edit}; first difference at position {at}); evaluate both with the same settings")]
    Unaligned {
        /// Items of the base.
        base: usize,
        /// Items of the edit.
        edit: usize,
        /// First position where the question indices differ.
        at: usize,
    },
}

impl Paired {
    /// Pairs `(file index, correct)` lists of the base and the edit, sorting by file index.
    pub fn new(mut base: Vec<(usize, bool)>, mut edit: Vec<(usize, bool)>) -> Result<Paired, PairError> {
        base.sort_by_key(|&(i, _)| i);
        edit.sort_by_key(|&(i, _)| i);
        let at = base.iter().zip(&edit).position(|(a, b)| a.0 != b.0).unwrap_or(base.len().min(edit.len()));
        if base.len() != edit.len() || at < base.len() {
            return Err(PairError::Unaligned { base: base.len(), edit: edit.len(), at });
        }
        Ok(Paired {
            index: base.iter().map(|&(i, _)| i).collect(),
            base: base.iter().map(|&(_, c)| c).collect(),
            edit: edit.iter().map(|&(_, c)| c).collect(),
        })
    }

    /// Number of paired questions.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when there is no question.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// The paired 2×2 table of one set of questions: everything the protocol's numbers depend on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairTable {
    /// Both models right.
    pub both: usize,
    /// Only the base right.
    pub base_only: usize,
    /// Only the edit right.
    pub edit_only: usize,
    /// Both wrong.
    pub neither: usize,
}

impl PairTable {
    /// The table of aligned outcomes.
    pub fn of(base: &[bool], edit: &[bool]) -> PairTable {
        let mut t = PairTable::default();
        for (&b, &e) in base.iter().zip(edit) {
            match (b, e) {
                (true, true) => t.both += 1,
                (true, false) => t.base_only += 1,
                (false, true) => t.edit_only += 1,
                (false, false) => t.neither += 1,
            }
        }
        t
    }

    /// Questions in the table.
    pub fn n(&self) -> usize {
        self.both + self.base_only + self.edit_only + self.neither
    }

    /// The table of two disjoint sets of questions together.
    pub fn add(&self, o: &PairTable) -> PairTable {
        PairTable { both: self.both + o.both, base_only: self.base_only + o.base_only, edit_only: self.edit_only + o.edit_only, neither: self.neither + o.neither }
    }

    /// The outcomes in a canonical order (both, base only, edit only, neither): every statistic
    /// here is symmetric in the questions, so this stands for any set with the same table.
    pub fn outcomes(&self) -> (Vec<bool>, Vec<bool>) {
        let cells = [(true, true, self.both), (true, false, self.base_only), (false, true, self.edit_only), (false, false, self.neither)];
        let mut base = Vec::with_capacity(self.n());
        let mut edit = Vec::with_capacity(self.n());
        for (b, e, k) in cells {
            base.extend(std::iter::repeat_n(b, k));
            edit.extend(std::iter::repeat_n(e, k));
        }
        (base, edit)
    }

    /// Base accuracy.
    pub fn base_accuracy(&self) -> f64 {
        (self.both + self.base_only) as f64 / self.n() as f64
    }

    /// Edit accuracy.
    pub fn edit_accuracy(&self) -> f64 {
        (self.both + self.edit_only) as f64 / self.n() as f64
    }
}

/// Paired numbers of one set of questions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Questions.
    pub n: usize,
    /// Base accuracy.
    pub base: f64,
    /// Edit accuracy.
    pub edit: f64,
    /// edit − base, in accuracy units.
    pub delta: f64,
    /// 95 % paired bootstrap interval of `delta`.
    pub ci95: (f64, f64),
    /// (edit − base) / base; `None` when the base scored 0.
    pub relative: Option<f64>,
    /// Questions only the base answered correctly.
    pub base_only: usize,
    /// Questions only the edit answered correctly.
    pub edit_only: usize,
    /// Two-sided exact McNemar p-value.
    pub mcnemar_p: f64,
}

fn accuracy(xs: &[bool]) -> f64 {
    if xs.is_empty() { f64::NAN } else { xs.iter().filter(|&&c| c).count() as f64 / xs.len() as f64 }
}

fn relative(base: f64, edit: f64) -> Option<f64> {
    (base > 0.0).then(|| (edit - base) / base)
}

/// The paired summary of the questions in `t`.
pub fn summarise(t: &PairTable, resamples: usize, seed: u64) -> Summary {
    let (base, edit) = t.outcomes();
    let as_items = |xs: &[bool]| xs.iter().map(|&c| (c as u8 as f64, 1.0)).collect::<Vec<_>>();
    let (b, e) = (accuracy(&base), accuracy(&edit));
    let (base_only, edit_only) = discordant(&base, &edit);
    Summary {
        n: base.len(),
        base: b,
        edit: e,
        delta: e - b,
        ci95: paired_bootstrap_ci(Aggregate::Ratio, &as_items(&base), &as_items(&edit), resamples, seed),
        relative: relative(b, e),
        base_only,
        edit_only,
        mcnemar_p: mcnemar_exact_p(base_only, edit_only),
    }
}

/// The relative change over random subsets of the full paired run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubsetDistribution {
    /// Subsets drawn.
    pub draws: usize,
    /// Questions per subset.
    pub n: usize,
    /// Subsets whose base scored 0 (no relative change; left out of the numbers below).
    pub undefined: usize,
    /// (quantile, relative change) for 2.5 %, 25 %, 50 %, 75 %, 97.5 %.
    pub quantiles: Vec<(f64, f64)>,
    /// Share of subsets with a relative change ≥ +4 % (the paper's smallest gain).
    pub share_ge_paper_low: f64,
    /// Share of subsets with a relative change ≥ +17 % (the paper's largest gain).
    pub share_ge_paper_high: f64,
    /// Share of subsets with a relative change ≤ −4 % (a loss as large as the paper's smallest gain).
    pub share_le_minus_paper_low: f64,
    /// Every defined relative change, ascending (for the plot).
    pub relative: Vec<f64>,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Draws `draws` subsets of `n` questions (seeded, without replacement) from the questions of `t`.
pub fn subsets(t: &PairTable, n: usize, draws: usize, seed: u64) -> SubsetDistribution {
    let (base, edit) = t.outcomes();
    let n = n.min(base.len());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rel = Vec::with_capacity(draws);
    let mut undefined = 0;
    for _ in 0..draws {
        let picked = rand::seq::index::sample(&mut rng, base.len(), n);
        let (mut b, mut e) = (0usize, 0usize);
        for i in picked.iter() {
            b += base[i] as usize;
            e += edit[i] as usize;
        }
        match relative(b as f64, e as f64) {
            Some(r) => rel.push(r),
            None => undefined += 1,
        }
    }
    rel.sort_by(f64::total_cmp);
    let share = |f: &dyn Fn(f64) -> bool| if rel.is_empty() { f64::NAN } else { rel.iter().filter(|&&r| f(r)).count() as f64 / rel.len() as f64 };
    // Relative changes are ratios of small counts: compare with a tolerance so +4 % counts as +4 %.
    let eps = 1e-12;
    SubsetDistribution {
        draws,
        n,
        undefined,
        quantiles: [0.025, 0.25, 0.5, 0.75, 0.975].iter().map(|&q| (q, quantile(&rel, q))).collect(),
        share_ge_paper_low: share(&|r| r >= PAPER_RELATIVE_GAINS[0] - eps),
        share_ge_paper_high: share(&|r| r >= PAPER_RELATIVE_GAINS[1] - eps),
        share_le_minus_paper_low: share(&|r| r <= -PAPER_RELATIVE_GAINS[0] + eps),
        relative: rel,
    }
}

/// Both protocols for one edit and one metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProtocolAnalysis {
    /// The metric (`strict-match` or `flexible-extract`).
    pub metric: String,
    /// Every question, paired.
    pub full: Summary,
    /// The first `paper_n` questions in data-file order; `None` for a slice that does not start
    /// at the file's first question (or holds fewer than `paper_n`).
    pub paper: Option<Summary>,
    /// The relative change over random subsets of `paper_n` questions.
    pub subsets: SubsetDistribution,
    /// Share of random subsets whose relative change is at least the paper slice's.
    pub paper_slice_rank: Option<f64>,
    /// The paired table of every question (what slices add up).
    pub full_table: PairTable,
    /// The paired table of the paper's questions.
    pub paper_table: Option<PairTable>,
}

/// What the protocols are computed with.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProtocolSettings {
    /// Questions of the paper's protocol (its `limit`).
    pub paper_n: usize,
    /// Random subsets drawn.
    pub draws: usize,
    /// Bootstrap resamples of the paired intervals.
    pub resamples: usize,
    /// Seed of the subsets and the bootstrap.
    pub seed: u64,
}

impl Default for ProtocolSettings {
    fn default() -> Self {
        ProtocolSettings { paper_n: 200, draws: 10_000, resamples: 2_000, seed: 1234 }
    }
}

/// The tables of one paired run: all its questions, and its first `paper_n` when `from_start`
/// (the run's first question is the file's first) and it holds that many.
pub fn tables(p: &Paired, paper_n: usize, from_start: bool) -> (PairTable, Option<PairTable>) {
    let paper = (from_start && p.len() >= paper_n).then(|| PairTable::of(&p.base[..paper_n], &p.edit[..paper_n]));
    (PairTable::of(&p.base, &p.edit), paper)
}

/// Both protocols from the tables of all questions and of the paper's.
pub fn analyse(metric: &str, full: &PairTable, paper: Option<&PairTable>, s: &ProtocolSettings) -> ProtocolAnalysis {
    let paper_summary = paper.map(|t| summarise(t, s.resamples, s.seed));
    let subsets = subsets(full, s.paper_n, s.draws, s.seed.wrapping_add(1));
    let paper_slice_rank = paper_summary.as_ref().and_then(|p| p.relative).filter(|_| !subsets.relative.is_empty()).map(|r| {
        subsets.relative.iter().filter(|&&x| x >= r - 1e-12).count() as f64 / subsets.relative.len() as f64
    });
    ProtocolAnalysis {
        metric: metric.to_string(),
        full: summarise(full, s.resamples, s.seed),
        paper: paper_summary,
        subsets,
        paper_slice_rank,
        full_table: *full,
        paper_table: paper.copied(),
    }
}

/// The paper's averaging of calibration draws: the base's accuracy on the first `paper_n`
/// questions against the mean of several edits' (each a separate calibration draw).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaperAverage {
    /// The metric.
    pub metric: String,
    /// Edits averaged.
    pub edits: usize,
    /// Base accuracy on the paper's questions.
    pub base: f64,
    /// Each edit's accuracy on the paper's questions.
    pub per_edit: Vec<f64>,
    /// Their mean.
    pub mean_edit: f64,
    /// (mean edit − base) / base.
    pub relative: Option<f64>,
    /// Smallest and largest single-draw relative change.
    pub single_draw_range: Option<(f64, f64)>,
}

/// Averages the paper-slice accuracies of several edits paired with one base (one table per
/// edit, all on the same questions).
pub fn paper_average(metric: &str, tables: &[PairTable]) -> Option<PaperAverage> {
    let first = tables.first()?;
    let base = first.base_accuracy();
    let per_edit: Vec<f64> = tables.iter().map(PairTable::edit_accuracy).collect();
    let mean_edit = per_edit.iter().sum::<f64>() / per_edit.len() as f64;
    let singles: Vec<f64> = per_edit.iter().filter_map(|&e| relative(base, e)).collect();
    let single_draw_range = (!singles.is_empty()).then(|| (singles.iter().cloned().fold(f64::INFINITY, f64::min), singles.iter().cloned().fold(f64::NEG_INFINITY, f64::max)));
    Some(PaperAverage { metric: metric.to_string(), edits: tables.len(), base, per_edit, mean_edit, relative: relative(base, mean_edit), single_draw_range })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(pattern: &[(bool, bool)]) -> Paired {
        let base = pattern.iter().enumerate().map(|(i, &(b, _))| (i, b)).collect();
        let edit = pattern.iter().enumerate().map(|(i, &(_, e))| (i, e)).collect();
        Paired::new(base, edit).unwrap()
    }

    fn table(pattern: &[(bool, bool)]) -> PairTable {
        let p = outcomes(pattern);
        PairTable::of(&p.base, &p.edit)
    }

    #[test]
    fn the_paper_slice_is_the_first_questions_in_file_order_and_pairs_sort_by_index() {
        // Given out of order: pairing sorts by file index.
        let p = Paired::new(vec![(2, true), (0, false), (1, true)], vec![(1, false), (2, true), (0, true)]).unwrap();
        assert_eq!(p.index, vec![0, 1, 2]);
        assert_eq!(p.base, vec![false, true, true]);
        assert_eq!(p.edit, vec![true, false, true]);
        let (full, paper) = tables(&p, 2, true);
        let a = analyse("m", &full, paper.as_ref(), &ProtocolSettings { paper_n: 2, draws: 50, resamples: 100, seed: 1 });
        let paper = a.paper.unwrap();
        assert_eq!(paper.n, 2);
        assert_eq!((paper.base, paper.edit), (0.5, 0.5));
        assert_eq!((paper.base_only, paper.edit_only), (1, 1));
        assert_eq!(a.full.n, 3);
        assert!((a.full.base - 2.0 / 3.0).abs() < 1e-12);
        // A slice that does not start at the first question, or is shorter, has no paper slice.
        assert_eq!(tables(&p, 2, false).1, None);
        assert_eq!(tables(&p, 4, true).1, None);
        assert!(Paired::new(vec![(0, true)], vec![(1, true)]).is_err());
        assert!(Paired::new(vec![(0, true)], vec![(0, true), (1, true)]).is_err());
    }

    #[test]
    fn summary_counts_discordant_pairs_and_the_relative_change() {
        // 10 questions: base right on 4, edit right on 5; base-only 1, edit-only 2.
        let mut pat = vec![(true, true); 3];
        pat.extend([(true, false), (false, true), (false, true)]);
        pat.extend(vec![(false, false); 4]);
        let t = table(&pat);
        assert_eq!(t, PairTable { both: 3, base_only: 1, edit_only: 2, neither: 4 });
        let s = summarise(&t, 500, 3);
        assert_eq!((s.n, s.base_only, s.edit_only), (10, 1, 2));
        assert!((s.base - 0.4).abs() < 1e-12 && (s.edit - 0.5).abs() < 1e-12);
        assert!((s.relative.unwrap() - 0.25).abs() < 1e-12);
        assert!((s.mcnemar_p - 1.0).abs() < 1e-12);
        assert!(s.ci95.0 <= s.delta && s.delta <= s.ci95.1);
        assert_eq!(summarise(&PairTable { edit_only: 1, neither: 1, ..PairTable::default() }, 10, 0).relative, None);
    }

    #[test]
    fn slices_combined_give_the_bytes_of_one_run() {
        // The same 600 outcomes analysed whole, and as three slices whose tables are added.
        let pat: Vec<(bool, bool)> = (0..600).map(|i| (i % 3 == 0, i % 4 == 0 || i % 7 == 0)).collect();
        let s = ProtocolSettings { paper_n: 200, draws: 300, resamples: 200, seed: 5 };
        let whole = outcomes(&pat);
        let (full, paper) = tables(&whole, 200, true);
        let one = analyse("m", &full, paper.as_ref(), &s);
        let slices: Vec<PairTable> = pat.chunks(200).map(table).collect();
        let added = slices.iter().fold(PairTable::default(), |acc, t| acc.add(t));
        let combined = analyse("m", &added, Some(&slices[0]), &s);
        assert_eq!(serde_json::to_string(&one).unwrap(), serde_json::to_string(&combined).unwrap());
        // Shuffling the questions does not change a number either.
        let mut rev = pat.clone();
        rev.reverse();
        assert_eq!(analyse("m", &table(&rev), None, &s).full, one.full);
    }

    #[test]
    fn identical_models_give_zero_change_on_every_subset() {
        let pat: Vec<(bool, bool)> = (0..300).map(|i| (i % 3 == 0, i % 3 == 0)).collect();
        let d = subsets(&table(&pat), 200, 100, 9);
        assert_eq!(d.relative.len(), 100);
        assert!(d.relative.iter().all(|&r| r == 0.0));
        assert_eq!(d.share_ge_paper_low, 0.0);
        assert_eq!(d.quantiles[2], (0.5, 0.0));
    }

    #[test]
    fn subsets_are_seeded_and_spread_around_the_full_change() {
        // Base right on 1 of 5, edit on 1 of 5 but other questions: full change 0.
        let pat: Vec<(bool, bool)> = (0..1000).map(|i| (i % 5 == 0, i % 5 == 1)).collect();
        let t = table(&pat);
        let a = subsets(&t, 200, 2000, 7);
        assert_eq!(a, subsets(&t, 200, 2000, 7));
        assert_ne!(a.relative, subsets(&t, 200, 2000, 8).relative);
        // Zero-mean noise: the median is near 0 and a +4 % gain or more is common.
        assert!(a.quantiles[2].1.abs() < 0.06, "{:?}", a.quantiles);
        assert!(a.share_ge_paper_low > 0.2 && a.share_ge_paper_low < 0.6, "{}", a.share_ge_paper_low);
        assert!(a.share_ge_paper_high > 0.01 && a.share_ge_paper_high < a.share_ge_paper_low);
        assert!(a.relative.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn paper_average_is_the_mean_of_the_edits_first_questions() {
        let t1 = table(&[(true, true), (false, true)]);
        let t2 = table(&[(true, false), (false, false)]);
        let avg = paper_average("m", &[t1, t2]).unwrap();
        assert_eq!(avg.base, 0.5);
        assert_eq!(avg.per_edit, vec![1.0, 0.0]);
        assert_eq!(avg.mean_edit, 0.5);
        assert_eq!(avg.relative, Some(0.0));
        assert_eq!(avg.single_draw_range, Some((-1.0, 1.0)));
        assert!(paper_average("m", &[]).is_none());
    }
}
