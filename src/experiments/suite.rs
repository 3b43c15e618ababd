//! Evaluation with its own item limit per task (GSM8K generation is far dearer per item than a
//! multiple-choice question), merged into one report that `compare_reports` can pair.

use crate::eval::{EvalError, EvalOptions, EvalReport, Model, RunSettings, Task, evaluate_model};

/// Evaluates `model` on every `(task, limit)` with `base` options otherwise, in order.
pub fn evaluate_suite(model: &Model, tasks: &[(Task, usize)], base: &EvalOptions) -> Result<EvalReport, EvalError> {
    let mut merged: Option<EvalReport> = None;
    for &(task, limit) in tasks {
        let opts = EvalOptions { tasks: vec![task], limit: Some(limit), ..base.clone() };
        let report = evaluate_model(model, &opts)?;
        match merged.as_mut() {
            None => merged = Some(report),
            Some(m) => {
                m.tasks.extend(report.tasks);
                m.wall_seconds += report.wall_seconds;
            }
        }
    }
    Ok(merged.unwrap_or_else(|| EvalReport {
        model: model.path().to_path_buf(),
        // No task ran: no limit and no GSM8K parallelism to record.
        settings: RunSettings { limit: None, parallel: 1, ..base.settings() },
        tasks: Vec::new(),
        wall_seconds: 0.0,
    }))
}
