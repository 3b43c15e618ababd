//! `--edit keep` for a block whose in-grid edit clamped a target (its new value lies beyond the
//! unit's grid): a unit's scale is widened only when that lowers the importance-weighted squared
//! error of the block against the intended values (importance: the STATS' Σx²; a unit's scale
//! moves only its own entries, so the unit's error decides for the whole block).
//!
//! Per clamped unit, scales between the current one and the one that just covers every target
//! are tried (a few evenly spaced codes; for Q4_K with the min too), each with every entry of the
//! unit re-rounded to its target on the new grid; the best that beats the unit as it is wins.
//! Then, for the K-quants, the super-block widening (`regrid::widen_block`, every entry moves) is
//! taken only when it lowers the whole block's error further. Nothing here calls ggml's
//! quantizer: non-selected entries move only inside a unit whose widening paid for itself.

use super::half::{f16_to_f32, f32_to_f16_up, half, put_half};
use super::layout::{Q8_0_OR_Q5_0_D, q4_1, q4_k, q5_1, q6_k};

// Q4_1 and Q5_1 keep `d` and `m` at the same offsets.
const _: () = assert!(q4_1::D == q5_1::D && q4_1::M == q5_1::M);
use super::regrid::{self, GridType, grid, q4k_scale_min, q4k_set_scale_min, round_code, unit_len};
use crate::ffi::ggml::{self, CodecError};
use crate::gguf::GgmlType;

/// Candidate scales tried per unit (besides the unit as it is).
const STEPS: usize = 6;

/// The scale fields of one unit.
#[derive(Clone, Copy, Debug)]
enum UnitScale {
    /// Q8_0 / Q5_0: the block's f16 `d`.
    Half(u16),
    /// Q6_K: the unit's signed 8-bit scale code.
    Code(i8),
    /// Q4_K: the sub-block's 6-bit scale and min codes.
    ScaleMin(u8, u8),
    /// Q4_1 / Q5_1: the block's f16 `d` and `m`.
    HalfMin(u16, u16),
}

/// Importance-weighted squared error of `dec` against `target` over `range`.
fn weighted_error(dec: &[f32], target: &[f32], w: Option<&[f32]>, range: std::ops::Range<usize>) -> f64 {
    range
        .map(|j| {
            let e = (dec[j] - target[j]) as f64;
            w.map_or(1.0, |w| w[j] as f64 + 1e-12) * e * e
        })
        .sum()
}

/// `STEPS` evenly spaced integers in (from, to], always ending with `to`.
fn spaced(from: i32, to: i32) -> Vec<i32> {
    if to <= from {
        return Vec::new();
    }
    let mut v: Vec<i32> = (1..=STEPS).map(|k| from + ((to - from) as f32 * k as f32 / STEPS as f32).ceil() as i32).collect();
    v.dedup();
    v
}

/// Reach of a signed-scale grid: the scale magnitude needed on the positive and on the negative
/// side to hold [min_t, max_t] when codes span −`neg`..`pos` times the scale.
fn signed_need(t: &[f32], neg: f32, pos: f32) -> (f32, f32) {
    let (min_t, max_t) = t.iter().fold((0.0f32, 0.0f32), |(a, b), v| (a.min(*v), b.max(*v)));
    ((max_t / pos).max(-min_t / neg), (max_t / neg).max(-min_t / pos))
}

