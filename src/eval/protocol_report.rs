//! The protocol report (`mathneuro protocol`): its JSON shape, the Markdown that puts the paper's
//! 200-question protocol beside the full paired test, and `subsets.svg`, the histogram of the
//! relative change over random 200-question subsets with the paper's +4–17 % band marked.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::protocol::{PAPER_RELATIVE_GAINS, PaperAverage, ProtocolAnalysis, ProtocolSettings, Summary};
use super::report::TaskComparison;

/// One edited model's results against the base.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EditResult {
    /// The edited model.
    pub model: PathBuf,
    /// GSM8K, both protocols, per metric (strict-match, flexible-extract).
    pub gsm8k: Vec<ProtocolAnalysis>,
    /// The general tasks, paired with the base.
    pub general: Vec<TaskComparison>,
    /// Wall seconds of this model's evaluation in this run (0 when every item was resumed).
    pub wall_seconds: f64,
    /// sha256 of the edited model's file (what a combined report checks its slices by).
    #[serde(default)]
    pub sha256: String,
}

/// Everything `mathneuro protocol` measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProtocolReport {
    /// The base model.
    pub base: PathBuf,
    /// Wall seconds of the base's evaluation in this run.
    pub base_wall_seconds: f64,
    /// GSM8K questions evaluated (of the test file's).
    pub gsm8k_n: usize,
    /// Items per general task.
    pub general_n: Option<usize>,
    /// How the protocols were computed.
    pub settings: ProtocolSettings,
    /// Per edit.
    pub edits: Vec<EditResult>,
    /// The paper's averaging over calibration draws, per metric (two edits or more).
    pub paper_average: Vec<PaperAverage>,
    /// The command line.
    pub command: String,
    /// Which GSM8K questions, under which conditions (what slices are checked and added by).
    #[serde(flatten)]
    pub coverage: Coverage,
}

/// Which GSM8K questions a report covers and what decided their answers: what
/// `protocol-combine` checks slices by (the fields sit at the top level of protocol.json).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Coverage {
    /// sha256 of the base model's file.
    pub base_sha256: String,
    /// GSM8K questions in the test file.
    pub gsm8k_available: usize,
    /// The GSM8K slice evaluated (`--gsm8k-range`), positions in file order, end exclusive.
    pub gsm8k_range: Option<(usize, usize)>,
    /// Everything that decides a GSM8K answer besides the model and the slice (data sha256,
    /// prompt, decoding, threads, chunking): slices are combined only when these agree.
    pub gsm8k_conditions: String,
    /// For a combined report: the slice reports it adds up, with their ranges.
    pub combined_from: Vec<(PathBuf, (usize, usize))>,
}

fn pct(x: f64) -> String {
    if x.is_finite() { format!("{:.1} %", 100.0 * x) } else { "n/a".into() }
}

fn pts(x: f64) -> String {
    if x.is_finite() { format!("{:+.1}", 100.0 * x) } else { "n/a".into() }
}

fn rel(x: Option<f64>) -> String {
    x.map_or("n/a (base 0)".into(), |r| format!("{:+.1} %", 100.0 * r))
}

fn summary_row(label: &str, s: &Summary) -> String {
    format!(
        "| {label} | {} | {} | {} | {} | [{}, {}] | {} | {}/{}, p = {:.2} |",
        s.n,
        pct(s.base),
        pct(s.edit),
        pts(s.delta),
        pts(s.ci95.0),
        pts(s.ci95.1),
        rel(s.relative),
        s.base_only,
        s.edit_only,
        s.mcnemar_p
    )
}

