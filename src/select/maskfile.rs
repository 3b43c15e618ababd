//! The mask file (`--save-mask`): a GGUF with one I8 tensor `<weight>.mask` per target weight
//! holding the flattened selection bit-packed LSB-first (bit i%8 of byte i/8), plus provenance.
//! `select::overlap::compare` computes the Jaccard overlap of two mask files.

use std::path::{Path, PathBuf};

use super::{BitMask, Selection};
use crate::gguf::{GgmlType, GgufError, GgufFile, GgufWriter, MetaType, MetaValue, TensorSpec};

/// `mathneuro.kind` of a mask file.
pub const KIND_MASK: &str = "mask";
/// Tensor name suffix of a mask.
pub const MASK_SUFFIX: &str = ".mask";

/// A mask file in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskFile {
    /// Fingerprint of the model the mask was selected on.
    pub model_fingerprint: String,
    /// Selection method ("mathneuro", "wanda", "random").
    pub method: String,
    /// K in percent.
    pub top_k_percent: f64,
    /// Seed.
    pub seed: u64,
    /// Weight name → mask, in file order.
    pub masks: Vec<(String, BitMask)>,
}

/// Why a mask file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MaskFileError {
    /// Not readable as GGUF.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A GGUF, but not a valid mask file.
    #[error("{}: {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl MaskFile {
    /// The mask file of a selection.
    pub fn from_selection(sel: &Selection, model_fingerprint: &str) -> MaskFile {
        MaskFile {
            model_fingerprint: model_fingerprint.to_string(),
            method: sel.options.method.name().to_string(),
            top_k_percent: sel.options.top_k_percent,
            seed: sel.options.seed,
            masks: sel.tensors.iter().map(|t| (t.name.clone(), t.mask.clone())).collect(),
        }
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path, input: Option<&Path>) -> Result<(), GgufError> {
        let mut w = GgufWriter::new();
        w.set("general.architecture", MetaValue::string("mathneuro-mask"));
        w.set("mathneuro.kind", MetaValue::string(KIND_MASK));
        w.set("mathneuro.model_fingerprint", MetaValue::string(&self.model_fingerprint));
        w.set("mathneuro.method", MetaValue::string(&self.method));
        w.set("mathneuro.top_k", MetaValue::F32(self.top_k_percent as f32));
        w.set("mathneuro.seed", MetaValue::U64(self.seed));
        w.set(
            "mathneuro.mask_numel",
            MetaValue::Array { elem: MetaType::U64, items: self.masks.iter().map(|(_, m)| MetaValue::U64(m.len())).collect() },
        );
        for (name, m) in &self.masks {
            w.add_tensor(TensorSpec { name: format!("{name}{MASK_SUFFIX}"), dims: vec![m.as_bytes().len().max(1) as u64], ggml_type: GgmlType::I8 });
        }
        w.write_atomic(path, input, |i, _, sink| {
            let b = self.masks[i].1.as_bytes();
            if b.is_empty() { sink.write_all(&[0]) } else { sink.write_all(b) }
        })
    }

    /// Reads a mask file written by `save`.
    pub fn load(path: &Path) -> Result<MaskFile, MaskFileError> {
        let f = GgufFile::open(path)?;
        let invalid = |problem: String| MaskFileError::Invalid { path: path.to_path_buf(), problem };
        if f.get_str("mathneuro.kind") != Some(KIND_MASK) {
            return Err(invalid("not a mathneuro mask file (mathneuro.kind is not \"mask\"); make one with `mathneuro apply --save-mask`".into()));
        }
        let numels: Vec<u64> = f.get("mathneuro.mask_numel").and_then(MetaValue::as_array).unwrap_or(&[]).iter().filter_map(MetaValue::as_u64).collect();
        if numels.len() != f.tensors.len() {
            return Err(invalid(format!("mathneuro.mask_numel has {} entries for {} tensors", numels.len(), f.tensors.len())));
        }
        let mut masks = Vec::with_capacity(f.tensors.len());
        for (t, &numel) in f.tensors.iter().zip(&numels) {
            let name = t.name.strip_suffix(MASK_SUFFIX).ok_or_else(|| invalid(format!("tensor {} does not end in {MASK_SUFFIX}", t.name)))?;
            if t.ggml_type != GgmlType::I8 {
                return Err(invalid(format!("{}: type {} (expected I8)", t.name, t.ggml_type)));
            }
            let mut bytes = f.tensor_data(t).to_vec();
            if numel == 0 {
                bytes.clear();
            }
            let m = BitMask::from_bytes(numel, bytes).ok_or_else(|| invalid(format!("{}: {} bytes do not hold a mask of {numel} entries", t.name, t.n_bytes())))?;
            masks.push((name.to_string(), m));
        }
        Ok(MaskFile {
            model_fingerprint: f.get_str("mathneuro.model_fingerprint").unwrap_or("").to_string(),
            method: f.get_str("mathneuro.method").unwrap_or("").to_string(),
            top_k_percent: f.get("mathneuro.top_k").and_then(MetaValue::as_f64).unwrap_or(f64::NAN),
            seed: f.get("mathneuro.seed").and_then(MetaValue::as_u64).unwrap_or(0),
            masks,
        })
    }
}
