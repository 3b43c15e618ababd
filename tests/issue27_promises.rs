//! Issue 27, second pass: promises the suite stated but did not test. SIGHUP cleans up like
//! SIGINT/SIGTERM; a successful `apply` leaves its inputs byte for byte as they were; MMLU, RACE,
//! HellaSwag, BoolQ and WikiText score on the real model with lm-eval's prompts; a planted
//! MMLU/ARC dev↔test leak is caught by tune's split check; and `tune`'s NLL guard, general
//! tolerance, no-winner path (the base unchanged) and single test pass. docs/RELIABILITY.md
//! ("Second pass") lists each test with the code break that makes it fail.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mathneuro::eval::{self, EngineOptions, EvalOptions, Model, Task};
use mathneuro::ffi::ggml;
use mathneuro::gguf::synth::{SynthModel, encode_plain};
use mathneuro::gguf::{GgmlType, GgufFile};
use mathneuro::select::synth::synthetic_stats;
use mathneuro::tune::splits::{SplitSizes, Splits};
use sha2::{Digest, Sha256};
use crate::common::{stderr};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mathneuro"));
    c.env("RAYON_NUM_THREADS", "2");
    c
}

fn data_dir() -> PathBuf {
    let p = std::env::var_os("MATHNEURO_DATA").map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"), PathBuf::from);
    assert!(p.join("gsm8k/train.jsonl").exists(), "{} is missing: the data sets live beside the checkout", p.display());
    p
}

fn sha(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

fn temp_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(".mathneuro-")).collect()
}

// ---------------------------------------------------------------------------------------------
// Signals and inputs

#[test]
fn issue27_sighup_during_apply_leaves_no_temp_file_and_exits_129() {
    let model = common::real_model_path();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = GgufFile::open(&model).unwrap();
    synthetic_stats(&f, 1, 50, "m").save(&d.join("math.gguf"), &[]).unwrap();
    synthetic_stats(&f, 2, 50, "g").save(&d.join("general.gguf"), &[]).unwrap();
    drop(f);
    let out = d.join("out.gguf");
    let mut c = bin();
    c.arg("apply").arg(&model).arg("--math").arg(d.join("math.gguf")).arg("--general").arg(d.join("general.gguf"));
    c.args(["--scale", "1.1", "--threads", "2", "--no-modelfile", "-o"]).arg(&out);
    let mut child = c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while temp_leftovers(d).is_empty() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let tmp = temp_leftovers(d);
    assert_eq!(tmp.len(), 1, "no temporary output appeared: {tmp:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("apply still running 20 s after SIGHUP");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    // docs/RELIABILITY.md: "SIGINT, SIGTERM and SIGHUP remove it and end the process with status
    // 128 + signal".
    assert_eq!(o.status.code(), Some(128 + 1), "{e}");
    assert!(e.contains("interrupted by SIGHUP; removed") && e.contains(&tmp[0]), "{e}");
    assert!(temp_leftovers(d).is_empty(), "SIGHUP left {:?}", temp_leftovers(d));
    assert!(!out.exists(), "an output appeared after SIGHUP");
}

#[test]
fn issue27_a_successful_apply_leaves_its_inputs_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("toy.gguf");
    let m = SynthModel::toy_transformer(2, 64, 128, 32, GgmlType::Q8_0);
    m.write(&model, &|ty, v| if ty == GgmlType::Q8_0 { ggml::quantize(ty, v, 32, None).unwrap() } else { encode_plain(ty, v) }).unwrap();
    let f = GgufFile::open(&model).unwrap();
    let (math, general) = (d.join("math.gguf"), d.join("general.gguf"));
    synthetic_stats(&f, 1, 50, "m").save(&math, &[]).unwrap();
    synthetic_stats(&f, 2, 50, "g").save(&general, &[]).unwrap();
    drop(f);
    let inputs = [&model, &math, &general];
    let before: Vec<String> = inputs.iter().map(|p| sha(p)).collect();
    for (i, change) in [["--scale", "1.1"], ["--prune", "--top-k"]].iter().enumerate() {
        let out = d.join(format!("out{i}.gguf"));
        let mut c = bin();
        c.arg("apply").arg(&model).arg("--math").arg(&math).arg("--general").arg(&general).args(change);
        if change[0] == "--prune" {
            c.arg("10");
        }
        let o = c.args(["--save-mask"]).arg(d.join(format!("mask{i}.gguf"))).arg("-o").arg(&out).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert_ne!(sha(&out), before[0], "the edit changed nothing");
        let after: Vec<String> = inputs.iter().map(|p| sha(p)).collect();
        assert_eq!(after, before, "apply {change:?} changed an input (model, math, general)");
    }
}

