//! Export of STATS as llama.cpp's GGUF importance matrix (`llama-imatrix` output, read by
//! `llama-quantize --imatrix`): per weight, F32 `<w>.in_sum2` [n_in, n_mat] (pooled Σx²) and F32
//! `<w>.counts` [1, n_mat] (tokens seen per matrix/expert), plus `general.type = "imatrix"`,
//! `imatrix.datasets` (string array), `imatrix.chunk_count` and `imatrix.chunk_size` (u32).
//! llama.cpp divides `in_sum2` by `counts` to get the mean squared activation per column.

use std::path::Path;

use super::ActivationStats;
use crate::gguf::{GgmlType, GgufError, GgufWriter, MetaType, MetaValue, TensorSpec};

/// Writes `stats` as an imatrix GGUF at `path` (atomically). `chunk_count` is the number of
/// samples and `chunk_size` their mean length in tokens (rounded up): each text plays the role
/// of one llama-imatrix chunk.
pub fn write_imatrix(stats: &ActivationStats, path: &Path) -> Result<(), GgufError> {
    let mut w = GgufWriter::new();
    w.set("general.type", MetaValue::string("imatrix"));
    let datasets = if stats.datasets.is_empty() { vec!["mathneuro".to_string()] } else { stats.datasets.clone() };
    w.set("imatrix.datasets", MetaValue::Array { elem: MetaType::String, items: datasets.iter().map(MetaValue::string).collect() });
    let chunk_count = u32::try_from(stats.samples).unwrap_or(u32::MAX);
    let chunk_size = if stats.samples == 0 { 0 } else { u32::try_from(stats.tokens.div_ceil(stats.samples)).unwrap_or(u32::MAX) };
    w.set("imatrix.chunk_count", MetaValue::U32(chunk_count));
    w.set("imatrix.chunk_size", MetaValue::U32(chunk_size));
    w.set("mathneuro.model_fingerprint", MetaValue::string(&stats.model_fingerprint));
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    for (name, ws) in &stats.weights {
        w.add_tensor(TensorSpec { name: format!("{name}.in_sum2"), dims: vec![ws.n_in as u64, ws.n_groups as u64], ggml_type: GgmlType::F32 });
        blobs.push(ws.sum_sq.iter().flat_map(|v| v.to_le_bytes()).collect());
        w.add_tensor(TensorSpec { name: format!("{name}.counts"), dims: vec![1, ws.n_groups as u64], ggml_type: GgmlType::F32 });
        blobs.push(ws.tokens.iter().flat_map(|t| (*t as f32).to_le_bytes()).collect());
    }
    w.write_atomic(path, None, |i, _spec, sink| sink.write_all(&blobs[i]))
}
