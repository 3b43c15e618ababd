//! `mathneuro protocol BASE EDIT… --out DIR [--resume]`: the paper's GSM8K protocol (the first
//! 200 test questions) beside the full paired test (all 1 319), from one evaluation of each model,
//! plus the general tasks; every answer journaled per chunk under `DIR/items/<model>/` so a
//! stopped run continues with `--resume`. Several EDITs (e.g. five calibration draws) are also
//! averaged the way the paper's code averages its repeats. `--gsm8k-range START..END` evaluates
//! one file-order slice, so a run too long for one machine's session is split into slices that
//! `protocol-combine` adds up (the numbers depend only on the slices' paired 2×2 tables).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;

use crate::data::dir::resolve_data_dir;
use crate::eval::protocol::{PairTable, Paired, ProtocolSettings, analyse, paper_average, tables};
use crate::eval::protocol_report::{Coverage, EditResult, ProtocolReport, markdown, subsets_svg};
use crate::eval::report::{EvalReport, TaskResult};
use crate::eval::{DEFAULT_BOOTSTRAP, DEFAULT_SEED, EngineOptions, EvalOptions, Task};
use crate::safety::OutputPlan;

/// Arguments of `mathneuro protocol`.
#[derive(Debug, clap::Args)]
pub struct ProtocolArgs {
    /// The base model (a GGUF path or model reference, as for `eval`).
    pub base: PathBuf,
    /// One or more edited models of BASE (several: e.g. one per calibration draw, averaged as
    /// the paper's code averages its five repeats).
    #[arg(required = true, value_name = "EDIT")]
    pub edits: Vec<PathBuf>,
    /// Output directory: protocol.json, protocol.md, subsets.svg and items/<model>/<task>.jsonl.
    #[arg(long, value_name = "DIR", default_value = "protocol-out")]
    pub out: PathBuf,
    /// Continue a stopped run in DIR: answers already journaled there are not computed again.
    #[arg(long)]
    pub resume: bool,
    /// Replace an existing DIR's protocol files (without --resume, they are removed first).
    #[arg(long)]
    pub force: bool,
    /// GSM8K test questions (default: all 1 319; a smaller N is a seeded random subset, so the
    /// paper slice is then not the paper's questions — for quick checks only).
    #[arg(long, value_name = "N", conflicts_with = "gsm8k_range")]
    pub gsm8k_items: Option<usize>,
    /// Evaluate only the GSM8K test questions at these positions in file order (END exclusive),
    /// e.g. 0..200 (the paper's questions), then 200..700, …: one slice of the full paired test,
    /// for runs longer than one machine's session; `protocol-combine` adds slices up. A slice
    /// that does not start at 0 has no paper row of its own.
    #[arg(long, value_name = "START..END", value_parser = crate::eval::subset::parse_range)]
    pub gsm8k_range: Option<Range<usize>>,
    /// General tasks evaluated beside GSM8K (comma-separated eval task names, or "none").
    #[arg(long, default_value = "mmlu,arc_easy")]
    pub general_tasks: String,
    /// Items per general task (a seeded random subset, as `eval --limit`).
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub general_items: usize,
    /// Questions of the paper's protocol (its lm-eval `limit`): the first N in file order.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub paper_n: usize,
    /// Random subsets of --paper-n questions drawn from the full paired run.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub subsets: usize,
    /// Seed of the general-task subsets, the random subsets and the bootstrap.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Data directory (default: $MATHNEURO_DATA, else ../shared/data or ./shared/data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Wrap GSM8K prompts in the model's chat template (instruction-tuned models).
    #[arg(long)]
    pub chat: bool,
    /// Most new tokens per GSM8K answer (the harness uses 256).
    #[arg(long, default_value_t = crate::eval::gsm8k_prompt::MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// Journal answers under items/ as sha256 of prompt, output and gold answer instead of text
    /// (as `eval --redact-items`): a journal to move and continue elsewhere.
    #[arg(long)]
    pub redact_items: bool,
    /// Threads and progress (the flags every long-running command shares).
    #[command(flatten)]
    pub shared: crate::cli::args::Shared,
}

/// The files `protocol` writes in DIR besides items/.
pub(crate) const REPORT_FILES: [&str; 3] = ["protocol.json", "protocol.md", "subsets.svg"];

