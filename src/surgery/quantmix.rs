//! The type each tensor of an edited master is written in: its quantized sibling's type
//! (`--quantize like=SIBLING.gguf`), or llama-quantize's mix for a file type (`--quantize
//! Q4_K_M | Q3_K_M | Q2_K`, and `mathneuro quantize --type`).
//!
//! Q3_K_M (default Q3_K): `attn_v` Q5_K in its first two layers, else Q4_K; `ffn_down` Q5_K
//! in the first sixteenth of the layers, else Q4_K; `attn_output` Q4_K. Q2_K (default Q2_K):
//! `attn_v` Q4_K when `n_gqa() ≥ 4`, else Q3_K; `ffn_down` and `attn_output` Q3_K; a Q2_K or
//! Q3_K row that is not whole 256-blocks falls back to Q4_0. The head is Q6_K in all three.
//! The Q4_K_M rules follow llama.cpp's `src/llama-quant.cpp` (`tensor_allows_quantization`,
//! `llama_tensor_get_type_impl`, `tensor_type_fallback`) for dense models:
//! - only tensors of two or more dimensions whose name ends in `weight` are quantized, never the
//!   `*_norm.weight` ones; the rest keep their type;
//! - the output head (and the token embedding when the head is tied to it) → Q6_K, or Q8_0 when
//!   its rows are not whole 256-blocks;
//! - `attn_v` (and the attn_v-like fused `attn_qkv`, `attn_kv_b`) and `ffn_down` → Q6_K in the
//!   layers `use_more_bits` picks (the first and last eighth and every third layer between),
//!   else Q4_K; everything else → Q4_K;
//! - a row length that is not a multiple of the type's block: Q4_K → Q5_0, Q6_K → Q8_0, and F16
//!   when even 32 does not divide it;
//! - "the i-th `attn_v`/`ffn_down`" counts in llama.cpp's loader order (layer number, then name),
//!   not the file's: files that store `blk.10` before `blk.2` get the same types.
//!
//! Left out (not reachable for these dense architectures): the mixture-of-experts rules
//! (`n_expert` ≥ 4/8), the 70B `attn_v` rule, Falcon's ffn_down mix, user overrides
//! (`--tensor-type`, `--output-tensor-type`, `--token-embedding-type`, `--pure`), and the
//! architecture-specific exceptions for tensors these models do not have.

use std::collections::HashMap;
use std::path::PathBuf;

use super::edit::Mix;
use crate::gguf::{GgmlType, GgufFile, TensorInfo};

