//! The grids and code positions of the block types added to the in-grid edit for issue 25: the
//! legacy Q4_0, Q4_1, Q5_1, the K-quants Q5_K, Q2_K, Q3_K, and the non-linear IQ4_NL and IQ4_XS.
//! `regrid` dispatches to these for those types (its own arms keep Q8_0, Q5_0, Q6_K and Q4_K).
//!
//! Every linear type decodes entry j as `s·q − o` with q its stored code in `[lo, hi]` (as in
//! `regrid::grid`); the IQ4 types decode it as `s·KVALUES_IQ4NL[q]` (`o` = 0, q in 0..16). Layouts
//! and decodings follow ggml-common.h and ggml-quants.c `dequantize_row_*`.

use super::half::half;
use super::layout::{KVALUES_IQ4NL, iq4_nl, iq4_xs, q2_k, q3_k, q4_0, q4_1, q5_1, q5_k};
use super::regrid::{GridType, q4k_scale_min};

/// True for the types whose codes index a non-linear table (IQ4_NL, IQ4_XS).
pub fn is_table(ty: GridType) -> bool {
    matches!(ty, GridType::IQ4_NL | GridType::IQ4_XS)
}

/// The 6-bit scale (0..64, biased by 32) of Q3_K sub-block `i` (0..16), as `dequantize_row_q3_K`
/// unpacks the 12 bytes.
fn q3k_scale(b: &[u8], i: usize) -> i32 {
    let s = &b[q3_k::SCALES..q3_k::D];
    let low = if i < 8 { s[i] & 0xF } else { s[i - 8] >> 4 };
    let high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    (low | (high << 4)) as i32 - 32
}

/// The 6-bit scale (biased by 32) of IQ4_XS sub-block `ib` (0..8).
fn iq4xs_scale(b: &[u8], ib: usize) -> i32 {
    let h = u16::from_le_bytes([b[iq4_xs::SCALES_H], b[iq4_xs::SCALES_H + 1]]);
    let low = (b[iq4_xs::SCALES_L + ib / 2] >> (4 * (ib % 2))) & 0xF;
    (low as i32 | (((h >> (2 * ib)) & 3) as i32) << 4) - 32
}

/// (scale s, offset o, lowest code, highest code) of entry `j` for the types of this module.
pub fn grid(ty: GridType, b: &[u8], j: usize) -> (f32, f32, i32, i32) {
    match ty {
        GridType::Q4_0 => {
            let d = half(b, q4_0::D);
            (d, 8.0 * d, 0, 15)
        }
        GridType::Q4_1 => (half(b, q4_1::D), -half(b, q4_1::M), 0, 15),
        GridType::Q5_1 => (half(b, q5_1::D), -half(b, q5_1::M), 0, 31),
        GridType::Q5_K => {
            let (sc, m) = q4k_scale_min(&b[q5_k::SCALES..q5_k::QH], j / 32);
            (half(b, q5_k::D) * sc as f32, half(b, q5_k::DMIN) * m as f32, 0, 31)
        }
        GridType::Q2_K => {
            let sc = b[q2_k::SCALES + j / 16];
            (half(b, q2_k::D) * (sc & 0xF) as f32, half(b, q2_k::DMIN) * (sc >> 4) as f32, 0, 3)
        }
        GridType::Q3_K => {
            let s = half(b, q3_k::D) * q3k_scale(b, j / 16) as f32;
            (s, 4.0 * s, 0, 7)
        }
        GridType::IQ4_NL => (half(b, iq4_nl::D), 0.0, 0, 15),
        GridType::IQ4_XS => (half(b, iq4_xs::D) * iq4xs_scale(b, j / 32) as f32, 0.0, 0, 15),
        GridType::Q8_0 | GridType::Q5_0 | GridType::Q6_K | GridType::Q4_K => unreachable!("regrid::grid handles {ty:?}"),
    }
}

