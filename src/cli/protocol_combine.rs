//! `mathneuro protocol-combine SLICE_DIR… --out DIR`: adds up the slices of one protocol run
//! (each made by `protocol --gsm8k-range`, possibly on different machines) into the report one
//! run over all their questions would give (`eval::protocol_combine`). Reads only the slices'
//! protocol.json; writes protocol.json, protocol.md and subsets.svg in DIR.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::eval::protocol_combine::Slice;
use crate::safety::OutputPlan;

/// Arguments of `mathneuro protocol-combine`.
#[derive(Debug, clap::Args)]
pub struct ProtocolCombineArgs {
    /// The slices' output directories (each holding the protocol.json of one `--gsm8k-range` run).
    #[arg(required = true, value_name = "SLICE_DIR")]
    pub slices: Vec<PathBuf>,
    /// Output directory of the combined protocol.json, protocol.md and subsets.svg.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace the combined report files already in DIR.
    #[arg(long)]
    pub force: bool,
}

/// Runs `mathneuro protocol-combine`.
pub fn run(args: ProtocolCombineArgs) -> anyhow::Result<ExitCode> {
    let jsons: Vec<PathBuf> = args.slices.iter().map(|d| d.join("protocol.json")).collect();
    let mut plan = OutputPlan::new("protocol-combine", args.force);
    for j in &jsons {
        plan = plan.input(j);
    }
    plan = plan.dir(&args.out);
    for f in super::protocol::REPORT_FILES {
        plan = plan.file(args.out.join(f));
    }
    plan.check()?;
    let mut slices = Vec::new();
    for (dir, json) in args.slices.iter().zip(&jsons) {
        let text = crate::safety::inputs::read_text(json).with_context(|| format!("cannot read {} (is {} a protocol --gsm8k-range output?)", json.display(), dir.display()))?;
        let report: Slice = serde_json::from_str(&text).with_context(|| format!("{}: not a protocol report", json.display()))?;
        slices.push((dir.clone(), report));
    }
    let report = crate::eval::protocol_combine::combine(slices)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let md = super::protocol::write_report(&args.out, &report)?;
    print!("{md}");
    eprintln!("\nWrote protocol.json, protocol.md and subsets.svg to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
