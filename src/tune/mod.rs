//! `tune`: searches for an edit that makes a model better at math, on dev data only, and shows
//! the chosen edit once on held-out test questions — or says plainly that none beat the base.
//!
//! Calibrate once (STATS cached in the work directory); every candidate (K, s, where — see
//! `space`) is then a selection (one per K, restricted to the region), a rewrite and an
//! evaluation. The splits (`splits`) cannot leak and are checked before anything is scored. The
//! search (`search`) is successive halving on GSM8K CoT accuracy paired against the base on the
//! same dev questions, after a cheap gold-solution NLL guard that discards damaging candidates;
//! the winner must also keep general dev accuracy (MMLU dev, ARC-Easy dev half) within a stated
//! tolerance. Every finished evaluation chunk is journaled (`journal`, `scorer`), so `--resume`
//! continues an interrupted run and ends where an uninterrupted one would. `report` writes
//! report.json, report.md and the SVG of the search.

pub mod journal;
pub mod objective;
pub mod report;
pub mod scorer;
pub mod search;
pub mod space;
pub mod splits;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;

use crate::calibrate::{CalibrateOptions, Calibrator};
use crate::data::calibration::{self, CalibrationSet};
use crate::eval::EngineOptions;
use crate::experiments::stats_cache;
use crate::ffi::llama::Model;
use crate::gguf::GgufFile;
use crate::select::{Method, SelectOptions, Selection};
use crate::stats::ActivationStats;
use crate::surgery::{ApplyOptions, Change};
use journal::{Journal, Measure};
pub use objective::Objective;
use report::{CandidateRecord, Comparison, RoundScore, TuneReport, Wall};
use scorer::{ScoreSettings, Scorer};
use search::Round;
use space::{Candidate, Space};
use splits::{SplitSizes, Splits};

/// Which GSM8K metric the search optimises: flexible-extract (the last number of the answer),
/// so a candidate is rewarded for getting the arithmetic right rather than for the phrase
/// "The answer is N."; strict-match is reported beside it.
pub const OBJECTIVE: usize = 1;

/// Everything `tune` needs.
#[derive(Clone, Debug)]
pub struct TuneOptions {
    /// The base GGUF model (never written).
    pub model: PathBuf,
    /// Where the best model goes.
    pub output: PathBuf,
    /// Work directory: STATS, journal, candidate files, report.
    pub work: PathBuf,
    /// The data directory (resolved).
    pub data_dir: PathBuf,
    /// Math calibration set (as `calibrate --data`).
    pub math: String,
    /// General calibration set.
    pub general: String,
    /// Calibration samples per set (with replacement).
    pub samples: usize,
    /// Tokens kept per calibration text.
    pub max_tokens: usize,
    /// Seed of calibration sampling, splits and candidate draw.
    pub seed: u64,
    /// Candidates searched (the paper's ×1.1 K=5 % is always the first).
    pub candidates: usize,
    /// Candidate dev answers the search may spend, over all rounds.
    pub budget: usize,
    /// Successive-halving rounds.
    pub rounds: usize,
    /// Dev questions of the NLL guard.
    pub guard_items: usize,
    /// A candidate whose gold-solution NLL per token rises by more than this is discarded.
    pub guard_nll: f64,
    /// Dev items per general task (MMLU dev, ARC-Easy dev half).
    pub general_items: usize,
    /// The winner's general dev accuracy may fall by at most this much (absolute).
    pub general_tolerance: f64,
    /// Dev answers the winner must get right beyond the base's (on the last round's questions).
    pub min_gain: i64,
    /// GSM8K test questions (`None`: all).
    pub test_items: Option<usize>,
    /// Test items per general task (MMLU test, ARC-Easy test half).
    pub test_general_items: usize,
    /// Most new tokens per GSM8K answer.
    pub max_new_tokens: usize,
    /// GSM8K questions decoding at once.
    pub parallel: usize,
    /// CPU threads.
    pub threads: usize,
    /// Continue from the journal in the work directory.
    pub resume: bool,
    /// Overwrite an existing output and start the work directory over.
    pub force: bool,
    /// Stop after this many new evaluation chunks (tests of `--resume`).
    pub stop_after: Option<usize>,
    /// Print a line per candidate and stage (stderr).
    pub verbose: bool,
    /// Calibration texts and the objective's prompts in the model's chat template (instruct
    /// models).
    pub chat: bool,
    /// The task the search optimises (GSM8K by default).
    pub objective: Objective,
}

