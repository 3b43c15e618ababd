//! Surgery: writes `*-mathneuro.gguf`, a copy of the model in which only the selected entries of
//! the target weights changed (×s, or 0 for a prune), block by block in each tensor's own type,
//! with provenance metadata, an Ollama `Modelfile`, a JSON report, a markdown summary and an SVG
//! heat map.
//!
//! Entry point for `apply` and `run`: [`apply`] (select, then rewrite) or [`apply_selection`]
//! (rewrite for a selection made elsewhere). Memory: the input is memory-mapped, masks take one
//! bit per target entry, and tensors are rewritten one at a time (rows in parallel), so the new
//! bytes of only one tensor are held at once.

pub mod blocks;
pub mod metadata;
pub mod outputs;
pub mod q4k;
pub mod regrid;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use blocks::Change;
pub use report::{BlockTally, GroupFraction, TensorReport};

use crate::ffi::ggml::CodecError;
use crate::progress::Progress;
use crate::gguf::{GgufError, GgufFile, GgufWriter};
use crate::select::{self, SelectError, SelectOptions, Selection};
use crate::stats::ActivationStats;

/// Everything `apply` needs besides the model and the two STATS files.
#[derive(Clone, Debug, PartialEq)]
pub struct ApplyOptions {
    /// What to select.
    pub select: SelectOptions,
    /// What to do to the selected entries.
    pub change: Change,
    /// The output GGUF.
    pub output: PathBuf,
    /// Overwrite an existing output (never the input).
    pub force: bool,
    /// Also write the selection as a mask file here.
    pub save_mask: Option<PathBuf>,
    /// Write an Ollama `Modelfile` beside the output.
    pub write_modelfile: bool,
    /// Write `OUT.report.json` and `OUT.heatmap.svg` beside the output.
    pub write_report: bool,
    /// Show progress on stderr (see `crate::progress`).
    pub progress: bool,
}

impl ApplyOptions {
    /// Default options (mathneuro, K = 5 %, seed 0, Modelfile and report on) for `change` → `output`.
    pub fn new(change: Change, output: impl Into<PathBuf>) -> ApplyOptions {
        ApplyOptions {
            select: SelectOptions::default(),
            change,
            output: output.into(),
            force: false,
            save_mask: None,
            write_modelfile: true,
            write_report: true,
            progress: true,
        }
    }
}

/// What `apply` did.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ApplyReport {
    /// The model read.
    pub input: PathBuf,
    /// The GGUF written.
    pub output: PathBuf,
    /// The Modelfile written, if any.
    pub modelfile: Option<PathBuf>,
    /// The JSON report written, if any.
    pub report_json: Option<PathBuf>,
    /// The SVG heat map written, if any.
    pub heatmap_svg: Option<PathBuf>,
    /// The mask file written, if any.
    pub mask: Option<PathBuf>,
    /// Selection method.
    pub method: String,
    /// K in percent.
    pub top_k_percent: f64,
    /// The change applied.
    pub change: Change,
    /// Seed.
    pub seed: u64,
    /// Math / general calibration samples.
    pub samples: (u64, u64),
    /// Entries selected over all targets.
    pub selected: u64,
    /// Entries of all targets.
    pub target_entries: u64,
    /// selected / target_entries.
    pub selected_fraction: f64,
    /// Totals over all targets.
    pub totals: BlockTally,
    /// Achieved fraction of the intended change, over all targets.
    pub achieved_fraction: f64,
    /// RMS change of non-selected entries in touched blocks, over all targets.
    pub collateral_rms: f64,
    /// The same relative to those entries' RMS.
    pub collateral_relative: f64,
    /// Selected fraction per layer.
    pub per_layer: Vec<GroupFraction>,
    /// Selected fraction per matrix kind.
    pub per_kind: Vec<GroupFraction>,
    /// One entry per target weight.
    pub tensors: Vec<TensorReport>,
    /// Seconds spent selecting.
    pub select_seconds: f64,
    /// Seconds spent rewriting and writing the output.
    pub rewrite_seconds: f64,
}

