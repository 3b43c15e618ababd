//! The MathNeuro score of one row, in SIMD: `S_j = |W_j · A_j|` for a dequantized row `W` and
//! the column statistic `A` (Σ over samples of the per-sample activation L2 norm).
//!
//! The absolute value of the product (rather than `|W|·A`) keeps every score non-negative even
//! for a signed zero in `A`, so the ordering used by top-k never sees `-0.0`.

use wide::f32x8;

/// Writes `out[j] = |w[j] · a[j]|`. All three slices have the same length.
pub fn score_row(w: &[f32], a: &[f32], out: &mut [f32]) {
    assert!(w.len() == a.len() && a.len() == out.len(), "score_row: lengths differ");
    let n8 = w.len() / 8 * 8;
    for ((wc, ac), oc) in w[..n8].chunks_exact(8).zip(a[..n8].chunks_exact(8)).zip(out[..n8].chunks_exact_mut(8)) {
        let wv = f32x8::new(wc.try_into().expect("chunk of 8"));
        let av = f32x8::new(ac.try_into().expect("chunk of 8"));
        oc.copy_from_slice(&(wv * av).abs().to_array());
    }
    for j in n8..w.len() {
        out[j] = (w[j] * a[j]).abs();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_matches_scalar() {
        let w = crate::gguf::synth::pseudo_random_f32(1, 37);
        let a: Vec<f32> = crate::gguf::synth::pseudo_random_f32(2, 37).iter().map(|v| v.abs()).collect();
        let mut out = vec![0.0; 37];
        score_row(&w, &a, &mut out);
        for j in 0..37 {
            assert_eq!(out[j].to_bits(), (w[j] * a[j]).abs().to_bits());
        }
    }
}
