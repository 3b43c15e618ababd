//! `mathneuro stats merge|imatrix|show`: add STATS files of one model, export one as a
//! llama.cpp importance matrix, or summarize one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::io::Write as _;

use anyhow::Context as _;

use crate::gguf::{MetaType, MetaValue};
use crate::safety::OutputPlan;
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
        /// Overwrite an existing output (never an input).
        #[arg(long)]
        force: bool,
    },
    /// Write a STATS file as a llama.cpp imatrix GGUF (for llama-quantize --imatrix).
    Imatrix {
        /// The STATS file.
        input: PathBuf,
        /// The imatrix file.
        #[arg(short, long)]
        output: PathBuf,
        /// Overwrite an existing output (never the input).
        #[arg(long)]
        force: bool,
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

/// Refuses a merge that names one file twice (same inode: the same path, a link) or two files of
/// identical content (a copy): either would count the same samples twice.
fn refuse_repeated(inputs: &[PathBuf]) -> anyhow::Result<()> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let mut seen: Vec<((u64, u64), [u8; 32], &PathBuf)> = Vec::new();
    for p in inputs {
        let meta = std::fs::metadata(p).with_context(|| format!("reading STATS file {}", p.display()))?;
        let id = (meta.dev(), meta.ino());
        let bytes = crate::safety::inputs::read_regular(p).with_context(|| format!("reading STATS file {}", p.display()))?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some((sid, _, first)) = seen.iter().find(|(sid, d, _)| *sid == id || *d == digest) {
            let how = if *sid == id { "is the same file as" } else { "has the same content as" };
            anyhow::bail!("{} {how} {}: merging it again would count the same samples twice", p.display(), first.display());
        }
        seen.push((id, digest, p));
    }
    Ok(())
}

fn load(path: &Path) -> anyhow::Result<ActivationStats> {
    ActivationStats::load(path).with_context(|| format!("reading STATS file {}", path.display()))
}

/// Runs `mathneuro stats …`.
pub fn run(cmd: StatsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StatsCommand::Merge { inputs, output, force } => {
            inputs.iter().fold(OutputPlan::new("stats merge", force), |plan, p| plan.input(p)).file(&output).check()?;
            refuse_repeated(&inputs)?;
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
        StatsCommand::Imatrix { input, output, force } => {
            OutputPlan::new("stats imatrix", force).input(&input).file(&output).check()?;
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
