//! `mathneuro apply`. (TODO)

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `mathneuro apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The GGUF model.
    pub model: PathBuf,
}

/// Runs `mathneuro apply`.
pub fn run(_args: ApplyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mathneuro apply` is not implemented yet")
}
