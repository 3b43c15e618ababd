//! Issue 27, second pass, cases 5–10 and 12: hostile inputs that hung, ran out of memory or
//! aborted (FIFOs and huge files, huge counts, hyperparameters llama.cpp asserts on, a context
//! too small for the prompt), and resumed or computed results that were silently wrong (a model
//! or task file changed in place under `eval --resume`, weights changed under `tune --resume`,
//! another model's or a corrupted calibration checkpoint, a model producing NaN). Copies of the
//! default model are edited byte by byte where llama.cpp must load them (its architectures
//! need a real vocabulary, which `gguf::synth`'s toy models lack). docs/RELIABILITY.md lists
//! each case with its command.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mathneuro::gguf::{GgufFile, GgufWriter, MetaValue};
use crate::common::{data_dir};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mathneuro"));
    c.env("RAYON_NUM_THREADS", "2").env("MATHNEURO_DATA", data_dir());
    c
}

/// Runs `c`, killing it after `secs` (a hang fails the test instead of blocking it).
fn within(c: &mut Command, secs: u64) -> Output {
    let mut child = c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(secs) {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("still running after {secs} s: {c:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Asserts the command failed with exit status `code` (not a panic's 101 or an abort's 134)
/// and that its stderr holds every needle.
fn fails_with(o: &Output, code: i32, needles: &[&str]) -> String {
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "exit status {:?}; stderr:\n{e}", o.status);
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}:\n{e}");
    }
    e
}

fn ok(o: &Output) {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A copy of the default model in `d`.
fn model_copy(d: &Path, name: &str) -> PathBuf {
    let p = d.join(name);
    std::fs::copy(common::real_model_path(), &p).unwrap();
    p
}

/// Rewrites tensor `name` of `path` in place (same file, same size) with `edit` of its bytes.
fn edit_tensor(path: &Path, name: &str, edit: impl Fn(&mut [u8])) {
    let (start, len) = {
        let f = GgufFile::open(path).unwrap();
        let t = f.tensor(name).unwrap_or_else(|| panic!("no tensor {name}"));
        let data = f.tensor_data(t);
        (data.as_ptr() as usize - f.bytes().as_ptr() as usize, data.len())
    };
    let mut bytes = std::fs::read(path).unwrap();
    edit(&mut bytes[start..start + len]);
    std::fs::write(path, bytes).unwrap();
}

/// A copy of the default model with metadata `key` set to `value` (tensors copied).
fn model_with(d: &Path, key: &str, value: MetaValue) -> PathBuf {
    let src = GgufFile::open(common::real_model_path()).unwrap();
    let mut w = GgufWriter::from_file(&src);
    w.set(key, value);
    let out = d.join(format!("{}.gguf", key.replace('.', "_")));
    w.write_atomic(&out, None, |i, _, sink| sink.write_all(src.tensor_data(&src.tensors[i]))).unwrap();
    out
}

fn nan_f32(bytes: &mut [u8]) {
    for c in bytes.chunks_exact_mut(4) {
        c.copy_from_slice(&f32::NAN.to_le_bytes());
    }
}

#[test]
fn issue27_case05_task_file_fifo_device_and_oversized_file_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let m = common::real_model_path();
    let fifo = d.path().join("pipe.jsonl");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let o = within(bin().arg("eval").arg(&m).arg("--task-file").arg(&fifo).arg("--out").arg(d.path().join("o1")), 60);
    fails_with(&o, 1, &["--task-file", "pipe.jsonl", "FIFO"]);
    let o = within(bin().arg("eval").arg(&m).args(["--task-file", "/dev/zero", "--out"]).arg(d.path().join("o2")), 60);
    fails_with(&o, 1, &["/dev/zero", "character device"]);
    // A (sparse) file past the cap is refused by its size, before a byte is read.
    let big = d.path().join("big.jsonl");
    std::fs::File::create(&big).unwrap().set_len(mathneuro::safety::inputs::MAX_INPUT_BYTES + 1).unwrap();
    let o = within(bin().arg("eval").arg(&m).arg("--task-file").arg(&big).arg("--out").arg(d.path().join("o3")), 60);
    fails_with(&o, 1, &["big.jsonl", "more than the 256 MiB"]);
    let o = within(bin().arg("calibrate").arg(&m).arg("--data").arg(&big).args(["--samples", "1", "-o"]).arg(d.path().join("s.gguf")), 60);
    fails_with(&o, 1, &["big.jsonl", "more than the 256 MiB"]);
}

