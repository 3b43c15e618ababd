//! Evaluation reports: per-task metric values with 95% bootstrap intervals, the paired
//! comparison of two models (difference, paired-bootstrap interval, McNemar's p), their JSON and
//! Markdown renderings, and the files `report.json`, `report.md`, `<task>.jsonl`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::stats::{aggregate, discordant, mcnemar_exact_p, paired_bootstrap_ci};
use super::task::{Aggregate, ItemResult, Task};

/// One metric of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    /// Metric name.
    pub name: String,
    /// How items combine.
    pub aggregate: Aggregate,
    /// 0/1 per item.
    pub binary: bool,
    /// Larger is better.
    pub higher_is_better: bool,
    /// The value over all evaluated items.
    pub value: f64,
    /// 95% percentile-bootstrap interval.
    pub ci95: (f64, f64),
}

/// The result of one task for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The task.
    pub task: Task,
    /// Items evaluated.
    pub n: usize,
    /// Items available (before `--limit`).
    pub n_available: usize,
    /// Prompt format and scoring.
    pub setting: String,
    /// Wall-clock seconds the task took.
    pub wall_seconds: f64,
    /// Metrics, in report order.
    pub metrics: Vec<MetricResult>,
    /// Per-item results (written to `<task>.jsonl`, not to `report.json`).
    #[serde(skip)]
    pub items: Vec<ItemResult>,
}

/// The settings a report was produced with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// `--limit`.
    pub limit: Option<usize>,
    /// `--seed` (subset and bootstrap).
    pub seed: u64,
    /// MMLU few-shot count.
    pub fewshot: usize,
    /// llama.cpp threads.
    pub threads: usize,
    /// Bootstrap resamples.
    pub bootstrap: usize,
    /// GSM8K questions decoding at once.
    pub parallel: usize,
    /// Perplexity window and stride in tokens.
    pub ppl_window: (usize, usize),
}

/// The evaluation of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The model file.
    pub model: PathBuf,
    /// Settings.
    pub settings: RunSettings,
    /// Per-task results, in the order run.
    pub tasks: Vec<TaskResult>,
    /// Total wall-clock seconds.
    pub wall_seconds: f64,
}

impl EvalReport {
    /// The result of `task`, when it was run.
    pub fn task(&self, task: Task) -> Option<&TaskResult> {
        self.tasks.iter().find(|t| t.task == task)
    }
}

/// McNemar's test of one binary metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McNemar {
    /// Items only the base model got right.
    pub base_only: usize,
    /// Items only the other model got right.
    pub other_only: usize,
    /// Two-sided exact p-value.
    pub p: f64,
}

/// One metric of a paired comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricComparison {
    /// Metric name.
    pub name: String,
    /// Larger is better.
    pub higher_is_better: bool,
    /// Base model's value.
    pub base: f64,
    /// Other model's value.
    pub other: f64,
    /// other − base.
    pub diff: f64,
    /// 95% paired-bootstrap interval of the difference.
    pub diff_ci95: (f64, f64),
    /// McNemar's test, for binary metrics.
    pub mcnemar: Option<McNemar>,
}

/// One task of a paired comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskComparison {
    /// The task.
    pub task: Task,
    /// Paired items.
    pub n: usize,
    /// Per-metric comparison.
    pub metrics: Vec<MetricComparison>,
}

/// Two models evaluated on identical items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonReport {
    /// The first model (`MODEL`).
    pub base: EvalReport,
    /// The second model (`--compare OTHER`).
    pub other: EvalReport,
    /// Per-task comparison.
    pub tasks: Vec<TaskComparison>,
}

/// Two reports cannot be paired.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompareError {
    /// The task ran for one model only.
    #[error("task {0} is missing from the other report")]
    MissingTask(Task),
    /// The items differ.
    #[error("task {task}: the two reports evaluated different items ({base} vs {other} items, or different indices)")]
    DifferentItems {
        /// The task.
        task: Task,
        /// Base item count.
        base: usize,
        /// Other item count.
        other: usize,
    },
}

