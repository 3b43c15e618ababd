//! The second-order capture for error-compensated quantization (`quantize --gptq`): for every
//! target weight, H = Σ_t x_t x_tᵀ over the calibration tokens' input rows (the Hessian of the
//! layer's squared output error, up to a factor 2). Weights fed from the same activation tensor
//! (q/k/v, gate/up) share one matrix, found from the decode's input ids; expert weights (MUL_MAT_ID)
//! are not captured (they quantize as without `--gptq`). Padding rows are left out.
//!
//! Each matrix is n_in × n_in f32, accumulated per decode as XᵀX with faer's matmul (after the
//! decode, from its copied inputs: ≈ 0.4 GB per 512-token decode on a 0.5B): on
//! Qwen2.5-0.5B (inputs of 896 and 4 864) that is 0.63 G entries per token of work and 2.5 GB of
//! matrices; a 1.5B model needs ≈ 10 GB.

use std::collections::HashMap;

use faer::{Accum, Mat, MatRef, Par};

use super::accumulate::{AccumulateError, Segment, WeightShape, check_input};
use super::driver::Capture;
use crate::ffi::llama::{ActivationSink, Activations, ExpertIds};

/// The captured matrices, by weight name.
pub struct Hessians {
    mats: Vec<Mat<f32>>,
    of_weight: HashMap<String, usize>,
    /// Tokens summed into every matrix.
    pub tokens: u64,
}

impl Hessians {
    /// H of weight `name` (n_in × n_in), when it was captured.
    pub fn get(&self, name: &str) -> Option<MatRef<'_, f32>> {
        self.of_weight.get(name).map(|&i| self.mats[i].as_ref())
    }

    /// Distinct matrices (weights that share an input share one).
    pub fn distinct(&self) -> usize {
        self.mats.len()
    }
}

/// The [`Capture`] that sums XᵀX per input.
pub struct HessianSink {
    shapes: Vec<WeightShape>,
    group_of: Vec<Option<usize>>,
    mats: Vec<Mat<f32>>,
    /// Input id of this decode → matrix already fed from it.
    decode_inputs: HashMap<usize, usize>,
    segments: Vec<Segment>,
    n_rows: usize,
    real_rows: usize,
    tokens: u64,
    threads: usize,
    /// This decode's inputs (matrix, Xᵀ as n_in × rows), multiplied in `end_decode`: inside the
    /// decode's callback llama.cpp's own threads still hold the cores.
    pending: Vec<(usize, Mat<f32>)>,
    error: Option<AccumulateError>,
}

impl HessianSink {
    /// A sink for `shapes` (the calibrator's weights), multiplying on `threads` threads.
    pub fn new(shapes: &[WeightShape], threads: usize) -> HessianSink {
        HessianSink {
            shapes: shapes.to_vec(),
            group_of: vec![None; shapes.len()],
            mats: Vec::new(),
            decode_inputs: HashMap::new(),
            segments: Vec::new(),
            n_rows: 0,
            real_rows: 0,
            tokens: 0,
            threads: threads.max(1),
            pending: Vec::new(),
            error: None,
        }
    }

    /// The matrices summed so far.
    pub fn finish(self) -> Hessians {
        let of_weight = self.shapes.iter().zip(&self.group_of).filter_map(|(s, g)| g.map(|g| (s.name.clone(), g))).collect();
        Hessians { mats: self.mats, of_weight, tokens: self.tokens }
    }

    /// The decode's real rows of `input` as the columns of an (n_in × rows) matrix (Xᵀ).
    fn rows(&self, input: &Activations<'_>) -> Mat<f32> {
        let mut xt = Mat::<f32>::zeros(input.n_in, self.real_rows);
        let mut k = 0;
        for seg in &self.segments {
            for r in seg.start..seg.end {
                xt.col_mut(k).iter_mut().zip(input.row_flat(r)).for_each(|(d, v)| *d = *v);
                k += 1;
            }
        }
        xt
    }
}

impl Capture for HessianSink {
    fn begin_decode(&mut self, segments: &[Segment], n_rows: usize) {
        self.segments = segments.to_vec();
        self.n_rows = n_rows;
        self.real_rows = segments.iter().map(|s| s.end - s.start).sum();
        self.decode_inputs.clear();
        self.pending.clear();
    }

