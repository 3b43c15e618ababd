//! Command-line interface: the clap definitions of every subcommand and the dispatch to the
//! stage that serves it. Each subcommand's arguments and glue live in their own file.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod apply;
pub mod args;
pub mod calibrate;
pub mod eval;
pub mod experiments;
pub mod inspect;
pub mod kld;
pub mod mask;
pub mod quantize;
pub mod openmp;
pub mod protocol;
pub mod protocol_combine;
pub mod run;
pub mod sensitivity;
pub mod stats;
pub mod tune;

/// MathNeuro "math neurosurgery" for GGUF models, on a CPU.
#[derive(Debug, Parser)]
#[command(name = "mathneuro", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands, in pipeline order.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Describe a GGUF model: architecture, tensors, types, tied output.
    Inspect(inspect::InspectArgs),
    /// Measure per-sample activation norms on calibration texts → STATS.gguf.
    Calibrate(calibrate::CalibrateArgs),
    /// Work with STATS files: merge, show, export as llama.cpp imatrix.
    #[command(subcommand)]
    Stats(stats::StatsCommand),
    /// Select math-specific weights and write a scaled or pruned copy of the model.
    Apply(apply::ApplyArgs),
    /// Quantize a float master to a llama-quantize mix, with importance and an allocation.
    Quantize(quantize::QuantizeArgs),
    /// Measure each tensor's math KLD cost of a step lower (or gain of a step higher) → FILE.json.
    Sensitivity(sensitivity::SensitivityArgs),
    /// Work with selection masks.
    #[command(subcommand)]
    Mask(mask::MaskCommand),
    /// Evaluate a model (optionally against another) on math and general tasks.
    Eval(eval::EvalArgs),
    /// KL divergence of a model from its master on held-out math and general text.
    Kld(kld::KldArgs),
    /// Calibrate, select, rewrite and (optionally) evaluate in one go.
    Run(run::RunArgs),
    /// Reproduce the paper's experiments (pruning/scaling grids, baselines, overlaps) on a model.
    Experiments(experiments::ExperimentsArgs),
    /// Search edits on dev data for one that improves math; test it once on held-out questions.
    Tune(tune::TuneArgs),
    /// The paper's GSM8K protocol (first 200 questions) beside the full paired test, for edits of a model.
    Protocol(protocol::ProtocolArgs),
    /// Add up slices of one protocol run (`protocol --gsm8k-range`, e.g. from several machines).
    ProtocolCombine(protocol_combine::ProtocolCombineArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runs_llama = matches!(cli.command, Command::Calibrate(_) | Command::Eval(_) | Command::Kld(_) | Command::Sensitivity(_) | Command::Run(_) | Command::Experiments(_) | Command::Tune(_) | Command::Protocol(_));
    if runs_llama {
        openmp::exec_with_passive_openmp()?;
    }
    crate::safety::tempfiles::install_signal_cleanup().map_err(|e| anyhow::anyhow!("installing the signal handler: {e}"))?;
    crate::safety::start_command();
    match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Stats(c) => stats::run(c),
        Command::Apply(a) => apply::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Sensitivity(a) => sensitivity::run(a),
        Command::Mask(c) => mask::run(c),
        Command::Eval(a) => eval::run(a),
        Command::Kld(a) => kld::run(a),
        Command::Run(a) => run::run(a),
        Command::Experiments(a) => experiments::run(a),
        Command::Tune(a) => tune::run(a),
        Command::Protocol(a) => protocol::run(a),
        Command::ProtocolCombine(a) => protocol_combine::run(a),
    }
}

/// The message printed for `err`: its context chain joined by `: `, leaving out a cause whose
/// text the message already ends with (error types that print their source and also return it
/// from `source()` would otherwise say `Permission denied (os error 13)` twice).
pub fn error_message(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if message.ends_with(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_printed_once() {
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let gguf = crate::gguf::GgufError::Io { path: "m.gguf".into(), source: io };
        let err = anyhow::Error::new(gguf).context("reading model m.gguf");
        let msg = error_message(&err);
        assert_eq!(msg.matches("ermission denied").count(), 1, "{msg}");
        assert!(msg.starts_with("reading model m.gguf: m.gguf: "), "{msg}");
    }
}
