//! What `mathneuro inspect` reports about a GGUF model: a plain-data `InspectReport` built from a
//! parsed file, rendered as text for people or serialized as JSON for scripts.
//!
//! Everything here comes from the file's header (no tensor data is read), so inspecting even a
//! large model is instant. File types are named as llama.cpp names them (`LLAMA_FTYPE_*`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::gguf::{GgmlType, GgufFile, MetaValue};
use crate::model;

/// Metadata keys with these prefixes record where a model came from; `inspect` shows them all
/// (mathneuro writes `mathneuro.*` into every model it rewrites).
pub const PROVENANCE_PREFIXES: &[&str] = &["mathneuro.", "general.base_model."];

/// llama.cpp's `enum llama_ftype` (llama.h), without the `LLAMA_FTYPE_` prefix. Ids 4–6 and
/// 33–35 were removed from llama.cpp and are absent here.
const FILE_TYPES: &[(u64, &str)] = &[
    (0, "ALL_F32"),
    (1, "MOSTLY_F16"),
    (2, "MOSTLY_Q4_0"),
    (3, "MOSTLY_Q4_1"),
    (7, "MOSTLY_Q8_0"),
    (8, "MOSTLY_Q5_0"),
    (9, "MOSTLY_Q5_1"),
    (10, "MOSTLY_Q2_K"),
    (11, "MOSTLY_Q3_K_S"),
    (12, "MOSTLY_Q3_K_M"),
    (13, "MOSTLY_Q3_K_L"),
    (14, "MOSTLY_Q4_K_S"),
    (15, "MOSTLY_Q4_K_M"),
    (16, "MOSTLY_Q5_K_S"),
    (17, "MOSTLY_Q5_K_M"),
    (18, "MOSTLY_Q6_K"),
    (19, "MOSTLY_IQ2_XXS"),
    (20, "MOSTLY_IQ2_XS"),
    (21, "MOSTLY_Q2_K_S"),
    (22, "MOSTLY_IQ3_XS"),
    (23, "MOSTLY_IQ3_XXS"),
    (24, "MOSTLY_IQ1_S"),
    (25, "MOSTLY_IQ4_NL"),
    (26, "MOSTLY_IQ3_S"),
    (27, "MOSTLY_IQ3_M"),
    (28, "MOSTLY_IQ2_S"),
    (29, "MOSTLY_IQ2_M"),
    (30, "MOSTLY_IQ4_XS"),
    (31, "MOSTLY_IQ1_M"),
    (32, "MOSTLY_BF16"),
    (36, "MOSTLY_TQ1_0"),
    (37, "MOSTLY_TQ2_0"),
    (38, "MOSTLY_MXFP4_MOE"),
    (39, "MOSTLY_NVFP4"),
    (40, "MOSTLY_Q1_0"),
    (41, "MOSTLY_Q2_0"),
    (1024, "GUESSED"),
];

/// llama.cpp's name for `general.file_type` id `id` (without `LLAMA_FTYPE_`), if it has one.
pub fn file_type_name(id: u64) -> Option<&'static str> {
    FILE_TYPES.iter().find(|(i, _)| *i == id).map(|(_, n)| *n)
}

/// `general.file_type`: the id and, when llama.cpp defines it, its name.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileType {
    /// The stored id.
    pub id: u64,
    /// `LLAMA_FTYPE_*` name without the prefix ("MOSTLY_Q4_K_M"), or null for an unknown id.
    pub name: Option<String>,
}

/// One row of the tensor table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TensorRow {
    /// Tensor name.
    pub name: String,
    /// ggml type name ("Q4_K").
    #[serde(rename = "type")]
    pub ggml_type: String,
    /// Dimensions in GGUF order (innermost first: a linear weight is `[in, out]`).
    pub shape: Vec<u64>,
    /// Elements.
    pub elements: u64,
    /// Bytes of data.
    pub bytes: u64,
    /// True when MathNeuro may select weights in this tensor (`model::is_target`).
    pub target: bool,
}

/// Totals of one tensor type.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TypeTotal {
    /// ggml type name.
    #[serde(rename = "type")]
    pub ggml_type: String,
    /// Tensors of this type.
    pub count: usize,
    /// Elements in them.
    pub elements: u64,
    /// Bytes of data in them.
    pub bytes: u64,
}

