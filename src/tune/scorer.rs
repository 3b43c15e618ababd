//! Evaluation for `tune`, chunk by chunk, with every finished chunk journaled: the per-item
//! scores of each (model, measure) are kept as a prefix of the split's item order and extended
//! on demand, so a candidate that survives a round is only evaluated on the items it has not
//! seen, and the base model's answers are computed once and reused against every candidate.

use std::collections::HashMap;
use std::time::Instant;

use super::journal::{Entry, Journal, JournalError, Measure};
use super::objective::Question;
use super::splits::Splits;
use crate::eval::engine::EngineError;
use crate::eval::requests::{Prefix, build_group};
use crate::eval::taskfile::{TaskFile, TaskItem};
use crate::eval::{EngineOptions, Gsm8kMode, Model, Session, gsm8k, mc};

/// Per-item scores: one (numerator, denominator) per metric.
pub type Scores = Vec<Vec<(f64, f64)>>;

/// Why scoring stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// llama.cpp failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The journal could not be written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The run was told to stop after this many new chunks (tests of `--resume`).
    #[error("stopped after {0} evaluation chunks as asked; rerun with --resume to continue")]
    Stopped(usize),
}

/// Evaluation settings shared by every chunk.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreSettings {
    /// llama.cpp context settings.
    pub engine: EngineOptions,
    /// Most new tokens per GSM8K answer.
    pub max_new_tokens: usize,
    /// GSM8K questions decoding at once.
    pub parallel: usize,
    /// Stop (with [`ScoreError::Stopped`]) after this many newly evaluated chunks.
    pub stop_after: Option<usize>,
    /// GSM8K prompts in this chat template (`tune --chat`).
    pub chat: Option<crate::chat::ChatFormat>,
}

/// The scores so far, the journal, and the measured speed of each measure.
#[derive(Debug)]
pub struct Scorer<'s> {
    splits: &'s Splits,
    settings: ScoreSettings,
    journal: Journal,
    scores: HashMap<(String, Measure), Scores>,
    /// Seconds and items evaluated per measure, journaled ones included (for the ETA).
    rates: HashMap<Measure, (f64, usize)>,
    chunks_run: usize,
}

