//! A pruned `*-mathneuro.gguf` loads in llama.cpp (through the `llama-cpp-2` safe crate) and
//! generates text: decode a prompt, then a few greedy tokens.

use crate::apply_support;

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

    let text = apply_support::generate(&out, 6);
    assert!(!text.trim().is_empty(), "no text generated");
}
