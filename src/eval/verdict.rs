//! The plain reading of a paired comparison: one verdict per task — better, worse, or no
//! detectable change — taken from the task's primary metric and its 95% paired-bootstrap
//! interval, with the smallest difference the run could have seen at its N. For a math
//! accuracy task the verdict also says whether N resolves the effect the MathNeuro paper
//! claims (+4 % to +17 % relative on GSM8K) and about how many items would.
//!
//! The smallest detectable difference is the one a two-sided test at 5 % finds with 80 %
//! power: (1.96 + 0.84) standard errors, the standard error read from the paired interval's
//! half-width (1.96 SE). When the interval has no width (every pair agrees), a 0/1 metric falls
//! back to the unpaired binomial error of the two accuracies, so "no change" never claims a
//! resolution the data cannot give. The items needed scale as 1/d²: N × (MDD / d)².

use std::fmt::Write as _;

use serde::Serialize;

use super::report::{ComparisonReport, MetricComparison, TaskComparison};

/// The smallest relative gain on GSM8K the paper reports (+4 %; its largest is +17 %).
pub const PAPER_SMALLEST_RELATIVE_GAIN: f64 = 0.04;
/// The largest relative gain on GSM8K the paper reports.
pub const PAPER_LARGEST_RELATIVE_GAIN: f64 = 0.17;
/// (z₀.₉₇₅ + z₀.₈) / z₀.₉₇₅: a 95 % interval's half-width → the 80 %-power detectable difference.
const POWER_FACTOR: f64 = (1.959_964 + 0.841_621) / 1.959_964;

/// Which way the edited model moved on a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The interval lies wholly on the better side of zero.
    Better,
    /// The interval lies wholly on the worse side of zero.
    Worse,
    /// The interval holds zero.
    NoDetectableChange,
}

/// Whether N resolves the paper's claimed effect on a math accuracy task.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PaperCheck {
    /// The paper's smallest claimed gain on this base, absolute (base × 4 %).
    pub smallest_gain: f64,
    /// The smallest detectable difference is at most that gain.
    pub resolved: bool,
    /// Items that would resolve the smallest claimed gain (about).
    pub items_needed: usize,
}

/// The verdict on one task.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// The task's name.
    pub task: String,
    /// The metric the verdict reads.
    pub metric: String,
    /// Larger is better.
    pub higher_is_better: bool,
    /// Better, worse or neither.
    pub direction: Direction,
    /// other − base.
    pub diff: f64,
    /// 95 % paired interval of the difference.
    pub ci95: (f64, f64),
    /// Paired items.
    pub n: usize,
    /// The smallest difference this N detects (80 % power, 5 % two-sided), absolute.
    pub detectable: f64,
    /// For math accuracy tasks: the paper's claimed effect against `detectable`.
    pub paper: Option<PaperCheck>,
}

/// The metric a task's verdict reads: flexible-extract for generation tasks (the number the
/// answer ends with, as `tune` optimises), else the task's first metric.
fn primary(t: &TaskComparison) -> Option<&MetricComparison> {
    t.metrics.iter().find(|m| m.name == "flexible-extract").or_else(|| t.metrics.first())
}

/// Tasks whose accuracy the paper's claim is about (GSM8K; `math` by name once it exists).
fn is_math_accuracy(task: &str, m: &MetricComparison) -> bool {
    matches!(task, "gsm8k" | "math") && m.higher_is_better
}

/// The smallest detectable difference of `m` at `n` items (see the module doc).
fn detectable(m: &MetricComparison, n: usize) -> f64 {
    let half = (m.diff_ci95.1 - m.diff_ci95.0) / 2.0;
    if half.is_finite() && half > 0.0 {
        return POWER_FACTOR * half;
    }
    if m.mcnemar.is_some() && n > 0 {
        let p = ((m.base + m.other) / 2.0).clamp(0.0, 1.0);
        // A 0/1 metric at p = 0 or 1 still cannot see below one item in N.
        let se = (2.0 * p * (1.0 - p) / n as f64).sqrt().max(1.0 / n as f64);
        return (1.959_964 + 0.841_621) * se;
    }
    0.0
}

