//! Selection within one target weight, matrix by matrix (the weight, or each expert of a 3-D
//! expert tensor with its own statistic and k). Rows are dequantized on the fly with ggml. First
//! try: the single pass of `onepass` (a row sample brackets the thresholds, the pass collects the
//! candidates above them). When the sample misleads, the exact fallback takes three passes: two
//! radix-counting passes fix the top-k thresholds of the math and general scores at once
//! (`radix`), the third walks the scores in flat order and sets the mask. Both give the same
//! selection. Memory: the candidates (capped near one f32 matrix), or for the fallback a few rows
//! of f32 and the count tables (512 KiB per score stream).

use rand::SeedableRng;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::check::n_groups;
use super::mask::BitMask;
use super::onepass;
use super::score::score_row;
use super::radix::RadixThresholds;
use super::topk::{Membership, Threshold};
use super::{Method, SelectError, SelectOptions, TensorSelection};
use crate::ffi::ggml;
use crate::gguf::{GgufFile, TensorInfo};

/// k = floor(numel · K / 100) (computed in f64; K in percent).
pub fn top_k_count(numel: u64, top_k_percent: f64) -> u64 {
    ((numel as f64) * top_k_percent / 100.0).floor() as u64
}

/// Entries of one matrix of a target weight: the whole weight, or one expert's 2-D slice of a
/// 3-D `*_exps` tensor (each expert is its own matrix, as in the reference's per-`nn.Linear` rule).
pub fn matrix_numel(info: &TensorInfo) -> u64 {
    info.n_elements() / n_groups(info) as u64
}

/// Row-wise view of one matrix of a target weight (the whole weight, or one expert of a 3-D
/// tensor): its rows' bytes, geometry, and the offset of its column statistic.
struct Rows<'a> {
    info: &'a TensorInfo,
    data: &'a [u8],
    n_in: usize,
    /// First row of this matrix in the tensor.
    first_row: u64,
    /// Rows of this matrix.
    n_rows: u64,
    /// Offset of this matrix's statistic in the `norm_sum` vectors (expert · n_in).
    a_offset: usize,
}

impl<'a> Rows<'a> {
    /// The view of expert `expert` (0 for a 2-D weight).
    fn expert(file: &'a GgufFile, info: &'a TensorInfo, expert: u64) -> Rows<'a> {
        let n_rows = info.n_rows() / n_groups(info) as u64;
        let n_in = info.dims[0] as usize;
        Rows { info, data: file.tensor_data(info), n_in, first_row: expert * n_rows, n_rows, a_offset: expert as usize * n_in }
    }

    /// Entries of this matrix.
    fn numel(&self) -> u64 {
        self.n_rows * self.n_in as u64
    }

    /// Dequantizes entries `start..start + buf.len()` of this matrix's row `r` into `buf`
    /// (`start` and the length on block boundaries); returns the offset of the matrix's
    /// statistic.
    fn segment(&self, r: u64, start: usize, buf: &mut [f32]) -> Result<usize, SelectError> {
        let rb = self.info.row_bytes() as usize;
        let (bs, ts) = (self.info.ggml_type.block_size() as usize, self.info.ggml_type.type_size() as usize);
        let first = (self.first_row + r) as usize * rb + start / bs * ts;
        let bytes = &self.data[first..first + buf.len() / bs * ts];
        ggml::dequantize(self.info.ggml_type, bytes, buf).map_err(|source| SelectError::Codec { tensor: self.info.name.clone(), source })?;
        Ok(self.a_offset)
    }

    /// Calls `f(row_index, a_row_offset, dequantized_row)` for each row of the matrix in order.
    fn for_each_row(&self, mut f: impl FnMut(u64, usize, &[f32])) -> Result<(), SelectError> {
        let mut w = vec![0f32; self.n_in];
        for r in 0..self.n_rows {
            let off = self.segment(r, 0, &mut w)?;
            f(r, off, &w);
        }
        Ok(())
    }

    /// Calls `f(row_index, scores)` for each row in order with `|W·A|` of that row.
    fn for_each_scored_row(&self, a: &[f32], mut f: impl FnMut(u64, &[f32])) -> Result<(), SelectError> {
        let mut s = vec![0f32; self.n_in];
        self.for_each_row(|r, off, w| {
            score_row(w, &a[off..off + self.n_in], &mut s);
            f(r, &s);
        })
    }

    /// The exact top-k thresholds of `|W·A|` for each A of `streams`: two radix passes over
    /// the dequantized rows, no score storage.
    fn thresholds(&self, streams: &[&[f32]], k: u64) -> Result<Vec<Threshold>, SelectError> {
        let mut radix = RadixThresholds::new(streams.len(), k, self.numel());
        if radix.is_empty() {
            return Ok(radix.finish());
        }
        let mut s = vec![0f32; self.n_in];
        self.for_each_row(|_, off, w| {
            for (i, a) in streams.iter().enumerate() {
                score_row(w, &a[off..off + self.n_in], &mut s);
                radix.count_high(i, &s);
            }
        })?;
        radix.finish_high();
        self.for_each_row(|_, off, w| {
            for (i, a) in streams.iter().enumerate() {
                score_row(w, &a[off..off + self.n_in], &mut s);
                radix.count_low(i, &s);
            }
        })?;
        Ok(radix.finish())
    }
}

