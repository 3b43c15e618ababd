//! Measured sensitivity (issue 24, the allocation's way (b)): for every tensor of a stock mix
//! that the allocation can move, how much a measure of the whole model (math KLD against the
//! master, from forward passes only) changes when that tensor **alone** is quantized a step
//! lower (or higher) on the K-quant ladder than the stock mix puts it.
//!
//! The stock mix is encoded once and kept; each probe re-encodes only its tensor, writes the
//! model to a temporary file beside the output (removed after its measure, and on a signal),
//! and hands the file to the measure. The result is the file `quantize --allocation
//! sensitivity=FILE` reads: a JSON object tensor → score, where a higher score means the tensor
//! needs its precision more (down: measure(probe) − measure(stock); up: measure(stock) −
//! measure(probe)). Tensors are named in file order of the master, and the same inputs and
//! measure give the same bytes.
//!
//! **Noise.** A measure that scores items (tokens) gives each probe a paired standard error: the
//! spread of its per-token differences from the stock mix's, over √n. With `noise_floor` z > 0
//! the file holds a conservative number instead of the raw score — a step down costs at least
//! z standard errors (`max(score, z·se)`), a step up gains its score less z standard errors —
//! so an allocation does not trade tensors on differences the measure cannot tell from 0. The
//! report keeps the raw score, the standard error and the number written.
//!
//! Each measure is journaled as it finishes (`OUT.partial.jsonl`, `safety::journal`), so a run
//! of hundreds of probes that is stopped loses at most the probe in flight: with `resume` the
//! measures of the journal are taken instead of being made again (the journal's key holds the
//! master, mix, importance, direction, filter, STATS and the measure's own description), and
//! the journal is removed once the file is written.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use super::alloc::{self, Exchange};
use super::{Importance, QuantizeError, QuantizeOptions, check_stats, encode_tensor, output_writer};
use crate::gguf::{GgmlType, GgufFile, GgufWriter};
use crate::progress::Progress;
use crate::safety::journal::Journal;
use crate::safety::tempfiles::TempFile;
use crate::stats::ActivationStats;
use crate::surgery::{Mix, quantmix};

/// Which way each probe moves its tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Direction {
    /// One step down the ladder (what a demotion costs).
    Down,
    /// One step up the ladder (what a promotion gains).
    Up,
}

impl std::str::FromStr for Direction {
    type Err = String;

    fn from_str(s: &str) -> Result<Direction, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "down" => Ok(Direction::Down),
            "up" => Ok(Direction::Up),
            _ => Err(format!("`{s}`: expected down or up")),
        }
    }
}

/// What the stage needs besides the master, the STATS and the measure.
#[derive(Clone, Debug, PartialEq)]
pub struct SensitivityOptions {
    /// The stock mix the probes depart from.
    pub mix: Mix,
    /// The importance every tensor is encoded with (as `quantize` would).
    pub importance: Importance,
    /// Step down or up.
    pub direction: Direction,
    /// Probe only tensors whose name contains one of these (empty: every movable tensor).
    pub only: Vec<String>,
    /// The sensitivity file (JSON object tensor → score).
    pub output: PathBuf,
    /// Also write the full report (JSON) here.
    pub report: Option<PathBuf>,
    /// Overwrite existing outputs (never an input).
    pub force: bool,
    /// Show progress on stderr.
    pub progress: bool,
    /// Continue from the journal (`OUT.partial.jsonl`) of an interrupted run when it exists.
    pub resume: bool,
    /// What the measure is (texts, tokens, windows): part of the journal's key.
    pub measure_key: String,
    /// z: the file's numbers are the scores made conservative by z paired standard errors
    /// (see the module doc); 0 writes the raw scores.
    pub noise_floor: f64,
}

/// What the measure says of one model: its value and, for a measure over items (tokens), each
/// item's value (their mean is the value), which pairs probes with the stock mix.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measure {
    /// The number (higher = further from the master).
    pub value: f64,
    /// Per-item values, or empty.
    pub items: Vec<f64>,
}

impl Measure {
    /// A measure over items: their mean, and the items kept for pairing.
    pub fn of_items(items: Vec<f64>) -> Measure {
        Measure { value: items.iter().sum::<f64>() / items.len().max(1) as f64, items }
    }
}

impl From<f64> for Measure {
    fn from(value: f64) -> Measure {
        Measure { value, items: Vec::new() }
    }
}

/// The standard error of the mean of `probe − base`, item by item; `None` unless both have the
/// same two or more items.
pub fn paired_stderr(probe: &[f64], base: &[f64]) -> Option<f64> {
    if probe.len() < 2 || probe.len() != base.len() {
        return None;
    }
    let d: Vec<f64> = probe.iter().zip(base).map(|(p, b)| p - b).collect();
    Some(crate::eval::stats::mean_stderr(&d).1)
}

