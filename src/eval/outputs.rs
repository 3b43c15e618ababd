//! The files an evaluation writes into its `--out` directory, as one output plan: report.json,
//! report.md, diff.svg and `<task>.jsonl` beside them, and the per-item files under
//! `items/base/` and `items/other/`. Every one of them (for every task, not only those asked
//! for) is checked against the inputs, so a model or task file inside the directory is never
//! replaced or cleared; an existing one needs `--force`, except under `--resume`, which
//! continues the same run in the same directory.

use std::path::{Path, PathBuf};

use super::Task;
use crate::safety::OutputPlan;

/// Every task, the task file's included (`Task::ALL` lists the named ones).
fn all_tasks() -> impl Iterator<Item = Task> {
    Task::ALL.into_iter().chain([Task::TaskFile])
}

/// The report files of `out` (replaced on every run).
fn report_files(out: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["report.json", "report.md", "diff.svg"].iter().map(|n| out.join(n)).collect();
    files.extend(all_tasks().map(|t| out.join(format!("{}.jsonl", t.name()))));
    files
}

/// Which model of a run a folder of per-item files holds: the evaluated model, or the one
/// `--compare` puts beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// MODEL (a single-model run's only side; what `--compare-run` reads back).
    Base,
    /// `--compare OTHER`.
    Other,
}

/// `out/items/base` or `out/items/other`: where a run journals one model's items.
pub fn items_dir(out: &Path, side: Side) -> PathBuf {
    out.join("items").join(match side {
        Side::Base => "base",
        Side::Other => "other",
    })
}

/// The folders of the per-item files.
fn item_dirs(out: &Path) -> [PathBuf; 3] {
    [items_dir(out, Side::Base), items_dir(out, Side::Other), out.join("items")]
}

/// The per-item files of `out` (resumed from with `--resume`).
fn item_files(out: &Path) -> Vec<PathBuf> {
    item_dirs(out)[..2].iter().flat_map(|d| all_tasks().map(move |t| d.join(format!("{}.jsonl", t.name())))).collect()
}

/// Adds the evaluation's directory and every file it may write there to `plan` (see the module
/// docs). With `resume` the files are reused rather than replaced, so they need no `--force`.
pub fn plan(mut plan: OutputPlan, out: &Path, resume: bool) -> OutputPlan {
    plan = plan.dir(out);
    for d in item_dirs(out).into_iter().rev() {
        plan = plan.dir(d);
    }
    for f in report_files(out) {
        plan = if resume { plan.reused_file(f) } else { plan.file(f) };
    }
    for f in item_files(out) {
        plan = if resume { plan.reused_file(f) } else { plan.file(f).kept() };
    }
    plan
}

/// Removes the files of an earlier evaluation from `out` (the run was started with `--force`),
/// so none of them is mixed into the new report. Only the files [`plan`] names are touched.
pub fn clear(out: &Path) -> std::io::Result<()> {
    for f in report_files(out).into_iter().chain(item_files(out)) {
        if std::fs::symlink_metadata(&f).is_ok_and(|m| !m.is_dir()) {
            std::fs::remove_file(&f)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_earlier_report_needs_force_and_force_clears_only_evals_files() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("e");
        std::fs::create_dir_all(out.join("items/base")).unwrap();
        std::fs::write(out.join("report.json"), "{}").unwrap();
        std::fs::write(out.join("items/base/piqa.jsonl"), "x").unwrap();
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        let check = |force, resume| plan(OutputPlan::new("eval", force), &out, resume).check();
        assert!(check(false, false).unwrap_err().to_string().contains("report.json"));
        check(false, true).unwrap();
        check(true, false).unwrap();
        clear(&out).unwrap();
        assert!(!out.join("report.json").exists() && !out.join("items/base/piqa.jsonl").exists());
        assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
    }
}