/// Why `apply` failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// An output path is refused (it is the input, exists without `force`, …).
    #[error(transparent)]
    Output(#[from] crate::safety::OutputError),
    /// The selection is empty, so the output would be a plain copy.
    #[error("nothing selected: {0}; the output would be an unchanged copy of the model, so none was written")]
    NothingSelected(String),
    /// Selection failed (STATS do not match the model, bad K, …).
    #[error(transparent)]
    Select(#[from] SelectError),
    /// Reading or writing a GGUF failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A block could not be re-encoded.
    #[error("{tensor}: {source}")]
    Codec {
        /// Tensor name.
        tensor: String,
        /// Codec failure.
        source: CodecError,
    },
    /// The selection does not fit the model, or the output paths conflict.
    #[error("{0}")]
    Mismatch(String),
}

/// Selects (see `select::select`) and rewrites: writes `opts.output`, and beside it the
/// Modelfile, `OUT.report.json` and `OUT.heatmap.svg` as asked, plus the mask file.
pub fn apply(model: &GgufFile, math: &ActivationStats, general: &ActivationStats, opts: &ApplyOptions) -> Result<ApplyReport, ApplyError> {
    outputs::check_outputs(model.path(), opts)?;
    let t0 = Instant::now();
    let bar = Progress::new("selecting", crate::model::target_weights(model).len() as u64, "tensors", opts.progress);
    let selection = select::select_with_progress(model, math, general, &opts.select, &|| bar.inc(1))?;
    bar.finish_and_clear();
    if selection.selected() == 0 {
        let why = match opts.select.method {
            select::Method::MathNeuro => format!(
                "every entry in the math top-{}% is also in the general top-{}% (are --math and --general the same statistics? is --top-k 100?)",
                opts.select.top_k_percent, opts.select.top_k_percent
            ),
            _ => format!("--top-k {} selects no entry of any target", opts.select.top_k_percent),
        };
        return Err(ApplyError::NothingSelected(why));
    }
    let select_seconds = t0.elapsed().as_secs_f64();
    let mut report = apply_selection(model, &selection, math, general, opts)?;
    report.select_seconds = select_seconds;
    Ok(report)
}

/// Rewrites `model` for a selection already made (the STATS give provenance and the importance
/// vector Σx² used when re-encoding).
pub fn apply_selection(
    model: &GgufFile,
    selection: &Selection,
    math: &ActivationStats,
    general: &ActivationStats,
    opts: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    outputs::check_outputs(model.path(), opts)?;
    select::check::check_all(model, math, general)?;
    let t0 = Instant::now();
    let fingerprint = crate::model::fingerprint(model);
    for ts in &selection.tensors {
        let info = model.tensor(&ts.name).ok_or_else(|| ApplyError::Mismatch(format!("{}: the selection names a tensor the model does not have", ts.name)))?;
        if info.dims != ts.dims || info.ggml_type != ts.ggml_type {
            return Err(ApplyError::Mismatch(format!("{}: selected on shape {:?} {} but the model has {:?} {}", ts.name, ts.dims, ts.ggml_type, info.dims, info.ggml_type)));
        }
    }

    let prov = metadata::Provenance {
        method: selection.options.method.name().to_string(),
        top_k_percent: selection.options.top_k_percent,
        operation: match opts.change {
            Change::Scale(_) => "scale".into(),
            Change::Prune => "prune".into(),
        },
        scale: opts.change.factor(),
        seed: selection.options.seed,
        math_samples: math.samples,
        general_samples: general.samples,
        math_datasets: math.datasets.clone(),
        general_datasets: general.datasets.clone(),
        selected: selection.selected(),
        target_entries: selection.numel(),
        source_fingerprint: fingerprint.clone(),
    };
    let mut w = GgufWriter::from_file(model);
    metadata::apply_metadata(&mut w, model, &prov);

    let bar = Progress::new("writing", model.tensors.len() as u64, "tensors", opts.progress);
    // A producer thread re-encodes the target weights in file order (rows in parallel on the
    // rayon pool) while this thread writes: the output is written while the next tensors are
    // computed. At most `IN_FLIGHT` finished tensors wait, so memory stays bounded.
    const IN_FLIGHT: usize = 2;
    let mut reports: Vec<TensorReport> = Vec::new();
    let mut failure: Option<ApplyError> = None;
    let written = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(Vec<u8>, TensorReport), ApplyError>>(IN_FLIGHT);
        scope.spawn(move || {
            for info in &model.tensors {
                let Some(ts) = selection.get(&info.name) else { continue };
                let importance = importance(math, general, &info.name);
                let done = blocks::rewrite_tensor(info, model.tensor_data(info), &ts.mask, opts.change, importance.as_deref())
                    .map(|(bytes, tally)| (bytes, tensor_report(ts, tally)))
                    .map_err(|source| ApplyError::Codec { tensor: info.name.clone(), source });
                let failed = done.is_err();
                // The writer stops receiving only after a failure of its own: nothing to do then.
                if tx.send(done).is_err() || failed {
                    return;
                }
            }
        });
        let result = w.write_atomic(&opts.output, Some(model.path()), |i, _spec, sink| {
            let info = &model.tensors[i];
            bar.inc(1);
            if selection.get(&info.name).is_none() {
                return sink.write_all(model.tensor_data(info));
            }
            match rx.recv() {
                Ok(Ok((bytes, report))) => {
                    reports.push(report);
                    sink.write_all(&bytes)
                }
                Ok(Err(e)) => {
                    failure = Some(e);
                    Err(std::io::Error::other("re-encoding failed"))
                }
                Err(_) => Err(std::io::Error::other("the re-encoding thread stopped early")),
            }
        });
        // A producer blocked on a full channel sees the receiver gone and stops (after a
        // failure here); the scope then joins it.
        drop(rx);
        result
    });
    bar.finish_and_clear();
    if let Some(e) = failure {
        return Err(e);
    }
    written?;
    let tensors = reports;
    let totals = tensors.iter().fold(BlockTally::default(), |a, t| a.merge(t.tally.clone()));
    let mut report = ApplyReport {
        input: model.path().to_path_buf(),
        output: opts.output.clone(),
        modelfile: None,
        report_json: None,
        heatmap_svg: None,
        mask: None,
        method: prov.method.clone(),
        top_k_percent: prov.top_k_percent,
        change: opts.change,
        seed: prov.seed,
        samples: (math.samples, general.samples),
        selected: prov.selected,
        target_entries: prov.target_entries,
        selected_fraction: if prov.target_entries == 0 { 0.0 } else { prov.selected as f64 / prov.target_entries as f64 },
        achieved_fraction: totals.achieved_fraction(),
        collateral_rms: totals.collateral_rms(),
        collateral_relative: totals.collateral_relative(),
        totals,
        per_layer: report::per_layer(&tensors),
        per_kind: report::per_kind(&tensors),
        tensors,
        select_seconds: 0.0,
        rewrite_seconds: 0.0,
    };
    if let Some(mask_path) = &opts.save_mask {
        select::maskfile::MaskFile::from_selection(selection, &fingerprint).save(mask_path, Some(model.path()))?;
        report.mask = Some(mask_path.clone());
    }
    report.rewrite_seconds = t0.elapsed().as_secs_f64();
    outputs::write_side_files(&mut report, opts)?;
    Ok(report)
}

