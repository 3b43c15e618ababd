//! `mathneuro eval MODEL [--compare OTHER | --compare-run DIR] --tasks LIST [--limit N] [--seed S]
//! [--out DIR]`: evaluates one model, or two on identical items with a paired comparison (the
//! second one's finished evaluation read back with --compare-run), prints the Markdown
//! report to stdout and writes report.json, report.md and `<task>.jsonl` into `--out`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::data::dir::resolve_data_dir;
use crate::eval::engine::DEFAULT_N_CTX;
use crate::eval::gsm8k_prompt::MAX_NEW_TOKENS;
use crate::eval::{DEFAULT_BOOTSTRAP, DEFAULT_PARALLEL, DEFAULT_SEED, EngineOptions, EvalOptions, Gsm8kMode, Task, Windows};
use crate::safety::OutputPlan;

/// Arguments of `mathneuro eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The model: a GGUF path (a split's first shard), ollama:NAME[:TAG], publisher/model (LM
    /// Studio) or hf:org/name[/file.gguf] (Hugging Face cache).
    pub model: PathBuf,
    /// A second model to compare with MODEL on identical items (same forms as MODEL).
    #[arg(long, value_name = "OTHER")]
    pub compare: Option<PathBuf>,
    /// The --out directory of a finished `eval` of a second model with the same tasks and
    /// settings: compare MODEL with it on identical items without evaluating it again (its file
    /// need not be here — e.g. evaluated on another machine, or deleted since).
    #[arg(long, value_name = "DIR", conflicts_with = "compare")]
    pub compare_run: Option<PathBuf>,
    /// Comma-separated tasks: gsm8k, gsm8k_nll, gsm8k_ppl, math (the 500 MATH test problems of
    /// the seeded split, Minerva 4-shot; see docs/math.md), mmlu, race, hellaswag, arc_easy,
    /// arc_challenge, piqa, boolq, wikitext, or all [default:
    /// gsm8k,gsm8k_nll,mmlu,hellaswag,arc_easy,piqa,boolq,wikitext; none with --task-file].
    #[arg(long)]
    pub tasks: Option<String>,
    /// Your own task, one JSON object per line: generation items {"question": .., "answer": 42
    /// or "text"} (exact-match and flexible-extract, as GSM8K) or multiple-choice items
    /// {"question": .., "choices": [..], "answer": INDEX} (acc, acc_norm). Reported as task
    /// `task_file`; see docs/task-file.md.
    #[arg(long, value_name = "FILE.jsonl")]
    pub task_file: Option<PathBuf>,
    /// Wrap generation prompts (GSM8K, MATH, task-file generation items) in the model's chat template
    /// (few-shot as multi-turn), for instruction-tuned models.
    #[arg(long)]
    pub chat: bool,
    /// Reuse the items already in DIR/items/ (written as each chunk of items finishes) and
    /// evaluate only the rest; the settings must be the same.
    #[arg(long)]
    pub resume: bool,
    /// Write the per-item files with the sha256 of each prompt, output and gold answer instead
    /// of the text (index, extracted answers and scores stay): a journal that holds no benchmark
    /// text, to move to another machine, and that --resume continues.
    #[arg(long)]
    pub redact_items: bool,
    /// Items per chunk of the per-item files (default 64; 4 × --parallel for generation).
    #[arg(long, hide = true, value_parser = crate::cli::args::positive_count)]
    pub items_per_chunk: Option<usize>,
    /// Evaluate a seeded random subset of at most N items per task (documents for wikitext,
    /// articles for race).
    #[arg(long, value_name = "N", value_parser = crate::cli::args::count_value)]
    pub limit: Option<usize>,
    /// Evaluate only the items at these positions of each task's data file, in file order (END
    /// exclusive), e.g. 0..200 — one slice of a run too long for one sitting (the journal of
    /// `protocol --gsm8k-range` with the same range and settings).
    #[arg(long, value_name = "START..END", value_parser = crate::eval::subset::parse_range, conflicts_with = "limit")]
    pub range: Option<std::ops::Range<usize>>,
    /// Seed of the --limit subset and of the bootstrap intervals.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// MMLU exemplars from the dev split (the harness uses 0 or 5).
    #[arg(long, default_value_t = 0, value_parser = crate::cli::args::count_value)]
    pub fewshot: usize,
    /// Output directory for report.json, report.md and <task>.jsonl.
    #[arg(long, value_name = "DIR", default_value = "eval-out")]
    pub out: PathBuf,
    /// Data directory (default: $MATHNEURO_DATA, else ../shared/data or ./shared/data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// GSM8K questions decoding at once.
    #[arg(long, default_value_t = DEFAULT_PARALLEL, value_parser = crate::cli::args::parallel_value)]
    pub parallel: usize,
    /// Decode GSM8K one question at a time with its whole prompt (benchmark baseline).
    #[arg(long, hide = true)]
    pub naive: bool,
    /// Most new tokens per GSM8K or MATH answer (the harness uses 256 for both).
    #[arg(long, default_value_t = MAX_NEW_TOKENS, value_parser = crate::cli::args::tokens_value)]
    pub max_new_tokens: usize,
    /// Perplexity window in tokens.
    #[arg(long, default_value_t = Windows::DEFAULT.window, value_parser = crate::cli::args::at_least_one)]
    pub ppl_window: usize,
    /// Perplexity stride in tokens.
    #[arg(long, default_value_t = Windows::DEFAULT.stride, value_parser = crate::cli::args::at_least_one)]
    pub ppl_stride: usize,
    /// KV cache size in tokens (shared by all sequences).
    #[arg(long, default_value_t = DEFAULT_N_CTX, value_parser = crate::cli::args::ctx_value)]
    pub ctx_size: u32,
    /// Bootstrap resamples for the 95% intervals.
    #[arg(long, default_value_t = DEFAULT_BOOTSTRAP, value_parser = crate::cli::args::count_value)]
    pub bootstrap: usize,
    /// Overwrite an existing output (never an input).
    #[arg(long)]
    pub force: bool,
    /// Threads and progress (the flags every long-running command shares).
    #[command(flatten)]
    pub shared: crate::cli::args::Shared,
}

