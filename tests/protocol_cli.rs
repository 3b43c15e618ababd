//! `mathneuro protocol` end to end on the default model at a tiny size: a pruned edit of Gemma 3
//! 270M against the base, both protocols and the subsets in the report, a second run into the
//! same directory refused without --resume or --force, a resumed run that computes nothing
//! again and gives the same numbers, journals redacted (`--redact-items`) to the same numbers, and
//! a run split into `--gsm8k-range` slices that `protocol-combine` adds up (refusing overlapping
//! slices, slices of another edit, and an existing output without --force).

use std::path::{Path, PathBuf};
use std::process::Command;

const MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";

fn bin() -> Command {
    assert!(Path::new(MODEL).exists(), "{MODEL} is missing: run models/fetch.sh (tests need it and do not skip)");
    Command::new(env!("CARGO_BIN_EXE_mathneuro"))
}

fn protocol(edit: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    bin()
        .args(["protocol", MODEL])
        .arg(edit)
        .arg("--out")
        .arg(out)
        .args(["--gsm8k-items", "6", "--paper-n", "4", "--general-tasks", "arc_easy", "--general-items", "4", "--max-new-tokens", "24", "--threads", "2", "--subsets", "200", "--quiet"])
        .args(extra)
        .output()
        .unwrap()
}

fn numbers(path: &Path) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    // Wall times and the command line differ between runs; the measurements must not.
    v["base_wall_seconds"] = 0.into();
    v["command"] = "".into();
    for e in v["edits"].as_array_mut().unwrap() {
        e["wall_seconds"] = 0.into();
    }
    v
}

#[test]
fn protocol_runs_end_to_end_refuses_a_used_directory_and_resumes_to_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let edit: PathBuf = dir.path().join("pruned.gguf");
    let made = bin().args(["run", MODEL, "--samples", "2", "--max-tokens", "64", "--threads", "2", "--prune"]).arg("-o").arg(&edit).output().unwrap();
    assert!(made.status.success(), "run --prune failed: {}", String::from_utf8_lossy(&made.stderr));

    let out = dir.path().join("protocol");
    let first = protocol(&edit, &out, &[]);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "protocol failed: {}", String::from_utf8_lossy(&first.stderr));
    assert!(stdout.contains("GSM8K flexible-extract — full paired") && stdout.contains("GSM8K flexible-extract — paper (first 4 in file order)"), "{stdout}");
    assert!(stdout.contains("| arc_easy acc |"), "{stdout}");
    for f in ["protocol.json", "protocol.md", "subsets.svg", "items/base/gsm8k.jsonl", "items/edit1/gsm8k.jsonl", "items/edit1/arc_easy.jsonl"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let report = numbers(&out.join("protocol.json"));
    let a = &report["edits"][0]["gsm8k"][1];
    assert_eq!(a["metric"], "flexible-extract");
    assert_eq!(a["full"]["n"], 6);
    assert_eq!(a["paper"]["n"], 4);
    assert_eq!(a["subsets"]["draws"], 200);
    assert_eq!(a["subsets"]["n"], 4);
    // The paper slice is the first 4 of the 6 evaluated questions in file order: its discordant
    // counts can not exceed the full run's.
    assert!(a["paper"]["base_only"].as_u64() <= a["full"]["base_only"].as_u64());
    assert!(std::fs::read_to_string(out.join("subsets.svg")).unwrap().starts_with("<svg"));

    // The directory holds a run: refused without --resume or --force, nothing changed.
    let before = std::fs::read(out.join("protocol.json")).unwrap();
    let again = protocol(&edit, &out, &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("pass --resume to continue it or --force to replace it"), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(std::fs::read(out.join("protocol.json")).unwrap(), before);

    // A resumed run computes nothing again (the items are journaled) and reports the same numbers.
    let items = std::fs::read(out.join("items/edit1/gsm8k.jsonl")).unwrap();
    let resumed = protocol(&edit, &out, &["--resume"]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(numbers(&out.join("protocol.json")), report);
    assert_eq!(std::fs::read(out.join("items/edit1/gsm8k.jsonl")).unwrap(), items);

    // Resumed with --redact-items, the journals lose every question, answer and output (their
    // sha256 stay) and the report keeps its numbers: a journal that can be moved.
    let question = {
        let line: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&items).lines().nth(1).unwrap()).unwrap();
        let prompt = line["item"]["prompt"].as_str().unwrap().to_string();
        prompt.rsplit("Q: ").next().unwrap().chars().take(60).collect::<String>()
    };
    assert!(question.len() > 20, "{question:?}");
    let redacted = protocol(&edit, &out, &["--resume", "--redact-items"]);
    assert!(redacted.status.success(), "{}", String::from_utf8_lossy(&redacted.stderr));
    assert_eq!(numbers(&out.join("protocol.json")), report);
    for f in ["items/base/gsm8k.jsonl", "items/edit1/gsm8k.jsonl"] {
        let text = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(!text.contains(&question), "{f} still holds the question {question:?}");
        assert!(text.contains("\"sha256\""), "{f}: {text}");
    }

    // An edit that is an output is refused before any work; so is a paper slice larger than N.
    let bad = protocol(&edit, &edit, &["--force"]);
    assert!(!bad.status.success());
    let small = bin().args(["protocol", MODEL]).arg(&edit).arg("--out").arg(dir.path().join("p2")).args(["--gsm8k-items", "6", "--paper-n", "10"]).output().unwrap();
    assert!(!small.status.success() && String::from_utf8_lossy(&small.stderr).contains("--gsm8k-items 6 is smaller than --paper-n 10"), "{}", String::from_utf8_lossy(&small.stderr));
    assert!(!dir.path().join("p2").exists());

    slices_add_up(dir.path(), &edit, &out);
}

