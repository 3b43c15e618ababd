//! Evaluation on a CPU: GSM8K chain of thought, multiple-choice tasks and perplexity through
//! llama.cpp, and the paired comparison of two models on identical items.
//!
//! Entry points: [`evaluate`] (one model → [`EvalReport`]), [`compare`] (two models →
//! [`ComparisonReport`]), [`report::write_outputs`] (report.json, report.md, `<task>.jsonl`).
//!
//! - `engine`: batched llama.cpp scoring and generation with KV-cache prefix sharing (on
//!   `crate::ffi::llama`'s model and context).
//! - `task`, `datasets`, `subset`: task names and metrics, data loading, `--limit` subsets.
//! - `gsm8k_prompt`, `answer`, `gsm8k`: the GSM8K prompts, answer extraction, task runners
//!   (and the few-shot generation path the other generation tasks share).
//! - `math_prompt`, `math_answer`, `math`: the MATH task (Minerva prompt, the harness's answer
//!   normalisation, the runner) on the test part of `crate::data::math_split`.
//! - `mc`, `requests`: multiple-choice tasks and their tokenization.
//! - `perplexity`: strided-window perplexity (WikiText, GSM8K solutions).
//! - `stats`, `report`: bootstrap intervals, McNemar, report rendering and files.

use std::path::{Path, PathBuf};
use std::time::Instant;

pub mod answer;
pub mod content;
pub mod datasets;
pub mod engine;
pub mod finished;
pub mod gsm8k;
pub mod gsm8k_prompt;
pub mod itemlog;
pub mod kld;
pub mod kld_run;
pub mod kld_texts;
pub mod logits;
pub mod math;
pub mod math_answer;
pub mod math_prompt;
pub mod mc;
pub mod outputs;
pub mod perplexity;
pub mod plot;
pub mod protocol;
pub mod protocol_combine;
pub mod protocol_report;
pub mod report;
pub mod requests;
pub mod stats;
pub mod subset;
pub mod task;
pub mod taskfile;
pub mod verdict;

pub use engine::{EngineOptions, Session};
pub use crate::ffi::llama::Model;
pub use gsm8k::Gsm8kMode;
pub use perplexity::Windows;
pub use report::{ComparisonReport, EvalReport, MetricResult, RunSettings, TaskResult, compare_reports, write_outputs};
pub use task::Task;

use datasets::{DatasetError, Gsm8kRecord};
use engine::EngineError;
use mc::McError;
use task::TaskOutcome;

/// Seed of the subsets and the bootstrap unless asked otherwise (`eval --seed`).
pub const DEFAULT_SEED: u64 = 1234;
/// GSM8K questions decoding at once unless asked otherwise (`eval --parallel`).
pub const DEFAULT_PARALLEL: usize = 32;
/// Bootstrap resamples unless asked otherwise (`eval --bootstrap`).
pub const DEFAULT_BOOTSTRAP: usize = 1000;

/// What to evaluate and how.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Tasks, run in this order.
    pub tasks: Vec<Task>,
    /// The data directory (see `crate::data::dir::resolve_data_dir`).
    pub data_dir: PathBuf,
    /// Evaluate a seeded subset of at most this many items per task.
    pub limit: Option<usize>,
    /// Evaluate only the items at these positions of the data file, in file order (instead of
    /// `limit`): one slice of a long run (`protocol --gsm8k-range`).
    pub range: Option<std::ops::Range<usize>>,
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
    /// Wrap generation prompts (GSM8K, task-file generation items) in the model's chat template.
    pub chat: bool,
    /// The user's own task (`--task-file`), evaluated after `tasks` as task `task_file`.
    pub task_file: Option<PathBuf>,
    /// Write each task's items as they finish to `items_dir/<task>.jsonl`.
    pub items_dir: Option<PathBuf>,
    /// Take finished items from `items_dir` instead of evaluating them again.
    pub resume: bool,
    /// Items per chunk written to `items_dir` (default: see `chunk_size`).
    pub chunk: Option<usize>,
    /// Whether the files in `items_dir` keep the items' texts (`--redact-items`: hashes only).
    pub item_text: itemlog::ItemText,
}

