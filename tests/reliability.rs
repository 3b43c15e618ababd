//! Issue 10, a test per defect: never lose a user's file (the output-path policy of every writing
//! command, checked before any work), never leave a process or a temporary file behind (SIGTERM /
//! SIGINT during calibrate and apply, kill -9 leftovers), and the input checks (empty or NaN
//! STATS, nothing selected, `--resume` keyed on the texts, FIFOs and devices, eval's load errors,
//! one `--threads` rule, `[n, m, 1, 1]` weights, errors said once, UTF-8 line numbers, progress
//! when stderr is not a terminal). Generated models where llama.cpp is not needed, the default
//! model where it is. docs/RELIABILITY.md lists each case with its command.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mathneuro::ffi::ggml;
use mathneuro::gguf::synth::{SynthModel, encode_plain};
use mathneuro::gguf::{GgmlType, GgufFile};
use mathneuro::select::synth::synthetic_stats;
use mathneuro::stats::ActivationStats;
use sha2::{Digest, Sha256};
use crate::common::{data_dir, run, stderr, fails_with};
use crate::common::wait_limited;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mathneuro"));
    c.env("RAYON_NUM_THREADS", "2").env("MATHNEURO_DATA", data_dir());
    c
}

fn sha(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

fn temp_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(".mathneuro-")).collect()
}

/// A toy Q8_0 model with synthetic math/general STATS in `d`: (model, math, general).
fn toy(d: &Path) -> (PathBuf, PathBuf, PathBuf) {
    toy_from(d, SynthModel::toy_transformer(2, 64, 128, 32, GgmlType::Q8_0))
}

fn toy_from(d: &Path, m: SynthModel) -> (PathBuf, PathBuf, PathBuf) {
    let model = d.join("toy.gguf");
    m.write(&model, &|ty, v| if ty == GgmlType::Q8_0 { ggml::quantize(ty, v, 32, None).unwrap() } else { encode_plain(ty, v) }).unwrap();
    let f = GgufFile::open(&model).unwrap();
    let (math, general) = (d.join("math.gguf"), d.join("general.gguf"));
    synthetic_stats(&f, 1, 50, "m").save(&math, &[]).unwrap();
    synthetic_stats(&f, 2, 50, "g").save(&general, &[]).unwrap();
    (model, math, general)
}

fn apply(model: &Path, math: &Path, general: &Path, extra: &[&str]) -> Output {
    run(bin().arg("apply").arg(model).arg("--math").arg(math).arg("--general").arg(general).args(["--scale", "1.1"]).args(extra))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Pids of live processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle)))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| !st.contains(") Z ")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Data loss

#[test]
fn issue10_no_command_writes_onto_its_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (model, math, general) = toy(d);
    let before = (sha(&model), sha(&math), sha(&general));
    std::fs::hard_link(&model, d.join("model-link.gguf")).unwrap();
    std::os::unix::fs::symlink(&math, d.join("math-sym.gguf")).unwrap();

    // apply onto its STATS input, even with --force; onto a hard link or symlink of an input.
    for out in [math.clone(), d.join("model-link.gguf"), d.join("math-sym.gguf")] {
        fails_with(&apply(&model, &math, &general, &["--force", "-o", s(&out)]), &["never writes onto its inputs"]);
    }
    fails_with(&apply(&model, &math, &general, &["--save-mask", s(&general)]), &["never writes onto its inputs"]);
    // stats imatrix and merge onto their own input.
    fails_with(&run(bin().args(["stats", "imatrix"]).arg(&math).arg("-o").arg(&math).arg("--force")), &["stats imatrix never writes onto its inputs"]);
    fails_with(&run(bin().args(["stats", "merge"]).arg(&math).arg(&general).arg("-o").arg(&general).arg("--force")), &["stats merge never writes onto its inputs"]);
    assert_eq!((sha(&model), sha(&math), sha(&general)), before, "an input changed");

    // Existing outputs need --force (stats gained it).
    std::fs::write(d.join("taken.gguf"), b"user data").unwrap();
    fails_with(&run(bin().args(["stats", "imatrix"]).arg(&math).arg("-o").arg(d.join("taken.gguf"))), &["already exists (pass --force"]);
    fails_with(&run(bin().args(["stats", "merge"]).arg(&math).arg(&general).arg("-o").arg(d.join("taken.gguf"))), &["already exists (pass --force"]);
    assert_eq!(std::fs::read(d.join("taken.gguf")).unwrap(), b"user data");
    let ok = run(bin().args(["stats", "merge"]).arg(&math).arg(&general).arg("-o").arg(d.join("taken.gguf")).arg("--force"));
    assert!(ok.status.success(), "{}", stderr(&ok));
    // A report or heat map of an earlier run is not replaced silently either.
    std::fs::write(d.join("out.report.json"), b"{}").unwrap();
    fails_with(&apply(&model, &math, &general, &["-o", s(&d.join("out.gguf"))]), &["out.report.json: already exists"]);
    assert!(!d.join("out.gguf").exists());
}

