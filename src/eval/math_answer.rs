//! MATH answer extraction and comparison, ported from lm-evaluation-harness
//! (`lm_eval/tasks/minerva_math/utils.py`, task version 3.0, and
//! `lm_eval/tasks/hendrycks_math/utils.py`), character for character where Python allows it.
//!
//! - [`get_unnormalized_answer`]: the Minerva answer sentence "Final Answer: The final answer is
//!   X. I hope it is correct." (the harness appends "I hope it is correct." to the output first,
//!   so a generation cut before that phrase still matches);
//! - [`last_boxed_only_string`] / [`remove_boxed`]: the last `\boxed{…}` (or `\boxed …`,
//!   `\fbox{…}`) and its content;
//! - [`normalize_final_answer`]: Minerva's normalisation (Lewkowycz et al. 2022, appendix D);
//! - [`strip_string`] / [`is_equiv_strip`]: `hendrycks_math`'s string normalisation and its
//!   `is_equiv` (on a Python exception inside `strip_string` the harness compares the raw
//!   strings; [`strip_string`] returns `None` where Python raises).
//!
//! Not implemented: the harness's minerva `is_equiv` parses both normalised answers with
//! sympy's `parse_latex` and calls them equal when `simplify(a − b) == 0` (and unequal when
//! either fails to parse); here normalised answers are compared as strings. Nor is its
//! `math_verify` metric. Python's `str.isdigit` is approximated by `char::is_numeric`.

use std::sync::LazyLock;

use regex::Regex;

/// What the harness returns when the output has no answer sentence.
pub const INVALID_ANSWER: &str = "[invalidanswer]";