/// True when every score lies strictly below the threshold (bit order = value order for |x|).
fn below(scores: &[f32], t: Threshold) -> bool {
    match t.value {
        None => true,
        Some(v) => {
            let tb = v.to_bits();
            scores.iter().fold(true, |acc, s| acc & (s.to_bits() < tb))
        }
    }
}

/// Selects within one target weight, each expert on its own. `a_math`/`a_general` are the
/// `norm_sum` vectors (all experts').
pub fn select_tensor(
    file: &GgufFile,
    info: &TensorInfo,
    a_math: &[f32],
    a_general: &[f32],
    opts: &SelectOptions,
) -> Result<TensorSelection, SelectError> {
    select_by(file, info, a_math, a_general, opts, true)
}

/// `select_tensor` by the exact three-pass fallback alone (no sample, no single pass): the same
/// selection, slower; for tests and benchmarks that compare the two paths.
pub fn select_tensor_exact(
    file: &GgufFile,
    info: &TensorInfo,
    a_math: &[f32],
    a_general: &[f32],
    opts: &SelectOptions,
) -> Result<TensorSelection, SelectError> {
    select_by(file, info, a_math, a_general, opts, false)
}

fn select_by(
    file: &GgufFile,
    info: &TensorInfo,
    a_math: &[f32],
    a_general: &[f32],
    opts: &SelectOptions,
    single_pass: bool,
) -> Result<TensorSelection, SelectError> {
    let k = top_k_count(matrix_numel(info), opts.top_k_percent);
    let a_general = if opts.method == Method::Wanda { None } else { Some(a_general) };
    // Experts are independent matrices: each its own top k, scored with its own statistic.
    let masks = (0..n_groups(info) as u64)
        .into_par_iter()
        .map(|e| select_matrix(&Rows::expert(file, info, e), a_math, a_general, k, single_pass))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(finish(info, k, masks, opts))
}

/// The mathneuro/wanda mask of one matrix (flat indices local to it). A matrix without math
/// evidence — an expert no calibration token was routed to, so its statistic is all zero and
/// every score ties at 0 — selects nothing: its "top k" would be its first k entries in flat
/// order, an arbitrary choice that says nothing about math.
fn select_matrix(rows: &Rows<'_>, a_math: &[f32], a_general: Option<&[f32]>, k: u64, single_pass: bool) -> Result<BitMask, SelectError> {
    if a_math[rows.a_offset..rows.a_offset + rows.n_in].iter().all(|&a| a == 0.0) {
        return Ok(BitMask::new(rows.numel()));
    }
    let fast = if single_pass {
        let block = rows.info.ggml_type.block_size() as usize;
        let plan = onepass::SamplePlan::new(rows.n_rows, rows.n_in, block);
        onepass::one_pass(rows.n_rows, rows.n_in, plan, |r, start, buf| rows.segment(r, start, buf), a_math, a_general, k)?
    } else {
        None
    };
    match fast {
        Some(mask) => Ok(mask),
        None => exact_passes(rows, a_math, a_general, k),
    }
}

