//! Selection of math-specific weights (MathNeuro, arXiv 2410.16930).
//!
//! For every matrix W of every target weight (see `model::target_weights`), with A the
//! per-column sum over samples of activation L2 norms from a STATS file: S = |W·A| over the whole
//! flattened matrix (flat index = row · n_in + column, row = output). k = floor(numel · K / 100).
//! A 3-D expert tensor (`*_exps`) is `n_expert` matrices, each with its own A and its own k (as
//! the reference's top-K per `nn.Linear`, one per expert); a 2-D weight is one matrix.
//! - `mathneuro`: in the top k of S_math and not in the top k of S_general;
//! - `wanda`: the top k of S_math;
//! - `random`: per matrix, as many entries as `mathneuro` selects, at positions drawn by ChaCha8
//!   seeded from (seed, tensor name), and the expert index for an expert.
//!
//! Ties: scores are ordered by `f32::total_cmp`, larger first; **equal scores: the lower flat
//! index wins** (see `topk`). No matrix of scores is ever stored: a single pass over the
//! dequantized rows collects the candidates above a sampled bracket (`onepass`); when the sample
//! misleads, radix selection over the score bits (`radix`, equal to the quickselect of `topk` by
//! test) takes three passes instead. Both give the same selection (tested); the result is one bit
//! per entry. Tensors are processed in parallel (rayon).

pub mod check;
pub mod mask;
pub mod maskfile;
pub mod onepass;
pub mod matrix;
pub mod overlap;
pub mod radix;
pub mod restrict;
pub mod score;
pub mod synth;
pub mod topk;

use rayon::prelude::*;

pub use mask::BitMask;

use crate::ffi::ggml::CodecError;
use crate::gguf::{GgmlType, GgufFile};
use crate::stats::ActivationStats;

/// Which entries to select.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Math top-k minus general top-k (the MathNeuro rule).
    #[value(name = "mathneuro")]
    MathNeuro,
    /// Math top-k alone (Wanda-style importance).
    Wanda,
    /// As many entries per matrix as `mathneuro`, at seeded random positions.
    Random,
}

impl Method {
    /// The name used on the command line and in metadata.
    pub fn name(self) -> &'static str {
        match self {
            Method::MathNeuro => "mathneuro",
            Method::Wanda => "wanda",
            Method::Random => "random",
        }
    }
}

/// What to select.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectOptions {
    /// Selection rule.
    pub method: Method,
    /// K, in percent of each matrix's entries (each expert's, for an expert tensor; the
    /// reference default is 5).
    pub top_k_percent: f64,
    /// Seed for `Method::Random`.
    pub seed: u64,
}

impl Default for SelectOptions {
    fn default() -> Self {
        SelectOptions { method: Method::MathNeuro, top_k_percent: 5.0, seed: 0 }
    }
}

/// The selection within one target weight.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSelection {
    /// Tensor name.
    pub name: String,
    /// Dimensions, GGUF order (`dims[0]` = n_in).
    pub dims: Vec<u64>,
    /// Element type of the weight.
    pub ggml_type: GgmlType,
    /// k of the top-k rule for this weight: the per-matrix k summed over its experts.
    pub k: u64,
    /// Entries selected.
    pub selected: u64,
    /// The selected flat indices.
    pub mask: BitMask,
}

