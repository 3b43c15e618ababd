//! `mathneuro kld`: the KL-divergence metric (`eval::kld`) run on two model files over the
//! held-out text sets (`eval::kld_texts`), and its report (Markdown table, JSON).

use std::path::{Path, PathBuf};

use super::engine::{EngineOptions, Model, Session};
use super::kld::{self, DocStart, KldSummary, PairedDifference};
use super::kld_texts::{self, CalibrationDraw, KldTexts, Scoring};
use super::perplexity::Windows;
use crate::progress::Progress;

/// Which text sets, how many tokens, and the engine settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KldOptions {
    /// Text sets to score, `math` and/or `general`.
    pub sets: Vec<String>,
    /// Tokens scored per set.
    pub tokens: usize,
    /// The calibration draw the math texts avoid.
    pub draw: CalibrationDraw,
    /// Window geometry (context of the scored tokens).
    pub windows: Windows,
    /// What each document of the sets is read after.
    pub start: DocStart,
    /// Score this file instead of the sets, with llama-perplexity's protocol (`kld --text`).
    pub text: Option<PathBuf>,
    /// Measure this model too, on the same tokens, and pair the two (`kld --against`).
    pub against: Option<PathBuf>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Context sizes and threads.
    pub engine: EngineOptions,
    /// Draw a progress bar.
    pub progress: bool,
}

/// The default token budget per text set (the probe used 10 240).
pub const DEFAULT_TOKENS: usize = 10_240;

/// The text sets `kld` knows.
pub const SETS: [&str; 2] = ["math", "general"];

/// The numbers of one text set.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KldSet {
    /// `math` or `general`.
    pub name: String,
    /// Where its texts come from.
    pub source: String,
    /// Documents scored.
    pub documents: usize,
    /// The divergence.
    pub summary: KldSummary,
    /// With `--against`: that model's divergence on the same tokens, and the paired difference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against: Option<Against>,
}

/// The other model of `kld --against` on one text set.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Against {
    /// Its divergence from the master.
    pub summary: KldSummary,
    /// The measured model's KL minus its, token by token (negative: the measured model is
    /// closer to the master).
    pub difference: PairedDifference,
}

/// What `kld` measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KldReport {
    /// The reference model.
    pub master: PathBuf,
    /// The model compared with it.
    pub model: PathBuf,
    /// Window and stride in tokens.
    pub window: (usize, usize),
    /// What each document was read after (reports written before this field: `always`).
    #[serde(default)]
    pub start: DocStart,
    /// The model paired with `model` (`kld --against`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against: Option<PathBuf>,
    /// One entry per text set.
    pub sets: Vec<KldSet>,
}

