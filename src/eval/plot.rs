//! The before/after plot of a comparison (`diff.svg`, linked from report.md): one row per task
//! and metric, the difference other − base as a dot with its 95% paired interval as a whisker,
//! against a dashed zero line. Metrics differ in scale (accuracy, NLL per token, perplexity),
//! so each row has its own symmetric axis around zero, written at its ends; a row is green
//! when the interval excludes zero in the better direction, red in the worse, grey otherwise.

use std::fmt::Write as _;

use super::report::ComparisonReport;

const ROW: f64 = 34.0;
const LABEL_W: f64 = 230.0;
const PLOT_W: f64 = 360.0;
const VALUE_W: f64 = 250.0;
const TOP: f64 = 46.0;


/// The SVG of `c`'s differences.
pub fn diff_svg(c: &ComparisonReport) -> String {
    let rows: Vec<(String, &super::report::MetricComparison, usize)> =
        c.tasks.iter().flat_map(|t| t.metrics.iter().map(move |m| (format!("{} {}{}", t.task, m.name, if m.higher_is_better { " ↑" } else { " ↓" }), m, t.n))).collect();
    let width = LABEL_W + PLOT_W + VALUE_W;
    let height = TOP + ROW * rows.len().max(1) as f64 + 30.0;
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#);
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="10" y="20" font-size="14" font-weight="bold">other − base, 95% paired bootstrap interval</text>"#);
    let _ = writeln!(s, r##"<text x="10" y="36" fill="#555">{} vs {}; each row has its own scale (±max shown at the ends)</text>"##, crate::svg::escape(&short(&c.other.model)), crate::svg::escape(&short(&c.base.model)));
    let x0 = LABEL_W + PLOT_W / 2.0;
    for (k, (label, m, n)) in rows.iter().enumerate() {
        let y = TOP + ROW * k as f64 + ROW / 2.0;
        let (lo, hi) = m.diff_ci95;
        let span = [lo.abs(), hi.abs(), m.diff.abs()].into_iter().filter(|v| v.is_finite()).fold(0.0f64, f64::max);
        let span = if span > 0.0 { span * 1.15 } else { 1.0 };
        let x = |v: f64| x0 + (v / span).clamp(-1.0, 1.0) * PLOT_W / 2.0;
        let better = if m.higher_is_better { lo > 0.0 } else { hi < 0.0 };
        let worse = if m.higher_is_better { hi < 0.0 } else { lo > 0.0 };
        let color = if better { "#1a9850" } else if worse { "#d73027" } else { "#555555" };
        if k % 2 == 0 {
            let _ = writeln!(s, r##"<rect x="0" y="{:.1}" width="{width}" height="{ROW}" fill="#f4f4f4"/>"##, y - ROW / 2.0);
        }
        let _ = writeln!(s, r#"<text x="10" y="{:.1}">{}</text>"#, y + 4.0, crate::svg::escape(label));
        let _ = writeln!(s, r##"<line x1="{x0:.1}" y1="{:.1}" x2="{x0:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="4,3"/>"##, y - 12.0, y + 12.0);
        let _ = writeln!(s, r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ccc"/>"##, LABEL_W, LABEL_W + PLOT_W);
        let _ = writeln!(s, r##"<text x="{:.1}" y="{:.1}" fill="#888" font-size="9">−{}</text>"##, LABEL_W, y + 14.0, fmt(span));
        let _ = writeln!(s, r##"<text x="{:.1}" y="{:.1}" fill="#888" font-size="9" text-anchor="end">+{}</text>"##, LABEL_W + PLOT_W, y + 14.0, fmt(span));
        if lo.is_finite() && hi.is_finite() {
            let _ = writeln!(s, r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2"/>"#, x(lo), x(hi));
            for v in [lo, hi] {
                let _ = writeln!(s, r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"/>"#, x(v), y - 5.0, x(v), y + 5.0);
            }
        }
        if m.diff.is_finite() {
            let _ = writeln!(s, r#"<circle cx="{:.1}" cy="{y:.1}" r="4.5" fill="{color}"/>"#, x(m.diff));
        }
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}">{} [{}, {}]  N={n}</text>"#, LABEL_W + PLOT_W + 12.0, y + 4.0, signed(m.diff), signed(lo), signed(hi));
    }
    s.push_str("</svg>\n");
    s
}

fn short(p: &std::path::Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn fmt(v: f64) -> String {
    if v >= 100.0 { format!("{v:.0}") } else if v >= 1.0 { format!("{v:.2}") } else { format!("{v:.3}") }
}

fn signed(v: f64) -> String {
    if v.is_finite() { format!("{v:+.4}") } else { "–".into() }
}
