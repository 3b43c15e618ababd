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
//!
//! The **knapsack** ([`knapsack`]) spends measured sensitivity by the byte instead of by rank:
//! a step down of tensor j costs its measured KLD rise `l_j` and saves `s_j` bytes; a step up of
//! tensor i gains `g_i` (measured with `sensitivity --direction up`, or estimated from `l_i`)
//! and costs `c_i` bytes. Promotions are taken in order of `g/c`, each paid for by the demotions
//! of lowest `l/s`, and only when what the promotion gains exceeds what its demotions lose — so
//! it stops by itself where the exchange stops paying, with no share to choose.

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
    /// Measured sensitivity spent as a [`knapsack`]: the step-down file, and optionally the
    /// step-up file (without it, gains are estimated from the step-down losses).
    Knapsack {
        /// `sensitivity --direction down` output.
        down: std::path::PathBuf,
        /// `sensitivity --direction up` output.
        up: Option<std::path::PathBuf>,
    },
}

impl Scores {
    /// The name recorded in the output (`mathneuro-mass@K=5`, `sensitivity=FILE`).
    pub fn name(&self) -> String {
        match self {
            Scores::MathNeuro { top_k_percent } => format!("mathneuro-mass@K={top_k_percent}"),
            Scores::Sensitivity(p) => format!("sensitivity={}", p.display()),
            Scores::Knapsack { down, up: None } => format!("knapsack={}", down.display()),
            Scores::Knapsack { down, up: Some(up) } => format!("knapsack={},{}", down.display(), up.display()),
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
    /// The knapsack's own forecast, in the sensitivity files' units (math KLD): the sum of the
    /// gains its promotions were scored with and of the losses its demotions were. Assumes the
    /// tensors' effects add up; only a measured KLD says whether they do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<Forecast>,
}

/// What the knapsack expects its moves to change (see [`Exchange::forecast`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Forecast {
    /// Sum of the promoted tensors' gains.
    pub gain: f64,
    /// Sum of the demoted tensors' losses.
    pub loss: f64,
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

/// Bits per weight of tensor `t` stored as `ty`.
fn bits(t: &TensorInfo, ty: GgmlType) -> f64 {
    bytes_as(t, ty) as f64 * 8.0 / t.n_elements().max(1) as f64
}

/// The gain of a step up estimated from the measured loss `loss` of a step down, for a tensor
/// at `from` with neighbours `down` and `up`: quantization error falls by 2^(−2·Δbits), so the
/// up step removes `1 − 2^(−2·Δb_up)` of the current error where the down step adds
/// `2^(2·Δb_down) − 1` of it (a step of one bit each way: a quarter of the loss).
pub fn estimated_gain(t: &TensorInfo, from: GgmlType, down: GgmlType, up: GgmlType, loss: f64) -> f64 {
    let (b0, bd, bu) = (bits(t, from), bits(t, down), bits(t, up));
    loss * (1.0 - (-2.0 * (bu - b0)).exp2()) / ((2.0 * (b0 - bd)).exp2() - 1.0).max(f64::EPSILON)
}

/// One possible move: a tensor, its new type, the bytes it adds (a promotion) or saves (a
/// demotion), and its measured or estimated KLD gain or loss.
#[derive(Clone, Debug)]
struct Move<'a> {
    t: &'a TensorInfo,
    to: GgmlType,
    bytes: i64,
    value: f64,
}

/// The knapsack allocation (see the module doc) on `stock`: `down` holds each tensor's measured
/// KLD rise for a step down, `up` (optional) its measured KLD fall for a step up; without `up`
/// the gain is [`estimated_gain`]. Each tensor moves at most one step. The result is never larger
/// than the stock mix and never more than 1 % smaller.
pub fn knapsack(model: &GgufFile, stock: &HashMap<String, GgmlType>, down: &HashMap<String, f64>, up: Option<&HashMap<String, f64>>) -> (HashMap<String, GgmlType>, Exchange) {
    let stock_bytes = total_bytes(model, stock);
    let floor = stock_bytes as i64 - (stock_bytes / 100) as i64;
    let (mut promotions, mut demotions) = (Vec::new(), Vec::new());
    for t in &model.tensors {
        let Some(&from) = stock.get(&t.name) else { continue };
        let (dn, upt) = (step(from, false, t.row_len()), step(from, true, t.row_len()));
        let loss = down.get(&t.name).copied().filter(|v| v.is_finite());
        if let (Some(d), Some(l)) = (dn, loss) {
            demotions.push(Move { t, to: d, bytes: bytes_as(t, from) as i64 - bytes_as(t, d) as i64, value: l });
        }
        let gain = match (up, upt) {
            (Some(u), Some(_)) => u.get(&t.name).copied().filter(|v| v.is_finite()),
            (None, Some(u)) => dn.zip(loss).map(|(d, l)| estimated_gain(t, from, d, u, l)),
            _ => None,
        };
        if let (Some(u), Some(g)) = (upt, gain) {
            promotions.push(Move { t, to: u, bytes: bytes_as(t, u) as i64 - bytes_as(t, from) as i64, value: g });
        }
    }
    let per_byte = |m: &Move| m.value / m.bytes.max(1) as f64;
    // Best promotion first; cheapest demotion first; names break ties.
    promotions.sort_by(|a, b| per_byte(b).total_cmp(&per_byte(a)).then_with(|| a.t.name.cmp(&b.t.name)));
    demotions.sort_by(|a, b| per_byte(a).total_cmp(&per_byte(b)).then_with(|| a.t.name.cmp(&b.t.name)));
    let mut types = stock.clone();
    let mut total = stock_bytes as i64;
    let mut ex = Exchange { stock_bytes, ..Exchange::default() };
    let moved = |types: &HashMap<String, GgmlType>, name: &str| types[name] != stock[name];
    for p in &promotions {
        if p.value <= 0.0 || moved(&types, &p.t.name) {
            continue;
        }
        // Pay for it with the cheapest demotions still available (never the tensor itself).
        let (mut need, mut lost, mut pay) = (total + p.bytes - stock_bytes as i64, 0.0, Vec::new());
        let mut after = total + p.bytes;
        for d in demotions.iter().filter(|d| d.t.name != p.t.name && !moved(&types, &d.t.name)) {
            if need <= 0 {
                break;
            }
            if after - d.bytes < floor {
                continue;
            }
            need -= d.bytes;
            after -= d.bytes;
            lost += d.value;
            pay.push(d);
        }
        if need > 0 || lost >= p.value {
            continue;
        }
        types.insert(p.t.name.clone(), p.to);
        ex.promoted.push(p.t.name.clone());
        let f = ex.forecast.get_or_insert_with(Forecast::default);
        f.gain += p.value;
        f.loss += lost;
        for d in pay {
            types.insert(d.t.name.clone(), d.to);
            ex.demoted.push(d.t.name.clone());
        }
        total = after;
    }
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

    /// A toy model of eight 256-wide tensors at Q4_K, plus its stock map.
    fn toy(dir: &std::path::Path) -> (GgufFile, HashMap<String, GgmlType>) {
        use crate::gguf::synth::{SynthModel, encode_plain};
        let mut m = SynthModel::new("toy");
        for l in 0..8 {
            m = m.tensor(&format!("blk.{l}.ffn_down.weight"), &[256, 64], GgmlType::F32, l);
        }
        let path = dir.join("m.gguf");
        m.write(&path, &encode_plain).unwrap();
        let file = GgufFile::open(&path).unwrap();
        let stock = file.tensors.iter().map(|t| (t.name.clone(), GgmlType::Q4_K)).collect();
        (file, stock)
    }

    fn losses(v: [f64; 8]) -> HashMap<String, f64> {
        v.iter().enumerate().map(|(l, &x)| (format!("blk.{l}.ffn_down.weight"), x)).collect()
    }

    /// One step of one bit each way: the estimated gain of a step up is a quarter of the loss
    /// of a step down (the quantization error model behind the estimate).
    #[test]
    fn the_estimated_gain_of_a_one_bit_step_is_a_quarter_of_the_loss() {
        let dir = tempfile::tempdir().unwrap();
        let (file, _) = toy(dir.path());
        let t = &file.tensors[0];
        let g = estimated_gain(t, GgmlType::Q4_K, GgmlType::Q3_K, GgmlType::Q5_K, 1.0);
        // Q3_K 3.4375, Q4_K 4.5, Q5_K 5.5 bits per weight.
        let want = (1.0 - 0.25) / ((2.0f64 * 1.0625).exp2() - 1.0);
        assert!((g - want).abs() < 1e-12, "{g} vs {want}");
    }

    /// A tensor far more sensitive than the rest is promoted, paid for by the least sensitive,
    /// and the file stays within 1 % under the stock size; where gains no longer beat losses
    /// (all tensors alike), nothing moves.
    #[test]
    fn the_knapsack_promotes_only_where_the_gain_beats_what_it_costs() {
        let dir = tempfile::tempdir().unwrap();
        let (file, stock) = toy(dir.path());
        let (types, ex) = knapsack(&file, &stock, &losses([40.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]), None);
        assert_eq!(ex.promoted, vec!["blk.0.ffn_down.weight".to_string()], "{ex:?}");
        assert_eq!(types["blk.0.ffn_down.weight"], GgmlType::Q5_K);
        assert!(!ex.demoted.is_empty() && ex.demoted.iter().all(|n| types[n] == GgmlType::Q3_K), "{ex:?}");
        assert!(ex.bytes <= ex.stock_bytes && ex.bytes * 100 >= ex.stock_bytes * 99, "{ex:?}");
        assert_eq!(ex.bytes, total_bytes(&file, &types));
        let (same, none) = knapsack(&file, &stock, &losses([1.0; 8]), None);
        assert_eq!(same, stock, "{none:?}");
        assert!(none.promoted.is_empty() && none.demoted.is_empty() && none.forecast.is_none());
    }

    /// Measured gains (a `--direction up` file) replace the estimate: a tensor whose step up
    /// gains much is promoted even though its step down costs little.
    #[test]
    fn measured_gains_replace_the_estimate() {
        let dir = tempfile::tempdir().unwrap();
        let (file, stock) = toy(dir.path());
        let down = losses([1.0; 8]);
        let up = losses([0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0]);
        let (types, ex) = knapsack(&file, &stock, &down, Some(&up));
        assert_eq!(ex.promoted, vec!["blk.3.ffn_down.weight".to_string()], "{ex:?}");
        // The forecast is the promoted gain against the losses of the demotions that paid for it.
        let f = ex.forecast.expect("a knapsack that moved something forecasts");
        assert_eq!(f.gain, 5.0);
        assert_eq!(f.loss, ex.demoted.len() as f64);
        assert_eq!(types["blk.3.ffn_down.weight"], GgmlType::Q5_K);
        assert!(ex.bytes <= ex.stock_bytes, "{ex:?}");
    }
}