#[test]
fn issue27_case05_a_50_mb_line_is_clipped_before_tokenizing() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("one-line.jsonl");
    let text = "2 + 2 = 4. ".repeat(50 << 20 >> 4);
    std::fs::write(&data, format!("{}\n", serde_json::json!({ "text": text }))).unwrap();
    assert!(std::fs::metadata(&data).unwrap().len() > 30 << 20);
    let t0 = Instant::now();
    let out = d.path().join("s.gguf");
    let o = within(bin().arg("calibrate").arg(common::real_model_path()).arg("--data").arg(&data).args(["--samples", "1", "--max-tokens", "16", "--threads", "2", "-o"]).arg(&out), 120);
    ok(&o);
    // Tokenizing the whole line took 34 s and 2.7 GB; clipped, it is a 16-token text.
    assert!(t0.elapsed() < Duration::from_secs(30), "took {:?}", t0.elapsed());
    assert_eq!(GgufFile::open(&out).unwrap().get("mathneuro.tokens").and_then(MetaValue::as_u64), Some(16));
}

#[test]
fn issue27_case06_huge_samples_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let m = common::real_model_path();
    let out = d.path().join("o.gguf");
    for huge in ["18446744073709551615", "99999999999"] {
        for cmd in [vec!["calibrate", s(&m), "--data", "embedded-math"], vec!["run", s(&m), "--math", "embedded-math", "--general", "embedded-general"], vec!["tune", s(&m)], vec!["experiments", s(&m)]] {
            let o = within(bin().args(&cmd).args(["--samples", huge, "-o"]).arg(&out), 30);
            // experiments has --out, not -o: clap reports the first problem, either way exit 2.
            let e = String::from_utf8_lossy(&o.stderr).into_owned();
            assert_eq!(o.status.code(), Some(2), "{cmd:?} --samples {huge}: {e}");
            if cmd[0] != "experiments" {
                assert!(e.contains("--samples") && e.contains("at most 1000000"), "{cmd:?}: {e}");
            }
        }
    }
    let o = within(bin().arg("experiments").arg(&m).args(["--samples", "18446744073709551615", "--out"]).arg(d.path().join("x")), 30);
    fails_with(&o, 2, &["--samples", "at most 1000000"]);
    let o = within(bin().arg("calibrate").arg(&m).args(["--data", "embedded-math", "--max-tokens", "4000000000", "-o"]).arg(&out), 30);
    fails_with(&o, 2, &["--max-tokens", "at most 1048576"]);
    let o = within(bin().arg("eval").arg(&m).args(["--tasks", "arc_easy", "--max-new-tokens", "4000000000", "--parallel", "100000"]), 30);
    fails_with(&o, 2, &["at most"]);
    // Within the flag's bound but past the model's context: refused before any text is read.
    let o = within(bin().arg("calibrate").arg(&m).args(["--data", "embedded-math", "--samples", "1", "--max-tokens", "1000000", "-o"]).arg(&out), 60);
    fails_with(&o, 1, &["--max-tokens 1000000 is more than the model's context of 32768 tokens", "gemma-3-270m"]);
    assert!(!out.exists());
}

#[test]
fn issue27_case07_hyperparameters_llama_cpp_asserts_on_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        ("gemma3.block_count", MetaValue::U32(0), "is 0; llama.cpp needs 1 to 512 layers"),
        ("gemma3.attention.layer_norm_rms_epsilon", MetaValue::F32(f32::NAN), "is NaN; a normalization epsilon must be a positive finite number"),
        ("gemma3.attention.layer_norm_rms_epsilon", MetaValue::F32(f32::INFINITY), "positive finite"),
        ("gemma3.attention.head_count_kv", MetaValue::U32(0), "is 0 for layer 0"),
        ("gemma3.context_length", MetaValue::U32(0), "is 0"),
    ];
    for (key, value, problem) in cases {
        let m = model_with(d.path(), key, value);
        let o = within(bin().arg("eval").arg(&m).args(["--tasks", "arc_easy", "--limit", "1", "--no-progress", "--out"]).arg(d.path().join("o")), 60);
        fails_with(&o, 1, &[s(&m), key, problem]);
        let o = within(bin().arg("calibrate").arg(&m).args(["--data", "embedded-math", "--samples", "1", "-o"]).arg(d.path().join("s.gguf")), 60);
        fails_with(&o, 1, &[key, problem]);
    }
    // A context too small for one decode aborted in llama.cpp (exit 134).
    let o = within(bin().arg("eval").arg(common::real_model_path()).args(["--tasks", "arc_easy", "--limit", "1", "--ctx-size", "8", "--no-progress", "--out"]).arg(d.path().join("o")), 60);
    fails_with(&o, 1, &["a context of 8 tokens is too small", "raise --ctx-size"]);
}