    fn sink(&mut self) -> &mut dyn ActivationSink {
        self
    }

    fn end_decode(&mut self) -> Result<(), AccumulateError> {
        let pending = std::mem::take(&mut self.pending);
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let par = if self.threads > 1 { Par::rayon(self.threads) } else { Par::Seq };
        for (g, xt) in pending {
            faer::linalg::matmul::matmul(self.mats[g].as_mut(), Accum::Add, xt.as_ref(), xt.transpose(), 1.0f32, par);
        }
        self.tokens += self.real_rows as u64;
        Ok(())
    }

    fn finish_text(&mut self, _slot: usize) {}
}

impl ActivationSink for HessianSink {
    fn matmul(&mut self, weight: usize, input_id: usize, input: &Activations<'_>) {
        let shape = &self.shapes[weight];
        if shape.n_groups != 1 || self.error.is_some() {
            return;
        }
        if let Err(e) = check_input(shape, input, self.n_rows) {
            self.error = Some(e);
            return;
        }
        if let Some(&g) = self.decode_inputs.get(&input_id) {
            self.group_of[weight].get_or_insert(g);
            return;
        }
        let g = match self.group_of[weight] {
            Some(g) => g,
            None => {
                self.mats.push(Mat::zeros(shape.n_in, shape.n_in));
                self.mats.len() - 1
            }
        };
        self.group_of[weight] = Some(g);
        self.decode_inputs.insert(input_id, g);
        let xt = self.rows(input);
        if xt.col_iter().any(|c| c.iter().any(|v| !v.is_finite())) {
            self.error = Some(AccumulateError::NotFinite { weight: shape.name.clone() });
            return;
        }
        self.pending.push((g, xt));
    }

    fn matmul_id(&mut self, _weight: usize, _input: &Activations<'_>, _ids: &ExpertIds<'_>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(name: &str, n_in: usize) -> WeightShape {
        WeightShape { name: name.into(), n_in, n_groups: 1 }
    }

    #[test]
    fn sums_x_transpose_x_over_real_rows_once_per_shared_input() {
        let shapes = [shape("q", 3), shape("k", 3), shape("down", 2)];
        let mut sink = HessianSink::new(&shapes, 1);
        // Rows 0..2 are one text, row 2 is padding.
        let a = [1.0, 2.0, 3.0, 0.5, -1.0, 2.0, 100.0, 100.0, 100.0];
        let b = [1.0, 1.0, 2.0, 0.0, 9.0, 9.0];
        for _ in 0..2 {
            sink.begin_decode(&[Segment { slot: 0, start: 0, end: 2 }], 3);
            sink.matmul(0, 7, &Activations::contiguous(&a, 3));
            sink.matmul(1, 7, &Activations::contiguous(&a, 3));
            sink.matmul(2, 8, &Activations::contiguous(&b, 2));
            sink.end_decode().unwrap();
        }
        let h = sink.finish();
        assert_eq!((h.distinct(), h.tokens), (2, 4));
        let q = h.get("q").unwrap();
        let want = |i: usize, j: usize| 2.0 * (a[i] * a[j] + a[3 + i] * a[3 + j]);
        for i in 0..3 {
            for j in 0..3 {
                assert_eq!(q[(i, j)], want(i, j));
            }
        }
        assert_eq!(h.get("k").unwrap()[(0, 2)], q[(0, 2)]);
        assert_eq!(h.get("down").unwrap()[(0, 1)], 2.0 * (1.0 * 1.0 + 2.0 * 0.0));
    }

    #[test]
    fn a_non_finite_input_is_an_error_naming_the_weight() {
        let mut sink = HessianSink::new(&[shape("w", 2)], 1);
        sink.begin_decode(&[Segment { slot: 0, start: 0, end: 1 }], 1);
        sink.matmul(0, 1, &Activations::contiguous(&[f32::NAN, 1.0], 2));
        assert!(matches!(sink.end_decode(), Err(AccumulateError::NotFinite { weight }) if weight == "w"));
    }
}