/// The fewest dev questions a search round uses: below this a round says nothing.
const MIN_ROUND_ITEMS: usize = 4;
/// GSM8K test questions per journaled chunk (a resume loses at most one).
const TEST_CHUNK: usize = 64;
/// Bootstrap resamples of every interval.
const RESAMPLES: usize = crate::eval::DEFAULT_BOOTSTRAP;

/// Runs the search and the final test, writes the output model and the report.
pub fn tune(o: &TuneOptions) -> anyhow::Result<TuneReport> {
    let t0 = Instant::now();
    // Checked before any work: a model without a chat template is refused at once.
    let chat = if o.chat { Some(crate::chat::ChatFormat::of_model(&o.model).with_context(|| format!("--chat: {}", o.model.display()))?) } else { None };
    let journal_path = prepare(o)?;
    let math_set = calibration::load(&o.math, Some(&o.data_dir))?;
    let general_set = calibration::load(&o.general, Some(&o.data_dir))?;
    // The journal is checked before anything is calibrated or reused: its key holds the
    // model's content and the data's (issue 27 case 9).
    let model_file = GgufFile::open(&o.model).with_context(|| format!("reading {}", o.model.display()))?;
    let config = config_key(o, &model_file, &[&math_set, &general_set])?;
    let journal = if o.resume && journal_path.is_file() { Journal::resume(&journal_path, &config, journal::WHAT)? } else { Journal::create(&journal_path, &config)? };
    let (math, general) = calibrate(o, &math_set, &general_set)?;
    let calibrate_s = t0.elapsed().as_secs_f64();

    let mut cal_texts = drawn_texts(&math_set, o)?;
    cal_texts.extend(drawn_texts(&general_set, o)?);
    let dev_gsm8k = search::schedule(o.candidates, o.rounds, o.budget, usize::MAX, MIN_ROUND_ITEMS).last().map_or(0, |r| r.items).max(o.guard_items);
    let sizes = SplitSizes { dev_gsm8k, dev_general: o.general_items, test_gsm8k: o.test_items, test_general: o.test_general_items };
    let splits = split(o, cal_texts, sizes)?;
    let n_dev = splits.dev.questions();

    let (space, candidates) = candidates(&model_file, o);
    let rounds = search::schedule(candidates.len(), o.rounds, o.budget, n_dev, MIN_ROUND_ITEMS);

    let engine = EngineOptions { threads: o.threads, ..EngineOptions::default() };
    let settings = ScoreSettings { engine, max_new_tokens: o.max_new_tokens, parallel: o.parallel, stop_after: o.stop_after, chat };
    let mut ctx = Ctx {
        o,
        model_file: &model_file,
        math: &math,
        general: &general,
        selections: BTreeMap::new(),
        pool: rayon::ThreadPoolBuilder::new().num_threads(o.threads).build().context("starting worker threads")?,
        scorer: Scorer::new(&splits, settings, journal),
        base: Model::load(&o.model)?,
        t0,
        plan: plan(o, &rounds, &splits, candidates.len()),
        skipped: BTreeMap::new(),
    };

    let t_search = Instant::now();
    let mut records: Vec<CandidateRecord> = candidates.iter().map(|c| CandidateRecord::new(*c)).collect();
    for r in &mut records {
        r.selected_fraction = ctx.selected_fraction(&r.candidate)?;
    }
    let finalists = run_rounds(&mut ctx, &rounds, &mut records)?;
    let chosen = choose(&mut ctx, &finalists, &mut records)?;
    let search_s = t_search.elapsed().as_secs_f64();

    let t_test = Instant::now();
    for (id, cand) in &test_models(chosen.map(|i| &records[i])) {
        ctx.test(id, cand.as_ref())?;
    }
    let test_s = t_test.elapsed().as_secs_f64();

    let verdict = write_output(&mut ctx, chosen.map(|i| &records[i]))?;
    ctx.say(&verdict);
    let compare = |id: &str, label: String| Comparison::of(&ctx.scorer, id, label, &splits.test.general_is_mmlu, o.seed);
    let report = TuneReport {
        model: o.model.clone(),
        output: o.output.clone(),
        splits: report::SplitCounts::of(&splits),
        space,
        schedule: rounds.clone(),
        candidates: records.clone(),
        chosen: chosen.map(|i| records[i].candidate),
        verdict,
        rebuild: chosen.map(|i| apply_command(o, &records[i].candidate, &math_set.name, &general_set.name)),
        names: o.objective.names(),
        test_base: report::Accuracies::of(&ctx.scorer, "base", &splits.test.general_is_mmlu),
        test_tuned: chosen.map(|i| compare(&records[i].id, records[i].candidate.label())),
        test_paper: compare(&Candidate::PAPER.id(), Candidate::PAPER.label()),
        settings: report::Settings::of(o),
        wall: Wall { calibrate_s, search_s, test_s, total_s: t0.elapsed().as_secs_f64() },
    };
    report.write(&o.work)?;
    Ok(report)
}

