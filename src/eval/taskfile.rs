//! `eval --task-file FILE.jsonl`: the user's own task, one JSON object per line. Two kinds (a file
//! holds one kind):
//!
//! - generation: `{"question": "...", "answer": "42"}` (the answer a number or a string).
//!   Prompt `Question: {question}\nAnswer:` (with `--chat`: the question as a user turn), greedy,
//!   stop at a blank line, `Question:` or the end of a turn. Metrics as GSM8K's two filters:
//!   `exact-match` (the first line of the output, or for a numeric answer the number of a
//!   "The answer is N." sentence, equals the answer) and `flexible-extract` (numeric answer: the
//!   last number in the output; string answer: the output contains it). Comparison ignores case,
//!   `,`, `$` and a final `.` (GSM8K's normalisation).
//! - multiple choice: `{"question": "...", "choices": ["a", "b", ...], "answer": 1}` (the index of
//!   the right choice). Context `Question: {question}\nAnswer:`, each choice scored as
//!   `" {choice}"` by log-likelihood; `acc` and `acc_norm` (per byte), as ARC's harness task.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::answer::{extract_flexible, extract_strict, is_correct, normalise};
use super::datasets::DatasetError;
use super::engine::{EngineError, GenerateOptions, Session};
use super::mc::McItem;
use super::task::{ItemResult, MetricSpec, TaskOutcome};
use crate::chat::ChatFormat;

/// One item of a task file.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskItem {
    /// Answer by generating text.
    Generate {
        /// The question.
        question: String,
        /// The reference answer.
        answer: String,
    },
    /// Pick one of the choices.
    Choice {
        /// The question.
        question: String,
        /// The choices.
        choices: Vec<String>,
        /// Index of the right one.
        answer: usize,
    },
}

/// A loaded task file.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskFile {
    /// The file.
    pub path: PathBuf,
    /// Its items, in file order.
    pub items: Vec<TaskItem>,
}

impl TaskFile {
    /// Reads and checks `path`: every line a generation item or every line a choice item.
    pub fn load(path: &Path) -> Result<TaskFile, DatasetError> {
        let text = crate::safety::inputs::read_text(path).map_err(|source| DatasetError::Io { path: path.to_path_buf(), source })?;
        let mut items = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |reason: String| DatasetError::Malformed { path: path.to_path_buf(), line: i + 1, reason };
            let v: Value = serde_json::from_str(line).map_err(|e| bad(format!("not valid JSON: {e}")))?;
            let item = parse_item(&v).map_err(bad)?;
            if let Some(first) = items.first()
                && std::mem::discriminant(first) != std::mem::discriminant(&item)
            {
                return Err(bad("mixes generation items (no `choices`) and multiple-choice items (with `choices`); use one kind per file".into()));
            }
            items.push(item);
        }
        if items.is_empty() {
            return Err(DatasetError::Malformed { path: path.to_path_buf(), line: 0, reason: "no items".into() });
        }
        Ok(TaskFile { path: path.to_path_buf(), items })
    }

    /// True for a multiple-choice file.
    pub fn is_choice(&self) -> bool {
        matches!(self.items.first(), Some(TaskItem::Choice { .. }))
    }
}

fn parse_item(v: &Value) -> Result<TaskItem, String> {
    let question = v.get("question").and_then(Value::as_str).ok_or("missing string field `question`")?.to_string();
    let answer = v.get("answer").ok_or("missing field `answer`")?;
    match v.get("choices") {
        None => {
            let answer = match answer {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err("`answer` must be a number or a string for a generation item".into()),
            };
            Ok(TaskItem::Generate { question, answer })
        }
        Some(c) => {
            let choices: Vec<String> = c
                .as_array()
                .ok_or("`choices` must be a list of strings")?
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or("`choices` must be a list of strings")?;
            if choices.len() < 2 {
                return Err("`choices` needs at least two entries".into());
            }
            let answer = answer.as_u64().ok_or("`answer` must be the index (0-based) of the right choice")? as usize;
            if answer >= choices.len() {
                return Err(format!("`answer` {answer} is not an index into the {} choices", choices.len()));
            }
            Ok(TaskItem::Choice { question, choices, answer })
        }
    }
}

/// The prompt of a generation item.
pub fn prompt(question: &str) -> String {
    format!("Question: {question}\nAnswer:")
}

/// Stop strings of generation items.
pub const STOP: [&str; 5] = ["\n\n", "Question:", "</s>", "<|im_end|>", "<end_of_turn>"];

/// True when `answer` reads as a number (after GSM8K's normalisation).
fn numeric(answer: &str) -> bool {
    normalise(answer).parse::<f64>().is_ok()
}

/// Scores one generated output against the reference answer (see the module documentation).
pub fn score(index: usize, prompt: String, answer: &str, output: &str) -> ItemResult {
    let first_line = output.trim().lines().next().unwrap_or("").trim().to_string();
    let is_num = numeric(answer);
    let strict = if is_num && extract_strict(output) != super::answer::INVALID { extract_strict(output) } else { first_line };
    let exact = is_correct(&strict, answer);
    let (flexible, flex_ok) = if is_num {
        let f = extract_flexible(output);
        let ok = is_correct(&f, answer);
        (f, ok)
    } else {
        let ok = !normalise(answer).is_empty() && normalise(output).contains(&normalise(answer));
        (output.trim().to_string(), ok)
    };
    let mut extracted = BTreeMap::new();
    extracted.insert("exact-match".to_string(), strict);
    extracted.insert("flexible-extract".to_string(), flexible);
    ItemResult {
        index,
        prompt,
        output: output.to_string(),
        target: answer.to_string(),
        extracted,
        scores: vec![(exact as u8 as f64, 1.0), (flex_ok as u8 as f64, 1.0)],
    }
}

