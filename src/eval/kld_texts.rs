//! The held-out texts of the KL-divergence metric (`eval::kld`), tokenized and cut to a token
//! budget:
//! - `math`: GSM8K train records (`{question}\n{answer}`, as calibration forms them) that the
//!   calibration draw did **not** use — the draw is recomputed from its samples, seed and
//!   replacement (`calibrate/sample.rs`, ChaCha8), so STATS calibrated with the same numbers
//!   never saw these texts — in file order;
//! - `general`: WikiText-2 test articles (lm-eval's detokenizer applied), in file order.
//!
//! Documents are taken whole until the budget; the last one is cut to fit.

use std::path::Path;

use super::engine::{Model, Token};
use super::perplexity::{wikitext_articles, wikitext_detokenize};
use crate::calibrate::sample;
use crate::data::calibration;

/// The calibration draw the math texts must avoid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CalibrationDraw {
    /// Samples drawn (`calibrate --samples`).
    pub samples: usize,
    /// Seed (`calibrate --seed`).
    pub seed: u64,
    /// Drawn with replacement (the default of `calibrate`).
    pub replacement: bool,
}

impl CalibrationDraw {
    /// `calibrate`'s defaults: 500 samples, seed 42, with replacement.
    pub const DEFAULT: CalibrationDraw = CalibrationDraw { samples: 500, seed: 42, replacement: true };
}

/// One text set, tokenized.
#[derive(Debug, Clone, PartialEq)]
pub struct KldTexts {
    /// `math` or `general`.
    pub name: &'static str,
    /// Where the texts come from, for the report.
    pub source: String,
    /// Token sequences (without the start token).
    pub docs: Vec<Vec<Token>>,
}

impl KldTexts {
    /// Tokens to be scored (every token of every document).
    pub fn tokens(&self) -> usize {
        self.docs.iter().map(Vec::len).sum()
    }
}

/// Why the texts could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum TextsError {
    /// Reading a data set failed.
    #[error(transparent)]
    Data(#[from] calibration::DataError),
    /// Reading WikiText failed.
    #[error(transparent)]
    Dataset(#[from] super::datasets::DatasetError),
    /// The calibration draw could not be recomputed.
    #[error("the calibration draw: {0}")]
    Draw(#[from] sample::SampleError),
    /// Tokenizing failed.
    #[error(transparent)]
    Llama(#[from] crate::ffi::llama::LlamaError),
}

/// Tokenizes `texts` in order until `budget` tokens, cutting the last document.
fn take_budget<'a>(model: &Model, texts: impl Iterator<Item = &'a str>, budget: usize) -> Result<Vec<Vec<Token>>, TextsError> {
    let mut docs = Vec::new();
    let mut left = budget;
    for text in texts {
        if left == 0 {
            break;
        }
        let mut tokens = model.tokenize(text, false)?;
        tokens.truncate(left);
        if tokens.len() < 2 {
            continue;
        }
        left -= tokens.len();
        docs.push(tokens);
    }
    Ok(docs)
}

/// Indices of the GSM8K train records the draw leaves out, in file order.
pub fn held_out(available: usize, draw: CalibrationDraw) -> Result<Vec<usize>, sample::SampleError> {
    let mut used = vec![false; available];
    for i in sample::draw(available, draw.samples, draw.seed, draw.replacement)? {
        used[i] = true;
    }
    Ok((0..available).filter(|&i| !used[i]).collect())
}

/// Held-out GSM8K train texts, `budget` tokens, the first held-out records in file order.
pub fn math(model: &Model, data_dir: &Path, draw: CalibrationDraw, budget: usize) -> Result<KldTexts, TextsError> {
    math_from(model, data_dir, draw, budget, false)
}

/// Held-out GSM8K train texts, `budget` tokens, taken from the **last** held-out records
/// backwards: disjoint from [`math`]'s texts while the two budgets together stay below the
/// held-out total (about 1.2 M tokens), so a stage that tunes on these (the measured
/// sensitivity) is scored on others.
pub fn math_tail(model: &Model, data_dir: &Path, draw: CalibrationDraw, budget: usize) -> Result<KldTexts, TextsError> {
    math_from(model, data_dir, draw, budget, true)
}

fn math_from(model: &Model, data_dir: &Path, draw: CalibrationDraw, budget: usize, from_end: bool) -> Result<KldTexts, TextsError> {
    let set = calibration::load("gsm8k", Some(data_dir))?;
    let mut keep = held_out(set.texts.len(), draw)?;
    if from_end {
        keep.reverse();
    }
    let docs = take_budget(model, keep.iter().map(|&i| set.texts[i].as_str()), budget)?;
    let source = format!(
        "GSM8K train {{question}}\\n{{answer}}, records not in the calibration draw (samples {}, seed {}, {} replacement), {} {} of {} held out",
        draw.samples,
        draw.seed,
        if draw.replacement { "with" } else { "without" },
        if from_end { "last" } else { "first" },
        docs.len(),
        keep.len()
    );
    Ok(KldTexts { name: "math", source, docs })
}

/// WikiText-2 test articles, `budget` tokens.
pub fn general(model: &Model, data_dir: &Path, budget: usize) -> Result<KldTexts, TextsError> {
    let raw = super::datasets::read_text(data_dir, "wikitext2/wiki.test.raw.txt")?;
    let articles: Vec<String> = wikitext_articles(&raw).iter().map(|a| wikitext_detokenize(a)).collect();
    let docs = take_budget(model, articles.iter().map(String::as_str), budget)?;
    let source = format!("WikiText-2 test, first {} articles (detokenized)", docs.len());
    Ok(KldTexts { name: "general", source, docs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_records_are_exactly_those_the_draw_missed() {
        let draw = CalibrationDraw { samples: 50, seed: 7, replacement: true };
        let drawn = sample::draw(100, 50, 7, true).unwrap();
        let kept = held_out(100, draw).unwrap();
        for i in 0..100 {
            assert_eq!(kept.contains(&i), !drawn.contains(&i), "record {i}");
        }
        assert!(kept.windows(2).all(|w| w[0] < w[1]));
    }
}
