//! The data splits of `tune`, built so they cannot leak, and checked in code.
//!
//! - calibration: the texts the STATS were measured on (drawn from the math and general sets);
//! - dev (the search looks only here): GSM8K **train** questions, MMLU **dev** questions and a
//!   seeded half of the ARC-Easy test file;
//! - test (touched once, for the final comparison): GSM8K **test** questions, MMLU test questions
//!   and the other half of ARC-Easy.
//!
//! With another objective (`objective`) its questions take GSM8K's place: MATH dev problems come
//! from the non-test part of the one MATH split (`data::math_split`) and test problems from its
//! 500 test problems; a task file's generation questions (first occurrence of each question
//! kept) are shuffled with the seed and split in two fixed halves, test the first ⌈n/2⌉, dev the
//! rest, each taken as a prefix so a larger size extends a smaller one.
//!
//! An item is dropped from dev or test when its question text occurs inside any calibration
//! text (a substring test, so it holds whatever format the calibration texts use), GSM8K dev
//! items whose question equals a test question are dropped, and general test items whose
//! question equals a dev item's are dropped; [`Splits::check`] then asserts, by SHA-256
//! of the whitespace-normalised question, that no two splits share an item.

use std::collections::HashSet;
use std::path::Path;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use super::objective::{Objective, Question};
use crate::data::math_split::MathSplit;
use crate::eval::datasets::{self, DatasetError, Gsm8kRecord, MmluRecord, QueryRecord};
use crate::eval::mc::{self, McItem};
use crate::eval::taskfile::{TaskFile, TaskItem};

/// A content hash of a question: SHA-256 of its whitespace-normalised text.
pub fn content_hash(text: &str) -> [u8; 32] {
    let normal: Vec<&str> = text.split_whitespace().collect();
    Sha256::digest(normal.join(" ").as_bytes()).into()
}

/// The items of one side (dev or test).
#[derive(Clone, Debug, Default)]
pub struct Side {
    /// GSM8K questions, (index in their file, record), in evaluation order (empty when the
    /// objective is another task).
    pub gsm8k: Vec<(usize, Gsm8kRecord)>,
    /// The objective's questions when it is not GSM8K, in evaluation order.
    pub task: Vec<Question>,
    /// General multiple-choice items, MMLU and ARC-Easy alternating (so the first n of a larger
    /// set are the set for n: a journal stays valid when the size changes), in evaluation order.
    pub general: Vec<McItem>,
    /// Question texts of `general`, for the disjointness check.
    pub general_questions: Vec<String>,
    /// Per item of `general`: an MMLU item (else ARC-Easy).
    pub general_is_mmlu: Vec<bool>,
}

impl Side {
    /// The objective's questions (GSM8K's or the other task's).
    pub fn questions(&self) -> usize {
        self.gsm8k.len() + self.task.len()
    }
}

/// Calibration texts, dev and test.
#[derive(Clone, Debug)]
pub struct Splits {
    /// The calibration texts (math and general).
    pub calibration: Vec<String>,
    /// Where the search looks.
    pub dev: Side,
    /// Touched once, for the final comparison.
    pub test: Side,
}

/// How many items of each kind to keep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SplitSizes {
    /// GSM8K (or the objective's) dev questions (the most any search round uses).
    pub dev_gsm8k: usize,
    /// Dev items per general task (MMLU dev, ARC-Easy dev half).
    pub dev_general: usize,
    /// GSM8K (or the objective's) test questions (`None`: all, 1 319 for GSM8K).
    pub test_gsm8k: Option<usize>,
    /// Test items per general task.
    pub test_general: usize,
}

/// A split leaks: the check found an item in two places.
#[derive(Debug, thiserror::Error)]
#[error("data splits leak: {0}")]
pub struct LeakError(pub String);

/// Whether `question` occurs in any calibration text.
fn in_calibration(calibration: &[String], question: &str) -> bool {
    let q = question.trim();
    !q.is_empty() && calibration.iter().any(|t| t.contains(q))
}

/// The first `n` (or all) of `items` after a seeded shuffle, keeping those `keep` accepts.
fn shuffled<T>(mut items: Vec<T>, seed: u64, n: Option<usize>, keep: impl Fn(&T) -> bool) -> Vec<T> {
    items.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    // Lazy: the substring test against the calibration texts runs only until `n` are kept.
    items.into_iter().filter(|x| keep(x)).take(n.unwrap_or(usize::MAX)).collect()
}

