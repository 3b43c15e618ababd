//! Editing a quantized block in place on its own grid: the block's scales and mins stay, and only
//! the quants of the selected entries are re-rounded to the grid value nearest their new target.
//! Non-selected entries keep their exact bytes (no collateral change), a prune lands on the
//! grid's zero for the symmetric types (Q8_0, Q5_0, Q4_0, Q6_K, Q3_K) and on the grid value
//! nearest 0 for the types with a min (Q4_K, Q5_K, Q2_K, Q4_1, Q5_1) and the IQ4 tables (whose 16
//! values hold no 0). The types added for issue 25 keep their grids and code positions in
//! `grids`. When a target lies outside the block's range the entry is clamped and the caller falls
//! back to a full re-encode.
//!
//! Layouts follow ggml-common.h / ggml-quants.c (`block_q8_0`, `block_q5_0`, `block_q6_K`,
//! `block_q4_K` and their `dequantize_row_*`). Each entry decodes as `s·q − o` with `q` the
//! stored code in `[lo, hi]`.

use super::half::{f16_to_f32, f32_to_f16_up, half, put_half};
use super::grids;
use super::layout::{Q8_0_OR_Q5_0_D, q4_k, q5_0, q6_k, q8_0};
use crate::gguf::GgmlType;

/// Rounds half away from zero like `f32::round`, without a libm call (hot loop; inputs far
/// beyond the i32 range saturate, which the callers clamp anyway).
#[inline]
pub fn round_code(x: f32) -> f32 {
    (x + 0.5f32.copysign(x)) as i32 as f32
}

/// The block types `regrid` edits in place: taking one instead of a `GgmlType` makes an edit of
/// any other type unrepresentable (no run-time "does not handle" case below).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GridType {
    /// `block_q8_0`.
    Q8_0,
    /// `block_q5_0`.
    Q5_0,
    /// `block_q6_K`.
    Q6_K,
    /// `block_q4_K`.
    Q4_K,
    /// `block_q4_0` (`grids`).
    Q4_0,
    /// `block_q4_1` (`grids`).
    Q4_1,
    /// `block_q5_1` (`grids`).
    Q5_1,
    /// `block_q5_K` (`grids`).
    Q5_K,
    /// `block_q2_K` (`grids`).
    Q2_K,
    /// `block_q3_K` (`grids`).
    Q3_K,
    /// `block_iq4_nl` (`grids`: a non-linear table).
    IQ4_NL,
    /// `block_iq4_xs` (`grids`: a non-linear table).
    IQ4_XS,
}

/// A block type `regrid` cannot edit in place (it is re-encoded by ggml instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("regrid does not handle {0}")]
pub struct UnsupportedGridType(pub GgmlType);

impl TryFrom<GgmlType> for GridType {
    type Error = UnsupportedGridType;
    fn try_from(ty: GgmlType) -> Result<GridType, UnsupportedGridType> {
        match ty {
            GgmlType::Q8_0 => Ok(GridType::Q8_0),
            GgmlType::Q5_0 => Ok(GridType::Q5_0),
            GgmlType::Q6_K => Ok(GridType::Q6_K),
            GgmlType::Q4_K => Ok(GridType::Q4_K),
            GgmlType::Q4_0 => Ok(GridType::Q4_0),
            GgmlType::Q4_1 => Ok(GridType::Q4_1),
            GgmlType::Q5_1 => Ok(GridType::Q5_1),
            GgmlType::Q5_K => Ok(GridType::Q5_K),
            GgmlType::Q2_K => Ok(GridType::Q2_K),
            GgmlType::Q3_K => Ok(GridType::Q3_K),
            GgmlType::IQ4_NL => Ok(GridType::IQ4_NL),
            GgmlType::IQ4_XS => Ok(GridType::IQ4_XS),
            other => Err(UnsupportedGridType(other)),
        }
    }
}

