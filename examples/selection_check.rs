//! Sanity check of two STATS files against the reference's headline number: the fraction of
//! linear weights that are math-specific at K = 5% (≈1.2% for Gemma 3 270M, 100+100 samples).
//! `cargo run --release --example selection_check -- MODEL MATH.gguf GENERAL.gguf [K]`
use mathneuro::gguf::GgufFile;
use mathneuro::stats::ActivationStats;

fn threshold(scores: &[f32], k: usize) -> f32 {
    let mut v = scores.to_vec();
    let idx = v.len() - k;
    *v.select_nth_unstable_by(idx, f32::total_cmp).1
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let file = GgufFile::open(&a[1]).unwrap();
    let math = ActivationStats::load(a[2].as_ref()).unwrap();
    let general = ActivationStats::load(a[3].as_ref()).unwrap();
    let frac: f64 = a.get(4).map_or(0.05, |s| s.parse().unwrap());
    let (mut total, mut specific) = (0usize, 0usize);
    let mut per_layer = vec![(0usize, 0usize); 18];
    for t in mathneuro::model::target_weights(&file) {
        let n_in = t.dims[0] as usize;
        let w = mathneuro::ffi::ggml::dequantize_to_vec(t.ggml_type, file.tensor_data(t), t.n_elements() as usize).unwrap();
        let score = |s: &ActivationStats| -> Vec<f32> {
            let ns = &s.weights[&t.name].norm_sum;
            w.iter().enumerate().map(|(i, x)| x.abs() * ns[i % n_in]).collect()
        };
        let (sm, sg) = (score(&math), score(&general));
        let k = ((w.len() as f64) * frac).round() as usize;
        let (tm, tg) = (threshold(&sm, k), threshold(&sg, k));
        let n = sm.iter().zip(&sg).filter(|(m, g)| **m >= tm && **g < tg).count();
        total += w.len();
        specific += n;
        if let Some(l) = mathneuro::model::layer_of(&t.name) {
            per_layer[l].0 += w.len();
            per_layer[l].1 += n;
        }
    }
    println!("math-specific: {specific} of {total} = {:.3}%", 100.0 * specific as f64 / total as f64);
    for (l, (t, s)) in per_layer.iter().enumerate() {
        println!("layer {l:2}: {:.3}%", 100.0 * *s as f64 / *t as f64);
    }
}
