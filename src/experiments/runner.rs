//! The experiments runner: calibrates (or loads cached STATS) with one loaded model, measures
//! the cheap things first (mask overlaps, the layer map), evaluates the base model once, then
//! each setting, rewriting `results.json`, `results.md` and the plots after every step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;

use super::markdown;
use super::overlap::overlap;
use super::plan::Plan;
use super::plot::{Plot, Point, Series, render};
use super::results::{LayerMap, Results, base_metrics};
use super::setting::{SettingContext, SettingSpec, run_setting};
use super::stats_cache;
use super::suite::evaluate_suite;
use crate::calibrate::{CalibrateOptions, Calibrator};
use crate::data::calibration;
use crate::eval::EvalOptions;
use crate::ffi::llama::Model;
use crate::gguf::GgufFile;
use crate::select::{Method, SelectOptions, Selection, TensorSelection};
use crate::stats::ActivationStats;
use crate::surgery::report::{BlockTally, TensorReport, heatmap_svg, per_kind, per_layer, spread};

/// Where and how to run.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// The base GGUF model.
    pub model: PathBuf,
    /// Output directory (STATS cache, temporary models, results, plots).
    pub out: PathBuf,
    /// The data directory (already resolved).
    pub data_dir: PathBuf,
    /// The math calibration set (`gsm8k`, `math`, … as `calibrate --data`).
    pub math_data: String,
    /// CPU threads.
    pub threads: usize,
    /// What to run.
    pub plan: Plan,
    /// No progress lines on stderr (`--quiet`).
    pub quiet: bool,
    /// Calibration texts and generation prompts in the model's chat template (`--chat`).
    pub chat: bool,
}

/// Set by `run_experiments` from [`RunnerOptions::quiet`]: progress lines come from several
/// stages, and this keeps one switch instead of threading a flag through each.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A progress line on stderr, unless `--quiet`.
macro_rules! say {
    ($($t:tt)*) => {
        if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!($($t)*);
        }
    };
}

type StatsPair = (ActivationStats, ActivationStats);

fn minutes(s: f64) -> String {
    format!("{:.1} min", s / 60.0)
}

/// Calibrates every (samples, seed) of the plan on the math set (GSM8K unless asked otherwise)
/// and MMLU, loading the model only if something is not cached.
fn calibrate_all(opts: &RunnerOptions, results: &mut Results) -> anyhow::Result<BTreeMap<(usize, u64), StatsPair>> {
    let math_set = calibration::load(&opts.math_data, Some(&opts.data_dir))?;
    let general_set = calibration::load("mmlu", Some(&opts.data_dir))?;
    let mut out = BTreeMap::new();
    let needed = opts.plan.calibrations();
    let all_cached = needed
        .iter()
        .all(|&(n, seed)| stats_cache::load_cached(&opts.out, &math_set, n, seed, opts.chat).is_some() && stats_cache::load_cached(&opts.out, &general_set, n, seed, opts.chat).is_some());
    let model = if all_cached { None } else { Some(Model::load(&opts.model).with_context(|| format!("loading {}", opts.model.display()))?) };
    let copts = CalibrateOptions { threads: opts.threads, max_tokens: opts.plan.max_tokens, parse_special: opts.chat, ..CalibrateOptions::default() };
    let mut cal = match &model {
        Some(m) => Some(Calibrator::new(m, &copts).with_context(|| opts.model.display().to_string())?),
        None => None,
    };
    for &(n, seed) in &needed {
        let mut pair = Vec::new();
        for set in [&math_set, &general_set] {
            let (stats, rec) = match cal.as_mut() {
                Some(c) => stats_cache::ensure(c, &opts.out, set, n, seed, opts.chat)?,
                None => {
                    let s = stats_cache::load_cached(&opts.out, set, n, seed, opts.chat).context("cached STATS vanished")?;
                    let rec = stats_cache::CalibrationRecord { set: set.name.clone(), samples: n, seed, tokens: s.tokens, seconds: 0.0, cached: true };
                    (s, rec)
                }
            };
            say!(
                "calibration {} n={n} seed={seed}: {} tokens, {}",
                rec.set,
                rec.tokens,
                if rec.cached { "cached".to_string() } else { format!("{:.0} s ({:.0} tok/s)", rec.seconds, rec.tokens as f64 / rec.seconds.max(1e-9)) }
            );
            results.calibrations.push(rec);
            pair.push(stats);
        }
        let general = pair.pop().expect("two sets");
        let math = pair.pop().expect("two sets");
        out.insert((n, seed), (math, general));
    }
    Ok(out)
}

