//! The markdown report of an experiments run: settings, the base model, then one section per
//! experiment with paired differences and 95% intervals, mask overlaps and the layer map.

use std::fmt::Write as _;

use super::overlap::summary;
use super::results::{PairedMetric, Results, Row};

/// `value [lo, hi]` with a precision suited to the magnitude.
pub fn with_ci(v: f64, ci: (f64, f64)) -> String {
    format!("{} [{}, {}]", num(v), num(ci.0), num(ci.1))
}

/// A signed number with 4 significant-ish decimals (`n/a` when not finite).
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x.abs() >= 100.0 {
        format!("{x:+.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:+.3}")
    } else {
        format!("{x:+.4}")
    }
}

/// The (task, metric) pairs shown in tables: the first metric of every evaluated task.
pub fn primary_metrics(results: &Results) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for b in &results.base {
        if !out.iter().any(|(t, _)| *t == b.task) {
            out.push((b.task.clone(), b.metric.clone()));
        }
    }
    out
}

/// Whether a paired difference's interval excludes zero, and in which direction for quality:
/// `worse`, `better` or `~` (interval spans 0).
pub fn verdict(m: &PairedMetric) -> &'static str {
    let (lo, hi) = m.ci95;
    if !(lo.is_finite() && hi.is_finite()) || (lo <= 0.0 && hi >= 0.0) {
        "~"
    } else if (lo > 0.0) == m.higher_is_better {
        "better"
    } else {
        "worse"
    }
}

fn rows_table(s: &mut String, results: &Results, rows: &[&Row]) {
    let cols = primary_metrics(results);
    let _ = write!(s, "| setting | selected | achieved |");
    for (t, m) in &cols {
        let _ = write!(s, " Δ {t} {m} [95% CI] |");
    }
    let _ = write!(s, "\n|---|---:|---:|");
    for _ in &cols {
        let _ = write!(s, "---|");
    }
    s.push('\n');
    for r in rows {
        let _ = write!(s, "| {} | {:.3}% | {:.0}% |", r.label, r.selected_fraction * 100.0, r.achieved_fraction * 100.0);
        for (t, m) in &cols {
            match r.metric(t, m) {
                Some(pm) => {
                    let _ = write!(s, " {} {} |", with_ci(pm.diff, pm.ci95), verdict(pm));
                }
                None => s.push_str(" – |"),
            }
        }
        s.push('\n');
    }
    s.push('\n');
}

fn plots_for(s: &mut String, results: &Results, prefix: &str, link_prefix: &str) {
    for p in results.plots.iter().filter(|p| p.starts_with(prefix)) {
        let _ = writeln!(s, "![{p}]({link_prefix}{p})\n");
    }
}

/// Renders the whole report. `link_prefix` is put before plot file names in image links.
pub fn render(results: &Results, link_prefix: &str) -> String {
    let mut s = String::new();
    let Some(plan) = &results.plan else { return s };
    setup_section(&mut s, results, plan);
    let rows_of = |e: u8| results.rows.iter().filter(|r| r.experiments.contains(&e)).collect::<Vec<_>>();
    let legend = "`better`/`worse`: the interval excludes 0; `~`: it does not. selected: fraction of all target weights; achieved: how much of the intended change survived re-quantization.\n\n";
    for (e, heading, prefix) in [(1, "### 1. Pruning: MathNeuro vs Wanda-only vs random\n", "exp1-"), (2, "### 2. Scaling MathNeuro weights\n", "exp2-")] {
        let rows = rows_of(e);
        if !rows.is_empty() {
            let _ = writeln!(s, "{heading}");
            s.push_str(legend);
            rows_table(&mut s, results, &rows);
            plots_for(&mut s, results, prefix, link_prefix);
        }
    }
    let rows = rows_of(3);
    let ov3: Vec<_> = results.overlaps.iter().filter(|o| o.experiment == 3).collect();
    if !rows.is_empty() || !ov3.is_empty() {
        let _ = writeln!(s, "### 3. Data efficiency: {} sample vs {} samples\n", plan.efficiency_samples, plan.samples);
        overlap_table(&mut s, &ov3);
        if !rows.is_empty() {
            rows_table(&mut s, results, &rows);
        }
    }
    let ov4: Vec<_> = results.overlaps.iter().filter(|o| o.experiment == 4).collect();
    if !ov4.is_empty() {
        let _ = writeln!(s, "### 4. Consistency: {} seeds at {} samples\n", plan.consistency_seeds, plan.samples);
        overlap_table(&mut s, &ov4);
        if let Some((mean, min, max)) = summary(&ov4) {
            let _ = writeln!(s, "Pairwise Jaccard: mean {mean:.3}, min {min:.3}, max {max:.3} over {} pairs.\n", ov4.len());
        }
    }
    if let Some(l) = &results.layers {
        layers_section(&mut s, results, l, link_prefix);
    }
    s
}

