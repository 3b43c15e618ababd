//! Command-line interface: the clap definitions of every subcommand and the dispatch to the
//! stage that serves it. Each subcommand's arguments and glue live in their own file.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod apply;
pub mod calibrate;
pub mod eval;
pub mod experiments;
pub mod inspect;
pub mod mask;
pub mod openmp;
pub mod run;
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
    /// Work with selection masks.
    #[command(subcommand)]
    Mask(mask::MaskCommand),
    /// Evaluate a model (optionally against another) on math and general tasks.
    Eval(eval::EvalArgs),
    /// Calibrate, select, rewrite and (optionally) evaluate in one go.
    Run(run::RunArgs),
    /// Reproduce the paper's experiments (pruning/scaling grids, baselines, overlaps) on a model.
    Experiments(experiments::ExperimentsArgs),
    /// Search edits on dev data for one that improves math; test it once on held-out questions.
    Tune(tune::TuneArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runs_llama = matches!(cli.command, Command::Calibrate(_) | Command::Eval(_) | Command::Run(_) | Command::Experiments(_) | Command::Tune(_));
    if runs_llama {
        if let Some(code) = openmp::rerun_with_passive_openmp()? {
            return Ok(code);
        }
    }
    match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Stats(c) => stats::run(c),
        Command::Apply(a) => apply::run(a),
        Command::Mask(c) => mask::run(c),
        Command::Eval(a) => eval::run(a),
        Command::Run(a) => run::run(a),
        Command::Experiments(a) => experiments::run(a),
        Command::Tune(a) => tune::run(a),
    }
}
