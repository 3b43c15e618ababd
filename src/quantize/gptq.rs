//! Error-compensated rounding into ggml's block types (GPTQ, Frantar et al. 2022, with ggml's
//! own block scales): the rounding error of each input column is pushed onto the columns not yet
//! rounded, weighted by the inverse of H = Σ x xᵀ over calibration tokens
//! (`calibrate::hessian`), so the layer's *output* on those tokens moves as little as the grid
//! allows — where ggml's importance-weighted rounding (an imatrix) fits each weight on its own.
//!
//! Per row (rows are independent given H): columns run in order; at the first column of each
//! block, that block's scales (and mins) are chosen by ggml's quantizer from the row's current,
//! error-updated values with the usual importance vector; then every column of the block is
//! rounded to the nearest code of that grid (`surgery::regrid::grid`), and its error e/U_jj
//! updates the later columns by −e·U_j,· with U the upper Cholesky factor of H⁻¹. The bytes are
//! ggml's block layout, so the output is an ordinary GGUF tensor of the same type and size.
//! H is damped by `damp` × its mean diagonal (GPTQ's 1 %), and a column no token reached
//! (H_jj = 0) gets H_jj = 1 (no error is pushed through it).

use faer::linalg::solvers::DenseSolveCore;
use faer::Side;
use rayon::prelude::*;

use crate::calibrate::hessian::Lower;
use crate::ffi::ggml::{self, CodecError};
use crate::gguf::GgmlType;
use crate::surgery::grids::is_table;
use crate::surgery::regrid::{self, GridType, round_code};

/// GPTQ's default damping: 1 % of the mean diagonal.
pub const DEFAULT_DAMP: f64 = 0.01;

/// True for the types `encode` rounds (every linear block grid; not F16/BF16/F32 or the
/// non-linear IQ tables, which quantize as without `--gptq`).
pub fn handles(ty: GgmlType) -> bool {
    GridType::try_from(ty).is_ok_and(|g| !is_table(g))
}

/// Why H could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GptqError {
    /// H is not positive definite even damped by 100 % of its mean diagonal.
    #[error("the input covariance is not positive definite even with damping {damp}")]
    NotPositiveDefinite {
        /// The last damping tried.
        damp: f64,
    },
    /// ggml refused a block.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Capturing H (a pass of forward passes) failed.
    #[error("capturing H: {0}")]
    Capture(String),
}

/// Gives the encoder H per weight, asked in the master's tensor order: all captured at once
/// ([`Hessians`](crate::calibrate::hessian::Hessians)), or captured pass by pass within a memory
/// budget (`pipeline::HessianPasses`).
pub trait HessianSource: Send + Sync {
    /// H of weight `name`; None when it has none (expert weights, names no capture sees).
    fn hessian(&self, name: &str) -> Result<Option<std::sync::Arc<Lower>>, GptqError>;
}

impl<T: HessianSource> HessianSource for std::sync::Arc<T> {
    fn hessian(&self, name: &str) -> Result<Option<std::sync::Arc<Lower>>, GptqError> {
        (**self).hessian(name)
    }
}

impl HessianSource for crate::calibrate::hessian::Hessians {
    fn hessian(&self, name: &str) -> Result<Option<std::sync::Arc<Lower>>, GptqError> {
        Ok(self.shared(name))
    }
}

/// The upper Cholesky factor U of (H + damp·mean(diag H)·I)⁻¹, row-major (U[j][k] for k ≥ j);
/// damping grows ×10 until the factorization succeeds.
pub fn inverse_factor(h: &Lower, damp: f64) -> Result<Vec<f32>, GptqError> {
    let n = h.n();
    let mean = (0..n).map(|i| h.get(i, i) as f64).sum::<f64>() / n.max(1) as f64;
    let mut d = damp;
    loop {
        let mut m = faer::Mat::<f64>::from_fn(n, n, |i, j| h.get(i, j) as f64);
        for i in 0..n {
            if m[(i, i)] <= 0.0 {
                m[(i, i)] = 1.0;
            }
            m[(i, i)] += d * mean.max(f64::MIN_POSITIVE);
        }
        let factor = m.llt(Side::Lower).ok().map(|l| l.inverse()).and_then(|inv| inv.llt(Side::Lower).ok());
        if let Some(l) = factor {
            let l = l.L();
            let mut u = vec![0f32; n * n];
            for j in 0..n {
                for k in j..n {
                    u[j * n + k] = l[(k, j)] as f32;
                }
            }
            return Ok(u);
        }
        if d >= 1.0 {
            return Err(GptqError::NotPositiveDefinite { damp: d });
        }
        d *= 10.0;
    }
}

