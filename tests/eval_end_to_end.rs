//! A tiny evaluation on the real model: every kind of task runs, the report is consistent, the
//! files are written, a model evaluated twice (independently) shows no difference, and a missing data file
//! is reported by its expected path.

use std::path::Path;

use mathneuro::data::dir::resolve_data_dir;
use mathneuro::eval::{self, EngineOptions, EvalOptions, Gsm8kMode, Model, Task};

const MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";

fn options(tasks: Vec<Task>, data_dir: std::path::PathBuf) -> EvalOptions {
    let mut o = EvalOptions::new(tasks, data_dir);
    o.limit = Some(2);
    // Short answers keep the test quick; the harness setting (256) is the default.
    o.max_new_tokens = 40;
    o.seed = 7;
    o.bootstrap = 200;
    o.progress = false;
    o.gsm8k_mode = Gsm8kMode::Batched { parallel: 4 };
    o.engine = EngineOptions { threads: 2, n_ctx: 4096, max_sequences: 8, ..EngineOptions::default() };
    o
}

#[test]
fn tiny_evaluation_runs_every_kind_of_task() {
    assert!(Path::new(MODEL).exists(), "{MODEL} is missing: run models/fetch.sh to download the test model");
    let data = resolve_data_dir(None).expect("the data directory (set MATHNEURO_DATA)");
    let tasks = vec![Task::Gsm8k, Task::Gsm8kNll, Task::Gsm8kPpl, Task::Piqa, Task::ArcEasy];
    let opts = options(tasks.clone(), data);
    let model = Model::load(Path::new(MODEL)).unwrap();
    let report = eval::evaluate_model(&model, &opts).unwrap();
    assert_eq!(report.tasks.iter().map(|t| t.task).collect::<Vec<_>>(), tasks);
    for t in &report.tasks {
        assert_eq!(t.n, 2, "{}", t.task);
        assert_eq!(t.items.len(), 2);
        for m in &t.metrics {
            assert!(m.value.is_finite(), "{} {} = {}", t.task, m.name, m.value);
            assert!(m.ci95.0 <= m.value + 1e-9 && m.value <= m.ci95.1 + 1e-9, "{} {} {:?}", t.task, m.name, m.ci95);
        }
    }
    let gsm = report.task(Task::Gsm8k).unwrap();
    assert!(gsm.items.iter().all(|i| !i.output.contains("\n\n") && !i.output.contains("Q:")));
    let nll = report.task(Task::Gsm8kNll).unwrap().metrics[0].value;
    assert!(nll > 0.1 && nll < 5.0, "gsm8k_nll {nll}");
    let ppl = report.task(Task::Gsm8kPpl).unwrap();
    assert!(ppl.metrics.iter().any(|m| m.name == "token_perplexity" && m.value > 1.0 && m.value < 100.0));

    // The same model loaded and evaluated again, independently: the same items, prompts,
    // outputs and scores, so the comparison shows zero difference and McNemar p = 1.
    let again = eval::evaluate_model(&Model::load(Path::new(MODEL)).unwrap(), &opts).unwrap();
    for (a, b) in report.tasks.iter().zip(&again.tasks) {
        assert_eq!(a.items, b.items, "{}: a second evaluation of the same model differs", a.task);
    }
    let cmp = eval::compare_reports(&report, &again, 100, 1).unwrap();
    for t in &cmp.tasks {
        for m in &t.metrics {
            assert_eq!(m.diff, 0.0);
            if let Some(mc) = &m.mcnemar {
                assert_eq!(mc.p, 1.0);
            }
        }
    }
    let out = tempfile::tempdir().unwrap();
    eval::write_outputs(out.path(), &report, Some(&cmp)).unwrap();
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(md.contains("| gsm8k | strict-match"), "{md}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["tasks"].as_array().unwrap().len(), 5);
    let lines = std::fs::read_to_string(out.path().join("gsm8k.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2);
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert!(first["prompt"].as_str().unwrap().starts_with("Q: "));
    assert!(first["base"]["extracted"]["strict-match"].is_string());
}

#[test]
fn missing_data_file_names_the_expected_path() {
    let empty = tempfile::tempdir().unwrap();
    let opts = options(vec![Task::Boolq], empty.path().to_path_buf());
    assert!(Path::new(MODEL).exists(), "{MODEL} is missing: run models/fetch.sh to download the test model");
    let err = eval::evaluate(Path::new(MODEL), &opts).unwrap_err().to_string();
    assert!(err.contains("boolq/validation.jsonl"), "{err}");
}
