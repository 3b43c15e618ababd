//! `mathneuro mask …`: inspect and compare selection masks written by `apply --save-mask`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::select::maskfile::MaskFile;
use crate::select::overlap::compare;

/// Subcommands of `mathneuro mask`.
#[derive(Debug, clap::Subcommand)]
pub enum MaskCommand {
    /// Jaccard overlap of two masks, per matrix and overall.
    Compare {
        /// First mask file.
        a: PathBuf,
        /// Second mask file.
        b: PathBuf,
        /// Print JSON instead of a markdown table.
        #[arg(long)]
        json: bool,
    },
    /// Selected count per matrix of one mask.
    Show {
        /// The mask file.
        file: PathBuf,
    },
}

/// Runs `mathneuro mask …`.
pub fn run(cmd: MaskCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MaskCommand::Compare { a, b, json } => {
            let ma = MaskFile::load(&a).with_context(|| format!("reading mask {}", a.display()))?;
            let mb = MaskFile::load(&b).with_context(|| format!("reading mask {}", b.display()))?;
            if ma.model_fingerprint != mb.model_fingerprint {
                eprintln!("mathneuro: warning: the masks were selected on different models (fingerprints differ)");
            }
            let (rows, total) = compare(&ma, &mb).with_context(|| format!("comparing {} with {}", a.display(), b.display()))?;
            if json {
                println!("{}", serde_json::json!({ "a": a, "b": b, "per_matrix": rows, "overall": total }));
            } else {
                println!("| matrix | A | B | both | either | Jaccard |\n|---|---|---|---|---|---|");
                for o in rows.iter().chain(std::iter::once(&total)) {
                    println!("| {} | {} | {} | {} | {} | {:.4} |", o.name, o.a, o.b, o.both, o.either, o.jaccard);
                }
            }
        }
        MaskCommand::Show { file } => {
            let m = MaskFile::load(&file).with_context(|| format!("reading mask {}", file.display()))?;
            println!("method {} top-k {}% seed {}\n", m.method, m.top_k_percent, m.seed);
            println!("| matrix | entries | selected | fraction |\n|---|---|---|---|");
            for (name, mask) in &m.masks {
                let n = mask.count();
                println!("| {name} | {} | {n} | {:.4}% |", mask.len(), 100.0 * n as f64 / mask.len().max(1) as f64);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
