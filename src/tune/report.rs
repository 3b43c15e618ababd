//! What `tune` reports: every candidate's dev scores and fate, the chosen edit, the test
//! comparison of base, chosen and the paper's default (paired intervals, McNemar), and wall
//! times — as report.json, report.md and search.svg in the work directory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use super::journal::Measure;
use super::scorer::{Scorer, Scores};
use super::search::{self, Paired, Round};
use super::space::{Candidate, Space};
use super::objective::Names;
use super::splits::Splits;
use super::{OBJECTIVE, RESAMPLES, TuneOptions};
use crate::experiments::plot::{Plot, Point, Series, render};

/// A candidate's score in one round, paired with the base on the same dev questions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoundScore {
    /// Dev questions.
    pub items: usize,
    /// The candidate's right answers (flexible-extract).
    pub correct: i64,
    /// The base's right answers on the same questions.
    pub base_correct: i64,
    /// correct − base_correct.
    pub gain: i64,
    /// The paired comparison of accuracies.
    pub paired: Paired,
}

impl RoundScore {
    /// The round score of `id` on the first `items` dev questions.
    pub fn of(scorer: &Scorer<'_>, id: &str, items: usize, seed: u64) -> RoundScore {
        let (c, b) = (scorer.get(id, Measure::DevCot, items), scorer.get("base", Measure::DevCot, items));
        let (correct, base_correct) = (search::correct(c, OBJECTIVE, items), search::correct(b, OBJECTIVE, items));
        RoundScore { items: c.len(), correct, base_correct, gain: correct - base_correct, paired: search::paired(b, c, OBJECTIVE, true, RESAMPLES, seed) }
    }
}

/// One candidate and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CandidateRecord {
    /// The edit.
    pub candidate: Candidate,
    /// Its id (journal, file names).
    pub id: String,
    /// Selected entries / all target entries.
    pub selected_fraction: f64,
    /// Change of the dev gold-solution NLL per token against the base (the guard).
    pub guard_nll_delta: Option<f64>,
    /// One score per round it ran in.
    pub rounds: Vec<RoundScore>,
    /// General dev accuracy against the base (finalists with a dev gain only).
    pub general_dev: Option<Paired>,
    /// How it ended: discarded, out after round r, finalist, chosen.
    pub fate: String,
}

impl CandidateRecord {
    /// A record before any evaluation.
    pub fn new(candidate: Candidate) -> CandidateRecord {
        CandidateRecord { candidate, id: candidate.id(), selected_fraction: 0.0, guard_nll_delta: None, rounds: Vec::new(), general_dev: None, fate: String::new() }
    }
}

/// Accuracies of one model on the test items.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Accuracies {
    /// GSM8K questions.
    pub n_gsm8k: usize,
    /// GSM8K strict-match accuracy.
    pub gsm8k_strict: f64,
    /// GSM8K flexible-extract accuracy.
    pub gsm8k_flexible: f64,
    /// MMLU items and accuracy.
    pub mmlu: (usize, f64),
    /// ARC-Easy items and accuracy.
    pub arc_easy: (usize, f64),
}

/// (MMLU items, ARC-Easy items) of a general score list.
fn split_general(xs: &[Vec<(f64, f64)>], is_mmlu: &[bool]) -> (Scores, Scores) {
    let (m, a): (Vec<_>, Vec<_>) = xs.iter().zip(is_mmlu).partition(|(_, flag)| **flag);
    (m.into_iter().map(|(x, _)| x.clone()).collect(), a.into_iter().map(|(x, _)| x.clone()).collect())
}

fn mean(xs: &[Vec<(f64, f64)>], m: usize) -> f64 {
    xs.iter().map(|s| s[m].0).sum::<f64>() / xs.len().max(1) as f64
}

