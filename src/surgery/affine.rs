//! Q4_1 / Q5_1 blocks in which 0 is exactly representable where entries are pruned (issue 27
//! case 13). A `block_q4_1` decodes entry j as d·q + m (q in 0..=15; Q5_1: 0..=31); its grid
//! holds 0 exactly only when m = −k·d for an integer code k (then q = k decodes to d·k − d·k =
//! 0, the product being exact in f32). ggml's quantizer puts m at the block's minimum, so a
//! pruned entry usually lands a fraction of a step from 0.
//!
//! Here, for every k, the block is refit with m = −k·d: `d` from the current step and from the
//! step that covers all targets (a few in between), rounded to an f16 whose product with k is
//! itself an f16 (so m is exact), every entry re-rounded to its target; the encoding with the
//! smallest importance-weighted squared error against the intended values wins.

use super::half::{f16_to_f32, half, put_half};
use super::layout::{q4_1, q5_1};
use super::regrid::{self, GridType};

const _: () = assert!(q4_1::D == q5_1::D && q4_1::M == q5_1::M);

/// Steps tried per zero code k between the block's own step and the covering one.
const STEPS: usize = 8;

/// The f16 nearest `v`, rounded to nearest-even (None when out of range or not positive).
fn f16_nearest(v: f32) -> Option<u16> {
    if !(v > 0.0 && v <= 65504.0) {
        return None;
    }
    let up = super::half::f32_to_f16_up(v)?;
    let down = up.saturating_sub(1);
    Some(if up > 0 && (v - f16_to_f32(down)) < (f16_to_f32(up) - v) { down } else { up })
}

/// `d` (as an f16) with its mantissa trimmed until k·d is an f16 too; with that product.
fn step_with_exact_min(d: u16, k: u32) -> Option<(u16, u16)> {
    for trim in 0..=4 {
        let h = d & !((1u16 << trim) - 1);
        let dv = f16_to_f32(h);
        let m = -(k as f32) * dv;
        if dv > 0.0 && let Some(mh) = exact_half(m) {
            return Some((h, mh));
        }
    }
    None
}

/// The f16 holding exactly `v` (−0 for 0), if any.
fn exact_half(v: f32) -> Option<u16> {
    if v == 0.0 {
        return Some(0);
    }
    let h = super::half::f32_to_f16_up(v)?;
    (f16_to_f32(h) == v).then_some(h)
}

/// An encoding of `target` (32 values) of a Q4_1 or Q5_1 block in which every selected entry
/// whose target is 0 decodes to exactly 0; `None` when no step exists (e.g. an all-zero block's
/// targets need none: its in-grid edit is already exact).
pub fn encode_zero_exact(ty: GridType, original: &[u8], target: &[f32], sel: &[bool], imp: Option<&[f32]>) -> Option<Vec<u8>> {
    let hi = match ty {
        GridType::Q4_1 => 15u32,
        GridType::Q5_1 => 31,
        _ => return None,
    };
    if !(0..target.len()).any(|j| sel[j] && target[j] == 0.0) {
        return None;
    }
    let d0 = half(original, q4_1::D);
    let min_t = target.iter().cloned().fold(0.0f32, f32::min);
    let max_t = target.iter().cloned().fold(0.0f32, f32::max);
    let mut best: Option<(f64, Vec<u8>)> = None;
    for k in 0..=hi {
        // The step that covers every target with 0 at code k.
        let cover = (if k < hi { max_t / (hi - k) as f32 } else { 0.0 }).max(if k > 0 { -min_t / k as f32 } else { 0.0 });
        if (k == 0 && min_t < 0.0) || (k == hi && max_t > 0.0) {
            continue;
        }
        let mut steps: Vec<f32> = (0..=STEPS).map(|i| cover * (0.6 + 0.4 * i as f32 / STEPS as f32)).collect();
        if d0 > 0.0 && d0.is_finite() {
            steps.push(d0);
        }
        for step in steps {
            let Some((dh, mh)) = f16_nearest(step).and_then(|h| step_with_exact_min(h, k)) else { continue };
            let mut b = original.to_vec();
            put_half(&mut b, q4_1::D, dh);
            put_half(&mut b, q4_1::M, mh);
            let g = regrid::grid(ty, &b, 0);
            let mut err = 0.0f64;
            for (j, &t) in target.iter().enumerate() {
                let q = if sel[j] && t == 0.0 { k as i32 } else { super::grids::nearest(ty, g, t).0 };
                regrid::set_code(ty, &mut b, j, q);
                let e = (super::grids::value(ty, g, q) - t) as f64;
                err += imp.map_or(1.0, |w| w[j] as f64 + 1e-12) * e * e;
            }
            if best.as_ref().is_none_or(|(e, _)| err < *e) {
                best = Some((err, b));
            }
        }
    }
    best.map(|(_, b)| b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::ggml;
    use crate::gguf::GgmlType;

    #[test]
    fn pruned_entries_decode_to_exact_zero_and_the_rest_stay_close() {
        for ty in [GgmlType::Q4_1, GgmlType::Q5_1] {
            let gt = GridType::try_from(ty).unwrap();
            let src = crate::gguf::synth::pseudo_random_f32(23, 32 * 16);
            let q = ggml::quantize(ty, &src, 32, None).unwrap();
            for (bi, block) in q.chunks(ty.type_size() as usize).enumerate() {
                let deq = ggml::dequantize_to_vec(ty, block, 32).unwrap();
                let mut target = deq.clone();
                let mut sel = vec![false; 32];
                for j in [1usize, 9, 20 + bi % 10] {
                    sel[j] = true;
                    target[j] = 0.0;
                }
                let enc = encode_zero_exact(gt, block, &target, &sel, None).expect("an encoding");
                let after = ggml::dequantize_to_vec(ty, &enc, 32).unwrap();
                for j in 0..32 {
                    if sel[j] {
                        assert_eq!(after[j].to_bits() & 0x7fff_ffff, 0, "{ty} block {bi} entry {j}: {}", after[j]);
                    }
                }
                let range = deq.iter().cloned().fold(f32::MIN, f32::max) - deq.iter().cloned().fold(f32::MAX, f32::min);
                let worst = (0..32).filter(|&j| !sel[j]).map(|j| (after[j] - target[j]).abs()).fold(0.0, f32::max);
                let hi = if ty == GgmlType::Q4_1 { 15.0 } else { 31.0 };
                assert!(worst <= range / hi * 0.75, "{ty} block {bi}: an untouched entry moved {worst} (step {})", range / hi);
            }
        }
    }
}
