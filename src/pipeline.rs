//! The method's stages as one library pipeline, which the commands only parametrise:
//! [`calibrate_set`] draws a set's texts, measures them (with optional checkpoints) and returns
//! the STATS with the provenance every STATS file carries; `crate::surgery::apply` selects and
//! rewrites; [`evaluate`] evaluates one model or compares two and writes the reports; [`run::run`]
//! chains them for `mathneuro run` (calibrate → select → rewrite → deliver → evaluate).
//! `mathneuro calibrate`, `mathneuro run`, `tune` and the experiments calibrate through here;
//! `mathneuro eval` and `run --eval` evaluate through here.

pub mod hessians;
pub mod run;

pub use hessians::{HessianPasses, capture_hessians};

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;

use crate::calibrate::accumulate::Accumulator;
use crate::calibrate::sample::{self, Shard};
use crate::calibrate::{Calibrator, Throughput, Tokenized, checkpoint};
use crate::data::calibration::CalibrationSet;
use crate::eval::{self, EvalOptions};
use crate::progress::Progress;
use crate::stats::{ActivationStats, Provenance};

/// Which texts of a set a calibration measures.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// Samples (texts) drawn.
    pub samples: usize,
    /// Sampling seed.
    pub seed: u64,
    /// Draw with replacement (as the reference does).
    pub replacement: bool,
    /// Measure only this shard of the drawn samples.
    pub shard: Option<Shard>,
    /// Wrap each text in the model's chat template.
    pub chat: bool,
}

impl Sampling {
    /// `samples` draws of `seed`, with replacement, all of them, plain texts.
    pub fn new(samples: usize, seed: u64) -> Sampling {
        Sampling { samples, seed, replacement: true, shard: None, chat: false }
    }

    /// The texts to measure: the seeded draw, this shard of it, wrapped in the chat template of
    /// the model at `model` when `chat`.
    pub fn texts(&self, set: &CalibrationSet, model: &Path) -> anyhow::Result<Vec<String>> {
        let drawn = sample::draw(set.texts.len(), self.samples, self.seed, self.replacement).with_context(|| format!("data set {}", set.name))?;
        let drawn = match self.shard {
            Some(s) => s.select(&drawn),
            None => drawn,
        };
        crate::chat::calibration_texts(set, &drawn, self.chat, model)
    }
}

/// Where a long calibration saves its progress, and when.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoints {
    /// The checkpoint file.
    pub path: PathBuf,
    /// Samples between checkpoints (0: none).
    pub every: usize,
    /// Continue from `path` when it exists.
    pub resume: bool,
    /// Stop once this many samples are measured and checkpointed (simulates an interruption).
    pub stop_after: Option<usize>,
    /// The settings a checkpoint must match to be resumed, besides the model, the texts and
    /// `every`.
    pub settings: String,
}

/// Samples measured between two checkpoints of `n` samples: `every`, or all of them at once
/// when there are no checkpoints (`every` = 0).
fn chunk_size(every: usize, n: usize) -> usize {
    if every == 0 { n.max(1) } else { every }
}

/// A finished calibration.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibrated {
    /// The statistics (naming the set and the seed).
    pub stats: ActivationStats,
    /// How they were measured.
    pub provenance: Provenance,
    /// Tokens measured by this call (not those resumed from a checkpoint) and the time taken.
    pub throughput: Throughput,
}

impl Calibrated {
    /// Writes the STATS file with its provenance.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        self.stats.save_calibrated(path, &self.provenance).with_context(|| format!("writing {}", path.display()))
    }
}

/// How [`calibrate_set`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every sample measured.
    Finished(Calibrated),
    /// Stopped at `Checkpoints::stop_after`, the checkpoint holding `done` of `total` samples.
    Stopped {
        /// Samples measured and checkpointed.
        done: usize,
        /// Samples in all.
        total: usize,
    },
}

