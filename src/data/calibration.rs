//! Calibration sets: a `--data` SPEC turned into texts, one text per calibration sample.
//!
//! SPEC is a named set read from the data directory — `gsm8k` (train: question + worked answer),
//! `math` (problem + solution of the MATH problems outside the test part of the one seeded
//! split, `super::math_split`: never one of the 500 test problems),
//! `mmlu` (test: question + correct choice), `race` (middle validation: article + question +
//! correct option) — or the built-in `embedded-math` / `embedded-general`, or a path: a `.jsonl`
//! file with a `text` field per line, or a `.txt` file with one text per blank-line-separated
//! block.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::embedded;

/// Why a calibration set could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("{}: {err}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        err: std::io::Error,
    },
    /// A JSONL line is not what the set needs.
    #[error("{}:{line}: {problem}", path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// Line number, 1-based.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The set holds no texts.
    #[error("{name}: the calibration set is empty (no non-blank texts)")]
    Empty {
        /// File or set name.
        name: String,
    },
    /// A named set needs the data directory, which was not found.
    #[error("data set `{name}` needs the data directory: {reason}")]
    NoDataDir {
        /// The set.
        name: String,
        /// Why no directory was found.
        reason: super::dir::DataDirError,
    },
    /// The MATH file is missing or malformed.
    #[error(transparent)]
    Math(#[from] crate::eval::datasets::DatasetError),
    /// Neither a known name nor a .jsonl/.txt path.
    #[error("unknown data set `{0}`: use gsm8k, math, mmlu, race, embedded-math, embedded-general, a .jsonl file with a `text` field, or a .txt file")]
    Unknown(String),
}

/// A calibration set: its name, how texts were formed, and the texts.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationSet {
    /// Name recorded in STATS files (`gsm8k`, `embedded-math`, a file name…).
    pub name: String,
    /// How each text was formed from a record, e.g. `{question}\n{answer}`.
    pub template: String,
    /// The texts.
    pub texts: Vec<String>,
    /// Per text, the byte length of its prompt part (question, or article and question; for
    /// plain texts the first line): `--chat` renders `text[..n]` as the user turn and the rest
    /// after the separating newline as the assistant turn.
    pub prompt_len: Vec<usize>,
}

impl CalibrationSet {
    /// Text `i` as a (user, assistant) pair for `--chat`.
    pub fn turns(&self, i: usize) -> (&str, &str) {
        let t = &self.texts[i];
        let n = self.prompt_len.get(i).copied().unwrap_or(t.len()).min(t.len());
        let (user, rest) = t.split_at(n);
        (user, rest.strip_prefix('\n').unwrap_or(rest))
    }
}

/// A set of plain texts whose prompt part is the first line.
fn plain(name: String, template: &str, texts: Vec<String>) -> CalibrationSet {
    let prompt_len = texts.iter().map(|t| t.find('\n').unwrap_or(t.len())).collect();
    CalibrationSet { name, template: template.into(), texts, prompt_len }
}

/// A set of (prompt, answer) records joined by a newline.
fn pairs(name: &str, template: &str, records: Vec<(String, String)>) -> CalibrationSet {
    let prompt_len = records.iter().map(|(p, _)| p.len()).collect();
    let texts = records.into_iter().map(|(p, a)| format!("{p}\n{a}")).collect();
    CalibrationSet { name: name.into(), template: template.into(), texts, prompt_len }
}

/// Names of the built-in sets and the sets read from the data directory.
pub const NAMED_SETS: [&str; 6] = ["gsm8k", "math", "mmlu", "race", "embedded-math", "embedded-general"];

/// The file of the data directory a named set reads (relative to the directory).
fn named_file(spec: &str) -> Option<&'static str> {
    Some(match spec {
        "gsm8k" => "gsm8k/train.jsonl",
        "math" => "math/test.jsonl",
        "mmlu" => "mmlu/test.jsonl",
        "race" => "race/middle_validation.jsonl",
        _ => return None,
    })
}

