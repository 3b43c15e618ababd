//! One evaluated setting: select with a method and K, scale or prune into a temporary GGUF in
//! the output directory, evaluate it on the fixed item subsets, pair it with the base model's
//! report, and delete the temporary file (also when something fails).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;

use super::results::{Row, paired_metrics};
use super::suite::evaluate_suite;
use crate::eval::{Model, EvalOptions, EvalReport, Task, compare_reports};
use crate::gguf::GgufFile;
use crate::select::{Method, SelectOptions};
use crate::stats::ActivationStats;
use crate::surgery::{self, ApplyOptions, ApplyReport, Change};

/// What one setting does.
#[derive(Clone, Debug, PartialEq)]
pub struct SettingSpec {
    /// Selection rule.
    pub method: Method,
    /// K in percent.
    pub k: f64,
    /// Factor (0 = prune).
    pub factor: f32,
    /// Calibration samples per set.
    pub samples: usize,
    /// Calibration (and random-selection) seed.
    pub seed: u64,
}

impl SettingSpec {
    /// The change applied to the selected weights.
    pub fn change(&self) -> Change {
        if self.factor == 0.0 { Change::Prune } else { Change::Scale(self.factor) }
    }

    /// A readable label, e.g. `mathneuro K=5 prune` or `mathneuro K=1 ×1.05 (1 sample)`.
    pub fn label(&self, default_samples: usize) -> String {
        let change = if self.factor == 0.0 { "prune".to_string() } else { format!("×{}", self.factor) };
        let mut s = format!("{} K={} {change}", self.method.name(), self.k);
        if self.samples != default_samples {
            s.push_str(&format!(" ({} sample{})", self.samples, if self.samples == 1 { "" } else { "s" }));
        }
        s
    }

    /// A file-name-safe form of the label.
    pub fn slug(&self) -> String {
        format!("{}-k{}-f{}-n{}-s{}", self.method.name(), self.k, self.factor, self.samples, self.seed)
    }
}

/// What every setting shares.
pub struct SettingContext<'a> {
    /// The base model file.
    pub model: &'a GgufFile,
    /// The output directory (temporary models go here).
    pub dir: &'a Path,
    /// Worker threads for selection and rewriting.
    pub pool: &'a rayon::ThreadPool,
    /// Evaluation options (tasks and limits come from `tasks`).
    pub eval: &'a EvalOptions,
    /// Tasks and items per task.
    pub tasks: &'a [(Task, usize)],
    /// The base model's report on the same items.
    pub base: &'a EvalReport,
}

/// Deletes a file when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs one setting and returns its row (tagged with `experiments`) and the rewrite report.
pub fn run_setting(
    ctx: &SettingContext<'_>,
    spec: &SettingSpec,
    default_samples: usize,
    math: &ActivationStats,
    general: &ActivationStats,
    experiments: &[u8],
) -> anyhow::Result<(Row, ApplyReport)> {
    let label = spec.label(default_samples);
    let temp = TempFile(ctx.dir.join(format!("tmp-{}.gguf", spec.slug())));
    let opts = ApplyOptions {
        select: SelectOptions { method: spec.method, top_k_percent: spec.k, seed: spec.seed },
        change: spec.change(),
        edit: crate::surgery::EditMode::Keep,
        quantize: None,
        output: temp.0.clone(),
        force: true,
        save_mask: None,
        write_modelfile: false,
        write_report: false,
        progress: false,
        restrict: Default::default(),
    };
    let t0 = Instant::now();
    let report = ctx.pool.install(|| surgery::apply(ctx.model, math, general, &opts)).with_context(|| format!("{label}: rewriting the model"))?;
    let apply_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let other = {
        let model = Model::load(&temp.0).with_context(|| format!("{label}: loading {}", temp.0.display()))?;
        evaluate_suite(&model, ctx.tasks, ctx.eval).with_context(|| format!("{label}: evaluating"))?
    };
    drop(temp);
    let eval_seconds = t1.elapsed().as_secs_f64();
    let cmp = compare_reports(ctx.base, &other, ctx.eval.bootstrap, ctx.eval.seed).with_context(|| format!("{label}: pairing with the base model"))?;
    let row = Row {
        experiments: experiments.to_vec(),
        label,
        method: spec.method.name().to_string(),
        k: spec.k,
        factor: spec.factor,
        samples: spec.samples,
        seed: spec.seed,
        selected: report.selected,
        selected_fraction: report.selected_fraction,
        achieved_fraction: report.achieved_fraction,
        apply_seconds,
        eval_seconds,
        metrics: paired_metrics(&cmp),
    };
    Ok((row, report))
}
