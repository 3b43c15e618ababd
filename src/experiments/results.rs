//! The records of an experiments run, written to `DIR/results.json` after every step (so an
//! interrupted run keeps what it measured).

use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::overlap::MaskOverlap;
use super::plan::Plan;
use super::stats_cache::CalibrationRecord;
use crate::eval::{ComparisonReport, EvalReport};
use crate::surgery::report::GroupFraction;

/// The base model's value of one metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaseMetric {
    /// Task name.
    pub task: String,
    /// Metric name.
    pub metric: String,
    /// Items.
    pub n: usize,
    /// Value.
    pub value: f64,
    /// 95% bootstrap interval.
    pub ci95: (f64, f64),
    /// Wall seconds the whole task took on the base model.
    #[serde(default)]
    pub task_seconds: f64,
}

/// One metric of one rewritten model, paired with the base.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedMetric {
    /// Task name.
    pub task: String,
    /// Metric name.
    pub metric: String,
    /// Larger is better.
    pub higher_is_better: bool,
    /// Paired items.
    pub n: usize,
    /// Base value.
    pub base: f64,
    /// Rewritten model's value.
    pub other: f64,
    /// other − base.
    pub diff: f64,
    /// 95% paired-bootstrap interval of the difference.
    pub ci95: (f64, f64),
    /// McNemar's exact p (binary metrics).
    pub mcnemar_p: Option<f64>,
}

/// One evaluated setting (a rewrite of the model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Experiments this row belongs to.
    pub experiments: Vec<u8>,
    /// Short label, e.g. `mathneuro K=5 prune`.
    pub label: String,
    /// Selection method.
    pub method: String,
    /// K in percent.
    pub k: f64,
    /// Factor applied (0 = prune).
    pub factor: f32,
    /// Calibration samples per set.
    pub samples: usize,
    /// Calibration seed.
    pub seed: u64,
    /// Selected entries.
    pub selected: u64,
    /// Selected fraction of all target entries.
    pub selected_fraction: f64,
    /// Achieved fraction of the intended change after re-quantization.
    pub achieved_fraction: f64,
    /// Seconds for select + rewrite.
    pub apply_seconds: f64,
    /// Seconds for the evaluation.
    pub eval_seconds: f64,
    /// Paired metrics.
    pub metrics: Vec<PairedMetric>,
}

impl Row {
    /// The metric `metric` of `task`, if evaluated.
    pub fn metric(&self, task: &str, metric: &str) -> Option<&PairedMetric> {
        self.metrics.iter().find(|m| m.task == task && m.metric == metric)
    }
}

/// Experiment 5: where the selected weights live.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerMap {
    /// Which selection (label).
    pub label: String,
    /// Selected fraction per layer.
    pub per_layer: Vec<GroupFraction>,
    /// Selected fraction per matrix kind.
    pub per_kind: Vec<GroupFraction>,
    /// Mean, population std, min, max of the per-layer fractions.
    pub layer_spread: (f64, f64, f64, f64),
    /// The heat map file (relative to the output directory).
    pub heatmap: String,
}

/// Everything an experiments run measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Results {
    /// The plan (grids and sizes).
    pub plan: Option<Plan>,
    /// The model file.
    pub model: String,
    /// Threads used.
    pub threads: usize,
    /// Calibrations (computed or cached).
    pub calibrations: Vec<CalibrationRecord>,
    /// The base model's metrics.
    pub base: Vec<BaseMetric>,
    /// Seconds the base evaluation took.
    pub base_eval_seconds: f64,
    /// Evaluated settings.
    pub rows: Vec<Row>,
    /// Mask overlaps (experiments 3 and 4).
    pub overlaps: Vec<MaskOverlap>,
    /// Experiment 5.
    pub layers: Option<LayerMap>,
    /// Wall seconds so far.
    pub wall_seconds: f64,
    /// Plot files written (relative to the output directory).
    pub plots: Vec<String>,
}

impl Results {
    /// Writes `results.json` into `dir` atomically.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join("results.json");
        let json = serde_json::to_string_pretty(self).context("serializing results")?;
        crate::atomic::write_bytes_atomic(&path, json.as_bytes()).with_context(|| format!("writing {}", path.display()))
    }
}

/// The base model's metrics from its report.
pub fn base_metrics(r: &EvalReport) -> Vec<BaseMetric> {
    r.tasks
        .iter()
        .flat_map(|t| t.metrics.iter().map(move |m| BaseMetric { task: t.task.name().to_string(), metric: m.name.clone(), n: t.n, value: m.value, ci95: m.ci95, task_seconds: t.wall_seconds }))
        .collect()
}

/// The paired metrics of a comparison.
pub fn paired_metrics(c: &ComparisonReport) -> Vec<PairedMetric> {
    c.tasks
        .iter()
        .flat_map(|t| {
            t.metrics.iter().map(move |m| PairedMetric {
                task: t.task.name().to_string(),
                metric: m.name.clone(),
                higher_is_better: m.higher_is_better,
                n: t.n,
                base: m.base,
                other: m.other,
                diff: m.diff,
                ci95: m.diff_ci95,
                mcnemar_p: m.mcnemar.as_ref().map(|x| x.p),
            })
        })
        .collect()
}
