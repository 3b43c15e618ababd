//! The second-order capture for error-compensated quantization (`quantize --gptq`): for every
//! target weight, H = Σ_t x_t x_tᵀ over the calibration tokens' input rows (the Hessian of the
//! layer's squared output error, up to a factor 2). Weights fed from the same activation tensor
//! (q/k/v, gate/up) share one matrix, found from the decode's input ids; expert weights (MUL_MAT_ID)
//! are not captured (they quantize as without `--gptq`). Padding rows are left out.
//!
//! H is symmetric, so only its lower triangle is summed and kept ([`Lower`]: row strips of
//! [`STRIP`] rows, each up to and including its diagonal block), accumulated per decode as
//! XᵀX with faer's matmul (after the decode, from its copied inputs: ≈ 0.4 GB per 512-token
//! decode on a 0.5B) — half the products and half the memory of the full square: on
//! Qwen2.5-0.5B (inputs of 896 and 4 864) 0.32 G products per token and 1.3 GB of matrices; on
//! the 1.5B (1 536 and 8 960) 1.2 G and 4.9 GB. Each entry is summed over the same rows in the
//! same order as the full product, so its bits are the full product's (tested).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use faer::{Accum, Mat, MatRef, Par};

use super::accumulate::{AccumulateError, Segment, WeightShape, check_input};
use super::driver::Capture;
use crate::ffi::llama::{ActivationSink, Activations, ExpertIds};

/// Rows per strip of [`Lower`].
pub const STRIP: usize = 256;

/// The lower triangle of a symmetric n × n matrix as row strips: strip s holds rows
/// s·STRIP .. min((s+1)·STRIP, n) and columns 0 .. the strip's last row + 1 (its diagonal block
/// whole). About n²/2 + n·STRIP/2 floats.
#[derive(Clone, Debug, PartialEq)]
pub struct Lower {
    n: usize,
    strips: Vec<Mat<f32>>,
}

impl Lower {
    /// (rows, columns) of each strip of an order-`n` matrix.
    fn strip_shapes(n: usize) -> impl Iterator<Item = (usize, usize)> {
        (0..n.div_ceil(STRIP)).map(move |s| ((n - s * STRIP).min(STRIP), ((s + 1) * STRIP).min(n)))
    }

    /// An all-zero n × n matrix.
    pub fn zeros(n: usize) -> Lower {
        Lower { n, strips: Lower::strip_shapes(n).map(|(rows, cols)| Mat::zeros(rows, cols)).collect() }
    }

    /// The bytes an order-`n` matrix takes (what `quantize --gptq` budgets its passes with).
    pub fn bytes_for(n: usize) -> u64 {
        Lower::strip_shapes(n).map(|(rows, cols)| (rows * cols * 4) as u64).sum()
    }

    /// The order n.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Adds Σ over the columns x of `xt` (n × rows) of x xᵀ, the strips in parallel on the
    /// current rayon pool (largest first).
    pub fn add_gram(&mut self, xt: MatRef<'_, f32>) {
        use rayon::prelude::*;
        assert_eq!(xt.nrows(), self.n, "add_gram: {} rows for an order-{} matrix", xt.nrows(), self.n);
        self.strips.par_iter_mut().enumerate().rev().for_each(|(s, strip)| {
            let (r0, rows, cols) = (s * STRIP, strip.nrows(), strip.ncols());
            faer::linalg::matmul::matmul(strip.as_mut(), Accum::Add, xt.subrows(r0, rows), xt.subrows(0, cols).transpose(), 1.0f32, Par::Seq);
        });
    }

    /// Entry (i, j), read from the lower triangle.
    pub fn get(&self, i: usize, j: usize) -> f32 {
        let (i, j) = if i >= j { (i, j) } else { (j, i) };
        self.strips[i / STRIP][(i % STRIP, j)]
    }

    /// The lower triangle of a square `m` (its upper triangle is not read).
    pub fn from_lower(m: MatRef<'_, f32>) -> Lower {
        let mut l = Lower::zeros(m.nrows());
        for (s, strip) in l.strips.iter_mut().enumerate() {
            let (r0, cols) = (s * STRIP, strip.ncols());
            strip.copy_from(m.submatrix(r0, 0, strip.nrows(), cols));
        }
        l
    }
}

/// The captured matrices, by weight name.
pub struct Hessians {
    mats: Vec<Arc<Lower>>,
    of_weight: HashMap<String, usize>,
    /// Tokens summed into every matrix.
    pub tokens: u64,
}

impl Hessians {
    /// H of weight `name` (n_in × n_in, its lower triangle), when it was captured.
    pub fn get(&self, name: &str) -> Option<&Lower> {
        self.of_weight.get(name).map(|&i| &*self.mats[i])
    }

    /// H of weight `name`, shared, when it was captured.
    pub fn shared(&self, name: &str) -> Option<Arc<Lower>> {
        self.of_weight.get(name).map(|&i| self.mats[i].clone())
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
    /// Only these weights are captured (all when None).
    only: Option<HashSet<String>>,
    mats: Vec<Lower>,
    /// Input id of this decode → matrix already fed from it.
    decode_inputs: HashMap<usize, usize>,
    segments: Vec<Segment>,
    n_rows: usize,
    real_rows: usize,
    tokens: u64,
    pool: rayon::ThreadPool,
    /// This decode's inputs (matrix, Xᵀ as n_in × rows), multiplied in `end_decode`: inside the
    /// decode's callback llama.cpp's own threads still hold the cores.
    pending: Vec<(usize, Mat<f32>)>,
    error: Option<AccumulateError>,
}

impl HessianSink {
    /// A sink for `shapes` (the calibrator's weights), multiplying on `threads` threads.
    pub fn new(shapes: &[WeightShape], threads: usize) -> Result<HessianSink, rayon::ThreadPoolBuildError> {
        Ok(HessianSink {
            shapes: shapes.to_vec(),
            group_of: vec![None; shapes.len()],
            only: None,
            mats: Vec::new(),
            decode_inputs: HashMap::new(),
            segments: Vec::new(),
            n_rows: 0,
            real_rows: 0,
            tokens: 0,
            pool: rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build()?,
            pending: Vec::new(),
            error: None,
        })
    }

