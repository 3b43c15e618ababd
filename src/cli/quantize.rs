//! `mathneuro quantize MASTER --type Q3_K_M -o OUT.gguf [--math STATS] [--general STATS]
//! [--importance none|math|general|mix=W] [--allocation stock|mathneuro|sensitivity=FILE]`:
//! quantize a float master to a llama-quantize mix, optionally moving tensors a type up or down
//! at the stock size (see `quantize` and docs/quantize.md). `--type F16|BF16|F32` instead writes
//! the float master of a quantized model (every target dequantized, `surgery::dequant`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::gguf::{GgmlType, GgufFile};
use crate::quantize::protect::Protect;
use crate::quantize::{Allocation, Gptq, Importance, QuantizeOptions, Scores, quantize};
use crate::stats::ActivationStats;
use crate::surgery::Mix;

/// Arguments of `mathneuro quantize`.
#[derive(Debug, clap::Args)]
pub struct QuantizeArgs {
    /// The float master (targets in F16/BF16/F32), e.g. made by `--type F16` from a quantized model.
    pub master: PathBuf,
    /// The stock mix: Q4_K_M, Q3_K_M or Q2_K (llama-quantize's per-tensor recipe); or F16, BF16
    /// or F32 to write the float master of a quantized MASTER (every target dequantized, other
    /// tensors copied).
    #[arg(long = "type", value_name = "MIX", value_parser = parse_target)]
    pub mix: Target,
    /// The output GGUF.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Math STATS (matched to the master by tensor name and shape).
    #[arg(long, value_name = "STATS")]
    pub math: Option<PathBuf>,
    /// General STATS.
    #[arg(long, value_name = "STATS")]
    pub general: Option<PathBuf>,
    /// Importance for ggml's quantizer: none, math, general or mix=W (W = the math share)
    /// [default: general with --general, else math with --math, else none].
    #[arg(long)]
    pub importance: Option<Importance>,
    /// Allocation: stock (the mix as is), mathneuro (rank tensors by the share of their entries
    /// MathNeuro selects at --top-k), sensitivity=FILE.json (tensor → score, ranked) or
    /// knapsack=DOWN.json[,UP.json] (`sensitivity` files spent by the byte: a promotion is made
    /// only when it gains more than its demotions lose; --promote-share does not apply).
    #[arg(long, default_value = "stock")]
    pub allocation: String,
    /// K in percent for --allocation mathneuro.
    #[arg(long, default_value_t = 5.0)]
    pub top_k: f64,
    /// Share of the ranked tensors that are candidates for a step up (0..=1).
    #[arg(long, default_value_t = 0.25)]
    pub promote_share: f64,
    /// Entry-level protection: multiply the importance of the entries MathNeuro selects at
    /// --protect-top-k by this factor (> 0), encoding row by row (needs --math and --general).
    #[arg(long, value_name = "FACTOR")]
    pub protect: Option<f32>,
    /// K in percent of the selection --protect weights.
    #[arg(long, default_value_t = 5.0, value_name = "K")]
    pub protect_top_k: f64,
    /// Error-compensated rounding (GPTQ into ggml's block types): capture each target's input
    /// covariance H = Σ x xᵀ on these calibration texts (the forms of `calibrate --data`) with
    /// forward passes through --gptq-model, then round every column so the layer's output on
    /// those texts moves least. Same types and size; H takes ≈ 2·Σ n_in² bytes (1.3 GB on a
    /// 0.5B, 4.9 GB on a 1.5B), captured in several passes when that exceeds --gptq-memory.
    #[arg(long, value_name = "DATA", conflicts_with = "protect")]
    pub gptq: Option<String>,
    /// Texts drawn for --gptq.
    #[arg(long, default_value_t = 128, value_parser = crate::cli::args::positive_count)]
    pub gptq_samples: usize,
    /// Seed of the --gptq draw.
    #[arg(long, default_value_t = 42)]
    pub gptq_seed: u64,
    /// Draw the --gptq texts without replacement.
    #[arg(long)]
    pub gptq_no_replacement: bool,
    /// GPTQ's damping: this share of H's mean diagonal is added to it.
    #[arg(long, default_value_t = crate::quantize::gptq::DEFAULT_DAMP)]
    pub gptq_damp: f64,
    /// Memory for H in GiB: beyond it, H is captured in several forward passes, one group of
    /// consecutive tensors each (same bytes, more time) [default: half the available memory].
    #[arg(long, value_name = "GIB")]
    pub gptq_memory: Option<f64>,
    /// The model whose forward passes give H [default: MASTER].
    #[arg(long, value_name = "MODEL")]
    pub gptq_model: Option<PathBuf>,
    /// Data directory for --gptq's named sets (default: $MATHNEURO_DATA, else ../shared/data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Overwrite an existing output (never an input).
    #[arg(long)]
    pub force: bool,
    /// Also write the report (types, bytes, moves) as JSON here.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Threads and progress (the flags every long-running command shares).
    #[command(flatten)]
    pub shared: crate::cli::args::Shared,
}

