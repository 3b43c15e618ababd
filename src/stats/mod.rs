//! Activation statistics measured by `calibrate` and consumed by `select`: per target weight,
//! A_j = Σ_s ‖X_s[:,j]‖₂ (the MathNeuro statistic) and the pooled Σ_s Σ_t x² (llama.cpp's
//! imatrix statistic), stored as a STATS GGUF file.

pub mod file;
pub mod imatrix;
pub mod merge;
pub mod show;
pub mod validate;

pub use file::Provenance;

use std::collections::BTreeMap;

/// Statistics of one target weight's input activations.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightStats {
    /// Input width of the weight (columns of W, `dims[0]` in GGUF order).
    pub n_in: usize,
    /// 1 for a plain matrix; the number of experts for a mixture-of-experts `*_exps` tensor, whose
    /// vectors then hold `n_in` values per expert, expert-major.
    pub n_groups: usize,
    /// Σ over samples of the per-sample column L2 norm, `n_in × n_groups` values.
    pub norm_sum: Vec<f32>,
    /// Σ over all tokens of x², pooled across samples, `n_in × n_groups` values.
    pub sum_sq: Vec<f32>,
    /// Tokens (rows) seen, per group.
    pub tokens: Vec<u64>,
}

/// A whole STATS file: provenance plus one `WeightStats` per captured weight.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationStats {
    /// `model::fingerprint` of the model measured.
    pub model_fingerprint: String,
    /// Calibration texts (samples) measured.
    pub samples: u64,
    /// Tokens measured, over all samples.
    pub tokens: u64,
    /// Data set names (one per merged source).
    pub datasets: Vec<String>,
    /// Sampling seed(s).
    pub seeds: Vec<u64>,
    /// Per weight name (`blk.0.attn_q.weight`).
    pub weights: BTreeMap<String, WeightStats>,
}
