//! `mathneuro calibrate`. (TODO)

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `mathneuro calibrate`.
#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// The GGUF model.
    pub model: PathBuf,
}

/// Runs `mathneuro calibrate`.
pub fn run(_args: CalibrateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mathneuro calibrate` is not implemented yet")
}
