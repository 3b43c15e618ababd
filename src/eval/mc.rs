//! Multiple-choice tasks scored by log-likelihood, in lm-evaluation-harness's formats.
//!
//! Each choice is the continuation `" " + choice` (target delimiter " ") of the context.
//! `acc`: the choice with the largest log-likelihood is right. `acc_norm`: the largest
//! log-likelihood divided by the choice's length in characters (`len(choice)` in the
//! harness; bytes for ASCII). Ties go to the first choice (numpy `argmax`).
//!
//! Formats (harness task → here):
//! - `mmlu`: description `"The following are multiple choice questions (with answers) about
//!   {subject}.\n\n"`, then k dev exemplars (first_n) each `"{q}\nA. ..\nB. ..\nC. ..\nD. ..\nAnswer: X"`
//!   joined by `"\n\n"`, then the test question the same way ending in `"Answer:"`; choices
//!   `A`–`D`; metric acc.
//! - `race`: one item per article: `"Article: {article}\n\n"`, the earlier questions of the article
//!   with their answers (`"Question: q\nAnswer: a\n"`, or the cloze tail and answer), then the
//!   last question; choices are its options; metric acc.
//! - `hellaswag`: `preprocess(activity_label + ": " + ctx)`, choices `preprocess(ending)`;
//!   acc, acc_norm.
//! - `arc_easy`, `arc_challenge`: `"Question: {q}\nAnswer:"`; acc, acc_norm.
//! - `piqa`: `"Question: {goal}\nAnswer:"`; acc, acc_norm.
//! - `boolq`: `"{passage}\nQuestion: {question}?\nAnswer:"`, choices `no`/`yes`; acc.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use super::datasets::{self, DatasetError, HellaswagRecord, MmluRecord, QueryRecord, RaceRecord};
use super::engine::{EngineError, Session};
use super::requests::{Prefix, build_group};
use super::task::{ItemResult, MetricSpec, TaskOutcome};

/// One multiple-choice question.
#[derive(Debug, Clone, PartialEq)]
pub struct McItem {
    /// Position in the data file (or article number).
    pub index: usize,
    /// Shared text before the context (few-shot exemplars, description); may be empty.
    pub prefix: String,
    /// The question's own context.
    pub context: String,
    /// Answer texts (without the target delimiter).
    pub choices: Vec<String>,
    /// Index of the right choice.
    pub gold: usize,
}

