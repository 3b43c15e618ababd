//! What `tune` optimises: one generation task the tool has — GSM8K CoT (the default), MATH
//! (Minerva 4-shot; dev from the non-test part of the one MATH split, `tune`'s test pass from its
//! 500 test problems) or the user's own generation questions (`--task-file`, split in `splits`).
//!
//! Every objective scores an answer with two 0/1 metrics in the same places: a strict one
//! (index 0) and the one the search optimises (index [`super::OBJECTIVE`] = 1): GSM8K's
//! strict-match / flexible-extract, MATH's exact_match / boxed_match, a task file's
//! exact-match / flexible-extract. The NLL guard scores each dev question's gold answer.

use std::path::{Path, PathBuf};

use crate::data::math_split::MathRecord;
use crate::eval::Task;
use crate::eval::datasets::DatasetError;
use crate::eval::taskfile::TaskFile;

/// The task `tune` optimises.
#[derive(Clone, Debug, PartialEq)]
pub enum Objective {
    /// GSM8K CoT, 8-shot (train questions for dev, test questions for the final test).
    Gsm8k,
    /// MATH, Minerva 4-shot.
    Math,
    /// The user's own generation questions.
    TaskFile(TaskFile),
}

/// One question of a MATH or task-file objective (GSM8K keeps its records in `Side::gsm8k`).
#[derive(Clone, Debug, PartialEq)]
pub enum Question {
    /// A MATH problem: its index in the data file and the record.
    Math(usize, MathRecord),
    /// A task-file question: its index in the file, the question and the reference answer.
    Own(usize, String, String),
}

impl Question {
    /// The question text (what the leak checks compare).
    pub fn text(&self) -> &str {
        match self {
            Question::Math(_, r) => &r.context,
            Question::Own(_, q, _) => q,
        }
    }

    /// The gold-solution NLL guard's (context, continuation): the prompt without exemplars and
    /// the reference solution (MATH) or answer (task file) after a space.
    pub fn nll_pair(&self) -> (String, String) {
        match self {
            Question::Math(_, r) => (crate::eval::math_prompt::problem_text(&r.context), format!(" {}", r.chain_of_thought)),
            Question::Own(_, q, a) => (crate::eval::taskfile::prompt(q), format!(" {a}")),
        }
    }
}

/// How the report names the objective and its splits.
#[derive(Clone, Debug, PartialEq)]
pub struct Names {
    /// The task, e.g. `GSM8K`.
    pub task: String,
    /// The strict metric (index 0), e.g. `strict`.
    pub strict: &'static str,
    /// The searched metric (index 1), e.g. `flexible`.
    pub flexible: &'static str,
    /// What the dev questions are, e.g. `GSM8K train questions`.
    pub dev: String,
    /// What the test questions are, e.g. `GSM8K test questions`.
    pub test: String,
    /// The searched quantity, e.g. `GSM8K CoT flexible-extract`.
    pub search: String,
}

/// Refuses a multiple-choice task file: `tune` optimises generated answers.
pub fn check_generation(file: &TaskFile) -> Result<(), DatasetError> {
    if file.is_choice() {
        let reason = "holds multiple-choice items; tune optimises a generation task (items with `question` and `answer`, no `choices`)".into();
        return Err(DatasetError::Malformed { path: file.path.clone(), line: 1, reason });
    }
    Ok(())
}

impl Objective {
    /// The objective of a task file at `path`, read and checked (generation items only).
    pub fn task_file(path: &Path) -> Result<Objective, DatasetError> {
        let file = TaskFile::load(path)?;
        check_generation(&file)?;
        Ok(Objective::TaskFile(file))
    }

    /// The objective's name in report.json and the journal key: `gsm8k`, `math` or
    /// `task_file FILE`.
    pub fn name(&self) -> String {
        match self {
            Objective::Gsm8k => "gsm8k".into(),
            Objective::Math => "math".into(),
            Objective::TaskFile(f) => format!("task_file {}", f.path.display()),
        }
    }

    /// The evaluation task whose data files key the journal.
    pub fn task(&self) -> Task {
        match self {
            Objective::Gsm8k => Task::Gsm8k,
            Objective::Math => Task::Math,
            Objective::TaskFile(_) => Task::TaskFile,
        }
    }

    /// The task file, for a task-file objective.
    pub fn file(&self) -> Option<PathBuf> {
        match self {
            Objective::TaskFile(f) => Some(f.path.clone()),
            _ => None,
        }
    }

    /// The report's names (GSM8K's are the words `tune` always printed).
    pub fn names(&self) -> Names {
        match self {
            Objective::Gsm8k => Names {
                task: "GSM8K".into(),
                strict: "strict",
                flexible: "flexible",
                dev: "GSM8K train questions".into(),
                test: "GSM8K test questions".into(),
                search: "GSM8K CoT flexible-extract".into(),
            },
            Objective::Math => Names {
                task: "MATH".into(),
                strict: "exact_match",
                flexible: "boxed_match",
                dev: "MATH problems outside its 500-problem test part".into(),
                test: "MATH test-part problems".into(),
                search: "MATH (Minerva 4-shot) boxed_match".into(),
            },
            Objective::TaskFile(f) => {
                let name = f.path.file_name().map_or_else(|| f.path.display().to_string(), |n| n.to_string_lossy().into_owned());
                Names {
                    task: name.clone(),
                    strict: "exact-match",
                    flexible: "flexible-extract",
                    dev: format!("{name} dev questions"),
                    test: format!("{name} test questions"),
                    search: format!("task file {name} flexible-extract"),
                }
            }
        }
    }
}
