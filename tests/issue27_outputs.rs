//! Issue 27, second pass, the output-policy cases (1–4, 11, 14, 15), a test per case, each
//! running the real binary: `eval --out` and `experiments --out` go through the output policy;
//! named data sets and `tune`'s files are inputs; non-regular outputs are refused even with
//! `--force`; two writers of one output set are kept apart by a lock; a command's outputs appear
//! together or not at all; and the unclear errors now name the file and the problem. Generated
//! models where llama.cpp is not needed, the default model where it is. docs/RELIABILITY.md
//! lists each case with its command.

use crate::common;

use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mathneuro::ffi::ggml;
use mathneuro::gguf::synth::{SynthModel, encode_plain};
use mathneuro::gguf::{GgmlType, GgufFile};
use mathneuro::select::synth::synthetic_stats;
use sha2::{Digest, Sha256};
use crate::common::{data_dir, run, stderr, fails_with};
use crate::common::wait_limited;

/// The pause after each output's rename (the test hook of `safety::tempfiles`).
const PAUSE: &str = "MATHNEURO_TEST_PAUSE_AFTER_RENAME_MS";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mathneuro"));
    c.env("RAYON_NUM_THREADS", "2").env("MATHNEURO_DATA", data_dir()).env_remove(PAUSE);
    c
}

fn succeeds(o: &Output) {
    assert!(o.status.success(), "expected success; stderr:\n{}", stderr(o));
}

fn sha(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Names in `dir` that a run may leave behind by mistake: temporary files and lock files.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(".mathneuro-") || n.ends_with(".mathneuro-lock")).collect()
}

/// A toy Q8_0 model with synthetic math/general STATS in `d`: (model, math, general).
fn toy(d: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let model = d.join("toy.gguf");
    let m = SynthModel::toy_transformer(2, 64, 128, 32, GgmlType::Q8_0);
    m.write(&model, &|ty, v| if ty == GgmlType::Q8_0 { ggml::quantize(ty, v, 32, None).unwrap() } else { encode_plain(ty, v) }).unwrap();
    let f = GgufFile::open(&model).unwrap();
    let (math, general) = (d.join("math.gguf"), d.join("general.gguf"));
    synthetic_stats(&f, 1, 50, "m").save(&math, &[]).unwrap();
    synthetic_stats(&f, 2, 50, "g").save(&general, &[]).unwrap();
    (model, math, general)
}

fn apply(model: &Path, math: &Path, general: &Path) -> Command {
    let mut c = bin();
    c.arg("apply").arg(model).arg("--math").arg(math).arg("--general").arg(general).args(["--scale", "1.1", "--threads", "2"]);
    c
}

/// Waits until `path` exists (at most `limit`).
fn wait_for(path: &Path, limit: Duration) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(t0.elapsed() < limit, "{} did not appear within {limit:?}", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
}

/// A task file of two multiple-choice items.
fn task_file(path: &Path) {
    std::fs::write(path, "{\"question\":\"2 + 2 =\",\"choices\":[\"4\",\"5\"],\"answer\":0}\n{\"question\":\"The sky is\",\"choices\":[\"blue\",\"salty\"],\"answer\":0}\n").unwrap();
}

fn eval(model: &Path, out: &Path, extra: &[&str]) -> Output {
    run(bin().arg("eval").arg(model).arg("--out").arg(out).args(["--threads", "2", "--no-progress", "--bootstrap", "10"]).args(extra))
}

#[test]
fn issue27_case01_eval_out_refuses_its_input_and_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (toy, _, _) = toy(d);
    let out = d.join("d");
    std::fs::create_dir(&out).unwrap();
    // The model (or the task file) under a name eval writes in --out: refused, --force or not.
    for name in ["report.json", "arc_easy.jsonl", "items/base/arc_easy.jsonl"] {
        let model = out.join(name);
        std::fs::create_dir_all(model.parent().unwrap()).unwrap();
        std::fs::copy(&toy, &model).unwrap();
        for force in [false, true] {
            let o = eval(&model, &out, &["--tasks", "arc_easy", "--limit", "2"].into_iter().chain(force.then_some("--force")).collect::<Vec<_>>());
            fails_with(&o, &["is the input", name]);
            assert_eq!(sha(&model), sha(&toy), "{name} changed");
        }
        std::fs::remove_file(&model).unwrap();
    }
    let tf = out.join("task_file.jsonl");
    task_file(&tf);
    let before = sha(&tf);
    fails_with(&eval(&toy, &out, &["--task-file", s(&tf), "--force"]), &["is the input", "task_file.jsonl"]);
    assert_eq!(sha(&tf), before);
    std::fs::remove_file(&tf).unwrap();

    // eval A then eval B into one directory: B needs --force, and then A's files are gone.
    let model = common::real_model_path();
    let tf = d.join("mine.jsonl");
    task_file(&tf);
    succeeds(&eval(&model, &out, &["--tasks", "arc_easy", "--limit", "2"]));
    assert!(out.join("arc_easy.jsonl").exists() && out.join("items/base/arc_easy.jsonl").exists());
    fails_with(&eval(&model, &out, &["--task-file", s(&tf)]), &["report.json", "already exists", "--force"]);
    succeeds(&eval(&model, &out, &["--task-file", s(&tf), "--force"]));
    let report = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(report.contains("task_file") && !report.contains("arc_easy"), "{report}");
    assert!(!out.join("arc_easy.jsonl").exists() && !out.join("items/base/arc_easy.jsonl").exists(), "the earlier run's item files are mixed in");
    // --resume continues the same run in the same directory without --force.
    succeeds(&eval(&model, &out, &["--task-file", s(&tf), "--resume"]));
    assert!(leftovers(d).is_empty() && leftovers(&out).is_empty(), "{:?} {:?}", leftovers(d), leftovers(&out));
}

