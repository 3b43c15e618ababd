//! Perplexity with strided windows: `wikitext` (WikiText-2 test, one document per article,
//! lm-eval's `wikitext_detokenizer` applied, word and byte counts from the original text as the
//! harness counts them) and `gsm8k_ppl` (the gold GSM8K solutions).
//!
//! A document's tokens (after the start token) are scored once each. The first window holds the
//! start token and up to `window − 1` tokens; each later window scores the next `stride` tokens
//! with the preceding `window − stride` tokens as context, so every token after the first window
//! sees at least `window − stride` tokens of context.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::datasets::Gsm8kRecord;
use super::engine::{EngineError, ScoreGroup, Session, Token};
use super::task::{ItemResult, MetricSpec, TaskOutcome};

/// Window geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// Tokens per window, context included.
    pub window: usize,
    /// New tokens scored per window after the first.
    pub stride: usize,
}

impl Windows {
    /// The windows unless asked otherwise (`eval --ppl-window`, `--ppl-stride`).
    pub const DEFAULT: Windows = Windows { window: 1024, stride: 512 };
}

impl Default for Windows {
    fn default() -> Self {
        Windows::DEFAULT
    }
}

/// The scoring groups of one document: (context, scored tokens) per window.
pub fn window_groups(bos: Token, tokens: &[Token], w: Windows) -> Vec<ScoreGroup> {
    let window = w.window.max(2);
    let stride = w.stride.clamp(1, window - 1);
    let mut groups = Vec::new();
    let mut start = 0;
    while start < tokens.len() {
        let (context, end) = if start == 0 {
            (vec![bos], (window - 1).min(tokens.len()))
        } else {
            let end = (start + stride).min(tokens.len());
            let ctx_start = end.saturating_sub(window);
            let ctx_start = ctx_start.min(start);
            let context = if ctx_start == 0 && end < window {
                // Still inside the first window's reach: keep the start token.
                std::iter::once(bos).chain(tokens[..start].iter().copied()).collect()
            } else {
                tokens[ctx_start..start].to_vec()
            };
            (context, end)
        };
        groups.push(ScoreGroup { use_prefix: false, context, continuations: vec![tokens[start..end].to_vec()] });
        start = end;
    }
    groups
}

/// A document to score.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Position in the data (article or record number).
    pub index: usize,
    /// The text given to the model.
    pub text: String,
    /// Words counted (`len(re.split(r"\s+", original))`).
    pub words: usize,
    /// UTF-8 bytes of the original text.
    pub bytes: usize,
}

/// `len(re.split(r"\s+", text))` in Python: whitespace runs plus one.
pub fn python_word_count(text: &str) -> usize {
    static RUNS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").expect("valid regex"));
    RUNS.find_iter(text).count() + 1
}

/// Splits the WikiText-2 raw test file into articles: a line ` = Title = ` (one `=` each side)
/// starts an article; lines are joined with newlines.
pub fn wikitext_articles(raw: &str) -> Vec<String> {
    let mut articles: Vec<String> = Vec::new();
    for line in raw.lines() {
        let t = line.trim();
        let heading = t.starts_with("= ") && t.ends_with(" =") && !t.starts_with("= =");
        if heading || articles.is_empty() {
            articles.push(String::new());
        }
        let a = articles.last_mut().expect("an article was started");
        a.push_str(line);
        a.push('\n');
    }
    articles
}

/// lm-evaluation-harness's `wikitext_detokenizer`.
pub fn wikitext_detokenize(text: &str) -> String {
    static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
        [
            (r"/' [0-9]/", "/'[0-9]/"),
            (r"\(\s*([^\)]*?)\s*\)", "(${1})"),
            (r"\[\s*([^\]]*?)\s*\]", "[${1}]"),
            (r"\{\s*([^}]*?)\s*\}", "{${1}}"),
            ("\"\\s*([^\"]*?)\\s*\"", "\"${1}\""),
            (r"'\s*([^']*?)\s*'", "'${1}'"),
        ]
        .into_iter()
        .map(|(p, r)| (Regex::new(p).expect("valid regex"), r))
        .collect()
    });
    let mut s = text.replace("s '", "s'");
    s = RULES[0].0.replace_all(&s, RULES[0].1).into_owned();
    for (from, to) in [(" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."), (" : ", ": "), (" ; ", "; "), (" . ", ". "), (" ! ", "! "), (" ? ", "? "), (" , ", ", ")] {
        s = s.replace(from, to);
    }
    for (re, to) in RULES.iter().skip(1) {
        s = re.replace_all(&s, *to).into_owned();
    }
    for (from, to) in [("= = = =", "===="), ("= = =", "==="), ("= =", "=="), (" \u{b0} ", "\u{b0}"), (" \n", "\n"), ("\n ", "\n"), (" N ", " 1 "), (" 's", "'s")] {
        s = s.replace(from, to);
    }
    s
}

