//! The master-precision flow's checks and plan (`apply MASTER --quantize like=SIBLING | Q4_K_M`):
//! STATS measured on a quantized model are applied to its F16/BF16 master. They are matched by
//! tensor name and shape, not by fingerprint (the fingerprint includes the types, which differ by
//! design): every target of the master needs a statistic of its input width, the STATS may name
//! no weight the master lacks, and with `like=` the sibling must have the master's tensors with
//! the same shapes (its fingerprint must then be the STATS' one). A type difference is reported
//! as a note; a shape difference is refused. The plan gives every tensor its output type.

use std::collections::HashMap;

use super::ApplyError;
use super::edit::Quantize;
use super::quantmix;
use crate::gguf::{GgmlType, GgufFile};
use crate::select::{SelectError, check};
use crate::stats::ActivationStats;

/// Output types and provenance of a master-precision rewrite.
#[derive(Clone, Debug, PartialEq)]
pub struct MasterPlan {
    /// The output type of every tensor, by name.
    pub types: HashMap<String, GgmlType>,
    /// `general.file_type` of the output (the sibling's, or the mix's llama_ftype).
    pub file_type: Option<u32>,
    /// What the user should know (type differences, how the STATS were matched).
    pub notes: Vec<String>,
}

/// Checks the STATS against `master` by name and shape and plans the output types.
pub fn plan(master: &GgufFile, math: &ActivationStats, general: &ActivationStats, quantize: &Quantize) -> Result<MasterPlan, ApplyError> {
    let mut notes = Vec::new();
    let master_fp = crate::model::fingerprint(master);
    let (types, file_type) = match quantize {
        Quantize::Like(path) => {
            let sibling = GgufFile::open(path)?;
            let types = quantmix::like_types(master, &sibling)?;
            let sibling_fp = crate::model::fingerprint(&sibling);
            for (which, s) in [("math", math), ("general", general)] {
                if s.model_fingerprint != sibling_fp && s.model_fingerprint != master_fp {
                    return Err(SelectError::OtherModel { which: which.into(), stats: s.model_fingerprint.clone(), model: sibling_fp.clone() }.into());
                }
            }
            let differ: Vec<String> = master
                .tensors
                .iter()
                .filter(|t| types[&t.name] != t.ggml_type)
                .map(|t| format!("{} {} → {}", t.name, t.ggml_type, types[&t.name]))
                .collect();
            if !differ.is_empty() {
                notes.push(format!(
                    "{} of {} tensors differ in type between the master and {} (e.g. {}); the STATS are matched by tensor name and shape",
                    differ.len(),
                    master.tensors.len(),
                    path.display(),
                    differ[0]
                ));
            }
            let ft = sibling.get("general.file_type").and_then(|v| v.as_u64()).map(|v| v as u32);
            (types, ft)
        }
        Quantize::Mix(mix) => {
            if math.model_fingerprint != master_fp {
                notes.push(format!("the STATS were measured on another tensor table (a quantized sibling?); matched to {} by tensor name and shape", master.path().display()));
            }
            (quantmix::mix_types(master, *mix), Some(mix.file_type()))
        }
    };
    check_names_and_shapes(master, math, general)?;
    Ok(MasterPlan { types, file_type, notes })
}

/// Every target of `master` has a statistic of its shape in both files, and neither file names
/// a weight that is not a target of `master`.
pub fn check_names_and_shapes(master: &GgufFile, math: &ActivationStats, general: &ActivationStats) -> Result<(), ApplyError> {
    let targets = crate::model::target_weights(master);
    for t in &targets {
        check::stats_for("math", math, t)?;
        check::stats_for("general", general, t)?;
    }
    for (which, s) in [("math", math), ("general", general)] {
        if let Some(extra) = s.weights.keys().find(|k| !targets.iter().any(|t| &t.name == *k)) {
            return Err(ApplyError::StatsForNonTarget { which, weight: extra.clone(), master: master.path().to_path_buf() });
        }
    }
    Ok(())
}