#[test]
fn issue27_case02_experiments_out_refuses_its_input_and_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (toy, _, _) = toy(d);
    let out = d.join("e");
    std::fs::create_dir(&out).unwrap();
    let args = ["--only", "1", "--samples", "2", "--prune-ks", "1", "--limits", "arc_easy=2", "--threads", "2"];
    for name in ["results.json", "results.md", "stats/gsm8k-n2-seed42.stats.gguf"] {
        let model = out.join(name);
        std::fs::create_dir_all(model.parent().unwrap()).unwrap();
        std::fs::copy(&toy, &model).unwrap();
        let o = run(bin().arg("experiments").arg(&model).arg("--out").arg(&out).args(args).arg("--force"));
        fails_with(&o, &["is the input", name]);
        assert_eq!(sha(&model), sha(&toy), "{name} changed");
        std::fs::remove_file(&model).unwrap();
    }
    // An earlier run's results are replaced only with --force (refused before any work).
    std::fs::write(out.join("results.json"), "{}").unwrap();
    let o = run(bin().arg("experiments").arg(&toy).arg("--out").arg(&out).args(args));
    fails_with(&o, &["results.json", "already exists", "--force"]);
    assert_eq!(std::fs::read_to_string(out.join("results.json")).unwrap(), "{}");
}

#[test]
fn issue27_case03_data_files_and_tune_files_are_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (toy, _, _) = toy(d);
    let data = d.join("dd");
    std::fs::create_dir_all(data.join("gsm8k")).unwrap();
    std::fs::create_dir_all(data.join("mmlu")).unwrap();
    let train = data.join("gsm8k/train.jsonl");
    std::fs::write(&train, "{\"question\":\"1+1?\",\"answer\":\"2\"}\n").unwrap();
    let mmlu = data.join("mmlu/test.jsonl");
    std::fs::write(&mmlu, "{\"question\":\"q\",\"choices\":[\"a\",\"b\"],\"answer_index\":0}\n").unwrap();
    let (train_sha, mmlu_sha) = (sha(&train), sha(&mmlu));
    let o = run(bin().arg("calibrate").arg(&toy).args(["--data", "gsm8k", "--samples", "2", "--force", "--data-dir"]).arg(&data).arg("-o").arg(&train));
    fails_with(&o, &["is the input", "gsm8k/train.jsonl"]);
    // run's default general set (mmlu) is read from the data directory too.
    let o = run(bin().arg("run").arg(&toy).args(["--samples", "2", "--force", "--data-dir"]).arg(&data).arg("--save-mask").arg(&mmlu).arg("-o").arg(d.join("out.gguf")));
    fails_with(&o, &["is the input", "mmlu/test.jsonl"]);
    let t = d.join("t.jsonl");
    std::fs::write(&t, "{\"text\":\"x\"}\n").unwrap();
    let t_sha = sha(&t);
    let o = run(bin().arg("tune").arg(&toy).arg("--math").arg(&t).args(["--force", "--data-dir"]).arg(&data).arg("-o").arg(&t));
    fails_with(&o, &["is the input", "t.jsonl"]);
    let o = run(bin().arg("tune").arg(&toy).args(["--force", "--data-dir"]).arg(&data).arg("-o").arg(&mmlu));
    fails_with(&o, &["is the input", "mmlu/test.jsonl"]);
    assert_eq!((sha(&train), sha(&mmlu), sha(&t)), (train_sha, mmlu_sha, t_sha));
}

