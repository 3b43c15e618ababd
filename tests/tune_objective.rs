//! `tune`'s objective beyond GSM8K (issue 26): MATH and the user's own generation questions
//! (`--task-file`), end to end on the default model at tiny sizes — the report names the task,
//! dev and test are disjoint (MATH's dev outside its 500 test problems, its test inside), and
//! `--chat` on a model without a chat template, or a multiple-choice task file, is refused
//! before any work.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

use mathneuro::data::math_split::MathSplit;
use mathneuro::tune::objective::{Objective, Question};
use mathneuro::tune::splits::{SplitSizes, Splits, content_hash};

use crate::common::{data_dir, fails_with, real_model_path, stderr};

/// A task file of `n` distinct generation questions, plus one repeated question.
fn own_file(dir: &Path, n: usize) -> std::path::PathBuf {
    let mut text = String::new();
    for i in 1..=n {
        text.push_str(&format!("{{\"question\": \"What is {i} plus {}?\", \"answer\": {}}}\n", i + 3, 2 * i + 3));
    }
    text.push_str("{\"question\": \"What is 1 plus  4?\", \"answer\": 5}\n");
    let p = dir.join("own.jsonl");
    std::fs::write(&p, text).unwrap();
    p
}

/// `tune` at the smallest sizes that still search, test and write a model.
fn tune(dir: &Path, extra: &[&str]) -> Output {
    let args = [
        "tune", "--samples", "2", "--max-tokens", "32", "--candidates", "1", "--rounds", "1", "--budget", "4", "--guard-items", "2", "--general-items", "1",
        "--test-items", "2", "--test-general-items", "1", "--max-new-tokens", "16", "--threads", "2", "--guard-nll", "10",
        "--general-tolerance", "1", "-q",
    ];
    Command::new(env!("CARGO_BIN_EXE_mathneuro"))
        .args(args)
        .arg(real_model_path())
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir())
        .arg("-o")
        .arg(dir.join("best.gguf"))
        .output()
        .unwrap()
}

fn report(dir: &Path) -> (serde_json::Value, String) {
    let work = dir.join("best.tune");
    let json = serde_json::from_str(&std::fs::read_to_string(work.join("report.json")).unwrap()).unwrap();
    (json, std::fs::read_to_string(work.join("report.md")).unwrap())
}

fn sizes(dev: usize, test: Option<usize>) -> SplitSizes {
    SplitSizes { dev_gsm8k: dev, dev_general: 1, test_gsm8k: test, test_general: 1 }
}

fn texts(side: &[Question]) -> Vec<String> {
    side.iter().map(|q| q.text().to_string()).collect()
}

#[test]
fn tune_task_file_splits_are_seeded_halves_disjoint_and_leak_checked() {
    let dir = tempfile::tempdir().unwrap();
    let objective = Objective::task_file(&own_file(dir.path(), 20)).unwrap();
    let split = |cal: Vec<String>, seed| Splits::build_for(&data_dir(), &objective, cal, sizes(usize::MAX, None), seed).unwrap();
    let s = split(Vec::new(), 42);
    s.check().unwrap();
    // 20 distinct questions (the repeat is kept once, in one half): test 10, dev 10.
    assert_eq!((s.test.task.len(), s.dev.task.len()), (10, 10));
    assert!(s.dev.gsm8k.is_empty() && s.test.gsm8k.is_empty(), "no GSM8K question with another objective");
    let test: HashSet<[u8; 32]> = s.test.task.iter().map(|q| content_hash(q.text())).collect();
    assert!(s.dev.task.iter().all(|q| !test.contains(&content_hash(q.text()))), "dev and test share a question");
    // The same seed gives the same split; a smaller size is a prefix of a larger one.
    assert_eq!(texts(&split(Vec::new(), 42).dev.task), texts(&s.dev.task));
    assert_ne!(texts(&split(Vec::new(), 7).test.task), texts(&s.test.task), "the seed draws the halves");
    let small = Splits::build_for(&data_dir(), &objective, Vec::new(), sizes(3, Some(4)), 42).unwrap();
    assert_eq!(texts(&small.dev.task), texts(&s.dev.task)[..3]);
    assert_eq!(texts(&small.test.task), texts(&s.test.task)[..4]);
    // A question inside a calibration text is in neither half.
    let planted = s.dev.task[0].text().to_string();
    let leaky = split(vec![format!("Q: {planted}\nA: 9")], 42);
    leaky.check().unwrap();
    assert!(!texts(&leaky.dev.task).contains(&planted) && !texts(&leaky.test.task).contains(&planted));
    assert_eq!(leaky.dev.task.len(), 9);
    // A planted leak is caught by the check.
    let mut bad = s.clone();
    bad.dev.task.push(bad.test.task[0].clone());
    assert!(bad.check().unwrap_err().to_string().contains("also a test question"));
}

