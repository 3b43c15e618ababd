//! Surgery: writes `*-mathneuro.gguf`, a copy of the model in which only the selected entries of
//! the target weights changed (×s, or 0 for a prune), block by block in each tensor's own type,
//! with provenance metadata, an Ollama `Modelfile`, a JSON report, a markdown summary and an SVG
//! heat map.
//!
//! Entry point for `apply` and `run`: [`apply`] (select, then rewrite) or [`apply_selection`]
//! (rewrite for a selection made elsewhere). Memory: the input is memory-mapped, masks take one
//! bit per target entry, and tensors are rewritten one at a time (rows in parallel), so the new
//! bytes of only one tensor are held at once.

pub mod affine;
pub mod blocks;
pub mod deliver;
pub mod dequant;
pub mod edit;
pub mod grids;
pub mod half;
pub mod layout;
pub mod master;
pub mod metadata;
pub mod outputs;
pub mod q4k;
pub mod quantmix;
pub mod refit;
pub mod regrid;
pub mod report;
pub mod transcode;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use blocks::Change;
pub use edit::{EditMode, Mix, Quantize};
pub use report::{BlockTally, GroupFraction, TensorReport, TypeSummary};

use crate::ffi::ggml::CodecError;
use crate::gguf::{GgmlType, GgufError, GgufFile, GgufWriter, MetaValue, TensorInfo};
use crate::progress::Progress;
use crate::select::{self, SelectError, SelectOptions, Selection};
use crate::stats::ActivationStats;

/// Everything `apply` needs besides the model and the two STATS files.
#[derive(Clone, Debug, PartialEq)]
pub struct ApplyOptions {
    /// What to select.
    pub select: SelectOptions,
    /// What to do to the selected entries.
    pub change: Change,
    /// How the edited values are stored (`--edit`).
    pub edit: EditMode,
    /// The model is an F16/BF16 master: write every tensor in these types (`--quantize`).
    pub quantize: Option<Quantize>,
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
    /// Only these targets are edited (`--only`, `--layers`; default every target).
    pub restrict: select::restrict::Restriction,
}

