//! The journal of `tune`: one JSON line per finished evaluation chunk (which model, which
//! measure, which dev/test items, the per-item scores), appended and flushed as each chunk ends.
//! `--resume` replays it, so an interrupted search loses at most the chunk in progress; because
//! chunk boundaries come from the schedule, not from when the run stopped, a resumed run
//! evaluates exactly the chunks an uninterrupted one would and ends with the same result.
//!
//! The file is a [`crate::safety::journal`]: the first line holds the configuration key, and a
//! journal written under other settings is refused rather than mixed in.

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

/// The tune journal: [`crate::safety::journal::Journal`] of [`Entry`] lines.
pub type Journal = crate::safety::journal::Journal<Entry>;
pub use crate::safety::journal::JournalError;

/// The command name journal errors give.
pub const WHAT: &str = "tune";