fn mmlu_item(index: usize, r: &MmluRecord) -> (McItem, String) {
    let prefix = format!("The following are multiple choice questions (with answers) about {}.\n\n", r.subject.replace('_', " "));
    let item = McItem { index, prefix, context: mc::mmlu_question(r), choices: ["A", "B", "C", "D"].map(String::from).to_vec(), gold: r.answer_index };
    (item, r.question.clone())
}

fn arc_item(index: usize, r: &QueryRecord) -> (McItem, String) {
    (McItem { index, prefix: String::new(), context: mc::arc_context(&r.query), choices: r.choices.clone(), gold: r.gold }, r.query.clone())
}

/// GSM8K (dev, test): train questions for dev, test questions for test.
type Gsm8kSides = (Vec<(usize, Gsm8kRecord)>, Vec<(usize, Gsm8kRecord)>);

fn gsm8k_items(data_dir: &Path, cal: &[String], sizes: SplitSizes, seed: u64) -> Result<Gsm8kSides, DatasetError> {
    let train: Vec<Gsm8kRecord> = datasets::read_jsonl(data_dir, "gsm8k/train.jsonl")?;
    let test: Vec<Gsm8kRecord> = datasets::read_jsonl(data_dir, "gsm8k/test.jsonl")?;
    let test_hashes: HashSet<[u8; 32]> = test.iter().map(|r| content_hash(&r.question)).collect();
    // The GSM8K test order is a seeded shuffle fixed before any result is seen; a limit
    // takes its first N, so a larger N extends a smaller one.
    let gsm8k_test = shuffled(test.into_iter().enumerate().collect(), seed ^ 0x7e57, sizes.test_gsm8k, |(_, r): &(usize, Gsm8kRecord)| {
        !in_calibration(cal, &r.question)
    });
    let gsm8k_dev = shuffled(train.into_iter().enumerate().collect(), seed ^ 0xde7, Some(sizes.dev_gsm8k), |(_, r): &(usize, Gsm8kRecord)| {
        !in_calibration(cal, &r.question) && !test_hashes.contains(&content_hash(&r.question))
    });
    Ok((gsm8k_dev, gsm8k_test))
}

/// MATH (dev, test): dev from the split's rest, test from its 500 test problems, each a seeded
/// shuffle taken as a prefix.
fn math_items(data_dir: &Path, cal: &[String], sizes: SplitSizes, seed: u64) -> Result<(Vec<Question>, Vec<Question>), DatasetError> {
    let split = MathSplit::load(data_dir)?;
    let test_hashes: HashSet<[u8; 32]> = split.test.iter().map(|&i| content_hash(&split.records[i].context)).collect();
    let test = shuffled(split.test_records(), seed ^ 0x7e57, sizes.test_gsm8k, |(_, r)| !in_calibration(cal, &r.context));
    let rest = split.rest.iter().map(|&i| (i, split.records[i].clone())).collect();
    let dev = shuffled(rest, seed ^ 0xde7, Some(sizes.dev_gsm8k), |(_, r)| !in_calibration(cal, &r.context) && !test_hashes.contains(&content_hash(&r.context)));
    let wrap = |v: Vec<(usize, crate::data::math_split::MathRecord)>| v.into_iter().map(|(i, r)| Question::Math(i, r)).collect();
    Ok((wrap(dev), wrap(test)))
}

/// A task file's (dev, test): its generation questions, each distinct question once (its first
/// line), shuffled with the seed; test is the first half (rounded up), dev the rest.
fn file_items(file: &TaskFile, cal: &[String], sizes: SplitSizes, seed: u64) -> Result<(Vec<Question>, Vec<Question>), DatasetError> {
    super::objective::check_generation(file)?;
    let mut seen = HashSet::new();
    let mut unique = Vec::new();
    for (i, item) in file.items.iter().enumerate() {
        if let TaskItem::Generate { question, answer } = item
            && seen.insert(content_hash(question))
        {
            unique.push(Question::Own(i, question.clone(), answer.clone()));
        }
    }
    unique.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x7a5c));
    let dev = unique.split_off(unique.len().div_ceil(2));
    let keep = |q: &Question| !in_calibration(cal, q.text());
    Ok((kept_prefix(dev, Some(sizes.dev_gsm8k), keep), kept_prefix(unique, sizes.test_gsm8k, keep)))
}