/// `eval MODEL --out DIR [--resume]` on arc_easy (3 items): the per-item file's text.
fn eval_items(model: &Path, out: &Path, extra: &[&str]) -> String {
    // --force: a rerun into the same --out replaces the earlier run's files (issue 27 case 1).
    let o = within(bin().arg("eval").arg(model).args(["--limit", "3", "--threads", "2", "--no-progress", "--force", "--out"]).arg(out).args(extra), 120);
    ok(&o);
    let name = if extra.contains(&"--task-file") { "task_file.jsonl" } else { "arc_easy.jsonl" };
    std::fs::read_to_string(out.join(name)).unwrap()
}

/// `eval --resume` after an input changed: refused, naming the item file and the digest that
/// changed (the old items are never reported); the run without `--resume` that the error asks
/// for equals a fresh run elsewhere.
fn resume_is_refused_then_recomputed(model: &Path, out: &Path, fresh: &Path, args: &[&str], changed: &str) {
    let o = within(bin().arg("eval").arg(model).args(["--limit", "3", "--threads", "2", "--no-progress", "--out"]).arg(out).args(args).arg("--resume"), 120);
    fails_with(&o, 1, &["items/base/", "other settings", changed, "drop --resume and pass --force"]);
    assert_eq!(eval_items(model, out, args), eval_items(model, fresh, args), "the rerun reused the old items");
}

#[test]
fn issue27_case08_eval_resume_recomputes_a_model_rewritten_in_place() {
    let d = tempfile::tempdir().unwrap();
    let m = model_copy(d.path(), "m.gguf");
    let out = d.path().join("out");
    let args = ["--tasks", "arc_easy"];
    let before = eval_items(&m, &out, &args);
    // The same path and size, other weights: layer 0's attention output zeroed.
    edit_tensor(&m, "blk.0.attn_output.weight", |b| b.fill(0));
    let sha = mathneuro::eval::content::file_sha256(&m).unwrap();
    resume_is_refused_then_recomputed(&m, &out, &d.path().join("fresh"), &args, &format!("now model_sha256={sha}"));
    assert_ne!(before, eval_items(&m, &out, &args), "zeroing a weight must change the log-probabilities");
}

#[test]
fn issue27_case08_eval_resume_recomputes_a_task_file_whose_answers_changed() {
    let d = tempfile::tempdir().unwrap();
    let m = common::real_model_path();
    let tf = d.path().join("t.jsonl");
    let items = |answers: [u8; 3]| {
        let qs = ["Which gas do plants take in?", "What is 2 + 2?", "Which animal barks?"];
        let cs = [["oxygen", "carbon dioxide", "helium"], ["3", "4", "5"], ["a cat", "a dog", "a fish"]];
        (0..3).map(|i| format!("{}\n", serde_json::json!({ "question": qs[i], "choices": cs[i], "answer": answers[i] }))).collect::<String>()
    };
    std::fs::write(&tf, items([1, 1, 1])).unwrap();
    let out = d.path().join("out");
    let args = ["--task-file", s(&tf)];
    let before = eval_items(&m, &out, &args);
    std::fs::write(&tf, items([0, 2, 0])).unwrap();
    let data = mathneuro::eval::content::task_data_sha256(&data_dir(), mathneuro::eval::Task::TaskFile, Some(&tf)).unwrap();
    resume_is_refused_then_recomputed(&m, &out, &d.path().join("fresh"), &args, &format!("data_sha256={data}"));
    assert_ne!(before, eval_items(&m, &out, &args), "the edited answers must change the scores");
}

