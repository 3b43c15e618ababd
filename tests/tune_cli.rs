//! `mathneuro tune` on the default model at a tiny budget: the data splits are disjoint
//! (asserted on the real data), the same seed gives the same choice and the same output bytes,
//! and a run interrupted mid-search then resumed reuses its journal and ends exactly where an
//! uninterrupted one does. issue27_promises.rs runs it with the guard, tolerance and no-winner
//! path on.

use std::path::{Path, PathBuf};
use std::process::Command;

use mathneuro::gguf::GgufFile;
use mathneuro::tune::splits::{SplitSizes, Splits, content_hash};

const MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";

fn shared_data() -> PathBuf {
    let p = std::env::var_os("MATHNEURO_DATA").map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"), PathBuf::from);
    assert!(p.join("gsm8k/train.jsonl").exists(), "{} is missing: the data sets live beside the checkout", p.display());
    p
}

#[test]
fn tune_splits_are_disjoint_on_the_real_data() {
    let data = shared_data();
    // The calibration texts `tune` measures by default: 100 GSM8K train + 100 MMLU test texts.
    let mut calibration = Vec::new();
    for name in ["gsm8k", "mmlu"] {
        let set = mathneuro::data::calibration::load(name, Some(&data)).unwrap();
        let drawn = mathneuro::calibrate::sample::draw(set.texts.len(), 100, 42, true).unwrap();
        calibration.extend(drawn.into_iter().map(|i| set.texts[i].clone()));
    }
    let sizes = SplitSizes { dev_gsm8k: 500, dev_general: 100, test_gsm8k: None, test_general: 300 };
    let splits = Splits::build(&data, calibration.clone(), sizes, 42).unwrap();
    splits.check().unwrap();
    assert_eq!(splits.test.gsm8k.len(), 1319, "no GSM8K test question is in the calibration texts, so all are kept");
    assert_eq!(splits.dev.gsm8k.len(), 500);
    let dev: Vec<[u8; 32]> = splits.dev.gsm8k.iter().map(|(_, r)| content_hash(&r.question)).collect();
    let test: std::collections::HashSet<[u8; 32]> = splits.test.gsm8k.iter().map(|(_, r)| content_hash(&r.question)).collect();
    assert!(dev.iter().all(|h| !test.contains(h)));
    assert!(splits.dev.gsm8k.iter().all(|(_, r)| !calibration.iter().any(|t| t.contains(r.question.trim()))));
    // MMLU test items drawn for calibration are kept out of the test side.
    assert!(splits.test.general_questions.iter().all(|q| !calibration.iter().any(|t| t.contains(q.trim()))));
    // The data repeat a few questions (ARC-Easy holds one under two ids, and at 500 test items
    // per task it once reached both sides): a large test size still checks, keeps the dev set,
    // and extends the smaller test set as a prefix (so a journal stays valid).
    let big = Splits::build(&data, calibration.clone(), SplitSizes { test_general: 1000, ..sizes }, 42).unwrap();
    big.check().unwrap();
    assert_eq!(big.dev.general_questions, splits.dev.general_questions);
    assert_eq!(big.test.general_questions[..splits.test.general_questions.len()], splits.test.general_questions[..]);
    assert!(big.test.general_questions.len() >= 1900, "{} test items", big.test.general_questions.len());
    // A leak planted by hand is caught.
    let mut leaky = splits.clone();
    leaky.dev.gsm8k.push(leaky.test.gsm8k[0].clone());
    assert!(leaky.check().unwrap_err().to_string().contains("also a test question"));
}

fn tune(dir: &Path, extra: &[&str]) -> std::process::Output {
    assert!(Path::new(MODEL).exists(), "{MODEL} is missing: run models/fetch.sh (tests need it and do not skip)");
    let args = [
        "tune", MODEL, "--samples", "2", "--max-tokens", "32", "--candidates", "2", "--rounds", "2", "--budget", "16", "--guard-items", "2",
        "--general-items", "2", "--test-items", "2", "--test-general-items", "2", "--max-new-tokens", "24", "--min-gain", "0", "--threads", "2",
        // A loose guard and tolerance: the tiny calibration makes noisy selections, one flip in
        // 4 general items is 25 points, and the test needs a winner to compare bytes.
        "--guard-nll", "10", "--general-tolerance", "1",
    ];
    Command::new(env!("CARGO_BIN_EXE_mathneuro")).args(args).args(extra).arg("--data-dir").arg(shared_data()).arg("-o").arg(dir.join("best.gguf")).output().unwrap()
}