impl Accuracies {
    /// The test accuracies of `id`; `is_mmlu` tells MMLU items from ARC-Easy ones.
    pub fn of(scorer: &Scorer<'_>, id: &str, is_mmlu: &[bool]) -> Accuracies {
        let cot = scorer.get(id, Measure::TestCot, usize::MAX);
        let (mmlu, arc) = split_general(scorer.get(id, Measure::TestGeneral, usize::MAX), is_mmlu);
        let (mmlu, arc) = (&mmlu[..], &arc[..]);
        Accuracies {
            n_gsm8k: cot.len(),
            gsm8k_strict: mean(cot, 0),
            gsm8k_flexible: mean(cot, 1),
            mmlu: (mmlu.len(), mean(mmlu, 0)),
            arc_easy: (arc.len(), mean(arc, 0)),
        }
    }
}

/// One edited model against the base on the test items.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// The edit.
    pub label: String,
    /// GSM8K strict-match.
    pub gsm8k_strict: Paired,
    /// GSM8K flexible-extract (the search objective).
    pub gsm8k_flexible: Paired,
    /// MMLU test.
    pub mmlu: Paired,
    /// ARC-Easy test half.
    pub arc_easy: Paired,
}

impl Comparison {
    /// Compares `id` with the base on every test item.
    pub fn of(scorer: &Scorer<'_>, id: &str, label: String, is_mmlu: &[bool], seed: u64) -> Comparison {
        let get = |who: &str, m: Measure| scorer.get(who, m, usize::MAX);
        let (bc, oc) = (get("base", Measure::TestCot), get(id, Measure::TestCot));
        let (bm, ba) = split_general(get("base", Measure::TestGeneral), is_mmlu);
        let (om, oa) = split_general(get(id, Measure::TestGeneral), is_mmlu);
        Comparison {
            label,
            gsm8k_strict: search::paired(bc, oc, 0, true, RESAMPLES, seed),
            gsm8k_flexible: search::paired(bc, oc, 1, true, RESAMPLES, seed),
            mmlu: search::paired(&bm, &om, 0, true, RESAMPLES, seed),
            arc_easy: search::paired(&ba, &oa, 0, true, RESAMPLES, seed),
        }
    }
}

/// Items per split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SplitCounts {
    /// Calibration texts (math + general).
    pub calibration: usize,
    /// GSM8K train questions in dev.
    pub dev_gsm8k: usize,
    /// MMLU dev items.
    pub dev_mmlu: usize,
    /// ARC-Easy dev items.
    pub dev_arc_easy: usize,
    /// GSM8K test questions.
    pub test_gsm8k: usize,
    /// MMLU test items.
    pub test_mmlu: usize,
    /// ARC-Easy test items.
    pub test_arc_easy: usize,
}

fn count(flags: &[bool]) -> usize {
    flags.iter().filter(|&&f| f).count()
}

impl SplitCounts {
    /// The counts of `s`.
    pub fn of(s: &Splits) -> SplitCounts {
        SplitCounts {
            calibration: s.calibration.len(),
            dev_gsm8k: s.dev.questions(),
            dev_mmlu: count(&s.dev.general_is_mmlu),
            dev_arc_easy: s.dev.general.len() - count(&s.dev.general_is_mmlu),
            test_gsm8k: s.test.questions(),
            test_mmlu: count(&s.test.general_is_mmlu),
            test_arc_easy: s.test.general.len() - count(&s.test.general_is_mmlu),
        }
    }
}

/// The settings that decided the result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Settings {
    /// The task the search optimised: `gsm8k`, `math` or `task_file FILE`.
    pub objective: String,
    /// Math and general calibration sets.
    pub calibration: (String, String),
    /// Samples per set.
    pub samples: usize,
    /// Seed.
    pub seed: u64,
    /// Candidates.
    pub candidates: usize,
    /// Candidate dev answers budgeted.
    pub budget: usize,
    /// NLL guard: dev items and largest rise per token allowed.
    pub guard: (usize, f64),
    /// General tolerance (absolute accuracy).
    pub general_tolerance: f64,
    /// Dev answers the winner must gain.
    pub min_gain: i64,
    /// Most new tokens per GSM8K answer.
    pub max_new_tokens: usize,
    /// Threads.
    pub threads: usize,
}

