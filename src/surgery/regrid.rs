//! Editing a quantized block in place on its own grid: the block's scales and mins stay, and only
//! the quants of the selected entries are re-rounded to the grid value nearest their new target.
//! Non-selected entries keep their exact bytes (no collateral change), a prune lands on the
//! grid's zero for the symmetric types (Q8_0, Q5_0, Q6_K) and on the grid value nearest 0 for
//! Q4_K. When a target lies outside the block's range the entry is clamped and the caller falls
//! back to a full re-encode.
//!
//! Layouts follow ggml-common.h / ggml-quants.c (`block_q8_0`, `block_q5_0`, `block_q6_K`,
//! `block_q4_K` and their `dequantize_row_*`). Each entry decodes as `s·q − o` with `q` the
//! stored code in `[lo, hi]`.

use crate::gguf::GgmlType;

/// IEEE half → f32 (every half is exactly representable).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m · 2^-24.
            let v = m as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (31, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn half(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// True when `regrid` can edit blocks of `ty`.
pub fn supports(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q8_0 | GgmlType::Q5_0 | GgmlType::Q6_K | GgmlType::Q4_K)
}

/// (scale s, offset o, lowest code, highest code) of entry `j`: value = s·q − o.
pub fn grid(ty: GgmlType, b: &[u8], j: usize) -> (f32, f32, i32, i32) {
    match ty {
        GgmlType::Q8_0 => (half(b, 0), 0.0, -127, 127),
        GgmlType::Q5_0 => {
            let d = half(b, 0);
            (d, 16.0 * d, 0, 31)
        }
        GgmlType::Q6_K => {
            let (n, r) = (j / 128, j % 128);
            let (quarter, l) = (r / 32, r % 32);
            let sc = b[192 + 8 * n + l / 16 + 2 * quarter] as i8 as f32;
            let s = half(b, 208) * sc;
            (s, 32.0 * s, 0, 63)
        }
        GgmlType::Q4_K => {
            let (sc, m) = q4k_scale_min(&b[4..16], j / 32);
            (half(b, 0) * sc as f32, half(b, 2) * m as f32, 0, 15)
        }
        other => panic!("regrid does not handle {other}"),
    }
}

/// `get_scale_min_k4`: the 6-bit scale and min of Q4_K sub-block `j` (0..8).
pub fn q4k_scale_min(q: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Stores code `q` for entry `j`.
pub fn set_code(ty: GgmlType, b: &mut [u8], j: usize, q: i32) {
    match ty {
        GgmlType::Q8_0 => b[2 + j] = q as i8 as u8,
        GgmlType::Q5_0 => {
            let q = q as u32;
            let (byte, high) = (6 + j % 16, j >= 16);
            b[byte] = if high { (b[byte] & 0x0F) | (((q & 0xF) as u8) << 4) } else { (b[byte] & 0xF0) | (q & 0xF) as u8 };
            let mut qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            qh = (qh & !(1 << j)) | (((q >> 4) & 1) << j);
            b[2..6].copy_from_slice(&qh.to_le_bytes());
        }
        GgmlType::Q6_K => {
            let q = q as u8;
            let (n, r) = (j / 128, j % 128);
            let (quarter, l) = (r / 32, r % 32);
            let ql = 64 * n + l + if quarter % 2 == 1 { 32 } else { 0 };
            b[ql] = if quarter < 2 { (b[ql] & 0xF0) | (q & 0xF) } else { (b[ql] & 0x0F) | ((q & 0xF) << 4) };
            let qh = 128 + 32 * n + l;
            let shift = 2 * quarter;
            b[qh] = (b[qh] & !(3 << shift)) | (((q >> 4) & 3) << shift);
        }
        GgmlType::Q4_K => {
            let q = q as u8;
            let (chunk, within) = (j / 64, j % 64);
            let byte = 16 + 32 * chunk + within % 32;
            b[byte] = if within < 32 { (b[byte] & 0xF0) | (q & 0xF) } else { (b[byte] & 0x0F) | ((q & 0xF) << 4) };
        }
        other => panic!("regrid does not handle {other}"),
    }
}

/// Re-rounds the selected entries of `block` to their targets on the block's own grid. Returns
/// true when some target lay outside the grid's range (the entry was clamped) or the grid has a
/// zero scale where a change was wanted.
pub fn regrid(ty: GgmlType, block: &mut [u8], target: &[f32], sel: &[bool]) -> bool {
    let mut clamped = false;
    for j in 0..target.len() {
        if !sel[j] {
            continue;
        }
        let (s, o, lo, hi) = grid(ty, block, j);
        if s == 0.0 || !s.is_finite() {
            clamped |= target[j] != -o;
            continue;
        }
        let exact = ((target[j] + o) / s).round();
        let q = exact.clamp(lo as f32, hi as f32);
        clamped |= q != exact;
        set_code(ty, block, j, q as i32);
    }
    clamped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::ggml;

    #[test]
    fn grid_matches_ggml_dequantization_and_edits_round_trip() {
        for ty in [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q6_K, GgmlType::Q4_K] {
            let bs = ty.block_size() as usize;
            let src = crate::gguf::synth::pseudo_random_f32(9, bs * 4);
            let q = ggml::quantize(ty, &src, bs, None).unwrap();
            let deq = ggml::dequantize_to_vec(ty, &q, src.len()).unwrap();
            for (bi, block) in q.chunks(ty.type_size() as usize).enumerate() {
                for j in 0..bs {
                    let (s, o, lo, hi) = grid(ty, block, j);
                    let v = deq[bi * bs + j];
                    let code = ((v + o) / s).round();
                    assert!(code >= lo as f32 && code <= hi as f32, "{ty} code {code}");
                    assert!((s * code - o - v).abs() <= 1e-5 * (1.0 + v.abs()), "{ty} entry {j}: grid {} vs ggml {v}", s * code - o);
                }
                // Re-rounding every entry to its own value changes no byte.
                let mut edited = block.to_vec();
                assert!(!regrid(ty, &mut edited, &deq[bi * bs..(bi + 1) * bs], &vec![true; bs]));
                assert_eq!(edited, block, "{ty}");
                // Setting entry 5 to the grid's code for a value changes exactly that value.
                let (s, o, lo, hi) = grid(ty, block, 5);
                let mut t = deq[bi * bs..(bi + 1) * bs].to_vec();
                let code = (lo + hi) / 2 + 1;
                t[5] = s * code as f32 - o;
                let mut sel = vec![false; bs];
                sel[5] = true;
                regrid(ty, &mut edited, &t, &sel);
                let after = ggml::dequantize_to_vec(ty, &edited, bs).unwrap();
                for j in 0..bs {
                    if j == 5 {
                        assert!((after[j] - t[5]).abs() <= 1e-5 * (1.0 + t[5].abs()), "{ty}");
                    } else {
                        assert_eq!(after[j].to_bits(), deq[bi * bs + j].to_bits(), "{ty} entry {j}");
                    }
                }
            }
        }
    }

    #[test]
    fn halves_convert() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
    }
}