/// Pairs two reports item by item and compares every metric.
pub fn compare_reports(base: &EvalReport, other: &EvalReport, resamples: usize, seed: u64) -> Result<ComparisonReport, CompareError> {
    let mut tasks = Vec::new();
    for b in &base.tasks {
        let o = other.task(b.task).ok_or(CompareError::MissingTask(b.task))?;
        let same = b.items.len() == o.items.len() && b.items.iter().zip(&o.items).all(|(x, y)| x.index == y.index);
        if !same || b.metrics.len() != o.metrics.len() {
            return Err(CompareError::DifferentItems { task: b.task, base: b.items.len(), other: o.items.len() });
        }
        let mut metrics = Vec::new();
        for (m, (mb, mo)) in b.metrics.iter().zip(&o.metrics).enumerate() {
            let xs: Vec<(f64, f64)> = b.items.iter().map(|i| i.scores[m]).collect();
            let ys: Vec<(f64, f64)> = o.items.iter().map(|i| i.scores[m]).collect();
            let (vb, vo) = (aggregate(mb.aggregate, &xs), aggregate(mo.aggregate, &ys));
            let mcnemar = mb.binary.then(|| {
                let right = |v: &[(f64, f64)]| v.iter().map(|s| s.0 > 0.5).collect::<Vec<_>>();
                let (base_only, other_only) = discordant(&right(&xs), &right(&ys));
                McNemar { base_only, other_only, p: mcnemar_exact_p(base_only, other_only) }
            });
            metrics.push(MetricComparison {
                name: mb.name.clone(),
                higher_is_better: mb.higher_is_better,
                base: vb,
                other: vo,
                diff: vo - vb,
                diff_ci95: paired_bootstrap_ci(mb.aggregate, &xs, &ys, resamples, seed.wrapping_add(m as u64)),
                mcnemar,
            });
        }
        tasks.push(TaskComparison { task: b.task, n: b.items.len(), metrics });
    }
    Ok(ComparisonReport { base: base.clone(), other: other.clone(), tasks })
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

fn settings_line(s: &RunSettings) -> String {
    format!(
        "limit {}, seed {}, MMLU {}-shot, {} threads, {} bootstrap resamples, {} GSM8K questions at once, perplexity window {} stride {}",
        s.limit.map_or("none".to_string(), |l| l.to_string()),
        s.seed,
        s.fewshot,
        s.threads,
        s.bootstrap,
        s.parallel,
        s.ppl_window.0,
        s.ppl_window.1
    )
}

/// Markdown table of one model's results.
pub fn render_markdown(report: &EvalReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Evaluation of `{}`\n", report.model.display());
    let _ = writeln!(s, "Settings: {}. Total wall time {:.1} s.\n", settings_line(&report.settings), report.wall_seconds);
    let _ = writeln!(s, "| task | metric | value | 95% CI | N (of) | wall s |");
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for t in &report.tasks {
        for m in &t.metrics {
            let _ = writeln!(
                s,
                "| {} | {} | {} | [{}, {}] | {} ({}) | {:.1} |",
                t.task,
                m.name,
                num(m.value),
                num(m.ci95.0),
                num(m.ci95.1),
                t.n,
                t.n_available,
                t.wall_seconds
            );
        }
    }
    let _ = writeln!(s, "\n## Settings per task\n");
    for t in &report.tasks {
        let _ = writeln!(s, "- `{}`: {}", t.task, t.setting);
    }
    s
}

/// Markdown table of a paired comparison.
pub fn render_comparison_markdown(c: &ComparisonReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Comparison\n");
    let _ = writeln!(s, "- base: `{}`\n- other: `{}`\n", c.base.model.display(), c.other.model.display());
    let _ = writeln!(s, "Settings: {}.\n", settings_line(&c.base.settings));
    let _ = writeln!(s, "| task | metric | base | other | other − base | 95% paired CI | McNemar p (b/c) | N |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for t in &c.tasks {
        for m in &t.metrics {
            let mc = m.mcnemar.as_ref().map_or("–".to_string(), |x| format!("{:.3} ({}/{})", x.p, x.base_only, x.other_only));
            let _ = writeln!(
                s,
                "| {} | {}{} | {} | {} | {:+.4} | [{:+.4}, {:+.4}] | {} | {} |",
                t.task,
                m.name,
                if m.higher_is_better { " ↑" } else { " ↓" },
                num(m.base),
                num(m.other),
                m.diff,
                m.diff_ci95.0,
                m.diff_ci95.1,
                mc,
                t.n
            );
        }
    }
    let _ = writeln!(s, "\nPlot of the differences with their intervals: [diff.svg](diff.svg)\n\n![other − base with 95% paired intervals](diff.svg)");
    let _ = writeln!(s, "\n## Each model\n");
    for r in [&c.base, &c.other] {
        s.push_str(&render_markdown(r).replace("# Evaluation", "### Evaluation"));
        s.push('\n');
    }
    // The plain reading comes last, where a terminal leaves the eye.
    s.push_str(&super::verdict::render_verdicts(c));
    s
}

fn item_json(item: &ItemResult, metrics: &[MetricResult]) -> serde_json::Value {
    let mut correct = serde_json::Map::new();
    let mut values = serde_json::Map::new();
    for (m, &(n, d)) in metrics.iter().zip(&item.scores) {
        if m.binary {
            correct.insert(m.name.clone(), serde_json::Value::Bool(n > 0.5));
        }
        values.insert(m.name.clone(), serde_json::json!([n, d]));
    }
    serde_json::json!({
        "output": item.output,
        "extracted": item.extracted,
        "correct": correct,
        "values": values,
    })
}

/// The `<task>.jsonl` lines of one model, or of both models side by side.
pub fn items_jsonl(base: &TaskResult, other: Option<&TaskResult>) -> String {
    let mut s = String::new();
    for (k, item) in base.items.iter().enumerate() {
        let mut line = serde_json::json!({
            "index": item.index,
            "prompt": item.prompt,
            "target": item.target,
        });
        let obj = line.as_object_mut().expect("object");
        match other {
            None => {
                if let serde_json::Value::Object(m) = item_json(item, &base.metrics) {
                    obj.extend(m);
                }
            }
            Some(o) => {
                obj.insert("base".into(), item_json(item, &base.metrics));
                obj.insert("other".into(), item_json(&o.items[k], &o.metrics));
            }
        }
        s.push_str(&line.to_string());
        s.push('\n');
    }
    s
}

/// Writes `report.json`, `report.md` and `<task>.jsonl` into `dir` (created if needed), and for
/// a comparison the plot `diff.svg` that report.md links.
pub fn write_outputs(dir: &Path, base: &EvalReport, comparison: Option<&ComparisonReport>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create output directory {}", dir.display()))?;
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        crate::atomic::write_bytes_atomic(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    };
    let (json, md) = match comparison {
        Some(c) => (serde_json::to_string_pretty(c)?, render_comparison_markdown(c)),
        None => (serde_json::to_string_pretty(base)?, render_markdown(base)),
    };
    write("report.json", json.as_bytes())?;
    if let Some(c) = comparison {
        write("diff.svg", super::plot::diff_svg(c).as_bytes())?;
    }
    write("report.md", md.as_bytes())?;
    for t in &base.tasks {
        let other = comparison.and_then(|c| c.other.task(t.task));
        write(&format!("{}.jsonl", t.task), items_jsonl(t, other).as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(correct: &[bool]) -> EvalReport {
        let items: Vec<ItemResult> = correct
            .iter()
            .enumerate()
            .map(|(i, &c)| ItemResult { index: i, scores: vec![(c as u8 as f64, 1.0)], ..Default::default() })
            .collect();
        let xs: Vec<(f64, f64)> = items.iter().map(|i| i.scores[0]).collect();
        EvalReport {
            model: "m.gguf".into(),
            settings: RunSettings { limit: None, seed: 0, fewshot: 0, threads: 1, bootstrap: 10, parallel: 1, ppl_window: (8, 4) },
            tasks: vec![TaskResult {
                task: Task::Piqa,
                n: items.len(),
                n_available: items.len(),
                setting: "s".into(),
                wall_seconds: 1.0,
                metrics: vec![MetricResult {
                    name: "acc".into(),
                    aggregate: Aggregate::Ratio,
                    binary: true,
                    higher_is_better: true,
                    value: aggregate(Aggregate::Ratio, &xs),
                    ci95: (0.0, 1.0),
                }],
                items,
            }],
            wall_seconds: 1.0,
        }
    }

    #[test]
    fn comparison_pairs_items_and_counts_discordance() {
        let a = report(&[true, true, false, false]);
        let b = report(&[true, false, true, true]);
        let c = compare_reports(&a, &b, 50, 1).unwrap();
        let m = &c.tasks[0].metrics[0];
        assert_eq!((m.base, m.other), (0.5, 0.75));
        assert!((m.diff - 0.25).abs() < 1e-12);
        let mc = m.mcnemar.as_ref().unwrap();
        assert_eq!((mc.base_only, mc.other_only), (1, 2));
        let md = render_comparison_markdown(&c);
        assert!(md.contains("| piqa | acc ↑ | 0.5000 | 0.7500 | +0.2500"), "{md}");
        let jsonl = items_jsonl(&a.tasks[0], Some(&b.tasks[0]));
        assert_eq!(jsonl.lines().count(), 4);
        assert!(jsonl.lines().next().unwrap().contains("\"other\""));
        assert!(md.contains("](diff.svg)"), "{md}");
        let svg = super::super::plot::diff_svg(&c);
        assert!(svg.starts_with("<svg") && svg.contains("piqa acc ↑") && svg.contains("+0.2500") && svg.trim_end().ends_with("</svg>"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), c.tasks.iter().map(|t| t.metrics.len()).sum::<usize>());
    }

    #[test]
    fn different_items_are_refused() {
        let a = report(&[true, true]);
        let b = report(&[true]);
        assert!(matches!(compare_reports(&a, &b, 10, 0), Err(CompareError::DifferentItems { .. })));
    }
}