impl From<GridType> for GgmlType {
    fn from(ty: GridType) -> GgmlType {
        match ty {
            GridType::Q8_0 => GgmlType::Q8_0,
            GridType::Q5_0 => GgmlType::Q5_0,
            GridType::Q6_K => GgmlType::Q6_K,
            GridType::Q4_K => GgmlType::Q4_K,
            GridType::Q4_0 => GgmlType::Q4_0,
            GridType::Q4_1 => GgmlType::Q4_1,
            GridType::Q5_1 => GgmlType::Q5_1,
            GridType::Q5_K => GgmlType::Q5_K,
            GridType::Q2_K => GgmlType::Q2_K,
            GridType::Q3_K => GgmlType::Q3_K,
            GridType::IQ4_NL => GgmlType::IQ4_NL,
            GridType::IQ4_XS => GgmlType::IQ4_XS,
        }
    }
}

/// (scale s, offset o, lowest code, highest code) of entry `j`: value = s·q − o.
pub fn grid(ty: GridType, b: &[u8], j: usize) -> (f32, f32, i32, i32) {
    match ty {
        GridType::Q8_0 => (half(b, q8_0::D), 0.0, -127, 127),
        GridType::Q5_0 => {
            let d = half(b, q5_0::D);
            (d, 16.0 * d, 0, 31)
        }
        GridType::Q6_K => {
            let (n, r) = (j / 128, j % 128);
            let (quarter, l) = (r / 32, r % 32);
            let sc = b[q6_k::SCALES + 8 * n + l / 16 + 2 * quarter] as i8 as f32;
            let s = half(b, q6_k::D) * sc;
            (s, 32.0 * s, 0, 63)
        }
        GridType::Q4_K => {
            let (sc, m) = q4k_scale_min(&b[q4_k::SCALES..q4_k::QS], j / 32);
            (half(b, q4_k::D) * sc as f32, half(b, q4_k::DMIN) * m as f32, 0, 15)
        }
        other => grids::grid(other, b, j),
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
pub fn set_code(ty: GridType, b: &mut [u8], j: usize, q: i32) {
    match ty {
        GridType::Q8_0 => b[q8_0::QS + j] = q as i8 as u8,
        GridType::Q5_0 => {
            let q = q as u32;
            let (byte, high) = (q5_0::QS + j % 16, j >= 16);
            b[byte] = if high { (b[byte] & 0x0F) | (((q & 0xF) as u8) << 4) } else { (b[byte] & 0xF0) | (q & 0xF) as u8 };
            let qh_bytes = q5_0::QH..q5_0::QH + 4;
            let mut qh = u32::from_le_bytes(b[qh_bytes.clone()].try_into().expect("qh is 4 bytes"));
            qh = (qh & !(1 << j)) | (((q >> 4) & 1) << j);
            b[qh_bytes].copy_from_slice(&qh.to_le_bytes());
        }
        GridType::Q6_K => {
            let q = q as u8;
            let (n, r) = (j / 128, j % 128);
            let (quarter, l) = (r / 32, r % 32);
            let ql = q6_k::QL + 64 * n + l + if quarter % 2 == 1 { 32 } else { 0 };
            b[ql] = if quarter < 2 { (b[ql] & 0xF0) | (q & 0xF) } else { (b[ql] & 0x0F) | ((q & 0xF) << 4) };
            let qh = q6_k::QH + 32 * n + l;
            let shift = 2 * quarter;
            b[qh] = (b[qh] & !(3 << shift)) | (((q >> 4) & 3) << shift);
        }
        GridType::Q4_K => {
            let q = q as u8;
            let (byte, within) = (q4_k::code_byte(j), j % 64);
            b[byte] = if within < 32 { (b[byte] & 0xF0) | (q & 0xF) } else { (b[byte] & 0x0F) | ((q & 0xF) << 4) };
        }
        other => grids::set_code(other, b, j, q),
    }
}

/// Re-rounds the selected entries of `block` to their targets on the block's own grid. Returns
/// true when some target lay outside the grid's range (the entry was clamped) or the grid has a
/// zero scale where a change was wanted.
pub fn regrid(ty: GridType, block: &mut [u8], target: &[f32], sel: &[bool]) -> bool {
    let mut clamped = false;
    for j in 0..target.len() {
        if !sel[j] {
            continue;
        }
        let g = grid(ty, block, j);
        let (s, o) = (g.0, g.1);
        if s == 0.0 || !s.is_finite() {
            clamped |= target[j] != -o;
            continue;
        }
        let (q, out) = grids::nearest(ty, g, target[j]);
        clamped |= out;
        set_code(ty, block, j, q);
    }
    clamped
}

/// Sets the 6-bit scale and min of Q4_K sub-block `j` (inverse of `q4k_scale_min`).
pub fn q4k_set_scale_min(q: &mut [u8], j: usize, sc: u8, m: u8) {
    if j < 4 {
        q[j] = (q[j] & 0xC0) | (sc & 63);
        q[j + 4] = (q[j + 4] & 0xC0) | (m & 63);
    } else {
        q[j + 4] = (sc & 0xF) | ((m & 0xF) << 4);
        q[j - 4] = (q[j - 4] & 0x3F) | ((sc >> 4) << 6);
        q[j] = (q[j] & 0x3F) | ((m >> 4) << 6);
    }
}

/// Entries sharing one scale: the unit `widen` enlarges.
pub fn unit_len(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q8_0 | GgmlType::Q5_0 | GgmlType::Q4_K | GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q5_K => 32,
        GgmlType::Q6_K | GgmlType::Q2_K | GgmlType::Q3_K => 16,
        _ => 0,
    }
}

/// Enlarges the scale (and, for Q4_K, the min) of every unit in which a selected target lies
/// outside the grid, just enough to hold all of the unit's targets, then re-rounds that unit's
/// entries (others keep their bytes). Returns false when the type's scale range cannot cover the
/// targets (the caller then re-encodes the whole block).
pub fn widen(ty: GridType, block: &mut [u8], target: &[f32], sel: &[bool]) -> bool {
    let n = unit_len(ty.into());
    if n == 0 {
        return false;
    }
    for u in 0..target.len() / n {
        let range = u * n..(u + 1) * n;
        // Every entry of a unit shares its grid.
        let (s, o, lo, hi) = grid(ty, block, range.start);
        let out_of_range = range.clone().any(|j| {
            let code = round_code((target[j] + o) / s);
            sel[j] && !(s != 0.0 && code >= lo as f32 && code <= hi as f32)
        });
        if !out_of_range {
            continue;
        }
        let t = &target[range.clone()];
        let max_t = t.iter().cloned().fold(0.0f32, f32::max);
        let min_t = t.iter().cloned().fold(0.0f32, f32::min);
        let ok = match ty {
            // value = d·q (q in ±127) or d·(q−16) (q−16 in −16..15): a signed d may serve either side.
            GridType::Q8_0 | GridType::Q5_0 | GridType::Q4_0 => {
                let (neg_reach, pos_reach) = match ty {
                    GridType::Q8_0 => (127.0, 127.0),
                    GridType::Q5_0 => (16.0, 15.0),
                    _ => (8.0, 7.0),
                };
                // d > 0 reaches [−neg·d, pos·d]; d < 0 reaches [−pos·|d|, neg·|d|].
                let positive = (max_t / pos_reach).max(-min_t / neg_reach);
                let negative = (max_t / neg_reach).max(-min_t / pos_reach);
                let d = if positive <= negative { positive } else { -negative };
                match f32_to_f16_up(d) {
                    Some(h) if d != 0.0 => {
                        put_half(block, Q8_0_OR_Q5_0_D, h);
                        true
                    }
                    _ => false,
                }
            }
            GridType::Q6_K => {
                let d = half(block, q6_k::D);
                let is = q6_k::SCALES + u; // one i8 scale per 16 entries, in order
                let positive = (max_t / 31.0).max(-min_t / 32.0);
                let negative = (max_t / 32.0).max(-min_t / 31.0);
                let need = if positive <= negative { positive } else { -negative };
                let sc = (need / d).abs().ceil() * (need / d).signum();
                if d == 0.0 || !sc.is_finite() || sc.abs() > 127.0 {
                    false
                } else {
                    block[is] = sc as i8 as u8;
                    true
                }
            }
            GridType::Q4_K => {
                let (d, dmin) = (half(block, q4_k::D), half(block, q4_k::DMIN));
                let (sc, m) = q4k_scale_min(&block[q4_k::SCALES..q4_k::QS], u);
                let m_new = if -dmin * m as f32 <= min_t { m as f32 } else { (-min_t / dmin).ceil() };
                let sc_new = (sc as f32).max(((max_t + dmin * m_new) / (15.0 * d)).ceil());
                if d <= 0.0 || dmin <= 0.0 || !(m_new <= 63.0 && sc_new <= 63.0) {
                    false
                } else {
                    q4k_set_scale_min(&mut block[q4_k::SCALES..q4_k::QS], u, sc_new as u8, m_new as u8);
                    true
                }
            }
            // No unit widening for these (a prune reaches 0 through `affine` or the quantizer).
            _ => false,
        };
        if !ok {
            return false;
        }
        // Every entry of the unit on the new grid.
        let (s, o, lo, hi) = grid(ty, block, range.start);
        for j in range {
            let code = if s == 0.0 { lo.max(0) as f32 } else { round_code((target[j] + o) / s).clamp(lo as f32, hi as f32) };
            set_code(ty, block, j, code as i32);
        }
    }
    true
}

/// For the K-quants (Q4_K, Q6_K), when one unit's scale code cannot grow any more: raises the
/// super-block scale `d` (and, for Q4_K, `dmin`) just enough, re-derives every unit's code from
/// the scale it needs (its old one, or more where a target lies outside), and re-rounds every
/// entry. Cheaper than a full re-encode and keeps each unit's grid as close to the old as the
/// codes allow. Returns false when no such encoding exists (the caller re-encodes with ggml).
pub fn widen_block(ty: GridType, block: &mut [u8], target: &[f32]) -> bool {
    let n = unit_len(ty.into());
    let units = target.len() / n.max(1);
    let widened = match ty {
        GridType::Q4_K => widen_q4k_super_scales(block, target, n, units),
        GridType::Q6_K => widen_q6k_super_scale(block, target, n, units),
        _ => false,
    };
    if widened {
        reround_every_entry(ty, block, target, n, units);
    }
    widened
}

/// Q4_K part of `widen_block`: raises `d` and `dmin` and stores each unit's new scale and min.
/// False (the block untouched) when the needed halves do not exist.
fn widen_q4k_super_scales(block: &mut [u8], target: &[f32], n: usize, units: usize) -> bool {
    let (d, dmin) = (half(block, q4_k::D), half(block, q4_k::DMIN));
    // Needed scale S and offset O per unit: value = S·q − O, q in 0..=15.
    let mut need = Vec::with_capacity(units);
    for u in 0..units {
        let t = &target[u * n..(u + 1) * n];
        let (sc, m) = q4k_scale_min(&block[q4_k::SCALES..q4_k::QS], u);
        let (min_t, max_t) = t.iter().fold((0.0f32, 0.0f32), |(a, b), v| (a.min(*v), b.max(*v)));
        let o = (dmin * m as f32).max(-min_t);
        let s = (d * sc as f32).max((max_t + o) / 15.0);
        need.push((s, o));
    }
    let max_s = need.iter().map(|x| x.0).fold(0.0, f32::max);
    let max_o = need.iter().map(|x| x.1).fold(0.0, f32::max);
    let (Some(hd), Some(hm)) = (f32_to_f16_up((max_s / 63.0).max(d)), f32_to_f16_up((max_o / 63.0).max(dmin))) else { return false };
    let (d2, dmin2) = (f16_to_f32(hd), f16_to_f32(hm));
    if d2 <= 0.0 {
        return false;
    }
    put_half(block, q4_k::D, hd);
    put_half(block, q4_k::DMIN, hm);
    for (u, (s, o)) in need.into_iter().enumerate() {
        let sc = (s / d2).ceil().min(63.0) as u8;
        let m = if dmin2 > 0.0 { (o / dmin2).ceil().min(63.0) as u8 } else { 0 };
        q4k_set_scale_min(&mut block[q4_k::SCALES..q4_k::QS], u, sc, m);
    }
    true
}

/// Q6_K part of `widen_block`: raises `d` and stores each unit's new signed scale. False (the
/// block untouched) when the needed half does not exist.
fn widen_q6k_super_scale(block: &mut [u8], target: &[f32], n: usize, units: usize) -> bool {
    let d = half(block, q6_k::D);
    let mut need = Vec::with_capacity(units);
    for u in 0..units {
        let t = &target[u * n..(u + 1) * n];
        let (min_t, max_t) = t.iter().fold((0.0f32, 0.0f32), |(a, b), v| (a.min(*v), b.max(*v)));
        let current = d * (block[q6_k::SCALES + u] as i8) as f32;
        // Signed effective scale: positive reaches [−32s, 31s], negative [−31|s|, 32|s|].
        let positive = (max_t / 31.0).max(-min_t / 32.0);
        let negative = (max_t / 32.0).max(-min_t / 31.0);
        let fits = (current > 0.0 && current >= positive) || (current < 0.0 && -current >= negative);
        let s = if fits {
            current
        } else if positive <= negative {
            positive
        } else {
            -negative
        };
        need.push(s);
    }
    let max_s = need.iter().map(|s| s.abs()).fold(0.0, f32::max);
    let Some(hd) = f32_to_f16_up((max_s / 127.0).max(d.abs())) else { return false };
    let d2 = f16_to_f32(hd);
    if d2 <= 0.0 {
        return false;
    }
    put_half(block, q6_k::D, hd);
    for (u, s) in need.into_iter().enumerate() {
        let sc = ((s.abs() / d2).ceil().min(127.0) * s.signum()) as i8;
        block[q6_k::SCALES + u] = sc as u8;
    }
    true
}

/// Re-rounds every entry of a widened block onto its unit's new grid.
fn reround_every_entry(ty: GridType, block: &mut [u8], target: &[f32], n: usize, units: usize) {
    let code_of = |s: f32, o: f32, lo: i32, hi: i32, t: f32| if s == 0.0 { lo.max(0) as f32 } else { round_code((t + o) / s).clamp(lo as f32, hi as f32) };
    if ty == GridType::Q4_K {
        // Sub-blocks 2c and 2c+1 share the 32 bytes of chunk c (low and high nibbles): build
        // each byte at once instead of one nibble at a time.
        for c in 0..units / 2 {
            let (s0, o0, lo0, hi0) = grid(ty, block, 2 * c * n);
            let (s1, o1, lo1, hi1) = grid(ty, block, (2 * c + 1) * n);
            for e in 0..n {
                let low = code_of(s0, o0, lo0, hi0, target[2 * c * n + e]) as u8;
                let high = code_of(s1, o1, lo1, hi1, target[(2 * c + 1) * n + e]) as u8;
                block[q4_k::QS + 32 * c + e] = (low & 0xF) | (high & 0xF) << 4;
            }
        }
        return;
    }
    for u in 0..units {
        // Every entry of a unit shares its grid.
        let (s, o, lo, hi) = grid(ty, block, u * n);
        for (j, t) in target.iter().enumerate().skip(u * n).take(n) {
            set_code(ty, block, j, code_of(s, o, lo, hi, *t) as i32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::ggml;

    #[test]
    fn grid_matches_ggml_dequantization_and_edits_round_trip() {
        for ty in [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q6_K, GgmlType::Q4_K] {
            let bs = ty.block_size() as usize;
            let gt = GridType::try_from(ty).unwrap();
            let src = crate::gguf::synth::pseudo_random_f32(9, bs * 4);
            let q = ggml::quantize(ty, &src, bs, None).unwrap();
            let deq = ggml::dequantize_to_vec(ty, &q, src.len()).unwrap();
            for (bi, block) in q.chunks(ty.type_size() as usize).enumerate() {
                for j in 0..bs {
                    let (s, o, lo, hi) = grid(gt, block, j);
                    let v = deq[bi * bs + j];
                    let code = round_code((v + o) / s);
                    assert!(code >= lo as f32 && code <= hi as f32, "{ty} code {code}");
                    assert!((s * code - o - v).abs() <= 1e-5 * (1.0 + v.abs()), "{ty} entry {j}: grid {} vs ggml {v}", s * code - o);
                }
                // Re-rounding every entry to its own value changes no byte.
                let mut edited = block.to_vec();
                assert!(!regrid(gt, &mut edited, &deq[bi * bs..(bi + 1) * bs], &vec![true; bs]));
                assert_eq!(edited, block, "{ty}");
                // Setting entry 5 to the grid's code for a value changes exactly that value.
                let (s, o, lo, hi) = grid(gt, block, 5);
                let mut t = deq[bi * bs..(bi + 1) * bs].to_vec();
                let code = (lo + hi) / 2 + 1;
                t[5] = s * code as f32 - o;
                let mut sel = vec![false; bs];
                sel[5] = true;
                regrid(gt, &mut edited, &t, &sel);
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
    fn widening_reaches_targets_beyond_the_range_and_keeps_other_units() {
        for ty in [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q6_K, GgmlType::Q4_K] {
            let bs = ty.block_size() as usize;
            let gt = GridType::try_from(ty).unwrap();
            // Units of different magnitudes, so the smallest one's scale code has room to grow.
            let src: Vec<f32> = crate::gguf::synth::pseudo_random_f32(4, bs).iter().enumerate().map(|(i, v)| v * (1 + i / 16 % 4) as f32).collect();
            let q = ggml::quantize(ty, &src, bs, None).unwrap();
            let deq = ggml::dequantize_to_vec(ty, &q, bs).unwrap();
            // Scale by 1.3 the largest entry of the unit with the smallest scale (K-quants give
            // their largest unit the largest scale code, which cannot grow): outside its grid.
            let n = unit_len(ty);
            let unit = (0..bs / n).min_by(|&a, &b| grid(gt, &q, a * n).0.abs().total_cmp(&grid(gt, &q, b * n).0.abs())).unwrap();
            let j = (unit * n..(unit + 1) * n).max_by(|&a, &b| deq[a].abs().total_cmp(&deq[b].abs())).unwrap();
            let mut target = deq.clone();
            let (s, o, lo, hi) = grid(gt, &q, j);
            target[j] = if s > 0.0 { s * (hi + 4) as f32 - o } else { s * (lo - 4) as f32 - o };
            let mut sel = vec![false; bs];
            sel[j] = true;
            let mut edited = q.clone();
            assert!(regrid(gt, &mut edited, &target, &sel), "{ty}: expected a clamp");
            let mut widened = q.clone();
            assert!(widen(gt, &mut widened, &target, &sel), "{ty}");
            let after = ggml::dequantize_to_vec(ty, &widened, bs).unwrap();
            let step = grid(gt, &widened, j).0.abs();
            assert!((after[j] - target[j]).abs() <= 0.5 * step * 1.001, "{ty}: {} vs {}", after[j], target[j]);
            assert!((after[j] - deq[j]).abs() > 0.5 * (target[j] - deq[j]).abs(), "{ty}: most of the change achieved");
            for i in 0..bs {
                if i / n != j / n {
                    assert_eq!(after[i].to_bits(), deq[i].to_bits(), "{ty}: entry {i} outside the unit moved");
                }
            }
        }
    }

    #[test]
    fn block_widening_covers_targets_beyond_the_largest_unit() {
        for ty in [GgmlType::Q6_K, GgmlType::Q4_K] {
            let gt = GridType::try_from(ty).unwrap();
            let src = crate::gguf::synth::pseudo_random_f32(6, 256);
            let q = ggml::quantize(ty, &src, 256, None).unwrap();
            let deq = ggml::dequantize_to_vec(ty, &q, 256).unwrap();
            let j = (0..256).max_by(|&a, &b| deq[a].abs().total_cmp(&deq[b].abs())).unwrap();
            let mut target = deq.clone();
            target[j] *= 1.5;
            let mut b = q.clone();
            assert!(widen_block(gt, &mut b, &target), "{ty}");
            let after = ggml::dequantize_to_vec(ty, &b, 256).unwrap();
            let step = grid(gt, &b, j).0.abs();
            assert!((after[j] - target[j]).abs() <= 0.51 * step, "{ty}: {} vs {}", after[j], target[j]);
            let rms = (after.iter().zip(&target).map(|(a, t)| (a - t) * (a - t)).sum::<f32>() / 256.0).sqrt();
            assert!(rms < 0.05, "{ty}: rms {rms}");
        }
    }
}