/// The first `n` (or all) of `items` that `keep` accepts, in their order.
fn kept_prefix<T>(items: Vec<T>, n: Option<usize>, keep: impl Fn(&T) -> bool) -> Vec<T> {
    items.into_iter().filter(|x| keep(x)).take(n.unwrap_or(usize::MAX)).collect()
}

/// The general tasks' data: MMLU dev and test, ARC-Easy (its test file), golds checked.
struct General {
    mmlu_dev: Vec<MmluRecord>,
    mmlu_test: Vec<MmluRecord>,
    arc: Vec<QueryRecord>,
}

impl General {
    fn read(data_dir: &Path) -> Result<General, DatasetError> {
        let mmlu_dev: Vec<MmluRecord> = datasets::read_jsonl(data_dir, "mmlu/dev.jsonl")?;
        let mmlu_test: Vec<MmluRecord> = datasets::read_jsonl(data_dir, "mmlu/test.jsonl")?;
        let arc: Vec<QueryRecord> = datasets::read_jsonl(data_dir, "arc/arc_easy_test.jsonl")?;
        for (i, r) in mmlu_dev.iter().enumerate() {
            datasets::check_gold("mmlu/dev.jsonl", i, r.answer_index, r.choices.len().min(4))?;
        }
        for (i, r) in mmlu_test.iter().enumerate() {
            datasets::check_gold("mmlu/test.jsonl", i, r.answer_index, r.choices.len().min(4))?;
        }
        for (i, r) in arc.iter().enumerate() {
            datasets::check_gold("arc/arc_easy_test.jsonl", i, r.gold, r.choices.len())?;
        }
        Ok(General { mmlu_dev, mmlu_test, arc })
    }

    /// The dev and test sides of the general tasks (no objective questions yet).
    fn sides(&self, cal: &[String], sizes: SplitSizes, seed: u64) -> (Side, Side) {
        let arc = &self.arc;
        // ARC-Easy has no dev file here: a seeded half of the test file serves as dev.
        let mut arc_order: Vec<usize> = (0..arc.len()).collect();
        arc_order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0xa2c));
        let (arc_dev_idx, arc_test_idx) = arc_order.split_at(arc.len() / 2);
        let pick_arc = |idx: &[usize], n: usize, exclude: &HashSet<[u8; 32]>| -> Vec<(McItem, String)> {
            let mut idx: Vec<usize> =
                idx.iter().copied().filter(|&i| !in_calibration(cal, &arc[i].query) && !exclude.contains(&content_hash(&arc[i].query))).collect();
            idx.truncate(n);
            idx.into_iter().map(|i| arc_item(i, &arc[i])).collect()
        };
        let mmlu_d = shuffled(self.mmlu_dev.iter().enumerate().collect(), seed ^ 0x33d, Some(sizes.dev_general), |(_, r)| !in_calibration(cal, &r.question));

        let side = |mmlu: Vec<(usize, &MmluRecord)>, arc_idx: &[usize], n_arc: usize, exclude: &HashSet<[u8; 32]>| {
            let mut mmlu = mmlu.into_iter().map(|(i, r)| (true, mmlu_item(i, r)));
            let mut arc = pick_arc(arc_idx, n_arc, exclude).into_iter().map(|x| (false, x));
            let mut general = Vec::new();
            loop {
                let (a, b) = (mmlu.next(), arc.next());
                if a.is_none() && b.is_none() {
                    break;
                }
                general.extend(a.into_iter().chain(b));
            }
            let (general_is_mmlu, pairs): (Vec<bool>, Vec<(McItem, String)>) = general.into_iter().unzip();
            let (general, general_questions) = pairs.into_iter().unzip();
            Side { gsm8k: Vec::new(), task: Vec::new(), general, general_questions, general_is_mmlu }
        };
        let dev = side(mmlu_d, arc_dev_idx, sizes.dev_general, &HashSet::new());
        // The data files repeat a few questions (ARC-Easy holds the same question under two
        // ids): a test item equal to a dev item is dropped from test, not from dev, so the dev
        // set (and every journaled dev score) does not depend on the test size, and a larger
        // test N still extends a smaller one.
        let dev_hashes: HashSet<[u8; 32]> = dev.general_questions.iter().map(|q| content_hash(q)).collect();
        let mmlu_t = shuffled(self.mmlu_test.iter().enumerate().collect(), seed ^ 0x33e, Some(sizes.test_general), |(_, r)| {
            !in_calibration(cal, &r.question) && !dev_hashes.contains(&content_hash(&r.question))
        });
        let test = side(mmlu_t, arc_test_idx, sizes.test_general, &dev_hashes);
        (dev, test)
    }
}