/// Calibrates `cal`'s model on the `sampling` texts of `set`, with a progress bar when
/// `progress`, saving checkpoints as `checkpoints` says, and writes the STATS file `output`
/// (then removes the checkpoint).
pub fn calibrate_set(cal: &mut Calibrator<'_>, set: &CalibrationSet, sampling: &Sampling, progress: bool, checkpoints: Option<&Checkpoints>, output: &Path) -> anyhow::Result<Outcome> {
    let texts = sampling.texts(set, cal.model().path())?;
    if texts.len() >= 10_000 {
        // Tokenizing this many texts takes a while by itself; say what is happening.
        eprintln!("{}: {} texts drawn; tokenizing", set.name, texts.len());
    }
    let tok = cal.tokenize(&texts)?;
    let max_tokens = cal.options().max_tokens;
    if tok.truncated > 0 {
        eprintln!("note: {} of {} texts truncated to {} tokens ({} tokens dropped)", tok.truncated, texts.len(), max_tokens, tok.tokens_dropped);
    }
    let mut acc = cal.new_accumulator();
    let mut run = Run { cal, set, tok: &tok, key: String::new(), start: 0 };
    if let Some(c) = checkpoints {
        let every = chunk_size(c.every, texts.len());
        // The model's content, not its tensor table: another model with the same shapes, or
        // this one rewritten in place, does not resume this checkpoint (issue 27 case 10).
        let model_sha = crate::eval::content::file_sha256(run.cal.model().path())?;
        run.key = format!("model={} model_sha256={model_sha} data={} texts_sha256={} {} every={every}", run.cal.fingerprint(), set.name, texts_hash(&texts), c.settings);
        run.resume(c, &mut acc)?;
    }
    let Some(throughput) = run.measure(&mut acc, progress, checkpoints)? else {
        return Ok(Outcome::Stopped { done: run.start, total: texts.len() });
    };
    let mut stats = acc.totals.to_stats(cal.shapes(), cal.fingerprint());
    stats.datasets = vec![set.name.clone()];
    stats.seeds = vec![sampling.seed];
    let provenance = Provenance {
        template: crate::chat::template_note(&set.template, sampling.chat),
        replacement: sampling.replacement,
        max_tokens,
        truncated: tok.truncated,
        pack: cal.requested_pack(),
        shard: sampling.shard.map_or_else(|| "0/1".to_string(), |s| s.to_string()),
        head_skipped: cal.head_skipped(),
        start_token: cal.options().start_token,
    };
    let calibrated = Calibrated { stats, provenance, throughput };
    calibrated.save(output)?;
    if let Some(c) = checkpoints.filter(|c| c.path.exists()) {
        std::fs::remove_file(&c.path).with_context(|| format!("removing checkpoint {}", c.path.display()))?;
    }
    Ok(Outcome::Finished(calibrated))
}

/// One calibration in progress: the tokenized texts and how far they are measured.
struct Run<'c, 'm, 'a> {
    cal: &'c mut Calibrator<'m>,
    set: &'a CalibrationSet,
    tok: &'a Tokenized,
    /// The checkpoint key (empty without checkpoints).
    key: String,
    /// Texts measured so far.
    start: usize,
}