/// The heading, the run's settings, the calibrations and the base model's scores.
fn setup_section(s: &mut String, results: &Results, plan: &super::plan::Plan) {
    let _ = writeln!(s, "## Experiments ({} mode)\n", plan.mode);
    let tasks: Vec<String> = plan.tasks.iter().map(|(t, n)| format!("{} {n}", t.name())).collect();
    let _ = writeln!(
        s,
        "Model `{}`, {} threads. Calibration: GSM8K train (math) vs MMLU test (general), {} samples per set with replacement, seed {}, ≤{} tokens per text. \
         Evaluation items (seeded subset, seed {}): {}. Intervals: 95% paired bootstrap ({} resamples) of rewritten − base on identical items. \
         Wall time so far: {:.1} min.\n",
        results.model,
        results.threads,
        plan.samples,
        plan.seed,
        plan.max_tokens,
        plan.eval_seed,
        tasks.join(", "),
        plan.bootstrap,
        results.wall_seconds / 60.0
    );
    if !results.calibrations.is_empty() {
        let _ = writeln!(s, "| calibration set | samples | seed | tokens | seconds |\n|---|---:|---:|---:|---:|");
        for c in &results.calibrations {
            let secs = if c.cached { "cached".to_string() } else { format!("{:.0}", c.seconds) };
            let _ = writeln!(s, "| {} | {} | {} | {} | {secs} |", c.set, c.samples, c.seed, c.tokens);
        }
        s.push('\n');
    }
    if !results.base.is_empty() {
        let _ = writeln!(s, "### Base model ({:.0} s to evaluate)\n\n| task | metric | n | value [95% CI] | task seconds |\n|---|---|---:|---|---:|", results.base_eval_seconds);
        for b in &results.base {
            let _ = writeln!(s, "| {} | {} | {} | {:.4} [{:.4}, {:.4}] | {:.0} |", b.task, b.metric, b.n, b.value, b.ci95.0, b.ci95.1, b.task_seconds);
        }
        s.push('\n');
    }
}

/// Experiment 5: the per-layer spread, the per-layer and per-kind tables and the plots.
fn layers_section(s: &mut String, results: &Results, l: &super::results::LayerMap, link_prefix: &str) {
    let _ = writeln!(s, "### 5. Where the math weights live ({})\n", l.label);
    let (mean, sd, min, max) = l.layer_spread;
    let _ = writeln!(
        s,
        "Per-layer selected fraction: mean {:.3}%, sd {:.3}% (coefficient of variation {:.2}), min {:.3}%, max {:.3}%.\n",
        mean * 100.0,
        sd * 100.0,
        if mean > 0.0 { sd / mean } else { 0.0 },
        min * 100.0,
        max * 100.0
    );
    let _ = writeln!(s, "| layer | selected |\n|---|---:|");
    for g in &l.per_layer {
        let _ = writeln!(s, "| {} | {:.3}% |", g.group, g.fraction * 100.0);
    }
    let _ = writeln!(s, "\n| matrix kind | selected |\n|---|---:|");
    for g in &l.per_kind {
        let _ = writeln!(s, "| {} | {:.3}% |", g.group, g.fraction * 100.0);
    }
    let _ = writeln!(s, "\n![{}]({link_prefix}{})\n", l.heatmap, l.heatmap);
    plots_for(s, results, "exp5-", link_prefix);
}

