//! The `math` task and the MATH split: the split of the data file is stable (same seed, same
//! 500), stratified by subject and disjoint; the calibration texts never hold a test problem;
//! the prompt is the harness's `minerva_math` prompt; `eval --tasks math --limit 2` runs end to
//! end on the default model and `--resume` gives the same report.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use aho_corasick::AhoCorasick;
use mathneuro::data::calibration;
use mathneuro::data::math_split::{MATH_FILE, MathRecord, MathSplit, SPLIT_SEED, TEST_SIZE, quotas};
use mathneuro::eval::datasets::read_jsonl;
use mathneuro::eval::math::gold_boxed;
use mathneuro::eval::math_prompt::prompt;
use mathneuro::tune::splits::content_hash;

const MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";

/// The first test problems of the split (indices into `math/test.jsonl`).
const PINNED_FIRST_TEST: [usize; 8] = [10, 11, 25, 54, 55, 57, 59, 60];

/// The harness's 4-shot part, made by its own rule from `lm_eval/tasks/minerva_math/utils.py`
/// (v3.0): `"\n\n".join("Problem:\n" + p + "\n\nSolution:" + " " + s) + "\n\n"` over
/// `list_fewshot_samples()`, the strings as Python reads them.
const HARNESS_PREFIX: &str =
"Problem:\nFind the domain of the expression  $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.}\n\nSolution: The expressions inside each square root must be non-negative. Therefore, $x-2 \\ge 0$, so $x\\ge2$, and $5 - x \\ge 0$, so $x \\le 5$. Also, the denominator cannot be equal to zero, so $5-x>0$, which gives $x<5$. Therefore, the domain of the expression is $\\boxed{[2,5)}$.\nFinal Answer: The final answer is $[2,5)$. I hope it is correct.\n\n\
Problem:\nIf $\\det \\mathbf{A} = 2$ and $\\det \\mathbf{B} = 12,$ then find $\\det (\\mathbf{A} \\mathbf{B}).$\n\nSolution: We have that $\\det (\\mathbf{A} \\mathbf{B}) = (\\det \\mathbf{A})(\\det \\mathbf{B}) = (2)(12) = \\boxed{24}.$\nFinal Answer: The final answer is $24$. I hope it is correct.\n\n\
Problem:\nTerrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound weights instead, how many times must Terrell lift them in order to lift the same total weight?\n\nSolution: If Terrell lifts two 20-pound weights 12 times, he lifts a total of $2\\cdot 12\\cdot20=480$ pounds of weight.  If he lifts two 15-pound weights instead for $n$ times, he will lift a total of $2\\cdot15\\cdot n=30n$ pounds of weight.  Equating this to 480 pounds, we can solve for $n$:\n\\begin{align*}\n30n&=480\\\n\\Rightarrow\\qquad n&=480/30=\\boxed{16}\n\\end{align*}\nFinal Answer: The final answer is $16$. I hope it is correct.\n\n\
Problem:\nIf the system of equations\n\n\\begin{align*}\n6x-4y&=a,\\\n6y-9x &=b.\n\\end{align*}has a solution $(x, y)$ where $x$ and $y$ are both nonzero,\nfind $\\frac{a}{b},$ assuming $b$ is nonzero.\n\nSolution: If we multiply the first equation by $-\\frac{3}{2}$, we obtain\n\n$$6y-9x=-\\frac{3}{2}a.$$Since we also know that $6y-9x=b$, we have\n\n$$-\\frac{3}{2}a=b\\Rightarrow\\frac{a}{b}=\\boxed{-\\frac{2}{3}}.$$\nFinal Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.\n\n";

fn data_dir() -> PathBuf {
    let p = std::env::var_os("MATHNEURO_DATA").map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"), PathBuf::from);
    assert!(p.join(MATH_FILE).exists(), "{} is missing: the data sets live beside the checkout", p.join(MATH_FILE).display());
    p
}

