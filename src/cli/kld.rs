//! `mathneuro kld MODEL --master MASTER [--sets math,general] [--tokens N] [--json OUT.json]`:
//! the KL divergence of MODEL from MASTER on held-out math text (GSM8K train records the
//! calibration draw did not use) and general text (WikiText-2 test), as `llama-perplexity
//! --kl-divergence` reports it; see docs/quantize.md.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::data::dir::resolve_data_dir;
use crate::eval::engine::{DEFAULT_N_CTX, EngineOptions};
use crate::eval::kld::DocStart;
use crate::eval::kld_run::{DEFAULT_TOKENS, KldOptions, measure};
use crate::eval::kld_texts::CalibrationDraw;
use crate::eval::perplexity::Windows;
use crate::safety::OutputPlan;

/// Arguments of `mathneuro kld`.
#[derive(Debug, clap::Args)]
pub struct KldArgs {
    /// The model measured (a GGUF path or model reference, as for eval).
    pub model: PathBuf,
    /// The reference model (same vocabulary), e.g. the float master MODEL was quantized from.
    #[arg(long, value_name = "MASTER")]
    pub master: PathBuf,
    /// Comma-separated text sets: math (held-out GSM8K train), general (WikiText-2 test).
    #[arg(long, default_value = "math,general")]
    pub sets: String,
    /// Score this text file instead of the sets, as `llama-perplexity -f FILE --kl-divergence
    /// -c WINDOW` does: the whole file tokenized, cut into contexts of --window tokens, the second
    /// half of each scored (for checking against llama.cpp on the same text).
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// Measure this model too, on the same tokens (the master decoded once), and report the
    /// paired difference MODEL − OTHER with its 95 % interval per text set.
    #[arg(long, value_name = "OTHER")]
    pub against: Option<PathBuf>,
    /// Tokens scored per text set.
    #[arg(long, default_value_t = DEFAULT_TOKENS, value_parser = crate::cli::args::at_least_one)]
    pub tokens: usize,
    /// The held-out texts' draw and windows.
    #[command(flatten)]
    pub held_out: HeldOutArgs,
    /// Also write the report as JSON here.
    #[arg(long, value_name = "FILE.json")]
    pub json: Option<PathBuf>,
    /// Overwrite an existing --json file.
    #[arg(long)]
    pub force: bool,
    /// Data directory (default: $MATHNEURO_DATA, else ../shared/data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Threads and progress (the flags every long-running command shares).
    #[command(flatten)]
    pub shared: crate::cli::args::Shared,
}

/// How the held-out texts are scored, shared by `kld` and `sensitivity`: the calibration draw
/// they must avoid and the perplexity windows.
#[derive(Debug, clap::Args)]
pub struct HeldOutArgs {
    /// The calibration draw the math texts must avoid, SAMPLES:SEED (calibrate's --samples and
    /// --seed; drawn with replacement unless --no-replacement).
    #[arg(long, default_value = "500:42", value_name = "SAMPLES:SEED")]
    pub calibration_draw: String,
    /// The calibration draw was made without replacement.
    #[arg(long)]
    pub no_replacement: bool,
    /// Window in tokens (context included).
    #[arg(long, default_value_t = 512)]
    pub window: usize,
    /// New tokens scored per window after the first.
    #[arg(long, default_value_t = 256)]
    pub stride: usize,
    /// What each held-out document is read after: `always` the model's start token (lm-eval's
    /// rolling log-likelihood), or `vocab`: the start token only where the vocabulary adds one,
    /// as llama.cpp and generation prompts run the model (Qwen2.5 adds none: its documents then
    /// open with their own first token, not scored).
    #[arg(long, value_enum, default_value_t = DocStart::Always)]
    pub start_token: DocStart,
}

impl HeldOutArgs {
    /// The calibration draw and the windows (window ≥ 2, stride in 1..window).
    pub fn resolve(&self) -> anyhow::Result<(CalibrationDraw, Windows)> {
        let window = self.window.max(2);
        Ok((parse_draw(&self.calibration_draw, !self.no_replacement)?, Windows { window, stride: self.stride.clamp(1, window - 1) }))
    }
}

/// Parses `SAMPLES:SEED`.
pub(crate) fn parse_draw(s: &str, replacement: bool) -> anyhow::Result<CalibrationDraw> {
    let (a, b) = s.split_once(':').with_context(|| format!("--calibration-draw `{s}`: expected SAMPLES:SEED, e.g. 500:42"))?;
    let samples = a.trim().parse().with_context(|| format!("--calibration-draw `{s}`: `{a}` is not a number"))?;
    let seed = b.trim().parse().with_context(|| format!("--calibration-draw `{s}`: `{b}` is not a number"))?;
    Ok(CalibrationDraw { samples, seed, replacement })
}

/// Runs `mathneuro kld`.
pub fn run(mut args: KldArgs) -> anyhow::Result<ExitCode> {
    args.model = crate::modelref::resolve(&args.model)?.path;
    args.master = crate::modelref::resolve(&args.master)?.path;
    let mut plan = OutputPlan::new("kld", args.force).input(&args.model).input(&args.master);
    if let Some(t) = &args.text {
        plan = plan.input(t);
    }
    if let Some(a) = &mut args.against {
        *a = crate::modelref::resolve(a)?.path;
        plan = plan.input(a.as_path());
    }
    if let Some(j) = &args.json {
        plan = plan.file(j);
    }
    plan.check()?;
    let (draw, windows) = args.held_out.resolve()?;
    let text_only = args.text.is_some();
    let mut engine = EngineOptions { n_ctx: DEFAULT_N_CTX.max(windows.window as u32 * 2), ..EngineOptions::default() };
    engine.threads = args.shared.threads();
    let opts = KldOptions {
        sets: args.sets.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        tokens: args.tokens,
        text: args.text.clone(),
        against: args.against.clone(),
        draw,
        windows,
        start: args.held_out.start_token,
        // A --text run reads no data set.
        data_dir: if text_only { resolve_data_dir(args.data_dir.as_deref()).unwrap_or_default() } else { resolve_data_dir(args.data_dir.as_deref())? },
        engine,
        progress: args.shared.progress(),
    };
    let report = measure(&args.master, &args.model, &opts)?;
    print!("{}", report.markdown());
    if let Some(j) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        crate::atomic::write_bytes_atomic(j, text.as_bytes()).with_context(|| format!("writing {}", j.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_draw_parses_and_names_the_bad_part() {
        assert_eq!(parse_draw("500:42", true).unwrap(), CalibrationDraw::DEFAULT);
        assert!(format!("{:#}", parse_draw("500", true).unwrap_err()).contains("SAMPLES:SEED"));
        assert!(format!("{:#}", parse_draw("x:1", true).unwrap_err()).contains("`x`"));
    }
}