/// Everything `mathneuro inspect` says about a model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InspectReport {
    /// The path as given.
    pub file: String,
    /// File size in bytes (all shards of a split model).
    pub file_bytes: u64,
    /// Files the model is stored in (1, or the shard count of a split model).
    pub shards: usize,
    /// GGUF version (2 or 3).
    pub gguf_version: u32,
    /// `general.architecture`.
    pub architecture: Option<String>,
    /// `general.name`.
    pub name: Option<String>,
    /// Total elements of all tensors.
    pub parameter_count: u64,
    /// `general.file_type`.
    pub file_type: Option<FileType>,
    /// `<arch>.context_length`.
    pub context_length: Option<u64>,
    /// `<arch>.block_count`.
    pub block_count: Option<u64>,
    /// `<arch>.embedding_length`.
    pub embedding_length: Option<u64>,
    /// `tokenizer.ggml.model` ("llama", "gpt2", …).
    pub tokenizer: Option<String>,
    /// Entries of `tokenizer.ggml.tokens`.
    pub vocab_size: Option<u64>,
    /// True when there is no `output.weight` and the head reuses `token_embd.weight`.
    pub output_tied: bool,
    /// Number of tensors.
    pub tensor_count: usize,
    /// Number of weights MathNeuro may select from (`model::target_weights`).
    pub target_weight_count: usize,
    /// Elements in the target weights.
    pub target_parameter_count: u64,
    /// Number of metadata keys.
    pub metadata_count: usize,
    /// Data alignment in bytes.
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    /// Totals per tensor type, most tensors first (ties in ggml id order).
    pub types: Vec<TypeTotal>,
    /// `mathneuro.*` and `general.base_model.*` keys with their values.
    pub provenance: BTreeMap<String, serde_json::Value>,
    /// The tensor table in file order.
    pub tensors: Vec<TensorRow>,
}

impl InspectReport {
    /// Builds the report of a parsed file.
    pub fn new(file: &GgufFile) -> InspectReport {
        let arch = file.architecture().map(str::to_string);
        let arch_u64 = |suffix: &str| {
            arch.as_deref().and_then(|a| file.get(&format!("{a}.{suffix}"))).and_then(MetaValue::as_u64)
        };
        let mut totals: BTreeMap<GgmlType, TypeTotal> = BTreeMap::new();
        for t in &file.tensors {
            let e = totals.entry(t.ggml_type).or_insert_with(|| TypeTotal {
                ggml_type: t.ggml_type.name().to_string(),
                count: 0,
                elements: 0,
                bytes: 0,
            });
            e.count += 1;
            e.elements += t.n_elements();
            e.bytes += t.n_bytes();
        }
        let mut types: Vec<TypeTotal> = totals.into_values().collect();
        // Stable sort keeps ggml id order among equal counts.
        types.sort_by_key(|t| std::cmp::Reverse(t.count));
        let targets = model::target_weights(file);
        let provenance = file
            .metadata
            .iter()
            .filter(|(k, _)| PROVENANCE_PREFIXES.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), meta_to_json(v)))
            .collect();
        InspectReport {
            file: file.path().display().to_string(),
            file_bytes: file.total_bytes(),
            shards: file.shard_paths().len(),
            gguf_version: file.version,
            architecture: arch.clone(),
            name: file.get_str("general.name").map(str::to_string),
            parameter_count: file.tensors.iter().map(|t| t.n_elements()).sum(),
            file_type: file
                .get("general.file_type")
                .and_then(MetaValue::as_u64)
                .map(|id| FileType { id, name: file_type_name(id).map(str::to_string) }),
            context_length: arch_u64("context_length"),
            block_count: arch_u64("block_count"),
            embedding_length: arch_u64("embedding_length"),
            tokenizer: file.get_str("tokenizer.ggml.model").map(str::to_string),
            vocab_size: file.get("tokenizer.ggml.tokens").and_then(MetaValue::as_array).map(|a| a.len() as u64),
            output_tied: model::output_is_tied(file),
            tensor_count: file.tensors.len(),
            target_weight_count: targets.len(),
            target_parameter_count: targets.iter().map(|t| t.n_elements()).sum(),
            metadata_count: file.metadata.len(),
            alignment: file.alignment,
            data_offset: file.data_offset,
            types,
            provenance,
            tensors: file
                .tensors
                .iter()
                .map(|t| TensorRow {
                    name: t.name.clone(),
                    ggml_type: t.ggml_type.name().to_string(),
                    shape: t.dims.clone(),
                    elements: t.n_elements(),
                    bytes: t.n_bytes(),
                    target: model::is_target(t),
                })
                .collect(),
        }
    }

    /// The report as pretty-printed JSON (one object; see the field docs).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report holds only plain data")
    }

    /// The report as aligned plain text: a summary, totals by type, provenance, then the tensor
    /// table.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".into());
        let opt_n = |v: Option<u64>| v.map_or_else(|| "(not set)".into(), |n| n.to_string());
        let mut line = |label: &str, value: String| {
            let _ = writeln!(s, "{label:<16}{value}");
        };
        let split = if self.shards > 1 { format!(", split in {} shards", self.shards) } else { String::new() };
        line("file", format!("{} ({}, GGUF v{}{split})", self.file, human_bytes(self.file_bytes), self.gguf_version));
        line("architecture", opt(&self.architecture));
        line("name", opt(&self.name));
        line("parameters", format!("{} ({})", human_count(self.parameter_count), self.parameter_count));
        line(
            "file type",
            match &self.file_type {
                Some(FileType { id, name: Some(n) }) => format!("{n} ({id})"),
                Some(FileType { id, name: None }) => format!("unknown ({id})"),
                None => "(not set)".into(),
            },
        );
        line("context length", opt_n(self.context_length));
        line("layers", opt_n(self.block_count));
        line("embedding", opt_n(self.embedding_length));
        line(
            "tokenizer",
            match (&self.tokenizer, self.vocab_size) {
                (Some(t), Some(n)) => format!("{t} ({n} tokens)"),
                (t, _) => opt(t),
            },
        );
        line(
            "output head",
            if self.output_tied { "tied to token_embd.weight".into() } else { "separate output.weight".into() },
        );
        line(
            "target weights",
            format!("{} ({} parameters)", self.target_weight_count, human_count(self.target_parameter_count)),
        );
        line("tensors", self.tensor_count.to_string());
        line("metadata keys", self.metadata_count.to_string());
        line("data", format!("offset {}, alignment {}", self.data_offset, self.alignment));

        let _ = writeln!(s, "\n{:<8} {:>6} {:>14} {:>12}", "type", "count", "elements", "bytes");
        for t in &self.types {
            let _ = writeln!(s, "{:<8} {:>6} {:>14} {:>12}", t.ggml_type, t.count, t.elements, t.bytes);
        }
        let _ = writeln!(
            s,
            "{:<8} {:>6} {:>14} {:>12}",
            "total",
            self.tensor_count,
            self.parameter_count,
            self.types.iter().map(|t| t.bytes).sum::<u64>()
        );

        if !self.provenance.is_empty() {
            let _ = writeln!(s, "\nprovenance");
            for (k, v) in &self.provenance {
                let _ = writeln!(s, "  {k} = {v}");
            }
        }

        let width = self.tensors.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
        let _ = writeln!(s, "\n{:<width$} {:<7} {:<22} {:>12}  target", "name", "type", "shape (inner first)", "bytes");
        for t in &self.tensors {
            let shape = t.shape.iter().map(u64::to_string).collect::<Vec<_>>().join(" x ");
            let row = format!(
                "{:<width$} {:<7} {:<22} {:>12}  {}",
                t.name,
                t.ggml_type,
                shape,
                t.bytes,
                if t.target { "yes" } else { "" }
            );
            let _ = writeln!(s, "{}", row.trim_end());
        }
        s
    }
}