impl ProtocolArgs {
    fn settings(&self) -> ProtocolSettings {
        ProtocolSettings { paper_n: self.paper_n, draws: self.subsets, resamples: DEFAULT_BOOTSTRAP, seed: self.seed }
    }

    fn general_tasks(&self) -> anyhow::Result<Vec<Task>> {
        if self.general_tasks == "none" {
            return Ok(Vec::new());
        }
        let tasks = Task::parse_list(&self.general_tasks)?;
        anyhow::ensure!(!tasks.contains(&Task::Gsm8k), "--general-tasks: gsm8k is evaluated by the protocol itself; name only general tasks");
        Ok(tasks)
    }

    /// Refuses the run before any work: an output that is an input, a DIR holding an earlier
    /// run without --resume or --force, too few questions for the paper slice.
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.paper_n > 0, "--paper-n must be at least 1");
        anyhow::ensure!(self.subsets > 0, "--subsets must be at least 1");
        anyhow::ensure!(self.max_new_tokens > 0 && self.max_new_tokens <= 4096, "--max-new-tokens must be in 1..=4096");
        if let Some(n) = self.gsm8k_items {
            anyhow::ensure!(n >= self.paper_n, "--gsm8k-items {n} is smaller than --paper-n {}: the paper slice needs that many questions", self.paper_n);
        }
        let mut plan = OutputPlan::new("protocol", true).input(&self.base);
        for e in &self.edits {
            plan = plan.input(e);
        }
        plan.dir(&self.out).check()?;
        let earlier = self.out.join("items").exists() || REPORT_FILES.iter().any(|f| self.out.join(f).exists());
        if earlier && !self.resume && !self.force {
            anyhow::bail!("{}: holds an earlier protocol run; pass --resume to continue it or --force to replace it", self.out.display());
        }
        Ok(())
    }

    fn options(&self, tasks: Vec<Task>, limit: Option<usize>, label: &str) -> anyhow::Result<EvalOptions> {
        let mut options = EvalOptions::new(tasks, resolve_data_dir(self.data_dir.as_deref())?);
        options.engine = EngineOptions { threads: self.shared.threads(), ..EngineOptions::default() };
        options.limit = limit;
        if options.tasks == [Task::Gsm8k] {
            options.range = self.gsm8k_range.clone();
        }
        options.seed = self.seed;
        options.max_new_tokens = self.max_new_tokens;
        options.chat = self.chat;
        options.progress = self.shared.progress();
        options.items_dir = Some(self.out.join("items").join(label));
        // The directory is this run's own (checked above): items found there are this run's.
        options.resume = true;
        options.item_text = crate::eval::itemlog::ItemText::of_flag(self.redact_items);
        Ok(options)
    }
}

/// One model's evaluation: GSM8K and the general tasks, and the wall seconds it took.
struct Evaluated {
    gsm8k: TaskResult,
    general: Option<EvalReport>,
    seconds: f64,
}

fn evaluate(args: &ProtocolArgs, model: &Path, label: &str) -> anyhow::Result<Evaluated> {
    crate::model::check_loadable(model).with_context(|| format!("cannot evaluate {}", model.display()))?;
    let t0 = Instant::now();
    if args.shared.progress() {
        eprintln!("protocol: evaluating {} ({label})", model.display());
    }
    let gsm = crate::eval::evaluate(model, &args.options(vec![Task::Gsm8k], args.gsm8k_items, label)?).with_context(|| format!("evaluating {} on GSM8K", model.display()))?;
    let tasks = args.general_tasks()?;
    let general = if tasks.is_empty() {
        None
    } else {
        Some(crate::eval::evaluate(model, &args.options(tasks, Some(args.general_items), label)?).with_context(|| format!("evaluating {} on the general tasks", model.display()))?)
    };
    let gsm8k = gsm.tasks.into_iter().next().context("the GSM8K evaluation returned no task")?;
    Ok(Evaluated { gsm8k, general, seconds: t0.elapsed().as_secs_f64() })
}

/// What decides a GSM8K answer besides the model and the slice (slices must agree on it).
fn gsm8k_conditions(args: &ProtocolArgs) -> anyhow::Result<String> {
    let mut options = args.options(vec![Task::Gsm8k], args.gsm8k_items, "base")?;
    options.range = None;
    Ok(options.key("(the model)", Task::Gsm8k)?)
}

