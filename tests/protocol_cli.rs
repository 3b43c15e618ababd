//! `mathneuro protocol` end to end on the default model at a tiny size: a pruned edit of Gemma 3
//! 270M against the base, both protocols and the subsets in the report, a second run into the
//! same directory refused without --resume or --force, a resumed run that computes nothing
//! again and gives the same numbers, and journals redacted (`--redact-items`) to the same numbers.

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
}