// ---------------------------------------------------------------------------------------------
// The tasks no test scored on a real model

/// One JSON record per line of `path`.
fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn metric(t: &mathneuro::eval::TaskResult, name: &str) -> f64 {
    t.metrics.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("{}: no metric {name} in {:?}", t.task, t.metrics.iter().map(|m| &m.name).collect::<Vec<_>>())).value
}

#[test]
fn issue27_mmlu_race_hellaswag_boolq_and_wikitext_score_on_the_real_model() {
    let model = Model::load(&common::real_model_path()).unwrap();
    let data = data_dir();
    let run = |tasks: Vec<Task>, limit: usize| {
        let mut o = EvalOptions::new(tasks, data.clone());
        o.limit = Some(limit);
        o.seed = 3;
        o.bootstrap = 50;
        o.progress = false;
        o.engine = EngineOptions { threads: 2, n_ctx: 4096, max_sequences: 8, ..EngineOptions::default() };
        eval::evaluate_model(&model, &o).unwrap()
    };
    let mc = run(vec![Task::Mmlu, Task::Race, Task::Hellaswag, Task::Boolq], 2);
    for t in &mc.tasks {
        eprintln!("{}: {:.1} s", t.task, t.wall_seconds);
        assert_eq!((t.n, t.items.len()), (2, 2), "{}", t.task);
        let acc = metric(t, "acc");
        assert!((0.0..=1.0).contains(&acc), "{} acc {acc}", t.task);
        for it in &t.items {
            assert!(it.scores.iter().all(|&(n, d)| d == 1.0 && (n == 0.0 || n == 1.0)), "{} item {}: {:?}", t.task, it.index, it.scores);
        }
    }
    // Each item's prompt is lm-eval's, built here from the data record the item names.
    let task = |t: Task| mc.task(t).unwrap();
    let mmlu = records(&data.join("mmlu/test.jsonl"));
    for it in &task(Task::Mmlu).items {
        let r = &mmlu[it.index];
        let c: Vec<&str> = r["choices"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        let expected = format!(
            "The following are multiple choice questions (with answers) about {}.\n\n{}\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer:",
            r["subject"].as_str().unwrap().replace('_', " "),
            r["question"].as_str().unwrap().trim(),
            c[0],
            c[1],
            c[2],
            c[3]
        );
        assert_eq!(it.prompt, expected, "MMLU item {}", it.index);
    }
    let hs = records(&data.join("hellaswag/validation.jsonl"));
    for it in &task(Task::Hellaswag).items {
        let r = &hs[it.index];
        assert!(it.prompt.starts_with(&format!("{}: ", r["activity_label"].as_str().unwrap())), "HellaSwag item {}: {:?}", it.index, it.prompt);
        let label: usize = r["label"].to_string().trim_matches('"').parse().unwrap();
        let gold = r["endings"][label].as_str().unwrap();
        if !gold.contains('[') {
            assert_eq!(it.target, gold.trim(), "HellaSwag item {}: the gold ending", it.index);
        }
    }
    let bq = records(&data.join("boolq/validation.jsonl"));
    for it in &task(Task::Boolq).items {
        let q = bq[it.index]["query"].as_str().unwrap();
        assert_eq!(it.prompt, format!("{}\nAnswer:", q.strip_prefix("Passage: ").unwrap()), "BoolQ item {}", it.index);
    }
    for it in &task(Task::Race).items {
        assert!(it.prompt.starts_with("Article: ") && it.prompt.contains("\nAnswer:"), "RACE item {}: {:?}", it.index, &it.prompt[..it.prompt.len().min(200)]);
    }
    // WikiText in non-overlapping 256-token windows: every token scored once, so the one long
    // article costs seconds, not minutes (the metric and the document are what is checked).
    let wiki = {
        let mut o = EvalOptions::new(vec![Task::Wikitext], data.clone());
        o.limit = Some(1);
        o.seed = 3;
        o.bootstrap = 50;
        o.progress = false;
        o.windows = mathneuro::eval::Windows { window: 256, stride: 256 };
        o.engine = EngineOptions { threads: 2, n_ctx: 4096, max_sequences: 8, ..EngineOptions::default() };
        eval::evaluate_model(&model, &o).unwrap()
    };
    let w = wiki.task(Task::Wikitext).unwrap();
    eprintln!("wikitext: {:.1} s", w.wall_seconds);
    assert_eq!(w.n, 1);
    let wp = metric(w, "word_perplexity");
    assert!((5.0..500.0).contains(&wp), "WikiText word perplexity {wp}");
    let raw = std::fs::read_to_string(data.join("wikitext2/wiki.test.raw.txt")).unwrap();
    // The raw file spaces headings as " = Title = \n"; compare with whitespace collapsed.
    let words = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    let head: String = w.items[0].prompt.chars().take(60).collect();
    let head = words(&head);
    let head = head.rsplit_once(' ').map_or(head.as_str(), |(h, _)| h);
    assert!(words(&raw).contains(head), "the WikiText document is not from the test file: {head:?}");
}

// ---------------------------------------------------------------------------------------------
// tune

/// The calibration texts `tune` draws by default, for building splits without a model.
fn default_calibration(data: &Path) -> Vec<String> {
    let mut calibration = Vec::new();
    for name in ["gsm8k", "mmlu"] {
        let set = mathneuro::data::calibration::load(name, Some(data)).unwrap();
        let drawn = mathneuro::calibrate::sample::draw(set.texts.len(), 100, 42, true).unwrap();
        calibration.extend(drawn.into_iter().map(|i| set.texts[i].clone()));
    }
    calibration
}

#[test]
fn issue27_a_planted_mmlu_or_arc_dev_test_leak_is_caught_by_the_split_check() {
    let data = data_dir();
    let sizes = SplitSizes { dev_gsm8k: 20, dev_general: 20, test_gsm8k: Some(20), test_general: 40 };
    let splits = Splits::build(&data, default_calibration(&data), sizes, 42).unwrap();
    splits.check().unwrap();
    let t = &splits.test;
    let mmlu = t.general_is_mmlu.iter().position(|&m| m).expect("an MMLU test item");
    let arc = t.general_is_mmlu.iter().position(|&m| !m).expect("an ARC-Easy test item");
    for (name, i) in [("MMLU", mmlu), ("ARC-Easy", arc)] {
        let q = t.general_questions[i].clone();
        // The very question, and the same one with its whitespace laid out differently.
        for planted in [q.clone(), format!("  {}\n", q.replace(' ', "  "))] {
            let mut leaky = splits.clone();
            leaky.dev.general_questions.push(planted);
            let err = leaky.check().expect_err(&format!("a planted {name} dev↔test leak passed the check")).to_string();
            assert!(err.contains("also a test question"), "{name}: {err}");
        }
        // A test question inside a calibration text is caught too.
        let mut leaky = splits.clone();
        leaky.calibration.push(format!("Some preamble.\n{q}\nAnswer: x"));
        assert!(leaky.check().unwrap_err().to_string().contains("inside a calibration text"), "{name}");
    }
}

const MODEL: &str = common::MODEL;

/// `tune` on the default model at a tiny budget, into `dir/best.gguf`.
fn tune(dir: &Path, extra: &[&str]) -> Output {
    let args = [
        "tune", MODEL, "--samples", "2", "--max-tokens", "32", "--candidates", "2", "--rounds", "1", "--budget", "8", "--guard-items", "2", "--general-items", "3",
        "--test-items", "2", "--test-general-items", "2", "--max-new-tokens", "16", "--threads", "2",
    ];
    let o = bin().args(args).args(extra).arg("--data-dir").arg(data_dir()).arg("-o").arg(dir.join("best.gguf")).output().unwrap();
    assert!(o.status.success(), "tune {extra:?} failed:\n{}", stderr(&o));
    o
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("best.tune/report.json")).unwrap()).unwrap()
}

