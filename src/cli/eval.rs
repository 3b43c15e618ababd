//! `mathneuro eval MODEL [--compare OTHER] --tasks LIST [--limit N] [--seed S] [--out DIR]`:
//! evaluates one model, or two on identical items with a paired comparison, prints the Markdown
//! report to stdout and writes report.json, report.md and `<task>.jsonl` into `--out`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::data::dir::resolve_data_dir;
use crate::eval::{self, EngineOptions, EvalOptions, Gsm8kMode, Task, Windows};
use crate::safety::OutputPlan;

/// Arguments of `mathneuro eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The GGUF model.
    pub model: PathBuf,
    /// A second model to compare with MODEL on identical items.
    #[arg(long, value_name = "OTHER")]
    pub compare: Option<PathBuf>,
    /// Comma-separated tasks: gsm8k, gsm8k_nll, gsm8k_ppl, mmlu, race, hellaswag, arc_easy,
    /// arc_challenge, piqa, boolq, wikitext, or all.
    #[arg(long, default_value = "gsm8k,gsm8k_nll,mmlu,hellaswag,arc_easy,piqa,boolq,wikitext")]
    pub tasks: String,
    /// Evaluate a seeded random subset of at most N items per task (documents for wikitext,
    /// articles for race).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Seed of the --limit subset and of the bootstrap intervals.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// MMLU exemplars from the dev split (the harness uses 0 or 5).
    #[arg(long, default_value_t = 0)]
    pub fewshot: usize,
    /// Output directory for report.json, report.md and <task>.jsonl.
    #[arg(long, value_name = "DIR", default_value = "eval-out")]
    pub out: PathBuf,
    /// Data directory (default: $MATHNEURO_DATA, else ../shared/data or ./shared/data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// llama.cpp threads (default: all available cores).
    #[arg(long, value_parser = crate::cli::args::threads_value)]
    pub threads: Option<usize>,
    /// GSM8K questions decoding at once.
    #[arg(long, default_value_t = 32)]
    pub parallel: usize,
    /// Decode GSM8K one question at a time with its whole prompt (benchmark baseline).
    #[arg(long, hide = true)]
    pub naive: bool,
    /// Most new tokens per GSM8K answer (the harness uses 256).
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Perplexity window in tokens.
    #[arg(long, default_value_t = 1024)]
    pub ppl_window: usize,
    /// Perplexity stride in tokens.
    #[arg(long, default_value_t = 512)]
    pub ppl_stride: usize,
    /// KV cache size in tokens (shared by all sequences).
    #[arg(long, default_value_t = 8192)]
    pub ctx_size: u32,
    /// Bootstrap resamples for the 95% intervals.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Do not draw progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

impl EvalArgs {
    /// The arguments `mathneuro eval MODEL` gets with every option at its default (taken from
    /// the clap definitions, so `run --eval` and `eval` cannot drift apart).
    pub fn defaults(model: PathBuf) -> EvalArgs {
        use clap::{Args as _, FromArgMatches as _};
        let cmd = EvalArgs::augment_args(clap::Command::new("eval"));
        let matches = cmd.get_matches_from([std::ffi::OsString::from("eval"), model.into_os_string()]);
        EvalArgs::from_arg_matches(&matches).expect("defaults parse")
    }

    /// What `eval` reads and writes: the model(s) and the `--out` directory. The directory is
    /// eval's own (its report files are replaced on every run); it must not be a file.
    pub fn plan(&self) -> OutputPlan {
        let plan = OutputPlan::new("eval", false).input(&self.model);
        match &self.compare {
            Some(other) => plan.input(other),
            None => plan,
        }
        .dir(&self.out)
    }

    /// The library options these arguments describe.
    pub fn options(&self) -> anyhow::Result<EvalOptions> {
        let tasks = Task::parse_list(&self.tasks)?;
        anyhow::ensure!(!tasks.is_empty(), "--tasks names no task");
        let data_dir = resolve_data_dir(self.data_dir.as_deref())?;
        let mut engine = EngineOptions { n_ctx: self.ctx_size, ..EngineOptions::default() };
        engine.threads = crate::cli::args::threads(self.threads);
        engine.max_sequences = engine.max_sequences.max(self.parallel);
        let mut options = EvalOptions::new(tasks, data_dir);
        options.limit = self.limit;
        options.seed = self.seed;
        options.fewshot = self.fewshot;
        options.gsm8k_mode = if self.naive { Gsm8kMode::Naive } else { Gsm8kMode::Batched { parallel: self.parallel.max(1) } };
        options.max_new_tokens = self.max_new_tokens.max(1);
        options.windows = Windows { window: self.ppl_window, stride: self.ppl_stride };
        options.bootstrap = self.bootstrap;
        options.engine = engine;
        options.progress = !self.no_progress;
        Ok(options)
    }
}

/// Runs `mathneuro eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    args.plan().check()?;
    // Both models are read by the GGUF reader before the first is evaluated, so a bad OTHER
    // fails now, with the reader's reason, not after the whole base evaluation.
    for model in std::iter::once(&args.model).chain(&args.compare) {
        crate::model::check_loadable(model).with_context(|| format!("cannot evaluate {}", model.display()))?;
    }
    let options = args.options()?;
    let base = eval::evaluate(&args.model, &options).with_context(|| format!("evaluating {}", args.model.display()))?;
    let markdown = match &args.compare {
        None => {
            eval::write_outputs(&args.out, &base, None)?;
            eval::report::render_markdown(&base)
        }
        Some(other_path) => {
            let other = eval::evaluate(other_path, &options).with_context(|| format!("evaluating {}", other_path.display()))?;
            let comparison = eval::compare_reports(&base, &other, options.bootstrap, options.seed)?;
            eval::write_outputs(&args.out, &base, Some(&comparison))?;
            eval::report::render_comparison_markdown(&comparison)
        }
    };
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(markdown.as_bytes())?;
    writeln!(stdout, "\nWrote report.json, report.md and per-task .jsonl files to {}", args.out.display())?;
    Ok(ExitCode::SUCCESS)
}