impl Run<'_, '_, '_> {
    /// Takes up the checkpoint's totals when resuming.
    fn resume(&mut self, c: &Checkpoints, acc: &mut Accumulator) -> anyhow::Result<()> {
        if c.resume && c.path.exists() {
            let (totals, done) = checkpoint::load(&c.path, &self.key, self.cal.shapes())?;
            acc.totals = totals;
            self.start = done.min(self.tok.texts.len());
            eprintln!("resuming after {} of {} samples from {}", self.start, self.tok.texts.len(), c.path.display());
        }
        Ok(())
    }

    /// Measures the texts from `start` on, in chunks between checkpoints. `None`: stopped at
    /// `stop_after`.
    fn measure(&mut self, acc: &mut Accumulator, progress: bool, checkpoints: Option<&Checkpoints>) -> anyhow::Result<Option<Throughput>> {
        let n = self.tok.texts.len();
        let chunk = chunk_size(checkpoints.map_or(0, |c| c.every), n);
        announce(&self.set.name, n, self.tok.total_tokens());
        let bar = Progress::new(&format!("calibrating {}", self.set.name), self.tok.total_tokens() as u64, "tok", progress);
        bar.resume_at(self.tok.texts[..self.start].iter().map(|t| t.len() as u64).sum());
        let t0 = Instant::now();
        let mut measured = Throughput::default();
        while self.start < n {
            let end = (self.start + chunk).min(n);
            let th = self.cal.measure(acc, &self.tok.slice(self.start..end), &mut |k| bar.inc(k as u64)).with_context(|| format!("calibrating {} on {}", self.cal.model().path().display(), self.set.name))?;
            measured.tokens += th.tokens;
            measured.decodes += th.decodes;
            self.start = end;
            let Some(c) = checkpoints.filter(|c| c.every > 0 && end < n) else { continue };
            checkpoint::save(&c.path, &self.key, end, self.cal.shapes(), &acc.totals).with_context(|| format!("writing checkpoint {}", c.path.display()))?;
            if c.stop_after.is_some_and(|k| end >= k) {
                bar.finish_and_clear();
                return Ok(None);
            }
        }
        bar.finish_and_clear();
        measured.seconds = t0.elapsed().as_secs_f64();
        Ok(Some(measured))
    }
}

/// Says what a calibration will cost before it starts: texts and tokens now; the progress
/// display adds the measured rate and ETA after its warm-up.
fn announce(set: &str, texts: usize, tokens: usize) {
    eprintln!("calibrating {set}: {texts} texts, {tokens} tokens");
}

/// A sha256 of the sampled texts in order: a checkpoint resumes only into the same texts, not
/// into a data file of the same name whose contents changed.
pub fn texts_hash(texts: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for t in texts {
        h.update((t.len() as u64).to_le_bytes());
        h.update(t.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The second side of a paired evaluation.
#[derive(Clone, Copy, Debug)]
pub enum Other<'a> {
    /// A model file, evaluated after the base.
    Model(&'a Path),
    /// The `--out` directory of a finished evaluation of one model (`eval --compare-run`),
    /// read back instead of evaluated.
    Run(&'a Path),
}

/// Evaluates the model at `base` (and compares `other` with it on the same items), writes
/// report.json, report.md and the per-item files into `out`, and returns the Markdown report.
/// Both models are read by the GGUF reader first, so a bad `other` fails now, with the reader's
/// reason, not after the whole base evaluation; a finished run is read and checked first too.
pub fn evaluate(base: &Path, other: Option<Other<'_>>, options: &EvalOptions, out: &Path) -> anyhow::Result<String> {
    let other_model = match other {
        Some(Other::Model(m)) => Some(m),
        _ => None,
    };
    for model in std::iter::once(base).chain(other_model) {
        crate::model::check_loadable(model).with_context(|| format!("cannot evaluate {}", model.display()))?;
    }
    let finished = match other {
        Some(Other::Run(dir)) => Some(eval::finished::read(dir, &options.all_tasks(), options).with_context(|| format!("--compare-run {}", dir.display()))?),
        _ => None,
    };
    let mut options = options.clone();
    options.items_dir = Some(eval::outputs::items_dir(out, eval::outputs::Side::Base));
    let base_report = eval::evaluate(base, &options).with_context(|| format!("evaluating {}", base.display()))?;
    let other_report = match (other_model, finished) {
        (Some(other), _) => {
            options.items_dir = Some(eval::outputs::items_dir(out, eval::outputs::Side::Other));
            eval::evaluate(other, &options).with_context(|| format!("evaluating {}", other.display()))?
        }
        (None, Some(report)) => report,
        (None, None) => {
            eval::write_outputs(out, &base_report, None)?;
            return Ok(eval::report::render_markdown(&base_report));
        }
    };
    let comparison = eval::compare_reports(&base_report, &other_report, options.bootstrap, options.seed)?;
    eval::write_outputs(out, &base_report, Some(&comparison))?;
    Ok(eval::report::render_comparison_markdown(&comparison))
}
