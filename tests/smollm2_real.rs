//! The real llama-architecture model of issue 25 §1, SmolLM2-135M-Instruct Q4_1 (llama, tied head;
//! `models/fetch.sh smollm2-135m-instruct`): calibration captures every target, a prune with the
//! default `--edit keep` makes every selected entry exactly 0 (its Q4_1 blocks refit so that 0 is
//! on their grid) and llama.cpp loads and generates from the output, and `--chat` renders the
//! model's own ChatML template. Two texts of 32 tokens keep it within CI's time. And `run --prune`
//! end to end: the pruned model loses math (GSM8K gold-solution NLL rises, its paired interval
//! above 0) while ARC-Easy holds (no detectable fall: its paired interval reaches 0), 80 items each.

use std::path::PathBuf;

use crate::apply_support;

use mathneuro::calibrate::{CalibrateOptions, Calibrator};
use mathneuro::chat::ChatFormat;
use mathneuro::ffi::ggml;
use mathneuro::ffi::llama::Model;
use mathneuro::gguf::{GgmlType, GgufFile};
use mathneuro::surgery::{self, ApplyOptions, Change};

fn smollm2() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "{} is missing: run models/fetch.sh smollm2-135m-instruct", p.display());
    p
}

#[test]
fn smollm2_calibrate_captures_every_target_and_a_q4_1_prune_is_exact_and_loads() {
    let path = smollm2();
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.get_str("general.architecture"), Some("llama"));
    let targets: Vec<String> = mathneuro::model::target_weights(&file).iter().map(|t| t.name.clone()).collect();
    // 30 layers × 7 matrices; the head is tied to token_embd, so it is no target of its own.
    assert_eq!(targets.len(), 30 * 7, "{targets:?}");
    assert!(file.tensors.iter().any(|t| t.ggml_type == GgmlType::Q4_1), "the file is Q4_1");

    let model = Model::load(&path).unwrap();
    let opts = CalibrateOptions { threads: 2, max_tokens: 32, ..CalibrateOptions::default() };
    let mut cal = Calibrator::new(&model, &opts).unwrap();
    let math = cal.run(&["Natalia sold 48 clips in April and half as many in May. 48 / 2 = 24, 48 + 24 = 72.".to_string()]).unwrap();
    let general = cal.run(&["The French Revolution began in 1789 and reshaped the politics of Europe.".to_string()]).unwrap();
    drop(cal);
    drop(model);
    let mut names: Vec<&String> = math.weights.keys().collect();
    names.sort();
    let mut want: Vec<&String> = targets.iter().collect();
    want.sort();
    assert_eq!(names, want, "calibration captures exactly the targets");
    assert!(math.weights.values().all(|w| w.norm_sum.iter().all(|v| v.is_finite()) && w.norm_sum.iter().any(|v| *v > 0.0)));

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pruned.gguf");
    let opts = ApplyOptions { write_modelfile: false, write_report: false, progress: false, ..ApplyOptions::new(Change::Prune, &out) };
    let report = apply_support::two_threads(|| surgery::apply(&file, &math, &general, &opts)).unwrap();
    assert!(report.selected > 0);
    assert_eq!(report.totals.selected_exact, report.selected, "every pruned entry is exactly 0");
    let selection = mathneuro::select::select(&file, &math, &general, &opts.select).unwrap();
    let written = GgufFile::open(&out).unwrap();
    let ts = selection.tensors.iter().find(|t| t.selected > 0 && t.ggml_type == GgmlType::Q4_1).expect("a selected Q4_1 target");
    let b = written.tensor(&ts.name).unwrap();
    assert_eq!(b.ggml_type, GgmlType::Q4_1, "keep keeps the type");
    let after = ggml::dequantize_to_vec(b.ggml_type, written.tensor_data(b), b.n_elements() as usize).unwrap();
    assert!((0..after.len()).filter(|&i| ts.mask.get(i as u64)).all(|i| after[i] == 0.0), "{}", ts.name);
    assert!(!apply_support::generate(&out, 6).trim().is_empty(), "the pruned model generates");

    // `--chat` renders SmolLM2's own (ChatML) template.
    let chat = ChatFormat::of_model(&path).unwrap();
    let text = chat.user_prompt("What is 2 + 3?").unwrap();
    assert!(text.contains("<|im_start|>user") && text.contains("What is 2 + 3?") && text.trim_end().ends_with("<|im_start|>assistant"), "{text}");
}

#[test]
fn smollm2_run_prune_end_to_end_removes_math_while_arc_easy_holds() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smollm2-pruned.gguf");
    let eval = dir.path().join("eval");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mathneuro"))
        .arg("run")
        .arg(smollm2())
        .args(["--prune", "--top-k", "5", "--samples", "16", "--max-tokens", "128", "--eval", "gsm8k_nll,arc_easy", "--eval-limit", "80", "--threads", "2", "--quiet", "-o"])
        .arg(&out)
        .arg("--eval-out")
        .arg(&eval)
        .output()
        .unwrap();
    assert!(o.status.success(), "run --prune failed: {}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(eval.join("report.json")).unwrap()).unwrap();
    let metric = |task: &str, name: &str| -> (f64, f64, f64) {
        let t = report["tasks"].as_array().unwrap().iter().find(|t| t["task"] == task).unwrap_or_else(|| panic!("{task} missing: {report}"));
        assert_eq!(t["n"].as_u64(), Some(80), "{task}: {t}");
        let m = t["metrics"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("{task} {name} missing: {t}"));
        (m["diff"].as_f64().unwrap(), m["diff_ci95"][0].as_f64().unwrap(), m["diff_ci95"][1].as_f64().unwrap())
    };
    let (nll, nll_lo, _) = metric("gsm8k_nll", "nll_per_token");
    assert!(nll > 0.0 && nll_lo > 0.0, "the prune left math alone: gsm8k_nll {nll:+.4}, interval from {nll_lo:+.4}");
    let (acc, _, acc_hi) = metric("arc_easy", "acc");
    assert!(acc_hi >= 0.0, "the prune took general ability too: arc_easy acc {acc:+.3}, its interval wholly below 0 (up to {acc_hi:+.3})");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("gsm8k_nll: worse ("), "the verdict does not say math got worse: {stdout}");
}