/// The scales to try for unit `u` of `block`, from just above the current one to the one that
/// covers `t` (the unit's targets), within the type's code range.
fn candidates(ty: GgmlType, block: &[u8], u: usize, t: &[f32]) -> Vec<UnitScale> {
    match ty {
        GgmlType::Q8_0 | GgmlType::Q5_0 | GgmlType::Q4_0 => {
            let d = half(block, Q8_0_OR_Q5_0_D);
            let (neg, pos) = match ty {
                GgmlType::Q8_0 => (127.0, 127.0),
                GgmlType::Q5_0 => (16.0, 15.0),
                _ => (8.0, 7.0),
            };
            let (positive, negative) = signed_need(t, neg, pos);
            let (need, sign) = if d >= 0.0 { (positive, 1.0) } else { (negative, -1.0) };
            let mut out: Vec<UnitScale> = (1..=STEPS)
                .filter(|_| need > d.abs())
                .filter_map(|k| f32_to_f16_up(sign * (d.abs() + (need - d.abs()) * k as f32 / STEPS as f32)))
                .map(UnitScale::Half)
                .collect();
            // The other sign may reach the targets with a smaller scale (asymmetric Q5_0 codes).
            let other = if d >= 0.0 { -negative } else { positive };
            out.extend(f32_to_f16_up(other).filter(|_| other != 0.0).map(UnitScale::Half));
            out
        }
        GgmlType::Q6_K => {
            let d = half(block, q6_k::D);
            if d <= 0.0 || !d.is_finite() {
                return Vec::new();
            }
            let sc = block[q6_k::SCALES + u] as i8;
            let (positive, negative) = signed_need(t, 32.0, 31.0);
            let sign = if sc >= 0 { 1 } else { -1 };
            let need = if sc >= 0 { positive } else { negative };
            let code = ((need / d).ceil() as i32).min(127);
            spaced((sc as i32).abs(), code).into_iter().map(|c| UnitScale::Code((sign * c) as i8)).collect()
        }
        GgmlType::Q4_K => {
            let (d, dmin) = (half(block, q4_k::D), half(block, q4_k::DMIN));
            if d <= 0.0 || !d.is_finite() || !dmin.is_finite() {
                return Vec::new();
            }
            let (sc, m) = q4k_scale_min(&block[q4_k::SCALES..q4_k::QS], u);
            let min_t = t.iter().cloned().fold(0.0f32, f32::min);
            let max_t = t.iter().cloned().fold(0.0f32, f32::max);
            let m_need = if dmin <= 0.0 || -dmin * m as f32 <= min_t { m as i32 } else { ((-min_t / dmin).ceil() as i32).min(63) };
            // The old min, halfway, and the covering one.
            let mut mins = vec![m as i32, (m as i32 + m_need + 1) / 2, m_need];
            mins.dedup();
            let mut out = Vec::new();
            for &m2 in &mins {
                let sc_need = ((max_t + dmin * m2 as f32) / (15.0 * d)).ceil() as i32;
                let sc_need = sc_need.clamp(sc as i32, 63);
                let mut scs = spaced(sc as i32, sc_need);
                if m2 != m as i32 {
                    scs.insert(0, sc as i32);
                }
                out.extend(scs.into_iter().map(|s| UnitScale::ScaleMin(s as u8, m2 as u8)));
            }
            out
        }
        GgmlType::Q4_1 | GgmlType::Q5_1 => affine_candidates(ty, block, t),
        _ => Vec::new(),
    }
}

/// Q4_1 / Q5_1 (value = d·q + m): grids from the current one to the one covering `t`, moving
/// `d` and `m` together in `STEPS` even steps.
fn affine_candidates(ty: GgmlType, block: &[u8], t: &[f32]) -> Vec<UnitScale> {
    let hi = if ty == GgmlType::Q4_1 { 15.0 } else { 31.0 };
    let (d, m) = (half(block, q4_1::D), half(block, q4_1::M));
    if !(d > 0.0 && d.is_finite() && m.is_finite()) {
        return Vec::new();
    }
    let lo_t = t.iter().cloned().fold(m, f32::min);
    let hi_t = t.iter().cloned().fold(m + hi * d, f32::max);
    let d_need = (hi_t - lo_t) / hi;
    (1..=STEPS)
        .filter_map(|k| {
            let f = k as f32 / STEPS as f32;
            let (d2, m2) = (d + (d_need - d) * f, m + (lo_t - m) * f);
            Some(UnitScale::HalfMin(f32_to_f16_up(d2)?, f32_to_f16_up(m2)?))
        })
        .collect()
}

/// The grid (scale, offset, lowest and highest code) a unit has with `scale` set.
fn candidate_grid(ty: GgmlType, block: &[u8], scale: UnitScale) -> (f32, f32, i32, i32) {
    match scale {
        UnitScale::Half(h) => {
            let d = f16_to_f32(h);
            match ty {
                GgmlType::Q8_0 => (d, 0.0, -127, 127),
                GgmlType::Q5_0 => (d, 16.0 * d, 0, 31),
                _ => (d, 8.0 * d, 0, 15),
            }
        }
        UnitScale::HalfMin(d, m) => (f16_to_f32(d), -f16_to_f32(m), 0, if ty == GgmlType::Q4_1 { 15 } else { 31 }),
        UnitScale::Code(c) => {
            let s = half(block, q6_k::D) * c as f32;
            (s, 32.0 * s, 0, 63)
        }
        UnitScale::ScaleMin(sc, m) => (half(block, q4_k::D) * sc as f32, half(block, q4_k::DMIN) * m as f32, 0, 15),
    }
}