fn select_mask(model: &GgufFile, pool: &rayon::ThreadPool, stats: &StatsPair, k: f64, seed: u64) -> anyhow::Result<Selection> {
    let opts = SelectOptions { method: Method::MathNeuro, top_k_percent: k, seed };
    Ok(pool.install(|| crate::select::select(model, &stats.0, &stats.1, &opts))?)
}

/// The settings of experiments 1–3, each once, tagged with every experiment that uses it.
pub fn settings(plan: &Plan) -> Vec<(SettingSpec, Vec<u8>)> {
    let mut list: Vec<(SettingSpec, Vec<u8>)> = Vec::new();
    let mut add = |spec: SettingSpec, e: u8| match list.iter_mut().find(|(s, _)| *s == spec) {
        Some((_, tags)) => tags.push(e),
        None => list.push((spec, vec![e])),
    };
    let (n, seed) = (plan.samples, plan.seed);
    if plan.runs(1) {
        for &k in &plan.prune_ks {
            for &method in &plan.prune_methods {
                add(SettingSpec { method, k, factor: 0.0, samples: n, seed }, 1);
            }
        }
    }
    if plan.runs(2) {
        for &k in &plan.scale_ks {
            for &factor in &plan.scales {
                add(SettingSpec { method: Method::MathNeuro, k, factor, samples: n, seed }, 2);
            }
        }
    }
    if plan.runs(3) {
        for &factor in &plan.efficiency_factors {
            for samples in [plan.efficiency_samples, n] {
                add(SettingSpec { method: Method::MathNeuro, k: plan.reference_k, factor, samples, seed }, 3);
            }
        }
    }
    list
}

/// Plots of experiments 1 (x = K, one series per method) and 2 (x = factor, one series per K)
/// for every primary metric; returns the files written (relative to `dir`).
fn write_plots(results: &Results, samples: usize, dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    let n = samples;
    for (task, metric) in markdown::primary_metrics(results) {
        let point = |r: &super::results::Row, x: f64| r.metric(&task, &metric).map(|m| Point { x, y: m.diff, lo: m.ci95.0, hi: m.ci95.1 });
        let exp1: Vec<_> = results.rows.iter().filter(|r| r.experiments.contains(&1) && r.factor == 0.0 && r.samples == n).collect();
        let mut methods: Vec<&str> = exp1.iter().map(|r| r.method.as_str()).collect();
        methods.dedup();
        methods.sort_unstable();
        methods.dedup();
        if !exp1.is_empty() {
            let series = methods
                .iter()
                .map(|m| Series { name: m.to_string(), points: exp1.iter().filter(|r| r.method == *m).filter_map(|r| point(r, r.k)).collect() })
                .collect();
            let plot = Plot { title: format!("Pruning: Δ {task} {metric} vs K"), x_label: "K (% of each matrix)".into(), y_label: format!("Δ {metric} (pruned − base)"), series };
            files.push(write_svg(dir, &format!("exp1-{task}.svg"), &render(&plot))?);
        }
        let exp2: Vec<_> = results.rows.iter().filter(|r| r.experiments.contains(&2) && r.samples == n).collect();
        if !exp2.is_empty() {
            let mut ks: Vec<f64> = exp2.iter().map(|r| r.k).collect();
            ks.sort_by(f64::total_cmp);
            ks.dedup();
            let series = ks
                .iter()
                .map(|k| Series { name: format!("K={k}%"), points: exp2.iter().filter(|r| r.k == *k).filter_map(|r| point(r, r.factor as f64)).collect() })
                .collect();
            let plot = Plot { title: format!("Scaling: Δ {task} {metric} vs factor"), x_label: "scale factor s".into(), y_label: format!("Δ {metric} (scaled − base)"), series };
            files.push(write_svg(dir, &format!("exp2-{task}.svg"), &render(&plot))?);
        }
    }
    Ok(files)
}

