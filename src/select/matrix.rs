//! Selection within one target weight. Memory: one f32 score per entry (reused for both STATS)
//! plus two rows; rows are dequantized on the fly with ggml, three passes over the matrix:
//! math threshold, general threshold, then the mask.

use rand::SeedableRng;
use sha2::{Digest, Sha256};

use super::check::n_groups;
use super::mask::BitMask;
use super::score::score_row;
use super::topk::{Membership, Threshold, threshold};
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

    /// Calls `f(row_index, a_row_offset, dequantized_row)` for each row in order.
    fn for_each_row(&self, mut f: impl FnMut(u64, usize, &[f32])) -> Result<(), SelectError> {
        let rb = self.info.row_bytes() as usize;
        let mut w = vec![0f32; self.n_in];
        for r in 0..self.info.n_rows() {
            let bytes = &self.data[r as usize * rb..(r as usize + 1) * rb];
            ggml::dequantize(self.info.ggml_type, bytes, &mut w)
                .map_err(|source| SelectError::Codec { tensor: self.info.name.clone(), source })?;
            let g = (r / self.rows_per_group) as usize;
            f(r, g * self.n_in, &w);
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

    /// The top-k threshold of `|W·A|`, using `scratch` (one f32 per entry).
    fn threshold(&self, a: &[f32], k: u64, scratch: &mut Vec<f32>) -> Result<Threshold, SelectError> {
        scratch.clear();
        self.for_each_scored_row(a, |_, s| scratch.extend_from_slice(s))?;
        Ok(threshold(scratch, k))
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
    let rows = Rows::new(file, info);
    let numel = info.n_elements();
    let k = top_k_count(numel, opts.top_k_percent);
    let mut scratch = Vec::with_capacity(numel as usize);
    let t_math = rows.threshold(a_math, k, &mut scratch)?;
    let t_general = match opts.method {
        Method::Wanda => None,
        Method::MathNeuro | Method::Random => Some(rows.threshold(a_general, k, &mut scratch)?),
    };
    drop(scratch);
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
            // Both memberships must see every score in flat order: one walk scores both.
            let mut m = Membership::new(t_math);
            let mut g = Membership::new(t_general);
            let mut sm = vec![0f32; rows.n_in];
            let mut sg = vec![0f32; rows.n_in];
            rows.for_each_row(|r, off, w| {
                score_row(w, &a_math[off..off + rows.n_in], &mut sm);
                score_row(w, &a_general[off..off + rows.n_in], &mut sg);
                for j in 0..rows.n_in {
                    let math = m.next(sm[j]);
                    let general = g.next(sg[j]);
                    if math && !general {
                        mask.set(r * n_in + j as u64);
                    }
                }
            })?;
        }
    }
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
pub fn random_mask(numel: u64, count: u64, seed: u64, name: &str) -> BitMask {
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
