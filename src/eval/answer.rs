//! GSM8K answer extraction and normalisation, as lm-evaluation-harness's `gsm8k_cot` does it.
//!
//! - strict-match: the first match of `The answer is (\-?[0-9\.\,]+).`, group 1.
//! - flexible-extract: the last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)`, its non-empty group.
//! - No match gives the harness's fallback `[invalid]`, which never equals a number.
//! - `exact_match` ignores case and removes `,`, `$`, everything through `#### ` and one
//!   trailing `.` from prediction and reference alike (the task's `regexes_to_ignore`).
//!   Beyond the harness, a trailing all-zero fraction is dropped (`18.00` → `18`), as the
//!   project's issue asks; it only changes outputs the harness would count wrong.

use std::sync::LazyLock;

use regex::Regex;

/// What the harness puts in place of an answer when its regex finds none.
pub const INVALID: &str = "[invalid]";

static STRICT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"The answer is (\-?[0-9\.\,]+).").expect("valid strict regex"));
static FLEXIBLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(-?[$0-9.,]{2,})|(-?[0-9]+)").expect("valid flexible regex"));
static THROUGH_HASHES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?s).*#### ").expect("valid regex"));
static ZERO_FRACTION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(-?[0-9]+)\.0+$").expect("valid regex"));

/// strict-match: the number after the first "The answer is", or [`INVALID`].
pub fn extract_strict(output: &str) -> String {
    STRICT
        .captures(output)
        .and_then(|c| c.get(1))
        .map_or_else(|| INVALID.to_string(), |m| m.as_str().trim().to_string())
}

/// flexible-extract: the last number-like run in the output, or [`INVALID`].
pub fn extract_flexible(output: &str) -> String {
    FLEXIBLE
        .captures_iter(output)
        .last()
        .and_then(|c| c.get(1).or_else(|| c.get(2)))
        .map_or_else(|| INVALID.to_string(), |m| m.as_str().trim().to_string())
}

/// The gold answer of a GSM8K record: the text after the last `####`, trimmed.
pub fn gold_answer(answer: &str) -> String {
    answer.rsplit("####").next().unwrap_or(answer).trim().to_string()
}

/// The harness's `exact_match` normalisation (plus dropping an all-zero fraction).
pub fn normalise(text: &str) -> String {
    let text = THROUGH_HASHES.replace(text, "");
    let text = text.replace([',', '$'], "");
    // Python's `\.$` also matches before one final newline; extracted answers are trimmed,
    // so only the plain trailing dot matters.
    let text = text.strip_suffix('.').unwrap_or(&text).to_lowercase();
    match ZERO_FRACTION.captures(&text) {
        Some(c) => c[1].to_string(),
        None => text,
    }
}

/// Whether an extracted answer equals the gold answer after normalisation.
pub fn is_correct(extracted: &str, gold: &str) -> bool {
    extracted != INVALID && normalise(extracted) == normalise(gold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_takes_the_first_answer_sentence() {
        assert_eq!(extract_strict("So 3 + 4 = 7. The answer is 7.\n\nQ: x The answer is 9."), "7");
        assert_eq!(extract_strict("The answer is -12."), "-12");
        assert_eq!(extract_strict("The answer is 1,234.5 dollars"), "1,234.5");
        assert_eq!(extract_strict("it is 7"), INVALID);
        // The regex's final `.` is any character: at the very end it eats the last digit.
        assert_eq!(extract_strict("The answer is 18"), "1");
    }

    #[test]
    fn flexible_takes_the_last_number() {
        assert_eq!(extract_flexible("3 apples and 4 pears make 7 fruits"), "7");
        assert_eq!(extract_flexible("She pays $1,200.50 in total."), "$1,200.50");
        assert_eq!(extract_flexible("The change is -5"), "-5");
        assert_eq!(extract_flexible("no numbers here"), INVALID);
        assert_eq!(extract_flexible("The answer is 42."), "42.");
    }

    #[test]
    fn normalisation_matches_the_harness() {
        assert_eq!(normalise("$1,200"), "1200");
        assert_eq!(normalise("42."), "42");
        assert_eq!(normalise("18.00"), "18");
        assert_eq!(normalise("0.5"), "0.5");
        assert_eq!(normalise("-3"), "-3");
        assert_eq!(normalise("Natalia sold 72.\n#### 72"), "72");
        assert!(is_correct("$1,200.", "1200"));
        assert!(is_correct("-3", "-3"));
        assert!(!is_correct("3", "-3"));
        assert!(!is_correct(INVALID, INVALID));
    }

    #[test]
    fn gold_is_after_the_hashes() {
        assert_eq!(gold_answer("Janet sells 9 eggs.\n#### 18"), "18");
        assert_eq!(gold_answer("x\n#### 1,000"), "1,000");
    }
}