/// Journal entries (after the header line): (model, measure, start, items).
fn journal(dir: &Path) -> Vec<(String, String, usize, usize)> {
    let text = std::fs::read_to_string(dir.join("best.tune/journal.jsonl")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["model"].as_str().unwrap().to_string(), v["measure"].as_str().unwrap().to_string(), v["start"].as_u64().unwrap() as usize, v["scores"].as_array().unwrap().len())
        })
        .collect()
}

/// "Test touched once": test items are scored only after the last dev score (after the choice),
/// only for the base, the chosen edit and the paper's setting, each item once.
fn assert_test_touched_once(dir: &Path, chosen: Option<&str>) {
    let j = journal(dir);
    let is_test = |m: &str| m.starts_with("test_");
    let first_test = j.iter().position(|e| is_test(&e.1)).expect("the test split was never scored");
    assert!(j[first_test..].iter().all(|e| is_test(&e.1)), "a dev score after the test pass: {j:?}");
    let mut allowed: BTreeSet<String> = ["base".to_string(), "k5-s1.1-all".to_string()].into();
    allowed.extend(chosen.map(str::to_string));
    let mut seen: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (model, measure, start, n) in &j[first_test..] {
        assert!(allowed.contains(model), "{model} was scored on the test split ({measure}); only {allowed:?} may be");
        seen.entry((model.clone(), measure.clone())).or_default().extend(*start..start + n);
    }
    for (k, items) in &seen {
        let unique: BTreeSet<_> = items.iter().collect();
        assert_eq!(unique.len(), items.len(), "{k:?}: a test item scored twice: {items:?}");
    }
}