/// What `--type` asks for: a stock mix, or a float master.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// A llama-quantize mix.
    Mix(Mix),
    /// Every target dequantized to this float type.
    Float(GgmlType),
}

pub(crate) fn parse_mix(s: &str) -> Result<Mix, String> {
    Mix::parse(s).ok_or_else(|| format!("`{s}`: expected Q4_K_M, Q3_K_M or Q2_K"))
}

fn parse_target(s: &str) -> Result<Target, String> {
    match crate::surgery::edit::parse_type(s.trim()).filter(|t| crate::surgery::edit::is_float(*t)) {
        Some(t) => Ok(Target::Float(t)),
        None => parse_mix(s).map(Target::Mix).map_err(|_| format!("`{s}`: expected Q4_K_M, Q3_K_M, Q2_K, or F16, BF16, F32 for a float master")),
    }
}

/// `--type F16|BF16|F32`: writes the float master of `args.master` (no STATS, no allocation).
fn write_master(args: &QuantizeArgs, ty: GgmlType) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.math.is_none() && args.general.is_none() && args.importance.is_none() && args.allocation.trim() == "stock" && args.report.is_none() && args.protect.is_none() && args.gptq.is_none(),
        "--type {ty} writes a float master: --math, --general, --importance, --allocation, --protect, --gptq and --report do not apply"
    );
    crate::safety::OutputPlan::new("quantize", args.force).input(&args.master).file(&args.output).check()?;
    let model = GgufFile::open(&args.master).with_context(|| format!("reading {}", args.master.display()))?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.shared.threads()).build().context("starting worker threads")?;
    pool.install(|| crate::surgery::dequant::write_float_master(&model, &args.output, ty)).with_context(|| format!("writing {}", args.output.display()))?;
    let bytes = std::fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
    println!("wrote {} ({bytes} bytes): the float master of {}, {} targets as {ty}", args.output.display(), args.master.display(), crate::model::target_weights(&model).len());
    Ok(ExitCode::SUCCESS)
}

/// Parses `--allocation`.
fn parse_allocation(s: &str, top_k: f64, share: f64) -> anyhow::Result<Option<Allocation>> {
    let scores = match s.trim() {
        "stock" => return Ok(None),
        "mathneuro" => Scores::MathNeuro { top_k_percent: top_k },
        other => match (other.strip_prefix("sensitivity="), other.strip_prefix("knapsack=")) {
            (Some(p), _) if !p.is_empty() => Scores::Sensitivity(PathBuf::from(p)),
            (_, Some(p)) if !p.is_empty() && !p.starts_with(',') && !p.ends_with(',') => match p.split_once(',') {
                Some((down, up)) => Scores::Knapsack { down: down.into(), up: Some(up.into()) },
                None => Scores::Knapsack { down: p.into(), up: None },
            },
            _ => anyhow::bail!("`--allocation {s}`: expected stock, mathneuro, sensitivity=FILE.json or knapsack=DOWN.json[,UP.json]"),
        },
    };
    anyhow::ensure!((0.0..=1.0).contains(&share), "--promote-share {share}: must be in 0..=1");
    Ok(Some(Allocation { scores, promote_share: share }))
}

