//! The journal of `tune`: one JSON line per finished evaluation chunk (which model, which
//! measure, which dev/test items, the per-item scores), appended and flushed as each chunk ends.
//! `--resume` replays it, so an interrupted search loses at most the chunk in progress; because
//! chunk boundaries come from the schedule, not from when the run stopped, a resumed run
//! evaluates exactly the chunks an uninterrupted one would and ends with the same result.
//!
//! The first line holds the configuration key; a journal written under other settings is
//! refused rather than mixed in.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a chunk measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// GSM8K CoT on dev questions: (strict, flexible) per item.
    DevCot,
    /// Gold-solution NLL on dev questions: (nll, tokens) per item.
    DevNll,
    /// General multiple choice on dev items: (acc, 1) per item.
    DevGeneral,
    /// GSM8K CoT on test questions.
    TestCot,
    /// General multiple choice on test items.
    TestGeneral,
}

/// One finished chunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// `base` or a candidate id.
    pub model: String,
    /// What was measured.
    pub measure: Measure,
    /// First item (position in the split's order).
    pub start: usize,
    /// Per item: the task's metric values, each (numerator, denominator).
    pub scores: Vec<Vec<(f64, f64)>>,
    /// Seconds the chunk took (not part of any result).
    pub seconds: f64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    config: String,
}

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading or writing failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The journal.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a journal entry.
    #[error("{}:{line}: not a tune journal line ({reason}); remove the file or run without --resume", .path.display())]
    Malformed {
        /// The journal.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Parser message.
        reason: String,
    },
    /// The journal was written with other settings.
    #[error("{}: written by a tune run with other settings, another model (or this one changed since) or other data; use the same options, or --force to start over", .0.display())]
    OtherConfig(PathBuf),
}

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
    /// The entries read back on resume.
    pub entries: Vec<Entry>,
}

impl Journal {
    /// Starts a fresh journal at `path` (replacing any old one) for `config`.
    pub fn create(path: &Path, config: &str) -> Result<Journal, JournalError> {
        let io = |source| JournalError::Io { path: path.to_path_buf(), source };
        let mut file = std::fs::File::create(path).map_err(io)?;
        let header = serde_json::to_string(&Header { config: config.to_string() }).expect("a header serialises");
        writeln!(file, "{header}").and_then(|_| file.sync_data()).map_err(io)?;
        Ok(Journal { path: path.to_path_buf(), file, entries: Vec::new() })
    }

    /// Reopens the journal at `path`, checking it was written for `config`. A torn last line
    /// (the run died while writing it) is dropped.
    pub fn resume(path: &Path, config: &str) -> Result<Journal, JournalError> {
        let io = |source| JournalError::Io { path: path.to_path_buf(), source };
        let text = crate::safety::inputs::read_text(path).map_err(io)?;
        let mut lines = text.split_inclusive('\n');
        let header: Header = lines
            .next()
            .and_then(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| JournalError::Malformed { path: path.to_path_buf(), line: 1, reason: "no header".into() })?;
        if header.config != config {
            return Err(JournalError::OtherConfig(path.to_path_buf()));
        }
        let mut entries = Vec::new();
        let mut good = header_len(&text);
        for (i, line) in lines.enumerate() {
            if !line.ends_with('\n') {
                break;
            }
            let entry = serde_json::from_str(line).map_err(|e| JournalError::Malformed { path: path.to_path_buf(), line: i + 2, reason: e.to_string() })?;
            entries.push(entry);
            good += line.len();
        }
        let file = std::fs::OpenOptions::new().write(true).open(path).map_err(io)?;
        file.set_len(good as u64).map_err(io)?;
        let mut journal = Journal { path: path.to_path_buf(), file, entries };
        std::io::Seek::seek(&mut journal.file, std::io::SeekFrom::End(0)).map_err(io)?;
        Ok(journal)
    }

    /// Appends one finished chunk and flushes it to disk.
    pub fn append(&mut self, entry: &Entry) -> Result<(), JournalError> {
        let line = serde_json::to_string(entry).expect("an entry serialises");
        writeln!(self.file, "{line}").and_then(|_| self.file.sync_data()).map_err(|source| JournalError::Io { path: self.path.clone(), source })
    }
}

fn header_len(text: &str) -> usize {
    text.find('\n').map_or(text.len(), |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_resume_and_a_torn_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let e = Entry { model: "base".into(), measure: Measure::DevCot, start: 0, scores: vec![vec![(1.0, 1.0), (0.0, 1.0)]], seconds: 1.5 };
        let mut j = Journal::create(&path, "cfg").unwrap();
        j.append(&e).unwrap();
        drop(j);
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"model\":\"ba").unwrap();
        let mut j = Journal::resume(&path, "cfg").unwrap();
        assert_eq!(j.entries, vec![e.clone()]);
        j.append(&e).unwrap();
        drop(j);
        assert_eq!(Journal::resume(&path, "cfg").unwrap().entries.len(), 2);
        assert!(matches!(Journal::resume(&path, "other"), Err(JournalError::OtherConfig(_))));
    }
}