/// The code of target `t` on the grid (s, o, lo, hi).
fn code_on(t: f32, (s, o, lo, hi): (f32, f32, i32, i32)) -> f32 {
    if s == 0.0 || !s.is_finite() { lo.max(0) as f32 } else { round_code((t + o) / s).clamp(lo as f32, hi as f32) }
}

/// Importance-weighted error of unit `range` re-rounded onto `g`, without touching the bytes.
fn unit_error_on(g: (f32, f32, i32, i32), target: &[f32], w: Option<&[f32]>, range: std::ops::Range<usize>) -> f64 {
    range
        .map(|j| {
            let e = (g.0 * code_on(target[j], g) - g.1 - target[j]) as f64;
            w.map_or(1.0, |w| w[j] as f64 + 1e-12) * e * e
        })
        .sum()
}

/// Sets unit `u`'s scale and re-rounds the unit's entries to `target` on the new grid.
fn apply(ty: GridType, block: &mut [u8], u: usize, scale: UnitScale, target: &[f32]) {
    match scale {
        UnitScale::Half(h) => put_half(block, Q8_0_OR_Q5_0_D, h),
        UnitScale::Code(c) => block[q6_k::SCALES + u] = c as u8,
        UnitScale::ScaleMin(sc, m) => q4k_set_scale_min(&mut block[q4_k::SCALES..q4_k::QS], u, sc, m),
        UnitScale::HalfMin(d, m) => {
            put_half(block, q4_1::D, d);
            put_half(block, q4_1::M, m);
        }
    }
    let n = unit_len(ty.into());
    let g = grid(ty, block, u * n);
    for (j, t) in target.iter().enumerate().skip(u * n).take(n) {
        regrid::set_code(ty, block, j, code_on(*t, g) as i32);
    }
}

/// True when a selected entry of unit `u` lies outside the unit's grid.
fn clamped(ty: GridType, block: &[u8], u: usize, target: &[f32], sel: &[bool]) -> bool {
    let n = unit_len(ty.into());
    let (s, o, lo, hi) = grid(ty, block, u * n);
    (u * n..(u + 1) * n).any(|j| {
        if !sel[j] {
            return false;
        }
        if s == 0.0 || !s.is_finite() {
            return target[j] != -o;
        }
        let code = round_code((target[j] + o) / s);
        code < lo as f32 || code > hi as f32
    })
}