/// Scores documents and reports perplexities: word and byte perplexity, bits per byte and token
/// perplexity when `words`, otherwise token perplexity and bits per byte.
pub fn run_documents(
    session: &mut Session<'_>,
    docs: &[Document],
    windows: Windows,
    words: bool,
    n_available: usize,
    setting: String,
    mut progress: impl FnMut(usize),
) -> Result<TaskOutcome, EngineError> {
    let model = session.model();
    let bos = model.bos();
    let mut groups = Vec::new();
    let mut owner = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        let tokens = model.tokenize(&doc.text, false)?;
        for g in window_groups(bos, &tokens, windows) {
            groups.push(g);
            owner.push(d);
        }
    }
    let mut last_owner_done = 0;
    let scores = session.score(&[], &groups, |done| {
        let d = owner[done - 1];
        if d + 1 > last_owner_done {
            last_owner_done = d + 1;
            progress(last_owner_done);
        }
    })?;
    let mut nll = vec![0.0f64; docs.len()];
    let mut tokens = vec![0usize; docs.len()];
    for (s, &d) in scores.iter().zip(&owner) {
        nll[d] -= s[0].logprob();
        tokens[d] += s[0].token_logprobs.len();
    }
    let ln2 = std::f64::consts::LN_2;
    let mut metrics = Vec::new();
    if words {
        metrics.push(MetricSpec::perplexity("word_perplexity"));
        metrics.push(MetricSpec::perplexity("byte_perplexity"));
    }
    metrics.push(MetricSpec::lower_ratio("bits_per_byte"));
    metrics.push(MetricSpec::perplexity("token_perplexity"));
    let items = docs
        .iter()
        .enumerate()
        .map(|(d, doc)| {
            let (l, b, t) = (nll[d], doc.bytes as f64, tokens[d] as f64);
            let mut scores = Vec::new();
            if words {
                scores.push((l, doc.words as f64));
                scores.push((l, b));
            }
            scores.push((l / ln2, b));
            scores.push((l, t));
            let mut extracted = BTreeMap::new();
            extracted.insert("tokens".to_string(), tokens[d].to_string());
            extracted.insert("nll".to_string(), format!("{l:.3}"));
            ItemResult {
                index: doc.index,
                prompt: doc.text.chars().take(200).collect(),
                output: format!("{:.4}", (l / t).exp()),
                target: String::new(),
                extracted,
                scores,
            }
        })
        .collect();
    Ok(TaskOutcome { metrics, items, n_available, setting })
}

/// WikiText documents at `selected` article indices.
pub fn wikitext_documents(raw: &str, select: impl FnOnce(usize) -> Vec<usize>) -> (Vec<Document>, usize) {
    let articles = wikitext_articles(raw);
    let docs = select(articles.len())
        .into_iter()
        .map(|i| Document {
            index: i,
            text: wikitext_detokenize(&articles[i]),
            words: python_word_count(&articles[i]),
            bytes: articles[i].len(),
        })
        .collect();
    (docs, articles.len())
}

/// The gold GSM8K solutions as documents.
pub fn gsm8k_documents(records: &[(usize, Gsm8kRecord)]) -> Vec<Document> {
    records
        .iter()
        .map(|(i, r)| Document { index: *i, text: r.answer.clone(), words: python_word_count(&r.answer), bytes: r.answer.len() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_score_every_token_once_with_bounded_context() {
        let tokens: Vec<Token> = (10..30).collect();
        let w = Windows { window: 8, stride: 3 };
        let groups = window_groups(1, &tokens, w);
        let scored: Vec<Token> = groups.iter().flat_map(|g| g.continuations[0].clone()).collect();
        assert_eq!(scored, tokens);
        assert_eq!(groups[0].context, vec![1]);
        assert_eq!(groups[0].continuations[0].len(), 7);
        for g in &groups[1..] {
            assert!(g.context.len() + g.continuations[0].len() <= 8);
            assert!(g.context.len() >= 8 - 3, "{g:?}");
            // Context ends right before the scored tokens.
            assert_eq!(g.context.last().unwrap() + 1, g.continuations[0][0]);
        }
    }

    #[test]
    fn short_documents_are_one_window() {
        let groups = window_groups(1, &[5, 6, 7], Windows::default());
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].context, vec![1]);
    }

    #[test]
    fn word_count_and_detokenizer_follow_the_harness() {
        assert_eq!(python_word_count(" a b\n c "), 5);
        assert_eq!(wikitext_detokenize("1 @,@ 000 km ( big ) , it 's"), "1,000 km (big), it's");
        let arts = wikitext_articles(" = A = \n text \n = = Sub = = \n more \n = B = \n x \n");
        assert_eq!(arts.len(), 2);
        assert!(arts[0].contains("Sub") && arts[1].starts_with(" = B = "));
    }
}
