//! `mathneuro run MODEL`: the whole method in one command. Calibrates on a math set and a
//! general set with one loaded model, selects the math-specific weights, writes
//! `MODEL-mathneuro.gguf` (+ Modelfile, report, heat map, both STATS files), and with `--eval`
//! compares the new model against the original on the same items.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::calibrate::DEFAULT_MAX_TOKENS;
use crate::cli::apply::SurgeryArgs;
use crate::data::calibration::{self, CalibrationSet};
use crate::data::dir::resolve_data_dir;
use crate::eval::{EvalOptions, Task};
use crate::pipeline::Sampling;
use crate::pipeline::run::{Event, Job, Stages};
use crate::safety::OutputPlan;
use crate::surgery::side_path;

/// Arguments of `mathneuro run`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("change").args(["scale", "prune"])))]
pub struct RunArgs {
    /// The model: a GGUF path (a split's first shard), ollama:NAME[:TAG], publisher/model (LM
    /// Studio) or hf:org/name[/file.gguf] (Hugging Face cache).
    pub model: PathBuf,
    /// Math calibration data (default: gsm8k when a data directory is found, else embedded-math).
    /// Same forms as `calibrate --data` (also `math`: MATH problems + solutions outside the
    /// 500 test problems of `eval --tasks math`). Any other skill works the same
    /// way: `--math code.jsonl --general prose.txt` selects the code-specific weights.
    #[arg(long)]
    pub math: Option<String>,
    /// General calibration data (default: mmlu when a data directory is found, else
    /// embedded-general).
    #[arg(long)]
    pub general: Option<String>,
    /// Directory of the named data sets (default: $MATHNEURO_DATA, else ../shared/data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Samples drawn from each set, with replacement (the paper's code uses 500; 100 gives the
    /// same ≈1.2% selection on Gemma 3 270M in a fifth of the time).
    #[arg(long, default_value_t = 100, value_parser = crate::cli::args::samples_value)]
    pub samples: usize,
    /// Seed for sampling (and for `--method random`).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Tokens kept per calibration text.
    #[arg(long, default_value_t = DEFAULT_MAX_TOKENS, value_parser = crate::cli::args::tokens_value)]
    pub max_tokens: usize,
    /// What to select and how to change it (default ×1.1), and where the result goes.
    #[command(flatten)]
    pub surgery: SurgeryArgs,
    /// After writing, compare OUT against MODEL on these tasks (comma-separated, as `eval
    /// --tasks`), e.g. gsm8k_nll,arc_easy,wikitext.
    #[arg(long, value_name = "TASKS")]
    pub eval: Option<String>,
    /// Items per evaluation task (seeded subset).
    #[arg(long, value_name = "N", value_parser = crate::cli::args::count_value)]
    pub eval_limit: Option<usize>,
    /// Where the evaluation reports go [default: OUT.eval/ beside the output].
    #[arg(long, value_name = "DIR")]
    pub eval_out: Option<PathBuf>,
    /// Wrap calibration texts (and, with --eval, GSM8K prompts) in the model's chat template,
    /// for instruction-tuned models.
    #[arg(long)]
    pub chat: bool,
    /// Threads and progress (the flags every long-running command shares).
    #[command(flatten)]
    pub shared: crate::cli::args::Shared,
}

/// Every file and directory `run` reads and writes, checked before any work: the model and data
/// files; the output with its Modelfile, report, heat map and mask; both STATS files; the
/// evaluation directory.
fn plan(args: &RunArgs, opts: &crate::surgery::ApplyOptions) -> OutputPlan {
    let output = &opts.output;
    let mut plan = crate::surgery::outputs::plan("run", &args.model, opts)
        .file(side_path(output, ".math-stats.gguf"))
        .file(side_path(output, ".general-stats.gguf"));
    for spec in [args.math.as_deref().unwrap_or("gsm8k"), args.general.as_deref().unwrap_or("mmlu")] {
        if let Some(data) = crate::cli::calibrate::data_inputs(spec, args.data_dir.as_deref()) {
            plan = plan.input(data);
        }
    }
    if let Some(tasks) = &args.eval {
        if let (Ok(tasks), Ok(dir)) = (Task::parse_list(tasks), resolve_data_dir(args.data_dir.as_deref())) {
            for f in tasks.into_iter().flat_map(|t| crate::eval::content::task_files(&dir, t, None)) {
                plan = plan.input(f);
            }
        }
        plan = crate::eval::outputs::plan(plan, &eval_dir(args, output), false);
    }
    plan
}

