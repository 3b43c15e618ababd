//! Per-item results on disk as they finish, and `--resume`: each task of each model appends its
//! items to `DIR/<task>.jsonl` one chunk at a time, so a crash loses at most the chunk in
//! flight, and a resumed run takes finished chunks from the file instead of computing them.
//!
//! The file's first line is a header (the settings key, the task's metrics, setting and item
//! counts); each further line is `{"pos": k, "item": {...}}`, `k` the item's position in the
//! task's evaluated subset. Tasks run in fixed chunks of the subset, and a chunk is reused only
//! when all of its items are in the file, so a resumed run decodes exactly the batches an
//! uninterrupted run decodes and gives the same report. A torn last line (a crash while
//! writing) is dropped.
//!
//! With [`ItemText::Hash`] (`--redact-items`) a line keeps the item's index and scores but
//! replaces the prompt, output, gold answer and extracted answers by their sha256: such a file holds
//! no benchmark text, so a long run's journal can be copied and continued on another machine
//! (a resumed run reports those items' scores without their text).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::task::{ItemResult, MetricSpec, TaskOutcome};

/// What a task's outcome carries besides its items.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Header {
    key: String,
    metrics: Vec<MetricSpec>,
    setting: String,
    n_available: usize,
}

#[derive(Clone, Serialize, Deserialize)]
struct Line {
    pos: usize,
    item: ItemResult,
    /// sha256 of the prompt, output and target when the line was written without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<TextHashes>,
}

/// The sha256 (hex) of an item's texts, kept in place of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct TextHashes {
    prompt: String,
    output: String,
    target: String,
    /// The item's extracted answers are their sha256 too.
    #[serde(default)]
    extracted: bool,
}

/// Whether item files keep the items' texts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ItemText {
    /// Prompt, output and target as evaluated.
    #[default]
    Keep,
    /// Their sha256 instead (no benchmark text in the file).
    Hash,
}

impl ItemText {
    /// `Hash` when `--redact-items` is given.
    pub fn of_flag(redact: bool) -> ItemText {
        if redact {
            ItemText::Hash
        } else {
            ItemText::Keep
        }
    }
}

impl Line {
    /// The line for `item` at `pos`, its texts hashed when `text` says so. The extracted
    /// answers are hashed too (an answer scored right is the gold answer); a line hashed before
    /// they were has them hashed now, and a line already hashed stays as it is.
    fn new(pos: usize, item: &ItemResult, text: ItemText, hashes: Option<&TextHashes>) -> Line {
        if text == ItemText::Keep || hashes.is_some_and(|h| h.extracted) {
            return Line { pos, item: item.clone(), sha256: hashes.cloned() };
        }
        let digest = |s: &str| super::content::text_sha256(s);
        let sha256 = match hashes {
            Some(h) => TextHashes { extracted: true, ..h.clone() },
            None => TextHashes { prompt: digest(&item.prompt), output: digest(&item.output), target: digest(&item.target), extracted: true },
        };
        let extracted = item.extracted.iter().map(|(k, v)| (k.clone(), digest(v))).collect();
        let item = ItemResult { prompt: String::new(), output: String::new(), target: String::new(), extracted, ..item.clone() };
        Line { pos, item, sha256: Some(sha256) }
    }

    fn json(&self) -> String {
        serde_json::to_string(self).expect("item serializes") + "\n"
    }
}

/// Why the item file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ItemLogError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file was written with other settings.
    #[error("{}: was written by an evaluation with other settings ({found}; now {expected}); remove it, or drop --resume and pass --force to evaluate again", path.display())]
    OtherSettings {
        /// The file.
        path: PathBuf,
        /// The key in the file.
        found: String,
        /// The key of this run.
        expected: String,
    },
}

/// The item file of one task of one model.
pub struct ItemLog {
    path: PathBuf,
    key: String,
    header: Option<Header>,
    done: BTreeMap<usize, Line>,
    file: Option<File>,
    text: ItemText,
}

impl ItemLog {
    /// A log that keeps nothing (no output directory).
    pub fn none() -> ItemLog {
        ItemLog { path: PathBuf::new(), key: String::new(), header: None, done: BTreeMap::new(), file: None, text: ItemText::Keep }
    }