/// The search space of `model_file` and the candidates drawn from it, the paper's setting
/// first.
fn candidates(model_file: &GgufFile, o: &TuneOptions) -> (Space, Vec<Candidate>) {
    let targets = crate::model::target_weights(model_file);
    let n_layers = targets.iter().filter_map(|t| crate::model::layer_of(&t.name)).max().map_or(0, |l| l + 1);
    let has_head = targets.iter().any(|t| t.name == "output.weight");
    let space = Space::default_for(n_layers, has_head);
    let mut candidates = vec![Candidate::PAPER];
    candidates.extend(space.draw(space.grid().len(), o.seed).into_iter().filter(|c| *c != Candidate::PAPER).take(o.candidates.saturating_sub(1)));
    (space, candidates)
}

/// The `mathneuro apply` command that rebuilds candidate `c` byte for byte from the STATS
/// cached in the work directory (what [`Ctx::write`] does: the same selection, change, seed and
/// restriction), written onto the output with `--force`.
pub fn apply_command(o: &TuneOptions, c: &Candidate, math: &str, general: &str) -> String {
    let path = |p: &Path| shell_word(&p.display().to_string());
    let mut words = vec!["mathneuro".to_string(), "apply".into(), path(&o.model)];
    words.extend(["--math".into(), path(&stats_cache::stats_path(&o.work, math, o.samples, o.seed, o.chat))]);
    words.extend(["--general".into(), path(&stats_cache::stats_path(&o.work, general, o.samples, o.seed, o.chat))]);
    // `Ctx::write` scales by `c.scale as f32`; f32's Display is the shortest text that parses back.
    words.extend(["--top-k".into(), c.top_k.to_string(), "--scale".into(), (c.scale as f32).to_string(), "--seed".into(), o.seed.to_string()]);
    words.extend(c.region.restriction().flags());
    words.extend(["-o".into(), path(&o.output), "--force".into()]);
    words.join(" ")
}

/// `word` quoted for a POSIX shell when it holds anything but plain path characters.
fn shell_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The splits of the objective, checked for leaks and for questions on both sides.
fn split(o: &TuneOptions, calibration: Vec<String>, sizes: SplitSizes) -> anyhow::Result<Splits> {
    let splits = Splits::build_for(&o.data_dir, &o.objective, calibration, sizes, o.seed)?;
    splits.check()?;
    let (n_dev, n_test) = (splits.dev.questions(), splits.test.questions());
    anyhow::ensure!(n_dev > 0 && n_test > 0, "{}: {n_dev} dev and {n_test} test questions are left after the split; tune needs both", o.objective.names().task);
    Ok(splits)
}

/// The models tested once on held-out items: the base, the chosen candidate, and the paper's
/// setting when it is not the chosen one.
fn test_models(chosen: Option<&CandidateRecord>) -> Vec<(String, Option<Candidate>)> {
    let mut models = vec![("base".to_string(), None)];
    if let Some(r) = chosen {
        models.push((r.id.clone(), Some(r.candidate)));
    }
    if chosen.map(|r| r.candidate) != Some(Candidate::PAPER) {
        models.push((Candidate::PAPER.id(), Some(Candidate::PAPER)));
    }
    models
}

