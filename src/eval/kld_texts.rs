//! The held-out texts of the KL-divergence metric (`eval::kld`), tokenized and cut to a token
//! budget:
//! - `math`: GSM8K train records (`{question}\n{answer}`, as calibration forms them) that the
//!   calibration draw did **not** use — the draw is recomputed from its samples, seed and
//!   replacement (`calibrate/sample.rs`, ChaCha8), so STATS calibrated with the same numbers
//!   never saw these texts — in file order;
//! - `general`: WikiText-2 test articles (lm-eval's detokenizer applied), in file order.
//!
//! Documents are taken whole until the budget; the last one is cut to fit.
//!
//! - `text` (`kld --text FILE`): any text file, read as `llama-perplexity -f FILE` reads it — the
//!   whole file tokenized at once (with the start token where the vocabulary adds one) and cut
//!   into contexts of `n_ctx` tokens, each scored on its second half (`kld::chunk_divergences`),
//!   so the numbers can be set beside `llama-perplexity --kl-divergence` on the same file.

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
    /// Token sequences: documents without the start token (`Scoring::Windows`), or whole
    /// contexts (`Scoring::SecondHalf`).
    pub docs: Vec<Vec<Token>>,
    /// How the sequences are scored.
    pub scoring: Scoring,
}

/// How a text set's sequences are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    /// Documents in perplexity windows, every token scored once (`kld::divergences`).
    Windows,
    /// llama-perplexity's contexts, each scored on its second half (`kld::chunk_divergences`).
    SecondHalf,
}

impl KldTexts {
    /// Tokens to be scored.
    pub fn tokens(&self) -> usize {
        match self.scoring {
            Scoring::Windows => self.docs.iter().map(Vec::len).sum(),
            Scoring::SecondHalf => self.docs.iter().map(|c| c.len() - 1 - c.len() / 2).sum(),
        }
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
    /// A `--text` file could not be used.
    #[error("{0}")]
    File(String),
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
    Ok(KldTexts { name: "math", source, docs, scoring: Scoring::Windows })
}

/// WikiText-2 test articles, `budget` tokens.
pub fn general(model: &Model, data_dir: &Path, budget: usize) -> Result<KldTexts, TextsError> {
    let raw = super::datasets::read_text(data_dir, "wikitext2/wiki.test.raw.txt")?;
    let articles: Vec<String> = wikitext_articles(&raw).iter().map(|a| wikitext_detokenize(a)).collect();
    let docs = take_budget(model, articles.iter().map(String::as_str), budget)?;
    let source = format!("WikiText-2 test, first {} articles (detokenized)", docs.len());
    Ok(KldTexts { name: "general", source, docs, scoring: Scoring::Windows })
}

/// The file at `path` as llama-perplexity reads it: tokenized whole (the start token first
/// where the vocabulary adds one), cut into contexts of `n_ctx` tokens (a last partial one is
/// dropped), the first token of each replaced by the start token where the vocabulary adds
/// one; as many contexts as `budget` scored tokens need (`n_ctx − 1 − n_ctx / 2` each).
pub fn text_file(model: &Model, path: &Path, n_ctx: usize, budget: usize) -> Result<KldTexts, TextsError> {
    let text = crate::safety::inputs::read_text(path).map_err(|e| TextsError::File(format!("{}: {e}", path.display())))?;
    let tokens = model.tokenize(&text, true)?;
    let n_ctx = n_ctx.max(4);
    let per_chunk = n_ctx - 1 - n_ctx / 2;
    let available = tokens.len() / n_ctx;
    if available == 0 {
        return Err(TextsError::File(format!("{}: {} tokens, fewer than one context of {n_ctx} (lower --window)", path.display(), tokens.len())));
    }
    let take = budget.div_ceil(per_chunk).clamp(1, available);
    let docs: Vec<Vec<Token>> = tokens
        .chunks_exact(n_ctx)
        .take(take)
        .map(|c| {
            let mut c = c.to_vec();
            if model.adds_bos() {
                c[0] = model.bos();
            }
            c
        })
        .collect();
    let source = format!("{}: {} tokens, the first {take} of {available} contexts of {n_ctx}, second halves scored (llama-perplexity --kl-divergence)", path.display(), tokens.len());
    Ok(KldTexts { name: "text", source, docs, scoring: Scoring::SecondHalf })
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
