//! The one split of MATH: the data copy holds only the 5 000 MATH **test** problems
//! (`math/test.jsonl`, see SOURCES.md section 5), so they are split once, seeded and stratified
//! by `category`, into
//!
//! - **test**: [`TEST_SIZE`] problems, used only by `eval --tasks math`;
//! - **rest**: the other problems, for calibration texts (`--data math`) and dev.
//!
//! Each category gives `TEST_SIZE · n_c / N` problems to test, rounded by largest remainder
//! (ties by category name); which ones is a ChaCha8 shuffle (seed [`SPLIT_SEED`]) of the
//! category's problems, categories in name order. Test is in file order. A problem goes to
//! neither part when its whitespace-normalised text (`tune::splits::content_hash`) equals a test
//! problem's, or its calibration text contains a test problem's text (as `tune`'s splits check
//! leaks); [`MathSplit::check`] asserts both. Every user of MATH goes through this module.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use aho_corasick::AhoCorasick;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::eval::datasets::{self, DatasetError};
use crate::tune::splits::{LeakError, content_hash};

/// The MATH file under the data directory.
pub const MATH_FILE: &str = "math/test.jsonl";
/// Problems in the test part.
pub const TEST_SIZE: usize = 500;
/// The seed of the split (fixed: the test part must never move).
pub const SPLIT_SEED: u64 = 23;

/// A MATH problem as stored (llm-foundry's field names).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MathRecord {
    /// The problem.
    pub context: String,
    /// The reference solution, with a `\boxed{…}` answer.
    pub chain_of_thought: String,
    /// The boxed answer, extracted by llm-foundry.
    pub answer: String,
    /// The subject, e.g. `algebra`.
    pub category: String,
}

impl MathRecord {
    /// The calibration text: problem, newline, solution.
    pub fn calibration_text(&self) -> String {
        format!("{}\n{}", self.context, self.chain_of_thought)
    }
}

/// The split: every record, and which are test, rest or dropped (indices into `records`, in
/// file order).
#[derive(Debug, Clone)]
pub struct MathSplit {
    /// All records of the file.
    pub records: Vec<MathRecord>,
    /// The test problems.
    pub test: Vec<usize>,
    /// Calibration and dev problems.
    pub rest: Vec<usize>,
    /// Problems in neither part (a duplicate of a test problem, or containing one).
    pub dropped: Vec<usize>,
}

/// Per category, how many of its `counts` go to test: `size · n_c / N` by largest remainder.
pub fn quotas(counts: &BTreeMap<String, usize>, size: usize) -> BTreeMap<String, usize> {
    let total: usize = counts.values().sum();
    if total == 0 {
        return BTreeMap::new();
    }
    let size = size.min(total);
    let mut out: BTreeMap<String, usize> = counts.iter().map(|(c, &n)| (c.clone(), size * n / total)).collect();
    let mut by_remainder: Vec<(&String, usize)> = counts.iter().map(|(c, &n)| (c, size * n % total)).collect();
    // Largest remainder first; the sort is stable, so ties stay in name order.
    by_remainder.sort_by_key(|c| std::cmp::Reverse(c.1));
    let missing = size - out.values().sum::<usize>();
    for (c, _) in by_remainder.into_iter().take(missing) {
        *out.get_mut(c).expect("known category") += 1;
    }
    out
}

impl MathSplit {
    /// Reads `math/test.jsonl` under `data_dir` and splits it with the project's seed.
    pub fn load(data_dir: &Path) -> Result<MathSplit, DatasetError> {
        let records: Vec<MathRecord> = datasets::read_jsonl(data_dir, MATH_FILE)?;
        Ok(MathSplit::build(records, TEST_SIZE, SPLIT_SEED))
    }