/// llama.cpp's `use_more_bits`: the layers a K_M mix gives more bits.
pub fn use_more_bits(i_layer: usize, n_layers: usize) -> bool {
    let (i, n) = (i_layer as i64, n_layers as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// True when llama-quantize quantizes this tensor at all (`tensor_allows_quantization`).
pub fn allows_quantization(t: &TensorInfo) -> bool {
    t.dims.len() >= 2 && t.name.ends_with("weight") && !t.name.contains("_norm.weight") && !t.name.contains("ffn_gate_inp.weight")
}

/// `tensor_type_fallback`: a type whose block divides the row length.
fn fallback(t: &TensorInfo, ty: GgmlType) -> GgmlType {
    let n = t.row_len();
    if n.is_multiple_of(ty.block_size()) {
        return ty;
    }
    let smaller = match ty {
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    };
    if n.is_multiple_of(smaller.block_size()) { smaller } else { GgmlType::F16 }
}

/// `n_gqa()`: attention heads per key/value head (`{arch}.attention.head_count` over
/// `head_count_kv`, 1 when either is missing or not a scalar).
pub fn n_gqa(model: &GgufFile) -> u64 {
    let arch = model.get("general.architecture").and_then(|v| v.as_str()).unwrap_or("").to_string();
    let get = |k: &str| model.get(&format!("{arch}.attention.{k}")).and_then(|v| v.as_u64());
    match (get("head_count"), get("head_count_kv")) {
        (Some(h), Some(kv)) if kv > 0 => h / kv,
        _ => 1,
    }
}

/// The type of an `attn_v`-like tensor, the `i`-th of `n`, under `mix`.
fn attn_v_type(mix: Mix, i: usize, n: usize, gqa: u64) -> GgmlType {
    match mix {
        Mix::Q4KM if use_more_bits(i, n) => GgmlType::Q6_K,
        Mix::Q4KM => GgmlType::Q4_K,
        Mix::Q3KM if i < 2 => GgmlType::Q5_K,
        Mix::Q3KM => GgmlType::Q4_K,
        Mix::Q2K if gqa >= 4 => GgmlType::Q4_K,
        Mix::Q2K => GgmlType::Q3_K,
    }
}

/// The type of the `i`-th of `n` `ffn_down` tensors under `mix` (dense, not Falcon).
fn ffn_down_type(mix: Mix, i: usize, n: usize) -> GgmlType {
    match mix {
        Mix::Q4KM if use_more_bits(i, n) => GgmlType::Q6_K,
        Mix::Q4KM => GgmlType::Q4_K,
        Mix::Q3KM if i < n / 16 => GgmlType::Q5_K,
        Mix::Q3KM => GgmlType::Q4_K,
        Mix::Q2K => GgmlType::Q3_K,
    }
}

/// llama.cpp's `weight_name_comparer` key: the layer of `blk.N.…` (−1 for other tensors), then
/// the name.
fn loader_key(name: &str) -> (i64, &str) {
    let layer = name.strip_prefix("blk.").and_then(|r| r.split('.').next()).and_then(|n| n.parse().ok()).unwrap_or(-1);
    (layer, name)
}

/// The tensors of `model` in the order llama-quantize visits them (`loader_key`).
pub fn loader_order(model: &GgufFile) -> Vec<&TensorInfo> {
    let mut order: Vec<&TensorInfo> = model.tensors.iter().collect();
    order.sort_by(|a, b| loader_key(&a.name).cmp(&loader_key(&b.name)));
    order
}

/// The type of every tensor of `model` under `mix`, by name.
pub fn mix_types(model: &GgufFile, mix: Mix) -> HashMap<String, GgmlType> {
    let base = mix.base_type();
    let gqa = n_gqa(model);
    let tied = model.tensor("output.weight").is_none();
    let attn_v_like = |t: &TensorInfo| ["attn_v.weight", "attn_qkv.weight", "attn_kv_b.weight"].iter().any(|k| t.name.contains(k));
    let n_attn_v = model.tensors.iter().filter(|t| attn_v_like(t)).count();
    let n_ffn_down = model.tensors.iter().filter(|t| t.name.contains("ffn_down")).count();
    let (mut i_attn_v, mut i_ffn_down) = (0usize, 0usize);
    let mut types = HashMap::new();
    // The per-kind counters run in llama-quantize's order, not the file's: its loader keeps the
    // tensors sorted by layer number, then name, so blk.2 comes before blk.10 even in a file
    // that stores blk.10 first.
    for t in loader_order(model) {
        let ty = if !allows_quantization(t) {
            t.ggml_type
        } else if t.name == "output.weight" || (tied && t.name == "token_embd.weight") {
            // The head's rule checks the default type's block first and goes straight to Q8_0.
            if !t.row_len().is_multiple_of(base.block_size()) { GgmlType::Q8_0 } else { fallback(t, GgmlType::Q6_K) }
        } else if attn_v_like(t) {
            i_attn_v += 1;
            fallback(t, attn_v_type(mix, i_attn_v - 1, n_attn_v, gqa))
        } else if t.name.contains("ffn_down") {
            i_ffn_down += 1;
            fallback(t, ffn_down_type(mix, i_ffn_down - 1, n_ffn_down))
        } else if t.name.contains("attn_output.weight") {
            fallback(t, match mix {
                Mix::Q4KM => base,
                Mix::Q3KM => GgmlType::Q4_K,
                Mix::Q2K => GgmlType::Q3_K,
            })
        } else {
            fallback(t, base)
        };
        types.insert(t.name.clone(), ty);
    }
    types
}

/// How a `--quantize like=SIBLING` sibling differs from the master (the first difference).
#[derive(Debug, thiserror::Error)]
pub enum SiblingMismatch {
    /// The two files hold different numbers of tensors.
    #[error("{} has {master_tensors} tensors, its sibling {} has {sibling_tensors}", master.display(), sibling.display())]
    TensorCount {
        /// The master file.
        master: PathBuf,
        /// Its tensor count.
        master_tensors: usize,
        /// The sibling file.
        sibling: PathBuf,
        /// Its tensor count.
        sibling_tensors: usize,
    },
    /// A tensor of the master is not in the sibling.
    #[error("{tensor}: in {} but not in the sibling {}", master.display(), sibling.display())]
    Missing {
        /// The tensor.
        tensor: String,
        /// The master file.
        master: PathBuf,
        /// The sibling file.
        sibling: PathBuf,
    },
    /// A tensor has another shape in the sibling.
    #[error("{tensor}: shape {master_dims:?} in {} but {sibling_dims:?} in the sibling {}", master.display(), sibling.display())]
    Shape {
        /// The tensor.
        tensor: String,
        /// Its shape in the master.
        master_dims: Vec<u64>,
        /// The master file.
        master: PathBuf,
        /// Its shape in the sibling.
        sibling_dims: Vec<u64>,
        /// The sibling file.
        sibling: PathBuf,
    },
}

/// The type of every tensor of `master` as in `sibling`, which must have the same tensors with
/// the same shapes; an error names the first difference.
pub fn like_types(master: &GgufFile, sibling: &GgufFile) -> Result<HashMap<String, GgmlType>, SiblingMismatch> {
    if master.tensors.len() != sibling.tensors.len() {
        return Err(SiblingMismatch::TensorCount {
            master: master.path().to_path_buf(),
            master_tensors: master.tensors.len(),
            sibling: sibling.path().to_path_buf(),
            sibling_tensors: sibling.tensors.len(),
        });
    }
    let mut types = HashMap::new();
    for t in &master.tensors {
        let s = sibling.tensor(&t.name).ok_or_else(|| SiblingMismatch::Missing {
            tensor: t.name.clone(),
            master: master.path().to_path_buf(),
            sibling: sibling.path().to_path_buf(),
        })?;
        if s.dims != t.dims {
            return Err(SiblingMismatch::Shape {
                tensor: t.name.clone(),
                master_dims: t.dims.clone(),
                master: master.path().to_path_buf(),
                sibling_dims: s.dims.clone(),
                sibling: sibling.path().to_path_buf(),
            });
        }
        types.insert(t.name.clone(), s.ggml_type);
    }
    Ok(types)
}