#[test]
fn issue27_case04_non_regular_outputs_are_refused_even_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, math, _) = toy(d);
    let fifo = d.join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let null = d.join("null-link");
    std::os::unix::fs::symlink("/dev/null", &null).unwrap();
    let sock = d.join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    for (out, what) in [(&fifo, "FIFO"), (&null, "character device"), (&sock, "socket")] {
        for force in [false, true] {
            let mut c = bin();
            c.args(["stats", "imatrix"]).arg(&math).arg("-o").arg(out);
            if force {
                c.arg("--force");
            }
            fails_with(&run(&mut c), &[s(out), what, "writes only regular files"]);
        }
    }
    assert!(std::fs::symlink_metadata(&null).unwrap().file_type().is_symlink(), "the link was replaced");
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    let sub = d.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let o = run(bin().args(["stats", "imatrix"]).arg(&math).arg("-o").arg(&sub).arg("--force"));
    fails_with(&o, &["is a directory (an output file is wanted here)"]);
}

#[test]
fn issue27_case11_two_writers_of_one_output_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (model, math, general) = toy(d);
    let out = d.join("out.gguf");
    // The first run pauses after each output, so it holds the output set for several seconds.
    let first = apply(&model, &math, &general).arg("-o").arg(&out).env(PAUSE, "1500").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for(&out, Duration::from_secs(60));
    let lock = d.join(".out.gguf.mathneuro-lock");
    assert!(lock.exists(), "no lock file beside the output");
    let t0 = Instant::now();
    let second = run(apply(&model, &math, &general).arg("-o").arg(&out).arg("--force"));
    fails_with(&second, &["another mathneuro is writing", "out.gguf"]);
    assert!(t0.elapsed() < Duration::from_secs(10), "the second writer waited instead of failing at once");
    let first = wait_limited(first, Duration::from_secs(120), "the first apply");
    succeeds(&first);
    // The model and its report are the first run's own, and the lock file is gone.
    let report = std::fs::read_to_string(d.join("out.report.json")).unwrap();
    assert!(report.contains("1.1"), "{report}");
    assert!(leftovers(d).is_empty(), "{:?}", leftovers(d));
    // Once the first is done, the next writer goes ahead (with --force, as the output exists).
    succeeds(&run(apply(&model, &math, &general).arg("-o").arg(&out).arg("--force")));
    assert!(leftovers(d).is_empty(), "{:?}", leftovers(d));
}

#[test]
fn issue27_case14_outputs_appear_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (model, math, general) = toy(d);
    let (out, mask) = (d.join("out.gguf"), d.join("masks/out.mask"));
    std::fs::create_dir(d.join("masks")).unwrap();
    let outputs = || ["out.gguf", "out.report.json", "out.heatmap.svg", "Modelfile", "masks/out.mask"].map(|n| d.join(n));

    // SIGTERM just after the model is renamed into place: every output goes.
    let child = apply(&model, &math, &general).arg("-o").arg(&out).arg("--save-mask").arg(&mask).env(PAUSE, "5000").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for(&out, Duration::from_secs(60));
    signal(&child, "-TERM");
    let o = wait_limited(child, Duration::from_secs(20), "apply after SIGTERM");
    assert_eq!(o.status.code(), Some(143), "{}", stderr(&o));
    assert!(stderr(&o).contains("out.gguf"), "{}", stderr(&o));
    for p in outputs() {
        assert!(!p.exists(), "{} left after SIGTERM", p.display());
    }
    assert!(leftovers(d).is_empty(), "{:?}", leftovers(d));

    // The mask's write fails after the model was written (its folder is gone, as on a full
    // disk the write fails): the model goes too, and the rerun needs no --force.
    let child = apply(&model, &math, &general).arg("-o").arg(&out).arg("--save-mask").arg(&mask).env(PAUSE, "3000").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for(&out, Duration::from_secs(60));
    std::fs::remove_dir(d.join("masks")).unwrap();
    std::fs::write(d.join("masks"), "not a folder").unwrap();
    let o = wait_limited(child, Duration::from_secs(60), "apply with a failing mask");
    fails_with(&o, &["masks/out.mask", "removed", "out.gguf"]);
    assert!(!out.exists() && !d.join("out.report.json").exists(), "the model outlived the failed mask");
    std::fs::remove_file(d.join("masks")).unwrap();
    std::fs::create_dir(d.join("masks")).unwrap();
    succeeds(&run(apply(&model, &math, &general).arg("-o").arg(&out).arg("--save-mask").arg(&mask)));
    for p in outputs() {
        assert!(p.exists(), "{} missing after the rerun", p.display());
    }
    assert!(leftovers(d).is_empty(), "{:?}", leftovers(d));

    // `run` interrupted after calibrating: the STATS it wrote go, the rerun needs no --force.
    let real = common::real_model_path();
    let rout = d.join("r.gguf");
    let mut c = bin();
    c.arg("run").arg(&real).args(["--samples", "2", "--math", "embedded-math", "--general", "embedded-general", "--threads", "2", "--no-progress", "-o"]).arg(&rout);
    let child = c.env(PAUSE, "5000").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stats = d.join("r.math-stats.gguf");
    wait_for(&stats, Duration::from_secs(120));
    signal(&child, "-INT");
    let o = wait_limited(child, Duration::from_secs(20), "run after SIGINT");
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(!stats.exists() && !rout.exists(), "{}", stderr(&o));
    assert!(leftovers(d).is_empty(), "{:?}", leftovers(d));
}

