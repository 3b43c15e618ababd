//! Benchmark of `quantize --gptq`'s costs at the shapes of `ffn_down`, the widest input: the
//! capture's update per decode (512 tokens' XᵀX, the lower triangle in strips as
//! `calibrate::hessian::Lower` sums it, against the full square product it replaced; same bits),
//! and per tensor (`quantize::gptq`) the inverse Cholesky factor U of H (f64, O(n_in³)), and the
//! rounding of the rows against U with rows one by one (tile 1, the first implementation) or in
//! tiles of `gptq::TILE_ROWS` (the default; same bytes). Shapes: the 0.5B model's 896 × 4 864
//! (Q3_K, as in its Q3_K_M mix) and 256 of the 1.5B's 1 536 rows × 8 960 (U is 321 MB there,
//! far beyond the caches), with H from 512 correlated synthetic tokens. The factor is timed at
//! the first shape only (≈ 10 s a pass at the second: O(n_in³)).
//!
//!   cargo bench --bench gptq
//!
//! Never time it beside another heavy job: the rounding is bound by memory traffic and vector
//! width (tiles and the run-time AVX-512/AVX2 update each matter; docs/BENCHMARKS.md).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use faer::{Accum, Mat, Par};
use mathneuro::calibrate::hessian::Lower;
use mathneuro::gguf::GgmlType;
use mathneuro::quantize::gptq;
use rand::{Rng, SeedableRng};

const TOKENS: usize = 512;

/// Random weights (`rows` × `n_in`), H = XᵀX of correlated inputs (a shared factor plus noise
/// per token) and Xᵀ.
fn problem(rows: usize, n_in: usize) -> (Vec<f32>, Lower, Mat<f32>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let w: Vec<f32> = (0..rows * n_in).map(|_| rng.random_range(-0.05f32..0.05)).collect();
    let common: Vec<f32> = (0..TOKENS).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let x = Mat::<f32>::from_fn(TOKENS, n_in, |t, j| common[t] + 0.3 * rng.random_range(-1.0f32..1.0) * (1.0 + (j % 7) as f32 * 0.1));
    (w, Lower::from_lower((x.transpose() * &x).as_ref()), x.transpose().to_owned())
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("gptq");
    g.sample_size(10).measurement_time(Duration::from_secs(30)).warm_up_time(Duration::from_secs(3));
    for (rows, n_in) in [(896, 4864), (256, 8960)] {
        let (w, h, xt) = problem(rows, n_in);
        let mut full = Mat::<f32>::zeros(n_in, n_in);
        let par = Par::rayon(0);
        g.bench_function(format!("capture {TOKENS} tokens {n_in} full square"), |b| {
            b.iter(|| faer::linalg::matmul::matmul(full.as_mut(), Accum::Add, xt.as_ref(), xt.transpose(), 1.0f32, par))
        });
        drop(full);
        let mut lower = Lower::zeros(n_in);
        g.bench_function(format!("capture {TOKENS} tokens {n_in} lower strips"), |b| b.iter(|| lower.add_gram(xt.as_ref())));
        drop(lower);
        if n_in < 8192 {
            g.bench_function(format!("inverse_factor {n_in}"), |b| b.iter(|| black_box(gptq::inverse_factor(&h, gptq::DEFAULT_DAMP).unwrap())));
        }
        let u = gptq::inverse_factor(&h, gptq::DEFAULT_DAMP).unwrap();
        for tile in [1, gptq::TILE_ROWS] {
            g.bench_function(format!("round_rows Q3_K {rows}x{n_in} tile {tile}"), |b| {
                b.iter(|| black_box(gptq::round_rows(&w, n_in, &u, GgmlType::Q3_K, None, tile).unwrap()))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
