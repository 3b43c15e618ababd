//! An append-only JSON-lines journal, so that a long run resumes where it stopped: the first line
//! holds the run's configuration key, each further line one finished unit of work (an entry of
//! the caller's type), appended and synced as it finishes. `resume` replays the entries of a
//! journal written under the same key, drops a torn last line (the run died while writing it)
//! and refuses one written under another key rather than mixing it in. Used by `tune` (one line
//! per evaluation chunk) and `sensitivity` (one line per probe).

use std::io::Write as _;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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
    #[error("{}:{line}: not a {what} journal line ({reason}); remove the file or run without --resume", .path.display())]
    Malformed {
        /// The journal.
        path: PathBuf,
        /// The command that writes such journals.
        what: &'static str,
        /// 1-based line.
        line: usize,
        /// Parser message.
        reason: String,
    },
    /// The journal was written with other settings.
    #[error("{}: written by a {what} run with other settings, another model (or this one changed since) or other data; use the same options, or --force to start over", .path.display())]
    OtherConfig {
        /// The journal.
        path: PathBuf,
        /// The command that writes such journals.
        what: &'static str,
    },
}

/// An open journal of entries of type `E`, written by the command `what`.
#[derive(Debug)]
pub struct Journal<E> {
    path: PathBuf,
    file: std::fs::File,
    /// The entries read back on resume.
    pub entries: Vec<E>,
    kind: PhantomData<E>,
}

impl<E: Serialize + DeserializeOwned> Journal<E> {
    /// Starts a fresh journal at `path` (replacing any old one) for `config`.
    pub fn create(path: &Path, config: &str) -> Result<Journal<E>, JournalError> {
        let io = |source| JournalError::Io { path: path.to_path_buf(), source };
        let mut file = std::fs::File::create(path).map_err(io)?;
        let header = serde_json::to_string(&Header { config: config.to_string() }).expect("a header serialises");
        writeln!(file, "{header}").and_then(|_| file.sync_data()).map_err(io)?;
        Ok(Journal { path: path.to_path_buf(), file, entries: Vec::new(), kind: PhantomData })
    }

    /// Reopens the journal at `path` written by `what`, checking it was written for `config`.
    /// A torn last line is dropped.
    pub fn resume(path: &Path, config: &str, what: &'static str) -> Result<Journal<E>, JournalError> {
        let io = |source| JournalError::Io { path: path.to_path_buf(), source };
        let text = crate::safety::inputs::read_text(path).map_err(io)?;
        let mut lines = text.split_inclusive('\n');
        let header: Header = lines
            .next()
            .and_then(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| JournalError::Malformed { path: path.to_path_buf(), what, line: 1, reason: "no header".into() })?;
        if header.config != config {
            return Err(JournalError::OtherConfig { path: path.to_path_buf(), what });
        }
        let mut entries = Vec::new();
        let mut good = text.find('\n').map_or(text.len(), |i| i + 1);
        for (i, line) in lines.enumerate() {
            if !line.ends_with('\n') {
                break;
            }
            let entry = serde_json::from_str(line).map_err(|e| JournalError::Malformed { path: path.to_path_buf(), what, line: i + 2, reason: e.to_string() })?;
            entries.push(entry);
            good += line.len();
        }
        let file = std::fs::OpenOptions::new().write(true).open(path).map_err(io)?;
        file.set_len(good as u64).map_err(io)?;
        let mut journal = Journal { path: path.to_path_buf(), file, entries, kind: PhantomData };
        std::io::Seek::seek(&mut journal.file, std::io::SeekFrom::End(0)).map_err(io)?;
        Ok(journal)
    }

    /// Appends one finished entry and syncs it to disk.
    pub fn append(&mut self, entry: &E) -> Result<(), JournalError> {
        let line = serde_json::to_string(entry).expect("an entry serialises");
        writeln!(self.file, "{line}").and_then(|_| self.file.sync_data()).map_err(|source| JournalError::Io { path: self.path.clone(), source })
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Item {
        name: String,
        value: f64,
    }

    #[test]
    fn entries_survive_a_resume_a_torn_line_is_dropped_and_another_config_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let e = Item { name: "blk.0.ffn_down.weight".into(), value: 0.125 };
        let mut j = Journal::create(&path, "cfg").unwrap();
        j.append(&e).unwrap();
        drop(j);
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"name\":\"bl").unwrap();
        let mut j: Journal<Item> = Journal::resume(&path, "cfg", "test").unwrap();
        assert_eq!(j.entries, vec![e.clone()]);
        j.append(&e).unwrap();
        drop(j);
        assert_eq!(Journal::<Item>::resume(&path, "cfg", "test").unwrap().entries.len(), 2);
        let err = Journal::<Item>::resume(&path, "other", "test").unwrap_err();
        assert!(matches!(err, JournalError::OtherConfig { .. }) && err.to_string().contains("test run with other settings"), "{err}");
        std::fs::write(&path, "{\"config\":\"cfg\"}\nnot json\n").unwrap();
        let err = Journal::<Item>::resume(&path, "cfg", "test").unwrap_err().to_string();
        assert!(err.contains(":2: not a test journal line"), "{err}");
    }
}
