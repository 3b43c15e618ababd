//! `mathneuro run`'s orchestration as one library function, [`run`]: calibrate both sets with one
//! loaded model → select and rewrite (`surgery::apply`) → deliver (split layout, Ollama;
//! `surgery::deliver`) → evaluate the pair ([`super::evaluate`]). The command only parses and
//! checks its arguments: [`Job::new`] checks the model and the delivery before any work, the
//! command checks the outputs, then [`run`] does the work.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;

use super::{Outcome, Sampling, calibrate_set};
use crate::calibrate::{CalibrateOptions, Calibrator};
use crate::data::calibration::CalibrationSet;
use crate::eval::EvalOptions;
use crate::ffi::llama::Model;
use crate::gguf::GgufFile;
use crate::stats::ActivationStats;
use crate::surgery::deliver::{DeliverOptions, Delivery};
use crate::surgery::{self, ApplyOptions, ApplyReport, side_path};

/// The model, the edit and its delivery, checked against each other.
#[derive(Debug)]
pub struct Job {
    model: PathBuf,
    apply: ApplyOptions,
    delivery: Delivery,
}

impl Job {
    /// Opens `model` (a GGUF path), checks that it is a model and that the delivery fits it, and
    /// adjusts `apply` to the delivery (a split output gets no Modelfile).
    pub fn new(model: PathBuf, mut apply: ApplyOptions, deliver: &DeliverOptions) -> anyhow::Result<Job> {
        let model_file = GgufFile::open(&model).with_context(|| format!("reading model {}", model.display()))?;
        crate::model::ensure_model(&model_file)?;
        let delivery = Delivery::new(&model_file, deliver, &apply)?;
        delivery.prepare(&mut apply);
        Ok(Job { model, apply, delivery })
    }

    /// The surgery options, as delivery adjusted them (for the output plan).
    pub fn apply_options(&self) -> &ApplyOptions {
        &self.apply
    }

    /// The STATS files written beside the output: (math, general).
    pub fn stats_paths(&self) -> (PathBuf, PathBuf) {
        (side_path(&self.apply.output, ".math-stats.gguf"), side_path(&self.apply.output, ".general-stats.gguf"))
    }
}

/// How the job calibrates and evaluates.
#[derive(Clone, Debug)]
pub struct Stages {
    /// The math calibration set.
    pub math: CalibrationSet,
    /// The general calibration set.
    pub general: CalibrationSet,
    /// Samples, seed and chat wrapping of both calibrations.
    pub sampling: Sampling,
    /// Tokens kept per calibration text.
    pub max_tokens: usize,
    /// CPU threads.
    pub threads: usize,
    /// Progress bars on stderr.
    pub progress: bool,
    /// Compare the output with the model after writing it: the evaluation and its directory
    /// (`None`: `OUT.eval/` beside the output as delivered).
    pub eval: Option<(EvalOptions, Option<PathBuf>)>,
}

/// A point of the run the caller may report on (the command prints there).
#[derive(Debug)]
pub enum Event<'a> {
    /// The output is written and delivered (before Ollama loads it).
    Written(&'a ApplyReport),
    /// The evaluation starts.
    Evaluating,
}

/// What the job produced.
#[derive(Debug)]
pub struct Finished {
    /// The surgery's report (the output's path as delivered).
    pub report: ApplyReport,
    /// The evaluation's markdown and its directory, when asked.
    pub evaluation: Option<(String, PathBuf)>,
}

/// Calibrates `set` and saves the STATS at `path`, with one line on stderr.
fn measure(cal: &mut Calibrator<'_>, set: &CalibrationSet, stages: &Stages, path: &Path) -> anyhow::Result<ActivationStats> {
    let Outcome::Finished(calibrated) = calibrate_set(cal, set, &stages.sampling, stages.progress, None, path)? else {
        unreachable!("a calibration without checkpoints always finishes")
    };
    let (stats, th) = (calibrated.stats, calibrated.throughput);
    eprintln!(
        "calibrated {}: {} samples, {} tokens in {:.1} s ({:.0} tok/s) → {}",
        set.name,
        stats.samples,
        stats.tokens,
        th.seconds,
        th.tokens_per_second(),
        path.display()
    );
    Ok(stats)
}

/// Runs the job: calibrate → select → rewrite → deliver → evaluate; `on` hears of each
/// [`Event`].
pub fn run(job: &Job, stages: &Stages, mut on: impl FnMut(Event<'_>)) -> anyhow::Result<Finished> {
    let t0 = Instant::now();
    let model = &job.model;
    // One loaded model serves both calibrations; it is dropped before the rewrite.
    let (math, general) = {
        let loaded = Model::load(model).with_context(|| format!("loading {}", model.display()))?;
        let opts = CalibrateOptions { threads: stages.threads, max_tokens: stages.max_tokens, parse_special: stages.sampling.chat, ..CalibrateOptions::default() };
        let mut cal = Calibrator::new(&loaded, &opts).with_context(|| format!("{}", model.display()))?;
        let (math_path, general_path) = job.stats_paths();
        let math = measure(&mut cal, &stages.math, stages, &math_path)?;
        let general = measure(&mut cal, &stages.general, stages, &general_path)?;
        (math, general)
    };

    let pool = rayon::ThreadPoolBuilder::new().num_threads(stages.threads).build().context("starting worker threads")?;
    let model_file = GgufFile::open(model).with_context(|| format!("reading model {}", model.display()))?;
    let report = pool.install(|| surgery::apply(&model_file, &math, &general, &job.apply)).with_context(|| format!("rewriting {}", model.display()))?;
    drop(model_file);
    let report = job.delivery.finish(report)?;
    on(Event::Written(&report));
    job.delivery.load_into_ollama(&report)?;
    eprintln!("calibrate + select + rewrite: {:.1} s", t0.elapsed().as_secs_f64());

    let evaluation = match &stages.eval {
        Some((options, dir)) => {
            on(Event::Evaluating);
            let dir = dir.clone().unwrap_or_else(|| side_path(&report.output, ".eval"));
            Some((super::evaluate(model, Some(super::Other::Model(&report.output)), options, &dir)?, dir))
        }
        None => None,
    };
    Ok(Finished { report, evaluation })
}
