//! `mathneuro inspect`. (TODO)

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `mathneuro inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The GGUF model.
    pub model: PathBuf,
}

/// Runs `mathneuro inspect`.
pub fn run(_args: InspectArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mathneuro inspect` is not implemented yet")
}
