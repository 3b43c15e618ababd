//! KL divergence of a model against its master, as `llama-perplexity --kl-divergence` reports
//! it: teacher-forced on the same token sequences, per token KL(P_master ‖ P_model) over the
//! whole vocabulary, its mean (± a 95 % interval from the per-token standard error), median,
//! 90th and 99th percentile and maximum, how often both put the same token first (top-1
//! agreement), and each model's NLL of the real next token.
//!
//! The two models are read in lockstep ([`Session::extend`]): each decodes a piece of a window,
//! the rows are compared in f64 and dropped, so only one piece of rows per model is held (a
//! Gemma row is 262 144 floats). Windows are the perplexity ones (`perplexity::window_groups`):
//! every token of a document after its first is scored exactly once. For a check against
//! llama-perplexity itself, `chunk_divergences` follows its protocol instead (whole contexts,
//! the second half of each scored).

use super::engine::{EngineError, Model, Session, Token};
use super::logits::row_stats;
use super::perplexity::{Windows, window_groups};
use super::stats::mean_stderr;

/// What each document is read after.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocStart {
    /// The model's start token before every document, whether or not its vocabulary adds one
    /// (lm-eval's rolling log-likelihood, and `eval`'s perplexity tasks).
    #[default]
    Always,
    /// The start token only where the vocabulary adds one, as llama.cpp and `eval`'s generation
    /// prompts run the model; elsewhere (Qwen2.5) the document's own first token opens the
    /// context and is not scored.
    Vocab,
}

impl DocStart {
    /// The token each document is read after; `None`: its own first token.
    pub fn token(self, model: &Model) -> Option<Token> {
        match self {
            DocStart::Vocab if !model.adds_bos() => None,
            _ => Some(model.bos()),
        }
    }
}

/// One scored token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenDivergence {
    /// KL(P_master ‖ P_model) in nats over the whole vocabulary.
    pub kl: f64,
    /// Both rows have the same largest logit.
    pub same_top1: bool,
    /// −log P_master(next token).
    pub master_nll: f64,
    /// −log P_model(next token).
    pub model_nll: f64,
}

/// The divergence of the `model` row from the `master` row (same vocabulary), `next` being the
/// token that follows. In f64: Σ_i p_i (log p_i − log q_i) with p = softmax(master).
pub fn row_divergence(master: &[f32], model: &[f32], next: Token) -> TokenDivergence {
    let (p, q) = (row_stats(master), row_stats(model));
    let (p_shift, q_shift) = (p.max + p.log_sum_exp, q.max + q.log_sum_exp);
    let kl: f64 = master
        .iter()
        .zip(model)
        .map(|(&a, &b)| {
            let log_p = a as f64 - p_shift;
            let log_q = b as f64 - q_shift;
            log_p.exp() * (log_p - log_q)
        })
        .sum();
    TokenDivergence {
        // Rounding can leave a tiny negative sum for identical rows; KL is never below 0.
        kl: kl.max(0.0),
        same_top1: p.argmax == q.argmax,
        master_nll: -p.logprob(master, next),
        model_nll: -q.logprob(model, next),
    }
}

/// The numbers of one text set.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KldSummary {
    /// Tokens scored.
    pub tokens: usize,
    /// Mean KL in nats.
    pub mean: f64,
    /// Standard error of the mean (per-token, as llama-perplexity reports it).
    pub stderr: f64,
    /// mean ± 1.96 · stderr.
    pub ci95: (f64, f64),
    /// Median KL.
    pub median: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest KL.
    pub max: f64,
    /// Share of tokens whose top-1 token is the master's.
    pub top1_agreement: f64,
    /// Mean NLL of the next token under the master.
    pub master_nll: f64,
    /// Mean NLL of the next token under the model (minus master_nll: ln of the PPL ratio).
    pub model_nll: f64,
}

/// The `q` quantile of sorted values (nearest rank, `q` in 0..=1).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
}

