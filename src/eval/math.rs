//! The `math` task: MATH problems (the split's test part, `crate::data::math_split`) answered
//! with lm-evaluation-harness's `minerva_math` 4-shot prompt (`math_prompt`), generated through
//! GSM8K's few-shot engine path (`gsm8k::generate_fewshot`), and scored as the harness's
//! answer functions do (`math_answer`).
//!
//! Metrics, each 0/1 per problem:
//! - `exact_match`: the harness's extraction (the "Final Answer: The final answer is …" sentence)
//!   and `normalize_final_answer`, compared with the normalised gold as strings (the harness
//!   compares them with sympy; see `math_answer`);
//! - `boxed_match`: the last `\boxed{…}` of the output (else the answer sentence), same
//!   normalisation and comparison;
//! - `strip_equiv`: that boxed content against the gold's, with `hendrycks_math`'s string
//!   `is_equiv` (`strip_string`);
//! - `exact_match:<category>`: `exact_match` over the problems of one subject (other problems
//!   count (0, 0), so the ratio is the subject's accuracy and pairing still holds).

use std::collections::BTreeMap;

use super::engine::{EngineError, Session};
use super::gsm8k::{FewShot, Gsm8kMode, generate_fewshot};
use super::math_answer::{INVALID_ANSWER, get_unnormalized_answer, is_equiv_strip, last_boxed_content, normalize_final_answer};
use super::math_prompt::{MAX_NEW_TOKENS, STOP, prefix, problem_text, prompt};
use super::task::{ItemResult, MetricSpec, TaskOutcome};
use crate::chat::ChatFormat;
use crate::data::math_split::{MathRecord, SPLIT_SEED, TEST_SIZE};
use crate::ffi::chat::ChatMessage;

/// The MATH subjects, in report order (the `category` values of the data file).
pub const CATEGORIES: [&str; 7] = ["algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory", "prealgebra", "precalculus"];

/// The one-line description of the `math` setting.
pub fn setting(chat: bool, max_new_tokens: usize) -> String {
    let mut s = format!(
        "lm-eval minerva_math v3.0: 4 fixed Minerva exemplars \"Problem:\\n..\\n\\nSolution: ..\", greedy, ≤{MAX_NEW_TOKENS} new tokens, \
         stop at \"Problem:\" or end of generation; the {TEST_SIZE} test problems of the seeded (seed {SPLIT_SEED}) category-stratified \
         split of MATH test; exact_match = the \"Final Answer: The final answer is X. I hope it is correct.\" sentence, \
         normalize_final_answer, string equality (the harness's sympy is_equiv is not implemented); boxed_match = last \\boxed{{}} \
         else that sentence, same; strip_equiv = last \\boxed{{}} with hendrycks_math's strip_string is_equiv"
    );
    if chat {
        s.push_str("; chat template, exemplars as alternating user \"Problem:\\n..\\n\\nSolution:\" / assistant turns");
    }
    if max_new_tokens != MAX_NEW_TOKENS {
        s.push_str(&format!("; NOTE: at most {max_new_tokens} new tokens instead of {MAX_NEW_TOKENS}"));
    }
    s
}

/// The metrics of the task, in report order.
pub fn metrics() -> Vec<MetricSpec> {
    let mut m = vec![MetricSpec::accuracy("exact_match"), MetricSpec::accuracy("boxed_match"), MetricSpec::accuracy("strip_equiv")];
    m.extend(CATEGORIES.iter().map(|c| MetricSpec::accuracy(&format!("exact_match:{c}"))));
    m
}

/// The chat messages of one problem: the exemplars as user/assistant turns, then the problem.
fn chat_messages(problem: Option<&str>) -> Vec<ChatMessage> {
    let mut m: Vec<ChatMessage> = super::math_prompt::EXEMPLARS
        .iter()
        .flat_map(|(p, s)| [ChatMessage::user(problem_text(p)), ChatMessage::assistant(*s)])
        .collect();
    if let Some(p) = problem {
        m.push(ChatMessage::user(problem_text(p)));
    }
    m
}