static ANSWER_SENTENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"Final Answer: The final answer is(.*?). I hope it is correct.").expect("valid regex"));
static DOLLARS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(.*?)(\$)(.*?)(\$)(.*)").expect("valid regex"));
static TEXT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\\text\{)(.*?)(\})").expect("valid regex"));
static TEXTBF: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\\textbf\{)(.*?)(\})").expect("valid regex"));
static OVERLINE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\\overline\{)(.*?)(\})").expect("valid regex"));
static BOXED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\\boxed\{)(.*)(\})").expect("valid regex"));
static FRAC: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(frac)([^{])(.)").expect("valid regex"));
static SQRT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(sqrt)([^{])").expect("valid regex"));

/// Minerva's `SUBSTITUTIONS`, applied in order.
const SUBSTITUTIONS: [(&str, &str); 10] = [
    ("an ", ""),
    ("a ", ""),
    (".$", "$"),
    ("\\$", ""),
    ("\\ ", ""),
    (" ", ""),
    ("mbox", "text"),
    (",\\text{and}", ","),
    ("\\text{and}", ","),
    ("\\text{m}", "\\text{}"),
];

/// Minerva's `REMOVED_EXPRESSIONS`, removed in order.
const REMOVED_EXPRESSIONS: [&str; 42] = [
    "square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units", "\\ldots", "sue", "points", "feet", "minutes",
    "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals", "edges", "students", "childrentickets", "multiples", "\\text{s}",
    "\\text{.}", "\\text{\ns}", "\\text{}^2", "\\text{}^3", "\\text{\n}", "\\text{}", "\\mathrm{th}", "^\\circ", "^{\\circ}", "\\;", ",\\!", "{,}",
    "\"", "\\dots",
];

/// The answer in the Minerva answer sentence, trimmed, or [`INVALID_ANSWER`].
pub fn get_unnormalized_answer(text: &str) -> String {
    let text = format!("{text}I hope it is correct.");
    ANSWER_SENTENCE
        .captures(&text)
        .and_then(|c| c.get(1))
        .map_or_else(|| INVALID_ANSWER.to_string(), |m| m.as_str().trim().to_string())
}

/// The last `\boxed{…}` of `text` with its braces (brace-matched), the text after the last
/// `\boxed ` up to a `$` when the text has one, else the last `\fbox{…}`; `None` when there is
/// none or its braces do not close.
pub fn last_boxed_only_string(text: &str) -> Option<String> {
    if text.contains("\\boxed ") {
        let tail = text.rsplit("\\boxed ").next().unwrap_or("");
        return Some(format!("\\boxed {}", tail.split('$').next().unwrap_or("")));
    }
    let idx = text.rfind("\\boxed").or_else(|| text.rfind("\\fbox"))?;
    let mut open = 0i64;
    for (i, b) in text.bytes().enumerate().skip(idx) {
        if b == b'{' {
            open += 1;
        }
        if b == b'}' {
            open -= 1;
            if open == 0 {
                return Some(text[idx..=i].to_string());
            }
        }
    }
    None
}

/// The content of `\boxed{…}` or `\boxed …`; `None` where the harness's assertion fails
/// (e.g. an `\fbox{…}`).
pub fn remove_boxed(s: &str) -> Option<String> {
    if s.contains("\\boxed ") {
        return s.strip_prefix("\\boxed ").map(str::to_string);
    }
    s.strip_prefix("\\boxed{").and_then(|r| r.strip_suffix('}')).map(str::to_string)
}

/// The content of the last `\boxed{…}` of `text`.
pub fn last_boxed_content(text: &str) -> Option<String> {
    last_boxed_only_string(text).and_then(|b| remove_boxed(&b))
}

/// Python's `str.isdigit` of a whole string (non-empty, every character a digit).
fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.chars().all(char::is_numeric)
}

/// Minerva's `normalize_final_answer`.
pub fn normalize_final_answer(final_answer: &str) -> String {
    let mut s = final_answer.rsplit('=').next().unwrap_or("").to_string();
    for (before, after) in SUBSTITUTIONS {
        s = s.replace(before, after);
    }
    for expr in REMOVED_EXPRESSIONS {
        s = s.replace(expr, "");
    }
    s = DOLLARS.replace_all(&s, "$$${3}$$").into_owned();
    s = TEXT.replace_all(&s, "${2}").into_owned();
    s = TEXTBF.replace_all(&s, "${2}").into_owned();
    s = OVERLINE.replace_all(&s, "${2}").into_owned();
    s = BOXED.replace_all(&s, "${2}").into_owned();
    s = FRAC.replace_all(&s, "frac{${2}}{${3}}").into_owned();
    s = SQRT.replace_all(&s, "sqrt{${2}}").into_owned();
    s = s.replace('$', "");
    if is_digits(&s.replace(',', "")) {
        s = s.replace(',', "");
    }
    s
}

/// `fix_fracs`: `\frac12` → `\frac{1}{2}`, `\frac1{72}` → `\frac{1}{72}`. `None` where Python
/// raises (a `\frac` at the very end).
fn fix_fracs(string: &str) -> Option<String> {
    let mut parts = string.split("\\frac");
    let mut out = parts.next().unwrap_or("").to_string();
    for sub in parts {
        out.push_str("\\frac");
        let mut chars = sub.chars();
        let a = chars.next()?;
        if a == '{' {
            out.push_str(sub);
            continue;
        }
        let Some(b) = chars.next() else { return Some(string.to_string()) };
        let rest = chars.as_str();
        if b != '{' {
            out.push_str(&format!("{{{a}}}{{{b}}}{rest}"));
        } else {
            out.push_str(&format!("{{{a}}}{b}{rest}"));
        }
    }
    Some(out)
}

/// Python's `int(s)` in canonical form (`str(int(s))`), or `None` where it raises.
fn python_int(s: &str) -> Option<String> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let ok = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !ok {
        return None;
    }
    let plain: String = digits.chars().filter(|&c| c != '_').collect();
    let trimmed = plain.trim_start_matches('0');
    let value = if trimmed.is_empty() { "0" } else { trimmed };
    Some(if neg && value != "0" { format!("-{value}") } else { value.to_string() })
}

/// `fix_a_slash_b`: `1/2` → `\frac{1}{2}`. `None` where Python raises (`int()` of a
/// non-integer side).
fn fix_a_slash_b(string: &str) -> Option<String> {
    let parts: Vec<&str> = string.split('/').collect();
    if parts.len() != 2 {
        return Some(string.to_string());
    }
    let (a, b) = (python_int(parts[0])?, python_int(parts[1])?);
    if string == format!("{a}/{b}") { Some(format!("\\frac{{{a}}}{{{b}}}")) } else { Some(string.to_string()) }
}