/// Redraws the plots of experiments 1 and 2 from an earlier run's `DIR/results.json`.
pub fn replot(dir: &Path) -> anyhow::Result<Vec<String>> {
    let path = dir.join("results.json");
    let text = crate::safety::inputs::read_text(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let rows: Vec<super::results::Row> = serde_json::from_value(v["rows"].clone()).with_context(|| format!("{}: rows", path.display()))?;
    let base: Vec<super::results::BaseMetric> = serde_json::from_value(v["base"].clone()).with_context(|| format!("{}: base", path.display()))?;
    let samples = v["plan"]["samples"].as_u64().with_context(|| format!("{}: plan.samples missing", path.display()))? as usize;
    write_plots(&Results { rows, base, ..Results::default() }, samples, dir)
}

fn write_svg(dir: &Path, name: &str, svg: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    crate::atomic::write_bytes_atomic(&path, svg.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(name.to_string())
}

fn save(results: &mut Results, dir: &Path, t0: Instant) -> anyhow::Result<()> {
    results.wall_seconds = t0.elapsed().as_secs_f64();
    let samples = results.plan.as_ref().map_or(0, |p| p.samples);
    let mut plots = write_plots(results, samples, dir)?;
    if results.layers.is_some() {
        plots.push("exp5-layers.svg".into());
    }
    results.plots = plots;
    results.save(dir)?;
    let md = markdown::render(results, "");
    let path = dir.join("results.md");
    crate::atomic::write_bytes_atomic(&path, md.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Runs the plan; writes `results.json`, `results.md` and SVG plots into `opts.out`.
pub fn run_experiments(opts: &RunnerOptions) -> anyhow::Result<Results> {
    let t0 = Instant::now();
    QUIET.store(opts.quiet, std::sync::atomic::Ordering::Relaxed);
    let plan = &opts.plan;
    std::fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    say!(
        "experiments ({} mode, {:?}): {} calibrations, {} evaluated settings + base; one evaluation ≈ {}; estimated total ≈ {} (2 busy cores; cached STATS make it shorter)",
        plan.mode,
        plan.only,
        plan.calibrations().len() * 2,
        plan.settings_count(),
        minutes(plan.eval_seconds()),
        minutes(plan.estimate_seconds())
    );
    let mut results = Results { plan: Some(plan.clone()), model: opts.model.display().to_string(), threads: opts.threads, ..Results::default() };

    let stats = calibrate_all(opts, &mut results)?;
    say!("calibration done at {}", minutes(t0.elapsed().as_secs_f64()));
    let main = stats.get(&(plan.samples, plan.seed)).context("main STATS missing")?;
    let model_file = GgufFile::open(&opts.model).with_context(|| format!("reading {}", opts.model.display()))?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(opts.threads).build().context("starting worker threads")?;

    // Cheap measurements first: overlaps (3, 4) and the layer map (5).
    if plan.runs(3) || plan.runs(4) {
        measure_overlaps(plan, &model_file, &pool, &stats, &mut results)?;
    }
    if plan.runs(5) {
        results.layers = Some(map_layers(opts, &model_file, &pool, main)?);
    }
    save(&mut results, &opts.out, t0)?;

    let settings = settings(plan);
    if settings.is_empty() {
        return Ok(results);
    }
    evaluate_settings(opts, &settings, &stats, &model_file, &pool, &mut results, t0)?;
    say!("experiments done in {}", minutes(t0.elapsed().as_secs_f64()));
    Ok(results)
}

/// Experiments 3 and 4: overlaps of the selections of fewer samples and of other seeds with the
/// main selection.
fn measure_overlaps(plan: &Plan, model_file: &GgufFile, pool: &rayon::ThreadPool, stats: &BTreeMap<(usize, u64), StatsPair>, results: &mut Results) -> anyhow::Result<()> {
    let k = plan.reference_k;
    let main = stats.get(&(plan.samples, plan.seed)).context("main STATS missing")?;
    let main_mask = select_mask(model_file, pool, main, k, plan.seed)?;
    let label = |n: usize, seed: u64| format!("n={n} seed {seed}");
    if plan.runs(3) {
        let small = stats.get(&(plan.efficiency_samples, plan.seed)).context("small-sample STATS missing")?;
        let small_mask = select_mask(model_file, pool, small, k, plan.seed)?;
        let o = overlap(3, &label(plan.efficiency_samples, plan.seed), &small_mask, &label(plan.samples, plan.seed), &main_mask)?;
        say!("exp 3: Jaccard({} vs {}) = {:.3}", o.a, o.b, o.jaccard);
        results.overlaps.push(o);
    }
    if plan.runs(4) {
        let mut masks = vec![(plan.seed, main_mask)];
        for i in 1..plan.consistency_seeds as u64 {
            let seed = plan.seed + i;
            let s = stats.get(&(plan.samples, seed)).context("seed STATS missing")?;
            masks.push((seed, select_mask(model_file, pool, s, k, plan.seed)?));
        }
        for i in 0..masks.len() {
            for j in i + 1..masks.len() {
                let o = overlap(4, &label(plan.samples, masks[i].0), &masks[i].1, &label(plan.samples, masks[j].0), &masks[j].1)?;
                say!("exp 4: Jaccard({} vs {}) = {:.3}", o.a, o.b, o.jaccard);
                results.overlaps.push(o);
            }
        }
    }
    Ok(())
}

/// Experiment 5: where the main selection lies (heat map, per-layer plot and spread), read from
/// the selection in memory: the fractions are the selection's, no model needs writing.
fn map_layers(opts: &RunnerOptions, model_file: &GgufFile, pool: &rayon::ThreadPool, main: &StatsPair) -> anyhow::Result<LayerMap> {
    let plan = &opts.plan;
    let k = plan.reference_k;
    let spec = SettingSpec { method: Method::MathNeuro, k, factor: 0.0, samples: plan.samples, seed: plan.seed };
    let selection = select_mask(model_file, pool, main, k, plan.seed).context("exp 5: selecting")?;
    anyhow::ensure!(selection.selected() > 0, "exp 5: the main selection (MathNeuro K={k}%) selects no entry");
    let tensors = selection_reports(&selection);
    let title = format!("MathNeuro K={k}%, {} samples, seed {}: math-specific weights", plan.samples, plan.seed);
    let heatmap = write_svg(&opts.out, "exp5-heatmap.svg", &heatmap_svg(&tensors, &title))?;
    let layers = per_layer(&tensors);
    let layer_plot = Plot {
        title: "Selected fraction per layer".into(),
        x_label: "layer".into(),
        y_label: "selected fraction (%)".into(),
        series: vec![Series {
            name: format!("K={k}%"),
            points: layers.iter().filter_map(|g| g.group.parse::<f64>().ok().map(|x| Point { x, y: g.fraction * 100.0, lo: f64::NAN, hi: f64::NAN })).collect(),
        }],
    };
    write_svg(&opts.out, "exp5-layers.svg", &render(&layer_plot))?;
    let s = spread(&layers);
    say!("exp 5: per-layer selected fraction mean {:.3}% sd {:.3}% (min {:.3}%, max {:.3}%)", s.0 * 100.0, s.1 * 100.0, s.2 * 100.0, s.3 * 100.0);
    Ok(LayerMap { label: spec.label(plan.samples).replace(" prune", ""), per_layer: layers, per_kind: per_kind(&tensors), layer_spread: s, heatmap })
}

/// Each target's apply report as far as the selection makes it (name, layer, kind, entries,
/// selected count and fraction), which is all the layer map reads; the rewrite tallies stay
/// empty as nothing is rewritten. An apply counts as selected exactly the mask's entries (each
/// lies in a touched block), so the layer map's numbers are the same.
fn selection_reports(selection: &Selection) -> Vec<TensorReport> {
    let tally = |ts: &TensorSelection| BlockTally { selected: ts.selected, ..BlockTally::default() };
    selection.tensors.iter().map(|ts| crate::surgery::tensor_report(ts, ts.ggml_type, tally(ts))).collect()
}

/// Evaluates the base model, then every setting against it, saving the results after each.
fn evaluate_settings(
    opts: &RunnerOptions,
    settings: &[(SettingSpec, Vec<u8>)],
    stats: &BTreeMap<(usize, u64), StatsPair>,
    model_file: &GgufFile,
    pool: &rayon::ThreadPool,
    results: &mut Results,
    t0: Instant,
) -> anyhow::Result<()> {
    let plan = &opts.plan;
    let mut eval = EvalOptions::new(Vec::new(), opts.data_dir.clone());
    eval.seed = plan.eval_seed;
    eval.bootstrap = plan.bootstrap;
    eval.engine.threads = opts.threads;
    eval.progress = false;
    eval.chat = opts.chat;
    let tb = Instant::now();
    let base = {
        let m = Model::load(&opts.model).with_context(|| format!("loading {}", opts.model.display()))?;
        evaluate_suite(&m, &plan.tasks, &eval).context("evaluating the base model")?
    };
    results.base_eval_seconds = tb.elapsed().as_secs_f64();
    results.base = base_metrics(&base);
    say!("base model evaluated in {:.0} s", results.base_eval_seconds);
    save(results, &opts.out, t0)?;

    let ctx = SettingContext { model: model_file, dir: &opts.out, pool, eval: &eval, tasks: &plan.tasks, base: &base };
    let ts = Instant::now();
    for (i, (spec, tags)) in settings.iter().enumerate() {
        let pair = stats.get(&(spec.samples, spec.seed)).context("STATS missing for a setting")?;
        let (row, _) = run_setting(&ctx, spec, plan.samples, &pair.0, &pair.1, tags)?;
        let done = i + 1;
        let per = ts.elapsed().as_secs_f64() / done as f64;
        let summary: Vec<String> = markdown::primary_metrics(results)
            .iter()
            .filter_map(|(t, m)| row.metric(t, m).map(|pm| format!("Δ{t} {}", markdown::with_ci(pm.diff, pm.ci95))))
            .collect();
        say!(
            "[{done}/{}] {} (exp {:?}): selected {:.3}%, {}; {:.0} s; ETA {}",
            settings.len(),
            row.label,
            tags,
            row.selected_fraction * 100.0,
            summary.join(", "),
            row.apply_seconds + row.eval_seconds,
            minutes(per * (settings.len() - done) as f64)
        );
        results.rows.push(row);
        save(results, &opts.out, t0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgmlType;
    use crate::gguf::synth::{SynthModel, encode_plain};
    use crate::select::synth::synthetic_stats;
    use crate::surgery::{ApplyOptions, Change};

    #[test]
    fn layer_map_from_the_selection_equals_the_one_from_an_apply_report() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toy.gguf");
        SynthModel::toy_transformer(3, 32, 64, 16, GgmlType::F16).write(&path, &encode_plain).unwrap();
        let model = GgufFile::open(&path).unwrap();
        let (math, general) = (synthetic_stats(&model, 1, 4, "math"), synthetic_stats(&model, 2, 4, "general"));
        let select = SelectOptions { method: Method::MathNeuro, top_k_percent: 10.0, seed: 0 };
        let selection = crate::select::select(&model, &math, &general, &select).unwrap();
        let out = dir.path().join("pruned.gguf");
        let aopts = ApplyOptions { select, force: true, write_modelfile: false, write_report: false, progress: false, ..ApplyOptions::new(Change::Prune, &out) };
        let report = crate::surgery::apply(&model, &math, &general, &aopts).unwrap();
        let ours = selection_reports(&selection);
        assert_eq!(per_layer(&ours), per_layer(&report.tensors));
        assert_eq!(per_kind(&ours), per_kind(&report.tensors));
        assert_eq!(heatmap_svg(&ours, "t"), heatmap_svg(&report.tensors, "t"));
        assert_eq!(spread(&per_layer(&ours)), spread(&per_layer(&report.tensors)));
    }
}
