//! One interface (issue 26): every subcommand's `--help` is walked and the flags every command
//! shares are checked where they mean something — `--quiet`/`-q` (alias `--no-progress`) and
//! `--threads N` on every long-running command, `--force` on every command that writes,
//! `--seed`, `--chat` and `--data-dir DIR` where the command samples, wraps prompts or reads the
//! named data sets. A new subcommand fails the walk until it is classified here.

use std::process::Command;

/// The flags each subcommand must have (by its path, e.g. `stats merge`).
const EXPECTED: &[(&str, &[&str])] = &[
    ("inspect", &[]),
    ("calibrate", &["--quiet", "--threads", "--force", "--seed", "--chat", "--data-dir"]),
    ("stats merge", &["--force"]),
    ("stats imatrix", &["--force"]),
    ("stats show", &[]),
    ("apply", &["--quiet", "--threads", "--force", "--seed"]),
    ("quantize", &["--quiet", "--threads", "--force"]),
    ("sensitivity", &["--quiet", "--threads", "--force", "--data-dir"]),
    ("mask compare", &[]),
    ("mask show", &[]),
    ("eval", &["--quiet", "--threads", "--force", "--seed", "--chat", "--data-dir"]),
    ("kld", &["--quiet", "--threads", "--force", "--data-dir"]),
    ("run", &["--quiet", "--threads", "--force", "--seed", "--chat", "--data-dir"]),
    ("experiments", &["--quiet", "--threads", "--force", "--seed", "--chat", "--data-dir"]),
    ("tune", &["--quiet", "--threads", "--force", "--seed", "--chat", "--data-dir"]),
    ("protocol", &["--quiet", "--threads", "--force", "--seed", "--chat", "--data-dir"]),
    ("protocol-combine", &["--force"]),
];

fn help(path: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mathneuro")).args(path).arg("--help").output().unwrap();
    assert!(out.status.success(), "mathneuro {} --help failed: {}", path.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommand names listed under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    let Some(start) = help.find("Commands:") else { return Vec::new() };
    help[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|name| name != "help")
        .collect()
}

/// Every leaf subcommand path, walked from the top-level help.
fn leaves(path: Vec<String>) -> Vec<Vec<String>> {
    let refs: Vec<&str> = path.iter().map(String::as_str).collect();
    let subs = subcommands(&help(&refs));
    if subs.is_empty() {
        return vec![path];
    }
    subs.into_iter()
        .flat_map(|s| {
            let mut p = path.clone();
            p.push(s);
            leaves(p)
        })
        .collect()
}

/// The option lines of a help text: `  -q, --quiet` → (`-q`, `--quiet`, value).
fn options(help: &str) -> Vec<(Option<String>, String, Option<String>)> {
    let mut out = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        let (short, rest) = match t.strip_prefix('-').filter(|r| !r.starts_with('-')) {
            Some(r) if r.len() > 2 && r.as_bytes()[1] == b',' => (Some(format!("-{}", &r[..1])), r[2..].trim_start()),
            _ => (None, t),
        };
        if !rest.starts_with("--") || (indent(line) > 10) {
            continue;
        }
        let mut words = rest.split_whitespace();
        let long = words.next().unwrap().to_string();
        let value = words.next().filter(|w| w.starts_with('<')).map(str::to_string);
        out.push((short, long, value));
    }
    out
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

#[test]
fn every_subcommand_takes_the_shared_flags() {
    let found = leaves(Vec::new());
    let names: Vec<String> = found.iter().map(|p| p.join(" ")).collect();
    let expected: Vec<String> = EXPECTED.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names, expected, "classify every subcommand in EXPECTED (which shared flags it needs)");

    let mut missing = Vec::new();
    for (path, flags) in EXPECTED {
        let text = help(&path.split(' ').collect::<Vec<_>>());
        let opts = options(&text);
        for flag in *flags {
            let Some((short, _, value)) = opts.iter().find(|(_, l, _)| l == flag) else {
                missing.push(format!("{path}: {flag}"));
                continue;
            };
            // The same flag looks the same everywhere.
            match *flag {
                "--quiet" => {
                    assert_eq!(short.as_deref(), Some("-q"), "{path}: --quiet has -q");
                    assert!(text.contains("[alias: --no-progress]"), "{path}: --no-progress stays an alias of --quiet");
                }
                "--threads" => assert_eq!(value.as_deref(), Some("<N>"), "{path}: --threads N"),
                "--data-dir" => assert_eq!(value.as_deref(), Some("<DIR>"), "{path}: --data-dir DIR"),
                "--seed" => assert_eq!(value.as_deref(), Some("<SEED>"), "{path}: --seed SEED"),
                _ => assert_eq!(value.as_deref(), None, "{path}: {flag} is a switch"),
            }
        }
    }
    assert!(missing.is_empty(), "shared flags missing: {missing:?}");
}