/// The keep-mode encoding of a block: `edited` is the in-grid edit of `original` (which clamped
/// some target); `w` the importance per entry (equal weights when there are no STATS). Returns
/// the bytes with the lowest importance-weighted error found and their decoded values.
pub fn refit(gt: GridType, original: &[u8], edited: &[u8], target: &[f32], sel: &[bool], w: Option<&[f32]>) -> Result<(Vec<u8>, Vec<f32>), CodecError> {
    let ty = GgmlType::from(gt);
    let bs = target.len();
    let n = unit_len(ty);
    let mut best = edited.to_vec();
    let mut dec = ggml::dequantize_to_vec(ty, &best, bs)?;
    let mut changed = false;
    if let Some(units) = bs.checked_div(n) {
        for u in 0..units {
            if !clamped(gt, &best, u, target, sel) {
                continue;
            }
            let range = u * n..(u + 1) * n;
            let mut best_err = weighted_error(&dec, target, w, range.clone());
            let mut chosen: Option<UnitScale> = None;
            for c in candidates(ty, &best, u, &target[range.clone()]) {
                let err = unit_error_on(candidate_grid(ty, &best, c), target, w, range.clone());
                if err < best_err {
                    best_err = err;
                    chosen = Some(c);
                }
            }
            if let Some(c) = chosen {
                apply(gt, &mut best, u, c, target);
                // The unit's new values from its grid (ggml decodes the whole block below).
                let g = grid(gt, &best, u * n);
                for j in range {
                    dec[j] = g.0 * code_on(target[j], g) - g.1;
                }
                changed = true;
            }
        }
    }
    if changed {
        ggml::dequantize(ty, &best, &mut dec)?;
    }
    // The super-block widening moves every entry: tried only where some unit's own scale code
    // cannot reach its targets at all.
    let unit_limit = || !regrid::widen(gt, &mut original.to_vec(), target, sel);
    if matches!(ty, GgmlType::Q4_K | GgmlType::Q6_K) && (0..bs / n.max(1)).any(|u| clamped(gt, &best, u, target, sel)) && unit_limit() {
        let mut wide = original.to_vec();
        if regrid::widen_block(gt, &mut wide, target) {
            let wide_dec = ggml::dequantize_to_vec(ty, &wide, bs)?;
            if weighted_error(&wide_dec, target, w, 0..bs) < weighted_error(&dec, target, w, 0..bs) {
                return Ok((wide, wide_dec));
            }
        }
    }
    Ok((best, dec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refit_never_raises_the_weighted_error_and_moves_only_widened_units() {
        for ty in [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q6_K, GgmlType::Q4_K, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_1] {
            let bs = ty.block_size() as usize;
            let n = unit_len(ty);
            let gt = GridType::try_from(ty).unwrap();
            let src = crate::gguf::synth::pseudo_random_f32(31, bs * 16);
            let q = ggml::quantize(ty, &src, bs, None).unwrap();
            let mut improved = 0;
            for (bi, block) in q.chunks(ty.type_size() as usize).enumerate() {
                let orig = ggml::dequantize_to_vec(ty, block, bs).unwrap();
                // Scale the largest entry of every unit by 1.1: outside the grid where it holds
                // the unit's top code.
                let mut target = orig.clone();
                let mut sel = vec![false; bs];
                for u in 0..bs / n {
                    let j = (u * n..(u + 1) * n).max_by(|&a, &b| orig[a].abs().total_cmp(&orig[b].abs())).unwrap();
                    sel[j] = true;
                    target[j] *= 1.1;
                }
                let w: Vec<f32> = (0..bs).map(|j| 1.0 + ((j * 7 + bi) % 5) as f32).collect();
                let mut edited = block.to_vec();
                regrid::regrid(gt, &mut edited, &target, &sel);
                let in_grid = ggml::dequantize_to_vec(ty, &edited, bs).unwrap();
                let (bytes, dec) = refit(gt, block, &edited, &target, &sel, Some(&w)).unwrap();
                assert_eq!(dec, ggml::dequantize_to_vec(ty, &bytes, bs).unwrap());
                let (e0, e1) = (weighted_error(&in_grid, &target, Some(&w), 0..bs), weighted_error(&dec, &target, Some(&w), 0..bs));
                assert!(e1 <= e0, "{ty} block {bi}: {e1} > {e0}");
                improved += (e1 < e0) as usize;
                // Unless the super-block was widened, a unit whose non-selected entries moved
                // was widened, and its error went down.
                let super_moved = matches!(ty, GgmlType::Q4_K) && bytes[q4_k::D..q4_k::SCALES] != block[q4_k::D..q4_k::SCALES] || ty == GgmlType::Q6_K && bytes[q6_k::D..q6_k::SIZE] != block[q6_k::D..q6_k::SIZE];
                if !super_moved {
                    for u in 0..bs / n {
                        let r = u * n..(u + 1) * n;
                        if r.clone().any(|j| !sel[j] && dec[j] != orig[j]) {
                            assert!(weighted_error(&dec, &target, Some(&w), r.clone()) < weighted_error(&in_grid, &target, Some(&w), r), "{ty} unit {u}");
                        }
                    }
                }
            }
            assert!(improved > 0, "{ty}: refit never helped");
        }
    }

    #[test]
    fn candidate_scales_end_at_the_covering_scale() {
        assert_eq!(spaced(10, 16), vec![11, 12, 13, 14, 15, 16]);
        assert_eq!(spaced(10, 40), vec![15, 20, 25, 30, 35, 40]);
        assert!(spaced(5, 5).is_empty());
    }
}