/// Per binary metric of GSM8K, the pairs of (file index, correct) of base and edit.
fn pairs(base: &TaskResult, edit: &TaskResult) -> anyhow::Result<Vec<(String, Paired)>> {
    let mut out = Vec::new();
    for (m, spec) in base.metrics.iter().enumerate().filter(|(_, s)| s.binary) {
        let take = |t: &TaskResult| t.items.iter().map(|i| (i.index, i.scores[m].0 > 0.5)).collect::<Vec<_>>();
        out.push((spec.name.clone(), Paired::new(take(base), take(edit))?));
    }
    Ok(out)
}

pub(crate) fn write_report(out: &Path, report: &ProtocolReport) -> anyhow::Result<String> {
    let md = markdown(report);
    let files: [(&str, String); 3] = [("protocol.json", serde_json::to_string_pretty(report)?), ("protocol.md", md.clone()), ("subsets.svg", subsets_svg(report))];
    for (name, text) in files {
        let path = out.join(name);
        crate::atomic::write_bytes_atomic(&path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(md)
}

/// Runs `mathneuro protocol`.
pub fn run(mut args: ProtocolArgs) -> anyhow::Result<ExitCode> {
    args.base = crate::modelref::resolve(&args.base)?.path;
    args.edits = args.edits.iter().map(|e| crate::modelref::resolve(e).map(|m| m.path)).collect::<Result<_, _>>()?;
    args.check()?;
    args.general_tasks()?;
    if args.force && !args.resume {
        for f in REPORT_FILES {
            let _ = std::fs::remove_file(args.out.join(f));
        }
        let items = args.out.join("items");
        if items.exists() {
            std::fs::remove_dir_all(&items).with_context(|| format!("cannot remove the earlier run's {}", items.display()))?;
        }
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let base = evaluate(&args, &args.base, "base")?;
    let settings = args.settings();
    let from_start = args.gsm8k_range.as_ref().is_none_or(|r| r.start == 0);
    let mut edits = Vec::new();
    let mut per_metric: Vec<(String, Vec<Option<PairTable>>)> = Vec::new();
    for (k, path) in args.edits.iter().enumerate() {
        let e = evaluate(&args, path, &format!("edit{}", k + 1))?;
        let mut gsm8k = Vec::new();
        for (metric, p) in pairs(&base.gsm8k, &e.gsm8k)? {
            let (full, paper) = tables(&p, args.paper_n, from_start);
            gsm8k.push(analyse(&metric, &full, paper.as_ref(), &settings));
            match per_metric.iter_mut().find(|(m, _)| *m == metric) {
                Some((_, v)) => v.push(paper),
                None => per_metric.push((metric, vec![paper])),
            }
        }
        let general = match (&base.general, &e.general) {
            (Some(b), Some(o)) => crate::eval::compare_reports(b, o, DEFAULT_BOOTSTRAP, args.seed)?.tasks,
            _ => Vec::new(),
        };
        let sha256 = crate::eval::content::file_sha256(path)?;
        edits.push(EditResult { model: path.clone(), gsm8k, general, wall_seconds: e.seconds, sha256 });
    }
    let paper_average = if edits.len() >= 2 {
        per_metric.iter().filter_map(|(m, ts)| ts.iter().copied().collect::<Option<Vec<_>>>().and_then(|ts| paper_average(m, &ts))).collect()
    } else {
        Vec::new()
    };
    let report = ProtocolReport {
        base: args.base.clone(),
        base_wall_seconds: base.seconds,
        gsm8k_n: base.gsm8k.n,
        general_n: base.general.as_ref().map(|_| args.general_items),
        settings,
        edits,
        paper_average,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        coverage: Coverage {
            base_sha256: crate::eval::content::file_sha256(&args.base)?,
            gsm8k_available: base.gsm8k.n_available,
            gsm8k_range: args.gsm8k_range.as_ref().map(|r| (r.start, r.end.min(base.gsm8k.n_available))),
            gsm8k_conditions: gsm8k_conditions(&args)?,
            combined_from: Vec::new(),
        },
    };
    let md = write_report(&args.out, &report)?;
    print!("{md}");
    eprintln!("\nWrote protocol.json, protocol.md, subsets.svg and items/ to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
