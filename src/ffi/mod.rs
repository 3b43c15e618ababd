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

#[cfg(test)]
mod tests {
    use llama_cpp_sys_2 as sys;

    /// `inspect`'s file-type table is checked against llama.h here, where llama.cpp may be named.
    #[test]
    fn file_type_names_match_llama_h() {
        assert_eq!(crate::inspect::file_type_name(sys::LLAMA_FTYPE_MOSTLY_Q4_K_M as u64), Some("MOSTLY_Q4_K_M"));
        assert_eq!(crate::inspect::file_type_name(15), Some("MOSTLY_Q4_K_M"));
        assert_eq!(crate::inspect::file_type_name(sys::LLAMA_FTYPE_MOSTLY_BF16 as u64), Some("MOSTLY_BF16"));
        assert_eq!(crate::inspect::file_type_name(sys::LLAMA_FTYPE_MOSTLY_MXFP4_MOE as u64), Some("MOSTLY_MXFP4_MOE"));
        assert_eq!(crate::inspect::file_type_name(sys::LLAMA_FTYPE_GUESSED as u64), Some("GUESSED"));
        assert_eq!(crate::inspect::file_type_name(5), None);
    }
}
