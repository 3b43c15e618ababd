//! Arguments shared by every command, so each is written once: counts that must be at least 1
//! (`--samples`), the one `--threads` rule (at least 1; omitted = every core) and [`Shared`], the
//! flags every long-running command takes.

/// Parses a count that must be at least 1 (clap `value_parser`).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses `--threads N` for every command: N ≥ 1 (clap `value_parser`).
pub fn threads_value(s: &str) -> Result<usize, String> {
    at_least_one(s).map_err(|e| if s.trim() == "0" { "must be at least 1 (omit --threads to use every core)".into() } else { e })
}

/// The thread count a command uses: `--threads N`, else every core.
pub fn threads(arg: Option<usize>) -> usize {
    arg.unwrap_or_else(crate::calibrate::driver::default_threads)
}

/// The flags every long-running command shares (`calibrate`, `apply`, `eval`, `run`, `tune`,
/// `experiments`), defined once and flattened into each: `--threads N` and `--quiet`/`-q`
/// (alias `--no-progress`). `--seed`, `--chat` and `--data-dir` are per command (their
/// defaults and help differ), with the same names everywhere; `tests/interface.rs` checks the set.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Shared {
    /// CPU threads [default: all cores].
    #[arg(long, value_name = "N", value_parser = threads_value)]
    pub threads: Option<usize>,
    /// No progress bars or progress lines on stderr (results still go to stdout).
    #[arg(short, long, visible_alias = "no-progress")]
    pub quiet: bool,
}

impl Shared {
    /// The thread count: `--threads N`, else every core.
    pub fn threads(&self) -> usize {
        threads(self.threads)
    }

    /// Whether to show progress (no `--quiet`).
    pub fn progress(&self) -> bool {
        !self.quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_refused_with_the_fix() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(at_least_one("0").is_err() && at_least_one("x").is_err());
        assert!(threads_value("0").unwrap_err().contains("omit --threads"));
        assert!(threads(None) >= 1);
    }
}
