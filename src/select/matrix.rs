//! Selection within one target weight. Rows are dequantized on the fly with ggml. First try: the
//! single pass of `onepass` (a row sample brackets the thresholds, the pass collects the
//! candidates above them). When the sample misleads, the exact fallback takes three passes: two
//! radix-counting passes fix the top-k thresholds of the math and general scores at once
//! (`radix`), the third walks the scores in flat order and sets the mask. Both give the same
//! selection. Memory: the candidates (capped near one f32 matrix), or for the fallback a few rows
//! of f32 and the count tables (512 KiB per score stream).

use rand::SeedableRng;
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

/// Row-wise view of one target weight: its bytes, geometry and column statistics per group.
struct Rows<'a> {
    info: &'a TensorInfo,
    data: &'a [u8],
    n_in: usize,
    rows_per_group: u64,
}

impl<'a> Rows<'a> {
    fn new(file: &'a GgufFile, info: &'a TensorInfo) -> Rows<'a> {
        let groups = n_groups(info) as u64;
        Rows { info, data: file.tensor_data(info), n_in: info.dims[0] as usize, rows_per_group: info.n_rows() / groups }
    }

    /// Dequantizes entries `start..start + buf.len()` of row `r` into `buf` (`start` and the
    /// length on block boundaries); returns the offset of the row's group in the statistics.
    fn segment(&self, r: u64, start: usize, buf: &mut [f32]) -> Result<usize, SelectError> {
        let rb = self.info.row_bytes() as usize;
        let (bs, ts) = (self.info.ggml_type.block_size() as usize, self.info.ggml_type.type_size() as usize);
        let first = r as usize * rb + start / bs * ts;
        let bytes = &self.data[first..first + buf.len() / bs * ts];
        ggml::dequantize(self.info.ggml_type, bytes, buf).map_err(|source| SelectError::Codec { tensor: self.info.name.clone(), source })?;
        Ok((r / self.rows_per_group) as usize * self.n_in)
    }

    /// Calls `f(row_index, a_row_offset, dequantized_row)` for each row in order.
    fn for_each_row(&self, mut f: impl FnMut(u64, usize, &[f32])) -> Result<(), SelectError> {
        let mut w = vec![0f32; self.n_in];
        for r in 0..self.info.n_rows() {
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
        let mut radix = RadixThresholds::new(streams.len(), k, self.info.n_elements());
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

/// Selects within one target weight. `a_math`/`a_general` are the `norm_sum` vectors.
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
    let rows = Rows::new(file, info);
    let k = top_k_count(info.n_elements(), opts.top_k_percent);
    let a_general = if opts.method == Method::Wanda { None } else { Some(a_general) };
    let fast = if single_pass {
        onepass::one_pass(
            info.n_rows(),
            rows.n_in,
            onepass::SamplePlan::new(info.n_rows(), rows.n_in, info.ggml_type.block_size() as usize),
            |r, start, buf| rows.segment(r, start, buf),
            a_math,
            a_general,
            k,
        )?
    } else {
        None
    };
    let mask = match fast {
        Some(mask) => mask,
        None => exact_passes(&rows, a_math, a_general, k)?,
    };
    finish(info, k, mask, opts)
}

/// The exact three-pass selection (radix thresholds, then a walk in flat order).
fn exact_passes(rows: &Rows<'_>, a_math: &[f32], a_general: Option<&[f32]>, k: u64) -> Result<BitMask, SelectError> {
    let numel = rows.info.n_elements();
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

/// The tensor's selection from its mathneuro/wanda mask (for `random`: as many entries, at
/// seeded random positions).
fn finish(info: &TensorInfo, k: u64, mut mask: BitMask, opts: &SelectOptions) -> Result<TensorSelection, SelectError> {
    let numel = info.n_elements();
    if opts.method == Method::Random {
        mask = random_mask(numel, mask.count(), opts.seed, &info.name);
    }
    Ok(TensorSelection {
        name: info.name.clone(),
        dims: info.dims.clone(),
        ggml_type: info.ggml_type,
        k,
        selected: mask.count(),
        mask,
    })
}

/// `count` distinct positions out of `numel`, drawn with ChaCha8 seeded from (seed, tensor name),
/// so the result does not depend on the order tensors are processed in.
fn random_mask(numel: u64, count: u64, seed: u64, name: &str) -> BitMask {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(name.as_bytes());
    let digest = h.finalize();
    let mut rng = rand_chacha::ChaCha8Rng::from_seed(digest.into());
    let mut mask = BitMask::new(numel);
    for i in rand::seq::index::sample(&mut rng, numel as usize, count as usize) {
        mask.set(i as u64);
    }
    mask
}