#[test]
fn issue27_tune_nll_guard_discards_and_nothing_winning_returns_the_base_unchanged() {
    let a = tempfile::tempdir().unwrap();
    // A guard no edit can pass (its NLL would have to fall by 100 nats per token).
    let o = tune(a.path(), &["--guard-nll=-100"]);
    let r = report(a.path());
    for c in r["candidates"].as_array().unwrap() {
        assert!(c["fate"].as_str().unwrap().starts_with("discarded by the NLL guard"), "{c}");
        assert!(c["guard_nll_delta"].as_f64().unwrap() > -100.0);
    }
    assert!(r["chosen"].is_null(), "{}", r["verdict"]);
    assert!(r["verdict"].as_str().unwrap().contains("no candidate beat the base"), "{}", r["verdict"]);
    assert!(stderr(&o).contains("base model unchanged") || r["verdict"].as_str().unwrap().contains("base model unchanged"));
    assert_eq!(sha(&a.path().join("best.gguf")), sha(Path::new(MODEL)), "no winner: the output is the base, byte for byte");
    // Discarded candidates were never generated from (no dev CoT score but the base's).
    assert!(journal(a.path()).iter().all(|(m, meas, ..)| meas != "dev_cot" || m == "base"), "{:?}", journal(a.path()));
    assert_test_touched_once(a.path(), None);

    // No finalist gains enough (min-gain above the dev size): the same no-winner path.
    let b = tempfile::tempdir().unwrap();
    tune(b.path(), &["--guard-nll", "10", "--min-gain", "1000"]);
    let r = report(b.path());
    assert!(r["chosen"].is_null());
    assert!(r["candidates"].as_array().unwrap().iter().any(|c| c["fate"].as_str().unwrap().contains("< +1000 needed")), "{}", r["candidates"]);
    assert_eq!(sha(&b.path().join("best.gguf")), sha(Path::new(MODEL)));
    assert_test_touched_once(b.path(), None);
}

#[test]
fn issue27_tune_with_the_default_guard_gain_and_tolerance_decides_as_reported() {
    let dir = tempfile::tempdir().unwrap();
    // The defaults: guard +0.05 nats per token, min-gain 1, general tolerance 0.03.
    tune(dir.path(), &[]);
    let r = report(dir.path());
    let (guard, tolerance, min_gain) = (r["settings"]["guard"][1].as_f64().unwrap(), r["settings"]["general_tolerance"].as_f64().unwrap(), r["settings"]["min_gain"].as_i64().unwrap());
    assert_eq!((guard, tolerance, min_gain), (0.05, 0.03, 1), "the defaults changed: update this test");
    for c in r["candidates"].as_array().unwrap() {
        let fate = c["fate"].as_str().unwrap();
        let delta = c["guard_nll_delta"].as_f64().unwrap();
        assert_eq!(fate.starts_with("discarded by the NLL guard"), delta > guard, "guard {guard}: {c}");
        if fate.starts_with("discarded") {
            continue;
        }
        let gain = c["rounds"].as_array().unwrap().last().unwrap()["gain"].as_i64().unwrap();
        if gain < min_gain {
            assert!(fate.contains("needed") && c["general_dev"].is_null(), "gain {gain} < {min_gain}: {c}");
        } else if let Some(d) = c["general_dev"]["delta"].as_f64() {
            assert_eq!(fate == "chosen", d >= -tolerance - 1e-9, "tolerance {tolerance}: {c}");
        }
    }
    let chosen = r["chosen"].as_object().map(|_| {
        let c = r["candidates"].as_array().unwrap().iter().find(|c| c["fate"] == "chosen").expect("the chosen record");
        c["id"].as_str().unwrap().to_string()
    });
    if chosen.is_none() {
        assert_eq!(sha(&dir.path().join("best.gguf")), sha(Path::new(MODEL)), "no winner: the output is the base, byte for byte");
    }
    assert_test_touched_once(dir.path(), chosen.as_deref());
}
