//! Q4_K blocks in which 0 is exactly representable where entries are pruned.
//!
//! A Q4_K super-block (ggml `block_q4_K`: f16 `d`, f16 `dmin`, 8 six-bit scales `sc` and mins
//! `m`, 256 four-bit codes) decodes entry j of sub-block u as d·sc_u·q − dmin·m_u. ggml's grid
//! rarely contains 0 itself, so a pruned weight lands on the nearest grid value. Here `dmin` is
//! set to d·2^p (exact in f16), which makes d·sc·q0 − dmin·m exactly 0 whenever sc·q0 = m·2^p:
//! for each sub-block with pruned entries a nearby (sc, q0) pair with that property is searched,
//! the other sub-blocks get the min nearest their old offset, and every entry is re-rounded to
//! its target. p is the power of two nearest dmin/d (others tried only when it finds nothing);
//! within a sub-block the (sc, m) pair with the smallest importance-weighted error wins.

use super::half::{f16_to_f32, f32_to_f16_up, half, put_half};
use super::layout::q4_k;
use super::regrid::{q4k_scale_min, q4k_set_scale_min};

const SUB: usize = 32;

/// Squared error of rounding `t` onto the grid s·q − o, q in 0..=15, weighted by `w`, and the codes.
fn fit(t: &[f32], w: &[f32], s: f32, o: f32, codes: &mut [u8; SUB]) -> f64 {
    let mut err = 0.0f64;
    for j in 0..SUB {
        // round-half-up then clamp to 0..=15, without a libm call (this loop is the hot spot).
        let q = (((((t[j] + o) / s).clamp(-1.0, 16.0) + 0.5).max(0.0) as i32).min(15)) as f32;
        codes[j] = q as u8;
        let e = (s * q - o - t[j]) as f64;
        err += w[j] as f64 * e * e;
    }
    err
}

/// An encoding of `target` (256 values) in which every selected entry whose target is 0 decodes
/// to exactly 0, starting from the `original` block's scales; `None` when none was found.
pub fn encode_zero_exact(original: &[u8], target: &[f32], sel: &[bool], imp: Option<&[f32]>) -> Option<Vec<u8>> {
    let d = half(original, q4_k::D);
    let dmin = half(original, q4_k::DMIN);
    if !(d > 0.0 && d.is_finite() && dmin.is_finite()) {
        return None;
    }
    let ones = [1.0f32; 256];
    let w = imp.unwrap_or(&ones);
    let pruned: Vec<bool> = (0..8).map(|u| (u * SUB..(u + 1) * SUB).any(|j| sel[j] && target[j] == 0.0)).collect();
    if !pruned.iter().any(|&p| p) {
        return None;
    }
    // dmin/d as a power of two: the one nearest the block's own ratio first; others only when
    // that one finds no encoding.
    let nearest = if dmin > 0.0 { (dmin / d).log2().round().clamp(1.0, 4.0) as u32 } else { 1 };
    let mut order = vec![nearest];
    order.extend((1..=4u32).filter(|&p| p != nearest));
    let mut best: Option<(f64, Vec<u8>)> = None;
    for p in order {
        if best.is_some() {
            break;
        }
        let dmin_new = d * (1u32 << p) as f32;
        let Some(h) = exact_half(dmin_new) else { continue };
        let mut b = original.to_vec();
        put_half(&mut b, q4_k::DMIN, h);
        let mut total = 0.0f64;
        let mut feasible = true;
        for u in 0..8 {
            let (t, wu) = (&target[u * SUB..(u + 1) * SUB], &w[u * SUB..(u + 1) * SUB]);
            let (sc, m) = q4k_scale_min(&original[q4_k::SCALES..q4_k::QS], u);
            let mut best_u: Option<(f64, u8, u8, [u8; SUB])> = None;
            let mut codes = [0u8; SUB];
            let mut consider = |sc_new: u8, m_new: u8, best_u: &mut Option<(f64, u8, u8, [u8; SUB])>| {
                let err = fit(t, wu, d * sc_new as f32, dmin_new * m_new as f32, &mut codes);
                if best_u.as_ref().is_none_or(|b| err < b.0) {
                    *best_u = Some((err, sc_new, m_new, codes));
                }
            };
            if pruned[u] {
                // Codes near where 0 sat on the old grid.
                let zero_code = if sc == 0 { 0 } else { ((dmin * m as f32) / (d * sc as f32)).round().clamp(0.0, 15.0) as u32 };
                for sc_new in sc.saturating_sub(1).max(1)..=(sc + 2).min(63) {
                    for q0 in zero_code.saturating_sub(1)..=(zero_code + 1).min(15) {
                        let prod = sc_new as u32 * q0;
                        if prod.is_multiple_of(1 << p) && prod >> p <= 63 {
                            consider(sc_new, (prod >> p) as u8, &mut best_u);
                        }
                    }
                }
            } else {
                let m0 = (dmin * m as f32 / dmin_new).round() as i32;
                for m_new in (m0 - 1).max(0)..=(m0 + 1).min(63) {
                    consider(sc, m_new as u8, &mut best_u);
                }
            }
            let Some((err, sc_new, m_new, codes)) = best_u else {
                feasible = false;
                break;
            };
            total += err;
            q4k_set_scale_min(&mut b[q4_k::SCALES..q4_k::QS], u, sc_new, m_new);
            for (i, q) in codes.iter().enumerate() {
                let j = u * SUB + i;
                let byte = q4_k::code_byte(j);
                b[byte] = if j % 64 < 32 { (b[byte] & 0xF0) | q } else { (b[byte] & 0x0F) | (q << 4) };
            }
        }
        if feasible && best.as_ref().is_none_or(|(e, _)| total < *e) {
            best = Some((total, b));
        }
    }
    best.map(|(_, b)| b)
}

/// The half holding exactly `v`, if any.
fn exact_half(v: f32) -> Option<u16> {
    let h = f32_to_f16_up(v)?;
    (f16_to_f32(h) == v).then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::ggml;
    use crate::gguf::GgmlType;

    #[test]
    fn pruned_entries_decode_to_exact_zero() {
        let src = crate::gguf::synth::pseudo_random_f32(21, 256 * 8);
        let q = ggml::quantize(GgmlType::Q4_K, &src, 256, None).unwrap();
        let mut exact = 0;
        for (bi, block) in q.chunks(q4_k::SIZE).enumerate() {
            let deq = ggml::dequantize_to_vec(GgmlType::Q4_K, block, 256).unwrap();
            let mut target = deq.clone();
            let mut sel = vec![false; 256];
            for j in [3usize, 40, 77, 200 + bi] {
                sel[j] = true;
                target[j] = 0.0;
            }
            let Some(enc) = encode_zero_exact(block, &target, &sel, None) else { continue };
            let after = ggml::dequantize_to_vec(GgmlType::Q4_K, &enc, 256).unwrap();
            assert!(sel.iter().zip(&after).all(|(s, v)| !s || *v == 0.0), "block {bi}: {:?}", after.iter().zip(&sel).filter(|(_, s)| **s).collect::<Vec<_>>());
            let rms = (after.iter().zip(&target).map(|(a, t)| (a - t) * (a - t)).sum::<f32>() / 256.0).sqrt();
            assert!(rms < 0.1, "block {bi}: rms {rms}");
            exact += 1;
        }
        assert!(exact >= 6, "zero made exact in {exact} of 8 blocks");
    }
}