#[test]
fn issue27_case09_tune_resume_refuses_a_journal_after_the_weights_changed() {
    let d = tempfile::tempdir().unwrap();
    let m = model_copy(d.path(), "m.gguf");
    let tune = |extra: &[&str]| {
        let args = [
            "--samples", "2", "--max-tokens", "32", "--candidates", "2", "--rounds", "1", "--budget", "4", "--guard-items", "2", "--general-items", "2", "--test-items", "2", "--test-general-items", "2",
            "--max-new-tokens", "16", "--threads", "2", "--stop-after", "1", "-q",
        ];
        within(bin().arg("tune").arg(&m).args(args).args(extra).arg("--data-dir").arg(data_dir()).arg("-o").arg(d.path().join("best.gguf")), 600)
    };
    let first = tune(&[]);
    let journal = d.path().join("best.tune/journal.jsonl");
    assert!(journal.exists(), "the interrupted run left no journal: {}", String::from_utf8_lossy(&first.stderr));
    let lines = std::fs::read_to_string(&journal).unwrap().lines().count();
    assert!(lines > 1, "nothing journaled before the stop");
    // 20 MB of weights zeroed in place: same path, size and tensor table.
    for layer in 0..4 {
        edit_tensor(&m, &format!("blk.{layer}.ffn_down.weight"), |b| b.fill(0));
    }
    let o = tune(&["--resume"]);
    fails_with(&o, 1, &["journal.jsonl", "another model (or this one changed since)", "--force"]);
    assert_eq!(std::fs::read_to_string(&journal).unwrap().lines().count(), lines, "the refused resume touched the journal");
}

/// `calibrate` with checkpoints every 2 of 6 texts, stopped after 2 or resumed.
fn calibrate(model: &Path, out: &Path, extra: &[&str]) -> Output {
    within(bin().arg("calibrate").arg(model).args(["--data", "embedded-math", "--samples", "6", "--max-tokens", "32", "--threads", "2", "--checkpoint-every", "2", "-o"]).arg(out).args(extra), 120)
}

/// The run stopped at `--stop-after 2`, leaving its checkpoint.
fn stopped(o: &Output) {
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("stopped after 2 of 6 samples"), "{:?}: {e}", o.status);
}

#[test]
fn issue27_case10_calibrate_resume_refuses_another_models_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (model_copy(d.path(), "a.gguf"), model_copy(d.path(), "b.gguf"));
    // Same shapes and types (so the same fingerprint), other weights.
    edit_tensor(&b, "blk.0.ffn_down.weight", |x| x.fill(0));
    let out = d.path().join("s.gguf");
    stopped(&calibrate(&a, &out, &["--stop-after", "2"]));
    let o = calibrate(&b, &out, &["--resume"]);
    fails_with(&o, 1, &["s.gguf.partial.gguf", "other settings"]);
    assert!(!out.exists());
    // The same model resumes it.
    let o = calibrate(&a, &out, &["--resume"]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("resuming after 2 of 6"));
}

#[test]
fn issue27_case10_calibrate_resume_refuses_a_corrupted_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let m = common::real_model_path();
    let out = d.path().join("s.gguf");
    stopped(&calibrate(&m, &out, &["--stop-after", "2"]));
    let cp = d.path().join("s.gguf.partial.gguf");
    // One total doubled: finite, plausible, wrong.
    edit_tensor(&cp, "blk.0.attn_q.weight.norm_sum", |b| {
        let v = f64::from_le_bytes(b[..8].try_into().unwrap());
        b[..8].copy_from_slice(&(2.0 * v + 1.0).to_le_bytes());
    });
    let o = calibrate(&m, &out, &["--resume"]);
    fails_with(&o, 1, &["s.gguf.partial.gguf", "do not match their checksum"]);
    assert!(!out.exists());
}

#[test]
fn issue27_case12_nan_weights_stop_eval_and_calibrate_by_name() {
    let d = tempfile::tempdir().unwrap();
    let m = model_copy(d.path(), "nan.gguf");
    edit_tensor(&m, "blk.0.attn_norm.weight", nan_f32);
    let o = within(bin().arg("eval").arg(&m).args(["--tasks", "arc_easy", "--limit", "2", "--threads", "2", "--no-progress", "--out"]).arg(d.path().join("o")), 120);
    fails_with(&o, 1, &["task arc_easy", "nan.gguf", "NaN logits"]);
    let out = d.path().join("s.gguf");
    let o = within(bin().arg("calibrate").arg(&m).args(["--data", "embedded-math", "--samples", "2", "--max-tokens", "32", "--threads", "2", "-o"]).arg(&out), 120);
    fails_with(&o, 1, &["nan.gguf", "forward pass 0", "forward pass 0: blk.0.attn_", "not finite", "no STATS are written"]);
    assert!(!out.exists(), "NaN STATS were written");
}