/// The value code `q` stands for on the grid `g` of type `ty`, computed as ggml's decoder does
/// (bit for bit: Q4_0 and Q3_K multiply the biased code, the others subtract the offset).
pub fn value(ty: GridType, (s, o, _, _): (f32, f32, i32, i32), q: i32) -> f32 {
    match ty {
        GridType::IQ4_NL | GridType::IQ4_XS => s * KVALUES_IQ4NL[q as usize] as f32,
        GridType::Q4_0 => s * (q - 8) as f32,
        GridType::Q3_K => s * (q - 4) as f32,
        _ => s * q as f32 - o,
    }
}

/// The code whose value on grid `g` is nearest `t`, and whether `t` lies outside the grid's
/// range (the code was clamped).
pub fn nearest(ty: GridType, g: (f32, f32, i32, i32), t: f32) -> (i32, bool) {
    let (s, o, lo, hi) = g;
    if is_table(ty) {
        let best = (0..16).min_by(|&a, &b| (value(ty, g, a) - t).abs().total_cmp(&(value(ty, g, b) - t).abs())).expect("16 codes");
        let (v0, v15) = (value(ty, g, 0), value(ty, g, 15));
        return (best, t < v0.min(v15) || t > v0.max(v15));
    }
    let exact = super::regrid::round_code((t + o) / s);
    let q = exact.clamp(lo as f32, hi as f32);
    (q as i32, q != exact)
}

/// Index and bit shift of the nibble of entry `j` in a 32-entry run of 16 bytes at `at`
/// (the layout of Q4_0, Q4_1, Q5_x's low bits, IQ4_NL and each IQ4_XS sub-block).
fn nibble(at: usize, j: usize) -> (usize, u32) {
    (at + j % 16, if j % 32 >= 16 { 4 } else { 0 })
}

/// The 2-bit field of Q2_K/Q3_K entry `j` in the 64 bytes at `at`: byte and shift.
fn crumb(at: usize, j: usize) -> (usize, u32) {
    let (n, r) = (j / 128, j % 128);
    (at + 32 * n + 16 * ((r % 32) / 16) + r % 16, 2 * (r / 32) as u32)
}

fn get_bits(b: &[u8], (at, shift): (usize, u32), mask: u8) -> i32 {
    ((b[at] >> shift) & mask) as i32
}

fn put_bits(b: &mut [u8], (at, shift): (usize, u32), mask: u8, v: i32) {
    b[at] = (b[at] & !(mask << shift)) | (((v as u8) & mask) << shift);
}

/// Bit 4 of a Q5_0/Q5_1 code: bit j of the little-endian u32 at `at`.
fn qh_bit(at: usize, j: usize) -> (usize, u32) {
    (at + j / 8, (j % 8) as u32)
}

/// The stored code of entry `j`.
pub fn get_code(ty: GridType, b: &[u8], j: usize) -> i32 {
    match ty {
        GridType::Q4_0 => get_bits(b, nibble(q4_0::QS, j), 0xF),
        GridType::Q4_1 => get_bits(b, nibble(q4_1::QS, j), 0xF),
        GridType::IQ4_NL => get_bits(b, nibble(iq4_nl::QS, j), 0xF),
        GridType::IQ4_XS => get_bits(b, nibble(iq4_xs::QS + 16 * (j / 32), j), 0xF),
        GridType::Q5_1 => get_bits(b, nibble(q5_1::QS, j), 0xF) | get_bits(b, qh_bit(q5_1::QH, j), 1) << 4,
        GridType::Q5_K => {
            let (c, within) = (j / 64, j % 64);
            let low = get_bits(b, (q5_k::QS + 32 * c + j % 32, if within >= 32 { 4 } else { 0 }), 0xF);
            low | get_bits(b, (q5_k::QH + j % 32, (2 * c + within / 32) as u32), 1) << 4
        }
        GridType::Q2_K => get_bits(b, crumb(q2_k::QS, j), 3),
        GridType::Q3_K => get_bits(b, crumb(q3_k::QS, j), 3) | get_bits(b, q3k_high(j), 1) << 2,
        GridType::Q8_0 | GridType::Q5_0 | GridType::Q6_K | GridType::Q4_K => unreachable!("regrid handles {ty:?}"),
    }
}