fn overlap_table(s: &mut String, ov: &[&super::overlap::MaskOverlap]) {
    if ov.is_empty() {
        return;
    }
    let _ = writeln!(s, "| mask A | mask B | selected in A | selected in B | in both | Jaccard | chance |\n|---|---|---:|---:|---:|---:|---:|");
    for o in ov {
        let _ = writeln!(s, "| {} | {} | {} | {} | {} | {:.3} | {:.4} |", o.a, o.b, o.a_selected, o.b_selected, o.both, o.jaccard, o.chance);
    }
    s.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::overlap::MaskOverlap;
    use crate::experiments::plan::Plan;
    use crate::experiments::results::BaseMetric;

    fn metric(task: &str, name: &str, diff: f64, ci: (f64, f64), hib: bool) -> PairedMetric {
        PairedMetric { task: task.into(), metric: name.into(), higher_is_better: hib, n: 30, base: 1.0, other: 1.0 + diff, diff, ci95: ci, mcnemar_p: None }
    }

    fn results() -> Results {
        let row = |label: &str, e: u8, d: f64| Row {
            experiments: vec![e],
            label: label.into(),
            method: "mathneuro".into(),
            k: 5.0,
            factor: 0.0,
            samples: 100,
            seed: 42,
            selected: 10,
            selected_fraction: 0.012,
            achieved_fraction: 1.0,
            apply_seconds: 3.0,
            eval_seconds: 60.0,
            metrics: vec![metric("gsm8k_nll", "nll_per_token", d, (d - 0.1, d + 0.1), false), metric("arc_easy", "acc", -0.01, (-0.05, 0.03), true)],
        };
        Results {
            plan: Some(Plan::quick()),
            model: "m.gguf".into(),
            threads: 2,
            base: vec![
                BaseMetric { task: "gsm8k_nll".into(), metric: "nll_per_token".into(), n: 30, value: 1.2, ci95: (1.1, 1.3), task_seconds: 30.0 },
                BaseMetric { task: "arc_easy".into(), metric: "acc".into(), n: 60, value: 0.5, ci95: (0.4, 0.6), task_seconds: 15.0 },
                BaseMetric { task: "arc_easy".into(), metric: "acc_norm".into(), n: 60, value: 0.5, ci95: (0.4, 0.6), task_seconds: 15.0 },
            ],
            rows: vec![row("mathneuro K=5 prune", 1, 2.0), row("mathneuro K=5 ×1.1", 2, -0.01)],
            overlaps: vec![
                MaskOverlap { experiment: 4, a: "seed 42".into(), b: "seed 43".into(), a_selected: 10, b_selected: 10, both: 5, either: 15, jaccard: 1.0 / 3.0, chance: 0.01 },
                MaskOverlap { experiment: 4, a: "seed 42".into(), b: "seed 44".into(), a_selected: 10, b_selected: 10, both: 10, either: 10, jaccard: 1.0, chance: 0.01 },
            ],
            plots: vec!["exp1-gsm8k_nll.svg".into()],
            ..Results::default()
        }
    }

    #[test]
    fn report_has_a_section_per_experiment_with_intervals_and_verdicts() {
        let md = render(&results(), "img/");
        assert!(md.contains("## Experiments (quick mode)"));
        assert!(md.contains("### 1. Pruning") && md.contains("### 2. Scaling") && md.contains("### 4. Consistency"));
        assert!(!md.contains("### 3.") && !md.contains("### 5."), "nothing measured for 3 and 5");
        // Primary metrics only: acc_norm is not a column.
        assert!(md.contains("Δ gsm8k_nll nll_per_token") && md.contains("Δ arc_easy acc") && !md.contains("Δ arc_easy acc_norm"));
        // Pruning made NLL higher (worse), interval excludes 0.
        assert!(md.contains("| mathneuro K=5 prune | 1.200% | 100% | +2.000 [+1.900, +2.100] worse | -0.0100 [-0.0500, +0.0300] ~ |"), "{md}");
        assert!(md.contains("![exp1-gsm8k_nll.svg](img/exp1-gsm8k_nll.svg)"));
        assert!(md.contains("Pairwise Jaccard: mean 0.667, min 0.333, max 1.000 over 2 pairs."));
    }

    #[test]
    fn verdict_respects_direction() {
        assert_eq!(verdict(&metric("a", "acc", 0.1, (0.05, 0.2), true)), "better");
        assert_eq!(verdict(&metric("a", "nll", 0.1, (0.05, 0.2), false)), "worse");
        assert_eq!(verdict(&metric("a", "nll", -0.1, (-0.2, -0.05), false)), "better");
        assert_eq!(verdict(&metric("a", "acc", 0.0, (-0.1, 0.1), true)), "~");
        assert_eq!(verdict(&metric("a", "acc", 0.0, (f64::NAN, 0.1), true)), "~");
        assert_eq!(num(f64::INFINITY), "n/a");
    }
}
