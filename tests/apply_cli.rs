//! The `apply` and `mask` commands end to end on a small generated model: outputs, Modelfile,
//! report, `--save-mask`, `mask compare`, and the refusals (existing output, mismatched STATS).

use crate::apply_support;

use std::process::Command;

use mathneuro::ffi::ggml;
use mathneuro::gguf::synth::{SynthModel, encode_plain};
use mathneuro::gguf::{GgmlType, GgufFile};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mathneuro"));
    c.env("RAYON_NUM_THREADS", "2");
    c
}

#[test]
fn apply_and_mask_compare_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model_path = d.join("toy.gguf");
    SynthModel::toy_transformer(2, 64, 128, 32, GgmlType::Q8_0)
        .write(&model_path, &|ty, v| if ty == GgmlType::Q8_0 { ggml::quantize(ty, v, 32, None).unwrap() } else { encode_plain(ty, v) })
        .unwrap();
    let model = GgufFile::open(&model_path).unwrap();
    let (math, general) = apply_support::stats_pair(&model);
    math.save(&d.join("math.gguf"), &[]).unwrap();
    general.save(&d.join("general.gguf"), &[]).unwrap();

    let apply = |extra: &[&str]| {
        let mut c = bin();
        c.arg("apply").arg(&model_path).arg("--math").arg(d.join("math.gguf")).arg("--general").arg(d.join("general.gguf"));
        c.args(extra);
        c.output().unwrap()
    };
    let out = apply(&["--scale", "1.1", "--save-mask", d.join("a.mask").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.contains("# mathneuro apply") && md.contains("| ffn_down |"), "{md}");
    assert!(d.join("toy-mathneuro.gguf").exists(), "default output name");
    assert!(d.join("toy-mathneuro.report.json").exists() && d.join("toy-mathneuro.heatmap.svg").exists());
    assert!(std::fs::read_to_string(d.join("Modelfile")).unwrap().contains("FROM ./toy-mathneuro.gguf"));

    let again = apply(&["--scale", "1.1"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"), "{}", String::from_utf8_lossy(&again.stderr));

    let out = apply(&["--prune", "--method", "random", "--seed", "3", "-o", d.join("r.gguf").to_str().unwrap(), "--save-mask", d.join("r.mask").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written = GgufFile::open(d.join("r.gguf")).unwrap();
    assert_eq!(written.get_str("mathneuro.method"), Some("random"));
    assert_eq!(written.get_str("mathneuro.operation"), Some("prune"));

    // Same inputs and seed → the same bytes.
    let out = apply(&["--prune", "--method", "random", "--seed", "3", "-o", d.join("r2.gguf").to_str().unwrap(), "--no-modelfile"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(d.join("r.gguf")).unwrap() == std::fs::read(d.join("r2.gguf")).unwrap(), "same seed, different bytes");

    let cmp = bin().args(["mask", "compare"]).arg(d.join("a.mask")).arg(d.join("a.mask")).output().unwrap();
    assert!(cmp.status.success());
    assert!(String::from_utf8_lossy(&cmp.stdout).contains("| overall |") && String::from_utf8_lossy(&cmp.stdout).contains("1.0000"));
    let cmp = bin().args(["mask", "compare", "--json"]).arg(d.join("a.mask")).arg(d.join("r.mask")).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&cmp.stdout).unwrap();
    let j = v["overall"]["jaccard"].as_f64().unwrap();
    assert!(j < 0.5, "mathneuro vs random overlap {j}");

    // STATS of another model are refused, naming the problem.
    let mut other = math.clone();
    other.weights.remove("blk.1.attn_v.weight");
    other.save(&d.join("other.gguf"), &[]).unwrap();
    let bad = bin().arg("apply").arg(&model_path).arg("--math").arg(d.join("other.gguf")).arg("--general").arg(d.join("general.gguf")).args(["--prune", "-o"]).arg(d.join("x.gguf")).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("blk.1.attn_v.weight"), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(!d.join("x.gguf").exists());
}