#[test]
fn issue27_case15_unclear_errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (model, math, general) = toy(d);
    // A STATS file given as MODEL.
    fails_with(&run(bin().arg("calibrate").arg(&math).args(["--data", "embedded-math", "--samples", "1", "-o"]).arg(d.join("s.gguf"))), &["math.gguf", "is a mathneuro STATS", "not a model"]);
    fails_with(&run(apply(&math, &math, &general).arg("-o").arg(d.join("o.gguf"))), &["math.gguf", "is a mathneuro STATS", "not a model"]);
    fails_with(&eval(&math, &d.join("e"), &["--tasks", "arc_easy", "--limit", "1"]), &["math.gguf", "is a mathneuro STATS", "not a model"]);
    // --top-k below one weight of any matrix.
    fails_with(&run(apply(&model, &math, &general).args(["--top-k", "1e-30", "-o"]).arg(d.join("o.gguf"))), &["--top-k 1e-30", "below one weight", "at least"]);
    // Perplexity windows.
    for (flags, needle) in [(["--ppl-window", "0"], "--ppl-window"), (["--ppl-stride", "0"], "--ppl-stride")] {
        fails_with(&eval(&model, &d.join("e"), &["--tasks", "wikitext"].into_iter().chain(flags).collect::<Vec<_>>()), &[needle, "at least 1"]);
    }
    fails_with(&eval(&model, &d.join("e"), &["--tasks", "wikitext", "--ppl-window", "64", "--ppl-stride", "128"]), &["--ppl-stride 128 is larger than --ppl-window 64"]);
    // items/base being a file.
    let e = d.join("e2");
    std::fs::create_dir_all(e.join("items")).unwrap();
    std::fs::write(e.join("items/base"), "x").unwrap();
    fails_with(&eval(&model, &e, &["--tasks", "arc_easy", "--limit", "1"]), &["items/base", "not a directory"]);
    // A FIFO under --data-dir.
    let data = d.join("dd");
    std::fs::create_dir_all(data.join("gsm8k")).unwrap();
    assert!(Command::new("mkfifo").arg(data.join("gsm8k/train.jsonl")).status().unwrap().success());
    let o = run(bin().arg("calibrate").arg(&model).args(["--data", "gsm8k", "--samples", "1", "--data-dir"]).arg(&data).arg("-o").arg(d.join("s.gguf")));
    fails_with(&o, &["gsm8k/train.jsonl", "FIFO"]);
    std::fs::create_dir_all(data.join("arc")).unwrap();
    assert!(Command::new("mkfifo").arg(data.join("arc/arc_easy_test.jsonl")).status().unwrap().success());
    let real = common::real_model_path();
    let o = eval(&real, &d.join("e3"), &["--tasks", "arc_easy", "--limit", "1", "--data-dir", s(&data)]);
    fails_with(&o, &["arc_easy_test.jsonl", "FIFO"]);
    // Invalid UTF-8 in a task file and in an item file: the line is named.
    let tf = d.join("bad.jsonl");
    std::fs::write(&tf, b"{\"question\":\"a\",\"choices\":[\"x\",\"y\"],\"answer\":0}\n{\"question\":\"\xff\"}\n").unwrap();
    fails_with(&eval(&real, &d.join("e4"), &["--task-file", s(&tf)]), &["bad.jsonl", "not valid UTF-8 at line 2"]);
    let good = d.join("good.jsonl");
    task_file(&good);
    let e5 = d.join("e5");
    succeeds(&eval(&real, &e5, &["--task-file", s(&good)]));
    let item = e5.join("items/base/task_file.jsonl");
    let mut bytes = std::fs::read(&item).unwrap();
    bytes.extend_from_slice(b"\xfe\n");
    std::fs::write(&item, bytes).unwrap();
    fails_with(&eval(&real, &e5, &["--task-file", s(&good), "--resume"]), &["task_file.jsonl", "not valid UTF-8 at line"]);
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