fn gsm8k_section(out: &mut String, e: &EditResult, k: usize) {
    let _ = writeln!(out, "## Edit {}: `{}`\n", k + 1, e.model.display());
    let _ = writeln!(out, "| protocol | N | base | edit | Δ points | 95 % paired CI | relative | McNemar base-only/edit-only |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for a in &e.gsm8k {
        let _ = writeln!(out, "{}", summary_row(&format!("GSM8K {} — full paired", a.metric), &a.full));
        if let Some(p) = &a.paper {
            let _ = writeln!(out, "{}", summary_row(&format!("GSM8K {} — paper (first {} in file order)", a.metric, p.n), p));
        }
    }
    for t in &e.general {
        for m in &t.metrics {
            let mc = m.mcnemar.as_ref().map_or("–".to_string(), |x| format!("{}/{}, p = {:.2}", x.base_only, x.other_only, x.p));
            let _ = writeln!(
                out,
                "| {} {} | {} | {} | {} | {} | [{}, {}] | – | {} |",
                t.task,
                m.name,
                t.n,
                pct(m.base),
                pct(m.other),
                pts(m.diff),
                pts(m.diff_ci95.0),
                pts(m.diff_ci95.1),
                mc
            );
        }
    }
    let _ = writeln!(out, "\nThe paper's protocol as a draw: relative change (edit − base) / base on random {}-question subsets of the full paired run:\n", e.gsm8k.first().map_or(0, |a| a.subsets.n));
    let _ = writeln!(out, "| metric | subsets | 2.5 % | 25 % | median | 75 % | 97.5 % | ≥ +4 % | ≥ +17 % | ≤ −4 % | paper slice's rank |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for a in &e.gsm8k {
        let d = &a.subsets;
        let q: Vec<String> = d.quantiles.iter().map(|&(_, v)| rel(Some(v))).collect();
        let _ = writeln!(
            out,
            "| {} | {} ({} undefined) | {} | {} | {} | {} | {} |",
            a.metric,
            d.draws,
            d.undefined,
            q.join(" | "),
            pct(d.share_ge_paper_low),
            pct(d.share_ge_paper_high),
            pct(d.share_le_minus_paper_low),
            a.paper_slice_rank.map_or("n/a".into(), |r| format!("{:.0} % of subsets ≥ it", 100.0 * r))
        );
    }
    let _ = writeln!(out, "\nWall time of this model's evaluation in this run: {:.1} min.\n", e.wall_seconds / 60.0);
}

/// Which questions: the slice, or the slices combined, and whether they cover the test file.
fn coverage(r: &ProtocolReport) -> String {
    let n = r.gsm8k_n;
    let r = &r.coverage;
    let whole = |n: usize| if r.gsm8k_available > 0 && n == r.gsm8k_available { " (the whole test file)".to_string() } else { format!(" of {}", r.gsm8k_available) };
    if !r.combined_from.is_empty() {
        let ranges: Vec<String> = r.combined_from.iter().map(|(_, (a, b))| format!("{a}..{b}")).collect();
        return format!(", combined from {} slices ({}){}", ranges.len(), ranges.join(", "), whole(n));
    }
    match r.gsm8k_range {
        Some((a, b)) => format!(", positions {a}..{b} in file order (one slice){}", whole(n)),
        None => String::new(),
    }
}

/// The Markdown report.
pub fn markdown(r: &ProtocolReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# The paper's protocol beside the full paired test\n");
    let _ = writeln!(s, "- base: `{}` (evaluated in {:.1} min in this run)", r.base.display(), r.base_wall_seconds / 60.0);
    let general = r.general_n.map_or("none".to_string(), |n| format!("N = {n} each"));
    let _ = writeln!(s, "- GSM8K: 8-shot CoT (lm-eval `gsm8k_cot`), greedy, N = {} test questions{}; general tasks: {general}", r.gsm8k_n, coverage(r));
    let _ = writeln!(
        s,
        "- paper protocol: the first {} test questions in file order (lm-eval `limit`); subsets: {} random draws of {} questions, seed {}; paired bootstrap {} resamples",
        r.settings.paper_n, r.settings.draws, r.settings.paper_n, r.settings.seed, r.settings.resamples
    );
    let _ = writeln!(s, "- the paper reports +{:.0} % to +{:.0} % relative for ×1.1 on GSM8K", 100.0 * PAPER_RELATIVE_GAINS[0], 100.0 * PAPER_RELATIVE_GAINS[1]);
    let _ = writeln!(s, "- command: `{}`\n", r.command);
    for (k, e) in r.edits.iter().enumerate() {
        gsm8k_section(&mut s, e, k);
    }
    if !r.paper_average.is_empty() {
        let _ = writeln!(s, "## The edits averaged, as the paper's code averages its calibration draws (first {} questions)\n", r.settings.paper_n);
        let _ = writeln!(s, "| metric | draws | base | each draw | mean | relative (mean) | single-draw range |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for a in &r.paper_average {
            let each: Vec<String> = a.per_edit.iter().map(|&x| pct(x)).collect();
            let range = a.single_draw_range.map_or("n/a".into(), |(lo, hi)| format!("{} to {}", rel(Some(lo)), rel(Some(hi))));
            let _ = writeln!(s, "| {} | {} | {} | {} | {} | {} | {} |", a.metric, a.edits, pct(a.base), each.join(", "), pct(a.mean_edit), rel(a.relative), range);
        }
        s.push('\n');
    }
    let _ = writeln!(s, "Histogram of the subsets' relative change: [subsets.svg](subsets.svg)\n\n![relative change over random subsets](subsets.svg)");
    s
}