/// Why `kld` failed.
#[derive(Debug, thiserror::Error)]
pub enum KldRunError {
    /// An unknown text set.
    #[error("unknown text set `{0}`: use math and/or general")]
    UnknownSet(String),
    /// A model did not load.
    #[error("loading {}: {source}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        source: crate::ffi::llama::LlamaError,
    },
    /// The texts could not be prepared.
    #[error(transparent)]
    Texts(#[from] kld_texts::TextsError),
    /// The measurement failed.
    #[error(transparent)]
    Kld(#[from] kld::KldError),
    /// A context could not be opened.
    #[error(transparent)]
    Engine(#[from] super::engine::EngineError),
}

/// Measures KL(master ‖ model) on each text set of `opts`.
pub fn measure(master: &Path, model: &Path, opts: &KldOptions) -> Result<KldReport, KldRunError> {
    if let Some(bad) = opts.sets.iter().find(|s| !SETS.contains(&s.as_str())) {
        return Err(KldRunError::UnknownSet(bad.clone()));
    }
    let load = |p: &Path| Model::load(p).map_err(|source| KldRunError::Load { path: p.to_path_buf(), source });
    let (m, q) = (load(master)?, load(model)?);
    let mut texts: Vec<KldTexts> = Vec::new();
    if let Some(path) = &opts.text {
        texts.push(kld_texts::text_file(&m, path, opts.windows.window, opts.tokens)?);
    }
    for set in opts.sets.iter().filter(|_| opts.text.is_none()) {
        texts.push(match set.as_str() {
            "math" => kld_texts::math(&m, &opts.data_dir, opts.draw, opts.tokens)?,
            _ => kld_texts::general(&m, &opts.data_dir, opts.tokens)?,
        });
    }
    let a = opts.against.as_deref().map(load).transpose()?;
    let (mut sm, mut sq) = (Session::new(&m, &opts.engine)?, Session::new(&q, &opts.engine)?);
    let mut sa = a.as_ref().map(|a| Session::new(a, &opts.engine)).transpose()?;
    let mut sets = Vec::new();
    for t in texts {
        let bar = Progress::new(&format!("kld {}", t.name), t.docs.len() as u64, "documents", opts.progress);
        let mut rows = match (t.scoring, sa.as_mut()) {
            (Scoring::Windows, None) => vec![kld::divergences(&mut sm, &mut sq, &t.docs, opts.windows, opts.start, |d| bar.set_position(d as u64))?],
            (Scoring::Windows, Some(sa)) => kld::divergences_of_each(&mut sm, &mut [&mut sq, sa], &t.docs, opts.windows, opts.start, |d| bar.set_position(d as u64))?,
            (Scoring::SecondHalf, sa) => {
                let mut r = vec![kld::chunk_divergences(&mut sm, &mut sq, &t.docs, |d| bar.set_position(d as u64))?];
                if let Some(sa) = sa {
                    r.push(kld::chunk_divergences(&mut sm, sa, &t.docs, |_| {})?);
                }
                r
            }
        };
        bar.finish_and_clear();
        let against = rows.get(1).map(|b| Against { summary: kld::summarize(b), difference: kld::paired_difference(b, &rows[0]) });
        let summary = kld::summarize(&rows.swap_remove(0));
        sets.push(KldSet { name: t.name.to_string(), source: t.source, documents: t.docs.len(), summary, against });
    }
    Ok(KldReport { master: master.to_path_buf(), model: model.to_path_buf(), window: (opts.windows.window, opts.windows.stride), start: opts.start, against: opts.against.clone(), sets })
}

/// The math KLD of many models against one master on the same texts (the measured-sensitivity
/// stage's measure): the master is loaded and the texts are tokenized once.
pub struct KldProbe {
    master: Model,
    texts: KldTexts,
    windows: Windows,
    start: DocStart,
    engine: EngineOptions,
    /// The master's rows for the scored tokens, decoded at the first measure and kept (a row
    /// of vocabulary floats per scored token), so each later probe decodes only its model.
    rows: std::cell::OnceCell<Vec<Vec<f32>>>,
}

impl KldProbe {
    /// `tokens` of held-out GSM8K train text taken from the end of the held-out records
    /// (`kld_texts::math_tail`), so they are not the texts `measure` scores by default.
    pub fn math_tail(master: &Path, data_dir: &Path, draw: CalibrationDraw, tokens: usize, windows: Windows, start: DocStart, engine: EngineOptions) -> Result<KldProbe, KldRunError> {
        let m = Model::load(master).map_err(|source| KldRunError::Load { path: master.to_path_buf(), source })?;
        let texts = kld_texts::math_tail(&m, data_dir, draw, tokens)?;
        Ok(KldProbe { master: m, texts, windows, start, engine, rows: std::cell::OnceCell::new() })
    }

    /// Where the texts come from, and how many tokens are scored.
    pub fn describe(&self) -> String {
        // Only the non-default start is named, so journals keyed by this text still resume.
        let start = if self.start == DocStart::Vocab { ", start token as the vocabulary asks" } else { "" };
        format!("{} ({} tokens, window {}, stride {}{start})", self.texts.source, self.texts.tokens(), self.windows.window, self.windows.stride)
    }

    /// KL(master ‖ model) of each scored token, in the texts' order: the same numbers as
    /// [`kld::divergences`] in lockstep, with the master decoded only at the first call (probes
    /// of one master pair token by token).
    pub fn token_divergences(&self, model: &Path) -> Result<Vec<f64>, KldRunError> {
        let q = Model::load(model).map_err(|source| KldRunError::Load { path: model.to_path_buf(), source })?;
        if self.rows.get().is_none() {
            let mut sm = Session::new(&self.master, &self.engine)?;
            let _ = self.rows.set(kld::master_rows(&mut sm, &self.texts.docs, self.windows, self.start)?);
        }
        let master_rows = self.rows.get().expect("set above");
        let mut sq = Session::new(&q, &self.engine)?;
        let rows = kld::divergences_from_rows(master_rows, self.start.token(&self.master), &mut sq, &self.texts.docs, self.windows)?;
        Ok(rows.iter().map(|d| d.kl).collect())
    }
}

impl KldReport {
    /// The report as a Markdown table, one row per text set.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "KL(P_master ‖ P_model): master {}, model {} (window {}, stride {}{})\n\n",
            self.master.display(),
            self.model.display(),
            self.window.0,
            self.window.1,
            if self.start == DocStart::Vocab { "; documents start with the start token only where the vocabulary adds one" } else { "" }
        );
        s.push_str("| text | tokens | mean KLD (95 % CI) | median | p99 | max | top-1 same | NLL master | NLL model |\n|---|---|---|---|---|---|---|---|---|\n");
        for set in &self.sets {
            let k = &set.summary;
            s.push_str(&format!(
                "| {} | {} | {:.6} ({:.6}–{:.6}) | {:.6} | {:.6} | {:.6} | {:.2} % | {:.4} | {:.4} |\n",
                set.name,
                k.tokens,
                k.mean,
                k.ci95.0,
                k.ci95.1,
                k.median,
                k.p99,
                k.max,
                100.0 * k.top1_agreement,
                k.master_nll,
                k.model_nll
            ));
        }
        for (set, a) in self.sets.iter().filter_map(|set| set.against.as_ref().map(|a| (set, a))) {
            let d = &a.difference;
            s.push_str(&format!(
                "\n{}: minus {} ({:.6} alone): {:+.6} ({:+.6} to {:+.6}) nats, {}, paired over {} tokens",
                set.name,
                self.against.as_deref().unwrap_or(Path::new("?")).display(),
                a.summary.mean,
                d.mean,
                d.ci95.0,
                d.ci95.1,
                if a.summary.mean > 0.0 { format!("{:+.1} %", 100.0 * d.mean / a.summary.mean) } else { "— %".to_string() },
                d.tokens
            ));
        }
        for set in &self.sets {
            s.push_str(&format!("\n{}: {}", set.name, set.source));
        }
        s.push('\n');
        s
    }
}