/// Generates answers for `records` (with their indices in the data file) and scores them.
pub fn run_math(
    session: &mut Session<'_>,
    records: &[(usize, MathRecord)],
    n_available: usize,
    mode: Gsm8kMode,
    max_new_tokens: usize,
    chat: Option<&ChatFormat>,
    progress: impl FnMut(usize),
) -> Result<TaskOutcome, EngineError> {
    let shared = match chat {
        Some(f) => f.render(&chat_messages(None), false)?,
        None => prefix(),
    };
    let prompts = records
        .iter()
        .map(|(_, r)| match chat {
            Some(f) => Ok(f.render(&chat_messages(Some(&r.context)), true)?),
            None => Ok(prompt(&r.context)),
        })
        .collect::<Result<Vec<String>, EngineError>>()?;
    let fewshot = FewShot { prefix: &shared, prompts: &prompts, special: chat.is_some(), stop: &STOP, max_new_tokens };
    let outputs = generate_fewshot(session, &fewshot, mode, progress)?;
    let items = records.iter().zip(outputs).map(|((index, r), text)| score_output(*index, r, &text)).collect();
    Ok(TaskOutcome { metrics: metrics(), items, n_available, setting: setting(chat.is_some(), max_new_tokens) })
}

/// The gold answer as the harness's `process_docs` forms it: the last `\boxed{…}` of the
/// solution, unboxed (the data's `answer` field when the solution has none).
pub fn gold_boxed(record: &MathRecord) -> String {
    last_boxed_content(&record.chain_of_thought).unwrap_or_else(|| record.answer.clone())
}

/// Scores one generated solution.
pub fn score_output(index: usize, record: &MathRecord, output: &str) -> ItemResult {
    let gold_raw = gold_boxed(record);
    let gold = normalize_final_answer(&gold_raw);
    let sentence = get_unnormalized_answer(output);
    let exact = normalize_final_answer(&sentence);
    let exact_ok = sentence != INVALID_ANSWER && exact == gold;
    let boxed_raw = last_boxed_content(output);
    let boxed = normalize_final_answer(boxed_raw.as_deref().unwrap_or(&sentence));
    let boxed_ok = (boxed_raw.is_some() || sentence != INVALID_ANSWER) && boxed == gold;
    let strip_ok = boxed_raw.as_deref().is_some_and(|b| is_equiv_strip(b, &gold_raw));
    let bit = |ok: bool| (f64::from(u8::from(ok)), 1.0);
    let mut scores = vec![bit(exact_ok), bit(boxed_ok), bit(strip_ok)];
    scores.extend(CATEGORIES.iter().map(|c| if *c == record.category { bit(exact_ok) } else { (0.0, 0.0) }));
    let mut extracted = BTreeMap::new();
    extracted.insert("exact_match".to_string(), exact);
    extracted.insert("boxed_match".to_string(), boxed);
    extracted.insert("strip_equiv".to_string(), boxed_raw.unwrap_or_else(|| "[no \\boxed{}]".to_string()));
    extracted.insert("category".to_string(), record.category.clone());
    ItemResult { index, prompt: problem_text(&record.context), output: output.to_string(), target: gold, extracted, scores }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(solution: &str, category: &str) -> MathRecord {
        MathRecord { context: "Find x.".into(), chain_of_thought: solution.into(), answer: "?".into(), category: category.into() }
    }

    /// Each exemplar's own solution, as a model output, is right on every metric.
    #[test]
    fn the_exemplar_solutions_score_as_right() {
        for (p, s) in super::super::math_prompt::EXEMPLARS {
            let r = MathRecord { context: p.into(), chain_of_thought: s.into(), answer: String::new(), category: "algebra".into() };
            let item = score_output(0, &r, s);
            assert_eq!(&item.scores[..4], &[(1.0, 1.0); 4], "{p}: {:?}", item.extracted);
            assert!(item.scores[4..].iter().all(|&x| x == (0.0, 0.0)));
        }
    }

    #[test]
    fn outputs_are_scored_per_metric() {
        let r = rec("So $x = \\boxed{\\frac{1}{2}}$.", "geometry");
        // Boxed but no answer sentence: only the boxed metrics.
        let item = score_output(3, &r, " We get $x=\\boxed{\\dfrac12}$.\n");
        assert_eq!(item.scores[0], (0.0, 1.0));
        assert_eq!(item.scores[1], (0.0, 1.0), "normalize_final_answer keeps \\dfrac: {:?}", item.extracted);
        assert_eq!(item.scores[2], (1.0, 1.0));
        assert_eq!(item.scores[3 + 2], (0.0, 1.0), "geometry column");
        // The answer sentence, cut before "I hope it is correct.".
        let item = score_output(3, &r, " So $x=\\frac{1}{2}$.\nFinal Answer: The final answer is $\\frac{1}{2}$. ");
        assert_eq!(item.extracted["exact_match"], "\\frac{1}{2}");
        assert_eq!((item.scores[0], item.scores[1], item.scores[2]), ((1.0, 1.0), (1.0, 1.0), (0.0, 1.0)));
        assert_eq!(item.target, "\\frac{1}{2}");
        assert_eq!(metrics().len(), item.scores.len());
    }
}