impl EvalOptions {
    /// Defaults for `tasks` with data in `data_dir`.
    pub fn new(tasks: Vec<Task>, data_dir: PathBuf) -> Self {
        Self {
            tasks,
            data_dir,
            limit: None,
            range: None,
            seed: DEFAULT_SEED,
            fewshot: 0,
            gsm8k_mode: Gsm8kMode::Batched { parallel: DEFAULT_PARALLEL },
            max_new_tokens: gsm8k_prompt::MAX_NEW_TOKENS,
            windows: Windows::DEFAULT,
            bootstrap: DEFAULT_BOOTSTRAP,
            engine: EngineOptions::default(),
            progress: true,
            chat: false,
            task_file: None,
            items_dir: None,
            resume: false,
            chunk: None,
            item_text: itemlog::ItemText::Keep,
        }
    }

    /// Everything that decides a task's items and results (for `--resume`): not the progress
    /// bars, nor where files go.
    /// The model and the task's data enter by content (`model_sha256`, `data_sha256`), not by
    /// name: a model rewritten in place or a data file edited since is not reused.
    pub(crate) fn key(&self, model_sha256: &str, task: Task) -> Result<String, EvalError> {
        let data = content::task_data_sha256(&self.data_dir, task, self.task_file.as_deref())?;
        // A slice's key names its range; keys of whole runs are unchanged by the field.
        let range = self.range.as_ref().map_or(String::new(), |r| format!(" range={}..{}", r.start, r.end));
        Ok(format!(
            "model_sha256={model_sha256} data_sha256={data} task={task} limit={:?} seed={} fewshot={} mode={:?} max_new={} windows={:?} threads={} chat={} task_file={:?} chunk={}",
            self.limit,
            self.seed,
            self.fewshot,
            self.gsm8k_mode,
            self.max_new_tokens,
            (self.windows.window, self.windows.stride),
            self.engine.threads,
            self.chat,
            self.task_file,
            chunk_size(task, self)
        ) + &range)
    }

    /// The tasks run, in order: `tasks`, then the task file's when one is given.
    pub fn all_tasks(&self) -> Vec<Task> {
        let mut all = self.tasks.clone();
        if self.task_file.is_some() {
            all.push(Task::TaskFile);
        }
        all
    }