    /// Opens `path` for a run with settings `key`: with `resume`, finished items are read back
    /// (the file rewritten without a torn last line, and without texts under [`ItemText::Hash`]);
    /// without, the file starts empty.
    pub fn open(path: &Path, key: &str, resume: bool, text: ItemText) -> Result<ItemLog, ItemLogError> {
        let io = |source| ItemLogError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut log = ItemLog { path: path.to_path_buf(), key: key.to_string(), header: None, done: BTreeMap::new(), file: None, text };
        if resume && path.exists() {
            let text = crate::safety::inputs::read_text(path).map_err(io)?;
            if let Some((h, lines)) = parse(&text) {
                if h.key != key {
                    return Err(ItemLogError::OtherSettings { path: path.to_path_buf(), found: h.key, expected: key.to_string() });
                }
                log.header = Some(h);
                for line in lines {
                    let line = Line::new(line.pos, &line.item, log.text, line.sha256.as_ref());
                    log.done.insert(line.pos, line);
                }
            }
        }
        // Rewrite what was kept, so appends follow whole lines.
        let mut file = File::create(path).map_err(io)?;
        if let Some(h) = &log.header {
            let mut text = serde_json::to_string(h).expect("header serializes") + "\n";
            for line in log.done.values() {
                text.push_str(&line.json());
            }
            file.write_all(text.as_bytes()).map_err(io)?;
        }
        log.file = Some(file);
        Ok(log)
    }

    /// Items of positions `range` when every one of them is in the file.
    fn finished(&self, range: &Range<usize>) -> Option<Vec<ItemResult>> {
        self.header.as_ref()?;
        range.clone().map(|p| self.done.get(&p).map(|l| l.item.clone())).collect()
    }

    /// Appends the items of a finished chunk starting at position `start`.
    fn append(&mut self, start: usize, outcome: &TaskOutcome) -> Result<(), ItemLogError> {
        let Some(file) = self.file.as_mut() else { return Ok(()) };
        let io = |source| ItemLogError::Io { path: self.path.clone(), source };
        let mut text = String::new();
        if self.header.is_none() {
            let h = Header { key: self.key.clone(), metrics: outcome.metrics.clone(), setting: outcome.setting.clone(), n_available: outcome.n_available };
            text.push_str(&(serde_json::to_string(&h).expect("header serializes") + "\n"));
            self.header = Some(h);
        }
        for (k, item) in outcome.items.iter().enumerate() {
            text.push_str(&Line::new(start + k, item, self.text, None).json());
        }
        file.write_all(text.as_bytes()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(())
    }
}

/// An item file's header and its whole lines, up to a torn last line (None without a header).
fn parse(text: &str) -> Option<(Header, Vec<Line>)> {
    let mut lines = text.lines();
    let header = serde_json::from_str::<Header>(lines.next()?).ok()?;
    Some((header, lines.map_while(|l| serde_json::from_str::<Line>(l).ok()).collect()))
}

/// A finished task's item file read back without touching it (the other side of
/// `eval --compare-run`).
#[derive(Debug)]
pub struct Finished {
    /// The settings key in the header.
    pub key: String,
    /// Items by position; a position the file lacks is absent.
    pub items: BTreeMap<usize, ItemResult>,
}

/// Reads the item file at `path` (never writing it). A file without a header is an error; a
/// torn last line ends the items, as a resumed run reads it.
pub fn read_finished(path: &Path) -> Result<Finished, ItemLogError> {
    let text = crate::safety::inputs::read_text(path).map_err(|source| ItemLogError::Io { path: path.to_path_buf(), source })?;
    let Some((header, lines)) = parse(&text) else {
        return Err(ItemLogError::Io { path: path.to_path_buf(), source: std::io::Error::other("not an item file of `eval` (no header line)") });
    };
    let items = lines.into_iter().map(|l| (l.pos, l.item)).collect();
    Ok(Finished { key: header.key, items })
}

/// Runs a task of `n` items in chunks of `chunk` positions: `run(range)` evaluates the items at
/// those positions (and must return one item per position, in order). Chunks finished in `log`
/// are taken from it. Returns the whole outcome.
pub fn run_chunked<E>(n: usize, chunk: usize, log: &mut ItemLog, mut run: impl FnMut(Range<usize>) -> Result<TaskOutcome, E>) -> Result<TaskOutcome, E>
where
    E: From<ItemLogError>,
{
    if n == 0 {
        return run(0..0);
    }
    let chunk = chunk.max(1);
    let mut items = Vec::with_capacity(n);
    let mut meta: Option<(Vec<MetricSpec>, String, usize)> = log.header.as_ref().map(|h| (h.metrics.clone(), h.setting.clone(), h.n_available));
    for start in (0..n).step_by(chunk) {
        let range = start..(start + chunk).min(n);
        if let Some(done) = log.finished(&range) {
            items.extend(done);
            continue;
        }
        let out = run(range.clone())?;
        log.append(start, &out)?;
        meta.get_or_insert_with(|| (out.metrics.clone(), out.setting.clone(), out.n_available));
        items.extend(out.items);
    }
    let (metrics, setting, n_available) = meta.expect("at least one chunk ran or was read");
    Ok(TaskOutcome { metrics, items, n_available, setting })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(range: Range<usize>) -> TaskOutcome {
        TaskOutcome {
            metrics: vec![MetricSpec::accuracy("acc")],
            items: range.map(|p| ItemResult { index: p * 10, scores: vec![((p % 2) as f64, 1.0)], ..ItemResult::default() }).collect(),
            n_available: 100,
            setting: "s".into(),
        }
    }

    /// Runs 10 items in chunks of 3 into a log at `path` with texts kept, stopped when the third
    /// chunk starts (and, when `torn`, a half-written line appended, as a crash mid-write leaves
    /// it), then resumes with `text`: the chunks the resumed run computed, and its outcome.
    fn stop_then_resume(path: &Path, make: fn(Range<usize>) -> TaskOutcome, text: ItemText, torn: bool) -> (Vec<Range<usize>>, TaskOutcome) {
        let mut log = ItemLog::open(path, "k", false, ItemText::Keep).unwrap();
        let stopped = run_chunked::<ItemLogError>(10, 3, &mut log, |r| {
            if r.start >= 6 {
                return Err(ItemLogError::Io { path: PathBuf::new(), source: std::io::Error::other("killed") });
            }
            Ok(make(r))
        });
        assert!(stopped.is_err());
        drop(log);
        if torn {
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            f.write_all(b"{\"pos\":6,\"item\":{\"ind").unwrap();
        }
        let mut ran = Vec::new();
        let mut log = ItemLog::open(path, "k", true, text).unwrap();
        let resumed = run_chunked::<ItemLogError>(10, 3, &mut log, |r| {
            ran.push(r.clone());
            Ok(make(r))
        })
        .unwrap();
        (ran, resumed)
    }

    #[test]
    fn an_interrupted_log_resumes_to_the_same_outcome_running_only_missing_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let full = run_chunked::<ItemLogError>(10, 3, &mut ItemLog::none(), |r| Ok(outcome(r))).unwrap();
        // First run: stop in the third chunk, leaving a torn line as a crash mid-write does.
        let (ran, resumed) = stop_then_resume(&path, outcome, ItemText::Keep, true);
        assert_eq!(ran, vec![6..9, 9..10]);
        assert_eq!(resumed, full);
        assert!(matches!(ItemLog::open(&path, "other", true, ItemText::Keep), Err(ItemLogError::OtherSettings { .. })));
    }