/// The exact three-pass selection (radix thresholds, then a walk in flat order).
fn exact_passes(rows: &Rows<'_>, a_math: &[f32], a_general: Option<&[f32]>, k: u64) -> Result<BitMask, SelectError> {
    let numel = rows.numel();
    let streams: Vec<&[f32]> = match a_general {
        None => vec![a_math],
        Some(a_general) => vec![a_math, a_general],
    };
    let thresholds = rows.thresholds(&streams, k)?;
    let t_math = thresholds[0];
    let t_general = thresholds.get(1).copied();
    let mut mask = BitMask::new(numel);
    let n_in = rows.n_in as u64;
    match t_general {
        None => {
            let mut m = Membership::new(t_math);
            rows.for_each_scored_row(a_math, |r, s| {
                for (j, &v) in s.iter().enumerate() {
                    if m.next(v) {
                        mask.set(r * n_in + j as u64);
                    }
                }
            })?;
        }
        Some(t_general) => {
            let a_general = a_general.expect("a general threshold comes from a general stream");
            // Both memberships must see every score in flat order: one walk scores both.
            let mut m = Membership::new(t_math);
            let mut g = Membership::new(t_general);
            let mut sm = vec![0f32; rows.n_in];
            let mut sg = vec![0f32; rows.n_in];
            rows.for_each_row(|r, off, w| {
                score_row(w, &a_math[off..off + rows.n_in], &mut sm);
                score_row(w, &a_general[off..off + rows.n_in], &mut sg);
                // Scores below both thresholds neither select nor use up a tie: skip such runs.
                const RUN: usize = 16;
                for start in (0..rows.n_in).step_by(RUN) {
                    let end = (start + RUN).min(rows.n_in);
                    if below(&sm[start..end], t_math) && below(&sg[start..end], t_general) {
                        continue;
                    }
                    for j in start..end {
                        let math = m.next(sm[j]);
                        let general = g.next(sg[j]);
                        if math && !general {
                            mask.set(r * n_in + j as u64);
                        }
                    }
                }
            })?;
        }
    }
    Ok(mask)
}

/// The tensor's selection from the mathneuro/wanda masks of its matrices (one per expert, in
/// order; for `random`: as many entries per matrix, at seeded random positions). `k` is the
/// per-matrix k; the selection records it summed over the matrices.
fn finish(info: &TensorInfo, k: u64, masks: Vec<BitMask>, opts: &SelectOptions) -> TensorSelection {
    let experts = masks.len() as u64;
    let masks: Vec<BitMask> = if opts.method == Method::Random {
        let expert_of = |e: u64| (experts > 1).then_some(e);
        masks.iter().zip(0..).map(|(m, e)| random_mask(m.len(), m.count(), opts.seed, &info.name, expert_of(e))).collect()
    } else {
        masks
    };
    let mask = concat(info.n_elements(), masks);
    TensorSelection {
        name: info.name.clone(),
        dims: info.dims.clone(),
        ggml_type: info.ggml_type,
        k: k * experts,
        selected: mask.count(),
        mask,
    }
}

/// The masks of consecutive matrices as one mask over `numel` entries.
fn concat(numel: u64, mut masks: Vec<BitMask>) -> BitMask {
    if masks.len() == 1 {
        return masks.pop().expect("one mask");
    }
    let mut whole = BitMask::new(numel);
    let mut offset = 0;
    for m in &masks {
        for i in m.ones() {
            whole.set(offset + i);
        }
        offset += m.len();
    }
    whole
}

/// `count` distinct positions out of `numel`, drawn with ChaCha8 seeded from (seed, tensor name,
/// expert index for an expert of a 3-D tensor), so the result does not depend on the order
/// tensors or experts are processed in.
fn random_mask(numel: u64, count: u64, seed: u64, name: &str, expert: Option<u64>) -> BitMask {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(name.as_bytes());
    if let Some(e) = expert {
        h.update(e.to_le_bytes());
    }
    let digest = h.finalize();
    let mut rng = rand_chacha::ChaCha8Rng::from_seed(digest.into());
    let mut mask = BitMask::new(numel);
    for i in rand::seq::index::sample(&mut rng, numel as usize, count as usize) {
        mask.set(i as u64);
    }
    mask
}