/// Checks the output and sets up the work directory; returns the journal's path.
fn prepare(o: &TuneOptions) -> anyhow::Result<PathBuf> {
    // The policy every writing command shares: never onto the model, `--force` for an existing
    // BEST, both checked before any calibration.
    let mut plan = crate::safety::outputs::OutputPlan::new("tune", o.force).input(&o.model);
    // The calibration sets and the data of the dev and test questions are inputs too.
    for file in [&o.math, &o.general].into_iter().filter_map(|spec| crate::data::calibration::input_file(spec, Some(&o.data_dir))) {
        plan = plan.input(file);
    }
    for task in [o.objective.task(), crate::eval::Task::Mmlu] {
        for f in crate::eval::content::task_files(&o.data_dir, task, o.objective.file().as_deref()) {
            plan = plan.input(f);
        }
    }
    plan.file(&o.output).dir(&o.work).check()?;
    let journal = o.work.join("journal.jsonl");
    if journal.exists() && !o.resume && !o.force {
        anyhow::bail!("{} holds an earlier tune run; pass --resume to continue it or --force to start over", o.work.display());
    }
    if !o.resume {
        // Starting over: cached STATS are keyed by set, samples and seed only, so drop them.
        let stats = o.work.join("stats");
        if stats.exists() {
            std::fs::remove_dir_all(&stats).with_context(|| format!("removing {}", stats.display()))?;
        }
    }
    std::fs::create_dir_all(&o.work).with_context(|| format!("creating {}", o.work.display()))?;
    Ok(journal)
}

/// Calibrates both sets with one loaded model (or loads the STATS cached by an earlier run).
fn calibrate(o: &TuneOptions, math_set: &CalibrationSet, general_set: &CalibrationSet) -> anyhow::Result<(ActivationStats, ActivationStats)> {
    let cached = |set| stats_cache::load_cached(&o.work, set, o.samples, o.seed, o.chat);
    if let (Some(m), Some(g)) = (cached(math_set), cached(general_set)) {
        return Ok((m, g));
    }
    let model = Model::load(&o.model).with_context(|| format!("loading {}", o.model.display()))?;
    let copts = CalibrateOptions { threads: o.threads, max_tokens: o.max_tokens, parse_special: o.chat, ..CalibrateOptions::default() };
    let mut cal = Calibrator::new(&model, &copts).with_context(|| o.model.display().to_string())?;
    let mut out = Vec::new();
    for set in [math_set, general_set] {
        let (stats, rec) = stats_cache::ensure(&mut cal, &o.work, set, o.samples, o.seed, o.chat)?;
        if o.verbose {
            eprintln!("tune: calibrated {}: {} samples, {} tokens in {:.0} s", rec.set, rec.samples, rec.tokens, rec.seconds);
        }
        out.push(stats);
    }
    let general = out.pop().expect("two sets");
    Ok((out.pop().expect("two sets"), general))
}

/// The texts calibration measured (the same draw `stats_cache::ensure` makes).
fn drawn_texts(set: &CalibrationSet, o: &TuneOptions) -> anyhow::Result<Vec<String>> {
    crate::pipeline::Sampling { chat: o.chat, ..crate::pipeline::Sampling::new(o.samples, o.seed) }.texts(set, &o.model)
}

/// What a journaled score means, hashed: the model (its tensor table and the sha256 of its
/// bytes, so weights changed in place give another key), the calibration texts and the data
/// files of the splits (GSM8K, MMLU, ARC), the seed and the generation settings. A journal is resumed only under the same key. Search and
/// test sizes are not in it: every item order is fixed and a larger size extends a smaller one
/// (prefixes), so a resumed run may widen the search or the test and reuse what was scored. A
/// resumed run with unchanged options ends exactly as an uninterrupted one (tested).
fn config_key(o: &TuneOptions, model: &GgufFile, sets: &[&CalibrationSet]) -> anyhow::Result<String> {
    use crate::eval::{Task, content};
    use sha2::Digest as _;
    let mut data = vec![content::file_sha256(&o.model)?];
    data.extend(sets.iter().map(|s| crate::pipeline::texts_hash(&s.texts)));
    for task in [o.objective.task(), Task::Mmlu, Task::ArcEasy] {
        data.push(content::task_data_sha256(&o.data_dir, task, o.objective.file().as_deref())?);
    }
    let text = format!(
        "{} {} {} {} {} {} {} {} {} {} {}{}{}",
        data.join(" "),
        crate::model::fingerprint(model),
        o.math,
        o.general,
        o.samples,
        o.max_tokens,
        o.seed,
        o.guard_items,
        o.max_new_tokens,
        o.parallel,
        o.threads,
        // Appended only with --chat, so journals of earlier runs keep their key.
        if o.chat { " chat" } else { "" },
        // Likewise the objective, only when it is not GSM8K.
        if o.objective == Objective::Gsm8k { String::new() } else { format!(" objective={}", o.objective.name()) },
    );
    Ok(sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect())
}

