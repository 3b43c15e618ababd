//! `mathneuro eval`. (TODO)

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `mathneuro eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The GGUF model.
    pub model: PathBuf,
}

/// Runs `mathneuro eval`.
pub fn run(_args: EvalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mathneuro eval` is not implemented yet")
}
