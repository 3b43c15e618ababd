//! The STATS file: `ActivationStats` stored as a GGUF, so it is inspectable with any GGUF tool.
//!
//! Per captured weight `W`: F32 tensors `W.norm_sum` and `W.sum_sq` with dims `[n_in, n_groups]`
//! (a 1-D `[n_in]` when there are no experts) and an I32 pair tensor `W.tokens` `[2, n_groups]`
//! holding each group's token count as (low, high) 32-bit halves. Provenance lives in
//! `mathneuro.*` metadata, with the model fingerprint so stats are refused for another model.

use std::collections::BTreeMap;
use std::path::Path;

use super::{ActivationStats, WeightStats};
use crate::gguf::{GgmlType, GgufError, GgufFile, GgufWriter, MetaType, MetaValue, TensorSpec};

/// `mathneuro.kind` of a STATS file.
pub const KIND_STATS: &str = "stats";

/// Why a STATS file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsFileError {
    /// Not readable as GGUF.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A STATS file whose statistics cannot be used.
    #[error("{}: {problem}", path.display())]
    Unusable {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: super::validate::StatsProblem,
    },
    /// A GGUF, but not a valid STATS file.
    #[error("{}: {problem}", path.display())]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: String,
    },
}

fn invalid(path: &Path, problem: impl Into<String>) -> StatsFileError {
    StatsFileError::Invalid { path: path.to_path_buf(), problem: problem.into() }
}

/// How a calibration was run, written into its STATS file as `mathneuro.*` metadata after the
/// standard keys (every calibration of the crate — `calibrate`, `run`, the experiments — goes
/// through `crate::pipeline` and writes these same keys).
#[derive(Clone, Debug, PartialEq)]
pub struct Provenance {
    /// The data set's text template (`chat(...)` when wrapped in the chat template).
    pub template: String,
    /// Samples drawn with replacement.
    pub replacement: bool,
    /// Tokens kept per text.
    pub max_tokens: usize,
    /// Texts truncated to `max_tokens`.
    pub truncated: usize,
    /// Texts packed into one forward pass.
    pub pack: usize,
    /// The shard measured, `i/N` (`0/1`: all).
    pub shard: String,
    /// Forward passes stopped before the output head.
    pub head_skipped: bool,
    /// Every text began with the start token although the vocabulary does not add it
    /// (`calibrate --start-token`); written only when set, so earlier files keep their bytes.
    pub start_token: bool,
}

impl Provenance {
    /// The metadata entries, in the order they are written.
    pub fn to_meta(&self) -> Vec<(String, MetaValue)> {
        let mut meta = vec![
            ("mathneuro.template".to_string(), MetaValue::string(&self.template)),
            ("mathneuro.tool_version".to_string(), MetaValue::string(env!("CARGO_PKG_VERSION"))),
            ("mathneuro.replacement".to_string(), MetaValue::Bool(self.replacement)),
            ("mathneuro.max_tokens".to_string(), MetaValue::U64(self.max_tokens as u64)),
            ("mathneuro.truncated".to_string(), MetaValue::U64(self.truncated as u64)),
            ("mathneuro.pack".to_string(), MetaValue::U64(self.pack as u64)),
            ("mathneuro.shard".to_string(), MetaValue::string(&self.shard)),
            ("mathneuro.head_skipped".to_string(), MetaValue::Bool(self.head_skipped)),
        ];
        if self.start_token {
            meta.push(("mathneuro.start_token".to_string(), MetaValue::Bool(true)));
        }
        meta
    }
}

impl ActivationStats {
    /// Writes the stats of a calibration atomically to `path`, with its provenance.
    pub fn save_calibrated(&self, path: &Path, provenance: &Provenance) -> Result<(), GgufError> {
        self.save(path, &provenance.to_meta())
    }

    /// Writes the stats atomically to `path`. `extra` metadata (template, tool version, …) is
    /// appended after the standard keys.
    pub fn save(&self, path: &Path, extra: &[(String, MetaValue)]) -> Result<(), GgufError> {
        let mut w = GgufWriter::new();
        w.set("general.architecture", MetaValue::string("mathneuro-stats"));
        w.set("mathneuro.kind", MetaValue::string(KIND_STATS));
        w.set("mathneuro.model_fingerprint", MetaValue::string(&self.model_fingerprint));
        w.set("mathneuro.samples", MetaValue::U64(self.samples));
        w.set("mathneuro.tokens", MetaValue::U64(self.tokens));
        w.set(
            "mathneuro.datasets",
            MetaValue::Array { elem: MetaType::String, items: self.datasets.iter().map(MetaValue::string).collect() },
        );
        w.set(
            "mathneuro.seeds",
            MetaValue::Array { elem: MetaType::U64, items: self.seeds.iter().map(|s| MetaValue::U64(*s)).collect() },
        );
        for (k, v) in extra {
            w.set(k, v.clone());
        }
        let mut blobs: Vec<Vec<u8>> = Vec::new();
        for (name, ws) in &self.weights {
            let dims = if ws.n_groups == 1 { vec![ws.n_in as u64] } else { vec![ws.n_in as u64, ws.n_groups as u64] };
            for (suffix, values) in [("norm_sum", &ws.norm_sum), ("sum_sq", &ws.sum_sq)] {
                w.add_tensor(TensorSpec { name: format!("{name}.{suffix}"), dims: dims.clone(), ggml_type: GgmlType::F32 });
                blobs.push(values.iter().flat_map(|v| v.to_le_bytes()).collect());
            }
            w.add_tensor(TensorSpec {
                name: format!("{name}.tokens"),
                dims: vec![2, ws.n_groups as u64],
                ggml_type: GgmlType::I32,
            });
            blobs.push(ws.tokens.iter().flat_map(|t| [(*t as u32).to_le_bytes(), ((*t >> 32) as u32).to_le_bytes()]).flatten().collect());
        }
        w.write_atomic(path, None, |i, _spec, sink| sink.write_all(&blobs[i]))
    }

