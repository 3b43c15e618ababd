//! Issue 27: the command line under random argument extremes. For every subcommand that
//! `mathneuro --help` lists (and the subcommands of `stats` and `mask`), flags and positionals
//! are read from the command's own `--help`, then a seeded RNG builds argument lists from
//! plausible values (tiny generated GGUFs and STATS, fresh output paths, small numbers) mixed with
//! hostile ones: huge, zero, negative, NaN and infinite numbers, empty and very long strings, a
//! directory, a FIFO, a device node, a missing file, a non-GGUF file, a truncated GGUF, a flag
//! given twice, unknown flags. Each case runs the real binary with its working directory, HOME
//! and TMPDIR inside the test's temporary directory, under a time limit.
//!
//! A case fails when the process panics (exit 101 or "panicked at"), aborts (exit 134), dies by
//! a signal, or is still running after the limit (killed: a hang); the test also fails when a new
//! file appears in the repository checkout. Every failing case is printed with its argv.
//!
//! `MATHNEURO_FUZZ_CLI_SEED` picks the seed (default 27), `MATHNEURO_FUZZ_CLI_CASES` the cases
//! per command (default 12); `MATHNEURO_FUZZ_CLI_VERBOSE=1` prints every case with its exit code
//! and first line of stderr.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mathneuro::ffi::ggml;
use mathneuro::gguf::synth::{SynthModel, encode_plain};
use mathneuro::gguf::{GgmlType, GgufFile};
use mathneuro::select::synth::synthetic_stats;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

/// A process still running after this is killed and reported as a hang.
const LIMIT: Duration = Duration::from_secs(20);
/// The limit of a case on the real model (loading and a forward pass take a few seconds on a
/// quiet machine, many times that on a shared one).
const LIMIT_REAL: Duration = Duration::from_secs(60);
/// Cases run at once (a hang costs wall time, not CPU).
const WORKERS: usize = 3;

/// One command as its `--help` describes it.
#[derive(Clone, Debug)]
struct Spec {
    /// `["stats", "merge"]`.
    path: Vec<String>,
    /// Positional argument names (`MODEL`, `STATS`) in order, and whether each repeats.
    positionals: Vec<(String, bool)>,
    /// `(--flag, takes a value)`.
    flags: Vec<(String, bool)>,
    /// Flags named on the usage line (required, or one of a required group).
    required: Vec<String>,
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mathneuro"))
}

fn help(path: &[String]) -> String {
    let o = bin().args(path).arg("--help").output().unwrap();
    assert!(o.status.success(), "mathneuro {path:?} --help failed");
    String::from_utf8(o.stdout).unwrap()
}

/// The names listed under `Commands:` (without `help`).
fn commands(text: &str) -> Vec<String> {
    let Some(start) = text.find("Commands:") else { return Vec::new() };
    text[start..].lines().skip(1).take_while(|l| l.starts_with("  ")).filter_map(|l| l.split_whitespace().next()).filter(|c| *c != "help").map(str::to_string).collect()
}

/// Every leaf command: `stats merge`, `apply`, …
fn specs() -> Vec<Spec> {
    let mut out = Vec::new();
    for c in commands(&help(&[])) {
        let text = help(std::slice::from_ref(&c));
        let subs = commands(&text);
        if subs.is_empty() {
            out.push(parse(vec![c.clone()], &text));
        }
        for s in subs {
            let path = vec![c.clone(), s];
            let text = help(&path);
            out.push(parse(path, &text));
        }
    }
    out
}

fn parse(path: Vec<String>, text: &str) -> Spec {
    let usage = text.lines().find(|l| l.starts_with("Usage:")).unwrap_or("");
    let required = usage.split(|c: char| c.is_whitespace() || c == '<' || c == '|').filter(|w| w.starts_with("--")).map(|w| w.trim_end_matches(['>', ']']).to_string()).collect();
    let mut positionals = Vec::new();
    let mut flags = Vec::new();
    let mut section = "";
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            section = line.trim_end_matches(':');
            continue;
        }
        let t = line.trim_start();
        let indent = line.len() - t.len();
        if section == "Arguments" && indent <= 2 && (t.starts_with('<') || t.starts_with('[')) {
            let word = t.split_whitespace().next().unwrap();
            positionals.push((word.trim_matches(['<', '>', '[', ']', '.']).to_string(), word.ends_with("...")));
        }
        if section == "Options" && indent <= 6 && t.starts_with('-') {
            let words: Vec<&str> = t.split_whitespace().collect();
            let Some(i) = words.iter().position(|w| w.starts_with("--")) else { continue };
            let name = words[i].trim_end_matches(',').to_string();
            if name != "--help" && name != "--version" {
                flags.push((name, words.get(i + 1).is_some_and(|w| w.starts_with('<'))));
            }
        }
    }
    Spec { path, positionals, flags, required }
}