    /// Splits `records`: `test_size` stratified test problems drawn with `seed`.
    pub fn build(records: Vec<MathRecord>, test_size: usize, seed: u64) -> MathSplit {
        let mut by_category: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            by_category.entry(r.category.clone()).or_default().push(i);
        }
        let counts = by_category.iter().map(|(c, v)| (c.clone(), v.len())).collect();
        let quota = quotas(&counts, test_size);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut test = Vec::with_capacity(test_size);
        for (category, mut indices) in by_category {
            indices.shuffle(&mut rng);
            test.extend_from_slice(&indices[..quota[&category]]);
        }
        test.sort_unstable();
        let in_test: HashSet<usize> = test.iter().copied().collect();
        let test_hashes: HashSet<[u8; 32]> = test.iter().map(|&i| content_hash(&records[i].context)).collect();
        let finder = test_problem_finder(&records, &test);
        let (rest, dropped): (Vec<usize>, Vec<usize>) = (0..records.len())
            .filter(|i| !in_test.contains(i))
            .partition(|&i| !test_hashes.contains(&content_hash(&records[i].context)) && !finder.is_match(&records[i].calibration_text()));
        MathSplit { records, test, rest, dropped }
    }

    /// The test records, (index in the file, record), in file order.
    pub fn test_records(&self) -> Vec<(usize, MathRecord)> {
        self.test.iter().map(|&i| (i, self.records[i].clone())).collect()
    }

    /// The calibration texts of the rest, in file order.
    pub fn calibration_texts(&self) -> Vec<String> {
        self.rest.iter().map(|&i| self.records[i].calibration_text()).collect()
    }

    /// Asserts that the parts are disjoint: no rest problem with a test problem's hash, and no
    /// rest calibration text containing a test problem.
    pub fn check(&self) -> Result<(), LeakError> {
        let test_hashes: HashSet<[u8; 32]> = self.test.iter().map(|&i| content_hash(&self.records[i].context)).collect();
        let finder = test_problem_finder(&self.records, &self.test);
        for &i in &self.rest {
            let r = &self.records[i];
            if test_hashes.contains(&content_hash(&r.context)) || finder.is_match(&r.calibration_text()) {
                return Err(LeakError(format!(
                    "MATH problem {} (rest) repeats a test problem: {:?}",
                    i + 1,
                    r.context.chars().take(80).collect::<String>()
                )));
            }
        }
        Ok(())
    }
}

/// Finds any test problem's (trimmed) text inside another text.
fn test_problem_finder(records: &[MathRecord], test: &[usize]) -> AhoCorasick {
    let patterns: Vec<&str> = test.iter().map(|&i| records[i].context.trim()).filter(|p| !p.is_empty()).collect();
    AhoCorasick::new(patterns).expect("literal patterns build")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(problem: &str, category: &str) -> MathRecord {
        MathRecord { context: problem.into(), chain_of_thought: format!("so \\boxed{{{problem}}}"), answer: "1".into(), category: category.into() }
    }

    #[test]
    fn quotas_are_proportional_and_sum_to_the_size() {
        let counts: BTreeMap<String, usize> = [("a", 1187), ("b", 903), ("c", 871), ("d", 546), ("e", 540), ("f", 479), ("g", 474)]
            .into_iter()
            .map(|(c, n)| (c.to_string(), n))
            .collect();
        let q = quotas(&counts, 500);
        assert_eq!(q.values().sum::<usize>(), 500);
        assert_eq!(q["a"], 119);
        assert_eq!(q["g"], 47);
        for (c, &n) in &counts {
            let exact = 500.0 * n as f64 / 5000.0;
            assert!((q[c] as f64 - exact).abs() < 1.0, "{c}: {} vs {exact}", q[c]);
        }
    }

    #[test]
    fn duplicates_and_containing_problems_leave_the_rest() {
        let mut records: Vec<MathRecord> = (0..40).map(|i| rec(&format!("Problem number {i} is long enough."), if i % 2 == 0 { "x" } else { "y" })).collect();
        // A copy of every problem: re-spaced (even), or inside a longer problem (odd).
        let copies: Vec<MathRecord> = records
            .iter()
            .enumerate()
            .map(|(i, r)| rec(&if i % 2 == 0 { format!(" {} ", r.context.replace(' ', "  ")) } else { format!("Also: {}", r.context) }, &r.category))
            .collect();
        records.extend(copies);
        let split = MathSplit::build(records.clone(), 10, 1);
        assert_eq!(split.test.len(), 10);
        split.check().unwrap();
        for &t in &split.test {
            let problem = &records[t].context;
            assert!(split.calibration_texts().iter().all(|c| !c.contains(problem.as_str())));
        }
        assert_eq!(split.test.len() + split.rest.len() + split.dropped.len(), records.len());
        // Only copies of test problems are dropped, and every test problem's copy is.
        let repeats = |d: usize, t: usize| content_hash(&records[d].context) == content_hash(&records[t].context) || records[d].calibration_text().contains(records[t].context.trim());
        assert!(!split.dropped.is_empty());
        assert!(split.dropped.iter().all(|&d| split.test.iter().any(|&t| repeats(d, t))));
        assert!(split.rest.iter().all(|&r| split.test.iter().all(|&t| !repeats(r, t))));
        let mut leaky = split.clone();
        leaky.rest.push(leaky.test[0]);
        assert!(leaky.check().unwrap_err().to_string().contains("repeats a test problem"));
    }
}
