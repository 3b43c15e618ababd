//! `mathneuro inspect MODEL [--json]`: describe a GGUF model (see `crate::inspect`). The report
//! goes to stdout; a file that cannot be read is an error naming the file and the problem.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::gguf::GgufFile;
use crate::inspect::InspectReport;

/// Arguments of `mathneuro inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The model: a GGUF path (a split's first shard), ollama:NAME[:TAG], publisher/model (LM
    /// Studio) or hf:org/name[/file.gguf].
    pub model: PathBuf,
    /// Print the report as one JSON object (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `mathneuro inspect`.
pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    // The GGUF error already names the file, the field and the offset (and the OS error).
    let model = crate::modelref::resolve(&args.model)?;
    let file = GgufFile::open(&model.path).map_err(|e| anyhow::anyhow!("cannot inspect the model: {e}"))?;
    let report = InspectReport::new(&file);
    let text = if args.json { report.to_json() + "\n" } else { report.to_text() };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).context("writing the report to stdout")?;
    out.flush().context("writing the report to stdout")?;
    Ok(ExitCode::SUCCESS)
}
