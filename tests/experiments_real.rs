//! `mathneuro experiments` end to end on the default model with a tiny configuration (2
//! calibration samples, K = 5, a few ARC-Easy items): STATS cached per (set, samples, seed),
//! every setting paired with the base report, overlaps, the layer map, plots, no temporary
//! models left behind, and a rerun that reuses the cached STATS.

use std::path::{Path, PathBuf};
use std::process::Command;

const MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";

fn bin() -> Command {
    assert!(Path::new(MODEL).exists(), "{MODEL} is missing: run models/fetch.sh (tests need it and do not skip)");
    let mut c = Command::new(env!("CARGO_BIN_EXE_mathneuro"));
    c.env("OMP_WAIT_POLICY", "PASSIVE");
    c
}

fn shared_data() -> PathBuf {
    mathneuro::data::dir::resolve_data_dir(None).unwrap_or_else(|e| panic!("these tests need the shared data sets: {e}"))
}

fn run(out: &Path, extra: &[&str]) -> (String, String) {
    let res = bin()
        .args(["experiments", MODEL, "--quick", "--samples", "2", "--seeds", "2", "--limits", "arc_easy=4", "--threads", "2"])
        .args(extra)
        .arg("--data-dir")
        .arg(shared_data())
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr).into_owned();
    assert!(res.status.success(), "experiments failed:\n{stderr}");
    (String::from_utf8_lossy(&res.stdout).into_owned(), stderr)
}

#[test]
fn experiments_run_end_to_end_and_reuse_cached_stats() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exp");
    let (stdout, stderr) = run(&out, &["--only", "1,3,4,5"]);
    assert!(stderr.contains("estimated total"), "a time estimate comes first:\n{stderr}");

    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    // Experiment 1: three methods at K=5; experiment 3 adds the 1-sample mask (the 2-sample
    // MathNeuro prune is shared with experiment 1, evaluated once).
    let labels: Vec<&str> = rows.iter().map(|r| r["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["mathneuro K=5 prune", "wanda K=5 prune", "random K=5 prune", "mathneuro K=5 prune (1 sample)"]);
    assert_eq!(rows[0]["experiments"], serde_json::json!([1, 3]));
    let selected = |i: usize| rows[i]["selected"].as_u64().unwrap();
    assert_eq!(selected(0), selected(2), "random matches MathNeuro's count");
    assert!(selected(1) > 2 * selected(0), "Wanda-only keeps the whole math top-5%");
    for r in rows {
        let m = &r["metrics"][0];
        assert_eq!((m["task"].as_str(), m["metric"].as_str(), m["n"].as_u64()), (Some("arc_easy"), Some("acc"), Some(4)));
        let (diff, lo, hi) = (m["diff"].as_f64().unwrap(), m["ci95"][0].as_f64().unwrap(), m["ci95"][1].as_f64().unwrap());
        assert!(lo <= diff && diff <= hi, "{r}");
        assert!((m["other"].as_f64().unwrap() - m["base"].as_f64().unwrap() - diff).abs() < 1e-12);
    }
    assert_eq!(json["base"][0]["n"], 4);

    let overlaps = json["overlaps"].as_array().unwrap();
    assert_eq!(overlaps.iter().map(|o| o["experiment"].as_u64().unwrap()).collect::<Vec<_>>(), [3, 4]);
    for o in overlaps {
        let j = o["jaccard"].as_f64().unwrap();
        assert!(j > o["chance"].as_f64().unwrap() && j < 1.0, "{o}");
    }
    let layers = json["layers"]["per_layer"].as_array().unwrap();
    assert_eq!(layers.len(), 18, "Gemma 3 270M has 18 layers");

    for f in ["results.md", "exp1-arc_easy.svg", "exp5-heatmap.svg", "exp5-layers.svg", "stats/gsm8k-n2-seed43.stats.gguf", "stats/mmlu-n1-seed42.stats.gguf"] {
        assert!(out.join(f).exists(), "{f} was not written");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&out).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().ends_with(".gguf")).collect();
    assert!(leftovers.is_empty(), "temporary models left behind: {leftovers:?}");
    for section in ["### 1. Pruning", "### 3. Data efficiency", "### 4. Consistency", "### 5. Where the math weights live"] {
        assert!(stdout.contains(section), "{section} missing:\n{stdout}");
    }

    // A rerun of experiment 4 alone (its results replace the earlier ones: --force) loads the
    // STATS instead of calibrating.
    let (_, stderr) = run(&out, &["--only", "4", "--force"]);
    assert_eq!(stderr.matches(", cached").count(), 4, "two sets × two seeds loaded:\n{stderr}");
    assert!(!stderr.contains("tok/s"), "nothing recalibrated:\n{stderr}");
}