/// The file SPEC reads (a named set's file in the data directory, or the `.jsonl`/`.txt` file
/// itself); `None` for the built-in sets, an unknown spec or a data directory not found. Writing
/// commands name it as an input, so no output replaces it.
pub fn input_file(spec: &str, data_dir: Option<&Path>) -> Option<PathBuf> {
    match named_file(spec) {
        Some(file) => super::dir::resolve_data_dir(data_dir).ok().map(|dir| dir.join(file)),
        None => (spec.ends_with(".jsonl") || spec.ends_with(".txt")).then(|| PathBuf::from(spec)),
    }
}

/// Loads SPEC. `data_dir` is consulted only for named sets (`--data-dir` flag value).
pub fn load(spec: &str, data_dir: Option<&Path>) -> Result<CalibrationSet, DataError> {
    let dir = || super::dir::resolve_data_dir(data_dir).map_err(|reason| DataError::NoDataDir { name: spec.to_string(), reason });
    let named = |file: &str| -> Result<PathBuf, DataError> { Ok(dir()?.join(file)) };
    let set = match spec {
        "embedded-math" => plain(spec.into(), "{text}", embedded::MATH.iter().map(|s| s.to_string()).collect()),
        "embedded-general" => plain(spec.into(), "{text}", embedded::GENERAL.iter().map(|s| s.to_string()).collect()),
        "gsm8k" => {
            let path = named("gsm8k/train.jsonl")?;
            let records = read_jsonl(&path, |v| Ok((field(v, "question")?.to_string(), field(v, "answer")?.to_string())))?;
            pairs(spec, "{question}\n{answer}", records)
        }
        "math" => {
            // Hendrycks et al.'s MATH (the paper's second math set). The data copy holds only its
            // test problems: the calibration texts are the part of the seeded split that is not
            // the evaluation's test part.
            let split = super::math_split::MathSplit::load(&dir()?)?;
            let records = split.rest.iter().map(|&i| (split.records[i].context.clone(), split.records[i].chain_of_thought.clone())).collect();
            pairs(spec, "{context}\n{chain_of_thought} (MATH, outside the 500 test problems of the seeded split)", records)
        }
        "mmlu" => {
            let path = named("mmlu/test.jsonl")?;
            let records = read_jsonl(&path, |v| {
                let i = v.get("answer_index").and_then(Value::as_u64).ok_or("missing integer field `answer_index`")? as usize;
                Ok((field(v, "question")?.to_string(), choice(v, "choices", i)?.to_string()))
            })?;
            pairs(spec, "{question}\n{choices[answer_index]}", records)
        }
        "race" => {
            let path = named("race/middle_validation.jsonl")?;
            let records = read_jsonl(&path, |v| {
                let letter = field(v, "answer")?;
                let i = match letter.trim() {
                    "A" => 0,
                    "B" => 1,
                    "C" => 2,
                    "D" => 3,
                    other => return Err(format!("answer `{other}` is not A-D")),
                };
                Ok((format!("{}\n{}", field(v, "article")?, field(v, "question")?), choice(v, "options", i)?.to_string()))
            })?;
            pairs(spec, "{article}\n{question}\n{options[answer]}", records)
        }
        _ if spec.ends_with(".jsonl") => {
            let path = PathBuf::from(spec);
            let texts = read_jsonl(&path, |v| field(v, "text").map(str::to_string))?;
            plain(file_name(&path), "{text}", texts)
        }
        _ if spec.ends_with(".txt") => {
            let path = PathBuf::from(spec);
            let raw = crate::safety::inputs::read_text(&path).map_err(|err| DataError::Io { path: path.clone(), err })?;
            plain(file_name(&path), "{block}", blocks(&raw))
        }
        _ => return Err(DataError::Unknown(spec.to_string())),
    };
    if set.texts.is_empty() {
        return Err(DataError::Empty { name: if NAMED_SETS.contains(&spec) { set.name } else { spec.to_string() } });
    }
    Ok(set)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn field<'v>(v: &'v Value, key: &str) -> Result<&'v str, String> {
    v.get(key).and_then(Value::as_str).ok_or_else(|| format!("missing string field `{key}`"))
}