/// `--gptq DATA`: H of every target of `master` on the drawn texts, through --gptq-model (or the
/// master), in as many passes as --gptq-memory needs (the first made now).
fn capture(args: &QuantizeArgs, spec: &str, master: &GgufFile) -> anyhow::Result<Gptq> {
    anyhow::ensure!(args.gptq_damp.is_finite() && args.gptq_damp > 0.0 && args.gptq_damp <= 1.0, "--gptq-damp {}: must be in (0, 1]", args.gptq_damp);
    let budget = match args.gptq_memory {
        Some(g) if g.is_finite() && g > 0.0 => (g * (1u64 << 30) as f64) as u64,
        Some(g) => anyhow::bail!("--gptq-memory {g}: must be a number of GiB above 0"),
        None => crate::pipeline::hessians::default_budget(),
    };
    let model = args.gptq_model.as_ref().unwrap_or(&args.master);
    let set = crate::data::calibration::load(spec, args.data_dir.as_deref()).with_context(|| format!("--gptq {spec}"))?;
    let sampling = crate::pipeline::Sampling { replacement: !args.gptq_no_replacement, ..crate::pipeline::Sampling::new(args.gptq_samples, args.gptq_seed) };
    let opts = crate::calibrate::CalibrateOptions { threads: args.shared.threads(), ..crate::calibrate::CalibrateOptions::default() };
    let weights = crate::pipeline::hessians::gptq_weights(master);
    let passes = crate::pipeline::HessianPasses::plan(model, set.clone(), sampling, opts, &weights, budget, args.shared.progress())?;
    if passes.groups() > 1 && args.shared.progress() {
        eprintln!("--gptq: H in {} passes of at most {:.1} GiB each (--gptq-memory)", passes.groups(), budget as f64 / (1u64 << 30) as f64);
    }
    let source = format!("H from {} ({} texts, seed {}, {} tokens) through {}", set.name, args.gptq_samples, args.gptq_seed, passes.tokens, model.display());
    Ok(Gptq { hessians: Box::new(passes), damp: args.gptq_damp, source })
}

