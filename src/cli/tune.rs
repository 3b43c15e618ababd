//! `mathneuro tune MODEL -o BEST.gguf`: search edits on dev data, test the winner once on
//! held-out questions, write BEST.gguf (or the base unchanged) and the report (see `tune`).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::data::dir::resolve_data_dir;
use crate::surgery::side_path;
use crate::tune::{Objective, TuneOptions, tune};

/// Arguments of `mathneuro tune`.
#[derive(Debug, clap::Args)]
pub struct TuneArgs {
    /// The GGUF model (never written).
    pub model: PathBuf,
    /// The best model found (the base unchanged when no edit beats it on dev).
    #[arg(short, long)]
    pub output: PathBuf,
    /// The generation task the search optimises: `gsm8k` (dev from its train questions) or
    /// `math` (dev from the problems outside MATH's 500-problem test part, the final test from
    /// those 500).
    #[arg(long, value_enum, default_value_t = TaskArg::Gsm8k)]
    pub task: TaskArg,
    /// Optimise your own generation questions instead (see docs/task-file.md): split with the
    /// seed into dev and test halves, leak-checked like the built-in tasks.
    #[arg(long, value_name = "FILE", conflicts_with = "task")]
    pub task_file: Option<PathBuf>,
    /// Math calibration data (as `calibrate --data`).
    #[arg(long, default_value = "gsm8k")]
    pub math: String,
    /// General calibration data.
    #[arg(long, default_value = "mmlu")]
    pub general: String,
    /// Directory of the named data sets (default: $MATHNEURO_DATA, else ../shared/data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Work directory (STATS, journal, report) [default: OUT.tune/ beside the output].
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Calibration samples per set, with replacement.
    #[arg(long, default_value_t = 100, value_parser = crate::cli::args::samples_value)]
    pub samples: usize,
    /// Tokens kept per calibration text.
    #[arg(long, default_value_t = crate::calibrate::DEFAULT_MAX_TOKENS, value_parser = crate::cli::args::tokens_value)]
    pub max_tokens: usize,
    /// Seed of calibration, splits and the candidate draw.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Candidates searched; the paper's ×1.1 K=5 % is always the first.
    #[arg(long, default_value_t = 8, value_parser = crate::cli::args::positive_count)]
    pub candidates: usize,
    /// Candidate dev answers to spend over all rounds (the base's are extra): with 8
    /// candidates and 3 rounds, 768 gives 8 × 32, 4 × 64 and 2 × 128 questions.
    #[arg(long, default_value_t = 768, value_parser = crate::cli::args::count_value)]
    pub budget: usize,
    /// Successive-halving rounds.
    #[arg(long, default_value_t = 3, value_parser = crate::cli::args::positive_count)]
    pub rounds: usize,
    /// Dev questions of the gold-solution NLL guard.
    #[arg(long, default_value_t = 16, value_parser = crate::cli::args::count_value)]
    pub guard_items: usize,
    /// Discard a candidate whose dev NLL per token rises by more than this.
    #[arg(long, default_value_t = 0.05)]
    pub guard_nll: f64,
    /// Dev items per general task (MMLU dev, ARC-Easy dev half).
    #[arg(long, default_value_t = 100, value_parser = crate::cli::args::count_value)]
    pub general_items: usize,
    /// Largest fall of general dev accuracy the winner may have (absolute, e.g. 0.03 = 3 points).
    #[arg(long, default_value_t = 0.03)]
    pub general_tolerance: f64,
    /// Dev answers the winner must get right beyond the base's on the last round's questions.
    #[arg(long, default_value_t = 1)]
    pub min_gain: i64,
    /// Test questions of the task (the first N of a seeded shuffle); `all` for every one
    /// (GSM8K's 1 319, MATH's 500, a task file's test half).
    #[arg(long, default_value = "200")]
    pub test_items: String,
    /// Test items per general task (MMLU test, ARC-Easy test half).
    #[arg(long, default_value_t = 200, value_parser = crate::cli::args::count_value)]
    pub test_general_items: usize,
    /// Most new tokens per answer (the harness: 256).
    #[arg(long, default_value_t = crate::eval::gsm8k_prompt::MAX_NEW_TOKENS, value_parser = crate::cli::args::tokens_value)]
    pub max_new_tokens: usize,
    /// Questions decoding at once.
    #[arg(long, default_value_t = crate::eval::DEFAULT_PARALLEL, value_parser = crate::cli::args::parallel_value)]
    pub parallel: usize,
    /// Wrap calibration texts and the task's prompts (few-shot as multi-turn) in the model's
    /// chat template, for instruction-tuned models.
    #[arg(long)]
    pub chat: bool,
    /// Continue an interrupted run from the journal in the work directory.
    #[arg(long)]
    pub resume: bool,
    /// Overwrite the output and start the work directory over.
    #[arg(long)]
    pub force: bool,
    /// Stop after this many evaluation chunks (to test --resume).
    #[arg(long, hide = true, value_parser = crate::cli::args::count_value)]
    pub stop_after: Option<usize>,
    /// Threads and progress (the flags every long-running command shares).
    #[command(flatten)]
    pub shared: crate::cli::args::Shared,
}

/// The built-in tasks `tune --task` may optimise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskArg {
    /// GSM8K CoT, 8-shot.
    Gsm8k,
    /// MATH, Minerva 4-shot.
    Math,
}

/// Runs `mathneuro tune`.
pub fn run(a: TuneArgs) -> anyhow::Result<ExitCode> {
    let test_items = match a.test_items.as_str() {
        "all" => None,
        n => Some(n.parse::<usize>().map_err(|_| anyhow::anyhow!("--test-items {n}: give a number or `all`"))?),
    };
    anyhow::ensure!(a.candidates > 0 && a.rounds > 0, "--candidates and --rounds must be at least 1");
    anyhow::ensure!(a.general_tolerance >= 0.0 && a.guard_nll.is_finite(), "--general-tolerance must be ≥ 0 and --guard-nll finite");
    let objective = match (&a.task_file, a.task) {
        (Some(f), _) => Objective::task_file(f)?,
        (None, TaskArg::Gsm8k) => Objective::Gsm8k,
        (None, TaskArg::Math) => Objective::Math,
    };
    let opts = TuneOptions {
        objective,
        work: a.work.clone().unwrap_or_else(|| side_path(&a.output, ".tune")),
        data_dir: resolve_data_dir(a.data_dir.as_deref())?,
        model: a.model,
        output: a.output,
        math: a.math,
        general: a.general,
        samples: a.samples,
        max_tokens: a.max_tokens,
        seed: a.seed,
        candidates: a.candidates,
        budget: a.budget,
        rounds: a.rounds,
        guard_items: a.guard_items,
        guard_nll: a.guard_nll,
        general_items: a.general_items,
        general_tolerance: a.general_tolerance,
        min_gain: a.min_gain,
        test_items,
        test_general_items: a.test_general_items,
        max_new_tokens: a.max_new_tokens,
        parallel: a.parallel,
        threads: a.shared.threads(),
        resume: a.resume,
        force: a.force,
        stop_after: a.stop_after,
        verbose: a.shared.progress(),
        chat: a.chat,
    };
    let report = tune(&opts)?;
    print!("{}", report.markdown());
    eprintln!("report: {}", opts.work.join("report.md").display());
    Ok(ExitCode::SUCCESS)
}
