//! Adds up slices of one protocol run (`protocol --gsm8k-range`, evaluated on different
//! machines) into the report one run over all their questions would give. Every GSM8K number of
//! the protocol depends only on the paired 2×2 tables (`protocol::PairTable`), so slices are
//! combined by adding tables — after checking that they are slices of the *same* run: the same
//! base and edits (by sha256), the same answer-deciding conditions, the same protocol settings,
//! and disjoint ranges. The paper's row comes from the slice that starts at the first question.
//! A slice is read as a [`Slice`]: the parts of its protocol.json the sum needs (its derived
//! numbers, which may be NaN and so `null` in JSON, are computed again from the tables).

use std::path::PathBuf;

use serde::Deserialize;

use super::protocol::{PairTable, ProtocolAnalysis, ProtocolSettings, analyse, paper_average};
use super::protocol_report::{Coverage, EditResult, ProtocolReport};
use super::report::TaskComparison;

/// One metric of one edit in a slice: its tables.
#[derive(Clone, Debug, Deserialize)]
pub struct SliceMetric {
    /// The metric.
    pub metric: String,
    /// Every question of the slice.
    pub full_table: PairTable,
    /// The paper's questions, when the slice starts at the first one.
    pub paper_table: Option<PairTable>,
}

/// One edit in a slice.
#[derive(Clone, Debug, Deserialize)]
pub struct SliceEdit {
    /// The edited model.
    pub model: PathBuf,
    /// Its sha256.
    #[serde(default)]
    pub sha256: String,
    /// Per metric.
    pub gsm8k: Vec<SliceMetric>,
    /// The general tasks, when this slice ran them.
    pub general: Vec<TaskComparison>,
    /// Wall seconds.
    pub wall_seconds: f64,
}

/// What combining needs of one slice's protocol.json.
#[derive(Clone, Debug, Deserialize)]
pub struct Slice {
    /// The base model.
    pub base: PathBuf,
    /// Wall seconds of the base.
    pub base_wall_seconds: f64,
    /// Items per general task, when this slice ran them.
    pub general_n: Option<usize>,
    /// Protocol settings.
    pub settings: ProtocolSettings,
    /// Per edit.
    pub edits: Vec<SliceEdit>,
    /// Which questions, under which conditions.
    #[serde(flatten)]
    pub coverage: Coverage,
}

/// Why slices cannot be combined.
#[derive(Debug, thiserror::Error)]
pub enum CombineError {
    /// Fewer than two slices.
    #[error("give at least two slice reports to combine (got {0})")]
    TooFew(usize),
    /// A report is not a slice.
    #[error("{0}: not a slice (it was not run with --gsm8k-range, or is itself combined)")]
    NotASlice(PathBuf),
    /// A slice disagrees with the first on what was evaluated.
    #[error("{path}: not a slice of the same run as {first}: its {what} differs")]
    Differs {
        /// The slice.
        path: PathBuf,
        /// The first slice.
        first: PathBuf,
        /// What differs.
        what: &'static str,
    },
    /// Two slices share questions.
    #[error("{a} ({ra:?}) and {b} ({rb:?}) overlap: a question would count twice")]
    Overlap {
        /// One slice.
        a: PathBuf,
        /// Its range.
        ra: (usize, usize),
        /// The other.
        b: PathBuf,
        /// Its range.
        rb: (usize, usize),
    },
    /// Several slices evaluated the general tasks.
    #[error("{0} and {1} both hold general-task results; evaluate the general tasks in one slice only")]
    GeneralTwice(PathBuf, PathBuf),
}

/// A slice read from `.0`, with its range.
type Ranged = (PathBuf, Slice, (usize, usize));

fn same<T: PartialEq>(first: &(PathBuf, Slice), other: &(PathBuf, Slice), what: &'static str, f: impl Fn(&Slice) -> T) -> Result<(), CombineError> {
    if f(&first.1) == f(&other.1) { Ok(()) } else { Err(CombineError::Differs { path: other.0.clone(), first: first.0.clone(), what }) }
}