/// Rows rounded together by one worker ([`round_rows`]): each row of U (n_in floats) is read
/// once per tile instead of once per row — U is n_in² floats, far beyond the caches at the 1.5B's
/// widths (321 MB for `ffn_down`'s 8 960), so per-row rounding streams it from memory once per
/// row — while a tile of rows (16 × 35 KB there) stays in L2. Each row's arithmetic is the same
/// in the same order, so the bytes do not depend on the tile (tested).
pub const TILE_ROWS: usize = 16;

/// Encodes `weights` (rows of `n_in`, row-major) as `ty` with GPTQ against `h`; `importance`
/// (one value per column) guides ggml's choice of each block's scales. The caller checks
/// [`handles`].
pub fn encode(weights: &[f32], n_in: usize, h: &Lower, ty: GgmlType, importance: Option<&[f32]>, damp: f64) -> Result<Vec<u8>, GptqError> {
    if h.n() != n_in {
        return Err(CodecError::BadRows { ty, len: weights.len(), n_per_row: n_in, block: ty.block_size() }.into());
    }
    let u = inverse_factor(h, damp)?;
    Ok(round_rows(weights, n_in, &u, ty, importance, TILE_ROWS)?)
}

/// The rounding half of [`encode`], given U ([`inverse_factor`], n_in × n_in row-major), with
/// `tile_rows` rows per worker (1: each row on its own; the bytes are the same).
pub fn round_rows(weights: &[f32], n_in: usize, u: &[f32], ty: GgmlType, importance: Option<&[f32]>, tile_rows: usize) -> Result<Vec<u8>, CodecError> {
    let grid = GridType::try_from(ty).map_err(|_| CodecError::NoQuantizer(ty, " with --gptq"))?;
    let per_block = ty.block_size() as usize;
    let block_bytes = ty.bytes_for(ty.block_size()).expect("one block") as usize;
    if n_in == 0 || !n_in.is_multiple_of(per_block) || !weights.len().is_multiple_of(n_in) || u.len() != n_in * n_in {
        return Err(CodecError::BadRows { ty, len: weights.len(), n_per_row: n_in, block: per_block as u64 });
    }
    let layout = Layout { ty, grid, n_in, per_block, block_bytes, row_bytes: n_in / per_block * block_bytes };
    let tile = tile_rows.max(1);
    let mut out = vec![0u8; weights.len() / n_in * layout.row_bytes];
    out.par_chunks_mut(tile * layout.row_bytes)
        .zip(weights.par_chunks(tile * n_in))
        .try_for_each(|(dst, rows)| layout.round_tile(&mut rows.to_vec(), dst, u, importance))?;
    Ok(out)
}

/// `x -= e·u` element by element: the update that dominates the rounding, in the widest vector
/// registers the CPU has (chosen at run time; the crate is built for baseline x86-64). Each
/// element is one multiply then one subtract, never a fused multiply-add, so every CPU gives
/// the same bits.
#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2"))]
fn sub_scaled(x: &mut [f32], e: f32, u: &[f32]) {
    for (a, b) in x.iter_mut().zip(u) {
        *a -= e * b;
    }
}

/// One tensor's block layout, as `round_tile` walks it.
struct Layout {
    ty: GgmlType,
    grid: GridType,
    n_in: usize,
    per_block: usize,
    block_bytes: usize,
    row_bytes: usize,
}

impl Layout {
    /// Rounds the rows in `w` (whole rows, updated in place) into `dst`, column by column: at
    /// each block's first column ggml picks every row's scales from its current values; then each
    /// column of the block is rounded in every row and its error pushed onto the row's later
    /// columns through U's row for that column.
    fn round_tile(&self, w: &mut [f32], dst: &mut [u8], u: &[f32], importance: Option<&[f32]>) -> Result<(), CodecError> {
        let n = self.n_in;
        let rows = w.len() / n;
        for b in 0..n / self.per_block {
            let cols = b * self.per_block..(b + 1) * self.per_block;
            for r in 0..rows {
                let block = &mut dst[r * self.row_bytes + b * self.block_bytes..][..self.block_bytes];
                block.copy_from_slice(&ggml::quantize(self.ty, &w[r * n..][cols.clone()], self.per_block, importance.map(|v| &v[cols.clone()]))?);
            }
            for j in cols {
                let jj = j - b * self.per_block;
                let (ujj, tail_u) = (u[j * n + j], &u[j * n + j + 1..(j + 1) * n]);
                for r in 0..rows {
                    let block = &mut dst[r * self.row_bytes + b * self.block_bytes..][..self.block_bytes];
                    let (head, tail) = w[r * n..(r + 1) * n].split_at_mut(j + 1);
                    let v = self.round_code_at(block, jj, head[j]);
                    let e = (head[j] - v) / ujj;
                    head[j] = v;
                    sub_scaled(tail, e, tail_u);
                }
            }
        }
        Ok(())
    }