impl<'s> Scorer<'s> {
    /// A scorer replaying `journal`'s entries.
    pub fn new(splits: &'s Splits, settings: ScoreSettings, journal: Journal) -> Scorer<'s> {
        let mut scores: HashMap<(String, Measure), Scores> = HashMap::new();
        let mut rates: HashMap<Measure, (f64, usize)> = HashMap::new();
        for e in &journal.entries {
            let have = scores.entry((e.model.clone(), e.measure)).or_default();
            // Chunks extend a prefix; anything else cannot come from this schedule.
            if e.start == have.len() {
                have.extend(e.scores.iter().cloned());
                let rate = rates.entry(e.measure).or_default();
                rate.0 += e.seconds;
                rate.1 += e.scores.len();
            }
        }
        Scorer { splits, settings, journal, scores, rates, chunks_run: 0 }
    }

    /// Items of `measure` already scored for `model`.
    pub fn have(&self, model: &str, measure: Measure) -> usize {
        self.scores.get(&(model.to_string(), measure)).map_or(0, Vec::len)
    }

    /// The first `n` scores of `model` on `measure`, which must be there (see [`Scorer::ensure`]).
    pub fn get(&self, model: &str, measure: Measure, n: usize) -> &[Vec<(f64, f64)>] {
        let all = &self.scores[&(model.to_string(), measure)];
        &all[..n.min(all.len())]
    }

    /// Items of `measure` scored over all models.
    pub fn total(&self, measure: Measure) -> usize {
        self.scores.iter().filter(|((_, m), _)| *m == measure).map(|(_, v)| v.len()).sum()
    }

    /// Items available for `measure` in its split.
    pub fn available(&self, measure: Measure) -> usize {
        match measure {
            Measure::DevCot | Measure::DevNll => self.splits.dev.questions(),
            Measure::DevGeneral => self.splits.dev.general.len(),
            Measure::TestCot => self.splits.test.questions(),
            Measure::TestGeneral => self.splits.test.general.len(),
        }
    }

    /// Seconds per item measured so far for `measure` (`None` before the first chunk).
    pub fn seconds_per_item(&self, measure: Measure) -> Option<f64> {
        self.rates.get(&measure).filter(|(_, n)| *n > 0).map(|(s, n)| s / *n as f64)
    }

    /// Scores `model` (named `id`) on items `have..n` of `measure`, as one chunk, and journals it.
    pub fn ensure(&mut self, id: &str, model: &Model, measure: Measure, n: usize) -> Result<(), ScoreError> {
        let n = n.min(self.available(measure));
        let start = self.have(id, measure);
        if start >= n {
            return Ok(());
        }
        if self.settings.stop_after.is_some_and(|k| self.chunks_run >= k) {
            return Err(ScoreError::Stopped(self.chunks_run));
        }
        let t0 = Instant::now();
        let new = self.evaluate(model, measure, start..n)?;
        let seconds = t0.elapsed().as_secs_f64();
        self.journal.append(&Entry { model: id.to_string(), measure, start, scores: new.clone(), seconds })?;
        let rate = self.rates.entry(measure).or_default();
        rate.0 += seconds;
        rate.1 += n - start;
        self.chunks_run += 1;
        self.scores.entry((id.to_string(), measure)).or_default().extend(new);
        Ok(())
    }

    fn evaluate(&self, model: &Model, measure: Measure, range: std::ops::Range<usize>) -> Result<Scores, EngineError> {
        let mut session = Session::new(model, &self.settings.engine)?;
        let (dev, test) = (&self.splits.dev, &self.splits.test);
        let mode = Gsm8kMode::Batched { parallel: self.settings.parallel };
        let items = match measure {
            Measure::DevCot | Measure::TestCot => {
                let side = if measure == Measure::DevCot { dev } else { test };
                if !side.task.is_empty() {
                    return self.generate(&mut session, &side.task[range]);
                }
                let records = &side.gsm8k[range];
                gsm8k::run_gsm8k_with(&mut session, records, records.len(), mode, self.settings.max_new_tokens, self.settings.chat.as_ref(), |_| {})?.items
            }
            Measure::DevNll if !dev.task.is_empty() => return gold_nll(&mut session, &dev.task[range]),
            Measure::DevNll => {
                let records = &dev.gsm8k[range];
                gsm8k::run_gsm8k_nll(&mut session, records, records.len(), |_| {})?.items
            }
            Measure::DevGeneral | Measure::TestGeneral => {
                let side = if measure == Measure::DevGeneral { dev } else { test };
                mc::run_items(&mut session, &side.general[range], false, |_| {})?.1
            }
        };
        Ok(items.into_iter().map(|i| i.scores).collect())
    }

    /// Answers and scores MATH or task-file questions (one kind per split).
    fn generate(&self, session: &mut Session<'_>, questions: &[Question]) -> Result<Scores, EngineError> {
        let (chat, max_new) = (self.settings.chat.as_ref(), self.settings.max_new_tokens);
        let mut math = Vec::new();
        let mut own = Vec::new();
        for q in questions {
            match q {
                Question::Math(i, r) => math.push((*i, r.clone())),
                Question::Own(_, question, answer) => own.push(TaskItem::Generate { question: question.clone(), answer: answer.clone() }),
            }
        }
        let mode = Gsm8kMode::Batched { parallel: self.settings.parallel };
        let mut items = Vec::new();
        if !math.is_empty() {
            items = crate::eval::math::run_math(session, &math, math.len(), mode, max_new, chat, |_| {})?.items;
        }
        if !own.is_empty() {
            let file = TaskFile { path: "task file".into(), items: own };
            let picked: Vec<usize> = (0..file.items.len()).collect();
            items.extend(crate::eval::taskfile::run_generation(session, &file, &picked, chat, max_new, self.settings.parallel, |_| {})?.items);
        }
        Ok(items.into_iter().map(|i| i.scores).collect())
    }
}

/// The gold-answer NLL of each question (see [`Question::nll_pair`]): (nll, tokens) per item.
fn gold_nll(session: &mut Session<'_>, questions: &[Question]) -> Result<Scores, EngineError> {
    let model = session.model();
    let none = Prefix::default();
    let groups: Vec<_> = questions
        .iter()
        .map(|q| {
            let (context, continuation) = q.nll_pair();
            build_group(model, &none, &context, &[continuation])
        })
        .collect::<Result<_, _>>()?;
    let scores = session.score(&[], &groups, |_| {})?;
    Ok(scores.iter().map(|s| vec![(-s[0].logprob(), s[0].token_logprobs.len() as f64)]).collect())
}