/// Refuses slices that are not disjoint parts of one run; returns them sorted by range.
fn check(mut slices: Vec<(PathBuf, Slice)>) -> Result<Vec<Ranged>, CombineError> {
    if slices.len() < 2 {
        return Err(CombineError::TooFew(slices.len()));
    }
    for (p, r) in &slices {
        if r.coverage.gsm8k_range.is_none() || !r.coverage.combined_from.is_empty() {
            return Err(CombineError::NotASlice(p.clone()));
        }
    }
    slices.sort_by_key(|(_, r)| r.coverage.gsm8k_range);
    let first = &slices[0];
    for s in &slices[1..] {
        same(first, s, "base model (sha256)", |r| r.coverage.base_sha256.clone())?;
        same(first, s, "set of edited models (sha256, in order)", |r| r.edits.iter().map(|e| e.sha256.clone()).collect::<Vec<_>>())?;
        same(first, s, "GSM8K conditions (data, prompt, decoding, threads)", |r| r.coverage.gsm8k_conditions.clone())?;
        same(first, s, "protocol settings (paper N, subsets, resamples, seed)", |r| r.settings)?;
        same(first, s, "GSM8K test file size", |r| r.coverage.gsm8k_available)?;
        same(first, s, "GSM8K metrics", |r| r.edits.iter().map(|e| e.gsm8k.iter().map(|a| a.metric.clone()).collect::<Vec<_>>()).collect::<Vec<_>>())?;
    }
    let ranged: Vec<_> = slices.into_iter().map(|(p, r)| {
        let range = r.coverage.gsm8k_range.unwrap_or_default();
        (p, r, range)
    }).collect();
    for w in ranged.windows(2) {
        if w[1].2.0 < w[0].2.1 {
            return Err(CombineError::Overlap { a: w[0].0.clone(), ra: w[0].2, b: w[1].0.clone(), rb: w[1].2 });
        }
    }
    let with_general: Vec<&PathBuf> = ranged.iter().filter(|(_, r, _)| r.general_n.is_some()).map(|(p, _, _)| p).collect();
    if let [a, b, ..] = with_general[..] {
        return Err(CombineError::GeneralTwice(a.clone(), b.clone()));
    }
    Ok(ranged)
}

/// One edit's metric analysed over all slices: tables added, the paper slice from the slice
/// that starts at the first question.
fn combined_analysis(slices: &[Ranged], edit: usize, metric: usize) -> ProtocolAnalysis {
    let first = &slices[0].1;
    let a0 = &first.edits[edit].gsm8k[metric];
    let full = slices.iter().fold(PairTable::default(), |acc, (_, r, _)| acc.add(&r.edits[edit].gsm8k[metric].full_table));
    let paper = slices.iter().find(|(_, _, range)| range.0 == 0).and_then(|(_, r, _)| r.edits[edit].gsm8k[metric].paper_table);
    analyse(&a0.metric, &full, paper.as_ref(), &first.settings)
}

/// The report of all slices together (named by the paths they were read from).
pub fn combine(slices: Vec<(PathBuf, Slice)>) -> Result<ProtocolReport, CombineError> {
    let slices = check(slices)?;
    let first = &slices[0].1;
    let general_slice = slices.iter().find(|(_, r, _)| r.general_n.is_some()).map(|(_, r, _)| r);
    let edits: Vec<EditResult> = (0..first.edits.len())
        .map(|k| EditResult {
            model: first.edits[k].model.clone(),
            gsm8k: (0..first.edits[k].gsm8k.len()).map(|m| combined_analysis(&slices, k, m)).collect(),
            general: general_slice.map_or_else(Vec::new, |r| r.edits[k].general.clone()),
            wall_seconds: slices.iter().map(|(_, r, _)| r.edits[k].wall_seconds).sum(),
            sha256: first.edits[k].sha256.clone(),
        })
        .collect();
    let paper_average = if edits.len() >= 2 {
        (0..edits[0].gsm8k.len())
            .filter_map(|m| edits.iter().map(|e| e.gsm8k[m].paper_table).collect::<Option<Vec<_>>>().and_then(|ts| paper_average(&edits[0].gsm8k[m].metric, &ts)))
            .collect()
    } else {
        Vec::new()
    };
    Ok(ProtocolReport {
        base: first.base.clone(),
        base_wall_seconds: slices.iter().map(|(_, r, _)| r.base_wall_seconds).sum(),
        gsm8k_n: edits.first().and_then(|e| e.gsm8k.first()).map_or(0, |a| a.full.n),
        general_n: general_slice.and_then(|r| r.general_n),
        settings: first.settings,
        edits,
        paper_average,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        coverage: Coverage {
            gsm8k_range: None,
            combined_from: slices.iter().map(|(p, _, range)| (p.clone(), *range)).collect(),
            ..first.coverage.clone()
        },
    })
}
