//! `mathneuro experiments`: the paper's experiments on one model (pruning and scaling grids
//! with baselines, data efficiency, seed consistency, the layer map), results in
//! `DIR/results.json`, `DIR/results.md` and SVG plots. See `crate::experiments`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use std::process::ExitCode;

use crate::data::dir::resolve_data_dir;
use crate::experiments::plan::{parse_limits, parse_numbers};
use crate::experiments::{Plan, RunnerOptions, run_experiments};
use crate::safety::OutputPlan;

/// Arguments of `mathneuro experiments`.
#[derive(Debug, clap::Args)]
pub struct ExperimentsArgs {
    /// The model (a path or a reference, as for `inspect`).
    #[arg(default_value = "models/gemma-3-270m-q4_k_m.gguf")]
    pub model: PathBuf,
    /// The smoke-check sizes (10 minutes measured on a quiet 2-core machine) instead of the full grids.
    #[arg(long)]
    pub quick: bool,
    /// Output directory (STATS cache, results, plots).
    #[arg(long, default_value = "experiments-out")]
    pub out: PathBuf,
    /// Directory of the named data sets (default: $MATHNEURO_DATA, else ../shared/data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Math calibration data (as `calibrate --data`, e.g. `math`); MMLU is the general side.
    #[arg(long, default_value = "gsm8k")]
    pub math: String,
    /// Wrap calibration texts and generation prompts (GSM8K, MATH; few-shot as multi-turn) in
    /// the model's chat template, for instruction-tuned models.
    #[arg(long)]
    pub chat: bool,
    /// Threads and progress (the flags every long-running command shares).
    #[command(flatten)]
    pub shared: crate::cli::args::Shared,
    /// Calibration seed of the main masks (experiment 4 compares SEED, SEED+1, …) [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Experiments to run, e.g. `1,2` (default: all five).
    #[arg(long, value_name = "LIST")]
    pub only: Option<String>,
    /// Override: calibration samples per set.
    #[arg(long, value_parser = crate::cli::args::samples_value)]
    pub samples: Option<usize>,
    /// Override: seeds compared in experiment 4.
    #[arg(long, value_parser = crate::cli::args::seeds_value)]
    pub seeds: Option<usize>,
    /// Override: experiment 1's K values (percent), e.g. `1,5,10,15`.
    #[arg(long, value_name = "LIST")]
    pub prune_ks: Option<String>,
    /// Override: experiment 2's K values (percent).
    #[arg(long, value_name = "LIST")]
    pub scale_ks: Option<String>,
    /// Override: experiment 2's factors, e.g. `1.01,1.05,1.1,1.2`.
    #[arg(long, value_name = "LIST")]
    pub scales: Option<String>,
    /// Override: evaluation tasks and items, e.g. `gsm8k_nll=30,arc_easy=60,wikitext=2`.
    #[arg(long, value_name = "LIST")]
    pub limits: Option<String>,
    /// Print the plan and the time estimate, run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only redraw the plots of experiments 1 and 2 from `--out DIR/results.json`.
    #[arg(long)]
    pub replot: bool,
    /// Overwrite an existing output (never an input).
    #[arg(long)]
    pub force: bool,
}

/// The plan the arguments describe.
pub fn plan(args: &ExperimentsArgs) -> anyhow::Result<Plan> {
    let mut plan = if args.quick { Plan::quick() } else { Plan::full() };
    let custom = args.seed.is_some() || args.samples.is_some() || args.seeds.is_some() || args.prune_ks.is_some() || args.scale_ks.is_some() || args.scales.is_some() || args.limits.is_some();
    if custom {
        plan.mode = format!("{} with overrides", plan.mode);
    }
    if let Some(n) = args.samples {
        anyhow::ensure!(n > 0, "--samples must be at least 1");
        plan.samples = n;
    }
    if let Some(seed) = args.seed {
        plan.seed = seed;
    }
    if let Some(n) = args.seeds {
        anyhow::ensure!(n >= 2, "--seeds must be at least 2 (pairs are compared)");
        plan.consistency_seeds = n;
    }
    fn err(flag: &'static str) -> impl Fn(String) -> anyhow::Error {
        move |e| anyhow::anyhow!("{flag}: {e}")
    }
    if let Some(s) = &args.prune_ks {
        plan.prune_ks = parse_numbers(s).map_err(err("--prune-ks"))?;
    }
    if let Some(s) = &args.scale_ks {
        plan.scale_ks = parse_numbers(s).map_err(err("--scale-ks"))?;
    }
    if let Some(s) = &args.scales {
        plan.scales = parse_numbers(s).map_err(err("--scales"))?;
    }
    if let Some(s) = &args.limits {
        plan.tasks = parse_limits(s).map_err(err("--limits"))?;
    }
    if let Some(s) = &args.only {
        let only: Vec<u8> = parse_numbers(s).map_err(err("--only"))?;
        anyhow::ensure!(!only.is_empty() && only.iter().all(|e| (1..=5).contains(e)), "--only: name experiments 1 to 5");
        plan.only = only;
    }
    for k in plan.prune_ks.iter().chain(&plan.scale_ks) {
        anyhow::ensure!(*k > 0.0 && *k <= 100.0, "K = {k} is not a percentage in (0, 100]");
    }
    Ok(plan)
}

/// What `experiments` reads (the model, the calibration and task data) and writes: the `--out`
/// directory with its results and plots (replaced only with `--force`) and its STATS cache
/// (reused).
fn output_plan(args: &ExperimentsArgs, model: &Path, data_dir: &Path, plan: &Plan) -> OutputPlan {
    let mut out = OutputPlan::new("experiments", args.force).input(model);
    for file in ["gsm8k", "mmlu"].into_iter().filter_map(|spec| crate::data::calibration::input_file(spec, Some(data_dir))) {
        out = out.input(file);
    }
    for (task, _) in &plan.tasks {
        for f in crate::eval::content::task_files(data_dir, *task, None) {
            out = out.input(f);
        }
    }
    crate::experiments::outputs::plan(out, &args.out, plan, args.chat)
}

/// Runs `mathneuro experiments`.
pub fn run(args: ExperimentsArgs) -> anyhow::Result<ExitCode> {
    if args.replot {
        for f in crate::experiments::runner::replot(&args.out)? {
            println!("{}", args.out.join(f).display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut plan = plan(&args)?;
    if args.chat {
        plan.mode = format!("{}, chat template", plan.mode);
    }
    if args.dry_run {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        println!("estimated wall time: {:.0} min", plan.estimate_seconds() / 60.0);
        return Ok(ExitCode::SUCCESS);
    }
    let data_dir = resolve_data_dir(args.data_dir.as_deref())?;
    let model = crate::modelref::resolve(&args.model)?.path;
    if args.chat {
        // Refused before any work when the model has no chat template.
        crate::chat::ChatFormat::of_model(&model).with_context(|| format!("--chat: {}", model.display()))?;
    }
    output_plan(&args, &model, &data_dir, &plan).check()?;
    if args.force {
        crate::experiments::outputs::clear(&args.out).with_context(|| format!("clearing the earlier results in {}", args.out.display()))?;
    }
    let opts = RunnerOptions {
        model,
        out: args.out.clone(),
        data_dir,
        math_data: args.math.clone(),
        threads: args.shared.threads(),
        quiet: args.shared.quiet,
        chat: args.chat,
        plan,
    };
    run_experiments(&opts)?;
    println!("{}", std::fs::read_to_string(opts.out.join("results.md")).unwrap_or_default());
    eprintln!("results: {}", opts.out.join("results.json").display());
    Ok(ExitCode::SUCCESS)
}
