//! `eval MODEL --compare-run DIR`: a second model's finished evaluation read back as the other
//! side of the paired comparison. On the two real small models (Gemma 3 270M and SmolLM2-135M),
//! the comparison from the finished run equals the one `--compare` computes by evaluating both,
//! the finished run's files are never written, and a run with other settings, an unfinished run
//! or a missing report is refused with the file named.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{data_dir, fails_with, real_model_path, run, stderr};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mathneuro"));
    c.env("RAYON_NUM_THREADS", "2").env("MATHNEURO_DATA", data_dir());
    c
}

fn smollm2() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "{} is missing: run models/fetch.sh all (tests need it and do not skip)", p.display());
    p
}

/// `eval MODEL --tasks arc_easy --limit LIMIT --threads 2 --out OUT` plus `extra`.
fn eval(model: &Path, limit: &str, out: &Path, extra: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut c = bin();
    c.arg("eval").arg(model).args(["--tasks", "arc_easy", "--limit", limit, "--threads", "2", "-q", "--out"]).arg(out).args(extra);
    run(&mut c)
}

fn comparison(dir: &Path) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let mut c = v.clone();
    // Where and how long each model ran differ between the two ways; the numbers must not.
    for side in ["base", "other"] {
        c[side]["wall_seconds"] = serde_json::Value::Null;
        c[side]["model"] = serde_json::Value::Null;
        for t in c[side]["tasks"].as_array_mut().into_iter().flatten() {
            t["wall_seconds"] = serde_json::Value::Null;
        }
    }
    c
}

fn tree_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in walk(dir) {
        out.push((e.clone(), std::fs::read(&e).unwrap()));
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { files.extend(walk(&p)) } else { files.push(p) }
    }
    files
}

#[test]
fn a_finished_run_pairs_as_the_model_would() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (base, other) = (real_model_path(), smollm2());
    let o = eval(&other, "6", &d.join("other-run"), &["--redact-items".as_ref()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = tree_bytes(&d.join("other-run"));

    let o = eval(&base, "6", &d.join("both"), &["--compare".as_ref(), other.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = eval(&base, "6", &d.join("from-run"), &["--compare-run".as_ref(), d.join("other-run").as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(comparison(&d.join("both")), comparison(&d.join("from-run")));
    assert!(String::from_utf8_lossy(&o.stdout).contains("arc_easy"));
    // The finished run is an input: not one byte of it changed.
    assert_eq!(before, tree_bytes(&d.join("other-run")));

    // Other settings (another --limit) are refused, naming the item file.
    let o = eval(&base, "4", &d.join("x1"), &["--compare-run".as_ref(), d.join("other-run").as_os_str()]);
    fails_with(&o, &["other-run/items/base/arc_easy.jsonl", "other settings", "limit=Some(6)"]);
    assert!(!d.join("x1/report.json").exists());

    // An unfinished run (its last item gone) is refused before the base is evaluated.
    let journal = d.join("other-run/items/base/arc_easy.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let cut: Vec<&str> = text.lines().collect();
    std::fs::write(&journal, cut[..cut.len() - 1].join("\n") + "\n").unwrap();
    let o = eval(&base, "6", &d.join("x2"), &["--compare-run".as_ref(), d.join("other-run").as_os_str()]);
    fails_with(&o, &["arc_easy.jsonl", "holds 5 of the 6 items", "--resume"]);
    assert!(!d.join("x2/items").exists());

    // A directory that holds no finished run.
    let o = eval(&base, "6", &d.join("x3"), &["--compare-run".as_ref(), d.join("nothing").as_os_str()]);
    fails_with(&o, &["nothing/report.json", "--compare-run takes the --out directory"]);

    // --compare-run onto its own directory would overwrite its input.
    let o = eval(&base, "6", &d.join("other-run"), &["--compare-run".as_ref(), d.join("other-run").as_os_str(), "--force".as_ref()]);
    fails_with(&o, &["other-run/report.json", "never writes onto its inputs"]);
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), cut[..cut.len() - 1].join("\n") + "\n");
}