/// Multiple-choice items of the file at `picked` positions, for `mc::run_task`.
pub fn choice_items(file: &TaskFile, picked: &[usize]) -> Vec<McItem> {
    picked
        .iter()
        .filter_map(|&i| match &file.items[i] {
            TaskItem::Choice { question, choices, answer } => {
                Some(McItem { index: i, prefix: String::new(), context: prompt(question), choices: choices.clone(), gold: *answer })
            }
            TaskItem::Generate { .. } => None,
        })
        .collect()
}

/// The setting line of a task file.
pub fn setting(file: &TaskFile, chat: bool) -> String {
    if file.is_choice() {
        format!("task file {}: multiple choice, \"Question: {{q}}\\nAnswer:\" + \" {{choice}}\", log-likelihood, acc / acc_norm", file.path.display())
    } else {
        format!(
            "task file {}: generation, {}, greedy, stop at a blank line / \"Question:\" / end of turn; exact-match (first line, or \"The answer is N.\") and flexible-extract (last number, or containment for text answers)",
            file.path.display(),
            if chat { "question as a chat user turn" } else { "\"Question: {q}\\nAnswer:\"" }
        )
    }
}

/// Generates and scores the generation items at `picked`.
pub fn run_generation(
    session: &mut Session<'_>,
    file: &TaskFile,
    picked: &[usize],
    chat: Option<&ChatFormat>,
    max_new_tokens: usize,
    parallel: usize,
    mut progress: impl FnMut(usize),
) -> Result<TaskOutcome, EngineError> {
    let model = session.model();
    let mut prompts = Vec::new();
    let mut texts = Vec::new();
    for &i in picked {
        let TaskItem::Generate { question, .. } = &file.items[i] else { continue };
        let text = match chat {
            Some(f) => f.user_prompt(question)?,
            None => prompt(question),
        };
        prompts.push(if chat.is_some() { model.tokenize_special(&text, true)? } else { model.tokenize(&text, true)? });
        texts.push(text);
    }
    let options = GenerateOptions { max_new_tokens, stop: STOP.iter().map(|s| s.to_string()).collect(), parallel: parallel.max(1) };
    let mut done = 0;
    let out = session.generate(&[], &prompts, &options, |_, _| {
        done += 1;
        progress(done);
    })?;
    let items = picked
        .iter()
        .zip(texts)
        .zip(out)
        .filter_map(|((&i, text), g)| match &file.items[i] {
            TaskItem::Generate { answer, .. } => Some(score(i, text, answer, &g.text)),
            TaskItem::Choice { .. } => None,
        })
        .collect();
    Ok(TaskOutcome {
        metrics: vec![MetricSpec::accuracy("exact-match"), MetricSpec::accuracy("flexible-extract")],
        items,
        n_available: file.items.len(),
        setting: setting(file, chat.is_some()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_parse_one_kind_and_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        std::fs::write(&p, "{\"question\":\"2+2?\",\"answer\":4}\n\n{\"question\":\"Capital of France?\",\"answer\":\"Paris\"}\n").unwrap();
        let f = TaskFile::load(&p).unwrap();
        assert_eq!(f.items.len(), 2);
        assert!(!f.is_choice());
        assert_eq!(f.items[0], TaskItem::Generate { question: "2+2?".into(), answer: "4".into() });
        std::fs::write(&p, "{\"question\":\"q\",\"choices\":[\"a\",\"b\"],\"answer\":1}\n{\"question\":\"q\",\"answer\":\"x\"}\n").unwrap();
        let e = TaskFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("t.jsonl:2") && e.contains("one kind per file"), "{e}");
        std::fs::write(&p, "{\"question\":\"q\",\"choices\":[\"a\",\"b\"],\"answer\":2}\n").unwrap();
        assert!(TaskFile::load(&p).unwrap_err().to_string().contains("t.jsonl:1"));
    }

    #[test]
    fn scoring_follows_the_gsm8k_filters_and_text_answers() {
        let s = score(0, String::new(), "42", "Six times seven. The answer is 42.\nmore");
        assert_eq!(s.scores, vec![(1.0, 1.0), (1.0, 1.0)]);
        let s = score(0, String::new(), "42", "I think 41, no wait, 42");
        assert_eq!(s.scores, vec![(0.0, 1.0), (1.0, 1.0)]);
        let s = score(0, String::new(), "Paris", " paris.\nIt is in France.");
        assert_eq!(s.scores, vec![(1.0, 1.0), (1.0, 1.0)]);
        let s = score(0, String::new(), "Paris", "The capital is Paris");
        assert_eq!(s.scores, vec![(0.0, 1.0), (1.0, 1.0)]);
        let s = score(0, String::new(), "1,000", "It costs $1000.");
        assert_eq!(s.scores[1], (1.0, 1.0));
    }
}