    fn texts(range: Range<usize>) -> TaskOutcome {
        let mut out = outcome(range);
        for it in &mut out.items {
            it.prompt = format!("Q: secret question {}", it.index);
            it.output = format!(" the model says {}", it.index);
            it.target = format!("answer {}", it.index);
        }
        out
    }

    #[test]
    fn a_hashed_log_holds_no_text_and_resumes_to_the_same_scores() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let full = run_chunked::<ItemLogError>(10, 3, &mut ItemLog::none(), |r| Ok(texts(r))).unwrap();
        // A run with texts stopped after two chunks, then continued with hashing: the kept
        // lines lose their texts too.
        let (ran, resumed) = stop_then_resume(&path, texts, ItemText::Hash, false);
        assert_eq!(ran, vec![6..9, 9..10]);
        let scores = |o: &TaskOutcome| o.items.iter().map(|i| (i.index, i.scores.clone())).collect::<Vec<_>>();
        assert_eq!(scores(&resumed), scores(&full));
        let file = std::fs::read_to_string(&path).unwrap();
        for word in ["secret", "model says", "answer "] {
            assert!(!file.contains(word), "{word:?} left in {file}");
        }
        assert!(file.contains(&crate::eval::content::text_sha256("Q: secret question 0")));
        // A line hashed before extracted answers were has them hashed when rewritten.
        let old = Line { pos: 0, item: ItemResult { extracted: [("acc".to_string(), "42".to_string())].into(), ..ItemResult::default() }, sha256: Some(TextHashes { prompt: "p".into(), output: "o".into(), target: "t".into(), extracted: false }) };
        let old: Line = serde_json::from_str(&old.json().replace(",\"extracted\":false", "")).unwrap();
        let new = Line::new(0, &old.item, ItemText::Hash, old.sha256.as_ref());
        assert_eq!(new.item.extracted["acc"], crate::eval::content::text_sha256("42"));
        assert_eq!(Line::new(0, &new.item, ItemText::Hash, new.sha256.as_ref()).json(), new.json(), "hashed once only");
        // Read back (with either setting), every item keeps its index and scores.
        for text in [ItemText::Hash, ItemText::Keep] {
            let mut log = ItemLog::open(&path, "k", true, text).unwrap();
            let again = run_chunked::<ItemLogError>(10, 3, &mut log, |_| panic!("all items are in the file")).unwrap();
            assert_eq!(scores(&again), scores(&full));
            assert!(again.items.iter().all(|i| i.prompt.is_empty() && i.output.is_empty()));
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), file, "rewriting a hashed file keeps its bytes");
    }
}
