//! Calibration STATS for the experiments, one file per (set, samples, seed) under
//! `DIR/stats/` (written by `crate::pipeline`, with the provenance every STATS file carries), so
//! a rerun (or a second experiment) reuses them instead of recalibrating.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use crate::calibrate::Calibrator;
use crate::data::calibration::CalibrationSet;
use crate::pipeline::{Calibrated, Outcome, Sampling, calibrate_set};
use crate::stats::ActivationStats;

/// How one STATS file came to be.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CalibrationRecord {
    /// Data set name.
    pub set: String,
    /// Samples drawn (with replacement).
    pub samples: usize,
    /// Sampling seed.
    pub seed: u64,
    /// Tokens measured.
    pub tokens: u64,
    /// Seconds spent calibrating (0 when loaded from the cache).
    pub seconds: f64,
    /// Loaded from an earlier run.
    pub cached: bool,
}

/// The STATS file of `set` at `samples` and `seed` inside `dir` (`-chat` before the extension
/// when the texts were wrapped in the chat template, so the two are never mixed up).
pub fn stats_path(dir: &Path, set: &str, samples: usize, seed: u64, chat: bool) -> PathBuf {
    let chat = if chat { "-chat" } else { "" };
    dir.join("stats").join(format!("{set}-n{samples}-seed{seed}{chat}.stats.gguf"))
}

/// Loads the cached STATS of (`set`, `samples`, `seed`, `chat`), if present and readable.
pub fn load_cached(dir: &Path, set: &CalibrationSet, samples: usize, seed: u64, chat: bool) -> Option<ActivationStats> {
    ActivationStats::load(&stats_path(dir, &set.name, samples, seed, chat)).ok().filter(|s| s.samples == samples as u64)
}

/// Calibrates `set` (unless cached) and saves the STATS under `dir/stats/`; `chat`: each text
/// in the model's chat template (the calibrator must parse special tokens).
pub fn ensure(cal: &mut Calibrator<'_>, dir: &Path, set: &CalibrationSet, samples: usize, seed: u64, chat: bool) -> anyhow::Result<(ActivationStats, CalibrationRecord)> {
    if let Some(stats) = load_cached(dir, set, samples, seed, chat) {
        let rec = CalibrationRecord { set: set.name.clone(), samples, seed, tokens: stats.tokens, seconds: 0.0, cached: true };
        return Ok((stats, rec));
    }
    let t0 = Instant::now();
    let path = stats_path(dir, &set.name, samples, seed, chat);
    std::fs::create_dir_all(path.parent().unwrap_or(dir)).with_context(|| format!("creating {}", dir.display()))?;
    let outcome = calibrate_set(cal, set, &Sampling { chat, ..Sampling::new(samples, seed) }, false, None, &path).with_context(|| format!("calibrating on {} ({samples} samples, seed {seed})", set.name))?;
    let Outcome::Finished(Calibrated { stats, .. }) = outcome else {
        unreachable!("a calibration without checkpoints always finishes")
    };
    let seconds = t0.elapsed().as_secs_f64();
    let rec = CalibrationRecord { set: set.name.clone(), samples, seed, tokens: stats.tokens, seconds, cached: false };
    Ok((stats, rec))
}
