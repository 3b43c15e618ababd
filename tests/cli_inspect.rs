//! `mathneuro inspect` as a user runs it: the real binary on the default model (text and JSON),
//! on a generated model with provenance keys, and on broken files (error naming the file and the
//! problem, exit code 1, no panic).

use std::path::Path;
use std::process::{Command, Output};

use mathneuro::gguf::synth::{SynthModel, encode_plain};
use mathneuro::gguf::{GgmlType, MetaValue};

use crate::common;

use common::real_model_path as real_model;

fn inspect(args: &[&str], model: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mathneuro"))
        .arg("inspect")
        .args(args)
        .arg(model)
        .output()
        .expect("the mathneuro binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn text_report_of_the_default_model() {
    let out = inspect(&[], &real_model());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "exit {:?}: {}", out.status, text(&out.stderr));
    let field = |label: &str| -> String {
        let line = stdout.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label:?} line in\n{stdout}"));
        line[label.len()..].trim().to_string()
    };
    assert_eq!(field("architecture"), "gemma3");
    assert_eq!(field("parameters"), "268.1 M (268098176)");
    assert_eq!(field("file type"), "MOSTLY_Q4_K_M (15)");
    assert_eq!(field("context length"), "32768");
    assert_eq!(field("layers"), "18");
    assert_eq!(field("embedding"), "640");
    assert_eq!(field("tokenizer"), "llama (262144 tokens)");
    assert_eq!(field("output head"), "tied to token_embd.weight");
    assert!(field("target weights").starts_with("126 "), "{stdout}");
    assert_eq!(field("tensors"), "236");
    // Totals by type, most tensors first.
    let totals: Vec<(String, String)> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("type"))
        .skip(1)
        .take(5)
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap().to_string(), w.next().unwrap().to_string())
        })
        .collect();
    let want = [("F32", "109"), ("Q5_0", "81"), ("Q4_K", "27"), ("Q8_0", "10"), ("Q6_K", "9")];
    assert_eq!(totals, want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec(), "{stdout}");
    // One table row per tensor.
    let rows = stdout.lines().filter(|l| l.starts_with("blk.") || l.starts_with("token_embd") || l.starts_with("output_norm")).count();
    assert_eq!(rows, 236);
    assert!(stdout.lines().any(|l| l.starts_with("token_embd.weight") && l.contains("Q8_0") && l.contains("640 x 262144") && l.contains("178257920")), "{stdout}");
    assert!(!stdout.contains("provenance"), "the base model has no provenance keys");
    assert!(out.stderr.is_empty(), "nothing on stderr: {}", text(&out.stderr));
}

#[test]
fn json_report_of_the_default_model() {
    let out = inspect(&["--json"], &real_model());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    assert_eq!(j["architecture"], "gemma3");
    assert_eq!(j["parameter_count"], 268_098_176u64);
    assert_eq!(j["file_type"]["id"], 15);
    assert_eq!(j["file_type"]["name"], "MOSTLY_Q4_K_M");
    assert_eq!(j["context_length"], 32768);
    assert_eq!(j["tokenizer"], "llama");
    assert_eq!(j["output_tied"], true);
    assert_eq!(j["tensor_count"], 236);
    assert_eq!(j["target_weight_count"], 126);
    assert_eq!(j["gguf_version"], 3);
    let types: Vec<(String, u64)> = j["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["type"].as_str().unwrap().to_string(), t["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        types,
        vec![("F32".into(), 109), ("Q5_0".into(), 81), ("Q4_K".into(), 27), ("Q8_0".into(), 10), ("Q6_K".into(), 9)]
    );
    let tensors = j["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 236);
    assert_eq!(tensors.iter().filter(|t| t["target"] == true).count(), 126);
    let q = tensors.iter().find(|t| t["name"] == "blk.0.attn_q.weight").unwrap();
    assert_eq!(q["type"], "Q5_0");
    assert_eq!(q["shape"], serde_json::json!([640, 1024]));
    assert_eq!(q["bytes"], 450_560);
    let total_bytes: u64 = tensors.iter().map(|t| t["bytes"].as_u64().unwrap()).sum();
    assert_eq!(total_bytes, j["types"].as_array().unwrap().iter().map(|t| t["bytes"].as_u64().unwrap()).sum::<u64>());
}

#[test]
fn provenance_keys_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edited.gguf");
    SynthModel::toy_transformer(1, 32, 64, 40, GgmlType::F16)
        .meta("general.base_model.count", MetaValue::U32(1))
        .meta("general.base_model.0.name", MetaValue::string("Gemma 3 270m"))
        .meta("mathneuro.scale", MetaValue::F32(1.1))
        .meta("mathneuro.top_k_percent", MetaValue::F64(5.0))
        .write(&path, &encode_plain)
        .unwrap();
    let out = inspect(&[], &path);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("\nprovenance\n"), "{stdout}");
    assert!(stdout.contains("general.base_model.0.name = \"Gemma 3 270m\""), "{stdout}");
    assert!(stdout.contains("mathneuro.top_k_percent = 5.0"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("file type") && l.contains("(not set)")), "{stdout}");
    let out = inspect(&["--json"], &path);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["provenance"]["general.base_model.count"], 1);
    assert_eq!(j["provenance"]["mathneuro.top_k_percent"], 5.0);
    assert_eq!(j["file_type"], serde_json::Value::Null);
}

#[track_caller]
fn assert_clean_failure(out: &Output, must_say: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code 1 expected; stderr: {stderr}");
    assert!(out.stdout.is_empty(), "no report on failure: {}", text(&out.stdout));
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    assert!(stderr.starts_with("mathneuro: error:"), "{stderr}");
    for s in must_say {
        assert!(stderr.contains(s), "stderr should say {s:?}: {stderr}");
    }
}

#[test]
fn broken_files_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();

    let not_gguf = dir.path().join("notes.txt");
    std::fs::write(&not_gguf, b"hello, this is not a model\n").unwrap();
    assert_clean_failure(&inspect(&[], &not_gguf), &["notes.txt", "magic", "not a GGUF file"]);

    // The real model's header cut in the middle of the tokenizer vocabulary.
    let cut = dir.path().join("cut.gguf");
    let head = {
        use std::io::Read;
        let mut buf = vec![0u8; 1 << 20];
        std::fs::File::open(real_model()).unwrap().read_exact(&mut buf).unwrap();
        buf
    };
    std::fs::write(&cut, &head).unwrap();
    assert_clean_failure(&inspect(&["--json"], &cut), &["cut.gguf", "tokenizer.ggml.tokens", "at byte"]);

    let missing = dir.path().join("missing.gguf");
    assert_clean_failure(&inspect(&[], &missing), &["missing.gguf", "No such file"]);

    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert_clean_failure(&inspect(&[], &empty), &["empty.gguf", "empty"]);
}
