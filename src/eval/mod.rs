//! Evaluation on a CPU: GSM8K chain of thought, multiple-choice tasks and perplexity through
//! llama.cpp, and the paired comparison of two models on identical items.
//!
//! Entry points: [`evaluate`] (one model → [`EvalReport`]), [`compare`] (two models →
//! [`ComparisonReport`]), [`report::write_outputs`] (report.json, report.md, `<task>.jsonl`).
//!
//! - `engine`: batched llama.cpp scoring and generation with KV-cache prefix sharing.
//! - `backend`: the process-wide llama.cpp backend.
//! - `task`, `datasets`, `subset`: task names and metrics, data loading, `--limit` subsets.
//! - `gsm8k_prompt`, `answer`, `gsm8k`: the GSM8K prompts, answer extraction, task runners.
//! - `mc`, `requests`: multiple-choice tasks and their tokenization.
//! - `perplexity`: strided-window perplexity (WikiText, GSM8K solutions).
//! - `stats`, `report`: bootstrap intervals, McNemar, report rendering and files.

use std::path::{Path, PathBuf};
use std::time::Instant;

pub mod answer;
pub mod backend;
pub mod datasets;
pub mod engine;
pub mod gsm8k;
pub mod gsm8k_prompt;
pub mod logits;
pub mod mc;
pub mod perplexity;
pub mod report;
pub mod requests;
pub mod stats;
pub mod subset;
pub mod task;

pub use engine::{EngineOptions, EvalModel, Session};
pub use gsm8k::Gsm8kMode;
pub use perplexity::Windows;
pub use report::{ComparisonReport, EvalReport, MetricResult, RunSettings, TaskResult, compare_reports, write_outputs};
pub use task::Task;

use datasets::{DatasetError, Gsm8kRecord};
use engine::EngineError;
use mc::McError;
use task::TaskOutcome;

/// What to evaluate and how.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Tasks, run in this order.
    pub tasks: Vec<Task>,
    /// The data directory (see `crate::data::dir::resolve_data_dir`).
    pub data_dir: PathBuf,
    /// Evaluate a seeded subset of at most this many items per task.
    pub limit: Option<usize>,
    /// Seed of the subset and of the bootstrap.
    pub seed: u64,
    /// MMLU exemplars from dev (0 or 5 in the harness).
    pub fewshot: usize,
    /// GSM8K questions decoding at once (1 and [`Gsm8kMode::Naive`] for the baseline).
    pub gsm8k_mode: Gsm8kMode,
    /// Most new tokens per GSM8K answer (the harness uses 256).
    pub max_new_tokens: usize,
    /// Perplexity windows.
    pub windows: Windows,
    /// Bootstrap resamples for the intervals.
    pub bootstrap: usize,
    /// llama.cpp context settings (threads, sizes).
    pub engine: EngineOptions,
    /// Show progress on stderr (see `crate::progress`).
    pub progress: bool,
}

impl EvalOptions {
    /// Defaults for `tasks` with data in `data_dir`.
    pub fn new(tasks: Vec<Task>, data_dir: PathBuf) -> Self {
        Self {
            tasks,
            data_dir,
            limit: None,
            seed: 1234,
            fewshot: 0,
            gsm8k_mode: Gsm8kMode::Batched { parallel: 32 },
            max_new_tokens: gsm8k_prompt::MAX_NEW_TOKENS,
            windows: Windows::default(),
            bootstrap: 1000,
            engine: EngineOptions::default(),
            progress: true,
        }
    }

    fn settings(&self) -> RunSettings {
        RunSettings {
            limit: self.limit,
            seed: self.seed,
            fewshot: self.fewshot,
            threads: self.engine.threads,
            bootstrap: self.bootstrap,
            parallel: match self.gsm8k_mode {
                Gsm8kMode::Batched { parallel } => parallel,
                Gsm8kMode::Naive => 1,
            },
            ppl_window: (self.windows.window, self.windows.stride),
        }
    }
}

