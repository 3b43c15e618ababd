//! Loading the evaluation data sets from the data directory (see `/work/shared/data/SOURCES.md`
//! for their origin and fields). A missing or malformed file is an error naming the path, the
//! line and the problem.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A data file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file does not exist.
    #[error("missing data file {path} (expected `{relative}` under the data directory {dir})")]
    Missing {
        /// Full path.
        path: PathBuf,
        /// Path inside the data directory.
        relative: String,
        /// The data directory.
        dir: PathBuf,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not the expected JSON record.
    #[error("{path}:{line}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// A GSM8K record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Gsm8kRecord {
    /// The word problem.
    pub question: String,
    /// The worked solution ending in `#### N`.
    pub answer: String,
}

/// An MMLU record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MmluRecord {
    /// Subject, e.g. `abstract_algebra`.
    pub subject: String,
    /// The question.
    pub question: String,
    /// Four answer texts.
    pub choices: Vec<String>,
    /// Index of the right answer.
    pub answer_index: usize,
}

/// A RACE record (one question about an article).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RaceRecord {
    /// Article file name; consecutive records of one article share it.
    pub example_id: String,
    /// The article.
    pub article: String,
    /// The question (may be a cloze ending in `_  .`).
    pub question: String,
    /// Four options.
    pub options: Vec<String>,
    /// Right option letter, `A`–`D`.
    pub answer: String,
}

/// A HellaSwag record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HellaswagRecord {
    /// Activity label, e.g. `Roof shingle removal`.
    pub activity_label: String,
    /// Context (`ctx_a ctx_b`).
    pub ctx: String,
    /// Four endings.
    pub endings: Vec<String>,
    /// Index of the right ending.
    pub label: usize,
}

/// A record of the llm-foundry style tasks (ARC, PIQA, BoolQ).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct QueryRecord {
    /// The query text.
    pub query: String,
    /// Answer texts.
    pub choices: Vec<String>,
    /// Index of the right answer.
    pub gold: usize,
}

/// Opens `relative` under `dir`, or says which file is missing.
fn read(dir: &Path, relative: &str) -> Result<(PathBuf, String), DatasetError> {
    let path = dir.join(relative);
    // Anything that exists but is no regular file (a FIFO, a device) is named as what it is
    // by `read_text` below, not reported missing.
    if std::fs::symlink_metadata(&path).is_err() || std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
        return Err(DatasetError::Missing { path, relative: relative.to_string(), dir: dir.to_path_buf() });
    }
    let text = crate::safety::inputs::read_text(&path).map_err(|source| DatasetError::Io { path: path.clone(), source })?;
    Ok((path, text))
}

/// Reads a JSON-lines file of `T` records.
pub fn read_jsonl<T: DeserializeOwned>(dir: &Path, relative: &str) -> Result<Vec<T>, DatasetError> {
    let (path, text) = read(dir, relative)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| DatasetError::Malformed {
                path: path.clone(),
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Reads a whole text file.
pub fn read_text(dir: &Path, relative: &str) -> Result<String, DatasetError> {
    read(dir, relative).map(|(_, t)| t)
}

/// Checks that `gold` indexes `n` choices, naming the file and record otherwise.
pub fn check_gold(relative: &str, record: usize, gold: usize, n: usize) -> Result<(), DatasetError> {
    if gold < n && n > 0 {
        Ok(())
    } else {
        Err(DatasetError::Malformed {
            path: PathBuf::from(relative),
            line: record + 1,
            reason: format!("answer index {gold} but {n} choices"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_names_the_expected_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_jsonl::<Gsm8kRecord>(dir.path(), "gsm8k/test.jsonl").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("gsm8k/test.jsonl") && msg.contains("missing"), "{msg}");
    }

    #[test]
    fn malformed_line_is_located() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("gsm8k")).unwrap();
        std::fs::write(dir.path().join("gsm8k/test.jsonl"), "{\"question\":\"a\",\"answer\":\"b\"}\n{oops}\n").unwrap();
        let err = read_jsonl::<Gsm8kRecord>(dir.path(), "gsm8k/test.jsonl").unwrap_err();
        assert!(err.to_string().contains("test.jsonl:2"), "{err}");
    }
}