    /// Captures only the weights named in `only` (a pass of a capture made in several).
    pub fn only(mut self, only: HashSet<String>) -> HessianSink {
        self.only = Some(only);
        self
    }

    /// The matrices summed so far.
    pub fn finish(self) -> Hessians {
        let of_weight = self.shapes.iter().zip(&self.group_of).filter_map(|(s, g)| g.map(|g| (s.name.clone(), g))).collect();
        Hessians { mats: self.mats.into_iter().map(Arc::new).collect(), of_weight, tokens: self.tokens }
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
        let mats = &mut self.mats;
        self.pool.install(|| pending.into_iter().for_each(|(g, xt)| mats[g].add_gram(xt.as_ref())));
        self.tokens += self.real_rows as u64;
        Ok(())
    }

    fn finish_text(&mut self, _slot: usize) {}
}

impl ActivationSink for HessianSink {
    fn matmul(&mut self, weight: usize, input_id: usize, input: &Activations<'_>) {
        let shape = &self.shapes[weight];
        if shape.n_groups != 1 || self.error.is_some() || self.only.as_ref().is_some_and(|o| !o.contains(&shape.name)) {
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
                self.mats.push(Lower::zeros(shape.n_in));
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
        let mut sink = HessianSink::new(&shapes, 1).unwrap();
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
        assert_eq!(q.n(), 3);
        let want = |i: usize, j: usize| 2.0 * (a[i] * a[j] + a[3 + i] * a[3 + j]);
        for i in 0..3 {
            for j in 0..3 {
                assert_eq!(q.get(i, j), want(i, j));
            }
        }
        assert_eq!(h.get("k").unwrap().get(0, 2), q.get(0, 2));
        assert_eq!(h.get("down").unwrap().get(0, 1), 2.0 * (1.0 * 1.0 + 2.0 * 0.0));
    }

    /// The strips' entries have the bits of one full XᵀX product (faer sums each entry over the
    /// rows in the same order), at widths across and beyond a strip and row counts of a decode —
    /// so H, and `quantize --gptq`'s bytes, are those of the full-square capture before it.
    #[test]
    fn the_lower_strips_have_the_bits_of_the_full_product() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (n, rows) in [(3, 2), (255, 17), (300, 64), (896, 512), (1100, 333)] {
            let xt = Mat::<f32>::from_fn(n, rows, |_, _| rng.random_range(-2.0f32..2.0));
            let (mut full, mut threaded) = (Mat::<f32>::zeros(n, n), Mat::<f32>::zeros(n, n));
            let mut lower = Lower::zeros(n);
            for _ in 0..2 {
                faer::linalg::matmul::matmul(full.as_mut(), Accum::Add, xt.as_ref(), xt.transpose(), 1.0f32, Par::Seq);
                faer::linalg::matmul::matmul(threaded.as_mut(), Accum::Add, xt.as_ref(), xt.transpose(), 1.0f32, Par::rayon(2));
                lower.add_gram(xt.as_ref());
            }
            // The product the capture made before the strips (on two threads) is the same too.
            assert!(full == threaded, "n {n}, rows {rows}: threaded full product differs");
            for i in 0..n {
                for j in 0..n {
                    assert_eq!(lower.get(i, j).to_bits(), full[(i.max(j), i.min(j))].to_bits(), "n {n}, rows {rows}, ({i}, {j})");
                }
            }
            assert_eq!(Lower::from_lower(full.as_ref()), lower);
        }
    }

    #[test]
    fn only_the_named_weights_are_captured_and_a_matrix_s_bytes_are_known_before() {
        let shapes = [shape("q", 3), shape("k", 3), shape("down", 2)];
        let mut sink = HessianSink::new(&shapes, 1).unwrap().only(["k".to_string()].into());
        let a = [1.0, 2.0, 3.0];
        sink.begin_decode(&[Segment { slot: 0, start: 0, end: 1 }], 1);
        sink.matmul(0, 7, &Activations::contiguous(&a, 3));
        sink.matmul(1, 7, &Activations::contiguous(&a, 3));
        sink.matmul(2, 8, &Activations::contiguous(&[1.0, 1.0], 2));
        sink.end_decode().unwrap();
        let h = sink.finish();
        assert!(h.get("q").is_none() && h.get("down").is_none());
        assert_eq!((h.distinct(), h.get("k").unwrap().get(2, 1)), (1, 6.0));
        for n in [1, 255, 256, 257, 1100] {
            let l = Lower::zeros(n);
            assert_eq!(Lower::bytes_for(n), l.strips.iter().map(|m| (m.nrows() * m.ncols() * 4) as u64).sum::<u64>());
        }
    }

    #[test]
    fn a_non_finite_input_is_an_error_naming_the_weight() {
        let mut sink = HessianSink::new(&[shape("w", 2)], 1).unwrap();
        sink.begin_decode(&[Segment { slot: 0, start: 0, end: 1 }], 1);
        sink.matmul(0, 1, &Activations::contiguous(&[f32::NAN, 1.0], 2));
        assert!(matches!(sink.end_decode(), Err(AccumulateError::NotFinite { weight }) if weight == "w"));
    }
}
