//! `mathneuro quantize MASTER --type Q3_K_M -o OUT.gguf`: a float master (F16/BF16/F32
//! targets) quantized to a llama-quantize mix (`surgery::quantmix`) with ggml's quantizer
//! (`surgery::transcode`), guided by an importance vector from the STATS (math, general or a
//! stated mix of both, as llama-quantize takes an imatrix), and optionally with an
//! **allocation** (`alloc`) that moves tensors a type up or down by their scores while keeping
//! the file no larger than the stock mix (and within 1 % of it).
//!
//! The STATS are matched to the master by tensor name and shape (they are usually measured on
//! a quantized sibling); a mismatch is refused naming the tensor. The output records which
//! importance, which allocation and every tensor's type in `mathneuro.quantize.*` keys, and is
//! written as every output is: checked before work starts, never onto an input, atomically.

pub mod alloc;
pub mod gptq;
pub mod mass;
pub mod protect;
pub mod sensitivity;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::ffi::ggml::CodecError;
use crate::gguf::{GgmlType, GgufError, GgufFile, GgufWriter, MetaType, MetaValue, TensorInfo};
use crate::progress::Progress;
use crate::stats::ActivationStats;
use crate::surgery::blocks::Change;
use crate::surgery::{ApplyError, Mix, master, quantmix, transcode};

pub use alloc::{Exchange, Forecast, Scores};

/// Which Σx² guides ggml's quantizer.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Importance {
    /// None (plain quantization, as llama-quantize without --imatrix).
    None,
    /// The math STATS' Σx² per token.
    Math,
    /// The general STATS' Σx² per token (the llama.cpp norm: a WikiText imatrix).
    General,
    /// `w` · math + (1 − w) · general, each per token.
    Mix(f64),
}

impl std::str::FromStr for Importance {
    type Err = String;

    fn from_str(s: &str) -> Result<Importance, String> {
        let wanted = || format!("`--importance {s}`: expected none, math, general or mix=W with W in 0..=1 (the math share)");
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Importance::None),
            "math" => Ok(Importance::Math),
            "general" => Ok(Importance::General),
            other => {
                let w: f64 = other.strip_prefix("mix=").and_then(|w| w.parse().ok()).ok_or_else(wanted)?;
                if (0.0..=1.0).contains(&w) { Ok(Importance::Mix(w)) } else { Err(wanted()) }
            }
        }
    }
}

impl Importance {
    /// The name recorded in the output.
    pub fn name(self) -> String {
        match self {
            Importance::None => "none".into(),
            Importance::Math => "math".into(),
            Importance::General => "general".into(),
            Importance::Mix(w) => format!("mix={w}"),
        }
    }
}

/// An allocation: where the scores come from and the share of movable tensors promoted.
#[derive(Clone, Debug, PartialEq)]
pub struct Allocation {
    /// The score source.
    pub scores: Scores,
    /// Share (0..=1) of the scored tensors that are candidates for a promotion.
    pub promote_share: f64,
}

/// Everything `quantize` needs besides the master and the STATS.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizeOptions {
    /// The stock mix.
    pub mix: Mix,
    /// The importance vector.
    pub importance: Importance,
    /// Move tensors away from the stock mix (None: the stock mix).
    pub allocation: Option<Allocation>,
    /// Weight MathNeuro's math-specific entries in the quantizer's importance (`protect`).
    pub protect: Option<protect::Protect>,
    /// Error-compensated rounding against captured input covariances (`gptq`).
    pub gptq: Option<std::sync::Arc<Gptq>>,
    /// The output GGUF.
    pub output: PathBuf,
    /// Overwrite an existing output (never an input).
    pub force: bool,
    /// Show progress on stderr.
    pub progress: bool,
}

/// The input covariances `--gptq` rounds against, and how they were made.
pub struct Gptq {
    /// H per weight (captured at once, or pass by pass).
    pub hessians: Box<dyn gptq::HessianSource>,
    /// GPTQ's damping (share of the mean diagonal).
    pub damp: f64,
    /// Where H came from (data, samples, seed, tokens, model), recorded in the output.
    pub source: String,
}

impl std::fmt::Debug for Gptq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gptq({}, damp {})", self.source, self.damp)
    }
}

