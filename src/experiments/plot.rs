//! Small hand-written SVG plots: one dot per (x, series) with a 95% interval whisker, dots of a
//! series joined by a line, a dashed zero line, axis ticks and a legend. No plotting crate.

use std::fmt::Write as _;

/// One point with its interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Position on the x axis.
    pub x: f64,
    /// Value.
    pub y: f64,
    /// Interval low end.
    pub lo: f64,
    /// Interval high end.
    pub hi: f64,
}

/// A named series.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points, in x order.
    pub points: Vec<Point>,
}

/// A dot/line plot.
#[derive(Clone, Debug, PartialEq)]
pub struct Plot {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Series.
    pub series: Vec<Series>,
}

const COLORS: [&str; 6] = ["#d62728", "#1f77b4", "#7f7f7f", "#2ca02c", "#9467bd", "#ff7f0e"];
const W: f64 = 560.0;
const H: f64 = 340.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// A compact number for tick labels.
fn tick_label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e5 {
        format!("{v:.1e}")
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}").trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Where values land on the canvas: the axis ranges (y possibly on a signed log scale) and the
/// plot area.
struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    /// The linear range of a signed log y axis (`None`: linear).
    symlog: Option<f64>,
    plot_w: f64,
    plot_h: f64,
}

impl Frame {
    /// The frame of the finite points `pts`, whose distinct x values are `xs` (sorted); the y
    /// range always holds 0 and every finite interval end.
    fn fit(pts: &[&Point], xs: &[f64]) -> Frame {
        let mut ys: Vec<f64> = vec![0.0];
        for p in pts {
            ys.push(p.y);
            for v in [p.lo, p.hi] {
                if v.is_finite() {
                    ys.push(v);
                }
            }
        }
        // A signed log axis when the values span orders of magnitude (a destroyed model beside
        // small effects), so the small effects stay readable.
        let mut frame = Frame { x0: 0.0, x1: 1.0, y0: 0.0, y1: 0.0, symlog: symlog_threshold(pts), plot_w: W - LEFT - RIGHT, plot_h: H - TOP - BOTTOM };
        let ts: Vec<f64> = ys.iter().map(|&y| frame.ty(y)).collect();
        let (mut y0, mut y1) = (ts.iter().cloned().fold(f64::INFINITY, f64::min), ts.iter().cloned().fold(f64::NEG_INFINITY, f64::max));
        if y1 - y0 < 1e-12 {
            y0 -= 1.0;
            y1 += 1.0;
        }
        let pad = (y1 - y0) * 0.08;
        (frame.y0, frame.y1) = (y0 - pad, y1 + pad);
        (frame.x0, frame.x1) = match (xs.first(), xs.last()) {
            (Some(a), Some(b)) if b > a => (*a, *b),
            (Some(a), _) => (*a - 1.0, *a + 1.0),
            _ => (0.0, 1.0),
        };
        frame
    }

    /// A value on the y axis's scale.
    fn ty(&self, y: f64) -> f64 {
        match self.symlog {
            Some(c) => y.signum() * (y.abs() / c).ln_1p(),
            None => y,
        }
    }

    /// The value at a position `t` of the y axis's scale.
    fn untransform(&self, t: f64) -> f64 {
        match self.symlog {
            Some(c) => t.signum() * c * t.abs().exp_m1(),
            None => t,
        }
    }

    fn px(&self, x: f64) -> f64 {
        LEFT + 20.0 + (x - self.x0) / (self.x1 - self.x0) * (self.plot_w - 40.0)
    }

    fn py(&self, y: f64) -> f64 {
        TOP + (self.y1 - self.ty(y)) / (self.y1 - self.y0) * self.plot_h
    }
}

