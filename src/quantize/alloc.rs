//! Allocation: which tensors of a stock mix move a type up or down, at the stock mix's size.
//!
//! A source of per-tensor **scores** ranks the tensors (higher = needs precision more); the
//! **greedy exchange** then promotes the highest-scored share one step up its tensor's ladder —
//! the K-quant ladder (Q2_K → Q3_K → Q4_K → Q5_K → Q6_K → Q8_0) for rows of whole 256-blocks,
//! the ladder of the 32-wide types (Q4_0 → Q4_1 → Q5_0 → Q5_1 → Q8_0) for rows of whole
//! 32-blocks only, where llama-quantize's fallbacks put them — and, for each promotion, demotes the
//! lowest-scored tensors one step down until the file is no larger than the stock mix, passing
//! over a tensor whose step would take the file more than 1 % under it. When no tensor is left
//! to demote, the last promotion is undone and the exchange stops. So the result is never
//! larger than the stock mix and never more than 1 % smaller.
//!
//! Score sources ([`Scores`], the extension point): MathNeuro's statistics (the share of a
//! tensor's entries selected as math-specific at K, `quantize::mass`) or a measured
//! sensitivity file (per tensor, how much math KLD rises when it alone goes a step lower;
//! JSON `{"tensor": score, …}`, written by a separate measuring stage).

use std::collections::HashMap;

use crate::gguf::{GgmlType, GgufFile, TensorInfo};

/// The K-quant ladder: tensors whose rows are whole 256-blocks move along it.
pub const LADDER: [GgmlType; 6] = [GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_0];

/// The ladder of the 32-wide block types (4.5, 5, 5.5, 6 and 8.5 bits per weight): tensors whose
/// rows are whole 32-blocks but not 256-blocks (Gemma 3 270M's 640, Qwen2.5-0.5B's 896) move
/// along it. llama-quantize's fallbacks for such rows are on it (Q2_K/Q3_K → Q4_0, Q4_K → Q5_0,
/// Q5_K → Q5_1, Q6_K → Q8_0); nothing below Q4_0 is, so such a tensor is never demoted past it.
pub const LADDER_32: [GgmlType; 5] = [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0];

/// The ladder a tensor with rows of `row_len` moves along (empty when its rows are not whole
/// 32-blocks: it keeps its type).
pub fn ladder(row_len: u64) -> &'static [GgmlType] {
    if row_len.is_multiple_of(256) {
        &LADDER
    } else if row_len.is_multiple_of(32) {
        &LADDER_32
    } else {
        &[]
    }
}

/// One step up (`up`) or down from `ty` on the ladder of rows of `row_len`, if there is one.
pub fn step(ty: GgmlType, up: bool, row_len: u64) -> Option<GgmlType> {
    let ladder = ladder(row_len);
    let i = ladder.iter().position(|&t| t == ty)?;
    if up { ladder.get(i + 1).copied() } else { i.checked_sub(1).map(|j| ladder[j]) }
}

/// Bytes of tensor `t` stored as `ty`.
pub fn bytes_as(t: &TensorInfo, ty: GgmlType) -> u64 {
    ty.bytes_for(t.n_elements()).unwrap_or_else(|| t.n_bytes())
}

/// Bytes of all tensor data of `model` under `types`.
pub fn total_bytes(model: &GgufFile, types: &HashMap<String, GgmlType>) -> u64 {
    model.tensors.iter().map(|t| bytes_as(t, types.get(&t.name).copied().unwrap_or(t.ggml_type))).sum()
}

/// Where the per-tensor scores come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Scores {
    /// MathNeuro's statistics: the selected share of each target at K (percent).
    MathNeuro {
        /// K in percent.
        top_k_percent: f64,
    },
    /// A measured sensitivity file (JSON object tensor → score).
    Sensitivity(std::path::PathBuf),
}

impl Scores {
    /// The name recorded in the output (`mathneuro-mass@K=5`, `sensitivity=FILE`).
    pub fn name(&self) -> String {
        match self {
            Scores::MathNeuro { top_k_percent } => format!("mathneuro-mass@K={top_k_percent}"),
            Scores::Sensitivity(p) => format!("sensitivity={}", p.display()),
        }
    }
}

/// What the exchange did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Exchange {
    /// Tensors moved a step up, highest score first.
    pub promoted: Vec<String>,
    /// Tensors moved a step down, lowest score first.
    pub demoted: Vec<String>,
    /// Tensor bytes of the stock mix.
    pub stock_bytes: u64,
    /// Tensor bytes after the exchange.
    pub bytes: u64,
}