/// `remove_right_units`: what precedes `\text{ `. `None` where the harness's assertion fails
/// (more than one).
fn remove_right_units(string: &str) -> Option<String> {
    if !string.contains("\\text{ ") {
        return Some(string.to_string());
    }
    let parts: Vec<&str> = string.split("\\text{ ").collect();
    (parts.len() == 2).then(|| parts[0].to_string())
}

/// `fix_sqrt`: `\sqrt3` → `\sqrt{3}`. `None` where Python raises (a `\sqrt` at the very end).
fn fix_sqrt(string: &str) -> Option<String> {
    if !string.contains("\\sqrt") {
        return Some(string.to_string());
    }
    let mut parts = string.split("\\sqrt");
    let mut out = parts.next().unwrap_or("").to_string();
    for part in parts {
        let mut chars = part.chars();
        let first = chars.next()?;
        if first != '{' {
            out.push_str(&format!("\\sqrt{{{first}}}{}", chars.as_str()));
        } else {
            out.push_str("\\sqrt");
            out.push_str(part);
        }
    }
    Some(out)
}

/// `hendrycks_math`'s `strip_string`; `None` where Python raises.
pub fn strip_string(string: &str) -> Option<String> {
    let mut s = string.replace('\n', "").replace("\\!", "").replace("\\\\", "\\");
    s = s.replace("tfrac", "frac").replace("dfrac", "frac");
    s = s.replace("\\left", "").replace("\\right", "");
    s = s.replace("^{\\circ}", "").replace("^\\circ", "");
    s = s.replace("\\$", "");
    s = remove_right_units(&s)?;
    s = s.replace("\\%", "");
    s = s.replace(" .", " 0.").replace("{.", "{0.");
    if s.is_empty() {
        return Some(s);
    }
    if s.starts_with('.') {
        s = format!("0{s}");
    }
    let sides: Vec<&str> = s.split('=').collect();
    if sides.len() == 2 && sides[0].chars().count() <= 2 {
        s = sides[1].to_string();
    }
    s = fix_sqrt(&s)?;
    s = s.replace(' ', "");
    s = fix_fracs(&s)?;
    if s == "0.5" {
        s = "\\frac{1}{2}".to_string();
    }
    fix_a_slash_b(&s)
}

