//! Shared fixtures of the select/apply tests: the real model's path and synthetic STATS.
#![allow(dead_code)]

use std::path::PathBuf;

use mathneuro::gguf::GgufFile;
use mathneuro::stats::ActivationStats;

/// The default model; fails with the fix when it is missing.
pub fn real_model() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf");
    assert!(p.exists(), "{} is missing: run models/fetch.sh", p.display());
    p
}

/// Synthetic math and general STATS for `model` (seeded, positive, right shapes).
pub fn stats_pair(model: &GgufFile) -> (ActivationStats, ActivationStats) {
    (
        mathneuro::select::synth::synthetic_stats(model, 1, 100, "synthetic-math"),
        mathneuro::select::synth::synthetic_stats(model, 2, 100, "synthetic-general"),
    )
}

/// Runs `f` on a two-thread rayon pool (tests share the machine).
pub fn two_threads<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap().install(f)
}
