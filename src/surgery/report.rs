//! What a rewrite did: tallies per block and tensor, the per-layer and per-kind summary, and the
//! JSON, markdown and SVG heat-map renderings of the report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use wide::f32x8;

/// Running totals over blocks of one tensor (merged across rows).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct BlockTally {
    /// Quantization blocks in the tensor (elements for float types).
    pub blocks: u64,
    /// Blocks holding at least one selected entry.
    pub blocks_touched: u64,
    /// Touched blocks whose bytes were re-encoded (the rest kept their bytes: nothing changed).
    pub blocks_rewritten: u64,
    /// Selected entries.
    pub selected: u64,
    /// Σ over selected entries of (intended − original)².
    pub intended_sq: f64,
    /// Σ over selected entries of (new − original)·(intended − original).
    pub achieved_dot: f64,
    /// Selected entries whose new value equals the intended value exactly.
    pub selected_exact: u64,
    /// Largest |new − intended| over selected entries.
    pub selected_max_abs_err: f64,
    /// Non-selected entries inside touched blocks.
    pub collateral_entries: u64,
    /// Σ over those of (new − original)².
    pub collateral_change_sq: f64,
    /// Σ over those of original².
    pub collateral_orig_sq: f64,
}

impl BlockTally {
    /// Adds one touched block: original, intended and new (decoded) values, the selection as a
    /// flag per entry and as the increasing offsets of the flagged entries. Non-selected entries
    /// are summed in eight lanes without branches (a fixed order: the totals are the same bytes on
    /// every run); the few selected ones one by one.
    pub fn record(&mut self, orig: &[f32], target: &[f32], new: &[f32], sel: &[bool], selected: &[usize]) {
        // Within a block (≤ 256 entries) f32 lanes are precise enough for a report; blocks add
        // up in f64.
        let (mut change, mut orig_sq) = (f32x8::ZERO, f32x8::ZERO);
        let lanes = |v: &[f32]| f32x8::new(v.try_into().expect("8 lanes"));
        let n8 = orig.len() / 8 * 8;
        for j in (0..n8).step_by(8) {
            let keep = f32x8::new(std::array::from_fn(|l| if sel[j + l] { 0.0 } else { 1.0 }));
            let (o, n) = (lanes(&orig[j..j + 8]), lanes(&new[j..j + 8]));
            change += keep * (n - o) * (n - o);
            orig_sq += keep * o * o;
        }
        let (mut change, mut orig_sq) = (change.to_array(), orig_sq.to_array());
        for j in n8..orig.len() {
            let keep = if sel[j] { 0.0 } else { 1.0 };
            change[j % 8] += keep * (new[j] - orig[j]) * (new[j] - orig[j]);
            orig_sq[j % 8] += keep * orig[j] * orig[j];
        }
        for &j in selected {
            let (o, t, n) = (orig[j] as f64, target[j] as f64, new[j] as f64);
            self.intended_sq += (t - o) * (t - o);
            self.achieved_dot += (n - o) * (t - o);
            self.selected_exact += (new[j] == target[j]) as u64;
            self.selected_max_abs_err = self.selected_max_abs_err.max((n - t).abs());
        }
        self.selected += selected.len() as u64;
        self.collateral_entries += (orig.len() - selected.len()) as u64;
        self.collateral_change_sq += change.iter().map(|&x| x as f64).sum::<f64>();
        self.collateral_orig_sq += orig_sq.iter().map(|&x| x as f64).sum::<f64>();
    }

    /// Sum of two tallies.
    pub fn merge(mut self, o: BlockTally) -> BlockTally {
        self.blocks += o.blocks;
        self.blocks_touched += o.blocks_touched;
        self.blocks_rewritten += o.blocks_rewritten;
        self.selected += o.selected;
        self.intended_sq += o.intended_sq;
        self.achieved_dot += o.achieved_dot;
        self.selected_exact += o.selected_exact;
        self.selected_max_abs_err = self.selected_max_abs_err.max(o.selected_max_abs_err);
        self.collateral_entries += o.collateral_entries;
        self.collateral_change_sq += o.collateral_change_sq;
        self.collateral_orig_sq += o.collateral_orig_sq;
        self
    }

    /// Achieved fraction of the intended change: projection of the change made onto the change
    /// intended, Σ(new−orig)(intended−orig) / Σ(intended−orig)² (1 when nothing was intended).
    pub fn achieved_fraction(&self) -> f64 {
        if self.intended_sq == 0.0 { 1.0 } else { self.achieved_dot / self.intended_sq }
    }

    /// Selected entries exactly at their intended value, over the selected entries (for a prune:
    /// the fraction that is exactly 0; 1 when nothing was selected).
    pub fn exact_fraction(&self) -> f64 {
        if self.selected == 0 { 1.0 } else { self.selected_exact as f64 / self.selected as f64 }
    }

