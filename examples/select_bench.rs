//! Selection speed and agreement on a real model: every target weight selected by the single
//! pass (`select::onepass`, with its exact fallback) and by the exact three-pass radix path alone,
//! one thread, in one process, for several K. Prints the time of each path, their ratio, how often
//! the single pass had to fall back, and fails if any mask differs.
//! `cargo run --release --example select_bench -- MODEL MATH.gguf GENERAL.gguf [K,K,...]`
use std::time::Instant;

use mathneuro::gguf::GgufFile;
use mathneuro::select::matrix::{select_tensor, select_tensor_exact, top_k_count};
use mathneuro::select::{Method, SelectOptions, onepass};
use mathneuro::stats::ActivationStats;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 4 {
        eprintln!("usage: select_bench MODEL MATH.gguf GENERAL.gguf [K,K,...]");
        std::process::exit(2);
    }
    let file = GgufFile::open(&a[1]).expect("model");
    let math = ActivationStats::load(a[2].as_ref()).expect("math stats");
    let general = ActivationStats::load(a[3].as_ref()).expect("general stats");
    let ks: Vec<f64> = a.get(4).map_or("1,5,10,15".into(), |s| s.clone()).split(',').map(|k| k.parse().expect("K")).collect();
    let targets = mathneuro::model::target_weights(&file);
    println!("| K % | method | single pass s | exact passes s | exact / single | fallbacks | selected |");
    println!("|---|---|---|---|---|---|---|");
    for &k in &ks {
        for method in [Method::MathNeuro, Method::Wanda] {
            let opts = SelectOptions { method, top_k_percent: k, seed: 0 };
            let (mut t_fast, mut t_exact, mut fallbacks, mut selected, mut t_direct) = (0.0, 0.0, 0, 0, 0.0);
            for t in &targets {
                let am = &math.weights[&t.name].norm_sum;
                let ag = &general.weights[&t.name].norm_sum;
                let t0 = Instant::now();
                let fast = select_tensor(&file, t, am, ag, &opts).expect("select");
                t_fast += t0.elapsed().as_secs_f64();
                let t0 = Instant::now();
                let exact = select_tensor_exact(&file, t, am, ag, &opts).expect("select");
                t_exact += t0.elapsed().as_secs_f64();
                assert!(fast == exact, "{} K={k} {method:?}: the single pass differs from the exact passes", t.name);
                selected += fast.selected;
                // Did the single pass itself answer, or its fallback?
                let n_in = t.dims[0] as usize;
                let rows = t.n_rows();
                let rb = t.row_bytes() as usize;
                let (bs, ts) = (t.ggml_type.block_size() as usize, t.ggml_type.type_size() as usize);
                let data = file.tensor_data(t);
                let general_opt = if method == Method::Wanda { None } else { Some(&ag[..]) };
                let t0 = Instant::now();
                let answered = onepass::one_pass(
                    rows,
                    n_in,
                    onepass::SamplePlan::new(rows, n_in, bs),
                    |r, start, buf| {
                        let first = r as usize * rb + start / bs * ts;
                        mathneuro::ffi::ggml::dequantize(t.ggml_type, &data[first..first + buf.len() / bs * ts], buf).map(|_| 0)
                    },
                    am,
                    general_opt,
                    top_k_count(t.n_elements(), k),
                )
                .expect("decode");
                fallbacks += answered.is_none() as u32;
                t_direct += t0.elapsed().as_secs_f64();
            }
            eprintln!("direct one_pass: {t_direct:.3} s");
            println!("| {k} | {} | {t_fast:.3} | {t_exact:.3} | {:.2} | {fallbacks} of {} | {selected} |", method.name(), t_exact / t_fast, targets.len());
        }
    }
}