impl TensorSelection {
    /// Entries of the weight.
    pub fn numel(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// The selection over all target weights, in tensor-table order.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// Options used.
    pub options: SelectOptions,
    /// One entry per target weight.
    pub tensors: Vec<TensorSelection>,
}

impl Selection {
    /// Entries selected over all targets.
    pub fn selected(&self) -> u64 {
        self.tensors.iter().map(|t| t.selected).sum()
    }
    /// Entries of all targets.
    pub fn numel(&self) -> u64 {
        self.tensors.iter().map(TensorSelection::numel).sum()
    }
    /// The selection of one tensor.
    pub fn get(&self, name: &str) -> Option<&TensorSelection> {
        self.tensors.iter().find(|t| t.name == name)
    }
    /// The same selection on only the target weights whose names `keep` accepts; a rewrite
    /// (`surgery::apply_selection`) copies the others byte for byte. One selection per K then
    /// serves every region of the model (`tune`).
    pub fn restricted(&self, keep: impl Fn(&str) -> bool) -> Selection {
        Selection { options: self.options.clone(), tensors: self.tensors.iter().filter(|t| keep(&t.name)).cloned().collect() }
    }
}

/// Why a selection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// The STATS file was measured on another model.
    #[error("the {which} STATS file was measured on another model (fingerprint {stats}, this model has {model})")]
    OtherModel {
        /// "math" or "general".
        which: String,
        /// Fingerprint in the STATS file.
        stats: String,
        /// Fingerprint of the model.
        model: String,
    },
    /// A target weight has no statistic.
    #[error("the {which} STATS file has no statistics for target weight {tensor}")]
    MissingStats {
        /// "math" or "general".
        which: String,
        /// Tensor name.
        tensor: String,
    },
    /// The statistic has another shape than the weight.
    #[error("{tensor}: the {which} STATS hold n_in {stats_n_in} × {stats_groups} groups, the model's weight has n_in {model_n_in} × {model_groups}")]
    Shape {
        /// "math" or "general".
        which: String,
        /// Tensor name.
        tensor: String,
        /// n_in in the STATS.
        stats_n_in: usize,
        /// Groups in the STATS.
        stats_groups: usize,
        /// n_in of the weight.
        model_n_in: usize,
        /// Experts of the weight.
        model_groups: usize,
    },
    /// A statistic is negative, infinite or NaN.
    #[error("{tensor}: the {which} STATS {field}[{index}] is {value} (must be finite and ≥ 0)")]
    BadValue {
        /// "math" or "general".
        which: String,
        /// Tensor name.
        tensor: String,
        /// "norm_sum" or "sum_sq".
        field: &'static str,
        /// Position.
        index: usize,
        /// The value.
        value: f32,
    },
    /// K is outside (0, 100].
    #[error("top-k {0}% is outside (0, 100]")]
    TopK(f64),
    /// The weight could not be decoded.
    #[error("{tensor}: {source}")]
    Codec {
        /// Tensor name.
        tensor: String,
        /// Codec failure.
        source: CodecError,
    },
}

/// Selects over every target weight of `model`. The STATS files are checked against the model
/// first (fingerprint, names, n_in); tensors run in parallel on the current rayon pool.
pub fn select(model: &GgufFile, math: &ActivationStats, general: &ActivationStats, options: &SelectOptions) -> Result<Selection, SelectError> {
    select_with_progress(model, math, general, options, &|| {})
}

/// `select`, calling `done()` after each target weight (from worker threads) for progress display.
pub fn select_with_progress(
    model: &GgufFile,
    math: &ActivationStats,
    general: &ActivationStats,
    options: &SelectOptions,
    done: &(dyn Fn() + Sync),
) -> Result<Selection, SelectError> {
    // `select_matched` checks K; the fingerprint check comes first so a wrong model is named.
    check::check_all(model, math, general)?;
    select_matched(model, math, general, options, done)
}

/// `select_with_progress` without the fingerprint check, for STATS matched to `model` by tensor
/// name and shape instead (measured on a quantized sibling of an F16/BF16 master): each target's
/// statistic is still checked for shape and values.
pub fn select_matched(
    model: &GgufFile,
    math: &ActivationStats,
    general: &ActivationStats,
    options: &SelectOptions,
    done: &(dyn Fn() + Sync),
) -> Result<Selection, SelectError> {
    if !(options.top_k_percent > 0.0 && options.top_k_percent <= 100.0) {
        return Err(SelectError::TopK(options.top_k_percent));
    }
    let targets = crate::model::target_weights(model);
    let tensors = targets
        .par_iter()
        .map(|t| {
            let a_math = &check::stats_for("math", math, t)?.norm_sum;
            let a_general = &check::stats_for("general", general, t)?.norm_sum;
            let selected = matrix::select_tensor(model, t, a_math, a_general, options);
            // Read once here; the rewrite reads it again from the page cache.
            model.release(t);
            done();
            selected
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Selection { options: options.clone(), tensors })
}