/// A metadata value as JSON with its natural JSON type (strings that are not UTF-8 are shown
/// lossily; non-finite floats become null).
pub fn meta_to_json(v: &MetaValue) -> serde_json::Value {
    use serde_json::Value;
    match v {
        MetaValue::String(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        MetaValue::Bool(b) => Value::Bool(*b),
        // Via the f32's shortest decimal form, so 1.1f32 shows as 1.1, not 1.100000023841858.
        MetaValue::F32(x) => serde_json::Number::from_f64(x.to_string().parse().unwrap_or(*x as f64))
            .map_or(Value::Null, Value::Number),
        MetaValue::F64(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
        MetaValue::I8(x) => Value::from(*x),
        MetaValue::I16(x) => Value::from(*x),
        MetaValue::I32(x) => Value::from(*x),
        MetaValue::I64(x) => Value::from(*x),
        MetaValue::U8(x) => Value::from(*x),
        MetaValue::U16(x) => Value::from(*x),
        MetaValue::U32(x) => Value::from(*x),
        MetaValue::U64(x) => Value::from(*x),
        MetaValue::Array { items, .. } => Value::Array(items.iter().map(meta_to_json).collect()),
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

fn human_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1} K", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} M", n as f64 / 1e6),
        _ => format!("{:.2} B", n as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::synth::{SynthModel, encode_plain};

    #[test]
    fn report_of_a_synthetic_model() {
        let bytes = SynthModel::toy_transformer(2, 32, 64, 50, crate::gguf::GgmlType::F16)
            .meta("general.file_type", MetaValue::U32(1))
            .meta("mathneuro.scale", MetaValue::F32(1.5))
            .to_bytes(&encode_plain)
            .unwrap();
        let file = GgufFile::from_bytes("toy.gguf", bytes).unwrap();
        let r = InspectReport::new(&file);
        assert_eq!(r.architecture.as_deref(), Some("toy"));
        assert_eq!(r.context_length, Some(128));
        assert_eq!(r.file_type, Some(FileType { id: 1, name: Some("MOSTLY_F16".into()) }));
        assert!(r.output_tied);
        assert_eq!(r.target_weight_count, 14);
        assert_eq!(r.types[0].ggml_type, "F16");
        assert_eq!(r.types[0].count, 14);
        assert_eq!(r.provenance["mathneuro.scale"], serde_json::json!(1.5));
        assert_eq!(meta_to_json(&MetaValue::F32(1.1)), serde_json::json!(1.1));
        assert_eq!(meta_to_json(&MetaValue::F32(f32::NAN)), serde_json::Value::Null);
        let text = r.to_text();
        assert!(text.contains("MOSTLY_F16 (1)"), "{text}");
        assert!(text.contains("mathneuro.scale = 1.5"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["tensor_count"], 2 * 9 + 2);
    }
}