/// Renders the plot as a self-contained SVG document. Non-finite values are skipped.
pub fn render(plot: &Plot) -> String {
    let pts: Vec<&Point> = plot.series.iter().flat_map(|s| s.points.iter()).filter(finite).collect();
    let mut xs: Vec<f64> = pts.iter().map(|p| p.x).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let f = Frame::fit(&pts, &xs);
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#);
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{LEFT}" y="22" font-size="13">{}</text>"#, crate::svg::escape(&plot.title));
    let _ = writeln!(s, r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#999"/>"##, f.plot_w, f.plot_h);
    axes(&mut s, plot, &f, &xs);
    // Series, nudged sideways so whiskers at the same x do not overlap.
    let n = plot.series.len().max(1) as f64;
    for (si, series) in plot.series.iter().enumerate() {
        draw_series(&mut s, &f, series, si, (si as f64 - (n - 1.0) / 2.0) * 6.0);
    }
    let _ = writeln!(s, r##"<text x="{}" y="{}" fill="#555" font-size="9">whiskers: 95%</text><text x="{}" y="{}" fill="#555" font-size="9">paired bootstrap</text>"##, W - RIGHT + 12.0, TOP + f.plot_h - 12.0, W - RIGHT + 12.0, TOP + f.plot_h);
    s.push_str("</svg>\n");
    s
}

/// A point that can be drawn.
fn finite(p: &&Point) -> bool {
    p.x.is_finite() && p.y.is_finite()
}

/// Y ticks, the dashed zero line, x ticks at the distinct x values `xs`, and the axis labels.
fn axes(s: &mut String, plot: &Plot, f: &Frame, xs: &[f64]) {
    let (plot_w, plot_h) = (f.plot_w, f.plot_h);
    for i in 0..=4 {
        let v = f.untransform(f.y0 + (f.y1 - f.y0) * i as f64 / 4.0);
        let y = f.py(v);
        let _ = writeln!(s, r##"<line x1="{}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}" stroke="#999"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##, LEFT - 4.0, LEFT - 6.0, y + 4.0, tick_label(v));
    }
    if f.y0 < 0.0 && f.y1 > 0.0 {
        let y = f.py(0.0);
        let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#444" stroke-dasharray="4,3"/>"##, LEFT + plot_w);
    }
    for &x in xs {
        let xp = f.px(x);
        let _ = writeln!(s, r##"<line x1="{xp:.1}" y1="{}" x2="{xp:.1}" y2="{}" stroke="#999"/><text x="{xp:.1}" y="{}" text-anchor="middle">{}</text>"##, TOP + plot_h, TOP + plot_h + 4.0, TOP + plot_h + 16.0, tick_label(x));
    }
    let y_label = if f.symlog.is_some() { format!("{} (signed log scale)", plot.y_label) } else { plot.y_label.clone() };
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, LEFT + plot_w / 2.0, H - 12.0, crate::svg::escape(&plot.x_label));
    let _ = writeln!(s, r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#, TOP + plot_h / 2.0, TOP + plot_h / 2.0, crate::svg::escape(&y_label));
}

/// Series number `si`: its line, whiskers and dots moved `nudge` px sideways, and its legend entry.
fn draw_series(s: &mut String, f: &Frame, series: &Series, si: usize, nudge: f64) {
    let color = COLORS[si % COLORS.len()];
    let pts: Vec<&Point> = series.points.iter().filter(finite).collect();
    if pts.len() > 1 {
        let path: Vec<String> = pts.iter().map(|p| format!("{:.1},{:.1}", f.px(p.x) + nudge, f.py(p.y))).collect();
        let _ = writeln!(s, r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5"/>"#, path.join(" "));
    }
    for p in pts {
        let x = f.px(p.x) + nudge;
        if p.lo.is_finite() && p.hi.is_finite() {
            let (lo, hi) = (f.py(p.lo), f.py(p.hi));
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{lo:.1}" x2="{x:.1}" y2="{hi:.1}" stroke="{color}"/><line x1="{:.1}" y1="{lo:.1}" x2="{:.1}" y2="{lo:.1}" stroke="{color}"/><line x1="{:.1}" y1="{hi:.1}" x2="{:.1}" y2="{hi:.1}" stroke="{color}"/>"#,
                x - 3.0,
                x + 3.0,
                x - 3.0,
                x + 3.0,
            );
        }
        let _ = writeln!(
            s,
            r#"<circle cx="{x:.1}" cy="{:.1}" r="3.5" fill="{color}"><title>{} x={}: {} [{}, {}]</title></circle>"#,
            f.py(p.y),
            crate::svg::escape(&series.name),
            tick_label(p.x),
            tick_label(p.y),
            tick_label(p.lo),
            tick_label(p.hi)
        );
    }
    let ly = TOP + 14.0 + 18.0 * si as f64;
    let lx = W - RIGHT + 12.0;
    let _ = writeln!(s, r#"<circle cx="{lx}" cy="{}" r="4" fill="{color}"/><text x="{}" y="{}">{}</text>"#, ly - 4.0, lx + 10.0, ly, crate::svg::escape(&series.name));
}

/// The linear range of a signed log axis, or `None` for a linear axis: used when the largest
/// |value| is over 50 times the smallest non-zero one.
fn symlog_threshold(pts: &[&Point]) -> Option<f64> {
    let mags: Vec<f64> = pts.iter().map(|p| p.y.abs()).filter(|v| *v > 0.0 && v.is_finite()).collect();
    let min = mags.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = mags.iter().cloned().fold(0.0, f64::max);
    (min.is_finite() && max / min > 50.0).then_some(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot() -> Plot {
        Plot {
            title: "Δ gsm8k_nll vs K <prune>".into(),
            x_label: "K (%)".into(),
            y_label: "Δ nll".into(),
            series: vec![
                Series { name: "mathneuro".into(), points: vec![Point { x: 1.0, y: 0.2, lo: 0.1, hi: 0.3 }, Point { x: 5.0, y: 1.5, lo: 1.2, hi: 1.9 }] },
                Series { name: "random".into(), points: vec![Point { x: 1.0, y: 0.0, lo: -0.01, hi: 0.01 }, Point { x: 5.0, y: f64::NAN, lo: f64::NAN, hi: f64::NAN }] },
            ],
        }
    }

    #[test]
    fn svg_has_one_dot_per_finite_point_whiskers_legend_and_escaped_text() {
        let svg = render(&plot());
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // 3 finite points + 2 legend dots.
        assert_eq!(svg.matches("<circle").count(), 5);
        assert_eq!(svg.matches("<polyline").count(), 1, "the random series has one finite point: no line");
        assert!(svg.contains("&lt;prune&gt;") && !svg.contains("<prune>"));
        assert!(svg.contains("stroke-dasharray"), "zero lies inside the range: dashed zero line");
        assert!(svg.contains(">mathneuro</text>") && svg.contains(">random</text>"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert_eq!(svg, render(&plot()), "deterministic");
    }

    #[test]
    fn values_spanning_orders_of_magnitude_get_a_signed_log_axis() {
        let p = |y: f64| Point { x: 5.0, y, lo: y * 0.9, hi: y * 1.1 };
        let wide = Plot {
            title: "t".into(),
            x_label: "K".into(),
            y_label: "Δ".into(),
            series: vec![Series { name: "a".into(), points: vec![p(0.25)] }, Series { name: "b".into(), points: vec![p(1.2)] }, Series { name: "c".into(), points: vec![p(28.0)] }],
        };
        let svg = render(&wide);
        assert!(svg.contains("(signed log scale)"));
        let cy = |name: &str| -> f64 {
            let at = svg.find(&format!("<title>{name} x=")).unwrap();
            let head = &svg[..at];
            let c = head.rfind("cy=\"").unwrap();
            head[c + 4..].split('"').next().unwrap().parse().unwrap()
        };
        // Screen y grows downwards: a (0.25) below b (1.2) below c (28), and b sits well clear
        // of a even though c is 20 times larger.
        let (a, b, c) = (cy("a"), cy("b"), cy("c"));
        assert!(a > b && b > c, "{a} {b} {c}");
        assert!(a - b > 0.2 * (a - c), "log axis keeps small effects apart: {a} {b} {c}");
        let narrow = Plot { series: vec![Series { name: "a".into(), points: vec![p(1.0), Point { x: 6.0, ..p(2.0) }] }], ..wide };
        assert!(!render(&narrow).contains("signed log"));
    }

    #[test]
    fn degenerate_plots_still_render() {
        let empty = Plot { title: "t".into(), x_label: "x".into(), y_label: "y".into(), series: vec![] };
        assert!(render(&empty).contains("</svg>"));
        let one = Plot { series: vec![Series { name: "a".into(), points: vec![Point { x: 5.0, y: 0.0, lo: 0.0, hi: 0.0 }] }], ..empty };
        let svg = render(&one);
        assert!(!svg.contains("NaN"));
        assert_eq!(tick_label(0.05), "0.05");
        assert_eq!(tick_label(10.0), "10");
        assert_eq!(tick_label(1.1), "1.1");
    }
}
