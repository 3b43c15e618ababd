//! The evaluation tasks by name, the metrics each reports, and the per-item results every
//! task runner returns.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An evaluation task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// GSM8K test, lm-eval `gsm8k_cot` 8-shot greedy chain of thought.
    Gsm8k,
    /// Mean per-token negative log-likelihood of the gold GSM8K solutions.
    Gsm8kNll,
    /// Perplexity of the gold GSM8K solutions (rolling windows).
    Gsm8kPpl,
    /// MATH: the 500 test problems of the seeded split, lm-eval `minerva_math` 4-shot greedy.
    Math,
    /// MMLU test (0-shot, or k-shot from dev with `--fewshot`).
    Mmlu,
    /// RACE middle-school test (one item per article, lm-eval format).
    Race,
    /// HellaSwag validation.
    Hellaswag,
    /// ARC-Easy test.
    ArcEasy,
    /// ARC-Challenge test.
    ArcChallenge,
    /// PIQA validation.
    Piqa,
    /// BoolQ validation.
    Boolq,
    /// WikiText-2 test perplexity (rolling windows, document level).
    Wikitext,
    /// The user's own task from `--task-file FILE.jsonl` (see `eval::taskfile`); not named in
    /// `--tasks`.
    TaskFile,
}

impl Task {
    /// Every task, in report order.
    pub const ALL: [Task; 12] = [
        Task::Gsm8k,
        Task::Gsm8kNll,
        Task::Gsm8kPpl,
        Task::Math,
        Task::Mmlu,
        Task::Race,
        Task::Hellaswag,
        Task::ArcEasy,
        Task::ArcChallenge,
        Task::Piqa,
        Task::Boolq,
        Task::Wikitext,
    ];

    /// The task's command-line and file name.
    pub fn name(self) -> &'static str {
        match self {
            Task::Gsm8k => "gsm8k",
            Task::Gsm8kNll => "gsm8k_nll",
            Task::Gsm8kPpl => "gsm8k_ppl",
            Task::Math => "math",
            Task::Mmlu => "mmlu",
            Task::Race => "race",
            Task::Hellaswag => "hellaswag",
            Task::ArcEasy => "arc_easy",
            Task::ArcChallenge => "arc_challenge",
            Task::Piqa => "piqa",
            Task::Boolq => "boolq",
            Task::Wikitext => "wikitext",
            Task::TaskFile => "task_file",
        }
    }

    /// Parses a comma-separated list of task names (`all` means every task).
    pub fn parse_list(list: &str) -> Result<Vec<Task>, UnknownTask> {
        let mut tasks = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name == "all" {
                tasks.extend(Task::ALL);
            } else {
                tasks.push(name.parse()?);
            }
        }
        let mut seen = std::collections::HashSet::new();
        tasks.retain(|t| seen.insert(*t));
        Ok(tasks)
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A task name that is not known.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown task `{0}` (known: {known})", known = Task::ALL.map(Task::name).join(", "))]
pub struct UnknownTask(pub String);

impl FromStr for Task {
    type Err = UnknownTask;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Task::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| UnknownTask(s.to_string()))
    }
}

/// How a metric's per-item (numerator, denominator) pairs combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Σ numerator / Σ denominator (a mean when every denominator is 1).
    Ratio,
    /// exp(Σ numerator / Σ denominator): perplexities.
    ExpRatio,
}

impl Aggregate {
    /// The metric's value over the given (numerator, denominator) pairs.
    pub fn apply(self, num: f64, den: f64) -> f64 {
        let r = if den == 0.0 { f64::NAN } else { num / den };
        match self {
            Aggregate::Ratio => r,
            Aggregate::ExpRatio => r.exp(),
        }
    }
}

/// One metric a task reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSpec {
    /// Metric name, e.g. `acc`, `strict-match`.
    pub name: String,
    /// How item values combine.
    pub aggregate: Aggregate,
    /// Items score 0 or 1 (McNemar's test applies).
    pub binary: bool,
    /// Larger is better.
    pub higher_is_better: bool,
}

impl MetricSpec {
    /// An accuracy-like 0/1 metric averaged over items.
    pub fn accuracy(name: &str) -> Self {
        Self { name: name.into(), aggregate: Aggregate::Ratio, binary: true, higher_is_better: true }
    }

    /// A ratio metric, lower is better (negative log-likelihood per unit).
    pub fn lower_ratio(name: &str) -> Self {
        Self { name: name.into(), aggregate: Aggregate::Ratio, binary: false, higher_is_better: false }
    }

    /// A perplexity: exp of the mean negative log-likelihood per unit.
    pub fn perplexity(name: &str) -> Self {
        Self { name: name.into(), aggregate: Aggregate::ExpRatio, binary: false, higher_is_better: false }
    }
}

/// The result of one evaluation item.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ItemResult {
    /// Position of the item in its data file (record, or article for RACE/WikiText).
    pub index: usize,
    /// The prompt or context given to the model.
    pub prompt: String,
    /// What the model produced (generated text, or the chosen continuation).
    pub output: String,
    /// The gold answer.
    pub target: String,
    /// Answers extracted per metric (e.g. `strict-match` → `18`, `acc` → `2`).
    pub extracted: BTreeMap<String, String>,
    /// Per metric, in the task's metric order: (numerator, denominator).
    pub scores: Vec<(f64, f64)>,
}

/// What a task runner returns: its metrics, items and a line describing the setting.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOutcome {
    /// The metrics, in report order.
    pub metrics: Vec<MetricSpec>,
    /// Evaluated items, in data order.
    pub items: Vec<ItemResult>,
    /// Items available before `--limit`.
    pub n_available: usize,
    /// The prompt format and scoring in one line.
    pub setting: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_lists_parse_and_deduplicate() {
        assert_eq!(Task::parse_list("gsm8k, mmlu,gsm8k").unwrap(), vec![Task::Gsm8k, Task::Mmlu]);
        assert_eq!(Task::parse_list("all").unwrap().len(), Task::ALL.len());
        let err = Task::parse_list("gsm9k").unwrap_err();
        assert!(err.to_string().contains("gsm9k") && err.to_string().contains("arc_easy"));
    }
}
