//! Every call into C (llama.cpp and ggml) and every other `unsafe` block of the crate lives in
//! this module; the rest of the code sees only the safe types defined here.
//!
//! - `mmap`: read-only maps of input files.
//! - `ggml`: ggml's quantization codecs (dequantize rows to f32, quantize f32 rows back).
//! - `chat`: chat templates rendered by llama.cpp (`--chat`).
//! - `llama`: a llama.cpp model and context with an activation callback (`cb_eval`).

pub mod chat;
pub mod ggml;
pub mod llama;
pub mod mmap;
