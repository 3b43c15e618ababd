//! `mathneuro stats merge|imatrix|show`: add STATS files of one model, export one as a
//! llama.cpp importance matrix, or summarize one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::io::Write as _;

use anyhow::Context as _;

use crate::gguf::{MetaType, MetaValue};
use crate::stats::merge::{MergeError, merge};
use crate::stats::{ActivationStats, imatrix, show};

/// Subcommands of `mathneuro stats`.
#[derive(Debug, clap::Subcommand)]
pub enum StatsCommand {
    /// Add STATS files measured on the same model (e.g. the shards of one calibration).
    Merge {
        /// The STATS files.
        #[arg(required = true, num_args = 2..)]
        inputs: Vec<PathBuf>,
        /// The merged STATS file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Write a STATS file as a llama.cpp imatrix GGUF (for llama-quantize --imatrix).
    Imatrix {
        /// The STATS file.
        input: PathBuf,
        /// The imatrix file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Per weight: width, tokens, min/median/max of norm_sum.
    Show {
        /// The STATS file.
        file: PathBuf,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn load(path: &Path) -> anyhow::Result<ActivationStats> {
    ActivationStats::load(path).with_context(|| format!("reading STATS file {}", path.display()))
}

/// Runs `mathneuro stats …`.
pub fn run(cmd: StatsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StatsCommand::Merge { inputs, output } => {
            let parts = inputs.iter().map(|p| load(p)).collect::<anyhow::Result<Vec<_>>>()?;
            let merged = merge(&parts).map_err(|e| match &e {
                MergeError::OtherModel { index, .. } | MergeError::Shape { index, .. } => {
                    anyhow::anyhow!("{}: cannot be merged with {}: {e}", inputs[*index].display(), inputs[0].display())
                }
                MergeError::Empty => anyhow::anyhow!("{e}"),
            })?;
            let names = inputs.iter().map(|p| MetaValue::string(p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned()))).collect();
            let extra = vec![
                ("mathneuro.merged_from".to_string(), MetaValue::Array { elem: MetaType::String, items: names }),
                ("mathneuro.tool_version".to_string(), MetaValue::string(env!("CARGO_PKG_VERSION"))),
            ];
            merged.save(&output, &extra).with_context(|| format!("writing {}", output.display()))?;
            println!("wrote {}: {} samples, {} tokens from {} files", output.display(), merged.samples, merged.tokens, inputs.len());
        }
        StatsCommand::Imatrix { input, output } => {
            let stats = load(&input)?;
            imatrix::write_imatrix(&stats, &output).with_context(|| format!("writing {}", output.display()))?;
            println!("wrote {}: {} weights, {} chunks", output.display(), stats.weights.len(), stats.samples);
        }
        StatsCommand::Show { file, json } => {
            let summary = show::summarize(&load(&file)?);
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
            } else {
                write!(out, "{summary}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