/// report.json without the wall times and with the output path neutralised (the only parts
/// allowed to differ between runs in two directories).
fn decisions(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("best.tune/report.json")).unwrap();
    let out = serde_json::to_string(&dir.join("best.gguf")).unwrap();
    let text = text.replace(out.trim_matches('"'), "OUT");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_object_mut().unwrap().remove("wall");
    v
}

#[test]
fn tune_is_deterministic_and_resume_equals_an_uninterrupted_run() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let full = tune(a.path(), &[]);
    assert!(full.status.success(), "tune failed:\n{}", String::from_utf8_lossy(&full.stderr));
    let stderr = String::from_utf8_lossy(&full.stderr);
    assert!(stderr.contains("round 2/2") && stderr.contains("ETA"), "progress lines: {stderr}");

    let cut = tune(b.path(), &["--stop-after", "5"]);
    assert!(!cut.status.success() && String::from_utf8_lossy(&cut.stderr).contains("--resume"), "{}", String::from_utf8_lossy(&cut.stderr));
    let journal = |d: &Path| std::fs::read_to_string(d.join("best.tune/journal.jsonl")).unwrap();
    let cut_journal = journal(b.path());
    assert_eq!(cut_journal.lines().count(), 1 + 5, "a header and the 5 chunks before the stop");
    let refused = tune(b.path(), &[]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("pass --resume"), "an earlier run is not silently overwritten");
    let resumed = tune(b.path(), &["--resume"]);
    assert!(resumed.status.success(), "resume failed:\n{}", String::from_utf8_lossy(&resumed.stderr));

    // The resumed run reused the journal: its 5 chunks are kept as written (their timings
    // included, so none was evaluated again), and only the rest was added — as many chunks in all
    // as the uninterrupted run.
    let resumed_journal = journal(b.path());
    assert!(resumed_journal.starts_with(&cut_journal), "--resume rewrote the journal's finished chunks");
    assert_eq!(resumed_journal.lines().count(), journal(a.path()).lines().count(), "--resume evaluated a chunk again");

    let report = decisions(a.path());
    assert_eq!(report, decisions(b.path()), "same choice, same dev and test scores");
    assert!(report["chosen"].is_object(), "with --min-gain 0 a candidate is written: {}", report["verdict"]);
    let bytes = |d: &Path| std::fs::read(d.join("best.gguf")).unwrap();
    assert!(bytes(a.path()) == bytes(b.path()), "same seed, same output bytes");
    // The chosen edit changed some target tensors and nothing else (whole files always differ
    // by the provenance keys, so compare tensor data).
    let (best, base) = (GgufFile::open(a.path().join("best.gguf")).unwrap(), GgufFile::open(MODEL).unwrap());
    let targets: std::collections::HashSet<String> = mathneuro::model::target_weights(&base).into_iter().map(|t| t.name.clone()).collect();
    let mut changed = 0;
    for (t, u) in best.tensors.iter().zip(&base.tensors) {
        assert_eq!(t.name, u.name);
        if best.tensor_data(t) != base.tensor_data(u) {
            assert!(targets.contains(&t.name), "{} is not a target but changed", t.name);
            changed += 1;
        }
    }
    assert!(changed > 0, "the chosen edit changed no target tensor");
    for f in ["report.md", "search.svg", "journal.jsonl"] {
        assert!(a.path().join("best.tune").join(f).exists(), "{f} missing");
    }
    assert!(!std::fs::read_dir(a.path().join("best.tune")).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("candidate-")), "candidate files are removed");
    let again = tune(a.path(), &[]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"), "the output is not overwritten without --force");
}
