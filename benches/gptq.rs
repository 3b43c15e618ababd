//! Benchmark of `quantize --gptq`'s two costs per tensor (`quantize::gptq`) at the shapes of
//! `ffn_down`, the widest input: the inverse Cholesky factor U of H (f64, O(n_in³)), and the
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
use faer::Mat;
use mathneuro::gguf::GgmlType;
use mathneuro::quantize::gptq;
use rand::{Rng, SeedableRng};

const TOKENS: usize = 512;

/// Random weights (`rows` × `n_in`) and H = XᵀX of correlated inputs (a shared factor plus
/// noise per token).
fn problem(rows: usize, n_in: usize) -> (Vec<f32>, Mat<f32>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let w: Vec<f32> = (0..rows * n_in).map(|_| rng.random_range(-0.05f32..0.05)).collect();
    let common: Vec<f32> = (0..TOKENS).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let x = Mat::<f32>::from_fn(TOKENS, n_in, |t, j| common[t] + 0.3 * rng.random_range(-1.0f32..1.0) * (1.0 + (j % 7) as f32 * 0.1));
    (w, x.transpose() * &x)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("gptq");
    g.sample_size(10).measurement_time(Duration::from_secs(30)).warm_up_time(Duration::from_secs(3));
    for (rows, n_in) in [(896, 4864), (256, 8960)] {
        let (w, h) = problem(rows, n_in);
        if n_in < 8192 {
            g.bench_function(format!("inverse_factor {n_in}"), |b| b.iter(|| black_box(gptq::inverse_factor(h.as_ref(), gptq::DEFAULT_DAMP).unwrap())));
        }
        let u = gptq::inverse_factor(h.as_ref(), gptq::DEFAULT_DAMP).unwrap();
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