/// `hendrycks_math`'s `is_equiv`: equal after [`strip_string`], or equal as given when
/// stripping raises.
pub fn is_equiv_strip(a: &str, b: &str) -> bool {
    match (strip_string(a), strip_string(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shorthand examples in the comments of `normalize_final_answer`.
    #[test]
    fn normalize_final_answer_follows_its_own_comments() {
        assert_eq!(normalize_final_answer("\\fracab"), "\\frac{a}{b}");
        assert_eq!(normalize_final_answer("\\frac{abc}{bef}"), "\\frac{abc}{bef}");
        assert_eq!(normalize_final_answer("\\fracabc"), "\\frac{a}{b}c");
        assert_eq!(normalize_final_answer("\\sqrta"), "\\sqrt{a}");
        assert_eq!(normalize_final_answer("\\sqrtab"), "\\sqrt{a}b");
        assert_eq!(normalize_final_answer("100,000"), "100000");
    }

    #[test]
    fn normalize_final_answer_strips_units_math_and_boxes() {
        assert_eq!(normalize_final_answer("$[2,5)$"), "[2,5)");
        assert_eq!(normalize_final_answer("$-\\frac{2}{3}$"), "-\\frac{2}{3}");
        assert_eq!(normalize_final_answer("x = 5"), "5");
        assert_eq!(normalize_final_answer("\\boxed{16}"), "16");
        assert_eq!(normalize_final_answer("\\text{(C)}"), "(C)");
        assert_eq!(normalize_final_answer("10\\text{ inches}"), "10");
        assert_eq!(normalize_final_answer("90^\\circ"), "90");
        assert_eq!(normalize_final_answer("\\$1,000"), "1000");
        assert_eq!(normalize_final_answer("1,2"), "12");
        assert_eq!(normalize_final_answer("(1,2)"), "(1,2)");
        assert_eq!(normalize_final_answer(INVALID_ANSWER), INVALID_ANSWER);
    }

    #[test]
    fn answer_sentence_is_found_even_when_cut_short() {
        let out = "so $x=\\boxed{24}$.\nFinal Answer: The final answer is $24$. I hope it is correct.\n\n";
        assert_eq!(get_unnormalized_answer(out), "$24$");
        assert_eq!(get_unnormalized_answer("Final Answer: The final answer is $7$. "), "$7$");
        assert_eq!(get_unnormalized_answer("The answer is 7."), INVALID_ANSWER);
    }

    #[test]
    fn last_boxed_is_brace_matched() {
        assert_eq!(last_boxed_only_string("a \\boxed{1} b \\boxed{\\frac{1}{2}} c").as_deref(), Some("\\boxed{\\frac{1}{2}}"));
        assert_eq!(last_boxed_only_string("x \\boxed 5$ and").as_deref(), Some("\\boxed 5"));
        assert_eq!(last_boxed_only_string("\\fbox{3}").as_deref(), Some("\\fbox{3}"));
        assert_eq!(last_boxed_only_string("\\boxed{1"), None);
        assert_eq!(last_boxed_only_string("none"), None);
        assert_eq!(last_boxed_content("$\\boxed{[2,5)}$").as_deref(), Some("[2,5)"));
        assert_eq!(last_boxed_content("\\boxed 5$").as_deref(), Some("5"));
        assert_eq!(last_boxed_content("\\fbox{3}"), None);
    }

    /// `hendrycks/math`'s `modeling/math_equivalence_test.py`, every case.
    #[test]
    fn is_equiv_passes_the_hendrycks_math_tests() {
        assert!(!is_equiv_strip("\\tfrac{1}{2} + \\frac1{72}", "\\\\frac{1}{2} + 2/3"));
        assert!(!is_equiv_strip("10, 4, -2", "4, 10, -2"));
        assert!(!is_equiv_strip("10, 4, 2", "4, 12, 2"));
        assert!(is_equiv_strip("\\tfrac{1}{2} +\\! \\frac1{72}", "\\\\dfrac{1}{2} +\\frac{1}{72}"));
        assert!(is_equiv_strip("10\\text{ units}", "10 "));
        assert!(!is_equiv_strip("10\\text{ units}", "100 "));
        assert!(is_equiv_strip("10", "\\$10"));
        assert!(is_equiv_strip("\\left(x-2\\right)\\left(x+2\\right)", "(x-2)(x+2)"));
        assert!(!is_equiv_strip("0.1, 4, 2", "4, .1, 2"));
        assert!(is_equiv_strip("0.1", ".1"));
        assert!(is_equiv_strip("10\\%", "10"));
        assert!(is_equiv_strip("10\\sqrt{3} + \\sqrt4", "10\\sqrt3 + \\sqrt{4}"));
        assert!(is_equiv_strip("\\frac34i", "\\frac{3}{4}i"));
        assert!(is_equiv_strip("\\tfrac83", "\\frac{8}{3}"));
        assert!(!is_equiv_strip("5x - 7y + 11z + 4 = 0", "x + y - z + 2 = 0"));
        assert!(is_equiv_strip("1/2", "\\frac{1}{2}"));
    }

    /// The examples in `strip_string`'s comments, and where Python raises.
    #[test]
    fn strip_string_follows_its_own_comments() {
        assert_eq!(strip_string("\\frac1b").as_deref(), Some("\\frac{1}{b}"));
        assert_eq!(strip_string("\\frac12").as_deref(), Some("\\frac{1}{2}"));
        assert_eq!(strip_string("\\frac1{72}").as_deref(), Some("\\frac{1}{72}"));
        assert_eq!(strip_string("0.5").as_deref(), Some("\\frac{1}{2}"));
        assert_eq!(strip_string("\\sqrt3").as_deref(), Some("\\sqrt{3}"));
        assert_eq!(strip_string("k = 3").as_deref(), Some("3"));
        assert_eq!(strip_string("-3/4").as_deref(), Some("\\frac{-3}{4}"));
        assert_eq!(strip_string("03/4").as_deref(), Some("03/4"));
        // Python raises: int("x") in fix_a_slash_b, "\frac" or "\sqrt" at the end, two units.
        assert_eq!(strip_string("x/y"), None);
        assert_eq!(strip_string("2\\frac"), None);
        assert_eq!(strip_string("2\\sqrt"), None);
        assert_eq!(strip_string("1\\text{ a}2\\text{ b}"), None);
        assert!(is_equiv_strip("x/y", "x/y") && !is_equiv_strip("x/y", "x / y"));
    }
}
