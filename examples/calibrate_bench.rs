//! Calibration throughput benchmark (documented in docs/BENCHMARKS-calibrate.md):
//!
//! ```text
//! MATHNEURO_DATA=/path/to/data cargo run --release --example calibrate_bench -- \
//!     [--model M] [--texts N] [--threads T] [--micro-batch B] [--max-tokens K] [--rounds R] [--pack P]
//! ```
//!
//! Measures, interleaved in R rounds on the same tokenized batches (the first N gsm8k train
//! texts and the first N mmlu test texts): plain llama.cpp decodes without the callback — with
//! every row an output (the head runs on all rows) and with only each text's last row an output
//! (the cheapest way llama.cpp can process these tokens: the baseline) — then calibration with
//! capture and the head skipped (the default), and calibration with capture computing the head. Prints tokens/s of
//! each and the ratios. Interleaving keeps the comparison fair on a busy machine.

use std::time::Instant;

use mathneuro::calibrate::{CalibrateOptions, Calibrator};
use mathneuro::data::calibration;
use mathneuro::ffi::llama::Model;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().expect("number"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model_path = args.iter().position(|a| a == "--model").and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| "models/gemma-3-270m-q4_k_m.gguf".into());
    let n = arg("--texts", 24);
    let threads = arg("--threads", 2);
    let micro_batch = arg("--micro-batch", 256);
    let max_tokens = arg("--max-tokens", 512);
    let rounds = arg("--rounds", 2);
    let pack = arg("--pack", 1);
    let mut texts: Vec<String> = Vec::new();
    for set in ["gsm8k", "mmlu"] {
        texts.extend(calibration::load(set, None).expect("data set").texts.into_iter().take(n));
    }
    let model = Model::load(model_path.as_ref()).expect("model");
    let base = CalibrateOptions { threads, micro_batch, max_tokens, max_texts_per_decode: pack, ..CalibrateOptions::default() };
    let modes = [
        ("plain decode, all rows output", CalibrateOptions { capture: false, skip_head: false, ..base.clone() }),
        ("plain decode, last row output (baseline)", CalibrateOptions { capture: false, skip_head: false, plain_last_output_only: true, ..base.clone() }),
        ("calibrate, head skipped (default)", base.clone()),
        ("calibrate, head computed", CalibrateOptions { skip_head: false, ..base.clone() }),
    ];
    let mut cals: Vec<Calibrator> = modes.iter().map(|(_, o)| Calibrator::new(&model, o).expect("context")).collect();
    let tok = cals[0].tokenize(&texts).expect("tokenize");
    println!("{} texts, {} tokens, threads {threads}, micro-batch {micro_batch}, texts per decode {pack}, {rounds} rounds", texts.len(), tok.total_tokens());
    let mut secs = [0f64; 4];
    let mut tokens = [0usize; 4];
    // Warm-up: page in the model and let every context allocate its buffers.
    let warm = tok.slice(0..tok.texts.len().min(2));
    for cal in cals.iter_mut() {
        let mut acc = cal.new_accumulator();
        cal.measure(&mut acc, &warm, &mut |_| {}).expect("warm-up");
    }
    for _ in 0..rounds {
        for (i, cal) in cals.iter_mut().enumerate() {
            let mut acc = cal.new_accumulator();
            let t = Instant::now();
            let th = cal.measure(&mut acc, &tok, &mut |_| {}).expect("measure");
            secs[i] += t.elapsed().as_secs_f64();
            tokens[i] += th.tokens;
        }
    }
    let rate: Vec<f64> = (0..4).map(|i| tokens[i] as f64 / secs[i]).collect();
    for (i, (name, _)) in modes.iter().enumerate() {
        println!("{name:<40} {:>8.1} tok/s  ({:.1} s)", rate[i], secs[i]);
    }
    println!("ratio calibrate (head skipped) / plain decode, last row output = {:.2}", rate[2] / rate[1]);
    println!("ratio calibrate (head skipped) / plain decode, all rows output = {:.2}", rate[2] / rate[0]);
    println!("ratio calibrate (head computed) / plain decode, all rows output = {:.2}", rate[3] / rate[0]);
    println!("speed gained by skipping the head = {:.2}x", rate[2] / rate[3]);
}