impl Settings {
    /// The settings of `o`.
    pub fn of(o: &TuneOptions) -> Settings {
        Settings {
            objective: o.objective.name(),
            calibration: (o.math.clone(), o.general.clone()),
            samples: o.samples,
            seed: o.seed,
            candidates: o.candidates,
            budget: o.budget,
            guard: (o.guard_items, o.guard_nll),
            general_tolerance: o.general_tolerance,
            min_gain: o.min_gain,
            max_new_tokens: o.max_new_tokens,
            threads: o.threads,
        }
    }
}

/// Wall times, seconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Wall {
    /// Calibration (0 when cached).
    pub calibrate_s: f64,
    /// The search on dev.
    pub search_s: f64,
    /// The final test.
    pub test_s: f64,
    /// Everything.
    pub total_s: f64,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TuneReport {
    /// Base model.
    pub model: PathBuf,
    /// The model written.
    pub output: PathBuf,
    /// Settings.
    pub settings: Settings,
    /// Split sizes.
    pub splits: SplitCounts,
    /// The grid candidates were drawn from.
    pub space: Space,
    /// The rounds.
    pub schedule: Vec<Round>,
    /// Every candidate, in search order.
    pub candidates: Vec<CandidateRecord>,
    /// The edit written, if any beat the base on dev.
    pub chosen: Option<Candidate>,
    /// One sentence on the outcome.
    pub verdict: String,
    /// The `apply` command that rebuilds the output (when an edit was chosen). Not in
    /// report.json: it names the work directory, and the decisions there are path-free.
    #[serde(skip)]
    pub rebuild: Option<String>,
    /// How the report names the objective (its name is in `settings`).
    #[serde(skip)]
    pub names: Names,
    /// The base on the test items.
    pub test_base: Accuracies,
    /// The chosen edit against the base on test.
    pub test_tuned: Option<Comparison>,
    /// The paper's ×1.1 K=5 % against the base on test.
    pub test_paper: Comparison,
    /// Wall times (not part of any decision).
    pub wall: Wall,
}

fn ci(p: &Paired) -> String {
    format!("{:+.3} [{:+.3}, {:+.3}]", p.delta, p.ci95.0, p.ci95.1)
}

fn mcnemar(p: &Paired) -> String {
    match (p.discordant, p.mcnemar_p) {
        (Some((b, c)), Some(pv)) => format!("{b}/{c}, p = {pv:.3}"),
        _ => "—".into(),
    }
}