/// One journaled measure: the stock mix (`tensor` empty, with its items so that a resumed run
/// still pairs) or one probe (with its paired standard error).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Measured {
    tensor: String,
    value: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    items: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stderr: Option<f64>,
}

/// The journal beside `output`: `OUT.partial.jsonl`.
pub fn journal_path(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".partial.jsonl");
    PathBuf::from(s)
}

/// One probe: a tensor moved a step, and what the measure said.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Probe {
    /// The tensor moved.
    pub tensor: String,
    /// Its type in the stock mix.
    pub stock_type: String,
    /// Its type in the probe.
    pub probe_type: String,
    /// Tensor bytes of the probe minus those of the stock mix.
    pub bytes_delta: i64,
    /// The measure of the probe model.
    pub value: f64,
    /// The raw score (see the module doc).
    pub score: f64,
    /// The score's paired standard error, when the measure scores items.
    pub stderr: Option<f64>,
    /// The number the sensitivity file holds: the score, made conservative by the noise floor.
    pub written: f64,
}

/// What the stage measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SensitivityReport {
    /// The master.
    pub master: PathBuf,
    /// The stock mix.
    pub mix: String,
    /// The importance name.
    pub importance: String,
    /// The direction of the probes.
    pub direction: Direction,
    /// The measure of the stock mix.
    pub baseline: f64,
    /// One entry per probed tensor, in the master's order.
    pub probes: Vec<Probe>,
}

impl SensitivityReport {
    /// The sensitivity file's content: `{"tensor": score, …}`, names sorted.
    pub fn scores_json(&self) -> String {
        let map: BTreeMap<&str, f64> = self.probes.iter().map(|p| (p.tensor.as_str(), p.written)).collect();
        serde_json::to_string_pretty(&map).expect("a map of numbers serializes") + "\n"
    }
}

/// Why the stage failed.
#[derive(Debug, thiserror::Error)]
pub enum SensitivityError {
    /// Encoding, STATS or output checks failed.
    #[error(transparent)]
    Quantize(#[from] QuantizeError),
    /// No tensor can be probed.
    #[error("no tensor of {master} can move a step {direction:?} from the {mix} mix{only}: only tensors on their rows' ladder move (K-quants for rows of whole 256-blocks, Q4_0 … Q8_0 for rows of whole 32-blocks)")]
    NothingToProbe {
        /// The master.
        master: String,
        /// The mix.
        mix: &'static str,
        /// The direction.
        direction: Direction,
        /// The `--only` filter, if any.
        only: String,
    },
    /// A probe model could not be written.
    #[error("writing a probe model in {}: {source}", dir.display())]
    Probe {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The measure failed on a model.
    #[error("measuring {what}: {message}")]
    Measure {
        /// `the stock mix` or the probed tensor.
        what: String,
        /// The measure's error.
        message: String,
    },
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] crate::safety::journal::JournalError),
    /// Writing an output failed.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: crate::atomic::AtomicWriteError,
    },
}

/// The tensors a probe moves, with their probe type, in the master's order.
pub fn probe_plan(master_file: &GgufFile, stock: &HashMap<String, GgmlType>, direction: Direction, only: &[String]) -> Vec<(usize, GgmlType)> {
    master_file
        .tensors
        .iter()
        .enumerate()
        .filter(|(_, t)| only.is_empty() || only.iter().any(|o| t.name.contains(o.as_str())))
        .filter_map(|(i, t)| alloc::step(*stock.get(&t.name)?, direction == Direction::Up, t.row_len()).map(|ty| (i, ty)))
        .collect()
}