/// Errors of an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A data file is missing or malformed.
    #[error(transparent)]
    Data(#[from] DatasetError),
    /// llama.cpp failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The two reports cannot be paired.
    #[error(transparent)]
    Compare(#[from] report::CompareError),
}

impl From<McError> for EvalError {
    fn from(e: McError) -> Self {
        match e {
            McError::Data(d) => EvalError::Data(d),
            McError::Engine(g) => EvalError::Engine(g),
        }
    }
}

/// Evaluates the model at `model_path` on every task of `options`.
pub fn evaluate(model_path: &Path, options: &EvalOptions) -> Result<EvalReport, EvalError> {
    let model = EvalModel::load(model_path)?;
    evaluate_model(&model, options)
}

/// Evaluates an already loaded model.
pub fn evaluate_model(model: &EvalModel, options: &EvalOptions) -> Result<EvalReport, EvalError> {
    let start = Instant::now();
    let mut session = model.session(&options.engine)?;
    let mut tasks = Vec::new();
    for &task in &options.tasks {
        let t0 = Instant::now();
        let outcome = run_task(&mut session, task, options)?;
        tasks.push(summarise(task, outcome, t0.elapsed().as_secs_f64(), options));
    }
    Ok(EvalReport {
        model: model.path().to_path_buf(),
        settings: options.settings(),
        tasks,
        wall_seconds: start.elapsed().as_secs_f64(),
    })
}

/// Evaluates `base` and `other` on identical items and compares them pairwise.
pub fn compare(base: &Path, other: &Path, options: &EvalOptions) -> Result<ComparisonReport, EvalError> {
    let a = evaluate(base, options)?;
    let b = evaluate(other, options)?;
    Ok(compare_reports(&a, &b, options.bootstrap, options.seed)?)
}

fn summarise(task: Task, outcome: TaskOutcome, wall_seconds: f64, options: &EvalOptions) -> TaskResult {
    let metrics = outcome
        .metrics
        .iter()
        .enumerate()
        .map(|(m, spec)| {
            let xs: Vec<(f64, f64)> = outcome.items.iter().map(|i| i.scores[m]).collect();
            MetricResult {
                name: spec.name.clone(),
                aggregate: spec.aggregate,
                binary: spec.binary,
                higher_is_better: spec.higher_is_better,
                value: stats::aggregate(spec.aggregate, &xs),
                ci95: stats::bootstrap_ci(spec.aggregate, &xs, options.bootstrap, options.seed.wrapping_add(m as u64)),
            }
        })
        .collect();
    TaskResult {
        task,
        n: outcome.items.len(),
        n_available: outcome.n_available,
        setting: outcome.setting,
        wall_seconds,
        metrics,
        items: outcome.items,
    }
}

fn gsm8k_test(options: &EvalOptions) -> Result<(Vec<(usize, Gsm8kRecord)>, usize), DatasetError> {
    let all: Vec<Gsm8kRecord> = datasets::read_jsonl(&options.data_dir, "gsm8k/test.jsonl")?;
    let picked = subset::select(all.len(), options.limit, options.seed);
    let n = all.len();
    Ok((picked.into_iter().map(|i| (i, all[i].clone())).collect(), n))
}

fn run_task(session: &mut Session<'_>, task: Task, options: &EvalOptions) -> Result<TaskOutcome, EvalError> {
    let dir = &options.data_dir;
    let select = |n: usize| subset::select(n, options.limit, options.seed);
    let bar_for = |n: usize| crate::progress::Progress::new(task.name(), n as u64, "items", options.progress);
    let outcome = match task {
        Task::Gsm8k | Task::Gsm8kNll | Task::Gsm8kPpl => {
            let (records, n_available) = gsm8k_test(options)?;
            let bar = bar_for(records.len());
            let tick = |d: usize| bar.set_position(d as u64);
            let out = match task {
                Task::Gsm8k => gsm8k::run_gsm8k(session, &records, n_available, options.gsm8k_mode, options.max_new_tokens, tick)?,
                Task::Gsm8kNll => gsm8k::run_gsm8k_nll(session, &records, n_available, tick)?,
                _ => perplexity::run_documents(
                    session,
                    &perplexity::gsm8k_documents(&records),
                    options.windows,
                    false,
                    n_available,
                    "perplexity of the gold GSM8K test solutions (text after the question, with \
                     <<calc>> annotations), start token as context, strided windows"
                        .to_string(),
                    tick,
                )?,
            };
            bar.finish_and_clear();
            out
        }
        Task::Wikitext => {
            let raw = datasets::read_text(dir, "wikitext2/wiki.test.raw.txt")?;
            let (docs, n_available) = perplexity::wikitext_documents(&raw, select);
            let bar = bar_for(docs.len());
            let setting = format!(
                "WikiText-2 raw test, one document per article (lines joined by \\n; the stored copy has no \
                 blank lines), lm-eval wikitext_detokenizer, start token, windows of {} tokens with stride {}; \
                 word/byte counts of the original text as lm-eval counts them",
                options.windows.window, options.windows.stride
            );
            let out = perplexity::run_documents(session, &docs, options.windows, true, n_available, setting, |d| {
                bar.set_position(d as u64)
            })?;
            bar.finish_and_clear();
            out
        }
        mc_task => {
            let (items, n_available, with_norm, setting) = match mc_task {
                Task::Mmlu => {
                    let (items, n) = mc::mmlu_items(dir, options.fewshot, select)?;
                    (items, n, false, format!("lm-eval mmlu default template, {}-shot from dev (first_n), acc", options.fewshot))
                }
                Task::Race => {
                    let (items, n) = mc::race_items(dir, select)?;
                    (items, n, false, "lm-eval race format on RACE-middle test (the harness uses RACE-high), one item per article, acc".to_string())
                }
                Task::Hellaswag => {
                    let (items, n) = mc::hellaswag_items(dir, select)?;
                    (items, n, true, "lm-eval hellaswag preprocess, 0-shot; ctx_b not re-capitalised (boundary lost in the stored copy)".to_string())
                }
                Task::ArcEasy | Task::ArcChallenge => {
                    let file = if mc_task == Task::ArcEasy { "arc/arc_easy_test.jsonl" } else { "arc/arc_challenge_test.jsonl" };
                    let (items, n) = mc::query_items(dir, file, mc::arc_context, select)?;
                    (items, n, true, "lm-eval arc \"Question: {q}\\nAnswer:\" + \" {choice}\", 0-shot".to_string())
                }
                Task::Piqa => {
                    let (items, n) = mc::query_items(dir, "piqa/validation.jsonl", mc::piqa_context, select)?;
                    (items, n, true, "lm-eval piqa \"Question: {goal}\\nAnswer:\" + \" {sol}\", 0-shot".to_string())
                }
                Task::Boolq => {
                    let (items, n) = mc::query_items(dir, "boolq/validation.jsonl", mc::boolq_context, select)?;
                    (items, n, false, "lm-eval boolq \"{passage}\\nQuestion: {question}?\\nAnswer:\" + \" no\"/\" yes\", 0-shot, acc".to_string())
                }
                _ => unreachable!("every other task is handled above"),
            };
            let bar = bar_for(items.len());
            let out = mc::run_task(session, items, n_available, with_norm, setting, |d| bar.set_position(d as u64))?;
            bar.finish_and_clear();
            out
        }
    };
    Ok(outcome)
}