/// Planned items per measure, for the ETA.
fn plan(o: &TuneOptions, rounds: &[Round], splits: &Splits, candidates: usize) -> BTreeMap<Measure, usize> {
    let mut cot = rounds.last().map_or(0, |r| r.items);
    let mut before = 0;
    for r in rounds {
        cot += r.candidates * (r.items - before);
        before = r.items;
    }
    BTreeMap::from([
        (Measure::DevNll, o.guard_items.min(splits.dev.questions()) * (candidates + 1)),
        (Measure::DevCot, cot),
        (Measure::DevGeneral, splits.dev.general.len() * 2),
        (Measure::TestCot, splits.test.questions() * 3),
        (Measure::TestGeneral, splits.test.general.len() * 3),
    ])
}

/// The state shared by the stages of one run.
struct Ctx<'a, 's> {
    o: &'a TuneOptions,
    model_file: &'a GgufFile,
    math: &'a ActivationStats,
    general: &'a ActivationStats,
    /// One selection per K (`f64::to_bits`), restricted per region when a candidate is written.
    selections: BTreeMap<u64, Selection>,
    pool: rayon::ThreadPool,
    scorer: Scorer<'s>,
    base: Model,
    t0: Instant,
    plan: BTreeMap<Measure, usize>,
    skipped: BTreeMap<Measure, usize>,
}

impl Ctx<'_, '_> {
    fn selection(&mut self, top_k: f64) -> anyhow::Result<&Selection> {
        if !self.selections.contains_key(&top_k.to_bits()) {
            let opts = SelectOptions { method: Method::MathNeuro, top_k_percent: top_k, seed: self.o.seed };
            let sel = self.pool.install(|| crate::select::select(self.model_file, self.math, self.general, &opts))?;
            self.selections.insert(top_k.to_bits(), sel);
        }
        Ok(&self.selections[&top_k.to_bits()])
    }

    fn selected_fraction(&mut self, c: &Candidate) -> anyhow::Result<f64> {
        let all = self.selection(c.top_k)?;
        let total = all.numel().max(1) as f64;
        Ok(all.restricted(|n| c.region.contains(n)).selected() as f64 / total)
    }

    /// Writes candidate `c` to `path` (Modelfile only for the final output): the options
    /// [`apply_args`] prints as an `apply` command.
    fn write(&mut self, c: &Candidate, path: &Path, modelfile: bool) -> anyhow::Result<()> {
        let sel = self.selection(c.top_k)?.clone();
        let mut opts = ApplyOptions::new(Change::Scale(c.scale as f32), path);
        opts.select.top_k_percent = c.top_k;
        opts.select.seed = self.o.seed;
        opts.restrict = c.region.restriction();
        opts.force = true;
        opts.write_modelfile = modelfile;
        opts.write_report = false;
        opts.progress = false;
        let (model_file, math, general) = (self.model_file, self.math, self.general);
        self.pool.install(|| crate::surgery::apply_selection(model_file, &sel, math, general, &opts)).with_context(|| format!("writing candidate {}", c.label()))?;
        Ok(())
    }

    /// Loads candidate `c` as a model, writing it first into the work directory; `None` when
    /// every `needs` is already journaled (nothing to evaluate).
    fn load(&mut self, c: &Candidate, needs: &[(Measure, usize)]) -> anyhow::Result<Option<(Model, PathBuf)>> {
        let id = c.id();
        if needs.iter().all(|&(m, n)| self.scorer.have(&id, m) >= n.min(self.scorer.available(m))) {
            return Ok(None);
        }
        let path = self.o.work.join(format!("candidate-{id}.gguf"));
        self.write(c, &path, false)?;
        Ok(Some((Model::load(&path)?, path)))
    }