/// The verdict on one task, `None` when it has no metric.
pub fn verdict(t: &TaskComparison) -> Option<Verdict> {
    let m = primary(t)?;
    let (lo, hi) = m.diff_ci95;
    // The interval lies above zero (other − base > 0) or below it; which is better depends on
    // the metric's direction.
    let direction = if lo.is_nan() || hi.is_nan() || (lo <= 0.0 && hi >= 0.0) {
        Direction::NoDetectableChange
    } else if (lo > 0.0) == m.higher_is_better {
        Direction::Better
    } else {
        Direction::Worse
    };
    let task = t.task.name().to_string();
    let detectable = detectable(m, t.n);
    let paper = is_math_accuracy(&task, m).then(|| {
        let smallest_gain = m.base.abs() * PAPER_SMALLEST_RELATIVE_GAIN;
        let items_needed = if smallest_gain > 0.0 { (t.n as f64 * (detectable / smallest_gain).powi(2)).ceil() as usize } else { usize::MAX };
        PaperCheck { smallest_gain, resolved: detectable <= smallest_gain, items_needed }
    });
    Some(Verdict { task, metric: m.name.clone(), higher_is_better: m.higher_is_better, direction, diff: m.diff, ci95: m.diff_ci95, n: t.n, detectable, paper })
}

/// One verdict per task of the comparison, in its order.
pub fn verdicts(c: &ComparisonReport) -> Vec<Verdict> {
    c.tasks.iter().filter_map(verdict).collect()
}

impl Verdict {
    /// The plain line: `gsm8k_nll: worse (nll_per_token ↓ +0.0098 [+0.0059, +0.0141], N = 50)`.
    pub fn line(&self) -> String {
        let arrow = if self.higher_is_better { "↑" } else { "↓" };
        let measured = format!("{} {arrow} {:+.4} [{:+.4}, {:+.4}]", self.metric, self.diff, self.ci95.0, self.ci95.1);
        let mut s = match self.direction {
            Direction::Better => format!("{}: better ({measured}, N = {})", self.task, self.n),
            Direction::Worse => format!("{}: worse ({measured}, N = {})", self.task, self.n),
            Direction::NoDetectableChange => {
                format!("{}: no detectable change at N = {} ({measured}; differences under ±{:.4} go unseen)", self.task, self.n, self.detectable)
            }
        };
        if let Some(p) = &self.paper {
            if p.resolved {
                let _ = write!(s, "; N = {} resolves the paper's smallest claimed gain (+{:.0} % relative = +{:.4})", self.n, PAPER_SMALLEST_RELATIVE_GAIN * 100.0, p.smallest_gain);
            } else {
                let _ = write!(
                    s,
                    "; N = {} is too small for the paper's claim: it resolves ±{:.4}, the paper's +{:.0}–{:.0} % relative is +{:.4}–{:.4} here (about {} items would resolve +{:.0} %)",
                    self.n,
                    self.detectable,
                    PAPER_SMALLEST_RELATIVE_GAIN * 100.0,
                    PAPER_LARGEST_RELATIVE_GAIN * 100.0,
                    p.smallest_gain,
                    p.smallest_gain / PAPER_SMALLEST_RELATIVE_GAIN * PAPER_LARGEST_RELATIVE_GAIN,
                    p.items_needed,
                    PAPER_SMALLEST_RELATIVE_GAIN * 100.0,
                );
            }
        }
        s
    }
}