    /// RMS change of the non-selected entries in touched blocks.
    pub fn collateral_rms(&self) -> f64 {
        if self.collateral_entries == 0 { 0.0 } else { (self.collateral_change_sq / self.collateral_entries as f64).sqrt() }
    }

    /// That RMS change relative to the RMS of those entries' original values.
    pub fn collateral_relative(&self) -> f64 {
        if self.collateral_orig_sq == 0.0 { 0.0 } else { (self.collateral_change_sq / self.collateral_orig_sq).sqrt() }
    }
}

/// The report of one target weight.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TensorReport {
    /// Tensor name.
    pub name: String,
    /// Layer (`blk.N`), `None` for `output.weight`.
    pub layer: Option<usize>,
    /// Matrix kind (`attn_q`, `ffn_down`, …).
    pub kind: String,
    /// Element type in the input.
    pub ggml_type: String,
    /// Element type written (differs with `--edit promote=TYPE` and the master flow).
    pub stored_type: String,
    /// Entries.
    pub numel: u64,
    /// k of the top-k rule.
    pub k: u64,
    /// Selected fraction of the entries.
    pub selected_fraction: f64,
    /// Achieved fraction of the intended change (see `BlockTally::achieved_fraction`).
    pub achieved_fraction: f64,
    /// RMS change of non-selected entries in touched blocks.
    pub collateral_rms: f64,
    /// The same, relative to those entries' RMS.
    pub collateral_relative: f64,
    /// Raw tallies.
    #[serde(flatten)]
    pub tally: BlockTally,
}

/// Achieved fraction and collateral over the targets of one input type written as one type.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TypeSummary {
    /// Input type.
    pub ggml_type: String,
    /// Type written.
    pub stored_type: String,
    /// Target tensors in the group.
    pub tensors: usize,
    /// Their tallies, summed.
    pub tally: BlockTally,
    /// Achieved fraction of the intended change.
    pub achieved_fraction: f64,
    /// RMS change of the non-selected entries counted as collateral.
    pub collateral_rms: f64,
    /// The same, relative to those entries' RMS.
    pub collateral_relative: f64,
}

/// One summary per (input type, stored type), in order of first appearance.
pub fn per_type(tensors: &[TensorReport]) -> Vec<TypeSummary> {
    let mut out: Vec<TypeSummary> = Vec::new();
    for t in tensors {
        let i = match out.iter().position(|g| g.ggml_type == t.ggml_type && g.stored_type == t.stored_type) {
            Some(i) => i,
            None => {
                out.push(TypeSummary {
                    ggml_type: t.ggml_type.clone(),
                    stored_type: t.stored_type.clone(),
                    tensors: 0,
                    tally: BlockTally::default(),
                    achieved_fraction: 0.0,
                    collateral_rms: 0.0,
                    collateral_relative: 0.0,
                });
                out.len() - 1
            }
        };
        let g = &mut out[i];
        g.tensors += 1;
        g.tally = std::mem::take(&mut g.tally).merge(t.tally.clone());
        g.achieved_fraction = g.tally.achieved_fraction();
        g.collateral_rms = g.tally.collateral_rms();
        g.collateral_relative = g.tally.collateral_relative();
    }
    out
}

/// Selected fraction of a group (a layer or a matrix kind).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct GroupFraction {
    /// Layer number or kind name.
    pub group: String,
    /// Entries in the group's targets.
    pub numel: u64,
    /// Entries selected.
    pub selected: u64,
    /// selected / numel.
    pub fraction: f64,
}

