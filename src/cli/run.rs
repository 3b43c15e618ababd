//! `mathneuro run`. (TODO)

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `mathneuro run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The GGUF model.
    pub model: PathBuf,
}

/// Runs `mathneuro run`.
pub fn run(_args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mathneuro run` is not implemented yet")
}