/// The Markdown section that ends a comparison: one verdict line per task.
pub fn render_verdicts(c: &ComparisonReport) -> String {
    let mut s = String::from("## Verdict (other vs base, 95 % paired intervals)\n\n");
    for v in verdicts(c) {
        let _ = writeln!(s, "- {}", v.line());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::report::{EvalReport, MetricResult, RunSettings, TaskResult, compare_reports};
    use crate::eval::task::{Aggregate, ItemResult, Task};

    /// A report of `task` with one item per value: 0/1 accuracies, or NLL per token (`nll`).
    fn report(task: Task, values: &[f64], nll: bool) -> EvalReport {
        let items: Vec<ItemResult> = values.iter().enumerate().map(|(i, &v)| ItemResult { index: i, scores: vec![(v, 1.0)], ..Default::default() }).collect();
        let name = if nll { "nll_per_token" } else if task == Task::Gsm8k { "flexible-extract" } else { "acc" };
        let metric = MetricResult { name: name.into(), aggregate: Aggregate::Ratio, binary: !nll, higher_is_better: !nll, value: 0.0, ci95: (0.0, 1.0) };
        let settings = RunSettings { limit: None, seed: 0, fewshot: 0, threads: 1, bootstrap: 1000, parallel: 1, ppl_window: (8, 4) };
        let task = TaskResult { task, n: items.len(), n_available: items.len(), setting: "s".into(), wall_seconds: 0.0, metrics: vec![metric], items };
        EvalReport { model: "m.gguf".into(), settings, tasks: vec![task], wall_seconds: 0.0 }
    }

    /// 0/1 outcomes: `right` of `n` right, the rest wrong, base and other paired by index.
    fn binary(n: usize, right: impl Fn(usize) -> bool) -> Vec<f64> {
        (0..n).map(|i| right(i) as u8 as f64).collect()
    }

    /// The verdict of a generated pair, checked against the paired table's own row.
    fn judged(task: Task, base: &[f64], other: &[f64], nll: bool) -> (Verdict, String) {
        let c = compare_reports(&report(task, base, nll), &report(task, other, nll), 1000, 7).unwrap();
        let v = verdicts(&c).remove(0);
        let m = &c.tasks[0].metrics[0];
        assert_eq!((v.diff, v.ci95, v.n), (m.diff, m.diff_ci95, c.tasks[0].n), "the verdict reads the paired table");
        let table = crate::eval::report::render_comparison_markdown(&c);
        assert!(table.trim_end().ends_with(&format!("- {}", v.line())), "the comparison ends with the verdict:\n{table}");
        let line = v.line();
        (v, line)
    }

    #[test]
    fn better_worse_and_no_change_on_accuracy() {
        let base = binary(200, |i| i % 2 == 0);
        // 40 items more right: a clear gain; 40 fewer: a clear loss.
        let better = binary(200, |i| i % 2 == 0 || i % 10 == 1 || i % 10 == 3);
        let worse = binary(200, |i| i % 2 == 0 && i % 10 != 0 && i % 10 != 2);
        let (v, line) = judged(Task::Mmlu, &base, &better, false);
        assert_eq!(v.direction, Direction::Better, "{line}");
        assert!(v.ci95.0 > 0.0 && line.starts_with("mmlu: better (acc ↑ +0.2000 ["), "{line}");
        let (v, line) = judged(Task::Mmlu, &base, &worse, false);
        assert_eq!(v.direction, Direction::Worse, "{line}");
        assert!(v.ci95.1 < 0.0 && line.starts_with("mmlu: worse (acc ↑ -0.2000 ["), "{line}");
        // One item flips each way: nothing to see, and the line says what N could have seen.
        let mut same = base.clone();
        same.swap(0, 1);
        let (v, line) = judged(Task::Mmlu, &base, &same, false);
        assert_eq!(v.direction, Direction::NoDetectableChange, "{line}");
        assert!(v.ci95.0 < 0.0 && v.ci95.1 > 0.0 && line.contains("no detectable change at N = 200") && line.contains("go unseen"), "{line}");
        assert!(v.paper.is_none(), "MMLU is not what the paper's claim is about");
    }

    #[test]
    fn lower_is_better_metrics_read_the_other_way() {
        // NLL per token: the other model's loss rises on every item → worse; falls → better.
        let base: Vec<f64> = (0..60).map(|i| 1.0 + (i % 7) as f64 * 0.1).collect();
        let up: Vec<f64> = base.iter().enumerate().map(|(i, x)| x + 0.01 + (i % 3) as f64 * 0.002).collect();
        let down: Vec<f64> = base.iter().enumerate().map(|(i, x)| x - 0.01 - (i % 3) as f64 * 0.002).collect();
        let (v, line) = judged(Task::Gsm8kNll, &base, &up, true);
        assert_eq!(v.direction, Direction::Worse, "{line}");
        assert!(line.starts_with("gsm8k_nll: worse (nll_per_token ↓ +0.01"), "{line}");
        assert_eq!(judged(Task::Gsm8kNll, &base, &down, true).0.direction, Direction::Better);
        let noisy: Vec<f64> = base.iter().enumerate().map(|(i, x)| x + if i % 2 == 0 { 0.05 } else { -0.05 }).collect();
        assert_eq!(judged(Task::Gsm8kNll, &base, &noisy, true).0.direction, Direction::NoDetectableChange);
    }

    #[test]
    fn small_n_says_it_cannot_resolve_the_papers_claim() {
        // GSM8K at N = 50, base 30 % right: the paper's +4 % relative is +0.012, far below what
        // 50 paired items resolve.
        let base = binary(50, |i| i % 10 < 3);
        let mut other = base.clone();
        other.swap(0, 5);
        let (v, line) = judged(Task::Gsm8k, &base, &other, false);
        assert_eq!(v.direction, Direction::NoDetectableChange);
        let p = v.paper.clone().expect("GSM8K accuracy is the paper's claim");
        assert!((p.smallest_gain - 0.012).abs() < 1e-9 && !p.resolved && p.items_needed > 1000, "{p:?}");
        assert!(line.contains("N = 50 is too small for the paper's claim") && line.contains("+4–17 % relative is +0.0120–0.0510"), "{line}");
        // Identical answers everywhere: the interval has no width, the resolution is still finite.
        let (v, line) = judged(Task::Gsm8k, &base, &base, false);
        assert!(v.detectable > 0.1 && line.contains("no detectable change at N = 50"), "{line}");
    }
}