#[test]
fn tune_math_dev_comes_from_outside_the_500_test_problems_and_test_from_them() {
    let math = MathSplit::load(&data_dir()).unwrap();
    let (test, rest): (HashSet<usize>, HashSet<usize>) = (math.test.iter().copied().collect(), math.rest.iter().copied().collect());
    let s = Splits::build_for(&data_dir(), &Objective::Math, Vec::new(), sizes(300, None), 42).unwrap();
    s.check().unwrap();
    assert_eq!((s.dev.task.len(), s.test.task.len()), (300, 500), "all 500 test problems with --test-items all");
    let index = |q: &Question| match q {
        Question::Math(i, _) => *i,
        Question::Own(..) => panic!("a task-file question in a MATH split"),
    };
    assert!(s.test.task.iter().all(|q| test.contains(&index(q))), "a tune test problem outside MATH's test part");
    assert!(s.dev.task.iter().all(|q| rest.contains(&index(q))), "a tune dev problem from MATH's test part");
}

#[test]
fn tune_optimises_a_task_file_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let file = own_file(dir.path(), 16);
    let out = tune(dir.path(), &["--task-file", file.to_str().unwrap()]);
    assert!(out.status.success(), "tune --task-file failed:\n{}", stderr(&out));
    let (json, md) = report(dir.path());
    assert_eq!(json["settings"]["objective"], format!("task_file {}", file.display()));
    let splits = &json["splits"];
    assert_eq!((splits["dev_task"].as_u64(), splits["test_task"].as_u64()), (Some(4), Some(2)), "{splits}");
    assert!(json["test_base"]["n_task"].as_u64() == Some(2) && json.get("test_gsm8k").is_none(), "{json}");
    assert!(md.contains("objective task file own.jsonl flexible-extract") && md.contains("own.jsonl exact-match Δ"), "{md}");
    assert!(dir.path().join("best.gguf").is_file());
}

#[test]
fn tune_optimises_math_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = tune(dir.path(), &["--task", "math"]);
    assert!(out.status.success(), "tune --task math failed:\n{}", stderr(&out));
    let (json, md) = report(dir.path());
    assert_eq!(json["settings"]["objective"], "math");
    assert_eq!(json["splits"]["test_task"].as_u64(), Some(2));
    assert!(md.contains("MATH (Minerva 4-shot) boxed_match") && md.contains("MATH problems outside its 500-problem test part"), "{md}");
    assert!(md.contains("MATH exact_match") && md.contains("boxed_match"), "{md}");
}

#[test]
fn tune_refuses_chat_without_a_template_and_choice_task_files_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    // The default model (Gemma 3 270M base) has no chat template.
    let e = fails_with(&tune(dir.path(), &["--task", "math", "--chat"]), &["--chat", "tokenizer.chat_template", "drop --chat"]);
    assert!(!e.contains("panicked"), "{e}");
    let choice = dir.path().join("choice.jsonl");
    std::fs::write(&choice, "{\"question\": \"Which?\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n").unwrap();
    fails_with(&tune(dir.path(), &["--task-file", choice.to_str().unwrap()]), &["choice.jsonl", "multiple-choice", "generation task"]);
    fails_with(&tune(dir.path(), &["--task", "math", "--task-file", choice.to_str().unwrap()]), &["--task-file", "--task"]);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("choice.jsonl")], "a refused run leaves nothing behind");
}