/// Summarises scored tokens (NaN fields when there are none).
pub fn summarize(rows: &[TokenDivergence]) -> KldSummary {
    let n = rows.len();
    let nf = n.max(1) as f64;
    let mut sorted: Vec<f64> = rows.iter().map(|r| r.kl).collect();
    let (mean, stderr) = mean_stderr(&sorted);
    sorted.sort_by(f64::total_cmp);
    let nan_if_empty = |x: f64| if n == 0 { f64::NAN } else { x };
    KldSummary {
        tokens: n,
        mean: nan_if_empty(mean),
        stderr: nan_if_empty(stderr),
        ci95: (nan_if_empty(mean - 1.96 * stderr), nan_if_empty(mean + 1.96 * stderr)),
        median: quantile(&sorted, 0.5),
        p90: quantile(&sorted, 0.9),
        p99: quantile(&sorted, 0.99),
        max: sorted.last().copied().unwrap_or(f64::NAN),
        top1_agreement: nan_if_empty(rows.iter().filter(|r| r.same_top1).count() as f64 / nf),
        master_nll: nan_if_empty(rows.iter().map(|r| r.master_nll).sum::<f64>() / nf),
        model_nll: nan_if_empty(rows.iter().map(|r| r.model_nll).sum::<f64>() / nf),
    }
}

/// Why a divergence could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum KldError {
    /// The two models do not share a vocabulary.
    #[error("the master has {master} tokens in its vocabulary and the model {model}: KL divergence needs the same vocabulary")]
    Vocabulary {
        /// The master's vocabulary size.
        master: usize,
        /// The model's.
        model: usize,
    },
    /// The model scored another number of rows than the master's kept rows.
    #[error("the model scored another number of rows than the {kept} kept from the master: not the same texts or tokenizer")]
    RowCount {
        /// Rows kept from the master.
        kept: usize,
    },
    /// Decoding failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Every token of every document (tokenized by the master, without the start token; read after
/// what `start` says) scored under both models, window by window; `progress` gets the documents
/// done.
pub fn divergences(master: &mut Session<'_>, model: &mut Session<'_>, docs: &[Vec<Token>], windows: Windows, start: DocStart, progress: impl FnMut(usize)) -> Result<Vec<TokenDivergence>, KldError> {
    let mut out = divergences_of_each(master, &mut [model], docs, windows, start, progress)?;
    Ok(out.pop().expect("one model, one list"))
}

/// [`divergences`] of several models from one master in one lockstep pass (the master decoded
/// once): one list per model, token for token the same positions, so they pair.
pub fn divergences_of_each(master: &mut Session<'_>, models: &mut [&mut Session<'_>], docs: &[Vec<Token>], windows: Windows, start: DocStart, mut progress: impl FnMut(usize)) -> Result<Vec<Vec<TokenDivergence>>, KldError> {
    for m in models.iter() {
        check_vocabulary(master, m)?;
    }
    let open = start.token(master.model());
    let mut out = vec![Vec::new(); models.len()];
    for (d, doc) in docs.iter().enumerate() {
        for (seq, first_scored) in scored_windows(open, doc, windows) {
            score_sequence(master, models, &seq, first_scored, &mut out)?;
        }
        progress(d + 1);
    }
    Ok(out)
}

/// The paired difference of two lists of the same tokens (`b − a`, per token): its mean and
/// 95 % interval (± 1.96 standard errors of the per-token differences).
pub fn paired_difference(a: &[TokenDivergence], b: &[TokenDivergence]) -> PairedDifference {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y.kl - x.kl).collect();
    let (mean, se) = mean_stderr(&d);
    PairedDifference { tokens: d.len(), mean, ci95: (mean - 1.96 * se, mean + 1.96 * se) }
}

/// Mean KL of one model minus another's on the same tokens.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairedDifference {
    /// Tokens paired.
    pub tokens: usize,
    /// Mean of the per-token differences.
    pub mean: f64,
    /// mean ± 1.96 standard errors of the per-token differences.
    pub ci95: (f64, f64),
}