/// Where the evaluation reports go: `--eval-out`, else `OUT.eval/`.
fn eval_dir(args: &RunArgs, output: &Path) -> PathBuf {
    args.eval_out.clone().unwrap_or_else(|| side_path(output, ".eval"))
}

/// The two calibration sets `run` uses: the named ones, else GSM8K vs MMLU from the data
/// directory, else the built-in sets (so the command works with no data at all).
fn calibration_sets(args: &RunArgs) -> anyhow::Result<(CalibrationSet, CalibrationSet)> {
    let have_dir = resolve_data_dir(args.data_dir.as_deref()).is_ok();
    let (math_default, general_default) = if have_dir { ("gsm8k", "mmlu") } else { ("embedded-math", "embedded-general") };
    if !have_dir && (args.math.is_none() || args.general.is_none()) {
        eprintln!("note: no data directory found (--data-dir, $MATHNEURO_DATA, ../shared/data); using the built-in calibration texts");
    }
    let math = calibration::load(args.math.as_deref().unwrap_or(math_default), args.data_dir.as_deref())?;
    let general = calibration::load(args.general.as_deref().unwrap_or(general_default), args.data_dir.as_deref())?;
    Ok((math, general))
}

/// The evaluation `run --eval TASKS` does: `eval`'s defaults, with the run's threads, chat
/// and progress settings.
fn eval_options(args: &RunArgs, tasks: &str, threads: usize) -> anyhow::Result<EvalOptions> {
    let mut options = EvalOptions::new(Task::parse_list(tasks)?, resolve_data_dir(args.data_dir.as_deref())?);
    anyhow::ensure!(!options.tasks.is_empty(), "--eval names no task");
    options.limit = args.eval_limit;
    options.engine.threads = threads;
    options.progress = args.shared.progress();
    options.chat = args.chat;
    Ok(options)
}

/// Runs `mathneuro run`: checks the arguments and the outputs, then hands the job to
/// `pipeline::run`.
pub fn run(mut args: RunArgs) -> anyhow::Result<ExitCode> {
    let resolved = crate::modelref::resolve(&args.model)?;
    let change = args.surgery.change(Some(1.1))?;
    let mut opts = args.surgery.apply_options(&resolved, change, args.seed);
    opts.progress = args.shared.progress();
    args.model = resolved.path.clone();
    let job = Job::new(args.model.clone(), opts, &args.surgery.deliver_options())?;
    let output = job.apply_options().output.clone();
    plan(&args, job.apply_options()).check()?;
    if args.eval.is_some() && args.surgery.force {
        let dir = eval_dir(&args, &output);
        crate::eval::outputs::clear(&dir).with_context(|| format!("clearing the earlier evaluation in {}", dir.display()))?;
    }
    let (math, general) = calibration_sets(&args)?;
    let threads = args.shared.threads();
    let eval = match &args.eval {
        Some(tasks) => Some((eval_options(&args, tasks, threads)?, args.eval_out.clone())),
        None => None,
    };
    let sampling = Sampling { chat: args.chat, ..Sampling::new(args.samples, args.seed) };
    let stages = Stages { math, general, sampling, max_tokens: args.max_tokens, threads, progress: args.shared.progress(), eval };
    let finished = crate::pipeline::run::run(&job, &stages, |event| match event {
        Event::Written(report) => print!("{}", report.markdown()),
        Event::Evaluating => println!("\n## Before / after\n"),
    })?;
    if let Some((markdown, dir)) = &finished.evaluation {
        crate::cli::eval::print_report(markdown, dir)?;
    }
    Ok(ExitCode::SUCCESS)
}
