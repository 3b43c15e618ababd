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
mod architectures;
mod calibrate_real;
mod cli_inspect;
mod eval_compare_run;
mod eval_end_to_end;
mod eval_gsm8k_prompt;
mod eval_loglik;
mod eval_math;
mod experiments_real;
mod fuzz_cli;
mod fuzz_gguf;
mod gguf_format;
mod issue27_outputs;
mod issue27_inputs;
mod issue27_promises;
mod issue27_types;
mod interface;
mod own_model;
mod protocol_cli;
mod quant_codecs;
mod quantize;
mod qwen_real;
mod reliability;
mod run_cli;
mod select_reference;
mod smollm2_real;
mod structure;
mod tune_cli;
mod tune_objective;