impl Splits {
    /// Reads the data and builds the splits of the GSM8K objective. `seed` fixes every shuffle;
    /// `calibration` is what the STATS were measured on.
    pub fn build(data_dir: &Path, calibration: Vec<String>, sizes: SplitSizes, seed: u64) -> Result<Splits, DatasetError> {
        Splits::build_for(data_dir, &Objective::Gsm8k, calibration, sizes, seed)
    }

    /// [`Splits::build`] for any objective: its questions in `gsm8k` (GSM8K) or `task` (the
    /// others), sized by `sizes.dev_gsm8k` and `sizes.test_gsm8k`.
    pub fn build_for(data_dir: &Path, objective: &Objective, calibration: Vec<String>, sizes: SplitSizes, seed: u64) -> Result<Splits, DatasetError> {
        let cal = &calibration;
        let (mut gsm8k, mut task) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
        match objective {
            Objective::Gsm8k => gsm8k = gsm8k_items(data_dir, cal, sizes, seed)?,
            Objective::Math => task = math_items(data_dir, cal, sizes, seed)?,
            Objective::TaskFile(file) => task = file_items(file, cal, sizes, seed)?,
        }
        let (mut dev, mut test) = General::read(data_dir)?.sides(cal, sizes, seed);
        (dev.gsm8k, test.gsm8k) = gsm8k;
        (dev.task, test.task) = task;
        Ok(Splits { calibration, dev, test })
    }

    /// Asserts that no item is in two splits: no dev or test question inside a calibration
    /// text, and no question hash shared by dev and test.
    pub fn check(&self) -> Result<(), LeakError> {
        let questions = |s: &Side| -> Vec<String> {
            let task = s.task.iter().map(|q| q.text().to_string());
            s.gsm8k.iter().map(|(_, r)| r.question.clone()).chain(task).chain(s.general_questions.iter().cloned()).collect()
        };
        let (dev, test) = (questions(&self.dev), questions(&self.test));
        for (name, qs) in [("dev", &dev), ("test", &test)] {
            if let Some(q) = qs.iter().find(|q| in_calibration(&self.calibration, q)) {
                return Err(LeakError(format!("a {name} question is inside a calibration text: {:?}", q.chars().take(80).collect::<String>())));
            }
        }
        let test_hashes: HashSet<[u8; 32]> = test.iter().map(|q| content_hash(q)).collect();
        if let Some(q) = dev.iter().find(|q| test_hashes.contains(&content_hash(q))) {
            return Err(LeakError(format!("a dev question is also a test question: {:?}", q.chars().take(80).collect::<String>())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(q: &str) -> (usize, Gsm8kRecord) {
        (0, Gsm8kRecord { question: q.into(), answer: "#### 1".into() })
    }

    #[test]
    fn hash_ignores_whitespace_layout() {
        assert_eq!(content_hash("a  b\nc "), content_hash("a b c"));
        assert_ne!(content_hash("a b"), content_hash("a c"));
    }

    #[test]
    fn check_finds_each_kind_of_leak() {
        let mut s = Splits { calibration: vec!["How many apples?\n#### 3".into()], dev: Side::default(), test: Side::default() };
        s.dev.gsm8k.push(rec("How many pears?"));
        s.test.gsm8k.push(rec("How many plums?"));
        s.check().unwrap();
        s.test.gsm8k.push(rec("How many  pears?"));
        assert!(s.check().unwrap_err().to_string().contains("also a test question"));
        s.test.gsm8k.pop();
        s.dev.gsm8k.push(rec("How many apples?"));
        assert!(s.check().unwrap_err().to_string().contains("calibration"));
    }
}
