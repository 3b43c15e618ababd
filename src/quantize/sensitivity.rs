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
}

/// One journaled measure: the stock mix (`tensor` empty) or one probe.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Measured {
    tensor: String,
    value: f64,
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
    /// The score written (see the module doc).
    pub score: f64,
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
        let map: BTreeMap<&str, f64> = self.probes.iter().map(|p| (p.tensor.as_str(), p.score)).collect();
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
pub fn measure_sensitivity<M>(master_file: &GgufFile, math: Option<&ActivationStats>, general: Option<&ActivationStats>, opts: &SensitivityOptions, mut measure: M) -> Result<SensitivityReport, SensitivityError>
where
    M: FnMut(&Path) -> Result<f64, String>,
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
    let qopts = QuantizeOptions { mix: opts.mix, importance: opts.importance, allocation: None, protect: None, output: opts.output.clone(), force: opts.force, progress: false };
    check_stats(master_file, math, general, &qopts)?;
    let stock = quantmix::mix_types(master_file, opts.mix);
    let probes = probe_plan(master_file, &stock, opts.direction, &opts.only);
    if probes.is_empty() {
        let only = if opts.only.is_empty() { String::new() } else { format!(" among tensors named {}", opts.only.join(", ")) };
        return Err(SensitivityError::NothingToProbe { master: master_file.path().display().to_string(), mix: opts.mix.name(), direction: opts.direction, only });
    }
    let bar = Progress::new("encoding the stock mix", master_file.tensors.len() as u64, "tensors", opts.progress);
    let mut encoded = Vec::with_capacity(master_file.tensors.len());
    for t in &master_file.tensors {
        encoded.push(encode_tensor(master_file, t, stock[&t.name], opts.importance, math, general, None)?);
        master_file.release(t);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let dir = opts.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let stock_bytes = alloc::total_bytes(master_file, &stock);
    let run = |types: &HashMap<String, GgmlType>, swap: Option<(usize, &[u8])>, what: &str, measure: &mut M| -> Result<f64, SensitivityError> {
        let ex = Exchange { stock_bytes, bytes: alloc::total_bytes(master_file, types), ..Exchange::default() };
        let w = output_writer(master_file, &qopts, types, &format!("sensitivity probe: {what}"), &ex);
        let tmp = write_probe(&w, &dir, &encoded, swap)?;
        measure(tmp.path()).map_err(|message| SensitivityError::Measure { what: what.to_string(), message })
    };
    let mut journal = open_journal(&journal_file, &journal_key(master_file, math, general, opts), resuming)?;
    let done: HashMap<String, f64> = journal.entries.iter().map(|m| (m.tensor.clone(), m.value)).collect();
    let mut measured = |tensor: &str, value: Result<f64, SensitivityError>| -> Result<f64, SensitivityError> {
        let value = value?;
        journal.append(&Measured { tensor: tensor.to_string(), value })?;
        Ok(value)
    };
    let baseline = match done.get("") {
        Some(&v) => v,
        None => measured("", run(&stock, None, "the stock mix", &mut measure))?,
    };
    let bar = Progress::new("probing", probes.len() as u64, "tensors", opts.progress);
    let mut out = Vec::with_capacity(probes.len());
    for (i, ty) in probes {
        let t = &master_file.tensors[i];
        let value = match done.get(&t.name) {
            Some(&v) => v,
            None => {
                let bytes = encode_tensor(master_file, t, ty, opts.importance, math, general, None)?;
                master_file.release(t);
                let mut types = stock.clone();
                types.insert(t.name.clone(), ty);
                measured(&t.name, run(&types, Some((i, &bytes)), &t.name, &mut measure))?
            }
        };
        let score = if opts.direction == Direction::Down { value - baseline } else { baseline - value };
        let from = stock[&t.name];
        let bytes_delta = alloc::bytes_as(t, ty) as i64 - alloc::bytes_as(t, from) as i64;
        out.push(Probe { tensor: t.name.clone(), stock_type: from.name().into(), probe_type: ty.name().into(), bytes_delta, value, score });
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
}
