//! Metadata of the rewritten model: every original key kept with its type, `general.name` with a
//! " mathneuro" suffix, `general.base_model.0.*` describing the source, "mathneuro" in
//! `general.tags`, and `mathneuro.*` provenance keys.

use crate::gguf::{GgufFile, GgufWriter, MetaType, MetaValue};

/// The tool version written into `mathneuro.tool_version`.
pub const TOOL_VERSION: &str = concat!("mathneuro ", env!("CARGO_PKG_VERSION"));

/// What the output records about how it was made.
#[derive(Clone, Debug, PartialEq)]
pub struct Provenance {
    /// Selection method name.
    pub method: String,
    /// K in percent.
    pub top_k_percent: f64,
    /// "scale" or "prune".
    pub operation: String,
    /// Factor applied to selected entries (0 for a prune).
    pub scale: f32,
    /// Seed (random baseline; recorded for every method).
    pub seed: u64,
    /// Math calibration samples.
    pub math_samples: u64,
    /// General calibration samples.
    pub general_samples: u64,
    /// Math data sets.
    pub math_datasets: Vec<String>,
    /// General data sets.
    pub general_datasets: Vec<String>,
    /// Entries selected.
    pub selected: u64,
    /// Entries of all target weights.
    pub target_entries: u64,
    /// `model::fingerprint` of the source.
    pub source_fingerprint: String,
}

fn strings(items: &[String]) -> MetaValue {
    MetaValue::Array { elem: MetaType::String, items: items.iter().map(MetaValue::string).collect() }
}

/// Applies the output metadata to `w` (a `GgufWriter::from_file(src)`).
pub fn apply_metadata(w: &mut GgufWriter, src: &GgufFile, p: &Provenance) {
    let fallback = src.path().file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let source_name = src.get_str("general.name").map(str::to_string).unwrap_or(fallback);
    w.set("general.name", MetaValue::string(format!("{source_name} mathneuro")));

    // The source becomes the one direct parent; its own ancestry stays in the source file.
    let old: Vec<String> = w.metadata.iter().map(|(k, _)| k.clone()).filter(|k| k.starts_with("general.base_model.")).collect();
    for k in old {
        w.remove(&k);
    }
    w.set("general.base_model.count", MetaValue::U32(1));
    w.set("general.base_model.0.name", MetaValue::string(&source_name));
    for field in ["organization", "version", "repo_url", "url", "doi", "uuid"] {
        if let Some(v) = src.get(&format!("general.{field}")).filter(|v| v.as_str().is_some()) {
            w.set(&format!("general.base_model.0.{field}"), v.clone());
        }
    }

    let mut tags: Vec<MetaValue> = match src.get("general.tags") {
        Some(MetaValue::Array { elem: MetaType::String, items }) => items.clone(),
        _ => Vec::new(),
    };
    if !tags.iter().any(|t| t.as_str() == Some("mathneuro")) {
        tags.push(MetaValue::string("mathneuro"));
    }
    w.set("general.tags", MetaValue::Array { elem: MetaType::String, items: tags });

    w.set("mathneuro.tool_version", MetaValue::string(TOOL_VERSION));
    w.set("mathneuro.method", MetaValue::string(&p.method));
    w.set("mathneuro.top_k", MetaValue::F32(p.top_k_percent as f32));
    w.set("mathneuro.operation", MetaValue::string(&p.operation));
    w.set("mathneuro.scale", MetaValue::F32(p.scale));
    w.set("mathneuro.seed", MetaValue::U64(p.seed));
    w.set("mathneuro.math_samples", MetaValue::U64(p.math_samples));
    w.set("mathneuro.general_samples", MetaValue::U64(p.general_samples));
    w.set("mathneuro.math_datasets", strings(&p.math_datasets));
    w.set("mathneuro.general_datasets", strings(&p.general_datasets));
    w.set("mathneuro.selected_count", MetaValue::U64(p.selected));
    w.set("mathneuro.target_entries", MetaValue::U64(p.target_entries));
    w.set("mathneuro.source_fingerprint", MetaValue::string(&p.source_fingerprint));
}
