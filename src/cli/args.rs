//! Argument rules shared by every command, so each is written once: counts that must be at
//! least 1 (`--samples`) and the one `--threads` rule (at least 1; omitted = every core).

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
