//! A pruned `*-mathneuro.gguf` loads in llama.cpp (through the `llama-cpp-2` safe crate) and
//! generates text: decode a prompt, then a few greedy tokens.

mod apply_support;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;
use mathneuro::gguf::GgufFile;
use mathneuro::surgery::{self, ApplyOptions, Change};

#[test]
fn output_loads_and_generates_through_llama_cpp() {
    let model = GgufFile::open(apply_support::real_model()).unwrap();
    let (math, general) = apply_support::stats_pair(&model);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gemma-mathneuro.gguf");
    let mut opts = ApplyOptions::new(Change::Prune, &out);
    opts.select.top_k_percent = 1.0;
    apply_support::two_threads(|| surgery::apply(&model, &math, &general, &opts)).unwrap();

    let mut backend = LlamaBackend::init().unwrap();
    backend.void_logs();
    let llm = LlamaModel::load_from_file(&backend, &out, &LlamaModelParams::default()).unwrap();
    let params = LlamaContextParams::default().with_n_ctx(std::num::NonZeroU32::new(256)).with_n_threads(2).with_n_threads_batch(2);
    let mut ctx = llm.new_context(&backend, params).unwrap();
    let vocab = llm.vocab();
    let prompt = vocab.tokenize(b"The capital of France is", true, false);
    assert!(prompt.len() > 2);
    let mut batch = LlamaBatch::new(256, 1);
    for (i, t) in prompt.iter().enumerate() {
        batch.add(*t, i as i32, &[0], i + 1 == prompt.len()).unwrap();
    }
    ctx.decode(&mut batch).unwrap();
    let mut sampler = LlamaSampler::greedy();
    let mut generated = Vec::new();
    for pos in prompt.len() as i32..prompt.len() as i32 + 6 {
        let token = sampler.sample(&ctx, batch.n_tokens() - 1);
        sampler.accept(token);
        if vocab.is_eog(token) {
            break;
        }
        generated.push(token);
        batch.clear();
        batch.add(token, pos, &[0], true).unwrap();
        ctx.decode(&mut batch).unwrap();
    }
    let text = String::from_utf8_lossy(&vocab.detokenize(&generated, true, false)).into_owned();
    assert!(!generated.is_empty() && !text.trim().is_empty(), "no text generated: {generated:?}");
    eprintln!("generated: {text:?}");
}