fn choice<'v>(v: &'v Value, key: &str, i: usize) -> Result<&'v str, String> {
    let list = v.get(key).and_then(Value::as_array).ok_or_else(|| format!("missing array field `{key}`"))?;
    list.get(i).and_then(Value::as_str).ok_or_else(|| format!("`{key}` has no string entry {i}"))
}

/// Things a text is made of (one string, or a prompt/answer pair), to skip blank ones.
trait Blank {
    fn is_blank(&self) -> bool;
}

impl Blank for String {
    fn is_blank(&self) -> bool {
        self.trim().is_empty()
    }
}

impl Blank for (String, String) {
    fn is_blank(&self) -> bool {
        self.0.trim().is_empty() && self.1.trim().is_empty()
    }
}

/// Records of a JSONL file, one per non-blank line, formed by `make`; blank results are skipped.
fn read_jsonl<T: Blank>(path: &Path, make: impl Fn(&Value) -> Result<T, String>) -> Result<Vec<T>, DataError> {
    let raw = crate::safety::inputs::read_text(path).map_err(|err| DataError::Io { path: path.to_path_buf(), err })?;
    let mut texts = Vec::new();
    for (i, line) in raw.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |problem: String| DataError::BadLine { path: path.to_path_buf(), line: i + 1, problem };
        let v: Value = serde_json::from_str(line).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let text = make(&v).map_err(bad)?;
        if !text.is_blank() {
            texts.push(text);
        }
    }
    Ok(texts)
}

/// Blank-line-separated blocks, trimmed, blank ones dropped.
pub fn blocks(raw: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    for line in raw.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(cur.join("\n").trim().to_string());
                cur.clear();
            }
        } else {
            cur.push(line);
        }
    }
    out.retain(|t| !t.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_blocks_split_on_blank_lines() {
        assert_eq!(blocks("a\nb\n\n\n  \nc\n"), vec!["a\nb".to_string(), "c".to_string()]);
        assert!(blocks("\n \n").is_empty());
    }

    #[test]
    fn jsonl_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("set.jsonl");
        std::fs::write(&p, "{\"text\": \"one\"}\n\n{\"text\": 3}\n").unwrap();
        let err = load(p.to_str().unwrap(), None).unwrap_err().to_string();
        assert!(err.contains("set.jsonl:3") && err.contains("`text`"), "{err}");
        std::fs::write(&p, "{\"text\": \"one\"}\n{oops\n").unwrap();
        let err = load(p.to_str().unwrap(), None).unwrap_err().to_string();
        assert!(err.contains("set.jsonl:2") && err.contains("not valid JSON"), "{err}");
        std::fs::write(&p, "\n{\"text\": \"  \"}\n").unwrap();
        let err = load(p.to_str().unwrap(), None).unwrap_err().to_string();
        assert!(err.contains("set.jsonl") && err.contains("empty"), "{err}");
    }

    #[test]
    fn named_sets_need_the_data_dir_and_say_where_they_looked() {
        let err = load("gsm8k", Some(Path::new("/no/such/data"))).unwrap_err().to_string();
        assert!(err.contains("/no/such/data") && err.contains("gsm8k"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = load("mmlu", Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("mmlu/test.jsonl"), "{err}");
        assert!(matches!(load("nonsense", None), Err(DataError::Unknown(_))));
    }

    #[test]
    fn embedded_sets_are_available_without_data() {
        let m = load("embedded-math", None).unwrap();
        let g = load("embedded-general", None).unwrap();
        assert!(m.texts.len() >= 24 && g.texts.len() >= 24, "{} {}", m.texts.len(), g.texts.len());
    }
}
