//! `mathneuro stats …`. (TODO)

use std::path::PathBuf;
use std::process::ExitCode;

/// Subcommands of `mathneuro stats`.
#[derive(Debug, clap::Subcommand)]
pub enum StatsCommand {
    /// Placeholder.
    Show {
        /// The file.
        file: PathBuf,
    },
}

/// Runs `mathneuro stats …`.
pub fn run(_cmd: StatsCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`mathneuro stats` is not implemented yet")
}
