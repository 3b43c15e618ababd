//! `mathneuro sensitivity MASTER --type Q3_K_M -o SENS.json [--math STATS] [--general STATS]
//! [--importance …] [--direction down|up] [--only NAMES] [--tokens N]`: the measured
//! sensitivity of every movable tensor of a stock mix (math KLD against the master when that
//! tensor alone goes a step lower or higher; `quantize::sensitivity`), written as the file
//! `quantize --allocation sensitivity=FILE` reads. See docs/quantize.md.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::data::dir::resolve_data_dir;
use crate::eval::engine::{DEFAULT_N_CTX, EngineOptions};
use crate::eval::kld_run::KldProbe;
use crate::gguf::GgufFile;
use crate::quantize::Importance;
use crate::quantize::sensitivity::{Direction, Measure, SensitivityOptions, measure_sensitivity};
use crate::stats::ActivationStats;
use crate::surgery::Mix;

/// Arguments of `mathneuro sensitivity`.
#[derive(Debug, clap::Args)]
pub struct SensitivityArgs {
    /// The float master (e.g. made by `quantize MODEL --type F16`).
    pub master: PathBuf,
    /// The stock mix the probes depart from: Q4_K_M, Q3_K_M or Q2_K.
    #[arg(long = "type", value_name = "MIX", value_parser = crate::cli::quantize::parse_mix)]
    pub mix: Mix,
    /// The sensitivity file to write (JSON object tensor → score).
    #[arg(short, long, value_name = "FILE.json")]
    pub output: PathBuf,
    /// Math STATS (for --importance math or mix).
    #[arg(long, value_name = "STATS")]
    pub math: Option<PathBuf>,
    /// General STATS (for --importance general or mix).
    #[arg(long, value_name = "STATS")]
    pub general: Option<PathBuf>,
    /// Importance every tensor is encoded with, as in `quantize` [default: general with
    /// --general, else math with --math, else none].
    #[arg(long)]
    pub importance: Option<Importance>,
    /// Each probe moves its tensor a step down (what a demotion costs) or up (what a
    /// promotion gains).
    #[arg(long, default_value = "down")]
    pub direction: Direction,
    /// Probe only tensors whose name contains one of these (comma-separated, e.g. ffn_down).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Tokens of held-out math text scored per probe (taken from the end of the held-out
    /// GSM8K train records, so `kld`'s default texts are not used).
    #[arg(long, default_value_t = 2048, value_parser = crate::cli::args::tokens_value)]
    pub tokens: usize,
    /// The held-out texts' draw and windows (as for `kld`).
    #[command(flatten)]
    pub held_out: crate::cli::kld::HeldOutArgs,
    /// Also write the full report (every probe's types, bytes, KLD) as JSON here.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Overwrite existing outputs (never an input).
    #[arg(long)]
    pub force: bool,
    /// Write each score made conservative by Z paired standard errors of its per-token
    /// differences (a step down costs at least Z·se, a step up gains its score less Z·se), so an
    /// allocation does not trade on differences the measure cannot tell from 0; 0 writes the raw
    /// scores. The report keeps score, stderr and the number written.
    #[arg(long, default_value_t = 0.0, value_name = "Z")]
    pub noise_floor: f64,
    /// Continue an interrupted run from its journal (OUT.partial.jsonl: every measure is
    /// journaled as it finishes; the journal is removed when the file is written).
    #[arg(long)]
    pub resume: bool,
    /// Data directory (default: $MATHNEURO_DATA, else ../shared/data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Threads and progress (the flags every long-running command shares).
    #[command(flatten)]
    pub shared: crate::cli::args::Shared,
}

/// Runs `mathneuro sensitivity`.
pub fn run(args: SensitivityArgs) -> anyhow::Result<ExitCode> {
    let mut plan = crate::safety::OutputPlan::new("sensitivity", args.force).input(&args.master).file(&args.output);
    for p in [&args.math, &args.general].into_iter().flatten() {
        plan = plan.input(p);
    }
    if let Some(r) = &args.report {
        plan = plan.file(r);
    }
    let journal = crate::quantize::sensitivity::journal_path(&args.output);
    plan = if args.resume && journal.is_file() { plan.input(&journal) } else { plan.file(&journal).kept() };
    plan.check()?;
    let (draw, windows) = args.held_out.resolve()?;
    let data_dir = resolve_data_dir(args.data_dir.as_deref())?;
    let master = GgufFile::open(&args.master).with_context(|| format!("reading master {}", args.master.display()))?;
    let load = |p: &Option<PathBuf>| p.as_ref().map(|p| ActivationStats::load(p).with_context(|| format!("reading STATS {}", p.display()))).transpose();
    let (math, general) = (load(&args.math)?, load(&args.general)?);
    let importance = args.importance.unwrap_or(match (&general, &math) {
        (Some(_), _) => Importance::General,
        (None, Some(_)) => Importance::Math,
        _ => Importance::None,
    });
    let mut engine = EngineOptions { n_ctx: DEFAULT_N_CTX.max(windows.window as u32 * 2), ..EngineOptions::default() };
    engine.threads = args.shared.threads();
    let probe = KldProbe::math_tail(&args.master, &data_dir, draw, args.tokens, windows, args.held_out.start_token, engine)?;
    if args.shared.progress() {
        eprintln!("sensitivity: math KLD on {}", probe.describe());
    }
    let opts = SensitivityOptions {
        mix: args.mix,
        importance,
        direction: args.direction,
        only: args.only.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        output: args.output.clone(),
        report: args.report.clone(),
        force: args.force,
        progress: args.shared.progress(),
        resume: args.resume,
        measure_key: format!("{}, threads {:?}", probe.describe(), args.shared.threads()),
        noise_floor: args.noise_floor,
    };
    let report = measure_sensitivity(&master, math.as_ref(), general.as_ref(), &opts, |p| probe.token_divergences(p).map(Measure::of_items).map_err(|e| e.to_string()))?;
    let mut ranked: Vec<_> = report.probes.iter().collect();
    ranked.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.tensor.cmp(&b.tensor)));
    println!("wrote {}: {} probes ({} {:?}), math KLD of the stock mix {:.6} on {}", args.output.display(), ranked.len(), report.mix, report.direction, report.baseline, probe.describe());
    for p in ranked.iter().take(5) {
        println!("  {} {} → {}: score {:+.6}", p.tensor, p.stock_type, p.probe_type, p.score);
    }
    Ok(ExitCode::SUCCESS)
}