#[test]
fn no_progress_is_still_accepted_where_it_was() {
    // `eval` and `run` took `--no-progress` before `--quiet`; scripts using it keep working.
    for cmd in ["eval", "run"] {
        let out = Command::new(env!("CARGO_BIN_EXE_mathneuro")).args([cmd, "no-such-model.gguf", "--no-progress"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("no-such-model.gguf") && !err.contains("unexpected argument"), "{cmd}: {err}");
    }
}

const MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";

fn shared_data() -> std::path::PathBuf {
    let p = std::env::var_os("MATHNEURO_DATA").map_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"), Into::into);
    assert!(p.join("gsm8k/train.jsonl").exists(), "{} is missing: the data sets live beside the checkout", p.display());
    p
}

/// `tune` at the tiny budget of tests/tune_cli.rs, with `extra` flags.
fn tune(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    assert!(std::path::Path::new(MODEL).exists(), "{MODEL} is missing: run models/fetch.sh (tests need it and do not skip)");
    let args = [
        "tune", MODEL, "--samples", "2", "--max-tokens", "32", "--candidates", "2", "--rounds", "2", "--budget", "16", "--guard-items", "2",
        "--general-items", "2", "--test-items", "2", "--test-general-items", "2", "--max-new-tokens", "24", "--min-gain", "0", "--threads", "2",
        "--guard-nll", "10", "--general-tolerance", "1", "-q",
    ];
    Command::new(env!("CARGO_BIN_EXE_mathneuro")).args(args).args(extra).arg("--data-dir").arg(shared_data()).arg("-o").arg(dir.join("best.gguf")).output().unwrap()
}

#[test]
fn tunes_printed_apply_command_rebuilds_its_output_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let out = tune(dir.path(), &[]);
    assert!(out.status.success(), "tune failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with("mathneuro apply ")).unwrap_or_else(|| panic!("no apply command in the report:\n{stdout}"));
    let tuned = std::fs::read(dir.path().join("best.gguf")).unwrap();
    // Paths in a temp dir need no quoting; the command is run exactly as printed.
    let words: Vec<&str> = line.split_whitespace().collect();
    assert!(words.contains(&"--force") && words.iter().any(|w| w.ends_with("best.gguf")), "{line}");
    std::fs::remove_file(dir.path().join("best.gguf")).unwrap();
    let rebuilt = Command::new(env!("CARGO_BIN_EXE_mathneuro")).args(&words[1..]).output().unwrap();
    assert!(rebuilt.status.success(), "{line}\n{}", String::from_utf8_lossy(&rebuilt.stderr));
    assert!(std::fs::read(dir.path().join("best.gguf")).unwrap() == tuned, "`{line}` rebuilds tune's output byte for byte");
}

#[test]
fn every_tune_region_is_an_apply_restriction() {
    use mathneuro::select::restrict::{Kind, Layers, Restriction};
    use mathneuro::tune::space::{Region, Space};
    let file = mathneuro::gguf::GgufFile::open(MODEL).unwrap();
    let names: Vec<String> = mathneuro::model::target_weights(&file).iter().map(|t| t.name.clone()).collect();
    let mut regions = Space::default_for(18, true).regions;
    regions.push(Region::HeadOnly);
    for region in regions {
        let flags = region.restriction().flags();
        // Parse the flags back as `apply` does.
        let mut parsed = Restriction::default();
        for pair in flags.chunks(2) {
            match pair[0].as_str() {
                "--only" => parsed.kinds = Some(pair[1].split(',').map(|k| <Kind as clap::ValueEnum>::from_str(k, false).unwrap()).collect()),
                "--layers" => parsed.layers = Some(pair[1].parse::<Layers>().unwrap()),
                f => panic!("unknown flag {f}"),
            }
        }
        for n in &names {
            assert_eq!(region.contains(n), parsed.contains(n), "{region:?} ({flags:?}) on {n}");
        }
    }
}

#[test]
fn experiments_chat_is_in_the_plan_and_refused_before_any_work_without_a_template() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exp");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mathneuro")).args(["experiments", MODEL, "--quick", "--chat", "--threads", "2"]).args(extra).arg("--out").arg(&out).arg("--data-dir").arg(shared_data()).output().unwrap()
    };
    let plan = run(&["--dry-run"]);
    assert!(plan.status.success() && String::from_utf8_lossy(&plan.stdout).contains("\"mode\": \"quick, chat template\""), "{}", String::from_utf8_lossy(&plan.stdout));
    // Gemma 3 270M (base) has no chat template: refused at once, nothing written.
    crate::common::fails_with(&run(&[]), &["--chat", "tokenizer.chat_template", "drop --chat"]);
    assert!(!out.exists(), "a refused run created its output directory");
}
