//! Arguments shared by every command, so each is written once: counts that must be at least 1
//! (`--samples`), the one `--threads` rule (at least 1; omitted = every core), [`Shared`], the
//! flags every long-running command takes, and the upper bounds of every count that sizes an
//! allocation (issue 27 case 6): a count past its bound is a clap error naming the flag and the
//! maximum, never a "capacity overflow" panic or an abort on a huge allocation.

/// The most calibration texts one run may draw (`--samples`).
pub const MAX_SAMPLES: usize = 1_000_000;
/// The most tokens per text or answer (`--max-tokens`, `--max-new-tokens`, `--ctx-size`); no
/// model we read has a longer context.
pub const MAX_TOKENS: usize = 1 << 20;
/// The most of any other count (items, candidates, rounds, resamples, chunks).
pub const MAX_COUNT: usize = 100_000_000;
/// The most sequences decoded at once (`--parallel`, `--pack`): llama.cpp's `LLAMA_MAX_SEQ`.
pub const MAX_PARALLEL: usize = 256;

/// Parses a count in `min..=max` (clap `value_parser`).
fn bounded(s: &str, min: usize, max: usize) -> Result<usize, String> {
    let n = match s.trim().parse::<u128>() {
        Ok(n) => n,
        Err(e) => return Err(e.to_string()),
    };
    if n < min as u128 {
        return Err(format!("must be at least {min}"));
    }
    if n > max as u128 {
        return Err(format!("must be at most {max}"));
    }
    Ok(n as usize)
}

/// `--samples`: 1 ..= [`MAX_SAMPLES`].
pub fn samples_value(s: &str) -> Result<usize, String> {
    bounded(s, 1, MAX_SAMPLES)
}

/// Token counts (`--max-tokens`, `--max-new-tokens`, `--micro-batch`): 1 ..= [`MAX_TOKENS`].
pub fn tokens_value(s: &str) -> Result<usize, String> {
    bounded(s, 1, MAX_TOKENS)
}

/// `--ctx-size`: 1 ..= [`MAX_TOKENS`].
pub fn ctx_value(s: &str) -> Result<u32, String> {
    bounded(s, 1, MAX_TOKENS).map(|n| n as u32)
}

/// Counts that may be 0 (`--checkpoint-every`, `--fewshot`): 0 ..= [`MAX_COUNT`].
pub fn count_value(s: &str) -> Result<usize, String> {
    bounded(s, 0, MAX_COUNT)
}

/// Counts of at least 1 (`--limit`, `--candidates`, `--bootstrap`, …): 1 ..= [`MAX_COUNT`].
pub fn positive_count(s: &str) -> Result<usize, String> {
    bounded(s, 1, MAX_COUNT)
}

/// `experiments --seeds`: 1 ..= 1000 (each seed is a calibration).
pub fn seeds_value(s: &str) -> Result<usize, String> {
    bounded(s, 1, 1000)
}

/// Sequences at once (`--parallel`, `--pack`): 1 ..= [`MAX_PARALLEL`].
pub fn parallel_value(s: &str) -> Result<usize, String> {
    bounded(s, 1, MAX_PARALLEL)
}

/// Parses a count that must be at least 1 (clap `value_parser`).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses `--threads N` for every command: 1 ≤ N ≤ 4096 (clap `value_parser`).
pub fn threads_value(s: &str) -> Result<usize, String> {
    bounded(s, 1, 4096).map_err(|e| if s.trim() == "0" { "must be at least 1 (omit --threads to use every core)".into() } else { e })
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

    #[test]
    fn counts_past_their_bound_name_the_maximum() {
        assert_eq!(samples_value("18446744073709551615").unwrap_err(), "must be at most 1000000");
        assert_eq!(samples_value("99999999999999999999999").unwrap_err(), "must be at most 1000000");
        assert_eq!(tokens_value("4000000000").unwrap_err(), format!("must be at most {MAX_TOKENS}"));
        assert_eq!(samples_value(&MAX_SAMPLES.to_string()), Ok(MAX_SAMPLES));
        assert_eq!(count_value("0"), Ok(0));
        assert!(positive_count("0").is_err() && parallel_value("257").is_err() && ctx_value("8").is_ok());
    }
}
