//! A float "master" of a quantized model: every target weight dequantized to F16/BF16/F32, every
//! other tensor copied byte for byte. Stands in for the F16 GGUF a user may have beside the
//! quantized one, to exercise and measure the master-precision flow (`--quantize`) where the
//! real master is not at hand (its values are the quantized ones, so requantizing it like its
//! sibling with `--scale 1` reproduces the sibling closely).

use std::path::Path;

use super::ApplyError;
use crate::ffi::ggml;
use crate::gguf::{GgmlType, GgufFile, GgufWriter, MetaValue};

/// Writes `model` with its targets in `ty` (a float type) to `path` (never onto `model`).
pub fn write_float_master(model: &GgufFile, path: &Path, ty: GgmlType) -> Result<(), ApplyError> {
    if !super::edit::is_float(ty) {
        return Err(ApplyError::MasterNotFloat(ty));
    }
    let mut w = GgufWriter::from_file(model);
    let targets: Vec<bool> = model.tensors.iter().map(crate::model::is_target).collect();
    for (spec, &t) in w.tensors.iter_mut().zip(&targets) {
        if t {
            spec.ggml_type = ty;
        }
    }
    // llama_ftype: 0 = ALL_F32, 1 = MOSTLY_F16, 32 = MOSTLY_BF16.
    let ftype = match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        _ => 32,
    };
    w.set("general.file_type", MetaValue::U32(ftype));
    let mut failure = None;
    let written = w.write_atomic(path, Some(model.path()), |i, _spec, sink| {
        let info = &model.tensors[i];
        if !targets[i] {
            return sink.write_all(model.tensor_data(info));
        }
        let encoded = ggml::dequantize_rows(model, info, 0..info.n_rows()).and_then(|v| ggml::quantize(ty, &v, info.row_len() as usize, None));
        match encoded {
            Ok(bytes) => sink.write_all(&bytes),
            Err(source) => {
                failure = Some(ApplyError::Codec { tensor: info.name.clone(), source });
                Err(std::io::Error::other("decoding failed"))
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(written?)
}