/// The greedy exchange on `stock` (see the module doc): `share` (0..=1) of the scored tensors
/// that can move are candidates for promotion. Tensors without a score, or whose stock type
/// is off their rows' [`ladder`], keep their stock type.
pub fn exchange(model: &GgufFile, stock: &HashMap<String, GgmlType>, scores: &HashMap<String, f64>, share: f64) -> (HashMap<String, GgmlType>, Exchange) {
    let mut types = stock.clone();
    let stock_bytes = total_bytes(model, stock);
    let mut movable: Vec<(&TensorInfo, f64)> = model
        .tensors
        .iter()
        .filter(|t| stock.get(&t.name).is_some_and(|ty| ladder(t.row_len()).contains(ty)))
        .filter_map(|t| scores.get(&t.name).filter(|s| s.is_finite()).map(|&s| (t, s)))
        .collect();
    // Highest score first; the name breaks ties so the order never depends on the map.
    movable.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.name.cmp(&b.0.name)));
    let n_promote = ((share.clamp(0.0, 1.0) * movable.len() as f64).round() as usize).min(movable.len());
    let mut total = stock_bytes as i64;
    // A demotion never takes the file below 1 % under the stock mix: a tensor whose one step
    // saves more than that (a large head stepping Q8_0 → Q5_1) is passed over, not demoted.
    let floor = stock_bytes as i64 - (stock_bytes / 100) as i64;
    let mut ex = Exchange { stock_bytes, ..Exchange::default() };
    // Demotion candidates are taken from the end of the ranking.
    let mut low = movable.len();
    'promote: for i in 0..n_promote {
        let (t, _) = movable[i];
        let Some(up) = step(types[&t.name], true, t.row_len()) else { continue };
        let gain = bytes_as(t, up) as i64 - bytes_as(t, types[&t.name]) as i64;
        total += gain;
        let mut demoted_now = Vec::new();
        while total > stock_bytes as i64 {
            if low <= i + 1 {
                // Nothing left to pay with: undo this promotion and what it demoted, and stop.
                total -= gain;
                for (name, ty, saved) in demoted_now.into_iter().rev() {
                    types.insert(name, ty);
                    total += saved;
                    ex.demoted.pop();
                }
                break 'promote;
            }
            low -= 1;
            let (d, _) = movable[low];
            let from = types[&d.name];
            let down = step(from, false, d.row_len()).filter(|&down| total - (bytes_as(d, from) as i64 - bytes_as(d, down) as i64) >= floor);
            if let Some(down) = down {
                let saved = bytes_as(d, from) as i64 - bytes_as(d, down) as i64;
                types.insert(d.name.clone(), down);
                total -= saved;
                ex.demoted.push(d.name.clone());
                demoted_now.push((d.name.clone(), from, saved));
            } else {
                demoted_now.push((d.name.clone(), from, 0));
                ex.demoted.push(d.name.clone());
            }
        }
        types.insert(t.name.clone(), up);
        ex.promoted.push(t.name.clone());
    }
    // Tensors at the bottom of the ladder were passed over, not demoted.
    ex.demoted.retain(|n| types[n] != stock[n]);
    ex.bytes = total as u64;
    debug_assert_eq!(ex.bytes, total_bytes(model, &types));
    (types, ex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_steps_one_type_and_stops_at_its_ends() {
        assert_eq!(step(GgmlType::Q3_K, true, 1536), Some(GgmlType::Q4_K));
        assert_eq!(step(GgmlType::Q3_K, false, 1536), Some(GgmlType::Q2_K));
        assert_eq!(step(GgmlType::Q2_K, false, 1536), None);
        assert_eq!(step(GgmlType::Q8_0, true, 1536), None);
        assert_eq!(step(GgmlType::F16, true, 1536), None);
        assert_eq!(step(GgmlType::Q6_K, true, 1536), Some(GgmlType::Q8_0));
    }

    /// Rows of whole 32-blocks but not 256-blocks (Qwen2.5-0.5B's 896) move along the 32-wide
    /// ladder; K-quants are off it there, and rows of neither keep their type.
    #[test]
    fn rows_of_32_blocks_move_along_the_32_wide_ladder() {
        assert_eq!(step(GgmlType::Q4_0, true, 896), Some(GgmlType::Q4_1));
        assert_eq!(step(GgmlType::Q4_1, true, 896), Some(GgmlType::Q5_0));
        assert_eq!(step(GgmlType::Q5_0, false, 896), Some(GgmlType::Q4_1));
        assert_eq!(step(GgmlType::Q5_1, true, 896), Some(GgmlType::Q8_0));
        assert_eq!(step(GgmlType::Q4_0, false, 896), None);
        assert_eq!(step(GgmlType::Q8_0, true, 896), None);
        assert_eq!(step(GgmlType::Q3_K, true, 896), None);
        assert_eq!(step(GgmlType::Q8_0, false, 1536), Some(GgmlType::Q6_K));
        assert_eq!(step(GgmlType::Q8_0, false, 896), Some(GgmlType::Q5_1));
        assert!(ladder(100).is_empty());
        let bpw = |t: GgmlType| t.bytes_for(32 * 256).unwrap();
        assert!(LADDER_32.windows(2).all(|w| bpw(w[0]) < bpw(w[1])), "the 32-wide ladder grows in size");
    }

    /// A tensor whose one step saves more than 1 % of the file (Qwen2.5-0.5B's untied head,
    /// Q8_0 → Q5_1) is passed over, so the result stays within 1 % under the stock mix.
    #[test]
    fn a_demotion_that_would_overshoot_by_more_than_one_percent_is_passed_over() {
        use crate::gguf::synth::{SynthModel, encode_plain};
        let dir = tempfile::tempdir().unwrap();
        let mut m = SynthModel::new("toy");
        for l in 0..8 {
            m = m.tensor(&format!("blk.{l}.attn_q.weight"), &[896, 64], GgmlType::F32, l);
        }
        m = m.tensor("output.weight", &[896, 1024], GgmlType::F32, 99);
        let path = dir.path().join("m.gguf");
        m.write(&path, &encode_plain).unwrap();
        let file = GgufFile::open(&path).unwrap();
        let mut stock: HashMap<String, GgmlType> = file.tensors.iter().map(|t| (t.name.clone(), GgmlType::Q4_0)).collect();
        stock.insert("output.weight".into(), GgmlType::Q8_0);
        // The head ranks last, so it is the first demotion candidate.
        let scores: HashMap<String, f64> = file.tensors.iter().map(|t| (t.name.clone(), if t.name == "output.weight" { 0.0 } else { 1.0 + t.name.len() as f64 })).collect();
        let (types, ex) = exchange(&file, &stock, &scores, 0.5);
        assert_eq!(types["output.weight"], GgmlType::Q8_0, "{ex:?}");
        assert!(ex.bytes <= ex.stock_bytes && ex.bytes * 100 >= ex.stock_bytes * 99, "{ex:?}");
    }
}