impl TuneReport {
    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# tune: {}\n\n**{}**\n", self.model.display(), self.verdict);
        if let Some(cmd) = &self.rebuild {
            let _ = writeln!(s, "Rebuild the output byte for byte with `apply` (from the STATS in the work directory):\n\n```sh\n{cmd}\n```\n");
        }
        let (sp, nm) = (&self.splits, &self.names);
        let _ = writeln!(
            s,
            "Splits (disjoint, checked): {} calibration texts; dev {} {}, {} MMLU dev, {} ARC-Easy; test {} {}, {} MMLU test, {} ARC-Easy.\n",
            sp.calibration, sp.dev_gsm8k, nm.dev, sp.dev_mmlu, sp.dev_arc_easy, sp.test_gsm8k, nm.test, sp.test_mmlu, sp.test_arc_easy
        );
        let rounds: Vec<String> = self.schedule.iter().map(|r| format!("{} × {}", r.candidates, r.items)).collect();
        let st = &self.settings;
        let _ = writeln!(
            s,
            "Search: {} candidates, rounds (candidates × dev questions) {}; objective {} paired with the base; NLL guard on {} dev items (discard above +{} per token); general tolerance −{}; the winner must gain ≥ {} dev answers. Seed {}, {} calibration samples per set.\n",
            st.candidates,
            rounds.join(", "),
            nm.search,
            st.guard.0,
            st.guard.1,
            st.general_tolerance,
            st.min_gain,
            st.seed,
            st.samples
        );
        s.push_str("## Candidates (dev)\n\n| # | edit | selected | ΔNLL/token | rounds: right vs base (Δ acc [95% CI]) | general dev Δ | fate |\n|---|---|---|---|---|---|---|\n");
        for (i, c) in self.candidates.iter().enumerate() {
            let rounds: Vec<String> = c.rounds.iter().map(|r| format!("{}/{} vs {}/{} ({})", r.correct, r.items, r.base_correct, r.items, ci(&r.paired))).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {:.3} % | {} | {} | {} | {} |",
                i + 1,
                c.candidate.label(),
                100.0 * c.selected_fraction,
                c.guard_nll_delta.map_or("—".into(), |d| format!("{d:+.4}")),
                if rounds.is_empty() { "—".into() } else { rounds.join("; ") },
                c.general_dev.as_ref().map_or("—".into(), ci),
                c.fate
            );
        }
        let b = &self.test_base;
        let _ = writeln!(
            s,
            "\n## Test (touched once)\n\nBase: {} {} {:.3} / {} {:.3} (N = {}), MMLU {:.3} (N = {}), ARC-Easy {:.3} (N = {}).\n",
            nm.task, nm.strict, b.gsm8k_strict, nm.flexible, b.gsm8k_flexible, b.n_gsm8k, b.mmlu.1, b.mmlu.0, b.arc_easy.1, b.arc_easy.0
        );
        let header = format!("| edit vs base | {0} {1} Δ [CI] | {0} {2} Δ [CI] | McNemar (base-only/edit-only, p) | MMLU Δ [CI] | ARC-Easy Δ [CI] |", nm.task, nm.strict, nm.flexible);
        let _ = writeln!(s, "{header}\n|---|---|---|---|---|---|");
        for (name, c) in [("chosen", self.test_tuned.as_ref()), ("paper default", Some(&self.test_paper))] {
            if let Some(c) = c {
                let _ = writeln!(
                    s,
                    "| {name}: {} | {} | {} | {} | {} | {} |",
                    c.label,
                    ci(&c.gsm8k_strict),
                    ci(&c.gsm8k_flexible),
                    mcnemar(&c.gsm8k_flexible),
                    ci(&c.mmlu),
                    ci(&c.arc_easy)
                );
            }
        }
        let w = &self.wall;
        let _ = writeln!(
            s,
            "\nWall time: {:.1} min in all (calibration {:.1}, search {:.1}, test {:.1}); {} threads.",
            w.total_s / 60.0,
            w.calibrate_s / 60.0,
            w.search_s / 60.0,
            w.test_s / 60.0,
            st.threads
        );
        s
    }

    /// The search as a plot: Δ dev accuracy against the base per candidate, one series per round.
    pub fn plot(&self) -> String {
        let series = (0..self.schedule.len())
            .map(|r| Series {
                name: format!("round {} ({} q)", r + 1, self.schedule[r].items),
                points: self
                    .candidates
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| c.rounds.get(r).map(|s| Point { x: (i + 1) as f64, y: s.paired.delta, lo: s.paired.ci95.0, hi: s.paired.ci95.1 }))
                    .collect(),
            })
            .collect();
        render(&Plot {
            title: format!("tune: dev {} accuracy, candidate − base", self.names.task),
            x_label: "candidate (see report.md)".into(),
            y_label: "Δ accuracy (95% paired CI)".into(),
            series,
        })
    }

    /// Writes report.json, report.md and search.svg into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let mut json = serde_json::to_string_pretty(self).context("serialising the tune report")?;
        if self.settings.objective != "gsm8k" {
            // The fields named after GSM8K hold the objective's scores: name them so.
            json = rename_keys(&json);
        }
        for (name, text) in [("report.json", json), ("report.md", self.markdown()), ("search.svg", self.plot())] {
            let path = dir.join(name);
            crate::atomic::write_bytes_atomic(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

/// Renames every key holding `gsm8k` to `task` in pretty-printed JSON (one key per line; keys
/// are the report's field names, values are left alone).
fn rename_keys(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for line in json.split_inclusive('\n') {
        let body = line.trim_start();
        match body.strip_prefix('"').and_then(|rest| rest.find("\": ")) {
            Some(end) if body.starts_with('"') => {
                let indent = &line[..line.len() - body.len()];
                out.push_str(indent);
                out.push_str(&body[..end + 1].replace("gsm8k", "task"));
                out.push_str(&body[end + 1..]);
            }
            _ => out.push_str(line),
        }
    }
    out
}