    /// The settings a report records.
    pub fn settings(&self) -> RunSettings {
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
    /// The finished run of `--compare-run` cannot be paired with this one.
    #[error(transparent)]
    Finished(#[from] finished::FinishedRunError),
    /// The per-item file cannot be used.
    #[error(transparent)]
    Items(#[from] itemlog::ItemLogError),
    /// The model produced NaN on a task (its first request with NaN named in `source`).
    #[error("task {task}: {source}")]
    Nan {
        /// The task that met it first.
        task: Task,
        /// The engine's error, naming the model.
        source: EngineError,
    },
    /// `--chat` cannot be used with this model.
    #[error(transparent)]
    Chat(#[from] crate::chat::ChatFormatError),
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
    let model = Model::load(model_path).map_err(EngineError::from)?;
    evaluate_model(&model, options)
}

/// Evaluates an already loaded model.
pub fn evaluate_model(model: &Model, options: &EvalOptions) -> Result<EvalReport, EvalError> {
    let start = Instant::now();
    let mut session = Session::new(model, &options.engine)?;
    let chat = if options.chat { Some(crate::chat::ChatFormat::of_model(model.path())?) } else { None };
    let task_file = options.task_file.as_deref().map(taskfile::TaskFile::load).transpose()?;
    let all = options.all_tasks();
    let model_sha256 = match &options.items_dir {
        Some(_) => content::file_sha256(model.path())?,
        None => String::new(),
    };
    let mut tasks = Vec::new();
    for task in all {
        let t0 = Instant::now();
        let mut log = match &options.items_dir {
            Some(dir) => itemlog::ItemLog::open(&dir.join(format!("{task}.jsonl")), &options.key(&model_sha256, task)?, options.resume, options.item_text)?,
            None => itemlog::ItemLog::none(),
        };
        let ctx = TaskContext { chat: chat.as_ref(), task_file: task_file.as_ref() };
        let outcome = run_task(&mut session, task, options, &ctx, &mut log).map_err(|e| match e {
            EvalError::Engine(source @ EngineError::NanLogits { .. }) => EvalError::Nan { task, source },
            e => e,
        })?;
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
    let picked = subset::select(all.len(), options.limit, options.range.as_ref(), options.seed);
    let n = all.len();
    Ok((picked.into_iter().map(|i| (i, all[i].clone())).collect(), n))
}

/// What some tasks need beyond the options: the chat template and the loaded task file.
struct TaskContext<'a> {
    chat: Option<&'a crate::chat::ChatFormat>,
    task_file: Option<&'a taskfile::TaskFile>,
}

/// Items per chunk written to the item file: a few batches of generation, more of scoring.
fn chunk_size(task: Task, options: &EvalOptions) -> usize {
    if let Some(n) = options.chunk {
        return n.max(1);
    }
    match task {
        Task::Gsm8k | Task::Math | Task::TaskFile => match options.gsm8k_mode {
            Gsm8kMode::Batched { parallel } => (4 * parallel).max(32),
            Gsm8kMode::Naive => 32,
        },
        Task::Wikitext => 4,
        _ => 64,
    }
}

fn run_task(session: &mut Session<'_>, task: Task, options: &EvalOptions, ctx: &TaskContext<'_>, log: &mut itemlog::ItemLog) -> Result<TaskOutcome, EvalError> {
    let run = TaskRun { task, options, chunk: chunk_size(task, options) };
    match task {
        Task::TaskFile => run.task_file(session, ctx, log),
        Task::Gsm8k | Task::Gsm8kNll | Task::Gsm8kPpl => run.gsm8k(session, ctx, log),
        Task::Wikitext => run.wikitext(session, log),
        Task::Math => run.math(session, ctx, log),
        _ => {
            let (items, n_available, with_norm, setting) = mc_items(task, options)?;
            let bar = run.bar(items.len());
            let out = itemlog::run_chunked(items.len(), run.chunk, log, |r| -> Result<TaskOutcome, EvalError> {
                let start = r.start;
                Ok(mc::run_task(session, items[r].to_vec(), n_available, with_norm, setting.clone(), |d| bar.set_position((start + d) as u64))?)
            })?;
            bar.finish_and_clear();
            Ok(out)
        }
    }
}

/// One task's run: its options and the chunks its items are logged in.
struct TaskRun<'o> {
    task: Task,
    options: &'o EvalOptions,
    chunk: usize,
}

impl TaskRun<'_> {
    /// The progress bar over `n` items.
    fn bar(&self, n: usize) -> crate::progress::Progress {
        crate::progress::Progress::new(self.task.name(), n as u64, "items", self.options.progress)
    }

    /// The seeded `--limit` subset of `n` items.
    fn select(&self, n: usize) -> Vec<usize> {
        subset::select(n, self.options.limit, self.options.range.as_ref(), self.options.seed)
    }

    /// The user's `--task-file`: multiple choice or generation.
    fn task_file(&self, session: &mut Session<'_>, ctx: &TaskContext<'_>, log: &mut itemlog::ItemLog) -> Result<TaskOutcome, EvalError> {
        let options = self.options;
        let file = ctx.task_file.expect("the task file is loaded when the task is asked for");
        let picked = self.select(file.items.len());
        let bar = self.bar(picked.len());
        let out = itemlog::run_chunked(picked.len(), self.chunk, log, |r| -> Result<TaskOutcome, EvalError> {
            let tick = |d: usize| bar.set_position((r.start + d) as u64);
            if file.is_choice() {
                let items = taskfile::choice_items(file, &picked[r.clone()]);
                Ok(mc::run_task(session, items, file.items.len(), true, taskfile::setting(file, false), tick)?)
            } else {
                let parallel = match options.gsm8k_mode {
                    Gsm8kMode::Batched { parallel } => parallel,
                    Gsm8kMode::Naive => 1,
                };
                Ok(taskfile::run_generation(session, file, &picked[r.clone()], ctx.chat, options.max_new_tokens, parallel, tick)?)
            }
        })?;
        bar.finish_and_clear();
        Ok(out)
    }

    /// GSM8K generation, the gold solutions' log-likelihood or their perplexity.
    fn gsm8k(&self, session: &mut Session<'_>, ctx: &TaskContext<'_>, log: &mut itemlog::ItemLog) -> Result<TaskOutcome, EvalError> {
        let (task, options) = (self.task, self.options);
        let (records, n_available) = gsm8k_test(options)?;
        let bar = self.bar(records.len());
        let out = itemlog::run_chunked(records.len(), self.chunk, log, |r| -> Result<TaskOutcome, EvalError> {
            let part = &records[r.clone()];
            let tick = |d: usize| bar.set_position((r.start + d) as u64);
            Ok(match task {
                Task::Gsm8k => gsm8k::run_gsm8k_with(session, part, n_available, options.gsm8k_mode, options.max_new_tokens, ctx.chat, tick)?,
                Task::Gsm8kNll => gsm8k::run_gsm8k_nll(session, part, n_available, tick)?,
                _ => perplexity::run_documents(
                    session,
                    &perplexity::gsm8k_documents(part),
                    options.windows,
                    false,
                    n_available,
                    "perplexity of the gold GSM8K test solutions (text after the question, with \
                     <<calc>> annotations), start token as context, strided windows"
                        .to_string(),
                    tick,
                )?,
            })
        })?;
        bar.finish_and_clear();
        Ok(out)
    }

    /// MATH generation on the split's test problems (the `--limit` subset of them).
    fn math(&self, session: &mut Session<'_>, ctx: &TaskContext<'_>, log: &mut itemlog::ItemLog) -> Result<TaskOutcome, EvalError> {
        let options = self.options;
        let test = crate::data::math_split::MathSplit::load(&options.data_dir)?.test_records();
        let records: Vec<_> = self.select(test.len()).into_iter().map(|k| test[k].clone()).collect();
        let bar = self.bar(records.len());
        let out = itemlog::run_chunked(records.len(), self.chunk, log, |r| -> Result<TaskOutcome, EvalError> {
            let tick = |d: usize| bar.set_position((r.start + d) as u64);
            Ok(math::run_math(session, &records[r.clone()], test.len(), options.gsm8k_mode, options.max_new_tokens, ctx.chat, tick)?)
        })?;
        bar.finish_and_clear();
        Ok(out)
    }

    /// WikiText-2 perplexity, one document per article.
    fn wikitext(&self, session: &mut Session<'_>, log: &mut itemlog::ItemLog) -> Result<TaskOutcome, EvalError> {
        let options = self.options;
        let raw = datasets::read_text(&options.data_dir, "wikitext2/wiki.test.raw.txt")?;
        let (docs, n_available) = perplexity::wikitext_documents(&raw, |n| self.select(n));
        let bar = self.bar(docs.len());
        let setting = format!(
            "WikiText-2 raw test, one document per article (lines joined by \\n; the stored copy has no \
             blank lines), lm-eval wikitext_detokenizer, start token, windows of {} tokens with stride {}; \
             word/byte counts of the original text as lm-eval counts them",
            options.windows.window, options.windows.stride
        );
        let out = itemlog::run_chunked(docs.len(), self.chunk, log, |r| -> Result<TaskOutcome, EvalError> {
            let start = r.start;
            Ok(perplexity::run_documents(session, &docs[r], options.windows, true, n_available, setting.clone(), |d| {
                bar.set_position((start + d) as u64)
            })?)
        })?;
        bar.finish_and_clear();
        Ok(out)
    }
}

/// A multiple-choice task's items (the `--limit` subset), the items available, whether
/// `acc_norm` is reported, and the setting line of the report.
fn mc_items(task: Task, options: &EvalOptions) -> Result<(Vec<mc::McItem>, usize, bool, String), EvalError> {
    let dir = &options.data_dir;
    let select = |n: usize| subset::select(n, options.limit, options.range.as_ref(), options.seed);
    Ok(match task {
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
            let file = if task == Task::ArcEasy { "arc/arc_easy_test.jsonl" } else { "arc/arc_challenge_test.jsonl" };
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
        _ => unreachable!("every other task is handled by run_task"),
    })
}
