//! Issue 14, "meet users where their models are", end to end through the binary: model
//! references into fake Ollama / LM Studio / Hugging Face stores, split GGUF input (a generated
//! small model and the default model split in two) with `--keep-split`, `apply --ollama` with a
//! stub `ollama`, `--chat` on the instruct model, `eval --task-file`, and `eval --resume`.

use crate::apply_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mathneuro::chat::ChatFormat;
use mathneuro::ffi::ggml;
use mathneuro::gguf::synth::{SynthModel, encode_plain};
use mathneuro::gguf::{GgmlType, GgufFile, split};

const QWEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mathneuro"));
    c.env("RAYON_NUM_THREADS", "2");
    c
}

fn ok(out: Output) -> (String, String) {
    let (o, e) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "command failed:\nstdout:\n{o}\nstderr:\n{e}");
    (o, e)
}

fn shared_data() -> PathBuf {
    let p = std::env::var_os("MATHNEURO_DATA").map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"), PathBuf::from);
    assert!(p.join("arc/arc_easy_test.jsonl").exists(), "{} is missing: the data sets live beside the checkout", p.display());
    p
}

fn qwen() -> PathBuf {
    let p = PathBuf::from(QWEN);
    assert!(p.exists(), "{QWEN} is missing: run models/fetch.sh all (tests need it and do not skip)");
    p
}

/// A small generated model (no llama.cpp architecture: for the file-level paths).
fn toy(path: &Path) {
    SynthModel::toy_transformer(3, 64, 128, 32, GgmlType::Q8_0)
        .write(path, &|ty, v| if ty == GgmlType::Q8_0 { ggml::quantize(ty, v, 32, None).unwrap() } else { encode_plain(ty, v) })
        .unwrap();
}

/// Links (or copies) `src` to `dst`, creating the folders.
fn place(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    if std::fs::hard_link(src, dst).is_err() {
        std::fs::copy(src, dst).unwrap();
    }
}

/// An Ollama store under `root` holding `blob_src` as `library/NAME:TAG`.
fn ollama_store(root: &Path, name: &str, tag: &str, blob_src: &Path, hex: &str) {
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:{hex}0","size":10}},"layers":[{{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:{hex}","size":1}},{{"mediaType":"application/vnd.ollama.image.params","digest":"sha256:{hex}1","size":2}}]}}"#
    );
    let m = root.join("manifests/registry.ollama.ai/library").join(name).join(tag);
    std::fs::create_dir_all(m.parent().unwrap()).unwrap();
    std::fs::write(&m, manifest).unwrap();
    place(blob_src, &root.join("blobs").join(format!("sha256-{hex}")));
}

fn stores<'c>(c: &'c mut Command, root: &Path) -> &'c mut Command {
    c.env("OLLAMA_MODELS", root.join("ollama")).env("LMSTUDIO_MODELS", root.join("lms")).env("HF_HOME", root.join("hf")).env("HOME", root.join("home"))
}