fn slice(edit: &Path, out: &Path, range: &str, general: &str) -> std::process::Output {
    bin()
        .args(["protocol", MODEL])
        .arg(edit)
        .arg("--out")
        .arg(out)
        .args(["--gsm8k-range", range, "--paper-n", "4", "--general-tasks", general, "--general-items", "4", "--max-new-tokens", "24", "--threads", "2", "--subsets", "200", "--quiet"])
        .output()
        .unwrap()
}

fn combine(slices: &[&Path], out: &Path, extra: &[&str]) -> std::process::Output {
    bin().arg("protocol-combine").args(slices).arg("--out").arg(out).args(extra).output().unwrap()
}

/// Slices 0..4 and 4..6 of the GSM8K test, combined: the combined table is the sum of the
/// slices', the paper row is slice 0..4's, the general tasks come from the one slice that ran them.
fn slices_add_up(dir: &Path, edit: &Path, whole: &Path) {
    let (s1, s2) = (dir.join("s1"), dir.join("s2"));
    let a = slice(edit, &s1, "0..4", "arc_easy");
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let b = slice(edit, &s2, "4..6", "none");
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let r1 = numbers(&s1.join("protocol.json"));
    let r2 = numbers(&s2.join("protocol.json"));
    assert_eq!(r1["gsm8k_range"], serde_json::json!([0, 4]));
    assert!(r2["edits"][0]["gsm8k"][1]["paper"].is_null(), "a slice not starting at 0 has no paper row");
    assert!(!String::from_utf8_lossy(&b.stdout).contains("— paper (first"));

    let comb = dir.join("combined");
    let c = combine(&[&s2, &s1], &comb, &[]);
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    assert!(String::from_utf8_lossy(&c.stdout).contains("combined from 2 slices (0..4, 4..6)"), "{}", String::from_utf8_lossy(&c.stdout));
    let rc = numbers(&comb.join("protocol.json"));
    for m in 0..2 {
        let (t1, t2, tc) = (&r1["edits"][0]["gsm8k"][m]["full_table"], &r2["edits"][0]["gsm8k"][m]["full_table"], &rc["edits"][0]["gsm8k"][m]["full_table"]);
        for cell in ["both", "base_only", "edit_only", "neither"] {
            assert_eq!(tc[cell].as_u64().unwrap(), t1[cell].as_u64().unwrap() + t2[cell].as_u64().unwrap(), "{cell}");
        }
        assert_eq!(rc["edits"][0]["gsm8k"][m]["paper"], r1["edits"][0]["gsm8k"][m]["paper"]);
        assert_eq!(rc["edits"][0]["gsm8k"][m]["full"]["n"], 6);
    }
    assert_eq!(rc["edits"][0]["general"], r1["edits"][0]["general"]);

    // Refused: an existing output without --force (unchanged), overlapping slices, a slice of
    // another edit (the whole run above evaluated a different question set: not a slice at all).
    let before = std::fs::read(comb.join("protocol.json")).unwrap();
    let again = combine(&[&s1, &s2], &comb, &[]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--force"), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(std::fs::read(comb.join("protocol.json")).unwrap(), before);
    let twice = combine(&[&s1, &s1], &dir.join("c2"), &[]);
    assert!(!twice.status.success() && String::from_utf8_lossy(&twice.stderr).contains("overlap"), "{}", String::from_utf8_lossy(&twice.stderr));
    let not_slice = combine(&[&s1, whole], &dir.join("c3"), &[]);
    assert!(!not_slice.status.success() && String::from_utf8_lossy(&not_slice.stderr).contains("not a slice"), "{}", String::from_utf8_lossy(&not_slice.stderr));
    let mut other = r2.clone();
    other["edits"][0]["sha256"] = "0".repeat(64).into();
    let s3 = dir.join("s3");
    std::fs::create_dir(&s3).unwrap();
    std::fs::write(s3.join("protocol.json"), serde_json::to_vec(&other).unwrap()).unwrap();
    let foreign = combine(&[&s1, &s3], &dir.join("c4"), &[]);
    assert!(!foreign.status.success() && String::from_utf8_lossy(&foreign.stderr).contains("edited models"), "{}", String::from_utf8_lossy(&foreign.stderr));
    for d in ["c2", "c3", "c4"] {
        assert!(!dir.join(d).exists(), "{d} written by a refused combine");
    }
}