#[test]
fn issue10_stats_merge_refuses_the_same_statistics_twice() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, math, general) = toy(d);
    std::fs::copy(&math, d.join("copy.gguf")).unwrap();
    std::fs::hard_link(&math, d.join("link.gguf")).unwrap();
    let merge = |a: &Path, b: &Path| run(bin().args(["stats", "merge"]).arg(a).arg(b).arg("-o").arg(d.join("m.gguf")));
    fails_with(&merge(&math, &math), &["is the same file as", "count the same samples twice"]);
    fails_with(&merge(&math, &d.join("link.gguf")), &["is the same file as"]);
    fails_with(&merge(&math, &d.join("copy.gguf")), &["has the same content as"]);
    let ok = merge(&math, &general);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(ActivationStats::load(&d.join("m.gguf")).unwrap().seeds, vec![1, 2]);
}

#[test]
fn issue10_outputs_are_checked_before_any_work() {
    let model = common::real_model_path();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("file"), b"x").unwrap();
    let quick = |c: &mut Command, needles: &[&str]| {
        let t0 = Instant::now();
        let o = run(c);
        let e = fails_with(&o, needles);
        // Refused before the model is loaded or a text measured.
        assert!(t0.elapsed() < Duration::from_secs(5) && !e.contains("calibrating"), "took {:?}:\n{e}", t0.elapsed());
    };
    quick(bin().arg("calibrate").arg(&model).args(["--data", "embedded-math", "--samples", "400", "-o"]).arg(d.join("missing/s.gguf")), &["missing", "does not exist"]);
    quick(bin().arg("eval").arg(&model).args(["--tasks", "arc_easy", "--limit", "400", "--out"]).arg(d.join("file")), &["not a directory"]);
    quick(bin().arg("run").arg(&model).args(["--samples", "400", "--save-mask"]).arg(&model).arg("-o").arg(d.join("r.gguf")), &["never writes onto its inputs"]);
    quick(bin().arg("run").arg(&model).args(["--samples", "400", "--eval", "arc_easy", "--eval-out"]).arg(d.join("file")).arg("-o").arg(d.join("r.gguf")), &["not a directory"]);
    quick(bin().arg("experiments").arg(&model).args(["--quick", "--out"]).arg(d.join("file")), &["not a directory"]);
    // calibrate onto the model itself (through a symlink, so a bug could only replace the link).
    std::os::unix::fs::symlink(&model, d.join("m.gguf")).unwrap();
    quick(bin().arg("calibrate").arg(d.join("m.gguf")).args(["--data", "embedded-math", "--samples", "1", "-o"]).arg(d.join("m.gguf")), &["calibrate never writes onto its inputs"]);
    assert!(std::fs::symlink_metadata(d.join("m.gguf")).unwrap().file_type().is_symlink());
    // An existing STATS output needs --force (calibrate gained it).
    quick(bin().arg("calibrate").arg(&model).args(["--data", "embedded-math", "--samples", "1", "-o"]).arg(d.join("file")), &["already exists (pass --force"]);
    assert!(temp_leftovers(d).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Processes and signals

#[test]
fn issue10_sigterm_ends_calibrate_with_nothing_left() {
    let model = common::real_model_path();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.gguf");
    let mut c = bin();
    c.arg("calibrate").arg(&model).args(["--data", "embedded-math", "--samples", "400", "--max-tokens", "64", "--threads", "2", "-o"]).arg(&out);
    c.env_remove("OMP_WAIT_POLICY").env("MATHNEURO_PROGRESS_SECS", "0.3").stderr(Stdio::piped()).stdout(Stdio::null());
    let child = c.spawn().unwrap();
    let pid = child.id();
    // Wait until it measures (the progress line), so the signal lands mid-calibration.
    let t0 = Instant::now();
    let status_of = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/environ")).unwrap_or_default();
    while !status_of(pid).contains("OMP_WAIT_POLICY=PASSIVE") && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    // The passive wait policy is set in this very process (exec), with no child doing the work.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(String::from_utf8_lossy(&environ).contains("OMP_WAIT_POLICY=PASSIVE"));
    let children: String = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten().map(|t| std::fs::read_to_string(t.path().join("children")).unwrap_or_default()).collect();
    assert_eq!(children.trim(), "", "calibrate runs a child process");
    assert!(processes_mentioning(dir.path().to_str().unwrap()).contains(&pid));

    let killed = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    let o = wait_limited(child, Duration::from_secs(20), "calibrate after SIGTERM");
    assert_eq!(o.status.code(), Some(128 + 15), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted by SIGTERM"), "{}", stderr(&o));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(processes_mentioning(dir.path().to_str().unwrap()), Vec::<u32>::new(), "a process of the calibration remains");
    assert!(!out.exists(), "an output appeared after SIGTERM");
    assert!(temp_leftovers(dir.path()).is_empty());
}

#[test]
fn issue10_signals_during_apply_leave_no_temp_file() {
    let model = common::real_model_path();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = GgufFile::open(&model).unwrap();
    synthetic_stats(&f, 1, 50, "m").save(&d.join("math.gguf"), &[]).unwrap();
    synthetic_stats(&f, 2, 50, "g").save(&d.join("general.gguf"), &[]).unwrap();
    drop(f);
    for (sig, name, code) in [("-INT", "SIGINT", 130), ("-TERM", "SIGTERM", 143)] {
        let out = d.join(format!("out-{name}.gguf"));
        let mut c = bin();
        c.arg("apply").arg(&model).arg("--math").arg(d.join("math.gguf")).arg("--general").arg(d.join("general.gguf")).args(["--scale", "1.1", "--threads", "2", "--no-modelfile", "-o"]).arg(&out);
        let child = c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let pid = child.id();
        let t0 = Instant::now();
        while temp_leftovers(d).is_empty() && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let tmp = temp_leftovers(d);
        assert_eq!(tmp.len(), 1, "no temporary output appeared: {tmp:?}");
        std::thread::sleep(Duration::from_millis(300));
        assert!(Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success());
        let o = wait_limited(child, Duration::from_secs(20), "apply after a signal");
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{e}");
        assert!(e.contains(&format!("interrupted by {name}; removed")) && e.contains(&tmp[0]), "{e}");
        assert!(temp_leftovers(d).is_empty(), "{name} left {:?}", temp_leftovers(d));
        assert!(!out.exists());
    }
}

#[test]
fn issue10_temp_files_of_killed_runs_are_removed_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (model, math, general) = toy(d);
    // What a `kill -9` mid-write leaves: a temp file named after a process that is gone.
    let stale = d.join(".mathneuro-4294967295-AbCdEf.tmp");
    std::fs::write(&stale, vec![0u8; 4096]).unwrap();
    let o = apply(&model, &math, &general, &["-o", s(&d.join("out.gguf"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("removed {}", stale.display())), "{}", stderr(&o));
    assert!(!stale.exists());
}

// ---------------------------------------------------------------------------------------------
// Input checks

#[test]
fn issue10_bad_stats_are_refused_on_every_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (model, math, general) = toy(d);
    let good = ActivationStats::load(&math).unwrap();
    let mut empty = good.clone();
    empty.samples = 0;
    let mut zero = good.clone();
    zero.weights.get_mut("blk.1.ffn_up.weight").unwrap().norm_sum.iter_mut().for_each(|v| *v = 0.0);
    let mut nan = good.clone();
    nan.weights.get_mut("blk.0.attn_k.weight").unwrap().sum_sq[3] = f32::NAN;
    for (name, stats, needle) in [
        ("empty", &empty, "holds 0 samples"),
        ("zero", &zero, "blk.1.ffn_up.weight.norm_sum is all zero"),
        ("nan", &nan, "blk.0.attn_k.weight.sum_sq[3] is NaN"),
    ] {
        let p = d.join(format!("{name}.gguf"));
        stats.save(&p, &[]).unwrap();
        fails_with(&apply(&model, &p, &general, &["-o", s(&d.join("o.gguf"))]), &[needle, name]);
        fails_with(&run(bin().args(["stats", "imatrix"]).arg(&p).arg("-o").arg(d.join("i.gguf"))), &[needle]);
        fails_with(&run(bin().args(["stats", "merge"]).arg(&math).arg(&p).arg("-o").arg(d.join("m.gguf"))), &[needle]);
        fails_with(&run(bin().args(["stats", "show"]).arg(&p)), &[needle]);
    }
    assert!(!d.join("o.gguf").exists() && !d.join("i.gguf").exists() && !d.join("m.gguf").exists());
}

#[test]
fn issue10_nothing_selected_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (model, math, general) = toy(d);
    let out = d.join("o.gguf");
    fails_with(&apply(&model, &math, &math, &["-o", s(&out)]), &["are the same file"]);
    std::fs::copy(&math, d.join("copy.gguf")).unwrap();
    fails_with(&apply(&model, &math, &d.join("copy.gguf"), &["-o", s(&out)]), &["nothing selected", "none was written"]);
    fails_with(&apply(&model, &math, &general, &["--top-k", "100", "-o", s(&out)]), &["nothing selected", "--top-k 100"]);
    assert!(!out.exists() && !d.join("Modelfile").exists());
}

#[test]
fn issue10_samples_zero_and_threads_zero_have_one_rule() {
    let model = common::real_model_path();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for args in [
        vec!["calibrate", "M", "--data", "embedded-math", "--samples", "0", "-o", "D/s.gguf"],
        vec!["run", "M", "--samples", "0", "-o", "D/r.gguf"],
    ] {
        let args: Vec<String> = args.iter().map(|a| a.replace('M', s(&model)).replace("D/", &format!("{}/", d.display()))).collect();
        fails_with(&run(bin().args(&args)), &["--samples", "must be at least 1"]);
    }
    for args in [
        vec!["calibrate", "M", "--data", "embedded-math", "-o", "D/s.gguf"],
        vec!["apply", "M", "--math", "D/a", "--general", "D/b", "--scale", "1.1"],
        vec!["eval", "M", "--tasks", "arc_easy"],
        vec!["run", "M"],
        vec!["experiments", "M", "--quick"],
    ] {
        let mut args: Vec<String> = args.iter().map(|a| if *a == "M" { s(&model).to_string() } else { a.replace("D/", &format!("{}/", d.display())) }).collect();
        args.extend(["--threads".to_string(), "0".to_string()]);
        let o = run(bin().args(&args));
        fails_with(&o, &["'0' for '--threads <N>': must be at least 1 (omit --threads to use every core)"]);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
    assert_eq!(std::fs::read_dir(d).unwrap().count(), 0);
}

#[test]
fn issue10_resume_is_keyed_on_the_sampled_texts() {
    let model = common::real_model_path();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let texts = d.join("texts.txt");
    std::fs::write(&texts, "Two plus two is four.\n\nThree times three is nine.\n\nTen minus one is nine.\n").unwrap();
    let out = d.join("s.gguf");
    let base = |extra: &[&str]| {
        let mut c = bin();
        c.arg("calibrate").arg(&model).arg("--data").arg(&texts).args(["--samples", "6", "--max-tokens", "32", "--threads", "2", "--checkpoint-every", "2"]).args(extra).arg("-o").arg(&out);
        run(&mut c)
    };
    let o = base(&["--stop-after", "2"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    // Same file name, other contents: the checkpoint is not for these texts.
    std::fs::write(&texts, "The cat sat on the mat.\n\nIt rained all day.\n\nBirds sang at dawn.\n").unwrap();
    fails_with(&base(&["--resume"]), &["other settings", "texts_sha256="]);
    assert!(!out.exists());
    // Without --resume a leftover checkpoint is not replaced silently.
    fails_with(&base(&[]), &["s.gguf.partial.gguf: already exists"]);
}

#[test]
fn issue10_non_regular_files_are_refused_without_hanging() {
    let model = common::real_model_path();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, math, general) = toy(d);
    let fifo = d.join("pipe.gguf");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for input in [fifo.as_path(), Path::new("/dev/zero")] {
        let what = if input == fifo { "is a FIFO (named pipe), not a regular file" } else { "is a character device, not a regular file" };
        let o = d.join("o.gguf");
        let cases: Vec<Vec<&Path>> = vec![
            vec!["inspect".as_ref(), input],
            vec!["apply".as_ref(), input, "--math".as_ref(), &math, "--general".as_ref(), &general, "--scale".as_ref(), "1.1".as_ref(), "-o".as_ref(), &o],
            vec!["apply".as_ref(), &model, "--math".as_ref(), input, "--general".as_ref(), &general, "--scale".as_ref(), "1.1".as_ref(), "-o".as_ref(), &o],
            vec!["calibrate".as_ref(), input, "--data".as_ref(), "embedded-math".as_ref(), "--samples".as_ref(), "1".as_ref(), "-o".as_ref(), &o],
            vec!["eval".as_ref(), input, "--tasks".as_ref(), "arc_easy".as_ref(), "--out".as_ref(), d],
            vec!["stats".as_ref(), "show".as_ref(), input],
        ];
        for args in cases {
            let child = bin().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
            let o = wait_limited(child, Duration::from_secs(30), &format!("{args:?}"));
            fails_with(&o, &[what]);
        }
    }
}

#[test]
fn issue10_eval_load_failures_give_the_readers_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (model, _, _) = toy(d);
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(d.join("cut.gguf"), &bytes[..bytes.len() / 2]).unwrap();
    let real = common::real_model_path();
    for (base, other) in [(d.join("cut.gguf"), None), (real.clone(), Some(d.join("cut.gguf")))] {
        let mut c = bin();
        c.arg("eval").arg(&base).args(["--tasks", "arc_easy", "--limit", "2", "--out"]).arg(d.join("ev"));
        if let Some(o) = &other {
            c.arg("--compare").arg(o);
        }
        let t0 = Instant::now();
        let e = fails_with(&run(&mut c), &["cut.gguf", "runs past the end of the file"]);
        assert!(!e.contains("null result"), "{e}");
        // The bad OTHER is found before the base model is evaluated.
        assert!(t0.elapsed() < Duration::from_secs(5), "{e}");
    }
}

#[test]
fn issue10_four_d_weights_stay_targets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut m = SynthModel::toy_transformer(2, 64, 128, 32, GgmlType::Q8_0);
    let t = m.tensors.iter_mut().find(|t| t.spec.name == "blk.0.ffn_down.weight").unwrap();
    t.spec.dims = vec![t.spec.dims[0], t.spec.dims[1], 1, 1];
    let (model, math, general) = toy_from(d, m);
    let f = GgufFile::open(&model).unwrap();
    assert_eq!(f.tensor("blk.0.ffn_down.weight").unwrap().dims.len(), 4);
    assert!(mathneuro::model::target_weights(&f).iter().any(|t| t.name == "blk.0.ffn_down.weight"));
    let out = d.join("o.gguf");
    let o = apply(&model, &math, &general, &["-o", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("o.report.json")).unwrap()).unwrap();
    let t = report["tensors"].as_array().unwrap().iter().find(|t| t["name"] == "blk.0.ffn_down.weight").expect("the 4-D weight is a target");
    assert!(t["tally"]["selected"].as_u64().unwrap_or(0) > 0 || t["k"].as_u64().unwrap() > 0, "{t}");
    let g = GgufFile::open(&out).unwrap();
    let (a, b) = (f.tensor("blk.0.ffn_down.weight").unwrap(), g.tensor("blk.0.ffn_down.weight").unwrap());
    assert_eq!(b.dims, a.dims, "the stored shape is kept");
    assert_ne!(f.tensor_data(a), g.tensor_data(b), "the 4-D weight was not edited");
}

#[test]
fn issue10_errors_say_their_cause_once_and_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = fails_with(&run(bin().arg("inspect").arg(d.join("missing.gguf"))), &["missing.gguf"]);
    assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");
    let model = common::real_model_path();
    let bad = d.join("bad.txt");
    std::fs::write(&bad, b"A first text.\n\nA second\ntext with a bad byte \xff here.\n").unwrap();
    let e = fails_with(&run(bin().arg("calibrate").arg(&model).arg("--data").arg(&bad).arg("-o").arg(d.join("s.gguf"))), &["bad.txt: not valid UTF-8 at line 4, column 22"]);
    assert_eq!(e.matches("UTF-8").count(), 1, "{e}");
}

