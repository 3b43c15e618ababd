//! Which weights of a model are MathNeuro targets, and a fingerprint that ties statistics and
//! masks to the model they were computed on.
//!
//! Targets follow the reference (MathNeuro.py): every linear weight of the transformer blocks
//! (`blk.N.*.weight` with two dimensions, or three for mixture-of-experts `*_exps` tensors), plus
//! `output.weight` when the output head is not tied to the token embedding. Embeddings and norms
//! (one-dimensional) are never targets.

use sha2::{Digest, Sha256};

use crate::gguf::{GgufFile, TensorInfo};

/// `dims` without trailing 1s past the second: GGUF writers may store a matrix as
/// `[n, m, 1, 1]` (ggml tensors are 4-D), which llama.cpp loads as the same matrix.
pub fn linear_dims(dims: &[u64]) -> &[u64] {
    let mut n = dims.len();
    while n > 2 && dims[n - 1] == 1 {
        n -= 1;
    }
    &dims[..n]
}

/// Experts in a target weight: `dims[2]` of a 3-D `*_exps` tensor, else 1.
pub fn n_groups(t: &TensorInfo) -> usize {
    match linear_dims(&t.dims) {
        [_, _, e] => *e as usize,
        _ => 1,
    }
}

/// True when `t` is a weight MathNeuro may select from.
pub fn is_target(t: &TensorInfo) -> bool {
    let dims = linear_dims(&t.dims);
    let linear_shape = dims.len() == 2 || (dims.len() == 3 && t.name.contains("_exps"));
    if !linear_shape || !t.name.ends_with(".weight") {
        return false;
    }
    if t.name == "output.weight" {
        return true;
    }
    let Some(rest) = t.name.strip_prefix("blk.") else { return false };
    let mut parts = rest.splitn(2, '.');
    let layer_ok = parts.next().is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
    // Position embeddings or per-layer token tables inside blocks (rare) are embeddings.
    layer_ok && !t.name.contains("token_embd") && !t.name.contains("_embd.")
}

/// The target weights of `file`, in tensor-table order.
pub fn target_weights(file: &GgufFile) -> Vec<&TensorInfo> {
    file.tensors.iter().filter(|t| is_target(t)).collect()
}

/// Reads `path` with the validating GGUF reader before llama.cpp is given it: llama.cpp reports
/// any bad file only as a null model, while the reader names the problem (not a regular file,
/// truncated, bad magic, a tensor past the end, …). Both llama.cpp loaders call this first.
pub fn check_loadable(path: &std::path::Path) -> Result<(), crate::gguf::GgufError> {
    let file = GgufFile::open(path)?;
    ensure_model(&file)?;
    crate::gguf::hparams::check(&file)
}

/// Refuses a GGUF that is not a model: a mathneuro STATS file (`mathneuro.kind = stats`, to be
/// given as `--math`/`--general`) or a llama.cpp imatrix, so a mix-up is named as such rather
/// than as an unsupported architecture or STATS measured on another model.
pub fn ensure_model(file: &GgufFile) -> Result<(), crate::gguf::GgufError> {
    let what = if file.get_str("mathneuro.kind") == Some(crate::stats::file::KIND_STATS) {
        "mathneuro STATS (give it as --math or --general of apply)"
    } else if file.get_str("general.type") == Some("imatrix") {
        "llama.cpp imatrix"
    } else {
        return Ok(());
    };
    Err(crate::gguf::GgufError::NotAModel { path: file.path().to_path_buf(), what })
}

/// True when the model has no `output.weight`, so the head reuses `token_embd.weight`.
pub fn output_is_tied(file: &GgufFile) -> bool {
    file.tensor("output.weight").is_none()
}

/// The layer index of a `blk.N.…` tensor.
pub fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// The matrix kind of a tensor name: `blk.3.attn_q.weight` → `attn_q`, `output.weight` → `output`.
pub fn matrix_kind(name: &str) -> &str {
    let base = name.strip_suffix(".weight").unwrap_or(name);
    match base.strip_prefix("blk.") {
        Some(rest) => rest.split_once('.').map_or(rest, |(_, kind)| kind),
        None => base,
    }
}

/// A fingerprint of the model's tensor table (names, shapes, types, in order): files computed on
/// one model are refused for another. Hex sha256, 64 characters.
pub fn fingerprint(file: &GgufFile) -> String {
    let mut h = Sha256::new();
    for t in &file.tensors {
        h.update(t.name.as_bytes());
        h.update([0]);
        for d in &t.dims {
            h.update(d.to_le_bytes());
        }
        h.update(t.ggml_type.to_u32().to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgmlType;

    fn t(name: &str, dims: &[u64]) -> TensorInfo {
        TensorInfo { name: name.into(), dims: dims.to_vec(), ggml_type: GgmlType::F32, offset: 0 }
    }

    #[test]
    fn targets_are_block_linears_and_untied_head() {
        assert!(is_target(&t("blk.0.attn_q.weight", &[640, 1024])));
        assert!(is_target(&t("blk.17.ffn_down.weight", &[2048, 640])));
        assert!(is_target(&t("blk.1.ffn_up_exps.weight", &[64, 128, 8])));
        assert!(is_target(&t("output.weight", &[640, 1000])));
        assert!(!is_target(&t("token_embd.weight", &[640, 1000])));
        assert!(!is_target(&t("blk.0.attn_norm.weight", &[640])));
        assert!(!is_target(&t("blk.0.attn_q.bias", &[640])));
        assert!(!is_target(&t("output_norm.weight", &[640])));
        // Stored 4-D with trailing 1s, as some writers do: still a matrix (issue 10).
        assert!(is_target(&t("blk.0.ffn_down.weight", &[64, 32, 1, 1])));
        assert_eq!(n_groups(&t("blk.0.ffn_down.weight", &[64, 32, 1, 1])), 1);
        assert_eq!(n_groups(&t("blk.0.ffn_up_exps.weight", &[64, 32, 4, 1])), 4);
        assert!(!is_target(&t("blk.0.ffn_down.weight", &[64, 32, 2, 1])));
    }

    #[test]
    fn names_split_into_layer_and_kind() {
        assert_eq!(layer_of("blk.12.ffn_gate.weight"), Some(12));
        assert_eq!(layer_of("output.weight"), None);
        assert_eq!(matrix_kind("blk.12.ffn_gate.weight"), "ffn_gate");
        assert_eq!(matrix_kind("output.weight"), "output");
    }
}
