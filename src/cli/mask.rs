//! `mathneuro mask …`. (TODO)

use std::path::PathBuf;
use std::process::ExitCode;

/// Subcommands of `mathneuro mask`.
#[derive(Debug, clap::Subcommand)]
pub enum MaskCommand {
    /// Placeholder.
    Show {
        /// The file.
        file: PathBuf,
    },
}

/// Runs `mathneuro mask …`.
pub fn run(_cmd: MaskCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mathneuro mask` is not implemented yet")
}