const W: f64 = 640.0;
const H: f64 = 300.0;
const LEFT: f64 = 50.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 50.0;

/// The histogram of the first edit's relative change over random subsets (flexible-extract when
/// present), with the paper's band, zero, the full test's change and the paper slice's.
pub fn subsets_svg(r: &ProtocolReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#);
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let Some(a) = r.edits.first().and_then(|e| e.gsm8k.iter().find(|a| a.metric == "flexible-extract").or(e.gsm8k.first())) else {
        s.push_str("</svg>\n");
        return s;
    };
    let rels = &a.subsets.relative;
    let lo = rels.first().copied().unwrap_or(-0.5).min(-PAPER_RELATIVE_GAINS[1]) - 0.02;
    let hi = rels.last().copied().unwrap_or(0.5).max(PAPER_RELATIVE_GAINS[1]) + 0.02;
    let bins = 40usize;
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &v in rels {
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let x = |v: f64| LEFT + (v - lo) / (hi - lo) * (W - LEFT - RIGHT);
    let y = |c: f64| H - BOTTOM - c / max * (H - TOP - BOTTOM);
    let _ = writeln!(s, r#"<text x="10" y="20" font-size="14" font-weight="bold">GSM8K {}: relative change on {} random {}-question subsets</text>"#, crate::svg::escape(&a.metric), a.subsets.draws, a.subsets.n);
    let first = a.paper.as_ref().map_or("not in this run".to_string(), |p| format!("first {} questions ({})", p.n, rel(p.relative)));
    let _ = writeln!(s, r##"<text x="10" y="38" fill="#555">green band: the paper's +4 % to +17 %; black: full test ({}); blue: {first}</text>"##, rel(a.full.relative));
    let _ = writeln!(s, r##"<rect x="{:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="#d9f0d3"/>"##, x(PAPER_RELATIVE_GAINS[0]), x(PAPER_RELATIVE_GAINS[1]) - x(PAPER_RELATIVE_GAINS[0]), H - TOP - BOTTOM);
    for (k, &c) in counts.iter().enumerate() {
        let x0 = x(lo + k as f64 * width);
        let _ = writeln!(s, r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#888"/>"##, y(c as f64), (x(lo + width) - x(lo) - 1.0).max(0.5), H - BOTTOM - y(c as f64));
    }
    let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##, H - BOTTOM, W - RIGHT, H - BOTTOM);
    let mut marks = vec![(0.0, "#999", "0")];
    if let Some(v) = a.full.relative {
        marks.push((v, "#000", "full"));
    }
    if let Some(v) = a.paper.as_ref().and_then(|p| p.relative) {
        marks.push((v, "#2166ac", "first 200"));
    }
    for (v, color, label) in marks {
        let _ = writeln!(s, r#"<line x1="{:.1}" y1="{TOP}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"/>"#, x(v), x(v), H - BOTTOM);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" fill="{color}" font-size="10" text-anchor="middle">{label}</text>"#, x(v), TOP - 2.0);
    }
    let step = if hi - lo > 1.0 { 0.25 } else { 0.1 };
    let mut t = (lo / step).ceil() * step;
    while t <= hi {
        let _ = writeln!(s, r##"<text x="{:.1}" y="{:.1}" fill="#555" font-size="10" text-anchor="middle">{:+.0} %</text>"##, x(t), H - BOTTOM + 16.0, 100.0 * t);
        t += step;
    }
    let _ = writeln!(s, r##"<text x="{:.1}" y="{:.1}" fill="#555" text-anchor="middle">(edit − base) / base</text>"##, W / 2.0, H - 10.0);
    s.push_str("</svg>\n");
    s
}