    /// Scores `id` (`model`, or the base when `None`) on the first `n` items of `m`, in chunks
    /// of at most `chunk`.
    fn fill(&mut self, id: &str, model: Option<&Model>, m: Measure, n: usize, chunk: usize) -> anyhow::Result<()> {
        let n = n.min(self.scorer.available(m));
        while self.scorer.have(id, m) < n {
            let to = self.scorer.have(id, m).saturating_add(chunk).min(n);
            self.scorer.ensure(id, model.unwrap_or(&self.base), m, to)?;
        }
        Ok(())
    }

    /// Evaluates candidate `c` (`None`: the base) on `needs`, in chunks of at most `chunk`.
    fn ensure(&mut self, c: Option<&Candidate>, needs: &[(Measure, usize)], chunk: usize) -> anyhow::Result<()> {
        let loaded = match c {
            Some(c) => self.load(c, needs)?,
            None => None,
        };
        let id = c.map_or("base".to_string(), Candidate::id);
        for &(m, n) in needs {
            self.fill(&id, loaded.as_ref().map(|l| &l.0), m, n, chunk)?;
        }
        unload(loaded)
    }

    /// Runs the final test of `id` (the base, the chosen edit or the paper's).
    fn test(&mut self, id: &str, c: Option<&Candidate>) -> anyhow::Result<()> {
        let needs = [(Measure::TestCot, usize::MAX), (Measure::TestGeneral, usize::MAX)];
        self.ensure(c, &needs, TEST_CHUNK)?;
        let n = self.scorer.available(Measure::TestCot);
        let acc = search::correct(self.scorer.get(id, Measure::TestCot, n), OBJECTIVE, n);
        let names = self.o.objective.names();
        self.say(&format!("test {}: {} {} {acc}/{n}", c.map_or("base".to_string(), Candidate::label), names.task, names.flexible));
        Ok(())
    }

    /// One progress line: elapsed time, the message, and the ETA of the planned work left.
    fn say(&self, msg: &str) {
        if !self.o.verbose {
            return;
        }
        let mut left = 0.0;
        let mut known = true;
        for (&m, &planned) in &self.plan {
            let done: usize = self.done(m);
            // Before a measure has run, a similar one stands in: test CoT runs like dev CoT,
            // and multiple-choice scoring like the NLL guard (both score given text).
            let rate = self.scorer.seconds_per_item(m).or_else(|| match m {
                Measure::TestCot => self.scorer.seconds_per_item(Measure::DevCot),
                Measure::DevGeneral | Measure::TestGeneral => self.scorer.seconds_per_item(Measure::DevGeneral).or(self.scorer.seconds_per_item(Measure::DevNll)),
                _ => None,
            });
            match rate {
                Some(r) => left += r * planned.saturating_sub(done) as f64,
                None => known &= planned <= done,
            }
        }
        let eta = if known { format!("ETA {:.1} min", left / 60.0) } else { "ETA after the first chunks".into() };
        eprintln!("tune [{:.1} min] {msg} · {eta}", self.t0.elapsed().as_secs_f64() / 60.0);
    }

    /// Planned items of `m` finished (or skipped because their candidate was discarded).
    fn done(&self, m: Measure) -> usize {
        self.scorer.total(m) + self.skipped.get(&m).copied().unwrap_or(0)
    }
}