fn fraction(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn group_by(tensors: &[TensorReport], key: impl Fn(&TensorReport) -> String) -> Vec<GroupFraction> {
    let mut order: Vec<String> = Vec::new();
    let mut sums: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for t in tensors {
        let k = key(t);
        if !sums.contains_key(&k) {
            order.push(k.clone());
        }
        let e = sums.entry(k).or_default();
        e.0 += t.numel;
        e.1 += t.tally.selected;
    }
    order
        .into_iter()
        .map(|g| {
            let (numel, selected) = sums[&g];
            GroupFraction { group: g, numel, selected, fraction: fraction(selected, numel) }
        })
        .collect()
}

/// Selected fraction per layer (`output` for the untied head), in layer order: by number (0, 1,
/// 2, …, 10), whatever order the file stores its tensors in, with the head last.
pub fn per_layer(tensors: &[TensorReport]) -> Vec<GroupFraction> {
    let mut groups = group_by(tensors, |t| t.layer.map_or_else(|| "output".to_string(), |l| l.to_string()));
    groups.sort_by_key(|g| g.group.parse::<usize>().unwrap_or(usize::MAX));
    groups
}

/// Selected fraction per matrix kind, in order of first appearance.
pub fn per_kind(tensors: &[TensorReport]) -> Vec<GroupFraction> {
    group_by(tensors, |t| t.kind.clone())
}

/// Mean, population standard deviation, min and max of the per-layer fractions.
pub fn spread(groups: &[GroupFraction]) -> (f64, f64, f64, f64) {
    let xs: Vec<f64> = groups.iter().map(|g| g.fraction).collect();
    if xs.is_empty() {
        return (0.0, 0.0, 0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / xs.len() as f64;
    (mean, var.sqrt(), xs.iter().cloned().fold(f64::INFINITY, f64::min), xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max))
}

/// Heat map of the selected fraction, layers (rows) × matrix kinds (columns), as a small
/// self-contained SVG.
pub fn heatmap_svg(tensors: &[TensorReport], title: &str) -> String {
    let layers: Vec<String> = per_layer(tensors).into_iter().map(|g| g.group).collect();
    let kinds: Vec<String> = per_kind(tensors).into_iter().map(|g| g.group).collect();
    let value = |l: &str, k: &str| {
        tensors
            .iter()
            .find(|t| t.kind == k && t.layer.map_or_else(|| "output".to_string(), |x| x.to_string()) == l)
            .map(|t| t.selected_fraction)
    };
    let max = tensors.iter().map(|t| t.selected_fraction).fold(0.0f64, f64::max).max(1e-12);
    let (cw, ch, left, top) = (78.0, 18.0, 60.0, 70.0);
    let width = left + cw * kinds.len() as f64 + 20.0;
    let height = top + ch * layers.len() as f64 + 50.0;
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#);
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{left}" y="20" font-size="14">{}</text>"#, crate::svg::escape(title));
    let _ = writeln!(s, r#"<text x="{left}" y="38">selected fraction per layer × matrix kind (darkest = {:.3}%)</text>"#, max * 100.0);
    for (ci, k) in kinds.iter().enumerate() {
        let x = left + cw * ci as f64 + cw / 2.0;
        let _ = writeln!(s, r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#, top - 6.0, crate::svg::escape(k));
    }
    for (ri, l) in layers.iter().enumerate() {
        let y = top + ch * ri as f64;
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, left - 6.0, y + ch * 0.7, crate::svg::escape(l));
        for (ci, k) in kinds.iter().enumerate() {
            let x = left + cw * ci as f64;
            match value(l, k) {
                Some(v) => {
                    let t = (v / max).clamp(0.0, 1.0);
                    let (r, g, b) = (255.0 - 75.0 * t, 255.0 - 215.0 * t, 255.0 - 215.0 * t);
                    let ink = if t > 0.6 { "white" } else { "black" };
                    let _ = writeln!(
                        s,
                        r##"<rect x="{x}" y="{y}" width="{cw}" height="{ch}" fill="rgb({:.0},{:.0},{:.0})" stroke="#ccc"><title>{} {}: {:.4}%</title></rect><text x="{}" y="{}" text-anchor="middle" fill="{ink}">{:.2}%</text>"##,
                        r, g, b, crate::svg::escape(l), crate::svg::escape(k), v * 100.0, x + cw / 2.0, y + ch * 0.7, v * 100.0
                    );
                }
                None => {
                    let _ = writeln!(s, r##"<rect x="{x}" y="{y}" width="{cw}" height="{ch}" fill="#eee" stroke="#ccc"/>"##);
                }
            }
        }
    }
    let _ = writeln!(s, r#"<text x="{left}" y="{}">rows: layer, columns: matrix kind</text>"#, top + ch * layers.len() as f64 + 25.0);
    s.push_str("</svg>\n");
    s
}


#[cfg(test)]
mod tests {
    use super::*;

    fn t(layer: Option<usize>) -> TensorReport {
        TensorReport {
            name: format!("blk.{layer:?}.attn_q.weight"),
            layer,
            kind: "attn_q".into(),
            ggml_type: "Q4_K".into(),
            stored_type: "Q4_K".into(),
            numel: 10,
            k: 1,
            selected_fraction: 0.1,
            achieved_fraction: 1.0,
            collateral_rms: 0.0,
            collateral_relative: 0.0,
            tally: BlockTally { selected: 1, ..BlockTally::default() },
        }
    }

    #[test]
    fn layers_sort_by_number_whatever_the_file_order() {
        // Name-sorted files store blk.0, blk.1, blk.10, blk.11, blk.2, …
        let tensors: Vec<TensorReport> = [Some(0), Some(1), Some(10), Some(11), Some(2), None, Some(3)].into_iter().map(t).collect();
        let order: Vec<String> = per_layer(&tensors).into_iter().map(|g| g.group).collect();
        assert_eq!(order, ["0", "1", "2", "3", "10", "11", "output"]);
    }
}