/// Where Q3_K keeps the high bit of entry `j`: byte 16h + l of `hmask`, bit 4n + i.
fn q3k_high(j: usize) -> (usize, u32) {
    let (n, r) = (j / 128, j % 128);
    (q3_k::HMASK + r % 32, (4 * n + r / 32) as u32)
}

/// Stores code `q` for entry `j`.
pub fn set_code(ty: GridType, b: &mut [u8], j: usize, q: i32) {
    match ty {
        GridType::Q4_0 => put_bits(b, nibble(q4_0::QS, j), 0xF, q),
        GridType::Q4_1 => put_bits(b, nibble(q4_1::QS, j), 0xF, q),
        GridType::IQ4_NL => put_bits(b, nibble(iq4_nl::QS, j), 0xF, q),
        GridType::IQ4_XS => put_bits(b, nibble(iq4_xs::QS + 16 * (j / 32), j), 0xF, q),
        GridType::Q5_1 => {
            put_bits(b, nibble(q5_1::QS, j), 0xF, q);
            put_bits(b, qh_bit(q5_1::QH, j), 1, q >> 4);
        }
        GridType::Q5_K => {
            let (c, within) = (j / 64, j % 64);
            put_bits(b, (q5_k::QS + 32 * c + j % 32, if within >= 32 { 4 } else { 0 }), 0xF, q);
            put_bits(b, (q5_k::QH + j % 32, (2 * c + within / 32) as u32), 1, q >> 4);
        }
        GridType::Q2_K => put_bits(b, crumb(q2_k::QS, j), 3, q),
        GridType::Q3_K => {
            put_bits(b, crumb(q3_k::QS, j), 3, q);
            put_bits(b, q3k_high(j), 1, q >> 2);
        }
        GridType::Q8_0 | GridType::Q5_0 | GridType::Q6_K | GridType::Q4_K => unreachable!("regrid handles {ty:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::ggml;
    use crate::gguf::GgmlType;

    const TYPES: [GgmlType; 8] = [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_1, GgmlType::Q5_K, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::IQ4_NL, GgmlType::IQ4_XS];

    #[test]
    fn grid_and_stored_codes_decode_exactly_as_ggml() {
        for ty in TYPES {
            let bs = ty.block_size() as usize;
            let gt = GridType::try_from(ty).unwrap();
            let src = crate::gguf::synth::pseudo_random_f32(17, bs * 4);
            let q = ggml::quantize(ty, &src, bs, None).unwrap();
            let deq = ggml::dequantize_to_vec(ty, &q, src.len()).unwrap();
            for (bi, block) in q.chunks(ty.type_size() as usize).enumerate() {
                let mut rewritten = block.to_vec();
                for j in 0..bs {
                    let g = grid(gt, block, j);
                    let code = get_code(gt, block, j);
                    assert!(code >= g.2 && code <= g.3, "{ty} code {code}");
                    assert_eq!(value(gt, g, code).to_bits(), deq[bi * bs + j].to_bits(), "{ty} block {bi} entry {j}");
                    // Clearing and re-storing each code gives back the same bytes.
                    set_code(gt, &mut rewritten, j, 0);
                    set_code(gt, &mut rewritten, j, code);
                }
                assert_eq!(rewritten, block, "{ty}");
                // Every code of entry 7 reads back, and no other entry moves.
                for c in 0..=grid(gt, block, 7).3 {
                    let mut b = block.to_vec();
                    set_code(gt, &mut b, 7, c);
                    assert_eq!(get_code(gt, &b, 7), c, "{ty}");
                    let after = ggml::dequantize_to_vec(ty, &b, bs).unwrap();
                    assert!((0..bs).all(|i| i == 7 || after[i].to_bits() == deq[bi * bs + i].to_bits()), "{ty}: code {c} moved another entry");
                }
            }
        }
    }
}