/// Drops a loaded candidate and removes its file.
fn unload(loaded: Option<(Model, PathBuf)>) -> anyhow::Result<()> {
    if let Some((model, path)) = loaded {
        drop(model);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// NLL per token of the first `n` dev gold solutions of `id`.
fn nll_per_token(scorer: &Scorer<'_>, id: &str, n: usize) -> f64 {
    let (num, den) = scorer.get(id, Measure::DevNll, n).iter().fold((0.0, 0.0), |(a, b), s| (a + s[0].0, b + s[0].1));
    num / den.max(1.0)
}

/// The successive-halving rounds; returns the finalists, best first.
fn run_rounds(ctx: &mut Ctx<'_, '_>, rounds: &[Round], records: &mut [CandidateRecord]) -> anyhow::Result<Vec<usize>> {
    let o = ctx.o;
    let guard_n = o.guard_items.min(ctx.scorer.available(Measure::DevNll));
    ctx.ensure(None, &[(Measure::DevNll, guard_n)], usize::MAX)?;
    let base_nll = nll_per_token(&ctx.scorer, "base", guard_n);
    let mut alive: Vec<usize> = (0..records.len()).collect();
    for (r, round) in rounds.iter().enumerate() {
        for &i in alive.iter().skip(round.candidates) {
            records[i].fate = format!("out after round {r}");
        }
        alive.truncate(round.candidates);
        ctx.ensure(None, &[(Measure::DevCot, round.items)], usize::MAX)?;
        let mut ranked = Vec::new();
        for (j, &i) in alive.iter().enumerate() {
            let c = records[i].candidate;
            let id = records[i].id.clone();
            let mut loaded = None;
            if r == 0 {
                loaded = ctx.load(&c, &[(Measure::DevNll, guard_n)])?;
                ctx.fill(&id, loaded.as_ref().map(|l| &l.0), Measure::DevNll, guard_n, usize::MAX)?;
                let dnll = nll_per_token(&ctx.scorer, &id, guard_n) - base_nll;
                records[i].guard_nll_delta = Some(dnll);
                if dnll > o.guard_nll {
                    records[i].fate = format!("discarded by the NLL guard (+{dnll:.4} > +{})", o.guard_nll);
                    *ctx.skipped.entry(Measure::DevCot).or_default() += round.items;
                    ctx.say(&format!("round 1/{} · {}/{} {}: NLL +{dnll:.4} per token, discarded", rounds.len(), j + 1, alive.len(), c.label()));
                    unload(loaded)?;
                    continue;
                }
            }
            if loaded.is_none() {
                loaded = ctx.load(&c, &[(Measure::DevCot, round.items)])?;
            }
            ctx.fill(&id, loaded.as_ref().map(|l| &l.0), Measure::DevCot, round.items, usize::MAX)?;
            unload(loaded)?;
            let score = RoundScore::of(&ctx.scorer, &id, round.items, o.seed);
            ctx.say(&format!(
                "round {}/{} · {}/{} {}: dev {}/{} vs base {}/{} ({:+})",
                r + 1,
                rounds.len(),
                j + 1,
                alive.len(),
                c.label(),
                score.correct,
                score.items,
                score.base_correct,
                score.items,
                score.gain
            ));
            ranked.push((i, score.gain, records[i].guard_nll_delta.unwrap_or(0.0)));
            records[i].rounds.push(score);
        }
        alive = search::rank(ranked);
    }
    for &i in &alive {
        records[i].fate = "finalist".into();
    }
    Ok(alive)
}

/// The first finalist that beats the base on dev by `min_gain` answers and keeps general dev
/// accuracy within the tolerance; `None` when there is none.
fn choose(ctx: &mut Ctx<'_, '_>, finalists: &[usize], records: &mut [CandidateRecord]) -> anyhow::Result<Option<usize>> {
    let o = ctx.o;
    for &i in finalists {
        let gain = records[i].rounds.last().map_or(0, |s| s.gain);
        let c = records[i].candidate;
        let id = records[i].id.clone();
        let (judgement, general) = judge(gain, o.min_gain, o.general_tolerance, || {
            ctx.ensure(None, &[(Measure::DevGeneral, usize::MAX)], usize::MAX)?;
            ctx.ensure(Some(&c), &[(Measure::DevGeneral, usize::MAX)], usize::MAX)?;
            let n = ctx.scorer.available(Measure::DevGeneral);
            let p = search::paired(ctx.scorer.get("base", Measure::DevGeneral, n), ctx.scorer.get(&id, Measure::DevGeneral, n), 0, true, RESAMPLES, o.seed);
            ctx.say(&format!("finalist {}: general dev {:+.3} (tolerance −{})", c.label(), p.delta, o.general_tolerance));
            Ok(p)
        })?;
        records[i].general_dev = general;
        records[i].fate = match judgement {
            Judgement::ShortOfGain => format!("finalist; dev gain {gain:+} < {:+} needed", o.min_gain),
            Judgement::BeyondTolerance => "finalist; general dev accuracy fell beyond the tolerance".into(),
            Judgement::Chosen => {
                records[i].fate = "chosen".into();
                return Ok(Some(i));
            }
        };
    }
    Ok(None)
}

/// What `choose` decides for one finalist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Judgement {
    /// It beat the base on dev by fewer than `--min-gain` answers (general accuracy not measured).
    ShortOfGain,
    /// Its general dev accuracy fell by more than `--general-tolerance`.
    BeyondTolerance,
    /// It gains enough and keeps general accuracy: the winner.
    Chosen,
}

/// Judges a finalist with dev gain `gain`: general accuracy (`general`, the paired change against
/// the base) is measured only for one that gains at least `min_gain`, and it must not fall by
/// more than `tolerance`.
fn judge(gain: i64, min_gain: i64, tolerance: f64, general: impl FnOnce() -> anyhow::Result<search::Paired>) -> anyhow::Result<(Judgement, Option<search::Paired>)> {
    if gain < min_gain {
        return Ok((Judgement::ShortOfGain, None));
    }
    let p = general()?;
    // A fall of exactly the tolerance is allowed: accuracies are ratios of counts, so 0.47 − 0.50
    // is −0.030000000000000027 in f64; the margin is far below one item in any real split.
    let j = if p.delta >= -tolerance - 1e-9 { Judgement::Chosen } else { Judgement::BeyondTolerance };
    Ok((j, Some(p)))
}

/// Writes BEST: the chosen edit, or a copy of the base when nothing beat it. Returns the verdict.
fn write_output(ctx: &mut Ctx<'_, '_>, chosen: Option<&CandidateRecord>) -> anyhow::Result<String> {
    let o = ctx.o;
    match chosen {
        Some(rec) => {
            ctx.write(&rec.candidate, &o.output, true)?;
            let s = rec.rounds.last().expect("a finalist has rounds");
            Ok(format!(
                "chose {} ({}/{} dev answers right vs the base's {}/{}); wrote {}",
                rec.candidate.label(),
                s.correct,
                s.items,
                s.base_correct,
                s.items,
                o.output.display()
            ))
        }
        None => {
            let copy = |f: &mut std::fs::File| -> Result<(), crate::gguf::GgufError> {
                let mut src = std::fs::File::open(&o.model).map_err(|source| crate::gguf::GgufError::Io { path: o.model.clone(), source })?;
                std::io::copy(&mut src, f).map_err(|source| crate::gguf::GgufError::Io { path: o.output.clone(), source })?;
                Ok(())
            };
            crate::atomic::write_atomic(&o.output, Some(&o.model), copy)?;
            Ok(format!("no candidate beat the base on dev; {} is the base model unchanged", o.output.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paired(delta: f64) -> search::Paired {
        // 100 general dev items: the base gets the first 50 right, the finalist 50 + 100·delta.
        let right = |k: i64| (0..100).map(|i| vec![(f64::from(u8::from(i < k)), 1.0)]).collect::<Vec<_>>();
        search::paired(&right(50), &right(50 + (delta * 100.0).round() as i64), 0, true, 100, 1)
    }

    #[test]
    fn a_finalist_whose_general_accuracy_falls_beyond_the_tolerance_is_not_chosen() {
        let tol = 0.03;
        for (delta, want) in [(-0.05, Judgement::BeyondTolerance), (-0.04, Judgement::BeyondTolerance), (-0.03, Judgement::Chosen), (-0.01, Judgement::Chosen), (0.0, Judgement::Chosen), (0.02, Judgement::Chosen)] {
            let p = paired(delta);
            assert!((p.delta - delta).abs() < 1e-9, "{} vs {delta}", p.delta);
            let (j, general) = judge(3, 1, tol, || Ok(p.clone())).unwrap();
            assert_eq!(j, want, "general dev {delta:+} with tolerance {tol}");
            assert_eq!(general.map(|g| g.delta), Some(p.delta));
        }
        // A fall of exactly the tolerance is within it (not lost to f64 rounding); with
        // tolerance 0 any fall rejects it.
        assert_eq!(judge(3, 1, 0.0, || Ok(paired(-0.01))).unwrap().0, Judgement::BeyondTolerance);
    }

    #[test]
    fn general_accuracy_is_measured_only_for_a_finalist_that_gains_enough() {
        let (j, general) = judge(0, 1, 0.03, || panic!("general dev measured for a finalist short of the gain")).unwrap();
        assert_eq!((j, general.is_none()), (Judgement::ShortOfGain, true));
        assert_eq!(judge(1, 1, 0.03, || Ok(paired(0.0))).unwrap().0, Judgement::Chosen);
        assert!(judge(1, 1, 0.03, || anyhow::bail!("evaluation failed")).is_err());
    }
}