impl PartialEq for Gptq {
    fn eq(&self, other: &Gptq) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Gptq {
    /// The name recorded in the output.
    pub fn name(&self) -> String {
        format!("{}, damp {}", self.source, self.damp)
    }
}

/// What `quantize` wrote.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct QuantizeReport {
    /// The master read.
    pub input: PathBuf,
    /// The GGUF written.
    pub output: PathBuf,
    /// The stock mix.
    pub mix: String,
    /// The importance name.
    pub importance: String,
    /// The allocation name (`stock` without one).
    pub allocation: String,
    /// The entry-level protection (`none` without one).
    pub protect: String,
    /// The error-compensated rounding (`none` without `--gptq`).
    pub gptq: String,
    /// What the exchange moved, and the tensor bytes before and after.
    pub exchange: Exchange,
    /// Bytes of the output file.
    pub file_bytes: u64,
    /// Every tensor's output type.
    pub types: BTreeMap<String, String>,
}

/// Why `quantize` failed.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// An output path is refused.
    #[error(transparent)]
    Output(#[from] crate::safety::OutputError),
    /// Reading or writing a GGUF failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The STATS do not match the master.
    #[error(transparent)]
    Master(#[from] ApplyError),
    /// Selecting (for MathNeuro's scores) failed.
    #[error(transparent)]
    Select(#[from] crate::select::SelectError),
    /// An option needs a STATS file that was not given.
    #[error("{what} needs the {which} STATS: pass --{which} STATS.gguf")]
    NeedsStats {
        /// What needs it.
        what: String,
        /// "math" or "general".
        which: &'static str,
    },
    /// A sensitivity file could not be used.
    #[error("{}: {problem}", path.display())]
    Sensitivity {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A tensor could not be encoded.
    #[error("{tensor}: {source}")]
    Codec {
        /// Tensor name.
        tensor: String,
        /// Codec failure.
        source: CodecError,
    },
    /// Error-compensated rounding failed for a tensor.
    #[error("{tensor}: --gptq: {source}")]
    Gptq {
        /// Tensor name.
        tensor: String,
        /// What failed.
        source: gptq::GptqError,
    },
}

/// Σx² per token of each column of `t` in `s` (per expert group), as an imatrix holds it.
fn per_token(s: &ActivationStats, t: &TensorInfo) -> Option<Vec<f32>> {
    let ws = s.weights.get(&t.name)?;
    let n_in = t.dims[0] as usize;
    let mut v = ws.sum_sq.clone();
    for (g, chunk) in v.chunks_mut(n_in.max(1)).enumerate() {
        let tokens = ws.tokens.get(g).copied().unwrap_or(0).max(1) as f32;
        chunk.iter_mut().for_each(|x| *x /= tokens);
    }
    Some(v)
}

/// The importance vector of `t` under `imp` (None for tensors without statistics).
fn importance_for(imp: Importance, math: Option<&ActivationStats>, general: Option<&ActivationStats>, t: &TensorInfo) -> Option<Vec<f32>> {
    match imp {
        Importance::None => None,
        Importance::Math => per_token(math?, t),
        Importance::General => per_token(general?, t),
        Importance::Mix(w) => {
            let (a, b) = (per_token(math?, t)?, per_token(general?, t)?);
            Some(a.iter().zip(&b).map(|(x, y)| (w * *x as f64 + (1.0 - w) * *y as f64) as f32).collect())
        }
    }
}

/// Checks the given STATS against the master (names and shapes; the tensor is named) and that
/// every option has the STATS it needs.
pub(crate) fn check_stats(master_file: &GgufFile, math: Option<&ActivationStats>, general: Option<&ActivationStats>, opts: &QuantizeOptions) -> Result<(), QuantizeError> {
    let needs = |what: String, which: &'static str, s: Option<&ActivationStats>| if s.is_none() { Err(QuantizeError::NeedsStats { what, which }) } else { Ok(()) };
    let imp = format!("--importance {}", opts.importance.name());
    if matches!(opts.importance, Importance::Math | Importance::Mix(_)) {
        needs(imp.clone(), "math", math)?;
    }
    if matches!(opts.importance, Importance::General | Importance::Mix(_)) {
        needs(imp, "general", general)?;
    }
    if let Some(Allocation { scores: Scores::MathNeuro { .. }, .. }) = &opts.allocation {
        needs("--allocation mathneuro".into(), "math", math)?;
        needs("--allocation mathneuro".into(), "general", general)?;
    }
    if opts.protect.is_some() {
        needs("--protect".into(), "math", math)?;
        needs("--protect".into(), "general", general)?;
    }
    match (math, general) {
        (Some(m), Some(g)) => master::check_names_and_shapes(master_file, m, g)?,
        (Some(s), None) | (None, Some(s)) => master::check_names_and_shapes(master_file, s, s)?,
        (None, None) => {}
    }
    Ok(())
}

/// The per-tensor scores of an allocation.
fn scores_for(master_file: &GgufFile, math: Option<&ActivationStats>, general: Option<&ActivationStats>, scores: &Scores) -> Result<HashMap<String, f64>, QuantizeError> {
    match scores {
        Scores::MathNeuro { top_k_percent } => {
            let (m, g) = (math.expect("checked"), general.expect("checked"));
            Ok(mass::selected_share(master_file, m, g, *top_k_percent)?)
        }
        Scores::Sensitivity(path) => read_scores(master_file, path),
        Scores::Knapsack { down, .. } => read_scores(master_file, down),
    }
}

/// A sensitivity file: a JSON object tensor → number, every name a tensor of the master.
fn read_scores(master_file: &GgufFile, path: &std::path::Path) -> Result<HashMap<String, f64>, QuantizeError> {
    let bad = |problem: String| QuantizeError::Sensitivity { path: path.to_path_buf(), problem };
    let text = crate::safety::inputs::read_text(path).map_err(|e| bad(e.to_string()))?;
    let map: HashMap<String, f64> = serde_json::from_str(&text).map_err(|e| bad(format!("expected a JSON object tensor → number: {e}")))?;
    if let Some(name) = map.keys().find(|n| master_file.tensor(n).is_none()) {
        return Err(bad(format!("names {name}, which {} does not have", master_file.path().display())));
    }
    Ok(map)
}

/// Quantizes `master_file` to `opts.mix` (with the allocation, if any) and writes `opts.output`.
pub fn quantize(master_file: &GgufFile, math: Option<&ActivationStats>, general: Option<&ActivationStats>, opts: &QuantizeOptions) -> Result<QuantizeReport, QuantizeError> {
    crate::safety::OutputPlan::new("quantize", opts.force).input(master_file.path()).file(&opts.output).check()?;
    check_stats(master_file, math, general, opts)?;
    let stock = quantmix::mix_types(master_file, opts.mix);
    let (types, exchange, allocation) = match &opts.allocation {
        None => {
            let bytes = alloc::total_bytes(master_file, &stock);
            (stock, Exchange { stock_bytes: bytes, bytes, ..Exchange::default() }, "stock".to_string())
        }
        Some(a) => {
            let scores = scores_for(master_file, math, general, &a.scores)?;
            if let Scores::Knapsack { up, .. } = &a.scores {
                let up = up.as_deref().map(|p| read_scores(master_file, p)).transpose()?;
                let (types, ex) = alloc::knapsack(master_file, &stock, &scores, up.as_ref());
                (types, ex, a.scores.name())
            } else {
                let (types, ex) = alloc::exchange(master_file, &stock, &scores, a.promote_share);
                (types, ex, format!("{}, promote share {}", a.scores.name(), a.promote_share))
            }
        }
    };
    let masks = match (opts.protect, math, general) {
        (Some(p), Some(m), Some(g)) => protect::masks(master_file, m, g, p.top_k_percent)?,
        _ => HashMap::new(),
    };
    let w = output_writer(master_file, opts, &types, &allocation, &exchange);
    write(master_file, &w, &types, math, general, opts, &masks)?;
    Ok(QuantizeReport {
        input: master_file.path().to_path_buf(),
        output: opts.output.clone(),
        mix: opts.mix.name().into(),
        importance: opts.importance.name(),
        allocation,
        protect: opts.protect.map_or_else(|| "none".to_string(), |p| p.name()),
        gptq: opts.gptq.as_ref().map_or_else(|| "none".to_string(), |g| g.name()),
        exchange,
        file_bytes: std::fs::metadata(&opts.output).map(|m| m.len()).unwrap_or(0),
        types: types.iter().map(|(k, v)| (k.clone(), v.name().to_string())).collect(),
    })
}

/// The output's writer: the master's metadata, the output types, the file type and provenance.
pub(crate) fn output_writer(master_file: &GgufFile, opts: &QuantizeOptions, types: &HashMap<String, GgmlType>, allocation: &str, ex: &Exchange) -> GgufWriter {
    let mut w = GgufWriter::from_file(master_file);
    for key in crate::gguf::split::KEYS {
        w.remove(key);
    }
    for spec in w.tensors.iter_mut() {
        spec.ggml_type = types[&spec.name];
    }
    w.set("general.file_type", MetaValue::U32(opts.mix.file_type()));
    w.set("mathneuro.tool_version", MetaValue::string(crate::surgery::metadata::TOOL_VERSION));
    w.set("mathneuro.quantize.mix", MetaValue::string(opts.mix.name()));
    w.set("mathneuro.quantize.importance", MetaValue::string(opts.importance.name()));
    w.set("mathneuro.quantize.allocation", MetaValue::string(allocation));
    if let Some(p) = opts.protect {
        w.set("mathneuro.quantize.protect", MetaValue::string(p.name()));
    }
    if let Some(g) = &opts.gptq {
        w.set("mathneuro.quantize.gptq", MetaValue::string(g.name()));
    }
    w.set("mathneuro.quantize.stock_tensor_bytes", MetaValue::U64(ex.stock_bytes));
    w.set("mathneuro.quantize.tensor_bytes", MetaValue::U64(ex.bytes));
    let list = master_file.tensors.iter().map(|t| MetaValue::string(format!("{}={}", t.name, types[&t.name].name()))).collect();
    w.set("mathneuro.quantize.types", MetaValue::Array { elem: MetaType::String, items: list });
    w
}

/// Tensor `t` of `master_file` encoded as `dest` with the importance of `imp` (its bytes as
/// they are when `dest` is already its type).
/// With `protect` (a mask of the tensor's entries and a factor), those entries' importance is
/// multiplied by the factor (`protect::encode_protected`); with `gptq` holding the tensor's H and
/// `dest` a linear block grid, it is rounded with error compensation (`gptq::encode`).
#[allow(clippy::too_many_arguments)]
pub fn encode_tensor(
    master_file: &GgufFile,
    t: &TensorInfo,
    dest: GgmlType,
    imp: Importance,
    math: Option<&ActivationStats>,
    general: Option<&ActivationStats>,
    protect: Option<(&crate::select::BitMask, f32)>,
    gptq: Option<&Gptq>,
) -> Result<Vec<u8>, QuantizeError> {
    let data = master_file.tensor_data(t);
    if dest == t.ggml_type {
        return Ok(data.to_vec());
    }
    let imp = importance_for(imp, math, general, t);
    let gptq_error = |source| QuantizeError::Gptq { tensor: t.name.clone(), source };
    if let Some(g) = gptq.filter(|_| gptq::handles(dest))
        && let Some(h) = g.hessians.hessian(&t.name).map_err(gptq_error)?
    {
        let codec = |source| QuantizeError::Codec { tensor: t.name.clone(), source };
        let w = crate::ffi::ggml::dequantize_to_vec(t.ggml_type, data, t.n_elements() as usize).map_err(codec)?;
        return gptq::encode(&w, t.dims[0] as usize, &h, dest, imp.as_deref(), g.damp).map_err(gptq_error);
    }
    let encoded = match protect {
        Some((mask, factor)) => protect::encode_protected(t, data, dest, imp.as_deref(), mask, factor),
        None => transcode::transcode_tensor(t, data, None, Change::Scale(1.0), dest, imp.as_deref()).map(|(bytes, _)| bytes),
    };
    encoded.map_err(|source| QuantizeError::Codec { tensor: t.name.clone(), source })
}

/// Encodes every tensor whose type changes and writes the output atomically.
fn write(
    master_file: &GgufFile,
    w: &GgufWriter,
    types: &HashMap<String, GgmlType>,
    math: Option<&ActivationStats>,
    general: Option<&ActivationStats>,
    opts: &QuantizeOptions,
    masks: &HashMap<String, crate::select::BitMask>,
) -> Result<(), QuantizeError> {
    let bar = Progress::new("quantizing", master_file.tensors.len() as u64, "tensors", opts.progress);
    let mut failure = None;
    let written = w.write_atomic(&opts.output, Some(master_file.path()), |i, _spec, sink| {
        let t = &master_file.tensors[i];
        bar.inc(1);
        let dest = types[&t.name];
        if dest == t.ggml_type {
            return sink.write_all(master_file.tensor_data(t));
        }
        let protect = opts.protect.and_then(|p| masks.get(&t.name).map(|m| (m, p.factor)));
        match encode_tensor(master_file, t, dest, opts.importance, math, general, protect, opts.gptq.as_deref()) {
            Ok(bytes) => {
                master_file.release(t);
                sink.write_all(&bytes)
            }
            Err(e) => {
                failure = Some(e);
                Err(std::io::Error::other("encoding failed"))
            }
        }
    });
    bar.finish_and_clear();
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(written?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn importance_parses_and_names_the_accepted_forms() {
        assert_eq!("math".parse::<Importance>(), Ok(Importance::Math));
        assert_eq!("General".parse::<Importance>(), Ok(Importance::General));
        assert_eq!("none".parse::<Importance>(), Ok(Importance::None));
        assert_eq!("mix=0.5".parse::<Importance>(), Ok(Importance::Mix(0.5)));
        for bad in ["mix=2", "mix=", "wiki"] {
            assert!(bad.parse::<Importance>().unwrap_err().contains("mix=W"), "{bad}");
        }
    }
}