/// Measures every probe of `opts` with `measure` (a written model file → a number, higher =
/// further from the master) and writes the sensitivity file (and the report).
pub fn measure_sensitivity<M, T>(master_file: &GgufFile, math: Option<&ActivationStats>, general: Option<&ActivationStats>, opts: &SensitivityOptions, mut measure: M) -> Result<SensitivityReport, SensitivityError>
where
    M: FnMut(&Path) -> Result<T, String>,
    T: Into<Measure>,
{
    let journal_file = journal_path(&opts.output);
    let resuming = opts.resume && journal_file.is_file();
    let mut plan = crate::safety::OutputPlan::new("quantize sensitivity", opts.force).input(master_file.path()).file(&opts.output);
    if let Some(r) = &opts.report {
        plan = plan.file(r);
    }
    // The journal stays when the run fails or is stopped: a rerun with `resume` continues it.
    plan = if resuming { plan.input(&journal_file) } else { plan.file(&journal_file).kept() };
    plan.check().map_err(QuantizeError::from)?;
    let qopts = QuantizeOptions { mix: opts.mix, importance: opts.importance, allocation: None, protect: None, gptq: None, output: opts.output.clone(), force: opts.force, progress: false };
    check_stats(master_file, math, general, &qopts)?;
    let stock = quantmix::mix_types(master_file, opts.mix);
    let probes = probe_plan(master_file, &stock, opts.direction, &opts.only);
    if probes.is_empty() {
        let only = if opts.only.is_empty() { String::new() } else { format!(" among tensors named {}", opts.only.join(", ")) };
        return Err(SensitivityError::NothingToProbe { master: master_file.path().display().to_string(), mix: opts.mix.name(), direction: opts.direction, only });
    }
    let encoded = encode_stock(master_file, &stock, opts, math, general)?;
    let dir = opts.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let stock_bytes = alloc::total_bytes(master_file, &stock);
    let run = |types: &HashMap<String, GgmlType>, swap: Option<(usize, &[u8])>, what: &str, measure: &mut M| -> Result<Measure, SensitivityError> {
        let ex = Exchange { stock_bytes, bytes: alloc::total_bytes(master_file, types), ..Exchange::default() };
        let w = output_writer(master_file, &qopts, types, &format!("sensitivity probe: {what}"), &ex);
        let tmp = write_probe(&w, &dir, &encoded, swap)?;
        measure(tmp.path()).map(Into::into).map_err(|message| SensitivityError::Measure { what: what.to_string(), message })
    };
    let mut journal = open_journal(&journal_file, &journal_key(master_file, math, general, opts), resuming)?;
    let done: HashMap<String, Measured> = journal.entries.iter().map(|m| (m.tensor.clone(), m.clone())).collect();
    let mut measured = |tensor: &str, m: Result<Measure, SensitivityError>, base: Option<&[f64]>| -> Result<Measured, SensitivityError> {
        let m = m?;
        let entry = match base {
            None => Measured { tensor: String::new(), value: m.value, items: m.items, stderr: None },
            Some(b) => Measured { tensor: tensor.to_string(), value: m.value, items: Vec::new(), stderr: paired_stderr(&m.items, b) },
        };
        journal.append(&entry)?;
        Ok(entry)
    };
    let base = match done.get("") {
        Some(m) => m.clone(),
        None => measured("", run(&stock, None, "the stock mix", &mut measure), None)?,
    };
    let baseline = base.value;
    let bar = Progress::new("probing", probes.len() as u64, "tensors", opts.progress);
    let mut out = Vec::with_capacity(probes.len());
    for (i, ty) in probes {
        let t = &master_file.tensors[i];
        let m = match done.get(&t.name) {
            Some(m) => m.clone(),
            None => {
                let bytes = encode_tensor(master_file, t, ty, opts.importance, math, general, None, None)?;
                master_file.release(t);
                let mut types = stock.clone();
                types.insert(t.name.clone(), ty);
                measured(&t.name, run(&types, Some((i, &bytes)), &t.name, &mut measure), Some(&base.items))?
            }
        };
        let score = if opts.direction == Direction::Down { m.value - baseline } else { baseline - m.value };
        let (from, written) = (stock[&t.name], conservative(score, m.stderr, opts.direction, opts.noise_floor));
        let bytes_delta = alloc::bytes_as(t, ty) as i64 - alloc::bytes_as(t, from) as i64;
        out.push(Probe { tensor: t.name.clone(), stock_type: from.name().into(), probe_type: ty.name().into(), bytes_delta, value: m.value, score, stderr: m.stderr, written });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let report = SensitivityReport { master: master_file.path().to_path_buf(), mix: opts.mix.name().into(), importance: opts.importance.name(), direction: opts.direction, baseline, probes: out };
    let save = |path: &Path, text: &str| crate::atomic::write_bytes_atomic(path, text.as_bytes()).map_err(|source| SensitivityError::Write { path: path.to_path_buf(), source });
    save(&opts.output, &report.scores_json())?;
    if let Some(r) = &opts.report {
        save(r, &(serde_json::to_string_pretty(&report).expect("a report serializes") + "\n"))?;
    }
    drop(journal);
    std::fs::remove_file(&journal_file).map_err(|source| SensitivityError::Probe { dir: journal_file.clone(), source })?;
    Ok(report)
}

/// Every tensor of the master encoded at its `stock` type, kept for the probes.
fn encode_stock(master_file: &GgufFile, stock: &HashMap<String, GgmlType>, opts: &SensitivityOptions, math: Option<&ActivationStats>, general: Option<&ActivationStats>) -> Result<Vec<Vec<u8>>, SensitivityError> {
    let bar = Progress::new("encoding the stock mix", master_file.tensors.len() as u64, "tensors", opts.progress);
    let mut encoded = Vec::with_capacity(master_file.tensors.len());
    for t in &master_file.tensors {
        encoded.push(encode_tensor(master_file, t, stock[&t.name], opts.importance, math, general, None, None)?);
        master_file.release(t);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(encoded)
}

/// The number the file holds for a probe's `score`: with a standard error and z > 0, a step
/// down costs at least z·se and a step up gains its score less z·se (the module doc).
pub fn conservative(score: f64, stderr: Option<f64>, direction: Direction, z: f64) -> f64 {
    match stderr.filter(|_| z > 0.0) {
        Some(se) if direction == Direction::Down => score.max(z * se),
        Some(se) => score - z * se,
        None => score,
    }
}

/// The journal's key: everything a measure depends on besides the probe itself.
fn journal_key(master: &GgufFile, math: Option<&ActivationStats>, general: Option<&ActivationStats>, opts: &SensitivityOptions) -> String {
    let stats = |s: Option<&ActivationStats>| s.map_or("-".to_string(), |s| format!("{}:{}:{}:{:?}:{:?}", s.model_fingerprint, s.samples, s.tokens, s.datasets, s.seeds));
    let size = std::fs::metadata(master.path()).map_or(0, |m| m.len());
    format!(
        "master={} bytes={size} mix={} importance={} direction={:?} only={:?} math={} general={} measure={}",
        master.path().display(),
        opts.mix.name(),
        opts.importance.name(),
        opts.direction,
        opts.only,
        stats(math),
        stats(general),
        opts.measure_key
    )
}

/// Opens the journal: replayed when resuming, else started fresh.
fn open_journal(path: &Path, key: &str, resuming: bool) -> Result<Journal<Measured>, SensitivityError> {
    Ok(if resuming { Journal::resume(path, key, "sensitivity")? } else { Journal::create(path, key)? })
}

/// Writes the stock tensors `encoded` (tensor `swap.0` replaced by `swap.1`) under `w` to a
/// temporary file in `dir`, removed when the returned handle drops (or on a signal).
fn write_probe(w: &GgufWriter, dir: &Path, encoded: &[Vec<u8>], swap: Option<(usize, &[u8])>) -> Result<TempFile, SensitivityError> {
    let io = |source| SensitivityError::Probe { dir: dir.to_path_buf(), source };
    let mut tmp = TempFile::new_in(dir).map_err(io)?;
    let path = tmp.path().to_path_buf();
    let sink = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
    let written = w.write_to(&path, sink, |i, _spec, out| match swap {
        Some((j, bytes)) if j == i => out.write_all(bytes),
        _ => out.write_all(&encoded[i]),
    });
    let mut sink = written.map_err(|e| io(std::io::Error::other(e.to_string())))?;
    sink.flush().map_err(io)?;
    drop(sink);
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_parses_both_ways_and_names_the_choices() {
        assert_eq!("down".parse::<Direction>(), Ok(Direction::Down));
        assert_eq!("Up".parse::<Direction>(), Ok(Direction::Up));
        assert!("sideways".parse::<Direction>().unwrap_err().contains("down or up"));
    }

    #[test]
    fn paired_errors_and_the_noise_floor() {
        let base = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(paired_stderr(&[1.5, 2.5, 3.5, 4.5], &base), Some(0.0), "a constant shift is certain");
        let se = paired_stderr(&[1.0, 3.0, 3.0, 5.0], &base).unwrap();
        assert!((se - (1.0f64 / 3.0 / 4.0).sqrt()).abs() < 1e-12, "{se}");
        assert_eq!(paired_stderr(&[1.0], &[1.0]), None);
        assert_eq!(paired_stderr(&[1.0, 2.0], &base), None);
        assert_eq!(conservative(-0.01, Some(0.02), Direction::Down, 1.0), 0.02, "a demotion within the noise costs its noise");
        assert_eq!(conservative(0.05, Some(0.02), Direction::Down, 1.0), 0.05);
        assert!((conservative(0.05, Some(0.02), Direction::Up, 2.0) - 0.01).abs() < 1e-12);
        assert_eq!(conservative(-0.01, Some(0.02), Direction::Down, 0.0), -0.01, "z = 0: the raw score");
        assert_eq!(conservative(-0.01, None, Direction::Down, 1.0), -0.01);
        assert_eq!(Measure::of_items(vec![1.0, 3.0]), Measure { value: 2.0, items: vec![1.0, 3.0] });
    }
}
