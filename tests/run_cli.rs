//! `mathneuro run` end to end on the default model with a small sample count: calibration on
//! both sets with one loaded model, selection, the rewritten GGUF with its Modelfile, report,
//! heat map and STATS files, provenance visible to `inspect`, and the before/after table; the
//! weights are exactly what `apply` writes from the same STATS, and the input is left unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;

use mathneuro::gguf::GgufFile;

const MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";

fn bin() -> Command {
    assert!(Path::new(MODEL).exists(), "{MODEL} is missing: run models/fetch.sh (tests need it and do not skip)");
    Command::new(env!("CARGO_BIN_EXE_mathneuro"))
}

fn shared_data() -> PathBuf {
    let p = std::env::var_os("MATHNEURO_DATA").map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"), PathBuf::from);
    assert!(p.join("gsm8k/train.jsonl").exists(), "{} is missing: the data sets live beside the checkout", p.display());
    p
}

#[test]
fn run_calibrates_selects_writes_and_compares() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gemma-mathneuro.gguf");
    let model_before = std::fs::read(MODEL).unwrap();
    let res = bin()
        .args(["run", MODEL, "--samples", "3", "--max-tokens", "96", "--threads", "2", "--eval", "arc_easy", "--eval-limit", "6"])
        .arg("--data-dir")
        .arg(shared_data())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "run failed:\n{stderr}");
    // Calibration used GSM8K vs MMLU from the data directory, 3 samples each.
    assert!(stderr.contains("calibrated gsm8k: 3 samples") && stderr.contains("calibrated mmlu: 3 samples"), "{stderr}");
    for side in ["gemma-mathneuro.report.json", "gemma-mathneuro.heatmap.svg", "gemma-mathneuro.math-stats.gguf", "gemma-mathneuro.general-stats.gguf", "Modelfile"] {
        assert!(dir.path().join(side).exists(), "{side} was not written");
    }
    assert!(dir.path().join("gemma-mathneuro.eval/report.json").exists());
    // The apply summary, then the before/after comparison on identical items.
    assert!(stdout.contains("# mathneuro apply"), "{stdout}");
    assert!(stdout.contains("## Before / after") && stdout.contains("| arc_easy | acc"), "{stdout}");

    // The weights changed exactly as `apply` with the same STATS changes them: every tensor's
    // bytes equal (the whole file apart from provenance keys), and at least one target changed.
    let applied = dir.path().join("applied.gguf");
    let a = bin()
        .args(["apply", MODEL, "--scale", "1.1", "--no-modelfile", "--math"])
        .arg(dir.path().join("gemma-mathneuro.math-stats.gguf"))
        .arg("--general")
        .arg(dir.path().join("gemma-mathneuro.general-stats.gguf"))
        .arg("-o")
        .arg(&applied)
        .output()
        .unwrap();
    assert!(a.status.success(), "apply failed:\n{}", String::from_utf8_lossy(&a.stderr));
    let (ran, app, base) = (GgufFile::open(&out).unwrap(), GgufFile::open(&applied).unwrap(), GgufFile::open(MODEL).unwrap());
    assert_eq!(ran.tensors.len(), app.tensors.len());
    let mut changed = 0;
    for ((r, p), b) in ran.tensors.iter().zip(&app.tensors).zip(&base.tensors) {
        assert_eq!((&r.name, r.ggml_type), (&p.name, p.ggml_type));
        assert!(ran.tensor_data(r) == app.tensor_data(p), "{}: run and apply wrote different bytes", r.name);
        changed += usize::from(ran.tensor_data(r) != base.tensor_data(b));
    }
    assert!(changed > 0, "run left every tensor as it was");
    assert!(std::fs::read(MODEL).unwrap() == model_before, "run changed its input model");

    let inspect = bin().arg("inspect").arg(&out).arg("--json").output().unwrap();
    assert!(inspect.status.success());
    let json: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let text = json.to_string();
    assert!(text.contains("mathneuro.method") && text.contains("mathneuro.scale"), "provenance keys missing: {text}");
}

#[test]
fn run_without_a_data_directory_uses_the_built_in_texts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let res = bin()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("MATHNEURO_DATA", dir.path().join("no-such-dir"))
        .args(["run", MODEL, "--samples", "2", "--max-tokens", "64", "--threads", "2", "--prune"])
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "run failed:\n{stderr}");
    assert!(stderr.contains("built-in calibration texts") && stderr.contains("calibrated embedded-math"), "{stderr}");
    assert!(out.exists());
    // A second run refuses to overwrite without --force, naming the file.
    let again = bin().env("MATHNEURO_DATA", dir.path().join("no-such-dir")).args(["run", MODEL, "--samples", "2"]).arg("-o").arg(&out).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists (pass --force"));
}