impl ApplyOptions {
    /// Default options (mathneuro, K = 5 %, seed 0, Modelfile and report on) for `change` → `output`.
    pub fn new(change: Change, output: impl Into<PathBuf>) -> ApplyOptions {
        ApplyOptions {
            select: SelectOptions::default(),
            change,
            edit: EditMode::default(),
            quantize: None,
            output: output.into(),
            force: false,
            save_mask: None,
            write_modelfile: true,
            write_report: true,
            progress: true,
            restrict: select::restrict::Restriction::default(),
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
    /// How the edit was stored (`keep`, `promote=q8_0`).
    pub edit: String,
    /// The master flow's output types (`like=PATH`, `Q4_K_M`), if any.
    pub quantize: Option<String>,
    /// Bytes of the input model file.
    pub input_bytes: u64,
    /// Bytes of the output model file.
    pub output_bytes: u64,
    /// Notes for the user (how STATS were matched to a master, type changes).
    pub notes: Vec<String>,
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
    /// Achieved fraction and collateral per stored type (input type → output type).
    pub per_type: Vec<TypeSummary>,
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
    /// Writing a side file (Modelfile, report, heat map) failed.
    #[error(transparent)]
    Write(#[from] crate::atomic::AtomicWriteError),
    /// A block could not be re-encoded.
    #[error("{tensor}: {source}")]
    Codec {
        /// Tensor name.
        tensor: String,
        /// Codec failure.
        source: CodecError,
    },
    /// The selection names a tensor the model does not have.
    #[error("{tensor}: the selection names a tensor the model does not have")]
    SelectedTensorMissing {
        /// Tensor name.
        tensor: String,
    },
    /// The selection was made on another shape or type of a tensor.
    #[error("{tensor}: selected on shape {selected_dims:?} {selected_type} but the model has {model_dims:?} {model_type}")]
    SelectedOnOtherShape {
        /// Tensor name.
        tensor: String,
        /// The shape the selection was made on.
        selected_dims: Vec<u64>,
        /// The type the selection was made on.
        selected_type: GgmlType,
        /// The shape in the model.
        model_dims: Vec<u64>,
        /// The type in the model.
        model_type: GgmlType,
    },
    /// A float master was asked for in a type that is not F32, F16 or BF16.
    #[error("{0}: a master is written in F32, F16 or BF16")]
    MasterNotFloat(GgmlType),
    /// A STATS file names a weight that is not a target of the master.
    #[error("the {which} STATS hold {weight}, which is not a target weight of {}: they were measured on a model with other tensors", master.display())]
    StatsForNonTarget {
        /// Which STATS file ("math" or "general").
        which: &'static str,
        /// The weight it names.
        weight: String,
        /// The master.
        master: PathBuf,
    },
    /// `--edit keep` on a type without an in-grid edit (the IQ1/IQ2/IQ3 and TQ codebooks).
    #[error("{tensor} is {ty}: `--edit keep` has no in-grid edit for {ty} (its codes index a codebook that cannot be re-rounded entry by entry); use `--edit promote=q8_0` (or promote=f16) to write the edited targets in that type")]
    NoInGridEdit {
        /// Tensor name.
        tensor: String,
        /// Its type.
        ty: GgmlType,
    },
    /// The `--quantize like=` sibling does not have the master's tensors.
    #[error(transparent)]
    Sibling(#[from] quantmix::SiblingMismatch),
}

/// Selects (see `select::select`) and rewrites: writes `opts.output`, and beside it the
/// Modelfile, `OUT.report.json` and `OUT.heatmap.svg` as asked, plus the mask file. With
/// `opts.quantize` the model is a master whose STATS come from a quantized sibling (matched by
/// name and shape, see `master`).
pub fn apply(model: &GgufFile, math: &ActivationStats, general: &ActivationStats, opts: &ApplyOptions) -> Result<ApplyReport, ApplyError> {
    outputs::check_outputs(model.path(), opts)?;
    // A K so small that not one weight of even the largest matrix is in its top K% cannot
    // select anything: say so with the bound rather than after the selection.
    let largest = crate::model::target_weights(model).iter().map(|t| select::matrix::matrix_numel(t)).max().unwrap_or(0);
    if largest > 0 && select::matrix::top_k_count(largest, opts.select.top_k_percent) == 0 {
        return Err(ApplyError::NothingSelected(format!(
            "--top-k {:e} is below one weight of the largest target matrix ({largest} weights; an expert is one matrix): give --top-k of at least {:.3e} (percent)",
            opts.select.top_k_percent,
            100.0 / largest as f64
        )));
    }
    let plan = opts.quantize.as_ref().map(|q| master::plan(model, math, general, q)).transpose()?;
    let t0 = Instant::now();
    let bar = Progress::new("selecting", crate::model::target_weights(model).len() as u64, "tensors", opts.progress);
    let selection = match plan {
        Some(_) => select::select_matched(model, math, general, &opts.select, &|| bar.inc(1))?,
        None => select::select_with_progress(model, math, general, &opts.select, &|| bar.inc(1))?,
    };
    bar.finish_and_clear();
    let selection = if opts.restrict.is_all() { selection } else { selection.restricted(|n| opts.restrict.contains(n)) };
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
    rewrite(model, &selection, math, general, opts, plan, select_seconds)
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
    // `master::plan` checks names and shapes; without a plan the STATS must fit this very model.
    let plan = opts.quantize.as_ref().map(|q| master::plan(model, math, general, q)).transpose()?;
    if plan.is_none() {
        select::check::check_all(model, math, general)?;
    }
    if !opts.restrict.is_all() {
        return rewrite(model, &selection.restricted(|n| opts.restrict.contains(n)), math, general, opts, plan, 0.0);
    }
    rewrite(model, selection, math, general, opts, plan, 0.0)
}

/// What happens to one tensor of the model.
enum Job<'a> {
    /// Its bytes are copied.
    Copy,
    /// A target edited block by block in its own type.
    InGrid(&'a select::TensorSelection),
    /// Decoded, edited where selected, and encoded in this type.
    Transcode(GgmlType, Option<&'a select::TensorSelection>),
}

/// The job of each tensor of `model`, in table order.
fn jobs<'a>(model: &GgufFile, selection: &'a Selection, edit: EditMode, plan: Option<&master::MasterPlan>) -> Vec<Job<'a>> {
    model
        .tensors
        .iter()
        .map(|info| {
            let ts = selection.get(&info.name);
            match (plan, ts) {
                (Some(p), _) => {
                    let dest = p.types.get(&info.name).copied().unwrap_or(info.ggml_type);
                    if dest == info.ggml_type && ts.is_none() { Job::Copy } else { Job::Transcode(dest, ts) }
                }
                (None, None) => Job::Copy,
                (None, Some(ts)) => match edit {
                    EditMode::Promote(_) if ts.selected > 0 => Job::Transcode(edit.target_type(info.ggml_type), Some(ts)),
                    _ => Job::InGrid(ts),
                },
            }
        })
        .collect()
}

/// The rewrite proper (the STATS were checked by the caller): metadata, then every tensor in
/// file order. `select_seconds` (the caller's selection time) goes into the report before the
/// side files are written.
fn rewrite(
    model: &GgufFile,
    selection: &Selection,
    math: &ActivationStats,
    general: &ActivationStats,
    opts: &ApplyOptions,
    plan: Option<master::MasterPlan>,
    select_seconds: f64,
) -> Result<ApplyReport, ApplyError> {
    let t0 = Instant::now();
    let fingerprint = crate::model::fingerprint(model);
    check_selection_fits(model, selection)?;
    if opts.quantize.is_none() && opts.edit == EditMode::Keep {
        check_in_grid(selection)?;
    }
    let prov = provenance(selection, math, general, opts, &fingerprint);
    let edit_name = match &opts.quantize {
        Some(q) => format!("master, quantize {}", q.name()),
        None => opts.edit.name(),
    };
    let jobs = jobs(model, selection, opts.edit, plan.as_ref());
    let w = output_writer(model, &prov, &edit_name, &jobs, plan.as_ref());
    let tensors = write_tensors(model, &w, &jobs, math, general, opts)?;
    let mut report = apply_report(model, opts, &prov, edit_name, plan, math, general, tensors);
    if let Some(mask_path) = &opts.save_mask {
        select::maskfile::MaskFile::from_selection(selection, &fingerprint).save(mask_path, Some(model.path()))?;
        report.mask = Some(mask_path.clone());
    }
    report.select_seconds = select_seconds;
    report.rewrite_seconds = t0.elapsed().as_secs_f64();
    outputs::write_side_files(&mut report, opts)?;
    Ok(report)
}

/// Under `--edit keep` every target with a selected entry is a float or has an in-grid edit
/// (`regrid::GridType`): the IQ1/IQ2/IQ3 and TQ types are refused, naming the flag that works.
fn check_in_grid(selection: &Selection) -> Result<(), ApplyError> {
    for ts in selection.tensors.iter().filter(|t| t.selected > 0) {
        if !edit::is_float(ts.ggml_type) && regrid::GridType::try_from(ts.ggml_type).is_err() {
            return Err(ApplyError::NoInGridEdit { tensor: ts.name.clone(), ty: ts.ggml_type });
        }
    }
    Ok(())
}

/// Every tensor the selection names is in the model, with the shape and type it was selected on.
fn check_selection_fits(model: &GgufFile, selection: &Selection) -> Result<(), ApplyError> {
    for ts in &selection.tensors {
        let info = model.tensor(&ts.name).ok_or_else(|| ApplyError::SelectedTensorMissing { tensor: ts.name.clone() })?;
        if info.dims != ts.dims || info.ggml_type != ts.ggml_type {
            return Err(ApplyError::SelectedOnOtherShape {
                tensor: ts.name.clone(),
                selected_dims: ts.dims.clone(),
                selected_type: ts.ggml_type,
                model_dims: info.dims.clone(),
                model_type: info.ggml_type,
            });
        }
    }
    Ok(())
}

/// What the output's `mathneuro.*` keys record about how it was made.
fn provenance(selection: &Selection, math: &ActivationStats, general: &ActivationStats, opts: &ApplyOptions, fingerprint: &str) -> metadata::Provenance {
    metadata::Provenance {
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
        source_fingerprint: fingerprint.to_string(),
    }
}

/// The output's writer: the model's metadata with provenance, and each tensor's output type.
fn output_writer(model: &GgufFile, prov: &metadata::Provenance, edit_name: &str, jobs: &[Job], plan: Option<&master::MasterPlan>) -> GgufWriter {
    let mut w = GgufWriter::from_file(model);
    // A split input is written as one file: its shard keys would make llama.cpp look for shards.
    for key in crate::gguf::split::KEYS {
        w.remove(key);
    }
    metadata::apply_metadata(&mut w, model, prov);
    w.set("mathneuro.edit", MetaValue::string(edit_name));
    for (spec, job) in w.tensors.iter_mut().zip(jobs) {
        if let Job::Transcode(dest, _) = job {
            spec.ggml_type = *dest;
        }
    }
    if let Some(ft) = plan.and_then(|p| p.file_type) {
        w.set("general.file_type", MetaValue::U32(ft));
    }
    w
}

/// The new bytes of one changed tensor and, for a selected one, its report.
type Done = Result<(Vec<u8>, Option<TensorReport>), ApplyError>;

/// Re-encodes the tensors that change and writes the output atomically; the report of each
/// selected tensor, in file order.
fn write_tensors(model: &GgufFile, w: &GgufWriter, jobs: &[Job], math: &ActivationStats, general: &ActivationStats, opts: &ApplyOptions) -> Result<Vec<TensorReport>, ApplyError> {
    let bar = Progress::new("writing", model.tensors.len() as u64, "tensors", opts.progress);
    // A producer thread re-encodes the tensors that change in file order (rows in parallel on
    // the rayon pool) while this thread writes: the output is written while the next tensors are
    // computed. At most `IN_FLIGHT` finished tensors wait, so memory stays bounded.
    const IN_FLIGHT: usize = 2;
    let mut reports: Vec<TensorReport> = Vec::new();
    let mut failure: Option<ApplyError> = None;
    let written = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Done>(IN_FLIGHT);
        scope.spawn(move || {
            for (info, job) in model.tensors.iter().zip(jobs) {
                let done = match job {
                    Job::Copy => continue,
                    Job::InGrid(ts) => rewrite_in_grid(model, info, ts, math, general, opts.change),
                    Job::Transcode(dest, ts) => transcode_to(model, info, *dest, *ts, math, general, opts.change),
                }
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
            // Once written, a tensor's input pages leave the resident set (the re-encoding thread
            // has finished with it too): peak memory stays near the tensors in flight.
            if matches!(jobs[i], Job::Copy) {
                let written = sink.write_all(model.tensor_data(info));
                model.release(info);
                return written;
            }
            match rx.recv() {
                Ok(Ok((bytes, report))) => {
                    reports.extend(report);
                    model.release(info);
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
    Ok(reports)
}

/// Tensor `info` edited block by block in its own type, and its report.
fn rewrite_in_grid(model: &GgufFile, info: &TensorInfo, ts: &select::TensorSelection, math: &ActivationStats, general: &ActivationStats, change: Change) -> Result<(Vec<u8>, Option<TensorReport>), CodecError> {
    let importance = importance(math, general, &info.name);
    blocks::rewrite_tensor(info, model.tensor_data(info), &ts.mask, change, importance.as_deref())
        .map(|(bytes, tally)| (bytes, Some(tensor_report(ts, info.ggml_type, tally))))
}

/// Tensor `info` decoded, edited where `ts` selects, and encoded as `dest`; its report when selected.
fn transcode_to(
    model: &GgufFile,
    info: &TensorInfo,
    dest: GgmlType,
    ts: Option<&select::TensorSelection>,
    math: &ActivationStats,
    general: &ActivationStats,
    change: Change,
) -> Result<(Vec<u8>, Option<TensorReport>), CodecError> {
    let importance = imatrix(math, general, info);
    transcode::transcode_tensor(info, model.tensor_data(info), ts.map(|t| &t.mask), change, dest, importance.as_deref())
        .map(|(bytes, tally)| (bytes, ts.map(|t| tensor_report(t, dest, tally))))
}

/// The report of a finished rewrite (the mask path and the timing are filled in by the caller).
#[allow(clippy::too_many_arguments)] // each is one distinct input the report records
fn apply_report(
    model: &GgufFile,
    opts: &ApplyOptions,
    prov: &metadata::Provenance,
    edit_name: String,
    plan: Option<master::MasterPlan>,
    math: &ActivationStats,
    general: &ActivationStats,
    tensors: Vec<TensorReport>,
) -> ApplyReport {
    let totals = tensors.iter().fold(BlockTally::default(), |a, t| a.merge(t.tally.clone()));
    let file_len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    ApplyReport {
        input: model.path().to_path_buf(),
        output: opts.output.clone(),
        modelfile: None,
        report_json: None,
        heatmap_svg: None,
        mask: None,
        method: prov.method.clone(),
        top_k_percent: prov.top_k_percent,
        change: opts.change,
        edit: edit_name,
        quantize: opts.quantize.as_ref().map(Quantize::name),
        input_bytes: file_len(model.path()),
        output_bytes: file_len(&opts.output),
        notes: plan.map(|p| p.notes).unwrap_or_default(),
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
        per_type: report::per_type(&tensors),
        tensors,
        select_seconds: 0.0,
        rewrite_seconds: 0.0,
    }
}

/// The importance vector for re-encoding `name`: Σx² pooled over both STATS files.
fn importance(math: &ActivationStats, general: &ActivationStats, name: &str) -> Option<Vec<f32>> {
    let a = &math.weights.get(name)?.sum_sq;
    let b = &general.weights.get(name)?.sum_sq;
    Some(a.iter().zip(b).map(|(x, y)| x + y).collect())
}

/// The importance vector ggml's quantizer gets for `t`, as llama-quantize takes it from an
/// imatrix: Σx² / tokens per column, pooled over both STATS files, per expert.
fn imatrix(math: &ActivationStats, general: &ActivationStats, t: &TensorInfo) -> Option<Vec<f32>> {
    let (a, b) = (math.weights.get(&t.name)?, general.weights.get(&t.name)?);
    let n_in = t.dims[0] as usize;
    if a.sum_sq.len() != b.sum_sq.len() || a.sum_sq.len() % n_in.max(1) != 0 {
        return None;
    }
    let mut v: Vec<f32> = a.sum_sq.iter().zip(&b.sum_sq).map(|(x, y)| x + y).collect();
    for (g, chunk) in v.chunks_mut(n_in).enumerate() {
        let tokens = a.tokens.get(g).copied().unwrap_or(0) + b.tokens.get(g).copied().unwrap_or(0);
        chunk.iter_mut().for_each(|x| *x /= tokens.max(1) as f32);
    }
    Some(v)
}

/// The report of one target written in `stored` (its own type, or the promoted/master one).
pub fn tensor_report(ts: &select::TensorSelection, stored: GgmlType, tally: BlockTally) -> TensorReport {
    TensorReport {
        name: ts.name.clone(),
        layer: crate::model::layer_of(&ts.name),
        kind: crate::model::matrix_kind(&ts.name).to_string(),
        ggml_type: ts.ggml_type.name().to_string(),
        stored_type: stored.name().to_string(),
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