#[test]
fn issue14_model_references_resolve_in_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let toy_path = d.join("toy.gguf");
    toy(&toy_path);
    let real = apply_support::real_model();
    ollama_store(&d.join("ollama"), "toy", "latest", &toy_path, "ab12");
    ollama_store(&d.join("ollama"), "gemma3", "270m", &real, "cd34");
    place(&toy_path, &d.join("lms/local/toy-GGUF/toy-Q8_0.gguf"));
    place(&real, &d.join("lms/google/gemma-3-270m-GGUF/gemma-3-270m-q4_k_m.gguf"));
    let snap = d.join("hf/hub/models--someone--toy-GGUF");
    std::fs::create_dir_all(snap.join("refs")).unwrap();
    std::fs::write(snap.join("refs/main"), "0123abcd").unwrap();
    place(&toy_path, &snap.join("snapshots/0123abcd/toy.Q8_0.gguf"));

    // inspect: every form names the same tensors.
    let expected = GgufFile::open(&toy_path).unwrap().tensors.len();
    for reference in ["ollama:toy", "ollama:toy:latest", "local/toy-GGUF", "lmstudio:local/toy-GGUF/toy-Q8_0.gguf", "hf:someone/toy-GGUF"] {
        let (json, _) = ok(stores(bin().current_dir(d), d).args(["inspect", reference, "--json"]).output().unwrap());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["tensor_count"].as_u64(), Some(expected as u64), "{reference}");
    }
    // A cache path typed as a path works too.
    ok(stores(&mut bin(), d).arg("inspect").arg(snap.join("snapshots/0123abcd/toy.Q8_0.gguf")).output().unwrap());

    // apply: a store model's output goes to the current directory, named after the reference.
    let model = GgufFile::open(&toy_path).unwrap();
    let (math, general) = apply_support::stats_pair(&model);
    math.save(&d.join("math.gguf"), &[]).unwrap();
    general.save(&d.join("general.gguf"), &[]).unwrap();
    let work = d.join("work");
    std::fs::create_dir_all(&work).unwrap();
    ok(stores(bin().current_dir(&work), d).args(["apply", "ollama:toy", "--scale", "1.1"]).arg("--math").arg(d.join("math.gguf")).arg("--general").arg(d.join("general.gguf")).output().unwrap());
    assert!(work.join("toy-latest-mathneuro.gguf").exists() && work.join("Modelfile").exists());
    assert!(!d.join("ollama/blobs/sha256-ab12-mathneuro.gguf").exists(), "nothing is written into the store");

    // calibrate, eval (and --compare) and run load the real model through references.
    let (_, _) = ok(stores(bin().current_dir(&work), d)
        .args(["calibrate", "ollama:gemma3:270m", "--data", "embedded-math", "--samples", "1", "--max-tokens", "32", "--threads", "2", "-o", "s.gguf"])
        .output()
        .unwrap());
    assert!(work.join("s.gguf").exists());
    let (md, _) = ok(stores(bin().current_dir(&work), d)
        .args(["eval", "google/gemma-3-270m-GGUF", "--compare", "ollama:gemma3:270m", "--tasks", "arc_easy", "--limit", "2", "--threads", "2", "--no-progress", "--out", "ev"])
        .arg("--data-dir")
        .arg(shared_data())
        .output()
        .unwrap());
    assert!(md.contains("| arc_easy | acc ↑") && md.contains("+0.0000"), "{md}");
    let (_, err) = ok(stores(bin().current_dir(&work), d)
        .args(["run", "ollama:gemma3:270m", "--math", "embedded-math", "--general", "embedded-general", "--samples", "1", "--max-tokens", "32", "--threads", "2"])
        .output()
        .unwrap());
    assert!(work.join("gemma3-270m-mathneuro.gguf").exists(), "{err}");

    // A reference that resolves to nothing lists what was tried.
    let out = stores(&mut bin(), d).args(["inspect", "ollama:nothing:1b"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("cannot find the model `ollama:nothing:1b`") && err.contains("library/nothing/1b"), "{err}");
    let out = stores(&mut bin(), d).args(["inspect", "nobody/nothing"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("path nobody/nothing: No such file") && err.contains("lms/nobody/nothing"), "{err}");
}

#[test]
fn issue14_a_generated_split_reads_as_one_model_and_apply_merges_or_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let whole = d.join("toy.gguf");
    toy(&whole);
    let src = GgufFile::open(&whole).unwrap();
    let groups = split::even_groups(src.tensors.len(), 3);
    let shards = split::write_split(&src, &groups, &d.join("toy"), None).unwrap();
    assert_eq!(shards[0], d.join("toy-00001-of-00003.gguf"));
    // gguf-split's keys on every shard, the model's metadata only on the first.
    let second = GgufFile::open_shard(&shards[1]).unwrap();
    assert_eq!(second.get("split.no").and_then(|v| v.as_u64()), Some(1));
    assert_eq!(second.get("split.tensors.count").and_then(|v| v.as_u64()), Some(src.tensors.len() as u64));
    assert!(second.get("general.architecture").is_none());

    let merged = GgufFile::open(&shards[0]).unwrap();
    assert_eq!(merged.shard_sizes(), groups);
    assert_eq!(mathneuro::model::fingerprint(&merged), mathneuro::model::fingerprint(&src));
    for (a, b) in src.tensors.iter().zip(&merged.tensors) {
        assert_eq!(src.tensor_data(a), merged.tensor_data(b), "{}", a.name);
    }
    let (text, _) = ok(bin().arg("inspect").arg(&shards[0]).output().unwrap());
    assert!(text.contains("split in 3 shards"), "{text}");
    // Only the first shard opens a split, and a missing shard is named.
    let out = bin().arg("inspect").arg(&shards[1]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("shard 2 of 3") && err.contains("toy-00001-of-00003.gguf"), "{err}");

    let (math, general) = apply_support::stats_pair(&src);
    math.save(&d.join("math.gguf"), &[]).unwrap();
    general.save(&d.join("general.gguf"), &[]).unwrap();
    let apply = |model: &Path, extra: &[&str]| {
        let mut c = bin();
        c.arg("apply").arg(model).args(["--scale", "1.1", "--math"]).arg(d.join("math.gguf")).arg("--general").arg(d.join("general.gguf")).args(extra);
        c.output().unwrap()
    };
    ok(apply(&whole, &["-o", d.join("from-whole.gguf").to_str().unwrap()]));
    ok(apply(&shards[0], &["-o", d.join("from-split.gguf").to_str().unwrap()]));
    // One file by default, without split keys, byte-identical to the result from the whole file.
    let one = GgufFile::open(d.join("from-split.gguf")).unwrap();
    assert!(one.get("split.count").is_none() && one.shard_paths().len() == 1);
    assert_eq!(std::fs::read(d.join("from-split.gguf")).unwrap(), std::fs::read(d.join("from-whole.gguf")).unwrap());
    // --keep-split writes the input's layout; read back it is the same model.
    let (md, _) = ok(apply(&shards[0], &["--keep-split", "-o", d.join("kept.gguf").to_str().unwrap()]));
    assert!(md.contains("kept-00001-of-00003.gguf"), "{md}");
    assert!(!d.join("kept.gguf").exists());
    let kept = GgufFile::open(d.join("kept-00001-of-00003.gguf")).unwrap();
    assert_eq!(kept.shard_sizes(), groups);
    for (a, b) in one.tensors.iter().zip(&kept.tensors) {
        assert_eq!(one.tensor_data(a), kept.tensor_data(b), "{}", a.name);
    }
    assert!(kept.get("mathneuro.method").is_some());
    // Refusals before any work: --keep-split on one file, an existing shard without --force.
    let out = apply(&whole, &["--keep-split", "-o", d.join("x.gguf").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a split model"));
    let out = apply(&shards[0], &["--keep-split", "-o", d.join("kept.gguf").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("already exists"), "{err}");
    std::fs::remove_file(&shards[2]).unwrap();
    let out = bin().arg("inspect").arg(&shards[0]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("toy-00003-of-00003.gguf"));
}

#[test]
fn issue14_the_default_model_split_in_two_calibrates_applies_and_evaluates_like_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let real = apply_support::real_model();
    let src = GgufFile::open(&real).unwrap();
    let shards = split::write_split(&src, &split::even_groups(src.tensors.len(), 2), &d.join("gemma"), None).unwrap();
    drop(src);
    // llama.cpp loads the split from its first shard: the same statistics as from the whole file.
    let calibrate = |model: &Path, data: &str, out: &str| {
        ok(bin().arg("calibrate").arg(model).args(["--data", data, "--samples", "2", "--max-tokens", "48", "--threads", "2", "-o"]).arg(d.join(out)).output().unwrap())
    };
    calibrate(&real, "embedded-math", "math-whole.gguf");
    calibrate(&shards[0], "embedded-math", "math.gguf");
    calibrate(&shards[0], "embedded-general", "general.gguf");
    assert_eq!(std::fs::read(d.join("math.gguf")).unwrap(), std::fs::read(d.join("math-whole.gguf")).unwrap());
    let apply = |model: &Path, out: &str, extra: &[&str]| {
        ok(bin().arg("apply").arg(model).args(["--scale", "1.1", "--math"]).arg(d.join("math.gguf")).arg("--general").arg(d.join("general.gguf")).arg("-o").arg(d.join(out)).args(extra).output().unwrap())
    };
    apply(&real, "whole-mn.gguf", &[]);
    apply(&shards[0], "split-mn.gguf", &[]);
    apply(&shards[0], "kept-mn.gguf", &["--keep-split", "--force"]);
    assert_eq!(std::fs::read(d.join("split-mn.gguf")).unwrap(), std::fs::read(d.join("whole-mn.gguf")).unwrap());
    // The split input and the split output both evaluate (llama.cpp), identically.
    let (md, _) = ok(bin()
        .arg("eval")
        .arg(&shards[0])
        .arg("--compare")
        .arg(d.join("kept-mn-00001-of-00002.gguf"))
        .args(["--tasks", "arc_easy", "--limit", "3", "--threads", "2", "--no-progress", "--out"])
        .arg(d.join("ev"))
        .arg("--data-dir")
        .arg(shared_data())
        .output()
        .unwrap());
    assert!(md.contains("| arc_easy | acc ↑"), "{md}");
    // … identically to the whole files: the same items, outputs, log-probabilities and scores.
    ok(bin()
        .arg("eval")
        .arg(&real)
        .arg("--compare")
        .arg(d.join("whole-mn.gguf"))
        .args(["--tasks", "arc_easy", "--limit", "3", "--threads", "2", "--no-progress", "--out"])
        .arg(d.join("ev-whole"))
        .arg("--data-dir")
        .arg(shared_data())
        .output()
        .unwrap());
    let items = |dir: &str| std::fs::read_to_string(d.join(dir).join("arc_easy.jsonl")).unwrap();
    let (split_items, whole_items) = (items("ev"), items("ev-whole"));
    assert_eq!(split_items.lines().count(), 3);
    assert_eq!(split_items, whole_items, "the split input/output evaluate differently from the whole files");
}

#[test]
fn issue14_apply_ollama_runs_ollama_create_or_prints_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model_path = d.join("toy.gguf");
    toy(&model_path);
    let (math, general) = apply_support::stats_pair(&GgufFile::open(&model_path).unwrap());
    math.save(&d.join("math.gguf"), &[]).unwrap();
    general.save(&d.join("general.gguf"), &[]).unwrap();
    // A stub `ollama` that records its working directory and arguments.
    let stub_dir = d.join("stub");
    std::fs::create_dir_all(&stub_dir).unwrap();
    let record = d.join("ollama-args.txt");
    let stub = stub_dir.join("ollama");
    std::fs::write(&stub, format!("#!/bin/sh\necho \"$PWD|$*\" > '{}'\n", record.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out_dir = d.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let apply = |path_env: String, out: &str| {
        bin()
            .env("PATH", path_env)
            .arg("apply")
            .arg(&model_path)
            .args(["--scale", "1.1", "--ollama", "toy-mathneuro", "--force", "--math"])
            .arg(d.join("math.gguf"))
            .arg("--general")
            .arg(d.join("general.gguf"))
            .arg("-o")
            .arg(out_dir.join(out))
            .output()
            .unwrap()
    };
    let (_, err) = ok(apply(format!("{}:/usr/bin:/bin", stub_dir.display()), "toy-mn.gguf"));
    let recorded = std::fs::read_to_string(&record).unwrap();
    let canon = std::fs::canonicalize(&out_dir).unwrap();
    assert_eq!(recorded.trim(), format!("{}|create toy-mathneuro -f Modelfile", canon.display()), "{err}");
    assert!(std::fs::read_to_string(out_dir.join("Modelfile")).unwrap().contains("FROM ./toy-mn.gguf"));
    // No ollama on PATH: the command is printed instead.
    std::fs::remove_file(&record).unwrap();
    let (_, err) = ok(apply("/usr/bin:/bin".into(), "toy-mn2.gguf"));
    assert!(err.contains("`ollama` is not on PATH") && err.contains("ollama create toy-mathneuro -f Modelfile"), "{err}");
    assert!(!record.exists());
}

#[test]
fn issue14_chat_prompts_equal_the_template_rendering_and_gsm8k_runs_with_and_without_chat() {
    let model = qwen();
    let format = ChatFormat::of_model(&model).unwrap();
    assert!(format.template.contains("<|im_start|>"), "Qwen2.5's template is ChatML");
    // The rendering of Qwen2.5's template for these turns (ChatML), written out by hand.
    let mut expected = String::new();
    for (q, a) in mathneuro::eval::gsm8k_prompt::COT_EXEMPLARS {
        expected.push_str(&format!("<|im_start|>user\nQ: {q}\nA:<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n"));
    }
    expected.push_str("<|im_start|>user\nQ: What is 2 + 3?\nA:<|im_end|>\n<|im_start|>assistant\n");
    assert_eq!(format.gsm8k_prompt("What is 2 + 3?").unwrap(), expected);
    assert_eq!(format.calibration_text("Add 2 and 3.", "2 + 3 = 5.").unwrap(), "<|im_start|>user\nAdd 2 and 3.<|im_end|>\n<|im_start|>assistant\n2 + 3 = 5.<|im_end|>\n");
    // A model without a template is refused with the reason.
    let dir = tempfile::tempdir().unwrap();
    let toy_path = dir.path().join("toy.gguf");
    toy(&toy_path);
    let e = ChatFormat::of_model(&toy_path).unwrap_err().to_string();
    assert!(e.contains("tokenizer.chat_template") && e.contains("drop --chat"), "{e}");

    for chat in [false, true] {
        let out = dir.path().join(if chat { "chat" } else { "plain" });
        let mut c = bin();
        c.arg("eval").arg(&model).args(["--tasks", "gsm8k", "--limit", "2", "--max-new-tokens", "48", "--threads", "2", "--no-progress", "--out"]).arg(&out).arg("--data-dir").arg(shared_data());
        if chat {
            c.arg("--chat");
        }
        let (md, _) = ok(c.output().unwrap());
        assert!(md.contains("gsm8k"), "{md}");
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
        let setting = report["tasks"][0]["setting"].as_str().unwrap();
        assert_eq!(setting.contains("fewshot_as_multiturn"), chat, "{setting}");
        let items = std::fs::read_to_string(out.join("gsm8k.jsonl")).unwrap();
        assert_eq!(items.lines().count(), 2);
        if chat {
            // The end-of-turn token ends the answer: no template markup in the outputs.
            assert!(!items.contains("<|im_start|>assistant"), "{items}");
        }
    }
    // Calibration texts wrapped in the template.
    let stats = dir.path().join("chat-stats.gguf");
    ok(bin().arg("calibrate").arg(&model).args(["--data", "embedded-math", "--samples", "1", "--max-tokens", "48", "--threads", "2", "--chat", "-o"]).arg(&stats).output().unwrap());
    assert!(GgufFile::open(&stats).unwrap().get_str("mathneuro.template").is_some_and(|t| t.starts_with("chat(")));
}

#[test]
fn issue14_eval_task_file_compares_with_paired_intervals_and_a_plot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let generation = d.join("arith.jsonl");
    let lines: Vec<String> = (1..=6).map(|i| format!(r#"{{"question": "What is {i} plus {i}?", "answer": {}}}"#, 2 * i)).collect();
    std::fs::write(&generation, lines.join("\n") + "\n{\"question\": \"What is the capital of France?\", \"answer\": \"Paris\"}\n").unwrap();
    let mc = d.join("colours.jsonl");
    std::fs::write(
        &mc,
        "{\"question\": \"What colour is the sky on a clear day?\", \"choices\": [\"blue\", \"green\", \"red\"], \"answer\": 0}\n\
         {\"question\": \"What colour is grass?\", \"choices\": [\"purple\", \"green\"], \"answer\": 1}\n\
         {\"question\": \"What colour is snow?\", \"choices\": [\"white\", \"black\", \"orange\"], \"answer\": 0}\n",
    )
    .unwrap();
    let model = apply_support::real_model();
    for (file, metric) in [(&generation, "exact-match"), (&mc, "acc")] {
        let out = d.join(file.file_stem().unwrap());
        let (md, _) = ok(bin()
            .arg("eval")
            .arg(&model)
            .arg("--compare")
            .arg(&model)
            .arg("--task-file")
            .arg(file)
            .args(["--max-new-tokens", "16", "--threads", "2", "--no-progress", "--out"])
            .arg(&out)
            .output()
            .unwrap());
        assert!(md.contains(&format!("| task_file | {metric} ↑")), "{md}");
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
        let t = &report["tasks"][0];
        assert_eq!(t["task"], "task_file");
        let n = if file == &generation { 7 } else { 3 };
        assert_eq!(t["n"].as_u64(), Some(n));
        let m = &t["metrics"][0];
        assert_eq!((m["diff"].as_f64(), m["diff_ci95"][0].as_f64()), (Some(0.0), Some(0.0)));
        assert_eq!(std::fs::read_to_string(out.join("task_file.jsonl")).unwrap().lines().count() as u64, n);
        let svg = std::fs::read_to_string(out.join("diff.svg")).unwrap();
        assert!(svg.contains(&format!("task_file {metric}")));
        assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("](diff.svg)"));
    }
    let bad = d.join("bad.jsonl");
    std::fs::write(&bad, "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 5}\n").unwrap();
    let out = bin().arg("eval").arg(&model).arg("--task-file").arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("bad.jsonl:1"), "{err}");
}

#[test]
fn issue14_eval_resume_after_an_interruption_gives_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = apply_support::real_model();
    let eval = |out: &Path, resume: bool| {
        let mut c = bin();
        c.arg("eval").arg(&model).args(["--tasks", "arc_easy,gsm8k_nll", "--limit", "10", "--items-per-chunk", "4", "--threads", "2", "--no-progress", "--out"]).arg(out).arg("--data-dir").arg(shared_data());
        if resume {
            c.arg("--resume");
        }
        ok(c.output().unwrap())
    };
    let full = d.join("full");
    eval(&full, false);
    // Items are on disk per task as chunks finish: a header and one line per item.
    let arc = std::fs::read_to_string(full.join("items/base/arc_easy.jsonl")).unwrap();
    assert_eq!(arc.lines().count(), 11);
    // An interruption after the first two chunks of 4 ARC items, in the middle of a line, before
    // any gsm8k_nll item; an item kept from before is marked to show it is reused.
    let part = d.join("part");
    std::fs::create_dir_all(part.join("items/base")).unwrap();
    let mut kept: Vec<String> = arc.lines().take(9).map(str::to_string).collect();
    kept[1] = kept[1].replacen("\"prompt\":\"", "\"prompt\":\"KEPT ", 1);
    let torn = &arc.lines().nth(9).unwrap()[..20];
    std::fs::write(part.join("items/base/arc_easy.jsonl"), kept.join("\n") + "\n" + torn).unwrap();
    eval(&part, true);
    let metrics = |p: &Path| {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p.join("report.json")).unwrap()).unwrap();
        v["tasks"].as_array().unwrap().iter().map(|t| (t["task"].clone(), t["n"].clone(), t["metrics"].clone())).collect::<Vec<_>>()
    };
    assert_eq!(metrics(&part), metrics(&full));
    assert!(std::fs::read_to_string(part.join("arc_easy.jsonl")).unwrap().lines().next().unwrap().contains("KEPT "), "the finished chunk was reused");
    assert_eq!(std::fs::read_to_string(part.join("gsm8k_nll.jsonl")).unwrap(), std::fs::read_to_string(full.join("gsm8k_nll.jsonl")).unwrap());
}