/// `llama-perplexity --kl-divergence`'s protocol: each chunk (a whole context, its first token
/// already replaced by the start token where the vocabulary adds one) is decoded from position
/// 0, and only its second half is scored — rows `n/2 .. n − 1` predicting tokens `n/2 + 1 .. n`,
/// so every scored token has at least half a context before it. `progress` gets the chunks done.
pub fn chunk_divergences(master: &mut Session<'_>, model: &mut Session<'_>, chunks: &[Vec<Token>], mut progress: impl FnMut(usize)) -> Result<Vec<TokenDivergence>, KldError> {
    check_vocabulary(master, model)?;
    let mut out = vec![Vec::new()];
    for (c, chunk) in chunks.iter().enumerate() {
        score_sequence(master, &mut [&mut *model], chunk, chunk.len() / 2, &mut out)?;
        progress(c + 1);
    }
    Ok(out.pop().expect("one model, one list"))
}

/// The master's rows for the tokens [`divergences`] scores, in the order it scores them: kept
/// once, they let many models be measured against one master with one pass each
/// (`kld_run::KldProbe`). Rows do not depend on how a sequence is split into pieces, so
/// [`divergences_from_rows`] gives exactly the numbers of the lockstep [`divergences`].
pub fn master_rows(master: &mut Session<'_>, docs: &[Vec<Token>], windows: Windows, start: DocStart) -> Result<Vec<Vec<f32>>, KldError> {
    let open = start.token(master.model());
    let mut rows = Vec::new();
    for_each_scored_row(master, open, docs, windows, |row, _| {
        rows.push(row.to_vec());
        Ok(())
    })?;
    Ok(rows)
}

/// [`divergences`] against the master's kept [`master_rows`] (made with the token each document
/// is read after, `open`, as [`DocStart::token`] gave it for the master): only `model` is
/// decoded.
pub fn divergences_from_rows(rows: &[Vec<f32>], open: Option<Token>, model: &mut Session<'_>, docs: &[Vec<Token>], windows: Windows) -> Result<Vec<TokenDivergence>, KldError> {
    let nq = model.model().n_vocab();
    if let Some(r) = rows.first().filter(|r| r.len() != nq) {
        return Err(KldError::Vocabulary { master: r.len(), model: nq });
    }
    let mut out = Vec::with_capacity(rows.len());
    for_each_scored_row(model, open, docs, windows, |row, next| {
        let p = rows.get(out.len()).ok_or(KldError::RowCount { kept: rows.len() })?;
        out.push(row_divergence(p, row, next));
        Ok(())
    })?;
    if out.len() != rows.len() {
        return Err(KldError::RowCount { kept: rows.len() });
    }
    Ok(out)
}

/// The windows of one document read after `open` (`None`: after its own first token, which is
/// not scored) as decoded sequences (context, then the scored tokens) and the first scored row
/// of each: row i predicts `seq[i + 1]`, and the rows from the last context token on are scored.
fn scored_windows(open: Option<Token>, doc: &[Token], windows: Windows) -> impl Iterator<Item = (Vec<Token>, usize)> {
    let (first, rest) = match (open, doc.split_first()) {
        (Some(t), _) => (t, doc),
        (None, Some((t, rest))) => (*t, rest),
        (None, None) => (0, doc),
    };
    window_groups(first, rest, windows).into_iter().map(|g| (g.context.iter().chain(&g.continuations[0]).copied().collect(), g.context.len() - 1))
}

/// Calls `f(row, next)` for every scored row of `docs` under `session`, window by window, as
/// [`divergences`] walks them.
fn for_each_scored_row(session: &mut Session<'_>, open: Option<Token>, docs: &[Vec<Token>], windows: Windows, mut f: impl FnMut(&[f32], Token) -> Result<(), KldError>) -> Result<(), KldError> {
    let piece = session.piece_len();
    for doc in docs {
        for (seq, first_scored) in scored_windows(open, doc, windows) {
            session.restart();
            for start in (0..seq.len().saturating_sub(1)).step_by(piece) {
                let end = (start + piece).min(seq.len() - 1);
                for (i, row) in (start..end).zip(session.extend(&seq[start..end], start)?.iter()) {
                    if i >= first_scored {
                        f(row, seq[i + 1])?;
                    }
                }
            }
            session.restart();
        }
    }
    Ok(())
}