/// Errors of multiple-choice tasks.
#[derive(Debug, thiserror::Error)]
pub enum McError {
    /// A data file problem.
    #[error(transparent)]
    Data(#[from] DatasetError),
    /// An engine problem.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Index of the largest value; the first one on ties (numpy `argmax`).
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// (acc prediction, acc_norm prediction) from the choices' log-likelihoods.
pub fn predictions(logprobs: &[f64], choices: &[String]) -> (usize, usize) {
    let normed: Vec<f64> = logprobs
        .iter()
        .zip(choices)
        .map(|(lp, c)| lp / (c.chars().count().max(1) as f64))
        .collect();
    (argmax(logprobs), argmax(&normed))
}

/// Scores `items` (grouped by their prefix so each prefix is decoded once) and reports `acc`
/// and, when `with_norm`, `acc_norm`.
pub fn run_items(
    session: &mut Session<'_>,
    items: &[McItem],
    with_norm: bool,
    mut progress: impl FnMut(usize),
) -> Result<(Vec<MetricSpec>, Vec<ItemResult>), EngineError> {
    let model = session.model();
    let mut by_prefix: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        by_prefix.entry(item.prefix.as_str()).or_default().push(i);
    }
    let mut results: Vec<Option<ItemResult>> = vec![None; items.len()];
    let mut done_before = 0;
    for (prefix_text, members) in by_prefix {
        let prefix = Prefix::new(model, prefix_text).map_err(EngineError::from)?;
        let groups: Vec<_> = members
            .iter()
            .map(|&i| {
                let conts: Vec<String> = items[i].choices.iter().map(|c| format!(" {c}")).collect();
                build_group(model, &prefix, &items[i].context, &conts)
            })
            .collect::<Result<_, _>>()
            .map_err(EngineError::from)?;
        let scores = session.score(&prefix.tokens, &groups, |d| progress(done_before + d))?;
        done_before += members.len();
        for (&i, choice_scores) in members.iter().zip(scores) {
            let item = &items[i];
            let lps: Vec<f64> = choice_scores.iter().map(|s| s.logprob()).collect();
            let (pred, pred_norm) = predictions(&lps, &item.choices);
            let mut extracted = BTreeMap::new();
            extracted.insert("acc".to_string(), pred.to_string());
            let mut scores = vec![((pred == item.gold) as u8 as f64, 1.0)];
            if with_norm {
                extracted.insert("acc_norm".to_string(), pred_norm.to_string());
                scores.push(((pred_norm == item.gold) as u8 as f64, 1.0));
            }
            extracted.insert(
                "logprobs".to_string(),
                lps.iter().map(|l| format!("{l:.4}")).collect::<Vec<_>>().join(" "),
            );
            results[i] = Some(ItemResult {
                index: item.index,
                prompt: format!("{}{}", item.prefix, item.context),
                output: item.choices[pred].clone(),
                target: item.choices[item.gold].clone(),
                extracted,
                scores,
            });
        }
    }
    let mut metrics = vec![MetricSpec::accuracy("acc")];
    if with_norm {
        metrics.push(MetricSpec::accuracy("acc_norm"));
    }
    Ok((metrics, results.into_iter().map(|r| r.expect("every item scored")).collect()))
}

/// Keeps the items at `selected` (sorted indices into `all`).
fn pick<T: Clone>(all: &[T], selected: &[usize]) -> Vec<(usize, T)> {
    selected.iter().map(|&i| (i, all[i].clone())).collect()
}

/// The MMLU question text of the harness's default template (without the answer).
pub fn mmlu_question(r: &MmluRecord) -> String {
    let mut s = r.question.trim().to_string();
    for (letter, choice) in ["A", "B", "C", "D"].iter().zip(&r.choices) {
        s.push_str(&format!("\n{letter}. {choice}"));
    }
    s.push_str("\nAnswer:");
    s
}

/// MMLU items: `fewshot` dev exemplars of the same subject (first_n) after the description.
pub fn mmlu_items(dir: &Path, fewshot: usize, select: impl FnOnce(usize) -> Vec<usize>) -> Result<(Vec<McItem>, usize), McError> {
    let test: Vec<MmluRecord> = datasets::read_jsonl(dir, "mmlu/test.jsonl")?;
    let dev: Vec<MmluRecord> = if fewshot > 0 { datasets::read_jsonl(dir, "mmlu/dev.jsonl")? } else { Vec::new() };
    let mut items = Vec::new();
    for (i, r) in pick(&test, &select(test.len())) {
        datasets::check_gold("mmlu/test.jsonl", i, r.answer_index, r.choices.len().min(4))?;
        let mut prefix = format!(
            "The following are multiple choice questions (with answers) about {}.\n\n",
            r.subject.replace('_', " ")
        );
        for shot in dev.iter().filter(|d| d.subject == r.subject).take(fewshot) {
            let letter = ["A", "B", "C", "D"].get(shot.answer_index).copied().unwrap_or("A");
            prefix.push_str(&format!("{} {letter}\n\n", mmlu_question(shot)));
        }
        items.push(McItem {
            index: i,
            prefix,
            context: mmlu_question(&r),
            choices: ["A", "B", "C", "D"].map(String::from).to_vec(),
            gold: r.answer_index,
        });
    }
    Ok((items, test.len()))
}

fn race_letter(answer: &str) -> usize {
    match answer.trim() {
        "B" => 1,
        "C" => 2,
        "D" => 3,
        _ => 0,
    }
}

/// RACE items, one per article (consecutive records sharing `example_id`), in the harness's
/// format.
pub fn race_items(dir: &Path, select: impl FnOnce(usize) -> Vec<usize>) -> Result<(Vec<McItem>, usize), McError> {
    let records: Vec<RaceRecord> = datasets::read_jsonl(dir, "race/middle_test.jsonl")?;
    let mut articles: Vec<Vec<RaceRecord>> = Vec::new();
    for r in records {
        match articles.last_mut() {
            Some(a) if a[0].example_id == r.example_id => a.push(r),
            _ => articles.push(vec![r]),
        }
    }
    let mut items = Vec::new();
    for (i, problems) in pick(&articles, &select(articles.len())) {
        let (last, earlier) = problems.split_last().expect("articles are non-empty");
        let mut text = format!("Article: {}\n\n", last.article);
        for p in earlier {
            let answer = p.options.get(race_letter(&p.answer)).cloned().unwrap_or_default();
            if p.question.ends_with("  _  .") {
                let tail: String = p.question.chars().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
                text.push_str(&format!("{tail}{answer}\n"));
            } else {
                text.push_str(&format!("Question: {}\nAnswer: {answer}\n", p.question));
            }
        }
        text.push_str(&last.question);
        let gold = race_letter(&last.answer);
        datasets::check_gold("race/middle_test.jsonl", i, gold, last.options.len())?;
        items.push(McItem { index: i, prefix: String::new(), context: text, choices: last.options.clone(), gold });
    }
    Ok((items, articles.len()))
}

static BRACKETED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[.*?\]").expect("valid regex"));

/// The harness's HellaSwag `preprocess`.
pub fn hellaswag_preprocess(text: &str) -> String {
    let text = text.trim().replace(" [title]", ". ");
    BRACKETED.replace_all(&text, "").replace("  ", " ")
}

/// HellaSwag items. The stored `ctx` is `ctx_a + " " + ctx_b` already preprocessed upstream;
/// the harness's capitalisation of `ctx_b` cannot be redone because the boundary is lost.
pub fn hellaswag_items(dir: &Path, select: impl FnOnce(usize) -> Vec<usize>) -> Result<(Vec<McItem>, usize), McError> {
    let records: Vec<HellaswagRecord> = datasets::read_jsonl(dir, "hellaswag/validation.jsonl")?;
    let mut items = Vec::new();
    for (i, r) in pick(&records, &select(records.len())) {
        datasets::check_gold("hellaswag/validation.jsonl", i, r.label, r.endings.len())?;
        items.push(McItem {
            index: i,
            prefix: String::new(),
            context: hellaswag_preprocess(&format!("{}: {}", r.activity_label, r.ctx)),
            choices: r.endings.iter().map(|e| hellaswag_preprocess(e)).collect(),
            gold: r.label,
        });
    }
    Ok((items, records.len()))
}

/// The query-style tasks (ARC, PIQA, BoolQ): `file` under the data directory and the context
/// built from the stored query.
pub fn query_items(
    dir: &Path,
    file: &str,
    context_of: impl Fn(&str) -> String,
    select: impl FnOnce(usize) -> Vec<usize>,
) -> Result<(Vec<McItem>, usize), McError> {
    let records: Vec<QueryRecord> = datasets::read_jsonl(dir, file)?;
    let mut items = Vec::new();
    for (i, r) in pick(&records, &select(records.len())) {
        datasets::check_gold(file, i, r.gold, r.choices.len())?;
        items.push(McItem { index: i, prefix: String::new(), context: context_of(&r.query), choices: r.choices, gold: r.gold });
    }
    Ok((items, records.len()))
}

/// ARC context: the stored query is `"Question: {q}"`.
pub fn arc_context(query: &str) -> String {
    format!("{query}\nAnswer:")
}

/// PIQA context: the stored query is `"Question: {goal}\n"`.
pub fn piqa_context(query: &str) -> String {
    format!("{}\nAnswer:", query.strip_suffix('\n').unwrap_or(query))
}

/// BoolQ context: the stored query is `"Passage: {passage}\nQuestion: {question}?"`; the harness
/// has no "Passage: " label.
pub fn boolq_context(query: &str) -> String {
    format!("{}\nAnswer:", query.strip_prefix("Passage: ").unwrap_or(query))
}

/// Runs a multiple-choice task end to end.
pub fn run_task(
    session: &mut Session<'_>,
    items: Vec<McItem>,
    n_available: usize,
    with_norm: bool,
    setting: String,
    progress: impl FnMut(usize),
) -> Result<TaskOutcome, EngineError> {
    let (metrics, items) = run_items(session, &items, with_norm, progress)?;
    Ok(TaskOutcome { metrics, items, n_available, setting })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acc_norm_divides_by_characters_and_ties_go_first() {
        let choices = vec!["ab".to_string(), "abcdef".to_string()];
        assert_eq!(predictions(&[-4.0, -6.0], &choices), (0, 1));
        assert_eq!(argmax(&[1.0, 1.0, 0.5]), 0);
    }

    #[test]
    fn hellaswag_preprocess_matches_the_harness() {
        assert_eq!(hellaswag_preprocess(" A man [header] sits [title] down.  Then "), "A man sits. down. Then");
    }

    #[test]
    fn contexts_match_the_harness_templates() {
        assert_eq!(arc_context("Question: Why?"), "Question: Why?\nAnswer:");
        assert_eq!(piqa_context("Question: dresser\n"), "Question: dresser\nAnswer:");
        assert_eq!(boolq_context("Passage: P.\nQuestion: is it?"), "P.\nQuestion: is it?\nAnswer:");
        let r = MmluRecord {
            subject: "x".into(),
            question: " Q? ".into(),
            choices: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            answer_index: 1,
        };
        assert_eq!(mmlu_question(&r), "Q?\nA. a\nB. b\nC. c\nD. d\nAnswer:");
    }
}