#[test]
fn issue10_progress_lines_when_stderr_is_not_a_terminal() {
    let model = common::real_model_path();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = run(bin().env("MATHNEURO_PROGRESS_SECS", "0.2").arg("calibrate").arg(&model).args(["--data", "embedded-math", "--samples", "12", "--max-tokens", "48", "--threads", "2", "-o"]).arg(d.join("m.gguf")));
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    // The estimate before the work, then lines with done/total, rate and ETA.
    assert!(e.contains("calibrating embedded-math: 12 texts, "), "{e}");
    assert!(e.lines().any(|l| l.starts_with("calibrating embedded-math: ") && l.contains(" tok (") && l.contains("tok/s") && l.contains("ETA")), "{e}");
    let f = GgufFile::open(&model).unwrap();
    synthetic_stats(&f, 2, 50, "g").save(&d.join("g.gguf"), &[]).unwrap();
    drop(f);
    let o = run(bin().env("MATHNEURO_PROGRESS_SECS", "0.2").arg("apply").arg(&model).arg("--math").arg(d.join("m.gguf")).arg("--general").arg(d.join("g.gguf")).args(["--scale", "1.1", "--threads", "2", "-o"]).arg(d.join("o.gguf")));
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.lines().any(|l| l.starts_with("writing: ") && l.contains(" tensors (") && l.contains("ETA")), "{e}");
    let o = run(bin().env("MATHNEURO_PROGRESS_SECS", "0.2").arg("eval").arg(d.join("o.gguf")).args(["--tasks", "arc_easy", "--limit", "8", "--threads", "2", "--out"]).arg(d.join("ev")));
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.lines().any(|l| l.starts_with("arc_easy: ") && l.contains(" items (") && l.contains("ETA")), "{e}");
    // run: progress by default, none with --no-progress (accepted like eval's).
    let run_with = |extra: &[&str], out: &str| {
        run(bin().env("MATHNEURO_PROGRESS_SECS", "0.2").arg("run").arg(&model).args(["--math", "embedded-math", "--general", "embedded-general", "--samples", "4", "--max-tokens", "32", "--threads", "2"]).args(extra).arg("-o").arg(d.join(out)))
    };
    let o = run_with(&[], "r1.gguf");
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.lines().any(|l| l.starts_with("calibrating embedded-math: ") && l.contains("ETA")) && e.lines().any(|l| l.starts_with("writing: ")), "{e}");
    let o = run_with(&["--no-progress"], "r2.gguf");
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(!e.lines().any(|l| l.contains("ETA")), "{e}");
}