/// The files the cases use, all inside the test's temporary directory.
struct Fixture {
    root: PathBuf,
    model: PathBuf,
    math: PathBuf,
    mask: PathBuf,
    hostile_paths: Vec<String>,
}

fn fixture(root: &Path) -> Fixture {
    let p = |n: &str| root.join(n);
    for d in ["home", "tmp", "data", "a-directory", "cache"] {
        std::fs::create_dir_all(p(d)).unwrap();
    }
    let model = p("toy.gguf");
    let m = SynthModel::toy_transformer(2, 64, 128, 32, GgmlType::Q8_0);
    m.write(&model, &|ty, v| if ty == GgmlType::Q8_0 { ggml::quantize(ty, v, 32, None).unwrap() } else { encode_plain(ty, v) }).unwrap();
    let f = GgufFile::open(&model).unwrap();
    synthetic_stats(&f, 1, 50, "m").save(&p("math.gguf"), &[]).unwrap();
    synthetic_stats(&f, 2, 50, "g").save(&p("general.gguf"), &[]).unwrap();
    drop(f);
    let o = bin()
        .current_dir(root)
        .args(["apply", "toy.gguf", "--math", "math.gguf", "--general", "general.gguf", "--scale", "1.1", "--save-mask", "mask.gguf", "-o", "toy-out.gguf"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A small data directory: the first lines of each shared data file.
    let shared = std::env::var_os("MATHNEURO_DATA").map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"), PathBuf::from);
    for f in ["gsm8k/train.jsonl", "gsm8k/test.jsonl", "mmlu/test.jsonl", "mmlu/dev.jsonl", "arc/arc_easy_test.jsonl", "boolq/validation.jsonl", "piqa/validation.jsonl"] {
        let text = std::fs::read_to_string(shared.join(f)).unwrap_or_else(|e| panic!("{}: {e} (the data sets live beside the checkout)", shared.join(f).display()));
        std::fs::create_dir_all(p("data").join(f).parent().unwrap()).unwrap();
        std::fs::write(p("data").join(f), text.lines().take(8).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    }
    // The real model through a link here: outputs written beside MODEL land in this directory.
    std::os::unix::fs::symlink(common::real_model_path(), p("real.gguf")).unwrap();
    std::fs::write(p("not-gguf.txt"), "hello\n{\"question\": 1}\n").unwrap();
    std::fs::write(p("empty"), "").unwrap();
    std::fs::write(p("truncated.gguf"), &std::fs::read(&model).unwrap()[..200]).unwrap();
    assert!(Command::new("mkfifo").arg(p("fifo")).status().unwrap().success());
    let mut hostile = ["a-directory", "fifo", "missing.gguf", "not-gguf.txt", "empty", "truncated.gguf", "no-dir/x.gguf", "not-gguf.txt/x", "."]
        .iter()
        .map(|n| if n.starts_with('/') { n.to_string() } else { p(n).display().to_string() })
        .collect::<Vec<_>>();
    // A device node: our own where we may make one (root, who could also replace /dev/null if
    // a command wrongly did so with --force), else /dev/null itself (which a user cannot replace).
    if Command::new("mknod").arg(p("device")).args(["c", "1", "3"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success()) {
        hostile.push(p("device").display().to_string());
    } else {
        hostile.push("/dev/null".into());
    }
    Fixture { root: root.to_path_buf(), model, math: p("math.gguf"), mask: p("mask.gguf"), hostile_paths: hostile }
}

const NUMBERS: &[&str] = &[
    "0", "-1", "-0", "1", "18446744073709551615", "18446744073709551616", "99999999999", "4000000000", "2147483648", "NaN", "nan", "inf", "-inf", "1e-30", "1e308",
    "-1e308", "0.0000001", "2.5", "0x10", "1/2", "1,2",
];

fn long_string(rng: &mut StdRng) -> String {
    let n = *[300usize, 5000, 100_000].choose(rng).unwrap();
    "é".repeat(n / 2)
}

/// A hostile value: a number extreme, an odd string or an odd path.
fn hostile(rng: &mut StdRng, fx: &Fixture) -> String {
    match rng.random_range(0..10) {
        0..=3 => NUMBERS.choose(rng).unwrap().to_string(),
        4..=6 => fx.hostile_paths.choose(rng).unwrap().clone(),
        7 => long_string(rng),
        _ => ["", " ", "-", "--", "\n", "all", "a,,b", "=", "ollama:", "hf:", "x=y=z"].choose(rng).unwrap().to_string(),
    }
}

/// A value that lets the command get past its first check, by the flag's name.
fn plausible(flag: &str, case: usize, fx: &Fixture) -> String {
    let fresh = |ext: &str| fx.root.join(format!("out-{case}-{}{ext}", flag.trim_start_matches('-'))).display().to_string();
    match flag.trim_start_matches('-') {
        "o" | "output" | "save-mask" => fresh(".gguf"),
        "out" | "eval-out" | "work" => fresh(""),
        "math" | "general" => fx.root.join(format!("{}.gguf", flag.trim_start_matches('-'))).display().to_string(),
        "compare" => fx.model.display().to_string(),
        "data-dir" => fx.root.join("data").display().to_string(),
        "task-file" => fx.root.join("not-gguf.txt").display().to_string(),
        "tasks" | "eval" => "arc_easy".into(),
        "data" => "embedded-math".into(),
        "shard" => "0/2".into(),
        "edit" => "keep".into(),
        "method" => "mathneuro".into(),
        _ => "2".into(),
    }
}

/// The input file a positional argument names, by its name and the command.
fn positional(spec: &Spec, name: &str, fx: &Fixture) -> String {
    let p = match (spec.path[0].as_str(), name) {
        ("mask", _) => &fx.mask,
        ("stats", _) => &fx.math,
        _ => &fx.model,
    };
    p.display().to_string()
}

/// Flags that keep a command on the real model short, overridden by any random value.
fn bounds(command: &str) -> &'static [(&'static str, &'static str)] {
    match command {
        "calibrate" => &[("--samples", "1"), ("--max-tokens", "8"), ("--threads", "1")],
        "eval" => &[("--limit", "1"), ("--tasks", "arc_easy"), ("--threads", "1"), ("--bootstrap", "10")],
        _ => &[],
    }
}

/// One case's argv (without the binary).
fn case(spec: &Spec, case: usize, rng: &mut StdRng, fx: &Fixture) -> Vec<String> {
    let mut argv = spec.path.clone();
    // Now and then the real model, so that llama.cpp's own checks are reached too.
    let real = matches!(spec.path[0].as_str(), "inspect" | "calibrate" | "eval") && rng.random_bool(0.2);
    for (name, repeats) in &spec.positionals {
        for _ in 0..if *repeats { 2 } else { 1 } {
            argv.push(match rng.random_range(0..4) {
                0 => hostile(rng, fx),
                _ if real => fx.root.join("real.gguf").display().to_string(),
                _ => positional(spec, name, fx),
            });
        }
    }
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    if real {
        flags.extend(bounds(&spec.path[0]).iter().map(|(f, v)| (f.to_string(), Some(v.to_string()))));
    }
    // Numeric flags (plausible value "2") get a number extreme half the time they go hostile.
    let value = |flag: &str, rng: &mut StdRng| match (rng.random_bool(0.5), plausible(flag, case, fx)) {
        (true, v) => v,
        (false, v) if v == "2" && rng.random_bool(0.5) => NUMBERS.choose(rng).unwrap().to_string(),
        _ => hostile(rng, fx),
    };
    let mut set = |flag: &str, v: Option<String>| match flags.iter_mut().find(|(f, _)| f == flag) {
        Some(slot) => slot.1 = v,
        None => flags.push((flag.to_string(), v)),
    };
    for flag in &spec.required {
        if rng.random_bool(0.85) {
            let takes = spec.flags.iter().any(|(f, v)| f == flag && *v);
            set(flag, takes.then(|| value(flag, rng)));
        }
    }
    let n = rng.random_range(0..=4).min(spec.flags.len());
    for (flag, takes) in spec.flags.choose_multiple(rng, n).cloned().collect::<Vec<_>>() {
        set(&flag, takes.then(|| value(&flag, rng)));
    }
    if let Some(i) = (!flags.is_empty() && rng.random_bool(0.1)).then(|| rng.random_range(0..flags.len())) {
        flags.push(flags[i].clone());
    }
    for (flag, v) in flags {
        match v {
            // A value that looks like a flag goes in `--flag=value` form, as a user would write it.
            Some(v) if v.starts_with('-') || rng.random_bool(0.2) => argv.push(format!("{flag}={v}")),
            Some(v) => argv.extend([flag, v]),
            None => argv.push(flag),
        }
    }
    if rng.random_bool(0.1) {
        argv.push(["--no-such-flag", "-Z", "--force=maybe"].choose(rng).unwrap().to_string());
    }
    argv
}

/// Runs one case; `Some(reason)` when it panicked, aborted, died by a signal or hung.
fn run_case(argv: &[String], n: usize, fx: &Fixture) -> Option<String> {
    let logs = fx.root.join("logs");
    let (out, err) = (logs.join(format!("{n}.out")), logs.join(format!("{n}.err")));
    let mut c = bin();
    c.args(argv).current_dir(&fx.root).stdin(Stdio::null());
    c.env("HOME", fx.root.join("home")).env("TMPDIR", fx.root.join("tmp")).env("XDG_CACHE_HOME", fx.root.join("cache"));
    c.env("MATHNEURO_DATA", fx.root.join("data")).env("RAYON_NUM_THREADS", "1").env("OMP_NUM_THREADS", "1").env("HF_HOME", fx.root.join("cache")).env("OLLAMA_MODELS", fx.root.join("home"));
    c.stdout(std::fs::File::create(&out).unwrap()).stderr(std::fs::File::create(&err).unwrap());
    let mut child = c.spawn().unwrap();
    let t0 = Instant::now();
    let limit = if argv.iter().any(|a| a.ends_with("real.gguf")) { LIMIT_REAL } else { LIMIT };
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Some(format!("hang (killed after {limit:?})"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ");
    use std::os::unix::process::ExitStatusExt as _;
    if std::env::var_os("MATHNEURO_FUZZ_CLI_VERBOSE").is_some() {
        eprintln!("case {n}: {:?} in {:.1} s: {}\n    {}", status.code(), t0.elapsed().as_secs_f64(), stderr.lines().next().unwrap_or(""), show(argv));
    }
    match (status.code(), status.signal()) {
        (Some(101), _) => Some(format!("panic (exit 101): {tail}")),
        (Some(134), _) => Some(format!("abort (exit 134): {tail}")),
        (None, Some(sig)) => Some(format!("killed by signal {sig}: {tail}")),
        _ if stderr.contains("panicked at") => Some(format!("panic message: {tail}")),
        _ => None,
    }
}

/// argv as a shell line, long arguments shortened.
fn show(argv: &[String]) -> String {
    let short = |a: &String| {
        let n = a.chars().count();
        let s: String = if n > 60 { format!("{}…({n} chars)", a.chars().take(20).collect::<String>()) } else { a.clone() };
        if s.is_empty() || s.contains([' ', '\n', '\'']) { format!("{s:?}") } else { s }
    };
    std::iter::once("mathneuro".to_string()).chain(argv.iter().map(short)).collect::<Vec<_>>().join(" ")
}

/// Files and directories under the checkout, build outputs and git excluded.
fn checkout_entries() -> BTreeSet<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name();
            if d == root && (name == "target" || name == ".git") {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p.clone());
            }
            out.insert(p);
        }
    }
    out
}

#[test]
fn issue27_every_subcommand_survives_random_argument_extremes() {
    let seed = std::env::var("MATHNEURO_FUZZ_CLI_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(27u64);
    let per_command = std::env::var("MATHNEURO_FUZZ_CLI_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(12usize);
    let dir = tempfile::tempdir().unwrap();
    let fx = fixture(dir.path());
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let specs = specs();
    let names: Vec<String> = specs.iter().map(|s| s.path.join(" ")).collect();
    for expected in ["inspect", "calibrate", "apply", "eval", "run", "experiments", "tune", "stats merge", "mask compare"] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from --help: {names:?}");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cases = Vec::new();
    for spec in &specs {
        for _ in 0..per_command {
            cases.push(case(spec, cases.len(), &mut rng, &fx));
        }
    }
    let before = checkout_entries();
    let failures = Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(argv) = cases.get(n) else { break };
                    if let Some(why) = run_case(argv, n, &fx) {
                        failures.lock().unwrap().push(format!("case {n}: {why}\n    {}", show(argv)));
                    }
                }
            });
        }
    });
    let new: Vec<_> = checkout_entries().difference(&before).cloned().collect();
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|f| f.split(':').next().and_then(|c| c.trim_start_matches("case ").parse::<usize>().ok()));
    eprintln!("fuzz_cli: seed {seed}, {} cases over {} commands in {:.1} s, {} failing", cases.len(), specs.len(), t0.elapsed().as_secs_f64(), failures.len());
    for f in &failures {
        eprintln!("{f}");
    }
    assert!(std::fs::metadata("/dev/null").is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type())), "/dev/null is no longer a device");
    assert!(new.is_empty(), "files appeared in the checkout: {new:?}");
    assert!(failures.is_empty(), "{} of {} cases failed (seed {seed}):\n{}", failures.len(), cases.len(), failures.join("\n"));
}