#[test]
fn the_split_is_stable_stratified_and_disjoint() {
    let dir = data_dir();
    let split = MathSplit::load(&dir).unwrap();
    let records: Vec<MathRecord> = read_jsonl(&dir, MATH_FILE).unwrap();
    assert_eq!(records.len(), 5000);
    assert_eq!(split.test.len(), TEST_SIZE);
    // Same seed, same 500 (and these exact ones: the test part must never move).
    assert_eq!(MathSplit::build(records.clone(), TEST_SIZE, SPLIT_SEED).test, split.test);
    assert_eq!(&split.test[..8], &PINNED_FIRST_TEST);
    assert_ne!(MathSplit::build(records.clone(), TEST_SIZE, SPLIT_SEED + 1).test, split.test);
    // Stratified: each subject gives its proportional share.
    let count = |idx: &mut dyn Iterator<Item = usize>| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for i in idx {
            *m.entry(records[i].category.clone()).or_default() += 1;
        }
        m
    };
    let all = count(&mut (0..records.len()));
    assert_eq!(all.len(), 7);
    assert_eq!(count(&mut split.test.iter().copied()), quotas(&all, TEST_SIZE));
    // Disjoint, by index and by normalised problem text.
    split.check().unwrap();
    let test: HashSet<usize> = split.test.iter().copied().collect();
    assert!(split.rest.iter().chain(&split.dropped).all(|i| !test.contains(i)));
    assert_eq!(split.test.len() + split.rest.len() + split.dropped.len(), records.len());
    let test_hashes: HashSet<[u8; 32]> = split.test.iter().map(|&i| content_hash(&records[i].context)).collect();
    assert!(split.rest.iter().all(|&i| !test_hashes.contains(&content_hash(&records[i].context))));
    assert!(split.dropped.len() < 50, "{} problems dropped as repeats of test problems", split.dropped.len());
    // The gold answer as the harness forms it (last \boxed{} of the solution) is the data's own.
    let differ = records.iter().filter(|r| gold_boxed(r) != r.answer).count();
    assert_eq!(differ, 0, "{differ} solutions whose last \\boxed{{}} is not the `answer` field");
}

#[test]
fn calibration_texts_never_contain_a_test_problem() {
    let dir = data_dir();
    let split = MathSplit::load(&dir).unwrap();
    let set = calibration::load("math", Some(&dir)).unwrap();
    assert_eq!(set.texts, split.calibration_texts());
    assert_eq!(set.texts.len(), split.rest.len());
    assert!(set.texts.len() > 4400, "{}", set.texts.len());
    let problems: Vec<&str> = split.test.iter().map(|&i| split.records[i].context.trim()).collect();
    let finder = AhoCorasick::new(&problems).unwrap();
    for (k, text) in set.texts.iter().enumerate() {
        assert!(!finder.is_match(text), "calibration text {k} holds a test problem");
    }
    // The chat split of each text is (problem, solution).
    let (user, assistant) = set.turns(0);
    let first = &split.records[split.rest[0]];
    assert_eq!((user, assistant), (first.context.as_str(), first.chain_of_thought.as_str()));
}

#[test]
fn the_prompt_is_the_harness_prompt() {
    let split = MathSplit::load(&data_dir()).unwrap();
    let problem = &split.records[split.test[0]].context;
    let expected = format!("{HARNESS_PREFIX}Problem:\n{problem}\n\nSolution:");
    assert_eq!(prompt(problem).as_bytes(), expected.as_bytes());
    assert!(HARNESS_PREFIX.contains("30n&=480\\\n\\Rightarrow"), "one backslash before the newline, as Python reads the harness");
}

fn eval(out: &Path, resume: bool) -> std::process::Output {
    assert!(Path::new(MODEL).exists(), "{MODEL} is missing: run models/fetch.sh (tests need it and do not skip)");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mathneuro"));
    cmd.args(["eval", MODEL, "--tasks", "math", "--limit", "2", "--max-new-tokens", "48", "--threads", "2", "--parallel", "2"])
        .args(["--bootstrap", "50", "--no-progress", "--ctx-size", "4096", "--data-dir"])
        .arg(data_dir())
        .arg("--out")
        .arg(out);
    if resume {
        cmd.arg("--resume");
    }
    cmd.output().unwrap()
}

#[test]
fn eval_math_runs_end_to_end_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eval");
    let res = eval(&out, false);
    assert!(res.status.success(), "eval failed:\n{}", String::from_utf8_lossy(&res.stderr));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| math | exact_match |") && md.contains("| math | exact_match:algebra |"), "{md}");
    let report = |p: &Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(p.join("report.json")).unwrap()).unwrap() };
    let first = report(&out);
    let task = &first["tasks"][0];
    assert_eq!(task["task"], "math");
    assert_eq!(task["n"], 2);
    assert_eq!(task["n_available"], 500);
    let names: Vec<&str> = task["metrics"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(&names[..3], &["exact_match", "boxed_match", "strip_equiv"]);
    assert_eq!(names.len(), 10);
    let lines = std::fs::read_to_string(out.join("math.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2);
    for line in lines.lines() {
        let item: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(item["prompt"].as_str().unwrap().starts_with("Problem:\n"), "{item}");
        assert!(item["prompt"].as_str().unwrap().ends_with("\n\nSolution:"), "{item}");
        assert!(!item["output"].as_str().unwrap().contains("Problem:"), "{item}");
        assert!(item["extracted"]["exact_match"].is_string() && item["extracted"]["category"].is_string(), "{item}");
    }
    // Resumed from the item files: nothing decoded again, the same results.
    let again = eval(&out, true);
    assert!(again.status.success(), "resume failed:\n{}", String::from_utf8_lossy(&again.stderr));
    let second = report(&out);
    assert_eq!(second["tasks"][0]["metrics"], task["metrics"]);
    assert_eq!(std::fs::read_to_string(out.join("math.jsonl")).unwrap(), lines);
}
