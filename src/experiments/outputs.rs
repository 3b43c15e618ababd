//! The files `experiments` writes into its `--out` directory, as one output plan: the results
//! (results.json, results.md) and plots, which an earlier run's need `--force` to be replaced;
//! the STATS cache under `stats/` and the temporary models `tmp-*.gguf`, which are reused. Every
//! one is checked against the inputs, so a model or data file there is never replaced.

use std::path::{Path, PathBuf};

use super::Plan;
use super::stats_cache::stats_path;
use crate::eval::Task;
use crate::safety::OutputPlan;

/// The results and plots (replaced by a new run).
fn result_files(out: &Path) -> Vec<PathBuf> {
    let mut names = vec!["results.json".to_string(), "results.md".into(), "exp5-heatmap.svg".into(), "exp5-layers.svg".into()];
    for e in ["exp1", "exp2"] {
        names.extend(Task::ALL.iter().map(|t| format!("{e}-{}.svg", t.name())));
    }
    names.iter().map(|n| out.join(n)).collect()
}

/// Adds the directory, the results and plots, the cached STATS and the temporary models of
/// `plan` (calibrated in the chat template when `chat`) to `outputs`.
pub fn plan(mut outputs: OutputPlan, out: &Path, plan: &Plan, chat: bool) -> OutputPlan {
    outputs = outputs.dir(out).dir(out.join("stats"));
    for f in result_files(out) {
        outputs = outputs.file(f);
    }
    for (samples, seed) in plan.calibrations() {
        for set in ["gsm8k", "mmlu"] {
            outputs = outputs.reused_file(stats_path(out, set, samples, seed, chat));
        }
    }
    for (spec, _) in super::runner::settings(plan) {
        outputs = outputs.reused_file(out.join(format!("tmp-{}.gguf", spec.slug())));
    }
    outputs
}

/// Removes an earlier run's results and plots from `out` (the run was started with `--force`),
/// so none is mixed into the new results; the STATS cache stays.
pub fn clear(out: &Path) -> std::io::Result<()> {
    for f in result_files(out) {
        if std::fs::symlink_metadata(&f).is_ok_and(|m| !m.is_dir()) {
            std::fs::remove_file(&f)?;
        }
    }
    Ok(())
}
