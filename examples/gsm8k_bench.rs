//! GSM8K throughput: batched decoding (shared 8-shot prefix in the KV cache, many questions per
//! batch) against a naive loop (one question at a time, whole prompt each time), in one process
//! so both see the same machine load.
//!
//! ```text
//! MATHNEURO_DATA=/path/to/shared/data cargo run --release --example gsm8k_bench -- \
//!     [MODEL] [BATCHED_QUESTIONS=64] [NAIVE_QUESTIONS=8] [PARALLEL=32] [THREADS]
//! ```
//! The naive questions are the first ones of the batched set, so their answers are compared too.

use std::path::PathBuf;
use std::time::Instant;

use mathneuro::data::dir::resolve_data_dir;
use mathneuro::eval::datasets::{Gsm8kRecord, read_jsonl};
use mathneuro::eval::engine::{EngineOptions, Model, Session};
use mathneuro::eval::gsm8k::{Gsm8kMode, run_gsm8k};
use mathneuro::eval::gsm8k_prompt::MAX_NEW_TOKENS;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model_path = PathBuf::from(args.first().map_or("models/gemma-3-270m-q4_k_m.gguf", |s| s.as_str()));
    let arg = |i: usize, default: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let (n_batched, n_naive, parallel) = (arg(1, 64), arg(2, 8), arg(3, 32));
    let mut engine = EngineOptions::default();
    engine.threads = arg(4, engine.threads);
    engine.max_sequences = engine.max_sequences.max(parallel);
    let data = resolve_data_dir(None)?;
    let test: Vec<Gsm8kRecord> = read_jsonl(&data, "gsm8k/test.jsonl")?;
    let records: Vec<(usize, Gsm8kRecord)> = test.into_iter().enumerate().take(n_batched.max(n_naive)).collect();
    let model = Model::load(&model_path)?;
    let mut session = Session::new(&model, &engine)?;

    let t = Instant::now();
    let naive = run_gsm8k(&mut session, &records[..n_naive], records.len(), Gsm8kMode::Naive, MAX_NEW_TOKENS, |_| {})?;
    let naive_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let batched = run_gsm8k(&mut session, &records[..n_batched], records.len(), Gsm8kMode::Batched { parallel }, MAX_NEW_TOKENS, |_| {})?;
    let batched_s = t.elapsed().as_secs_f64();

    let per_min = |n: usize, s: f64| n as f64 * 60.0 / s;
    let same = naive.items.iter().zip(&batched.items).filter(|(a, b)| a.output == b.output).count();
    let same_answer = naive
        .items
        .iter()
        .zip(&batched.items)
        .filter(|(a, b)| a.extracted.get("flexible-extract") == b.extracted.get("flexible-extract"))
        .count();
    println!("model {} threads {} parallel {parallel}", model_path.display(), engine.threads);
    println!("naive:   {n_naive} questions in {naive_s:.1} s = {:.2} questions/min", per_min(n_naive, naive_s));
    println!("batched: {n_batched} questions in {batched_s:.1} s = {:.2} questions/min", per_min(n_batched, batched_s));
    println!("speed-up: {:.2}x", per_min(n_batched, batched_s) / per_min(n_naive, naive_s));
    // Output lengths differ between runs whose greedy text diverges, so tokens/s as well.
    let out_tokens: usize = batched.items.iter().map(|i| model.tokenize(&i.output, false).map_or(0, |t| t.len())).sum();
    println!("batched output: {out_tokens} tokens = {:.1} tokens/s", out_tokens as f64 / batched_s);
    println!(
        "same output text on the {n_naive} common questions: {same}; same flexible answer: {same_answer} \
         (llama.cpp's numbers depend slightly on the batch layout, so greedy text can diverge)"
    );
    Ok(())
}