impl EvalArgs {
    /// What `eval` reads and writes: the model(s), the task file and the data files of the
    /// tasks; the `--out` directory and every file eval writes there (`eval::outputs`).
    pub fn plan(&self) -> anyhow::Result<OutputPlan> {
        let mut plan = OutputPlan::new("eval", self.force).input(&self.model);
        if let Some(other) = &self.compare {
            plan = plan.input(other);
        }
        let options = self.options()?;
        if let Some(dir) = &self.compare_run {
            for f in crate::eval::finished::inputs(dir, &options.all_tasks()) {
                plan = plan.input(f);
            }
        }
        for task in options.tasks.iter().copied().chain(self.task_file.is_some().then_some(Task::TaskFile)) {
            for f in crate::eval::content::task_files(&options.data_dir, task, self.task_file.as_deref()) {
                plan = plan.input(f);
            }
        }
        Ok(crate::eval::outputs::plan(plan, &self.out, self.resume))
    }

    /// The library options these arguments describe.
    pub fn options(&self) -> anyhow::Result<EvalOptions> {
        let tasks = match (&self.tasks, &self.task_file) {
            (Some(list), _) => Task::parse_list(list)?,
            (None, Some(_)) => Vec::new(),
            (None, None) => Task::parse_list(DEFAULT_TASKS)?,
        };
        anyhow::ensure!(!tasks.is_empty() || self.task_file.is_some(), "--tasks names no task");
        anyhow::ensure!(
            self.ppl_stride <= self.ppl_window,
            "--ppl-stride {} is larger than --ppl-window {}: tokens between windows would never be scored; give a stride of at most the window",
            self.ppl_stride,
            self.ppl_window
        );
        if let Some(f) = &self.task_file {
            // A FIFO would block the read forever and /dev/zero fill memory (issue 27 case 5).
            crate::safety::inputs::check_regular(f).with_context(|| format!("--task-file {}", f.display()))?;
        }
        let data_dir = resolve_data_dir(self.data_dir.as_deref())?;
        let mut engine = EngineOptions { n_ctx: self.ctx_size, ..EngineOptions::default() };
        engine.threads = self.shared.threads();
        engine.max_sequences = engine.max_sequences.max(self.parallel);
        let mut options = EvalOptions::new(tasks, data_dir);
        options.limit = self.limit;
        options.range = self.range.clone();
        options.seed = self.seed;
        options.fewshot = self.fewshot;
        options.gsm8k_mode = if self.naive { Gsm8kMode::Naive } else { Gsm8kMode::Batched { parallel: self.parallel.max(1) } };
        options.max_new_tokens = self.max_new_tokens.max(1);
        options.windows = Windows { window: self.ppl_window, stride: self.ppl_stride };
        options.bootstrap = self.bootstrap;
        options.engine = engine;
        options.progress = self.shared.progress();
        options.chat = self.chat;
        options.task_file = self.task_file.clone();
        options.resume = self.resume;
        options.chunk = self.items_per_chunk;
        options.item_text = crate::eval::itemlog::ItemText::of_flag(self.redact_items);
        Ok(options)
    }
}

/// The tasks `eval` runs when `--tasks` is not given.
pub const DEFAULT_TASKS: &str = "gsm8k,gsm8k_nll,mmlu,hellaswag,arc_easy,piqa,boolq,wikitext";

/// Runs `mathneuro eval`.
pub fn run(mut args: EvalArgs) -> anyhow::Result<ExitCode> {
    // Model references (ollama:, LM Studio, hf:) become the files they name first.
    args.model = crate::modelref::resolve(&args.model)?.path;
    args.compare = args.compare.as_deref().map(crate::modelref::resolve).transpose()?.map(|m| m.path);
    args.plan()?.check()?;
    if args.force && !args.resume {
        crate::eval::outputs::clear(&args.out).with_context(|| format!("clearing the earlier evaluation in {}", args.out.display()))?;
    }
    let options = args.options()?;
    let other = match (&args.compare, &args.compare_run) {
        (Some(model), _) => Some(crate::pipeline::Other::Model(model)),
        (None, Some(dir)) => Some(crate::pipeline::Other::Run(dir)),
        (None, None) => None,
    };
    let markdown = crate::pipeline::evaluate(&args.model, other, &options, &args.out)?;
    print_report(&markdown, &args.out)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints an evaluation's Markdown report to stdout and says where its files went.
pub fn print_report(markdown: &str, out: &Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(markdown.as_bytes())?;
    writeln!(stdout, "\nWrote report.json, report.md and per-task .jsonl files to {}", out.display())?;
    Ok(())
}