fn check_vocabulary(master: &Session<'_>, model: &Session<'_>) -> Result<(), KldError> {
    let (nm, nq) = (master.model().n_vocab(), model.model().n_vocab());
    if nm != nq {
        return Err(KldError::Vocabulary { master: nm, model: nq });
    }
    Ok(())
}

/// Decodes `seq` from position 0 in both models, one piece at a time, and appends the
/// divergence of every row `i` in `first_scored .. seq.len() − 1` (row i predicts `seq[i + 1]`).
fn score_sequence(master: &mut Session<'_>, models: &mut [&mut Session<'_>], seq: &[Token], first_scored: usize, out: &mut [Vec<TokenDivergence>]) -> Result<(), KldError> {
    let piece = models.iter().map(|m| m.piece_len()).fold(master.piece_len(), usize::min);
    master.restart();
    models.iter_mut().for_each(|m| m.restart());
    for start in (0..seq.len().saturating_sub(1)).step_by(piece) {
        let end = (start + piece).min(seq.len() - 1);
        let p_rows = master.extend(&seq[start..end], start)?;
        for (model, out) in models.iter_mut().zip(out.iter_mut()) {
            let q_rows = model.extend(&seq[start..end], start)?;
            for (i, (p, q)) in (start..end).zip(p_rows.iter().zip(&q_rows)) {
                if i >= first_scored {
                    out.push(row_divergence(p, q, seq[i + 1]));
                }
            }
        }
    }
    master.restart();
    models.iter_mut().for_each(|m| m.restart());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_without_a_start_token_opens_with_its_own_first_token_unscored() {
        let doc: Vec<Token> = (10..30).collect();
        let w = Windows { window: 8, stride: 3 };
        let scored = |open| scored_windows(open, &doc, w).map(|(seq, first)| seq[first + 1..].to_vec()).collect::<Vec<_>>().concat();
        assert_eq!(scored(Some(1)), doc, "after a start token every token is scored once");
        assert_eq!(scored(None), doc[1..].to_vec(), "without one, every token but the first");
        let first: Vec<(Vec<Token>, usize)> = scored_windows(None, &doc, w).take(2).collect();
        assert_eq!(first[0], ((10..18).collect(), 0), "the first window is the document's own start");
        assert_eq!(first[1], (doc[3..11].to_vec(), 4), "later windows slide over the document itself");
        assert_eq!(scored_windows(None, &[], w).count(), 0);
    }

    #[test]
    fn identical_rows_diverge_by_zero_and_shifted_ones_by_the_direct_sum() {
        let a = [1.0f32, 2.0, -1.0, 0.5];
        let d = row_divergence(&a, &a, 1);
        assert_eq!(d.kl, 0.0);
        assert!(d.same_top1 && d.master_nll == d.model_nll);
        let b = [0.0f32, 2.5, -1.0, 3.0];
        let softmax = |x: &[f32]| {
            let z: f64 = x.iter().map(|&v| (v as f64).exp()).sum();
            x.iter().map(|&v| (v as f64).exp() / z).collect::<Vec<f64>>()
        };
        let (p, q) = (softmax(&a), softmax(&b));
        let want: f64 = p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum();
        let d = row_divergence(&a, &b, 3);
        assert!((d.kl - want).abs() < 1e-12, "{} vs {want}", d.kl);
        assert!(!d.same_top1);
        assert!((d.model_nll + q[3].ln()).abs() < 1e-12);
    }

    #[test]
    fn summary_quantiles_and_interval() {
        let rows: Vec<TokenDivergence> =
            (0..100).map(|i| TokenDivergence { kl: i as f64, same_top1: i % 4 != 0, master_nll: 1.0, model_nll: 2.0 }).collect();
        let s = summarize(&rows);
        assert_eq!((s.tokens, s.mean, s.max, s.p99, s.p90), (100, 49.5, 99.0, 98.0, 89.0));
        assert_eq!(s.top1_agreement, 0.75);
        assert!(s.ci95.0 < 49.5 && s.ci95.1 > 49.5);
        assert!(summarize(&[]).mean.is_nan());
    }
}