/// The importance vector for re-encoding `name`: Σx² pooled over both STATS files.
fn importance(math: &ActivationStats, general: &ActivationStats, name: &str) -> Option<Vec<f32>> {
    let a = &math.weights.get(name)?.sum_sq;
    let b = &general.weights.get(name)?.sum_sq;
    Some(a.iter().zip(b).map(|(x, y)| x + y).collect())
}

fn tensor_report(ts: &select::TensorSelection, tally: BlockTally) -> TensorReport {
    TensorReport {
        name: ts.name.clone(),
        layer: crate::model::layer_of(&ts.name),
        kind: crate::model::matrix_kind(&ts.name).to_string(),
        ggml_type: ts.ggml_type.name().to_string(),
        numel: ts.numel(),
        k: ts.k,
        selected_fraction: if ts.numel() == 0 { 0.0 } else { ts.selected as f64 / ts.numel() as f64 },
        achieved_fraction: tally.achieved_fraction(),
        collateral_rms: tally.collateral_rms(),
        collateral_relative: tally.collateral_relative(),
        tally,
    }
}

/// `OUT` with its `.gguf` extension replaced by `suffix` (`x.gguf` → `x.report.json`).
pub fn side_path(output: &Path, suffix: &str) -> PathBuf {
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".gguf").unwrap_or(&name);
    output.with_file_name(format!("{stem}{suffix}"))
}
