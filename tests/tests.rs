//! The integration tests, built as one binary (as ripgrep's tests/tests.rs does): llama.cpp is
//! linked once instead of once per test file. Run one file's tests with a filter on its module
//! name, e.g. `cargo test --release --test tests fuzz_gguf::`.

mod apply_support;
mod common;

mod apply_cli;
mod apply_exact;
mod apply_llama;
mod apply_real;
mod apply_types;
mod calibrate_real;
mod cli_inspect;
mod eval_end_to_end;
mod eval_gsm8k_prompt;
mod eval_loglik;
mod experiments_real;
mod fuzz_gguf;
mod gguf_format;
mod interface;
mod own_model;
mod quant_codecs;
mod qwen_real;
mod reliability;
mod run_cli;
mod select_reference;
mod structure;
mod tune_cli;