/// Runs `mathneuro quantize`.
pub fn run(args: QuantizeArgs) -> anyhow::Result<ExitCode> {
    let mix = match args.mix {
        Target::Float(ty) => return write_master(&args, ty),
        Target::Mix(m) => m,
    };
    let allocation = parse_allocation(&args.allocation, args.top_k, args.promote_share)?;
    let score_files: Vec<PathBuf> = match allocation.as_ref().map(|a| &a.scores) {
        Some(Scores::Sensitivity(p)) => vec![p.clone()],
        Some(Scores::Knapsack { down, up }) => std::iter::once(down.clone()).chain(up.clone()).collect(),
        _ => Vec::new(),
    };
    let mut plan = crate::safety::OutputPlan::new("quantize", args.force).input(&args.master).file(&args.output);
    for p in [&args.math, &args.general].into_iter().flatten().chain(&score_files) {
        plan = plan.input(p);
    }
    if let Some(r) = &args.report {
        plan = plan.file(r);
    }
    if let Some(spec) = &args.gptq {
        plan = plan.input(args.gptq_model.as_ref().unwrap_or(&args.master));
        if let Some(f) = crate::cli::calibrate::data_inputs(spec, args.data_dir.as_deref()) {
            plan = plan.input(f);
        }
    }
    plan.check()?;
    let master = GgufFile::open(&args.master).with_context(|| format!("reading master {}", args.master.display()))?;
    let load = |p: &Option<PathBuf>| p.as_ref().map(|p| ActivationStats::load(p).with_context(|| format!("reading STATS {}", p.display()))).transpose();
    let (math, general) = (load(&args.math)?, load(&args.general)?);
    let importance = args.importance.unwrap_or(match (&general, &math) {
        (Some(_), _) => Importance::General,
        (None, Some(_)) => Importance::Math,
        _ => Importance::None,
    });
    let protect = match args.protect {
        Some(factor) => {
            anyhow::ensure!(factor.is_finite() && factor > 0.0, "--protect {factor}: the factor must be a number above 0");
            anyhow::ensure!(args.protect_top_k > 0.0 && args.protect_top_k <= 100.0, "--protect-top-k {}: must be in (0, 100]", args.protect_top_k);
            Some(Protect { top_k_percent: args.protect_top_k, factor })
        }
        None => None,
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.shared.threads()).build().context("starting worker threads")?;
    let gptq = args.gptq.as_ref().map(|spec| pool.install(|| capture(&args, spec, &master))).transpose()?.map(std::sync::Arc::new);
    let opts = QuantizeOptions { mix, importance, allocation, protect, gptq, output: args.output.clone(), force: args.force, progress: args.shared.progress() };
    let report = pool.install(|| quantize(&master, math.as_ref(), general.as_ref(), &opts))?;
    let ex = &report.exchange;
    println!(
        "wrote {} ({} bytes): {} from {}, importance {}, allocation {}, protection {}, gptq {}; tensor bytes {} (stock {}, {:+.3} %), {} promoted, {} demoted",
        report.output.display(),
        report.file_bytes,
        report.mix,
        report.input.display(),
        report.importance,
        report.allocation,
        report.protect,
        report.gptq,
        ex.bytes,
        ex.stock_bytes,
        100.0 * (ex.bytes as f64 / ex.stock_bytes.max(1) as f64 - 1.0),
        ex.promoted.len(),
        ex.demoted.len()
    );
    if let Some(f) = ex.forecast {
        println!("knapsack forecast (if the tensors' effects add up): gains {:.6}, losses {:.6}, net {:+.6} math KLD", f.gain, f.loss, f.loss - f.gain);
    }
    if let Some(r) = &args.report {
        crate::atomic::write_bytes_atomic(r, serde_json::to_string_pretty(&report)?.as_bytes()).with_context(|| format!("writing {}", r.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_parses_and_names_the_forms() {
        assert_eq!(parse_allocation("stock", 5.0, 0.25).unwrap(), None);
        let a = parse_allocation("mathneuro", 5.0, 0.25).unwrap().unwrap();
        assert_eq!(a.scores, Scores::MathNeuro { top_k_percent: 5.0 });
        assert!(matches!(parse_allocation("sensitivity=s.json", 5.0, 0.1).unwrap().unwrap().scores, Scores::Sensitivity(_)));
        assert_eq!(parse_allocation("knapsack=d.json,u.json", 5.0, 0.1).unwrap().unwrap().scores, Scores::Knapsack { down: "d.json".into(), up: Some("u.json".into()) });
        assert_eq!(parse_allocation("knapsack=d.json", 5.0, 0.1).unwrap().unwrap().scores, Scores::Knapsack { down: "d.json".into(), up: None });
        assert!(parse_allocation("knapsack=", 5.0, 0.1).is_err() && parse_allocation("knapsack=d.json,", 5.0, 0.1).is_err());
        assert!(format!("{:#}", parse_allocation("best", 5.0, 0.25).unwrap_err()).contains("stock, mathneuro"));
        assert!(parse_allocation("mathneuro", 5.0, 2.0).is_err());
        assert_eq!(parse_mix("q3_k_m"), Ok(Mix::Q3KM));
        assert!(parse_mix("Q5_K_S").is_err());
        assert_eq!(parse_target("f16"), Ok(Target::Float(GgmlType::F16)));
        assert_eq!(parse_target("Q2_K"), Ok(Target::Mix(Mix::Q2K)));
        assert!(parse_target("Q8_0").unwrap_err().contains("F16, BF16, F32"));
    }
}
