//! A finished evaluation read back as the other side of a paired comparison
//! (`eval MODEL --compare-run DIR`): DIR's report.json and its per-item files, checked to be a
//! complete run of every task with this run's settings (the key of each item file, its model's
//! sha256 aside), so a model evaluated earlier — on another machine, or before its file was
//! deleted — is paired item by item without being evaluated again.

use std::path::{Path, PathBuf};

use super::itemlog::{self, ItemLogError};
use super::{EvalError, EvalOptions, EvalReport, Task};

/// Why a finished run cannot be paired with this one.
#[derive(Debug, thiserror::Error)]
pub enum FinishedRunError {
    /// report.json is missing or not an `eval` report.
    #[error("{}: {reason} (--compare-run takes the --out directory of a finished `mathneuro eval` of one model)", path.display())]
    Report {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The run did not evaluate a task this run asks for.
    #[error("{}: the run there did not evaluate task {task}", dir.display())]
    MissingTask {
        /// The run directory.
        dir: PathBuf,
        /// The task.
        task: Task,
    },
    /// An item file was written with other settings.
    #[error("{}: was written with other settings ({found}; this run: {expected}); pair runs made with the same tasks, data and settings", path.display())]
    OtherSettings {
        /// The item file.
        path: PathBuf,
        /// The key in the file, its model's sha256 left out.
        found: String,
        /// This run's key, likewise.
        expected: String,
    },
    /// An item file lacks items of the run.
    #[error("{}: holds {found} of the {expected} items of task {task}; finish that run first (the same `eval` with --resume)", path.display())]
    Incomplete {
        /// The item file.
        path: PathBuf,
        /// The task.
        task: Task,
        /// Items present at positions 0..expected.
        found: usize,
        /// Items the run's report counts.
        expected: usize,
    },
    /// An item file cannot be read.
    #[error(transparent)]
    Items(#[from] ItemLogError),
}

/// The files of the finished run in `dir` that pairing reads.
pub fn inputs(dir: &Path, tasks: &[Task]) -> Vec<PathBuf> {
    std::iter::once(dir.join("report.json")).chain(tasks.iter().map(|t| item_file(dir, *t))).collect()
}

fn item_file(dir: &Path, task: Task) -> PathBuf {
    super::outputs::items_dir(dir, super::outputs::Side::Base).join(format!("{task}.jsonl"))
}

/// The key without its model's sha256, and that sha256.
fn split_key(key: &str) -> (&str, &str) {
    match key.strip_prefix("model_sha256=").and_then(|k| k.split_once(' ')) {
        Some((sha, rest)) => (sha, rest),
        None => ("", key),
    }
}

/// Reads the finished run in `dir` as the report of the model it evaluated, items included, for
/// `tasks` with `options`' settings.
pub fn read(dir: &Path, tasks: &[Task], options: &EvalOptions) -> Result<EvalReport, EvalError> {
    let report_path = dir.join("report.json");
    let bad = |reason: String| FinishedRunError::Report { path: report_path.clone(), reason };
    let text = crate::safety::inputs::read_text(&report_path).map_err(|e| bad(e.to_string()))?;
    let mut report: EvalReport = serde_json::from_str(&text).map_err(|e| bad(format!("not an `eval` report of one model: {e}")))?;
    for &task in tasks {
        let result = report.tasks.iter_mut().find(|t| t.task == task).ok_or(FinishedRunError::MissingTask { dir: dir.to_path_buf(), task })?;
        let path = item_file(dir, task);
        let file = itemlog::read_finished(&path).map_err(FinishedRunError::from)?;
        let (sha, found) = split_key(&file.key);
        let expected_key = options.key(sha, task)?;
        let (_, expected) = split_key(&expected_key);
        if found != expected {
            return Err(FinishedRunError::OtherSettings { path, found: found.into(), expected: expected.into() }.into());
        }
        let items: Vec<_> = (0..result.n).map_while(|p| file.items.get(&p).cloned()).collect();
        if items.len() != result.n {
            return Err(FinishedRunError::Incomplete { path, task, found: items.len(), expected: result.n }.into());
        }
        result.items = items;
    }
    report.tasks.retain(|t| tasks.contains(&t.task));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_splits_off_its_model() {
        assert_eq!(split_key("model_sha256=abc data_sha256=d task=math"), ("abc", "data_sha256=d task=math"));
        assert_eq!(split_key("k"), ("", "k"));
    }
}