    /// Rounds `x` to the nearest code of the block's grid at column `jj`, writes the code and
    /// returns the value it stands for.
    fn round_code_at(&self, block: &mut [u8], jj: usize, x: f32) -> f32 {
        let (s, o, lo, hi) = regrid::grid(self.grid, block, jj);
        if s == 0.0 {
            return -o;
        }
        let q = (round_code((x + o) / s) as i32).clamp(lo, hi);
        regrid::set_code(self.grid, block, jj, q);
        s * q as f32 - o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;
    use rand::{Rng, SeedableRng};

    /// Correlated inputs (a shared factor plus noise) and random weights.
    fn problem(rows: usize, n: usize, tokens: usize) -> (Vec<f32>, Mat<f32>, Vec<f32>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let w: Vec<f32> = (0..rows * n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let x: Vec<f32> = (0..tokens)
            .flat_map(|_| {
                let common: f32 = rng.random_range(-1.0..1.0);
                (0..n).map(|j| common * (1.0 + (j % 7) as f32 * 0.1) + 0.3 * rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>()
            })
            .collect();
        let xm = Mat::<f32>::from_fn(tokens, n, |t, j| x[t * n + j]);
        let h = xm.transpose() * &xm;
        (w, h, x)
    }

    /// Σ over tokens and rows of (x·w − x·ŵ)².
    fn output_error(w: &[f32], wq: &[f32], x: &[f32], n: usize) -> f64 {
        let mut e = 0.0;
        for xt in x.chunks(n) {
            for (r, rq) in w.chunks(n).zip(wq.chunks(n)) {
                let d: f64 = xt.iter().zip(r.iter().zip(rq)).map(|(a, (b, c))| *a as f64 * (*b as f64 - *c as f64)).sum();
                e += d * d;
            }
        }
        e
    }

    #[test]
    fn lowers_the_output_error_against_plain_rounding_at_the_same_type_and_size() {
        for ty in [GgmlType::Q4_K, GgmlType::Q3_K, GgmlType::Q4_0, GgmlType::Q6_K] {
            let n = 512;
            let (w, h, x) = problem(8, n, 256);
            let diag: Vec<f32> = (0..n).map(|j| h[(j, j)]).collect();
            let plain = ggml::quantize(ty, &w, n, Some(&diag)).unwrap();
            let gptq = encode(&w, n, &Lower::from_lower(h.as_ref()), ty, Some(&diag), DEFAULT_DAMP).unwrap();
            assert_eq!(plain.len(), gptq.len());
            let (p, g) = (ggml::dequantize_to_vec(ty, &plain, w.len()).unwrap(), ggml::dequantize_to_vec(ty, &gptq, w.len()).unwrap());
            let (ep, eg) = (output_error(&w, &p, &x, n), output_error(&w, &g, &x, n));
            assert!(eg < 0.8 * ep, "{ty}: GPTQ output error {eg} vs plain {ep}");
        }
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes_in_any_tiling_and_a_dead_column_is_harmless() {
        let n = 256;
        let (w, mut h, _) = problem(4, n, 64);
        for k in 0..n {
            h[(5, k)] = 0.0;
            h[(k, 5)] = 0.0;
        }
        let h = Lower::from_lower(h.as_ref());
        let a = encode(&w, n, &h, GgmlType::Q4_K, None, DEFAULT_DAMP).unwrap();
        assert_eq!(a, encode(&w, n, &h, GgmlType::Q4_K, None, DEFAULT_DAMP).unwrap());
        // Rows rounded one by one, or in tiles that do and do not divide the row count: same bytes.
        let (w9, h9) = (&w[..].repeat(3)[..9 * n], &h);
        let u = inverse_factor(h9, DEFAULT_DAMP).unwrap();
        let per_row = round_rows(w9, n, &u, GgmlType::Q4_K, None, 1).unwrap();
        assert_eq!(per_row, encode(w9, n, h9, GgmlType::Q4_K, None, DEFAULT_DAMP).unwrap());
        for tile in [2, 4, TILE_ROWS] {
            assert_eq!(per_row, round_rows(w9, n, &u, GgmlType::Q4_K, None, tile).unwrap(), "tile {tile}");
        }
        let v = ggml::dequantize_to_vec(GgmlType::Q4_K, &a, w.len()).unwrap();
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn the_vector_update_gives_the_bits_of_the_scalar_one() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for len in [0, 1, 7, 15, 16, 17, 33, 1000] {
            let u: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let x: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let e = rng.random_range(-3.0f32..3.0);
            let mut fast = x.clone();
            sub_scaled(&mut fast, e, &u);
            let plain: Vec<f32> = x.iter().zip(&u).map(|(a, b)| a - e * b).collect();
            assert_eq!(fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "length {len}");
        }
    }

    #[test]
    fn tables_and_floats_are_not_handled() {
        assert!(handles(GgmlType::Q3_K) && handles(GgmlType::Q8_0) && handles(GgmlType::Q5_1));
        assert!(!handles(GgmlType::IQ4_NL) && !handles(GgmlType::F16) && !handles(GgmlType::F32));
    }
}