    /// Reads a STATS file written by `save`.
    pub fn load(path: &Path) -> Result<ActivationStats, StatsFileError> {
        let f = GgufFile::open(path)?;
        ActivationStats::from_gguf(&f)
    }

    /// Reads stats from an already-parsed GGUF.
    pub fn from_gguf(f: &GgufFile) -> Result<ActivationStats, StatsFileError> {
        let path = f.path();
        if f.get_str("mathneuro.kind") != Some(KIND_STATS) {
            return Err(invalid(path, "not a mathneuro STATS file (mathneuro.kind is not \"stats\"); make one with `mathneuro calibrate`"));
        }
        let text = |key: &str| f.get_str(key).map(str::to_string).ok_or_else(|| invalid(path, format!("missing {key}")));
        let number = |key: &str| f.get(key).and_then(MetaValue::as_u64).ok_or_else(|| invalid(path, format!("missing {key}")));
        let list = |key: &str| f.get(key).and_then(MetaValue::as_array).unwrap_or(&[]).to_vec();
        let mut weights: BTreeMap<String, WeightStats> = BTreeMap::new();
        for t in &f.tensors {
            let Some(name) = t.name.strip_suffix(".norm_sum") else { continue };
            let get = |suffix: &str, ty: GgmlType| {
                let info = f.tensor(&format!("{name}.{suffix}")).ok_or_else(|| invalid(path, format!("{name}: missing tensor {name}.{suffix}")))?;
                if info.ggml_type != ty {
                    return Err(invalid(path, format!("{name}.{suffix}: type {} (expected {ty})", info.ggml_type)));
                }
                Ok(info)
            };
            let norm = get("norm_sum", GgmlType::F32)?;
            let sq = get("sum_sq", GgmlType::F32)?;
            let tok = get("tokens", GgmlType::I32)?;
            let n_in = norm.dims[0] as usize;
            let n_groups = norm.dims.get(1).copied().unwrap_or(1) as usize;
            if sq.dims != norm.dims || tok.dims != [2, n_groups as u64] {
                return Err(invalid(path, format!("{name}: shapes of norm_sum {:?}, sum_sq {:?}, tokens {:?} disagree", norm.dims, sq.dims, tok.dims)));
            }
            let floats = |info| f.tensor_data(info).chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect::<Vec<f32>>();
            let halves: Vec<u32> = f.tensor_data(tok).chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
            weights.insert(
                name.to_string(),
                WeightStats {
                    n_in,
                    n_groups,
                    norm_sum: floats(norm),
                    sum_sq: floats(sq),
                    tokens: halves.chunks_exact(2).map(|p| p[0] as u64 | (p[1] as u64) << 32).collect(),
                },
            );
        }
        if weights.is_empty() {
            return Err(invalid(path, "holds no statistics (no *.norm_sum tensors)"));
        }
        let stats = ActivationStats {
            model_fingerprint: text("mathneuro.model_fingerprint")?,
            samples: number("mathneuro.samples")?,
            tokens: number("mathneuro.tokens")?,
            datasets: list("mathneuro.datasets").iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            seeds: list("mathneuro.seeds").iter().filter_map(MetaValue::as_u64).collect(),
            weights,
        };
        stats.validate().map_err(|problem| StatsFileError::Unusable { path: path.to_path_buf(), problem })?;
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ActivationStats {
        let mut weights = BTreeMap::new();
        weights.insert(
            "blk.0.attn_q.weight".to_string(),
            WeightStats { n_in: 4, n_groups: 1, norm_sum: vec![1.0, 2.0, 3.0, 4.5], sum_sq: vec![0.5; 4], tokens: vec![(1 << 33) + 7] },
        );
        weights.insert(
            "blk.0.ffn_up_exps.weight".to_string(),
            WeightStats { n_in: 2, n_groups: 3, norm_sum: vec![1.0; 6], sum_sq: vec![2.0; 6], tokens: vec![1, 2, 3] },
        );
        ActivationStats {
            model_fingerprint: "ab".repeat(32),
            samples: 8,
            tokens: 1234,
            datasets: vec!["gsm8k".into()],
            seeds: vec![42],
            weights,
        }
    }

    #[test]
    fn save_then_load_is_identity() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.gguf");
        let s = sample();
        s.save(&p, &[("mathneuro.template".into(), MetaValue::string("{text}"))]).unwrap();
        assert_eq!(ActivationStats::load(&p).unwrap(), s);
    }

    #[test]
    fn a_model_is_not_a_stats_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        crate::gguf::synth::SynthModel::toy_transformer(1, 32, 64, 16, GgmlType::F32).write(&p, &crate::gguf::synth::encode_plain).unwrap();
        let err = ActivationStats::load(&p).unwrap_err().to_string();
        assert!(err.contains("not a mathneuro STATS file"), "{err}");
        assert!(err.contains("m.gguf"), "{err}");
    }
}
